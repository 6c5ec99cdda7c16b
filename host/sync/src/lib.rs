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
//! What this crate does not have yet: the embedded redb store (cursors,
//! batches and the record index live in memory for the life of the
//! process), the scheduler and the webhook receiver.
#![warn(missing_docs)]

pub mod definition;
mod error;
mod journal;
mod pipeline;
mod reference;

pub use error::SyncError;
pub use journal::run_durable_cycle;
pub use pipeline::{
    Connectors, CycleAction, CycleReport, DEFAULT_MAX_RECORDS_PER_BATCH, Pipeline, PipelineSpec,
};
pub use reference::{ReferenceSources, ReferenceStore};
