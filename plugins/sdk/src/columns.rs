//! Building a batch's output column by column.
//!
//! The contract hands rows back to the host as columns: one flat typed list
//! per column (one text buffer with end offsets for text columns), so
//! crossing the boundary costs a few copies instead of one variant per
//! value. [`ColumnsBuilder`] takes rows of [`Value`]s in schema order and
//! appends each value to its column; [`ColumnsBuilder::truncate`] drops the
//! rows of a record that was rejected half-way.
//!
//! A value of another type than its column is a bug of the plugin
//! ([`RowError::Mismatch`]); a decimal that cannot be held at the column's
//! precision and scale is a fault of the record ([`RowError::Fault`]).

use mlc_common::{Cell, Decimal, Value};

use crate::bindings::ml_connector::mapping::types::{
    BatchOutput, Column, ColumnData, ColumnType, ColumnValues, DecimalValues, Reject, TextValues,
};

/// Why a row could not be appended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowError {
    /// The row does not follow the schema (a plugin bug): wrong number of
    /// values or a value of another type than its column.
    Mismatch(String),
    /// A value the column cannot hold (a decimal with too many digits):
    /// the record is at fault.
    Fault {
        /// The column.
        column: String,
        /// Why.
        reason: String,
    },
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Mismatch(m) => f.write_str(m),
            Self::Fault { column, reason } => write!(f, "column `{column}`: {reason}"),
        }
    }
}

/// Output rows accumulated as columns.
#[derive(Debug)]
pub struct ColumnsBuilder {
    names: Vec<String>,
    types: Vec<ColumnType>,
    sources: Vec<u32>,
    columns: Vec<ColumnData>,
    /// Values given so far for the row being built ([`Self::value`]).
    pending: usize,
}

fn empty_values(ty: &ColumnType, capacity: usize) -> ColumnValues {
    match ty {
        ColumnType::Text => ColumnValues::Text(TextValues {
            text: String::with_capacity(capacity * 16),
            ends: Vec::with_capacity(capacity),
        }),
        ColumnType::Integer => ColumnValues::Integer(Vec::with_capacity(capacity)),
        ColumnType::Double => ColumnValues::Double(Vec::with_capacity(capacity)),
        ColumnType::Decimal(t) => ColumnValues::Decimal(DecimalValues {
            scale: t.scale,
            lo: Vec::with_capacity(capacity),
            hi: Vec::with_capacity(capacity),
        }),
        ColumnType::Boolean => ColumnValues::Boolean(Vec::with_capacity(capacity)),
        ColumnType::Date => ColumnValues::Date(Vec::with_capacity(capacity)),
        ColumnType::Timestamp => ColumnValues::Timestamp(Vec::with_capacity(capacity)),
    }
}

fn type_name(ty: &ColumnType) -> String {
    match ty {
        ColumnType::Text => "text".into(),
        ColumnType::Integer => "integer".into(),
        ColumnType::Double => "double".into(),
        ColumnType::Decimal(t) => format!("decimal({},{})", t.precision, t.scale),
        ColumnType::Boolean => "boolean".into(),
        ColumnType::Date => "date".into(),
        ColumnType::Timestamp => "timestamp".into(),
    }
}

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Text(_) => "text",
        Value::Integer(_) => "integer",
        Value::Double(_) => "double",
        Value::Decimal(_) => "decimal",
        Value::Boolean(_) => "boolean",
        Value::Date(_) => "date",
        Value::Timestamp(_) => "timestamp",
    }
}

impl ColumnsBuilder {
    /// An empty output for `schema`, with room for about `rows` rows.
    pub fn new(schema: &[Column], rows: usize) -> Self {
        Self {
            names: schema.iter().map(|c| c.name.clone()).collect(),
            types: schema.iter().map(|c| c.ty).collect(),
            sources: Vec::with_capacity(rows),
            columns: schema
                .iter()
                .map(|c| ColumnData {
                    nulls: Vec::new(),
                    values: empty_values(&c.ty, rows),
                })
                .collect(),
            pending: 0,
        }
    }

    /// Rows so far.
    pub fn rows(&self) -> usize {
        self.sources.len()
    }

    /// Appends a row of record `source` (values in schema order: [`Value`]s,
    /// or [`Cell`]s whose text is still borrowed). On an error nothing of the
    /// row is kept.
    pub fn push_row<'v, V: Into<Cell<'v>>>(
        &mut self,
        source: u32,
        values: impl IntoIterator<Item = V>,
    ) -> Result<(), RowError> {
        let row = self.sources.len();
        for value in values {
            if self.pending >= self.columns.len() {
                // Counted, for the error of end_row.
                self.pending += 1;
                continue;
            }
            if let Err(e) = self.value(value.into()) {
                self.truncate(row);
                return Err(e);
            }
        }
        self.end_row(source)
    }

