//! One connection to hyperd for working on `.hyper` files: create, attach,
//! detach, run SQL, stream checked rows in with COPY, and read results back
//! as [`mlc_common::Value`]s.
//!
//! Anything that changes a stored file (applying update actions, appending
//! rows) or reads one back (tests) can use a [`HyperSession`]; the extract
//! writer and [`crate::upsert()`] are built on it.

use std::borrow::Borrow;
use std::path::Path;

use bytes::Bytes;
use futures::{SinkExt, Stream, StreamExt, pin_mut};
use mlc_common::{Decimal, Reject, Row, Schema, Value};
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::encode::{HEADER, RowEncoder};
use crate::sql::{TableName, column_definitions, quote_ident, quote_path, validate_schema};
use crate::{HyperError, Hyperd};

/// Bytes collected before they are sent to hyperd as one COPY message.
pub const COPY_CHUNK_BYTES: usize = 1 << 20;

/// What one COPY stored and refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Rows hyperd stored.
    pub rows_written: u64,
    /// Rows refused before they reached hyperd, with the column at fault.
    pub rejects: Vec<Reject>,
}

/// A column of a query result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultColumn {
    /// Column name.
    pub name: String,
    /// PostgreSQL type name as hyperd reports it (`int8`, `numeric`, ...).
    pub type_name: String,
}

/// A connection to hyperd.
pub struct HyperSession {
    client: Client,
}

impl std::fmt::Debug for HyperSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HyperSession")
            .field("closed", &self.client.is_closed())
            .finish()
    }
}

impl HyperSession {
    /// Opens a session on `hyperd` (restarting it first if it died).
    pub async fn connect(hyperd: &Hyperd) -> Result<Self, HyperError> {
        Ok(Self {
            client: hyperd.connect().await?,
        })
    }

    /// A session over an existing client.
    pub fn from_client(client: Client) -> Self {
        Self { client }
    }

    /// The underlying driver client, for anything not covered here.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates an empty `.hyper` file at `path` (which must not exist). With
    /// `version_4` the file accepts NUMERIC precision above 18; older
    /// Tableau releases may not read it, so ask for it only when needed.
    pub async fn create_database(&self, path: &Path, version_4: bool) -> Result<(), HyperError> {
        if path.exists() {
            return Err(HyperError::Path {
                path: path.to_path_buf(),
                reason: "already exists".into(),
            });
        }
        let mut sql = format!("CREATE DATABASE {}", quote_path(path)?);
        if version_4 {
            sql.push_str(" WITH VERSION 4");
        }
        self.execute(&sql)
            .await
            .map_err(|e| with_context(e, format!("creating {}", path.display())))?;
        Ok(())
    }

    /// Attaches the `.hyper` file at `path` under `alias` for this session.
    pub async fn attach(&self, path: &Path, alias: &str) -> Result<(), HyperError> {
        let sql = format!(
            "ATTACH DATABASE {} AS {}",
            quote_path(path)?,
            quote_ident(alias)
        );
        self.execute(&sql)
            .await
            .map_err(|e| with_context(e, format!("attaching {}", path.display())))?;
        Ok(())
    }

    /// Detaches the database attached as `alias`, releasing its file.
    pub async fn detach(&self, alias: &str) -> Result<(), HyperError> {
        self.execute(&format!("DETACH DATABASE {}", quote_ident(alias)))
            .await?;
        Ok(())
    }

