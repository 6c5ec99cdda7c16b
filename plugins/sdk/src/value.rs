//! Typed values and columns, and reading them from record fields.
//!
//! The `Object` methods here turn one field into the [`Value`] a column
//! wants, or into a [`Rejection`] naming the field: `rec.text("Supplier")?`,
//! `rec.opt_decimal("AmountPaid", 18, 2)?`, `rec.boolean("CanceledFlag")?`.
//! Required fields reject a missing or null value; `opt_` variants give
//! `Value::Null`. Decimals are read from the number's text (never `f64`);
//! dates are `YYYY-MM-DD`, timestamps ISO 8601 with an offset.

use std::borrow::Cow;

use mlc_common::{Decimal, Value};

use crate::bindings::ml_connector::mapping::types::{Column, ColumnType, DecimalType};
use crate::json::{Json, Kind, Object};
use crate::{MapError, Rejection};

/// A text value.
pub fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

/// An integer value.
pub fn integer(i: i64) -> Value {
    Value::Integer(i)
}

/// A decimal value.
pub fn decimal(d: Decimal) -> Value {
    Value::Decimal(d)
}

/// A boolean value.
pub fn boolean(b: bool) -> Value {
    Value::Boolean(b)
}

/// A date value (days since 1970-01-01).
pub fn date(days: i32) -> Value {
    Value::Date(days)
}

/// A timestamp value (microseconds since the epoch, UTC).
pub fn timestamp(micros: i64) -> Value {
    Value::Timestamp(micros)
}

/// `Some(text)` as text, `None` as null.
pub fn opt_text(s: Option<impl Into<String>>) -> Value {
    s.map_or(Value::Null, |s| Value::Text(s.into()))
}

/// Parses decimal text (`1250.00`, `-0.5`, `1.25E3`) exactly and fits it to
/// `NUMERIC(precision, scale)`.
pub fn parse_decimal(text: &str, precision: u8, scale: u8) -> Result<Decimal, String> {
    let d = Decimal::parse(text).map_err(|e| e.to_string())?;
    d.fit(precision, scale).map_err(|e| e.to_string())
}

/// Column constructors: `column::text("Supplier")`,
/// `column::decimal("Invoice Amount", 18, 2).nullable()`,
/// `column::integer("Invoice ID").key()`.
pub mod column {
    use super::*;

    fn column(name: &str, ty: ColumnType) -> Column {
        Column {
            name: name.to_owned(),
            ty,
            nullable: false,
            key: false,
        }
    }

    /// A text column.
    pub fn text(name: &str) -> Column {
        column(name, ColumnType::Text)
    }

    /// A 64-bit integer column.
    pub fn integer(name: &str) -> Column {
        column(name, ColumnType::Integer)
    }

    /// A double column.
    pub fn double(name: &str) -> Column {
        column(name, ColumnType::Double)
    }

    /// A `NUMERIC(precision, scale)` column.
    pub fn decimal(name: &str, precision: u8, scale: u8) -> Column {
        column(name, ColumnType::Decimal(DecimalType { precision, scale }))
    }

    /// A boolean column.
    pub fn boolean(name: &str) -> Column {
        column(name, ColumnType::Boolean)
    }

    /// A date column.
    pub fn date(name: &str) -> Column {
        column(name, ColumnType::Date)
    }

    /// A timestamp-with-time-zone column.
    pub fn timestamp(name: &str) -> Column {
        column(name, ColumnType::Timestamp)
    }

    /// Builder methods on [`Column`].
    pub trait ColumnExt {
        /// Marks the column part of the upsert key.
        fn key(self) -> Self;
        /// Allows NULL in the column.
        fn nullable(self) -> Self;
    }

    impl ColumnExt for Column {
        fn key(mut self) -> Self {
            self.key = true;
            self
        }

        fn nullable(mut self) -> Self {
            self.nullable = true;
            self
        }
    }
}

fn found(v: &Json<'_>) -> String {
    let raw = v.raw();
    if raw.len() > 40 {
        let mut end = 40;
        while !raw.is_char_boundary(end) {
            end -= 1;
        }
        format!("{} {}…", v.kind().name(), &raw[..end])
    } else {
        format!("{} {raw}", v.kind().name())
    }
}

fn wrong(field: &str, expected: &str, v: &Json<'_>) -> Rejection {
    Rejection::field(field, format!("expected {expected}, found {}", found(v)))
}

