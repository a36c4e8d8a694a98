//! The MQTT output: each row is published as one JSON object (the JSON of
//! the jsonl output) to the output's topic, whose `{column}` placeholders
//! are filled from the row. `flush` returns once the broker has
//! acknowledged every QoS 1 publish (PUBACK); a lost connection is
//! re-established with backoff and unacknowledged publishes are sent again
//! (the client keeps them, and the session is persistent by default).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use iotql_engine::arrow::datatypes::SchemaRef;
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::arrow::util::display::{ArrayFormatter, FormatOptions};
use iotql_engine::error::EngineError;
use iotql_engine::io::Sink;
use rumqttc::{Client, Connection, Event, Incoming, Outgoing, QoS};

use super::{Backoff, MqttOutput, TopicPart, fatal};
use crate::file::TIMESTAMP_FORMAT;
use crate::outage::Outage;

/// Requests (publishes) queued for the client: `write` waits when full.
const REQUESTS: usize = 1024;

/// What the connection thread reports to the sink.
#[derive(Debug, Default)]
struct Progress {
    /// Publishes handed to the client.
    published: u64,
    /// QoS 1 publishes the broker acknowledged.
    acked: u64,
    /// QoS 0 publishes written to the network.
    sent: u64,
    /// Why the output cannot go on.
    failure: Option<String>,
    /// The connection thread has ended.
    closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    progress: Mutex<Progress>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> Result<MutexGuard<'_, Progress>, String> {
        self.progress
            .lock()
            .map_err(|_| "the MQTT output's state is poisoned".to_string())
    }

    fn update(&self, f: impl FnOnce(&mut Progress)) {
        if let Ok(mut p) = self.progress.lock() {
            f(&mut p);
        }
        self.changed.notify_all();
    }
}

/// Publishes rows to an MQTT broker. See the module documentation.
pub struct MqttSink {
    name: String,
    output: MqttOutput,
    client: Option<Client>,
    shared: Arc<Shared>,
    /// For each part of the topic: its text, or the index of its column.
    topic: Vec<Result<String, usize>>,
}

impl std::fmt::Debug for MqttSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSink")
            .field("name", &self.name)
            .field("topic", &self.output.topic.to_string())
            .finish_non_exhaustive()
    }
}

impl MqttSink {
    /// An output that connects when it starts.
    pub fn new(name: &str, output: MqttOutput) -> Self {
        MqttSink {
            name: name.to_string(),
            output,
            client: None,
            shared: Arc::new(Shared::default()),
            topic: Vec::new(),
        }
    }

    fn error(&self, message: impl ToString) -> EngineError {
        EngineError::Sink {
            output: self.name.clone(),
            message: message.to_string(),
        }
    }

    /// The topic of each row of `batch`. Characters a topic cannot hold
    /// (`+`, `#`, NUL) in a column's value become `_`; NULL is empty.
    fn topics(&self, batch: &RecordBatch) -> Result<Vec<String>, EngineError> {
        let options = FormatOptions::default()
            .with_null("")
            .with_timestamp_tz_format(Some(TIMESTAMP_FORMAT))
            .with_timestamp_format(Some(TIMESTAMP_FORMAT));
        let mut formatters = Vec::new();
        for part in &self.topic {
            formatters.push(match part {
                Ok(_) => None,
                Err(i) => Some(
                    ArrayFormatter::try_new(batch.column(*i).as_ref(), &options)
                        .map_err(|e| self.error(e))?,
                ),
            });
        }
        let mut topics = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let mut topic = String::new();
            for (part, formatter) in self.topic.iter().zip(&formatters) {
                match (part, formatter) {
                    (Ok(text), _) => topic.push_str(text),
                    (Err(_), Some(f)) => {
                        let value = f.value(row).to_string();
                        topic.extend(value.chars().map(|c| match c {
                            '+' | '#' | '\0' => '_',
                            c => c,
                        }));
                    }
                    (Err(_), None) => {}
                }
            }
            if topic.is_empty() {
                return Err(self.error(format!(
                    "a row's topic `{}` is empty (its columns are NULL or empty)",
                    self.output.topic
                )));
            }
            topics.push(topic);
        }
        Ok(topics)
    }

    /// Waits until every publish is acknowledged (QoS 1) or written (QoS 0).
    fn wait(&self) -> Result<(), EngineError> {
        let timeout = self.output.flush_timeout;
        let deadline = Instant::now() + timeout;
        let mut progress = self.shared.lock().map_err(|e| self.error(e))?;
        loop {
            if let Some(failure) = &progress.failure {
                return Err(self.error(failure.clone()));
            }
            let done = match self.output.qos {
                QoS::AtMostOnce => progress.sent,
                _ => progress.acked,
            };
            if done >= progress.published {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.error(format!(
                    "the MQTT broker {} acknowledged {done} of {} rows within {} s (flush_timeout_s); the job stops rather than lose rows",
                    self.output.broker.address(),
                    progress.published,
                    timeout.as_secs()
                )));
            }
            let wait = (deadline - now).min(Duration::from_secs(1));
            progress = self
                .shared
                .changed
                .wait_timeout(progress, wait)
                .map_err(|_| self.error("the MQTT output's state is poisoned"))?
                .0;
        }
    }
}

