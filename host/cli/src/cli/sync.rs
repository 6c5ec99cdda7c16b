//! `sync TENANT[/PIPELINE] --once` and `replay`: durable cycles in the
//! foreground, with progress bars on a terminal and a summary. A replay
//! opens a batch from the store (never from Oracle) and runs it through
//! the same cycle.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mlc_store::{BatchKind, BatchState, TenantStore};
use mlc_sync::{CycleAction, CycleReport, Progress, Stage};
use serde_json::json;

use super::Output;
use super::remote::{Place, Remote};
use super::runtime::{
    BatchRef, RecordTarget, RuntimeArgs, Target, actor, blocking, duration_arg, print,
};
use super::tenant::stored_definition;
use crate::failure::CliError;

/// Run pipelines now, in the foreground.
#[derive(Debug, clap::Args)]
pub struct SyncCommand {
    /// `TENANT` (every pipeline that is not paused) or `TENANT/PIPELINE`.
    target: Target,
    /// Run one cycle of each pipeline and exit (the scheduler is `serve`).
    #[arg(long, required = true)]
    once: bool,
    /// Keep each batch's raw record versions this long after it is
    /// confirmed (the latest version of every record is always kept).
    #[arg(long, env = "ML_CONNECTOR_RAW_RETENTION", default_value = "30d", value_parser = duration_arg)]
    raw_retention: Duration,
}

/// Export again from the store, without asking Oracle.
#[derive(Debug, clap::Args)]
#[group(id = "what", required = true, multiple = false)]
pub struct ReplayCommand {
    /// Re-export the keys of this batch (their latest stored versions).
    #[arg(long, group = "what", value_name = "BATCH_ID")]
    batch: Option<BatchRef>,
    /// Retry the pipeline's failed batch now.
    #[arg(long, group = "what", value_name = "TENANT/PIPELINE")]
    failed: Option<Target>,
    /// Re-export one record (its latest stored version).
    #[arg(long, group = "what", value_name = "TENANT/PIPELINE/KEY")]
    record: Option<RecordTarget>,
    /// Re-publish the whole pipeline (Overwrite) from the stored latest versions.
    #[arg(long, group = "what", value_name = "TENANT/PIPELINE")]
    full: Option<Target>,
}

