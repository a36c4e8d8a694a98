//! The end of a dataflow: hands batches, without iotql's hidden columns,
//! to an output's [`Sink`].

use datafusion::arrow::record_batch::RecordBatch;

use super::{Operator, Output};
use crate::error::EngineError;
use crate::io::Sink;

pub struct SinkOperator {
    /// The output's name in the job.
    name: String,
    sink: Box<dyn Sink>,
    rows: u64,
    /// Finished (or stopped): the sink is not called again.
    closed: bool,
}

impl std::fmt::Debug for SinkOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkOperator")
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl SinkOperator {
    pub fn new(name: &str, sink: Box<dyn Sink>) -> Self {
        Self {
            name: name.to_string(),
            sink,
            rows: 0,
            closed: false,
        }
    }
}

/// `batch` without the columns whose names start with `__iotql_`.
pub fn visible(batch: &RecordBatch) -> Result<RecordBatch, EngineError> {
    let schema = batch.schema();
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| !schema.field(i).name().starts_with("__iotql_"))
        .collect();
    if keep.len() == schema.fields().len() {
        return Ok(batch.clone());
    }
    Ok(batch.project(&keep)?)
}

impl Operator for SinkOperator {
    fn on_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        _out: &mut Output,
    ) -> Result<(), EngineError> {
        self.rows += batch.num_rows() as u64;
        let rows = visible(&batch)?;
        match batch.column_by_name(crate::time::EVENT_TIME) {
            Some(times) => {
                use datafusion::arrow::array::AsArray;
                use datafusion::arrow::datatypes::TimestampMicrosecondType;
                let times = times
                    .as_primitive_opt::<TimestampMicrosecondType>()
                    .ok_or_else(|| {
                        EngineError::Internal("the event-time column is not a timestamp".into())
                    })?;
                self.sink.write_at(&rows, times.values())
            }
            None => self.sink.write(&rows),
        }
    }

    fn on_watermark(
        &mut self,
        _wm: crate::time::EventTime,
        _out: &mut Output,
    ) -> Result<(), EngineError> {
        Ok(())
    }

    /// The last rows have come, but the output stays open until
    /// [`Operator::close`]: a checkpoint taken at the end of the inputs
    /// commits them with it (see [`crate::Dataflow::end_inputs`]).
    fn on_end(&mut self, _out: &mut Output) -> Result<(), EngineError> {
        self.sink.flush()
    }

    fn flush(&mut self) -> Result<(), EngineError> {
        self.sink.flush()
    }

    fn close(&mut self) -> Result<(), EngineError> {
        if std::mem::replace(&mut self.closed, true) {
            return Ok(());
        }
        self.sink.finish()
    }

    fn output(&mut self) -> Option<(&str, &mut dyn Sink)> {
        Some((&self.name, self.sink.as_mut()))
    }
}
