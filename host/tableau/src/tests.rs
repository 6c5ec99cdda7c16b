//! Unit tests: wire shapes, and the client against a small axum fake site
//! that records every request, so each test asserts exactly what was sent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, Response};
use mlc_common::Secret;

use crate::config::{ApiVersion, TableauConfig};
use crate::error::ErrorKind;
use crate::model::{self, ApiErrorBody, Job, Webhook, WebhookEvent, parse_xml};
use crate::{PayloadPart, PublishMode, TableauClient, UpdateBatch, parts_needed, request_id};

const NS: &str = "xmlns=\"http://tableau.com/api\"";
const SECRET: &str = "pat-s3cr3t==";

// ------------------------------------------------------------ pure pieces

#[test]
fn config_defaults_and_unknown_keys() {
    let json = serde_json::json!({
        "server_url": "https://10ay.online.tableau.com",
        "site_content_url": "acme",
        "pat_name": "p",
        "pat_secret": "s",
        "project": "Sales",
    });
    let c: TableauConfig = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(c.chunk_size, 16 * 1024 * 1024);
    assert_eq!(c.update_payload_limit, 100 * 1024 * 1024);
    assert!(c.is_cloud());
    assert_eq!(c.session_ttl(), Duration::from_secs(120 * 60));
    assert_eq!(c.session_reuse_window(), Duration::from_secs(110 * 60));
    assert_eq!(c.api_version, None);
    assert!(c.validate().is_ok());

    let mut server = json.clone();
    server["server_url"] = "https://tableau.example.com:8443".into();
    server["api_version"] = "3.22".into();
    let c: TableauConfig = serde_json::from_value(server).unwrap();
    assert!(!c.is_cloud());
    assert_eq!(c.session_ttl(), Duration::from_secs(240 * 60));
    assert_eq!(
        c.api_version,
        Some(ApiVersion {
            major: 3,
            minor: 22
        })
    );

    let mut typo = json.clone();
    typo["chunk_sise"] = 5.into();
    let err = serde_json::from_value::<TableauConfig>(typo).unwrap_err();
    assert!(err.to_string().contains("chunk_sise"), "{err}");

    let mut old = json;
    old["api_version"] = "3.4".into();
    let c: TableauConfig = serde_json::from_value(old).unwrap();
    assert!(c.validate().unwrap_err().contains("3.4"));
}

#[test]
fn secrets_never_printed() {
    let c = TableauConfig::new("http://127.0.0.1:1", "", "pat", Secret::new(SECRET), "P");
    assert!(!format!("{c:?}").contains(SECRET));
    let client = TableauClient::new("acme", c).unwrap();
    assert!(!format!("{client:?}").contains(SECRET));
}

#[test]
fn parses_namespaced_responses() {
    let signin = format!(
        r#"<?xml version='1.0' encoding='UTF-8'?><tsResponse {NS}><credentials token="T|1&amp;2"><site id="site-1" contentUrl="acme"/><user id="user-1"/></credentials></tsResponse>"#
    );
    let root = parse_xml(&signin).unwrap();
    let a = model::SignInAnswer::from_xml(&root).unwrap();
    assert_eq!(
        (a.token.as_str(), a.site_id.as_str(), a.user_id.as_str()),
        ("T|1&2", "site-1", "user-1")
    );

    let prefixed = r#"<t:tsResponse xmlns:t="http://tableau.com/api"><t:error code="401002"><t:summary>Unauthorized Access</t:summary><t:detail>Invalid authentication credentials were provided.</t:detail></t:error></t:tsResponse>"#;
    let e = ApiErrorBody::parse(prefixed).unwrap();
    assert_eq!(e.code, "401002");
    assert_eq!(e.summary, "Unauthorized Access");
    assert!(e.detail.starts_with("Invalid"));

    let json = r#"{"error":{"summary":"Bad Request","detail":"x","code":"400000"}}"#;
    assert_eq!(ApiErrorBody::parse(json).unwrap().code, "400000");

    let job = format!(
        r#"<tsResponse {NS}><job id="j1" mode="Asynchronous" type="UpdateUploadedFile" progress="100" createdAt="a" startedAt="b" completedAt="c" finishCode="1"><updateUploadedFileJob><datasource id="ds1" name="orders"/><connectionLuid>c1</connectionLuid><notes>Specified table does not exist: changes. (errorCode=410012)</notes></updateUploadedFileJob></job></tsResponse>"#
    );
    let j = Job::from_xml(&parse_xml(&job).unwrap()).unwrap();
    assert_eq!(j.finish_code, Some(1));
    assert!(j.is_done());
    assert_eq!(j.datasource_id.as_deref(), Some("ds1"));
    assert!(j.notes.unwrap().contains("410012"));

    let running = format!(
        r#"<tsResponse {NS}><job id="j2" type="UpdateUploadedFile" progress="0"/></tsResponse>"#
    );
    assert!(
        !Job::from_xml(&parse_xml(&running).unwrap())
            .unwrap()
            .is_done()
    );

    let hook = r#"<webhook id="w1" name="n" isEnabled="true"><webhook-source><webhook-source-event-datasource-updated/></webhook-source><webhook-destination><webhook-destination-http method="POST" url="http://h/x"/></webhook-destination><owner id="o"/></webhook>"#;
    let w = Webhook::from_xml(&parse_xml(hook).unwrap()).unwrap();
    assert_eq!(w.event, Some(WebhookEvent::DatasourceUpdated));
    assert_eq!(w.url, "http://h/x");
}

