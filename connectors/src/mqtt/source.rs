//! The MQTT input: a thread drives the client's connection (reconnecting
//! with backoff) and hands each message to the source through a bounded
//! channel; the source decodes them in batches.
//!
//! Positions are this source's own sequence numbers (1, 2, ...), one per
//! message received, in order. QoS 1 messages are acknowledged (PUBACK)
//! only when [`MqttCommitter::commit`] covers their position, so a job that
//! stops before its outputs are flushed gets them again from the broker
//! (with a persistent session): at-least-once.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, bounded};
use iotql_engine::arrow::datatypes::SchemaRef;
use iotql_engine::error::EngineError;
use iotql_engine::io::{Committer, Source, SourceBatch};
use iotql_engine::time::EventTime;
use rumqttc::{Client, Connection, Event, Incoming, Outgoing, Publish, QoS, SubscribeReasonCode};

use super::{Backoff, MqttInput, fatal};
use crate::message::{
    DecoderConfig, Describe, MessageDecoder, MessageFormat, Received, now_micros,
};

/// How long `next_batch` waits for a first message before it reports an
/// idle input.
const POLL: Duration = Duration::from_millis(200);
/// Messages received and not yet taken by the source, at most.
const CHANNEL_MESSAGES: usize = 4096;
/// Requests (acknowledgements, subscriptions) queued for the client.
const REQUESTS: usize = 4096;
/// The topics of the last this many positions are kept for `describe`.
const RECENT_TOPICS: usize = 1 << 16;
/// Messages gathered to learn the columns from, at most.
const SAMPLE: usize = 1000;
/// After the first message, how long more are gathered for the sample.
const SAMPLE_WAIT: Duration = Duration::from_millis(500);

/// What the connection thread hands to the source.
enum Delivery {
    Message(Received),
    /// The connection cannot go on (refused, TLS, subscription refused).
    Failed(String),
}

/// A QoS 1 message not yet acknowledged.
#[derive(Debug, Clone, Copy)]
struct Unacked {
    position: u64,
    /// The connection it came on: an acknowledgement goes only on that one
    /// (after a reconnection the broker sends it again, with a new position).
    connection: u64,
    pkid: u16,
}

/// What the source, its connection thread and its committer share.
struct Shared {
    client: Client,
    /// Counts connections (CONNACKs): 1 for the first.
    connection: AtomicU64,
    unacked: Mutex<VecDeque<Unacked>>,
    /// Acknowledgements that the client's request queue had no room for.
    deferred: Mutex<VecDeque<u16>>,
    topics: Mutex<VecDeque<(u64, Arc<str>)>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn describe(&self, position: u64) -> String {
        let topics = match self.topics.lock() {
            Ok(t) => t,
            Err(_) => return format!("message {position}"),
        };
        match topics.binary_search_by_key(&position, |(p, _)| *p) {
            Ok(i) => format!("topic {} message {position}", topics[i].1),
            Err(_) => format!("message {position}"),
        }
    }

    fn remember(&self, position: u64, topic: Arc<str>) {
        if let Ok(mut topics) = self.topics.lock() {
            if topics.len() >= RECENT_TOPICS {
                topics.pop_front();
            }
            topics.push_back((position, topic));
        }
    }

    /// Sends the acknowledgements of every QoS 1 message up to `mark`
    /// received on the current connection; those of earlier connections
    /// are dropped (the broker sends their messages again).
    fn acknowledge(&self, mark: u64) -> Result<(), String> {
        let current = self.connection.load(Ordering::SeqCst);
        let mut due = Vec::new();
        {
            let mut unacked = self
                .unacked
                .lock()
                .map_err(|_| "the MQTT acknowledgement list is poisoned".to_string())?;
            while unacked.front().is_some_and(|u| u.position <= mark) {
                if let Some(u) = unacked.pop_front()
                    && u.connection == current
                {
                    due.push(u.pkid);
                }
            }
        }
        let mut deferred = self
            .deferred
            .lock()
            .map_err(|_| "the MQTT acknowledgement list is poisoned".to_string())?;
        deferred.extend(due);
        self.send_deferred(&mut deferred);
        Ok(())
    }

    fn send_deferred(&self, deferred: &mut VecDeque<u16>) {
        while let Some(&pkid) = deferred.front() {
            let mut ack = Publish::new("", QoS::AtLeastOnce, Vec::new());
            ack.pkid = pkid;
            if self.client.try_ack(&ack).is_err() {
                // The queue is full: the next commit or read tries again.
                break;
            }
            deferred.pop_front();
        }
    }

