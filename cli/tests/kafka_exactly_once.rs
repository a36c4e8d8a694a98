#![allow(clippy::unwrap_used)]
//! Exactly once through Kafka across crashes and a broker outage
//! (docs/reliability.md, "Kafka"): a windowed job reading a Kafka topic
//! from its checkpoints' positions, writing its windows to a CSV file, a
//! SQLite table, Parquet files and a Kafka topic (in transactions) and its
//! alerts to a log, is SIGKILLed at random moments, crashed between a
//! checkpoint's save and its transaction's commit, and run through a
//! broker outage; each time, its files, table and alerts and the output
//! topic read `read_committed` equal those of an uninterrupted run.
//!
//! Each test starts its own broker (noida: transactions and
//! `read_committed`) on a free port.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::outputs::{alert_lines, parquet_rows, same, sqlite_rows};
use common::{Broker, Running, ok, rows, setting, wait_for};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// Per device and minute: the readings and their sum, to a CSV file, a
/// SQLite table (no key: rows after a checkpoint are rolled back), Parquet
/// files and a Kafka topic keyed by device; an alert for a minute with a
/// reading of 96 (about one window in twelve) to a log.
const JOB: &str = "\
SELECT device_id, System.Timestamp() AS window_end, COUNT(*) AS n, SUM(v) AS total
INTO csv_out FROM readings TIMESTAMP BY ts
GROUP BY device_id, TumblingWindow(minute, 1);

SELECT device_id, System.Timestamp() AS window_end, COUNT(*) AS n, SUM(v) AS total
INTO kafka_out FROM readings TIMESTAMP BY ts
GROUP BY device_id, TumblingWindow(minute, 1);

SELECT device_id, System.Timestamp() AS window_end, COUNT(*) AS n, SUM(v) AS total
INTO minutes_db FROM readings TIMESTAMP BY ts
GROUP BY device_id, TumblingWindow(minute, 1);

SELECT device_id, System.Timestamp() AS window_end, MIN(v) AS low, MAX(v) AS high
INTO minutes_pq FROM readings TIMESTAMP BY ts
GROUP BY device_id, TumblingWindow(minute, 1);

SELECT device_id, System.Timestamp() AS window_end, MAX(v) AS peak
INTO alerts FROM readings TIMESTAMP BY ts
GROUP BY device_id, TumblingWindow(minute, 1)
HAVING MAX(v) >= 96;
";

const DEVICES: usize = 50;

/// The time of reading `i`: each device reads every 7 s from 2026-01-01.
fn reading_time(i: usize) -> chrono::DateTime<chrono::Utc> {
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap();
    (start + chrono::Duration::seconds((i / DEVICES) as i64 * 7)).to_utc()
}

