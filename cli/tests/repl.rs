#![allow(clippy::unwrap_used)]
//! `iotql repl` driven through a real pseudo-terminal, as a user types:
//! a tumbling-window query's rows, Ctrl+C back to the prompt, `.schema`, a
//! bad query's diagnostic, `.save` run again by `iotql run`, `.load` and
//! `.sql` over a CSV output and a SQLite table, `.format json`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use expectrl::{ControlCode, Eof, Regex, Session};

const PROMPT: &str = "iotql> ";

/// Readings of two devices over two minutes: the 1-minute windows hold
/// a: 20 and 22, b: 30 (ending 00:01), then a: 25 and b: 35 (ending 00:02).
const READINGS: &str = "device_id,ts,temp
a,2026-01-01T00:00:10Z,20
b,2026-01-01T00:00:20Z,30
a,2026-01-01T00:00:40Z,22
a,2026-01-01T00:01:10Z,25
b,2026-01-01T00:01:30Z,35
";

const WINDOWS: &str =
    "SELECT device_id, COUNT(*) AS n, AVG(temp) AS avg_temp, System.Timestamp() AS window_end
FROM readings TIMESTAMP BY ts
GROUP BY device_id, TumblingWindow(minute, 1);";

/// The rows of WINDOWS as CSV, sorted.
const EXPECTED: [&str; 4] = [
    "a,1,25.0,2026-01-01T00:02:00.000Z",
    "a,2,21.0,2026-01-01T00:01:00.000Z",
    "b,1,30.0,2026-01-01T00:01:00.000Z",
    "b,1,35.0,2026-01-01T00:02:00.000Z",
];

fn repl(dir: &Path, args: &[&str]) -> Session {
    let mut command = Command::new(env!("CARGO_BIN_EXE_iotql"));
    command
        .arg("repl")
        .args(args)
        .current_dir(dir)
        .env("IOTQL_HISTORY", dir.join("state").join("history"))
        .env("NO_COLOR", "1")
        .env("TERM", "xterm")
        .env_remove("IOTQL_LOG");
    let mut session = Session::spawn(command).unwrap();
    // The machine is slow and shared: generous, and never a sleep.
    session.set_expect_timeout(Some(Duration::from_secs(30)));
    session.expect(PROMPT).unwrap();
    session
}

/// Types `text` (lines of it), waits for `until` (a regex of what the
/// entry prints last: the editor redraws the prompt while a statement
/// spans lines) and the prompt after it; what the terminal showed.
fn typed(session: &mut Session, text: &str, until: &str) -> String {
    for line in text.lines() {
        session.send(line).unwrap();
        session.send("\r").unwrap();
    }
    let last = session.expect(Regex(until)).unwrap();
    let mut shown = String::from_utf8_lossy(last.as_bytes()).into_owned();
    let prompt = session.expect(PROMPT).unwrap();
    shown.push_str(&String::from_utf8_lossy(prompt.before()));
    shown.replace('\r', "")
}

/// The lines of `shown` that are CSV rows of devices a and b, sorted.
fn rows(shown: &str) -> Vec<String> {
    let mut rows: Vec<String> = shown
        .lines()
        .map(str::trim)
        .filter(|l| (l.starts_with("a,") || l.starts_with("b,")) && l.ends_with('Z'))
        .map(str::to_string)
        .collect();
    rows.sort();
    rows
}

