//! Hyper: hyperd lifecycle, writing `.hyper` files, reading them back
//! through Tableau's own Python Hyper API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mlc_hyper::{HyperError, Hyperd, HyperdConfig};

async fn start_hyperd(log_dir: &Path) -> Hyperd {
    crate::common::init_tracing();
    Hyperd::start(HyperdConfig {
        log_dir: log_dir.to_path_buf(),
        ..HyperdConfig::default()
    })
    .await
    .unwrap_or_else(|e| panic!("hyperd did not start: {e}"))
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[tokio::test]
async fn hyperd_starts_answers_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let hyperd = start_hyperd(dir.path()).await;
    assert!(hyperd.endpoint().ip().is_loopback());
    let client = hyperd.connect().await.unwrap();
    let rows = client.simple_query("SELECT 41 + 1").await.unwrap();
    let answer = rows
        .iter()
        .find_map(|m| match m {
            mlc_hyper::tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap();
    assert_eq!(answer, "42");
    assert!(
        dir.path().join("hyperd.log").exists(),
        "hyperd logs into its own log dir"
    );
    let pid = hyperd.pid().await.unwrap();
    hyperd.shutdown().await.unwrap();
    assert!(
        !process_alive(pid),
        "hyperd {pid} still runs after shutdown"
    );
    assert!(matches!(hyperd.connect().await, Err(HyperError::Stopped)));
}

#[tokio::test]
async fn hyperd_killed_is_restarted_on_next_use() {
    let dir = tempfile::tempdir().unwrap();
    let hyperd = start_hyperd(dir.path()).await;
    let pid = hyperd.pid().await.unwrap();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..200 {
        if !process_alive(pid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let client = hyperd.connect().await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    assert_eq!(hyperd.restarts(), 1);
    let new_pid = hyperd.pid().await.unwrap();
    assert_ne!(new_pid, pid);
    drop(client);
    drop(hyperd);
    // Drop sends SIGTERM and leaves a reaper task: the process must go.
    for _ in 0..500 {
        if !process_alive(new_pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("hyperd {new_pid} still runs 10 s after Hyperd was dropped");
}

#[tokio::test]
async fn hyperd_missing_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = PathBuf::from("/nonexistent/bin/hyperd");
    let err = Hyperd::start(HyperdConfig {
        binary: Some(missing),
        log_dir: dir.path().to_path_buf(),
        ..HyperdConfig::default()
    })
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, HyperError::HyperdNotFound { .. }), "{text}");
    assert!(text.contains("/nonexistent/bin/hyperd"), "{text}");
    assert!(
        text.contains("python3 -m venv .venv && .venv/bin/pip install tableauhyperapi"),
        "{text}"
    );
}
