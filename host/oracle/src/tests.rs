//! Client tests against a small scripted Oracle stand-in (axum on
//! loopback). The stand-in understands only the filters this client sends;
//! the full sandbox (written apart from this client) is exercised by the
//! end-to-end tests in `tests/e2e/oracle_client.rs`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mlc_common::Secret;
use mlc_common::time::{format_timestamp, parse_timestamp};

use crate::*;

const ROOT: &str = "/fscmRestApi/resources/11.13.18.05";
const T0: i64 = 1_714_726_971_077_000;

/// A scripted reply replacing the next resource answer.
enum Reply {
    Status(u16, &'static str, Option<u64>),
    Body(String),
    Close,
}

type Hook = Box<dyn FnMut(&mut BTreeMap<i64, (i64, u32)>) + Send>;

#[derive(Default)]
struct Fake {
    /// id -> (LastUpdateDate micros, version)
    records: Mutex<BTreeMap<i64, (i64, u32)>>,
    script: Mutex<VecDeque<Reply>>,
    tokens: Mutex<HashSet<String>>,
    token_ttl: AtomicU64,
    token_calls: AtomicU64,
    resource_calls: AtomicU64,
    /// Runs after each page is served (mutation between pages).
    after_page: Mutex<Option<Hook>>,
    /// `q` values seen, in order.
    queries: Mutex<Vec<String>>,
    /// (`fields`, `expand`) of every resource request, in order.
    shapes: Mutex<Vec<(Option<String>, Option<String>)>>,
}

fn item(id: i64, ts: i64, version: u32) -> String {
    format!(
        r#"{{"InvoiceId":{id},"InvoiceNumber":"INV-{id}","InvoiceAmount":{id}.50,"Version":{version},"LastUpdateDate":"{}"}}"#,
        format_timestamp(ts)
    )
}

async fn token(State(f): State<Arc<Fake>>, headers: HeaderMap, body: String) -> Response {
    f.token_calls.fetch_add(1, Ordering::SeqCst);
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // base64("client:secret")
    if auth != "Basic Y2xpZW50OnNlY3JldA==" {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"error":"invalid_client","error_description":"Client authentication failed."}"#,
        )
            .into_response();
    }
    if !body.contains("grant_type=client_credentials") || !body.contains("scope=urn%3Afa") {
        return (StatusCode::BAD_REQUEST, r#"{"error":"invalid_scope"}"#).into_response();
    }
    let n = f.token_calls.load(Ordering::SeqCst);
    let t = format!("tok{n}");
    f.tokens.lock().unwrap().insert(t.clone());
    let ttl = f.token_ttl.load(Ordering::SeqCst).max(1);
    (
        [("content-type", "application/json")],
        format!(r#"{{"access_token":"{t}","token_type":"Bearer","expires_in":{ttl}}}"#),
    )
        .into_response()
}

async fn invoices(
    State(f): State<Arc<Fake>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    f.resource_calls.fetch_add(1, Ordering::SeqCst);
    f.shapes
        .lock()
        .unwrap()
        .push((params.get("fields").cloned(), params.get("expand").cloned()));
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned();
    if !f.tokens.lock().unwrap().contains(&bearer) {
        return (StatusCode::UNAUTHORIZED, "").into_response();
    }
    assert_eq!(
        headers
            .get("REST-Framework-Version")
            .and_then(|v| v.to_str().ok()),
        Some("3")
    );
    let scripted = f.script.lock().unwrap().pop_front();
    match scripted {
        Some(Reply::Status(code, body, retry)) => {
            let mut resp = (StatusCode::from_u16(code).unwrap(), body).into_response();
            if let Some(s) = retry {
                resp.headers_mut()
                    .insert("retry-after", s.to_string().parse().unwrap());
            }
            return resp;
        }
        Some(Reply::Body(body)) => {
            return ([("content-type", "application/json")], body).into_response();
        }
        // A Content-Length larger than the body: the client sees the
        // connection end mid-body.
        Some(Reply::Close) => {
            return Response::builder()
                .header("content-length", "1000")
                .body(axum::body::Body::from("{\"items\":["))
                .unwrap();
        }
        None => {}
    }
    assert_eq!(params.get("offset").map(String::as_str), Some("0"));
    assert_eq!(
        params.get("orderBy").map(String::as_str),
        Some("LastUpdateDate:asc,InvoiceId:asc")
    );
    let limit: usize = params["limit"].parse().unwrap();
    let q = params.get("q").cloned().unwrap_or_default();
    f.queries.lock().unwrap().push(q.clone());
    let filter = parse_q(&q);
    let body = {
        let recs = f.records.lock().unwrap();
        let mut rows: Vec<(i64, i64, u32)> = recs
            .iter()
            .map(|(id, (ts, v))| (*ts, *id, *v))
            .filter(|(ts, id, _)| filter(*ts, *id))
            .collect();
        rows.sort();
        let more = rows.len() > limit;
        rows.truncate(limit);
        let items: Vec<String> = rows.iter().map(|(ts, id, v)| item(*id, *ts, *v)).collect();
        format!(
            r#"{{"items":[{}],"count":{},"hasMore":{more},"limit":{limit},"offset":0,"links":[]}}"#,
            items.join(","),
            items.len()
        )
    };
    if let Some(hook) = f.after_page.lock().unwrap().as_mut() {
        hook(&mut f.records.lock().unwrap());
    }
    ([("content-type", "application/json")], body).into_response()
}

/// Understands `LastUpdateDate >= 'T'`,
/// `LastUpdateDate > 'T' or (LastUpdateDate = 'T' and InvoiceId > K)` and nothing.
fn parse_q(q: &str) -> Box<dyn Fn(i64, i64) -> bool> {
    if q.is_empty() {
        return Box::new(|_, _| true);
    }
    let quoted: Vec<&str> = q.split('\'').collect();
    let t = parse_timestamp(quoted[1]).unwrap();
    if q.contains(" or (") {
        let k: i64 = q
            .rsplit("> ")
            .next()
            .unwrap()
            .trim_end_matches(')')
            .parse()
            .unwrap();
        Box::new(move |ts, id| ts > t || (ts == t && id > k))
    } else {
        assert!(q.starts_with("LastUpdateDate >= '"), "unexpected q {q}");
        Box::new(move |ts, _| ts >= t)
    }
}

async fn start(fake: Arc<Fake>) -> (OracleConfig, tokio::task::JoinHandle<()>) {
    let app = Router::new()
        .route("/oauth2/v1/token", post(token))
        .route(&format!("{ROOT}/invoices"), get(invoices))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let mut cfg = OracleConfig::new(
        format!("http://{addr}{ROOT}"),
        format!("http://{addr}/oauth2/v1/token"),
        "client",
        Secret::new("secret"),
        "urn:fa",
    );
    cfg.page_size = 10;
    cfg.overlap_secs = 60;
    cfg.request_timeout_secs = 5;
    cfg.retry = RetryPolicy {
        max_attempts: 5,
        initial_backoff_ms: 10,
        max_backoff_ms: 50,
        max_total_secs: 20,
    };
    (cfg, server)
}

fn fake_with(n: i64, same_ts: bool) -> Arc<Fake> {
    let fake = Fake::default();
    fake.token_ttl.store(3600, Ordering::SeqCst);
    {
        let mut r = fake.records.lock().unwrap();
        for id in 1..=n {
            let ts = if same_ts { T0 } else { T0 + id * 10_000_000 };
            r.insert(100 + id, (ts, 1));
        }
    }
    Arc::new(fake)
}

/// Drains a pull, marking each page exported; returns the records.
async fn drain(
    client: &OracleClient,
    cursor: Option<Cursor>,
    index: &MemoryRecordIndex,
) -> Result<(Vec<RawRecord>, Option<Cursor>, PullStats), OracleError> {
    let spec = ResourceSpec {
        expand: vec![],
        ..ResourceSpec::invoices()
    };
    let mut pull = client.pull(&spec, cursor.clone(), index);
    let mut out = Vec::new();
    while let Some(page) = pull.next_page().await? {
        for r in &page.records {
            index.mark_exported(&r.key, r.last_update, &r.content_hash);
        }
        out.extend(page.records);
    }
    Ok((out, pull.cursor().cloned().or(cursor), pull.stats()))
}

/// Versions (key, version) the fake holds now.
fn final_state(f: &Fake) -> BTreeMap<String, u32> {
    f.records
        .lock()
        .unwrap()
        .iter()
        .map(|(id, (_, v))| (id.to_string(), *v))
        .collect()
}

fn version_of(r: &RawRecord) -> u32 {
    let v: serde_json::Value = serde_json::from_str(&r.json).unwrap();
    v["Version"].as_u64().unwrap() as u32
}

/// Folds records into key -> latest version, failing on any duplicate version.
fn fold(all: &[RawRecord]) -> BTreeMap<String, u32> {
    let mut seen = HashSet::new();
    let mut state = BTreeMap::new();
    for r in all {
        assert!(
            seen.insert((r.key.clone(), r.last_update, r.content_hash)),
            "duplicate version of {} at {:?}",
            r.key,
            r.last_update
        );
        state.insert(r.key.clone(), version_of(r));
    }
    state
}

#[tokio::test]
async fn first_and_incremental_sync() {
    let fake = fake_with(25, false);
    let (cfg, _srv) = start(fake.clone()).await;
    let client = OracleClient::new("t1", cfg).unwrap();
    let index = MemoryRecordIndex::new();
    let (first, cursor, stats) = drain(&client, None, &index).await.unwrap();
    assert_eq!(first.len(), 25);
    assert_eq!(stats.requests, 3, "25 records in pages of 10");
    let cursor = cursor.unwrap();
    assert_eq!(cursor.key, "125");
    // Keys arrive in order, records are the exact text sent.
    assert!(
        first[0].json.starts_with(r#"{"InvoiceId":101,"#),
        "{}",
        first[0].json
    );

    // No change: one request, nothing new.
    fake.resource_calls.store(0, Ordering::SeqCst);
    let (none, c2, stats) = drain(&client, Some(cursor.clone()), &index).await.unwrap();
    assert!(none.is_empty(), "{none:?}");
    assert_eq!(stats.requests, 1);
    assert_eq!(c2.as_ref(), Some(&cursor));
    assert_eq!(
        stats.duplicates_skipped, 7,
        "the 60 s overlap re-reads the records of the last 60 s (10 s apart)"
    );

    // Two updates and one insert.
    {
        let mut r = fake.records.lock().unwrap();
        r.insert(103, (T0 + 1_000_000_000, 2));
        r.insert(110, (T0 + 1_000_000_001, 2));
        r.insert(999, (T0 + 1_000_000_001, 1));
    }
    let (changed, _, _) = drain(&client, c2, &index).await.unwrap();
    let keys: Vec<&str> = changed.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, vec!["103", "110", "999"]);
    assert_eq!(client.token_requests(), 1, "one token for the whole test");
}

#[tokio::test]
async fn thousand_records_on_one_timestamp_with_mutation_between_pages() {
    let fake = fake_with(1000, true);
    let (mut cfg, _srv) = start(fake.clone()).await;
    cfg.page_size = 499;
    // Between pages: move two records not yet read and one already read
    // to a later timestamp, and insert one record late (behind the
    // position, inside the overlap).
    let mut round = 0u32;
    *fake.after_page.lock().unwrap() = Some(Box::new(move |r| {
        round += 1;
        if round > 3 {
            return;
        }
        let later = T0 + i64::from(round) * 1_000;
        for id in [1100 - i64::from(round), 101 + i64::from(round)] {
            if let Some(e) = r.get_mut(&id) {
                *e = (later, e.1 + 1);
            }
        }
        r.insert(5000 + i64::from(round), (T0 - 1_000_000, 1));
    }));
    let client = OracleClient::new("t1", cfg).unwrap();
    let index = MemoryRecordIndex::new();
    let mut all = Vec::new();
    let mut cursor = None;
    for _ in 0..3 {
        let (recs, c, _) = drain(&client, cursor, &index).await.unwrap();
        all.extend(recs);
        cursor = c;
    }
    assert_eq!(fold(&all), final_state(&fake));
    // Every q continued by key set; no offsets beyond 0 were sent.
    let qs = fake.queries.lock().unwrap();
    assert!(
        qs.iter().skip(1).take(2).all(|q| q.contains(" or (")),
        "{qs:?}"
    );
}

#[tokio::test]
async fn token_expiry_and_revocation_mid_pull() {
    let fake = fake_with(30, false);
    fake.token_ttl.store(1, Ordering::SeqCst);
    let (cfg, _srv) = start(fake.clone()).await;
    let client = OracleClient::new("t1", cfg).unwrap();
    let index = MemoryRecordIndex::new();
    let spec = ResourceSpec {
        expand: vec![],
        ..ResourceSpec::invoices()
    };
    let mut pull = client.pull(&spec, None, &index);
    let p1 = pull.next_page().await.unwrap().unwrap();
    // Revoke every token: the next request gets 401, re-authenticates once
    // and replays.
    fake.tokens.lock().unwrap().clear();
    let p2 = pull.next_page().await.unwrap().unwrap();
    // A 1 s token is refreshed 1/12 s early; sleeping past it forces a refresh.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let p3 = pull.next_page().await.unwrap().unwrap();
    assert!(pull.next_page().await.unwrap().is_none());
    assert_eq!(p1.records.len() + p2.records.len() + p3.records.len(), 30);
    assert_eq!(
        client.token_requests(),
        3,
        "initial, after 401, after expiry"
    );
}

#[tokio::test]
async fn concurrent_pulls_share_one_token_refresh() {
    let fake = fake_with(5, false);
    let (cfg, _srv) = start(fake.clone()).await;
    let client = Arc::new(OracleClient::new("t1", cfg).unwrap());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let index = MemoryRecordIndex::new();
            drain(&c, None, &index).await.unwrap().0.len()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 5);
    }
    assert_eq!(fake.token_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let fake = fake_with(5, false);
    fake.script.lock().unwrap().extend([
        Reply::Status(503, "busy", None),
        Reply::Status(429, "slow down", Some(1)),
        Reply::Close,
        Reply::Status(504, "", None),
    ]);
    let (cfg, _srv) = start(fake.clone()).await;
    let client = OracleClient::new("t1", cfg).unwrap();
    let started = std::time::Instant::now();
    let (recs, _, stats) = drain(&client, None, &MemoryRecordIndex::new())
        .await
        .unwrap();
    assert_eq!(recs.len(), 5);
    assert_eq!(stats.requests, 5);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
}

