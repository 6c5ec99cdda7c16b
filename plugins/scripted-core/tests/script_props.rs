//! Property tests: mapping scripts and expressions from a tenant, whatever
//! they say, either load or are refused with a located error, and a loaded
//! script maps any batch without a panic, a hang or unbounded memory.
//!
//! - Generated scripts (every key of the language, types valid and not,
//!   sources and expressions of any shape, TOML strings in all four
//!   spellings with escapes) and scripts one edit away from them:
//!   [`Script::compile`] returns a script or a [`ScriptError`] whose line
//!   and column lie inside the text.
//! - A script that loads maps generated records: every row has one value
//!   per column, of the column's type (or null where the column allows
//!   it); every reject names a record of the batch and a reason; only a
//!   lookup into a dataset the tenant does not have fails the batch.
//! - Generated expressions (well-formed ones, token soup, nesting past
//!   [`MAX_EXPR_DEPTH`], long chains, wide calls, growing `replace`s):
//!   [`expr::parse`] returns an expression or an error at an offset of
//!   the text; a parsed one evaluates over scanned values to a value or a
//!   fault, and converts to any column type or refuses.
//!
//! Every run prints its RNG seed and cases (`PROPTEST_RNG_SEED=<seed>
//! PROPTEST_CASES=<cases>` replays them) and a failure its shrunk input;
//! failure persistence is off. Shared generators come from the JSON model
//! of the SDK's suite (`plugins/sdk/tests/support/json_model.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../sdk/tests/support/json_model.rs"]
mod json_model;

use json_model::{Choices, config};
use mlc_common::{ColumnType, Value};
use mlc_scripted_core::eval::{self, Context, Stop};
use mlc_scripted_core::expr::{self, MAX_EXPR_DEPTH};
use mlc_scripted_core::json::{Raw, Table, scan_object};
use mlc_scripted_core::{MapError, MemoryReference, Script, ScriptError};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Field paths scripts use, records hold (or not).
const PATHS: &[&str] = &[
    "InvoiceId",
    "InvoiceNumber",
    "InvoiceAmount",
    "CanceledFlag",
    "InvoiceDate",
    "LastUpdateDate",
    "SupplierNumber",
    "Nested.Value",
    "Nested.Deeper.Value",
    "invoiceLines.LineAmount",
    "invoiceLines.LineNumber",
    "`Odd Name`",
    "Missing",
    "a",
];

/// Function names with their argument counts, and names that are not
/// functions.
const FUNCS: &[(&str, usize, usize)] = &[
    ("upper", 1, 1),
    ("lower", 1, 1),
    ("trim", 1, 1),
    ("substring", 2, 3),
    ("concat", 1, 6),
    ("coalesce", 1, 6),
    ("segment", 2, 3),
    ("replace", 3, 3),
    ("date", 1, 1),
    ("year", 1, 1),
    ("month", 1, 1),
    ("quarter", 1, 1),
    ("day", 1, 1),
    ("period", 1, 1),
    ("flag", 1, 1),
    ("if", 3, 3),
    ("UPPER", 1, 1),
    ("uper", 1, 1),
];

/// A well-formed-looking expression (arity and types at random).
fn an_expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        3 => prop::sample::select(PATHS).prop_map(str::to_owned),
        1 => json_model::a_string().prop_map(|s| format!("'{}'", s.replace('\'', "''"))),
        1 => "[a-zA-Z0-9 é-]{0,8}".prop_map(|s| format!("\"{s}\"")),
        2 => "-?[0-9]{1,6}(\\.[0-9]{1,4})?",
        1 => json_model::a_number().prop_map(|n| n.split(['e', 'E']).next().unwrap_or("0").to_owned()),
        1 => prop::sample::select(vec!["true", "false", "null", "TRUE", "Null"]).prop_map(str::to_owned),
        1 => prop::sample::select(vec![
            "'2024-05-31T23:30:00-07:00'", "'2024-02-29'", "'01-110-4010'", "'Y'", "'n'", "'x'",
        ])
        .prop_map(str::to_owned),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            6 => (
                prop::sample::select(FUNCS),
                prop::collection::vec(inner.clone(), 0..6),
                0u8..10
            )
                .prop_map(|((f, min, max), mut args, wrong)| {
                    // Mostly the right number of arguments.
                    if wrong != 0 {
                        args.truncate(max);
                        while args.len() < min {
                            args.push("a".to_owned());
                        }
                    }
                    format!("{f}({})", args.join(", "))
                }),
            6 => (
                inner.clone(),
                prop::sample::select(vec![
                    "+", "-", "==", "!=", "<", "<=", ">", ">=", "and", "or", "AND",
                ]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            2 => inner.clone().prop_map(|a| format!("not {a}")),
            2 => inner.clone().prop_map(|a| format!("({a})")),
            1 => (inner.clone(), "[a-z]{1,4}", inner.clone())
                .prop_map(|(k, ds, f)| format!("lookup('{ds}', {k}, {f})")),
            3 => (
                inner.clone(),
                prop::sample::select(vec!["suppliers", "suppliers", "cost-centers"]),
                prop::sample::select(vec!["Supplier", "Amount", "Nested", "Flag", "Missing"])
            )
                .prop_map(|(k, ds, f)| format!("lookup('{ds}', {k}, '{f}')")),
            1 => (inner, 1usize..6).prop_map(|(a, n)| {
                // replace() that grows its text tenfold per level.
                let mut e = a;
                for _ in 0..n {
                    e = format!("replace({e}, 'x', 'xxxxxxxxxx')");
                }
                e
            }),
        ]
    })
}

