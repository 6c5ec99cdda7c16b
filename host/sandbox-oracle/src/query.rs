//! The `q` parameter in its two dialects, chosen by `REST-Framework-Version`:
//!
//! - **v1, query-by-example**: `;` separates conditions (AND); each is
//!   `Attr<op>value` or `Attr value` (`*` wildcards), and a value may chain
//!   more operators on the same attribute (`Deptno>=10 and <= 30`). Anything
//!   else after ` and ` is taken as part of the literal, so
//!   `A=Y and B=5` silently matches nothing (200, 0 rows), as on Fusion.
//! - **v2+, row-match expressions**: `and`/`or`/`not`, parentheses,
//!   `= > < >= <= <> !=`, `in`, `between`, `like`, `is [not] null`,
//!   `upper(Attr)`, strings in single quotes, child paths
//!   (`invoiceLines.LineAmount > 5`). A `;` is a 400, as on Fusion.
//!
//! Both compile to one [`Pred`] with literals already converted to the
//! attribute's type.

use std::cmp::Ordering;

use mlc_common::time::{parse_date, parse_timestamp};

use crate::model::{Rec, Ty, V, get};
use crate::resources::Node;

/// A compiled filter.
#[derive(Clone, Debug)]
pub(crate) enum Pred {
    /// All must hold.
    And(Vec<Pred>),
    /// One must hold.
    Or(Vec<Pred>),
    /// Negation.
    Not(Box<Pred>),
    /// `attr op literal`.
    Cmp(Attr, Op, V),
    /// `attr [not] in (…)`.
    In(Attr, Vec<V>),
    /// `attr between lo and hi` (inclusive).
    Between(Attr, V, V),
    /// `attr like pattern`.
    Like(Attr, Vec<LikeTok>),
    /// `attr is null`.
    IsNull(Attr),
    /// Never true (a v1 literal that cannot be compared).
    False,
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// `=`
    Eq,
    /// `<>` or `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// The attribute side of a condition.
#[derive(Clone, Debug)]
pub(crate) struct Attr {
    /// A child collection (`invoiceLines.LineAmount`), matched when any
    /// child row matches.
    pub child: Option<&'static str>,
    /// Attribute name.
    pub field: &'static str,
    /// Compare `upper(field)`.
    pub upper: bool,
}

/// One element of a `like` pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LikeTok {
    /// A literal character.
    Char(char),
    /// Any single character (`_`).
    One,
    /// Any run of characters (`%`, or `*` in v1).
    Any,
}

/// Why a `q` was refused (a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum QueryError {
    /// Malformed expression.
    #[error("{0}")]
    Syntax(String),
    /// No such attribute.
    #[error("The attribute {0} is not found in the resource.")]
    UnknownAttribute(String),
    /// The attribute is not queryable.
    #[error("The attribute {0} is not queryable.")]
    NotQueryable(String),
    /// A literal that does not fit the attribute's type.
    #[error("The value {value} is not valid for attribute {attr}.")]
    BadValue {
        /// Attribute.
        attr: String,
        /// Literal as written.
        value: String,
    },
}

impl QueryError {
    /// The ADF-style error code reported with this error.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            QueryError::Syntax(_) => "27500",
            QueryError::UnknownAttribute(_) => "27501",
            QueryError::NotQueryable(_) => "27502",
            QueryError::BadValue { .. } => "27503",
        }
    }
}

/// Resolves an attribute path against a resource shape.
fn resolve(node: &'static Node, path: &str, upper: bool) -> Result<(Attr, Ty), QueryError> {
    let (child, name) = match path.split_once('.') {
        Some((c, f)) => (Some(c), f),
        None => (None, path),
    };
    let target = match child {
        Some(c) => node
            .child(c)
            .ok_or_else(|| QueryError::UnknownAttribute(path.to_owned()))?,
        None => node,
    };
    let def = target
        .field(name)
        .ok_or_else(|| QueryError::UnknownAttribute(path.to_owned()))?;
    if !def.queryable {
        return Err(QueryError::NotQueryable(path.to_owned()));
    }
    Ok((
        Attr {
            child: child.map(|_| target.name),
            field: def.name,
            upper,
        },
        if upper { Ty::Str } else { def.ty },
    ))
}

