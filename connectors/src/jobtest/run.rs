//! The deterministic run of one test: the job's inputs replaced by the
//! test's events (decoded by the real CSV and JSON-lines readers), its
//! outputs captured in memory, events pushed into the [`Dataflow`] in a
//! fixed order, then every input ended and the job finished.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use iotql_engine::arrow::array::{
    Array, ArrayRef, AsArray, TimestampMicrosecondArray, UInt32Array, UInt64Array,
};
use iotql_engine::arrow::compute::{cast, concat_batches, take_record_batch};
use iotql_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::dataflow::Dataflow;
use iotql_engine::error::EngineError;
use iotql_engine::expr::ExprCompiler;
use iotql_engine::io::Sink;
use iotql_engine::operator::DeadLetter;
use iotql_engine::plan::{self, LogicalPlan, PlanOptions};
use iotql_engine::time::{ARRIVAL_TIME, EventTime, POSITION, event_time_type};

use super::{Data, Job, JobTest, TestError, TestFile, find_name, listed};
use crate::endpoint::{self, InputSpec};
use crate::file::Input;
use crate::throttle::{Throttle, ThrottledSink};

/// The pseudo-column that carries an event's arrival time.
pub const ARRIVAL_COLUMN: &str = "@arrival";

/// How a test runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Events per pushed batch; `None`: as many consecutive events of one
    /// input as there are.
    pub batch_size: Option<usize>,
}

/// The rows one output got.
#[derive(Debug, Clone)]
pub struct Captured {
    /// The output's columns (without hidden ones), as the sink was started.
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Every output of the job, in the plan's order.
    pub outputs: Vec<(String, Captured)>,
    /// The dead letters, as the lines `<input> <position>: <reason>`.
    pub dead_letters: Vec<String>,
}

/// Keeps what an output gets, shared with the run.
struct CaptureSink {
    captured: Arc<Mutex<Captured>>,
}

impl CaptureSink {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Captured>, EngineError> {
        self.captured
            .lock()
            .map_err(|_| EngineError::Internal("a test output's lock is poisoned".into()))
    }
}

impl Sink for CaptureSink {
    fn start(&mut self, schema: &SchemaRef) -> Result<(), EngineError> {
        self.lock()?.schema = schema.clone();
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        self.lock()?.batches.push(batch.clone());
        Ok(())
    }

    fn finish(&mut self) -> Result<(), EngineError> {
        Ok(())
    }
}

/// One stream input's events, decoded.
struct Events {
    /// The input's name in the job.
    name: String,
    /// The rows (the arrival-time column, if any, then the position column
    /// last), or none when every event was refused.
    batch: Option<RecordBatch>,
    /// The schema the job is compiled with (no position column).
    schema: SchemaRef,
    /// The line of each row.
    lines: Vec<u64>,
    /// Each row's arrival time (µs), when the events carry `@arrival`.
    arrivals: Option<Vec<i64>>,
    /// The events the decoder refused, in line order.
    refused: Vec<DeadLetter>,
}

/// The bytes of `data` and whether they are CSV (else JSON lines).
fn bytes_of(data: &Data) -> Result<(Arc<[u8]>, bool), String> {
    match data {
        Data::Csv(text) => Ok((Arc::from(text.as_bytes()), true)),
        Data::JsonLines(text) => Ok((Arc::from(text.as_bytes()), false)),
        Data::File(path) => {
            let bytes =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let csv = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
            Ok((Arc::from(bytes), csv))
        }
        Data::Sql(_) => Err("`sql` gives the table of a reference input only".into()),
    }
}

/// Where `@arrival` is among the CSV header's fields, or whether a JSON
/// line has the key (`Some(usize::MAX)`).
fn arrival_column(bytes: &[u8], csv: bool) -> Option<usize> {
    if csv {
        let header = bytes.split(|&b| b == b'\n').next()?;
        let mut reader = ::csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(header);
        let record = reader.records().next()?.ok()?;
        return record.iter().position(|f| f.trim() == ARRIVAL_COLUMN);
    }
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line).ok()
        })
        .any(|object| object.contains_key(ARRIVAL_COLUMN))
        .then_some(usize::MAX)
}

