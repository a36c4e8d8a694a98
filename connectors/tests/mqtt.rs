#![allow(clippy::unwrap_used)]
//! The MQTT input and output against a real Mosquitto broker (started by
//! scripts/mqtt-up on a free port for each test).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iotql_connectors::mqtt::{MqttInput, MqttOutput, MqttSink, MqttSource};
use iotql_engine::arrow::array::{
    ArrayRef, AsArray, Int64Array, StringArray, TimestampMicrosecondArray,
};
use iotql_engine::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, TimeUnit};
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::io::{Sink, Source};
use iotql_engine::operator::DeadLetter;
use support::Broker;

const FILTER: &str = "sites/+/devices/+/telemetry";

fn topic(i: u64) -> String {
    format!("sites/s{}/devices/d{}/telemetry", i % 3, i % 7)
}

fn event(i: u64) -> (String, Vec<u8>) {
    (
        topic(i),
        format!(r#"{{"id": {i}, "temp": {}.5}}"#, 20 + i % 10).into_bytes(),
    )
}

/// One decoded row: id, temp, topic.
type Row = (i64, f64, String);

/// Reads until `done` says so (or 60 s pass: the test fails), committing
/// each batch's mark when `commit` is set.
fn read(
    source: &mut MqttSource,
    commit: bool,
    mut done: impl FnMut(&[Row]) -> bool,
) -> (Vec<Row>, Vec<DeadLetter>) {
    let mut committer = source.committer().unwrap();
    let mut rows = Vec::new();
    let mut letters = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(&rows) {
        assert!(
            Instant::now() < deadline,
            "60 s and still reading: {} rows, {} dead letters",
            rows.len(),
            letters.len()
        );
        let Some(b) = source.next_batch().unwrap() else {
            break;
        };
        assert!(b.arrival.is_some(), "a live batch carries its arrival time");
        letters.extend(b.dead_letters);
        if let Some(batch) = b.batch {
            let schema = batch.schema();
            let col = |name: &str| batch.column(schema.index_of(name).unwrap()).clone();
            let ids = col("id");
            let temps = col("temp");
            let topics = col("topic");
            for r in 0..batch.num_rows() {
                rows.push((
                    ids.as_primitive::<Int64Type>().value(r),
                    temps.as_primitive::<Float64Type>().value(r),
                    topics.as_string::<i32>().value(r).to_string(),
                ));
            }
        }
        if commit {
            committer.commit(b.mark).unwrap();
        }
    }
    (rows, letters)
}

fn check_row(row: &Row) {
    let i = row.0 as u64;
    assert_eq!(row.1, (20 + i % 10) as f64 + 0.5, "{row:?}");
    assert_eq!(row.2, topic(i), "{row:?}");
}

#[test]
fn messages_of_a_topic_filter_arrive_as_rows_with_their_topic_and_bad_ones_as_dead_letters() {
    let broker = Broker::start();
    let client_id = "reader-rows";
    broker.create_session(client_id, FILTER);
    let n = 300u64;
    let mut messages: Vec<(String, Vec<u8>)> = (0..n).map(event).collect();
    // Bad messages among the good ones, and one the filter does not take.
    messages.insert(
        10,
        (
            "sites/s9/devices/bad/telemetry".into(),
            b"not json".to_vec(),
        ),
    );
    messages.insert(
        20,
        (
            "sites/s9/devices/typed/telemetry".into(),
            br#"{"id": 9999, "temp": "hot"}"#.to_vec(),
        ),
    );
    messages.insert(
        30,
        (
            "sites/s9/devices/big/telemetry".into(),
            format!(
                r#"{{"id": 9998, "temp": 1.0, "pad": "{}"}}"#,
                "x".repeat(1000)
            )
            .into_bytes(),
        ),
    );
    messages.insert(40, ("sites/s9/other".into(), event(9997).1));
    broker.publish("publisher-rows", messages);

    let input = MqttInput::from_uri(
        &format!(
            "127.0.0.1:{}/{FILTER}?client_id={client_id}&max_message_bytes=512&max_messages={}",
            broker.port,
            n + 3
        ),
        false,
    )
    .unwrap();
    let mut source = MqttSource::open("readings", &input, None, 64, None).unwrap();
    let names: Vec<String> = source
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["id", "temp", "topic", "__iotql_arrival_time"]);
    let (rows, letters) = read(&mut source, false, |_| false);

    // Every good event, once, in publish order, with its topic.
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(ids, (0..n as i64).collect::<Vec<_>>());
    rows.iter().for_each(check_row);

    // The bad ones, each with the topic and sequence number of its message
    // (the 11th, 21st and 31st message this source received).
    let found: BTreeMap<&str, &str> = letters
        .iter()
        .map(|l| (l.position.as_str(), l.reason.as_str()))
        .collect();
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found.contains_key("topic sites/s9/devices/bad/telemetry message 11"),
        "{found:?}"
    );
    let typed = found["topic sites/s9/devices/typed/telemetry message 21"];
    assert!(typed.contains("temp"), "{typed}");
    let big = found["topic sites/s9/devices/big/telemetry message 31"];
    assert!(big.contains("larger than the limit of 512 bytes"), "{big}");
    assert!(letters.iter().all(|l| l.input == "readings"));
    assert_eq!(
        source.committer().unwrap().describe(11),
        "topic sites/s9/devices/bad/telemetry message 11"
    );
    // The input ended after max_messages.
    assert!(source.next_batch().unwrap().is_none());
}