/// Converts literal text to a value of type `ty`. Dates and timestamps are
/// lenient (tolerant reading of the UNCONFIRMED date-literal grammar): a
/// timestamp attribute takes a full timestamp with offset, one without an
/// offset (read as UTC), or a plain date (its midnight UTC); a date
/// attribute takes a date or the date part of a timestamp.
fn coerce(ty: Ty, text: &str) -> Option<V> {
    match ty {
        Ty::Str => Some(V::str(text.to_owned())),
        Ty::Int => {
            if let Ok(i) = text.parse::<i64>() {
                Some(V::Int(i))
            } else {
                parse_dec(text)
            }
        }
        Ty::Num => parse_dec(text),
        Ty::Bool => match text.to_ascii_lowercase().as_str() {
            "true" | "y" => Some(V::Bool(true)),
            "false" | "n" => Some(V::Bool(false)),
            _ => None,
        },
        Ty::Date => parse_date(text)
            .ok()
            .or_else(|| text.get(0..10).and_then(|d| parse_date(d).ok()))
            .map(V::Date),
        Ty::Ts => parse_timestamp(text)
            .ok()
            .or_else(|| parse_timestamp(&format!("{text}Z")).ok())
            .or_else(|| parse_date(text).ok().map(|d| i64::from(d) * 86_400_000_000))
            .map(|t| V::Ts(t, true)),
    }
}

fn parse_dec(text: &str) -> Option<V> {
    let d = mlc_common::Decimal::parse(text).ok()?;
    let unscaled = i64::try_from(d.unscaled).ok()?;
    Some(V::Dec(unscaled, d.scale))
}

fn like_pattern(text: &str, v1: bool) -> Vec<LikeTok> {
    text.chars()
        .map(|c| match c {
            '%' => LikeTok::Any,
            '*' if v1 => LikeTok::Any,
            '_' if !v1 => LikeTok::One,
            c => LikeTok::Char(c),
        })
        .collect()
}

