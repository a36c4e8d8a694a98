#![allow(clippy::unwrap_used)]
//! The dashboard in a real browser: `iotql run queries/dashboard.asaql
//! --http` over a simulated fleet (its outputs rebound into a temporary
//! folder), the page open in headless Chromium, and what the page shows
//! compared with what the job wrote: the device grid with the SQLite table
//! of latest readings, the chart's lines with the windowed aggregates'
//! table, the alert feed with the alert log. Then 1,000 devices: the grid
//! holds them all, and the time of a grid update is printed (for
//! docs/performance.md; not asserted).
//!
//! The screenshot is kept in `target/tmp/dashboard.png`; with
//! `IOTQL_BLESS=1` it is written to `docs/dashboard.png` instead.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::browser::{Browser, BrowserError};
use common::{Running, repo};
use serde_json::{Value, json};

/// How long the page may take to show something (Chromium and the job
/// share 2 cores with the build and the other tests).
const RENDER: Duration = Duration::from_secs(90);

/// The tests run one at a time: each has a job and a browser of its own.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// `iotql run queries/dashboard.asaql --http 127.0.0.1:0` over a fleet,
/// its outputs in a temporary folder.
struct Job {
    _run: Running,
    url: String,
    db: PathBuf,
    alert_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Job {
    /// `fleet`: the `sim:` input's options; `token`: the server's access
    /// token, which the page's URL then carries.
    fn start(fleet: &str, token: Option<&str>) -> Job {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("dashboard.db");
        let alert_log = dir.path().join("alerts.jsonl");
        let sqlite = |table: &str, key: &str| {
            // Committed within about a tick, so that the table keeps up
            // with what the page shows.
            format!(
                "{table}=sqlite:{}?table={table}&key={key}&max_latency=50ms",
                db.display()
            )
        };
        let args = [
            "run".to_string(),
            "queries/dashboard.asaql".into(),
            "--http".into(),
            "127.0.0.1:0".into(),
            "--input".into(),
            format!("readings=sim:?{fleet}"),
            "--output".into(),
            sqlite("devices", "device_id"),
            "--output".into(),
            sqlite("device_windows", "device_id,window_end"),
            "--output".into(),
            sqlite("site_windows", "site,window_end"),
            "--output".into(),
            format!("alerts=log:{}", alert_log.display()),
        ];
        let mut args = args.to_vec();
        if let Some(token) = token {
            args.extend(["--http-token".into(), token.into()]);
        }
        let run = Running::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let mut url = run.served_at() + "/";
        if let Some(token) = token {
            url.push_str(&format!("?token={token}"));
        }
        Job {
            _run: run,
            url,
            db,
            alert_log,
            _dir: dir,
        }
    }

    /// A table's rows as JSON objects, read with SQLite directly.
    fn table(&self, table: &str) -> Vec<Row> {
        let db = rusqlite::Connection::open_with_flags(
            &self.db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        db.busy_timeout(Duration::from_secs(10)).unwrap();
        let mut statement = db.prepare(&format!("SELECT * FROM {table}")).unwrap();
        let names: Vec<String> = statement
            .column_names()
            .iter()
            .map(|n| n.to_string())
            .collect();
        statement
            .query_map([], |row| {
                let mut object = serde_json::Map::new();
                for (i, name) in names.iter().enumerate() {
                    let value = match row.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => Value::Null,
                        rusqlite::types::ValueRef::Integer(n) => json!(n),
                        rusqlite::types::ValueRef::Real(x) => json!(x),
                        rusqlite::types::ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
                        rusqlite::types::ValueRef::Blob(_) => Value::Null,
                    };
                    object.insert(name.clone(), value);
                }
                Ok(object)
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// The alert log's rows, without the columns the log adds.
    fn alerts(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.alert_log)
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let mut row: Value = serde_json::from_str(line).unwrap();
                row.as_object_mut().unwrap().remove("idempotency_key");
                row
            })
            .collect()
    }
}

/// The job over `fleet` (see `Job::start`) and the dashboard open in a
/// browser, while no other test of this file runs.
fn open(
    fleet: &str,
    token: Option<&str>,
) -> Result<(MutexGuard<'static, ()>, Job, Browser), BrowserError> {
    let one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let job = Job::start(fleet, token);
    let browser = Browser::start()?;
    browser.goto(&job.url)?;
    Ok((one, job, browser))
}

/// The grid as the page shows it: device -> (status, column -> text).
type Grid = BTreeMap<String, (String, BTreeMap<String, String>)>;

/// A stored row, by column.
type Row = serde_json::Map<String, Value>;

/// Polls `check` until it holds (`Ok`), or fails with its last complaint.
fn until(what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let started = Instant::now();
    loop {
        match check() {
            Ok(()) => return,
            Err(why) if started.elapsed() > RENDER => {
                panic!("timed out waiting for {what}: {why}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

/// The grid as the page shows it: per device, its status and each
/// column's text; a datetime's whole value (its cell's title), whose time
/// of day the cell shows.
fn grid(browser: &Browser) -> Result<Grid, BrowserError> {
    let shown = browser.script(
        "const names = Array.from(document.querySelectorAll('#devices .head > span'), th => th.textContent);
         return Array.from(document.querySelectorAll('#devices .device'), row =>
             Object.fromEntries(Array.from(row.children, (cell, i) => [names[i], [cell.textContent, cell.title]])));",
    )?;
    let mut rows = BTreeMap::new();
    for row in shown.as_array().unwrap() {
        let cells: BTreeMap<String, (String, String)> =
            serde_json::from_value(row.clone()).unwrap();
        let mut values = BTreeMap::new();
        for (name, (text, title)) in cells {
            if title.is_empty() {
                values.insert(name, text);
            } else {
                assert_eq!(text, title[11..19], "{name}");
                values.insert(name, title);
            }
        }
        let device = values.remove("device_id").unwrap();
        let status = values.remove("status").unwrap();
        rows.insert(device, (status, values));
    }
    Ok(rows)
}

/// Whether a cell's text shows a stored value: text as it is, numbers to
/// the two decimals the page shows.
fn shows(text: &str, value: &Value) -> bool {
    match value {
        Value::Null => text.is_empty(),
        Value::String(s) => text == s,
        Value::Number(n) => text
            .parse::<f64>()
            .is_ok_and(|t| (t - n.as_f64().unwrap()).abs() <= 0.005),
        _ => false,
    }
}

/// Whether two rows hold the same values, numbers compared as numbers
/// (the page's JSON writes 66.0 as 66).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// The grid against the devices table: the same devices, and each row
/// whose time equals the table's shows the table's values. Rows written
/// between the two reads differ in time; most must be equal.
fn grid_matches_table(grid: &Grid, table: &[Row]) -> Result<(), String> {
    let stored: BTreeMap<String, &Row> = table
        .iter()
        .map(|r| (r["device_id"].as_str().unwrap().to_string(), r))
        .collect();
    let devices: BTreeSet<&String> = grid.keys().collect();
    if devices != stored.keys().collect() {
        return Err(format!(
            "the grid has {} devices, the table {}",
            devices.len(),
            stored.len()
        ));
    }
    let mut equal = 0;
    for (device, (_, cells)) in grid {
        let row = stored[device];
        if cells["ts"] != row["ts"].as_str().unwrap() {
            continue;
        }
        for (name, value) in row.iter().filter(|(n, _)| *n != "device_id") {
            let text = cells
                .get(name)
                .ok_or_else(|| format!("the grid has no column {name}"))?;
            if !shows(text, value) {
                panic!("{device}: the grid shows {name} `{text}`, the table has {value}");
            }
        }
        equal += 1;
    }
    if equal * 4 < grid.len() * 3 {
        return Err(format!(
            "only {equal} of {} rows are the table's",
            grid.len()
        ));
    }
    Ok(())
}

#[test]
fn the_dashboard_shows_what_the_job_produced() -> Result<(), BrowserError> {
    // 48 devices, a reading each 5 s of event time, about 2 s of event
    // time a second; anomalies often enough for alerts within seconds.
    // With an access token: the page must send it on, to fetch and to
    // the event streams, or it shows nothing.
    let (_one, job, browser) = open(
        "sites=3&zones=4&devices=4&interval=5s&rate=20&anomalies=0.05&seed=3",
        Some("s3cret-t0ken"),
    )?;

    browser.wait_for(
        "a grid row per device",
        RENDER,
        "document.querySelectorAll('#devices .device').length === 48",
    )?;
    browser.wait_for(
        "a chart line per site, each with 3 points or more",
        RENDER,
        "(() => { const paths = document.querySelectorAll('#chart path.series');
                  return paths.length === 3 && Array.from(paths).every(p => +p.dataset.points >= 3); })()",
    )?;
    browser.wait_for(
        "an alert in the feed",
        RENDER,
        "document.querySelectorAll('#alerts li[data-row]').length > 0",
    )?;

    // The health table: a row for the job, its batch latency's p99 as a
    // bucket bound and no consumer lag (a `sim:` input has none).
    let health = browser.wait_for(
        "the job's batch latency in the health table",
        RENDER,
        "(() => { const cells = Array.from(document.querySelectorAll('#jobs tbody tr:first-child td'), td => td.textContent);
                  return cells.length === 9 && cells[5].startsWith('≤ ') ? cells : false; })()",
    )?;
    let cells: Vec<&str> = health
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!((cells[0], cells[1]), ("dashboard", "running"), "{cells:?}");
    assert!(
        cells[5].ends_with(" µs") || cells[5].ends_with(" ms") || cells[5].ends_with(" s"),
        "batch p99: {cells:?}"
    );
    assert_eq!(cells[6], "-", "consumer lag: {cells:?}");

    // The grid: the devices table's latest rows, with statuses.
    until("the grid to show the devices table", || {
        let shown = grid(&browser).map_err(|e| e.to_string())?;
        grid_matches_table(&shown, &job.table("devices"))
    });
    let shown = grid(&browser)?;
    let alerted: BTreeSet<String> = job
        .alerts()
        .iter()
        .map(|a| a["device_id"].as_str().unwrap().to_string())
        .collect();
    for (device, (status, cells)) in &shown {
        match status.as_str() {
            "alert" => assert!(
                alerted.contains(device),
                "{device} shows an alert not in the log"
            ),
            "battery low" => assert!(cells["battery_pct"].parse::<f64>().unwrap() < 20.0),
            "normal" | "silent" => {}
            other => panic!("{device}: status `{other}`"),
        }
    }
    assert!(
        shown.values().any(|(s, _)| s == "alert"),
        "no device shows an alert: {shown:?}"
    );

    // A battery under 20 % and a device far behind the newest, given to
    // the grid as live rows would be: their statuses.
    let statuses = browser.script(
        "const d = window.dashboard;
         const [device, entry] = Array.from(d.grid.entries).find(([, e]) => e.status === 'normal');
         const row = entry.row;
         d.updateGrid([{ ...row, battery_pct: 12.5 }]);
         const low = [entry.tr.dataset.status, entry.badge.textContent];
         const behind = new Date(d.grid.newest - 120000).toISOString();
         d.updateGrid([{ ...row, ts: behind }]);
         const silent = [entry.tr.dataset.status, entry.badge.textContent];
         d.updateGrid([row]);
         return [low, silent, entry.tr.dataset.status];",
    )?;
    assert_eq!(
        statuses,
        json!([
            ["battery low", "battery low"],
            ["silent", "silent"],
            "normal"
        ])
    );

    // The chart: per site, the average temperature of the site windows
    // (a window the page has may be committed a moment later).
    until("the chart's points in the site windows table", || {
        chart_matches_table(&browser, &job, ("site_windows", "avg_temp_c", "site"))
    });

    // The alert feed: rows of the alert log, each showing its device and
    // what is wrong.
    until("the feed's alerts in the alert log", || {
        let feed = browser
            .script(
                "return Array.from(document.querySelectorAll('#alerts li[data-row]'), li => [li.dataset.row, li.textContent]);",
            )
            .map_err(|e| e.to_string())?;
        let log = job.alerts();
        for entry in feed.as_array().unwrap() {
            let row: Value = serde_json::from_str(entry[0].as_str().unwrap()).unwrap();
            let text = entry[1].as_str().unwrap();
            assert!(text.contains(row["device_id"].as_str().unwrap()), "{text}");
            assert!(text.contains(row["alert_type"].as_str().unwrap()), "{text}");
            if !log.iter().any(|logged| same(logged, &row)) {
                return Err(format!("{row} is not in the alert log"));
            }
        }
        Ok(())
    });

    assert_eq!(browser.console_errors()?, Vec::<String>::new());
    keep_screenshot(&browser)?;

    // Another output, series and measure, chosen in the menus: the peak
    // temperature per device, the first 12 devices.
    browser.script(
        "for (const [id, value] of [['chart-output', 'device_windows'], ['chart-per', 'device_id'],
                                    ['chart-measure', 'max_temp_c']]) {
             const select = document.getElementById(id);
             select.value = value;
             select.dispatchEvent(new Event('change'));
         }",
    )?;
    until("the chart's points in the device windows table", || {
        chart_matches_table(
            &browser,
            &job,
            ("device_windows", "max_temp_c", "device_id"),
        )
    });
    assert_eq!(
        browser.text("#chart-note")?,
        "the first 12 of 48 device_ids"
    );
    assert_eq!(browser.console_errors()?, Vec::<String>::new());
    Ok(())
}

