//! The sandbox's Hyper engine: one `hyperd` for all data sources. Each
//! operation takes its own connection, attaches the files it needs under
//! fresh aliases, and detaches them again, so the stored `.hyper` files are
//! never held open between requests. Callers serialise operations per data
//! source (see `state::Datasource::lock`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use mlc_common::{Decimal, Value};
use mlc_hyper::Hyperd;
use mlc_hyper::tokio_postgres::types::{FromSql, Type};
use mlc_hyper::tokio_postgres::{self, Client};

use crate::actions::{self, Action, ActionError};

/// What can go wrong talking to hyperd.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No connection could be made.
    #[error("hyperd is not available: {0}")]
    Connect(#[from] mlc_hyper::HyperError),
    /// A statement failed.
    #[error("{context}: {source}")]
    Sql {
        /// What was being done.
        context: String,
        /// The driver error (hyperd's message inside).
        source: tokio_postgres::Error,
    },
    /// The file is not a readable Hyper database.
    #[error("{path} is not a valid .hyper file: {reason}")]
    NotHyper {
        /// The file.
        path: PathBuf,
        /// hyperd's answer.
        reason: String,
    },
    /// An update action could not be applied.
    #[error(transparent)]
    Action(#[from] ActionError),
    /// A value came back in a form the read-back does not know.
    #[error("cannot decode column {column} of type {ty}: {reason}")]
    Decode {
        /// Column name.
        column: String,
        /// SQL type name.
        ty: String,
        /// Why.
        reason: String,
    },
}

/// One table of a `.hyper` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableInfo {
    /// Schema name.
    pub schema: String,
    /// Table name.
    pub name: String,
    /// Columns in order: (name, SQL type text).
    pub columns: Vec<(String, String)>,
}

/// The shared hyperd and how to reach it.
#[derive(Debug)]
pub struct Engine {
    hyperd: Hyperd,
    aliases: AtomicU64,
}

