//! `iotql test PATH`: finds the test files (`NAME.test.toml`) of a folder, a
//! job or one test file, runs them with the job-test harness
//! (`iotql_connectors::jobtest`, docs/testing.md) and prints PASS/FAIL per
//! test, row diffs under failures and a summary. Exit 0 when every test
//! passed, 1 when one failed or a job or test file is invalid, 2 when PATH
//! does not exist.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use iotql_connectors::jobtest::{self, RunOptions, TestFile};
use iotql_dsl::Style;

/// What to print: colours only on a terminal and without NO_COLOR.
struct Printer {
    colour: bool,
}

impl Printer {
    fn paint(&self, text: &str, code: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn style(&self) -> Style {
        if self.colour {
            Style::Color
        } else {
            Style::Plain
        }
    }
}

/// Every file under `dir` (not hidden folders), sorted.
fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

fn is_test_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".test.toml"))
}

fn is_job(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "asaql")
}

/// Two paths to the same file compare equal.
fn same(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn indent(text: &str, by: &str) -> String {
    text.lines()
        .map(|l| format!("{by}{l}\n"))
        .collect::<String>()
}

pub(crate) fn run(path: &Path, filter: Option<&str>) -> ExitCode {
    if !path.exists() {
        eprintln!("iotql test: {} does not exist", path.display());
        return ExitCode::from(2);
    }
    let printer = Printer {
        colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let mut notes = Vec::new();
    // The test files to run, and the jobs of the folder (for the notes).
    let (test_files, jobs) = if path.is_dir() {
        let mut files = Vec::new();
        if let Err(e) = walk(path, &mut files) {
            eprintln!("iotql test: cannot read {}: {e}", path.display());
            return ExitCode::from(2);
        }
        files.sort();
        let tests: Vec<PathBuf> = files.iter().filter(|f| is_test_file(f)).cloned().collect();
        let jobs: Vec<PathBuf> = files.into_iter().filter(|f| is_job(f)).collect();
        (tests, jobs)
    } else if is_test_file(path) {
        (vec![path.to_path_buf()], Vec::new())
    } else {
        match jobtest::test_file_of(path).filter(|t| t.exists()) {
            Some(t) => (vec![t], Vec::new()),
            None => {
                notes.push(format!(
                    "{} has no test file (write {} beside it; see docs/testing.md)",
                    path.display(),
                    jobtest::test_file_of(path)
                        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
                        .unwrap_or_else(|| "NAME.test.toml".into())
                ));
                (Vec::new(), Vec::new())
            }
        }
    };

    let (mut passed, mut failed, mut invalid) = (0usize, 0usize, 0usize);
    let mut tested = BTreeSet::new();
    let options = RunOptions::default();
    for test_path in &test_files {
        let shown = test_path.display().to_string();
        let file = match TestFile::load(test_path) {
            Ok(f) => f,
            Err(e) => {
                invalid += 1;
                if let Some(job) = jobtest::default_job(test_path) {
                    tested.insert(same(&job));
                }
                println!("{} {shown}", printer.paint("ERROR", "31;1"));
                print!("{}", indent(&e.render(printer.style()), "    "));
                continue;
            }
        };
        tested.insert(same(&file.job));
        let results = match jobtest::run_file(&file, &options, filter) {
            Ok(r) => r,
            Err(e) => {
                invalid += 1;
                println!(
                    "{} {shown}: the job {} is invalid",
                    printer.paint("ERROR", "31;1"),
                    file.job.display()
                );
                print!("{}", indent(&e.render(printer.style()), "    "));
                continue;
            }
        };
        for result in results {
            let ms = result.elapsed.as_millis();
            if result.passed() {
                passed += 1;
                println!(
                    "{} {shown} :: {} ({ms} ms)",
                    printer.paint("PASS", "32"),
                    result.name
                );
                continue;
            }
            failed += 1;
            println!(
                "{} {shown} :: {} ({ms} ms)",
                printer.paint("FAIL", "31;1"),
                result.name
            );
            match &result.verdict {
                Ok(verdict) => print!("{}", verdict.render(printer.colour)),
                Err(e) => print!("{}", indent(&e.render(printer.style()), "    ")),
            }
        }
    }
    for job in &jobs {
        if !tested.contains(&same(job)) {
            let name = job
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            notes.push(format!(
                "{} has no tests (write {name}.test.toml beside it)",
                job.display()
            ));
        }
    }
    for note in &notes {
        println!("{} {note}", printer.paint("note:", "33"));
    }
    let mut summary = format!("{passed} passed, {failed} failed");
    if invalid > 0 {
        summary.push_str(&format!(
            ", {invalid} invalid file{}",
            if invalid == 1 { "" } else { "s" }
        ));
    }
    if filter.is_some() {
        summary.push_str(" (filtered)");
    }
    let ok = failed == 0 && invalid == 0;
    println!(
        "{}",
        printer.paint(&summary, if ok { "32" } else { "31;1" })
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
