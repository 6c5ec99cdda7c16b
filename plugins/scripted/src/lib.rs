//! The `scripted` guest component: a tenant's mapping script, interpreted
//! inside the sandbox.
//!
//! `configure` receives the script text (TOML) and compiles it into a plan
//! (every field path gets a slot; see `mlc_scripted_core`) kept for the
//! life of the instance. The host gives every batch a fresh instance, so
//! this happens once per batch (and once more when the plugin is loaded, to
//! validate the script). `map-batch` runs the plan over the batch: each
//! record is read by a single-pass scanner that keeps only the fields the
//! script uses, and each output value is appended to its column
//! (`mlc_plugin_sdk::ColumnsBuilder`, the contract's column-wise output).
//! Lookups go to the host's tenant-scoped `lookup` import.
//! Script mistakes come back from `configure` as `invalid-config` whose
//! `failure` record holds the line, position and output column apart from
//! the message (kind `script`); a batch that cannot be mapped fails with
//! `internal` (kind `lookup`, `batch-too-large`, ...); bad records come
//! back as rejects.

use std::cell::RefCell;

use mlc_common::{Cell, ColumnType};
use mlc_plugin_sdk::bindings::ml_connector::mapping::host;
use mlc_plugin_sdk::{
    BatchOutput, Column, ColumnsBuilder, DecimalType, Failure, Guest, PluginError, Reject, RowError,
};
use mlc_scripted_core::{Lookup, LookupError, MapError, RowSink, Script, ScriptError, SinkFault};

thread_local! {
    /// The compiled script of this instance (set by `configure`) and its
    /// schema in the contract's terms.
    static SCRIPT: RefCell<Option<(Script, Vec<Column>)>> = const { RefCell::new(None) };
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

fn column_type(ty: ColumnType) -> mlc_plugin_sdk::ColumnType {
    use mlc_plugin_sdk::ColumnType as Wit;
    match ty {
        ColumnType::Text => Wit::Text,
        ColumnType::Integer => Wit::Integer,
        ColumnType::Double => Wit::Double,
        ColumnType::Decimal { precision, scale } => Wit::Decimal(DecimalType { precision, scale }),
        ColumnType::Boolean => Wit::Boolean,
        ColumnType::Date => Wit::Date,
        ColumnType::Timestamp => Wit::Timestamp,
    }
}

/// The script's rows appended straight to the output columns.
struct Columns(ColumnsBuilder);

impl RowSink for Columns {
    fn rows(&self) -> usize {
        self.0.rows()
    }

    fn value(&mut self, cell: Cell<'_>) -> Result<(), SinkFault> {
        self.0.value(cell).map_err(sink_fault)
    }

    fn end_row(&mut self, source: u32) -> Result<(), SinkFault> {
        self.0.end_row(source).map_err(sink_fault)
    }

    fn truncate(&mut self, rows: usize) {
        self.0.truncate(rows);
    }
}

fn sink_fault(e: RowError) -> SinkFault {
    match e {
        RowError::Fault { column, reason } => SinkFault {
            field: Some(column),
            reason,
        },
        // The script converts every value to its column's type, so this
        // names a bug; the record is rejected with it rather than losing
        // the batch.
        RowError::Mismatch(m) => SinkFault {
            field: None,
            reason: m,
        },
    }
}

fn not_configured() -> PluginError {
    PluginError::Internal(Failure::new(
        "not-configured",
        "the scripted plugin has no script: configure was not called",
    ))
}

/// A script mistake as the contract's failure record: its position and
/// output column as data, its message without them.
fn script_failure(e: ScriptError) -> Failure {
    let position = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let mut failure = Failure::new("script", e.message).at(position(e.line), position(e.col));
    failure.file = e.file;
    failure.output_column = e.column;
    failure
}

/// A batch the script cannot map.
fn map_failure(e: MapError) -> PluginError {
    let kind = match &e {
        MapError::UnknownResource { asked, .. } => {
            return PluginError::UnknownResource(asked.clone());
        }
        MapError::Lookup { .. } => "lookup",
        MapError::BatchTooLarge(_) => "batch-too-large",
    };
    PluginError::Internal(Failure::new(kind, e.to_string()))
}

struct Component;

impl Guest for Component {
    fn configure(config: String) -> Result<(), PluginError> {
        let script =
            Script::compile(&config).map_err(|e| PluginError::InvalidConfig(script_failure(e)))?;
        let columns = script
            .schema()
            .columns
            .iter()
            .map(|c| Column {
                name: c.name.clone(),
                ty: column_type(c.ty),
                nullable: c.nullable,
                key: c.key,
            })
            .collect();
        SCRIPT.with(|s| *s.borrow_mut() = Some((script, columns)));
        Ok(())
    }

    fn resources() -> Vec<String> {
        SCRIPT.with(|s| {
            s.borrow()
                .as_ref()
                .map(|(script, _)| vec![script.resource().to_owned()])
                .unwrap_or_default()
        })
    }

    fn schema(resource: String) -> Result<Vec<Column>, PluginError> {
        SCRIPT.with(|s| {
            let guard = s.borrow();
            let (script, columns) = guard.as_ref().ok_or_else(not_configured)?;
            if script.resource() != resource {
                return Err(PluginError::UnknownResource(resource));
            }
            Ok(columns.clone())
        })
    }

    fn map_batch(resource: String, records: Vec<String>) -> Result<BatchOutput, PluginError> {
        SCRIPT.with(|s| {
            let guard = s.borrow();
            let (script, columns) = guard.as_ref().ok_or_else(not_configured)?;
            let mut sink = Columns(ColumnsBuilder::new(columns, records.len()));
            let rejects = script
                .map_batch_into(&resource, &records, &mut HostLookup, &mut sink)
                .map_err(map_failure)?;
            Ok(sink.0.finish(
                rejects
                    .into_iter()
                    .map(|r| Reject {
                        index: r.index,
                        field: r.field,
                        reason: r.reason,
                    })
                    .collect(),
            ))
        })
    }
}

mlc_plugin_sdk::bindings::export!(Component with_types_in mlc_plugin_sdk::bindings);
