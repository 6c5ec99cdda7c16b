//! Conversions between the WIT types and `mlc_common`'s, and the checks a
//! plugin's declared schema and its batch output must pass.
//!
//! Decimals cross as `lo`/`hi`/`scale` — the 128-bit two's-complement
//! unscaled value split into 64-bit halves — and convert exactly in both
//! directions; nothing goes through `f64`.
//!
//! Output checks separate two kinds of fault. A row that does not follow the
//! declared schema at all (wrong number of values, a value of another type,
//! an index outside the batch) is a plugin bug: the batch fails with
//! [`PluginError::SchemaViolation`]. A value of the right type that the
//! column cannot hold (a null in a non-nullable column, a decimal that does
//! not fit the column's precision and scale) is a fault of that record: the
//! record is rejected with the column named, its rows are dropped, and the
//! rest of the batch maps normally.

use std::collections::HashSet;

use mlc_common::decimal::MAX_PRECISION;
use mlc_common::{Column, ColumnType, Decimal, MappedBatch, Reject, Row, Schema, Value};

use crate::bindings::types as wit;
use crate::error::{OutputMeasure, PluginError, PluginRef};
use crate::limits::PluginLimits;

/// A WIT decimal as an exact `mlc_common::Decimal`.
pub fn decimal_from_wit(d: wit::Decimal) -> Decimal {
    let unscaled = (i128::from(d.hi) << 64) | i128::from(d.lo);
    Decimal::new(unscaled, d.scale)
}

/// An exact `mlc_common::Decimal` as a WIT decimal.
pub fn decimal_to_wit(d: Decimal) -> wit::Decimal {
    wit::Decimal {
        // Truncation keeps the low 64 bits; the shift keeps the sign.
        lo: d.unscaled as u64,
        hi: (d.unscaled >> 64) as i64,
        scale: d.scale,
    }
}

/// A WIT column type as an `mlc_common` one.
pub fn column_type_from_wit(ty: wit::ColumnType) -> ColumnType {
    match ty {
        wit::ColumnType::Text => ColumnType::Text,
        wit::ColumnType::Integer => ColumnType::Integer,
        wit::ColumnType::Double => ColumnType::Double,
        wit::ColumnType::Decimal(t) => ColumnType::Decimal {
            precision: t.precision,
            scale: t.scale,
        },
        wit::ColumnType::Boolean => ColumnType::Boolean,
        wit::ColumnType::Date => ColumnType::Date,
        wit::ColumnType::Timestamp => ColumnType::Timestamp,
    }
}

