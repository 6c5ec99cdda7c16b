//! A tenant's records: the per-batch raw versions, each record's latest
//! version (the record index), rejects, reference datasets, and the
//! retention that drops old per-batch versions.

use redb::{ReadableDatabase, ReadableTable};

use crate::StoreError;
use crate::batch::BatchState;
use crate::codec::{decode_latest, decode_version};
use crate::tenant::{
    BATCH_KEYS, LATEST, META, RAW, REFERENCE, REJECTS, StoredRecord, TenantStore, VersionInfo,
};

impl TenantStore {
    // --------------------------------------------------------------- records

    /// True unless exactly this version of the record was exported by a
    /// confirmed batch of `pipeline` (the record index).
    pub fn is_new(
        &self,
        pipeline: &str,
        key: &str,
        last_update: Option<i64>,
        hash: &[u8; 32],
        confirmed_seq: u64,
    ) -> Result<bool, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(self.err("reading"))?;
            let t = tx.open_table(LATEST).map_err(self.err("opening latest"))?;
            let Some(v) = t.get((pipeline, key)).map_err(self.err("reading latest"))? else {
                return Ok(true);
            };
            let (seq, lu, h) = decode_latest(v.value()).ok_or_else(|| self.bad("latest", key))?;
            Ok(!(seq <= confirmed_seq && lu == last_update && &h == hash))
        })
    }

    fn bad(&self, table: &'static str, key: &str) -> StoreError {
        StoreError::Decode {
            path: self.path.clone(),
            table,
            key: key.to_owned(),
            reason: "truncated entry".into(),
        }
    }

    /// How many keys of `pipeline` have a latest version (records not
    /// known to be gone from Oracle).
    pub fn latest_count(&self, pipeline: &str) -> Result<u64, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(self.err("reading"))?;
            let t = tx.open_table(LATEST).map_err(self.err("opening latest"))?;
            let mut n = 0;
            for entry in t
                .range((pipeline, "")..)
                .map_err(self.err("reading latest"))?
            {
                let (k, _) = entry.map_err(self.err("reading latest"))?;
                if k.value().0 != pipeline {
                    break;
                }
                n += 1;
            }
            Ok(n)
        })
    }

    /// Up to `limit` keys of a batch after `after`, in key order.
    pub fn batch_keys(
        &self,
        pipeline: &str,
        seq: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(self.err("reading"))?;
            let t = tx
                .open_table(BATCH_KEYS)
                .map_err(self.err("opening batch keys"))?;
            keys_of_batch(&t, pipeline, seq, after, limit).map_err(self.err("reading batch keys"))
        })
    }

    /// Up to `limit` keys with a latest version after `after`, in key order.
    pub fn latest_keys(
        &self,
        pipeline: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(self.err("reading"))?;
            let t = tx.open_table(LATEST).map_err(self.err("opening latest"))?;
            let mut out = Vec::with_capacity(limit);
            for entry in t
                .range((pipeline, after.unwrap_or(""))..)
                .map_err(self.err("reading latest"))?
            {
                let (k, _) = entry.map_err(self.err("reading latest"))?;
                let (p, key) = k.value();
                if p != pipeline {
                    break;
                }
                if after == Some(key) {
                    continue;
                }
                out.push(key.to_owned());
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
    }

    /// The latest stored version of each key (keys without one are left
    /// out).
    pub fn latest_records(
        &self,
        pipeline: &str,
        keys: &[String],
    ) -> Result<Vec<StoredRecord>, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(self.err("reading"))?;
            let latest = tx.open_table(LATEST).map_err(self.err("opening latest"))?;
            let raw = tx.open_table(RAW).map_err(self.err("opening raw"))?;
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                let Some(v) = latest
                    .get((pipeline, key.as_str()))
                    .map_err(self.err("reading latest"))?
                else {
                    continue;
                };
                let (seq, _, _) =
                    decode_latest(v.value()).ok_or_else(|| self.bad("latest", key))?;
                let r = raw
                    .get((pipeline, key.as_str(), seq))
                    .map_err(self.err("reading raw"))?
                    .ok_or_else(|| self.bad("raw", key))?;
                let (last_update, content_hash, json) =
                    decode_version(r.value()).ok_or_else(|| self.bad("raw", key))?;
                out.push(StoredRecord {
                    key: key.clone(),
                    last_update,
                    content_hash,
                    json,
                });
            }
            Ok(out)
        })
    }

    /// Every stored version of a record, oldest batch first.
    pub fn versions(&self, pipeline: &str, key: &str) -> Result<Vec<VersionInfo>, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(self.err("reading"))?;
            let raw = tx.open_table(RAW).map_err(self.err("opening raw"))?;
            let mut out = Vec::new();
            for entry in raw
                .range((pipeline, key, 0)..=(pipeline, key, u64::MAX))
                .map_err(self.err("reading raw"))?
            {
                let (k, v) = entry.map_err(self.err("reading raw"))?;
                let (_, _, seq) = k.value();
                let (last_update, hash, _) =
                    decode_version(v.value()).ok_or_else(|| self.bad("raw", key))?;
                out.push(VersionInfo {
                    seq,
                    last_update,
                    content_hash: hash.iter().map(|b| format!("{b:02x}")).collect(),
                });
            }
            Ok(out)
        })
    }

    /// Stores the rejects of a batch (key → reason), replacing earlier ones
    /// of the same keys.
    pub fn put_rejects(
        &self,
        pipeline: &str,
        seq: u64,
        rejects: &[(String, String)],
    ) -> Result<(), StoreError> {
        self.guard(|| {
            if rejects.is_empty() {
                return Ok(());
            }
            let tx = self.db.begin_write().map_err(self.err("writing"))?;
            {
                let mut t = tx
                    .open_table(REJECTS)
                    .map_err(self.err("opening rejects"))?;
                for (key, reason) in rejects {
                    t.insert((pipeline, seq, key.as_str()), reason.as_str())
                        .map_err(self.err("writing rejects"))?;
                }
            }
            tx.commit().map_err(self.err("committing rejects"))
        })
    }

    /// The rejects of a batch.
    pub fn rejects(&self, pipeline: &str, seq: u64) -> Result<Vec<(String, String)>, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(self.err("reading"))?;
            let t = tx
                .open_table(REJECTS)
                .map_err(self.err("opening rejects"))?;
            let mut out = Vec::new();
            for entry in t
                .range((pipeline, seq, "")..)
                .map_err(self.err("reading rejects"))?
            {
                let (k, v) = entry.map_err(self.err("reading rejects"))?;
                let (p, s, key) = k.value();
                if p != pipeline || s != seq {
                    break;
                }
                out.push((key.to_owned(), v.value().to_owned()));
            }
            Ok(out)
        })
    }

    // ------------------------------------------------------------- reference

    /// Replaces a reference dataset in one transaction.
    pub fn replace_dataset(
        &self,
        dataset: &str,
        records: &[(String, String)],
    ) -> Result<(), StoreError> {
        self.guard(|| {
            let tx = self.db.begin_write().map_err(self.err("writing"))?;
            {
                let mut t = tx
                    .open_table(REFERENCE)
                    .map_err(self.err("opening reference"))?;
                let old: Vec<String> = {
                    let mut keys = Vec::new();
                    for entry in t
                        .range((dataset, "")..)
                        .map_err(self.err("reading reference"))?
                    {
                        let (k, _) = entry.map_err(self.err("reading reference"))?;
                        let (d, key) = k.value();
                        if d != dataset {
                            break;
                        }
                        keys.push(key.to_owned());
                    }
                    keys
                };
                for key in &old {
                    t.remove((dataset, key.as_str()))
                        .map_err(self.err("writing reference"))?;
                }
                for (key, json) in records {
                    t.insert((dataset, key.as_str()), json.as_str())
                        .map_err(self.err("writing reference"))?;
                }
                let mut meta = tx.open_table(META).map_err(self.err("opening meta"))?;
                let count = (records.len() as u64).to_le_bytes();
                meta.insert(format!("dataset:{dataset}").as_str(), count.as_slice())
                    .map_err(self.err("writing meta"))?;
            }
            tx.commit().map_err(self.err("committing reference data"))
        })
    }

    /// True when the reference dataset was ever synced (it may be empty).
    pub fn has_dataset(&self, dataset: &str) -> Result<bool, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(self.err("reading"))?;
            let meta = tx.open_table(META).map_err(self.err("opening meta"))?;
            let key = format!("dataset:{dataset}");
            Ok(meta
                .get(key.as_str())
                .map_err(self.err("reading meta"))?
                .is_some())
        })
    }

    /// One reference record.
    pub fn lookup(&self, dataset: &str, key: &str) -> Result<Option<String>, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(self.err("reading"))?;
            let t = tx
                .open_table(REFERENCE)
                .map_err(self.err("opening reference"))?;
            Ok(t.get((dataset, key))
                .map_err(self.err("reading reference"))?
                .map(|v| v.value().to_owned()))
        })
    }

    // ------------------------------------------------------------- retention

    /// Drops the per-batch raw versions of `pipeline`'s batches confirmed
    /// before `cutoff` (RFC 3339), except each record's latest version,
    /// which is always kept (a full re-export needs it). The batches, their
    /// key sets and history stay. One transaction; returns the versions
    /// dropped.
    pub fn prune_raw(
        &self,
        pipeline: &str,
        cutoff: time::OffsetDateTime,
    ) -> Result<u64, StoreError> {
        self.guard(|| {
            let old: Vec<u64> = self
                .batches(pipeline)?
                .into_iter()
                .filter(|b| {
                    matches!(b.state, BatchState::Confirmed { .. })
                        && b.history
                            .iter()
                            .rev()
                            .find(|c| c.state == "confirmed")
                            .and_then(|c| {
                                time::OffsetDateTime::parse(
                                    &c.at,
                                    &time::format_description::well_known::Rfc3339,
                                )
                                .ok()
                            })
                            .is_some_and(|at| at < cutoff)
                })
                .map(|b| b.seq)
                .collect();
            let tx = self.db.begin_write().map_err(self.err("writing"))?;
            let mut dropped = 0u64;
            {
                let keys = tx
                    .open_table(BATCH_KEYS)
                    .map_err(self.err("opening batch keys"))?;
                let latest = tx.open_table(LATEST).map_err(self.err("opening latest"))?;
                let mut raw = tx.open_table(RAW).map_err(self.err("opening raw"))?;
                for seq in old {
                    let batch_keys = keys_of_batch(&keys, pipeline, seq, None, usize::MAX)
                        .map_err(self.err("reading batch keys"))?;
                    for key in batch_keys {
                        let is_latest = latest
                            .get((pipeline, key.as_str()))
                            .map_err(self.err("reading latest"))?
                            .and_then(|v| decode_latest(v.value()))
                            .is_some_and(|(s, _, _)| s == seq);
                        if !is_latest
                            && raw
                                .remove((pipeline, key.as_str(), seq))
                                .map_err(self.err("pruning raw"))?
                                .is_some()
                        {
                            dropped += 1;
                        }
                    }
                }
            }
            tx.commit().map_err(self.err("committing the pruning"))?;
            Ok(dropped)
        })
    }
}

/// Up to `limit` keys of batch `seq` of `pipeline` after `after` (all of
/// them with `usize::MAX`), in key order, from the `batch_keys` table of
/// any transaction.
pub(crate) fn keys_of_batch(
    table: &impl ReadableTable<(&'static str, u64, &'static str), ()>,
    pipeline: &str,
    seq: u64,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, redb::StorageError> {
    let mut out = Vec::new();
    for entry in table.range((pipeline, seq, after.unwrap_or(""))..)? {
        let (k, _) = entry?;
        let (p, s, key) = k.value();
        if p != pipeline || s != seq || out.len() >= limit {
            break;
        }
        if after != Some(key) {
            out.push(key.to_owned());
        }
    }
    Ok(out)
}
