//! SQL text for Hyper: quoted identifiers, table names, column definitions.
//!
//! Hyper quotes identifiers *and database paths* with double quotes; a
//! double quote inside is doubled. Every name built here goes through
//! [`quote_ident`], so column and table names from tenant mappings cannot
//! break out of their identifier. Values go into SQL text through
//! [`literal`], which writes each kind so hyperd reads back exactly the
//! same value (hyperd's unnamed statements take no NUMERIC parameters with
//! a fraction, so literals are the dependable way to put values in a
//! condition).

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use mlc_common::time::{days_from_civil, format_date};
use mlc_common::{ColumnType, Schema, Value, decimal::MAX_PRECISION};

use crate::HyperError;
use crate::encode::MAX_I64_PRECISION;

/// `"name"` with inner double quotes doubled.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for ch in name.chars() {
        if ch == '"' {
            out.push('"');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

/// A database path as Hyper wants it: absolute, UTF-8, double-quoted.
pub fn quote_path(path: &Path) -> Result<String, HyperError> {
    let absolute = std::path::absolute(path)
        .map_err(|e| HyperError::io(format!("resolving {}", path.display()), e))?;
    let text = absolute.to_str().ok_or_else(|| HyperError::Path {
        path: path.to_path_buf(),
        reason: "not valid UTF-8".into(),
    })?;
    Ok(quote_ident(text))
}

/// A table inside a `.hyper` database: schema and table name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TableName {
    /// Schema (namespace) name, e.g. `Extract` or `public`.
    pub schema: String,
    /// Table name.
    pub table: String,
}

impl TableName {
    /// A table name from its parts.
    pub fn new(schema: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            table: table.into(),
        }
    }

    /// `"Extract"."Extract"`, the table Tableau reads from a single-table
    /// extract.
    pub fn extract() -> Self {
        Self::new("Extract", "Extract")
    }

    /// The quoted name inside the database attached as `database`:
    /// `"db"."schema"."table"`.
    pub fn qualified(&self, database: &str) -> String {
        format!(
            "{}.{}.{}",
            quote_ident(database),
            quote_ident(&self.schema),
            quote_ident(&self.table)
        )
    }
}

impl Default for TableName {
    fn default() -> Self {
        Self::extract()
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}",
            quote_ident(&self.schema),
            quote_ident(&self.table)
        )
    }
}

/// Checks that `schema` can become a Hyper table: at least one column,
/// unique non-empty names, decimal precision 1..=38 and scale ≤ precision.
pub fn validate_schema(table: &TableName, schema: &Schema) -> Result<(), HyperError> {
    let fail = |reason: String| HyperError::Schema {
        table: table.to_string(),
        reason,
    };
    if schema.columns.is_empty() {
        return Err(fail("no columns".into()));
    }
    let mut seen = HashSet::new();
    for column in &schema.columns {
        if column.name.is_empty() {
            return Err(fail("a column has an empty name".into()));
        }
        if !seen.insert(column.name.as_str()) {
            return Err(fail(format!("column {:?} appears twice", column.name)));
        }
        if let ColumnType::Decimal { precision, scale } = column.ty
            && (precision == 0 || precision > MAX_PRECISION || scale > precision)
        {
            return Err(fail(format!(
                "column {:?}: NUMERIC({precision},{scale}) is not a valid type (precision 1..=38, scale <= precision)",
                column.name
            )));
        }
    }
    Ok(())
}

/// Whether the file must be created `WITH VERSION 4` (NUMERIC precision
/// above 18 is refused by the default file format).
pub fn needs_version_4(schema: &Schema) -> bool {
    schema.columns.iter().any(
        |c| matches!(c.ty, ColumnType::Decimal { precision, .. } if precision > MAX_I64_PRECISION),
    )
}

