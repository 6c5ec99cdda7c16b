//! HTTP routing and the resource handlers: path walking, query parameters,
//! faults, authentication, and ADF-style error answers.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::auth::Auth;
use crate::faults::{Fault, Faults};
use crate::form::parse_pairs;
use crate::model::{Rec, V, get as field};
use crate::query::{Attr, Op, Pred, QueryError, eval, parse_v1, parse_v2};
use crate::render::{
    At, Envelope, Opts, Place, Shape, begin_collection, describe, describe_child, end_collection,
    key_segment, write_data_item, write_item,
};
use crate::resources::{Node, PathKey, Resource, decode_uniq};
use crate::store::{Select, Store};
use crate::throttle::Admission;

/// The pinned version segment.
pub(crate) const VERSION: &str = "11.13.18.05";
/// Default page size.
const DEFAULT_LIMIT: u64 = 25;
/// Oracle's effective maximum page size: larger limits are cut silently.
/// ("500" in some pages is UNCONFIRMED; 499 is what Oracle's samples use.)
/// `offset` has no documented maximum (UNCONFIRMED): none is applied.
pub(crate) const MAX_LIMIT: u64 = 499;

/// State shared by all handlers.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Records.
    pub store: Store,
    /// Tokens.
    pub auth: Auth,
    /// Live switches.
    pub faults: Faults,
    /// `http://addr/fscmRestApi/resources/11.13.18.05`.
    pub base_url: String,
    /// Resource requests served (any outcome).
    pub requests: AtomicU64,
    /// The same, per top-level resource (`invoices` for
    /// `invoices/{id}/child/invoiceLines` too).
    pub requests_by_resource: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// The last [`RECENT_REQUESTS`] resource requests, `path?query`, oldest
    /// first, for tests to see what a client asked.
    pub recent: std::sync::Mutex<std::collections::VecDeque<String>>,
    /// Counter feeding the live random numbers.
    pub live_counter: AtomicU64,
}

impl Shared {
    /// Now, in microseconds since the epoch.
    pub(crate) fn now_micros() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    }

    /// A fresh pseudo-random number.
    pub(crate) fn random(&self) -> u64 {
        let c = self.live_counter.fetch_add(1, Ordering::Relaxed);
        self.store.data.live_random(c)
    }

    /// Updates `n` random live records of `table` stamped `lud`; returns
    /// their keys.
    pub(crate) fn update_random(&self, name: &str, n: u64, lud: i64) -> Vec<i64> {
        let Some(t) = self.store.table(name) else {
            return Vec::new();
        };
        let mut keys = Vec::new();
        for _ in 0..n {
            if let Some(i) = t.random_live(self.random())
                && t.update(&self.store.data, i, lud)
            {
                keys.push(self.store.data.int_key(t.res.kind, i));
            }
        }
        keys
    }
}

/// The router.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/oauth2/v1/token", post(crate::auth::token))
        .route("/oauth2/v1/authorize", get(crate::auth::authorize))
        .route("/fscmRestApi/resources", get(versions))
        .route("/fscmRestApi/resources/", get(versions))
        .route("/fscmRestApi/resources/{version}", get(resource_root))
        .route("/fscmRestApi/resources/{version}/", get(resource_root))
        .route("/fscmRestApi/resources/{version}/{*path}", get(resource))
        .fallback(not_found)
        .with_state(shared)
}

/// An ADF-style error answer:
/// `{"title","status","o:errorDetails":[{"detail","o:errorCode"}]}`. The
/// reference marks Fusion's error body UNCONFIRMED; the sandbox sends the
/// ADF shape, which a tolerant client parses either way.
pub(crate) fn adf_error(status: StatusCode, detail: &str, code: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = serde_json::json!({
        "type": "http://www.w3.org/Protocols/rfc2616/rfc2616-sec10.html",
        "title": title,
        "status": status.as_u16().to_string(),
        "o:errorDetails": [{"detail": detail, "o:errorCode": code}],
    });
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.oracle.adf.error+json"),
    );
    resp
}

fn json_response(body: impl IntoResponse, content_type: &'static str, version: u8) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&version.to_string()) {
        h.insert("REST-Framework-Version", v);
    }
    resp
}

async fn not_found() -> Response {
    adf_error(
        StatusCode::NOT_FOUND,
        "The requested URL was not found.",
        "404",
    )
}

