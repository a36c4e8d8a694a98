#![allow(clippy::unwrap_used)]
//! `iotql run --http`: the REST API reads each output's rows from where the
//! job wrote them (a SQLite table, Parquet files, the in-memory tail of a
//! CSV output), live rows come as Server-Sent Events, `/metrics` and
//! `/openapi.json` describe the job and the API, bad requests are 400s,
//! and the server is loopback-only unless it has an access token.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::http::{agent, get};
use common::{Running, wait_for};
use serde_json::Value;

/// A fleet of 2 sites x 2 zones x 2 devices from the simulator, paced on
/// the wall clock: every reading to a SQLite table; each device's newest
/// reading upserted; 2-second averages per device to Parquet files (one
/// file per 40 rows) and to a CSV file (no store: read from the tail).
const JOB: &str = "
CREATE INPUT readings WITH (connector = 'sim', sites = '2', zones = '2', devices = '2', rate = '400', interval = '1s', malformed = '0', out_of_order = '0', duplicates = '0');
CREATE OUTPUT all_readings WITH (connector = 'sqlite', path = 'fleet.db', table = 'readings');
CREATE OUTPUT latest WITH (connector = 'sqlite', path = 'fleet.db', table = 'latest', key = 'device_id');
CREATE OUTPUT averages WITH (connector = 'parquet', path = 'averages', max_rows = '40');
CREATE OUTPUT averages_csv WITH (connector = 'csv', path = 'averages.csv');
WITH r AS (SELECT device_id, site, zone, ts, temperature_c FROM readings TIMESTAMP BY ts)
SELECT * INTO all_readings FROM r;
SELECT device_id, site, ts, temperature_c INTO latest FROM r;
SELECT device_id, System.Timestamp() AS window_end, AVG(temperature_c) AS avg_temp, COUNT(*) AS n
INTO averages FROM r GROUP BY device_id, TumblingWindow(second, 2);
SELECT device_id, System.Timestamp() AS window_end, AVG(temperature_c) AS avg_temp, COUNT(*) AS n
INTO averages_csv FROM r GROUP BY device_id, TumblingWindow(second, 2);
";

const DEVICES: usize = 8;

/// A job running with `--http` on a port of its own.
struct Served {
    run: Running,
    base: String,
    dir: tempfile::TempDir,
}

impl Served {
    fn start(extra: &[&str]) -> Served {
        Served::start_job(JOB, extra)
    }

    /// Job `text` as `fleet.asaql` in a folder of its own.
    fn start_job(text: &str, extra: &[&str]) -> Served {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("fleet.asaql"), text).unwrap();
        let job = dir.path().join("fleet.asaql");
        let job = job.to_str().unwrap();
        let mut args = vec!["run", job, "--checkpoint-interval", "off"];
        args.extend_from_slice(extra);
        if !extra.contains(&"--http") {
            args.extend_from_slice(&["--http", "127.0.0.1:0"]);
        }
        let run = Running::start(&args);
        let base = run.served_at();
        Served { run, base, dir }
    }

    /// Waits until the job has read some events.
    fn wait_for_readings(&self) {
        wait_for(Duration::from_secs(60), "readings", || {
            self.get("/api/jobs/fleet").1["events_in"]
                .as_u64()
                .unwrap_or(0)
                > 0
        });
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// GET `path`: the status and the body as JSON (or as text in a string).
    fn get(&self, path: &str) -> (u16, Value) {
        get(&format!("{}{path}", self.base), None)
    }
}

fn rows(body: &Value) -> Vec<BTreeMap<String, Value>> {
    body["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows in {body}"))
        .iter()
        .map(|r| serde_json::from_value(r.clone()).unwrap())
        .collect()
}

