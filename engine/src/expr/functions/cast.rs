//! CAST and TRY_CAST between ASA's types, and the text form of every value
//! (CAST to nvarchar(max), and the text that string functions such as
//! CONCAT make of their non-text arguments).
//!
//! A value that cannot be converted is an evaluation error under CAST
//! (ASA fails the job; iotql's operators send the event to the dead
//! letters) and NULL under TRY_CAST. The conversions:
//!
//! | to | from |
//! |---|---|
//! | bigint | integers; floats truncated toward zero (NaN and out of range fail); text holding an integer (blanks ignored; `3.5` fails, as in T-SQL); bit as 1 / 0 |
//! | float | numbers; text holding a number (`1e3`, `-0.5`, `NaN`, `Infinity`); bit as 1.0 / 0.0 |
//! | nvarchar(max) | anything: numbers as iotql writes them (`1.5`, `2.0`, `1e20`), bit as `true` / `false`, datetimes as `2026-01-01T00:00:05.000Z` (microseconds when there are any), records and arrays as JSON |
//! | datetime | datetimes; ISO-8601 text (see `parse_datetime`); numbers fail (no epoch guessing) |
//! | bit | bit; numbers (0 is 0, anything else 1, as ASA documents for float); text `true` / `false` / `1` / `0` in any case, blanks ignored (ASA's CSV reading of bit) |
//! | record, array | a record (an array) as it is; anything else fails |
//!
//! NULL casts to NULL.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, new_null_array,
};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::arrow::json::writer::{EncoderOptions, make_encoder};
use datafusion::common::{Result, ScalarValue};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, lit};
use datafusion::prelude::SessionContext;
use iotql_dsl::ast::DataType as AsaType;

use super::datetime::parse_datetime;
use super::{
    AsaFunction, asa_type_name, downcast, is_text, literal_text, run, scalar_text, type_error, udf,
};
use crate::time::event_time_type;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CastFunction {
    Cast,
    TryCast,
}

pub(super) fn udfs() -> Vec<ScalarUDF> {
    vec![udf(CastFunction::Cast), udf(CastFunction::TryCast)]
}

/// `CAST(e AS t)` or `TRY_CAST(e AS t)`.
pub fn cast(ctx: &SessionContext, e: Expr, t: AsaType, try_cast: bool) -> Result<Expr, String> {
    let f = if try_cast {
        CastFunction::TryCast
    } else {
        CastFunction::Cast
    };
    let f = ctx.udf(f.name()).map_err(|e| e.to_string())?;
    Ok(f.call(vec![e, lit(t.name())]))
}

fn target(text: Option<&str>) -> Result<AsaType> {
    text.and_then(|t| AsaType::ALL.into_iter().find(|a| a.name() == t))
        .ok_or_else(|| type_error("CAST needs a type written in the query"))
}

fn is_list(t: &DataType) -> bool {
    matches!(
        t,
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
    )
}

/// The Arrow type of `CAST(<value of type from> AS to)`.
fn cast_type(from: &DataType, to: AsaType) -> DataType {
    match to {
        AsaType::Bigint => DataType::Int64,
        AsaType::Float => DataType::Float64,
        AsaType::Nvarchar => DataType::Utf8,
        AsaType::Datetime => event_time_type(),
        AsaType::Bit => DataType::Boolean,
        AsaType::Record if matches!(from, DataType::Struct(_)) => from.clone(),
        AsaType::Array if is_list(from) => from.clone(),
        AsaType::Record | AsaType::Array => DataType::Null,
    }
}

