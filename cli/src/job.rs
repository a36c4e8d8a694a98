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
        // The source lines shown under a problem hide the job's secrets.
        let source = masked_source(&self.source);
        eprint!(
            "{}",
            iotql_dsl::render(problems, &self.shown, &source, style)
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

    /// Refuses the job when a `${NAME}` of its declarations is malformed
    /// or (unless `missing_ok`) names a variable that is not set.
    pub(crate) fn check_env(&self, script: &Script, missing_ok: bool) -> Result<(), ExitCode> {
        let problems = crate::env::problems(script, &self.source, missing_ok);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(self.refuse(&problems))
        }
    }

    pub(crate) fn plan(
        &self,
        script: &Script,
        options: &PlanOptions,
    ) -> Result<LogicalPlan, ExitCode> {
        iotql_engine::plan::build(script, options).map_err(|p| self.refuse(&p))
    }
}

/// `source` with the secret option values of its declarations (literal
/// passwords, tokens, URL passwords) replaced by `*`, byte for byte, so that
/// the spans of problems still point at the same places. A text that does
/// not parse is shown as it is.
pub(crate) fn masked_source(source: &str) -> String {
    use iotql_dsl::ast::Statement;
    let Ok(script) = iotql_dsl::parse(source) else {
        return source.to_string();
    };
    let mut masked = source.to_string();
    for statement in &script.statements {
        let options = match statement {
            Statement::CreateInput(c) => &c.options,
            Statement::CreateOutput(c) => &c.options,
            Statement::Query(_) => continue,
        };
        let connector = options
            .iter()
            .find(|o| o.key.value.eq_ignore_ascii_case("connector"))
            .map(|o| o.value.as_str());
        for o in options {
            let Some(raw) = source.get(o.span.start..o.span.end) else {
                continue;
            };
            // The value as written: between the quotes after `=`.
            let Some(eq) = raw.find('=') else { continue };
            let Some(open) = raw[eq..].find(['\'', '"']) else {
                continue;
            };
            let start = o.span.start + eq + open + 1;
            let end = o.span.end.saturating_sub(1);
            let Some(written) = source.get(start..end.max(start)) else {
                continue;
            };
            let hidden = if written.contains("''") {
                // Quotes doubled: offsets differ from the value's; a secret
                // option is hidden whole, anything else shown.
                if iotql_connectors::secret::is_secret_option(&o.key.value) {
                    "*".repeat(written.len())
                } else {
                    continue;
                }
            } else {
                iotql_connectors::secret::mask_value(connector, &o.key.value, written)
            };
            if hidden.len() == written.len() && hidden != written {
                masked.replace_range(start..end, &hidden);
            }
        }
    }
    masked
}