/// The rows of a SQLite query, as the API shows them.
fn sqlite(path: &Path, sql: &str) -> Vec<BTreeMap<String, Value>> {
    let db = rusqlite::Connection::open(path).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let mut stmt = db.prepare(sql).unwrap();
    let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
    stmt.query_map([], |row| {
        let mut out = BTreeMap::new();
        for (i, name) in names.iter().enumerate() {
            let v = match row.get_ref(i)? {
                rusqlite::types::ValueRef::Null => Value::Null,
                rusqlite::types::ValueRef::Integer(n) => Value::from(n),
                rusqlite::types::ValueRef::Real(x) => Value::from(x),
                rusqlite::types::ValueRef::Text(t) => {
                    Value::String(String::from_utf8_lossy(t).into_owned())
                }
                rusqlite::types::ValueRef::Blob(_) => unreachable!("no blobs here"),
            };
            out.insert(name.clone(), v);
        }
        Ok(out)
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

#[test]
fn the_api_reads_each_outputs_rows_from_where_the_job_wrote_them() {
    let served = Served::start(&[]);
    let db = served.path("fleet.db");
    // The job has run a while: several Parquet files, readings of every device.
    wait_for(
        Duration::from_secs(90),
        "Parquet files and readings",
        || {
            let files = std::fs::read_dir(served.path("averages"))
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
                        .count()
                })
                .unwrap_or(0);
            files >= 3
                && db.exists()
                && sqlite(&db, "SELECT COUNT(DISTINCT device_id) AS n FROM readings")[0]["n"]
                    == DEVICES
        },
    );

    // The job and its outputs.
    let (status, jobs) = served.get("/api/jobs");
    assert_eq!(status, 200, "{jobs}");
    let job = &jobs[0];
    assert_eq!(job["name"], "fleet");
    assert_eq!(job["state"], "running");
    assert!(job["events_in"].as_u64().unwrap() > 0, "{job}");
    let sources: BTreeMap<String, String> = job["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (text(&o["name"]), text(&o["source"])))
        .collect();
    assert_eq!(
        sources,
        BTreeMap::from([
            ("all_readings".into(), "sqlite".into()),
            ("latest".into(), "sqlite".into()),
            ("averages".into(), "parquet".into()),
            ("averages_csv".into(), "tail".into()),
        ])
    );
    let (status, one) = served.get("/api/jobs/fleet");
    assert_eq!((status, &one["name"]), (200, &Value::from("fleet")));

    // SQLite: each device's newest reading is at least as new as the
    // table's newest before the request, and is a row of the table.
    let before = sqlite(
        &db,
        "SELECT device_id, MAX(ts) AS ts FROM readings GROUP BY device_id",
    );
    let (status, body) =
        served.get("/api/jobs/fleet/outputs/all_readings/latest?by=device_id&limit=100");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["source"], "sqlite");
    assert_eq!(body["time_column"], "ts");
    let latest = rows(&body);
    assert_eq!(latest.len(), DEVICES, "{body}");
    let table = sqlite(
        &db,
        "SELECT device_id, site, zone, ts, temperature_c FROM readings",
    );
    for row in &latest {
        assert!(table.contains(row), "{row:?} is not a row of the table");
        let floor = before
            .iter()
            .find(|b| b["device_id"] == row["device_id"])
            .unwrap();
        assert!(
            text(&row["ts"]) >= text(&floor["ts"]),
            "{row:?} older than {floor:?}"
        );
    }
    // Newest first, and a column filter.
    let device = text(&latest[0]["device_id"]);
    let (_, body) = served.get(&format!(
        "/api/jobs/fleet/outputs/all_readings/latest?device_id={device}&limit=5"
    ));
    let newest = rows(&body);
    assert_eq!(newest.len(), 5);
    assert!(newest.iter().all(|r| text(&r["device_id"]) == device));
    assert!(
        newest
            .windows(2)
            .all(|w| text(&w[0]["ts"]) >= text(&w[1]["ts"]))
    );

    // A time range well behind the job is stable: exactly the table's rows.
    let first = sqlite(&db, "SELECT MIN(ts) AS ts FROM readings");
    let from = text(&first[0]["ts"]);
    let to = chrono::DateTime::parse_from_rfc3339(&from).unwrap() + chrono::Duration::seconds(3);
    let to = to.to_utc().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let (status, body) = served.get(&format!(
        "/api/jobs/fleet/outputs/all_readings/rows?from={from}&to={to}&limit=10000"
    ));
    assert_eq!(status, 200, "{body}");
    let want = sqlite(
        &db,
        &format!(
            "SELECT device_id, site, zone, ts, temperature_c FROM readings WHERE ts >= '{from}' AND ts < '{to}' ORDER BY ts"
        ),
    );
    let have = rows(&body);
    assert!(!want.is_empty());
    assert_eq!(have.len(), want.len());
    let as_set = |r: &[BTreeMap<String, Value>]| -> BTreeSet<String> {
        r.iter().map(|x| format!("{x:?}")).collect()
    };
    assert_eq!(as_set(&have), as_set(&want));
    assert!(
        have.windows(2)
            .all(|w| text(&w[0]["ts"]) <= text(&w[1]["ts"])),
        "oldest first"
    );

    // An upserted table: one row per device.
    let (_, body) = served.get("/api/jobs/fleet/outputs/latest/latest?limit=100");
    let devices: BTreeSet<String> = rows(&body).iter().map(|r| text(&r["device_id"])).collect();
    assert_eq!(devices.len(), DEVICES);

    // Parquet: the windows before the newest window end of the files there
    // now are exactly the files' rows (later files only add later windows).
    let (files, newest_end) = parquet_rows(&served.path("averages"));
    let (status, body) = served.get(&format!(
        "/api/jobs/fleet/outputs/averages/rows?to={newest_end}&limit=10000"
    ));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["source"], "parquet");
    let want: BTreeSet<String> = files
        .iter()
        .filter(|r| text(&r["window_end"]) < newest_end)
        .map(|r| format!("{r:?}"))
        .collect();
    assert!(!want.is_empty());
    assert_eq!(as_set(&rows(&body)), want);

    // A CSV output has no store: its latest rows come from memory, and are
    // rows of its file.
    let (_, body) = served.get("/api/jobs/fleet/outputs/averages_csv/latest?limit=5");
    assert_eq!(body["source"], "tail");
    let tail = rows(&body);
    assert_eq!(tail.len(), 5);
    // The file is written in blocks: stopped, the job flushes it.
    let Served { run, dir, .. } = served;
    run.interrupt();
    let csv = std::fs::read_to_string(dir.path().join("averages.csv")).unwrap();
    for row in &tail {
        // The row as the CSV writer wrote it (floats in their shortest
        // exact form: the API's JSON keeps every digit).
        let line = format!(
            "{},{},{},{}",
            text(&row["device_id"]),
            text(&row["window_end"]),
            row["avg_temp"],
            row["n"]
        );
        let found = csv.lines().any(|l| l == line);
        assert!(found, "{line} is not in the CSV file");
    }
}

