//! Errors of the store, each naming the file (and so the tenant) involved.

use std::path::PathBuf;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the file (redb's lock): one process runs a
    /// tenant at a time.
    #[error(
        "store file {path} is in use by another ml-connector process (a running `serve` or `sync`); stop it or talk to it through its admin API"
    )]
    Locked {
        /// The file.
        path: PathBuf,
    },
    /// The file was written by a newer ml-connector.
    #[error(
        "store file {path} has schema version {found}, newer than the {supported} this ml-connector understands: upgrade ml-connector; the file was not changed"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// The file's version.
        found: u32,
        /// The newest version this binary reads.
        supported: u32,
    },
    /// The file is not a readable redb store.
    #[error(
        "store file {path} is damaged or is not an ml-connector store: {reason}; restore it from a backup"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What redb or the decoder said.
        reason: String,
    },
    /// A stored value does not decode.
    #[error("store file {path}: table `{table}` holds an unreadable value at {key}: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The table.
        table: &'static str,
        /// The entry's key.
        key: String,
        /// What went wrong.
        reason: String,
    },
    /// redb failed (I/O, transaction).
    #[error("store file {path}: {what}")]
    Database {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: String,
        /// redb's error.
        #[source]
        source: Box<redb::Error>,
    },
    /// A file system operation failed.
    #[error("{what} {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A named thing does not exist.
    #[error("{what} `{name}` not found in {path}")]
    NotFound {
        /// The file.
        path: PathBuf,
        /// What kind of thing.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// A pipeline already has an unfinished batch: it must finish first.
    #[error(
        "pipeline `{pipeline}` has an unfinished batch {batch} ({state}): it must finish first"
    )]
    Unfinished {
        /// The pipeline.
        pipeline: String,
        /// The unfinished batch's id.
        batch: String,
        /// Its state.
        state: &'static str,
    },
    /// A state change that the journal does not allow.
    #[error("batch {batch}: cannot go from {from} to {to}")]
    Transition {
        /// The batch id.
        batch: String,
        /// Its state.
        from: &'static str,
        /// The state asked for.
        to: &'static str,
    },
    /// Sealing or opening a secret failed.
    #[error(transparent)]
    Seal(#[from] crate::SealError),
}

/// A redb failure while doing `what` to the file at `path`.
pub(crate) fn database<E: Into<redb::Error>>(
    path: &std::path::Path,
    what: &str,
) -> impl FnOnce(E) -> StoreError + use<E> {
    let (path, what) = (path.to_path_buf(), what.to_owned());
    move |e| StoreError::Database {
        path,
        what,
        source: Box::new(e.into()),
    }
}

/// A JSON value of `table` at `key` in the file at `path`.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    table: &'static str,
    key: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Decode {
        path: path.to_path_buf(),
        table,
        key: key.to_owned(),
        reason: e.to_string(),
    })
}
