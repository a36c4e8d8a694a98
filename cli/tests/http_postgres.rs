#![allow(clippy::unwrap_used)]
//! The HTTP API over outputs stored in PostgreSQL (a real server,
//! scripts/postgres-up on a port of the test's own): `latest` and `rows`
//! read the job's tables through the output's own connection settings, and
//! answer with the rows the tables hold.

mod common;
#[path = "../../connectors/tests/support/mod.rs"]
mod support;
#[path = "../../connectors/tests/support/postgres.rs"]
#[allow(dead_code)]
mod support_postgres;

use std::collections::BTreeSet;
use std::time::Duration;

use common::http::get;
use common::{Running, wait_for};
use serde_json::Value;
use support_postgres::Postgres;

/// 8 simulated devices, 400 readings a second in all: every reading to an
/// unkeyed table, each device's newest to a table keyed by device.
const JOB: &str = "
CREATE INPUT readings WITH (connector = 'sim', sites = '2', zones = '2', devices = '2', rate = '400', interval = '1s', malformed = '0', out_of_order = '0', duplicates = '0');
CREATE OUTPUT all_readings WITH (connector = 'postgres', url = '{url}', table = 'readings', max_latency = '100ms');
CREATE OUTPUT latest WITH (connector = 'postgres', url = '{url}', table = 'latest', key = 'device_id', max_latency = '100ms');
WITH r AS (SELECT device_id, ts, temperature_c FROM readings TIMESTAMP BY ts)
SELECT * INTO all_readings FROM r;
SELECT * INTO latest FROM r;
";

const DEVICES: usize = 8;

/// A row as (device, microseconds since the epoch, temperature), from the
/// API's JSON.
fn api_row(row: &Value) -> (String, i64, String) {
    let ts = chrono::DateTime::parse_from_rfc3339(row["ts"].as_str().unwrap()).unwrap();
    (
        row["device_id"].as_str().unwrap().to_string(),
        ts.timestamp_micros(),
        // As a number: JSON's 20 and 20.0 are one value (PostgreSQL's
        // JSON writes a whole double without the fraction).
        row["temperature_c"].as_f64().unwrap().to_string(),
    )
}

/// The rows of `sql` (device_id, ts, temperature_c) in the same form.
fn table_rows(client: &mut postgres::Client, sql: &str) -> Vec<(String, i64, String)> {
    client
        .query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| {
            let ts: chrono::DateTime<chrono::Utc> = r.get(1);
            let t: f64 = r.get(2);
            (r.get(0), ts.timestamp_micros(), t.to_string())
        })
        .collect()
}

