//! Property tests: the mapping-script JSON scanner (`mlc_scripted_core::json`)
//! against `serde_json`, the reader the host parses every record with.
//!
//! "Agree" means, for the fields a scan table asks for (top-level names,
//! dotted paths into objects, absent names, a name and a path below it):
//! - On a record within the host's contract (`serde_json` reads it, no
//!   member is named twice), [`scan_object`] and [`scan_record`] succeed
//!   and give every wanted path the value `serde_json` has there: the same
//!   decoded string, a number whose text `serde_json` reads as the same
//!   number, the text of the same array or object, `Missing` where
//!   `serde_json` has nothing.
//! - A member named twice: `serde_json` keeps the last. [`scan_object`]
//!   either gives `serde_json`'s values (the repeat was not wanted) or
//!   fails with "member named twice"; it never gives the first.
//!   [`scan_record`] stops reading once it has every wanted member, so a
//!   repeat after that point is the host's to refuse (it does); the
//!   properties hold it to the contract only.
//! - A text `serde_json` refuses: the scanner may accept it (values it
//!   does not want are only bracket-counted), but every scalar it returns
//!   is one `serde_json` reads alone: a string without raw control
//!   characters, a number of the JSON grammar within `f64`. A wanted
//!   value that is not valid JSON is refused (or, for an escape that does
//!   not decode, refused when it is used).
//! - Nesting: no limit, no recursion; records far deeper than
//!   `serde_json`'s 127 levels scan, and their shallow values agree.
//! - Numbers then convert exactly (`eval::convert`): integers and
//!   `decimal(38, s)` to their exact value or a fault, doubles finite.
//! - Left out: texts with a number within a hair of `f64::MAX`
//!   (`json_model::near_f64_max`), where `serde_json`'s default float
//!   parser (not correctly rounded) and the standard library's disagree
//!   on overflow; the scanner then refuses the number or keeps its text.
//!
//! The JSON model is shared with the SDK's suite
//! (`plugins/sdk/tests/support/json_model.rs`, included by path). Failures
//! print the shrunk input; every run prints its RNG seed and cases
//! (`PROPTEST_RNG_SEED=<seed> PROPTEST_CASES=<cases>` replays them).
//! Failure persistence is off: nothing is written next to the sources.
//! `PROPTEST_CASES` overrides the cases set below.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../sdk/tests/support/json_model.rs"]
mod json_model;

use json_model::{Model, a_fragment, a_number, a_record, a_unique_record, config, exact, written};
use mlc_common::{ColumnType, Value};
use mlc_scripted_core::eval::{self, Val};
use mlc_scripted_core::json::{self, Raw, Table, array_elements, scan_object, scan_record};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value as Serde;

/// Scan tables for `paths` (each a list of member names), built as the
/// script compiler builds them: one table per object level, a slot per
/// path.
fn tables_for(paths: &[Vec<String>]) -> Vec<Table> {
    let mut tables = vec![Table::default()];
    for (slot, path) in paths.iter().enumerate() {
        let Some((last, inner)) = path.split_last() else {
            continue;
        };
        let mut table = 0;
        for segment in inner {
            table = match tables[table].entry(segment).nested {
                Some(t) => t,
                None => {
                    let t = tables.len();
                    tables.push(Table::default());
                    tables[table].entry(segment).nested = Some(t);
                    t
                }
            };
        }
        tables[table].entry(last).slot = Some(slot);
    }
    tables
}

/// What `serde_json` has at `path` (`None`: nothing).
fn at_path<'v>(value: &'v Serde, path: &[String]) -> Option<&'v Serde> {
    let mut v = value;
    for segment in path {
        v = v.as_object()?.get(segment)?;
    }
    Some(v)
}

