//! Evaluating expressions over a scanned record, and converting the result
//! into a column's type.
//!
//! Values stay borrowed from the record text while they are computed
//! ([`Val`]); only the final [`Value`] of a column owns its text. A value that
//! does not fit its column is a [`Fault`], which the mapper turns into a
//! reject of the record, never a failure of the batch.
//!
//! Work per value is bounded: evaluation recurses once per level of the
//! expression (at most [`crate::expr::MAX_EXPR_DEPTH`]), and a computed
//! text longer than [`MAX_TEXT_LEN`] is a fault, refused before it is
//! built (nested `replace` calls would otherwise grow a text
//! exponentially in the script's length).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;

use mlc_common::time::{
    civil_from_days, format_date, format_timestamp, parse_date, parse_timestamp,
};
use mlc_common::{Cell, ColumnType, Decimal, Value};

use crate::error::{LookupError, MapError};
use crate::expr::{CmpOp, Expr, Func, Lit};
use crate::json::{self, Raw};

/// The longest text a function may compute, in bytes (1 MiB): far above
/// any field of an Oracle record, and small enough that one row's values
/// stay a small part of the guest's memory.
pub const MAX_TEXT_LEN: usize = 1 << 20;

/// A fault for a function whose result would pass [`MAX_TEXT_LEN`].
fn too_long<T>(func: &str, len: usize) -> Result<T, Stop> {
    fault(format!(
        "{func}(): the result would be {len} bytes, more than {MAX_TEXT_LEN}"
    ))
}

/// A value while an expression is computed.
#[derive(Clone, Debug, PartialEq)]
pub enum Val<'a> {
    /// null or missing
    Null,
    /// boolean
    Bool(bool),
    /// a JSON number as written
    Num(&'a str),
    /// an exact number computed or written in the script
    Dec(Decimal),
    /// text
    Str(Cow<'a, str>),
    /// days since 1970-01-01
    Date(i32),
    /// microseconds since the epoch, UTC
    Ts(i64),
    /// a JSON object or array (text, kind)
    Json(&'a str, &'static str),
}

impl<'a> Val<'a> {
    /// The value of a scanned field.
    pub fn from_raw(raw: Raw<'a>) -> Result<Self, String> {
        Ok(match raw {
            Raw::Missing | Raw::Null => Val::Null,
            Raw::Bool(b) => Val::Bool(b),
            Raw::Num(n) => Val::Num(n),
            Raw::Str {
                raw,
                escaped: false,
            } => Val::Str(Cow::Borrowed(raw)),
            Raw::Str { raw, escaped: true } => Val::Str(Cow::Owned(
                json::unescape(raw).ok_or_else(|| "text with an invalid escape".to_owned())?,
            )),
            Raw::Object(t) => Val::Json(t, "object"),
            Raw::Array(t) => Val::Json(t, "array"),
        })
    }

    /// The value of a script literal.
    pub fn from_lit(lit: &Lit) -> Val<'static> {
        match lit {
            Lit::Null => Val::Null,
            Lit::Bool(b) => Val::Bool(*b),
            Lit::Num(d) => Val::Dec(*d),
            Lit::Str(s) => Val::Str(Cow::Owned(s.clone())),
        }
    }

    fn into_owned(self) -> Val<'static> {
        match self {
            Val::Null => Val::Null,
            Val::Bool(b) => Val::Bool(b),
            Val::Num(n) => match parse_decimal(n) {
                Ok(d) => Val::Dec(d),
                Err(_) => Val::Str(Cow::Owned(n.to_owned())),
            },
            Val::Dec(d) => Val::Dec(d),
            Val::Str(s) => Val::Str(Cow::Owned(s.into_owned())),
            Val::Date(d) => Val::Date(d),
            Val::Ts(t) => Val::Ts(t),
            Val::Json(t, kind) => Val::Str(Cow::Owned(format!("<{kind} {t}>"))),
        }
    }

    /// A short description for error messages, e.g. `text "abc"`.
    pub fn describe(&self) -> String {
        match self {
            Val::Null => "null".into(),
            Val::Bool(b) => format!("boolean {b}"),
            Val::Num(n) => format!("number {n}"),
            Val::Dec(d) => format!("number {d}"),
            Val::Str(s) => format!("text {s:?}"),
            Val::Date(d) => format!("date {}", format_date(*d)),
            Val::Ts(t) => format!("timestamp {}", format_timestamp(*t)),
            Val::Json(_, kind) => format!("an {kind}"),
        }
    }

    /// The value as text, for functions and value maps; `None` for null,
    /// objects and arrays.
    pub fn text(&self) -> Option<Cow<'_, str>> {
        match self {
            Val::Null | Val::Json(..) => None,
            Val::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            Val::Num(n) => Some(Cow::Borrowed(n)),
            Val::Dec(d) => Some(Cow::Owned(d.to_string())),
            Val::Str(s) => Some(Cow::Borrowed(s)),
            Val::Date(d) => Some(Cow::Owned(format_date(*d))),
            Val::Ts(t) => Some(Cow::Owned(format_timestamp(*t))),
        }
    }
}

