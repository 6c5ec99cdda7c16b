//! The identity-domain stand-in: `POST /oauth2/v1/token` (client
//! credentials with Basic auth, authorization code, refresh token) and
//! `GET /oauth2/v1/authorize`, which approves at once and redirects with a
//! `code` so a test can run the code flow without a browser (the
//! `/oauth2/v1/authorize` path is UNCONFIRMED in the reference; it is the
//! identity domain's usual one). Error bodies follow OAuth 2.0
//! (`{"error","error_description"}`). Refresh tokens are issued when the
//! code flow's scope includes `offline_access`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use mlc_common::Secret;

use crate::form::{parse_pairs, percent_encode};
use crate::server::Shared;

/// Codes from `/authorize` live this long.
const CODE_TTL: Duration = Duration::from_secs(600);
/// The scope that asks for a refresh token in the code flow.
const OFFLINE_ACCESS: &str = "offline_access";

#[derive(Debug, Clone)]
struct TokenInfo {
    expires: Instant,
    generation: u64,
    /// The OAuth client the token was issued to (throttling is per client).
    client: Arc<str>,
}

#[derive(Debug, Clone)]
struct CodeInfo {
    redirect_uri: String,
    scope: String,
    expires: Instant,
}

#[derive(Debug, Clone, Copy)]
struct RefreshInfo {
    generation: u64,
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenProblem {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Not a token this sandbox issued.
    Unknown,
    /// Past its `expires_in`.
    Expired,
    /// Revoked by [`Auth::revoke_all`].
    Revoked,
}

impl TokenProblem {
    /// Detail text for the 401 body.
    pub(crate) fn detail(self) -> &'static str {
        match self {
            TokenProblem::Missing => "Authentication is required: no bearer token was sent.",
            TokenProblem::Unknown => "The bearer token is not valid.",
            TokenProblem::Expired => "The bearer token has expired.",
            TokenProblem::Revoked => "The bearer token has been revoked.",
        }
    }
}

