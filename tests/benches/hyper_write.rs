//! Benchmark: rows/s written into a `.hyper` file through `mlc_hyper`'s
//! checked writer, next to hyperd's own limit measured in the same run.
//!
//! - *hyperd limit*: HyperBinary bytes encoded before the clock starts, sent
//!   straight through `COPY ... FROM STDIN WITH (FORMAT hyperbinary)` in
//!   1 MB messages: no per-value work at all.
//! - *writer*: `HyperWriter::write_rows` over borrowed `Row`s: every value
//!   checked against its column, decimals rescaled, encoded, streamed.
//!
//! Both write the same 12-column rows (a pool of distinct rows cycled to the
//! row count, so no time goes into making test data) into a new file each
//! round; rounds alternate so machine noise hits both alike. The best round
//! of each is reported, with the ratio.
//!
//! Run: `cargo bench -p mlc-e2e --bench hyper_write --features hyper`.
//! `HYPER_BENCH_ROWS` (default 1,000,000) and `HYPER_BENCH_ROUNDS`
//! (default 3) tune it.
#![allow(missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mlc_common::time::{parse_date, parse_timestamp};
use mlc_common::{Column, ColumnType, Decimal, Row, Schema, Value};
use mlc_hyper::bytes::Bytes;
use mlc_hyper::encode::{HEADER, RowEncoder};
use mlc_hyper::futures::SinkExt;
use mlc_hyper::{HyperSession, HyperWriter, Hyperd, HyperdConfig, TableName};

const POOL: usize = 10_000;

fn schema() -> Schema {
    let col = |name: &str, ty, nullable| Column {
        name: name.into(),
        ty,
        nullable,
        key: false,
    };
    let money = ColumnType::Decimal {
        precision: 18,
        scale: 2,
    };
    Schema {
        columns: vec![
            col("InvoiceId", ColumnType::Integer, false),
            col("InvoiceNumber", ColumnType::Text, false),
            col("SupplierName", ColumnType::Text, true),
            col("InvoiceAmount", money, false),
            col("TaxAmount", money, true),
            col("ExchangeRate", ColumnType::Double, true),
            col("Paid", ColumnType::Boolean, false),
            col("InvoiceDate", ColumnType::Date, false),
            col("DueDate", ColumnType::Date, true),
            col("LastUpdateDate", ColumnType::Timestamp, false),
            col("Currency", ColumnType::Text, false),
            col("LineCount", ColumnType::Integer, true),
        ],
    }
}

fn pool() -> Result<Vec<Row>> {
    let base_day = parse_date("2024-01-01")?;
    let base_ts = parse_timestamp("2024-01-01T00:00:00Z")?;
    let currencies = ["USD", "EUR", "GBP", "JPY"];
    let mut rows = Vec::with_capacity(POOL);
    for i in 0..POOL {
        let n = i as i64;
        let maybe = |v: Value| if i % 7 == 3 { Value::Null } else { v };
        rows.push(Row {
            source: i as u32,
            values: vec![
                Value::Integer(300_000 + n),
                Value::Text(format!("INV-{:08}", n * 37 % 99_991)),
                maybe(Value::Text(format!("Supplier {} Holdings Ltd", n % 613))),
                // Mapped decimals arrive at their source scale (often 1 or
                // 0 digits): the writer must rescale them to 2.
                Value::Decimal(Decimal::new(i128::from(n * 12_345 % 9_999_999), 1)),
                maybe(Value::Decimal(Decimal::new(i128::from(n % 10_000), 2))),
                maybe(Value::Double(1.0 + (n % 1000) as f64 / 1024.0)),
                Value::Boolean(i % 3 == 0),
                Value::Date(base_day + (i % 700) as i32),
                maybe(Value::Date(base_day + 30 + (i % 700) as i32)),
                Value::Timestamp(base_ts + n * 1_000_003),
                Value::Text(currencies[i % currencies.len()].into()),
                maybe(Value::Integer(n % 40)),
            ],
        });
    }
    Ok(rows)
}

/// hyperd alone: pre-encoded bytes straight through COPY.
async fn raw_copy(
    hyperd: &Hyperd,
    path: &Path,
    schema: &Schema,
    chunk: &Bytes,
    rows: usize,
) -> Result<Duration> {
    let table = TableName::extract();
    // The same file setup as the writer, then detach and reattach for COPY.
    let writer = HyperWriter::create(hyperd, path, table.clone(), schema).await?;
    writer.finish().await?;
    let session = HyperSession::connect(hyperd).await?;
    session.attach(path, "raw").await?;
    let started = Instant::now();
    let sink = session
        .client()
        .copy_in::<_, Bytes>(&format!(
            "COPY {} FROM STDIN WITH (FORMAT hyperbinary)",
            table.qualified("raw")
        ))
        .await?;
    let mut sink = std::pin::pin!(sink);
    sink.send(Bytes::from_static(&HEADER)).await?;
    for _ in 0..rows / POOL {
        sink.send(chunk.clone()).await?;
    }
    let stored = sink.as_mut().finish().await?;
    let elapsed = started.elapsed();
    session.detach("raw").await?;
    if stored != (rows / POOL * POOL) as u64 {
        bail!("raw COPY stored {stored} rows, expected {rows}");
    }
    Ok(elapsed)
}

