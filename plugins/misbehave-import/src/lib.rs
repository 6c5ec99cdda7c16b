//! A test-only plugin that reads a file: its component imports
//! `wasi:filesystem`, which the host refuses at load, naming the import.
//! (Kept apart from `misbehave`, whose other modes must load.)

use mlc_plugin_sdk::column::{self, ColumnExt};
use mlc_plugin_sdk::{Column, MapError, Mapper, Object, PluginError, Rows, Value};

struct ReadsFiles;

impl Mapper for ReadsFiles {
    fn configure(_config: &str) -> Result<Self, PluginError> {
        Ok(Self)
    }

    fn resources(&self) -> Vec<String> {
        vec!["items".into()]
    }

    fn schema(&self, resource: &str) -> Option<Vec<Column>> {
        (resource == "items").then(|| {
            vec![
                column::integer("Index").key(),
                column::text("Secret").nullable(),
            ]
        })
    }

    fn map(&self, _resource: &str, rec: &Object<'_>, rows: &mut Rows) -> Result<(), MapError> {
        let secret = std::fs::read_to_string("/etc/passwd").ok();
        rows.push(vec![
            rec.integer("id")?,
            secret.map_or(Value::Null, Value::Text),
        ]);
        Ok(())
    }
}

mlc_plugin_sdk::export_mapper!(ReadsFiles);
