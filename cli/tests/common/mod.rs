//! Helpers shared by the CLI's end-to-end tests: for those that run `iotql`
//! against a Kafka-protocol broker (`kafka.rs`, `kafka_exactly_once.rs`), a
//! broker of the test's own (started and stopped by `scripts/kafka-up` /
//! `kafka-down`, over TLS if asked), producing to it, running the binary and
//! waiting for a condition; for the crash tests, their settings from the
//! environment (`checkpoints.rs`, `kafka_exactly_once.rs`); for the tests of
//! pages, a headless Chromium (`browser`).
#![allow(dead_code, clippy::unwrap_used)]

pub mod browser;
pub mod http;
pub mod outputs;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A setting of a test from the environment, for its long version
/// (`bench/kill.sh` runs the kill tests at 10M events with 20 kills).
pub fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs a job until it ends, killed with SIGKILL `planned` times: each run
/// is started from the command `start` makes; once `progress` has grown by
/// `step` since the run started (a checkpoint taken, alerts delivered),
/// after a random wait below `spread_ms` (repeatable from `seed`), it is
/// killed and started again. Fails when a run makes no progress in 2
/// minutes, or ends before the planned kills are done (the kills would
/// not spread over the run: give it more events or a shorter spread).
/// Returns the last run's stderr, which must end in success.
pub fn killed_until_done(
    planned: usize,
    spread_ms: u64,
    mut seed: u64,
    mut start: impl FnMut() -> Command,
    mut progress: impl FnMut() -> usize,
    step: usize,
) -> String {
    for kill in 0..=planned {
        let before = progress();
        let mut run = Running::spawn(start());
        if kill == planned {
            let status = run.child.wait().unwrap();
            // Let the stderr reader take the last lines.
            std::thread::sleep(Duration::from_millis(200));
            assert!(status.success(), "the last run failed:\n{}", run.stderr());
            return run.stderr();
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while progress() < before + step && run.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "no progress:\n{}", run.stderr());
            std::thread::sleep(Duration::from_millis(2));
        }
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        std::thread::sleep(Duration::from_millis((seed >> 33) % spread_ms.max(1)));
        assert!(
            run.child.try_wait().unwrap().is_none(),
            "the job ended after {kill} of {planned} kills: give it more events or a shorter spread\n{}",
            run.stderr()
        );
        run.child.kill().unwrap();
        run.child.wait().unwrap();
    }
    unreachable!("the loop returns at its last run")
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A broker of this test, stopped (and its data removed) when dropped.
pub struct Broker {
    pub kind: String,
    pub port: u16,
    /// Reached over TLS only: the authority that signed its certificate.
    pub tls_ca: Option<PathBuf>,
    /// Reached with a SASL/PLAIN login only: the user and password.
    pub sasl: Option<(String, String)>,
}

impl Broker {
    pub fn start() -> Broker {
        let kind = std::env::var("IOTQL_KAFKA_BROKER").unwrap_or_else(|_| "noida".into());
        let broker = Broker {
            kind,
            port: free_port(),
            tls_ca: None,
            sasl: None,
        };
        broker.up(false);
        broker
    }

    /// A Tansu broker reached over TLS only (`scripts/kafka-up tansu
    /// --tls`: behind a TLS-terminating proxy, with an authority of its own).
    pub fn start_tls() -> Broker {
        let mut broker = Broker {
            kind: "tansu".into(),
            port: free_port(),
            tls_ca: None,
            sasl: None,
        };
        broker.script(&["kafka-up", "tansu", "--tls"]);
        let state = std::env::var("IOTQL_KAFKA_STATE").map_or_else(
            |_| {
                let cache = std::env::var("XDG_CACHE_HOME").map_or_else(
                    |_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"),
                    PathBuf::from,
                );
                cache.join("iotql-kafka")
            },
            PathBuf::from,
        );
        let ca = state.join(format!("run-{}", broker.port)).join("ca.crt");
        assert!(ca.exists(), "no {}", ca.display());
        broker.tls_ca = Some(ca);
        broker
    }

    /// A Tansu broker that takes SASL/PLAIN logins of `user` only
    /// (`scripts/kafka-up tansu --sasl`: behind a proxy that checks them).
    pub fn start_sasl(user: &str, password: &str) -> Broker {
        let broker = Broker {
            kind: "tansu".into(),
            port: free_port(),
            tls_ca: None,
            sasl: Some((user.into(), password.into())),
        };
        let users = std::env::temp_dir().join(format!("iotql-kafka-users-{}", broker.port));
        std::fs::write(&users, format!("{user}:{password}\n")).unwrap();
        broker.script(&["kafka-up", "tansu", "--sasl", users.to_str().unwrap()]);
        broker
    }

