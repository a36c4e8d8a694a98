#![allow(clippy::unwrap_used)]
//! `iotql run` over a real Mosquitto broker: MQTT in, a JSON-lines file and
//! MQTT out.

#[path = "../../connectors/tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::Broker;

#[test]
fn a_job_reads_mqtt_parses_site_and_device_from_the_topic_and_writes_a_file_and_mqtt() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let n = 500u64;
    // The job's persistent session exists before anything is published
    // (as it would after the job's first run), and so does a reader of its
    // MQTT output.
    broker.create_session("e2e-job", "sites/+/devices/+/telemetry");
    broker.create_session("e2e-alerts", "alerts/#");
    let mut messages: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            (
                format!("sites/site-{}/devices/dev{}/telemetry", i % 4, i % 9),
                format!(r#"{{"id": {i}, "temp": {}}}"#, 15 + i % 20).into_bytes(),
            )
        })
        .collect();
    messages.insert(
        100,
        (
            "sites/site-x/devices/broken/telemetry".into(),
            b"{\"id\": ".to_vec(),
        ),
    );
    broker.publish("e2e-publisher", messages);

    let job = dir.path().join("job.asaql");
    std::fs::write(
        &job,
        format!(
            "CREATE INPUT readings WITH (connector = 'mqtt', host = '127.0.0.1', port = '{port}',
                topic = 'sites/+/devices/+/telemetry', qos = '1', client_id = 'e2e-job',
                max_messages = '{total}');
            SELECT
                SUBSTRING(topic, 7, CHARINDEX('/', topic, 7) - 7) AS site,
                SUBSTRING(topic, CHARINDEX('/devices/', topic) + 9,
                          CHARINDEX('/telemetry', topic) - CHARINDEX('/devices/', topic) - 9) AS device,
                id, temp
            INTO readings_out
            FROM readings;
            SELECT SUBSTRING(topic, CHARINDEX('/devices/', topic) + 9,
                             CHARINDEX('/telemetry', topic) - CHARINDEX('/devices/', topic) - 9) AS device,
                   id, temp
            INTO alerts
            FROM readings
            WHERE temp >= 30;
            ",
            port = broker.port,
            total = n + 1
        ),
    )
    .unwrap();
    let out = dir.path().join("out.jsonl");
    let dead = dir.path().join("dead.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_iotql"))
        .args(["run", job.to_str().unwrap(), "-q", "--output"])
        .arg(format!("readings_out=jsonl:{}", out.display()))
        .arg("--output")
        .arg(format!(
            "alerts=mqtt://127.0.0.1:{}/alerts/{{device}}?client_id=e2e-writer",
            broker.port
        ))
        .arg("--dead-letter")
        .arg(&dead)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("iotql run did not end after max_messages within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    assert!(
        status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Every event, once, with site and device taken from its topic.
    let text = std::fs::read_to_string(&out).unwrap();
    let mut rows: BTreeMap<u64, serde_json::Value> = BTreeMap::new();
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(rows.insert(row["id"].as_u64().unwrap(), row).is_none());
    }
    assert_eq!(rows.len() as u64, n);
    for (i, row) in &rows {
        assert_eq!(row["site"], format!("site-{}", i % 4), "{row}");
        assert_eq!(row["device"], format!("dev{}", i % 9), "{row}");
        assert_eq!(row["temp"], 15 + i % 20, "{row}");
    }

    // The broken message is a dead letter with its topic and position.
    let dead = std::fs::read_to_string(&dead).unwrap();
    let letters: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 1, "{dead}");
    assert_eq!(
        letters[0]["position"], "topic sites/site-x/devices/broken/telemetry message 101",
        "{dead}"
    );

    // The hot readings were published to alerts/{device}.
    let hot: Vec<u64> = (0..n).filter(|i| 15 + i % 20 >= 30).collect();
    let mut alerts = BTreeMap::new();
    for (topic, payload) in broker.receive("e2e-alerts", hot.len()) {
        let row: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        let id = row["id"].as_u64().unwrap();
        assert_eq!(topic, format!("alerts/dev{}", id % 9));
        alerts.insert(id, row);
    }
    assert_eq!(alerts.keys().copied().collect::<Vec<_>>(), hot);
}

/// `iotql simulate` publishes a fleet to MQTT (one topic per device), a job
/// reads it with a topic filter and takes the site from the topic: its rows
/// are the fleet's, as the same seeded fleet written to a file shows, and
/// the simulator's malformed readings are dead letters.
#[test]
fn a_simulated_fleet_through_mqtt_arrives_whole_with_the_site_from_its_topic() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let count = 2000u64;
    broker.create_session("fleet-job", "fleet/#");
    let simulate = |to: String| {
        let out = Command::new(env!("CARGO_BIN_EXE_iotql"))
            .args(["simulate", "--count", &count.to_string(), "--rate", "max"])
            .args([
                "--seed",
                "5",
                "--start",
                "2026-11-01T00:00:00Z",
                "--malformed",
                "0.01",
            ])
            .args(["-q", "--to", &to])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let file = dir.path().join("fleet.jsonl");
    simulate(format!(
        "mqtt://127.0.0.1:{}/fleet/{{device_id}}?client_id=fleet-sim",
        broker.port
    ));
    simulate(format!("jsonl:{}", file.display()));

    let job = dir.path().join("job.asaql");
    std::fs::write(
        &job,
        format!(
            "CREATE INPUT readings WITH (connector = 'mqtt', host = '127.0.0.1', port = '{port}',
                topic = 'fleet/#', client_id = 'fleet-job', max_messages = '{count}');
            SELECT SUBSTRING(topic, 7, CHARINDEX('/', topic, 7) - 7) AS topic_site,
                   site, device_id, ts, temperature_c
            INTO out
            FROM readings TIMESTAMP BY ts",
            port = broker.port
        ),
    )
    .unwrap();
    let out = dir.path().join("out.jsonl");
    let dead = dir.path().join("dead.jsonl");
    let run = Command::new(env!("CARGO_BIN_EXE_iotql"))
        .args(["run", job.to_str().unwrap(), "-q", "--out-of-order", "1m"])
        .arg("--output")
        .arg(format!("out=jsonl:{}", out.display()))
        .arg("--dead-letter")
        .arg(&dead)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for row in &rows {
        assert_eq!(row["topic_site"], row["site"], "{row}");
    }
    // Every reading of the file (but the malformed lines) arrived, once.
    let key =
        |v: &serde_json::Value| format!("{}|{}|{}", v["device_id"], v["ts"], v["temperature_c"]);
    let mut got: Vec<String> = rows.iter().map(key).collect();
    // The simulator's garbage lines are not UTF-8.
    let text = std::fs::read(&file).unwrap();
    let mut expected: Vec<String> = text
        .split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
        .filter(|v| v["ts"].is_string() && !v["temperature_c"].is_string())
        .map(|v| key(&v))
        .collect();
    got.sort();
    expected.sort();
    assert!(expected.len() > 1900, "{}", expected.len());
    assert_eq!(got, expected);
    let letters = String::from_utf8_lossy(&std::fs::read(&dead).unwrap_or_default()).into_owned();
    assert_eq!(
        letters.lines().count() as u64 + rows.len() as u64,
        count,
        "every message is a row or a dead letter:\n{letters}"
    );
    assert!(letters.contains("topic fleet/"), "{letters}");
}
