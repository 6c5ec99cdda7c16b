//! Hyper: hyperd lifecycle, writing `.hyper` files, reading them back
//! through Tableau's own Python Hyper API.
// Test helpers outside `#[test]` functions fail loudly too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mlc_hyper::{HyperError, Hyperd, HyperdConfig};

async fn start_hyperd(log_dir: &Path) -> Hyperd {
    crate::common::init_tracing();
    Hyperd::start(HyperdConfig {
        log_dir: log_dir.to_path_buf(),
        ..HyperdConfig::default()
    })
    .await
    .unwrap_or_else(|e| panic!("hyperd did not start: {e}"))
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[tokio::test]
async fn hyperd_starts_answers_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let hyperd = start_hyperd(dir.path()).await;
    assert!(hyperd.endpoint().ip().is_loopback());
    let client = hyperd.connect().await.unwrap();
    let rows = client.simple_query("SELECT 41 + 1").await.unwrap();
    let answer = rows
        .iter()
        .find_map(|m| match m {
            mlc_hyper::tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap();
    assert_eq!(answer, "42");
    assert!(
        dir.path().join("hyperd.log").exists(),
        "hyperd logs into its own log dir"
    );
    let pid = hyperd.pid().await.unwrap();
    hyperd.shutdown().await.unwrap();
    assert!(
        !process_alive(pid),
        "hyperd {pid} still runs after shutdown"
    );
    assert!(matches!(hyperd.connect().await, Err(HyperError::Stopped)));
}

#[tokio::test]
async fn hyperd_killed_is_restarted_on_next_use() {
    let dir = tempfile::tempdir().unwrap();
    let hyperd = start_hyperd(dir.path()).await;
    let pid = hyperd.pid().await.unwrap();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..200 {
        if !process_alive(pid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let client = hyperd.connect().await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    assert_eq!(hyperd.restarts(), 1);
    let new_pid = hyperd.pid().await.unwrap();
    assert_ne!(new_pid, pid);
    drop(client);
    drop(hyperd);
    // Drop sends SIGTERM and leaves a reaper task: the process must go.
    for _ in 0..500 {
        if !process_alive(new_pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("hyperd {new_pid} still runs 10 s after Hyperd was dropped");
}

#[tokio::test]
async fn hyperd_missing_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = PathBuf::from("/nonexistent/bin/hyperd");
    let err = Hyperd::start(HyperdConfig {
        binary: Some(missing),
        log_dir: dir.path().to_path_buf(),
        ..HyperdConfig::default()
    })
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, HyperError::HyperdNotFound { .. }), "{text}");
    assert!(text.contains("/nonexistent/bin/hyperd"), "{text}");
    assert!(
        text.contains("python3 -m venv .venv && .venv/bin/pip install tableauhyperapi"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------
// Writing extracts, read back through Tableau's Python Hyper API.

use mlc_common::time::{civil_from_days, parse_date, parse_timestamp};
use mlc_common::{Column, ColumnType, Decimal, Row, Schema, Value};
use mlc_hyper::{HyperSession, HyperWriter, TableName};
use serde_json::Value as Json;

fn col(name: &str, ty: ColumnType, nullable: bool) -> Column {
    Column {
        name: name.into(),
        ty,
        nullable,
        key: false,
    }
}

fn dec(text: &str) -> Value {
    Value::Decimal(Decimal::parse(text).unwrap())
}

fn ts(text: &str) -> Value {
    Value::Timestamp(parse_timestamp(text).unwrap())
}

fn date(text: &str) -> Value {
    Value::Date(parse_date(text).unwrap())
}

/// Reads `path` with tests/python/read_hyper.py (Tableau's Hyper API).
fn read_with_hyper_api(path: &Path, table: &TableName) -> Json {
    let script = crate::common::workspace_root().join("tests/python/read_hyper.py");
    let output = std::process::Command::new(crate::common::python())
        .arg(&script)
        .arg(path)
        .arg(&table.schema)
        .arg(&table.table)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "read_hyper.py failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Json = serde_json::from_slice(&output.stdout).unwrap();
    json["tables"][0].clone()
}

/// The exact string read_hyper.py prints for a value of a column type.
fn expected_text(value: &Value, ty: ColumnType) -> Json {
    let text = match (value, ty) {
        (Value::Null, _) => return Json::Null,
        (Value::Text(s), _) => s.clone(),
        (Value::Integer(i), ColumnType::Integer) => i.to_string(),
        (Value::Integer(i), ColumnType::Decimal { precision, scale }) => {
            Decimal::new(i128::from(*i), 0)
                .fit(precision, scale)
                .unwrap()
                .to_string()
        }
        (Value::Decimal(d), ColumnType::Decimal { precision, scale }) => {
            d.fit(precision, scale).unwrap().to_string()
        }
        (Value::Double(f), _) => python_float_repr(*f),
        (Value::Boolean(b), _) => b.to_string(),
        (Value::Date(d), _) => {
            let (y, m, day) = civil_from_days(*d);
            format!("{y:04}-{m:02}-{day:02}")
        }
        (Value::Timestamp(t), _) => {
            let secs = t.div_euclid(1_000_000);
            let micros = t.rem_euclid(1_000_000);
            let (y, m, d) = civil_from_days(secs.div_euclid(86_400) as i32);
            let rem = secs.rem_euclid(86_400);
            format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}+00:00",
                rem / 3600,
                rem / 60 % 60,
                rem % 60
            )
        }
        other => panic!("no expectation for {other:?}"),
    };
    Json::String(text)
}

/// Python's `repr(float)` for the doubles used here.
fn python_float_repr(f: f64) -> String {
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let plain = format!("{f:?}");
    if f != 0.0 && (f.abs() >= 1e16 || f.abs() < 1e-4) {
        // Python switches to exponent form: 1e+300, 5e-324, 1.7976931348623157e+308.
        let e = format!("{f:e}");
        let (mantissa, exp) = e.split_once('e').unwrap();
        let exp: i32 = exp.parse().unwrap();
        return format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        );
    }
    plain
}

fn all_types_schema() -> Schema {
    Schema {
        columns: vec![
            col("Id", ColumnType::Integer, false),
            col("Name", ColumnType::Text, true),
            col(
                "Amount",
                ColumnType::Decimal {
                    precision: 38,
                    scale: 9,
                },
                false,
            ),
            col(
                "Small",
                ColumnType::Decimal {
                    precision: 18,
                    scale: 2,
                },
                true,
            ),
            col("Ratio", ColumnType::Double, true),
            col("Paid", ColumnType::Boolean, true),
            col("Day", ColumnType::Date, true),
            col("At", ColumnType::Timestamp, true),
            col("Label", ColumnType::Text, false),
        ],
    }
}

fn all_types_rows() -> Vec<Row> {
    let row = |source, values| Row { source, values };
    vec![
        row(
            0,
            vec![
                Value::Integer(i64::MIN),
                Value::Text("Zürich – 東京 – 🚀 \"quoted\" 'single'".into()),
                dec("12345678901234567890.123456789"),
                dec("9999999999999999.99"),
                Value::Double(1e300),
                Value::Boolean(true),
                date("0001-01-01"),
                ts("2024-02-29T23:59:59.999999Z"),
                Value::Text(String::new()),
            ],
        ),
        row(
            1,
            vec![
                Value::Integer(i64::MAX),
                Value::Null,
                dec("-99999999999999999999999999999.999999999"),
                dec("-0.5"),
                Value::Double(-0.1),
                Value::Boolean(false),
                date("4712-12-31"),
                ts("1969-12-31T23:59:59.000001+00:00"),
                Value::Text("line1\nline2\ttab".into()),
            ],
        ),
        row(
            2,
            vec![
                Value::Integer(0),
                Value::Text(String::new()),
                Value::Integer(42),
                Value::Integer(-7),
                Value::Double(f64::INFINITY),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Text("x".repeat(3000)),
            ],
        ),
        row(
            3,
            vec![
                Value::Integer(-1),
                Value::Null,
                dec("0.000000001"),
                Value::Null,
                Value::Null,
                Value::Boolean(true),
                date("1970-01-01"),
                ts("2023-08-07T09:42:06.138+02:00"),
                Value::Text("NUL \0 inside".into()),
            ],
        ),
    ]
}

#[tokio::test]
async fn every_type_round_trips_through_tableau_hyper_api() {
    let dir = tempfile::tempdir().unwrap();
    let hyperd = start_hyperd(&dir.path().join("logs")).await;
    let schema = all_types_schema();
    let rows = all_types_rows();
    let path = dir.path().join("all types.hyper");
    let table = TableName::extract();
    let mut writer = HyperWriter::create(&hyperd, &path, table.clone(), &schema)
        .await
        .unwrap();
    // Two calls: the writer appends.
    let first = writer.write_rows(&rows[..2]).await.unwrap();
    let second = writer.write_rows(rows[2..].iter()).await.unwrap();
    assert_eq!((first.rows_written, second.rows_written), (2, 2));
    assert!(
        first.rejects.is_empty() && second.rejects.is_empty(),
        "{first:?} {second:?}"
    );
    let summary = writer.finish().await.unwrap();
    assert_eq!(summary.rows_written, 4);
    assert_eq!(summary.rejected, 0);
    assert!(summary.file_bytes > 0);
    assert_eq!(summary.path, path);

    let read = read_with_hyper_api(&path, &table);
    let columns: Vec<(String, String, bool)> = read["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["sql"].as_str().unwrap().to_owned(),
                c["nullable"].as_bool().unwrap(),
            )
        })
        .collect();
    let want_columns: Vec<(String, String, bool)> = [
        ("Id", "BIG_INT", false),
        ("Name", "TEXT", true),
        ("Amount", "NUMERIC(38, 9)", false),
        ("Small", "NUMERIC(18, 2)", true),
        ("Ratio", "DOUBLE", true),
        ("Paid", "BOOL", true),
        ("Day", "DATE", true),
        ("At", "TIMESTAMP_TZ", true),
        ("Label", "TEXT", false),
    ]
    .into_iter()
    .map(|(n, t, null)| (n.to_owned(), t.to_owned(), null))
    .collect();
    assert_eq!(
        columns, want_columns,
        "declared columns as Tableau's Hyper API sees them"
    );

    let want_rows: Vec<Json> = rows
        .iter()
        .map(|r| {
            Json::Array(
                r.values
                    .iter()
                    .zip(&schema.columns)
                    .map(|(v, c)| expected_text(v, c.ty))
                    .collect(),
            )
        })
        .collect();
    let got_rows = read["rows"].as_array().unwrap();
    assert_eq!(got_rows.len(), want_rows.len());
    for (i, (got, want)) in got_rows.iter().zip(&want_rows).enumerate() {
        assert_eq!(got, want, "row {i} as read by Tableau's Hyper API");
    }

    // The same file read back in Rust through HyperSession.
    let session = HyperSession::connect(&hyperd).await.unwrap();
    session.attach(&path, "back").await.unwrap();
    let back = session
        .query_rows(&format!(
            "SELECT * FROM {} ORDER BY \"Id\"",
            table.qualified("back")
        ))
        .await
        .unwrap();
    let mut want: Vec<Vec<Value>> = rows
        .iter()
        .map(|r| {
            r.values
                .iter()
                .zip(&schema.columns)
                .map(|(v, c)| match (v, c.ty) {
                    (Value::Integer(i), ColumnType::Decimal { precision, scale }) => {
                        Value::Decimal(
                            Decimal::new(i128::from(*i), 0)
                                .fit(precision, scale)
                                .unwrap(),
                        )
                    }
                    (Value::Decimal(d), ColumnType::Decimal { precision, scale }) => {
                        Value::Decimal(d.fit(precision, scale).unwrap())
                    }
                    (v, _) => v.clone(),
                })
                .collect()
        })
        .collect();
    want.sort_by_key(|r| match r[0] {
        Value::Integer(i) => i,
        _ => unreachable!(),
    });
    assert_eq!(back, want, "rows decoded by HyperSession::query_rows");
    let tables = session.tables("back").await.unwrap();
    assert_eq!(tables, vec![TableName::extract()]);
    let types: Vec<String> = session
        .query_columns(&format!("SELECT * FROM {}", table.qualified("back")))
        .await
        .unwrap()
        .into_iter()
        .map(|c| format!("{}:{}", c.name, c.type_name))
        .collect();
    assert_eq!(
        types,
        [
            "Id:int8",
            "Name:text",
            "Amount:numeric",
            "Small:numeric",
            "Ratio:float8",
            "Paid:bool",
            "Day:date",
            "At:timestamptz",
            "Label:text"
        ]
    );
    session.detach("back").await.unwrap();
    hyperd.shutdown().await.unwrap();
}

#[tokio::test]
async fn wrong_values_are_rejected_and_the_rest_stored() {
    let dir = tempfile::tempdir().unwrap();
    let hyperd = start_hyperd(&dir.path().join("logs")).await;
    let schema = Schema {
        columns: vec![
            col("Id", ColumnType::Integer, false),
            col(
                "Amount",
                ColumnType::Decimal {
                    precision: 10,
                    scale: 2,
                },
                true,
            ),
            col("Day", ColumnType::Date, true),
            col("Name", ColumnType::Text, false),
        ],
    };
    let row = |source, values| Row { source, values };
    let rows = vec![
        row(
            0,
            vec![
                Value::Integer(1),
                dec("10.5"),
                date("2024-01-31"),
                Value::Text("ok".into()),
            ],
        ),
        row(
            1,
            vec![
                Value::Text("2".into()),
                dec("1"),
                Value::Null,
                Value::Text("bad id".into()),
            ],
        ),
        row(
            2,
            vec![
                Value::Integer(3),
                dec("0.125"),
                Value::Null,
                Value::Text("too precise".into()),
            ],
        ),
        row(
            3,
            vec![
                Value::Integer(4),
                dec("123456789.00"),
                Value::Null,
                Value::Text("too big".into()),
            ],
        ),
        row(
            4,
            vec![Value::Integer(5), Value::Null, Value::Null, Value::Null],
        ),
        row(
            5,
            vec![
                Value::Integer(6),
                Value::Null,
                Value::Timestamp(0),
                Value::Text("ts".into()),
            ],
        ),
        row(6, vec![Value::Integer(7)]),
        row(
            7,
            vec![
                Value::Integer(8),
                dec("-99999999.99"),
                Value::Null,
                Value::Text("edge".into()),
            ],
        ),
    ];
    let path = dir.path().join("rejects.hyper");
    let mut writer = HyperWriter::create(&hyperd, &path, TableName::extract(), &schema)
        .await
        .unwrap();
    let report = writer.write_rows(rows).await.unwrap();
    assert_eq!(report.rows_written, 2);
    let rejects: Vec<(u32, Option<&str>)> = report
        .rejects
        .iter()
        .map(|r| (r.index, r.field.as_deref()))
        .collect();
    assert_eq!(
        rejects,
        [
            (1, Some("Id")),
            (2, Some("Amount")),
            (3, Some("Amount")),
            (4, Some("Name")),
            (5, Some("Day")),
            (6, None),
        ],
        "{:#?}",
        report.rejects
    );
    assert!(
        report.rejects[1]
            .reason
            .contains("more than 2 decimal places"),
        "{:?}",
        report.rejects[1]
    );
    assert!(
        report.rejects[2]
            .reason
            .contains("does not fit NUMERIC(10,2)"),
        "{:?}",
        report.rejects[2]
    );
    // A call whose rows are all refused stores nothing and still succeeds.
    let none = writer
        .write_rows([row(
            8,
            vec![Value::Null, Value::Null, Value::Null, Value::Null],
        )])
        .await
        .unwrap();
    assert_eq!(none.rows_written, 0);
    assert_eq!(none.rejects[0].field.as_deref(), Some("Id"));
    let summary = writer.finish().await.unwrap();
    assert_eq!((summary.rows_written, summary.rejected), (2, 7));

    let read = read_with_hyper_api(&path, &TableName::extract());
    assert_eq!(
        read["rows"],
        serde_json::json!([
            ["1", "10.50", "2024-01-31", "ok"],
            ["8", "-99999999.99", null, "edge"]
        ])
    );
    hyperd.shutdown().await.unwrap();
}

#[tokio::test]
async fn rows_stream_in_chunks_from_an_async_source() {
    let dir = tempfile::tempdir().unwrap();
    let hyperd = start_hyperd(&dir.path().join("logs")).await;
    let schema = Schema {
        columns: vec![
            col("Id", ColumnType::Integer, false),
            col("Text", ColumnType::Text, true),
        ],
    };
    // About 3 MB of encoded rows: several COPY chunks.
    const N: i64 = 30_000;
    let rows = futures_stream(N);
    let path = dir.path().join("stream.hyper");
    let table = TableName::new("public", "Stream Rows");
    let mut writer = HyperWriter::create(&hyperd, &path, table.clone(), &schema)
        .await
        .unwrap();
    let report = writer.write_stream(rows).await.unwrap();
    assert_eq!(report.rows_written, N as u64);
    writer.finish().await.unwrap();
    let session = HyperSession::connect(&hyperd).await.unwrap();
    session.attach(&path, "s").await.unwrap();
    let agg = session
        .query_rows(&format!(
            "SELECT COUNT(*), SUM(\"Id\"), SUM(LENGTH(\"Text\")) FROM {}",
            table.qualified("s")
        ))
        .await
        .unwrap();
    assert_eq!(
        agg,
        vec![vec![
            Value::Integer(N),
            Value::Integer(N * (N - 1) / 2),
            Value::Integer(N * 90),
        ]]
    );
}

fn futures_stream(n: i64) -> impl mlc_hyper::futures::Stream<Item = Row> {
    mlc_hyper::futures::stream::iter((0..n).map(|i| Row {
        source: i as u32,
        values: vec![Value::Integer(i), Value::Text(format!("{:090}", i))],
    }))
}

// ---------------------------------------------------------------------------
// Changing stored files: staged upsert, atomic on failure.

fn upsert_schema() -> Schema {
    let mut id = col("Id", ColumnType::Integer, false);
    id.key = true;
    let mut region = col("Region", ColumnType::Text, false);
    region.key = true;
    Schema {
        columns: vec![
            id,
            region,
            col(
                "Amount",
                ColumnType::Decimal {
                    precision: 18,
                    scale: 2,
                },
                true,
            ),
            col("Note", ColumnType::Text, true),
        ],
    }
}

fn urow(id: i64, region: &str, amount: &str, note: Option<&str>) -> Row {
    Row {
        source: id as u32,
        values: vec![
            Value::Integer(id),
            Value::Text(region.into()),
            dec(amount),
            note.map_or(Value::Null, |n| Value::Text(n.into())),
        ],
    }
}

async fn sorted_rows(session: &HyperSession, alias: &str) -> Vec<Vec<Value>> {
    session
        .query_rows(&format!(
            "SELECT * FROM {} ORDER BY \"Id\", \"Region\"",
            TableName::extract().qualified(alias)
        ))
        .await
        .unwrap()
}

#[tokio::test]
async fn upsert_replaces_by_key_last_row_wins_and_replay_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hyperd = start_hyperd(&dir.path().join("logs")).await;
    let schema = upsert_schema();
    let path = dir.path().join("ds.hyper");
    let mut writer = HyperWriter::create(&hyperd, &path, TableName::extract(), &schema)
        .await
        .unwrap();
    let initial: Vec<Row> = (1..=3)
        .map(|i| urow(i, "EU", &format!("{i}0.00"), Some("v1")))
        .collect();
    writer.write_rows(&initial).await.unwrap();
    writer.finish().await.unwrap();

    let session = HyperSession::connect(&hyperd).await.unwrap();
    session.attach(&path, "ds").await.unwrap();
    let mut bad = urow(9, "EU", "1", None);
    bad.values[2] = dec("0.001");
    let batch = vec![
        urow(2, "EU", "22.5", Some("v2")),
        urow(6, "US", "6", Some("first")),
        bad,
        urow(1, "US", "-1", None),
        urow(6, "US", "66.66", Some("second")),
    ];
    let keys = ["Id", "Region"];
    let report = mlc_hyper::upsert(
        &session,
        "ds",
        &TableName::extract(),
        &schema,
        &keys,
        &batch,
    )
    .await
    .unwrap();
    assert_eq!(
        (report.staged, report.deleted, report.inserted),
        (4, 1, 3),
        "{report:?}"
    );
    assert_eq!(report.rejects.len(), 1, "{:?}", report.rejects);
    assert_eq!(report.rejects[0].field.as_deref(), Some("Amount"));
    let after = sorted_rows(&session, "ds").await;
    let want: Vec<Vec<Value>> = [
        urow(1, "EU", "10.00", Some("v1")),
        urow(1, "US", "-1", None),
        urow(2, "EU", "22.5", Some("v2")),
        urow(3, "EU", "30", Some("v1")),
        urow(6, "US", "66.66", Some("second")),
    ]
    .into_iter()
    .map(|r| {
        let mut v = r.values;
        if let Value::Decimal(d) = v[2] {
            v[2] = Value::Decimal(d.rescale(2).unwrap());
        }
        v
    })
    .collect();
    assert_eq!(after, want, "table after the upsert");

    // The same batch again: same content, nothing doubled.
    let replay = mlc_hyper::upsert(
        &session,
        "ds",
        &TableName::extract(),
        &schema,
        &keys,
        &batch,
    )
    .await
    .unwrap();
    assert_eq!((replay.deleted, replay.inserted), (3, 3), "{replay:?}");
    assert_eq!(
        sorted_rows(&session, "ds").await,
        want,
        "table after the replay"
    );

    // A failing upsert changes nothing: the target lacks the extra column, so
    // the INSERT fails after the DELETE, inside the transaction.
    let mut wider = schema.clone();
    wider.columns.push(col("Extra", ColumnType::Integer, true));
    let mut row = urow(2, "EU", "0", None);
    row.values.push(Value::Integer(1));
    let err = mlc_hyper::upsert(&session, "ds", &TableName::extract(), &wider, &keys, [row])
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("upserting into \"Extract\".\"Extract\""),
        "{text}"
    );
    assert!(
        text.contains("Extra"),
        "error should name the missing column: {text}"
    );
    assert_eq!(
        sorted_rows(&session, "ds").await,
        want,
        "table after a failed upsert"
    );
    session.detach("ds").await.unwrap();

    // Tableau's Hyper API sees the same five rows.
    let read = read_with_hyper_api(&path, &TableName::extract());
    let mut rows: Vec<Vec<Json>> = read["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().clone())
        .collect();
    rows.sort_by(|a, b| {
        (
            a[0].as_str().unwrap().parse::<i64>().unwrap(),
            a[1].as_str(),
        )
            .cmp(&(
                b[0].as_str().unwrap().parse::<i64>().unwrap(),
                b[1].as_str(),
            ))
    });
    assert_eq!(
        rows,
        vec![
            vec![
                Json::from("1"),
                Json::from("EU"),
                Json::from("10.00"),
                Json::from("v1")
            ],
            vec![
                Json::from("1"),
                Json::from("US"),
                Json::from("-1.00"),
                Json::Null
            ],
            vec![
                Json::from("2"),
                Json::from("EU"),
                Json::from("22.50"),
                Json::from("v2")
            ],
            vec![
                Json::from("3"),
                Json::from("EU"),
                Json::from("30.00"),
                Json::from("v1")
            ],
            vec![
                Json::from("6"),
                Json::from("US"),
                Json::from("66.66"),
                Json::from("second")
            ],
        ]
    );
}

