//! `ml-connector serve` measured (method and figures: `tests/benches/serve.md`):
//!
//! - **freshness**: one tenant, one `invoices` pipeline at `every = "1m"` on
//!   the real clock, while Oracle changes 2 invoices every 3 s. For every
//!   change, the time from its LastUpdateDate in Oracle to the moment the
//!   Tableau sandbox's data source shows it (polled every 500 ms): the
//!   change-to-visible latency a dashboard sees. Also the server's own
//!   `freshness` (newest record of each batch to confirmation).
//! - **idle**: 50 tenants × 7 pipelines (the demo mappings), every
//!   pipeline's first load done, then `serve`'s CPU and RSS over a quiet
//!   minute (hyperd is another process and not counted).
//!
//! ```text
//! cargo build --release -p ml-connector
//! cargo bench -p ml-connector --bench serve -- freshness 300   # seconds to measure
//! cargo bench -p ml-connector --bench serve -- idle 50          # tenants
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::{
    Bench, binary, connection, now_utc, scratch, stage_bench_mapping, start_sandboxes, workspace,
};
use mlc_sandbox_oracle::{OracleSandbox, SandboxConfig};
use mlc_sandbox_tableau::TableauSandbox;

const TOKEN: &str = "bench-admin-token-0123456789abcdef";

struct World {
    _scratch: tempfile::TempDir,
    bench: Bench,
    oracle: OracleSandbox,
    tableau: TableauSandbox,
}

async fn world(invoices: u64) -> World {
    let scratch = scratch();
    let dir = scratch.path().to_path_buf();
    let (oracle, tableau) = start_sandboxes(
        &dir,
        SandboxConfig {
            seed: 5,
            invoices,
            ..SandboxConfig::default()
        },
    )
    .await;
    let bench = Bench {
        dir,
        bin: binary(),
        master_key: mlc_store::MasterKey::generate_base64().expose().to_owned(),
        log: "warn",
    };
    World {
        _scratch: scratch,
        bench,
        oracle,
        tableau,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("samples")).expect("mappings dir");
    for sub in ["", "samples"] {
        for entry in std::fs::read_dir(from.join(sub)).expect("mappings") {
            let path = entry.expect("entry").path();
            if path.is_file() {
                std::fs::copy(&path, to.join(sub).join(path.file_name().expect("name")))
                    .expect("copy");
            }
        }
    }
}

/// Applies a tenant with `pipelines` (id, resource, script) and its secrets.
fn tenant(w: &World, id: &str, pipelines: &[(&str, &str, &str)], reference: bool) {
    let mut text = format!("id = \"{id}\"\n\n{}", connection(&w.oracle, &w.tableau, ""));
    if reference {
        text.push_str(
            "\n[reference]\nsuppliers = true\naccount_combination_segments = [\"entity\", \"department\", \"account\", \"subAccount\", \"location\"]\n\n[reference.value_sets]\ncompanies = \"CORP_ENTITY\"\ncost-centers = \"CORP_COST_CENTER\"\naccounts = \"CORP_ACCOUNT\"\n",
        );
    }
    for (p, resource, script) in pipelines {
        text.push_str(&format!(
            "\n[[pipeline]]\nid = \"{p}\"\nresource = \"{resource}\"\ndatasource = \"{id} {p}\"\nmapping = \"{script}\"\nevery = \"1m\"\n"
        ));
    }
    w.bench.apply_tenant(id, &text, &w.oracle, &w.tableau);
}

