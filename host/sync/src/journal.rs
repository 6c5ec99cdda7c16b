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
//! Store calls block; they run under `block_in_place`, so a cycle needs the
//! multi-threaded tokio runtime.

use std::sync::Arc;

use mlc_hyper::{HyperWriter, TableName};
use mlc_oracle::{Cursor, NothingExported, RecordIndex};
use mlc_store::{Batch, BatchKind, BatchState, Position, StoreError, StoredRecord, TenantStore};
use mlc_tableau::{
    CHANGES_TABLE, DELETED_TABLE, EXTRACT_SCHEMA, PayloadPart, PublishMode, UpdateBatch,
};

use crate::{Connectors, CycleAction, CycleReport, PipelineSpec, SyncError};

/// What a cycle reports as it goes (progress bars, metrics).
pub trait Progress: Send + Sync {
    /// The cycle entered `stage`; `done` counts its work so far (records
    /// pulled, rows written; 0 for the upload).
    fn update(&self, stage: Stage, done: u64);
}

/// A stage of a cycle, for [`Progress`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Pulling from Oracle: records recorded so far.
    Pull,
    /// Mapping and writing the extract: rows written so far.
    Write,
    /// Publishing or upserting into Tableau and waiting for the job.
    Upload,
}

/// No progress reporting.
pub struct Quiet;

impl Progress for Quiet {
    fn update(&self, _stage: Stage, _done: u64) {}
}

/// What every stage of one cycle works with.
struct Cycle<'a> {
    spec: &'a PipelineSpec,
    store: &'a Arc<TenantStore>,
    c: &'a Connectors,
    progress: &'a dyn Progress,
    /// `tenant/pipeline`, for errors.
    label: String,
}

impl Cycle<'_> {
    /// A store error of this cycle's pipeline.
    fn st(&self) -> impl Fn(StoreError) -> SyncError + Copy + '_ {
        move |source| SyncError::Store {
            pipeline: self.label.clone(),
            source,
        }
    }
}

/// The serial or the sliced pull, driven the same way.
enum AnyPull<'a> {
    Serial(mlc_oracle::Pull<'a>),
    Sliced(mlc_oracle::SlicedPull<'a>),
}

impl AnyPull<'_> {
    async fn next_page(&mut self) -> Result<Option<mlc_oracle::Page>, mlc_oracle::OracleError> {
        match self {
            Self::Serial(p) => p.next_page().await,
            Self::Sliced(p) => p.next_page().await,
        }
    }

    fn cursor(&self) -> Option<&Cursor> {
        match self {
            Self::Serial(p) => p.cursor(),
            Self::Sliced(p) => p.cursor(),
        }
    }

    fn stats(&self) -> mlc_oracle::PullStats {
        match self {
            Self::Serial(p) => p.stats(),
            Self::Sliced(p) => p.stats(),
        }
    }
}

/// Records read from the store and mapped at a time.
const MAP_CHUNK: usize = 500;

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// The record index of a pipeline as the store keeps it: a version counts
/// as exported once a confirmed batch carried it.
struct StoreIndex<'a> {
    store: &'a TenantStore,
    pipeline: &'a str,
    confirmed_seq: u64,
}

impl RecordIndex for StoreIndex<'_> {
    fn is_new(&self, key: &str, last_update: Option<i64>, hash: &[u8; 32]) -> bool {
        blocking(|| {
            self.store
                .is_new(self.pipeline, key, last_update, hash, self.confirmed_seq)
        })
        .unwrap_or_else(|error| {
            // Sending a version again is safe (upserts are keyed); losing
            // one is not.
            tracing::warn!(%error, key, "record index unreadable; the record is exported again");
            true
        })
    }

    fn mark_exported(&self, _key: &str, _last_update: Option<i64>, _hash: &[u8; 32]) {
        // Confirmation marks a whole batch in one transaction.
    }
}

fn to_position(cursor: &Cursor) -> Position {
    Position {
        last_update: cursor.last_update,
        key: cursor.key.clone(),
    }
}

fn cursor(position: &Position) -> Cursor {
    Cursor {
        last_update: position.last_update,
        key: position.key.clone(),
    }
}

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
    let label = format!("{}/{}", spec.tenant, spec.name);
    let st = |source: StoreError| SyncError::Store {
        pipeline: label.clone(),
        source,
    };
    let state = blocking(|| store.pipeline(&spec.name)).map_err(st)?;
    let batch = match blocking(|| store.open_batch(&spec.name)).map_err(st)? {
        Some(batch) => {
            tracing::info!(batch = %batch.id, state = batch.state.name(), "resuming an unfinished batch");
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
            let kind = if state.datasource_id.is_none() {
                BatchKind::Full
            } else if schema_changed {
                tracing::info!(
                    "the mapping's schema changed: re-exporting the data source from the store"
                );
                BatchKind::Reexport
            } else if spec.resource.is_incremental() {
                BatchKind::Incremental
            } else {
                BatchKind::Full
            };
            blocking(|| store.create_batch(&spec.name, kind, &[])).map_err(st)?
        }
    };
    let cx = Cycle {
        spec,
        store,
        c,
        progress,
        label: label.clone(),
    };
    let resumed = batch.state != BatchState::Pulling { position: None };
    let mut report = run_batch(&cx, batch, &state).await?;
    if let Some(every) = spec.reconcile
        && !resumed
        && reconcile_due(state.last_reconcile.as_deref(), every)
    {
        report.deleted = reconcile(&cx).await?;
    }
    Ok(report)
}

