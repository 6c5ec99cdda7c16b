//! `ml-connector sync TENANT/PIPELINE --once` of N invoices, end to end:
//! the Oracle and Tableau sandboxes run in this process over loopback (the
//! Tableau one with its own hyperd), the real `ml-connector` binary runs as
//! a child under `/usr/bin/time -v`, and its memory is sampled from
//! `/proc/<pid>/status` (VmRSS, VmHWM: ml-connector's own pages; its
//! hyperd is another process and not counted).
//!
//! Per size: the first load (a full batch: pull, record into the store,
//! map, write the extract, publish), the store file's bytes per record, an
//! incremental cycle after `OracleSandbox::mutate(1000, 0)` (1,000 invoices
//! changed in place), and a quiet cycle. Method and figures:
//! `tests/benches/sync_once.md`.
//!
//! ```text
//! cargo build --release -p ml-connector
//! cargo bench -p ml-connector --bench sync_once -- 100000 1000000
//! ```
//!
//! `MLC_BENCH_BIN` runs another `ml-connector` binary; `MLC_BENCH_DIR`
//! places the scratch directories (default: the system temp dir).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlc_sandbox_oracle::{OracleSandbox, SandboxConfig};
use mlc_sandbox_tableau::{TableauSandbox, TableauSandboxConfig};

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

fn scripted_wasm() -> PathBuf {
    std::env::var_os("MLC_PLUGINS_BUILT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/plugins"))
        .join("scripted.wasm")
}

/// One measured run of the CLI.
#[derive(Debug, Default)]
struct Measured {
    wall: Duration,
    user_s: f64,
    sys_s: f64,
    /// `/usr/bin/time`'s "Maximum resident set size".
    time_max_rss_kb: u64,
    /// The last VmHWM read of ml-connector itself.
    hwm_kb: u64,
    /// VmRSS every second: (seconds since start, kB).
    rss: Vec<(f64, u64)>,
    /// When VmHWM rose by 8 MiB or more: (seconds since start, kB).
    hwm_steps: Vec<(f64, u64)>,
    /// The child's log lines that mark its stages, as logged.
    stages: Vec<String>,
    report: serde_json::Value,
    oracle_requests: u64,
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
            // The stages' own log lines, to place memory in time.
            .env("RUST_LOG", "warn,mlc_tableau=info,mlc_sync=info")
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