/// Clients, tokens, codes.
#[derive(Debug)]
pub(crate) struct Auth {
    client_id: Arc<str>,
    client_secret: Secret,
    scope: String,
    ttl: Mutex<Duration>,
    generation: AtomicU64,
    tokens: Mutex<HashMap<String, TokenInfo>>,
    codes: Mutex<HashMap<String, CodeInfo>>,
    refresh: Mutex<HashMap<String, RefreshInfo>>,
    /// Token endpoint requests served (any outcome).
    pub(crate) token_requests: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn random_b64(n: usize) -> String {
    let bytes: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Auth {
    /// One confidential client with one Fusion scope.
    pub(crate) fn new(
        client_id: String,
        client_secret: Secret,
        scope: String,
        ttl: Duration,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret,
            scope,
            ttl: Mutex::new(ttl),
            generation: AtomicU64::new(0),
            tokens: Mutex::new(HashMap::new()),
            codes: Mutex::new(HashMap::new()),
            refresh: Mutex::new(HashMap::new()),
            token_requests: AtomicU64::new(0),
        }
    }

    /// The client id.
    pub(crate) fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The client secret.
    pub(crate) fn client_secret(&self) -> &Secret {
        &self.client_secret
    }

    /// The Fusion scope.
    pub(crate) fn scope(&self) -> &str {
        &self.scope
    }

    /// Lifetime of tokens issued from now on.
    pub(crate) fn set_ttl(&self, ttl: Duration) {
        *lock(&self.ttl) = ttl;
    }

    fn ttl(&self) -> Duration {
        *lock(&self.ttl)
    }

    /// Every access and refresh token issued so far stops working.
    pub(crate) fn revoke_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Every access token issued so far expires now (refresh tokens keep
    /// working).
    pub(crate) fn expire_all(&self) {
        let now = Instant::now();
        for t in lock(&self.tokens).values_mut() {
            t.expires = now;
        }
    }

    /// Checks an `Authorization` header value; returns the OAuth client id
    /// the token was issued to.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<Arc<str>, TokenProblem> {
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(TokenProblem::Missing)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(TokenProblem::Missing)?
            .trim();
        let info = lock(&self.tokens)
            .get(token)
            .cloned()
            .ok_or(TokenProblem::Unknown)?;
        if info.generation != self.generation.load(Ordering::SeqCst) {
            return Err(TokenProblem::Revoked);
        }
        if Instant::now() >= info.expires {
            return Err(TokenProblem::Expired);
        }
        Ok(info.client)
    }

    fn issue(&self, scope: &str) -> (String, u64) {
        let ttl = self.ttl();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT","kid":"SIGNING_KEY"}"#);
        let claims = serde_json::json!({
            "sub": &*self.client_id,
            "client_id": &*self.client_id,
            "scope": scope,
            "iss": "https://identity.oraclecloud.com/",
            "iat": now,
            "exp": now + ttl.as_secs(),
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let token = format!("{header}.{payload}.{}", random_b64(32));
        let generation = self.generation.load(Ordering::SeqCst);
        let mut tokens = lock(&self.tokens);
        let cutoff = Instant::now();
        tokens.retain(|_, t| t.expires > cutoff && t.generation == generation);
        tokens.insert(
            token.clone(),
            TokenInfo {
                expires: Instant::now() + ttl,
                generation,
                client: Arc::clone(&self.client_id),
            },
        );
        (token, ttl.as_secs())
    }

    /// The requested scopes must include the Fusion scope. An
    /// audience-prefixed form (`<audience>urn:opc:resource:fa:…`) is
    /// UNCONFIRMED in the reference; tolerant reading: accepted too.
    fn scope_ok(&self, requested: &str) -> bool {
        requested
            .split_whitespace()
            .any(|s| s == self.scope || s.ends_with(&self.scope))
    }

    fn client_ok(&self, id: &str, secret: &str) -> bool {
        id == &*self.client_id && secret == self.client_secret.expose()
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = serde_json::json!({"error": error, "error_description": description});
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED
        && let Ok(v) = HeaderValue::from_str("Basic realm=\"identity\"")
    {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// `POST /oauth2/v1/token`.
pub(crate) async fn token(
    State(shared): State<std::sync::Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = &shared.auth;
    auth.token_requests.fetch_add(1, Ordering::Relaxed);
    let form: HashMap<String, String> = parse_pairs(&String::from_utf8_lossy(&body))
        .into_iter()
        .collect();
    // Client authentication: Basic (client_secret_basic) or, tolerantly,
    // client_id/client_secret in the body (client_secret_post).
    let creds = basic_credentials(&headers).or_else(|| {
        Some((
            form.get("client_id")?.clone(),
            form.get("client_secret")?.clone(),
        ))
    });
    let Some((id, secret)) = creds else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed: no client credentials were sent.",
        );
    };
    if !auth.client_ok(&id, &secret) {
        tracing::debug!(client_id = %id, "token request with bad client credentials");
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed.",
        );
    }
    let grant = form.get("grant_type").map(String::as_str).unwrap_or("");
    match grant {
        "" => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The request is missing the grant_type parameter.",
        ),
        "client_credentials" => {
            let scope = form.get("scope").map(String::as_str).unwrap_or("");
            if !auth.scope_ok(scope) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    "The requested scope is invalid, unknown, or malformed.",
                );
            }
            let (token, expires_in) = auth.issue(&auth.scope);
            token_response(&token, expires_in, None)
        }
        "authorization_code" => {
            let code = form.get("code").cloned().unwrap_or_default();
            let redirect = form.get("redirect_uri").cloned().unwrap_or_default();
            let info = lock(&auth.codes).remove(&code);
            match info {
                Some(c) if c.expires > Instant::now() && c.redirect_uri == redirect => {
                    let (token, expires_in) = auth.issue(&auth.scope);
                    let refresh = c
                        .scope
                        .split_whitespace()
                        .any(|s| s == OFFLINE_ACCESS)
                        .then(|| {
                            let r = random_b64(48);
                            lock(&auth.refresh).insert(
                                r.clone(),
                                RefreshInfo {
                                    generation: auth.generation.load(Ordering::SeqCst),
                                },
                            );
                            r
                        });
                    token_response(&token, expires_in, refresh.as_deref())
                }
                _ => oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The authorization code is invalid, expired, already used, or was issued for another redirect URI.",
                ),
            }
        }
        "refresh_token" => {
            let r = form.get("refresh_token").cloned().unwrap_or_default();
            let info = lock(&auth.refresh).get(&r).copied();
            match info {
                Some(i) if i.generation == auth.generation.load(Ordering::SeqCst) => {
                    let (token, expires_in) = auth.issue(&auth.scope);
                    token_response(&token, expires_in, Some(&r))
                }
                _ => oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The refresh token is invalid or has been revoked.",
                ),
            }
        }
        other => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("The grant type {other} is not supported."),
        ),
    }
}