#[test]
fn webhook_payloads() {
    let body = br#"{"resource":"DATASOURCE","event_type":"DatasourceRefreshSucceeded","resource_name":"orders",
        "site_luid":"6b71","resource_luid":"e76a","created_at":"2025-03-01T10:07:12Z"}"#;
    let p = model::WebhookPayload::parse(body).unwrap();
    assert_eq!(p.event(), Some(WebhookEvent::DatasourceRefreshSucceeded));
    assert_eq!(p.resource_luid, "e76a");
    assert_eq!(
        p.dedupe_key(),
        model::WebhookPayload::parse(body).unwrap().dedupe_key()
    );
    assert!(model::WebhookPayload::parse(b"").unwrap().is_test());
    assert!(model::WebhookPayload::parse(b"{}").unwrap().is_test());
    assert!(
        model::WebhookPayload::parse(br#"{"event_type":"Test"}"#)
            .unwrap()
            .is_test()
    );
    assert!(model::WebhookPayload::parse(b"not json").is_err());
}

#[test]
fn update_actions_are_keyed_upserts_and_deletes() {
    let one = model::update_actions(&["id".into()], true, false);
    assert_eq!(
        one,
        serde_json::json!({"actions":[{"action":"upsert","source-schema":"Extract","source-table":"changes",
            "target-schema":"Extract","target-table":"Extract",
            "condition":{"op":"eq","target-col":"id","source-col":"id"}}]})
    );
    let two = model::update_actions(&["order_id".into(), "line_no".into()], true, true);
    let actions = two["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 2);
    assert_eq!(actions[1]["action"], "delete");
    assert_eq!(actions[1]["source-table"], "deleted");
    assert_eq!(
        actions[0]["condition"],
        serde_json::json!({"op":"and","args":[
            {"op":"eq","target-col":"order_id","source-col":"order_id"},
            {"op":"eq","target-col":"line_no","source-col":"line_no"}]})
    );
}

#[test]
fn request_ids_are_deterministic() {
    assert_eq!(request_id("b-42", 0, 0, 1), "b-42");
    assert_eq!(request_id("b-42", 0, 0, 3), "b-42-1");
    assert_eq!(request_id("b-42", 0, 2, 3), "b-42-3");
    assert_eq!(request_id("b-42", 1, 0, 1), "b-42.a1");
    assert_eq!(request_id("b-42", 2, 1, 2), "b-42.a2-2");
    assert_eq!(parts_needed(0, 100), 1);
    assert_eq!(parts_needed(90, 100), 1);
    assert_eq!(parts_needed(91, 100), 2);
    assert_eq!(parts_needed(250 * 1024 * 1024, 100 * 1024 * 1024), 3);
}

// ------------------------------------------------------------ fake site

/// One request as the fake site received it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Seen {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn is(&self, method: &str, suffix: &str) -> bool {
        self.method == method && self.path.ends_with(suffix)
    }
}