    /// Gives the next value (in schema order) of the row being built; the
    /// row is kept by [`Self::end_row`]. After an error the row being built
    /// is dropped.
    pub fn value(&mut self, cell: Cell<'_>) -> Result<(), RowError> {
        let row = self.sources.len();
        let index = self.pending;
        let result = match u32::try_from(row) {
            Ok(row32) if index < self.columns.len() => self.append(index, row32, cell),
            Ok(_) => Err(RowError::Mismatch(format!(
                "a row has more values than the schema's {} columns",
                self.columns.len()
            ))),
            Err(_) => Err(RowError::Mismatch(
                "more than 2^32 rows in one batch".into(),
            )),
        };
        match result {
            Ok(()) => {
                self.pending += 1;
                Ok(())
            }
            Err(e) => {
                self.truncate(row);
                Err(e)
            }
        }
    }

    /// Ends the row being built, made from record `source`: it must have
    /// a value for every column.
    pub fn end_row(&mut self, source: u32) -> Result<(), RowError> {
        let given = self.pending;
        if given != self.columns.len() {
            self.truncate(self.sources.len());
            return Err(RowError::Mismatch(format!(
                "a row of record {source} has {given} values; the schema has {} columns",
                self.columns.len()
            )));
        }
        self.pending = 0;
        self.sources.push(source);
        Ok(())
    }

    /// Appends one value to column `index` at row `row`.
    fn append(&mut self, index: usize, row: u32, value: Cell<'_>) -> Result<(), RowError> {
        let column = &mut self.columns[index];
        let value = match value {
            Cell::Text(s) => {
                let ColumnValues::Text(t) = &mut column.values else {
                    return Err(self.mismatch(index, "text"));
                };
                t.text.push_str(s);
                t.ends.push(text_end(&t.text)?);
                return Ok(());
            }
            Cell::Value(v) => v,
        };
        match (&mut column.values, value) {
            (values, Value::Null) => {
                column.nulls.push(row);
                match values {
                    ColumnValues::Text(t) => t.ends.push(text_end(&t.text)?),
                    ColumnValues::Integer(v) | ColumnValues::Timestamp(v) => v.push(0),
                    ColumnValues::Double(v) => v.push(0.0),
                    ColumnValues::Decimal(d) => {
                        d.lo.push(0);
                        d.hi.push(0);
                    }
                    ColumnValues::Boolean(v) => v.push(false),
                    ColumnValues::Date(v) => v.push(0),
                }
            }
            (ColumnValues::Text(t), Value::Text(s)) => {
                t.text.push_str(&s);
                t.ends.push(text_end(&t.text)?);
            }
            (ColumnValues::Integer(v), Value::Integer(i)) => v.push(i),
            (ColumnValues::Timestamp(v), Value::Timestamp(i)) => v.push(i),
            (ColumnValues::Double(v), Value::Double(f)) => v.push(f),
            (ColumnValues::Boolean(v), Value::Boolean(b)) => v.push(b),
            (ColumnValues::Date(v), Value::Date(d)) => v.push(d),
            (ColumnValues::Decimal(values), Value::Decimal(d)) => {
                let ColumnType::Decimal(t) = &self.types[index] else {
                    return Err(RowError::Mismatch(
                        "decimal values in a non-decimal column".into(),
                    ));
                };
                let fitted = d.fit(t.precision, t.scale).map_err(|e| RowError::Fault {
                    column: self.names[index].clone(),
                    reason: e.to_string(),
                })?;
                let bits = fitted.unscaled as u128;
                values.lo.push(bits as u64);
                values.hi.push((bits >> 64) as u64 as i64);
            }
            (_, other) => return Err(self.mismatch(index, value_kind(&other))),
        }
        Ok(())
    }

    fn mismatch(&self, index: usize, kind: &str) -> RowError {
        RowError::Mismatch(format!(
            "column `{}` is declared {} but the plugin gave a value of type {}",
            self.names[index],
            type_name(&self.types[index]),
            kind
        ))
    }

