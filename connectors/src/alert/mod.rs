//! Alert outputs: `webhook:` (a JSON POST per alert), `slack:` (a Slack
//! incoming-webhook message per alert) and `log:` (an append-only JSON-lines
//! alert log).
//!
//! One sink serves the three ([`sink::AlertSink`]): each row becomes an
//! [`Alert`] — the request body or log line, with an idempotency key made
//! of the output, the row's key columns and its event time ([`key`]) — that
//! a [`Destination`] takes (the HTTP receiver of [`http`], the log file of
//! [`log`]). How it gets there depends on the run:
//!
//! - **With checkpoints** (`iotql run`), through the outbox ([`outbox`]):
//!   the alert is recorded in the next checkpoint (the output asks for one
//!   within about a second) and delivered after it, off the job's thread,
//!   in order, retried with backoff for as long as the receiver is down; a
//!   run that resumes from the checkpoint delivers again what was not
//!   confirmed. At least once, nothing lost in a crash or an outage, and
//!   the key lets a receiver drop repeats.
//! - **Without** (the REPL, `iotql test`, `--checkpoint-interval off`), as
//!   the rows come, as before the outbox: an HTTP output delivers in
//!   `write`, retrying `retries` times, and dead-letters what still fails
//!   (a slow receiver slows the job down); the log writes in batches.

mod http;
pub(crate) mod key;
mod log;
pub(crate) mod outbox;
pub(crate) mod sink;
mod slack;
mod webhook;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use iotql_engine::io::Sink;
use ureq::http::{HeaderName, HeaderValue, Uri};

use crate::backoff::Backoff;

pub use log::LogOutput;
pub use slack::SlackOutput;
pub use webhook::{BatchMode, WebhookOutput};

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
                [HTTP_OPTIONS, webhook::OPTIONS, ALERT_OPTIONS].concat(),
            ),
            "slack" => (
                AlertOutput::Slack(SlackOutput::take(&mut options)?),
                [HTTP_OPTIONS, slack::OPTIONS, ALERT_OPTIONS].concat(),
            ),
            "log" => (
                AlertOutput::Log(LogOutput::take(&mut options, base)?),
                [log::OPTIONS, ALERT_OPTIONS].concat(),
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
        Box::new(match self {
            AlertOutput::Webhook(output) => webhook::open(name, output),
            AlertOutput::Slack(output) => slack::open(name, output),
            AlertOutput::Log(output) => log::open(name, output),
        })
    }
}

/// The options every alert connector has.
const ALERT_OPTIONS: &[&str] = &["key", "outbox_limit", "drain_timeout"];

/// What every alert output has: how its alerts are keyed, and how its
/// outbox is bounded (in a run with checkpoints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertOptions {
    /// The columns of the idempotency key, besides the output and the
    /// event time; `None`: every column of the row.
    pub key: Option<Vec<String>>,
    /// The most alerts the outbox holds; beyond, the oldest become dead
    /// letters.
    pub outbox_limit: usize,
    /// How long the end of a run waits for the outbox to be delivered
    /// before the rest become dead letters.
    pub drain_timeout: Duration,
}

impl AlertOptions {
    fn take(options: &mut Options) -> Result<Self, String> {
        let key = match options.take("key") {
            None => None,
            Some(text) => {
                let columns: Vec<String> = text.split(',').map(|c| c.trim().to_string()).collect();
                if columns.iter().any(String::is_empty) {
                    return Err(format!(
                        "key = '{text}': write the columns that identify an alert, `key = 'deviceId'` or `key = 'deviceId, rule'`"
                    ));
                }
                Some(columns)
            }
        };
        let outbox_limit = options.number("outbox_limit", 100_000)?;
        if outbox_limit == 0 {
            return Err("outbox_limit = '0': write at least 1".into());
        }
        Ok(AlertOptions {
            key,
            outbox_limit,
            drain_timeout: options.duration("drain_timeout", Duration::from_secs(60))?,
        })
    }
}

/// An alert ready to go: its key, what is sent, and what a dead letter
/// keeps of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Alert {
    pub key: key::Key,
    /// The request body (webhook, Slack) or the log line, with the key in.
    pub body: Vec<u8>,
    /// The row as JSON (with the key), when the body is something else (a
    /// Slack message): a dead letter holds the row.
    pub row: Option<Vec<u8>>,
    /// Attempts made to deliver it, across runs.
    pub attempts: u32,
}

impl Alert {
    /// What a dead letter of it holds: the row as JSON, with its key.
    fn raw(&self) -> String {
        String::from_utf8_lossy(self.row.as_deref().unwrap_or(&self.body)).into_owned()
    }
}

/// How one attempt ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    Delivered,
    /// A failure that may pass (5xx, 429, a timeout, no connection, a
    /// disk error): retried after `retry_after`, else the backoff's delay.
    Failed {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// A failure that would repeat (4xx, a TLS certificate): not retried.
    Refused(String),
}

/// How an output delivers when the run takes no checkpoints.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Direct {
    /// In the write, retried up to this many times, then dead letters
    /// (HTTP).
    Retry(u32),
    /// Held until `batch_size` alerts wait or the oldest has waited
    /// `max_latency`, then written; a failure stops the job (the log).
    Batch {
        batch_size: usize,
        max_latency: Duration,
    },
}

/// Where alerts go: an HTTP receiver, a log file.
pub(crate) trait Destination: Send + std::fmt::Debug {
    /// `webhook http://host/…`, for reasons and logs.
    fn what(&self) -> &str;

    /// The most alerts one attempt carries.
    fn per_attempt(&self) -> usize {
        1
    }

    /// Called once before the first attempt, on the job's thread: a
    /// destination that cannot be used fails the job's start.
    fn open(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// Delivers `alerts`, in order, at once.
    fn attempt(&mut self, alerts: &[Alert]) -> Outcome;

    /// The delays between attempts.
    fn backoff(&self) -> Backoff;

    /// How alerts are delivered without checkpoints.
    fn direct(&self) -> Direct;
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
                "the `webhook` connector has no option `retrys` (its options: url, timeout, retries, retry_delay, max_retry_delay, headers, batch, key, outbox_limit, drain_timeout)",
            ),
            (
                vec![
                    ("connector", "slack"),
                    ("url", "https://h/a"),
                    ("batch", "array"),
                ],
                "the `slack` connector has no option `batch` (its options: url, timeout, retries, retry_delay, max_retry_delay, headers, text, key, outbox_limit, drain_timeout)",
            ),
            (
                vec![("connector", "log"), ("path", "a.jsonl"), ("url", "x")],
                "the `log` connector has no option `url` (its options: path, max_latency, batch_size, key, outbox_limit, drain_timeout)",
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
}
