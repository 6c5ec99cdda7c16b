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
            expect(&m, Method::POST)?;
            sign_in(ctx, path).await
        }
        ["auth", "signout"] => {
            expect(&m, Method::POST)?;
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
            expect(&m, Method::GET)?;
            download(&ctx, id).await
        }
        ["datasources", id, "refresh"] => {
            expect(&m, Method::POST)?;
            refresh(ctx, id).await
        }
        ["datasources", id, "data"] => {
            expect(&m, Method::PATCH)?;
            update_data(ctx, id, None).await
        }
        ["datasources", id, "connections", connection, "data"] => {
            expect(&m, Method::PATCH)?;
            update_data(ctx, id, Some(connection)).await
        }
        ["fileUploads"] => {
            expect(&m, Method::POST)?;
            initiate_upload(&ctx)
        }
        ["fileUploads", upload] => {
            expect(&m, Method::PUT)?;
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
            Method::DELETE => delete_webhook(&ctx, id),
            _ => Err(ApiError::method_not_allowed(m.as_str())),
        },
        ["webhooks", id, "test"] => {
            expect(&m, Method::GET)?;
            test_webhook(&ctx, id).await
        }
        _ => Err(unknown_path(&rest.join("/"))),
    }
}

fn expect(method: &Method, wanted: Method) -> Result<(), ApiError> {
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
    expect(method, wanted)?;
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

async fn sign_in(ctx: Ctx, path: &str) -> Result<Response, ApiError> {
    let body = read_small(&ctx).await?;
    if ctx.shared.faults.take_sign_in_redirect() {
        // A Cloud sign-in to a host that is not the site's pod answers 301;
        // the client must POST again to `Location`.
        let mut response = StatusCode::MOVED_PERMANENTLY.into_response();
        let location = format!("{}{path}", ctx.shared.server_url);
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        return Ok(response);
    }
    let root = parse_ts_request(&ctx.headers, &body)?;
    let credentials = root
        .child("credentials")
        .ok_or_else(|| ApiError::bad_request("The sign-in request has no credentials element."))?;
    let shared = &ctx.shared;
    let (Some(name), Some(secret)) = (
        credentials.attr("personalAccessTokenName"),
        credentials.attr("personalAccessTokenSecret"),
    ) else {
        return Err(ApiError::signin_failed(
            "Error signing in to Tableau Server: this site only accepts personal access tokens.",
        ));
    };
    let site = credentials
        .child("site")
        .and_then(|s| s.attr("contentUrl"))
        .unwrap_or("");
    let known = shared
        .inner()
        .pats
        .get(name)
        .is_some_and(|s| constant_time_eq(secret.as_bytes(), s.expose().as_bytes()));
    if !known || site != shared.site.content_url {
        tracing::info!(pat = name, site, "sign-in refused");
        return Err(ApiError::signin_failed(
            "Error signing in to Tableau Server (the personal access token or the site is not valid).",
        ));
    }
    let token = new_token();
    let session = Session {
        pat_name: name.to_owned(),
        site_id: shared.site.id.clone(),
        user_id: shared.user.id.clone(),
        expires: Instant::now() + shared.settings.session_ttl,
        epoch: shared.faults.epoch(),
    };
    {
        let mut inner = shared.inner();
        // One session per PAT: a new sign-in ends the earlier one.
        inner.sessions.retain(|_, s| s.pat_name != name);
        inner.sessions.insert(token.clone(), session);
    }
    tracing::info!(pat = name, site, "signed in");
    ok(
        &ctx,
        StatusCode::OK,
        vec![
            Node::new("credentials")
                .attr("token", token)
                .attr(
                    "estimatedTimeToExpiration",
                    estimated(shared.settings.session_ttl),
                )
                .child(
                    Node::new("site")
                        .attr("id", shared.site.id.clone())
                        .attr("contentUrl", shared.site.content_url.clone()),
                )
                .child(Node::new("user").attr("id", shared.user.id.clone())),
        ],
    )
}

/// `D:HH:MM` of the session lifetime.
fn estimated(ttl: Duration) -> String {
    let minutes = ttl.as_secs() / 60;
    format!(
        "{}:{:02}:{:02}",
        minutes / 1440,
        (minutes / 60) % 24,
        minutes % 60
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A token shaped like Tableau's (`<22 chars>|<32 hex>`).
fn new_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 16] = rand::random();
    format!(
        "{}|{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
        uuid::Uuid::new_v4().simple()
    )
}

fn sign_out(ctx: &Ctx) -> Result<Response, ApiError> {
    authenticate(ctx, None)?;
    if let Some(token) = ctx
        .headers
        .get("x-tableau-auth")
        .and_then(|v| v.to_str().ok())
    {
        ctx.shared.inner().sessions.remove(token);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn site_node(shared: &Shared) -> Node {
    Node::new("site")
        .attr("id", shared.site.id.clone())
        .attr("name", shared.site.name.clone())
        .attr("contentUrl", shared.site.content_url.clone())
        .attr("adminMode", "ContentAndUsers")
        .attr("state", "Active")
}

fn list_sites(ctx: &Ctx) -> Result<Response, ApiError> {
    ok(
        ctx,
        StatusCode::OK,
        vec![
            Node::new("pagination")
                .attr("pageNumber", "1")
                .attr("pageSize", "100")
                .attr("totalAvailable", "1"),
            Node::list("sites", vec![site_node(&ctx.shared)]),
        ],
    )
}

fn get_site(ctx: &Ctx, site: &str, by_name: bool) -> Result<Response, ApiError> {
    let shared = &ctx.shared;
    let matches = if by_name {
        site == shared.site.content_url || site == shared.site.name
    } else {
        site == shared.site.id
    };
    if !matches {
        return Err(ApiError::not_found(
            "404000",
            format!("Site '{site}' could not be found."),
        ));
    }
    ok(ctx, StatusCode::OK, vec![site_node(shared)])
}

fn list_projects(ctx: &Ctx) -> Result<Response, ApiError> {
    let q = ListQuery::parse(
        &ctx.query,
        &[
            "name",
            "parentProjectId",
            "topLevelProject",
            "createdAt",
            "updatedAt",
            "ownerName",
        ],
        &["name", "createdAt", "updatedAt"],
    )?;
    let shared = &ctx.shared;
    let (page, total) = q.apply(shared.projects.clone(), |p, field| match field {
        "name" => Field::Text(p.name.clone()),
        "parentProjectId" => Field::Text(p.parent_id.clone().unwrap_or_default()),
        "topLevelProject" => Field::Bool(p.parent_id.is_none()),
        "ownerName" => Field::Text(shared.user.name.clone()),
        _ => Field::Time(p.created_at),
    });
    let items = page.iter().map(|p| p.node(&shared.user.id)).collect();
    ok(
        ctx,
        StatusCode::OK,
        vec![q.pagination(total), Node::list("projects", items)],
    )
}

fn datasource_node(shared: &Shared, ds: &Datasource) -> Node {
    ds.node(
        shared.project(&ds.project_id),
        &shared.user,
        &shared.server_url,
        &shared.site,
    )
}

fn list_datasources(ctx: &Ctx) -> Result<Response, ApiError> {
    let q = ListQuery::parse(
        &ctx.query,
        &[
            "name",
            "contentUrl",
            "projectName",
            "projectId",
            "createdAt",
            "updatedAt",
            "type",
            "isCertified",
            "ownerName",
            "hasExtracts",
        ],
        &[
            "name",
            "contentUrl",
            "projectName",
            "createdAt",
            "updatedAt",
            "size",
        ],
    )?;
    let shared = &ctx.shared;
    let all = shared.inner().datasources.clone();
    let project_name = |ds: &Datasource| {
        shared
            .project(&ds.project_id)
            .map(|p| p.name.clone())
            .unwrap_or_default()
    };
    let (page, total) = q.apply(all, |d, field| match field {
        "name" => Field::Text(d.name.clone()),
        "contentUrl" => Field::Text(d.content_url.clone()),
        "projectName" => Field::Text(project_name(d)),
        "projectId" => Field::Text(d.project_id.clone()),
        "type" => Field::Text("dataengine".to_owned()),
        "ownerName" => Field::Text(shared.user.name.clone()),
        "isCertified" => Field::Bool(d.certified),
        "hasExtracts" => Field::Bool(true),
        "size" => Field::Number(i64::try_from(d.size).unwrap_or(i64::MAX)),
        "updatedAt" => Field::Time(d.updated_at),
        _ => Field::Time(d.created_at),
    });
    let items = page.iter().map(|d| datasource_node(shared, d)).collect();
    ok(
        ctx,
        StatusCode::OK,
        vec![q.pagination(total), Node::list("datasources", items)],
    )
}

fn find_datasource(shared: &Shared, id: &str) -> Result<Datasource, ApiError> {
    shared
        .inner()
        .datasources
        .iter()
        .find(|d| d.id == id)
        .cloned()
        .ok_or_else(|| {
            ApiError::not_found("404011", format!("Datasource '{id}' could not be found."))
        })
}

fn get_datasource(ctx: &Ctx, id: &str) -> Result<Response, ApiError> {
    let ds = find_datasource(&ctx.shared, id)?;
    ok(ctx, StatusCode::OK, vec![datasource_node(&ctx.shared, &ds)])
}

fn connections(ctx: &Ctx, id: &str) -> Result<Response, ApiError> {
    let ds = find_datasource(&ctx.shared, id)?;
    ok(
        ctx,
        StatusCode::OK,
        vec![Node::list("connections", vec![ds.connection_node()])],
    )
}

async fn delete_datasource(ctx: &Ctx, id: &str) -> Result<Response, ApiError> {
    let ds = find_datasource(&ctx.shared, id)?;
    let guard = ds.lock.lock().await;
    ctx.shared.inner().datasources.retain(|d| d.id != ds.id);
    if let Err(e) = std::fs::remove_file(&ds.file) {
        tracing::warn!(file = %ds.file.display(), error = %e, "could not remove a deleted data source's file");
    }
    drop(guard);
    ctx.shared.save_catalog();
    webhooks::fire(&ctx.shared, "DatasourceDeleted", &ds.id, &ds.name);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn download(ctx: &Ctx, id: &str) -> Result<Response, ApiError> {
    let ds = find_datasource(&ctx.shared, id)?;
    let include_extract = ctx
        .query
        .get("includeExtract")
        .is_none_or(|v| !v.eq_ignore_ascii_case("false"));
    let guard = ds.lock.lock().await;
    let tables = ctx
        .shared
        .engine
        .inspect(&ds.file)
        .await
        .map_err(|e| ApiError::internal(format!("cannot open the data source file: {e}")))?;
    let bytes =
        if include_extract {
            Some(tokio::fs::read(&ds.file).await.map_err(|e| {
                ApiError::internal(format!("cannot read the data source file: {e}"))
            })?)
        } else {
            None
        };
    drop(guard);
    let stem: String = ds
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_. ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let table = tables
        .iter()
        .find(|t| t.schema == "Extract" && t.name == "Extract")
        .or_else(|| tables.first());
    let (schema, table) = table
        .map(|t| (t.schema.as_str(), t.name.as_str()))
        .unwrap_or(("Extract", "Extract"));
    let extract_path = format!("Data/Extracts/{stem}.hyper");
    let tds = tdsx::tds(&ds.name, &extract_path, schema, table);
    let (body, filename) = match bytes {
        Some(bytes) => (
            tdsx::stored_zip(&[
                (&format!("{stem}.tds"), tds.as_bytes()),
                (&extract_path, &bytes),
            ])
            .map_err(|e| ApiError::internal(e.to_string()))?,
            format!("{stem}.tdsx"),
        ),
        None => (tds.into_bytes(), format!("{stem}.tds")),
    };
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

async fn refresh(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    let body = read_small(&ctx).await?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        parse_ts_request(&ctx.headers, &body)?;
    }
    let ds = find_datasource(&ctx.shared, id)?;
    let job = jobs::register(
        &ctx.shared,
        jobs::new_job(JobKind::Refresh, Some(&ds), &ds.name),
    );
    jobs::spawn_refresh(
        Arc::clone(&ctx.shared),
        job.id.clone(),
        ds.id.clone(),
        ds.name.clone(),
        ds.queue.enqueue(),
    );
    ok(&ctx, StatusCode::ACCEPTED, vec![job.node()])
}

fn flag(ctx: &Ctx, key: &str) -> bool {
    ctx.query
        .get(key)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Takes an upload session's file for a publish or an update.
fn take_upload(shared: &Shared, id: &str) -> Result<Upload, ApiError> {
    shared
        .inner()
        .uploads
        .remove(id)
        .ok_or_else(|| unknown_upload(id))
}

fn unknown_upload(id: &str) -> ApiError {
    ApiError::not_found(
        "404015",
        format!("Upload session '{id}' could not be found."),
    )
}

async fn publish(ctx: Ctx) -> Result<Response, ApiError> {
    let shared = Arc::clone(&ctx.shared);
    let limit = shared.settings.single_request_limit;
    let body = ctx.take_body();
    let too_large = |total: u64| {
        ApiError::too_large(format!(
            "The request of {total} bytes is larger than the {} MB allowed in one request; publish files this large with a chunked file upload (fileUploads, then uploadSessionId).",
            limit / MB
        ))
    };
    // The cap is on the file; the slack covers the XML part and framing.
    let body = read_body(body, limit.saturating_add(MULTIPART_SLACK))
        .await?
        .map_err(too_large)?;
    let overwrite = flag(&ctx, "overwrite");
    let append = flag(&ctx, "append");
    if overwrite && append {
        return Err(ApiError::bad_request(
            "The 'overwrite' and 'append' parameters cannot both be true.",
        ));
    }
    let mode = if overwrite {
        Mode::Overwrite
    } else if append {
        Mode::Append
    } else {
        Mode::CreateNew
    };
    if let Some(kind) = ctx.query.get("datasourceType")
        && !kind.eq_ignore_ascii_case("hyper")
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "400011",
            "Bad Request",
            format!(
                "datasourceType '{kind}' is not supported here: the sandbox stores data sources as .hyper files."
            ),
        ));
    }
    let parts = parse_multipart(&ctx.headers, &body)?;
    let payload = parts
        .iter()
        .find(|p| p.name == "request_payload")
        .ok_or_else(|| ApiError::bad_request("The request has no 'request_payload' part."))?;
    let root = parse_xml(&payload.data)?;
    let element = root
        .child("datasource")
        .ok_or_else(|| ApiError::bad_request("The request_payload has no datasource element."))?;
    let file_part = parts.iter().find(|p| p.name == "tableau_datasource");
    let upload_id = ctx.query.get("uploadSessionId").cloned();
    let staged = shared.upload_dir.join(format!("publish-{}.hyper", luid()));
    let filename = match (&upload_id, file_part) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "Give either a 'tableau_datasource' part or an uploadSessionId, not both.",
            ));
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "The request has no 'tableau_datasource' part and no uploadSessionId.",
            ));
        }
        (None, Some(part)) => {
            if part.data.len() as u64 > limit {
                return Err(too_large(body.len() as u64));
            }
            tokio::fs::write(&staged, &part.data)
                .await
                .map_err(|e| ApiError::internal(format!("cannot stage the upload: {e}")))?;
            part.filename.clone().unwrap_or_default()
        }
        (Some(id), None) => {
            let upload = take_upload(&shared, id)?;
            tokio::fs::rename(&upload.file, &staged)
                .await
                .map_err(|e| ApiError::internal(format!("cannot stage the upload: {e}")))?;
            String::new()
        }
    };
    let name = element
        .attr("name")
        .map(str::to_owned)
        .or_else(|| {
            filename
                .rsplit_once('.')
                .map(|(stem, _)| stem.to_owned())
                .filter(|s| !s.is_empty())
        })
        .ok_or_else(|| {
            let _ = std::fs::remove_file(&staged);
            ApiError::bad_request("The datasource element has no name.")
        })?;
    let filename = if filename.is_empty() {
        format!("{name}.hyper")
    } else {
        filename
    };
    let project = match element.child("project").and_then(|p| p.attr("id")) {
        Some(id) => shared.project(id).cloned().ok_or_else(|| {
            let _ = std::fs::remove_file(&staged);
            ApiError::not_found("404005", format!("Project '{id}' could not be found."))
        })?,
        None => shared.default_project().clone(),
    };
    let request = Publish {
        name: name.clone(),
        project_id: project.id.clone(),
        description: element.attr("description").unwrap_or("").to_owned(),
        mode,
        file: staged.clone(),
        filename,
    };
    if mode == Mode::CreateNew
        && shared
            .inner()
            .datasources
            .iter()
            .any(|d| d.name == name && d.project_id == project.id)
    {
        let _ = std::fs::remove_file(&staged);
        return Err(jobs::name_conflict(&name, &project.name));
    }
    if flag(&ctx, "asJob") {
        let job = jobs::register(&shared, jobs::new_job(JobKind::Publish, None, &name));
        jobs::spawn_publish(Arc::clone(&shared), job.id.clone(), request);
        return ok(&ctx, StatusCode::ACCEPTED, vec![job.node()]);
    }
    let ds = jobs::publish_now(&shared, request).await?;
    ok(
        &ctx,
        StatusCode::CREATED,
        vec![datasource_node(&shared, &ds)],
    )
}

