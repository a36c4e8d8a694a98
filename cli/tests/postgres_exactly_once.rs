#![allow(clippy::unwrap_used)]
//! PostgreSQL outputs of `iotql run` against a real server (scripts/
//! postgres-up on a port of each test's own): killed with SIGKILL at random
//! moments and restarted, a job's keyed and unkeyed tables end up row for
//! row those of an uninterrupted run; a server stopped mid-run and started
//! again on its cluster loses and doubles no row, and the outage is logged
//! once and counted once; a resume that the ledger cannot account for is
//! refused and changes nothing; TLS with `sslmode = 'verify-full'` takes
//! the server's authority and refuses another.

#[path = "../../connectors/tests/support/mod.rs"]
mod support;
#[path = "../../connectors/tests/support/postgres.rs"]
#[allow(dead_code)]
mod support_postgres;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support_postgres::Postgres;

/// Events of the kill test: 20 devices, one reading a second each.
const EVENTS: usize = 100_000;

/// Per-device 10-second windows into an unkeyed table, a keyed one and a
/// CSV file. `{url}` is the server, `{prefix}` the tables' prefix,
/// `{path}` the input.
const JOB: &str = "CREATE INPUT readings WITH (connector = 'csv', path = '{path}');
CREATE OUTPUT plain WITH (connector = 'postgres', url = '{url}', table = '{prefix}plain', batch_size = '50');
CREATE OUTPUT keyed WITH (connector = 'postgres', url = '{url}', table = '{prefix}keyed', key = 'device_id, window_end', batch_size = '50');
CREATE OUTPUT stats WITH (connector = 'csv', path = 'out/stats.csv');
SELECT device_id, System.Timestamp() AS window_end, COUNT(*) AS n, ROUND(AVG(temperature_c), 3) AS t
INTO plain FROM readings TIMESTAMP BY ts GROUP BY device_id, TumblingWindow(second, 10);
SELECT device_id, System.Timestamp() AS window_end, COUNT(*) AS n, ROUND(AVG(temperature_c), 3) AS t
INTO keyed FROM readings TIMESTAMP BY ts GROUP BY device_id, TumblingWindow(second, 10);
SELECT device_id, System.Timestamp() AS window_end, COUNT(*) AS n, ROUND(AVG(temperature_c), 3) AS t
INTO stats FROM readings TIMESTAMP BY ts GROUP BY device_id, TumblingWindow(second, 10);
";

/// `events` readings as CSV lines (the header first): 20 devices, one
/// reading a second each, temperatures spread over 20-35 °C.
fn readings(events: usize) -> Vec<String> {
    let header = "device_id,ts,temperature_c".to_string();
    let lines = (0..events).map(|i| {
        let time = chrono::DateTime::from_timestamp(1_767_225_600 + (i / 20) as i64, 0).unwrap();
        let t = 20.0 + ((i * 7919) % 1500) as f64 / 100.0;
        format!(
            "dev-{},{},{t:.2}",
            i % 20,
            time.format("%Y-%m-%dT%H:%M:%SZ")
        )
    });
    std::iter::once(header).chain(lines).collect()
}

/// A job folder: the job writing to `server`'s tables named with
/// `prefix`, reading `readings.csv` (written, with `events` readings) or,
/// with `stdin`, its standard input.
fn job_dir(server: &Postgres, prefix: &str, events: usize, stdin: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let path = if stdin {
        "-"
    } else {
        std::fs::write(
            dir.path().join("readings.csv"),
            readings(events).join("\n") + "\n",
        )
        .unwrap();
        "readings.csv"
    };
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", server.port);
    let job = JOB
        .replace("{url}", &url)
        .replace("{prefix}", prefix)
        .replace("{path}", path);
    std::fs::write(dir.path().join("job.asaql"), job).unwrap();
    dir
}

fn iotql(dir: &Path, args: &[&str]) -> Command {
    iotql_job(dir, "job.asaql", args)
}

