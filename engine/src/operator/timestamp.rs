//! TIMESTAMP BY: gives each row its event time, keeps the watermark (the
//! largest event time seen minus the out-of-order tolerance), and applies
//! the late policy to rows older than the watermark: adjust their event
//! time to the watermark, or drop them. Rows whose time cannot be read go
//! to the dead-letter output.
//!
//! When events have an arrival time (a column named by the input option
//! `arrival_time`, or a broker's message time), an event whose time is more
//! than the late-arrival tolerance before its arrival is late too: its time
//! becomes the arrival time minus the tolerance (adjust), or it is dropped.
//! Without TIMESTAMP BY, the arrival time is the event time.
//!
//! With `TIMESTAMP BY ... OVER key` every key is a substream with a clock
//! of its own: its watermark is its own largest event time minus the
//! tolerance, the late policy compares a row with its substream's
//! watermark, and the operator sends per-substream watermarks downstream
//! (and no global one until the input ends), with each row's substream in
//! a hidden column.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, TimestampMicrosecondArray, UInt64Array,
};
use datafusion::arrow::compute::{CastOptions, cast_with_options, filter};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::{DeadLetter, Message, Operator, Output};
use crate::error::EngineError;
use crate::plan::{LatePolicy, TimePolicy};
use crate::time::{
    ARRIVAL_TIME, EVENT_TIME, EventTime, PARTITION, POSITION, RAW, SUBSTREAM, event_time_type,
    micros_of,
};

/// Counters of one input's TIMESTAMP BY, shared with whoever reports them.
#[derive(Debug)]
pub struct TimestampStats {
    pub events_in: AtomicU64,
    pub late_adjusted: AtomicU64,
    pub late_dropped: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// The input's watermark in microseconds (`i64::MIN` before any event);
    /// with substreams, the most advanced substream's.
    pub watermark: std::sync::atomic::AtomicI64,
    /// The largest event time given to an event so far (`i64::MIN` before
    /// any): no event pushed until now is later.
    pub max_event_time: std::sync::atomic::AtomicI64,
}

impl Default for TimestampStats {
    fn default() -> Self {
        TimestampStats {
            events_in: AtomicU64::new(0),
            late_adjusted: AtomicU64::new(0),
            late_dropped: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            watermark: std::sync::atomic::AtomicI64::new(i64::MIN),
            max_event_time: std::sync::atomic::AtomicI64::new(i64::MIN),
        }
    }
}

impl TimestampStats {
    /// The watermark, if the input has one yet.
    pub fn watermark(&self) -> Option<EventTime> {
        match self.watermark.load(Ordering::Relaxed) {
            i64::MIN => None,
            w => Some(EventTime(w)),
        }
    }
}

#[derive(Debug)]
pub struct TimestampOperator {
    input: String,
    by: Option<Arc<dyn PhysicalExpr>>,
    policy: TimePolicy,
    out_schema: SchemaRef,
    position_index: usize,
    max_seen: i64,
    substreams: Option<Substreams>,
    /// The input column holding each event's partition, for a partitioned
    /// source (without substreams).
    partition: Option<usize>,
    /// Each partition's largest event time (`i64::MIN`: none yet).
    partitions: BTreeMap<u64, i64>,
    /// The watermark sent last.
    emitted: i64,
    /// The input column holding each event's arrival time.
    arrival: Option<usize>,
    stats: Arc<TimestampStats>,
}

/// The clocks of `OVER` substreams.
#[derive(Debug)]
struct Substreams {
    keys: Vec<Arc<dyn PhysicalExpr>>,
    converter: RowConverter,
    /// Substream -> its largest event time.
    max_seen: HashMap<u64, i64>,
}

impl Substreams {
    /// Each row's substream: a hash of its key, the same in every run.
    fn ids(&self, batch: &RecordBatch) -> Result<Vec<u64>, EngineError> {
        let n = batch.num_rows();
        let columns = self
            .keys
            .iter()
            .map(|k| k.evaluate(batch).and_then(|v| v.into_array(n)))
            .collect::<Result<Vec<_>, _>>()?;
        let rows = self.converter.convert_columns(&columns)?;
        Ok((0..n)
            .map(|i| twox_hash::XxHash3_64::oneshot(rows.row(i).as_ref()))
            .collect())
    }
}

