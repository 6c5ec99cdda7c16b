//! The plugin runtime end to end, with real components: misbehaving plugins
//! fail alone, hot reload never mixes versions, refused components leave
//! the old version serving, rollback, exact decimals, tenant-scoped lookups.
//!
//! Components come from `$ML_CONNECTOR_PLUGINS_BUILT` or `<workspace>/target/plugins`
//! (build them with `cargo xtask build-plugins`).
// Test helpers fail the test loudly, like the tests themselves.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mlc_common::{Decimal, MappedBatch, Value};
use mlc_plugin::{
    CompileSource, JsonDirReference, LoadOptions, OutputMeasure, PluginError, PluginLimits,
    PluginRuntime, RuntimeConfig, Sample, VersionId, WatchHandle, WatchOptions, version_of,
};

use crate::common::{init_tracing, workspace_root};

/// A built component's bytes.
fn component(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("ML_CONNECTOR_PLUGINS_BUILT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/plugins"));
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "component {} missing ({e}): run `cargo xtask build-plugins` \
             (with CARGO_TARGET_DIR=<dir>, then set ML_CONNECTOR_PLUGINS_BUILT=<dir>/plugins)",
            path.display()
        )
    })
}

/// One compile cache shared by the tests of this process: the first load of
/// each component compiles, later ones load from disk.
fn cache_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
        .to_path_buf()
}

fn reference() -> JsonDirReference {
    let mut reference = JsonDirReference::default();
    reference
        .insert_tenant(
            "acme",
            "cost-centers",
            r#"{"110": {"Value": "110", "Description": "Acme Sales"}}"#,
        )
        .unwrap();
    reference
        .insert_tenant(
            "globex",
            "cost-centers",
            r#"{"110": {"Value": "110", "Description": "Globex R&D"}}"#,
        )
        .unwrap();
    reference
        .insert_shared(
            "companies",
            r#"{"101": {"Value": "101", "Description": "US Operations"}}"#,
        )
        .unwrap();
    reference
        .insert_shared(
            "accounts",
            r#"{"4010": {"Value": "4010", "Description": "Product Revenue"}, "1110": {"Value": "1110", "Description": "Cash"}}"#,
        )
        .unwrap();
    reference
}

fn runtime() -> PluginRuntime {
    init_tracing();
    PluginRuntime::new(RuntimeConfig {
        cache_dir: Some(cache_dir()),
        consume_fuel: true,
        reference: Arc::new(reference()),
        ..RuntimeConfig::default()
    })
    .expect("runtime")
}

