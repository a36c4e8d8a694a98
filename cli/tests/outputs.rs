#![allow(clippy::unwrap_used)]
//! The hybrid pipeline's job (`queries/fleet_pipeline.asaql`) end to end:
//! one input, four outputs of four kinds (SQLite table, upserted SQLite
//! table, throttled alert log, Parquet files), each checked against the
//! same job writing plain CSV.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn iotql(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_iotql"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("run iotql")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The bundled job, copied into `dir` with its data, so that its declared
/// outputs (relative paths) land in `dir/out`.
fn job_in(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::copy(
        root().join("queries/data/readings.csv"),
        dir.join("data/readings.csv"),
    )
    .unwrap();
    let job = dir.join("fleet_pipeline.asaql");
    std::fs::copy(root().join("queries/fleet_pipeline.asaql"), &job).unwrap();
    job
}

fn run(args: &[&str]) -> String {
    let out = iotql(args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stderr(&out)
}

/// A CSV file's rows as maps of column -> text.
fn csv_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(String::from))
                .collect()
        })
        .collect()
}

/// A SQLite table's rows as text, in the order of `order_by`.
fn table(db: &Path, sql: &str) -> Vec<Vec<String>> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                Ok(match r.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => String::new(),
                    rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                    rusqlite::types::ValueRef::Real(v) => v.to_string(),
                    rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into(),
                    rusqlite::types::ValueRef::Blob(_) => "<blob>".into(),
                })
            })
            .collect()
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// The same job with every output as CSV, unthrottled: the reference.
fn reference(dir: &Path, job: &Path) -> PathBuf {
    let out = dir.join("reference");
    let mut args = vec!["run".to_string(), job.display().to_string(), "-q".into()];
    for o in ["live_readings", "device_status", "alerts", "hourly"] {
        args.push("--output".into());
        args.push(format!(
            "{o}=csv:{}",
            out.join(format!("{o}.csv")).display()
        ));
    }
    run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    out
}

/// The alerts a 5-minute throttle per device lets through, with the count
/// held back before each, computed here from the unthrottled alerts.
fn throttled(alerts: &[BTreeMap<String, String>]) -> Vec<(String, String, i64)> {
    let mut last: BTreeMap<String, (chrono::DateTime<chrono::Utc>, i64)> = BTreeMap::new();
    let mut out = Vec::new();
    for a in alerts {
        let device = a["device_id"].clone();
        let ts: chrono::DateTime<chrono::Utc> = a["ts"].parse().unwrap();
        match last.get_mut(&device) {
            Some((t, held)) if ts - *t < chrono::Duration::minutes(5) => *held += 1,
            other => {
                let held = other.map_or(0, |(_, h)| *h);
                out.push((device.clone(), a["ts"].clone(), held));
                last.insert(device, (ts, 0));
            }
        }
    }
    out
}

/// The (device_id, readings) rows of every Parquet file under `dir`, in
/// folder and file name order, with the `date=` folder each is in.
fn parquet_rows(dir: &Path) -> Vec<(String, i64)> {
    use iotql_engine::arrow::array::AsArray;
    use iotql_engine::arrow::datatypes::Int64Type;
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut rows = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.ends_with(".parquet") && !name.starts_with('.'),
            "{name}"
        );
        let folder = file
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy();
        assert_eq!(folder, "date=2026-01-01", "{}", file.display());
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&file).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let devices = batch
                .column_by_name("device_id")
                .unwrap()
                .as_string::<i32>();
            let counts = batch
                .column_by_name("readings")
                .unwrap()
                .as_primitive::<Int64Type>();
            for r in 0..batch.num_rows() {
                rows.push((devices.value(r).to_string(), counts.value(r)));
            }
        }
    }
    rows
}

