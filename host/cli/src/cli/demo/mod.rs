//! `ml-connector demo`: the product on the embedded defaults. Starts the
//! Oracle Fusion and Tableau sandboxes with a demo company, applies a demo
//! tenant for them into a data directory (one pipeline per mapping script
//! of `--mappings`, secrets sealed under a key of this run), and builds it
//! through the composition root ([`mlc_sync::Host`]).
//!
//! Then, by default, the live demo ([`live`]): the first load with progress
//! bars, then `serve` keeps syncing while the Oracle sandbox keeps posting
//! changes, until Ctrl-C (or `--for`). With `--once`, the check ([`once`]):
//! three cycles of every pipeline, read back, compared with Oracle.

mod live;
mod once;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mlc_sandbox_oracle::{OracleSandbox, SandboxConfig};
use mlc_sandbox_tableau::{TableauSandbox, TableauSandboxConfig};
use mlc_store::{DataDir, MasterKey, RuntimeStore, TenantStore};
use mlc_sync::template::{self, Endpoints, PipelineTemplate};
use mlc_sync::{Host, HostConfig, apply_definition};

use super::Output;
use super::runtime::duration_arg;

/// The demo tenant's id.
const TENANT: &str = "demo";

/// Invoices of the live demo's company unless `--invoices` says otherwise.
const LIVE_INVOICES: u64 = 50_000;
/// Invoices of the `--once` check unless `--invoices` says otherwise.
const ONCE_INVOICES: u64 = 300;

/// Run the product on the sandboxes: live (default) or the `--once` check.
#[derive(Debug, clap::Args)]
pub struct DemoCommand {
    /// Run three cycles of every pipeline, read back, check against Oracle
    /// and exit (what the tests and CI run), instead of the live demo.
    #[arg(long, env = "ML_CONNECTOR_DEMO_ONCE")]
    once: bool,
    /// Invoices in the Oracle sandbox; the other resources scale with it
    /// (default: 50,000 live, 300 with --once).
    #[arg(long, env = "ML_CONNECTOR_DEMO_INVOICES")]
    invoices: Option<u64>,
    /// Seed of the Oracle sandbox's data.
    #[arg(long, default_value_t = 7, env = "ML_CONNECTOR_DEMO_SEED")]
    seed: u64,
    /// With --once: invoices changed in Oracle before the second cycle.
    #[arg(long, default_value_t = 25, env = "ML_CONNECTOR_DEMO_UPDATES")]
    updates: u64,
    /// With --once: invoices added in Oracle before the second cycle.
    #[arg(long, default_value_t = 5, env = "ML_CONNECTOR_DEMO_INSERTS")]
    inserts: u64,
    /// Live: records Oracle changes a second once the first load is in
    /// (invoices, payments and the rest, weighted by their counts; one in
    /// four a new record).
    #[arg(long, default_value_t = 4.0, env = "ML_CONNECTOR_DEMO_CHANGES_PER_SEC")]
    changes_per_sec: f64,
    /// Live: where the status page, admin API and webhook receiver listen.
    #[arg(long, env = "ML_CONNECTOR_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Live: how often each pipeline polls Oracle (webhooks confirm
    /// Tableau's jobs in between).
    #[arg(long, default_value = "1m", value_parser = duration_arg, env = "ML_CONNECTOR_DEMO_EVERY")]
    every: Duration,
    /// Live: stop after this long, catch up once more and check every data
    /// source against Oracle (default: run until Ctrl-C).
    #[arg(long = "for", value_name = "DURATION", value_parser = duration_arg, env = "ML_CONNECTOR_DEMO_FOR")]
    stop_after: Option<Duration>,
    /// Working directory: sandbox data, extracts, plugin cache, hyperd logs
    /// (cleared at start).
    #[arg(long, default_value = ".mlc/demo", env = "ML_CONNECTOR_DEMO_WORK_DIR")]
    work_dir: PathBuf,
    /// The demo tenant's mapping scripts.
    #[arg(
        long,
        default_value = "mappings/demo",
        env = "ML_CONNECTOR_DEMO_MAPPINGS"
    )]
    mappings: PathBuf,
    /// The scripted mapper component (built by `cargo xtask build-plugins`).
    #[arg(long, env = "ML_CONNECTOR_SCRIPTED_WASM")]
    scripted: Option<PathBuf>,
    /// The hyperd binary (default: from the tableauhyperapi Python package).
    #[arg(long, env = "ML_CONNECTOR_HYPERD")]
    hyperd: Option<PathBuf>,
    /// Run schedules this many times faster (tests only).
    #[arg(
        long,
        env = "ML_CONNECTOR_TIME_SCALE",
        default_value_t = 1.0,
        hide = true
    )]
    time_scale: f64,
}

