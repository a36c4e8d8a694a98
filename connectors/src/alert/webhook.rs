//! `webhook:URL`: each alert row POSTed as a JSON object (the JSON of the
//! jsonl output: the SELECT's column names, datetimes as ISO-8601 UTC), or
//! the rows of one write as one JSON array (`batch = 'array'`).

use std::sync::Arc;

use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::error::EngineError;
use iotql_engine::io::{Sink, SinkMetrics};
use iotql_engine::operator::DeadLetter;

use super::{Delivery, HttpTarget, Options};

/// The options besides the HTTP ones.
pub(super) const OPTIONS: &[&str] = &["batch"];

/// How rows are put into requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchMode {
    /// One request per row, its body the row's JSON object.
    Row,
    /// One request per write, its body a JSON array of the rows.
    Array,
}

/// A webhook output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookOutput {
    pub target: HttpTarget,
    pub batch: BatchMode,
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
        Ok(WebhookOutput { target, batch })
    }
}

/// POSTs rows to a webhook. See the module documentation.
#[derive(Debug)]
pub struct WebhookSink {
    delivery: Delivery,
    batch: BatchMode,
}

impl WebhookSink {
    pub fn new(name: &str, output: WebhookOutput) -> Self {
        WebhookSink {
            delivery: Delivery::new("webhook", name, output.target),
            batch: output.batch,
        }
    }
}

impl Sink for WebhookSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let lines = crate::file::jsonl::json_lines(batch).map_err(|e| self.delivery.error(e))?;
        let rows: Vec<&[u8]> = lines
            .split(|&b| b == b'\n')
            .take(batch.num_rows())
            .collect();
        match self.batch {
            BatchMode::Row => {
                for row in &rows {
                    self.delivery.send(row, std::slice::from_ref(row));
                }
            }
            BatchMode::Array => {
                let mut body = Vec::with_capacity(lines.len() + 2);
                body.push(b'[');
                for (i, row) in rows.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(row);
                }
                body.push(b']');
                self.delivery.send(&body, &rows);
            }
        }
        Ok(())
    }

    /// Nothing is pending: `write` returns when its rows are delivered or
    /// dead letters.
    fn finish(&mut self) -> Result<(), EngineError> {
        Ok(())
    }

    fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        self.delivery.take_dead_letters()
    }

    fn metrics(&self) -> Option<Arc<SinkMetrics>> {
        Some(self.delivery.metrics())
    }
}
