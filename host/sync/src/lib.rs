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
//! The cycle is [`run_durable_cycle`]: a batch driven through the store's
//! journal, stage by stage. [`Host`] is the composition root that builds a
//! tenant's connectors and pipelines from its stored definition
//! ([`apply_definition`] puts one in). The scheduler, the webhook receiver
//! and the admin API of `serve` are built over these in `mlc-serve`.
#![warn(missing_docs)]

mod apply;
mod compose;
mod cycle;
pub mod definition;
mod error;
mod extract;
mod journal;
mod mappings_dir;
mod pipeline;
pub mod projection;
mod reference;
pub mod shadow;
mod stages;
pub mod template;

pub use apply::{Applied, ApplyError, apply_definition, apply_definition_to};
pub use compose::{
    ComposeError, Host, HostConfig, REFRESH_TOKEN_SECRET, Tenant, stored_definition,
};
pub use cycle::{Progress, Quiet, Stage};
pub use error::SyncError;
pub use journal::{run_durable_cycle, run_durable_cycle_with, run_durable_cycles};
pub use mappings_dir::{kept_script_path, mapping_paths, missing_scripts};
pub use pipeline::{
    Connectors, CycleAction, CycleReport, DEFAULT_MAX_RECORDS_PER_BATCH, PipelineSpec,
};
pub use reference::{
    Dataset, ReferenceSources, ReferenceStore, StoreReference, read_reference,
    sync_reference_into_store,
};
pub use shadow::{CandidateFile, DiffOptions, MappingDiff, Promoted, ShadowError};
