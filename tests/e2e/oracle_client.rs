//! The Oracle Fusion client against the Oracle Fusion sandbox (written apart
//! from the client, from the same reference): full and incremental syncs,
//! drift between pages, late commits, records sharing one timestamp, token
//! expiry, transient faults, deletes, and the request cost of an idle cycle.
//! Malformed answers come from a scripted HTTP server in this file.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use mlc_common::Secret;
use mlc_oracle::{
    Cursor, MemoryRecordIndex, OracleClient, OracleConfig, OracleError, RawRecord, RecordIndex,
    ResourceSpec, RetryPolicy, deleted_keys,
};
use mlc_sandbox_oracle::{OracleSandbox, SandboxConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::init_tracing;

/// The resources read incrementally.
fn incremental_specs() -> Vec<ResourceSpec> {
    vec![
        ResourceSpec::invoices(),
        ResourceSpec::payables_payments(),
        ResourceSpec::suppliers(),
        ResourceSpec::purchase_orders(),
        ResourceSpec::receivables_invoices(),
        ResourceSpec::journal_batches(),
    ]
}

/// Client settings for a sandbox, with quick retries for tests.
pub(crate) fn config_for(sb: &OracleSandbox) -> OracleConfig {
    let mut cfg = OracleConfig::new(
        sb.base_url().to_string(),
        sb.token_url().to_string(),
        sb.client_id().to_string(),
        sb.client_secret(),
        sb.scope().to_string(),
    );
    cfg.request_timeout_secs = 5;
    cfg.retry = RetryPolicy {
        max_attempts: 6,
        initial_backoff_ms: 20,
        max_backoff_ms: 200,
        max_total_secs: 30,
    };
    cfg
}

/// One pipeline cycle: pulls from `cursor`, "exports" each page (marks it
/// in the index), returns the new records and cursor.
pub(crate) async fn cycle(
    client: &OracleClient,
    spec: &ResourceSpec,
    cursor: Option<Cursor>,
    index: &MemoryRecordIndex,
) -> Result<(Vec<RawRecord>, Option<Cursor>, mlc_oracle::PullStats)> {
    let mut pull = client.pull(spec, cursor.clone(), index);
    let mut out = Vec::new();
    while let Some(page) = pull
        .next_page()
        .await
        .with_context(|| format!("pulling {}", spec.path))?
    {
        for r in &page.records {
            index.mark_exported(&r.key, r.last_update, &r.content_hash);
        }
        out.extend(page.records);
    }
    let next = pull.cursor().cloned().or(cursor);
    Ok((out, next, pull.stats()))
}

/// Key -> the record's top-level scalar members (no links, no children).
pub(crate) fn scalars(v: &Value) -> BTreeMap<String, Value> {
    v.as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, v)| *k != "links" && !v.is_object() && !v.is_array())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn key_text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Folds the records of all cycles (in order) into key -> latest scalars,
/// failing on any version delivered twice.
pub(crate) fn fold(
    spec: &ResourceSpec,
    all: &[RawRecord],
) -> Result<BTreeMap<String, BTreeMap<String, Value>>> {
    let mut seen = HashSet::new();
    let mut state = BTreeMap::new();
    for r in all {
        ensure!(
            seen.insert((r.key.clone(), r.last_update, r.content_hash)),
            "{}: version of {} at {:?} delivered twice",
            spec.path,
            r.key,
            r.last_update
        );
        let v: Value = serde_json::from_str(&r.json)?;
        state.insert(r.key.clone(), scalars(&v));
    }
    Ok(state)
}

/// The sandbox's current state of `spec` in the same shape.
pub(crate) fn truth(
    sb: &OracleSandbox,
    spec: &ResourceSpec,
) -> Result<BTreeMap<String, BTreeMap<String, Value>>> {
    let mut out = BTreeMap::new();
    for v in sb.snapshot(&spec.path)? {
        let key =
            key_text(&v, &spec.key).ok_or_else(|| anyhow!("snapshot item without {}", spec.key))?;
        out.insert(key, scalars(&v));
    }
    Ok(out)
}

