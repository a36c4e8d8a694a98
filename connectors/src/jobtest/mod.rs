//! A job's own tests (`iotql test`, `docs/testing.md`): a TOML file
//! `NAME.test.toml` beside the job `NAME.asaql` names input events and the
//! rows each output must get. The job's inputs and outputs are replaced:
//! inputs read the test's events through the real CSV and JSON-lines
//! decoders, outputs are captured in memory (throttled as declared), and
//! the run is deterministic ([`run`]). [`compare`] checks the captured rows
//! against the expected ones and makes a readable row diff.
//!
//! The model ([`TestFile`], [`JobTest`]) does not depend on TOML: the golden
//! cases of `tests/cases/` build it from their folders and run through the
//! same harness.

pub mod compare;
pub mod run;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use iotql_dsl::ast::Script;
use iotql_dsl::{CheckOptions, Diagnostic, Style};
use iotql_engine::plan::{LatePolicy, TimePolicy};
use serde::Deserialize;

pub use compare::Verdict;
pub use run::{Captured, Outcome, RunOptions};

/// Events or rows, written inline or in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// CSV text: a header row, then one event per line.
    Csv(String),
    /// JSON lines: one object per line.
    JsonLines(String),
    /// A `.csv` or `.jsonl` file (by its extension).
    File(PathBuf),
    /// A SQL script run in a fresh SQLite database; the input reads the
    /// table named like it (reference inputs only).
    Sql(String),
}

impl Data {
    /// What the data is, for messages: `csv`, `jsonl`, `file data/x.csv`, `sql`.
    fn describe(&self) -> String {
        match self {
            Data::Csv(_) => "csv".into(),
            Data::JsonLines(_) => "jsonl".into(),
            Data::File(p) => format!("file {}", p.display()),
            Data::Sql(_) => "sql".into(),
        }
    }
}

/// The rows one output must get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub rows: Data,
    /// Compare in order; otherwise as a multiset (the default).
    pub ordered: bool,
}

/// One test of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobTest {
    pub name: String,
    /// As `iotql run --out-of-order/--late-arrival/--late-policy`; an
    /// input's declared options win.
    pub time: TimePolicy,
    /// Input name -> its events, in the order written.
    pub inputs: Vec<(String, Data)>,
    /// Output name -> its rows; outputs not listed are not checked.
    pub outputs: Vec<(String, Expected)>,
    /// Prefixes of the expected dead-letter lines, one per dead letter;
    /// `None`: no event may be dead-lettered.
    pub dead_letters: Option<Vec<String>>,
}

/// A test file: the job it tests and its tests. Relative paths in it are
/// relative to `base` (the test file's folder).
#[derive(Debug, Clone, PartialEq)]
pub struct TestFile {
    pub path: PathBuf,
    pub job: PathBuf,
    pub base: PathBuf,
    pub tests: Vec<JobTest>,
}

/// Why a test (or a whole test file) could not run.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// A file could not be read.
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    /// The test file is not valid TOML or not in the test format; the
    /// message shows the line and column.
    #[error("{path}: {message}")]
    Toml { path: PathBuf, message: String },
    /// The job is invalid: diagnostics with spans in `source`.
    #[error("{}", render_job(path, text, problems, Style::Plain))]
    Job {
        path: PathBuf,
        /// The job's text.
        text: String,
        problems: Vec<Diagnostic>,
    },
    /// A test is wrong (an input the job does not have, a column the output
    /// does not have, bad events).
    #[error("{file} :: {test}: {message}")]
    Test {
        file: PathBuf,
        test: String,
        message: String,
    },
}

fn render_job(path: &Path, source: &str, problems: &[Diagnostic], style: Style) -> String {
    let shown = path.display().to_string();
    let mut out = iotql_dsl::render(problems, &shown, source, style);
    let n = problems.len();
    out.push_str(&format!(
        "{shown}: {n} problem{}\n",
        if n == 1 { "" } else { "s" }
    ));
    out
}

impl TestError {
    /// The error as text; job diagnostics with carets (coloured with
    /// `Style::Color`), as `iotql check` prints them.
    pub fn render(&self, style: Style) -> String {
        match self {
            TestError::Job {
                path,
                text,
                problems,
            } => render_job(path, text, problems, style),
            other => format!("{other}\n"),
        }
    }
}

/// A job file, parsed and checked.
#[derive(Debug, Clone)]
pub struct Job {
    pub path: PathBuf,
    pub source: String,
    pub script: Script,
}

impl Job {
    /// Reads, parses and checks the job at `path`.
    pub fn load(path: &Path) -> Result<Job, TestError> {
        let source = std::fs::read_to_string(path).map_err(|e| TestError::Io {
            path: path.to_path_buf(),
            message: format!("cannot read the job: {e}"),
        })?;
        Job::parse(path, source)
    }

