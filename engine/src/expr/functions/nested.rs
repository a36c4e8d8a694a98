//! Records and arrays: GetArrayElement, GetArrayLength and
//! GetRecordPropertyValue over Arrow list and struct columns (JSON arrays
//! and objects are read as such).
//!
//! - GetArrayElement counts from 0; an index past either end (or negative)
//!   gives NULL (ASA documents neither case; an error would drop the
//!   event for data that is merely short).
//! - GetRecordPropertyValue finds the property by its exact name, else
//!   case-insensitively (as column names are found); a property the record
//!   does not have gives NULL. With a name written in the query the result
//!   has the property's type; with a name computed per event (a column),
//!   the properties' common type: their type if they share one, float if
//!   they are all numbers, else their text (as CAST to nvarchar(max)).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, StringArray, StructArray, UInt64Array, new_null_array,
};
use datafusion::arrow::compute::{cast, interleave, take};
use datafusion::arrow::datatypes::{DataType, Fields};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF};

use super::cast::to_text;
use super::{
    AsaFunction, downcast, integer_arg, is_text, literal_text, run, scalar_text, type_error, udf,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum NestedFunction {
    ArrayElement,
    ArrayLength,
    RecordPropertyValue,
}

pub(super) fn udfs() -> Vec<ScalarUDF> {
    [
        NestedFunction::ArrayElement,
        NestedFunction::ArrayLength,
        NestedFunction::RecordPropertyValue,
    ]
    .into_iter()
    .map(udf)
    .collect()
}

pub(super) fn is_list(t: &DataType) -> bool {
    matches!(
        t,
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
    )
}

fn element_type(t: &DataType) -> DataType {
    match t {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            f.data_type().clone()
        }
        _ => DataType::Null,
    }
}

impl NestedFunction {
    fn asa(self) -> &'static str {
        match self {
            NestedFunction::ArrayElement => "GetArrayElement",
            NestedFunction::ArrayLength => "GetArrayLength",
            NestedFunction::RecordPropertyValue => "GetRecordPropertyValue",
        }
    }
}

/// The field of `fields` named `name`: exactly, else case-insensitively.
fn find(fields: &Fields, name: &str) -> Option<usize> {
    fields.iter().position(|f| f.name() == name).or_else(|| {
        fields
            .iter()
            .position(|f| f.name().eq_ignore_ascii_case(name))
    })
}

/// The type of GetRecordPropertyValue over a record of `fields` when the
/// name is known only per event.
fn common_type(fields: &Fields) -> DataType {
    let mut types = fields.iter().map(|f| f.data_type());
    let Some(first) = types.next() else {
        return DataType::Null;
    };
    if fields.iter().all(|f| f.data_type() == first) {
        first.clone()
    } else if fields
        .iter()
        .all(|f| f.data_type().is_numeric() || f.data_type().is_null())
    {
        DataType::Float64
    } else {
        DataType::Utf8
    }
}

impl AsaFunction for NestedFunction {
    fn name(&self) -> &'static str {
        match self {
            NestedFunction::ArrayElement => "asa_getarrayelement",
            NestedFunction::ArrayLength => "asa_getarraylength",
            NestedFunction::RecordPropertyValue => "asa_getrecordpropertyvalue",
        }
    }

    fn coerce(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        let f = self.asa();
        let container = |t: &DataType| {
            let ok = match self {
                NestedFunction::RecordPropertyValue => matches!(t, DataType::Struct(_)),
                _ => is_list(t),
            };
            if ok || t.is_null() {
                Ok(t.clone())
            } else {
                let what = match self {
                    NestedFunction::RecordPropertyValue => "a record",
                    _ => "an array",
                };
                Err(type_error(format!(
                    "{f} expects {what}, not {}",
                    super::asa_type_name(t)
                )))
            }
        };
        match (self, types) {
            (NestedFunction::ArrayElement, [a, i]) => Ok(vec![container(a)?, integer_arg(f, i)?]),
            (NestedFunction::ArrayLength, [a]) => Ok(vec![container(a)?]),
            (NestedFunction::RecordPropertyValue, [r, n]) if is_text(n) || n.is_null() => {
                Ok(vec![container(r)?, DataType::Utf8])
            }
            _ => Err(type_error(format!(
                "{f} does not take these {} arguments",
                types.len()
            ))),
        }
    }

    fn return_type(
        &self,
        types: &[DataType],
        literals: &[Option<&ScalarValue>],
    ) -> Result<DataType> {
        Ok(match self {
            NestedFunction::ArrayElement => element_type(&types[0]),
            NestedFunction::ArrayLength => DataType::Int64,
            NestedFunction::RecordPropertyValue => match &types[0] {
                DataType::Struct(fields) => {
                    match literal_text(literals.get(1).copied().flatten()) {
                        Some(name) => find(fields, name)
                            .map_or(DataType::Null, |i| fields[i].data_type().clone()),
                        None => common_type(fields),
                    }
                }
                _ => DataType::Null,
            },
        })
    }

    fn invoke(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let f = *self;
        let return_type = args.return_type().clone();
        let literal_name = args.args.get(1).and_then(scalar_text).map(str::to_string);
        run(&args, |a| match f {
            NestedFunction::ArrayElement => array_element(&a[0], &a[1], &return_type),
            NestedFunction::ArrayLength => array_length(&a[0]),
            NestedFunction::RecordPropertyValue => {
                property_value(&a[0], &a[1], literal_name.as_deref(), &return_type)
            }
        })
    }
}

