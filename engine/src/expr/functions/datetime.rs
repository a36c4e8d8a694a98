//! Date and time: DATEADD, DATEDIFF, DATEPART, DATENAME (DAY, MONTH and
//! YEAR are DATEPART), DATETIMEFROMPARTS, and the reading of ISO-8601 text
//! as a datetime.
//!
//! ASA follows T-SQL here, and so does iotql:
//! - DATEADD on year, quarter or month keeps the day of the month, or takes
//!   the month's last day when it has fewer days (Jan 31 + 1 month is
//!   Feb 28 or 29); dayofyear and weekday add days. A fractional number is
//!   truncated (ASA documents it).
//! - DATEDIFF counts the part's boundaries crossed from the first datetime
//!   to the second (`DATEDIFF(year, '2025-12-31T23:59', '2026-01-01')` is
//!   1), negative when the second is earlier. Weeks start on Sunday;
//!   dayofyear and weekday count days.
//! - DATEPART(weekday) is 1 for Sunday to 7 for Saturday and
//!   DATEPART(week) numbers weeks from the one of January 1, starting on
//!   Sundays (T-SQL with its default `DATEFIRST 7`; ASA documents neither).
//!   millisecond, microsecond and nanosecond are the fraction of the second
//!   in that unit.
//! - DATENAME gives English month and weekday names, and the DATEPART
//!   number as text for the other parts.
//! - DATETIMEFROMPARTS refuses parts out of range (month 13, February 30,
//!   minute 60): an evaluation error, as in T-SQL.
//!
//! Nanoseconds: iotql keeps microseconds, so DATEADD(nanosecond, n, t)
//! adds n / 1000 microseconds (truncated) and DATEDIFF(nanosecond) is a
//! multiple of 1000.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveDateTime, Timelike, Utc};
use datafusion::arrow::array::{
    Array, ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::kernels::cast_utils::string_to_datetime;
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF};
use iotql_dsl::ast::DatePart;

use super::{
    AsaFunction, downcast, integer_arg, is_text, literal_text, run, scalar_text, type_error, udf,
    value_error,
};
use crate::time::event_time_type;

const DAY_US: i64 = 86_400_000_000;

/// ASA's datetimes run from 0001-01-01 to 9999-12-31 (as .NET's and
/// T-SQL's); DATEADD past them is an error.
const FIRST_US: i64 = -62_135_596_800_000_000;
const LAST_US: i64 = 253_402_300_799_999_999;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum DateFunction {
    Add,
    Diff,
    Part,
    Name,
    FromParts,
}

pub(super) fn udfs() -> Vec<ScalarUDF> {
    [
        DateFunction::Add,
        DateFunction::Diff,
        DateFunction::Part,
        DateFunction::Name,
        DateFunction::FromParts,
    ]
    .into_iter()
    .map(udf)
    .collect()
}

impl DateFunction {
    fn asa(self) -> &'static str {
        match self {
            DateFunction::Add => "DATEADD",
            DateFunction::Diff => "DATEDIFF",
            DateFunction::Part => "DATEPART",
            DateFunction::Name => "DATENAME",
            DateFunction::FromParts => "DATETIMEFROMPARTS",
        }
    }
}

/// The coercion of an argument that must be a datetime: datetimes and
/// dates become `Timestamp(µs, UTC)`, text stays text (read at run time).
pub(super) fn datetime_arg(function: &str, t: &DataType) -> Result<DataType> {
    match t {
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => Ok(event_time_type()),
        t if is_text(t) => Ok(DataType::Utf8),
        DataType::Null => Ok(DataType::Null),
        other => Err(type_error(format!(
            "{function} expects a datetime or ISO-8601 text, not {}",
            super::asa_type_name(other)
        ))),
    }
}

fn part_arg(function: &str, t: &DataType) -> Result<DataType> {
    if is_text(t) {
        Ok(DataType::Utf8)
    } else {
        Err(type_error(format!(
            "the first argument of {function} is a date part (year, month, day, ...)"
        )))
    }
}