#[test]
fn a_session_over_a_csv_prints_windows_refuses_a_bad_query_and_saves_a_job() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("readings.csv"), READINGS).unwrap();
    let mut s = repl(dir.path(), &["--input", "readings=csv:readings.csv"]);

    // A table by default: the window's values in cells.
    let shown = typed(&mut s, WINDOWS, "rows from");
    assert!(
        shown.contains("window_end") && shown.contains("2026-01-01T00:01:00.000Z"),
        "{shown}"
    );
    assert!(shown.contains("4 rows from 5 events"), "{shown}");

    // CSV: the rows as `iotql run` writes them.
    typed(&mut s, ".format csv", "format: csv");
    let shown = typed(&mut s, WINDOWS, "rows from");
    assert_eq!(rows(&shown), EXPECTED, "{shown}");
    assert!(shown.contains("device_id,n,avg_temp,window_end"), "{shown}");

    // The columns of the input, inferred from the file.
    let shown = typed(&mut s, ".schema readings", "temp +bigint");
    assert!(
        shown.contains("device_id") && shown.contains("nvarchar(max)"),
        "{shown}"
    );
    assert!(
        shown.contains("temp") && shown.contains("bigint"),
        "{shown}"
    );

    // A bad query: line, column and a caret under the fault; the session goes on.
    let shown = typed(
        &mut s,
        "SELECT device_id\nFROM readings\nGROUP BY device_id, TumblingWindow(minute, 1;",
        "<repl>:3:[0-9]+",
    );
    assert!(shown.contains("<repl>:3:"), "{shown}");
    assert!(shown.contains('^') || shown.contains('─'), "{shown}");
    let shown = typed(
        &mut s,
        "SELECT AVGG(temp) AS t FROM readings;",
        "did you mean",
    );
    assert!(
        shown.contains("<repl>:1:8") && shown.contains("no such function"),
        "{shown}"
    );
    let shown = typed(&mut s, ".speed 10x", "speed: 10x");
    assert!(shown.contains("speed: 10x"), "{shown}");
    typed(&mut s, ".speed max", "speed: max");

    // JSON lines, as the JSON-lines output writes them.
    typed(&mut s, ".format json", "format: json");
    let shown = typed(
        &mut s,
        "SELECT device_id, temp FROM readings WHERE temp > 30;",
        "rows? from",
    );
    assert!(shown.contains(r#"{"device_id":"b","temp":35}"#), "{shown}");

    // .save: the bound input, the statements that ran; `iotql run` of it
    // prints the same rows.
    typed(&mut s, ".format csv", "format: csv");
    let shown = typed(&mut s, ".save jobs/session.asaql", "saved|not saved");
    assert!(shown.contains("saved jobs/session.asaql"), "{shown}");
    s.send(ControlCode::EndOfTransmission).unwrap();
    s.expect(Eof).unwrap();

    let saved = std::fs::read_to_string(dir.path().join("jobs/session.asaql")).unwrap();
    assert!(saved.contains("CREATE INPUT readings"), "{saved}");
    assert!(
        !saved.contains("AVGG"),
        "a refused query is not saved:\n{saved}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_iotql"))
        .args(["check", "jobs/session.asaql"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Only the windowed query, so the rows compare one to one.
    let windows_only = dir.path().join("windows.asaql");
    {
        let mut s = repl(dir.path(), &["--input", "readings=csv:readings.csv"]);
        typed(&mut s, ".format csv", "format: csv");
        let shown = typed(&mut s, WINDOWS, "rows from");
        let printed = rows(&shown);
        typed(
            &mut s,
            &format!(".save {}", windows_only.display()),
            "saved|not saved",
        );
        s.send(ControlCode::EndOfTransmission).unwrap();
        s.expect(Eof).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_iotql"))
            .args(["run", "-q"])
            .arg(&windows_only)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.starts_with("device_id,n,avg_temp,window_end\n"),
            "{stdout}"
        );
        assert_eq!(rows(&stdout), printed);
        assert_eq!(printed, EXPECTED);
    }
    // The history file was created and holds what was typed.
    let history = std::fs::read_to_string(dir.path().join("state/history")).unwrap();
    assert!(history.contains(".format csv"), "{history}");
}

#[test]
fn ctrl_c_stops_a_simulated_fleet_query_and_returns_to_the_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = repl(
        dir.path(),
        &[
            "--input",
            "readings=sim:?sites=1&zones=1&devices=2&rate=20&malformed=0",
        ],
    );
    s.send("SELECT device_id, battery_pct FROM readings WHERE battery_pct < 101;\r")
        .unwrap();
    // Rows come as the fleet plays, paced on the wall clock.
    s.expect("site-1/zone-1/dev-2").unwrap();
    s.send(ControlCode::EndOfText).unwrap();
    let stopped = s
        .expect(Regex(
            "rows? from [0-9]+ events? in [0-9.]+ s \\(stopped by Ctrl\\+C",
        ))
        .unwrap();
    assert!(!stopped.as_bytes().is_empty());
    s.expect(PROMPT).unwrap();

    // The shell is still there: the next commands work.
    let shown = typed(&mut s, ".inputs", "sim:\\?");
    assert!(
        shown.contains("readings") && shown.contains("sim:"),
        "{shown}"
    );
    let shown = typed(&mut s, ".schema readings", "battery_pct +float");
    assert!(
        shown.contains("co2_ppm") && shown.contains("datetime"),
        "{shown}"
    );
    // Ctrl+C at the prompt clears the line and does not leave.
    s.send("SELECT half a line").unwrap();
    s.expect("half a line").unwrap();
    s.send(ControlCode::EndOfText).unwrap();
    s.expect(PROMPT).unwrap();
    let shown = typed(&mut s, ".timing", "timing: o");
    assert!(shown.contains("timing: off"), "{shown}");
    s.send(".quit\r").unwrap();
    s.expect(Eof).unwrap();
}

