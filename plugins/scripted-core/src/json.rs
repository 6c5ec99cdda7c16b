//! A single-pass JSON scanner that extracts only the fields a mapping needs.
//!
//! Records arrive as JSON object text. Instead of building a tree, the
//! scanner walks an object once, compares each key against a small
//! [`Table`] of wanted keys, stores the wanted values as borrowed [`Raw`]
//! slices of the input, and skips everything else by bracket counting
//! (strings are honoured, so brackets inside them do not count). Strings are
//! unescaped only when a value is used and contains a backslash; numbers stay
//! text until a column converts them, so amounts never pass through `f64`.
//!
//! Skipped values are checked for structure (balanced brackets, closed
//! strings) but not for full JSON grammar: the host received the record as
//! JSON from Oracle, and a mapping only vouches for the fields it reads.

use std::borrow::Cow;

/// A JSON value as found in the input, borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Raw<'a> {
    /// The key was not in the object.
    #[default]
    Missing,
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as written.
    Num(&'a str),
    /// A string: the text between the quotes, still escaped when `escaped`.
    Str {
        /// Text between the quotes.
        raw: &'a str,
        /// Whether `raw` contains a backslash escape.
        escaped: bool,
    },
    /// An object, including its braces.
    Object(&'a str),
    /// An array, including its brackets.
    Array(&'a str),
}

impl<'a> Raw<'a> {
    /// A short name of the JSON kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Raw::Missing => "missing",
            Raw::Null => "null",
            Raw::Bool(_) => "boolean",
            Raw::Num(_) => "number",
            Raw::Str { .. } => "string",
            Raw::Object(_) => "object",
            Raw::Array(_) => "array",
        }
    }

    /// The string value, unescaped when needed; `None` for other kinds or a
    /// broken escape.
    pub fn as_str(&self) -> Option<Cow<'a, str>> {
        match *self {
            Raw::Str {
                raw,
                escaped: false,
            } => Some(Cow::Borrowed(raw)),
            Raw::Str { raw, escaped: true } => unescape(raw).map(Cow::Owned),
            _ => None,
        }
    }
}

/// Why a record is not the JSON the scanner expects.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at byte {at}: {what}")]
pub struct JsonError {
    /// Byte offset in the record text.
    pub at: usize,
    /// What was expected or found.
    pub what: &'static str,
}

/// One wanted key of an object.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The key.
    pub key: Box<str>,
    /// Where to store the value, if the value itself is wanted.
    pub slot: Option<usize>,
    /// The table to scan the value with, if fields inside it are wanted.
    pub nested: Option<usize>,
}

/// The wanted keys of one object.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Wanted keys, in the order they were added.
    pub entries: Vec<Entry>,
    /// (length, first eight bytes) of each entry's key, for fast matching.
    index: Vec<(usize, u64)>,
}

impl Table {
    /// The entry for `key`, created when absent.
    pub fn entry(&mut self, key: &str) -> &mut Entry {
        let index = match self.entries.iter().position(|e| &*e.key == key) {
            Some(index) => index,
            None => {
                self.entries.push(Entry {
                    key: key.into(),
                    slot: None,
                    nested: None,
                });
                self.index.push((key.len(), prefix(key.as_bytes())));
                self.entries.len() - 1
            }
        };
        &mut self.entries[index]
    }

    #[inline]
    fn find(&self, key: &[u8]) -> Option<usize> {
        let (len, head) = (key.len(), prefix(key));
        for (i, &(l, h)) in self.index.iter().enumerate() {
            if l == len
                && h == head
                && (len <= 8 || self.entries[i].key.as_bytes()[8..] == key[8..])
            {
                return Some(i);
            }
        }
        None
    }
}