/// The rows of the Parquet files in `dir` as the API shows them, and the
/// newest window end among them.
fn parquet_rows(dir: &Path) -> (Vec<BTreeMap<String, Value>>, String) {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut out: Vec<BTreeMap<String, Value>> = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "parquet") {
            continue;
        }
        let file = std::fs::File::open(&path).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let mut lines = Vec::new();
            {
                let mut writer = iotql_engine::arrow::json::writer::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .with_timestamp_tz_format("%Y-%m-%dT%H:%M:%S%.3fZ".into())
                    .build::<_, iotql_engine::arrow::json::writer::LineDelimited>(&mut lines);
                writer.write(&batch).unwrap();
                writer.finish().unwrap();
            }
            for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                out.push(serde_json::from_slice(line).unwrap());
            }
        }
    }
    let newest = out.iter().map(|r| text(&r["window_end"])).max().unwrap();
    (out, newest)
}

#[test]
fn live_rows_metrics_and_the_openapi_document() {
    let served = Served::start(&[]);
    served.wait_for_readings();

    // Live rows of one device, as the job writes them.
    let device = "site-1/zone-1/dev-1";
    let url = format!(
        "{}/api/jobs/fleet/outputs/all_readings/live?device_id={device}",
        served.base
    );
    let response = agent().get(&url).call().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut events = BufReader::new(response.into_body().into_reader());
    let mut seen = Vec::new();
    let mut line = String::new();
    while seen.len() < 3 {
        line.clear();
        assert!(events.read_line(&mut line).unwrap() > 0, "the stream ended");
        if let Some(data) = line.strip_prefix("data: ") {
            let row: BTreeMap<String, Value> = serde_json::from_str(data).unwrap();
            seen.push(row);
        }
    }
    assert!(
        seen.iter().all(|r| text(&r["device_id"]) == device),
        "{seen:?}"
    );
    // They are rows of the table (once written).
    let db = served.path("fleet.db");
    wait_for(
        Duration::from_secs(30),
        "the live rows in the table",
        || {
            let table = sqlite(
                &db,
                "SELECT device_id, site, zone, ts, temperature_c FROM readings",
            );
            seen.iter().all(|r| table.contains(r))
        },
    );

    // Metrics: the job's counters, as Prometheus reads them.
    let events_before = served.get("/api/jobs/fleet").1["events_in"]
        .as_u64()
        .unwrap();
    let response = agent()
        .get(&format!("{}/metrics", served.base))
        .call()
        .unwrap();
    let kind = response
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    let metrics = response.into_body().read_to_string().unwrap();
    let events: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("iotql_events_in_total{job=\"fleet\",input=\"readings\"} "))
        .unwrap_or_else(|| panic!("no events metric in\n{metrics}"))
        .parse()
        .unwrap();
    assert!(events >= events_before);
    // The batch latency histogram: every batch in the +Inf bucket, which
    // is the count; each bucket counts those before it too.
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
            .parse()
            .unwrap()
    };
    let count = value("iotql_batch_latency_seconds_count{job=\"fleet\"}");
    assert!(count >= 1.0);
    assert_eq!(
        value("iotql_batch_latency_seconds_bucket{le=\"+Inf\",job=\"fleet\"}"),
        count
    );
    let buckets: Vec<f64> = metrics
        .lines()
        .filter(|l| l.starts_with("iotql_batch_latency_seconds_bucket{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(buckets.len(), 18, "17 bounds and +Inf");
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    let (_, job) = served.get("/api/jobs/fleet");
    let latency = &job["batch_latency"];
    assert!(latency["batches"].as_u64().unwrap() >= count as u64);
    let (p50, p99) = (
        latency["p50_seconds"].as_f64().unwrap(),
        latency["p99_seconds"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= 10.0, "{latency}");
    // A sim input keeps no lag.
    assert!(job["inputs"][0]["consumer_lag"].is_null(), "{job}");
    for name in [
        "iotql_rows_out_total{job=\"fleet\",output=\"averages\"}",
        "iotql_sink_retries_total{job=\"fleet\",output=\"all_readings\"}",
        "iotql_late_dropped_total{job=\"fleet\",input=\"readings\"}",
        "iotql_dead_lettered_total{job=\"fleet\"} 0",
        "iotql_watermark_delay_seconds{job=\"fleet\",input=\"readings\"}",
        "iotql_job_running{job=\"fleet\"} 1",
        "# EOF",
    ] {
        assert!(metrics.contains(name), "no {name} in\n{metrics}");
    }

    // The OpenAPI document names every route the server has.
    let (status, doc) = served.get("/openapi.json");
    assert_eq!(status, 200);
    assert!(text(&doc["openapi"]).starts_with("3."));
    let paths: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    for path in [
        "/api/jobs",
        "/api/jobs/{job}",
        "/api/jobs/{job}/outputs/{output}/latest",
        "/api/jobs/{job}/outputs/{output}/rows",
        "/api/jobs/{job}/outputs/{output}/live",
        "/metrics",
    ] {
        assert!(paths.contains(path), "{path} is not in {paths:?}");
        assert!(
            doc["paths"][path]["get"]["responses"]["200"].is_object(),
            "{path}"
        );
    }
    let params: Vec<String> =
        doc["paths"]["/api/jobs/{job}/outputs/{output}/rows"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| text(&p["name"]))
            .collect();
    assert_eq!(
        params,
        ["job", "output", "from", "to", "limit", "time_column", "by"]
    );
    assert!(doc["components"]["schemas"]["JobInfo"].is_object());

    // The dashboard page is served from the binary.
    let (status, page) = served.get("/");
    assert_eq!(status, 200);
    assert!(text(&page).contains("<title>iotql"), "{page}");
}

#[test]
fn a_throttled_outputs_rows_are_those_it_let_through() {
    // One row per device an hour: the first of each device passes, with
    // the count of rows held back before it (none).
    let served = Served::start_job(
        "
CREATE INPUT readings WITH (connector = 'sim', sites = '2', zones = '2', devices = '2', rate = '400', interval = '1s', malformed = '0', out_of_order = '0', duplicates = '0');
CREATE OUTPUT firsts WITH (connector = 'csv', path = 'firsts.csv', throttle = '1h', throttle_by = 'device_id');
SELECT device_id, ts, temperature_c INTO firsts FROM readings TIMESTAMP BY ts;
",
        &[],
    );
    wait_for(Duration::from_secs(60), "rows past the devices", || {
        served.get("/api/jobs/fleet").1["outputs"][0]["rows_out"]
            .as_u64()
            .unwrap_or(0)
            > 3 * DEVICES as u64
    });
    let (_, job) = served.get("/api/jobs/fleet");
    let columns: Vec<String> = job["outputs"][0]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| text(&c["name"]))
        .collect();
    assert_eq!(columns, ["device_id", "ts", "temperature_c", "suppressed"]);
    let (status, body) = served.get("/api/jobs/fleet/outputs/firsts/latest?limit=100");
    assert_eq!(status, 200, "{body}");
    let shown = rows(&body);
    assert_eq!(shown.len(), DEVICES, "one row per device: {body}");
    assert!(shown.iter().all(|r| r["suppressed"] == 0), "{body}");
    // They are the file's rows: a row per device, nothing held back.
    let file = std::fs::read_to_string(served.path("firsts.csv")).unwrap();
    let mut written: Vec<(String, String)> = file
        .lines()
        .skip(1)
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            (cells[0].to_string(), cells[cells.len() - 1].to_string())
        })
        .collect();
    written.sort();
    let mut seen: Vec<(String, String)> = shown
        .iter()
        .map(|r| (text(&r["device_id"]), r["suppressed"].to_string()))
        .collect();
    seen.sort();
    assert_eq!(seen, written, "{file}");
}