/// `schema` with `@arrival` (text) at `at` (or last).
fn with_arrival_field(schema: &SchemaRef, at: usize) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let field = Field::new(ARRIVAL_COLUMN, DataType::Utf8, true);
    if at <= fields.len() {
        fields.insert(at, field);
    } else {
        fields.push(field);
    }
    Arc::new(Schema::new(fields))
}

/// Parses an `@arrival` value: RFC 3339.
fn parse_arrival(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.timestamp_micros())
}

/// Reads an input's events through the real decoders.
fn decode(
    name: &str,
    data: &Data,
    declared: Option<SchemaRef>,
    columns: Option<&BTreeSet<String>>,
) -> Result<Events, String> {
    let (bytes, csv) = bytes_of(data)?;
    let arrival_at = arrival_column(&bytes, csv);
    let mut columns = columns.cloned();
    let mut declared = declared;
    if let Some(at) = arrival_at {
        if let Some(c) = columns.as_mut() {
            c.insert(ARRIVAL_COLUMN.to_string());
        }
        declared = declared.map(|s| with_arrival_field(&s, at));
    }
    let input = Input::Memory(bytes);
    let spec = if csv {
        InputSpec::Csv(input)
    } else {
        InputSpec::JsonLines(input)
    };
    let mut source = endpoint::open_source(name, &spec, declared, 8192, columns.as_ref())
        .map_err(|e| e.to_string())?;
    let mut batches = Vec::new();
    let mut refused = Vec::new();
    while let Some(b) = source.next_batch().map_err(|e| e.to_string())? {
        refused.extend(b.dead_letters);
        batches.extend(b.batch);
    }
    crate::deadletter::in_input_order(&mut refused);
    let mut batch = match batches.first() {
        Some(first) => Some(concat_batches(&first.schema(), &batches).map_err(|e| e.to_string())?),
        None => None,
    };
    let mut schema = source.schema();
    let mut arrivals = None;
    if arrival_at.is_some() {
        let keep: Vec<Field> = schema
            .fields()
            .iter()
            .filter(|f| f.name() != ARRIVAL_COLUMN)
            .map(|f| f.as_ref().clone())
            .chain([Field::new(ARRIVAL_TIME, event_time_type(), false)])
            .collect();
        schema = Arc::new(Schema::new(keep));
        let (b, times) = match batch {
            Some(b) => {
                let (b, times) = move_arrival(&b, &schema)?;
                (Some(b), times)
            }
            None => (None, Vec::new()),
        };
        batch = b;
        arrivals = Some(times);
    }
    let lines = match &batch {
        Some(b) => position_column(b)?.values().to_vec(),
        None => Vec::new(),
    };
    Ok(Events {
        name: name.to_string(),
        batch,
        schema,
        lines,
        arrivals,
        refused,
    })
}

fn position_column(batch: &RecordBatch) -> Result<&UInt64Array, String> {
    batch
        .column_by_name(POSITION)
        .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
        .ok_or_else(|| "internal: decoded events without their lines".to_string())
}

/// The batch with its `@arrival` text column replaced by the engine's
/// arrival-time column (before the position column), and the times.
fn move_arrival(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> Result<(RecordBatch, Vec<i64>), String> {
    let lines = position_column(batch)?.clone();
    let column = batch
        .column_by_name(ARRIVAL_COLUMN)
        .ok_or_else(|| format!("internal: the events lost their {ARRIVAL_COLUMN} column"))?;
    let text = cast(column, &DataType::Utf8).map_err(|e| e.to_string())?;
    let text = text.as_string::<i32>();
    let mut times = Vec::with_capacity(text.len());
    for (row, value) in text.iter().enumerate() {
        let line = lines.value(row);
        let t = match value {
            None | Some("") => {
                return Err(format!(
                    "line {line} has no {ARRIVAL_COLUMN}: when one event of a test has an arrival time, every event must"
                ));
            }
            Some(v) => parse_arrival(v).ok_or_else(|| {
                format!("line {line}: {ARRIVAL_COLUMN} `{v}` is not an RFC 3339 time (e.g. 2026-01-01T00:00:05Z)")
            })?,
        };
        times.push(t);
    }
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if f.name() != ARRIVAL_COLUMN && !f.name().starts_with("__iotql_") {
            columns.push(c.clone());
        }
    }
    columns.push(Arc::new(
        TimestampMicrosecondArray::from(times.clone()).with_timezone("UTC"),
    ));
    columns.push(Arc::new(lines));
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(POSITION, DataType::UInt64, false));
    let batch =
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| e.to_string())?;
    Ok((batch, times))
}