impl SyncCommand {
    pub async fn run(self, args: &RuntimeArgs, output: Output) -> Result<()> {
        let _ = self.once;
        let store = match args.place(&self.target.tenant)? {
            Place::Local(store) => store,
            Place::Server(remote) => return self.ask_server(&remote, output).await,
        };
        let key = args.master_key()?;
        let def = stored_definition(&store)?;
        let names: Vec<String> = match &self.target.pipeline {
            Some(p) => {
                if def.pipeline(p).is_none() {
                    return Err(CliError::NotFound(format!(
                        "tenant {} has no pipeline `{p}` (it has: {})",
                        def.id,
                        def.pipelines
                            .iter()
                            .map(|p| p.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                    .into());
                }
                vec![p.clone()]
            }
            None => {
                let mut names = Vec::new();
                for p in &def.pipelines {
                    if blocking(|| store.pipeline(&p.id))?.paused {
                        eprintln!("pipeline {}/{} is paused: skipped", def.id, p.id);
                    } else {
                        names.push(p.id.clone());
                    }
                }
                names
            }
        };
        run_cycles(args, key, store, &names, output, Some(self.raw_retention)).await
    }
}

impl SyncCommand {
    /// A running server holds the tenant: it is asked to run the
    /// pipelines now (on its own schedule slots) instead.
    async fn ask_server(&self, remote: &Remote, output: Output) -> Result<()> {
        let names: Vec<String> = match &self.target.pipeline {
            Some(p) => vec![p.clone()],
            None => remote.get("/pipelines").await?["pipelines"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["paused"] != true)
                .filter_map(|p| p["pipeline"].as_str().map(str::to_owned))
                .collect(),
        };
        let mut started = Vec::new();
        for name in &names {
            remote
                .call(
                    reqwest::Method::POST,
                    &format!("/pipelines/{name}/run"),
                    None,
                )
                .await?;
            started.push(name.clone());
        }
        let doc = json!({"tenant": remote.tenant, "server": remote.url(), "started": started});
        print(output, &doc, || {
            format!(
                "the server at {} runs {} of {} now (follow them with `ml-connector batches {}`)",
                remote.url(),
                started.join(", "),
                remote.tenant,
                remote.tenant
            )
        });
        Ok(())
    }
}

impl ReplayCommand {
    pub async fn run(self, args: &RuntimeArgs, output: Output) -> Result<()> {
        let (tenant, pipeline) = match (&self.batch, &self.failed, &self.record, &self.full) {
            (Some(b), ..) => (b.tenant.clone(), b.pipeline.clone()),
            (_, Some(t), ..) | (.., Some(t)) => (t.tenant.clone(), t.pipeline()?.to_owned()),
            (_, _, Some(r), _) => (r.tenant.clone(), r.pipeline.clone()),
            _ => bail!("say what to replay: --batch, --failed, --record or --full"),
        };
        let store = match args.place(&tenant)? {
            Place::Local(store) => store,
            Place::Server(remote) => {
                let body = match (&self.batch, &self.record) {
                    (Some(b), _) => json!({"batch": b.id}),
                    (_, Some(r)) => json!({"record": r.key}),
                    _ if self.failed.is_some() => json!({"failed": true}),
                    _ => json!({"full": true}),
                };
                let doc = remote
                    .call(
                        reqwest::Method::POST,
                        &format!("/pipelines/{pipeline}/replay"),
                        Some(body.to_string().into_bytes()),
                    )
                    .await?;
                print(output, &doc, || {
                    format!(
                        "batch {} of {tenant}/{pipeline} runs now on the server at {} (follow it with `ml-connector batches {tenant}/{pipeline}`)",
                        doc["batch"].as_str().unwrap_or("?"),
                        remote.url()
                    )
                });
                return Ok(());
            }
        };
        let key = args.master_key()?;
        let runtime = args.runtime()?;
        let def = stored_definition(&store)?;
        if def.pipeline(&pipeline).is_none() {
            return Err(CliError::NotFound(format!(
                "tenant {tenant} has no pipeline `{pipeline}`"
            ))
            .into());
        }
        let open = blocking(|| store.open_batch(&pipeline))?;
        let (action, detail) = if self.failed.is_some() {
            match &open {
                Some(b) if matches!(b.state, BatchState::Failed { .. }) => (
                    "replay.failed",
                    json!({"pipeline": pipeline, "batch": b.id}),
                ),
                Some(b) => bail!(
                    "batch {} of {tenant}/{pipeline} is {}, not failed: `ml-connector sync {tenant}/{pipeline} --once` continues it",
                    b.id,
                    b.state.name()
                ),
                None => bail!("{tenant}/{pipeline} has no failed batch"),
            }
        } else {
            if let Some(b) = &open {
                bail!(
                    "{tenant}/{pipeline} has an unfinished batch {} ({}): finish it first with `ml-connector replay --failed {tenant}/{pipeline}` or `ml-connector sync {tenant}/{pipeline} --once`",
                    b.id,
                    b.state.name()
                );
            }
            let state = blocking(|| store.pipeline(&pipeline))?;
            if state.datasource_id.is_none() {
                bail!(
                    "{tenant}/{pipeline} was never published: run `ml-connector sync {tenant}/{pipeline} --once` first"
                );
            }
            let (kind, keys, action) = if let Some(b) = &self.batch {
                let original = b.find(&store)?;
                let keys = all_batch_keys(&store, &pipeline, original.seq)?;
                (BatchKind::Replay { of: original.seq }, keys, "replay.batch")
            } else if let Some(r) = &self.record {
                if blocking(|| store.versions(&pipeline, &r.key))?.is_empty() {
                    bail!(
                        "{tenant}/{pipeline} has no stored version of record `{}`",
                        r.key
                    );
                }
                (BatchKind::Records, vec![r.key.clone()], "replay.record")
            } else {
                (BatchKind::Reexport, Vec::new(), "replay.full")
            };
            let batch = blocking(|| store.create_batch(&pipeline, kind.clone(), &keys))?;
            (
                action,
                json!({"pipeline": pipeline, "batch": batch.id, "kind": kind, "keys": keys.len()}),
            )
        };
        runtime.audit(&actor(), action, Some(&tenant), detail)?;
        drop(runtime);
        run_cycles(args, key, store, &[pipeline], output, None).await
    }
}

fn all_batch_keys(store: &TenantStore, pipeline: &str, seq: u64) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = blocking(|| store.batch_keys(pipeline, seq, after.as_deref(), 10_000))?;
        let Some(last) = page.last().cloned() else {
            break;
        };
        after = Some(last);
        keys.extend(page);
    }
    Ok(keys)
}

/// A pipeline's spinner.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn update(&self, stage: Stage, done: u64) {
        self.0.set_message(match stage {
            Stage::Pull => format!("pulling from Oracle: {done} records"),
            Stage::Write => format!("mapping and writing: {done} rows"),
            Stage::Upload => "uploading to Tableau".to_owned(),
        });
    }
}

