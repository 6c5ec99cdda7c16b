//! The durable cycle: one batch of a pipeline driven through the store's
//! journal, stage by stage (pull → record, map → write, submit, confirm),
//! each state change one store transaction.
//!
//! A cycle first resumes the pipeline's unfinished batch, if any, from its
//! last durable state: a pulling batch continues from its recorded position
//! (pages already recorded are not asked for again), a recorded batch is
//! mapped and written from the store, a submitted one is sent again with the
//! same `RequestID`s (Tableau answers a repeat with the original job), and
//! only a confirmed batch moves the cursor. The extract is always built from
//! the latest stored version of each key, so a resumed or retried batch
//! never makes a row older than what Tableau holds.
//!
//! The record-moving stages, `pull` and `write`, are in [`crate::stages`];
//! this module drives a batch from state to state, submits and confirms
//! it, and reconciles deletes.
//!
//! Store calls block; they run under `block_in_place`, so a cycle needs the
//! multi-threaded tokio runtime.

use std::sync::Arc;

use mlc_store::{Batch, BatchKind, BatchState, StoreError, TenantStore};
use mlc_tableau::{PayloadPart, PublishMode, UpdateBatch};

use crate::cycle::{Cycle, Progress, Quiet, Stage, blocking};
use crate::{Connectors, CycleAction, CycleReport, PipelineSpec, SyncError};

/// Runs one durable cycle of `spec`: resumes its unfinished batch, or opens
/// a new one, and drives it to `confirmed`. A failure is recorded in the
/// batch (which the next cycle resumes) and returned.
pub async fn run_durable_cycle(
    spec: &PipelineSpec,
    store: &Arc<TenantStore>,
    c: &Connectors,
) -> Result<CycleReport, SyncError> {
    run_durable_cycle_with(spec, store, c, &Quiet).await
}

/// [`run_durable_cycle`], reporting its stages to `progress`.
pub async fn run_durable_cycle_with(
    spec: &PipelineSpec,
    store: &Arc<TenantStore>,
    c: &Connectors,
    progress: &dyn Progress,
) -> Result<CycleReport, SyncError> {
    let mut outcomes = run_durable_cycles(&[(spec, progress)], store, c).await;
    match outcomes.pop() {
        Some(outcome) => outcome,
        None => unreachable!("run_durable_cycles answers once per pipeline"),
    }
}