/// An `mlc_common` column type as a WIT one.
pub fn column_type_to_wit(ty: ColumnType) -> wit::ColumnType {
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

/// A WIT column as an `mlc_common` one.
pub fn column_from_wit(c: wit::Column) -> Column {
    Column {
        name: c.name,
        ty: column_type_from_wit(c.ty),
        nullable: c.nullable,
        key: c.key,
    }
}

/// An `mlc_common` column as a WIT one.
pub fn column_to_wit(c: &Column) -> wit::Column {
    wit::Column {
        name: c.name.clone(),
        ty: column_type_to_wit(c.ty),
        nullable: c.nullable,
        key: c.key,
    }
}

/// A WIT value as an `mlc_common` one.
pub fn value_from_wit(v: wit::Value) -> Value {
    match v {
        wit::Value::Null => Value::Null,
        wit::Value::Text(s) => Value::Text(s),
        wit::Value::Integer(i) => Value::Integer(i),
        wit::Value::Double(f) => Value::Double(f),
        wit::Value::Decimal(d) => Value::Decimal(decimal_from_wit(d)),
        wit::Value::Boolean(b) => Value::Boolean(b),
        wit::Value::Date(d) => Value::Date(d),
        wit::Value::Timestamp(t) => Value::Timestamp(t),
    }
}

/// An `mlc_common` value as a WIT one.
pub fn value_to_wit(v: &Value) -> wit::Value {
    match v {
        Value::Null => wit::Value::Null,
        Value::Text(s) => wit::Value::Text(s.clone()),
        Value::Integer(i) => wit::Value::Integer(*i),
        Value::Double(f) => wit::Value::Double(*f),
        Value::Decimal(d) => wit::Value::Decimal(decimal_to_wit(*d)),
        Value::Boolean(b) => wit::Value::Boolean(*b),
        Value::Date(d) => wit::Value::Date(*d),
        Value::Timestamp(t) => wit::Value::Timestamp(*t),
    }
}

/// Converts and checks a declared schema: at least one column, unique
/// non-empty names, decimal precision 1..=38 with scale <= precision.
pub(crate) fn schema_from_wit(
    plugin: &PluginRef,
    resource: &str,
    columns: Vec<wit::Column>,
) -> Result<Schema, PluginError> {
    let invalid = |detail: String| PluginError::InvalidSchema {
        plugin: plugin.clone(),
        resource: resource.to_owned(),
        detail,
    };
    if columns.is_empty() {
        return Err(invalid("no columns".into()));
    }
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(columns.len());
    for column in columns {
        let column = column_from_wit(column);
        if column.name.trim().is_empty() {
            return Err(invalid("a column has an empty name".into()));
        }
        if !names.insert(column.name.clone()) {
            return Err(invalid(format!("column `{}` appears twice", column.name)));
        }
        if let ColumnType::Decimal { precision, scale } = column.ty
            && (precision == 0 || precision > MAX_PRECISION || scale > precision)
        {
            return Err(invalid(format!(
                "column `{}` is decimal({precision},{scale}): precision must be 1..=38 and scale <= precision",
                column.name
            )));
        }
        out.push(column);
    }
    Ok(Schema { columns: out })
}

/// Bytes counted per value by the output cap, besides text bytes.
const VALUE_OVERHEAD: usize = 16;

fn value_matches(ty: ColumnType, value: &wit::Value) -> bool {
    matches!(
        (ty, value),
        (_, wit::Value::Null)
            | (ColumnType::Text, wit::Value::Text(_))
            | (ColumnType::Integer, wit::Value::Integer(_))
            | (ColumnType::Double, wit::Value::Double(_))
            | (ColumnType::Decimal { .. }, wit::Value::Decimal(_))
            | (ColumnType::Boolean, wit::Value::Boolean(_))
            | (ColumnType::Date, wit::Value::Date(_))
            | (ColumnType::Timestamp, wit::Value::Timestamp(_))
    )
}

fn wit_kind(value: &wit::Value) -> &'static str {
    match value {
        wit::Value::Null => "null",
        wit::Value::Text(_) => "text",
        wit::Value::Integer(_) => "integer",
        wit::Value::Double(_) => "double",
        wit::Value::Decimal(_) => "decimal",
        wit::Value::Boolean(_) => "boolean",
        wit::Value::Date(_) => "date",
        wit::Value::Timestamp(_) => "timestamp",
    }
}

fn type_name(ty: ColumnType) -> String {
    match ty {
        ColumnType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
        ColumnType::Text => "text".into(),
        ColumnType::Integer => "integer".into(),
        ColumnType::Double => "double".into(),
        ColumnType::Boolean => "boolean".into(),
        ColumnType::Date => "date".into(),
        ColumnType::Timestamp => "timestamp".into(),
    }
}

