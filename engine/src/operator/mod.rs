//! Operators: the stages of a running job. Each consumes messages from its
//! inputs and produces messages for its consumers; the runtime
//! ([`crate::dataflow`]) routes them and keeps the watermark bookkeeping of
//! operators with several inputs.

pub(crate) mod analytic;
pub(crate) mod apply;
pub(crate) mod filter;
pub(crate) mod join;
pub(crate) mod project;
pub(crate) mod reference;
pub(crate) mod scan;
mod sink;
pub(crate) mod substream;
pub(crate) mod timestamp;
mod union;

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;

pub use analytic::AnalyticOperator;
pub use filter::FilterOperator;
pub use project::ProjectOperator;
pub use scan::ScanOperator;
pub use sink::SinkOperator;
pub use timestamp::{TimestampOperator, TimestampStats};
pub use union::UnionOperator;

use crate::error::EngineError;
use crate::time::EventTime;

/// What flows between operators.
#[derive(Debug, Clone)]
pub enum Message {
    Batch(RecordBatch),
    /// A promise: no later batch holds an event older than this.
    Watermark(EventTime),
    /// The same promise per substream (`TIMESTAMP BY ... OVER`): no later
    /// row of substream `id` is older than its time. Only substreams whose
    /// watermark advanced are listed.
    Substreams(Arc<Vec<(u64, EventTime)>>),
}

/// An event refused by the job, kept with where it came from and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    pub input: String,
    /// Where in the input: a line number for files, partition/offset for Kafka.
    pub position: String,
    pub reason: String,
    /// The event as read (for rows already decoded: the row as JSON).
    pub raw: String,
}

/// Applies `f` to a whole batch; if it fails (a CAST of a value that is
/// not a number, ...), to each row on its own: the rows it fails on become
/// dead letters, with the error as the reason, and the rest goes on.
pub(crate) fn per_row_on_error(
    batch: &RecordBatch,
    what: &str,
    f: impl Fn(&RecordBatch) -> Result<RecordBatch, EngineError>,
    out: &mut Output,
) -> Result<Option<RecordBatch>, EngineError> {
    let whole = match f(batch) {
        Ok(b) => return Ok(Some(b)),
        Err(e) => e,
    };
    let mut kept = Vec::new();
    for row in 0..batch.num_rows() {
        let one = batch.slice(row, 1);
        match f(&one) {
            Ok(b) => kept.push(b),
            Err(e) => out.dead_letters.push(DeadLetter {
                input: what.to_string(),
                position: event_position(&one),
                reason: plain_error(&e.to_string()),
                raw: row_json(&one),
            }),
        }
    }
    // Failing on the whole batch but on no single row is the engine's fault.
    let Some(first) = kept.first() else {
        return Ok(None);
    };
    if kept.len() == batch.num_rows() {
        return Err(whole);
    }
    let schema = first.schema();
    Ok(Some(datafusion::arrow::compute::concat_batches(
        &schema, &kept,
    )?))
}

/// An evaluation error without the layers of wrapping it went through.
fn plain_error(message: &str) -> String {
    let mut m = message;
    for prefix in [
        "evaluation failed: ",
        "Arrow error: ",
        "External error: ",
        "Cast error: ",
    ] {
        m = m.strip_prefix(prefix).unwrap_or(m);
    }
    m.to_string()
}

/// "event at <time>" for a one-row batch with an event time.
fn event_position(row: &RecordBatch) -> String {
    use datafusion::arrow::array::AsArray;
    row.schema()
        .index_of(crate::time::EVENT_TIME)
        .ok()
        .and_then(|i| {
            row.column(i)
                .as_primitive_opt::<datafusion::arrow::datatypes::TimestampMicrosecondType>()
                .filter(|t| !t.is_empty())
                .map(|t| format!("event at {}", EventTime(t.value(0))))
        })
        .unwrap_or_else(|| "event".to_string())
}

/// A one-row batch as JSON, without hidden columns.
pub(crate) fn row_json(row: &RecordBatch) -> String {
    let keep: Vec<usize> = (0..row.num_columns())
        .filter(|&i| !row.schema().field(i).name().starts_with("__iotql_"))
        .collect();
    let Ok(visible) = row.project(&keep) else {
        return String::new();
    };
    let mut buf = Vec::new();
    let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut buf);
    if writer
        .write(&visible)
        .and_then(|_| writer.finish())
        .is_err()
    {
        return String::new();
    }
    String::from_utf8_lossy(&buf).trim_end().to_string()
}

