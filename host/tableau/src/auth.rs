//! Tableau sessions from a Personal Access Token.
//!
//! One [`SessionManager`] per tenant holds at most one session for its PAT,
//! shared by every pipeline of the tenant: a second sign-in with the same PAT
//! would end the first session on the server (`401002` afterwards), so
//! sign-ins are single-flight behind one lock. A session is renewed before
//! its expected end (TTL minus a margin) and, when the server rejects it
//! anyway, renewed once by the caller that saw the `401` (see
//! [`SessionManager::renew`]), which then replays its request once.
//!
//! The REST version is pinned by configuration or picked from `serverInfo`
//! (highest of 3.19–3.28 the server offers). A Cloud pod redirect answering
//! the sign-in (`301`/`302`/`307`/`308` with `Location`) is followed by
//! re-POSTing to the new host, which is then used for every call.
//!
//! Neither the PAT secret nor the session token is ever logged: both stay in
//! [`Secret`], and the sign-in body and answer never enter an error message.

use std::sync::Arc;

use mlc_common::Secret;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue, LOCATION};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::{ApiVersion, MAX_API_VERSION, MIN_API_VERSION, TableauConfig, origin_of};
use crate::error::{Ctx, ErrorKind, TableauError};
use crate::http::{Answer, Http, excerpt};
use crate::model::{ServerInfo, SignInAnswer, signin_xml};

/// Redirects followed during discovery and sign-in before giving up.
const MAX_REDIRECTS: usize = 3;

/// The header carrying the session token.
pub(crate) const AUTH_HEADER: &str = "x-tableau-auth";

/// A signed-in session.
#[derive(Debug)]
pub struct Session {
    token: Secret,
    /// The site's LUID, used in every site-scoped path.
    pub site_id: String,
    /// The signed-in user's LUID.
    pub user_id: String,
    /// `scheme://host[:port]` every call goes to (after any pod redirect).
    pub base_url: String,
    /// The REST API version in use.
    pub api_version: ApiVersion,
    /// Increases with every sign-in of this manager.
    pub generation: u64,
    obtained: Instant,
}

impl Session {
    /// The token as a header value, marked sensitive so no HTTP layer logs it.
    pub(crate) fn auth_header(&self) -> Option<HeaderValue> {
        let mut value = HeaderValue::from_str(self.token.expose()).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    /// `{base}/api/{v}/{path}`.
    pub(crate) fn api_url(&self, path: &str) -> String {
        format!("{}/api/{}/{}", self.base_url, self.api_version, path)
    }

    /// `{base}/api/{v}/sites/{site}/{path}`.
    pub(crate) fn site_url(&self, path: &str) -> String {
        format!(
            "{}/api/{}/sites/{}/{}",
            self.base_url, self.api_version, self.site_id, path
        )
    }
}

struct State {
    current: Option<Arc<Session>>,
    generation: u64,
    /// The origin in use: the configured one, or where a redirect sent us.
    base_url: String,
    /// The version in use once known.
    api_version: Option<ApiVersion>,
}

/// Keeps one tenant's session: signs in lazily, single-flight, renews before
/// expiry, renews once on demand after a `401`, signs out on shutdown.
pub struct SessionManager {
    tenant: String,
    config: Arc<TableauConfig>,
    http: Arc<Http>,
    state: Mutex<State>,
}

impl SessionManager {
    pub(crate) fn new(tenant: &str, config: Arc<TableauConfig>, http: Arc<Http>) -> Self {
        let base_url = origin_of(&config.server_url).unwrap_or_else(|| config.server_url.clone());
        Self {
            tenant: tenant.to_owned(),
            state: Mutex::new(State {
                current: None,
                generation: 0,
                base_url,
                api_version: config.api_version,
            }),
            config,
            http,
        }
    }

    /// A session fresh enough to use, signing in when there is none or the
    /// current one is near its expected end.
    pub async fn session(&self) -> Result<Arc<Session>, TableauError> {
        let mut state = self.state.lock().await;
        if let Some(s) = &state.current
            && s.obtained.elapsed() < self.config.session_reuse_window()
        {
            return Ok(s.clone());
        }
        self.sign_in_locked(&mut state).await
    }

    /// Replaces `stale` after the server rejected it. When another caller has
    /// already signed in again meanwhile, its session is returned instead of
    /// signing in a second time (which would end that newer session).
    pub async fn renew(&self, stale: &Session) -> Result<Arc<Session>, TableauError> {
        let mut state = self.state.lock().await;
        if let Some(s) = &state.current
            && s.generation != stale.generation
        {
            return Ok(s.clone());
        }
        tracing::info!(tenant = %self.tenant, generation = stale.generation, "Tableau session rejected, signing in again");
        state.current = None;
        self.sign_in_locked(&mut state).await
    }

    /// Signs out the current session, if any. A `401` means it is already
    /// gone, which is fine.
    pub async fn sign_out(&self) -> Result<(), TableauError> {
        let mut state = self.state.lock().await;
        let Some(session) = state.current.take() else {
            return Ok(());
        };
        let ctx = Ctx::new(&self.tenant, "sign out");
        let url = session.api_url("auth/signout");
        let Some(token) = session.auth_header() else {
            return Ok(());
        };
        let client = &self.http.client;
        let answer = self
            .http
            .send(&ctx, true, &|| {
                client
                    .post(&url)
                    .header(AUTH_HEADER, token.clone())
                    .header(CONTENT_TYPE, "text/xml")
                    .body("")
            })
            .await?;
        if answer.status.is_success() || answer.status == StatusCode::UNAUTHORIZED {
            tracing::info!(tenant = %self.tenant, "signed out of Tableau");
            Ok(())
        } else {
            Err(answer.into_error(&ctx))
        }
    }