#[test]
fn qos1_messages_are_acknowledged_only_when_committed() {
    let broker = Broker::start();
    let client_id = "reader-acks";
    broker.create_session(client_id, FILTER);
    broker.publish("publisher-acks", (0..50).map(event).collect());
    let uri = format!("127.0.0.1:{}/{FILTER}?client_id={client_id}", broker.port);
    let input = MqttInput::from_uri(&uri, false).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("temp", DataType::Float64, true),
    ]));

    // Read everything without committing, then go away as a crashed job
    // would: the broker sends it all again.
    let mut source = MqttSource::open("r", &input, Some(schema.clone()), 16, None).unwrap();
    let (rows, _) = read(&mut source, false, |rows| rows.len() == 50);
    rows.iter().for_each(check_row);
    drop(source);

    let mut source = MqttSource::open("r", &input, Some(schema.clone()), 16, None).unwrap();
    let (again, _) = read(&mut source, false, |rows| rows.len() == 50);
    let ids: BTreeSet<i64> = again.iter().map(|r| r.0).collect();
    assert_eq!(ids, (0..50).collect(), "uncommitted messages come again");
    // Commit the first 20 only: the acknowledgements go to the broker.
    let mut committer = source.committer().unwrap();
    committer.commit(20).unwrap();
    drop(source);

    // Messages 21.. come again, then a new one; nothing of the first 20.
    broker.publish("publisher-acks", vec![event(50)]);
    let mut source = MqttSource::open("r", &input, Some(schema), 16, None).unwrap();
    let (rows, _) = read(&mut source, true, |rows| rows.iter().any(|r| r.0 == 50));
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(ids, (20..51).collect::<Vec<_>>());
    drop(source);

    // All committed: only what is published now arrives.
    broker.publish("publisher-acks", vec![event(51)]);
    let mut source = MqttSource::open(
        "r",
        &MqttInput::from_uri(&uri, false).unwrap(),
        None,
        16,
        None,
    )
    .unwrap();
    let (rows, _) = read(&mut source, true, |rows| !rows.is_empty());
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![51]);
}

#[test]
fn a_broker_restart_mid_run_loses_no_qos1_message() {
    let broker = Broker::start();
    let client_id = "reader-restart";
    broker.create_session(client_id, FILTER);
    broker.publish("publisher-restart", (0..200).map(event).collect());
    let input = MqttInput::from_uri(
        &format!("127.0.0.1:{}/{FILTER}?client_id={client_id}", broker.port),
        false,
    )
    .unwrap();
    let mut source = MqttSource::open("readings", &input, None, 32, None).unwrap();
    // Part of the first messages are read (and committed) ...
    let (first, _) = read(&mut source, true, |rows| rows.len() >= 40);

    // ... the broker stops and starts again with its data, more messages
    // are published, and every one arrives (some perhaps twice).
    broker.stop_keeping_data();
    broker.up();
    broker.publish("publisher-restart", (200..400).map(event).collect());
    let mut seen: BTreeSet<i64> = first.iter().map(|r| r.0).collect();
    let (rest, _) = read(&mut source, true, |rows| {
        seen.extend(rows.iter().map(|r| r.0));
        seen.len() == 400
    });
    first.iter().chain(&rest).for_each(check_row);
    let all: BTreeSet<i64> = first.iter().chain(&rest).map(|r| r.0).collect();
    assert_eq!(all, (0..400).collect());
}

