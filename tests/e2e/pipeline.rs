//! The whole pipeline on the sandboxes: Oracle Fusion → the `scripted`
//! component with the demo invoices mapping → Hyper → Tableau, read back
//! from the Tableau sandbox's `.hyper` file and compared with Oracle's own
//! state after every cycle.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use mlc_common::Value;
use mlc_common::time::parse_timestamp;
use mlc_hyper::{Hyperd, HyperdConfig};
use mlc_oracle::{OracleClient, OracleConfig, ResourceSpec};
use mlc_plugin::{PluginRuntime, RuntimeConfig};
use mlc_sandbox_oracle::{OracleSandbox, SandboxConfig};
use mlc_sandbox_tableau::{TableauSandbox, TableauSandboxConfig};
use mlc_sync::{
    Connectors, CycleAction, DEFAULT_MAX_RECORDS_PER_BATCH, Pipeline, PipelineSpec,
    ReferenceSources, ReferenceStore,
};
use mlc_tableau::{TableauClient, TableauConfig};

use crate::common::{init_tracing, workspace_root};

const TENANT: &str = "acme";
const DATASOURCE: &str = "AP Invoices";

fn scripted_wasm() -> Vec<u8> {
    let dir = std::env::var_os("MLC_PLUGINS_BUILT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/plugins"));
    let path = dir.join("scripted.wasm");
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the guests first with `cargo xtask build-plugins`",
            path.display()
        )
    })
}

struct World {
    oracle: OracleSandbox,
    tableau: TableauSandbox,
    connectors: Connectors,
    _dir: tempfile::TempDir,
}

async fn world(invoices: u64) -> World {
    world_paged(invoices, None).await
}