#[test]
fn a_loaded_pipeline_writes_its_outputs_and_sql_looks_them_up() {
    let dir = tempfile::tempdir().unwrap();
    let job_dir = dir.path().join("pipeline");
    std::fs::create_dir_all(job_dir.join("data")).unwrap();
    std::fs::write(job_dir.join("data/readings.csv"), READINGS).unwrap();
    let db = job_dir.join("fleet.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE devices (device_id TEXT, site TEXT);
         INSERT INTO devices VALUES ('a', 'north'), ('b', 'south');",
    )
    .unwrap();
    drop(conn);
    std::fs::write(
        job_dir.join("job.asaql"),
        "CREATE INPUT readings WITH (connector = 'csv', path = 'data/readings.csv');
         CREATE OUTPUT hourly WITH (connector = 'csv', path = 'out/hourly.csv');
         CREATE OUTPUT devices WITH (connector = 'sqlite', path = 'fleet.db', table = 'devices');
         SELECT * INTO hourly FROM readings;",
    )
    .unwrap();
    let mut s = repl(dir.path(), &[]);
    let shown = typed(&mut s, ".load pipeline/job.asaql", "loaded from");
    assert!(shown.contains("readings, hourly, devices"), "{shown}");
    let shown = typed(
        &mut s,
        &WINDOWS.replace("FROM readings", "INTO hourly FROM readings"),
        "rows from",
    );
    assert!(shown.contains("rows go to output `hourly`"), "{shown}");
    assert!(shown.contains("4 rows"), "{shown}");
    assert!(job_dir.join("out/hourly.csv").exists());

    typed(&mut s, ".format csv", "format: csv");
    let shown = typed(
        &mut s,
        ".sql SELECT h.device_id, d.site, h.n\n  FROM hourly h JOIN devices d ON h.device_id = d.device_id\n  ORDER BY h.device_id, h.window_end;",
        "\n4 rows",
    );
    let lines: Vec<&str> = shown
        .lines()
        .map(str::trim)
        .filter(|l| l.contains(",north,") || l.contains(",south,"))
        .collect();
    assert_eq!(
        lines,
        ["a,north,2", "a,north,1", "b,south,1", "b,south,1"],
        "{shown}"
    );
    assert!(shown.contains("4 rows"), "{shown}");
    let shown = typed(&mut s, ".sql SELECT * FROM nowhere;", "not found");
    assert!(shown.contains("nowhere"), "{shown}");
    s.send(".quit\r").unwrap();
    s.expect(Eof).unwrap();
}

#[test]
fn speed_paces_a_replayed_file_by_event_time() {
    let dir = tempfile::tempdir().unwrap();
    // 120 readings, one a second: two minutes of event time.
    let mut csv = String::from("device_id,ts,temp\n");
    for i in 0..120 {
        csv.push_str(&format!(
            "a,2026-01-01T00:{:02}:{:02}Z,{i}\n",
            i / 60,
            i % 60
        ));
    }
    std::fs::write(dir.path().join("readings.csv"), csv).unwrap();
    let mut s = repl(dir.path(), &["--input", "readings=csv:readings.csv"]);
    typed(&mut s, ".format csv", "format: csv");
    let query = "SELECT COUNT(*) AS n, System.Timestamp() AS window_end
FROM readings TIMESTAMP BY ts GROUP BY TumblingWindow(minute, 1);";
    let seconds = |shown: &str| -> f64 {
        let summary = shown
            .lines()
            .find(|l| l.contains(" rows from 120 events in "))
            .unwrap_or_else(|| panic!("no summary in {shown}"));
        summary
            .split(" in ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("no time in {summary}"))
    };

    // At 60x, the last batches wait for their event time: the 95th second
    // of event time is due 1.6 s after the first.
    typed(&mut s, ".speed 60x", "speed: 60x");
    let paced = typed(&mut s, query, "rows from");
    assert!(paced.contains("\n60,2026-01-01T00:01:00.000Z"), "{paced}");
    assert!(seconds(&paced) >= 1.2, "not paced: {paced}");

    // The same rows at full speed.
    typed(&mut s, ".speed max", "speed: max");
    let fast = typed(&mut s, query, "rows from");
    assert!(fast.contains("\n60,2026-01-01T00:01:00.000Z"), "{fast}");
    s.send(".quit\r").unwrap();
    s.expect(Eof).unwrap();
}
