//! Field values and records as the sandbox holds them, and their JSON text.
//!
//! Records are built on demand from `(seed, index)` and written straight to
//! JSON text. Amounts are exact decimals (`unscaled × 10^-scale`) written
//! digit by digit, so `1250.00` reaches the wire as `1250.00` and never
//! passes through `f64`.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::io::Write as _;

use mlc_common::time::civil_from_days;

/// The declared type of an attribute (as `describe` reports it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    /// Text.
    Str,
    /// A whole number (ids, line numbers).
    Int,
    /// An exact decimal amount.
    Num,
    /// A calendar date `YYYY-MM-DD`.
    Date,
    /// A timestamp with offset.
    Ts,
    /// A JSON boolean flag.
    Bool,
}

impl Ty {
    /// The type name `describe` prints.
    pub(crate) fn describe_name(self) -> &'static str {
        match self {
            Ty::Str => "string",
            Ty::Int => "integer",
            Ty::Num => "number",
            Ty::Date => "date",
            Ty::Ts => "datetime",
            Ty::Bool => "boolean",
        }
    }
}

/// One value of one attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum V {
    /// JSON `null`.
    Null,
    /// Text (constants borrowed, generated text owned).
    Str(Cow<'static, str>),
    /// A whole number.
    Int(i64),
    /// An exact decimal: unscaled digits and the number of fraction digits.
    Dec(i64, u8),
    /// A boolean flag.
    Bool(bool),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since the epoch (UTC); `bool` = render milliseconds.
    Ts(i64, bool),
}

/// A record: attribute names in `describe` order with their values.
pub(crate) type Rec = Vec<(&'static str, V)>;

/// The value of `field` in `rec`.
pub(crate) fn get<'a>(rec: &'a Rec, field: &str) -> Option<&'a V> {
    rec.iter().find(|(n, _)| *n == field).map(|(_, v)| v)
}

impl V {
    /// Text of a string value.
    pub(crate) fn str(s: impl Into<Cow<'static, str>>) -> V {
        V::Str(s.into())
    }

    /// An amount from cents.
    pub(crate) fn cents(c: i64) -> V {
        V::Dec(c, 2)
    }

