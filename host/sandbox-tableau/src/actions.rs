//! Update-Data-in-Hyper actions: the JSON body (`{"actions":[...]}`) parsed
//! into [`Action`]s, and each action planned as SQL against the attached
//! stored file (alias `t`) and payload (alias `s`). Columns are matched by
//! name: every source column must exist in the target; target columns the
//! source lacks are left alone by `update` and get NULL on insert.

use mlc_common::time::{parse_date, parse_timestamp};
use serde_json::Value as Json;

use crate::engine::{TableInfo, ident, literal};

/// The five action kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionKind {
    /// Copy every source row into the target.
    Insert,
    /// Update target rows matching source rows.
    Update,
    /// Delete target rows matching the condition.
    Delete,
    /// Update matching rows, insert the rest.
    Upsert,
    /// Replace the target's contents with the source's.
    Replace,
}

impl ActionKind {
    /// The JSON spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Insert => "insert",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Upsert => "upsert",
            Self::Replace => "replace",
        }
    }
}

/// A column or constant in a comparison.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// `target-col`.
    Target(String),
    /// `source-col`.
    Source(String),
    /// `const`, already rendered as SQL.
    Const(String),
}

/// A condition tree.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// `eq`, `ne`, `gt`, `gte`, `lt`, `lte`.
    Compare {
        /// SQL operator.
        op: &'static str,
        /// Left operand.
        left: Operand,
        /// Right operand.
        right: Operand,
    },
    /// `and`.
    And(Vec<Condition>),
    /// `or`.
    Or(Vec<Condition>),
    /// `not`.
    Not(Box<Condition>),
}

/// One action of a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    /// What to do.
    pub kind: ActionKind,
    /// `source-schema` / `source-table`.
    pub source: Option<(String, String)>,
    /// `target-schema` / `target-table`.
    pub target: (String, String),
    /// `condition`.
    pub condition: Option<Condition>,
}

impl Action {
    /// Appends `schema.table` of a payload to the same table of the target
    /// (publish with `append=true`).
    pub fn append_table(schema: &str, table: &str) -> Self {
        Self {
            kind: ActionKind::Insert,
            source: Some((schema.to_owned(), table.to_owned())),
            target: (schema.to_owned(), table.to_owned()),
            condition: None,
        }
    }
}

/// Why an action batch could not run; the text goes into the job notes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// A named table is not in the file.
    #[error(
        "TableauRuntimeException: action {index} ({action}) failed. Specified table does not exist: {table}. (errorCode=410012)"
    )]
    TableMissing {
        /// Position in the batch.
        index: usize,
        /// Action kind.
        action: String,
        /// The missing table.
        table: String,
    },
    /// A named column is not in its table.
    #[error(
        "TableauRuntimeException: action {index} ({action}) failed. Specified column does not exist: {column} in table {table}. (errorCode=410013)"
    )]
    ColumnMissing {
        /// Position in the batch.
        index: usize,
        /// Action kind.
        action: String,
        /// Table.
        table: String,
        /// Column.
        column: String,
    },
    /// The action refers to a source but no payload was uploaded.
    #[error(
        "TableauRuntimeException: action {index} ({action}) failed. The action needs a source table but the request has no payload (uploadSessionId). (errorCode=410011)"
    )]
    NoPayload {
        /// Position in the batch.
        index: usize,
        /// Action kind.
        action: String,
    },
    /// hyperd refused a statement.
    #[error("TableauRuntimeException: action {index} ({action}) failed. {reason}")]
    Failed {
        /// Position in the batch.
        index: usize,
        /// Action kind.
        action: String,
        /// hyperd's message.
        reason: String,
    },
}

/// Parses the request body. Errors are answered at once with `400`.
pub fn parse_body(body: &[u8]) -> Result<Vec<Action>, String> {
    let json: Json =
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let list = json
        .get("actions")
        .and_then(Json::as_array)
        .ok_or("the body has no \"actions\" array")?;
    if list.is_empty() {
        return Err("the \"actions\" array is empty".to_owned());
    }
    list.iter()
        .enumerate()
        .map(|(i, a)| parse_action(a).map_err(|e| format!("action {i}: {e}")))
        .collect()
}

fn text<'a>(json: &'a Json, key: &str) -> Result<Option<&'a str>, String> {
    match json.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("\"{key}\" must be a string, got {other}")),
    }
}

