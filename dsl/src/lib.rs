//! # iotql-dsl
//!
//! The Azure Stream Analytics (ASA) query language as iotql reads it: a nom
//! parser from job-file text to an [`ast::Script`] whose nodes carry their
//! source spans and print back as canonical ASA text, and the checks that
//! can be made without running a job ([`check`]), each reported as a
//! [`Diagnostic`] with line, column, a caret and a hint.
//!
//! This crate knows nothing of Arrow or I/O; the engine plans the AST.
//!
//! ```
//! let script = iotql_dsl::parse(
//!     "SELECT device_id, AVG(temperature_c) AS avg_temp INTO out \
//!      FROM readings TIMESTAMP BY ts GROUP BY device_id, TumblingWindow(minute, 5)",
//! ).unwrap();
//! assert!(iotql_dsl::check(&script, &Default::default()).is_empty());
//! assert!(script.to_string().contains("TumblingWindow(minute, 5)"));
//! ```

pub mod ast;
pub mod catalog;
pub mod check;
pub mod diagnostic;
pub mod keyword;
mod parser;
mod print;
pub mod span;
pub mod suggest;

pub use check::{CheckOptions, check};
pub use diagnostic::{Diagnostic, Style, render};
pub use parser::parse;
pub use span::Span;

/// Parses and checks `source`: the script, or every problem found.
pub fn parse_and_check(
    source: &str,
    options: &CheckOptions,
) -> Result<ast::Script, Vec<Diagnostic>> {
    let script = parse(source).map_err(|d| vec![d])?;
    let problems = check(&script, options);
    if problems.is_empty() {
        Ok(script)
    } else {
        Err(problems)
    }
}