fn token_response(token: &str, expires_in: u64, refresh: Option<&str>) -> Response {
    let mut body = serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": expires_in,
    });
    if let Some(r) = refresh {
        body["refresh_token"] = serde_json::Value::String(r.to_owned());
    }
    let mut resp = (StatusCode::OK, axum::Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `GET /oauth2/v1/authorize`: approves at once (no login page) and
/// redirects to `redirect_uri` with `code` and `state`. Any redirect URI is
/// accepted (the sandbox keeps no registration); the token exchange must
/// repeat it exactly.
pub(crate) async fn authorize(
    State(shared): State<std::sync::Arc<Shared>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let auth = &shared.auth;
    let client_id = params.get("client_id").map(String::as_str).unwrap_or("");
    if client_id != &*auth.client_id {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "The client_id is unknown.",
        );
    }
    let Some(redirect) = params.get("redirect_uri").filter(|r| !r.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The request is missing the redirect_uri parameter.",
        );
    };
    let mut query: Vec<(String, String)> = Vec::new();
    let response_type = params
        .get("response_type")
        .map(String::as_str)
        .unwrap_or("");
    let scope = params.get("scope").cloned().unwrap_or_default();
    if response_type != "code" {
        query.push(("error".into(), "unsupported_response_type".into()));
    } else if !auth.scope_ok(&scope) {
        query.push(("error".into(), "invalid_scope".into()));
    } else {
        let code = random_b64(24);
        lock(&auth.codes).insert(
            code.clone(),
            CodeInfo {
                redirect_uri: redirect.clone(),
                scope,
                expires: Instant::now() + CODE_TTL,
            },
        );
        query.push(("code".into(), code));
    }
    if let Some(state) = params.get("state") {
        query.push(("state".into(), state.clone()));
    }
    let sep = if redirect.contains('?') { '&' } else { '?' };
    let qs: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect();
    let location = format!("{redirect}{sep}{}", qs.join("&"));
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            let mut resp = StatusCode::FOUND.into_response();
            resp.headers_mut().insert(header::LOCATION, v);
            resp
        }
        Err(_) => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The redirect_uri is not valid.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(
            "client".into(),
            Secret::new("s3cret"),
            "urn:opc:resource:fa:instanceid=1urn:opc:resource:consumer::all".into(),
            Duration::from_secs(3600),
        )
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        h
    }

    #[test]
    fn tokens_expire_and_revoke() {
        let a = auth();
        assert_eq!(a.check(&HeaderMap::new()), Err(TokenProblem::Missing));
        assert_eq!(a.check(&bearer("nope")), Err(TokenProblem::Unknown));
        let (t, ttl) = a.issue(a.scope());
        assert_eq!(ttl, 3600);
        assert!(t.starts_with("eyJ"), "{t}");
        assert_eq!(a.check(&bearer(&t)).as_deref(), Ok("client"));
        a.expire_all();
        assert_eq!(a.check(&bearer(&t)), Err(TokenProblem::Expired));
        let (t2, _) = a.issue(a.scope());
        a.revoke_all();
        assert_eq!(a.check(&bearer(&t2)), Err(TokenProblem::Revoked));
    }

    #[test]
    fn scope_must_name_the_fusion_resource() {
        let a = auth();
        assert!(a.scope_ok("urn:opc:resource:fa:instanceid=1urn:opc:resource:consumer::all"));
        assert!(a.scope_ok(
            "offline_access urn:opc:resource:fa:instanceid=1urn:opc:resource:consumer::all"
        ));
        assert!(a.scope_ok(
            "https://pod.example.comurn:opc:resource:fa:instanceid=1urn:opc:resource:consumer::all"
        ));
        assert!(!a.scope_ok("urn:opc:resource:consumer::all"));
        assert!(!a.scope_ok("urn:opc:resource:fa:instanceid=2urn:opc:resource:consumer::all"));
        assert!(!a.scope_ok(""));
    }
}