    /// A client configuration for this broker (TLS or SASL when it takes
    /// only that).
    pub fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.address());
        if let Some(ca) = &self.tls_ca {
            config
                .set("security.protocol", "ssl")
                .set("ssl.ca.location", ca.display().to_string());
        }
        if let Some((user, password)) = &self.sasl {
            config
                .set("security.protocol", "sasl_plaintext")
                .set("sasl.mechanisms", "PLAIN")
                .set("sasl.username", user)
                .set("sasl.password", password);
        }
        config
    }

    pub fn script(&self, args: &[&str]) {
        let name = args[0];
        let out = Command::new("bash")
            .args(args.iter().map(|a| {
                if *a == name {
                    repo().join("scripts").join(a).display().to_string()
                } else {
                    a.to_string()
                }
            }))
            .env("IOTQL_KAFKA_PORT", self.port.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn up(&self, resume: bool) {
        let mut args = vec!["kafka-up", self.kind.as_str()];
        if resume {
            args.push("--resume");
        }
        self.script(&args);
    }

    /// Stops the broker, keeping its data for [`Broker::up`] with `resume`.
    pub fn down_keeping_data(&self) {
        self.script(&["kafka-down", "--keep"]);
    }

    /// Whether the broker keeps its topics and offsets over a restart
    /// (noida does; Tansu here runs on memory storage, so a restart is a
    /// new, empty broker).
    pub fn keeps_data(&self) -> bool {
        self.kind == "noida"
    }

    /// Whether `read_committed` consumers see only committed transactions'
    /// rows. Tansu shows them the rows of a transaction that was never
    /// committed (its producer died, and a new one with its transactional
    /// id took over): `kafka_exactly_once a_crash_between...` fails there.
    pub fn isolates_transactions(&self) -> bool {
        self.kind != "tansu"
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.client().create().unwrap();
        let results = futures_executor::block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .unwrap();
        for r in results {
            r.unwrap();
        }
    }

    /// Produces `(key, payload)` messages and waits for their acknowledgement.
    pub fn produce(&self, topic: &str, messages: &[(Option<String>, Vec<u8>)]) {
        self.produce_to(topic, messages, None);
    }

    /// Produces messages; with `partitions`, each key goes to the partition
    /// of its rank among the keys (so that every partition gets some).
    pub fn produce_to(
        &self,
        topic: &str,
        messages: &[(Option<String>, Vec<u8>)],
        partitions: Option<i32>,
    ) {
        let keys: Vec<&String> = messages
            .iter()
            .filter_map(|(k, _)| k.as_ref())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let producer: BaseProducer = self
            .client()
            .set("message.max.bytes", "2000000")
            // A request retried while the next is in flight would land
            // after it: one at a time keeps each partition in the order
            // sent, which the tests' windows rely on (a device's readings
            // out of order are late).
            .set("max.in.flight.requests.per.connection", "1")
            .create()
            .unwrap();
        for (key, payload) in messages {
            let mut record = BaseRecord::<str, [u8]>::to(topic).payload(payload.as_slice());
            if let Some(k) = key {
                record = record.key(k.as_str());
                if let (Some(n), Some(rank)) = (partitions, keys.iter().position(|x| *x == k)) {
                    record = record.partition(rank as i32 % n);
                }
            }
            // A full queue (millions of messages, the long tests) waits
            // for acknowledgements to make room.
            while let Err((e, back)) = producer.send(record) {
                assert_eq!(
                    e.rdkafka_error_code(),
                    Some(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    "{e}"
                );
                producer.poll(Duration::from_millis(100));
                record = back;
            }
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(60)).unwrap();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("scripts/kafka-down"))
            .env("IOTQL_KAFKA_PORT", self.port.to_string())
            .output();
    }
}

pub fn iotql(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_iotql"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap()
}

pub fn ok(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    err
}

/// The lines of a file after its header, sorted.
pub fn rows(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut rows: Vec<String> = text.lines().skip(1).map(str::to_string).collect();
    rows.sort();
    rows
}

/// The bundled sample readings as JSON messages keyed by device.
pub fn sample_messages() -> Vec<(Option<String>, Vec<u8>)> {
    let text = std::fs::read_to_string(repo().join("queries/data/readings.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            let fields: Vec<String> = header
                .iter()
                .zip(&cells)
                .map(|(name, value)| match value.parse::<f64>() {
                    Ok(_) => format!("\"{name}\":{value}"),
                    Err(_) => format!("\"{name}\":\"{value}\""),
                })
                .collect();
            (
                Some(cells[0].to_string()),
                format!("{{{}}}", fields.join(",")).into_bytes(),
            )
        })
        .collect()
}

/// A running `iotql run`, its stderr collected.
pub struct Running {
    pub child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    /// `iotql ARGS` from the repository, logging at info.
    pub fn start(args: &[&str]) -> Running {
        let mut command = Command::new(env!("CARGO_BIN_EXE_iotql"));
        command
            .args(args)
            .current_dir(repo())
            .env("IOTQL_LOG", "info");
        Running::spawn(command)
    }

    /// Starts `command`, its stderr collected as it comes (a pipe left
    /// unread would stop a long run that logs).
    pub fn spawn(mut command: Command) -> Running {
        let mut child = command
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let collected = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = collected.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Running { child, stderr }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The address of the run's HTTP server (`--http`), as it says it:
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn served_at(&self) -> String {
        let mut base = String::new();
        wait_for(Duration::from_secs(60), "the HTTP server's address", || {
            base = self
                .stderr()
                .lines()
                .find_map(|l| l.strip_prefix("serving the API and dashboard on "))
                .and_then(|rest| rest.split_whitespace().next())
                .map(|a| a.trim_end_matches('/').to_string())
                .unwrap_or_default();
            !base.is_empty()
        });
        base
    }

    /// Ctrl+C, and the exit status.
    pub fn interrupt(mut self) -> String {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        // Let the stderr reader take the last lines.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(status.code(), Some(0), "{}", self.stderr());
        self.stderr()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `done` holds, or fails after `limit` with `what`.
pub fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
