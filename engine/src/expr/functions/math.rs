//! Math functions whose result type ASA ties to the argument's, where
//! DataFusion's differs: POWER (ASA: "returns the same type as submitted
//! in float_expression"; DataFusion computes bigint ** float as float) and
//! CEILING / FLOOR (same type as the argument; DataFusion's give floats
//! for bigints). LOG(x, base) is DataFusion's log(base, x), swapped by the
//! caller. The other math functions are DataFusion's.
//!
//! POWER of a bigint is exact for a non-negative bigint exponent and
//! otherwise truncated toward zero (`POWER(2, -1)` is 0,
//! `POWER(2, 0.5)` is 1, as in T-SQL); a result that does not fit a
//! bigint, or is infinite, is an evaluation error.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF};

use super::{AsaFunction, downcast, is_text, run, type_error, udf, value_error};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum MathFunction {
    Power,
    Ceiling,
    Floor,
}

pub(super) fn udfs() -> Vec<ScalarUDF> {
    [
        MathFunction::Power,
        MathFunction::Ceiling,
        MathFunction::Floor,
    ]
    .into_iter()
    .map(udf)
    .collect()
}

/// Integers stay integers (`Int64`); floats, decimals and text holding a
/// number are floats.
fn number_arg(function: &str, t: &DataType) -> Result<DataType> {
    match t {
        t if t.is_integer() || t.is_null() => Ok(DataType::Int64),
        t if t.is_numeric() || is_text(t) => Ok(DataType::Float64),
        other => Err(type_error(format!(
            "{function} expects a number, not {}",
            super::asa_type_name(other)
        ))),
    }
}

impl MathFunction {
    fn asa(self) -> &'static str {
        match self {
            MathFunction::Power => "POWER",
            MathFunction::Ceiling => "CEILING",
            MathFunction::Floor => "FLOOR",
        }
    }
}

impl AsaFunction for MathFunction {
    fn name(&self) -> &'static str {
        match self {
            MathFunction::Power => "asa_power",
            MathFunction::Ceiling => "asa_ceiling",
            MathFunction::Floor => "asa_floor",
        }
    }

    fn coerce(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        let expected = if *self == MathFunction::Power { 2 } else { 1 };
        if types.len() != expected {
            return Err(type_error(format!(
                "{} does not take {} arguments",
                self.asa(),
                types.len()
            )));
        }
        types.iter().map(|t| number_arg(self.asa(), t)).collect()
    }

    fn return_type(&self, types: &[DataType], _: &[Option<&ScalarValue>]) -> Result<DataType> {
        Ok(types.first().cloned().unwrap_or(DataType::Float64))
    }

    fn invoke(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let f = *self;
        run(&args, |a| -> Result<ArrayRef> {
            let ints = |i: usize| downcast::<Int64Array>(&a[i], f.asa());
            let floats = |i: usize| downcast::<Float64Array>(&a[i], f.asa());
            Ok(match (f, a[0].data_type()) {
                (MathFunction::Ceiling | MathFunction::Floor, DataType::Int64) => a[0].clone(),
                (MathFunction::Ceiling, _) => Arc::new(
                    floats(0)?
                        .iter()
                        .map(|x| x.map(f64::ceil))
                        .collect::<Float64Array>(),
                ),
                (MathFunction::Floor, _) => Arc::new(
                    floats(0)?
                        .iter()
                        .map(|x| x.map(f64::floor))
                        .collect::<Float64Array>(),
                ),
                (MathFunction::Power, DataType::Int64) => {
                    let x = ints(0)?;
                    let out = match a[1].data_type() {
                        DataType::Int64 => x
                            .iter()
                            .zip(ints(1)?.iter())
                            .map(|(x, y)| match (x, y) {
                                (Some(x), Some(y)) => integer_power(x, y).map(Some),
                                _ => Ok(None),
                            })
                            .collect::<Result<Int64Array>>()?,
                        _ => x
                            .iter()
                            .zip(floats(1)?.iter())
                            .map(|(x, y)| match (x, y) {
                                (Some(x), Some(y)) => truncated_power(x, y).map(Some),
                                _ => Ok(None),
                            })
                            .collect::<Result<Int64Array>>()?,
                    };
                    Arc::new(out)
                }
                (MathFunction::Power, _) => {
                    let x = floats(0)?;
                    let out: Float64Array = match a[1].data_type() {
                        DataType::Int64 => x
                            .iter()
                            .zip(ints(1)?.iter())
                            .map(|(x, y)| Some(x?.powf(y? as f64)))
                            .collect(),
                        _ => x
                            .iter()
                            .zip(floats(1)?.iter())
                            .map(|(x, y)| Some(x?.powf(y?)))
                            .collect(),
                    };
                    Arc::new(out)
                }
            })
        })
    }
}

