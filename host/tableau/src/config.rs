//! Per-tenant Tableau settings: where the site is, which Personal Access
//! Token signs in, and the knobs of publishing (chunk size, update payload
//! cap, job polling, retries, timeouts).
//!
//! Every field has an explicit default except the ones that name the site and
//! the token; unknown keys are refused so a typo never silently falls back to
//! a default.

use std::time::Duration;

use mlc_common::Secret;
use serde::Deserialize;

/// One mebibyte, the unit Tableau's size limits are quoted in.
pub const MB: u64 = 1024 * 1024;

/// Largest body Tableau accepts in one publish request; bigger files must go
/// through a file upload session (reference §3).
pub const SINGLE_REQUEST_LIMIT: u64 = 64 * MB;

/// Lowest REST API version this client speaks (Server 2023.1).
pub const MIN_API_VERSION: ApiVersion = ApiVersion {
    major: 3,
    minor: 19,
};

/// Highest REST API version this client speaks (Cloud Feb 2026).
pub const MAX_API_VERSION: ApiVersion = ApiVersion {
    major: 3,
    minor: 28,
};

/// A REST API version `major.minor` (never with the update-release digit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    /// Major part, `3`.
    pub major: u16,
    /// Minor part, e.g. `25`.
    pub minor: u16,
}

impl ApiVersion {
    /// Parses `3.25` (an update digit such as `3.25.1` is dropped, as the URL
    /// must not carry it). `None` when the text is not a version.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Self { major, minor })
    }

    /// True when this client can speak the version.
    pub fn is_supported(self) -> bool {
        (MIN_API_VERSION..=MAX_API_VERSION).contains(&self)
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl<'de> Deserialize<'de> for ApiVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("`{text}` is not a REST API version like 3.25"))
        })
    }
}

/// Settings of one tenant's Tableau site.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableauConfig {
    /// Base URL of the server or Cloud pod, e.g. `https://10ay.online.tableau.com`
    /// (no `/api` path). A non-pod Cloud host is followed through its sign-in
    /// redirect; the redirected host is then used for every call.
    pub server_url: String,
    /// REST API version to pin, as a string such as `"3.22"` (a number would
    /// lose the difference between 3.2 and 3.20). When absent, sign-in asks
    /// `serverInfo` and uses the highest version both sides speak (3.19–3.28).
    #[serde(default)]
    pub api_version: Option<ApiVersion>,
    /// The site's URL name (`contentUrl`); empty for Tableau Server's default site.
    #[serde(default)]
    pub site_content_url: String,
    /// Name of the Personal Access Token that signs in.
    pub pat_name: String,
    /// Secret of the Personal Access Token; never logged.
    pub pat_secret: Secret,
    /// Name of the project the tenant's data sources live in.
    pub project: String,
    /// Files larger than this go through a chunked file upload, and each
    /// chunk has this size (bytes). Default 16 MB: a chunk is held in memory
    /// while it is sent, so this bounds what a publish adds to the process
    /// (Tableau's Python client uses 50 MB); values above 64 MB are capped at
    /// 64 MB, the single-request limit.
    #[serde(default = "default_chunk_size")]
    pub chunk_size: u64,
    /// Largest update payload (`.hyper`) one *Update Data in Hyper* request may
    /// carry (bytes). Default 100 MB, the server default.
    #[serde(default = "default_update_payload_limit")]
    pub update_payload_limit: u64,
    /// How long a session lives on this server (seconds). Default: 120 minutes
    /// for Tableau Cloud hosts (`*.online.tableau.com`), 240 minutes otherwise.
    #[serde(default)]
    pub session_ttl_secs: Option<u64>,
    /// Sign in again this long before the session's expected end (seconds).
    /// Default 600.
    #[serde(default = "default_session_refresh_margin_secs")]
    pub session_refresh_margin_secs: u64,
    /// Publish with `asJob=true` and poll the publish job instead of holding the
    /// request open (avoids 504s on large synchronous publishes). Default false.
    #[serde(default)]
    pub publish_as_job: bool,
    /// Job polling backoff.
    #[serde(default)]
    pub job_poll: JobPollConfig,
    /// Retries of rate-limited (429) and failed (5xx, connection) requests.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Per-request timeout (seconds) for ordinary calls. Default 60.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// Per-request timeout (seconds) for calls that carry a file (publish,
    /// chunk upload). Default 900.
    #[serde(default = "default_upload_timeout_secs")]
    pub upload_timeout_secs: u64,
    /// TCP connect timeout (seconds). Default 10.
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
}

/// How job status is polled: exponential backoff from `initial_ms` doubling
/// up to `max_ms`, until the job completes or `timeout_secs` pass.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobPollConfig {
    /// First wait between polls (milliseconds). Default 500.
    #[serde(default = "default_poll_initial_ms")]
    pub initial_ms: u64,
    /// Longest wait between polls (milliseconds). Default 10000.
    #[serde(default = "default_poll_max_ms")]
    pub max_ms: u64,
    /// Give up on a job after this long (seconds); the batch then fails and is
    /// retried later with the same RequestID. Default 3600.
    #[serde(default = "default_poll_timeout_secs")]
    pub timeout_secs: u64,
}