    /// Drops every row from `rows` on, and the row being built.
    pub fn truncate(&mut self, rows: usize) {
        if rows >= self.sources.len() && self.pending == 0 {
            return;
        }
        self.pending = 0;
        self.sources.truncate(rows);
        for column in &mut self.columns {
            while column.nulls.last().is_some_and(|&r| r as usize >= rows) {
                column.nulls.pop();
            }
            match &mut column.values {
                ColumnValues::Text(t) => {
                    t.ends.truncate(rows);
                    let end = t.ends.last().map_or(0, |&e| e as usize);
                    t.text.truncate(end);
                }
                ColumnValues::Integer(v) | ColumnValues::Timestamp(v) => v.truncate(rows),
                ColumnValues::Double(v) => v.truncate(rows),
                ColumnValues::Decimal(d) => {
                    d.lo.truncate(rows);
                    d.hi.truncate(rows);
                }
                ColumnValues::Boolean(v) => v.truncate(rows),
                ColumnValues::Date(v) => v.truncate(rows),
            }
        }
    }

    /// The finished output.
    pub fn finish(self, rejects: Vec<Reject>) -> BatchOutput {
        BatchOutput {
            sources: self.sources,
            columns: self.columns,
            rejects,
        }
    }
}

impl BatchOutput {
    /// The output as rows of values again (for a plugin's own tests; the
    /// host does the same with its checks). Entries missing from a column
    /// that is too short read as null.
    pub fn rows(&self) -> Vec<mlc_common::Row> {
        let mut rows: Vec<mlc_common::Row> = self
            .sources
            .iter()
            .map(|&source| mlc_common::Row {
                source,
                values: Vec::with_capacity(self.columns.len()),
            })
            .collect();
        for column in &self.columns {
            let mut nulls = column.nulls.iter().peekable();
            for (r, row) in rows.iter_mut().enumerate() {
                if nulls.next_if(|&&n| n as usize == r).is_some() {
                    row.values.push(Value::Null);
                    continue;
                }
                let value = match &column.values {
                    ColumnValues::Text(t) => {
                        let start = r
                            .checked_sub(1)
                            .and_then(|p| t.ends.get(p))
                            .map_or(0, |&e| e as usize);
                        t.ends
                            .get(r)
                            .and_then(|&end| t.text.get(start..end as usize))
                            .map_or(Value::Null, |s| Value::Text(s.to_owned()))
                    }
                    ColumnValues::Integer(v) => {
                        v.get(r).map_or(Value::Null, |&i| Value::Integer(i))
                    }
                    ColumnValues::Double(v) => v.get(r).map_or(Value::Null, |&f| Value::Double(f)),
                    ColumnValues::Decimal(d) => {
                        decimal_at(d, r).map_or(Value::Null, Value::Decimal)
                    }
                    ColumnValues::Boolean(v) => {
                        v.get(r).map_or(Value::Null, |&b| Value::Boolean(b))
                    }
                    ColumnValues::Date(v) => v.get(r).map_or(Value::Null, |&d| Value::Date(d)),
                    ColumnValues::Timestamp(v) => {
                        v.get(r).map_or(Value::Null, |&t| Value::Timestamp(t))
                    }
                };
                row.values.push(value);
            }
        }
        rows
    }
}

/// The end offset of a text buffer as the contract's `u32`.
fn text_end(text: &str) -> Result<u32, RowError> {
    u32::try_from(text.len())
        .map_err(|_| RowError::Mismatch("more than 4 GiB of text in one column".into()))
}

