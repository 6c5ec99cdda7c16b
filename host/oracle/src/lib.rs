//! Oracle Fusion Cloud ERP REST client for ml-connector.
//!
//! - [`config`]: the tenant's connection settings ([`OracleConfig`]).
//! - [`auth`]: the OAuth 2.0 client-credentials token cache.
//! - [`client`]: incremental pulls by key-set continuation ([`Pull`]), full
//!   refreshes, key reconciliation for deletes, retries.
//! - [`sliced`]: first loads and large catch-ups split into `LastUpdateDate`
//!   windows read side by side ([`SlicedPull`]).
//! - [`gate`]: what every request of a client passes: the concurrency cap,
//!   the request budget, the shared 429/503 backoff ([`RequestStats`]).
//! - [`model`]: resource specs, [`Cursor`], [`RawRecord`], [`Page`], and the
//!   [`RecordIndex`] that deduplicates against what was exported.
//! - [`canonical`]: the content hash of a record.
//!
//! ```no_run
//! # async fn demo(cfg: mlc_oracle::OracleConfig) -> Result<(), mlc_oracle::OracleError> {
//! use mlc_oracle::{MemoryRecordIndex, OracleClient, ResourceSpec};
//! let client = OracleClient::new("acme", cfg)?;
//! let spec = ResourceSpec::invoices();
//! let index = MemoryRecordIndex::new();
//! let mut pull = client.pull(&spec, None, &index);
//! while let Some(page) = pull.next_page().await? {
//!     // store page.records, then persist page.cursor
//! #   let _ = page;
//! }
//! # Ok(()) }
//! ```

pub mod auth;
pub mod canonical;
pub mod client;
pub mod config;
pub mod error;
pub mod gate;
pub mod model;
pub mod retry;
pub mod sliced;

#[cfg(test)]
mod tests;

pub use client::{OracleClient, Pull, deleted_keys};
pub use config::{OracleConfig, RetryPolicy};
pub use error::OracleError;
pub use gate::RequestStats;
pub use model::{
    Cursor, KeyKind, MemoryRecordIndex, NothingExported, Page, Projection, PullStats, RawRecord,
    RecordIndex, ResourceSpec, compare_keys,
};
pub use sliced::SlicedPull;