fn part_of(function: &str, text: Option<&str>) -> Result<DatePart> {
    let Some(text) = text else {
        return Err(type_error(format!(
            "the first argument of {function} must be a date part written in the query"
        )));
    };
    DatePart::from_name(text)
        .ok_or_else(|| type_error(format!("{function}: `{text}` is not a date part")))
}

impl AsaFunction for DateFunction {
    fn name(&self) -> &'static str {
        match self {
            DateFunction::Add => "asa_dateadd",
            DateFunction::Diff => "asa_datediff",
            DateFunction::Part => "asa_datepart",
            DateFunction::Name => "asa_datename",
            DateFunction::FromParts => "asa_datetimefromparts",
        }
    }

    fn coerce(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        let f = self.asa();
        match (self, types) {
            (DateFunction::Add, [p, n, t]) => Ok(vec![
                part_arg(f, p)?,
                integer_arg(f, n)?,
                datetime_arg(f, t)?,
            ]),
            (DateFunction::Diff, [p, a, b]) => Ok(vec![
                part_arg(f, p)?,
                datetime_arg(f, a)?,
                datetime_arg(f, b)?,
            ]),
            (DateFunction::Part | DateFunction::Name, [p, t]) => {
                Ok(vec![part_arg(f, p)?, datetime_arg(f, t)?])
            }
            (DateFunction::FromParts, parts) if parts.len() == 7 => {
                parts.iter().map(|t| integer_arg(f, t)).collect()
            }
            _ => Err(type_error(format!(
                "{f} does not take {} arguments",
                types.len()
            ))),
        }
    }

    fn return_type(
        &self,
        _types: &[DataType],
        literals: &[Option<&ScalarValue>],
    ) -> Result<DataType> {
        if !matches!(self, DateFunction::FromParts) {
            part_of(
                self.asa(),
                literal_text(literals.first().copied().flatten()),
            )?;
        }
        Ok(match self {
            DateFunction::Add | DateFunction::FromParts => event_time_type(),
            DateFunction::Diff | DateFunction::Part => DataType::Int64,
            DateFunction::Name => DataType::Utf8,
        })
    }

    fn invoke(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let f = self.asa();
        if matches!(self, DateFunction::FromParts) {
            return run(&args, |a| from_parts(a).map(|x| Arc::new(x) as ArrayRef));
        }
        let part = part_of(f, args.args.first().and_then(scalar_text))?;
        run(&args, |a| -> Result<ArrayRef> {
            Ok(match self {
                DateFunction::Add => {
                    let n = downcast::<Int64Array>(&a[1], f)?;
                    let t = micros(&a[2], f)?;
                    let out = n
                        .iter()
                        .zip(t)
                        .map(|(n, t)| match (n, t) {
                            (Some(n), Some(t)) => date_add(part, n, t).map(Some),
                            _ => Ok(None),
                        })
                        .collect::<Result<TimestampMicrosecondArray>>()?;
                    Arc::new(out.with_timezone("UTC"))
                }
                DateFunction::Diff => {
                    let (x, y) = (micros(&a[1], f)?, micros(&a[2], f)?);
                    let out = x
                        .into_iter()
                        .zip(y)
                        .map(|(x, y)| match (x, y) {
                            (Some(x), Some(y)) => date_diff(part, x, y).map(Some),
                            _ => Ok(None),
                        })
                        .collect::<Result<Int64Array>>()?;
                    Arc::new(out)
                }
                DateFunction::Part => {
                    let t = micros(&a[1], f)?;
                    let out = t
                        .into_iter()
                        .map(|t| t.map(|t| date_part(part, t)).transpose())
                        .collect::<Result<Int64Array>>()?;
                    Arc::new(out)
                }
                DateFunction::Name => {
                    let t = micros(&a[1], f)?;
                    let out = t
                        .into_iter()
                        .map(|t| t.map(|t| date_name(part, t)).transpose())
                        .collect::<Result<StringArray>>()?;
                    Arc::new(out)
                }
                DateFunction::FromParts => Arc::new(from_parts(a)?),
            })
        })
    }
}

