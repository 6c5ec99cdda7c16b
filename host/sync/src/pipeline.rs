//! A pipeline and its cycle: pull → map → write → publish/upsert → confirm.

use std::path::PathBuf;
use std::sync::Arc;

use mlc_common::Schema;
use mlc_hyper::{HyperWriter, Hyperd, TableName};
use mlc_oracle::{
    Cursor, MemoryRecordIndex, NothingExported, OracleClient, RecordIndex, ResourceSpec,
};
use mlc_plugin::PluginRuntime;
use mlc_tableau::{
    CHANGES_TABLE, EXTRACT_SCHEMA, PayloadPart, PublishMode, TableauClient, UpdateBatch,
};
use tracing::Instrument;

use crate::SyncError;

/// What a pipeline moves: one Oracle resource of one tenant, mapped by one
/// plugin, into one Tableau data source.
#[derive(Clone, Debug)]
pub struct PipelineSpec {
    /// The tenant.
    pub tenant: String,
    /// The pipeline's name, unique within the tenant.
    pub name: String,
    /// The Oracle resource read.
    pub resource: ResourceSpec,
    /// The tenant's plugin (as loaded in the [`PluginRuntime`]) that maps it.
    pub plugin: String,
    /// The Tableau data source written.
    pub datasource: String,
    /// An incremental batch stops taking pages once it holds this many
    /// records; the next cycle continues from there. Bounds the update
    /// payload (Tableau refuses those above its limit, 100 MB by default)
    /// and the batch's memory. Whole pages are taken, so a batch can exceed
    /// it by less than one page. Full publishes are not capped: they upload
    /// in chunks.
    pub max_records_per_batch: usize,
}

/// The default [`PipelineSpec::max_records_per_batch`]: about 10–60 MB of
/// update payload for typical ERP rows.
pub const DEFAULT_MAX_RECORDS_PER_BATCH: usize = 200_000;

/// The connections a cycle uses; shared by all of a tenant's pipelines.
pub struct Connectors {
    /// The tenant's Oracle Fusion client.
    pub oracle: OracleClient,
    /// The tenant's Tableau client.
    pub tableau: TableauClient,
    /// The plugin runtime.
    pub plugins: PluginRuntime,
    /// The Hyper engine that writes extracts.
    pub hyperd: Arc<Hyperd>,
    /// Where batch extracts are written.
    pub work_dir: PathBuf,
}

/// What a cycle did with Tableau.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CycleAction {
    /// Nothing new since the cursor: nothing sent.
    NothingNew,
    /// The full extract was published (first run, or a full refresh).
    Published {
        /// The data source's id.
        datasource_id: String,
    },
    /// The batch was upserted.
    Upserted {
        /// The `RequestID`s sent, one per payload part.
        request_ids: Vec<String>,
        /// The jobs Tableau ran.
        jobs: Vec<String>,
    },
}

/// The outcome of one cycle.
#[derive(Clone, Debug)]
pub struct CycleReport {
    /// The batch id (deterministic per pipeline and cycle number).
    pub batch_id: String,
    /// Records read that were not exported before.
    pub records: u64,
    /// Records skipped as already exported (overlap window, drift).
    pub duplicates_skipped: u64,
    /// HTTP requests to Oracle (token requests excluded).
    pub oracle_requests: u64,
    /// Rows written into the extract.
    pub rows_written: u64,
    /// Records the mapping refused (with reasons in the log).
    pub rejected_by_mapping: u64,
    /// Rows the extract writer refused (value does not fit its column).
    pub rejected_by_writer: u64,
    /// What was sent to Tableau.
    pub action: CycleAction,
}

/// One pipeline's state between cycles (in memory until the store lands).
pub struct Pipeline {
    spec: PipelineSpec,
    cursor: Option<Cursor>,
    datasource_id: Option<String>,
    index: MemoryRecordIndex,
    /// Content fingerprint of the last full refresh published.
    last_full_fingerprint: Option<[u8; 32]>,
    schema: Option<Schema>,
    cycles: u64,
    /// Attempts of the pending batch whose Tableau job definitively failed
    /// (nothing applied): the next attempt must use fresh `RequestID`s.
    failed_attempts: u32,
}

impl Pipeline {
    /// A pipeline that has never run.
    pub fn new(spec: PipelineSpec) -> Self {
        Self {
            spec,
            cursor: None,
            datasource_id: None,
            index: MemoryRecordIndex::new(),
            last_full_fingerprint: None,
            schema: None,
            cycles: 0,
            failed_attempts: 0,
        }
    }

    /// The pipeline's definition.
    pub fn spec(&self) -> &PipelineSpec {
        &self.spec
    }