fn alerts(n: usize) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Utf8, true),
        Field::new("level", DataType::Int64, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
    ]));
    let devices: StringArray = (0..n).map(|i| Some(format!("d{}", i % 5))).collect();
    let levels: Int64Array = (0..n).map(|i| Some(i as i64)).collect();
    let ts = TimestampMicrosecondArray::from_iter_values(
        (0..n).map(|i| 1_767_225_600_000_000 + i as i64 * 1_000_000),
    )
    .with_timezone("UTC");
    let columns: Vec<ArrayRef> = vec![Arc::new(devices), Arc::new(levels), Arc::new(ts)];
    RecordBatch::try_new(schema, columns).unwrap()
}

#[test]
fn the_output_publishes_rows_to_their_topics_and_flush_waits_for_the_broker() {
    let broker = Broker::start();
    broker.create_session("alerts-reader", "alerts/#");
    let output = MqttOutput::from_uri(
        &format!(
            "127.0.0.1:{}/alerts/{{device_id}}?client_id=alerts-writer&flush_timeout_s=1",
            broker.port
        ),
        false,
    )
    .unwrap();
    let mut sink = MqttSink::new("alerts", output);
    let batch = alerts(200);
    sink.start(&batch.schema()).unwrap();
    sink.write(&batch.slice(0, 100)).unwrap();
    sink.flush().unwrap();

    // With the broker away, flush does not pretend the rows are delivered.
    broker.stop_keeping_data();
    sink.write(&batch.slice(100, 100)).unwrap();
    let err = sink.flush().unwrap_err().to_string();
    assert!(err.contains("acknowledged 100 of 200 rows"), "{err}");
    // Back: the client connects again and sends what is unacknowledged.
    broker.up();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = sink.flush() {
        assert!(Instant::now() < deadline, "{e}");
    }
    sink.finish().unwrap();

    let mut got: BTreeMap<i64, (String, serde_json::Value)> = BTreeMap::new();
    for (topic, payload) in broker.receive("alerts-reader", 200) {
        let row: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        got.insert(row["level"].as_i64().unwrap(), (topic, row));
    }
    assert_eq!(got.len(), 200);
    for (i, (topic, row)) in &got {
        assert_eq!(topic, &format!("alerts/d{}", i % 5));
        assert_eq!(row["device_id"], format!("d{}", i % 5));
        assert_eq!(
            row["ts"],
            format!("2026-01-01T00:{:02}:{:02}.000Z", i / 60, i % 60)
        );
    }
}

#[test]
fn an_output_topic_placeholder_must_name_a_column() {
    let output = MqttOutput::from_uri("127.0.0.1:1/alerts/{site}", false).unwrap();
    let mut sink = MqttSink::new("alerts", output);
    let err = sink.start(&alerts(1).schema()).unwrap_err().to_string();
    assert!(
        err.contains("no column `site` (its columns: device_id, level, ts)"),
        "{err}"
    );
}

#[test]
fn credentials_are_sent_and_a_refused_login_stops_the_input() {
    let broker = Broker::start_with_passwords(&[("alice", "s3cret")]);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("temp", DataType::Float64, true),
    ]));
    let uri = |user: &str| {
        format!(
            "{user}@127.0.0.1:{}/{FILTER}?client_id=reader-{}",
            broker.port + 1,
            user.split(':').next().unwrap()
        )
    };
    let wrong = MqttInput::from_uri(&uri("alice:guess"), false).unwrap();
    let mut source = MqttSource::open("r", &wrong, Some(schema.clone()), 16, None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let err = loop {
        match source.next_batch() {
            Err(e) => break e.to_string(),
            Ok(_) => assert!(
                Instant::now() < deadline,
                "a wrong password was not refused"
            ),
        }
    };
    assert!(err.contains("refused the connection"), "{err}");

    let right = MqttInput::from_uri(&uri("alice:s3cret"), false).unwrap();
    broker.create_session("reader-alice", FILTER);
    broker.publish("publisher-auth", (0..5).map(event).collect());
    // create_session used the anonymous listener; the input logs in on the other.
    let mut source = MqttSource::open("r", &right, Some(schema), 16, None).unwrap();
    let (rows, _) = read(&mut source, true, |rows| rows.len() == 5);
    rows.iter().for_each(check_row);
}
