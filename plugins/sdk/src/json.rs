//! Fast, borrowing access to the fields of a JSON record.
//!
//! [`Object::parse`] validates a record in one pass and indexes its
//! top-level fields as slices of the original text; nothing is decoded until
//! a field is asked for, and strings without escapes are never copied. A
//! nested object or array is re-scanned only when opened. Numbers stay text,
//! so decimals are read exactly (see [`crate::value`]).
//!
//! The index accepts exactly the texts `serde_json` accepts as an object
//! (the host parses every record with it before a plugin sees it), and reads
//! the same values from them: the property tests in `tests/json_props.rs` hold
//! it to that. In particular a string's escapes must decode (a lone
//! surrogate is refused, as `serde_json` refuses it), a number must fit an
//! `f64` (`1e400` is refused, as `serde_json` refuses it; decimals are
//! still read exactly from the text), nesting stops at [`MAX_DEPTH`], and
//! of a member named twice the last one counts, as in a `serde_json` map.

use std::borrow::Cow;
use std::fmt;

use mlc_common::json_text::{string_run_end, unescape};

/// Most arrays and objects open at once, the record itself included:
/// `serde_json`'s recursion limit (it refuses the 128th), so a record the
/// host accepted is never too deep here and one it refused is refused here
/// too.
pub const MAX_DEPTH: usize = 127;

/// Why a text is not valid JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonError {
    /// Byte offset of the fault.
    pub offset: usize,
    /// What was expected or found.
    pub message: &'static str,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid JSON at byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for JsonError {}

/// The kind of a JSON value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `null`
    Null,
    /// `true` or `false`
    Bool,
    /// a number
    Number,
    /// a string
    String,
    /// an array
    Array,
    /// an object
    Object,
}

impl Kind {
    /// The kind's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool => "boolean",
            Self::Number => "number",
            Self::String => "string",
            Self::Array => "array",
            Self::Object => "object",
        }
    }
}

/// One valid JSON value: a slice of the record text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Json<'a> {
    raw: &'a str,
}

impl<'a> Json<'a> {
    /// The value's JSON text.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// The kind of value.
    pub fn kind(&self) -> Kind {
        match self.raw.as_bytes().first() {
            Some(b'n') => Kind::Null,
            Some(b't' | b'f') => Kind::Bool,
            Some(b'"') => Kind::String,
            Some(b'[') => Kind::Array,
            Some(b'{') => Kind::Object,
            _ => Kind::Number,
        }
    }

    /// Whether the value is `null`.
    pub fn is_null(&self) -> bool {
        self.kind() == Kind::Null
    }

    /// The string's content (decoded only if it has escapes).
    pub fn as_str(&self) -> Option<Cow<'a, str>> {
        if self.kind() != Kind::String {
            return None;
        }
        let inner = &self.raw[1..self.raw.len() - 1];
        if inner.contains('\\') {
            unescape(inner).map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(inner))
        }
    }

    /// The boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self.raw {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }

    /// The number's text, exactly as written.
    pub fn number_text(&self) -> Option<&'a str> {
        (self.kind() == Kind::Number).then_some(self.raw)
    }

    /// The object's fields.
    pub fn as_object(&self) -> Option<Object<'a>> {
        if self.kind() != Kind::Object {
            return None;
        }
        Object::parse(self.raw).ok()
    }

    /// The array's elements.
    pub fn as_array(&self) -> Option<Vec<Json<'a>>> {
        if self.kind() != Kind::Array {
            return None;
        }
        let mut scanner = Scanner::new(self.raw);
        let mut out = Vec::new();
        scanner.pos = 1;
        scanner.ws();
        if scanner.peek() == Some(b']') {
            return Some(out);
        }
        loop {
            scanner.ws();
            let start = scanner.pos;
            scanner.value(1).ok()?;
            out.push(Json {
                raw: &self.raw[start..scanner.pos],
            });
            scanner.ws();
            match scanner.bump() {
                Some(b',') => continue,
                Some(b']') => return Some(out),
                _ => return None,
            }
        }
    }
}

