//! Typed rows: what a mapping produces and a Hyper extract stores.

use serde::{Deserialize, Serialize};

use crate::Decimal;

/// The type of one output column; maps one-to-one onto a Hyper SQL type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ColumnType {
    /// `TEXT`.
    Text,
    /// `BIGINT`.
    Integer,
    /// `DOUBLE PRECISION`.
    Double,
    /// `NUMERIC(precision, scale)`, precision 1..=38, scale <= precision.
    Decimal {
        /// Total digits.
        precision: u8,
        /// Digits after the point.
        scale: u8,
    },
    /// `BOOLEAN`.
    Boolean,
    /// `DATE`.
    Date,
    /// `TIMESTAMP WITH TIME ZONE` (stored as UTC).
    Timestamp,
}

impl ColumnType {
    /// The Hyper SQL spelling of this type.
    pub fn sql(&self) -> String {
        match self {
            Self::Text => "TEXT".into(),
            Self::Integer => "BIGINT".into(),
            Self::Double => "DOUBLE PRECISION".into(),
            Self::Decimal { precision, scale } => format!("NUMERIC({precision},{scale})"),
            Self::Boolean => "BOOLEAN".into(),
            Self::Date => "DATE".into(),
            Self::Timestamp => "TIMESTAMP WITH TIME ZONE".into(),
        }
    }
}

/// One output column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Column name as the dashboard sees it.
    pub name: String,
    /// Value type.
    #[serde(flatten)]
    pub ty: ColumnType,
    /// Whether the column may hold NULL.
    pub nullable: bool,
    /// Whether the column is part of the row key used for upserts.
    pub key: bool,
}

/// The ordered columns of a mapping's output.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Schema {
    /// Columns in output order.
    pub columns: Vec<Column>,
}

impl Schema {
    /// The names of the key columns, in order.
    pub fn key_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.key)
    }
}

/// One typed value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "value")]
pub enum Value {
    /// SQL NULL.
    Null,
    /// Text.
    Text(String),
    /// 64-bit integer.
    Integer(i64),
    /// Double.
    Double(f64),
    /// Exact decimal.
    Decimal(Decimal),
    /// Boolean.
    Boolean(bool),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since 1970-01-01T00:00:00Z.
    Timestamp(i64),
}

/// A value on its way into an output column: text may still borrow from
/// the record it was read from, so that a mapper can append it to a column
/// without an allocation of its own.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell<'a> {
    /// Text borrowed from the input.
    Text(&'a str),
    /// Any value.
    Value(Value),
}

impl Cell<'_> {
    /// Whether the cell is null.
    pub fn is_null(&self) -> bool {
        matches!(self, Cell::Value(Value::Null))
    }

    /// The cell as an owned value.
    pub fn into_value(self) -> Value {
        match self {
            Cell::Text(s) => Value::Text(s.to_owned()),
            Cell::Value(v) => v,
        }
    }
}

impl From<Value> for Cell<'_> {
    fn from(v: Value) -> Self {
        Cell::Value(v)
    }
}

impl Value {
    /// A short name of the value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Text(_) => "text",
            Self::Integer(_) => "integer",
            Self::Double(_) => "double",
            Self::Decimal(_) => "decimal",
            Self::Boolean(_) => "boolean",
            Self::Date(_) => "date",
            Self::Timestamp(_) => "timestamp",
        }
    }

    /// The value as plain JSON: numbers stay numbers except decimals, which
    /// are strings so no digit is lost; dates and timestamps are ISO text.
    pub fn to_plain_json(&self) -> serde_json_lite::Json {
        serde_json_lite::from_value(self)
    }
}

/// A tiny JSON value used by [`Value::to_plain_json`] without pulling
/// `serde_json` into every crate.
pub mod serde_json_lite {
    use super::Value;
    use crate::time::{format_date, format_timestamp};

    /// A plain JSON scalar.
    #[derive(Clone, Debug, PartialEq, serde::Serialize)]
    #[serde(untagged)]
    pub enum Json {
        /// null
        Null,
        /// string
        String(String),
        /// integer
        Int(i64),
        /// double
        Float(f64),
        /// boolean
        Bool(bool),
    }

    /// Converts a typed value to its plain JSON form.
    pub fn from_value(value: &Value) -> Json {
        match value {
            Value::Null => Json::Null,
            Value::Text(s) => Json::String(s.clone()),
            Value::Integer(i) => Json::Int(*i),
            Value::Double(f) => Json::Float(*f),
            Value::Decimal(d) => Json::String(d.to_string()),
            Value::Boolean(b) => Json::Bool(*b),
            Value::Date(d) => Json::String(format_date(*d)),
            Value::Timestamp(t) => Json::String(format_timestamp(*t)),
        }
    }
}

/// A row produced from one source record (`source` is the record's index in
/// the batch; one record may produce several rows, e.g. one per invoice line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Index of the source record in its batch.
    pub source: u32,
    /// Values in schema order.
    pub values: Vec<Value>,
}

/// A record the mapping refused, with the reason. Rejects never stop a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    /// Index of the source record in its batch.
    pub index: u32,
    /// The field or column at fault, when known.
    pub field: Option<String>,
    /// Why the record was refused.
    pub reason: String,
}

/// What a mapping made of one batch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MappedBatch {
    /// Rows in schema order.
    pub rows: Vec<Row>,
    /// Refused records.
    pub rejects: Vec<Reject>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_types() {
        assert_eq!(
            ColumnType::Decimal {
                precision: 18,
                scale: 2
            }
            .sql(),
            "NUMERIC(18,2)"
        );
        assert_eq!(ColumnType::Timestamp.sql(), "TIMESTAMP WITH TIME ZONE");
    }

    #[test]
    fn plain_json_keeps_decimal_digits() {
        let v = Value::Decimal(Decimal::parse("12345678901234567.89").unwrap());
        let json = serde_json::to_string(&v.to_plain_json()).unwrap();
        assert_eq!(json, "\"12345678901234567.89\"");
        let col = Column {
            name: "Amount".into(),
            ty: ColumnType::Decimal {
                precision: 18,
                scale: 2,
            },
            nullable: false,
            key: false,
        };
        let json = serde_json::to_value(&col).unwrap();
        assert_eq!(json["type"], "decimal");
        assert_eq!(json["precision"], 18);
    }
}
