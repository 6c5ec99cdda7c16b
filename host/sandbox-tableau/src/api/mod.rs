//! The REST surface under `/api/{version}/`: one dispatcher that checks the
//! version, the rate-limit fault and the session, then routes on method and
//! path segments. Every error is a Tableau error body in the format asked.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::actions;
use crate::error::ApiError;
use crate::jobs::{self, Mode, Publish};
use crate::query::{Field, ListQuery};
use crate::render::{Format, Node, ts_response};
use crate::request::{
    Element, decode_segment, parse_multipart, parse_query, parse_ts_request, parse_xml, read_body,
};
use crate::server::{API_VERSION, MB, MIN_API_VERSION, Shared};
use crate::state::{Datasource, JobKind, Session, Upload, Webhook, find_event, luid, now_micros};
use crate::{tdsx, webhooks};

mod auth;
mod datasources;
mod hooks;
mod uploads;

use auth::{get_site, list_sites, sign_in, sign_out};
use datasources::{
    connections, delete_datasource, download, get_datasource, list_datasources, list_projects,
    publish, refresh,
};
use hooks::{
    create_webhook, delete_webhook, get_webhook, list_webhooks, test_webhook, update_webhook,
};
use uploads::{append_upload, initiate_upload, update_data};

/// Largest body of an ordinary XML/JSON request.
const SMALL_BODY: u64 = MB;
/// Room for the XML part and multipart framing above the 64 MB file cap.
const MULTIPART_SLACK: u64 = 64 * 1024;
/// How long a RequestID is remembered.
const REQUEST_ID_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The router: everything goes through [`dispatch`].
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(dispatch).with_state(shared)
}

/// One request's context.
struct Ctx {
    shared: Arc<Shared>,
    format: Format,
    method: Method,
    headers: HeaderMap,
    query: HashMap<String, String>,
    /// In a mutex only so `&Ctx` is `Send` (a body is not `Sync`).
    body: Arc<std::sync::Mutex<Body>>,
}

