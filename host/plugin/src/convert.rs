//! Conversions between the WIT types and `mlc_common`'s, and the checks a
//! plugin's declared schema and its batch output must pass.
//!
//! A batch's output crosses the boundary column by column: one typed list
//! per column (text as one buffer with end offsets, decimals as `lo`/`hi`
//! halves of the 128-bit unscaled value at the column's scale, converted
//! exactly, never through `f64`) and the list of source records. The host
//! turns the columns back into rows.
//!
//! Output checks separate two kinds of fault. An output that does not follow
//! the declared schema at all (another number of columns, a column of
//! another type or length, offsets out of order, an index outside the
//! batch) is a plugin bug: the batch fails with
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

/// The exact decimal at the halves `lo`/`hi` of a 128-bit unscaled value.
pub fn decimal_from_halves(lo: u64, hi: i64, scale: u8) -> Decimal {
    Decimal::new((i128::from(hi) << 64) | i128::from(lo), scale)
}

/// The halves `(lo, hi)` of an exact decimal's 128-bit unscaled value.
pub fn decimal_to_halves(d: Decimal) -> (u64, i64) {
    // Truncation keeps the low 64 bits; the shift keeps the sign.
    (d.unscaled as u64, (d.unscaled >> 64) as i64)
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

fn values_kind(values: &wit::ColumnValues) -> &'static str {
    match values {
        wit::ColumnValues::Text(_) => "text",
        wit::ColumnValues::Integer(_) => "integer",
        wit::ColumnValues::Double(_) => "double",
        wit::ColumnValues::Decimal(_) => "decimal",
        wit::ColumnValues::Boolean(_) => "boolean",
        wit::ColumnValues::Date(_) => "date",
        wit::ColumnValues::Timestamp(_) => "timestamp",
    }
}

fn values_match(ty: ColumnType, values: &wit::ColumnValues) -> bool {
    matches!(
        (ty, values),
        (ColumnType::Text, wit::ColumnValues::Text(_))
            | (ColumnType::Integer, wit::ColumnValues::Integer(_))
            | (ColumnType::Double, wit::ColumnValues::Double(_))
            | (ColumnType::Decimal { .. }, wit::ColumnValues::Decimal(_))
            | (ColumnType::Boolean, wit::ColumnValues::Boolean(_))
            | (ColumnType::Date, wit::ColumnValues::Date(_))
            | (ColumnType::Timestamp, wit::ColumnValues::Timestamp(_))
    )
}