impl AsaFunction for CastFunction {
    fn name(&self) -> &'static str {
        match self {
            CastFunction::Cast => "asa_cast",
            CastFunction::TryCast => "asa_try_cast",
        }
    }

    fn coerce(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        match types {
            [value, t] if is_text(t) => Ok(vec![value.clone(), DataType::Utf8]),
            _ => Err(type_error("CAST takes a value and a type")),
        }
    }

    fn return_type(
        &self,
        types: &[DataType],
        literals: &[Option<&ScalarValue>],
    ) -> Result<DataType> {
        let to = target(literal_text(literals.get(1).copied().flatten()))?;
        Ok(cast_type(&types[0], to))
    }

    fn invoke(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let to = target(args.args.get(1).and_then(scalar_text))?;
        let strict = matches!(self, CastFunction::Cast);
        run(&args, |a| {
            let value = &a[0];
            let out = convert(value, to)?;
            if strict && !value.data_type().is_null() {
                // A value that is there but did not convert (a NULL array
                // has no null buffer: its nulls are logical).
                let failed = out.logical_nulls();
                if let Some(row) = (0..value.len())
                    .find(|&i| value.is_valid(i) && failed.as_ref().is_some_and(|f| f.is_null(i)))
                {
                    let shown = to_text(&value.slice(row, 1))?;
                    let shown = downcast::<StringArray>(&shown, "CAST")?;
                    return Err(super::value_error(format!(
                        "cannot CAST `{}` ({}) to {}",
                        shown.value(0),
                        asa_type_name(value.data_type()),
                        to.name()
                    )));
                }
            }
            Ok(out)
        })
    }
}

fn safe() -> CastOptions<'static> {
    CastOptions {
        safe: true,
        ..Default::default()
    }
}

/// `a` converted to `to`, NULL where a value does not convert.
fn convert(a: &ArrayRef, to: AsaType) -> Result<ArrayRef> {
    let from = a.data_type();
    let target = cast_type(from, to);
    if from.is_null() {
        return Ok(new_null_array(&target, a.len()));
    }
    let text = || downcast::<StringArray>(a, "CAST");
    Ok(match to {
        AsaType::Nvarchar => to_text(a)?,
        AsaType::Bigint if *from == DataType::Utf8 => Arc::new(
            text()?
                .iter()
                .map(|s| s.and_then(|s| s.trim().parse::<i64>().ok()))
                .collect::<Int64Array>(),
        ),
        AsaType::Float if *from == DataType::Utf8 => Arc::new(
            text()?
                .iter()
                .map(|s| s.and_then(|s| s.trim().parse::<f64>().ok()))
                .collect::<Float64Array>(),
        ),
        AsaType::Bit if *from == DataType::Utf8 => Arc::new(
            text()?
                .iter()
                .map(|s| {
                    let s = s?.trim();
                    if s == "1" || s.eq_ignore_ascii_case("true") {
                        Some(true)
                    } else if s == "0" || s.eq_ignore_ascii_case("false") {
                        Some(false)
                    } else {
                        None
                    }
                })
                .collect::<BooleanArray>(),
        ),
        AsaType::Datetime if *from == DataType::Utf8 => Arc::new(
            text()?
                .iter()
                .map(|s| s.and_then(parse_datetime))
                .collect::<datafusion::arrow::array::TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        ),
        AsaType::Bigint | AsaType::Float | AsaType::Bit
            if from.is_numeric() || *from == DataType::Boolean =>
        {
            cast_with_options(a, &target, &safe())?
        }
        AsaType::Datetime
            if matches!(
                from,
                DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
            ) =>
        {
            cast_with_options(a, &target, &safe())?
        }
        AsaType::Record | AsaType::Array if target == *from => a.clone(),
        // Nothing of this type converts.
        _ => new_null_array(&target, a.len()),
    })
}

/// `2026-01-01T00:00:05.000Z`: as iotql writes datetimes, with
/// microseconds when there are any.
pub(super) fn format_datetime(us: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(us) {
        Some(t) if us.rem_euclid(1_000) == 0 => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        None => us.to_string(),
    }
}

