//! `ml-connector demo`, the README's first command, run as a user runs it:
//! the real binary, the sandboxes, hyperd and the staged `scripted`
//! component (`cargo xtask build-plugins`; `cargo xtask test` points
//! `ML_CONNECTOR_PLUGINS_BUILT` at them and `ML_CONNECTOR_PYTHON` at the virtual
//! environment that ships hyperd).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|e| panic!("workspace root: {e}"))
}

fn scripted_wasm() -> PathBuf {
    let dir = std::env::var_os("ML_CONNECTOR_PLUGINS_BUILT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/plugins"));
    let path = dir.join("scripted.wasm");
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask build-plugins` (or set ML_CONNECTOR_PLUGINS_BUILT)",
        path.display()
    );
    path
}

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mlc-cli-{name}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

fn demo(work: &Path, mappings: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ml-connector"))
        .current_dir(workspace())
        .args(["--output", "json", "demo", "--work-dir"])
        .arg(work)
        .arg("--mappings")
        .arg(mappings)
        .arg("--scripted")
        .arg(scripted_wasm())
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("running ml-connector demo: {e}"))
}

fn explain(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn demo_publishes_every_pipeline_then_upserts_then_sends_nothing() {
    let work = scratch("demo");
    let mappings = workspace().join("mappings/demo");
    let out = demo(
        &work,
        &mappings,
        &[
            "--once",
            "--invoices",
            "80",
            "--updates",
            "6",
            "--inserts",
            "3",
        ],
    );
    assert!(out.status.success(), "{}", explain(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", explain(&out)));
    assert_eq!(doc["oracle_invoices"], 83, "{doc:#}");
    let pipelines = doc["pipelines"]
        .as_array()
        .unwrap_or_else(|| panic!("no pipelines: {doc:#}"));
    let names: Vec<&str> = pipelines
        .iter()
        .filter_map(|p| p["pipeline"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "account-combinations-lov",
            "invoice-lines",
            "invoices",
            "journal-batches",
            "payables-payments",
            "purchase-orders",
            "receivables-invoices",
            "suppliers"
        ],
        "{doc:#}"
    );
    for p in pipelines {
        let cycles = p["cycles"]
            .as_array()
            .unwrap_or_else(|| panic!("no cycles: {p:#}"));
        assert_eq!(cycles.len(), 3, "{p:#}");
        assert_eq!(cycles[0]["action"]["type"], "published", "{p:#}");
        // Nothing is sent in the quiet cycle. (A resource read whole every
        // cycle finds every version unchanged in the store.)
        assert_eq!(cycles[2]["action"]["type"], "nothing-new", "{p:#}");
        for c in cycles {
            assert_eq!(c["rejected_by_mapping"], 0, "{p:#}");
            assert_eq!(c["rejected_by_writer"], 0, "{p:#}");
        }
        assert!(
            p["rows_in_tableau"].as_u64().is_some_and(|n| n > 0),
            "{p:#}"
        );
    }
    let invoices = pipelines
        .iter()
        .find(|p| p["pipeline"] == "invoices")
        .unwrap_or_else(|| panic!("no invoices pipeline: {doc:#}"));
    assert_eq!(invoices["rows_in_tableau"], 83, "{invoices:#}");
    // 6 updates and 3 inserts may touch the same invoice twice, never more
    // than 9 invoices.
    let upserted = &invoices["cycles"][1];
    assert_eq!(upserted["action"]["type"], "upserted", "{upserted:#}");
    let rows = upserted["rows_written"].as_u64().unwrap_or(0);
    assert!((3..=9).contains(&rows), "{upserted:#}");
    // The tenant went through a data directory and the mappings directory.
    for file in [
        "data/runtime.redb",
        "data/tenants/demo.redb",
        "mappings/demo/invoices.toml",
        "mappings/demo/samples/invoices.json",
    ] {
        let path = work.join(file);
        assert!(path.is_file(), "{} was not written", path.display());
    }
    std::fs::remove_dir_all(&work).ok();
}

#[test]
fn demo_stops_with_the_reason_when_a_mapping_is_refused() {
    let work = scratch("demo-refused");
    let mappings = work.join("mappings");
    std::fs::create_dir_all(mappings.join("samples")).unwrap_or_else(|e| panic!("{e}"));
    let good = workspace().join("mappings/demo/suppliers.toml");
    std::fs::copy(&good, mappings.join("suppliers.toml")).unwrap_or_else(|e| panic!("{e}"));
    // A column of an unknown type.
    std::fs::write(
        mappings.join("broken.toml"),
        "resource = \"invoices\"\n\n[[column]]\nname = \"Invoice Id\"\ntype = \"integr\"\nsource = \"InvoiceId\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = demo(
        &work.join("run"),
        &mappings,
        &["--once", "--invoices", "10"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A refused mapping is a validation failure (exit 3), reported as one
    // JSON object under --output json.
    assert_eq!(out.status.code(), Some(3), "{}", explain(&out));
    let error: serde_json::Value = stderr
        .lines()
        .find(|l| l.starts_with("{\"error\""))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON error object: {}", explain(&out)));
    assert_eq!(error["error"]["code"], "mapping_refused", "{error:#}");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    // The staged copy under the run's mappings directory is named, with the
    // line, column and column name of the mistake.
    let staged = work.join("run/mappings/demo/broken.toml");
    assert!(
        message.contains(&format!(
            "pipeline broken: mapping {} was refused",
            staged.display()
        )) && message.contains(&format!(
            "{}:5:8: column \"Invoice Id\": unknown type \"integr\"",
            staged.display()
        )),
        "{}",
        explain(&out)
    );
    assert!(out.stdout.is_empty(), "{}", explain(&out));
    std::fs::remove_dir_all(&work).ok();
}