/// ISO-8601 / RFC 3339 text as microseconds since the epoch (UTC), or
/// `None` when it is not a datetime. Accepted: a date (`2026-01-01`), a
/// date and time with `T` or a space, with or without seconds and a
/// fraction (up to 9 digits), with `Z`, a UTC offset (`+01:00`, `-0800`,
/// `+01`) or nothing (UTC); blanks around it are ignored.
pub fn parse_datetime(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Ok(dt) = string_to_datetime(&Utc, t) {
        return Some(dt.timestamp_micros());
    }
    // `2026-01-01T10:30` (no seconds; ISO 8601 allows it, arrow does not).
    let b = t.as_bytes();
    if b.len() >= 16
        && b[13] == b':'
        && b[14..16].iter().all(u8::is_ascii_digit)
        && b.get(16).is_none_or(|c| !c.is_ascii_digit() && *c != b':')
    {
        let with_seconds = format!("{}:00{}", &t[..16], &t[16..]);
        return string_to_datetime(&Utc, &with_seconds)
            .ok()
            .map(|dt| dt.timestamp_micros());
    }
    None
}

/// The datetimes of an argument coerced by [`datetime_arg`], in µs; text
/// that is not a datetime is an error.
pub(super) fn micros(a: &ArrayRef, function: &str) -> Result<Vec<Option<i64>>> {
    match a.data_type() {
        DataType::Null => Ok(vec![None; a.len()]),
        DataType::Utf8 => downcast::<StringArray>(a, "datetime")?
            .iter()
            .map(|s| match s {
                None => Ok(None),
                Some(s) => parse_datetime(s).map(Some).ok_or_else(|| {
                    value_error(format!(
                        "{function}: `{s}` is not a datetime (ISO 8601 expected)"
                    ))
                }),
            })
            .collect(),
        _ => {
            let ts = cast_with_options(
                a,
                &DataType::Timestamp(TimeUnit::Microsecond, None),
                &CastOptions::default(),
            )?;
            Ok(downcast::<TimestampMicrosecondArray>(&ts, "datetime")?
                .iter()
                .collect())
        }
    }
}

fn datetime(us: i64) -> Result<NaiveDateTime> {
    DateTime::from_timestamp_micros(us)
        .map(|d| d.naive_utc())
        .ok_or_else(|| value_error(format!("{us} µs is out of the range of datetimes")))
}

fn overflow(function: &str) -> datafusion::common::DataFusionError {
    value_error(format!(
        "{function}: the result is out of the range of datetimes"
    ))
}

/// `n` parts added to `us`, within ASA's range of datetimes.
fn date_add(part: DatePart, n: i64, us: i64) -> Result<i64> {
    add_unchecked(part, n, us)
        .ok()
        .filter(|t| (FIRST_US..=LAST_US).contains(t))
        .ok_or_else(|| overflow("DATEADD"))
}

fn add_unchecked(part: DatePart, n: i64, us: i64) -> Result<i64> {
    let months = |k: i64| -> Result<i64> {
        let total = n.checked_mul(k).ok_or_else(|| overflow("DATEADD"))?;
        let t = datetime(us)?;
        let m = Months::new(u32::try_from(total.unsigned_abs()).map_err(|_| overflow("DATEADD"))?);
        let moved = if total >= 0 {
            t.checked_add_months(m)
        } else {
            t.checked_sub_months(m)
        };
        Ok(moved
            .ok_or_else(|| overflow("DATEADD"))?
            .and_utc()
            .timestamp_micros())
    };
    let fixed = |unit: i64| -> Result<i64> {
        n.checked_mul(unit)
            .and_then(|d| us.checked_add(d))
            .ok_or_else(|| overflow("DATEADD"))
    };
    match part {
        DatePart::Year => months(12),
        DatePart::Quarter => months(3),
        DatePart::Month => months(1),
        DatePart::DayOfYear | DatePart::Day | DatePart::Weekday => fixed(DAY_US),
        DatePart::Week => fixed(7 * DAY_US),
        DatePart::Hour => fixed(3_600_000_000),
        DatePart::Minute => fixed(60_000_000),
        DatePart::Second => fixed(1_000_000),
        DatePart::Millisecond => fixed(1_000),
        DatePart::Microsecond => fixed(1),
        DatePart::Nanosecond => us.checked_add(n / 1_000).ok_or_else(|| overflow("DATEADD")),
    }
}

