#![allow(clippy::unwrap_used)]
//! `iotql test`: a folder with a passing and a failing test, exit codes,
//! the PASS/FAIL lines and the row diff.

use std::path::Path;
use std::process::{Command, Output};

fn iotql(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_iotql"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run iotql")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const JOB: &str = "
CREATE INPUT readings WITH (connector = 'csv', path = 'readings.csv');
CREATE OUTPUT alerts WITH (connector = 'csv', path = 'alerts.csv');
SELECT device_id, ts, temperature INTO alerts
FROM readings TIMESTAMP BY ts
WHERE temperature > 80;
";

const TESTS: &str = r#"
[[test]]
name = "a hot reading raises an alert"
[test.inputs.readings]
csv = """
device_id,ts,temperature
d1,2026-01-01T00:00:05Z,81.5
d2,2026-01-01T00:00:06Z,20
"""
[test.outputs.alerts]
csv = """
device_id,ts,temperature
d1,2026-01-01T00:00:05Z,81.5
"""

[[test]]
name = "a wrong expectation"
[test.inputs.readings]
csv = """
device_id,ts,temperature
d1,2026-01-01T00:00:05Z,81.5
d2,2026-01-01T00:00:06Z,95
"""
[test.outputs.alerts]
csv = """
device_id,ts,temperature
d1,2026-01-01T00:00:05Z,82
d3,2026-01-01T00:00:07Z,99
"""
"#;

fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hot.asaql"), JOB).unwrap();
    std::fs::write(dir.path().join("hot.test.toml"), TESTS).unwrap();
    std::fs::create_dir(dir.path().join("more")).unwrap();
    std::fs::write(dir.path().join("more/untested.asaql"), JOB).unwrap();
    dir
}

#[test]
fn a_folder_with_a_failing_test_exits_1_with_the_diff() {
    let dir = folder();
    let out = iotql(&["test", dir.path().to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let file = dir.path().join("hot.test.toml");
    let file = file.display();
    assert!(
        text.contains(&format!("PASS {file} :: a hot reading raises an alert (")),
        "{text}"
    );
    assert!(
        text.contains(&format!("FAIL {file} :: a wrong expectation (")),
        "{text}"
    );
    assert!(
        text.contains("output `alerts`: 1 missing, 1 unexpected, 1 changed"),
        "{text}"
    );
    assert!(
        text.contains("temperature: expected 82, got 81.5"),
        "{text}"
    );
    assert!(text.contains("-   d3"), "{text}");
    assert!(text.contains("+   d2"), "{text}");
    assert!(text.contains("untested.asaql has no tests"), "{text}");
    assert!(text.contains("1 passed, 1 failed"), "{text}");
    assert!(
        !text.contains("\x1b["),
        "colours without a terminal: {text}"
    );
}

#[test]
fn a_filter_or_a_job_file_runs_only_those_tests() {
    let dir = folder();
    let out = iotql(&[
        "test",
        dir.path().to_str().unwrap(),
        "--filter",
        "hot reading",
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("1 passed, 0 failed"), "{text}");
    assert!(!text.contains("wrong expectation"), "{text}");

    // The job file: its NAME.test.toml.
    let job = dir.path().join("hot.asaql");
    let out = iotql(&["test", job.to_str().unwrap(), "--filter", "hot"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn a_missing_path_is_a_usage_error_and_a_bad_test_file_fails() {
    let out = iotql(&["test", "/no/such/folder"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("j.asaql"), "SELECT FROM nothing").unwrap();
    std::fs::write(dir.path().join("j.test.toml"), "[[test]]\nname = \"x\"\n").unwrap();
    let out = iotql(&["test", dir.path().to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("ERROR"), "{text}");
    assert!(text.contains("j.asaql:1:"), "the job's diagnostic: {text}");
    assert!(text.contains("1 invalid file"), "{text}");

    std::fs::write(dir.path().join("j.test.toml"), "[[test]\n").unwrap();
    let out = iotql(&["test", dir.path().join("j.test.toml").to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("line 1, column"), "{text}");
}

#[test]
fn the_bundled_jobs_pass_their_tests() {
    let queries = Path::new(env!("CARGO_MANIFEST_DIR")).join("../queries");
    let out = iotql(&["test", queries.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("alerts.test.toml :: a hot reading raises a high_temperature alert"));
    assert!(text.contains("device_windows.test.toml ::"), "{text}");
}
