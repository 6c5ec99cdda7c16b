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

/// One pipeline's part in a pull: its cycle, its batch, what it had
/// exported, and its report.
pub(crate) struct Member<'m, 'a> {
    pub(crate) cx: &'m Cycle<'a>,
    pub(crate) batch: &'m mut Batch,
    pub(crate) state: &'m mlc_store::PipelineState,
    pub(crate) report: &'m mut CycleReport,
}

/// The earlier of two cursors in Oracle's order; `None` (from the start)
/// is the earliest.
fn earliest(kind: mlc_oracle::KeyKind, a: Option<Cursor>, b: Option<Cursor>) -> Option<Cursor> {
    let (a, b) = (a?, b?);
    let order = a
        .last_update
        .cmp(&b.last_update)
        .then_with(|| mlc_oracle::compare_keys(kind, &a.key, &b.key));
    Some(if order.is_le() { a } else { b })
}

/// The later of two positions in Oracle's order.
fn later(kind: mlc_oracle::KeyKind, a: Option<Position>, b: Option<Position>) -> Option<Position> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let order = a
                .last_update
                .cmp(&b.last_update)
                .then_with(|| mlc_oracle::compare_keys(kind, &a.key, &b.key));
            Some(if order.is_ge() { a } else { b })
        }
        (a, b) => a.or(b),
    }
}

/// Pulls the resource once for every member (all of one tenant, reading
/// the same resource, with batches of the same kind) and records each page
/// into every member's batch in one transaction, each member keeping what
/// its own record index does not have. An incremental pull starts at the
/// earliest member cursor: the versions a member had already exported are
/// dropped by its index, so sharing never doubles a record, and a member
/// never starts later than it would alone, so it loses none. `position`
/// (a resumed batch: one member) continues strictly after what it
/// recorded. The Oracle requests are counted in the first member's report.
pub(crate) async fn pull(
    members: &mut [Member<'_, '_>],
    position: Option<Position>,
) -> Result<(), SyncError> {
    let Some(lead) = members.first() else {
        return Ok(());
    };
    let (spec, store, c, label) = (
        lead.cx.spec,
        lead.cx.store,
        lead.cx.c,
        lead.cx.label.clone(),
    );
    let st = lead.cx.st();
    let incremental = lead.batch.kind == BatchKind::Incremental;
    let kind = lead.batch.kind.clone();
    let indices: Vec<StoreIndex<'_>> = members
        .iter()
        .map(|m| StoreIndex {
            store,
            pipeline: &m.cx.spec.name,
            confirmed_seq: m.state.confirmed_seq,
        })
        .collect();
    let start = match position.as_ref() {
        Some(at) => Some(cursor(at)),
        None if incremental => members
            .iter()
            .map(|m| m.state.cursor.as_ref().map(cursor))
            .reduce(|a, b| earliest(spec.resource.key_kind, a, b))
            .flatten(),
        None => None,
    };
    let resume_position = position.clone();
    // A first load of a timestamped resource is read in concurrent slices
    // when the tenant allows more than one request at a time (its position
    // is then the point up to which everything was delivered, safe to
    // record after each page); anything else serially.
    // A batch interrupted mid-pull continues strictly after the position
    // it recorded (no overlap: it read everything up to there), serially
    // (a resumed first load is not sliced again yet).
    let mut pull = if let Some(at) = position.as_ref() {
        AnyPull::Serial(
            c.oracle
                .resume(&spec.resource, cursor(at), &NothingExported),
        )
    } else if kind == BatchKind::Full
        && spec.resource.is_incremental()
        && c.oracle.config().max_concurrency > 1
    {
        AnyPull::Sliced(
            c.oracle
                .pull_sliced(&spec.resource, start, &NothingExported),
        )
    } else {
        AnyPull::Serial(c.oracle.pull(&spec.resource, start, &NothingExported))
    };
    while let Some(page) = pull.next_page().await.map_err(|source| SyncError::Pull {
        pipeline: label.clone(),
        resource: spec.resource.path.clone(),
        source: source.into(),
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
        // What each member keeps of the page: all of it for a full batch,
        // the versions its index does not have for an incremental one.
        let kept: Vec<std::borrow::Cow<'_, [StoredRecord]>> = indices
            .iter()
            .map(|index| {
                if !incremental {
                    return records.as_slice().into();
                }
                let new: Vec<bool> = records
                    .iter()
                    .map(|r| index.is_new(&r.key, r.last_update, &r.content_hash))
                    .collect();
                if new.iter().all(|n| *n) {
                    records.as_slice().into()
                } else {
                    records
                        .iter()
                        .zip(&new)
                        .filter(|(_, n)| **n)
                        .map(|(r, _)| r.clone())
                        .collect::<Vec<_>>()
                        .into()
                }
            })
            .collect();
        for (m, k) in members.iter_mut().zip(&kept) {
            m.report.records += k.len() as u64;
            m.report.duplicates_skipped += (records.len() - k.len()) as u64;
        }
        let at = pull.cursor().map(to_position).or(resume_position.clone());
        let mut pages: Vec<(&mut Batch, &[StoredRecord])> = members
            .iter_mut()
            .zip(&kept)
            .map(|(m, k)| (&mut *m.batch, &k[..]))
            .collect();
        blocking(|| store.record_shared_page(&mut pages, at)).map_err(st)?;
        drop(pages);
        let mut full = false;
        for m in members.iter() {
            m.cx.progress.update(Stage::Pull, m.batch.records);
            full |= incremental && m.batch.records as usize >= m.cx.spec.max_records_per_batch;
        }
        if full {
            tracing::info!(
                records = members[0].batch.records,
                "batch full; the next cycle continues from here"
            );
            break;
        }
    }
    let stats = pull.stats();
    let end = pull.cursor().map(to_position).or(resume_position);
    for (i, m) in members.iter_mut().enumerate() {
        if i == 0 {
            m.report.oracle_requests += stats.requests;
        }
        m.report.duplicates_skipped += stats.duplicates_skipped;
        // A shared pull that stopped early (a full batch) may end before a
        // member's own cursor: that member keeps its cursor.
        let end = later(spec.resource.key_kind, end.clone(), m.state.cursor.clone());
        let batch = &mut *m.batch;
        blocking(|| store.transition(batch, BatchState::Pulled { end })).map_err(m.cx.st())?;
    }
    Ok(())
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
