//! The `iotql` command as users run it: exit codes, messages on stderr.

use std::path::Path;
use std::process::{Command, Output};

fn iotql(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_iotql"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .env("NO_COLOR", "1")
        .output()
        .expect("run iotql")
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
    let dir = std::env::temp_dir().join(format!("iotql-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.sql");
    std::fs::write(
        &file,
        "SELECT device_id temperature_c humidity_pct\nFROM readings\n",
    )
    .unwrap();
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
    let dir = std::env::temp_dir().join(format!("iotql-cli-bind-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("job.asaql");
    std::fs::write(
        &file,
        "CREATE INPUT readings WITH (connector = 'csv', path = 'r.csv');\nSELECT * FROM readings UNION SELECT * FROM extra\n",
    )
    .unwrap();
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
fn commands_not_built_yet_say_so_and_exit_2() {
    for args in [
        &["test", "queries"][..],
        &["repl"],
        &["simulate"],
        &["serve", "queries"],
    ] {
        let out = iotql(args);
        assert_eq!(out.status.code(), Some(2), "iotql {args:?}");
        assert!(
            stderr(&out).contains("not built yet"),
            "iotql {args:?}: {}",
            stderr(&out)
        );
    }
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
