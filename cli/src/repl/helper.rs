//! rustyline's helper for the REPL: completion of keywords, window and
//! built-in functions (the DSL's own lists), meta-commands, input names and
//! the columns of bound inputs; and validation, which keeps reading lines
//! until a statement ends with `;`.

use std::cell::RefCell;
use std::rc::Rc;

use iotql_dsl::ast::WindowKind;
use rustyline::completion::Completer;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

use super::meta::COMMANDS;
use super::session::Catalog;
use super::statement::is_incomplete;

/// Words of the language the parser knows but that are not reserved
/// (they may also be names).
const DECLARATION_WORDS: &[&str] = &[
    "INPUT",
    "OUTPUT",
    "REFERENCE",
    "TIMESTAMP BY",
    "LIMIT DURATION",
    "PARTITION BY",
];

/// System functions, written as they are called.
const SYSTEM: &[&str] = &["System.Timestamp()", "System.Window()"];

/// Every word the language offers, in its canonical spelling.
pub(crate) fn language_words() -> Vec<String> {
    let mut words: Vec<String> = iotql_dsl::keyword::RESERVED
        .iter()
        .chain(iotql_dsl::keyword::CLAUSE_WORDS)
        .chain(DECLARATION_WORDS)
        .map(|w| w.to_string())
        .collect();
    // The catalog's names are upper case; windows keep their spelling.
    words.extend(
        iotql_dsl::catalog::names()
            .filter(|n| WindowKind::from_name(n).is_none())
            .map(str::to_string),
    );
    words.extend(WindowKind::ALL.iter().map(|k| k.name().to_string()));
    words.extend(SYSTEM.iter().map(|s| s.to_string()));
    words
}

/// The start of the word before `pos` and the candidates for it:
/// meta-commands at the start of a line, input names after `.schema`, else
/// language words, input names and `columns`. Matching ignores case.
pub(crate) fn complete(
    line: &str,
    pos: usize,
    inputs: &[String],
    columns: &[String],
) -> (usize, Vec<String>) {
    let before = line.get(..pos).unwrap_or(line);
    let start = before
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
        .map_or(0, |i| i + 1);
    let word = &before[start..];
    let matches = |c: &&str| {
        c.get(..word.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(word))
    };
    let trimmed = before.trim_start();
    let mut out: Vec<String> = if trimmed.starts_with('.') && !trimmed.contains(char::is_whitespace)
    {
        COMMANDS
            .iter()
            .map(|c| c.0)
            .filter(matches)
            .map(str::to_string)
            .collect()
    } else if trimmed.to_ascii_lowercase().starts_with(".schema ") {
        inputs
            .iter()
            .map(String::as_str)
            .filter(matches)
            .map(str::to_string)
            .collect()
    } else if word.is_empty() {
        Vec::new()
    } else {
        let words = language_words();
        inputs
            .iter()
            .chain(columns)
            .map(String::as_str)
            .chain(words.iter().map(String::as_str))
            .filter(matches)
            .map(str::to_string)
            .collect()
    };
    out.dedup();
    (start, out)
}

pub(crate) struct ReplHelper {
    catalog: Rc<RefCell<Catalog>>,
}

impl std::fmt::Debug for ReplHelper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplHelper").finish_non_exhaustive()
    }
}

impl ReplHelper {
    pub(crate) fn new(catalog: Rc<RefCell<Catalog>>) -> ReplHelper {
        ReplHelper { catalog }
    }
}

impl Completer for ReplHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        // Schemas are inferred on the first completion that needs them.
        let (inputs, columns) = match self.catalog.try_borrow_mut() {
            Ok(mut c) => (c.input_names(), c.columns()),
            Err(_) => (Vec::new(), Vec::new()),
        };
        Ok(complete(line, pos, &inputs, &columns))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Highlighter for ReplHelper {}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        Ok(if is_incomplete(ctx.input()) {
            ValidationResult::Incomplete
        } else {
            ValidationResult::Valid(None)
        })
    }
}

impl Helper for ReplHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: &str) -> Vec<String> {
        let inputs = vec!["readings".to_string(), "devices".to_string()];
        let columns = vec!["temperature_c".to_string(), "ts".to_string()];
        complete(line, line.len(), &inputs, &columns).1
    }

    #[test]
    fn completion_offers_keywords_functions_windows_inputs_and_columns() {
        assert!(names("SELECT AV").contains(&"AVG".to_string()));
        assert!(names("GROUP BY Tumb").contains(&"TumblingWindow".to_string()));
        assert!(names("GROUP BY hopp").contains(&"HoppingWindow".to_string()));
        assert!(names("SELECT System.T").contains(&"System.Timestamp()".to_string()));
        assert!(names("SELECT * FROM rea").contains(&"readings".to_string()));
        assert!(names("SELECT temp").contains(&"temperature_c".to_string()));
        assert!(names("SELECT x FR").contains(&"FROM".to_string()));
        assert_eq!(names(".sch"), [".schema"]);
        assert_eq!(names(".schema d"), ["devices"]);
        assert!(names("SELECT ").is_empty());
        let (start, _) = complete("SELECT AV", 9, &[], &[]);
        assert_eq!(start, 7);
    }
}
