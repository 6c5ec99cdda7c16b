//! What a pull reads and returns: resource specs, the cursor, raw records,
//! pages, statistics, and the record index that deduplicates against what
//! was already exported.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The timestamp member of every incrementally read resource.
pub const LAST_UPDATE_DATE: &str = "LastUpdateDate";

/// How a resource's key compares, which must match how Oracle orders it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// An integer id (InvoiceId, ...): compared numerically, written bare in `q`.
    Integer,
    /// A text key (a value set's `Value`): compared byte-wise, quoted in `q`.
    Text,
}

/// One Oracle resource as the client reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    /// Path below the resource root, e.g. `invoices` or
    /// `valueSets/CC_VS/child/values`.
    pub path: String,
    /// The unique key member, e.g. `InvoiceId`.
    pub key: String,
    /// How the key compares.
    pub key_kind: KeyKind,
    /// The change timestamp member (`LastUpdateDate`); `None` means the
    /// resource has none and is refreshed in full.
    pub timestamp: Option<String>,
    /// Child collections read with each parent (`expand`), nested ones as
    /// `child.grandchild`.
    pub expand: Vec<String>,
}

impl ResourceSpec {
    fn new(path: &str, key: &str, kind: KeyKind, ts: bool, expand: &[&str]) -> Self {
        Self {
            path: path.to_owned(),
            key: key.to_owned(),
            key_kind: kind,
            timestamp: ts.then(|| LAST_UPDATE_DATE.to_owned()),
            expand: expand.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// Payables invoices with lines, their distributions and installments.
    pub fn invoices() -> Self {
        Self::new(
            "invoices",
            "InvoiceId",
            KeyKind::Integer,
            true,
            &[
                "invoiceLines",
                "invoiceLines.invoiceDistributions",
                "invoiceInstallments",
            ],
        )
    }

    /// Payables payments. Their REST `LastUpdateDate` is unconfirmed in the
    /// reference; we read it as present (BICC has it), and a pod without it
    /// answers 400 naming the attribute, which surfaces as a clear error.
    pub fn payables_payments() -> Self {
        Self::new("payablesPayments", "CheckId", KeyKind::Integer, true, &[])
    }

    /// Suppliers with their sites.
    pub fn suppliers() -> Self {
        Self::new(
            "suppliers",
            "SupplierId",
            KeyKind::Integer,
            true,
            &["sites"],
        )
    }

    /// Purchase orders with lines and their schedules (`LastUpdateDate`
    /// unconfirmed in the reference; read as present, see payments).
    pub fn purchase_orders() -> Self {
        Self::new(
            "purchaseOrders",
            "POHeaderId",
            KeyKind::Integer,
            true,
            &["lines", "lines.schedules"],
        )
    }

    /// Receivables invoices (`LastUpdateDate` unconfirmed; read as present).
    pub fn receivables_invoices() -> Self {
        Self::new(
            "receivablesInvoices",
            "CustomerTransactionId",
            KeyKind::Integer,
            true,
            &[],
        )
    }

    /// GL journal batches with headers and their lines. Whether a line edit
    /// bumps the batch timestamp is unconfirmed, so lines are always re-read
    /// with their changed batch.
    pub fn journal_batches() -> Self {
        Self::new(
            "journalBatches",
            "JeBatchId",
            KeyKind::Integer,
            true,
            &["journalHeaders", "journalHeaders.journalLines"],
        )
    }

    /// GL account combinations: no timestamp, refreshed in full.
    pub fn account_combinations() -> Self {
        Self::new(
            "accountCombinationsLOV",
            "_CODE_COMBINATION_ID",
            KeyKind::Integer,
            false,
            &[],
        )
    }

    /// Values of one value set (segment values, cost centers). Timestamps
    /// and `ValueId` are unconfirmed in the reference, so the key is
    /// `Value` (unique within a set) and the set is refreshed in full.
    pub fn value_set_values(value_set_code: &str) -> Self {
        Self::new(
            &format!("valueSets/{value_set_code}/child/values"),
            "Value",
            KeyKind::Text,
            false,
            &[],
        )
    }

    /// True when the resource is read incrementally.
    pub fn is_incremental(&self) -> bool {
        self.timestamp.is_some()
    }
}

/// Where an incremental pull stands: the greatest (`LastUpdateDate`, key)
/// delivered. A store persists it after the records up to it are exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// `LastUpdateDate` in microseconds since the epoch, UTC.
    pub last_update: i64,
    /// The key of the last record at that timestamp.
    pub key: String,
}

/// Compares two keys of `kind` the way Oracle orders them.
pub fn compare_keys(kind: KeyKind, a: &str, b: &str) -> Ordering {
    match kind {
        KeyKind::Integer => match (a.parse::<i64>(), b.parse::<i64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => a.cmp(b),
        },
        KeyKind::Text => a.as_bytes().cmp(b.as_bytes()),
    }
}

impl Cursor {
    /// Orders two positions by timestamp, then key.
    pub fn compare(&self, other: &Cursor, kind: KeyKind) -> Ordering {
        self.last_update
            .cmp(&other.last_update)
            .then_with(|| compare_keys(kind, &self.key, &other.key))
    }
}

/// One record as Oracle sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// The key member as text.
    pub key: String,
    /// `LastUpdateDate` in microseconds UTC; `None` for full-refresh resources.
    pub last_update: Option<i64>,
    /// SHA-256 of the canonical content (see [`crate::canonical`]).
    pub content_hash: [u8; 32],
    /// The item exactly as Oracle sent it.
    pub json: String,
}

