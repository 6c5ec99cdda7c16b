//! The side-by-side of issue 10: the script an analyst writes
//! (`tests/benches/peer/invoices.py`: requests paging `invoices` with
//! `limit`/`offset`, mapping in Python, tableauhyperapi's Inserter,
//! tableauserverclient's publish) against
//! `ml-connector sync bench/invoices --once` (`[oracle] max_concurrency =
//! 8`, mapping `mappings/bench/invoices.toml`, `pull = "mapped-fields"`:
//! like the script, it asks Oracle for only the attributes it maps), on
//! the same sandboxes.
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
//! `ML_CONNECTOR_BENCH_BIN` runs another `ml-connector` binary; `ML_CONNECTOR_BENCH_DIR`
//! places the scratch directories.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{
    Bench, Timed, binary, connection, now_utc, scratch, stage_bench_mapping, start_sandboxes,
    timed, workspace,
};
use mlc_sandbox_oracle::{OracleSandbox, SandboxConfig};

const CONCURRENCY: u64 = 8;
const PAGE: u64 = 499;

fn python() -> PathBuf {
    std::env::var_os("ML_CONNECTOR_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// One measured run of a child under `/usr/bin/time -v`, with the Oracle
/// requests it made.
struct Measured {
    run: Timed,
    oracle_requests: u64,
}

impl std::ops::Deref for Measured {
    type Target = Timed;
    fn deref(&self) -> &Timed {
        &self.run
    }
}

/// Runs `inner` under `/usr/bin/time -v`, counting its Oracle requests.
fn measure(oracle: &OracleSandbox, inner: &Command, what: &str) -> Measured {
    let served = oracle.stats().served;
    let run = timed(inner, what);
    Measured {
        run,
        oracle_requests: oracle.stats().served - served,
    }
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
    let scratch = scratch();
    let dir = scratch.path().to_path_buf();
    let latency = Duration::from_millis(latency_ms);
    let (oracle, tableau) = start_sandboxes(
        &dir,
        SandboxConfig {
            seed: 1,
            invoices: n,
            latency,
            ..SandboxConfig::default()
        },
    )
    .await;
    stage_bench_mapping(&dir, "bench", "invoices.toml");
    let tenant = format!(
        "id = \"bench\"\n\n{}\n[[pipeline]]\nid = \"invoices\"\nresource = \"invoices\"\n\
         datasource = \"connector invoices\"\nmapping = \"invoices.toml\"\npull = \"mapped-fields\"\n",
        connection(
            &oracle,
            &tableau,
            &format!("max_concurrency = {CONCURRENCY}")
        )
    );
    let bench = Bench {
        log: "warn",
        dir: dir.clone(),
        bin: binary(),
        master_key: mlc_store::MasterKey::generate_base64().expose().to_owned(),
    };
    bench.apply_tenant("bench", &tenant, &oracle, &tableau);

    let base = oracle.base_url();
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
