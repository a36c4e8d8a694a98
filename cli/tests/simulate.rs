#![allow(clippy::unwrap_used)]
//! `iotql simulate` as users run it: determinism, the file formats, and a
//! bundled job run over simulated readings, malformed ones dead-lettered.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const START: &str = "2026-01-05T08:00:00Z";
const COLUMNS: &str =
    "device_id,site,zone,ts,temperature_c,humidity_pct,co2_ppm,occupancy,battery_pct";

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

/// Runs `iotql simulate` with `args` and the fixed start, expecting success.
fn simulate(args: &[&str]) -> Output {
    let mut all = vec!["simulate", "--start", START, "--rate", "max"];
    all.extend_from_slice(args);
    let out = iotql(&all);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    out
}

/// The number before `what` in the summary line.
fn counted(summary: &str, what: &str) -> u64 {
    let before = &summary[..summary.find(what).unwrap()];
    before
        .trim_end()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn file(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let text = path.display().to_string();
    (path, text)
}

#[test]
fn the_same_seed_gives_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let (a, a_uri) = file(dir.path(), "a.jsonl");
    let (b, b_uri) = file(dir.path(), "b.jsonl");
    let (c, c_uri) = file(dir.path(), "c.jsonl");
    for (seed, uri) in [("7", &a_uri), ("7", &b_uri), ("8", &c_uri)] {
        simulate(&[
            "--count",
            "2000",
            "--seed",
            seed,
            "--to",
            &format!("jsonl:{uri}"),
        ]);
    }
    let (a, b, c) = (
        std::fs::read(a).unwrap(),
        std::fs::read(b).unwrap(),
        std::fs::read(c).unwrap(),
    );
    assert_eq!(a.iter().filter(|&&b| b == b'\n').count(), 2000);
    assert!(a == b, "the same seed gave different files");
    assert!(a != c, "another seed gave the same file");
    let first =
        String::from_utf8_lossy(&a[..a.iter().position(|&b| b == b'\n').unwrap()]).into_owned();
    assert!(
        first.starts_with(
            r#"{"device_id":"site-1/zone-1/dev-1","site":"site-1","zone":"zone-1","ts":"2026-01-05T08:00:00."#
        ),
        "{first}"
    );
}

#[test]
fn csv_has_a_header_and_the_columns() {
    let dir = tempfile::tempdir().unwrap();
    let (path, uri) = file(dir.path(), "sim.csv");
    let out = simulate(&[
        "--count",
        "500",
        "--malformed",
        "0",
        "--to",
        &format!("csv:{uri}"),
    ]);
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], COLUMNS);
    assert_eq!(lines.len(), 501);
    for line in &lines[1..] {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 9, "{line}");
        assert!(
            fields[0].starts_with("site-") && fields[3].ends_with('Z'),
            "{line}"
        );
        assert!(fields[4].parse::<f64>().is_ok(), "{line}");
    }
    let summary = stderr(&out);
    assert!(summary.contains("500 events from 45 devices"), "{summary}");
}

/// The simulator's columns are the ones the bundled alert job reads: its
/// good events are processed, its malformed ones dead-lettered, in CSV and
/// in JSON lines.
#[test]
fn the_bundled_alert_job_runs_over_simulated_readings() {
    for format in ["csv", "jsonl"] {
        let dir = tempfile::tempdir().unwrap();
        let (readings, uri) = file(dir.path(), &format!("readings.{format}"));
        let sim = simulate(&[
            "--count",
            "5000",
            "--seed",
            "3",
            "--malformed",
            "0.02",
            "--anomalies",
            "0.05",
            "--to",
            &format!("{format}:{uri}"),
        ]);
        let malformed = counted(&stderr(&sim), " malformed");
        assert!(malformed > 50, "{}", stderr(&sim));
        let (_, alerts) = file(dir.path(), "alerts.csv");
        let (raw_path, raw) = file(dir.path(), "raw.csv");
        let (_, flagged) = file(dir.path(), "flagged.csv");
        let (dead_path, dead) = file(dir.path(), "dead.jsonl");
        let run = iotql(&[
            "run",
            "queries/alerts.asaql",
            "--input",
            &format!(
                "readings={format}:{readings}",
                readings = readings.display()
            ),
            "--output",
            &format!("alerts=csv:{alerts}"),
            "--output",
            &format!("raw_readings=csv:{raw}"),
            "--output",
            &format!("flagged_readings=csv:{flagged}"),
            "--dead-letter",
            &dead,
        ]);
        assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
        let dead_letters = std::fs::read_to_string(dead_path).unwrap();
        assert_eq!(
            dead_letters.lines().count() as u64,
            malformed,
            "{format}: every malformed event, and only those, is dead-lettered:\n{dead_letters}"
        );
        let archived = std::fs::read_to_string(raw_path).unwrap().lines().count() as u64 - 1;
        assert_eq!(
            archived + malformed,
            5000,
            "{format}: the good events are processed"
        );
        let report = stderr(&run);
        assert!(
            report.contains(&format!("dead letters: {malformed}")),
            "{report}"
        );
        let alerts = std::fs::read_to_string(dir.path().join("alerts.csv")).unwrap();
        assert!(
            alerts.contains("high_temperature"),
            "{format}: no anomaly raised an alert"
        );
    }
}

#[test]
fn a_duration_of_event_time_ends_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (path, uri) = file(dir.path(), "hour.jsonl");
    let out = iotql(&[
        "simulate",
        "--start",
        START,
        "--duration",
        "1m",
        "--replay-speed",
        "6000",
        "--duplicates",
        "0",
        "--malformed",
        "0",
        "--to",
        &format!("jsonl:{uri}"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(path).unwrap();
    // Six ticks of 10 s, 45 devices each.
    assert_eq!(text.lines().count(), 6 * 45);
    assert!(
        text.lines()
            .all(|l| l.contains("\"ts\":\"2026-01-05T08:00:"))
    );
}

#[test]
fn a_rate_paces_the_events() {
    let started = Instant::now();
    let out = iotql(&[
        "simulate", "--count", "300", "--rate", "1000", "--to", "stdout", "-q",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // 300 events at 1000/s take at least 0.3 s, however fast the machine.
    assert!(started.elapsed() >= Duration::from_millis(280));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 300);
    assert!(out.stderr.is_empty(), "-q prints nothing: {}", stderr(&out));
}

#[test]
fn ctrl_c_finishes_the_output_and_summarises() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_iotql"))
        .args(["simulate", "--rate", "200", "--to", "stdout"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The first events have been written (and flushed): it is playing.
    assert!(lines.next().unwrap().unwrap().starts_with("{\"device_id\""));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let rest = lines.count();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = stderr(&out);
    assert!(summary.contains("(stopped by Ctrl+C)"), "{summary}");
    assert_eq!(counted(&summary, " events from") as usize, rest + 1);
}

#[test]
fn bad_options_are_usage_errors() {
    for args in [
        &["simulate"][..],
        &["simulate", "--to", "nonsense:x"],
        &["simulate", "--to", "stdout", "--malformed", "2"],
        &[
            "simulate",
            "--to",
            "stdout",
            "--rate",
            "5",
            "--replay-speed",
            "2",
        ],
        &["simulate", "--to", "stdout", "--start", "yesterday"],
        &["simulate", "--to", "stdout", "--sites", "0"],
    ] {
        let out = iotql(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "iotql {args:?}: {}",
            stderr(&out)
        );
    }
}
