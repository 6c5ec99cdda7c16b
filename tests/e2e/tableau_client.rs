//! Tableau publishing client against the Tableau sandbox: publish, keyed
//! upserts and deletes read back through Tableau's own Hyper API, replayed
//! batches, sessions lost in the middle of a chunked upload, failed jobs,
//! a >64 MB extract, webhooks and rate limits.
//!
//! Extracts and payloads are written with `mlc-hyper`; the client only gets
//! their paths, as in the product.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mlc_common::{Column, ColumnType, Decimal, Row, Schema, Value};
use mlc_hyper::{HyperSession, HyperWriter, Hyperd, HyperdConfig, TableName};
use mlc_sandbox_tableau::{TableauSandbox, TableauSandboxConfig};
use mlc_tableau::{
    Datasource, ErrorKind, PayloadPart, PublishMode, TableauClient, TableauConfig, UpdateBatch,
    UploadProgress, WebhookEvent,
};
use serde_json::Value as Json;

const KEYS: [&str; 2] = ["invoice_id", "line_no"];

/// A sandbox, a hyperd for writing files, and a scratch directory.
struct Env {
    sandbox: Arc<TableauSandbox>,
    hyperd: Hyperd,
    dir: tempfile::TempDir,
    files: AtomicU32,
}

impl Env {
    async fn start(config: TableauSandboxConfig) -> Self {
        crate::common::init_tracing();
        let dir = tempfile::tempdir().unwrap();
        let sandbox = TableauSandbox::start(TableauSandboxConfig {
            data_dir: dir.path().join("sandbox"),
            ..config
        })
        .await
        .unwrap_or_else(|e| panic!("Tableau sandbox did not start: {e}"));
        let hyperd = Hyperd::start(HyperdConfig {
            log_dir: dir.path().join("hyperd"),
            ..HyperdConfig::default()
        })
        .await
        .unwrap_or_else(|e| panic!("hyperd did not start: {e}"));
        Self {
            sandbox: Arc::new(sandbox),
            hyperd,
            dir,
            files: AtomicU32::new(0),
        }
    }

    /// A client configuration for the sandbox's site, fast polling, and
    /// small chunks so ordinary files go through chunked uploads.
    fn config(&self) -> TableauConfig {
        let sb = &self.sandbox;
        let mut c = TableauConfig::new(
            sb.server_url(),
            sb.site_content_url(),
            sb.pat_name(),
            sb.pat_secret().clone(),
            sb.project_name(),
        );
        c.chunk_size = 32 * 1024;
        c.job_poll.initial_ms = 20;
        c.job_poll.max_ms = 200;
        c.job_poll.timeout_secs = 120;
        c.retry.initial_backoff_ms = 50;
        c
    }

    fn client(&self) -> TableauClient {
        TableauClient::new("acme", self.config()).unwrap()
    }

    fn path(&self, stem: &str) -> PathBuf {
        let n = self.files.fetch_add(1, Ordering::SeqCst);
        self.dir.path().join(format!("{stem}-{n}.hyper"))
    }

    /// A full extract of `rows` in `"Extract"."Extract"`.
    async fn extract(&self, rows: &[Row]) -> PathBuf {
        let path = self.path("extract");
        let mut w = HyperWriter::create(&self.hyperd, &path, TableName::extract(), &schema())
            .await
            .unwrap();
        let report = w.write_rows(rows).await.unwrap();
        assert!(report.rejects.is_empty(), "rejects: {:?}", report.rejects);
        w.finish().await.unwrap();
        path
    }