impl Ctx {
    /// Takes the request body (once).
    fn take_body(&self) -> Body {
        std::mem::take(
            &mut *self
                .body
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

async fn dispatch(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let format = Format::from_headers(&headers);
    let path = uri.path().to_owned();
    let ctx = Ctx {
        shared,
        format,
        method: method.clone(),
        headers,
        query: parse_query(uri.query()),
        body: Arc::new(std::sync::Mutex::new(body)),
    };
    let unread = Arc::clone(&ctx.body);
    let drain_limit = ctx
        .shared
        .settings
        .single_request_limit
        .saturating_add(MULTIPART_SLACK);
    match route(ctx, &path).await {
        Ok(response) => response,
        Err(error) => {
            if error.status.is_server_error() {
                tracing::warn!(%method, path, code = %error.code, detail = %error.detail, "sandbox error");
            } else {
                tracing::debug!(%method, path, code = %error.code, detail = %error.detail, "request refused");
            }
            // Read what the client is still sending (refused before its
            // body was read, e.g. a chunk with an expired token), so it
            // sees the answer rather than a reset connection.
            let body = std::mem::take(
                &mut *unread
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            let _ = read_body(body, drain_limit).await;
            error.into_response(format)
        }
    }
}

/// Parses `3.28` into (3, 28).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn bad_version(text: &str) -> ApiError {
    ApiError::not_found(
        "404001",
        format!(
            "Version '{text}' is not a valid version of the API (this server accepts 3.19 to {API_VERSION})."
        ),
    )
}

fn unknown_path(path: &str) -> ApiError {
    ApiError::not_found("404001", format!("The resource '{path}' does not exist."))
}

async fn route(ctx: Ctx, path: &str) -> Result<Response, ApiError> {
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(decode_segment)
        .collect();
    let [api, version, rest @ ..] = segments.as_slice() else {
        return Err(unknown_path(path));
    };
    if api != "api" || rest.is_empty() {
        return Err(unknown_path(path));
    }
    let max = parse_version(API_VERSION).unwrap_or(MIN_API_VERSION);
    let parsed = parse_version(version).ok_or_else(|| bad_version(version))?;
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    // Discovery and sign-in/out answer from 2.4 on, as on a real server, so
    // a client (TSC signs in at 2.4, then asks serverInfo) can find the
    // version to use; everything else needs 3.19..=3.28.
    let discovery = matches!(
        rest.as_slice(),
        ["serverInfo"] | ["auth", "signin"] | ["auth", "signout"]
    );
    let lowest = if discovery { (2, 4) } else { MIN_API_VERSION };
    if parsed < lowest || parsed > max {
        return Err(bad_version(version));
    }
    if let Some(seconds) = ctx.shared.faults.take_rate_limit() {
        return Err(ApiError::too_many_requests(seconds));
    }
    let m = ctx.method.clone();
    match rest.as_slice() {
        ["serverInfo"] => only(&m, Method::GET, || server_info(&ctx)),
        ["auth", "signin"] => {
            require_method(&m, Method::POST)?;
            sign_in(ctx, path).await
        }
        ["auth", "signout"] => {
            require_method(&m, Method::POST)?;
            sign_out(&ctx)
        }
        ["sites"] => {
            authenticate(&ctx, None)?;
            only(&m, Method::GET, || list_sites(&ctx))
        }
        ["sites", site] => {
            let by_name = ctx.query.get("key").is_some_and(|k| k == "contentUrl")
                || ctx.query.get("key").is_some_and(|k| k == "name");
            authenticate(&ctx, (!by_name).then_some(*site))?;
            only(&m, Method::GET, || get_site(&ctx, site, by_name))
        }
        ["sites", site, rest @ ..] => {
            authenticate(&ctx, Some(site))?;
            site_route(ctx, rest).await
        }
        _ => Err(unknown_path(path)),
    }
}

async fn site_route(ctx: Ctx, rest: &[&str]) -> Result<Response, ApiError> {
    let m = ctx.method.clone();
    match rest {
        ["projects"] => only(&m, Method::GET, || list_projects(&ctx)),
        ["datasources"] => match m {
            Method::GET => list_datasources(&ctx),
            Method::POST => publish(ctx).await,
            _ => Err(ApiError::method_not_allowed(m.as_str())),
        },
        ["datasources", id] => match m {
            Method::GET => get_datasource(&ctx, id),
            Method::DELETE => delete_datasource(&ctx, id).await,
            _ => Err(ApiError::method_not_allowed(m.as_str())),
        },
        ["datasources", id, "connections"] => only(&m, Method::GET, || connections(&ctx, id)),
        ["datasources", id, "content"] => {
            require_method(&m, Method::GET)?;
            download(&ctx, id).await
        }
        ["datasources", id, "refresh"] => {
            require_method(&m, Method::POST)?;
            refresh(ctx, id).await
        }
        ["datasources", id, "data"] => {
            require_method(&m, Method::PATCH)?;
            update_data(ctx, id, None).await
        }
        ["datasources", id, "connections", connection, "data"] => {
            require_method(&m, Method::PATCH)?;
            update_data(ctx, id, Some(connection)).await
        }
        ["fileUploads"] => {
            require_method(&m, Method::POST)?;
            initiate_upload(&ctx)
        }
        ["fileUploads", upload] => {
            require_method(&m, Method::PUT)?;
            append_upload(ctx, upload).await
        }
        ["jobs", id] => only(&m, Method::GET, || get_job(&ctx, id)),
        ["webhooks"] => match m {
            Method::GET => list_webhooks(&ctx),
            Method::POST => create_webhook(ctx).await,
            _ => Err(ApiError::method_not_allowed(m.as_str())),
        },
        ["webhooks", id] => match m {
            Method::GET => get_webhook(&ctx, id),
            Method::PUT => update_webhook(ctx, id).await,
            Method::DELETE => delete_webhook(&ctx, id),
            _ => Err(ApiError::method_not_allowed(m.as_str())),
        },
        ["webhooks", id, "test"] => {
            require_method(&m, Method::GET)?;
            test_webhook(&ctx, id).await
        }
        _ => Err(unknown_path(&rest.join("/"))),
    }
}

fn require_method(method: &Method, wanted: Method) -> Result<(), ApiError> {
    if *method == wanted {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed(method.as_str()))
    }
}

fn only(
    method: &Method,
    wanted: Method,
    f: impl FnOnce() -> Result<Response, ApiError>,
) -> Result<Response, ApiError> {
    require_method(method, wanted)?;
    f()
}

fn ok(ctx: &Ctx, status: StatusCode, children: Vec<Node>) -> Result<Response, ApiError> {
    Ok(ts_response(ctx.format, status, children))
}

/// Checks `X-Tableau-Auth` and, when given, that the path's site is the
/// session's.
fn authenticate(ctx: &Ctx, site: Option<&str>) -> Result<Session, ApiError> {
    let token = ctx
        .headers
        .get("x-tableau-auth")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
        .ok_or_else(ApiError::no_credentials)?;
    let shared = &ctx.shared;
    let mut inner = shared.inner();
    let session = inner
        .sessions
        .get(token)
        .cloned()
        .ok_or_else(ApiError::invalid_token)?;
    if session.expires <= Instant::now() || session.epoch != shared.faults.epoch() {
        inner.sessions.remove(token);
        return Err(ApiError::invalid_token());
    }
    if let Some(site) = site
        && site != session.site_id
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "403000",
            "Forbidden",
            format!("The auth token is not valid for site '{site}'; sign in to that site."),
        ));
    }
    Ok(session)
}

fn server_info(ctx: &Ctx) -> Result<Response, ApiError> {
    ok(
        ctx,
        StatusCode::OK,
        vec![
            Node::new("serverInfo")
                .child(
                    Node::new("productVersion")
                        .attr("build", "20261.26.0210.1200")
                        .text("2026.1.0"),
                )
                .child(Node::new("restApiVersion").text(API_VERSION)),
        ],
    )
}

async fn read_small(ctx: &Ctx) -> Result<Bytes, ApiError> {
    let body = ctx.take_body();
    read_body(body, SMALL_BODY).await?.map_err(|total| {
        ApiError::too_large(format!("The request body of {total} bytes is too large."))
    })
}

fn flag(ctx: &Ctx, key: &str) -> bool {
    ctx.query
        .get(key)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn get_job(ctx: &Ctx, id: &str) -> Result<Response, ApiError> {
    let job =
        ctx.shared.inner().jobs.get(id).cloned().ok_or_else(|| {
            ApiError::not_found("404031", format!("Job '{id}' could not be found."))
        })?;
    ok(ctx, StatusCode::OK, vec![job.node()])
}
