#![allow(clippy::unwrap_used)]
//! The `iotql` command as users run it: exit codes, messages on stderr.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn iotql(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_iotql"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .env("NO_COLOR", "1")
        .output()
        .expect("run iotql")
}

/// Writes `text` to a file `name` in a fresh folder of this test run.
fn job_file(tag: &str, name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    file
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_accepts_the_bundled_job() {
    let out = iotql(&["check", "queries/alerts.asaql"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("ok (1 input declarations, 3 output declarations, 3 queries)"));
}

#[test]
fn check_refuses_a_bad_query_with_line_column_and_caret() {
    let file = job_file(
        "iotql-cli-test",
        "bad.sql",
        "SELECT device_id temperature_c humidity_pct\nFROM readings\n",
    );
    let out = iotql(&["check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("bad.sql:1:32: missing comma between select items"),
        "{err}"
    );
    assert!(
        err.contains("SELECT device_id temperature_c humidity_pct"),
        "{err}"
    );
    assert!(err.contains("────┬─"), "no caret under the fault:\n{err}");
    assert!(err.contains("1 problem"), "{err}");
}

#[test]
fn check_knows_inputs_bound_on_the_command_line() {
    let file = job_file(
        "iotql-cli-bind",
        "job.asaql",
        "CREATE INPUT readings WITH (connector = 'csv', path = 'r.csv');\nSELECT * FROM readings UNION SELECT * FROM extra\n",
    );
    let unbound = iotql(&["check", file.to_str().unwrap()]);
    assert_eq!(unbound.status.code(), Some(1), "{}", stderr(&unbound));
    let bound = iotql(&[
        "check",
        file.to_str().unwrap(),
        "--input",
        "extra=csv:e.csv",
    ]);
    assert_eq!(bound.status.code(), Some(0), "{}", stderr(&bound));
}

#[test]
fn a_missing_file_is_a_usage_error() {
    let out = iotql(&["check", "no/such/file.asaql"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read no/such/file.asaql"));
}

#[test]
fn a_bad_binding_is_a_usage_error() {
    let out = iotql(&["check", "queries/alerts.asaql", "--input", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("expected NAME=URI"));
}

/// Every bundled job runs on its bundled data and writes every output.
#[test]
fn every_bundled_job_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::env::temp_dir().join(format!("iotql-jobs-{}", std::process::id()));
    let mut ran = 0;
    for entry in std::fs::read_dir(root.join("queries")).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "asaql") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let script = iotql_dsl::parse(&source).unwrap();
        let mut args = vec!["run".to_string(), path.display().to_string(), "-q".into()];
        let mut files = Vec::new();
        for s in &script.statements {
            // A simulated fleet plays until Ctrl+C: here, a bounded one.
            if let iotql_dsl::ast::Statement::CreateInput(i) = s
                && i.options
                    .iter()
                    .any(|o| o.key.value.eq_ignore_ascii_case("connector") && o.value == "sim")
            {
                args.push("--input".into());
                args.push(format!("{}=sim:?count=3000&rate=max", i.name.value));
            }
            if let iotql_dsl::ast::Statement::CreateOutput(o) = s {
                let file = out.join(format!("{}.csv", o.name.value));
                args.push("--output".into());
                args.push(format!("{}=csv:{}", o.name.value, file.display()));
                files.push(file);
            }
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = iotql(&refs);
        assert_eq!(
            run.status.code(),
            Some(0),
            "{}: {}",
            path.display(),
            stderr(&run)
        );
        for f in files {
            let text = std::fs::read_to_string(&f)
                .unwrap_or_else(|_| panic!("{} not written", f.display()));
            assert!(text.lines().count() > 1, "{} has no rows", f.display());
        }
        ran += 1;
    }
    assert!(ran >= 2, "ran {ran} jobs");
}

fn iotql_with_stdin(args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_iotql"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run iotql");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `-` reads stdin and writes stdout; the summary says what happened, on
/// stderr; refused events land in the dead-letter file with line and reason.
#[test]
fn run_reads_stdin_writes_stdout_and_keeps_dead_letters() {
    let job = job_file(
        "iotql-run",
        "hot.asaql",
        "SELECT device_id, System.Timestamp() AS window_end, COUNT(*) AS n, MAX(t) AS max_t\n\
         FROM readings TIMESTAMP BY ts GROUP BY device_id, TumblingWindow(minute, 1)\n",
    );
    let input = "device_id,ts,t\n\
                 a,2026-01-01T00:00:10Z,20\n\
                 a,2026-01-01T00:00:50Z,31\n\
                 b,not-a-time,5\n\
                 a,2026-01-01T00:01:10Z,22,extra\n\
                 b,2026-01-01T00:01:30Z,18\n";
    let dead = job.with_file_name("dead.jsonl");
    let out = iotql_with_stdin(
        &[
            "run",
            job.to_str().unwrap(),
            "--input",
            "readings=csv:-",
            "--output",
            "output=csv:-",
            "--dead-letter",
            dead.to_str().unwrap(),
        ],
        input,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout,
        "device_id,window_end,n,max_t\n\
         a,2026-01-01T00:01:00.000Z,2,31\n\
         b,2026-01-01T00:02:00.000Z,1,18\n"
    );
    let err = stderr(&out);
    assert!(
        err.contains("readings") && err.contains("4 events"),
        "{err}"
    );
    assert!(err.contains("dead letters: 2"), "{err}");
    let letters = std::fs::read_to_string(&dead).unwrap();
    let lines: Vec<&str> = letters.lines().collect();
    assert_eq!(lines.len(), 2, "{letters}");
    assert!(
        lines[0].contains("\"position\":\"line 4\"") && lines[0].contains("not-a-time"),
        "{letters}"
    );
    assert!(
        lines[1].contains("\"position\":\"line 5\"")
            && lines[1].contains("expected 3 fields, found 4"),
        "{letters}"
    );

    // -q: the same rows, nothing on stderr.
    let quiet = iotql_with_stdin(
        &[
            "run",
            job.to_str().unwrap(),
            "--input",
            "readings=csv:-",
            "--output",
            "output=csv:-",
            "-q",
            "--dead-letter",
            dead.to_str().unwrap(),
        ],
        input,
    );
    assert_eq!(quiet.status.code(), Some(0));
    assert!(quiet.stderr.is_empty(), "{}", stderr(&quiet));
    assert_eq!(String::from_utf8_lossy(&quiet.stdout), stdout);
}

#[test]
fn a_job_the_engine_refuses_is_refused_with_a_caret() {
    // Valid to `iotql check`, refused once the input's columns are known.
    let job = job_file(
        "iotql-refuse",
        "where.asaql",
        "SELECT device_id\nFROM readings TIMESTAMP BY ts\nWHERE temperature_c + 1\n",
    );
    let out = iotql(&[
        "run",
        job.to_str().unwrap(),
        "--input",
        "readings=csv:queries/data/readings.csv",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("where.asaql:3:7: WHERE needs a condition, but this is Float64"),
        "{err}"
    );
    assert!(err.contains("┬"), "{err}");
}

#[test]
fn an_input_that_cannot_be_opened_is_a_runtime_failure() {
    let out = iotql(&[
        "run",
        "queries/alerts.asaql",
        "--input",
        "readings=csv:no/such/file.csv",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("cannot open no/such/file.csv"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn explain_prints_the_operator_graph() {
    let out = iotql(&["explain", "queries/alerts.asaql"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("#0 Scan readings\n#1 Timestamp readings BY ts"),
        "{text}"
    );
    assert_eq!(text.matches("Sink").count(), 3, "{text}");
}
