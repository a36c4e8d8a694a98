#![allow(clippy::unwrap_used)]
//! The alert outbox with the real binary and a real HTTP receiver (a small
//! server on a std `TcpListener`, in the test, that records each request's
//! body and `Idempotency-Key`; "down" is nothing listening on its port):
//!
//! - a receiver down for `IOTQL_OUTAGE_SECS` (20 s; 600 for the long
//!   version) while a job emits alerts from a file input (a FIFO the test
//!   writes to, paced): the job goes on, and after the outage every alert
//!   is delivered, none dead-lettered, the outage logged once;
//! - `iotql run` killed with SIGKILL at random moments and restarted: every
//!   alert of an uninterrupted run delivered at least once, and, one per
//!   idempotency key, exactly those alerts;
//! - a stop (SIGTERM) while the receiver is down does not wait for it, and
//!   the next run, once it is back, delivers the alerts the stop held.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::killed_until_done;

/// Devices in the readings; each tick is one second of event time, one
/// reading per device.
const DEVICES: u64 = 5;

/// The job: an alert per device and 5-second window whose hottest reading
/// is above 33 °C, to the webhook; the same rows to a CSV file, to see
/// the job's progress.
fn job(url: &str, options: &str) -> String {
    format!(
        "CREATE INPUT readings WITH (connector = 'csv', path = 'readings.csv');
CREATE OUTPUT alerts WITH (connector = 'webhook', url = '{url}', retry_delay = '20ms'{options});
CREATE OUTPUT seen WITH (connector = 'csv', path = 'out/seen.csv');
SELECT device_id, System.Timestamp() AS window_end, COUNT(*) AS n, MAX(temperature_c) AS t_max
INTO alerts FROM readings TIMESTAMP BY ts
GROUP BY device_id, TumblingWindow(second, 5) HAVING MAX(temperature_c) > 33;
SELECT device_id, System.Timestamp() AS window_end
INTO seen FROM readings TIMESTAMP BY ts
GROUP BY device_id, TumblingWindow(second, 5) HAVING MAX(temperature_c) > 33;
"
    )
}

/// The CSV header of the readings.
const HEADER: &str = "device_id,ts,temperature_c\n";

/// The readings of ticks `ticks` (20 to 35 °C, from a fixed sequence).
fn readings(ticks: std::ops::Range<u64>) -> String {
    let mut csv = String::new();
    for tick in ticks {
        for d in 0..DEVICES {
            let x = (tick * DEVICES + d)
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let t = 20.0 + (x >> 40) as f64 / (1u64 << 24) as f64 * 15.0;
            csv.push_str(&format!(
                "dev-{d},2026-01-01T{:02}:{:02}:{:02}Z,{t:.2}\n",
                tick / 3600,
                (tick / 60) % 60,
                tick % 60
            ));
        }
    }
    csv
}

/// A request the receiver took: its body and `Idempotency-Key` header.
#[derive(Debug, Clone)]
struct Request {
    body: String,
    key: String,
}

/// An HTTP receiver on a port of its own: up (answers 200 to every POST,
/// after `latency`) or down (nothing listens: connection refused).
struct Receiver {
    port: u16,
    latency: Duration,
    taken: Arc<Mutex<Vec<Request>>>,
    running: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

/// The ports of the receivers that are down for a while: below the
/// kernel's range of ephemeral ports, so that no other program's socket
/// is given one meanwhile (alerts would reach it).
const OUTAGE_PORT: u16 = 18471;
const STOP_PORT: u16 = 18472;

impl Receiver {
    /// A receiver that is down, on `port` or else on a port free now.
    fn down(port: Option<u16>, latency: Duration) -> Receiver {
        let port = port.unwrap_or_else(|| {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        });
        Receiver {
            port,
            latency,
            taken: Arc::default(),
            running: None,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/alerts", self.port)
    }

    /// Starts listening on the port.
    fn up(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .unwrap_or_else(|e| panic!("port {} for the receiver: {e}", self.port));
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (taken, latency, stopping) = (self.taken.clone(), self.latency, stop.clone());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, latency, &taken),
                    // Polls for the stop between connections.
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        self.running = Some((stop, thread));
    }

    /// Stops listening: the port refuses connections.
    fn stop(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            stop.store(true, Ordering::SeqCst);
            thread.join().unwrap();
        }
    }

