//! The JSON form of a mapped batch: what `ml-connector plugin test --output
//! json` prints and what the golden files (`mappings/<tenant>/golden/`)
//! hold, so tools and tests compare against one format.

use mlc_common::row::serde_json_lite::Json as Plain;
use mlc_common::{MappedBatch, Schema, Value};
use serde_json::{Map, Value as Json, json};

/// `{"schema": [...], "rows": [{column: cell}...], "rejects": [...]}`.
///
/// Rows are in batch order, each an object from column name to its plain
/// JSON value ([`Value::to_plain_json`]): decimals as exact text, dates as
/// `YYYY-MM-DD`, timestamps as UTC text, a non-finite double as `null`.
/// Rejects keep their record index, field and reason.
pub fn batch_json(schema: &Schema, batch: &MappedBatch) -> Json {
    let rows: Vec<Json> = batch
        .rows
        .iter()
        .map(|row| {
            let cells: Map<String, Json> = schema
                .columns
                .iter()
                .zip(&row.values)
                .map(|(column, value)| (column.name.clone(), cell_json(value)))
                .collect();
            Json::Object(cells)
        })
        .collect();
    json!({ "schema": schema, "rows": rows, "rejects": batch.rejects })
}

/// One cell in its plain JSON form.
pub fn cell_json(value: &Value) -> Json {
    match value.to_plain_json() {
        Plain::Null => Json::Null,
        Plain::String(s) => Json::String(s),
        Plain::Int(i) => Json::from(i),
        Plain::Float(f) => serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number),
        Plain::Bool(b) => Json::Bool(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlc_common::{Column, ColumnType, Decimal, Reject, Row};

    #[test]
    fn batch_json_has_schema_rows_and_rejects() {
        let column = |name: &str, ty| Column {
            name: name.into(),
            ty,
            nullable: true,
            key: false,
        };
        let schema = Schema {
            columns: vec![
                column(
                    "Amount",
                    ColumnType::Decimal {
                        precision: 38,
                        scale: 9,
                    },
                ),
                column("Id", ColumnType::Integer),
                column("Rate", ColumnType::Double),
                column("Paid", ColumnType::Boolean),
                column("Note", ColumnType::Text),
            ],
        };
        let batch = MappedBatch {
            rows: vec![Row {
                source: 0,
                values: vec![
                    Value::Decimal(Decimal::parse("12345678901234567890.123456789").unwrap()),
                    Value::Integer(300100412233001),
                    Value::Double(f64::NAN),
                    Value::Boolean(true),
                    Value::Null,
                ],
            }],
            rejects: vec![Reject {
                index: 1,
                field: Some("Amount".into()),
                reason: "bad".into(),
            }],
        };
        let expected = json!({
            "schema": [
                {"name": "Amount", "type": "decimal", "precision": 38, "scale": 9, "nullable": true, "key": false},
                {"name": "Id", "type": "integer", "nullable": true, "key": false},
                {"name": "Rate", "type": "double", "nullable": true, "key": false},
                {"name": "Paid", "type": "boolean", "nullable": true, "key": false},
                {"name": "Note", "type": "text", "nullable": true, "key": false},
            ],
            "rows": [{
                "Amount": "12345678901234567890.123456789",
                "Id": 300100412233001_i64,
                "Rate": null,
                "Paid": true,
                "Note": null,
            }],
            "rejects": [{"index": 1, "field": "Amount", "reason": "bad"}],
        });
        let actual = batch_json(&schema, &batch);
        assert_eq!(
            actual,
            expected,
            "got {}",
            serde_json::to_string_pretty(&actual).unwrap()
        );
        // Column order is kept (serde_json's preserve_order).
        let names: Vec<&String> = actual["rows"][0].as_object().unwrap().keys().collect();
        assert_eq!(names, ["Amount", "Id", "Rate", "Paid", "Note"]);
    }

    #[test]
    fn dates_and_timestamps_are_iso_text() {
        let date = mlc_common::time::parse_date("2025-03-31").unwrap();
        assert_eq!(cell_json(&Value::Date(date)), json!("2025-03-31"));
        let ts = mlc_common::time::parse_timestamp("2025-03-31T10:15:00+02:00").unwrap();
        assert_eq!(
            cell_json(&Value::Timestamp(ts)),
            json!("2025-03-31T08:15:00.000+00:00")
        );
    }
}
