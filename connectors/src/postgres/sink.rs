//! The PostgreSQL sink: buffers rows, writes them in transactions of up to
//! `batch_size` rows, and makes a transaction again, with backoff, while
//! the server is away (the job waits meanwhile: backpressure). With
//! checkpoints, an output without a key keeps a ledger of its batches and
//! rolls its table back to a checkpoint it resumes from (see
//! [`super::ledger`]); with a key, rows are upserts and need no rollback.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use iotql_engine::arrow::compute::concat_batches;
use iotql_engine::arrow::datatypes::SchemaRef;
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::error::EngineError;
use iotql_engine::io::{Sink, SinkMetrics};
use iotql_engine::operator::DeadLetter;
use postgres::binary_copy::BinaryCopyInWriter;

use super::PostgresOutput;
use super::copy::Rows;
use super::ledger::{self, Committed};
use super::server::{Server, certificate_hint, describe, is_outage};
use super::table::{self, StartError, Target};
use crate::backoff::Backoff;
use crate::outage::Outage;

/// How long `start` waits for a server that cannot be reached before it
/// refuses the job (once started, an output waits as long as it takes).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes an output's rows into a PostgreSQL table. See the module
/// documentation of [`super`].
pub struct PostgresSink {
    name: String,
    output: PostgresOutput,
    started: Option<Started>,
    /// Rows not written yet, and when the oldest of them came.
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    oldest: Option<Instant>,
    retry: Retry,
    /// Rows the server refused as bad data.
    dead_letters: Vec<DeadLetter>,
    /// The run takes checkpoints: an output without a key keeps a ledger.
    checkpoints: bool,
    /// The batch number of the checkpoint resumed from, rolled back to at
    /// start.
    resume: Option<i64>,
    committed: Committed,
}

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSink")
            .field("name", &self.name)
            .field("table", &self.output.table.to_string())
            .finish_non_exhaustive()
    }
}

/// What `start` found out.
#[derive(Debug)]
struct Started {
    server: Server,
    target: Target,
    /// The number of the last committed batch (outputs without a key).
    seq: i64,
}

/// Waiting out a server that cannot be reached: the backoff, the retry
/// count, and the outage (logged once when it begins and once when it
/// ends, counted in the metrics).
#[derive(Debug)]
struct Retry {
    backoff: Backoff,
    outage: Outage,
    metrics: Arc<SinkMetrics>,
    /// `host:port/db as user`, for messages.
    address: String,
}

impl Retry {
    fn new(name: &str, output: &PostgresOutput) -> Self {
        let metrics = Arc::new(SinkMetrics::default());
        let address = output.address();
        Retry {
            backoff: Backoff::default(),
            outage: Outage::new(
                format!("output {name} (PostgreSQL {address})"),
                Some(metrics.clone()),
            ),
            metrics,
            address,
        }
    }

    /// An attempt failed because the server is away: wait before the next.
    fn wait(&mut self, reason: &str) {
        self.metrics.retries.fetch_add(1, Ordering::Relaxed);
        self.outage.failed(&reason);
        std::thread::sleep(self.backoff.next());
    }

    /// An attempt succeeded.
    fn over(&mut self) {
        self.backoff.reset();
        self.outage.succeeded();
    }
}

/// Why a transaction failed.
#[derive(Debug)]
enum Failure {
    /// The server went away or is restarting: make the transaction again.
    Outage(String),
    /// The server refused the rows: the job stops.
    Refused(String),
    /// A row of the batch is bad data (a data exception or a constraint
    /// the table holds: SQLSTATE classes 22 and 23): the batch is written
    /// again in halves until the bad rows stand alone, and they become dead
    /// letters.
    BadRow(String),
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Self {
        let class = e.code().map(|c| &c.code()[..2]);
        if is_outage(&e) {
            Failure::Outage(describe(&e))
        } else if matches!(class, Some("22" | "23")) {
            Failure::BadRow(describe(&e))
        } else {
            Failure::Refused(describe(&e))
        }
    }
}

impl PostgresSink {
    /// An output that connects when it starts.
    pub fn new(name: &str, output: PostgresOutput) -> Self {
        PostgresSink {
            name: name.to_string(),
            retry: Retry::new(name, &output),
            output,
            started: None,
            pending: Vec::new(),
            pending_rows: 0,
            oldest: None,
            dead_letters: Vec::new(),
            checkpoints: false,
            resume: None,
            committed: Committed::default(),
        }
    }

    fn error(&self, message: impl ToString) -> EngineError {
        EngineError::Sink {
            output: self.name.clone(),
            message: message.to_string(),
        }
    }

