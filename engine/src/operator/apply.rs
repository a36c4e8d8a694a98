//! `CROSS APPLY` / `OUTER APPLY` of nested data: each event becomes one row
//! per element of an array (`GetArrayElements(e.readings) AS r`: `r.ArrayIndex`,
//! `r.ArrayValue`) or per property of a record (`GetRecordProperties(e.tags)
//! AS p`: `p.PropertyName`, `p.PropertyValue`). CROSS APPLY drops events
//! whose array or record is empty or NULL; OUTER APPLY keeps them once, with
//! a NULL in place of the element. Every row keeps its event's columns and
//! time.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, StringArray, StructArray, UInt32Array, new_null_array,
};
use datafusion::arrow::compute::{cast, concat, take};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;

use super::{Operator, Output};
use crate::error::EngineError;

/// What is taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unnest {
    /// GetArrayElements: `ArrayIndex` (from 0) and `ArrayValue`.
    ArrayElements,
    /// GetRecordProperties: `PropertyName` and `PropertyValue`.
    RecordProperties,
}

#[derive(Debug)]
pub struct ApplyOperator {
    unnest: Unnest,
    value: Arc<dyn PhysicalExpr>,
    outer: bool,
    /// The record each row gets under the alias.
    element: Fields,
    schema: SchemaRef,
}

