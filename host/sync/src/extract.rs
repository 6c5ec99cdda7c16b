//! The extract of one batch, built chunk by chunk: each chunk of records is
//! mapped by the pipeline's plugin, its rows written to the batch's
//! `.hyper` file and its rejects stored. The write stage feeds it from the
//! store; a streaming pull feeds it the pages as they are recorded, from a
//! task of its own behind a bounded queue, so mapping and writing go on
//! while the next pages arrive. It owns what it works with (no borrowed
//! cycle), so it can run on another task.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mlc_hyper::{HyperWriter, TableName, WriteSummary};
use mlc_plugin::PluginRuntime;
use mlc_store::{Batch, BatchKind, StoredRecord, TenantStore};
use mlc_tableau::{CHANGES_TABLE, DELETED_TABLE, EXTRACT_SCHEMA};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::SyncError;
use crate::cycle::{Cycle, blocking};

/// Pages a streaming pull may queue ahead of its writer, per pipeline:
/// bounds the memory of a pull that outruns the mapping.
pub(crate) const STREAM_QUEUE_PAGES: usize = 2;

/// What the extract's rows came to.
#[derive(Clone, Debug, Default)]
pub(crate) struct Counts {
    /// Rows written.
    pub(crate) rows: u64,
    /// Records the mapping refused plus rows the writer refused.
    pub(crate) rejects: u64,
    /// Of those, the mapping's.
    pub(crate) rejected_by_mapping: u64,
    /// Of those, the writer's.
    pub(crate) rejected_by_writer: u64,
    /// The plugin version that mapped the last chunk.
    pub(crate) plugin_version: String,
}

/// One batch's extract being written.
pub(crate) struct Extract {
    plugins: PluginRuntime,
    store: Arc<TenantStore>,
    tenant: String,
    plugin: String,
    resource: String,
    pipeline: String,
    label: String,
    batch_id: String,
    seq: u64,
    /// A deletes payload keeps only these (key) columns of each row.
    keep_keys: Option<Vec<usize>>,
    writer: HyperWriter,
    counts: Counts,
}

impl Extract {
    /// Creates the batch's extract file (replacing any earlier attempt's)
    /// with the table its kind needs: the whole data source for a full
    /// batch, the changes or the deleted keys of an update payload.
    pub(crate) async fn create(cx: &Cycle<'_>, batch: &Batch) -> Result<Self, SyncError> {
        let (spec, c, label) = (cx.spec, cx.c, &cx.label);
        let map_err = |source| SyncError::Map {
            pipeline: label.clone(),
            batch: batch.id.clone(),
            source,
        };
        let schema = c
            .plugins
            .schema(&spec.tenant, &spec.plugin, &spec.resource.path)
            .map_err(map_err)?;
        let deletes = batch.kind == BatchKind::Deletes;
        let table = if batch.kind.is_full() {
            TableName::extract()
        } else if deletes {
            TableName::new(EXTRACT_SCHEMA, DELETED_TABLE)
        } else {
            TableName::new(EXTRACT_SCHEMA, CHANGES_TABLE)
        };
        // A deletes payload holds the key columns of the rows to delete.
        let keep_keys = deletes.then(|| {
            schema
                .columns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.key)
                .map(|(i, _)| i)
                .collect()
        });
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
        let path = extract_path(cx, batch);
        let _ = tokio::fs::remove_file(&path).await;
        let writer = HyperWriter::create(&c.hyperd, &path, table, &schema)
            .await
            .map_err(|source| SyncError::Write {
                pipeline: label.clone(),
                batch: batch.id.clone(),
                source,
            })?;
        Ok(Self {
            plugins: c.plugins.clone(),
            store: cx.store.clone(),
            tenant: spec.tenant.clone(),
            plugin: spec.plugin.clone(),
            resource: spec.resource.path.clone(),
            pipeline: spec.name.clone(),
            label: label.clone(),
            batch_id: batch.id.clone(),
            seq: batch.seq,
            keep_keys,
            writer,
            counts: Counts::default(),
        })
    }

    /// Maps `records` and writes their rows; the rejects of the chunk are
    /// stored with the batch.
    pub(crate) async fn add(&mut self, records: Vec<StoredRecord>) -> Result<(), SyncError> {
        let (keys, jsons): (Vec<String>, Vec<String>) =
            records.into_iter().map(|r| (r.key, r.json)).unzip();
        let (mut mapped, used) = self
            .plugins
            .map_batch_with_version(&self.tenant, &self.plugin, &self.resource, &jsons)
            .await
            .map_err(|source| SyncError::Map {
                pipeline: self.label.clone(),
                batch: self.batch_id.clone(),
                source,
            })?;
        drop(jsons);
        self.counts.plugin_version = used.to_string();
        let mut refused: Vec<(String, String)> = mapped
            .rejects
            .iter()
            .map(|r| {
                let key = keys
                    .get(r.index as usize)
                    .map_or_else(|| "?".to_owned(), Clone::clone);
                (key, format!("mapping: {}", r.reason))
            })
            .collect();
        self.counts.rejected_by_mapping += mapped.rejects.len() as u64;
        if let Some(positions) = &self.keep_keys {
            for row in &mut mapped.rows {
                let values = std::mem::take(&mut row.values);
                row.values = positions
                    .iter()
                    .filter_map(|&i| values.get(i).cloned())
                    .collect();
            }
        }
        let written = self
            .writer
            .write_rows(&mapped.rows)
            .await
            .map_err(|source| SyncError::Write {
                pipeline: self.label.clone(),
                batch: self.batch_id.clone(),
                source,
            })?;
        self.counts.rejected_by_writer += written.rejects.len() as u64;
        for r in &written.rejects {
            refused.push((format!("row {}", r.index), format!("writer: {}", r.reason)));
        }
        self.counts.rejects += refused.len() as u64;
        self.counts.rows += mapped.rows.len() as u64 - written.rejects.len() as u64;
        if !refused.is_empty() {
            let (store, pipeline, seq) = (&self.store, &self.pipeline, self.seq);
            blocking(|| store.put_rejects(pipeline, seq, &refused)).map_err(|source| {
                SyncError::Store {
                    pipeline: self.label.clone(),
                    source,
                }
            })?;
        }
        Ok(())
    }

    /// What the rows came to so far.
    pub(crate) fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Closes the file, ready to publish.
    pub(crate) async fn finish(self) -> Result<WriteSummary, SyncError> {
        let (label, batch) = (self.label, self.batch_id);
        self.writer
            .finish()
            .await
            .map_err(|source| SyncError::Write {
                pipeline: label,
                batch,
                source,
            })
    }

    /// Closes and removes the file (a streamed extract that cannot be used:
    /// the write stage builds it again from the store).
    pub(crate) async fn discard(self) {
        let path: PathBuf = self.writer.path().to_path_buf();
        if let Err(error) = self.finish().await {
            tracing::debug!(%error, "closing a discarded extract");
        }
        let _ = tokio::fs::remove_file(&path).await;
    }
}