/// The parts of a multipart body: (name, filename, bytes).
fn multipart(seen: &Seen) -> Vec<(String, Option<String>, Vec<u8>)> {
    let ct = seen.header("content-type").unwrap();
    assert!(
        ct.starts_with("multipart/mixed; boundary="),
        "content type {ct}"
    );
    let boundary = format!("--{}", ct.split("boundary=").nth(1).unwrap());
    let body = &seen.body;
    let mut parts = Vec::new();
    let mut pos = find(body, boundary.as_bytes(), 0).unwrap();
    loop {
        let start = pos + boundary.len();
        if body[start..].starts_with(b"--") {
            break;
        }
        let head_end = find(body, b"\r\n\r\n", start).unwrap();
        let head = String::from_utf8_lossy(&body[start..head_end]).into_owned();
        let next = find(body, format!("\r\n{boundary}").as_bytes(), head_end).unwrap();
        let name = head
            .split("name=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned();
        let filename = head
            .split("filename=\"")
            .nth(1)
            .map(|f| f.split('"').next().unwrap().to_owned());
        assert!(
            head.contains("Content-Disposition: form-data;"),
            "part head {head}"
        );
        parts.push((name, filename, body[head_end + 4..next].to_vec()));
        pos = next + 2;
    }
    parts
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

#[derive(Default)]
struct Site {
    log: Mutex<Vec<Seen>>,
    signins: AtomicU32,
    /// Only the newest token is valid (one session per PAT).
    token: Mutex<Option<String>>,
    server_version: Mutex<String>,
    /// Where sign-in redirects, once.
    redirect_signin_to: Mutex<Option<String>>,
    /// Answer the next N requests (other than sign-in) with 429.
    rate_limit_next: AtomicU32,
    /// Answer the Nth chunk PUT (1-based, counted over all sessions) with 500.
    fail_chunk_number: AtomicU32,
    chunk_puts: AtomicU32,
    uploads: Mutex<HashMap<String, Vec<u8>>>,
    upload_seq: AtomicUsize,
    /// Job polls before a job completes, and the notes to fail it with.
    job_polls_needed: AtomicU32,
    job_polls: AtomicU32,
    fail_job_notes: Mutex<Option<String>>,
    webhooks: Mutex<Vec<(String, String, String)>>,
    /// Token of the sessions to treat as expired.
    expire_token_now: Mutex<bool>,
    /// Expire the session once the Nth chunk PUT (1-based) is received:
    /// the next authenticated call finds it gone.
    expire_after_chunk: AtomicU32,
    /// Answer every authenticated call with 401002, whatever the token.
    reject_all_tokens: std::sync::atomic::AtomicBool,
    /// Answer the next N authenticated calls with 503.
    unavailable_next: AtomicU32,
    /// Answer webhook creation with 503.
    unavailable_create: std::sync::atomic::AtomicBool,
}

fn xml(status: u16, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/xml;charset=UTF-8")
        .body(Body::from(body))
        .unwrap()
}

fn error(status: u16, code: &str, summary: &str) -> Response<Body> {
    xml(
        status,
        format!(
            r#"<tsResponse {NS}><error code="{code}"><summary>{summary}</summary><detail>detail of {code}</detail></error></tsResponse>"#
        ),
    )
}

impl Site {
    fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    fn handle(&self, base: &str, req: &Seen) -> Response<Body> {
        if req.path.ends_with("/serverInfo") {
            let v = self.server_version.lock().unwrap().clone();
            return xml(
                200,
                format!(
                    r#"<tsResponse {NS}><serverInfo><productVersion build="x">2025.1.0</productVersion><restApiVersion>{v}</restApiVersion></serverInfo></tsResponse>"#
                ),
            );
        }
        if req.path.ends_with("/auth/signin") {
            if let Some(to) = self.redirect_signin_to.lock().unwrap().take() {
                return Response::builder()
                    .status(301)
                    .header("location", format!("{to}{}", req.path))
                    .body(Body::empty())
                    .unwrap();
            }
            let n = self.signins.fetch_add(1, Ordering::SeqCst) + 1;
            let token = format!("tok-{n}");
            *self.token.lock().unwrap() = Some(token.clone());
            return xml(
                200,
                format!(
                    r#"<tsResponse {NS}><credentials token="{token}"><site id="site-1" contentUrl="acme"/><user id="u1"/></credentials></tsResponse>"#
                ),
            );
        }
        let token = req.header("x-tableau-auth").map(str::to_owned);
        {
            let mut expire = self.expire_token_now.lock().unwrap();
            if *expire {
                *expire = false;
                *self.token.lock().unwrap() = None;
            }
        }
        if token.is_none()
            || token != *self.token.lock().unwrap()
            || self.reject_all_tokens.load(Ordering::SeqCst)
        {
            return error(401, "401002", "Unauthorized Access");
        }
        if req.path.ends_with("/auth/signout") {
            *self.token.lock().unwrap() = None;
            return Response::builder().status(204).body(Body::empty()).unwrap();
        }
        if self.rate_limit_next.load(Ordering::SeqCst) > 0 {
            self.rate_limit_next.fetch_sub(1, Ordering::SeqCst);
            return Response::builder()
                .status(429)
                .header("retry-after", "1")
                .body(Body::empty())
                .unwrap();
        }
        let _ = base;
        if self.unavailable_next.load(Ordering::SeqCst) > 0 {
            self.unavailable_next.fetch_sub(1, Ordering::SeqCst);
            return error(503, "503000", "Service unavailable");
        }
        if req.is("GET", "/sites/site-1/projects") {
            return xml(
                200,
                format!(
                    r#"<tsResponse {NS}><pagination pageNumber="1" pageSize="1000" totalAvailable="2"/><projects><project id="p-nested" name="Sales" parentProjectId="p-top"/><project id="p-top" name="Sales"/></projects></tsResponse>"#
                ),
            );
        }
        if req.is("GET", "/sites/site-1/datasources") {
            return xml(
                200,
                format!(
                    r#"<tsResponse {NS}><pagination pageNumber="1" pageSize="1000" totalAvailable="1"/><datasources><datasource id="ds-1" name="orders"><project id="p-top" name="Sales"/></datasource></datasources></tsResponse>"#
                ),
            );
        }
        if req.is("POST", "/sites/site-1/fileUploads") {
            let id = format!(
                "7720:abc{}-1:0",
                self.upload_seq.fetch_add(1, Ordering::SeqCst)
            );
            self.uploads.lock().unwrap().insert(id.clone(), Vec::new());
            return xml(
                201,
                format!(
                    r#"<tsResponse {NS}><fileUpload uploadSessionId="{id}" fileSize="0"/></tsResponse>"#
                ),
            );
        }
        if req.method == "PUT" && req.path.contains("/sites/site-1/fileUploads/") {
            let id = req.path.rsplit('/').next().unwrap().to_owned();
            let n = self.chunk_puts.fetch_add(1, Ordering::SeqCst) + 1;
            if n == self.expire_after_chunk.load(Ordering::SeqCst) {
                *self.expire_token_now.lock().unwrap() = true;
            }
            if n == self.fail_chunk_number.load(Ordering::SeqCst) {
                return error(500, "500000", "Internal error");
            }
            let parts = multipart(req);
            assert_eq!(parts.len(), 2, "chunk parts");
            assert_eq!(parts[0].0, "request_payload");
            assert_eq!(parts[1].0, "tableau_file");
            assert_eq!(parts[1].1.as_deref(), Some("file"));
            let mut uploads = self.uploads.lock().unwrap();
            let Some(data) = uploads.get_mut(&id) else {
                return error(404, "404015", "Upload session not found");
            };
            data.extend_from_slice(&parts[1].2);
            return xml(
                200,
                format!(
                    r#"<tsResponse {NS}><fileUpload uploadSessionId="{id}" fileSize="{}"/></tsResponse>"#,
                    data.len() / (1024 * 1024)
                ),
            );
        }
        if req.is("POST", "/sites/site-1/datasources") {
            if req.query.contains_key("asJob") {
                return xml(
                    202,
                    format!(
                        r#"<tsResponse {NS}><job id="pub-job" mode="Asynchronous" type="PublishDatasource" progress="0"/></tsResponse>"#
                    ),
                );
            }
            return xml(
                201,
                format!(
                    r#"<tsResponse {NS}><datasource id="ds-1" name="orders"><project id="p-top" name="Sales"/><owner id="u1"/></datasource></tsResponse>"#
                ),
            );
        }
        if req.is("GET", "/sites/site-1/datasources/ds-1") {
            return xml(
                200,
                format!(
                    r#"<tsResponse {NS}><datasource id="ds-1" name="orders"><project id="p-top" name="Sales"/></datasource></tsResponse>"#
                ),
            );
        }
        if req.method == "PATCH" && req.path.ends_with("/datasources/ds-1/data") {
            return xml(
                202,
                format!(
                    r#"<tsResponse {NS}><job id="upd-{}" mode="Asynchronous" type="UpdateUploadedFile" createdAt="x"><updateUploadedFileJob><datasource id="ds-1" name="orders"/></updateUploadedFileJob></job></tsResponse>"#,
                    req.header("requestid").unwrap_or("none")
                ),
            );
        }
        if req.method == "GET" && req.path.contains("/sites/site-1/jobs/") {
            let id = req.path.rsplit('/').next().unwrap();
            let n = self.job_polls.fetch_add(1, Ordering::SeqCst) + 1;
            if n < self.job_polls_needed.load(Ordering::SeqCst) {
                return xml(
                    200,
                    format!(
                        r#"<tsResponse {NS}><job id="{id}" type="UpdateUploadedFile" progress="10" startedAt="s"/></tsResponse>"#
                    ),
                );
            }
            self.job_polls.store(0, Ordering::SeqCst);
            return match self.fail_job_notes.lock().unwrap().clone() {
                Some(notes) => xml(
                    200,
                    format!(
                        r#"<tsResponse {NS}><job id="{id}" type="UpdateUploadedFile" progress="100" completedAt="c" finishCode="1"><updateUploadedFileJob><datasource id="ds-1" name="orders"/><notes>{notes}</notes></updateUploadedFileJob></job></tsResponse>"#
                    ),
                ),
                None => xml(
                    200,
                    format!(
                        r#"<tsResponse {NS}><job id="{id}" type="UpdateUploadedFile" progress="100" completedAt="c" finishCode="0"><updateUploadedFileJob><datasource id="ds-1" name="orders"/></updateUploadedFileJob></job></tsResponse>"#
                    ),
                ),
            };
        }
        if req.is("GET", "/sites/site-1/webhooks") {
            let hooks = self.webhooks.lock().unwrap();
            let items: String = hooks.iter().map(|(id, ev, url)| format!(r#"<webhook id="{id}" name="n" event="{ev}" isEnabled="true"><webhook-destination><webhook-destination-http method="POST" url="{url}"/></webhook-destination></webhook>"#)).collect();
            return xml(
                200,
                format!(
                    r#"<tsResponse {NS}><pagination pageNumber="1" pageSize="1000" totalAvailable="{}"/><webhooks>{items}</webhooks></tsResponse>"#,
                    hooks.len()
                ),
            );
        }
        if req.is("POST", "/sites/site-1/webhooks") {
            if self.unavailable_create.load(Ordering::SeqCst) {
                return error(503, "503000", "Service unavailable");
            }
            let root = parse_xml(&req.text()).unwrap();
            let hook = root.find("webhook").unwrap();
            let ev = hook.attr("event").unwrap().to_owned();
            let source = &hook.find("webhook-source").unwrap().children[0].name;
            assert_eq!(
                WebhookEvent::from_name(source),
                WebhookEvent::from_name(&ev),
                "event attribute and source element agree"
            );
            let url = hook
                .find("webhook-destination-http")
                .unwrap()
                .attr("url")
                .unwrap()
                .to_owned();
            let mut hooks = self.webhooks.lock().unwrap();
            let id = format!("wh-{}", hooks.len() + 1);
            hooks.push((id.clone(), ev.clone(), url.clone()));
            return xml(
                201,
                format!(
                    r#"<tsResponse {NS}><webhook id="{id}" name="n" event="{ev}"><webhook-destination><webhook-destination-http method="POST" url="{url}"/></webhook-destination></webhook></tsResponse>"#
                ),
            );
        }
        error(
            404,
            "404000",
            &format!("no route {} {}", req.method, req.path),
        )
    }
}

async fn serve(site: Arc<Site>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let b = base.clone();
    let app = axum::Router::new().fallback(move |req: Request<Body>| {
        let site = site.clone();
        let base = b.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap()
                .to_vec();
            let query = parts
                .uri
                .query()
                .map(|q| {
                    q.split('&')
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_owned(), urldecode(v)))
                        .collect()
                })
                .unwrap_or_default();
            let seen = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query,
                headers: parts.headers,
                body,
            };
            site.log.lock().unwrap().push(seen.clone());
            site.handle(&base, &seen)
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

fn urldecode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

fn new_site(version: &str) -> Arc<Site> {
    let s = Site::default();
    *s.server_version.lock().unwrap() = version.into();
    s.job_polls_needed.store(1, Ordering::SeqCst);
    Arc::new(s)
}

fn config(base: &str) -> TableauConfig {
    let mut c = TableauConfig::new(base, "acme", "connector-pat", Secret::new(SECRET), "Sales");
    c.job_poll.initial_ms = 10;
    c.job_poll.max_ms = 40;
    c.retry.initial_backoff_ms = 10;
    c
}

fn temp_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut f, bytes).unwrap();
    f
}

// ------------------------------------------------------------ session tests

#[tokio::test]
async fn signs_in_with_pat_xml_and_picks_version() {
    let site = new_site("3.30");
    let base = serve(site.clone()).await;
    let client = TableauClient::new("acme", config(&base)).unwrap();
    assert_eq!(
        client.project_id().await.unwrap(),
        "p-top",
        "top-level project wins"
    );
    let seen = site.seen();
    assert_eq!(seen[0].path, "/api/3.19/serverInfo");
    let signin = &seen[1];
    assert_eq!(
        signin.path, "/api/3.28/auth/signin",
        "3.30 offered, 3.28 is our highest"
    );
    assert_eq!(signin.header("content-type"), Some("text/xml"));
    assert_eq!(
        signin.text(),
        format!(
            r#"<tsRequest><credentials personalAccessTokenName="connector-pat" personalAccessTokenSecret="{SECRET}"><site contentUrl="acme"/></credentials></tsRequest>"#
        )
    );
    assert_eq!(seen[2].path, "/api/3.28/sites/site-1/projects");
    assert_eq!(seen[2].header("x-tableau-auth"), Some("tok-1"));
    assert_eq!(
        seen[2].query.get("filter").map(String::as_str),
        Some("name:eq:Sales")
    );

    let old = new_site("3.12");
    let base = serve(old).await;
    let err = TableauClient::new("acme", config(&base))
        .unwrap()
        .sign_in()
        .await
        .unwrap_err();
    assert!(
        matches!(*err.kind, ErrorKind::UnsupportedVersion { .. }),
        "{err}"
    );

    let pinned = new_site("3.30");
    let base = serve(pinned.clone()).await;
    let mut c = config(&base);
    c.api_version = ApiVersion::parse("3.22");
    TableauClient::new("acme", c)
        .unwrap()
        .sign_in()
        .await
        .unwrap();
    assert_eq!(
        pinned.seen()[0].path,
        "/api/3.22/auth/signin",
        "a pinned version skips serverInfo"
    );
}

#[tokio::test]
async fn follows_pod_redirect_with_a_post_and_stays_there() {
    let pod = new_site("3.25");
    let pod_base = serve(pod.clone()).await;
    let front = new_site("3.25");
    *front.redirect_signin_to.lock().unwrap() = Some(pod_base.clone());
    let front_base = serve(front.clone()).await;
    let client = TableauClient::new("acme", config(&front_base)).unwrap();
    client.project_id().await.unwrap();
    let front_seen = front.seen();
    assert_eq!(
        front_seen.len(),
        2,
        "serverInfo and the redirected sign-in only: {front_seen:?}"
    );
    let pod_seen = pod.seen();
    assert!(
        pod_seen[0].is("POST", "/api/3.25/auth/signin"),
        "re-POSTed: {:?}",
        pod_seen[0]
    );
    assert!(pod_seen[0].text().contains("personalAccessTokenName"));
    assert!(pod_seen[1].path.ends_with("/projects"));
    assert_eq!(client.sessions().base_url().await, pod_base);
}

#[tokio::test]
async fn one_sign_in_for_concurrent_callers_and_one_replay_on_401002() {
    let site = new_site("3.25");
    let base = serve(site.clone()).await;
    let client = TableauClient::new("acme", config(&base)).unwrap();
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.find_datasource("orders").await })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap().unwrap().id, "ds-1");
    }
    assert_eq!(
        site.signins.load(Ordering::SeqCst),
        1,
        "single-flight sign-in"
    );

    // Another process signs in with the same PAT: our token dies (401002).
    *site.token.lock().unwrap() = Some("someone-else".into());
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.get_datasource("ds-1").await })
        })
        .collect();
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(
        site.signins.load(Ordering::SeqCst),
        2,
        "one renewal shared by all callers"
    );

    client.shutdown().await.unwrap();
    let last = site.seen().pop().unwrap();
    assert!(last.is("POST", "/auth/signout"));
    assert_eq!(last.header("x-tableau-auth"), Some("tok-2"));
}