#[tokio::test]
async fn creating_over_an_existing_file_or_a_bad_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hyperd = start_hyperd(&dir.path().join("logs")).await;
    let path = dir.path().join("exists.hyper");
    std::fs::write(&path, b"not a hyper file").unwrap();
    let schema = upsert_schema();
    let err = HyperWriter::create(&hyperd, &path, TableName::extract(), &schema)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"not a hyper file",
        "existing file untouched"
    );

    let other = dir.path().join("dup.hyper");
    let mut dup = schema.clone();
    dup.columns.push(col("Id", ColumnType::Text, true));
    let err = HyperWriter::create(&hyperd, &other, TableName::extract(), &dup)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"Id\" appears twice"), "{err}");
    assert!(
        !other.exists(),
        "no file is left behind for a refused schema"
    );

    // numeric precision <= 18 keeps the default file version and still works.
    let small = dir.path().join("small.hyper");
    let mut writer = HyperWriter::create(&hyperd, &small, TableName::new("public", "T"), &schema)
        .await
        .unwrap();
    writer
        .write_rows([urow(1, "EU", "1.5", None)])
        .await
        .unwrap();
    let summary = writer.finish().await.unwrap();
    assert_eq!(summary.rows_written, 1);
    let read = read_with_hyper_api(&small, &TableName::new("public", "T"));
    assert_eq!(read["rows"], serde_json::json!([["1", "EU", "1.50", null]]));
}

