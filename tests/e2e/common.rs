//! Helpers shared by every area's tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The Python interpreter of the test virtual environment (`.venv`, made by
/// `cargo xtask setup`), overridable with `ML_CONNECTOR_PYTHON`.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("ML_CONNECTOR_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = workspace_root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python test environment at {}: run `cargo xtask setup`",
        venv.display()
    );
    venv
}

/// Starts test logging once (RUST_LOG to tune).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}