#[test]
fn the_hybrid_pipeline_job_writes_four_kinds_of_output() {
    let dir = tempfile::tempdir().unwrap();
    let job = job_in(dir.path());
    let expected = reference(dir.path(), &job);
    let summary = run(&["run", job.to_str().unwrap()]);
    let out = dir.path().join("out");
    let db = out.join("fleet.db");

    // Every reading in the edge database, as the CSV output has it.
    let live = table(
        &db,
        "SELECT device_id, ts, temperature_c FROM live_readings ORDER BY rowid",
    );
    let csv = csv_rows(&expected.join("live_readings.csv"));
    assert_eq!(live.len(), 300);
    for (row, c) in live.iter().zip(&csv) {
        assert_eq!((&row[0], &row[1]), (&c["device_id"], &c["ts"]));
        assert_eq!(
            row[2].parse::<f64>().unwrap(),
            c["temperature_c"].parse::<f64>().unwrap()
        );
    }

    // One status row per device: its latest reading.
    let status = table(
        &db,
        "SELECT device_id, last_seen, low_battery_flag FROM device_status ORDER BY device_id",
    );
    let mut latest: BTreeMap<String, (String, String)> = BTreeMap::new();
    for c in csv_rows(&expected.join("device_status.csv")) {
        latest.insert(
            c["device_id"].clone(),
            (c["last_seen"].clone(), c["low_battery_flag"].clone()),
        );
    }
    let want: Vec<Vec<String>> = latest
        .into_iter()
        .map(|(d, (t, f))| vec![d, t, f])
        .collect();
    assert_eq!(status, want);

    // The alert log: the throttled alerts, with the counts held back.
    let log = std::fs::read_to_string(out.join("alerts.log")).unwrap();
    let logged: Vec<(String, String, i64)> = log
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["device_id"].as_str().unwrap().to_string(),
                v["ts"].as_str().unwrap().to_string(),
                v["suppressed"].as_i64().unwrap(),
            )
        })
        .collect();
    let all_alerts = csv_rows(&expected.join("alerts.csv"));
    let want = throttled(&all_alerts);
    assert!(want.len() < all_alerts.len() && want.iter().any(|a| a.2 > 0));
    assert_eq!(logged, want);
    let held: i64 = (all_alerts.len() - want.len()) as i64;
    assert!(summary.contains(&format!("throttled: {held}")), "{summary}");

    // Hourly aggregates in Parquet files under date=... folders.
    let hourly = parquet_rows(&out.join("hourly"));
    let want: Vec<(String, i64)> = csv_rows(&expected.join("hourly.csv"))
        .iter()
        .map(|c| (c["device_id"].clone(), c["readings"].parse().unwrap()))
        .collect();
    assert_eq!(hourly, want);

    // Run again over the same readings (a replay): the keyed status table
    // is overwritten in place, the raw table and the log grow.
    run(&["run", job.to_str().unwrap(), "-q"]);
    assert_eq!(table(&db, "SELECT count(*) FROM device_status")[0][0], "5");
    assert_eq!(
        table(&db, "SELECT count(*) FROM live_readings")[0][0],
        "600"
    );
    let log = std::fs::read_to_string(out.join("alerts.log")).unwrap();
    assert_eq!(
        log.lines().count(),
        2 * logged.len(),
        "the alert log is appended to"
    );
}

