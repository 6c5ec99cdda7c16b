//! The `scripted` guest component: a tenant's mapping script, interpreted
//! inside the sandbox.
//!
//! `configure` receives the script text (TOML), compiles it once into a plan
//! (every field path gets a slot; see `mlc_scripted_core`) and keeps it for
//! the life of the instance. `map-batch` runs the plan over the batch: each
//! record is read by a single-pass scanner that keeps only the fields the
//! script uses. Lookups go to the host's tenant-scoped `lookup` import.
//! Script mistakes come back from `configure` as `invalid-config` with the
//! line, position and output column; bad records come back as rejects.

use std::cell::RefCell;

use mlc_common::{ColumnType, Value};
use mlc_scripted_core::{Lookup, LookupError, MapError, RowMaker, Script};

/// Guest bindings of `wit/mapping.wit` (generated code uses `unsafe` for
/// the canonical ABI; it stays inside this module).
#[allow(unsafe_code, missing_docs)]
mod bindings {
    use super::Component;

    wit_bindgen::generate!({
        path: "../../wit",
        world: "mapping",
    });

    export!(Component);
}

use bindings::exports::ml_connector::mapping::mapper::Guest;
use bindings::ml_connector::mapping::host;
use bindings::ml_connector::mapping::types as wit;

thread_local! {
    /// The compiled script of this instance (set by `configure`).
    static SCRIPT: RefCell<Option<Script>> = const { RefCell::new(None) };
}

/// Lookups through the host import.
struct HostLookup;

impl Lookup for HostLookup {
    fn lookup(&mut self, dataset: &str, key: &str) -> Result<Option<String>, LookupError> {
        host::lookup(dataset, key).map_err(|e| match e {
            host::LookupError::UnknownDataset(d) => LookupError::UnknownDataset(d),
            host::LookupError::Unavailable(m) => LookupError::Unavailable(m),
        })
    }
}

fn column_type(ty: ColumnType) -> wit::ColumnType {
    match ty {
        ColumnType::Text => wit::ColumnType::Text,
        ColumnType::Integer => wit::ColumnType::Integer,
        ColumnType::Double => wit::ColumnType::Double,
        ColumnType::Decimal { precision, scale } => {
            wit::ColumnType::Decimal(wit::DecimalType { precision, scale })
        }
        ColumnType::Boolean => wit::ColumnType::Boolean,
        ColumnType::Date => wit::ColumnType::Date,
        ColumnType::Timestamp => wit::ColumnType::Timestamp,
    }
}

fn value(v: Value) -> wit::Value {
    match v {
        Value::Null => wit::Value::Null,
        Value::Text(s) => wit::Value::Text(s),
        Value::Integer(i) => wit::Value::Integer(i),
        Value::Double(f) => wit::Value::Double(f),
        Value::Decimal(d) => {
            // 128-bit two's complement split into hi × 2^64 + lo.
            let bits = d.unscaled as u128;
            wit::Value::Decimal(wit::Decimal {
                lo: bits as u64,
                hi: (bits >> 64) as u64 as i64,
                scale: d.scale,
            })
        }
        Value::Boolean(b) => wit::Value::Boolean(b),
        Value::Date(d) => wit::Value::Date(d),
        Value::Timestamp(t) => wit::Value::Timestamp(t),
    }
}

/// Builds WIT rows straight from each row's values (no intermediate row).
struct WitRows;

impl RowMaker for WitRows {
    type Row = wit::Row;

    fn make(&mut self, source: u32, values: &mut Vec<Value>) -> wit::Row {
        wit::Row {
            source,
            values: values.drain(..).map(value).collect(),
        }
    }
}

fn not_configured() -> wit::PluginError {
    wit::PluginError::Internal("the scripted plugin has no script: configure was not called".into())
}

struct Component;

impl Guest for Component {
    fn configure(config: String) -> Result<(), wit::PluginError> {
        let script =
            Script::compile(&config).map_err(|e| wit::PluginError::InvalidConfig(e.to_string()))?;
        SCRIPT.with(|s| *s.borrow_mut() = Some(script));
        Ok(())
    }

    fn resources() -> Vec<String> {
        SCRIPT.with(|s| {
            s.borrow()
                .as_ref()
                .map(|script| vec![script.resource().to_owned()])
                .unwrap_or_default()
        })
    }

    fn schema(resource: String) -> Result<Vec<wit::Column>, wit::PluginError> {
        SCRIPT.with(|s| {
            let guard = s.borrow();
            let script = guard.as_ref().ok_or_else(not_configured)?;
            if script.resource() != resource {
                return Err(wit::PluginError::UnknownResource(resource));
            }
            Ok(script
                .schema()
                .columns
                .iter()
                .map(|c| wit::Column {
                    name: c.name.clone(),
                    ty: column_type(c.ty),
                    nullable: c.nullable,
                    key: c.key,
                })
                .collect())
        })
    }

    fn map_batch(
        resource: String,
        records: Vec<String>,
    ) -> Result<wit::BatchOutput, wit::PluginError> {
        SCRIPT.with(|s| {
            let guard = s.borrow();
            let script = guard.as_ref().ok_or_else(not_configured)?;
            let (rows, rejects) = script
                .map_batch_with(&resource, &records, &mut HostLookup, &mut WitRows)
                .map_err(|e| match e {
                    MapError::UnknownResource { asked, .. } => {
                        wit::PluginError::UnknownResource(asked)
                    }
                    other => wit::PluginError::Internal(other.to_string()),
                })?;
            Ok(wit::BatchOutput {
                rows,
                rejects: rejects
                    .into_iter()
                    .map(|r| wit::Reject {
                        index: r.index,
                        field: r.field,
                        reason: r.reason,
                    })
                    .collect(),
            })
        })
    }
}
