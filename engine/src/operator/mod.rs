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

    /// The operator's state, for a checkpoint.
    fn snapshot(&mut self) -> Result<Vec<u8>, EngineError> {
        Ok(Vec::new())
    }

    /// Restores the state a [`Operator::snapshot`] returned.
    fn restore(&mut self, _state: &[u8]) -> Result<(), EngineError> {
        Ok(())
    }
}
