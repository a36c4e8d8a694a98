//! `iotql check FILE`: parse and check a job, print problems with carets.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use iotql_dsl::ast::Statement;
use iotql_dsl::{CheckOptions, Style};

use crate::Binding;

pub(crate) fn run(file: &Path, inputs: &[Binding], outputs: &[Binding], print: bool) -> ExitCode {
    let shown = file.display().to_string();
    let source = match std::fs::read_to_string(file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("iotql check: cannot read {shown}: {e}");
            return ExitCode::from(2);
        }
    };
    let options = CheckOptions {
        inputs: inputs.iter().map(|b| b.name.clone()).collect(),
        outputs: outputs.iter().map(|b| b.name.clone()).collect(),
    };
    match iotql_dsl::parse_and_check(&source, &options) {
        Ok(script) => {
            if print {
                print!("{script}");
            }
            let count =
                |f: fn(&Statement) -> bool| script.statements.iter().filter(|s| f(s)).count();
            eprintln!(
                "{shown}: ok ({} input declarations, {} output declarations, {} queries)",
                count(|s| matches!(s, Statement::CreateInput(_))),
                count(|s| matches!(s, Statement::CreateOutput(_))),
                count(|s| matches!(s, Statement::Query(_))),
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            let style = if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            {
                Style::Color
            } else {
                Style::Plain
            };
            eprint!("{}", iotql_dsl::render(&problems, &shown, &source, style));
            let n = problems.len();
            eprintln!("{shown}: {n} problem{}", if n == 1 { "" } else { "s" });
            ExitCode::from(1)
        }
    }
}
