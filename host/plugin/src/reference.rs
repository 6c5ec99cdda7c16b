//! Reference data that plugins look up: suppliers, account combinations,
//! segment values, cost centers.
//!
//! The runtime holds one `Arc<dyn ReferenceData>` and passes the tenant of
//! the batch being mapped to every lookup; the guest names only the dataset
//! and the key, so it can never read another tenant's data. The store will
//! serve reference data once it syncs it; until then (and for `plugin test`)
//! [`JsonDirReference`] reads it from JSON files.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::value::RawValue;

use crate::runtime::UniqueMembers;

/// Why a lookup failed. Mirrors the WIT `lookup-error`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The tenant has no dataset of that name.
    #[error("unknown dataset `{0}`")]
    UnknownDataset(String),
    /// The reference data cannot be read now.
    #[error("reference data unavailable: {0}")]
    Unavailable(String),
}

/// Read-only, tenant-scoped reference data.
pub trait ReferenceData: Send + Sync + 'static {
    /// The record of `dataset` with `key`, as JSON object text, for `tenant`;
    /// `None` when the key is absent.
    fn lookup(&self, tenant: &str, dataset: &str, key: &str)
    -> Result<Option<String>, LookupError>;
}

/// No reference data at all: every dataset is unknown.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoReferenceData;

impl ReferenceData for NoReferenceData {
    fn lookup(
        &self,
        _tenant: &str,
        dataset: &str,
        _key: &str,
    ) -> Result<Option<String>, LookupError> {
        Err(LookupError::UnknownDataset(dataset.to_owned()))
    }
}

/// Why a reference directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// A file or directory could not be read.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A dataset file is not a JSON object of JSON objects.
    #[error("{}: {detail}", .path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

type Dataset = HashMap<String, String>;

/// Reference data read once from a directory of JSON files.
///
/// `<dir>/<dataset>.json` is a JSON object `{ "<key>": { ...record... } }`
/// and serves every tenant; `<dir>/<tenant>/<dataset>.json` serves only that
/// tenant and takes precedence over a shared dataset of the same name.
/// Record texts are kept exactly as written (numbers keep every digit). A
/// file that gives a key twice, or a record that repeats a member name, is
/// refused with the file and the key named: either would otherwise be read
/// one way here and another way elsewhere.
///
/// Datasets the demo uses: `suppliers` (keyed by SupplierNumber),
/// `cost-centers` (segment value), `accounts` (natural-account segment
/// value), `companies` (company segment value) and `account-combinations`
/// (the concatenated combination).
#[derive(Debug, Default)]
pub struct JsonDirReference {
    shared: HashMap<String, Dataset>,
    tenants: HashMap<String, HashMap<String, Dataset>>,
}

impl JsonDirReference {
    /// Reads every dataset under `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, ReferenceError> {
        let dir = dir.as_ref();
        let mut this = Self::default();
        for entry in read_dir(dir)? {
            let path = entry.path();
            let file_type = entry.file_type().map_err(|source| ReferenceError::Io {
                path: path.clone(),
                source,
            })?;
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            if file_type.is_dir() {
                let mut datasets = HashMap::new();
                for inner in read_dir(&path)? {
                    let inner_path = inner.path();
                    if let Some(dataset) = dataset_name(&inner_path) {
                        datasets.insert(dataset, read_dataset(&inner_path)?);
                    }
                }
                this.tenants.insert(name, datasets);
            } else if let Some(dataset) = dataset_name(&path) {
                this.shared.insert(dataset, read_dataset(&path)?);
            }
        }
        Ok(this)
    }

    /// Adds (or replaces) a dataset shared by every tenant, from a JSON
    /// object text of records.
    pub fn insert_shared(&mut self, dataset: &str, json: &str) -> Result<(), ReferenceError> {
        let records = parse_dataset(Path::new(dataset), json)?;
        self.shared.insert(dataset.to_owned(), records);
        Ok(())
    }

    /// Adds (or replaces) a dataset of one tenant.
    pub fn insert_tenant(
        &mut self,
        tenant: &str,
        dataset: &str,
        json: &str,
    ) -> Result<(), ReferenceError> {
        let records = parse_dataset(Path::new(dataset), json)?;
        self.tenants
            .entry(tenant.to_owned())
            .or_default()
            .insert(dataset.to_owned(), records);
        Ok(())
    }

    /// The dataset names visible to `tenant`, sorted.
    pub fn datasets(&self, tenant: &str) -> Vec<String> {
        let mut names: Vec<String> = self.shared.keys().cloned().collect();
        if let Some(own) = self.tenants.get(tenant) {
            names.extend(own.keys().cloned());
        }
        names.sort();
        names.dedup();
        names
    }
}

