//! Benchmark: a full pull of N invoices from the Oracle sandbox on loopback.
//!
//! `cargo bench -p mlc-e2e --bench oracle_pull --features oracle-client`
//! (sizes: `ORACLE_PULL_SIZES=100000,1000000`, the default).
//!
//! The binary plays three roles so that the client's CPU time and peak
//! memory are measured alone: the orchestrator (no role argument) starts,
//! for each size, a sandbox process (`--role=serve`) and a client process
//! (`--role=client`) and prints one line per size:
//! records/s, client CPU per record (user + system from /proc/self/stat,
//! the same counters getrusage reports), client peak RSS (VmHWM) and the
//! requests spent by an idle cycle after the full pull.
//!
//! A second table sets a serial pull against sliced pulls
//! ([`OracleClient::pull_sliced`]) with the sandbox's latency model on:
//! `ORACLE_SLICED_INVOICES` (default 20000), `ORACLE_SLICED_LATENCIES_MS`
//! (base delay per page, default `0,50,250`), `ORACLE_SLICED_CONCURRENCIES`
//! (`max_concurrency` of the sliced runs, default `4,8`); each row gives the
//! physical limit, pages ÷ concurrency × latency, and the wall time as a
//! multiple of it. `ORACLE_PULL_SIZES=` (empty) skips the first table,
//! `ORACLE_SLICED_INVOICES=0` the second.

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use mlc_common::Secret;
use mlc_oracle::{MemoryRecordIndex, NothingExported, OracleClient, OracleConfig, ResourceSpec};
use serde_json::{Value, json};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let role = args
        .iter()
        .find_map(|a| a.strip_prefix("--role="))
        .unwrap_or("bench");
    match role {
        "serve" => serve(
            arg(&args, "--invoices=")?.parse()?,
            arg(&args, "--latency-ms=")
                .map(|v| v.parse())
                .unwrap_or(Ok(0))?,
        ),
        "client" => client(
            &arg(&args, "--sandbox=")?,
            arg(&args, "--concurrency=")
                .ok()
                .map(|v| v.parse())
                .transpose()?,
        ),
        _ => orchestrate(),
    }
}

fn arg(args: &[String], prefix: &str) -> Result<String> {
    args.iter()
        .find_map(|a| a.strip_prefix(prefix))
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("missing {prefix}"))
}

/// Starts a sandbox with `invoices` answering no sooner than `latency_ms`
/// after each request, prints its endpoints as one JSON line, serves until
/// stdin closes.
fn serve(invoices: u64, latency_ms: u64) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let started = Instant::now();
        let sb = mlc_sandbox_oracle::OracleSandbox::start(mlc_sandbox_oracle::SandboxConfig {
            seed: 1,
            invoices,
            latency: std::time::Duration::from_millis(latency_ms),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow!("sandbox: {e}"))?;
        let line = json!({
            "base_url": sb.base_url().to_string(),
            "token_url": sb.token_url().to_string(),
            "client_id": sb.client_id().to_string(),
            "client_secret": sb.client_secret().expose(),
            "scope": sb.scope().to_string(),
            "startup_secs": started.elapsed().as_secs_f64(),
        });
        println!("{line}");
        std::io::stdout().flush()?;
        // Serve until the orchestrator closes our stdin.
        tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
        })
        .await?;
        drop(sb);
        Ok(())
    })
}

/// CPU seconds (user + system) of this process, from /proc/self/stat
/// (fields 14 and 15, the counters getrusage(RUSAGE_SELF) reports).
fn cpu_secs() -> Result<f64> {
    cpu_secs_of(std::process::id())
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds (user + system) of process `pid` so far.
fn cpu_secs_of(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).context("utime")?.parse::<f64>()?
        + fields.get(12).context("stime")?.parse::<f64>()?;
    Ok(ticks / clock_ticks())
}

/// The 1-minute load average (the machine is shared; figures need it).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

/// Peak resident set (VmHWM) of this process in KiB.
fn vm_hwm_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmHWM in /proc/self/status"))
}