fn values_len(values: &wit::ColumnValues) -> usize {
    match values {
        wit::ColumnValues::Text(t) => t.ends.len(),
        wit::ColumnValues::Integer(v) | wit::ColumnValues::Timestamp(v) => v.len(),
        wit::ColumnValues::Double(v) => v.len(),
        wit::ColumnValues::Decimal(d) => d.lo.len().max(d.hi.len()),
        wit::ColumnValues::Boolean(v) => v.len(),
        wit::ColumnValues::Date(v) => v.len(),
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

/// Appends one column's values to the rows (`make` for a value, null where
/// `is_null` says so).
fn fill<T>(
    rows: &mut [Row],
    values: Vec<T>,
    is_null: &mut impl FnMut(usize) -> bool,
    make: impl Fn(T) -> Value,
) {
    for (r, (row, value)) in rows.iter_mut().zip(values).enumerate() {
        row.values
            .push(if is_null(r) { Value::Null } else { make(value) });
    }
}

/// The first fault found in an output row: (column index, column, reason).
type RowFault = (usize, String, String);

/// Checks a batch output against the caps and the declared schema and
/// turns its columns into rows. `records` is the batch size.
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
    let row_count = output.sources.len();
    let count = row_count.saturating_add(output.rejects.len());
    if count > limits.max_output_rows {
        return Err(PluginError::OutputTooLarge {
            plugin: plugin.clone(),
            measure: OutputMeasure::Rows,
            limit: limits.max_output_rows,
            actual: count,
        });
    }
    let mut bytes = row_count
        .saturating_mul(output.columns.len())
        .saturating_mul(VALUE_OVERHEAD);
    for column in &output.columns {
        if let wit::ColumnValues::Text(t) = &column.values {
            bytes = bytes.saturating_add(t.text.len());
        }
    }
    for reject in &output.rejects {
        bytes = bytes.saturating_add(
            VALUE_OVERHEAD + reject.reason.len() + reject.field.as_ref().map_or(0, String::len),
        );
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
    if output.columns.len() != columns.len() {
        return Err(violation(format!(
            "the output has {} columns; the schema has {}",
            output.columns.len(),
            columns.len()
        )));
    }
    if let Some((n, source)) = output
        .sources
        .iter()
        .enumerate()
        .find(|(_, s)| **s as usize >= records)
    {
        return Err(violation(format!(
            "row {n} names record {source} of a batch of {records}"
        )));
    }
    for (column, data) in columns.iter().zip(&output.columns) {
        if !values_match(column.ty, &data.values) {
            return Err(violation(format!(
                "column `{}` is declared {} but holds {} values",
                column.name,
                type_name(column.ty),
                values_kind(&data.values)
            )));
        }
        let len = values_len(&data.values);
        if len != row_count {
            return Err(violation(format!(
                "column `{}` has {len} values for {row_count} rows",
                column.name
            )));
        }
        if let wit::ColumnValues::Decimal(d) = &data.values
            && (d.lo.len() != d.hi.len() || d.scale > MAX_PRECISION)
        {
            return Err(violation(format!(
                "column `{}` holds decimals of scale {} with {} low and {} high halves",
                column.name,
                d.scale,
                d.lo.len(),
                d.hi.len()
            )));
        }
        let mut previous: Option<u32> = None;
        for &null in &data.nulls {
            if null as usize >= row_count || previous.is_some_and(|p| p >= null) {
                return Err(violation(format!(
                    "column `{}` lists null row {null} out of order or past its {row_count} rows",
                    column.name
                )));
            }
            previous = Some(null);
        }
    }

    let mut rows: Vec<Row> = output
        .sources
        .iter()
        .map(|&source| Row {
            source,
            values: Vec::with_capacity(columns.len()),
        })
        .collect();
    // The first fault of each row, by column order.
    let mut faults: Vec<Option<RowFault>> = Vec::new();
    let mut fault = |row: usize, index: usize, column: &Column, reason: String| {
        if faults.is_empty() {
            faults.resize_with(row_count, || None);
        }
        if faults[row].as_ref().is_none_or(|(i, _, _)| *i > index) {
            faults[row] = Some((index, column.name.clone(), reason));
        }
    };
    for (index, (column, data)) in columns.iter().zip(output.columns).enumerate() {
        let mut nulls = data.nulls.iter().peekable();
        let mut is_null = |r: usize| nulls.next_if(|&&n| n as usize == r).is_some();
        match data.values {
            wit::ColumnValues::Text(t) => {
                let mut start = 0usize;
                for (r, row) in rows.iter_mut().enumerate() {
                    let end = t.ends[r] as usize;
                    let Some(text) = t.text.get(start..end) else {
                        return Err(violation(format!(
                            "column `{}` row {r}: text offsets {start}..{end} are out of order, past the {} bytes of text or not on a character boundary",
                            column.name,
                            t.text.len()
                        )));
                    };
                    start = end;
                    row.values.push(if is_null(r) {
                        Value::Null
                    } else {
                        Value::Text(text.to_owned())
                    });
                }
            }
            wit::ColumnValues::Integer(v) => fill(&mut rows, v, &mut is_null, Value::Integer),
            wit::ColumnValues::Timestamp(v) => fill(&mut rows, v, &mut is_null, Value::Timestamp),
            wit::ColumnValues::Date(v) => fill(&mut rows, v, &mut is_null, Value::Date),
            wit::ColumnValues::Boolean(v) => fill(&mut rows, v, &mut is_null, Value::Boolean),
            wit::ColumnValues::Double(v) => {
                for (r, (row, f)) in rows.iter_mut().zip(v).enumerate() {
                    let value = if is_null(r) {
                        Value::Null
                    } else if f.is_finite() {
                        Value::Double(f)
                    } else {
                        fault(
                            r,
                            index,
                            column,
                            format!("`{}` is not a finite number ({f})", column.name),
                        );
                        Value::Null
                    };
                    row.values.push(value);
                }
            }
            wit::ColumnValues::Decimal(d) => {
                let ColumnType::Decimal { precision, scale } = column.ty else {
                    return Err(violation(format!(
                        "column `{}` holds decimal values",
                        column.name
                    )));
                };
                for (r, (row, (lo, hi))) in
                    rows.iter_mut().zip(d.lo.into_iter().zip(d.hi)).enumerate()
                {
                    let value = if is_null(r) {
                        Value::Null
                    } else {
                        match decimal_from_halves(lo, hi, d.scale).fit(precision, scale) {
                            Ok(fitted) => Value::Decimal(fitted),
                            Err(e) => {
                                fault(r, index, column, e.to_string());
                                Value::Null
                            }
                        }
                    };
                    row.values.push(value);
                }
            }
        }
        if !column.nullable {
            for &null in &data.nulls {
                fault(
                    null as usize,
                    index,
                    column,
                    format!(
                        "`{}` is required but the mapping gave no value",
                        column.name
                    ),
                );
            }
        }
    }

    if !faults.is_empty() {
        // A record with a faulty row is rejected (its first fault named)
        // and all its rows are dropped.
        let mut refused: HashSet<u32> = HashSet::new();
        for (row, found) in rows.iter().zip(&mut faults) {
            if let Some((_, field, reason)) = found.take()
                && refused.insert(row.source)
            {
                rejects.push(Reject {
                    index: row.source,
                    field: Some(field),
                    reason,
                });
            }
        }
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
    fn decimal_halves_round_trip_exactly() {
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
            let (lo, hi) = decimal_to_halves(d);
            assert_eq!(decimal_from_halves(lo, hi, d.scale), d, "{text}");
            assert_eq!(decimal_from_halves(lo, hi, d.scale).to_string(), text);
        }
        assert_eq!(decimal_to_halves(Decimal::new(-1, 0)), (u64::MAX, -1));
        assert_eq!(decimal_to_halves(Decimal::new(1 << 64, 3)), (0, 1));
    }

    #[test]
    fn columns_round_trip() {
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

    /// One row of `schema()`: (source, id, amount unscaled, name).
    type TestRow<'a> = (u32, Option<i64>, Option<i128>, Option<&'a str>);

    /// Columns for `schema()` (Id integer, Amount decimal at `scale`,
    /// Name text) from rows.
    fn output(scale: u8, rows: &[TestRow<'_>]) -> wit::BatchOutput {
        let nulls = |f: &dyn Fn(usize) -> bool| -> Vec<u32> {
            (0..rows.len())
                .filter(|&r| f(r))
                .map(|r| r as u32)
                .collect()
        };
        let mut text = String::new();
        let mut ends = Vec::new();
        for r in rows {
            text.push_str(r.3.unwrap_or(""));
            ends.push(text.len() as u32);
        }
        let halves: Vec<(u64, i64)> = rows
            .iter()
            .map(|r| decimal_to_halves(Decimal::new(r.2.unwrap_or(0), scale)))
            .collect();
        wit::BatchOutput {
            sources: rows.iter().map(|r| r.0).collect(),
            columns: vec![
                wit::ColumnData {
                    nulls: nulls(&|r| rows[r].1.is_none()),
                    values: wit::ColumnValues::Integer(
                        rows.iter().map(|r| r.1.unwrap_or(0)).collect(),
                    ),
                },
                wit::ColumnData {
                    nulls: nulls(&|r| rows[r].2.is_none()),
                    values: wit::ColumnValues::Decimal(wit::DecimalValues {
                        scale,
                        lo: halves.iter().map(|h| h.0).collect(),
                        hi: halves.iter().map(|h| h.1).collect(),
                    }),
                },
                wit::ColumnData {
                    nulls: nulls(&|r| rows[r].3.is_none()),
                    values: wit::ColumnValues::Text(wit::TextValues { text, ends }),
                },
            ],
            rejects: vec![],
        }
    }

    fn convert(records: usize, output: wit::BatchOutput) -> Result<MappedBatch, PluginError> {
        convert_within(&PluginLimits::default(), records, output)
    }

    fn convert_within(
        limits: &PluginLimits,
        records: usize,
        output: wit::BatchOutput,
    ) -> Result<MappedBatch, PluginError> {
        batch_from_wit(&plugin(), "invoices", &schema(), records, limits, output)
    }

    #[test]
    fn output_is_rescaled_and_record_faults_become_rejects() {
        let mut out = output(
            1,
            &[
                (0, Some(1), Some(15), Some("a")),
                // does not fit decimal(6,2): record 1 is rejected
                (1, Some(2), Some(12_345_678), Some("b")),
                // a required value missing: record 2 (both rows) rejected
                (2, Some(3), None, Some("c")),
                (2, None, None, Some("d")),
                (3, Some(4), None, Some("")),
            ],
        );
        out.rejects.push(wit::Reject {
            index: 4,
            field: Some("Id".into()),
            reason: "the plugin's own".into(),
        });
        let batch = convert(5, out).unwrap();
        assert_eq!(
            batch.rows,
            vec![
                Row {
                    source: 0,
                    values: vec![
                        Value::Integer(1),
                        Value::Decimal(Decimal::new(150, 2)),
                        Value::Text("a".into())
                    ],
                },
                Row {
                    source: 3,
                    values: vec![Value::Integer(4), Value::Null, Value::Text(String::new())],
                },
            ]
        );
        let rejects: Vec<(u32, Option<&str>)> = batch
            .rejects
            .iter()
            .map(|r| (r.index, r.field.as_deref()))
            .collect();
        assert_eq!(
            rejects,
            vec![(1, Some("Amount")), (2, Some("Id")), (4, Some("Id"))]
        );
        assert!(
            batch.rejects[0]
                .reason
                .contains("does not fit NUMERIC(6,2)"),
            "{:?}",
            batch.rejects[0]
        );
        assert!(
            batch.rejects[1].reason.contains("`Id` is required"),
            "{:?}",
            batch.rejects[1]
        );
    }

    #[test]
    fn wide_decimals_cross_exactly() {
        let schema = schema_from_wit(
            &plugin(),
            "gl",
            vec![col(
                "Big",
                wit::ColumnType::Decimal(wit::DecimalType {
                    precision: 38,
                    scale: 9,
                }),
                false,
            )],
        )
        .unwrap();
        let values = [
            "-12345678901234567890123456789.123456789",
            "99999999999999999999999999999.999999999",
            "0.000000001",
        ];
        let halves: Vec<(u64, i64)> = values
            .iter()
            .map(|v| decimal_to_halves(Decimal::parse(v).unwrap().rescale(9).unwrap()))
            .collect();
        let out = wit::BatchOutput {
            sources: vec![0, 1, 2],
            columns: vec![wit::ColumnData {
                nulls: vec![],
                values: wit::ColumnValues::Decimal(wit::DecimalValues {
                    scale: 9,
                    lo: halves.iter().map(|h| h.0).collect(),
                    hi: halves.iter().map(|h| h.1).collect(),
                }),
            }],
            rejects: vec![],
        };
        let batch =
            batch_from_wit(&plugin(), "gl", &schema, 3, &PluginLimits::default(), out).unwrap();
        let got: Vec<String> = batch
            .rows
            .iter()
            .map(|r| match &r.values[0] {
                Value::Decimal(d) => d.to_string(),
                other => panic!("not a decimal: {other:?}"),
            })
            .collect();
        assert_eq!(got, values);
    }

    #[test]
    fn structural_faults_fail_the_batch() {
        let good = || output(2, &[(0, Some(1), None, Some("ab"))]);
        let mut cases: Vec<(wit::BatchOutput, &str)> = Vec::new();
        let mut short = good();
        short.columns.pop();
        cases.push((short, "the output has 2 columns; the schema has 3"));
        let mut mistyped = good();
        mistyped.columns[0].values = wit::ColumnValues::Text(wit::TextValues {
            text: "1".into(),
            ends: vec![1],
        });
        cases.push((
            mistyped,
            "column `Id` is declared integer but holds text values",
        ));
        let mut far = good();
        far.sources = vec![9];
        cases.push((far, "row 0 names record 9 of a batch of 1"));
        let mut long = good();
        long.columns[0].values = wit::ColumnValues::Integer(vec![1, 2]);
        cases.push((long, "column `Id` has 2 values for 1 rows"));
        let mut halves = good();
        halves.columns[1].values = wit::ColumnValues::Decimal(wit::DecimalValues {
            scale: 2,
            lo: vec![1],
            hi: vec![],
        });
        cases.push((halves, "with 1 low and 0 high halves"));
        let mut past = good();
        past.columns[2].values = wit::ColumnValues::Text(wit::TextValues {
            text: "ab".into(),
            ends: vec![3],
        });
        cases.push((past, "text offsets 0..3 are out of order, past the 2 bytes"));
        let mut split = good();
        split.columns[2].values = wit::ColumnValues::Text(wit::TextValues {
            text: "é".into(),
            ends: vec![1],
        });
        cases.push((split, "not on a character boundary"));
        let mut nulls = good();
        nulls.columns[1].nulls = vec![0, 0];
        cases.push((nulls, "lists null row 0 out of order"));
        let mut outside = good();
        outside.columns[1].nulls = vec![1];
        cases.push((outside, "lists null row 1 out of order or past its 1 rows"));
        for (bad, expected) in cases {
            let err = convert(1, bad).unwrap_err();
            assert!(matches!(err, PluginError::SchemaViolation { .. }), "{err}");
            assert!(
                err.to_string().contains(expected),
                "{expected:?} not in: {err}"
            );
        }
        assert_eq!(convert(1, good()).unwrap().rows.len(), 1);
    }

    #[test]
    fn output_caps() {
        let text = "x".repeat(100);
        let rows: Vec<TestRow<'_>> = (0..10)
            .map(|i| (0, Some(i), None, Some(text.as_str())))
            .collect();
        let rows_cap = PluginLimits {
            max_output_rows: 9,
            ..PluginLimits::default()
        };
        let err = convert_within(&rows_cap, 1, output(2, &rows)).unwrap_err();
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
        let err = convert_within(&bytes_cap, 1, output(2, &rows)).unwrap_err();
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
