//! Errors: [`ApiError`] is what a REST caller sees (`<error code="401002">`
//! with summary and detail, the code being the HTTP status followed by a
//! three-digit sub-code); [`SandboxError`] is what starting the sandbox can
//! fail with.

use std::path::PathBuf;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use crate::render::{Format, Node, ts_response};

/// An error answer of the REST API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Six-digit Tableau error code (`"401002"`).
    pub code: String,
    /// Short summary (`"Unauthorized Access"`).
    pub summary: String,
    /// Human-readable detail.
    pub detail: String,
    /// Seconds for a `Retry-After` header (429 answers).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &str, summary: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            summary: summary.to_owned(),
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// `400000`: malformed request.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "400000", "Bad Request", detail)
    }

    /// `401000`: no auth token was sent.
    pub fn no_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "401000",
            "Unauthorized Access",
            "Authentication token was not provided (X-Tableau-Auth header missing).",
        )
    }

    /// `401001`: sign-in failed.
    pub fn signin_failed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "401001", "Signin Error", detail)
    }

    /// `401002`: the token is not (or no longer) valid.
    pub fn invalid_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "401002",
            "Unauthorized Access",
            "Invalid authentication credentials were provided.",
        )
    }

    /// A `404` with the resource-specific code.
    pub fn not_found(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, "Resource Not Found", detail)
    }

    /// `405000`: the path exists but not for this method.
    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "405000",
            "Method Not Allowed",
            format!("Request method '{method}' is not supported for this resource."),
        )
    }

    /// `413000`: the request or payload is bigger than allowed.
    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "413000",
            "Payload Too Large",
            detail,
        )
    }

    /// `429000` with `Retry-After`.
    pub fn too_many_requests(retry_after: u64) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "429000",
            "Too Many Requests",
            format!("Too many requests. Please retry after {retry_after} seconds."),
        );
        error.retry_after = Some(retry_after);
        error
    }

    /// `500000`: something failed inside the sandbox.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "500000",
            "Internal Server Error",
            detail,
        )
    }

    /// The response in the requested format.
    pub fn into_response(self, format: Format) -> Response {
        let error = Node::new("error")
            .attr("code", self.code.clone())
            .child(Node::new("summary").text(self.summary.clone()))
            .child(Node::new("detail").text(self.detail.clone()));
        let mut response = ts_response(format, self.status, vec![error]);
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// Why the sandbox could not start or stop.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A data directory could not be prepared.
    #[error("cannot prepare the sandbox data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// hyperd could not be found or started.
    #[error("cannot start hyperd for the Tableau sandbox: {0}")]
    Hyperd(String),
    /// The HTTP server failed.
    #[error("the Tableau sandbox HTTP server failed: {0}")]
    Serve(std::io::Error),
}
