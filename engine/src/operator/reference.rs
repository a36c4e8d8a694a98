//! JOIN with reference data: `FROM readings r JOIN devices d ON r.device_id
//! = d.device_id` looks every event up in a table held in memory (per-device
//! thresholds, sites, metadata), loaded and reloaded from outside with
//! [`crate::dataflow::Dataflow::load_reference`]. The table has no time: an
//! event meets the table as it is when the event is processed, and a joined
//! row keeps the event's time. `LEFT JOIN` keeps events without a match,
//! with NULLs for the table.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, UInt32Array};
use datafusion::arrow::compute::{filter_record_batch, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;

use super::join::{JoinLayout, KeyEncoder, SideRows, split_on};
use super::{Operator, Output};
use crate::error::EngineError;

/// A loaded table: its columns and where each key's rows are.
#[derive(Debug)]
struct Table {
    columns: Vec<ArrayRef>,
    rows: HashMap<Box<[u8]>, Vec<u32>>,
}

pub struct ReferenceJoinOperator {
    /// The reference input's name.
    reference: String,
    layout: JoinLayout,
    keys: KeyEncoder,
    residual: Option<Arc<dyn PhysicalExpr>>,
    left_outer: bool,
    /// What the table's rows look like as they are loaded.
    table_schema: SchemaRef,
    table: Option<Table>,
}

impl std::fmt::Debug for ReferenceJoinOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferenceJoinOperator")
            .field("reference", &self.reference)
            .field("keys", &self.table.as_ref().map(|t| t.rows.len()))
            .finish_non_exhaustive()
    }
}

fn take_all(columns: &[ArrayRef], rows: &[u32]) -> Result<Vec<ArrayRef>, EngineError> {
    let idx = UInt32Array::from(rows.to_vec());
    Ok(columns
        .iter()
        .map(|c| take(c.as_ref(), &idx, None))
        .collect::<Result<Vec<_>, _>>()?)
}

impl ReferenceJoinOperator {
    pub fn schema(&self) -> SchemaRef {
        self.layout.schema.clone()
    }

    /// Replaces the table with `batch` (rows of the reference input).
    fn load(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        if batch.schema().fields().len() != self.table_schema.fields().len() {
            return Err(EngineError::Source {
                input: self.reference.clone(),
                message: "the reloaded table does not have the columns it had".into(),
            });
        }
        let columns = self.layout.side(false, batch);
        let times = vec![0; batch.num_rows()];
        let keys = self.keys.encode(&self.layout, false, &columns, &times)?;
        let mut rows: HashMap<Box<[u8]>, Vec<u32>> = HashMap::new();
        for (i, key) in keys.into_iter().enumerate() {
            if let Some(k) = key {
                rows.entry(k).or_default().push(i as u32);
            }
        }
        self.table = Some(Table { columns, rows });
        Ok(())
    }
}

impl Operator for ReferenceJoinOperator {
    fn on_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> Result<(), EngineError> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let SideRows {
            columns,
            times,
            keys,
        } = self.keys.side_rows(&self.layout, true, &batch)?;
        let (mut events, mut table_rows) = (Vec::new(), Vec::new());
        if let Some(table) = &self.table {
            for (row, key) in keys.iter().enumerate() {
                if let Some(found) = key.as_ref().and_then(|k| table.rows.get(k)) {
                    for &t in found {
                        events.push(row as u32);
                        table_rows.push(t);
                    }
                }
            }
        }
        let mut matched = vec![false; n];
        if !events.is_empty() {
            let table = self.table.as_ref().map_or(&[][..], |t| &t.columns[..]);
            let rows = self.layout.rows(
                Some(take_all(&columns, &events)?),
                Some(take_all(table, &table_rows)?),
                events.iter().map(|&r| times[r as usize]).collect(),
            )?;
            let rows = match &self.residual {
                None => {
                    events.iter().for_each(|&r| matched[r as usize] = true);
                    rows
                }
                Some(residual) => {
                    let mask = residual.evaluate(&rows)?.into_array(rows.num_rows())?;
                    let mask = mask.as_boolean();
                    let keep: Vec<bool> = (0..rows.num_rows())
                        .map(|i| mask.is_valid(i) && mask.value(i))
                        .collect();
                    for (&r, &k) in events.iter().zip(&keep) {
                        matched[r as usize] |= k;
                    }
                    filter_record_batch(&rows, &BooleanArray::from(keep))?
                }
            };
            out.batch(rows);
        }
        if self.left_outer {
            let alone: Vec<u32> = (0..n as u32).filter(|&r| !matched[r as usize]).collect();
            if !alone.is_empty() {
                out.batch(self.layout.rows(
                    Some(take_all(&columns, &alone)?),
                    None,
                    alone.iter().map(|&r| times[r as usize]).collect(),
                )?);
            }
        }
        Ok(())
    }

    fn on_reference(&mut self, name: &str, table: &RecordBatch) -> Result<(), EngineError> {
        if name.eq_ignore_ascii_case(&self.reference) {
            self.load(table)?;
        }
        Ok(())
    }
}

/// Compiles a JOIN of a stream (`left`) with the reference input
/// `reference` (rows like `table`).
#[allow(clippy::too_many_arguments)]
pub fn compile(
    reference: &str,
    left_outer: bool,
    left_alias: &str,
    right_alias: &str,
    on: &iotql_dsl::ast::Expr,
    left: &SchemaRef,
    table: &SchemaRef,
    compiler: &crate::expr::ExprCompiler,
    span: iotql_dsl::Span,
) -> Result<(Box<dyn Operator>, SchemaRef), Vec<iotql_dsl::Diagnostic>> {
    let error = |message: String| {
        vec![iotql_dsl::Diagnostic::new(
            "iotql::join",
            span,
            message,
            "here",
        )]
    };
    let layout = JoinLayout::new(left_alias, left, right_alias, table);
    let parts = split_on(on, left_alias, right_alias, &layout, compiler)?;
    if parts.bound.is_some() {
        return Err(error(format!(
            "reference data has no time: a JOIN with `{reference}` takes no DATEDIFF bound"
        )));
    }
    if parts.left_keys.is_empty() {
        return Err(error(format!(
            "a JOIN with reference data needs an equality between the stream and `{right_alias}` in ON, e.g. `{left_alias}.device_id = {right_alias}.device_id`"
        )));
    }
    let keys = KeyEncoder::new(parts.left_keys, parts.right_keys, &layout)
        .map_err(|e| error(e.to_string()))?;
    let op = ReferenceJoinOperator {
        reference: reference.to_string(),
        layout,
        keys,
        residual: parts.residual,
        left_outer,
        table_schema: table.clone(),
        table: None,
    };
    let schema = op.schema();
    Ok((Box::new(op), schema))
}