/// The text of every value of `a` (a `Utf8` array; NULL stays NULL).
pub(super) fn to_text(a: &ArrayRef) -> Result<ArrayRef> {
    let from = a.data_type();
    Ok(match from {
        DataType::Utf8 => a.clone(),
        DataType::Null => new_null_array(&DataType::Utf8, a.len()),
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => {
            let t = cast_with_options(
                a,
                &DataType::Timestamp(TimeUnit::Microsecond, None),
                &safe(),
            )?;
            let t = downcast::<datafusion::arrow::array::TimestampMicrosecondArray>(&t, "text")?;
            Arc::new(
                t.iter()
                    .map(|v| v.map(format_datetime))
                    .collect::<StringArray>(),
            )
        }
        DataType::Struct(_)
        | DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(..)
        | DataType::Map(..) => {
            let field = Arc::new(Field::new("value", from.clone(), true));
            let options = EncoderOptions::default();
            let mut encoder = make_encoder(&field, a.as_ref(), &options)?;
            let mut texts = Vec::with_capacity(a.len());
            for i in 0..a.len() {
                if a.is_null(i) {
                    texts.push(None);
                    continue;
                }
                let mut buf = Vec::new();
                encoder.encode(i, &mut buf);
                texts.push(Some(String::from_utf8_lossy(&buf).into_owned()));
            }
            Arc::new(StringArray::from(texts))
        }
        _ => cast_with_options(a, &DataType::Utf8, &safe())?,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};

    use crate::expr::functions::testing::{batch, show, texts};

    #[test]
    fn cast_of_text_follows_asa() {
        assert_eq!(show("CAST(' 42 ' AS bigint)"), "42");
        assert_eq!(show("CAST('-7' AS bigint)"), "-7");
        assert!(
            show("CAST('3.5' AS bigint)").contains("cannot CAST `3.5` (nvarchar(max)) to bigint")
        );
        assert_eq!(show("TRY_CAST('3.5' AS bigint)"), "NULL");
        assert_eq!(show("CAST('1e3' AS float)"), "1000.0");
        assert_eq!(show("CAST(' -0.5 ' AS float)"), "-0.5");
        assert!(show("CAST('abc' AS float)").contains("cannot CAST `abc`"));
        assert_eq!(show("TRY_CAST('abc' AS float)"), "NULL");
        assert_eq!(show("CAST('TRUE' AS bit)"), "true");
        assert_eq!(show("CAST(' 0 ' AS bit)"), "false");
        assert!(show("CAST('yes' AS bit)").contains("cannot CAST `yes`"));
        assert_eq!(show("TRY_CAST('2' AS bit)"), "NULL");
        assert_eq!(show("CAST(NULL AS bit)"), "NULL");
    }

    #[test]
    fn cast_of_text_to_datetime_reads_iso_8601() {
        for (text, expected) in [
            ("2026-01-01T00:00:05Z", "2026-01-01T00:00:05Z"),
            (
                "2026-01-01T00:00:05.1234567Z",
                "2026-01-01T00:00:05.123456Z",
            ),
            ("2026-01-01 00:00:05", "2026-01-01T00:00:05Z"),
            ("2026-01-01T01:00:05+01:00", "2026-01-01T00:00:05Z"),
            ("2026-01-01", "2026-01-01T00:00:00Z"),
            ("2026-01-01T00:01", "2026-01-01T00:01:00Z"),
        ] {
            assert_eq!(
                show(&format!("CAST('{text}' AS datetime)")),
                expected,
                "{text}"
            );
        }
        assert!(show("CAST('2026-02-30' AS datetime)").contains("cannot CAST `2026-02-30`"));
        assert_eq!(show("TRY_CAST('1767225600' AS datetime)"), "NULL");
        assert!(show("CAST(1767225600 AS datetime)").contains("(bigint) to datetime"));
        assert_eq!(show("TRY_CAST(1767225600 AS datetime)"), "NULL");
    }

    #[test]
    fn cast_between_numbers_and_bits() {
        assert_eq!(show("CAST(3.7 AS bigint)"), "3");
        assert_eq!(show("CAST(-3.7 AS bigint)"), "-3");
        assert!(show("CAST(1e30 AS bigint)").contains("cannot CAST `1e30` (float) to bigint"));
        assert_eq!(show("TRY_CAST(1e30 AS bigint)"), "NULL");
        assert_eq!(show("CAST(7 AS float)"), "7.0");
        assert_eq!(show("CAST(0.0 AS bit)"), "false");
        assert_eq!(show("CAST(-0.001 AS bit)"), "true");
        assert_eq!(show("CAST(7 AS bit)"), "true");
        assert_eq!(show("CAST(0 AS bit)"), "false");
        assert_eq!(show("CAST(true AS bigint)"), "1");
        assert_eq!(show("CAST(false AS float)"), "0.0");
        assert_eq!(show("CAST(CAST(1 AS bit) AS float)"), "1.0");
    }

    #[test]
    fn cast_to_text_writes_values_as_iotql_outputs_them() {
        assert_eq!(show("CAST(42 AS nvarchar(max))"), "42");
        assert_eq!(show("CAST(2.0 AS nvarchar(max))"), "2.0");
        assert_eq!(show("CAST(0.1 AS nvarchar(max))"), "0.1");
        assert_eq!(show("CAST(true AS nvarchar(max))"), "true");
        assert_eq!(
            show("CAST(CAST('2026-01-01T00:00:05Z' AS datetime) AS nvarchar(max))"),
            "2026-01-01T00:00:05.000Z"
        );
        assert_eq!(
            show("CAST(CAST('2026-01-01T00:00:05.000007Z' AS datetime) AS nvarchar(max))"),
            "2026-01-01T00:00:05.000007Z"
        );
        assert_eq!(
            show("CAST(CreatePoint(1.5, 2) AS nvarchar(max))"),
            r#"{"type":"Point","coordinates":[2.0,1.5]}"#
        );
        assert_eq!(show("CAST('é😀' AS nvarchar(max))"), "é😀");
    }

    #[test]
    fn records_and_arrays_cast_to_themselves_only() {
        assert_eq!(
            show("CAST(CreatePoint(1.5, 2) AS record)"),
            "{type: Point, coordinates: [2.0, 1.5]}"
        );
        assert!(show("CAST('x' AS record)").contains("cannot CAST `x` (nvarchar(max)) to record"));
        assert_eq!(show("TRY_CAST('x' AS array)"), "NULL");
        assert_eq!(show("TRY_CAST(CreatePoint(1.5, 2) AS array)"), "NULL");
        assert_eq!(show("CAST(NULL AS record)"), "NULL");
    }

    #[test]
    fn a_failed_cast_fails_the_batch_and_a_try_cast_does_not() {
        let s: ArrayRef = Arc::new(StringArray::from(vec![
            Some("1"),
            None,
            Some("x"),
            Some(" 3"),
        ]));
        let f: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(1.5),
            None,
            Some(f64::NAN),
            Some(-2.9),
        ]));
        let i: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(0), Some(-3)]));
        let b = batch(vec![("s", s), ("f", f), ("i", i)]);
        assert_eq!(
            texts("TRY_CAST(s AS bigint)", &b).unwrap(),
            ["1", "NULL", "NULL", "3"]
        );
        assert!(
            texts("CAST(s AS bigint)", &b)
                .unwrap_err()
                .contains("cannot CAST `x`")
        );
        assert_eq!(
            texts("TRY_CAST(f AS bigint)", &b).unwrap(),
            ["1", "NULL", "NULL", "-2"]
        );
        assert!(
            texts("CAST(f AS bigint)", &b)
                .unwrap_err()
                .contains("cannot CAST `NaN`")
        );
        assert_eq!(
            texts("CAST(i AS bit)", &b).unwrap(),
            ["true", "NULL", "false", "true"]
        );
        assert_eq!(
            texts("CAST(f AS bit)", &b).unwrap(),
            ["true", "NULL", "true", "true"]
        );
        assert_eq!(
            texts("CAST(i AS nvarchar(max))", &b).unwrap(),
            ["1", "NULL", "0", "-3"]
        );
    }
}