fn like_match(pat: &[LikeTok], text: &[char]) -> bool {
    // Iterative wildcard match with backtracking to the last `Any`.
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pat.get(p) {
            Some(LikeTok::Char(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            Some(LikeTok::One) => {
                p += 1;
                t += 1;
            }
            Some(LikeTok::Any) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pat[p.min(pat.len())..].iter().all(|x| *x == LikeTok::Any)
}

// ---------------------------------------------------------------- v1 (QBE)

/// Parses a v1 query-by-example `q`.
pub(crate) fn parse_v1(node: &'static Node, q: &str) -> Result<Pred, QueryError> {
    let mut all = Vec::new();
    for cond in split_outside_quotes(q, ';') {
        let cond = cond.trim();
        if cond.is_empty() {
            continue;
        }
        all.push(parse_v1_condition(node, cond)?);
    }
    Ok(Pred::And(all))
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        if c == '\'' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

fn ident_len(s: &str) -> usize {
    s.char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '.'))
        .map_or(s.len(), |(i, _)| i)
}

fn take_op(s: &str) -> Option<(Op, &str)> {
    for (tok, op) in [
        (">=", Op::Ge),
        ("<=", Op::Le),
        ("<>", Op::Ne),
        ("!=", Op::Ne),
        ("=", Op::Eq),
        (">", Op::Gt),
        ("<", Op::Lt),
    ] {
        if let Some(rest) = s.strip_prefix(tok) {
            return Some((op, rest));
        }
    }
    None
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    if s.len() >= 2
        && ((s.starts_with('\'') && s.ends_with('\'')) || (s.starts_with('"') && s.ends_with('"')))
    {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

fn parse_v1_condition(node: &'static Node, cond: &str) -> Result<Pred, QueryError> {
    let n = ident_len(cond);
    if n == 0 {
        return Err(QueryError::Syntax(format!(
            "The query expression {cond} is not valid."
        )));
    }
    let (attr, ty) = resolve(node, &cond[..n], false)?;
    let rest = cond[n..].trim_start();
    let lower = rest.to_ascii_lowercase();
    if let Some(value) = lower.strip_prefix("like ").map(|_| &rest[5..]) {
        return Ok(v1_like(attr, ty, unquote(value)));
    }
    if lower == "is null" {
        return Ok(Pred::IsNull(attr));
    }
    if lower == "is not null" {
        return Ok(Pred::Not(Box::new(Pred::IsNull(attr))));
    }
    let (first_op, mut value) = match take_op(rest) {
        Some((op, v)) => (op, v),
        None if rest.is_empty() => {
            return Err(QueryError::Syntax(format!(
                "The query expression {cond} is not valid."
            )));
        }
        // `Attr value`: equality, `*` wildcards make it a pattern.
        None => (Op::Eq, rest),
    };
    // Split chained ranges (`>=10 and <= 30`, `=A or =B`) on the same
    // attribute; a connective not followed by an operator stays in the
    // literal (the Fusion hazard).
    let mut conj: Vec<(bool, Op, String)> = Vec::new();
    let mut op = first_op;
    let mut is_or = false;
    loop {
        let mut split = None;
        let lower_value = value.to_ascii_lowercase();
        for kw in [" and ", " or "] {
            let mut from = 0;
            while let Some(pos) = lower_value[from..].find(kw) {
                let at = from + pos;
                if take_op(value[at + kw.len()..].trim_start()).is_some()
                    && split.is_none_or(|(s, _): (usize, &str)| at < s)
                {
                    split = Some((at, kw));
                    break;
                }
                from = at + kw.len();
            }
        }
        match split {
            Some((at, kw)) => {
                conj.push((is_or, op, value[..at].to_owned()));
                let next = value[at + kw.len()..].trim_start();
                let Some((next_op, next_value)) = take_op(next) else {
                    break;
                };
                is_or = kw == " or ";
                op = next_op;
                value = next_value;
            }
            None => {
                conj.push((is_or, op, value.to_owned()));
                break;
            }
        }
    }
    let mut ors: Vec<Pred> = Vec::new();
    let mut ands: Vec<Pred> = Vec::new();
    for (is_or, op, raw) in conj {
        let text = unquote(&raw).to_owned();
        let p = if op == Op::Eq && text.contains('*') {
            v1_like(attr.clone(), ty, &text)
        } else {
            match coerce(ty, &text) {
                Some(v) => Pred::Cmp(attr.clone(), op, v),
                // QBE silently matches nothing on a literal it cannot
                // compare (this is how ` and ` under v1 gives 0 rows).
                None => Pred::False,
            }
        };
        if is_or && !ands.is_empty() {
            ors.push(Pred::And(std::mem::take(&mut ands)));
        }
        ands.push(p);
    }
    if !ands.is_empty() {
        ors.push(Pred::And(ands));
    }
    Ok(if ors.len() == 1 {
        ors.remove(0)
    } else {
        Pred::Or(ors)
    })
}

fn v1_like(attr: Attr, ty: Ty, text: &str) -> Pred {
    if ty == Ty::Str {
        Pred::Like(attr, like_pattern(text, true))
    } else {
        Pred::False
    }
}

// ------------------------------------------------------------ v2 (row-match)

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Op(Op),
    LParen,
    RParen,
    Comma,
}

fn lex(q: &str) -> Result<Vec<Tok>, QueryError> {
    let chars: Vec<char> = q.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let bad = |msg: String| QueryError::Syntax(msg);
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            ';' => {
                return Err(bad(
                    "The query expression is not valid: ';' is not allowed in a row-match \
                     expression (REST-Framework-Version 2 or later)."
                        .to_owned(),
                ));
            }
            '(' => {
                toks.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                toks.push(Tok::RParen);
                i += 1;
            }
            ',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(bad("Unterminated string literal.".to_owned())),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&c) => {
                            s.push(c);
                            i += 1;
                        }
                    }
                }
                toks.push(Tok::Str(s));
            }
            '=' | '<' | '>' | '!' => {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                let (op, len) = match two.as_str() {
                    ">=" => (Op::Ge, 2),
                    "<=" => (Op::Le, 2),
                    "<>" | "!=" => (Op::Ne, 2),
                    _ => match c {
                        '=' => (Op::Eq, 1),
                        '<' => (Op::Lt, 1),
                        '>' => (Op::Gt, 1),
                        _ => return Err(bad(format!("Unexpected character {c}."))),
                    },
                };
                toks.push(Tok::Op(op));
                i += len;
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                toks.push(Tok::Num(chars[start..i].iter().collect()));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
                {
                    i += 1;
                }
                toks.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            c => {
                return Err(bad(format!(
                    "Unexpected character {c} in the query expression."
                )));
            }
        }
    }
    Ok(toks)
}