/// The watermark of a clock whose largest event time is `max_seen` (none
/// before any event), with an out-of-order tolerance in microseconds.
fn watermark_of(max_seen: i64, out_of_order: i64) -> i64 {
    if max_seen == i64::MIN {
        i64::MIN
    } else {
        max_seen.saturating_sub(out_of_order)
    }
}

/// The earliest event time taken: 0000-01-01T00:00:00Z. Earlier times (and
/// later than [`LAST_TIME`]) cannot be written as RFC 3339 datetimes, which
/// have four-digit years.
pub const FIRST_TIME: i64 = -62_167_219_200_000_000;
/// The latest event time taken: 9999-12-31T23:59:59.999999Z.
pub const LAST_TIME: i64 = 253_402_300_799_999_999;

/// Why an event time `t` is refused, if it is: outside the years 0000 to
/// 9999, or more than `max_future` ahead of the event's `arrival` (when it
/// has one) or of the wall clock (`now`).
fn insane_time(
    t: i64,
    arrival: Option<i64>,
    max_future: Option<std::time::Duration>,
    now: impl FnOnce() -> i64,
) -> Option<String> {
    if !(FIRST_TIME..=LAST_TIME).contains(&t) {
        return Some("is outside the years 0000 to 9999".into());
    }
    let limit = max_future?;
    let (reference, what) = match arrival {
        Some(a) => (a, "its arrival time"),
        None => (now(), "the clock"),
    };
    if t <= reference.saturating_add(micros_of(limit)) {
        return None;
    }
    Some(format!(
        "is more than {} ahead of {what} ({}): a wrong device clock? (the limit is option max_future, or --max-future)",
        human(limit),
        EventTime(reference)
    ))
}

/// A duration as the options write it (`1d`, `90m`, `1500ms`).
fn human(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".into(),
        ms if ms % 86_400_000 == 0 => format!("{}d", ms / 86_400_000),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// Whether values of this type can be event times.
pub fn is_time_type(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(..)
            | DataType::Date32
            | DataType::Date64
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float32
            | DataType::Float64
    )
}

impl TimestampOperator {
    /// `input_schema` carries the position column; `by` and the `over`
    /// keys are compiled over it, `arrival` is one of its columns.
    pub fn new(
        input: String,
        by: Option<Arc<dyn PhysicalExpr>>,
        over: Vec<Arc<dyn PhysicalExpr>>,
        arrival: Option<usize>,
        policy: TimePolicy,
        input_schema: &SchemaRef,
        stats: Arc<TimestampStats>,
    ) -> Result<Self, EngineError> {
        let position_index = input_schema.index_of(POSITION).map_err(|_| {
            EngineError::Internal("TIMESTAMP BY input has no position column".into())
        })?;
        let substreams = if over.is_empty() {
            None
        } else {
            let fields = over
                .iter()
                .map(|k| Ok(SortField::new(k.data_type(input_schema)?)))
                .collect::<Result<Vec<_>, EngineError>>()?;
            Some(Substreams {
                keys: over,
                converter: RowConverter::new(fields)?,
                max_seen: HashMap::new(),
            })
        };
        let partition = match substreams {
            None => input_schema.index_of(PARTITION).ok(),
            Some(_) => None,
        };
        Ok(Self {
            input,
            by,
            policy,
            out_schema: output_schema(input_schema, substreams.is_some()),
            position_index,
            max_seen: i64::MIN,
            substreams,
            partition,
            partitions: BTreeMap::new(),
            emitted: i64::MIN,
            arrival,
            stats,
        })
    }

    pub fn schema(&self) -> SchemaRef {
        self.out_schema.clone()
    }

    /// Sends the watermark if it advanced: the clock's, or for a partitioned
    /// source the slowest partition's.
    fn emit_watermark(&mut self, out: &mut Output) {
        let wm = match self.partition {
            Some(_) if !self.partitions.is_empty() => self
                .partitions
                .values()
                .map(|&max| self.watermark(max))
                .min()
                .unwrap_or(i64::MIN),
            _ => self.watermark(self.max_seen),
        };
        if wm > self.emitted {
            self.emitted = wm;
            self.stats.watermark.fetch_max(wm, Ordering::Relaxed);
            out.watermark(EventTime(wm));
        }
    }

