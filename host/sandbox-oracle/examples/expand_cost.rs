//! Sandbox CPU per expanded invoice served, over loopback HTTP.
//!
//! `cargo run --release -p mlc-sandbox-oracle --example expand_cost -- 100000 3`
//! (invoices, rounds, and optionally the modes to run, comma separated:
//! `onlyData,links,same`, all by default). The program starts itself a second time as the
//! sandbox process (`--serve`), so the CPU it reads (user + system from
//! `/proc/<pid>/stat`, fields 14 and 15) is the sandbox's alone: HTTP,
//! routing, paging, generation, rendering and the kernel's share of the
//! sends. The client walks every invoice once per mode, 499 per page,
//! `REST-Framework-Version: 3`,
//! `expand=invoiceLines,invoiceLines.invoiceDistributions,invoiceInstallments`,
//! one request at a time, and reads each body as bytes (no parsing):
//!
//! - `onlyData`: `onlyData=true` (what the Oracle client sends);
//! - `links`: the same pages with every item's links (a `self` link's
//!   change indicator is a SHA-256 per item);
//! - `same`: the first `onlyData` page again and again (a record served
//!   twice);
//! - `header` (not run by default): `onlyData` pages without `expand`,
//!   the invoice headers alone.
//!
//! It prints, per mode and round, µs of sandbox CPU per invoice and the
//! body bytes per invoice. Figures: `tests/benches/oracle_sandbox.md`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, anyhow};
use mlc_sandbox_oracle::{OracleSandbox, SandboxConfig};
use serde_json::Value;

const EXPAND: &str = "invoiceLines,invoiceLines.invoiceDistributions,invoiceInstallments";
const PAGE: u64 = 499;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        let invoices = args.get(1).map_or(Ok(100_000), |a| a.parse())?;
        return serve(invoices);
    }
    let invoices: u64 = args.first().map_or(Ok(100_000), |a| a.parse())?;
    let rounds: u32 = args.get(1).map_or(Ok(3), |a| a.parse())?;
    let modes = args
        .get(2)
        .map_or("onlyData,links,same", String::as_str)
        .to_owned();
    measure(invoices, rounds, &modes)
}

/// The sandbox process: one JSON start line on stdout, serves until stdin
/// closes.
fn serve(invoices: u64) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let sb = OracleSandbox::start(SandboxConfig {
            invoices,
            ..SandboxConfig::default()
        })
        .await?;
        let line = mlc_sandbox_oracle::cli::start_line(&sb);
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}")?;
            out.flush()?;
        }
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).unwrap_or(0) > 0 {}
        })
        .await?;
        sb.shutdown().await;
        Ok(())
    })
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

/// `(user, system)` CPU seconds of process `pid` so far.
fn cpu_of(pid: u32, hz: f64) -> Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map_or("", |x| x.1);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let user: f64 = fields.get(11).context("utime")?.parse()?;
    let system: f64 = fields.get(12).context("stime")?.parse()?;
    Ok((user / hz, system / hz))
}

struct Target {
    base_url: String,
    token: String,
    http: reqwest::Client,
}

impl Target {
    /// One page; returns `(items, body bytes, hasMore)`.
    async fn page(&self, offset: u64, only_data: bool, expand: bool) -> Result<(u64, u64, bool)> {
        let limit = PAGE.to_string();
        let offset = offset.to_string();
        let mut q = vec![("limit", limit.as_str()), ("offset", offset.as_str())];
        if expand {
            q.push(("expand", EXPAND));
        }
        if only_data {
            q.push(("onlyData", "true"));
        }
        let resp = self
            .http
            .get(format!("{}/invoices", self.base_url))
            .bearer_auth(&self.token)
            .header("REST-Framework-Version", "3")
            .query(&q)
            .send()
            .await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        if !status.is_success() {
            return Err(anyhow!("{status}: {}", String::from_utf8_lossy(&body)));
        }
        // Count and hasMore sit at the end of the envelope: no full parse.
        let tail = &body[body.len().saturating_sub(600)..];
        let tail = String::from_utf8_lossy(tail);
        let count = tail
            .rsplit_once("\"count\":")
            .and_then(|(_, r)| r.split(',').next())
            .and_then(|n| n.parse().ok())
            .context("count")?;
        let has_more = tail.contains("\"hasMore\":true,\"limit\"");
        Ok((count, body.len() as u64, has_more))
    }
}

async fn run(target: &Target, pid: u32, invoices: u64, rounds: u32, modes: &str) -> Result<()> {
    let on = |m: &str| modes.split(',').any(|x| x == m);
    let hz = clock_ticks();
    // Warm-up: connections, allocator, blocking threads.
    for k in 0..4 {
        target.page(k * PAGE, true, true).await?;
    }
    println!("mode       round  invoices  µs CPU/invoice (user+sys)  user  sys  bytes/invoice");
    for round in 1..=rounds {
        for (mode, only_data, expand) in [
            ("onlyData", true, true),
            ("links", false, true),
            ("header", true, false),
        ] {
            if !on(mode) {
                continue;
            }
            let before = cpu_of(pid, hz)?;
            let (mut rows, mut bytes, mut offset) = (0u64, 0u64, 0u64);
            loop {
                let (n, b, more) = target.page(offset, only_data, expand).await?;
                rows += n;
                bytes += b;
                offset += n;
                if !more || n == 0 {
                    break;
                }
            }
            let after = cpu_of(pid, hz)?;
            report(mode, round, rows, bytes, before, after);
        }
        if !on("same") {
            continue;
        }
        let pages = (invoices / PAGE).max(1);
        let before = cpu_of(pid, hz)?;
        let (mut rows, mut bytes) = (0u64, 0u64);
        for _ in 0..pages {
            let (n, b, _) = target.page(0, true, true).await?;
            rows += n;
            bytes += b;
        }
        let after = cpu_of(pid, hz)?;
        report("same", round, rows, bytes, before, after);
    }
    Ok(())
}

fn report(mode: &str, round: u32, rows: u64, bytes: u64, before: (f64, f64), after: (f64, f64)) {
    let per = |s: f64| s * 1e6 / rows.max(1) as f64;
    let (user, system) = (after.0 - before.0, after.1 - before.1);
    println!(
        "{mode:<10} {round:>5}  {rows:>8}  {:>25.2}  {:>4.2}  {:>3.2}  {:>13}",
        per(user + system),
        per(user),
        per(system),
        bytes / rows.max(1)
    );
}

fn measure(invoices: u64, rounds: u32, modes: &str) -> Result<()> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["--serve", &invoices.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let stdout = child.stdout.take().context("child stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let start: Value = serde_json::from_str(&line).context("start line")?;
    let s = |k: &str| {
        start[k]
            .as_str()
            .map(str::to_owned)
            .context("start line member")
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let http = reqwest::Client::new();
        let token: Value = http
            .post(s("token_url")?)
            .basic_auth(s("client_id")?, Some(s("client_secret")?))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", s("scope")?.as_str()),
            ])
            .send()
            .await?
            .json()
            .await?;
        let target = Target {
            base_url: s("base_url")?,
            token: token["access_token"]
                .as_str()
                .context("access_token")?
                .to_owned(),
            http,
        };
        println!(
            "sandbox pid {pid}, {invoices} invoices, pages of {PAGE}, framework version 3, expand={EXPAND}"
        );
        run(&target, pid, invoices, rounds, modes).await
    });
    drop(child.stdin.take());
    let _ = child.wait();
    result
}
