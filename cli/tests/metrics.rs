#![allow(clippy::unwrap_used)]
//! The metrics a run keeps for the summary and the metrics endpoint: the
//! batch latency histogram counts every batch pushed, and a Kafka input's
//! lag per partition (from librdkafka's statistics) is what is left on the
//! broker past what the input has read, 0 once everything is read; the
//! HTTP server shows both (`/api/jobs/JOB`, `/metrics`). The Kafka tests
//! start their own broker (`scripts/kafka-up`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::http::get;
use common::{Broker, Running, iotql, ok, wait_for};
use iotql_connectors::kafka::{KafkaInput, KafkaSource};
use iotql_engine::arrow::datatypes::{DataType, Field, Schema};
use iotql_engine::io::Source;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

#[test]
fn the_summary_counts_every_batch_in_the_latency_histogram() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "run".to_string(),
        "queries/device_windows.asaql".into(),
        "--late-arrival".into(),
        "3650d".into(),
        // 300 events in batches of 7: 43 batches.
        "--batch-size".into(),
        "7".into(),
    ];
    for o in ["minute_stats", "rolling_temp", "hot_episodes"] {
        args.push("--output".into());
        args.push(format!("{o}=csv:{}", dir.path().join(o).display()));
    }
    let err = ok(&iotql(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    assert!(err.contains("300 events"), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("batch latency: p50 ≤ "))
        .unwrap_or_else(|| panic!("no batch latency in the summary:\n{err}"));
    assert!(line.ends_with("(43 batches)"), "{line}");
}

/// `n` small JSON messages: `{"v":0}`, `{"v":1}`, ...
fn numbered(n: u64) -> Vec<(Option<String>, Vec<u8>)> {
    (0..n)
        .map(|i| (None, format!("{{\"v\":{i}}}").into_bytes()))
        .collect()
}

/// A Kafka input of topic `topic` reading one column `v`, in batches of
/// `batch`, with librdkafka settings `settings` (`key=value&...`).
fn open_source(broker: &Broker, topic: &str, batch: usize, settings: &str) -> KafkaSource {
    let input = KafkaInput::from_uri(&format!("{}/{topic}?{settings}", broker.address())).unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
    KafkaSource::open(topic, &input, Some(schema), batch, None).unwrap()
}

/// Reads one batch; the number of events in it.
fn read_batch(source: &mut KafkaSource) -> u64 {
    source
        .next_batch()
        .unwrap()
        .and_then(|b| b.batch)
        .map_or(0, |b| b.num_rows() as u64)
}

/// Statistics every 100 ms, and a prefetch of a few fetches of 1 KB: as
/// an input far behind, whose consumer holds a bounded part of the backlog.
const SETTINGS: &str = "statistics.interval.ms=100&fetch.message.max.bytes=1024&queued.max.messages.kbytes=1&queued.min.messages=10";

#[test]
fn a_kafka_input_reports_how_many_messages_it_has_left_to_read() {
    let broker = Broker::start();
    broker.create_topic("backlog", 1);
    const N: u64 = 3000;
    const BATCH: u64 = 10;
    broker.produce("backlog", &numbered(N));
    let mut source = open_source(&broker, "backlog", BATCH as usize, SETTINGS);
    let metrics = source.metrics().expect("a Kafka input keeps metrics");
    let lag = || {
        metrics
            .lags()
            .iter()
            .find(|l| l.topic == "backlog" && l.partition == 0)
            .map(|l| l.lag)
    };
    // Read until a lag is known: it is what the input has not read yet,
    // give or take the batch being read when the statistics came.
    let mut read = 0;
    let lag_then = loop {
        read += read_batch(&mut source);
        if let Some(l) = lag() {
            break l;
        }
        assert!(read < N / 2, "no lag known after {read} of {N} messages");
        // A slow job (a batch every 5 ms): the input is behind when the
        // statistics come (read at full speed, it reads all in 25 ms).
        std::thread::sleep(Duration::from_millis(5));
    };
    let left = N - read;
    assert!(
        left.saturating_sub(BATCH) <= lag_then && lag_then <= left + BATCH,
        "lag {lag_then} with {left} messages left to read"
    );
    assert!(lag_then > N / 2, "{lag_then}");
    // The rest: the lag comes down to 0 once everything is read.
    while read < N {
        read += read_batch(&mut source);
    }
    wait_for(Duration::from_secs(30), "the lag to reach 0", || {
        assert_eq!(read_batch(&mut source), 0);
        lag() == Some(0)
    });
}

#[test]
fn the_lag_of_a_transactional_topic_read_to_its_end_is_zero() {
    // The partition's end counts the transaction's commit marker, which is
    // no message: reading every message leaves nothing to read.
    let broker = Broker::start();
    broker.create_topic("committed", 1);
    let producer: BaseProducer = broker
        .client()
        .set("transactional.id", "metrics-test")
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(30)).unwrap();
    producer.begin_transaction().unwrap();
    for (_, payload) in numbered(100) {
        producer
            .send(BaseRecord::<str, [u8]>::to("committed").payload(payload.as_slice()))
            .unwrap();
    }
    producer
        .commit_transaction(Duration::from_secs(30))
        .unwrap();
    let mut source = open_source(&broker, "committed", 1000, SETTINGS);
    let metrics = source.metrics().unwrap();
    let mut read = 0;
    wait_for(Duration::from_secs(60), "the lag to reach 0", || {
        read += read_batch(&mut source);
        read == 100 && metrics.total_lag() == Some(0)
    });
}

#[test]
fn a_stopped_run_says_how_far_behind_its_kafka_input_was() {
    let broker = Broker::start();
    broker.create_topic("readings", 2);
    broker.produce("readings", &numbered(500));
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("copy.asaql");
    std::fs::write(&job, "SELECT v INTO copied FROM readings\n").unwrap();
    let out = dir.path().join("copied.csv");
    let run = Running::start(&[
        "run",
        job.to_str().unwrap(),
        "--input",
        &format!(
            "readings=kafka://{}/readings?statistics.interval.ms=100",
            broker.address()
        ),
        "--output",
        &format!("copied=csv:{}", out.display()),
        "--http",
        "127.0.0.1:0",
    ]);
    wait_for(Duration::from_secs(60), "the 500 messages copied", || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.lines().count() == 501)
    });
    // The server shows each partition's lag: 0 once everything is read.
    let base = run.served_at();
    wait_for(Duration::from_secs(30), "a lag of 0 in the API", || {
        let (_, job) = get(&format!("{base}/api/jobs/copy"), None);
        let input = &job["inputs"][0];
        input["consumer_lag"] == 0 && input["partitions"].as_array().is_some_and(|p| p.len() == 2)
    });
    let (_, metrics) = get(&format!("{base}/metrics"), None);
    let metrics = metrics.as_str().unwrap();
    for partition in 0..2 {
        let series = format!(
            "iotql_kafka_consumer_lag{{job=\"copy\",input=\"readings\",topic=\"readings\",partition=\"{partition}\"}} 0"
        );
        assert!(metrics.contains(&series), "no {series} in\n{metrics}");
    }
    let err = run.interrupt();
    let line = err
        .lines()
        .find(|l| l.contains("lag:"))
        .unwrap_or_else(|| panic!("no lag in the summary:\n{err}"));
    let lag: u64 = line
        .split("lag: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(line.contains("readings") && lag <= 500, "{line}");
}