    /// An update payload: `upserts` in `"Extract"."changes"`, deleted keys
    /// in `"Extract"."deleted"`.
    async fn payload(&self, upserts: &[Row], deleted: &[(i64, i64)]) -> PayloadPart {
        let path = self.path("payload");
        if !upserts.is_empty() {
            let table = TableName::new("Extract", mlc_tableau::CHANGES_TABLE);
            let mut w = HyperWriter::create(&self.hyperd, &path, table, &schema())
                .await
                .unwrap();
            let report = w.write_rows(upserts).await.unwrap();
            assert!(report.rejects.is_empty(), "rejects: {:?}", report.rejects);
            w.finish().await.unwrap();
        }
        if !deleted.is_empty() {
            let session = HyperSession::connect(&self.hyperd).await.unwrap();
            if upserts.is_empty() {
                session.create_database(&path, false).await.unwrap();
            }
            session.attach(&path, "payload").await.unwrap();
            let table = TableName::new("Extract", mlc_tableau::DELETED_TABLE);
            session
                .create_table("payload", &table, &key_schema())
                .await
                .unwrap();
            let values: Vec<String> = deleted.iter().map(|(i, l)| format!("({i}, {l})")).collect();
            session
                .execute(&format!(
                    "INSERT INTO {} VALUES {}",
                    table.qualified("payload"),
                    values.join(", ")
                ))
                .await
                .unwrap();
            session.detach("payload").await.unwrap();
        }
        PayloadPart {
            path,
            upserts: !upserts.is_empty(),
            deletes: !deleted.is_empty(),
        }
    }

    /// The data source's rows as Tableau's own Hyper API reads them from the
    /// sandbox's stored file (copied first, so no hyperd lock is shared).
    fn read_back(&self, name: &str) -> Vec<Vec<Json>> {
        let stored = self
            .sandbox
            .datasource_file(name)
            .unwrap_or_else(|| panic!("sandbox has no data source `{name}`"));
        let copy = self.path("readback");
        std::fs::copy(&stored, &copy).unwrap();
        let mut rows = read_with_hyper_api(&copy);
        std::fs::remove_file(&copy).unwrap();
        rows.sort_by_key(|r| key_of(r));
        rows
    }

    async fn shutdown(self) {
        self.hyperd.shutdown().await.unwrap();
        match Arc::try_unwrap(self.sandbox) {
            Ok(sb) => sb.shutdown().await.unwrap(),
            Err(_) => panic!("sandbox still shared at shutdown"),
        }
    }
}

fn schema() -> Schema {
    let col = |name: &str, ty, nullable, key| Column {
        name: name.into(),
        ty,
        nullable,
        key,
    };
    Schema {
        columns: vec![
            col("invoice_id", ColumnType::Integer, false, true),
            col("line_no", ColumnType::Integer, false, true),
            col("supplier", ColumnType::Text, true, false),
            col(
                "amount",
                ColumnType::Decimal {
                    precision: 18,
                    scale: 2,
                },
                false,
                false,
            ),
            col("paid", ColumnType::Boolean, false, false),
            col("invoice_date", ColumnType::Date, true, false),
            col("updated_at", ColumnType::Timestamp, false, false),
        ],
    }
}

fn key_schema() -> Schema {
    Schema {
        columns: schema().columns.into_iter().filter(|c| c.key).collect(),
    }
}

fn keys() -> Vec<String> {
    KEYS.iter().map(|k| k.to_string()).collect()
}

/// The row of key (id, line) at a version: every column depends on both.
fn row(id: i64, line: i64, version: i64) -> Row {
    Row {
        source: 0,
        values: vec![
            Value::Integer(id),
            Value::Integer(line),
            if id % 7 == 0 {
                Value::Null
            } else {
                Value::Text(format!("Supplier {id} – v{version}"))
            },
            Value::Decimal(Decimal {
                unscaled: i128::from(id * 100_000 + line * 1_000 + version),
                scale: 2,
            }),
            Value::Boolean((id + version) % 2 == 0),
            if id % 5 == 0 {
                Value::Null
            } else {
                Value::Date(19_000 + id as i32)
            },
            Value::Timestamp(1_700_000_000_000_000 + version * 3_600_000_000 + id * 1_000_001),
        ],
    }
}

