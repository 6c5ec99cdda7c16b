//! Measures what the plugin runtime itself costs: cold compile, cached load,
//! per-call overhead (a trivial batch), and invoice throughput of the
//! `gl-journal-lines` custom plugin at batch sizes 1, 100 and 1000. The
//! per-call and throughput parts run twice, with the pooling allocator (the
//! default) and with the on-demand allocator, each with the user and system
//! CPU time it used (Linux: `/proc/self/stat`).
//!
//! ```text
//! cargo xtask build-plugins
//! cargo run --release -p mlc-plugin --example runtime_costs -- [<plugins-built-dir>]
//! ```
//!
//! The directory defaults to `$ML_CONNECTOR_PLUGINS_BUILT`, then `target/plugins`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mlc_plugin::{CompileSource, InstanceAllocator, PluginRuntime, RuntimeConfig};

fn main() -> anyhow::Result<()> {
    // New components compile in a worker: this example is its own.
    mlc_plugin::serve_if_worker();
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("ML_CONNECTOR_PLUGINS_BUILT").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target/plugins"));
    let read = |name: &str| {
        let path = dir.join(format!("{name}.wasm"));
        std::fs::read(&path).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e} (run `cargo xtask build-plugins` first)",
                path.display()
            )
        })
    };
    let gl = read("gl-journal-lines")?;
    let misbehave = read("misbehave")?;
    let cache = tempfile::tempdir()?;
    let config = || RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    };

    println!("## load");
    for (name, wasm) in [("gl-journal-lines", &gl), ("misbehave", &misbehave)] {
        let cold = PluginRuntime::new(config())?;
        let started = Instant::now();
        let info = cold.load_blocking("bench", "p", wasm, Default::default())?;
        let total = started.elapsed();
        let CompileSource::Compiled { took } = info.compile else {
            anyhow::bail!("expected a cold compile, got {:?}", info.compile);
        };
        println!(
            "{name} ({} KB): cold compile {:.1} ms, whole load (compile + validate) {:.1} ms",
            wasm.len() / 1024,
            ms(took),
            ms(total)
        );
        let mut cached = Vec::new();
        let mut whole = Vec::new();
        for _ in 0..20 {
            let warm = PluginRuntime::new(config())?;
            let started = Instant::now();
            let info = warm.load_blocking("bench", "p", wasm, Default::default())?;
            whole.push(started.elapsed());
            let CompileSource::DiskCache { took } = info.compile else {
                anyhow::bail!("expected a cache hit, got {:?}", info.compile);
            };
            cached.push(took);
        }
        println!(
            "{name}: cached load (deserialize) median {:.2} ms, whole load from cache median {:.2} ms (20 runs)",
            ms(median(&mut cached)),
            ms(median(&mut whole))
        );
    }

    for pooling in [true, false] {
        let runtime = PluginRuntime::new(RuntimeConfig {
            pooling,
            ..config()
        })?;
        let allocator = match runtime.allocator() {
            InstanceAllocator::Pooling {
                max_concurrent_calls,
                max_memory,
            } => format!(
                "pooling ({max_concurrent_calls} calls, {} MiB memory slots)",
                max_memory >> 20
            ),
            InstanceAllocator::OnDemand { reason } => format!("on-demand ({reason})"),
        };
        println!("\n# allocator: {allocator}");
        let cpu = CpuTime::now();
        calls(&runtime, &gl, &misbehave)?;
        match (cpu, CpuTime::now()) {
            (Some(before), Some(after)) => println!(
                "CPU time of the two sections above: {:.2} s user, {:.2} s system",
                after.user - before.user,
                after.system - before.system
            ),
            _ => println!("CPU time: not available (no /proc/self/stat)"),
        }
    }
    Ok(())
}

