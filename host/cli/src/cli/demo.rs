//! `ml-connector demo`: the product's main job, once, on the embedded
//! defaults. Starts the Oracle Fusion and Tableau sandboxes, applies a demo
//! tenant for them into a data directory (one pipeline per mapping script
//! of `--mappings`, secrets sealed under a key of this run), and builds it
//! through the composition root ([`mlc_sync::Host`]): reference data read
//! into the tenant's store, each script loaded through the `scripted`
//! mapper and validated against its sample. Then it runs three durable
//! cycles of every pipeline: a first full publish, an incremental upsert
//! after changes in Oracle, and a cycle with nothing new. Finally it reads
//! each data source back from the Tableau sandbox's `.hyper` files and
//! checks the row counts against Oracle's own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mlc_sandbox_oracle::{OracleSandbox, SandboxConfig};
use mlc_sandbox_tableau::{TableauSandbox, TableauSandboxConfig};
use mlc_store::{DataDir, MasterKey, RuntimeStore, TenantStore};
use mlc_sync::template::{self, Endpoints, PipelineTemplate};
use mlc_sync::{CycleAction, CycleReport, Host, HostConfig, Quiet, apply_definition};

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
        let scripted = super::runtime::scripted_mapper(self.scripted.as_deref())?;

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
        // The demo tenant goes in as an operator's would: a definition
        // applied into a data directory, its secrets sealed under a master
        // key (this run's own, kept in memory only), its mapping scripts
        // under `<mappings-dir>/demo/`; the composition root builds it.
        eprintln!("applying the demo tenant and loading its mappings…");
        let data = DataDir::new(work.join("data"));
        let mappings_dir = work.join("mappings");
        let scripts = mapping_scripts(&self.mappings)?;
        let pipelines = stage_scripts(&mappings_dir.join(TENANT), &self.mappings, &scripts)?;
        let base = oracle_sandbox.base_url();
        let endpoints = Endpoints {
            oracle_url: base
                .split("/fscmRestApi")
                .next()
                .unwrap_or(&base)
                .to_owned(),
            token_url: oracle_sandbox.token_url(),
            client_id: oracle_sandbox.client_id().to_owned(),
            scope: oracle_sandbox.scope().to_owned(),
            tableau_url: tableau_sandbox.server_url(),
            site: tableau_sandbox.site_content_url().to_owned(),
            project: tableau_sandbox.project_name().to_owned(),
            pat_name: tableau_sandbox.pat_name().to_owned(),
        };
        let text = template::definition_text(TENANT, &endpoints, true, &pipelines);
        let runtime = RuntimeStore::open(&data)?;
        let applied = tokio::task::block_in_place(|| {
            apply_definition(&data, &runtime, "demo (generated)", &text, "demo")
        })?;
        drop(runtime);
        let key = MasterKey::from_base64(MasterKey::generate_base64().expose(), "the demo's key")?;
        let store = Arc::new(tokio::task::block_in_place(|| {
            TenantStore::open(&applied.store, TENANT)
        })?);
        store.set_secret(
            &key,
            template::ORACLE_SECRET,
            &oracle_sandbox.client_secret(),
        )?;
        store.set_secret(&key, template::TABLEAU_SECRET, tableau_sandbox.pat_secret())?;
        let host = Host::start(
            HostConfig {
                data,
                mappings_dir,
                plugins_dir: None,
                scripted_wasm: scripted,
                hyperd: self.hyperd.clone(),
            },
            key,
        )
        .await?;
        eprintln!("syncing reference data (suppliers, segment values, account combinations)…");
        let tenant = host.tenant(store).await?;

        let mut rows: Vec<Row> = tenant
            .pipelines
            .iter()
            .map(|p| Row {
                pipeline: p.name.clone(),
                datasource: p.datasource.clone(),
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
            for (spec, row) in tenant.pipelines.iter().zip(rows.iter_mut()) {
                let report = tenant.run_once(spec, &Quiet).await?;
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
                        "cycles": r.cycles.iter().map(super::sync::report_json).collect::<Vec<_>>(),
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
        tenant.connectors.tableau.shutdown().await.ok();
        drop(tenant);
        host.shutdown().await;
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

fn action_text(c: &CycleReport) -> String {
    match &c.action {
        CycleAction::NothingNew => "—".into(),
        CycleAction::Published { .. } => format!("publish {}", c.rows_written),
        CycleAction::Upserted { .. } => format!("upsert {}", c.rows_written),
    }
}

fn print_table(rows: &[Row], checks: &[usize], oracle_invoices: u64, took: Duration) {
    println!(
        "{:<24} {:<30} {:>14} {:>14} {:>8} {:>8} {:>9}",
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
            "{:<24} {:<30} {:>14} {:>14} {:>8} {:>8} {:>9}",
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

/// Copies each script (and its sample, `<mappings>/samples/<stem>.json`)
/// into the demo tenant's mappings directory `to`; one pipeline per
/// script, reading the resource the script names.
fn stage_scripts(to: &Path, mappings: &Path, scripts: &[PathBuf]) -> Result<Vec<PipelineTemplate>> {
    std::fs::create_dir_all(to.join("samples"))
        .with_context(|| format!("creating {}", to.display()))?;
    let mut pipelines = Vec::with_capacity(scripts.len());
    for script in scripts {
        let (Some(stem), Some(file)) = (
            script.file_stem().and_then(|s| s.to_str()),
            script.file_name().and_then(|s| s.to_str()),
        ) else {
            bail!("mapping script name of {}", script.display());
        };
        let text = std::fs::read_to_string(script)
            .with_context(|| format!("reading {}", script.display()))?;
        let resource = text
            .parse::<toml::Table>()
            .ok()
            .and_then(|t| {
                t.get("resource")
                    .and_then(|r| r.as_str().map(str::to_owned))
            })
            .with_context(|| {
                format!(
                    "mapping {}: no top-level `resource = \"…\"`",
                    script.display()
                )
            })?;
        let target = to.join(file);
        std::fs::write(&target, &text).with_context(|| format!("writing {}", target.display()))?;
        let sample = mappings.join("samples").join(format!("{stem}.json"));
        match std::fs::read(&sample) {
            Ok(bytes) => {
                let target = to.join("samples").join(format!("{stem}.json"));
                std::fs::write(&target, bytes)
                    .with_context(|| format!("writing {}", target.display()))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", sample.display())),
        }
        pipelines.push(PipelineTemplate {
            id: template::pipeline_id(stem),
            resource,
            datasource: format!("Demo {}", title(stem)),
            script: file.to_owned(),
        });
    }
    Ok(pipelines)
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