/// What the Hyper API prints for `row(id, line, version)`.
fn expected_row(id: i64, line: i64, version: i64) -> Vec<Json> {
    row(id, line, version)
        .values
        .iter()
        .map(|v| match v {
            Value::Null => Json::Null,
            Value::Integer(i) => Json::String(i.to_string()),
            Value::Text(s) => Json::String(s.clone()),
            Value::Decimal(d) => Json::String(d.to_string()),
            Value::Boolean(b) => Json::String(b.to_string()),
            Value::Date(d) => Json::String(mlc_common::time::format_date(*d)),
            Value::Timestamp(t) => {
                let secs = t.div_euclid(1_000_000);
                let micros = t.rem_euclid(1_000_000);
                let date = mlc_common::time::format_date(secs.div_euclid(86_400) as i32);
                let rem = secs.rem_euclid(86_400);
                Json::String(format!(
                    "{date}T{:02}:{:02}:{:02}.{micros:06}+00:00",
                    rem / 3600,
                    rem / 60 % 60,
                    rem % 60
                ))
            }
            other => panic!("no expectation for {other:?}"),
        })
        .collect()
}

/// The expected table: key -> version.
type Model = BTreeMap<(i64, i64), i64>;

fn expected(model: &Model) -> Vec<Vec<Json>> {
    model
        .iter()
        .map(|(&(id, line), &v)| expected_row(id, line, v))
        .collect()
}

fn key_of(row: &[Json]) -> (i64, i64) {
    let n = |j: &Json| j.as_str().unwrap().parse::<i64>().unwrap();
    (n(&row[0]), n(&row[1]))
}

fn rows_of(model: &Model, keys: impl IntoIterator<Item = (i64, i64)>) -> Vec<Row> {
    keys.into_iter()
        .map(|(i, l)| row(i, l, model[&(i, l)]))
        .collect()
}

/// Compares read-back rows with the model, naming the first difference.
fn assert_rows(actual: &[Vec<Json>], model: &Model, when: &str) {
    let want = expected(model);
    let keys: Vec<_> = actual.iter().map(|r| key_of(r)).collect();
    let mut dedup = keys.clone();
    dedup.dedup();
    assert_eq!(
        keys.len(),
        dedup.len(),
        "{when}: duplicate keys in the data source: {keys:?}"
    );
    assert_eq!(
        actual.len(),
        want.len(),
        "{when}: row count (keys {keys:?})"
    );
    for (a, w) in actual.iter().zip(&want) {
        assert_eq!(a, w, "{when}: row {:?} differs", key_of(w));
    }
}

/// Reads `path` with tests/python/read_hyper.py (Tableau's Hyper API):
/// the rows of `"Extract"."Extract"`, values as exact strings.
fn read_with_hyper_api(path: &Path) -> Vec<Vec<Json>> {
    let script = crate::common::workspace_root().join("tests/python/read_hyper.py");
    let output = std::process::Command::new(crate::common::python())
        .arg(&script)
        .arg(path)
        .arg("Extract")
        .arg("Extract")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "read_hyper.py failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Json = serde_json::from_slice(&output.stdout).unwrap();
    let table = &json["tables"][0];
    let names: Vec<&str> = table["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let want: Vec<String> = schema().columns.iter().map(|c| c.name.clone()).collect();
    assert_eq!(names, want, "columns of the published extract");
    table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().clone())
        .collect()
}

fn batch(ds: &Datasource, id: &str, parts: Vec<PayloadPart>) -> UpdateBatch {
    UpdateBatch {
        datasource_id: ds.id.clone(),
        datasource_name: ds.name.clone(),
        batch_id: id.into(),
        failed_attempts: 0,
        key_columns: keys(),
        parts,
    }
}

/// Publishes `model` as data source `name`.
async fn publish(env: &Env, client: &TableauClient, name: &str, model: &Model) -> Datasource {
    let rows = rows_of(model, model.keys().copied());
    let file = env.extract(&rows).await;
    let ds = client
        .publish(name, &file, PublishMode::CreateNew)
        .await
        .unwrap_or_else(|e| panic!("publish failed: {e}"));
    assert_eq!(ds.name, name);
    ds
}

