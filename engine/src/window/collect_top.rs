//! `CollectTop(n [, expr]) OVER (ORDER BY x [ASC|DESC], ...)`: the first
//! `n` events of the window in that order, as an array of records
//! `{rank, value}` (`value`: the whole event, or `expr` of it). NULL ranks
//! lowest, as in ASA; events that tie keep their arrival order, and `rank`
//! is the position in the array (1, 2, 3, ...). A window keeps only its
//! current top `n`, never all of its events.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Int64Array, ListArray, StructArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct CollectTop {
    signature: Signature,
}

impl CollectTop {
    pub(crate) fn new() -> Self {
        CollectTop {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

/// The type of one element of the result: `{rank, value}`.
fn element_fields(value: &DataType) -> Fields {
    Fields::from(vec![
        Field::new("rank", DataType::Int64, false),
        Field::new("value", value.clone(), true),
    ])
}

impl AggregateUDFImpl for CollectTop {
    fn name(&self) -> &str {
        "collect_top"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let element = DataType::Struct(element_fields(&arg_types[0]));
        Ok(DataType::List(Arc::new(Field::new_list_field(
            element, true,
        ))))
    }

    /// The top events so far, best first: their values and their ranking
    /// keys (in Arrow's row format, which sorts as the ORDER BY does).
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let value = args.input_fields[0].data_type().clone();
        Ok(vec![
            Field::new(
                format!("{}[values]", args.name),
                DataType::List(Arc::new(Field::new_list_field(value, true))),
                true,
            )
            .into(),
            Field::new(
                format!("{}[keys]", args.name),
                DataType::List(Arc::new(Field::new_list_field(DataType::Binary, true))),
                true,
            )
            .into(),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let empty = RecordBatch::new_empty(Arc::new(Schema::empty()));
        let n = args
            .exprs
            .get(1)
            .and_then(|e| e.evaluate(&empty).ok())
            .and_then(|v| match v {
                datafusion::logical_expr::ColumnarValue::Scalar(s) => {
                    s.cast_to(&DataType::Int64).ok()
                }
                _ => None,
            });
        let n = match n {
            Some(ScalarValue::Int64(Some(n))) if n >= 1 => n as usize,
            _ => return exec_err!("CollectTop takes a constant number of events, 1 or more"),
        };
        let sort_fields = args
            .order_bys
            .iter()
            .map(|o| {
                Ok(SortField::new_with_options(
                    o.expr.data_type(args.schema)?,
                    o.options,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        if sort_fields.is_empty() {
            return exec_err!("CollectTop needs OVER (ORDER BY column)");
        }
        Ok(Box::new(CollectTopAccumulator {
            n,
            value_type: args.exprs[0].data_type(args.schema)?,
            keys_at: args.exprs.len(),
            converter: RowConverter::new(sort_fields)?,
            top: Vec::new(),
        }))
    }
}

#[derive(Debug)]
struct CollectTopAccumulator {
    n: usize,
    value_type: DataType,
    /// Where the ORDER BY columns start among the values of a batch (after
    /// the arguments).
    keys_at: usize,
    converter: RowConverter,
    /// The best events so far, best first, at most `n`.
    top: Vec<(Box<[u8]>, ScalarValue)>,
}

impl CollectTopAccumulator {
    /// Offers one event: it enters if it beats the current last (an equal
    /// key does not: the earlier event stays ahead).
    fn offer(&mut self, key: &[u8], value: impl FnOnce() -> Result<ScalarValue>) -> Result<()> {
        if self.top.len() == self.n && self.top.last().is_some_and(|(k, _)| k.as_ref() <= key) {
            return Ok(());
        }
        let at = self.top.partition_point(|(k, _)| k.as_ref() <= key);
        self.top.insert(at, (key.into(), value()?));
        self.top.truncate(self.n);
        Ok(())
    }
}

impl Accumulator for CollectTopAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let rows = self.converter.convert_columns(&values[self.keys_at..])?;
        for (i, row) in rows.iter().enumerate() {
            self.offer(row.as_ref(), || ScalarValue::try_from_array(&values[0], i))?;
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (values, keys): (&ListArray, &ListArray) = (states[0].as_list(), states[1].as_list());
        for (v, k) in values.iter().zip(keys.iter()) {
            let (Some(v), Some(k)) = (v, k) else {
                continue;
            };
            let k: &BinaryArray = k.as_binary();
            for i in 0..k.len() {
                self.offer(k.value(i), || ScalarValue::try_from_array(&v, i))?;
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let values: Vec<ScalarValue> = self.top.iter().map(|(_, v)| v.clone()).collect();
        let keys: Vec<ScalarValue> = self
            .top
            .iter()
            .map(|(k, _)| ScalarValue::Binary(Some(k.to_vec())))
            .collect();
        Ok(vec![
            ScalarValue::List(ScalarValue::new_list_nullable(&values, &self.value_type)),
            ScalarValue::List(ScalarValue::new_list_nullable(&keys, &DataType::Binary)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let k = self.top.len();
        let values: ArrayRef = if k == 0 {
            datafusion::arrow::array::new_empty_array(&self.value_type)
        } else {
            ScalarValue::iter_to_array(self.top.iter().map(|(_, v)| v.clone()))?
        };
        let ranks: ArrayRef = Arc::new(Int64Array::from_iter_values(1..=k as i64));
        let elements =
            StructArray::try_new(element_fields(&self.value_type), vec![ranks, values], None)?;
        let field = Arc::new(Field::new_list_field(
            DataType::Struct(element_fields(&self.value_type)),
            true,
        ));
        let list = ListArray::try_new(
            field,
            OffsetBuffer::from_lengths([k]),
            Arc::new(elements),
            None,
        )?;
        Ok(ScalarValue::List(Arc::new(list)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self
                .top
                .iter()
                .map(|(k, v)| k.len() + v.size())
                .sum::<usize>()
    }
}
