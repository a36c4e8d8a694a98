//! The start of an input's dataflow: numbers rows (for dead letters) when
//! the source did not, and fans the batches out to every reader.

use std::sync::Arc;

use datafusion::arrow::array::UInt64Array;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

use super::{Operator, Output};
use crate::error::EngineError;
use crate::time::POSITION;

#[derive(Debug)]
pub struct ScanOperator {
    /// The source schema with the position column last.
    schema: SchemaRef,
    next_position: u64,
}

impl ScanOperator {
    pub fn new(source_schema: &SchemaRef) -> Self {
        Self {
            schema: with_position(source_schema),
            next_position: 1,
        }
    }
}

/// `schema` with the position column appended (if it does not have one).
pub fn with_position(schema: &SchemaRef) -> SchemaRef {
    if schema.index_of(POSITION).is_ok() {
        return schema.clone();
    }
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(POSITION, DataType::UInt64, false));
    Arc::new(Schema::new(fields))
}

impl Operator for ScanOperator {
    fn on_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> Result<(), EngineError> {
        let batch = if batch.schema().index_of(POSITION).is_ok() {
            batch
        } else {
            let n = batch.num_rows() as u64;
            let positions =
                UInt64Array::from_iter_values(self.next_position..self.next_position + n);
            self.next_position += n;
            let mut columns = batch.columns().to_vec();
            columns.push(Arc::new(positions));
            RecordBatch::try_new(self.schema.clone(), columns)?
        };
        out.batch(batch);
        Ok(())
    }
}
