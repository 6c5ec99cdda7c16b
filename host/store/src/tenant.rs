//! One tenant's redb file: opening it (schema check, recovery, migration),
//! its definition, sealed secrets and pipeline state. The batch journal is
//! in `batches.rs`, records and reference data in `records.rs`, the value
//! encodings in `codec.rs`; every table is defined here and nowhere else.
//!
//! Each state change is one write transaction: recording a page stores its
//! raw records, moves the record's latest version and the batch's pull
//! position together; confirming a batch moves the batch, the pipeline's
//! cursor and (through the confirmed sequence) the record index together.
//!
//! redb calls block; async callers run them with `spawn_blocking` or
//! `block_in_place`, never directly on a runtime worker.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::batch::{BatchState, Change, Position};
use crate::{MasterKey, StoreError};
use mlc_common::Secret;

/// The newest schema version this binary writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Cache of one tenant file: small, so fifty tenants stay small.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("secrets");
pub(crate) const PIPELINES: TableDefinition<&str, &[u8]> = TableDefinition::new("pipelines");
pub(crate) const BATCHES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("batches");
/// (pipeline, seq, key): the keys a batch carries.
pub(crate) const BATCH_KEYS: TableDefinition<(&str, u64, &str), ()> =
    TableDefinition::new("batch_keys");
/// (pipeline, key, seq): a record's version as the batch `seq` recorded it.
pub(crate) const RAW: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("raw");
/// (pipeline, key): the batch whose version is the latest seen.
pub(crate) const LATEST: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("latest");
/// (pipeline, seq, key): why a record of a batch was refused.
pub(crate) const REJECTS: TableDefinition<(&str, u64, &str), &str> =
    TableDefinition::new("rejects");
/// (dataset, key): a reference record as JSON.
pub(crate) const REFERENCE: TableDefinition<(&str, &str), &str> = TableDefinition::new("reference");
/// event id → the webhook event as received (JSON).
pub(crate) const EVENTS: TableDefinition<&str, &str> = TableDefinition::new("events");
/// (pipeline, Unix seconds) → freshness seconds of a confirmed batch.
pub(crate) const FRESHNESS: TableDefinition<(&str, u64), f64> = TableDefinition::new("freshness");
/// arrival number → event id, to drop the oldest.
pub(crate) const EVENT_ORDER: TableDefinition<u64, &str> = TableDefinition::new("event_order");

const SCHEMA_KEY: &str = "schema_version";
const INSTANCE_KEY: &str = "instance";
const DEFINITION_KEY: &str = "definition";

/// A pipeline's durable state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineState {
    /// Paused pipelines are not run by the scheduler.
    pub paused: bool,
    /// The cursor of the last confirmed batch.
    pub cursor: Option<Position>,
    /// The Tableau data source, once published.
    pub datasource_id: Option<String>,
    /// The schema of the last publish (JSON), to notice a change.
    pub schema: Option<String>,
    /// The next batch's sequence number.
    pub next_seq: u64,
    /// The last confirmed batch's sequence number (0: none).
    pub confirmed_seq: u64,
    /// When keys were last reconciled with Oracle (RFC 3339).
    #[serde(default)]
    pub last_reconcile: Option<String>,
    /// What every latest stored version holds: the projection of the last
    /// confirmed full read, or of a later incremental one that projected
    /// ([`Batch::pulled_with`](crate::Batch)). `None`: whole records, or
    /// nothing pulled yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulled_with: Option<String>,
}

/// One version of a record, as a batch recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// The key.
    pub key: String,
    /// `LastUpdateDate` in microseconds UTC, when the resource has one.
    pub last_update: Option<i64>,
    /// SHA-256 of the canonical content.
    pub content_hash: [u8; 32],
    /// The item as Oracle sent it.
    pub json: String,
}

/// A version of a record: which batch carried it, when it changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    /// The batch (sequence) that carried it.
    pub seq: u64,
    /// `LastUpdateDate` in microseconds UTC.
    pub last_update: Option<i64>,
    /// The content hash, hex.
    pub content_hash: String,
}

/// One tenant's store file, open and locked by this process.
pub struct TenantStore {
    pub(crate) db: Database,
    pub(crate) path: PathBuf,
    pub(crate) tenant: String,
    pub(crate) instance: String,
}