fn parse_action(json: &Json) -> Result<Action, String> {
    let kind = match text(json, "action")?.ok_or("missing \"action\"")? {
        "insert" => ActionKind::Insert,
        "update" => ActionKind::Update,
        "delete" => ActionKind::Delete,
        "upsert" => ActionKind::Upsert,
        "replace" => ActionKind::Replace,
        other => return Err(format!("unknown action \"{other}\"")),
    };
    let target = match (text(json, "target-schema")?, text(json, "target-table")?) {
        (Some(s), Some(t)) => (s.to_owned(), t.to_owned()),
        _ => return Err("\"target-schema\" and \"target-table\" are required".to_owned()),
    };
    let source = match (text(json, "source-schema")?, text(json, "source-table")?) {
        (Some(s), Some(t)) => Some((s.to_owned(), t.to_owned())),
        (None, None) => None,
        _ => return Err("give both \"source-schema\" and \"source-table\"".to_owned()),
    };
    let condition = match json.get("condition") {
        None | Some(Json::Null) => None,
        Some(c) => Some(parse_condition(c, 0)?),
    };
    match kind {
        ActionKind::Insert | ActionKind::Replace if source.is_none() => {
            return Err(format!("\"{}\" needs a source table", kind.name()));
        }
        ActionKind::Update | ActionKind::Upsert if source.is_none() || condition.is_none() => {
            return Err(format!(
                "\"{}\" needs a source table and a condition",
                kind.name()
            ));
        }
        ActionKind::Delete if condition.is_none() => {
            return Err("\"delete\" needs a condition".to_owned());
        }
        _ => {}
    }
    Ok(Action {
        kind,
        source,
        target,
        condition,
    })
}

fn parse_condition(json: &Json, depth: usize) -> Result<Condition, String> {
    if depth > 64 {
        return Err("condition nested too deeply".to_owned());
    }
    let op = text(json, "op")?.ok_or("a condition has no \"op\"")?;
    let args = || -> Result<Vec<Condition>, String> {
        let list = json
            .get("args")
            .and_then(Json::as_array)
            .ok_or_else(|| format!("\"{op}\" needs an \"args\" array"))?;
        list.iter().map(|c| parse_condition(c, depth + 1)).collect()
    };
    let sql_op = match op {
        "and" | "or" => {
            let list = args()?;
            if list.is_empty() {
                return Err(format!("\"{op}\" needs at least one argument"));
            }
            return Ok(if op == "and" {
                Condition::And(list)
            } else {
                Condition::Or(list)
            });
        }
        "not" => {
            let mut list = args()?;
            if list.len() != 1 {
                return Err("\"not\" takes exactly one argument".to_owned());
            }
            return Ok(Condition::Not(Box::new(list.remove(0))));
        }
        "eq" => "=",
        "ne" => "<>",
        "gt" => ">",
        "gte" => ">=",
        "lt" => "<",
        "lte" => "<=",
        other => return Err(format!("unknown condition op \"{other}\"")),
    };
    let mut operands = Vec::new();
    if let Some(c) = text(json, "target-col")? {
        operands.push(Operand::Target(c.to_owned()));
    }
    if let Some(c) = text(json, "source-col")? {
        operands.push(Operand::Source(c.to_owned()));
    }
    if let Some(c) = json.get("const") {
        operands.push(Operand::Const(parse_const(c)?));
    }
    if operands.len() != 2 {
        return Err(format!(
            "\"{op}\" compares exactly two of \"target-col\", \"source-col\", \"const\""
        ));
    }
    let right = operands.remove(1);
    let left = operands.remove(0);
    Ok(Condition::Compare {
        op: sql_op,
        left,
        right,
    })
}

/// Renders `{"type":..., "v":...}` as an SQL literal.
fn parse_const(json: &Json) -> Result<String, String> {
    let ty = text(json, "type")?.ok_or("a constant has no \"type\"")?;
    let v = json.get("v").ok_or("a constant has no \"v\"")?;
    let as_text = match v {
        Json::String(s) => s.clone(),
        Json::Number(n) => n.to_string(),
        Json::Bool(b) => b.to_string(),
        other => return Err(format!("unsupported constant value {other}")),
    };
    match ty {
        "string" | "text" => Ok(literal(&as_text)),
        "datetime" | "timestamp" => {
            parse_timestamp(&as_text).map_err(|e| e.to_string())?;
            Ok(format!(
                "CAST({} AS TIMESTAMP WITH TIME ZONE)",
                literal(&as_text)
            ))
        }
        "date" => {
            parse_date(&as_text).map_err(|e| e.to_string())?;
            Ok(format!("DATE {}", literal(&as_text)))
        }
        "integer" | "int" | "long" | "bigint" => as_text
            .trim()
            .parse::<i64>()
            .map(|n| n.to_string())
            .map_err(|_| format!("\"{as_text}\" is not an integer")),
        "double" | "float" | "real" | "number" | "numeric" | "decimal" => {
            let n: f64 = as_text
                .trim()
                .parse()
                .map_err(|_| format!("\"{as_text}\" is not a number"))?;
            if !n.is_finite() {
                return Err(format!("\"{as_text}\" is not a finite number"));
            }
            Ok(as_text.trim().to_owned())
        }
        "bool" | "boolean" => match as_text.as_str() {
            "true" => Ok("TRUE".to_owned()),
            "false" => Ok("FALSE".to_owned()),
            other => Err(format!("\"{other}\" is not a boolean")),
        },
        other => Err(format!("unknown constant type \"{other}\"")),
    }
}

