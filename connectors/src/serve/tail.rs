//! The rows an output was given lately, kept in memory (a bounded ring)
//! for outputs that have no store to read back, and the live feed of every
//! output (Server-Sent Events). Rows are turned into JSON objects once, as
//! the JSON-lines output writes them, and only when someone can see them:
//! an output with a store and no live client costs nothing.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;

use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::io::OutputTap;
use serde_json::{Map, Value};
use tokio::sync::broadcast;

use super::query::{RowQuery, iso};

/// One row of an output, as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The row's event time (microseconds), when the output has it.
    pub event_time: Option<i64>,
    pub values: Map<String, Value>,
}

/// Live rows a slow client may fall behind by before it misses some (it is
/// told how many).
const LIVE_BACKLOG: usize = 4096;

#[derive(Debug)]
pub struct Tail {
    capacity: usize,
    rows: Mutex<VecDeque<Arc<Row>>>,
    live: broadcast::Sender<Arc<Row>>,
}

impl Tail {
    /// A tail that keeps the latest `capacity` rows (0: none, only the live
    /// feed).
    pub fn new(capacity: usize) -> Tail {
        Tail {
            capacity,
            rows: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            live: broadcast::channel(LIVE_BACKLOG).0,
        }
    }

    /// Whether the tail keeps rows (the output has no store).
    pub fn keeps_rows(&self) -> bool {
        self.capacity > 0
    }

    /// A live feed of the rows given to the output from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Row>> {
        self.live.subscribe()
    }

    /// The kept rows that `query` asks for.
    pub fn query(&self, query: &RowQuery) -> Vec<Map<String, Value>> {
        let Ok(rows) = self.rows.lock() else {
            return Vec::new();
        };
        let mut picked: Vec<&Arc<Row>> = rows.iter().filter(|r| matches(r, query)).collect();
        if let Some(column) = &query.time_column {
            // Rows come in event-time order per output but not per column.
            picked.sort_by_cached_key(|r| text(r.values.get(column)));
        }
        if query.newest_first || query.latest_by.is_some() {
            picked.reverse();
        }
        if let Some(key) = &query.latest_by {
            let mut seen = std::collections::HashSet::new();
            picked.retain(|r| seen.insert(text(r.values.get(key))));
        }
        picked
            .into_iter()
            .take(query.limit)
            .map(|r| r.values.clone())
            .collect()
    }
}

impl OutputTap for Tail {
    fn rows(&self, batch: &RecordBatch, event_times: Option<&[i64]>) {
        if batch.num_rows() == 0 || (self.capacity == 0 && self.live.receiver_count() == 0) {
            return;
        }
        let rows = match to_rows(batch, event_times) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::debug!("the HTTP tail cannot show a batch: {e}");
                return;
            }
        };
        for row in &rows {
            // No receiver is not an error: nobody is watching.
            let _ = self.live.send(row.clone());
        }
        if self.capacity == 0 {
            return;
        }
        if let Ok(mut kept) = self.rows.lock() {
            for row in rows {
                if kept.len() == self.capacity {
                    kept.pop_front();
                }
                kept.push_back(row);
            }
        }
    }
}

/// `batch`'s rows as JSON objects, written as the JSON-lines output writes
/// them (datetimes RFC 3339 UTC, NULL as null).
pub fn json_objects(batch: &RecordBatch) -> Result<Vec<Map<String, Value>>, String> {
    let lines = crate::file::jsonl::json_lines(batch).map_err(|e| e.to_string())?;
    lines
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| serde_json::from_slice(line).map_err(|e| e.to_string()))
        .collect()
}

/// `batch`'s rows with their event times.
fn to_rows(batch: &RecordBatch, event_times: Option<&[i64]>) -> Result<Vec<Arc<Row>>, String> {
    Ok(json_objects(batch)?
        .into_iter()
        .enumerate()
        .map(|(i, values)| {
            Arc::new(Row {
                event_time: event_times.and_then(|t| t.get(i).copied()),
                values,
            })
        })
        .collect())
}

/// A value as text, for filters and keys: strings as they are, others as
/// JSON.
pub fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