impl std::fmt::Debug for TenantStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TenantStore({})", self.path.display())
    }
}

impl TenantStore {
    /// Opens (creating it if absent) the file of `tenant` at `path`,
    /// migrating an older schema and refusing a newer one unchanged.
    pub fn open(path: &Path, tenant: &str) -> Result<Self, StoreError> {
        // redb panics on some damaged pages instead of answering an error:
        // a panic while opening is the file's damage, not ours.
        let damaged = || StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: "redb could not read its pages".into(),
        };
        if path.exists() {
            std::panic::catch_unwind(|| check_schema_read_only(path))
                .unwrap_or_else(|_| Err(damaged()))?;
        }
        let db = std::panic::catch_unwind(|| {
            redb::Builder::new()
                .set_cache_size(CACHE_BYTES)
                .create(path)
                .map_err(|e| open_error(path, e))
        })
        .unwrap_or_else(|_| Err(damaged()))?;
        let mut store = Self {
            db,
            path: path.to_path_buf(),
            tenant: tenant.to_owned(),
            instance: String::new(),
        };
        store.instance = store.guard(|| store.migrate())?;
        Ok(store)
    }

    /// Runs a store operation; a panic inside redb (it panics on some
    /// damaged pages instead of answering an error) becomes
    /// [`StoreError::Corrupt`] naming the file, so a damaged tenant file
    /// fails that tenant's work with a clear error, not the process.
    pub(crate) fn guard<T>(
        &self,
        f: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
            let reason = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "redb failed reading it".to_owned());
            Err(StoreError::Corrupt {
                path: self.path.clone(),
                reason,
            })
        })
    }

    /// The tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn err<E: Into<redb::Error>>(
        &self,
        what: &str,
    ) -> impl FnOnce(E) -> StoreError + use<E> {
        crate::error::database(&self.path, what)
    }

    pub(crate) fn decode<T: serde::de::DeserializeOwned>(
        &self,
        table: &'static str,
        key: &str,
        bytes: &[u8],
    ) -> Result<T, StoreError> {
        crate::error::decode(&self.path, table, key, bytes)
    }

    /// Creates the tables of a new file, or checks and upgrades an old one;
    /// returns the file's instance id.
    fn migrate(&self) -> Result<String, StoreError> {
        let tx = self.db.begin_write().map_err(self.err("opening"))?;
        let instance;
        {
            let mut meta = tx.open_table(META).map_err(self.err("opening meta"))?;
            check_schema_version(&meta, &self.path, SCHEMA_VERSION)?;
            let existing = meta
                .get(INSTANCE_KEY)
                .map_err(self.err("reading meta"))?
                .map(|v| String::from_utf8_lossy(v.value()).into_owned());
            instance = match existing {
                Some(id) => id,
                None => {
                    let id = format!("{:08x}", rand::random::<u32>());
                    meta.insert(INSTANCE_KEY, id.as_bytes())
                        .map_err(self.err("writing meta"))?;
                    id
                }
            };
            // Version 0 → 1: the tables below. Later versions add steps here.
            meta.insert(SCHEMA_KEY, SCHEMA_VERSION.to_le_bytes().as_slice())
                .map_err(self.err("writing meta"))?;
        }
        tx.open_table(SECRETS)
            .map_err(self.err("creating tables"))?;
        tx.open_table(PIPELINES)
            .map_err(self.err("creating tables"))?;
        tx.open_table(BATCHES)
            .map_err(self.err("creating tables"))?;
        tx.open_table(BATCH_KEYS)
            .map_err(self.err("creating tables"))?;
        tx.open_table(RAW).map_err(self.err("creating tables"))?;
        tx.open_table(LATEST).map_err(self.err("creating tables"))?;
        tx.open_table(REJECTS)
            .map_err(self.err("creating tables"))?;
        tx.open_table(REFERENCE)
            .map_err(self.err("creating tables"))?;
        tx.open_table(EVENTS).map_err(self.err("creating tables"))?;
        tx.open_table(FRESHNESS)
            .map_err(self.err("creating tables"))?;
        tx.open_table(EVENT_ORDER)
            .map_err(self.err("creating tables"))?;
        tx.commit().map_err(self.err("committing the schema"))?;
        Ok(instance)
    }

    // ------------------------------------------------------------ definition

    /// Stores the tenant's definition (the TOML text applied).
    pub fn put_definition(&self, text: &str) -> Result<(), StoreError> {
        self.guard(|| {
            let tx = self.db.begin_write().map_err(self.err("writing"))?;
            {
                let mut meta = tx.open_table(META).map_err(self.err("opening meta"))?;
                meta.insert(DEFINITION_KEY, text.as_bytes())
                    .map_err(self.err("writing the definition"))?;
            }
            tx.commit().map_err(self.err("committing the definition"))
        })
    }

    /// The tenant's definition, if one was applied.
    pub fn definition(&self) -> Result<Option<String>, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(self.err("reading"))?;
            let meta = tx.open_table(META).map_err(self.err("opening meta"))?;
            let value = meta.get(DEFINITION_KEY).map_err(self.err("reading meta"))?;
            Ok(value.map(|v| String::from_utf8_lossy(v.value()).into_owned()))
        })
    }

    // --------------------------------------------------------------- secrets

    /// Seals and stores secret `name`.
    pub fn set_secret(
        &self,
        key: &MasterKey,
        name: &str,
        value: &Secret,
    ) -> Result<(), StoreError> {
        self.guard(|| {
            let sealed = key.seal(&self.tenant, name, value);
            let tx = self.db.begin_write().map_err(self.err("writing"))?;
            {
                let mut t = tx
                    .open_table(SECRETS)
                    .map_err(self.err("opening secrets"))?;
                t.insert(name, sealed.as_slice())
                    .map_err(self.err("writing a secret"))?;
            }
            tx.commit().map_err(self.err("committing a secret"))
        })
    }

    /// Opens secret `name`.
    pub fn secret(&self, key: &MasterKey, name: &str) -> Result<Secret, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(self.err("reading"))?;
            let t = tx
                .open_table(SECRETS)
                .map_err(self.err("opening secrets"))?;
            let sealed = t
                .get(name)
                .map_err(self.err("reading a secret"))?
                .ok_or_else(|| StoreError::NotFound {
                    path: self.path.clone(),
                    what: "secret",
                    name: name.to_owned(),
                })?;
            Ok(key.open(&self.tenant, name, sealed.value())?)
        })
    }

    /// The names of the stored secrets (never their values).
    pub fn secret_names(&self) -> Result<Vec<String>, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(self.err("reading"))?;
            let t = tx
                .open_table(SECRETS)
                .map_err(self.err("opening secrets"))?;
            let mut names = Vec::new();
            for entry in t.iter().map_err(self.err("listing secrets"))? {
                let (k, _) = entry.map_err(self.err("listing secrets"))?;
                names.push(k.value().to_owned());
            }
            Ok(names)
        })
    }

    /// Re-seals every secret sealed under `old` with `new`, in one
    /// transaction; secrets already under `new` are left (so an interrupted
    /// rotation resumes). Returns how many were re-sealed.
    pub fn reseal(&self, old: &MasterKey, new: &MasterKey) -> Result<usize, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_write().map_err(self.err("writing"))?;
            let mut count = 0;
            {
                let mut t = tx
                    .open_table(SECRETS)
                    .map_err(self.err("opening secrets"))?;
                let mut entries = Vec::new();
                for entry in t.iter().map_err(self.err("listing secrets"))? {
                    let (k, v) = entry.map_err(self.err("listing secrets"))?;
                    entries.push((k.value().to_owned(), v.value().to_vec()));
                }
                for (name, sealed) in entries {
                    if crate::seal::sealed_key_id(&sealed) == Some(new.id()) {
                        continue;
                    }
                    let value = old.open(&self.tenant, &name, &sealed)?;
                    let resealed = new.seal(&self.tenant, &name, &value);
                    t.insert(name.as_str(), resealed.as_slice())
                        .map_err(self.err("writing a secret"))?;
                    count += 1;
                }
            }
            tx.commit().map_err(self.err("committing the rotation"))?;
            Ok(count)
        })
    }

    // ------------------------------------------------------------- pipelines

    /// A pipeline's state (the default for one never run).
    pub fn pipeline(&self, pipeline: &str) -> Result<PipelineState, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(self.err("reading"))?;
            let t = tx
                .open_table(PIPELINES)
                .map_err(self.err("opening pipelines"))?;
            match t.get(pipeline).map_err(self.err("reading a pipeline"))? {
                Some(v) => self.decode("pipelines", pipeline, v.value()),
                None => Ok(PipelineState::default()),
            }
        })
    }

    /// Pauses or resumes a pipeline.
    pub fn set_paused(&self, pipeline: &str, paused: bool) -> Result<(), StoreError> {
        self.guard(|| self.update_pipeline(pipeline, |state| state.paused = paused))
    }

    /// Records that the pipeline's keys were reconciled with Oracle now.
    pub fn set_reconciled(&self, pipeline: &str) -> Result<(), StoreError> {
        self.guard(|| {
            self.update_pipeline(pipeline, |state| {
                state.last_reconcile = Some(crate::now_rfc3339());
            })
        })
    }

    /// Changes a pipeline's state in one transaction.
    fn update_pipeline(
        &self,
        pipeline: &str,
        change: impl FnOnce(&mut PipelineState),
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(self.err("writing"))?;
        {
            let mut t = tx
                .open_table(PIPELINES)
                .map_err(self.err("opening pipelines"))?;
            let mut state: PipelineState = match t.get(pipeline).map_err(self.err("reading"))? {
                Some(v) => self.decode("pipelines", pipeline, v.value())?,
                None => PipelineState::default(),
            };
            change(&mut state);
            let bytes = json(&state);
            t.insert(pipeline, bytes.as_slice())
                .map_err(self.err("writing a pipeline"))?;
        }
        tx.commit().map_err(self.err("committing a pipeline"))
    }
}

