//! Freshness samples of a pipeline: for each confirmed batch of new
//! records, the seconds from its newest record's LastUpdateDate in Oracle to
//! Tableau's confirmation, kept for a day so that p50/p95 survive a restart
//! of `serve`.

use redb::{ReadableDatabase, ReadableTable};

use crate::StoreError;
use crate::tenant::{FRESHNESS, TenantStore};

impl TenantStore {
    /// Records a sample at `at` (Unix seconds) and drops the pipeline's
    /// samples older than `since`. One transaction.
    pub fn record_freshness(
        &self,
        pipeline: &str,
        at: u64,
        seconds: f64,
        since: u64,
    ) -> Result<(), StoreError> {
        self.guard(|| {
            let tx = self.db.begin_write().map_err(self.err("writing"))?;
            {
                let mut t = tx
                    .open_table(FRESHNESS)
                    .map_err(self.err("opening freshness"))?;
                t.insert((pipeline, at), seconds)
                    .map_err(self.err("writing freshness"))?;
                let old: Vec<u64> = t
                    .range((pipeline, 0)..(pipeline, since))
                    .map_err(self.err("reading freshness"))?
                    .filter_map(|e| e.ok().map(|(k, _)| k.value().1))
                    .collect();
                for a in old {
                    t.remove((pipeline, a))
                        .map_err(self.err("dropping freshness"))?;
                }
            }
            tx.commit().map_err(self.err("committing freshness"))
        })
    }

    /// The pipeline's samples since `since` (Unix seconds), oldest first.
    pub fn freshness(&self, pipeline: &str, since: u64) -> Result<Vec<(u64, f64)>, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(self.err("reading"))?;
            let t = tx
                .open_table(FRESHNESS)
                .map_err(self.err("opening freshness"))?;
            let mut out = Vec::new();
            for e in t
                .range((pipeline, since)..=(pipeline, u64::MAX))
                .map_err(self.err("reading freshness"))?
            {
                let (k, v) = e.map_err(self.err("reading freshness"))?;
                out.push((k.value().1, v.value()));
            }
            Ok(out)
        })
    }
}
