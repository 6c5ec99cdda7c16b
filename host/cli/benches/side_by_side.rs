//! The side-by-side of issue 10: the script an analyst writes
//! (`tests/benches/peer/invoices.py`: requests paging `invoices` with
//! `limit`/`offset`, mapping in Python, tableauhyperapi's Inserter,
//! tableauserverclient's publish) against
//! `ml-connector sync bench/invoices --once` (`[oracle] max_concurrency =
//! 8`, mapping `mappings/bench/invoices.toml`), on the same sandboxes.
//!
//! Per scenario the Oracle sandbox (seed 1, N invoices, a base latency per
//! request) and the Tableau sandbox (its own hyperd) start in this process
//! over loopback; the peer runs, then ml-connector, each as a child of
//! `/usr/bin/time -v`, each publishing its own data source; both data
//! sources are read back (`datasource_rows`, ordered by "Invoice ID") and
//! must hold the same rows (a difference is printed and fails the bench).
//! Method and figures: `tests/benches/side_by_side.md`.
//!
//! ```text
//! cargo build --release -p ml-connector
//! cargo bench -p ml-connector --bench side_by_side -- 100000@1000 1000000@0
//! ```
//!
//! Each argument is `INVOICES@LATENCY_MS` (the sandbox's base latency per
//! request, so per 499-row page). `ML_CONNECTOR_PYTHON` is the Python with
//! requests, tableauhyperapi and tableauserverclient (default `python3`);
//! `MLC_BENCH_BIN` runs another `ml-connector` binary; `MLC_BENCH_DIR`
//! places the scratch directories.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlc_sandbox_oracle::{OracleSandbox, SandboxConfig};
use mlc_sandbox_tableau::{TableauSandbox, TableauSandboxConfig};

const CONCURRENCY: u64 = 8;
const PAGE: u64 = 499;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn binary() -> PathBuf {
    std::env::var_os("MLC_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ml-connector")))
}

fn python() -> PathBuf {
    std::env::var_os("ML_CONNECTOR_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"))
}

fn scripted_wasm() -> PathBuf {
    std::env::var_os("MLC_PLUGINS_BUILT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/plugins"))
        .join("scripted.wasm")
}

/// One measured run of a child under `/usr/bin/time -v`.
#[derive(Debug, Default)]
struct Measured {
    wall: Duration,
    /// User and system CPU of the child and of every descendant it reaped
    /// (each side's own hyperd).
    user_s: f64,
    sys_s: f64,
    /// `/usr/bin/time`'s "Maximum resident set size": the largest of the
    /// child and its reaped descendants.
    time_max_rss_kb: u64,
    /// The last VmHWM read of the child itself (python / ml-connector).
    hwm_kb: u64,
    stdout: String,
    oracle_requests: u64,
}