/// Integer from a JSON number or numeric string, exactly.
fn integer_of(field: &str, v: &Json<'_>) -> Result<i64, Rejection> {
    let text = match v.kind() {
        Kind::Number => Cow::Borrowed(v.raw()),
        Kind::String => string_of(field, v)?,
        _ => return Err(wrong(field, "an integer", v)),
    };
    if let Ok(i) = text.trim().parse::<i64>() {
        return Ok(i);
    }
    Decimal::parse(text.trim())
        .ok()
        .and_then(|d| d.rescale(0).ok())
        .and_then(|d| i64::try_from(d.unscaled).ok())
        .ok_or_else(|| wrong(field, "an integer", v))
}

fn decimal_of(field: &str, v: &Json<'_>, precision: u8, scale: u8) -> Result<Decimal, Rejection> {
    let text = match v.kind() {
        Kind::Number => Cow::Borrowed(v.raw()),
        Kind::String => string_of(field, v)?,
        _ => return Err(wrong(field, "a number", v)),
    };
    parse_decimal(text.trim(), precision, scale).map_err(|e| Rejection::field(field, e))
}

fn boolean_of(field: &str, v: &Json<'_>) -> Result<bool, Rejection> {
    if let Some(b) = v.as_bool() {
        return Ok(b);
    }
    v.as_str()
        .and_then(|s| mlc_common::json_text::flag_text(&s))
        .ok_or_else(|| {
            wrong(
                field,
                "a boolean (true/false, or Y/N, Yes/No, True/False)",
                v,
            )
        })
}

fn date_of(field: &str, v: &Json<'_>) -> Result<i32, Rejection> {
    let s = v.as_str().ok_or_else(|| wrong(field, "a date", v))?;
    mlc_common::time::parse_date(&s).map_err(|e| Rejection::field(field, e.to_string()))
}

fn timestamp_of(field: &str, v: &Json<'_>) -> Result<i64, Rejection> {
    let s = v.as_str().ok_or_else(|| wrong(field, "a timestamp", v))?;
    mlc_common::time::parse_timestamp(&s).map_err(|e| Rejection::field(field, e.to_string()))
}

fn double_of(field: &str, v: &Json<'_>) -> Result<f64, Rejection> {
    let text = match v.kind() {
        Kind::Number => Cow::Borrowed(v.raw()),
        Kind::String => string_of(field, v)?,
        _ => return Err(wrong(field, "a number", v)),
    };
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .ok_or_else(|| wrong(field, "a number", v))
}

/// A string's decoded content; a string whose escapes do not decode (a
/// lone surrogate, say) is a reject, never an empty text.
fn string_of<'a>(field: &str, v: &Json<'a>) -> Result<Cow<'a, str>, Rejection> {
    v.as_str()
        .ok_or_else(|| wrong(field, "a string with valid escapes", v))
}

/// Text of any scalar: strings as they are, numbers and booleans as written.
fn text_of(field: &str, v: &Json<'_>) -> Result<String, Rejection> {
    match v.kind() {
        Kind::String => Ok(string_of(field, v)?.into_owned()),
        Kind::Number | Kind::Bool => Ok(v.raw().to_owned()),
        _ => Err(wrong(field, "text", v)),
    }
}