/// Whether a scanned value is `serde_json`'s.
fn same(raw: Raw<'_>, theirs: Option<&Serde>, path: &[String]) -> Result<(), TestCaseError> {
    let path = path.join(".");
    match (raw, theirs) {
        (Raw::Missing, None) => {}
        (Raw::Null, Some(Serde::Null)) => {}
        (Raw::Bool(b), Some(Serde::Bool(c))) => prop_assert_eq!(b, *c, "{}", path),
        (Raw::Num(n), Some(Serde::Number(m))) => {
            let again = serde_json::from_str::<Serde>(n).ok();
            prop_assert_eq!(again, Some(Serde::Number(m.clone())), "{}: {}", path, n);
        }
        (Raw::Str { .. }, Some(Serde::String(s))) => {
            let got = raw.as_str();
            prop_assert_eq!(got.as_deref(), Some(s.as_str()), "{}", path);
        }
        (Raw::Array(t) | Raw::Object(t), Some(v @ (Serde::Array(_) | Serde::Object(_)))) => {
            let again = serde_json::from_str::<Serde>(t).ok();
            prop_assert_eq!(again.as_ref(), Some(v), "{}: {}", path, t);
        }
        (raw, theirs) => prop_assert!(false, "{path}: scanned {raw:?}, serde_json has {theirs:?}"),
    }
    Ok(())
}

/// Whether a scalar the scanner returned from a text `serde_json` refused
/// is still one `serde_json` reads on its own.
fn sound(raw: Raw<'_>) -> Result<(), TestCaseError> {
    match raw {
        Raw::Str { raw: text, .. } => {
            prop_assert!(
                !text.bytes().any(|b| b < 0x20),
                "raw control character in {text:?}"
            );
            let decoded = raw.as_str();
            let theirs = serde_json::from_str::<String>(&format!("\"{text}\"")).ok();
            // A string that does not decode is refused on use.
            if let Some(d) = decoded {
                prop_assert_eq!(Some(d.into_owned()), theirs, "{}", text);
            }
        }
        Raw::Num(n) if json_model::near_f64_max(n) => {}
        Raw::Num(n) => {
            let theirs = serde_json::from_str::<Serde>(n).ok();
            prop_assert!(
                theirs.as_ref().is_some_and(Serde::is_number),
                "{n} is not a number serde_json reads"
            );
        }
        _ => {}
    }
    Ok(())
}

/// Wanted paths for a record: some of its members, paths into its
/// objects, absent names. `picks` chooses among them.
fn paths_for(record: &Model, picks: &[u16]) -> Vec<Vec<String>> {
    let mut all: Vec<Vec<String>> = Vec::new();
    fn walk(v: &Model, prefix: &mut Vec<String>, all: &mut Vec<Vec<String>>, depth: usize) {
        if let Model::Obj(members) = v {
            for (k, inner) in members {
                prefix.push(k.clone());
                all.push(prefix.clone());
                if depth < 3 {
                    walk(inner, prefix, all, depth + 1);
                }
                prefix.pop();
            }
        }
    }
    walk(record, &mut Vec::new(), &mut all, 0);
    all.push(vec!["absent".into()]);
    all.push(vec!["a".into(), "absent".into()]);
    if all.is_empty() {
        return Vec::new();
    }
    let mut paths: Vec<Vec<String>> = Vec::new();
    for &p in picks {
        let path = &all[usize::from(p) % all.len()];
        if !paths.contains(path) {
            paths.push(path.clone());
        }
    }
    paths
}

/// [`scan_object`] or [`scan_record`].
type Scan<'a> = fn(&'a str, &[Table], usize, &mut [Raw<'a>]) -> Result<(), json::JsonError>;

/// Scans `text` for `paths` with `scan` into fresh slots.
fn scan_with<'a>(
    scan: Scan<'a>,
    text: &'a str,
    paths: &[Vec<String>],
) -> Result<Vec<Raw<'a>>, json::JsonError> {
    let tables = tables_for(paths);
    let mut slots = vec![Raw::Missing; paths.len()];
    scan(text, &tables, 0, &mut slots).map(|()| slots)
}

fn with_text(e: TestCaseError, text: &str) -> TestCaseError {
    TestCaseError::fail(format!("{e}\ntext: {text}"))
}