/// Each row's list offset and length.
fn spans(list: &ArrayRef) -> Result<Vec<Option<(usize, usize)>>> {
    let valid = |i: usize| list.is_valid(i);
    Ok(match list.data_type() {
        DataType::List(_) => {
            let l = list.as_list::<i32>();
            let o = l.value_offsets();
            (0..l.len())
                .map(|i| valid(i).then(|| (o[i] as usize, (o[i + 1] - o[i]) as usize)))
                .collect()
        }
        DataType::LargeList(_) => {
            let l = list.as_list::<i64>();
            let o = l.value_offsets();
            (0..l.len())
                .map(|i| valid(i).then(|| (o[i] as usize, (o[i + 1] - o[i]) as usize)))
                .collect()
        }
        DataType::FixedSizeList(_, n) => {
            let n = *n as usize;
            let start = list.offset();
            (0..list.len())
                .map(|i| valid(i).then_some(((start + i) * n, n)))
                .collect()
        }
        _ => vec![None; list.len()],
    })
}

fn list_values(list: &ArrayRef) -> Option<ArrayRef> {
    match list.data_type() {
        DataType::List(_) => Some(list.as_list::<i32>().values().clone()),
        DataType::LargeList(_) => Some(list.as_list::<i64>().values().clone()),
        DataType::FixedSizeList(..) => Some(list.as_fixed_size_list().values().clone()),
        _ => None,
    }
}

fn array_element(list: &ArrayRef, index: &ArrayRef, t: &DataType) -> Result<ArrayRef> {
    let Some(values) = list_values(list) else {
        return Ok(new_null_array(t, list.len()));
    };
    let index = downcast::<Int64Array>(index, "GetArrayElement")?;
    let picks: UInt64Array = spans(list)?
        .into_iter()
        .zip(index.iter())
        .map(|(span, i)| {
            let (start, len) = span?;
            let i = usize::try_from(i?).ok().filter(|&i| i < len)?;
            Some((start + i) as u64)
        })
        .collect();
    Ok(take(values.as_ref(), &picks, None)?)
}

fn array_length(list: &ArrayRef) -> Result<ArrayRef> {
    let out: Int64Array = spans(list)?
        .into_iter()
        .map(|s| s.map(|(_, len)| len as i64))
        .collect();
    Ok(Arc::new(out))
}

