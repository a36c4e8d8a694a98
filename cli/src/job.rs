//! Loading a job file: read, parse, check, plan; problems rendered with carets.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use iotql_dsl::ast::Script;
use iotql_dsl::{CheckOptions, Diagnostic, Style};
use iotql_engine::plan::{LogicalPlan, PlanOptions};

/// A job file read from disk.
pub(crate) struct JobFile {
    pub shown: String,
    pub source: String,
}

impl JobFile {
    /// Reads `path`; a file that cannot be read is a usage error (exit 2).
    pub(crate) fn read(path: &Path, command: &str) -> Result<JobFile, ExitCode> {
        let shown = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(source) => Ok(JobFile { shown, source }),
            Err(e) => {
                eprintln!("iotql {command}: cannot read {shown}: {e}");
                Err(ExitCode::from(2))
            }
        }
    }

    /// Prints `problems` with carets and returns exit code 1 (the job is invalid).
    pub(crate) fn refuse(&self, problems: &[Diagnostic]) -> ExitCode {
        let style = if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
            Style::Color
        } else {
            Style::Plain
        };
        eprint!(
            "{}",
            iotql_dsl::render(problems, &self.shown, &self.source, style)
        );
        let n = problems.len();
        eprintln!(
            "{}: {n} problem{}",
            self.shown,
            if n == 1 { "" } else { "s" }
        );
        ExitCode::from(1)
    }

    pub(crate) fn check(&self, options: &CheckOptions) -> Result<Script, ExitCode> {
        iotql_dsl::parse_and_check(&self.source, options).map_err(|p| self.refuse(&p))
    }

    pub(crate) fn plan(
        &self,
        script: &Script,
        options: &PlanOptions,
    ) -> Result<LogicalPlan, ExitCode> {
        iotql_engine::plan::build(script, options).map_err(|p| self.refuse(&p))
    }
}
