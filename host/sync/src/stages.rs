//! The two stages that do work over a batch's records: `pull` (Oracle →
//! the store, page by page, each page one transaction with the batch's
//! position) and `write` (the store's latest versions → the mapping plugin
//! → the extract, then `mapped` and `written`). The journal
//! (`crate::journal`) drives a batch from state to state and calls them.

use mlc_oracle::{Cursor, NothingExported, RecordIndex};
use mlc_store::{Batch, BatchKind, BatchState, Position, StoredRecord, TenantStore};

use crate::cycle::{Cycle, Stage, blocking};
use crate::extract::{Extract, Streamed};
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
    // A fresh first load or incremental batch streams: each recorded page
    // goes to a writer task of its own (mapping and writing while the next
    // pages arrive); anything else is written from the store afterwards.
    let mut streams: Vec<Option<Streamed>> = Vec::with_capacity(members.len());
    for m in members.iter() {
        let first_load = m.state.datasource_id.is_none();
        streams.push(
            if position.is_none() && crate::extract::streams(m.batch, first_load) {
                Some(Streamed::start(Extract::create(m.cx, m.batch).await?))
            } else {
                None
            },
        );
    }
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
        // (`None`: the whole page).
        let kept: Vec<Option<Vec<StoredRecord>>> = indices
            .iter()
            .map(|index| {
                if !incremental {
                    return None;
                }
                let new: Vec<bool> = records
                    .iter()
                    .map(|r| index.is_new(&r.key, r.last_update, &r.content_hash))
                    .collect();
                (!new.iter().all(|n| *n)).then(|| {
                    records
                        .iter()
                        .zip(&new)
                        .filter(|(_, n)| **n)
                        .map(|(r, _)| r.clone())
                        .collect()
                })
            })
            .collect();
        for (m, k) in members.iter_mut().zip(&kept) {
            let n = k.as_ref().map_or(records.len(), Vec::len);
            m.report.records += n as u64;
            m.report.duplicates_skipped += (records.len() - n) as u64;
        }
        let at = pull.cursor().map(to_position).or(resume_position.clone());
        let mut pages: Vec<(&mut Batch, &[StoredRecord])> = members
            .iter_mut()
            .zip(&kept)
            .map(|(m, k)| (&mut *m.batch, k.as_deref().unwrap_or(&records)))
            .collect();
        let repeats = blocking(|| store.record_shared_page(&mut pages, at)).map_err(st)?;
        drop(pages);
        // Feed the streams; the last one that takes the whole page takes
        // it without a copy.
        let last_whole = (0..members.len())
            .rev()
            .find(|&i| kept[i].is_none() && streams[i].is_some() && repeats[i] == 0);
        let mut records = Some(records);
        for (i, k) in kept.into_iter().enumerate() {
            if repeats[i] > 0
                && let Some(stream) = streams[i].take()
            {
                // A record read again within the batch (it changed while
                // the batch was pulled) has a row written already: the
                // extract is built from the store's latest versions
                // instead, once the pull ends.
                tracing::info!(pipeline = %members[i].cx.spec.name, "a record changed while the batch was pulled: its extract is written from the store after the pull");
                if let Ok(extract) = stream.end(&members[i].cx.label).await {
                    extract.discard().await;
                }
                continue;
            }
            let Some(stream) = streams[i].as_mut() else {
                continue;
            };
            let page = match k {
                Some(own) => own,
                None if Some(i) == last_whole => records.take().unwrap_or_default(),
                None => records.clone().unwrap_or_default(),
            };
            let sent = stream.send(page).await;
            members[i].cx.progress.update(Stage::Write, stream.rows());
            if !sent && let Some(stream) = streams[i].take() {
                // The writer failed: the write stage builds the extract
                // from the store after the pull (and meets the failure
                // there, as a batch without a stream would).
                if let Err(error) = stream.end(&members[i].cx.label).await {
                    tracing::warn!(pipeline = %members[i].cx.spec.name, error = %error, "the streamed extract failed: it is written from the store after the pull");
                }
            }
        }
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
    for ((i, m), stream) in members.iter_mut().enumerate().zip(streams) {
        if i == 0 {
            m.report.oracle_requests += stats.requests;
        }
        m.report.duplicates_skipped += stats.duplicates_skipped;
        // A shared pull that stopped early (a full batch) may end before a
        // member's own cursor: that member keeps its cursor.
        let end = later(spec.resource.key_kind, end.clone(), m.state.cursor.clone());
        let batch = &mut *m.batch;
        blocking(|| store.transition(batch, BatchState::Pulled { end: end.clone() }))
            .map_err(m.cx.st())?;
        let Some(stream) = stream else {
            continue;
        };
        match stream.end(&m.cx.label).await {
            // Nothing new: the journal confirms at once, sending nothing.
            Ok(extract) if m.batch.records == 0 && !m.batch.kind.is_full() => {
                extract.discard().await;
            }
            Ok(extract) => {
                written(m.cx, m.batch, end, extract, m.report).await?;
                m.report.streamed = true;
            }
            Err(error) => {
                tracing::warn!(pipeline = %m.cx.spec.name, error = %error, "the streamed extract failed: it is written from the store");
            }
        }
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
    let (spec, store, progress) = (cx.spec, cx.store, cx.progress);
    let st = cx.st();
    let mut extract = Extract::create(cx, batch).await?;
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
        extract.add(records).await?;
        progress.update(Stage::Write, extract.counts().rows);
    }
    written(cx, batch, end, extract, report).await
}

/// A batch's extract complete: `mapped` (with its counts), the file
/// closed, then `written`.
async fn written(
    cx: &Cycle<'_>,
    batch: &mut Batch,
    end: Option<Position>,
    extract: Extract,
    report: &mut CycleReport,
) -> Result<(), SyncError> {
    let st = cx.st();
    let counts = extract.counts().clone();
    report.rejected_by_mapping += counts.rejected_by_mapping;
    report.rejected_by_writer += counts.rejected_by_writer;
    let mapped = BatchState::Mapped {
        end: end.clone(),
        rows: counts.rows,
        rejects: counts.rejects,
        plugin_version: counts.plugin_version,
    };
    blocking(|| cx.store.transition(batch, mapped)).map_err(st)?;
    let summary = extract.finish().await?;
    report.rows_written = summary.rows_written;
    let written = BatchState::Written {
        end,
        rows: summary.rows_written,
        extract: summary.path.display().to_string(),
    };
    blocking(|| cx.store.transition(batch, written)).map_err(st)
}