    /// The watermark of a clock whose largest event time is `max_seen`.
    fn watermark(&self, max_seen: i64) -> i64 {
        watermark_of(max_seen, micros_of(self.policy.out_of_order))
    }

    /// Row `row`'s TIMESTAMP BY value as text (empty when NULL).
    fn shown(&self, batch: &RecordBatch, row: usize) -> String {
        match &self.by {
            Some(by) => by
                .evaluate(&batch.slice(row, 1))
                .ok()
                .and_then(|v| v.into_array(1).ok())
                .and_then(|a| datafusion::arrow::util::display::array_value_to_string(&a, 0).ok())
                .unwrap_or_default(),
            None => String::new(),
        }
    }

    fn dead_letter(&self, batch: &RecordBatch, row: usize, reason: String) -> DeadLetter {
        let position = batch
            .column(self.position_index)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .map_or_else(|| "?".to_string(), |p| format!("line {}", p.value(row)));
        // The event as read, when the source kept it; else the row as JSON.
        let raw = match batch.column_by_name(RAW) {
            Some(raw) => match raw.data_type() {
                DataType::LargeBinary => {
                    String::from_utf8_lossy(raw.as_binary::<i64>().value(row)).into_owned()
                }
                DataType::Binary => {
                    String::from_utf8_lossy(raw.as_binary::<i32>().value(row)).into_owned()
                }
                _ => super::row_json(&batch.slice(row, 1)),
            },
            None => super::row_json(&batch.slice(row, 1)),
        };
        DeadLetter {
            input: self.input.clone(),
            position,
            reason,
            raw,
        }
    }
}

/// The input schema without the position column, with the event time (and
/// the substream) last.
fn output_schema(input: &SchemaRef, substreams: bool) -> SchemaRef {
    let mut fields: Vec<Field> = input
        .fields()
        .iter()
        .filter(|f| {
            ![POSITION, RAW, EVENT_TIME, ARRIVAL_TIME, PARTITION].contains(&f.name().as_str())
        })
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(EVENT_TIME, event_time_type(), false));
    if substreams {
        fields.push(Field::new(SUBSTREAM, DataType::UInt64, false));
    }
    Arc::new(Schema::new(fields))
}