/// The per-call overhead and the throughput sections.
fn calls(runtime: &PluginRuntime, gl: &[u8], misbehave: &[u8]) -> anyhow::Result<()> {
    println!("\n## per-call overhead (fresh store + instantiate + configure + map_batch)");
    runtime.load_blocking("bench", "items", misbehave, Default::default())?;
    runtime.load_blocking("bench", "gl", gl, Default::default())?;
    let empty: Vec<String> = Vec::new();
    let one = vec![r#"{"id": 1}"#.to_owned()];
    for (label, records) in [("0 records", &empty), ("1 trivial record", &one)] {
        let mut samples = Vec::with_capacity(5000);
        for _ in 0..5000 {
            let started = Instant::now();
            runtime.map_batch_blocking("bench", "items", "items", records)?;
            samples.push(started.elapsed());
        }
        println!(
            "misbehave ok, {label}: median {:.1} µs, p99 {:.1} µs (5000 calls, blocking)",
            us(median(&mut samples)),
            us(percentile(&mut samples, 0.99))
        );
    }
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut samples = Vec::with_capacity(5000);
    tokio.block_on(async {
        for _ in 0..5000 {
            let started = Instant::now();
            runtime.map_batch("bench", "items", "items", &one).await?;
            samples.push(started.elapsed());
        }
        Ok::<(), mlc_plugin::PluginError>(())
    })?;
    println!(
        "misbehave ok, 1 trivial record via async map_batch (block_in_place): median {:.1} µs",
        us(median(&mut samples))
    );

    println!("\n## gl-journal-lines `invoices` (12 columns, ~1 KB records)");
    let records: Vec<String> = (0..1000).map(invoice).collect();
    let avg = records.iter().map(String::len).sum::<usize>() / records.len();
    println!("record size: {avg} bytes on average");
    for batch in [1usize, 100, 1000] {
        let total_records = 100_000;
        let calls = total_records / batch;
        let started = Instant::now();
        let mut rows = 0;
        for call in 0..calls {
            let start = (call * batch) % records.len();
            let slice = &records[start..start + batch];
            let (out, _) = runtime.map_batch_blocking("bench", "gl", "invoices", slice)?;
            assert!(out.rejects.is_empty(), "{:?}", out.rejects.first());
            rows += out.rows.len();
        }
        let took = started.elapsed();
        println!(
            "batch {batch:>4}: {:>9.0} records/s ({rows} rows in {:.2} s)",
            rows as f64 / took.as_secs_f64(),
            took.as_secs_f64()
        );
    }
    Ok(())
}

/// CPU time used by this process so far, seconds.
#[derive(Clone, Copy)]
struct CpuTime {
    user: f64,
    system: f64,
}

impl CpuTime {
    /// Reads `utime` and `stime` from `/proc/self/stat` (clock ticks of
    /// 1/100 s, Linux's `USER_HZ`).
    fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the parenthesised command name, which may hold spaces.
        let rest = &stat[stat.rfind(')')? + 2..];
        let mut fields = rest.split_ascii_whitespace().skip(11);
        let user: u64 = fields.next()?.parse().ok()?;
        let system: u64 = fields.next()?.parse().ok()?;
        Some(Self {
            user: user as f64 / 100.0,
            system: system as f64 / 100.0,
        })
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn median(samples: &mut [Duration]) -> Duration {
    percentile(samples, 0.5)
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples.get(index).copied().unwrap_or_default()
}

/// A realistic Oracle Fusion payables invoice, about 1 KB.
fn invoice(i: usize) -> String {
    let id = 300_100_412_000_000u64 + i as u64;
    let day = 1 + i % 28;
    format!(
        r#"{{"InvoiceId":{id},"InvoiceNumber":"INV-2024-{i:06}","InvoiceAmount":{}.{:02},"AmountPaid":{},"InvoiceCurrency":"USD","PaymentCurrency":"USD","InvoiceDate":"2024-05-{day:02}","AccountingDate":"2024-05-{day:02}","BusinessUnit":"US1 Business Unit","Supplier":"Acme Office Supply {}","SupplierNumber":"{}","SupplierSite":"ACME US1","LegalEntity":"US1 Legal Entity","InvoiceType":"Standard","InvoiceSource":"Manual Invoice Entry","Description":"Office supplies for May, order {i}","PaymentTerms":"Net 30","ValidationStatus":"Validated","ApprovalStatus":"Approved","PaidStatus":"Unpaid","AccountingStatus":"Accounted","CanceledFlag":{},"LiabilityDistribution":"101-110-2210-0000","CreationDate":"2024-05-{day:02}T08:00:00.000+00:00","CreatedBy":"AP.CLERK","LastUpdateDate":"2024-05-{day:02}T09:02:51.077+00:00","LastUpdatedBy":"AP.CLERK","links":[{{"rel":"self","href":"https://acme.fa.us2.oraclecloud.com/fscmRestApi/resources/11.13.18.05/invoices/{id}","name":"invoices","kind":"item","properties":{{"changeIndicator":"ACED0005737200136A6176612E7574696C2E41727261794C6973747881D21D99C7619D03000149000473697A65787000000002770400000002737200116A6176612E6C616E672E496E746567657212E2A0A4F781873802000149000576616C7565787200106A6176612E6C616E672E4E756D62657286AC951D0B94E08B0200007870000000017371007E00020000000178"}}}}]}}"#,
        1000 + i * 7 % 9000,
        i % 100,
        if i.is_multiple_of(3) {
            "null".to_owned()
        } else {
            format!("{}.00", i % 500)
        },
        i % 50,
        1253 + i % 50,
        if i.is_multiple_of(2) {
            "false"
        } else {
            "\"N\""
        }
    )
}