/// The number of `part` boundaries crossed from `a` to `b`.
fn date_diff(part: DatePart, a: i64, b: i64) -> Result<i64> {
    // Boundaries of a fixed unit: the difference of the floors.
    let units = |unit: i64| b.div_euclid(unit) - a.div_euclid(unit);
    let (x, y) = (datetime(a)?, datetime(b)?);
    let months = |t: &NaiveDateTime| i64::from(t.year()) * 12 + i64::from(t.month0());
    Ok(match part {
        DatePart::Year => i64::from(y.year()) - i64::from(x.year()),
        DatePart::Quarter => months(&y).div_euclid(3) - months(&x).div_euclid(3),
        DatePart::Month => months(&y) - months(&x),
        DatePart::DayOfYear | DatePart::Day | DatePart::Weekday => units(DAY_US),
        // 1970-01-04 (day 3 of the epoch) is a Sunday.
        DatePart::Week => {
            (b.div_euclid(DAY_US) - 3).div_euclid(7) - (a.div_euclid(DAY_US) - 3).div_euclid(7)
        }
        DatePart::Hour => units(3_600_000_000),
        DatePart::Minute => units(60_000_000),
        DatePart::Second => units(1_000_000),
        DatePart::Millisecond => units(1_000),
        DatePart::Microsecond => b - a,
        DatePart::Nanosecond => (b - a)
            .checked_mul(1_000)
            .ok_or_else(|| value_error("DATEDIFF(nanosecond): the result does not fit a bigint"))?,
    })
}

/// Sunday 1 .. Saturday 7.
fn weekday(t: &NaiveDateTime) -> i64 {
    i64::from(t.weekday().num_days_from_sunday()) + 1
}