impl ApplyOperator {
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The rows of one batch: for each input row, the positions of its
    /// elements (`None`: OUTER APPLY's row without one).
    fn rows(&self, value: &ArrayRef) -> Result<(Vec<u32>, ArrayRef, ArrayRef), EngineError> {
        let n = value.len();
        let mut parents = Vec::new();
        let mut keys: Vec<Option<i64>> = Vec::new();
        let mut names: Vec<Option<String>> = Vec::new();
        let mut picks: Vec<Option<(usize, usize)>> = Vec::new();
        match self.unnest {
            Unnest::ArrayElements => {
                let list = value.as_list::<i32>();
                for row in 0..n {
                    let len = if list.is_null(row) {
                        0
                    } else {
                        list.value_length(row) as usize
                    };
                    let start = list.value_offsets()[row] as usize;
                    for i in 0..len {
                        parents.push(row as u32);
                        keys.push(Some(i as i64));
                        picks.push(Some((0, start + i)));
                    }
                    if len == 0 && self.outer {
                        parents.push(row as u32);
                        keys.push(None);
                        picks.push(None);
                    }
                }
                let values = list.values().clone();
                let indices: Vec<Option<u32>> =
                    picks.iter().map(|p| p.map(|(_, i)| i as u32)).collect();
                let values = take(values.as_ref(), &UInt32Array::from(indices), None)?;
                Ok((parents, Arc::new(Int64Array::from(keys)), values))
            }
            Unnest::RecordProperties => {
                let record = value.as_struct();
                let fields = record.fields();
                let value_type = self.element[1].data_type().clone();
                // Each field as the common value type, one after another.
                let columns = record
                    .columns()
                    .iter()
                    .map(|c| {
                        if c.data_type() == &value_type {
                            Ok(c.clone())
                        } else {
                            cast(c, &value_type)
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let all: Vec<&dyn Array> = columns.iter().map(|c| c.as_ref()).collect();
                let all = if all.is_empty() {
                    new_null_array(&value_type, 0)
                } else {
                    concat(&all)?
                };
                for row in 0..n {
                    let present = record.is_valid(row) && !fields.is_empty();
                    if present {
                        for (f, field) in fields.iter().enumerate() {
                            parents.push(row as u32);
                            names.push(Some(field.name().clone()));
                            picks.push(Some((f, f * n + row)));
                        }
                    } else if self.outer {
                        parents.push(row as u32);
                        names.push(None);
                        picks.push(None);
                    }
                }
                let indices: Vec<Option<u32>> =
                    picks.iter().map(|p| p.map(|(_, i)| i as u32)).collect();
                let values = take(all.as_ref(), &UInt32Array::from(indices), None)?;
                Ok((parents, Arc::new(StringArray::from(names)), values))
            }
        }
    }
}

impl Operator for ApplyOperator {
    fn on_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> Result<(), EngineError> {
        let n = batch.num_rows();
        let value = self.value.evaluate(&batch)?.into_array(n)?;
        let (parents, key, element) = self.rows(&value)?;
        let parents = UInt32Array::from(parents);
        let mut columns = batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &parents, None))
            .collect::<Result<Vec<_>, _>>()?;
        let nulls = key.logical_nulls();
        columns.push(Arc::new(StructArray::try_new(
            self.element.clone(),
            vec![key, element],
            nulls,
        )?));
        out.batch(RecordBatch::try_new(self.schema.clone(), columns)?);
        Ok(())
    }
}

/// Compiles `CROSS|OUTER APPLY function(expr) AS alias` over `input`.
pub fn compile(
    outer: bool,
    call: &iotql_dsl::ast::FunctionCall,
    alias: &str,
    input: &SchemaRef,
    compiler: &crate::expr::ExprCompiler,
) -> Result<(Box<dyn Operator>, SchemaRef), Vec<iotql_dsl::Diagnostic>> {
    use iotql_dsl::ast::FunctionArgs;
    let error = |message: String| {
        vec![iotql_dsl::Diagnostic::new(
            "iotql::apply",
            call.span,
            message,
            "here",
        )]
    };
    let unnest = if call.is("GetArrayElements") {
        Unnest::ArrayElements
    } else if call.is("GetRecordProperties") {
        Unnest::RecordProperties
    } else {
        return Err(error(format!(
            "APPLY takes GetArrayElements(array) or GetRecordProperties(record), not {}",
            call.qualified_name()
        )));
    };
    let arg = match &call.args {
        FunctionArgs::List { args, .. } if args.len() == 1 => &args[0],
        _ => {
            return Err(error(format!(
                "{} takes one argument",
                call.qualified_name()
            )));
        }
    };
    let value = compiler.compile(arg, input).map_err(|d| vec![d])?;
    let value_type = value.data_type(input).map_err(|e| error(e.to_string()))?;
    let element = match (unnest, &value_type) {
        (Unnest::ArrayElements, DataType::List(item)) => Fields::from(vec![
            Field::new("ArrayIndex", DataType::Int64, true),
            Field::new("ArrayValue", item.data_type().clone(), true),
        ]),
        (Unnest::RecordProperties, DataType::Struct(fields)) => {
            // One type for every property's value: theirs if they agree,
            // else text.
            let first = fields.first().map(|f| f.data_type().clone());
            let common = match first {
                Some(t) if fields.iter().all(|f| f.data_type() == &t) => t,
                _ => DataType::Utf8,
            };
            if fields.iter().any(|f| {
                f.data_type() != &common
                    && !datafusion::arrow::compute::can_cast_types(f.data_type(), &common)
            }) {
                return Err(error(
                    "GetRecordProperties needs properties of one type, or plain values that can be written as text".into(),
                ));
            }
            Fields::from(vec![
                Field::new("PropertyName", DataType::Utf8, true),
                Field::new("PropertyValue", common, true),
            ])
        }
        (Unnest::ArrayElements, t) => {
            return Err(vec![iotql_dsl::Diagnostic::new(
                "iotql::apply",
                arg.span,
                format!("GetArrayElements needs an array, not {t}"),
                "not an array",
            )]);
        }
        (Unnest::RecordProperties, t) => {
            return Err(vec![iotql_dsl::Diagnostic::new(
                "iotql::apply",
                arg.span,
                format!("GetRecordProperties needs a record, not {t}"),
                "not a record",
            )]);
        }
    };
    let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(alias, DataType::Struct(element.clone()), true));
    let op = ApplyOperator {
        unnest,
        value,
        outer,
        element,
        schema: Arc::new(Schema::new(fields)),
    };
    let schema = op.schema();
    Ok((Box::new(op), schema))
}
