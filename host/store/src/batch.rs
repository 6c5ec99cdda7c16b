//! The batch journal's data: a batch, its kind and its state.
//!
//! A batch moves `pulling → pulled → mapped → written → submitted →
//! confirmed`, or to `failed` with its error and the state it failed from
//! (where a retry resumes). Each state carries what the next stage needs, so
//! a process that restarts resumes every unfinished batch from the store.

use serde::{Deserialize, Serialize};

/// Where an incremental pull stands: the greatest (`LastUpdateDate`, key)
/// recorded (the Oracle client's cursor, kept by the store).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// `LastUpdateDate` in microseconds since the epoch, UTC.
    pub last_update: i64,
    /// The key of the last record at that timestamp.
    pub key: String,
}

/// What a batch exports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum BatchKind {
    /// New and changed records pulled from Oracle, upserted.
    Incremental,
    /// A full read from Oracle (first load, or a resource without a
    /// timestamp), published with Overwrite from every stored latest version.
    Full,
    /// The keys of an earlier batch, re-exported from their latest stored
    /// versions (never older than what Tableau holds).
    Replay {
        /// The batch replayed.
        of: u64,
    },
    /// Chosen records re-exported from their latest stored versions.
    Records,
    /// The whole pipeline re-published (Overwrite) from the stored latest
    /// versions, without asking Oracle.
    Reexport,
    /// Keys a reconciliation found gone from Oracle, deleted in Tableau;
    /// once confirmed they leave the latest versions (history stays).
    Deletes,
}

impl BatchKind {
    /// True when the batch publishes the whole data source (Overwrite)
    /// instead of upserting its keys.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full | Self::Reexport)
    }

    /// True when the batch reads Oracle.
    pub fn pulls(&self) -> bool {
        matches!(self, Self::Incremental | Self::Full)
    }
}

/// A batch's state, with what the next stage needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum BatchState {
    /// Pages are being read from Oracle and recorded; `position` is where a
    /// resumed pull continues (none before the first page).
    Pulling {
        /// The position after the last recorded page.
        position: Option<Position>,
    },
    /// Every record is in the store.
    Pulled {
        /// The cursor the pipeline takes once this batch is confirmed.
        end: Option<Position>,
    },
    /// The mapping ran over every record; rejects are stored.
    Mapped {
        /// The cursor the pipeline takes once confirmed.
        end: Option<Position>,
        /// Rows the mapping produced.
        rows: u64,
        /// Records the mapping or the writer refused.
        rejects: u64,
        /// The plugin version that mapped the batch.
        plugin_version: String,
    },
    /// The extract file is complete.
    Written {
        /// The cursor the pipeline takes once confirmed.
        end: Option<Position>,
        /// Rows in the extract.
        rows: u64,
        /// The `.hyper` file.
        extract: String,
    },
    /// Sent to Tableau; `request_ids` are those sent (an upsert) and
    /// `jobs` the jobs Tableau started, as far as known.
    Submitted {
        /// The cursor the pipeline takes once confirmed.
        end: Option<Position>,
        /// Rows sent.
        rows: u64,
        /// The `.hyper` file.
        extract: String,
        /// `RequestID`s of the update (empty for a publish).
        request_ids: Vec<String>,
        /// Job ids known so far.
        jobs: Vec<String>,
    },
    /// Tableau applied it; the cursor and the index moved with it.
    Confirmed {
        /// Rows exported.
        rows: u64,
        /// The jobs that applied it.
        jobs: Vec<String>,
        /// The data source written.
        datasource_id: String,
    },
    /// The last attempt failed; a retry resumes from `resume`.
    Failed {
        /// The error, as the layer that failed said it.
        error: String,
        /// The state to resume from.
        resume: Box<BatchState>,
    },
}

impl BatchState {
    /// The state's name, as the CLI and the API show it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Pulling { .. } => "pulling",
            Self::Pulled { .. } => "pulled",
            Self::Mapped { .. } => "mapped",
            Self::Written { .. } => "written",
            Self::Submitted { .. } => "submitted",
            Self::Confirmed { .. } => "confirmed",
            Self::Failed { .. } => "failed",
        }
    }

    /// True once the batch needs no more work.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Confirmed { .. })
    }

    /// Whether the journal allows going from `self` to `next`: forward
    /// through the stages, a stage recording progress in place, a resumed
    /// batch redoing a stage after `pulled` (an extract lost with the work
    /// directory is written again), `failed` from any unfinished state, and
    /// from `failed` whatever its resume state allows. A recorded batch
    /// never goes back to pulling, and nothing leaves `confirmed`.
    pub fn allows(&self, next: &BatchState) -> bool {
        match (self, next) {
            (Self::Confirmed { .. }, _) => false,
            (_, Self::Failed { .. }) => true,
            (Self::Failed { resume, .. }, next) => resume.allows(next),
            (Self::Pulling { .. }, _) => true,
            (_, Self::Pulling { .. }) => false,
            _ => true,
        }
    }
}

/// One state change, kept in the batch's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// When (RFC 3339, UTC).
    pub at: String,
    /// The state entered.
    pub state: String,
    /// The error, for `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One batch of a pipeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The pipeline.
    pub pipeline: String,
    /// Its sequence number within the pipeline, never reused.
    pub seq: u64,
    /// The batch id: tenant, pipeline, the store's instance and the
    /// sequence; `RequestID`s derive from it.
    pub id: String,
    /// What it exports.
    pub kind: BatchKind,
    /// Where it stands.
    pub state: BatchState,
    /// Attempts whose Tableau job definitively failed (nothing applied):
    /// the next attempt sends fresh `RequestID`s.
    pub failed_jobs: u32,
    /// Every attempt that failed, for backoff.
    pub failures: u32,
    /// Records recorded into it.
    pub records: u64,
    /// Of those, versions that differ from the latest stored before (a
    /// full refresh that changed nothing has none).
    #[serde(default)]
    pub changed: u64,
    /// What a pulling batch asked Oracle for (the client's projection, as
    /// the caller wrote it); `None`: whole records. Its confirmation makes
    /// it the pipeline's [`PipelineState::pulled_with`](crate::PipelineState).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulled_with: Option<String>,
    /// Every state change.
    pub history: Vec<Change>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written() -> BatchState {
        BatchState::Written {
            end: None,
            rows: 1,
            extract: "x.hyper".into(),
        }
    }

    #[test]
    fn journal_moves_forward_fails_and_resumes() {
        let pulling = BatchState::Pulling { position: None };
        let pulled = BatchState::Pulled { end: None };
        assert!(pulling.allows(&pulling), "progress in place");
        assert!(pulling.allows(&pulled));
        assert!(pulled.allows(&written()));
        let failed = BatchState::Failed {
            error: "boom".into(),
            resume: Box::new(written()),
        };
        assert!(written().allows(&failed));
        assert!(failed.allows(&written()));
        let confirmed = BatchState::Confirmed {
            rows: 1,
            jobs: vec![],
            datasource_id: "d".into(),
        };
        assert!(!confirmed.allows(&failed), "nothing leaves confirmed");
        assert!(!confirmed.allows(&pulled));
    }

    #[test]
    fn states_serialize_with_their_data() {
        let text = serde_json::to_string(&written()).unwrap();
        assert!(text.contains(r#""state":"written""#), "{text}");
        let back: BatchState = serde_json::from_str(&text).unwrap();
        assert_eq!(back, written());
    }
}