fn items(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!(r#"{{"id": {i}, "amount": {i}.5, "cc": "110"}}"#))
        .collect()
}

fn label_of(batch: &MappedBatch) -> Vec<String> {
    batch
        .rows
        .iter()
        .map(|r| match &r.values[1] {
            Value::Text(t) => t.clone(),
            other => panic!("label is not text: {other:?}"),
        })
        .collect()
}

/// Asserts a good batch of `items(n)` mapped by misbehave with `label`.
fn assert_items(batch: &MappedBatch, n: usize, label: &str) {
    assert!(batch.rejects.is_empty(), "rejects: {:?}", batch.rejects);
    assert_eq!(batch.rows.len(), n, "rows");
    for (i, row) in batch.rows.iter().enumerate() {
        assert_eq!(row.values[0], Value::Integer(i as i64), "row {i}");
        assert_eq!(row.values[1], Value::Text(label.into()), "row {i}");
        assert_eq!(
            row.values[2],
            Value::Decimal(
                Decimal::parse(&format!("{i}.5"))
                    .unwrap()
                    .rescale(9)
                    .unwrap()
            ),
            "row {i}"
        );
    }
}

const INVOICE: &str = r#"{"InvoiceId":300100412233001,"InvoiceNumber":"ACME-2024-0042","InvoiceAmount":1250.00,
  "AmountPaid":250.10,"InvoiceCurrency":"USD","InvoiceDate":"2024-05-02","AccountingDate":null,
  "BusinessUnit":"US1 Business Unit","Supplier":"Acme Office Supply","SupplierNumber":"1253",
  "CanceledFlag":"N","LastUpdateDate":"2024-05-03T09:02:51.077+00:00",
  "links":[{"rel":"self","href":"https://acme.fa.us2.oraclecloud.com/fscmRestApi/resources/11.13.18.05/invoices/300100412233001"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_misbehave_mode_fails_alone_while_another_tenant_keeps_mapping() {
    let rt = runtime();
    let misbehave = component("misbehave");
    // The misbehaving tenant: a short deadline, 32 MiB, small output caps.
    rt.set_tenant_limits(
        "bad",
        PluginLimits {
            memory: 32 << 20,
            deadline: Duration::from_millis(400),
            fuel: None,
            max_output_rows: 100_000,
            max_output_bytes: 1 << 20,
        },
    )
    .unwrap();
    // A tenant whose CPU bound is fuel: deterministic.
    rt.set_tenant_limits(
        "bad-fuel",
        PluginLimits {
            fuel: Some(20_000_000),
            ..PluginLimits::default()
        },
    )
    .unwrap();
    let modes = [
        ("bad", "loop"),
        ("bad-fuel", "loop"),
        ("bad", "trap"),
        ("bad", "memory-bomb"),
        ("bad", "huge:5000"),
        ("bad", "wrong-schema"),
        ("bad", "wrong-type"),
    ];
    for (tenant, mode) in modes {
        let name = mode.split(':').next().unwrap();
        rt.load(tenant, name, misbehave.clone(), Some(mode.into()))
            .await
            .unwrap_or_else(|e| panic!("loading {mode}: {}", e.chain()));
    }
    rt.load("bad", "ok", misbehave.clone(), Some("ok".into()))
        .await
        .unwrap();
    rt.load("good", "gl", component("gl-journal-lines"), None)
        .await
        .unwrap();
    rt.load(
        "good",
        "items",
        misbehave.clone(),
        Some("version:good".into()),
    )
    .await
    .unwrap();

    // The good tenant maps continuously while the bad batches fail. The
    // guard stops it even when an assertion below fails, so a failure
    // reports instead of hanging the test.
    let stop = Arc::new(AtomicBool::new(false));
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _stop_guard = StopOnDrop(stop.clone());
    let good = {
        let rt = rt.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut batches = 0;
            while !stop.load(Ordering::Relaxed) || batches < 3 {
                let batch = rt
                    .map_batch("good", "items", "items", &items(50))
                    .await
                    .expect("good items");
                assert_items(&batch, 50, "good");
                let invoices = rt
                    .map_batch("good", "gl", "invoices", &[INVOICE.to_owned()])
                    .await
                    .expect("good invoices");
                assert_eq!(invoices.rows.len(), 1, "rejects: {:?}", invoices.rejects);
                batches += 1;
            }
            batches
        })
    };

    let mut failures = Vec::new();
    for (tenant, mode) in modes {
        let rt = rt.clone();
        failures.push(tokio::spawn(async move {
            let name = mode.split(':').next().unwrap();
            let started = Instant::now();
            let result = rt.map_batch(tenant, name, "items", &items(3)).await;
            (tenant, mode, result, started.elapsed())
        }));
    }
    for failure in failures {
        let (tenant, mode, result, took) = failure.await.unwrap();
        let err = match result {
            Ok(batch) => panic!("{mode} mapped instead of failing: {batch:?}"),
            Err(err) => err,
        };
        let message = err.chain();
        let plugin = err
            .plugin()
            .unwrap_or_else(|| panic!("{mode}: no plugin named in {message}"));
        assert_eq!(&*plugin.tenant, tenant, "{message}");
        assert_eq!(
            &*plugin.plugin,
            mode.split(':').next().unwrap(),
            "{message}"
        );
        assert!(
            message.contains(&format!("of tenant `{tenant}`")),
            "{message}"
        );
        match (tenant, mode) {
            ("bad", "loop") => {
                assert!(
                    matches!(err, PluginError::Deadline { deadline, .. } if deadline == Duration::from_millis(400)),
                    "{message}"
                );
                assert!(took < Duration::from_secs(5), "the deadline took {took:?}");
            }
            ("bad-fuel", "loop") => {
                assert!(
                    matches!(
                        err,
                        PluginError::OutOfFuel {
                            fuel: 20_000_000,
                            ..
                        }
                    ),
                    "{message}"
                )
            }
            (_, "trap") => {
                assert!(matches!(err, PluginError::Trap { .. }), "{message}");
                assert!(
                    message.contains("misbehave: trapping on purpose"),
                    "the panic message is lost: {message}"
                );
            }
            (_, "memory-bomb") => assert!(
                matches!(err, PluginError::MemoryLimit { limit, requested, .. } if limit == 32 << 20 && requested > limit),
                "{message}"
            ),
            (_, "huge:5000") => assert!(
                matches!(err, PluginError::OutputTooLarge { measure: OutputMeasure::Bytes, limit, actual, .. } if limit == 1 << 20 && actual > 5_000_000),
                "{message}"
            ),
            (_, "wrong-schema") => {
                assert!(
                    matches!(err, PluginError::SchemaViolation { .. }),
                    "{message}"
                );
                assert!(
                    message.contains("the output has 2 columns; the schema has 4"),
                    "{message}"
                );
            }
            (_, "wrong-type") => {
                assert!(
                    matches!(err, PluginError::SchemaViolation { .. }),
                    "{message}"
                );
                assert!(
                    message.contains("column `Index` is declared integer but holds text values"),
                    "{message}"
                );
            }
            other => panic!("unexpected case {other:?}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let good_batches = good.await.expect("the good tenant's batches failed");
    assert!(
        good_batches >= 3,
        "the good tenant mapped only {good_batches} batches (each 50 items and one invoice)"
    );
    // The failures poisoned nothing: the same tenant's healthy plugin maps.
    let batch = rt.map_batch("bad", "ok", "items", &items(5)).await.unwrap();
    assert_items(&batch, 5, "ok");
    // A trapped plugin maps again on a fresh instance (and traps again).
    assert!(matches!(
        rt.map_batch("bad", "trap", "items", &items(1)).await,
        Err(PluginError::Trap { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_components_leave_the_old_version_serving() {
    let rt = runtime();
    let misbehave = component("misbehave");
    let v1 = rt
        .load(
            "acme",
            "items",
            misbehave.clone(),
            Some("version:v1".into()),
        )
        .await
        .unwrap();
    let sample = Sample::Records(items(3));

    // (expected error kind, component, configuration, sample)
    type Attempt = (&'static str, Vec<u8>, Option<&'static str>, Option<Sample>);
    let attempts: Vec<Attempt> = vec![
        (
            "forbidden-import",
            component("misbehave-import"),
            None,
            None,
        ),
        (
            "sample",
            misbehave.clone(),
            Some("trap"),
            Some(sample.clone()),
        ),
        (
            "sample",
            misbehave.clone(),
            Some("wrong-schema"),
            Some(sample.clone()),
        ),
        (
            "sample-rejected",
            misbehave.clone(),
            Some("reject"),
            Some(sample.clone()),
        ),
        ("guest", misbehave.clone(), Some("no-such-mode"), None),
        ("compile", b"\0asm\x01\0\0\0".to_vec(), None, None),
    ];
    for (kind, wasm, config, sample) in attempts {
        let err = rt
            .load_with(
                "acme",
                "items",
                wasm,
                LoadOptions {
                    config: config.map(str::to_owned),
                    sample,
                    origin: Some(format!("test:{kind}")),
                },
            )
            .await
            .expect_err(kind);
        assert_eq!(err.kind(), kind, "{}", err.chain());
        match &err {
            PluginError::ForbiddenImport { import, others, .. } => {
                // Reading a file pulls in the filesystem (and file times, the
                // wall clock): every one is named.
                let all: Vec<&String> = std::iter::once(import).chain(others).collect();
                assert!(
                    all.iter().any(|i| i.starts_with("wasi:filesystem/types@")),
                    "{all:?}"
                );
                assert!(
                    all.iter()
                        .any(|i| i.starts_with("wasi:filesystem/preopens@")),
                    "{all:?}"
                );
                assert!(
                    err.to_string().contains("which plugins may not use"),
                    "{err}"
                );
            }
            PluginError::Sample { source, .. } if config == Some("trap") => {
                assert!(
                    matches!(**source, PluginError::Trap { .. }),
                    "{}",
                    err.chain()
                )
            }
            PluginError::Sample { source, .. } => {
                assert!(
                    matches!(**source, PluginError::SchemaViolation { .. }),
                    "{}",
                    err.chain()
                )
            }
            PluginError::SampleRejected {
                count: 3, first, ..
            } => {
                assert!(first.contains("rejects every record"), "{first}")
            }
            PluginError::Guest { error, .. } => {
                assert!(
                    error.to_string().contains("unknown mode \"no-such-mode\""),
                    "{error}"
                )
            }
            PluginError::Compile { .. } => {}
            other => panic!("{kind}: unexpected {}", other.chain()),
        }
        // Still v1.
        assert_eq!(
            rt.info("acme", "items").unwrap().version,
            v1.version,
            "after {kind}"
        );
        let batch = rt
            .map_batch("acme", "items", "items", &items(2))
            .await
            .unwrap();
        assert_eq!(label_of(&batch), vec!["v1", "v1"], "after {kind}");
    }
    let refusals = rt.refusals();
    let kinds: Vec<&str> = refusals.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        vec![
            "forbidden-import",
            "sample",
            "sample",
            "sample-rejected",
            "guest",
            "compile"
        ]
    );
    assert!(
        refusals
            .iter()
            .all(|r| r.tenant == "acme" && r.name == "items")
    );
    assert_eq!(refusals[0].origin.as_deref(), Some("test:forbidden-import"));
    assert!(
        refusals[0].reason.contains("wasi:filesystem/"),
        "{}",
        refusals[0].reason
    );

    // A passing sample is summarised in the info.
    let ok = rt
        .load_with_sample(
            "acme",
            "items",
            misbehave,
            Some("version:v2".into()),
            sample,
        )
        .await
        .unwrap();
    let summary = ok.sample.expect("sample summary");
    assert_eq!((summary.records, summary.rows, summary.rejects), (3, 3, 0));
    assert_eq!(summary.resources, vec!["items".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_is_instant_and_walks_back_the_activations() {
    let rt = runtime();
    let misbehave = component("misbehave");
    let mut versions = Vec::new();
    for label in ["v1", "v2", "v3"] {
        let info = rt
            .load(
                "acme",
                "items",
                misbehave.clone(),
                Some(format!("version:{label}")),
            )
            .await
            .unwrap();
        versions.push(info.version);
    }
    let current = |rt: &PluginRuntime| {
        let rt = rt.clone();
        async move {
            label_of(
                &rt.map_batch("acme", "items", "items", &items(1))
                    .await
                    .unwrap(),
            )[0]
            .clone()
        }
    };
    assert_eq!(current(&rt).await, "v3");
    let started = Instant::now();
    let back = rt.rollback("acme", "items").unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "rollback took {:?}",
        started.elapsed()
    );
    assert_eq!(back.version, versions[1]);
    assert_eq!(current(&rt).await, "v2");
    assert_eq!(rt.rollback("acme", "items").unwrap().version, versions[0]);
    assert_eq!(current(&rt).await, "v1");
    let err = rt.rollback("acme", "items").unwrap_err();
    assert!(matches!(err, PluginError::NoSuchVersion { .. }), "{err}");
    // Every version is still kept: going forward again needs no compile.
    let status = &rt.list()[0];
    assert_eq!(status.versions, versions);
    assert_eq!(status.rollback_depth, 0);
    let again = rt
        .activate_version("acme", "items", versions[2].short())
        .unwrap();
    assert_eq!(again.version, versions[2]);
    assert_eq!(current(&rt).await, "v3");
    // The same wasm with another configuration shares the compiled code.
    let v4 = rt
        .load("acme", "items", misbehave, Some("version:v4".into()))
        .await
        .unwrap();
    assert_eq!(v4.compile, CompileSource::Memory);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hot_reload_under_concurrent_batches_never_mixes_versions() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let tenant_dir = dir.path().join("acme");
    std::fs::create_dir_all(&tenant_dir).unwrap();
    let misbehave = component("misbehave");
    write_atomically(&tenant_dir.join("items.wasm"), &misbehave);
    write_atomically(&tenant_dir.join("items.toml"), b"version:v1");
    let watch = rt
        .watch_with(
            dir.path(),
            WatchOptions {
                interval: Duration::from_millis(50),
            },
        )
        .await
        .unwrap();
    let v1 = rt.info("acme", "items").expect("loaded by the first scan");
    assert_eq!(
        v1.origin.as_deref(),
        Some(tenant_dir.join("items.wasm").to_str().unwrap())
    );

    // Four workers map batches without pause and record (version, labels).
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let rt = rt.clone();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let mut seen: Vec<(VersionId, String)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (batch, version) = rt
                    .map_batch_with_version("acme", "items", "items", &items(40))
                    .await
                    .expect("a batch failed during reload");
                let labels = label_of(&batch);
                assert_eq!(labels.len(), 40);
                assert!(
                    labels.iter().all(|l| l == &labels[0]),
                    "one batch mixed versions: {labels:?}"
                );
                seen.push((version, labels[0].clone()));
            }
            seen
        }));
    }
    wait_for(&rt, "v2", || {
        write_atomically(&tenant_dir.join("items.toml"), b"version:v2")
    })
    .await;
    // A bad update is refused and v2 keeps serving.
    write_atomically(&tenant_dir.join("items.sample.json"), br#"[{"id": 1}]"#);
    write_atomically(&tenant_dir.join("items.toml"), b"trap");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !rt.refusals().iter().any(|r| r.kind == "sample") {
        assert!(
            Instant::now() < deadline,
            "the bad update was never refused: {:?}",
            rt.refusals()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refusal = rt
        .refusals()
        .into_iter()
        .find(|r| r.kind == "sample")
        .unwrap();
    assert!(
        refusal.reason.contains("misbehave: trapping on purpose"),
        "{}",
        refusal.reason
    );
    assert_eq!(
        refusal.origin.as_deref(),
        Some(tenant_dir.join("items.wasm").to_str().unwrap())
    );
    wait_for(&rt, "v3", || {
        write_atomically(&tenant_dir.join("items.toml"), b"version:v3")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    drop(watch);

    let mut by_version: HashMap<VersionId, String> = HashMap::new();
    for worker in workers {
        let seen = worker.await.expect("worker");
        assert!(
            !seen.is_empty(),
            "a worker mapped no batch; refusals: {:?}",
            rt.refusals()
        );
        // Versions only move forward in each worker: v1..., v2..., v3...
        let order: Vec<&str> = seen.iter().map(|(_, l)| l.as_str()).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(
            order, sorted,
            "a worker saw an older version after a newer one"
        );
        assert!(!order.contains(&"trap"));
        for (version, label) in seen {
            let known = by_version
                .entry(version.clone())
                .or_insert_with(|| label.clone());
            assert_eq!(known, &label, "version {version} mapped with two labels");
        }
    }
    let labels: std::collections::BTreeSet<&String> = by_version.values().collect();
    assert!(labels.contains(&"v3".to_owned()), "{labels:?}");
}

/// Watches `dir` with a short interval.
async fn watch_fast(rt: &PluginRuntime, dir: &Path) -> WatchHandle {
    rt.watch_with(
        dir,
        WatchOptions {
            interval: Duration::from_millis(50),
        },
    )
    .await
    .unwrap()
}

/// Polls `check` until it gives a value; fails after 30 s, saying what
/// was awaited, what `check` saw last and the runtime's refusals.
async fn until<T>(
    what: &str,
    rt: &PluginRuntime,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) => assert!(
                Instant::now() < deadline,
                "{what}: not after 30 s; last seen: {last}; refusals: {:?}",
                rt.refusals()
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the watcher has completed `n` scans more than `from`.
async fn scans_after(rt: &PluginRuntime, watch: &WatchHandle, from: u64, n: u64) {
    until(&format!("{n} scans after scan {from}"), rt, || {
        let now = watch.scans();
        if now >= from + n {
            Ok(())
        } else {
            Err(format!("{now} scans"))
        }
    })
    .await
}

/// The label `items` of `tenant` maps with now, or why there is none.
async fn label_now(rt: &PluginRuntime, tenant: &str) -> Result<String, String> {
    let batch = rt
        .map_batch(tenant, "items", "items", &items(1))
        .await
        .map_err(|e| e.chain())?;
    Ok(label_of(&batch)[0].clone())
}

/// A tenant directory holding `items.wasm` (misbehave) configured with
/// `config`.
fn plugin_dir(root: &Path, tenant: &str, config: &str) -> PathBuf {
    let tenant_dir = root.join(tenant);
    std::fs::create_dir_all(&tenant_dir).unwrap();
    write_atomically(&tenant_dir.join("items.toml"), config.as_bytes());
    write_atomically(&tenant_dir.join("items.wasm"), &component("misbehave"));
    tenant_dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_added_after_the_first_scan_loads_once_unchanged_for_an_interval() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let watch = watch_fast(&rt, dir.path()).await;
    assert!(rt.list().is_empty(), "{:?}", rt.list());
    // Write just after a scan, so that the next scan is (almost surely)
    // the first to see the files.
    let before = watch.scans();
    scans_after(&rt, &watch, before, 1).await;
    let seen_from = watch.scans();
    plugin_dir(dir.path(), "acme", "version:added");
    // The next scan is at most the first to see the files: it must not
    // load them, since they have not stayed unchanged for an interval yet.
    scans_after(&rt, &watch, seen_from, 1).await;
    let first_look = rt.info("acme", "items");
    assert!(
        matches!(first_look, Err(PluginError::NotFound { .. })),
        "loaded at the first scan that saw it: {:?}",
        first_look.map(|info| (info.version, info.origin))
    );
    // Two more scans: one started after the files were written, the next
    // saw them unchanged and loaded them.
    scans_after(&rt, &watch, seen_from, 3).await;
    let loaded = rt.info("acme", "items").unwrap_or_else(|e| {
        panic!(
            "not loaded after 3 scans ({}); refusals: {:?}",
            e.chain(),
            rt.refusals()
        )
    });
    assert_eq!(
        loaded.version,
        version_of(&component("misbehave"), Some("version:added"))
    );
    assert_eq!(label_now(&rt, "acme").await, Ok("added".to_owned()));
    assert!(rt.refusals().is_empty(), "{:?}", rt.refusals());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_sample_refuses_the_new_version_and_the_previous_keeps_serving() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let tenant_dir = plugin_dir(dir.path(), "acme", "version:v1");
    let _watch = watch_fast(&rt, dir.path()).await;
    let v1 = rt.info("acme", "items").expect("loaded by the first scan");
    let sample = tenant_dir.join("items.sample.json");
    // A trailing comma: not JSON.
    write_atomically(&sample, br#"[{"id": 1}, {"id": 2},]"#);
    until("the malformed sample refused", &rt, || {
        let kinds: Vec<&str> = rt.refusals().iter().map(|r| r.kind).collect();
        if kinds.contains(&"bad-sample") {
            Ok(())
        } else {
            Err(format!("{kinds:?}"))
        }
    })
    .await;
    // A new version beside the malformed sample is refused too.
    write_atomically(&tenant_dir.join("items.toml"), b"version:v2");
    let v2 = version_of(&component("misbehave"), Some("version:v2"));
    let refusal = until("the new version refused", &rt, || {
        rt.refusals()
            .into_iter()
            .find(|r| r.version.as_ref() == Some(&v2))
            .ok_or_else(|| "no refusal of v2".to_owned())
    })
    .await;
    assert_eq!(refusal.kind, "bad-sample", "{refusal:?}");
    assert!(
        refusal
            .reason
            .contains(&format!("invalid sample {}", sample.display())),
        "the refusal does not name the sample file: {}",
        refusal.reason
    );
    assert_eq!(
        refusal.origin.as_deref(),
        Some(tenant_dir.join("items.wasm").to_str().unwrap())
    );
    assert_eq!(rt.info("acme", "items").unwrap().version, v1.version);
    assert_eq!(label_now(&rt, "acme").await, Ok("v1".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_mapping_script_is_refused_with_its_location_and_the_previous_keeps_serving() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let tenant_dir = dir.path().join("acme");
    std::fs::create_dir(&tenant_dir).unwrap();
    let good = "resource = \"invoices\"\n\n[[column]]\nname = \"Invoice ID\"\ntype = \"integer\"\nkey = true\nsource = \"InvoiceId\"\n";
    let script = tenant_dir.join("invoices.toml");
    write_atomically(&script, good.as_bytes());
    write_atomically(&tenant_dir.join("invoices.wasm"), &component("scripted"));
    let _watch = watch_fast(&rt, dir.path()).await;
    let serving = rt
        .info("acme", "invoices")
        .expect("loaded by the first scan");
    let bad = format!(
        "{good}\n[[column]]\nname = \"Supplier\"\ntype = \"text\"\nexpr = \"uper(Supplier)\"\n"
    );
    write_atomically(&script, bad.as_bytes());
    let refusal = until("the bad script refused", &rt, || {
        rt.refusals()
            .into_iter()
            .next()
            .ok_or_else(|| "no refusal".to_owned())
    })
    .await;
    assert_eq!(
        (refusal.kind, refusal.name.as_str()),
        ("guest", "invoices"),
        "{refusal:?}"
    );
    for part in [
        &format!(
            "{}:12:9: column \"Supplier\": in expr: unknown function \"uper\"",
            script.display()
        ),
        "refused this configuration",
    ] {
        assert!(
            refusal.reason.contains(part),
            "{:?} does not contain {part:?}",
            refusal.reason
        );
    }
    assert_eq!(
        refusal.version,
        Some(version_of(&component("scripted"), Some(&bad)))
    );
    assert_eq!(
        rt.info("acme", "invoices").unwrap().version,
        serving.version
    );
    let batch = rt
        .map_batch(
            "acme",
            "invoices",
            "invoices",
            &[r#"{"InvoiceId": 300100412233001}"#.to_owned()],
        )
        .await
        .unwrap();
    let rows: Vec<&Vec<Value>> = batch.rows.iter().map(|r| &r.values).collect();
    assert_eq!(
        rows,
        vec![&vec![Value::Integer(300100412233001)]],
        "rejects: {:?}",
        batch.rejects
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_wasm_keeps_the_last_version_serving() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let tenant_dir = plugin_dir(dir.path(), "acme", "version:v1");
    let watch = watch_fast(&rt, dir.path()).await;
    let v1 = rt.info("acme", "items").expect("loaded by the first scan");
    let from = watch.scans();
    std::fs::remove_file(tenant_dir.join("items.wasm")).unwrap();
    // A scan that started after the removal has completed.
    scans_after(&rt, &watch, from, 2).await;
    assert_eq!(rt.info("acme", "items").unwrap().version, v1.version);
    assert_eq!(label_now(&rt, "acme").await, Ok("v1".to_owned()));
    assert!(rt.refusals().is_empty(), "{:?}", rt.refusals());
    // The plugin is still watched: a wasm put back is loaded.
    write_atomically(&tenant_dir.join("items.toml"), b"version:v2");
    write_atomically(&tenant_dir.join("items.wasm"), &component("misbehave"));
    wait_for(&rt, "v2", || {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_set_is_retried_only_when_a_file_changes_and_loads_once_fixed() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let tenant_dir = plugin_dir(dir.path(), "acme", "version:v1");
    write_atomically(&tenant_dir.join("items.sample.json"), br#"[{"id": 1}]"#);
    let watch = watch_fast(&rt, dir.path()).await;
    assert_eq!(label_now(&rt, "acme").await, Ok("v1".to_owned()));
    let refusals = |count: usize| {
        let rt = rt.clone();
        move || {
            let kinds: Vec<&str> = rt.refusals().iter().map(|r| r.kind).collect();
            if kinds.len() == count {
                Ok(())
            } else {
                Err(format!("{kinds:?}"))
            }
        }
    };
    write_atomically(&tenant_dir.join("items.toml"), b"trap");
    until("the trapping version refused", &rt, refusals(1)).await;
    // Unchanged files are not loaded again, however many scans pass.
    let from = watch.scans();
    scans_after(&rt, &watch, from, 5).await;
    let kinds: Vec<&str> = rt.refusals().iter().map(|r| r.kind).collect();
    assert_eq!(kinds, vec!["sample"], "retried without a change");
    // The same content written again is a change (a new file): retried.
    write_atomically(&tenant_dir.join("items.toml"), b"trap");
    until("the rewritten version refused again", &rt, refusals(2)).await;
    assert_eq!(label_now(&rt, "acme").await, Ok("v1".to_owned()));
    // Fixed: loaded.
    wait_for(&rt, "v2", || {
        write_atomically(&tenant_dir.join("items.toml"), b"version:v2")
    })
    .await;
    let kinds: Vec<&str> = rt.refusals().iter().map(|r| r.kind).collect();
    assert_eq!(kinds, vec!["sample", "sample"]);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_tenant_directory_does_not_stop_the_other_tenants() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Tenant directories that cannot be listed whoever runs the test: a
    // link to itself and a link to nothing.
    symlink("aaa", root.join("aaa")).unwrap();
    symlink("missing", root.join("bbb")).unwrap();
    // A directory without permissions, unreadable unless running as root.
    let locked = plugin_dir(root, "ccc", "version:locked");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let locked_fails = std::fs::read_dir(&locked).is_err();
    // A tenant directory that is a link to a directory elsewhere.
    let elsewhere = tempfile::tempdir().unwrap();
    plugin_dir(elsewhere.path(), "linked", "version:linked");
    symlink(elsewhere.path().join("linked"), root.join("lnk")).unwrap();
    plugin_dir(root, "zzz", "version:z");

    let watch = watch_fast(&rt, root).await;
    let loaded: Vec<String> = rt.list().iter().map(|s| s.current.tenant.clone()).collect();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut want = vec!["lnk".to_owned(), "zzz".to_owned()];
    if !locked_fails {
        eprintln!("running as root: the mode-000 tenant directory is readable and loads");
        want.insert(0, "ccc".to_owned());
    }
    assert_eq!(loaded, want, "refusals: {:?}", rt.refusals());
    assert_eq!(label_now(&rt, "zzz").await, Ok("z".to_owned()));
    assert_eq!(label_now(&rt, "lnk").await, Ok("linked".to_owned()));

    // Later scans go on past the broken tenants: a new tenant loads.
    plugin_dir(root, "mmm", "version:m");
    until("the new tenant loaded", &rt, || {
        rt.info("mmm", "items")
            .map_err(|e| format!("{}; scans: {}", e.chain(), watch.scans()))
    })
    .await;
    assert_eq!(label_now(&rt, "mmm").await, Ok("m".to_owned()));
    assert!(rt.refusals().is_empty(), "{:?}", rt.refusals());
}

/// Applies `change`, then waits until batches map with `label`.
async fn wait_for(rt: &PluginRuntime, label: &str, change: impl FnOnce()) {
    change();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let batch = rt
            .map_batch("acme", "items", "items", &items(1))
            .await
            .unwrap();
        if label_of(&batch)[0] == label {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never swapped to {label}; refusals: {:?}",
            rt.refusals()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_str().unwrap()
    ));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decimals_keep_every_digit_across_the_boundary() {
    let rt = runtime();
    rt.load("acme", "items", component("misbehave"), None)
        .await
        .unwrap();
    let sample = Sample::from_json(
        "inline",
        r#"[{"id": 1, "amount": 12345678901234567890.123456789},
            {"id": 2, "amount": -98765432109876543210.987654321},
            {"id": 3, "amount": "0.000000001"},
            {"id": 4, "amount": 1.25E3},
            {"id": 5, "amount": 1.0000000001}]"#,
    )
    .unwrap();
    let Sample::Records(records) = sample else {
        panic!("array sample")
    };
    let batch = rt
        .map_batch("acme", "items", "items", &records)
        .await
        .unwrap();
    let amounts: Vec<String> = batch
        .rows
        .iter()
        .map(|r| match &r.values[2] {
            Value::Decimal(d) => d.to_string(),
            other => panic!("not a decimal: {other:?}"),
        })
        .collect();
    assert_eq!(
        amounts,
        vec![
            "12345678901234567890.123456789",
            "-98765432109876543210.987654321",
            "0.000000001",
            "1250.000000000",
        ]
    );
    // Ten decimal places do not fit decimal(38,9): that record is rejected.
    assert_eq!(batch.rejects.len(), 1, "{:?}", batch.rejects);
    assert_eq!(batch.rejects[0].index, 4);
    assert_eq!(batch.rejects[0].field.as_deref(), Some("amount"));
    let json = serde_json::to_string(&batch.rows[0].values[2].to_plain_json()).unwrap();
    assert_eq!(json, "\"12345678901234567890.123456789\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_see_only_the_batch_tenants_reference_data() {
    let rt = runtime();
    let misbehave = component("misbehave");
    for tenant in ["acme", "globex", "initech"] {
        rt.load(tenant, "items", misbehave.clone(), None)
            .await
            .unwrap();
    }
    let mut names = BTreeMap::new();
    for tenant in ["acme", "globex", "initech"] {
        let batch = rt
            .map_batch(tenant, "items", "items", &items(1))
            .await
            .unwrap();
        names.insert(tenant, batch.rows[0].values[3].clone());
    }
    assert_eq!(names["acme"], Value::Text("Acme Sales".into()));
    assert_eq!(names["globex"], Value::Text("Globex R&D".into()));
    // initech has no cost-centers dataset: no description, no access to others'.
    assert_eq!(names["initech"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gl_journal_lines_splits_segments_and_looks_up_descriptions() {
    let rt = runtime();
    let info = rt
        .load("acme", "gl", component("gl-journal-lines"), None)
        .await
        .unwrap();
    assert_eq!(
        info.resources,
        vec!["journalBatches".to_owned(), "invoices".to_owned()]
    );
    assert_eq!(info.schemas["invoices"].columns.len(), 12);
    let batches = vec![
        // REST framework v3+: children as {"items": [...]}
        r#"{"JeBatchId": 8537967, "BatchName": "Manual 8537967", "DefaultPeriodName": "May-24", "Status": "P",
            "LastUpdateDate": "2024-05-03T08:15:30.250+00:00",
            "journalHeaders": {"items": [{"JeHeaderId": 77, "JournalName": "Accrual", "LedgerName": "US Primary",
              "CurrencyCode": "USD", "DefaultEffectiveDate": "2024-05-02",
              "journalLines": {"items": [
                {"JeLineNumber": 1, "AccountCombination": "101-110-4010-0000", "EnteredCr": 1250.00, "AccountedCr": 1250.00, "Description": "Revenue"},
                {"JeLineNumber": 2, "AccountCombination": "101-110-1110-0000", "EnteredDr": 1250.00, "AccountedDr": 1250.00}
              ], "count": 2}}]}}"#
            .to_owned(),
        // Plain arrays, and a line whose combination has three segments.
        r#"{"JeBatchId": 8537968, "LastUpdateDate": "2024-05-03T08:16:00Z",
            "journalHeaders": [{"JeHeaderId": 78, "PeriodName": "Jun-24",
              "journalLines": [{"JeLineNumber": 1, "AccountCombination": "101-110-4010"}]}]}"#
            .to_owned(),
        r#"{"JeBatchId": 8537969, "LastUpdateDate": "2024-05-03T08:16:00Z"}"#.to_owned(),
    ];
    let out = rt
        .map_batch("acme", "gl", "journalBatches", &batches)
        .await
        .unwrap();
    assert_eq!(out.rows.len(), 2, "rejects: {:?}", out.rejects);
    let schema = &info.schemas["journalBatches"];
    let col = |name: &str| schema.columns.iter().position(|c| c.name == name).unwrap();
    let first = &out.rows[0].values;
    assert_eq!(first[col("Batch ID")], Value::Integer(8537967));
    assert_eq!(first[col("Period")], Value::Text("May-24".into()));
    assert_eq!(first[col("Company")], Value::Text("101".into()));
    assert_eq!(
        first[col("Company Name")],
        Value::Text("US Operations".into())
    );
    assert_eq!(
        first[col("Cost Center Name")],
        Value::Text("Acme Sales".into())
    );
    assert_eq!(
        first[col("Account Name")],
        Value::Text("Product Revenue".into())
    );
    assert_eq!(first[col("Sub-account")], Value::Text("0000".into()));
    assert_eq!(
        first[col("Entered Cr")],
        Value::Decimal(Decimal::new(125000, 2))
    );
    assert_eq!(first[col("Entered Dr")], Value::Null);
    assert_eq!(first[col("Currency")], Value::Text("USD".into()));
    assert_eq!(
        out.rows[1].values[col("Account Name")],
        Value::Text("Cash".into())
    );
    let rejects: Vec<(u32, Option<&str>)> = out
        .rejects
        .iter()
        .map(|r| (r.index, r.field.as_deref()))
        .collect();
    assert_eq!(
        rejects,
        vec![(1, Some("AccountCombination")), (2, Some("journalHeaders"))]
    );

    let invoices = rt
        .map_batch("acme", "gl", "invoices", &[INVOICE.to_owned()])
        .await
        .unwrap();
    let row = &invoices.rows[0].values;
    assert_eq!(row[0], Value::Integer(300100412233001));
    assert_eq!(row[2], Value::Decimal(Decimal::new(125000, 2)));
    assert_eq!(row[3], Value::Decimal(Decimal::new(25010, 2)));
    assert_eq!(row[6], Value::Null);
    assert_eq!(row[10], Value::Boolean(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compile_cache_survives_restarts_and_bad_files() {
    init_tracing();
    let cache = tempfile::tempdir().unwrap();
    let wasm = component("gl-journal-lines");
    let config = || RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    let first = PluginRuntime::new(config()).unwrap();
    let info = first.load("acme", "gl", wasm.clone(), None).await.unwrap();
    assert!(
        matches!(info.compile, CompileSource::Compiled { .. }),
        "{:?}",
        info.compile
    );
    let second = PluginRuntime::new(config()).unwrap();
    let info = second.load("acme", "gl", wasm.clone(), None).await.unwrap();
    assert!(
        matches!(info.compile, CompileSource::DiskCache { .. }),
        "{:?}",
        info.compile
    );
    let out = second
        .map_batch("acme", "gl", "invoices", &[INVOICE.to_owned()])
        .await
        .unwrap();
    assert_eq!(out.rows.len(), 1, "rejects: {:?}", out.rejects);
    // Corrupt every cached file: the next runtime compiles again.
    for entry in walk(cache.path()) {
        std::fs::write(&entry, b"garbage").unwrap();
    }
    let third = PluginRuntime::new(config()).unwrap();
    let info = third.load("acme", "gl", wasm, None).await.unwrap();
    assert!(
        matches!(info.compile, CompileSource::Compiled { .. }),
        "{:?}",
        info.compile
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
