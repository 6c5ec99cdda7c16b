//! Benchmark: end-to-end rows/s of writing a `.hyper` extract and
//! publishing it into the Tableau sandbox, then of keeping it current with
//! upsert batches (payload written, uploaded, *Update Data in Hyper* job
//! applied by the sandbox and confirmed by polling).
//!
//! - *full extract*: 1,000,000 rows × 12 mixed columns written with
//!   `HyperWriter`, then `TableauClient::publish` (chunked upload with the
//!   default 50 MB chunks when the file is bigger).
//! - *upserts*: 10 batches of 10,000 rows (half updates of existing keys,
//!   half new keys), each written as a payload and applied with
//!   `TableauClient::update_data`, one after the other as a pipeline does.
//!
//! The sandbox and hyperd run on the same machine as the client, so every
//! figure includes the server side's work (the sandbox applies each upsert
//! through hyperd). Rows are generated in slices of 50,000, so the whole
//! extract is never in memory.
//!
//! Run: `cargo bench -p mlc-e2e --bench tableau_publish --features tableau-client`.
//! `TABLEAU_BENCH_ROWS` (default 1,000,000), `TABLEAU_BENCH_BATCHES`
//! (default 10), `TABLEAU_BENCH_BATCH_ROWS` (default 10,000) and
//! `TABLEAU_BENCH_CHUNK_MB` (default 50, the client's default) tune it.
#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mlc_common::{Column, ColumnType, Decimal, Row, Schema, Value};
use mlc_hyper::{HyperWriter, Hyperd, HyperdConfig, TableName};
use mlc_sandbox_tableau::{TableauSandbox, TableauSandboxConfig};
use mlc_tableau::{
    PayloadPart, PublishMode, TableauClient, TableauConfig, UpdateBatch, UploadProgress,
};

const SLICE: i64 = 50_000;

fn schema() -> Schema {
    let col = |name: &str, ty, nullable, key| Column {
        name: name.into(),
        ty,
        nullable,
        key,
    };
    let money = ColumnType::Decimal {
        precision: 18,
        scale: 2,
    };
    Schema {
        columns: vec![
            col("InvoiceId", ColumnType::Integer, false, true),
            col("InvoiceNumber", ColumnType::Text, false, false),
            col("SupplierName", ColumnType::Text, true, false),
            col("InvoiceAmount", money, false, false),
            col("TaxAmount", money, true, false),
            col("ExchangeRate", ColumnType::Double, true, false),
            col("Paid", ColumnType::Boolean, false, false),
            col("InvoiceDate", ColumnType::Date, false, false),
            col("DueDate", ColumnType::Date, true, false),
            col("LastUpdateDate", ColumnType::Timestamp, false, false),
            col("Currency", ColumnType::Text, false, false),
            col("LineCount", ColumnType::Integer, true, false),
        ],
    }
}

/// Invoice `id` at `version`.
fn row(id: i64, version: i64) -> Row {
    let currencies = ["USD", "EUR", "GBP", "JPY"];
    Row {
        source: 0,
        values: vec![
            Value::Integer(id),
            Value::Text(format!("INV-{id:08}")),
            if id % 11 == 0 {
                Value::Null
            } else {
                Value::Text(format!("Supplier {} Ltd", id % 5_000))
            },
            Value::Decimal(Decimal {
                unscaled: i128::from(id * 37 % 10_000_000 + version),
                scale: 2,
            }),
            if id % 3 == 0 {
                Value::Null
            } else {
                Value::Decimal(Decimal {
                    unscaled: i128::from(id % 100_000),
                    scale: 2,
                })
            },
            if id % 4 == 0 {
                Value::Null
            } else {
                Value::Double(1.0 + (id % 1000) as f64 / 1000.0)
            },
            Value::Boolean((id + version) % 2 == 0),
            Value::Date(19_000 + (id % 2_000) as i32),
            if id % 5 == 0 {
                Value::Null
            } else {
                Value::Date(19_030 + (id % 2_000) as i32)
            },
            Value::Timestamp(1_700_000_000_000_000 + id * 1_000 + version * 1_000_000_000),
            Value::Text(currencies[(id % 4) as usize].into()),
            if id % 7 == 0 {
                Value::Null
            } else {
                Value::Integer(id % 40)
            },
        ],
    }
}

/// Writes rows `ids` at `version` into `table` of a new file.
async fn write(
    hyperd: &Hyperd,
    path: &Path,
    table: TableName,
    ids: impl Iterator<Item = i64>,
    version: i64,
) -> Result<u64> {
    let mut writer = HyperWriter::create(hyperd, path, table, &schema()).await?;
    let mut slice = Vec::with_capacity(SLICE as usize);
    for id in ids {
        slice.push(row(id, version));
        if slice.len() == SLICE as usize {
            let report = writer.write_rows(&slice).await?;
            if !report.rejects.is_empty() {
                bail!("rejects: {:?}", &report.rejects[..1]);
            }
            slice.clear();
        }
    }
    let report = writer.write_rows(&slice).await?;
    if !report.rejects.is_empty() {
        bail!("rejects: {:?}", &report.rejects[..1]);
    }
    Ok(writer.finish().await?.file_bytes)
}

fn env_number(name: &str, default: i64) -> Result<i64> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

fn rate(rows: i64, took: Duration) -> String {
    format!("{:>10.0}", rows as f64 / took.as_secs_f64())
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} CPUs, {model}")
}

