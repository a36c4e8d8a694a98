//! The boundary between the engine and connectors: where rows go ([`Sink`]).
//! Sources push batches into a [`crate::dataflow::Dataflow`].

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex};

use datafusion::arrow::record_batch::RecordBatch;

use crate::error::EngineError;

/// Where an output's rows go. Connectors implement it (files, databases,
/// brokers, alert sinks).
pub trait Sink: Send {
    /// Called once before any write, with the schema of the rows to come
    /// (a CSV sink writes its header here, so an empty output still has one).
    fn start(
        &mut self,
        _schema: &datafusion::arrow::datatypes::SchemaRef,
    ) -> Result<(), EngineError> {
        Ok(())
    }

    /// Writes rows. A sink that cannot write returns an error; the job stops
    /// rather than dropping them.
    fn write(&mut self, batch: &RecordBatch) -> Result<(), EngineError>;

    /// Writes rows with their event times (`System.Timestamp()` of each
    /// row, in microseconds), for a sink that acts on time (throttling
    /// alerts); the default ignores them.
    fn write_at(&mut self, batch: &RecordBatch, _event_times: &[i64]) -> Result<(), EngineError> {
        self.write(batch)
    }

    /// Writes one message that is not a row (the simulator's malformed
    /// events), as is, in order with the rows written before and after it.
    /// Outputs that hold only rows (the default) refuse it.
    fn write_raw(&mut self, _payload: &[u8]) -> Result<(), EngineError> {
        Err(EngineError::Unsupported(
            "this output takes only rows, not raw (malformed) messages".into(),
        ))
    }

    /// Hands what has been written so far on to the file or system and
    /// makes it durable (written to the file, acknowledged by the broker), so
    /// that the input positions the rows came from can be committed; a paced
    /// producer calls it so that readers see events as they come. Outputs
    /// that do not buffer do nothing (the default).
    fn flush(&mut self) -> Result<(), EngineError> {
        Ok(())
    }

    /// The output is complete: flush and close.
    fn finish(&mut self) -> Result<(), EngineError>;

    /// The run stops before its inputs end, right after a checkpoint that
    /// holds this output's state, and the next run resumes from it: an
    /// output that holds work for checkpoints leaves that work to the next
    /// run instead of finishing it (the alert outbox is in the checkpoint,
    /// so a receiver that is down does not hold the stop up). The default
    /// finishes.
    fn stop(&mut self) -> Result<(), EngineError> {
        self.finish()
    }

    /// Called often while the job runs (at least every 200 ms, also when
    /// no rows come): a sink that batches rows writes those it has held
    /// longer than its maximum latency, so that a quiet stream's last rows
    /// (an alert) are not held back waiting for a full batch.
    fn tick(&mut self) -> Result<(), EngineError> {
        Ok(())
    }

    /// Rows the sink gave up on (an alert receiver that kept failing), for
    /// the dead-letter output; `input` is the output's name.
    fn take_dead_letters(&mut self) -> Vec<crate::operator::DeadLetter> {
        Vec::new()
    }

    /// The sink's delivery counters, shared with whoever reports them.
    fn metrics(&self) -> Option<Arc<SinkMetrics>> {
        None
    }

    /// For a sink that passes on other rows than it is given (a throttle
    /// holds rows back and adds a column): shows `tap` the rows it passes
    /// on from now, and returns their columns. `None` (the default): it
    /// passes on what it is given, which the caller shows the tap. Called
    /// after `start`.
    fn tap_passed_on(
        &mut self,
        _tap: Arc<TapSlot>,
    ) -> Option<datafusion::arrow::datatypes::SchemaRef> {
        None
    }

    /// A checkpoint is being taken: make everything written so far durable
    /// and return the state that [`Sink::recover`] rolls the output back to
    /// (a file's length, a table's last row id, the files committed), so
    /// that rows written after the checkpoint can be undone when a job
    /// resumes from it. `None` (the default, after a flush): the output
    /// cannot be rolled back, and rows written between the checkpoint and a
    /// crash are written again (at least once).
    fn checkpoint(&mut self) -> Result<Option<Vec<u8>>, EngineError> {
        self.flush()?;
        Ok(None)
    }

    /// Before [`Sink::start`], when a job resumes from a checkpoint: roll
    /// the output back to `state` (what [`Sink::checkpoint`] returned then)
    /// and continue after it. Only called with this sink's own state.
    fn recover(&mut self, _state: &[u8]) -> Result<(), EngineError> {
        Err(EngineError::Unsupported(
            "this output cannot be rolled back to a checkpoint".into(),
        ))
    }

    /// Called once, before [`Sink::can_resume`], [`Sink::recover`] and
    /// [`Sink::start`], when the run takes checkpoints. `scope` names this
    /// output of this job's state folder, the same in every run that resumes
    /// from it (a Kafka transactional id is made from it). An output that
    /// holds work back until a checkpoint commits (a transaction, an alert
    /// outbox) starts doing so here; in a run without checkpoints it is not
    /// called, and the output delivers as it goes.
    fn enable_checkpoints(&mut self, _scope: &str) -> Result<(), EngineError> {
        Ok(())
    }

    /// Whether the job may resume from the checkpoint in which this
    /// output's state was `state`: `false` when what the checkpoint counts
    /// as written was never committed (a Kafka transaction that a crash
    /// aborted), and the runner tries the checkpoint before it. Called
    /// after [`Sink::enable_checkpoints`], before [`Sink::recover`].
    fn can_resume(&mut self, _state: &[u8]) -> Result<bool, EngineError> {
        Ok(true)
    }

