//! The Kafka output: an idempotent producer writing each row as a JSON
//! object, keyed by a column when asked.
//!
//! In a run that takes checkpoints ([`Sink::enable_checkpoints`]) the rows
//! go out in transactions, one per checkpoint: `transactional.id` is the
//! output's scope, so a new run's `init_transactions` fences a crashed one
//! and aborts its open transaction. At a checkpoint the output writes a
//! marker to the control topic inside the transaction ([`super::marker`])
//! and returns the marker as its state; once the runner has saved the
//! checkpoint, the transaction is committed and the next one begun. A
//! resuming run asks whether the marker of the checkpoint it resumes from
//! is committed ([`Sink::can_resume`]); if not, the checkpoint before it is
//! used, whose rows were committed: a `read_committed` consumer sees every
//! row once. A run without checkpoints (the REPL, `iotql test`) writes
//! without transactions, as rows come.
//!
//! An outage never drops a row: the producer waits for the brokers. The
//! rows of the open transaction are also kept in memory (the rows of one
//! checkpoint interval), and a transaction that saw an outage (or a failed
//! delivery, or a transaction error) is produced again in a new
//! transaction by a new producer, which fences the old one. Apache Kafka
//! keeps a transaction over a broker restart and would not need it, but
//! the noida test broker loses which partitions a transaction wrote to
//! when it restarts: that transaction's commit would make its rows
//! invisible to `read_committed` readers, and its records written after
//! the restart would stay pending. The old producer is dropped (its queue
//! purged) as soon as the outage is seen, while the brokers are still away,
//! so that nothing of the old transaction reaches them after they return.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use iotql_engine::arrow::array::Array;
use iotql_engine::arrow::datatypes::SchemaRef;
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::arrow::util::display::array_value_to_string;
use iotql_engine::error::EngineError;
use iotql_engine::io::{Sink, SinkMetrics};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use super::marker::{self, Marker};
use super::{Health, KafkaOutput, config_error, forward_log};

/// The producer's context: delivery failures are kept, so that the next
/// write or flush fails (or, in a transaction, produces it again) instead
/// of a row being dropped.
struct ProducerCtx {
    /// Shared by the producers of one output (a replay makes a new one),
    /// so that an outage is logged and counted once.
    health: Arc<Health>,
    failure: Mutex<Option<String>>,
    /// Outages seen so far: a transaction that saw one is produced again.
    outages: AtomicU64,
    /// Counts delivered rows (without transactions: rows count when the
    /// broker has them; in a transaction, when it is committed).
    delivered: Option<Arc<SinkMetrics>>,
}

