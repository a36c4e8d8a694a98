//! `PERCENTILE_DISC(p) OVER (ORDER BY x)`: the smallest value of `x` whose
//! cumulative distribution (the share of values at or below it) is at
//! least `p`. DataFusion has the continuous percentile, not this one.

use datafusion::arrow::array::{ArrayRef, AsArray, Float64Array, ListArray};
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::ColumnarValue;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct PercentileDisc {
    signature: Signature,
}

impl PercentileDisc {
    pub(crate) fn new() -> Self {
        PercentileDisc {
            signature: Signature::uniform(2, vec![DataType::Float64], Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for PercentileDisc {
    fn name(&self) -> &str {
        "percentile_disc"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let item = Field::new_list_field(DataType::Float64, true);
        Ok(vec![
            Field::new(
                format!("{}[values]", args.name),
                DataType::List(item.into()),
                true,
            )
            .into(),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        // The percentile is a constant: evaluated on an empty batch.
        let empty = RecordBatch::new_empty(std::sync::Arc::new(Schema::empty()));
        let p = args
            .exprs
            .get(1)
            .and_then(|e| e.evaluate(&empty).ok())
            .and_then(|v| match v {
                ColumnarValue::Scalar(ScalarValue::Float64(Some(p))) => Some(p),
                ColumnarValue::Scalar(ScalarValue::Int64(Some(p))) => Some(p as f64),
                _ => None,
            });
        let Some(p) = p.filter(|p| (0.0..=1.0).contains(p)) else {
            return exec_err!("PERCENTILE_DISC takes a constant percentile from 0 to 1");
        };
        let descending = args.order_bys.first().is_some_and(|o| o.options.descending);
        Ok(Box::new(PercentileDiscAccumulator {
            p: if descending { 1.0 - p } else { p },
            values: Vec::new(),
        }))
    }
}

#[derive(Debug)]
struct PercentileDiscAccumulator {
    p: f64,
    values: Vec<f64>,
}

impl Accumulator for PercentileDiscAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let v = values[0].as_primitive::<Float64Type>();
        self.values.extend(v.iter().flatten());
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists: &ListArray = states[0].as_list::<i32>();
        for list in lists.iter().flatten() {
            self.values
                .extend(list.as_primitive::<Float64Type>().iter().flatten());
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let values = Float64Array::from(self.values.clone());
        Ok(vec![ScalarValue::List(ScalarValue::new_list_nullable(
            &values.iter().map(ScalarValue::Float64).collect::<Vec<_>>(),
            &DataType::Float64,
        ))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.values.is_empty() {
            return Ok(ScalarValue::Float64(None));
        }
        self.values.sort_by(f64::total_cmp);
        let n = self.values.len();
        // The first value whose cumulative share i/n reaches p.
        let index = ((self.p * n as f64).ceil() as usize).clamp(1, n) - 1;
        Ok(ScalarValue::Float64(Some(self.values[index])))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.capacity() * 8
    }
}