/// Deepest nesting of parentheses and `not` a `q` may use.
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    node: &'static Node,
    toks: &'a [Tok],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, QueryError> {
        Err(QueryError::Syntax(format!(
            "The query expression is not valid: {what} at token {}.",
            self.pos + 1
        )))
    }

    fn expr(&mut self) -> Result<Pred, QueryError> {
        let mut parts = vec![self.term()?];
        while self.eat_kw("or") {
            parts.push(self.term()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Pred::Or(parts)
        })
    }

    fn term(&mut self) -> Result<Pred, QueryError> {
        let mut parts = vec![self.factor()?];
        while self.eat_kw("and") {
            parts.push(self.factor()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Pred::And(parts)
        })
    }

    fn factor(&mut self) -> Result<Pred, QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err("the expression nests too deeply");
        }
        let result = if self.eat_kw("not") {
            self.factor().map(|p| Pred::Not(Box::new(p)))
        } else if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            match self.expr() {
                Ok(e) if self.next() == Some(Tok::RParen) => Ok(e),
                Ok(_) => self.err("expected )"),
                Err(e) => Err(e),
            }
        } else {
            self.condition()
        };
        self.depth -= 1;
        result
    }

    fn operand(&mut self) -> Result<(Attr, Ty), QueryError> {
        match self.next() {
            Some(Tok::Ident(name)) if name.eq_ignore_ascii_case("upper") => {
                if self.next() != Some(Tok::LParen) {
                    return self.err("expected ( after upper");
                }
                let Some(Tok::Ident(attr)) = self.next() else {
                    return self.err("expected an attribute in upper()");
                };
                if self.next() != Some(Tok::RParen) {
                    return self.err("expected )");
                }
                resolve(self.node, &attr, true)
            }
            Some(Tok::Ident(name)) => resolve(self.node, &name, false),
            _ => self.err("expected an attribute"),
        }
    }

    fn literal(&mut self, attr: &Attr, ty: Ty) -> Result<V, QueryError> {
        let (text, quoted) = match self.next() {
            Some(Tok::Str(s)) => (s, true),
            Some(Tok::Num(n)) => (n, false),
            Some(Tok::Ident(w))
                if ty == Ty::Bool
                    && (w.eq_ignore_ascii_case("true") || w.eq_ignore_ascii_case("false")) =>
            {
                (w, false)
            }
            _ => return self.err("expected a literal (strings in single quotes)"),
        };
        if !quoted && ty == Ty::Str {
            // Strings must be quoted in row-match expressions.
            return Err(QueryError::BadValue {
                attr: attr.field.to_owned(),
                value: text,
            });
        }
        coerce(ty, &text).ok_or(QueryError::BadValue {
            attr: attr.field.to_owned(),
            value: text,
        })
    }

    fn condition(&mut self) -> Result<Pred, QueryError> {
        let (attr, ty) = self.operand()?;
        if self.eat_kw("is") {
            let negate = self.eat_kw("not");
            if !self.eat_kw("null") {
                return self.err("expected null");
            }
            let p = Pred::IsNull(attr);
            return Ok(if negate { Pred::Not(Box::new(p)) } else { p });
        }
        let negate = self.eat_kw("not");
        if self.eat_kw("in") {
            if self.next() != Some(Tok::LParen) {
                return self.err("expected ( after in");
            }
            let mut values = vec![self.literal(&attr, ty)?];
            while self.peek() == Some(&Tok::Comma) {
                self.pos += 1;
                values.push(self.literal(&attr, ty)?);
            }
            if self.next() != Some(Tok::RParen) {
                return self.err("expected ) after the in list");
            }
            return Ok(not_if(negate, Pred::In(attr, values)));
        }
        if self.eat_kw("between") {
            let lo = self.literal(&attr, ty)?;
            if !self.eat_kw("and") {
                return self.err("expected and in between");
            }
            let hi = self.literal(&attr, ty)?;
            return Ok(not_if(negate, Pred::Between(attr, lo, hi)));
        }
        if self.eat_kw("like") {
            let Some(Tok::Str(pattern)) = self.next() else {
                return self.err("expected a quoted pattern after like");
            };
            return Ok(not_if(
                negate,
                Pred::Like(attr, like_pattern(&pattern, false)),
            ));
        }
        if negate {
            return self.err("expected in, between or like after not");
        }
        let Some(Tok::Op(op)) = self.next() else {
            return self.err("expected a comparison operator");
        };
        let v = self.literal(&attr, ty)?;
        Ok(Pred::Cmp(attr, op, v))
    }
}