/// Event times in microseconds (NULL where a value is not a time):
/// timestamps and dates as they are (no time zone means UTC), strings as
/// ISO-8601 / RFC 3339, numbers as epoch seconds, milliseconds,
/// microseconds or nanoseconds by their magnitude.
pub fn to_event_micros(values: &ArrayRef) -> Result<Int64Array, EngineError> {
    let safe = CastOptions {
        safe: true,
        ..Default::default()
    };
    match values.data_type() {
        DataType::Utf8 => {
            // The common forms first (2026-01-01T00:00:00.017Z), by hand;
            // arrow's general parser takes whatever they miss.
            let text = values.as_string::<i32>();
            let fast: Int64Array = text
                .iter()
                .map(|v| v.and_then(|s| parse_iso8601_utc(s.as_bytes())))
                .collect();
            if fast.null_count() == values.null_count() {
                return Ok(fast);
            }
            let general =
                to_event_micros(&cast_with_options(values, &DataType::LargeUtf8, &safe)?)?;
            Ok(fast
                .iter()
                .zip(general.iter())
                .map(|(f, g)| f.or(g))
                .collect())
        }
        DataType::LargeUtf8 | DataType::Utf8View => {
            let ts = cast_with_options(
                values,
                &DataType::Timestamp(TimeUnit::Microsecond, None),
                &safe,
            )?;
            let ints = cast_with_options(&ts, &DataType::Int64, &safe)?;
            let ints = ints.as_primitive::<Int64Type>();
            if ints.null_count() == values.null_count() {
                return Ok(ints.clone());
            }
            // Text that is not ISO-8601 may be an epoch number ("1767225602").
            let text = cast_with_options(values, &DataType::LargeUtf8, &safe)?;
            let text = text.as_string::<i64>();
            Ok(ints
                .iter()
                .zip(text.iter())
                .map(|(t, s)| {
                    t.or_else(|| {
                        let s = s?.trim();
                        match s.parse::<i64>() {
                            Ok(i) => epoch_int_micros(i),
                            Err(_) => s
                                .parse::<f64>()
                                .ok()
                                .and_then(epoch_float_micros)
                                .map(|m| m.round() as i64),
                        }
                    })
                })
                .collect())
        }
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => {
            let ts = cast_with_options(
                values,
                &DataType::Timestamp(TimeUnit::Microsecond, None),
                &safe,
            )?;
            let ints = cast_with_options(&ts, &DataType::Int64, &safe)?;
            Ok(ints.as_primitive::<Int64Type>().clone())
        }
        DataType::Float32 | DataType::Float64 => {
            let f = cast_with_options(values, &DataType::Float64, &safe)?;
            let f = f.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
            Ok(f.iter()
                .map(|v| v.and_then(epoch_float_micros).map(|m| m.round() as i64))
                .collect())
        }
        t if t.is_integer() => {
            let i = cast_with_options(values, &DataType::Int64, &safe)?;
            let i = i.as_primitive::<Int64Type>();
            Ok(i.iter().map(|v| v.and_then(epoch_int_micros)).collect())
        }
        other => Err(EngineError::Internal(format!(
            "{other} values cannot be event times"
        ))),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction][Z]` (a space for `T` too), read as UTC
/// microseconds; `None` for anything else, including valid forms with a
/// UTC offset, which the general parser reads.
fn parse_iso8601_utc(s: &[u8]) -> Option<i64> {
    fn num(s: &[u8]) -> Option<i64> {
        s.iter().try_fold(0i64, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
        })
    }
    if s.len() < 19
        || s[4] != b'-'
        || s[7] != b'-'
        || !(s[10] == b'T' || s[10] == b' ')
        || s[13] != b':'
        || s[16] != b':'
    {
        return None;
    }
    let (y, m, d) = (num(&s[0..4])?, num(&s[5..7])?, num(&s[8..10])?);
    let (hh, mm, ss) = (num(&s[11..13])?, num(&s[14..16])?, num(&s[17..19])?);
    let mut rest = &s[19..];
    let mut micros = 0;
    if let Some(frac) = rest.strip_prefix(b".") {
        let digits = frac.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        let value = num(&frac[..digits])?;
        micros = if digits <= 6 {
            value * 10i64.pow(6 - digits as u32)
        } else {
            value / 10i64.pow(digits as u32 - 6)
        };
        rest = &frac[digits..];
    }
    if !(rest.is_empty() || rest == b"Z" || rest == b"z") {
        return None;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m)
        || d < 1
        || d > days_in_month[(m - 1) as usize]
        || hh > 23
        || mm > 59
        || ss > 59
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000) + micros)
}

fn epoch_int_micros(v: i64) -> Option<i64> {
    let a = v.unsigned_abs();
    if a < 100_000_000_000 {
        v.checked_mul(1_000_000)
    } else if a < 100_000_000_000_000 {
        v.checked_mul(1_000)
    } else if a < 100_000_000_000_000_000 {
        Some(v)
    } else {
        Some(v / 1_000)
    }
}

fn epoch_float_micros(v: f64) -> Option<f64> {
    if !v.is_finite() {
        return None;
    }
    let a = v.abs();
    let micros = if a < 1e11 {
        v * 1e6
    } else if a < 1e14 {
        v * 1e3
    } else if a < 1e17 {
        v
    } else {
        v / 1e3
    };
    (micros.abs() < 9.2e18).then_some(micros)
}

impl Operator for TimestampOperator {
    fn on_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> Result<(), EngineError> {
        let n = batch.num_rows();
        self.stats.events_in.fetch_add(n as u64, Ordering::Relaxed);
        let arrivals: Option<Vec<Option<i64>>> = match self.arrival {
            Some(i) => Some(to_event_micros(batch.column(i))?.iter().collect()),
            None => None,
        };
        let times: Vec<Option<i64>> = match (&self.by, &arrivals) {
            (Some(by), _) => {
                let values = by.evaluate(&batch)?.into_array(n)?;
                to_event_micros(&values)?.iter().collect()
            }
            (None, Some(arrivals)) => {
                let now = chrono::Utc::now().timestamp_micros();
                arrivals.iter().map(|a| Some(a.unwrap_or(now))).collect()
            }
            (None, None) => {
                let now = chrono::Utc::now().timestamp_micros();
                vec![Some(now); n]
            }
        };
        let late_arrival = micros_of(self.policy.late_arrival);
        let ids = match &self.substreams {
            Some(s) => Some(s.ids(&batch)?),
            None => None,
        };
        let partitions: Option<UInt64Array> = match self.partition {
            Some(i) => Some(
                batch
                    .column(i)
                    .as_any()
                    .downcast_ref::<UInt64Array>()
                    .ok_or_else(|| {
                        EngineError::Internal("the partition column is not UInt64".into())
                    })?
                    .clone(),
            ),
            None => None,
        };
        let emitted = self.emitted;
        let out_of_order = micros_of(self.policy.out_of_order);
        let late_policy = self.policy.late_policy;
        let mut keep = Vec::with_capacity(n);
        let mut event_times = Vec::with_capacity(n);
        let mut kept_ids = Vec::new();
        // Substreams whose clock moved, in the order first seen.
        let (mut touched, mut moved) = (Vec::new(), HashSet::new());
        let (mut adjusted, mut dropped) = (0u64, 0u64);
        // The wall clock, read once a batch, for events without an arrival.
        let mut now = None;
        for (row, t) in times.into_iter().enumerate() {
            let Some(mut t) = t else {
                let shown = self.shown(&batch, row);
                let reason = if shown.is_empty() {
                    "the TIMESTAMP BY value is missing (NULL)".to_string()
                } else {
                    format!("the TIMESTAMP BY value `{shown}` is not a time")
                };
                out.dead_letters.push(self.dead_letter(&batch, row, reason));
                keep.push(false);
                continue;
            };
            if self.by.is_some() {
                let arrival = arrivals.as_ref().and_then(|a| a[row]);
                let refused = insane_time(t, arrival, self.policy.max_future, || {
                    *now.get_or_insert_with(|| chrono::Utc::now().timestamp_micros())
                });
                if let Some(reason) = refused {
                    let reason = format!(
                        "the TIMESTAMP BY value `{}` {reason}",
                        self.shown(&batch, row)
                    );
                    out.dead_letters.push(self.dead_letter(&batch, row, reason));
                    keep.push(false);
                    continue;
                }
            }
            let max_seen = match (&mut self.substreams, &ids, &partitions) {
                (Some(s), Some(ids), _) => s.max_seen.entry(ids[row]).or_insert(i64::MIN),
                (None, _, Some(p)) => self.partitions.entry(p.value(row)).or_insert(i64::MIN),
                _ => &mut self.max_seen,
            };
            // Late: behind the watermark (its clock's, and the one already
            // sent), or more than the late-arrival tolerance before its own
            // arrival.
            let watermark = watermark_of(*max_seen, out_of_order).max(emitted);
            let arrival_floor = arrivals
                .as_ref()
                .and_then(|a| a[row])
                .map_or(i64::MIN, |a| a.saturating_sub(late_arrival));
            let bound = watermark.max(arrival_floor);
            if t < bound {
                match late_policy {
                    LatePolicy::Adjust => {
                        adjusted += 1;
                        t = bound;
                    }
                    LatePolicy::Drop => {
                        dropped += 1;
                        keep.push(false);
                        continue;
                    }
                }
            }
            if t > *max_seen {
                *max_seen = t;
                if let Some(ids) = &ids
                    && moved.insert(ids[row])
                {
                    touched.push(ids[row]);
                }
            }
            keep.push(true);
            event_times.push(t);
            if let Some(ids) = &ids {
                kept_ids.push(ids[row]);
            }
        }
        if let Some(&latest) = event_times.iter().max() {
            self.max_seen = self.max_seen.max(latest);
            self.stats
                .max_event_time
                .fetch_max(latest, Ordering::Relaxed);
        }
        self.stats
            .late_adjusted
            .fetch_add(adjusted, Ordering::Relaxed);
        self.stats
            .late_dropped
            .fetch_add(dropped, Ordering::Relaxed);
        self.stats
            .dead_lettered
            .fetch_add(out.dead_letters.len() as u64, Ordering::Relaxed);

        let mask = (event_times.len() < n).then(|| BooleanArray::from(keep));
        let mut columns = Vec::with_capacity(self.out_schema.fields().len());
        for (i, c) in batch.columns().iter().enumerate() {
            let name = batch.schema_ref().field(i).name().clone();
            if [POSITION, RAW, EVENT_TIME, ARRIVAL_TIME, PARTITION].contains(&name.as_str()) {
                continue;
            }
            columns.push(match &mask {
                Some(m) => filter(c.as_ref(), m)?,
                None => c.clone(),
            });
        }
        let times = TimestampMicrosecondArray::from(event_times).with_timezone("UTC");
        columns.push(Arc::new(times));
        if ids.is_some() {
            columns.push(Arc::new(UInt64Array::from(kept_ids)));
        }
        out.batch(RecordBatch::try_new(self.out_schema.clone(), columns)?);
        match &self.substreams {
            None => self.emit_watermark(out),
            Some(s) if !touched.is_empty() => {
                let wms: Vec<(u64, EventTime)> = touched
                    .into_iter()
                    .map(|id| {
                        let max = s.max_seen.get(&id).copied().unwrap_or(i64::MIN);
                        (id, EventTime(self.watermark(max)))
                    })
                    .collect();
                if let Some(newest) = wms.iter().map(|(_, wm)| wm.0).max() {
                    self.stats.watermark.fetch_max(newest, Ordering::Relaxed);
                }
                out.messages.push(Message::Substreams(Arc::new(wms)));
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Moves every clock to at least the arrival clock minus the late-arrival
    /// tolerance: later events arrive after `now`, so any of them timed
    /// before that bound is late (ASA's watermark for an idle input).
    fn on_arrival(&mut self, now: EventTime, out: &mut Output) -> Result<(), EngineError> {
        if self.arrival.is_none() {
            return Ok(());
        }
        let floor = now.0.saturating_sub(micros_of(self.policy.late_arrival));
        // The largest event time whose watermark is `floor`.
        let target = floor.saturating_add(micros_of(self.policy.out_of_order));
        match &mut self.substreams {
            None => {
                for max in self.partitions.values_mut() {
                    *max = (*max).max(target);
                }
                self.max_seen = self.max_seen.max(target);
                self.emit_watermark(out);
            }
            Some(s) => {
                let mut wms = Vec::new();
                for (&id, max) in s.max_seen.iter_mut() {
                    if *max < target {
                        *max = target;
                        wms.push((id, EventTime(floor)));
                    }
                }
                if !wms.is_empty() {
                    wms.sort_unstable();
                    self.stats.watermark.fetch_max(floor, Ordering::Relaxed);
                    out.messages.push(Message::Substreams(Arc::new(wms)));
                }
            }
        }
        Ok(())
    }

    /// The partitions of a partitioned source changed (a Kafka rebalance):
    /// a new one holds the watermark back until its first event (or the
    /// arrival clock) moves it; one taken away no longer holds it back.
    fn on_partitions(&mut self, partitions: &[u64], out: &mut Output) -> Result<(), EngineError> {
        if self.partition.is_none() {
            return Ok(());
        }
        self.partitions.retain(|p, _| partitions.contains(p));
        for &p in partitions {
            self.partitions.entry(p).or_insert(i64::MIN);
        }
        self.emit_watermark(out);
        Ok(())
    }

    /// The largest event time, then each substream's (id, largest event time).
    fn snapshot(&mut self) -> Result<Vec<u8>, EngineError> {
        let mut bytes = self.max_seen.to_le_bytes().to_vec();
        bytes.extend(self.emitted.to_le_bytes());
        bytes.extend((self.partitions.len() as u64).to_le_bytes());
        for (p, max) in &self.partitions {
            bytes.extend(p.to_le_bytes());
            bytes.extend(max.to_le_bytes());
        }
        if let Some(s) = &self.substreams {
            let mut clocks: Vec<(&u64, &i64)> = s.max_seen.iter().collect();
            clocks.sort_unstable();
            for (id, max) in clocks {
                bytes.extend(id.to_le_bytes());
                bytes.extend(max.to_le_bytes());
            }
        }
        Ok(bytes)
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), EngineError> {
        let bad = || EngineError::State("a TIMESTAMP BY state does not fit this job".into());
        let word =
            |bytes: &[u8]| -> Result<[u8; 8], EngineError> { bytes.try_into().map_err(|_| bad()) };
        let (head, rest) = state.split_at_checked(24).ok_or_else(bad)?;
        self.max_seen = i64::from_le_bytes(word(&head[..8])?);
        self.emitted = i64::from_le_bytes(word(&head[8..16])?);
        let count = usize::try_from(u64::from_le_bytes(word(&head[16..])?)).map_err(|_| bad())?;
        let (parts, clocks) = rest
            .split_at_checked(count.checked_mul(16).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        self.partitions = parts
            .chunks_exact(16)
            .map(|c| {
                Ok((
                    u64::from_le_bytes(word(&c[..8])?),
                    i64::from_le_bytes(word(&c[8..])?),
                ))
            })
            .collect::<Result<_, EngineError>>()?;
        match &mut self.substreams {
            None if clocks.is_empty() => {}
            Some(s) if clocks.len() % 16 == 0 => {
                s.max_seen = clocks
                    .chunks_exact(16)
                    .map(|c| {
                        let (id, max) = c.split_at(8);
                        Ok((
                            u64::from_le_bytes(id.try_into().map_err(|_| bad())?),
                            i64::from_le_bytes(max.try_into().map_err(|_| bad())?),
                        ))
                    })
                    .collect::<Result<_, EngineError>>()?;
            }
            _ => return Err(bad()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;

    /// Rows (time, arrival) through a TIMESTAMP BY with no out-of-order
    /// tolerance and a 60 s late-arrival tolerance: the event times out.
    fn stamp(rows: &[(&str, &str)], policy: LatePolicy) -> (Vec<i64>, Arc<TimestampStats>) {
        let (times, stats, _) = stamp_with(rows, policy, None);
        (times, stats)
    }

    /// [`stamp`] with a `max_future`; also the dead letters.
    fn stamp_with(
        rows: &[(&str, &str)],
        policy: LatePolicy,
        max_future: Option<std::time::Duration>,
    ) -> (Vec<i64>, Arc<TimestampStats>, Vec<DeadLetter>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Utf8, false),
            Field::new("arrived", DataType::Utf8, false),
            Field::new(POSITION, DataType::UInt64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(UInt64Array::from_iter_values(1..=rows.len() as u64)),
            ],
        )
        .unwrap();
        let by: Arc<dyn PhysicalExpr> =
            Arc::new(datafusion::physical_expr::expressions::Column::new("ts", 0));
        let policy = TimePolicy {
            out_of_order: std::time::Duration::ZERO,
            late_arrival: std::time::Duration::from_secs(60),
            late_policy: policy,
            max_future,
        };
        let stats = Arc::new(TimestampStats::default());
        let mut op = TimestampOperator::new(
            "in".into(),
            Some(by),
            Vec::new(),
            Some(1),
            policy,
            &schema,
            stats.clone(),
        )
        .unwrap();
        let mut out = Output::default();
        op.on_batch(0, batch, &mut out).unwrap();
        let times = out
            .messages
            .iter()
            .filter_map(|m| match m {
                Message::Batch(b) => Some(b.clone()),
                _ => None,
            })
            .flat_map(|b| {
                let i = b.schema().index_of(EVENT_TIME).unwrap();
                b.column(i)
                    .as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>()
                    .values()
                    .to_vec()
            })
            .collect();
        (times, stats, out.dead_letters)
    }

    #[test]
    fn a_time_too_far_ahead_is_refused_and_does_not_move_the_watermark() {
        let day = std::time::Duration::from_secs(86_400);
        let (times, stats, letters) = stamp_with(
            &[
                ("2026-01-01T10:00:00Z", "2026-01-01T10:00:01Z"),
                ("9999-12-31T23:59:59Z", "2026-01-01T10:00:02Z"),
                ("2026-01-02T11:00:00Z", "2026-01-01T10:00:03Z"),
                ("2026-01-01T10:00:04Z", "2026-01-01T10:00:04Z"),
                ("0001-01-01T00:00:00Z", "2026-01-01T10:00:05Z"),
            ],
            LatePolicy::Drop,
            Some(day),
        );
        let base = parse_iso8601_utc(b"2026-01-01T10:00:00Z").unwrap();
        // The year-1 event is late (dropped by the policy, and counted).
        assert_eq!(times, vec![base, base + 4_000_000]);
        assert_eq!(stats.late_dropped.load(Ordering::Relaxed), 1);
        assert_eq!(stats.watermark(), Some(EventTime(base + 4_000_000)));
        let refused: Vec<(&str, &str)> = letters
            .iter()
            .map(|l| (l.position.as_str(), l.reason.as_str()))
            .collect();
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert_eq!(refused[0].0, "line 2");
        assert!(
            refused[0].1.starts_with(
                "the TIMESTAMP BY value `9999-12-31T23:59:59Z` is more than 1d ahead of its arrival time (2026-01-01T10:00:02.000Z)"
            ),
            "{refused:?}"
        );
        assert_eq!(refused[1].0, "line 3");
    }

    #[test]
    fn times_outside_four_digit_years_are_refused_whatever_the_limit() {
        let never = || unreachable!("no clock is needed");
        assert!(insane_time(FIRST_TIME, None, None, never).is_none());
        assert!(insane_time(LAST_TIME, None, None, never).is_none());
        assert!(insane_time(FIRST_TIME - 1, None, None, never).is_some());
        assert!(insane_time(LAST_TIME + 1, None, None, never).is_some());
        let t = chrono::DateTime::from_timestamp_micros(LAST_TIME).unwrap();
        assert_eq!(
            t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
            "9999-12-31T23:59:59.999999"
        );
        let t = chrono::DateTime::from_timestamp_micros(FIRST_TIME).unwrap();
        assert_eq!(
            t.format("%Y-%m-%dT%H:%M:%S").to_string(),
            "0000-01-01T00:00:00"
        );
        // Without an arrival, the wall clock.
        let hour = Some(std::time::Duration::from_secs(3600));
        assert!(insane_time(7_200_000_001, None, hour, || 3_600_000_000).is_some());
        assert!(insane_time(7_200_000_000, None, hour, || 3_600_000_000).is_none());
    }

    #[test]
    fn an_event_late_twice_is_adjusted_once() {
        let base = parse_iso8601_utc(b"2026-01-01T10:00:00Z").unwrap();
        let s = 1_000_000;
        // The second event arrives 3 minutes after it was taken (late
        // arrival: to 10:02:00), and 10:02:00 is behind the watermark
        // (10:05:00): adjusted again, to the watermark, counted once.
        let (times, stats) = stamp(
            &[
                ("2026-01-01T10:05:00Z", "2026-01-01T10:05:00Z"),
                ("2026-01-01T10:00:00Z", "2026-01-01T10:03:00Z"),
                ("2026-01-01T10:06:00Z", "2026-01-01T10:06:30Z"),
            ],
            LatePolicy::Adjust,
        );
        assert_eq!(times, vec![base + 300 * s, base + 300 * s, base + 360 * s]);
        assert_eq!(stats.late_adjusted.load(Ordering::Relaxed), 1);
        let (times, stats) = stamp(
            &[
                ("2026-01-01T10:00:00Z", "2026-01-01T10:03:00Z"),
                ("2026-01-01T10:06:00Z", "2026-01-01T10:06:30Z"),
            ],
            LatePolicy::Drop,
        );
        assert_eq!(times, vec![base + 360 * s]);
        assert_eq!(stats.late_dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn times_are_read_from_text_numbers_and_timestamps() {
        let text: ArrayRef = Arc::new(StringArray::from(vec![
            Some("2026-01-01T00:00:01Z"),
            Some("1767225602"),
            Some("1767225603000"),
            Some("2026-01-01T01:00:00+01:00"),
            Some("soon"),
            None,
        ]));
        let t = to_event_micros(&text).unwrap();
        let base = 1_767_225_600_000_000i64;
        assert_eq!(t.value(0), base + 1_000_000);
        assert_eq!(t.value(1), base + 2_000_000);
        assert_eq!(t.value(2), base + 3_000_000);
        assert_eq!(t.value(3), base);
        assert!(t.is_null(4) && t.is_null(5));
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![
            1_767_225_601,
            1_767_225_601_000,
            1_767_225_601_000_000,
        ]));
        let t = to_event_micros(&ints).unwrap();
        assert!(t.iter().all(|v| v == Some(base + 1_000_000)));
    }

    proptest::proptest! {
        #[test]
        fn the_fast_parser_agrees_with_chrono(us in -50_000_000_000_000_000i64..250_000_000_000_000_000i64) {
            let t = chrono::DateTime::from_timestamp_micros(us).unwrap();
            for format in ["%Y-%m-%dT%H:%M:%S%.6fZ", "%Y-%m-%d %H:%M:%S%.6f"] {
                let text = t.format(format).to_string();
                proptest::prop_assert_eq!(parse_iso8601_utc(text.as_bytes()), Some(us), "{}", text);
            }
        }
    }
}