/// Why a value does not fit: the record is rejected with this reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The field (or column) at fault, when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl Fault {
    /// A fault not yet tied to a field.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            field: None,
            message: message.into(),
        }
    }
}

/// What stops evaluating one row.
#[derive(Debug)]
pub enum Stop {
    /// The record is rejected.
    Fault(Fault),
    /// The batch fails.
    Fatal(MapError),
}

impl From<Fault> for Stop {
    fn from(f: Fault) -> Self {
        Stop::Fault(f)
    }
}

fn fault<T>(message: impl Into<String>) -> Result<T, Stop> {
    Err(Stop::Fault(Fault::new(message)))
}

/// Answers `lookup(dataset, key)`: the reference record as JSON object
/// text, `None` when the key is absent.
pub trait Lookup {
    /// Looks one key up.
    fn lookup(&mut self, dataset: &str, key: &str) -> Result<Option<String>, LookupError>;
}

/// Per-batch state: the lookup and a cache of its answers (a batch often
/// names the same supplier or cost center many times).
pub struct Context<'l> {
    lookup: &'l mut dyn Lookup,
    cache: HashMap<(String, String), Option<String>>,
}

impl<'l> Context<'l> {
    /// A context over `lookup` with an empty cache.
    pub fn new(lookup: &'l mut dyn Lookup) -> Self {
        Self {
            lookup,
            cache: HashMap::new(),
        }
    }

    fn lookup_field(
        &mut self,
        dataset: &str,
        key: &str,
        field: &str,
    ) -> Result<Val<'static>, Stop> {
        let cache_key = (dataset.to_owned(), key.to_owned());
        if !self.cache.contains_key(&cache_key) {
            let answer = self.lookup.lookup(dataset, key).map_err(|source| {
                Stop::Fatal(MapError::Lookup {
                    dataset: dataset.to_owned(),
                    key: key.to_owned(),
                    source,
                })
            })?;
            self.cache.insert(cache_key.clone(), answer);
        }
        let Some(Some(record)) = self.cache.get(&cache_key) else {
            return Ok(Val::Null);
        };
        let raw = json::field(record, field).map_err(|e| {
            Stop::Fatal(MapError::Lookup {
                dataset: dataset.to_owned(),
                key: key.to_owned(),
                source: LookupError::Unavailable(format!(
                    "reference record is not a JSON object: {e}"
                )),
            })
        })?;
        let val = Val::from_raw(raw)
            .map_err(|m| Stop::Fault(Fault::new(format!("lookup {dataset}/{key}.{field}: {m}"))))?;
        Ok(val.into_owned())
    }
}

/// Evaluates `expr` over the scanned `slots`.
pub fn eval<'a>(expr: &Expr, slots: &[Raw<'a>], cx: &mut Context<'_>) -> Result<Val<'a>, Stop> {
    match expr {
        Expr::Lit(lit) => Ok(Val::from_lit(lit)),
        Expr::Field { path, slot, .. } => {
            let raw = slots.get(*slot).copied().unwrap_or(Raw::Missing);
            Val::from_raw(raw).map_err(|m| Stop::Fault(Fault::new(format!("{path}: {m}"))))
        }
        Expr::Not(a) => Ok(Val::Bool(!truth(&eval(a, slots, cx)?)?)),
        Expr::And(a, b) => Ok(Val::Bool(
            truth(&eval(a, slots, cx)?)? && truth(&eval(b, slots, cx)?)?,
        )),
        Expr::Or(a, b) => Ok(Val::Bool(
            truth(&eval(a, slots, cx)?)? || truth(&eval(b, slots, cx)?)?,
        )),
        Expr::Cmp(op, a, b) => {
            let (a, b) = (eval(a, slots, cx)?, eval(b, slots, cx)?);
            Ok(Val::Bool(compare(*op, &a, &b)?))
        }
        Expr::Add(a, b) | Expr::Sub(a, b) => {
            let (x, y) = (eval(a, slots, cx)?, eval(b, slots, cx)?);
            if x == Val::Null || y == Val::Null {
                return Ok(Val::Null);
            }
            let (x, y) = (number(&x)?, number(&y)?);
            let y = if matches!(expr, Expr::Sub(..)) {
                Decimal::new(-y.unscaled, y.scale)
            } else {
                y
            };
            add(x, y).map(Val::Dec)
        }
        Expr::Lookup {
            dataset,
            key,
            field,
        } => {
            let key = eval(key, slots, cx)?;
            match key.text() {
                None => Ok(Val::Null),
                Some(k) => cx.lookup_field(dataset, &k, field),
            }
        }
        Expr::Call(func, args) => call(*func, args, slots, cx),
    }
}