/// Checks an action against the attached files and renders its statements.
pub fn plan(
    index: usize,
    action: &Action,
    target_alias: &str,
    target_tables: &[TableInfo],
    source_alias: Option<&str>,
    source_tables: &[TableInfo],
) -> Result<Vec<String>, ActionError> {
    let name = action.kind.name().to_owned();
    let find = |tables: &'_ [TableInfo], (schema, table): &(String, String)| {
        tables
            .iter()
            .find(|t| &t.schema == schema && &t.name == table)
            .cloned()
    };
    let target = find(target_tables, &action.target).ok_or_else(|| ActionError::TableMissing {
        index,
        action: name.clone(),
        table: action.target.1.clone(),
    })?;
    let target_sql = format!(
        "{}.{}.{}",
        ident(target_alias),
        ident(&target.schema),
        ident(&target.name)
    );
    let source = match &action.source {
        None => None,
        Some(wanted) => {
            let alias = source_alias.ok_or_else(|| ActionError::NoPayload {
                index,
                action: name.clone(),
            })?;
            let table = find(source_tables, wanted).ok_or_else(|| ActionError::TableMissing {
                index,
                action: name.clone(),
                table: wanted.1.clone(),
            })?;
            let sql = format!(
                "{}.{}.{}",
                ident(alias),
                ident(&table.schema),
                ident(&table.name)
            );
            Some((table, sql))
        }
    };
    let has = |t: &TableInfo, c: &str| t.columns.iter().any(|(n, _)| n == c);
    let column_missing = |table: &TableInfo, column: &str| ActionError::ColumnMissing {
        index,
        action: name.clone(),
        table: table.name.clone(),
        column: column.to_owned(),
    };
    // Source columns, all of which must exist in the target.
    let columns: Vec<String> = match &source {
        Some((table, _)) => {
            for (column, _) in &table.columns {
                if !has(&target, column) {
                    return Err(column_missing(&target, column));
                }
            }
            table.columns.iter().map(|(c, _)| c.clone()).collect()
        }
        None => Vec::new(),
    };
    let condition = match &action.condition {
        None => None,
        Some(c) => Some(render_condition(
            c,
            &target,
            source.as_ref().map(|(t, _)| t),
            &|t, col| column_missing(t, col),
            index,
            &name,
        )?),
    };
    let col_list = columns
        .iter()
        .map(|c| ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let src_list = columns
        .iter()
        .map(|c| format!("s.{}", ident(c)))
        .collect::<Vec<_>>()
        .join(", ");
    let insert_all =
        |src: &str| format!("INSERT INTO {target_sql} ({col_list}) SELECT {src_list} FROM {src} s");
    let set_list = columns
        .iter()
        .map(|c| format!("{} = s.{}", ident(c), ident(c)))
        .collect::<Vec<_>>()
        .join(", ");
    let cond = condition.clone().unwrap_or_else(|| "TRUE".to_owned());
    Ok(match (action.kind, &source) {
        (ActionKind::Insert, Some((_, src))) => vec![insert_all(src)],
        (ActionKind::Replace, Some((_, src))) => {
            vec![format!("DELETE FROM {target_sql}"), insert_all(src)]
        }
        (ActionKind::Update, Some((_, src))) => vec![format!(
            "UPDATE {target_sql} t SET {set_list} FROM {src} s WHERE {cond}"
        )],
        (ActionKind::Upsert, Some((_, src))) => vec![
            format!("UPDATE {target_sql} t SET {set_list} FROM {src} s WHERE {cond}"),
            format!(
                "INSERT INTO {target_sql} ({col_list}) SELECT {src_list} FROM {src} s \
                 WHERE NOT EXISTS (SELECT 1 FROM {target_sql} t WHERE {cond})"
            ),
        ],
        (ActionKind::Delete, Some((_, src))) => vec![format!(
            "DELETE FROM {target_sql} t WHERE EXISTS (SELECT 1 FROM {src} s WHERE {cond})"
        )],
        (ActionKind::Delete, None) => vec![format!("DELETE FROM {target_sql} t WHERE {cond}")],
        (_, None) => {
            return Err(ActionError::NoPayload {
                index,
                action: name,
            });
        }
    })
}