    /// Retries acknowledgements the request queue had no room for.
    fn retry_deferred(&self) {
        if let Ok(mut deferred) = self.deferred.lock()
            && !deferred.is_empty()
        {
            self.send_deferred(&mut deferred);
        }
    }
}

/// Reads an MQTT subscription. See the module documentation.
pub struct MqttSource {
    name: String,
    decoder: MessageDecoder,
    messages: Receiver<Delivery>,
    /// Messages received while learning the columns, not yet decoded.
    held: VecDeque<Received>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    /// Disconnected when the connection thread has ended.
    ended: Receiver<()>,
    batch_size: usize,
    max_messages: Option<u64>,
    /// Messages taken so far (decoded or dead letters).
    taken: u64,
    /// The position of the last message taken.
    last: u64,
}

impl std::fmt::Debug for MqttSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSource")
            .field("name", &self.name)
            .field("taken", &self.taken)
            .finish_non_exhaustive()
    }
}

fn is_json_object(payload: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(payload).is_ok()
}

impl MqttSource {
    /// Connects, subscribes, and, without a declared `schema`, waits for the
    /// first messages to learn the columns from. `columns` (lower case)
    /// limits the decoded columns to those the job reads.
    pub fn open(
        name: &str,
        input: &MqttInput,
        schema: Option<SchemaRef>,
        batch_size: usize,
        columns: Option<&BTreeSet<String>>,
    ) -> Result<Self, EngineError> {
        let error = |message: String| EngineError::Source {
            input: name.to_string(),
            message,
        };
        let mut options = input
            .broker
            .client_options(input.broker.client_id_for("input", name))
            .map_err(error)?;
        options.set_manual_acks(true);
        let (client, connection) = Client::new(options, REQUESTS);
        let shared = Arc::new(Shared {
            client,
            connection: AtomicU64::new(0),
            unacked: Mutex::new(VecDeque::new()),
            deferred: Mutex::new(VecDeque::new()),
            topics: Mutex::new(VecDeque::new()),
        });
        let (tx, messages) = bounded(CHANNEL_MESSAGES);
        let stop = Arc::new(AtomicBool::new(false));
        let (ending, ended) = bounded(0);
        let driver = Driver {
            _ending: ending,
            input: name.to_string(),
            address: input.broker.address(),
            filter: input.filter.clone(),
            qos: input.qos,
            shared: shared.clone(),
            stop: stop.clone(),
            tx,
            next_position: 1,
        };
        std::thread::Builder::new()
            .name(format!("mqtt-{name}"))
            .spawn(move || driver.run(connection))
            .map_err(|e| error(format!("cannot start the MQTT connection thread: {e}")))?;

        let mut held = VecDeque::new();
        if schema.is_none() && input.format == MessageFormat::Json {
            tracing::info!(
                input = name,
                filter = %input.filter,
                "waiting for the first MQTT messages to learn the input's columns (declare schema = '...' to start at once)"
            );
            gather_sample(&messages, &mut held).map_err(error)?;
        }
        let describe: Describe = {
            let shared = shared.clone();
            Arc::new(move |p| shared.describe(p))
        };
        let decoder = MessageDecoder::new(
            DecoderConfig {
                input: name,
                format: input.format,
                schema,
                columns,
                max_bytes: input.max_message_bytes,
                topic_column: input.topic_column.clone(),
                partitioned: false,
                describe,
            },
            held.make_contiguous(),
        )
        .map_err(error)?;
        if let Some(topic) = &input.topic_column {
            let schema = decoder.schema();
            let same = schema
                .fields()
                .iter()
                .filter(|f| f.name().eq_ignore_ascii_case(topic))
                .count();
            if same > 1 {
                return Err(error(format!(
                    "the messages have a field `{topic}` too: name the topic column otherwise (topic_column = 'mqtt_topic')"
                )));
            }
        }
        Ok(MqttSource {
            name: name.to_string(),
            decoder,
            messages,
            held,
            shared,
            stop,
            ended,
            batch_size: batch_size.max(1),
            max_messages: input.max_messages,
            taken: 0,
            last: 0,
        })
    }

    fn error(&self, message: String) -> EngineError {
        EngineError::Source {
            input: self.name.clone(),
            message,
        }
    }

