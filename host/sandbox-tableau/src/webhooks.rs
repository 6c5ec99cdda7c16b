//! Webhook delivery: each event is POSTed as Tableau's JSON payload to every
//! enabled webhook for it, retried 3 times (4 attempts) on a non-2xx answer
//! or a transport error with growing pauses, sometimes twice (fault switch),
//! sometimes never (fault switch). Every attempt is recorded for tests.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::server::Shared;
use crate::state::{now_micros, tableau_time};

/// Attempts per delivery: the first plus three retries.
pub const ATTEMPTS: u32 = 4;

/// What happened to one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The receiver answered 2xx.
    Delivered {
        /// HTTP status.
        status: u16,
    },
    /// The receiver answered non-2xx.
    Rejected {
        /// HTTP status.
        status: u16,
    },
    /// The request did not complete.
    Failed {
        /// Transport error text.
        error: String,
    },
    /// Dropped by the `lose_webhooks` fault; never sent.
    Lost,
}

/// One recorded delivery attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookDelivery {
    /// Webhook LUID.
    pub webhook_id: String,
    /// Destination.
    pub url: String,
    /// Event API name.
    pub event_type: String,
    /// The JSON body sent.
    pub payload: serde_json::Value,
    /// 1-based attempt number (0 for a lost event).
    pub attempt: u32,
    /// Outcome.
    pub outcome: DeliveryOutcome,
}

/// Whether a destination URL is acceptable: `https://` anywhere, plain
/// `http://` only on loopback (a sandbox allowance; Tableau requires HTTPS).
pub fn url_allowed(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    match parsed.scheme() {
        "https" => parsed.host_str().is_some(),
        "http" => match parsed.host_str() {
            Some(host) => {
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                host.eq_ignore_ascii_case("localhost")
                    || bare
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            None => false,
        },
        _ => false,
    }
}

/// A destination for logs: scheme, host and port only, since the path of a
/// webhook URL often carries the receiver's secret.
pub fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => format!(
            "{}://{}{}/…",
            parsed.scheme(),
            parsed.host_str().unwrap_or(""),
            parsed.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "(invalid url)".to_owned(),
    }
}

/// Fires `event` for a data source to every enabled webhook listening.
pub(crate) fn fire(
    shared: &Arc<Shared>,
    event: &'static str,
    resource_luid: &str,
    resource_name: &str,
) {
    let hooks: Vec<_> = shared
        .inner()
        .webhooks
        .iter()
        .filter(|w| w.enabled && w.event == event)
        .cloned()
        .collect();
    if hooks.is_empty() {
        return;
    }
    let payload = json!({
        "resource": "DATASOURCE",
        "event_type": event,
        "resource_name": resource_name,
        "site_luid": shared.site.id,
        "resource_luid": resource_luid,
        "created_at": tableau_time(now_micros()),
    });
    for hook in hooks {
        if shared.faults.take_lost_webhook() {
            tracing::info!(webhook = %hook.id, event, "webhook event lost on purpose");
            shared.record(WebhookDelivery {
                webhook_id: hook.id.clone(),
                url: hook.url.clone(),
                event_type: event.to_owned(),
                payload: payload.clone(),
                attempt: 0,
                outcome: DeliveryOutcome::Lost,
            });
            continue;
        }
        for _ in 0..shared.faults.webhook_copies() {
            let shared = Arc::clone(shared);
            let payload = payload.clone();
            let hook = hook.clone();
            tokio::spawn(async move {
                deliver(&shared, &hook.id, &hook.url, event, payload).await;
            });
        }
    }
}

async fn deliver(
    shared: &Shared,
    webhook_id: &str,
    url: &str,
    event: &str,
    payload: serde_json::Value,
) {
    let mut pause = shared.settings.webhook_retry_delay;
    for attempt in 1..=ATTEMPTS {
        let result = shared.http.post(url).json(&payload).send().await;
        let outcome = match result {
            Ok(resp) if resp.status().is_success() => DeliveryOutcome::Delivered {
                status: resp.status().as_u16(),
            },
            Ok(resp) => DeliveryOutcome::Rejected {
                status: resp.status().as_u16(),
            },
            Err(e) => DeliveryOutcome::Failed {
                error: e.without_url().to_string(),
            },
        };
        let done = matches!(outcome, DeliveryOutcome::Delivered { .. });
        tracing::debug!(webhook = webhook_id, event, attempt, outcome = ?outcome, "webhook delivery");
        shared.record(WebhookDelivery {
            webhook_id: webhook_id.to_owned(),
            url: url.to_owned(),
            event_type: event.to_owned(),
            payload: payload.clone(),
            attempt,
            outcome,
        });
        if done {
            return;
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(pause).await;
            pause = pause.saturating_mul(2).min(Duration::from_secs(60));
        }
    }
    tracing::warn!(webhook = webhook_id, event, destination = %redacted(url), "webhook delivery gave up");
}

/// Sends the test message (an empty body); returns status and body.
pub(crate) async fn test(shared: &Shared, url: &str) -> (u16, String) {
    match shared.http.post(url).body(Vec::new()).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            (status, body)
        }
        Err(e) => (0, e.without_url().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert!(url_allowed("https://hooks.example.com/x"));
        assert!(url_allowed("http://127.0.0.1:8080/hook"));
        assert!(url_allowed("http://localhost/hook"));
        assert!(!url_allowed("http://hooks.example.com/x"));
        assert!(!url_allowed("ftp://127.0.0.1/x"));
        assert!(!url_allowed("not a url"));
        assert_eq!(
            redacted("https://hooks.example.com:8443/t/s3cr3t?x=1"),
            "https://hooks.example.com:8443/…"
        );
    }
}