#[tokio::test]
async fn publish_then_three_upsert_batches_read_back_exactly() {
    let env = Env::start(TableauSandboxConfig::default()).await;
    let client = env.client();
    let mut model: Model = (1..=40).flat_map(|i| [((i, 1), 1), ((i, 2), 1)]).collect();
    let ds = publish(&env, &client, "ap_invoices", &model).await;
    assert_eq!(
        env.sandbox.datasource_id("ap_invoices").as_deref(),
        Some(ds.id.as_str())
    );
    assert_rows(&env.read_back("ap_invoices"), &model, "after publish");

    // Batch 1: ten updates, ten inserts.
    let mut changed = Vec::new();
    for i in 1..=10 {
        model.insert((i, 1), 2);
        changed.push((i, 1));
    }
    for i in 41..=45 {
        for l in 1..=2 {
            model.insert((i, l), 1);
            changed.push((i, l));
        }
    }
    let part = env.payload(&rows_of(&model, changed), &[]).await;
    let out = client
        .update_data(&batch(&ds, "b-0001", vec![part]))
        .await
        .unwrap();
    assert_eq!(out[0].request_id, "b-0001");
    assert_eq!(out[0].job.as_ref().and_then(|j| j.finish_code), Some(0));
    assert_rows(&env.read_back("ap_invoices"), &model, "after batch 1");

    // Batch 2: an update plus deletes of old and just-inserted keys.
    model.insert((5, 1), 3);
    let deleted = [(3, 1), (4, 2), (41, 2)];
    for k in deleted {
        model.remove(&k);
    }
    let part = env.payload(&rows_of(&model, [(5, 1)]), &deleted).await;
    client
        .update_data(&batch(&ds, "b-0002", vec![part]))
        .await
        .unwrap();
    assert_rows(&env.read_back("ap_invoices"), &model, "after batch 2");

    // Batch 3 in two parts (as a payload over the limit would be split).
    for i in 46..=50 {
        model.insert((i, 1), 1);
    }
    model.insert((6, 1), 4);
    model.insert((7, 2), 2);
    model.remove(&(8, 1));
    let p1 = env
        .payload(
            &rows_of(&model, (46..=50).map(|i| (i, 1)).chain([(6, 1)])),
            &[],
        )
        .await;
    let p2 = env.payload(&rows_of(&model, [(7, 2)]), &[(8, 1)]).await;
    let out = client
        .update_data(&batch(&ds, "b-0003", vec![p1, p2]))
        .await
        .unwrap();
    let ids: Vec<_> = out.iter().map(|o| o.request_id.as_str()).collect();
    assert_eq!(ids, ["b-0003-1", "b-0003-2"]);
    assert_rows(&env.read_back("ap_invoices"), &model, "after batch 3");

    client.shutdown().await.unwrap();
    env.shutdown().await;
}