/// The event times of a batch's rows, in microseconds.
pub(crate) fn event_times(batch: &RecordBatch) -> Result<Vec<i64>, EngineError> {
    use datafusion::arrow::array::AsArray;
    Ok(batch
        .column(batch.schema_ref().index_of(crate::time::EVENT_TIME)?)
        .as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>()
        .values()
        .to_vec())
}

/// Where an operator puts what it produces.
#[derive(Debug, Default)]
pub struct Output {
    pub messages: Vec<Message>,
    pub dead_letters: Vec<DeadLetter>,
}

impl Output {
    pub fn batch(&mut self, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.messages.push(Message::Batch(batch));
        }
    }

    pub fn watermark(&mut self, wm: EventTime) {
        self.messages.push(Message::Watermark(wm));
    }
}

/// One stage of the dataflow. Every hook but `on_batch` has a default.
pub trait Operator: Send {
    /// A batch arrived on input `input`.
    fn on_batch(
        &mut self,
        input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> Result<(), EngineError>;

    /// The watermark of this operator (the minimum over its inputs) advanced.
    fn on_watermark(&mut self, wm: EventTime, out: &mut Output) -> Result<(), EngineError> {
        out.watermark(wm);
        Ok(())
    }

    /// The watermark of input `port` advanced (before `on_watermark` with
    /// the minimum over the inputs): for operators that treat their inputs
    /// differently (joins).
    fn on_port_watermark(
        &mut self,
        _port: usize,
        _wm: EventTime,
        _out: &mut Output,
    ) -> Result<(), EngineError> {
        Ok(())
    }

    /// The reference input `name` was (re)loaded with `table`.
    fn on_reference(&mut self, _name: &str, _table: &RecordBatch) -> Result<(), EngineError> {
        Ok(())
    }

    /// Substream watermarks advanced (the minimum over the inputs, for an
    /// operator with several).
    fn on_substreams(
        &mut self,
        wms: Arc<Vec<(u64, EventTime)>>,
        out: &mut Output,
    ) -> Result<(), EngineError> {
        out.messages.push(Message::Substreams(wms));
        Ok(())
    }

    /// Every input has ended (after a final watermark of +infinity).
    fn on_end(&mut self, _out: &mut Output) -> Result<(), EngineError> {
        Ok(())
    }

    /// The arrival clock of the input reached `now` (a live source with no
    /// events): only TIMESTAMP BY acts on it, advancing its watermark.
    fn on_arrival(&mut self, _now: EventTime, _out: &mut Output) -> Result<(), EngineError> {
        Ok(())
    }

    /// The partitions a partitioned source (Kafka) reads changed: only
    /// TIMESTAMP BY acts on it, keeping a clock per partition.
    fn on_partitions(&mut self, _partitions: &[u64], _out: &mut Output) -> Result<(), EngineError> {
        Ok(())
    }

    /// The earliest event time whose event may still change a future output
    /// row (an open window, a retained analytic or join row); `None` when
    /// the operator holds no event. Positions of events older than the
    /// minimum over all operators can be committed.
    fn held_since(&self) -> Option<EventTime> {
        None
    }

    /// Makes the rows written by a sink durable ([`crate::io::Sink::flush`]).
    fn flush(&mut self) -> Result<(), EngineError> {
        Ok(())
    }

    /// The output an output operator writes to, by name, and its sink;
    /// `None` for other operators.
    fn output(&mut self) -> Option<(&str, &mut dyn crate::io::Sink)> {
        None
    }

    /// The job stops before its inputs end (Ctrl+C on a live input): a sink
    /// flushes and closes its output; other operators keep their state
    /// unemitted.
    fn close(&mut self) -> Result<(), EngineError> {
        Ok(())
    }

    /// The operator's state, for a checkpoint.
    fn snapshot(&mut self) -> Result<Vec<u8>, EngineError> {
        Ok(Vec::new())
    }

    /// Restores the state a [`Operator::snapshot`] returned.
    fn restore(&mut self, _state: &[u8]) -> Result<(), EngineError> {
        Ok(())
    }
}
