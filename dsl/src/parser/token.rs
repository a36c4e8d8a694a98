//! Lexical parsers: whitespace and comments, keywords, symbols,
//! identifiers and literals, and the error type that records what was
//! expected at the furthest point the parser reached.

use std::cell::{Cell, RefCell};

use nom::error::{ErrorKind, ParseError};
use nom::{Err, IResult, Input as _};
use nom_locate::LocatedSpan;

use crate::ast::Ident;
use crate::keyword::{is_clause_word, is_reserved};
use crate::span::Span;

/// Parser input: the source with its offset and the shared [`Tracker`].
pub(crate) type In<'a> = LocatedSpan<&'a str, &'a Tracker>;
pub(crate) type PResult<'a, T> = IResult<In<'a>, T, PError>;

/// Remembers the furthest offset at which a token was expected, and which
/// tokens were, across the backtracking of `opt`/`alt` (which drop nom's own
/// errors). The final "expected X, Y or Z" message comes from here.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    furthest: Cell<usize>,
    expected: RefCell<Vec<&'static str>>,
    /// The last bare alias read (`SELECT a FORM x` reads `FORM` as an alias),
    /// so that an error right after it can suggest the keyword it resembles.
    bare_alias: Cell<Option<Span>>,
}

impl Tracker {
    pub(crate) fn expect(&self, offset: usize, what: &'static str) {
        let furthest = self.furthest.get();
        if offset > furthest {
            self.furthest.set(offset);
            let mut expected = self.expected.borrow_mut();
            expected.clear();
            expected.push(what);
        } else if offset == furthest {
            let mut expected = self.expected.borrow_mut();
            if !expected.contains(&what) {
                expected.push(what);
            }
        }
    }

    pub(crate) fn furthest(&self) -> (usize, Vec<&'static str>) {
        (self.furthest.get(), self.expected.borrow().clone())
    }

    pub(crate) fn bare_alias(&self) -> Option<Span> {
        self.bare_alias.get()
    }

    pub(crate) fn set_bare_alias(&self, span: Span) {
        self.bare_alias.set(Some(span));
    }
}

/// A parse failure. `Err::Error` values are recoverable (another branch may
/// match); `Err::Failure` values carry a specific message and end the parse.
#[derive(Debug, Clone)]
pub(crate) struct PError {
    pub offset: usize,
    pub custom: Option<Custom>,
}

/// A specific diagnosis, raised as `Err::Failure`.
#[derive(Debug, Clone)]
pub(crate) struct Custom {
    pub span: Span,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
}

impl<'a> ParseError<In<'a>> for PError {
    fn from_error_kind(input: In<'a>, _kind: ErrorKind) -> Self {
        PError {
            offset: input.location_offset(),
            custom: None,
        }
    }

    fn append(_input: In<'a>, _kind: ErrorKind, other: Self) -> Self {
        other
    }

    fn or(self, other: Self) -> Self {
        match (&self.custom, &other.custom) {
            (Some(_), None) => self,
            (None, Some(_)) => other,
            _ if self.offset > other.offset => self,
            _ => other,
        }
    }
}

/// A recoverable error at `i` that records `what` as expected there.
pub(crate) fn expected<'a, T>(i: In<'a>, what: &'static str) -> PResult<'a, T> {
    i.extra.expect(i.location_offset(), what);
    Err(Err::Error(PError {
        offset: i.location_offset(),
        custom: None,
    }))
}

/// An unrecoverable error with a specific message.
pub(crate) fn failure<'a, T>(
    span: Span,
    message: impl Into<String>,
    label: impl Into<String>,
    help: Option<String>,
) -> PResult<'a, T> {
    Err(Err::Failure(PError {
        offset: span.start,
        custom: Some(Custom {
            span,
            message: message.into(),
            label: label.into(),
            help,
        }),
    }))
}

/// Turns a recoverable error into a failure: past this point the construct
/// is committed, and backtracking would only hide the real problem.
pub(crate) fn cut<'a, T>(r: PResult<'a, T>) -> PResult<'a, T> {
    match r {
        Err(Err::Error(e)) => Err(Err::Failure(e)),
        other => other,
    }
}

pub(crate) fn pos(i: &In<'_>) -> usize {
    i.location_offset()
}

fn advance<'a>(i: In<'a>, n: usize) -> In<'a> {
    i.take_from(n)
}