/// An exact decimal from the contract's halves.
pub fn decimal_at(values: &DecimalValues, row: usize) -> Option<Decimal> {
    let lo = *values.lo.get(row)?;
    let hi = *values.hi.get(row)?;
    Some(Decimal::new(
        (i128::from(hi) << 64) | i128::from(lo),
        values.scale,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::column::{self, ColumnExt};

    fn schema() -> Vec<Column> {
        vec![
            column::integer("Id").key(),
            column::text("Name").nullable(),
            column::decimal("Amount", 18, 2).nullable(),
        ]
    }

    fn dec(s: &str) -> Value {
        Value::Decimal(Decimal::parse(s).unwrap())
    }

    #[test]
    fn rows_become_columns_and_truncate_drops_whole_rows() {
        let mut b = ColumnsBuilder::new(&schema(), 4);
        b.push_row(
            0,
            [
                Cell::Value(Value::Integer(1)),
                Cell::Text("ab"),
                Cell::Value(dec("1.5")),
            ],
        )
        .unwrap();
        b.push_row(1, [Value::Integer(2), Value::Null, Value::Null])
            .unwrap();
        b.push_row(1, [Value::Integer(3), Value::Text("cde".into()), dec("-2")])
            .unwrap();
        b.truncate(2);
        b.push_row(2, [Value::Integer(4), Value::Text("f".into()), dec("0.01")])
            .unwrap();
        let out = b.finish(Vec::new());
        let rows = out.rows();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[1].values,
            vec![Value::Integer(2), Value::Null, Value::Null]
        );
        assert_eq!(
            rows[2].values,
            vec![Value::Integer(4), Value::Text("f".into()), dec("0.01")]
        );
        assert_eq!(out.sources, vec![0, 1, 2]);
        assert_eq!(out.columns[0].values, ColumnValues::Integer(vec![1, 2, 4]));
        assert_eq!(
            out.columns[1].values,
            ColumnValues::Text(TextValues {
                text: "abf".into(),
                ends: vec![2, 2, 3]
            })
        );
        assert_eq!(out.columns[1].nulls, vec![1]);
        let ColumnValues::Decimal(d) = &out.columns[2].values else {
            panic!("not decimal: {:?}", out.columns[2].values);
        };
        assert_eq!(d.scale, 2);
        assert_eq!(decimal_at(d, 0), Some(Decimal::new(150, 2)));
        assert_eq!(decimal_at(d, 2), Some(Decimal::new(1, 2)));
        assert_eq!(out.columns[2].nulls, vec![1]);
    }

    #[test]
    fn rows_given_value_by_value() {
        let mut b = ColumnsBuilder::new(&schema(), 2);
        b.value(Cell::Value(Value::Integer(1))).unwrap();
        b.value(Cell::Text("x")).unwrap();
        b.value(Cell::Value(Value::Null)).unwrap();
        b.end_row(4).unwrap();
        // A row left half-way is dropped by truncate.
        b.value(Cell::Value(Value::Integer(2))).unwrap();
        b.truncate(1);
        // Too few values: the row is refused and dropped.
        b.value(Cell::Value(Value::Integer(3))).unwrap();
        assert_eq!(
            b.end_row(5).unwrap_err(),
            RowError::Mismatch("a row of record 5 has 1 values; the schema has 3 columns".into())
        );
        // Too many values.
        let err = b
            .push_row(
                6,
                [
                    Value::Integer(1),
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                ],
            )
            .unwrap_err();
        assert_eq!(
            err,
            RowError::Mismatch("a row of record 6 has 5 values; the schema has 3 columns".into())
        );
        // Text into an integer column.
        assert!(matches!(
            b.value(Cell::Text("one")),
            Err(RowError::Mismatch(_))
        ));
        let out = b.finish(Vec::new());
        assert_eq!(out.sources, vec![4]);
        assert_eq!(
            out.rows()[0].values,
            vec![Value::Integer(1), Value::Text("x".into()), Value::Null]
        );
        assert_eq!(out.columns[0].values, ColumnValues::Integer(vec![1]));
    }

    #[test]
    fn negative_and_wide_decimals_keep_every_digit() {
        let schema = vec![column::decimal("Big", 38, 9)];
        let mut b = ColumnsBuilder::new(&schema, 2);
        b.push_row(0, [dec("-12345678901234567890123456789.123456789")])
            .unwrap();
        let out = b.finish(Vec::new());
        let ColumnValues::Decimal(d) = &out.columns[0].values else {
            panic!("not decimal");
        };
        assert_eq!(
            decimal_at(d, 0).unwrap().to_string(),
            "-12345678901234567890123456789.123456789"
        );
    }

    #[test]
    fn mismatches_and_faults_keep_nothing_of_the_row() {
        let mut b = ColumnsBuilder::new(&schema(), 2);
        b.push_row(0, [Value::Integer(1), Value::Text("a".into()), Value::Null])
            .unwrap();
        let short = b.push_row(1, [Value::Integer(2)]).unwrap_err();
        assert_eq!(
            short,
            RowError::Mismatch("a row of record 1 has 1 values; the schema has 3 columns".into())
        );
        let wrong = b
            .push_row(1, [Value::Integer(2), Value::Integer(5), Value::Null])
            .unwrap_err();
        assert_eq!(
            wrong,
            RowError::Mismatch(
                "column `Name` is declared text but the plugin gave a value of type integer".into()
            )
        );
        let fault = b
            .push_row(
                1,
                [Value::Integer(2), Value::Text("b".into()), dec("1.234")],
            )
            .unwrap_err();
        assert!(
            matches!(&fault, RowError::Fault { column, .. } if column == "Amount"),
            "{fault:?}"
        );
        let out = b.finish(Vec::new());
        assert_eq!(out.sources, vec![0]);
        assert_eq!(out.columns[0].values, ColumnValues::Integer(vec![1]));
        assert_eq!(
            out.columns[1].values,
            ColumnValues::Text(TextValues {
                text: "a".into(),
                ends: vec![1]
            })
        );
        assert_eq!(out.columns[2].nulls, vec![0]);
    }
}
