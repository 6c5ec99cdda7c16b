//! Writing a `.hyper` extract: create the file (or add a table to one),
//! define the table from a [`Schema`], stream checked rows in, detach so the
//! file can be published.
//!
//! ```no_run
//! # async fn demo(hyperd: &mlc_hyper::Hyperd, schema: &mlc_common::Schema,
//! #               rows: Vec<mlc_common::Row>) -> Result<(), mlc_hyper::HyperError> {
//! use mlc_hyper::{HyperWriter, TableName};
//! let mut writer = HyperWriter::create(hyperd, "/tmp/out.hyper".as_ref(),
//!                                      TableName::extract(), schema).await?;
//! let report = writer.write_rows(&rows).await?;   // callable repeatedly
//! for reject in &report.rejects { eprintln!("{reject:?}"); }
//! let summary = writer.finish().await?;            // file detached, ready
//! # Ok(()) }
//! ```

use std::borrow::Borrow;
use std::path::{Path, PathBuf};

use futures::Stream;
use mlc_common::{Row, Schema};

use crate::encode::RowEncoder;
use crate::session::{HyperSession, WriteReport, copy_encoded};
use crate::sql::{TableName, needs_version_4, validate_schema};
use crate::{HyperError, Hyperd};

/// The alias the writer attaches its file under (per connection).
const ALIAS: &str = "mlc_extract";

/// What a finished extract holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteSummary {
    /// The file (absolute).
    pub path: PathBuf,
    /// The table written.
    pub table: TableName,
    /// Rows stored over all [`HyperWriter::write_rows`] calls.
    pub rows_written: u64,
    /// Rows refused over all calls.
    pub rejected: u64,
    /// File size after detaching.
    pub file_bytes: u64,
}

/// Writes one table of a `.hyper` file.
#[derive(Debug)]
pub struct HyperWriter {
    session: HyperSession,
    path: PathBuf,
    table: TableName,
    qualified: String,
    encoder: RowEncoder,
    rows_written: u64,
    rejected: u64,
}

impl HyperWriter {
    /// Creates `path` (which must not exist) with `table` holding the
    /// columns of `schema`: NOT NULL where a column is not nullable; the file
    /// is created `WITH VERSION 4` only when a NUMERIC needs precision above
    /// 18. If a step fails, the half-made file is removed.
    pub async fn create(
        hyperd: &Hyperd,
        path: &Path,
        table: TableName,
        schema: &Schema,
    ) -> Result<Self, HyperError> {
        validate_schema(&table, schema)?;
        let path = absolute(path)?;
        let session = HyperSession::connect(hyperd).await?;
        session
            .create_database(&path, needs_version_4(schema))
            .await?;
        let prepared = async {
            session.attach(&path, ALIAS).await?;
            session.create_table(ALIAS, &table, schema).await
        }
        .await;
        if let Err(error) = prepared {
            let _ = session.detach(ALIAS).await;
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove half-made extract");
            }
            return Err(error);
        }
        tracing::debug!(path = %path.display(), %table, columns = schema.columns.len(), "extract created");
        Ok(Self::new(session, path, table, schema))
    }

    /// Adds `table` with the columns of `schema` to the existing `.hyper`
    /// file at `path` (for files with several tables, such as update
    /// payloads) and writes into it. A NUMERIC above precision 18 needs a
    /// file created for it (see [`create`](Self::create)).
    pub async fn add_table(
        hyperd: &Hyperd,
        path: &Path,
        table: TableName,
        schema: &Schema,
    ) -> Result<Self, HyperError> {
        validate_schema(&table, schema)?;
        let path = absolute(path)?;
        let session = HyperSession::connect(hyperd).await?;
        session.attach(&path, ALIAS).await?;
        if let Err(error) = session.create_table(ALIAS, &table, schema).await {
            let _ = session.detach(ALIAS).await;
            return Err(error);
        }
        tracing::debug!(path = %path.display(), %table, columns = schema.columns.len(), "table added");
        Ok(Self::new(session, path, table, schema))
    }

    fn new(session: HyperSession, path: PathBuf, table: TableName, schema: &Schema) -> Self {
        Self {
            qualified: table.qualified(ALIAS),
            session,
            path,
            table,
            encoder: RowEncoder::new(schema),
            rows_written: 0,
            rejected: 0,
        }
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Streams `rows` into the table (one COPY; about 1 MB is sent at a
    /// time, never the whole input). Values that do not fit their column
    /// are returned as rejects and not stored; the rest are. May be called
    /// any number of times.
    pub async fn write_rows<I>(&mut self, rows: I) -> Result<WriteReport, HyperError>
    where
        I: IntoIterator,
        I::Item: Borrow<Row>,
    {
        self.write_stream(futures::stream::iter(rows)).await
    }

    /// [`write_rows`](Self::write_rows) for rows that arrive asynchronously.
    pub async fn write_stream<S>(&mut self, rows: S) -> Result<WriteReport, HyperError>
    where
        S: Stream,
        S::Item: Borrow<Row>,
    {
        let report = copy_encoded(
            self.session.client(),
            &self.qualified,
            &self.encoder,
            rows,
            None,
        )
        .await
        .map_err(|e| match e {
            HyperError::Sql { context, source } => HyperError::Sql {
                context: format!("{context} of {}", self.path.display()),
                source,
            },
            other => other,
        })?;
        self.rows_written += report.rows_written;
        self.rejected += report.rejects.len() as u64;
        tracing::debug!(
            path = %self.path.display(),
            rows = report.rows_written,
            rejects = report.rejects.len(),
            "rows written"
        );
        Ok(report)
    }

    /// Detaches the file so it can be published or attached elsewhere.
    pub async fn finish(self) -> Result<WriteSummary, HyperError> {
        self.session.detach(ALIAS).await.map_err(|e| match e {
            HyperError::Sql { source, .. } => HyperError::Sql {
                context: format!("detaching {}", self.path.display()),
                source,
            },
            other => other,
        })?;
        let file_bytes = std::fs::metadata(&self.path)
            .map_err(|e| HyperError::io(format!("reading {}", self.path.display()), e))?
            .len();
        Ok(WriteSummary {
            path: self.path,
            table: self.table,
            rows_written: self.rows_written,
            rejected: self.rejected,
            file_bytes,
        })
    }
}

fn absolute(path: &Path) -> Result<PathBuf, HyperError> {
    std::path::absolute(path)
        .map_err(|e| HyperError::io(format!("resolving {}", path.display()), e))
}
