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
//! strings) but not for full JSON grammar: the host parsed the record with
//! `serde_json` and refused it if it repeats a member name
//! (`host/plugin/src/runtime.rs`, `records_of`), and a mapping only vouches
//! for the fields it reads.
//!
//! What the scanner does read it reads as `serde_json` does; the property
//! tests in `tests/json_props.rs` hold it to that:
//! - A wanted string holds no raw control character and no backslash
//!   before anything but an escape letter; its escapes are decoded on use
//!   ([`Raw::as_str`]; a `\u` escape that does not decode, such as a lone
//!   surrogate, is a reject of the record, never a value).
//! - A wanted number follows the JSON grammar (no `01`, `1.`, `-`, `1e`)
//!   and fits an `f64` as `serde_json` requires (`1e400` is refused); its
//!   text is kept, so decimals stay exact.
//! - A wanted member named twice in what is read is an error: `serde_json`
//!   keeps the last, the scan may have stopped before it. [`scan_object`]
//!   reads every member name of the objects it scans, so it sees every
//!   repeat of a wanted name; [`scan_record`] stops once it has every
//!   wanted member and relies on the host's check past that point.
//! - Nesting has no limit here: skipping counts brackets without
//!   recursion, and the scanner descends only as deep as the script's
//!   field paths (at most [`crate::script::MAX_PATH_DEPTH`] segments).

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
///
/// Keys are found through a small open-addressed hash table keyed by the
/// key's length and first eight bytes; a hit is then confirmed by comparing
/// the whole key, so keys sharing a prefix never mix.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Wanted keys, in the order they were added.
    pub entries: Vec<Entry>,
    /// Length and first sixteen bytes of each entry's key, for matching
    /// without a byte-wise comparison.
    index: Vec<KeyWords>,
    /// Entry position + 1 per bucket (0: empty); a power of two long, at
    /// least four times the number of entries, so a key that is not wanted
    /// (most keys of a record) usually ends at its first bucket.
    buckets: Vec<u32>,
    /// `64 - log2(buckets.len())`: the hash's top bits pick the bucket.
    shift: u32,
    /// Whether some key holds a control character (which a record may
    /// write escaped, never raw).
    control_keys: bool,
}

/// A key's length and first two words (zero-padded): the whole key when it
/// has at most sixteen bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct KeyWords {
    len: usize,
    head: u64,
    second: u64,
}

impl KeyWords {
    /// The words of the `len`-byte key at `bytes[start..]`.
    #[inline(always)]
    fn at(bytes: &[u8], start: usize, len: usize) -> Self {
        Self {
            len,
            head: word_at(bytes, start, len),
            second: 0,
        }
    }

    /// Fills in `second` (left out until a key's head matches).
    #[inline(always)]
    fn with_second(self, bytes: &[u8], start: usize) -> Self {
        Self {
            second: if self.len > 8 {
                word_at(bytes, start + 8, self.len - 8)
            } else {
                0
            },
            ..self
        }
    }
}

/// Fibonacci hashing multiplier (2^64 / golden ratio, odd).
const HASH_MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

impl Table {
    /// The entry for `key`, created when absent.
    pub fn entry(&mut self, key: &str) -> &mut Entry {
        let index = match self.find(key.as_bytes()) {
            Some(index) => index,
            None => {
                self.entries.push(Entry {
                    key: key.into(),
                    slot: None,
                    nested: None,
                });
                let bytes = key.as_bytes();
                self.control_keys |= bytes.iter().any(|&b| b < 0x20);
                self.index
                    .push(KeyWords::at(bytes, 0, bytes.len()).with_second(bytes, 0));
                if self.index.len() * 4 > self.buckets.len() {
                    self.rehash();
                } else {
                    self.place(self.index.len() - 1);
                }
                self.entries.len() - 1
            }
        };
        &mut self.entries[index]
    }

    /// Rebuilds the buckets, sized for the entries there are now.
    fn rehash(&mut self) {
        let size = (self.index.len() * 4).next_power_of_two().max(16);
        self.buckets.clear();
        self.buckets.resize(size, 0);
        self.shift = 64 - size.trailing_zeros();
        for position in 0..self.index.len() {
            self.place(position);
        }
    }

    /// Puts entry `position` into the first free bucket of its chain.
    fn place(&mut self, position: usize) {
        let Some(&KeyWords { len, head, .. }) = self.index.get(position) else {
            return;
        };
        let mask = self.buckets.len().wrapping_sub(1);
        let mut b = bucket(len, head, self.shift);
        while self.buckets.get(b).is_some_and(|&taken| taken != 0) {
            b = (b + 1) & mask;
        }
        if let Some(free) = self.buckets.get_mut(b) {
            // Tables hold a script's keys, far fewer than u32::MAX.
            *free = u32::try_from(position + 1).unwrap_or(u32::MAX);
        }
    }