#[tokio::test]
async fn a_401_is_replayed_only_once() {
    let site = new_site("3.25");
    let base = serve(site.clone()).await;
    let client = TableauClient::new("acme", config(&base)).unwrap();
    client.sign_in().await.unwrap();
    site.reject_all_tokens.store(true, Ordering::SeqCst);
    let err = client.get_datasource("ds-1").await.unwrap_err();
    assert_eq!(err.api_code(), Some("401002"), "{err}");
    assert_eq!(
        site.signins.load(Ordering::SeqCst),
        2,
        "one renewal, no loop"
    );
    let gets = site
        .seen()
        .iter()
        .filter(|s| s.is("GET", "/datasources/ds-1"))
        .count();
    assert_eq!(gets, 2, "the request and its one replay");
}

#[tokio::test]
async fn retries_5xx_only_where_repeating_is_harmless() {
    let site = new_site("3.25");
    let base = serve(site.clone()).await;
    let client = TableauClient::new("acme", config(&base)).unwrap();
    client.sign_in().await.unwrap();
    site.unavailable_next.store(2, Ordering::SeqCst);
    client.get_datasource("ds-1").await.unwrap();
    let gets = site
        .seen()
        .iter()
        .filter(|s| s.is("GET", "/datasources/ds-1"))
        .count();
    assert_eq!(gets, 3, "two 503s retried");

    // Creating a webhook is not idempotent: a 503 is not blindly repeated.
    site.unavailable_create.store(true, Ordering::SeqCst);
    let err = client.ensure_webhooks("http://h/x").await.unwrap_err();
    assert_eq!(err.status(), Some(503), "{err}");
    assert!(err.is_transient());
    let creates = site
        .seen()
        .iter()
        .filter(|s| s.is("POST", "/webhooks"))
        .count();
    assert_eq!(creates, 1, "the create was sent once");
}

