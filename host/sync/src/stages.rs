//! The two stages that do work over a batch's records: `pull` (Oracle →
//! the store, page by page, each page one transaction with the batch's
//! position) and `write` (the store's latest versions → the mapping plugin
//! → the extract, then `mapped` and `written`). The journal
//! (`crate::journal`) drives a batch from state to state and calls them.

use mlc_hyper::{HyperWriter, TableName};
use mlc_oracle::{Cursor, NothingExported, RecordIndex};
use mlc_store::{Batch, BatchKind, BatchState, Position, StoredRecord, TenantStore};
use mlc_tableau::{CHANGES_TABLE, DELETED_TABLE, EXTRACT_SCHEMA};

use crate::cycle::{Cycle, Stage, blocking};
use crate::{CycleReport, SyncError};

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

pub(crate) async fn pull(
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
pub(crate) async fn write(
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
        let mut records = blocking(|| store.latest_records(&spec.name, &keys)).map_err(st)?;
        // Moved out, not copied: only the keys are read after mapping.
        let jsons: Vec<String> = records
            .iter_mut()
            .map(|r| std::mem::take(&mut r.json))
            .collect();
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
