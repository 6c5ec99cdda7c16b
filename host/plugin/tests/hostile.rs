//! Hostile tenants against the plugin runtime (issue 12): every case hands
//! the runtime something crafted to hurt it (a compile bomb, a component
//! over a shape limit, a forbidden import, a guest that loops, traps,
//! bloats or lies) and asserts that
//!
//! - it is refused (or the batch fails) with a typed error: its `kind()`
//!   and the limit or cause named in its message;
//! - nothing changed: the tenant's previous version is still current,
//!   nothing new is in the compile cache, the refusal is recorded;
//! - another tenant, `bystander`, kept mapping in the same runtime on
//!   another thread all along, without a single failure.
//!
//! Needs the staged guests (`cargo xtask build-plugins`, then
//! `MLC_PLUGINS_BUILT=<target>/plugins`).

// Test helpers outside `#[test]` functions panic with the failure, on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use mlc_plugin::{
    CompileConfig, CompileLimits, CompileMode, LoadOptions, PluginError, PluginRuntime,
    RuntimeConfig, Sample, ShapeLimits, UploadLimits,
};

/// A staged guest component by name.
fn component(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("MLC_PLUGINS_BUILT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins"));
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "component {} missing ({e}): run `cargo xtask build-plugins` \
             (with CARGO_TARGET_DIR=<dir>, then set MLC_PLUGINS_BUILT=<dir>/plugins)",
            path.display()
        )
    })
}

fn misbehave() -> Vec<u8> {
    component("misbehave")
}

fn options(config: &str) -> LoadOptions {
    LoadOptions {
        config: Some(config.into()),
        ..LoadOptions::default()
    }
}