#[tokio::test]
async fn refreshes_before_expiry() {
    let site = new_site("3.25");
    let base = serve(site.clone()).await;
    let mut c = config(&base);
    c.session_ttl_secs = Some(2);
    c.session_refresh_margin_secs = 1;
    let client = TableauClient::new("acme", c).unwrap();
    client.get_datasource("ds-1").await.unwrap();
    client.get_datasource("ds-1").await.unwrap();
    assert_eq!(site.signins.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.get_datasource("ds-1").await.unwrap();
    assert_eq!(
        site.signins.load(Ordering::SeqCst),
        2,
        "signed in again before the TTL ended"
    );
    let last = site.seen().pop().unwrap();
    assert_eq!(
        last.header("x-tableau-auth"),
        Some("tok-2"),
        "the new session is used"
    );
}

#[tokio::test]
async fn honours_retry_after() {
    let site = new_site("3.25");
    let base = serve(site.clone()).await;
    let client = TableauClient::new("acme", config(&base)).unwrap();
    client.sign_in().await.unwrap();
    site.rate_limit_next.store(1, Ordering::SeqCst);
    let t = std::time::Instant::now();
    client.get_datasource("ds-1").await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "waited {:?}",
        t.elapsed()
    );
    let gets = site
        .seen()
        .iter()
        .filter(|s| s.is("GET", "/datasources/ds-1"))
        .count();
    assert_eq!(gets, 2);
}

