//! Script-level tests: compiling, located errors, mapping, rejects.

use mlc_common::time::{parse_date, parse_timestamp};
use mlc_common::{ColumnType, Decimal, MappedBatch, Value};

use crate::{MapError, MemoryReference, Script};

fn compile(text: &str) -> Script {
    match Script::compile(text) {
        Ok(s) => s,
        Err(e) => panic!("script refused: {e}"),
    }
}

fn map(script: &Script, records: &[&str]) -> MappedBatch {
    let mut reference = reference();
    script
        .map_batch(script.resource(), records, &mut reference)
        .unwrap_or_else(|e| panic!("batch failed: {e}"))
}

fn reference() -> MemoryReference {
    let mut r = MemoryReference::default();
    r.add_json(
        "suppliers",
        r#"{"1253": {"Supplier": "Acme Office Supply", "ParentSupplierNumber": "1000", "ParentSupplier": "Acme Holdings"},
            "1000": {"Supplier": "Acme Holdings"}}"#,
    )
    .unwrap();
    r.add_json(
        "cost-centers",
        r#"{"110": {"Description": "Finance"}, "120": {"Description": "Sales \"EMEA\""}}"#,
    )
    .unwrap();
    r
}

fn error_of(text: &str) -> String {
    match Script::compile(text) {
        Ok(_) => panic!("script accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

const INVOICES: &str = r#"
resource = "invoices"
description = "Payables invoice headers"
filter = "not CanceledFlag"

[[column]]
name = "Invoice ID"
type = "integer"
key = true
source = "InvoiceId"

[[column]]
name = "Invoice Amount"
type = "decimal(18,2)"
source = "InvoiceAmount"

[[column]]
name = "Amount Paid"
type = "decimal(18,2)"
source = "AmountPaid"
default = 0

[[column]]
name = "Status"
type = "text"
source = "ValidationStatus"
map = { Validated = "Validated", "Needs revalidation" = "Needs Revalidation", "Never validated" = "Not Validated" }
map_default = "Other"

[[column]]
name = "Supplier"
type = "text"
expr = "upper(trim(Supplier))"

[[column]]
name = "Parent Supplier"
type = "text"
expr = "coalesce(lookup('suppliers', SupplierNumber, 'ParentSupplier'), Supplier)"

[[column]]
name = "Cost Center"
type = "text"
expr = "segment(LiabilityDistribution, 2)"

[[column]]
name = "Cost Center Name"
type = "text"
expr = "lookup('cost-centers', segment(LiabilityDistribution, 2), 'Description')"

[[column]]
name = "Invoice Date"
type = "date"
source = "InvoiceDate"
nullable = false

[[column]]
name = "Invoice Period"
type = "text"
expr = "period(InvoiceDate)"

[[column]]
name = "Last Updated"
type = "timestamp"
source = "LastUpdateDate"

[[column]]
name = "Updated On"
type = "date"
expr = "date(LastUpdateDate)"

[[column]]
name = "Site City"
type = "text"
source = "Site.Address.City"
"#;

#[test]
fn maps_an_invoice_with_every_feature() {
    let script = compile(INVOICES);
    assert_eq!(script.resource(), "invoices");
    assert_eq!(script.description(), Some("Payables invoice headers"));
    let schema = script.schema();
    assert_eq!(schema.columns.len(), 13);
    assert!(schema.columns[0].key && !schema.columns[0].nullable);
    assert!(!schema.columns[1].key && schema.columns[1].nullable);
    assert_eq!(
        schema.columns[1].ty,
        ColumnType::Decimal {
            precision: 18,
            scale: 2
        }
    );
    assert!(!schema.columns[8].nullable);

    let records = [
        r#"{"InvoiceId": 300100412233001, "InvoiceNumber": "ACME-1", "InvoiceAmount": 1250.00,
            "ValidationStatus": "Needs revalidation", "Supplier": "  Acme Office Supply ", "SupplierNumber": "1253",
            "LiabilityDistribution": "01-110-2210-0000", "InvoiceDate": "2024-05-02", "CanceledFlag": false,
            "LastUpdateDate": "2024-05-03T23:02:51.077-07:00", "Site": {"Address": {"City": "Austin"}},
            "links": [{"rel": "self", "href": "https://x/invoices/300100412233001"}]}"#,
        r#"{"InvoiceId": 300100412233002, "InvoiceAmount": 0.10, "AmountPaid": 0.1, "ValidationStatus": "Weird",
            "Supplier": "Beta", "SupplierNumber": "9999", "LiabilityDistribution": "01-120-2210-0000",
            "InvoiceDate": "2024-05-03", "CanceledFlag": "N", "LastUpdateDate": "2024-05-04T10:00:00+00:00"}"#,
        r#"{"InvoiceId": 300100412233003, "InvoiceAmount": 5, "InvoiceDate": "2024-05-03", "CanceledFlag": "Y"}"#,
        r#"{"InvoiceId": 300100412233004, "InvoiceAmount": 5, "InvoiceDate": "2024-05-03", "CanceledFlag": true}"#,
    ];
    let batch = map(&script, &records);
    assert_eq!(batch.rejects, vec![], "no rejects expected");
    assert_eq!(batch.rows.len(), 2, "canceled invoices are filtered out");
    let r0 = &batch.rows[0];
    assert_eq!(r0.source, 0);
    assert_eq!(
        r0.values,
        vec![
            Value::Integer(300100412233001),
            Value::Decimal(Decimal::new(125000, 2)),
            Value::Decimal(Decimal::new(0, 2)),
            Value::Text("Needs Revalidation".into()),
            Value::Text("ACME OFFICE SUPPLY".into()),
            Value::Text("Acme Holdings".into()),
            Value::Text("110".into()),
            Value::Text("Finance".into()),
            Value::Date(parse_date("2024-05-02").unwrap()),
            Value::Text("2024-05".into()),
            Value::Timestamp(parse_timestamp("2024-05-04T06:02:51.077Z").unwrap()),
            Value::Date(parse_date("2024-05-03").unwrap()),
            Value::Text("Austin".into()),
        ]
    );
    let r1 = &batch.rows[1];
    assert_eq!(r1.source, 1);
    assert_eq!(r1.values[1], Value::Decimal(Decimal::new(10, 2)));
    assert_eq!(r1.values[2], Value::Decimal(Decimal::new(10, 2)));
    assert_eq!(r1.values[3], Value::Text("Other".into()));
    assert_eq!(
        r1.values[5],
        Value::Text("Beta".into()),
        "lookup miss falls back"
    );
    assert_eq!(r1.values[7], Value::Text("Sales \"EMEA\"".into()));
    assert_eq!(r1.values[12], Value::Null);
}

#[test]
fn type_mismatches_become_rejects_naming_the_field() {
    let script = compile(INVOICES);
    let records = [
        r#"{"InvoiceId": 1, "InvoiceAmount": "abc", "InvoiceDate": "2024-05-03"}"#,
        r#"{"InvoiceId": 2, "InvoiceAmount": 12.345, "InvoiceDate": "2024-05-03"}"#,
        r#"{"InvoiceId": 3, "InvoiceAmount": 1, "InvoiceDate": "05/03/2024"}"#,
        r#"{"InvoiceId": 4, "InvoiceAmount": 1}"#,
        r#"{"InvoiceId": "x4", "InvoiceAmount": 1, "InvoiceDate": "2024-05-03"}"#,
        r#"{"InvoiceId": 6, "InvoiceAmount": 1, "InvoiceDate": "2024-05-03", "CanceledFlag": "maybe"}"#,
        r#"{"InvoiceId": 7, "InvoiceAmount": 1, "InvoiceDate": "2024-05-03", "Supplier": {"name": "x"}}"#,
        r#"{"InvoiceId": 8, "InvoiceAmount": 1, "InvoiceDate": "2024-05-03", "LastUpdateDate": "2024-05-03"}"#,
        r#"{"InvoiceId": 9, "InvoiceAmount": 1, "InvoiceDate": "2024-05-03""#,
        r#"{"InvoiceId": 10, "InvoiceAmount": 1, "InvoiceDate": "2024-05-03"}"#,
    ];
    let batch = map(&script, &records);
    assert_eq!(
        batch.rows.len(),
        1,
        "only the last record is good: {batch:?}"
    );
    assert_eq!(batch.rows[0].source, 9);
    let got: Vec<(u32, Option<&str>, &str)> = batch
        .rejects
        .iter()
        .map(|r| (r.index, r.field.as_deref(), r.reason.as_str()))
        .collect();
    let expected: [(u32, Option<&str>, &str); 9] = [
        (
            0,
            Some("InvoiceAmount"),
            "InvoiceAmount: text \"abc\" is not a number (column \"Invoice Amount\", decimal(18,2))",
        ),
        (
            1,
            Some("InvoiceAmount"),
            "InvoiceAmount: 12.345 has more than 2 decimal places (column \"Invoice Amount\", decimal(18,2))",
        ),
        (
            2,
            Some("InvoiceDate"),
            "InvoiceDate: text \"05/03/2024\" is not a date (YYYY-MM-DD) (column \"Invoice Date\", date)",
        ),
        (
            3,
            Some("InvoiceDate"),
            "InvoiceDate: no value, and the column does not allow empty values (column \"Invoice Date\", date)",
        ),
        (
            4,
            Some("InvoiceId"),
            "InvoiceId: text \"x4\" is not an integer (column \"Invoice ID\", integer)",
        ),
        (5, None, "filter: text \"maybe\" is not true or false"),
        (
            6,
            Some("Supplier"),
            "Supplier: trim() got an object, not text (column \"Supplier\", text)",
        ),
        (
            7,
            Some("LastUpdateDate"),
            "LastUpdateDate: text \"2024-05-03\" is not a timestamp with offset (column \"Last Updated\", timestamp)",
        ),
        (
            8,
            None,
            "the record is not a JSON object: invalid JSON at byte 64: expected ',' or '}' in object",
        ),
    ];
    assert_eq!(got, expected);
}

#[test]
fn decimals_keep_every_digit() {
    let script = compile(
        r#"
resource = "x"
[[column]]
name = "Big"
type = "decimal(38,9)"
source = "V"
[[column]]
name = "As Text"
type = "text"
source = "V"
[[column]]
name = "Net"
type = "decimal(38,9)"
expr = "V - 0.000000001"
"#,
    );
    let batch = map(
        &script,
        &[
            r#"{"V": 12345678901234567890.123456789}"#,
            r#"{"V": 12345678901234567.89}"#,
            r#"{"V": -0.000000001}"#,
        ],
    );
    assert_eq!(batch.rejects, vec![]);
    let values: Vec<String> = batch
        .rows
        .iter()
        .flat_map(|r| r.values.iter())
        .map(|v| match v {
            Value::Decimal(d) => d.to_string(),
            Value::Text(t) => format!("text {t}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        values,
        [
            "12345678901234567890.123456789",
            "text 12345678901234567890.123456789",
            "12345678901234567890.123456788",
            "12345678901234567.890000000",
            "text 12345678901234567.89",
            "12345678901234567.889999999",
            "-0.000000001",
            "text -0.000000001",
            "-0.000000002",
        ]
    );
}

const JOURNALS: &str = r#"
resource = "journalBatches"
expand = "journalHeaders.journalLines"
filter = "journalHeaders.journalLines.EnteredDr != null or journalHeaders.journalLines.EnteredCr != null"

[[column]]
name = "Batch"
type = "text"
source = "BatchName"

[[column]]
name = "Journal"
type = "text"
source = "journalHeaders.JournalName"

[[column]]
name = "Line"
type = "integer"
key = true
source = "journalHeaders.journalLines.JeLineNumber"

[[column]]
name = "Cost Center"
type = "text"
expr = "segment(journalHeaders.journalLines.AccountCombination, 2)"

[[column]]
name = "Cost Center Name"
type = "text"
expr = "lookup('cost-centers', segment(journalHeaders.journalLines.AccountCombination, 2), 'Description')"

[[column]]
name = "Net"
type = "decimal(18,2)"
expr = "coalesce(journalHeaders.journalLines.EnteredDr, 0) - coalesce(journalHeaders.journalLines.EnteredCr, 0)"
"#;

#[test]
fn expands_nested_children_as_arrays_or_items_collections() {
    let script = compile(JOURNALS);
    let records = [
        // REST framework v1/v2: children as arrays
        r#"{"BatchName": "B1", "journalHeaders": [
              {"JournalName": "J1", "journalLines": [
                  {"JeLineNumber": 1, "AccountCombination": "01-110-1110-0000", "EnteredDr": 100.00},
                  {"JeLineNumber": 2, "AccountCombination": "01-120-2210-0000", "EnteredCr": 100.00},
                  {"JeLineNumber": 3, "AccountCombination": "01-120-2210-0000"}]},
              {"JournalName": "J2", "journalLines": []}]}"#,
        // REST framework v3+: children as {"items": [...]}
        r#"{"BatchName": "B2", "journalHeaders": {"items": [
              {"JournalName": "J3", "journalLines": {"items": [
                  {"JeLineNumber": 1, "AccountCombination": "01-999-1110-0000", "EnteredDr": 0.10}],
               "count": 1, "hasMore": false}}], "count": 1, "hasMore": false}}"#,
        // no children at all
        r#"{"BatchName": "B3"}"#,
        // a bad line rejects the whole record
        r#"{"BatchName": "B4", "journalHeaders": [{"JournalName": "J4", "journalLines": [
              {"JeLineNumber": 1, "EnteredDr": 1}, {"JeLineNumber": "two", "EnteredDr": 1}]}]}"#,
        r#"{"BatchName": "B5", "journalHeaders": "oops"}"#,
    ];
    let batch = map(&script, &records);
    let rows: Vec<(u32, Vec<Value>)> = batch
        .rows
        .iter()
        .map(|r| (r.source, r.values.clone()))
        .collect();
    let t = |s: &str| Value::Text(s.into());
    let d = |s: &str| Value::Decimal(Decimal::parse(s).unwrap());
    assert_eq!(
        rows,
        vec![
            (
                0,
                vec![
                    t("B1"),
                    t("J1"),
                    Value::Integer(1),
                    t("110"),
                    t("Finance"),
                    d("100.00")
                ]
            ),
            (
                0,
                vec![
                    t("B1"),
                    t("J1"),
                    Value::Integer(2),
                    t("120"),
                    t("Sales \"EMEA\""),
                    d("-100.00")
                ]
            ),
            (
                1,
                vec![
                    t("B2"),
                    t("J3"),
                    Value::Integer(1),
                    t("999"),
                    Value::Null,
                    d("0.10")
                ]
            ),
        ]
    );
    assert_eq!(batch.rejects.len(), 2, "{:?}", batch.rejects);
    assert_eq!(batch.rejects[0].index, 3);
    assert_eq!(
        batch.rejects[0].field.as_deref(),
        Some("journalHeaders.journalLines.JeLineNumber")
    );
    assert_eq!(batch.rejects[1].index, 4);
    assert_eq!(batch.rejects[1].field.as_deref(), Some("journalHeaders"));
    assert!(
        batch.rejects[1].reason.contains("string, not an array"),
        "{}",
        batch.rejects[1].reason
    );
}

