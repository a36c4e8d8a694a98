//! The sink of every alert output: rows to [`Alert`]s (a body, a key), then
//! to the outbox (a run with checkpoints) or delivered as they come; see
//! the module documentation of [`super`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use iotql_engine::arrow::datatypes::SchemaRef;
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::error::EngineError;
use iotql_engine::io::{Sink, SinkMetrics};
use iotql_engine::operator::DeadLetter;

use super::key::{self, KeyMaker};
use super::outbox::Outbox;
use super::slack::Message;
use super::{Alert, AlertOptions, Destination, Direct, Outcome};
use crate::backoff::Backoff;
use crate::outage::Outage;

/// What an alert's body is.
#[derive(Debug)]
pub(crate) enum Body {
    /// The row as a JSON object, with its key (webhook, log).
    Json,
    /// A Slack message of the row (its template resolved at `start`).
    Slack(Box<Message>),
}

/// Writes an alert output's rows. See the module documentation.
#[derive(Debug)]
pub(crate) struct AlertSink {
    name: String,
    body: Body,
    keys: KeyMaker,
    options: AlertOptions,
    metrics: Arc<SinkMetrics>,
    /// Where alerts go; the outbox's thread takes it when it starts.
    destination: Option<Box<dyn Destination>>,
    /// `Some` once the run takes checkpoints.
    outbox: Option<Outbox>,
    now: Now,
}

/// Delivery as the rows come (no checkpoints).
#[derive(Debug)]
struct Now {
    backoff: Backoff,
    outage: Outage,
    /// Rows given so far, to number dead letters.
    rows: u64,
    dead: Vec<DeadLetter>,
    /// Alerts held for a batch (the log), and since when.
    held: Vec<Alert>,
    since: Option<Instant>,
}

impl AlertSink {
    pub(crate) fn new(
        name: &str,
        body: Body,
        options: &AlertOptions,
        destination: Box<dyn Destination>,
    ) -> Self {
        let metrics = Arc::new(SinkMetrics::default());
        AlertSink {
            name: name.to_string(),
            body,
            keys: KeyMaker::new(name, options.key.clone()),
            options: options.clone(),
            now: Now {
                backoff: destination.backoff(),
                outage: outage(name, destination.as_ref(), &metrics),
                rows: 0,
                dead: Vec::new(),
                held: Vec::new(),
                since: None,
            },
            metrics,
            destination: Some(destination),
            outbox: None,
        }
    }

    fn error(&self, message: impl ToString) -> EngineError {
        EngineError::Sink {
            output: self.name.clone(),
            message: message.to_string(),
        }
    }

    fn destination(&mut self) -> Result<&mut Box<dyn Destination>, EngineError> {
        self.destination
            .as_mut()
            .ok_or_else(|| EngineError::Internal("the alert output has no destination".into()))
    }

    /// The alerts of `batch`, whose event times are `times` when known.
    fn alerts(
        &self,
        batch: &RecordBatch,
        times: Option<&[i64]>,
    ) -> Result<Vec<Alert>, EngineError> {
        let lines = crate::file::jsonl::json_lines(batch).map_err(|e| self.error(e))?;
        let keys = self.keys.keys(batch, times).map_err(|e| self.error(e))?;
        let mut messages = match &self.body {
            Body::Json => None,
            Body::Slack(message) => Some(
                message
                    .bodies(&self.name, batch, &keys)
                    .map_err(|e| self.error(e))?
                    .into_iter(),
            ),
        };
        let rows = lines.split(|&b| b == b'\n').take(batch.num_rows());
        let alerts = rows.zip(keys).map(|(row, key)| {
            let row = key::with_key(row, &key);
            let (body, row) = match messages.as_mut().and_then(Iterator::next) {
                Some(message) => (message, Some(row)),
                None => (row, None),
            };
            Alert {
                key,
                body,
                row,
                attempts: 0,
            }
        });
        Ok(alerts.collect())
    }

