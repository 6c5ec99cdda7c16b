//! `pipeline list|pause|resume`, `batches` and `audit`: what an operator
//! reads and toggles in a tenant's store. Pausing and resuming are
//! audited; reading is not.

use anyhow::{Context, Result, bail};
use mlc_serve::views;
use mlc_store::{Batch, BatchState, TenantStore};
use serde_json::json;

use super::Output;
use super::remote::Place;
use super::runtime::{BatchRef, RecordTarget, RuntimeArgs, Target, actor, blocking, print};
use super::tenant::stored_definition;

/// List, pause and resume pipelines.
#[derive(Debug, clap::Subcommand)]
pub enum PipelineCommand {
    /// A tenant's pipelines with their state.
    List {
        /// The tenant id.
        tenant: String,
    },
    /// Stop scheduling a pipeline (`sync TENANT` skips it too).
    Pause {
        /// `TENANT/PIPELINE`.
        target: Target,
    },
    /// Schedule a paused pipeline again.
    Resume {
        /// `TENANT/PIPELINE`.
        target: Target,
    },
}

/// List a tenant's batches, newest first.
#[derive(Debug, clap::Args)]
pub struct BatchesCommand {
    /// `TENANT` or `TENANT/PIPELINE`.
    target: Target,
    /// Only batches in this state (pulling, pulled, mapped, written,
    /// submitted, confirmed, failed).
    #[arg(long)]
    state: Option<String>,
    /// At most this many per pipeline.
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

/// The audit trail: a record's versions, a batch's history, the admin log.
#[derive(Debug, clap::Args)]
#[group(id = "subject", required = true, multiple = false)]
pub struct AuditCommand {
    /// Every version of a record seen, the batch that carried each and
    /// what became of it.
    #[arg(long, group = "subject", value_name = "TENANT/PIPELINE/KEY")]
    record: Option<RecordTarget>,
    /// A batch: its kind, every state change, what was sent, its rejects.
    #[arg(long, group = "subject", value_name = "BATCH_ID")]
    batch: Option<BatchRef>,
    /// The admin audit log (who applied, changed, replayed what, when).
    #[arg(long, group = "subject")]
    log: bool,
    /// Check the admin audit log's hash chain.
    #[arg(long, group = "subject")]
    verify: bool,
}

impl PipelineCommand {
    pub async fn run(self, args: &RuntimeArgs, output: Output) -> Result<()> {
        match self {
            Self::List { tenant } => list(args, output, &tenant).await,
            Self::Pause { target } => set_paused(args, output, &target, true).await,
            Self::Resume { target } => set_paused(args, output, &target, false).await,
        }
    }
}

async fn list(args: &RuntimeArgs, output: Output, tenant: &str) -> Result<()> {
    let doc = match args.place(tenant)? {
        Place::Local(store) => {
            let def = stored_definition(&store)?;
            blocking(|| views::pipelines(&store, &def))?
        }
        Place::Server(remote) => remote.get("/pipelines").await?,
    };
    let rows = doc["pipelines"].as_array().cloned().unwrap_or_default();
    print(output, &doc, || {
        let mut t = format!(
            "{:<22} {:<22} {:<28} {:>6} {:>7} {:>9}  {}\n",
            "pipeline", "resource", "data source", "every", "paused", "confirmed", "open batch"
        );
        for r in &rows {
            let open = r["open_batch"]
                .as_object()
                .map(|o| {
                    format!(
                        "{} ({})",
                        o["id"].as_str().unwrap_or_default(),
                        o["state"].as_str().unwrap_or_default()
                    )
                })
                .unwrap_or_else(|| "—".into());
            t.push_str(&format!(
                "{:<22} {:<22} {:<28} {:>6} {:>7} {:>9}  {open}\n",
                r["pipeline"].as_str().unwrap_or_default(),
                r["resource"].as_str().unwrap_or_default(),
                r["datasource"].as_str().unwrap_or_default(),
                r["every"].as_str().unwrap_or_default(),
                if r["paused"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "no"
                },
                r["confirmed_batches"],
            ));
        }
        t
    });
    Ok(())
}

async fn set_paused(
    args: &RuntimeArgs,
    output: Output,
    target: &Target,
    paused: bool,
) -> Result<()> {
    let pipeline = target.pipeline()?;
    let action = if paused { "pause" } else { "resume" };
    let doc = match args.place(&target.tenant)? {
        Place::Local(store) => {
            let def = stored_definition(&store)?;
            if def.pipeline(pipeline).is_none() {
                return Err(crate::failure::CliError::NotFound(format!(
                    "tenant {} has no pipeline `{pipeline}`",
                    target.tenant
                ))
                .into());
            }
            store.set_paused(pipeline, paused)?;
            args.runtime()?.audit(
                &actor(),
                &format!("pipeline.{action}"),
                Some(&target.tenant),
                json!({ "pipeline": pipeline }),
            )?;
            json!({"tenant": target.tenant, "pipeline": pipeline, "paused": paused})
        }
        Place::Server(remote) => {
            remote
                .call(
                    reqwest::Method::POST,
                    &format!("/pipelines/{pipeline}/{action}"),
                    None,
                )
                .await?
        }
    };
    print(output, &doc, || {
        format!(
            "{}/{pipeline} {}",
            target.tenant,
            if paused { "paused" } else { "resumed" }
        )
    });
    Ok(())
}

impl BatchesCommand {
    pub async fn run(self, args: &RuntimeArgs, output: Output) -> Result<()> {
        if let Some(s) = &self.state
            && !views::STATES.contains(&s.as_str())
        {
            bail!("--state {s}: expected one of {}", views::STATES.join(", "));
        }
        let query = views::BatchQuery {
            pipeline: self.target.pipeline.clone(),
            state: self.state.clone(),
            limit: self.limit,
        };
        let doc = match args.place(&self.target.tenant)? {
            Place::Local(store) => {
                let def = stored_definition(&store)?;
                blocking(|| views::batches(&store, &def, &query))?
            }
            Place::Server(remote) => {
                let mut path = format!("/batches?limit={}", self.limit);
                if let Some(p) = &query.pipeline {
                    path.push_str(&format!("&pipeline={p}"));
                }
                if let Some(s) = &query.state {
                    path.push_str(&format!("&state={s}"));
                }
                remote.get(&path).await?
            }
        };
        let rows: Vec<Batch> =
            serde_json::from_value(doc["batches"].clone()).context("the batches document")?;
        print(output, &doc, || {
            let mut t = format!(
                "{:<44} {:<12} {:<10} {:>9} {:>8}  {}\n",
                "batch", "kind", "state", "records", "failures", "last change"
            );
            for b in &rows {
                let last = b.history.last().map(|c| c.at.as_str()).unwrap_or_default();
                t.push_str(&format!(
                    "{:<44} {:<12} {:<10} {:>9} {:>8}  {last}\n",
                    b.id,
                    kind_text(&b.kind),
                    b.state.name(),
                    b.records,
                    b.failures
                ));
                if let BatchState::Failed { error, .. } = &b.state {
                    t.push_str(&format!("    error: {error}\n"));
                }
            }
            t
        });
        Ok(())
    }
}

fn kind_text(kind: &mlc_store::BatchKind) -> String {
    match kind {
        mlc_store::BatchKind::Incremental => "incremental".into(),
        mlc_store::BatchKind::Full => "full".into(),
        mlc_store::BatchKind::Replay { of } => format!("replay of {of}"),
        mlc_store::BatchKind::Records => "records".into(),
        mlc_store::BatchKind::Reexport => "re-export".into(),
        mlc_store::BatchKind::Deletes => "deletes".into(),
    }
}

impl AuditCommand {
    pub async fn run(self, args: &RuntimeArgs, output: Output) -> Result<()> {
        let runtime = args.runtime()?;
        if self.verify {
            return match runtime.verify_audit()? {
                None => {
                    let n = runtime.audit_log(0, usize::MAX)?.len();
                    print(output, &json!({"ok": true, "entries": n}), || {
                        format!("audit log intact: {n} entries")
                    });
                    Ok(())
                }
                Some(b) => {
                    print(output, &json!({"ok": false, "broken_at": b}), String::new);
                    bail!("the audit log was altered: entry {} {}", b.seq, b.reason)
                }
            };
        }
        if self.log {
            let entries = runtime.audit_log(0, usize::MAX)?;
            print(output, &json!({"entries": entries}), || {
                let mut t = String::new();
                for e in &entries {
                    t.push_str(&format!(
                        "{:>5} {} {:<16} {:<18} {:<10} {}\n",
                        e.seq,
                        e.at,
                        e.actor,
                        e.action,
                        e.tenant.as_deref().unwrap_or("—"),
                        e.detail
                    ));
                }
                t
            });
            return Ok(());
        }
        if let Some(r) = &self.record {
            let store = args.tenant_store(&runtime, &r.tenant)?;
            return record(&store, output, r);
        }
        if let Some(b) = &self.batch {
            let store = args.tenant_store(&runtime, &b.tenant)?;
            return batch(&store, output, b);
        }
        bail!("say what to audit: --record, --batch, --log or --verify")
    }
}

fn confirmed_at(b: &Batch) -> Option<String> {
    b.history
        .iter()
        .find(|c| c.state == "confirmed")
        .map(|c| c.at.clone())
}

fn record(store: &TenantStore, output: Output, r: &RecordTarget) -> Result<()> {
    let versions = store.versions(&r.pipeline, &r.key)?;
    if versions.is_empty() {
        bail!(
            "{}/{} has no stored version of record `{}`",
            r.tenant,
            r.pipeline,
            r.key
        );
    }
    let mut rows = Vec::new();
    for v in &versions {
        let b = store.batch(&r.pipeline, v.seq)?;
        rows.push(json!({
            "batch": b.id,
            "kind": b.kind,
            "last_update": v.last_update.map(mlc_common::time::format_timestamp),
            "content_hash": v.content_hash,
            "state": b.state.name(),
            "sent": sent(&b.state),
            "confirmed_at": confirmed_at(&b),
        }));
    }
    // Batches that re-exported the key without pulling it (replays).
    let doc = json!({"tenant": r.tenant, "pipeline": r.pipeline, "key": r.key, "versions": rows});
    print(output, &doc, || {
        let mut t = format!("record {} of {}/{}\n", r.key, r.tenant, r.pipeline);
        for v in &rows {
            t.push_str(&format!(
                "  {:<44} LastUpdateDate {:<28} hash {}…  {:<10} {} {}\n",
                v["batch"].as_str().unwrap_or_default(),
                v["last_update"].as_str().unwrap_or("—"),
                &v["content_hash"].as_str().unwrap_or_default()
                    [..12.min(v["content_hash"].as_str().unwrap_or_default().len())],
                v["state"].as_str().unwrap_or_default(),
                v["sent"].as_str().unwrap_or_default(),
                v["confirmed_at"]
                    .as_str()
                    .map(|a| format!("confirmed {a}"))
                    .unwrap_or_default()
            ));
        }
        t
    });
    Ok(())
}

/// What a batch sent to Tableau, in words.
fn sent(state: &BatchState) -> String {
    match state {
        BatchState::Submitted {
            request_ids, rows, ..
        } => format!("{rows} rows sent as {}", request_ids.join(", ")),
        BatchState::Confirmed { rows, jobs, .. } if jobs.is_empty() => {
            format!("{rows} rows published")
        }
        BatchState::Confirmed { rows, jobs, .. } => {
            format!("{rows} rows upserted by job {}", jobs.join(", "))
        }
        _ => "not sent".into(),
    }
}

fn batch(store: &TenantStore, output: Output, b: &BatchRef) -> Result<()> {
    let batch = b.find(store)?;
    let rejects = store.rejects(&b.pipeline, b.seq)?;
    let doc = json!({"batch": batch, "sent": sent(&batch.state), "rejects": rejects
        .iter().map(|(k, r)| json!({"key": k, "reason": r})).collect::<Vec<_>>()});
    print(output, &doc, || {
        let mut t = format!(
            "batch {} ({}), {} records, now {}; {}\n",
            batch.id,
            kind_text(&batch.kind),
            batch.records,
            batch.state.name(),
            sent(&batch.state)
        );
        for c in &batch.history {
            t.push_str(&format!("  {} {}", c.at, c.state));
            if let Some(e) = &c.error {
                t.push_str(&format!(": {e}"));
            }
            t.push('\n');
        }
        if !rejects.is_empty() {
            t.push_str(&format!("  {} rejects:\n", rejects.len()));
            for (k, r) in rejects.iter().take(50) {
                t.push_str(&format!("    {k}: {r}\n"));
            }
        }
        t
    });
    Ok(())
}