async fn run_cycles(
    args: &RuntimeArgs,
    key: mlc_store::MasterKey,
    store: std::sync::Arc<TenantStore>,
    names: &[String],
    output: Output,
    retention: Option<Duration>,
) -> Result<()> {
    // A sync reads reference data first and applies retention after; a
    // replay does neither.
    let reference = retention.is_some();
    let started = Instant::now();
    let host = args.host(key).await?;
    let tenant = host.tenant(store).await?;
    let bars = MultiProgress::with_draw_target(
        if std::io::stderr().is_terminal() && output == Output::Text {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    let style = ProgressStyle::with_template("{spinner} {prefix:<28} {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    if reference && !tenant.reference_fresh && !tenant.definition.reference.is_empty() {
        let bar = bars.add(ProgressBar::new_spinner().with_style(style.clone()));
        bar.set_prefix("reference data");
        bar.enable_steady_tick(Duration::from_millis(120));
        let counts = tenant.sync_reference().await.with_context(|| {
            format!("tenant {}: syncing reference data from Oracle", tenant.id())
        })?;
        bar.finish_with_message(
            counts
                .iter()
                .map(|(d, n)| format!("{d} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    let mut results: Vec<(String, Result<CycleReport, String>, Duration)> = Vec::new();
    // The first failure: the cause (and the class) of the run's error.
    let mut first_failure = None;
    // Pipelines reading the same resource run together: one pull feeds
    // them all.
    for group in tenant.pull_groups(names) {
        let mut specs = Vec::with_capacity(group.len());
        for name in &group {
            let Some(spec) = tenant.pipeline(name).cloned() else {
                bail!("tenant {} has no pipeline `{name}`", tenant.id());
            };
            specs.push(spec);
        }
        let progress: Vec<Bar> = specs
            .iter()
            .map(|spec| {
                let bar = bars.add(ProgressBar::new_spinner().with_style(style.clone()));
                bar.set_prefix(format!("{}/{}", tenant.id(), spec.name));
                bar.enable_steady_tick(Duration::from_millis(120));
                Bar(bar)
            })
            .collect();
        let pipelines: Vec<(&mlc_sync::PipelineSpec, &dyn Progress)> = specs
            .iter()
            .zip(&progress)
            .map(|(spec, bar)| (spec, bar as &dyn Progress))
            .collect();
        let t = Instant::now();
        let outcomes = tenant.run_together(&pipelines).await;
        let took = t.elapsed();
        // A refresh token the identity domain rotated must outlive us.
        host.save_refresh_token(&tenant)?;
        for ((spec, Bar(bar)), outcome) in specs.iter().zip(&progress).zip(outcomes) {
            let name = &spec.name;
            match &outcome {
                Ok(r) => bar.finish_with_message(action_text(r)),
                Err(_) => bar.abandon_with_message("failed"),
            }
            if let (Ok(_), Some(keep)) = (&outcome, retention) {
                let cutoff = time::OffsetDateTime::now_utc() - keep;
                let dropped =
                    blocking(|| tenant.store.prune_raw(name, cutoff)).with_context(|| {
                        format!("{}/{name}: applying raw-record retention", tenant.id())
                    })?;
                if dropped > 0 {
                    tracing::info!(pipeline = %name, dropped, "raw record versions past retention dropped");
                }
            }
            let outcome = outcome.map_err(|e| {
                let e = anyhow::Error::new(e);
                let text = format!("{e:#}");
                if first_failure.is_none() {
                    first_failure = Some(crate::failure::Cause(e));
                }
                text
            });
            results.push((name.clone(), outcome, took));
        }
    }
    tenant.connectors.tableau.shutdown().await.ok();
    host.shutdown().await;

    let failed = results.iter().filter(|(_, r, _)| r.is_err()).count();
    let doc = json!({
        "tenant": tenant.definition.id,
        "seconds": started.elapsed().as_secs_f64(),
        "pipelines": results.iter().map(|(name, r, took)| match r {
            Ok(r) => json!({"pipeline": name, "ok": true, "seconds": took.as_secs_f64(),
                            "report": report_json(r)}),
            Err(e) => json!({"pipeline": name, "ok": false, "seconds": took.as_secs_f64(), "error": e}),
        }).collect::<Vec<_>>(),
    });
    print(output, &doc, || {
        let mut t = format!(
            "{:<24} {:<40} {:>9} {:>9} {:>8} {:>7}  {}\n",
            "pipeline", "batch", "records", "rows", "rejects", "secs", "result"
        );
        for (name, r, took) in &results {
            match r {
                Ok(r) => t.push_str(&format!(
                    "{:<24} {:<40} {:>9} {:>9} {:>8} {:>7.1}  {}\n",
                    name,
                    r.batch_id,
                    r.records,
                    r.rows_written,
                    r.rejected_by_mapping + r.rejected_by_writer,
                    took.as_secs_f64(),
                    action_text(r)
                )),
                Err(e) => t.push_str(&format!(
                    "{:<24} {:<40} {:>9} {:>9} {:>8} {:>7.1}  FAILED: {e}\n",
                    name,
                    "",
                    "",
                    "",
                    "",
                    took.as_secs_f64()
                )),
            }
        }
        t
    });
    if let Some(first) = first_failure {
        return Err(crate::failure::CliError::PipelinesFailed {
            failed,
            total: results.len(),
            tenant: tenant.definition.id.clone(),
            first,
        }
        .into());
    }
    Ok(())
}

fn action_text(r: &CycleReport) -> String {
    let mut t = match &r.action {
        CycleAction::NothingNew => "nothing new".to_owned(),
        CycleAction::Published { .. } => format!("published {} rows", r.rows_written),
        CycleAction::Upserted { .. } => format!("upserted {} rows", r.rows_written),
    };
    if r.deleted > 0 {
        t.push_str(&format!("; {} deleted (gone from Oracle)", r.deleted));
    }
    t
}

pub(super) fn report_json(r: &CycleReport) -> serde_json::Value {
    let action = match &r.action {
        CycleAction::NothingNew => json!({"type": "nothing-new"}),
        CycleAction::Published { datasource_id } => {
            json!({"type": "published", "datasource_id": datasource_id})
        }
        CycleAction::Upserted {
            request_ids,
            jobs,
            after_webhook,
        } => {
            json!({"type": "upserted", "request_ids": request_ids, "jobs": jobs,
                   "after_webhook": after_webhook})
        }
    };
    json!({
        "batch": r.batch_id,
        "records": r.records,
        "duplicates_skipped": r.duplicates_skipped,
        "shared_pull_with": r.shared_pull_with,
        "oracle_requests": r.oracle_requests,
        "rows_written": r.rows_written,
        "streamed": r.streamed,
        "rejected_by_mapping": r.rejected_by_mapping,
        "rejected_by_writer": r.rejected_by_writer,
        "deleted": r.deleted,
        "action": action,
    })
}