#[tokio::test]
async fn sql_literals_evaluate_to_the_same_values() {
    let dir = tempfile::tempdir().unwrap();
    let hyperd = start_hyperd(&dir.path().join("logs")).await;
    let session = HyperSession::connect(&hyperd).await.unwrap();
    let values = vec![
        Value::Null,
        Value::Text("it's \"quoted\" \\ back – 東京".into()),
        Value::Text("a\0b".into()),
        Value::Text(String::new()),
        Value::Integer(i64::MIN),
        Value::Integer(i64::MAX),
        Value::Double(0.1),
        Value::Double(-1e300),
        Value::Double(f64::INFINITY),
        Value::Double(5e-324),
        dec("-12345678901234567890.123456789"),
        dec("0.00"),
        Value::Boolean(true),
        date("0001-01-01"),
        date("4712-12-31"),
        Value::Date(mlc_common::time::days_from_civil(-99, 6, 15)),
        ts("1969-12-31T23:59:59.999999Z"),
        ts("2024-02-29T12:34:56.000001Z"),
        Value::Timestamp(
            i64::from(mlc_common::time::days_from_civil(-500, 1, 1)) * 86_400_000_000 + 123,
        ),
    ];
    let select = values
        .iter()
        .map(mlc_hyper::literal)
        .collect::<Vec<_>>()
        .join(", ");
    let back = session
        .query_rows(&format!("SELECT {select}"))
        .await
        .unwrap_or_else(|e| panic!("SELECT {select}: {e}"));
    assert_eq!(back.len(), 1);
    for (i, (got, want)) in back[0].iter().zip(&values).enumerate() {
        assert_eq!(got, want, "literal {i}: {}", mlc_hyper::literal(want));
    }
}

