//! Runs a mapping script natively over a sample file and prints the result
//! as the golden JSON `{"schema":[...],"rows":[...],"rejects":[...]}`.
//!
//! ```text
//! cargo run -p mlc-scripted-core --example map -- \
//!     mappings/demo/invoices.toml mappings/demo/samples/invoices.json mappings/demo/reference
//! ```
//!
//! Useful to try a script before loading it; the e2e tests check that the
//! sandboxed component gives exactly the same output.

use std::path::Path;

use anyhow::{Context, bail};
use mlc_common::MappedBatch;
use mlc_scripted_core::{MemoryReference, Script};
use serde_json::{Map, Value as Json, json};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [script_path, sample_path, rest @ ..] = args.as_slice() else {
        bail!("usage: map SCRIPT.toml SAMPLE.json [REFERENCE_DIR]");
    };
    let text = std::fs::read_to_string(script_path).with_context(|| script_path.clone())?;
    let script = Script::compile(&text)
        .map_err(|e| anyhow::anyhow!("{}", e.with_file(script_path.as_str())))?;
    let sample = std::fs::read_to_string(sample_path).with_context(|| sample_path.clone())?;
    let items: Vec<Box<serde_json::value::RawValue>> = serde_json::from_str(&sample)
        .with_context(|| format!("{sample_path}: not a JSON array"))?;
    let records: Vec<&str> = items.iter().map(|r| r.get()).collect();
    let mut reference = MemoryReference::default();
    if let Some(dir) = rest.first() {
        load_reference(Path::new(dir), &mut reference)?;
    }
    let batch = script.map_batch(script.resource(), &records, &mut reference)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&golden(&script, &batch))?
    );
    Ok(())
}

fn load_reference(dir: &Path, reference: &mut MemoryReference) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let dataset = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
        reference.add_json(dataset, &text)?;
    }
    Ok(())
}

/// The golden form of a mapped batch, the same as `ml-connector plugin test
/// --output json`: rows as `{column: plain JSON}` (decimals as exact
/// strings, dates and timestamps as ISO text).
fn golden(script: &Script, batch: &MappedBatch) -> Json {
    let columns = &script.schema().columns;
    let rows: Vec<Json> = batch
        .rows
        .iter()
        .map(|row| {
            let values: Map<String, Json> = columns
                .iter()
                .zip(&row.values)
                .map(|(c, v)| {
                    (
                        c.name.clone(),
                        serde_json::to_value(v.to_plain_json()).unwrap_or(Json::Null),
                    )
                })
                .collect();
            Json::Object(values)
        })
        .collect();
    json!({
        "schema": columns,
        "rows": rows,
        "rejects": batch.rejects,
    })
}
