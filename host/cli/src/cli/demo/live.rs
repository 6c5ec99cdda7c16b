//! `ml-connector demo` (live): the first load of every pipeline with
//! progress bars, then `serve` on the demo tenant (status page, admin API,
//! webhooks registered on the Tableau sandbox) while the Oracle sandbox
//! keeps posting new and changed records. It prints where to look and
//! what to try, and runs until Ctrl-C or SIGTERM. With `--for`, it stops by
//! itself: Oracle stops posting, every pipeline catches up once more (asked
//! through the admin API, as an operator would), and every top-level data
//! source is read back and compared with Oracle's count.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use futures::future::join_all;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mlc_common::Secret;
use mlc_sandbox_oracle::OracleSandbox;
use mlc_sandbox_tableau::TableauSandbox;
use mlc_serve::{Clock, Replica, ServeConfig, ServeLimits};
use mlc_store::MasterKey;
use mlc_sync::{CycleAction, CycleReport, PipelineSpec, Progress, Stage, Tenant};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, oneshot};

use super::{DemoCommand, TENANT, World};
use crate::cli::Output;
use crate::cli::serve::interrupted;

/// First-load cycles running at once (the machine's cores are shared with
/// hyperd and the sandboxes).
const FIRST_LOAD_AT_ONCE: usize = 2;
/// How long the `--for` catch-up may take before the demo gives up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(300);