// ------------------------------------------------------------ publishing

#[tokio::test]
async fn small_publish_is_one_multipart_request() {
    let site = new_site("3.25");
    let base = serve(site.clone()).await;
    let client = TableauClient::new("acme", config(&base)).unwrap();
    let file = temp_file(b"HYPER-BYTES");
    let ds = client
        .publish("orders", file.path(), PublishMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(ds.id, "ds-1");
    let seen = site.seen();
    let publish = seen.iter().find(|s| s.is("POST", "/datasources")).unwrap();
    assert_eq!(
        publish.query.get("datasourceType").map(String::as_str),
        Some("hyper")
    );
    assert_eq!(
        publish.query.get("overwrite").map(String::as_str),
        Some("true")
    );
    assert!(!publish.query.contains_key("uploadSessionId"));
    let parts = multipart(publish);
    assert_eq!(parts[0].0, "request_payload");
    assert_eq!(
        String::from_utf8_lossy(&parts[0].2),
        r#"<tsRequest><datasource name="orders"><project id="p-top"/></datasource></tsRequest>"#
    );
    assert_eq!(parts[1].0, "tableau_datasource");
    assert_eq!(parts[1].1.as_deref(), Some("orders.hyper"));
    assert_eq!(parts[1].2, b"HYPER-BYTES");
    assert!(!seen.iter().any(|s| s.path.contains("fileUploads")));
}

#[tokio::test]
async fn large_publish_is_chunked_and_a_failed_chunk_restarts_the_upload() {
    let site = new_site("3.25");
    let base = serve(site.clone()).await;
    let mut c = config(&base);
    c.chunk_size = 10;
    c.publish_as_job = true;
    let client = TableauClient::new("acme", c).unwrap();
    let content: Vec<u8> = (0..25u8).collect();
    let file = temp_file(&content);
    site.fail_chunk_number.store(2, Ordering::SeqCst);
    let ds = client
        .publish("orders", file.path(), PublishMode::CreateNew)
        .await
        .unwrap();
    assert_eq!(ds.id, "ds-1");
    let seen = site.seen();
    let initiates = seen.iter().filter(|s| s.is("POST", "/fileUploads")).count();
    assert_eq!(initiates, 2, "the upload started over after the 500");
    let puts: Vec<&Seen> = seen.iter().filter(|s| s.method == "PUT").collect();
    assert_eq!(
        puts.len(),
        2 + 3,
        "one chunk, the failed one, then three chunks in a new session"
    );
    assert_eq!(puts[0].path, puts[1].path);
    assert!(
        puts[2..].iter().all(|p| p.path != puts[1].path),
        "no chunk replayed into the old session"
    );
    let uploads = site.uploads.lock().unwrap();
    let finished = uploads.get("7720:abc1-1:0").unwrap();
    assert_eq!(finished, &content, "chunks arrived in order, complete");
    let publish = seen.iter().find(|s| s.is("POST", "/datasources")).unwrap();
    assert_eq!(
        publish.query.get("uploadSessionId").map(String::as_str),
        Some("7720:abc1-1:0")
    );
    assert_eq!(publish.query.get("asJob").map(String::as_str), Some("true"));
    assert!(!publish.query.contains_key("overwrite"));
    let parts = multipart(publish);
    assert_eq!(
        parts.len(),
        1,
        "only request_payload with an upload session"
    );
    assert!(
        seen.iter().any(|s| s.path.ends_with("/jobs/pub-job")),
        "publish job polled"
    );
}

#[tokio::test]
async fn session_expiry_mid_upload_is_survived() {
    let site = new_site("3.25");
    let base = serve(site.clone()).await;
    let mut c = config(&base);
    c.chunk_size = 4;
    let client = TableauClient::new("acme", c).unwrap();
    client.sign_in().await.unwrap();
    let content = b"0123456789abcdef".to_vec();
    let file = temp_file(&content);
    // The session expires once the first chunk is in: the second chunk
    // finds it gone.
    site.expire_after_chunk.store(1, Ordering::SeqCst);
    client
        .publish("orders", file.path(), PublishMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(site.signins.load(Ordering::SeqCst), 2);
    let uploads = site.uploads.lock().unwrap();
    assert_eq!(
        uploads.len(),
        1,
        "the upload session survived the new sign-in"
    );
    assert_eq!(uploads.values().next().unwrap(), &content);
}

// ------------------------------------------------------------ updates

#[tokio::test]
async fn update_batch_sends_keyed_actions_with_request_ids_and_waits() {
    let site = new_site("3.25");
    site.job_polls_needed.store(3, Ordering::SeqCst);
    let base = serve(site.clone()).await;
    let client = TableauClient::new("acme", config(&base)).unwrap();
    let p1 = temp_file(b"part-one");
    let p2 = temp_file(b"part-two");
    let batch = UpdateBatch {
        datasource_id: "ds-1".into(),
        datasource_name: "orders".into(),
        batch_id: "batch-7".into(),
        failed_attempts: 0,
        key_columns: vec!["order_id".into(), "line_no".into()],
        parts: vec![
            PayloadPart {
                path: p1.path().into(),
                upserts: true,
                deletes: false,
            },
            PayloadPart {
                path: p2.path().into(),
                upserts: true,
                deletes: true,
            },
        ],
    };
    let out = client.update_data(&batch).await.unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].request_id, "batch-7-1");
    assert_eq!(out[1].job.as_ref().unwrap().finish_code, Some(0));
    let seen = site.seen();
    let patches: Vec<&Seen> = seen.iter().filter(|s| s.method == "PATCH").collect();
    assert_eq!(patches.len(), 2);
    assert_eq!(patches[0].header("requestid"), Some("batch-7-1"));
    assert_eq!(patches[1].header("requestid"), Some("batch-7-2"));
    assert_eq!(patches[0].header("content-type"), Some("application/json"));
    assert_eq!(
        patches[0].query.get("uploadSessionId").map(String::as_str),
        Some("7720:abc0-1:0")
    );
    let body: serde_json::Value = serde_json::from_slice(&patches[1].body).unwrap();
    assert_eq!(body, model::update_actions(&batch.key_columns, true, true));
    assert_eq!(
        site.uploads.lock().unwrap().get("7720:abc0-1:0").unwrap(),
        b"part-one"
    );
    // Part 2 went out only after part 1's job completed.
    let second_patch = seen
        .iter()
        .position(|s| s.header("requestid") == Some("batch-7-2"))
        .unwrap();
    let polls_before = seen[..second_patch]
        .iter()
        .filter(|s| s.path.ends_with("/jobs/upd-batch-7-1"))
        .count();
    assert_eq!(polls_before, 3);

    let single = UpdateBatch {
        batch_id: "b8".into(),
        parts: batch.parts[..1].to_vec(),
        ..batch.clone()
    };
    let out = client.update_data(&single).await.unwrap();
    assert_eq!(
        out[0].request_id, "b8",
        "a one-part batch uses the batch id itself"
    );

    let mut c = config(&base);
    c.update_payload_limit = 4;
    let err = TableauClient::new("acme", c)
        .unwrap()
        .update_data(&batch)
        .await
        .unwrap_err();
    assert!(
        matches!(
            *err.kind,
            ErrorKind::PayloadTooLarge {
                part: 1,
                size: 8,
                limit: 4
            }
        ),
        "{err}"
    );
    let no_keys = UpdateBatch {
        key_columns: vec![],
        ..batch
    };
    assert!(matches!(
        client
            .update_data(&no_keys)
            .await
            .unwrap_err()
            .kind
            .as_ref(),
        ErrorKind::InvalidRequest(_)
    ));
}