/// The chart against its output's table: the choices (output, measure,
/// the column of the series), a line per series for the first 12 of the
/// table's (in order), each point a row's value of the measure.
fn chart_matches_table(
    browser: &Browser,
    job: &Job,
    (output, measure, per): (&str, &str, &str),
) -> Result<(), String> {
    let chart = browser
        .script(
            "const c = window.dashboard.chart;
             return { output: c.output, measure: c.measure, per: c.per,
                      paths: Array.from(document.querySelectorAll('#chart path.series'), p =>
                          ({ series: p.dataset.series, commands: (p.getAttribute('d').match(/[ML]/g) || []).length,
                             points: c.series.get(p.dataset.series).map(([t, v]) => [new Date(t).toISOString(), v]) })) };",
        )
        .map_err(|e| e.to_string())?;
    if (&chart["output"], &chart["measure"], &chart["per"])
        != (&json!(output), &json!(measure), &json!(per))
    {
        return Err(format!("the chart shows {chart}"));
    }
    let table = job.table(output);
    let values: BTreeMap<(&str, &str), &Value> = table
        .iter()
        .map(|r| {
            let key = (r[per].as_str().unwrap(), r["window_end"].as_str().unwrap());
            (key, &r[measure])
        })
        .collect();
    let mut series = BTreeSet::new();
    for path in chart["paths"].as_array().unwrap() {
        let key = path["series"].as_str().unwrap();
        let points = path["points"].as_array().unwrap();
        assert_eq!(path["commands"], json!(points.len()), "{path}");
        for point in points {
            let at = (key, point[0].as_str().unwrap());
            if values.get(&at).and_then(|v| v.as_f64()) != point[1].as_f64() {
                return Err(format!(
                    "{at:?} is {}, the table has {:?}",
                    point[1],
                    values.get(&at)
                ));
            }
        }
        series.insert(key);
    }
    let stored: BTreeSet<&str> = values.keys().map(|(s, _)| *s).collect();
    let first: BTreeSet<&str> = stored.into_iter().take(12).collect();
    if series != first {
        return Err(format!(
            "the chart's lines are {series:?}, the table's first {first:?}"
        ));
    }
    Ok(())
}

