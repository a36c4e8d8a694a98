#![allow(clippy::unwrap_used)]
//! `iotql run` over a real Kafka-protocol broker, started by
//! `scripts/kafka-up` (noida by default; `IOTQL_KAFKA_BROKER=tansu` picks
//! Tansu): jobs read topics and write topics, bad messages are dead letters
//! with their topic, partition and offset, a restarted consumer resumes from
//! its committed offsets, two processes share a group's partitions, and a
//! broker outage is waited out.
//!
//! Each test starts its own broker on a free port, so tests run in parallel.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Broker, Running, iotql, ok, repo, rows, sample_messages, wait_for};

#[test]
fn a_job_over_kafka_gives_the_rows_of_the_job_over_the_file_and_dead_letters_bad_messages() {
    let broker = Broker::start();
    broker.create_topic("readings", 3);
    let mut messages = sample_messages();
    // Not JSON, a text where a number belongs, and a message over the limit.
    messages.insert(10, (None, b"not json at all".to_vec()));
    messages.insert(
        20,
        (
            None,
            br#"{"device_id":"dev-0001","ts":"2026-01-01T00:00:03Z","temperature_c":"hot","humidity_pct":1,"battery_pct":1}"#
                .to_vec(),
        ),
    );
    messages.insert(30, (None, vec![b' '; 5000]));
    broker.produce("readings", &messages);

    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(name);
    let outputs = ["minute_stats", "rolling_temp", "hot_episodes"];
    // The job's outputs under `prefix`, its input from `input` if given.
    let run = |prefix: &str, input: Option<String>| {
        let mut args: Vec<String> = vec![
            "run".into(),
            "queries/device_windows.asaql".into(),
            // The sample is dated 2026-01-01: not late by its message times.
            "--late-arrival".into(),
            "3650d".into(),
            "--dead-letter".into(),
            out(&format!("{prefix}dead.jsonl")).display().to_string(),
        ];
        if let Some(i) = input {
            args.extend(["--input".into(), i]);
        }
        for o in outputs {
            args.push("--output".into());
            args.push(format!(
                "{o}=csv:{}",
                out(&format!("{prefix}{o}.csv")).display()
            ));
        }
        ok(&iotql(&args.iter().map(String::as_str).collect::<Vec<_>>()))
    };
    let err = run(
        "k_",
        Some(format!(
            "readings=kafka://{}/readings?until=end&max_message_bytes=4000&session.timeout.ms=6000",
            broker.address()
        )),
    );
    assert!(err.contains("300 events"), "{err}");
    run("f_", None);
    for o in outputs {
        let (k, f) = (
            rows(&out(&format!("k_{o}.csv"))),
            rows(&out(&format!("f_{o}.csv"))),
        );
        assert!(!f.is_empty(), "{o} is empty");
        assert_eq!(k, f, "{o} differs between Kafka and the file");
    }

    let dead = out("k_dead.jsonl");
    let letters: Vec<serde_json_like::Letter> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(serde_json_like::Letter::parse)
        .collect();
    assert_eq!(letters.len(), 3, "{letters:?}");
    for l in &letters {
        assert!(
            l.position.starts_with("topic readings partition ") && l.position.contains(" offset "),
            "{l:?}"
        );
    }
    assert!(letters.iter().any(|l| l.raw.contains("not json at all")));
    assert!(letters.iter().any(|l| l.reason.contains("temperature_c")));
    assert!(
        letters
            .iter()
            .any(|l| l.reason.contains("larger than the limit of 4000 bytes"))
    );
}

/// Just enough JSON reading for dead letters (the test avoids a JSON dependency).
mod serde_json_like {
    #[derive(Debug)]
    pub struct Letter {
        pub position: String,
        pub reason: String,
        pub raw: String,
    }

    fn field(line: &str, name: &str) -> String {
        let key = format!("\"{name}\":\"");
        let Some(start) = line.find(&key).map(|i| i + key.len()) else {
            return String::new();
        };
        let mut out = String::new();
        let mut escaped = false;
        for c in line[start..].chars() {
            match (escaped, c) {
                (true, c) => {
                    out.push(c);
                    escaped = false;
                }
                (false, '\\') => escaped = true,
                (false, '"') => break,
                (false, c) => out.push(c),
            }
        }
        out
    }