#[test]
fn bad_requests_are_400s_and_404s_that_say_what_is_wrong_and_the_api_is_read_only() {
    let served = Served::start(&[]);
    served.wait_for_readings();
    let rows = "/api/jobs/fleet/outputs/all_readings/rows";
    for (query, status, says) in [
        ("?from=yesterday", 400, "`yesterday` is not a time"),
        (
            "?from=2026-11-24T11:00:00Z&to=2026-11-24T10:00:00Z",
            400,
            "`from` is after `to`",
        ),
        ("?limit=0", 400, "`limit` is a number from 1 to 10000"),
        ("?limit=-1", 400, "`limit`"),
        ("?colour=red", 400, "no column `colour`"),
        ("?time_column=device_id", 400, "is not a datetime"),
        ("?by=nothing", 400, "no column `nothing`"),
        ("?from=%FF%FE", 400, "is not a time"),
    ] {
        let (s, body) = served.get(&format!("{rows}{query}"));
        assert_eq!(s, status, "{query}: {body}");
        assert!(text(&body["error"]).contains(says), "{query}: {body}");
    }
    let (s, body) = served.get("/api/jobs/nope");
    assert_eq!(s, 404);
    assert!(
        text(&body["error"]).contains("no job `nope` (jobs: fleet)"),
        "{body}"
    );
    let (s, body) = served.get("/api/jobs/fleet/outputs/nope/latest");
    assert_eq!(s, 404);
    assert!(
        text(&body["error"]).contains("outputs: all_readings, latest, averages, averages_csv"),
        "{body}"
    );
    // Read-only.
    let response = agent()
        .post(&format!("{}/api/jobs", served.base))
        .send_empty()
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    // The job went on.
    assert_eq!(served.get("/api/jobs/fleet").1["state"], "running");
    drop(served.run);
}