fn iotql_job(dir: &Path, job: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_iotql"));
    c.arg("run")
        .arg(job)
        .args(args)
        .current_dir(dir)
        .env("IOTQL_LOG", "warn,iotql_connectors::postgres=info");
    c
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An uninterrupted run of the job into tables `ref_plain` and `ref_keyed`;
/// its CSV output.
fn reference(server: &Postgres) -> Vec<u8> {
    let dir = job_dir(server, "ref_", EVENTS, false);
    let out = iotql(
        dir.path(),
        &["-q", "--checkpoint-interval", "off", "--batch-size", "50"],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = std::fs::read(dir.path().join("out/stats.csv")).unwrap();
    let lines = csv.iter().filter(|&&b| b == b'\n').count() as i64;
    assert!(lines > 1000, "{lines} rows: the job emits too little");
    // The tables hold the rows of the CSV file (less its header).
    for table in ["ref_plain", "ref_keyed"] {
        assert_eq!(rows(server, table).len() as i64, lines - 1, "{table}");
    }
    csv
}

/// The rows of `table` as text, sorted: equal lists are equal multisets.
fn rows(server: &Postgres, table: &str) -> Vec<String> {
    let mut rows: Vec<String> = server
        .client()
        .query(&format!("SELECT r::text FROM {table} AS r"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    rows.sort_unstable();
    rows
}

/// Asserts that the job's tables and CSV file hold the reference's rows:
/// says how many rows are missing and doubled rather than dumping them.
fn same_as_reference(server: &Postgres, dir: &Path, csv: &[u8]) {
    for table in ["plain", "keyed"] {
        let (got, want) = (rows(server, table), rows(server, &format!("ref_{table}")));
        let doubled = got.windows(2).filter(|w| w[0] == w[1]).count();
        assert!(
            got == want,
            "table {table}: {} rows, {} expected; {doubled} rows doubled",
            got.len(),
            want.len()
        );
    }
    assert!(
        std::fs::read(dir.join("out/stats.csv")).unwrap() == csv,
        "the CSV output differs from the uninterrupted run's"
    );
}

/// Rows in `table` (0 before the job has created it).
fn count(client: &mut postgres::Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .map_or(0, |r| r.get(0))
}

/// Kills `child` (SIGKILL) at a random moment once it has written 300
/// rows more to the unkeyed table than it had; returns its stderr, or
/// `None` when it ended first.
fn kill_after_progress(child: Child, server: &Postgres, seed: u64) -> Option<String> {
    let mut child = child;
    let mut client = server.client();
    let before = count(&mut client, "plain");
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&mut client, "plain") < before + 300 && child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis((seed >> 33) % 40));
    if child.try_wait().unwrap().is_some() {
        return None;
    }
    child.kill().unwrap();
    Some(stderr(&child.wait_with_output().unwrap()))
}

#[test]
fn runs_killed_at_random_moments_write_each_row_once_keyed_and_unkeyed() {
    let server = Postgres::start();
    let csv = reference(&server);
    let dir = job_dir(&server, "", EVENTS, false);
    let args = ["-q", "--checkpoint-interval", "100ms", "--batch-size", "50"];
    let (mut kills, mut seed, mut logs) = (0, 42u64, String::new());
    loop {
        let child = iotql(dir.path(), &args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        if kills < 10 {
            // Once the run has made progress, at a random moment: during a
            // batch, a transaction, a checkpoint.
            match kill_after_progress(child, &server, seed) {
                Some(err) => {
                    logs.push_str(&err);
                    kills += 1;
                    continue;
                }
                None => panic!("the run ended before it could be killed: give it more events"),
            }
        }
        let out = child.wait_with_output().unwrap();
        logs.push_str(&stderr(&out));
        assert!(out.status.success(), "{}", stderr(&out));
        break;
    }
    assert!(
        kills >= 6,
        "only {kills} runs were killed: the test proves little"
    );
    // Resumed runs found rows written after their checkpoint: the test
    // exercised the rollback.
    assert!(
        logs.contains("removed the rows written after the checkpoint"),
        "no resumed run removed rows: {logs}"
    );
    same_as_reference(&server, dir.path(), &csv);
    assert!(!dir.path().join("job.state").exists());
}

/// Lines of `text` containing every one of `parts`.
fn count_lines(text: &str, parts: &[&str]) -> usize {
    text.lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .count()
}

/// Polls `done` every 20 ms for up to a minute.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_server_stopped_mid_run_and_started_again_loses_and_doubles_no_row() {
    // CI: 10 s; the long version sets IOTQL_OUTAGE_SECS (e.g. 60).
    let outage = std::env::var("IOTQL_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10u64);
    let mut server = Postgres::start();
    let csv = reference(&server);
    // The events come on stdin, so that the run lasts as long as the test
    // wants: half of them, the outage, then the rest.
    let dir = job_dir(&server, "", EVENTS, true);
    let mut child = iotql(dir.path(), &["--batch-size", "50"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let logs = Arc::new(Mutex::new(String::new()));
    let reader = {
        let (logs, err) = (logs.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let line = line.unwrap();
                logs.lock().unwrap().push_str(&(line + "\n"));
            }
        })
    };
    let lines = readings(EVENTS);
    let (first, rest) = lines.split_at(lines.len() / 2);
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all((first.join("\n") + "\n").as_bytes())
        .unwrap();
    stdin.flush().unwrap();
    let mut client = server.client();
    wait_until("rows in both tables", || {
        ["plain", "keyed"]
            .iter()
            .all(|t| count(&mut client, t) > 100)
    });
    drop(client);

    server.stop_keeping_data();
    let rest = rest.join("\n") + "\n";
    // The job stops reading when its writes wait: the rest goes in from a
    // thread of its own.
    let writer = std::thread::spawn(move || {
        stdin.write_all(rest.as_bytes()).unwrap();
    });
    wait_until("the outage to be noticed", || {
        logs.lock().unwrap().contains("is unreachable")
    });
    std::thread::sleep(Duration::from_secs(outage));
    server.restart();
    writer.join().unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let logs = logs.lock().unwrap().clone();
    assert!(status.success(), "{logs}");

    same_as_reference(&server, dir.path(), &csv);
    assert_eq!(
        count_lines(&logs, &["PostgreSQL", "is unreachable"]),
        1,
        "{logs}"
    );
    assert_eq!(
        count_lines(&logs, &["PostgreSQL", "is reachable again"]),
        1,
        "{logs}"
    );
    // The summary counts it, on the line of the output that waited.
    assert_eq!(count_lines(&logs, &["output ", "outages: 1"]), 1, "{logs}");
    assert_eq!(count_lines(&logs, &["outages:"]), 1, "{logs}");
}

#[test]
fn verify_full_takes_the_servers_authority_and_refuses_another() {
    let server = Postgres::start_with_tls();
    let dir = job_dir(&server, "", 2_000, false);
    std::fs::copy(
        server.authority.as_ref().unwrap(),
        dir.path().join("ca.crt"),
    )
    .unwrap();
    // Another authority, of the same name, that did not sign the server's
    // certificate.
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=iotql test CA", "-keyout", "other.key"])
        .args(["-out", "other.crt"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let tls = |root: &str| {
        let job = std::fs::read_to_string(dir.path().join("job.asaql"))
            .unwrap()
            .replace(
                "/postgres'",
                &format!("/postgres', sslmode = 'verify-full', sslrootcert = '{root}'"),
            );
        std::fs::write(dir.path().join("tls.asaql"), job).unwrap();
        let args = [
            "-q",
            "--checkpoint-interval",
            "off",
            "--state-dir",
            "tls.state",
        ];
        iotql_job(dir.path(), "tls.asaql", &args).output().unwrap()
    };

    let out = tls("ca.crt");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(rows(&server, "plain").len() > 100);
    assert_eq!(rows(&server, "plain"), rows(&server, "keyed"));

    let out = tls("other.crt");
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("invalid peer certificate")
            && e.contains("must be signed by sslrootcert")
            && e.contains("other.crt"),
        "the refusal does not say why: {e}"
    );
    // Refused at once, not waited for as an outage.
    assert!(
        !e.contains("cannot reach") && !e.contains("unreachable"),
        "{e}"
    );
}

#[test]
fn a_resume_that_the_ledger_does_not_account_for_is_refused_and_changes_nothing() {
    let server = Postgres::start();
    let dir = job_dir(&server, "", EVENTS, false);
    let args = ["-q", "--checkpoint-interval", "100ms", "--batch-size", "50"];
    let child = iotql(dir.path(), &args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut client = server.client();
    wait_until("rows in the table", || count(&mut client, "plain") > 300);
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // A batch the ledger does not know of, as a run without checkpoints
    // (or a hand) would leave.
    client
        .batch_execute("UPDATE iotql_sink_progress SET seq = seq + 1 WHERE output = 'plain'")
        .unwrap();
    let before = rows(&server, "plain");

    let out = iotql(dir.path(), &args).output().unwrap();
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("cannot roll table plain back to the checkpoint") && e.contains("--fresh"),
        "{e}"
    );
    assert_eq!(
        rows(&server, "plain"),
        before,
        "the refused resume changed the table"
    );
}