#[test]
fn the_api_reads_postgresql_outputs_from_their_tables() {
    let server = Postgres::start();
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", server.port);
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("fleet.asaql");
    std::fs::write(&job, JOB.replace("{url}", &url)).unwrap();
    let run = Running::start(&[
        "run",
        job.to_str().unwrap(),
        "--checkpoint-interval",
        "off",
        "--http",
        "127.0.0.1:0",
    ]);
    let base = run.served_at();
    let mut client = server.client();
    wait_for(
        Duration::from_secs(60),
        "every device in the tables",
        || {
            client
                .query_one("SELECT to_regclass('latest') IS NOT NULL", &[])
                .is_ok_and(|r| r.get::<_, bool>(0))
                && client
                    .query_one("SELECT COUNT(*) FROM latest", &[])
                    .is_ok_and(|r| r.get::<_, i64>(0) == DEVICES as i64)
        },
    );

    let (_, job) = get(&format!("{base}/api/jobs/fleet"), None);
    let sources: Vec<(String, String)> = job["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["name"].as_str().unwrap().into(),
                o["source"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        sources,
        [
            ("all_readings".to_string(), "postgres".to_string()),
            ("latest".into(), "postgres".into())
        ]
    );

    // Each device's newest reading: rows of the table, at least as new as
    // its newest before the request.
    let before = table_rows(
        &mut client,
        "SELECT DISTINCT ON (device_id) device_id, ts, temperature_c FROM readings ORDER BY device_id, ts DESC",
    );
    let (status, body) = get(
        &format!("{base}/api/jobs/fleet/outputs/all_readings/latest?by=device_id&limit=100"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["source"], "postgres");
    let latest: Vec<_> = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(api_row)
        .collect();
    assert_eq!(latest.len(), DEVICES, "{body}");
    let table: BTreeSet<_> = table_rows(
        &mut client,
        "SELECT device_id, ts, temperature_c FROM readings",
    )
    .into_iter()
    .collect();
    for row in &latest {
        assert!(table.contains(row), "{row:?} is not a row of the table");
        let floor = before.iter().find(|b| b.0 == row.0).unwrap();
        assert!(row.1 >= floor.1, "{row:?} older than {floor:?}");
    }

    // The keyed table: a row per device, each the table's.
    let (_, body) = get(
        &format!("{base}/api/jobs/fleet/outputs/latest/latest?limit=100"),
        None,
    );
    let shown: BTreeSet<String> = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["device_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(shown.len(), DEVICES, "{body}");

    // A time range behind the job: exactly the table's rows, oldest first;
    // and one device's.
    let first: chrono::DateTime<chrono::Utc> = client
        .query_one("SELECT MIN(ts) FROM readings", &[])
        .unwrap()
        .get(0);
    let to = first + chrono::Duration::seconds(2);
    let iso = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    for device in ["", "&device_id=site-1/zone-1/dev-1"] {
        let (status, body) = get(
            &format!(
                "{base}/api/jobs/fleet/outputs/all_readings/rows?from={}&to={}&limit=10000{device}",
                iso(first),
                iso(to)
            ),
            None,
        );
        assert_eq!(status, 200, "{body}");
        let have: Vec<_> = body["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(api_row)
            .collect();
        let filter = device
            .strip_prefix("&device_id=")
            .map(|d| format!(" AND device_id = '{d}'"))
            .unwrap_or_default();
        let want = table_rows(
            &mut client,
            &format!(
                "SELECT device_id, ts, temperature_c FROM readings WHERE ts >= '{}' AND ts < '{}'{filter} ORDER BY ts",
                iso(first),
                iso(to)
            ),
        );
        assert!(!want.is_empty());
        assert_eq!(
            have.iter().cloned().collect::<BTreeSet<_>>(),
            want.iter().cloned().collect::<BTreeSet<_>>(),
            "{device}"
        );
        assert_eq!(have.len(), want.len());
        assert!(have.windows(2).all(|w| w[0].1 <= w[1].1), "oldest first");
    }

    // Each device's newest reading before `to` (rows that no longer
    // change), read as the table's own DISTINCT ON gives it: by numbering
    // the rows (no index starts with device_id), then by the skip scan
    // over an index on (device_id, ts), as a user may add; with a device
    // filter too.
    let newest = |client: &mut postgres::Client, filter: &str| {
        let mut rows = table_rows(
            client,
            &format!(
                "SELECT DISTINCT ON (device_id) device_id, ts, temperature_c FROM readings WHERE ts < '{}'{filter} ORDER BY device_id, ts DESC",
                iso(to)
            ),
        );
        rows.sort();
        rows
    };
    let all = newest(&mut client, "");
    let one = newest(&mut client, " AND device_id = 'site-1/zone-1/dev-1'");
    assert_eq!((all.len(), one.len()), (DEVICES, 1));
    for index in [
        "",
        "CREATE INDEX readings_by_device ON readings (device_id, ts)",
    ] {
        client.batch_execute(index).unwrap();
        for (device, want) in [("", &all), ("&device_id=site-1/zone-1/dev-1", &one)] {
            let (status, body) = get(
                &format!(
                    "{base}/api/jobs/fleet/outputs/all_readings/latest?by=device_id&to={}{device}",
                    iso(to)
                ),
                None,
            );
            assert_eq!(status, 200, "{body}");
            let mut have: Vec<_> = body["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(api_row)
                .collect();
            assert!(
                have.windows(2).all(|w| w[0].1 >= w[1].1),
                "newest first: {have:?}"
            );
            have.sort();
            assert_eq!(&have, want, "{index:?} {device:?}");
        }
    }
    run.interrupt();
}