/// The schema of an input a test does not give: the declared one, or the
/// columns the job reads, as text.
fn assumed_schema(declared: Option<SchemaRef>, plan: &LogicalPlan) -> SchemaRef {
    declared.unwrap_or_else(|| {
        let fields: Vec<Field> = plan
            .referenced_columns()
            .unwrap_or_default()
            .into_iter()
            .map(|c| Field::new(c, DataType::Utf8, true))
            .collect();
        Arc::new(Schema::new(fields))
    })
}

fn with_arrival_time(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(ARRIVAL_TIME, event_time_type(), false));
    Arc::new(Schema::new(fields))
}

/// The line of a dead letter's position (`line 4`), if it has one.
fn line_of(d: &DeadLetter) -> Option<u64> {
    d.position.strip_prefix("line ")?.parse().ok()
}

fn letter_line(d: &DeadLetter) -> String {
    format!("{} {}: {}", d.input, d.position, d.reason)
}

/// Reads a reference input's table: the `sql` script's table named like the
/// input, or the rows of a CSV or JSON-lines block or file.
fn reference_table(
    name: &str,
    data: &Data,
    declared: Option<SchemaRef>,
) -> Result<(RecordBatch, Vec<DeadLetter>), String> {
    let mut source: Box<dyn iotql_engine::io::Source> = match data {
        Data::Sql(script) => {
            let conn = rusqlite::Connection::open_in_memory().map_err(|e| e.to_string())?;
            conn.execute_batch(script)
                .map_err(|e| format!("the sql script: {e}"))?;
            Box::new(
                crate::sqlite::SqliteSource::read(
                    name,
                    &conn,
                    &crate::sqlite::SqliteRead::Table(name.to_string()),
                    "the sql script's database",
                    8192,
                )
                .map_err(|e| e.to_string())?,
            )
        }
        other => {
            let (bytes, csv) = bytes_of(other)?;
            if arrival_column(&bytes, csv).is_some() {
                return Err(format!(
                    "a reference input is loaded before any event: {ARRIVAL_COLUMN} is for stream inputs"
                ));
            }
            let input = Input::Memory(bytes);
            let spec = if csv {
                InputSpec::Csv(input)
            } else {
                InputSpec::JsonLines(input)
            };
            endpoint::open_source(name, &spec, declared, 8192, None).map_err(|e| e.to_string())?
        }
    };
    endpoint::read_all(source.as_mut()).map_err(|e| e.to_string())
}

/// The order in which events are delivered: (input, row) pairs. With
/// arrival times, by arrival (stable: ties keep the written order, inputs
/// in the order written); without, in the order written, the inputs taking
/// turns one event at a time.
fn delivery_order(events: &[Events], by_arrival: bool) -> Vec<(usize, usize)> {
    let mut order = Vec::new();
    if by_arrival {
        for (i, e) in events.iter().enumerate() {
            order.extend((0..e.lines.len()).map(|r| (i, r)));
        }
        order.sort_by_key(|&(i, r)| events[i].arrivals.as_ref().map_or(0, |a| a[r]));
        return order;
    }
    let mut next = vec![0; events.len()];
    loop {
        let before = order.len();
        for (i, e) in events.iter().enumerate() {
            if next[i] < e.lines.len() {
                order.push((i, next[i]));
                next[i] += 1;
            }
        }
        if order.len() == before {
            return order;
        }
    }
}

