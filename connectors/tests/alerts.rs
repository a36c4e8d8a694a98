#![allow(clippy::unwrap_used)]
//! The alert outputs against a real HTTP receiver (a tiny_http server on a
//! free port of 127.0.0.1, in the test) and a real log file: what arrives,
//! retries, dead letters, Slack messages, the log's appending.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iotql_connectors::alert::AlertOutput;
use iotql_connectors::endpoint::{self, OutputSpec};
use iotql_engine::arrow::array::{
    ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use iotql_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::io::{Sink, SinkMetrics};
use serde_json::{Value, json};

/// What the receiver answers to one request.
#[derive(Debug, Clone)]
enum Reply {
    Status(u16),
    /// A status and a body.
    Body(u16, &'static str),
    /// 429 with `Retry-After: 0`.
    TooMany,
    /// No answer at all: the request is held until the test ends, so the
    /// client's timeout fires.
    Hang,
}

/// A request as the receiver saw it, and the status it answered.
#[derive(Debug, Clone)]
struct Received {
    body: String,
    headers: BTreeMap<String, String>,
    status: Option<u16>,
}

/// An HTTP receiver that records requests and answers from a plan (then 200).
struct Receiver {
    url: String,
    server: Arc<tiny_http::Server>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(plan: Vec<Reply>) -> Receiver {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}/alerts", server.server_addr().to_ip().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (server.clone(), received.clone());
        std::thread::spawn(move || serve(&s, plan.into(), &r));
        Receiver {
            url,
            server,
            received,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The bodies of the requests answered with 2xx, as JSON, without
    /// their alerts' idempotency keys (checked, then taken out).
    fn delivered(&self) -> Vec<Value> {
        self.delivered_with_keys()
            .into_iter()
            .map(|mut v| {
                without_key(&mut v);
                v
            })
            .collect()
    }

    /// The bodies of the requests answered with 2xx, as JSON.
    fn delivered_with_keys(&self) -> Vec<Value> {
        self.received()
            .iter()
            .filter(|r| r.status.is_some_and(|s| (200..300).contains(&s)))
            .map(|r| serde_json::from_str(&r.body).unwrap())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

/// Takes the `idempotency_key` out of an alert (or each alert of an
/// array), checking that it is there: 32 hex digits.
fn without_key(alert: &mut Value) -> String {
    match alert {
        Value::Array(alerts) => alerts.iter_mut().map(without_key).collect(),
        Value::Object(fields) => {
            let key = fields
                .shift_remove("idempotency_key")
                .and_then(|k| k.as_str().map(String::from))
                .unwrap_or_else(|| panic!("no idempotency_key in {fields:?}"));
            assert!(
                key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit()),
                "{key}"
            );
            key
        }
        other => panic!("not an alert: {other}"),
    }
}

fn serve(server: &tiny_http::Server, mut plan: VecDeque<Reply>, received: &Mutex<Vec<Received>>) {
    let mut held = Vec::new();
    for mut request in server.incoming_requests() {
        let mut body = String::new();
        request.as_reader().read_to_string(&mut body).unwrap();
        let headers = request
            .headers()
            .iter()
            .map(|h| {
                (
                    h.field.as_str().as_str().to_ascii_lowercase(),
                    h.value.as_str().to_string(),
                )
            })
            .collect();
        let reply = plan.pop_front().unwrap_or(Reply::Status(200));
        let status = match reply {
            Reply::Hang => None,
            Reply::Status(s) | Reply::Body(s, _) => Some(s),
            Reply::TooMany => Some(429),
        };
        received.lock().unwrap().push(Received {
            body,
            headers,
            status,
        });
        let response = match reply {
            Reply::Hang => {
                held.push(request);
                continue;
            }
            Reply::Status(s) => tiny_http::Response::from_string("").with_status_code(s),
            Reply::Body(s, text) => tiny_http::Response::from_string(text).with_status_code(s),
            Reply::TooMany => tiny_http::Response::from_string("slow down")
                .with_status_code(429)
                .with_header(tiny_http::Header::from_bytes("Retry-After", "0").unwrap()),
        };
        let _ = request.respond(response);
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("deviceId", DataType::Utf8, true),
        Field::new("temperature", DataType::Float64, true),
        Field::new("threshold", DataType::Int64, true),
        Field::new(
            "windowEnd",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
    ]))
}

/// 2026-01-01T10:00:00Z plus `minutes`, in microseconds.
fn at(minutes: i64) -> i64 {
    (1_767_261_600 + minutes * 60) * 1_000_000
}

/// Alerts `dev-N` for each N in `devices`, 80.5 + N degrees, at minute N.
fn alerts(devices: &[i64]) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            devices.iter().map(|d| format!("dev-{d}")),
        )),
        Arc::new(Float64Array::from_iter_values(
            devices.iter().map(|&d| 80.5 + d as f64),
        )),
        Arc::new(Int64Array::from_iter_values(devices.iter().map(|_| 80))),
        Arc::new(TimestampMicrosecondArray::from_iter_values(
            devices.iter().map(|&d| at(d)),
        )),
    ];
    RecordBatch::try_new(schema(), columns).unwrap()
}

