//! The batch journal in a tenant's file: creating batches with sequence
//! numbers never reused, every state change as one transaction (checked
//! against [`BatchState::allows`]), recording a pulled page, and the
//! confirmation that moves the batch, the cursor and the record index
//! together.

use redb::{ReadableDatabase, ReadableTable};

use crate::Position;
use crate::StoreError;
use crate::batch::{Batch, BatchKind, BatchState};
use crate::codec::{decode_latest, encode_latest, encode_version};
use crate::tenant::{
    BATCH_KEYS, BATCHES, LATEST, PIPELINES, PipelineState, RAW, StoredRecord, TenantStore, change,
    json,
};

impl TenantStore {
    // --------------------------------------------------------------- batches

    /// Opens a new batch of `kind` with the pipeline's next sequence number
    /// (never reused). A replay or re-export copies its key set now and
    /// starts `pulled`; a pulling batch starts `pulling`. Refused while the
    /// pipeline has an unfinished batch: so the unfinished one, if any, is
    /// always the newest ([`TenantStore::open_batch`] reads only that).
    pub fn create_batch(
        &self,
        pipeline: &str,
        kind: BatchKind,
        keys: &[String],
    ) -> Result<Batch, StoreError> {
        self.create_batch_pulled_with(pipeline, kind, keys, None)
    }