    /// Writes every buffered row, `batch_size` rows per transaction.
    fn write_pending(&mut self) -> Result<(), EngineError> {
        let batches = std::mem::take(&mut self.pending);
        self.pending_rows = 0;
        self.oldest = None;
        let Some(first) = batches.first() else {
            return Ok(());
        };
        let rows = concat_batches(&first.schema(), &batches)?;
        let mut offset = 0;
        while offset < rows.num_rows() {
            let len = self.output.batch_size.min(rows.num_rows() - offset);
            self.commit(&rows.slice(offset, len))?;
            offset += len;
        }
        Ok(())
    }

    /// Writes `batch` in one transaction, made again until the server
    /// takes it or refuses it.
    fn commit(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        let started = self
            .started
            .as_mut()
            .ok_or_else(|| EngineError::Internal("postgres output written before start".into()))?;
        let rows = Rows::new(batch, &started.target.columns).map_err(|e| EngineError::Sink {
            output: self.name.clone(),
            message: e,
        })?;
        let seq = started.seq + 1;
        let mut retry = false;
        loop {
            match transaction(&started.server, &started.target, &rows, seq, retry) {
                Ok(()) => break,
                Err(Failure::BadRow(_)) if batch.num_rows() > 1 => {
                    let half = batch.num_rows() / 2;
                    self.commit(&batch.slice(0, half))?;
                    return self.commit(&batch.slice(half, batch.num_rows() - half));
                }
                Err(Failure::BadRow(reason)) => {
                    self.retry.metrics.failures.fetch_add(1, Ordering::Relaxed);
                    self.dead_letters.push(DeadLetter {
                        input: self.name.clone(),
                        position: format!("table {}", self.output.table),
                        reason: format!("PostgreSQL refused the row: {reason}"),
                        raw: crate::file::jsonl::row_json(batch, 0),
                    });
                    return Ok(());
                }
                Err(Failure::Outage(reason)) => {
                    self.retry.wait(&reason);
                    retry = true;
                }
                Err(Failure::Refused(reason)) => {
                    return Err(EngineError::Sink {
                        output: self.name.clone(),
                        message: format!(
                            "PostgreSQL ({}) refused rows for table {}: {reason}",
                            self.retry.address, self.output.table
                        ),
                    });
                }
            }
        }
        started.seq = seq;
        self.retry.over();
        self.retry
            .metrics
            .rows_written
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Creates or checks the table and, when resuming from a checkpoint,
    /// rolls it back to it (made again, like the rest of `start`, when the
    /// server is away).
    fn prepare(
        &self,
        client: &mut postgres::Client,
        schema: &SchemaRef,
    ) -> Result<(Target, i64), StartError> {
        let (target, seq) =
            table::prepare(client, &self.name, &self.output, schema, self.checkpoints)?;
        let (Some(to), Some((progress, ledger))) = (self.resume, target.ledger()) else {
            return Ok((target, seq));
        };
        let removed = ledger::roll_back(client, progress, ledger, &self.output, to)?;
        if removed > 0 || seq != to {
            tracing::info!(
                output = %self.name,
                table = %self.output.table,
                removed,
                batches = seq - to,
                "removed the rows written after the checkpoint"
            );
        }
        Ok((target, to))
    }

    /// Forgets the ledger's batches up to `seq`. Housekeeping: a failure
    /// (the server away) leaves them for the next checkpoint.
    fn forget(&self, seq: i64) {
        let Some(started) = &self.started else { return };
        let Some((progress, ledger)) = started.target.ledger() else {
            return;
        };
        let forgotten = started.server.get().and_then(|mut c| {
            ledger::forget(&mut c, progress, ledger, seq).map_err(|e| describe(&e))
        });
        if let Err(e) = forgotten {
            tracing::debug!(output = %self.name, error = %e, "the ledger was not trimmed; next checkpoint");
        }
    }
}

/// One attempt at writing `rows` as batch number `seq`. Without a key, the
/// output's progress row is locked first: a batch whose number is there
/// was committed by an attempt whose connection broke during COMMIT
/// (`retry`), and is not written twice. The lock also waits for such an
/// attempt's transaction to end, when the server has not noticed yet that
/// its client is gone. With a ledger, the transaction records itself as
/// the batch's.
fn transaction(
    server: &Server,
    target: &Target,
    rows: &Rows,
    seq: i64,
    retry: bool,
) -> Result<(), Failure> {
    let mut connection = server.get().map_err(Failure::Outage)?;
    let mut tx = connection.transaction()?;
    tx.batch_execute(&target.begin)?;
    if let Some(p) = &target.progress {
        let done: i64 = tx.query_one(&p.lock, &[&p.target, &p.output])?.get(0);
        if retry && done == seq {
            return Ok(());
        }
        if done != seq - 1 {
            return Err(Failure::Refused(format!(
                "iotql_sink_progress records batch {done} for output `{}`, where this output wrote {}: another job writes to this table with an output of the same name; give each its own output name",
                p.output,
                seq - 1
            )));
        }
    }
    let mut writer = BinaryCopyInWriter::new(tx.copy_in(&target.copy)?, &target.copy_types);
    let numbered = target.insert.is_some();
    let mut cells = Vec::with_capacity(target.copy_types.len());
    for row in 0..rows.len() {
        rows.fill(row, numbered, &mut cells);
        writer.write_raw(cells.iter())?;
    }
    writer.finish()?;
    if let Some(insert) = &target.insert {
        tx.batch_execute(insert)?;
    }
    if let Some(p) = &target.progress {
        tx.execute(&p.update, &[&p.target, &p.output, &seq])?;
        if let Some(ledger) = &p.ledger {
            tx.execute(&ledger.record, &[&p.target, &p.output, &seq])?;
        }
    }
    tx.commit()?;
    Ok(())
}

impl Sink for PostgresSink {
    /// Connects, creates or checks the table. A server that cannot be
    /// reached is waited for up to 30 s; a table that does not fit the
    /// output refuses the job.
    fn start(&mut self, schema: &SchemaRef) -> Result<(), EngineError> {
        let server = Server::of(&self.output).map_err(|e| self.error(e))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let prepared = server
                .connect()
                .map_err(StartError::from)
                .and_then(|mut client| self.prepare(&mut client, schema));
            match prepared {
                Ok((target, seq)) => {
                    self.retry.over();
                    self.started = Some(Started {
                        server,
                        target,
                        seq,
                    });
                    return Ok(());
                }
                Err(StartError::Server(e)) if is_outage(&e) => {
                    if Instant::now() >= deadline {
                        return Err(self.error(format!(
                            "cannot reach PostgreSQL at {} ({}) for {} s; is the server running, and are the host and port right?",
                            self.retry.address,
                            describe(&e),
                            START_TIMEOUT.as_secs()
                        )));
                    }
                    self.retry.wait(&describe(&e));
                }
                Err(StartError::Server(e)) => {
                    let error = describe(&e);
                    let hint = certificate_hint(&error, &self.output.tls);
                    return Err(self.error(format!(
                        "PostgreSQL at {}: {error}{hint}",
                        self.retry.address
                    )));
                }
                Err(StartError::Refused(message)) => return Err(self.error(message)),
            }
        }
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.pending.push(batch.clone());
        self.pending_rows += batch.num_rows();
        self.oldest.get_or_insert_with(Instant::now);
        if self.pending_rows >= self.output.batch_size {
            self.write_pending()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), EngineError> {
        self.write_pending()
    }