/// Quotes an SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl Engine {
    /// Wraps a started hyperd.
    pub fn new(hyperd: Hyperd) -> Self {
        Self {
            hyperd,
            aliases: AtomicU64::new(0),
        }
    }

    /// Stops hyperd.
    pub async fn shutdown(&self) -> Result<(), EngineError> {
        Ok(self.hyperd.shutdown().await?)
    }

    fn alias(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.aliases.fetch_add(1, Ordering::Relaxed))
    }

    async fn exec(client: &Client, sql: &str, context: &str) -> Result<u64, EngineError> {
        tracing::trace!(sql, "hyperd statement");
        client
            .execute(sql, &[])
            .await
            .map_err(|source| EngineError::Sql {
                context: context.to_owned(),
                source,
            })
    }

    async fn attach(client: &Client, path: &Path, alias: &str) -> Result<(), EngineError> {
        let sql = format!(
            "ATTACH DATABASE {} AS {}",
            ident(&path.to_string_lossy()),
            ident(alias)
        );
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| EngineError::NotHyper {
                path: path.to_owned(),
                reason: db_message(&e),
            })
    }

    async fn detach(client: &Client, alias: &str) {
        if let Err(e) = client
            .batch_execute(&format!("DETACH DATABASE {}", ident(alias)))
            .await
        {
            tracing::warn!(alias, error = %db_message(&e), "detaching a database failed");
        }
    }

    /// Lists the user tables of an attached database with their columns.
    async fn tables_of(client: &Client, alias: &str) -> Result<Vec<TableInfo>, EngineError> {
        let a = ident(alias);
        let sql = format!(
            "SELECT n.nspname::TEXT, c.relname::TEXT, a.attname::TEXT, format_type(a.atttypid, a.atttypmod)::TEXT \
             FROM {a}.pg_catalog.pg_attribute a \
             JOIN {a}.pg_catalog.pg_class c ON a.attrelid = c.oid \
             JOIN {a}.pg_catalog.pg_namespace n ON c.relnamespace = n.oid \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_temp') AND a.attnum > 0 \
             ORDER BY n.nspname, c.relname, a.attnum"
        );
        let rows = client
            .query(sql.as_str(), &[])
            .await
            .map_err(|source| EngineError::Sql {
                context: "listing tables".to_owned(),
                source,
            })?;
        let mut tables: Vec<TableInfo> = Vec::new();
        for row in rows {
            let schema: String = row.get(0);
            let name: String = row.get(1);
            let column: String = row.get(2);
            let ty: String = row.get(3);
            match tables.last_mut() {
                Some(t) if t.schema == schema && t.name == name => t.columns.push((column, ty)),
                _ => tables.push(TableInfo {
                    schema,
                    name,
                    columns: vec![(column, ty)],
                }),
            }
        }
        Ok(tables)
    }

    /// Opens a file in hyperd and lists its tables; an error means the file
    /// is not a usable `.hyper` database.
    pub async fn inspect(&self, path: &Path) -> Result<Vec<TableInfo>, EngineError> {
        let client = self.hyperd.connect().await?;
        let alias = self.alias("inspect");
        Self::attach(&client, path, &alias).await?;
        let tables = Self::tables_of(&client, &alias).await;
        Self::detach(&client, &alias).await;
        tables
    }

    /// Applies update actions to `target` (optionally reading `payload`) in
    /// one transaction: all or nothing. Returns rows affected per action.
    pub async fn apply(
        &self,
        target: &Path,
        payload: Option<&Path>,
        actions: &[Action],
    ) -> Result<Vec<u64>, EngineError> {
        let client = self.hyperd.connect().await?;
        let target_alias = self.alias("target");
        Self::attach(&client, target, &target_alias).await?;
        let source_alias = self.alias("payload");
        if let Some(payload) = payload
            && let Err(e) = Self::attach(&client, payload, &source_alias).await
        {
            Self::detach(&client, &target_alias).await;
            return Err(e);
        }
        let result = self
            .apply_attached(
                &client,
                &target_alias,
                payload.map(|_| source_alias.as_str()),
                actions,
            )
            .await;
        if payload.is_some() {
            Self::detach(&client, &source_alias).await;
        }
        Self::detach(&client, &target_alias).await;
        result
    }

    async fn apply_attached(
        &self,
        client: &Client,
        target_alias: &str,
        source_alias: Option<&str>,
        actions: &[Action],
    ) -> Result<Vec<u64>, EngineError> {
        let target_tables = Self::tables_of(client, target_alias).await?;
        let source_tables = match source_alias {
            Some(alias) => Self::tables_of(client, alias).await?,
            None => Vec::new(),
        };
        let mut plans = Vec::with_capacity(actions.len());
        for (index, action) in actions.iter().enumerate() {
            plans.push(actions::plan(
                index,
                action,
                target_alias,
                &target_tables,
                source_alias,
                &source_tables,
            )?);
        }
        Self::exec(client, "BEGIN", "starting the update transaction").await?;
        let mut affected = Vec::with_capacity(plans.len());
        for (index, statements) in plans.iter().enumerate() {
            let mut count = 0;
            for sql in statements {
                match client.execute(sql.as_str(), &[]).await {
                    Ok(n) => count += n,
                    Err(e) => {
                        let _ = client.batch_execute("ROLLBACK").await;
                        return Err(ActionError::Failed {
                            index,
                            action: actions[index].kind.name().to_owned(),
                            reason: db_message(&e),
                        }
                        .into());
                    }
                }
            }
            affected.push(count);
        }
        if let Err(e) = client.batch_execute("COMMIT").await {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(EngineError::Sql {
                context: "committing the update".to_owned(),
                source: e,
            });
        }
        Ok(affected)
    }

    /// Appends every table of `payload` to the same-named table of `target`
    /// (columns matched by name), in one transaction.
    pub async fn append(&self, target: &Path, payload: &Path) -> Result<u64, EngineError> {
        let source_tables = self.inspect(payload).await?;
        let list: Vec<Action> = source_tables
            .iter()
            .map(|table| Action::append_table(&table.schema, &table.name))
            .collect();
        let affected = self.apply(target, Some(payload), &list).await?;
        Ok(affected.iter().sum())
    }

    /// Reads every row of `schema.table` ordered by `order_by` columns.
    pub async fn rows(
        &self,
        path: &Path,
        schema: &str,
        table: &str,
        order_by: &[&str],
    ) -> Result<Vec<Vec<Value>>, EngineError> {
        let client = self.hyperd.connect().await?;
        let alias = self.alias("read");
        Self::attach(&client, path, &alias).await?;
        let mut sql = format!(
            "SELECT * FROM {}.{}.{}",
            ident(&alias),
            ident(schema),
            ident(table)
        );
        if !order_by.is_empty() {
            let cols: Vec<String> = order_by.iter().map(|c| ident(c)).collect();
            sql.push_str(" ORDER BY ");
            sql.push_str(&cols.join(", "));
        }
        let result = client.query(sql.as_str(), &[]).await;
        Self::detach(&client, &alias).await;
        let rows = result.map_err(|source| EngineError::Sql {
            context: format!("reading {schema}.{table}"),
            source,
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut values = Vec::with_capacity(row.len());
            for (i, column) in row.columns().iter().enumerate() {
                let raw: Raw = row.try_get(i).map_err(|e| EngineError::Decode {
                    column: column.name().to_owned(),
                    ty: column.type_().name().to_owned(),
                    reason: e.to_string(),
                })?;
                values.push(raw.0.map_err(|reason| EngineError::Decode {
                    column: column.name().to_owned(),
                    ty: column.type_().name().to_owned(),
                    reason,
                })?);
            }
            out.push(values);
        }
        Ok(out)
    }
}

