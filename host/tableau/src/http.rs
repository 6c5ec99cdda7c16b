//! The HTTP layer under every call: one `reqwest` client (redirects off, so a
//! sign-in redirect can be re-POSTed by hand), bounded retries of 429 (after
//! `Retry-After`) and, for requests safe to repeat, of 5xx answers and
//! connection failures with doubling backoff. Whether a request is safe to
//! repeat is the caller's call: a chunk `PUT` never is.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};

use crate::config::{RetryConfig, TableauConfig};
use crate::error::{Ctx, ErrorKind, TableauError};
use crate::model::{ApiErrorBody, Element, parse_xml};

/// A complete answer: status, headers and the whole body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Tableau's error code in the body, if any.
    pub fn api_code(&self) -> Option<String> {
        ApiErrorBody::parse(&self.text())
            .map(|e| e.code)
            .filter(|c| !c.is_empty())
    }

    /// The answer as a typed API error.
    pub fn into_error(self, ctx: &Ctx) -> TableauError {
        let status = self.status.as_u16();
        let body = ApiErrorBody::parse(&self.text()).unwrap_or_else(|| ApiErrorBody {
            code: status.to_string(),
            summary: self.status.canonical_reason().unwrap_or("error").to_owned(),
            detail: excerpt(&self.text()),
        });
        ctx.err(ErrorKind::Api {
            status,
            code: if body.code.is_empty() {
                status.to_string()
            } else {
                body.code
            },
            summary: body.summary,
            detail: body.detail,
        })
    }

    /// Fails unless the status is 2xx.
    pub fn success(self, ctx: &Ctx) -> Result<Self, TableauError> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(self.into_error(ctx))
        }
    }

    /// Parses the body as XML; the error names what was expected.
    pub fn xml(&self, ctx: &Ctx, expected: &str) -> Result<Element, TableauError> {
        parse_xml(&self.text()).map_err(|e| {
            ctx.err(ErrorKind::Response(format!(
                "expected {expected} as XML: {e}; body starts {}",
                excerpt(&self.text())
            )))
        })
    }
}

/// The first 300 characters of a body, for error messages. Only used on
/// answers that carry no credentials (never on sign-in success bodies).
pub(crate) fn excerpt(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_owned(),
    }
}

/// The shared HTTP client and retry policy of one tenant.
pub(crate) struct Http {
    pub client: reqwest::Client,
    pub retry: RetryConfig,
}

impl Http {
    pub fn new(config: &TableauConfig, ctx: &Ctx) -> Result<Self, TableauError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
            .user_agent(concat!("ml-connector/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ctx.err(ErrorKind::Transport(e)))?;
        Ok(Self {
            client,
            retry: config.retry.clone(),
        })
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let ms = self
            .retry
            .initial_backoff_ms
            .saturating_mul(1u64 << attempt.min(20));
        Duration::from_millis(ms).min(Duration::from_secs(self.retry.max_wait_secs))
    }

    fn retry_after(&self, headers: &HeaderMap, attempt: u32) -> Duration {
        headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(self.retry.max_wait_secs)))
            .unwrap_or_else(|| self.backoff(attempt))
    }

    /// Sends the request `build` makes, retrying 429 always (the server did
    /// not process it) and 5xx / connection failures only when `idempotent`.
    /// Other answers, including a final 5xx, are returned for the caller.
    pub async fn send(
        &self,
        ctx: &Ctx,
        idempotent: bool,
        build: &(dyn Fn() -> RequestBuilder + Send + Sync),
    ) -> Result<Answer, TableauError> {
        let mut attempt: u32 = 0;
        loop {
            let result = build().send().await;
            metrics::counter!("mlc_tableau_requests_total", "tenant" => ctx.tenant.to_string(),
                "operation" => ctx.operation.to_string(),
                "status" => result.as_ref().map_or_else(|_| "error".to_owned(), |r| r.status().as_u16().to_string()))
            .increment(1);
            let last_try = attempt >= self.retry.max_retries;
            match result {
                Err(e) => {
                    if idempotent && !last_try && !e.is_builder() {
                        let wait = self.backoff(attempt);
                        tracing::warn!(tenant = %ctx.tenant, operation = ctx.operation, attempt, wait_ms = wait.as_millis() as u64, error = %e, "Tableau request failed, retrying");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(ctx.err(ErrorKind::Transport(e)));
                }
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        if last_try {
                            return Err(ctx.err(ErrorKind::RetriesExhausted {
                                attempts: attempt + 1,
                                status: status.as_u16(),
                            }));
                        }
                        let wait = self.retry_after(&headers, attempt);
                        tracing::warn!(tenant = %ctx.tenant, operation = ctx.operation, attempt, wait_ms = wait.as_millis() as u64, "Tableau rate-limited the request (429), waiting");
                        // Drain the body so the connection can be reused.
                        let _ = response.bytes().await;
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                        continue;
                    }
                    if status.is_server_error() && idempotent && !last_try {
                        let wait = self.backoff(attempt);
                        tracing::warn!(tenant = %ctx.tenant, operation = ctx.operation, attempt, status = status.as_u16(), wait_ms = wait.as_millis() as u64, "Tableau answered 5xx, retrying");
                        let _ = response.bytes().await;
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                        continue;
                    }
                    let body = match response.bytes().await {
                        Ok(b) => b,
                        Err(e) if idempotent && !last_try => {
                            let wait = self.backoff(attempt);
                            tracing::warn!(tenant = %ctx.tenant, operation = ctx.operation, attempt, error = %e, "reading Tableau's answer failed, retrying");
                            tokio::time::sleep(wait).await;
                            attempt += 1;
                            continue;
                        }
                        Err(e) => return Err(ctx.err(ErrorKind::Transport(e))),
                    };
                    return Ok(Answer {
                        status,
                        headers,
                        body,
                    });
                }
            }
        }
    }
}