/// The JSON an alert of `alerts` is written as.
fn alert_json(device: i64) -> Value {
    json!({
        "deviceId": format!("dev-{device}"),
        "temperature": 80.5 + device as f64,
        "threshold": 80,
        "windowEnd": format!("2026-01-01T10:{device:02}:00.000Z"),
    })
}

fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A started sink of a declaration's options.
fn sink(pairs: &[(&str, &str)]) -> Box<dyn Sink> {
    let spec = endpoint::output_from_options(&options(pairs), Path::new("/")).unwrap();
    let mut sink = endpoint::open_sink("alerts", &spec);
    sink.start(&schema()).unwrap();
    sink
}

fn counts(metrics: &SinkMetrics) -> (u64, u64, u64) {
    (
        metrics.rows_written.load(Ordering::Relaxed),
        metrics.retries.load(Ordering::Relaxed),
        metrics.failures.load(Ordering::Relaxed),
    )
}

#[test]
fn a_webhook_receives_each_row_as_a_json_object() {
    let receiver = Receiver::start(vec![]);
    let spec = endpoint::parse_output_uri(&format!("webhook:{}", receiver.url)).unwrap();
    assert!(matches!(&spec, OutputSpec::Alert(a) if matches!(**a, AlertOutput::Webhook(_))));
    let mut sink = endpoint::open_sink("alerts", &spec);
    sink.start(&schema()).unwrap();
    sink.write(&alerts(&[1, 2])).unwrap();
    sink.write(&alerts(&[3])).unwrap();
    sink.flush().unwrap();
    sink.finish().unwrap();
    assert_eq!(
        receiver.delivered(),
        vec![alert_json(1), alert_json(2), alert_json(3)]
    );
    let first = &receiver.received()[0];
    assert_eq!(
        first.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(counts(&sink.metrics().unwrap()), (3, 0, 0));
    assert!(sink.take_dead_letters().is_empty());
}

#[test]
fn batch_array_posts_a_write_as_one_array_with_the_headers() {
    let receiver = Receiver::start(vec![]);
    let mut sink = sink(&[
        ("connector", "webhook"),
        ("url", &receiver.url),
        ("batch", "array"),
        ("headers", "Authorization: Bearer t0k3n; X-Source: iotql"),
    ]);
    sink.write(&alerts(&[1, 2, 3])).unwrap();
    sink.finish().unwrap();
    assert_eq!(
        receiver.delivered(),
        vec![json!([alert_json(1), alert_json(2), alert_json(3)])]
    );
    let headers = &receiver.received()[0].headers;
    assert_eq!(
        headers.get("authorization").map(String::as_str),
        Some("Bearer t0k3n")
    );
    assert_eq!(headers.get("x-source").map(String::as_str), Some("iotql"));
    assert_eq!(counts(&sink.metrics().unwrap()), (3, 0, 0));
}

#[test]
fn failures_then_success_deliver_each_row_once_and_count_the_retries() {
    use Reply::*;
    let receiver = Receiver::start(vec![
        Status(503),
        Status(500),
        Status(200),
        TooMany,
        Status(200),
    ]);
    let mut sink = sink(&[
        ("connector", "webhook"),
        ("url", &receiver.url),
        ("retry_delay", "1ms"),
    ]);
    sink.write(&alerts(&[1, 2])).unwrap();
    sink.finish().unwrap();
    assert_eq!(receiver.delivered(), vec![alert_json(1), alert_json(2)]);
    assert_eq!(receiver.received().len(), 5);
    assert_eq!(counts(&sink.metrics().unwrap()), (2, 3, 0));
    assert!(sink.take_dead_letters().is_empty());
}

#[test]
fn a_refusal_and_exhausted_retries_become_dead_letters_and_the_job_goes_on() {
    use Reply::*;
    let receiver = Receiver::start(vec![
        Body(400, "unknown field\nmore"),
        Status(503),
        Status(503),
        Status(503),
    ]);
    let mut sink = sink(&[
        ("connector", "webhook"),
        ("url", &format!("{}?token=secret", receiver.url)),
        ("retries", "2"),
        ("retry_delay", "1ms"),
    ]);
    sink.write(&alerts(&[1, 2, 3])).unwrap();
    sink.finish().unwrap();
    assert_eq!(receiver.delivered(), vec![alert_json(3)]);
    assert_eq!(
        receiver.received().len(),
        5,
        "400 once, 503 three times, then 200"
    );
    assert_eq!(counts(&sink.metrics().unwrap()), (1, 2, 2));
    let letters = sink.take_dead_letters();
    assert_eq!(letters.len(), 2);
    let url = receiver.url.as_str();
    assert_eq!(letters[0].input, "alerts");
    assert_eq!(letters[0].position, "row 1");
    assert_eq!(
        letters[0].reason,
        format!("webhook {url}: HTTP 400 Bad Request: \"unknown field\" (refused: not retried)")
    );
    assert_eq!(raw_alert(&letters[0].raw), alert_json(1));
    assert_eq!(letters[1].position, "row 2");
    assert_eq!(
        letters[1].reason,
        format!("webhook {url}: HTTP 503 Service Unavailable after 3 attempts")
    );
    assert_eq!(raw_alert(&letters[1].raw), alert_json(2));
    assert!(sink.take_dead_letters().is_empty(), "taken once");
}

#[test]
fn a_receiver_slower_than_the_timeout_is_retried() {
    let receiver = Receiver::start(vec![Reply::Hang, Reply::Hang, Reply::Hang]);
    let mut sink = sink(&[
        ("connector", "webhook"),
        ("url", &receiver.url),
        ("timeout", "300ms"),
        ("retries", "1"),
        ("retry_delay", "1ms"),
    ]);
    sink.write(&alerts(&[1, 2])).unwrap();
    sink.finish().unwrap();
    assert_eq!(receiver.delivered(), vec![alert_json(2)]);
    assert_eq!(counts(&sink.metrics().unwrap()), (1, 2, 1));
    let letters = sink.take_dead_letters();
    assert_eq!(
        letters[0].reason,
        format!(
            "webhook {}: no response within 300ms (timeout) after 2 attempts",
            receiver.url
        )
    );
}

#[test]
fn a_receiver_that_is_not_there_is_retried_then_dead_lettered() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut sink = sink(&[
        ("connector", "webhook"),
        ("url", &format!("http://127.0.0.1:{port}/alerts")),
        ("retries", "1"),
        ("retry_delay", "1ms"),
    ]);
    sink.write(&alerts(&[1])).unwrap();
    sink.finish().unwrap();
    assert_eq!(counts(&sink.metrics().unwrap()), (0, 1, 1));
    let letters = sink.take_dead_letters();
    assert_eq!(letters.len(), 1);
    let reason = &letters[0].reason;
    assert!(
        reason.starts_with(&format!("webhook http://127.0.0.1:{port}/alerts: "))
            && reason.ends_with(" after 2 attempts"),
        "{reason}"
    );
}