/// Runs the full pull (serial, or sliced at `concurrency`) and the idle
/// cycle; prints the figures as JSON.
fn client(sandbox: &str, concurrency: Option<usize>) -> Result<()> {
    let sb: Value = serde_json::from_str(sandbox)?;
    let field = |k: &str| {
        sb[k]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no {k}"))
    };
    let mut cfg = OracleConfig::new(
        field("base_url")?,
        field("token_url")?,
        field("client_id")?,
        Secret::new(field("client_secret")?),
        field("scope")?,
    );
    if let Some(c) = concurrency {
        cfg.max_concurrency = c;
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let client = OracleClient::new("bench", cfg)?;
        let spec = ResourceSpec::invoices();
        let cpu0 = cpu_secs()?;
        let t0 = Instant::now();
        let mut records = 0u64;
        let mut bytes = 0u64;
        let mut count = |page: mlc_oracle::Page| {
            records += page.records.len() as u64;
            bytes += page
                .records
                .iter()
                .map(|r| r.json.len() as u64)
                .sum::<u64>();
        };
        let (stats, cursor, slices) = match concurrency {
            None => {
                let mut pull = client.pull(&spec, None, &NothingExported);
                while let Some(page) = pull.next_page().await? {
                    count(page);
                }
                (pull.stats(), pull.cursor().cloned(), 0)
            }
            Some(_) => {
                let mut pull = client.pull_sliced(&spec, None, &NothingExported);
                while let Some(page) = pull.next_page().await? {
                    count(page);
                }
                (pull.stats(), pull.cursor().cloned(), pull.slices())
            }
        };
        let elapsed = t0.elapsed().as_secs_f64();
        let cpu = cpu_secs()? - cpu0;
        let hwm = vm_hwm_kib()?;
        let max_in_flight = client.request_stats().max_in_flight;

        // An idle cycle right after: only the overlap is re-read. The index
        // here knows nothing, so count what the cycle *requests*, not what
        // it returns.
        let idle_index = MemoryRecordIndex::new();
        let mut idle = client.pull(&spec, cursor, &idle_index);
        while idle.next_page().await?.is_some() {}
        let idle_requests = idle.stats().requests;

        println!(
            "{}",
            json!({
                "records": records,
                "bytes": bytes,
                "requests": stats.requests,
                "pages": stats.pages,
                "secs": elapsed,
                "records_per_sec": records as f64 / elapsed,
                "cpu_secs": cpu,
                "cpu_us_per_record": cpu * 1e6 / records.max(1) as f64,
                "vm_hwm_mib": hwm as f64 / 1024.0,
                "token_requests": client.token_requests(),
                "idle_cycle_requests": idle_requests,
                "slices": slices,
                "max_in_flight": max_in_flight,
            })
        );
        Ok(())
    })
}

/// A sandbox process: its endpoints line and the child.
struct Server {
    child: std::process::Child,
    line: String,
    info: Value,
}