    /// [`TenantStore::create_batch`] of a batch whose pull asks Oracle for
    /// `pulled_with` (`None`: whole records), recorded in the batch.
    pub fn create_batch_pulled_with(
        &self,
        pipeline: &str,
        kind: BatchKind,
        keys: &[String],
        pulled_with: Option<&str>,
    ) -> Result<Batch, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_write().map_err(self.err("writing"))?;
            let batch;
            {
                let mut pipes = tx
                    .open_table(PIPELINES)
                    .map_err(self.err("opening pipelines"))?;
                let mut state: PipelineState =
                    match pipes.get(pipeline).map_err(self.err("reading"))? {
                        Some(v) => self.decode("pipelines", pipeline, v.value())?,
                        None => PipelineState::default(),
                    };
                {
                    let batches = tx
                        .open_table(BATCHES)
                        .map_err(self.err("opening batches"))?;
                    let newest = batches
                        .range((pipeline, 0)..=(pipeline, u64::MAX))
                        .map_err(self.err("listing batches"))?
                        .next_back()
                        .transpose()
                        .map_err(self.err("listing batches"))?;
                    if let Some((k, v)) = newest {
                        let (_, seq) = k.value();
                        let last: Batch =
                            self.decode("batches", &format!("{pipeline}/{seq}"), v.value())?;
                        if !last.state.is_final() {
                            return Err(StoreError::Unfinished {
                                pipeline: pipeline.to_owned(),
                                batch: last.id,
                                state: last.state.name(),
                            });
                        }
                    }
                }
                let seq = state.next_seq.max(state.confirmed_seq) + 1;
                state.next_seq = seq;
                let bytes = json(&state);
                pipes
                    .insert(pipeline, bytes.as_slice())
                    .map_err(self.err("writing a pipeline"))?;
                let pulled_with = kind
                    .pulls()
                    .then(|| pulled_with.map(str::to_owned))
                    .flatten();
                let start = if kind.pulls() {
                    BatchState::Pulling { position: None }
                } else {
                    BatchState::Pulled { end: None }
                };
                let mut keys_table = tx
                    .open_table(BATCH_KEYS)
                    .map_err(self.err("opening batch keys"))?;
                for key in keys {
                    keys_table
                        .insert((pipeline, seq, key.as_str()), ())
                        .map_err(self.err("writing batch keys"))?;
                }
                batch = Batch {
                    pipeline: pipeline.to_owned(),
                    seq,
                    id: format!("{}.{}.{}.{seq:06}", self.tenant, pipeline, self.instance),
                    kind,
                    history: vec![change(&start)],
                    state: start,
                    failed_jobs: 0,
                    failures: 0,
                    records: keys.len() as u64,
                    changed: 0,
                    pulled_with,
                };
                let mut batches = tx
                    .open_table(BATCHES)
                    .map_err(self.err("opening batches"))?;
                let bytes = json(&batch);
                batches
                    .insert((pipeline, seq), bytes.as_slice())
                    .map_err(self.err("writing a batch"))?;
            }
            tx.commit().map_err(self.err("committing a new batch"))?;
            Ok(batch)
        })
    }

    /// A batch.
    pub fn batch(&self, pipeline: &str, seq: u64) -> Result<Batch, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(self.err("reading"))?;
            let t = tx
                .open_table(BATCHES)
                .map_err(self.err("opening batches"))?;
            let v = t
                .get((pipeline, seq))
                .map_err(self.err("reading a batch"))?
                .ok_or_else(|| StoreError::NotFound {
                    path: self.path.clone(),
                    what: "batch",
                    name: format!("{pipeline}/{seq}"),
                })?;
            self.decode("batches", &format!("{pipeline}/{seq}"), v.value())
        })
    }

    /// The batches of a pipeline, oldest first.
    pub fn batches(&self, pipeline: &str) -> Result<Vec<Batch>, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(self.err("reading"))?;
            let t = tx
                .open_table(BATCHES)
                .map_err(self.err("opening batches"))?;
            let mut out = Vec::new();
            for entry in t
                .range((pipeline, 0)..=(pipeline, u64::MAX))
                .map_err(self.err("listing batches"))?
            {
                let (k, v) = entry.map_err(self.err("listing batches"))?;
                let (_, seq) = k.value();
                out.push(self.decode("batches", &format!("{pipeline}/{seq}"), v.value())?);
            }
            Ok(out)
        })
    }

    /// The pipeline's unfinished batch, if any: at most one, and always the
    /// newest (a batch is only created when the newest is final), so this
    /// reads one entry however long the history.
    pub fn open_batch(&self, pipeline: &str) -> Result<Option<Batch>, StoreError> {
        Ok(self
            .recent_batches(pipeline, None, 1)?
            .into_iter()
            .find(|b| !b.state.is_final()))
    }

    /// The newest `limit` batches of a pipeline, newest first, only those in
    /// state `state` (its name) when given; reads from the newest back.
    pub fn recent_batches(
        &self,
        pipeline: &str,
        state: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Batch>, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(self.err("reading"))?;
            let t = tx
                .open_table(BATCHES)
                .map_err(self.err("opening batches"))?;
            let mut range = t
                .range((pipeline, 0)..=(pipeline, u64::MAX))
                .map_err(self.err("listing batches"))?;
            let mut out = Vec::new();
            while out.len() < limit
                && let Some(entry) = range.next_back()
            {
                let (k, v) = entry.map_err(self.err("listing batches"))?;
                let (_, seq) = k.value();
                let batch: Batch =
                    self.decode("batches", &format!("{pipeline}/{seq}"), v.value())?;
                if state.is_none_or(|s| batch.state.name() == s) {
                    out.push(batch);
                }
            }
            Ok(out)
        })
    }

    /// Moves a batch to `next` in one transaction, checked against the
    /// journal's rules.
    pub fn transition(&self, batch: &mut Batch, next: BatchState) -> Result<(), StoreError> {
        self.guard(|| self.write_batch(batch, next, |_, _| Ok(())))
    }

    /// Marks the batch failed with `error`, keeping where it resumes;
    /// `job_failed` says Tableau ran its job and applied nothing (the next
    /// attempt gets fresh `RequestID`s).
    pub fn fail(&self, batch: &mut Batch, error: &str, job_failed: bool) -> Result<(), StoreError> {
        self.guard(|| {
            let resume = match &batch.state {
                BatchState::Failed { resume, .. } => resume.clone(),
                other => Box::new(other.clone()),
            };
            batch.failures += 1;
            if job_failed {
                batch.failed_jobs += 1;
            }
            self.transition(
                batch,
                BatchState::Failed {
                    error: error.to_owned(),
                    resume,
                },
            )
        })
    }

    /// `batch` moved to `next`, checked against the journal's rules (the
    /// history gains an entry when the state's name changes, or on a
    /// failure).
    fn next_version(&self, batch: &Batch, next: &BatchState) -> Result<Batch, StoreError> {
        if !batch.state.allows(next) {
            return Err(StoreError::Transition {
                batch: batch.id.clone(),
                from: batch.state.name(),
                to: next.name(),
            });
        }
        let mut updated = batch.clone();
        if updated.state.name() != next.name() || matches!(next, BatchState::Failed { .. }) {
            updated.history.push(change(next));
        }
        updated.state = next.clone();
        Ok(updated)
    }

    fn write_batch(
        &self,
        batch: &mut Batch,
        next: BatchState,
        extra: impl FnOnce(&redb::WriteTransaction, &mut Batch) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut updated = self.next_version(batch, &next)?;
        let tx = self.db.begin_write().map_err(self.err("writing"))?;
        extra(&tx, &mut updated)?;
        {
            let mut t = tx
                .open_table(BATCHES)
                .map_err(self.err("opening batches"))?;
            let bytes = json(&updated);
            t.insert((batch.pipeline.as_str(), batch.seq), bytes.as_slice())
                .map_err(self.err("writing a batch"))?;
        }
        tx.commit().map_err(self.err("committing a batch change"))?;
        *batch = updated;
        Ok(())
    }

    /// Records one page of a pulling batch in one transaction: each
    /// record's version, the record's latest version, the batch's key set,
    /// and the batch's position (where a resumed pull continues).
    pub fn record_page(
        &self,
        batch: &mut Batch,
        records: &[StoredRecord],
        position: Option<Position>,
    ) -> Result<(), StoreError> {
        self.record_shared_page(&mut [(batch, records)], position)
            .map(drop)
    }

    /// Records one page of a pull shared by several pipelines' batches, in
    /// one transaction: for each batch its own records (what its record
    /// index kept of the page) as [`TenantStore::record_page`] does, and
    /// the same position for all of them. Either every batch records the
    /// page or none does. Answers, per batch, how many of its records were
    /// already in the batch (a record that changed while it was pulled,
    /// read again).
    pub fn record_shared_page(
        &self,
        pages: &mut [(&mut Batch, &[StoredRecord])],
        position: Option<Position>,
    ) -> Result<Vec<u64>, StoreError> {
        self.guard(|| {
            let next = BatchState::Pulling { position };
            let mut updated = Vec::with_capacity(pages.len());
            for (batch, _) in pages.iter() {
                updated.push(self.next_version(batch, &next)?);
            }
            let mut repeats = vec![0u64; pages.len()];
            let tx = self.db.begin_write().map_err(self.err("writing"))?;
            {
                let mut raw = tx.open_table(RAW).map_err(self.err("opening raw"))?;
                let mut latest = tx.open_table(LATEST).map_err(self.err("opening latest"))?;
                let mut keys = tx
                    .open_table(BATCH_KEYS)
                    .map_err(self.err("opening batch keys"))?;
                let mut batches = tx
                    .open_table(BATCHES)
                    .map_err(self.err("opening batches"))?;
                for (((_, records), updated), repeated) in
                    pages.iter().zip(updated.iter_mut()).zip(repeats.iter_mut())
                {
                    let (pipeline, seq) = (updated.pipeline.as_str(), updated.seq);
                    let (mut added, mut changed) = (0u64, 0u64);
                    for r in records.iter() {
                        let fresh = keys
                            .insert((pipeline, seq, r.key.as_str()), ())
                            .map_err(self.err("writing batch keys"))?
                            .is_none();
                        added += u64::from(fresh);
                        *repeated += u64::from(!fresh);
                        // A version identical to the latest stored one (a
                        // full refresh that found it unchanged) is not
                        // stored again.
                        let same = latest
                            .get((pipeline, r.key.as_str()))
                            .map_err(self.err("reading latest versions"))?
                            .and_then(|v| decode_latest(v.value()))
                            .is_some_and(|(_, lu, h)| lu == r.last_update && h == r.content_hash);
                        if same {
                            continue;
                        }
                        changed += 1;
                        let encoded = encode_version(r.last_update, &r.content_hash, &r.json);
                        raw.insert((pipeline, r.key.as_str(), seq), encoded.as_slice())
                            .map_err(self.err("writing raw records"))?;
                        let pointer = encode_latest(seq, r.last_update, &r.content_hash);
                        latest
                            .insert((pipeline, r.key.as_str()), pointer.as_slice())
                            .map_err(self.err("writing latest versions"))?;
                    }
                    updated.records += added;
                    updated.changed += changed;
                    let bytes = json(&*updated);
                    batches
                        .insert((pipeline, seq), bytes.as_slice())
                        .map_err(self.err("writing a batch"))?;
                }
            }
            tx.commit().map_err(self.err("committing a page"))?;
            for ((batch, _), updated) in pages.iter_mut().zip(updated) {
                **batch = updated;
            }
            Ok(repeats)
        })
    }

    /// Confirms a batch: the batch, the pipeline's cursor, data source,
    /// schema and confirmed sequence (which makes every version the batch
    /// recorded count as exported) change in one transaction.
    pub fn confirm(
        &self,
        batch: &mut Batch,
        jobs: Vec<String>,
        datasource_id: &str,
        schema: &str,
    ) -> Result<(), StoreError> {
        self.guard(|| {
            let (rows, end) = match &batch.state {
                BatchState::Submitted { rows, end, .. } => (*rows, end.clone()),
                other => {
                    return Err(StoreError::Transition {
                        batch: batch.id.clone(),
                        from: other.name(),
                        to: "confirmed",
                    });
                }
            };
            let pipeline = batch.pipeline.clone();
            let seq = batch.seq;
            let pulls_cursor =
                batch.kind == BatchKind::Incremental || batch.kind == BatchKind::Full;
            // A full read from Oracle is the whole resource: keys it did not
            // return are gone from Oracle and leave the latest versions (their
            // history stays).
            let prune = batch.kind == BatchKind::Full;
            let deletes = batch.kind == BatchKind::Deletes;
            let pulled_with = batch.pulled_with.clone();
            let path = self.path.clone();
            let tenant_path = self.path.clone();
            let next = BatchState::Confirmed {
                rows,
                jobs,
                datasource_id: datasource_id.to_owned(),
            };
            self.write_batch(batch, next, move |tx, _| {
                let db = |e: redb::Error| StoreError::Database {
                    path: path.clone(),
                    what: "confirming".into(),
                    source: Box::new(e),
                };
                if deletes {
                    let mut latest = tx.open_table(LATEST).map_err(|e| db(e.into()))?;
                    let keys = tx.open_table(BATCH_KEYS).map_err(|e| db(e.into()))?;
                    let gone =
                        crate::records::keys_of_batch(&keys, &pipeline, seq, None, usize::MAX)
                            .map_err(|e| db(e.into()))?;
                    for key in &gone {
                        latest
                            .remove((pipeline.as_str(), key.as_str()))
                            .map_err(|e| db(e.into()))?;
                    }
                }
                if prune {
                    let mut latest = tx.open_table(LATEST).map_err(|e| db(e.into()))?;
                    let keys = tx.open_table(BATCH_KEYS).map_err(|e| db(e.into()))?;
                    let mut gone = Vec::new();
                    for entry in latest
                        .range((pipeline.as_str(), "")..)
                        .map_err(|e| db(e.into()))?
                    {
                        let (k, _) = entry.map_err(|e| db(e.into()))?;
                        let (p, key) = k.value();
                        if p != pipeline {
                            break;
                        }
                        if keys
                            .get((pipeline.as_str(), seq, key))
                            .map_err(|e| db(e.into()))?
                            .is_none()
                        {
                            gone.push(key.to_owned());
                        }
                    }
                    for key in &gone {
                        latest
                            .remove((pipeline.as_str(), key.as_str()))
                            .map_err(|e| db(e.into()))?;
                    }
                }
                let mut pipes = tx.open_table(PIPELINES).map_err(|e| db(e.into()))?;
                let mut state: PipelineState =
                    match pipes.get(pipeline.as_str()).map_err(|e| db(e.into()))? {
                        Some(v) => {
                            serde_json::from_slice(v.value()).map_err(|e| StoreError::Decode {
                                path: tenant_path.clone(),
                                table: "pipelines",
                                key: pipeline.clone(),
                                reason: e.to_string(),
                            })?
                        }
                        None => PipelineState::default(),
                    };
                if pulls_cursor && end.is_some() {
                    state.cursor = end;
                }
                // A full read replaces every latest version; an incremental
                // one only some, so the records pulled whole before keep
                // their attributes and those pulled narrower bound them all.
                // (The caller runs an incremental batch only with a
                // projection within the stored one.)
                if prune || (pulls_cursor && pulled_with.is_some()) {
                    state.pulled_with = pulled_with;
                }
                state.confirmed_seq = state.confirmed_seq.max(seq);
                state.datasource_id = Some(datasource_id.to_owned());
                state.schema = Some(schema.to_owned());
                let bytes = json(&state);
                pipes
                    .insert(pipeline.as_str(), bytes.as_slice())
                    .map_err(|e| db(e.into()))?;
                Ok(())
            })
        })
    }
}