    /// How many more messages this batch may take.
    fn room(&self, batch: &[Received]) -> usize {
        let left = self.max_messages.map_or(usize::MAX, |m| {
            usize::try_from(m - self.taken).unwrap_or(usize::MAX)
        });
        self.batch_size.min(left).saturating_sub(batch.len())
    }
}

/// Waits for messages until one is a JSON object (or the sample is full),
/// then gathers what else comes within [`SAMPLE_WAIT`].
fn gather_sample(
    messages: &Receiver<Delivery>,
    held: &mut VecDeque<Received>,
) -> Result<(), String> {
    let take = |d: Delivery, held: &mut VecDeque<Received>| match d {
        Delivery::Message(m) => {
            held.push_back(m);
            Ok(())
        }
        Delivery::Failed(e) => Err(e),
    };
    while held.len() < SAMPLE && !held.iter().any(|m| is_json_object(&m.payload)) {
        let d = messages
            .recv()
            .map_err(|_| "the MQTT connection thread stopped".to_string())?;
        take(d, held)?;
    }
    let until = std::time::Instant::now() + SAMPLE_WAIT;
    while held.len() < SAMPLE {
        match messages.recv_deadline(until) {
            Ok(d) => take(d, held)?,
            Err(_) => break,
        }
    }
    Ok(())
}

impl Source for MqttSource {
    fn schema(&self) -> SchemaRef {
        self.decoder.schema()
    }

    fn next_batch(&mut self) -> Result<Option<SourceBatch>, EngineError> {
        if self.max_messages.is_some_and(|m| self.taken >= m) {
            return Ok(None);
        }
        self.shared.retry_deferred();
        let mut batch: Vec<Received> = Vec::new();
        while self.room(&batch) > 0 {
            match self.held.pop_front() {
                Some(m) => batch.push(m),
                None => break,
            }
        }
        if batch.is_empty() {
            match self.messages.recv_timeout(POLL) {
                Ok(Delivery::Message(m)) => batch.push(m),
                Ok(Delivery::Failed(e)) => return Err(self.error(e)),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.error("the MQTT connection thread stopped".into()));
                }
            }
        }
        while self.room(&batch) > 0 {
            match self.messages.try_recv() {
                Ok(Delivery::Message(m)) => batch.push(m),
                Ok(Delivery::Failed(e)) => return Err(self.error(e)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    return Err(self.error("the MQTT connection thread stopped".into()));
                }
            }
        }
        if batch.is_empty() {
            return Ok(Some(SourceBatch {
                batch: None,
                dead_letters: Vec::new(),
                mark: self.last,
                arrival: Some(EventTime(now_micros())),
                partitions: None,
                resume: None,
            }));
        }
        self.taken += batch.len() as u64;
        self.last = batch.last().map_or(self.last, |m| m.position);
        let mut decoded = self.decoder.decode(&batch).map_err(|e| self.error(e))?;
        decoded.mark = self.last;
        Ok(Some(decoded))
    }

    fn committer(&self) -> Option<Box<dyn Committer>> {
        Some(Box::new(MqttCommitter {
            shared: self.shared.clone(),
        }))
    }
}

impl Drop for MqttSource {
    fn drop(&mut self) {
        // The connection thread ends at the DISCONNECT; messages not
        // acknowledged stay with the broker for the session.
        self.stop.store(true, Ordering::SeqCst);
        // A thread waiting to hand over a message gives up.
        self.messages = crossbeam_channel::never();
        // The acknowledgements committed so far go out before the
        // DISCONNECT (those the request queue had no room for too); wait
        // for it, so that a source opened next with the same client id
        // finds them done.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            self.shared.retry_deferred();
            let flushed = self.shared.deferred.lock().is_ok_and(|d| d.is_empty());
            if flushed && self.shared.client.try_disconnect().is_ok() {
                let _ = self
                    .ended
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()));
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Acknowledges an MQTT input's QoS 1 messages once the outputs that
/// depend on them are flushed.
#[derive(Debug)]
pub struct MqttCommitter {
    shared: Arc<Shared>,
}

impl Committer for MqttCommitter {
    fn commit(&mut self, mark: u64) -> Result<(), EngineError> {
        self.shared.acknowledge(mark).map_err(EngineError::Internal)
    }