/// Expressions past the limits: deep nesting, long chains, wide calls.
fn an_extreme_expr() -> impl Strategy<Value = String> {
    let n = MAX_EXPR_DEPTH;
    (0u8..6, (n - 4)..(n * 4), prop::sample::select(PATHS)).prop_map(|(shape, k, p)| match shape {
        0 => format!("{}{p}{}", "(".repeat(k), ")".repeat(k)),
        1 => format!("{}{p}", "not ".repeat(k)),
        2 => format!("{p}{}", " + 1".repeat(k)),
        3 => format!("{}{p}{}", "upper(".repeat(k), ")".repeat(k)),
        4 => format!("concat({})", vec![p; k * 20].join(", ")),
        _ => format!("{}{p}{}", "if(true, ".repeat(k), ", null)".repeat(k)),
    })
}

/// Token soup: the lexer's and parser's every branch, in any order.
fn a_token_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        4 => prop::sample::select(vec![
            "(", ")", ",", "+", "-", "==", "!=", "<", "<=", ">", ">=", "=", "!", "and", "or",
            "not", "'", "\"", "'it''s'", "\"a\"", "`", "`odd`", ".", "a.", ".b", "1", "1.5",
            "1.2.3", "-1", "0001", "upper", "lookup", "if", "concat", "true", "null", ";", "é",
            "😀", " ", "\n", "\t", "_x", "x_1", "a.b.c", "`a`.`b`",
        ])
        .prop_map(str::to_owned),
        1 => prop::sample::select(PATHS).prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(token, 0..24).prop_map(|t| t.concat())
}

/// Writes `s` as a TOML string in one of its spellings.
fn toml_string(s: &str, c: &mut Choices) -> String {
    let plain = !s.chars().any(|ch| ch.is_control() || ch == '\'');
    match c.below(4) {
        1 if plain => format!("'{s}'"),
        2 if plain && !s.contains("'''") => format!("'''\n{s}'''"),
        3 => {
            let mut out = String::from("\"\"\"");
            if c.below(2) == 0 {
                out.push('\n');
            }
            for ch in s.chars() {
                match ch {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' if c.below(2) == 0 => out.push('\n'),
                    ' ' if c.below(4) == 0 => out.push_str(" \\\n   "),
                    ch if ch.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(ch))),
                    ch => out.push(ch),
                }
            }
            out.push_str("\"\"\"");
            out
        }
        _ => {
            let mut out = String::from("\"");
            for ch in s.chars() {
                match ch {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    ch if ch.is_control() || c.below(16) == 0 => {
                        out.push_str(&format!("\\u{:04x}", u32::from(ch) & 0xFFFF));
                    }
                    ch => out.push(ch),
                }
            }
            out.push('"');
            out
        }
    }
}

/// One `[[column]]`: its parts, rendered later.
#[derive(Clone, Debug)]
struct ColumnSpec {
    name: String,
    ty: String,
    key: Option<bool>,
    nullable: Option<bool>,
    source: Option<String>,
    expr: Option<String>,
    default: Option<String>,
    map: Option<Vec<(String, String)>>,
    extra: Option<String>,
}

