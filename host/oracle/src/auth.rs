//! OAuth 2.0 client-credentials token cache for one tenant.
//!
//! The token is fetched with HTTP Basic client authentication and a form
//! body (`grant_type=client_credentials&scope=...`), cached, and refreshed
//! ahead of expiry: 5 minutes early for Oracle's 3600 s token (at 55
//! minutes), and 1/12 of the lifetime early for shorter ones. Refreshes are
//! single-flight: the cache lock is held across the token request, so
//! concurrent pulls of one tenant wait for one refresh instead of each
//! asking. A 401 from a resource invalidates exactly the token that was
//! refused ([`TokenCache::invalidate`]), so concurrent 401s cause one refresh.
//! The token value lives in a [`Secret`] and is never logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use mlc_common::Secret;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::config::OracleConfig;
use crate::error::OracleError;
use crate::retry::{Attempt, Backoff, classify_send_error, retry_after};

/// Longest head start of a refresh before expiry.
const MAX_REFRESH_EARLY: Duration = Duration::from_secs(300);

/// How long before expiry a token of `lifetime` is refreshed: 1/12 of the
/// lifetime, at most 5 minutes (3600 s -> 300 s; 60 s -> 5 s).
pub fn refresh_early(lifetime: Duration) -> Duration {
    (lifetime / 12).min(MAX_REFRESH_EARLY)
}

/// A bearer token handed to a request, with the generation it belongs to.
#[derive(Clone)]
pub struct Bearer {
    /// The access token.
    pub token: Secret,
    /// Increases with every fetched token; pass it back to
    /// [`TokenCache::invalidate`] after a 401.
    pub generation: u64,
}

struct Cached {
    token: Secret,
    refresh_at: Instant,
    generation: u64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<serde_json::Value>,
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: Option<String>,
    error_description: Option<String>,
}

/// The token cache of one tenant; share it (inside the client) across pulls.
pub struct TokenCache {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: Secret,
    scope: String,
    /// The authorization-code grant's refresh token (rotated in place).
    refresh: std::sync::Mutex<Option<Secret>>,
    backoff: Backoff,
    state: Mutex<Option<Cached>>,
    fetches: AtomicU64,
}

impl TokenCache {
    /// A cache using `http` for token requests.
    pub fn new(http: reqwest::Client, config: &OracleConfig) -> Self {
        Self {
            http,
            token_url: config.token_url.clone(),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            scope: config.scope.clone(),
            refresh: std::sync::Mutex::new(config.refresh_token.clone()),
            backoff: Backoff::new(&config.retry),
            state: Mutex::new(None),
            fetches: AtomicU64::new(0),
        }
    }