fn date_part(part: DatePart, us: i64) -> Result<i64> {
    let t = datetime(us)?;
    let fraction_us = i64::from(t.nanosecond() / 1_000);
    Ok(match part {
        DatePart::Year => i64::from(t.year()),
        DatePart::Quarter => i64::from(t.month0() / 3 + 1),
        DatePart::Month => i64::from(t.month()),
        DatePart::DayOfYear => i64::from(t.ordinal()),
        DatePart::Day => i64::from(t.day()),
        DatePart::Week => {
            let jan1 = NaiveDate::from_ymd_opt(t.year(), 1, 1)
                .ok_or_else(|| value_error("DATEPART(week): no January 1 that year"))?;
            let offset = i64::from(jan1.weekday().num_days_from_sunday());
            (i64::from(t.ordinal0()) + offset) / 7 + 1
        }
        DatePart::Weekday => weekday(&t),
        DatePart::Hour => i64::from(t.hour()),
        DatePart::Minute => i64::from(t.minute()),
        DatePart::Second => i64::from(t.second()),
        DatePart::Millisecond => fraction_us / 1_000,
        DatePart::Microsecond => fraction_us,
        DatePart::Nanosecond => fraction_us * 1_000,
    })
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

fn date_name(part: DatePart, us: i64) -> Result<String> {
    let t = datetime(us)?;
    Ok(match part {
        DatePart::Month => MONTHS[t.month0() as usize].to_string(),
        DatePart::Weekday => WEEKDAYS[t.weekday().num_days_from_sunday() as usize].to_string(),
        other => date_part(other, us)?.to_string(),
    })
}

/// DATETIMEFROMPARTS(year, month, day, hour, minute, seconds, milliseconds).
fn from_parts(a: &[ArrayRef]) -> Result<TimestampMicrosecondArray> {
    let parts = a
        .iter()
        .map(|x| downcast::<Int64Array>(x, "DATETIMEFROMPARTS"))
        .collect::<Result<Vec<_>>>()?;
    let n = a.first().map_or(0, |x| x.len());
    let mut out = Vec::with_capacity(n);
    for row in 0..n {
        let values: Option<Vec<i64>> = parts
            .iter()
            .map(|p| p.is_valid(row).then(|| p.value(row)))
            .collect();
        let Some(v) = values else {
            out.push(None);
            continue;
        };
        let small = |x: i64| u32::try_from(x).ok();
        let date = i32::try_from(v[0])
            .ok()
            .filter(|y| (1..=9999).contains(y))
            .zip(small(v[1]))
            .zip(small(v[2]))
            .and_then(|((y, m), d)| NaiveDate::from_ymd_opt(y, m, d));
        let time = small(v[3])
            .zip(small(v[4]))
            .zip(small(v[5]))
            .zip(small(v[6]).filter(|ms| *ms < 1000))
            .and_then(|(((h, mi), s), ms)| chrono::NaiveTime::from_hms_milli_opt(h, mi, s, ms))
            .filter(|t| t.second() < 60);
        match date.zip(time) {
            Some((d, t)) => out.push(Some(d.and_time(t).and_utc().timestamp_micros())),
            None => {
                return Err(value_error(format!(
                    "DATETIMEFROMPARTS({}, {}, {}, {}, {}, {}, {}) is not a datetime",
                    v[0], v[1], v[2], v[3], v[4], v[5], v[6]
                )));
            }
        }
    }
    Ok(TimestampMicrosecondArray::from(out).with_timezone("UTC"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray};

    use super::parse_datetime;
    use crate::expr::functions::testing::{batch, show, texts};

    #[test]
    fn iso_8601_text_is_read_as_utc() {
        let us = |s| parse_datetime(s);
        let base = Some(1_767_225_600_000_000); // 2026-01-01T00:00:00Z
        assert_eq!(us("2026-01-01T00:00:00Z"), base);
        assert_eq!(us("2026-01-01"), base);
        assert_eq!(us("2026-01-01 00:00:00"), base);
        assert_eq!(us("  2026-01-01T00:00  "), base);
        assert_eq!(us("2026-01-01T01:00:00+01:00"), base);
        assert_eq!(us("2025-12-31T16:00-08:00"), base);
        assert_eq!(
            us("2026-01-01T00:00:00.1234567Z"),
            base.map(|b| b + 123_456)
        );
        assert_eq!(us("2026-13-01"), None);
        assert_eq!(us("2026-02-29"), None);
        assert_eq!(us("1767225600"), None);
        assert_eq!(us("yesterday"), None);
        assert_eq!(us(""), None);
    }

    #[test]
    fn dateadd_keeps_month_ends_and_truncates_fractions() {
        assert_eq!(
            show("DATEADD(month, 1, '2024-01-31T10:00:00Z')"),
            "2024-02-29T10:00:00Z"
        );
        assert_eq!(show("DATEADD(mm, 1, '2025-01-31')"), "2025-02-28T00:00:00Z");
        assert_eq!(show("DATEADD(yy, 1, '2024-02-29')"), "2025-02-28T00:00:00Z");
        assert_eq!(
            show("DATEADD(quarter, -1, '2026-05-31')"),
            "2026-02-28T00:00:00Z"
        );
        assert_eq!(
            show("DATEADD(day, 1, '2024-02-28')"),
            "2024-02-29T00:00:00Z"
        );
        assert_eq!(show("DATEADD(dy, 1, '2024-12-31')"), "2025-01-01T00:00:00Z");
        assert_eq!(
            show("DATEADD(dw, -1, '2026-01-01')"),
            "2025-12-31T00:00:00Z"
        );
        assert_eq!(show("DATEADD(wk, 2, '2026-01-01')"), "2026-01-15T00:00:00Z");
        assert_eq!(
            show("DATEADD(hh, 2, '2026-01-01T23:00:00Z')"),
            "2026-01-02T01:00:00Z"
        );
        assert_eq!(
            show("DATEADD(mi, -90, '2026-01-01')"),
            "2025-12-31T22:30:00Z"
        );
        assert_eq!(
            show("DATEADD(ss, 2.9, '2026-01-01')"),
            "2026-01-01T00:00:02Z"
        );
        assert_eq!(
            show("DATEADD(ss, -2.9, '2026-01-01')"),
            "2025-12-31T23:59:58Z"
        );
        assert_eq!(
            show("DATEADD(ms, 5, '2026-01-01')"),
            "2026-01-01T00:00:00.005Z"
        );
        assert_eq!(
            show("DATEADD(mcs, 5, '2026-01-01')"),
            "2026-01-01T00:00:00.000005Z"
        );
        assert_eq!(
            show("DATEADD(ns, 5999, '2026-01-01')"),
            "2026-01-01T00:00:00.000005Z"
        );
        assert_eq!(show("DATEADD(day, NULL, '2026-01-01')"), "NULL");
        assert_eq!(show("DATEADD(day, 1, NULL)"), "NULL");
        assert_eq!(
            show("DATEADD(year, 7973, '2026-01-01')"),
            "9999-01-01T00:00:00Z"
        );
        assert!(show("DATEADD(year, 7974, '2026-01-01')").contains("out of the range"));
        assert!(show("DATEADD(day, -740000, '2026-01-01')").contains("out of the range"));
        assert!(
            show("DATEADD(mcs, 9223372036854775807, '2026-01-01')").contains("out of the range")
        );
        assert!(show("DATEADD(day, 1, 'soon')").contains("`soon` is not a datetime"));
    }

    #[test]
    fn datediff_counts_boundaries_crossed() {
        let d = |part: &str, a: &str, b: &str| show(&format!("DATEDIFF({part}, '{a}', '{b}')"));
        assert_eq!(d("year", "2025-12-31T23:59:59", "2026-01-01"), "1");
        assert_eq!(d("year", "2026-01-01", "2026-12-31T23:59:59"), "0");
        assert_eq!(d("yy", "2026-01-01", "2025-12-31T23:59:59"), "-1");
        assert_eq!(d("quarter", "2026-03-31", "2026-04-01"), "1");
        assert_eq!(d("month", "2026-01-31", "2026-02-01"), "1");
        assert_eq!(d("month", "2026-01-01", "2026-01-31"), "0");
        assert_eq!(d("month", "2024-12-15", "2026-01-15"), "13");
        assert_eq!(d("day", "2026-01-01T23:59:59", "2026-01-02T00:00:00"), "1");
        assert_eq!(d("dd", "2026-01-01T00:00:00", "2026-01-01T23:59:59"), "0");
        assert_eq!(d("dy", "2026-01-01", "2026-01-11"), "10");
        assert_eq!(d("dw", "2026-01-01", "2026-01-11"), "10");
        // 2026-01-03 is a Saturday, 2026-01-04 a Sunday.
        assert_eq!(d("week", "2026-01-03", "2026-01-04"), "1");
        assert_eq!(d("wk", "2026-01-04", "2026-01-10"), "0");
        assert_eq!(d("week", "1969-12-27", "1970-01-04"), "2");
        assert_eq!(d("hour", "2026-01-01T10:59:59", "2026-01-01T11:00:00"), "1");
        assert_eq!(
            d("minute", "2026-01-01T10:00:59", "2026-01-01T10:01:00"),
            "1"
        );
        assert_eq!(d("mi", "2026-01-01T10:00:00", "2026-01-01T10:00:59"), "0");
        assert_eq!(
            d("second", "2026-01-01T10:00:00.999", "2026-01-01T10:00:01"),
            "1"
        );
        assert_eq!(
            d("ms", "2026-01-01T10:00:00.0009", "2026-01-01T10:00:00.001"),
            "1"
        );
        assert_eq!(
            d("mcs", "2026-01-01T10:00:00", "2026-01-01T10:00:01"),
            "1000000"
        );
        assert_eq!(
            d("ns", "2026-01-01T10:00:00", "2026-01-01T10:00:00.000001"),
            "1000"
        );
        assert_eq!(
            d("second", "1969-12-31T23:59:59.5", "1970-01-01T00:00:00"),
            "1"
        );
        assert_eq!(show("DATEDIFF(day, NULL, '2026-01-01')"), "NULL");
    }

    #[test]
    fn datepart_datename_day_month_year() {
        // 2026-01-01 is a Thursday.
        let t = "'2026-03-14T15:09:26.535897Z'";
        let p = |part: &str| show(&format!("DATEPART({part}, {t})"));
        assert_eq!(p("year"), "2026");
        assert_eq!(p("qq"), "1");
        assert_eq!(p("m"), "3");
        assert_eq!(p("dayofyear"), "73");
        assert_eq!(p("d"), "14");
        assert_eq!(p("weekday"), "7");
        assert_eq!(p("week"), "11");
        assert_eq!(p("hh"), "15");
        assert_eq!(p("n"), "9");
        assert_eq!(p("s"), "26");
        assert_eq!(p("ms"), "535");
        assert_eq!(p("mcs"), "535897");
        assert_eq!(p("ns"), "535897000");
        // Week 1 holds January 1 and ends on the first Saturday.
        assert_eq!(show("DATEPART(week, '2026-01-03')"), "1");
        assert_eq!(show("DATEPART(week, '2026-01-04')"), "2");
        assert_eq!(show("DATEPART(week, '2023-01-01')"), "1");
        assert_eq!(show("DATEPART(week, '2023-12-31')"), "53");
        assert_eq!(show("DATEPART(weekday, '2026-01-04')"), "1");
        assert_eq!(show("DATENAME(month, '2026-03-14')"), "March");
        assert_eq!(show("DATENAME(dw, '2026-03-14')"), "Saturday");
        assert_eq!(show("DATENAME(year, '2026-03-14')"), "2026");
        assert_eq!(show("DATENAME(mi, '2026-03-14T10:07:00')"), "7");
        assert_eq!(show("DAY('2024-02-29T23:59:59Z')"), "29");
        assert_eq!(show("MONTH('2024-02-29T23:59:59Z')"), "2");
        assert_eq!(show("YEAR('2024-02-29T23:59:59Z')"), "2024");
        assert_eq!(show("YEAR(NULL)"), "NULL");
        assert_eq!(show("DATENAME(month, NULL)"), "NULL");
        assert!(show("DAY('2024-02-30')").starts_with("error:"));
        assert!(show("DAY(42)").contains("expects a datetime"));
        assert!(show("DAY()").contains("DAY takes 1 argument, not 0"));
    }

    #[test]
    fn datetimefromparts_builds_valid_datetimes_only() {
        assert_eq!(
            show("DATETIMEFROMPARTS(2024, 2, 29, 23, 59, 59, 999)"),
            "2024-02-29T23:59:59.999Z"
        );
        assert_eq!(
            show("DATETIMEFROMPARTS(2026, 1, 1, 0, 0, 0, 0)"),
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(show("DATETIMEFROMPARTS(2026, 1, 1, 0, 0, NULL, 0)"), "NULL");
        for bad in [
            "2025, 2, 29, 0, 0, 0, 0",
            "2026, 13, 1, 0, 0, 0, 0",
            "2026, 1, 0, 0, 0, 0, 0",
            "2026, 1, 1, 24, 0, 0, 0",
            "2026, 1, 1, 0, 60, 0, 0",
            "2026, 1, 1, 0, 0, 60, 0",
            "2026, 1, 1, 0, 0, 0, 1000",
            "2026, 1, 1, -1, 0, 0, 0",
            "0, 1, 1, 0, 0, 0, 0",
        ] {
            let s = show(&format!("DATETIMEFROMPARTS({bad})"));
            assert!(s.contains("is not a datetime"), "{bad}: {s}");
        }
    }

    #[test]
    fn date_functions_take_datetime_columns_and_text_columns() {
        let t: ArrayRef = Arc::new(
            TimestampMicrosecondArray::from(vec![Some(1_767_225_600_000_000), None])
                .with_timezone("UTC"),
        );
        let s: ArrayRef = Arc::new(StringArray::from(vec![Some("2026-01-31"), None]));
        let b = batch(vec![("t", t), ("s", s)]);
        assert_eq!(
            texts("DATEADD(month, 1, s)", &b).unwrap(),
            ["2026-02-28T00:00:00Z", "NULL"]
        );
        assert_eq!(texts("DATEDIFF(day, t, s)", &b).unwrap(), ["30", "NULL"]);
        assert_eq!(texts("DATEPART(dw, t)", &b).unwrap(), ["5", "NULL"]);
    }
}
