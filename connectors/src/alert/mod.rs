//! Alert outputs: `webhook:` (a JSON POST per alert), `slack:` (a Slack
//! incoming-webhook message per alert) and `log:` (an append-only JSON-lines
//! alert log).
//!
//! The two HTTP outputs share [`Delivery`]: a keep-alive agent with a
//! timeout, retries with exponential backoff and jitter (a receiver's
//! `Retry-After` is honoured), and dead letters for the rows the receiver
//! refused or kept failing on. Delivery is synchronous: `write` returns once
//! its rows are delivered or given up on, so an alert is sent as soon as it
//! comes, nothing waits in memory, and a slow or failing receiver slows the
//! job down (backpressure) instead of rows being dropped.

mod log;
mod slack;
mod webhook;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use iotql_engine::error::EngineError;
use iotql_engine::io::{Sink, SinkMetrics};
use iotql_engine::operator::DeadLetter;
use ureq::http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, Uri};

use crate::backoff::Backoff;

pub use log::{LogOutput, LogSink};
pub use slack::{SlackOutput, SlackSink};
pub use webhook::{BatchMode, WebhookOutput, WebhookSink};

/// The connectors of this module, as declarations and URIs name them.
pub const CONNECTORS: &[&str] = &["webhook", "slack", "log"];

/// An alert output: where and how its rows go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertOutput {
    Webhook(WebhookOutput),
    Slack(SlackOutput),
    Log(LogOutput),
}

impl AlertOutput {
    /// `webhook:URL`, `slack:URL` or `log:PATH` (`kind` is the scheme,
    /// `rest` what follows its colon). A URL is taken whole, query included,
    /// since the query belongs to the receiver; the other options are the
    /// defaults (a declaration sets them).
    pub fn from_uri(kind: &str, rest: &str) -> Result<Self, String> {
        let key = if kind == "log" { "path" } else { "url" };
        let options = BTreeMap::from([
            ("connector".to_string(), kind.to_string()),
            (key.to_string(), rest.to_string()),
        ]);
        Self::from_options(&options, Path::new(""))
    }

    /// A declaration's options (`connector = 'webhook', url = '...'`); a
    /// relative log path is taken from `base` (the job file's folder).
    pub fn from_options(options: &BTreeMap<String, String>, base: &Path) -> Result<Self, String> {
        let mut options = Options(options.clone());
        let connector = options
            .take("connector")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let (output, known) = match connector.as_str() {
            "webhook" => (
                AlertOutput::Webhook(WebhookOutput::take(&mut options)?),
                [HTTP_OPTIONS, webhook::OPTIONS].concat(),
            ),
            "slack" => (
                AlertOutput::Slack(SlackOutput::take(&mut options)?),
                [HTTP_OPTIONS, slack::OPTIONS].concat(),
            ),
            "log" => (
                AlertOutput::Log(LogOutput::take(&mut options, base)?),
                log::OPTIONS.to_vec(),
            ),
            other => {
                return Err(format!(
                    "`{other}` is not an alert connector (they are {})",
                    CONNECTORS.join(", ")
                ));
            }
        };
        options.done(&connector, &known)?;
        Ok(output)
    }

    /// The sink that writes output `name`'s rows.
    pub fn open_sink(&self, name: &str) -> Box<dyn Sink> {
        match self {
            AlertOutput::Webhook(output) => Box::new(WebhookSink::new(name, output.clone())),
            AlertOutput::Slack(output) => Box::new(SlackSink::new(name, output.clone())),
            AlertOutput::Log(output) => Box::new(LogSink::new(name, output.clone())),
        }
    }
}

/// A declaration's options, taken out as they are read, so that a misspelt
/// one is refused rather than ignored.
#[derive(Debug)]
struct Options(BTreeMap<String, String>);

impl Options {
    fn take(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    fn duration(&mut self, key: &str, default: Duration) -> Result<Duration, String> {
        match self.take(key) {
            None => Ok(default),
            Some(v) => {
                iotql_engine::time::parse_duration(&v).map_err(|e| format!("{key} = '{v}': {e}"))
            }
        }
    }

    fn number<T: std::str::FromStr>(&mut self, key: &str, default: T) -> Result<T, String> {
        match self.take(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("{key} = '{v}' is not a whole number")),
        }
    }

