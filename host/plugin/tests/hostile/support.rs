//! The harness of the hostile suite: the staged guests, tenant
//! `bystander` mapping on its own thread, and [`Case`], which checks that a
//! refusal changed nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use mlc_plugin::{
    CompileConfig, CompileMode, LoadOptions, PluginError, PluginRuntime, RuntimeConfig,
};

/// A staged guest component by name.
pub(crate) fn component(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("ML_CONNECTOR_PLUGINS_BUILT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins"));
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "component {} missing ({e}): run `cargo xtask build-plugins` \
             (with CARGO_TARGET_DIR=<dir>, then set ML_CONNECTOR_PLUGINS_BUILT=<dir>/plugins)",
            path.display()
        )
    })
}

pub(crate) fn misbehave() -> Vec<u8> {
    component("misbehave")
}

pub(crate) fn options(config: &str) -> LoadOptions {
    LoadOptions {
        config: Some(config.into()),
        ..LoadOptions::default()
    }
}

pub(crate) fn records(n: usize) -> Vec<String> {
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
pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) runtime: PluginRuntime,
    cache: tempfile::TempDir,
    pub(crate) previous: mlc_plugin::VersionId,
    cached_before: Vec<PathBuf>,
    pub(crate) refusals_before: usize,
    bystander: Option<Bystander>,
}

impl Case {
    pub(crate) fn new(name: &'static str) -> Self {
        Self::with(name, |_| {})
    }

    pub(crate) fn with(name: &'static str, adjust: impl FnOnce(&mut RuntimeConfig)) -> Self {
        let cache = tempfile::tempdir().expect("a temporary cache directory");
        Self::with_cache(name, cache, adjust)
    }

    pub(crate) fn with_cache(
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
    pub(crate) fn refused(
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

    pub(crate) fn finish(mut self) {
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