async fn versions(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(p) = shared.auth.check(&headers) {
        return unauthorized(p);
    }
    let root = shared
        .base_url
        .trim_end_matches(VERSION)
        .trim_end_matches('/');
    let body = serde_json::json!({
        "items": [{
            "version": VERSION,
            "isLatest": true,
            "adf:extension.defaultFrameworkVersion": "1",
            "adf:extension.allowedFrameworkVersions": ["1","2","3","4","5","6","7","8","9"],
            "links": [{"rel": "canonical", "href": format!("{root}/{VERSION}"), "name": VERSION, "kind": "describe"}],
        }],
        "links": [{"rel": "self", "href": root, "name": "resources", "kind": "collection"}],
    });
    json_response(body.to_string(), "application/json", 1)
}

async fn resource_root(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(p) = shared.auth.check(&headers) {
        return unauthorized(p);
    }
    if version != VERSION && version != "latest" {
        return adf_error(
            StatusCode::NOT_FOUND,
            &format!("The version {version} is not found."),
            "404",
        );
    }
    let items: Vec<serde_json::Value> = crate::resources::RESOURCES
        .iter()
        .map(|r| {
            serde_json::json!({"name": r.node.name, "links": [{"rel": "canonical",
                "href": format!("{}/{}", shared.base_url, r.node.name), "name": r.node.name, "kind": "collection"}]})
        })
        .collect();
    json_response(
        serde_json::json!({"items": items}).to_string(),
        "application/json",
        1,
    )
}

fn unauthorized(p: crate::auth::TokenProblem) -> Response {
    let mut resp = adf_error(StatusCode::UNAUTHORIZED, p.detail(), "401");
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    resp
}

/// A 429 with `Retry-After: secs` and the ADF error body: what injected
/// rate-limit faults and throttling both answer.
fn too_many_requests(secs: u64) -> Response {
    let mut resp = adf_error(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests. Retry after the interval given in Retry-After.",
        "429",
    );
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn fault_response(fault: Fault) -> Option<Response> {
    match fault {
        Fault::None | Fault::Drop | Fault::Malformed | Fault::WrongEnvelope => None,
        Fault::RateLimit(secs) => Some(too_many_requests(secs)),
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            if matches!(code, 502..=504) {
                // Gateways answer with HTML, not ADF JSON.
                let reason = status.canonical_reason().unwrap_or("Error");
                let body = format!(
                    "<html><head><title>{code} {reason}</title></head><body><h1>{code} {reason}</h1></body></html>"
                );
                let mut resp = (status, body).into_response();
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
                Some(resp)
            } else {
                Some(adf_error(
                    status,
                    "The server could not process the request.",
                    &code.to_string(),
                ))
            }
        }
    }
}

/// Sends the first half of a response body, then fails the body so the
/// connection is closed mid-response.
async fn drop_midway(resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let half = Bytes::copy_from_slice(&bytes[..bytes.len() / 2]);
    use futures::StreamExt as _;
    // The head and the first half go out; a moment later the body fails,
    // which makes the server close the connection without finishing.
    let first = futures::stream::iter([Ok::<Bytes, std::io::Error>(half)]);
    let fail = futures::stream::once(async {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "sandbox fault: connection dropped mid-response",
        ))
    });
    let mut parts = parts;
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from_stream(first.chain(fail)))
}

/// A complete answer with a broken body: cut in half (`Malformed`), or
/// with the `items` member renamed (`WrongEnvelope`).
async fn corrupt(resp: Response, fault: Fault) -> Response {
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let broken = if fault == Fault::Malformed {
        let mut cut = text.len() / 2;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text[..cut].to_owned()
    } else {
        text.replacen("{\"items\":", "{\"rows\":", 1)
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(broken))
}

/// What an answer carried, for the latency model (a response extension
/// set by the handlers that serve records).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Served {
    /// Records returned: collection items, or 1 for an item.
    pub records: u64,
    /// Child rows inlined into them, at any depth.
    pub children: u64,
}

fn with_served(mut resp: Response, records: u64, children: u64) -> Response {
    resp.extensions_mut().insert(Served { records, children });
    resp
}

