//! `ml-connector demo`'s live mode, run as a user runs it (the real binary,
//! the sandboxes, hyperd, `serve` and its status page over loopback), for a
//! bounded time: data synced, and new Oracle changes reached Tableau while
//! it ran; Ctrl-C stops it cleanly. The schedules run 10× faster (hidden
//! `--time-scale`), so a one-minute `every` polls every 6 s.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::serve::free_port;
use support::{scripted_wasm, workspace};

/// A running live demo: its stderr lines as they come.
struct Live {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    url: String,
    work: tempfile::TempDir,
}

impl Live {
    fn start(extra: &[&str]) -> Self {
        let work = tempfile::tempdir().expect("a work dir");
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ml-connector"))
            .current_dir(workspace())
            .args(["--output", "json", "demo", "--time-scale", "10"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--work-dir")
            .arg(work.path())
            .arg("--scripted")
            .arg(scripted_wasm())
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting ml-connector demo");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let pipe = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            stderr,
            url: format!("http://127.0.0.1:{port}"),
            work,
        }
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits for a stderr line containing `text`; panics with the log.
    fn wait_for_line(&mut self, text: &str, timeout: Duration) -> String {
        let until = Instant::now() + timeout;
        loop {
            if let Some(l) = self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(text))
            {
                return l.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the demo exited ({status}) before printing {text:?}:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < until,
                "no {text:?} within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the exit; its status and stdout.
    fn wait(&mut self, timeout: Duration) -> (std::process::ExitStatus, String, String) {
        let until = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the demo") {
                let mut out = String::new();
                if let Some(mut s) = self.child.stdout.take() {
                    std::io::Read::read_to_string(&mut s, &mut out).ok();
                }
                // The reader thread drains the rest of stderr.
                std::thread::sleep(Duration::from_millis(200));
                return (status, out, self.log());
            }
            if Instant::now() > until {
                self.child.kill().ok();
                panic!("the demo did not exit within {timeout:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pipeline(&self, name: &str) -> serde_json::Value {
        let url = format!("{}/status.json", self.url);
        let doc: serde_json::Value = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(async { reqwest::get(url).await?.json().await })
            .unwrap_or(serde_json::Value::Null);
        doc["tenants"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|t| t["pipelines"].as_array().cloned().unwrap_or_default())
            .find(|p| p["pipeline"] == name)
            .unwrap_or(serde_json::Value::Null)
    }
}

#[test]
fn the_live_demo_keeps_tableau_current_while_oracle_posts() {
    let mut live = Live::start(&[
        "--invoices",
        "1500",
        "--changes-per-sec",
        "6",
        "--for",
        "45s",
    ]);
    let banner = live.wait_for_line("status page:", Duration::from_secs(180));
    assert!(banner.contains(&live.url), "{banner}");
    let token = live.wait_for_line("admin token:", Duration::from_secs(5));
    assert!(
        token
            .split_whitespace()
            .nth(2)
            .is_some_and(|t| t.len() >= 16),
        "an admin token is printed: {token}"
    );
    // While it runs (before --for ends), `serve` upserts Oracle's changes:
    // the status page shows an invoices cycle that sent rows after the
    // first load.
    let until = Instant::now() + Duration::from_secs(40);
    let mut seen = serde_json::Value::Null;
    loop {
        let p = live.pipeline("invoices");
        if p["last_cycle"]["outcome"] == "ok"
            && p["last_cycle"]["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("upserted"))
            && p["last_cycle"]["rows"].as_u64().is_some_and(|n| n > 0)
        {
            seen = p;
            break;
        }
        assert!(
            !live.log().contains("--for elapsed"),
            "no upsert of Oracle's changes before --for ended; last status {p:#}:\n{}",
            live.log()
        );
        if Instant::now() > until {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        seen.is_object(),
        "no invoices upsert within 40 s:\n{}",
        live.log()
    );

    let (status, stdout, log) = live.wait(Duration::from_secs(240));
    drop(live);
    assert!(status.success(), "status {status}\n{stdout}\n{log}");
    let doc: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}\n{log}"));
    let before = doc["oracle_invoices_after_first_load"].as_u64().unwrap();
    let after = doc["oracle_invoices"].as_u64().unwrap();
    assert_eq!(before, 1500, "{doc:#}");
    assert!(after > before, "Oracle posted new invoices: {doc:#}");
    let pipelines = doc["pipelines"].as_array().expect("pipelines");
    assert_eq!(pipelines.len(), 8, "{doc:#}");
    let invoices = pipelines
        .iter()
        .find(|p| p["pipeline"] == "invoices")
        .expect("the invoices pipeline");
    assert_eq!(invoices["first_load_rows"], 1500, "{invoices:#}");
    // Every invoice Oracle has, new ones included, is in Tableau.
    assert_eq!(invoices["rows_in_tableau"], after, "{invoices:#}");
    assert!(
        invoices["rows_sent_while_serving"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{invoices:#}"
    );
    for p in pipelines {
        assert!(
            p["rows_in_tableau"].as_u64().is_some_and(|n| n > 0),
            "{p:#}"
        );
    }
}

#[test]
fn ctrl_c_stops_the_live_demo_cleanly() {
    let mut live = Live::start(&["--invoices", "200"]);
    live.wait_for_line("Ctrl-C stops everything", Duration::from_secs(180));
    let pid = live.child.id().to_string();
    let sent = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill -INT");
    assert!(sent.success());
    let work = live.work.path().to_path_buf();
    let (status, _, log) = live.wait(Duration::from_secs(60));
    assert!(status.success(), "status {status}\n{log}");
    assert!(log.contains("stopped; the demo's data is in"), "{log}");
    // The store was closed properly: another process can open it.
    assert!(work.join("data/tenants/demo.redb").is_file(), "{log}");
    let out = Command::new(env!("CARGO_BIN_EXE_ml-connector"))
        .current_dir(workspace())
        .arg("--data-dir")
        .arg(work.join("data"))
        .args(["--output", "json", "pipeline", "list", "demo"])
        .output()
        .expect("pipeline list");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("invoices"), "{listed}");
}