/// Scans `text` (a JSON object) with `tables[table]`, storing wanted values
/// into `slots`. The first occurrence of a duplicated key wins; once every
/// wanted key has been seen the rest of the object is skipped.
pub fn scan_object<'a>(
    text: &'a str,
    tables: &[Table],
    table: usize,
    slots: &mut [Raw<'a>],
) -> Result<(), JsonError> {
    let mut scanner = Scanner {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    scanner.ws();
    scanner.object(tables, table, slots)?;
    scanner.ws();
    if scanner.pos != scanner.bytes.len() {
        return Err(scanner.error("trailing characters after the object"));
    }
    Ok(())
}

/// The value of one top-level key of an object (for reference records).
pub fn field<'a>(text: &'a str, key: &str) -> Result<Raw<'a>, JsonError> {
    let mut table = Table::default();
    table.entry(key).slot = Some(0);
    let tables = [table];
    let mut slots = [Raw::Missing];
    scan_object(text, &tables, 0, &mut slots)?;
    Ok(slots[0])
}

/// The elements of a JSON array text (`[...]`), each as a [`Raw`].
pub fn array_elements(text: &str) -> Result<Vec<Raw<'_>>, JsonError> {
    let mut scanner = Scanner {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    scanner.ws();
    scanner.expect(b'[', "expected '['")?;
    let mut out = Vec::new();
    scanner.ws();
    if scanner.peek() == Some(b']') {
        return Ok(out);
    }
    loop {
        scanner.ws();
        out.push(scanner.value()?);
        scanner.ws();
        match scanner.peek() {
            Some(b',') => scanner.pos += 1,
            Some(b']') => break,
            _ => return Err(scanner.error("expected ',' or ']' in array")),
        }
    }
    Ok(out)
}