    /// Refuses the options nobody took, naming the connector's.
    fn done(self, connector: &str, known: &[&str]) -> Result<(), String> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(unknown) => Err(format!(
                "the `{connector}` connector has no option `{unknown}` (its options: {})",
                known.join(", ")
            )),
        }
    }
}

/// The options of both HTTP outputs.
const HTTP_OPTIONS: &[&str] = &[
    "url",
    "timeout",
    "retries",
    "retry_delay",
    "max_retry_delay",
    "headers",
];

/// An HTTP receiver and how to deliver to it. Its `Debug` shows the URL
/// without its token and the headers' names only.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// `http://` or `https://`.
    pub url: String,
    /// The longest one attempt may take, from connecting to the end of the
    /// response.
    pub timeout: Duration,
    /// Attempts after the first before a row becomes a dead letter.
    pub retries: u32,
    /// The delay before the first retry; it doubles per retry.
    pub retry_delay: Duration,
    /// The longest delay between attempts, also for a `Retry-After`.
    pub max_retry_delay: Duration,
    /// Sent with every request (`Authorization`, ...).
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(name, _)| format!("{name}: {}", crate::secret::MASK))
            .collect();
        f.debug_struct("HttpTarget")
            .field("url", &self.shown())
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("retry_delay", &self.retry_delay)
            .field("max_retry_delay", &self.max_retry_delay)
            .field("headers", &headers)
            .finish()
    }
}

impl HttpTarget {
    fn take(options: &mut Options, connector: &str) -> Result<Self, String> {
        let url = options
            .take("url")
            .ok_or_else(|| format!("the `{connector}` connector needs `url = 'https://...'`"))?;
        check_url(&url)?;
        Ok(HttpTarget {
            url,
            timeout: options.duration("timeout", Duration::from_secs(5))?,
            retries: options.number("retries", 5)?,
            retry_delay: options.duration("retry_delay", Duration::from_millis(500))?,
            max_retry_delay: options.duration("max_retry_delay", Duration::from_secs(60))?,
            headers: match options.take("headers") {
                Some(text) => parse_headers(&text)?,
                None => Vec::new(),
            },
        })
    }

    /// The URL for messages and dead letters, without what often holds a
    /// secret (`secret::url_shown`): `https://hooks.slack.com/services/…`.
    fn shown(&self) -> String {
        crate::secret::url_shown(&self.url)
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let hint = "write http://HOST[:PORT]/PATH or https://...";
    // The URL is shown without its token (`secret::url_shown`).
    let shown = crate::secret::url_shown(url);
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("url `{shown}` is not a URL ({e}): {hint}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(()),
        _ => Err(format!("url `{shown}`: {hint}")),
    }
}

/// `Name: value; Name: value`.
fn parse_headers(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut headers = Vec::new();
    for header in text.split(';').map(str::trim).filter(|h| !h.is_empty()) {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("header `{header}`: write `Name: value`"))?;
        let (name, value) = (name.trim(), value.trim());
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("header `{header}`: `{name}` is not a header name"))?;
        HeaderValue::from_str(value).map_err(|_| {
            format!("header `{header}`: the value has characters a header cannot hold")
        })?;
        if ["content-length", "host", "transfer-encoding"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            return Err(format!("header `{name}` is set by the HTTP client"));
        }
        headers.push((name.to_string(), value.to_string()));
    }
    Ok(headers)
}