#[test]
fn a_thousand_devices_fill_the_grid_and_an_update_is_timed() -> Result<(), BrowserError> {
    let (_one, _job, browser) = open(
        "sites=10&zones=10&devices=10&interval=5s&rate=1000&anomalies=0.01",
        None,
    )?;
    browser.wait_for(
        "a grid row per device",
        RENDER,
        "document.querySelectorAll('#devices .device').length === 1000",
    )?;
    browser.wait_for(
        "a heatmap cell per site and zone",
        RENDER,
        "document.querySelectorAll('#heatmap rect.cell').length === 100",
    )?;
    // An update of every device at once, as a burst of live rows would be,
    // five times, then of 20 devices five times: its time with the layout
    // (performance.now()), and the live frames' so far (the first one
    // adds the 1,000 rows).
    let timings = browser.script(
        "const d = window.dashboard;
         const times = [];
         for (let i = 1; i <= 5; i++) {
             const rows = Array.from(d.grid.entries.values(), e =>
                 ({ ...e.row, temperature_c: e.row.temperature_c + i / 100 }));
             times.push(d.updateGrid(rows));
         }
         // A frame's worth of live rows at 1,000 events/s: about 20.
         const some = [];
         for (let i = 1; i <= 5; i++) {
             const rows = Array.from(d.grid.entries.values()).slice(i * 100, i * 100 + 20).map(e =>
                 ({ ...e.row, temperature_c: e.row.temperature_c + i / 100 }));
             some.push(d.updateGrid(rows));
         }
         const live = d.state.stats.gridUpdates.map(u => u.ms).sort((a, b) => a - b);
         return { full: times, twenty: some, live_frames: live.length,
                  live_median: live[live.length >> 1], live_max: live[live.length - 1] };",
    )?;
    eprintln!("grid update with 1,000 devices (ms): {timings}");
    assert_eq!(browser.count("#devices .device")?, 1000);
    assert_eq!(timings["full"].as_array().unwrap().len(), 5);
    assert_eq!(browser.console_errors()?, Vec::<String>::new());
    Ok(())
}

/// The screenshot: `docs/dashboard.png` with `IOTQL_BLESS=1`, else kept in
/// `target/tmp/` for a person to look at.
fn keep_screenshot(browser: &Browser) -> Result<PathBuf, BrowserError> {
    if std::env::var("IOTQL_BLESS").is_ok_and(|v| v == "1") {
        let path = repo().join("docs/dashboard.png");
        browser.screenshot(&path)?;
        return Ok(path);
    }
    browser.keep_screenshot("dashboard")
}
