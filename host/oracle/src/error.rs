//! Errors of the Oracle Fusion client. Every variant names the resource (or
//! the token endpoint) and what failed; none carries a secret or a token.

use std::time::Duration;

/// What went wrong talking to Oracle Fusion.
#[derive(Debug, thiserror::Error)]
pub enum OracleError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The token endpoint refused the client credentials or the scope.
    #[error("token endpoint refused the client credentials ({status}): {detail}")]
    TokenRejected {
        /// HTTP status.
        status: u16,
        /// OAuth `error`/`error_description`, or the body text.
        detail: String,
    },
    /// The identity domain refused the stored refresh token (revoked or
    /// expired): an operator must sign in again.
    #[error(
        "Oracle refused the tenant's refresh token ({detail}): authorize again with `ml-connector tenant authorize TENANT`"
    )]
    RefreshRevoked {
        /// OAuth `error`/`error_description`.
        detail: String,
    },
    /// The token endpoint answered 200 with a body that is not a token.
    #[error("token endpoint sent an unusable answer: {detail}")]
    TokenMalformed {
        /// What was wrong.
        detail: String,
    },
    /// A resource answered 401 again right after a fresh token.
    #[error("{resource}: unauthorized even with a freshly issued token")]
    Unauthorized {
        /// Resource path.
        resource: String,
    },
    /// Oracle refused the request (400, 403, 404, ...); not retried.
    #[error("{resource}: Oracle refused the request ({status}): {detail}")]
    Rejected {
        /// Resource path.
        resource: String,
        /// HTTP status.
        status: u16,
        /// Oracle's error detail (`o:errorDetails[].detail`, `title`, or the text).
        detail: String,
    },
    /// Transient failures outlasted the retry policy.
    #[error("{resource}: gave up after {attempts} attempts in {elapsed:?}; last failure: {last}")]
    RetriesExhausted {
        /// Resource path (or `token`).
        resource: String,
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// The last failure.
        last: String,
    },
    /// The request could not be built or sent for a non-transient reason.
    #[error("{resource}: request failed: {source}")]
    Http {
        /// Resource path (or `token`).
        resource: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The answer is not JSON.
    #[error("{resource}: malformed JSON in the page after {after}: {source}")]
    MalformedJson {
        /// Resource path.
        resource: String,
        /// Where the pull stood (the last position delivered).
        after: String,
        /// The parser's error (line and column).
        #[source]
        source: serde_json::Error,
    },
    /// The answer is JSON but not a collection envelope Oracle would send.
    #[error("{resource}: wrong collection envelope in the page after {after}: {problem}")]
    Envelope {
        /// Resource path.
        resource: String,
        /// Where the pull stood.
        after: String,
        /// What is missing or inconsistent.
        problem: String,
    },
    /// An item is unusable (no key, bad timestamp, truncated child, out of order).
    #[error("{resource}: item {index} of the page after {after} is unusable: {problem}")]
    BadItem {
        /// Resource path.
        resource: String,
        /// Zero-based index in the page.
        index: usize,
        /// Where the pull stood.
        after: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A slice of a sliced pull ended without saying why (its task
    /// panicked); it is read again from its last page on the next call.
    #[error("{resource}: slice {slice} of a sliced pull stopped: {detail}")]
    SliceFailed {
        /// Resource path.
        resource: String,
        /// Which slice (0 is the oldest window).
        slice: usize,
        /// What the runtime said.
        detail: String,
    },
}