impl Server {
    fn start(me: &std::path::Path, invoices: usize, latency_ms: u64) -> Result<Server> {
        let mut child = Command::new(me)
            .arg("--role=serve")
            .arg(format!("--invoices={invoices}"))
            .arg(format!("--latency-ms={latency_ms}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut line = String::new();
        let stdout = child.stdout.take().context("sandbox stdout")?;
        BufReader::new(stdout).read_line(&mut line)?;
        if line.trim().is_empty() {
            let _ = child.kill();
            bail!("the sandbox process printed nothing");
        }
        let info: Value = serde_json::from_str(line.trim())?;
        Ok(Server {
            child,
            line: line.trim().to_owned(),
            info,
        })
    }

    /// Runs one client process against it; its JSON figures.
    fn client(&self, me: &std::path::Path, concurrency: Option<usize>) -> Result<Value> {
        let mut cmd = Command::new(me);
        cmd.arg("--role=client")
            .arg(format!("--sandbox={}", self.line))
            .stderr(Stdio::inherit());
        if let Some(c) = concurrency {
            cmd.arg(format!("--concurrency={c}"));
        }
        let out = cmd.output()?;
        if !out.status.success() {
            bail!("client run failed");
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Serial against sliced pulls at each latency and concurrency.
fn sliced_table(me: &std::path::Path) -> Result<()> {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let invoices: usize = env("ORACLE_SLICED_INVOICES", "20000").trim().parse()?;
    if invoices == 0 {
        return Ok(());
    }
    let list = |text: String| -> Result<Vec<u64>> {
        text.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| Ok(s.trim().parse()?))
            .collect()
    };
    let latencies = list(env("ORACLE_SLICED_LATENCIES_MS", "0,50,250"))?;
    let concurrencies = list(env("ORACLE_SLICED_CONCURRENCIES", "4,8"))?;
    println!();
    println!(
        "serial vs sliced, {invoices} invoices (children expanded), latency = base delay per page"
    );
    println!(
        "{:>10} {:>8} {:>6} {:>6} {:>8} {:>8} {:>10} {:>9} {:>8} {:>7} {:>10} {:>8}",
        "latency_ms",
        "mode",
        "conc",
        "pages",
        "requests",
        "slices",
        "secs",
        "limit_s",
        "x_limit",
        "speedup",
        "cpu_us/rec",
        "hwm_MiB"
    );
    for latency in latencies {
        let server = Server::start(me, invoices, latency)?;
        let mut serial_secs = None;
        let mut runs: Vec<Option<usize>> = vec![None];
        runs.extend(concurrencies.iter().map(|c| Some(*c as usize)));
        for conc in runs {
            let r = server.client(me, conc)?;
            let secs = r["secs"].as_f64().unwrap_or(0.0);
            let pages = r["pages"].as_u64().unwrap_or(0);
            let c = conc.unwrap_or(1);
            let limit = pages as f64 / c as f64 * latency as f64 / 1000.0;
            let serial = *serial_secs.get_or_insert(secs);
            println!(
                "{:>10} {:>8} {:>6} {:>6} {:>8} {:>8} {:>10.2} {:>9.2} {:>8} {:>7.2} {:>10.1} {:>8.1}",
                latency,
                if conc.is_some() { "sliced" } else { "serial" },
                c,
                pages,
                r["requests"],
                r["slices"],
                secs,
                limit,
                if limit > 0.0 {
                    format!("{:.2}", secs / limit)
                } else {
                    "-".to_owned()
                },
                serial / secs.max(1e-9),
                r["cpu_us_per_record"].as_f64().unwrap_or(0.0),
                r["vm_hwm_mib"].as_f64().unwrap_or(0.0),
            );
            println!("  raw: {r}");
        }
        server.stop();
    }
    println!("load average after: {}", load_average());
    Ok(())
}

fn orchestrate() -> Result<()> {
    let me = std::env::current_exe()?;
    let sizes = std::env::var("ORACLE_PULL_SIZES").unwrap_or_else(|_| "100000,1000000".into());
    println!(
        "machine: {} CPUs, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    println!(
        "{:>9} {:>10} {:>9} {:>8} {:>12} {:>10} {:>9} {:>6}",
        "invoices", "records/s", "secs", "requests", "cpu_us/rec", "hwm_MiB", "startup_s", "idle"
    );
    for size in sizes.split(',').filter(|s| !s.trim().is_empty()) {
        let size: usize = size.trim().parse()?;
        let server = Server::start(&me, size, 0)?;
        let server_cpu0 = cpu_secs_of(server.child.id())?;
        let r = server
            .client(&me, None)
            .with_context(|| format!("{size} invoices"))?;
        let server_cpu = cpu_secs_of(server.child.id()).unwrap_or(server_cpu0) - server_cpu0;
        let load = load_average();
        let startup = server.info["startup_secs"].as_f64().unwrap_or(0.0);
        server.stop();
        println!(
            "{:>9} {:>10.0} {:>9.1} {:>8} {:>12.1} {:>10.1} {:>9.1} {:>6}",
            r["records"],
            r["records_per_sec"].as_f64().unwrap_or(0.0),
            r["secs"].as_f64().unwrap_or(0.0),
            r["requests"],
            r["cpu_us_per_record"].as_f64().unwrap_or(0.0),
            r["vm_hwm_mib"].as_f64().unwrap_or(0.0),
            startup,
            r["idle_cycle_requests"],
        );
        println!("  raw: {r}");
        println!(
            "  sandbox process CPU during the pull: {server_cpu:.2} s; load average after: {load}"
        );
    }
    sliced_table(&me)?;
    Ok(())
}
