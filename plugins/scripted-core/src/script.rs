//! Mapping scripts: reading the TOML, compiling it into a plan, and running
//! the plan over a batch of records.
//!
//! Compilation happens once (in the guest's `configure`): every field path
//! the columns and the filter use gets a *slot*, and the paths are arranged
//! into per-object [`Table`]s so a record is read in one pass. Mapping a
//! record then means: scan it into the slots, walk the expanded child
//! collections (if any), and per output row evaluate the filter and each
//! column.
//!
//! A script either compiles or is refused with a [`ScriptError`] at its
//! line and column, whatever its text: the TOML reader caps nesting
//! (80 levels), expressions nest at most [`crate::expr::MAX_EXPR_DEPTH`]
//! levels, and a field path or `expand` has at most [`MAX_PATH_DEPTH`]
//! segments. The property tests in `tests/script_props.rs` generate
//! scripts and hold them to that.

use std::collections::HashMap;

use mlc_common::{Cell, Column, ColumnType, MappedBatch, Reject, Row, Schema, Value};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::{MapError, ScriptError};
use crate::eval::{self, Context, Fault, Lookup, Stop, Val};
use crate::expr::{self, Expr, Lit};
use crate::json::{self, Raw, Table};
use crate::reads::Reads;

/// The most segments a field path (`a.b.c`) or `expand` may have. A record
/// nests at most 127 arrays and objects (the host parses it with
/// `serde_json`, which stops there), so no longer path can match; the
/// scanner and the child walk recurse once per segment, so the limit also
/// bounds their stack.
pub const MAX_PATH_DEPTH: usize = 127;

/// A compiled mapping script for one resource.
#[derive(Clone, Debug)]
pub struct Script {
    resource: String,
    description: Option<String>,
    schema: Schema,
    columns: Vec<ColumnPlan>,
    filter: Option<Expr>,
    /// Scan tables; `levels[l].table` is the root table of level `l`.
    tables: Vec<Table>,
    levels: Vec<Level>,
    /// The expanded collection names, outermost first.
    expand: Vec<String>,
    keep_empty: bool,
    slot_count: usize,
}

/// Where the rows of a batch go, value by value: [`mlc_common::Row`]s
/// ([`RowsSink`]), or the guest's output columns.
pub trait RowSink {
    /// Rows so far.
    fn rows(&self) -> usize;
    /// The next value (in schema order) of the row being built. An error
    /// is a fault of the record: it is rejected with that field and reason,
    /// and its rows are dropped.
    fn value(&mut self, cell: Cell<'_>) -> Result<(), SinkFault>;
    /// Ends the row being built, made from record `source`.
    fn end_row(&mut self, source: u32) -> Result<(), SinkFault>;
    /// Drops every row from `rows` on, and the row being built.
    fn truncate(&mut self, rows: usize);
}

/// Why a sink refused a row: the record is rejected with this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkFault {
    /// The column or field at fault.
    pub field: Option<String>,
    /// Why.
    pub reason: String,
}

/// Rows as [`mlc_common::Row`]s.
#[derive(Debug, Default)]
pub struct RowsSink {
    /// The finished rows.
    pub rows: Vec<Row>,
    pending: Vec<Value>,
}

impl RowSink for RowsSink {
    fn rows(&self) -> usize {
        self.rows.len()
    }

    fn value(&mut self, cell: Cell<'_>) -> Result<(), SinkFault> {
        self.pending.push(cell.into_value());
        Ok(())
    }

    fn end_row(&mut self, source: u32) -> Result<(), SinkFault> {
        let capacity = self.pending.len();
        self.rows.push(Row {
            source,
            values: std::mem::replace(&mut self.pending, Vec::with_capacity(capacity)),
        });
        Ok(())
    }

    fn truncate(&mut self, rows: usize) {
        self.rows.truncate(rows);
        self.pending.clear();
    }
}

/// One object level: the record itself (0) or an expanded child.
#[derive(Clone, Debug)]
struct Level {
    table: usize,
    /// Slots filled while scanning one object of this level.
    slots: Vec<usize>,
    /// The slot that holds the next level's collection.
    child: Option<usize>,
}