    /// The origin currently in use (after any pod redirect).
    pub async fn base_url(&self) -> String {
        self.state.lock().await.base_url.clone()
    }

    async fn sign_in_locked(&self, state: &mut State) -> Result<Arc<Session>, TableauError> {
        let ctx = Ctx::new(&self.tenant, "sign in");
        let version = match state.api_version {
            Some(v) => v,
            None => {
                let v = self.discover_version(state, &ctx).await?;
                state.api_version = Some(v);
                v
            }
        };
        let body = signin_xml(
            &self.config.pat_name,
            self.config.pat_secret.expose(),
            &self.config.site_content_url,
        );
        let mut url = format!("{}/api/{}/auth/signin", state.base_url, version);
        let client = &self.http.client;
        let timeout = std::time::Duration::from_secs(self.config.request_timeout_secs);
        let mut redirects = 0;
        let answer = loop {
            let answer = self
                .http
                .send(&ctx, true, &|| {
                    client
                        .post(&url)
                        .timeout(timeout)
                        .header(CONTENT_TYPE, "text/xml")
                        .header(ACCEPT, "application/xml")
                        .body(body.clone())
                })
                .await?;
            match redirect_target(&answer, &url) {
                Some(next) => {
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        return Err(ctx.err(ErrorKind::TooManyRedirects { location: next }));
                    }
                    let origin = origin_of(&next).ok_or_else(|| {
                        ctx.err(ErrorKind::Response(format!(
                            "sign-in redirect to `{next}` names no host"
                        )))
                    })?;
                    tracing::info!(tenant = %self.tenant, from = %state.base_url, to = %origin, "Tableau sign-in redirected to another host (Cloud pod); using it from now on");
                    state.base_url = origin;
                    url = next;
                }
                None => break answer,
            }
        };
        if !answer.status.is_success() {
            // The error body of a failed sign-in holds no secret.
            return Err(answer.into_error(&ctx));
        }
        let creds = crate::model::parse_xml(&answer.text())
            .ok()
            .and_then(|root| SignInAnswer::from_xml(&root))
            .ok_or_else(|| {
                // Never echo a sign-in body: it may hold the token.
                ctx.err(ErrorKind::Response(
                    "sign-in answer lacks credentials/@token or site/@id".into(),
                ))
            })?;
        state.generation += 1;
        let session = Arc::new(Session {
            token: Secret::new(creds.token),
            site_id: creds.site_id,
            user_id: creds.user_id,
            base_url: state.base_url.clone(),
            api_version: version,
            generation: state.generation,
            obtained: Instant::now(),
        });
        tracing::info!(tenant = %self.tenant, site_id = %session.site_id, api_version = %version, generation = session.generation, "signed in to Tableau");
        state.current = Some(session.clone());
        Ok(session)
    }

    /// Asks `serverInfo` for the server's REST version and picks the highest
    /// one both sides speak. Follows redirects (a GET stays a GET).
    async fn discover_version(
        &self,
        state: &mut State,
        ctx: &Ctx,
    ) -> Result<ApiVersion, TableauError> {
        let mut url = format!("{}/api/{}/serverInfo", state.base_url, MIN_API_VERSION);
        let client = &self.http.client;
        let timeout = std::time::Duration::from_secs(self.config.request_timeout_secs);
        let mut redirects = 0;
        let answer = loop {
            let answer = self
                .http
                .send(ctx, true, &|| {
                    client
                        .get(&url)
                        .timeout(timeout)
                        .header(ACCEPT, "application/xml")
                })
                .await?;
            match redirect_target(&answer, &url) {
                Some(next) if redirects < MAX_REDIRECTS => {
                    redirects += 1;
                    if let Some(origin) = origin_of(&next) {
                        state.base_url = origin;
                    }
                    url = next;
                }
                Some(next) => return Err(ctx.err(ErrorKind::TooManyRedirects { location: next })),
                None => break answer.success(ctx)?,
            }
        };
        let root = answer.xml(ctx, "serverInfo")?;
        let info = ServerInfo::from_xml(&root).ok_or_else(|| {
            ctx.err(ErrorKind::Response(format!(
                "serverInfo lacks restApiVersion: {}",
                excerpt(&answer.text())
            )))
        })?;
        let offered = ApiVersion::parse(&info.rest_api_version).ok_or_else(|| {
            ctx.err(ErrorKind::UnsupportedVersion {
                offered: info.rest_api_version.clone(),
            })
        })?;
        if offered < MIN_API_VERSION {
            return Err(ctx.err(ErrorKind::UnsupportedVersion {
                offered: info.rest_api_version,
            }));
        }
        let chosen = offered.min(MAX_API_VERSION);
        tracing::info!(tenant = %self.tenant, offered = %offered, chosen = %chosen, product = %info.product_version, "picked Tableau REST API version");
        Ok(chosen)
    }
}

/// The absolute target of a redirect answer, if it is one.
fn redirect_target(answer: &Answer, request_url: &str) -> Option<String> {
    if !matches!(answer.status.as_u16(), 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = answer.headers.get(LOCATION)?.to_str().ok()?.trim();
    if location.starts_with("http://") || location.starts_with("https://") {
        Some(location.to_owned())
    } else if location.starts_with('/') {
        origin_of(request_url).map(|o| format!("{o}{location}"))
    } else {
        None
    }
}