/// How one attempt ended.
#[derive(Debug)]
enum Outcome {
    Delivered,
    /// A failure that may pass (5xx, 429, a timeout, no connection).
    Failed {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// A failure that would repeat (4xx, a TLS certificate): not retried.
    Refused(String),
}

/// Text of a response body shown in a reason (Slack's `invalid_payload`).
const BODY_SHOWN: usize = 200;
/// Bytes of a response body read (so that the connection can be reused).
const BODY_READ: u64 = 64 * 1024;

/// Sends request bodies to one HTTP receiver; see the module documentation.
pub(crate) struct Delivery {
    /// `webhook http://host/path`, for reasons and logs.
    what: String,
    /// The output's name, for dead letters.
    output: String,
    target: HttpTarget,
    agent: ureq::Agent,
    backoff: Backoff,
    /// The last attempt failed: an outage is logged when it starts and when
    /// it ends, not per row.
    failing: bool,
    /// Rows handed to [`Delivery::send`] so far, to number them.
    rows: u64,
    metrics: Arc<SinkMetrics>,
    dead_letters: Vec<DeadLetter>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("what", &self.what)
            .field("output", &self.output)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Delivery to `target` for output `output` of kind `kind` (`webhook`).
    pub(crate) fn new(kind: &str, output: &str, target: HttpTarget) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(target.timeout))
            // Every status is a response to classify, not an error.
            .http_status_as_error(false)
            // A POST is not followed to another address: a moved receiver
            // is a configuration to fix.
            .max_redirects(0)
            .user_agent(concat!("iotql/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Delivery {
            what: format!("{kind} {}", target.shown()),
            output: output.to_string(),
            backoff: Backoff::new(target.retry_delay, target.max_retry_delay).with_jitter(),
            target,
            agent,
            failing: false,
            rows: 0,
            metrics: Arc::new(SinkMetrics::default()),
            dead_letters: Vec::new(),
        }
    }

    /// An error of the output that stops the job (not a delivery failure).
    pub(crate) fn error(&self, message: impl ToString) -> EngineError {
        EngineError::Sink {
            output: self.output.clone(),
            message: message.to_string(),
        }
    }

    pub(crate) fn metrics(&self) -> Arc<SinkMetrics> {
        self.metrics.clone()
    }

    pub(crate) fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.dead_letters)
    }

    /// POSTs `body` (JSON), which carries `rows` (each row as JSON, for dead
    /// letters), and returns once the receiver has taken it or the rows
    /// have become dead letters.
    pub(crate) fn send(&mut self, body: &[u8], rows: &[&[u8]]) {
        let first = self.rows + 1;
        self.rows += rows.len() as u64;
        let count = rows.len() as u64;
        match self.deliver(body) {
            Ok(()) => {
                self.metrics
                    .rows_written
                    .fetch_add(count, Ordering::Relaxed);
            }
            Err(reason) => {
                self.metrics.failures.fetch_add(count, Ordering::Relaxed);
                self.dead_letters
                    .extend(rows.iter().zip(first..).map(|(row, n)| DeadLetter {
                        input: self.output.clone(),
                        position: format!("row {n}"),
                        reason: reason.clone(),
                        raw: String::from_utf8_lossy(row).into_owned(),
                    }));
            }
        }
    }

    /// Attempts until delivered, refused, or out of retries; the error is
    /// the dead letters' reason.
    fn deliver(&mut self, body: &[u8]) -> Result<(), String> {
        self.backoff.reset();
        let mut attempts: u32 = 0;
        loop {
            attempts += 1;
            let (reason, retry_after) = match self.attempt(body) {
                Outcome::Delivered => {
                    if std::mem::take(&mut self.failing) {
                        tracing::warn!(output = %self.output, "{}: delivering again", self.what);
                    }
                    return Ok(());
                }
                Outcome::Refused(reason) => {
                    self.outage(&reason);
                    return Err(format!("{}: {reason} (refused: not retried)", self.what));
                }
                Outcome::Failed {
                    reason,
                    retry_after,
                } => (reason, retry_after),
            };
            self.outage(&reason);
            if attempts > self.target.retries {
                return Err(format!("{}: {reason} after {attempts} attempts", self.what));
            }
            self.metrics.retries.fetch_add(1, Ordering::Relaxed);
            let backoff = self.backoff.next();
            let delay = retry_after.map_or(backoff, |d| d.min(self.target.max_retry_delay));
            tracing::debug!(output = %self.output, attempt = attempts, ?delay, "{}: {reason}; retrying", self.what);
            std::thread::sleep(delay);
        }
    }

    /// Logs the start of an outage (the first failure after a delivery).
    fn outage(&mut self, reason: &str) {
        if !std::mem::replace(&mut self.failing, true) {
            tracing::warn!(
                output = %self.output,
                "{}: {reason}; rows it refuses or keeps failing on go to the dead-letter output",
                self.what
            );
        }
    }

    fn attempt(&self, body: &[u8]) -> Outcome {
        let mut request = self.agent.post(&self.target.url);
        if !self
            .target
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            request = request.header("Content-Type", "application/json");
        }
        for (name, value) in &self.target.headers {
            request = request.header(name, value);
        }
        match request.send(body) {
            Ok(response) => classify(response),
            Err(ureq::Error::Timeout(_)) => Outcome::Failed {
                reason: format!("no response within {:?} (timeout)", self.target.timeout),
                retry_after: None,
            },
            Err(e) if passing(&e) => Outcome::Failed {
                reason: e.to_string(),
                retry_after: None,
            },
            Err(e) => Outcome::Refused(e.to_string()),
        }
    }
}