fn too_large(x: i64, y: impl std::fmt::Display) -> datafusion::common::DataFusionError {
    value_error(format!("POWER({x}, {y}) does not fit a bigint"))
}

fn integer_power(x: i64, y: i64) -> Result<i64> {
    if y >= 0 {
        u32::try_from(y)
            .ok()
            .and_then(|y| x.checked_pow(y))
            // 1 and -1 (and 0) to any power fit.
            .or(match x {
                0 | 1 => Some(x),
                -1 => Some(if y % 2 == 0 { 1 } else { -1 }),
                _ => None,
            })
            .ok_or_else(|| too_large(x, y))
    } else {
        truncated_power(x, y as f64)
    }
}

fn truncated_power(x: i64, y: f64) -> Result<i64> {
    let p = (x as f64).powf(y).trunc();
    if p.is_nan() {
        return Err(value_error(format!("POWER({x}, {y}) is not a number")));
    }
    // i64::MAX as f64 rounds up to 2^63, which does not fit.
    if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&p) {
        Ok(p as i64)
    } else {
        Err(too_large(x, y))
    }
}

#[cfg(test)]
mod tests {
    use crate::expr::functions::testing::show;

    #[test]
    fn power_keeps_the_type_of_its_base() {
        assert_eq!(show("POWER(2, 10)"), "1024");
        assert_eq!(show("POWER(-3, 3)"), "-27");
        assert_eq!(show("POWER(3, 39)"), "4052555153018976267");
        assert_eq!(show("POWER(2, -1)"), "0");
        assert_eq!(show("POWER(-1, -3)"), "-1");
        assert_eq!(show("POWER(2, 0.5)"), "1");
        assert_eq!(show("POWER(10, 2.5)"), "316");
        assert_eq!(show("POWER(2.0, 0.5)"), "1.4142135623730951");
        assert_eq!(show("POWER(2.5, 2)"), "6.25");
        assert_eq!(show("POWER(-1, 9999999999)"), "-1");
        assert!(show("POWER(2, 63)").contains("POWER(2, 63) does not fit a bigint"));
        assert!(show("POWER(0, -1)").contains("does not fit a bigint"));
        assert!(show("POWER(-3, 0.5)").contains("POWER(-3, 0.5) is not a number"));
        assert_eq!(show("POWER(NULL, 2)"), "NULL");
        assert_eq!(show("POWER(2, NULL)"), "NULL");
    }

    #[test]
    fn ceiling_and_floor_keep_the_type() {
        assert_eq!(show("CEILING(7)"), "7");
        assert_eq!(show("FLOOR(-7)"), "-7");
        assert_eq!(show("CEILING(-2.5)"), "-2.0");
        assert_eq!(show("FLOOR(-2.5)"), "-3.0");
        assert_eq!(show("CEILING(NULL)"), "NULL");
    }

    #[test]
    fn log_takes_an_optional_base() {
        assert_eq!(show("LOG(1)"), "0.0");
        assert_eq!(show("ROUND(LOG(EXP(2)), 12)"), "2.0");
        assert_eq!(show("LOG(8, 2)"), "3.0");
        assert_eq!(show("LOG(100.0, 10)"), "2.0");
        assert_eq!(show("LOG(NULL, 2)"), "NULL");
        assert!(show("LOG(1, 2, 3)").contains("LOG takes 1 to 2 arguments, not 3"));
    }

    #[test]
    fn round_follows_asa() {
        // Half away from zero; bigint stays bigint; negative lengths.
        assert_eq!(show("ROUND(125, -1)"), "130");
        assert_eq!(show("ROUND(-125, -1)"), "-130");
        assert_eq!(show("ROUND(2.5, 0)"), "3.0");
        assert_eq!(show("ROUND(-2.5, 0)"), "-3.0");
        assert_eq!(show("ROUND(123.4, -10)"), "0.0");
        assert_eq!(show("ROUND(7, NULL)"), "NULL");
    }
}