/// Bounded retries of requests that are safe to send again.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts after the first one. Default 4.
    #[serde(default = "default_retry_max")]
    pub max_retries: u32,
    /// First backoff after a 5xx or a connection error (milliseconds),
    /// doubling per attempt. Default 500.
    #[serde(default = "default_retry_initial_ms")]
    pub initial_backoff_ms: u64,
    /// Longest backoff, also the cap on a server's `Retry-After` (seconds).
    /// Default 120.
    #[serde(default = "default_retry_max_wait_secs")]
    pub max_wait_secs: u64,
    /// Times a chunked upload is started over after a chunk failed. Default 2.
    #[serde(default = "default_upload_restarts")]
    pub upload_restarts: u32,
}

fn default_chunk_size() -> u64 {
    16 * MB
}
fn default_update_payload_limit() -> u64 {
    100 * MB
}
fn default_session_refresh_margin_secs() -> u64 {
    600
}
fn default_request_timeout_secs() -> u64 {
    60
}
fn default_upload_timeout_secs() -> u64 {
    900
}
fn default_connect_timeout_secs() -> u64 {
    10
}
fn default_poll_initial_ms() -> u64 {
    500
}
fn default_poll_max_ms() -> u64 {
    10_000
}
fn default_poll_timeout_secs() -> u64 {
    3600
}
fn default_retry_max() -> u32 {
    4
}
fn default_retry_initial_ms() -> u64 {
    500
}
fn default_retry_max_wait_secs() -> u64 {
    120
}
fn default_upload_restarts() -> u32 {
    2
}

impl Default for JobPollConfig {
    fn default() -> Self {
        Self {
            initial_ms: default_poll_initial_ms(),
            max_ms: default_poll_max_ms(),
            timeout_secs: default_poll_timeout_secs(),
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: default_retry_max(),
            initial_backoff_ms: default_retry_initial_ms(),
            max_wait_secs: default_retry_max_wait_secs(),
            upload_restarts: default_upload_restarts(),
        }
    }
}

impl TableauConfig {
    /// A configuration with every knob at its default.
    pub fn new(
        server_url: impl Into<String>,
        site_content_url: impl Into<String>,
        pat_name: impl Into<String>,
        pat_secret: Secret,
        project: impl Into<String>,
    ) -> Self {
        Self {
            server_url: server_url.into(),
            api_version: None,
            site_content_url: site_content_url.into(),
            pat_name: pat_name.into(),
            pat_secret,
            project: project.into(),
            chunk_size: default_chunk_size(),
            update_payload_limit: default_update_payload_limit(),
            session_ttl_secs: None,
            session_refresh_margin_secs: default_session_refresh_margin_secs(),
            publish_as_job: false,
            job_poll: JobPollConfig::default(),
            retry: RetryConfig::default(),
            request_timeout_secs: default_request_timeout_secs(),
            upload_timeout_secs: default_upload_timeout_secs(),
            connect_timeout_secs: default_connect_timeout_secs(),
        }
    }

    /// True when the server URL names a Tableau Cloud host.
    pub fn is_cloud(&self) -> bool {
        host_of(&self.server_url).is_some_and(|h| h.ends_with(".online.tableau.com"))
    }

    /// How long a session is trusted: the configured TTL, else 120 minutes
    /// on Cloud and 240 on Server.
    pub fn session_ttl(&self) -> Duration {
        let secs =
            self.session_ttl_secs
                .unwrap_or(if self.is_cloud() { 120 * 60 } else { 240 * 60 });
        Duration::from_secs(secs)
    }

    /// How long a session is used before signing in again: the TTL minus the
    /// refresh margin, but never less than half the TTL.
    pub fn session_reuse_window(&self) -> Duration {
        let ttl = self.session_ttl();
        let margin = Duration::from_secs(self.session_refresh_margin_secs);
        ttl.checked_sub(margin)
            .filter(|w| *w >= ttl / 2)
            .unwrap_or(ttl / 2)
    }

    /// Chunk size actually used: at least 1 byte, at most 64 MB.
    pub fn effective_chunk_size(&self) -> u64 {
        self.chunk_size.clamp(1, SINGLE_REQUEST_LIMIT)
    }

    /// Checks values that serde cannot: a usable URL, names present.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.server_url.starts_with("http://") || self.server_url.starts_with("https://")) {
            return Err(format!(
                "server_url `{}` must start with http:// or https://",
                self.server_url
            ));
        }
        if host_of(&self.server_url).is_none() {
            return Err(format!("server_url `{}` has no host", self.server_url));
        }
        if self.pat_name.is_empty() {
            return Err("pat_name is empty".into());
        }
        if self.pat_secret.is_empty() {
            return Err("pat_secret is empty".into());
        }
        if self.project.is_empty() {
            return Err("project is empty".into());
        }
        if let Some(v) = self.api_version
            && !v.is_supported()
        {
            return Err(format!(
                "api_version {v} is outside {MIN_API_VERSION}–{MAX_API_VERSION}"
            ));
        }
        if self.update_payload_limit == 0 {
            return Err("update_payload_limit must be above 0".into());
        }
        Ok(())
    }
}

/// The host part of `scheme://host[:port]/...`.
pub(crate) fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => host.split(':').next()?,
    };
    (!host.is_empty()).then_some(host)
}

/// `scheme://authority` of a URL: the origin every API path hangs off.
pub(crate) fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}
