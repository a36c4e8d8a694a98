#![allow(clippy::unwrap_used)]
//! Checkpoints and recovery of `iotql run`, with the real binary: killed
//! with SIGKILL at random moments and restarted, a job's outputs (and its
//! dead letters) end up byte for byte those of an uninterrupted run; Ctrl+C
//! stops at a checkpoint that the next run resumes from; SIGUSR1 takes one
//! on demand; a changed job refuses the checkpoint until `--fresh`; a damaged
//! checkpoint falls back to the one before.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::outputs::{alert_lines, parquet_rows, same, sqlite_rows};
use common::{killed_until_done, setting};

const JOB: &str = "CREATE INPUT readings WITH (connector = 'csv', path = 'readings.csv');
CREATE OUTPUT minutes WITH (connector = 'csv', path = 'out/minutes.csv');
CREATE OUTPUT hot WITH (connector = 'jsonl', path = 'out/hot.jsonl');
CREATE OUTPUT readings_db WITH (connector = 'sqlite', path = 'db/fleet.db', table = 'readings');
CREATE OUTPUT minutes_pq WITH (connector = 'parquet', path = 'pq');
CREATE OUTPUT alerts WITH (connector = 'log', path = 'alerts/alerts.jsonl');
SELECT device_id, System.Timestamp() AS window_end, COUNT(*) AS n, ROUND(AVG(temperature_c), 3) AS t
INTO minutes FROM readings TIMESTAMP BY ts GROUP BY device_id, TumblingWindow(minute, 1);
SELECT device_id, ts, temperature_c INTO hot FROM readings TIMESTAMP BY ts WHERE temperature_c > 34;
SELECT device_id, ts, temperature_c INTO readings_db FROM readings TIMESTAMP BY ts;
SELECT device_id, System.Timestamp() AS window_end, COUNT(*) AS n
INTO minutes_pq FROM readings TIMESTAMP BY ts GROUP BY device_id, TumblingWindow(minute, 1);
SELECT device_id, System.Timestamp() AS window_end, MAX(temperature_c) AS peak
INTO alerts FROM readings TIMESTAMP BY ts GROUP BY device_id, TumblingWindow(minute, 1)
HAVING MAX(temperature_c) > 34.9;
";

/// A job folder with `readings.csv`: `events` readings of 20 devices, one
/// device a second each, with a malformed line every 997 lines.
fn job_dir(events: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("device_id,ts,temperature_c\n");
    let mut x: u64 = 7;
    for i in 0..events {
        let s = i / 20;
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let t = 20.0 + (x >> 40) as f64 / (1u64 << 24) as f64 * 15.0;
        csv.push_str(&format!(
            "dev-{},2026-01-{:02}T{:02}:{:02}:{:02}Z,{t:.2}\n",
            i % 20,
            s / 86_400 + 1,
            (s / 3600) % 24,
            (s / 60) % 60,
            s % 60
        ));
        if i % 997 == 0 {
            csv.push_str("dev-x,not a reading\n");
        }
    }
    std::fs::write(dir.path().join("readings.csv"), csv).unwrap();
    std::fs::write(dir.path().join("job.asaql"), JOB).unwrap();
    dir
}

fn iotql(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_iotql"));
    c.arg("run")
        .arg("job.asaql")
        .args(args)
        .current_dir(dir)
        .env_remove("IOTQL_LOG");
    c
}

fn run(dir: &Path, args: &[&str]) -> Output {
    iotql(dir, args).output().unwrap()
}

