//! Components over an instance-shape limit, and samples over their caps.

use mlc_plugin::{LoadOptions, Sample, ShapeLimits};

use crate::support::{Case, misbehave, records};

/// A component of one core module with `fields` inside.
fn component_with(fields: &str) -> Vec<u8> {
    wat::parse_str(format!("(component (core module {fields}))")).expect("valid WAT")
}

/// Refuses `wasm` for the shape limit `limit`, with `actual` and `max` named.
fn shape_case(name: &'static str, wasm: &[u8], limit: &str, actual: u64, max: u64) {
    let mut case = Case::new(name);
    case.refused(
        wasm,
        LoadOptions::default(),
        "shape-limit",
        &[&format!("has {actual} {limit}, over the limit of {max}")],
    );
    case.finish();
}

#[test]
fn too_many_tables() {
    let wasm = component_with(&"(table 1 funcref)".repeat(17));
    shape_case(
        "tables",
        &wasm,
        "tables",
        17,
        ShapeLimits::DEFAULT_MAX_TABLES,
    );
}

#[test]
fn a_table_too_large() {
    let elements = ShapeLimits::DEFAULT_MAX_TABLE_ELEMENTS + 1;
    let wasm = component_with(&format!("(table {elements} funcref)"));
    shape_case(
        "table elements",
        &wasm,
        "table-elements",
        elements,
        ShapeLimits::DEFAULT_MAX_TABLE_ELEMENTS,
    );
}

#[test]
fn too_many_memories() {
    let wasm = component_with(&"(memory 1)".repeat(3));
    shape_case(
        "memories",
        &wasm,
        "memories",
        3,
        ShapeLimits::DEFAULT_MAX_MEMORIES,
    );
}

#[test]
fn too_many_globals() {
    let n = ShapeLimits::DEFAULT_MAX_GLOBALS + 1;
    let wasm = component_with(&"(global i32 (i32.const 0))".repeat(n as usize));
    shape_case(
        "globals",
        &wasm,
        "globals",
        n,
        ShapeLimits::DEFAULT_MAX_GLOBALS,
    );
}

#[test]
fn too_many_functions() {
    let n = ShapeLimits::DEFAULT_MAX_FUNCTIONS + 1;
    let wasm = component_with(&"(func)".repeat(n as usize));
    shape_case(
        "functions",
        &wasm,
        "functions",
        n,
        ShapeLimits::DEFAULT_MAX_FUNCTIONS,
    );
}

#[test]
fn too_much_data() {
    let n = ShapeLimits::DEFAULT_MAX_DATA_BYTES + 1;
    let wasm = component_with(&format!(
        "(memory 129) (data (i32.const 0) \"{}\")",
        "a".repeat(n as usize)
    ));
    shape_case(
        "data segments",
        &wasm,
        "data-bytes",
        n,
        ShapeLimits::DEFAULT_MAX_DATA_BYTES,
    );
}

#[test]
fn too_many_core_modules() {
    let n = ShapeLimits::DEFAULT_MAX_CORE_MODULES + 1;
    let wasm = wat::parse_str(format!(
        "(component {})",
        "(core module)".repeat(n as usize)
    ))
    .expect("valid WAT");
    shape_case(
        "core modules",
        &wasm,
        "core-modules",
        n,
        ShapeLimits::DEFAULT_MAX_CORE_MODULES,
    );
}

#[test]
fn too_many_core_instances() {
    let n = ShapeLimits::DEFAULT_MAX_CORE_INSTANCES + 1;
    let wasm = wat::parse_str(format!(
        "(component (core module $m) {})",
        "(core instance (instantiate $m))".repeat(n as usize)
    ))
    .expect("valid WAT");
    shape_case(
        "core instances",
        &wasm,
        "core-instances",
        n,
        ShapeLimits::DEFAULT_MAX_CORE_INSTANCES,
    );
}

#[test]
fn a_shape_limit_holds_for_wat_text_too() {
    // wasmtime compiles WAT text as well: text is no way around the check.
    let wat = format!("(component (core module {}))", "(memory 1)".repeat(3));
    shape_case(
        "shape of WAT text",
        wat.as_bytes(),
        "memories",
        3,
        ShapeLimits::DEFAULT_MAX_MEMORIES,
    );
}

#[test]
fn an_oversized_sample_is_refused_before_it_is_mapped() {
    let mut case = Case::with("oversized sample", |config| {
        config.uploads.max_sample_bytes = 1000;
    });
    let sample = Sample::Records(records(100));
    case.refused(
        &misbehave(),
        LoadOptions {
            config: Some("version:new".into()),
            sample: Some(sample),
            origin: None,
        },
        "too-large",
        &["the sample is 2", "over the limit of 1000 bytes"],
    );
    case.finish();
}

#[test]
fn a_sample_of_too_many_records_is_refused() {
    let mut case = Case::with("sample records", |config| {
        config.uploads.max_sample_records = 10;
    });
    case.refused(
        &misbehave(),
        LoadOptions {
            config: Some("version:new".into()),
            sample: Some(Sample::Records(records(11))),
            origin: None,
        },
        "too-large",
        &["the sample records is 11 records, over the limit of 10 records"],
    );
    case.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugins_directory_file_over_the_cap_is_refused_unread() {
    let case = Case::new("oversized file in the plugins directory");
    let dir = tempfile::tempdir().expect("a plugins directory");
    let tenant = dir.path().join("acme");
    std::fs::create_dir(&tenant).expect("a tenant directory");
    // 1 TiB, sparse: reading it would not end within the test.
    std::fs::File::create(tenant.join("items.wasm"))
        .and_then(|f| f.set_len(1 << 40))
        .expect("a sparse file");
    let watch = case
        .runtime
        .watch_with(
            dir.path(),
            mlc_plugin::WatchOptions {
                interval: std::time::Duration::from_millis(50),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("watching: {}", e.chain()));
    let started = std::time::Instant::now();
    let refusal = loop {
        let refusals = case.runtime.refusals();
        if let Some(r) = refusals.get(case.refusals_before) {
            break r.clone();
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "no refusal after 10 s: the watcher is reading the file"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(refusal.kind, "too-large", "{refusal:?}");
    assert!(
        refusal
            .reason
            .contains("the component is 1099511627776 bytes, over the limit of 16777216 bytes"),
        "{}",
        refusal.reason
    );
    // Refused once: not again at the next scans while unchanged.
    let scans = watch.scans();
    while watch.scans() < scans + 3 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(case.runtime.refusals().len(), case.refusals_before + 1);
    let current = case
        .runtime
        .info("acme", "items")
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_eq!(current.version, case.previous);
    drop(watch);
    tokio::task::block_in_place(|| case.finish());
}