#[tokio::main]
async fn main() -> Result<()> {
    let rows = env_number("TABLEAU_BENCH_ROWS", 1_000_000)?;
    let batches = env_number("TABLEAU_BENCH_BATCHES", 10)?;
    let batch_rows = env_number("TABLEAU_BENCH_BATCH_ROWS", 10_000)?;
    let chunk_mb = env_number("TABLEAU_BENCH_CHUNK_MB", 50)?;
    let dir = tempfile::tempdir()?;
    let sandbox = TableauSandbox::start(TableauSandboxConfig {
        data_dir: dir.path().join("sandbox"),
        ..TableauSandboxConfig::default()
    })
    .await?;
    let hyperd = Hyperd::start(HyperdConfig {
        log_dir: dir.path().join("hyperd"),
        ..HyperdConfig::default()
    })
    .await?;
    let mut config = TableauConfig::new(
        sandbox.server_url(),
        sandbox.site_content_url(),
        sandbox.pat_name(),
        sandbox.pat_secret().clone(),
        sandbox.project_name(),
    );
    config.chunk_size = u64::try_from(chunk_mb)? * mlc_tableau::MB;
    config.job_poll.initial_ms = 20;
    config.job_poll.max_ms = 250;
    let client = TableauClient::new("bench", config)?;
    client.sign_in().await?;
    println!("machine: {}", machine());
    println!(
        "rows: {rows} × 12 columns; then {batches} upsert batches of {batch_rows} rows; chunk size {chunk_mb} MB"
    );

    // Full extract: write, then publish.
    let extract: PathBuf = dir.path().join("extract.hyper");
    let started = Instant::now();
    let bytes = write(&hyperd, &extract, TableName::extract(), 1..=rows, 0).await?;
    let wrote = started.elapsed();
    let chunks = Arc::new(AtomicU64::new(0));
    let counter = chunks.clone();
    client.set_upload_progress(Arc::new(move |p: &UploadProgress| {
        counter.fetch_max(p.chunk, Ordering::Relaxed);
    }));
    let ds = client
        .publish("bench_invoices", &extract, PublishMode::CreateNew)
        .await?;
    let total = started.elapsed();
    let chunks = chunks.swap(0, Ordering::Relaxed);
    let published = total - wrote;
    println!(
        "full extract: {:.1} MB ({}); write {:>6.2} s ({} rows/s), publish {:>6.2} s ({} rows/s), end-to-end {:>6.2} s ({} rows/s)",
        bytes as f64 / 1e6,
        if chunks == 0 {
            "one request".to_owned()
        } else {
            format!("{chunks} chunks")
        },
        wrote.as_secs_f64(),
        rate(rows, wrote),
        published.as_secs_f64(),
        rate(rows, published),
        total.as_secs_f64(),
        rate(rows, total),
    );

    // Upserts: half updates of existing keys, half new keys.
    let mut latencies = Vec::new();
    let mut payload_write = Duration::ZERO;
    let mut payload_bytes = 0;
    let started = Instant::now();
    let mut next_new = rows + 1;
    for b in 0..batches {
        let t = Instant::now();
        let half = batch_rows / 2;
        let updates = (0..half).map(|i| 1 + (b * half + i) * 7 % rows);
        let inserts = next_new..next_new + (batch_rows - half);
        next_new += batch_rows - half;
        let path = dir.path().join(format!("batch-{b}.hyper"));
        payload_bytes += write(
            &hyperd,
            &path,
            TableName::new("Extract", mlc_tableau::CHANGES_TABLE),
            updates.chain(inserts),
            b + 1,
        )
        .await?;
        payload_write += t.elapsed();
        client
            .update_data(&UpdateBatch {
                datasource_id: ds.id.clone(),
                datasource_name: ds.name.clone(),
                batch_id: format!("bench-{b:04}"),
                failed_attempts: 0,
                key_columns: vec!["InvoiceId".into()],
                parts: vec![PayloadPart {
                    path,
                    upserts: true,
                    deletes: false,
                }],
            })
            .await?;
        latencies.push(t.elapsed());
    }
    let took = started.elapsed();
    latencies.sort();
    let upserted = batches * batch_rows;
    println!(
        "upserts: {batches} × {batch_rows} rows ({:.1} MB of payloads) in {:>6.2} s: {} rows/s end-to-end (payload writing {:.2} s of it); batch latency median {:.0} ms, max {:.0} ms",
        payload_bytes as f64 / 1e6,
        took.as_secs_f64(),
        rate(upserted, took),
        payload_write.as_secs_f64(),
        latencies[latencies.len() / 2].as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3,
    );

    // The data source now holds every original key once plus the new ones.
    let expected = rows + batches * (batch_rows - batch_rows / 2);
    let stored = sandbox
        .datasource_file("bench_invoices")
        .context("data source missing in the sandbox")?;
    let copy = dir.path().join("check.hyper");
    std::fs::copy(&stored, &copy)?;
    let session = mlc_hyper::HyperSession::connect(&hyperd).await?;
    session.attach(&copy, "check").await?;
    let counted = session
        .query_rows(
            r#"SELECT COUNT(*), COUNT(DISTINCT "InvoiceId") FROM "check"."Extract"."Extract""#,
        )
        .await?;
    session.detach("check").await?;
    let n = match counted.first().map(|r| (&r[0], &r[1])) {
        Some((Value::Integer(n), Value::Integer(d))) if n == d => *n,
        other => bail!("unexpected count {other:?}"),
    };
    if n != expected {
        bail!("data source holds {n} rows, expected {expected}");
    }
    println!("check: {n} rows, all keys distinct");

    client.shutdown().await?;
    hyperd.shutdown().await?;
    sandbox.shutdown().await?;
    Ok(())
}
