//! Errors: located script errors (at load) and batch failures (at run).

use std::fmt;

/// A mistake in a mapping script, found when it is compiled.
///
/// Displays as `FILE:LINE:COL: column "NAME": message` (the file when known,
/// the output column when the mistake is inside one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptError {
    /// The script's file, when the caller named it.
    pub file: Option<String>,
    /// 1-based line of the mistake.
    pub line: usize,
    /// 1-based character position within the line.
    pub col: usize,
    /// The output column being defined, when inside a `[[column]]`.
    pub column: Option<String>,
    /// What is wrong and, where it helps, what is expected.
    pub message: String,
}

impl ScriptError {
    /// The same error, naming the script's file.
    pub fn with_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }

    /// An error at byte `offset` of `text`.
    pub(crate) fn at(text: &str, offset: usize, column: Option<&str>, message: String) -> Self {
        let (line, col) = line_col(text, offset);
        Self {
            file: None,
            line,
            col,
            column: column.map(str::to_owned),
            message,
        }
    }
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{file}:{}:{}: ", self.line, self.col)?,
            None => write!(f, "mapping script line {}:{}: ", self.line, self.col)?,
        }
        if let Some(column) = &self.column {
            write!(f, "column {column:?}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ScriptError {}

/// 1-based (line, character) of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let mut line = 1;
    let mut line_start = 0;
    for (i, b) in text.as_bytes().iter().enumerate().take(offset) {
        if *b == b'\n' {
            line += 1;
            line_start = i + 1;
        }
    }
    let col = text
        .get(line_start..offset)
        .map(|s| s.chars().count())
        .unwrap_or(offset - line_start)
        + 1;
    (line, col)
}

/// A failure of the mapping itself: the whole batch fails (a bad record
/// never does; it becomes a reject).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The batch is for a resource this script does not map.
    #[error("this mapping maps resource {mapped:?}, not {asked:?}")]
    UnknownResource {
        /// The resource the script declares.
        mapped: String,
        /// The resource asked for.
        asked: String,
    },
    /// A lookup into the tenant's reference data failed (not a miss: a
    /// miss is a null).
    #[error("lookup of {key:?} in reference dataset {dataset:?} failed: {source}")]
    Lookup {
        /// The dataset.
        dataset: String,
        /// The key looked up.
        key: String,
        /// Why.
        #[source]
        source: LookupError,
    },
    /// A batch larger than the row index can count.
    #[error("batch of {0} records is larger than 4294967295")]
    BatchTooLarge(usize),
}

/// Why the host could not answer a lookup.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The tenant has no such dataset.
    #[error("the tenant has no reference dataset {0:?}")]
    UnknownDataset(String),
    /// The reference data cannot be read now.
    #[error("reference data unavailable: {0}")]
    Unavailable(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // after the two-byte é
        assert_eq!(line_col(text, 9), (2, 3));
        let e = ScriptError::at(text, 6, Some("Amount"), "bad".into());
        assert_eq!(
            e.to_string(),
            "mapping script line 2:1: column \"Amount\": bad"
        );
        assert_eq!(
            e.with_file("m/invoices.toml").to_string(),
            "m/invoices.toml:2:1: column \"Amount\": bad"
        );
    }
}