    fn describe(&self, position: u64) -> String {
        self.shared.describe(position)
    }
}

/// Drives the connection on its own thread.
struct Driver {
    /// Dropped when the thread ends.
    _ending: Sender<()>,
    input: String,
    address: String,
    filter: String,
    qos: QoS,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    tx: Sender<Delivery>,
    next_position: u64,
}

impl Driver {
    fn run(mut self, mut connection: Connection) {
        let mut backoff = Backoff::default();
        let mut subscribed = false;
        let mut stopped_at = None;
        loop {
            // Once stopped, the thread still sends the acknowledgements
            // queued before the DISCONNECT, and ends when the broker closes
            // the connection after it (or after a few seconds, when the
            // DISCONNECT could not be queued).
            if self.stop.load(Ordering::SeqCst)
                && stopped_at.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(5)
            {
                return;
            }
            let event = match connection.recv() {
                Ok(e) => e,
                // The client and its requests are gone.
                Err(_) => return,
            };
            match event {
                Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                    let n = self.shared.connection.fetch_add(1, Ordering::SeqCst) + 1;
                    if n > 1 {
                        tracing::info!(input = %self.input, broker = %self.address, "MQTT connected again");
                    } else {
                        tracing::debug!(input = %self.input, broker = %self.address, "MQTT connected");
                    }
                    backoff.reset();
                    if n > 1 && !ack.session_present {
                        tracing::warn!(
                            input = %self.input,
                            "the MQTT broker kept no session for this client: messages published while it was away are lost (use clean_session = false and a broker with persistence)"
                        );
                    }
                    // A new session has no subscription; a resumed one keeps
                    // its own, but the first connection subscribes anyway in
                    // case the filter changed.
                    if !subscribed || !ack.session_present {
                        if let Err(e) = self
                            .shared
                            .client
                            .try_subscribe(self.filter.clone(), self.qos)
                        {
                            let _ = self.tx.send(Delivery::Failed(format!(
                                "cannot subscribe to `{}`: {e}",
                                self.filter
                            )));
                            return;
                        }
                        subscribed = true;
                    }
                }
                Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                    if ack.return_codes.contains(&SubscribeReasonCode::Failure) {
                        let _ = self.tx.send(Delivery::Failed(format!(
                            "the MQTT broker {} refused the subscription to `{}` (not authorised, or a bad filter)",
                            self.address, self.filter
                        )));
                        return;
                    }
                }
                Ok(Event::Incoming(Incoming::Publish(publish))) => {
                    // A source that is gone set `stop` first: the message
                    // stays unacknowledged with the broker, and the thread
                    // goes on until the DISCONNECT, so that the
                    // acknowledgements queued before it reach the broker.
                    if !self.deliver(publish) && !self.stop.load(Ordering::SeqCst) {
                        return;
                    }
                }
                // The broker closes the connection after the DISCONNECT:
                // read on until it does. Closing first, with messages unread
                // in the socket, would reset the connection, and the broker
                // could drop the acknowledgements it has not read yet.
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {}
                Ok(_) => {}
                Err(e) => {
                    if self.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if fatal(&e) {
                        let _ = self.tx.send(Delivery::Failed(format!(
                            "the MQTT broker {} refused the connection: {e}",
                            self.address
                        )));
                        return;
                    }
                    let delay = backoff.next();
                    if backoff.first() {
                        tracing::warn!(
                            input = %self.input,
                            broker = %self.address,
                            error = %e,
                            "MQTT connection lost; reconnecting with backoff"
                        );
                    } else {
                        tracing::debug!(input = %self.input, error = %e, ?delay, "MQTT reconnection failed");
                    }
                    std::thread::sleep(delay);
                }
            }
        }
    }

    /// Hands a message to the source; `false` when the source is gone.
    fn deliver(&mut self, publish: Publish) -> bool {
        let position = self.next_position;
        self.next_position += 1;
        let topic: Arc<str> = Arc::from(publish.topic.as_str());
        self.shared.remember(position, topic.clone());
        if publish.qos != QoS::AtMostOnce
            && let Ok(mut unacked) = self.shared.unacked.lock()
        {
            unacked.push_back(Unacked {
                position,
                connection: self.shared.connection.load(Ordering::SeqCst),
                pkid: publish.pkid,
            });
        }
        let message = Received {
            payload: publish.payload.to_vec(),
            position,
            arrival: now_micros(),
            topic: Some(topic),
            partition: None,
        };
        self.tx.send(Delivery::Message(message)).is_ok()
    }
}
