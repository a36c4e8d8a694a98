//! Tests of the job-test harness: cell comparison, the row diff, runs of
//! small jobs (failures reported, `@arrival` lateness, dead letters) and
//! the errors of a wrong test.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use serde_json::json;

use super::compare::{
    Actual, Cell, cell_matches, diff_letters, diff_rows, float_matches, time_matches,
};
use super::*;

fn text(t: &str) -> Cell {
    Cell::Text(t.to_string())
}

#[test]
fn floats_match_to_the_decimals_written() {
    assert!(float_matches("4.33", 4.333_333));
    assert!(float_matches("4.3", 4.333_333));
    assert!(!float_matches("4.34", 4.333_333));
    assert!(!float_matches("4.333", 4.3339));
    assert!(float_matches("81.5", 81.5));
    // Without decimals: a relative 1e-9.
    assert!(float_matches("81", 81.000_000_000_01));
    assert!(!float_matches("81", 81.001));
    assert!(float_matches("1e-3", 0.001));
    assert!(!float_matches("hot", 1.0));
}

#[test]
fn cells_compare_by_the_type_of_the_actual_value() {
    // Numbers numerically.
    assert!(cell_matches(&text("5"), &Actual::Int(5)));
    assert!(cell_matches(&text("5.0"), &Actual::Int(5)));
    assert!(!cell_matches(&text("6"), &Actual::Int(5)));
    assert!(cell_matches(&Cell::Json(json!(21.0)), &Actual::Float(21.0)));
    // NULL: an empty CSV field or JSON null.
    assert!(cell_matches(&Cell::Empty, &Actual::Null));
    assert!(cell_matches(&Cell::Null, &Actual::Null));
    assert!(!cell_matches(&Cell::Null, &Actual::Text(String::new())));
    assert!(!cell_matches(&text("0"), &Actual::Null));
    assert!(!cell_matches(&Cell::Empty, &Actual::Int(0)));
    // Booleans.
    for t in ["true", "1", "TRUE"] {
        assert!(cell_matches(&text(t), &Actual::Bool(true)), "{t}");
    }
    assert!(cell_matches(&text("0"), &Actual::Bool(false)));
    assert!(!cell_matches(&text("yes"), &Actual::Bool(true)));
    // Datetimes as instants, to the millisecond unless written finer.
    let t = 1_767_225_605_123_456; // 2026-01-01T00:00:05.123456Z
    assert!(time_matches("2026-01-01T00:00:05.123Z", t));
    assert!(time_matches("2026-01-01T01:00:05.123+01:00", t));
    assert!(time_matches("2026-01-01T00:00:05.123456Z", t));
    assert!(!time_matches("2026-01-01T00:00:05.123457Z", t));
    assert!(!time_matches("2026-01-01T00:00:05Z", t));
    assert!(cell_matches(
        &text("2026-01-01T00:00:05Z"),
        &Actual::Time(1_767_225_605_000_000)
    ));
    // Text exactly.
    assert!(cell_matches(&text("dev-1"), &Actual::Text("dev-1".into())));
    assert!(!cell_matches(
        &text("dev-1 "),
        &Actual::Text("dev-1".into())
    ));
    // Records and arrays as JSON values, whatever the key order.
    let record = Actual::Json(json!({"lat": 47.5, "lon": 8.25, "tags": [1, 2]}));
    assert!(cell_matches(
        &text(r#"{"tags": [1, 2.0], "lon": 8.25, "lat": 47.5}"#),
        &record
    ));
    assert!(cell_matches(
        &Cell::Json(json!({"lat": 47.5, "lon": 8.25, "tags": [1, 2]})),
        &record
    ));
    assert!(!cell_matches(&text(r#"{"lat": 47.5}"#), &record));
}

fn actual(rows: &[&[Actual]]) -> Vec<Vec<Actual>> {
    rows.iter().map(|r| r.to_vec()).collect()
}

#[test]
fn the_diff_pairs_rows_that_share_most_cells_as_changed() {
    let columns: Vec<String> = ["device_id", "n", "avg"].map(String::from).to_vec();
    let expected = vec![
        vec![text("d1"), text("2"), text("21.5")],
        vec![text("d2"), text("1"), text("18")],
        vec![text("d3"), text("4"), text("30")],
    ];
    let got = actual(&[
        &[
            Actual::Text("d2".into()),
            Actual::Int(1),
            Actual::Float(18.0),
        ],
        &[
            Actual::Text("d1".into()),
            Actual::Int(2),
            Actual::Float(22.0),
        ],
        &[
            Actual::Text("d9".into()),
            Actual::Int(7),
            Actual::Float(1.0),
        ],
    ]);
    let d = diff_rows("stats", &columns, &expected, &got, false);
    assert_eq!(d.changed.len(), 1);
    assert_eq!(
        d.changed[0].cells,
        vec![("avg".to_string(), "21.5".to_string(), "22.0".to_string())]
    );
    assert_eq!(d.missing, vec![vec!["d3", "4", "30"]]);
    assert_eq!(d.unexpected, vec![vec!["d9", "7", "1.0"]]);
    let shown = d_render(&d);
    assert!(
        shown.contains("1 missing, 1 unexpected, 1 changed"),
        "{shown}"
    );
    assert!(shown.contains("avg: expected 21.5, got 22"), "{shown}");
    // Aligned: the header and the rows start their columns at one place.
    let header = shown.lines().nth(1).unwrap();
    let row = shown.lines().find(|l| l.contains("- ")).unwrap();
    assert_eq!(header.find("n "), row.find("4 "), "{shown}");

    // In order, the same rows swapped are a difference.
    let in_order = diff_rows("stats", &columns, &expected[..2], &got[..2], true);
    assert!(!in_order.passed());
    let as_set = diff_rows("stats", &columns, &expected[..2], &got[..2], false);
    assert_eq!(as_set.changed.len(), 1, "{as_set:?}");
}

fn d_render(d: &compare::OutputDiff) -> String {
    Verdict {
        outputs: vec![d.clone()],
        dead_letters: compare::LetterDiff::default(),
    }
    .render(false)
}

#[test]
fn the_diff_shows_at_most_twenty_rows_of_a_kind() {
    let columns = vec!["n".to_string()];
    let expected: Vec<Vec<Cell>> = (0..25).map(|i| vec![text(&i.to_string())]).collect();
    let d = diff_rows("o", &columns, &expected, &[], false);
    let shown = d_render(&d);
    assert_eq!(shown.lines().filter(|l| l.contains("-   ")).count(), 20);
    assert!(shown.contains("... 5 more missing"), "{shown}");
}

#[test]
fn dead_letters_match_by_their_start_one_each() {
    let actual = vec![
        "readings line 4: 'hot' is not a valid Float64".to_string(),
        "readings line 6: expected 3 fields, found 2".to_string(),
    ];
    let d = diff_letters(
        Some(&["readings line 4".into(), "readings line 6: expected".into()]),
        &actual,
    );
    assert!(d.missing.is_empty() && d.unexpected.is_empty(), "{d:?}");
    // One entry matches one dead letter: two entries need two.
    let d = diff_letters(
        Some(&[
            "readings line".into(),
            "readings line".into(),
            "readings line".into(),
        ]),
        &actual,
    );
    assert_eq!(d.missing, vec!["readings line"]);
    // Without the key, any dead letter fails the test.
    let d = diff_letters(None, &actual);
    assert_eq!(d.unexpected.len(), 2);
}

const JOB: &str = "
CREATE INPUT readings WITH (connector = 'csv', path = 'readings.csv');
CREATE OUTPUT alerts WITH (connector = 'csv', path = 'alerts.csv');
CREATE OUTPUT counts WITH (connector = 'csv', path = 'counts.csv');
SELECT device_id, ts, temperature INTO alerts FROM readings TIMESTAMP BY ts WHERE temperature > 80;
SELECT COUNT(*) AS n, System.Timestamp() AS window_end INTO counts
FROM readings TIMESTAMP BY ts GROUP BY TumblingWindow(minute, 1);
";

/// Runs the tests of `toml` against `job`; the test file sits in a fresh folder.
fn run_tests(job: &str, toml: &str) -> Vec<TestResult> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("job.asaql"), job).unwrap();
    let path = dir.path().join("job.test.toml");
    std::fs::write(&path, toml).unwrap();
    let file = TestFile::load(&path).unwrap();
    run_file(&file, &RunOptions::default(), None).unwrap()
}

fn one(job: &str, toml: &str) -> TestResult {
    run_tests(job, toml).remove(0)
}

#[test]
fn a_failing_test_reports_missing_unexpected_and_changed_rows() {
    let r = one(
        JOB,
        r#"
[[test]]
name = "wrong"
[test.inputs.readings]
csv = """
device_id,ts,temperature
d1,2026-01-01T00:00:05Z,81.5
d2,2026-01-01T00:00:06Z,90
d3,2026-01-01T00:00:07Z,95
"""
[test.outputs.alerts]
csv = """
device_id,ts,temperature
d1,2026-01-01T00:00:05Z,81.5
d2,2026-01-01T00:00:06Z,91
d4,2026-01-01T00:00:09Z,99
"""
"#,
    );
    assert!(!r.passed());
    let verdict = r.verdict.unwrap();
    let alerts = &verdict.outputs[0];
    assert_eq!(
        alerts.missing,
        vec![vec!["d4", "2026-01-01T00:00:09Z", "99"]]
    );
    assert_eq!(alerts.unexpected.len(), 1);
    assert_eq!(alerts.unexpected[0][0], "d3");
    assert_eq!(alerts.changed.len(), 1);
    assert_eq!(
        alerts.changed[0].cells,
        vec![(
            "temperature".to_string(),
            "91".to_string(),
            "90.0".to_string()
        )]
    );
}

#[test]
fn a_passing_test_passes_and_unlisted_outputs_are_not_checked() {
    let r = one(
        JOB,
        r#"
[[test]]
name = "right"
[test.inputs.readings]
jsonl = """
{"device_id": "d1", "ts": "2026-01-01T00:00:05Z", "temperature": 81.5}
{"device_id": "d2", "ts": "2026-01-01T00:00:06Z", "temperature": 20}
"""
[test.outputs.alerts]
csv = """
device_id,temperature
d1,81.5
"""
"#,
    );
    assert!(r.passed(), "{:?}", r.verdict);
}

/// A job with a per-minute count and a test whose second event, at 0:10,
/// arrives at 1:30 (80 s late, late_arrival 5 s): with `policy` it is
/// dropped or adjusted into the minute ending 2:00.
fn arrival_test(policy: &str, expected: &str) -> TestResult {
    one(
        JOB,
        &format!(
            r#"
late_arrival = "5s"
late_policy = "{policy}"
[[test]]
name = "late by arrival"
[test.inputs.readings]
csv = """
device_id,ts,temperature,@arrival
d1,2026-01-01T00:00:05Z,20,2026-01-01T00:00:06Z
d2,2026-01-01T00:00:10Z,20,2026-01-01T00:01:30Z
"""
[test.outputs.counts]
csv = """
window_end,n
{expected}"""
"#
        ),
    )
}

#[test]
fn an_arrival_time_makes_an_event_late_dropped_or_adjusted() {
    let dropped = arrival_test("drop", "2026-01-01T00:01:00Z,1\n");
    assert!(dropped.passed(), "{}", render(&dropped));
    let adjusted = arrival_test("adjust", "2026-01-01T00:01:00Z,1\n2026-01-01T00:02:00Z,1\n");
    assert!(adjusted.passed(), "{}", render(&adjusted));
    // Without the arrival column the same events are on time.
    let r = one(
        JOB,
        r#"
late_arrival = "5s"
late_policy = "drop"
[[test]]
name = "on time"
[test.inputs.readings]
csv = """
device_id,ts,temperature
d1,2026-01-01T00:00:05Z,20
d2,2026-01-01T00:00:10Z,20
"""
[test.outputs.counts]
csv = """
window_end,n
2026-01-01T00:01:00Z,2
"""
"#,
    );
    assert!(r.passed(), "{}", render(&r));
}

#[test]
fn events_of_two_inputs_are_delivered_in_order_of_arrival() {
    // b's event arrives first although it is written second; the union
    // keeps the order in which events arrive, so `ordered` sees it.
    let job = "
SELECT name INTO out FROM a TIMESTAMP BY ts
UNION
SELECT name FROM b TIMESTAMP BY ts;
";
    let r = one(
        job,
        r#"
[[test]]
name = "by arrival"
[test.inputs.a]
csv = """
name,ts,@arrival
a1,2026-01-01T00:00:01Z,2026-01-01T00:00:03Z
"""
[test.inputs.b]
csv = """
name,ts,@arrival
b1,2026-01-01T00:00:01Z,2026-01-01T00:00:02Z
"""
[test.outputs.out]
ordered = true
csv = """
name
b1
a1
"""
"#,
    );
    assert!(r.passed(), "{}", render(&r));
}

fn render(r: &TestResult) -> String {
    match &r.verdict {
        Ok(v) => v.render(false),
        Err(e) => e.to_string(),
    }
}

fn error_of(job: &str, toml: &str) -> String {
    match one(job, toml).verdict {
        Err(e) => e.to_string(),
        Ok(v) => panic!("no error: {v:?}"),
    }
}

#[test]
fn dead_letters_are_expected_by_their_start() {
    let toml = |letters: &str| {
        format!(
            r#"
[[test]]
name = "bad lines"
{letters}
[test.inputs.readings]
csv = """
device_id,ts,temperature
d1,2026-01-01T00:00:05Z,81.5
d2,2026-01-01T00:00:06Z
d3,yesterday,90
"""
"#
        )
    };
    let listed = one(
        JOB,
        &toml(
            r#"dead_letters = ["readings line 3: expected 3 fields", "readings line 4: the TIMESTAMP BY value `yesterday`"]"#,
        ),
    );
    assert!(listed.passed(), "{}", render(&listed));
    let unlisted = one(JOB, &toml(""));
    assert!(!unlisted.passed());
    let shown = render(&unlisted);
    assert!(shown.contains("2 unexpected"), "{shown}");
    assert!(
        shown.contains("+   readings line 3: expected 3 fields, found 2"),
        "{shown}"
    );
    let wrong = one(JOB, &toml(r#"dead_letters = ["readings line 5"]"#));
    assert!(!wrong.passed());
    assert!(render(&wrong).contains("-   readings line 5"));
}

#[test]
fn a_test_naming_what_the_job_lacks_is_an_error_with_file_and_test() {
    let input = error_of(
        JOB,
        r#"
[[test]]
name = "typo"
[test.inputs.reading]
csv = "a\n1\n"
"#,
    );
    assert!(input.contains("job.test.toml :: typo"), "{input}");
    assert!(
        input.contains("the job has no input `reading` (its inputs: `readings`)"),
        "{input}"
    );
    let output = error_of(
        JOB,
        r#"
[[test]]
name = "typo"
[test.outputs.alert]
csv = "device_id\n"
"#,
    );
    assert!(output.contains("the job has no output `alert`"), "{output}");
    let column = error_of(
        JOB,
        r#"
[[test]]
name = "typo"
[test.inputs.readings]
csv = "device_id,ts,temperature\nd1,2026-01-01T00:00:05Z,81\n"
[test.outputs.alerts]
csv = "device_id,temp\nd1,81\n"
"#,
    );
    assert!(
        column.contains(
            "output `alerts` has no column `temp` (its columns: `device_id`, `ts`, `temperature`)"
        ),
        "{column}"
    );
    let arrival = error_of(
        JOB,
        r#"
[[test]]
name = "half"
[test.inputs.readings]
csv = "device_id,ts,temperature,@arrival\nd1,2026-01-01T00:00:05Z,81,2026-01-01T00:00:05Z\nd2,2026-01-01T00:00:06Z,82,\n"
"#,
    );
    assert!(arrival.contains("line 3 has no @arrival"), "{arrival}");
}

#[test]
fn a_bad_test_file_says_where() {
    let path = Path::new("/jobs/x.test.toml");
    let e =
        TestFile::parse(path, "[[test]]\nname = \"a\"\n[test.inputs.r]\ncsv = 1\n").unwrap_err();
    assert!(e.to_string().contains("input `r`"), "{e}");
    let e = TestFile::parse(path, "[[test]]\nname = \"a\"\nnmae = 2\n").unwrap_err();
    let shown = e.to_string();
    assert!(shown.contains("line 3, column 1"), "{shown}");
    let e = TestFile::parse(
        path,
        "[[test]]\nname = \"a\"\n[test.outputs.o]\ncsv = \"x\\n\"\ndead_letters = []\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("go before its"), "{e}");
    let file = TestFile::parse(path, "job = \"../other.asaql\"\n[[test]]\nname = \"a\"\n").unwrap();
    assert_eq!(file.job, Path::new("/jobs/../other.asaql"));
}

#[test]
fn reference_inputs_load_from_a_sql_script_before_any_event() {
    let job = "
CREATE REFERENCE INPUT limits WITH (connector = 'sqlite', path = 'x.db', table = 'limits');
CREATE INPUT readings WITH (connector = 'csv', path = 'readings.csv');
SELECT r.device_id, r.temperature INTO alerts
FROM readings r TIMESTAMP BY ts
JOIN limits l ON r.device_id = l.device_id
WHERE r.temperature > l.max_temp;
";
    let r = one(
        job,
        r#"
[[test]]
name = "limits per device"
[test.inputs.limits]
sql = """
CREATE TABLE limits(device_id TEXT, max_temp REAL);
INSERT INTO limits VALUES ('d1', 50), ('d2', 90);
"""
[test.inputs.readings]
csv = """
device_id,ts,temperature
d1,2026-01-01T00:00:05Z,60
d2,2026-01-01T00:00:06Z,60
"""
[test.outputs.alerts]
csv = """
device_id,temperature
d1,60
"""
"#,
    );
    assert!(r.passed(), "{}", render(&r));
}

#[test]
fn an_invalid_job_is_an_error_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("job.asaql"), "SELECT FROM").unwrap();
    let path = dir.path().join("job.test.toml");
    std::fs::write(&path, "[[test]]\nname = \"a\"\n").unwrap();
    let file = TestFile::load(&path).unwrap();
    let e = run_file(&file, &RunOptions::default(), None).unwrap_err();
    assert!(matches!(e, TestError::Job { .. }));
    assert!(
        e.render(iotql_dsl::Style::Plain).contains("job.asaql:1:"),
        "{e}"
    );
}

#[test]
fn batches_of_one_event_give_the_same_rows() {
    let toml = r#"
[[test]]
name = "windows"
[test.inputs.readings]
csv = """
device_id,ts,temperature
d1,2026-01-01T00:00:05Z,81
d2,2026-01-01T00:00:35Z,82
d3,2026-01-01T00:01:05Z,20
"""
[test.outputs.counts]
csv = """
window_end,n
2026-01-01T00:01:00Z,2
2026-01-01T00:02:00Z,1
"""
"#;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("job.asaql"), JOB).unwrap();
    let path = dir.path().join("job.test.toml");
    std::fs::write(&path, toml).unwrap();
    let file = TestFile::load(&path).unwrap();
    for batch_size in [None, Some(1), Some(2)] {
        let results = run_file(&file, &RunOptions { batch_size }, None).unwrap();
        assert!(
            results[0].passed(),
            "{batch_size:?}: {}",
            render(&results[0])
        );
    }
}

#[test]
fn a_declared_throttle_still_applies_to_the_captured_rows() {
    let job = "
CREATE INPUT readings WITH (connector = 'csv', path = 'readings.csv');
CREATE OUTPUT alerts WITH (connector = 'csv', path = 'alerts.csv', throttle = '1m', throttle_by = 'device_id');
SELECT device_id, temperature INTO alerts FROM readings TIMESTAMP BY ts WHERE temperature > 80;
";
    let r = one(
        job,
        r#"
[[test]]
name = "one alert per device and minute"
[test.inputs.readings]
csv = """
device_id,ts,temperature
d1,2026-01-01T00:00:05Z,81
d1,2026-01-01T00:00:20Z,82
d2,2026-01-01T00:00:30Z,90
d1,2026-01-01T00:01:10Z,83
"""
[test.outputs.alerts]
csv = """
device_id,temperature,suppressed
d1,81,0
d2,90,0
d1,83,1
"""
"#,
    );
    assert!(r.passed(), "{}", render(&r));
}