    /// The checkpoint that holds the state [`Sink::checkpoint`] returned
    /// last is durable: commit what was held for it (a Kafka transaction)
    /// and deliver what waited for it (alerts in the outbox).
    fn committed(&mut self) -> Result<(), EngineError> {
        Ok(())
    }

    /// The output holds work that waits for a checkpoint (alerts in the
    /// outbox): the runner takes one soon (within about a second) rather
    /// than at the next interval.
    fn wants_checkpoint(&self) -> bool {
        false
    }
}

/// Sees the rows given to an output as they are written (an HTTP server's
/// tail of recent rows and its live feed). Called on the dataflow's thread:
/// it must not block.
pub trait OutputTap: Send + Sync + std::fmt::Debug {
    /// Rows written, with each row's event time (microseconds) when the
    /// output has them.
    fn rows(&self, batch: &RecordBatch, event_times: Option<&[i64]>);
}

/// Where a tap is attached to an output, once, while the job runs
/// ([`crate::dataflow::OutputStats::tap`]).
pub type TapSlot = std::sync::OnceLock<Arc<dyn OutputTap>>;

/// What a sink counts about its deliveries. Shared: the run summary and a
/// metrics endpoint read it while the sink writes.
#[derive(Debug, Default)]
pub struct SinkMetrics {
    /// Rows the destination has taken (committed, acknowledged).
    pub rows_written: AtomicU64,
    /// Attempts that failed and were made again.
    pub retries: AtomicU64,
    /// Rows given up on: sent to the dead-letter output.
    pub failures: AtomicU64,
    /// Rows held back by throttling.
    pub suppressed: AtomicU64,
    /// Times the destination became unreachable (each outage counted once,
    /// however many attempts failed in it).
    pub outages: AtomicU64,
    /// When the current outage began (milliseconds since the Unix epoch);
    /// 0 while the destination is reachable.
    pub down_since_ms: AtomicI64,
}

/// A sink that keeps every batch in memory, for embedding and tests.
#[derive(Debug, Clone, Default)]
pub struct CollectSink {
    batches: Arc<Mutex<Vec<RecordBatch>>>,
}

impl CollectSink {
    pub fn new() -> Self {
        Self::default()
    }

    /// The batches written so far.
    pub fn batches(&self) -> Vec<RecordBatch> {
        self.batches.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

impl Sink for CollectSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        self.batches
            .lock()
            .map_err(|_| EngineError::Internal("collect sink lock poisoned".into()))?
            .push(batch.clone());
        Ok(())
    }

    fn finish(&mut self) -> Result<(), EngineError> {
        Ok(())
    }
}

/// Where an input's events come from. Connectors implement it; the runner
/// reads batches and pushes them into the dataflow.
pub trait Source: Send {
    /// The schema of the batches (without the position column).
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef;

    /// The next batch, with a position column (`__iotql_position`) when the
    /// source knows positions, and the events it could not decode; `None`
    /// at the end of a bounded input.
    fn next_batch(&mut self) -> Result<Option<SourceBatch>, EngineError>;

    /// How far the source has read: (bytes read, total bytes if known).
    fn progress(&self) -> (u64, Option<u64>) {
        (0, None)
    }

    /// Positions to commit (consumer offsets) and how, for a source that
    /// reads from a broker; `None` for files.
    fn committer(&self) -> Option<Box<dyn Committer>> {
        None
    }

    /// Continues reading after the events a checkpoint covers: `position`
    /// is a [`SourceBatch::resume`] of an earlier run of the same job.
    fn seek(&mut self, _position: &[u8]) -> Result<(), EngineError> {
        Err(EngineError::Unsupported(
            "this input cannot resume from a checkpoint".into(),
        ))
    }

    /// What the source measures of where it reads (a Kafka input's lag per
    /// partition), shared with whoever reports it; taken before the source
    /// moves to its reader thread. `None` (the default): nothing to report.
    fn metrics(&self) -> Option<Arc<crate::metrics::SourceMetrics>> {
        None
    }
}

/// Commits a broker source's read positions once the outputs that depend on
/// them are flushed. Shared with the thread that reads the source.
pub trait Committer: Send {
    /// Records that every event of the batches up to the one marked `mark`
    /// (a [`SourceBatch::mark`]) is reflected in flushed outputs, and
    /// commits their positions.
    fn commit(&mut self, mark: u64) -> Result<(), EngineError>;

    /// Describes a position of the source's position column (`line N` for
    /// files): e.g. `topic readings partition 3 offset 1042`.
    fn describe(&self, position: u64) -> String;
}

/// A batch read from a source, and the events of it that were refused.
#[derive(Debug, Default)]
pub struct SourceBatch {
    pub batch: Option<RecordBatch>,
    pub dead_letters: Vec<crate::operator::DeadLetter>,
    /// A broker source's mark of the positions read up to this batch, for
    /// [`Committer::commit`]; 0 for sources without commits.
    pub mark: u64,
    /// The time of reading, for a live source (Kafka, MQTT): an input with
    /// no events still advances its watermark with the arrival clock.
    pub arrival: Option<crate::time::EventTime>,
    /// A partitioned source's partitions (the ids in its partition column),
    /// sent when they change (a Kafka rebalance).
    pub partitions: Option<Vec<u64>>,
    /// Where reading resumes after this batch (a file's byte offset and
    /// line), for checkpoints: given to [`Source::seek`] by a job that
    /// resumes. `None` for a source that cannot resume (stdin).
    pub resume: Option<Vec<u8>>,
}
