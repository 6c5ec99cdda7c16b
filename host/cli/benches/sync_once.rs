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
//! `ML_CONNECTOR_BENCH_BIN` runs another `ml-connector` binary; `ML_CONNECTOR_BENCH_DIR`
//! places the scratch directories (default: the system temp dir).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::{
    Bench, Timed, binary, connection, now_utc, scratch, stage_bench_mapping, start_sandboxes, timed,
};

use mlc_sandbox_oracle::{OracleSandbox, SandboxConfig};

/// One measured run of the CLI: the timed child, the log lines that mark
/// its stages, its JSON report and the Oracle requests it made.
struct Measured {
    run: Timed,
    stages: Vec<String>,
    report: serde_json::Value,
    oracle_requests: u64,
}

impl std::ops::Deref for Measured {
    type Target = Timed;
    fn deref(&self) -> &Timed {
        &self.run
    }
}

/// Runs `sync` under `/usr/bin/time -v`, sampling ml-connector's memory.
fn measure(bench: &Bench, oracle: &OracleSandbox, args: &[&str]) -> Measured {
    let served = oracle.stats().served;
    let run = timed(&bench.command(args), "sync");
    let stages = run
        .stderr
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
    let report = serde_json::from_str(&run.stdout).unwrap_or(serde_json::Value::Null);
    Measured {
        run,
        stages,
        report,
        oracle_requests: oracle.stats().served - served,
    }
}

/// A file's length and the bytes allocated to it on disk (less when the
/// file is sparse).
fn file_size(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or((0, 0), |m| (m.len(), m.blocks() * 512))
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
    let scratch = scratch();
    let dir = scratch.path().to_path_buf();
    let (oracle, tableau) = start_sandboxes(
        &dir,
        SandboxConfig {
            seed: 1,
            invoices: n,
            ..SandboxConfig::default()
        },
    )
    .await;
    stage_bench_mapping(&dir, "bench", "invoices.toml");
    let tenant = format!(
        "id = \"bench\"\n\n{}\n[[pipeline]]\nid = \"invoices\"\nresource = \"invoices\"\n\
         datasource = \"bench invoices\"\nmapping = \"invoices.toml\"\n",
        connection(&oracle, &tableau, "")
    );
    let bench = Bench {
        // The stages' own log lines, to place memory in time.
        log: "warn,mlc_tableau=info,mlc_sync=info",
        dir: dir.clone(),
        bin: binary(),
        master_key: mlc_store::MasterKey::generate_base64().expose().to_owned(),
    };
    bench.apply_tenant("bench", &tenant, &oracle, &tableau);
    let sync = ["--output", "json", "sync", "bench/invoices", "--once"];

    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "run          {n:>9} invoices: started at {}, load average {}",
        now_utc(),
        load().trim()
    );
    let first = measure(&bench, &oracle, &sync);
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
    let incremental = measure(&bench, &oracle, &sync);
    print("incremental", n, &incremental);
    let quiet = measure(&bench, &oracle, &sync);
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