fn not_if(negate: bool, p: Pred) -> Pred {
    if negate { Pred::Not(Box::new(p)) } else { p }
}

/// Parses a v2+ row-match `q`.
pub(crate) fn parse_v2(node: &'static Node, q: &str) -> Result<Pred, QueryError> {
    let toks = lex(q)?;
    if toks.is_empty() {
        return Ok(Pred::And(Vec::new()));
    }
    let mut p = Parser {
        node,
        toks: &toks,
        pos: 0,
        depth: 0,
    };
    let e = p.expr()?;
    if p.pos < toks.len() {
        return p.err("unexpected text after the expression");
    }
    Ok(e)
}

// ---------------------------------------------------------------- evaluate

fn cmp_holds(op: Op, ord: Ordering) -> bool {
    match op {
        Op::Eq => ord == Ordering::Equal,
        Op::Ne => ord != Ordering::Equal,
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
    }
}

fn value_of(rec: &Rec, attr: &Attr) -> V {
    let v = get(rec, attr.field).cloned().unwrap_or(V::Null);
    if attr.upper {
        match v.text() {
            Some(t) => V::str(t.to_uppercase()),
            None => V::Null,
        }
    } else {
        v
    }
}

fn holds_on(p: &Pred, rec: &Rec) -> bool {
    let attr = match p {
        Pred::Cmp(a, ..)
        | Pred::In(a, _)
        | Pred::Between(a, ..)
        | Pred::Like(a, _)
        | Pred::IsNull(a) => a,
        _ => return false,
    };
    let v = value_of(rec, attr);
    match p {
        Pred::Cmp(_, op, lit) => v.compare(lit).is_some_and(|o| cmp_holds(*op, o)),
        Pred::In(_, lits) => lits.iter().any(|l| v.compare(l) == Some(Ordering::Equal)),
        Pred::Between(_, lo, hi) => {
            v.compare(lo).is_some_and(|o| o != Ordering::Less)
                && v.compare(hi).is_some_and(|o| o != Ordering::Greater)
        }
        Pred::Like(_, pat) => v.text().is_some_and(|t| {
            let chars: Vec<char> = t.chars().collect();
            like_match(pat, &chars)
        }),
        Pred::IsNull(_) => v == V::Null,
        _ => false,
    }
}

