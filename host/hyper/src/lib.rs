//! Hyper extracts for ml-connector.
//!
//! - [`hyperd`]: finds, starts, supervises and stops Tableau's `hyperd`
//!   server (shipped in the `tableauhyperapi` Python package).
//! - [`encode`]: the HyperBinary COPY format, every value checked against
//!   its column type; a value that does not fit is a [`mlc_common::Reject`].
//! - [`writer`]: a new `.hyper` file with one table, rows streamed in.
//! - [`session`]: one connection for attaching existing files, running SQL
//!   and reading results back as [`mlc_common::Value`]s.
//! - [`upsert`](mod@upsert): the staged delete-and-insert recipe.
//!
//! Everything talks to hyperd over the PostgreSQL wire protocol through the
//! re-exported [`tokio_postgres`], so callers share the exact driver version.

pub mod encode;
pub mod error;
pub mod hyperd;
pub mod session;
pub mod sql;
pub mod upsert;
pub mod writer;

/// The `bytes` version `tokio_postgres`'s COPY sink takes (for raw COPY).
pub use bytes;
pub use error::{HyperError, INSTALL_HINT};
/// The `futures` version whose `Stream` [`HyperWriter::write_stream`] takes.
pub use futures;
pub use hyperd::{Hyperd, HyperdConfig, locate_hyperd};
pub use session::{COPY_CHUNK_BYTES, HyperSession, ResultColumn, WriteReport};
pub use sql::{TableName, literal, quote_ident};
pub use tokio_postgres;
pub use upsert::{UpsertReport, upsert};
pub use writer::{HyperWriter, WriteSummary};