/// A dead letter's `raw`: the alert's row, its key checked and taken out.
fn raw_alert(raw: &str) -> Value {
    let mut alert = serde_json::from_str(raw).unwrap();
    without_key(&mut alert);
    alert
}

/// The texts of the Slack messages the receiver took.
fn slack_texts(receiver: &Receiver) -> Vec<String> {
    receiver
        .delivered()
        .into_iter()
        .map(|message| {
            let object = message.as_object().unwrap();
            assert_eq!(object.len(), 1, "text and the key: {message}");
            object["text"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn slack_gets_a_readable_message_of_every_column() {
    let receiver = Receiver::start(vec![Reply::TooMany]);
    let mut sink = sink(&[
        ("connector", "slack"),
        ("url", &receiver.url),
        ("retry_delay", "1ms"),
    ]);
    sink.write(&alerts(&[3, 4])).unwrap();
    sink.finish().unwrap();
    assert_eq!(
        slack_texts(&receiver),
        vec![
            ":rotating_light: *alerts* deviceId=dev-3 · temperature=83.5 · threshold=80 · at 2026-01-01 10:03:00Z",
            ":rotating_light: *alerts* deviceId=dev-4 · temperature=84.5 · threshold=80 · at 2026-01-01 10:04:00Z",
        ]
    );
    assert_eq!(counts(&sink.metrics().unwrap()), (2, 1, 0));
}

#[test]
fn slack_fills_the_text_template_and_escapes_values() {
    let receiver = Receiver::start(vec![Reply::Status(404)]);
    let mut sink = sink(&[
        ("connector", "slack"),
        ("url", &receiver.url),
        (
            "text",
            "<!here> {DEVICEID}: temperature {temperature} above {threshold} at {windowEnd}",
        ),
    ]);
    let batch = alerts(&[1, 2]);
    sink.write(&batch).unwrap();
    let mut columns = batch.columns().to_vec();
    columns[0] = Arc::new(StringArray::from(vec![Some("<b&d>"), None]));
    sink.write(&RecordBatch::try_new(schema(), columns).unwrap())
        .unwrap();
    sink.finish().unwrap();
    assert_eq!(
        slack_texts(&receiver),
        vec![
            "<!here> dev-2: temperature 82.5 above 80 at 2026-01-01 10:02:00Z",
            "<!here> &lt;b&amp;d&gt;: temperature 81.5 above 80 at 2026-01-01 10:01:00Z",
            "<!here> NULL: temperature 82.5 above 80 at 2026-01-01 10:02:00Z",
        ]
    );
    let letters = sink.take_dead_letters();
    assert_eq!(letters.len(), 1, "the 404");
    assert!(
        letters[0].reason.starts_with("slack http://127.0.0.1:")
            && letters[0]
                .reason
                .ends_with("/alerts: HTTP 404 Not Found (refused: not retried)"),
        "{}",
        letters[0].reason
    );
    assert_eq!(
        raw_alert(&letters[0].raw),
        alert_json(1),
        "a dead letter holds the row, not the message"
    );
}

#[test]
fn a_template_column_the_output_lacks_refuses_the_start() {
    let spec = endpoint::output_from_options(
        &options(&[
            ("connector", "slack"),
            ("url", "https://hooks.slack.com/services/T0/B0/XXXX"),
            ("text", "{deviceId} is at {temprature}"),
        ]),
        Path::new("/"),
    )
    .unwrap();
    let mut sink = endpoint::open_sink("alerts", &spec);
    let err = sink.start(&schema()).unwrap_err().to_string();
    assert!(
        err.contains(
            "text `{deviceId} is at {temprature}`: the output has no column `temprature` (its columns: deviceId, temperature, threshold, windowEnd)"
        ),
        "{err}"
    );
}

/// The alerts of a log, their keys checked and taken out.
fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(raw_alert)
        .collect()
}

#[test]
fn an_alert_log_is_appended_to_across_runs_and_never_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let spec = endpoint::output_from_options(
        &options(&[
            ("connector", "log"),
            ("path", "logs/alerts.jsonl"),
            ("max_latency", "1h"),
        ]),
        dir.path(),
    )
    .unwrap();
    let path = dir.path().join("logs/alerts.jsonl");

    let mut first = endpoint::open_sink("alerts", &spec);
    first.start(&schema()).unwrap();
    first.write(&alerts(&[1, 2])).unwrap();
    assert!(log_lines(&path).is_empty(), "held until flushed");
    first.flush().unwrap();
    assert_eq!(log_lines(&path), vec![alert_json(1), alert_json(2)]);
    first.finish().unwrap();
    assert_eq!(counts(&first.metrics().unwrap()), (2, 0, 0));

    let mut second = endpoint::open_sink("alerts", &spec);
    second.start(&schema()).unwrap();
    second.write(&alerts(&[3])).unwrap();
    second.finish().unwrap();
    assert_eq!(
        log_lines(&path),
        vec![alert_json(1), alert_json(2), alert_json(3)]
    );
}

#[test]
fn an_alert_log_writes_rows_out_on_tick_after_the_max_latency() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.jsonl");
    let spec = endpoint::parse_output_uri(&format!("log:{}", path.display())).unwrap();
    let mut sink = endpoint::open_sink("alerts", &spec);
    sink.start(&schema()).unwrap();
    sink.write(&alerts(&[1])).unwrap();
    // The default max latency is 200 ms: ticks write the row out soon.
    let deadline = Instant::now() + Duration::from_secs(30);
    while log_lines(&path).is_empty() {
        assert!(Instant::now() < deadline, "not written by ticks in 30 s");
        std::thread::sleep(Duration::from_millis(20));
        sink.tick().unwrap();
    }
    assert_eq!(log_lines(&path), vec![alert_json(1)]);
    sink.finish().unwrap();
    assert_eq!(log_lines(&path), vec![alert_json(1)]);
}

#[test]
fn alert_connectors_are_outputs_only() {
    let err = endpoint::parse_input_uri("webhook:http://127.0.0.1:1/x").unwrap_err();
    assert!(err.contains("`webhook` is an output connector"), "{err}");
    let err = endpoint::input_from_options(
        &options(&[("connector", "log"), ("path", "a.jsonl")]),
        Path::new("/"),
    )
    .unwrap_err();
    assert!(err.contains("read an alert log with jsonl:PATH"), "{err}");
}

#[test]
fn every_alert_has_an_idempotency_key_in_its_body_and_header_the_same_when_made_again() {
    let receiver = Receiver::start(vec![]);
    for key in ["", "deviceId"] {
        let mut pairs = vec![("connector", "webhook"), ("url", receiver.url.as_str())];
        if !key.is_empty() {
            pairs.push(("key", key));
        }
        // The same alerts made twice (a replay after a crash).
        for _ in 0..2 {
            let mut sink = sink(&pairs);
            sink.write_at(&alerts(&[1, 2]), &[at(1), at(2)]).unwrap();
            sink.finish().unwrap();
        }
    }
    let received = receiver.received();
    let keys: Vec<String> = received
        .iter()
        .map(|r| {
            let mut body: Value = serde_json::from_str(&r.body).unwrap();
            let key = without_key(&mut body);
            assert_eq!(
                r.headers.get("idempotency-key"),
                Some(&key),
                "header = body"
            );
            key
        })
        .collect();
    assert_eq!(keys.len(), 8);
    assert_eq!(keys[0..2], keys[2..4], "made again: the same keys");
    assert_ne!(keys[0], keys[1]);
    assert_eq!(keys[4..6], keys[6..8]);
    assert_ne!(keys[0..2], keys[4..6], "the key columns count");
}

/// A started sink of a declaration's options, in a run with checkpoints.
fn outbox_sink(pairs: &[(&str, &str)], state: Option<&[u8]>) -> Box<dyn Sink> {
    let spec = endpoint::output_from_options(&options(pairs), Path::new("/")).unwrap();
    let mut sink = endpoint::open_sink("alerts", &spec);
    sink.enable_checkpoints("iotql-test-alerts").unwrap();
    if let Some(state) = state {
        sink.recover(state).unwrap();
    }
    sink.start(&schema()).unwrap();
    sink
}

/// Waits until `done` holds (the outbox delivers on its own thread).
fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "not within 30 s: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A URL where nothing listens.
fn nobody_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}/alerts")
}

