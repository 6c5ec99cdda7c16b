//! How fast the sandbox serves a full pull, over loopback HTTP.
//!
//! `cargo run --release -p mlc-sandbox-oracle --example serve_speed -- 200000 1`
//! (invoices, records sharing one base timestamp). Walks all invoices
//! twice, 499 per page with `onlyData=true`: once by key-set continuation
//! on `(LastUpdateDate, InvoiceId)`, once by offsets under a
//! `LastUpdateDate >=` window, and prints rows per second and the
//! process's peak memory.

use std::time::Instant;

use anyhow::{Context as _, Result, anyhow};
use mlc_sandbox_oracle::{OracleSandbox, SandboxConfig};
use serde_json::Value;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn page(
    http: &reqwest::Client,
    sb: &OracleSandbox,
    token: &str,
    q: &[(&str, String)],
) -> Result<Value> {
    let resp = http
        .get(format!("{}/invoices", sb.base_url()))
        .bearer_auth(token)
        .header("REST-Framework-Version", "2")
        .query(q)
        .send()
        .await?;
    let status = resp.status();
    let body: Value = resp.json().await?;
    if !status.is_success() {
        return Err(anyhow!("{status}: {body}"));
    }
    Ok(body)
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let invoices: u64 = args
        .next()
        .map_or(Ok(200_000), |a| a.parse())
        .context("invoices")?;
    let same: u64 = args
        .next()
        .map_or(Ok(1), |a| a.parse())
        .context("same timestamp")?;
    let started = Instant::now();
    let sb = OracleSandbox::start(SandboxConfig {
        invoices,
        same_timestamp: same,
        ..SandboxConfig::default()
    })
    .await?;
    println!(
        "start: {:.3} s for {invoices} invoices",
        started.elapsed().as_secs_f64()
    );
    let http = reqwest::Client::new();
    let token: Value = http
        .post(sb.token_url())
        .basic_auth(sb.client_id(), Some(sb.client_secret().expose()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", sb.scope().as_str()),
        ])
        .send()
        .await?
        .json()
        .await?;
    let token = token["access_token"].as_str().context("token")?.to_owned();
    let order = ("orderBy", "LastUpdateDate:asc,InvoiceId:asc".to_owned());
    let common = [
        ("onlyData", "true".to_owned()),
        ("limit", "499".to_owned()),
        order,
    ];

    // Key-set continuation.
    let t = Instant::now();
    let (mut rows, mut pages) = (0u64, 0u64);
    let mut cursor: Option<(String, i64)> = None;
    loop {
        let q = match &cursor {
            None => "LastUpdateDate >= '2000-01-01T00:00:00+00:00'".to_owned(),
            Some((ts, id)) => {
                format!("LastUpdateDate > '{ts}' or (LastUpdateDate = '{ts}' and InvoiceId > {id})")
            }
        };
        let mut params = common.to_vec();
        params.push(("q", q));
        let body = page(&http, &sb, &token, &params).await?;
        let items = body["items"].as_array().context("items")?;
        pages += 1;
        rows += items.len() as u64;
        if let Some(last) = items.last() {
            cursor = Some((
                last["LastUpdateDate"].as_str().context("ts")?.to_owned(),
                last["InvoiceId"].as_i64().context("id")?,
            ));
        }
        if body["hasMore"] != true {
            break;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "key-set walk: {rows} rows, {pages} pages, {secs:.2} s, {:.0} rows/s, peak RSS {:.0} MiB",
        rows as f64 / secs,
        peak_rss_mib()
    );

    // Offset paging under a window.
    let t = Instant::now();
    let (mut rows, mut pages, mut offset) = (0u64, 0u64, 0u64);
    loop {
        let mut params = common.to_vec();
        params.push((
            "q",
            "LastUpdateDate >= '2000-01-01T00:00:00+00:00'".to_owned(),
        ));
        params.push(("offset", offset.to_string()));
        let body = page(&http, &sb, &token, &params).await?;
        let n = body["count"].as_u64().context("count")?;
        pages += 1;
        rows += n;
        offset += n;
        if body["hasMore"] != true {
            break;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "offset walk:  {rows} rows, {pages} pages, {secs:.2} s, {:.0} rows/s, peak RSS {:.0} MiB",
        rows as f64 / secs,
        peak_rss_mib()
    );
    println!("requests served: {}", sb.request_count());
    sb.shutdown().await;
    Ok(())
}