    /// Runs `sync` under `/usr/bin/time -v`, sampling ml-connector's memory.
    fn measure(&self, oracle: &OracleSandbox, args: &[&str]) -> Measured {
        let served = oracle.stats().served;
        let mut inner = self.command(args);
        let mut c = Command::new("/usr/bin/time");
        c.arg("-v").arg(inner.get_program()).args(inner.get_args());
        c.current_dir(&self.dir);
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        let _ = &mut inner;
        let started = Instant::now();
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("/usr/bin/time");
        let time_pid = child.id();
        let done = Arc::new(AtomicBool::new(false));
        type Samples = (u64, Vec<(f64, u64)>, Vec<(f64, u64)>);
        let samples: Arc<Mutex<Samples>> = Arc::default();
        let sampler = {
            let (done, samples) = (done.clone(), samples.clone());
            std::thread::spawn(move || {
                let mut pid = None;
                let mut next_mark = 0.0;
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
                    {
                        let field = |name: &str| {
                            status
                                .lines()
                                .find_map(|l| l.strip_prefix(name))
                                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                        };
                        let mut s = samples.lock().unwrap();
                        let t = started.elapsed().as_secs_f64();
                        if let Some(hwm) = field("VmHWM:") {
                            let last = s.2.last().map_or(0, |x| x.1);
                            if hwm >= last + 8 * 1024 {
                                s.2.push((t, hwm));
                            }
                            s.0 = s.0.max(hwm);
                        }
                        if t >= next_mark
                            && let Some(rss) = field("VmRSS:")
                        {
                            s.1.push((t, rss));
                            next_mark = t.floor() + 1.0;
                        }
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
        assert!(out.status.success(), "sync failed: {stdout}\n{stderr}");
        let time_field = |name: &str| {
            stderr
                .lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        let (hwm, rss, hwm_steps) = {
            let s = samples.lock().unwrap();
            (s.0, s.1.clone(), s.2.clone())
        };
        let stages = stderr
            .lines()
            .filter(|l| {
                [
                    "publishing data source",
                    "published data source",
                    "batch confirmed",
                    "update submitted",
                    "job succeeded",
                ]
                .iter()
                .any(|m| l.contains(m))
            })
            .map(str::to_owned)
            .collect();
        Measured {
            wall,
            user_s: time_field("User time (seconds):").parse().unwrap_or(0.0),
            sys_s: time_field("System time (seconds):").parse().unwrap_or(0.0),
            time_max_rss_kb: time_field("Maximum resident set size (kbytes):")
                .parse()
                .unwrap_or(0),
            hwm_kb: hwm,
            rss,
            hwm_steps,
            stages,
            report: serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null),
            oracle_requests: oracle.stats().served - served,
        }
    }
}

/// A file's length and the bytes allocated to it on disk (less when the
/// file is sparse).
fn file_size(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or((0, 0), |m| (m.len(), m.blocks() * 512))
}

fn now_utc() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    out.unwrap_or_default()
}

fn print(label: &str, n: u64, m: &Measured) {
    let p = &m.report["pipelines"][0]["report"];
    println!(
        "{label:<12} {n:>9} invoices: wall {:>7.1} s, {:>8.0} records/s, user {:.1} s sys {:.1} s, VmHWM {:.1} MiB, time maxRSS {:.1} MiB, {} Oracle requests, records {}, rows {}, action {}",
        m.wall.as_secs_f64(),
        p["records"].as_u64().unwrap_or(0) as f64 / m.wall.as_secs_f64(),
        m.user_s,
        m.sys_s,
        m.hwm_kb as f64 / 1024.0,
        m.time_max_rss_kb as f64 / 1024.0,
        m.oracle_requests,
        p["records"],
        p["rows_written"],
        p["action"]["type"],
    );
    let profile: Vec<String> = m
        .rss
        .iter()
        .map(|(t, kb)| format!("{t:.0}s:{:.0}", *kb as f64 / 1024.0))
        .collect();
    println!("{label:<12} VmRSS MiB over time: {}", profile.join(" "));
    let steps: Vec<String> = m
        .hwm_steps
        .iter()
        .map(|(t, kb)| format!("{t:.1}s:{:.0}", *kb as f64 / 1024.0))
        .collect();
    println!("{label:<12} VmHWM MiB rising: {}", steps.join(" "));
    for line in &m.stages {
        println!("{label:<12} log: {line}");
    }
}

async fn one_size(n: u64) {
    let scratch = match std::env::var_os("MLC_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("scratch dir");
    let dir = scratch.path().to_path_buf();
    let oracle = OracleSandbox::start(SandboxConfig {
        seed: 1,
        invoices: n,
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

[tableau]
url = "{tab}"
site = "{site}"
project = "{project}"
pat_name = "{pat}"
pat_secret = "secret:tableau-pat"

[[pipeline]]
id = "invoices"
resource = "invoices"
datasource = "bench invoices"
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
    let sync = ["--output", "json", "sync", "bench/invoices", "--once"];

    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "run          {n:>9} invoices: started at {}, load average {}",
        now_utc(),
        load().trim()
    );
    let first = bench.measure(&oracle, &sync);
    println!(
        "run          {n:>9} invoices: load average after the first load {}",
        load().trim()
    );
    print("first load", n, &first);
    let rows = first.report["pipelines"][0]["report"]["rows_written"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(rows, n, "the first load wrote {rows} rows of {n}");
    let store = dir.join("data/tenants/bench.redb");
    let (bytes, used) = file_size(&store);
    println!(
        "store        {n:>9} invoices: {bytes} bytes ({used} allocated on disk), {:.0} bytes per record ({:.0} allocated)",
        bytes as f64 / n as f64,
        used as f64 / n as f64
    );

    if let Some(path) = tableau.datasource_file("bench invoices") {
        println!(
            "published    {n:>9} invoices: .hyper of {} bytes",
            file_size(&path).0
        );
    }
    oracle.mutate(1000, 0);
    let incremental = bench.measure(&oracle, &sync);
    print("incremental", n, &incremental);
    let quiet = bench.measure(&oracle, &sync);
    print("quiet", n, &quiet);
    let (bytes, used) = file_size(&store);
    println!(
        "store        after the incremental and quiet cycles: {bytes} bytes ({used} allocated on disk)"
    );
    let _ = tableau.shutdown().await;
    oracle.shutdown().await;
}

fn main() {
    let sizes: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.replace('_', "").parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100_000, 1_000_000]
    } else {
        sizes
    };
    println!("sync_once: {} (sizes {sizes:?})", binary().display());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for n in sizes {
        rt.block_on(one_size(n));
    }
}
