//! WHERE: keeps the rows whose predicate is true (NULL counts as false).

use std::sync::Arc;

use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;

use super::{Operator, Output};
use crate::error::EngineError;

#[derive(Debug)]
pub struct FilterOperator {
    predicate: Arc<dyn PhysicalExpr>,
}

impl FilterOperator {
    pub fn new(predicate: Arc<dyn PhysicalExpr>) -> Self {
        Self { predicate }
    }
}

/// Evaluates `predicate` and keeps the rows where it is true.
pub(crate) fn filter(
    predicate: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
) -> Result<RecordBatch, EngineError> {
    let mask = predicate.evaluate(batch)?.into_array(batch.num_rows())?;
    let mask = mask
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| EngineError::Internal("a predicate did not evaluate to booleans".into()))?;
    if mask.true_count() == batch.num_rows() {
        return Ok(batch.clone());
    }
    Ok(filter_record_batch(batch, mask)?)
}

impl Operator for FilterOperator {
    fn on_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> Result<(), EngineError> {
        if let Some(kept) =
            super::per_row_on_error(&batch, "WHERE", |b| filter(&self.predicate, b), out)?
        {
            out.batch(kept);
        }
        Ok(())
    }
}