#[tokio::test]
async fn replayed_batches_never_double_or_roll_back_rows() {
    let env = Env::start(TableauSandboxConfig::default()).await;
    let client = env.client();
    let mut model: Model = (1..=20).map(|i| ((i, 1), 1)).collect();
    let ds = publish(&env, &client, "replays", &model).await;

    // Batch A: an update and an insert.
    let mut a_model = model.clone();
    a_model.insert((1, 1), 2);
    a_model.insert((21, 1), 1);
    let batch_a = batch(
        &ds,
        "batch-A",
        vec![
            env.payload(&rows_of(&a_model, [(1, 1), (21, 1)]), &[])
                .await,
        ],
    );
    client.update_data(&batch_a).await.unwrap();
    model = a_model;

    // Batch B changes the same row again.
    model.insert((1, 1), 3);
    let batch_b = batch(
        &ds,
        "batch-B",
        vec![env.payload(&rows_of(&model, [(1, 1)]), &[]).await],
    );
    client.update_data(&batch_b).await.unwrap();
    assert_rows(&env.read_back("replays"), &model, "after A and B");

    // A replayed by the same client: same RequestID, ignored (had it been
    // applied, row (1,1) would be back at version 2).
    client.update_data(&batch_a).await.unwrap();
    assert_rows(&env.read_back("replays"), &model, "after replaying A");

    // Batch C is submitted, then the process "crashes" before it sees the
    // job; a new client instance re-submits the whole batch.
    env.sandbox.faults().slow_jobs(Duration::from_millis(800));
    let mut c_model = model.clone();
    c_model.insert((22, 1), 1);
    c_model.insert((2, 1), 2);
    let batch_c = batch(
        &ds,
        "batch-C",
        vec![
            env.payload(&rows_of(&c_model, [(22, 1), (2, 1)]), &[])
                .await,
        ],
    );
    let submitted = client
        .submit_update(
            &ds.id,
            &ds.name,
            &batch_c.batch_id,
            &batch_c.key_columns,
            &batch_c.parts[0],
        )
        .await
        .unwrap();
    assert_eq!(submitted.request_id, "batch-C");
    drop(client);
    let restarted = env.client();
    restarted.update_data(&batch_c).await.unwrap();
    env.sandbox.faults().slow_jobs(Duration::ZERO);
    model = c_model;
    // Let the first submission's job finish too, then look.
    if let Some(job) = &submitted.job_id {
        restarted.wait_for_job(job, &ds.name).await.unwrap();
    }
    assert_rows(&env.read_back("replays"), &model, "after C twice");

    // And A once more from the new instance.
    restarted.update_data(&batch_a).await.unwrap();
    assert_rows(
        &env.read_back("replays"),
        &model,
        "after A from a new client",
    );
    restarted.shutdown().await.unwrap();
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_and_a_second_sign_in_mid_chunked_upload_are_survived() {
    let env = Env::start(TableauSandboxConfig::default()).await;
    let mut config = env.config();
    config.chunk_size = 16 * 1024;
    let client = TableauClient::new("acme", config).unwrap();
    let first = client.sign_in().await.unwrap();
    let model: Model = (1..=4000).map(|i| ((i, 1), 1)).collect();
    let file = env.extract(&rows_of(&model, model.keys().copied())).await;
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(
        size > 8 * 16 * 1024,
        "extract of {size} bytes is too small for this test"
    );

    // After chunk 3 every session expires; after chunk 6 another process
    // signs in with the same PAT, which ends our session.
    let other = env.client();
    let sandbox = env.sandbox.clone();
    let seen: Arc<Mutex<Vec<UploadProgress>>> = Arc::default();
    let log = seen.clone();
    client.set_upload_progress(Arc::new(move |p: &UploadProgress| {
        log.lock().unwrap().push(p.clone());
        if p.chunk == 3 {
            sandbox.faults().expire_sessions_now();
        }
        if p.chunk == 6 {
            let other = other.clone();
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current()
                    .block_on(other.sign_in())
                    .unwrap()
            });
        }
    }));
    let ds = client
        .publish("mid_upload", &file, PublishMode::Overwrite)
        .await
        .unwrap_or_else(|e| panic!("publish did not survive the lost sessions: {e}"));
    let progress = seen.lock().unwrap().clone();
    let chunks = progress.last().unwrap().chunks;
    assert_eq!(chunks, size.div_ceil(16 * 1024));
    assert_eq!(
        progress.len() as u64,
        chunks,
        "every chunk stored once: {progress:?}"
    );
    assert!(
        progress.iter().all(|p| p.restarts == 0),
        "upload session survived re-sign-in"
    );
    let now = client.sign_in().await.unwrap();
    assert_eq!(
        now.generation,
        first.generation + 2,
        "signed in again exactly twice"
    );
    assert_eq!(ds.name, "mid_upload");
    assert_rows(&env.read_back("mid_upload"), &model, "after the publish");
    client.shutdown().await.unwrap();
    drop(client); // its progress callback holds the sandbox
    env.shutdown().await;
}

