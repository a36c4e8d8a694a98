//! The nom parser: source text to [`Script`].
//!
//! The grammar is split by role: [`token`] for the lexical level, [`expr`]
//! for expressions, [`query`] for statements and clauses. Parsing stops at
//! the first error, which is turned into a [`Diagnostic`] naming what was
//! expected at the furthest point reached, what was found there, and a hint.

mod expr;
mod query;
mod token;

use nom_locate::LocatedSpan;

use crate::ast::Script;
use crate::diagnostic::Diagnostic;
use crate::span::Span;
use crate::suggest::closest;
use token::{PError, Tracker, word_at};

/// Parses a whole job file.
pub fn parse(source: &str) -> Result<Script, Diagnostic> {
    let tracker = Tracker::default();
    let input = LocatedSpan::new_extra(source, &tracker);
    match query::script(input) {
        Ok((_, script)) => Ok(script),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(to_diagnostic(source, &tracker, e)),
        Err(nom::Err::Incomplete(_)) => Err(Diagnostic::new(
            "iotql::syntax",
            Span::new(source.len(), source.len()),
            "unexpected end of input",
            "here",
        )),
    }
}

/// The token at `offset`, for "found ..." messages.
pub(crate) fn found_at(source: &str, offset: usize) -> (String, usize) {
    let rest = source.get(offset..).unwrap_or("");
    if rest.is_empty() {
        return ("end of input".into(), 0);
    }
    if let Some(w) = word_at(rest) {
        return (format!("`{w}`"), w.len());
    }
    let c = rest.chars().next().map_or(1, char::len_utf8);
    let digits = rest
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(rest.len());
    if digits > 0 {
        return (format!("`{}`", &rest[..digits]), digits);
    }
    (format!("`{}`", &rest[..c]), c)
}

/// Tokens that could continue the expression or item just read. They are
/// possible after almost any operand, so they are named only when nothing
/// else was expected.
const CONTINUATIONS: &[&str] = &[
    "an operator",
    "`.`",
    "`(`",
    "`=`",
    "IS",
    "NOT",
    "LIKE",
    "BETWEEN",
    "IN",
    "AND",
    "OR",
    "OVER",
    "AS",
    "a name",
    "PARTITION",
    "TIMESTAMP",
];

/// Turns the raw set of expected tokens into what a person wants to read:
/// continuations dropped when a clause was possible too, statement starts
/// folded into "a new statement", join keywords into one.
fn curate(mut expected: Vec<&'static str>) -> Vec<&'static str> {
    if expected.iter().any(|e| !CONTINUATIONS.contains(e)) {
        expected.retain(|e| !CONTINUATIONS.contains(e));
    }
    let statement_start = ["CREATE", "WITH", "SELECT"];
    if expected.iter().any(|e| statement_start.contains(e)) {
        expected.retain(|e| !statement_start.contains(e) && *e != "`(`" && *e != "`;`");
        expected.push(if expected.is_empty() {
            "a statement"
        } else {
            "the end of the statement"
        });
    }
    let joins = ["JOIN", "INNER", "LEFT", "CROSS", "OUTER"];
    if let Some(first) = expected.iter().position(|e| joins.contains(e)) {
        expected.retain(|e| !joins.contains(e) || *e == "JOIN");
        if let Some(j) = expected.iter_mut().find(|e| **e == "JOIN") {
            *j = "JOIN or APPLY";
        } else {
            expected.insert(first.min(expected.len()), "JOIN or APPLY");
        }
    }
    for e in expected.iter_mut() {
        *e = match *e {
            "GROUP" => "GROUP BY",
            "ORDER" => "ORDER BY",
            other => other,
        };
    }
    expected
}

/// Joins alternatives as "A, B or C".
fn alternatives(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn to_diagnostic(source: &str, tracker: &Tracker, error: PError) -> Diagnostic {
    if let Some(c) = error.custom {
        let mut d = Diagnostic::new("iotql::syntax", c.span, c.message, c.label);
        d.help = c.help;
        return d;
    }
    let (offset, expected) = tracker.furthest();
    let offset = offset.max(error.offset);
    let expected = curate(expected);
    let (found, len) = found_at(source, offset);
    let span = Span::new(offset, offset + len);
    let message = if expected.is_empty() {
        format!("unexpected {found}")
    } else {
        format!("expected {}, found {found}", alternatives(&expected))
    };
    let mut d = Diagnostic::new("iotql::syntax", span, message, "unexpected here");
    let found_word = word_at(source.get(offset..).unwrap_or(""));
    if found == "`)`" {
        d.help = Some("this `)` closes no `(`: remove it, or add the `(` it belongs to".into());
        return d;
    }
    let keywords: Vec<&str> = expected
        .iter()
        .map(|e| {
            if *e == "the end of the statement" || *e == "a statement" {
                "SELECT"
            } else {
                e
            }
        })
        .filter(|e| {
            e.chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c == ' ')
        })
        .collect();
    let first_word = |k: &'static str| k.split(' ').next().unwrap_or(k);
    if let Some(k) = found_word.and_then(|w| {
        keywords
            .iter()
            .copied()
            .find(|k| closest(w, [first_word(k)]).is_some())
    }) {
        d.help = Some(format!("did you mean {k}?"));
    } else if source[..offset].trim_end().ends_with(';')
        && found_word.is_some_and(crate::keyword::is_reserved)
    {
        d.help = Some(
            "the `;` before it ends the statement: remove it to continue the statement".into(),
        );
    } else if let Some(alias) = tracker.bare_alias() {
        // `FROM readings WHRE x > 1` reads `WHRE` as an alias of `readings`.
        let between = source.get(alias.end..offset).unwrap_or("x");
        let word = source.get(alias.range()).unwrap_or("");
        let clause_words = [
            "FROM",
            "WHERE",
            "GROUP",
            "HAVING",
            "INTO",
            "JOIN",
            "TIMESTAMP",
            "PARTITION",
            "UNION",
        ];
        if between.trim().is_empty()
            && let Some(k) = closest(word, clause_words)
        {
            d.span = alias.to(span);
            d.help = Some(format!("did you mean {k}? `{word}` was read as an alias"));
        }
    }
    d
}