    /// The refresh token now in use (a rotated one replaces the one
    /// configured); `None` for the client-credentials grant.
    pub fn refresh_token(&self) -> Option<Secret> {
        self.refresh
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Token requests made so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// A valid token: the cached one, or a fresh one when it is due for
    /// refresh. Concurrent callers share one refresh.
    pub async fn bearer(&self) -> Result<Bearer, OracleError> {
        let mut state = self.state.lock().await;
        if let Some(cached) = state.as_ref()
            && Instant::now() < cached.refresh_at
        {
            return Ok(Bearer {
                token: cached.token.clone(),
                generation: cached.generation,
            });
        }
        let previous = state.as_ref().map_or(0, |c| c.generation);
        let (token, lifetime) = self.fetch().await?;
        let generation = previous + 1;
        let refresh_at = Instant::now() + lifetime.saturating_sub(refresh_early(lifetime));
        tracing::debug!(
            generation,
            lifetime_secs = lifetime.as_secs(),
            "fetched Oracle access token"
        );
        *state = Some(Cached {
            token: token.clone(),
            refresh_at,
            generation,
        });
        Ok(Bearer { token, generation })
    }

    /// Drops the token of `generation` after a resource refused it; a newer
    /// token (fetched meanwhile by a concurrent caller) is kept.
    pub async fn invalidate(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if let Some(cached) = state.as_mut()
            && cached.generation == generation
        {
            // Keep the generation counter, force a refresh.
            cached.refresh_at = Instant::now();
        }
    }

    async fn fetch(&self) -> Result<(Secret, Duration), OracleError> {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.client_id,
            self.client_secret.expose()
        ));
        let mut attempt = Attempt::start();
        loop {
            self.fetches.fetch_add(1, Ordering::Relaxed);
            let sent = self
                .http
                .post(&self.token_url)
                .header(reqwest::header::AUTHORIZATION, format!("Basic {basic}"))
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded;charset=UTF-8",
                )
                .header(reqwest::header::ACCEPT, "application/json")
                .body(match self.refresh_token() {
                    Some(r) => format!(
                        "grant_type=refresh_token&refresh_token={}",
                        form_encode(r.expose())
                    ),
                    None => format!(
                        "grant_type=client_credentials&scope={}",
                        form_encode(&self.scope)
                    ),
                })
                .send()
                .await;
            let failure = match sent {
                Err(e) => match classify_send_error(&e) {
                    Some(text) => (text, None),
                    None => {
                        return Err(OracleError::Http {
                            resource: "token".into(),
                            source: e.without_url(),
                        });
                    }
                },
                Ok(resp) => {
                    let status = resp.status();
                    let wait = retry_after(resp.headers());
                    match resp.text().await {
                        Err(e) => (format!("reading token answer: {e}"), None),
                        Ok(body) if status.is_success() => {
                            let (token, lifetime, rotated) = parse_token(&body)?;
                            if let Some(r) = rotated {
                                let mut current = self
                                    .refresh
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                                if current.is_some() {
                                    *current = Some(r);
                                }
                            }
                            return Ok((token, lifetime));
                        }
                        Ok(_) if crate::retry::is_transient(status) => {
                            (format!("token endpoint answered {}", status.as_u16()), wait)
                        }
                        Ok(body) => {
                            let detail = oauth_detail(&body);
                            if self.refresh_token().is_some() && body.contains("invalid_grant") {
                                return Err(OracleError::RefreshRevoked { detail });
                            }
                            return Err(OracleError::TokenRejected {
                                status: status.as_u16(),
                                detail,
                            });
                        }
                    }
                }
            };
            let delay = self
                .backoff
                .next_delay(&mut attempt, failure.1, "token", &failure.0)?;
            tracing::warn!(attempt = attempt.attempts, delay_ms = delay.as_millis() as u64, failure = %failure.0, "token request failed, retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

/// The authorization-code grant's sign-in, step 1: the URL an operator
/// opens. The scope asks for `offline_access` too, so the identity domain
/// issues a refresh token; `state` comes back with the code.
pub fn authorize_url(
    authorize_url: &str,
    client_id: &str,
    redirect_uri: &str,
    scope: &str,
    state: &str,
) -> String {
    format!(
        "{authorize_url}?response_type=code&client_id={}&redirect_uri={}&scope={}&state={}",
        form_encode(client_id),
        form_encode(redirect_uri),
        form_encode(&format!("{scope} offline_access")),
        form_encode(state)
    )
}

/// The authorization-code grant's sign-in, step 2: exchanges the `code`
/// the identity domain sent to `redirect_uri` for tokens at the token URL
/// of `config` (the client authenticates with its id and secret) and
/// returns the refresh token, which the caller stores sealed.
pub async fn exchange_code(
    config: &OracleConfig,
    code: &str,
    redirect_uri: &str,
) -> Result<Secret, OracleError> {
    let http = reqwest::Client::builder()
        .timeout(config.request_timeout())
        .build()
        .map_err(|source| OracleError::Http {
            resource: "token".into(),
            source,
        })?;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        config.client_id,
        config.client_secret.expose()
    ));
    let answer = http
        .post(&config.token_url)
        .header(reqwest::header::AUTHORIZATION, format!("Basic {basic}"))
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded;charset=UTF-8",
        )
        .header(reqwest::header::ACCEPT, "application/json")
        .body(format!(
            "grant_type=authorization_code&code={}&redirect_uri={}",
            form_encode(code),
            form_encode(redirect_uri)
        ))
        .send()
        .await
        .map_err(|e| OracleError::Http {
            resource: "token".into(),
            source: e.without_url(),
        })?;
    let status = answer.status();
    let body = answer.text().await.map_err(|e| OracleError::Http {
        resource: "token".into(),
        source: e.without_url(),
    })?;
    if !status.is_success() {
        return Err(OracleError::TokenRejected {
            status: status.as_u16(),
            detail: oauth_detail(&body),
        });
    }
    match parse_token(&body)? {
        (_, _, Some(refresh)) => Ok(refresh),
        (_, _, None) => Err(OracleError::TokenMalformed {
            detail: "no refresh_token: the confidential app must allow the refresh token grant, and the scope must include offline_access".into(),
        }),
    }
}