    /// The position of `key` among the entries.
    #[inline]
    fn find(&self, key: &[u8]) -> Option<usize> {
        self.find_at(key, 0, key.len())
    }

    /// The position of the `len`-byte key at `bytes[start..]` among the
    /// entries. Its words are read straight from `bytes` (past the key when
    /// there is room, masked to the key).
    #[inline(always)]
    fn find_at(&self, bytes: &[u8], start: usize, len: usize) -> Option<usize> {
        let key = KeyWords::at(bytes, start, len);
        let mask = self.buckets.len().wrapping_sub(1);
        let mut b = bucket(len, key.head, self.shift);
        loop {
            let position = (*self.buckets.get(b)? as usize).checked_sub(1)?;
            if let Some(&wanted) = self.index.get(position)
                && wanted.len == len
                && wanted.head == key.head
                && wanted == key.with_second(bytes, start)
                && (len <= 16
                    || self
                        .entries
                        .get(position)
                        .and_then(|e| e.key.as_bytes().get(16..))
                        == bytes.get(start + 16..start + len))
            {
                return Some(position);
            }
            b = (b + 1) & mask;
        }
    }
}

/// The bucket of a key of `len` bytes starting with `head`, for a table of
/// `2^(64 - shift)` buckets.
#[inline(always)]
fn bucket(len: usize, head: u64, shift: u32) -> usize {
    (head.wrapping_add(len as u64).wrapping_mul(HASH_MULTIPLIER) >> shift) as usize
}

/// Scans `text` (a JSON object) with `tables[table]`, storing wanted values
/// into `slots`. Every member name of the objects scanned is read: a
/// wanted name written twice is an error (`serde_json` would keep the
/// last); values not wanted are skipped by bracket counting.
pub fn scan_object<'a>(
    text: &'a str,
    tables: &[Table],
    table: usize,
    slots: &mut [Raw<'a>],
) -> Result<(), JsonError> {
    scan(text, tables, table, slots, false)
}

/// [`scan_object`] for a record the host has already parsed as JSON (each
/// record of a batch, each element of an expanded child collection): the
/// scan ends as soon as every wanted key has been read, so the tail of the
/// record (audit columns, `links`) is not read at all. What is read is
/// still checked (a wanted name repeated before the scan ends is an
/// error); a record that ends before every wanted key was seen is still
/// checked to its end.
pub fn scan_record<'a>(
    text: &'a str,
    tables: &[Table],
    table: usize,
    slots: &mut [Raw<'a>],
) -> Result<(), JsonError> {
    scan(text, tables, table, slots, true)
}