/// `"a" BIGINT NOT NULL, "b" TEXT, ...` for `CREATE TABLE`.
pub fn column_definitions(schema: &Schema) -> String {
    schema
        .columns
        .iter()
        .map(|c| {
            let mut def = format!("{} {}", quote_ident(&c.name), c.ty.sql());
            if !c.nullable {
                def.push_str(" NOT NULL");
            }
            def
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `"a", "b", ...`.
pub fn column_list(schema: &Schema) -> String {
    schema
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `'text'` with inner single quotes doubled. Text holding NUL (which a
/// query string cannot carry) is written as an escape string instead:
/// `E'a\000b'`.
pub fn quote_text(text: &str) -> String {
    if !text.contains('\0') {
        return format!("'{}'", text.replace('\'', "''"));
    }
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str("E'");
    for ch in text.chars() {
        match ch {
            '\0' => out.push_str("\\000"),
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("''"),
            other => out.push(other),
        }
    }
    out.push('\'');
    out
}

/// A SQL expression that hyperd evaluates to exactly `value`, typed:
/// `CAST('42' AS BIGINT)`, `CAST('1.5' AS DOUBLE PRECISION)`, `12.30`,
/// `DATE '2024-01-31'`, `CAST('2024-01-31 10:00:00.000001+00:00' AS
/// TIMESTAMP WITH TIME ZONE)`, `TRUE`, `NULL`, quoted text. Dates and
/// timestamps before year 1 (which Hyper's literals cannot spell) are
/// written as an offset from 0001-01-01.
pub fn literal(value: &Value) -> String {
    match value {
        Value::Null => "NULL".to_owned(),
        Value::Text(text) => quote_text(text),
        Value::Integer(i) => format!("CAST('{i}' AS BIGINT)"),
        Value::Double(f) => {
            let text = if f.is_nan() {
                "NaN".to_owned()
            } else if f.is_infinite() {
                if *f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
            } else {
                // Rust's `Debug` for f64 is the shortest text that reads
                // back as the same double.
                format!("{f:?}")
            };
            format!("CAST('{text}' AS DOUBLE PRECISION)")
        }
        Value::Decimal(d) => d.to_string(),
        Value::Boolean(b) => if *b { "TRUE" } else { "FALSE" }.to_owned(),
        Value::Date(days) => {
            let first = days_from_civil(1, 1, 1);
            if *days >= first {
                format!("DATE '{}'", format_date(*days))
            } else {
                format!(
                    "(DATE '0001-01-01' - {})",
                    i64::from(first) - i64::from(*days)
                )
            }
        }
        Value::Timestamp(micros) => {
            let first = i64::from(days_from_civil(1, 1, 1)) * MICROS_PER_DAY;
            if *micros >= first {
                let secs = micros.div_euclid(1_000_000);
                let frac = micros.rem_euclid(1_000_000);
                let rem = secs.rem_euclid(86_400);
                let days = i32::try_from(secs.div_euclid(86_400)).unwrap_or(i32::MAX);
                format!(
                    "CAST('{} {:02}:{:02}:{:02}.{frac:06}+00:00' AS TIMESTAMP WITH TIME ZONE)",
                    format_date(days),
                    rem / 3600,
                    rem / 60 % 60,
                    rem % 60
                )
            } else {
                format!(
                    "(CAST('0001-01-01 00:00:00+00:00' AS TIMESTAMP WITH TIME ZONE) - INTERVAL '1 microsecond' * {})",
                    i128::from(first) - i128::from(*micros)
                )
            }
        }
    }
}

/// Microseconds in a day.
const MICROS_PER_DAY: i64 = 86_400_000_000;

#[cfg(test)]
mod tests {
    use super::*;
    use mlc_common::Column;

    fn col(name: &str, ty: ColumnType, nullable: bool) -> Column {
        Column {
            name: name.into(),
            ty,
            nullable,
            key: false,
        }
    }

    #[test]
    fn identifiers_are_quoted_and_escaped() {
        assert_eq!(quote_ident("Extract"), "\"Extract\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            TableName::extract().qualified("db"),
            "\"db\".\"Extract\".\"Extract\""
        );
        assert_eq!(
            quote_path(Path::new("/tmp/x \"y\".hyper")).unwrap(),
            "\"/tmp/x \"\"y\"\".hyper\""
        );
    }

    #[test]
    fn literals_are_exact_and_escaped() {
        use mlc_common::Decimal;
        assert_eq!(literal(&Value::Text("it's".into())), "'it''s'");
        assert_eq!(literal(&Value::Text(String::new())), "''");
        assert_eq!(literal(&Value::Text("a\0'\\b".into())), "E'a\\000''\\\\b'");
        assert_eq!(literal(&Value::Text("back\\slash".into())), "'back\\slash'");
        assert_eq!(
            literal(&Value::Integer(i64::MIN)),
            "CAST('-9223372036854775808' AS BIGINT)"
        );
        assert_eq!(
            literal(&Value::Double(0.1)),
            "CAST('0.1' AS DOUBLE PRECISION)"
        );
        assert_eq!(
            literal(&Value::Double(f64::NEG_INFINITY)),
            "CAST('-Infinity' AS DOUBLE PRECISION)"
        );
        assert_eq!(literal(&Value::Decimal(Decimal::new(-1230, 2))), "-12.30");
        assert_eq!(literal(&Value::Boolean(false)), "FALSE");
        assert_eq!(literal(&Value::Null), "NULL");
        assert_eq!(literal(&Value::Date(0)), "DATE '1970-01-01'");
        assert_eq!(
            literal(&Value::Date(days_from_civil(0, 12, 31))),
            "(DATE '0001-01-01' - 1)"
        );
        assert_eq!(
            literal(&Value::Timestamp(-1)),
            "CAST('1969-12-31 23:59:59.999999+00:00' AS TIMESTAMP WITH TIME ZONE)"
        );
        let first = i64::from(days_from_civil(1, 1, 1)) * MICROS_PER_DAY;
        assert_eq!(
            literal(&Value::Timestamp(first - 5)),
            "(CAST('0001-01-01 00:00:00+00:00' AS TIMESTAMP WITH TIME ZONE) - INTERVAL '1 microsecond' * 5)"
        );
    }

    #[test]
    fn ddl_from_schema() {
        let schema = Schema {
            columns: vec![
                col("Id", ColumnType::Integer, false),
                col(
                    "Amount",
                    ColumnType::Decimal {
                        precision: 38,
                        scale: 9,
                    },
                    true,
                ),
            ],
        };
        assert_eq!(
            column_definitions(&schema),
            "\"Id\" BIGINT NOT NULL, \"Amount\" NUMERIC(38,9)"
        );
        assert_eq!(column_list(&schema), "\"Id\", \"Amount\"");
        assert!(needs_version_4(&schema));
        let small = Schema {
            columns: vec![col(
                "A",
                ColumnType::Decimal {
                    precision: 18,
                    scale: 2,
                },
                false,
            )],
        };
        assert!(!needs_version_4(&small));
    }

    #[test]
    fn bad_schemas_are_refused() {
        let t = TableName::extract();
        assert!(validate_schema(&t, &Schema::default()).is_err());
        let dup = Schema {
            columns: vec![
                col("A", ColumnType::Text, true),
                col("A", ColumnType::Integer, true),
            ],
        };
        let err = validate_schema(&t, &dup).unwrap_err().to_string();
        assert!(err.contains("\"A\" appears twice"), "{err}");
        let bad = Schema {
            columns: vec![col(
                "N",
                ColumnType::Decimal {
                    precision: 39,
                    scale: 0,
                },
                true,
            )],
        };
        let err = validate_schema(&t, &bad).unwrap_err().to_string();
        assert!(err.contains("NUMERIC(39,0)"), "{err}");
        let bad = Schema {
            columns: vec![col(
                "N",
                ColumnType::Decimal {
                    precision: 4,
                    scale: 5,
                },
                true,
            )],
        };
        assert!(validate_schema(&t, &bad).is_err());
    }
}
