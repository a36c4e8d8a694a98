#![allow(clippy::unwrap_used)]
//! Bad input through the real `iotql run`: a corpus of malformed events of
//! many kinds mixed into 100,000 good ones, as JSON lines and as CSV. The
//! job must exit 0 without a panic, keep every bad event in the dead-letter
//! file with its reason and line, and count every good event in a window;
//! an event from the far future must not disturb the windows after it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Good events: one every 100 ms from 2025-06-01T00:00:00.050Z, so that a
/// one-minute window holds 600 of them.
const GOOD: usize = 100_000;
const PER_WINDOW: usize = 600;

const QUERY: &str = "SELECT System.Timestamp() AS window_end, COUNT(*) AS n, SUM(temp) AS total
INTO output
FROM input TIMESTAMP BY ts
GROUP BY TumblingWindow(minute, 1)
";

/// The time of good event `i`.
fn time(i: usize) -> String {
    let ms = 50 + 100 * i as u64;
    let (s, ms) = (ms / 1000, ms % 1000);
    format!(
        "2025-06-01T{:02}:{:02}:{:02}.{ms:03}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// Good event `i`'s temperature: halves, so that sums are exact.
fn temp(i: usize) -> f64 {
    (i % 40) as f64 + 0.5
}

/// A malformed event: its bytes, and what its dead letter's reason says.
struct Bad {
    line: Vec<u8>,
    reason: &'static str,
}

fn bad(line: impl Into<Vec<u8>>, reason: &'static str) -> Bad {
    Bad {
        line: line.into(),
        reason,
    }
}

/// The malformed JSON lines, timed (where they have a time) at `t`.
fn json_corpus(t: &str) -> Vec<Bad> {
    let huge = "x".repeat(2 << 20);
    let ten_mb = "y".repeat(10 << 20);
    let mut utf8 = br#"{"device_id":"d"#.to_vec();
    utf8.extend([0xff, 0xfe, 0x80]);
    utf8.extend(format!(r#"","ts":"{t}","temp":1}}"#).into_bytes());
    vec![
        bad(
            format!(r#"{{"device_id":"d","ts":"{t}","temp":"#),
            "Truncated",
        ),
        bad(
            format!(r#"{{"device_id":"d","ts":"{t}","temp":"hot"}}"#),
            "\"hot\"",
        ),
        bad(
            format!(r#"{{"device_id":"{huge}","ts":"{t}","temp":1}}"#),
            "larger than the limit of 1048576 bytes",
        ),
        bad(utf8, "UTF-8"),
        bad(
            format!(r#"{{"device_id":"d","ts":"{t}","temp":NaN}}"#),
            "unexpected 'N'",
        ),
        bad(
            format!(r#"{{"device_id":"d","ts":"{t}","temp":"NaN"}}"#),
            "NaN and infinities are refused",
        ),
        bad(
            format!(r#"{{"device_id":"d","ts":"{t}","temp":1e999}}"#),
            "NaN and infinities are refused",
        ),
        bad(
            r#"{"device_id":"d","ts":"9999-12-31T23:59:59Z","temp":1}"#,
            "is more than 1d ahead of the clock",
        ),
        bad(
            r#"{"device_id":"d","ts":-70000000000000,"temp":1}"#,
            "outside the years 0000 to 9999",
        ),
        bad(
            r#"{"device_id":"d","temp":1}"#,
            "the TIMESTAMP BY value is missing",
        ),
        bad(
            format!(r#"{{"device_id":"a","device_id":"b","ts":"{t}","temp":1}}"#),
            "duplicate key `device_id`",
        ),
        bad(
            format!(r#"{{"device_id":"{ten_mb}","ts":"{t}","temp":1}}"#),
            "larger than the limit of 1048576 bytes",
        ),
        bad(
            r#"{"device_id":"d","ts":"yesterday","temp":1}"#,
            "`yesterday` is not a time",
        ),
        bad("[1,2,3]", "expected {"),
        bad("null", "expected {"),
        bad("{}", "the TIMESTAMP BY value is missing"),
    ]
}

/// The malformed CSV records (columns device_id, ts, temp).
fn csv_corpus(t: &str) -> Vec<Bad> {
    let mut utf8 = b"d".to_vec();
    utf8.extend([0xff, 0xfe]);
    utf8.extend(format!(",{t},1").into_bytes());
    vec![
        bad(format!("d,{t}"), "expected 3 fields, found 2"),
        bad(format!("d,{t},hot"), "'hot' is not a valid Float64"),
        bad(
            format!("{},{t},1", "x".repeat(2 << 20)),
            "larger than the limit of 1048576 bytes",
        ),
        bad(utf8, "UTF-8"),
        bad(format!("d,{t},NaN"), "NaN and infinities are refused"),
        bad(format!("d,{t},inf"), "NaN and infinities are refused"),
        bad(format!("d,{t},1e999"), "NaN and infinities are refused"),
        bad(
            "d,9999-12-31T23:59:59Z,1",
            "is more than 1d ahead of the clock",
        ),
        bad("d,-70000000000000,1", "outside the years 0000 to 9999"),
        bad("d,,1", "the TIMESTAMP BY value is missing"),
        bad(
            format!("{},{t},1", "y".repeat(10 << 20)),
            "larger than the limit of 1048576 bytes",
        ),
        bad("d,yesterday,1", "`yesterday` is not a time"),
        bad(format!("d,{t},1,extra"), "expected 3 fields, found 4"),
    ]
}

/// Good event `i` as a line; two of them are odd but within the limits: a
/// 500 kB text field, and a 5,000-deep nested array.
fn good_line(i: usize, csv: bool) -> String {
    let (t, v) = (time(i), temp(i));
    if csv {
        let device = if i == 500 {
            "z".repeat(500_000)
        } else {
            format!("d{}", i % 50)
        };
        return format!("{device},{t},{v}");
    }
    let extra = match i {
        500 => format!(r#","note":"{}""#, "z".repeat(500_000)),
        700 => format!(r#","deep":{}{}"#, "[".repeat(5000), "]".repeat(5000)),
        _ => String::new(),
    };
    format!(
        r#"{{"device_id":"d{}","ts":"{t}","temp":{v}{extra}}}"#,
        i % 50
    )
}

/// Writes the corpus mixed into the good events; returns the bad events by
/// line, and the line of the one event from year 1 (late, not refused).
fn write_input(path: &Path, csv: bool) -> (BTreeMap<u64, Bad>, u64) {
    let mut out: Vec<u8> = Vec::with_capacity(32 << 20);
    let mut line = 0u64;
    let mut push = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend_from_slice(bytes);
        out.push(b'\n');
        line += 1;
        line
    };
    if csv {
        push(&mut out, b"device_id,ts,temp");
    }
    let corpus = if csv {
        csv_corpus(&time(0))
    } else {
        json_corpus(&time(0))
    };
    // Spread the bad events over the run, each timed like its neighbours.
    let every = GOOD / (corpus.len() + 2);
    let mut pending = corpus.into_iter();
    let mut bad = BTreeMap::new();
    let mut year_one = 0;
    for i in 0..GOOD {
        push(&mut out, good_line(i, csv).as_bytes());
        if i > 0 && i % every == 0 {
            if let Some(mut b) = pending.next() {
                let t0 = time(0);
                let here = time(i);
                b.line = replace(&b.line, t0.as_bytes(), here.as_bytes());
                let n = push(&mut out, &b.line);
                bad.insert(n, b);
            } else if year_one == 0 {
                let old = if csv {
                    "d,0001-01-01T00:00:00Z,0".to_string()
                } else {
                    r#"{"device_id":"d","ts":"0001-01-01T00:00:00Z","temp":0}"#.to_string()
                };
                year_one = push(&mut out, old.as_bytes());
            }
        }
    }
    assert!(pending.next().is_none() && year_one > 0);
    std::fs::write(path, out).unwrap();
    (bad, year_one)
}

/// `bytes` with every `from` replaced by `to`.
fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

fn run_corpus(csv: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (format, name) = if csv {
        ("csv", "in.csv")
    } else {
        ("jsonl", "in.jsonl")
    };
    let input = dir.path().join(name);
    let (bad, year_one) = write_input(&input, csv);
    let job = dir.path().join("job.asaql");
    std::fs::write(&job, QUERY).unwrap();
    let output = dir.path().join("out.csv");
    let dead = dir.path().join("dead.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_iotql"))
        .arg("run")
        .arg(&job)
        .arg("--input")
        .arg(format!("input={format}:{}", input.display()))
        .arg("--output")
        .arg(format!("output=csv:{}", output.display()))
        .arg("--dead-letter")
        .arg(&dead)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The year-1 event is late: adjusted to the watermark, and counted.
    assert!(stderr.contains("late: 1 adjusted, 0 dropped"), "{stderr}");
    assert!(
        stderr.contains(&format!("dead letters: {} ", bad.len())),
        "{stderr}"
    );

    // Every bad event, by its line, with its reason and its bytes as read.
    let text = std::fs::read_to_string(&dead).unwrap();
    let letters: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), bad.len(), "{text:.2000}");
    for (letter, (line, b)) in letters.iter().zip(&bad) {
        let field = |k: &str| letter[k].as_str().unwrap().to_string();
        assert_eq!(field("input"), "input");
        assert_eq!(field("position"), format!("line {line}"), "{letter:.600}");
        assert!(
            field("reason").contains(b.reason),
            "line {line}: `{}` does not say `{}`",
            field("reason"),
            b.reason
        );
        let raw = field("raw");
        let expected = String::from_utf8_lossy(&b.line);
        if b.line.len() > 1 << 20 {
            let size = format!("the event of {} bytes is larger", b.line.len());
            assert!(field("reason").contains(&size), "line {line}: {size}");
            assert_eq!(raw, expected[..256], "line {line}");
        } else {
            assert_eq!(raw, expected, "line {line}");
        }
    }
    assert!(!bad.contains_key(&year_one));

    // Every good event (and the late one) counted, window after window: the
    // far-future event moved no watermark.
    let rows = std::fs::read_to_string(&output).unwrap();
    let mut lines = rows.lines();
    assert_eq!(lines.next(), Some("window_end,n,total"));
    let windows: Vec<(String, usize, f64)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].to_string(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect();
    let full = GOOD / PER_WINDOW;
    assert_eq!(windows.len(), full + 1, "{rows:.1000}");
    let counted: usize = windows.iter().map(|w| w.1).sum();
    assert_eq!(counted, GOOD + 1);
    let total: f64 = windows.iter().map(|w| w.2).sum();
    assert_eq!(total, (0..GOOD).map(temp).sum::<f64>());
    for (k, (end, n, _)) in windows.iter().enumerate() {
        let minutes = k + 1;
        assert_eq!(
            end,
            &format!("2025-06-01T{:02}:{:02}:00.000Z", minutes / 60, minutes % 60)
        );
        let want = if k == full {
            GOOD - full * PER_WINDOW
        } else {
            PER_WINDOW
        };
        assert!(
            *n == want || *n == want + 1,
            "window {end} holds {n} events, not {want}"
        );
    }
    assert_eq!(
        windows
            .iter()
            .enumerate()
            .filter(|(k, w)| w.1
                != if *k == full {
                    GOOD % PER_WINDOW
                } else {
                    PER_WINDOW
                })
            .count(),
        1,
        "the year-1 event lands in exactly one window"
    );
}

#[test]
fn malformed_json_lines_are_dead_letters_and_good_ones_all_count() {
    run_corpus(false);
}

#[test]
fn malformed_csv_records_are_dead_letters_and_good_ones_all_count() {
    run_corpus(true);
}