impl MqttSink {
    /// Publishes one message, failing if the connection has failed.
    fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), EngineError> {
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| self.error("written before it was started"))?;
        if let Some(failure) = self
            .shared
            .lock()
            .map_err(|e| self.error(e))?
            .failure
            .clone()
        {
            return Err(self.error(failure));
        }
        self.shared.update(|p| p.published += 1);
        client
            .publish(topic.clone(), self.output.qos, false, payload)
            .map_err(|e| {
                let failure = self.shared.lock().ok().and_then(|p| p.failure.clone());
                self.error(failure.unwrap_or_else(|| format!("cannot publish to `{topic}`: {e}")))
            })
    }
}

impl Sink for MqttSink {
    fn start(&mut self, schema: &SchemaRef) -> Result<(), EngineError> {
        let mut topic = Vec::new();
        for part in &self.output.topic.parts {
            topic.push(match part {
                TopicPart::Text(t) => Ok(t.clone()),
                TopicPart::Column(c) => Err(crate::template::column_index(schema, c)
                    .map_err(|e| self.error(format!("topic `{}`: {e}", self.output.topic)))?),
            });
        }
        self.topic = topic;
        let options = self
            .output
            .broker
            .client_options(self.output.broker.client_id_for("output", &self.name))
            .map_err(|e| self.error(e))?;
        let (client, connection) = Client::new(options, REQUESTS);
        let driver = Driver {
            output: self.name.clone(),
            qos: self.output.qos,
            address: self.output.broker.address(),
            shared: self.shared.clone(),
        };
        std::thread::Builder::new()
            .name(format!("mqtt-out-{}", self.name))
            .spawn(move || driver.run(connection))
            .map_err(|e| self.error(format!("cannot start the MQTT connection thread: {e}")))?;
        self.client = Some(client);
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let topics = self.topics(batch)?;
        let lines = crate::file::jsonl::json_lines(batch).map_err(|e| self.error(e))?;
        let objects = lines.split(|&b| b == b'\n').filter(|l| !l.is_empty());
        for (topic, object) in topics.into_iter().zip(objects) {
            self.publish(topic, object.to_vec())?;
        }
        Ok(())
    }

    /// A message that is not a row (the simulator's malformed events), to
    /// the output topic with its `{column}` parts as `_`.
    fn write_raw(&mut self, payload: &[u8]) -> Result<(), EngineError> {
        let topic: String = self
            .output
            .topic
            .parts
            .iter()
            .map(|part| match part {
                TopicPart::Text(t) => t.as_str(),
                TopicPart::Column(_) => "_",
            })
            .collect();
        self.publish(topic, payload.to_vec())
    }

    fn flush(&mut self) -> Result<(), EngineError> {
        if self.client.is_none() {
            return Ok(());
        }
        self.wait()
    }

    fn finish(&mut self) -> Result<(), EngineError> {
        let Some(client) = self.client.take() else {
            return Ok(());
        };
        self.wait()?;
        if client.disconnect().is_ok() {
            // Give the DISCONNECT a moment to reach the broker.
            let progress = self.shared.lock().map_err(|e| self.error(e))?;
            let _ = self
                .shared
                .changed
                .wait_timeout_while(progress, Duration::from_secs(2), |p| !p.closed);
        }
        Ok(())
    }
}

/// Drives the output's connection on its own thread.
struct Driver {
    output: String,
    qos: QoS,
    address: String,
    shared: Arc<Shared>,
}

impl Driver {
    fn run(self, mut connection: Connection) {
        let mut backoff = Backoff::default();
        let mut outage = Outage::new(
            format!("output {} (MQTT broker {})", self.output, self.address),
            None,
        );
        let mut connections = 0u64;
        loop {
            let event = match connection.recv() {
                Ok(e) => e,
                Err(_) => break,
            };
            match event {
                Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                    connections += 1;
                    backoff.reset();
                    outage.succeeded();
                    if connections > 1 {
                        tracing::info!(output = %self.output, broker = %self.address, "MQTT connected again");
                        if !ack.session_present && self.qos != QoS::AtMostOnce {
                            // The client drops what it had in flight when
                            // the session is new.
                            let lost = self
                                .shared
                                .lock()
                                .map(|p| p.published.saturating_sub(p.acked))
                                .unwrap_or(0);
                            if lost > 0 {
                                self.shared.update(|p| {
                                    p.failure = Some(format!(
                                        "the MQTT broker {} kept no session for this output after a reconnection: {lost} unacknowledged rows may be lost (use clean_session = false and a broker with persistence)",
                                        self.address
                                    ));
                                });
                                break;
                            }
                        }
                    }
                }
                Ok(Event::Incoming(Incoming::PubAck(_))) => self.shared.update(|p| p.acked += 1),
                Ok(Event::Outgoing(Outgoing::Publish(0))) => self.shared.update(|p| p.sent += 1),
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    if fatal(&e) {
                        self.shared.update(|p| {
                            p.failure = Some(format!(
                                "the MQTT broker {} refused the connection: {e}",
                                self.address
                            ));
                        });
                        break;
                    }
                    outage.failed(&e);
                    std::thread::sleep(backoff.next());
                }
            }
        }
        self.shared.update(|p| p.closed = true);
    }
}
