#![allow(clippy::unwrap_used)]
//! Backpressure, with the real binary: when an output cannot take rows
//! (its reader stalls), `iotql run` stops reading its input after a few
//! batches instead of buffering the input in memory, and when the output
//! drains again every row arrives. The output is a CSV file that is a FIFO
//! read by this test: the pipe's 64 KiB fill up and the sink's write blocks.
//! The long version, an output 100 times slower than the input over a whole
//! run with peak memory measured, is `bench/backpressure.sh`.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const JOB: &str = "CREATE INPUT readings WITH (connector = 'csv', path = 'readings.csv');
CREATE OUTPUT all_rows WITH (connector = 'csv', path = 'rows.fifo');
SELECT device_id, ts, temperature_c INTO all_rows FROM readings TIMESTAMP BY ts;
";

const EVENTS: usize = 1_000_000;

/// A job folder: `readings.csv` (about 33 MB) and the output FIFO.
fn job_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::with_capacity(EVENTS * 34);
    csv.push_str("device_id,ts,temperature_c\n");
    for i in 0..EVENTS {
        let s = i / 20;
        csv.push_str(&format!(
            "dev-{},2026-01-{:02}T{:02}:{:02}:{:02}Z,{}.{:02}\n",
            i % 20,
            s / 86_400 + 1,
            (s / 3600) % 24,
            (s / 60) % 60,
            s % 60,
            20 + i % 15,
            i % 100
        ));
    }
    std::fs::write(dir.path().join("readings.csv"), csv).unwrap();
    std::fs::write(dir.path().join("job.asaql"), JOB).unwrap();
    let status = Command::new("mkfifo")
        .arg(dir.path().join("rows.fifo"))
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

/// A line of /proc/PID/status in kB (`VmRSS`, `VmHWM`).
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
}

/// How far the process has read `file` (the offset of its open descriptor).
fn read_offset(pid: u32, file: &Path) -> Option<u64> {
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        if std::fs::read_link(entry.path()).ok().as_deref() == Some(file) {
            let fd = entry.file_name();
            let info =
                std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.to_string_lossy()))
                    .ok()?;
            return info
                .lines()
                .find_map(|l| l.strip_prefix("pos:"))
                .and_then(|v| v.trim().parse().ok());
        }
    }
    None
}

#[test]
fn a_stalled_output_stops_the_reading_and_loses_nothing() {
    let dir = job_dir();
    let input = std::fs::canonicalize(dir.path().join("readings.csv")).unwrap();
    let size = std::fs::metadata(&input).unwrap().len();
    let child = Command::new(env!("CARGO_BIN_EXE_iotql"))
        .args(["run", "job.asaql", "-q", "--checkpoint-interval", "off"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Opening the FIFO waits for the job's output to open it.
    let mut rows = std::fs::File::open(dir.path().join("rows.fifo")).unwrap();
    let mut first = [0u8; 4096];
    rows.read_exact(&mut first).unwrap();

    // The reader stalls: the job must stop reading after a few batches.
    // Once its position has not moved for a second, it is blocked.
    let (mut offset, mut peak_kb) = (0, 0);
    let mut still_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while still_since.elapsed() < Duration::from_secs(1) {
        assert!(Instant::now() < deadline, "the job never stopped reading");
        std::thread::sleep(Duration::from_millis(50));
        // A closed input was read to its end.
        let now = read_offset(pid, &input).unwrap_or(size);
        if now != offset {
            offset = now;
            still_since = Instant::now();
        }
        peak_kb = peak_kb.max(status_kb(pid, "VmRSS").unwrap_or(0));
    }
    assert!(
        offset < 8 << 20,
        "with its output stalled the job read {offset} of {size} bytes: it buffers the input"
    );
    assert!(
        peak_kb < 300 << 10,
        "{peak_kb} kB resident while the output was stalled"
    );

    // The reader drains: every row arrives, once.
    let mut rest = Vec::new();
    rows.read_to_end(&mut rest).unwrap();
    let lines = [&first[..], &rest]
        .concat()
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines, EVENTS + 1, "rows written (with the header)");
    eprintln!(
        "stalled output: the job read {offset} of {size} bytes and stopped, {peak_kb} kB resident at most; then all {EVENTS} rows arrived"
    );
}