/// Scans one object; with `stop_when_found`, a scan that has every wanted
/// key ends there, unchecked past that point.
fn scan<'a>(
    text: &'a str,
    tables: &[Table],
    table: usize,
    slots: &mut [Raw<'a>],
    stop_when_found: bool,
) -> Result<(), JsonError> {
    let mut scanner = Scanner {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    scanner.ws();
    if scanner.object(tables, table, slots, stop_when_found)? {
        return Ok(());
    }
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

/// From just after an opening quote: the index of the closing quote and
/// whether an escape was seen; `None` when the string does not end.
#[inline(always)]
fn string_end(bytes: &[u8], start: usize) -> Option<(usize, bool)> {
    let mut i = start;
    let mut escaped = false;
    loop {
        i = string_run_end(bytes, i, false);
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

/// [`string_end`] for a string whose value is used: a raw control
/// character (below U+0020) is an error, and so is a backslash before
/// anything but a JSON escape letter, as in `serde_json` (whether a `\u`
/// escape decodes is seen when the value is used).
#[inline(always)]
fn string_end_checked(bytes: &[u8], start: usize) -> Result<(usize, bool), JsonError> {
    let mut i = start;
    let mut escaped = false;
    loop {
        i = string_run_end(bytes, i, true);
        match bytes.get(i) {
            Some(b'"') => return Ok((i, escaped)),
            Some(b'\\') => {
                escaped = true;
                if !matches!(
                    bytes.get(i + 1),
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' | b'u')
                ) {
                    return Err(JsonError {
                        at: i,
                        what: "bad escape",
                    });
                }
                i += 2;
            }
            Some(_) => {
                return Err(JsonError {
                    at: i,
                    what: "control character in string",
                });
            }
            None => {
                return Err(JsonError {
                    at: start,
                    what: "unterminated string",
                });
            }
        }
    }
}

/// The end of the number at `bytes[start..]` whose value is used: it
/// must follow the JSON grammar and be finite as an `f64`, as in
/// `serde_json`.
#[inline(always)]
fn number_end_checked(bytes: &[u8], start: usize) -> Result<usize, JsonError> {
    let end = skip_number(bytes, start);
    match bytes.get(start..end) {
        Some(number) if json_number(number) => Ok(end),
        _ => Err(bad_number(bytes, start, end)),
    }
}

/// Why the characters of a number at `bytes[start..end]` are not one.
#[cold]
#[inline(never)]
fn bad_number(bytes: &[u8], start: usize, end: usize) -> JsonError {
    let grammar = bytes.get(start..end).is_some_and(json_grammar);
    JsonError {
        at: start,
        what: if grammar {
            "number out of range (beyond f64)"
        } else {
            "bad number"
        },
    }
}

/// Whether `number` is a JSON number `serde_json` reads: the grammar, and
/// finite as an `f64`. Only an exponent or more than 308 integer digits
/// can pass `f64::MAX`; those are parsed to see.
#[inline(always)]
fn json_number(number: &[u8]) -> bool {
    // The common case (an id or an amount): digits and at most one point.
    let simple = number.len() <= 308
        && number
            .iter()
            .all(|&b| b.is_ascii_digit() || b == b'.' || b == b'-');
    if simple {
        return json_grammar(number);
    }
    json_grammar(number) && fits_f64(number)
}

/// Whether the text is finite as an `f64`.
#[cold]
#[inline(never)]
fn fits_f64(number: &[u8]) -> bool {
    std::str::from_utf8(number)
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
        .is_some_and(f64::is_finite)
}

/// Whether `number` follows the JSON number grammar:
/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn json_grammar(number: &[u8]) -> bool {
    let mut i = usize::from(number.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while number.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    match number.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if number.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if let Some(b'e' | b'E') = number.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = number.get(i) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == number.len()
}

/// Loads eight bytes as a little-endian word.
#[inline(always)]
fn word(chunk: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(chunk);
    u64::from_le_bytes(buf)
}

/// The first eight bytes of the `len` bytes at `bytes[start..]`,
/// zero-padded: one load when eight bytes are available there.
#[inline(always)]
fn word_at(bytes: &[u8], start: usize, len: usize) -> u64 {
    match bytes.get(start..start + 8) {
        Some(chunk) if len >= 8 => word(chunk),
        Some(chunk) => word(chunk) & ((1u64 << (len * 8)) - 1),
        None => {
            let mut buf = [0u8; 8];
            let n = len.min(8);
            if let (Some(to), Some(from)) = (buf.get_mut(..n), bytes.get(start..start + n)) {
                to.copy_from_slice(from);
            }
            u64::from_le_bytes(buf)
        }
    }
}

/// Which entries of a table an object has shown so far.
struct Seen {
    /// The bits of a table of up to 64 entries (the common case: no
    /// allocation).
    small: u64,
    /// The bits of a larger table, 64 entries a word; empty otherwise.
    large: Vec<u64>,
}

impl Seen {
    fn new(entries: usize) -> Self {
        Self {
            small: 0,
            large: if entries > 64 {
                vec![0; entries.div_ceil(64)]
            } else {
                Vec::new()
            },
        }
    }

    /// Marks entry `index` as seen; whether it was not seen before.
    #[inline(always)]
    fn insert(&mut self, index: usize) -> bool {
        let (word, bit) = if self.large.is_empty() {
            (&mut self.small, index)
        } else {
            match self.large.get_mut(index / 64) {
                Some(word) => (word, index % 64),
                None => return true,
            }
        };
        let mask = 1u64 << (bit % 64);
        let new = *word & mask == 0;
        *word |= mask;
        new
    }
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
        self.pos = skip_ws(self.bytes, self.pos);
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
        slice(self.text, start, end)
    }

    /// At a `"`: returns the text between the quotes and whether it has
    /// escapes; leaves `pos` after the closing quote.
    #[inline]
    fn string(&mut self) -> Result<(&'a str, bool), JsonError> {
        let (start, end, escaped) = self.string_span()?;
        Ok((self.slice(start, end)?, escaped))
    }

    /// [`Scanner::string`] as byte offsets: (start, end, escaped) of the
    /// text between the quotes; a raw control character is an error.
    #[inline(always)]
    fn string_span(&mut self) -> Result<(usize, usize, bool), JsonError> {
        if self.bytes.get(self.pos) != Some(&b'"') {
            return Err(self.error("expected a string"));
        }
        let start = self.pos + 1;
        let (end, escaped) = string_end_checked(self.bytes, start)?;
        self.pos = end + 1;
        Ok((start, end, escaped))
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
        // Byte by byte outside strings: between strings there are mostly
        // one or two bytes (`:`, `,`), too few for word-at-a-time search.
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

    /// A number whose value is used (checked: [`json_number`]).
    #[inline]
    fn number(&mut self) -> Result<&'a str, JsonError> {
        let start = self.pos;
        self.pos = number_end_checked(self.bytes, start)?;
        self.slice(start, self.pos)
    }

    /// Moves `pos` past the characters a number may hold.
    #[inline(always)]
    fn skip_number(&mut self) {
        self.pos = skip_number(self.bytes, self.pos);
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
    #[inline(always)]
    fn skip_value(&mut self) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'"') => match string_end(self.bytes, self.pos + 1) {
                Some((end, _)) => {
                    self.pos = end + 1;
                    Ok(())
                }
                None => Err(self.error("unterminated string")),
            },
            Some(b'{' | b'[') => self.skip_nested(),
            Some(b't') => self.literal(b"true", "bad literal"),
            Some(b'f') => self.literal(b"false", "bad literal"),
            Some(b'n') => self.literal(b"null", "bad literal"),
            Some(b'-' | b'0'..=b'9') => {
                self.skip_number();
                Ok(())
            }
            _ => Err(self.error("expected a value")),
        }
    }

    /// Scans an object at `pos` with `tables[table]`.
    ///
    /// The position is kept in a local between the calls out (which take
    /// `self`): on wasm32 `self` lives in linear memory, and every access
    /// through it would be a load or store.
    ///
    /// With `stop_when_found`, the scan ends as soon as every wanted key has
    /// been read, leaving `pos` there (the caller knows the object's extent
    /// and that it is well formed); otherwise it goes on to the closing
    /// brace. Returns whether it stopped early.
    fn object(
        &mut self,
        tables: &[Table],
        table: usize,
        slots: &mut [Raw<'a>],
        stop_when_found: bool,
    ) -> Result<bool, JsonError> {
        let Some(wanted) = tables.get(table) else {
            return self.skip_nested().map(|()| false);
        };
        let (text, bytes) = (self.text, self.bytes);
        let mut pos = self.pos;
        if bytes.get(pos) != Some(&b'{') {
            return Err(JsonError {
                at: pos,
                what: "expected an object",
            });
        }
        pos = skip_ws(bytes, pos + 1);
        if bytes.get(pos) == Some(&b'}') {
            self.pos = pos + 1;
            return Ok(false);
        }
        // Seen-bits find a wanted key written twice, and allow stopping
        // once every wanted key is found.
        let total = wanted.entries.len();
        let mut seen = Seen::new(total);
        let mut found = 0usize;
        loop {
            pos = skip_ws(bytes, pos);
            let key_at = pos;
            if bytes.get(pos) != Some(&b'"') {
                return Err(JsonError {
                    at: pos,
                    what: "expected a string",
                });
            }
            let start = pos + 1;
            let Some((end, escaped)) = string_end(bytes, start) else {
                return Err(JsonError {
                    at: start,
                    what: "unterminated string",
                });
            };
            pos = end + 1;
            // Compact JSON has the colon right after the key.
            if bytes.get(pos) != Some(&b':') {
                pos = skip_ws(bytes, pos);
                if bytes.get(pos) != Some(&b':') {
                    return Err(JsonError {
                        at: pos,
                        what: "expected ':' after key",
                    });
                }
            }
            pos = skip_ws(bytes, pos + 1);
            let index = if escaped {
                escaped_key(wanted, text, start, end, key_at)?
            } else {
                let index = wanted.find_at(bytes, start, end - start);
                if wanted.control_keys && index.is_some() {
                    raw_control_key(bytes, start, end)?;
                }
                index
            };
            match index {
                Some(index) if !seen.insert(index) => {
                    return Err(JsonError {
                        at: key_at,
                        what: "member named twice (JSON readers disagree on which counts)",
                    });
                }
                Some(index) => {
                    found += 1;
                    let entry = wanted.entries.get(index);
                    let value_at = pos;
                    // Strings and numbers (most wanted values) are read in
                    // place: the value stays in registers on its way to
                    // the slot.
                    let value = match bytes.get(pos) {
                        Some(b'"') => {
                            let (end, escaped) = string_end_checked(bytes, pos + 1)?;
                            let raw = slice(text, pos + 1, end)?;
                            pos = end + 1;
                            Raw::Str { raw, escaped }
                        }
                        Some(b'-' | b'0'..=b'9') => {
                            pos = number_end_checked(bytes, pos)?;
                            Raw::Num(slice(text, value_at, pos)?)
                        }
                        _ => {
                            self.pos = pos;
                            let value = self.value()?;
                            pos = self.pos;
                            value
                        }
                    };
                    if let Some(slot) = entry.and_then(|e| e.slot)
                        && let Some(place) = slots.get_mut(slot)
                    {
                        *place = value;
                    }
                    if let (Some(nested), Raw::Object(inner)) =
                        (entry.and_then(|e| e.nested), value)
                    {
                        let mut sub = Scanner {
                            text,
                            bytes,
                            pos: value_at,
                        };
                        sub.object(tables, nested, slots, false)?;
                        debug_assert_eq!(sub.pos, value_at + inner.len());
                    }
                }
                // Not wanted.
                None => match bytes.get(pos) {
                    Some(b'"') => match string_end(bytes, pos + 1) {
                        Some((end, _)) => pos = end + 1,
                        None => {
                            return Err(JsonError {
                                at: pos + 1,
                                what: "unterminated string",
                            });
                        }
                    },
                    Some(b'-' | b'0'..=b'9') => pos = skip_number(bytes, pos),
                    _ => {
                        self.pos = pos;
                        self.skip_value()?;
                        pos = self.pos;
                    }
                },
            }
            pos = skip_ws(bytes, pos);
            match bytes.get(pos) {
                Some(b',') => {
                    pos += 1;
                    if stop_when_found && found == total {
                        // Everything wanted is in hand: stop.
                        self.pos = pos;
                        return Ok(true);
                    }
                }
                Some(b'}') => {
                    self.pos = pos + 1;
                    return Ok(false);
                }
                _ => {
                    return Err(JsonError {
                        at: pos,
                        what: "expected ',' or '}' in object",
                    });
                }
            }
        }
    }
}

/// The entry of a key written with escapes (rare: decoded first).
#[cold]
#[inline(never)]
fn escaped_key(
    wanted: &Table,
    text: &str,
    start: usize,
    end: usize,
    key_at: usize,
) -> Result<Option<usize>, JsonError> {
    raw_control_key(text.as_bytes(), start, end)?;
    let raw = slice(text, start, end)?;
    match (Raw::Str { raw, escaped: true }).as_str() {
        Some(key) => Ok(wanted.find(key.as_bytes())),
        None => Err(JsonError {
            at: key_at,
            what: "bad escape in key",
        }),
    }
}

/// A key (at `bytes[start..end]`) that matched, or is decoded to be
/// matched, must hold no raw control character.
#[cold]
#[inline(never)]
fn raw_control_key(bytes: &[u8], start: usize, end: usize) -> Result<(), JsonError> {
    match bytes
        .get(start..end)
        .and_then(|key| key.iter().position(|&b| b < 0x20))
    {
        Some(at) => Err(JsonError {
            at: start + at,
            what: "control character in string",
        }),
        None => Ok(()),
    }
}

/// The index of the first byte at or after `pos` that is not JSON
/// whitespace.
#[inline(always)]
fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = bytes.get(pos) {
        pos += 1;
    }
    pos
}

/// The index of the first byte at or after `pos` that a number cannot
/// hold, eight bytes at a time (ids and amounts have up to 20 characters).
#[inline(always)]
fn skip_number(bytes: &[u8], mut pos: usize) -> usize {
    while let Some(chunk) = bytes.get(pos..pos + 8) {
        let stop = !number_bytes(word(chunk)) & HIGHS;
        if stop != 0 {
            return pos + (stop.trailing_zeros() / 8) as usize;
        }
        pos += 8;
    }
    while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = bytes.get(pos) {
        pos += 1;
    }
    pos
}

/// High bit set in exactly the bytes of `word` that equal `byte` (unlike
/// [`bytes_equal`], no false hits above a true one).
#[inline(always)]
fn bytes_equal_exact(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    !(((x & !HIGHS) + !HIGHS) | x) & HIGHS
}

/// High bit set in exactly the bytes of `word` a number may hold:
/// `0`-`9`, `-`, `+`, `.`, `e`, `E`.
#[inline(always)]
fn number_bytes(word: u64) -> u64 {
    // Digits by range on the low seven bits (no carry between bytes),
    // then bytes with the high bit set are dropped.
    let low = word & !HIGHS;
    let from_zero = (low + ONES * u64::from(0x80 - b'0')) & HIGHS;
    let past_nine = (low + ONES * u64::from(0x80 - b'9' - 1)) & HIGHS;
    let digits = from_zero & !past_nine & !word;
    digits
        | bytes_equal_exact(word, b'-')
        | bytes_equal_exact(word, b'+')
        | bytes_equal_exact(word, b'.')
        | bytes_equal_exact(word, b'e')
        | bytes_equal_exact(word, b'E')
}

/// A slice of the input between two byte offsets that lie on ASCII
/// delimiters (so always on character boundaries).
#[inline(always)]
fn slice(text: &str, start: usize, end: usize) -> Result<&str, JsonError> {
    // Two splits rather than `get(start..end)`, which the wasm32 build
    // leaves as a call.
    text.split_at_checked(end)
        .and_then(|(head, _)| head.split_at_checked(start))
        .map(|(_, middle)| middle)
        .ok_or(JsonError {
            at: start,
            what: "not on a character boundary",
        })
}

use mlc_common::json_text::string_run_end;
pub use mlc_common::json_text::unescape;

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
    fn a_wanted_member_named_twice_is_an_error() {
        // Bug: the first of a repeated member won, while serde_json keeps
        // the last; now a repeat of a wanted name that the scan reads is
        // an error, wherever it is in a fully scanned object.
        let tables = table(&["a"]);
        let mut slots = vec![Raw::Missing];
        for text in [
            r#"{"a": 1, "a": 2, "b": [3]}"#,
            r#"{"a": 1, "b": [3], "c": {"x": 1}, "a": 2}"#,
            r#"{"a": "x", "\u0061": "y"}"#,
        ] {
            let e = scan_object(text, &tables, 0, &mut slots).unwrap_err();
            assert!(e.what.starts_with("member named twice"), "{text}: {e}");
        }
        // Members not wanted may repeat (their values are not read), and
        // the tail is still checked after the last wanted member.
        scan_object(r#"{"b": 1, "a": 1, "b": 2}"#, &tables, 0, &mut slots).unwrap();
        assert_eq!(slots[0], Raw::Num("1"));
        scan_object(r#"{"a": 1, "b": 2, "b": [}"#, &tables, 0, &mut slots).unwrap_err();
        // scan_record stops once it has every wanted member: a repeat it
        // reads is an error, one past its stop is the host's to refuse.
        scan_record(r#"{"a": 1, "a": 2}"#, &tables, 0, &mut slots).unwrap();
        let two = table(&["a", "b"]);
        let mut slots = vec![Raw::Missing; 2];
        scan_record(r#"{"a": 1, "a": 2, "b": 3}"#, &two, 0, &mut slots).unwrap_err();
    }

    #[test]
    fn wanted_strings_with_raw_control_characters_are_errors() {
        // Bug: a raw tab or NUL inside a wanted string was returned as
        // text; serde_json refuses the record.
        let tables = table(&["a"]);
        for text in [
            "{\"a\": \"x\ty\"}",
            "{\"a\": \"\u{0}\"}",
            "{\"a\": [\"\n\"]}",
        ] {
            let mut slots = vec![Raw::Missing];
            let e = scan_object(text, &tables, 0, &mut slots);
            // A wanted array is kept as text; its elements are checked
            // when they are read.
            match e {
                Err(e) => assert_eq!(e.what, "control character in string", "{text:?}"),
                Ok(()) => {
                    let Raw::Array(items) = slots[0] else {
                        panic!("{text:?} gave {:?}", slots[0]);
                    };
                    assert_eq!(
                        array_elements(items).unwrap_err().what,
                        "control character in string"
                    );
                }
            }
        }
        // Nor after a backslash, where only an escape letter may stand.
        // Bug: `\<NUL>` passed (a backslash skipped the next byte unseen).
        for text in ["{\"a\": \"x\\\u{0}y\"}", "{\"a\": \"\\\u{1f}\"}"] {
            let mut slots = vec![Raw::Missing];
            let e = scan_object(text, &tables, 0, &mut slots).unwrap_err();
            assert_eq!(e.what, "bad escape", "{text:?}");
        }
        for text in [r#"{"a": "\x41"}"#, r#"{"a": "\é"}"#, r#"{"a": "\ "}"#] {
            let mut slots = vec![Raw::Missing];
            let e = scan_object(text, &tables, 0, &mut slots).unwrap_err();
            assert_eq!(e.what, "bad escape", "{text:?}");
            assert!(serde_json::from_str::<serde_json::Value>(text).is_err());
        }
        // Escaped, they are fine; unwanted raw ones are the host's to refuse.
        let mut slots = vec![Raw::Missing];
        scan_object(r#"{"a": "x\ty\u0000"}"#, &tables, 0, &mut slots).unwrap();
        assert_eq!(slots[0].as_str().unwrap(), "x\ty\u{0}");
        scan_object("{\"b\": \"x\ty\", \"a\": 1}", &tables, 0, &mut slots).unwrap();
        // A wanted key with a control character matches only its escape.
        let tables = table(&["k\u{1}"]);
        scan_object(r#"{"k\u0001": 1}"#, &tables, 0, &mut slots).unwrap();
        assert_eq!(slots[0], Raw::Num("1"));
        scan_object("{\"k\u{1}\": 1}", &tables, 0, &mut slots).unwrap_err();
    }

    #[test]
    fn wanted_numbers_follow_the_json_grammar_and_fit_f64() {
        // Bug: any run of digits, signs, points and exponent letters was a
        // number (`01` read as 1, `1-2` kept as text); serde_json refuses
        // them, and `1e400` (beyond f64).
        let tables = table(&["a"]);
        for bad in [
            "01", "-", "1.", "1e", "1e+", "--1", "1-2", "1.2.3", "1e5e5", "-01", "00", "1E+-1",
        ] {
            let text = format!(r#"{{"a": {bad}}}"#);
            let mut slots = vec![Raw::Missing];
            let e = scan_object(&text, &tables, 0, &mut slots).unwrap_err();
            assert_eq!(e.what, "bad number", "{bad}");
            assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());
        }
        let long = "9".repeat(400);
        for far in ["1e400", "-2E+308", long.as_str()] {
            let text = format!(r#"{{"a": {far}}}"#);
            let mut slots = vec![Raw::Missing];
            let e = scan_object(&text, &tables, 0, &mut slots).unwrap_err();
            assert_eq!(e.what, "number out of range (beyond f64)", "{far}");
            assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());
        }
        for good in [
            "0",
            "-0",
            "0.5",
            "-1.25E+3",
            "1e-400",
            "12345678901234567890.5",
            "0e99999",
        ] {
            let text = format!(r#"{{"a": {good}}}"#);
            let mut slots = vec![Raw::Missing];
            scan_object(&text, &tables, 0, &mut slots).unwrap();
            assert_eq!(slots[0], Raw::Num(good));
            assert_eq!(
                array_elements(&format!("[{good}]")).unwrap(),
                vec![Raw::Num(good)]
            );
        }
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
    fn hashed_lookup_finds_exactly_the_wanted_keys() {
        // Many keys (the table grows and rehashes, buckets collide), keys of
        // one length sharing their first eight bytes, short keys, and keys
        // that differ only past byte eight.
        let mut keys: Vec<String> = (0..150).map(|i| format!("Attribute{i}")).collect();
        keys.extend(
            ["a", "ab", "abcdefgh", "abcdefghi", "abcdefghj", "abcdefgi"].map(String::from),
        );
        keys.extend((0..30).map(|i| format!("SharedPrefix_{i:02}")));
        keys.extend(
            [
                "SixteenBytesKey!",
                "SixteenBytesKey?",
                "SixteenBytesKey!!",
                "SixteenBytesKey!?",
                "SixteenBytesKey!!Twenty",
                "SixteenBytesKey!!Twentz",
            ]
            .map(String::from),
        );
        let mut table = Table::default();
        for (i, k) in keys.iter().enumerate() {
            table.entry(k).slot = Some(i);
        }
        assert_eq!(table.entries.len(), keys.len());
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(table.find(k.as_bytes()), Some(i), "{k}");
            // entry() on an existing key gives that entry back.
            assert_eq!(table.entry(k).slot, Some(i), "{k}");
        }
        assert_eq!(table.entries.len(), keys.len());
        for absent in [
            "",
            "A",
            "b",
            "abc",
            "abcdefg",
            "abcdefghk",
            "abcdefgh\0",
            "Attribute150",
            "Attribute1x",
            "SharedPrefix_30",
            "SharedPrefix_0",
            "SharedPrefix_000",
            "SixteenBytesKey",
            "SixteenBytesKey.",
            "SixteenBytesKey!.",
            "SixteenBytesKey!!Twent",
            "SixteenBytesKey!!Twenty!",
            "SixteenBytesKey!!Twentx",
        ] {
            assert_eq!(table.find(absent.as_bytes()), None, "{absent:?}");
        }
        assert_eq!(Table::default().find(b"a"), None);
    }

    #[test]
    fn keys_are_matched_whatever_their_position_in_the_text() {
        // The key's first word is read straight from the record: keys close
        // to the end of the text (fewer than eight bytes left) and keys
        // followed by look-alike bytes must match exactly.
        let tables = table(&["k", "key", "keykeykey", "x", "a_key_over_sixteen_bytes"]);
        for text in [
            r#"{"k":1}"#,
            r#"{"x":0,"k":1}"#,
            r#"{"kk":0,"keykeykeyk":0,"keykeykey":9,"k":1}"#,
            r#"{"key":2,"k":1}"#,
            r#"{"ke":0,"k":1,"key":2}"#,
            r#"{"a_key_over_sixteen_byteZ":0,"k":1,"a_key_over_sixteen_bytes":2}"#,
            r#"{"k":1,"a_key_over_sixteen_bytes":2}"#,
        ] {
            let mut slots = vec![Raw::Missing; 5];
            scan_object(text, &tables, 0, &mut slots).unwrap();
            assert_eq!(slots[0], Raw::Num("1"), "{text}");
            if text.contains("bytes\"") {
                assert_eq!(slots[4], Raw::Num("2"), "{text}");
            }
        }
    }

    #[test]
    fn records_stop_reading_once_every_wanted_key_is_in_hand() {
        let tables = table(&["Id", "Name"]);
        let mut slots = vec![Raw::Missing; 2];
        // The tail after the last wanted key is not read (the host parsed
        // the record already): even a broken tail does not matter.
        let text = r#"{"Id": 7, "Skip": [1, {"a": "]"}], "Name": "n", "links": [{"x": }"#;
        scan_record(text, &tables, 0, &mut slots).unwrap();
        assert_eq!(slots[0], Raw::Num("7"));
        assert!(matches!(slots[1], Raw::Str { raw: "n", .. }));
        // scan_object still reads to the end and checks it.
        scan_object(text, &tables, 0, &mut slots).unwrap_err();
        // A record missing a wanted key is read, and checked, to its end.
        let mut slots = vec![Raw::Missing; 2];
        scan_record(r#"{"Id": 7, "x": [1, 2]}"#, &tables, 0, &mut slots).unwrap();
        assert_eq!(slots, vec![Raw::Num("7"), Raw::Missing]);
        scan_record(r#"{"Id": 7, "x": [1, 2}"#, &tables, 0, &mut slots).unwrap_err();
        scan_record(r#"{"Id": 7} trailing"#, &tables, 0, &mut slots).unwrap_err();
        // What is read before the last wanted key is still checked.
        scan_record(r#"{"Id": 7 "Name": "n", "z": 1}"#, &tables, 0, &mut slots).unwrap_err();
    }

    #[test]
    fn escaped_and_duplicated_keys_with_hashing() {
        // An escaped spelling of a wanted key counts as that key, so with
        // the plain spelling it repeats the member.
        let tables = table(&["InvoiceAmount", "Id"]);
        let mut slots = vec![Raw::Missing; 2];
        let text = r#"{"Invoice\u0041mount": 1, "I\u0064": 3}"#;
        scan_object(text, &tables, 0, &mut slots).unwrap();
        assert_eq!(slots, vec![Raw::Num("1"), Raw::Num("3")]);
        let text = r#"{"InvoiceAmount": 2, "Invoice\u0041mount": 1, "Id": 4}"#;
        scan_object(text, &tables, 0, &mut slots).unwrap_err();
        // More than 64 wanted keys: the seen-bits are a vector, and still
        // find the repeat.
        let keys: Vec<String> = (0..70).map(|i| format!("k{i}")).collect();
        let names: Vec<&str> = keys.iter().map(String::as_str).collect();
        let tables = table(&names);
        let mut slots = vec![Raw::Missing; 70];
        scan_object(r#"{"k69": 1, "k0": 3}"#, &tables, 0, &mut slots).unwrap();
        assert_eq!((slots[69], slots[0]), (Raw::Num("1"), Raw::Num("3")));
        scan_object(r#"{"k69": 1, "k69": 2, "k0": 3}"#, &tables, 0, &mut slots).unwrap_err();
    }

    #[test]
    fn skipped_values_are_bracket_counted_at_every_offset() {
        // Brackets, quotes and escapes at every position around the 8-byte
        // words of the string search, inside and outside strings.
        let pieces = [
            r#"[]"#,
            r#"{}"#,
            r#"[1,[2,[3]],{"a":{"b":[]}}]"#,
            r#"{"s":"]}[{","t":"\"]","u":"\\"}"#,
            r#"["é{","ü]",1234567890,-1.5e3,true,null]"#,
        ];
        for pad in 0..17 {
            for piece in pieces {
                let filler = "x".repeat(pad);
                let text = format!(
                    r#"{{"{filler}":{piece},"skip":[{piece},"{filler}",{piece}],"want":"{filler}","tail":{{"z":{piece}}}}}"#
                );
                let tables = table(&["want"]);
                let mut slots = vec![Raw::Missing];
                scan_object(&text, &tables, 0, &mut slots).unwrap();
                assert_eq!(
                    slots[0],
                    Raw::Str {
                        raw: &filler,
                        escaped: false
                    },
                    "{text}"
                );
                let tables = table(&["skip"]);
                scan_object(&text, &tables, 0, &mut slots).unwrap();
                assert_eq!(
                    slots[0],
                    Raw::Array(&format!(r#"[{piece},"{filler}",{piece}]"#)),
                    "{text}"
                );
                // A missing closing bracket is found wherever it falls.
                let broken = &text[..text.len() - 2];
                let tables = table(&["want"]);
                assert!(
                    scan_object(&format!("{broken}}}"), &tables, 0, &mut slots).is_err(),
                    "accepted {broken}}}"
                );
            }
        }
    }

    #[test]
    fn numbers_end_at_the_first_byte_they_cannot_hold() {
        // Every byte value right after a number, at every offset of the
        // 8-byte words (and near the end of the text, where bytes are read
        // one at a time), against the byte-wise definition.
        let member = |b: u8| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E');
        let body = b"12345678901234567-8.9e+1E";
        for len in 0..body.len() {
            for stop in 0..=255u8 {
                for tail in [&b""[..], b"xxxxxxxxxxxxxxxx"] {
                    let mut bytes = body[..len].to_vec();
                    bytes.push(stop);
                    bytes.extend_from_slice(tail);
                    let expected = bytes
                        .iter()
                        .position(|&b| !member(b))
                        .unwrap_or(bytes.len());
                    assert_eq!(skip_number(&bytes, 0), expected, "{bytes:?}");
                    let mut padded = b"ab".to_vec();
                    padded.extend_from_slice(&bytes);
                    assert_eq!(skip_number(&padded, 2), expected + 2, "{padded:?}");
                }
            }
        }
        assert_eq!(skip_number(b"", 0), 0);
        assert_eq!(skip_number(b"1", 0), 1);
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
