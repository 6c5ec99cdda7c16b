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
    /// Only these attributes are asked for (`fields=`); `None`: every
    /// attribute, and every child collection of `expand` whole. See
    /// [`ResourceSpec::projected`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Projection>,
}

/// The attributes a projected pull asks Oracle for (its `fields=`
/// parameter): of the record itself and of each expanded child collection.
/// Oracle's syntax is `fields=A,B;child:C,D;child.grandchild:E`, and with
/// `fields` given only the children it names are inlined (`expand` is
/// ignored), so every child to read is named with at least one attribute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Projection {
    /// Attributes of the record, sorted, the key and timestamp members
    /// included.
    pub attributes: Vec<String>,
    /// Child collection path (as in `expand`) → its attributes, sorted.
    pub children: std::collections::BTreeMap<String, Vec<String>>,
}

impl Projection {
    /// The value of the `fields` query parameter.
    pub fn query(&self) -> String {
        let mut text = self.attributes.join(",");
        for (path, attributes) in &self.children {
            text.push(';');
            text.push_str(path);
            text.push(':');
            text.push_str(&attributes.join(","));
        }
        text
    }

    /// True when every attribute and child `self` asks for, `other` asks
    /// for too (records pulled with `other` hold what `self` reads).
    pub fn is_within(&self, other: &Projection) -> bool {
        let subset = |a: &[String], b: &[String]| a.iter().all(|x| b.contains(x));
        subset(&self.attributes, &other.attributes)
            && self.children.iter().all(|(path, attributes)| {
                other
                    .children
                    .get(path)
                    .is_some_and(|o| subset(attributes, o))
            })
    }
}

impl ResourceSpec {
    fn new(path: &str, key: &str, kind: KeyKind, ts: bool, expand: &[&str]) -> Self {
        Self {
            path: path.to_owned(),
            key: key.to_owned(),
            key_kind: kind,
            timestamp: ts.then(|| LAST_UPDATE_DATE.to_owned()),
            expand: expand.iter().map(|s| (*s).to_owned()).collect(),
            fields: None,
        }
    }

    /// This resource read with only `attributes` of each record (the key
    /// and timestamp members are added) and, per child collection path,
    /// only the given attributes of its rows; `expand` becomes exactly
    /// those children (and the parents of nested ones). `None` when a child
    /// would be read with no attribute: Oracle's `fields` cannot ask for a
    /// child's rows without naming one of its attributes, so such a pull
    /// reads whole records.
    pub fn projected<'a>(
        mut self,
        attributes: impl IntoIterator<Item = &'a str>,
        children: impl IntoIterator<Item = (&'a str, Vec<String>)>,
    ) -> Option<Self> {
        let mut top: Vec<String> = attributes.into_iter().map(str::to_owned).collect();
        top.push(self.key.clone());
        top.extend(self.timestamp.clone());
        top.sort();
        top.dedup();
        let mut kids = std::collections::BTreeMap::new();
        for (path, mut attributes) in children {
            if attributes.is_empty() {
                return None;
            }
            attributes.sort();
            attributes.dedup();
            kids.insert(path.to_owned(), attributes);
        }
        let mut expand: Vec<String> = Vec::new();
        for path in kids.keys() {
            let mut prefix = String::new();
            for part in path.split('.') {
                if !prefix.is_empty() {
                    prefix.push('.');
                }
                prefix.push_str(part);
                if !expand.contains(&prefix) {
                    expand.push(prefix.clone());
                }
            }
        }
        self.expand = expand;
        self.fields = Some(Projection {
            attributes: top,
            children: kids,
        });
        Some(self)
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

    #[test]
    fn a_projection_adds_key_and_timestamp_and_expands_only_what_it_reads() {
        let spec = ResourceSpec::invoices()
            .projected(
                ["InvoiceNumber", "InvoiceAmount"],
                [(
                    "invoiceLines.invoiceDistributions",
                    vec!["DistributionLineNumber".to_owned()],
                )],
            )
            .expect("every child reads an attribute");
        assert_eq!(
            spec.expand,
            ["invoiceLines", "invoiceLines.invoiceDistributions"],
            "installments are not read; lines are the distributions' parent"
        );
        let fields = spec.fields.as_ref().expect("projected");
        assert_eq!(
            fields.query(),
            "InvoiceAmount,InvoiceId,InvoiceNumber,LastUpdateDate;\
             invoiceLines.invoiceDistributions:DistributionLineNumber"
        );
        let flat = ResourceSpec::account_combinations()
            .projected(["AccountType", "_CODE_COMBINATION_ID"], [])
            .expect("no children");
        assert!(flat.expand.is_empty());
        assert_eq!(
            flat.fields.map(|f| f.query()).as_deref(),
            Some("AccountType,_CODE_COMBINATION_ID"),
            "no timestamp member, the key once"
        );
        assert!(
            ResourceSpec::invoices()
                .projected(["InvoiceId"], [("invoiceLines", vec![])])
                .is_none(),
            "a child read for its rows only cannot be projected"
        );
    }

    #[test]
    fn projections_compare_by_what_they_hold() {
        let p = |top: &[&str], lines: &[&str]| {
            ResourceSpec::invoices()
                .projected(
                    top.iter().copied(),
                    (!lines.is_empty()).then(|| {
                        (
                            "invoiceLines",
                            lines.iter().map(|s| (*s).to_owned()).collect(),
                        )
                    }),
                )
                .and_then(|s| s.fields)
                .expect("projected")
        };
        let wide = p(
            &["InvoiceAmount", "Description"],
            &["LineAmount", "LineNumber"],
        );
        let narrow = p(&["InvoiceAmount"], &["LineNumber"]);
        assert!(narrow.is_within(&wide));
        assert!(!wide.is_within(&narrow));
        assert!(p(&["InvoiceAmount"], &[]).is_within(&wide));
        assert!(
            !narrow.is_within(&p(&["InvoiceAmount"], &[])),
            "no lines there"
        );
        let json = serde_json::to_string(&ResourceSpec::invoices()).expect("serializes");
        assert!(
            !json.contains("fields"),
            "whole records serialize as before: {json}"
        );
    }
}