fn records(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!(r#"{{"id": {i}, "amount": {i}.25}}"#))
        .collect()
}

/// Tenant `bystander` mapping batches in a loop on its own thread.
struct Bystander {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    thread: Option<JoinHandle<Vec<String>>>,
}

impl Bystander {
    fn start(runtime: &PluginRuntime) -> Self {
        runtime
            .load_blocking("bystander", "items", &misbehave(), options("ok"))
            .unwrap_or_else(|e| panic!("loading the bystander: {}", e.chain()));
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (runtime, stop, ok) = (runtime.clone(), stop.clone(), ok.clone());
            std::thread::spawn(move || {
                let batch = records(20);
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match runtime.map_batch_blocking("bystander", "items", "items", &batch) {
                        Ok((mapped, _)) if mapped.rows.len() == 20 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok((mapped, _)) => failures.push(format!(
                            "{} rows, {} rejects",
                            mapped.rows.len(),
                            mapped.rejects.len()
                        )),
                        Err(e) => failures.push(e.chain()),
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                failures
            })
        };
        Self {
            stop,
            ok,
            thread: Some(thread),
        }
    }

    /// Stops the loop once it has mapped at least once more than `before`,
    /// and asserts it never failed.
    fn finish(mut self, case: &str) {
        let before = self.ok.load(Ordering::Relaxed);
        let waited = std::time::Instant::now();
        while self.ok.load(Ordering::Relaxed) <= before {
            assert!(
                waited.elapsed() < Duration::from_secs(30),
                "{case}: the bystander mapped nothing for 30 s after the case"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        self.stop.store(true, Ordering::Relaxed);
        let failures = self
            .thread
            .take()
            .map(|t| t.join().unwrap_or_else(|_| vec!["panicked".into()]))
            .unwrap_or_default();
        assert!(
            failures.is_empty(),
            "{case}: the bystander's batches failed meanwhile: {failures:?}"
        );
        assert!(
            self.ok.load(Ordering::Relaxed) >= 1,
            "{case}: the bystander never mapped"
        );
    }
}

/// A runtime with a compile cache, tenant `acme` holding a good version
/// of `items`, and a bystander mapping.
struct Case {
    name: &'static str,
    runtime: PluginRuntime,
    cache: tempfile::TempDir,
    previous: mlc_plugin::VersionId,
    cached_before: Vec<PathBuf>,
    refusals_before: usize,
    bystander: Option<Bystander>,
}

impl Case {
    fn new(name: &'static str) -> Self {
        Self::with(name, |_| {})
    }

    fn with(name: &'static str, adjust: impl FnOnce(&mut RuntimeConfig)) -> Self {
        let cache = tempfile::tempdir().expect("a temporary cache directory");
        Self::with_cache(name, cache, adjust)
    }

    fn with_cache(
        name: &'static str,
        cache: tempfile::TempDir,
        adjust: impl FnOnce(&mut RuntimeConfig),
    ) -> Self {
        let mut config = RuntimeConfig {
            cache_dir: Some(cache.path().to_path_buf()),
            compile: CompileConfig {
                mode: CompileMode::Worker {
                    program: Some(env!("CARGO_BIN_EXE_mlc-plugin-compile").into()),
                },
                ..CompileConfig::default()
            },
            max_concurrent_calls: 4,
            ..RuntimeConfig::default()
        };
        adjust(&mut config);
        let runtime = PluginRuntime::new(config)
            .unwrap_or_else(|e| panic!("{name}: building the runtime: {}", e.chain()));
        let previous = runtime
            .load_blocking("acme", "items", &misbehave(), options("version:previous"))
            .unwrap_or_else(|e| panic!("{name}: loading acme's good version: {}", e.chain()))
            .version;
        let bystander = Bystander::start(&runtime);
        let cached_before = files_under(cache.path());
        let refusals_before = runtime.refusals().len();
        Self {
            name,
            runtime,
            cache,
            previous,
            cached_before,
            refusals_before,
            bystander: Some(bystander),
        }
    }

    /// Loads `wasm` as acme's `items` and asserts it is refused with
    /// `kind`, its message containing every one of `needles`, and that
    /// nothing changed.
    fn refused(
        &mut self,
        wasm: &[u8],
        options: LoadOptions,
        kind: &str,
        needles: &[&str],
    ) -> PluginError {
        let err = match self.runtime.load_blocking("acme", "items", wasm, options) {
            Ok(info) => panic!(
                "{}: loaded as version {} instead of refused",
                self.name, info.version
            ),
            Err(err) => err,
        };
        eprintln!("{}: refused: {}", self.name, err.chain());
        self.assert_error(&err, kind, needles);
        self.assert_unchanged(kind);
        err
    }

    fn assert_error(&self, err: &PluginError, kind: &str, needles: &[&str]) {
        let text = err.chain();
        assert_eq!(err.kind(), kind, "{}: wrong kind: {text}", self.name);
        for needle in needles {
            assert!(
                text.contains(needle),
                "{}: the error does not say {needle:?}: {text}",
                self.name
            );
        }
    }

    /// The previous version is current, the cache holds nothing new, the
    /// refusal of `kind` is recorded.
    fn assert_unchanged(&self, kind: &str) {
        let current = self
            .runtime
            .info("acme", "items")
            .unwrap_or_else(|e| panic!("{}: acme lost its plugin: {}", self.name, e.chain()));
        assert_eq!(
            current.version, self.previous,
            "{}: acme's current version changed",
            self.name
        );
        let cached = files_under(self.cache.path());
        assert_eq!(
            cached, self.cached_before,
            "{}: the compile cache changed for a refused upload",
            self.name
        );
        let refusals = self.runtime.refusals();
        assert_eq!(
            refusals.len(),
            self.refusals_before + 1,
            "{}: expected exactly one new refusal: {refusals:?}",
            self.name
        );
        let last = refusals.last().map(|r| r.kind);
        assert_eq!(last, Some(kind), "{}: the refusal recorded", self.name);
        // acme's previous version still maps.
        let (batch, version) = self
            .runtime
            .map_batch_blocking("acme", "items", "items", &records(3))
            .unwrap_or_else(|e| {
                panic!(
                    "{}: acme's previous version fails: {}",
                    self.name,
                    e.chain()
                )
            });
        assert_eq!(
            (batch.rows.len(), &version),
            (3, &self.previous),
            "{}",
            self.name
        );
    }

    fn finish(mut self) {
        if let Some(bystander) = self.bystander.take() {
            bystander.finish(self.name);
        }
    }
}

/// Every file under `dir`, recursively, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("a readable cache directory") {
            let path = entry.expect("a cache entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A component Cranelift takes long to compile: `functions` functions each
/// keeping `values` operands live before adding them up (register
/// pressure), encoded as binary to stay under the component cap.
fn compile_bomb(functions: usize, values: usize) -> Vec<u8> {
    let mut body = String::with_capacity(values * 20);
    for _ in 0..values {
        body.push_str("local.get 0\n");
    }
    for _ in 1..values {
        body.push_str("i32.add\n");
    }
    let mut module = String::from("(component (core module\n");
    for _ in 0..functions {
        module.push_str("(func (param i32) (result i32)\n");
        module.push_str(&body);
        module.push_str(")\n");
    }
    module.push_str("))");
    wat::parse_str(&module).expect("the generated compile bomb is valid WAT")
}

/// A compile cache holding `misbehave`, filled by a runtime with its
/// worker: the cases that starve the worker load their good versions from
/// it, so only the bomb meets the limits.
fn warm_cache() -> tempfile::TempDir {
    let cache = tempfile::tempdir().expect("a temporary cache directory");
    let warm = PluginRuntime::new(RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    })
    .unwrap_or_else(|e| panic!("{}", e.chain()));
    warm.load_blocking("acme", "items", &misbehave(), options("ok"))
        .unwrap_or_else(|e| panic!("warming the cache: {}", e.chain()));
    cache
}

fn compile_limits(
    cpu_seconds: u64,
    address_space: u64,
    wall_clock: Duration,
) -> impl FnOnce(&mut RuntimeConfig) {
    move |config| {
        config.compile.limits = CompileLimits {
            cpu_seconds,
            address_space,
            wall_clock,
        }
    }
}

#[test]
fn compile_bomb_hits_the_cpu_limit() {
    let mut case = Case::with_cache(
        "compile bomb / cpu",
        warm_cache(),
        compile_limits(
            1,
            CompileLimits::DEFAULT_ADDRESS_SPACE,
            Duration::from_secs(120),
        ),
    );
    let bomb = compile_bomb(30, 100_000);
    assert!(
        bomb.len() < UploadLimits::DEFAULT_MAX_COMPONENT,
        "{}",
        bomb.len()
    );
    case.refused(
        &bomb,
        LoadOptions::default(),
        "compile-limit",
        &["cpu-seconds", "1 s"],
    );
    case.finish();
}

#[test]
fn compile_bomb_hits_the_wall_clock_limit() {
    let mut case = Case::with_cache(
        "compile bomb / wall clock",
        warm_cache(),
        compile_limits(
            600,
            CompileLimits::DEFAULT_ADDRESS_SPACE,
            Duration::from_millis(500),
        ),
    );
    case.refused(
        &compile_bomb(30, 100_000),
        LoadOptions::default(),
        "compile-limit",
        &["wall-clock", "500ms"],
    );
    case.finish();
}

#[test]
fn compile_bomb_hits_the_address_space_limit() {
    let mut case = Case::with_cache(
        "compile bomb / address space",
        warm_cache(),
        compile_limits(600, 256 << 20, Duration::from_secs(120)),
    );
    case.refused(
        &compile_bomb(30, 100_000),
        LoadOptions::default(),
        "compile-limit",
        &["address-space", &format!("{} bytes", 256u64 << 20)],
    );
    case.finish();
}

#[test]
fn a_missing_compile_worker_refuses_the_upload_and_never_compiles_in_process() {
    // The good versions come from the disk cache: a cached load needs no
    // worker at all.
    let mut case = Case::with_cache("missing worker", warm_cache(), |config| {
        config.compile.mode = CompileMode::Worker {
            program: Some("/nonexistent/mlc-plugin-compile".into()),
        };
    });
    case.refused(
        br#"(component (core module (func (export "f"))))"#,
        LoadOptions::default(),
        "compile-worker",
        &["/nonexistent/mlc-plugin-compile"],
    );
    case.finish();
}

#[test]
fn an_oversized_component_is_refused_before_compiling() {
    let mut case = Case::new("oversized component");
    let big = vec![0u8; UploadLimits::DEFAULT_MAX_COMPONENT + 1];
    case.refused(
        &big,
        LoadOptions::default(),
        "too-large",
        &["component", "over the limit of 16777216 bytes"],
    );
    case.finish();
}

#[test]
fn garbage_is_a_compile_error_from_the_worker() {
    let mut case = Case::new("garbage");
    case.refused(
        b"\0asm\x0d\0\x01\0garbage",
        LoadOptions::default(),
        "compile",
        &["does not compile"],
    );
    case.finish();
}

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

/// Tenant `hog` runs `threads` looping calls (each stopped by its 1 s
/// deadline, twice per thread) while tenant `acme` maps small batches;
/// returns the slowest `acme` call and how many hog calls failed with the
/// deadline.
fn hog_and_measure(case: &Case, threads: usize) -> (Duration, usize) {
    let runtime = &case.runtime;
    runtime
        .load_blocking("hog", "items", &misbehave(), options("loop"))
        .unwrap_or_else(|e| panic!("{}: loading the hog: {}", case.name, e.chain()));
    runtime
        .set_tenant_limits(
            "hog",
            mlc_plugin::PluginLimits {
                deadline: Duration::from_secs(1),
                ..mlc_plugin::PluginLimits::default()
            },
        )
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    let hogs: Vec<JoinHandle<usize>> = (0..threads)
        .map(|_| {
            let runtime = runtime.clone();
            std::thread::spawn(move || {
                (0..2)
                    .filter(|_| {
                        matches!(
                            runtime.map_batch_blocking("hog", "items", "items", &records(1)),
                            Err(PluginError::Deadline { .. })
                        )
                    })
                    .count()
            })
        })
        .collect();
    // Let the hogs take their permits.
    std::thread::sleep(Duration::from_millis(200));
    let mut slowest = Duration::ZERO;
    while hogs.iter().any(|h| !h.is_finished()) {
        let started = std::time::Instant::now();
        let (batch, _) = runtime
            .map_batch_blocking("acme", "items", "items", &records(5))
            .unwrap_or_else(|e| panic!("{}: acme's call failed: {}", case.name, e.chain()));
        assert_eq!(batch.rows.len(), 5, "{}", case.name);
        slowest = slowest.max(started.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadlines = hogs.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    (slowest, deadlines)
}

#[test]
fn a_tenant_saturating_its_share_does_not_stall_the_others() {
    // 4 permits: the hog may hold 2; acme and the bystander share the rest.
    let case = Case::new("fair share");
    let (slowest, deadlines) = hog_and_measure(&case, 8);
    assert_eq!(deadlines, 16, "every hog call ends at its deadline");
    assert!(
        slowest < Duration::from_millis(500),
        "an acme call waited {slowest:?} while the hog looped (1 s deadlines): the hog took the pool"
    );
    eprintln!("fair share: slowest acme call {slowest:?} while the hog looped");
    case.finish();
}

#[test]
fn without_a_share_the_hog_would_take_the_pool() {
    // The control: with the share set to the whole pool, acme's calls wait
    // for the hog's deadlines, which is what the share prevents.
    let case = Case::with("no share (control)", |config| {
        config.max_calls_per_tenant = Some(4);
    });
    let (slowest, _) = hog_and_measure(&case, 8);
    eprintln!("no share: slowest acme call {slowest:?} while the hog looped");
    assert!(
        slowest >= Duration::from_millis(500),
        "acme never waited ({slowest:?}): this test could not tell a fair pool from an unfair one"
    );
    case.finish();
}