impl ClientContext for ProducerCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        forward_log(&self.health.what, level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if self.health.failed(&error, reason) {
            self.outages.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl ProducerContext for ProducerCtx {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.health.working();
                if let Some(m) = &self.delivered {
                    m.rows_written.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err((e, _)) => {
                if let Ok(mut failure) = self.failure.lock() {
                    failure.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

/// A message of the open transaction, kept to be produced again.
struct Held {
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

/// The transactions of an output in a run that takes checkpoints.
struct Transactions {
    /// The output's scope: its `transactional.id` and its markers' key.
    scope: String,
    /// This run's number in its markers (a resumed run numbers its
    /// checkpoints again from the one it resumed from).
    run: u64,
    /// The last checkpoint's sequence number.
    seq: u64,
    /// The messages of the open transaction.
    held: Vec<Held>,
    /// The marker written in the open transaction, once a checkpoint is taken.
    marker: Option<Marker>,
    /// The producer's outage count when the transaction began.
    outages: u64,
}

/// Writes rows to a Kafka topic as JSON objects.
pub struct KafkaSink {
    name: String,
    output: KafkaOutput,
    producer: Option<BaseProducer<ProducerCtx>>,
    key: Option<usize>,
    metrics: Arc<SinkMetrics>,
    health: Arc<Health>,
    /// Set when the run takes checkpoints.
    txn: Option<Transactions>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("name", &self.name)
            .field("topic", &self.output.topic)
            .field("transactional", &self.txn.is_some())
            .finish_non_exhaustive()
    }
}

/// How long a flush waits between reports while the brokers do not answer.
const FLUSH_REPORT: Duration = Duration::from_secs(30);
/// How often a transactional output's waits look for an outage.
const LOOK: Duration = Duration::from_millis(200);
/// How long the events queued during an outage are served once it is over.
const DRAIN: Duration = Duration::from_millis(100);
/// How long one transactional request (init, commit, abort) may take
/// before it is tried again.
const TXN_REQUEST: Duration = Duration::from_secs(10);
/// `transaction.timeout.ms` (and `message.timeout.ms`) of a transactional
/// output unless set: a broker aborts a transaction left open longer
/// (Kafka's default cap, `transaction.max.timeout.ms`, is 15 minutes).
const TXN_TIMEOUT_MS: &str = "600000";

impl KafkaSink {
    pub fn new(name: &str, output: KafkaOutput) -> Self {
        let metrics = Arc::new(SinkMetrics::default());
        KafkaSink {
            name: name.to_string(),
            output,
            producer: None,
            key: None,
            health: Arc::new(Health::new(
                format!("output `{name}`"),
                Some(metrics.clone()),
            )),
            metrics,
            txn: None,
        }
    }

    fn error(&self, message: impl ToString) -> EngineError {
        EngineError::Sink {
            output: self.name.clone(),
            message: message.to_string(),
        }
    }

    /// librdkafka's settings for this output's clients, the user's last.
    fn client_settings(&self) -> std::collections::BTreeMap<String, String> {
        let mut settings = std::collections::BTreeMap::new();
        settings.insert("bootstrap.servers".into(), self.output.brokers.clone());
        settings.insert("client.id".into(), format!("iotql-{}", self.name));
        for (k, v) in &self.output.settings {
            settings.insert(k.clone(), v.clone());
        }
        settings
    }

    /// Creates the producer; in a transactional run, with the scope as its
    /// `transactional.id`, initialised (which fences an older producer of
    /// the scope and aborts its open transaction) and in a transaction.
    fn connect(&mut self) -> Result<(), EngineError> {
        let mut config = ClientConfig::new();
        config
            .set("enable.idempotence", "true")
            // Never give up on a message: an outage makes the job wait.
            .set("message.timeout.ms", "0")
            .set("linger.ms", "5");
        if let Some(t) = &self.txn {
            config
                .set("transactional.id", &t.scope)
                .set("transaction.timeout.ms", TXN_TIMEOUT_MS)
                .set("message.timeout.ms", TXN_TIMEOUT_MS);
        }
        for (k, v) in self.client_settings() {
            config.set(k, v);
        }
        let ctx = ProducerCtx {
            health: self.health.clone(),
            failure: Mutex::new(None),
            outages: AtomicU64::new(0),
            delivered: self.txn.is_none().then(|| self.metrics.clone()),
        };
        let producer: BaseProducer<ProducerCtx> = config.create_with_context(ctx).map_err(|e| {
            self.error(format!(
                "cannot create the Kafka producer: {}",
                config_error(&e)
            ))
        })?;
        if self.txn.is_some() {
            let initialised = self.retry_txn(&producer, "initialise the transactions of", |p| {
                p.init_transactions(TXN_REQUEST)
            })?;
            if !initialised {
                return Err(self.error(
                    "the brokers refused to initialise its transactions (see the warning above)",
                ));
            }
            producer
                .begin_transaction()
                .map_err(|e| self.error(format!("cannot begin a transaction: {e}")))?;
            let outages = producer.context().outages.load(Ordering::SeqCst);
            if let Some(t) = &mut self.txn {
                t.outages = outages;
            }
        }
        self.producer = Some(producer);
        Ok(())
    }

    /// Makes a transactional request until it is answered: while the
    /// brokers are away it is retried (the outage logged once), as
    /// librdkafka prescribes for a retriable error (a commit whose answer
    /// was lost is then answered as done, never made twice). `Ok(false)`:
    /// the transaction must be aborted (or the producer is fenced), and is
    /// produced again; an error that neither mends stops the job.
    fn retry_txn(
        &self,
        producer: &BaseProducer<ProducerCtx>,
        what: &str,
        request: impl Fn(&BaseProducer<ProducerCtx>) -> Result<(), KafkaError>,
    ) -> Result<bool, EngineError> {
        loop {
            match request(producer) {
                Ok(()) => {
                    // Failures reported while waiting belong to the outage
                    // that just ended: all served (a poll serves events
                    // until its time is up) before it is declared over.
                    producer.poll(DRAIN);
                    self.health.working();
                    return Ok(true);
                }
                Err(KafkaError::Transaction(e)) if e.is_retriable() => {
                    if let Some(refusal) = self.health.refusal() {
                        return Err(self.error(refusal));
                    }
                    self.health.failed(
                        &KafkaError::Transaction(e),
                        &format!("while trying to {what} the output"),
                    );
                    producer.poll(LOOK);
                }
                Err(KafkaError::Transaction(e)) if e.txn_requires_abort() || e.is_fatal() => {
                    tracing::warn!(
                        "output `{}`: cannot {what} the output ({e}); its transaction is produced again",
                        self.name
                    );
                    return Ok(false);
                }
                Err(e) => {
                    return Err(self.error(format!(
                        "cannot {what} the output on topic {} (do the brokers support transactions?): {e}",
                        self.output.topic
                    )));
                }
            }
        }
    }

    fn producer(&self) -> Result<&BaseProducer<ProducerCtx>, EngineError> {
        let producer = self
            .producer
            .as_ref()
            .ok_or_else(|| self.error("written before it was started"))?;
        if let Some(refusal) = producer.context().health.refusal() {
            return Err(self.error(refusal));
        }
        if self.txn.is_none()
            && let Some(failure) = producer
                .context()
                .failure
                .lock()
                .ok()
                .and_then(|f| f.clone())
        {
            return Err(self.error(format!("a message could not be delivered: {failure}")));
        }
        Ok(producer)
    }

    /// Sends one message to `topic`, waiting while librdkafka's queue is
    /// full; `Ok(false)` when a transaction was disturbed meanwhile (it is
    /// then produced again: see [`KafkaSink::replay`]).
    fn send_to(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<bool, EngineError> {
        let producer = self.producer()?;
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        loop {
            match producer.send(record) {
                Ok(()) => {
                    producer.poll(Duration::ZERO);
                    return Ok(!self.disturbed());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // Backpressure: wait for deliveries to free the queue.
                    record = r;
                    producer.poll(Duration::from_millis(50));
                    if let Some(refusal) = producer.context().health.refusal() {
                        return Err(self.error(refusal));
                    }
                    if self.disturbed() {
                        return Ok(false);
                    }
                }
                Err((e, _)) => return Err(self.error(format!("cannot send: {e}"))),
            }
        }
    }

    /// Whether the open transaction saw an outage or a failed delivery
    /// since it began.
    fn disturbed(&self) -> bool {
        let (Some(t), Some(p)) = (&self.txn, &self.producer) else {
            return false;
        };
        let ctx = p.context();
        ctx.outages.load(Ordering::SeqCst) != t.outages
            || ctx.failure.lock().map_or(true, |f| f.is_some())
    }

    /// Sends a row (or raw message); a transactional output keeps it until
    /// its transaction is committed.
    fn send(&mut self, key: Option<&[u8]>, payload: &[u8]) -> Result<(), EngineError> {
        if let Some(t) = &mut self.txn {
            t.held.push(Held {
                key: key.map(<[u8]>::to_vec),
                payload: payload.to_vec(),
            });
        }
        if !self.send_to(&self.output.topic, key, payload)? {
            self.replay()?;
        }
        Ok(())
    }

    /// Sends what the open transaction holds (rows and marker) again.
    /// `Ok(false)`: disturbed again.
    fn resend(&self) -> Result<bool, EngineError> {
        let Some(t) = &self.txn else {
            return Ok(true);
        };
        for m in &t.held {
            if !self.send_to(&self.output.topic, m.key.as_deref(), &m.payload)? {
                return Ok(false);
            }
        }
        if let Some(marker) = t.marker {
            return self.send_marker(marker);
        }
        Ok(true)
    }

    fn send_marker(&self, marker: Marker) -> Result<bool, EngineError> {
        let Some(t) = &self.txn else {
            return Ok(true);
        };
        self.send_to(
            &self.output.commit_topic,
            Some(t.scope.as_bytes()),
            &marker.encode(),
        )
    }

    /// Produces the open transaction again, in a new transaction of a new
    /// producer, until it is delivered undisturbed (see the module's doc).
    fn replay(&mut self) -> Result<(), EngineError> {
        loop {
            let held = self.txn.as_ref().map_or(0, |t| t.held.len());
            tracing::info!(
                "output `{}`: the open transaction was disturbed (an outage or a failed delivery); producing its {held} messages again in a new transaction",
                self.name
            );
            // Dropping the producer purges its queue at once, while the
            // brokers are away.
            self.producer = None;
            self.connect()?;
            if self.resend()? && self.wait_for_deliveries()? {
                return Ok(());
            }
        }
    }

    /// Waits until every message sent is acknowledged. `Ok(false)`: a
    /// transaction was disturbed meanwhile.
    fn wait_for_deliveries(&self) -> Result<bool, EngineError> {
        let producer = self.producer()?;
        let started = Instant::now();
        let mut reported = Instant::now();
        let wait = if self.txn.is_some() {
            LOOK
        } else {
            FLUSH_REPORT
        };
        loop {
            match producer.flush(wait) {
                Ok(()) => break,
                Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) => {
                    if let Some(refusal) = producer.context().health.refusal() {
                        return Err(self.error(refusal));
                    }
                    if self.disturbed() {
                        return Ok(false);
                    }
                    if reported.elapsed() >= FLUSH_REPORT {
                        reported = Instant::now();
                        tracing::warn!(
                            "output `{}`: {} messages not yet acknowledged after {:?}; still waiting for the brokers",
                            self.name,
                            producer.in_flight_count(),
                            started.elapsed()
                        );
                    }
                }
                Err(e) => return Err(self.error(format!("flush: {e}"))),
            }
        }
        // A delivery that failed while flushing.
        self.producer()?;
        Ok(!self.disturbed())
    }

    /// Every message sent acknowledged; a disturbed transaction produced again.
    fn deliver(&mut self) -> Result<(), EngineError> {
        if !self.wait_for_deliveries()? {
            self.replay()?;
        }
        Ok(())
    }

    /// Commits the open transaction (produced again first if it was
    /// disturbed) and begins the next.
    fn commit(&mut self) -> Result<(), EngineError> {
        loop {
            self.deliver()?;
            let producer = self.producer()?;
            if self.retry_txn(producer, "commit the transaction of", |p| {
                p.commit_transaction(TXN_REQUEST)
            })? {
                break;
            }
            self.replay()?;
        }
        let producer = self.producer()?;
        let outages = producer.context().outages.load(Ordering::SeqCst);
        producer
            .begin_transaction()
            .map_err(|e| self.error(format!("cannot begin a transaction: {e}")))?;
        if let Some(t) = &mut self.txn {
            let rows = t.held.len() as u64;
            self.metrics.rows_written.fetch_add(rows, Ordering::Relaxed);
            t.held.clear();
            t.marker = None;
            t.outages = outages;
        }
        Ok(())
    }
}

/// In debug builds, `IOTQL_TEST_CRASH_BEFORE_COMMIT=N` aborts the process
/// at the N-th commit of a transaction that holds rows, after its
/// checkpoint was saved and before the commit: the crash that the markers
/// are for, made testable without timing.
#[cfg(debug_assertions)]
fn crash_before_commit_for_tests(rows: usize) {
    static COMMITS: AtomicU64 = AtomicU64::new(0);
    if rows == 0 {
        return;
    }
    let Some(n) = std::env::var("IOTQL_TEST_CRASH_BEFORE_COMMIT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    if COMMITS.fetch_add(1, Ordering::SeqCst) + 1 == n {
        eprintln!(
            "IOTQL_TEST_CRASH_BEFORE_COMMIT: aborting after the checkpoint's save, before its commit"
        );
        std::process::abort();
    }
}

impl Sink for KafkaSink {
    fn enable_checkpoints(&mut self, scope: &str) -> Result<(), EngineError> {
        // A number of this run, for its markers.
        let run = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32);
        self.txn = Some(Transactions {
            scope: scope.to_string(),
            run,
            seq: 0,
            held: Vec::new(),
            marker: None,
            outages: 0,
        });
        marker::ensure_topic(&self.client_settings(), &self.output.commit_topic)
            .map_err(|e| self.error(e))?;
        // Fences a crashed run's producer now, so that its open transaction
        // is aborted (or its commit completed) before `can_resume` looks.
        self.connect()
    }

    fn can_resume(&mut self, state: &[u8]) -> Result<bool, EngineError> {
        let (Some(t), Some(m)) = (&self.txn, Marker::decode(state)) else {
            return Ok(false);
        };
        let committed = marker::is_committed(
            &self.client_settings(),
            &self.output.commit_topic,
            &t.scope,
            m,
        )
        .map_err(|e| self.error(e))?;
        if !committed {
            tracing::info!(
                "output `{}`: the transaction of checkpoint marker {} was not committed; an older checkpoint is used",
                self.name,
                m.seq
            );
        }
        Ok(committed)
    }

    fn recover(&mut self, state: &[u8]) -> Result<(), EngineError> {
        let m = Marker::decode(state)
            .ok_or_else(|| self.error("the checkpoint's state is not a Kafka marker"))?;
        if let Some(t) = &mut self.txn {
            t.seq = m.seq;
        }
        Ok(())
    }

    fn start(&mut self, schema: &SchemaRef) -> Result<(), EngineError> {
        self.key = match &self.output.key {
            None => None,
            Some(k) => Some(
                schema
                    .fields()
                    .iter()
                    .position(|f| f.name().eq_ignore_ascii_case(k))
                    .ok_or_else(|| {
                        self.error(format!(
                            "key `{k}` is not a column of the output (its columns: {})",
                            schema
                                .fields()
                                .iter()
                                .map(|f| f.name().as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })?,
            ),
        };
        if self.producer.is_none() {
            self.connect()?;
        }
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        let lines = crate::file::jsonl::json_lines(batch).map_err(|e| self.error(e))?;
        let keys: Option<Vec<Option<String>>> = match self.key {
            None => None,
            Some(i) => {
                let column = batch.column(i);
                Some(
                    (0..batch.num_rows())
                        .map(|r| {
                            (!column.is_null(r))
                                .then(|| array_value_to_string(column, r).ok())
                                .flatten()
                        })
                        .collect(),
                )
            }
        };
        for (row, line) in lines
            .split(|&b| b == b'\n')
            .take(batch.num_rows())
            .enumerate()
        {
            let key = keys
                .as_ref()
                .and_then(|k| k[row].as_deref())
                .map(str::as_bytes);
            self.send(key, line)?;
        }
        Ok(())
    }

    /// A message that is not a row (the simulator's malformed events),
    /// sent as it is, without a key.
    fn write_raw(&mut self, payload: &[u8]) -> Result<(), EngineError> {
        self.send(None, payload)
    }

    fn tick(&mut self) -> Result<(), EngineError> {
        if let Some(p) = &self.producer {
            p.poll(Duration::ZERO);
            if self.disturbed() {
                self.replay()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), EngineError> {
        if self.producer.is_none() {
            // Finished: everything was flushed then.
            return Ok(());
        }
        self.deliver()
    }

    /// Without transactions: flushed, nothing to roll back. With them: the
    /// marker of this checkpoint in the open transaction, delivered; the
    /// marker is the state.
    fn checkpoint(&mut self) -> Result<Option<Vec<u8>>, EngineError> {
        let Some(t) = &mut self.txn else {
            self.flush()?;
            return Ok(None);
        };
        t.seq += 1;
        let m = Marker {
            seq: t.seq,
            run: t.run,
        };
        t.marker = Some(m);
        if !self.send_marker(m)? {
            self.replay()?;
        }
        self.deliver()?;
        Ok(Some(m.encode()))
    }

    fn committed(&mut self) -> Result<(), EngineError> {
        let Some(t) = &self.txn else {
            return Ok(());
        };
        if t.marker.is_none() {
            return Ok(());
        }
        tracing::debug!(
            "output `{}`: committing the transaction of checkpoint marker {:?} ({} messages)",
            self.name,
            t.marker,
            t.held.len()
        );
        #[cfg(debug_assertions)]
        crash_before_commit_for_tests(t.held.len());
        self.commit()
    }

    fn finish(&mut self) -> Result<(), EngineError> {
        if self.producer.is_some() {
            if self.txn.is_some() {
                self.commit()?;
            } else {
                self.flush()?;
            }
        }
        self.producer = None;
        Ok(())
    }

    fn metrics(&self) -> Option<Arc<SinkMetrics>> {
        Some(self.metrics.clone())
    }
}
