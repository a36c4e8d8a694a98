//! Golden cases: `tests/cases/<name>/` holds `query.asaql`, one input file
//! per input (`<input>.csv`, `<input>.jsonl`, or `<input>.sql`: a script
//! that builds a SQLite table of that name, for reference data), and the rows each output
//! must get (`expected.csv` for the output named `output`, else
//! `expected_<output>.csv`). An optional `args` file sets the time policy
//! (`--out-of-order 5s`, `--late-policy drop`). An optional
//! `expected_deadletter.txt` lists `input position: reason` per refused event.
//!
//! Each case becomes a test of the job-test harness
//! (`iotql_connectors::jobtest`, the one `iotql test` runs; see
//! docs/testing.md): inputs in the order the job declares them, taking
//! turns one event at a time. It runs with the default batches (as many
//! consecutive events of one input as there are) and with batches of one
//! event, and both runs must give the expected rows (compared as a
//! multiset: the order in which different windows' or statements' rows
//! interleave is not part of the contract) and the expected dead letters.
//!
//! `IOTQL_BLESS=1 cargo test -p iotql-tests --test golden` writes the
//! expected files from the current output, for review in `git diff`.

use std::path::{Path, PathBuf};

use iotql_connectors::jobtest::{Data, Expected, Job, JobTest, Outcome, RunOptions, TestFile};
use iotql_engine::plan::{self, PlanOptions, TimePolicy};
use iotql_engine::time::parse_duration;

fn parse_args(dir: &Path) -> Result<TimePolicy, String> {
    let mut policy = TimePolicy::default();
    let Ok(text) = std::fs::read_to_string(dir.join("args")) else {
        return Ok(policy);
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    for pair in words.chunks(2) {
        match pair {
            ["--out-of-order", v] => policy.out_of_order = parse_duration(v)?,
            ["--late-arrival", v] => policy.late_arrival = parse_duration(v)?,
            ["--late-policy", v] => policy.late_policy = v.parse()?,
            ["--max-future", v] => policy.max_future = plan::parse_max_future(v)?,
            other => return Err(format!("unknown args {other:?}")),
        }
    }
    Ok(policy)
}

fn expected_file(dir: &Path, output: &str) -> PathBuf {
    if output.eq_ignore_ascii_case("output") {
        dir.join("expected.csv")
    } else {
        dir.join(format!("expected_{output}.csv"))
    }
}

/// The case as a job test: its job, and the test of one run.
fn case(dir: &Path, bless: bool) -> Result<(Job, TestFile), String> {
    let job = Job::load(&dir.join("query.asaql")).map_err(|e| e.to_string())?;
    let time = parse_args(dir)?;
    let plan = plan::build(
        &job.script,
        &PlanOptions {
            time,
            extra_inputs: Vec::new(),
        },
    )
    .map_err(|p| job.refused(p).to_string())?;
    let mut inputs = Vec::new();
    for input in &plan.inputs {
        let name = &input.name;
        let file = |ext: &str| dir.join(format!("{name}.{ext}"));
        let data = if file("csv").exists() {
            Data::File(file("csv"))
        } else if file("jsonl").exists() {
            Data::File(file("jsonl"))
        } else if file("sql").exists() {
            Data::Sql(std::fs::read_to_string(file("sql")).map_err(|e| e.to_string())?)
        } else {
            return Err(format!("no {name}.csv, {name}.jsonl or {name}.sql"));
        };
        inputs.push((name.clone(), data));
    }
    let mut outputs = Vec::new();
    for output in &plan.outputs {
        let path = expected_file(dir, &output.name);
        if !path.exists() {
            if bless {
                continue;
            }
            return Err(format!("missing {}", path.display()));
        }
        outputs.push((
            output.name.clone(),
            Expected {
                rows: Data::File(path),
                ordered: false,
            },
        ));
    }
    let dead_letters = std::fs::read_to_string(dir.join("expected_deadletter.txt"))
        .ok()
        .map(|t| t.lines().map(str::to_string).collect());
    let test = JobTest {
        name: "golden".into(),
        time,
        inputs,
        outputs,
        dead_letters,
    };
    let file = TestFile {
        path: dir.join("query.asaql"),
        job: dir.join("query.asaql"),
        base: dir.to_path_buf(),
        tests: vec![test],
    };
    Ok((job, file))
}

/// Writes the expected files from a run.
fn bless(dir: &Path, outcome: &Outcome) -> Result<(), String> {
    for (output, captured) in &outcome.outputs {
        let text = iotql_connectors::file::csv::to_text(&captured.schema, &captured.batches)
            .map_err(|e| e.to_string())?;
        std::fs::write(expected_file(dir, output), text).map_err(|e| e.to_string())?;
    }
    if !outcome.dead_letters.is_empty() {
        std::fs::write(
            dir.join("expected_deadletter.txt"),
            outcome.dead_letters.join("\n") + "\n",
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn check_case(dir: &Path) -> Result<(), String> {
    let blessing = std::env::var_os("IOTQL_BLESS").is_some();
    let (job, file) = case(dir, blessing)?;
    let test = &file.tests[0];
    if blessing {
        let outcome =
            iotql_connectors::jobtest::run::run(&job, &file, test, &RunOptions::default())
                .map_err(|e| e.to_string())?;
        bless(dir, &outcome)?;
    }
    // Re-read after blessing: the batches of one event must agree with it.
    let (job, file) = case(dir, false)?;
    let test = &file.tests[0];
    let mut failures = String::new();
    for (label, batch_size) in [("default batches", None), ("batches of 1 event", Some(1))] {
        let options = RunOptions { batch_size };
        let verdict = iotql_connectors::jobtest::run_test(&job, &file, test, &options)
            .map_err(|e| format!("{label}: {e}"))?;
        if !verdict.passed() {
            failures.push_str(&format!("{label}:\n{}", verdict.render(false)));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

#[test]
fn golden_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("cases");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/cases")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("query.asaql").exists())
        .collect();
    dirs.sort();
    let only = std::env::var("IOTQL_CASE").ok();
    let mut failures = Vec::new();
    let mut ran = 0;
    for dir in &dirs {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        ran += 1;
        if let Err(e) = check_case(dir) {
            failures.push(format!("case {name}: {e}"));
        }
    }
    assert!(ran > 0, "no golden case ran");
    assert!(
        failures.is_empty(),
        "{} of {ran} golden cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    eprintln!("{ran} golden cases passed");
}
