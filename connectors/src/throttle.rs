//! Alert throttling, for any output: `throttle = '10m'` lets at most one
//! row per key through per interval (`throttle_by = 'deviceId'`; without
//! it, one per interval for the whole output). The rows held back are
//! counted, and the next row let through for that key says how many in its
//! `suppressed` column, so a receiver knows the condition went on.
//!
//! Intervals are measured in event time (the rows' `System.Timestamp()`),
//! not by the wall clock: a replayed day throttles exactly as the live day
//! did, and a test of it is deterministic.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use iotql_engine::arrow::array::{ArrayRef, Int64Array, UInt32Array};
use iotql_engine::arrow::compute::take;
use iotql_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::arrow::row::{OwnedRow, RowConverter, SortField};
use iotql_engine::checkpoint::{sections, split_sections};
use iotql_engine::error::EngineError;
use iotql_engine::io::{Sink, SinkMetrics, TapSlot};
use iotql_engine::operator::DeadLetter;

/// The column that counts the rows held back before each row.
pub const SUPPRESSED: &str = "suppressed";

/// How an output is throttled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttle {
    pub interval: Duration,
    /// Key columns; empty: the whole output is one key.
    pub by: Vec<String>,
}

impl Throttle {
    /// Takes `throttle` and `throttle_by` out of an output's options.
    pub fn take(
        options: &mut std::collections::BTreeMap<String, String>,
    ) -> Result<Option<Throttle>, String> {
        let by = options.remove("throttle_by");
        let Some(interval) = options.remove("throttle") else {
            return match by {
                Some(_) => Err("`throttle_by` needs `throttle = 'INTERVAL'` (e.g. '10m')".into()),
                None => Ok(None),
            };
        };
        let interval = iotql_engine::time::parse_duration(&interval)
            .map_err(|e| format!("throttle `{interval}`: {e}"))?;
        if interval.is_zero() {
            return Err("throttle: the interval must be longer than 0".into());
        }
        let by = by
            .map(|b| {
                b.split(',')
                    .map(|c| c.trim().trim_matches(['[', ']']).to_string())
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(Throttle { interval, by }))
    }
}

/// A key's state: when its last row went through, and how many were held
/// back since.
#[derive(Debug, Clone, Copy)]
struct KeyState {
    last: i64,
    suppressed: i64,
}

impl KeyState {
    /// A key that has let no row through yet.
    const NEW: KeyState = KeyState {
        last: i64::MIN,
        suppressed: 0,
    };
}

/// Wraps a sink: lets through at most one row per key and interval, and
/// adds the `suppressed` column.
pub struct ThrottledSink {
    inner: Box<dyn Sink>,
    throttle: Throttle,
    interval_micros: i64,
    /// Indices of the key columns in the output's rows.
    key_columns: Vec<usize>,
    converter: Option<RowConverter>,
    keys: HashMap<OwnedRow, KeyState>,
    /// The key state of an output throttled as a whole.
    whole: KeyState,
    schema: Option<SchemaRef>,
    metrics: Arc<SinkMetrics>,
    /// The latest event time seen, to forget keys that are long quiet.
    latest: i64,
    writes: u64,
    /// Key states of a checkpoint, applied at start (when the key
    /// columns' types are known).
    recovered: Vec<(Vec<u8>, KeyState)>,
    /// Shown the rows let through (an HTTP server's tail), once attached.
    tap: Option<Arc<TapSlot>>,
}

impl std::fmt::Debug for ThrottledSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThrottledSink")
            .field("throttle", &self.throttle)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// How many writes pass between sweeps of quiet keys.
const SWEEP_EVERY: u64 = 1024;

impl ThrottledSink {
    pub fn new(inner: Box<dyn Sink>, throttle: Throttle) -> Self {
        // The throttle's count sits beside the inner sink's own counters.
        let metrics = inner.metrics().unwrap_or_default();
        ThrottledSink {
            inner,
            interval_micros: i64::try_from(throttle.interval.as_micros()).unwrap_or(i64::MAX),
            throttle,
            key_columns: Vec::new(),
            converter: None,
            keys: HashMap::new(),
            whole: KeyState::NEW,
            schema: None,
            metrics,
            latest: i64::MIN,
            writes: 0,
            recovered: Vec::new(),
            tap: None,
        }
    }

    /// Whether a row of `state`'s key at `time` goes through; updates the
    /// state and returns the count of rows held back before it.
    fn admit(state: &mut KeyState, time: i64, interval: i64) -> Option<i64> {
        if time.saturating_sub(state.last) < interval {
            state.suppressed += 1;
            return None;
        }
        let held = state.suppressed;
        *state = KeyState {
            last: time,
            suppressed: 0,
        };
        Some(held)
    }