impl Measured {
    fn cpu(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

/// Runs `inner` under `/usr/bin/time -v`, sampling the child's VmHWM.
fn measure(oracle: &OracleSandbox, inner: &Command, what: &str) -> Measured {
    let served = oracle.stats().served;
    let mut c = Command::new("/usr/bin/time");
    c.arg("-v").arg(inner.get_program()).args(inner.get_args());
    if let Some(dir) = inner.get_current_dir() {
        c.current_dir(dir);
    }
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let started = Instant::now();
    let child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/time");
    let time_pid = child.id();
    let done = Arc::new(AtomicBool::new(false));
    let hwm: Arc<Mutex<u64>> = Arc::default();
    let sampler = {
        let (done, hwm) = (done.clone(), hwm.clone());
        std::thread::spawn(move || {
            let mut pid = None;
            while !done.load(Ordering::Relaxed) {
                if pid.is_none() {
                    pid = std::fs::read_to_string(format!(
                        "/proc/{time_pid}/task/{time_pid}/children"
                    ))
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok());
                }
                if let Some(pid) = pid
                    && let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    && let Some(kb) = status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmHWM:"))
                        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                {
                    let mut h = hwm.lock().unwrap();
                    *h = (*h).max(kb);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let out = child.wait_with_output().expect("wait");
    let wall = started.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{what} failed: {stdout}\n{stderr}");
    let time_field = |name: &str| {
        stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let hwm_kb = *hwm.lock().unwrap();
    Measured {
        wall,
        user_s: time_field("User time (seconds):").parse().unwrap_or(0.0),
        sys_s: time_field("System time (seconds):").parse().unwrap_or(0.0),
        time_max_rss_kb: time_field("Maximum resident set size (kbytes):")
            .parse()
            .unwrap_or(0),
        hwm_kb,
        stdout,
        oracle_requests: oracle.stats().served - served,
    }
}

struct Bench {
    dir: PathBuf,
    bin: PathBuf,
    master_key: String,
}

impl Bench {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.current_dir(&self.dir)
            .env("ML_CONNECTOR_DATA", self.dir.join("data"))
            .env("ML_CONNECTOR_MASTER_KEY", &self.master_key)
            .env("ML_CONNECTOR_MAPPINGS", self.dir.join("mappings"))
            .env("ML_CONNECTOR_SCRIPTED_WASM", scripted_wasm())
            .env_remove("ML_CONNECTOR_MASTER_KEY_FILE")
            .env("RUST_LOG", "warn")
            .args(args);
        c
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ml-connector");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("stdin");
        }
        drop(input);
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "ml-connector {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn now_utc() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    out.unwrap_or_default()
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn print(label: &str, n: u64, m: &Measured) {
    println!(
        "{label:<13} {n:>9} invoices: wall {:>7.1} s, {:>8.0} records/s, user {:.1} s sys {:.1} s (cpu {:.1} s, {:.1} µs/record), VmHWM {:.1} MiB, time maxRSS {:.1} MiB, {} Oracle requests",
        m.wall.as_secs_f64(),
        n as f64 / m.wall.as_secs_f64(),
        m.user_s,
        m.sys_s,
        m.cpu(),
        m.cpu() * 1e6 / n as f64,
        m.hwm_kb as f64 / 1024.0,
        m.time_max_rss_kb as f64 / 1024.0,
        m.oracle_requests,
    );
}

/// Returns whether both data sources hold the same rows.
async fn scenario(n: u64, latency_ms: u64) -> bool {
    let scratch = match std::env::var_os("MLC_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("scratch dir");
    let dir = scratch.path().to_path_buf();
    let latency = Duration::from_millis(latency_ms);
    let oracle = OracleSandbox::start(SandboxConfig {
        seed: 1,
        invoices: n,
        latency,
        ..SandboxConfig::default()
    })
    .await
    .expect("Oracle sandbox");
    let tableau = TableauSandbox::start(TableauSandboxConfig {
        data_dir: dir.join("tableau"),
        ..TableauSandboxConfig::default()
    })
    .await
    .expect("Tableau sandbox");
    let mappings = dir.join("mappings/bench");
    std::fs::create_dir_all(mappings.join("samples")).expect("mappings dir");
    std::fs::copy(
        workspace().join("mappings/bench/invoices.toml"),
        mappings.join("invoices.toml"),
    )
    .expect("mapping");
    std::fs::copy(
        workspace().join("mappings/demo/samples/invoices.json"),
        mappings.join("samples/invoices.json"),
    )
    .expect("sample");
    let base = oracle.base_url();
    let url = base
        .split("/fscmRestApi")
        .next()
        .unwrap_or(&base)
        .to_owned();
    let tenant = format!(
        r#"id = "bench"

[oracle]
url = "{url}"
token_url = "{token}"
client_id = "{client}"
client_secret = "secret:oracle-client-secret"
scope = "{scope}"
max_concurrency = {CONCURRENCY}

[tableau]
url = "{tab}"
site = "{site}"
project = "{project}"
pat_name = "{pat}"
pat_secret = "secret:tableau-pat"

[[pipeline]]
id = "invoices"
resource = "invoices"
datasource = "connector invoices"
mapping = "invoices.toml"
"#,
        token = oracle.token_url(),
        client = oracle.client_id(),
        scope = oracle.scope(),
        tab = tableau.server_url(),
        site = tableau.site_content_url(),
        project = tableau.project_name(),
        pat = tableau.pat_name(),
    );
    let file = dir.join("bench.toml");
    std::fs::write(&file, tenant).expect("tenant file");
    let bench = Bench {
        dir: dir.clone(),
        bin: binary(),
        master_key: mlc_store::MasterKey::generate_base64().expose().to_owned(),
    };
    bench.ok(&["tenant", "apply", file.to_str().expect("path")], None);
    bench.ok(
        &["secret", "set", "bench", "oracle-client-secret"],
        Some(oracle.client_secret().expose()),
    );
    bench.ok(
        &["secret", "set", "bench", "tableau-pat"],
        Some(tableau.pat_secret().expose()),
    );

    let peer_dir = dir.join("peer");
    std::fs::create_dir_all(&peer_dir).expect("peer dir");
    let mut peer = Command::new(python());
    peer.current_dir(&peer_dir)
        .arg(workspace().join("tests/benches/peer/invoices.py"))
        .arg(&base)
        .arg(oracle.token_url())
        .arg(oracle.client_id())
        .arg(oracle.scope())
        .arg(tableau.server_url())
        .arg(tableau.site_content_url())
        .arg(tableau.pat_name())
        .arg(tableau.project_name())
        .arg("peer invoices")
        .arg(&peer_dir)
        .env("ORACLE_CLIENT_SECRET", oracle.client_secret().expose())
        .env("TABLEAU_PAT_SECRET", tableau.pat_secret().expose());

    let label = format!("{n}@{latency_ms}ms");
    println!(
        "scenario {label}: {n} invoices, sandbox latency {latency_ms} ms per request, started at {}, load average {}",
        now_utc(),
        load()
    );
    let peer = measure(&oracle, &peer, "the peer script");
    print("peer", n, &peer);
    println!("peer          says: {}", peer.stdout.trim());
    println!("scenario {label}: load average {}", load());
    let sync = bench.command(&["--output", "json", "sync", "bench/invoices", "--once"]);
    let ours = measure(&oracle, &sync, "ml-connector sync");
    print("ml-connector", n, &ours);
    let report: serde_json::Value = serde_json::from_str(&ours.stdout).unwrap_or_default();
    let written = &report["pipelines"][0]["report"]["rows_written"];
    println!("ml-connector  rows written {written}");
    println!(
        "scenario {label}: finished at {}, load average {}",
        now_utc(),
        load()
    );

    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    println!(
        "ratios        {label}: wall peer/ml-connector {:.2}x, cpu peer/ml-connector {:.2}x (ml-connector cpu per record = {:.2} of the peer's), peak RSS (VmHWM) ml-connector/peer {:.2}x",
        ratio(peer.wall.as_secs_f64(), ours.wall.as_secs_f64()),
        ratio(peer.cpu(), ours.cpu()),
        ratio(ours.cpu(), peer.cpu()),
        ratio(ours.hwm_kb as f64, peer.hwm_kb as f64),
    );
    if latency_ms > 0 {
        let pages = n.div_ceil(PAGE);
        let limit = pages.div_ceil(CONCURRENCY) as f64 * latency.as_secs_f64();
        let serial = pages as f64 * latency.as_secs_f64();
        println!(
            "physical      {label}: {pages} pages; limit at concurrency {CONCURRENCY} = {limit:.1} s, ml-connector wall = {:.2}x the limit ({:.0}% efficient); serial limit {serial:.1} s, peer wall = {:.2}x it",
            ours.wall.as_secs_f64() / limit,
            100.0 * limit / ours.wall.as_secs_f64(),
            peer.wall.as_secs_f64() / serial,
        );
    }

    let order = ["Invoice ID"];
    let theirs = tableau
        .datasource_rows("peer invoices", &order)
        .await
        .expect("read peer rows")
        .expect("peer data source");
    let mine = tableau
        .datasource_rows("connector invoices", &order)
        .await
        .expect("read ml-connector rows")
        .expect("ml-connector data source");
    let mut same = theirs.len() == mine.len();
    if !same {
        println!(
            "rows          {label}: MISMATCH: the peer published {} rows, ml-connector {}",
            theirs.len(),
            mine.len()
        );
    }
    if let Some((i, (a, b))) = theirs
        .iter()
        .zip(mine.iter())
        .enumerate()
        .find(|(_, (a, b))| a != b)
    {
        same = false;
        println!(
            "rows          {label}: MISMATCH at row {i} (by Invoice ID):\n  peer:         {a:?}\n  ml-connector: {b:?}"
        );
    }
    if same {
        println!(
            "rows          {label}: the same {} rows of {} columns in both data sources",
            mine.len(),
            mine.first().map_or(0, Vec::len)
        );
    }
    drop((theirs, mine));
    let _ = tableau.shutdown().await;
    oracle.shutdown().await;
    same
}

fn main() {
    let scenarios: Vec<(u64, u64)> = std::env::args()
        .skip(1)
        .filter_map(|a| {
            let a = a.replace('_', "");
            let (n, ms) = a.split_once('@').unwrap_or((&a, "0"));
            Some((n.parse().ok()?, ms.parse().ok()?))
        })
        .collect();
    let scenarios = if scenarios.is_empty() {
        vec![(100_000, 1000), (1_000_000, 0)]
    } else {
        scenarios
    };
    println!(
        "side_by_side: {} against {} tests/benches/peer/invoices.py (scenarios {scenarios:?})",
        binary().display(),
        python().display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut ok = true;
    for (n, ms) in scenarios {
        ok &= rt.block_on(scenario(n, ms));
    }
    if !ok {
        eprintln!("side_by_side: the data sources differ");
        std::process::exit(1);
    }
}
