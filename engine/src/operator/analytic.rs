//! Analytic functions: `LAG(x [, k [, default]])`, `LAST(x [, default])`
//! and `ISFIRST(unit, n)`, each `OVER ([PARTITION BY ...] [LIMIT DURATION(unit, n)]
//! [WHEN condition])`. They look back over the earlier events of the step,
//! so events are taken in event-time order: a row waits until the
//! watermark has reached its time (arrival order among equal times), then
//! each function computes its value for it and remembers what later events
//! need. Each function adds a column; the SELECT's WHERE and select list
//! read it.
//!
//! - LAG: the value of the k-th previous event (k = 1 by default) of the
//!   partition that satisfies WHEN, if it lies within LIMIT DURATION of
//!   this event (time in `(t - duration, t]`); else the default (NULL).
//! - LAST: the same with the current event included (LAG with k = 0).
//! - ISFIRST(unit, n): 1 for the first event satisfying WHEN in each
//!   tumbling window of n units of the partition, else 0.
//!
//! State is bounded: a partition keeps at most k earlier values, and is
//! forgotten once the watermark is past its LIMIT DURATION (ISFIRST: past
//! its window).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Int64Array, UInt32Array,
};
use datafusion::arrow::compute::{cast, concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;

use super::{Operator, Output, event_times};
use crate::error::EngineError;
use crate::time::EventTime;
use crate::window::Grid;

/// What an analytic function computes.
#[derive(Debug, Clone)]
pub enum AnalyticKind {
    /// LAG (offset >= 1) and LAST (offset 0).
    Lag {
        value: Arc<dyn PhysicalExpr>,
        offset: usize,
        default: Option<Arc<dyn PhysicalExpr>>,
    },
    /// ISFIRST over tumbling windows of this many microseconds.
    IsFirst { size: i64 },
    /// An aggregate over the events within LIMIT DURATION (the current one
    /// included), e.g. `AVG(t) OVER (PARTITION BY d LIMIT DURATION(minute, 5))`.
    Aggregate {
        aggregate: Arc<datafusion::physical_expr::aggregate::AggregateFunctionExpr>,
    },
    /// `AnomalyDetection_SpikeAndDip` / `AnomalyDetection_ChangePoint`: a
    /// detector per partition scores each value; the result is a record
    /// `{Score, IsAnomaly}`.
    Anomaly {
        value: Arc<dyn PhysicalExpr>,
        detector: DetectorSpec,
    },
}

/// How to make a partition's anomaly detector.
#[derive(Debug, Clone, Copy)]
pub enum DetectorSpec {
    SpikeAndDip {
        confidence: f64,
        history: usize,
        mode: crate::anomaly::SpikeMode,
    },
    ChangePoint {
        confidence: f64,
        history: usize,
    },
}

impl DetectorSpec {
    fn make(&self) -> Result<Box<dyn crate::anomaly::Detector>, String> {
        Ok(match *self {
            DetectorSpec::SpikeAndDip {
                confidence,
                history,
                mode,
            } => Box::new(crate::anomaly::SpikeAndDip::new(confidence, history, mode)?),
            DetectorSpec::ChangePoint {
                confidence,
                history,
            } => Box::new(crate::anomaly::ChangePoint::new(confidence, history)?),
        })
    }
}

/// The record an anomaly detector gives: `{Score, IsAnomaly}`.
fn anomaly_fields() -> datafusion::arrow::datatypes::Fields {
    datafusion::arrow::datatypes::Fields::from(vec![
        Field::new("Score", DataType::Float64, true),
        Field::new("IsAnomaly", DataType::Int64, true),
    ])
}

/// One compiled analytic function.
#[derive(Debug, Clone)]
pub struct AnalyticSpec {
    pub kind: AnalyticKind,
    pub partition: Vec<Arc<dyn PhysicalExpr>>,
    /// LIMIT DURATION in microseconds (`i64::MAX`: none).
    pub duration: i64,
    pub when: Option<Arc<dyn PhysicalExpr>>,
    /// The name of the column it adds.
    pub column: String,
}

/// What a partition remembers.
#[derive(Debug)]
enum Memory {
    /// The latest values of events that satisfied WHEN: (time, value), oldest first.
    Values(VecDeque<(i64, ScalarValue)>),
    /// The end of the window of the last event counted first.
    FirstIn(i64),
    /// The events within LIMIT DURATION that satisfied WHEN (their
    /// aggregate inputs, one row each) and their running aggregate.
    Aggregate {
        events: VecDeque<(i64, Vec<ArrayRef>)>,
        accumulator: Box<dyn datafusion::logical_expr::Accumulator>,
    },
    /// An anomaly detector and the time of the last value it saw.
    Detector(Box<dyn crate::anomaly::Detector>, i64),
}

impl Memory {
    /// An empty rolling aggregate.
    fn aggregate(
        aggregate: &datafusion::physical_expr::aggregate::AggregateFunctionExpr,
    ) -> Result<Memory, EngineError> {
        Ok(Memory::Aggregate {
            events: VecDeque::new(),
            accumulator: aggregate.create_sliding_accumulator()?,
        })
    }
}

/// The memory of partition `key`, made by `make` when the partition is new.
fn partition<'a>(
    partitions: &'a mut HashMap<Box<[u8]>, Memory>,
    key: &[u8],
    make: impl FnOnce() -> Result<Memory, EngineError>,
) -> Result<&'a mut Memory, EngineError> {
    if !partitions.contains_key(key) {
        partitions.insert(key.into(), make()?);
    }
    partitions
        .get_mut(key)
        .ok_or_else(|| EngineError::Internal("a partition vanished".into()))
}