/// The members of a JSON object text, as (key, value) pairs in order.
pub fn object_members(text: &str) -> Result<Vec<(Cow<'_, str>, Raw<'_>)>, JsonError> {
    let mut scanner = Scanner {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    scanner.ws();
    scanner.expect(b'{', "expected '{'")?;
    let mut out = Vec::new();
    scanner.ws();
    if scanner.peek() == Some(b'}') {
        return Ok(out);
    }
    loop {
        scanner.ws();
        let start = scanner.pos;
        let (raw, escaped) = scanner.string()?;
        let key = Raw::Str { raw, escaped }.as_str().ok_or(JsonError {
            at: start,
            what: "bad escape in key",
        })?;
        scanner.ws();
        scanner.expect(b':', "expected ':' after key")?;
        scanner.ws();
        out.push((key, scanner.value()?));
        scanner.ws();
        match scanner.peek() {
            Some(b',') => scanner.pos += 1,
            Some(b'}') => break,
            _ => return Err(scanner.error("expected ',' or '}' in object")),
        }
    }
    Ok(out)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// High bit set in every byte of `word` equal to `byte` (exact for the
/// lowest such byte, which is all the callers use).
#[inline(always)]
fn bytes_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The index of the first `"` or `\\` at or after `i`, eight bytes at a
/// time; `bytes.len()` when there is none.
#[inline(always)]
fn find_quote_or_backslash(bytes: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(chunk);
        let word = u64::from_le_bytes(buf);
        let hits = bytes_equal(word, b'"') | bytes_equal(word, b'\\');
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        if b == b'"' || b == b'\\' {
            return i;
        }
        i += 1;
    }
    bytes.len()
}

/// From just after an opening quote: the index of the closing quote and
/// whether an escape was seen; `None` when the string does not end.
#[inline(always)]
fn string_end(bytes: &[u8], start: usize) -> Option<(usize, bool)> {
    let mut i = start;
    let mut escaped = false;
    loop {
        i = find_quote_or_backslash(bytes, i);
        match bytes.get(i) {
            Some(b'"') => return Some((i, escaped)),
            Some(_) => {
                escaped = true;
                i += 2;
            }
            None => return None,
        }
    }
}

/// The first eight bytes of a key, zero-padded: a cheap first comparison.
#[inline(always)]
fn prefix(key: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = key.len().min(8);
    buf[..n].copy_from_slice(&key[..n]);
    u64::from_le_bytes(buf)
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn error(&self, what: &'static str) -> JsonError {
        JsonError { at: self.pos, what }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    #[inline]
    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), JsonError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    /// A slice of the input between two byte offsets that lie on ASCII
    /// delimiters (so always on character boundaries).
    #[inline]
    fn slice(&self, start: usize, end: usize) -> Result<&'a str, JsonError> {
        self.text.get(start..end).ok_or(JsonError {
            at: start,
            what: "not on a character boundary",
        })
    }

    /// At a `"`: returns the text between the quotes and whether it has
    /// escapes; leaves `pos` after the closing quote.
    #[inline]
    fn string(&mut self) -> Result<(&'a str, bool), JsonError> {
        self.expect(b'"', "expected a string")?;
        let start = self.pos;
        let (end, escaped) = string_end(self.bytes, start).ok_or(JsonError {
            at: start,
            what: "unterminated string",
        })?;
        self.pos = end + 1;
        Ok((self.slice(start, end)?, escaped))
    }

    /// Skips a string, object or array starting at `pos` by bracket
    /// counting; leaves `pos` after it.
    fn skip_nested(&mut self) -> Result<(), JsonError> {
        self.skip_nested_from(0)
    }

    /// Skips forward until `depth` open brackets are closed; leaves `pos`
    /// after the last closing bracket.
    fn skip_nested_from(&mut self, depth: usize) -> Result<(), JsonError> {
        let bytes = self.bytes;
        let start = self.pos;
        let mut depth = depth;
        let mut i = self.pos;
        while let Some(&b) = bytes.get(i) {
            match b {
                b'"' => match string_end(bytes, i + 1) {
                    Some((end, _)) => i = end,
                    None => {
                        return Err(JsonError {
                            at: start,
                            what: "unterminated string",
                        });
                    }
                },
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    if depth == 0 {
                        return Err(JsonError {
                            at: i,
                            what: "unbalanced bracket",
                        });
                    }
                    depth -= 1;
                    if depth == 0 {
                        self.pos = i + 1;
                        return Ok(());
                    }
                }
                _ => {}
            }
            i += 1;
        }
        Err(JsonError {
            at: start,
            what: "unterminated object or array",
        })
    }

    #[inline]
    fn literal(&mut self, word: &'static [u8], what: &'static str) -> Result<(), JsonError> {
        let same = self
            .bytes
            .get(self.pos..self.pos + word.len())
            .is_some_and(|got| got.iter().zip(word).all(|(a, b)| a == b));
        if same {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    #[inline]
    fn number(&mut self) -> Result<&'a str, JsonError> {
        let start = self.pos;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
        self.slice(start, self.pos)
    }

    /// Reads one value as a [`Raw`].
    fn value(&mut self) -> Result<Raw<'a>, JsonError> {
        match self.peek() {
            Some(b'"') => {
                let (raw, escaped) = self.string()?;
                Ok(Raw::Str { raw, escaped })
            }
            Some(b'{') => {
                let start = self.pos;
                self.skip_nested()?;
                Ok(Raw::Object(self.slice(start, self.pos)?))
            }
            Some(b'[') => {
                let start = self.pos;
                self.skip_nested()?;
                Ok(Raw::Array(self.slice(start, self.pos)?))
            }
            Some(b't') => self
                .literal(b"true", "bad literal")
                .map(|()| Raw::Bool(true)),
            Some(b'f') => self
                .literal(b"false", "bad literal")
                .map(|()| Raw::Bool(false)),
            Some(b'n') => self.literal(b"null", "bad literal").map(|()| Raw::Null),
            Some(b'-' | b'0'..=b'9') => self.number().map(Raw::Num),
            _ => Err(self.error("expected a value")),
        }
    }

    /// Skips one value without keeping it.
    #[inline]
    fn skip_value(&mut self) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{' | b'[') => self.skip_nested(),
            Some(b't') => self.literal(b"true", "bad literal"),
            Some(b'f') => self.literal(b"false", "bad literal"),
            Some(b'n') => self.literal(b"null", "bad literal"),
            Some(b'-' | b'0'..=b'9') => self.number().map(|_| ()),
            _ => Err(self.error("expected a value")),
        }
    }

    /// Scans an object at `pos` with `tables[table]`.
    fn object(
        &mut self,
        tables: &[Table],
        table: usize,
        slots: &mut [Raw<'a>],
    ) -> Result<(), JsonError> {
        let Some(wanted) = tables.get(table) else {
            return self.skip_nested();
        };
        self.expect(b'{', "expected an object")?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        // Seen-bits allow skipping the tail once every wanted key is found.
        let total = wanted.entries.len();
        let trackable = total <= 64;
        let mut seen: u64 = 0;
        let mut found = 0usize;
        loop {
            self.ws();
            let key_at = self.pos;
            let (key, escaped) = self.string()?;
            self.ws();
            self.expect(b':', "expected ':' after key")?;
            self.ws();
            let index = if escaped {
                match (Raw::Str { raw: key, escaped }).as_str() {
                    Some(k) => wanted.find(k.as_bytes()),
                    None => {
                        return Err(JsonError {
                            at: key_at,
                            what: "bad escape in key",
                        });
                    }
                }
            } else {
                wanted.find(key.as_bytes())
            };
            match index {
                Some(index) if trackable && seen & (1u64 << index) != 0 => self.skip_value()?,
                Some(index) => {
                    let entry = &wanted.entries[index];
                    if trackable {
                        seen |= 1u64 << index;
                        found += 1;
                    }
                    let value_at = self.pos;
                    let value = self.value()?;
                    if let Some(slot) = entry.slot
                        && let Some(place) = slots.get_mut(slot)
                    {
                        *place = value;
                    }
                    if let (Some(nested), Raw::Object(inner)) = (entry.nested, value) {
                        let mut sub = Scanner {
                            text: self.text,
                            bytes: self.bytes,
                            pos: value_at,
                        };
                        sub.object(tables, nested, slots)?;
                        debug_assert_eq!(sub.pos, value_at + inner.len());
                    }
                }
                None => self.skip_value()?,
            }
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    if trackable && found == total {
                        // Everything wanted is in hand: skip to the end.
                        return self.skip_nested_from(1);
                    }
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected ',' or '}' in object")),
            }
        }
    }
}