/// Explains how two states differ (first few keys).
pub(crate) fn diff(
    got: &BTreeMap<String, BTreeMap<String, Value>>,
    want: &BTreeMap<String, BTreeMap<String, Value>>,
) -> String {
    let missing: Vec<&String> = want
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<&String> = got
        .keys()
        .filter(|k| !want.contains_key(*k))
        .take(5)
        .collect();
    let stale: Vec<String> = want
        .iter()
        .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
        .take(3)
        .map(|(k, v)| format!("{k}: got {:?} want {:?}", got.get(k), v))
        .collect();
    format!(
        "{} vs {} records; missing {missing:?}; extra {extra:?}; stale {stale:?}",
        got.len(),
        want.len()
    )
}

/// True when some record has a non-empty expanded collection at `path`
/// (framework version 3+: `{"items":[...],"count":..,"hasMore":..}`), the
/// path naming collections from the top, e.g. `["invoiceLines", "invoiceDistributions"]`.
fn has_children(records: &[RawRecord], path: &[&str]) -> bool {
    fn walk(v: &Value, path: &[&str]) -> bool {
        let Some((first, rest)) = path.split_first() else {
            return true;
        };
        let items = v
            .get(*first)
            .and_then(|c| c.get("items"))
            .and_then(Value::as_array);
        match items {
            Some(items) => items.iter().any(|i| walk(i, rest)),
            None => false,
        }
    }
    records
        .iter()
        .any(|r| serde_json::from_str::<Value>(&r.json).is_ok_and(|v| walk(&v, path)))
}