fn spawn(dir: &Path, args: &[&str]) -> Child {
    iotql(dir, args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The outputs and dead letters of a run: files by name, then the SQLite
/// table's rows in row-id order, the Parquet rows and the alerts, as text.
fn outputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut all = files(dir);
    let table = sqlite_rows(
        &dir.join("db/fleet.db"),
        "SELECT device_id, ts, temperature_c FROM readings ORDER BY rowid",
    );
    all.push(("readings table".into(), table.join("\n").into_bytes()));
    let parquet = parquet_rows(&dir.join("pq"));
    all.push(("parquet rows".into(), parquet.join("\n").into_bytes()));
    all.push(("alert log".into(), alerts(dir).join("\n").into_bytes()));
    all
}

fn alerts(dir: &Path) -> Vec<String> {
    alert_lines(&dir.join("alerts/alerts.jsonl"))
}

/// The files of `out/` and the dead letters, by name.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.push(dir.join("job.deadletter.jsonl"));
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// An uninterrupted run's outputs, and how long it took.
fn reference(events: usize) -> (Vec<(String, Vec<u8>)>, Duration) {
    let dir = job_dir(events);
    let started = Instant::now();
    let out = run(
        dir.path(),
        &["-q", "--checkpoint-interval", "off", "--batch-size", "50"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        alerts(dir.path()).len() > 10,
        "the job made too few alerts to prove anything"
    );
    (outputs(dir.path()), started.elapsed())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits until checkpoint `id` is in the job's state folder (a run takes
/// checkpoint 1 before its first event).
fn wait_for_checkpoint(dir: &Path, id: u64) {
    let path = dir.join("job.state").join(format!("chk-{id:020}.iotql"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(Instant::now() < deadline, "no {}", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// N of "stopped at checkpoint N" or "resumed from checkpoint N".
fn checkpoint_said(out: &Output, what: &str) -> u64 {
    stderr(out)
        .split(&format!("{what} checkpoint "))
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `{what} checkpoint N` in {}", stderr(out)))
}

/// The newest checkpoint in the job's state folder.
fn newest_checkpoint(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("job.state"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_prefix("chk-")?
                        .strip_suffix(".iotql")?
                        .parse::<u64>()
                        .ok()
                })
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

#[test]
fn runs_killed_at_random_moments_end_with_the_outputs_of_an_uninterrupted_run() {
    let events = setting("IOTQL_KILL_EVENTS", 100_000);
    let planned = setting("IOTQL_KILLS", 12);
    let interval: String = setting("IOTQL_KILL_INTERVAL", "20ms".to_string());
    let (expected, took) = reference(events);
    // Kills spread over the run: after progress, a random wait of up to a
    // share of an uninterrupted run's time.
    let spread = (took.as_millis() as u64 / (2 * planned as u64 + 1)).max(25);
    let dir = job_dir(events);
    let started = Instant::now();
    let args = [
        "-q",
        "--checkpoint-interval",
        &interval,
        "--batch-size",
        "50",
    ];
    // Once the run has made progress (a checkpoint past where it resumed),
    // at a random moment: during a batch, a write, a checkpoint.
    killed_until_done(
        planned,
        spread,
        42,
        || iotql(dir.path(), &args),
        || newest_checkpoint(dir.path()) as usize,
        1,
    );
    same(&outputs(dir.path()), &expected);
    eprintln!(
        "{events} events: an uninterrupted run took {:.1} s; {planned} runs killed with SIGKILL and restarted took {:.1} s in all; outputs identical",
        took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    // Done: no checkpoint is left to resume from.
    assert!(!dir.path().join("job.state").exists());
}

#[test]
fn ctrl_c_stops_at_a_checkpoint_and_the_next_run_resumes_there() {
    let events = 60_000;
    let (expected, _) = reference(events);
    let dir = job_dir(events);
    let args = ["--checkpoint-interval", "1h", "--batch-size", "20"];
    let child = spawn(dir.path(), &args);
    // On demand: SIGUSR1 takes one now.
    wait_for_checkpoint(dir.path(), 1);
    std::thread::sleep(Duration::from_millis(200));
    signal(&child, "-USR1");
    wait_for_checkpoint(dir.path(), 2);
    signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(checkpoint_said(&out, "stopped at"), 3);

    let out = run(dir.path(), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(checkpoint_said(&out, "resumed from"), 3);
    same(&outputs(dir.path()), &expected);
}

#[test]
fn a_changed_job_refuses_the_checkpoint_until_fresh_and_a_damaged_one_is_skipped() {
    let events = 60_000;
    let (expected, _) = reference(events);
    let dir = job_dir(events);
    let args = ["--checkpoint-interval", "1h", "--batch-size", "20"];
    // Two checkpoints on demand, then stopped by SIGTERM at a third.
    let child = spawn(dir.path(), &args);
    for id in 2..=3 {
        wait_for_checkpoint(dir.path(), id - 1);
        std::thread::sleep(Duration::from_millis(150));
        signal(&child, "-USR1");
    }
    wait_for_checkpoint(dir.path(), 3);
    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let stopped = checkpoint_said(&out, "stopped at");
    assert_eq!(stopped, 4);

    // Another query: refused, with the way out.
    let job = dir.path().join("job.asaql");
    std::fs::write(&job, JOB.replace("> 34", "> 33")).unwrap();
    let out = run(dir.path(), &args);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("another version of this job"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("--fresh"), "{}", stderr(&out));

    // The same query again, with its newest checkpoint torn: the one before is used.
    std::fs::write(&job, JOB).unwrap();
    let newest = dir
        .path()
        .join("job.state")
        .join(format!("chk-{stopped:020}.iotql"));
    let bytes = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
    let out = run(dir.path(), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(checkpoint_said(&out, "resumed from"), stopped - 1);
    assert!(
        stderr(&out).contains("checksum"),
        "the skipped one is named: {}",
        stderr(&out)
    );
    same(&outputs(dir.path()), &expected);

    // --fresh starts over: the same outputs again, from scratch.
    let out = run(dir.path(), &["--fresh", "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Files are written anew (a table and a Parquet folder are added to,
    // and the dead-letter file is appended to by every run).
    let again = files(dir.path());
    for (name, bytes) in again
        .iter()
        .filter(|(n, _)| !n.ends_with("deadletter.jsonl"))
    {
        let want = expected.iter().find(|(n, _)| n == name).map(|(_, b)| b);
        assert!(want == Some(bytes), "{name} differs after --fresh");
    }
}

#[test]
fn an_input_that_cannot_resume_leaves_no_checkpoint_to_resume_from() {
    let dir = job_dir(2_000);
    let csv = std::fs::read(dir.path().join("readings.csv")).unwrap();
    // stdin cannot be read again from a position: the checkpoint taken
    // before the first event is removed (resuming from it would cut the
    // outputs back to where this run started), and none is taken after.
    let mut child = iotql(
        dir.path(),
        &[
            "-q",
            "--input",
            "readings=csv:-",
            "--checkpoint-interval",
            "10ms",
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&csv).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !dir.path().join("job.state").exists(),
        "a state folder was left behind"
    );
}