/// Starts `serve` and waits for its address.
fn serve(w: &World) -> (Child, String) {
    let mut child = w
        .bench
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .env("ML_CONNECTOR_ADMIN_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(rest) = line.strip_prefix("serving on ") {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("serve did not start");
    (child, url)
}

async fn status(url: &str) -> serde_json::Value {
    reqwest::get(format!("{url}/status.json"))
        .await
        .expect("status")
        .json()
        .await
        .expect("status JSON")
}

fn percentile(mut v: Vec<f64>, q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

async fn freshness(seconds: u64) {
    let w = world(5_000).await;
    stage_bench_mapping(&w.bench.dir, "acme", "bench-invoices.toml");
    tenant(
        &w,
        "acme",
        &[("invoices", "invoices", "bench-invoices.toml")],
        false,
    );
    let (mut child, url) = serve(&w);
    // The first load.
    let loaded = Instant::now();
    while w.tableau.datasource_id("acme invoices").is_none() {
        assert!(loaded.elapsed() < Duration::from_secs(300), "no first load");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "first load of 5,000 invoices visible after {:.1} s",
        loaded.elapsed().as_secs_f64()
    );
    let columns: Vec<String> =
        std::fs::read_to_string(workspace().join("mappings/bench/invoices.toml"))
            .expect("script")
            .lines()
            .filter_map(|l| l.strip_prefix("name = \""))
            .map(|l| l.trim_end_matches('"').to_owned())
            .collect();
    let at = |n: &str| columns.iter().position(|c| c == n).expect("column");
    let (id_col, updated_col) = (at("Invoice ID"), at("Last Updated"));
    // Changes waiting to be seen: key → their LastUpdateDate (µs).
    let mut pending: BTreeMap<i64, i64> = BTreeMap::new();
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut next_change = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) || !pending.is_empty() {
        if started.elapsed() < Duration::from_secs(seconds) && Instant::now() >= next_change {
            let stamp = now_micros();
            for key in w.oracle.mutate(2, 0) {
                pending.entry(key).or_insert(stamp);
            }
            next_change += Duration::from_secs(3);
        }
        if started.elapsed() > Duration::from_secs(seconds + 180) {
            panic!("{} changes never became visible", pending.len());
        }
        let rows = w
            .tableau
            .datasource_rows("acme invoices", &["Invoice ID"])
            .await
            .expect("rows")
            .expect("data source");
        let seen = now_micros();
        for row in rows {
            let (mlc_common::Value::Integer(k), mlc_common::Value::Timestamp(t)) =
                (&row[id_col], &row[updated_col])
            else {
                continue;
            };
            if let Some(stamp) = pending.get(k)
                && *t >= *stamp - 1_000_000
            {
                latencies.push((seen - stamp) as f64 / 1e6);
                pending.remove(k);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let doc = status(&url).await;
    let own = &doc["tenants"][0]["pipelines"][0]["freshness"];
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "freshness at every = 1m, {seconds} s of 2 changes / 3 s ({now}):\n\
         change-to-visible over {n} changes: p50 {:.1} s, p95 {:.1} s, max {:.1} s (goal: p95 <= 70 s)\n\
         the server's own (newest record of each batch to confirmation): {own}",
        percentile(latencies.clone(), 0.5),
        percentile(latencies.clone(), 0.95),
        percentile(latencies.clone(), 1.0),
        n = latencies.len(),
        now = now_utc(),
    );
}

fn proc_stat(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 (1-based); after the comm they
    // are at 11 and 12 (0-based). Clock ticks are 100 a second here.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (cpu, rss)
}

async fn idle(tenants: usize) {
    let w = world(50).await;
    let pipelines = [
        ("invoices", "invoices", "invoices.toml"),
        ("invoice-lines", "invoices", "invoice-lines.toml"),
        ("payments", "payablesPayments", "payablesPayments.toml"),
        ("suppliers", "suppliers", "suppliers.toml"),
        ("purchase-orders", "purchaseOrders", "purchaseOrders.toml"),
        (
            "receivables",
            "receivablesInvoices",
            "receivablesInvoices.toml",
        ),
        ("journals", "journalBatches", "journalBatches.toml"),
    ];
    let setup = Instant::now();
    for i in 0..tenants {
        let id = format!("t{i:03}");
        copy_dir(
            &workspace().join("mappings/demo"),
            &w.bench.dir.join("mappings").join(&id),
        );
        tenant(&w, &id, &pipelines, true);
    }
    println!(
        "{tenants} tenants applied in {:.1} s",
        setup.elapsed().as_secs_f64()
    );
    let (mut child, url) = serve(&w);
    let pid = child.id();
    let want = tenants * pipelines.len();
    let started = Instant::now();
    loop {
        let doc = status(&url).await;
        let done = doc["tenants"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|t| t["pipelines"].as_array().cloned().unwrap_or_default())
            .filter(|p| p["last_cycle"]["outcome"] == "ok")
            .count();
        if done >= want {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "only {done} of {want} first loads after 30 min"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let loads = started.elapsed();
    let (cpu_loaded, rss_loaded) = proc_stat(pid);
    println!(
        "{want} pipelines' first loads done {:.1} s after start (serve CPU {cpu_loaded:.1} s, RSS {} MiB)",
        loads.as_secs_f64(),
        rss_loaded / 1024
    );
    // Every pipeline now runs once a minute with nothing new in Oracle:
    // measure a minute of that.
    let confirmed = |doc: &serde_json::Value| -> u64 {
        doc["tenants"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|t| t["pipelines"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p["store"]["confirmed_batches"].as_u64())
            .sum()
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = confirmed(&status(&url).await);
    let (c0, _) = proc_stat(pid);
    let t0 = Instant::now();
    let mut peak = 0;
    while t0.elapsed() < Duration::from_secs(60) {
        peak = peak.max(proc_stat(pid).1);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (c1, rss) = proc_stat(pid);
    let secs = t0.elapsed().as_secs_f64();
    let cycles = confirmed(&status(&url).await) - before;
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "serve with {tenants} tenants x {} pipelines at every = 1m, over {secs:.0} s after the first loads ({now}):\n\
         CPU {:.1}% of one core ({:.2} s), RSS {} MiB (peak {} MiB); {cycles} cycles confirmed in it (nothing new in Oracle)",
        pipelines.len(),
        100.0 * (c1 - c0) / secs,
        c1 - c0,
        rss / 1024,
        peak / 1024,
        now = now_utc(),
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let what = args.first().map(String::as_str).unwrap_or("freshness");
    let n: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(0);
    println!("serve bench: {} ({what})", binary().display());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    match what {
        "idle" => rt.block_on(idle(if n == 0 { 50 } else { n as usize })),
        _ => rt.block_on(freshness(if n == 0 { 300 } else { n })),
    }
}
