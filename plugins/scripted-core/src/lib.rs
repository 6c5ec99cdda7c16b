//! The mapping-script language of ml-connector.
//!
//! A mapping script is a TOML file that turns raw Oracle Fusion records into
//! the typed rows of a Tableau data source: column names and types, source
//! fields (also of expanded child collections such as invoice lines),
//! defaults, value maps, GL segment splits, lookups into reference data,
//! string and date functions, and a row filter. `mappings/README.md`
//! describes the language for the people who write scripts.
//!
//! This crate is plain Rust with no WebAssembly dependency: the `scripted`
//! guest component wraps it, and the host (tests, benchmarks, tools) can run
//! it natively.
//!
//! ```
//! use mlc_scripted_core::{Script, MemoryReference};
//!
//! let script = Script::compile(r#"
//! resource = "invoices"
//!
//! [[column]]
//! name = "Invoice ID"
//! type = "integer"
//! key = true
//! source = "InvoiceId"
//!
//! [[column]]
//! name = "Invoice Amount"
//! type = "decimal(18,2)"
//! source = "InvoiceAmount"
//! "#).unwrap();
//! let records = [r#"{"InvoiceId": 300100412233001, "InvoiceAmount": 1250.00}"#];
//! let batch = script.map_batch("invoices", &records, &mut MemoryReference::default()).unwrap();
//! assert_eq!(batch.rows.len(), 1);
//! ```
//!
//! Speed: [`Script::compile`] turns every field path into a slot once, and
//! each record is read by a single-pass scanner ([`json`]) that keeps only
//! those fields, as borrowed slices, and skips the rest without building a
//! tree.

pub mod error;
pub mod eval;
pub mod expr;
pub mod json;
pub mod reads;
pub mod script;

use std::collections::HashMap;

pub use error::{LookupError, MapError, ScriptError};
pub use eval::Lookup;
pub use reads::{ChildReads, Reads};
pub use script::{RowSink, RowsSink, Script, SinkFault};

/// Reference data held in memory: dataset → key → record (JSON object
/// text). Used by tests, benchmarks and native runs; the guest asks the
/// host instead.
#[derive(Clone, Debug, Default)]
pub struct MemoryReference {
    datasets: HashMap<String, HashMap<String, String>>,
}

/// Why a reference dataset file could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("reference dataset {dataset:?}: {message}")]
pub struct ReferenceError {
    /// The dataset.
    pub dataset: String,
    /// What is wrong.
    pub message: String,
}

impl MemoryReference {
    /// Adds (or replaces) a dataset from the text of a JSON object
    /// `{ "<key>": { ...record... }, ... }`, the layout of
    /// `mappings/<tenant>/reference/<dataset>.json`.
    pub fn add_json(&mut self, dataset: &str, text: &str) -> Result<(), ReferenceError> {
        let error = |message: String| ReferenceError {
            dataset: dataset.to_owned(),
            message,
        };
        let members = json::object_members(text).map_err(|e| error(e.to_string()))?;
        let mut records = HashMap::with_capacity(members.len());
        for (key, value) in members {
            let json::Raw::Object(record) = value else {
                return Err(error(format!(
                    "entry {key:?} is {}, not an object",
                    value.kind()
                )));
            };
            records.insert(key.into_owned(), record.to_owned());
        }
        self.datasets.insert(dataset.to_owned(), records);
        Ok(())
    }

    /// Adds one record to a dataset.
    pub fn insert(&mut self, dataset: &str, key: &str, record_json: &str) {
        self.datasets
            .entry(dataset.to_owned())
            .or_default()
            .insert(key.to_owned(), record_json.to_owned());
    }
}

impl Lookup for MemoryReference {
    fn lookup(&mut self, dataset: &str, key: &str) -> Result<Option<String>, LookupError> {
        let records = self
            .datasets
            .get(dataset)
            .ok_or_else(|| LookupError::UnknownDataset(dataset.to_owned()))?;
        Ok(records.get(key).cloned())
    }
}

#[cfg(test)]
mod tests;