impl ReferenceData for JsonDirReference {
    fn lookup(
        &self,
        tenant: &str,
        dataset: &str,
        key: &str,
    ) -> Result<Option<String>, LookupError> {
        let records = self
            .tenants
            .get(tenant)
            .and_then(|own| own.get(dataset))
            .or_else(|| self.shared.get(dataset))
            .ok_or_else(|| LookupError::UnknownDataset(dataset.to_owned()))?;
        Ok(records.get(key).cloned())
    }
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, ReferenceError> {
    let io = |source| ReferenceError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    Ok(entries)
}

fn dataset_name(path: &Path) -> Option<String> {
    if path.extension().and_then(|e| e.to_str()) != Some("json") {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    if stem.starts_with('.') || stem.is_empty() {
        return None;
    }
    Some(stem.to_owned())
}

fn read_dataset(path: &Path) -> Result<Dataset, ReferenceError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReferenceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_dataset(path, &text)
}

fn parse_dataset(path: &Path, text: &str) -> Result<Dataset, ReferenceError> {
    let format = |detail: String| ReferenceError::Format {
        path: path.to_path_buf(),
        detail,
    };
    let DatasetEntries(records) = serde_json::from_str(text).map_err(|e| format(e.to_string()))?;
    let mut dataset = HashMap::with_capacity(records.len());
    for (key, record) in records {
        let raw = record.get();
        if !raw.starts_with('{') {
            return Err(format(format!("record `{key}` is not a JSON object")));
        }
        // A record repeating a member would be read differently by
        // different plugins, as a batch record would (`records_of`).
        serde_json::from_str::<UniqueMembers>(raw)
            .map_err(|e| format(format!("record `{key}`: {e}")))?;
        dataset.insert(key, raw.to_owned());
    }
    Ok(dataset)
}

/// The records of a dataset file in file order; a key given twice is an
/// error (a JSON reader would silently keep one of the two records).
struct DatasetEntries(Vec<(String, Box<RawValue>)>);

impl<'de> serde::Deserialize<'de> for DatasetEntries {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(DatasetVisitor)
    }
}

struct DatasetVisitor;