/// `count` readings of `DEVICES` devices, each device's in time order
/// (one every 7 s), keyed by device; from reading `first` on.
fn readings(first: usize, count: usize) -> Vec<(Option<String>, Vec<u8>)> {
    (first..first + count)
        .map(|i| {
            let device = format!("dev-{:03}", i % DEVICES);
            let ts = reading_time(i).format("%Y-%m-%dT%H:%M:%SZ");
            let payload = format!(r#"{{"device_id":"{device}","ts":"{ts}","v":{}}}"#, i % 97);
            (Some(device), payload.into_bytes())
        })
        .collect()
}

/// A reading per device a day after reading `last`, which closes every
/// earlier window.
fn closers(last: usize) -> Vec<(Option<String>, Vec<u8>)> {
    let ts = (reading_time(last) + chrono::Duration::days(1)).format("%Y-%m-%dT%H:%M:%SZ");
    (0..DEVICES)
        .map(|d| {
            let device = format!("dev-{d:03}");
            let payload = format!(r#"{{"device_id":"{device}","ts":"{ts}","v":0}}"#);
            (Some(device), payload.into_bytes())
        })
        .collect()
}

/// One run of the job: its state folder, input and outputs.
struct Job {
    job: String,
    state: PathBuf,
    csv: PathBuf,
    db: PathBuf,
    parquet: PathBuf,
    alerts: PathBuf,
    input: String,
    output: String,
}

impl Job {
    /// The job over topic `topic` of `broker`, its rows to `csv` and to
    /// topic `out`, its state in `dir`/`name`.
    fn new(
        broker: &Broker,
        dir: &Path,
        name: &str,
        topic: &str,
        out: &str,
        until_end: bool,
    ) -> Job {
        let job = dir.join("job.asaql");
        std::fs::write(&job, JOB).unwrap();
        let until = if until_end { "&until=end" } else { "" };
        Job {
            job: job.display().to_string(),
            state: dir.join(format!("{name}.state")),
            csv: dir.join(format!("{name}.csv")),
            db: dir.join(format!("{name}.db")),
            parquet: dir.join(format!("{name}.parquet")),
            alerts: dir.join(format!("{name}.alerts.jsonl")),
            input: format!(
                // A static member: a restarted run takes the killed one's
                // place at once (noida never evicts a member that died).
                // Small fetches: the partitions are read side by side, so
                // windows close (and rows are written) all along the run.
                // noida answers a fetch with all it has up to the
                // partitions' ends, past the fetch's bounds: librdkafka
                // takes responses up to 1.5 GB (10M events are 750 MB;
                // its default bound is 100 MB).
                "readings=kafka://{}/{topic}?group_id={name}&group.instance.id={name}&start=earliest&session.timeout.ms=6000&max.partition.fetch.bytes=4096&receive.message.max.bytes=1500000000{until}",
                broker.address()
            ),
            output: format!("kafka_out=kafka://{}/{out}?key=device_id", broker.address()),
        }
    }

    fn args(&self, interval: &str) -> Vec<String> {
        [
            "run",
            &self.job,
            "--late-arrival",
            "3650d",
            "--checkpoint-interval",
            interval,
            // Small batches: checkpoints (taken between batches) come often.
            "--batch-size",
            "100",
            "--state-dir",
            &self.state.display().to_string(),
            "--input",
            &self.input,
            "--output",
            &format!("csv_out=csv:{}", self.csv.display()),
            // Small transactions: rows are committed between checkpoints,
            // and a resumed run must remove those after its checkpoint.
            "--output",
            &format!(
                "minutes_db=sqlite:{}?table=minutes&batch_size=20",
                self.db.display()
            ),
            "--output",
            &format!("minutes_pq=parquet:{}", self.parquet.display()),
            "--output",
            &format!("alerts=log:{}", self.alerts.display()),
            "--output",
            &self.output,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn command(&self, interval: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_iotql"));
        c.args(self.args(interval))
            .current_dir(common::repo())
            .env("IOTQL_LOG", "info");
        c
    }

    /// Runs the job to the end of its input; its stderr.
    fn run_to_end(&self) -> String {
        ok(&self.command("1s").output().unwrap())
    }

    fn start(&self, interval: &str) -> Running {
        let args = self.args(interval);
        Running::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// The newest checkpoint's number in the state folder (0: none).
    fn newest_checkpoint(&self) -> u64 {
        fn walk(dir: &Path, newest: &mut u64) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, newest);
                } else if let Some(n) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("chk-")?.strip_suffix(".iotql"))
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    *newest = (*newest).max(n);
                }
            }
        }
        let mut newest = 0;
        walk(&self.state, &mut newest);
        newest
    }
}

impl Job {
    /// The outputs written to files, by name, as text: the CSV file's rows,
    /// the SQLite table's rows and the Parquet rows as multisets (sorted:
    /// partitions are read side by side, so windows of different devices
    /// close in an order that varies from run to run), the alerts one per
    /// idempotency key.
    fn files(&self) -> Vec<(String, Vec<u8>)> {
        let text = |rows: Vec<String>| rows.join("\n").into_bytes();
        let mut table = sqlite_rows(
            &self.db,
            "SELECT device_id, window_end, n, total FROM minutes",
        );
        table.sort();
        vec![
            ("CSV file".into(), text(rows(&self.csv))),
            ("SQLite table".into(), text(table)),
            ("Parquet rows".into(), text(parquet_rows(&self.parquet))),
            ("alert log".into(), text(alert_lines(&self.alerts))),
        ]
    }
}

/// The messages of every partition of `topic` as a `read_committed`
/// consumer sees them: per key, the payloads in partition order.
fn committed_rows(broker: &Broker, topic: &str) -> BTreeMap<String, Vec<String>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.address())
        .set("group.id", "exactly-once-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .unwrap();
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in 0..partitions {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
        consumer.assign(&tpl).unwrap();
        let started = Instant::now();
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "reading {topic}/{p} did not end"
            );
            match consumer.poll(Duration::from_secs(1)) {
                None => {}
                Some(Ok(m)) => by_key
                    .entry(String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned())
                    .or_default()
                    .push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()),
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => panic!("reading {topic}/{p}: {e}"),
            }
        }
    }
    by_key
}