/// A page of new or changed records, in (`LastUpdateDate`, key) order.
#[derive(Debug, Clone)]
pub struct Page {
    /// Records not exported before (duplicates removed).
    pub records: Vec<RawRecord>,
    /// The position after this page (incremental resources): persist it once
    /// these records are exported.
    pub cursor: Option<Cursor>,
    /// Records of this page the index already had.
    pub duplicates: u64,
}

/// Counters of one pull.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PullStats {
    /// HTTP requests to the resource, retries included (token requests not).
    pub requests: u64,
    /// Pages read.
    pub pages: u64,
    /// Items read.
    pub records: u64,
    /// Items skipped because the index had them (or this pull delivered them).
    pub duplicates_skipped: u64,
}

/// What was already exported: a version is identified by key,
/// `LastUpdateDate` and content hash. The store implements it durably; the
/// pull only asks, the pipeline marks after an export is confirmed.
pub trait RecordIndex: Send + Sync {
    /// True unless exactly this version of the record was exported.
    fn is_new(&self, key: &str, last_update: Option<i64>, content_hash: &[u8; 32]) -> bool;
    /// Remembers that this version was exported.
    fn mark_exported(&self, key: &str, last_update: Option<i64>, content_hash: &[u8; 32]);
}

/// The index of a first sync or backfill: nothing was exported yet, and
/// nothing is remembered (memory stays constant however many records pass).
#[derive(Debug, Clone, Copy, Default)]
pub struct NothingExported;

impl RecordIndex for NothingExported {
    fn is_new(&self, _key: &str, _last_update: Option<i64>, _content_hash: &[u8; 32]) -> bool {
        true
    }
    fn mark_exported(&self, _key: &str, _last_update: Option<i64>, _content_hash: &[u8; 32]) {}
}

/// Key -> (`LastUpdateDate`, content hash) of the last exported version.
type Versions = HashMap<String, (Option<i64>, [u8; 32])>;

/// An in-memory index holding the last exported version of each key.
#[derive(Debug, Default)]
pub struct MemoryRecordIndex {
    versions: Mutex<Versions>,
}

impl MemoryRecordIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keys known.
    pub fn len(&self) -> usize {
        self.versions.lock().map_or(0, |v| v.len())
    }

    /// True when nothing was marked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key known, e.g. to find deletes with [`crate::deleted_keys`].
    pub fn keys(&self) -> Vec<String> {
        self.versions
            .lock()
            .map(|v| v.keys().cloned().collect())
            .unwrap_or_default()
    }
}

impl RecordIndex for MemoryRecordIndex {
    fn is_new(&self, key: &str, last_update: Option<i64>, content_hash: &[u8; 32]) -> bool {
        match self.versions.lock() {
            Ok(v) => v.get(key) != Some(&(last_update, *content_hash)),
            // A poisoned lock: re-export rather than lose a record.
            Err(_) => true,
        }
    }

    fn mark_exported(&self, key: &str, last_update: Option<i64>, content_hash: &[u8; 32]) {
        if let Ok(mut v) = self.versions.lock() {
            v.insert(key.to_owned(), (last_update, *content_hash));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_like_oracle() {
        assert_eq!(compare_keys(KeyKind::Integer, "9", "10"), Ordering::Less);
        assert_eq!(compare_keys(KeyKind::Text, "9", "10"), Ordering::Greater);
        let a = Cursor {
            last_update: 5,
            key: "99".into(),
        };
        let b = Cursor {
            last_update: 5,
            key: "100".into(),
        };
        assert_eq!(a.compare(&b, KeyKind::Integer), Ordering::Less);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Cursor>(&json).unwrap(), a);
    }

    #[test]
    fn memory_index_versions() {
        let idx = MemoryRecordIndex::new();
        let h = [1u8; 32];
        assert!(idx.is_new("1", Some(10), &h));
        idx.mark_exported("1", Some(10), &h);
        assert!(!idx.is_new("1", Some(10), &h));
        assert!(idx.is_new("1", Some(11), &h), "a newer timestamp is new");
        assert!(idx.is_new("1", Some(10), &[2u8; 32]), "new content is new");
        assert_eq!(idx.keys(), vec!["1".to_owned()]);
        assert!(NothingExported.is_new("1", Some(10), &h));
    }
}