/// A whole script's parts.
#[derive(Clone, Debug)]
struct ScriptSpec {
    resource: String,
    expand: Option<String>,
    keep_empty: Option<bool>,
    filter: Option<String>,
    columns: Vec<ColumnSpec>,
}

fn a_type() -> impl Strategy<Value = String> {
    prop_oneof![
        60 => prop::sample::select(vec![
            "text", "integer", "double", "boolean", "date", "timestamp", "decimal(18,2)",
            "decimal(38,9)", "decimal(38,0)", "decimal(38,38)", "decimal(1,0)", "Decimal(10, 4)",
        ])
        .prop_map(str::to_owned),
        1 => (0u16..300, 0u16..300).prop_map(|(p, s)| format!("decimal({p},{s})")),
        1 => prop::sample::select(vec!["money", "decimal(18)", "decimal(a,b)", "", "decimal(18,2"])
            .prop_map(str::to_owned),
    ]
}

fn a_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(vec![
            "0", "1.5", "-7", "\"N/A\"", "true", "'2024-01-01'", "\"2024-05-03T09:02:51Z\"",
            "1e3", "'Y'",
        ]),
        1 => prop::sample::select(vec![
            "[1]", "{a = 1}", "99999999999999999999999999999999999999999",
        ]),
    ]
    .prop_map(str::to_owned)
}