fn property_value(
    record: &ArrayRef,
    name: &ArrayRef,
    literal_name: Option<&str>,
    t: &DataType,
) -> Result<ArrayRef> {
    let n = record.len();
    let DataType::Struct(fields) = record.data_type() else {
        return Ok(new_null_array(t, n));
    };
    if t.is_null() {
        return Ok(new_null_array(t, n));
    }
    let record: &StructArray = record.as_struct();
    // The candidate values, each row's pick among them, and a NULL last.
    let (mut sources, picks): (Vec<ArrayRef>, Vec<(usize, usize)>) = match literal_name {
        Some(name) => {
            let Some(k) = find(fields, name) else {
                return Ok(new_null_array(t, n));
            };
            let column = record.column(k).clone();
            if record.nulls().is_none() {
                return Ok(column);
            }
            let picks = (0..n)
                .map(|i| if record.is_valid(i) { (0, i) } else { (1, 0) })
                .collect();
            (vec![column], picks)
        }
        None => {
            let sources = record
                .columns()
                .iter()
                .map(|c| {
                    if c.data_type() == t {
                        Ok(c.clone())
                    } else if *t == DataType::Utf8 {
                        to_text(c)
                    } else {
                        Ok(cast(c, t)?)
                    }
                })
                .collect::<Result<Vec<ArrayRef>>>()?;
            let null_source = sources.len();
            let names = downcast::<StringArray>(name, "GetRecordPropertyValue")?;
            let picks = (0..n)
                .map(|i| {
                    let field = (record.is_valid(i) && names.is_valid(i))
                        .then(|| find(fields, names.value(i)))
                        .flatten();
                    field.map_or((null_source, 0), |k| (k, i))
                })
                .collect();
            (sources, picks)
        }
    };
    sources.push(new_null_array(t, 1));
    let refs: Vec<&dyn Array> = sources.iter().map(|s| s.as_ref()).collect();
    Ok(interleave(&refs, &picks)?)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        ArrayRef, Float64Array, Int64Array, ListArray, StringArray, StructArray,
    };
    use datafusion::arrow::buffer::NullBuffer;
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type};

    use crate::expr::functions::testing::{batch, texts};

    fn arrays() -> ArrayRef {
        Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), Some(1), Some(0)]),
            Some(vec![]),
            None,
            Some(vec![Some(7), None]),
        ]))
    }

    fn records() -> ArrayRef {
        let temp: ArrayRef = Arc::new(Int64Array::from(vec![80, 81, 82, 83]));
        let hum: ArrayRef = Arc::new(Float64Array::from(vec![70.5, 69.0, 1.0, 2.0]));
        let name: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "c", "d"]));
        Arc::new(StructArray::new(
            vec![
                Field::new("Temperature", DataType::Int64, true),
                Field::new("humidity", DataType::Float64, true),
                Field::new("name", DataType::Utf8, true),
            ]
            .into(),
            vec![temp, hum, name],
            Some(NullBuffer::from(vec![true, true, false, true])),
        ))
    }

    #[test]
    fn getarrayelement_is_0_based_and_null_out_of_range() {
        let b = batch(vec![("a", arrays())]);
        assert_eq!(
            texts("GetArrayElement(a, 0)", &b).unwrap(),
            ["1", "NULL", "NULL", "7"]
        );
        assert_eq!(
            texts("GetArrayElement(a, 2)", &b).unwrap(),
            ["0", "NULL", "NULL", "NULL"]
        );
        assert_eq!(
            texts("GetArrayElement(a, 1)", &b).unwrap(),
            ["1", "NULL", "NULL", "NULL"]
        );
        assert_eq!(texts("GetArrayElement(a, -1)", &b).unwrap(), ["NULL"; 4]);
        assert_eq!(texts("GetArrayElement(a, 3)", &b).unwrap(), ["NULL"; 4]);
        assert_eq!(texts("GetArrayElement(a, NULL)", &b).unwrap(), ["NULL"; 4]);
        assert_eq!(
            texts("GetArrayElement(a, 1.9)", &b).unwrap(),
            ["1", "NULL", "NULL", "NULL"]
        );
        assert_eq!(
            texts("GetArrayElement(a, 0) + 1", &b).unwrap(),
            ["2", "NULL", "NULL", "8"]
        );
        assert!(
            texts("GetArrayElement('abc', 0)", &b)
                .unwrap_err()
                .contains("expects an array")
        );
    }

    #[test]
    fn getarraylength_counts_elements() {
        let b = batch(vec![("a", arrays())]);
        assert_eq!(
            texts("GetArrayLength(a)", &b).unwrap(),
            ["3", "0", "NULL", "2"]
        );
        assert!(
            texts("GetArrayLength(5)", &b)
                .unwrap_err()
                .contains("expects an array")
        );
    }

    #[test]
    fn getrecordpropertyvalue_by_literal_and_by_column() {
        let names: ArrayRef = Arc::new(StringArray::from(vec![
            Some("Temperature"),
            Some("HUMIDITY"),
            Some("name"),
            None,
        ]));
        let b = batch(vec![("r", records()), ("n", names)]);
        assert_eq!(
            texts("GetRecordPropertyValue(r, 'Temperature')", &b).unwrap(),
            ["80", "81", "NULL", "83"]
        );
        assert_eq!(
            texts("GetRecordPropertyValue(r, 'temperature') * 2", &b).unwrap(),
            ["160", "162", "NULL", "166"]
        );
        assert_eq!(
            texts("GetRecordPropertyValue(r, 'missing')", &b).unwrap(),
            ["NULL"; 4]
        );
        assert_eq!(
            texts("GetRecordPropertyValue(r, n)", &b).unwrap(),
            ["80", "69.0", "NULL", "NULL"]
        );
        assert!(
            texts("GetRecordPropertyValue(n, 'x')", &b)
                .unwrap_err()
                .contains("expects a record")
        );
    }

    #[test]
    fn nested_functions_compose_with_field_access() {
        let b = batch(vec![("r", records())]);
        assert_eq!(
            texts("GetRecordPropertyValue(CreatePoint(1.5, 2.5), 'type')", &b).unwrap(),
            ["Point"; 4]
        );
        assert_eq!(
            texts("GetArrayElement(CreatePoint(1.5, 2.5).coordinates, 1)", &b).unwrap(),
            ["1.5"; 4]
        );
        assert_eq!(
            texts(
                "GetArrayLength(GetRecordPropertyValue(CreatePoint(1, 2), 'coordinates'))",
                &b
            )
            .unwrap(),
            ["2"; 4]
        );
    }
}
