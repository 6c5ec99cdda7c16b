//! Errors of the Hyper layer: finding and running `hyperd`, and writing or
//! changing `.hyper` files through it.
//!
//! Every variant carries the context needed to act on it without a debugger:
//! the binary and log directory for process failures, the file, table and
//! column for SQL and data failures.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The command that installs `hyperd` for ml-connector.
pub const INSTALL_HINT: &str = "install it with `python3 -m venv .venv && .venv/bin/pip install tableauhyperapi` \
     (or `cargo xtask setup`), or point --hyperd / ML_CONNECTOR_HYPERD at the hyperd binary";

/// Everything that can go wrong in `mlc-hyper`.
#[derive(Debug, thiserror::Error)]
pub enum HyperError {
    /// No `hyperd` binary was found.
    #[error("hyperd not found ({tried}); {hint}", hint = INSTALL_HINT)]
    HyperdNotFound {
        /// What was looked at, in order, and why each failed.
        tried: String,
        /// The path `--hyperd` or `ML_CONNECTOR_HYPERD` named, when one
        /// was given and is not there (none: the Python package was searched).
        given: Option<PathBuf>,
    },

    /// The `hyperd` process could not be spawned.
    #[error("cannot start hyperd {binary}: {source} (log dir {log_dir})")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Its log directory.
        log_dir: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// `hyperd` exited while starting.
    #[error("hyperd {binary} exited while starting ({status}); see its logs in {log_dir}")]
    StartExited {
        /// The binary.
        binary: PathBuf,
        /// Exit status as text.
        status: String,
        /// Its log directory.
        log_dir: PathBuf,
    },

    /// `hyperd` exited and restarts are off ([`crate::HyperdConfig::restart`]).
    #[error("hyperd {binary} exited ({status}) and is not restarted; see its logs in {log_dir}")]
    Exited {
        /// The binary.
        binary: PathBuf,
        /// Exit status as text.
        status: String,
        /// Its log directory.
        log_dir: PathBuf,
    },

    /// `hyperd` did not answer `SELECT 1` in time.
    #[error(
        "hyperd at {endpoint} did not answer within {waited:?} (last error: {last_error}); see its logs in {log_dir}"
    )]
    StartTimeout {
        /// Where it should listen.
        endpoint: SocketAddr,
        /// How long we waited.
        waited: Duration,
        /// The last connection or query error seen.
        last_error: String,
        /// Its log directory.
        log_dir: PathBuf,
    },

    /// Connecting to a running `hyperd` failed.
    #[error("cannot connect to hyperd at {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: SocketAddr,
        /// The driver error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// [`crate::Hyperd::shutdown`] was called; no new connections.
    #[error("hyperd was shut down")]
    Stopped,

    /// A local file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A SQL statement failed.
    #[error("{context}: {}", describe_pg(source))]
    Sql {
        /// What was being done, naming the file and table.
        context: String,
        /// The driver error (with Hyper's message when it sent one).
        #[source]
        source: tokio_postgres::Error,
    },

    /// A schema cannot be turned into a Hyper table.
    #[error("invalid schema for {table}: {reason}")]
    Schema {
        /// The table.
        table: String,
        /// What is wrong.
        reason: String,
    },

    /// A path cannot be used as a Hyper database name.
    #[error("unusable database path {path}: {reason}")]
    Path {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// A query result could not be decoded into [`mlc_common::Value`]s.
    #[error("cannot decode column {column} of {context}: {reason}")]
    Decode {
        /// The query or table.
        context: String,
        /// The column name.
        column: String,
        /// Why.
        reason: String,
    },
}

impl HyperError {
    /// A [`HyperError::Sql`] with context.
    pub(crate) fn sql(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        Self::Sql {
            context: context.into(),
            source,
        }
    }

    /// A [`HyperError::Io`] with context.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// The driver's message, with the server's own text (and SQLSTATE) when the
/// error came from hyperd: tokio-postgres's `Display` alone says only
/// "db error".
fn describe_pg(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(": ");
                text.push_str(detail);
            }
            text
        }
        None => error.to_string(),
    }
}