/// Whether a value counts as true: booleans, `Y`/`N` style flags; null is
/// false.
pub fn truth(v: &Val<'_>) -> Result<bool, Stop> {
    match v {
        Val::Null => Ok(false),
        other => flag(other).map_or_else(
            || fault(format!("{} is not true or false", other.describe())),
            Ok,
        ),
    }
}

/// A flag value: JSON booleans and the texts Y/N, Yes/No, True/False.
fn flag(v: &Val<'_>) -> Option<bool> {
    match v {
        Val::Bool(b) => Some(*b),
        Val::Str(s) => mlc_common::json_text::flag_text(s),
        _ => None,
    }
}

fn number(v: &Val<'_>) -> Result<Decimal, Stop> {
    match v {
        Val::Num(n) => parse_decimal(n).or_else(|e| fault(e.to_string())),
        Val::Dec(d) => Ok(*d),
        Val::Str(s) => {
            parse_decimal(s.trim()).or_else(|_| fault(format!("{} is not a number", v.describe())))
        }
        other => fault(format!("{} is not a number", other.describe())),
    }
}

fn add(x: Decimal, y: Decimal) -> Result<Decimal, Stop> {
    let scale = x.scale.max(y.scale);
    let overflow = || Stop::Fault(Fault::new(format!("{x} + {y} is out of range")));
    let x = x.rescale(scale).map_err(|_| overflow())?;
    let y = y.rescale(scale).map_err(|_| overflow())?;
    let sum = x.unscaled.checked_add(y.unscaled).ok_or_else(overflow)?;
    Ok(Decimal::new(sum, scale))
}

fn compare(op: CmpOp, a: &Val<'_>, b: &Val<'_>) -> Result<bool, Stop> {
    let ordering = match (a, b) {
        (Val::Null, Val::Null) => Some(Ordering::Equal),
        (Val::Null, _) | (_, Val::Null) => None,
        (Val::Bool(_), _) | (_, Val::Bool(_)) => match (flag(a), flag(b)) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => None,
        },
        (Val::Num(_) | Val::Dec(_), _) | (_, Val::Num(_) | Val::Dec(_)) => {
            let (x, y) = (number(a)?, number(b)?);
            let scale = x.scale.max(y.scale);
            match (x.rescale(scale), y.rescale(scale)) {
                (Ok(x), Ok(y)) => Some(x.unscaled.cmp(&y.unscaled)),
                _ => return fault(format!("cannot compare {x} and {y}")),
            }
        }
        (Val::Date(x), other) | (other, Val::Date(x)) => {
            let y = days(other)?;
            let o = x.cmp(&y);
            Some(if matches!(a, Val::Date(_)) {
                o
            } else {
                o.reverse()
            })
        }
        (Val::Ts(x), other) | (other, Val::Ts(x)) => {
            let y = micros(other)?;
            let o = x.cmp(&y);
            Some(if matches!(a, Val::Ts(_)) {
                o
            } else {
                o.reverse()
            })
        }
        _ => match (a.text(), b.text()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => None,
        },
    };
    Ok(match ordering {
        None => op == CmpOp::Ne,
        Some(o) => match op {
            CmpOp::Eq => o == Ordering::Equal,
            CmpOp::Ne => o != Ordering::Equal,
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Le => o != Ordering::Greater,
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::Ge => o != Ordering::Less,
        },
    })
}

/// The calendar date of a date, a timestamp value, or a text holding
/// either (a timestamp text gives the date as written, in its own offset).
fn days(v: &Val<'_>) -> Result<i32, Stop> {
    match v {
        Val::Date(d) => Ok(*d),
        Val::Ts(t) => Ok(t.div_euclid(86_400_000_000) as i32),
        Val::Str(s) => {
            let head = s.get(..10).unwrap_or(s);
            if s.len() > 10 && parse_timestamp(s).is_err() {
                return fault(format!("{} is not a date or timestamp", v.describe()));
            }
            parse_date(head)
                .or_else(|_| fault(format!("{} is not a date or timestamp", v.describe())))
        }
        other => fault(format!("{} is not a date or timestamp", other.describe())),
    }
}

fn micros(v: &Val<'_>) -> Result<i64, Stop> {
    match v {
        Val::Ts(t) => Ok(*t),
        Val::Str(s) => {
            parse_timestamp(s).or_else(|_| fault(format!("{} is not a timestamp", v.describe())))
        }
        other => fault(format!("{} is not a timestamp", other.describe())),
    }
}

fn text_arg<'v>(v: &'v Val<'_>, func: &str) -> Result<Option<Cow<'v, str>>, Stop> {
    match v {
        Val::Json(_, kind) => fault(format!("{func}() got an {kind}, not text")),
        other => Ok(other.text()),
    }
}