#[test]
fn keep_empty_gives_parents_without_children_one_row() {
    let script = compile(
        r#"
resource = "invoices"
expand = "invoiceLines"
keep_empty = true
[[column]]
name = "Invoice"
type = "integer"
source = "InvoiceId"
[[column]]
name = "Line"
type = "integer"
source = "invoiceLines.LineNumber"
"#,
    );
    let batch = map(
        &script,
        &[
            r#"{"InvoiceId": 1, "invoiceLines": [{"LineNumber": 1}, {"LineNumber": 2}]}"#,
            r#"{"InvoiceId": 2}"#,
        ],
    );
    let got: Vec<Vec<Value>> = batch.rows.into_iter().map(|r| r.values).collect();
    assert_eq!(
        got,
        vec![
            vec![Value::Integer(1), Value::Integer(1)],
            vec![Value::Integer(1), Value::Integer(2)],
            vec![Value::Integer(2), Value::Null],
        ]
    );
}

#[test]
fn booleans_accept_json_and_y_n() {
    let script = compile(
        "resource = \"s\"\n[[column]]\nname = \"Flag\"\ntype = \"boolean\"\nsource = \"F\"\n[[column]]\nname = \"Label\"\ntype = \"text\"\nsource = \"F\"\nmap = { Y = \"Yes\", N = \"No\", true = \"Yes\", false = \"No\" }\n",
    );
    let batch = map(
        &script,
        &[
            r#"{"F": true}"#,
            r#"{"F": "N"}"#,
            r#"{"F": "y"}"#,
            r#"{"F": false}"#,
            r#"{}"#,
            r#"{"F": 1}"#,
        ],
    );
    let got: Vec<Vec<Value>> = batch.rows.iter().map(|r| r.values.clone()).collect();
    let b = Value::Boolean;
    let t = |s: &str| Value::Text(s.into());
    assert_eq!(
        got,
        vec![
            vec![b(true), t("Yes")],
            vec![b(false), t("No")],
            vec![b(true), t("y")],
            vec![b(false), t("No")],
            vec![Value::Null, Value::Null],
        ]
    );
    assert_eq!(batch.rejects.len(), 1, "{:?}", batch.rejects);
    assert_eq!(batch.rejects[0].index, 5);
}