    impl Letter {
        pub fn parse(line: &str) -> Letter {
            Letter {
                position: field(line, "position"),
                reason: field(line, "reason"),
                raw: field(line, "raw"),
            }
        }
    }
}

const COPY_JOB: &str = "SELECT device_id, ts, temperature_c INTO out FROM readings\n";

fn write_job(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn a_restarted_consumer_resumes_from_its_committed_offsets() {
    let broker = Broker::start();
    broker.create_topic("resume", 2);
    let messages = sample_messages();
    let (first, second) = messages.split_at(120);
    broker.produce("resume", first);

    let dir = tempfile::tempdir().unwrap();
    let job = write_job(dir.path(), "copy.asaql", COPY_JOB);
    let run_job = |group: &str, start: &str, output: &str| {
        let out = dir.path().join(output);
        let o = iotql(&[
            "run",
            &job,
            "-q",
            "--input",
            &format!(
                "readings=kafka://{}/resume?until=end&group_id={group}&start={start}&session.timeout.ms=6000",
                broker.address()
            ),
            "--output",
            &format!("out=csv:{}", out.display()),
        ]);
        (o, out)
    };
    let run = |group: &str, start: &str, output: &str| {
        let (o, out) = run_job(group, start, output);
        ok(&o);
        rows(&out)
    };
    assert_eq!(run("g1", "committed", "a.csv").len(), 120);
    broker.produce("resume", second);
    let again = run("g1", "committed", "b.csv");
    assert_eq!(
        again.len(),
        180,
        "only the messages produced since the last run"
    );
    // The second half of the sample, by device and time.
    let expected: BTreeSet<String> = second
        .iter()
        .map(|(_, p)| String::from_utf8_lossy(p).into_owned())
        .map(|json| {
            let cell = |k: &str| {
                let at = json.find(&format!("\"{k}\":")).unwrap() + k.len() + 3;
                json[at..]
                    .split([',', '}'])
                    .next()
                    .unwrap()
                    .trim_matches('"')
                    .to_string()
            };
            format!(
                "{},{},{}",
                cell("device_id"),
                cell("ts"),
                cell("temperature_c")
            )
        })
        .collect();
    assert_eq!(again.iter().cloned().collect::<BTreeSet<_>>(), expected);
    // Nothing left for the group: without a declared schema, nothing to
    // learn the columns from, and the job says so.
    let (o, _) = run_job("g1", "committed", "c.csv");
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("declare the input's schema"));
    // Another group starting at the earliest reads everything.
    assert_eq!(run("g2", "earliest", "d.csv").len(), 300);
    // A group's start position of `earliest` ignores what it committed.
    assert_eq!(run("g1", "earliest", "e.csv").len(), 300);
}

/// Runs the job `job` (timed by the sample's 2026 readings) over `input`
/// to its end, into the CSV file `out`; its rows.
fn run_to_end(job: &str, input: &str, out: &Path) -> Vec<String> {
    ok(&iotql(&[
        "run",
        job,
        "-q",
        "--late-arrival",
        "3650d",
        "--input",
        input,
        "--output",
        &format!("out=csv:{}", out.display()),
    ]));
    rows(out)
}

/// Starts the job `job` live over `input`, into the CSV file `out`.
fn run_live(job: &str, input: &str, out: &Path) -> Running {
    Running::start(&[
        "run",
        job,
        "--late-arrival",
        "3650d",
        "--input",
        input,
        "--output",
        &format!("out=csv:{}", out.display()),
    ])
}

const WINDOW_JOB: &str = "SELECT device_id, System.Timestamp() AS window_end, COUNT(*) AS n, \
    ROUND(AVG(temperature_c), 2) AS avg_temp INTO out FROM readings TIMESTAMP BY ts \
    GROUP BY device_id, TumblingWindow(minute, 1)\n";