fn initiate_upload(ctx: &Ctx) -> Result<Response, ApiError> {
    let shared = &ctx.shared;
    let mut inner = shared.inner();
    inner.upload_counter += 1;
    let id = format!(
        "{}:{}-1:0",
        7700 + inner.upload_counter,
        uuid::Uuid::new_v4().simple()
    );
    let file = shared
        .upload_dir
        .join(format!("upload-{}.part", uuid::Uuid::new_v4().simple()));
    std::fs::File::create(&file)
        .map_err(|e| ApiError::internal(format!("cannot create the upload file: {e}")))?;
    let upload = Upload {
        id: id.clone(),
        file,
        bytes: 0,
    };
    let node = upload.node();
    inner.uploads.insert(id, upload);
    drop(inner);
    ok(ctx, StatusCode::CREATED, vec![node])
}

async fn append_upload(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    let shared = Arc::clone(&ctx.shared);
    let upload = shared
        .inner()
        .uploads
        .get(id)
        .cloned()
        .ok_or_else(|| unknown_upload(id))?;
    let limit = shared.settings.single_request_limit;
    let body = ctx.take_body();
    let too_large = |total: u64| {
        ApiError::too_large(format!(
            "The chunk request of {total} bytes is larger than the {} MB allowed in one request.",
            limit / MB
        ))
    };
    let body = read_body(body, limit.saturating_add(MULTIPART_SLACK))
        .await?
        .map_err(too_large)?;
    if let Some(status) = shared.faults.take_chunk_failure() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Err(ApiError::new(
            status,
            &format!("{}000", status.as_u16()),
            status.canonical_reason().unwrap_or("Error"),
            "The chunk could not be stored (injected fault); it was not appended.",
        ));
    }
    let parts = parse_multipart(&ctx.headers, &body)?;
    let file_part = parts
        .iter()
        .find(|p| p.name == "tableau_file")
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "400020",
                "Bad Request",
                "The request has no 'tableau_file' part.",
            )
        })?;
    if file_part.data.len() as u64 > limit {
        return Err(too_large(body.len() as u64));
    }
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&upload.file)
            .map_err(|e| ApiError::internal(format!("cannot open the upload file: {e}")))?;
        file.write_all(&file_part.data)
            .map_err(|e| ApiError::internal(format!("cannot append the chunk: {e}")))?;
    }
    let node = {
        let mut inner = shared.inner();
        let upload = inner
            .uploads
            .get_mut(id)
            .ok_or_else(|| unknown_upload(id))?;
        upload.bytes += file_part.data.len() as u64;
        upload.node()
    };
    ok(&ctx, StatusCode::OK, vec![node])
}

