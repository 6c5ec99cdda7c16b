//! The expression language used in `expr = "..."` and `filter = "..."`.
//!
//! ```text
//! expr    := or
//! or      := and ("or" and)*
//! and     := not ("and" not)*
//! not     := "not" not | compare
//! compare := sum (("==" | "!=" | "<" | "<=" | ">" | ">=") sum)?
//! sum     := atom (("+" | "-") atom)*
//! atom    := 'text' | "text" | number | true | false | null
//!          | path | name "(" [expr ("," expr)*] ")" | "(" expr ")"
//! path    := segment ("." segment)*     segment := Name | `any text`
//! ```
//!
//! Parsing yields an [`Expr`] whose field paths are still names; the
//! compiler then gives each path its slot in the record scan.
//!
//! An expression nests at most [`MAX_EXPR_DEPTH`] levels (parentheses,
//! calls, `not`, and each operator of a chain such as `a + b + c`): the
//! parser, the evaluator and dropping the tree all recurse once per level,
//! so the limit bounds the stack they use whatever a tenant writes.

use mlc_common::Decimal;

/// How deep an expression may nest: each function call, `not` and binary
/// operator opens a level (`a + b + c` is two, `f(g(x))` two), and so does
/// each parenthesis while it is parsed. Far above what a mapping needs
/// (group a longer chain of `or`s with parentheses), and a small part of
/// the guest's 1 MiB stack (a debug build of the parser needs about
/// 16 KiB a level, an optimized one far less).
pub const MAX_EXPR_DEPTH: usize = 64;

/// A function of the language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    /// `upper(text)`
    Upper,
    /// `lower(text)`
    Lower,
    /// `trim(text)`
    Trim,
    /// `substring(text, start[, length])`, 1-based, in characters.
    Substring,
    /// `concat(a, b, ...)`; nulls count as empty text.
    Concat,
    /// `coalesce(a, b, ...)`: the first non-null.
    Coalesce,
    /// `segment(text, n[, separator])`: the n-th (1-based) part, `-` by default.
    Segment,
    /// `replace(text, from, to)`.
    Replace,
    /// `date(x)`: the calendar date of a timestamp as written (its own offset).
    Date,
    /// `year(x)`.
    Year,
    /// `month(x)`.
    Month,
    /// `quarter(x)`.
    Quarter,
    /// `day(x)`.
    Day,
    /// `period(x)`: `YYYY-MM`.
    Period,
    /// `flag(x)`: `true`/`false`, or the texts Y/N, Yes/No, True/False (any
    /// case), as a boolean.
    Flag,
    /// `if(condition, then, else)`.
    If,
    /// `lookup('dataset', key, 'Field')`.
    Lookup,
}

impl Func {
    /// Every function with its name and allowed argument counts.
    pub const ALL: &'static [(&'static str, Func, usize, usize)] = &[
        ("upper", Func::Upper, 1, 1),
        ("lower", Func::Lower, 1, 1),
        ("trim", Func::Trim, 1, 1),
        ("substring", Func::Substring, 2, 3),
        ("concat", Func::Concat, 1, usize::MAX),
        ("coalesce", Func::Coalesce, 1, usize::MAX),
        ("segment", Func::Segment, 2, 3),
        ("replace", Func::Replace, 3, 3),
        ("date", Func::Date, 1, 1),
        ("year", Func::Year, 1, 1),
        ("month", Func::Month, 1, 1),
        ("quarter", Func::Quarter, 1, 1),
        ("day", Func::Day, 1, 1),
        ("period", Func::Period, 1, 1),
        ("flag", Func::Flag, 1, 1),
        ("if", Func::If, 3, 3),
        ("lookup", Func::Lookup, 3, 3),
    ];

    fn by_name(name: &str) -> Option<(Func, usize, usize)> {
        Self::ALL
            .iter()
            .find(|(n, ..)| n.eq_ignore_ascii_case(name))
            .map(|&(_, f, min, max)| (f, min, max))
    }
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
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

/// A literal constant.
#[derive(Clone, Debug, PartialEq)]
pub enum Lit {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A number, exact.
    Num(Decimal),
    /// Text.
    Str(String),
}