/// `Some` now and then (a part that scripts rarely have, or get wrong).
fn rarely<T: std::fmt::Debug + Clone>(
    weight: u32,
    s: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Option<T>> {
    prop_oneof![weight => Just(None), 1 => s.prop_map(Some)]
}

fn a_column() -> impl Strategy<Value = ColumnSpec> {
    (
        (
            prop_oneof![20 => "[A-Z][a-z ]{0,10}[a-z]", 1 => json_model::a_string()],
            a_type(),
            prop_oneof![3 => Just(None), 1 => Just(Some(false)), 1 => Just(Some(true))],
            prop_oneof![6 => Just(None), 1 => Just(Some(true)), 2 => Just(Some(false))],
        ),
        prop_oneof![
            24 => prop::sample::select(PATHS)
                .prop_filter("a source is a plain path", |p| !p.contains('`'))
                .prop_map(|p| (Some(p.to_owned()), None)),
            32 => an_expr().prop_map(|e| (None, Some(e))),
            1 => (Just(Some("a".to_owned())), an_expr().prop_map(Some)),
            1 => Just((None, None)),
            1 => Just((Some("Odd Name".to_owned()), None)),
        ],
        rarely(8, a_literal()),
        rarely(
            8,
            prop::collection::vec(("[A-Za-z0-9]{1,3}", a_literal()), 0..4),
        ),
        rarely(
            30,
            prop::sample::select(vec![
                "defualt = 1",
                "map_default = \"x\"",
                "description = \"d\"",
            ]),
        ),
    )
        .prop_map(
            |((name, ty, key, nullable), (source, expr), default, map, extra)| ColumnSpec {
                name,
                ty,
                key,
                nullable,
                source,
                expr,
                default,
                map,
                extra: extra.map(str::to_owned),
            },
        )
}

/// A column as mappings write them: a source or expression with the type
/// it gives.
fn a_sane_column() -> impl Strategy<Value = ColumnSpec> {
    let pairs = vec![
        ("InvoiceId", "integer", false),
        ("InvoiceAmount", "decimal(18,2)", false),
        ("CanceledFlag", "boolean", false),
        ("InvoiceDate", "date", false),
        ("LastUpdateDate", "timestamp", false),
        ("InvoiceNumber", "text", false),
        ("SupplierNumber", "text", false),
        ("invoiceLines.LineAmount", "decimal(38,9)", false),
        ("Nested.Value", "text", false),
        ("concat(InvoiceNumber, '-', SupplierNumber)", "text", true),
        ("year(InvoiceDate)", "integer", true),
        ("InvoiceAmount - 1", "decimal(38,9)", true),
        (
            "lookup('suppliers', SupplierNumber, 'Supplier')",
            "text",
            true,
        ),
        (
            "lookup('suppliers', SupplierNumber, 'Amount')",
            "double",
            true,
        ),
        ("if(flag(CanceledFlag), 'C', 'O')", "text", true),
        ("period(LastUpdateDate)", "text", true),
        ("coalesce(InvoiceAmount, 0)", "decimal(18,2)", true),
        ("upper(segment(InvoiceNumber, 2))", "text", true),
    ];
    (
        prop::sample::select(pairs),
        "[A-Z][a-z]{0,10}",
        any::<bool>(),
    )
        .prop_map(|((what, ty, is_expr), name, key)| ColumnSpec {
            name,
            ty: ty.to_owned(),
            key: Some(key),
            nullable: None,
            source: (!is_expr).then(|| what.to_owned()),
            expr: is_expr.then(|| what.to_owned()),
            default: None,
            map: None,
            extra: None,
        })
}

fn a_script() -> impl Strategy<Value = ScriptSpec> {
    (
        prop_oneof![60 => Just("invoices".to_owned()), 1 => Just(String::new()), 4 => "[a-z]{1,8}"],
        prop_oneof![
            24 => Just(None),
            12 => Just(Some("invoiceLines")),
            4 => Just(Some("invoiceLines.distributions")),
            1 => Just(Some("a..b")),
        ],
        rarely(3, any::<bool>()),
        prop_oneof![
            20 => Just(None),
            8 => an_expr().prop_map(Some),
            1 => a_token_soup().prop_map(Some),
            6 => prop::sample::select(vec![
                "not flag(CanceledFlag)",
                "InvoiceAmount > 0 or InvoiceAmount == null",
                "InvoiceId != null",
                "coalesce(CanceledFlag, 'N') == false",
            ])
            .prop_map(|f| Some(f.to_owned())),
        ],
        prop_oneof![
            1 => Just(Vec::new()),
            60 => prop::collection::vec(prop_oneof![a_column(), a_sane_column()], 1..6),
        ],
    )
        .prop_map(
            |(resource, expand, keep_empty, filter, columns)| ScriptSpec {
                resource,
                expand: expand.map(str::to_owned),
                keep_empty: keep_empty.filter(|_| expand.is_some()),
                filter,
                columns,
            },
        )
}

fn render_script(spec: &ScriptSpec, seed: u64) -> String {
    let mut c = Choices::new(seed);
    let mut out = String::new();
    if c.below(40) != 0 {
        out.push_str(&format!(
            "resource = {}\n",
            toml_string(&spec.resource, &mut c)
        ));
    }
    if let Some(e) = &spec.expand {
        out.push_str(&format!("expand = {}\n", toml_string(e, &mut c)));
    }
    if let Some(k) = spec.keep_empty {
        out.push_str(&format!("keep_empty = {k}\n"));
    }
    if let Some(f) = &spec.filter {
        out.push_str(&format!("filter = {}\n", toml_string(f, &mut c)));
    }
    for col in &spec.columns {
        out.push_str("\n[[column]]\n");
        out.push_str(&format!("name = {}\n", toml_string(&col.name, &mut c)));
        out.push_str(&format!("type = {}\n", toml_string(&col.ty, &mut c)));
        if let Some(k) = col.key {
            out.push_str(&format!("key = {k}\n"));
        }
        if let Some(n) = col.nullable {
            out.push_str(&format!("nullable = {n}\n"));
        }
        if let Some(s) = &col.source {
            out.push_str(&format!("source = {}\n", toml_string(s, &mut c)));
        }
        if let Some(e) = &col.expr {
            out.push_str(&format!("expr = {}\n", toml_string(e, &mut c)));
        }
        if let Some(d) = &col.default {
            out.push_str(&format!("default = {d}\n"));
        }
        if let Some(m) = &col.map {
            let entries: Vec<String> = m.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            out.push_str(&format!("map = {{ {} }}\n", entries.join(", ")));
        }
        if let Some(x) = &col.extra {
            out.push_str(x);
            out.push('\n');
        }
    }
    out
}

/// An error's line and column lie inside `text` (the column may be one
/// past the line's last character; the line one past the last when the
/// text ends with a newline).
fn located(e: &ScriptError, text: &str) -> Result<(), TestCaseError> {
    let lines: Vec<&str> = text.split('\n').collect();
    prop_assert!(
        e.line >= 1 && e.line <= lines.len(),
        "line {} of {}: {e}",
        e.line,
        lines.len()
    );
    let len = lines[e.line - 1].chars().count();
    prop_assert!(
        e.col >= 1 && e.col <= len + 1,
        "column {} of {len}: {e}",
        e.col
    );
    let shown = e.to_string();
    prop_assert!(
        shown.starts_with(&format!("mapping script line {}:{}: ", e.line, e.col)),
        "{shown}"
    );
    prop_assert!(!e.message.is_empty());
    Ok(())
}

/// A value has its column's type.
fn typed(v: &Value, ty: ColumnType, nullable: bool) -> bool {
    match (v, ty) {
        (Value::Null, _) => nullable,
        (Value::Text(_), ColumnType::Text)
        | (Value::Integer(_), ColumnType::Integer)
        | (Value::Boolean(_), ColumnType::Boolean)
        | (Value::Date(_), ColumnType::Date)
        | (Value::Timestamp(_), ColumnType::Timestamp) => true,
        (Value::Double(f), ColumnType::Double) => f.is_finite(),
        (Value::Decimal(d), ColumnType::Decimal { precision, scale }) => {
            d.scale == scale
                && mlc_common::decimal::pow10(precision)
                    .is_some_and(|limit| d.unscaled.unsigned_abs() < limit.unsigned_abs())
        }
        _ => false,
    }
}

/// A value a record of the generated scripts' resource may hold under
/// `name`: mostly one of the kind the name suggests, else any.
fn a_member(name: &'static str) -> impl Strategy<Value = json_model::Model> {
    use json_model::Model;
    let any_value = || json_model::a_value(2).prop_map(|v| v.unique().finite());
    let plausible: BoxedStrategy<Model> = match name {
        "InvoiceId" => (0i64..i64::MAX)
            .prop_map(|i| Model::Num(i.to_string()))
            .boxed(),
        "InvoiceAmount" => "-?[0-9]{1,12}\\.[0-9]{2}".prop_map(Model::Num).boxed(),
        "CanceledFlag" => prop_oneof![
            any::<bool>().prop_map(Model::Bool),
            prop::sample::select(vec!["Y", "N", "yes", "No"]).prop_map(|s| Model::Str(s.into())),
        ]
        .boxed(),
        "InvoiceDate" => "20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
            .prop_map(Model::Str)
            .boxed(),
        "LastUpdateDate" => prop::sample::select(vec![
            "2024-05-03T09:02:51.077+00:00",
            "2024-05-31T23:30:00-07:00",
            "2024-05-03T09:02:51Z",
        ])
        .prop_map(|s| Model::Str(s.into()))
        .boxed(),
        "SupplierNumber" => prop::sample::select(vec!["1253", "x", "404"])
            .prop_map(|s| Model::Str(s.into()))
            .boxed(),
        "Nested" => any_value()
            .prop_map(|v| Model::Obj(vec![("Value".into(), v)]))
            .boxed(),
        "invoiceLines" => prop::collection::vec(
            (json_model::a_scalar(), json_model::a_scalar()).prop_map(|(a, n)| {
                Model::Obj(vec![
                    ("LineAmount".into(), a.finite()),
                    ("LineNumber".into(), n.finite()),
                ])
            }),
            0..3,
        )
        .prop_map(Model::Arr)
        .boxed(),
        _ => json_model::a_string().prop_map(Model::Str).boxed(),
    };
    prop_oneof![3 => plausible, 1 => any_value()]
}

/// Records for the generated scripts: the paths they use, with values of
/// any kind.
fn a_batch() -> impl Strategy<Value = Vec<String>> {
    let names = [
        "InvoiceId",
        "InvoiceNumber",
        "InvoiceAmount",
        "CanceledFlag",
        "InvoiceDate",
        "LastUpdateDate",
        "SupplierNumber",
        "Odd Name",
        "a",
        "Nested",
        "invoiceLines",
    ];
    let members: Vec<_> = names
        .iter()
        .map(|&n| prop::option::weighted(0.8, a_member(n)).prop_map(move |v| v.map(|v| (n, v))))
        .collect();
    let record = (members, any::<u64>()).prop_map(|(members, seed)| {
        let model = json_model::Model::Obj(
            members
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        );
        json_model::render(&model, seed)
    });
    prop::collection::vec(record, 0..6)
}

fn reference() -> MemoryReference {
    let mut r = MemoryReference::default();
    r.add_json(
        "suppliers",
        r#"{"1253": {"Supplier": "Acme", "Amount": 12.5, "Nested": {"a": 1}, "Flag": "Y"}, "x": {"Supplier": null}}"#,
    )
    .unwrap();
    r
}

/// Compiles `text`: a script, or a located error.
fn compiles_or_is_located(text: &str) -> Result<Option<Script>, TestCaseError> {
    match Script::compile(text) {
        Ok(script) => Ok(Some(script)),
        Err(e) => {
            located(&e, text)?;
            Ok(None)
        }
    }
}

/// Maps `records` with `script` and checks the batch's shape.
fn maps_soundly(script: &Script, records: &[String]) -> Result<(), TestCaseError> {
    let mut reference = reference();
    match script.map_batch(script.resource(), records, &mut reference) {
        Ok(batch) => {
            let schema = &script.schema().columns;
            let rejected: Vec<u32> = batch.rejects.iter().map(|r| r.index).collect();
            let mut last = 0;
            for row in &batch.rows {
                prop_assert!((row.source as usize) < records.len());
                prop_assert!(row.source >= last, "rows out of record order");
                last = row.source;
                prop_assert!(
                    !rejected.contains(&row.source),
                    "a rejected record kept a row"
                );
                prop_assert_eq!(row.values.len(), schema.len());
                for (v, c) in row.values.iter().zip(schema) {
                    prop_assert!(typed(v, c.ty, c.nullable), "{v:?} in column {c:?}");
                }
            }
            for r in &batch.rejects {
                prop_assert!((r.index as usize) < records.len());
                prop_assert!(!r.reason.is_empty());
            }
        }
        Err(MapError::Lookup { dataset, .. }) => prop_assert_ne!(dataset, "suppliers"),
        Err(e) => prop_assert!(false, "the batch failed: {e}"),
    }
    Ok(())
}

/// Fragments that break TOML or the script language, or nearly do.
fn a_script_fragment() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "[",
        "]",
        "[[column]]",
        "[column]",
        "\"",
        "'",
        "'''",
        "\"\"\"",
        "=",
        "\n",
        "{",
        "}",
        "#",
        ".",
        ",",
        "\\",
        "\\u",
        "\\uD800",
        "\\x",
        "expr = \"(\"",
        "name = 1",
        "type",
        "\u{0}",
        "é",
        "resource = \"x\"\n",
        "[[column]]\nname = \"A\"\n",
        "a.b = 1\n",
        "= =",
    ])
    .prop_map(str::to_owned)
}