/// When an answer `delay` after `arrival` is due (a delay past any clock's
/// range waits a year).
fn due(arrival: tokio::time::Instant, delay: std::time::Duration) -> tokio::time::Instant {
    arrival
        .checked_add(delay)
        .unwrap_or_else(|| arrival + std::time::Duration::from_secs(365 * 86_400))
}

/// How many resource requests [`Shared::recent`] keeps.
pub(crate) const RECENT_REQUESTS: usize = 256;

/// `GET /fscmRestApi/resources/{version}/{*path}`: throttling, faults,
/// authentication, the answer, then the latency model (a timer: the
/// request holds no thread while it waits).
async fn resource(
    State(shared): State<Arc<Shared>>,
    Path((version, path)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let arrival = tokio::time::Instant::now();
    shared.requests.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut by) = shared.requests_by_resource.lock() {
        let top = path.split('/').next().unwrap_or_default();
        *by.entry(top.to_owned()).or_default() += 1;
    }
    if let Ok(mut recent) = shared.recent.lock() {
        if recent.len() == RECENT_REQUESTS {
            recent.pop_front();
        }
        recent.push_back(match &query {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        });
    }
    let auth = shared.auth.check(&headers);
    let client = auth.as_ref().ok().cloned();
    // Held until the answer is ready: the request is in flight till then.
    let _ticket = match shared.faults.gate().enter(client, arrival.into_std()) {
        Admission::Admitted(ticket) => ticket,
        Admission::Throttled {
            retry_after_secs,
            why,
        } => {
            tracing::debug!(?why, retry_after_secs, %path, "sandbox throttled a request");
            return too_many_requests(retry_after_secs);
        }
    };
    let latency = shared.faults.latency();
    let fault = shared.faults.next_fault();
    let delay = shared.faults.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(resp) = fault_response(fault) {
        tracing::debug!(?fault, %path, "sandbox fault injected");
        tokio::time::sleep_until(due(arrival, latency.base)).await;
        return resp;
    }
    let resp = match auth {
        Err(p) => unauthorized(p),
        Ok(_) => {
            let shared2 = Arc::clone(&shared);
            let query = query.unwrap_or_default();
            let headers2 = headers.clone();
            // Scans can take a while on big sandboxes: off the runtime.
            match tokio::task::spawn_blocking(move || {
                handle(&shared2, &version, &path, &query, &headers2)
            })
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "resource handler failed");
                    adf_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal error.", "500")
                }
            }
        }
    };
    let served = resp
        .extensions()
        .get::<Served>()
        .copied()
        .unwrap_or_default();
    tokio::time::sleep_until(due(arrival, latency.delay(served.records, served.children))).await;
    match fault {
        Fault::Drop => drop_midway(resp).await,
        Fault::Malformed | Fault::WrongEnvelope => corrupt(resp, fault).await,
        _ => resp,
    }
}

/// Request parameters.
struct Params {
    map: HashMap<String, String>,
}

impl Params {
    fn get(&self, k: &str) -> Option<&str> {
        self.map.get(k).map(String::as_str)
    }

    fn flag(&self, k: &str) -> bool {
        self.get(k).is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// A refused request: the status and the detail the client is shown (in
/// the ADF error body).
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    detail: String,
    code: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        adf_error(self.status, &self.detail, &self.code)
    }
}

fn bad(detail: impl Into<String>, code: &str) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        detail: detail.into(),
        code: code.to_owned(),
    }
}

fn not_found_key(what: &str) -> Response {
    adf_error(
        StatusCode::NOT_FOUND,
        &format!("The requested resource {what} was not found."),
        "404",
    )
}

fn framework_version(headers: &HeaderMap) -> Result<u8, ApiError> {
    match headers.get("REST-Framework-Version") {
        None => Ok(1),
        Some(v) => match v.to_str().ok().and_then(|s| s.trim().parse::<u8>().ok()) {
            Some(n) if (1..=9).contains(&n) => Ok(n),
            _ => Err(bad(
                "The REST-Framework-Version header value is not supported (1 to 9).",
                "27520",
            )),
        },
    }
}