/// Asserts that `got` wrote what `expected` did, each row once: the
/// files, table and alerts (`Job::files`), the topics per key in the same
/// order.
fn assert_same(broker: &Broker, expected: (&Job, &str), got: (&Job, &str)) {
    let want_csv = rows(&expected.0.csv);
    assert!(
        want_csv.len() > 1000,
        "the uninterrupted run has {} rows",
        want_csv.len()
    );
    assert!(
        alert_lines(&expected.0.alerts).len() > 10,
        "the job made too few alerts to prove anything"
    );
    same(&got.0.files(), &expected.0.files());
    if !broker.isolates_transactions() {
        // The long version on Tansu (bench/kill.sh): the input's positions
        // and the files, table and alerts are checked; the topic cannot be.
        eprintln!(
            "the output topic is not compared: this broker shows aborted transactions' rows to read_committed consumers"
        );
        return;
    }
    let (want, have) = (
        committed_rows(broker, expected.1),
        committed_rows(broker, got.1),
    );
    let count = |m: &BTreeMap<String, Vec<String>>| m.values().map(Vec::len).sum::<usize>();
    assert_eq!(
        count(&want),
        want_csv.len(),
        "the uninterrupted run's topic"
    );
    for (key, rows) in &want {
        let other = have.get(key).map(Vec::as_slice).unwrap_or_default();
        assert!(
            other == rows.as_slice(),
            "key {key}: {} rows read committed, {} expected (doubled or lost)",
            other.len(),
            rows.len()
        );
    }
    assert_eq!(count(&have), count(&want), "rows of other keys");
}

/// A broker with `events` readings (and closers) in topic `readings`, the
/// job run over it uninterrupted (to topic `expected`), and the job to
/// crash (to topic `crashed`), in a folder of the test's own.
/// Also returns how long the uninterrupted run took.
///
/// The input topic has 3 partitions, or `IOTQL_KILL_PARTITIONS`: the long
/// version reads one. The job's windows close as the slowest partition's
/// time goes on, and a broker that answers a fetch with a partition's whole
/// backlog (noida, Tansu) has a 10M-event run read one partition far ahead
/// of the others: every window stays open (1M of them) and each
/// checkpoint saves them all.
fn uninterrupted_and_crashed(events: usize) -> (Broker, tempfile::TempDir, Job, Job, Duration) {
    let broker = Broker::start();
    let partitions = setting("IOTQL_KILL_PARTITIONS", 3);
    broker.create_topic("readings", partitions);
    for topic in ["expected", "crashed"] {
        broker.create_topic(topic, 3);
    }
    let mut messages = readings(0, events);
    messages.extend(closers(events));
    broker.produce_to("readings", &messages, Some(partitions));
    let dir = tempfile::tempdir().unwrap();
    let job = |name: &str| Job::new(&broker, dir.path(), name, "readings", name, true);
    let (expected, crashed) = (job("expected"), job("crashed"));
    let started = Instant::now();
    expected.run_to_end();
    (broker, dir, expected, crashed, started.elapsed())
}

const EVENTS: usize = 50_000;

#[test]
fn killed_at_random_moments_and_restarted_the_csv_and_the_committed_topic_equal_an_uninterrupted_run()
 {
    // The long version (bench/kill.sh) sets these.
    let events = setting("IOTQL_KILL_EVENTS", EVENTS);
    let planned = setting("IOTQL_KILLS", 6);
    let interval: String = setting("IOTQL_KILL_INTERVAL", "200ms".to_string());
    let (broker, _dir, expected, crashed, took) = uninterrupted_and_crashed(events);
    // Kills spread over the run: after progress, a random wait of up to a
    // share of the uninterrupted run's time.
    let spread = setting(
        "IOTQL_KILL_SPREAD_MS",
        (took.as_millis() as u64 / (2 * planned as u64 + 1)).max(50),
    );
    let started = Instant::now();
    // Progress: a checkpoint of this run; then a kill soon after, in a
    // batch, a write, a checkpoint or a commit.
    common::killed_until_done(
        planned,
        spread,
        setting("IOTQL_TEST_SEED", 42),
        || crashed.command(&interval),
        || crashed.newest_checkpoint() as usize,
        1,
    );
    assert_same(&broker, (&expected, "expected"), (&crashed, "crashed"));
    eprintln!(
        "{events} events from Kafka: an uninterrupted run took {:.1} s; {planned} runs killed with SIGKILL and restarted took {:.1} s in all; the CSV file, SQLite table, Parquet rows and alerts identical{}",
        took.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        if broker.isolates_transactions() {
            ", and the committed topic"
        } else {
            " (the topic not compared)"
        }
    );
}