fn int_arg(v: &Val<'_>, func: &str) -> Result<i64, Stop> {
    let d = number(v)?;
    match d.rescale(0) {
        Ok(d) => {
            i64::try_from(d.unscaled).or_else(|_| fault(format!("{func}(): {d} is too large")))
        }
        Err(_) => fault(format!("{func}(): {d} is not a whole number")),
    }
}

fn call<'a>(
    func: Func,
    args: &[Expr],
    slots: &[Raw<'a>],
    cx: &mut Context<'_>,
) -> Result<Val<'a>, Stop> {
    // `if` and `coalesce` evaluate lazily.
    match func {
        Func::If => {
            let [c, t, e] = args else {
                return fault("if() takes 3 arguments");
            };
            return if truth(&eval(c, slots, cx)?)? {
                eval(t, slots, cx)
            } else {
                eval(e, slots, cx)
            };
        }
        Func::Coalesce => {
            for a in args {
                let v = eval(a, slots, cx)?;
                if v != Val::Null {
                    return Ok(v);
                }
            }
            return Ok(Val::Null);
        }
        _ => {}
    }
    let mut vals = Vec::with_capacity(args.len());
    for a in args {
        vals.push(eval(a, slots, cx)?);
    }
    let first = vals.first().cloned().unwrap_or(Val::Null);
    let owned = |s: String| Ok(Val::Str(Cow::Owned(s)));
    match func {
        Func::Upper | Func::Lower | Func::Trim => {
            let name = match func {
                Func::Upper => "upper",
                Func::Lower => "lower",
                _ => "trim",
            };
            match text_arg(&first, name)? {
                None => Ok(Val::Null),
                Some(s) => {
                    let out = match func {
                        Func::Upper => s.to_uppercase(),
                        Func::Lower => s.to_lowercase(),
                        _ => s.trim().to_owned(),
                    };
                    // Case mapping may lengthen a text (up to three times).
                    if out.len() > MAX_TEXT_LEN {
                        return too_long(name, out.len());
                    }
                    owned(out)
                }
            }
        }
        Func::Substring => {
            let Some(s) = text_arg(&first, "substring")? else {
                return Ok(Val::Null);
            };
            let start = int_arg(&vals[1], "substring")?;
            if start < 1 {
                return fault(format!("substring(): start {start} must be 1 or more"));
            }
            let skip = usize::try_from(start - 1).unwrap_or(usize::MAX);
            let chars = s.chars().skip(skip);
            let out: String = match vals.get(2) {
                Some(len) => {
                    let len = int_arg(len, "substring")?;
                    if len < 0 {
                        return fault(format!("substring(): length {len} must not be negative"));
                    }
                    chars
                        .take(usize::try_from(len).unwrap_or(usize::MAX))
                        .collect()
                }
                None => chars.collect(),
            };
            owned(out)
        }
        Func::Concat => {
            let mut parts = Vec::with_capacity(vals.len());
            for v in &vals {
                if let Some(s) = text_arg(v, "concat")? {
                    parts.push(s);
                }
            }
            let len = parts.iter().map(|p| p.len()).sum::<usize>();
            if len > MAX_TEXT_LEN {
                return too_long("concat", len);
            }
            owned(parts.concat())
        }
        Func::Segment => {
            let Some(s) = text_arg(&first, "segment")? else {
                return Ok(Val::Null);
            };
            let n = int_arg(&vals[1], "segment")?;
            if n < 1 {
                return fault(format!("segment(): number {n} must be 1 or more"));
            }
            let sep = match vals.get(2) {
                Some(v) => text_arg(v, "segment")?
                    .map(Cow::into_owned)
                    .unwrap_or_else(|| "-".into()),
                None => "-".into(),
            };
            let index = usize::try_from(n - 1).unwrap_or(usize::MAX);
            match s.split(sep.as_str()).nth(index) {
                Some(part) => owned(part.to_owned()),
                None => Ok(Val::Null),
            }
        }
        Func::Replace => {
            let Some(s) = text_arg(&first, "replace")? else {
                return Ok(Val::Null);
            };
            let from = text_arg(&vals[1], "replace")?.unwrap_or_default();
            let to = text_arg(&vals[2], "replace")?.unwrap_or_default();
            if from.is_empty() {
                return fault("replace(): the text to replace must not be empty");
            }
            if to.len() > from.len() {
                let grows = s.matches(from.as_ref()).count() * (to.len() - from.len());
                if s.len() + grows > MAX_TEXT_LEN {
                    return too_long("replace", s.len() + grows);
                }
            }
            owned(s.replace(from.as_ref(), &to))
        }
        Func::Date | Func::Year | Func::Month | Func::Quarter | Func::Day | Func::Period => {
            if first == Val::Null {
                return Ok(Val::Null);
            }
            let d = days(&first)?;
            let (y, m, day) = civil_from_days(d);
            Ok(match func {
                Func::Date => Val::Date(d),
                Func::Year => Val::Dec(Decimal::new(i128::from(y), 0)),
                Func::Month => Val::Dec(Decimal::new(i128::from(m), 0)),
                Func::Quarter => Val::Dec(Decimal::new(i128::from((m - 1) / 3 + 1), 0)),
                Func::Day => Val::Dec(Decimal::new(i128::from(day), 0)),
                _ => Val::Str(Cow::Owned(format!("{y:04}-{m:02}"))),
            })
        }
        Func::Flag => match first {
            Val::Null => Ok(Val::Null),
            other => match flag(&other) {
                Some(b) => Ok(Val::Bool(b)),
                None => fault(format!(
                    "{} is not a Y/N or true/false flag",
                    other.describe()
                )),
            },
        },
        // handled above / parsed into Expr::Lookup
        Func::If | Func::Coalesce | Func::Lookup => fault("internal: unexpected function"),
    }
}