/// Helper for `hyperd_does_not_outlive_a_killed_parent`: run in a child
/// process, it starts hyperd, prints its pid and waits to be killed.
#[tokio::test]
#[ignore = "helper process for hyperd_does_not_outlive_a_killed_parent"]
async fn helper_hold_hyperd() {
    let Ok(dir) = std::env::var("ML_CONNECTOR_HYPER_HELPER_DIR") else {
        return;
    };
    let hyperd = start_hyperd(Path::new(&dir)).await;
    println!("HYPERD_PID={}", hyperd.pid().await.unwrap());
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[tokio::test]
async fn hyperd_does_not_outlive_a_killed_parent() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hyper::helper_hold_hyperd",
            "--ignored",
            "--nocapture",
        ])
        .env("ML_CONNECTOR_HYPER_HELPER_DIR", dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let pid: u32 = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("HYPERD_PID=").map(|p| p.parse().unwrap()))
        .expect("helper printed no hyperd pid");
    assert!(process_alive(pid));
    // SIGKILL: no Drop, no shutdown; only the closed callback connection.
    child.kill().unwrap();
    child.wait().unwrap();
    for _ in 0..500 {
        if !process_alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("hyperd {pid} still runs 10 s after its parent was killed");
}

#[tokio::test]
async fn a_second_table_can_be_added_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let hyperd = start_hyperd(&dir.path().join("logs")).await;
    let path = dir.path().join("payload.hyper");
    let changes = TableName::new("Extract", "changes");
    let mut w = HyperWriter::create(&hyperd, &path, changes.clone(), &upsert_schema())
        .await
        .unwrap();
    w.write_rows([urow(1, "EU", "1", None)]).await.unwrap();
    w.finish().await.unwrap();

    let deleted = TableName::new("Extract", "deleted");
    let keys = Schema {
        columns: upsert_schema().columns.into_iter().take(2).collect(),
    };
    let mut w = HyperWriter::add_table(&hyperd, &path, deleted.clone(), &keys)
        .await
        .unwrap();
    let report = w
        .write_rows([Row {
            source: 0,
            values: vec![Value::Integer(7), Value::Text("US".into())],
        }])
        .await
        .unwrap();
    assert_eq!(report.rows_written, 1);
    w.finish().await.unwrap();
    // Adding the same table again is refused and leaves the file usable.
    let err = HyperWriter::add_table(&hyperd, &path, deleted.clone(), &keys)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("deleted"), "{err}");

    // Rows appended to an existing table through a session.
    let session = HyperSession::connect(&hyperd).await.unwrap();
    session.attach(&path, "p").await.unwrap();
    let mut bad = urow(3, "EU", "1", None);
    bad.values[1] = Value::Integer(3);
    let report = session
        .copy_rows(
            &changes.qualified("p"),
            &upsert_schema(),
            mlc_hyper::futures::stream::iter(vec![urow(2, "US", "2.5", Some("x")), bad]),
        )
        .await
        .unwrap();
    assert_eq!(report.rows_written, 1);
    assert_eq!(report.rejects[0].field.as_deref(), Some("Region"));
    session.detach("p").await.unwrap();

    assert_eq!(
        read_with_hyper_api(&path, &changes)["rows"],
        serde_json::json!([["1", "EU", "1.00", null], ["2", "US", "2.50", "x"]])
    );
    assert_eq!(
        read_with_hyper_api(&path, &deleted)["rows"],
        serde_json::json!([["7", "US"]])
    );
}