/// Where a batch's extract is written.
pub(crate) fn extract_path(cx: &Cycle<'_>, batch: &Batch) -> PathBuf {
    cx.c.work_dir.join(format!("{}.hyper", batch.id))
}

/// An extract fed from another task: the pull sends each recorded page,
/// the task maps and writes it.
pub(crate) struct Streamed {
    pages: Option<mpsc::Sender<Vec<StoredRecord>>>,
    task: JoinHandle<Result<Extract, SyncError>>,
    /// Rows written so far, for progress.
    rows: Arc<AtomicU64>,
}

impl Streamed {
    /// Starts the writer task of `extract`.
    pub(crate) fn start(mut extract: Extract) -> Self {
        let (tx, mut rx) = mpsc::channel::<Vec<StoredRecord>>(STREAM_QUEUE_PAGES);
        let rows = Arc::new(AtomicU64::new(0));
        let written = rows.clone();
        let task = tokio::spawn(async move {
            while let Some(records) = rx.recv().await {
                extract.add(records).await?;
                written.store(extract.counts().rows, Ordering::Relaxed);
            }
            Ok(extract)
        });
        Self {
            pages: Some(tx),
            task,
            rows,
        }
    }

    /// Rows the writer has written so far.
    pub(crate) fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Queues a recorded page; waits while the queue is full. False when
    /// the writer stopped (its error comes from [`Streamed::end`]).
    pub(crate) async fn send(&mut self, records: Vec<StoredRecord>) -> bool {
        match &self.pages {
            Some(tx) => tx.send(records).await.is_ok(),
            None => false,
        }
    }

    /// No more pages: waits for the writer to take the queued ones.
    pub(crate) async fn end(mut self, label: &str) -> Result<Extract, SyncError> {
        self.pages = None;
        match self.task.await {
            Ok(outcome) => outcome,
            Err(e) => Err(SyncError::Io {
                pipeline: label.to_owned(),
                what: "the extract writer task ended".into(),
                source: std::io::Error::other(e.to_string()),
            }),
        }
    }
}

/// True when a fresh batch streams its pages into its extract as they are
/// recorded: a first load (the whole data source, published in full) or an
/// incremental batch (which, when it finds nothing new, drops its stream
/// and sends nothing). A full refresh of a published data source does not:
/// it may find nothing changed and send nothing.
pub(crate) fn streams(batch: &Batch, first_load: bool) -> bool {
    match batch.kind {
        BatchKind::Full => first_load,
        BatchKind::Incremental => true,
        BatchKind::Replay { .. }
        | BatchKind::Records
        | BatchKind::Reexport
        | BatchKind::Deletes => false,
    }
}
