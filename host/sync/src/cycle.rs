//! What every stage of one cycle shares: the [`Progress`] it reports to,
//! the [`Cycle`] context (pipeline, store, connectors) and the one way a
//! blocking store call is made from async code.

use std::sync::Arc;

use mlc_store::{StoreError, TenantStore};

use crate::{Connectors, PipelineSpec, SyncError};

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
pub(crate) struct Cycle<'a> {
    pub(crate) spec: &'a PipelineSpec,
    pub(crate) store: &'a Arc<TenantStore>,
    pub(crate) c: &'a Connectors,
    pub(crate) progress: &'a dyn Progress,
    /// `tenant/pipeline`, for errors.
    pub(crate) label: String,
}

impl Cycle<'_> {
    /// A store error of this cycle's pipeline.
    pub(crate) fn st(&self) -> impl Fn(StoreError) -> SyncError + Copy + '_ {
        move |source| SyncError::Store {
            pipeline: self.label.clone(),
            source,
        }
    }
}

pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}