impl DemoCommand {
    pub async fn run(self, output: Output) -> Result<()> {
        if self.once {
            once::run(self, output).await
        } else {
            live::run(self, output).await
        }
    }

    fn invoices(&self) -> u64 {
        self.invoices.unwrap_or(if self.once {
            ONCE_INVOICES
        } else {
            LIVE_INVOICES
        })
    }
}

/// The demo's world: both sandboxes and the demo tenant applied, its store
/// open, the composition root started.
struct World {
    work: PathBuf,
    oracle: OracleSandbox,
    tableau: TableauSandbox,
    host: Host,
    store: Arc<TenantStore>,
}

impl World {
    /// Starts the sandboxes and applies the demo tenant; `every`: the
    /// pipelines' schedule (`None`: the default).
    async fn start(cmd: &DemoCommand, every: Option<Duration>) -> Result<Self> {
        let work = absolute(&cmd.work_dir)?;
        if work.exists() {
            std::fs::remove_dir_all(&work)
                .with_context(|| format!("clearing {}", work.display()))?;
        }
        std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
        let scripted = super::runtime::scripted_mapper(cmd.scripted.as_deref())?;

        eprintln!(
            "starting the Oracle Fusion sandbox ({} invoices)…",
            cmd.invoices()
        );
        let oracle = OracleSandbox::start(SandboxConfig {
            seed: cmd.seed,
            invoices: cmd.invoices(),
            ..SandboxConfig::default()
        })
        .await
        .context("starting the Oracle Fusion sandbox")?;
        eprintln!("starting the Tableau sandbox and hyperd…");
        let tableau = TableauSandbox::start(TableauSandboxConfig {
            data_dir: work.join("tableau"),
            hyperd: cmd.hyperd.clone(),
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
        let scripts = mapping_scripts(&cmd.mappings)?;
        let pipelines = stage_scripts(&mappings_dir.join(TENANT), &cmd.mappings, &scripts, every)?;
        let base = oracle.base_url();
        let endpoints = Endpoints {
            oracle_url: base
                .split("/fscmRestApi")
                .next()
                .unwrap_or(&base)
                .to_owned(),
            token_url: oracle.token_url(),
            client_id: oracle.client_id().to_owned(),
            scope: oracle.scope().to_owned(),
            tableau_url: tableau.server_url(),
            site: tableau.site_content_url().to_owned(),
            project: tableau.project_name().to_owned(),
            pat_name: tableau.pat_name().to_owned(),
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
        store.set_secret(&key, template::ORACLE_SECRET, &oracle.client_secret())?;
        store.set_secret(&key, template::TABLEAU_SECRET, tableau.pat_secret())?;
        let host = Host::start(
            HostConfig {
                data,
                mappings_dir,
                plugins_dir: None,
                scripted_wasm: scripted,
                hyperd: cmd.hyperd.clone(),
            },
            key,
        )
        .await?;
        Ok(Self {
            work,
            oracle,
            tableau,
            host,
            store,
        })
    }
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
fn stage_scripts(
    to: &Path,
    mappings: &Path,
    scripts: &[PathBuf],
    every: Option<Duration>,
) -> Result<Vec<PipelineTemplate>> {
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
            every,
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