#[test]
fn with_checkpoints_an_alert_goes_once_a_checkpoint_holds_it_and_a_resumed_run_sends_it_again() {
    let receiver = Receiver::start(vec![Reply::Status(503), Reply::Status(503)]);
    let pairs = [
        ("connector", "webhook"),
        ("url", receiver.url.as_str()),
        ("retry_delay", "1ms"),
    ];
    let mut sink = outbox_sink(&pairs, None);
    sink.write_at(&alerts(&[1, 2]), &[at(1), at(2)]).unwrap();
    assert!(sink.wants_checkpoint(), "it asks for a checkpoint");
    assert!(
        receiver.received().is_empty(),
        "nothing before the checkpoint"
    );
    let state = sink.checkpoint().unwrap().unwrap();
    assert!(!sink.wants_checkpoint());
    sink.committed().unwrap();
    let metrics = sink.metrics().unwrap();
    // The receiver has a row before the outbox thread counts it.
    until("two alerts delivered after two 503s, and counted", || {
        receiver.delivered().len() == 2 && counts(&metrics).0 == 2
    });
    assert_eq!(receiver.delivered(), vec![alert_json(1), alert_json(2)]);
    assert_eq!(counts(&metrics), (2, 2, 0));
    assert_eq!(
        metrics.outages.load(Ordering::Relaxed),
        1,
        "one outage, two failures"
    );
    assert_eq!(metrics.down_since_ms.load(Ordering::Relaxed), 0, "over");
    // A crash before the next checkpoint: the run resumes from `state`,
    // whose alerts were not confirmed, and sends them again, same keys.
    drop(sink);
    let mut resumed = outbox_sink(&pairs, Some(&state));
    until("sent again", || receiver.delivered().len() == 4);
    resumed.finish().unwrap();
    let all = receiver.delivered_with_keys();
    assert_eq!(all[0..2], all[2..4]);
    assert!(resumed.take_dead_letters().is_empty());
}