async fn sandbox(invoices: u64) -> Result<OracleSandbox> {
    init_tracing();
    OracleSandbox::start(SandboxConfig {
        seed: 7,
        invoices,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow!("starting the sandbox: {e}"))
}

#[tokio::test]
async fn first_sync_returns_everything_and_next_exactly_the_changes() -> Result<()> {
    let sb = sandbox(120).await?;
    let client = OracleClient::new("e2e", config_for(&sb))?;
    let mut cursors = HashMap::new();
    let mut indexes = HashMap::new();
    for spec in incremental_specs() {
        let index = MemoryRecordIndex::new();
        let (recs, cursor, _) = cycle(&client, &spec, None, &index).await?;
        let got = fold(&spec, &recs)?;
        let want = truth(&sb, &spec)?;
        ensure!(
            !want.is_empty(),
            "{}: the sandbox has no records",
            spec.path
        );
        // Children of each record come with it.
        for child in &spec.expand {
            let path: Vec<&str> = child.split('.').collect();
            ensure!(
                has_children(&recs, &path),
                "{}: no record carries expanded {child}",
                spec.path
            );
        }
        ensure!(
            got == want,
            "{}: first sync {}",
            spec.path,
            diff(&got, &want)
        );
        cursors.insert(spec.path.clone(), cursor);
        indexes.insert(spec.path.clone(), index);
    }
    for spec in [ResourceSpec::account_combinations()] {
        let (recs, cursor, _) = cycle(&client, &spec, None, &MemoryRecordIndex::new()).await?;
        ensure!(cursor.is_none(), "full refresh keeps no cursor");
        let got = fold(&spec, &recs)?;
        let want = truth(&sb, &spec)?;
        ensure!(
            !want.is_empty() && got == want,
            "{}: {}",
            spec.path,
            diff(&got, &want)
        );
    }

    // Changes: the next cycle returns exactly the records whose state differs.
    let spec = ResourceSpec::invoices();
    let before = truth(&sb, &spec)?;
    sb.mutate(7, 5);
    let after = truth(&sb, &spec)?;
    let expected: BTreeMap<&String, &BTreeMap<String, Value>> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .collect();
    ensure!(
        expected.len() == 12,
        "mutate(7, 5) changed {} invoices",
        expected.len()
    );
    let cursor = cursors[&spec.path].clone();
    let (recs, _, _) = cycle(&client, &spec, cursor, &indexes[&spec.path]).await?;
    let got = fold(&spec, &recs)?;
    let got_keys: Vec<&String> = got.keys().collect();
    let want_keys: Vec<&String> = expected.keys().copied().collect();
    ensure!(
        got_keys == want_keys,
        "changed: got {got_keys:?} want {want_keys:?}"
    );
    for (k, v) in &got {
        ensure!(
            Some(&v) == expected.get(k),
            "{k}: got {v:?} want {:?}",
            expected.get(k)
        );
    }
    Ok(())
}

#[tokio::test]
async fn union_over_cycles_equals_final_state_under_drift() -> Result<()> {
    init_tracing();
    let sb = OracleSandbox::start(SandboxConfig {
        seed: 11,
        invoices: 1500,
        same_timestamp: 1000,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow!("starting the sandbox: {e}"))?;
    let mut cfg = config_for(&sb);
    cfg.overlap_secs = 300;
    let client = OracleClient::new("e2e", cfg)?;
    let spec = ResourceSpec::invoices();
    let index = MemoryRecordIndex::new();
    let mut all = Vec::new();
    let mut per_stamp: HashMap<String, usize> = HashMap::new();
    for v in sb.snapshot(&spec.path)? {
        *per_stamp
            .entry(v["LastUpdateDate"].to_string())
            .or_default() += 1;
    }
    let widest = per_stamp.values().max().copied().unwrap_or(0);
    ensure!(
        widest >= 1000,
        "at most {widest} invoices share one LastUpdateDate"
    );

    // Cycle 1: updates land between the pages of the first sync.
    sb.faults().mutate_between_pages(3);
    let (recs, mut cursor, stats) = cycle(&client, &spec, None, &index).await?;
    ensure!(
        stats.pages >= 3,
        "the first sync should span pages, had {}",
        stats.pages
    );
    all.extend(recs);
    sb.faults().mutate_between_pages(0);

    // Cycle 2: late commits inside the overlap plus new changes.
    sb.late_commit(&spec.path, 6, 120)?;
    sb.mutate(10, 10);
    let (recs, c, _) = cycle(&client, &spec, cursor, &index).await?;
    all.extend(recs);
    cursor = c;

    // Cycle 3: drift between pages again, then a quiet cycle.
    sb.faults().mutate_between_pages(2);
    sb.mutate(600, 20);
    let (recs, c, _) = cycle(&client, &spec, cursor, &index).await?;
    all.extend(recs);
    // The sandbox also mutates after the last page it serves; switch that
    // off and let one more cycle catch up with it.
    sb.faults().mutate_between_pages(0);
    let (recs, _, _) = cycle(&client, &spec, c, &index).await?;
    all.extend(recs);

    let got = fold(&spec, &all)?;
    let want = truth(&sb, &spec)?;
    ensure!(
        want.len() >= 1000,
        "sandbox has only {} invoices",
        want.len()
    );
    ensure!(got == want, "union over cycles: {}", diff(&got, &want));
    Ok(())
}

#[tokio::test]
async fn token_expiry_and_revocation_mid_pull_are_survived() -> Result<()> {
    let sb = sandbox(1200).await?;
    let client = OracleClient::new("e2e", config_for(&sb))?;
    let spec = ResourceSpec::invoices();
    let index = MemoryRecordIndex::new();
    let mut pull = client.pull(&spec, None, &index);
    let mut recs = Vec::new();
    let mut page_no = 0;
    while let Some(page) = pull.next_page().await? {
        page_no += 1;
        match page_no {
            1 => sb.expire_tokens(),
            2 => sb.revoke_tokens(),
            _ => {}
        }
        recs.extend(page.records);
    }
    ensure!(
        page_no >= 3,
        "1200 invoices should take 3 pages, took {page_no}"
    );
    let got = fold(&spec, &recs)?;
    let want = truth(&sb, &spec)?;
    ensure!(got == want, "{}", diff(&got, &want));
    ensure!(
        client.token_requests() == 3,
        "expected 3 token requests (initial + 2 re-authentications), saw {}",
        client.token_requests()
    );
    Ok(())
}

#[tokio::test]
async fn transient_faults_are_survived() -> Result<()> {
    let sb = sandbox(1000).await?;
    let client = OracleClient::new("e2e", config_for(&sb))?;
    let spec = ResourceSpec::invoices();
    let want = truth(&sb, &spec)?;
    let faults = sb.faults();
    faults.rate_limit_next(2, 1);
    faults.fail_next(503, 2);
    let started = std::time::Instant::now();
    let (recs, _, stats) = cycle(&client, &spec, None, &MemoryRecordIndex::new()).await?;
    ensure!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After: 1 was not honoured twice"
    );
    ensure!(
        stats.requests >= 4 + stats.pages,
        "retries not counted: {stats:?}"
    );
    let got = fold(&spec, &recs)?;
    ensure!(got == want, "429/503: {}", diff(&got, &want));

    faults.drop_connections_next(2);
    faults.fail_next(504, 1);
    let (recs, _, _) = cycle(&client, &spec, None, &MemoryRecordIndex::new()).await?;
    let got = fold(&spec, &recs)?;
    ensure!(got == want, "resets/504: {}", diff(&got, &want));

    // Slower than the client's timeout for a while: the timed-out requests
    // are retried; once the sandbox is quick again the pull completes.
    let mut cfg = config_for(&sb);
    cfg.request_timeout_secs = 1;
    let impatient = OracleClient::new("e2e", cfg)?;
    faults.slow(Duration::from_millis(1500));
    let pull = tokio::spawn({
        let spec = spec.clone();
        async move {
            let index = MemoryRecordIndex::new();
            cycle(&impatient, &spec, None, &index).await.map(|r| r.0)
        }
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    faults.slow(Duration::ZERO);
    let recs = pull.await??;
    let got = fold(&spec, &recs)?;
    ensure!(got == want, "slow: {}", diff(&got, &want));
    Ok(())
}

#[tokio::test]
async fn an_idle_cycle_costs_one_request_per_resource() -> Result<()> {
    let sb = sandbox(300).await?;
    // Default 5-minute overlap: the records it re-reads fit in one page.
    let client = OracleClient::new("e2e", config_for(&sb))?;
    let index = MemoryRecordIndex::new();
    let mut cursors = Vec::new();
    for spec in incremental_specs() {
        let (_, cursor, _) = cycle(&client, &spec, None, &index).await?;
        cursors.push((spec, cursor));
    }
    let tokens_before = client.token_requests();
    sb.reset_request_count();
    let mut ours = 0;
    for (spec, cursor) in &cursors {
        let (recs, _, stats) = cycle(&client, spec, cursor.clone(), &index).await?;
        ensure!(
            recs.is_empty(),
            "{}: idle cycle returned {} records",
            spec.path,
            recs.len()
        );
        ensure!(
            stats.requests == 1,
            "{}: idle cycle spent {} requests",
            spec.path,
            stats.requests
        );
        ours += stats.requests;
    }
    let server_side = sb.request_count();
    let tokens = client.token_requests() - tokens_before;
    ensure!(
        server_side == ours + tokens,
        "sandbox counted {server_side} requests, the client {ours} + {tokens} token"
    );
    ensure!(ours == 6, "6 resources, {ours} requests");
    Ok(())
}

#[tokio::test]
async fn deletes_are_found_by_key_reconciliation() -> Result<()> {
    let sb = sandbox(700).await?;
    let client = OracleClient::new("e2e", config_for(&sb))?;
    let spec = ResourceSpec::invoices();
    let known = client.reconcile_keys(&spec).await?;
    let mut expect: Vec<String> = sb
        .keys(&spec.path)?
        .into_iter()
        .map(|k| k.to_string())
        .collect();
    let mut sorted = known.clone();
    sorted.sort();
    expect.sort();
    ensure!(
        sorted == expect,
        "reconciled {} keys, sandbox has {}",
        known.len(),
        expect.len()
    );
    let gone = [known[3].clone(), known[600].clone()];
    for k in &gone {
        sb.delete(&spec.path, k.parse()?)?;
    }
    let present = client.reconcile_keys(&spec).await?;
    let mut want = gone.to_vec();
    want.sort();
    ensure!(
        deleted_keys(&known, &present) == want,
        "deleted: {:?}",
        deleted_keys(&known, &present)
    );
    Ok(())
}

// ---- malformed answers, from a scripted HTTP server ----

/// A scripted HTTP/1.1 server: answers token requests, then one scripted
/// body per resource request (status 200). Records each request target.
struct Scripted {
    base: String,
    targets: Arc<Mutex<Vec<String>>>,
}

async fn scripted(bodies: Vec<String>) -> Result<Scripted> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let script = Arc::new(Mutex::new(VecDeque::from(bodies)));
    let targets = Arc::new(Mutex::new(Vec::new()));
    let seen = targets.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let script = script.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() < end + 4 + len {
                            continue;
                        }
                        let line = head.lines().next().unwrap_or("").to_owned();
                        let body = if line.starts_with("POST") {
                            r#"{"access_token":"t","token_type":"Bearer","expires_in":3600}"#
                                .to_owned()
                        } else {
                            if let Ok(mut seen) = seen.lock() {
                                seen.push(line.split(' ').nth(1).unwrap_or("").to_owned());
                            }
                            script
                                .lock()
                                .ok()
                                .and_then(|mut s| s.pop_front())
                                .unwrap_or_else(|| "no more script".into())
                        };
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = sock.write_all(resp.as_bytes()).await;
                        let _ = sock.shutdown().await;
                        return;
                    }
                }
            });
        }
    });
    Ok(Scripted {
        base: format!("http://{addr}/fscmRestApi/resources/11.13.18.05"),
        targets,
    })
}