fn handle(
    shared: &Shared,
    version: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
) -> Response {
    if version != VERSION && version != "latest" {
        return adf_error(
            StatusCode::NOT_FOUND,
            &format!("The version {version} is not found."),
            "404",
        );
    }
    let fv = match framework_version(headers) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let params = Params {
        map: parse_pairs(query).into_iter().collect(),
    };
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let base = &shared.base_url;
    match segs.as_slice() {
        [] => not_found_key(path),
        ["describe"] => json_response(describe(base, None).to_string(), "application/json", fv),
        [name, rest @ ..] => {
            let Some(table) = shared.store.table(name) else {
                return not_found_key(name);
            };
            let res = table.res;
            match rest {
                [] => top_collection(shared, res, &params, fv),
                ["describe"] => json_response(
                    describe(base, Some(res)).to_string(),
                    "application/json",
                    fv,
                ),
                [key, tail @ ..] => {
                    let Some(index) = top_index(shared, res, key) else {
                        return not_found_key(&format!("{name}/{key}"));
                    };
                    let Some(ver) = table.get(&shared.store.data, index) else {
                        return not_found_key(&format!("{name}/{key}"));
                    };
                    let rec = table.record(&shared.store.data, index, ver);
                    let href = format!("{base}/{name}/{}", key_segment(&res.node, &rec));
                    let at = At {
                        g: &shared.store.data,
                        res,
                        index,
                        ver,
                    };
                    let here = Here {
                        href,
                        parent: None,
                        is_top: true,
                    };
                    walk(&at, &res.node, rec, here, tail, &params, fv)
                }
            }
        }
    }
}

fn top_index(shared: &Shared, res: &Resource, seg: &str) -> Option<u64> {
    let table = shared.store.table(res.node.name)?;
    let g = &shared.store.data;
    let raw = || -> Option<u64> {
        let key = if res.node.key_ty() == crate::model::Ty::Str {
            V::str(seg.to_owned())
        } else {
            V::Int(seg.parse().ok()?)
        };
        table.index_of(g, &key)
    };
    let hashed = || -> Option<u64> {
        let parts = decode_uniq(seg)?;
        table.index_of(g, &V::Int(*parts.first()?))
    };
    match res.node.path {
        PathKey::Raw => raw(),
        PathKey::Hash => hashed(),
        PathKey::RawOrHash => raw().or_else(hashed),
    }
}

fn child_matches(node: &Node, row: &Rec, seg: &str) -> bool {
    let raw = || match field(row, node.key) {
        Some(V::Int(i)) => i.to_string() == seg,
        Some(V::Str(s)) => s == seg,
        _ => false,
    };
    let hashed = || {
        key_segment(
            &Node {
                path: PathKey::Hash,
                ..*node
            },
            row,
        ) == seg
    };
    match node.path {
        PathKey::Raw => raw(),
        PathKey::Hash => hashed(),
        PathKey::RawOrHash => raw() || hashed(),
    }
}

/// The item a path walk stands on.
struct Here {
    href: String,
    parent: Option<(String, &'static str)>,
    is_top: bool,
}

/// Serves an item (`tail` empty) or walks on into `child/<name>[/<key>…]`.
fn walk(
    at: &At<'_>,
    node: &'static Node,
    rec: Rec,
    here: Here,
    tail: &[&str],
    params: &Params,
    fv: u8,
) -> Response {
    let href = &here.href;
    match tail {
        [] => {
            let shape = match Shape::parse(node, params.get("fields"), params.get("expand")) {
                Ok(s) => s,
                Err(e) => return bad(e.0, "27504").into_response(),
            };
            let opts = opts(params, fv);
            let mut out = Vec::new();
            let children = write_item(
                &mut out,
                at,
                node,
                &rec,
                &shape,
                &opts,
                Place {
                    href,
                    parent: here.parent.as_ref().map(|(h, n)| (h.as_str(), *n)),
                    is_top: here.is_top,
                },
            );
            with_served(
                json_response(out, "application/vnd.oracle.adf.resourceitem+json", fv),
                1,
                children,
            )
        }
        ["child", child_name, "describe"] => match node.child(child_name) {
            Some(child) => json_response(
                describe_child(&format!("{href}/child/{}", child.name), child).to_string(),
                "application/json",
                fv,
            ),
            None => not_found_key(&format!("{href}/child/{child_name}")),
        },
        ["child", child_name, rest @ ..] => {
            let Some(child) = node.child(child_name) else {
                return not_found_key(&format!("{href}/child/{child_name}"));
            };
            let rows = at.g.children(
                at.res.kind,
                at.index,
                at.ver,
                at.res.ts_millis,
                if here.is_top { None } else { Some(&rec) },
                child.name,
            );
            let coll_href = format!("{href}/child/{}", child.name);
            match rest {
                [] => child_collection(at, child, rows, &coll_href, (href, node.name), params, fv),
                [key, more @ ..] => {
                    let Some(row) = rows.into_iter().find(|r| child_matches(child, r, key)) else {
                        return not_found_key(&format!("{coll_href}/{key}"));
                    };
                    let row_href = format!("{coll_href}/{}", key_segment(child, &row));
                    let next = Here {
                        href: row_href,
                        parent: Some((href.clone(), node.name)),
                        is_top: false,
                    };
                    walk(at, child, row, next, more, params, fv)
                }
            }
        }
        _ => not_found_key(href),
    }
}

fn opts(params: &Params, fv: u8) -> Opts {
    Opts {
        only_data: params.flag("onlyData"),
        links: params
            .get("links")
            .map(|l| l.split(',').map(|s| s.trim().to_owned()).collect()),
        version: fv,
    }
}

fn parse_limit_offset(params: &Params) -> Result<(u64, u64), ApiError> {
    let limit = match params.get("limit") {
        None | Some("") => DEFAULT_LIMIT,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n >= 1 => n.min(MAX_LIMIT),
            _ => return Err(bad(format!("The limit value {v} is not valid."), "27510")),
        },
    };
    let offset = match params.get("offset") {
        None | Some("") => 0,
        Some(v) => match v.parse::<u64>() {
            Ok(n) => n,
            Err(_) => return Err(bad(format!("The offset value {v} is not valid."), "27511")),
        },
    };
    Ok((limit, offset))
}

