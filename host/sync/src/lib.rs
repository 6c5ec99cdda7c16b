//! One pipeline cycle of ml-connector, end to end:
//! pull from Oracle Fusion → map in the tenant's plugin sandbox → write a
//! `.hyper` extract → publish (first time, or after a full refresh) or upsert
//! (afterwards) into Tableau → wait for the job → advance the cursor.
//!
//! A *pipeline* is tenant × Oracle resource → Tableau data source. Only a
//! confirmed batch moves the cursor and marks its records exported; a
//! failure leaves both where they were, so the next cycle reads the same
//! records again and the batch's deterministic `RequestID`s keep Tableau from
//! applying any of them twice.
//!
//! Two cycles live here: [`run_durable_cycle`], which drives a batch
//! through the store's journal (what `sync` runs), and the in-memory
//! [`Pipeline::run_cycle`] of the one-shot demo. [`Host`] is the
//! composition root that builds a tenant's connectors and pipelines from
//! its stored definition. Not here yet: the scheduler and the webhook
//! receiver of `serve`.
#![warn(missing_docs)]

mod compose;
pub mod definition;
mod error;
mod journal;
mod pipeline;
mod reference;

pub use compose::{ComposeError, Host, HostConfig, Tenant};
pub use error::SyncError;
pub use journal::{Progress, Quiet, Stage, run_durable_cycle, run_durable_cycle_with};
pub use pipeline::{
    Connectors, CycleAction, CycleReport, DEFAULT_MAX_RECORDS_PER_BATCH, Pipeline, PipelineSpec,
};
pub use reference::{
    Dataset, ReferenceSources, ReferenceStore, StoreReference, read_reference,
    sync_reference_into_store,
};