/// Reads an existing file's schema version without writing to it, so a
/// file of a newer ml-connector is refused exactly as it was.
///
/// A file its last writer did not close (a crash, `kill -9`) needs redb's
/// recovery, which a read-only open refuses (`RepairAborted`): the check is
/// skipped and the read-write open that follows recovers it (redb's own
/// structures, back to the last committed transaction); `migrate` still
/// refuses a newer schema before writing anything of ours.
fn check_schema_read_only(path: &Path) -> Result<(), StoreError> {
    let db = match redb::Builder::new().open_read_only(path) {
        Ok(db) => db,
        Err(redb::DatabaseError::RepairAborted) => return Ok(()),
        Err(e) => return Err(open_error(path, e)),
    };
    let db_err = |e: redb::Error| StoreError::Database {
        path: path.to_path_buf(),
        what: "reading the schema version".into(),
        source: Box::new(e),
    };
    let tx = db.begin_read().map_err(|e| db_err(e.into()))?;
    let meta = match tx.open_table(META) {
        Ok(meta) => meta,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(db_err(e.into())),
    };
    check_schema_version(&meta, path, SCHEMA_VERSION).map(|_| ())
}

/// Reads the schema version of a `meta` table (0 for a new file) and
/// refuses one newer than `supported`.
pub(crate) fn check_schema_version(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    path: &Path,
    supported: u32,
) -> Result<u32, StoreError> {
    let db = |e: redb::StorageError| StoreError::Database {
        path: path.to_path_buf(),
        what: "reading the schema version".into(),
        source: Box::new(e.into()),
    };
    let found = match meta.get(SCHEMA_KEY).map_err(db)? {
        Some(v) => {
            let bytes: [u8; 4] = v.value().try_into().map_err(|_| StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: "schema version is not 4 bytes".into(),
            })?;
            u32::from_le_bytes(bytes)
        }
        None => 0,
    };
    if found > supported {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported,
        });
    }
    Ok(found)
}

pub(crate) fn open_error(path: &Path, e: redb::DatabaseError) -> StoreError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
            path: path.to_path_buf(),
        },
        other => StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

pub(crate) fn change(state: &BatchState) -> Change {
    Change {
        at: crate::now_rfc3339(),
        state: state.name().to_owned(),
        error: match state {
            BatchState::Failed { error, .. } => Some(error.clone()),
            _ => None,
        },
    }
}

pub(crate) fn json<T: Serialize>(value: &T) -> Vec<u8> {
    // Our own plain data types always serialize.
    serde_json::to_vec(value).unwrap_or_default()
}
