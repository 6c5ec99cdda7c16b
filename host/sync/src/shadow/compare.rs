//! Comparing what two mappings made of the same records: the schema
//! change between them, and record by record the rows that would change
//! (column by column), the rows added or removed and the rejects gained or
//! lost. Pure: the shadow run feeds it mapped chunks as they come.
//!
//! Columns are matched by name. A column the candidate drops and one it
//! adds are reported as a rename when they have the same type and hold the
//! same value in every row compared (at least one). A record's rows are
//! paired by position (a mapping emits them in the record's child order).

use std::collections::BTreeMap;

use mlc_common::{Column, MappedBatch, Schema, Value};
use mlc_plugin::output::cell_json;
use serde::Serialize;

/// How the candidate's schema differs from the current one.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SchemaChange {
    /// True when anything below is non-empty or the order changed: the
    /// data source is then re-exported from the store after a promote.
    pub changed: bool,
    /// Columns only the candidate has.
    pub added: Vec<Column>,
    /// Columns only the current version has.
    pub removed: Vec<Column>,
    /// Columns renamed: same type, same values in every row compared.
    pub renamed: Vec<Renamed>,
    /// Columns of both whose type, key or nullability differs.
    pub retyped: Vec<Retyped>,
    /// The shared columns are in another order.
    pub reordered: bool,
}

/// A renamed column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Renamed {
    /// The current name.
    pub from: String,
    /// The candidate's name.
    pub to: String,
}

/// A column whose declaration changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Retyped {
    /// The current declaration.
    pub before: Column,
    /// The candidate's.
    pub after: Column,
}

/// One cell that would change.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CellChange {
    /// The column (its name in both).
    pub column: String,
    /// The current value.
    pub before: serde_json::Value,
    /// The candidate's value.
    pub after: serde_json::Value,
}

/// One row that would change.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RowChange {
    /// The record's key.
    pub key: String,
    /// The row's position among the record's rows.
    pub row: usize,
    /// The cells that differ.
    pub cells: Vec<CellChange>,
}

/// A record that would be rejected (or was, and no longer would be).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordReject {
    /// The record's key.
    pub key: String,
    /// Why (`field: reason` when the mapping named the field).
    pub reason: String,
}

/// What the candidate would change in the rows.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RowChanges {
    /// Records compared.
    pub records: u64,
    /// Rows the current version made of them.
    pub rows_before: u64,
    /// Rows the candidate made.
    pub rows_after: u64,
    /// Rows of both whose shared columns differ.
    pub rows_changed: u64,
    /// Rows of both that are the same in every shared column.
    pub rows_unchanged: u64,
    /// Rows only the candidate makes (more rows for a record, or a record
    /// the current version rejects).
    pub rows_added: u64,
    /// Rows only the current version makes.
    pub rows_removed: u64,
    /// Rows changed per column.
    pub changed_by_column: BTreeMap<String, u64>,
    /// The first changed rows, cell by cell.
    pub sample: Vec<RowChange>,
    /// Records the candidate rejects and the current version maps.
    pub new_rejects: u64,
    /// The first of them, with the candidate's reason.
    pub new_reject_sample: Vec<RecordReject>,
    /// Records both reject.
    pub still_rejected: u64,
    /// Records the current version rejects and the candidate maps.
    pub no_longer_rejected: u64,
    /// The first of them, with the current version's reason.
    pub no_longer_rejected_sample: Vec<RecordReject>,
}

/// What one mapping made of one record.
enum Outcome<'a> {
    Rows(Vec<&'a [Value]>),
    Rejected(String),
}

/// Splits a mapped chunk into one outcome per record.
fn outcomes(batch: &MappedBatch, records: usize) -> Vec<Outcome<'_>> {
    let mut out: Vec<Outcome<'_>> = (0..records).map(|_| Outcome::Rows(Vec::new())).collect();
    for row in &batch.rows {
        if let Some(Outcome::Rows(rows)) = out.get_mut(row.source as usize) {
            rows.push(&row.values);
        }
    }
    for reject in &batch.rejects {
        if let Some(slot) = out.get_mut(reject.index as usize) {
            *slot = Outcome::Rejected(match &reject.field {
                Some(field) => format!("{field}: {}", reject.reason),
                None => reject.reason.clone(),
            });
        }
    }
    out
}