/// One durable cycle of each pipeline of one tenant, answered in order.
/// Pipelines that read the same resource and start a fresh batch of the
/// same kind (a first load, or an incremental cycle) share one pull: each
/// page is asked of Oracle once and recorded into all their batches in one
/// transaction, each batch keeping what its own record index does not
/// have. After the pull each batch is mapped, written, submitted and
/// confirmed on its own, so one pipeline's failure (its mapping, its data
/// source) leaves the others' batches going. A batch that resumes mid-pull
/// or retries pulls alone.
pub async fn run_durable_cycles(
    pipelines: &[(&PipelineSpec, &dyn Progress)],
    store: &Arc<TenantStore>,
    c: &Connectors,
) -> Vec<Result<CycleReport, SyncError>> {
    // What each cycle asks Oracle for, from the mapping it runs now.
    let mut specs = Vec::with_capacity(pipelines.len());
    let mut opened = Vec::with_capacity(pipelines.len());
    for (spec, _) in pipelines {
        match crate::projection::pulled_spec(spec, &c.plugins) {
            Ok(projected) => {
                opened.push(open(&projected, store, c).await);
                specs.push(projected);
            }
            Err(e) => {
                opened.push(Err(e.into()));
                specs.push((*spec).clone());
            }
        }
    }
    let cycles: Vec<Cycle<'_>> = specs
        .iter()
        .zip(pipelines)
        .map(|(spec, (_, progress))| Cycle {
            spec,
            store,
            c,
            progress: *progress,
            label: format!("{}/{}", spec.tenant, spec.name),
        })
        .collect();
    // Which pipelines share a pull: fresh pulling batches of one kind, on
    // equal resources; the first of each group leads it.
    let mut slots: Vec<Slot> = opened
        .into_iter()
        .map(|o| match o {
            Ok((state, batch)) => Slot::Open(Box::new(Going {
                resumed: batch.state != BatchState::Pulling { position: None },
                report: new_report(&batch),
                state,
                batch,
            })),
            Err(e) => Slot::Done(Err(e)),
        })
        .collect();
    let mut group_of: Vec<Option<usize>> = vec![None; slots.len()];
    for i in 0..slots.len() {
        let Slot::Open(going) = &slots[i] else {
            continue;
        };
        let batch = &going.batch;
        if going.resumed {
            continue;
        }
        if !matches!(batch.kind, BatchKind::Full | BatchKind::Incremental) {
            continue;
        }
        // An earlier leader of the same kind on the same resource.
        let lead = (0..i).find(|&j| {
            group_of[j] == Some(j)
                && matches!(&slots[j], Slot::Open(g) if g.batch.kind == batch.kind)
                && cycles[j].spec.resource == cycles[i].spec.resource
        });
        group_of[i] = Some(lead.unwrap_or(i));
    }
    for lead in 0..slots.len() {
        let group: Vec<usize> = (0..slots.len())
            .filter(|&i| group_of[i] == Some(lead))
            .collect();
        if group.len() < 2 {
            continue;
        }
        let names: Vec<&str> = group
            .iter()
            .map(|&i| cycles[i].spec.name.as_str())
            .collect();
        tracing::info!(tenant = %cycles[lead].spec.tenant, resource = %cycles[lead].spec.resource.path, pipelines = ?names, "one pull shared by pipelines reading the same resource");
        let outcome = shared_pull(&cycles, &mut slots, &group).await;
        if let Err(error) = outcome {
            for &i in &group {
                let error = for_member(&error, &cycles[i].label);
                if let Slot::Open(going) = &mut slots[i] {
                    record_failure(&cycles[i], &mut going.batch, &error);
                }
                slots[i] = Slot::Done(Err(error));
            }
        }
    }
    let mut outcomes = Vec::with_capacity(slots.len());
    for (slot, cx) in slots.into_iter().zip(&cycles) {
        outcomes.push(match slot {
            Slot::Done(outcome) => outcome,
            Slot::Open(going) => {
                let Going {
                    state,
                    batch,
                    resumed,
                    report,
                } = *going;
                finish(cx, batch, &state, resumed, report).await
            }
        });
    }
    outcomes
}

/// A pipeline's cycle as the tenant's cycles run: its batch going, or done.
enum Slot {
    Open(Box<Going>),
    Done(Result<CycleReport, SyncError>),
}

/// A pipeline's batch on its way.
struct Going {
    state: mlc_store::PipelineState,
    batch: Batch,
    /// The batch was not a fresh pull when the cycle began.
    resumed: bool,
    report: CycleReport,
}

/// The pipeline's state and its batch: the unfinished one resumed, or a
/// new one of the kind the pipeline needs now.
async fn open(
    spec: &PipelineSpec,
    store: &Arc<TenantStore>,
    c: &Connectors,
) -> Result<(mlc_store::PipelineState, Batch), SyncError> {
    let st = |source: StoreError| SyncError::Store {
        pipeline: format!("{}/{}", spec.tenant, spec.name),
        source,
    };
    let state = blocking(|| store.pipeline(&spec.name)).map_err(st)?;
    let batch = match blocking(|| store.open_batch(&spec.name)).map_err(st)? {
        Some(batch) => {
            tracing::info!(pipeline = %spec.name, batch = %batch.id, state = batch.state.name(), "resuming an unfinished batch");
            batch
        }
        None => {
            // A mapping whose schema changed since the last publish needs
            // the whole data source again: re-exported from the store.
            let schema_changed = match (
                &state.schema,
                c.plugins
                    .schema(&spec.tenant, &spec.plugin, &spec.resource.path),
            ) {
                (Some(old), Ok(now)) if !old.is_empty() => {
                    serde_json::to_string(&now).is_ok_and(|now| &now != old)
                }
                _ => false,
            };
            let repull = crate::projection::needs_repull(
                state.pulled_with.as_deref(),
                spec.resource.fields.as_ref(),
            );
            let kind = if state.datasource_id.is_none() {
                BatchKind::Full
            } else if repull {
                tracing::info!(
                    "the mapping reads fields the stored records were not pulled with: pulling every record again"
                );
                BatchKind::Full
            } else if schema_changed {
                tracing::info!(
                    pipeline = %spec.name,
                    "the mapping's schema changed: re-exporting the data source from the store"
                );
                BatchKind::Reexport
            } else if spec.resource.is_incremental() {
                BatchKind::Incremental
            } else {
                BatchKind::Full
            };
            let pulled_with = crate::projection::stored(spec.resource.fields.as_ref());
            blocking(|| {
                store.create_batch_pulled_with(&spec.name, kind, &[], pulled_with.as_deref())
            })
            .map_err(st)?
        }
    };
    Ok((state, batch))
}