#[tokio::test]
async fn a_failed_chunk_restarts_the_upload_and_a_failed_job_surfaces_its_notes() {
    let env = Env::start(TableauSandboxConfig::default()).await;
    let client = env.client();
    let starts = Arc::new(AtomicU64::new(0));
    let s = starts.clone();
    client.set_upload_progress(Arc::new(move |p: &UploadProgress| {
        s.fetch_max(u64::from(p.restarts), Ordering::SeqCst);
    }));
    let mut model: Model = (1..=1500).map(|i| ((i, 1), 1)).collect();
    env.sandbox.faults().fail_next_chunk(503);
    let ds = publish(&env, &client, "faulty", &model).await;
    assert_eq!(
        starts.load(Ordering::SeqCst),
        1,
        "upload restarted once after the 503"
    );
    assert_rows(&env.read_back("faulty"), &model, "after publish");

    let notes =
        "TableauRuntimeException: Specified table does not exist: changes. (errorCode=410012)";
    env.sandbox.faults().fail_next_job(notes);
    let mut changed = model.clone();
    changed.insert((1, 1), 2);
    let mut b = batch(
        &ds,
        "will-fail",
        vec![env.payload(&rows_of(&changed, [(1, 1)]), &[]).await],
    );
    let err = client.update_data(&b).await.unwrap_err();
    match err.kind.as_ref() {
        ErrorKind::JobFailed {
            notes: Some(n),
            finish_code: 1,
            ..
        } => {
            assert!(n.contains("errorCode=410012"), "notes: {n}")
        }
        other => panic!("expected a failed job with notes, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("tenant `acme`") && text.contains("faulty") && text.contains("410012"),
        "error names tenant, data source and notes: {text}"
    );
    assert_rows(
        &env.read_back("faulty"),
        &model,
        "a failed job changed nothing",
    );

    // The job failed for sure, so the retry is a new attempt with its own
    // RequestID and is applied.
    b.failed_attempts = 1;
    let out = client.update_data(&b).await.unwrap();
    assert_eq!(out[0].request_id, "will-fail.a1");
    model = changed;
    assert_rows(&env.read_back("faulty"), &model, "after the retry");
    env.shutdown().await;
}

#[tokio::test]
async fn webhooks_registered_once_and_rate_limits_waited_out() {
    let env = Env::start(TableauSandboxConfig::default()).await;
    let client = env.client();
    let url = "http://127.0.0.1:9/hooks/acme";
    let hooks = client.ensure_webhooks(url).await.unwrap();
    assert_eq!(hooks.len(), 3);
    env.sandbox.faults().rate_limit_next(2, 1);
    let started = std::time::Instant::now();
    let again = client.ensure_webhooks(url).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "two Retry-After: 1 answers waited out, took {:?}",
        started.elapsed()
    );
    let ids = |h: &[mlc_tableau::Webhook]| {
        let mut v: Vec<String> = h.iter().map(|w| w.id.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&hooks), ids(&again), "nothing created the second time");
    let listed = client.list_webhooks().await.unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    let mut events: Vec<_> = listed.iter().map(|w| w.event).collect();
    events.sort_by_key(|e| e.map(|e| e.api_name()));
    let mut want: Vec<_> = WebhookEvent::ALL.iter().copied().map(Some).collect();
    want.sort_by_key(|e| e.map(|e| e.api_name()));
    assert_eq!(events, want);
    assert!(listed.iter().all(|w| w.url == url && w.enabled));
    env.shutdown().await;
}

