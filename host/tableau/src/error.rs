//! Errors of the Tableau client: every error names the tenant, the operation
//! and, where there is one, the data source; Tableau's own error code,
//! summary and detail are kept as they came. Secrets never appear here.

use std::fmt;
use std::path::PathBuf;

/// An error from talking to one tenant's Tableau site.
#[derive(Debug, thiserror::Error)]
#[error("tenant `{tenant}`{ds}: {operation}: {kind}", ds = DsLabel(.datasource))]
pub struct TableauError {
    /// The tenant whose site was called.
    pub tenant: String,
    /// The data source concerned, when there is one (name or id).
    pub datasource: Option<String>,
    /// What the client was doing, e.g. `publish`, `update data`, `sign in`.
    pub operation: &'static str,
    /// What went wrong.
    #[source]
    pub kind: Box<ErrorKind>,
}

struct DsLabel<'a>(&'a Option<String>);

impl fmt::Display for DsLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(ds) => write!(f, ", data source `{ds}`"),
            None => Ok(()),
        }
    }
}

/// The kinds of failure, each with what Tableau or the system said.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// Tableau answered with an error envelope (or an error status).
    #[error("HTTP {status}, Tableau error {code}: {summary}{}", detail_suffix(.detail))]
    Api {
        /// HTTP status.
        status: u16,
        /// Tableau's 6-digit code (`401002`), or the status when the body had none.
        code: String,
        /// `<summary>`.
        summary: String,
        /// `<detail>`.
        detail: String,
    },
    /// The request never got an answer (connection, timeout, TLS).
    #[error("request failed: {0}")]
    Transport(#[source] reqwest::Error),
    /// Still rate-limited (429) or failing (5xx) after the bounded retries.
    #[error("gave up after {attempts} attempts, last HTTP {status}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// Last status seen.
        status: u16,
    },
    /// A response body did not have the expected shape.
    #[error("unexpected response: {0}")]
    Response(String),
    /// A local file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The server speaks no REST API version this client supports.
    #[error("server offers REST API {offered}, this client needs 3.19 or later")]
    UnsupportedVersion {
        /// What `serverInfo` reported.
        offered: String,
    },
    /// Sign-in was redirected more often than a Cloud pod redirect needs.
    #[error("sign-in redirected too often (last to {location})")]
    TooManyRedirects {
        /// The last `Location`.
        location: String,
    },
    /// The configured project does not exist on the site.
    #[error("project `{0}` not found on the site")]
    ProjectNotFound(String),
    /// The data source does not exist.
    #[error("data source not found")]
    DatasourceNotFound,
    /// An update payload is over the server's cap; the caller must write it
    /// as several smaller parts.
    #[error("update payload part {part} is {size} bytes, over the {limit}-byte limit")]
    PayloadTooLarge {
        /// 1-based part number.
        part: usize,
        /// File size.
        size: u64,
        /// Configured limit.
        limit: u64,
    },
    /// An upsert batch was asked with nothing to do.
    #[error("invalid update request: {0}")]
    InvalidRequest(String),
    /// A job ended with `finishCode` 1 (failed); `notes` is Tableau's text.
    #[error("job {job_id} failed (finishCode {finish_code}): {}", notes_text(.notes))]
    JobFailed {
        /// The job.
        job_id: String,
        /// Tableau's finish code.
        finish_code: i32,
        /// The job's `<notes>`, when it had any.
        notes: Option<String>,
    },
    /// A job was cancelled (`finishCode` 2).
    #[error("job {job_id} was cancelled{}", notes_suffix(.notes))]
    JobCancelled {
        /// The job.
        job_id: String,
        /// The job's `<notes>`, when it had any.
        notes: Option<String>,
    },
    /// A job did not finish within the configured polling timeout.
    #[error("job {job_id} did not finish within {waited_secs} s")]
    JobTimeout {
        /// The job.
        job_id: String,
        /// Seconds waited.
        waited_secs: u64,
    },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

fn notes_text(notes: &Option<String>) -> &str {
    notes.as_deref().unwrap_or("Tableau gave no notes")
}

fn notes_suffix(notes: &Option<String>) -> String {
    notes
        .as_deref()
        .map(|n| format!(": {n}"))
        .unwrap_or_default()
}

impl TableauError {
    /// Tableau's error code, when Tableau answered with one.
    pub fn api_code(&self) -> Option<&str> {
        match self.kind.as_ref() {
            ErrorKind::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self.kind.as_ref() {
            ErrorKind::Api { status, .. } | ErrorKind::RetriesExhausted { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// True for `403007`: a data source of that name exists and the publish
    /// was neither an overwrite nor an append.
    pub fn is_already_exists(&self) -> bool {
        self.api_code() == Some("403007")
    }

    /// True when trying again later may succeed (transport trouble, 429/5xx
    /// after retries, job timeouts); false for refusals that will repeat.
    pub fn is_transient(&self) -> bool {
        match self.kind.as_ref() {
            ErrorKind::Transport(_)
            | ErrorKind::RetriesExhausted { .. }
            | ErrorKind::JobTimeout { .. } => true,
            ErrorKind::Api { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// Builds errors for one tenant and operation.
#[derive(Clone, Debug)]
pub(crate) struct Ctx {
    pub tenant: String,
    pub datasource: Option<String>,
    pub operation: &'static str,
}

impl Ctx {
    pub fn new(tenant: &str, operation: &'static str) -> Self {
        Self {
            tenant: tenant.to_owned(),
            datasource: None,
            operation,
        }
    }

    pub fn ds(mut self, datasource: &str) -> Self {
        self.datasource = Some(datasource.to_owned());
        self
    }

    pub fn err(&self, kind: ErrorKind) -> TableauError {
        TableauError {
            tenant: self.tenant.clone(),
            datasource: self.datasource.clone(),
            operation: self.operation,
            kind: Box::new(kind),
        }
    }
}