    /// Creates `table` (and its schema when missing) in the database
    /// attached as `database`, with columns from `schema`.
    pub async fn create_table(
        &self,
        database: &str,
        table: &TableName,
        schema: &Schema,
    ) -> Result<(), HyperError> {
        validate_schema(table, schema)?;
        self.execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}.{}",
            quote_ident(database),
            quote_ident(&table.schema)
        ))
        .await?;
        self.execute(&format!(
            "CREATE TABLE {} ({})",
            table.qualified(database),
            column_definitions(schema)
        ))
        .await?;
        Ok(())
    }

    /// Runs one SQL statement (no parameters, no `;`-separated batches) and
    /// returns the number of rows it affected.
    pub async fn execute(&self, sql: &str) -> Result<u64, HyperError> {
        let messages = self
            .client
            .simple_query(sql)
            .await
            .map_err(|e| HyperError::sql(format!("running `{}`", abbreviate(sql)), e))?;
        Ok(messages
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::CommandComplete(n) => Some(*n),
                _ => None,
            })
            .sum())
    }

    /// `BEGIN`.
    pub async fn begin(&self) -> Result<(), HyperError> {
        self.execute("BEGIN").await.map(drop)
    }

    /// `COMMIT`.
    pub async fn commit(&self) -> Result<(), HyperError> {
        self.execute("COMMIT").await.map(drop)
    }

    /// `ROLLBACK`.
    pub async fn rollback(&self) -> Result<(), HyperError> {
        self.execute("ROLLBACK").await.map(drop)
    }

    /// Runs a query and decodes every cell into a [`Value`]: text, integers,
    /// doubles, exact NUMERICs, booleans, dates and timestamps.
    pub async fn query_rows(&self, sql: &str) -> Result<Vec<Vec<Value>>, HyperError> {
        let rows = self
            .client
            .query(sql, &[])
            .await
            .map_err(|e| HyperError::sql(format!("running `{}`", abbreviate(sql)), e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut values = Vec::with_capacity(row.len());
            for (i, column) in row.columns().iter().enumerate() {
                let cell: Cell = row.try_get(i).map_err(|e| HyperError::Decode {
                    context: abbreviate(sql),
                    column: column.name().to_owned(),
                    reason: e.to_string(),
                })?;
                values.push(cell.0);
            }
            out.push(values);
        }
        Ok(out)
    }

    /// The columns a query would return (name and type), without running it.
    pub async fn query_columns(&self, sql: &str) -> Result<Vec<ResultColumn>, HyperError> {
        let statement = self
            .client
            .prepare_typed(sql, &[])
            .await
            .map_err(|e| HyperError::sql(format!("preparing `{}`", abbreviate(sql)), e))?;
        Ok(statement
            .columns()
            .iter()
            .map(|c| ResultColumn {
                name: c.name().to_owned(),
                type_name: c.type_().name().to_owned(),
            })
            .collect())
    }

    /// The tables of the database attached as `database`.
    pub async fn tables(&self, database: &str) -> Result<Vec<TableName>, HyperError> {
        let rows = self
            .query_rows(&format!(
                "SELECT schemaname, tablename FROM {}.pg_catalog.pg_tables ORDER BY 1, 2",
                quote_ident(database)
            ))
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| match r.as_slice() {
                [Value::Text(s), Value::Text(t)] => Some(TableName::new(s.clone(), t.clone())),
                _ => None,
            })
            .collect())
    }

    /// Streams `rows` of `schema` into the existing table named by
    /// `qualified` (already quoted) with one `COPY ... FROM STDIN WITH
    /// (FORMAT hyperbinary)`. Each value is checked first; refused rows come
    /// back as rejects and are not sent. At most about
    /// [`COPY_CHUNK_BYTES`] of encoded rows are held at a time.
    pub async fn copy_rows<S>(
        &self,
        qualified: &str,
        schema: &Schema,
        rows: S,
    ) -> Result<WriteReport, HyperError>
    where
        S: Stream,
        S::Item: Borrow<Row>,
    {
        let encoder = RowEncoder::new(schema);
        copy_encoded(&self.client, qualified, &encoder, rows, None).await
    }
}

/// A suffix appended after each encoded row: a NOT NULL BIGINT counting
/// from the given start (the upsert stage's arrival order).
pub(crate) struct Sequence(pub(crate) i64);