    /// The confirmed cursor (none before the first confirmed batch and for
    /// resources refreshed in full).
    pub fn cursor(&self) -> Option<&Cursor> {
        self.cursor.as_ref()
    }

    /// The Tableau data source id, once published.
    pub fn datasource_id(&self) -> Option<&str> {
        self.datasource_id.as_deref()
    }

    fn label(&self) -> String {
        format!("{}/{}", self.spec.tenant, self.spec.name)
    }

    /// Runs one cycle. On error nothing is confirmed: the cursor and the
    /// record index stay as they were.
    pub async fn run_cycle(&mut self, c: &Connectors) -> Result<CycleReport, SyncError> {
        let span =
            tracing::info_span!("cycle", tenant = %self.spec.tenant, pipeline = %self.spec.name);
        self.cycle(c).instrument(span).await
    }

    async fn cycle(&mut self, c: &Connectors) -> Result<CycleReport, SyncError> {
        let label = self.label();
        let batch_id = format!(
            "{}.{}.{:06}",
            self.spec.tenant,
            self.spec.name,
            self.cycles + 1
        );
        let resource = self.spec.resource.path.clone();
        let incremental = self.spec.resource.timestamp.is_some();
        let schema = c
            .plugins
            .schema(&self.spec.tenant, &self.spec.plugin, &resource)
            .map_err(|source| SyncError::Map {
                pipeline: label.clone(),
                batch: batch_id.clone(),
                source,
            })?;
        // A new schema needs a full Overwrite: the upsert target would not
        // match the payload any more.
        let schema_changed = self.schema.as_ref().is_some_and(|s| s != &schema);
        let full = !incremental || self.datasource_id.is_none() || schema_changed;
        let table = if full {
            TableName::extract()
        } else {
            TableName::new(EXTRACT_SCHEMA, CHANGES_TABLE)
        };
        tokio::fs::create_dir_all(&c.work_dir)
            .await
            .map_err(|source| SyncError::Io {
                pipeline: label.clone(),
                what: format!("creating {}", c.work_dir.display()),
                source,
            })?;
        let path = c.work_dir.join(format!("{batch_id}.hyper"));
        // A file left by a crashed attempt of the same batch is rebuilt.
        let _ = tokio::fs::remove_file(&path).await;
        let mut writer = HyperWriter::create(&c.hyperd, &path, table, &schema)
            .await
            .map_err(|source| SyncError::Write {
                pipeline: label.clone(),
                batch: batch_id.clone(),
                source,
            })?;

        // An incremental pull from the cursor skips what was exported; a
        // full read (first run, full-refresh resource, schema change) takes
        // everything.
        let index: &dyn RecordIndex = if full { &NothingExported } else { &self.index };
        let start = if incremental && !full {
            self.cursor.as_ref()
        } else {
            None
        };
        let mut pull = c.oracle.pull(&self.spec.resource, start.cloned(), index);
        let mut exported: Vec<(String, Option<i64>, [u8; 32])> = Vec::new();
        let mut new_cursor = self.cursor.clone();
        let (mut rejected_by_mapping, mut rejected_by_writer) = (0u64, 0u64);
        while let Some(page) = pull.next_page().await.map_err(|source| SyncError::Pull {
            pipeline: label.clone(),
            resource: resource.clone(),
            source,
        })? {
            if page.records.is_empty() {
                continue;
            }
            let mut keys = Vec::with_capacity(page.records.len());
            let mut jsons = Vec::with_capacity(page.records.len());
            for record in page.records {
                keys.push(record.key.clone());
                exported.push((record.key, record.last_update, record.content_hash));
                jsons.push(record.json);
            }
            let mapped = c
                .plugins
                .map_batch(&self.spec.tenant, &self.spec.plugin, &resource, &jsons)
                .await
                .map_err(|source| SyncError::Map {
                    pipeline: label.clone(),
                    batch: batch_id.clone(),
                    source,
                })?;
            for reject in &mapped.rejects {
                let key = keys
                    .get(reject.index as usize)
                    .map(String::as_str)
                    .unwrap_or("?");
                tracing::warn!(batch = %batch_id, key, field = ?reject.field, reason = %reject.reason, "record rejected by the mapping");
            }
            rejected_by_mapping += mapped.rejects.len() as u64;
            let report =
                writer
                    .write_rows(&mapped.rows)
                    .await
                    .map_err(|source| SyncError::Write {
                        pipeline: label.clone(),
                        batch: batch_id.clone(),
                        source,
                    })?;
            for reject in &report.rejects {
                tracing::warn!(batch = %batch_id, row = reject.index, field = ?reject.field, reason = %reject.reason, "row refused by the extract writer");
            }
            rejected_by_writer += report.rejects.len() as u64;
            if !full && exported.len() >= self.spec.max_records_per_batch {
                tracing::info!(batch = %batch_id, records = exported.len(), "batch full; the next cycle continues from here");
                break;
            }
        }
        // The pull's own position, not the last page's: pages made only of
        // duplicates are skipped inside the pull but still move it.
        if let Some(cursor) = pull.cursor() {
            new_cursor = Some(cursor.clone());
        }
        let stats = pull.stats();
        let summary = writer.finish().await.map_err(|source| SyncError::Write {
            pipeline: label.clone(),
            batch: batch_id.clone(),
            source,
        })?;
        let fingerprint = if full {
            content_fingerprint(&mut exported)
        } else {
            [0; 32]
        };
        let mut report = CycleReport {
            batch_id: batch_id.clone(),
            records: stats.records.saturating_sub(stats.duplicates_skipped),
            duplicates_skipped: stats.duplicates_skipped,
            oracle_requests: stats.requests,
            rows_written: summary.rows_written,
            rejected_by_mapping,
            rejected_by_writer,
            action: CycleAction::NothingNew,
        };

        let unchanged_full = full
            && !schema_changed
            && self.datasource_id.is_some()
            && self.last_full_fingerprint == Some(fingerprint);
        if (!full && exported.is_empty()) || unchanged_full {
            let _ = tokio::fs::remove_file(&summary.path).await;
            self.cursor = new_cursor;
            self.cycles += 1;
            return Ok(report);
        }

        if full {
            let ds = c
                .tableau
                .publish(&self.spec.datasource, &summary.path, PublishMode::Overwrite)
                .await
                .map_err(|source| SyncError::Publish {
                    pipeline: label.clone(),
                    batch: batch_id.clone(),
                    operation: "publish",
                    source,
                })?;
            report.action = CycleAction::Published {
                datasource_id: ds.id.clone(),
            };
            self.datasource_id = Some(ds.id);
            self.last_full_fingerprint = Some(fingerprint);
        } else {
            let datasource_id = self.datasource_id.clone().unwrap_or_default();
            let key_columns: Vec<String> = schema.key_columns().map(|k| k.name.clone()).collect();
            let batch = UpdateBatch {
                datasource_id,
                datasource_name: self.spec.datasource.clone(),
                batch_id: batch_id.clone(),
                failed_attempts: self.failed_attempts,
                key_columns,
                parts: vec![PayloadPart {
                    path: summary.path.clone(),
                    upserts: true,
                    deletes: false,
                }],
            };
            let outcomes = match c.tableau.update_data(&batch).await {
                Ok(outcomes) => outcomes,
                Err(source) => {
                    // A job that ran and failed applied nothing; a server may
                    // remember its RequestID, so the retry gets new ones. Any
                    // other failure is ambiguous and keeps them.
                    if matches!(*source.kind, mlc_tableau::ErrorKind::JobFailed { .. }) {
                        self.failed_attempts += 1;
                    }
                    return Err(SyncError::Publish {
                        pipeline: label.clone(),
                        batch: batch_id.clone(),
                        operation: "upsert",
                        source,
                    });
                }
            };
            report.action = CycleAction::Upserted {
                request_ids: outcomes.iter().map(|o| o.request_id.clone()).collect(),
                jobs: outcomes
                    .iter()
                    .filter_map(|o| o.job.as_ref().map(|j| j.id.clone()))
                    .collect(),
            };
        }

        // Confirmed: only now the cursor moves and the records count as
        // exported.
        for (key, last_update, hash) in &exported {
            self.index.mark_exported(key, *last_update, hash);
        }
        if incremental {
            self.cursor = new_cursor;
        }
        self.schema = Some(schema);
        self.cycles += 1;
        self.failed_attempts = 0;
        let _ = tokio::fs::remove_file(&summary.path).await;
        tracing::info!(batch = %batch_id, rows = report.rows_written, action = ?report.action, "batch confirmed");
        Ok(report)
    }
}

/// A fingerprint of a full read: sha256 over the (key, content hash) pairs
/// in key order, so a full refresh whose content did not change is not
/// published again.
fn content_fingerprint(exported: &mut [(String, Option<i64>, [u8; 32])]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    exported.sort_by(|a, b| a.0.cmp(&b.0));
    let mut hasher = Sha256::new();
    for (key, _, hash) in exported.iter() {
        hasher.update((key.len() as u64).to_le_bytes());
        hasher.update(key.as_bytes());
        hasher.update(hash);
    }
    hasher.finalize().into()
}