/// Whether `rec` satisfies `p`; `kids` yields the rows of a child
/// collection for child-path conditions.
pub(crate) fn eval(p: &Pred, rec: &Rec, kids: &mut dyn FnMut(&str) -> Vec<Rec>) -> bool {
    match p {
        Pred::And(ps) => ps.iter().all(|q| eval(q, rec, kids)),
        Pred::Or(ps) => ps.iter().any(|q| eval(q, rec, kids)),
        Pred::Not(q) => !eval(q, rec, kids),
        Pred::False => false,
        Pred::Cmp(a, ..)
        | Pred::In(a, _)
        | Pred::Between(a, ..)
        | Pred::Like(a, _)
        | Pred::IsNull(a) => match a.child {
            None => holds_on(p, rec),
            Some(c) => kids(c).iter().any(|row| holds_on(p, row)),
        },
    }
}

/// Attribute names a predicate reads (child paths as `child.field`).
pub(crate) fn fields_used(p: &Pred, out: &mut Vec<String>) {
    match p {
        Pred::And(ps) | Pred::Or(ps) => ps.iter().for_each(|q| fields_used(q, out)),
        Pred::Not(q) => fields_used(q, out),
        Pred::False => {}
        Pred::Cmp(a, ..)
        | Pred::In(a, _)
        | Pred::Between(a, ..)
        | Pred::Like(a, _)
        | Pred::IsNull(a) => out.push(match a.child {
            Some(c) => format!("{c}.{}", a.field),
            None => a.field.to_owned(),
        }),
    }
}

/// Inclusive bounds `(lower, upper)` on `field` implied by every row matching `p`
/// (inclusive; `None` = unbounded). Used to start and stop scans early.
pub(crate) fn bounds(p: &Pred, field: &str) -> (Option<V>, Option<V>) {
    fn tighter(a: Option<V>, b: Option<V>, want_max: bool) -> Option<V> {
        match (a, b) {
            (Some(x), Some(y)) => {
                let o = x.compare(&y).unwrap_or(Ordering::Equal);
                Some(if (o == Ordering::Less) == want_max {
                    y
                } else {
                    x
                })
            }
            (x, None) | (None, x) => x,
        }
    }
    fn looser(a: Option<V>, b: Option<V>, want_min: bool) -> Option<V> {
        match (a, b) {
            (Some(x), Some(y)) => {
                let o = x.compare(&y).unwrap_or(Ordering::Equal);
                Some(if (o == Ordering::Less) == want_min {
                    x
                } else {
                    y
                })
            }
            _ => None,
        }
    }
    match p {
        Pred::And(ps) => ps.iter().fold((None, None), |(lo, hi), q| {
            let (l, h) = bounds(q, field);
            (tighter(lo, l, true), tighter(hi, h, false))
        }),
        Pred::Or(ps) => {
            let mut it = ps.iter().map(|q| bounds(q, field));
            let Some(first) = it.next() else {
                return (None, None);
            };
            it.fold(first, |(lo, hi), (l, h)| {
                (looser(lo, l, true), looser(hi, h, false))
            })
        }
        Pred::Cmp(a, op, v) if a.child.is_none() && !a.upper && a.field == field => match op {
            Op::Eq => (Some(v.clone()), Some(v.clone())),
            Op::Ge => (Some(v.clone()), None),
            Op::Le => (None, Some(v.clone())),
            // Integers and timestamps (whole microseconds) are discrete:
            // a strict bound becomes an inclusive one.
            Op::Gt => (Some(step(v, 1)), None),
            Op::Lt => (None, Some(step(v, -1))),
            Op::Ne => (None, None),
        },
        Pred::Between(a, lo, hi) if a.child.is_none() && !a.upper && a.field == field => {
            (Some(lo.clone()), Some(hi.clone()))
        }
        _ => (None, None),
    }
}