/// The access token, its lifetime and a rotated refresh token, if sent.
fn parse_token(body: &str) -> Result<(Secret, Duration, Option<Secret>), OracleError> {
    let answer: TokenAnswer =
        serde_json::from_str(body).map_err(|e| OracleError::TokenMalformed {
            detail: format!("not a JSON token answer: {e}"),
        })?;
    let token = answer
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OracleError::TokenMalformed {
            detail: "no access_token".into(),
        })?;
    if let Some(kind) = &answer.token_type
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(OracleError::TokenMalformed {
            detail: format!("token_type {kind:?} is not Bearer"),
        });
    }
    // `expires_in` is a number per RFC 6749; some servers send it as a
    // string, which we accept. Missing: assume Oracle's documented 3600 s.
    let secs = match answer.expires_in {
        None => 3600,
        Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or(0),
        Some(_) => 0,
    };
    if secs == 0 {
        return Err(OracleError::TokenMalformed {
            detail: "expires_in is not a positive number of seconds".into(),
        });
    }
    let refresh = answer
        .refresh_token
        .filter(|r| !r.is_empty())
        .map(Secret::new);
    Ok((Secret::new(token), Duration::from_secs(secs), refresh))
}

/// The OAuth error of a refused token request, without echoing anything
/// that could be a credential.
fn oauth_detail(body: &str) -> String {
    match serde_json::from_str::<OAuthError>(body) {
        Ok(OAuthError {
            error: Some(error),
            error_description,
        }) => match error_description {
            Some(d) => format!("{error}: {d}"),
            None => error,
        },
        _ => crate::retry::truncate(body.trim(), 300),
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_schedule() {
        assert_eq!(
            refresh_early(Duration::from_secs(3600)),
            Duration::from_secs(300)
        );
        assert_eq!(
            refresh_early(Duration::from_secs(60)),
            Duration::from_secs(5)
        );
        assert_eq!(
            refresh_early(Duration::from_secs(86_400)),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn token_answers() {
        let (t, d, r) =
            parse_token(r#"{"access_token":"abc","token_type":"Bearer","expires_in":3600}"#)
                .unwrap();
        assert_eq!(t.expose(), "abc");
        assert_eq!(d, Duration::from_secs(3600));
        assert!(r.is_none());
        let (_, d, _) = parse_token(r#"{"access_token":"abc","expires_in":"120"}"#).unwrap();
        assert_eq!(d, Duration::from_secs(120));
        let (_, _, r) =
            parse_token(r#"{"access_token":"abc","expires_in":60,"refresh_token":"r2"}"#).unwrap();
        assert_eq!(r.map(|r| r.expose().to_owned()).as_deref(), Some("r2"));
        assert!(parse_token(r#"{"token_type":"Bearer"}"#).is_err());
        assert!(parse_token(r#"{"access_token":"a","token_type":"mac"}"#).is_err());
        assert!(parse_token("<html>").is_err());
        assert_eq!(
            oauth_detail(r#"{"error":"invalid_client","error_description":"bad"}"#),
            "invalid_client: bad"
        );
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_encode("urn:opc:resource:consumer::all x"),
            "urn%3Aopc%3Aresource%3Aconsumer%3A%3Aall+x"
        );
    }
}