    /// Compares two values of compatible types; `None` when they cannot be
    /// compared (different kinds, or a null).
    pub(crate) fn compare(&self, other: &V) -> Option<Ordering> {
        match (self, other) {
            (V::Str(a), V::Str(b)) => Some(a.cmp(b)),
            (V::Int(a), V::Int(b)) => Some(a.cmp(b)),
            (V::Int(a), V::Dec(u, s)) => Some(cmp_dec(i128::from(*a), 0, i128::from(*u), *s)),
            (V::Dec(u, s), V::Int(b)) => Some(cmp_dec(i128::from(*u), *s, i128::from(*b), 0)),
            (V::Dec(a, sa), V::Dec(b, sb)) => {
                Some(cmp_dec(i128::from(*a), *sa, i128::from(*b), *sb))
            }
            (V::Bool(a), V::Bool(b)) => Some(a.cmp(b)),
            (V::Date(a), V::Date(b)) => Some(a.cmp(b)),
            (V::Ts(a, _), V::Ts(b, _)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    /// Total order used by `orderBy`: nulls last, then by value.
    pub(crate) fn order(&self, other: &V) -> Ordering {
        match (self, other) {
            (V::Null, V::Null) => Ordering::Equal,
            (V::Null, _) => Ordering::Greater,
            (_, V::Null) => Ordering::Less,
            _ => self.compare(other).unwrap_or(Ordering::Equal),
        }
    }

    /// The value as text (for `like` and `upper`).
    pub(crate) fn text(&self) -> Option<String> {
        match self {
            V::Null => None,
            V::Str(s) => Some(s.to_string()),
            other => {
                let mut out = Out::new();
                write_plain(&mut out, other);
                Some(into_text(out))
            }
        }
    }
}

fn cmp_dec(a: i128, sa: u8, b: i128, sb: u8) -> Ordering {
    let scale = sa.max(sb);
    let fa = mlc_common::decimal::pow10(scale - sa).unwrap_or(1);
    let fb = mlc_common::decimal::pow10(scale - sb).unwrap_or(1);
    a.saturating_mul(fa).cmp(&b.saturating_mul(fb))
}

/// Bytes of JSON text being written. Every writer appends valid UTF-8,
/// so the bytes go out as a response body without a check.
pub(crate) type Out = Vec<u8>;

/// Writes a value as JSON.
pub(crate) fn write_json(out: &mut Out, v: &V) {
    match v {
        V::Null => out.extend_from_slice(b"null"),
        V::Str(s) => write_str(out, s),
        V::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        V::Int(_) | V::Dec(..) => write_plain(out, v),
        V::Date(d) => match quoted_date(*d) {
            Some((text, len)) => push_fixed(out, &text, len),
            None => write_quoted(out, v),
        },
        V::Ts(t, millis) => match quoted_ts(*t, *millis) {
            Some((text, len)) => push_fixed(out, &text, len),
            None => write_quoted(out, v),
        },
    }
}

/// Writes a value in double quotes, the slow way (dates and timestamps
/// outside the years 0 to 9999).
fn write_quoted(out: &mut Out, v: &V) {
    out.push(b'"');
    write_plain(out, v);
    out.push(b'"');
}

/// Writes a value without JSON quoting.
fn write_plain(out: &mut Out, v: &V) {
    match v {
        V::Null => {}
        V::Str(s) => out.extend_from_slice(s.as_bytes()),
        V::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        V::Int(i) => write_int(out, *i),
        V::Dec(u, s) => write_decimal(out, *u, *s),
        V::Date(d) => write_date(out, *d),
        V::Ts(t, millis) => write_ts(out, *t, *millis),
    }
}

/// The two ASCII digits of every number below 100, `00` to `99`.
const PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// The decimal digits of `n`, right-aligned in `buf`; returns where they
/// start.
fn digits(buf: &mut [u8; 20], mut n: u64) -> usize {
    let mut at = buf.len();
    while n >= 100 {
        at -= 2;
        put2(buf, at, (n % 100) as u32);
        n /= 100;
    }
    if n >= 10 {
        at -= 2;
        put2(buf, at, n as u32);
    } else {
        at -= 1;
        buf[at] = b'0' + n as u8;
    }
    at
}

/// `buf[at..at + 2]` = the two digits of `n % 100`.
fn put2(buf: &mut [u8], at: usize, n: u32) {
    let pair = (n % 100) as usize * 2;
    buf[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
}

/// Writes an integer as `format!("{i}")` does, without the formatting
/// machinery (the sandbox writes millions of them).
pub(crate) fn write_int(out: &mut Out, i: i64) {
    let mut buf = [0u8; 20];
    let at = digits(&mut buf, i.unsigned_abs());
    if i < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[at..]);
}

/// `YYYY-MM-DD` into `buf[..10]` for a year in `0..=9999`; `false` for
/// other years, which take the formatting machinery.
fn put_date(buf: &mut [u8], days: i32) -> bool {
    let (y, m, d) = civil_from_days(days);
    let Ok(y) = u32::try_from(y) else {
        return false;
    };
    if y > 9999 {
        return false;
    }
    put2(buf, 0, y / 100);
    put2(buf, 2, y % 100);
    buf[4] = b'-';
    put2(buf, 5, m);
    buf[7] = b'-';
    put2(buf, 8, d);
    true
}

/// The JSON text of the last two values of one kind written, most recent
/// first.
#[derive(Clone, Copy, Debug)]
struct Memo<K, const N: usize> {
    entries: [Option<(K, [u8; N], usize)>; 2],
}

impl<K: Copy + PartialEq, const N: usize> Default for Memo<K, N> {
    fn default() -> Self {
        Self {
            entries: [None, None],
        }
    }
}

impl<K: Copy + PartialEq, const N: usize> Memo<K, N> {
    /// Writes the text of `key`, made by `make` on a miss; `false` when
    /// `make` has none (nothing written).
    fn write(
        &mut self,
        out: &mut Out,
        key: K,
        make: impl FnOnce() -> Option<([u8; N], usize)>,
    ) -> bool {
        if let Some((k, text, len)) = &self.entries[0]
            && *k == key
        {
            push_fixed(out, text, *len);
            return true;
        }
        if let Some((k, text, len)) = &self.entries[1]
            && *k == key
        {
            push_fixed(out, text, *len);
            self.entries.swap(0, 1);
            return true;
        }
        let Some((text, len)) = make() else {
            return false;
        };
        push_fixed(out, &text, len);
        self.entries[1] = Some((key, text, len));
        self.entries.swap(0, 1);
        true
    }
}

/// The timestamps and dates written last: a record and its child rows
/// repeat the same few (audit columns, accounting dates), and the calendar
/// arithmetic is most of their cost. One per record written.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Recent {
    times: Memo<(i64, bool), 31>,
    dates: Memo<i32, 12>,
}

impl Recent {
    /// [`write_json`], remembering timestamps and dates.
    pub(crate) fn write_json(&mut self, out: &mut Out, v: &V) {
        let done = match v {
            V::Ts(t, millis) => self
                .times
                .write(out, (*t, *millis), || quoted_ts(*t, *millis)),
            V::Date(d) => self.dates.write(out, *d, || quoted_date(*d)),
            _ => false,
        };
        if !done {
            write_json(out, v);
        }
    }
}

/// `"YYYY-MM-DD"` for a year in `0..=9999`.
fn quoted_date(days: i32) -> Option<([u8; 12], usize)> {
    let mut buf = *b"\"0000-00-00\"";
    put_date(&mut buf[1..], days).then_some((buf, 12))
}

/// `"YYYY-MM-DDTHH:MM:SS.mmm+00:00"` (without `.mmm` unless `millis`)
/// for a year in `0..=9999`.
fn quoted_ts(micros: i64, millis: bool) -> Option<([u8; 31], usize)> {
    let secs = micros.div_euclid(1_000_000);
    let frac_ms = (micros.rem_euclid(1_000_000) / 1000) as u32;
    let days = i32::try_from(secs.div_euclid(86_400)).ok()?;
    let rem = secs.rem_euclid(86_400) as u32;
    let mut buf = *b"\"0000-00-00T00:00:00.000+00:00\"";
    if !put_date(&mut buf[1..], days) {
        return None;
    }
    put2(&mut buf, 12, rem / 3600);
    put2(&mut buf, 15, (rem / 60) % 60);
    put2(&mut buf, 18, rem % 60);
    if millis {
        buf[21] = b'0' + (frac_ms / 100) as u8;
        put2(&mut buf, 22, frac_ms % 100);
        Some((buf, 31))
    } else {
        buf[20..27].copy_from_slice(b"+00:00\"");
        Some((buf, 27))
    }
}

/// Appends `text[..len]` with one fixed-size copy (the compiler inlines
/// it; a copy of a run-time length is a call).
pub(crate) fn push_fixed<const N: usize>(out: &mut Out, text: &[u8; N], len: usize) {
    let start = out.len();
    out.extend_from_slice(text);
    out.truncate(start + len.min(N));
}

/// Writes a date as `YYYY-MM-DD`.
fn write_date(out: &mut Out, days: i32) {
    let mut buf = [0u8; 10];
    if put_date(&mut buf, days) {
        out.extend_from_slice(&buf);
    } else {
        let (y, m, dd) = civil_from_days(days);
        let _ = write!(out, "{y:04}-{m:02}-{dd:02}");
    }
}

/// Writes `unscaled × 10^-scale` digit by digit (`125000, 2` → `1250.00`).
pub(crate) fn write_decimal(out: &mut Out, unscaled: i64, scale: u8) {
    let mut buf = [0u8; 20];
    let at = digits(&mut buf, unscaled.unsigned_abs());
    let digits = &buf[at..];
    let scale = usize::from(scale);
    if unscaled < 0 {
        out.push(b'-');
    }
    if scale == 0 {
        out.extend_from_slice(digits);
    } else if digits.len() <= scale {
        out.extend_from_slice(b"0.");
        out.resize(out.len() + scale - digits.len(), b'0');
        out.extend_from_slice(digits);
    } else {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.extend_from_slice(int);
        out.push(b'.');
        out.extend_from_slice(frac);
    }
}

/// Writes a timestamp as Oracle does: `2023-08-07T07:42:06.138+00:00`, or
/// without the fraction (`2023-08-07T07:42:06+00:00`) when `millis` is false.
/// Whether a user's time-zone preference changes the rendered offset is
/// UNCONFIRMED; the sandbox always renders UTC as `+00:00`.
pub(crate) fn write_ts(out: &mut Out, micros: i64, millis: bool) {
    let secs = micros.div_euclid(1_000_000);
    let frac_ms = (micros.rem_euclid(1_000_000) / 1000) as u32;
    let days = i32::try_from(secs.div_euclid(86_400)).unwrap_or(0);
    let rem = secs.rem_euclid(86_400) as u32;
    let mut buf = *b"0000-00-00T00:00:00.000+00:00";
    if put_date(&mut buf, days) {
        put2(&mut buf, 11, rem / 3600);
        put2(&mut buf, 14, (rem / 60) % 60);
        put2(&mut buf, 17, rem % 60);
        if millis {
            buf[20] = b'0' + (frac_ms / 100) as u8;
            put2(&mut buf, 21, frac_ms % 100);
            out.extend_from_slice(&buf);
        } else {
            out.extend_from_slice(&buf[..19]);
            out.extend_from_slice(b"+00:00");
        }
        return;
    }
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
    if millis {
        let _ = write!(out, ".{frac_ms:03}");
    }
    out.extend_from_slice(b"+00:00");
}

/// Whether any of the 8 bytes of `x` is `"`, `\\` or below 0x20 (the
/// bytes JSON escapes), tested all at once.
fn needs_escape(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The classic "has a zero byte" test: nonzero exactly when a byte of
    // `v` is zero (`x ^ b…b` is zero where `x` has the byte `b`).
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let quote = zero(x ^ (ONES * u64::from(b'"')));
    let backslash = zero(x ^ (ONES * u64::from(b'\\')));
    // Bytes below 0x20: `b - 0x20` borrows into the high bit for bytes
    // < 0x20 (bytes >= 0x80 are masked out by `!x`).
    let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
    quote | backslash | control != 0
}

/// The 8 bytes at `at` as one word (`at + 8 <= bytes.len()`).
fn word(bytes: &[u8], at: usize) -> [u8; 8] {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[at..at + 8]);
    w
}

/// Whether a byte needs escaping in a JSON string.
fn escaped(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Writes a JSON string literal. Text without anything to escape (nearly
/// all of it) is tested and copied 8 bytes at a time.
pub(crate) fn write_str(out: &mut Out, s: &str) {
    let bytes = s.as_bytes();
    let n = bytes.len();
    let start = out.len();
    out.reserve(n + 10);
    out.push(b'"');
    let plain = if n >= 8 {
        let mut at = 0;
        let mut plain = true;
        while at + 8 <= n {
            let w = word(bytes, at);
            if needs_escape(u64::from_le_bytes(w)) {
                plain = false;
                break;
            }
            out.extend_from_slice(&w);
            at += 8;
        }
        if plain && at < n {
            // The last 8 bytes, overlapping what is written already.
            let w = word(bytes, n - 8);
            if needs_escape(u64::from_le_bytes(w)) {
                plain = false;
            } else {
                out.truncate(start + 1 + n - 8);
                out.extend_from_slice(&w);
            }
        }
        plain
    } else if bytes.iter().any(|&b| escaped(b)) {
        false
    } else {
        for &b in bytes {
            out.push(b);
        }
        true
    };
    if plain {
        out.push(b'"');
        return;
    }
    out.truncate(start + 1);
    // Only ASCII bytes are escaped; the bytes of other characters (all
    // 0x80 and above) are copied as they are.
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b if b < 0x20 => {
                let _ = write!(out, "\\u{:04x}", b);
            }
            b => out.push(b),
        }
    }
    out.push(b'"');
}

/// Writes an attribute or member name and its colon (`"Name":`). Names
/// come from the resource catalogue: identifiers, never escaped.
pub(crate) fn write_key(out: &mut Out, name: &str) {
    out.reserve(name.len() + 3);
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// The JSON text as a `String` (for callers that want text, not bytes).
pub(crate) fn into_text(out: Out) -> String {
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(v: &V) -> String {
        let mut s = Out::new();
        write_json(&mut s, v);
        String::from_utf8(s).unwrap()
    }

    #[test]
    fn decimals_are_written_exactly() {
        assert_eq!(json(&V::Dec(125_000, 2)), "1250.00");
        assert_eq!(json(&V::Dec(-5, 1)), "-0.5");
        assert_eq!(json(&V::Dec(7, 3)), "0.007");
        assert_eq!(json(&V::Dec(0, 2)), "0.00");
        assert_eq!(json(&V::Dec(42, 0)), "42");
    }

    #[test]
    fn timestamps_with_and_without_millis() {
        let t = mlc_common::time::parse_timestamp("2023-08-07T07:42:06.138+00:00").unwrap();
        assert_eq!(json(&V::Ts(t, true)), "\"2023-08-07T07:42:06.138+00:00\"");
        assert_eq!(
            json(&V::Ts(t - 138_000, false)),
            "\"2023-08-07T07:42:06+00:00\""
        );
    }

    #[test]
    fn mixed_int_and_decimal_compare() {
        assert_eq!(V::Int(3).compare(&V::Dec(300, 2)), Some(Ordering::Equal));
        assert_eq!(V::Dec(301, 2).compare(&V::Int(3)), Some(Ordering::Greater));
        assert_eq!(V::Str("a".into()).compare(&V::Int(1)), None);
        assert_eq!(V::Null.order(&V::Int(1)), Ordering::Greater);
    }

    /// What the writers wrote before they skipped `std::fmt`.
    fn formatted(v: &V) -> String {
        match v {
            V::Int(i) => i.to_string(),
            V::Date(d) => {
                let (y, m, dd) = civil_from_days(*d);
                format!("\"{y:04}-{m:02}-{dd:02}\"")
            }
            V::Ts(t, millis) => {
                let secs = t.div_euclid(1_000_000);
                let frac_ms = t.rem_euclid(1_000_000) / 1000;
                let days = i32::try_from(secs.div_euclid(86_400)).unwrap();
                let rem = secs.rem_euclid(86_400);
                let (y, m, d) = civil_from_days(days);
                let mut out = format!(
                    "\"{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
                    rem / 3600,
                    (rem / 60) % 60,
                    rem % 60
                );
                if *millis {
                    out.push_str(&format!(".{frac_ms:03}"));
                }
                out.push_str("+00:00\"");
                out
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn fast_writers_match_the_formatting_machinery() {
        for i in [
            0,
            7,
            10,
            99,
            100,
            12_345,
            -1,
            -100,
            300_100_000_000_005,
            i64::MAX,
            i64::MIN,
        ] {
            assert_eq!(json(&V::Int(i)), formatted(&V::Int(i)));
        }
        for d in [
            -800_000, -719_529, -719_528, -1, 0, 19_000, 1_000_000, 2_932_896, 2_932_897, 5_000_000,
        ] {
            assert_eq!(json(&V::Date(d)), formatted(&V::Date(d)), "day {d}");
        }
        for t in [
            0,
            -1,
            -1_000,
            1_691_394_126_138_000,
            1_704_067_200_000_999,
            253_402_300_799_999_999,
            253_402_300_800_000_000,
            -62_167_219_200_000_000,
            -62_167_219_200_000_001,
        ] {
            for millis in [true, false] {
                assert_eq!(
                    json(&V::Ts(t, millis)),
                    formatted(&V::Ts(t, millis)),
                    "{t} {millis}"
                );
            }
        }
        assert_eq!(json(&V::Dec(i64::MIN, 2)), "-92233720368547758.08");
        assert_eq!(json(&V::Dec(-7, 4)), "-0.0007");
    }

    /// What `write_str` wrote before it worked 8 bytes at a time.
    fn escaped_plainly(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    #[test]
    fn strings_are_escaped_wherever_the_byte_sits() {
        // Every byte JSON escapes, and neighbours that must not be, at
        // every position of strings around the 8-byte word size.
        let specials = [
            '"', '\\', '\n', '\r', '\t', '\u{1}', '\u{1f}', ' ', '!', '#', '[', ']', 'é', '\u{7f}',
            '€',
        ];
        for len in 0..=19 {
            for at in 0..len.max(1) {
                for c in specials {
                    let s: String = (0..len)
                        .map(|i| {
                            if i == at {
                                c
                            } else {
                                (b'a' + (i % 26) as u8) as char
                            }
                        })
                        .collect();
                    let mut out = Out::new();
                    write_str(&mut out, &s);
                    assert_eq!(
                        String::from_utf8(out).unwrap(),
                        escaped_plainly(&s),
                        "{s:?}"
                    );
                }
            }
        }
        for s in [
            "",
            "plain text of some length",
            "tab\there",
            "ü and \"quotes\" \\ back",
        ] {
            let mut out = Out::new();
            write_str(&mut out, s);
            assert_eq!(String::from_utf8(out).unwrap(), escaped_plainly(s));
        }
    }

    #[test]
    fn recent_values_are_written_as_written_first() {
        let mut recent = Recent::default();
        let values = [
            V::Ts(1_691_394_126_138_000, true),
            V::Ts(1_691_394_126_138_000, false),
            V::Date(19_000),
            V::Ts(1_704_067_200_000_000, true),
            V::Date(19_000),
            V::Date(2_932_897),
            V::Ts(253_402_300_800_000_000, true),
            V::Ts(1_691_394_126_138_000, true),
            V::Int(5),
        ];
        for _ in 0..3 {
            for v in &values {
                let mut out = Out::new();
                recent.write_json(&mut out, v);
                assert_eq!(String::from_utf8(out).unwrap(), json(v), "{v:?}");
            }
        }
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(json(&V::str("a\"b\\c\n")), "\"a\\\"b\\\\c\\n\"");
    }
}
