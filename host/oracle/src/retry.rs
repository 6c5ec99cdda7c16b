//! Retry decisions: which failures are transient, how long to wait.
//!
//! Transient: HTTP 429, 500, 502, 503, 504, timeouts, refused or reset
//! connections and bodies cut short. The wait doubles from the initial
//! backoff up to the maximum with full jitter; a `Retry-After` header
//! replaces it, in either of its forms (RFC 9110 §10.2.3): delta-seconds
//! (`120`) or an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`, and the two
//! obsolete date forms every recipient must accept), read against the wall
//! clock. Attempts and total time are both bounded.
//!
//! A 429 or 503 also pauses every other request of the client: see
//! [`crate::gate`].

use std::time::{Duration, Instant, SystemTime};

use mlc_common::time::days_from_civil;

use rand::Rng as _;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::config::RetryPolicy;
use crate::error::OracleError;

/// True for statuses worth retrying.
pub fn is_transient(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// The longest `Retry-After` taken at its word (a day); a larger one is
/// read as this, and then fails the request's time budget.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// The delay a `Retry-After` header asks for, now.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

/// The delay a `Retry-After` value asks for at wall-clock time `now`:
/// delta-seconds, or an HTTP date (a date in the past means no wait).
/// `None` for anything else.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Delta-seconds; too many digits to fit is a very long wait.
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = parse_http_date(value)?;
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let wait = u64::try_from(at.saturating_sub(now)).unwrap_or(0);
    Some(Duration::from_secs(wait).min(MAX_RETRY_AFTER))
}

/// Seconds since the epoch of an HTTP date (RFC 9110 §5.6.7) in any of its
/// three forms, always GMT:
///
/// - IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT` (what servers send),
/// - obsolete RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT` (two-digit years
///   read as 1970..=2069),
/// - obsolete asctime `Sun Nov  6 08:49:37 1994`.
///
/// The weekday is not checked against the date.
pub fn parse_http_date(text: &str) -> Option<i64> {
    let parts: Vec<&str> = text.split_ascii_whitespace().collect();
    let (day, month, year, clock) = match parts.as_slice() {
        [wd, d, m, y, t, "GMT"] if wd.ends_with(',') => (*d, *m, *y, *t),
        [wd, dmy, t, "GMT"] if wd.ends_with(',') => {
            let mut it = dmy.split('-');
            let (d, m, y) = (it.next()?, it.next()?, it.next()?);
            if it.next().is_some() || y.len() != 2 {
                return None;
            }
            (d, m, y, *t)
        }
        [_, m, d, t, y] => (*d, *m, *y, *t),
        _ => return None,
    };
    let day: u32 = digits(day, 1, 2)?;
    let month = MONTHS.iter().position(|m| *m == month)? as u32 + 1;
    let year: i32 = match year.len() {
        2 => {
            let yy: i32 = i32::try_from(digits(year, 2, 2)?).ok()?;
            if yy < 70 { 2000 + yy } else { 1900 + yy }
        }
        _ => i32::try_from(digits(year, 4, 4)?).ok()?,
    };
    let mut hms = clock.split(':');
    let (h, mi, s) = (hms.next()?, hms.next()?, hms.next()?);
    if hms.next().is_some() {
        return None;
    }
    let (h, mi, s) = (digits(h, 2, 2)?, digits(mi, 2, 2)?, digits(s, 2, 2)?);
    // 60 allows a leap second.
    if !(1..=31).contains(&day) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    // days_from_civil rolls an impossible day over; refuse it instead.
    if mlc_common::time::civil_from_days(days) != (year, month, day) {
        return None;
    }
    Some(i64::from(days) * 86_400 + i64::from(h * 3600 + mi * 60 + s))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `text` as a number of `min..=max` ASCII digits.
fn digits(text: &str, min: usize, max: usize) -> Option<u32> {
    if (min..=max).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
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
        let now = SystemTime::now();
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(MAX_RETRY_AFTER),
            "an absurd wait is capped, then fails the time budget"
        );
        for bad in ["", "-1", "1.5", "+3", "soon"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
        // A date in the past (2015) asks for no wait at all.
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        assert!(is_transient(StatusCode::TOO_MANY_REQUESTS));
        assert!(!is_transient(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn retry_after_http_dates() {
        // 1994-11-06T08:49:37Z, RFC 9110's example, in its three forms.
        let want = 784_111_777;
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(want));
        assert_eq!(
            parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(want)
        );
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(want));
        assert_eq!(
            parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(1_445_412_480)
        );
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 23:59:60 GMT"),
            Some(1_709_251_200),
            "leap day and leap second"
        );
        for bad in [
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
        // Relative to a clock: 90 s ahead of `now` waits 90 s.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_390);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(90))
        );
        let later = now + Duration::from_secs(3600);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", later),
            Some(Duration::ZERO)
        );
    }
}