#[test]
fn an_existing_table_that_does_not_fit_refuses_the_job_before_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let job = job_in(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    rusqlite::Connection::open(out.join("fleet.db"))
        .unwrap()
        .execute_batch("CREATE TABLE device_status (device_id TEXT PRIMARY KEY, last_seen TEXT, battery_pct TEXT)")
        .unwrap();
    let o = iotql(&["run", job.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("table device_status: the existing table does not fit the output"),
        "{e}"
    );
    assert!(e.contains("it has no column `temperature_c`"), "{e}");
    assert!(
        e.contains("column `battery_pct` is TEXT but the output's values are REAL"),
        "{e}"
    );
    assert!(
        e.contains("INTO device_status"),
        "the diagnostic shows the SELECT: {e}"
    );
    let log = std::fs::read_to_string(out.join("alerts.log")).unwrap_or_default();
    assert_eq!(log, "", "no row was written");
    let db = out.join("fleet.db");
    let created = table(
        &db,
        "SELECT count(*) FROM sqlite_master WHERE name = 'live_readings'",
    );
    if created[0][0] == "1" {
        let rows = table(&db, "SELECT count(*) FROM live_readings");
        assert_eq!(
            rows[0][0], "0",
            "no row was written: the job was refused first"
        );
    }
}

/// A webhook receiver: answers 503 to the first `failures` requests, 400 to
/// alerts of `refused_device`, 200 to the rest; returns the bodies it took.
fn receiver(
    failures: usize,
    refused_device: &'static str,
) -> (String, std::sync::mpsc::Receiver<String>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alerts", server.server_addr().to_ip().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (n, mut request) in server.incoming_requests().enumerate() {
            let mut body = String::new();
            std::io::Read::read_to_string(request.as_reader(), &mut body).unwrap();
            let status = if n < failures {
                503
            } else if body.contains(refused_device) {
                400
            } else {
                tx.send(body).unwrap();
                200
            };
            let _ = request.respond(tiny_http::Response::from_string("").with_status_code(status));
        }
    });
    (url, rx)
}

#[test]
fn a_webhook_gets_every_alert_once_and_refused_ones_are_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let (url, bodies) = receiver(2, "dev-0004");
    let job = dir.path().join("hook.asaql");
    std::fs::write(
        &job,
        format!(
            "CREATE OUTPUT alerts WITH (connector = 'webhook', url = '{url}', retries = '3', retry_delay = '10ms');\n\
             SELECT device_id, ts, temperature_c INTO alerts FROM readings TIMESTAMP BY ts WHERE temperature_c > 30"
        ),
    )
    .unwrap();
    let input = root().join("queries/data/readings.csv");
    let summary = run(&[
        "run",
        job.to_str().unwrap(),
        "--input",
        &format!("readings=csv:{}", input.display()),
    ]);
    let reference = dir.path().join("alerts.csv");
    run(&[
        "run",
        job.to_str().unwrap(),
        "-q",
        "--input",
        &format!("readings=csv:{}", input.display()),
        "--output",
        &format!("alerts=csv:{}", reference.display()),
    ]);
    let all = csv_rows(&reference);
    let delivered: Vec<(String, String)> = bodies
        .try_iter()
        .map(|b| {
            let v: serde_json::Value = serde_json::from_str(&b).unwrap();
            (
                v["device_id"].as_str().unwrap().into(),
                v["ts"].as_str().unwrap().into(),
            )
        })
        .collect();
    let (refused, accepted): (Vec<_>, Vec<_>) =
        all.iter().partition(|a| a["device_id"] == "dev-0004");
    let want: Vec<(String, String)> = accepted
        .iter()
        .map(|a| (a["device_id"].clone(), a["ts"].clone()))
        .collect();
    assert_eq!(
        delivered, want,
        "each accepted alert arrives once, in order"
    );
    assert!(!refused.is_empty());
    let letters = std::fs::read_to_string(dir.path().join("hook.deadletter.jsonl")).unwrap();
    let letters: Vec<serde_json::Value> = letters
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), refused.len());
    for (letter, alert) in letters.iter().zip(&refused) {
        assert_eq!(letter["input"], "alerts");
        assert!(
            letter["reason"].as_str().unwrap().contains("HTTP 400"),
            "{letter}"
        );
        let raw: serde_json::Value = serde_json::from_str(letter["raw"].as_str().unwrap()).unwrap();
        assert_eq!(raw["ts"].as_str().unwrap(), alert["ts"]);
    }
    assert!(summary.contains("retries: 2"), "{summary}");
    assert!(
        summary.contains(&format!("failed: {}", refused.len())),
        "{summary}"
    );
}