impl<'a> Object<'a> {
    /// The non-null value of a required field.
    pub fn required(&self, field: &str) -> Result<Json<'a>, Rejection> {
        match self.get(field) {
            None => Err(Rejection::field(field, format!("missing field `{field}`"))),
            Some(v) if v.is_null() => Err(Rejection::field(field, format!("`{field}` is null"))),
            Some(v) => Ok(v),
        }
    }

    /// A required string field's content.
    pub fn str(&self, field: &str) -> Result<Cow<'a, str>, Rejection> {
        let v = self.required(field)?;
        v.as_str().ok_or_else(|| wrong(field, "a string", &v))
    }

    /// An optional string field's content.
    pub fn opt_str(&self, field: &str) -> Result<Option<Cow<'a, str>>, Rejection> {
        match self.get_non_null(field) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| wrong(field, "a string", &v)),
        }
    }

    /// A required integer field as an `i64`.
    pub fn i64(&self, field: &str) -> Result<i64, Rejection> {
        integer_of(field, &self.required(field)?)
    }

    fn opt<T>(
        &self,
        field: &str,
        read: impl FnOnce(&str, &Json<'a>) -> Result<T, Rejection>,
        make: impl FnOnce(T) -> Value,
    ) -> Result<Value, Rejection> {
        match self.get_non_null(field) {
            None => Ok(Value::Null),
            Some(v) => read(field, &v).map(make),
        }
    }

    /// Text column value (numbers and booleans keep their JSON text).
    pub fn text(&self, field: &str) -> Result<Value, Rejection> {
        text_of(field, &self.required(field)?).map(Value::Text)
    }

    /// Nullable text column value.
    pub fn opt_text(&self, field: &str) -> Result<Value, Rejection> {
        self.opt(field, text_of, Value::Text)
    }

    /// Integer column value (a JSON integer or a string of digits).
    pub fn integer(&self, field: &str) -> Result<Value, Rejection> {
        integer_of(field, &self.required(field)?).map(Value::Integer)
    }

    /// Nullable integer column value.
    pub fn opt_integer(&self, field: &str) -> Result<Value, Rejection> {
        self.opt(field, integer_of, Value::Integer)
    }

    /// `NUMERIC(precision, scale)` column value, exact.
    pub fn decimal(&self, field: &str, precision: u8, scale: u8) -> Result<Value, Rejection> {
        decimal_of(field, &self.required(field)?, precision, scale).map(Value::Decimal)
    }

    /// Nullable `NUMERIC(precision, scale)` column value, exact.
    pub fn opt_decimal(&self, field: &str, precision: u8, scale: u8) -> Result<Value, Rejection> {
        self.opt(
            field,
            |f, v| decimal_of(f, v, precision, scale),
            Value::Decimal,
        )
    }

    /// Double column value.
    pub fn double(&self, field: &str) -> Result<Value, Rejection> {
        double_of(field, &self.required(field)?).map(Value::Double)
    }

    /// Nullable double column value.
    pub fn opt_double(&self, field: &str) -> Result<Value, Rejection> {
        self.opt(field, double_of, Value::Double)
    }

    /// Boolean column value: JSON `true`/`false`, or the texts Oracle uses
    /// (`Y`/`N`, `Yes`/`No`, `True`/`False`, any case).
    pub fn boolean(&self, field: &str) -> Result<Value, Rejection> {
        boolean_of(field, &self.required(field)?).map(Value::Boolean)
    }

    /// Nullable boolean column value.
    pub fn opt_boolean(&self, field: &str) -> Result<Value, Rejection> {
        self.opt(field, boolean_of, Value::Boolean)
    }

    /// Date column value from `YYYY-MM-DD`.
    pub fn date(&self, field: &str) -> Result<Value, Rejection> {
        date_of(field, &self.required(field)?).map(Value::Date)
    }

    /// Nullable date column value.
    pub fn opt_date(&self, field: &str) -> Result<Value, Rejection> {
        self.opt(field, date_of, Value::Date)
    }

    /// Timestamp column value from ISO 8601 with an offset.
    pub fn timestamp(&self, field: &str) -> Result<Value, Rejection> {
        timestamp_of(field, &self.required(field)?).map(Value::Timestamp)
    }

    /// Nullable timestamp column value.
    pub fn opt_timestamp(&self, field: &str) -> Result<Value, Rejection> {
        self.opt(field, timestamp_of, Value::Timestamp)
    }

    /// The rows of an expanded child collection: a JSON array, or (REST
    /// framework v3+) an object `{"items": [...]}`. Rejects the record when
    /// the child was not expanded or is not a collection of objects.
    pub fn children(&self, field: &str) -> Result<Vec<Object<'a>>, MapError> {
        let Some(v) = self.get_non_null(field) else {
            return Err(Rejection::field(
                field,
                format!("child collection `{field}` is missing: request it with expand={field}"),
            )
            .into());
        };
        let items = match v.kind() {
            Kind::Array => v.as_array(),
            Kind::Object => v
                .as_object()
                .and_then(|o| o.get_non_null("items"))
                .and_then(|items| items.as_array()),
            _ => None,
        }
        .ok_or_else(|| wrong(field, "an array or {\"items\": [...]}", &v))?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_object().ok_or_else(|| {
                    MapError::from(Rejection::field(
                        field,
                        format!("item {i} of `{field}` is not an object"),
                    ))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(text: &str) -> Object<'_> {
        Object::parse(text).unwrap()
    }

    #[test]
    fn typed_fields() {
        let r = rec(
            r#"{"Id": 300100412233001, "IdText": "42", "Amount": 1250.5, "Big": 12345678901234567890.123456789,
                "Paid": null, "Cur": "USD", "Flag": "Y", "Flag2": false, "D": "2024-05-02",
                "T": "2024-05-03T09:02:51.077+00:00", "N": 7, "F": 1.5e2}"#,
        );
        assert_eq!(r.integer("Id").unwrap(), Value::Integer(300100412233001));
        assert_eq!(r.integer("IdText").unwrap(), Value::Integer(42));
        assert_eq!(
            r.decimal("Amount", 18, 2).unwrap(),
            Value::Decimal(Decimal::new(125050, 2))
        );
        let Value::Decimal(big) = r.decimal("Big", 38, 9).unwrap() else {
            panic!("not a decimal");
        };
        assert_eq!(big.to_string(), "12345678901234567890.123456789");
        assert_eq!(r.opt_decimal("Paid", 18, 2).unwrap(), Value::Null);
        assert_eq!(r.opt_decimal("Absent", 18, 2).unwrap(), Value::Null);
        assert_eq!(r.text("Cur").unwrap(), Value::Text("USD".into()));
        assert_eq!(r.text("N").unwrap(), Value::Text("7".into()));
        assert_eq!(r.boolean("Flag").unwrap(), Value::Boolean(true));
        assert_eq!(r.boolean("Flag2").unwrap(), Value::Boolean(false));
        assert_eq!(
            r.date("D").unwrap(),
            Value::Date(mlc_common::time::parse_date("2024-05-02").unwrap())
        );
        assert_eq!(
            r.timestamp("T").unwrap(),
            Value::Timestamp(
                mlc_common::time::parse_timestamp("2024-05-03T09:02:51.077Z").unwrap()
            )
        );
        assert_eq!(r.double("F").unwrap(), Value::Double(150.0));
        assert_eq!(r.str("Cur").unwrap(), "USD");
        assert_eq!(r.i64("N").unwrap(), 7);
    }

    #[test]
    fn rejections_name_the_field() {
        let r = rec(
            r#"{"Amount": "abc", "Precise": 1.234, "Paid": null, "D": "2024-02-30", "B": "maybe", "I": 1.5}"#,
        );
        let e = r.decimal("Amount", 18, 2).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("Amount"));
        assert!(e.reason.contains("not a decimal number"), "{}", e.reason);
        let e = r.decimal("Precise", 18, 2).unwrap_err();
        assert!(
            e.reason.contains("more than 2 decimal places"),
            "{}",
            e.reason
        );
        let e = r.decimal("Paid", 18, 2).unwrap_err();
        assert_eq!(e.reason, "`Paid` is null");
        let e = r.text("Missing").unwrap_err();
        assert_eq!(e.reason, "missing field `Missing`");
        let e = r.date("D").unwrap_err();
        assert!(e.reason.contains("not a valid date"), "{}", e.reason);
        let e = r.boolean("B").unwrap_err();
        assert_eq!(
            e.reason,
            "expected a boolean (true/false, or Y/N, Yes/No, True/False), found string \"maybe\""
        );
        let e = r.integer("I").unwrap_err();
        assert_eq!(e.reason, "expected an integer, found number 1.5");
    }

    #[test]
    fn flags_in_words_and_undecodable_strings() {
        let r = rec(r#"{"Y": "Yes", "N": " no ", "T": "TRUE"}"#);
        assert_eq!(r.boolean("Y").unwrap(), Value::Boolean(true));
        assert_eq!(r.boolean("N").unwrap(), Value::Boolean(false));
        assert_eq!(r.boolean("T").unwrap(), Value::Boolean(true));
        // A lone surrogate does not decode: the record is refused whole
        // (as serde_json refuses it), the text is never silently emptied.
        let e = Object::parse(r#"{"Y": "Yes", "S": "\ud800x"}"#).unwrap_err();
        assert_eq!(e.message, "lone surrogate in \\u escape");
    }

    #[test]
    fn children_accept_arrays_and_items_objects() {
        let r = rec(
            r#"{"a": [{"x": 1}, {"x": 2}], "b": {"items": [{"x": 3}], "count": 1}, "c": 5, "d": [1]}"#,
        );
        assert_eq!(r.children("a").unwrap().len(), 2);
        let b = r.children("b").unwrap();
        assert_eq!(b[0].i64("x").unwrap(), 3);
        for (field, expected) in [
            (
                "c",
                "expected an array or {\"items\": [...]}, found number 5",
            ),
            ("d", "item 0 of `d` is not an object"),
            (
                "e",
                "child collection `e` is missing: request it with expand=e",
            ),
        ] {
            match r.children(field) {
                Err(MapError::Reject(rej)) => assert_eq!(rej.reason, expected),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn column_builders() {
        use column::ColumnExt;
        let c = column::integer("Invoice ID").key();
        assert!(c.key && !c.nullable);
        let c = column::decimal("Amount Paid", 18, 2).nullable();
        assert!(c.nullable);
        assert!(matches!(
            c.ty,
            ColumnType::Decimal(DecimalType {
                precision: 18,
                scale: 2
            })
        ));
    }
}