pub(crate) fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

pub(crate) fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Skips white space, `-- line` comments and `/* block */` comments.
pub(crate) fn ws(mut i: In<'_>) -> PResult<'_, ()> {
    loop {
        let s = *i.fragment();
        let trimmed = s.trim_start();
        i = advance(i, s.len() - trimmed.len());
        if trimmed.starts_with("--") {
            let end = trimmed.find('\n').unwrap_or(trimmed.len());
            i = advance(i, end);
        } else if let Some(body) = trimmed.strip_prefix("/*") {
            match body.find("*/") {
                Some(end) => i = advance(i, end + 4),
                None => {
                    let start = pos(&i);
                    return failure(
                        Span::new(start, start + 2),
                        "unterminated comment",
                        "this comment is never closed",
                        Some("close it with `*/`".into()),
                    );
                }
            }
        } else {
            return Ok((i, ()));
        }
    }
}

/// The word (identifier-like run) at the start of `s`, if any.
pub(crate) fn word_at(s: &str) -> Option<&str> {
    let first = s.chars().next()?;
    if !is_ident_start(first) {
        return None;
    }
    let end = s.find(|c: char| !is_ident_char(c)).unwrap_or(s.len());
    Some(&s[..end])
}

/// A keyword, case-insensitive, not followed by an identifier character.
pub(crate) fn kw(word: &'static str) -> impl Fn(In<'_>) -> PResult<'_, Span> {
    move |i| {
        let (i, ()) = ws(i)?;
        match word_at(i.fragment()) {
            Some(w) if w.eq_ignore_ascii_case(word) => {
                let start = pos(&i);
                Ok((advance(i, w.len()), Span::new(start, start + w.len())))
            }
            _ => expected(i, word),
        }
    }
}

/// True when the next token is the keyword `word` (nothing is consumed).
pub(crate) fn peek_kw(i: In<'_>, word: &'static str) -> bool {
    kw(word)(i).is_ok()
}

/// A punctuation symbol such as `(` or `,`.
pub(crate) fn sym(symbol: &'static str) -> impl Fn(In<'_>) -> PResult<'_, Span> {
    symbol_named(symbol, symbol_label(symbol))
}

/// An operator symbol: like [`sym`], but named "an operator" in messages.
pub(crate) fn op_sym(symbol: &'static str) -> impl Fn(In<'_>) -> PResult<'_, Span> {
    symbol_named(symbol, "an operator")
}

