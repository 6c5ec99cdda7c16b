//! What the end-to-end benches share: where the binaries are, the CLI run
//! against a bench's data directory, and one child run under
//! `/usr/bin/time -v` with its own memory sampled from `/proc`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The ml-connector binary measured (`ML_CONNECTOR_BENCH_BIN` for another one).
pub fn binary() -> PathBuf {
    std::env::var_os("ML_CONNECTOR_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ml-connector")))
}

/// The staged `scripted` mapper.
pub fn scripted_wasm() -> PathBuf {
    std::env::var_os("ML_CONNECTOR_PLUGINS_BUILT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/plugins"))
        .join("scripted.wasm")
}

/// Now, UTC, to the second.
pub fn now_utc() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    out.unwrap_or_default()
}

/// The CLI against one bench directory (data, mappings, master key).
pub struct Bench {
    /// The scratch directory.
    pub dir: PathBuf,
    /// The binary.
    pub bin: PathBuf,
    /// The master key (base64).
    pub master_key: String,
    /// `RUST_LOG` of the children.
    pub log: &'static str,
}

impl Bench {
    /// The CLI with the bench's environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.current_dir(&self.dir)
            .env("ML_CONNECTOR_DATA", self.dir.join("data"))
            .env("ML_CONNECTOR_MASTER_KEY", &self.master_key)
            .env("ML_CONNECTOR_MAPPINGS", self.dir.join("mappings"))
            .env("ML_CONNECTOR_SCRIPTED_WASM", scripted_wasm())
            .env_remove("ML_CONNECTOR_MASTER_KEY_FILE")
            .env("RUST_LOG", self.log)
            .args(args);
        c
    }

    /// Runs the CLI with `stdin` and asserts it succeeded.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) {
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

/// One child run under `/usr/bin/time -v`.
#[derive(Debug, Default)]
pub struct Timed {
    /// From spawning `/usr/bin/time` to its exit.
    pub wall: Duration,
    /// User CPU of the child and every descendant it reaped.
    pub user_s: f64,
    /// System CPU, likewise.
    pub sys_s: f64,
    /// `/usr/bin/time`'s "Maximum resident set size".
    pub time_max_rss_kb: u64,
    /// The last VmHWM read of the child itself.
    pub hwm_kb: u64,
    /// VmRSS every second: (seconds since start, kB).
    pub rss: Vec<(f64, u64)>,
    /// When VmHWM rose by 8 MiB or more: (seconds since start, kB).
    pub hwm_steps: Vec<(f64, u64)>,
    /// The child's stdout.
    pub stdout: String,
    /// The child's stderr, `/usr/bin/time`'s report included.
    pub stderr: String,
}

impl Timed {
    /// User + system CPU seconds.
    pub fn cpu(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

/// Runs `inner` (program, arguments, directory, environment) under
/// `/usr/bin/time -v`, sampling the child's VmHWM every 50 ms and its VmRSS
/// every second; panics, naming `what`, when it fails.
pub fn timed(inner: &Command, what: &str) -> Timed {
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
    assert!(out.status.success(), "{what} failed: {stdout}\n{stderr}");
    let time_field = |name: &str| {
        stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let (hwm_kb, rss, hwm_steps) = {
        let s = samples.lock().unwrap();
        (s.0, s.1.clone(), s.2.clone())
    };
    Timed {
        wall,
        user_s: time_field("User time (seconds):").parse().unwrap_or(0.0),
        sys_s: time_field("System time (seconds):").parse().unwrap_or(0.0),
        time_max_rss_kb: time_field("Maximum resident set size (kbytes):")
            .parse()
            .unwrap_or(0),
        hwm_kb,
        rss,
        hwm_steps,
        stdout,
        stderr,
    }
}

/// A scratch directory for one run (under `ML_CONNECTOR_BENCH_DIR` when set).
pub fn scratch() -> tempfile::TempDir {
    match std::env::var_os("ML_CONNECTOR_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("scratch dir")
}

/// Both sandboxes: Oracle as `oracle` says, Tableau keeping its data
/// sources under `dir/tableau`.
pub async fn start_sandboxes(
    dir: &Path,
    oracle: mlc_sandbox_oracle::SandboxConfig,
) -> (
    mlc_sandbox_oracle::OracleSandbox,
    mlc_sandbox_tableau::TableauSandbox,
) {
    let oracle = mlc_sandbox_oracle::OracleSandbox::start(oracle)
        .await
        .expect("Oracle sandbox");
    let tableau =
        mlc_sandbox_tableau::TableauSandbox::start(mlc_sandbox_tableau::TableauSandboxConfig {
            data_dir: dir.join("tableau"),
            ..mlc_sandbox_tableau::TableauSandboxConfig::default()
        })
        .await
        .expect("Tableau sandbox");
    (oracle, tableau)
}

/// Copies `mappings/bench/invoices.toml` and the demo's invoice sample as
/// tenant `tenant`'s, under `dir/mappings/<tenant>/`.
pub fn stage_bench_mapping(dir: &Path, tenant: &str, file: &str) {
    let mappings = dir.join("mappings").join(tenant);
    std::fs::create_dir_all(mappings.join("samples")).expect("mappings dir");
    let stem = file.trim_end_matches(".toml");
    std::fs::copy(
        workspace().join("mappings/bench/invoices.toml"),
        mappings.join(file),
    )
    .expect("mapping");
    std::fs::copy(
        workspace().join("mappings/demo/samples/invoices.json"),
        mappings.join(format!("samples/{stem}.json")),
    )
    .expect("sample");
}

/// The `[oracle]` and `[tableau]` sections of a tenant file for the
/// sandboxes; `oracle_extra` lines go into `[oracle]`.
pub fn connection(
    oracle: &mlc_sandbox_oracle::OracleSandbox,
    tableau: &mlc_sandbox_tableau::TableauSandbox,
    oracle_extra: &str,
) -> String {
    let base = oracle.base_url();
    let url = base.split("/fscmRestApi").next().unwrap_or(&base);
    format!(
        "[oracle]\nurl = \"{url}\"\ntoken_url = \"{}\"\nclient_id = \"{}\"\n\
         client_secret = \"secret:oracle-client-secret\"\nscope = \"{}\"\n{oracle_extra}\n\
         [tableau]\nurl = \"{}\"\nsite = \"{}\"\nproject = \"{}\"\npat_name = \"{}\"\n\
         pat_secret = \"secret:tableau-pat\"\n",
        oracle.token_url(),
        oracle.client_id(),
        oracle.scope(),
        tableau.server_url(),
        tableau.site_content_url(),
        tableau.project_name(),
        tableau.pat_name(),
    )
}

impl Bench {
    /// Writes `text` as tenant `id`'s file, applies it and sets both
    /// secrets of the sandboxes.
    pub fn apply_tenant(
        &self,
        id: &str,
        text: &str,
        oracle: &mlc_sandbox_oracle::OracleSandbox,
        tableau: &mlc_sandbox_tableau::TableauSandbox,
    ) {
        let file = self.dir.join(format!("{id}.toml"));
        std::fs::write(&file, text).expect("tenant file");
        self.ok(&["tenant", "apply", file.to_str().expect("path")], None);
        self.ok(
            &["secret", "set", id, "oracle-client-secret"],
            Some(oracle.client_secret().expose()),
        );
        self.ok(
            &["secret", "set", id, "tableau-pat"],
            Some(tableau.pat_secret().expose()),
        );
    }
}