#[tokio::test]
async fn without_restarts_a_dead_hyperd_is_an_error_naming_its_logs() {
    crate::common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let hyperd = Hyperd::start(HyperdConfig {
        log_dir: dir.path().to_path_buf(),
        restart: false,
        ..HyperdConfig::default()
    })
    .await
    .unwrap();
    let pid = hyperd.pid().await.unwrap();
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    let mut last = None;
    for _ in 0..200 {
        match hyperd.connect().await {
            Err(e) => {
                last = Some(e);
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    let err = last.expect("connect kept succeeding after hyperd was killed");
    assert!(matches!(err, HyperError::Exited { .. }), "{err}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    assert_eq!(hyperd.restarts(), 0);
}

#[tokio::test]
async fn a_write_cut_by_a_dead_hyperd_fails_naming_the_file_and_the_next_one_works() {
    let dir = tempfile::tempdir().unwrap();
    let hyperd = start_hyperd(&dir.path().join("logs")).await;
    let schema = upsert_schema();
    let path = dir.path().join("cut.hyper");
    let mut writer = HyperWriter::create(&hyperd, &path, TableName::extract(), &schema)
        .await
        .unwrap();
    let pid = hyperd.pid().await.unwrap();
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    while process_alive(pid) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let err = writer
        .write_rows([urow(1, "EU", "1", None)])
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, HyperError::Sql { .. }), "{text}");
    assert!(
        text.contains("cut.hyper"),
        "error should name the file: {text}"
    );

    let again = dir.path().join("again.hyper");
    let mut writer = HyperWriter::create(&hyperd, &again, TableName::extract(), &schema)
        .await
        .unwrap();
    assert_eq!(hyperd.restarts(), 1);
    let report = writer.write_rows([urow(1, "EU", "1", None)]).await.unwrap();
    assert_eq!(report.rows_written, 1);
    writer.finish().await.unwrap();
}

#[tokio::test]
async fn upsert_with_a_nullable_key_matches_null_to_null() {
    let dir = tempfile::tempdir().unwrap();
    let hyperd = start_hyperd(&dir.path().join("logs")).await;
    let schema = Schema {
        columns: vec![
            col("Code", ColumnType::Text, true),
            col("Value", ColumnType::Integer, false),
        ],
    };
    let path = dir.path().join("nullable-key.hyper");
    let mut w = HyperWriter::create(&hyperd, &path, TableName::extract(), &schema)
        .await
        .unwrap();
    let r = |code: Option<&str>, v| Row {
        source: 0,
        values: vec![
            code.map_or(Value::Null, |c| Value::Text(c.into())),
            Value::Integer(v),
        ],
    };
    w.write_rows([r(None, 1), r(Some("A"), 2)]).await.unwrap();
    w.finish().await.unwrap();
    let session = HyperSession::connect(&hyperd).await.unwrap();
    session.attach(&path, "n").await.unwrap();
    let report = mlc_hyper::upsert(
        &session,
        "n",
        &TableName::extract(),
        &schema,
        &["Code"],
        [r(None, 10), r(Some("B"), 3)],
    )
    .await
    .unwrap();
    assert_eq!((report.deleted, report.inserted), (1, 2), "{report:?}");
    let rows = session
        .query_rows(&format!(
            "SELECT * FROM {} ORDER BY \"Value\"",
            TableName::extract().qualified("n")
        ))
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            vec![Value::Text("A".into()), Value::Integer(2)],
            vec![Value::Text("B".into()), Value::Integer(3)],
            vec![Value::Null, Value::Integer(10)],
        ]
    );
}