#[test]
fn a_crash_between_a_checkpoints_save_and_its_commit_resumes_from_the_checkpoint_before() {
    let (broker, _dir, expected, crashed, _) = uninterrupted_and_crashed(EVENTS / 5);
    // The first commit of a transaction with rows aborts the process, its
    // checkpoint saved: the checkpoint counts rows that were never committed.
    let out = crashed
        .command("200ms")
        .env("IOTQL_TEST_CRASH_BEFORE_COMMIT", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("IOTQL_TEST_CRASH_BEFORE_COMMIT: aborting"),
        "the run was to crash before a commit (exit {:?}):\n{err}",
        out.status
    );
    let err = crashed.run_to_end();
    assert_same(&broker, (&expected, "expected"), (&crashed, "crashed"));
    assert!(
        err.contains("was not committed; an older checkpoint is used"),
        "the resumed run passes over the uncommitted checkpoint:\n{err}"
    );
}

#[test]
fn a_crash_at_the_end_after_the_last_commit_resumes_with_nothing_left_to_do() {
    let (broker, _dir, expected, crashed, _) = uninterrupted_and_crashed(EVENTS / 5);
    // The run aborts after its last rows are committed, before its
    // checkpoints are removed.
    let out = crashed
        .command("1h")
        .env("IOTQL_TEST_CRASH_BEFORE_CLEAR", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("IOTQL_TEST_CRASH_BEFORE_CLEAR: aborting"),
        "the run was to crash at its end (exit {:?}):\n{err}",
        out.status
    );
    // The next run resumes from the checkpoint taken at the end: no row
    // is written again (from an earlier checkpoint, the rows after it
    // would be committed twice).
    let err = crashed.run_to_end();
    assert!(err.contains("resumed from checkpoint"), "{err}");
    assert_same(&broker, (&expected, "expected"), (&crashed, "crashed"));
    assert_eq!(
        crashed.newest_checkpoint(),
        0,
        "the checkpoints are removed"
    );
}

/// Waits until `path` has at least `n` rows.
fn wait_for_rows(path: &Path, n: usize, run: &Running) {
    let started = Instant::now();
    while rows(path).len() < n {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "timed out waiting for {n} rows in {} ({} now); the job says:\n{}",
            path.display(),
            rows(path).len(),
            run.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_broker_outage_is_waited_out_logged_once_and_loses_or_doubles_nothing() {
    let outage = Duration::from_secs(
        std::env::var("IOTQL_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20),
    );
    let broker = Broker::start();
    broker.create_topic("readings", 3);
    broker.create_topic("expected", 3);
    broker.create_topic("live", 3);
    let first = readings(0, 6000);
    let second = readings(6000, 6000);
    let dir = tempfile::tempdir().unwrap();

    let live = Job::new(&broker, dir.path(), "live", "readings", "live", false);
    let run = live.start("1s");
    wait_for(Duration::from_secs(60), "the partitions", || {
        run.stderr().contains("assigned [(")
    });
    broker.produce_to("readings", &first, Some(3));
    // Windows of the first part are out (the last minute of each device
    // stays open).
    wait_for_rows(&live.csv, 400, &run);
    broker.down_keeping_data();
    std::thread::sleep(outage);
    broker.up(true);
    broker.produce_to("readings", &second, Some(3));
    broker.produce_to("readings", &closers(12_000), Some(3));

    // The same readings read to the end by an uninterrupted run: its rows
    // but those of the closing readings' windows, which stay open live.
    let expected = Job::new(
        &broker,
        dir.path(),
        "expected",
        "readings",
        "expected",
        true,
    );
    expected.run_to_end();
    let closing = |r: &String| r.contains("2026-01-02T");
    let want = rows(&expected.csv)
        .into_iter()
        .filter(|r| !closing(r))
        .count();
    wait_for_rows(&live.csv, want, &run);
    // A checkpoint commits the last transaction, then Ctrl+C.
    let err = run.interrupt();

    assert_eq!(
        err.matches("output `kafka_out` (the Kafka brokers) is unreachable")
            .count(),
        1,
        "the output's outage is logged once:\n{err}"
    );
    let summary = err
        .lines()
        .find(|l| l.trim_start().starts_with("output kafka_out"))
        .unwrap_or_default();
    assert!(summary.contains("outages: 1"), "{summary}\n{err}");

    let got = rows(&live.csv);
    let want_rows: Vec<String> = rows(&expected.csv)
        .into_iter()
        .filter(|r| !closing(r))
        .collect();
    assert_eq!(got, want_rows, "the CSV output; the live run said:\n{err}");
    let want = committed_rows(&broker, "expected");
    let have = committed_rows(&broker, "live");
    for (key, rows) in &want {
        let rows: Vec<&String> = rows.iter().filter(|r| !r.contains("2026-01-02T")).collect();
        let other: Vec<&String> = have
            .get(key)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        assert_eq!(other, rows, "key {key} read committed (lost or doubled)");
    }
}
