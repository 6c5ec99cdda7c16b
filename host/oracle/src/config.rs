//! Tenant-facing configuration of the Oracle Fusion client.
//!
//! [`OracleConfig`] is read from a tenant's configuration file, so every
//! field is documented, unknown fields are refused and every tunable has an
//! explicit default.

use std::time::Duration;

use mlc_common::Secret;
use serde::Deserialize;

/// The `REST-Framework-Version` every request pins.
///
/// Version 1 (Oracle's default) reads `q` as query-by-example, where ` and `
/// silently returns zero rows; the key-set continuation filter needs the
/// row-match dialect (`or`, parentheses, comparisons) of version 2 or later.
/// Version 3 and later return an expanded child as a collection object
/// (`items`, `count`, `hasMore`) instead of a bare array, which lets the
/// client see when Oracle truncated a child collection instead of silently
/// exporting a partial invoice. We pin 3, the lowest version with both.
pub const DEFAULT_FRAMEWORK_VERSION: u8 = 3;

/// Oracle's effective page cap: a larger `limit` is silently truncated.
pub const MAX_PAGE_SIZE: u32 = 499;

/// Default [`OracleConfig::max_concurrency`].
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;

/// Largest [`OracleConfig::max_concurrency`].
pub const MAX_CONCURRENCY: usize = 32;

/// Largest [`OracleConfig::requests_per_minute`] (Oracle's published tiers
/// top out at 4,500 a minute per identity domain).
pub const MAX_REQUESTS_PER_MINUTE: u32 = 100_000;

/// Connection to one tenant's Oracle Fusion pod.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OracleConfig {
    /// Resource root, up to and including the version segment, e.g.
    /// `https://acme.fa.us2.oraclecloud.com/fscmRestApi/resources/11.13.18.05`.
    pub base_url: String,
    /// OAuth 2.0 token endpoint of the tenant's identity domain, e.g.
    /// `https://idcs-<id>.identity.oraclecloud.com/oauth2/v1/token`.
    pub token_url: String,
    /// Client id of the confidential application (client credentials grant).
    pub client_id: String,
    /// Client secret of the confidential application; never logged.
    pub client_secret: Secret,
    /// Scope from the Fusion Applications resource of the app's token
    /// issuance policy, e.g. `urn:opc:resource:fa:instanceid=<id>urn:opc:resource:consumer::all`.
    pub scope: String,
    /// The refresh token of the authorization-code grant, when the tenant
    /// uses it: tokens are then obtained with `grant_type=refresh_token`
    /// (the client still authenticates with its id and secret) and a
    /// rotated refresh token replaces it ([`crate::OracleClient::refresh_token`]).
    /// Never in a configuration file: it comes from the store, sealed.
    #[serde(skip)]
    pub refresh_token: Option<Secret>,
    /// `REST-Framework-Version` sent with every request (2 or later; see
    /// [`DEFAULT_FRAMEWORK_VERSION`] for why 3 is the default).
    #[serde(default = "default_framework_version")]
    pub framework_version: u8,
    /// Records per page (`limit`), 1 to 499. Oracle silently caps larger
    /// values at 499.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Seconds an incremental pull re-reads before the stored cursor, to catch
    /// records committed late with an earlier `LastUpdateDate` (default 300).
    #[serde(default = "default_overlap_secs")]
    pub overlap_secs: u64,
    /// Seconds one HTTP request may take, body included (default 60).
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// Resource requests in flight at once, across every pull of one client
    /// (1 to 32, default 4). A sliced first load runs this many slices side
    /// by side. The client lowers its own limit by one for every 429 and
    /// raises it again after a run of successes, never above this value.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Resource requests per minute, across every pull of one client
    /// (optional, 1 to 100000; default none: only `max_concurrency` bounds
    /// the rate). Requests are spaced evenly, one every 60.5 s / this value,
    /// so that no 60-second window (as Oracle counts, give or take half a
    /// second of network jitter) holds more. Set it to the identity domain's
    /// tier (150 to 4,500 a minute) minus what other clients of the domain use.
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// How transient failures are retried.
    #[serde(default)]
    pub retry: RetryPolicy,
}

/// Retry policy for transient failures: 429, 500, 502, 503, 504, timeouts
/// and dropped connections. Backoff doubles from `initial_backoff_ms` up to
/// `max_backoff_ms` with full jitter; a `Retry-After` header wins over the
/// computed delay.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts per request, the first included (default 6).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First backoff ceiling in milliseconds (default 500).
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Largest backoff in milliseconds (default 30000).
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Seconds one request may spend across all its attempts and waits
    /// (default 300); a `Retry-After` that does not fit fails at once.
    #[serde(default = "default_max_total_secs")]
    pub max_total_secs: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            max_total_secs: default_max_total_secs(),
        }
    }
}