fn parse_order(node: &Node, order_by: Option<&str>) -> Result<Vec<(&'static str, bool)>, ApiError> {
    let mut out = Vec::new();
    for part in order_by
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (name, dir) = match part.split_once(':') {
            Some((n, d)) => (n.trim(), d.trim()),
            None => (part, "asc"),
        };
        let Some(def) = node.field(name) else {
            return Err(bad(
                format!("The attribute {name} in orderBy is not found in the resource."),
                "27505",
            ));
        };
        let desc = match dir.to_ascii_lowercase().as_str() {
            "asc" => false,
            "desc" => true,
            _ => {
                return Err(bad(
                    format!("The sort direction {dir} is not valid."),
                    "27506",
                ));
            }
        };
        out.push((def.name, desc));
    }
    Ok(out)
}

fn parse_filter(
    node: &'static Node,
    res: Option<&Resource>,
    params: &Params,
    fv: u8,
) -> Result<Option<Pred>, ApiError> {
    let mut parts = Vec::new();
    if let Some(q) = params.get("q").filter(|q| !q.trim().is_empty()) {
        let p = if fv >= 2 {
            parse_v2(node, q)
        } else {
            parse_v1(node, q)
        };
        match p {
            Ok(p) => parts.push(p),
            Err(e) => return Err(query_error(&e)),
        }
    }
    if let Some(finder) = params.get("finder").filter(|f| !f.is_empty()) {
        parts.push(parse_finder(node, res, finder)?);
    }
    Ok(match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(Pred::And(parts)),
    })
}

fn query_error(e: &QueryError) -> ApiError {
    bad(e.to_string(), e.code())
}

