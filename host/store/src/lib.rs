//! The embedded store of ml-connector (redb).
//!
//! - [`TenantStore`]: one file per tenant (`<data-dir>/tenants/<id>.redb`)
//!   with its definition, sealed secrets, pipeline state, the batch journal
//!   ([`Batch`], [`BatchState`]), every raw record version a batch carried
//!   (lz4-compressed), each record's latest version, rejects and reference
//!   datasets, the webhook events it received and a day of freshness
//!   samples. A tenant's state moves, backs up and is deleted as one file;
//!   redb's file lock lets one process run a tenant at a time.
//! - [`RuntimeStore`]: the data directory's runtime file (the tenant list
//!   and the hash-chained admin audit log); [`DataDir`] owns the layout.
//! - [`seal`]: AES-256-GCM sealing of secrets under the operator's
//!   [`MasterKey`], with the tenant and secret name as associated data.
//!
//! Every state change is one write transaction; a newer schema than this
//! binary knows is refused without touching the file.

pub mod batch;
mod batches;
mod codec;
mod error;
mod events;
mod freshness;
mod records;
mod runtime;
pub mod seal;
mod tenant;

pub use batch::{Batch, BatchKind, BatchState, Change, Position};
pub use error::StoreError;
pub use runtime::{
    AuditEntry, ChainBreak, DataDir, RUNTIME_SCHEMA_VERSION, RuntimeStore, TenantEntry,
};
pub use seal::{KeyId, MASTER_KEY_ENV, MasterKey, SealError};
pub use tenant::{PipelineState, SCHEMA_VERSION, StoredRecord, TenantStore, VersionInfo};

/// Now, as RFC 3339 text (UTC).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