/// The COPY loop shared by the writer, [`HyperSession::copy_rows`] and the
/// upsert stage.
pub(crate) async fn copy_encoded<S>(
    client: &Client,
    qualified: &str,
    encoder: &RowEncoder,
    rows: S,
    mut sequence: Option<Sequence>,
) -> Result<WriteReport, HyperError>
where
    S: Stream,
    S::Item: Borrow<Row>,
{
    let context = || format!("COPY into {qualified}");
    let sink = client
        .copy_in::<_, Bytes>(&format!(
            "COPY {qualified} FROM STDIN WITH (FORMAT hyperbinary)"
        ))
        .await
        .map_err(|e| HyperError::sql(context(), e))?;
    pin_mut!(sink);
    pin_mut!(rows);
    let capacity = COPY_CHUNK_BYTES + COPY_CHUNK_BYTES / 8;
    let mut buf = Vec::with_capacity(capacity);
    buf.extend_from_slice(&HEADER);
    let mut rejects = Vec::new();
    while let Some(row) = rows.next().await {
        match encoder.encode_row(row.borrow(), &mut buf) {
            Ok(()) => {
                if let Some(Sequence(next)) = sequence.as_mut() {
                    buf.extend_from_slice(&next.to_le_bytes());
                    *next += 1;
                }
            }
            Err(reject) => rejects.push(reject),
        }
        if buf.len() >= COPY_CHUNK_BYTES {
            let chunk = std::mem::replace(&mut buf, Vec::with_capacity(capacity));
            sink.send(Bytes::from(chunk))
                .await
                .map_err(|e| HyperError::sql(context(), e))?;
            // Let the connection task hand the chunk to the socket now, so
            // hyperd works on it while the next chunk is encoded (a task
            // woken from here would otherwise wait until this one blocks).
            tokio::task::yield_now().await;
        }
    }
    if !buf.is_empty() {
        sink.send(Bytes::from(buf))
            .await
            .map_err(|e| HyperError::sql(context(), e))?;
    }
    let rows_written = sink
        .as_mut()
        .finish()
        .await
        .map_err(|e| HyperError::sql(context(), e))?;
    Ok(WriteReport {
        rows_written,
        rejects,
    })
}

/// Adds what was being done to a SQL error's context.
fn with_context(error: HyperError, context: String) -> HyperError {
    match error {
        HyperError::Sql { source, .. } => HyperError::Sql { context, source },
        other => other,
    }
}