/// A parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A constant.
    Lit(Lit),
    /// A field of the record (or of an expanded child); `slot` is set by
    /// the compiler.
    Field {
        /// The dotted path as written.
        path: String,
        /// Byte offset in the expression text (for errors).
        at: usize,
        /// Where the scan stores the value.
        slot: usize,
    },
    /// A function call.
    Call(Func, Vec<Expr>),
    /// `lookup('dataset', key, 'Field')` with its literal parts checked.
    Lookup {
        /// Reference dataset.
        dataset: String,
        /// The key expression.
        key: Box<Expr>,
        /// Field of the reference record to return.
        field: String,
    },
    /// `not x`
    Not(Box<Expr>),
    /// `a and b`
    And(Box<Expr>, Box<Expr>),
    /// `a or b`
    Or(Box<Expr>, Box<Expr>),
    /// `a <op> b`
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    /// `a + b` (numbers, exact)
    Add(Box<Expr>, Box<Expr>),
    /// `a - b` (numbers, exact)
    Sub(Box<Expr>, Box<Expr>),
}

impl Expr {
    /// Calls `f` with the dotted path of every field reference, in the
    /// order written (a lookup's key expression included).
    pub fn fields<'e>(&'e self, f: &mut dyn FnMut(&'e str)) {
        match self {
            Expr::Lit(_) => {}
            Expr::Field { path, .. } => f(path),
            Expr::Call(_, args) => args.iter().for_each(|a| a.fields(f)),
            Expr::Lookup { key, .. } => key.fields(f),
            Expr::Not(a) => a.fields(f),
            Expr::And(a, b)
            | Expr::Or(a, b)
            | Expr::Cmp(_, a, b)
            | Expr::Add(a, b)
            | Expr::Sub(a, b) => {
                a.fields(f);
                b.fields(f);
            }
        }
    }

    /// Calls `f` on every field reference, mutably.
    pub fn fields_mut(&mut self, f: &mut dyn FnMut(&str, usize, &mut usize)) {
        match self {
            Expr::Lit(_) => {}
            Expr::Field { path, at, slot } => f(path, *at, slot),
            Expr::Call(_, args) => args.iter_mut().for_each(|a| a.fields_mut(f)),
            Expr::Lookup { key, .. } => key.fields_mut(f),
            Expr::Not(a) => a.fields_mut(f),
            Expr::And(a, b)
            | Expr::Or(a, b)
            | Expr::Cmp(_, a, b)
            | Expr::Add(a, b)
            | Expr::Sub(a, b) => {
                a.fields_mut(f);
                b.fields_mut(f);
            }
        }
    }
}

/// A syntax error at a byte offset of the expression text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// Byte offset in the expression.
    pub at: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Path(String),
    Str(String),
    Num(String),
    LParen,
    RParen,
    Comma,
    Op(&'static str),
}