    /// Parses and checks `source`, the text of the job at `path`.
    pub fn parse(path: &Path, source: String) -> Result<Job, TestError> {
        match iotql_dsl::parse_and_check(&source, &CheckOptions::default()) {
            Ok(script) => Ok(Job {
                path: path.to_path_buf(),
                source,
                script,
            }),
            Err(problems) => Err(TestError::Job {
                path: path.to_path_buf(),
                text: source,
                problems,
            }),
        }
    }

    /// The diagnostics of planning or compiling this job as an error.
    pub fn refused(&self, problems: Vec<Diagnostic>) -> TestError {
        TestError::Job {
            path: self.path.clone(),
            text: self.source.clone(),
            problems,
        }
    }
}

// The TOML format. Unknown keys are errors: a typo must not make a test
// silently check less.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    job: Option<String>,
    out_of_order: Option<String>,
    late_arrival: Option<String>,
    late_policy: Option<String>,
    #[serde(default)]
    test: Vec<TestToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestToml {
    name: String,
    out_of_order: Option<String>,
    late_arrival: Option<String>,
    late_policy: Option<String>,
    /// Tables of [`DataToml`], in the order written.
    #[serde(default)]
    inputs: toml::Table,
    #[serde(default)]
    outputs: toml::Table,
    dead_letters: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataToml {
    csv: Option<String>,
    jsonl: Option<String>,
    file: Option<String>,
    sql: Option<String>,
    ordered: Option<bool>,
}

/// The time settings of a test: its own, else the file's, else the defaults
/// of `iotql run`.
fn time_policy(
    own: [&Option<String>; 3],
    file: [&Option<String>; 3],
) -> Result<TimePolicy, String> {
    let pick = |i: usize| own[i].as_ref().or(file[i].as_ref());
    let mut policy = TimePolicy::default();
    let duration = |key: &str, text: &str| -> Result<Duration, String> {
        iotql_engine::time::parse_duration(text).map_err(|e| format!("{key}: {e}"))
    };
    if let Some(d) = pick(0) {
        policy.out_of_order = duration("out_of_order", d)?;
    }
    if let Some(d) = pick(1) {
        policy.late_arrival = duration("late_arrival", d)?;
    }
    if let Some(p) = pick(2) {
        policy.late_policy = p
            .parse::<LatePolicy>()
            .map_err(|e| format!("late_policy: {e}"))?;
    }
    Ok(policy)
}

impl DataToml {
    fn from_value(what: &str, value: toml::Value) -> Result<DataToml, String> {
        value.try_into().map_err(|e: toml::de::Error| {
            let message = e.message();
            // TOML puts the keys after a table header into that table.
            let misplaced = [
                "name",
                "dead_letters",
                "out_of_order",
                "late_arrival",
                "late_policy",
            ]
            .iter()
            .any(|k| message.contains(&format!("unknown field `{k}`")));
            let hint = if misplaced {
                " (a test's own keys go before its [test.inputs.*] and [test.outputs.*] tables)"
            } else {
                ""
            };
            format!("{what}: {message}{hint}")
        })
    }

    /// The one source of rows it names; `what` says where, for messages.
    fn data(self, what: &str, base: &Path, sql_allowed: bool) -> Result<(Data, bool), String> {
        let ordered = self.ordered.unwrap_or(false);
        let mut given = Vec::new();
        if let Some(t) = self.csv {
            given.push(Data::Csv(t));
        }
        if let Some(t) = self.jsonl {
            given.push(Data::JsonLines(t));
        }
        if let Some(f) = self.file {
            let path = base.join(&f);
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if !["csv", "jsonl"].contains(&ext.to_ascii_lowercase().as_str()) {
                return Err(format!(
                    "{what}: file `{f}` must be a .csv or .jsonl file (the extension says which)"
                ));
            }
            given.push(Data::File(path));
        }
        if let Some(s) = self.sql {
            if !sql_allowed {
                return Err(format!(
                    "{what}: `sql` gives a reference input's table; expected rows are csv, jsonl or file"
                ));
            }
            given.push(Data::Sql(s));
        }
        match given.len() {
            1 => Ok((given.remove(0), ordered)),
            0 => Err(format!(
                "{what}: give the rows as csv = \"\"\"...\"\"\", jsonl = \"\"\"...\"\"\" or file = \"PATH\""
            )),
            _ => Err(format!(
                "{what}: give one of csv, jsonl, file{} (found {})",
                if sql_allowed { ", sql" } else { "" },
                given
                    .iter()
                    .map(Data::describe)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

/// The job a test file tests by default: `NAME.asaql` beside `NAME.test.toml`.
pub fn default_job(test_file: &Path) -> Option<PathBuf> {
    let name = test_file.file_name()?.to_str()?;
    let stem = name.strip_suffix(".test.toml")?;
    Some(test_file.with_file_name(format!("{stem}.asaql")))
}

/// The test file of a job: `NAME.test.toml` beside `NAME.asaql`.
pub fn test_file_of(job: &Path) -> Option<PathBuf> {
    let stem = job.file_stem()?.to_str()?;
    Some(job.with_file_name(format!("{stem}.test.toml")))
}

impl TestFile {
    /// Reads and validates the test file at `path`.
    pub fn load(path: &Path) -> Result<TestFile, TestError> {
        let text = std::fs::read_to_string(path).map_err(|e| TestError::Io {
            path: path.to_path_buf(),
            message: format!("cannot read the test file: {e}"),
        })?;
        TestFile::parse(path, &text)
    }

    /// Parses `text`, the test file at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<TestFile, TestError> {
        let toml_error = |message: String| TestError::Toml {
            path: path.to_path_buf(),
            message,
        };
        let file: FileToml = toml::from_str(text).map_err(|e| toml_error(e.to_string()))?;
        let base = path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let job = match &file.job {
            Some(j) => base.join(j),
            None => default_job(path).ok_or_else(|| {
                toml_error(
                    "the file is not named NAME.test.toml: say which job it tests with job = \"NAME.asaql\""
                        .into(),
                )
            })?,
        };
        let file_time = [&file.out_of_order, &file.late_arrival, &file.late_policy];
        time_policy([&None, &None, &None], file_time).map_err(toml_error)?;
        if file.test.is_empty() {
            return Err(toml_error(
                "no test: add one with [[test]] and name = \"...\"".into(),
            ));
        }
        let mut tests = Vec::new();
        let mut names = std::collections::HashSet::new();
        for t in file.test {
            let test_error = |message: String| TestError::Test {
                file: path.to_path_buf(),
                test: t.name.clone(),
                message,
            };
            if !names.insert(t.name.clone()) {
                return Err(test_error(
                    "another test of the file has this name: names must differ".into(),
                ));
            }
            let time = time_policy(
                [&t.out_of_order, &t.late_arrival, &t.late_policy],
                file_time,
            )
            .map_err(test_error)?;
            let mut inputs = Vec::new();
            for (name, data) in t.inputs {
                let what = format!("input `{name}`");
                let (data, ordered) = DataToml::from_value(&what, data)
                    .and_then(|d| d.data(&what, &base, true))
                    .map_err(test_error)?;
                if ordered {
                    return Err(test_error(format!(
                        "input `{name}`: `ordered` is for outputs (inputs are always read in order)"
                    )));
                }
                inputs.push((name, data));
            }
            let mut outputs = Vec::new();
            for (name, data) in t.outputs {
                let what = format!("output `{name}`");
                let (rows, ordered) = DataToml::from_value(&what, data)
                    .and_then(|d| d.data(&what, &base, false))
                    .map_err(test_error)?;
                outputs.push((name, Expected { rows, ordered }));
            }
            tests.push(JobTest {
                name: t.name,
                time,
                inputs,
                outputs,
                dead_letters: t.dead_letters,
            });
        }
        Ok(TestFile {
            path: path.to_path_buf(),
            job,
            base,
            tests,
        })
    }
}

/// How one test went.
#[derive(Debug)]
pub struct TestResult {
    pub name: String,
    pub elapsed: Duration,
    /// The comparison, or why the test could not run.
    pub verdict: Result<Verdict, TestError>,
}

impl TestResult {
    pub fn passed(&self) -> bool {
        self.verdict.as_ref().is_ok_and(Verdict::passed)
    }
}

/// Runs one test of `job` and compares its outputs.
pub fn run_test(
    job: &Job,
    file: &TestFile,
    test: &JobTest,
    options: &RunOptions,
) -> Result<Verdict, TestError> {
    let outcome = run::run(job, file, test, options)?;
    compare::check(file, test, &outcome)
}

/// Runs the tests of `file` whose name contains `filter` (all without one).
/// An invalid job is an error of the whole file.
pub fn run_file(
    file: &TestFile,
    options: &RunOptions,
    filter: Option<&str>,
) -> Result<Vec<TestResult>, TestError> {
    let job = Job::load(&file.job)?;
    let mut results = Vec::new();
    for test in &file.tests {
        if filter.is_some_and(|f| !test.name.contains(f)) {
            continue;
        }
        let started = Instant::now();
        let verdict = run_test(&job, file, test, options);
        results.push(TestResult {
            name: test.name.clone(),
            elapsed: started.elapsed(),
            verdict,
        });
    }
    Ok(results)
}

/// Names in the job are case-insensitive: the key of `name` among `names`.
pub(crate) fn find_name<'a>(
    names: impl IntoIterator<Item = &'a str>,
    name: &str,
) -> Option<&'a str> {
    names.into_iter().find(|n| n.eq_ignore_ascii_case(name))
}

/// The names in a message: `a`, `b` and `c`.
pub(crate) fn listed(names: &[String]) -> String {
    if names.is_empty() {
        return "none".into();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