/// Whether an error of the HTTP client may pass by itself: the network or
/// the receiver's host (not a certificate or a bad request).
fn passing(error: &ureq::Error) -> bool {
    use ureq::Error;
    matches!(
        error,
        Error::Io(_)
            | Error::HostNotFound
            | Error::ConnectionFailed
            | Error::Protocol(_)
            | Error::BodyStalled
    )
}

/// A response's outcome: 2xx delivered; 5xx, 408 and 429 failed (with
/// the `Retry-After` delay); anything else refused.
fn classify(mut response: Response<ureq::Body>) -> Outcome {
    let status = response.status();
    let retry_after = retry_after(response.headers());
    // Read the body whole, so that the connection can carry the next request.
    let text = response
        .body_mut()
        .with_config()
        .limit(BODY_READ)
        .read_to_string()
        .unwrap_or_default();
    if status.is_success() {
        return Outcome::Delivered;
    }
    let reason = describe(status, &text);
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Outcome::Failed {
            reason,
            retry_after,
        }
    } else {
        Outcome::Refused(reason)
    }
}

/// `HTTP 400 Bad Request: "invalid_payload"` (the start of the body's first line).
fn describe(status: StatusCode, body: &str) -> String {
    let line = body.lines().map(str::trim).find(|l| !l.is_empty());
    match line {
        None => format!("HTTP {status}"),
        Some(line) => {
            let shown: String = line.chars().take(BODY_SHOWN).collect();
            format!("HTTP {status}: {shown:?}")
        }
    }
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2026 07:28:00 GMT`.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::options;

    #[test]
    fn webhook_options_and_defaults() {
        let output =
            AlertOutput::from_uri("webhook", "http://127.0.0.1:9000/alerts?token=x").unwrap();
        let AlertOutput::Webhook(webhook) = output else {
            panic!("not a webhook: {output:?}");
        };
        assert_eq!(webhook.target.url, "http://127.0.0.1:9000/alerts?token=x");
        assert_eq!(webhook.target.timeout, Duration::from_secs(5));
        assert_eq!(webhook.target.retries, 5);
        assert_eq!(webhook.batch, BatchMode::Row);
        assert_eq!(webhook.target.shown(), "http://127.0.0.1:9000/alerts");

        let output = AlertOutput::from_options(
            &options(&[
                ("connector", "webhook"),
                ("url", "https://user:secret@alerts.example/in"),
                ("timeout", "2s"),
                ("retries", "3"),
                ("retry_delay", "100ms"),
                ("batch", "array"),
                ("headers", "Authorization: Bearer abc; X-Source: iotql"),
            ]),
            Path::new("/jobs"),
        )
        .unwrap();
        let AlertOutput::Webhook(webhook) = output else {
            panic!("not a webhook: {output:?}");
        };
        assert_eq!(webhook.target.timeout, Duration::from_secs(2));
        assert_eq!(webhook.target.retries, 3);
        assert_eq!(webhook.target.retry_delay, Duration::from_millis(100));
        assert_eq!(webhook.batch, BatchMode::Array);
        assert_eq!(
            webhook.target.headers,
            vec![
                ("Authorization".to_string(), "Bearer abc".to_string()),
                ("X-Source".to_string(), "iotql".to_string()),
            ]
        );
        assert_eq!(webhook.target.shown(), "https://alerts.example/in");
        let slack =
            AlertOutput::from_uri("slack", "https://hooks.slack.com/services/T0/B0/XXXX").unwrap();
        let AlertOutput::Slack(slack) = slack else {
            panic!("not slack: {slack:?}");
        };
        assert_eq!(slack.target.shown(), "https://hooks.slack.com/services/…");
    }

    #[test]
    fn bad_options_are_refused_with_what_to_write() {
        let base = Path::new("/jobs");
        for (pairs, expected) in [
            (
                vec![
                    ("connector", "webhook"),
                    ("url", "http://h/a"),
                    ("retrys", "3"),
                ],
                "the `webhook` connector has no option `retrys` (its options: url, timeout, retries, retry_delay, max_retry_delay, headers, batch)",
            ),
            (
                vec![
                    ("connector", "slack"),
                    ("url", "https://h/a"),
                    ("batch", "array"),
                ],
                "the `slack` connector has no option `batch` (its options: url, timeout, retries, retry_delay, max_retry_delay, headers, text)",
            ),
            (
                vec![("connector", "log"), ("path", "a.jsonl"), ("url", "x")],
                "the `log` connector has no option `url` (its options: path, max_latency, batch_size)",
            ),
            (
                vec![("connector", "webhook")],
                "needs `url = 'https://...'`",
            ),
            (
                vec![("connector", "webhook"), ("url", "ftp://h/a")],
                "write http://HOST[:PORT]/PATH",
            ),
            (
                vec![("connector", "webhook"), ("url", "h/a")],
                "write http://HOST[:PORT]/PATH",
            ),
            (
                vec![
                    ("connector", "webhook"),
                    ("url", "http://h/a"),
                    ("timeout", "soon"),
                ],
                "timeout = 'soon'",
            ),
            (
                vec![
                    ("connector", "webhook"),
                    ("url", "http://h/a"),
                    ("retries", "-1"),
                ],
                "retries = '-1' is not a whole number",
            ),
            (
                vec![
                    ("connector", "webhook"),
                    ("url", "http://h/a"),
                    ("batch", "all"),
                ],
                "batch = 'all': use row",
            ),
            (
                vec![
                    ("connector", "webhook"),
                    ("url", "http://h/a"),
                    ("headers", "Bearer x"),
                ],
                "write `Name: value`",
            ),
            (
                vec![
                    ("connector", "webhook"),
                    ("url", "http://h/a"),
                    ("headers", "Host: x"),
                ],
                "set by the HTTP client",
            ),
            (
                vec![
                    ("connector", "slack"),
                    ("url", "https://h/a"),
                    ("text", "{a"),
                ],
                "text `{a`: `{` without a closing `}`",
            ),
            (vec![("connector", "log")], "needs `path = '...'`"),
        ] {
            let err = AlertOutput::from_options(&options(&pairs), base)
                .expect_err(&format!("{pairs:?} is refused"));
            assert!(err.contains(expected), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn a_log_path_is_taken_from_the_job_folder() {
        let output = AlertOutput::from_options(
            &options(&[("connector", "log"), ("path", "out/alerts.jsonl")]),
            Path::new("/jobs"),
        )
        .unwrap();
        let AlertOutput::Log(log) = output else {
            panic!("not a log: {output:?}");
        };
        assert_eq!(log.path, Path::new("/jobs/out/alerts.jsonl"));
        assert_eq!(log.max_latency, Duration::from_millis(200));
        let output = AlertOutput::from_uri("log", "alerts.jsonl").unwrap();
        assert!(matches!(output, AlertOutput::Log(l) if l.path == Path::new("alerts.jsonl")));
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            "retry-after",
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO), "a past date");
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(90))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        headers.insert("retry-after", HeaderValue::from_str(&soon).unwrap());
        let wait = retry_after(&headers).unwrap_or_default();
        assert!(
            wait > Duration::from_secs(60) && wait <= Duration::from_secs(90),
            "{wait:?}"
        );
    }

    #[test]
    fn a_reason_shows_the_status_and_the_body_start() {
        assert_eq!(
            describe(StatusCode::BAD_REQUEST, "\ninvalid_payload\nmore"),
            "HTTP 400 Bad Request: \"invalid_payload\""
        );
        assert_eq!(
            describe(StatusCode::SERVICE_UNAVAILABLE, ""),
            "HTTP 503 Service Unavailable"
        );
    }
}