#[tokio::test]
async fn retries_are_bounded_and_400_is_not_retried() {
    let fake = fake_with(5, false);
    let (cfg, _srv) = start(fake.clone()).await;
    let client = OracleClient::new("t1", cfg).unwrap();
    fake.script
        .lock()
        .unwrap()
        .extend((0..5).map(|_| Reply::Status(503, "busy", None)));
    let err = drain(&client, None, &MemoryRecordIndex::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OracleError::RetriesExhausted { attempts: 5, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("invoices") && err.to_string().contains("503"),
        "{err}"
    );

    fake.script.lock().unwrap().push_back(Reply::Status(
        400,
        r#"{"title":"Bad Request","o:errorDetails":[{"detail":"Attribute Foo is not queryable."}]}"#,
        None,
    ));
    fake.resource_calls.store(0, Ordering::SeqCst);
    let err = drain(&client, None, &MemoryRecordIndex::new())
        .await
        .unwrap_err();
    assert_eq!(
        fake.resource_calls.load(Ordering::SeqCst),
        1,
        "400 is not retried"
    );
    assert_eq!(
        err.to_string(),
        "invoices: Oracle refused the request (400): Bad Request: Attribute Foo is not queryable."
    );
}

#[tokio::test]
async fn malformed_pages_lose_nothing() {
    let fake = fake_with(25, false);
    let (cfg, _srv) = start(fake.clone()).await;
    let client = OracleClient::new("t1", cfg).unwrap();
    let index = MemoryRecordIndex::new();
    let spec = ResourceSpec {
        expand: vec![],
        ..ResourceSpec::invoices()
    };
    let mut pull = client.pull(&spec, None, &index);
    let mut got: Vec<RawRecord> = pull.next_page().await.unwrap().unwrap().records;
    let cursor_before = pull.cursor().cloned();
    let bad = [
        (r#"{"items":[{"InvoiceId":1,"#.to_owned(), "malformed JSON"),
        (r#"{"items":[],"hasMore":false}"#.to_owned(), "no `count`"),
        (r#"{"items":[],"count":3,"hasMore":true}"#.to_owned(), "`count` is 3"),
        (
            r#"{"items":[{"InvoiceNumber":"X","LastUpdateDate":"2024-05-03T09:02:51.077+00:00"}],"count":1,"hasMore":false}"#.to_owned(),
            "no InvoiceId member",
        ),
        (
            r#"{"items":[{"InvoiceId":7,"LastUpdateDate":"yesterday"}],"count":1,"hasMore":false}"#.to_owned(),
            "not a valid timestamp",
        ),
        (
            r#"{"items":[{"InvoiceId":126,"LastUpdateDate":"2024-05-03T09:02:51.077+00:00","InvoiceAmount":1,"InvoiceAmount":2}],"count":1,"hasMore":false}"#.to_owned(),
            "member \"InvoiceAmount\" appears twice",
        ),
    ];
    for (body, want) in bad {
        fake.script.lock().unwrap().push_back(Reply::Body(body));
        let err = pull.next_page().await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(want) && text.starts_with("invoices:"),
            "{text}"
        );
        assert!(
            text.contains("InvoiceId") || text.contains("key 110") || text.contains("110"),
            "{text}"
        );
        assert_eq!(
            pull.cursor().cloned(),
            cursor_before,
            "cursor moved on a bad page"
        );
    }
    // The same pull resumes where it stood.
    while let Some(p) = pull.next_page().await.unwrap() {
        got.extend(p.records);
    }
    let keys: Vec<i64> = got.iter().map(|r| r.key.parse().unwrap()).collect();
    assert_eq!(keys, (101..=125).collect::<Vec<_>>());
}

#[tokio::test]
async fn bad_credentials_are_a_clear_error_without_the_secret() {
    let fake = fake_with(1, false);
    let (mut cfg, _srv) = start(fake.clone()).await;
    cfg.client_secret = Secret::new("wrong-secret");
    let client = OracleClient::new("t1", cfg).unwrap();
    let err = drain(&client, None, &MemoryRecordIndex::new())
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.contains("invalid_client"), "{text}");
    assert!(!text.contains("wrong-secret"), "{text}");
}

#[tokio::test]
async fn a_projected_pull_asks_for_its_fields_and_no_expand() {
    let fake = fake_with(15, false);
    let (cfg, _srv) = start(fake.clone()).await;
    let client = OracleClient::new("t1", cfg).unwrap();
    let index = MemoryRecordIndex::new();
    let spec = ResourceSpec::invoices()
        .projected(["InvoiceNumber"], [])
        .unwrap();
    let mut pull = client.pull(&spec, None, &index);
    let mut keys = Vec::new();
    while let Some(page) = pull.next_page().await.unwrap() {
        keys.extend(page.records.into_iter().map(|r| r.key));
    }
    assert_eq!(keys.len(), 15);
    let shapes = fake.shapes.lock().unwrap();
    assert!(shapes.len() >= 2, "{shapes:?}");
    for (fields, expand) in shapes.iter() {
        assert_eq!(
            fields.as_deref(),
            Some("InvoiceId,InvoiceNumber,LastUpdateDate"),
            "{shapes:?}"
        );
        assert_eq!(expand, &None, "fields names the children: {shapes:?}");
    }
}