/// A column dropped and one added that might be the same column renamed.
struct RenameCandidate {
    from: usize,
    to: usize,
    equal: bool,
}

/// Accumulates the comparison chunk by chunk.
pub struct Comparison {
    before: Schema,
    after: Schema,
    /// (index in before, index in after, name) of the shared columns.
    shared: Vec<(usize, usize, String)>,
    renames: Vec<RenameCandidate>,
    compared_rows: u64,
    sample_cap: usize,
    changes: RowChanges,
}

impl Comparison {
    /// A comparison of `before` (the current schema) and `after` (the
    /// candidate's), keeping up to `sample_cap` examples of each kind.
    pub fn new(before: Schema, after: Schema, sample_cap: usize) -> Self {
        let shared: Vec<(usize, usize, String)> = before
            .columns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                after
                    .columns
                    .iter()
                    .position(|a| a.name == c.name)
                    .map(|j| (i, j, c.name.clone()))
            })
            .collect();
        let named = |s: &Schema, name: &str| s.columns.iter().any(|c| c.name == name);
        let mut renames = Vec::new();
        for (i, c) in before.columns.iter().enumerate() {
            if named(&after, &c.name) {
                continue;
            }
            for (j, a) in after.columns.iter().enumerate() {
                if !named(&before, &a.name) && a.ty == c.ty {
                    renames.push(RenameCandidate {
                        from: i,
                        to: j,
                        equal: true,
                    });
                }
            }
        }
        Self {
            before,
            after,
            shared,
            renames,
            compared_rows: 0,
            sample_cap,
            changes: RowChanges::default(),
        }
    }

    /// Adds a chunk: the records' keys and what each mapping made of them.
    pub fn add(&mut self, keys: &[String], before: &MappedBatch, after: &MappedBatch) {
        let (b, a) = (outcomes(before, keys.len()), outcomes(after, keys.len()));
        let cap = self.sample_cap;
        for ((key, b), a) in keys.iter().zip(&b).zip(&a) {
            let c = &mut self.changes;
            c.records += 1;
            match (b, a) {
                (Outcome::Rejected(_), Outcome::Rejected(_)) => c.still_rejected += 1,
                (Outcome::Rows(rows), Outcome::Rejected(reason)) => {
                    c.rows_before += rows.len() as u64;
                    c.rows_removed += rows.len() as u64;
                    c.new_rejects += 1;
                    if c.new_reject_sample.len() < cap {
                        c.new_reject_sample.push(RecordReject {
                            key: key.clone(),
                            reason: reason.clone(),
                        });
                    }
                }
                (Outcome::Rejected(reason), Outcome::Rows(rows)) => {
                    c.rows_after += rows.len() as u64;
                    c.rows_added += rows.len() as u64;
                    c.no_longer_rejected += 1;
                    if c.no_longer_rejected_sample.len() < cap {
                        c.no_longer_rejected_sample.push(RecordReject {
                            key: key.clone(),
                            reason: reason.clone(),
                        });
                    }
                }
                (Outcome::Rows(before_rows), Outcome::Rows(after_rows)) => {
                    c.rows_before += before_rows.len() as u64;
                    c.rows_after += after_rows.len() as u64;
                    let paired = before_rows.len().min(after_rows.len());
                    c.rows_removed += (before_rows.len() - paired) as u64;
                    c.rows_added += (after_rows.len() - paired) as u64;
                    for (n, (x, y)) in before_rows.iter().zip(after_rows).enumerate() {
                        self.compare_row(key, n, x, y);
                    }
                }
            }
        }
    }

    fn compare_row(&mut self, key: &str, n: usize, before: &[Value], after: &[Value]) {
        self.compared_rows += 1;
        for r in &mut self.renames {
            if r.equal && before.get(r.from) != after.get(r.to) {
                r.equal = false;
            }
        }
        let c = &mut self.changes;
        let mut cells = Vec::new();
        for (i, j, name) in &self.shared {
            let (x, y) = (before.get(*i), after.get(*j));
            if x != y {
                *c.changed_by_column.entry(name.clone()).or_default() += 1;
                let json = |v: Option<&Value>| v.map_or(serde_json::Value::Null, cell_json);
                cells.push(CellChange {
                    column: name.clone(),
                    before: json(x),
                    after: json(y),
                });
            }
        }
        if cells.is_empty() {
            c.rows_unchanged += 1;
        } else {
            c.rows_changed += 1;
            if c.sample.len() < self.sample_cap {
                c.sample.push(RowChange {
                    key: key.to_owned(),
                    row: n,
                    cells,
                });
            }
        }
    }

    /// The schema change and the row changes.
    pub fn finish(self) -> (SchemaChange, RowChanges) {
        let mut renamed = Vec::new();
        let (mut from_used, mut to_used) = (Vec::new(), Vec::new());
        if self.compared_rows > 0 {
            for r in &self.renames {
                if r.equal && !from_used.contains(&r.from) && !to_used.contains(&r.to) {
                    from_used.push(r.from);
                    to_used.push(r.to);
                    renamed.push(Renamed {
                        from: self.before.columns[r.from].name.clone(),
                        to: self.after.columns[r.to].name.clone(),
                    });
                }
            }
        }
        let has = |s: &Schema, name: &str| s.columns.iter().any(|c| c.name == name);
        let removed: Vec<Column> = self
            .before
            .columns
            .iter()
            .enumerate()
            .filter(|(i, c)| !has(&self.after, &c.name) && !from_used.contains(i))
            .map(|(_, c)| c.clone())
            .collect();
        let added: Vec<Column> = self
            .after
            .columns
            .iter()
            .enumerate()
            .filter(|(j, c)| !has(&self.before, &c.name) && !to_used.contains(j))
            .map(|(_, c)| c.clone())
            .collect();
        let retyped: Vec<Retyped> = self
            .shared
            .iter()
            .filter_map(|(i, j, _)| {
                let (b, a) = (&self.before.columns[*i], &self.after.columns[*j]);
                (b != a).then(|| Retyped {
                    before: b.clone(),
                    after: a.clone(),
                })
            })
            .collect();
        let reordered = self.shared.windows(2).any(|w| w[0].1 > w[1].1);
        let changed = self.before != self.after;
        (
            SchemaChange {
                changed,
                added,
                removed,
                renamed,
                retyped,
                reordered,
            },
            self.changes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlc_common::{ColumnType, Reject, Row};

    fn col(name: &str, ty: ColumnType, key: bool) -> Column {
        Column {
            name: name.into(),
            ty,
            nullable: !key,
            key,
        }
    }

    fn schema(cols: &[(&str, ColumnType)]) -> Schema {
        Schema {
            columns: cols
                .iter()
                .enumerate()
                .map(|(i, (n, t))| col(n, *t, i == 0))
                .collect(),
        }
    }

    fn rows(rows: &[(u32, Vec<Value>)], rejects: &[(u32, &str)]) -> MappedBatch {
        MappedBatch {
            rows: rows
                .iter()
                .map(|(s, v)| Row {
                    source: *s,
                    values: v.clone(),
                })
                .collect(),
            rejects: rejects
                .iter()
                .map(|(i, r)| Reject {
                    index: *i,
                    field: Some("Status".into()),
                    reason: (*r).into(),
                })
                .collect(),
        }
    }

    fn t(s: &str) -> Value {
        Value::Text(s.into())
    }

    const TEXT: ColumnType = ColumnType::Text;
    const INT: ColumnType = ColumnType::Integer;

    #[test]
    fn a_rename_is_a_schema_change_and_changes_no_row() {
        let before = schema(&[("Id", INT), ("Supplier", TEXT)]);
        let after = schema(&[("Id", INT), ("Vendor", TEXT)]);
        let mut c = Comparison::new(before, after, 10);
        let keys = ["1".to_owned(), "2".to_owned()];
        let b = rows(
            &[
                (0, vec![Value::Integer(1), t("Acme")]),
                (1, vec![Value::Integer(2), t("Globex")]),
            ],
            &[],
        );
        c.add(&keys, &b, &b.clone());
        let (schema, changes) = c.finish();
        assert!(schema.changed);
        assert_eq!(
            schema.renamed,
            vec![Renamed {
                from: "Supplier".into(),
                to: "Vendor".into()
            }]
        );
        assert!(
            schema.added.is_empty() && schema.removed.is_empty(),
            "{schema:?}"
        );
        assert_eq!((changes.rows_changed, changes.rows_unchanged), (0, 2));
    }

    #[test]
    fn a_dropped_and_an_added_column_with_other_values_are_not_a_rename() {
        let before = schema(&[("Id", INT), ("Supplier", TEXT)]);
        let after = schema(&[("Id", INT), ("Site", TEXT)]);
        let mut c = Comparison::new(before, after, 10);
        let b = rows(&[(0, vec![Value::Integer(1), t("Acme")])], &[]);
        let a = rows(&[(0, vec![Value::Integer(1), t("HQ")])], &[]);
        c.add(&["1".to_owned()], &b, &a);
        let (schema, _) = c.finish();
        assert!(schema.renamed.is_empty(), "{schema:?}");
        assert_eq!(schema.removed[0].name, "Supplier");
        assert_eq!(schema.added[0].name, "Site");
    }

    #[test]
    fn changed_cells_are_counted_per_column_and_sampled() {
        let s = schema(&[("Id", INT), ("Status", TEXT)]);
        let mut c = Comparison::new(s.clone(), s, 1);
        let keys: Vec<String> = (1..=3).map(|i| i.to_string()).collect();
        let b = rows(
            &[
                (0, vec![Value::Integer(1), t("Validated")]),
                (1, vec![Value::Integer(2), t("Paid")]),
                (2, vec![Value::Integer(3), t("Validated")]),
            ],
            &[],
        );
        let a = rows(
            &[
                (0, vec![Value::Integer(1), t("Approved")]),
                (1, vec![Value::Integer(2), t("Paid")]),
                (2, vec![Value::Integer(3), t("Approved")]),
            ],
            &[],
        );
        c.add(&keys, &b, &a);
        let (schema, changes) = c.finish();
        assert!(!schema.changed, "{schema:?}");
        assert_eq!((changes.rows_changed, changes.rows_unchanged), (2, 1));
        assert_eq!(changes.changed_by_column.get("Status"), Some(&2));
        assert_eq!(
            changes.sample,
            vec![RowChange {
                key: "1".into(),
                row: 0,
                cells: vec![CellChange {
                    column: "Status".into(),
                    before: "Validated".into(),
                    after: "Approved".into(),
                }],
            }]
        );
    }

    #[test]
    fn rejects_gained_and_lost_and_rows_added_or_removed() {
        let s = schema(&[("Id", INT), ("Line", INT)]);
        let mut c = Comparison::new(s.clone(), s, 10);
        let keys: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let line = |k, n| vec![Value::Integer(k), Value::Integer(n)];
        // a: 2 rows → rejected; b: rejected → 1 row; c: 1 row → 2 rows;
        // d: rejected by both.
        let b = rows(
            &[(0, line(1, 1)), (0, line(1, 2)), (2, line(3, 1))],
            &[(1, "old reason"), (3, "both")],
        );
        let a = rows(
            &[(1, line(2, 1)), (2, line(3, 1)), (2, line(3, 2))],
            &[(0, "unknown status \"X\""), (3, "both")],
        );
        c.add(&keys, &b, &a);
        let (_, ch) = c.finish();
        assert_eq!(ch.records, 4);
        assert_eq!((ch.rows_before, ch.rows_after), (3, 3));
        assert_eq!((ch.rows_added, ch.rows_removed), (2, 2));
        assert_eq!((ch.rows_changed, ch.rows_unchanged), (0, 1));
        assert_eq!(
            (ch.new_rejects, ch.no_longer_rejected, ch.still_rejected),
            (1, 1, 1)
        );
        assert_eq!(
            ch.new_reject_sample,
            vec![RecordReject {
                key: "a".into(),
                reason: "Status: unknown status \"X\"".into()
            }]
        );
        assert_eq!(ch.no_longer_rejected_sample[0].key, "b");
    }

    #[test]
    fn retyped_and_reordered_columns() {
        let before = schema(&[("Id", INT), ("A", TEXT), ("B", INT)]);
        let after = schema(&[("Id", INT), ("B", TEXT), ("A", TEXT)]);
        let (schema, _) = Comparison::new(before, after, 10).finish();
        assert!(schema.changed && schema.reordered, "{schema:?}");
        assert_eq!(schema.retyped.len(), 1);
        assert_eq!(schema.retyped[0].after.name, "B");
    }
}