/// The pull of a group, led by its first member.
async fn shared_pull(
    cycles: &[Cycle<'_>],
    slots: &mut [Slot],
    group: &[usize],
) -> Result<(), SyncError> {
    let mut members = Vec::with_capacity(group.len());
    for (i, slot) in slots.iter_mut().enumerate() {
        if !group.contains(&i) {
            continue;
        }
        if let Slot::Open(going) = slot {
            let Going {
                state,
                batch,
                report,
                ..
            } = &mut **going;
            report.shared_pull_with = group
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| cycles[j].spec.name.clone())
                .collect();
            members.push(crate::stages::Member {
                cx: &cycles[i],
                batch,
                state,
                report,
            });
        }
    }
    crate::stages::pull(&mut members, None).await
}

/// `error` (of a shared pull) as one member's error: the Oracle client's
/// error is shared as it is; anything else names the pipeline it came from.
fn for_member(error: &SyncError, label: &str) -> SyncError {
    match error {
        SyncError::Pull {
            resource, source, ..
        } => SyncError::Pull {
            pipeline: label.to_owned(),
            resource: resource.clone(),
            source: source.clone(),
        },
        other => SyncError::SharedPull {
            pipeline: label.to_owned(),
            resource: String::new(),
            with: match other {
                SyncError::Store { pipeline, .. } => pipeline.clone(),
                _ => String::new(),
            },
            reason: error_chain(other),
        },
    }
}

fn new_report(batch: &Batch) -> CycleReport {
    CycleReport {
        batch_id: batch.id.clone(),
        records: 0,
        duplicates_skipped: 0,
        oracle_requests: 0,
        shared_pull_with: Vec::new(),
        rows_written: 0,
        streamed: false,
        rejected_by_mapping: 0,
        rejected_by_writer: 0,
        deleted: 0,
        action: CycleAction::NothingNew,
    }
}

/// Drives an opened batch to `confirmed`, then reconciles when due.
async fn finish(
    cx: &Cycle<'_>,
    batch: Batch,
    state: &mlc_store::PipelineState,
    resumed: bool,
    report: CycleReport,
) -> Result<CycleReport, SyncError> {
    let mut report = run_batch(cx, batch, state, report).await?;
    if let Some(every) = cx.spec.reconcile
        && !resumed
        && reconcile_due(state.last_reconcile.as_deref(), every)
    {
        report.deleted = reconcile(cx).await?;
    }
    Ok(report)
}

/// Drives one batch to `confirmed`; a failure is recorded in the batch
/// and returned.
async fn run_batch(
    cx: &Cycle<'_>,
    mut batch: Batch,
    state: &mlc_store::PipelineState,
    mut report: CycleReport,
) -> Result<CycleReport, SyncError> {
    let spec = cx.spec;
    let span = tracing::info_span!("cycle", tenant = %spec.tenant, pipeline = %spec.name, batch = %batch.id);
    let _enter = span.enter();
    match drive(cx, &mut batch, state, &mut report).await {
        Ok(()) => Ok(report),
        Err(error) => {
            record_failure(cx, &mut batch, &error);
            Err(error)
        }
    }
}