    /// Forgets keys with nothing held back whose interval is long over: a
    /// fleet's keys come and go, the state should not only grow.
    fn sweep(&mut self) {
        let horizon = self.latest.saturating_sub(self.interval_micros);
        self.keys
            .retain(|_, s| s.suppressed > 0 || s.last > horizon);
    }
}

impl Sink for ThrottledSink {
    fn start(&mut self, schema: &SchemaRef) -> Result<(), EngineError> {
        let refuse = |message: String| EngineError::Unsupported(format!("throttle: {message}"));
        if schema.field_with_name(SUPPRESSED).is_ok() {
            return Err(refuse(format!(
                "the output already has a column `{SUPPRESSED}`, the column a throttled output adds; rename it"
            )));
        }
        let names = || {
            schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        self.key_columns = self
            .throttle
            .by
            .iter()
            .map(|k| {
                schema
                    .fields()
                    .iter()
                    .position(|f| f.name().eq_ignore_ascii_case(k))
                    .ok_or_else(|| {
                        refuse(format!(
                            "throttle_by column `{k}` is not a column of the output (its columns: {})",
                            names()
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
        if !self.key_columns.is_empty() {
            let fields = self
                .key_columns
                .iter()
                .map(|&i| SortField::new(schema.field(i).data_type().clone()))
                .collect();
            let converter = RowConverter::new(fields)?;
            let parser = converter.parser();
            for (row, state) in std::mem::take(&mut self.recovered) {
                self.keys.insert(parser.parse(&row).owned(), state);
            }
            self.converter = Some(converter);
        }
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(SUPPRESSED, DataType::Int64, false));
        let schema = Arc::new(Schema::new(fields));
        self.inner.start(&schema)?;
        self.schema = Some(schema);
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        let now = crate::message::now_micros();
        self.write_at(batch, &vec![now; batch.num_rows()])
    }

    fn write_at(&mut self, batch: &RecordBatch, event_times: &[i64]) -> Result<(), EngineError> {
        let schema = self
            .schema
            .clone()
            .ok_or_else(|| EngineError::Internal("throttled output written before start".into()))?;
        let mut keep = Vec::new();
        let mut held = Vec::new();
        match &self.converter {
            Some(converter) => {
                let columns: Vec<ArrayRef> = self
                    .key_columns
                    .iter()
                    .map(|&i| batch.column(i).clone())
                    .collect();
                let rows = converter.convert_columns(&columns)?;
                for (r, &time) in event_times.iter().enumerate() {
                    let state = self
                        .keys
                        .entry(rows.row(r).owned())
                        .or_insert(KeyState::NEW);
                    if let Some(n) = Self::admit(state, time, self.interval_micros) {
                        keep.push(r as u32);
                        held.push(n);
                    }
                }
            }
            None => {
                for (r, &time) in event_times.iter().enumerate() {
                    if let Some(n) = Self::admit(&mut self.whole, time, self.interval_micros) {
                        keep.push(r as u32);
                        held.push(n);
                    }
                }
            }
        }
        let suppressed = event_times.len() - keep.len();
        self.metrics
            .suppressed
            .fetch_add(suppressed as u64, Ordering::Relaxed);
        self.latest = event_times.iter().copied().fold(self.latest, i64::max);
        self.writes += 1;
        if self.writes.is_multiple_of(SWEEP_EVERY) {
            self.sweep();
        }
        if keep.is_empty() {
            return Ok(());
        }
        let indices = UInt32Array::from(keep);
        let mut columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<Result<_, _>>()?;
        columns.push(Arc::new(Int64Array::from(held)));
        let times: Vec<i64> = indices
            .values()
            .iter()
            .map(|&i| event_times[i as usize])
            .collect();
        let passed = RecordBatch::try_new(schema, columns)?;
        self.inner.write_at(&passed, &times)?;
        if let Some(tap) = self.tap.as_ref().and_then(|t| t.get()) {
            tap.rows(&passed, Some(&times));
        }
        Ok(())
    }

    fn write_raw(&mut self, payload: &[u8]) -> Result<(), EngineError> {
        self.inner.write_raw(payload)
    }

    /// The rows let through, with their `suppressed` column.
    fn tap_passed_on(&mut self, tap: Arc<TapSlot>) -> Option<SchemaRef> {
        self.tap = Some(tap);
        self.schema.clone()
    }

    fn flush(&mut self) -> Result<(), EngineError> {
        self.inner.flush()
    }

    fn finish(&mut self) -> Result<(), EngineError> {
        self.inner.finish()
    }

    fn stop(&mut self) -> Result<(), EngineError> {
        self.inner.stop()
    }

    fn tick(&mut self) -> Result<(), EngineError> {
        self.inner.tick()
    }

    fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        self.inner.take_dead_letters()
    }

    fn metrics(&self) -> Option<Arc<SinkMetrics>> {
        Some(self.metrics.clone())
    }

    /// The throttle's state (each key's last row through and rows held
    /// back), so that a resumed job neither repeats an alert nor loses a
    /// held-back count, and the inner output's state.
    fn checkpoint(&mut self) -> Result<Option<Vec<u8>>, EngineError> {
        let inner = self.inner.checkpoint()?;
        let state = |s: &KeyState| [s.last.to_le_bytes(), s.suppressed.to_le_bytes()].concat();
        let mut parts = vec![
            match &inner {
                Some(i) => [&[1u8][..], i].concat(),
                None => vec![0],
            },
            [state(&self.whole), self.latest.to_le_bytes().to_vec()].concat(),
        ];
        for (row, s) in &self.keys {
            parts.push(row.row().as_ref().to_vec());
            parts.push(state(s));
        }
        Ok(Some(sections(&parts)))
    }

    fn recover(&mut self, state: &[u8]) -> Result<(), EngineError> {
        let bad = || EngineError::State("a damaged throttle state".into());
        let parts = split_sections(state)?;
        let (Some(inner), Some(whole)) = (parts.first(), parts.get(1)) else {
            return Err(bad());
        };
        let number = |bytes: &[u8], at: usize| -> Result<i64, EngineError> {
            bytes
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map(i64::from_le_bytes)
                .ok_or_else(bad)
        };
        let key_state = |bytes: &[u8]| -> Result<KeyState, EngineError> {
            Ok(KeyState {
                last: number(bytes, 0)?,
                suppressed: number(bytes, 8)?,
            })
        };
        match inner.split_first() {
            Some((1, inner)) => self.inner.recover(inner)?,
            Some((0, [])) => {}
            _ => return Err(bad()),
        }
        self.whole = key_state(whole)?;
        self.latest = number(whole, 16)?;
        self.recovered = parts[2..]
            .chunks(2)
            .map(|pair| match pair {
                [row, s] => Ok((row.to_vec(), key_state(s)?)),
                _ => Err(bad()),
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    fn enable_checkpoints(&mut self, scope: &str) -> Result<(), EngineError> {
        self.inner.enable_checkpoints(scope)
    }

    fn can_resume(&mut self, state: &[u8]) -> Result<bool, EngineError> {
        let parts = split_sections(state)?;
        match parts.first().and_then(|inner| inner.split_first()) {
            Some((1, inner)) => self.inner.can_resume(inner),
            _ => Ok(true),
        }
    }

    fn committed(&mut self) -> Result<(), EngineError> {
        self.inner.committed()
    }

    fn wants_checkpoint(&self) -> bool {
        self.inner.wants_checkpoint()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use iotql_engine::arrow::array::{AsArray, StringArray};
    use iotql_engine::arrow::datatypes::Int64Type;
    use iotql_engine::io::CollectSink;

    use super::*;

    const MINUTE: i64 = 60_000_000;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("deviceId", DataType::Utf8, true),
            Field::new("temp", DataType::Int64, true),
        ]))
    }

    /// A tap that keeps what it is shown.
    #[derive(Debug, Default)]
    struct Seen(std::sync::Mutex<Vec<RecordBatch>>);

    impl iotql_engine::io::OutputTap for Seen {
        fn rows(&self, batch: &RecordBatch, event_times: Option<&[i64]>) {
            assert_eq!(event_times.map(<[i64]>::len), Some(batch.num_rows()));
            self.0.lock().unwrap().push(batch.clone());
        }
    }

    /// Writes (device, minute) alerts in batches of `per_batch`; returns
    /// what went through as (device, minute, suppressed). A tap attached
    /// to the sink sees exactly what went through, with its columns.
    fn run(by: &[&str], alerts: &[(&str, i64)], per_batch: usize) -> Vec<(String, i64, i64)> {
        let collect = CollectSink::new();
        let mut sink = ThrottledSink::new(
            Box::new(collect.clone()),
            Throttle {
                interval: Duration::from_secs(600),
                by: by.iter().map(|s| s.to_string()).collect(),
            },
        );
        sink.start(&schema()).unwrap();
        let seen = Arc::new(Seen::default());
        let slot = Arc::new(TapSlot::new());
        let tap: Arc<dyn iotql_engine::io::OutputTap> = seen.clone();
        slot.set(tap).unwrap();
        let columns = sink.tap_passed_on(slot).unwrap();
        assert_eq!(columns.field(2).name(), SUPPRESSED);
        for chunk in alerts.chunks(per_batch) {
            let batch = RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(StringArray::from_iter_values(chunk.iter().map(|a| a.0))),
                    Arc::new(Int64Array::from_iter_values(chunk.iter().map(|a| a.1))),
                ],
            )
            .unwrap();
            let times: Vec<i64> = chunk.iter().map(|a| a.1 * MINUTE).collect();
            sink.write_at(&batch, &times).unwrap();
        }
        sink.finish().unwrap();
        assert_eq!(
            *seen.0.lock().unwrap(),
            collect.batches(),
            "what the tap saw"
        );
        let mut out = Vec::new();
        for b in collect.batches() {
            assert_eq!(b.schema().field(2).name(), SUPPRESSED);
            for r in 0..b.num_rows() {
                out.push((
                    b.column(0).as_string::<i32>().value(r).to_string(),
                    b.column(1).as_primitive::<Int64Type>().value(r),
                    b.column(2).as_primitive::<Int64Type>().value(r),
                ));
            }
        }
        out
    }

    #[test]
    fn one_row_per_key_and_interval_with_the_count_held_back() {
        // Device a alerts every minute for 25 minutes; b at minutes 3 and 30.
        let mut alerts: Vec<(&str, i64)> = (0..25).map(|m| ("a", m)).collect();
        alerts.insert(3, ("b", 3));
        alerts.push(("b", 30));
        let expected = vec![
            ("a".to_string(), 0, 0),
            ("b".to_string(), 3, 0),
            ("a".to_string(), 10, 9),
            ("a".to_string(), 20, 9),
            ("b".to_string(), 30, 0),
        ];
        for per_batch in [1, 4, 100] {
            assert_eq!(
                run(&["deviceid"], &alerts, per_batch),
                expected,
                "batches of {per_batch}"
            );
        }
    }

    #[test]
    fn without_throttle_by_the_whole_output_is_one_key() {
        let alerts = [("a", 0), ("b", 1), ("c", 12), ("a", 13)];
        assert_eq!(
            run(&[], &alerts, 2),
            vec![("a".to_string(), 0, 0), ("c".to_string(), 12, 1)]
        );
    }

    #[test]
    fn quiet_keys_are_forgotten_but_not_their_held_counts() {
        let mut sink = ThrottledSink::new(
            Box::new(CollectSink::new()),
            Throttle {
                interval: Duration::from_secs(60),
                by: vec!["deviceId".into()],
            },
        );
        sink.start(&schema()).unwrap();
        let batch = |d: &str| {
            RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(StringArray::from(vec![d, d])),
                    Arc::new(Int64Array::from(vec![1, 2])),
                ],
            )
            .unwrap()
        };
        sink.write_at(&batch("held"), &[0, 1]).unwrap();
        sink.write_at(&batch("quiet"), &[MINUTE / 2, 2 * MINUTE])
            .unwrap();
        sink.latest = 10 * MINUTE;
        sink.sweep();
        assert_eq!(sink.keys.len(), 1, "the key with a held row stays");
        assert_eq!(sink.metrics.suppressed.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_key_that_is_not_a_column_is_refused_at_start() {
        let mut sink = ThrottledSink::new(
            Box::new(CollectSink::new()),
            Throttle {
                interval: Duration::from_secs(60),
                by: vec!["device".into()],
            },
        );
        let e = sink.start(&schema()).unwrap_err().to_string();
        assert!(e.contains("throttle_by column `device` is not a column of the output (its columns: deviceId, temp)"), "{e}");
    }

    #[test]
    fn options_are_taken_and_checked() {
        let mut options = BTreeMap::from([
            ("throttle".to_string(), "10m".to_string()),
            ("throttle_by".to_string(), "deviceId, [site]".to_string()),
            ("path".to_string(), "x".to_string()),
        ]);
        let t = Throttle::take(&mut options).unwrap().unwrap();
        assert_eq!(t.interval, Duration::from_secs(600));
        assert_eq!(t.by, ["deviceId", "site"]);
        assert_eq!(options.len(), 1, "the connector sees only its own options");
        let mut options = BTreeMap::from([("throttle_by".to_string(), "d".to_string())]);
        assert!(
            Throttle::take(&mut options)
                .unwrap_err()
                .contains("needs `throttle")
        );
        let mut options = BTreeMap::from([("throttle".to_string(), "soon".to_string())]);
        assert!(
            Throttle::take(&mut options)
                .unwrap_err()
                .starts_with("throttle `soon`")
        );
    }
}