/// Parses a JSON number text exactly; a fast path for up to 18 digits
/// without exponent, the full parser otherwise.
pub fn parse_decimal(text: &str) -> Result<Decimal, mlc_common::DecimalError> {
    let bytes = text.as_bytes();
    let (negative, digits) = match bytes.first() {
        Some(b'-') => (true, &bytes[1..]),
        _ => (false, bytes),
    };
    if !digits.is_empty() && digits.len() <= 19 {
        let mut n: u64 = 0;
        let mut scale: u8 = 0;
        let mut point = false;
        let mut count = 0;
        let mut ok = true;
        for &b in digits {
            match b {
                b'0'..=b'9' => {
                    n = n * 10 + u64::from(b - b'0');
                    count += 1;
                    if point {
                        scale += 1;
                    }
                }
                b'.' if !point => point = true,
                _ => {
                    ok = false;
                    break;
                }
            }
        }
        if ok && count > 0 && count <= 18 {
            let n = i128::from(n);
            return Ok(Decimal::new(if negative { -n } else { n }, scale));
        }
    }
    Decimal::parse(text)
}

fn parse_integer(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let (negative, digits) = match bytes.first() {
        Some(b'-') => (true, &bytes[1..]),
        _ => (false, bytes),
    };
    if digits.is_empty() || digits.len() > 18 {
        let d = parse_decimal(text).ok()?.rescale(0).ok()?;
        return i64::try_from(d.unscaled).ok();
    }
    let mut n: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            let d = parse_decimal(text).ok()?.rescale(0).ok()?;
            return i64::try_from(d.unscaled).ok();
        }
        n = n * 10 + i64::from(b - b'0');
    }
    Some(if negative { -n } else { n })
}