#[test]
fn the_end_of_a_run_waits_up_to_drain_timeout_then_dead_letters_and_a_stop_leaves_the_outbox() {
    let url = nobody_url();
    let pairs = [
        ("connector", "webhook"),
        ("url", url.as_str()),
        ("retry_delay", "1ms"),
        ("max_retry_delay", "20ms"),
        ("drain_timeout", "300ms"),
    ];
    // Stopped at a checkpoint: nothing is given up, the checkpoint holds it.
    let mut sink = outbox_sink(&pairs, None);
    sink.write_at(&alerts(&[1]), &[at(1)]).unwrap();
    let state = sink.checkpoint().unwrap().unwrap();
    sink.committed().unwrap();
    sink.stop().unwrap();
    assert!(sink.take_dead_letters().is_empty());

    // The next run ends with the receiver still away: after the drain
    // timeout, dead letters with the reason.
    let mut sink = outbox_sink(&pairs, Some(&state));
    sink.write_at(&alerts(&[2]), &[at(2)]).unwrap();
    let started = Instant::now();
    sink.finish().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    let letters = sink.take_dead_letters();
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(
        letters[0].position.starts_with("alert "),
        "{}",
        letters[0].position
    );
    assert!(
        letters[0]
            .reason
            .contains("not delivered within drain_timeout = 300ms at the end of the run after"),
        "{}",
        letters[0].reason
    );
    assert_eq!(raw_alert(&letters[0].raw), alert_json(1));
    assert_eq!(raw_alert(&letters[1].raw), alert_json(2));
    let metrics = sink.metrics().unwrap();
    assert_eq!(metrics.failures.load(Ordering::Relaxed), 2);
    assert_eq!(metrics.outages.load(Ordering::Relaxed), 1);
}

#[test]
fn an_alert_log_with_checkpoints_is_written_after_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.jsonl");
    let pairs = [("connector", "log"), ("path", path.to_str().unwrap())];
    let mut sink = outbox_sink(&pairs, None);
    sink.write_at(&alerts(&[1, 2]), &[at(1), at(2)]).unwrap();
    sink.flush().unwrap();
    assert!(
        log_lines(&path).is_empty(),
        "held until a checkpoint holds it"
    );
    sink.checkpoint().unwrap();
    sink.committed().unwrap();
    until("written", || log_lines(&path).len() == 2);
    sink.finish().unwrap();
    assert_eq!(log_lines(&path), vec![alert_json(1), alert_json(2)]);
}