fn render_condition(
    condition: &Condition,
    target: &TableInfo,
    source: Option<&TableInfo>,
    missing: &dyn Fn(&TableInfo, &str) -> ActionError,
    index: usize,
    action: &str,
) -> Result<String, ActionError> {
    let operand = |o: &Operand| -> Result<String, ActionError> {
        match o {
            Operand::Target(c) => {
                if target.columns.iter().any(|(n, _)| n == c) {
                    Ok(format!("t.{}", ident(c)))
                } else {
                    Err(missing(target, c))
                }
            }
            Operand::Source(c) => {
                let source = source.ok_or_else(|| ActionError::NoPayload {
                    index,
                    action: action.to_owned(),
                })?;
                if source.columns.iter().any(|(n, _)| n == c) {
                    Ok(format!("s.{}", ident(c)))
                } else {
                    Err(missing(source, c))
                }
            }
            Operand::Const(sql) => Ok(sql.clone()),
        }
    };
    let join = |list: &[Condition], sep: &str| -> Result<String, ActionError> {
        let parts = list
            .iter()
            .map(|c| render_condition(c, target, source, missing, index, action))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(format!("({})", parts.join(sep)))
    };
    Ok(match condition {
        Condition::Compare { op, left, right } => {
            format!("({} {op} {})", operand(left)?, operand(right)?)
        }
        Condition::And(list) => join(list, " AND ")?,
        Condition::Or(list) => join(list, " OR ")?,
        Condition::Not(inner) => format!(
            "(NOT {})",
            render_condition(inner, target, source, missing, index, action)?
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, cols: &[&str]) -> TableInfo {
        TableInfo {
            schema: "Extract".into(),
            name: name.into(),
            columns: cols
                .iter()
                .map(|c| ((*c).to_owned(), "text".to_owned()))
                .collect(),
        }
    }

    #[test]
    fn parses_the_documented_upsert() {
        let body = br#"{"actions":[{"action":"upsert","source-schema":"Extract","source-table":"changes","target-schema":"Extract","target-table":"Extract","condition":{"op":"and","args":[{"op":"eq","target-col":"order_id","source-col":"order_id"},{"op":"eq","target-col":"line_no","source-col":"line_no"}]}}]}"#;
        let actions = parse_body(body).unwrap();
        assert_eq!(actions.len(), 1);
        assert_eq!(actions[0].kind, ActionKind::Upsert);
        let sql = plan(
            0,
            &actions[0],
            "ta",
            &[table("Extract", &["order_id", "line_no", "v"])],
            Some("sa"),
            &[table("changes", &["order_id", "line_no", "v"])],
        )
        .unwrap();
        assert_eq!(sql.len(), 2);
        assert!(
            sql[0].starts_with("UPDATE \"ta\".\"Extract\".\"Extract\" t SET"),
            "{}",
            sql[0]
        );
        assert!(
            sql[1].contains("WHERE NOT EXISTS (SELECT 1 FROM \"ta\".\"Extract\".\"Extract\" t WHERE ((t.\"order_id\" = s.\"order_id\") AND (t.\"line_no\" = s.\"line_no\")))"),
            "{}",
            sql[1]
        );
    }

    #[test]
    fn constants_and_errors() {
        let body = br#"{"actions":[{"action":"delete","target-schema":"Extract","target-table":"Extract","condition":{"op":"or","args":[{"op":"lt","target-col":"d","const":{"type":"datetime","v":"2018-02-01T00:00:00Z"}},{"op":"not","args":[{"op":"eq","target-col":"r","const":{"type":"string","v":"Eu'rope"}}]}]}}]}"#;
        let actions = parse_body(body).unwrap();
        let sql = plan(
            0,
            &actions[0],
            "ta",
            &[table("Extract", &["d", "r"])],
            None,
            &[],
        )
        .unwrap();
        assert_eq!(
            sql[0],
            "DELETE FROM \"ta\".\"Extract\".\"Extract\" t WHERE ((t.\"d\" < CAST('2018-02-01T00:00:00Z' AS TIMESTAMP WITH TIME ZONE)) OR (NOT (t.\"r\" = 'Eu''rope')))"
        );
        let missing = plan(0, &actions[0], "ta", &[table("Other", &["d"])], None, &[]).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("Specified table does not exist: Extract. (errorCode=410012)")
        );
        assert!(
            parse_body(
                br#"{"actions":[{"action":"merge","target-schema":"a","target-table":"b"}]}"#
            )
            .is_err()
        );
        assert!(parse_body(br#"{"actions":[{"action":"update","target-schema":"a","target-table":"b","source-schema":"a","source-table":"c"}]}"#).is_err());
        assert!(parse_body(br#"{"actions":[]}"#).is_err());
    }
}