    fn taken(&self) -> Vec<Request> {
        self.taken.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads one request (keep-alive is not offered), records it, answers 200.
fn serve(stream: TcpStream, latency: Duration, taken: &Mutex<Vec<Request>>) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(&stream);
    let (mut length, mut key) = (0, String::new());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap(),
                "idempotency-key" => key = value.trim().to_string(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    std::thread::sleep(latency);
    taken.lock().unwrap().push(Request {
        body: String::from_utf8(body).unwrap(),
        key,
    });
    let _ =
        (&stream).write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

fn iotql(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_iotql"));
    c.arg("run")
        .arg("job.asaql")
        .args(args)
        .current_dir(dir)
        .env_remove("IOTQL_LOG")
        .env("NO_COLOR", "1");
    c
}

fn spawn(dir: &Path, args: &[&str]) -> Child {
    iotql(dir, args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Waits until `done` holds, or fails saying `what`.
fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The alerts taken, one per idempotency key: key -> body without the key
/// field; checks that the header and the body's field agree.
fn by_key(requests: &[Request]) -> BTreeMap<String, String> {
    let mut alerts = BTreeMap::new();
    for r in requests {
        let mut body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let key = body
            .as_object_mut()
            .unwrap()
            .shift_remove("idempotency_key")
            .unwrap();
        assert_eq!(key.as_str(), Some(r.key.as_str()), "header and body agree");
        let body = body.to_string();
        let before = alerts.insert(r.key.clone(), body.clone());
        assert!(
            before.is_none_or(|b| b == body),
            "one key, two alerts: {body}"
        );
    }
    alerts
}

/// Checks that `got` holds the alerts of `want`, no more, no fewer, saying
/// how many differ (and a few of them) rather than printing them all.
fn same_alerts(got: &BTreeMap<String, String>, want: &BTreeMap<String, String>, log: &str) {
    let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let few = |keys: &[&String], of: &BTreeMap<String, String>| -> Vec<String> {
        keys.iter().take(3).map(|k| of[*k].clone()).collect()
    };
    let tail = &log[log.floor_char_boundary(log.len().saturating_sub(3000))..];
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} of {} alerts missing (e.g. {:?}); {} unexpected (e.g. {:?}); the run said: {tail}",
        missing.len(),
        want.len(),
        few(&missing, want),
        extra.len(),
        few(&extra, got)
    );
    assert_eq!(got, want, "the same keys, other bodies");
}

/// The alerts an uninterrupted run without checkpoints delivers for
/// `readings`: key -> body.
fn reference(readings: &str, options: &str) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::down(None, Duration::ZERO);
    receiver.up();
    std::fs::write(dir.path().join("readings.csv"), readings).unwrap();
    std::fs::write(dir.path().join("job.asaql"), job(&receiver.url(), options)).unwrap();
    let out = iotql(dir.path(), &["-q", "--checkpoint-interval", "off"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let taken = receiver.taken();
    let alerts = by_key(&taken);
    assert_eq!(alerts.len(), taken.len(), "each once");
    assert!(alerts.len() > 20, "too few alerts to prove much");
    alerts
}

/// The dead letters of the job in `dir`.
fn dead_letters(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("job.deadletter.jsonl")).unwrap_or_default()
}

/// Lines of the `seen` output so far.
fn seen(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("out/seen.csv"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Ticks written to a FIFO at once, first: a CSV input reads its first
/// 1,000 records before it starts (to infer the columns' types).
const BURST: u64 = 205;

/// A FIFO at `dir/readings.csv` and the thread that writes the readings to
/// it: `BURST` ticks, then up to `ticks` ticks one every `every`, then
/// closes it once `go_on` is raised (so that the job's input ends);
/// returns what it wrote.
fn fifo_writer(
    dir: &Path,
    ticks: u64,
    every: Duration,
    go_on: Arc<AtomicBool>,
) -> JoinHandle<String> {
    let path = dir.join("readings.csv");
    let made = Command::new("mkfifo").arg(&path).status().unwrap();
    assert!(made.success(), "mkfifo");
    std::thread::spawn(move || {
        // Blocks until the job opens the input.
        let mut fifo = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let mut written = format!("{HEADER}{}", readings(0..BURST));
        fifo.write_all(written.as_bytes()).unwrap();
        for tick in BURST..ticks {
            let lines = readings(tick..tick + 1);
            // The job may have stopped reading (a stop): keep what it took.
            if fifo.write_all(lines.as_bytes()).is_err() {
                break;
            }
            written.push_str(&lines);
            std::thread::sleep(every);
        }
        while !go_on.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        written
    })
}

/// The size of the largest checkpoint file in the job's state folder.
fn largest_checkpoint(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("job.state"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("chk-"))
                .filter_map(|e| e.metadata().ok().map(|m| m.len()))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// How long the receiver is down in the outage test.
fn outage() -> Duration {
    let secs = std::env::var("IOTQL_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    Duration::from_secs(secs)
}

#[test]
fn a_receiver_down_for_a_long_while_loses_no_alert() {
    let outage = outage();
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::down(Some(OUTAGE_PORT), Duration::ZERO);
    // Retries stay frequent (at most 2 s apart), and the end of the run
    // could wait, but should not need to.
    let options = format!(
        ", max_retry_delay = '2s', drain_timeout = '{}s'",
        outage.as_secs() + 120
    );
    std::fs::write(dir.path().join("job.asaql"), job(&receiver.url(), &options)).unwrap();
    // Twenty ticks a second, through the outage and a little after it.
    let every = Duration::from_millis(50);
    let ticks = BURST + (outage + Duration::from_secs(3)).as_millis() as u64 / 50;
    let close = Arc::new(AtomicBool::new(false));
    let writer = fifo_writer(dir.path(), ticks, every, close.clone());
    let child = spawn(dir.path(), &["--batch-size", "1"]);

    // The job goes on while the receiver is down: its alerts are seen.
    let started = Instant::now();
    let mut during = 0;
    until("alerts during the outage", outage * 2, || {
        during = seen(dir.path());
        during > 10
    });
    // Through the outage, the largest checkpoint (the outbox grows in it).
    let mut largest = 0;
    while started.elapsed() < outage {
        largest = largest.max(largest_checkpoint(dir.path()));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(receiver.taken().is_empty());
    let held = seen(dir.path());
    assert!(held > during, "the job emitted alerts all along the outage");
    receiver.up();
    close.store(true, Ordering::SeqCst);
    let written = writer.join().unwrap();
    let out = child.wait_with_output().unwrap();
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");

    let expected = reference(&written, &options);
    let taken = receiver.taken();
    same_alerts(&by_key(&taken), &expected, &log);
    assert_eq!(dead_letters(dir.path()), "", "none dead-lettered");
    assert_eq!(log.matches("is unreachable").count(), 1, "{log}");
    assert_eq!(log.matches("is reachable again").count(), 1, "{log}");
    assert!(log.contains("outages: 1"), "{log}");
    assert!(!log.contains("failed:"), "{log}");
    eprintln!(
        "outage of {outage:?}: {} alerts, {held} emitted while down; {} requests; largest checkpoint {largest} bytes",
        expected.len(),
        taken.len()
    );
}

#[test]
fn runs_killed_at_random_moments_deliver_every_alert_at_least_once_with_the_same_keys() {
    let data = format!("{HEADER}{}", readings(0..4_000));
    let expected = reference(&data, "");
    let dir = tempfile::tempdir().unwrap();
    // A receiver slow enough (2 ms a request) that kills land while the
    // outbox holds alerts.
    let mut receiver = Receiver::down(None, Duration::from_millis(2));
    receiver.up();
    std::fs::write(dir.path().join("readings.csv"), &data).unwrap();
    std::fs::write(dir.path().join("job.asaql"), job(&receiver.url(), "")).unwrap();
    let args = ["-q", "--checkpoint-interval", "50ms", "--batch-size", "50"];
    // Once alerts flow (during the job, its checkpoints, the outbox's
    // deliveries), at a random moment.
    let kills = 8;
    let last = killed_until_done(
        kills,
        300,
        7,
        || iotql(dir.path(), &args),
        || receiver.taken().len(),
        21,
    );
    let taken = receiver.taken();
    same_alerts(&by_key(&taken), &expected, &last);
    assert_eq!(dead_letters(dir.path()), "");
    eprintln!(
        "{kills} kills: {} alerts, {} requests ({} repeats)",
        expected.len(),
        taken.len(),
        taken.len() - expected.len()
    );
}

#[test]
fn a_stop_while_the_receiver_is_down_leaves_the_alerts_to_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::down(Some(STOP_PORT), Duration::ZERO);
    // A stop that waited for the receiver would wait an hour.
    let options = ", drain_timeout = '1h'";
    std::fs::write(dir.path().join("job.asaql"), job(&receiver.url(), options)).unwrap();
    let go_on = Arc::new(AtomicBool::new(false));
    let writer = fifo_writer(dir.path(), 100_000, Duration::from_millis(5), go_on.clone());
    let child = spawn(dir.path(), &["--batch-size", "1"]);
    until("alerts held", Duration::from_secs(60), || {
        seen(dir.path()) > 20
    });
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id().to_string();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    let Ok(out) = rx.recv_timeout(Duration::from_secs(60)) else {
        Command::new("kill").args(["-KILL", &pid]).status().unwrap();
        panic!("the stop waits for the receiver");
    };
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stopped at checkpoint"),
        "{}",
        stderr(&out)
    );
    assert_eq!(dead_letters(dir.path()), "", "nothing given up at the stop");
    go_on.store(true, Ordering::SeqCst);
    let written = writer.join().unwrap();

    // The next run reads the same readings from a file (a FIFO cannot be
    // read again from the checkpoint's position), the receiver back.
    let input = dir.path().join("readings.csv");
    std::fs::remove_file(&input).unwrap();
    std::fs::write(&input, &written).unwrap();
    receiver.up();
    let out = iotql(dir.path(), &[]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("resumed from checkpoint"),
        "{}",
        stderr(&out)
    );
    same_alerts(
        &by_key(&receiver.taken()),
        &reference(&written, options),
        &stderr(&out),
    );
    assert_eq!(dead_letters(dir.path()), "");
}