async fn update_data(ctx: Ctx, id: &str, connection: Option<&str>) -> Result<Response, ApiError> {
    let shared = Arc::clone(&ctx.shared);
    let ds = find_datasource(&shared, id)?;
    if let Some(connection) = connection
        && connection != ds.connection_id
    {
        return Err(ApiError::not_found(
            "404020",
            format!("Connection '{connection}' of datasource '{id}' could not be found."),
        ));
    }
    let request_id = ctx
        .headers
        .get("requestid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .filter(|s| !s.is_empty());
    if let Some(rid) = &request_id {
        let mut inner = shared.inner();
        inner
            .request_ids
            .retain(|_, (_, seen)| seen.elapsed() < REQUEST_ID_WINDOW);
        if let Some((job_id, _)) = inner.request_ids.get(rid)
            && let Some(job) = inner.jobs.get(job_id)
        {
            tracing::info!(request_id = %rid, job = %job_id, "duplicate RequestID: returning the original job");
            let node = job.node();
            drop(inner);
            return ok(&ctx, StatusCode::ACCEPTED, vec![node]);
        }
    }
    let body = read_small(&ctx).await?;
    let list = actions::parse_body(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid update actions: {e}")))?;
    let upload_id = ctx.query.get("uploadSessionId").cloned();
    if let Some(upload_id) = &upload_id {
        let upload = shared
            .inner()
            .uploads
            .get(upload_id)
            .cloned()
            .ok_or_else(|| unknown_upload(upload_id))?;
        if upload.bytes > shared.settings.update_payload_limit {
            return Err(ApiError::too_large(format!(
                "The payload of {} bytes exceeds the update limit of {} MB.",
                upload.bytes,
                shared.settings.update_payload_limit / MB
            )));
        }
    }
    // Check the RequestID again, take the payload and register the job under
    // one lock, so two concurrent requests with one RequestID apply once.
    let (job, payload, turn) = {
        let mut inner = shared.inner();
        if let Some(rid) = &request_id
            && let Some((job_id, _)) = inner.request_ids.get(rid)
            && let Some(job) = inner.jobs.get(job_id)
        {
            let node = job.node();
            drop(inner);
            return ok(&ctx, StatusCode::ACCEPTED, vec![node]);
        }
        let payload = match &upload_id {
            Some(upload_id) => Some(
                inner
                    .uploads
                    .remove(upload_id)
                    .ok_or_else(|| unknown_upload(upload_id))?
                    .file,
            ),
            None => None,
        };
        let job = jobs::new_job(JobKind::Update, Some(&ds), &ds.name);
        if let Some(rid) = &request_id {
            inner
                .request_ids
                .insert(rid.clone(), (job.id.clone(), Instant::now()));
        }
        inner.jobs.insert(job.id.clone(), job.clone());
        (job, payload, ds.queue.enqueue())
    };
    tracing::info!(datasource = %ds.name, job = %job.id, request_id = ?request_id, actions = list.len(), "update job queued");
    jobs::spawn_update(
        Arc::clone(&shared),
        job.id.clone(),
        ds.id.clone(),
        payload,
        list,
        turn,
    );
    ok(&ctx, StatusCode::ACCEPTED, vec![job.node()])
}

fn get_job(ctx: &Ctx, id: &str) -> Result<Response, ApiError> {
    let job =
        ctx.shared.inner().jobs.get(id).cloned().ok_or_else(|| {
            ApiError::not_found("404031", format!("Job '{id}' could not be found."))
        })?;
    ok(ctx, StatusCode::OK, vec![job.node()])
}

fn list_webhooks(ctx: &Ctx) -> Result<Response, ApiError> {
    let shared = &ctx.shared;
    let items = shared
        .inner()
        .webhooks
        .iter()
        .map(|w| w.node(&shared.user))
        .collect();
    ok(ctx, StatusCode::OK, vec![Node::list("webhooks", items)])
}

fn find_webhook(shared: &Shared, id: &str) -> Result<Webhook, ApiError> {
    shared
        .inner()
        .webhooks
        .iter()
        .find(|w| w.id == id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("404040", format!("Webhook '{id}' could not be found.")))
}

fn get_webhook(ctx: &Ctx, id: &str) -> Result<Response, ApiError> {
    let hook = find_webhook(&ctx.shared, id)?;
    ok(ctx, StatusCode::OK, vec![hook.node(&ctx.shared.user)])
}

fn delete_webhook(ctx: &Ctx, id: &str) -> Result<Response, ApiError> {
    find_webhook(&ctx.shared, id)?;
    ctx.shared.inner().webhooks.retain(|w| w.id != id);
    ctx.shared.save_catalog();
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn webhook_error(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "400000", "Bad Request", detail)
}

async fn create_webhook(ctx: Ctx) -> Result<Response, ApiError> {
    let body = read_small(&ctx).await?;
    let root = parse_ts_request(&ctx.headers, &body)?;
    let element: &Element = root
        .child("webhook")
        .ok_or_else(|| webhook_error("The request has no webhook element."))?;
    let name = element
        .attr("name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| webhook_error("The webhook has no name."))?;
    let by_attr = match element.attr("event") {
        Some(e) => Some(
            find_event(e).ok_or_else(|| webhook_error(format!("Unknown webhook event '{e}'.")))?,
        ),
        None => None,
    };
    let by_source =
        match element
            .child("webhook-source")
            .and_then(|s| s.children.first())
        {
            Some(e) => Some(find_event(&e.name).ok_or_else(|| {
                webhook_error(format!("Unknown webhook source event '{}'.", e.name))
            })?),
            None => None,
        };
    let event = match (by_attr, by_source) {
        (Some(a), Some(b)) if a != b => {
            return Err(webhook_error(format!(
                "The event attribute '{}' and the webhook-source '{}' disagree.",
                a.0, b.1
            )));
        }
        (Some(a), _) | (None, Some(a)) => a.0,
        (None, None) => return Err(webhook_error("The webhook names no event.")),
    };
    let http = element
        .child("webhook-destination")
        .and_then(|d| d.child("webhook-destination-http"))
        .ok_or_else(|| webhook_error("The webhook has no webhook-destination-http."))?;
    if http
        .attr("method")
        .is_some_and(|m| !m.eq_ignore_ascii_case("POST"))
    {
        return Err(webhook_error(
            "The webhook destination method must be POST.",
        ));
    }
    let url = http
        .attr("url")
        .ok_or_else(|| webhook_error("The webhook destination has no url."))?;
    if !webhooks::url_allowed(url) {
        return Err(webhook_error(format!(
            "The destination URL '{url}' is not allowed: it must be https (plain http only on loopback in the sandbox)."
        )));
    }
    let enabled = element
        .attr("isEnabled")
        .is_none_or(|v| !v.eq_ignore_ascii_case("false"));
    let hook = Webhook {
        id: luid(),
        name: name.to_owned(),
        event,
        url: url.to_owned(),
        enabled,
        created_at: now_micros(),
    };
    let shared = &ctx.shared;
    shared.inner().webhooks.push(hook.clone());
    shared.save_catalog();
    tracing::info!(webhook = %hook.id, event, url, "webhook created");
    let mut response = ts_response(
        ctx.format,
        StatusCode::CREATED,
        vec![hook.node(&shared.user)],
    );
    let location = format!(
        "{}/api/{API_VERSION}/sites/{}/webhooks/{}",
        shared.server_url, shared.site.id, hook.id
    );
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

async fn test_webhook(ctx: &Ctx, id: &str) -> Result<Response, ApiError> {
    let hook = find_webhook(&ctx.shared, id).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "400113",
            "Bad Request",
            format!("Webhook '{id}' does not exist."),
        )
    })?;
    let (status, body) = webhooks::test(&ctx.shared, &hook.url).await;
    ok(
        ctx,
        StatusCode::OK,
        vec![
            Node::new("webhookTestResult")
                .attr("id", hook.id.clone())
                .attr("status", status.to_string())
                .child(Node::new("body").text(body)),
        ],
    )
}