/// Checks both scans of `text` for `paths` against `serde_json`.
fn agree(text: &str, paths: &[Vec<String>], unique: bool) -> Result<(), TestCaseError> {
    let theirs = match serde_json::from_str::<Serde>(text) {
        Ok(v @ Serde::Object(_)) => Some(v),
        _ => None,
    };
    let full = scan_with(scan_object, text, paths);
    let record = scan_with(scan_record, text, paths);
    match &theirs {
        Some(_) if json_model::near_f64_max(text) => {
            // At f64's edge the readers may disagree on overflow; the
            // scanner refuses or reads the number as written.
        }
        Some(v) => {
            if unique {
                prop_assert!(
                    full.is_ok(),
                    "scan_object refused: {:?}",
                    full.as_ref().err()
                );
                prop_assert!(
                    record.is_ok(),
                    "scan_record refused: {:?}",
                    record.as_ref().err()
                );
            }
            match &full {
                Ok(slots) => {
                    for (raw, path) in slots.iter().zip(paths) {
                        same(*raw, at_path(v, path), path)?;
                    }
                }
                Err(e) => prop_assert!(
                    e.what.starts_with("member named twice"),
                    "scan_object refused JSON: {e}"
                ),
            }
            if unique && let Ok(slots) = &record {
                for (raw, path) in slots.iter().zip(paths) {
                    same(*raw, at_path(v, path), path)?;
                }
            }
        }
        None => {
            for slots in [&full, &record].into_iter().flatten() {
                for raw in slots {
                    sound(*raw)?;
                }
            }
        }
    }
    if let Err(e) = &full {
        prop_assert!(e.at <= text.len());
    }
    Ok(())
}

/// A value that is not valid JSON where a wanted one stands.
fn a_bad_value() -> impl Strategy<Value = String> {
    prop_oneof![
        // Numbers the grammar refuses, and numbers beyond f64.
        prop::sample::select(vec![
            "01", "-", "1.", "1e", "1e+", "--1", "1-2", "1.2.3", "1e5e5", "-01", "00", "1E+-1",
            "0x10", "1e400", "-2E+308", "1.5.", "2-", "0.e1",
        ])
        .prop_map(str::to_owned),
        // Strings with a raw control character.
        (json_model::a_string(), 0u8..0x20).prop_map(|(s, c)| {
            let mut out = String::new();
            json_model::write_string(&mut out, &s, &mut json_model::Choices::new(1));
            out.insert(1, char::from(c));
            out
        }),
        // Strings whose escapes do not decode.
        prop::sample::select(vec![
            r#""\ud800""#,
            r#""\udc00x""#,
            r#""\ud83d\u0041""#,
            r#""\x41""#,
            r#""\u12""#,
            r#""\ud83d\ud83d""#,
            r#""a\""#,
        ])
        .prop_map(str::to_owned),
        // Literals cut short or run on.
        prop::sample::select(vec!["tru", "nul", "fals", "truex", "nulll", "True", "NaN"])
            .prop_map(str::to_owned),
    ]
}