/// A finite `f64` from its text.
fn finite(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// [`convert`], keeping text that borrows from the record borrowed (no
/// copy until it reaches the output).
pub fn convert_cell(v: Val<'_>, ty: ColumnType) -> Result<Cell<'_>, String> {
    match (ty, v) {
        (ColumnType::Text, Val::Str(Cow::Borrowed(s))) => Ok(Cell::Text(s)),
        (ty, v) => convert(v, ty).map(Cell::Value),
    }
}

/// Converts a computed value into a column's type; null stays null (the
/// caller checks nullability).
pub fn convert(v: Val<'_>, ty: ColumnType) -> Result<Value, String> {
    let mismatch = |v: &Val<'_>, what: &str| format!("{} is not {what}", v.describe());
    Ok(match ty {
        _ if matches!(v, Val::Null) => Value::Null,
        ColumnType::Text => match v {
            Val::Str(s) => Value::Text(s.into_owned()),
            Val::Json(..) => return Err(mismatch(&v, "text")),
            other => Value::Text(other.text().map(Cow::into_owned).unwrap_or_default()),
        },
        ColumnType::Integer => match &v {
            Val::Num(n) => {
                Value::Integer(parse_integer(n).ok_or_else(|| mismatch(&v, "an integer"))?)
            }
            Val::Str(s) => {
                Value::Integer(parse_integer(s.trim()).ok_or_else(|| mismatch(&v, "an integer"))?)
            }
            Val::Dec(d) => Value::Integer(
                d.rescale(0)
                    .ok()
                    .and_then(|d| i64::try_from(d.unscaled).ok())
                    .ok_or_else(|| mismatch(&v, "an integer"))?,
            ),
            _ => return Err(mismatch(&v, "an integer")),
        },
        // Finite only: Rust reads `inf`, `NaN` and `1e400` (as infinity),
        // none of which is a number of the record.
        ColumnType::Double => match &v {
            Val::Num(n) => Value::Double(finite(n).ok_or_else(|| mismatch(&v, "a number"))?),
            Val::Str(s) => Value::Double(finite(s.trim()).ok_or_else(|| mismatch(&v, "a number"))?),
            Val::Dec(d) => Value::Double(d.to_f64()),
            _ => return Err(mismatch(&v, "a number")),
        },
        ColumnType::Decimal { precision, scale } => {
            let d = match &v {
                Val::Num(n) => parse_decimal(n).map_err(|e| e.to_string())?,
                Val::Str(s) => parse_decimal(s.trim()).map_err(|_| mismatch(&v, "a number"))?,
                Val::Dec(d) => *d,
                _ => return Err(mismatch(&v, "a number")),
            };
            Value::Decimal(d.fit(precision, scale).map_err(|e| e.to_string())?)
        }
        ColumnType::Boolean => {
            Value::Boolean(flag(&v).ok_or_else(|| mismatch(&v, "a Y/N or true/false flag"))?)
        }
        ColumnType::Date => match &v {
            Val::Date(d) => Value::Date(*d),
            Val::Str(s) => {
                Value::Date(parse_date(s).map_err(|_| mismatch(&v, "a date (YYYY-MM-DD)"))?)
            }
            _ => return Err(mismatch(&v, "a date (YYYY-MM-DD)")),
        },
        ColumnType::Timestamp => match &v {
            Val::Ts(t) => Value::Timestamp(*t),
            Val::Str(s) => Value::Timestamp(
                parse_timestamp(s).map_err(|_| mismatch(&v, "a timestamp with offset"))?,
            ),
            _ => return Err(mismatch(&v, "a timestamp with offset")),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::parse;

    struct NoLookup;
    impl Lookup for NoLookup {
        fn lookup(&mut self, dataset: &str, _key: &str) -> Result<Option<String>, LookupError> {
            Err(LookupError::UnknownDataset(dataset.into()))
        }
    }

    /// Evaluates `text` with fields a, b, c bound to the given raw values.
    fn run<'a>(text: &str, a: Raw<'a>, b: Raw<'a>) -> Result<Val<'a>, Stop> {
        let mut e = parse(text).unwrap();
        e.fields_mut(&mut |path, _, slot| {
            *slot = match path {
                "a" => 0,
                "b" => 1,
                _ => 2,
            }
        });
        let slots = [a, b, Raw::Missing];
        let mut l = NoLookup;
        let mut cx = Context::new(&mut l);
        eval(&e, &slots, &mut cx)
    }

    fn s(raw: &str) -> Raw<'_> {
        Raw::Str {
            raw,
            escaped: false,
        }
    }

    fn text(v: Result<Val<'_>, Stop>) -> String {
        match v.unwrap() {
            Val::Str(s) => s.into_owned(),
            other => panic!("not text: {other:?}"),
        }
    }

    #[test]
    fn string_functions() {
        assert_eq!(text(run("upper(a)", s("abé"), Raw::Missing)), "ABÉ");
        assert_eq!(text(run("lower(a)", s("AB"), Raw::Missing)), "ab");
        assert_eq!(text(run("trim(a)", s("  x y "), Raw::Missing)), "x y");
        assert_eq!(
            text(run("substring(a, 2, 3)", s("ACME-2024"), Raw::Missing)),
            "CME"
        );
        assert_eq!(
            text(run("substring(a, 6)", s("ACME-2024"), Raw::Missing)),
            "2024"
        );
        assert_eq!(
            text(run("substring(a, 20, 2)", s("ACME"), Raw::Missing)),
            ""
        );
        assert_eq!(
            text(run("concat(a, ' / ', b, c)", s("X"), Raw::Num("12"))),
            "X / 12"
        );
        assert_eq!(
            text(run("segment(a, 2)", s("01-110-4010-0000"), Raw::Missing)),
            "110"
        );
        assert_eq!(
            text(run("segment(a, 3, '.')", s("01.110.4010"), Raw::Missing)),
            "4010"
        );
        assert_eq!(
            run("segment(a, 5)", s("01-110"), Raw::Missing).unwrap(),
            Val::Null
        );
        assert_eq!(
            text(run("replace(a, '-', '')", s("01-110"), Raw::Missing)),
            "01110"
        );
        assert_eq!(text(run("coalesce(c, b, a)", s("A"), Raw::Null)), "A");
        assert_eq!(
            run("upper(c)", Raw::Missing, Raw::Missing).unwrap(),
            Val::Null
        );
        assert!(matches!(
            run("substring(a, 0)", s("x"), Raw::Missing),
            Err(Stop::Fault(_))
        ));
        assert!(matches!(
            run("upper(a)", Raw::Array("[1]"), Raw::Missing),
            Err(Stop::Fault(_))
        ));
    }

    #[test]
    fn date_functions() {
        let ts = s("2024-05-31T23:30:00-07:00");
        assert_eq!(
            run("date(a)", ts, Raw::Missing).unwrap(),
            Val::Date(parse_date("2024-05-31").unwrap())
        );
        let int = |v: Result<Val<'_>, Stop>| convert(v.unwrap(), ColumnType::Integer).unwrap();
        assert_eq!(int(run("year(a)", ts, Raw::Missing)), Value::Integer(2024));
        assert_eq!(int(run("month(a)", ts, Raw::Missing)), Value::Integer(5));
        assert_eq!(int(run("quarter(a)", ts, Raw::Missing)), Value::Integer(2));
        assert_eq!(int(run("day(b)", ts, s("2024-02-29"))), Value::Integer(29));
        assert_eq!(
            text(run("period(a)", s("2024-11-02"), Raw::Missing)),
            "2024-11"
        );
        assert!(matches!(
            run("year(a)", s("May-24"), Raw::Missing),
            Err(Stop::Fault(_))
        ));
        assert!(matches!(
            run("date(a)", s("2024-05-31Tjunk"), Raw::Missing),
            Err(Stop::Fault(_))
        ));
    }

    #[test]
    fn logic_flags_and_comparisons() {
        let yes = |t: &str, a: Raw<'_>, b: Raw<'_>| run(t, a, b).unwrap() == Val::Bool(true);
        assert!(yes("a == true", s("Y"), Raw::Missing));
        assert!(yes("a == true", Raw::Bool(true), Raw::Missing));
        assert!(yes("not a", s("N"), Raw::Missing));
        assert!(yes("not c", Raw::Missing, Raw::Missing));
        assert!(yes("a > 99.5 and b == 'X'", Raw::Num("100"), s("X")));
        assert!(yes("a == 1250", Raw::Num("1250.00"), Raw::Missing));
        assert!(yes("a != null", s("x"), Raw::Missing));
        assert!(yes("c == null", s("x"), Raw::Missing));
        assert!(!yes("c == 'x'", s("x"), Raw::Missing));
        assert!(yes("c != 'x'", s("x"), Raw::Missing));
        assert!(yes(
            "date(a) < date(b)",
            s("2024-01-01"),
            s("2024-01-02T00:00:00Z")
        ));
        assert!(yes("a < b", s("ABC"), s("ABD")));
        assert!(yes("flag(a) or b", s("n"), Raw::Bool(true)));
        assert_eq!(text(run("if(a, 'yes', 'no')", s("Y"), Raw::Missing)), "yes");
        assert!(matches!(
            run("not a", s("maybe"), Raw::Missing),
            Err(Stop::Fault(_))
        ));
    }

    #[test]
    fn arithmetic_is_exact() {
        let v = run("a - b", Raw::Num("12345678901234567.89"), Raw::Num("0.10")).unwrap();
        assert_eq!(v, Val::Dec(Decimal::parse("12345678901234567.79").unwrap()));
        let v = run("a + b + 1", Raw::Num("0.1"), Raw::Num("0.2")).unwrap();
        assert_eq!(v, Val::Dec(Decimal::parse("1.3").unwrap()));
        assert_eq!(
            run("a + c", Raw::Num("1"), Raw::Missing).unwrap(),
            Val::Null
        );
        assert!(matches!(
            run("a + b", s("x"), Raw::Num("1")),
            Err(Stop::Fault(_))
        ));
    }

    #[test]
    fn conversions_accept_oracle_forms_and_refuse_mismatches() {
        let dec = ColumnType::Decimal {
            precision: 18,
            scale: 2,
        };
        assert_eq!(
            convert(Val::Num("1250.00"), dec).unwrap(),
            Value::Decimal(Decimal::new(125000, 2))
        );
        assert_eq!(
            convert(Val::Num("0.1"), dec).unwrap(),
            Value::Decimal(Decimal::new(10, 2))
        );
        assert!(
            convert(Val::Num("0.125"), dec)
                .unwrap_err()
                .contains("more than 2 decimal places")
        );
        assert!(
            convert(Val::Num("1234567890123456789"), dec)
                .unwrap_err()
                .contains("does not fit")
        );
        assert!(
            convert(Val::Str("abc".into()), dec)
                .unwrap_err()
                .contains("text \"abc\" is not a number")
        );
        let wide = ColumnType::Decimal {
            precision: 38,
            scale: 9,
        };
        assert_eq!(
            convert(Val::Num("12345678901234567890.123456789"), wide).unwrap(),
            Value::Decimal(Decimal::parse("12345678901234567890.123456789").unwrap())
        );
        assert_eq!(
            convert(Val::Num("300100412233001"), ColumnType::Integer).unwrap(),
            Value::Integer(300100412233001)
        );
        assert_eq!(
            convert(Val::Num("-7"), ColumnType::Integer).unwrap(),
            Value::Integer(-7)
        );
        assert_eq!(
            convert(Val::Str("42".into()), ColumnType::Integer).unwrap(),
            Value::Integer(42)
        );
        assert!(convert(Val::Num("1.5"), ColumnType::Integer).is_err());
        assert!(convert(Val::Num("99999999999999999999"), ColumnType::Integer).is_err());
        assert_eq!(
            convert(Val::Str("Y".into()), ColumnType::Boolean).unwrap(),
            Value::Boolean(true)
        );
        assert_eq!(
            convert(Val::Str("n".into()), ColumnType::Boolean).unwrap(),
            Value::Boolean(false)
        );
        assert_eq!(
            convert(Val::Bool(false), ColumnType::Boolean).unwrap(),
            Value::Boolean(false)
        );
        for (text, flag) in [
            ("Yes", true),
            (" NO ", false),
            ("True", true),
            ("false", false),
        ] {
            assert_eq!(
                convert(Val::Str(text.into()), ColumnType::Boolean).unwrap(),
                Value::Boolean(flag),
                "{text:?}"
            );
        }
        assert!(convert(Val::Str("maybe".into()), ColumnType::Boolean).is_err());
        assert!(convert(Val::Num("1"), ColumnType::Boolean).is_err());
        assert_eq!(
            convert(Val::Str("2024-05-02".into()), ColumnType::Date).unwrap(),
            Value::Date(parse_date("2024-05-02").unwrap())
        );
        assert!(convert(Val::Str("02/05/2024".into()), ColumnType::Date).is_err());
        for ts in ["2024-05-03T09:02:51.077+00:00", "2024-05-03T09:02:51+00:00"] {
            assert_eq!(
                convert(Val::Str(ts.into()), ColumnType::Timestamp).unwrap(),
                Value::Timestamp(parse_timestamp(ts).unwrap())
            );
        }
        assert!(convert(Val::Str("2024-05-03".into()), ColumnType::Timestamp).is_err());
        assert_eq!(
            convert(Val::Num("1.5"), ColumnType::Double).unwrap(),
            Value::Double(1.5)
        );
        assert_eq!(
            convert(Val::Num("1253"), ColumnType::Text).unwrap(),
            Value::Text("1253".into())
        );
        assert!(convert(Val::Json("{}", "object"), ColumnType::Text).is_err());
        assert_eq!(
            convert(Val::Null, ColumnType::Integer).unwrap(),
            Value::Null
        );
    }

    #[test]
    fn doubles_are_finite_numbers_only() {
        // Bug: a double column took the texts "NaN", "inf" and
        // "infinity", and the number 1e400 as infinity.
        for bad in ["NaN", "nan", "inf", "-infinity", "1e400", "+Inf"] {
            assert!(
                convert(Val::Str(bad.into()), ColumnType::Double).is_err(),
                "{bad}"
            );
        }
        assert!(convert(Val::Num("1e400"), ColumnType::Double).is_err());
        assert!(convert(Val::Num("-2e308"), ColumnType::Double).is_err());
        assert_eq!(
            convert(Val::Str(" 2.5e3 ".into()), ColumnType::Double).unwrap(),
            Value::Double(2500.0)
        );
        assert_eq!(
            convert(Val::Num("1e-400"), ColumnType::Double).unwrap(),
            Value::Double(0.0)
        );
    }

    #[test]
    fn computed_texts_are_capped() {
        // Bug: nothing bounded a computed text; each nested replace() can
        // multiply its length, so a short script could ask for gigabytes.
        let tenfold = |inner: String| format!("replace({inner}, 'x', 'xxxxxxxxxx')");
        let mut expr = "a".to_owned();
        for _ in 0..12 {
            expr = tenfold(expr);
        }
        let long = "x".repeat(1000);
        let Err(Stop::Fault(f)) = run(&expr, s(&long), Raw::Missing) else {
            panic!("a 10^15-byte text was computed");
        };
        assert!(f.message.contains("more than 1048576"), "{}", f.message);
        // Concatenating and case mapping stop at the same size.
        let big = "y".repeat(MAX_TEXT_LEN / 2 + 1);
        assert!(matches!(
            run("concat(a, a)", s(&big), Raw::Missing),
            Err(Stop::Fault(_))
        ));
        assert_eq!(
            text(run("concat(a, b)", s(&big), s("z"))).len(),
            big.len() + 1
        );
        // U+0390 (2 bytes) upper-cases to three characters (6 bytes).
        let greek = "\u{390}".repeat(MAX_TEXT_LEN / 4);
        assert!(matches!(
            run("upper(a)", s(&greek), Raw::Missing),
            Err(Stop::Fault(_))
        ));
        // Under the cap, replace() works as before.
        assert_eq!(
            text(run(&tenfold("a".into()), s("axa"), Raw::Missing)),
            "axxxxxxxxxxa"
        );
    }

    #[test]
    fn fast_decimal_path_matches_full_parser() {
        for t in [
            "0",
            "-0.10",
            "1250.00",
            "123456789012345678",
            "1234567890123456789",
            "1e3",
            "-12.5E-1",
            ".5",
        ] {
            assert_eq!(parse_decimal(t).ok(), Decimal::parse(t).ok(), "{t}");
        }
    }
}
