//! The Tableau webhook receiver: `POST /webhooks/tableau/{tenant}/{token}`.
//!
//! Tableau does not sign webhooks, so a delivery is a hint, never a fact:
//!
//! 1. the tenant must be one this process runs and the token its own
//!    (compared in constant time); otherwise 404, whichever was wrong;
//! 2. the body must fit the cap (413) and be a Tableau event — JSON with
//!    `resource`, `event_type`, `resource_luid`, `site_luid`, `created_at`
//!    and an event type we registered (400);
//! 3. the site must be the tenant's site (400);
//! 4. the event is recorded in the tenant's store; one seen before is
//!    answered 200 and changes nothing (Tableau retries and may deliver
//!    twice);
//! 5. only then, when the data source is one a pipeline of the tenant
//!    writes and that pipeline has a submitted batch, the cycle waiting on
//!    its job polls it now (or, with none running, a cycle starts and
//!    resends the batch under its `RequestID`s, which answers with the
//!    original job): the job's state read over REST confirms or fails the
//!    batch. The delivery itself changes no batch.
//!
//! Before all of it, a source over its rate ([`crate::ratelimit`]) is
//! answered 429; so is a tenant's genuine delivery over the tenant's rate.
//! Every delivery is counted by outcome (`/metrics`, `/status.json`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mlc_store::BatchState;
use mlc_tableau::WebhookEvent;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::pipeline::Command;

/// How a delivery ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Genuine and new; the pipeline was told when a batch waits on it.
    Accepted,
    /// Seen before: ignored.
    Duplicate,
    /// Genuine, but for a data source no pipeline of the tenant writes.
    Unmatched,
    /// Refused: the tenant is not run here.
    UnknownTenant,
    /// Refused: the token is not the tenant's.
    Forged,
    /// Refused: the body is over the cap.
    Oversized,
    /// Refused: not a Tableau event.
    Malformed,
    /// Refused: the event is for another site.
    ForeignSite,
    /// Refused: too many deliveries from its source, or for its tenant.
    RateLimited,
}

