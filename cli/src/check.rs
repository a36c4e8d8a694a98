//! `iotql check FILE`: parse, check and plan a job; print problems with carets.
//!
//! It also lists the environment variables the job's `${NAME}` references
//! need (set or not, never their values); one that is not set is a problem,
//! unless `--allow-missing-env` (a job checked where its secrets are not).

use std::path::Path;
use std::process::ExitCode;

use iotql_connectors::secret;
use iotql_dsl::CheckOptions;
use iotql_dsl::ast::{OptionEntry, Script, Statement};

use crate::Binding;
use crate::job::JobFile;

/// What `check` shows and accepts besides problems.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Show {
    /// Print the job in canonical form.
    pub print: bool,
    /// Variables that are not set are listed, not refused.
    pub allow_missing_env: bool,
}

pub(crate) fn run(file: &Path, inputs: &[Binding], outputs: &[Binding], show: Show) -> ExitCode {
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
    if let Err(code) = job.check_env(&script, show.allow_missing_env) {
        return code;
    }
    if show.print {
        print!("{}", redacted(&script));
    }
    let count = |f: fn(&Statement) -> bool| script.statements.iter().filter(|s| f(s)).count();
    eprintln!(
        "{}: ok ({} input declarations, {} output declarations, {} queries)",
        job.shown,
        count(|s| matches!(s, Statement::CreateInput(_))),
        count(|s| matches!(s, Statement::CreateOutput(_))),
        count(|s| matches!(s, Statement::Query(_))),
    );
    let (needed, _) = crate::env::needed(&script, &job.source);
    let mut names: Vec<(String, bool)> = Vec::new();
    for n in &needed {
        if !names.iter().any(|(name, _)| name == &n.name) {
            names.push((n.name.clone(), n.is_set()));
        }
    }
    if !names.is_empty() {
        let list: Vec<String> = names
            .iter()
            .map(|(name, set)| format!("{name} ({})", if *set { "set" } else { "not set" }))
            .collect();
        eprintln!("  environment: {}", list.join(", "));
    }
    ExitCode::SUCCESS
}

/// The job with its declarations' secret option values as `***` (a
/// `${NAME}` reference stays) and URLs without passwords or tokens
/// (`secret::render_option`).
fn redacted(script: &Script) -> Script {
    let mut script = script.clone();
    let hide = |options: &mut Vec<OptionEntry>| {
        let connector = options
            .iter()
            .find(|o| o.key.value.eq_ignore_ascii_case("connector"))
            .map(|o| o.value.clone());
        for o in options.iter_mut() {
            o.value = secret::render_option(connector.as_deref(), &o.key.value, &o.value);
        }
    };
    for statement in &mut script.statements {
        match statement {
            Statement::CreateInput(c) => hide(&mut c.options),
            Statement::CreateOutput(c) => hide(&mut c.options),
            Statement::Query(_) => {}
        }
    }
    script
}
