//! The rows a request asks for: time range, filters by column, order,
//! limit, the latest row per key. Parsed and checked against the output's
//! columns before any store is read: a bad request is a 400 with what is
//! wrong, never a failed query.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use iotql_engine::arrow::datatypes::Schema;

use crate::sql::{default_time_column, is_time_type};

/// Rows of an output to read.
#[derive(Debug, Clone, PartialEq)]
pub struct RowQuery {
    /// Rows whose time is at or after this (microseconds since the epoch).
    pub from: Option<i64>,
    /// Rows whose time is before this.
    pub to: Option<i64>,
    /// The column the time range applies to and rows are ordered by:
    /// `time_column`, else the output's first datetime column; `None`: the
    /// output has none (rows in the order written).
    pub time_column: Option<String>,
    /// Rows whose column equals the value (compared as text): `device_id=d1`.
    pub filters: Vec<(String, String)>,
    pub limit: usize,
    /// Newest first (latest rows), else oldest first (a time range).
    pub newest_first: bool,
    /// Only the newest row of each value of this column.
    pub latest_by: Option<String>,
}

/// Rows returned when a request gives no `limit`.
pub const DEFAULT_LIMIT: usize = 100;
/// The most rows one request returns.
pub const MAX_LIMIT: usize = 10_000;

/// Query parameters that are not column filters.
const RESERVED: &[&str] = &["from", "to", "limit", "time_column", "by", "token"];

impl RowQuery {
    /// From a request's query parameters, checked against `schema` (the
    /// output's columns). `newest_first`: the latest-rows endpoint.
    pub fn parse(
        params: &[(String, String)],
        schema: &Schema,
        newest_first: bool,
    ) -> Result<RowQuery, String> {
        let mut named: BTreeMap<&str, &str> = BTreeMap::new();
        let mut filters = Vec::new();
        for (key, value) in params {
            if RESERVED.contains(&key.as_str()) {
                if named.insert(key, value).is_some() {
                    return Err(format!("`{key}` is given twice"));
                }
            } else {
                let column = column(schema, key)?;
                filters.push((column, value.clone()));
            }
        }
        let now = Utc::now();
        let from = named.get("from").map(|t| instant(t, now)).transpose()?;
        let to = named.get("to").map(|t| instant(t, now)).transpose()?;
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err("`from` is after `to`".into());
        }
        let limit = match named.get("limit") {
            None => DEFAULT_LIMIT,
            Some(l) => match l.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "`limit` is a number from 1 to {MAX_LIMIT}, not `{l}`"
                    ));
                }
            },
        };
        let time_column = match named.get("time_column") {
            Some(c) => {
                let c = column(schema, c)?;
                if !is_time(schema, &c) {
                    return Err(format!("`time_column`: column `{c}` is not a datetime"));
                }
                Some(c)
            }
            None => default_time_column(schema).map(str::to_string),
        };
        if time_column.is_none() && (from.is_some() || to.is_some()) {
            return Err("the output has no datetime column for `from` and `to`".into());
        }
        let latest_by = named.get("by").map(|c| column(schema, c)).transpose()?;
        Ok(RowQuery {
            from,
            to,
            time_column,
            filters,
            limit,
            newest_first,
            latest_by,
        })
    }
}

/// The column of `schema` named `name` (case-insensitive), as named there.
fn column(schema: &Schema, name: &str) -> Result<String, String> {
    schema
        .fields()
        .iter()
        .find(|f| f.name().eq_ignore_ascii_case(name))
        .map(|f| f.name().clone())
        .ok_or_else(|| {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            format!(
                "the output has no column `{name}` (it has {}; other parameters: {})",
                names.join(", "),
                RESERVED.join(", ")
            )
        })
}

fn is_time(schema: &Schema, column: &str) -> bool {
    schema
        .field_with_name(column)
        .is_ok_and(|f| is_time_type(f.data_type()))
}

