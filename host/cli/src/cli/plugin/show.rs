//! How `plugin check` and `plugin test` show a component: its compile
//! source, schemas and mapped rows as text tables, or as JSON.

use mlc_common::{MappedBatch, Schema, Value};
use mlc_plugin::PluginInfo;
use serde_json::json;

pub(super) fn describe_compile(info: &PluginInfo) -> String {
    match info.compile {
        mlc_plugin::CompileSource::Compiled { took } => {
            format!("compiled in {} ms", took.as_millis())
        }
        mlc_plugin::CompileSource::DiskCache { took } => {
            format!(
                "loaded from the compile cache in {:.1} ms",
                took.as_secs_f64() * 1000.0
            )
        }
        mlc_plugin::CompileSource::Memory => "shared with a loaded version".into(),
    }
}

pub(super) fn type_name(ty: &mlc_common::ColumnType) -> String {
    match ty {
        mlc_common::ColumnType::Decimal { precision, scale } => {
            format!("decimal({precision},{scale})")
        }
        other => format!("{other:?}").to_lowercase(),
    }
}

pub(super) fn print_schema(schema: &Schema) {
    let rows: Vec<Vec<String>> = schema
        .columns
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                type_name(&c.ty),
                if c.nullable { "yes" } else { "no" }.into(),
                if c.key { "key" } else { "" }.into(),
            ]
        })
        .collect();
    print_table(&["column", "type", "nullable", "key"], &rows);
}

pub(super) fn info_json(info: &PluginInfo) -> serde_json::Value {
    json!({
        "world": mlc_plugin::WORLD,
        "version": info.version,
        "wasm_sha256": info.wasm_sha256,
        "imports": info.imports,
        "resources": info.resources,
        "schemas": info.schemas,
        "compile": info.compile,
    })
}

pub(super) fn cell(value: &Value) -> String {
    match mlc_plugin::output::cell_json(value) {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

pub(super) fn print_batch(schema: &Schema, batch: &MappedBatch, records: usize) {
    let header: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    let rows: Vec<Vec<String>> = batch
        .rows
        .iter()
        .map(|r| r.values.iter().map(cell).collect())
        .collect();
    print_table(&header, &rows);
    say!();
    say!(
        "{records} records: {} rows, {} rejected",
        batch.rows.len(),
        batch.rejects.len()
    );
    for reject in &batch.rejects {
        match &reject.field {
            Some(field) => say!("  record {}: {field}: {}", reject.index, reject.reason),
            None => say!("  record {}: {}", reject.index, reject.reason),
        }
    }
}

/// Longest cell shown in text tables.
const MAX_CELL: usize = 40;

pub(super) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let clip = |s: &str| -> String {
        if s.chars().count() > MAX_CELL {
            let mut out: String = s.chars().take(MAX_CELL - 1).collect();
            out.push('…');
            out
        } else {
            s.to_owned()
        }
    };
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| clip(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        say!("{}", text.join("  ").trim_end());
    };
    line(header.to_vec());
    line(
        widths
            .iter()
            .map(|w| "─".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    );
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}
