//! `webhook:URL`: each alert row POSTed as a JSON object (the JSON of the
//! jsonl output: the SELECT's column names, datetimes as ISO-8601 UTC, and
//! the alert's `idempotency_key`), or several rows as one JSON array
//! (`batch = 'array'`).

use super::http::HttpReceiver;
use super::sink::{AlertSink, Body};
use super::{AlertOptions, HttpTarget, Options};

/// The options besides the HTTP ones.
pub(super) const OPTIONS: &[&str] = &["batch"];

/// How rows are put into requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchMode {
    /// One request per row, its body the row's JSON object.
    Row,
    /// One request per write (without checkpoints) or per attempt of the
    /// outbox, its body a JSON array of the rows.
    Array,
}

/// A webhook output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookOutput {
    pub target: HttpTarget,
    pub batch: BatchMode,
    pub alert: AlertOptions,
}

impl WebhookOutput {
    pub(super) fn take(options: &mut Options) -> Result<Self, String> {
        let target = HttpTarget::take(options, "webhook")?;
        let batch = match options.take("batch").map(|b| b.to_ascii_lowercase()) {
            None => BatchMode::Row,
            Some(b) if b == "row" => BatchMode::Row,
            Some(b) if b == "array" => BatchMode::Array,
            Some(b) => {
                return Err(format!(
                    "batch = '{b}': use row (a request per alert) or array (the alerts of a write in one request)"
                ));
            }
        };
        Ok(WebhookOutput {
            target,
            batch,
            alert: AlertOptions::take(options)?,
        })
    }
}

/// The sink of a webhook output.
pub(super) fn open(name: &str, output: &WebhookOutput) -> AlertSink {
    let array = output.batch == BatchMode::Array;
    AlertSink::new(
        name,
        Body::Json,
        &output.alert,
        Box::new(HttpReceiver::new("webhook", &output.target, array)),
    )
}