/// The sample readings plus, for every device, a reading an hour later that
/// closes its windows (its own stays open).
fn sample_with_closers() -> Vec<(Option<String>, Vec<u8>)> {
    let mut messages = sample_messages();
    let devices: BTreeSet<String> = messages.iter().filter_map(|(k, _)| k.clone()).collect();
    for d in devices {
        messages.push((
            Some(d.clone()),
            format!(r#"{{"device_id":"{d}","ts":"2026-01-01T02:00:00Z","temperature_c":20.0,"humidity_pct":1,"battery_pct":1}}"#)
                .into_bytes(),
        ));
    }
    messages
}

#[test]
fn two_processes_in_one_group_split_the_partitions_and_together_give_the_windows_of_one() {
    let broker = Broker::start();
    broker.create_topic("fleet", 4);
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(dir.path(), "windows.asaql", WINDOW_JOB);
    let input = |extra: &str| {
        format!(
            "readings=kafka://{}/fleet?group_id=pair&session.timeout.ms=6000{extra}",
            broker.address()
        )
    };
    let out = |name: &str| dir.path().join(name);
    let start = |name: &str| run_live(&job, &input(""), &out(name));
    let a = start("a.csv");
    wait_for(
        Duration::from_secs(60),
        "the first process's partitions",
        || a.stderr().contains("assigned [("),
    );
    let b = start("b.csv");
    wait_for(
        Duration::from_secs(60),
        "the second process's partitions",
        || b.stderr().contains("assigned [("),
    );
    // Let the rebalance settle before the data comes.
    std::thread::sleep(Duration::from_secs(3));
    broker.produce_to("fleet", &sample_with_closers(), Some(4));

    // The same windows from one process reading the whole topic.
    let expected = run_to_end(
        &job,
        &format!(
            "readings=kafka://{}/fleet?group_id=single&until=end&session.timeout.ms=6000",
            broker.address()
        ),
        &out("one.csv"),
    );
    // Closing readings' windows are open in the live runs, emitted at the end of the one-shot run.
    let expected: Vec<String> = expected
        .into_iter()
        .filter(|r| !r.contains("2026-01-01T02:00:00"))
        .collect();
    assert!(!expected.is_empty());
    wait_for(Duration::from_secs(60), "both processes' windows", || {
        rows(&out("a.csv")).len() + rows(&out("b.csv")).len() >= expected.len()
    });
    a.interrupt();
    b.interrupt();
    let (ra, rb) = (rows(&out("a.csv")), rows(&out("b.csv")));
    assert!(
        !ra.is_empty() && !rb.is_empty(),
        "one process got no partition"
    );
    let mut together: Vec<String> = ra.into_iter().chain(rb).collect();
    together.sort();
    assert_eq!(together, expected);
}

#[test]
fn a_live_job_waits_out_a_broker_outage_and_loses_nothing() {
    let broker = Broker::start();
    if !broker.keeps_data() {
        eprintln!(
            "skipped: the {} broker loses its topics when it restarts, so an outage cannot be told from data loss",
            broker.kind
        );
        return;
    }
    broker.create_topic("outage", 1);
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(dir.path(), "copy.asaql", COPY_JOB);
    let output = dir.path().join("out.csv");
    let job_run = Running::start(&[
        "run",
        &job,
        "--input",
        &format!(
            "readings=kafka://{}/outage?group_id=o&session.timeout.ms=6000",
            broker.address()
        ),
        "--output",
        &format!("out=csv:{}", output.display()),
    ]);
    let messages = sample_messages();
    let (first, second) = messages.split_at(150);
    broker.produce("outage", first);
    wait_for(Duration::from_secs(60), "the first half", || {
        rows(&output).len() >= 150
    });
    broker.down_keeping_data();
    std::thread::sleep(Duration::from_secs(3));
    broker.up(true);
    broker.produce("outage", second);
    let started = Instant::now();
    while rows(&output).len() < 300 {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "timed out waiting for the second half after the outage ({} rows); the job says:\n{}",
            rows(&output).len(),
            job_run.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let err = job_run.interrupt();
    let got = rows(&output);
    let distinct: BTreeSet<&String> = got.iter().collect();
    assert_eq!(distinct.len(), 300, "every reading arrives");
    assert_eq!(got.len(), 300, "and once:\n{err}");
    assert!(
        err.matches("is unreachable").count() <= 2,
        "the outage is logged once, not per request:\n{err}"
    );
}

#[test]
fn simulated_fleet_through_kafka_gives_the_windows_of_the_same_fleet_from_a_file() {
    let broker = Broker::start();
    broker.create_topic("fleet", 3);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleet.jsonl");
    // The same seeded fleet, with its duplicates, late and malformed
    // readings, to a keyed topic and to a file.
    let simulate = |to: String| {
        ok(&iotql(&[
            "simulate",
            "--count",
            "4000",
            "--rate",
            "max",
            "--seed",
            "11",
            "--start",
            "2026-11-01T00:00:00Z",
            "--malformed",
            "0.01",
            "-q",
            "--to",
            &to,
        ]))
    };
    simulate(format!("kafka://{}/fleet?key=device_id", broker.address()));
    simulate(format!("jsonl:{}", file.display()));

    let outputs = ["minute_stats", "rolling_temp", "hot_episodes"];
    let run = |prefix: &str, input: String| {
        let mut args: Vec<String> = vec![
            "run".into(),
            "queries/device_windows.asaql".into(),
            "-q".into(),
            "--late-arrival".into(),
            "3650d".into(),
            // Late readings come up to two intervals after their turn.
            "--out-of-order".into(),
            "1m".into(),
            "--input".into(),
            input,
            "--dead-letter".into(),
            dir.path()
                .join(format!("{prefix}dead.jsonl"))
                .display()
                .to_string(),
        ];
        for o in outputs {
            args.push("--output".into());
            args.push(format!(
                "{o}=csv:{}",
                dir.path().join(format!("{prefix}{o}.csv")).display()
            ));
        }
        ok(&iotql(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    };
    run(
        "k_",
        format!(
            "readings=kafka://{}/fleet?until=end&session.timeout.ms=6000",
            broker.address()
        ),
    );
    run("f_", format!("readings=jsonl:{}", file.display()));
    for o in outputs {
        let k = rows(&dir.path().join(format!("k_{o}.csv")));
        let f = rows(&dir.path().join(format!("f_{o}.csv")));
        assert!(!f.is_empty(), "{o} is empty");
        assert_eq!(k, f, "{o} differs between Kafka and the file");
    }
    let dead = |prefix: &str| {
        std::fs::read_to_string(dir.path().join(format!("{prefix}dead.jsonl")))
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert!(dead("f_") > 10, "the fleet has malformed readings");
    assert_eq!(dead("k_"), dead("f_"));
}

/// Offsets are committed only for events whose windows are emitted: a job
/// killed (no chance to flush or commit) and started again loses no window.
/// Windows emitted before the kill may come again after it (at-least-once).
#[test]
fn a_killed_windowed_job_restarted_loses_no_window() {
    let broker = Broker::start();
    broker.create_topic("killed", 2);
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(dir.path(), "windows.asaql", WINDOW_JOB);
    let messages = sample_with_closers();
    let (first, second) = messages.split_at(160);
    let input = |extra: &str| {
        format!(
            // A static member: the restarted job takes the killed one's
            // place at once (noida never evicts a member that died).
            "readings=kafka://{}/killed?group_id=k&session.timeout.ms=6000&group.instance.id=killed-job{extra}",
            broker.address()
        )
    };
    let before = dir.path().join("before.csv");
    let mut live = run_live(&job, &input(""), &before);
    wait_for(Duration::from_secs(60), "the partitions", || {
        live.stderr().contains("assigned [(")
    });
    // In two bursts: the first burst's batch can be committed once the
    // second has closed its windows.
    broker.produce_to("killed", &first[..100], Some(2));
    std::thread::sleep(Duration::from_millis(1500));
    broker.produce_to("killed", &first[100..], Some(2));
    // Some windows are written (and their offsets committed) ...
    wait_for(Duration::from_secs(60), "the first windows", || {
        rows(&before).len() >= 10
    });
    std::thread::sleep(Duration::from_millis(1500));
    // ... then the job dies without a word.
    live.child.kill().unwrap();
    live.child.wait().unwrap();
    broker.produce_to("killed", second, Some(2));
    let after = run_to_end(&job, &input("&until=end"), &dir.path().join("after.csv"));
    let expected = run_to_end(
        &job,
        &format!(
            "readings=kafka://{}/killed?group_id=all&until=end&session.timeout.ms=6000",
            broker.address()
        ),
        &dir.path().join("everything.csv"),
    );
    let got: BTreeSet<String> = rows(&before)
        .into_iter()
        .chain(after.iter().cloned())
        .collect();
    assert!(expected.len() > 40);
    let missing: Vec<&String> = expected.iter().filter(|r| !got.contains(*r)).collect();
    assert!(
        missing.is_empty(),
        "windows lost across the kill: {missing:?}"
    );
    assert!(
        after.len() < expected.len(),
        "the restarted job resumed from committed offsets, not from the start"
    );
}

/// A job whose Kafka input and output log in with SASL (docs/kafka.md),
/// the password from the environment.
fn secured_job(broker: &Broker, mechanism: &str, protocol: &str) -> String {
    let address = broker.address();
    let security = if protocol == "ssl" {
        "security_protocol = 'ssl'".to_string()
    } else {
        format!(
            "security_protocol = '{protocol}', sasl_mechanism = '{mechanism}', sasl_username = 'iot', sasl_password = '${{IOTQL_TEST_SECRET}}'"
        )
    };
    format!(
        "CREATE INPUT readings WITH (connector = 'kafka', brokers = '{address}', topic = 'secured',
    start = 'earliest', until = 'end', {security});
CREATE OUTPUT out WITH (connector = 'kafka', brokers = '{address}', topic = 'copied', {security});
{COPY_JOB}"
    )
}

const SECRET: &str = "kafka-test-secret-5f0c2e";

fn run_secured(job: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_iotql"))
        .args(["run", job, "-q", "--late-arrival", "3650d"])
        .current_dir(repo())
        .env("IOTQL_TEST_SECRET", SECRET)
        .env("IOTQL_LOG", "debug")
        .output()
        .unwrap()
}

/// SASL/PLAIN through noida (which takes any PLAIN login: the password is
/// sent, not checked), a SCRAM login it refuses, and TLS to its plaintext
/// port: a refusal stops the job (exit 3) with the broker's reason and no
/// secret. Neither test broker checks a password (see docs/kafka.md); the
/// option mapping is unit-tested in connectors. TLS for real: the next test.
#[test]
fn sasl_logins_reach_the_broker_and_a_refused_login_or_handshake_stops_the_job() {
    let broker = Broker::start();
    if broker.kind != "noida" {
        eprintln!("SASL is tested with noida only (Tansu here has no SASL/PLAIN)");
        return;
    }
    broker.create_topic("secured", 1);
    broker.produce("secured", &sample_messages());
    let dir = tempfile::tempdir().unwrap();

    let job = write_job(
        dir.path(),
        "plain.asaql",
        &secured_job(&broker, "PLAIN", "sasl_plaintext"),
    );
    let out = run_secured(&job);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains(SECRET), "the secret leaked:\n{err}");
    let copied = dir.path().join("copied.csv");
    let via_kafka = run_to_end(
        &write_job(dir.path(), "copy.asaql", COPY_JOB),
        &format!(
            "readings=kafka://{}/copied?start=earliest&until=end",
            broker.address()
        ),
        &copied,
    );
    let from_file = run_to_end(
        &write_job(dir.path(), "copy2.asaql", COPY_JOB),
        "readings=csv:queries/data/readings.csv",
        &dir.path().join("file.csv"),
    );
    assert_eq!(via_kafka.len(), sample_messages().len());
    assert_eq!(via_kafka, from_file);

    for (mechanism, protocol, reason) in [
        (
            "SCRAM-SHA-256",
            "sasl_plaintext",
            "SASL authentication error",
        ),
        ("PLAIN", "ssl", "SSL handshake failed"),
    ] {
        let job = write_job(
            dir.path(),
            "refused.asaql",
            &secured_job(&broker, mechanism, protocol),
        );
        let out = run_secured(&job);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(3), "{err}");
        assert!(
            err.contains("refused the connection") && err.contains(reason),
            "{err}"
        );
        assert!(!err.contains(SECRET), "the secret leaked:\n{err}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains(SECRET));
    }
}

/// An authority of its own (not the broker's), for a refused handshake.
fn other_authority(dir: &Path) -> PathBuf {
    let (key, cert) = (dir.join("other.key"), dir.join("other.crt"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=iotql test CA"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cert
}

/// A broker that checks SASL/PLAIN passwords (Tansu behind
/// scripts/sasl-proxy: neither test broker checks one itself): a job whose
/// password comes from the environment reads and writes; with a wrong one
/// it stops (exit 3) saying why, and neither run prints the password.
#[test]
fn sasl_passwords_from_the_environment_are_checked_and_never_printed() {
    let password = "pa55-from-env";
    let broker = Broker::start_sasl("edge", password);
    broker.create_topic("secured", 1);
    broker.produce("secured", &sample_messages());
    let dir = tempfile::tempdir().unwrap();
    let address = broker.address();
    let sasl = "security_protocol = 'sasl_plaintext', sasl_username = 'edge', sasl_password = '${KAFKA_PASSWORD}'";
    let job = format!(
        "CREATE INPUT readings WITH (connector = 'kafka', brokers = '{address}', topic = 'secured',
    start = 'earliest', until = 'end', {sasl});
CREATE OUTPUT out WITH (connector = 'csv', path = 'copied.csv');
{COPY_JOB}"
    );
    let copy = write_job(dir.path(), "sasl.asaql", &job);
    let run = |secret: &str| {
        Command::new(env!("CARGO_BIN_EXE_iotql"))
            .args([
                "run",
                &copy,
                "--late-arrival",
                "3650d",
                "--checkpoint-interval",
                "off",
            ])
            .env("KAFKA_PASSWORD", secret)
            .env("IOTQL_LOG", "debug")
            .output()
            .unwrap()
    };
    let out = run(password);
    let err = ok(&out);
    assert!(!err.contains(password), "the password was printed:\n{err}");
    let from_file = run_to_end(
        &write_job(dir.path(), "file.asaql", COPY_JOB),
        "readings=csv:queries/data/readings.csv",
        &dir.path().join("file.csv"),
    );
    let copied = rows(&dir.path().join("copied.csv"));
    assert_eq!(copied.len(), sample_messages().len());
    assert_eq!(copied, from_file);

    let out = run("not-the-password");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("Authentication failed: Invalid username or password")
            && err.contains("check security_protocol, the SASL credentials"),
        "{err}"
    );
    assert!(
        !err.contains("not-the-password"),
        "the password was printed:\n{err}"
    );
}

/// TLS for real: a broker reached only through a TLS listener (Tansu behind
/// scripts/tls-proxy, with a certificate for 127.0.0.1 signed by an
/// authority made for the test). A job with `ssl_ca` naming that authority
/// reads and writes over TLS and gives the rows of the job over the file;
/// with another authority of the same name the handshake is refused and the
/// job stops (exit 3) saying so.
#[test]
fn a_tls_broker_is_reached_with_its_authority_and_refused_with_another() {
    let broker = Broker::start_tls();
    let ca = broker.tls_ca.clone().unwrap();
    broker.create_topic("secured", 1);
    broker.produce("secured", &sample_messages());
    let dir = tempfile::tempdir().unwrap();
    let job = |ca: &Path| {
        let tls = format!("security_protocol = 'ssl', ssl_ca = '{}'", ca.display());
        let address = broker.address();
        format!(
            "CREATE INPUT readings WITH (connector = 'kafka', brokers = '{address}', topic = 'secured',
    start = 'earliest', until = 'end', {tls});
CREATE OUTPUT out WITH (connector = 'kafka', brokers = '{address}', topic = 'copied', {tls});
{COPY_JOB}"
        )
    };
    let copy = write_job(dir.path(), "tls.asaql", &job(&ca));
    ok(&iotql(&["run", &copy, "-q", "--late-arrival", "3650d"]));
    let via_tls = run_to_end(
        &write_job(dir.path(), "read.asaql", COPY_JOB),
        &format!(
            "readings=kafka://{}/copied?start=earliest&until=end&security_protocol=ssl&ssl_ca={}",
            broker.address(),
            ca.display()
        ),
        &dir.path().join("copied.csv"),
    );
    let from_file = run_to_end(
        &write_job(dir.path(), "file.asaql", COPY_JOB),
        "readings=csv:queries/data/readings.csv",
        &dir.path().join("file.csv"),
    );
    assert_eq!(via_tls.len(), sample_messages().len());
    assert_eq!(via_tls, from_file);

    let other = other_authority(dir.path());
    let refused = write_job(dir.path(), "refused.asaql", &job(&other));
    let out = iotql(&["run", &refused, "-q", "--late-arrival", "3650d"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("refused the connection") && err.contains("certificate verify failed"),
        "{err}"
    );
}