/// The live demo.
pub async fn run(cmd: DemoCommand, output: Output) -> Result<()> {
    let started = Instant::now();
    // A port that is taken is said before anything starts.
    std::net::TcpListener::bind(cmd.listen).map_err(|source| {
        crate::failure::CliError::ListenTaken {
            addr: cmd.listen,
            source,
        }
    })?;
    let World {
        work,
        oracle,
        tableau,
        host,
        store,
    } = World::start(&cmd, Some(cmd.every)).await?;
    let bars = Bars::new(output);

    // The first load, in the foreground.
    let tenant = host.tenant(store).await?;
    if !tenant.reference_fresh && !tenant.definition.reference.is_empty() {
        let bar = bars.spinner("reference data");
        let counts = tenant
            .sync_reference()
            .await
            .context("syncing the demo's reference data from Oracle")?;
        bar.finish_with_message(
            counts
                .iter()
                .map(|(d, n)| format!("{d} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    let first = first_load(&tenant, &oracle, &bars).await?;
    host.save_refresh_token(&tenant)?;
    let loaded_in = started.elapsed();
    let pipelines: Vec<(String, String, String)> = tenant
        .pipelines
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.datasource.clone(),
                p.resource.path.clone(),
            )
        })
        .collect();
    // `serve` opens the tenant's store itself.
    host.close(tenant).await;

    // Oracle keeps posting; `serve` keeps syncing.
    let invoices_before = oracle.count("invoices").unwrap_or(0);
    let rate = cmd.changes_per_sec.max(0.0);
    oracle.faults().set_mutation_rate(rate * 0.75, rate * 0.25);
    let token = Secret::new(MasterKey::generate_base64().expose());
    let url = format!("http://{}", cmd.listen);
    let config = ServeConfig {
        listen: cmd.listen,
        public_url: Some(url.clone()),
        admin_token: token.clone(),
        limits: ServeLimits::default(),
        clock: Clock::new(cmd.time_scale),
        replica: Replica { index: 0, count: 1 },
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let banner = Banner {
        url: url.clone(),
        token: token.clone(),
        work: work.clone(),
        invoices_file: tableau
            .datasource_file("Demo Invoices")
            .map(|p| p.display().to_string()),
        loaded_in,
        first: first.clone(),
        rate,
    };
    let mut server = tokio::spawn(mlc_serve::serve(
        host,
        config,
        async move {
            let _ = stopped.await;
        },
        move |_addr: SocketAddr| banner.print(),
    ));

    let bounded = cmd.stop_after.is_some();
    let deadline = async {
        match cmd.stop_after {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        ended = &mut server => {
            // `serve` only ends by itself when it cannot run.
            ended.context("the server task")??;
            bail!("the server stopped by itself");
        }
        () = interrupted() => {
            eprintln!("stopping: Ctrl-C; waiting for running cycles…");
        }
        () = deadline => {
            eprintln!("--for elapsed: Oracle stops posting; every pipeline catches up once more…");
        }
    }
    oracle.faults().set_mutation_rate(0.0, 0.0);
    let outcome = if bounded {
        catch_up(&url, &token, &pipelines).await
    } else {
        Ok(BTreeMap::new())
    };
    let _ = stop.send(());
    server.await.context("the server task")??;
    let outcome = outcome?;

    let summary = if bounded {
        Some(
            check(
                &oracle,
                &tableau,
                &pipelines,
                &first,
                &outcome,
                invoices_before,
            )
            .await?,
        )
    } else {
        None
    };
    tableau.shutdown().await.ok();
    oracle.shutdown().await;
    match (summary, output) {
        (Some(doc), Output::Json) => println!("{}", serde_json::to_string_pretty(&doc)?),
        (Some(doc), Output::Text) => print_summary(&doc),
        (None, _) => eprintln!("stopped; the demo's data is in {}", work.display()),
    }
    Ok(())
}

/// What the first load did, per pipeline.
#[derive(Clone, Debug)]
struct First {
    pipeline: String,
    rows: u64,
    seconds: f64,
}

/// Every pipeline's first cycle, [`FIRST_LOAD_AT_ONCE`] at a time, each
/// with its bar.
async fn first_load(tenant: &Tenant, oracle: &OracleSandbox, bars: &Bars) -> Result<Vec<First>> {
    let slots = Arc::new(Semaphore::new(FIRST_LOAD_AT_ONCE));
    let names: Vec<String> = tenant.pipelines.iter().map(|p| p.name.clone()).collect();
    // Pipelines reading one resource load together, sharing its pull.
    let groups: Vec<Vec<&PipelineSpec>> = tenant
        .pull_groups(&names)
        .into_iter()
        .map(|g| g.iter().filter_map(|n| tenant.pipeline(n)).collect())
        .collect();
    let runs = groups.into_iter().map(|group| {
        let bars: Vec<_> = group
            .iter()
            .map(|spec| bars.pipeline(&spec.name, oracle.count(&spec.resource.path).ok()))
            .collect();
        let slots = slots.clone();
        async move {
            let _slot = slots.acquire().await;
            for bar in &bars {
                bar.0.set_message("pulling from Oracle");
            }
            let t = Instant::now();
            let pipelines: Vec<(&PipelineSpec, &dyn Progress)> = group
                .iter()
                .zip(&bars)
                .map(|(spec, bar)| (*spec, bar as &dyn Progress))
                .collect();
            let outcomes = tenant.run_together(&pipelines).await;
            let took = t.elapsed();
            group
                .iter()
                .zip(&bars)
                .zip(outcomes)
                .map(|((spec, bar), outcome)| {
                    match &outcome {
                        Ok(r) => bar.0.finish_with_message(action_text(r)),
                        Err(_) => bar.0.abandon_with_message("failed"),
                    }
                    (*spec, outcome, took)
                })
                .collect::<Vec<_>>()
        }
    });
    let mut first = Vec::new();
    for (spec, outcome, took) in join_all(runs).await.into_iter().flatten() {
        let report: CycleReport = outcome.with_context(|| {
            format!(
                "the first load of {TENANT}/{} (data source {:?})",
                spec.name, spec.datasource
            )
        })?;
        first.push(First {
            pipeline: spec.name.clone(),
            rows: report.rows_written,
            seconds: took.as_secs_f64(),
        });
    }
    Ok(first)
}

fn action_text(r: &CycleReport) -> String {
    match &r.action {
        CycleAction::NothingNew => "nothing new".into(),
        CycleAction::Published { .. } => format!("published {} rows", r.rows_written),
        CycleAction::Upserted { .. } => format!("upserted {} rows", r.rows_written),
    }
}

/// The first load's bars: on a terminal in text mode, hidden otherwise.
struct Bars(MultiProgress);

impl Bars {
    fn new(output: Output) -> Self {
        let visible = std::io::stderr().is_terminal() && output == Output::Text;
        Self(MultiProgress::with_draw_target(if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        }))
    }

    fn spinner(&self, prefix: &str) -> ProgressBar {
        let style = ProgressStyle::with_template("{spinner} {prefix:<26} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bar = self
            .0
            .add(ProgressBar::new_spinner().with_style(style))
            .with_prefix(prefix.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    /// A bar of records pulled out of `total` when Oracle's count is known.
    fn pipeline(&self, name: &str, total: Option<u64>) -> PipelineBar {
        let bar = match total {
            Some(n) if n > 0 => {
                let style = ProgressStyle::with_template(
                    "{spinner} {prefix:<26} [{bar:28}] {pos:>7}/{len:7} {msg} ({elapsed})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                let bar = self
                    .0
                    .add(ProgressBar::new(n).with_style(style))
                    .with_prefix(name.to_owned());
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            }
            _ => self.spinner(name),
        };
        bar.set_message("waiting");
        PipelineBar(bar)
    }
}

/// One pipeline's bar, fed by the cycle's [`Progress`].
struct PipelineBar(ProgressBar);

impl Progress for PipelineBar {
    fn update(&self, stage: Stage, done: u64) {
        match stage {
            Stage::Pull => {
                self.0.set_position(done);
                self.0.set_message("pulling from Oracle");
            }
            Stage::Write => {
                if let Some(len) = self.0.length() {
                    self.0.set_position(len);
                }
                self.0
                    .set_message(format!("mapping and writing: {done} rows"));
            }
            Stage::Upload => self.0.set_message("publishing to Tableau"),
        }
    }
}

/// Where to look and what to try, once the server listens.
struct Banner {
    url: String,
    token: Secret,
    work: std::path::PathBuf,
    invoices_file: Option<String>,
    loaded_in: Duration,
    first: Vec<First>,
    rate: f64,
}

impl Banner {
    fn print(&self) {
        let rows: u64 = self.first.iter().map(|f| f.rows).sum();
        let data = self.work.join("data");
        let mut text = format!(
            "\nfirst load done: {rows} rows in {} data sources, {:.0} s after the command.\n\
             Oracle now posts about {:.1} changed or new records a second; ml-connector serve keeps Tableau current.\n\n\
             status page:  {url}/\n\
             admin token:  {token}   (this run's only; the admin API and the page's replay button ask for it)\n\
             metrics:      {url}/metrics\n\n\
             try, in another terminal:\n\
             \x20 export ML_CONNECTOR_DATA={data} ML_CONNECTOR_ADMIN_TOKEN={token}\n\
             \x20 cargo run -q --bin ml-connector -- pipeline list {TENANT}\n\
             \x20 cargo run -q --bin ml-connector -- batches {TENANT} --pipeline invoices\n\
             \x20 cargo run -q --bin ml-connector -- replay --full {TENANT}/invoices\n\
             \x20 curl -s -H \"Authorization: Bearer $ML_CONNECTOR_ADMIN_TOKEN\" {url}/api/v1/tenants/{TENANT}/pipelines\n",
            self.first.len(),
            self.loaded_in.as_secs_f64(),
            self.rate,
            url = self.url,
            token = self.token.expose(),
            data = data.display(),
        );
        if let Some(file) = &self.invoices_file {
            text.push_str(&format!(
                "\nopen a data source with Tableau's Hyper API (copy it: the sandbox's hyperd holds the file):\n\
                 \x20 cp '{file}' /tmp/demo-invoices.hyper\n\
                 \x20 .venv/bin/python -c \"from tableauhyperapi import *; h = HyperProcess(Telemetry.DO_NOT_SEND_USAGE_DATA_TO_TABLEAU); \
                 c = Connection(h.endpoint, '/tmp/demo-invoices.hyper'); \
                 print(c.execute_scalar_query('SELECT COUNT(*) FROM \\\"Extract\\\".\\\"Extract\\\"'), 'invoices'); c.close(); h.close()\"\n"
            ));
        }
        text.push_str("\nCtrl-C stops everything.\n");
        eprintln!("{text}");
    }
}

/// Asks every pipeline for one more cycle through the admin API once none
/// is running, and waits until each has finished a cycle that started
/// after Oracle stopped posting. Returns each pipeline's status entry.
async fn catch_up(
    url: &str,
    token: &Secret,
    pipelines: &[(String, String, String)],
) -> Result<BTreeMap<String, Value>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("an HTTP client for the admin API")?;
    let until = Instant::now() + CATCH_UP_TIMEOUT;
    let status = || async {
        let doc: Value = client
            .get(format!("{url}/status.json"))
            .send()
            .await
            .context("reading /status.json")?
            .error_for_status()
            .context("reading /status.json")?
            .json()
            .await
            .context("reading /status.json")?;
        Ok::<_, anyhow::Error>(entries(&doc))
    };
    // Every cycle that starts from now on sees everything Oracle posted.
    let idle = |e: &BTreeMap<String, Value>| {
        pipelines.iter().all(|(p, _, _)| {
            e.get(p)
                .is_some_and(|v| v["schedule"]["state"] == "scheduled")
        })
    };
    loop {
        if idle(&status().await?) {
            break;
        }
        if Instant::now() > until {
            bail!("the pipelines did not come to rest within {CATCH_UP_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let asked = unix_now();
    for (p, _, _) in pipelines {
        client
            .post(format!("{url}/api/v1/tenants/{TENANT}/pipelines/{p}/run"))
            .bearer_auth(token.expose())
            .send()
            .await
            .with_context(|| format!("asking {TENANT}/{p} to run"))?
            .error_for_status()
            .with_context(|| format!("asking {TENANT}/{p} to run"))?;
    }
    loop {
        let e = status().await?;
        let done = pipelines.iter().all(|(p, _, _)| {
            e.get(p).is_some_and(|v| {
                v["last_cycle"]["at"].as_u64().is_some_and(|at| at >= asked)
                    && v["schedule"]["state"] == "scheduled"
            })
        });
        if done {
            for (p, _, _) in pipelines {
                if let Some(v) = e.get(p)
                    && v["last_cycle"]["outcome"] != "ok"
                {
                    bail!(
                        "{TENANT}/{p}: the catch-up cycle failed: {}",
                        v["last_cycle"]["error"]
                    );
                }
            }
            return Ok(e);
        }
        if Instant::now() > until {
            bail!("the catch-up cycles did not finish within {CATCH_UP_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The demo tenant's pipelines of a status document, by name.
fn entries(doc: &Value) -> BTreeMap<String, Value> {
    doc["tenants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["tenant"] == TENANT)
        .flat_map(|t| t["pipelines"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| Some((p["pipeline"].as_str()?.to_owned(), p)))
        .collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Pipelines whose data source holds one row per record of their
/// resource: compared row for row with Oracle's count.
const ONE_ROW_PER_RECORD: &[&str] = &[
    "account-combinations-lov",
    "invoices",
    "payables-payments",
    "purchase-orders",
    "receivables-invoices",
    "suppliers",
];

/// Reads every data source back and compares the one-row-per-record ones
/// with Oracle; the summary document, or an error naming the mismatch.
async fn check(
    oracle: &OracleSandbox,
    tableau: &TableauSandbox,
    pipelines: &[(String, String, String)],
    first: &[First],
    status: &BTreeMap<String, Value>,
    invoices_before: u64,
) -> Result<Value> {
    let mut rows = Vec::new();
    let mut mismatches = Vec::new();
    for (name, datasource, resource) in pipelines {
        let in_tableau = tableau
            .datasource_rows(datasource, &[])
            .await
            .with_context(|| format!("reading back {datasource}"))?
            .map_or(0, |r| r.len()) as u64;
        let in_oracle = oracle.count(resource).ok();
        let entry = status.get(name).cloned().unwrap_or(Value::Null);
        let served: u64 = entry["history"]["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r[1].as_u64())
            .sum();
        if ONE_ROW_PER_RECORD.contains(&name.as_str())
            && let Some(n) = in_oracle
            && n != in_tableau
        {
            mismatches.push(format!(
                "{datasource}: {in_tableau} rows in Tableau, {n} records in Oracle"
            ));
        }
        let first = first.iter().find(|f| &f.pipeline == name);
        rows.push(json!({
            "pipeline": name,
            "datasource": datasource,
            "first_load_rows": first.map(|f| f.rows),
            "first_load_seconds": first.map(|f| f.seconds),
            "confirmed_batches": entry["store"]["confirmed_batches"],
            "rows_sent_while_serving": served,
            "rows_in_tableau": in_tableau,
            "records_in_oracle": in_oracle,
        }));
    }
    if !mismatches.is_empty() {
        bail!("after the catch-up: {}", mismatches.join("; "));
    }
    Ok(json!({
        "tenant": TENANT,
        "oracle_invoices_after_first_load": invoices_before,
        "oracle_invoices": oracle.count("invoices").unwrap_or(0),
        "pipelines": rows,
    }))
}

fn print_summary(doc: &Value) {
    println!(
        "{:<26} {:>11} {:>9} {:>13} {:>11} {:>10}",
        "pipeline", "first load", "batches", "sent serving", "in Tableau", "in Oracle"
    );
    for p in doc["pipelines"].as_array().into_iter().flatten() {
        let n = |k: &str| p[k].as_u64().map_or("—".to_owned(), |n| n.to_string());
        println!(
            "{:<26} {:>11} {:>9} {:>13} {:>11} {:>10}",
            p["pipeline"].as_str().unwrap_or(""),
            n("first_load_rows"),
            n("confirmed_batches"),
            n("rows_sent_while_serving"),
            n("rows_in_tableau"),
            n("records_in_oracle"),
        );
    }
    println!(
        "\nOracle invoices: {} after the first load, {} at the end; every one-row-per-record data source matches Oracle.",
        doc["oracle_invoices_after_first_load"], doc["oracle_invoices"]
    );
}
