//! Benchmark: mapping realistic ~1 KB Oracle invoice records, in records
//! per second on one thread, for batches of 1, 100 and 1,000:
//!
//! - `native serde`: the mapping written by hand in Rust (a serde-derive
//!   struct borrowing from the record, amounts as raw JSON text), the
//!   baseline;
//! - `scripted-core native`: the mapping script `mappings/bench/invoices.toml`
//!   run by `mlc-scripted-core` natively;
//! - `scripted (wasm)`: the same script in the `scripted` component, through
//!   the plugin runtime (fresh store per call, default limits: epoch
//!   deadline and memory cap);
//! - `gl-journal-lines (wasm)`: the custom example plugin, resource
//!   `invoices`.
//!
//! Also: the per-call overhead (an empty batch through the runtime) and the
//! load time of the scripted component, cold (compile) and cached.
//!
//! Run: `cargo xtask build-plugins`, then
//! `cargo bench -p mlc-e2e --bench plugin_mapping --features plugin`.
//! Figures go to `tests/benches/plugin_mapping.md`.
#![allow(missing_docs)]

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mlc_common::time::{parse_date, parse_timestamp};
use mlc_common::{Decimal, MappedBatch, Reject, Row, Value};
use mlc_plugin::{NoReferenceData, PluginRuntime, RuntimeConfig};
use mlc_scripted_core::{MemoryReference, Script};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

const BATCHES: [usize; 3] = [1, 100, 1000];
const POOL: usize = 1000;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A built component: `target/plugins/<name>.wasm` or the raw cargo output.
fn component(name: &str, package: &str) -> Option<(PathBuf, Vec<u8>)> {
    let root = workspace_root();
    let mut targets = vec![root.join("target")];
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        targets.insert(0, PathBuf::from(dir));
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("ML_CONNECTOR_PLUGINS_BUILT") {
        candidates.push(PathBuf::from(dir).join(format!("{name}.wasm")));
    }
    for t in targets {
        candidates.push(t.join(format!("plugins/{name}.wasm")));
        candidates.push(t.join(format!(
            "wasm32-wasip2/plugin/{}.wasm",
            package.replace('-', "_")
        )));
    }
    candidates
        .into_iter()
        .find(|p| p.exists())
        .and_then(|p| std::fs::read(&p).ok().map(|bytes| (p, bytes)))
}

// ---------------------------------------------------------------- records

const SUPPLIERS: [(&str, &str); 8] = [
    ("Acme Office Supply Inc", "1000"),
    ("Globex Logistics LLC", "1001"),
    ("Initech Industrial Ltd", "1002"),
    ("Umbrella Consulting Corp", "1003"),
    ("Stark Foods Inc", "1004"),
    ("Wayne Metals LLC", "1005"),
    ("Wonka Software Ltd", "1006"),
    ("Soylent Energy Corp", "1007"),
];