#[derive(Clone, Debug)]
struct ColumnPlan {
    name: String,
    ty: ColumnType,
    nullable: bool,
    value: Source,
    /// The field named in rejects: the source path, or the column name.
    field: String,
    map: Option<ValueMap>,
    default: Option<Value>,
}

#[derive(Clone, Debug)]
enum Source {
    Slot(usize),
    Expr(Expr),
}

#[derive(Clone, Debug)]
struct ValueMap {
    labels: HashMap<String, Lit>,
    otherwise: Option<Lit>,
}

const TOP_KEYS: &[&str] = &[
    "resource",
    "description",
    "expand",
    "keep_empty",
    "filter",
    "column",
];
const COLUMN_KEYS: &[&str] = &[
    "name",
    "type",
    "key",
    "nullable",
    "source",
    "expr",
    "default",
    "map",
    "map_default",
    "description",
];

/// Reads TOML values with their positions and reports located errors.
struct Reader<'t> {
    text: &'t str,
}

impl<'t> Reader<'t> {
    fn err(
        &self,
        span: std::ops::Range<usize>,
        column: Option<&str>,
        message: impl Into<String>,
    ) -> ScriptError {
        ScriptError::at(self.text, span.start, column, message.into())
    }

    fn check_keys(
        &self,
        table: &DeTable<'_>,
        allowed: &[&str],
        column: Option<&str>,
        what: &str,
    ) -> Result<(), ScriptError> {
        for (key, _) in table.iter() {
            if !allowed.contains(&key.get_ref().as_ref()) {
                return Err(self.err(
                    key.span(),
                    column,
                    format!(
                        "unknown key {:?} in {what}; allowed: {}",
                        key.get_ref(),
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn string(
        &self,
        value: &Spanned<DeValue<'_>>,
        column: Option<&str>,
        key: &str,
    ) -> Result<String, ScriptError> {
        value.get_ref().as_str().map(str::to_owned).ok_or_else(|| {
            self.err(
                value.span(),
                column,
                format!("{key} must be text, found {}", value.get_ref().type_str()),
            )
        })
    }

    fn bool(
        &self,
        value: &Spanned<DeValue<'_>>,
        column: Option<&str>,
        key: &str,
    ) -> Result<bool, ScriptError> {
        value.get_ref().as_bool().ok_or_else(|| {
            self.err(
                value.span(),
                column,
                format!(
                    "{key} must be true or false, found {}",
                    value.get_ref().type_str()
                ),
            )
        })
    }

    /// Parses an expression held in a TOML string, locating syntax errors
    /// inside the string.
    fn expr(
        &self,
        value: &Spanned<DeValue<'_>>,
        column: Option<&str>,
        key: &str,
    ) -> Result<Expr, ScriptError> {
        let source = self.string(value, column, key)?;
        expr::parse(&source).map_err(|e| {
            ScriptError::at(
                self.text,
                self.content_offset(value.span().start, e.at),
                column,
                format!("in {key}: {}", e.message),
            )
        })
    }

    /// The offset in the script of byte `decoded` of the content of the
    /// TOML string starting at `start` (its opening quote): past the
    /// quotes, the newline a multi-line string starts with, and the
    /// escapes of a basic string (`\"` is two bytes of the script and one
    /// of the content), so an expression's error points at its character.
    fn content_offset(&self, start: usize, decoded: usize) -> usize {
        let text = self.text;
        let bytes = text.as_bytes();
        let rest = text.get(start..).unwrap_or("");
        let basic = rest.starts_with('"');
        let multi = rest.starts_with("\"\"\"") || rest.starts_with("'''");
        let mut i = start + if multi { 3 } else { 1 };
        if multi {
            if bytes.get(i) == Some(&b'\n') {
                i += 1;
            } else if bytes.get(i..i + 2) == Some(b"\r\n") {
                i += 2;
            }
        }
        if !basic {
            return (i + decoded).min(text.len());
        }
        let mut count = 0;
        while count < decoded {
            let Some(c) = text.get(i..).and_then(|r| r.chars().next()) else {
                break;
            };
            if c != '\\' {
                count += c.len_utf8();
                i += c.len_utf8();
                continue;
            }
            let hex = |from: usize, n: usize| {
                text.get(from..from + n)
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .and_then(char::from_u32)
                    .map_or(1, char::len_utf8)
            };
            match bytes.get(i + 1) {
                Some(b'u') => {
                    count += hex(i + 2, 4);
                    i += 6;
                }
                Some(b'U') => {
                    count += hex(i + 2, 8);
                    i += 10;
                }
                Some(b'x') => {
                    count += hex(i + 2, 2);
                    i += 4;
                }
                // A line-ending backslash: it and the whitespace after it
                // stand for nothing.
                Some(b' ' | b'\t' | b'\r' | b'\n') if multi => {
                    i += 1;
                    while let Some(b' ' | b'\t' | b'\r' | b'\n') = bytes.get(i) {
                        i += 1;
                    }
                }
                Some(_) => {
                    count += 1;
                    i += 2;
                }
                None => break,
            }
        }
        i.min(text.len())
    }

    fn literal(
        &self,
        value: &Spanned<DeValue<'_>>,
        column: Option<&str>,
        key: &str,
    ) -> Result<Lit, ScriptError> {
        Ok(match value.get_ref() {
            DeValue::String(s) => Lit::Str(s.to_string()),
            DeValue::Boolean(b) => Lit::Bool(*b),
            DeValue::Integer(i) => Lit::Num(
                mlc_common::Decimal::parse(i.as_str())
                    .map_err(|e| self.err(value.span(), column, format!("{key}: {e}")))?,
            ),
            DeValue::Float(f) => Lit::Num(
                mlc_common::Decimal::parse(f.as_str())
                    .map_err(|e| self.err(value.span(), column, format!("{key}: {e}")))?,
            ),
            other => {
                return Err(self.err(
                    value.span(),
                    column,
                    format!(
                        "{key} must be text, a number or true/false, found {}",
                        other.type_str()
                    ),
                ));
            }
        })
    }
}

/// Parses `text`, `integer`, `double`, `decimal(p,s)`, `boolean`, `date`,
/// `timestamp`.
fn parse_type(text: &str) -> Result<ColumnType, String> {
    let t = text.trim().to_ascii_lowercase();
    let simple = match t.as_str() {
        "text" | "string" => Some(ColumnType::Text),
        "integer" | "int" | "bigint" => Some(ColumnType::Integer),
        "double" | "float" => Some(ColumnType::Double),
        "boolean" | "bool" => Some(ColumnType::Boolean),
        "date" => Some(ColumnType::Date),
        "timestamp" => Some(ColumnType::Timestamp),
        _ => None,
    };
    if let Some(ty) = simple {
        return Ok(ty);
    }
    let expected =
        "expected text, integer, double, decimal(precision,scale), boolean, date or timestamp";
    let Some(args) = t.strip_prefix("decimal(").and_then(|r| r.strip_suffix(')')) else {
        return Err(format!("unknown type {text:?}; {expected}"));
    };
    let parts: Vec<&str> = args.split(',').map(str::trim).collect();
    let [p, s] = parts.as_slice() else {
        return Err(format!(
            "type {text:?}: write decimal(precision,scale), e.g. decimal(18,2)"
        ));
    };
    let (Ok(precision), Ok(scale)) = (p.parse::<u8>(), s.parse::<u8>()) else {
        return Err(format!(
            "type {text:?}: precision and scale must be whole numbers"
        ));
    };
    if !(1..=38).contains(&precision) || scale > precision {
        return Err(format!(
            "type {text:?}: precision must be 1 to 38 and scale at most the precision"
        ));
    }
    Ok(ColumnType::Decimal { precision, scale })
}

fn type_name(ty: ColumnType) -> String {
    match ty {
        ColumnType::Text => "text".into(),
        ColumnType::Integer => "integer".into(),
        ColumnType::Double => "double".into(),
        ColumnType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
        ColumnType::Boolean => "boolean".into(),
        ColumnType::Date => "date".into(),
        ColumnType::Timestamp => "timestamp".into(),
    }
}

/// Builds the scan tables while paths are given slots.
struct PlanBuilder {
    expand: Vec<String>,
    tables: Vec<Table>,
    levels: Vec<Level>,
    slots: HashMap<(usize, String), usize>,
    slot_count: usize,
}

impl PlanBuilder {
    fn new(expand: Vec<String>) -> Self {
        let mut b = Self {
            expand,
            tables: Vec::new(),
            levels: Vec::new(),
            slots: HashMap::new(),
            slot_count: 0,
        };
        for level in 0..=b.expand.len() {
            b.tables.push(Table::default());
            b.levels.push(Level {
                table: level,
                slots: Vec::new(),
                child: None,
            });
        }
        for level in 0..b.expand.len() {
            let slot = b.new_slot(level);
            let name = b.expand[level].clone();
            b.tables[level].entry(&name).slot = Some(slot);
            b.levels[level].child = Some(slot);
        }
        b
    }

    fn new_slot(&mut self, level: usize) -> usize {
        let slot = self.slot_count;
        self.slot_count += 1;
        self.levels[level].slots.push(slot);
        slot
    }

    /// The slot for a dotted path; `Err` with a message when the path
    /// names an expanded collection itself.
    fn slot(&mut self, path: &str) -> Result<usize, String> {
        let segments: Vec<&str> = path.split('.').collect();
        if segments.len() > MAX_PATH_DEPTH {
            return Err(format!(
                "the field path has {} segments, more than {MAX_PATH_DEPTH} (no record nests that deep)",
                segments.len()
            ));
        }
        let level = segments
            .iter()
            .zip(&self.expand)
            .take_while(|(s, e)| **s == e.as_str())
            .count();
        let rest = &segments[level..];
        let Some((last, inner)) = rest.split_last() else {
            return Err(format!(
                "{path:?} is the expanded collection itself; name one of its fields, e.g. {path}.Field"
            ));
        };
        if let Some(slot) = self.slots.get(&(level, rest.join("."))) {
            return Ok(*slot);
        }
        let mut table = self.levels[level].table;
        for segment in inner {
            let existing = self.tables[table].entry(segment).nested;
            table = match existing {
                Some(t) => t,
                None => {
                    let t = self.tables.len();
                    self.tables.push(Table::default());
                    self.tables[table].entry(segment).nested = Some(t);
                    t
                }
            };
        }
        let slot = match self.tables[table].entry(last).slot {
            Some(slot) => slot,
            None => {
                let slot = self.new_slot(level);
                self.tables[table].entry(last).slot = Some(slot);
                slot
            }
        };
        self.slots.insert((level, rest.join(".")), slot);
        Ok(slot)
    }

    fn resolve(&mut self, expr: &mut Expr) -> Result<(), (usize, String)> {
        let mut failure = None;
        expr.fields_mut(&mut |path, at, slot| {
            if failure.is_some() {
                return;
            }
            match self.slot(path) {
                Ok(s) => *slot = s,
                Err(m) => failure = Some((at, m)),
            }
        });
        failure.map_or(Ok(()), Err)
    }
}

impl Script {
    /// Reads and checks a mapping script. Every mistake is reported with
    /// its line, position and output column; name the file with
    /// [`ScriptError::with_file`].
    pub fn compile(text: &str) -> Result<Script, ScriptError> {
        let r = Reader { text };
        let doc = DeTable::parse(text).map_err(|e| {
            let start = e.span().map(|s| s.start).unwrap_or(0);
            ScriptError::at(
                text,
                start,
                None,
                format!("not valid TOML: {}", e.message().trim()),
            )
        })?;
        let doc = doc.get_ref();
        r.check_keys(doc, TOP_KEYS, None, "the script")?;

        let resource = match doc.get("resource") {
            Some(v) => r.string(v, None, "resource")?,
            None => {
                return Err(r.err(
                    0..0,
                    None,
                    "missing `resource = \"...\"` (the Oracle resource, e.g. invoices)",
                ));
            }
        };
        if resource.trim().is_empty() {
            return Err(r.err(
                doc.get("resource").map(|v| v.span()).unwrap_or(0..0),
                None,
                "resource must not be empty",
            ));
        }
        let description = doc
            .get("description")
            .map(|v| r.string(v, None, "description"))
            .transpose()?;
        let expand: Vec<String> = match doc.get("expand") {
            None => Vec::new(),
            Some(v) => {
                let s = r.string(v, None, "expand")?;
                let parts: Vec<String> = s.split('.').map(|p| p.trim().to_owned()).collect();
                if parts.iter().any(String::is_empty) {
                    return Err(r.err(v.span(), None, format!("expand {s:?}: write child collections separated by dots, e.g. journalHeaders.journalLines")));
                }
                if parts.len() > MAX_PATH_DEPTH {
                    return Err(r.err(
                        v.span(),
                        None,
                        format!(
                            "expand names {} nested collections, more than {MAX_PATH_DEPTH} (no record nests that deep)",
                            parts.len()
                        ),
                    ));
                }
                parts
            }
        };
        let keep_empty = doc
            .get("keep_empty")
            .map(|v| r.bool(v, None, "keep_empty"))
            .transpose()?
            .unwrap_or(false);
        if keep_empty
            && expand.is_empty()
            && let Some(v) = doc.get("keep_empty")
        {
            return Err(r.err(v.span(), None, "keep_empty only applies with expand"));
        }

        let mut plan = PlanBuilder::new(expand);
        let filter = match doc.get("filter") {
            None => None,
            Some(v) => {
                let mut e = r.expr(v, None, "filter")?;
                plan.resolve(&mut e).map_err(|(at, m)| {
                    ScriptError::at(
                        text,
                        r.content_offset(v.span().start, at),
                        None,
                        format!("in filter: {m}"),
                    )
                })?;
                Some(e)
            }
        };

        let Some(columns_value) = doc.get("column") else {
            return Err(r.err(0..0, None, "no columns: add [[column]] sections"));
        };
        let Some(column_tables) = columns_value.get_ref().as_array() else {
            return Err(r.err(
                columns_value.span(),
                None,
                "`column` must be written as [[column]] sections",
            ));
        };
        if column_tables.is_empty() {
            return Err(r.err(
                columns_value.span(),
                None,
                "no columns: add [[column]] sections",
            ));
        }
        let mut columns = Vec::new();
        let mut schema = Schema::default();
        for spanned in column_tables.iter() {
            let Some(table) = spanned.get_ref().as_table() else {
                return Err(r.err(
                    spanned.span(),
                    None,
                    "`column` must be written as [[column]] sections",
                ));
            };
            let (column, plan_column) = compile_column(&r, spanned.span(), table, &mut plan)?;
            if schema.columns.iter().any(|c| c.name == column.name) {
                let at = table
                    .get("name")
                    .map(|v| v.span())
                    .unwrap_or(spanned.span());
                return Err(r.err(
                    at,
                    Some(&column.name),
                    "a column of this name is defined twice",
                ));
            }
            schema.columns.push(column);
            columns.push(plan_column);
        }

        Ok(Script {
            resource,
            description,
            schema,
            columns,
            filter,
            tables: plan.tables,
            levels: plan.levels,
            expand: plan.expand,
            keep_empty,
            slot_count: plan.slot_count,
        })
    }

    /// The Oracle resource this script maps (e.g. `invoices`).
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The script's description, if it has one.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The output schema, in column order.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// What the script reads of a record ([`Reads`]): from every column's
    /// `source` or `expr`, the `filter` and the `expand` chain.
    pub fn reads(&self) -> Reads {
        let mut paths: Vec<&str> = Vec::new();
        for column in &self.columns {
            match &column.value {
                Source::Slot(_) => paths.push(&column.field),
                Source::Expr(e) => e.fields(&mut |p| paths.push(p)),
            }
        }
        if let Some(filter) = &self.filter {
            filter.fields(&mut |p| paths.push(p));
        }
        Reads::of(&self.expand, paths)
    }

    /// Maps a batch of records (each one JSON object text). A record that
    /// does not fit (bad JSON, a value of the wrong type, a missing
    /// required value) becomes a reject; only a failing lookup or a wrong
    /// resource fails the batch.
    pub fn map_batch<S: AsRef<str>>(
        &self,
        resource: &str,
        records: &[S],
        lookup: &mut dyn Lookup,
    ) -> Result<MappedBatch, MapError> {
        let mut sink = RowsSink {
            rows: Vec::with_capacity(records.len()),
            pending: Vec::with_capacity(self.columns.len()),
        };
        let rejects = self.map_batch_into(resource, records, lookup, &mut sink)?;
        Ok(MappedBatch {
            rows: sink.rows,
            rejects,
        })
    }

    /// [`Script::map_batch`] into the caller's [`RowSink`] (the guest
    /// appends each value straight to its output columns). Returns the
    /// rejects, in record order.
    pub fn map_batch_into<S: AsRef<str>, K: RowSink>(
        &self,
        resource: &str,
        records: &[S],
        lookup: &mut dyn Lookup,
        sink: &mut K,
    ) -> Result<Vec<Reject>, MapError> {
        if resource != self.resource {
            return Err(MapError::UnknownResource {
                mapped: self.resource.clone(),
                asked: resource.to_owned(),
            });
        }
        if u32::try_from(records.len()).is_err() {
            return Err(MapError::BatchTooLarge(records.len()));
        }
        let mut cx = Context::new(lookup);
        let mut rejects = Vec::new();
        let mut slots: Vec<Raw<'_>> = vec![Raw::Missing; self.slot_count];
        for (index, record) in records.iter().enumerate() {
            let index = index as u32;
            slots.iter_mut().for_each(|s| *s = Raw::Missing);
            let first_row = sink.rows();
            let result = match json::scan_record(
                record.as_ref(),
                &self.tables,
                self.levels[0].table,
                &mut slots,
            ) {
                Ok(()) => self.walk(0, index, &mut slots, &mut cx, sink),
                Err(e) => Err(Stop::Fault(Fault::new(format!(
                    "the record is not a JSON object: {e}"
                )))),
            };
            match result {
                Ok(()) => {}
                Err(Stop::Fatal(e)) => return Err(e),
                Err(Stop::Fault(Fault { field, message })) => {
                    sink.truncate(first_row);
                    rejects.push(Reject {
                        index,
                        field,
                        reason: message,
                    });
                }
            }
        }
        Ok(rejects)
    }

    /// Emits the rows of one object at `level` (its slots are filled).
    fn walk<'a, K: RowSink>(
        &self,
        level: usize,
        index: u32,
        slots: &mut Vec<Raw<'a>>,
        cx: &mut Context<'_>,
        rows: &mut K,
    ) -> Result<(), Stop> {
        let Some(child) = self.levels[level].child else {
            return self.row(index, slots, cx, rows);
        };
        let name = &self.expand[level];
        let fault = |message: String| Fault {
            field: Some(name.clone()),
            message,
        };
        let items: Vec<Raw<'a>> = match slots[child] {
            Raw::Missing | Raw::Null => Vec::new(),
            Raw::Array(text) => {
                json::array_elements(text).map_err(|e| fault(format!("{name}: {e}")))?
            }
            // REST framework v3+: {"items": [...], "count": ..., ...}
            Raw::Object(text) => match json::field(text, "items")
                .map_err(|e| fault(format!("{name}: {e}")))?
            {
                Raw::Array(items) => {
                    json::array_elements(items).map_err(|e| fault(format!("{name}.items: {e}")))?
                }
                Raw::Missing | Raw::Null => Vec::new(),
                other => {
                    return Err(
                        fault(format!("{name}.items is {}, not an array", other.kind())).into(),
                    );
                }
            },
            other => {
                return Err(fault(format!(
                    "{name} is {}, not an array of child rows",
                    other.kind()
                ))
                .into());
            }
        };
        if items.is_empty() {
            if self.keep_empty {
                self.clear_below(level, slots);
                return self.walk(level + 1, index, slots, cx, rows);
            }
            return Ok(());
        }
        for item in items {
            let Raw::Object(text) = item else {
                return Err(fault(format!("{name} holds {}, not objects", item.kind())).into());
            };
            self.clear_below(level, slots);
            json::scan_record(text, &self.tables, self.levels[level + 1].table, slots)
                .map_err(|e| fault(format!("{name}: {e}")))?;
            self.walk(level + 1, index, slots, cx, rows)?;
        }
        Ok(())
    }

    fn clear_below(&self, level: usize, slots: &mut [Raw<'_>]) {
        for deeper in &self.levels[level + 1..] {
            for &s in &deeper.slots {
                slots[s] = Raw::Missing;
            }
        }
    }

    /// Evaluates the filter and the columns for one output row.
    fn row<'a, K: RowSink>(
        &self,
        index: u32,
        slots: &[Raw<'a>],
        cx: &mut Context<'_>,
        out: &mut K,
    ) -> Result<(), Stop> {
        if let Some(filter) = &self.filter {
            let keep = eval::eval(filter, slots, cx)
                .and_then(|v| eval::truth(&v))
                .map_err(|e| match e {
                    Stop::Fault(f) => Stop::Fault(Fault::new(format!("filter: {}", f.message))),
                    fatal => fatal,
                })?;
            if !keep {
                return Ok(());
            }
        }
        let refused = |f: SinkFault| {
            Stop::Fault(Fault {
                field: f.field,
                message: f.reason,
            })
        };
        // Each value goes to the sink as soon as it is computed; a fault
        // half-way leaves a partial row that the batch loop drops with the
        // record's other rows.
        for column in &self.columns {
            let value = self.column_value(column, slots, cx)?;
            out.value(value).map_err(refused)?;
        }
        out.end_row(index).map_err(refused)
    }

    fn column_value<'a>(
        &self,
        column: &ColumnPlan,
        slots: &[Raw<'a>],
        cx: &mut Context<'_>,
    ) -> Result<Cell<'a>, Stop> {
        let located = |m: String| {
            Stop::Fault(Fault {
                field: Some(column.field.clone()),
                message: format!(
                    "{}: {m} (column {:?}, {})",
                    column.field,
                    column.name,
                    type_name(column.ty)
                ),
            })
        };
        let mut val = match &column.value {
            Source::Slot(slot) => Val::from_raw(slots[*slot]).map_err(located)?,
            Source::Expr(e) => match eval::eval(e, slots, cx) {
                Ok(v) => v,
                Err(Stop::Fault(f)) => return Err(located(f.message)),
                Err(fatal) => return Err(fatal),
            },
        };
        if let Some(map) = &column.map
            && val != Val::Null
        {
            let label = val.text().and_then(|k| map.labels.get(k.as_ref()));
            if let Some(label) = label.or(map.otherwise.as_ref()) {
                val = Val::from_lit(label);
            }
        }
        let value = eval::convert_cell(val, column.ty).map_err(located)?;
        if value.is_null() {
            if let Some(default) = &column.default {
                return Ok(Cell::Value(default.clone()));
            }
            if !column.nullable {
                return Err(located(
                    "no value, and the column does not allow empty values".into(),
                ));
            }
        }
        Ok(value)
    }
}

fn compile_column(
    r: &Reader<'_>,
    span: std::ops::Range<usize>,
    table: &DeTable<'_>,
    plan: &mut PlanBuilder,
) -> Result<(Column, ColumnPlan), ScriptError> {
    let name = match table.get("name") {
        Some(v) => r.string(v, None, "name")?,
        None => return Err(r.err(span, None, "a [[column]] needs a name")),
    };
    if name.trim().is_empty() {
        return Err(r.err(span, None, "a column name must not be empty"));
    }
    let col = Some(name.as_str());
    r.check_keys(table, COLUMN_KEYS, col, "a [[column]]")?;
    let ty = match table.get("type") {
        Some(v) => parse_type(&r.string(v, col, "type")?).map_err(|m| r.err(v.span(), col, m))?,
        None => {
            return Err(r.err(
                span,
                col,
                "missing type (text, integer, double, decimal(p,s), boolean, date or timestamp)",
            ));
        }
    };
    let key = table
        .get("key")
        .map(|v| r.bool(v, col, "key"))
        .transpose()?
        .unwrap_or(false);
    let nullable = match table.get("nullable") {
        Some(v) => {
            let n = r.bool(v, col, "nullable")?;
            if n && key {
                return Err(r.err(v.span(), col, "a key column cannot be nullable"));
            }
            n
        }
        None => !key,
    };
    let (value, field) = match (table.get("source"), table.get("expr")) {
        (Some(_), Some(e)) => {
            return Err(r.err(e.span(), col, "give either source or expr, not both"));
        }
        (None, None) => {
            return Err(r.err(span, col, "missing source = \"Field\" or expr = \"...\""));
        }
        (Some(v), None) => {
            let path = r.string(v, col, "source")?;
            let ok = path
                .split('.')
                .all(|s| !s.is_empty() && !s.contains(char::is_whitespace));
            if !ok {
                return Err(r.err(v.span(), col, format!("source {path:?} is not a field path like InvoiceAmount or invoiceLines.LineAmount")));
            }
            let slot = plan.slot(&path).map_err(|m| r.err(v.span(), col, m))?;
            (Source::Slot(slot), path)
        }
        (None, Some(v)) => {
            let mut e = r.expr(v, col, "expr")?;
            plan.resolve(&mut e).map_err(|(at, m)| {
                ScriptError::at(
                    r.text,
                    r.content_offset(v.span().start, at),
                    col,
                    format!("in expr: {m}"),
                )
            })?;
            (Source::Expr(e), name.clone())
        }
    };
    let map = match table.get("map") {
        None => None,
        Some(v) => {
            let Some(entries) = v.get_ref().as_table() else {
                return Err(r.err(v.span(), col, "map must be a table of code = \"label\", e.g. map = { Y = \"Yes\", N = \"No\" }"));
            };
            let mut labels = HashMap::new();
            for (code, label) in entries.iter() {
                labels.insert(code.get_ref().to_string(), r.literal(label, col, "map")?);
            }
            let otherwise = table
                .get("map_default")
                .map(|v| r.literal(v, col, "map_default"))
                .transpose()?;
            Some(ValueMap { labels, otherwise })
        }
    };
    if map.is_none()
        && let Some(v) = table.get("map_default")
    {
        return Err(r.err(v.span(), col, "map_default needs a map"));
    }
    // Every label must fit the column, so a mapped value never rejects.
    if let Some(map) = &map {
        for (code, label) in map
            .labels
            .iter()
            .map(|(c, l)| (Some(c), l))
            .chain(map.otherwise.iter().map(|l| (None, l)))
        {
            if let Err(m) = eval::convert(Val::from_lit(label), ty) {
                let at = table.get("map").map(|v| v.span()).unwrap_or(span.clone());
                let which =
                    code.map_or("map_default".to_owned(), |c| format!("map label for {c:?}"));
                return Err(r.err(
                    at,
                    col,
                    format!("{which}: {m} (the column is {})", type_name(ty)),
                ));
            }
        }
    }
    let default = match table.get("default") {
        None => None,
        Some(v) => {
            let lit = r.literal(v, col, "default")?;
            let value = eval::convert(Val::from_lit(&lit), ty).map_err(|m| {
                r.err(
                    v.span(),
                    col,
                    format!("default: {m} (the column is {})", type_name(ty)),
                )
            })?;
            Some(value)
        }
    };
    let column = Column {
        name: name.clone(),
        ty,
        nullable,
        key,
    };
    Ok((
        column,
        ColumnPlan {
            name,
            ty,
            nullable,
            value,
            field,
            map,
            default,
        },
    ))
}
