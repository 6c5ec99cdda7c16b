//! `ml-connector plugin new`: the scaffolded crate's own tests pass, it
//! builds for wasm32-wasip2 with its one command (`cargo wasm`), and the
//! component it builds maps its sample through `ml-connector plugin test`.
//! Built in the shared target directory so that the SDK's dependencies are
//! compiled once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::explain;

/// The target directory this test was built in (CARGO_TARGET_TMPDIR is its
/// `tmp/`).
fn shared_target() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| support::workspace().join("target"))
}

fn cargo(dir: &Path, args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(args)
        .arg("--offline")
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", shared_target())
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap_or_else(|e| panic!("running cargo {args:?}: {e}"));
    assert!(
        out.status.success(),
        "cargo {args:?} in the scaffolded crate: {}",
        explain(&out)
    );
}

#[test]
fn a_scaffolded_plugin_tests_builds_and_maps_its_sample() {
    let scratch = tempfile::tempdir().expect("scratch");
    let dir = scratch.path().join("scaffold-check");
    let bin = env!("CARGO_BIN_EXE_ml-connector");
    let out = Command::new(bin)
        .args([
            "--output",
            "json",
            "plugin",
            "new",
            "scaffold-check",
            "--dir",
        ])
        .arg(&dir)
        .env_remove("ML_CONNECTOR_OUTPUT")
        .output()
        .expect("running plugin new");
    assert!(out.status.success(), "plugin new: {}", explain(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("plugin new --output json ({e}): {}", explain(&out)));
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "samples/invoices.json",
        ".cargo/config.toml",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing: {doc:#}");
    }

    // A name that cannot be a crate: a validation failure (exit 3).
    let bad = Command::new(bin)
        .args(["plugin", "new", "Not_A_Crate", "--dir"])
        .arg(scratch.path().join("bad"))
        .output()
        .expect("running plugin new");
    assert_eq!(bad.status.code(), Some(3), "{}", explain(&bad));
    assert!(!scratch.path().join("bad").exists(), "{}", explain(&bad));

    // A second time into the same directory: refused, nothing overwritten.
    let again = Command::new(bin)
        .args(["plugin", "new", "scaffold-check", "--dir"])
        .arg(&dir)
        .output()
        .expect("running plugin new");
    assert!(!again.status.success(), "{}", explain(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is not empty"),
        "{}",
        explain(&again)
    );

    cargo(&dir, &["test"]);
    cargo(&dir, &["wasm"]);
    let wasm = shared_target().join("wasm32-wasip2/release/scaffold_check.wasm");
    assert!(wasm.is_file(), "`cargo wasm` built no {}", wasm.display());
    assert_eq!(
        doc["component"], "target/wasm32-wasip2/release/scaffold_check.wasm",
        "{doc:#}"
    );

    let out = Command::new(bin)
        .args(["--output", "json", "plugin", "test"])
        .arg(&wasm)
        .arg("--records")
        .arg(dir.join("samples/invoices.json"))
        .arg("--cache-dir")
        .arg(scratch.path().join("cache"))
        .env_remove("ML_CONNECTOR_OUTPUT")
        .output()
        .expect("running plugin test");
    assert!(out.status.success(), "plugin test: {}", explain(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ACME-2024-0042") && text.contains("ACME-2024-0043"),
        "both sample invoices mapped: {}",
        explain(&out)
    );
}