/// Field slots for an expression's paths: the `i`-th distinct path reads
/// member `p<i % 6>` of `record`.
fn slots_for<'a>(e: &mut expr::Expr, record: &'a str) -> Vec<Raw<'a>> {
    let mut names: Vec<String> = Vec::new();
    e.fields_mut(&mut |path, _, slot| {
        *slot = names.iter().position(|n| n == path).unwrap_or_else(|| {
            names.push(path.to_owned());
            names.len() - 1
        });
    });
    let mut table = Table::default();
    for m in 0..6 {
        table.entry(&format!("p{m}")).slot = Some(m);
    }
    let mut members = [Raw::Missing; 6];
    if scan_object(record, &[table], 0, &mut members).is_err() {
        members = [Raw::Missing; 6];
    }
    (0..names.len()).map(|i| members[i % 6]).collect()
}

/// Evaluates a parsed expression over `record` and converts the result
/// to every column type: values of the type, or faults.
fn evaluates_soundly(e: &mut expr::Expr, record: &str) -> Result<(), TestCaseError> {
    let slots = slots_for(e, record);
    let mut reference = reference();
    let mut cx = Context::new(&mut reference);
    match eval::eval(e, &slots, &mut cx) {
        Ok(v) => {
            if let Some(t) = v.text() {
                prop_assert!(t.len() <= eval::MAX_TEXT_LEN.max(record.len()));
            }
            for ty in [
                ColumnType::Text,
                ColumnType::Integer,
                ColumnType::Double,
                ColumnType::Boolean,
                ColumnType::Date,
                ColumnType::Timestamp,
                ColumnType::Decimal {
                    precision: 18,
                    scale: 2,
                },
                ColumnType::Decimal {
                    precision: 38,
                    scale: 38,
                },
            ] {
                if let Ok(value) = eval::convert(v.clone(), ty) {
                    prop_assert!(typed(&value, ty, true), "{value:?} as {ty:?}");
                }
            }
            // As a filter: true, false or a fault, never a panic.
            let _ = eval::truth(&v);
        }
        Err(Stop::Fault(f)) => prop_assert!(!f.message.is_empty()),
        Err(Stop::Fatal(MapError::Lookup { dataset, .. })) => prop_assert_ne!(dataset, "suppliers"),
        Err(Stop::Fatal(other)) => prop_assert!(false, "fatal: {other}"),
    }
    Ok(())
}