/// The first line of a statement, shortened, for error messages.
fn abbreviate(sql: &str) -> String {
    const MAX: usize = 160;
    let line = sql.lines().next().unwrap_or_default();
    if line.len() <= MAX {
        return line.to_owned();
    }
    let mut end = MAX;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

/// Days from 1970-01-01 to 2000-01-01, PostgreSQL's binary epoch.
const PG_EPOCH_DAYS: i64 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = PG_EPOCH_DAYS * 86_400_000_000;

/// One result cell decoded into a [`Value`].
struct Cell(Value);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let value = match *ty {
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                Value::Text(<&str>::from_sql(ty, raw)?.to_owned())
            }
            Type::INT8 => Value::Integer(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Integer(i64::from(i32::from_sql(ty, raw)?)),
            Type::INT2 => Value::Integer(i64::from(i16::from_sql(ty, raw)?)),
            Type::OID => Value::Integer(i64::from(u32::from_sql(ty, raw)?)),
            Type::FLOAT8 => Value::Double(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Double(f64::from(f32::from_sql(ty, raw)?)),
            Type::BOOL => Value::Boolean(bool::from_sql(ty, raw)?),
            Type::NUMERIC => Value::Decimal(decode_numeric(raw)?),
            Type::DATE => {
                let days = i64::from(i32::from_sql(ty, raw)?) + PG_EPOCH_DAYS;
                Value::Date(i32::try_from(days)?)
            }
            Type::TIMESTAMP | Type::TIMESTAMPTZ => {
                let micros = i64::from_sql(ty, raw)?;
                Value::Timestamp(
                    micros
                        .checked_add(PG_EPOCH_MICROS)
                        .ok_or("timestamp out of range")?,
                )
            }
            ref other => return Err(format!("unsupported result type {other}").into()),
        };
        Ok(Self(value))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// PostgreSQL's binary NUMERIC (base-10000 digit groups) as an exact
/// [`Decimal`] at the value's display scale.
fn decode_numeric(raw: &[u8]) -> Result<Decimal, Box<dyn std::error::Error + Sync + Send>> {
    let word = |i: usize| -> Result<u16, String> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "truncated NUMERIC".to_owned())
    };
    let ndigits = usize::from(word(0)?);
    let weight = i64::from(word(1)? as i16);
    let sign = word(2)?;
    let dscale = usize::from(word(3)?);
    let negative = match sign {
        0x0000 => false,
        0x4000 => true,
        _ => return Err("NUMERIC NaN or infinity has no exact value".into()),
    };
    let mut groups = Vec::with_capacity(ndigits);
    for i in 0..ndigits {
        groups.push(word(4 + i)?);
    }
    let group = |index: i64| -> u16 {
        usize::try_from(index)
            .ok()
            .and_then(|i| groups.get(i).copied())
            .unwrap_or(0)
    };
    // Group k holds digits for 10000^(weight - k).
    let mut text = String::with_capacity(8 + 4 * ndigits + dscale);
    if negative {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        for k in 0..=weight {
            text.push_str(&format!("{:04}", group(k)));
        }
    }
    if dscale > 0 {
        let mut frac = String::with_capacity(dscale + 4);
        let mut k = weight + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", group(k)));
            k += 1;
        }
        frac.truncate(dscale);
        text.push('.');
        text.push_str(&frac);
    }
    // Leading zeros of the integer part are not significant for the parser.
    Ok(Decimal::parse(&text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut raw = Vec::new();
        for w in [ndigits, weight as u16, sign, dscale] {
            raw.extend(w.to_be_bytes());
        }
        for d in digits {
            raw.extend(d.to_be_bytes());
        }
        raw
    }

    #[test]
    fn numeric_binary_decodes_exactly() {
        // 12345678901234567890.123456789 = 1234 5678 9012 3456 7890 . 1234 5678 9000
        let raw = numeric(
            8,
            4,
            0,
            9,
            &[1234, 5678, 9012, 3456, 7890, 1234, 5678, 9000],
        );
        assert_eq!(
            decode_numeric(&raw).unwrap().to_string(),
            "12345678901234567890.123456789"
        );
        // -0.05 at scale 2: one group 500 with weight -1.
        let raw = numeric(1, -1, 0x4000, 2, &[500]);
        assert_eq!(decode_numeric(&raw).unwrap().to_string(), "-0.05");
        // 120000 with trailing zero groups omitted: digits [12], weight 1.
        let raw = numeric(1, 1, 0, 0, &[12]);
        assert_eq!(decode_numeric(&raw).unwrap().to_string(), "120000");
        // Zero at scale 2.
        let raw = numeric(0, 0, 0, 2, &[]);
        assert_eq!(decode_numeric(&raw).unwrap().to_string(), "0.00");
        // 0.0001 at scale 9: group 1 at weight -1.
        let raw = numeric(1, -1, 0, 9, &[1]);
        assert_eq!(decode_numeric(&raw).unwrap().to_string(), "0.000100000");
        assert!(decode_numeric(&numeric(0, 0, 0xC000, 0, &[])).is_err());
        assert!(decode_numeric(&[0, 1]).is_err());
    }

    #[test]
    fn long_statements_are_abbreviated_on_a_char_boundary() {
        let sql = format!("SELECT '{}'", "é".repeat(200));
        let short = abbreviate(&sql);
        assert!(short.ends_with('…'));
        assert!(short.len() <= 164);
        assert_eq!(abbreviate("SELECT 1\nFROM x"), "SELECT 1");
    }
}
