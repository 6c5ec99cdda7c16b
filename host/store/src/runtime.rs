//! The data directory's layout and its runtime file: the tenant list and
//! the append-only, hash-chained admin audit log.
//!
//! Layout (this module owns it; nothing else builds these paths):
//!
//! ```text
//! <data-dir>/runtime.redb          tenant list, admin audit log
//! <data-dir>/tenants/<id>.redb     one tenant's store (TenantStore)
//! <data-dir>/tenants/removed/      files of removed tenants, kept
//! <data-dir>/work/<id>/            extracts being written (disposable)
//! ```
//!
//! Each audit entry carries the SHA-256 of the previous entry and its own
//! hash over (previous hash, its fields), so changing, removing or
//! reordering an earlier entry breaks the chain at that entry
//! ([`RuntimeStore::verify_audit`]).

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::StoreError;

/// The schema version of the runtime file.
pub const RUNTIME_SCHEMA_VERSION: u32 = 1;

const CACHE_BYTES: usize = 4 * 1024 * 1024;
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const SCHEMA_KEY: &str = "schema_version";

/// A data directory: where every path under it comes from.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The directory at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The runtime file.
    pub fn runtime_file(&self) -> PathBuf {
        self.root.join("runtime.redb")
    }

    /// A tenant's store file.
    pub fn tenant_file(&self, tenant: &str) -> PathBuf {
        self.root.join("tenants").join(format!("{tenant}.redb"))
    }

    /// Where a removed tenant's file is kept.
    pub fn removed_file(&self, tenant: &str, stamp: &str) -> PathBuf {
        self.root
            .join("tenants")
            .join("removed")
            .join(format!("{tenant}.{stamp}.redb"))
    }

    /// A tenant's scratch directory for extracts.
    pub fn work_dir(&self, tenant: &str) -> PathBuf {
        self.root.join("work").join(tenant)
    }

    /// Creates the directories a tenant's files need.
    pub fn prepare(&self) -> Result<(), StoreError> {
        for dir in [self.root.join("tenants"), self.root.join("work")] {
            std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
                what: "creating",
                path: dir.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// A tenant as the runtime file lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantEntry {
    /// The tenant id.
    pub id: String,
    /// When its definition was last applied (RFC 3339).
    pub applied_at: String,
    /// The definition file it was applied from, as given.
    pub source: String,
}

/// One entry of the admin audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, from 1.
    pub seq: u64,
    /// When (RFC 3339).
    pub at: String,
    /// Who: the operating-system user of a CLI call, or the API client.
    pub actor: String,
    /// What, e.g. `tenant.apply`, `secret.set`, `replay.batch`.
    pub action: String,
    /// The tenant concerned, if any.
    pub tenant: Option<String>,
    /// Details (never a secret value).
    pub detail: serde_json::Value,
    /// The previous entry's hash (hex; zeros for the first).
    pub prev: String,
    /// SHA-256 over `prev` and this entry's fields (hex).
    pub hash: String,
}

impl AuditEntry {
    fn digest(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.prev.as_str(),
            &self.seq.to_string(),
            &self.at,
            &self.actor,
            &self.action,
            self.tenant.as_deref().unwrap_or(""),
            &self.detail.to_string(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        hex(&h.finalize())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the audit chain breaks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    /// The first entry that does not verify.
    pub seq: u64,
    /// Why.
    pub reason: String,
}

/// The runtime file, open and locked by this process.
pub struct RuntimeStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for RuntimeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RuntimeStore({})", self.path.display())
    }
}