/// Decodes JSON string escapes; `None` when an escape is invalid.
pub fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            '/' => out.push('/'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let first = hex4(&mut chars)?;
                let code = if (0xD800..0xDC00).contains(&first) {
                    if chars.next()? != '\\' || chars.next()? != 'u' {
                        return None;
                    }
                    let second = hex4(&mut chars)?;
                    if !(0xDC00..0xE000).contains(&second) {
                        return None;
                    }
                    0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                } else {
                    first
                };
                out.push(char::from_u32(code)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    let mut n = 0u32;
    for _ in 0..4 {
        n = n * 16 + chars.next()?.to_digit(16)?;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(keys: &[&str]) -> Vec<Table> {
        let mut t = Table::default();
        for (i, k) in keys.iter().enumerate() {
            t.entry(k).slot = Some(i);
        }
        vec![t]
    }

    #[test]
    fn extracts_wanted_fields_and_skips_the_rest() {
        let text = r#" {"a": {"x": [1, "]}"]}, "B": "b\"q", "n": -12.50e1, "t": true, "z": null, "arr": [1,{"k":2}]} "#;
        let tables = table(&["B", "n", "t", "z", "arr", "missing"]);
        let mut slots = vec![Raw::Missing; 6];
        scan_object(text, &tables, 0, &mut slots).unwrap();
        assert_eq!(
            slots[0],
            Raw::Str {
                raw: r#"b\"q"#,
                escaped: true
            }
        );
        assert_eq!(slots[0].as_str().unwrap(), "b\"q");
        assert_eq!(slots[1], Raw::Num("-12.50e1"));
        assert_eq!(slots[2], Raw::Bool(true));
        assert_eq!(slots[3], Raw::Null);
        assert_eq!(slots[4], Raw::Array(r#"[1,{"k":2}]"#));
        assert_eq!(slots[5], Raw::Missing);
    }

    #[test]
    fn nested_tables_reach_inner_fields() {
        let text = r#"{"h": {"inner": {"v": 7}, "w": "x"}, "after": 1}"#;
        let mut root = Table::default();
        root.entry("h").nested = Some(1);
        root.entry("after").slot = Some(2);
        let mut h = Table::default();
        h.entry("w").slot = Some(0);
        h.entry("inner").nested = Some(2);
        let mut inner = Table::default();
        inner.entry("v").slot = Some(1);
        let tables = vec![root, h, inner];
        let mut slots = vec![Raw::Missing; 3];
        scan_object(text, &tables, 0, &mut slots).unwrap();
        assert_eq!(slots[0].as_str().unwrap(), "x");
        assert_eq!(slots[1], Raw::Num("7"));
        assert_eq!(slots[2], Raw::Num("1"));
    }

    #[test]
    fn escaped_keys_match() {
        let tables = table(&["Name"]);
        let mut slots = vec![Raw::Missing];
        scan_object(r#"{"N\u0061me": "ok"}"#, &tables, 0, &mut slots).unwrap();
        assert_eq!(slots[0].as_str().unwrap(), "ok");
    }

    #[test]
    fn first_duplicate_wins_and_tail_is_skipped() {
        let tables = table(&["a"]);
        let mut slots = vec![Raw::Missing];
        scan_object(r#"{"a": 1, "a": 2, "b": [}"#, &tables, 0, &mut slots).unwrap_err();
        scan_object(r#"{"a": 1, "a": 2, "b": [3]}"#, &tables, 0, &mut slots).unwrap();
        assert_eq!(slots[0], Raw::Num("1"));
    }

    #[test]
    fn broken_records_are_errors() {
        let tables = table(&["a"]);
        for bad in [
            "",
            "[1]",
            r#"{"a": 1"#,
            r#"{"a" 1}"#,
            r#"{"a": tru}"#,
            r#"{"a": "x}"#,
            r#"{"b": {"c": 1}"#,
            r#"{"a": 1} x"#,
            r#"{"b": 1,}"#,
        ] {
            let mut slots = vec![Raw::Missing];
            assert!(
                scan_object(bad, &tables, 0, &mut slots).is_err(),
                "accepted {bad:?}"
            );
        }
    }

    #[test]
    fn long_strings_end_at_the_right_quote() {
        // Quotes and escapes at every offset around the 8-byte chunks.
        for len in 0..40 {
            for esc in [None, Some(0), Some(7), Some(8), Some(15)] {
                let mut body: String = "abcdefghijklmnopqrstuvwxyz0123456789ABCD"[..len].to_owned();
                if let Some(at) = esc.filter(|&at| at <= body.len()) {
                    body.insert_str(at, "\\\"");
                }
                let text = format!(r#"{{"k": "{body}", "after": "é{body}", "n": 1}}"#);
                let tables = table(&["k", "n"]);
                let mut slots = vec![Raw::Missing; 2];
                scan_object(&text, &tables, 0, &mut slots).unwrap();
                assert_eq!(
                    slots[0],
                    Raw::Str {
                        raw: &body,
                        escaped: body.contains('\\')
                    },
                    "{text}"
                );
                assert_eq!(slots[1], Raw::Num("1"), "{text}");
            }
        }
    }

    #[test]
    fn keys_longer_than_eight_bytes_match_exactly() {
        let tables = table(&["InvoiceAmount", "InvoiceNumber", "Invoice"]);
        let mut slots = vec![Raw::Missing; 3];
        scan_object(
            r#"{"InvoiceAmountX": 0, "InvoiceAmoun": 0, "InvoiceNumber": 2, "InvoiceAmount": 1, "Invoice": 3}"#,
            &tables,
            0,
            &mut slots,
        )
        .unwrap();
        assert_eq!(slots, vec![Raw::Num("1"), Raw::Num("2"), Raw::Num("3")]);
    }

    #[test]
    fn unescapes_all_forms() {
        assert_eq!(
            unescape(r#"a\n\t\"\\\/\u00e9\ud83d\ude00"#).unwrap(),
            "a\n\t\"\\/é😀"
        );
        assert!(unescape(r"\x").is_none());
        assert!(unescape(r"\ud83d").is_none());
        assert!(unescape(r"\u12").is_none());
    }

    #[test]
    fn arrays_and_members() {
        let items = array_elements(r#" [ {"a":1}, "s", 2 ] "#).unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0], Raw::Object(r#"{"a":1}"#));
        assert_eq!(array_elements("[]").unwrap().len(), 0);
        let members = object_members(r#"{"k1": {"D": "x"}, "k\"2": 3}"#).unwrap();
        assert_eq!(members[0].0, "k1");
        assert_eq!(members[1].0, "k\"2");
        assert_eq!(members[1].1, Raw::Num("3"));
        assert_eq!(field(r#"{"D": "x", "E": 1}"#, "E").unwrap(), Raw::Num("1"));
    }
}