/// A >64 MB extract (pseudo-random text, so it barely compresses) goes
/// through the chunked upload with the default 50 MB chunks.
#[tokio::test]
async fn an_extract_over_64_mb_is_published_in_chunks() {
    let env = Env::start(TableauSandboxConfig::default()).await;
    let mut config = env.config();
    config.chunk_size = 50 * mlc_tableau::MB;
    let client = TableauClient::new("acme", config).unwrap();
    let path = env.path("big");
    let schema = Schema {
        columns: vec![
            Column {
                name: "id".into(),
                ty: ColumnType::Integer,
                nullable: false,
                key: true,
            },
            Column {
                name: "blob".into(),
                ty: ColumnType::Text,
                nullable: false,
                key: false,
            },
        ],
    };
    let mut w = HyperWriter::create(&env.hyperd, &path, TableName::extract(), &schema)
        .await
        .unwrap();
    const ROWS: i64 = 56_000;
    const WIDTH: usize = 1_500;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for start in (0..ROWS).step_by(4_000) {
        let rows: Vec<Row> = (start..(start + 4_000).min(ROWS))
            .map(|id| {
                let text: String = (0..WIDTH)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        char::from(alphabet[(state >> 58) as usize])
                    })
                    .collect();
                Row {
                    source: 0,
                    values: vec![Value::Integer(id), Value::Text(text)],
                }
            })
            .collect();
        w.write_rows(&rows).await.unwrap();
    }
    let summary = w.finish().await.unwrap();
    assert!(
        summary.file_bytes > 64 * mlc_tableau::MB,
        "the generated extract is only {} bytes",
        summary.file_bytes
    );
    let progress: Arc<Mutex<Vec<UploadProgress>>> = Arc::default();
    let p = progress.clone();
    client.set_upload_progress(Arc::new(move |u: &UploadProgress| {
        p.lock().unwrap().push(u.clone())
    }));
    client
        .publish("big_extract", &path, PublishMode::CreateNew)
        .await
        .unwrap_or_else(|e| panic!("big publish failed: {e}"));
    let progress = progress.lock().unwrap().clone();
    assert_eq!(progress.len(), 2, "two 50 MB chunks: {progress:?}");
    assert_eq!(progress[1].bytes_sent, summary.file_bytes);

    // Count what the sandbox stored, through our own hyperd on a copy.
    let stored = env.sandbox.datasource_file("big_extract").unwrap();
    let copy = env.path("big-copy");
    std::fs::copy(&stored, &copy).unwrap();
    let session = HyperSession::connect(&env.hyperd).await.unwrap();
    session.attach(&copy, "stored").await.unwrap();
    let rows = session
        .query_rows(
            r#"SELECT COUNT(*), SUM("id"), MIN(LENGTH("blob")) FROM "stored"."Extract"."Extract""#,
        )
        .await
        .unwrap();
    session.detach("stored").await.unwrap();
    assert_eq!(rows[0][0], Value::Integer(ROWS));
    let sum = ROWS * (ROWS - 1) / 2;
    assert!(
        matches!(&rows[0][1], Value::Integer(s) if *s == sum)
            || matches!(&rows[0][1], Value::Decimal(d) if d.unscaled == i128::from(sum)),
        "sum of ids: {:?}",
        rows[0][1]
    );
    assert_eq!(rows[0][2], Value::Integer(WIDTH as i64));
    env.shutdown().await;
}

#[tokio::test]
async fn a_schema_change_overwrites_the_data_source_in_full() {
    let env = Env::start(TableauSandboxConfig::default()).await;
    let client = env.client();
    let model: Model = (1..=10).map(|i| ((i, 1), 1)).collect();
    let ds = publish(&env, &client, "ap_lines", &model).await;

    // The same name again without overwrite is refused (403007).
    let again = env.extract(&rows_of(&model, model.keys().copied())).await;
    let err = client
        .publish("ap_lines", &again, PublishMode::CreateNew)
        .await
        .unwrap_err();
    assert!(err.is_already_exists(), "expected 403007, got {err}");

    // The mapping gained a column: a full extract with overwrite=true.
    let mut wide = schema();
    wide.columns.push(Column {
        name: "currency".into(),
        ty: ColumnType::Text,
        nullable: false,
        key: false,
    });
    let path = env.path("wide");
    let mut w = HyperWriter::create(&env.hyperd, &path, TableName::extract(), &wide)
        .await
        .unwrap();
    let rows: Vec<Row> = (1..=5)
        .map(|i| {
            let mut r = row(i, 1, 9);
            r.values.push(Value::Text(format!("EUR-{i}")));
            r
        })
        .collect();
    w.write_rows(&rows).await.unwrap();
    w.finish().await.unwrap();
    let replaced = client
        .publish("ap_lines", &path, PublishMode::Overwrite)
        .await
        .unwrap();
    let found = client.find_datasource("ap_lines").await.unwrap().unwrap();
    assert_eq!(found.id, replaced.id, "one data source of that name");
    assert_eq!(replaced.name, ds.name);
    let stored = env
        .sandbox
        .datasource_rows("ap_lines", &["invoice_id"])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.len(), 5, "old rows gone: {stored:?}");
    let currencies: Vec<&Value> = stored.iter().map(|r| &r[7]).collect();
    let want: Vec<Value> = (1..=5).map(|i| Value::Text(format!("EUR-{i}"))).collect();
    assert_eq!(currencies, want.iter().collect::<Vec<_>>());
    env.shutdown().await;
}
