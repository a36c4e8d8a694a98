#![allow(clippy::unwrap_used)]
//! `iotql serve DIR`: the jobs of a folder run side by side behind one
//! HTTP server, which keeps serving after they end, until Ctrl+C; a folder
//! with a bad job is refused before anything runs.

mod common;

use std::path::Path;
use std::time::Duration;

use common::http::get;
use common::outputs::sqlite_rows;
use common::{Running, iotql, wait_for};
use serde_json::Value;

/// A job over a file that ends: readings per device and minute to SQLite.
const BATCH: &str = "
CREATE INPUT readings WITH (connector = 'csv', path = 'readings.csv');
CREATE OUTPUT per_minute WITH (connector = 'sqlite', path = 'batch.db', table = 'per_minute');
SELECT device_id, System.Timestamp() AS window_end, COUNT(*) AS n
INTO per_minute FROM readings TIMESTAMP BY ts
GROUP BY device_id, TumblingWindow(minute, 1);
";

/// A job over a simulated fleet that runs until stopped.
const LIVE: &str = "
CREATE INPUT fleet WITH (connector = 'sim', sites = '1', zones = '1', devices = '3', rate = '100', interval = '1s', malformed = '0', out_of_order = '0', duplicates = '0');
CREATE OUTPUT readings WITH (connector = 'csv', path = 'live.csv');
SELECT device_id, ts, temperature_c INTO readings FROM fleet TIMESTAMP BY ts;
";

/// A folder with `jobs` (file name, text) and `readings.csv`: 3 devices,
/// a reading a second for 10 minutes.
fn folder(jobs: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("device_id,ts,temperature_c\n");
    for s in 0..600 {
        for d in 0..3 {
            csv.push_str(&format!(
                "dev-{d},2026-01-01T00:{:02}:{:02}Z,{}\n",
                s / 60,
                s % 60,
                20 + d
            ));
        }
    }
    std::fs::write(dir.path().join("readings.csv"), csv).unwrap();
    for (name, text) in jobs {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn serve(dir: &Path) -> (Running, String) {
    let run = Running::start(&[
        "serve",
        dir.to_str().unwrap(),
        "--http",
        "127.0.0.1:0",
        "--checkpoint-interval",
        "off",
    ]);
    let base = run.served_at();
    (run, base)
}

fn job(base: &str, name: &str) -> Value {
    let (status, body) = get(&format!("{base}/api/jobs/{name}"), None);
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn the_jobs_of_a_folder_run_side_by_side_behind_one_server() {
    let dir = folder(&[("batch.asaql", BATCH), ("live.asaql", LIVE)]);
    let (run, base) = serve(dir.path());
    let (_, jobs) = get(&format!("{base}/api/jobs"), None);
    let names: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["batch", "live"]);

    // The file's job ends; the simulated fleet's goes on.
    wait_for(Duration::from_secs(60), "the batch job to complete", || {
        job(&base, "batch")["state"] == "completed"
    });
    let events = |j: &Value| j["events_in"].as_u64().unwrap();
    let before = events(&job(&base, "live"));
    wait_for(Duration::from_secs(30), "the live job to read on", || {
        let live = job(&base, "live");
        live["state"] == "running" && events(&live) > before
    });
    assert_eq!(events(&job(&base, "batch")), 1800);

    // The ended job's output is still served, from its table.
    let (status, body) = get(
        &format!("{base}/api/jobs/batch/outputs/per_minute/latest?by=device_id"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let latest: Vec<String> = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{},{}", r["device_id"].as_str().unwrap(), r["n"]))
        .collect();
    let mut table = sqlite_rows(
        &dir.path().join("batch.db"),
        "SELECT device_id, n FROM per_minute WHERE window_end = (SELECT MAX(window_end) FROM per_minute)",
    );
    table.sort();
    let mut latest = latest;
    latest.sort();
    assert_eq!(latest, table);
    // The last window, (00:09:00, 00:10:00]: its start's reading is the
    // window before's (a window holds its end, not its start).
    assert_eq!(table, ["dev-0,59", "dev-1,59", "dev-2,59"]);
    let (_, metrics) = get(&format!("{base}/metrics"), None);
    let metrics = metrics.as_str().unwrap();
    for series in [
        "iotql_job_running{job=\"batch\"} 0",
        "iotql_job_running{job=\"live\"} 1",
        "iotql_events_in_total{job=\"batch\",input=\"readings\"} 1800",
    ] {
        assert!(metrics.contains(series), "no {series} in\n{metrics}");
    }

    // Ctrl+C stops the live job and the server; each job says how it went.
    let err = run.interrupt();
    assert!(err.contains("batch.asaql: finished in"), "{err}");
    assert!(
        err.contains("live.asaql: finished in") && err.contains("(stopped by Ctrl+C)"),
        "{err}"
    );
    assert!(!err.contains("every job has ended"), "{err}");
}

#[test]
fn the_server_keeps_serving_after_every_job_has_ended() {
    let dir = folder(&[("batch.asaql", BATCH)]);
    let (run, base) = serve(dir.path());
    wait_for(Duration::from_secs(60), "the end of every job", || {
        run.stderr().contains("every job has ended")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(job(&base, "batch")["state"], "completed");
    let (status, _) = get(
        &format!("{base}/api/jobs/batch/outputs/per_minute/rows"),
        None,
    );
    assert_eq!(status, 200);
    run.interrupt();
}

#[test]
fn a_folder_with_a_bad_job_is_refused_before_anything_runs() {
    let dir = folder(&[
        ("batch.asaql", BATCH),
        (
            "broken.asaql",
            "SELECT device_id, AVG(temperature_c) AS t\nINTO out FROM readings TIMESTAMP BY ts\nGROUP BY device_id, TumblingWindow(minute, 1) HAVING;\n",
        ),
    ]);
    let out = iotql(&[
        "serve",
        dir.path().to_str().unwrap(),
        "--http",
        "127.0.0.1:0",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "refused as `iotql run` refuses it: {err}"
    );
    assert!(err.contains("broken.asaql:3:"), "line and column: {err}");
    assert!(
        err.contains(" 3 │ GROUP BY device_id, TumblingWindow(minute, 1) HAVING;")
            && err.contains("expected an expression here"),
        "the line, marked: {err}"
    );
    assert!(!err.contains("serving"), "{err}");
    assert!(!dir.path().join("batch.db").exists(), "the good job ran");

    let empty = tempfile::tempdir().unwrap();
    let out = iotql(&["serve", empty.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no job files (*.asaql) in"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