    fn finish(&mut self) -> Result<(), EngineError> {
        self.write_pending()
    }

    fn tick(&mut self) -> Result<(), EngineError> {
        if self
            .oldest
            .is_some_and(|t| t.elapsed() >= self.output.max_latency)
        {
            self.write_pending()?;
        }
        Ok(())
    }

    fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.dead_letters)
    }

    fn metrics(&self) -> Option<Arc<SinkMetrics>> {
        Some(self.retry.metrics.clone())
    }

    /// Without a key the ledger is kept from here on (see `ledger.rs`).
    fn enable_checkpoints(&mut self, _scope: &str) -> Result<(), EngineError> {
        self.checkpoints = true;
        Ok(())
    }

    /// Commits every row; without a key, the state is the number of the
    /// last batch committed. With a key, replayed rows overwrite their own:
    /// no state.
    fn checkpoint(&mut self) -> Result<Option<Vec<u8>>, EngineError> {
        self.write_pending()?;
        match &self.started {
            Some(started) if started.target.ledger().is_some() => {
                self.committed.taken(started.seq);
                Ok(Some(ledger::state(started.seq)))
            }
            _ => Ok(None),
        }
    }

    fn recover(&mut self, state: &[u8]) -> Result<(), EngineError> {
        self.resume = Some(ledger::batch_of(state).map_err(|e| self.error(e))?);
        Ok(())
    }

    fn committed(&mut self) -> Result<(), EngineError> {
        if let Some(seq) = self.committed.committed() {
            self.forget(seq);
        }
        Ok(())
    }
}
