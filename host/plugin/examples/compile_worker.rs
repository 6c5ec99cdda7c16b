//! What the out-of-process compile worker costs a load: a cold compile in
//! process, a cold compile through the worker, and a load from the disk
//! cache (which starts no worker), each timed around `load_blocking` for
//! the staged guests, median of a few runs.
//!
//! ```text
//! cargo xtask build-plugins
//! ML_CONNECTOR_PLUGINS_BUILT=<target>/plugins cargo run --release -p mlc-plugin --example compile_worker
//! ```
//!
//! This example serves as its own worker (`serve_if_worker`), as
//! `ml-connector` does.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mlc_plugin::{
    CompileConfig, CompileMode, CompileSource, LoadOptions, PluginRuntime, RuntimeConfig,
};

const RUNS: usize = 5;

fn main() -> anyhow::Result<()> {
    mlc_plugin::serve_if_worker();
    let dir = std::env::var_os("ML_CONNECTOR_PLUGINS_BUILT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/plugins"));
    println!(
        "| component | size | in process, cold: compile / whole load | worker, cold: compile / whole load | disk cache: load / whole load |"
    );
    println!("|---|---|---|---|---|");
    for name in ["gl-journal-lines", "misbehave"] {
        let wasm = std::fs::read(dir.join(format!("{name}.wasm")))?;
        let mut in_process = Vec::new();
        let mut worker = Vec::new();
        let mut cached = Vec::new();
        for _ in 0..RUNS {
            in_process.push(time_load(&wasm, CompileMode::InProcess, None)?);
            let cache = tempfile::tempdir()?;
            let path = Some(cache.path().to_path_buf());
            worker.push(time_load(&wasm, CompileMode::default(), path.clone())?);
            cached.push(time_load(&wasm, CompileMode::default(), path)?);
        }
        println!(
            "| {name} | {} KiB | {} | {} | {} |",
            wasm.len() / 1024,
            pair(in_process),
            pair(worker),
            pair(cached),
        );
    }
    Ok(())
}

/// Builds a fresh runtime and times one load: the compile (or cache load)
/// as the runtime reports it, and the whole load with validation.
fn time_load(
    wasm: &[u8],
    mode: CompileMode,
    cache_dir: Option<PathBuf>,
) -> anyhow::Result<(Duration, Duration)> {
    let runtime = PluginRuntime::new(RuntimeConfig {
        cache_dir,
        compile: CompileConfig {
            mode,
            ..CompileConfig::default()
        },
        max_concurrent_calls: 2,
        ..RuntimeConfig::default()
    })?;
    let started = Instant::now();
    let info = runtime.load_blocking("acme", "items", wasm, LoadOptions::default())?;
    let whole = started.elapsed();
    let compile = match info.compile {
        CompileSource::Compiled { took } | CompileSource::DiskCache { took } => took,
        CompileSource::Memory => Duration::ZERO,
    };
    Ok((compile, whole))
}

/// Medians of the compile part and of the whole load.
fn pair(times: Vec<(Duration, Duration)>) -> String {
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let compile = median(times.iter().map(|t| t.0).collect());
    let whole = median(times.iter().map(|t| t.1).collect());
    format!("{} / {}", ms(compile), ms(whole))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