/// A number's conversions (as a record's value) are exact or refused.
fn converts_exactly(n: &str) -> Result<(), TestCaseError> {
    let ex = exact(n);
    let (significant, fraction, has_exp) = written(n);
    prop_assert_eq!(
        eval::parse_decimal(n).ok(),
        mlc_common::Decimal::parse(n).ok(),
        "fast decimal path of {}",
        n
    );
    match eval::convert(Val::Num(n), ColumnType::Integer) {
        Ok(Value::Integer(i)) => prop_assert_eq!(Some(i), ex.as_i64(), "integer of {}", n),
        Ok(other) => prop_assert!(false, "integer of {n} gave {other:?}"),
        Err(e) => prop_assert!(
            has_exp || fraction > 0 || ex.as_i64().is_none(),
            "integer {n} refused: {e}"
        ),
    }
    for (precision, scale) in [(38u8, 0u8), (38, 2), (38, 9), (38, 38), (18, 2), (1, 0)] {
        match eval::convert(Val::Num(n), ColumnType::Decimal { precision, scale }) {
            Ok(Value::Decimal(d)) => {
                prop_assert_eq!(
                    json_model::exact_of_decimal(d.unscaled, d.scale),
                    ex.clone(),
                    "decimal({},{}) of {}",
                    precision,
                    scale,
                    n
                );
                prop_assert!(
                    ex.fits(precision, scale),
                    "{n} in decimal({precision},{scale})"
                );
            }
            Ok(other) => prop_assert!(false, "decimal of {n} gave {other:?}"),
            Err(e) => prop_assert!(
                !(!has_exp && significant <= 38 && fraction <= 38 && ex.fits(precision, scale)),
                "{n} refused as decimal({precision},{scale}): {e}"
            ),
        }
    }
    let std = n.parse::<f64>().ok().filter(|f| f.is_finite());
    match eval::convert(Val::Num(n), ColumnType::Double) {
        Ok(Value::Double(f)) => prop_assert_eq!(Some(f), std, "double of {}", n),
        Ok(other) => prop_assert!(false, "double of {n} gave {other:?}"),
        Err(e) => prop_assert!(std.is_none(), "double {n} refused: {e}"),
    }
    prop_assert_eq!(
        eval::convert(Val::Num(n), ColumnType::Text).ok(),
        Some(Value::Text(n.to_owned()))
    );
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    /// Records, member names repeating now and then, nesting around
    /// serde_json's limit: what is scanned is what serde_json reads.
    #[test]
    fn scans_read_what_serde_json_reads(
        record in a_record(false),
        seed in any::<u64>(),
        picks in prop::collection::vec(any::<u16>(), 0..8),
    ) {
        let text = json_model::render_padded(&record, seed);
        let paths = paths_for(&record, &picks);
        let unique = !record.repeats_a_member();
        agree(&text, &paths, unique).map_err(|e| with_text(e, &text))?;
    }

    /// Records within the host's contract: both scans succeed and agree
    /// with serde_json on every wanted path; numbers convert exactly.
    #[test]
    fn contract_records_scan_exactly(
        record in a_unique_record(),
        seed in any::<u64>(),
        picks in prop::collection::vec(any::<u16>(), 1..10),
    ) {
        let text = json_model::render(&record, seed);
        prop_assert!(serde_json::from_str::<Serde>(&text).is_ok());
        let paths = paths_for(&record, &picks);
        agree(&text, &paths, true).map_err(|e| with_text(e, &text))?;
        for (_, v) in record.members() {
            if let Model::Num(n) = v {
                converts_exactly(n)?;
            }
        }
    }

    /// Nearly-JSON texts (one edit away from a record): where serde_json
    /// reads them the scans agree; where it refuses them, whatever the
    /// scanner returns is still valid JSON on its own.
    #[test]
    fn broken_records_give_no_wrong_value(
        record in a_record(false),
        seed in any::<u64>(),
        picks in prop::collection::vec(any::<u16>(), 1..8),
        op in any::<u8>(),
        at in any::<usize>(),
        len in 1usize..4,
        fragment in a_fragment(),
    ) {
        let text = json_model::mutate(&json_model::render(&record, seed), op, at, len, &fragment);
        let paths = paths_for(&record, &picks);
        let unique = serde_json::from_str::<Serde>(&text).is_ok() && !repeats_a_member(&text);
        agree(&text, &paths, unique).map_err(|e| with_text(e, &text))?;
    }

    /// A wanted value that is not JSON is refused; one whose escapes do
    /// not decode is refused when it is used.
    #[test]
    fn a_wanted_value_that_is_not_json_is_refused(
        bad in a_bad_value(),
        before in a_value_text(),
        after in a_value_text(),
        nested in any::<bool>(),
    ) {
        let inner = format!(r#"{{"pre": {before}, "w": {bad}, "post": {after}}}"#);
        let text = if nested { format!(r#"{{"o": {inner}}}"#) } else { inner };
        prop_assert!(serde_json::from_str::<Serde>(&text).is_err(), "serde_json read {}", text);
        let path: Vec<String> = if nested { vec!["o".into(), "w".into()] } else { vec!["w".into()] };
        for scan in [scan_object, scan_record] {
            match scan_with(scan, &text, std::slice::from_ref(&path)) {
                Err(e) => prop_assert!(e.at <= text.len()),
                Ok(slots) => {
                    let refused_on_use = matches!(slots[0], Raw::Str { escaped: true, .. })
                        && Val::from_raw(slots[0]).is_err();
                    prop_assert!(refused_on_use, "{text}: wanted value read as {:?}", slots[0]);
                }
            }
        }
        // In an array, as a child collection's element.
        let array = format!("[{before}, {bad}]");
        if let Ok(items) = array_elements(&array) {
            let last = items.last().copied().unwrap_or(Raw::Missing);
            let refused_on_use = matches!(last, Raw::Str { escaped: true, .. })
                && Val::from_raw(last).is_err();
            prop_assert!(refused_on_use, "{array}: {items:?}");
        }
    }

    /// Far deeper than serde_json reads: the scanner skips and reads
    /// without recursion, and shallow values still agree with the model.
    #[test]
    fn deep_records_scan_without_limit(record in a_record(true), seed in any::<u64>()) {
        let record = record.unique().finite();
        let text = json_model::render(&record, seed);
        let paths: Vec<Vec<String>> = record.members().iter().map(|(k, _)| vec![k.clone()]).collect();
        let slots = scan_with(scan_object, &text, &paths);
        prop_assert!(slots.is_ok(), "{:?}", slots.err());
        let slots = slots.unwrap_or_default();
        let record_slots = scan_with(scan_record, &text, &paths).unwrap_or_default();
        prop_assert_eq!(&slots, &record_slots);
        for ((_, v), raw) in record.members().iter().zip(&slots) {
            match v {
                Model::Num(n) => prop_assert_eq!(*raw, Raw::Num(n.as_str())),
                Model::Str(s) => {
                    let got = raw.as_str();
                    prop_assert_eq!(got.as_deref(), Some(s.as_str()));
                }
                Model::Null => prop_assert_eq!(*raw, Raw::Null),
                Model::Bool(b) => prop_assert_eq!(*raw, Raw::Bool(*b)),
                Model::Arr(_) => prop_assert!(matches!(raw, Raw::Array(_)), "{raw:?}"),
                Model::Obj(_) => prop_assert!(matches!(raw, Raw::Object(_)), "{raw:?}"),
            }
        }
    }

    /// Numbers of every shape convert exactly or not at all.
    #[test]
    fn numbers_convert_exactly_or_not_at_all(n in a_number()) {
        if json_model::near_f64_max(&n) {
            return Ok(());
        }
        let text = format!(r#"{{"n": {n}}}"#);
        match json::field(&text, "n") {
            Ok(Raw::Num(got)) => {
                prop_assert_eq!(got, n.as_str());
                prop_assert!(serde_json::from_str::<Serde>(&text).is_ok());
                converts_exactly(&n)?;
            }
            Ok(other) => prop_assert!(false, "{n} scanned as {other:?}"),
            Err(e) => {
                prop_assert_eq!(e.what, "number out of range (beyond f64)");
                prop_assert!(serde_json::from_str::<Serde>(&text).is_err(), "serde_json read {}", n);
            }
        }
    }
}

/// The text of a valid value, for the neighbours of a bad one.
fn a_value_text() -> impl Strategy<Value = String> {
    (json_model::a_value(2), any::<u64>())
        .prop_map(|(v, seed)| json_model::render(&v.unique().finite(), seed))
}

/// Whether some object of `text` (JSON `serde_json` reads) names a member
/// twice, as the host checks; read with the scanner's member and element
/// lists, which give every member as written.
fn repeats_a_member(text: &str) -> bool {
    fn value(raw: Raw<'_>) -> bool {
        match raw {
            Raw::Object(t) => {
                let Ok(members) = json::object_members(t) else {
                    return true;
                };
                let mut names: Vec<&str> = members.iter().map(|(k, _)| k.as_ref()).collect();
                names.sort_unstable();
                names.windows(2).any(|w| w[0] == w[1]) || members.iter().any(|(_, v)| value(*v))
            }
            Raw::Array(t) => array_elements(t).map_or(true, |items| items.into_iter().any(value)),
            _ => false,
        }
    }
    value(Raw::Object(text.trim_matches([' ', '\t', '\n', '\r'])))
}