#[test]
fn beyond_loopback_the_server_wants_a_token_and_every_request_carries_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fleet.asaql"), JOB).unwrap();
    let job = dir.path().join("fleet.asaql");
    let out = Command::new(env!("CARGO_BIN_EXE_iotql"))
        .args(["run", job.to_str().unwrap(), "--http", "0.0.0.0:0"])
        .env_remove("IOTQL_HTTP_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("listens beyond this machine: give an access token"),
        "{err}"
    );
    assert!(
        !dir.path().join("fleet.db").exists(),
        "the job did not start"
    );

    let token = "s3cret-token";
    let served = Served::start(&["--http", "0.0.0.0:0", "--http-token", token]);
    let port = served.base.rsplit(':').next().unwrap().to_string();
    let base = format!("http://127.0.0.1:{port}");
    for (url, bearer, status) in [
        (format!("{base}/api/jobs"), None, 401),
        (format!("{base}/metrics"), Some("wrong"), 401),
        (format!("{base}/"), None, 401),
        (format!("{base}/api/jobs"), Some(token), 200),
        (format!("{base}/metrics"), Some(token), 200),
        (format!("{base}/api/jobs?token={token}"), None, 200),
    ] {
        let (s, body) = get(&url, bearer);
        assert_eq!(s, status, "{url} {bearer:?}: {body}");
        if s == 401 {
            assert!(text(&body["error"]).contains("access token"), "{body}");
        }
    }
    assert!(
        !served.run.stderr().contains(token),
        "the token is never printed"
    );
}

#[test]
fn a_port_in_use_stops_the_run_before_it_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fleet.asaql"), JOB).unwrap();
    let job = dir.path().join("fleet.asaql");
    let out = Command::new(env!("CARGO_BIN_EXE_iotql"))
        .args(["run", job.to_str().unwrap(), "--http", &address])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("--http {address}")) && err.contains("in use"),
        "{err}"
    );
    assert!(
        !dir.path().join("fleet.db").exists(),
        "the job did not start"
    );
}