fn inv(id: u64, ts: &str) -> String {
    format!(r#"{{"InvoiceId":{id},"InvoiceAmount":10.00,"LastUpdateDate":"{ts}"}}"#)
}

#[tokio::test]
async fn malformed_json_and_wrong_envelopes_lose_nothing() -> Result<()> {
    init_tracing();
    let t1 = "2024-05-03T09:02:51.077+00:00";
    let t2 = "2024-05-03T09:02:52+00:00";
    let page1 = format!(
        r#"{{"items":[{},{}],"count":2,"hasMore":true,"limit":2,"offset":0}}"#,
        inv(1, t1),
        inv(2, t1)
    );
    let page2 = format!(
        r#"{{"items":[{},{}],"count":2,"hasMore":false,"limit":2,"offset":0}}"#,
        inv(3, t1),
        inv(4, t2)
    );
    let bad = vec![
        (
            r#"{"items":[{"InvoiceId":3,"LastUp"#.to_owned(),
            "malformed JSON",
        ),
        (r#"{"count":0,"hasMore":false}"#.to_owned(), "no `items`"),
        (
            format!(r#"{{"items":[{}],"count":1}}"#, inv(3, t1)),
            "no `hasMore`",
        ),
        (
            format!(r#"{{"items":[{}],"count":2,"hasMore":false}}"#, inv(3, t1)),
            "`count` is 2",
        ),
        (
            r#"{"items":[{"InvoiceAmount":1}],"count":1,"hasMore":false}"#.to_owned(),
            "no InvoiceId",
        ),
        (
            "<html>Service Unavailable</html>".to_owned(),
            "malformed JSON",
        ),
    ];
    let mut script = vec![page1];
    script.extend(bad.iter().map(|(b, _)| b.clone()));
    script.push(page2);
    let server = scripted(script).await?;
    let mut cfg = OracleConfig::new(
        server.base.clone(),
        server
            .base
            .replace("/fscmRestApi/resources/11.13.18.05", "/oauth2/v1/token"),
        "c",
        Secret::new("s"),
        "scope",
    );
    cfg.page_size = 2;
    let client = OracleClient::new("e2e", cfg)?;
    let spec = ResourceSpec {
        expand: vec![],
        ..ResourceSpec::invoices()
    };
    let index = MemoryRecordIndex::new();
    let mut pull = client.pull(&spec, None, &index);
    let mut got: Vec<String> = Vec::new();
    let first = pull
        .next_page()
        .await?
        .ok_or_else(|| anyhow!("no first page"))?;
    got.extend(first.records.iter().map(|r| r.key.clone()));
    let cursor = pull.cursor().cloned();
    for (_, want) in &bad {
        match pull.next_page().await {
            Ok(p) => bail!("a bad page was accepted: {p:?}"),
            Err(e) => {
                let text = e.to_string();
                ensure!(
                    text.starts_with("invoices:") && text.contains(want) && text.contains("key 2"),
                    "unclear error: {text}"
                );
                ensure!(
                    matches!(
                        e,
                        OracleError::MalformedJson { .. }
                            | OracleError::Envelope { .. }
                            | OracleError::BadItem { .. }
                    ),
                    "{e:?}"
                );
            }
        }
        ensure!(
            pull.cursor().cloned() == cursor,
            "the cursor moved past unread data"
        );
    }
    while let Some(p) = pull.next_page().await? {
        got.extend(p.records.iter().map(|r| r.key.clone()));
    }
    ensure!(got == ["1", "2", "3", "4"], "records: {got:?}");
    // Every retry of the failed page asked for the same continuation.
    let targets = server.targets.lock().unwrap().clone();
    ensure!(
        targets.len() == 1 + bad.len() + 1,
        "{} requests",
        targets.len()
    );
    ensure!(
        targets[1..].iter().all(|t| t == &targets[1]),
        "continuation moved: {targets:#?}"
    );
    ensure!(
        !targets[0].contains("q="),
        "first sync has no filter: {}",
        targets[0]
    );
    ensure!(
        targets[1].contains("offset=0"),
        "offset must stay 0: {}",
        targets[1]
    );
    Ok(())
}

// ---- contrasts: the same scenario read naively, and full refreshes ----

/// A token fetched without the client, for the naive reader.
async fn raw_token(sb: &OracleSandbox) -> Result<String> {
    let answer: Value = reqwest::Client::new()
        .post(sb.token_url())
        .basic_auth(sb.client_id(), Some(sb.client_secret().expose()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", sb.scope().as_str()),
        ])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    answer["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no access_token in {answer}"))
}

/// Reads `path` the naive way: `offset += count` until `hasMore` is false.
/// Returns the keys in the order read.
async fn offset_pull(
    sb: &OracleSandbox,
    path: &str,
    key: &str,
    order: &str,
) -> Result<Vec<String>> {
    let token = raw_token(sb).await?;
    let http = reqwest::Client::new();
    let mut keys = Vec::new();
    let mut offset = 0u64;
    loop {
        let page: Value = http
            .get(format!("{}/{path}", sb.base_url()))
            .bearer_auth(&token)
            .header("REST-Framework-Version", "3")
            .query(&[
                ("onlyData", "true".to_owned()),
                ("limit", "499".to_owned()),
                ("offset", offset.to_string()),
                ("orderBy", order.to_owned()),
            ])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        keys.extend(items.iter().filter_map(|v| key_text(v, key)));
        offset += items.len() as u64;
        if items.is_empty() || page["hasMore"] != Value::Bool(true) {
            return Ok(keys);
        }
    }
}

/// The scenario of `union_over_cycles_equals_final_state_under_drift`,
/// read with deep offsets instead: rows moving between pages make it skip
/// or double records, which is why the client continues by key set.
#[tokio::test]
async fn offset_paging_would_lose_records_under_the_same_drift() -> Result<()> {
    init_tracing();
    let sb = OracleSandbox::start(SandboxConfig {
        seed: 11,
        invoices: 1500,
        same_timestamp: 1000,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow!("starting the sandbox: {e}"))?;
    let spec = ResourceSpec::invoices();
    let before: HashSet<String> = sb.keys(&spec.path)?.iter().map(i64::to_string).collect();
    sb.faults().mutate_between_pages(3);
    let naive = offset_pull(
        &sb,
        &spec.path,
        &spec.key,
        "LastUpdateDate:asc,InvoiceId:asc",
    )
    .await?;
    sb.faults().mutate_between_pages(0);
    let unique: HashSet<&String> = naive.iter().collect();
    let doubled = naive.len() - unique.len();
    let missed = before.iter().filter(|k| !unique.contains(k)).count();
    ensure!(
        doubled + missed > 0,
        "offset paging survived drift (read {} of {} keys): the scenario is not adversarial",
        unique.len(),
        before.len()
    );

    // The client on the same drift: every key exactly once per version.
    sb.faults().mutate_between_pages(3);
    let client = OracleClient::new("e2e", config_for(&sb))?;
    let index = MemoryRecordIndex::new();
    let (recs, _, _) = cycle(&client, &spec, None, &index).await?;
    sb.faults().mutate_between_pages(0);
    let got: HashSet<&String> = recs.iter().map(|r| &r.key).collect();
    let lost: Vec<&String> = before.iter().filter(|k| !got.contains(k)).collect();
    ensure!(lost.is_empty(), "the client lost {lost:?}");
    fold(&spec, &recs)?;
    Ok(())
}

#[tokio::test]
async fn value_sets_refresh_in_full() -> Result<()> {
    let sb = sandbox(200).await?;
    let client = OracleClient::new("e2e", config_for(&sb))?;
    let sets = sb.snapshot("valueSets")?;
    ensure!(!sets.is_empty(), "the sandbox has no value sets");
    for set in &sets {
        let code = key_text(set, "ValueSetCode")
            .ok_or_else(|| anyhow!("value set without ValueSetCode: {set}"))?;
        let spec = ResourceSpec::value_set_values(&code);
        let (recs, cursor, _) = cycle(&client, &spec, None, &MemoryRecordIndex::new()).await?;
        ensure!(cursor.is_none(), "{code}: a full refresh keeps no cursor");
        let mut got: Vec<String> = recs.iter().map(|r| r.key.clone()).collect();
        let mut want = offset_pull(&sb, &spec.path, "Value", "Value:asc").await?;
        ensure!(!want.is_empty(), "{code}: no values");
        got.sort();
        want.sort();
        ensure!(
            got == want,
            "{code}: got {} values, a plain read {}",
            got.len(),
            want.len()
        );
        // A second refresh against the index of the first returns nothing.
        let index = MemoryRecordIndex::new();
        for r in &recs {
            index.mark_exported(&r.key, r.last_update, &r.content_hash);
        }
        let (again, _, _) = cycle(&client, &spec, None, &index).await?;
        ensure!(
            again.is_empty(),
            "{code}: unchanged values re-exported: {}",
            again.len()
        );
    }
    Ok(())
}

/// A short-lived token is renewed before it expires (1/12 of its lifetime
/// early), so a slow pull never meets a 401: the sandbox serves exactly the
/// requests the client counts, no refused ones.
#[tokio::test]
async fn short_tokens_are_refreshed_ahead_of_expiry() -> Result<()> {
    init_tracing();
    let sb = OracleSandbox::start(SandboxConfig {
        seed: 3,
        invoices: 1500,
        token_ttl: Duration::from_secs(2),
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow!("starting the sandbox: {e}"))?;
    let client = OracleClient::new("e2e", config_for(&sb))?;
    let spec = ResourceSpec::invoices();
    let index = MemoryRecordIndex::new();
    let mut pull = client.pull(&spec, None, &index);
    let mut n = 0;
    while let Some(page) = pull.next_page().await? {
        n += page.records.len();
        // Slower than the token lives.
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let want = sb.count(&spec.path)?;
    ensure!(n as u64 == want, "read {n} of {want}");
    let stats = pull.stats();
    ensure!(
        client.token_requests() >= 2,
        "a {}-page pull at 1 s per page with 2 s tokens used only {} token(s)",
        stats.pages,
        client.token_requests()
    );
    ensure!(
        sb.request_count() == stats.requests,
        "the sandbox served {} requests, the client sent {}: some were refused (401) and replayed",
        sb.request_count(),
        stats.requests
    );
    Ok(())
}