/// Drives one batch to `confirmed`; a failure is recorded in the batch
/// and returned.
async fn run_batch(
    cx: &Cycle<'_>,
    mut batch: Batch,
    state: &mlc_store::PipelineState,
) -> Result<CycleReport, SyncError> {
    let (spec, store) = (cx.spec, cx.store);
    let span = tracing::info_span!("cycle", tenant = %spec.tenant, pipeline = %spec.name, batch = %batch.id);
    let _enter = span.enter();
    let mut report = CycleReport {
        batch_id: batch.id.clone(),
        records: 0,
        duplicates_skipped: 0,
        oracle_requests: 0,
        rows_written: 0,
        rejected_by_mapping: 0,
        rejected_by_writer: 0,
        deleted: 0,
        action: CycleAction::NothingNew,
    };
    match drive(cx, &mut batch, state, &mut report).await {
        Ok(()) => Ok(report),
        Err(error) => {
            let job_failed = matches!(&error, SyncError::Publish { source, .. }
                if matches!(*source.kind, mlc_tableau::ErrorKind::JobFailed { .. }));
            let text = error_chain(&error);
            if let Err(e) = blocking(|| store.fail(&mut batch, &text, job_failed)) {
                tracing::error!(error = %e, "the batch's failure could not be recorded");
            }
            Err(error)
        }
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
            source,
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
        run_batch(cx, batch, &state).await?;
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
                pull(cx, batch, pipeline_state, position, report).await?;
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
                write(cx, batch, end, report).await?;
            }
            BatchState::Written { end, rows, extract } => {
                if !std::path::Path::new(&extract).exists() {
                    // The work directory lost it: write it again from the store.
                    write(cx, batch, end, report).await?;
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
                    write(cx, batch, end, report).await?;
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

async fn pull(
    cx: &Cycle<'_>,
    batch: &mut Batch,
    pipeline_state: &mlc_store::PipelineState,
    position: Option<Position>,
    report: &mut CycleReport,
) -> Result<(), SyncError> {
    let (spec, store, c, progress, label) = (cx.spec, cx.store, cx.c, cx.progress, &cx.label);
    let st = cx.st();
    let incremental = batch.kind == BatchKind::Incremental;
    let store_index = StoreIndex {
        store,
        pipeline: &spec.name,
        confirmed_seq: pipeline_state.confirmed_seq,
    };
    let index: &dyn RecordIndex = if incremental {
        &store_index
    } else {
        &NothingExported
    };
    let start = position
        .as_ref()
        .or(if incremental {
            pipeline_state.cursor.as_ref()
        } else {
            None
        })
        .map(cursor);
    let resume_position = position.clone();
    // A first load of a timestamped resource is read in concurrent slices
    // when the tenant allows more than one request at a time (its position
    // is then the point up to which everything was delivered, safe to
    // record after each page); anything else serially.
    // A batch interrupted mid-pull continues strictly after the position
    // it recorded (no overlap: it read everything up to there), serially
    // (a resumed first load is not sliced again yet).
    let mut pull = if let Some(at) = position.as_ref() {
        AnyPull::Serial(c.oracle.resume(&spec.resource, cursor(at), index))
    } else if batch.kind == BatchKind::Full
        && spec.resource.is_incremental()
        && c.oracle.config().max_concurrency > 1
    {
        AnyPull::Sliced(c.oracle.pull_sliced(&spec.resource, start, index))
    } else {
        AnyPull::Serial(c.oracle.pull(&spec.resource, start, index))
    };
    while let Some(page) = pull.next_page().await.map_err(|source| SyncError::Pull {
        pipeline: label.clone(),
        resource: spec.resource.path.clone(),
        source,
    })? {
        let records: Vec<StoredRecord> = page
            .records
            .into_iter()
            .map(|r| StoredRecord {
                key: r.key,
                last_update: r.last_update,
                content_hash: r.content_hash,
                json: r.json,
            })
            .collect();
        report.records += records.len() as u64;
        let at = pull.cursor().map(to_position).or(resume_position.clone());
        blocking(|| store.record_page(batch, &records, at)).map_err(st)?;
        progress.update(Stage::Pull, batch.records);
        if incremental && batch.records as usize >= spec.max_records_per_batch {
            tracing::info!(
                records = batch.records,
                "batch full; the next cycle continues from here"
            );
            break;
        }
    }
    let stats = pull.stats();
    report.oracle_requests += stats.requests;
    report.duplicates_skipped += stats.duplicates_skipped;
    let end = pull
        .cursor()
        .map(to_position)
        .or(resume_position)
        .or(pipeline_state.cursor.clone());
    blocking(|| store.transition(batch, BatchState::Pulled { end })).map_err(st)
}

/// Maps the batch's keys (every key, for a full batch) from their latest
/// stored versions and writes the extract; `mapped` then `written`.
async fn write(
    cx: &Cycle<'_>,
    batch: &mut Batch,
    end: Option<Position>,
    report: &mut CycleReport,
) -> Result<(), SyncError> {
    let (spec, store, c, progress, label) = (cx.spec, cx.store, cx.c, cx.progress, &cx.label);
    let st = cx.st();
    let map_err = |source| SyncError::Map {
        pipeline: label.clone(),
        batch: batch.id.clone(),
        source,
    };
    let schema = c
        .plugins
        .schema(&spec.tenant, &spec.plugin, &spec.resource.path)
        .map_err(map_err)?;
    let full = batch.kind.is_full();
    let deletes = batch.kind == BatchKind::Deletes;
    let table = if full {
        TableName::extract()
    } else if deletes {
        TableName::new(EXTRACT_SCHEMA, DELETED_TABLE)
    } else {
        TableName::new(EXTRACT_SCHEMA, CHANGES_TABLE)
    };
    // A deletes payload holds the key columns of the rows to delete.
    let key_positions: Vec<usize> = schema
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.key)
        .map(|(i, _)| i)
        .collect();
    let schema = if deletes {
        mlc_common::Schema {
            columns: schema.columns.iter().filter(|c| c.key).cloned().collect(),
        }
    } else {
        schema
    };
    tokio::fs::create_dir_all(&c.work_dir)
        .await
        .map_err(|source| SyncError::Io {
            pipeline: label.clone(),
            what: format!("creating {}", c.work_dir.display()),
            source,
        })?;
    let path = c.work_dir.join(format!("{}.hyper", batch.id));
    let _ = tokio::fs::remove_file(&path).await;
    let write_err = |source| SyncError::Write {
        pipeline: label.clone(),
        batch: batch.id.clone(),
        source,
    };
    let mut writer = HyperWriter::create(&c.hyperd, &path, table, &schema)
        .await
        .map_err(write_err)?;
    let (mut rows, mut rejects) = (0u64, 0u64);
    let mut version = String::new();
    let mut after: Option<String> = None;
    loop {
        let keys = blocking(|| {
            if batch.kind == BatchKind::Reexport {
                store.latest_keys(&spec.name, after.as_deref(), MAP_CHUNK)
            } else {
                store.batch_keys(&spec.name, batch.seq, after.as_deref(), MAP_CHUNK)
            }
        })
        .map_err(st)?;
        let Some(last) = keys.last().cloned() else {
            break;
        };
        after = Some(last);
        let records = blocking(|| store.latest_records(&spec.name, &keys)).map_err(st)?;
        let jsons: Vec<String> = records.iter().map(|r| r.json.clone()).collect();
        let (mapped, used) = c
            .plugins
            .map_batch_with_version(&spec.tenant, &spec.plugin, &spec.resource.path, &jsons)
            .await
            .map_err(|source| SyncError::Map {
                pipeline: label.clone(),
                batch: batch.id.clone(),
                source,
            })?;
        version = used.to_string();
        let mut refused: Vec<(String, String)> = mapped
            .rejects
            .iter()
            .map(|r| {
                let key = records
                    .get(r.index as usize)
                    .map_or_else(|| "?".to_owned(), |x| x.key.clone());
                (key, format!("mapping: {}", r.reason))
            })
            .collect();
        report.rejected_by_mapping += mapped.rejects.len() as u64;
        let mut mapped = mapped;
        if deletes {
            for row in &mut mapped.rows {
                let values = std::mem::take(&mut row.values);
                row.values = key_positions
                    .iter()
                    .filter_map(|&i| values.get(i).cloned())
                    .collect();
            }
        }
        let written = writer
            .write_rows(&mapped.rows)
            .await
            .map_err(|source| SyncError::Write {
                pipeline: label.clone(),
                batch: batch.id.clone(),
                source,
            })?;
        report.rejected_by_writer += written.rejects.len() as u64;
        for r in &written.rejects {
            refused.push((format!("row {}", r.index), format!("writer: {}", r.reason)));
        }
        rejects += refused.len() as u64;
        rows += mapped.rows.len() as u64 - written.rejects.len() as u64;
        blocking(|| store.put_rejects(&spec.name, batch.seq, &refused)).map_err(st)?;
        progress.update(Stage::Write, rows);
    }
    let mapped = BatchState::Mapped {
        end: end.clone(),
        rows,
        rejects,
        plugin_version: version,
    };
    blocking(|| store.transition(batch, mapped)).map_err(st)?;
    let summary = writer.finish().await.map_err(|source| SyncError::Write {
        pipeline: label.clone(),
        batch: batch.id.clone(),
        source,
    })?;
    report.rows_written = summary.rows_written;
    let written = BatchState::Written {
        end,
        rows: summary.rows_written,
        extract: summary.path.display().to_string(),
    };
    blocking(|| store.transition(batch, written)).map_err(st)
}