/// Checks a batch output against the caps and the declared schema and
/// converts it. `records` is the batch size.
pub(crate) fn batch_from_wit(
    plugin: &PluginRef,
    resource: &str,
    schema: &Schema,
    records: usize,
    limits: &PluginLimits,
    output: wit::BatchOutput,
) -> Result<MappedBatch, PluginError> {
    let violation = |detail: String| PluginError::SchemaViolation {
        plugin: plugin.clone(),
        resource: resource.to_owned(),
        detail,
    };
    let count = output.rows.len() + output.rejects.len();
    if count > limits.max_output_rows {
        return Err(PluginError::OutputTooLarge {
            plugin: plugin.clone(),
            measure: OutputMeasure::Rows,
            limit: limits.max_output_rows,
            actual: count,
        });
    }
    let mut bytes = 0usize;
    for row in &output.rows {
        for value in &row.values {
            bytes += VALUE_OVERHEAD;
            if let wit::Value::Text(s) = value {
                bytes += s.len();
            }
        }
    }
    for reject in &output.rejects {
        bytes +=
            VALUE_OVERHEAD + reject.reason.len() + reject.field.as_ref().map_or(0, String::len);
    }
    if bytes > limits.max_output_bytes {
        return Err(PluginError::OutputTooLarge {
            plugin: plugin.clone(),
            measure: OutputMeasure::Bytes,
            limit: limits.max_output_bytes,
            actual: bytes,
        });
    }

    let mut rejects = Vec::with_capacity(output.rejects.len());
    for reject in output.rejects {
        if reject.index as usize >= records {
            return Err(violation(format!(
                "a reject names record {} of a batch of {records}",
                reject.index
            )));
        }
        rejects.push(Reject {
            index: reject.index,
            field: reject.field,
            reason: reject.reason,
        });
    }

    let columns = &schema.columns;
    let mut rows = Vec::with_capacity(output.rows.len());
    // Records the host rejected because a value does not fit its column.
    let mut refused: Vec<u32> = Vec::new();
    for (n, row) in output.rows.into_iter().enumerate() {
        if row.source as usize >= records {
            return Err(violation(format!(
                "row {n} names record {} of a batch of {records}",
                row.source
            )));
        }
        if row.values.len() != columns.len() {
            return Err(violation(format!(
                "row {n} (record {}) has {} values; the schema has {} columns",
                row.source,
                row.values.len(),
                columns.len()
            )));
        }
        let mut values = Vec::with_capacity(columns.len());
        let mut fault: Option<(String, String)> = None;
        for (column, value) in columns.iter().zip(row.values) {
            if !value_matches(column.ty, &value) {
                return Err(violation(format!(
                    "row {n} (record {}) column `{}` is declared {} but holds a {} value",
                    row.source,
                    column.name,
                    type_name(column.ty),
                    wit_kind(&value)
                )));
            }
            let value = value_from_wit(value);
            let value = match (column.ty, value) {
                (_, Value::Null) if !column.nullable => {
                    fault.get_or_insert((
                        column.name.clone(),
                        format!(
                            "`{}` is required but the mapping gave no value",
                            column.name
                        ),
                    ));
                    Value::Null
                }
                (ColumnType::Decimal { precision, scale }, Value::Decimal(d)) => {
                    if d.scale > MAX_PRECISION {
                        return Err(violation(format!(
                            "row {n} (record {}) column `{}` holds a decimal of scale {}",
                            row.source, column.name, d.scale
                        )));
                    }
                    match d.fit(precision, scale) {
                        Ok(fitted) => Value::Decimal(fitted),
                        Err(e) => {
                            fault.get_or_insert((column.name.clone(), e.to_string()));
                            Value::Null
                        }
                    }
                }
                (ColumnType::Double, Value::Double(f)) if !f.is_finite() => {
                    fault.get_or_insert((
                        column.name.clone(),
                        format!("`{}` is not a finite number ({f})", column.name),
                    ));
                    Value::Null
                }
                (_, value) => value,
            };
            values.push(value);
        }
        match fault {
            Some((field, reason)) => {
                if !refused.contains(&row.source) {
                    refused.push(row.source);
                    rejects.push(Reject {
                        index: row.source,
                        field: Some(field),
                        reason,
                    });
                }
            }
            None => rows.push(Row {
                source: row.source,
                values,
            }),
        }
    }
    if !refused.is_empty() {
        rows.retain(|row| !refused.contains(&row.source));
    }
    rejects.sort_by_key(|r| r.index);
    Ok(MappedBatch { rows, rejects })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::VersionId;

    fn plugin() -> PluginRef {
        PluginRef {
            tenant: "acme".into(),
            plugin: "inv".into(),
            version: VersionId::from_hex("abcdabcdabcdabcd"),
        }
    }

    #[test]
    fn decimals_round_trip_exactly() {
        for text in [
            "12345678901234567890.123456789",
            "-12345678901234567890.123456789",
            "0",
            "-0.01",
            "99999999999999999999999999999999999999",
            "-99999999999999999999999999999999999999",
            "18446744073709551616",
            "-18446744073709551616",
            "18446744073709551615",
            "-1",
        ] {
            let d = Decimal::parse(text).unwrap();
            let w = decimal_to_wit(d);
            assert_eq!(decimal_from_wit(w), d, "{text}");
            assert_eq!(decimal_from_wit(w).to_string(), text, "{text}");
        }
        let minus_one = decimal_to_wit(Decimal::new(-1, 0));
        assert_eq!((minus_one.lo, minus_one.hi), (u64::MAX, -1));
        let two_64 = decimal_to_wit(Decimal::new(1 << 64, 3));
        assert_eq!((two_64.lo, two_64.hi, two_64.scale), (0, 1, 3));
    }

    #[test]
    fn values_and_columns_round_trip() {
        let values = [
            Value::Null,
            Value::Text("x".into()),
            Value::Integer(-7),
            Value::Double(1.5),
            Value::Decimal(Decimal::new(-125, 2)),
            Value::Boolean(true),
            Value::Date(19_000),
            Value::Timestamp(1_700_000_000_000_000),
        ];
        for v in values {
            assert_eq!(value_from_wit(value_to_wit(&v)), v);
        }
        let column = Column {
            name: "Amount".into(),
            ty: ColumnType::Decimal {
                precision: 18,
                scale: 2,
            },
            nullable: true,
            key: false,
        };
        assert_eq!(column_from_wit(column_to_wit(&column)), column);
    }

    fn col(name: &str, ty: wit::ColumnType, nullable: bool) -> wit::Column {
        wit::Column {
            name: name.into(),
            ty,
            nullable,
            key: false,
        }
    }

    #[test]
    fn schema_checks() {
        let p = plugin();
        let ok = schema_from_wit(
            &p,
            "invoices",
            vec![
                col("Id", wit::ColumnType::Integer, false),
                col(
                    "Amount",
                    wit::ColumnType::Decimal(wit::DecimalType {
                        precision: 18,
                        scale: 2,
                    }),
                    true,
                ),
            ],
        )
        .unwrap();
        assert_eq!(ok.columns.len(), 2);
        for (columns, expected) in [
            (vec![], "no columns"),
            (
                vec![
                    col("Id", wit::ColumnType::Integer, false),
                    col("Id", wit::ColumnType::Text, false),
                ],
                "column `Id` appears twice",
            ),
            (
                vec![col(
                    "Amount",
                    wit::ColumnType::Decimal(wit::DecimalType {
                        precision: 2,
                        scale: 3,
                    }),
                    false,
                )],
                "precision must be 1..=38",
            ),
            (vec![col(" ", wit::ColumnType::Text, false)], "empty name"),
        ] {
            let err = schema_from_wit(&p, "invoices", columns).unwrap_err();
            assert!(err.to_string().contains(expected), "{err}");
        }
    }

    fn schema() -> Schema {
        schema_from_wit(
            &plugin(),
            "invoices",
            vec![
                col("Id", wit::ColumnType::Integer, false),
                col(
                    "Amount",
                    wit::ColumnType::Decimal(wit::DecimalType {
                        precision: 6,
                        scale: 2,
                    }),
                    true,
                ),
                col("Name", wit::ColumnType::Text, false),
            ],
        )
        .unwrap()
    }

    fn row(source: u32, values: Vec<wit::Value>) -> wit::Row {
        wit::Row { source, values }
    }

    fn dec(unscaled: i128, scale: u8) -> wit::Value {
        wit::Value::Decimal(decimal_to_wit(Decimal::new(unscaled, scale)))
    }

    #[test]
    fn output_is_rescaled_and_record_faults_become_rejects() {
        let output = wit::BatchOutput {
            rows: vec![
                row(
                    0,
                    vec![
                        wit::Value::Integer(1),
                        dec(15, 1),
                        wit::Value::Text("a".into()),
                    ],
                ),
                // does not fit decimal(6,2): record 1 is rejected
                row(
                    1,
                    vec![
                        wit::Value::Integer(2),
                        dec(123_456_789, 2),
                        wit::Value::Text("b".into()),
                    ],
                ),
                // a second row of record 1 is dropped with it
                row(
                    1,
                    vec![
                        wit::Value::Integer(3),
                        wit::Value::Null,
                        wit::Value::Text("c".into()),
                    ],
                ),
                // null in a required column
                row(
                    2,
                    vec![wit::Value::Integer(4), wit::Value::Null, wit::Value::Null],
                ),
                row(
                    3,
                    vec![
                        wit::Value::Integer(5),
                        wit::Value::Null,
                        wit::Value::Text("e".into()),
                    ],
                ),
            ],
            rejects: vec![wit::Reject {
                index: 4,
                field: Some("InvoiceDate".into()),
                reason: "not a date".into(),
            }],
        };
        let batch = batch_from_wit(
            &plugin(),
            "invoices",
            &schema(),
            5,
            &PluginLimits::default(),
            output,
        )
        .unwrap();
        let sources: Vec<u32> = batch.rows.iter().map(|r| r.source).collect();
        assert_eq!(sources, vec![0, 3]);
        assert_eq!(
            batch.rows[0].values[1],
            Value::Decimal(Decimal::new(150, 2))
        );
        let rejects: Vec<(u32, Option<&str>)> = batch
            .rejects
            .iter()
            .map(|r| (r.index, r.field.as_deref()))
            .collect();
        assert_eq!(
            rejects,
            vec![
                (1, Some("Amount")),
                (2, Some("Name")),
                (4, Some("InvoiceDate"))
            ]
        );
        assert!(
            batch.rejects[0]
                .reason
                .contains("does not fit NUMERIC(6,2)"),
            "{:?}",
            batch.rejects[0]
        );
    }

    #[test]
    fn structural_faults_fail_the_batch() {
        let cases = [
            (
                row(0, vec![wit::Value::Integer(1)]),
                "row 0 (record 0) has 1 values; the schema has 3 columns",
            ),
            (
                row(
                    0,
                    vec![
                        wit::Value::Text("1".into()),
                        wit::Value::Null,
                        wit::Value::Text("a".into()),
                    ],
                ),
                "column `Id` is declared integer but holds a text value",
            ),
            (
                row(
                    9,
                    vec![
                        wit::Value::Integer(1),
                        wit::Value::Null,
                        wit::Value::Text("a".into()),
                    ],
                ),
                "row 0 names record 9 of a batch of 1",
            ),
        ];
        for (bad, expected) in cases {
            let output = wit::BatchOutput {
                rows: vec![bad],
                rejects: vec![],
            };
            let err = batch_from_wit(
                &plugin(),
                "invoices",
                &schema(),
                1,
                &PluginLimits::default(),
                output,
            )
            .unwrap_err();
            assert!(matches!(err, PluginError::SchemaViolation { .. }), "{err}");
            assert!(err.to_string().contains(expected), "{err}");
        }
    }

    #[test]
    fn output_caps() {
        let output = || wit::BatchOutput {
            rows: (0..10)
                .map(|i| {
                    row(
                        0,
                        vec![
                            wit::Value::Integer(i),
                            wit::Value::Null,
                            wit::Value::Text("x".repeat(100)),
                        ],
                    )
                })
                .collect(),
            rejects: vec![],
        };
        let rows_cap = PluginLimits {
            max_output_rows: 9,
            ..PluginLimits::default()
        };
        let err =
            batch_from_wit(&plugin(), "invoices", &schema(), 1, &rows_cap, output()).unwrap_err();
        assert!(
            matches!(
                err,
                PluginError::OutputTooLarge {
                    measure: OutputMeasure::Rows,
                    limit: 9,
                    actual: 10,
                    ..
                }
            ),
            "{err}"
        );
        let bytes_cap = PluginLimits {
            max_output_bytes: 1000,
            ..PluginLimits::default()
        };
        let err =
            batch_from_wit(&plugin(), "invoices", &schema(), 1, &bytes_cap, output()).unwrap_err();
        assert!(
            matches!(
                err,
                PluginError::OutputTooLarge {
                    measure: OutputMeasure::Bytes,
                    actual: 1480,
                    ..
                }
            ),
            "{err}"
        );
    }
}