fn default_framework_version() -> u8 {
    DEFAULT_FRAMEWORK_VERSION
}
fn default_page_size() -> u32 {
    MAX_PAGE_SIZE
}
fn default_overlap_secs() -> u64 {
    300
}
fn default_request_timeout_secs() -> u64 {
    60
}
fn default_max_concurrency() -> usize {
    DEFAULT_MAX_CONCURRENCY
}
fn default_max_attempts() -> u32 {
    6
}
fn default_initial_backoff_ms() -> u64 {
    500
}
fn default_max_backoff_ms() -> u64 {
    30_000
}
fn default_max_total_secs() -> u64 {
    300
}

/// A configuration value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Oracle configuration: {0}")]
pub struct ConfigError(pub String);

impl OracleConfig {
    /// A configuration with every default, for the given endpoints and
    /// credentials.
    pub fn new(
        base_url: impl Into<String>,
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Secret,
        scope: impl Into<String>,
    ) -> Self {
        Self {
            base_url: base_url.into(),
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret,
            scope: scope.into(),
            refresh_token: None,
            framework_version: default_framework_version(),
            page_size: default_page_size(),
            overlap_secs: default_overlap_secs(),
            request_timeout_secs: default_request_timeout_secs(),
            max_concurrency: default_max_concurrency(),
            requests_per_minute: None,
            retry: RetryPolicy::default(),
        }
    }

    /// Checks ranges that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(2..=9).contains(&self.framework_version) {
            return Err(ConfigError(format!(
                "framework_version {} is outside 2..=9 (version 1 has no row-match `q`)",
                self.framework_version
            )));
        }
        if !(1..=MAX_PAGE_SIZE).contains(&self.page_size) {
            return Err(ConfigError(format!(
                "page_size {} is outside 1..={MAX_PAGE_SIZE}",
                self.page_size
            )));
        }
        if self.request_timeout_secs == 0 {
            return Err(ConfigError("request_timeout_secs must be positive".into()));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.max_concurrency) {
            return Err(ConfigError(format!(
                "max_concurrency {} is outside 1..={MAX_CONCURRENCY}",
                self.max_concurrency
            )));
        }
        if let Some(n) = self.requests_per_minute
            && !(1..=MAX_REQUESTS_PER_MINUTE).contains(&n)
        {
            return Err(ConfigError(format!(
                "requests_per_minute {n} is outside 1..={MAX_REQUESTS_PER_MINUTE}"
            )));
        }
        if self.retry.max_attempts == 0 {
            return Err(ConfigError("retry.max_attempts must be at least 1".into()));
        }
        for (name, url) in [("base_url", &self.base_url), ("token_url", &self.token_url)] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError(format!("{name} {url:?} is not an http(s) URL")));
            }
        }
        Ok(())
    }

    /// The overlap window in microseconds.
    pub fn overlap_micros(&self) -> i64 {
        i64::try_from(self.overlap_secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
    }

    /// The per-request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_fields() {
        let cfg: OracleConfig = serde_json::from_str(
            r#"{"base_url":"http://127.0.0.1:1/fscmRestApi/resources/11.13.18.05",
                "token_url":"http://127.0.0.1:1/oauth2/v1/token","client_id":"c",
                "client_secret":"s","scope":"x"}"#,
        )
        .unwrap();
        assert_eq!(cfg.page_size, 499);
        assert_eq!(cfg.overlap_secs, 300);
        assert_eq!(cfg.framework_version, 3);
        assert_eq!(cfg.retry, RetryPolicy::default());
        assert_eq!(cfg.max_concurrency, 4);
        assert_eq!(cfg.requests_per_minute, None);
        cfg.validate().unwrap();
        assert!(!format!("{cfg:?}").contains("\"s\""));

        let err = serde_json::from_str::<OracleConfig>(
            r#"{"base_url":"http://x","token_url":"http://y","client_id":"c",
                "client_secret":"s","scope":"x","pagesize":10}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("pagesize"), "{err}");
    }

    #[test]
    fn validation_rejects_out_of_range() {
        let mut cfg = OracleConfig::new("http://a", "http://b", "c", Secret::new("s"), "x");
        cfg.page_size = 500;
        assert!(cfg.validate().unwrap_err().0.contains("page_size"));
        cfg.page_size = 499;
        cfg.framework_version = 1;
        assert!(cfg.validate().unwrap_err().0.contains("framework_version"));
        cfg.framework_version = 3;
        for bad in [0, 33] {
            cfg.max_concurrency = bad;
            assert!(cfg.validate().unwrap_err().0.contains("max_concurrency"));
        }
        cfg.max_concurrency = 32;
        cfg.requests_per_minute = Some(0);
        assert!(
            cfg.validate()
                .unwrap_err()
                .0
                .contains("requests_per_minute")
        );
        cfg.requests_per_minute = Some(150);
        cfg.validate().unwrap();
    }
}