impl Outcome {
    /// The outcome's name in metrics and the status document.
    pub fn name(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Unmatched => "unmatched",
            Self::UnknownTenant => "unknown-tenant",
            Self::Forged => "forged",
            Self::Oversized => "oversized",
            Self::Malformed => "malformed",
            Self::ForeignSite => "foreign-site",
            Self::RateLimited => "rate-limited",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Self::Accepted | Self::Duplicate | Self::Unmatched => StatusCode::OK,
            Self::UnknownTenant | Self::Forged => StatusCode::NOT_FOUND,
            Self::Oversized => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Malformed | Self::ForeignSite => StatusCode::BAD_REQUEST,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

/// A Tableau event, as validated.
#[derive(Debug, PartialEq)]
pub struct Event {
    /// The event type.
    pub event: WebhookEvent,
    /// The site's LUID.
    pub site: String,
    /// The data source's LUID.
    pub resource: String,
    /// When Tableau says it happened.
    pub created_at: String,
}

impl Event {
    /// Parses and checks a delivery body.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
        let field = |name: &str| -> Result<String, String> {
            match v.get(name).and_then(Value::as_str) {
                Some(s) if !s.is_empty() && s.len() <= 256 => Ok(s.to_owned()),
                Some(_) => Err(format!("`{name}` is empty or too long")),
                None => Err(format!("`{name}` is missing or not a string")),
            }
        };
        let resource_kind = field("resource")?;
        if resource_kind != "DATASOURCE" {
            return Err(format!("resource {resource_kind:?} is not DATASOURCE"));
        }
        let name = field("event_type")?;
        let event = WebhookEvent::from_name(&name)
            .ok_or_else(|| format!("event type {name:?} is not one ml-connector registers"))?;
        Ok(Self {
            event,
            site: field("site_luid")?,
            resource: field("resource_luid")?,
            created_at: field("created_at")?,
        })
    }

    /// The event's identity: the same event delivered twice has one id.
    pub fn id(&self) -> String {
        let h = Sha256::new()
            .chain_update(self.site.as_bytes())
            .chain_update([0])
            .chain_update(self.resource.as_bytes())
            .chain_update([0])
            .chain_update(self.event.api_name().as_bytes())
            .chain_update([0])
            .chain_update(self.created_at.as_bytes())
            .finalize();
        hex::encode(&h[..16])
    }
}

/// The handler.
pub async fn receive(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Path((tenant, token)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (outcome, detail) = match app.rates.webhook_source(peer.ip()) {
        Ok(()) => handle(&app, &tenant, &token, body).await,
        Err(wait) => (
            Outcome::RateLimited,
            format!(
                "too many deliveries from this source: try again in {} s",
                wait.as_secs().max(1)
            ),
        ),
    };
    app.scheduler.status.webhook(outcome.name());
    crate::metrics::webhook(outcome.name());
    if outcome.status().is_success() {
        tracing::info!(tenant = %tenant, outcome = outcome.name(), "webhook delivery");
    } else {
        // The path carries the token: never logged.
        tracing::warn!(outcome = outcome.name(), detail = %detail, "webhook delivery refused");
    }
    let mut response = (
        outcome.status(),
        axum::Json(json!({"outcome": outcome.name(), "detail": detail})),
    )
        .into_response();
    if outcome == Outcome::RateLimited {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("10"),
        );
    }
    response
}

async fn handle(
    app: &App,
    tenant: &str,
    token: &str,
    body: Result<Bytes, BytesRejection>,
) -> (Outcome, String) {
    let not_found = "no such webhook".to_owned();
    let Some((running, expected)) = app.scheduler.running(tenant).await else {
        return (Outcome::UnknownTenant, not_found);
    };
    let genuine = expected.as_ref().is_some_and(|t| {
        mlc_common::secret::constant_time_eq(t.expose().as_bytes(), token.as_bytes())
    });
    if !genuine {
        return (Outcome::Forged, not_found);
    }
    if let Err(wait) = app.rates.webhook_tenant(tenant) {
        return (
            Outcome::RateLimited,
            format!(
                "too many deliveries for this tenant: try again in {} s",
                wait.as_secs().max(1)
            ),
        );
    }
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return (
                Outcome::Oversized,
                format!("the body is over {} bytes", app.limits.webhook_body),
            );
        }
        Err(e) => return (Outcome::Malformed, e.body_text()),
    };
    let event = match Event::parse(&body) {
        Ok(e) => e,
        Err(reason) => return (Outcome::Malformed, reason),
    };
    let site = match running.connectors.tableau.sign_in().await {
        Ok(session) => session.site_id.clone(),
        Err(e) => {
            // The site cannot be checked now: refused, Tableau retries.
            return (
                Outcome::ForeignSite,
                format!("the tenant's site could not be checked: {e}"),
            );
        }
    };
    if event.site != site {
        return (Outcome::ForeignSite, "the event is for another site".into());
    }
    let store = running.store.clone();
    let record = json!({
        "event_type": event.event.api_name(),
        "site_luid": event.site,
        "resource_luid": event.resource,
        "created_at": event.created_at,
        "received_at": mlc_store::now_rfc3339(),
    })
    .to_string();
    let id = event.id();
    let keep = app.limits.webhook_memory as u64;
    let new = match tokio::task::block_in_place(|| store.record_event(&id, &record, keep)) {
        Ok(new) => new,
        Err(e) => {
            tracing::error!(tenant = %tenant, error = %e, "a webhook event could not be recorded");
            return (Outcome::Malformed, "the event could not be recorded".into());
        }
    };
    if !new {
        return (Outcome::Duplicate, "seen before".into());
    }
    // Which pipeline writes that data source, and does a batch wait on it?
    let mut matched = None;
    for spec in &running.pipelines {
        let state = tokio::task::block_in_place(|| store.pipeline(&spec.name));
        if state
            .ok()
            .and_then(|s| s.datasource_id)
            .is_some_and(|ds| ds == event.resource)
        {
            matched = Some(spec.name.clone());
            break;
        }
    }
    let Some(pipeline) = matched else {
        return (
            Outcome::Unmatched,
            "no pipeline writes that data source".into(),
        );
    };
    let waiting = tokio::task::block_in_place(|| store.open_batch(&pipeline))
        .ok()
        .flatten()
        .is_some_and(|b| matches!(b.state, BatchState::Submitted { .. }));
    if waiting {
        // A cycle waiting on the job polls it now; with none running (the
        // process restarted after submitting), one starts and resends the
        // batch under its RequestIDs, which answers with the original job.
        running.connectors.tableau.hint(&event.resource);
        if !app.scheduler.status.is_running(tenant, &pipeline) {
            app.scheduler
                .command(tenant, &pipeline, Command::RunNow)
                .await;
        }
        return (
            Outcome::Accepted,
            format!("{pipeline}: its submitted batch is checked now"),
        );
    }
    (Outcome::Accepted, format!("{pipeline}: no batch waits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(event: &str) -> String {
        format!(
            r#"{{"resource":"DATASOURCE","event_type":"{event}","resource_name":"X","site_luid":"s1","resource_luid":"d1","created_at":"2026-12-02T10:00:00Z"}}"#
        )
    }

    #[test]
    fn a_tableau_event_parses_and_has_a_stable_id() {
        let e = Event::parse(body("DatasourceUpdated").as_bytes()).unwrap();
        assert_eq!(e.event, WebhookEvent::DatasourceUpdated);
        assert_eq!(e.site, "s1");
        assert_eq!(e.resource, "d1");
        let again = Event::parse(body("DatasourceUpdated").as_bytes()).unwrap();
        assert_eq!(e.id(), again.id());
        let other = Event::parse(body("DatasourceRefreshFailed").as_bytes()).unwrap();
        assert_ne!(e.id(), other.id());
    }

    #[test]
    fn what_is_not_a_tableau_event_is_refused_with_a_reason() {
        for (text, expect) in [
            ("not json", "not JSON"),
            ("[]", "`resource` is missing"),
            (
                r#"{"resource":"WORKBOOK","event_type":"WorkbookCreated"}"#,
                "not DATASOURCE",
            ),
            (&body("SomethingElse"), "not one ml-connector registers"),
            (
                r#"{"resource":"DATASOURCE","event_type":"DatasourceUpdated","site_luid":"s","resource_luid":"","created_at":"t"}"#,
                "`resource_luid` is empty",
            ),
        ] {
            let err = Event::parse(text.as_bytes()).unwrap_err();
            assert!(err.contains(expect), "{text}: {err}");
        }
    }
}