/// Runs `test` of `job` (the test file `file`) and captures its outputs.
pub fn run(
    job: &Job,
    file: &TestFile,
    test: &JobTest,
    options: &RunOptions,
) -> Result<Outcome, TestError> {
    let fail = |message: String| TestError::Test {
        file: file.path.clone(),
        test: test.name.clone(),
        message,
    };
    let engine = |e: EngineError| fail(format!("the job failed: {e}"));
    let plan = plan::build(
        &job.script,
        &PlanOptions {
            time: test.time,
            extra_inputs: Vec::new(),
        },
    )
    .map_err(|p| job.refused(p))?;
    let input_names: Vec<String> = plan.inputs.iter().map(|i| i.name.clone()).collect();
    let output_names: Vec<String> = plan.outputs.iter().map(|o| o.name.clone()).collect();
    for (name, _) in &test.inputs {
        if find_name(input_names.iter().map(String::as_str), name).is_none() {
            return Err(fail(format!(
                "the job has no input `{name}` (its inputs: {})",
                listed(&input_names)
            )));
        }
    }
    for (name, _) in &test.outputs {
        if find_name(output_names.iter().map(String::as_str), name).is_none() {
            return Err(fail(format!(
                "the job has no output `{name}` (its outputs: {})",
                listed(&output_names)
            )));
        }
    }
    let references = plan.references();
    let is_reference = |decl: &plan::InputDecl| {
        decl.reference
            || references
                .iter()
                .any(|r| r.eq_ignore_ascii_case(&decl.name))
    };
    let columns = plan.referenced_columns();
    let given = |decl: &plan::InputDecl| {
        test.inputs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&decl.name))
            .map(|(_, d)| d)
    };

    // Stream inputs given by the test, in the order written.
    let mut events = Vec::new();
    for (name, data) in &test.inputs {
        let Some(decl) = plan.input(name) else {
            continue;
        };
        if is_reference(decl) {
            continue;
        }
        let declared = endpoint::declared_schema(&decl.options)
            .map_err(|e| fail(format!("input `{}`: {e}", decl.name)))?;
        let decoded = decode(&decl.name, data, declared, columns.as_ref())
            .map_err(|e| fail(format!("input `{}` ({}): {e}", decl.name, data.describe())))?;
        events.push(decoded);
    }
    let by_arrival = events.iter().any(|e| e.arrivals.is_some());
    if by_arrival && let Some(without) = events.iter().find(|e| e.arrivals.is_none()) {
        let with = events
            .iter()
            .find(|e| e.arrivals.is_some())
            .map_or("", |e| e.name.as_str());
        return Err(fail(format!(
            "input `{with}` has {ARRIVAL_COLUMN} times but input `{}` does not: when one event of a test has an arrival time, every event must",
            without.name
        )));
    }

    let mut schemas: HashMap<String, SchemaRef> = HashMap::new();
    let mut assumed = Vec::new();
    let mut tables = Vec::new();
    for decl in &plan.inputs {
        let declared = endpoint::declared_schema(&decl.options)
            .map_err(|e| fail(format!("input `{}`: {e}", decl.name)))?;
        if is_reference(decl) {
            let table = match given(decl) {
                Some(data) => reference_table(&decl.name, data, declared)
                    .map_err(|e| fail(format!("reference input `{}`: {e}", decl.name)))?,
                None => {
                    if declared.is_none() {
                        assumed.push(decl.name.clone());
                    }
                    let schema = assumed_schema(declared, &plan);
                    (RecordBatch::new_empty(schema), Vec::new())
                }
            };
            schemas.insert(decl.name.clone(), table.0.schema());
            tables.push((decl.name.clone(), table));
            continue;
        }
        let schema = match events.iter().find(|e| e.name == decl.name) {
            Some(e) => e.schema.clone(),
            None => {
                if declared.is_none() {
                    assumed.push(decl.name.clone());
                }
                let schema = assumed_schema(declared, &plan);
                if by_arrival {
                    with_arrival_time(&schema)
                } else {
                    schema
                }
            }
        };
        schemas.insert(decl.name.clone(), schema);
    }

    let mut sinks: HashMap<String, Box<dyn Sink>> = HashMap::new();
    let mut captured = Vec::new();
    for output in &plan.outputs {
        let shared = Arc::new(Mutex::new(Captured {
            schema: Arc::new(Schema::empty()),
            batches: Vec::new(),
        }));
        let mut sink: Box<dyn Sink> = Box::new(CaptureSink {
            captured: shared.clone(),
        });
        let mut declared = output.options.clone();
        if let Some(throttle) = Throttle::take(&mut declared)
            .map_err(|e| fail(format!("the job's output `{}`: {e}", output.name)))?
        {
            sink = Box::new(ThrottledSink::new(sink, throttle));
        }
        sinks.insert(output.name.clone(), sink);
        captured.push((output.name.clone(), shared));
    }

    let mut dataflow = match Dataflow::compile(&plan, &schemas, sinks, &ExprCompiler::new()) {
        Ok(d) => d,
        Err(problems) if !assumed.is_empty() => {
            let shown = job.path.display().to_string();
            return Err(fail(format!(
                "the job does not compile with {} empty and its columns taken as text (no schema is declared): give {} events in this test, or declare its schema = '...'\n{}",
                assumed
                    .iter()
                    .map(|n| format!("input `{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if assumed.len() == 1 { "it" } else { "them" },
                iotql_dsl::render(&problems, &shown, &job.source, iotql_dsl::Style::Plain)
            )));
        }
        Err(problems) => return Err(job.refused(problems)),
    };

    let mut dead_letters = Vec::new();
    for (name, (table, refused)) in tables {
        dead_letters.extend(refused.iter().map(letter_line));
        dataflow.load_reference(&name, &table).map_err(engine)?;
    }

    let streams = dataflow.input_names();
    let order = delivery_order(&events, by_arrival);
    let limit = options.batch_size.unwrap_or(usize::MAX).max(1);
    // How many of each input's refused events are reported.
    let mut reported = vec![0; events.len()];
    let mut k = 0;
    while k < order.len() {
        let i = order[k].0;
        let mut end = k + 1;
        while end < order.len() && order[end].0 == i && end - k < limit {
            end += 1;
        }
        let rows: Vec<u32> = order[k..end]
            .iter()
            .map(|&(_, r)| u32::try_from(r).unwrap_or(u32::MAX))
            .collect();
        let e = &events[i];
        let Some(all) = &e.batch else {
            k = end;
            continue;
        };
        // The refused events written before this batch's last one.
        let last = e.lines[order[end - 1].1];
        let mut letters: Vec<DeadLetter> = Vec::new();
        while let Some(d) = e.refused.get(reported[i])
            && line_of(d).is_none_or(|l| l < last)
        {
            letters.push(d.clone());
            reported[i] += 1;
        }
        let batch =
            take_record_batch(all, &UInt32Array::from(rows)).map_err(|x| engine(x.into()))?;
        dataflow.push(&e.name, batch).map_err(engine)?;
        if let Some(arrivals) = &e.arrivals {
            let now = EventTime(arrivals[order[end - 1].1]);
            for name in &streams {
                dataflow.advance_arrival(name, now).map_err(engine)?;
            }
        }
        letters.extend(dataflow.take_dead_letters());
        crate::deadletter::in_input_order(&mut letters);
        dead_letters.extend(letters.iter().map(letter_line));
        k = end;
    }
    for (i, e) in events.iter().enumerate() {
        dead_letters.extend(e.refused[reported[i]..].iter().map(letter_line));
    }
    for name in &streams {
        dataflow.end_input(name).map_err(engine)?;
        dead_letters.extend(dataflow.take_dead_letters().iter().map(letter_line));
    }
    dataflow.finish().map_err(engine)?;
    dead_letters.extend(dataflow.take_dead_letters().iter().map(letter_line));

    let mut outputs = Vec::new();
    for (name, shared) in captured {
        let c = shared
            .lock()
            .map_err(|_| fail("internal: a test output's lock is poisoned".into()))?
            .clone();
        outputs.push((name, c));
    }
    Ok(Outcome {
        outputs,
        dead_letters,
    })
}