#[tokio::test]
async fn failed_job_carries_notes() {
    let site = new_site("3.25");
    *site.fail_job_notes.lock().unwrap() =
        Some("Specified table does not exist: changes. (errorCode=410012)".into());
    let base = serve(site.clone()).await;
    let client = TableauClient::new("acme", config(&base)).unwrap();
    let p = temp_file(b"x");
    let batch = UpdateBatch {
        datasource_id: "ds-1".into(),
        datasource_name: "orders".into(),
        batch_id: "b1".into(),
        failed_attempts: 0,
        key_columns: vec!["id".into()],
        parts: vec![PayloadPart {
            path: p.path().into(),
            upserts: true,
            deletes: false,
        }],
    };
    let err = client.update_data(&batch).await.unwrap_err();
    match err.kind.as_ref() {
        ErrorKind::JobFailed {
            job_id,
            finish_code,
            notes,
        } => {
            assert_eq!(job_id, "upd-b1");
            assert_eq!(*finish_code, 1);
            assert!(notes.as_deref().unwrap().contains("410012"));
        }
        other => panic!("expected JobFailed, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("tenant `acme`")
            && text.contains("data source `orders`")
            && text.contains("410012"),
        "{text}"
    );
}

// ------------------------------------------------------------ webhooks

#[tokio::test]
async fn webhooks_are_registered_once() {
    let site = new_site("3.25");
    site.webhooks.lock().unwrap().push((
        "wh-0".into(),
        "DatasourceUpdated".into(),
        "http://127.0.0.1:9/hook".into(),
    ));
    site.webhooks.lock().unwrap().push((
        "wh-x".into(),
        "DatasourceRefreshFailed".into(),
        "http://elsewhere/hook".into(),
    ));
    let base = serve(site.clone()).await;
    let client = TableauClient::new("acme", config(&base)).unwrap();
    let hooks = client
        .ensure_webhooks("http://127.0.0.1:9/hook")
        .await
        .unwrap();
    assert_eq!(hooks.len(), 3);
    let creates = site
        .seen()
        .iter()
        .filter(|s| s.is("POST", "/webhooks"))
        .count();
    assert_eq!(creates, 2, "DatasourceUpdated existed already");
    let again = client
        .ensure_webhooks("http://127.0.0.1:9/hook")
        .await
        .unwrap();
    assert_eq!(again.len(), 3);
    let creates = site
        .seen()
        .iter()
        .filter(|s| s.is("POST", "/webhooks"))
        .count();
    assert_eq!(creates, 2, "second call created nothing");
    let events: Vec<_> = again.iter().map(|h| h.event.unwrap()).collect();
    assert_eq!(events, WebhookEvent::ALL.to_vec());
}

// ------------------------------------------------------------ logging

/// Collects everything logged, at every level, into a buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn neither_pat_secret_nor_token_is_logged_or_in_errors() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Another test thread may have registered these callsites while no
    // subscriber wanted them; make them ask again now that ours is here.
    tracing::callsite::rebuild_interest_cache();

    let site = new_site("3.25");
    let base = serve(site.clone()).await;
    let client = TableauClient::new("acme", config(&base)).unwrap();
    client.get_datasource("ds-1").await.unwrap();
    *site.token.lock().unwrap() = Some("someone-else".into());
    client.get_datasource("ds-1").await.unwrap();
    let missing = client.get_datasource("nope").await.unwrap_err();
    client.shutdown().await.unwrap();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("signed in to Tableau"),
        "capture works: {logs}"
    );
    for needle in [SECRET, "tok-1", "tok-2"] {
        assert!(!logs.contains(needle), "`{needle}` appears in the logs");
        assert!(!missing.to_string().contains(needle));
        assert!(!format!("{missing:?}").contains(needle));
    }
}

#[test]
fn an_upload_chunk_body_is_the_multipart_body_with_the_file_read_in_place() {
    let data = b"hyper bytes \r\n-- not a boundary";
    let (mut body, range) = crate::model::upload_chunk_body("BOUNDARY", data.len());
    body[range].copy_from_slice(data);
    let expected = crate::model::multipart_mixed(
        "BOUNDARY",
        &[
            crate::model::Part {
                name: "request_payload",
                filename: None,
                content_type: "text/xml",
                body: b"",
            },
            crate::model::Part {
                name: "tableau_file",
                filename: Some("file"),
                content_type: "application/octet-stream",
                body: data,
            },
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&body),
        String::from_utf8_lossy(&expected)
    );
}