/// `finder=Name;var=val,var2=val2`: `PrimaryKey` (the key attribute) on
/// every collection, plus the resource's named finders (equality on each
/// bind variable given).
fn parse_finder(
    node: &'static Node,
    res: Option<&Resource>,
    finder: &str,
) -> Result<Pred, ApiError> {
    let (name, vars) = finder.split_once(';').unwrap_or((finder, ""));
    let allowed: Vec<&str> = if name == "PrimaryKey" {
        vec![node.key]
    } else {
        match res.and_then(|r| r.finders.iter().find(|f| f.name == name)) {
            Some(f) => f.vars.to_vec(),
            None => {
                return Err(bad(
                    format!("The finder {name} is not found in the resource."),
                    "27507",
                ));
            }
        }
    };
    let mut conds = Vec::new();
    for pair in vars.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((var, value)) = pair.split_once('=') else {
            return Err(bad(
                format!("The finder variable {pair} is not valid."),
                "27508",
            ));
        };
        let var = var.trim();
        if !allowed.contains(&var) {
            return Err(bad(
                format!("The finder {name} has no variable {var}."),
                "27508",
            ));
        }
        let Some(def) = node.field(var) else {
            return Err(bad(
                format!("The finder {name} has no variable {var}."),
                "27508",
            ));
        };
        let text = value.trim().trim_matches('\'');
        let v = match def.ty {
            crate::model::Ty::Int => text.parse::<i64>().ok().map(V::Int),
            _ => Some(V::str(text.to_owned())),
        };
        let Some(v) = v else {
            return Err(bad(
                format!("The value {text} is not valid for {var}."),
                "27503",
            ));
        };
        conds.push(Pred::Cmp(
            Attr {
                child: None,
                field: def.name,
                upper: false,
            },
            Op::Eq,
            v,
        ));
    }
    if name == "PrimaryKey" && conds.is_empty() {
        return Err(bad("The PrimaryKey finder needs the key value.", "27508"));
    }
    Ok(Pred::And(conds))
}

fn top_collection(shared: &Shared, res: &'static Resource, params: &Params, fv: u8) -> Response {
    let node = &res.node;
    let (limit, offset) = match parse_limit_offset(params) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let pred = match parse_filter(node, Some(res), params, fv) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let order = match parse_order(node, params.get("orderBy")) {
        Ok(o) => o,
        Err(r) => return r.into_response(),
    };
    let shape = match Shape::parse(node, params.get("fields"), params.get("expand")) {
        Ok(s) => s,
        Err(e) => return bad(e.0, "27504").into_response(),
    };
    let Some(table) = shared.store.table(node.name) else {
        return not_found_key(node.name);
    };
    let g = &shared.store.data;
    let page = table.page(
        g,
        &Select {
            pred: pred.as_ref(),
            order: &order,
            offset,
            limit,
            total: params.flag("totalResults"),
            // onlyData items are written straight from the generator.
            records: !params.flag("onlyData"),
        },
    );
    let opts = opts(params, fv);
    let coll_href = format!("{}/{}", shared.base_url, node.name);
    let mut out = Vec::new();
    begin_collection(&mut out);
    let mut href = String::new();
    let mut children = 0u64;
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let at = At {
            g,
            res,
            index: item.index,
            ver: item.ver,
        };
        children += match &item.rec {
            Some(rec) if !opts.only_data => {
                href.clear();
                let _ = write!(href, "{coll_href}/{}", key_segment(node, rec));
                let place = Place {
                    href: &href,
                    parent: None,
                    is_top: true,
                };
                write_item(&mut out, &at, node, rec, &shape, &opts, place)
            }
            rec => write_data_item(&mut out, &at, rec.as_ref(), &shape, fv, true),
        };
        if i == 0 {
            // The first item tells how big the page gets: one allocation.
            out.reserve(out.len().saturating_mul(page.items.len()) + 512);
        }
    }
    let env = Envelope {
        count: page.items.len(),
        has_more: page.has_more,
        limit,
        offset,
        total: page.total,
        href: &coll_href,
        name: node.name,
    };
    end_collection(&mut out, &env);
    // Live behaviour: rows move between the pages of one pull.
    let k = shared.faults.between_pages();
    if k > 0 && res.mutable {
        shared.update_random(node.name, u64::from(k), Shared::now_micros());
    }
    let records = page.items.len() as u64;
    with_served(
        json_response(
            out,
            "application/vnd.oracle.adf.resourcecollection+json",
            fv,
        ),
        records,
        children,
    )
}