/// hyperd's own message from a driver error.
pub fn db_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => error.to_string(),
    }
}

/// A value decoded from PostgreSQL binary format into a [`Value`].
struct Raw(Result<Value, String>);

/// Microseconds between 1970-01-01 and 2000-01-01 (the PostgreSQL epoch).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days between 1970-01-01 and 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

impl<'a> FromSql<'a> for Raw {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self(decode(ty, raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self(Ok(Value::Null)))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

fn fixed<const N: usize>(raw: &[u8]) -> Result<[u8; N], String> {
    raw.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", raw.len()))
}

fn decode(ty: &Type, raw: &[u8]) -> Result<Value, String> {
    Ok(match *ty {
        Type::BOOL => Value::Boolean(raw.first().copied().unwrap_or(0) != 0),
        Type::INT2 => Value::Integer(i64::from(i16::from_be_bytes(fixed(raw)?))),
        Type::INT4 => Value::Integer(i64::from(i32::from_be_bytes(fixed(raw)?))),
        Type::INT8 => Value::Integer(i64::from_be_bytes(fixed(raw)?)),
        Type::FLOAT4 => Value::Double(f64::from(f32::from_be_bytes(fixed(raw)?))),
        Type::FLOAT8 => Value::Double(f64::from_be_bytes(fixed(raw)?)),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
            Value::Text(String::from_utf8(raw.to_vec()).map_err(|e| e.to_string())?)
        }
        Type::DATE => Value::Date(i32::from_be_bytes(fixed(raw)?) + PG_EPOCH_DAYS),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            Value::Timestamp(i64::from_be_bytes(fixed(raw)?) + PG_EPOCH_MICROS)
        }
        Type::NUMERIC => Value::Decimal(decode_numeric(raw)?),
        _ => return Err(format!("unsupported type {}", ty.name())),
    })
}

/// PostgreSQL binary NUMERIC: ndigits, weight, sign, dscale, then base-10000
/// digits.
fn decode_numeric(raw: &[u8]) -> Result<Decimal, String> {
    let word = |i: usize| -> Result<i16, String> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "truncated numeric".to_owned())
    };
    let ndigits = usize::try_from(word(0)?).map_err(|e| e.to_string())?;
    let weight = i32::from(word(1)?);
    let sign = word(2)? as u16;
    let dscale = u8::try_from(word(3)?).map_err(|e| e.to_string())?;
    if sign == 0xC000 {
        return Err("NaN".to_owned());
    }
    // value = sum(digit[i] * 10000^(weight - i)); scale it by 10^dscale.
    let mut unscaled: i128 = 0;
    let overflow = || "numeric out of range".to_owned();
    for i in 0..ndigits {
        let digit = i128::from(word(4 + i)?);
        unscaled = unscaled
            .checked_mul(10_000)
            .and_then(|v| v.checked_add(digit))
            .ok_or_else(overflow)?;
    }
    // unscaled currently = value * 10000^(ndigits - 1 - weight)
    let frac_groups = i32::try_from(ndigits).map_err(|e| e.to_string())? - 1 - weight;
    let current_scale = frac_groups * 4;
    let target = i32::from(dscale);
    if current_scale > target {
        let div = 10i128
            .checked_pow(u32::try_from(current_scale - target).map_err(|e| e.to_string())?)
            .ok_or_else(overflow)?;
        unscaled /= div;
    } else if current_scale < target {
        let mul = 10i128
            .checked_pow(u32::try_from(target - current_scale).map_err(|e| e.to_string())?)
            .ok_or_else(overflow)?;
        unscaled = unscaled.checked_mul(mul).ok_or_else(overflow)?;
    }
    if sign == 0x4000 {
        unscaled = -unscaled;
    }
    Ok(Decimal::new(unscaled, dscale))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(words: &[i16]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    #[test]
    fn numeric_decoding() {
        // 12345.67: digits [1, 2345, 6700], weight 1, scale 2
        let raw = numeric(&[3, 1, 0, 2, 1, 2345, 6700]);
        assert_eq!(decode_numeric(&raw).unwrap(), Decimal::new(1_234_567, 2));
        // -0.05: digits [500], weight -1, scale 2
        let raw = numeric(&[1, -1, 0x4000, 2, 500]);
        assert_eq!(decode_numeric(&raw).unwrap(), Decimal::new(-5, 2));
        // 20000: digits [2], weight 1, scale 0
        let raw = numeric(&[1, 1, 0, 0, 2]);
        assert_eq!(decode_numeric(&raw).unwrap(), Decimal::new(20_000, 0));
        // 0 with scale 2
        let raw = numeric(&[0, 0, 0, 2]);
        assert_eq!(decode_numeric(&raw).unwrap(), Decimal::new(0, 2));
    }
}