fn symbol_named(symbol: &'static str, label: &'static str) -> impl Fn(In<'_>) -> PResult<'_, Span> {
    move |i| {
        let (i, ()) = ws(i)?;
        if i.fragment().starts_with(symbol) {
            let start = pos(&i);
            Ok((
                advance(i, symbol.len()),
                Span::new(start, start + symbol.len()),
            ))
        } else {
            expected(i, label)
        }
    }
}

/// How a symbol is named in "expected ..." messages.
fn symbol_label(symbol: &'static str) -> &'static str {
    match symbol {
        "(" => "`(`",
        ")" => "`)`",
        "," => "`,`",
        "." => "`.`",
        "=" => "`=`",
        ";" => "`;`",
        "*" => "`*`",
        _ => "an operator",
    }
}

/// A `[bracketed identifier]`, with `]]` standing for `]`.
fn bracketed(i: In<'_>) -> PResult<'_, Ident> {
    let s = *i.fragment();
    let start = pos(&i);
    let mut value = String::new();
    let mut chars = s.char_indices().skip(1).peekable();
    while let Some((idx, c)) = chars.next() {
        if c == ']' {
            if chars.peek().map(|&(_, c)| c) == Some(']') {
                value.push(']');
                chars.next();
                continue;
            }
            let len = idx + 1;
            return Ok((
                advance(i, len),
                Ident::new(value, Span::new(start, start + len)),
            ));
        }
        value.push(c);
    }
    failure(
        Span::new(start, start + 1),
        "unterminated bracketed identifier",
        "this `[` is never closed",
        Some("close the name with `]`".into()),
    )
}

/// Which words an identifier position accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Names {
    /// Column, input and step names: anything but a reserved word.
    Any,
    /// A bare alias: not a reserved word and not a clause word such as
    /// `TIMESTAMP` or `PARTITION`.
    Alias,
}

/// An identifier: a plain word (not reserved) or a `[bracketed name]`.
pub(crate) fn ident_of(names: Names) -> impl Fn(In<'_>) -> PResult<'_, Ident> {
    move |i| {
        let (i, ()) = ws(i)?;
        if i.fragment().starts_with('[') {
            return bracketed(i);
        }
        match word_at(i.fragment()) {
            Some(w) if !(is_reserved(w) || names == Names::Alias && is_clause_word(w)) => {
                let start = pos(&i);
                let span = Span::new(start, start + w.len());
                Ok((advance(i, w.len()), Ident::new(w, span)))
            }
            _ => expected(i, "a name"),
        }
    }
}

pub(crate) fn ident(i: In<'_>) -> PResult<'_, Ident> {
    ident_of(Names::Any)(i)
}

/// Any word, keywords included (function names such as `LEFT`).
pub(crate) fn any_word(i: In<'_>) -> PResult<'_, Ident> {
    let (i, ()) = ws(i)?;
    match word_at(i.fragment()) {
        Some(w) => {
            let start = pos(&i);
            let span = Span::new(start, start + w.len());
            Ok((advance(i, w.len()), Ident::new(w, span)))
        }
        None => expected(i, "a name"),
    }
}

/// A string literal: `'single'` or `"double"` quoted, the quote doubled inside.
pub(crate) fn string_lit(i: In<'_>) -> PResult<'_, (String, Span)> {
    let (i, ()) = ws(i)?;
    let s = *i.fragment();
    let quote = match s.chars().next() {
        Some(q @ ('\'' | '"')) => q,
        _ => return expected(i, "a string"),
    };
    let start = pos(&i);
    let mut value = String::new();
    let mut chars = s.char_indices().skip(1).peekable();
    while let Some((idx, c)) = chars.next() {
        if c == quote {
            if chars.peek().map(|&(_, c)| c) == Some(quote) {
                value.push(quote);
                chars.next();
                continue;
            }
            let len = idx + 1;
            return Ok((advance(i, len), (value, Span::new(start, start + len))));
        }
        value.push(c);
    }
    failure(
        Span::new(start, start + 1),
        "unterminated string",
        "this string is never closed",
        Some(format!(
            "close it with {quote}; write {quote}{quote} for a {quote} inside it"
        )),
    )
}

/// A number: digits, an optional fraction and exponent. Integers that do
/// not fit in 64 bits become floats.
pub(crate) fn number(i: In<'_>) -> PResult<'_, (Number, Span)> {
    let (i, ()) = ws(i)?;
    let s = *i.fragment();
    let bytes = s.as_bytes();
    let digits = |from: usize| {
        bytes[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let mut len = digits(0);
    let mut is_float = false;
    if bytes.get(len) == Some(&b'.') && bytes.get(len + 1).is_some_and(u8::is_ascii_digit) {
        len += 1 + digits(len + 1);
        is_float = true;
    }
    if len == 0 {
        return expected(i, "a number");
    }
    if matches!(bytes.get(len), Some(b'e' | b'E')) {
        let mut exp = len + 1;
        if matches!(bytes.get(exp), Some(b'+' | b'-')) {
            exp += 1;
        }
        let n = digits(exp);
        if n > 0 {
            len = exp + n;
            is_float = true;
        }
    }
    let text = &s[..len];
    let start = pos(&i);
    let span = Span::new(start, start + len);
    if bytes.get(len).is_some_and(|b| is_ident_char(*b as char)) {
        let end = s[len..]
            .find(|c: char| !is_ident_char(c))
            .map_or(s.len(), |e| len + e);
        return failure(
            Span::new(start, start + end),
            format!("`{}` is not a number", &s[..end]),
            "not a number",
            Some("a name cannot start with a digit: write it in brackets, e.g. [1st]".into()),
        );
    }
    let value = match text.parse::<i64>() {
        Ok(v) if !is_float => Number::Integer(v),
        _ => match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Number::Float(v),
            _ => {
                return failure(
                    span,
                    format!("the number `{text}` is out of range"),
                    "out of range",
                    Some("numbers are 64-bit integers or 64-bit floats".into()),
                );
            }
        },
    };
    Ok((advance(i, len), (value, span)))
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    Integer(i64),
    Float(f64),
}