/// The checked writer.
async fn writer(
    hyperd: &Hyperd,
    path: &Path,
    schema: &Schema,
    pool: &[Row],
    rows: usize,
) -> Result<Duration> {
    let mut writer = HyperWriter::create(hyperd, path, TableName::extract(), schema).await?;
    let started = Instant::now();
    let report = writer
        .write_rows((0..rows / POOL * POOL).map(|i| &pool[i % POOL]))
        .await?;
    let elapsed = started.elapsed();
    let summary = writer.finish().await?;
    if !report.rejects.is_empty() || summary.rows_written != (rows / POOL * POOL) as u64 {
        bail!(
            "writer stored {} rows with {} rejects",
            summary.rows_written,
            report.rejects.len()
        );
    }
    Ok(elapsed)
}

fn env_usize(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v}")),
        Err(_) => Ok(default),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let rows = env_usize("HYPER_BENCH_ROWS", 1_000_000)?.max(POOL);
    let rounds = env_usize("HYPER_BENCH_ROUNDS", 3)?.max(1);
    let dir = tempfile::tempdir()?;
    let hyperd = Hyperd::start(HyperdConfig {
        log_dir: dir.path().join("logs"),
        ..HyperdConfig::default()
    })
    .await?;
    let schema = schema();
    let pool = pool()?;
    let encoder = RowEncoder::new(&schema);
    let mut encoded = Vec::new();
    for row in &pool {
        encoder
            .encode_row(row, &mut encoded)
            .map_err(|r| anyhow::anyhow!("pool row refused: {r:?}"))?;
    }
    let chunk = Bytes::from(encoded);
    let rows = rows / POOL * POOL;
    println!(
        "hyper_write: {rows} rows x {} columns, {} bytes/row encoded, {rounds} rounds",
        schema.columns.len(),
        chunk.len() / POOL
    );

    // The writer's own CPU cost: checking and encoding alone, no I/O.
    let started = Instant::now();
    let mut buf = Vec::with_capacity(2 << 20);
    let mut encoded_bytes = 0usize;
    for i in 0..rows {
        encoder
            .encode_row(&pool[i % POOL], &mut buf)
            .map_err(|r| anyhow::anyhow!("pool row refused: {r:?}"))?;
        if buf.len() >= 1 << 20 {
            encoded_bytes += buf.len();
            buf.clear();
        }
    }
    encoded_bytes += buf.len();
    let encode_only = started.elapsed();
    println!(
        "encode only (checks + HyperBinary, no I/O): {:.0} rows/s ({:.2} s, {encoded_bytes} bytes)",
        rows as f64 / encode_only.as_secs_f64(),
        encode_only.as_secs_f64()
    );

    let mut best_raw = Duration::MAX;
    let mut best_writer = Duration::MAX;
    for round in 0..rounds {
        let raw_path = dir.path().join(format!("raw-{round}.hyper"));
        let raw = raw_copy(&hyperd, &raw_path, &schema, &chunk, rows).await?;
        let file_bytes = std::fs::metadata(&raw_path)?.len();
        std::fs::remove_file(&raw_path)?;
        let w_path = dir.path().join(format!("writer-{round}.hyper"));
        let w = writer(&hyperd, &w_path, &schema, &pool, rows).await?;
        std::fs::remove_file(&w_path)?;
        println!(
            "round {round}: hyperd limit {:>9.0} rows/s ({:.2} s), writer {:>9.0} rows/s ({:.2} s), file {:.1} MB",
            rows as f64 / raw.as_secs_f64(),
            raw.as_secs_f64(),
            rows as f64 / w.as_secs_f64(),
            w.as_secs_f64(),
            file_bytes as f64 / 1e6
        );
        best_raw = best_raw.min(raw);
        best_writer = best_writer.min(w);
    }
    let raw_rate = rows as f64 / best_raw.as_secs_f64();
    let writer_rate = rows as f64 / best_writer.as_secs_f64();
    println!(
        "best: hyperd limit {raw_rate:.0} rows/s, writer {writer_rate:.0} rows/s, ratio {:.2}x (goal >= 0.80x)",
        writer_rate / raw_rate
    );
    hyperd.shutdown().await?;
    Ok(())
}