/// Realistic invoice items as Oracle sends them (~1 KB each): every header
/// field, audit columns, mixed flag styles (JSON bool and "Y"/"N"),
/// timestamps with and without milliseconds, null amounts, and `links`.
fn records(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let id = 300_100_412_233_000u64 + i as u64;
            let (supplier, number) = SUPPLIERS[i % SUPPLIERS.len()];
            let cents = 1_000 + (i as u64 * 7_919) % 5_000_000;
            let amount = format!("{}.{:02}", cents / 100, cents % 100);
            let paid = if i % 3 == 0 { amount.clone() } else if i % 7 == 0 { "null".into() } else { "0".into() };
            let day = 1 + i % 28;
            let accounting = if i % 11 == 0 { "null".to_owned() } else { format!("\"2024-05-{day:02}\"") };
            let canceled = match i % 4 {
                0 => "false",
                1 => "\"N\"",
                2 => "\"Y\"",
                _ => "true",
            };
            let lud = if i % 2 == 0 {
                format!("2024-05-{day:02}T09:{:02}:51.{:03}+00:00", i % 60, i % 1000)
            } else {
                format!("2024-05-{day:02}T09:{:02}:51-07:00", i % 60)
            };
            format!(
                concat!(
                    r#"{{"InvoiceId":{id},"InvoiceNumber":"INV-{num:09}","InvoiceAmount":{amount},"AmountPaid":{paid},"#,
                    r#""InvoiceCurrency":"USD","PaymentCurrency":"USD","InvoiceDate":"2024-05-{day:02}","AccountingDate":{accounting},"#,
                    r#""BusinessUnit":"US1 Business Unit","Supplier":"{supplier}","SupplierNumber":"{number}","SupplierSite":"US1 MAIN {number}","#,
                    r#""LegalEntity":"US1 Legal Entity","InvoiceType":"Standard","InvoiceSource":"Manual Invoice Entry","#,
                    r#""Description":"Office supplies order \"Q2\" #{i}","PaymentTerms":"Net 30","ValidationStatus":"Validated","#,
                    r#""ApprovalStatus":"Approved","PaidStatus":"Unpaid","AccountingStatus":"Accounted","CanceledFlag":{canceled},"#,
                    r#""LiabilityDistribution":"101-1100-2100-000-100","CreationDate":"2024-05-{day:02}T08:00:00.000+00:00","#,
                    r#""CreatedBy":"AP.CLERK","LastUpdateDate":"{lud}","LastUpdatedBy":"AP.MANAGER","#,
                    r#""links":[{{"rel":"self","href":"https://acme.fa.us2.oraclecloud.com/fscmRestApi/resources/11.13.18.05/invoices/{id}","#,
                    r#""name":"invoices","kind":"item","properties":{{"changeIndicator":"ACED0005737200136A6176612E7574696C2E41727261794C697374"}}}},"#,
                    r#"{{"rel":"child","href":"https://acme.fa.us2.oraclecloud.com/fscmRestApi/resources/11.13.18.05/invoices/{id}/child/invoiceLines","#,
                    r#""name":"invoiceLines","kind":"collection"}}]}}"#
                ),
                id = id,
                num = i + 1,
                amount = amount,
                paid = paid,
                day = day,
                accounting = accounting,
                supplier = supplier,
                number = number,
                i = i,
                canceled = canceled,
                lud = lud,
            )
        })
        .collect()
}

// --------------------------------------------------------- native baseline

/// The 12 fields, borrowed from the record; amounts stay JSON text.
#[derive(Deserialize)]
struct Invoice<'a> {
    #[serde(rename = "InvoiceId")]
    invoice_id: i64,
    #[serde(rename = "InvoiceNumber", borrow)]
    invoice_number: Cow<'a, str>,
    #[serde(rename = "InvoiceAmount", borrow)]
    invoice_amount: &'a RawValue,
    #[serde(rename = "AmountPaid", borrow, default)]
    amount_paid: Option<&'a RawValue>,
    #[serde(rename = "InvoiceCurrency", borrow)]
    currency: Cow<'a, str>,
    #[serde(rename = "InvoiceDate", borrow)]
    invoice_date: Cow<'a, str>,
    #[serde(rename = "AccountingDate", borrow, default)]
    accounting_date: Option<Cow<'a, str>>,
    #[serde(rename = "Supplier", borrow)]
    supplier: Cow<'a, str>,
    #[serde(rename = "SupplierNumber", borrow)]
    supplier_number: Cow<'a, str>,
    #[serde(rename = "BusinessUnit", borrow)]
    business_unit: Cow<'a, str>,
    #[serde(rename = "CanceledFlag", deserialize_with = "flag")]
    canceled: bool,
    #[serde(rename = "LastUpdateDate", borrow)]
    last_update: Cow<'a, str>,
}

/// A flag sent as JSON bool or as "Y"/"N".
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a boolean or Y/N")
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<bool, E> {
            match v {
                "Y" | "y" => Ok(true),
                "N" | "n" => Ok(false),
                _ => Err(E::custom(format!("{v:?} is not Y/N"))),
            }
        }
    }
    d.deserialize_any(V)
}

fn native_record(text: &str) -> Result<Vec<Value>, String> {
    let r: Invoice<'_> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let dec = |raw: &RawValue| -> Result<Value, String> {
        Decimal::parse(raw.get())
            .and_then(|d| d.fit(18, 2))
            .map(Value::Decimal)
            .map_err(|e| e.to_string())
    };
    Ok(vec![
        Value::Integer(r.invoice_id),
        Value::Text(r.invoice_number.into_owned()),
        dec(r.invoice_amount)?,
        match r.amount_paid {
            Some(raw) => dec(raw)?,
            None => Value::Null,
        },
        Value::Text(r.currency.into_owned()),
        Value::Date(parse_date(&r.invoice_date).map_err(|e| e.to_string())?),
        match r.accounting_date {
            Some(d) => Value::Date(parse_date(&d).map_err(|e| e.to_string())?),
            None => Value::Null,
        },
        Value::Text(r.supplier.into_owned()),
        Value::Text(r.supplier_number.into_owned()),
        Value::Text(r.business_unit.into_owned()),
        Value::Boolean(r.canceled),
        Value::Timestamp(parse_timestamp(&r.last_update).map_err(|e| e.to_string())?),
    ])
}