/// Whether `row` passes the query's time range and filters. Times compare
/// as the outputs write them (RFC 3339 UTC, milliseconds): as text.
fn matches(row: &Row, query: &RowQuery) -> bool {
    if let Some(column) = &query.time_column {
        let t = text(row.values.get(column));
        if query.from.is_some_and(|f| t < iso(f)) || query.to.is_some_and(|to| t >= iso(to)) {
            return false;
        }
    }
    passes(row, &query.filters)
}

/// Whether `row` has each column's value of `filters` (compared as text).
pub fn passes(row: &Row, filters: &[(String, String)]) -> bool {
    filters
        .iter()
        .all(|(column, value)| text(row.values.get(column)) == *value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iotql_engine::arrow::array::{Float64Array, StringArray, TimestampMicrosecondArray};
    use iotql_engine::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, true),
            Field::new(
                "window_end",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("t", DataType::Float64, true),
        ]))
    }

    #[test]
    fn rows_keep_every_digit_of_their_floats() {
        // Numbers of 17 significant digits, which a best-effort float
        // parser reads one unit in the last place off (18.115 here).
        let values = [18.115000000000002, 0.1 + 0.2, 1e-310, f64::MAX, -2.5e-8];
        let rows: Vec<(&str, i64, f64)> = values.iter().map(|&v| ("d", 0, v)).collect();
        let objects = json_objects(&batch(&rows)).unwrap();
        let got: Vec<f64> = objects.iter().map(|o| o["t"].as_f64().unwrap()).collect();
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{got:?}"
        );
    }

    /// Rows (device, second, value).
    fn batch(rows: &[(&str, i64, f64)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(
                        rows.iter().map(|r| r.1 * 1_000_000),
                    )
                    .with_timezone("UTC"),
                ),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    fn query(pairs: &[(&str, &str)], newest_first: bool) -> RowQuery {
        RowQuery::parse(&super::super::query::params(pairs), &schema(), newest_first).unwrap()
    }

    fn devices(rows: &[Map<String, Value>]) -> Vec<String> {
        rows.iter()
            .map(|r| format!("{}@{}", text(r.get("device_id")), text(r.get("t"))))
            .collect()
    }

    #[test]
    fn keeps_the_latest_rows_and_answers_queries_over_them() {
        let tail = Tail::new(4);
        tail.rows(
            &batch(&[("a", 10, 1.0), ("b", 10, 2.0), ("a", 20, 3.0)]),
            None,
        );
        tail.rows(&batch(&[("b", 20, 4.0), ("a", 30, 5.0)]), None);
        // The first row fell out.
        let all = tail.query(&query(&[], false));
        assert_eq!(devices(&all), ["b@2.0", "a@3.0", "b@4.0", "a@5.0"]);
        let newest = tail.query(&query(&[("limit", "2")], true));
        assert_eq!(devices(&newest), ["a@5.0", "b@4.0"]);
        let a = tail.query(&query(&[("device_id", "a")], false));
        assert_eq!(devices(&a), ["a@3.0", "a@5.0"]);
        let range = tail.query(&query(
            &[
                ("from", "1970-01-01T00:00:20Z"),
                ("to", "1970-01-01T00:00:30Z"),
            ],
            false,
        ));
        assert_eq!(devices(&range), ["a@3.0", "b@4.0"]);
        let latest = tail.query(&query(&[("by", "device_id")], true));
        assert_eq!(devices(&latest), ["a@5.0", "b@4.0"]);
    }

    #[test]
    fn live_clients_get_rows_and_an_output_with_a_store_keeps_none() {
        let tail = Tail::new(0);
        tail.rows(&batch(&[("a", 1, 1.0)]), None);
        let mut live = tail.subscribe();
        tail.rows(&batch(&[("b", 2, 2.0)]), Some(&[2_000_000]));
        let row = live.try_recv().unwrap();
        assert_eq!(row.event_time, Some(2_000_000));
        assert_eq!(
            text(row.values.get("window_end")),
            "1970-01-01T00:00:02.000Z"
        );
        assert!(live.try_recv().is_err());
        assert!(tail.query(&query(&[], false)).is_empty());
    }
}
