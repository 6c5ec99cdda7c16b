//! Field values and records as the sandbox holds them, and their JSON text.
//!
//! Records are built on demand from `(seed, index)` and written straight to
//! JSON text. Amounts are exact decimals (`unscaled × 10^-scale`) written
//! digit by digit, so `1250.00` reaches the wire as `1250.00` and never
//! passes through `f64`.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt::Write as _;

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
                let mut out = String::new();
                write_plain(&mut out, other);
                Some(out)
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

/// Writes a value as JSON.
pub(crate) fn write_json(out: &mut String, v: &V) {
    match v {
        V::Null => out.push_str("null"),
        V::Str(s) => write_str(out, s),
        V::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        V::Int(_) | V::Dec(..) => write_plain(out, v),
        V::Date(_) | V::Ts(..) => {
            out.push('"');
            write_plain(out, v);
            out.push('"');
        }
    }
}

/// Writes a value without JSON quoting.
fn write_plain(out: &mut String, v: &V) {
    match v {
        V::Null => {}
        V::Str(s) => out.push_str(s),
        V::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        V::Int(i) => {
            let _ = write!(out, "{i}");
        }
        V::Dec(u, s) => write_decimal(out, *u, *s),
        V::Date(d) => {
            let (y, m, dd) = civil_from_days(*d);
            let _ = write!(out, "{y:04}-{m:02}-{dd:02}");
        }
        V::Ts(t, millis) => write_ts(out, *t, *millis),
    }
}

/// Writes `unscaled × 10^-scale` digit by digit (`125000, 2` → `1250.00`).
pub(crate) fn write_decimal(out: &mut String, unscaled: i64, scale: u8) {
    let negative = unscaled < 0;
    let digits = unscaled.unsigned_abs().to_string();
    let scale = usize::from(scale);
    if negative {
        out.push('-');
    }
    if scale == 0 {
        out.push_str(&digits);
        return;
    }
    if digits.len() <= scale {
        out.push_str("0.");
        for _ in digits.len()..scale {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    }
}

/// Writes a timestamp as Oracle does: `2023-08-07T07:42:06.138+00:00`, or
/// without the fraction (`2023-08-07T07:42:06+00:00`) when `millis` is false.
/// Whether a user's time-zone preference changes the rendered offset is
/// UNCONFIRMED; the sandbox always renders UTC as `+00:00`.
pub(crate) fn write_ts(out: &mut String, micros: i64, millis: bool) {
    let secs = micros.div_euclid(1_000_000);
    let frac_ms = micros.rem_euclid(1_000_000) / 1000;
    let days = i32::try_from(secs.div_euclid(86_400)).unwrap_or(0);
    let rem = secs.rem_euclid(86_400);
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
    out.push_str("+00:00");
}

/// Writes a JSON string literal.
pub(crate) fn write_str(out: &mut String, s: &str) {
    out.push('"');
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        // Nothing to escape (the common case): one copy.
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(v: &V) -> String {
        let mut s = String::new();
        write_json(&mut s, v);
        s
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

    #[test]
    fn strings_are_escaped() {
        assert_eq!(json(&V::str("a\"b\\c\n")), "\"a\\\"b\\\\c\\n\"");
    }
}