fn lex(text: &str) -> Result<Vec<(usize, Tok)>, SyntaxError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |at: usize, message: String| SyntaxError { at, message };
    while i < bytes.len() {
        let start = i;
        let b = bytes[i];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => {
                out.push((start, Tok::LParen));
                i += 1;
            }
            b')' => {
                out.push((start, Tok::RParen));
                i += 1;
            }
            b',' => {
                out.push((start, Tok::Comma));
                i += 1;
            }
            b'\'' | b'"' => {
                let quote = b;
                i += 1;
                let mut s = String::new();
                loop {
                    match bytes.get(i) {
                        None => return Err(err(start, "text is not closed".into())),
                        Some(&c) if c == quote => {
                            // a doubled quote stands for one
                            if bytes.get(i + 1) == Some(&quote) {
                                s.push(char::from(quote));
                                i += 2;
                            } else {
                                i += 1;
                                break;
                            }
                        }
                        Some(_) => {
                            let ch = text
                                .get(i..)
                                .and_then(|r| r.chars().next())
                                .ok_or_else(|| err(i, "bad character".into()))?;
                            s.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
                out.push((start, Tok::Str(s)));
            }
            b'0'..=b'9' => {
                while let Some(b'0'..=b'9' | b'.') = bytes.get(i) {
                    i += 1;
                }
                out.push((start, Tok::Num(text[start..i].to_owned())));
            }
            b'=' | b'!' | b'<' | b'>' => {
                let two = bytes.get(i + 1) == Some(&b'=');
                let op = match (b, two) {
                    (b'=', true) => "==",
                    (b'!', true) => "!=",
                    (b'<', true) => "<=",
                    (b'>', true) => ">=",
                    (b'<', false) => "<",
                    (b'>', false) => ">",
                    (b'=', false) => return Err(err(start, "use '==' to compare".into())),
                    _ => return Err(err(start, "use '!=' or 'not'".into())),
                };
                i += op.len();
                out.push((start, Tok::Op(op)));
            }
            b'+' => {
                out.push((start, Tok::Op("+")));
                i += 1;
            }
            b'-' => {
                out.push((start, Tok::Op("-")));
                i += 1;
            }
            b'`' | b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                let mut path = String::new();
                loop {
                    match bytes.get(i) {
                        Some(b'`') => {
                            let close = text[i + 1..]
                                .find('`')
                                .ok_or_else(|| err(i, "`quoted name` is not closed".into()))?;
                            path.push_str(&text[i + 1..i + 1 + close]);
                            i += close + 2;
                        }
                        Some(b'_' | b'a'..=b'z' | b'A'..=b'Z') => {
                            let s = i;
                            while let Some(b'_' | b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9') =
                                bytes.get(i)
                            {
                                i += 1;
                            }
                            path.push_str(&text[s..i]);
                        }
                        _ => return Err(err(i, "expected a field name after '.'".into())),
                    }
                    if bytes.get(i) == Some(&b'.') {
                        path.push('.');
                        i += 1;
                    } else {
                        break;
                    }
                }
                out.push((start, Tok::Path(path)));
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or('?');
                return Err(err(start, format!("unexpected character {ch:?}")));
            }
        }
    }
    Ok(out)
}

/// Parses an expression; field slots are left unset (`usize::MAX`). An
/// expression nested more than [`MAX_EXPR_DEPTH`] levels is an error at
/// the token that goes one level too deep.
pub fn parse(text: &str) -> Result<Expr, SyntaxError> {
    let tokens = lex(text)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        end: text.len(),
        open: 0,
    };
    let (e, _) = p.or()?;
    if let Some((at, t)) = p.tokens.get(p.pos) {
        return Err(SyntaxError {
            at: *at,
            message: format!("unexpected {} after the expression", describe(t)),
        });
    }
    Ok(e)
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Path(p) => format!("name {p:?}"),
        Tok::Str(s) => format!("text {s:?}"),
        Tok::Num(n) => format!("number {n}"),
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::Comma => "','".into(),
        Tok::Op(o) => format!("'{o}'"),
    }
}

struct Parser {
    tokens: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
    /// Levels being parsed (the parser's own recursion).
    open: usize,
}

/// A parsed expression and how many levels it nests.
type Parsed = (Expr, usize);

/// A name that is not called: a literal or a field path.
fn name_atom(name: String, at: usize) -> Result<Parsed, SyntaxError> {
    let lit = |l: Lit| Ok((Expr::Lit(l), 1));
    match name.to_ascii_lowercase().as_str() {
        "true" => lit(Lit::Bool(true)),
        "false" => lit(Lit::Bool(false)),
        "null" => lit(Lit::Null),
        "and" | "or" | "not" => Err(SyntaxError {
            at,
            message: format!("'{name}' needs a value before it"),
        }),
        _ => Ok((
            Expr::Field {
                path: name,
                at,
                slot: usize::MAX,
            },
            1,
        )),
    }
}