fn child_collection(
    at: &At<'_>,
    node: &'static Node,
    rows: Vec<Rec>,
    coll_href: &str,
    parent: (&str, &'static str),
    params: &Params,
    fv: u8,
) -> Response {
    let (limit, offset) = match parse_limit_offset(params) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let pred = match parse_filter(node, None, params, fv) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let order = match parse_order(node, params.get("orderBy")) {
        Ok(o) => o,
        Err(r) => return r.into_response(),
    };
    let shape = match Shape::parse(node, params.get("fields"), params.get("expand")) {
        Ok(s) => s,
        Err(e) => return bad(e.0, "27504").into_response(),
    };
    let mut rows: Vec<Rec> = rows
        .into_iter()
        .filter(|r| {
            pred.as_ref().is_none_or(|p| {
                eval(p, r, &mut |c| {
                    at.g.children(at.res.kind, at.index, at.ver, at.res.ts_millis, Some(r), c)
                })
            })
        })
        .collect();
    if !order.is_empty() {
        rows.sort_by(|a, b| {
            for (f, desc) in &order {
                let va = field(a, f).cloned().unwrap_or(V::Null);
                let vb = field(b, f).cloned().unwrap_or(V::Null);
                let o = va.order(&vb);
                let o = if *desc { o.reverse() } else { o };
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
            std::cmp::Ordering::Equal
        });
    }
    let total = rows.len() as u64;
    let from = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(rows.len());
    let to = from
        .saturating_add(usize::try_from(limit).unwrap_or(usize::MAX))
        .min(rows.len());
    let opts = opts(params, fv);
    let mut out = Vec::new();
    begin_collection(&mut out);
    let mut href = String::new();
    let mut children = 0u64;
    for (i, row) in rows[from..to].iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if !opts.only_data {
            href.clear();
            let _ = write!(href, "{coll_href}/{}", key_segment(node, row));
        }
        let place = Place {
            href: &href,
            parent: Some(parent),
            is_top: false,
        };
        children += write_item(&mut out, at, node, row, &shape, &opts, place);
    }
    let env = Envelope {
        count: to - from,
        has_more: to < rows.len(),
        limit,
        offset,
        total: params.flag("totalResults").then_some(total),
        href: coll_href,
        name: node.name,
    };
    end_collection(&mut out, &env);
    with_served(
        json_response(
            out,
            "application/vnd.oracle.adf.resourcecollection+json",
            fv,
        ),
        (to - from) as u64,
        children,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::{Gen, Sizes};

    /// On-CPU nanoseconds of this thread so far (`/proc/thread-self/schedstat`).
    fn thread_cpu_ns() -> u64 {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Not a check: prints the CPU time rendering one expanded invoice
    /// costs, without HTTP (the best of 5 rounds of 100 pages of 499, on
    /// this thread's CPU clock): `cargo test --release -p
    /// mlc-sandbox-oracle --lib render_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn render_cost() {
        let shared = Shared {
            store: Store::new(Gen::new(1, Sizes::for_invoices(100_000), 1)),
            auth: Auth::new(
                "c".into(),
                mlc_common::Secret::new("s"),
                "scope".into(),
                std::time::Duration::from_secs(60),
            ),
            faults: Faults::default(),
            base_url: "http://127.0.0.1:1/fscmRestApi/resources/11.13.18.05".into(),
            requests: AtomicU64::new(0),
            requests_by_resource: Default::default(),
            recent: std::sync::Mutex::new(std::collections::VecDeque::new()),
            live_counter: AtomicU64::new(0),
        };
        let res = crate::resources::resource("invoices").unwrap();
        let pages = 100u64;
        for (mode, only_data, expand) in [
            ("onlyData", "true", true),
            ("links", "false", true),
            ("header", "true", false),
        ] {
            // `RENDER_COST_MODES=onlyData,header` runs only those.
            if std::env::var("RENDER_COST_MODES").is_ok_and(|m| !m.split(',').any(|x| x == mode)) {
                continue;
            }
            let mut best = f64::MAX;
            let mut bytes = 0;
            for _ in 0..5 {
                let started = thread_cpu_ns();
                bytes = 0;
                for p in 0..pages {
                    let mut map: HashMap<String, String> = [
                        ("limit", "499".to_owned()),
                        ("offset", (p * 499).to_string()),
                        ("onlyData", only_data.to_owned()),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect();
                    if expand {
                        map.insert(
                            "expand".into(),
                            "invoiceLines,invoiceLines.invoiceDistributions,invoiceInstallments"
                                .into(),
                        );
                    }
                    let resp = top_collection(&shared, res, &Params { map }, 3);
                    bytes += axum::body::HttpBody::size_hint(resp.body())
                        .exact()
                        .unwrap_or_default();
                }
                let ns = (thread_cpu_ns() - started) as f64;
                best = best.min(ns / 1e3 / (pages * 499) as f64);
            }
            println!(
                "{mode}: {best:.2} µs CPU per invoice rendered, {} bytes each",
                bytes / (pages * 499)
            );
        }
    }
}