/// A JSON object's top-level fields, in order, borrowing the text.
#[derive(Clone, Debug, Default)]
pub struct Object<'a> {
    fields: Vec<Field<'a>>,
}

#[derive(Clone, Copy, Debug)]
struct Field<'a> {
    /// The key between its quotes, still escaped.
    key: &'a str,
    escaped: bool,
    value: Json<'a>,
}

impl<'a> Object<'a> {
    /// Validates `text` as one JSON object and indexes its fields.
    pub fn parse(text: &'a str) -> Result<Self, JsonError> {
        let mut scanner = Scanner::new(text);
        scanner.ws();
        if scanner.peek() != Some(b'{') {
            return Err(scanner.error("expected an object"));
        }
        scanner.pos += 1;
        let mut fields = Vec::with_capacity(48);
        scanner.ws();
        if scanner.peek() == Some(b'}') {
            scanner.pos += 1;
        } else {
            loop {
                scanner.ws();
                if scanner.peek() != Some(b'"') {
                    return Err(scanner.error("expected a field name"));
                }
                let (start, end, escaped) = scanner.string()?;
                scanner.ws();
                if scanner.bump() != Some(b':') {
                    return Err(scanner.error("expected ':'"));
                }
                scanner.ws();
                let value_start = scanner.pos;
                scanner.value(1)?;
                fields.push(Field {
                    key: &text[start..end],
                    escaped,
                    value: Json {
                        raw: &text[value_start..scanner.pos],
                    },
                });
                scanner.ws();
                match scanner.bump() {
                    Some(b',') => continue,
                    Some(b'}') => break,
                    _ => return Err(scanner.error("expected ',' or '}'")),
                }
            }
        }
        scanner.ws();
        if scanner.pos != text.len() {
            return Err(scanner.error("trailing characters after the object"));
        }
        Ok(Self { fields })
    }

    /// The value of field `name` (`null` included). The host never passes
    /// a record that repeats a member; should a plugin's own input repeat
    /// one, the last wins, as in a `serde_json` map.
    pub fn get(&self, name: &str) -> Option<Json<'a>> {
        self.fields.iter().rev().find_map(|f| {
            let matches = if f.escaped {
                unescape(f.key).is_some_and(|k| k == name)
            } else {
                f.key == name
            };
            matches.then_some(f.value)
        })
    }

    /// The value of field `name` unless it is absent or `null`.
    pub fn get_non_null(&self, name: &str) -> Option<Json<'a>> {
        self.get(name).filter(|v| !v.is_null())
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the object has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Field names (decoded) and values, in order; a repeated name comes
    /// once per time it is written (of which [`Object::get`] takes the last).
    pub fn iter(&self) -> impl Iterator<Item = (Cow<'a, str>, Json<'a>)> + '_ {
        self.fields.iter().map(|f| {
            let key = if f.escaped {
                // The scanner checked that the escapes decode; the
                // fallback is never taken.
                unescape(f.key).map_or(Cow::Borrowed(f.key), Cow::Owned)
            } else {
                Cow::Borrowed(f.key)
            };
            (key, f.value)
        })
    }
}

struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    fn error(&self, message: &'static str) -> JsonError {
        JsonError {
            offset: self.pos,
            message,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    /// At an opening quote: skips the string, returning the content's byte
    /// range and whether it has escapes.
    fn string(&mut self) -> Result<(usize, usize, bool), JsonError> {
        self.pos += 1;
        let start = self.pos;
        let mut escaped = false;
        loop {
            // Fast path: plain bytes, eight at a time.
            self.pos = string_run_end(self.bytes, self.pos, true);
            match self.peek() {
                Some(b'"') => {
                    let end = self.pos;
                    self.pos += 1;
                    return Ok((start, end, escaped));
                }
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 1;
                    match self.bump() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                        Some(b'u') => self.unicode_escape()?,
                        _ => return Err(self.error("bad escape")),
                    }
                }
                Some(_) => return Err(self.error("control character in string")),
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    /// After `\u`: one code point's escape, a surrogate pair written as
    /// two (`\ud83d\ude00`); a lone or reversed surrogate is refused, as
    /// `serde_json` refuses it (it would not decode).
    fn unicode_escape(&mut self) -> Result<(), JsonError> {
        let first = self.hex4().ok_or_else(|| self.error("bad \\u escape"))?;
        match first {
            0xD800..=0xDBFF => {
                if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return Err(self.error("lone surrogate in \\u escape"));
                }
                self.pos += 2;
                let second = self.hex4().ok_or_else(|| self.error("bad \\u escape"))?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.error("lone surrogate in \\u escape"));
                }
                Ok(())
            }
            0xDC00..=0xDFFF => Err(self.error("lone surrogate in \\u escape")),
            _ => Ok(()),
        }
    }

    /// Four hex digits at `pos` (moved past them), as a number.
    fn hex4(&mut self) -> Option<u32> {
        let hex = self.bytes.get(self.pos..self.pos + 4)?;
        let mut n = 0u32;
        for &h in hex {
            n = n * 16 + char::from(h).to_digit(16)?;
        }
        self.pos += 4;
        Some(n)
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), JsonError> {
        if self.bytes.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error("unknown literal"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<(), JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let integer = match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                1
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("bad number")),
        };
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.error("bad number fraction"));
            }
        }
        let mut exponent = false;
        if let Some(b'e' | b'E') = self.peek() {
            exponent = true;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("bad number exponent"));
            }
        }
        // Only an exponent or more than 308 integer digits can pass
        // f64::MAX (about 1.8e308); serde_json refuses such a number.
        if (exponent || integer > 308) && !self.fits_f64(start) {
            return Err(JsonError {
                offset: start,
                message: "number out of range (beyond f64)",
            });
        }
        Ok(())
    }

    /// Whether the number from `start` to `pos` is finite as an `f64`.
    #[cold]
    fn fits_f64(&self, start: usize) -> bool {
        self.bytes
            .get(start..self.pos)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|t| t.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
    }

    /// Skips one value inside `depth` open arrays and objects, validating
    /// it.
    fn value(&mut self, depth: usize) -> Result<(), JsonError> {
        if depth >= MAX_DEPTH && matches!(self.peek(), Some(b'{' | b'[')) {
            return Err(self.error("nested too deeply"));
        }
        match self.peek() {
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{') => {
                self.pos += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    if self.peek() != Some(b'"') {
                        return Err(self.error("expected a field name"));
                    }
                    self.string()?;
                    self.ws();
                    if self.bump() != Some(b':') {
                        return Err(self.error("expected ':'"));
                    }
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.bump() {
                        Some(b',') => continue,
                        Some(b'}') => return Ok(()),
                        _ => return Err(self.error("expected ',' or '}'")),
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.bump() {
                        Some(b',') => continue,
                        Some(b']') => return Ok(()),
                        _ => return Err(self.error("expected ',' or ']'")),
                    }
                }
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected a value")),
            None => Err(self.error("unexpected end")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_top_level_fields_without_copying() {
        let text = r#" {"InvoiceId": 300100412233001, "InvoiceNumber": "ACME-2024-0042",
            "InvoiceAmount": 1250.00, "CanceledFlag": false, "AmountPaid": null,
            "links": [{"rel": "self", "href": "x"}], "Nested": {"a": [1, 2, {"b": "c"}]},
            "Esc\u0061ped": "a\"b\\c\u00e9\ud83d\ude00" } "#;
        let obj = Object::parse(text).unwrap();
        assert_eq!(obj.len(), 8);
        assert_eq!(
            obj.get("InvoiceId").unwrap().number_text(),
            Some("300100412233001")
        );
        let number = obj.get("InvoiceNumber").unwrap().as_str().unwrap();
        assert!(matches!(number, Cow::Borrowed("ACME-2024-0042")));
        assert_eq!(
            obj.get("InvoiceAmount").unwrap().number_text(),
            Some("1250.00")
        );
        assert_eq!(obj.get("CanceledFlag").unwrap().as_bool(), Some(false));
        assert!(obj.get("AmountPaid").unwrap().is_null());
        assert!(obj.get_non_null("AmountPaid").is_none());
        assert!(obj.get("Missing").is_none());
        let links = obj.get("links").unwrap().as_array().unwrap();
        assert_eq!(links.len(), 1);
        let link = links[0].as_object().unwrap();
        assert_eq!(link.get("rel").unwrap().as_str().unwrap(), "self");
        let nested = obj.get("Nested").unwrap().as_object().unwrap();
        let a = nested.get("a").unwrap().as_array().unwrap();
        assert_eq!(
            a.iter().map(Json::kind).collect::<Vec<_>>(),
            vec![Kind::Number, Kind::Number, Kind::Object]
        );
        assert_eq!(
            obj.get("Escaped").unwrap().as_str().unwrap(),
            "a\"b\\c\u{e9}\u{1F600}"
        );
        let keys: Vec<String> = obj.iter().map(|(k, _)| k.into_owned()).collect();
        assert_eq!(keys.last().map(String::as_str), Some("Escaped"));
    }

    #[test]
    fn last_duplicate_wins_as_in_serde_json_and_empty_containers_parse() {
        // Bug: the first of a repeated member won, while serde_json (the
        // host's reader) keeps the last.
        let obj = Object::parse(r#"{"a": 1, "a": 2, "e": {}, "l": [], "\u0061": 3}"#).unwrap();
        assert_eq!(obj.get("a").unwrap().raw(), "3");
        let obj = Object::parse(r#"{"a": 1, "b": {"c": 1, "c": 2}, "a": 2}"#).unwrap();
        assert_eq!(obj.get("a").unwrap().raw(), "2");
        let b = obj.get("b").unwrap().as_object().unwrap();
        assert_eq!(b.get("c").unwrap().raw(), "2");
        // iter() shows every member as written.
        assert_eq!(obj.iter().count(), 3);
        let obj = Object::parse(r#"{"e": {}, "l": []}"#).unwrap();
        assert!(obj.get("e").unwrap().as_object().unwrap().is_empty());
        assert!(obj.get("l").unwrap().as_array().unwrap().is_empty());
        assert!(Object::parse("{}").unwrap().is_empty());
    }

    #[test]
    fn refuses_invalid_json() {
        for bad in [
            "",
            "[]",
            "{",
            r#"{"a"}"#,
            r#"{"a": }"#,
            r#"{"a": 01}"#,
            r#"{"a": 1.}"#,
            r#"{"a": 1e}"#,
            r#"{"a": -}"#,
            r#"{"a": tru}"#,
            r#"{"a": "x\q"}"#,
            r#"{"a": "x\u12"}"#,
            "{\"a\": \"tab\there\"}",
            r#"{"a": [1,]}"#,
            r#"{"a": 1,}"#,
            r#"{"a": 1} x"#,
            r#"{"a": 1 "b": 2}"#,
            r#"{"a": "unterminated}"#,
        ] {
            assert!(Object::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let deep = format!("{{\"a\": {}{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(
            Object::parse(&deep).unwrap_err().message,
            "nested too deeply"
        );
    }

    /// `open` arrays and objects in all, the record included.
    fn nested(open: usize, innermost: &str) -> String {
        let inner = open - 1;
        format!(
            "{{\"a\": {}{innermost}{}}}",
            "[{\"b\": ".repeat(inner / 2) + &"[".repeat(inner % 2),
            "]".repeat(inner % 2) + &"}]".repeat(inner / 2)
        )
    }

    #[test]
    fn nesting_stops_where_serde_json_stops() {
        // Bug: 128 containers (129 with an empty innermost one) were
        // accepted, serde_json refuses the 128th.
        for innermost in ["1", "[]", "{}"] {
            let open = MAX_DEPTH - usize::from(innermost != "1");
            let ok = nested(open, innermost);
            assert!(Object::parse(&ok).is_ok(), "{ok}");
            assert!(serde_json::from_str::<serde_json::Value>(&ok).is_ok());
            let deep = nested(open + 1, innermost);
            assert_eq!(
                Object::parse(&deep).unwrap_err().message,
                "nested too deeply"
            );
            assert!(serde_json::from_str::<serde_json::Value>(&deep).is_err());
        }
    }

    #[test]
    fn lone_surrogates_are_refused_like_serde_json() {
        // Bug: `\ud800` passed the scanner (only the field read refused
        // it, and a name that did not decode was shown escaped).
        for bad in [
            r#"{"a": "\ud800"}"#,
            r#"{"a": "x\ud800y"}"#,
            r#"{"a": "\udc00"}"#,
            r#"{"a": "\ude00\ud83d"}"#,
            r#"{"a": "\ud83d\u0041"}"#,
            r#"{"a": "\ud83d\ud83d"}"#,
            r#"{"a": "\ud83d\n"}"#,
            r#"{"a": "\ud83d\ude0"}"#,
            r#"{"\udfff": 1}"#,
            r#"{"a": [{"b": "\ud800"}]}"#,
        ] {
            assert!(Object::parse(bad).is_err(), "{bad} was accepted");
            assert!(serde_json::from_str::<serde_json::Value>(bad).is_err());
        }
        let obj = Object::parse(r#"{"a": "\uD83D\uDE00\udbff\udfff"}"#).unwrap();
        assert_eq!(
            obj.get("a").unwrap().as_str().unwrap(),
            "\u{1F600}\u{10FFFF}"
        );
    }

    #[test]
    fn numbers_beyond_f64_are_refused_like_serde_json() {
        // Bug: `1e400` passed, and a text column took it as written, while
        // serde_json (and so the host) refuses the record.
        let long = format!("{{\"a\": {}}}", "9".repeat(400));
        for bad in [r#"{"a": 1e400}"#, r#"{"a": -2E+308}"#, long.as_str()] {
            assert_eq!(
                Object::parse(bad).unwrap_err().message,
                "number out of range (beyond f64)",
                "{bad}"
            );
            assert!(serde_json::from_str::<serde_json::Value>(bad).is_err());
        }
        let zeros = format!("{{\"a\": 0.{}1}}", "0".repeat(400));
        for ok in [
            r#"{"a": 1e308}"#,
            r#"{"a": 1e-400}"#,
            r#"{"a": 0e999999999999}"#,
            r#"{"a": -1.5e-99999999999999999999}"#,
            zeros.as_str(),
        ] {
            assert!(Object::parse(ok).is_ok(), "{ok}");
            assert!(
                serde_json::from_str::<serde_json::Value>(ok).is_ok(),
                "{ok}"
            );
        }
    }

    #[test]
    fn numbers_keep_their_text() {
        let obj =
            Object::parse(r#"{"big": 12345678901234567890.123456789, "e": -1.25E+3, "z": 0}"#)
                .unwrap();
        assert_eq!(
            obj.get("big").unwrap().number_text(),
            Some("12345678901234567890.123456789")
        );
        assert_eq!(obj.get("e").unwrap().number_text(), Some("-1.25E+3"));
        assert_eq!(obj.get("z").unwrap().number_text(), Some("0"));
        assert_eq!(obj.get("z").unwrap().as_str(), None);
    }
}
