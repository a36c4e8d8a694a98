//! The environment a job needs: its `${NAME}` references, found in the
//! option values of its declarations, each with its place in the file, so
//! that a missing variable is reported with line, column and a caret before
//! anything runs. The values are replaced later, when the inputs and outputs
//! are resolved (`iotql_connectors::secret`), and are never printed.

use iotql_connectors::secret::{self, EnvError};
use iotql_dsl::Diagnostic;
use iotql_dsl::Span;
use iotql_dsl::ast::{OptionEntry, Script, Statement};

/// One `${NAME}` of a job.
#[derive(Debug, Clone)]
pub(crate) struct Needed {
    pub name: String,
    pub has_default: bool,
    /// Where in the job file.
    pub span: Span,
    /// `input readings, option sasl_password`.
    pub place: String,
}

impl Needed {
    /// Whether the environment gives it a value (or its default does).
    pub fn is_set(&self) -> bool {
        self.has_default || std::env::var_os(&self.name).is_some()
    }
}

/// The byte offset in `source` of the text between the quotes of
/// `entry`'s value.
fn value_start(entry: &OptionEntry, source: &str) -> Option<usize> {
    let text = source.get(entry.span.start..entry.span.end)?;
    let eq = text.find('=')?;
    let quote = text[eq..].find(['\'', '"'])?;
    Some(entry.span.start + eq + quote + 1)
}

/// Every `${NAME}` in the declarations of `script` (whose text is
/// `source`), and the references that are not well formed.
pub(crate) fn needed(script: &Script, source: &str) -> (Vec<Needed>, Vec<Diagnostic>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for statement in &script.statements {
        let (kind, name, options) = match statement {
            Statement::CreateInput(c) if c.reference => ("reference input", &c.name, &c.options),
            Statement::CreateInput(c) => ("input", &c.name, &c.options),
            Statement::CreateOutput(c) => ("output", &c.name, &c.options),
            Statement::Query(_) => continue,
        };
        for entry in options {
            if !entry.value.contains("${") {
                continue;
            }
            let place = format!("{kind} `{}`, option `{}`", name.value, entry.key.value);
            // Offsets in the written text (quotes doubled) are those of the
            // value wherever no quote comes before the reference; else the
            // whole option is marked.
            let start = value_start(entry, source);
            let at = |from: usize, to: usize| match start {
                Some(s) if !entry.value[..from].contains('\'') => Span::new(s + from, s + to),
                _ => entry.span,
            };
            match secret::references(&entry.value) {
                Ok(refs) => found.extend(refs.into_iter().map(|r| Needed {
                    span: at(r.start, r.end),
                    has_default: r.default.is_some(),
                    name: r.name,
                    place: place.clone(),
                })),
                Err(e) => {
                    let (from, to) = e.range();
                    problems.push(Diagnostic::new(
                        "iotql::env-reference",
                        at(from, to),
                        format!("{place}: {e}"),
                        "here",
                    ));
                }
            }
        }
    }
    (found, problems)
}

/// The problems of the job's environment: malformed references, and
/// (unless `missing_ok`) variables that are not set.
pub(crate) fn problems(script: &Script, source: &str, missing_ok: bool) -> Vec<Diagnostic> {
    let (found, mut problems) = needed(script, source);
    if !missing_ok {
        for n in found.iter().filter(|n| !n.is_set()) {
            let e = EnvError::Unset {
                name: n.name.clone(),
                start: 0,
                end: 0,
            };
            problems.push(
                Diagnostic::new(
                    "iotql::env-unset",
                    n.span,
                    format!("{}: {e}", n.place),
                    format!("`{}` is not set", n.name),
                )
                .with_help(format!(
                    "set it in the environment of iotql (export {}=...); values from the environment are never printed",
                    n.name
                )),
            );
        }
    }
    problems.sort_by_key(|d| d.span.start);
    problems
}
