//! `ml-connector demo`: the product's main job, once, on the embedded
//! defaults. Starts the Oracle Fusion and Tableau sandboxes and a hyperd,
//! syncs reference data, stages the `scripted` plugin with every mapping
//! script of the demo tenant (and its sample) in a plugins directory and
//! loads them through the runtime's watcher, each validated against its
//! sample. Then it runs three cycles of every pipeline: a first full
//! publish, an incremental upsert after changes in Oracle, and a cycle with
//! nothing new. Finally it reads each data source back from the Tableau
//! sandbox's `.hyper` files and checks the row counts against Oracle's own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mlc_hyper::{Hyperd, HyperdConfig};
use mlc_oracle::{OracleClient, OracleConfig, ResourceSpec};
use mlc_plugin::{PluginRuntime, RuntimeConfig};
use mlc_sandbox_oracle::{OracleSandbox, SandboxConfig};
use mlc_sandbox_tableau::{TableauSandbox, TableauSandboxConfig};
use mlc_sync::{
    Connectors, CycleAction, CycleReport, DEFAULT_MAX_RECORDS_PER_BATCH, Pipeline, PipelineSpec,
    ReferenceSources, ReferenceStore,
};
use mlc_tableau::{TableauClient, TableauConfig};

use super::Output;

const TENANT: &str = "demo";

/// Run the whole pipeline once on the sandboxes.
#[derive(Debug, clap::Args)]
pub struct DemoCommand {
    /// Invoices in the Oracle sandbox (the other resources scale with it).
    #[arg(long, default_value_t = 300)]
    invoices: u64,
    /// Seed of the Oracle sandbox's data.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Invoices changed in Oracle before the second cycle.
    #[arg(long, default_value_t = 25)]
    updates: u64,
    /// Invoices added in Oracle before the second cycle.
    #[arg(long, default_value_t = 5)]
    inserts: u64,
    /// Working directory: sandbox data, extracts, plugin cache, hyperd logs.
    #[arg(long, default_value = ".mlc/demo")]
    work_dir: PathBuf,
    /// The demo tenant's mapping scripts.
    #[arg(long, default_value = "mappings/demo")]
    mappings: PathBuf,
    /// The scripted mapper component (built by `cargo xtask build-plugins`).
    #[arg(long, env = "MLC_SCRIPTED_WASM")]
    scripted: Option<PathBuf>,
    /// The hyperd binary (default: from the tableauhyperapi Python package).
    #[arg(long, env = "ML_CONNECTOR_HYPERD")]
    hyperd: Option<PathBuf>,
}

struct Row {
    pipeline: String,
    datasource: String,
    cycles: Vec<CycleReport>,
}

