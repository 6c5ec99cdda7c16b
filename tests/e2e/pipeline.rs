//! The whole pipeline on the sandboxes: Oracle Fusion → the `scripted`
//! component with the demo invoices mapping → Hyper → Tableau, read back
//! from the Tableau sandbox's `.hyper` file and compared with Oracle's own
//! state after every cycle.

use std::collections::BTreeMap;

use mlc_common::Value;
use mlc_common::time::parse_timestamp;
use mlc_sandbox_oracle::{OracleSandbox, SandboxConfig};
use mlc_sandbox_tableau::{TableauSandbox, TableauSandboxConfig};
use mlc_store::{DataDir, MasterKey, RuntimeStore};
use mlc_sync::template::{self, Endpoints, PipelineTemplate};
use mlc_sync::{CycleAction, CycleReport, Host, HostConfig, Quiet, SyncError, Tenant};

use crate::common::{init_tracing, workspace_root};

const TENANT: &str = "acme";
const DATASOURCE: &str = "AP Invoices";

fn scripted_wasm() -> std::path::PathBuf {
    let dir = std::env::var_os("ML_CONNECTOR_PLUGINS_BUILT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/plugins"));
    let path = dir.join("scripted.wasm");
    assert!(
        path.is_file(),
        "{} is missing; build the guests first with `cargo xtask build-plugins`",
        path.display()
    );
    path
}

/// Both sandboxes and the tenant `acme` with one `invoices` pipeline,
/// built by the composition root from an applied definition.
struct World {
    oracle: OracleSandbox,
    tableau: TableauSandbox,
    host: Host,
    tenant: Option<Tenant>,
    _dir: tempfile::TempDir,
}

impl World {
    fn tenant(&self) -> &Tenant {
        self.tenant.as_ref().expect("the tenant is open")
    }

    /// One durable cycle of the `invoices` pipeline.
    async fn cycle(&self) -> Result<CycleReport, SyncError> {
        let t = self.tenant();
        let spec = t
            .pipeline("invoices")
            .expect("the invoices pipeline")
            .clone();
        t.run_once(&spec, &Quiet).await
    }

    /// Closes the tenant and builds it again from its store file, as a
    /// restarted process would.
    async fn restart(&mut self) {
        if let Some(t) = self.tenant.take() {
            self.host.close(t).await;
        }
        let store = self.host.open_store(TENANT).unwrap();
        self.tenant = Some(self.host.tenant(store).await.unwrap());
    }

    fn store(&self) -> &mlc_store::TenantStore {
        &self.tenant().store
    }
}

async fn world(invoices: u64) -> World {
    world_with(invoices, |text| text).await
}