impl RuntimeStore {
    /// Opens (creating) the runtime file of `dir`.
    pub fn open(dir: &DataDir) -> Result<Self, StoreError> {
        dir.prepare()?;
        let path = dir.runtime_file();
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| crate::tenant::open_error(&path, e))?;
        let store = Self { db, path };
        store.migrate()?;
        Ok(store)
    }

    fn err<E: Into<redb::Error>>(&self, what: &str) -> impl FnOnce(E) -> StoreError + use<E> {
        crate::error::database(&self.path, what)
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        table: &'static str,
        key: &str,
        bytes: &[u8],
    ) -> Result<T, StoreError> {
        crate::error::decode(&self.path, table, key, bytes)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        // A file already at this version needs no write (a running `serve`
        // opens it every few seconds; a write would be an fsync each time).
        {
            let tx = self.db.begin_read().map_err(self.err("opening"))?;
            if let Ok(meta) = tx.open_table(META)
                && crate::tenant::check_schema_version(&meta, &self.path, RUNTIME_SCHEMA_VERSION)?
                    == RUNTIME_SCHEMA_VERSION
                && tx.open_table(TENANTS).is_ok()
                && tx.open_table(AUDIT).is_ok()
            {
                return Ok(());
            }
        }
        let tx = self.db.begin_write().map_err(self.err("opening"))?;
        {
            let mut meta = tx.open_table(META).map_err(self.err("opening meta"))?;
            crate::tenant::check_schema_version(&meta, &self.path, RUNTIME_SCHEMA_VERSION)?;
            meta.insert(SCHEMA_KEY, RUNTIME_SCHEMA_VERSION.to_le_bytes().as_slice())
                .map_err(self.err("writing meta"))?;
        }
        tx.open_table(TENANTS)
            .map_err(self.err("creating tables"))?;
        tx.open_table(AUDIT).map_err(self.err("creating tables"))?;
        tx.commit().map_err(self.err("committing the schema"))
    }

    /// Every tenant, by id.
    pub fn tenants(&self) -> Result<Vec<TenantEntry>, StoreError> {
        let tx = self.db.begin_read().map_err(self.err("reading"))?;
        let t = tx
            .open_table(TENANTS)
            .map_err(self.err("opening tenants"))?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(self.err("listing tenants"))? {
            let (k, v) = entry.map_err(self.err("listing tenants"))?;
            out.push(self.decode("tenants", k.value(), v.value())?);
        }
        Ok(out)
    }

    /// One tenant.
    pub fn tenant(&self, id: &str) -> Result<Option<TenantEntry>, StoreError> {
        let tx = self.db.begin_read().map_err(self.err("reading"))?;
        let t = tx
            .open_table(TENANTS)
            .map_err(self.err("opening tenants"))?;
        match t.get(id).map_err(self.err("reading a tenant"))? {
            Some(v) => Ok(Some(self.decode("tenants", id, v.value())?)),
            None => Ok(None),
        }
    }

    /// Lists (or updates) a tenant and appends the audit entry, in one
    /// transaction.
    pub fn put_tenant(
        &self,
        entry: &TenantEntry,
        actor: &str,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<AuditEntry, StoreError> {
        self.write_with_audit(actor, action, Some(&entry.id), detail, |tx| {
            let mut t = tx.open_table(TENANTS)?;
            let bytes = serde_json::to_vec(entry).unwrap_or_default();
            t.insert(entry.id.as_str(), bytes.as_slice())?;
            Ok(())
        })
    }

    /// Unlists a tenant and appends the audit entry, in one transaction.
    pub fn remove_tenant(
        &self,
        id: &str,
        actor: &str,
        detail: serde_json::Value,
    ) -> Result<AuditEntry, StoreError> {
        self.write_with_audit(actor, "tenant.remove", Some(id), detail, |tx| {
            let mut t = tx.open_table(TENANTS)?;
            t.remove(id)?;
            Ok(())
        })
    }

    /// Appends an audit entry.
    pub fn audit(
        &self,
        actor: &str,
        action: &str,
        tenant: Option<&str>,
        detail: serde_json::Value,
    ) -> Result<AuditEntry, StoreError> {
        self.write_with_audit(actor, action, tenant, detail, |_| Ok(()))
    }

    fn write_with_audit(
        &self,
        actor: &str,
        action: &str,
        tenant: Option<&str>,
        detail: serde_json::Value,
        change: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<AuditEntry, StoreError> {
        let tx = self.db.begin_write().map_err(self.err("writing"))?;
        let entry;
        {
            change(&tx).map_err(self.err("writing"))?;
            let mut log = tx.open_table(AUDIT).map_err(self.err("opening audit"))?;
            let (seq, prev) = match log.last().map_err(self.err("reading audit"))? {
                Some((k, v)) => {
                    let last: AuditEntry =
                        self.decode("audit", &k.value().to_string(), v.value())?;
                    (k.value() + 1, last.hash)
                }
                None => (1, "0".repeat(64)),
            };
            let mut e = AuditEntry {
                seq,
                at: crate::now_rfc3339(),
                actor: actor.to_owned(),
                action: action.to_owned(),
                tenant: tenant.map(str::to_owned),
                detail,
                prev,
                hash: String::new(),
            };
            e.hash = e.digest();
            let bytes = serde_json::to_vec(&e).unwrap_or_default();
            log.insert(seq, bytes.as_slice())
                .map_err(self.err("appending audit"))?;
            entry = e;
        }
        tx.commit().map_err(self.err("committing"))?;
        Ok(entry)
    }

    /// The audit log from `after` (exclusive), oldest first, at most `limit`.
    pub fn audit_log(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let tx = self.db.begin_read().map_err(self.err("reading"))?;
        let log = tx.open_table(AUDIT).map_err(self.err("opening audit"))?;
        let mut out = Vec::new();
        for entry in log
            .range(after.saturating_add(1)..)
            .map_err(self.err("reading audit"))?
        {
            let (k, v) = entry.map_err(self.err("reading audit"))?;
            out.push(self.decode("audit", &k.value().to_string(), v.value())?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Checks the whole chain; the first entry that breaks it, if any.
    pub fn verify_audit(&self) -> Result<Option<ChainBreak>, StoreError> {
        let tx = self.db.begin_read().map_err(self.err("reading"))?;
        let log = tx.open_table(AUDIT).map_err(self.err("opening audit"))?;
        let mut prev = "0".repeat(64);
        for (expected_seq, entry) in (1u64..).zip(log.iter().map_err(self.err("reading audit"))?) {
            let (k, v) = entry.map_err(self.err("reading audit"))?;
            let seq = k.value();
            let e: AuditEntry = match serde_json::from_slice(v.value()) {
                Ok(e) => e,
                Err(err) => {
                    return Ok(Some(ChainBreak {
                        seq,
                        reason: format!("unreadable entry: {err}"),
                    }));
                }
            };
            let broken = |reason: String| Ok(Some(ChainBreak { seq, reason }));
            if seq != expected_seq || e.seq != seq {
                return broken(format!("expected entry {expected_seq}, found {}", e.seq));
            }
            if e.prev != prev {
                return broken("does not follow the previous entry".into());
            }
            if e.digest() != e.hash {
                return broken("its content does not match its hash".into());
            }
            prev = e.hash;
        }
        Ok(None)
    }

    /// Test and repair hook: overwrites one raw audit entry (used by the
    /// tamper tests; nothing in the product calls it).
    #[doc(hidden)]
    pub fn overwrite_audit_entry_for_tests(
        &self,
        seq: u64,
        entry: &AuditEntry,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(self.err("writing"))?;
        {
            let mut log = tx.open_table(AUDIT).map_err(self.err("opening audit"))?;
            let bytes = serde_json::to_vec(entry).unwrap_or_default();
            log.insert(seq, bytes.as_slice())
                .map_err(self.err("writing audit"))?;
        }
        tx.commit().map_err(self.err("committing"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, RuntimeStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RuntimeStore::open(&DataDir::new(dir.path())).expect("open");
        (dir, store)
    }

    #[test]
    fn tenants_are_listed_and_every_change_audited() {
        let (_dir, rt) = open();
        let entry = TenantEntry {
            id: "acme".into(),
            applied_at: crate::now_rfc3339(),
            source: "acme.toml".into(),
        };
        rt.put_tenant(
            &entry,
            "ops",
            "tenant.apply",
            serde_json::json!({"pipelines": 2}),
        )
        .expect("put");
        assert_eq!(rt.tenants().expect("list"), vec![entry.clone()]);
        rt.remove_tenant("acme", "ops", serde_json::json!({}))
            .expect("remove");
        assert!(rt.tenant("acme").expect("get").is_none());
        let log = rt.audit_log(0, 10).expect("log");
        let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["tenant.apply", "tenant.remove"]);
        assert_eq!(log[1].prev, log[0].hash);
        assert_eq!(rt.verify_audit().expect("verify"), None);
    }

    #[test]
    fn a_changed_earlier_entry_breaks_the_chain_there() {
        let (_dir, rt) = open();
        for i in 0..3 {
            rt.audit(
                "ops",
                "replay.batch",
                Some("acme"),
                serde_json::json!({ "i": i }),
            )
            .expect("audit");
        }
        let mut second = rt.audit_log(1, 1).expect("log").remove(0);
        second.actor = "someone-else".into();
        rt.overwrite_audit_entry_for_tests(2, &second)
            .expect("tamper");
        let broken = rt.verify_audit().expect("verify").expect("a break");
        assert_eq!(broken.seq, 2, "{broken:?}");
        assert!(broken.reason.contains("hash"), "{broken:?}");
    }

    #[test]
    fn a_rehashed_forgery_breaks_the_next_link() {
        let (_dir, rt) = open();
        for i in 0..3 {
            rt.audit("ops", "pipeline.pause", None, serde_json::json!({ "i": i }))
                .expect("audit");
        }
        let mut first = rt.audit_log(0, 1).expect("log").remove(0);
        first.detail = serde_json::json!({"i": 99});
        first.hash = first.digest();
        rt.overwrite_audit_entry_for_tests(1, &first)
            .expect("tamper");
        let broken = rt.verify_audit().expect("verify").expect("a break");
        assert_eq!(broken.seq, 2, "{broken:?}");
    }
}