impl DemoCommand {
    pub async fn run(self, output: Output) -> Result<()> {
        let started = Instant::now();
        let work = absolute(&self.work_dir)?;
        if work.exists() {
            std::fs::remove_dir_all(&work)
                .with_context(|| format!("clearing {}", work.display()))?;
        }
        std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
        let scripted = match &self.scripted {
            Some(p) => p.clone(),
            None => default_scripted()?,
        };
        let wasm = std::fs::read(&scripted).with_context(|| {
            format!(
                "reading the scripted mapper {} (build it with `cargo xtask build-plugins`)",
                scripted.display()
            )
        })?;

        eprintln!(
            "starting the Oracle Fusion sandbox ({} invoices)…",
            self.invoices
        );
        let oracle_sandbox = OracleSandbox::start(SandboxConfig {
            seed: self.seed,
            invoices: self.invoices,
            ..SandboxConfig::default()
        })
        .await
        .context("starting the Oracle Fusion sandbox")?;
        eprintln!("starting the Tableau sandbox and hyperd…");
        let tableau_sandbox = TableauSandbox::start(TableauSandboxConfig {
            data_dir: work.join("tableau"),
            hyperd: self.hyperd.clone(),
            ..TableauSandboxConfig::default()
        })
        .await
        .context("starting the Tableau sandbox")?;
        let hyperd = Arc::new(
            Hyperd::start(HyperdConfig {
                binary: self.hyperd.clone(),
                log_dir: work.join("hyperd-logs"),
                ..HyperdConfig::default()
            })
            .await
            .context("starting hyperd")?,
        );

        let oracle = OracleClient::new(
            TENANT,
            OracleConfig::new(
                oracle_sandbox.base_url(),
                oracle_sandbox.token_url(),
                oracle_sandbox.client_id(),
                oracle_sandbox.client_secret(),
                oracle_sandbox.scope(),
            ),
        )
        .context("Oracle client")?;
        let tableau = TableauClient::new(
            TENANT,
            TableauConfig::new(
                tableau_sandbox.server_url(),
                tableau_sandbox.site_content_url(),
                tableau_sandbox.pat_name(),
                tableau_sandbox.pat_secret().clone(),
                tableau_sandbox.project_name(),
            ),
        )
        .context("Tableau client")?;

        eprintln!("syncing reference data (suppliers, segment values, account combinations)…");
        let reference = Arc::new(ReferenceStore::new());
        reference
            .sync_from_oracle(TENANT, &oracle, &demo_reference_sources())
            .await?;
        let plugins = PluginRuntime::new(RuntimeConfig {
            cache_dir: Some(work.join("plugin-cache")),
            reference: reference.clone(),
            ..RuntimeConfig::default()
        })
        .context("plugin runtime")?;

        // The demo tenant's plugins go through the plugins directory, as an
        // operator's would: one `scripted` component per mapping script,
        // with the script as its configuration and the script's sample (if
        // any) as the validation sample, loaded by the runtime's watcher.
        eprintln!("loading the demo tenant's mappings through the plugins directory…");
        let plugins_dir = work.join("plugins");
        let scripts = mapping_scripts(&self.mappings)?;
        let names = stage_plugins(&plugins_dir, &wasm, &self.mappings, &scripts)?;
        let watcher = plugins
            .watch(&plugins_dir)
            .await
            .with_context(|| format!("watching {}", plugins_dir.display()))?;
        if let Some(refusal) = plugins.refusals().into_iter().next() {
            let script = names
                .iter()
                .zip(&scripts)
                .find(|(name, _)| **name == refusal.name)
                .map_or_else(|| refusal.name.clone(), |(_, s)| s.display().to_string());
            // A located script error names the staged copy; name the file
            // the user edits instead.
            let staged = plugins_dir
                .join(TENANT)
                .join(format!("{}.toml", refusal.name));
            let reason = refusal
                .reason
                .replace(&staged.display().to_string(), &script);
            bail!(
                "mapping {script} was refused (plugin {}/{}): {reason}",
                refusal.tenant,
                refusal.name,
            );
        }

        let mut pipelines = Vec::new();
        for (name, script) in names.iter().zip(&scripts) {
            let info = plugins
                .info(TENANT, name)
                .with_context(|| format!("mapping {} was not loaded", script.display()))?;
            let Some(resource) = info.resources.first().cloned() else {
                bail!("mapping {} maps no resource", script.display());
            };
            let spec = resource_spec(&resource)
                .with_context(|| format!("mapping {}: resource `{resource}`", script.display()))?;
            pipelines.push(Pipeline::new(PipelineSpec {
                tenant: TENANT.into(),
                name: name.clone(),
                resource: spec,
                plugin: name.clone(),
                datasource: format!("Demo {}", title(name)),
                max_records_per_batch: DEFAULT_MAX_RECORDS_PER_BATCH,
            }));
        }
        let connectors = Connectors {
            oracle,
            tableau,
            plugins,
            hyperd: hyperd.clone(),
            work_dir: work.join("batches"),
        };

        let mut rows: Vec<Row> = pipelines
            .iter()
            .map(|p| Row {
                pipeline: p.spec().name.clone(),
                datasource: p.spec().datasource.clone(),
                cycles: Vec::new(),
            })
            .collect();
        for cycle in 1..=3 {
            match cycle {
                1 => eprintln!("cycle 1: first full publish of every pipeline…"),
                2 => {
                    let touched = oracle_sandbox.mutate(self.updates, self.inserts);
                    let distinct: std::collections::BTreeSet<i64> = touched.into_iter().collect();
                    eprintln!(
                        "cycle 2: {} updates and {} inserts in Oracle touched {} invoices; incremental upserts…",
                        self.updates,
                        self.inserts,
                        distinct.len()
                    );
                }
                _ => eprintln!("cycle 3: nothing changed; every pipeline should send nothing…"),
            }
            for (pipeline, row) in pipelines.iter_mut().zip(rows.iter_mut()) {
                let report = pipeline.run_cycle(&connectors).await?;
                row.cycles.push(report);
            }
        }

        // Read back what a dashboard would see and compare with Oracle.
        let mut checks = Vec::new();
        for row in &rows {
            let stored = tableau_sandbox
                .datasource_rows(&row.datasource, &[])
                .await
                .with_context(|| format!("reading back {}", row.datasource))?
                .map_or(0, |r| r.len());
            checks.push(stored);
        }
        let invoices_in_oracle = oracle_sandbox.count("invoices").unwrap_or(0);

        match output {
            Output::Json => {
                let doc = serde_json::json!({
                    "seconds": started.elapsed().as_secs_f64(),
                    "oracle_invoices": invoices_in_oracle,
                    "pipelines": rows.iter().zip(&checks).map(|(r, stored)| serde_json::json!({
                        "pipeline": r.pipeline,
                        "datasource": r.datasource,
                        "rows_in_tableau": stored,
                        "cycles": r.cycles.iter().map(cycle_json).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                });
                println!("{}", serde_json::to_string_pretty(&doc)?);
            }
            Output::Text => print_table(&rows, &checks, invoices_in_oracle, started.elapsed()),
        }

        let invoice_rows = rows
            .iter()
            .zip(&checks)
            .find(|(r, _)| r.pipeline == "invoices")
            .map(|(_, n)| *n as u64);
        watcher.stop();
        connectors.tableau.shutdown().await.ok();
        hyperd.shutdown().await.ok();
        tableau_sandbox.shutdown().await.ok();
        oracle_sandbox.shutdown().await;
        if let Some(n) = invoice_rows
            && n != invoices_in_oracle
        {
            bail!(
                "Tableau's `Demo Invoices` holds {n} rows but Oracle has {invoices_in_oracle} invoices"
            );
        }
        Ok(())
    }
}

fn cycle_json(c: &CycleReport) -> serde_json::Value {
    let action = match &c.action {
        CycleAction::NothingNew => serde_json::json!({"type": "nothing-new"}),
        CycleAction::Published { datasource_id } => {
            serde_json::json!({"type": "published", "datasource_id": datasource_id})
        }
        CycleAction::Upserted { request_ids, jobs } => {
            serde_json::json!({"type": "upserted", "request_ids": request_ids, "jobs": jobs})
        }
    };
    serde_json::json!({
        "batch": c.batch_id,
        "records": c.records,
        "duplicates_skipped": c.duplicates_skipped,
        "oracle_requests": c.oracle_requests,
        "rows_written": c.rows_written,
        "rejected_by_mapping": c.rejected_by_mapping,
        "rejected_by_writer": c.rejected_by_writer,
        "action": action,
    })
}

fn action_text(c: &CycleReport) -> String {
    match &c.action {
        CycleAction::NothingNew => "—".into(),
        CycleAction::Published { .. } => format!("publish {}", c.rows_written),
        CycleAction::Upserted { .. } => format!("upsert {}", c.rows_written),
    }
}

fn print_table(rows: &[Row], checks: &[usize], oracle_invoices: u64, took: Duration) {
    println!(
        "{:<22} {:<30} {:>14} {:>14} {:>8} {:>8} {:>9}",
        "pipeline", "data source", "cycle 1", "cycle 2", "cycle 3", "rejects", "in Tableau"
    );
    for (row, stored) in rows.iter().zip(checks) {
        let cell = |i: usize| row.cycles.get(i).map(action_text).unwrap_or_default();
        let rejects: u64 = row
            .cycles
            .iter()
            .map(|c| c.rejected_by_mapping + c.rejected_by_writer)
            .sum();
        println!(
            "{:<22} {:<30} {:>14} {:>14} {:>8} {:>8} {:>9}",
            row.pipeline,
            row.datasource,
            cell(0),
            cell(1),
            cell(2),
            rejects,
            stored
        );
    }
    let requests: u64 = rows
        .iter()
        .filter_map(|r| r.cycles.get(2))
        .map(|c| c.oracle_requests)
        .sum();
    println!(
        "\nOracle invoices: {oracle_invoices}; Oracle requests in the quiet cycle 3: {requests} for {} pipelines; {:.1} s in all.",
        rows.len(),
        took.as_secs_f64()
    );
}

fn demo_reference_sources() -> ReferenceSources {
    ReferenceSources {
        suppliers: true,
        value_sets: vec![
            ("CORP_ENTITY".into(), "companies".into()),
            ("CORP_COST_CENTER".into(), "cost-centers".into()),
            ("CORP_ACCOUNT".into(), "accounts".into()),
        ],
        combination_segments: ["entity", "department", "account", "subAccount", "location"]
            .map(String::from)
            .to_vec(),
    }
}

fn resource_spec(resource: &str) -> Result<ResourceSpec> {
    Ok(match resource {
        "invoices" => ResourceSpec::invoices(),
        "payablesPayments" => ResourceSpec::payables_payments(),
        "suppliers" => ResourceSpec::suppliers(),
        "purchaseOrders" => ResourceSpec::purchase_orders(),
        "receivablesInvoices" => ResourceSpec::receivables_invoices(),
        "journalBatches" => ResourceSpec::journal_batches(),
        "accountCombinationsLOV" => ResourceSpec::account_combinations(),
        other => bail!("no Oracle resource spec for `{other}`"),
    })
}

fn mapping_scripts(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading mapping scripts in {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    scripts.sort();
    if scripts.is_empty() {
        bail!("no mapping scripts (*.toml) in {}", dir.display());
    }
    Ok(scripts)
}

/// Writes `<dir>/demo/<name>.wasm`, `<name>.toml` (the script) and, when
/// `<mappings>/samples/<name>.json` exists, `<name>.sample.json`, for each
/// script; returns the plugin names in the order of `scripts`.
fn stage_plugins(
    dir: &Path,
    wasm: &[u8],
    mappings: &Path,
    scripts: &[PathBuf],
) -> Result<Vec<String>> {
    let tenant_dir = dir.join(TENANT);
    std::fs::create_dir_all(&tenant_dir)
        .with_context(|| format!("creating {}", tenant_dir.display()))?;
    let mut names = Vec::with_capacity(scripts.len());
    for script in scripts {
        let name = script
            .file_stem()
            .and_then(|s| s.to_str())
            .with_context(|| format!("mapping script name of {}", script.display()))?
            .to_owned();
        let write = |file: String, bytes: &[u8]| {
            let path = tenant_dir.join(file);
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
        };
        write(format!("{name}.wasm"), wasm)?;
        let text =
            std::fs::read(script).with_context(|| format!("reading {}", script.display()))?;
        write(format!("{name}.toml"), &text)?;
        let sample = mappings.join("samples").join(format!("{name}.json"));
        match std::fs::read(&sample) {
            Ok(bytes) => write(format!("{name}.sample.json"), &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", sample.display())),
        }
        names.push(name);
    }
    Ok(names)
}

/// `invoice-lines` → `Invoice Lines`, `payablesPayments` → `Payables Payments`.
fn title(name: &str) -> String {
    let mut out = String::new();
    let mut prev: Option<char> = None;
    for ch in name.chars() {
        match ch {
            '-' | '_' => out.push(' '),
            c if prev.is_none() || prev.is_some_and(|p| p == '-' || p == '_') => {
                out.extend(c.to_uppercase())
            }
            c if c.is_ascii_uppercase() && prev.is_some_and(|p| p.is_ascii_lowercase()) => {
                out.push(' ');
                out.push(c);
            }
            c => out.push(c),
        }
        prev = Some(ch);
    }
    out
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .context("current directory")?
            .join(path))
    }
}

fn default_scripted() -> Result<PathBuf> {
    let staged = std::env::var_os("MLC_PLUGINS_BUILT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/plugins"));
    let path = staged.join("scripted.wasm");
    if path.exists() {
        Ok(path)
    } else {
        bail!(
            "{} not found: build the plugins with `cargo xtask build-plugins`, or pass --scripted",
            path.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::title;

    #[test]
    fn titles() {
        assert_eq!(title("invoice-lines"), "Invoice Lines");
        assert_eq!(title("payablesPayments"), "Payables Payments");
        assert_eq!(title("accountCombinationsLOV"), "Account Combinations LOV");
    }
}
