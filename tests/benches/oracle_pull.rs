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
        "serve" => serve(arg(&args, "--invoices=")?.parse()?),
        "client" => client(&arg(&args, "--sandbox=")?),
        _ => orchestrate(),
    }
}

fn arg(args: &[String], prefix: &str) -> Result<String> {
    args.iter()
        .find_map(|a| a.strip_prefix(prefix))
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("missing {prefix}"))
}

/// Starts a sandbox with `invoices`, prints its endpoints as one JSON line,
/// serves until stdin closes.
fn serve(invoices: u64) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let started = Instant::now();
        let sb = mlc_sandbox_oracle::OracleSandbox::start(mlc_sandbox_oracle::SandboxConfig {
            seed: 1,
            invoices,
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

/// Runs the full pull and the idle cycle; prints the figures as JSON.
fn client(sandbox: &str) -> Result<()> {
    let sb: Value = serde_json::from_str(sandbox)?;
    let field = |k: &str| {
        sb[k]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no {k}"))
    };
    let cfg = OracleConfig::new(
        field("base_url")?,
        field("token_url")?,
        field("client_id")?,
        Secret::new(field("client_secret")?),
        field("scope")?,
    );
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let client = OracleClient::new("bench", cfg)?;
        let spec = ResourceSpec::invoices();
        let cpu0 = cpu_secs()?;
        let t0 = Instant::now();
        let mut pull = client.pull(&spec, None, &NothingExported);
        let mut records = 0u64;
        let mut bytes = 0u64;
        while let Some(page) = pull.next_page().await? {
            records += page.records.len() as u64;
            bytes += page
                .records
                .iter()
                .map(|r| r.json.len() as u64)
                .sum::<u64>();
        }
        let elapsed = t0.elapsed().as_secs_f64();
        let cpu = cpu_secs()? - cpu0;
        let stats = pull.stats();
        let cursor = pull.cursor().cloned();
        let hwm = vm_hwm_kib()?;

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
            })
        );
        Ok(())
    })
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
    for size in sizes.split(',') {
        let size: usize = size.trim().parse()?;
        let mut server = Command::new(&me)
            .arg("--role=serve")
            .arg(format!("--invoices={size}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut line = String::new();
        let stdout = server.stdout.take().context("sandbox stdout")?;
        BufReader::new(stdout).read_line(&mut line)?;
        if line.trim().is_empty() {
            let _ = server.kill();
            bail!("the sandbox process printed nothing");
        }
        let info: Value = serde_json::from_str(line.trim())?;
        let server_cpu0 = cpu_secs_of(server.id())?;
        let out = Command::new(&me)
            .arg("--role=client")
            .arg(format!("--sandbox={}", line.trim()))
            .stderr(Stdio::inherit())
            .output()?;
        let server_cpu = cpu_secs_of(server.id()).unwrap_or(server_cpu0) - server_cpu0;
        let load = load_average();
        drop(server.stdin.take());
        let _ = server.wait();
        if !out.status.success() {
            bail!("client run failed for {size} invoices");
        }
        let r: Value = serde_json::from_slice(&out.stdout)?;
        println!(
            "{:>9} {:>10.0} {:>9.1} {:>8} {:>12.1} {:>10.1} {:>9.1} {:>6}",
            r["records"],
            r["records_per_sec"].as_f64().unwrap_or(0.0),
            r["secs"].as_f64().unwrap_or(0.0),
            r["requests"],
            r["cpu_us_per_record"].as_f64().unwrap_or(0.0),
            r["vm_hwm_mib"].as_f64().unwrap_or(0.0),
            info["startup_secs"].as_f64().unwrap_or(0.0),
            r["idle_cycle_requests"],
        );
        println!("  raw: {r}");
        println!(
            "  sandbox process CPU during the pull: {server_cpu:.2} s; load average after: {load}"
        );
    }
    Ok(())
}