async fn world_paged(invoices: u64, page_size: Option<u32>) -> World {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let oracle = OracleSandbox::start(SandboxConfig {
        seed: 11,
        invoices,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let tableau = TableauSandbox::start(TableauSandboxConfig {
        data_dir: dir.path().join("tableau"),
        ..TableauSandboxConfig::default()
    })
    .await
    .unwrap();
    let hyperd = Hyperd::start(HyperdConfig {
        log_dir: dir.path().join("hyperd"),
        ..HyperdConfig::default()
    })
    .await
    .unwrap();
    let mut oracle_config = OracleConfig::new(
        oracle.base_url(),
        oracle.token_url(),
        oracle.client_id(),
        oracle.client_secret(),
        oracle.scope(),
    );
    if let Some(size) = page_size {
        oracle_config.page_size = size;
    }
    let oracle_client = OracleClient::new(TENANT, oracle_config).unwrap();
    let tableau_client = TableauClient::new(
        TENANT,
        TableauConfig::new(
            tableau.server_url(),
            tableau.site_content_url(),
            tableau.pat_name(),
            tableau.pat_secret().clone(),
            tableau.project_name(),
        ),
    )
    .unwrap();
    let reference = Arc::new(ReferenceStore::new());
    reference
        .sync_from_oracle(
            TENANT,
            &oracle_client,
            &ReferenceSources {
                suppliers: true,
                value_sets: vec![
                    ("CORP_ENTITY".into(), "companies".into()),
                    ("CORP_COST_CENTER".into(), "cost-centers".into()),
                    ("CORP_ACCOUNT".into(), "accounts".into()),
                ],
                combination_segments: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert!(
        reference.len(TENANT, "suppliers") > 0,
        "no suppliers synced"
    );
    assert!(
        reference.len(TENANT, "cost-centers") > 0,
        "no cost centers synced"
    );
    let plugins = PluginRuntime::new(RuntimeConfig {
        cache_dir: Some(workspace_root().join("target/plugin-cache")),
        reference,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let script =
        std::fs::read_to_string(workspace_root().join("mappings/demo/invoices.toml")).unwrap();
    plugins
        .load(TENANT, "invoices", scripted_wasm(), Some(script))
        .await
        .unwrap();
    World {
        oracle,
        tableau,
        connectors: Connectors {
            oracle: oracle_client,
            tableau: tableau_client,
            plugins,
            hyperd: Arc::new(hyperd),
            work_dir: dir.path().join("batches"),
        },
        _dir: dir,
    }
}

fn pipeline() -> Pipeline {
    capped_pipeline(DEFAULT_MAX_RECORDS_PER_BATCH)
}

fn capped_pipeline(max_records_per_batch: usize) -> Pipeline {
    Pipeline::new(PipelineSpec {
        tenant: TENANT.into(),
        name: "invoices".into(),
        resource: ResourceSpec::invoices(),
        plugin: "invoices".into(),
        datasource: DATASOURCE.into(),
        max_records_per_batch,
    })
}

/// Oracle's invoices: id -> (number, LastUpdateDate in µs).
fn oracle_state(sandbox: &OracleSandbox) -> BTreeMap<i64, (String, i64)> {
    sandbox
        .snapshot("invoices")
        .unwrap()
        .into_iter()
        .map(|item| {
            let id = item["InvoiceId"].as_i64().unwrap();
            let number = item["InvoiceNumber"].as_str().unwrap().to_owned();
            let updated = parse_timestamp(item["LastUpdateDate"].as_str().unwrap()).unwrap();
            (id, (number, updated))
        })
        .collect()
}

/// What a dashboard sees: id -> (number, last updated), failing on a
/// duplicate key.
async fn tableau_state(sandbox: &TableauSandbox) -> BTreeMap<i64, (String, i64)> {
    let rows = sandbox
        .datasource_rows(DATASOURCE, &["Invoice ID"])
        .await
        .unwrap()
        .expect("the data source exists");
    // Column order is the mapping's: find the three we compare.
    let script =
        std::fs::read_to_string(workspace_root().join("mappings/demo/invoices.toml")).unwrap();
    let names: Vec<String> = script
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .map(|l| l.trim_end_matches('"').to_owned())
        .collect();
    let at = |n: &str| names.iter().position(|c| c == n).unwrap();
    let (id, number, updated) = (at("Invoice ID"), at("Invoice Number"), at("Last Updated"));
    let mut state = BTreeMap::new();
    for row in rows {
        let (Value::Integer(k), Value::Text(n), Value::Timestamp(t)) =
            (&row[id], &row[number], &row[updated])
        else {
            panic!("unexpected row shape: {row:?}");
        };
        let previous = state.insert(*k, (n.clone(), *t));
        assert!(previous.is_none(), "invoice {k} is in Tableau twice");
    }
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_then_upserts_keep_tableau_equal_to_oracle() {
    let w = world(120).await;
    let mut p = pipeline();

    let first = p.run_cycle(&w.connectors).await.unwrap();
    assert!(
        matches!(first.action, CycleAction::Published { .. }),
        "first cycle must publish: {first:?}"
    );
    assert_eq!(
        first.rejected_by_mapping + first.rejected_by_writer,
        0,
        "{first:?}"
    );
    assert_eq!(tableau_state(&w.tableau).await, oracle_state(&w.oracle));

    // Changes in Oracle: updated and new invoices arrive as one upsert.
    let touched = w.oracle.mutate(7, 4);
    let second = p.run_cycle(&w.connectors).await.unwrap();
    let CycleAction::Upserted { request_ids, .. } = &second.action else {
        panic!("second cycle must upsert: {second:?}");
    };
    assert_eq!(request_ids, &vec![second.batch_id.clone()]);
    let distinct: std::collections::BTreeSet<_> = touched.iter().collect();
    assert_eq!(second.rows_written, distinct.len() as u64, "{second:?}");
    assert_eq!(tableau_state(&w.tableau).await, oracle_state(&w.oracle));

    // Nothing changed: one request to Oracle, nothing to Tableau.
    let third = p.run_cycle(&w.connectors).await.unwrap();
    assert_eq!(third.action, CycleAction::NothingNew, "{third:?}");
    assert_eq!(third.oracle_requests, 1, "{third:?}");
    assert_eq!(tableau_state(&w.tableau).await, oracle_state(&w.oracle));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upsert_is_retried_next_cycle_without_loss_or_duplicates() {
    let w = world(40).await;
    let mut p = pipeline();
    p.run_cycle(&w.connectors).await.unwrap();
    let cursor_before = p.cursor().cloned();

    w.oracle.mutate(3, 2);
    w.tableau
        .faults()
        .fail_next_job("simulated backend failure");
    let error = p.run_cycle(&w.connectors).await.unwrap_err();
    let text = format!("{error:#}");
    let chain: Vec<String> =
        std::iter::successors(Some(&error as &dyn std::error::Error), |e| e.source())
            .map(|e| e.to_string())
            .collect();
    assert!(
        chain
            .iter()
            .any(|m| m.contains("simulated backend failure")),
        "the job's notes must reach the error: {text} / {chain:?}"
    );
    assert_eq!(
        p.cursor().cloned(),
        cursor_before,
        "a failed batch must not move the cursor"
    );

    // The next cycle reads the same changes again and applies them once.
    let retry = p.run_cycle(&w.connectors).await.unwrap();
    let CycleAction::Upserted { request_ids, .. } = &retry.action else {
        panic!("the retry must upsert: {retry:?}");
    };
    assert_eq!(
        request_ids,
        &vec![format!("{}.a1", retry.batch_id)],
        "after a failed job the retry needs a fresh RequestID"
    );
    assert_eq!(tableau_state(&w.tableau).await, oracle_state(&w.oracle));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_change_set_is_spread_over_capped_batches() {
    // Pages of 4 records, batches capped at 5: 11 changed invoices arrive
    // in at least two batches, then nothing.
    let w = world_paged(30, Some(4)).await;
    let mut p = capped_pipeline(5);
    let first = p.run_cycle(&w.connectors).await.unwrap();
    assert!(
        matches!(first.action, CycleAction::Published { .. }),
        "{first:?}"
    );
    assert_eq!(
        first.rows_written, 30,
        "full publishes are not capped: {first:?}"
    );

    let keys = w.oracle.keys("invoices").unwrap();
    for key in keys.iter().step_by(3).take(8) {
        w.oracle.update("invoices", *key).unwrap();
    }
    let inserted = w.oracle.mutate(0, 3);
    assert_eq!(inserted.len(), 3, "{inserted:?}");
    let mut sizes = Vec::new();
    for _ in 0..4 {
        let report = p.run_cycle(&w.connectors).await.unwrap();
        sizes.push(report.rows_written);
    }
    // Whole pages are taken until the batch holds at least 5 new records,
    // so a batch holds at most 5 + 3 (pages may also carry records the
    // overlap window re-reads, which are skipped as exported).
    assert_eq!(
        sizes.iter().sum::<u64>(),
        11,
        "rows per capped batch: {sizes:?}"
    );
    assert!(
        sizes[0] >= 5 && sizes[0] <= 8,
        "rows per capped batch: {sizes:?}"
    );
    assert!(
        sizes[1] > 0,
        "the cap must leave work for the next cycle: {sizes:?}"
    );
    assert_eq!(sizes[3], 0, "rows per capped batch: {sizes:?}");
    assert_eq!(tableau_state(&w.tableau).await, oracle_state(&w.oracle));
}

// ------------------------------------------------------- durable cycles

fn durable_spec() -> PipelineSpec {
    PipelineSpec {
        tenant: TENANT.into(),
        name: "invoices".into(),
        resource: ResourceSpec::invoices(),
        plugin: "invoices".into(),
        datasource: DATASOURCE.into(),
        max_records_per_batch: DEFAULT_MAX_RECORDS_PER_BATCH,
    }
}

/// Opens the tenant's store file, as a restarted process would.
fn reopen(path: &std::path::Path) -> Arc<mlc_store::TenantStore> {
    Arc::new(mlc_store::TenantStore::open(path, TENANT).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_cycles_survive_restarts_and_keep_tableau_equal_to_oracle() {
    let w = world(150).await;
    let path = w._dir.path().join("acme.redb");
    let spec = durable_spec();

    let store = reopen(&path);
    let first = mlc_sync::run_durable_cycle(&spec, &store, &w.connectors)
        .await
        .unwrap();
    assert!(
        matches!(first.action, CycleAction::Published { .. }),
        "{first:?}"
    );
    assert_eq!(tableau_state(&w.tableau).await, oracle_state(&w.oracle));
    let cursor = store.pipeline("invoices").unwrap().cursor;
    assert!(cursor.is_some(), "a confirmed full load sets the cursor");
    drop(store);

    // A restart: the store file alone carries the pipeline on.
    w.oracle.mutate(9, 3);
    let store = reopen(&path);
    let second = mlc_sync::run_durable_cycle(&spec, &store, &w.connectors)
        .await
        .unwrap();
    let CycleAction::Upserted { request_ids, .. } = &second.action else {
        panic!("the second cycle must upsert: {second:?}");
    };
    assert_eq!(request_ids, &vec![second.batch_id.clone()]);
    assert_ne!(
        first.batch_id, second.batch_id,
        "batch ids are never reused"
    );
    assert_eq!(tableau_state(&w.tableau).await, oracle_state(&w.oracle));
    drop(store);

    // Nothing changed: the batch is empty, nothing goes to Tableau.
    let store = reopen(&path);
    let third = mlc_sync::run_durable_cycle(&spec, &store, &w.connectors)
        .await
        .unwrap();
    assert_eq!(third.action, CycleAction::NothingNew, "{third:?}");
    assert_eq!(third.records, 0, "{third:?}");
    let batches = store.batches("invoices").unwrap();
    assert_eq!(batches.len(), 3);
    assert!(
        batches.iter().all(|b| b.state.is_final()),
        "{:?}",
        batches.iter().map(|b| b.state.name()).collect::<Vec<_>>()
    );
    // Every version seen is kept with the batch that carried it.
    let changed = batches[1].records;
    assert!(changed > 0, "the second batch recorded nothing");
    let key = store
        .batch_keys("invoices", batches[1].seq, None, 1)
        .unwrap();
    let versions = store.versions("invoices", &key[0]).unwrap();
    assert_eq!(
        versions.iter().map(|v| v.seq).collect::<Vec<_>>(),
        vec![batches[0].seq, batches[1].seq],
        "{versions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_durable_batch_resumes_from_the_store_without_pulling_again() {
    let w = world(60).await;
    let path = w._dir.path().join("acme.redb");
    let spec = durable_spec();
    let store = reopen(&path);
    mlc_sync::run_durable_cycle(&spec, &store, &w.connectors)
        .await
        .unwrap();

    w.oracle.mutate(4, 2);
    w.tableau
        .faults()
        .fail_next_job("simulated backend failure");
    let error = mlc_sync::run_durable_cycle(&spec, &store, &w.connectors)
        .await
        .unwrap_err();
    let open = store
        .open_batch("invoices")
        .unwrap()
        .expect("a failed batch stays open");
    let mlc_store::BatchState::Failed {
        error: text,
        resume,
    } = &open.state
    else {
        panic!("not failed: {:?}", open.state);
    };
    assert!(
        text.contains("simulated backend failure"),
        "the job's notes must be kept with the batch: {text} ({error})"
    );
    assert_eq!(resume.name(), "submitted", "{resume:?}");
    assert_eq!(open.failed_jobs, 1);
    let cursor_before = store.pipeline("invoices").unwrap().cursor;
    drop(store);

    // Restart: the batch resumes from the store and is not read from Oracle
    // again (no request to Oracle at all), with fresh RequestIDs after the
    // failed job.
    let store = reopen(&path);
    let retry = mlc_sync::run_durable_cycle(&spec, &store, &w.connectors)
        .await
        .unwrap();
    assert_eq!(retry.batch_id, open.id);
    assert_eq!(retry.oracle_requests, 0, "{retry:?}");
    let CycleAction::Upserted { request_ids, .. } = &retry.action else {
        panic!("the retry must upsert: {retry:?}");
    };
    assert_eq!(request_ids, &vec![format!("{}.a1", open.id)]);
    assert_ne!(store.pipeline("invoices").unwrap().cursor, cursor_before);
    assert_eq!(tableau_state(&w.tableau).await, oracle_state(&w.oracle));
}
