//! A quick native timing of the mapping engine's hot path, for working on
//! the scanner and the conversions without the plugin runtime.
//!
//! ```text
//! cargo run --release -p mlc-scripted-core --example scan_bench [SECONDS]
//! ```
//!
//! It maps the benchmark script `mappings/bench/invoices.toml` over 1,000
//! generated ~1.3 KB invoice records shaped like the ones of
//! `tests/benches/plugin_mapping.rs` (wanted keys spread through the object,
//! a `links` tail to skip, mixed flag styles, null amounts), and prints the
//! median time per record of three phases: the scan alone, the scan plus the
//! conversion of every column, and `Script::map_batch`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mlc_common::ColumnType;
use mlc_scripted_core::eval::{Val, convert};
use mlc_scripted_core::json::{Raw, Table, scan_object};
use mlc_scripted_core::{MemoryReference, Script};

/// The bench script's source fields and column types, in column order.
const COLUMNS: [(&str, ColumnType); 12] = [
    ("InvoiceId", ColumnType::Integer),
    ("InvoiceNumber", ColumnType::Text),
    (
        "InvoiceAmount",
        ColumnType::Decimal {
            precision: 18,
            scale: 2,
        },
    ),
    (
        "AmountPaid",
        ColumnType::Decimal {
            precision: 18,
            scale: 2,
        },
    ),
    ("InvoiceCurrency", ColumnType::Text),
    ("InvoiceDate", ColumnType::Date),
    ("AccountingDate", ColumnType::Date),
    ("Supplier", ColumnType::Text),
    ("SupplierNumber", ColumnType::Text),
    ("BusinessUnit", ColumnType::Text),
    ("CanceledFlag", ColumnType::Boolean),
    ("LastUpdateDate", ColumnType::Timestamp),
];

fn record(i: usize) -> String {
    let id = 300_100_412_233_000u64 + i as u64;
    let supplier = [
        "Acme Office Supply Inc",
        "Globex Logistics LLC",
        "Stark Foods Inc",
    ][i % 3];
    let number = 1000 + i % 8;
    let cents = 1_000 + (i as u64 * 7_919) % 5_000_000;
    let amount = format!("{}.{:02}", cents / 100, cents % 100);
    let paid = match (i % 3, i % 7) {
        (0, _) => amount.clone(),
        (_, 0) => "null".to_owned(),
        _ => "0".to_owned(),
    };
    let day = 1 + i % 28;
    let accounting = if i.is_multiple_of(11) {
        "null".to_owned()
    } else {
        format!("\"2024-05-{day:02}\"")
    };
    let canceled = ["false", "\"N\"", "\"Y\"", "true"][i % 4];
    let updated = if i.is_multiple_of(2) {
        format!("2024-05-{day:02}T09:{:02}:51.{:03}+00:00", i % 60, i % 1000)
    } else {
        format!("2024-05-{day:02}T09:{:02}:51-07:00", i % 60)
    };
    let link = "https://acme.fa.us2.oraclecloud.com/fscmRestApi/resources/11.13.18.05/invoices";
    format!(
        concat!(
            r#"{{"InvoiceId":{id},"InvoiceNumber":"INV-{n:09}","InvoiceAmount":{amount},"AmountPaid":{paid},"#,
            r#""InvoiceCurrency":"USD","PaymentCurrency":"USD","InvoiceDate":"2024-05-{day:02}","AccountingDate":{acc},"#,
            r#""BusinessUnit":"US1 Business Unit","Supplier":"{supplier}","SupplierNumber":"{number}","SupplierSite":"US1 MAIN {number}","#,
            r#""LegalEntity":"US1 Legal Entity","InvoiceType":"Standard","InvoiceSource":"Manual Invoice Entry","#,
            r#""Description":"Office supplies order \"Q2\" #{i}","PaymentTerms":"Net 30","ValidationStatus":"Validated","#,
            r#""ApprovalStatus":"Approved","PaidStatus":"Unpaid","AccountingStatus":"Accounted","CanceledFlag":{canceled},"#,
            r#""LiabilityDistribution":"101-1100-2100-000-100","CreationDate":"2024-05-{day:02}T08:00:00.000+00:00","#,
            r#""CreatedBy":"AP.CLERK","LastUpdateDate":"{updated}","LastUpdatedBy":"AP.MANAGER","#,
            r#""links":[{{"rel":"self","href":"{link}/{id}","name":"invoices","kind":"item","#,
            r#""properties":{{"changeIndicator":"ACED0005737200136A6176612E7574696C2E41727261794C697374"}}}},"#,
            r#"{{"rel":"child","href":"{link}/{id}/child/invoiceLines","name":"invoiceLines","kind":"collection"}}]}}"#
        ),
        id = id,
        n = i + 1,
        amount = amount,
        paid = paid,
        day = day,
        acc = accounting,
        supplier = supplier,
        number = number,
        i = i,
        canceled = canceled,
        updated = updated,
        link = link,
    )
}