#[derive(Debug)]
struct Function {
    spec: AnalyticSpec,
    converter: Option<RowConverter>,
    /// The type of the column it adds.
    data_type: DataType,
    partitions: HashMap<Box<[u8]>, Memory>,
}

pub struct AnalyticOperator {
    functions: Vec<Function>,
    input: SchemaRef,
    schema: SchemaRef,
    /// Rows waiting for the watermark, in arrival order.
    pending: Vec<RecordBatch>,
    watermark: i64,
}

impl std::fmt::Debug for AnalyticOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalyticOperator")
            .field("functions", &self.functions.len())
            .field("pending_batches", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl AnalyticOperator {
    pub fn new(specs: Vec<AnalyticSpec>, input: &SchemaRef) -> Result<Self, EngineError> {
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut functions = Vec::with_capacity(specs.len());
        for spec in specs {
            let data_type = match &spec.kind {
                AnalyticKind::Lag { value, .. } => value.data_type(input)?,
                AnalyticKind::IsFirst { .. } => DataType::Int64,
                AnalyticKind::Aggregate { aggregate } => aggregate.field().data_type().clone(),
                AnalyticKind::Anomaly { .. } => DataType::Struct(anomaly_fields()),
            };
            fields.push(Field::new(&spec.column, data_type.clone(), true));
            let converter = if spec.partition.is_empty() {
                None
            } else {
                let sort = spec
                    .partition
                    .iter()
                    .map(|p| Ok(SortField::new(p.data_type(input)?)))
                    .collect::<Result<Vec<_>, EngineError>>()?;
                Some(RowConverter::new(sort)?)
            };
            functions.push(Function {
                spec,
                converter,
                data_type,
                partitions: HashMap::new(),
            });
        }
        Ok(AnalyticOperator {
            functions,
            input: input.clone(),
            schema: Arc::new(Schema::new(fields)),
            pending: Vec::new(),
            watermark: i64::MIN,
        })
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Computes the rows the watermark has reached (all of them at the
    /// end), in event-time order.
    fn flush(&mut self, all: bool, out: &mut Output) -> Result<(), EngineError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = concat_batches(&self.input, &self.pending)?;
        self.pending.clear();
        let times = event_times(&batch)?;
        let mut ready: Vec<u32> = (0..batch.num_rows() as u32)
            .filter(|&r| all || times[r as usize] <= self.watermark)
            .collect();
        // Stable: arrival order among equal times.
        ready.sort_by_key(|&r| times[r as usize]);
        if ready.len() < batch.num_rows() {
            let waiting: Vec<u32> = (0..batch.num_rows() as u32)
                .filter(|&r| !(all || times[r as usize] <= self.watermark))
                .collect();
            self.pending
                .push(take_record_batch(&batch, &UInt32Array::from(waiting))?);
        }
        if ready.is_empty() {
            return Ok(());
        }
        let ready = take_record_batch(&batch, &UInt32Array::from(ready))?;
        let times = event_times(&ready)?;
        let mut columns = ready.columns().to_vec();
        for f in &mut self.functions {
            columns.push(f.compute(&ready, &times)?);
        }
        out.batch(RecordBatch::try_new(self.schema.clone(), columns)?);
        Ok(())
    }

    /// Forgets the partitions no later event can look back to.
    fn evict(&mut self) {
        let wm = self.watermark;
        for f in &mut self.functions {
            let duration = f.spec.duration;
            f.partitions.retain(|_, memory| match memory {
                Memory::Values(values) => values
                    .back()
                    .is_some_and(|(t, _)| *t > wm.saturating_sub(duration)),
                Memory::FirstIn(end) => *end >= wm,
                Memory::Aggregate { events, .. } => events
                    .back()
                    .is_some_and(|(t, _)| *t > wm.saturating_sub(duration)),
                Memory::Detector(_, last) => *last > wm.saturating_sub(duration),
            });
        }
    }
}

impl Function {
    /// The function's value for each row of `batch` (in time order),
    /// remembering what later rows need.
    fn compute(&mut self, batch: &RecordBatch, times: &[i64]) -> Result<ArrayRef, EngineError> {
        let n = batch.num_rows();
        let keys: Vec<Box<[u8]>> = match &self.converter {
            Some(c) => {
                let columns = self
                    .spec
                    .partition
                    .iter()
                    .map(|p| p.evaluate(batch).and_then(|v| v.into_array(n)))
                    .collect::<Result<Vec<_>, _>>()?;
                let rows = c.convert_columns(&columns)?;
                (0..n).map(|i| rows.row(i).as_ref().into()).collect()
            }
            None => vec![Box::new([]) as Box<[u8]>; n],
        };
        let when: Option<BooleanArray> = match &self.spec.when {
            Some(w) => Some(w.evaluate(batch)?.into_array(n)?.as_boolean().clone()),
            None => None,
        };
        let counts = |row: usize| {
            when.as_ref()
                .is_none_or(|w| w.is_valid(row) && w.value(row))
        };
        let duration = self.spec.duration;
        match &self.spec.kind {
            AnalyticKind::IsFirst { size } => {
                let grid = Grid {
                    size: *size,
                    hop: *size,
                    offset: 0,
                };
                let mut out = Vec::with_capacity(n);
                for row in 0..n {
                    if !counts(row) {
                        out.push(0i64);
                        continue;
                    }
                    let end = grid.first_end(times[row]);
                    let memory = partition(&mut self.partitions, &keys[row], || {
                        Ok(Memory::FirstIn(i64::MIN))
                    })?;
                    let first = !matches!(memory, Memory::FirstIn(e) if *e == end);
                    *memory = Memory::FirstIn(end);
                    out.push(i64::from(first));
                }
                Ok(Arc::new(Int64Array::from(out)))
            }
            AnalyticKind::Anomaly { value, detector } => {
                let values = value.evaluate(batch)?.into_array(n)?;
                let values = cast(&values, &DataType::Float64)?;
                let values = values.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
                let (mut scores, mut flags) = (Vec::with_capacity(n), Vec::with_capacity(n));
                for row in 0..n {
                    let t = times[row];
                    let memory = partition(&mut self.partitions, &keys[row], || {
                        Ok(Memory::Detector(
                            detector.make().map_err(EngineError::Internal)?,
                            t,
                        ))
                    })?;
                    let Memory::Detector(d, last) = memory else {
                        return Err(EngineError::Internal("an analytic state mix-up".into()));
                    };
                    let x = (counts(row) && values.is_valid(row)).then(|| values.value(row));
                    let found = d.observe(t, x, duration);
                    if x.is_some() {
                        *last = t;
                    }
                    scores.push(found.map(|a| a.score));
                    flags.push(found.map(|a| i64::from(a.is_anomaly)));
                }
                let nulls = datafusion::arrow::buffer::NullBuffer::from(
                    scores.iter().map(Option::is_some).collect::<Vec<_>>(),
                );
                Ok(Arc::new(datafusion::arrow::array::StructArray::try_new(
                    anomaly_fields(),
                    vec![
                        Arc::new(datafusion::arrow::array::Float64Array::from(scores)),
                        Arc::new(Int64Array::from(flags)),
                    ],
                    Some(nulls),
                )?))
            }
            AnalyticKind::Aggregate { aggregate } => {
                let inputs = aggregate
                    .expressions()
                    .iter()
                    .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut out = Vec::with_capacity(n);
                for row in 0..n {
                    let t = times[row];
                    let memory = partition(&mut self.partitions, &keys[row], || {
                        Memory::aggregate(aggregate)
                    })?;
                    let Memory::Aggregate {
                        events,
                        accumulator,
                    } = memory
                    else {
                        return Err(EngineError::Internal("an analytic state mix-up".into()));
                    };
                    while let Some((at, _)) = events.front()
                        && *at <= t.saturating_sub(duration)
                    {
                        if let Some((_, old)) = events.pop_front() {
                            accumulator.retract_batch(&old)?;
                        }
                    }
                    if counts(row) {
                        let one: Vec<ArrayRef> = inputs.iter().map(|a| a.slice(row, 1)).collect();
                        accumulator.update_batch(&one)?;
                        events.push_back((t, one));
                    }
                    out.push(accumulator.evaluate()?);
                }
                let values = ScalarValue::iter_to_array(out)?;
                Ok(if values.data_type() == &self.data_type {
                    values
                } else {
                    cast(&values, &self.data_type)?
                })
            }
            AnalyticKind::Lag {
                value,
                offset,
                default,
            } => {
                let values = value.evaluate(batch)?.into_array(n)?;
                let defaults = match default {
                    Some(d) => {
                        let d = d.evaluate(batch)?.into_array(n)?;
                        Some(if d.data_type() == &self.data_type {
                            d
                        } else {
                            cast(&d, &self.data_type)?
                        })
                    }
                    None => None,
                };
                let null = ScalarValue::try_from(&self.data_type)?;
                let keep = (*offset).max(1);
                let mut out = Vec::with_capacity(n);
                for row in 0..n {
                    let t = times[row];
                    let memory = partition(&mut self.partitions, &keys[row], || {
                        Ok(Memory::Values(VecDeque::new()))
                    })?;
                    let Memory::Values(history) = memory else {
                        return Err(EngineError::Internal("an analytic state mix-up".into()));
                    };
                    // Only events within LIMIT DURATION: (t - duration, t].
                    while history
                        .front()
                        .is_some_and(|(at, _)| *at <= t.saturating_sub(duration))
                    {
                        history.pop_front();
                    }
                    let current = counts(row);
                    if current && *offset == 0 {
                        history.push_back((t, ScalarValue::try_from_array(&values, row)?));
                    }
                    let back = if *offset == 0 { 1 } else { *offset };
                    let found = history
                        .len()
                        .checked_sub(back)
                        .and_then(|i| history.get(i))
                        .map(|(_, v)| v.clone());
                    if current && *offset > 0 {
                        history.push_back((t, ScalarValue::try_from_array(&values, row)?));
                    }
                    while history.len() > keep {
                        history.pop_front();
                    }
                    out.push(match (found, &defaults) {
                        (Some(v), _) => v,
                        (None, Some(d)) => ScalarValue::try_from_array(d, row)?,
                        (None, None) => null.clone(),
                    });
                }
                Ok(ScalarValue::iter_to_array(out)?)
            }
        }
    }
}

impl Operator for AnalyticOperator {
    /// Waiting rows are after the watermark; a partition's memory holds its
    /// oldest remembered event. A detector's history is counted in events,
    /// not time, so it holds everything it has seen.
    fn held_since(&self) -> Option<EventTime> {
        let waiting = (!self.pending.is_empty()).then(|| self.watermark.saturating_add(1));
        let remembered = self.functions.iter().flat_map(|f| {
            f.partitions
                .values()
                .filter_map(move |m| match (m, &f.spec.kind) {
                    (Memory::Values(history), _) => history.front().map(|&(t, _)| t),
                    (Memory::FirstIn(end), AnalyticKind::IsFirst { size }) => {
                        Some(end.saturating_sub(*size).saturating_add(1))
                    }
                    (Memory::FirstIn(end), _) => Some(*end),
                    (Memory::Aggregate { events, .. }, _) => events.front().map(|&(t, _)| t),
                    (Memory::Detector(..), _) => Some(i64::MIN),
                })
        });
        waiting.into_iter().chain(remembered).min().map(EventTime)
    }

    fn on_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        _out: &mut Output,
    ) -> Result<(), EngineError> {
        if batch.num_rows() > 0 {
            self.pending.push(batch);
        }
        Ok(())
    }

    fn on_watermark(&mut self, wm: EventTime, out: &mut Output) -> Result<(), EngineError> {
        self.watermark = self.watermark.max(wm.0);
        self.flush(wm == EventTime::MAX, out)?;
        self.evict();
        out.watermark(wm);
        Ok(())
    }

    /// Sections: the watermark; the waiting rows; then per function its
    /// partitions (key, time, value rows; ISFIRST: key, window end;
    /// aggregates: key, time, the event's aggregate inputs).
    fn snapshot(&mut self) -> Result<Vec<u8>, EngineError> {
        let mut parts = vec![self.watermark.to_le_bytes().to_vec()];
        let pending: Vec<Vec<ArrayRef>> =
            self.pending.iter().map(|b| b.columns().to_vec()).collect();
        parts.push(crate::window::ipc::write(&pending)?);
        for f in &self.functions {
            let mut entries: Vec<(&Box<[u8]>, &Memory)> = f.partitions.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let (mut keys, mut times, mut values) = (Vec::new(), Vec::new(), Vec::new());
            let mut inputs: Vec<Vec<ArrayRef>> = Vec::new();
            let mut states: Vec<Vec<u8>> = Vec::new();
            for (key, memory) in entries {
                match memory {
                    Memory::Values(history) => {
                        for (t, v) in history {
                            keys.push(key.as_ref());
                            times.push(*t);
                            values.push(v.clone());
                        }
                    }
                    Memory::FirstIn(end) => {
                        keys.push(key.as_ref());
                        times.push(*end);
                    }
                    Memory::Detector(d, last) => {
                        keys.push(key.as_ref());
                        times.push(*last);
                        states.push(d.snapshot());
                    }
                    Memory::Aggregate { events, .. } => {
                        for (t, one) in events {
                            keys.push(key.as_ref());
                            times.push(*t);
                            inputs.resize(one.len(), Vec::new());
                            for (column, a) in inputs.iter_mut().zip(one) {
                                column.push(a.clone());
                            }
                        }
                    }
                }
            }
            let mut columns: Vec<ArrayRef> = vec![
                Arc::new(BinaryArray::from_iter_values(keys)),
                Arc::new(Int64Array::from(times)),
            ];
            if !values.is_empty() {
                columns.push(ScalarValue::iter_to_array(values)?);
            }
            for column in inputs {
                let parts: Vec<&dyn Array> = column.iter().map(|a| a.as_ref()).collect();
                columns.push(datafusion::arrow::compute::concat(&parts)?);
            }
            if !states.is_empty() {
                columns.push(Arc::new(BinaryArray::from_iter_values(
                    states.iter().map(Vec::as_slice),
                )));
            }
            parts.push(crate::window::ipc::write(&[columns])?);
        }
        Ok(crate::window::ipc::sections(&parts))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), EngineError> {
        let bad = || EngineError::State("an analytic state does not fit this job".into());
        let parts = crate::window::ipc::split_sections(state)?;
        if parts.len() != 2 + self.functions.len() {
            return Err(bad());
        }
        self.watermark = i64::from_le_bytes(parts[0].try_into().map_err(|_| bad())?);
        self.pending.clear();
        for columns in crate::window::ipc::read(parts[1])? {
            self.pending
                .push(RecordBatch::try_new(self.input.clone(), columns)?);
        }
        for (f, part) in self.functions.iter_mut().zip(&parts[2..]) {
            f.partitions.clear();
            for columns in crate::window::ipc::read(part)? {
                let keys = crate::window::ipc::binary_column(&columns, 0)?;
                let times = crate::window::ipc::column::<Int64Type>(&columns, 1)?;
                for i in 0..keys.len() {
                    let key: Box<[u8]> = keys.value(i).into();
                    match &f.spec.kind {
                        AnalyticKind::IsFirst { .. } => {
                            f.partitions.insert(key, Memory::FirstIn(times.value(i)));
                        }
                        AnalyticKind::Anomaly { detector, .. } => {
                            let states = crate::window::ipc::binary_column(&columns, 2)?;
                            let mut d = detector.make().map_err(EngineError::State)?;
                            d.restore(states.value(i)).map_err(EngineError::State)?;
                            f.partitions
                                .insert(key, Memory::Detector(d, times.value(i)));
                        }
                        AnalyticKind::Aggregate { aggregate } => {
                            let memory = partition(&mut f.partitions, &key, || {
                                Memory::aggregate(aggregate)
                            })?;
                            if let Memory::Aggregate {
                                events,
                                accumulator,
                            } = memory
                            {
                                let one: Vec<ArrayRef> =
                                    columns[2..].iter().map(|c| c.slice(i, 1)).collect();
                                accumulator.update_batch(&one)?;
                                events.push_back((times.value(i), one));
                            }
                        }
                        AnalyticKind::Lag { .. } => {
                            let values = columns.get(2).ok_or_else(bad)?;
                            let v = ScalarValue::try_from_array(values, i)?;
                            let memory = f
                                .partitions
                                .entry(key)
                                .or_insert_with(|| Memory::Values(VecDeque::new()));
                            if let Memory::Values(history) = memory {
                                history.push_back((times.value(i), v));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Compiles the analytic functions of a SELECT over `input` into their
/// operator (one per substream over substreams) and the schema of its rows.
pub fn compile(
    functions: &[crate::plan::AnalyticFunction],
    input: &SchemaRef,
    compiler: &crate::expr::ExprCompiler,
) -> Result<(Box<dyn Operator>, SchemaRef), Vec<iotql_dsl::Diagnostic>> {
    let span = functions
        .first()
        .map_or_else(Default::default, |f| f.call.span);
    let specs = compile_specs(functions, input, compiler)?;
    let op = AnalyticOperator::new(specs.clone(), input).map_err(|e| {
        vec![iotql_dsl::Diagnostic::new(
            "iotql::plan",
            span,
            e.to_string(),
            "here",
        )]
    })?;
    let schema = op.schema();
    if input.index_of(crate::time::SUBSTREAM).is_err() {
        return Ok((Box::new(op), schema));
    }
    let input = input.clone();
    let make: super::substream::Factory = Box::new(move || {
        Ok(Box::new(AnalyticOperator::new(specs.clone(), &input)?) as Box<dyn Operator>)
    });
    let op = super::substream::Substreamed::new(make, &schema);
    let schema = op.schema();
    Ok((Box::new(op), schema))
}

fn compile_specs(
    functions: &[crate::plan::AnalyticFunction],
    input: &SchemaRef,
    compiler: &crate::expr::ExprCompiler,
) -> Result<Vec<AnalyticSpec>, Vec<iotql_dsl::Diagnostic>> {
    use iotql_dsl::ast::{ExprKind, FunctionArgs, Literal};
    let error = |span, message: String| {
        vec![iotql_dsl::Diagnostic::new(
            "iotql::plan",
            span,
            message,
            "here",
        )]
    };
    let mut specs = Vec::with_capacity(functions.len());
    for f in functions {
        let call = &f.call;
        let name = call.qualified_name().to_ascii_uppercase();
        let over = call.over.as_deref();
        let partition = over
            .map(|o| {
                o.partition_by
                    .iter()
                    .map(|p| compiler.compile(p, input))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
            .map_err(|d| vec![d])?
            .unwrap_or_default();
        let duration = match over.and_then(|o| o.limit_duration) {
            Some(d) => d.micros().ok_or_else(|| {
                error(
                    d.span,
                    format!("LIMIT DURATION needs a fixed length, not `{}`", d.unit),
                )
            })?,
            None => i64::MAX,
        };
        let when = match over.and_then(|o| o.when.as_deref()) {
            Some(w) => {
                let p = compiler.compile(w, input).map_err(|d| vec![d])?;
                match p.data_type(input) {
                    Ok(DataType::Boolean | DataType::Null) => Some(p),
                    Ok(t) => return Err(error(w.span, format!("WHEN needs a condition, not {t}"))),
                    Err(e) => return Err(error(w.span, e.to_string())),
                }
            }
            None => None,
        };
        let args: &[iotql_dsl::ast::Expr] = match &call.args {
            FunctionArgs::List { args, .. } => args,
            FunctionArgs::Star => &[],
        };
        let value = |i: usize| -> Result<Arc<dyn PhysicalExpr>, Vec<iotql_dsl::Diagnostic>> {
            match (&call.args, args.get(i)) {
                (FunctionArgs::Star, _) => {
                    crate::window::whole_event(input, compiler).map_err(|e| error(call.span, e))
                }
                (_, Some(a)) => compiler.compile(a, input).map_err(|d| vec![d]),
                (_, None) => Err(error(call.span, format!("{name} needs an argument"))),
            }
        };
        let kind = match name.as_str() {
            "LAG" => {
                let offset = match args.get(1).map(|a| &a.kind) {
                    None => 1,
                    Some(ExprKind::Literal(Literal::Integer(k))) if *k >= 1 => *k as usize,
                    Some(_) => {
                        return Err(error(
                            args[1].span,
                            "the offset of LAG is a whole number, 1 or more".into(),
                        ));
                    }
                };
                AnalyticKind::Lag {
                    value: value(0)?,
                    offset,
                    default: args.get(2).map(|_| value(2)).transpose()?,
                }
            }
            "LAST" => AnalyticKind::Lag {
                value: value(0)?,
                offset: 0,
                default: args.get(1).map(|_| value(1)).transpose()?,
            },
            "ISFIRST" => {
                let size = match (args.first().map(|a| &a.kind), args.get(1).map(|a| &a.kind)) {
                    (
                        Some(ExprKind::DatePart(unit)),
                        Some(ExprKind::Literal(Literal::Integer(n))),
                    ) if *n >= 1 => unit.micros().and_then(|m| m.checked_mul(*n)),
                    _ => None,
                };
                let Some(size) = size else {
                    return Err(error(
                        call.span,
                        "ISFIRST takes a time unit and a whole number: ISFIRST(minute, 10)".into(),
                    ));
                };
                AnalyticKind::IsFirst { size }
            }
            "ANOMALYDETECTION_SPIKEANDDIP" | "ANOMALYDETECTION_CHANGEPOINT" => {
                let spike = name == "ANOMALYDETECTION_SPIKEANDDIP";
                let number = |i: usize| match args.get(i).map(|a| &a.kind) {
                    Some(ExprKind::Literal(Literal::Integer(v))) => Some(*v as f64),
                    Some(ExprKind::Literal(Literal::Float(v))) => Some(*v),
                    _ => None,
                };
                let usage = if spike {
                    "AnomalyDetection_SpikeAndDip(value, confidence, history size, 'spikes' | 'dips' | 'spikesanddips')"
                } else {
                    "AnomalyDetection_ChangePoint(value, confidence, history size)"
                };
                let (Some(confidence), Some(history)) = (number(1), number(2)) else {
                    return Err(error(call.span, format!("write {usage}, with numbers")));
                };
                let history = history as usize;
                let detector = if spike {
                    let mode = match args.get(3).map(|a| &a.kind) {
                        Some(ExprKind::Literal(Literal::String(m))) => m
                            .parse::<crate::anomaly::SpikeMode>()
                            .map_err(|e| error(args[3].span, e))?,
                        _ => return Err(error(call.span, format!("write {usage}"))),
                    };
                    DetectorSpec::SpikeAndDip {
                        confidence,
                        history,
                        mode,
                    }
                } else {
                    DetectorSpec::ChangePoint {
                        confidence,
                        history,
                    }
                };
                // Arguments out of range are refused here, not at the first event.
                detector.make().map_err(|e| error(call.span, e))?;
                AnalyticKind::Anomaly {
                    value: value(0)?,
                    detector,
                }
            }
            _ if over.is_some_and(|o| o.limit_duration.is_some())
                && matches!(
                    iotql_dsl::catalog::kind_of(call),
                    Some(iotql_dsl::catalog::FunctionKind::Aggregate)
                ) =>
            {
                let aggregate = crate::window::compile_aggregate(call, &f.column, input, compiler)
                    .map_err(|d| vec![d])?;
                if aggregate.create_sliding_accumulator().is_err() {
                    return Err(error(
                        call.span,
                        format!(
                            "{} cannot run over LIMIT DURATION (it cannot forget events as they leave); COUNT, SUM, AVG, MIN, MAX, STDEV and VAR can",
                            call.qualified_name()
                        ),
                    ));
                }
                AnalyticKind::Aggregate {
                    aggregate: Arc::new(aggregate),
                }
            }
            _ => {
                return Err(vec![
                    iotql_dsl::Diagnostic::new(
                        "iotql::not-supported-yet",
                        call.span,
                        format!(
                            "the analytic function {} is not supported by the engine yet",
                            call.qualified_name()
                        ),
                        "not supported yet",
                    )
                    .with_help(
                        "LAG, LAST, ISFIRST, the anomaly detectors and aggregates over LIMIT DURATION run today",
                    ),
                ]);
            }
        };
        specs.push(AnalyticSpec {
            kind,
            partition,
            duration,
            when,
            column: f.column.clone(),
        });
    }
    Ok(specs)
}
