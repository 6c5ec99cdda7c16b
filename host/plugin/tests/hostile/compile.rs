//! Compile bombs and other uploads the compile worker must survive.

use std::time::Duration;

use mlc_plugin::{
    CompileLimits, CompileMode, LoadOptions, PluginRuntime, RuntimeConfig, UploadLimits,
};

use crate::support::{Case, misbehave, options};

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
            ..CompileLimits::default()
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

#[test]
fn an_artifact_over_its_cap_is_not_read_back() {
    let mut case = Case::with_cache("artifact size", warm_cache(), |config| {
        config.compile.limits.max_artifact = 64 << 10;
    });
    // Compiles in well under the time limits, to far more than 64 KiB.
    case.refused(
        &compile_bomb(2, 20_000),
        LoadOptions::default(),
        "compile-limit",
        &["artifact-size", "65536 bytes"],
    );
    case.finish();
}