#[test]
fn wrong_resource_and_failing_lookups_fail_the_batch() {
    let script = compile(INVOICES);
    let mut reference = MemoryReference::default();
    let err = script
        .map_batch("suppliers", &["{}"], &mut reference)
        .unwrap_err();
    assert!(matches!(err, MapError::UnknownResource { .. }), "{err}");
    // no datasets at all: the lookup of a supplier fails the batch
    let err = script
        .map_batch(
            "invoices",
            &[r#"{"InvoiceId": 1, "InvoiceAmount": 1, "InvoiceDate": "2024-05-03", "SupplierNumber": "1253"}"#],
            &mut reference,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "lookup of \"1253\" in reference dataset \"suppliers\" failed: the tenant has no reference dataset \"suppliers\""
    );
}

#[test]
fn bad_scripts_are_refused_with_line_and_column_name() {
    let base = "resource = \"invoices\"\n\n[[column]]\nname = \"Invoice ID\"\ntype = \"integer\"\nsource = \"InvoiceId\"\n\n[[column]]\nname = \"Invoice Amount\"\n";
    for (tail, expected) in [
        (
            "type = \"decimal(18)\"\nsource = \"InvoiceAmount\"\n",
            "mapping script line 10:8: column \"Invoice Amount\": type \"decimal(18)\": write decimal(precision,scale), e.g. decimal(18,2)",
        ),
        (
            "type = \"money\"\nsource = \"InvoiceAmount\"\n",
            "mapping script line 10:8: column \"Invoice Amount\": unknown type \"money\"; expected text, integer, double, decimal(precision,scale), boolean, date or timestamp",
        ),
        (
            "type = \"decimal(18,2)\"\nexpr = \"uper(InvoiceAmount)\"\n",
            "mapping script line 11:9: column \"Invoice Amount\": in expr: unknown function \"uper\"; known functions: upper, lower, trim, substring, concat, coalesce, segment, replace, date, year, month, quarter, day, period, flag, if, lookup",
        ),
        (
            "type = \"decimal(18,2)\"\nexpr = \"InvoiceAmount +\"\n",
            "mapping script line 11:24: column \"Invoice Amount\": in expr: the expression ends too early",
        ),
        (
            "type = \"decimal(18,2)\"\nsource = \"InvoiceAmount\"\ndefualt = 0\n",
            "mapping script line 12:1: column \"Invoice Amount\": unknown key \"defualt\" in a [[column]]; allowed: name, type, key, nullable, source, expr, default, map, map_default, description",
        ),
        (
            "type = \"decimal(18,2)\"\nsource = \"InvoiceAmount\"\ndefault = \"none\"\n",
            "mapping script line 12:11: column \"Invoice Amount\": default: text \"none\" is not a number (the column is decimal(18,2))",
        ),
        (
            "type = \"decimal(18,2)\"\n",
            "mapping script line 8:1: column \"Invoice Amount\": missing source = \"Field\" or expr = \"...\"",
        ),
        (
            "type = \"integer\"\nsource = \"InvoiceAmount\"\nkey = true\nnullable = true\n",
            "mapping script line 13:12: column \"Invoice Amount\": a key column cannot be nullable",
        ),
        (
            "type = \"integer\"\nsource = \"Status\"\nmap = { A = \"Active\" }\n",
            "mapping script line 12:7: column \"Invoice Amount\": map label for \"A\": text \"Active\" is not an integer (the column is integer)",
        ),
        (
            "type = \"text\"\nsource = \"Invoice Amount\"\n",
            "mapping script line 11:10: column \"Invoice Amount\": source \"Invoice Amount\" is not a field path like InvoiceAmount or invoiceLines.LineAmount",
        ),
        (
            "type = \"text\"\nsource = \"InvoiceId\"\n[[column]]\nname = \"Invoice ID\"\ntype = \"text\"\nsource = \"X\"\n",
            "mapping script line 13:8: column \"Invoice ID\": a column of this name is defined twice",
        ),
        (
            "type = \"text\"\nsource = 'x'\nsource = 'y'\n",
            "mapping script line 12:1: not valid TOML: duplicate key",
        ),
    ] {
        let text = format!("{base}{tail}");
        let got = error_of(&text);
        assert_eq!(got, expected, "script:\n{text}");
    }
}

#[test]
fn top_level_mistakes_are_located_too() {
    assert_eq!(
        error_of(
            "resource = \"invoices\"\nfliter = \"x\"\n[[column]]\nname = \"A\"\ntype = \"text\"\nsource = \"A\"\n"
        ),
        "mapping script line 2:1: unknown key \"fliter\" in the script; allowed: resource, description, expand, keep_empty, filter, column"
    );
    assert_eq!(
        error_of(
            "resource = \"invoices\"\nfilter = \"CanceledFlag = 'Y'\"\n[[column]]\nname = \"A\"\ntype = \"text\"\nsource = \"A\"\n"
        ),
        "mapping script line 2:24: in filter: use '==' to compare"
    );
    assert_eq!(
        error_of("[[column]]\nname = \"A\"\ntype = \"text\"\nsource = \"A\"\n"),
        "mapping script line 1:1: missing `resource = \"...\"` (the Oracle resource, e.g. invoices)"
    );
    assert_eq!(
        error_of(
            "resource = \"invoices\"\nexpand = \"invoiceLines\"\n[[column]]\nname = \"Lines\"\ntype = \"text\"\nsource = \"invoiceLines\"\n"
        ),
        "mapping script line 6:10: column \"Lines\": \"invoiceLines\" is the expanded collection itself; name one of its fields, e.g. invoiceLines.Field"
    );
    assert_eq!(
        error_of("resource = \"invoices\"\n"),
        "mapping script line 1:1: no columns: add [[column]] sections"
    );
    let e = Script::compile(
        "resource = \"x\"\n[[column]]\nname = \"A\"\ntype = \"bool\"\nsource = 1\n",
    )
    .unwrap_err();
    assert_eq!(
        e.with_file("mappings/demo/x.toml").to_string(),
        "mappings/demo/x.toml:5:10: column \"A\": source must be text, found integer"
    );
}

#[test]
fn reference_files_must_be_objects_of_objects() {
    let mut r = MemoryReference::default();
    assert!(
        r.add_json("companies", r#"{"01": {"Description": "US"}}"#)
            .is_ok()
    );
    let e = r.add_json("companies", r#"{"01": "US"}"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "reference dataset \"companies\": entry \"01\" is string, not an object"
    );
    assert!(r.add_json("companies", "[1]").is_err());
}

/// Counts the lookups that reach the reference data.
struct Counting {
    inner: MemoryReference,
    calls: Vec<(String, String)>,
}

impl crate::Lookup for Counting {
    fn lookup(&mut self, dataset: &str, key: &str) -> Result<Option<String>, crate::LookupError> {
        self.calls.push((dataset.to_owned(), key.to_owned()));
        self.inner.lookup(dataset, key)
    }
}

#[test]
fn lookups_are_asked_once_per_key_and_batch() {
    let script = compile(
        r#"
resource = "invoices"

[[column]]
name = "Invoice ID"
type = "integer"
source = "InvoiceId"

[[column]]
name = "Supplier"
type = "text"
expr = "lookup('suppliers', SupplierNumber, 'Supplier')"

[[column]]
name = "Parent"
type = "text"
expr = "lookup('suppliers', SupplierNumber, 'ParentSupplier')"
"#,
    );
    let records = [
        r#"{"InvoiceId": 1, "SupplierNumber": "1253"}"#,
        r#"{"InvoiceId": 2, "SupplierNumber": "1253"}"#,
        r#"{"InvoiceId": 3, "SupplierNumber": "1000"}"#,
        r#"{"InvoiceId": 4, "SupplierNumber": "9999"}"#,
        r#"{"InvoiceId": 5, "SupplierNumber": "9999"}"#,
    ];
    let mut counting = Counting {
        inner: reference(),
        calls: Vec::new(),
    };
    let batch = script
        .map_batch("invoices", &records, &mut counting)
        .unwrap_or_else(|e| panic!("batch failed: {e}"));
    assert_eq!(batch.rows.len(), 5, "{:?}", batch.rejects);
    assert_eq!(
        batch.rows[1].values[1],
        Value::Text("Acme Office Supply".into())
    );
    assert_eq!(batch.rows[4].values[1], Value::Null);
    // Two columns and five records, but three distinct keys: three calls,
    // a missing key included (its absence is cached too).
    let asked: Vec<&str> = counting.calls.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(asked, ["1253", "1000", "9999"], "{:?}", counting.calls);
    // The next batch asks again: the cache lives as long as one batch.
    script
        .map_batch("invoices", &records[..1], &mut counting)
        .unwrap_or_else(|e| panic!("batch failed: {e}"));
    assert_eq!(counting.calls.len(), 4, "{:?}", counting.calls);
}

/// The 1-based line and column of the first `needle` in `text`.
fn position_of(text: &str, needle: &str) -> String {
    let at = text.find(needle).unwrap();
    let line = text[..at].matches('\n').count() + 1;
    let start = text[..at].rfind('\n').map_or(0, |n| n + 1);
    format!("{line}:{}", text[start..at].chars().count() + 1)
}

#[test]
fn expression_errors_point_into_escaped_and_multi_line_strings() {
    // Bug: the error's offset inside the expression was added to the
    // string's start as if the script spelled the expression byte for
    // byte, so escapes (`\"`, `\u0041`) or the newline that opens a
    // multi-line string moved the column off the mistake.
    let script = |expr: &str| {
        format!("resource = \"x\"\n[[column]]\nname = \"A\"\ntype = \"text\"\nexpr = {expr}\n")
    };
    for expr in [
        r#""concat(\"a\", \u0042 ; 1)""#,
        r#""concat('\U0001F600', \"\\\\\", b ; 1)""#,
        r#""concat('a', b ; 1)""#,
        r#"'concat("a", b ; 1)'"#,
        "\"\"\"\nconcat('a', b ; 1)\"\"\"",
        "\"\"\"\r\nconcat('é', b ; 1)\"\"\"",
        "\"\"\"concat('a', \\\n    b ; 1)\"\"\"",
        "'''\nconcat('a', b ; 1)'''",
        r#""'\t\u00e9' ;""#,
    ] {
        let text = script(expr);
        let got = error_of(&text);
        let at = position_of(&text, ";");
        assert_eq!(
            got,
            format!("mapping script line {at}: column \"A\": in expr: unexpected character ';'"),
            "{expr}"
        );
    }
    // An unknown field is located the same way (at the path's start).
    let text = script(r#""concat(\"a\", invoiceLines)""#).replace(
        "resource = \"x\"\n",
        "resource = \"x\"\nexpand = \"invoiceLines\"\n",
    );
    let got = error_of(&text);
    let at = position_of(&text, "invoiceLines)");
    assert!(
        got.starts_with(&format!("mapping script line {at}: column \"A\": in expr:")),
        "{got}"
    );
}

#[test]
fn limits_on_nesting_are_located_errors() {
    let column = |body: &str| {
        format!("resource = \"x\"\n[[column]]\nname = \"A\"\ntype = \"text\"\n{body}\n")
    };
    // Expressions: at most MAX_EXPR_DEPTH levels.
    let deep = format!("expr = \"{}a{}\"", "upper(".repeat(70), ")".repeat(70));
    let got = error_of(&column(&deep));
    assert!(
        got.starts_with("mapping script line 5:")
            && got.ends_with("in expr: the expression nests more than 64 levels deep"),
        "{got}"
    );
    let ok = format!("expr = \"{}a{}\"", "upper(".repeat(60), ")".repeat(60));
    Script::compile(&column(&ok)).unwrap();
    // Field paths and expand: at most MAX_PATH_DEPTH segments.
    let path = vec!["a"; 128].join(".");
    let got = error_of(&column(&format!("source = \"{path}\"")));
    assert_eq!(
        got,
        "mapping script line 5:10: column \"A\": the field path has 128 segments, more than 127 (no record nests that deep)"
    );
    Script::compile(&column(&format!(
        "source = \"{}\"",
        vec!["a"; 127].join(".")
    )))
    .unwrap();
    let got = error_of(&column(&format!("expr = \"upper({path})\"")));
    assert!(
        got.contains("in expr: the field path has 128 segments"),
        "{got}"
    );
    let got = error_of(&format!(
        "expand = \"{path}\"\n{}",
        column("source = \"x\"")
    ));
    assert!(
        got.starts_with("mapping script line 1:10: expand names 128 nested"),
        "{got}"
    );
    // TOML itself: nesting is capped by the reader.
    let got = error_of(&format!(
        "resource = {}1{}\n",
        "[".repeat(5000),
        "]".repeat(5000)
    ));
    assert!(got.starts_with("mapping script line 1:"), "{got}");
    let got = error_of(&format!(
        "resource = {}1{}\n",
        "{a=".repeat(5000),
        "}".repeat(5000)
    ));
    assert!(got.starts_with("mapping script line 1:"), "{got}");
}