fn native_batch(records: &[String]) -> MappedBatch {
    let mut out = MappedBatch {
        rows: Vec::with_capacity(records.len()),
        rejects: Vec::new(),
    };
    for (i, text) in records.iter().enumerate() {
        match native_record(text) {
            Ok(values) => out.rows.push(Row {
                source: i as u32,
                values,
            }),
            Err(reason) => out.rejects.push(Reject {
                index: i as u32,
                field: None,
                reason,
            }),
        }
    }
    out
}

// ------------------------------------------------------------- measuring

fn block_on<F: std::future::Future>(fut: F) -> Result<F::Output> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(fut))
}

/// Records per second mapping `pool` in batches of `batch`: the median of
/// `rounds` rounds of about `round` each.
fn throughput(
    pool: &[String],
    batch: usize,
    round: Duration,
    rounds: usize,
    mut f: impl FnMut(&[String]) -> Result<usize>,
) -> Result<f64> {
    // warm-up
    for chunk in pool.chunks(batch).take(3) {
        f(chunk)?;
    }
    let mut rates = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let mut done = 0usize;
        while started.elapsed() < round {
            for chunk in pool.chunks(batch) {
                done += f(chunk)?;
                if batch < pool.len() && started.elapsed() >= round {
                    break;
                }
            }
        }
        rates.push(done as f64 / started.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    Ok(rates[rates.len() / 2])
}

fn fmt_rate(r: f64) -> String {
    let r = r.round() as u64;
    let s = r.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn main() -> Result<()> {
    // New components compile in a worker: this bench is its own.
    mlc_plugin::serve_if_worker();
    let quick = cfg!(debug_assertions) || std::env::var_os("ML_CONNECTOR_BENCH_QUICK").is_some();
    let (round, rounds) = if quick {
        (Duration::from_millis(100), 1)
    } else {
        (Duration::from_millis(700), 5)
    };
    let pool = records(POOL);
    let avg = pool.iter().map(String::len).sum::<usize>() / pool.len();
    let script_path = workspace_root().join("mappings/bench/invoices.toml");
    let script_text =
        std::fs::read_to_string(&script_path).with_context(|| script_path.display().to_string())?;
    let script = Script::compile(&script_text)
        .map_err(|e| anyhow::anyhow!("{}", e.with_file(script_path.display().to_string())))?;

    // Every implementation must give the same rows before it is timed.
    let expected = native_batch(&pool);
    if !expected.rejects.is_empty() {
        bail!(
            "native baseline rejected records: {:?}",
            &expected.rejects[..1]
        );
    }
    let core = script.map_batch("invoices", &pool, &mut MemoryReference::default())?;
    if core != expected {
        bail!("scripted-core native differs from the native baseline");
    }

    let runtime = PluginRuntime::new(RuntimeConfig {
        reference: Arc::new(NoReferenceData),
        ..RuntimeConfig::default()
    })?;
    let (scripted_path, scripted_wasm) = component("scripted", "mlc-plugin-scripted")
        .context("the scripted component is not built: run `cargo xtask build-plugins`")?;
    block_on(runtime.load(
        "bench",
        "scripted",
        scripted_wasm.clone(),
        Some(script_text.clone()),
    ))??;
    let (wasm_batch, _) = runtime.map_batch_blocking("bench", "scripted", "invoices", &pool)?;
    if wasm_batch != expected {
        bail!("the scripted component differs from the native baseline");
    }
    let gl = match component("gl-journal-lines", "mlc-plugin-gl-journal-lines") {
        Some((_, wasm)) => match block_on(runtime.load("bench", "gl", wasm, None))? {
            Ok(_) => true,
            Err(e) => {
                eprintln!("gl-journal-lines not measured: {e:#}");
                false
            }
        },
        None => {
            eprintln!("gl-journal-lines not measured: component not built");
            false
        }
    };

    // ML_CONNECTOR_BENCH_ONLY=wasm times only the sandboxed scripted path (for
    // profiling it with perf); the other columns read 0.
    let only_wasm = std::env::var("ML_CONNECTOR_BENCH_ONLY").as_deref() == Ok("wasm");
    // ML_CONNECTOR_BENCH_BATCH=<n> times only that batch size.
    let only_batch: Option<usize> = std::env::var("ML_CONNECTOR_BENCH_BATCH")
        .ok()
        .and_then(|b| b.parse().ok());
    let mut table = Vec::new();
    for &batch in BATCHES
        .iter()
        .filter(|&&b| only_batch.is_none_or(|o| o == b))
    {
        if only_wasm {
            let wasm = throughput(&pool, batch, round, rounds, |c| {
                std::hint::black_box(
                    runtime.map_batch_blocking("bench", "scripted", "invoices", c)?,
                );
                Ok(c.len())
            })?;
            table.push((batch, 0.0, 0.0, wasm, None));
            continue;
        }
        let native = throughput(&pool, batch, round, rounds, |c| {
            std::hint::black_box(native_batch(c));
            Ok(c.len())
        })?;
        let core = throughput(&pool, batch, round, rounds, |c| {
            std::hint::black_box(script.map_batch(
                "invoices",
                c,
                &mut MemoryReference::default(),
            )?);
            Ok(c.len())
        })?;
        let wasm = throughput(&pool, batch, round, rounds, |c| {
            std::hint::black_box(runtime.map_batch_blocking("bench", "scripted", "invoices", c)?);
            Ok(c.len())
        })?;
        let custom = if gl {
            Some(throughput(&pool, batch, round, rounds, |c| {
                std::hint::black_box(runtime.map_batch_blocking("bench", "gl", "invoices", c)?);
                Ok(c.len())
            })?)
        } else {
            None
        };
        table.push((batch, native, core, wasm, custom));
    }

    // Per-call overhead: an empty batch (fresh store, instantiate,
    // configure, call).
    let empty: Vec<String> = Vec::new();
    let calls = if quick { 50 } else { 2000 };
    let started = Instant::now();
    for _ in 0..calls {
        runtime.map_batch_blocking("bench", "scripted", "invoices", &empty)?;
    }
    let per_call = started.elapsed() / calls;
    let gl_per_call = if gl {
        let started = Instant::now();
        for _ in 0..calls {
            runtime.map_batch_blocking("bench", "gl", "invoices", &empty)?;
        }
        Some(started.elapsed() / calls)
    } else {
        None
    };

    // Load: cold (compile) and from the on-disk cache.
    let cache = tempfile::tempdir()?;
    let load = |name: &str| -> Result<Duration> {
        let rt = PluginRuntime::new(RuntimeConfig {
            cache_dir: Some(cache.path().to_path_buf()),
            ..RuntimeConfig::default()
        })?;
        let started = Instant::now();
        block_on(rt.load(
            "bench",
            name,
            scripted_wasm.clone(),
            Some(script_text.clone()),
        ))??;
        Ok(started.elapsed())
    };
    let cold = load("cold")?;
    let cached = load("cached")?;

    println!(
        "plugin_mapping: {} records of {avg} bytes on average; script {}; component {} ({} KB){}",
        pool.len(),
        script_path.display(),
        scripted_path.display(),
        scripted_wasm.len() / 1024,
        if quick {
            "; QUICK/DEBUG RUN: figures are not meaningful"
        } else {
            ""
        }
    );
    println!();
    println!(
        "| batch | native serde | scripted-core native | scripted (wasm) | wasm / native | gl-journal-lines (wasm) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for (batch, native, core, wasm, custom) in &table {
        println!(
            "| {batch} | {} | {} | {} | {:.2}x | {} |",
            fmt_rate(*native),
            fmt_rate(*core),
            fmt_rate(*wasm),
            wasm / native,
            custom.map(fmt_rate).unwrap_or_else(|| "n/a".into()),
        );
    }
    println!();
    println!("records/s, one thread, median of {rounds} rounds of {round:?}");
    println!(
        "per-call overhead (empty batch through the runtime): scripted {:.1} µs{}",
        per_call.as_secs_f64() * 1e6,
        gl_per_call
            .map(|d| format!(", gl-journal-lines {:.1} µs", d.as_secs_f64() * 1e6))
            .unwrap_or_default()
    );
    println!(
        "load of the scripted component (compile or cache, validate, configure): cold {:.1} ms, cached {:.1} ms",
        cold.as_secs_f64() * 1e3,
        cached.as_secs_f64() * 1e3
    );
    Ok(())
}