impl<'de> serde::de::Visitor<'de> for DatasetVisitor {
    type Value = DatasetEntries;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object of records")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<DatasetEntries, A::Error> {
        let mut seen = HashSet::new();
        let mut records = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let record = map.next_value::<Box<RawValue>>()?;
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format_args!(
                    "key {key:?} appears twice (each key must name one record)"
                )));
            }
            records.push((key, record));
        }
        Ok(DatasetEntries(records))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_shared_and_tenant_datasets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cost-centers.json"),
            r#"{"110": {"Value": "110", "Description": "Sales"}, "120": {"Value":"120","Description":"Finance","Budget":12345678901234567890.123456789}}"#,
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("acme")).unwrap();
        std::fs::write(
            dir.path().join("acme/cost-centers.json"),
            r#"{"110": {"Value": "110", "Description": "Acme Sales"}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let reference = JsonDirReference::open(dir.path()).unwrap();

        let shared = reference.lookup("globex", "cost-centers", "110").unwrap();
        assert_eq!(
            shared.as_deref(),
            Some(r#"{"Value": "110", "Description": "Sales"}"#)
        );
        let own = reference.lookup("acme", "cost-centers", "110").unwrap();
        assert_eq!(
            own.as_deref(),
            Some(r#"{"Value": "110", "Description": "Acme Sales"}"#)
        );
        // A tenant's own dataset replaces the shared one as a whole.
        assert_eq!(
            reference.lookup("acme", "cost-centers", "120").unwrap(),
            None
        );
        let exact = reference
            .lookup("globex", "cost-centers", "120")
            .unwrap()
            .unwrap();
        assert!(exact.contains("12345678901234567890.123456789"), "{exact}");
        assert_eq!(
            reference.lookup("globex", "suppliers", "1"),
            Err(LookupError::UnknownDataset("suppliers".into()))
        );
        assert_eq!(reference.datasets("acme"), vec!["cost-centers".to_owned()]);
    }

    #[test]
    fn refuses_malformed_datasets() {
        let mut reference = JsonDirReference::default();
        let err = reference.insert_shared("suppliers", "[1, 2]").unwrap_err();
        assert!(err.to_string().contains("expected a JSON object"), "{err}");
        let err = reference
            .insert_shared("suppliers", r#"{"1253": "Acme"}"#)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("record `1253` is not a JSON object"),
            "{err}"
        );
    }

    #[test]
    fn refuses_a_dataset_file_repeating_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("suppliers.json");
        std::fs::write(
            &path,
            "{\"1253\": {\"Name\": \"Acme\"},\n \"1300\": {\"Name\": \"Globex\"},\n \"1253\": {\"Name\": \"Acme Two\"}}",
        )
        .unwrap();
        let err = JsonDirReference::open(dir.path()).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(&err, ReferenceError::Format { path: p, .. } if p == &path),
            "{message}"
        );
        assert!(
            message.starts_with(&path.display().to_string())
                && message.contains("key \"1253\" appears twice")
                && message.contains("line 3"),
            "{message}"
        );

        // A tenant's file too, and an escaped spelling of the same key.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(dir.path().join("acme")).unwrap();
        let tenant_file = dir.path().join("acme/cost-centers.json");
        std::fs::write(
            &tenant_file,
            r#"{"110": {"Value": "110"}, "\u0031\u0031\u0030": {"Value": "x"}}"#,
        )
        .unwrap();
        let message = JsonDirReference::open(dir.path()).unwrap_err().to_string();
        assert!(
            message.starts_with(&tenant_file.display().to_string())
                && message.contains("key \"110\" appears twice"),
            "{message}"
        );

        // Records repeating a member are refused like batch records.
        let mut reference = JsonDirReference::default();
        let err = reference
            .insert_shared(
                "suppliers",
                r#"{"1253": {"Name": "Acme", "Name": "Other"}}"#,
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("record `1253`") && err.contains("member \"Name\" appears twice"),
            "{err}"
        );
        // Equal keys in different files, and equal members in different
        // records, are fine.
        reference
            .insert_shared(
                "suppliers",
                r#"{"1253": {"Name": "Acme"}, "1300": {"Name": "Globex"}}"#,
            )
            .unwrap();
        reference
            .insert_tenant("acme", "suppliers", r#"{"1253": {"Name": "Acme Own"}}"#)
            .unwrap();
        assert_eq!(
            reference
                .lookup("globex", "suppliers", "1300")
                .unwrap()
                .as_deref(),
            Some(r#"{"Name": "Globex"}"#)
        );
    }

    #[test]
    fn no_reference_data_knows_no_dataset() {
        assert_eq!(
            NoReferenceData.lookup("acme", "suppliers", "1"),
            Err(LookupError::UnknownDataset("suppliers".into()))
        );
    }
}