/// Records `error` in the batch (which the next cycle resumes).
fn record_failure(cx: &Cycle<'_>, batch: &mut Batch, error: &SyncError) {
    let job_failed = matches!(error, SyncError::Publish { source, .. }
        if matches!(*source.kind, mlc_tableau::ErrorKind::JobFailed { .. }));
    let text = error_chain(error);
    if let Err(e) = blocking(|| cx.store.fail(batch, &text, job_failed)) {
        tracing::error!(error = %e, "the batch's failure could not be recorded");
    }
}

/// True when the last reconciliation (RFC 3339) is `every` old, or none.
fn reconcile_due(last: Option<&str>, every: std::time::Duration) -> bool {
    let Some(last) = last.and_then(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    }) else {
        return true;
    };
    time::OffsetDateTime::now_utc() - last >= every
}

/// Asks Oracle for every key of the resource, and sends the keys the store
/// knows but Oracle no longer has as a `Deletes` batch; returns how many.
async fn reconcile(cx: &Cycle<'_>) -> Result<u64, SyncError> {
    let (spec, store, c) = (cx.spec, cx.store, cx.c);
    let st = cx.st();
    let present = c
        .oracle
        .reconcile_keys(&spec.resource)
        .await
        .map_err(|source| SyncError::Pull {
            pipeline: cx.label.clone(),
            resource: spec.resource.path.clone(),
            source: source.into(),
        })?;
    let mut known = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page =
            blocking(|| store.latest_keys(&spec.name, after.as_deref(), 10_000)).map_err(st)?;
        let Some(last) = page.last().cloned() else {
            break;
        };
        after = Some(last);
        known.extend(page);
    }
    let gone = mlc_oracle::deleted_keys(&known, &present);
    if !gone.is_empty() {
        tracing::info!(
            deleted = gone.len(),
            "keys gone from Oracle: deleting them in Tableau"
        );
        let batch =
            blocking(|| store.create_batch(&spec.name, BatchKind::Deletes, &gone)).map_err(st)?;
        let state = blocking(|| store.pipeline(&spec.name)).map_err(st)?;
        let report = new_report(&batch);
        run_batch(cx, batch, &state, report).await?;
    }
    blocking(|| store.set_reconciled(&spec.name)).map_err(st)?;
    Ok(gone.len() as u64)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn drive(
    cx: &Cycle<'_>,
    batch: &mut Batch,
    pipeline_state: &mlc_store::PipelineState,
    report: &mut CycleReport,
) -> Result<(), SyncError> {
    let (spec, store, c, progress, label) = (cx.spec, cx.store, cx.c, cx.progress, &cx.label);
    let st = cx.st();
    if let BatchState::Failed { resume, .. } = &batch.state {
        // A retry: back to the state the failure left, as a journal entry.
        let resume = (**resume).clone();
        tracing::info!(batch = %batch.id, from = resume.name(), "retrying a failed batch");
        blocking(|| store.transition(batch, resume)).map_err(st)?;
    }
    loop {
        match batch.state.clone() {
            BatchState::Pulling { position } => {
                let mut alone = [crate::stages::Member {
                    cx,
                    batch: &mut *batch,
                    state: pipeline_state,
                    report: &mut *report,
                }];
                crate::stages::pull(&mut alone, position).await?;
            }
            BatchState::Pulled { end } | BatchState::Mapped { end, .. } => {
                let unchanged_refresh = batch.kind == BatchKind::Full
                    && pipeline_state.datasource_id.is_some()
                    && batch.changed == 0
                    && blocking(|| store.latest_count(&spec.name)).map_err(st)? == batch.records;
                if unchanged_refresh {
                    tracing::info!(
                        records = batch.records,
                        "full refresh unchanged: nothing sent"
                    );
                }
                if (batch.records == 0 && !batch.kind.is_full()) || unchanged_refresh {
                    // Nothing new: confirm at once so the cursor moves past
                    // the overlap that was read.
                    let ds = pipeline_state.datasource_id.clone().unwrap_or_default();
                    let schema = pipeline_state.schema.clone().unwrap_or_default();
                    let next = BatchState::Submitted {
                        end,
                        rows: 0,
                        extract: String::new(),
                        request_ids: Vec::new(),
                        jobs: Vec::new(),
                    };
                    blocking(|| store.transition(batch, next)).map_err(st)?;
                    blocking(|| store.confirm(batch, Vec::new(), &ds, &schema)).map_err(st)?;
                    return Ok(());
                }
                crate::stages::write(cx, batch, end, report).await?;
            }
            BatchState::Written { end, rows, extract } => {
                if !std::path::Path::new(&extract).exists() {
                    // The work directory lost it: write it again from the store.
                    crate::stages::write(cx, batch, end, report).await?;
                    continue;
                }
                let request_ids = if batch.kind.is_full() {
                    Vec::new()
                } else {
                    vec![mlc_tableau::request_id(&batch.id, batch.failed_jobs, 0, 1)]
                };
                let next = BatchState::Submitted {
                    end,
                    rows,
                    extract,
                    request_ids,
                    jobs: Vec::new(),
                };
                blocking(|| store.transition(batch, next)).map_err(st)?;
            }
            BatchState::Submitted { extract, rows, .. } => {
                if !std::path::Path::new(&extract).exists() {
                    let end = match &batch.state {
                        BatchState::Submitted { end, .. } => end.clone(),
                        _ => None,
                    };
                    crate::stages::write(cx, batch, end, report).await?;
                    continue;
                }
                report.rows_written = rows;
                progress.update(Stage::Upload, 0);
                let schema = c
                    .plugins
                    .schema(&spec.tenant, &spec.plugin, &spec.resource.path)
                    .map_err(|source| SyncError::Map {
                        pipeline: label.clone(),
                        batch: batch.id.clone(),
                        source,
                    })?;
                let schema_text = serde_json::to_string(&schema).unwrap_or_default();
                let path = std::path::PathBuf::from(&extract);
                let (datasource_id, jobs) = if batch.kind.is_full() {
                    let ds = c
                        .tableau
                        .publish(&spec.datasource, &path, PublishMode::Overwrite)
                        .await
                        .map_err(|source| SyncError::Publish {
                            pipeline: label.clone(),
                            batch: batch.id.clone(),
                            operation: "publish",
                            source,
                        })?;
                    report.action = CycleAction::Published {
                        datasource_id: ds.id.clone(),
                    };
                    (ds.id, Vec::new())
                } else {
                    let datasource_id = pipeline_state.datasource_id.clone().unwrap_or_default();
                    let update = UpdateBatch {
                        datasource_id: datasource_id.clone(),
                        datasource_name: spec.datasource.clone(),
                        batch_id: batch.id.clone(),
                        failed_attempts: batch.failed_jobs,
                        key_columns: schema.key_columns().map(|k| k.name.clone()).collect(),
                        parts: vec![PayloadPart {
                            path: path.clone(),
                            upserts: batch.kind != BatchKind::Deletes,
                            deletes: batch.kind == BatchKind::Deletes,
                        }],
                    };
                    let outcomes = c.tableau.update_data(&update).await.map_err(|source| {
                        SyncError::Publish {
                            pipeline: label.clone(),
                            batch: batch.id.clone(),
                            operation: "upsert",
                            source,
                        }
                    })?;
                    let jobs: Vec<String> = outcomes
                        .iter()
                        .filter_map(|o| o.job.as_ref().map(|j| j.id.clone()))
                        .collect();
                    report.action = CycleAction::Upserted {
                        request_ids: outcomes.iter().map(|o| o.request_id.clone()).collect(),
                        jobs: jobs.clone(),
                        after_webhook: outcomes.iter().any(|o| o.seen_after_webhook),
                    };
                    (datasource_id, jobs)
                };
                blocking(|| store.confirm(batch, jobs, &datasource_id, &schema_text))
                    .map_err(st)?;
                let _ = tokio::fs::remove_file(&path).await;
                tracing::info!(rows, "batch confirmed");
                return Ok(());
            }
            BatchState::Confirmed { .. } => return Ok(()),
            BatchState::Failed { .. } => {
                // `fail` never keeps a failed state as the resume state.
                return Err(st(StoreError::Transition {
                    batch: batch.id.clone(),
                    from: "failed",
                    to: "failed",
                }));
            }
        }
    }
}
