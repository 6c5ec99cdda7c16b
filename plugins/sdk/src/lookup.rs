//! Reference-data lookups (cached per batch) and logging.
//!
//! The host scopes every lookup to the tenant of the batch: a plugin names
//! only the dataset and the key. [`Lookups`] caches answers for the life of
//! the instance (one batch), so a batch of 500 journal lines touching five
//! cost centers asks the host five times.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use crate::MapError;
use crate::bindings::ml_connector::mapping::host::{self, LookupError};
use crate::bindings::ml_connector::mapping::types::{Failure, Level, PluginError};
use crate::json::Object;

/// Looks up one record of the tenant's reference data: its JSON text, or
/// `None` when the key is absent.
pub fn lookup(dataset: &str, key: &str) -> Result<Option<String>, LookupError> {
    host::lookup(dataset, key)
}

/// A per-batch cache of one field of reference records.
#[derive(Debug, Default)]
pub struct Lookups {
    cache: RefCell<BTreeMap<(String, String, String), Option<String>>>,
    unknown: RefCell<BTreeSet<String>>,
}

impl Lookups {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The string field `field` of record `key` in `dataset`. `None` when the
    /// key is absent, the record lacks the field, or the tenant has no such
    /// dataset (logged once as a warning). Unavailable reference data fails
    /// the batch, so it is retried rather than mapped without descriptions.
    pub fn field(&self, dataset: &str, key: &str, field: &str) -> Result<Option<String>, MapError> {
        let cache_key = (dataset.to_owned(), key.to_owned(), field.to_owned());
        if let Some(hit) = self.cache.borrow().get(&cache_key) {
            return Ok(hit.clone());
        }
        let value = match lookup(dataset, key) {
            Ok(Some(record)) => Object::parse(&record).ok().and_then(|o| {
                o.get_non_null(field)
                    .and_then(|v| v.as_str())
                    .map(|s| s.into_owned())
            }),
            Ok(None) => None,
            Err(LookupError::UnknownDataset(name)) => {
                if self.unknown.borrow_mut().insert(name.clone()) {
                    log(
                        Level::Warn,
                        &format!(
                            "reference dataset `{name}` is unknown for this tenant; its lookups give no value"
                        ),
                    );
                }
                None
            }
            Err(LookupError::Unavailable(why)) => {
                return Err(MapError::Fail(PluginError::Internal(Failure::new(
                    "lookup",
                    format!("reference data `{dataset}` unavailable: {why}"),
                ))));
            }
        };
        self.cache.borrow_mut().insert(cache_key, value.clone());
        Ok(value)
    }

    /// The `Description` of record `key` in `dataset` (segment values, cost
    /// centers, accounts), as [`Lookups::field`].
    pub fn description(&self, dataset: &str, key: &str) -> Result<Option<String>, MapError> {
        self.field(dataset, key, "Description")
    }
}

/// Writes a line into the host's log, tagged with tenant and plugin.
pub fn log(level: Level, message: &str) {
    host::log(level, message);
}