/// A world whose definition text `tweak` may change (page size, caps).
async fn world_with(invoices: u64, tweak: impl Fn(String) -> String) -> World {
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
    let mappings = dir.path().join("mappings");
    let scripts = mappings.join(TENANT);
    std::fs::create_dir_all(scripts.join("samples")).unwrap();
    let demo = workspace_root().join("mappings/demo");
    std::fs::copy(demo.join("invoices.toml"), scripts.join("invoices.toml")).unwrap();
    std::fs::copy(
        demo.join("samples/invoices.json"),
        scripts.join("samples/invoices.json"),
    )
    .unwrap();
    let base = oracle.base_url();
    let endpoints = Endpoints {
        oracle_url: base.split("/fscmRestApi").next().unwrap().to_owned(),
        token_url: oracle.token_url(),
        client_id: oracle.client_id().to_owned(),
        scope: oracle.scope().to_owned(),
        tableau_url: tableau.server_url(),
        site: tableau.site_content_url().to_owned(),
        project: tableau.project_name().to_owned(),
        pat_name: tableau.pat_name().to_owned(),
    };
    let pipelines = [PipelineTemplate {
        id: "invoices".into(),
        resource: "invoices".into(),
        datasource: DATASOURCE.into(),
        script: "invoices.toml".into(),
        every: None,
    }];
    let text = tweak(template::definition_text(
        TENANT, &endpoints, true, &pipelines,
    ));
    let data = DataDir::new(dir.path().join("data"));
    let runtime = RuntimeStore::open(&data).unwrap();
    let applied = mlc_sync::apply_definition(&data, &runtime, "test", &text, "test").unwrap();
    drop(runtime);
    let key = MasterKey::from_base64(MasterKey::generate_base64().expose(), "test").unwrap();
    let store = mlc_store::TenantStore::open(&applied.store, TENANT).unwrap();
    store
        .set_secret(&key, template::ORACLE_SECRET, &oracle.client_secret())
        .unwrap();
    store
        .set_secret(&key, template::TABLEAU_SECRET, tableau.pat_secret())
        .unwrap();
    drop(store);
    let host = Host::start(
        HostConfig {
            data,
            mappings_dir: mappings,
            plugins_dir: None,
            scripted_wasm: scripted_wasm(),
            hyperd: None,
        },
        key,
    )
    .await
    .unwrap();
    let mut w = World {
        oracle,
        tableau,
        host,
        tenant: None,
        _dir: dir,
    };
    w.restart().await;
    let store = w.store();
    for dataset in ["suppliers", "cost-centers", "account-combinations"] {
        assert!(
            store.has_dataset(dataset).unwrap(),
            "reference dataset {dataset} was not synced into the store"
        );
    }
    w
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

    let first = w.cycle().await.unwrap();
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
    let second = w.cycle().await.unwrap();
    let CycleAction::Upserted { request_ids, .. } = &second.action else {
        panic!("second cycle must upsert: {second:?}");
    };
    assert_eq!(request_ids, &vec![second.batch_id.clone()]);
    let distinct: std::collections::BTreeSet<_> = touched.iter().collect();
    assert_eq!(second.rows_written, distinct.len() as u64, "{second:?}");
    assert_eq!(tableau_state(&w.tableau).await, oracle_state(&w.oracle));

    // Nothing changed: one request to Oracle, nothing to Tableau.
    let third = w.cycle().await.unwrap();
    assert_eq!(third.action, CycleAction::NothingNew, "{third:?}");
    assert_eq!(third.oracle_requests, 1, "{third:?}");
    assert_eq!(tableau_state(&w.tableau).await, oracle_state(&w.oracle));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upsert_is_retried_next_cycle_without_loss_or_duplicates() {
    let w = world(40).await;
    w.cycle().await.unwrap();
    let cursor_before = w.store().pipeline("invoices").unwrap().cursor;

    w.oracle.mutate(3, 2);
    w.tableau
        .faults()
        .fail_next_job("simulated backend failure");
    let error = w.cycle().await.unwrap_err();
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
        w.store().pipeline("invoices").unwrap().cursor,
        cursor_before,
        "a failed batch must not move the cursor"
    );

    // The next cycle reads the same changes again and applies them once.
    let retry = w.cycle().await.unwrap();
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
    let w = world_with(30, |text| {
        format!(
            "{}max_records_per_batch = 5\n",
            text.replace("[oracle]\n", "[oracle]\npage_size = 4\n")
        )
    })
    .await;
    let first = w.cycle().await.unwrap();
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
        let report = w.cycle().await.unwrap();
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

// ------------------------------------------------------- restarts

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_cycles_survive_restarts_and_keep_tableau_equal_to_oracle() {
    let mut w = world(150).await;

    let first = w.cycle().await.unwrap();
    assert!(
        matches!(first.action, CycleAction::Published { .. }),
        "{first:?}"
    );
    assert_eq!(tableau_state(&w.tableau).await, oracle_state(&w.oracle));
    let cursor = w.store().pipeline("invoices").unwrap().cursor;
    assert!(cursor.is_some(), "a confirmed full load sets the cursor");

    // A restart: the store file alone carries the pipeline on.
    w.oracle.mutate(9, 3);
    w.restart().await;
    let second = w.cycle().await.unwrap();
    let CycleAction::Upserted { request_ids, .. } = &second.action else {
        panic!("the second cycle must upsert: {second:?}");
    };
    assert_eq!(request_ids, &vec![second.batch_id.clone()]);
    assert_ne!(
        first.batch_id, second.batch_id,
        "batch ids are never reused"
    );
    assert_eq!(tableau_state(&w.tableau).await, oracle_state(&w.oracle));

    // Nothing changed: the batch is empty, nothing goes to Tableau.
    w.restart().await;
    let third = w.cycle().await.unwrap();
    assert_eq!(third.action, CycleAction::NothingNew, "{third:?}");
    assert_eq!(third.records, 0, "{third:?}");
    let store = w.store();
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
    let mut w = world(60).await;
    w.cycle().await.unwrap();

    w.oracle.mutate(4, 2);
    w.tableau
        .faults()
        .fail_next_job("simulated backend failure");
    let error = w.cycle().await.unwrap_err();
    let open = w
        .store()
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
    let cursor_before = w.store().pipeline("invoices").unwrap().cursor;

    // Restart: the batch resumes from the store and is not read from Oracle
    // again (no request to Oracle at all), with fresh RequestIDs after the
    // failed job.
    w.restart().await;
    let retry = w.cycle().await.unwrap();
    assert_eq!(retry.batch_id, open.id);
    assert_eq!(retry.oracle_requests, 0, "{retry:?}");
    let CycleAction::Upserted { request_ids, .. } = &retry.action else {
        panic!("the retry must upsert: {retry:?}");
    };
    assert_eq!(request_ids, &vec![format!("{}.a1", open.id)]);
    assert_ne!(
        w.store().pipeline("invoices").unwrap().cursor,
        cursor_before
    );
    assert_eq!(tableau_state(&w.tableau).await, oracle_state(&w.oracle));
}

/// Every progress report of a cycle, in order.
#[derive(Default)]
struct Recorded(std::sync::Mutex<Vec<(mlc_sync::Stage, u64)>>);

impl mlc_sync::Progress for Recorded {
    fn update(&self, stage: mlc_sync::Stage, done: u64) {
        self.0.lock().unwrap().push((stage, done));
    }
}

/// One cycle of the `invoices` pipeline, with every progress report.
async fn recorded_cycle(w: &World) -> (CycleReport, Vec<(mlc_sync::Stage, u64)>) {
    let t = w.tenant();
    let spec = t
        .pipeline("invoices")
        .expect("the invoices pipeline")
        .clone();
    let progress = Recorded::default();
    let report = t.run_once(&spec, &progress).await.unwrap();
    (report, progress.0.into_inner().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_load_maps_and_writes_while_its_pages_arrive() {
    // 3,000 invoices in pages of 100, four slices at a time.
    let w = world_with(3000, |text| {
        text.replace(
            "[oracle]\n",
            "[oracle]\npage_size = 100\nmax_concurrency = 4\n",
        )
    })
    .await;
    let (first, events) = recorded_cycle(&w).await;
    assert!(first.streamed, "the first load was not streamed: {first:?}");
    assert!(
        matches!(first.action, CycleAction::Published { .. }),
        "{first:?}"
    );
    assert_eq!(first.rows_written, 3000, "{first:?}");
    // The writer queue holds two pages: rows were written long before the
    // pull ended (a pull that recorded everything first reports no
    // written row until its last page).
    use mlc_sync::Stage;
    let last_pull = events
        .iter()
        .rposition(|(s, _)| *s == Stage::Pull)
        .expect("pull progress");
    let first_rows = events
        .iter()
        .position(|(s, n)| *s == Stage::Write && *n > 0)
        .expect("write progress");
    assert!(
        first_rows < last_pull,
        "no row was written before the last page was recorded: {events:?}"
    );
    let pulled_then = events[..first_rows]
        .iter()
        .filter(|(s, _)| *s == Stage::Pull)
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0);
    assert!(
        pulled_then <= 1000,
        "{pulled_then} of 3,000 records were pulled before the first row was written: {events:?}"
    );
    assert_eq!(tableau_state(&w.tableau).await, oracle_state(&w.oracle));

    // An incremental batch streams too; a cycle with nothing new sends
    // nothing.
    w.oracle.mutate(30, 10);
    let (second, _) = recorded_cycle(&w).await;
    assert!(second.streamed, "{second:?}");
    assert!(
        matches!(second.action, CycleAction::Upserted { .. }),
        "{second:?}"
    );
    assert_eq!(tableau_state(&w.tableau).await, oracle_state(&w.oracle));
    let (third, _) = recorded_cycle(&w).await;
    assert_eq!(third.action, CycleAction::NothingNew, "{third:?}");
    assert!(!third.streamed, "{third:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_changing_during_a_streamed_first_load_are_written_once_at_their_latest() {
    let w = world_with(3000, |text| {
        text.replace(
            "[oracle]\n",
            "[oracle]\npage_size = 100\nmax_concurrency = 4\n",
        )
    })
    .await;
    // Three updates after every page served: records move from the slice
    // that held them to the open last one, so some are read twice.
    w.oracle.faults().mutate_between_pages(3);
    let (first, _) = recorded_cycle(&w).await;
    w.oracle.faults().mutate_between_pages(0);
    assert!(
        !first.streamed,
        "records read twice were streamed as they came: {first:?}"
    );
    // No invoice twice (tableau_state refuses a duplicate key), none
    // older than the version the store holds last.
    let published = tableau_state(&w.tableau).await;
    assert_eq!(published.len() as u64, first.rows_written, "{first:?}");
    for (key, (_, updated)) in &published {
        let latest = w.store().versions("invoices", &key.to_string()).unwrap();
        let newest = latest.iter().filter_map(|v| v.last_update).max();
        assert_eq!(
            Some(*updated),
            newest,
            "invoice {key} is not at its latest pulled version"
        );
    }
    // The next cycle catches what changed behind the load.
    w.cycle().await.unwrap();
    assert_eq!(tableau_state(&w.tableau).await, oracle_state(&w.oracle));
}