fn too_deep(at: usize) -> SyntaxError {
    SyntaxError {
        at,
        message: format!("the expression nests more than {MAX_EXPR_DEPTH} levels deep"),
    }
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.tokens
            .get(self.pos)
            .map(|(a, _)| *a)
            .unwrap_or(self.end)
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Tok::Path(p)) if p.eq_ignore_ascii_case(word))
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, SyntaxError> {
        Err(SyntaxError {
            at: self.at(),
            message: message.into(),
        })
    }

    /// The depth of a node over children of depth `depth` (an error when
    /// that is too deep, at the operator at `at`).
    fn level(&self, depth: usize, at: usize) -> Result<usize, SyntaxError> {
        if depth >= MAX_EXPR_DEPTH {
            return Err(too_deep(at));
        }
        Ok(depth + 1)
    }

    /// Parses a sub-expression one level down (parentheses, arguments,
    /// `not`'s operand), refusing to recurse past the limit.
    fn nested(
        &mut self,
        parse: fn(&mut Self) -> Result<Parsed, SyntaxError>,
    ) -> Result<Parsed, SyntaxError> {
        if self.open >= MAX_EXPR_DEPTH {
            return Err(too_deep(self.at()));
        }
        self.open += 1;
        let parsed = parse(self);
        self.open -= 1;
        parsed
    }

    fn or(&mut self) -> Result<Parsed, SyntaxError> {
        let (mut left, mut depth) = self.and()?;
        while self.keyword("or") {
            let at = self.at();
            self.pos += 1;
            let (right, d) = self.and()?;
            depth = self.level(depth.max(d), at)?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok((left, depth))
    }

    fn and(&mut self) -> Result<Parsed, SyntaxError> {
        let (mut left, mut depth) = self.not()?;
        while self.keyword("and") {
            let at = self.at();
            self.pos += 1;
            let (right, d) = self.not()?;
            depth = self.level(depth.max(d), at)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok((left, depth))
    }

    fn not(&mut self) -> Result<Parsed, SyntaxError> {
        if self.keyword("not") {
            let at = self.at();
            self.pos += 1;
            let (e, d) = self.nested(Self::not)?;
            return Ok((Expr::Not(Box::new(e)), self.level(d, at)?));
        }
        self.compare()
    }

    fn compare(&mut self) -> Result<Parsed, SyntaxError> {
        let (left, dl) = self.sum()?;
        let op = match self.peek() {
            Some(Tok::Op("==")) => CmpOp::Eq,
            Some(Tok::Op("!=")) => CmpOp::Ne,
            Some(Tok::Op("<")) => CmpOp::Lt,
            Some(Tok::Op("<=")) => CmpOp::Le,
            Some(Tok::Op(">")) => CmpOp::Gt,
            Some(Tok::Op(">=")) => CmpOp::Ge,
            _ => return Ok((left, dl)),
        };
        let at = self.at();
        self.pos += 1;
        let (right, dr) = self.sum()?;
        let depth = self.level(dl.max(dr), at)?;
        Ok((Expr::Cmp(op, Box::new(left), Box::new(right)), depth))
    }

    fn sum(&mut self) -> Result<Parsed, SyntaxError> {
        let (mut left, mut depth) = self.atom()?;
        loop {
            let at = self.at();
            let add = match self.peek() {
                Some(Tok::Op("+")) => true,
                Some(Tok::Op("-")) => false,
                _ => return Ok((left, depth)),
            };
            self.pos += 1;
            let (right, d) = self.atom()?;
            depth = self.level(depth.max(d), at)?;
            let (l, r) = (Box::new(left), Box::new(right));
            left = if add {
                Expr::Add(l, r)
            } else {
                Expr::Sub(l, r)
            };
        }
    }

    fn number(&mut self, text: &str, negative: bool) -> Result<Parsed, SyntaxError> {
        let d = Decimal::parse(text).or_else(|e| self.error(format!("bad number: {e}")))?;
        self.pos += 1;
        Ok((
            Expr::Lit(Lit::Num(Decimal::new(
                if negative { -d.unscaled } else { d.unscaled },
                d.scale,
            ))),
            1,
        ))
    }

    fn atom(&mut self) -> Result<Parsed, SyntaxError> {
        let Some((at, tok)) = self.tokens.get(self.pos).cloned() else {
            return self.error("the expression ends too early");
        };
        match tok {
            Tok::Str(s) => {
                self.pos += 1;
                Ok((Expr::Lit(Lit::Str(s)), 1))
            }
            Tok::Num(n) => self.number(&n, false),
            Tok::Op("-") => {
                self.pos += 1;
                match self.peek().cloned() {
                    Some(Tok::Num(n)) => self.number(&n, true),
                    _ => self.error("'-' must be followed by a number here"),
                }
            }
            Tok::LParen => {
                self.pos += 1;
                let (e, d) = self.nested(Self::or)?;
                if self.peek() != Some(&Tok::RParen) {
                    return self.error("expected ')'");
                }
                self.pos += 1;
                Ok((e, d))
            }
            Tok::Path(name) => {
                self.pos += 1;
                if self.peek() == Some(&Tok::LParen) {
                    return self.call(&name, at);
                }
                name_atom(name, at)
            }
            other => Err(SyntaxError {
                at,
                message: format!("expected a value, found {}", describe(&other)),
            }),
        }
    }

    fn call(&mut self, name: &str, at: usize) -> Result<Parsed, SyntaxError> {
        let Some((func, min, max)) = Func::by_name(name) else {
            let known: Vec<&str> = Func::ALL.iter().map(|(n, ..)| *n).collect();
            return Err(SyntaxError {
                at,
                message: format!(
                    "unknown function {name:?}; known functions: {}",
                    known.join(", ")
                ),
            });
        };
        self.pos += 1; // '('
        let mut args = Vec::new();
        let mut depth = 0;
        if self.peek() == Some(&Tok::RParen) {
            self.pos += 1;
        } else {
            loop {
                let (arg, d) = self.nested(Self::or)?;
                depth = depth.max(d);
                args.push(arg);
                match self.peek() {
                    Some(Tok::Comma) => self.pos += 1,
                    Some(Tok::RParen) => {
                        self.pos += 1;
                        break;
                    }
                    _ => return self.error(format!("expected ',' or ')' in {name}(...)")),
                }
            }
        }
        self.finish_call(func, name, at, args, (min, max), depth)
    }

    /// Checks a call's arguments and builds it (kept out of [`Parser::call`]
    /// so the frame that recursion stacks up stays small).
    fn finish_call(
        &self,
        func: Func,
        name: &str,
        at: usize,
        args: Vec<Expr>,
        (min, max): (usize, usize),
        depth: usize,
    ) -> Result<Parsed, SyntaxError> {
        if args.len() < min || args.len() > max {
            let wanted = if min == max {
                format!("{min}")
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} or {max}")
            };
            return Err(SyntaxError {
                at,
                message: format!("{name}() takes {wanted} argument(s), got {}", args.len()),
            });
        }
        let depth = self.level(depth, at)?;
        if func == Func::Lookup {
            let mut it = args.into_iter();
            let (Some(dataset), Some(key), Some(field)) = (it.next(), it.next(), it.next()) else {
                return Err(SyntaxError {
                    at,
                    message: "lookup() takes 3 arguments".into(),
                });
            };
            let (Expr::Lit(Lit::Str(dataset)), Expr::Lit(Lit::Str(field))) = (dataset, field)
            else {
                return Err(SyntaxError {
                    at,
                    message: "lookup('dataset', key, 'Field'): the dataset and the field must be quoted text".into(),
                });
            };
            if dataset.is_empty() || field.is_empty() {
                return Err(SyntaxError {
                    at,
                    message: "lookup(): the dataset and the field must not be empty".into(),
                });
            }
            return Ok((
                Expr::Lookup {
                    dataset,
                    key: Box::new(key),
                    field,
                },
                depth,
            ));
        }
        Ok((Expr::Call(func, args), depth))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(path: &str, at: usize) -> Expr {
        Expr::Field {
            path: path.into(),
            at,
            slot: usize::MAX,
        }
    }

    #[test]
    fn precedence_and_paths() {
        let e = parse("not CanceledFlag and Amount >= 10 or `Odd Name`.x == 'it''s'").unwrap();
        let expected = Expr::Or(
            Box::new(Expr::And(
                Box::new(Expr::Not(Box::new(field("CanceledFlag", 4)))),
                Box::new(Expr::Cmp(
                    CmpOp::Ge,
                    Box::new(field("Amount", 21)),
                    Box::new(Expr::Lit(Lit::Num(Decimal::new(10, 0)))),
                )),
            )),
            Box::new(Expr::Cmp(
                CmpOp::Eq,
                Box::new(field("Odd Name.x", 37)),
                Box::new(Expr::Lit(Lit::Str("it's".into()))),
            )),
        );
        assert_eq!(e, expected);
    }

    #[test]
    fn calls_and_arithmetic() {
        let e = parse("concat(upper(a.b), \" \", -1.50) ").unwrap();
        let Expr::Call(Func::Concat, args) = e else {
            panic!("not a concat: {e:?}")
        };
        assert_eq!(args.len(), 3);
        assert_eq!(args[2], Expr::Lit(Lit::Num(Decimal::new(-150, 2))));
        let e = parse("AccountedDr - AccountedCr + 1").unwrap();
        assert!(matches!(e, Expr::Add(..)), "{e:?}");
        let e = parse("lookup('suppliers', SupplierNumber, 'ParentSupplier')").unwrap();
        assert!(
            matches!(&e, Expr::Lookup { dataset, field, .. } if dataset == "suppliers" && field == "ParentSupplier"),
            "{e:?}"
        );
    }

    #[test]
    fn errors_point_at_the_mistake() {
        for (text, at, needle) in [
            ("uper(x)", 0, "unknown function \"uper\""),
            ("a = 1", 2, "use '=='"),
            ("substring(a)", 0, "takes 2 or 3 argument(s), got 1"),
            ("lookup(ds, a, 'F')", 0, "must be quoted text"),
            ("a b", 2, "unexpected name \"b\""),
            ("(a", 2, "expected ')'"),
            ("'open", 0, "not closed"),
            ("a and", 5, "ends too early"),
            ("a ; b", 2, "unexpected character ';'"),
            ("a.", 2, "expected a field name"),
            ("a +", 3, "ends too early"),
            ("(", 1, "ends too early"),
            ("f(", 0, "unknown function"),
            ("upper(", 6, "ends too early"),
            ("`a", 0, "not closed"),
            ("é", 0, "unexpected character 'é'"),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.at, at, "{text}: {err:?}");
            assert!(err.message.contains(needle), "{text}: {}", err.message);
        }
    }

    /// Parses and drops `text` on a thread with the stack of a guest
    /// (1 MiB, wasm32's default; this debug build uses several times the
    /// stack an optimized guest does), so recursion that the limit does
    /// not bound overflows here rather than in production.
    fn parse_on_a_small_stack(text: String) -> Result<usize, SyntaxError> {
        std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || parse(&text).map(|e| depth(&e)))
            .unwrap()
            .join()
            .unwrap()
    }

    fn depth(e: &Expr) -> usize {
        1 + match e {
            Expr::Lit(_) | Expr::Field { .. } => 0,
            Expr::Call(_, args) => args.iter().map(depth).max().unwrap_or(0),
            Expr::Lookup { key, .. } => depth(key),
            Expr::Not(a) => depth(a),
            Expr::And(a, b)
            | Expr::Or(a, b)
            | Expr::Cmp(_, a, b)
            | Expr::Add(a, b)
            | Expr::Sub(a, b) => depth(a).max(depth(b)),
        }
    }

    #[test]
    fn nesting_is_capped_with_a_located_error() {
        // Bug: nothing bounded nesting; `(((...)))`, `not not ...` or a
        // long `a + a + ...` chain overflowed the stack (parse, evaluation
        // or drop), killing the guest instead of refusing the script.
        let n = MAX_EXPR_DEPTH;
        let make = |shape: &str, k: usize| match shape {
            "parens" => format!("{}a{}", "(".repeat(k), ")".repeat(k)),
            "not" => format!("{}a", "not ".repeat(k)),
            "sum" => format!("a{}", " + 1".repeat(k)),
            "or" => format!("a{}", " or b".repeat(k)),
            "and" => format!("a{}", " and b".repeat(k)),
            _ => format!("{}a{}", "upper(".repeat(k), ")".repeat(k)),
        };
        for shape in ["parens", "not", "sum", "or", "and", "calls"] {
            // At the limit: parses (parentheses add no level of their own).
            let at_limit = if shape == "parens" { n } else { n - 1 };
            assert!(
                parse_on_a_small_stack(make(shape, at_limit)).is_ok_and(|d| d <= n),
                "{shape} at the limit"
            );
            for k in [at_limit + 1, 10 * n, 200_000] {
                let text = make(shape, k);
                let err = parse_on_a_small_stack(text.clone()).unwrap_err();
                assert!(
                    err.message.contains("nests more than 64 levels"),
                    "{shape}: {err:?}"
                );
                assert!(err.at < text.len(), "{shape}: {err:?}");
            }
        }
        // Mixed nesting counts every level.
        let mixed = format!("{}a{}", "(not ".repeat(n), ")".repeat(n));
        assert!(parse_on_a_small_stack(mixed).is_err());
    }
}