/// A point in time: RFC 3339 (`2026-11-24T10:00:00Z`), or a duration
/// before now (`-15m`, `-2h`, `-7d`).
fn instant(text: &str, now: DateTime<Utc>) -> Result<i64, String> {
    let bad = || {
        format!(
            "`{text}` is not a time: write RFC 3339 (2026-11-24T10:00:00Z) or a duration before now (-15m, -2h, -7d)"
        )
    };
    if let Some(ago) = text.strip_prefix('-') {
        let split = ago.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (n, unit) = ago.split_at(split);
        let n: i64 = n.parse().map_err(|_| bad())?;
        let span = match unit {
            "s" => ChronoDuration::try_seconds(n),
            "m" => ChronoDuration::try_minutes(n),
            "h" => ChronoDuration::try_hours(n),
            "d" => ChronoDuration::try_days(n),
            _ => None,
        }
        .ok_or_else(bad)?;
        return now
            .checked_sub_signed(span)
            .map(|t| t.timestamp_micros())
            .ok_or_else(bad);
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc).timestamp_micros())
        .map_err(|_| bad())
}

/// Microseconds since the epoch as the file and SQLite outputs write
/// datetimes (RFC 3339 UTC, milliseconds), so that text compares in order.
pub fn iso(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .map(|t| t.format(crate::file::TIMESTAMP_FORMAT).to_string())
        .unwrap_or_default()
}

/// Query parameters as the server receives them, for tests.
#[cfg(test)]
pub(crate) fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use iotql_engine::arrow::datatypes::{DataType, Field, TimeUnit};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("device_id", DataType::Utf8, true),
            Field::new(
                "window_end",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("avg_temp", DataType::Float64, true),
        ])
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<RowQuery, String> {
        RowQuery::parse(&params(pairs), &schema(), false)
    }

    #[test]
    fn parameters_become_a_query_and_other_names_filters() {
        let q = parse(&[
            ("from", "2026-11-24T10:00:00Z"),
            ("to", "2026-11-24T11:00:00+01:00"),
            ("Device_ID", "d1"),
            ("limit", "5"),
            ("by", "device_id"),
        ])
        .unwrap();
        assert_eq!(q.from, Some(1_795_514_400_000_000));
        assert_eq!(q.to, q.from);
        assert_eq!(q.filters, vec![("device_id".into(), "d1".into())]);
        assert_eq!(q.limit, 5);
        assert_eq!(q.time_column.as_deref(), Some("window_end"));
        assert_eq!(q.latest_by.as_deref(), Some("device_id"));
        let q = parse(&[("from", "-15m")]).unwrap();
        let ago = Utc::now().timestamp_micros() - q.from.unwrap();
        assert!((899_000_000..=901_000_000).contains(&ago), "{ago}");
    }

    #[test]
    fn bad_parameters_say_what_is_wrong() {
        for (params, says) in [
            (vec![("from", "yesterday")], "is not a time"),
            (vec![("from", "-5y")], "is not a time"),
            (vec![("from", "-99999999999999d")], "is not a time"),
            (
                vec![
                    ("from", "2026-11-24T11:00:00Z"),
                    ("to", "2026-11-24T10:00:00Z"),
                ],
                "`from` is after `to`",
            ),
            (vec![("limit", "0")], "`limit` is a number from 1 to 10000"),
            (vec![("limit", "many")], "`limit`"),
            (vec![("limit", "10001")], "`limit`"),
            (
                vec![("site", "s1")],
                "no column `site` (it has device_id, window_end",
            ),
            (vec![("time_column", "avg_temp")], "is not a datetime"),
            (vec![("by", "nope")], "no column `nope`"),
            (vec![("limit", "1"), ("limit", "2")], "given twice"),
        ] {
            let e = parse(&params).unwrap_err();
            assert!(e.contains(says), "{params:?}: {e}");
        }
        let no_time = Schema::new(vec![Field::new("n", DataType::Int64, true)]);
        let e = RowQuery::parse(&[("to".into(), "-1h".into())], &no_time, true).unwrap_err();
        assert!(e.contains("no datetime column"), "{e}");
    }
}