/// A record of six members `p0`..`p5` with values of any kind.
fn a_member_record() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        3 => json_model::a_scalar().prop_map(|v| v.finite()),
        1 => prop::sample::select(vec![
            "2024-05-31T23:30:00-07:00", "2024-02-29", "Y", "no", "1253", "01-110-4010", "xxx",
            "ΐ",
        ])
        .prop_map(|s| json_model::Model::Str(s.to_owned())),
        1 => json_model::a_value(2).prop_map(|v| v.unique().finite()),
    ];
    (prop::collection::vec(value, 6), any::<u64>()).prop_map(|(values, seed)| {
        let members = values
            .into_iter()
            .enumerate()
            .map(|(i, v)| (format!("p{i}"), v))
            .collect();
        json_model::render(&json_model::Model::Obj(members), seed)
    })
}

proptest! {
    #![proptest_config(config(512))]

    /// Generated scripts load or are refused at a line and column; those
    /// that load map any batch into rows of their schema and rejects.
    #[test]
    fn generated_scripts_load_or_fail_located(
        spec in a_script(),
        seed in any::<u64>(),
        records in a_batch(),
    ) {
        let text = render_script(&spec, seed);
        let script = compiles_or_is_located(&text)
            .map_err(|e| TestCaseError::fail(format!("{e}\nscript:\n{text}")))?;
        if let Some(script) = script {
            prop_assert_eq!(script.schema().columns.len(), spec.columns.len());
            maps_soundly(&script, &records)
                .map_err(|e| TestCaseError::fail(format!("{e}\nscript:\n{text}\nrecords: {records:?}")))?;
        }
    }

    /// Scripts one edit away from generated ones: the same.
    #[test]
    fn broken_scripts_fail_located(
        spec in a_script(),
        seed in any::<u64>(),
        op in any::<u8>(),
        at in any::<usize>(),
        len in 1usize..6,
        fragment in a_script_fragment(),
        records in a_batch(),
    ) {
        let text = json_model::mutate(&render_script(&spec, seed), op, at, len, &fragment);
        let script = compiles_or_is_located(&text)
            .map_err(|e| TestCaseError::fail(format!("{e}\nscript:\n{text}")))?;
        if let Some(script) = script {
            maps_soundly(&script, &records)
                .map_err(|e| TestCaseError::fail(format!("{e}\nscript:\n{text}")))?;
        }
    }

    /// Expressions of every shape, and token soup: parsed or refused at
    /// an offset; parsed ones evaluate to a value or a fault.
    #[test]
    fn expressions_parse_or_fail_located_and_evaluate(
        text in prop_oneof![3 => an_expr(), 2 => a_token_soup(), 1 => an_extreme_expr()],
        record in a_member_record(),
    ) {
        match expr::parse(&text) {
            Ok(mut e) => evaluates_soundly(&mut e, &record)
                .map_err(|err| TestCaseError::fail(format!("{err}\nexpr: {text}\nrecord: {record}")))?,
            Err(err) => {
                prop_assert!(err.at <= text.len(), "{err:?}");
                prop_assert!(text.is_char_boundary(err.at), "{err:?}");
                prop_assert!(!err.message.is_empty());
            }
        }
    }
}

#[test]
fn extreme_expressions_are_refused_inside_scripts_too() {
    // One script per shape, nested far past the limit: a located error,
    // and the column named.
    let n = MAX_EXPR_DEPTH * 50;
    for e in [
        format!("{}a{}", "(".repeat(n), ")".repeat(n)),
        format!("{}a", "not ".repeat(n)),
        format!("a{}", " + 1".repeat(n)),
        format!("{}a{}", "upper(".repeat(n), ")".repeat(n)),
    ] {
        let text = format!(
            "resource = \"x\"\n[[column]]\nname = \"A\"\ntype = \"text\"\nexpr = \"{e}\"\n"
        );
        let err = Script::compile(&text).unwrap_err();
        assert_eq!(err.line, 5, "{err}");
        assert_eq!(err.column.as_deref(), Some("A"));
        assert!(err.message.contains("nests more than"), "{err}");
    }
}
