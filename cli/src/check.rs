//! `iotql check FILE`: parse, check and plan a job; print problems with carets.

use std::path::Path;
use std::process::ExitCode;

use iotql_dsl::CheckOptions;
use iotql_dsl::ast::Statement;

use crate::Binding;
use crate::job::JobFile;

pub(crate) fn run(file: &Path, inputs: &[Binding], outputs: &[Binding], print: bool) -> ExitCode {
    let job = match JobFile::read(file, "check") {
        Ok(j) => j,
        Err(code) => return code,
    };
    let options = CheckOptions {
        inputs: inputs.iter().map(|b| b.name.clone()).collect(),
        outputs: outputs.iter().map(|b| b.name.clone()).collect(),
    };
    let script = match job.check(&options) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if print {
        print!("{script}");
    }
    let count = |f: fn(&Statement) -> bool| script.statements.iter().filter(|s| f(s)).count();
    eprintln!(
        "{}: ok ({} input declarations, {} output declarations, {} queries)",
        job.shown,
        count(|s| matches!(s, Statement::CreateInput(_))),
        count(|s| matches!(s, Statement::CreateOutput(_))),
        count(|s| matches!(s, Statement::Query(_))),
    );
    ExitCode::SUCCESS
}