fn step(v: &V, by: i64) -> V {
    match v {
        V::Int(i) => V::Int(i.saturating_add(by)),
        V::Ts(t, m) => V::Ts(t.saturating_add(by), *m),
        other => other.clone(),
    }
}

/// True when `p` is a conjunction of plain comparisons on `field` only
/// (no `<>`): the rows it matches form one contiguous range of `field`,
/// so a scan can skip an offset without evaluating each row.
pub(crate) fn is_range_on(p: &Pred, field: &str) -> bool {
    match p {
        Pred::And(ps) => ps.iter().all(|q| is_range_on(q, field)),
        Pred::Cmp(a, op, _) => a.child.is_none() && !a.upper && a.field == field && *op != Op::Ne,
        Pred::Between(a, ..) => a.child.is_none() && !a.upper && a.field == field,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::resource;

    fn inv() -> &'static Node {
        &resource("invoices").unwrap().node
    }

    fn rec() -> Rec {
        vec![
            ("InvoiceId", V::Int(300_100_000_000_005)),
            ("InvoiceNumber", V::str("INV-000000006")),
            ("InvoiceAmount", V::Dec(125_000, 2)),
            ("Supplier", V::str("Acme Office Supply Inc")),
            ("PaymentTerms", V::Null),
            ("CanceledFlag", V::Bool(false)),
            (
                "InvoiceDate",
                V::Date(mlc_common::time::parse_date("2024-05-02").unwrap()),
            ),
            (
                "LastUpdateDate",
                V::Ts(
                    parse_timestamp("2024-05-03T09:02:51.077+00:00").unwrap(),
                    true,
                ),
            ),
        ]
    }

    fn v2(q: &str) -> bool {
        let p = parse_v2(inv(), q).unwrap_or_else(|e| panic!("{q}: {e}"));
        eval(&p, &rec(), &mut |_| Vec::new())
    }

    fn v1(q: &str) -> bool {
        let p = parse_v1(inv(), q).unwrap_or_else(|e| panic!("{q}: {e}"));
        eval(&p, &rec(), &mut |_| Vec::new())
    }

    #[test]
    fn row_match_operators() {
        assert!(v2("InvoiceAmount = 1250"));
        assert!(v2("InvoiceAmount >= 1250.00 and InvoiceAmount < 1250.01"));
        assert!(v2("InvoiceAmount <> 1 and InvoiceAmount != 2"));
        assert!(v2("InvoiceId in (1, 300100000000005)"));
        assert!(!v2("InvoiceId not in (300100000000005)"));
        assert!(v2("InvoiceAmount between 1000 and 2000"));
        assert!(v2("Supplier like 'Acme%'"));
        assert!(v2("Supplier like 'A_me%Inc'"));
        assert!(!v2("Supplier like 'acme%'"));
        assert!(v2("upper(Supplier) like 'ACME%'"));
        assert!(v2("PaymentTerms is null and Supplier is not null"));
        assert!(v2(
            "(InvoiceAmount < 0 or InvoiceAmount > 1000) and CanceledFlag = false"
        ));
        assert!(v2("LastUpdateDate >= '2024-05-03T09:02:51.077+00:00'"));
        assert!(!v2("LastUpdateDate > '2024-05-03T09:02:51.077+00:00'"));
        assert!(v2("LastUpdateDate > '2024-05-03'"));
        assert!(v2("InvoiceDate = '2024-05-02'"));
        assert!(v2("Supplier = 'Acme Office Supply Inc'"));
        assert!(v2("not (InvoiceAmount = 5)"));
    }

    #[test]
    fn row_match_refusals() {
        let deep = format!(
            "{}InvoiceAmount > 5{}",
            "(".repeat(10_000),
            ")".repeat(10_000)
        );
        for (q, want) in [
            ("InvoiceAmount > 5;Supplier = 'x'", "Syntax"),
            ("Nope = 1", "UnknownAttribute"),
            ("LiabilityDistribution = 'x'", "NotQueryable"),
            ("Supplier = Acme", "Syntax"),
            ("InvoiceNumber = 5", "BadValue"),
            ("InvoiceAmount = 'abc'", "BadValue"),
            ("InvoiceAmount >", "Syntax"),
            ("(InvoiceAmount > 5", "Syntax"),
            (deep.as_str(), "Syntax"),
        ] {
            let err = parse_v2(inv(), q).expect_err(q);
            assert!(format!("{err:?}").starts_with(want), "{q}: {err:?}");
        }
    }

    #[test]
    fn query_by_example() {
        assert!(v1("InvoiceAmount=1250.00"));
        assert!(v1("InvoiceAmount>=1000 and <= 2000;CanceledFlag=false"));
        assert!(!v1("InvoiceAmount>=1300 and <= 2000"));
        assert!(v1("Supplier Acme*"));
        assert!(v1("Supplier LIKE 'Acme*'"));
        assert!(v1("Supplier='Acme Office Supply Inc'"));
        assert!(v1("LastUpdateDate >= '2024-05-01'"));
        assert!(v1("InvoiceAmount=1 or =1250"));
        // The hazard: ` and ` joining two attributes is a literal.
        assert!(!v1("CanceledFlag=false and InvoiceAmount=1250"));
        assert!(!v1(
            "Supplier=Acme Office Supply Inc and InvoiceAmount=1250"
        ));
        assert!(matches!(
            parse_v1(inv(), "Nope=1"),
            Err(QueryError::UnknownAttribute(_))
        ));
        assert!(matches!(
            parse_v1(inv(), "LiabilityDistribution=x"),
            Err(QueryError::NotQueryable(_))
        ));
    }

    #[test]
    fn child_paths_match_any_child() {
        let p = parse_v2(inv(), "invoiceLines.LineAmount > 100").unwrap();
        let mut kids = |c: &str| {
            assert_eq!(c, "invoiceLines");
            vec![
                vec![("LineAmount", V::Dec(5, 0))],
                vec![("LineAmount", V::Dec(500, 0))],
            ]
        };
        assert!(eval(&p, &rec(), &mut kids));
    }

    #[test]
    fn bounds_of_keyset_continuation() {
        let p = parse_v2(
            inv(),
            "LastUpdateDate > '2024-05-03T00:00:00Z' or (LastUpdateDate = '2024-05-03T00:00:00Z' and InvoiceId > 5)",
        )
        .unwrap();
        let (lo, hi) = bounds(&p, "LastUpdateDate");
        assert_eq!(
            lo,
            Some(V::Ts(
                parse_timestamp("2024-05-03T00:00:00Z").unwrap(),
                true
            ))
        );
        assert_eq!(hi, None);
        assert!(!is_range_on(&p, "LastUpdateDate"));
        let r = parse_v2(
            inv(),
            "LastUpdateDate >= '2024-05-03' and LastUpdateDate < '2024-06-01'",
        )
        .unwrap();
        assert!(is_range_on(&r, "LastUpdateDate"));
    }

    #[test]
    fn like_wildcards() {
        let m =
            |p: &str, t: &str| like_match(&like_pattern(p, false), &t.chars().collect::<Vec<_>>());
        assert!(m("%", ""));
        assert!(m("a%c", "abbbc"));
        assert!(!m("a%c", "abbbd"));
        assert!(m("%b%", "abc"));
        assert!(m("a_c", "abc"));
        assert!(!m("a_c", "ac"));
    }
}
