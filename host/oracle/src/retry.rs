//! Retry decisions: which failures are transient, how long to wait.
//!
//! Transient: HTTP 429, 500, 502, 503, 504, timeouts, refused or reset
//! connections and bodies cut short. The wait doubles from the initial
//! backoff up to the maximum with full jitter; a `Retry-After` header (in
//! seconds, or an HTTP date we cannot parse without a clock library, in which
//! case the computed backoff applies) replaces it. Attempts and total time
//! are both bounded.

use std::time::{Duration, Instant};

use rand::Rng as _;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::config::RetryPolicy;
use crate::error::OracleError;

/// True for statuses worth retrying.
pub fn is_transient(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// The delay a `Retry-After: <seconds>` header asks for.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// A short description when a send error is transient, `None` otherwise.
pub fn classify_send_error(error: &reqwest::Error) -> Option<String> {
    if error.is_timeout() {
        Some("request timed out".into())
    } else if error.is_connect() {
        Some(format!("connection failed: {}", chain(error)))
    } else if error.is_request() || error.is_body() || error.is_decode() {
        // Resets and connections closed before or during the answer.
        Some(format!("connection dropped: {}", chain(error)))
    } else {
        None
    }
}

/// The error with its sources, one line.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// At most `max` bytes of `text`, on a character boundary.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Progress of one request through its attempts.
#[derive(Debug)]
pub struct Attempt {
    /// Failed attempts so far.
    pub attempts: u32,
    started: Instant,
}

impl Attempt {
    /// The first attempt starts now.
    pub fn start() -> Self {
        Self {
            attempts: 0,
            started: Instant::now(),
        }
    }
}

/// The backoff schedule of a [`RetryPolicy`].
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
}

impl Backoff {
    /// Schedule for `policy`.
    pub fn new(policy: &RetryPolicy) -> Self {
        Self {
            policy: policy.clone(),
        }
    }

    /// Records a failed attempt and returns how long to wait before the
    /// next, or the error when attempts or time are used up.
    pub fn next_delay(
        &self,
        attempt: &mut Attempt,
        retry_after: Option<Duration>,
        resource: &str,
        failure: &str,
    ) -> Result<Duration, OracleError> {
        attempt.attempts += 1;
        let elapsed = attempt.started.elapsed();
        let exhausted = |last: String| OracleError::RetriesExhausted {
            resource: resource.to_owned(),
            attempts: attempt.attempts,
            elapsed,
            last,
        };
        if attempt.attempts >= self.policy.max_attempts {
            return Err(exhausted(failure.to_owned()));
        }
        let exp = attempt.attempts.saturating_sub(1).min(20);
        let ceiling = self
            .policy
            .initial_backoff_ms
            .saturating_mul(1u64 << exp)
            .min(self.policy.max_backoff_ms);
        let jittered = Duration::from_millis(rand::rng().random_range(0..=ceiling));
        let delay = match retry_after {
            // Honour the server, plus a little jitter so that clients told
            // the same second do not return in lockstep.
            Some(wait) => wait + jittered.min(Duration::from_millis(250)),
            None => jittered,
        };
        let budget = Duration::from_secs(self.policy.max_total_secs);
        if elapsed + delay > budget {
            return Err(exhausted(format!(
                "{failure} (waiting {delay:?} more would exceed the {budget:?} budget)"
            )));
        }
        Ok(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded() {
        let policy = RetryPolicy {
            max_attempts: 4,
            initial_backoff_ms: 100,
            max_backoff_ms: 250,
            max_total_secs: 10,
        };
        let b = Backoff::new(&policy);
        let mut a = Attempt::start();
        for _ in 0..3 {
            let d = b.next_delay(&mut a, None, "invoices", "503").unwrap();
            assert!(d <= Duration::from_millis(250), "{d:?}");
        }
        let err = b.next_delay(&mut a, None, "invoices", "503").unwrap_err();
        assert!(err.to_string().contains("4 attempts"), "{err}");

        let mut a = Attempt::start();
        let d = b
            .next_delay(&mut a, Some(Duration::from_secs(2)), "invoices", "429")
            .unwrap();
        assert!(d >= Duration::from_secs(2) && d <= Duration::from_millis(2250));
        let err = b
            .next_delay(&mut a, Some(Duration::from_secs(60)), "invoices", "429")
            .unwrap_err();
        assert!(err.to_string().contains("budget"), "{err}");
    }

    #[test]
    fn retry_after_seconds() {
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
        assert!(is_transient(StatusCode::TOO_MANY_REQUESTS));
        assert!(!is_transient(StatusCode::BAD_REQUEST));
    }
}
