#![allow(clippy::unwrap_used)]
//! Tests of the browser harness (`common::browser`) that the dashboard's
//! tests stand on, against a page served on loopback by this test: the page
//! fetches readings as JSON after a delay and renders them into a table and
//! an SVG chart, as the dashboard renders what the API serves. The server
//! holds the JSON until the test releases it, so the test sees the page
//! before and after it renders.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::browser::{Browser, BrowserError, WINDOW_SIZE, png_size};
use serde_json::json;

/// How long a page may take to render (Chromium shares 2 cores with the
/// build and the other tests).
const RENDER: Duration = Duration::from_secs(30);

/// The page: after 200 ms it fetches /readings.json, then fills the table
/// and draws a bar per device.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>iotql harness</title>
<link rel="icon" href="data:,">
<style>
  body { font-family: sans-serif; margin: 24px; }
  table { border-collapse: collapse; margin-bottom: 16px; }
  td, th { border: 1px solid #999; padding: 4px 12px; }
  rect.bar { fill: #3b7dd8; }
</style></head>
<body>
<h1>Readings</h1>
<p id="status">waiting for readings</p>
<table id="readings"><thead><tr><th>device</th><th>temperature_c</th></tr></thead><tbody></tbody></table>
<svg id="chart" width="400" height="220" xmlns="http://www.w3.org/2000/svg">
  <text class="title" x="10" y="20">temperature_c</text>
</svg>
<script>
setTimeout(async () => {
  const readings = await (await fetch('/readings.json')).json();
  const body = document.querySelector('#readings tbody');
  const chart = document.getElementById('chart');
  readings.forEach((r, i) => {
    const row = body.insertRow();
    row.insertCell().textContent = r.device;
    row.insertCell().textContent = r.temperature_c.toFixed(1);
    const bar = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
    const height = r.temperature_c * 5;
    bar.setAttribute('class', 'bar');
    bar.setAttribute('x', 20 + i * 60);
    bar.setAttribute('y', 210 - height);
    bar.setAttribute('width', 40);
    bar.setAttribute('height', height);
    chart.appendChild(bar);
  });
  document.getElementById('status').textContent = readings.length + ' devices';
}, 200);
</script>
</body></html>"#;

/// A page whose script fails before it renders anything.
const BROKEN_PAGE: &str = r#"<!doctype html>
<html><head><link rel="icon" href="data:,"></head>
<body><p>no readings yet</p>
<script>console.error('readings feed unreachable'); renderReadings();</script>
</body></html>"#;

/// Serves `PAGE` at `/`, `BROKEN_PAGE` at `/broken` and the readings at
/// `/readings.json` once the test sends on `release`; counts the readings
/// requests. Each request has a thread, so a held one blocks no other.
struct PageServer {
    server: Arc<tiny_http::Server>,
    url: String,
    release: Sender<()>,
    readings_served: Arc<AtomicUsize>,
}

impl PageServer {
    fn start() -> PageServer {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let (release, released) = channel();
        let released = Arc::new(Mutex::new(released));
        let readings_served = Arc::new(AtomicUsize::new(0));
        let (incoming, served) = (server.clone(), readings_served.clone());
        std::thread::spawn(move || {
            for request in incoming.incoming_requests() {
                let (released, served) = (released.clone(), served.clone());
                std::thread::spawn(move || respond(request, &released, &served));
            }
        });
        PageServer {
            server,
            url,
            release,
            readings_served,
        }
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

fn respond(request: tiny_http::Request, released: &Mutex<Receiver<()>>, served: &AtomicUsize) {
    let (body, kind) = match request.url() {
        "/" => (PAGE.to_string(), "text/html; charset=utf-8"),
        "/broken" => (BROKEN_PAGE.to_string(), "text/html; charset=utf-8"),
        "/readings.json" => {
            // Held until the test has looked at the page without them.
            let _ = released
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(60));
            served.fetch_add(1, Ordering::SeqCst);
            let readings = json!([
                { "device": "dev-1", "temperature_c": 21.5 },
                { "device": "dev-2", "temperature_c": 22.5 },
                { "device": "dev-3", "temperature_c": 31.0 },
            ]);
            (readings.to_string(), "application/json")
        }
        _ => {
            let _ = request.respond(tiny_http::Response::empty(404));
            return;
        }
    };
    let header = tiny_http::Header::from_bytes("Content-Type", kind).unwrap();
    let _ = request.respond(tiny_http::Response::from_string(body).with_header(header));
}

#[test]
fn a_page_that_renders_fetched_data_is_read_and_photographed() -> Result<(), BrowserError> {
    let server = PageServer::start();
    let browser = Browser::start()?;
    browser.goto(&server.url)?;

    // Loaded, not rendered: the readings are held.
    assert_eq!(browser.text("#status")?, "waiting for readings");
    assert_eq!(browser.count("#readings tbody tr")?, 0);
    server.release.send(()).unwrap();

    browser.wait_for(
        "a table row per device",
        RENDER,
        "document.querySelectorAll('#readings tbody tr').length === 3",
    )?;
    assert_eq!(server.readings_served.load(Ordering::SeqCst), 1);
    assert_eq!(browser.text("#status")?, "3 devices");
    assert_eq!(
        browser.text("#readings tbody tr:nth-child(2)")?,
        "dev-2\t22.5"
    );
    assert_eq!(
        browser.text("#readings tbody tr:nth-child(3) td:nth-child(2)")?,
        "31.0"
    );
    // The SVG: its bars and its title (an SVG element's text).
    assert_eq!(browser.count("svg#chart rect.bar")?, 3);
    assert_eq!(browser.text("svg#chart text.title")?, "temperature_c");
    let heights = browser.script(
        "return Array.from(document.querySelectorAll('svg#chart rect.bar'), \
         b => b.getBBox().height);",
    )?;
    assert_eq!(heights, json!([107.5, 112.5, 155]));
    assert_eq!(
        browser.script_with("return arguments[0] * arguments[1];", &[json!(6), json!(7)])?,
        json!(42)
    );
    assert_eq!(browser.console_errors()?, Vec::<String>::new());

    // The screenshot is a PNG of the viewport: the window's width, its
    // height less the frame headless Chromium simulates.
    let viewport = browser
        .script("return [innerWidth * devicePixelRatio, innerHeight * devicePixelRatio];")?;
    let path = browser.keep_screenshot("browser_harness")?;
    let (width, height) = png_size(&path).expect("the screenshot is a PNG");
    assert_eq!(json!([width, height]), viewport);
    assert_eq!(width, WINDOW_SIZE.0);
    assert!(
        height > WINDOW_SIZE.1 / 2 && height <= WINDOW_SIZE.1,
        "height {height}"
    );
    Ok(())
}

#[test]
fn failures_say_what_the_page_shows_and_what_chromedriver_said() -> Result<(), BrowserError> {
    let server = PageServer::start();
    let browser = Browser::start()?;
    browser.goto(&format!("{}/broken", server.url))?;

    let timeout = browser
        .wait_for(
            "the readings table",
            Duration::from_millis(500),
            "document.querySelector('#readings')",
        )
        .unwrap_err()
        .to_string();
    assert!(
        timeout.contains("waiting for the readings table"),
        "{timeout}"
    );
    assert!(timeout.contains("page text:\nno readings yet"), "{timeout}");
    assert!(timeout.contains("readings feed unreachable"), "{timeout}");
    assert!(
        timeout.contains("renderReadings is not defined"),
        "{timeout}"
    );

    let missing = browser.text("#readings").unwrap_err().to_string();
    assert_eq!(missing, "no element matches `#readings`");
    let thrown = browser
        .script("return readings.length;")
        .unwrap_err()
        .to_string();
    assert!(
        thrown.contains("javascript error: readings is not defined"),
        "{thrown}"
    );
    let invalid = browser.goto("no-scheme").unwrap_err().to_string();
    assert!(invalid.contains("loading no-scheme"), "{invalid}");
    assert!(invalid.contains("invalid argument"), "{invalid}");
    Ok(())
}