/// Median nanoseconds per record of `f` over `records`, in `rounds` rounds.
fn time(records: &[String], rounds: usize, budget: Duration, mut f: impl FnMut(&[String])) -> f64 {
    f(records);
    let mut per_record: Vec<f64> = (0..rounds)
        .map(|_| {
            let started = Instant::now();
            let mut done = 0usize;
            while started.elapsed() < budget {
                f(records);
                done += records.len();
            }
            started.elapsed().as_nanos() as f64 / done as f64
        })
        .collect();
    per_record.sort_by(f64::total_cmp);
    per_record[per_record.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let seconds: f64 = match std::env::args().nth(1) {
        Some(s) => s.parse().context("SECONDS must be a number")?,
        None => 3.0,
    };
    let rounds = 5;
    let budget = Duration::from_secs_f64(seconds / (3 * rounds) as f64);
    let root = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../mappings/bench/invoices.toml"
    );
    let script_text = std::fs::read_to_string(root).context(root)?;
    let script = Script::compile(&script_text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let records: Vec<String> = (0..1000).map(record).collect();
    let average = records.iter().map(String::len).sum::<usize>() / records.len();

    let mut table = Table::default();
    for (slot, (key, _)) in COLUMNS.iter().enumerate() {
        table.entry(key).slot = Some(slot);
    }
    let tables = [table];
    let mut slots = [Raw::Missing; COLUMNS.len()];
    for r in &records {
        slots.fill(Raw::Missing);
        scan_object(r, &tables, 0, &mut slots)?;
        for (slot, (key, ty)) in slots.iter().zip(COLUMNS) {
            let value = Val::from_raw(*slot).map_err(anyhow::Error::msg)?;
            if let Err(e) = convert(value, ty) {
                bail!("{key}: {e} in {r}");
            }
        }
    }
    let batch = script.map_batch("invoices", &records, &mut MemoryReference::default())?;
    if !batch.rejects.is_empty() || batch.rows.len() != records.len() {
        bail!(
            "the bench script rejected records: {:?}",
            batch.rejects.first()
        );
    }

    let scan = time(&records, rounds, budget, |records| {
        let mut slots = [Raw::Missing; COLUMNS.len()];
        for r in records {
            slots.fill(Raw::Missing);
            black_box(scan_object(black_box(r), &tables, 0, &mut slots)).ok();
        }
    });
    let convert_all = time(&records, rounds, budget, |records| {
        let mut slots = [Raw::Missing; COLUMNS.len()];
        for r in records {
            slots.fill(Raw::Missing);
            if scan_object(black_box(r), &tables, 0, &mut slots).is_ok() {
                for (slot, (_, ty)) in slots.iter().zip(COLUMNS) {
                    if let Ok(v) = Val::from_raw(*slot) {
                        black_box(convert(v, ty)).ok();
                    }
                }
            }
        }
    });
    let mapped = time(&records, rounds, budget, |records| {
        black_box(script.map_batch("invoices", records, &mut MemoryReference::default())).ok();
    });
    println!("records: {} of {average} bytes on average", records.len());
    println!("scan only:          {scan:8.1} ns/record");
    println!("scan + convert:     {convert_all:8.1} ns/record");
    println!("Script::map_batch:  {mapped:8.1} ns/record");
    Ok(())
}
