//! Upserting rows into a table of an attached `.hyper` file.
//!
//! Hyper has no enforced keys, no `ON CONFLICT` and no `MERGE`. The recipe
//! (measured in `reference/hyper.md`): COPY the rows into a temporary stage
//! table, then in one transaction delete the target rows whose key appears
//! in the stage and insert the stage. Within one batch the last row for a
//! key wins: the stage carries an arrival number and only the newest row
//! per key is inserted. Key columns that are nullable match with
//! `IS NOT DISTINCT FROM` (a NULL key replaces a NULL key), the others
//! with `=`.

use std::borrow::Borrow;
use std::sync::atomic::{AtomicU64, Ordering};

use mlc_common::{Column, ColumnType, Reject, Row, Schema};

use crate::HyperError;
use crate::encode::RowEncoder;
use crate::session::{HyperSession, Sequence, copy_encoded};
use crate::sql::{TableName, column_definitions, column_list, quote_ident, validate_schema};

/// Name of the stage's arrival-order column.
const SEQ_COLUMN: &str = "__mlc_seq";
/// Distinguishes stage tables of concurrent upserts on one session.
static STAGE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// What an upsert did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpsertReport {
    /// Rows accepted into the stage.
    pub staged: u64,
    /// Target rows replaced (deleted because their key was staged).
    pub deleted: u64,
    /// Rows inserted (one per distinct key staged).
    pub inserted: u64,
    /// Rows refused before staging, with the column at fault.
    pub rejects: Vec<Reject>,
}

/// Upserts `rows` (values in `schema` order) into `table` of the database
/// attached as `database` on `session`, keyed on `keys` (column names of
/// `schema`). The target table must have `schema`'s columns. Delete and
/// insert run in one transaction: on any error nothing changes.
pub async fn upsert<I>(
    session: &HyperSession,
    database: &str,
    table: &TableName,
    schema: &Schema,
    keys: &[&str],
    rows: I,
) -> Result<UpsertReport, HyperError>
where
    I: IntoIterator,
    I::Item: Borrow<Row>,
{
    validate_schema(table, schema)?;
    let key_columns = key_columns(table, schema, keys)?;
    let stage = format!(
        "mlc_stage_{}_{}",
        std::process::id(),
        STAGE_COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let stage_schema = Schema {
        columns: schema
            .columns
            .iter()
            .cloned()
            .chain(std::iter::once(Column {
                name: SEQ_COLUMN.into(),
                ty: ColumnType::Integer,
                nullable: false,
                key: false,
            }))
            .collect(),
    };
    let stage_ident = quote_ident(&stage);
    session
        .execute(&format!(
            "CREATE TEMPORARY TABLE {stage_ident} ({})",
            column_definitions(&stage_schema)
        ))
        .await?;
    let result = stage_and_apply(
        session,
        database,
        table,
        schema,
        &key_columns,
        &stage_ident,
        rows,
    )
    .await;
    if let Err(error) = session
        .execute(&format!("DROP TABLE IF EXISTS {stage_ident}"))
        .await
    {
        tracing::warn!(%error, stage, "cannot drop upsert stage table");
    }
    result
}

async fn stage_and_apply<I>(
    session: &HyperSession,
    database: &str,
    table: &TableName,
    schema: &Schema,
    key_columns: &[&Column],
    stage: &str,
    rows: I,
) -> Result<UpsertReport, HyperError>
where
    I: IntoIterator,
    I::Item: Borrow<Row>,
{
    let encoder = RowEncoder::new(schema);
    let staged = copy_encoded(
        session.client(),
        stage,
        &encoder,
        futures::stream::iter(rows),
        Some(Sequence(0)),
    )
    .await?;
    let target = table.qualified(database);
    let matches = key_columns
        .iter()
        .map(|c| {
            let name = quote_ident(&c.name);
            if c.nullable {
                format!("s.{name} IS NOT DISTINCT FROM t.{name}")
            } else {
                format!("s.{name} = t.{name}")
            }
        })
        .collect::<Vec<_>>()
        .join(" AND ");
    let partition = key_columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let columns = column_list(schema);
    let seq = quote_ident(SEQ_COLUMN);
    let delete =
        format!("DELETE FROM {target} t WHERE EXISTS (SELECT 1 FROM {stage} s WHERE {matches})");
    let insert = format!(
        "INSERT INTO {target} ({columns}) SELECT {columns} FROM \
         (SELECT *, ROW_NUMBER() OVER (PARTITION BY {partition} ORDER BY {seq} DESC) AS \"__mlc_rn\" \
          FROM {stage}) AS newest WHERE \"__mlc_rn\" = 1"
    );
    session.begin().await?;
    let applied = async {
        let deleted = session.execute(&delete).await?;
        let inserted = session.execute(&insert).await?;
        session.commit().await?;
        Ok::<_, HyperError>((deleted, inserted))
    }
    .await;
    let (deleted, inserted) = match applied {
        Ok(counts) => counts,
        Err(error) => {
            if let Err(e) = session.rollback().await {
                tracing::warn!(error = %e, "rollback after failed upsert failed");
            }
            return Err(match error {
                HyperError::Sql { source, .. } => HyperError::Sql {
                    context: format!("upserting into {table} of database {database}"),
                    source,
                },
                other => other,
            });
        }
    };
    tracing::debug!(%table, staged = staged.rows_written, deleted, inserted, "upserted");
    Ok(UpsertReport {
        staged: staged.rows_written,
        deleted,
        inserted,
        rejects: staged.rejects,
    })
}

/// The schema columns named by `keys`, in the order given.
fn key_columns<'s>(
    table: &TableName,
    schema: &'s Schema,
    keys: &[&str],
) -> Result<Vec<&'s Column>, HyperError> {
    if keys.is_empty() {
        return Err(HyperError::Schema {
            table: table.to_string(),
            reason: "an upsert needs at least one key column".into(),
        });
    }
    keys.iter()
        .map(|key| {
            schema
                .columns
                .iter()
                .find(|c| c.name == *key)
                .ok_or_else(|| HyperError::Schema {
                    table: table.to_string(),
                    reason: format!("key column {key:?} is not in the schema"),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_name_schema_columns() {
        let schema = Schema {
            columns: vec![Column {
                name: "Id".into(),
                ty: ColumnType::Integer,
                nullable: false,
                key: true,
            }],
        };
        let t = TableName::extract();
        assert_eq!(key_columns(&t, &schema, &["Id"]).unwrap().len(), 1);
        let err = key_columns(&t, &schema, &["Nope"]).unwrap_err().to_string();
        assert!(
            err.contains("key column \"Nope\" is not in the schema"),
            "{err}"
        );
        assert!(key_columns(&t, &schema, &[]).is_err());
    }
}