    /// The rows' alerts to the outbox, or delivered now.
    fn write_times(
        &mut self,
        batch: &RecordBatch,
        times: Option<&[i64]>,
    ) -> Result<(), EngineError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let alerts = self.alerts(batch, times)?;
        match &mut self.outbox {
            Some(outbox) => {
                outbox.push(alerts);
                Ok(())
            }
            None => self.deliver_now(alerts),
        }
    }

    /// Delivers or holds alerts as the rows come (no checkpoints).
    fn deliver_now(&mut self, alerts: Vec<Alert>) -> Result<(), EngineError> {
        match self.destination()?.direct() {
            Direct::Retry(retries) => {
                let per_attempt = self.destination()?.per_attempt();
                let mut alerts = alerts;
                while !alerts.is_empty() {
                    let rest = alerts.split_off(per_attempt.min(alerts.len()));
                    self.send(alerts, retries)?;
                    alerts = rest;
                }
                Ok(())
            }
            Direct::Batch { .. } => {
                self.now.held.extend(alerts);
                self.now.since.get_or_insert_with(Instant::now);
                self.write_due()
            }
        }
    }

    /// One request of `alerts`, retried up to `retries` times; what still
    /// fails becomes dead letters.
    fn send(&mut self, alerts: Vec<Alert>, retries: u32) -> Result<(), EngineError> {
        let first = self.now.rows + 1;
        self.now.rows += alerts.len() as u64;
        let count = alerts.len() as u64;
        match self.attempts(&alerts, retries)? {
            Ok(()) => {
                self.metrics
                    .rows_written
                    .fetch_add(count, Ordering::Relaxed);
            }
            Err(reason) => {
                self.metrics.failures.fetch_add(count, Ordering::Relaxed);
                let letters = alerts.iter().zip(first..).map(|(alert, n)| DeadLetter {
                    input: self.name.clone(),
                    position: format!("row {n}"),
                    reason: reason.clone(),
                    raw: alert.raw(),
                });
                self.now.dead.extend(letters);
            }
        }
        Ok(())
    }

    /// Attempts until delivered, refused, or out of retries; the inner
    /// error is the dead letters' reason.
    fn attempts(
        &mut self,
        alerts: &[Alert],
        retries: u32,
    ) -> Result<Result<(), String>, EngineError> {
        self.now.backoff.reset();
        let mut attempts: u32 = 0;
        loop {
            attempts += 1;
            let destination = self.destination()?;
            let what = destination.what().to_string();
            let (reason, retry_after) = match destination.attempt(alerts) {
                Outcome::Delivered => {
                    self.now.outage.succeeded();
                    return Ok(Ok(()));
                }
                Outcome::Refused(reason) => {
                    self.now.outage.succeeded();
                    return Ok(Err(format!("{what}: {reason} (refused: not retried)")));
                }
                Outcome::Failed {
                    reason,
                    retry_after,
                } => (reason, retry_after),
            };
            self.now.outage.failed(&reason);
            if attempts > retries {
                return Ok(Err(format!("{what}: {reason} after {attempts} attempts")));
            }
            self.metrics.retries.fetch_add(1, Ordering::Relaxed);
            let delay = retry_after.unwrap_or_else(|| self.now.backoff.next());
            tracing::debug!(output = %self.name, attempt = attempts, ?delay, "{what}: {reason}; retrying");
            std::thread::sleep(delay);
        }
    }

    /// Writes the held alerts (the log) when a batch is full or the oldest
    /// has waited long enough.
    fn write_due(&mut self) -> Result<(), EngineError> {
        let due = match self.destination()?.direct() {
            Direct::Batch {
                batch_size,
                max_latency,
            } => {
                self.now.held.len() >= batch_size
                    || self.now.since.is_some_and(|t| t.elapsed() >= max_latency)
            }
            Direct::Retry(_) => false,
        };
        if due { self.write_held() } else { Ok(()) }
    }

    /// Writes the held alerts (the log); a failure stops the job.
    fn write_held(&mut self) -> Result<(), EngineError> {
        if self.now.held.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(&mut self.now.held);
        self.now.since = None;
        match self.destination()?.attempt(&held) {
            Outcome::Delivered => {
                self.metrics
                    .rows_written
                    .fetch_add(held.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Outcome::Failed { reason, .. } | Outcome::Refused(reason) => Err(self.error(reason)),
        }
    }
}

/// The outage of output `name`'s destination, counted in `metrics`.
fn outage(name: &str, destination: &dyn Destination, metrics: &Arc<SinkMetrics>) -> Outage {
    Outage::new(
        format!("output {name} ({})", destination.what()),
        Some(metrics.clone()),
    )
}

impl Sink for AlertSink {
    /// Resolves the key columns (and Slack's template) in the schema,
    /// opens the destination and, with checkpoints, starts delivering.
    fn start(&mut self, schema: &SchemaRef) -> Result<(), EngineError> {
        if schema.field_with_name(key::FIELD).is_ok() {
            return Err(self.error(format!(
                "the output has a column `{}`, the field an alert output adds (each alert's idempotency key); rename it",
                key::FIELD
            )));
        }
        self.keys.start(schema).map_err(|e| self.error(e))?;
        if let Body::Slack(message) = &mut self.body {
            message.start(schema).map_err(|e| EngineError::Sink {
                output: self.name.clone(),
                message: e,
            })?;
        }
        let name = self.name.clone();
        self.destination()?.open().map_err(|e| EngineError::Sink {
            output: name,
            message: e,
        })?;
        if let Some(outbox) = &mut self.outbox {
            let Some(destination) = self.destination.take() else {
                return Err(EngineError::Internal(
                    "the alert output has no destination".into(),
                ));
            };
            let outage = outage(&self.name, destination.as_ref(), &self.metrics);
            outbox.start(destination, outage)?;
        }
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        self.write_times(batch, None)
    }

    fn write_at(&mut self, batch: &RecordBatch, event_times: &[i64]) -> Result<(), EngineError> {
        self.write_times(batch, Some(event_times))
    }

    fn tick(&mut self) -> Result<(), EngineError> {
        match self.outbox {
            Some(_) => Ok(()),
            None => self.write_due(),
        }
    }

    fn flush(&mut self) -> Result<(), EngineError> {
        match self.outbox {
            Some(_) => Ok(()),
            None => self.write_held(),
        }
    }

    /// Delivers what is held; with the outbox, waits up to `drain_timeout`
    /// and dead-letters the rest.
    fn finish(&mut self) -> Result<(), EngineError> {
        match &mut self.outbox {
            Some(outbox) => outbox.finish(),
            None => self.write_held()?,
        }
        self.destination = None;
        Ok(())
    }

    /// A stop at a checkpoint: the outbox's alerts are in it, for the next run.
    fn stop(&mut self) -> Result<(), EngineError> {
        match &mut self.outbox {
            Some(outbox) => {
                outbox.stop();
                Ok(())
            }
            None => self.finish(),
        }
    }

    fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        let mut letters = std::mem::take(&mut self.now.dead);
        if let Some(outbox) = &mut self.outbox {
            letters.extend(outbox.take_dead_letters());
        }
        letters
    }

    fn metrics(&self) -> Option<Arc<SinkMetrics>> {
        Some(self.metrics.clone())
    }

    /// From here on, alerts go through the outbox.
    fn enable_checkpoints(&mut self, _scope: &str) -> Result<(), EngineError> {
        let what = self.destination()?.what().to_string();
        self.outbox = Some(Outbox::new(
            &self.name,
            &what,
            self.options.outbox_limit,
            self.options.drain_timeout,
            self.metrics.clone(),
        ));
        Ok(())
    }

    /// The outbox: every alert not confirmed delivered.
    fn checkpoint(&mut self) -> Result<Option<Vec<u8>>, EngineError> {
        match &mut self.outbox {
            Some(outbox) => Ok(Some(outbox.checkpoint())),
            None => {
                self.flush()?;
                Ok(None)
            }
        }
    }

    fn committed(&mut self) -> Result<(), EngineError> {
        if let Some(outbox) = &mut self.outbox {
            outbox.committed();
        }
        Ok(())
    }

    fn wants_checkpoint(&self) -> bool {
        self.outbox.as_ref().is_some_and(Outbox::wants_checkpoint)
    }

    /// The checkpoint's alerts are delivered again.
    fn recover(&mut self, state: &[u8]) -> Result<(), EngineError> {
        match &mut self.outbox {
            Some(outbox) => outbox.recover(state),
            None => Err(EngineError::Internal(
                "an alert output recovered without checkpoints enabled".into(),
            )),
        }
    }
}
