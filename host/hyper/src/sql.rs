//! SQL text for Hyper: quoted identifiers, table names, column definitions.
//!
//! Hyper quotes identifiers *and database paths* with double quotes; a
//! double quote inside is doubled. Every name built here goes through
//! [`quote_ident`], so column and table names from tenant mappings cannot
//! break out of their identifier.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use mlc_common::{ColumnType, Schema, decimal::MAX_PRECISION};

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
