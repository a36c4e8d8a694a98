//! A compiled, runnable job: the logical plan's nodes as operators, batches
//! pushed in by input name, results written to the outputs' sinks.
//!
//! Messages move through the graph in FIFO order from a work queue, so a
//! run is deterministic for a given order of pushes. An operator with
//! several inputs sees the minimum of their watermarks; an input's end is a
//! watermark of +infinity, after which every window is emitted.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use iotql_dsl::Diagnostic;

use crate::error::EngineError;
use crate::expr::ExprCompiler;
use crate::io::Sink;
use crate::operator::project::Projection;
use crate::operator::timestamp::is_time_type;
use crate::operator::*;
use crate::plan::{LogicalPlan, NodeId, NodeKind};
use crate::time::EventTime;

struct RuntimeNode {
    op: Box<dyn Operator>,
    /// The watermark received on each input (`MIN` until one arrives).
    input_watermarks: Vec<i64>,
    watermark: i64,
    ended: bool,
    /// Nodes with several inputs: the substream watermarks received on
    /// each input, and those passed on (their minimum over the inputs).
    input_substreams: Vec<HashMap<u64, i64>>,
    substreams: HashMap<u64, i64>,
}

impl RuntimeNode {
    fn new(op: Box<dyn Operator>, inputs: usize) -> Self {
        RuntimeNode {
            op,
            input_watermarks: vec![i64::MIN; inputs],
            watermark: i64::MIN,
            ended: false,
            input_substreams: vec![HashMap::new(); inputs],
            substreams: HashMap::new(),
        }
    }

    /// The substreams among `ids` whose watermark, the minimum over the
    /// inputs, advanced. An input that has not seen a substream holds it at
    /// its own watermark.
    fn advance_substreams(&mut self, ids: impl IntoIterator<Item = u64>) -> Vec<(u64, EventTime)> {
        let mut advanced = Vec::new();
        for id in ids {
            let min = self
                .input_substreams
                .iter()
                .zip(&self.input_watermarks)
                .map(|(m, &global)| m.get(&id).copied().unwrap_or(i64::MIN).max(global))
                .min()
                .unwrap_or(i64::MIN);
            let passed = self.substreams.entry(id).or_insert(i64::MIN);
            if min > *passed {
                *passed = min;
                advanced.push((id, EventTime(min)));
            }
        }
        advanced
    }
}

/// Counters of one input.
#[derive(Debug, Clone)]
pub struct InputStats {
    pub name: String,
    pub stats: Arc<TimestampStats>,
}

/// Rows written to one output.
#[derive(Debug, Clone)]
pub struct OutputStats {
    pub name: String,
    /// Rows the job gave the output.
    pub rows: Arc<AtomicU64>,
    /// The sink's own counters (rows written, retries, failures), for a
    /// sink that keeps them.
    pub sink: Option<Arc<crate::io::SinkMetrics>>,
    /// The columns of the output's rows.
    pub schema: SchemaRef,
    /// A tap attached to the output sees every row written to it from
    /// then on.
    pub tap: Arc<crate::io::TapSlot>,
}

pub struct Dataflow {
    nodes: Vec<RuntimeNode>,
    consumers: Vec<Vec<(NodeId, usize)>>,
    /// Input name (lower case) -> its scan node.
    scans: HashMap<String, NodeId>,
    inputs: Vec<InputStats>,
    outputs: Vec<OutputStats>,
    dead_letters: Vec<DeadLetter>,
}

impl std::fmt::Debug for Dataflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataflow")
            .field("nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

/// Counts the rows a sink receives and shows them to its tap, if any
/// (`tap` is `None` when the sink shows the tap what it passes on itself:
/// `Sink::tap_passed_on`).
struct CountingSink {
    inner: Box<dyn Sink>,
    rows: Arc<AtomicU64>,
    tap: Option<Arc<crate::io::TapSlot>>,
}

impl Sink for CountingSink {
    fn start(&mut self, schema: &SchemaRef) -> Result<(), EngineError> {
        self.inner.start(schema)
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        self.rows
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        self.inner.write(batch)?;
        if let Some(tap) = self.tap.as_ref().and_then(|t| t.get()) {
            tap.rows(batch, None);
        }
        Ok(())
    }

    fn write_at(&mut self, batch: &RecordBatch, event_times: &[i64]) -> Result<(), EngineError> {
        self.rows
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        self.inner.write_at(batch, event_times)?;
        if let Some(tap) = self.tap.as_ref().and_then(|t| t.get()) {
            tap.rows(batch, Some(event_times));
        }
        Ok(())
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

    fn metrics(&self) -> Option<Arc<crate::io::SinkMetrics>> {
        self.inner.metrics()
    }

    fn checkpoint(&mut self) -> Result<Option<Vec<u8>>, EngineError> {
        self.inner.checkpoint()
    }

    fn recover(&mut self, state: &[u8]) -> Result<(), EngineError> {
        self.inner.recover(state)
    }

    fn enable_checkpoints(&mut self, scope: &str) -> Result<(), EngineError> {
        self.inner.enable_checkpoints(scope)
    }

    fn can_resume(&mut self, state: &[u8]) -> Result<bool, EngineError> {
        self.inner.can_resume(state)
    }

    fn committed(&mut self) -> Result<(), EngineError> {
        self.inner.committed()
    }

    fn wants_checkpoint(&self) -> bool {
        self.inner.wants_checkpoint()
    }
}

fn diag(span: iotql_dsl::Span, message: impl Into<String>) -> Vec<Diagnostic> {
    vec![Diagnostic::new("iotql::plan", span, message, "here")]
}

type Compiled = Result<(Box<dyn Operator>, SchemaRef), Vec<Diagnostic>>;

/// What compiling a plan collects besides the operators.
struct Build<'a> {
    input_schemas: &'a HashMap<String, SchemaRef>,
    sinks: HashMap<String, Box<dyn Sink>>,
    compiler: &'a ExprCompiler,
    scans: HashMap<String, NodeId>,
    inputs: Vec<InputStats>,
    outputs: Vec<OutputStats>,
    problems: Vec<Diagnostic>,
}

impl Build<'_> {
    fn node(&mut self, id: NodeId, node: &crate::plan::Node, schemas: &[SchemaRef]) -> Compiled {
        let input = node.inputs.first().map(|&i| schemas[i].clone());
        match (&node.kind, input) {
            (NodeKind::Scan { input }, _) => self.scan(id, input, node.span),
            (
                NodeKind::Timestamp {
                    input,
                    by,
                    over,
                    time,
                    arrival,
                },
                Some(schema),
            ) => self.timestamp(
                input,
                by.as_ref(),
                over,
                *time,
                arrival.as_deref(),
                &schema,
                node.span,
            ),
            (NodeKind::Filter { predicate }, Some(schema)) => self.filter(predicate, schema),
            (
                NodeKind::Apply {
                    outer,
                    function,
                    alias,
                },
                Some(schema),
            ) => crate::operator::apply::compile(*outer, function, alias, &schema, self.compiler),
            (
                NodeKind::ReferenceJoin {
                    reference,
                    left_outer,
                    left_alias,
                    right_alias,
                    on,
                },
                Some(left),
            ) => {
                let table = self
                    .input_schemas
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(reference))
                    .map(|(_, s)| s.clone())
                    .ok_or_else(|| {
                        diag(
                            node.span,
                            format!("reference input `{reference}` is not bound to a source"),
                        )
                    })?;
                crate::operator::reference::compile(
                    reference,
                    *left_outer,
                    left_alias,
                    right_alias,
                    on,
                    &left,
                    &table,
                    self.compiler,
                    node.span,
                )
            }
            (
                NodeKind::Join {
                    left_outer,
                    left_alias,
                    right_alias,
                    on,
                },
                Some(left),
            ) => {
                let right = schemas[node.inputs[1]].clone();
                crate::operator::join::compile(
                    *left_outer,
                    left_alias,
                    right_alias,
                    on,
                    &left,
                    &right,
                    self.compiler,
                    node.span,
                )
            }
            (NodeKind::Analytic { functions }, Some(schema)) => {
                crate::operator::analytic::compile(functions, &schema, self.compiler)
            }
            (NodeKind::Project { items }, Some(schema)) => {
                Projection::compile(items, &schema, self.compiler).map(|p| {
                    let s = p.schema.clone();
                    (Box::new(ProjectOperator::new(p)) as Box<dyn Operator>, s)
                })
            }
            (
                NodeKind::WindowAggregate {
                    window,
                    group_by,
                    items,
                    having,
                },
                Some(schema),
            ) => crate::window::compile(
                window,
                group_by,
                items,
                having.as_ref(),
                &schema,
                self.compiler,
            ),
            (NodeKind::Union, Some(schema)) => {
                if node
                    .inputs
                    .iter()
                    .any(|&i| schemas[i].fields().len() != schema.fields().len())
                {
                    Err(diag(
                        node.span,
                        "the SELECTs of a UNION must have the same number of columns",
                    ))
                } else {
                    Ok((Box::new(UnionOperator::new(schema.clone())), schema))
                }
            }
            (NodeKind::Sink { output }, Some(schema)) => self.sink(output, schema, node.span),
            (_, None) => Err(diag(node.span, "internal: an operator without input")),
        }
    }

    fn scan(&mut self, id: NodeId, input: &str, span: iotql_dsl::Span) -> Compiled {
        let schema = self
            .input_schemas
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(input))
            .map(|(_, s)| s.clone())
            .ok_or_else(|| diag(span, format!("input `{input}` is not bound to a source")))?;
        self.scans.insert(input.to_ascii_lowercase(), id);
        Ok((
            Box::new(ScanOperator::new(&schema)),
            scan::with_position(&schema),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn timestamp(
        &mut self,
        input: &str,
        by: Option<&iotql_dsl::ast::Expr>,
        over: &[iotql_dsl::ast::Expr],
        time: crate::plan::TimePolicy,
        arrival: Option<&str>,
        schema: &SchemaRef,
        span: iotql_dsl::Span,
    ) -> Compiled {
        let arrival = match arrival {
            Some(name) => {
                let column = crate::expr::find_field(schema, name).ok_or_else(|| {
                    diag(
                        span,
                        format!(
                            "option arrival_time of input `{input}` names `{name}`, which is not one of its columns"
                        ),
                    )
                })?;
                Some(
                    schema
                        .index_of(column)
                        .map_err(|e| diag(span, e.to_string()))?,
                )
            }
            None => schema.index_of(crate::time::ARRIVAL_TIME).ok(),
        };
        if let Some(i) = arrival
            && !is_time_type(schema.field(i).data_type())
        {
            return Err(diag(
                span,
                format!(
                    "the arrival time of input `{input}` must be a time, a time string or an epoch number, not {}",
                    schema.field(i).data_type()
                ),
            ));
        }
        let by = match by {
            None => None,
            Some(e) => {
                let p = self.compiler.compile(e, schema).map_err(|d| vec![d])?;
                match p.data_type(schema) {
                    Ok(t) if is_time_type(&t) => Some(p),
                    Ok(t) => {
                        return Err(diag(
                            e.span,
                            format!(
                                "TIMESTAMP BY needs a time, a time string or an epoch number, not {t}"
                            ),
                        ));
                    }
                    Err(err) => return Err(diag(e.span, err.to_string())),
                }
            }
        };
        let over = over
            .iter()
            .map(|k| self.compiler.compile(k, schema))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|d| vec![d])?;
        // Every TIMESTAMP BY of an input counts into the input's figures.
        let stats = match self
            .inputs
            .iter()
            .find(|i| i.name.eq_ignore_ascii_case(input))
        {
            Some(i) => i.stats.clone(),
            None => {
                let stats = Arc::new(TimestampStats::default());
                self.inputs.push(InputStats {
                    name: input.to_string(),
                    stats: stats.clone(),
                });
                stats
            }
        };
        let op = TimestampOperator::new(input.to_string(), by, over, arrival, time, schema, stats)
            .map_err(|e| diag(span, e.to_string()))?;
        let schema = op.schema();
        Ok((Box::new(op), schema))
    }

    fn filter(&mut self, predicate: &iotql_dsl::ast::Expr, schema: SchemaRef) -> Compiled {
        let p = self
            .compiler
            .compile(predicate, &schema)
            .map_err(|d| vec![d])?;
        match p.data_type(&schema) {
            Ok(DataType::Boolean | DataType::Null) => {
                Ok((Box::new(FilterOperator::new(p)), schema))
            }
            Ok(t) => Err(diag(
                predicate.span,
                format!("WHERE needs a condition, but this is {t}"),
            )),
            Err(e) => Err(diag(predicate.span, e.to_string())),
        }
    }

    fn sink(&mut self, output: &str, schema: SchemaRef, span: iotql_dsl::Span) -> Compiled {
        let key = self
            .sinks
            .keys()
            .find(|k| k.eq_ignore_ascii_case(output))
            .cloned();
        let mut sink = key
            .and_then(|k| self.sinks.remove(&k))
            .ok_or_else(|| diag(span, format!("output `{output}` is not bound to a sink")))?;
        let visible = Arc::new(datafusion::arrow::datatypes::Schema::new(
            schema
                .fields()
                .iter()
                .filter(|f| !f.name().starts_with("__iotql_"))
                .cloned()
                .collect::<Vec<_>>(),
        ));
        if let Err(e) = sink.start(&visible) {
            self.problems.push(Diagnostic::new(
                "iotql::sink",
                span,
                e.to_string(),
                "this output",
            ));
        }
        let rows = Arc::new(AtomicU64::new(0));
        let tap = Arc::new(crate::io::TapSlot::new());
        // What a tap sees and the output's columns: the rows the sink
        // passes on to its destination.
        let passed_on = sink.tap_passed_on(tap.clone());
        self.outputs.push(OutputStats {
            name: output.to_string(),
            rows: rows.clone(),
            sink: sink.metrics(),
            schema: passed_on.clone().unwrap_or_else(|| visible.clone()),
            tap: tap.clone(),
        });
        let counting = CountingSink {
            inner: sink,
            rows,
            tap: passed_on.is_none().then_some(tap),
        };
        Ok((
            Box::new(SinkOperator::new(output, Box::new(counting))),
            schema,
        ))
    }
}

impl Dataflow {
    /// Compiles `plan` against the inputs' schemas, writing to `sinks`
    /// (one per output of the plan, by name).
    pub fn compile(
        plan: &LogicalPlan,
        input_schemas: &HashMap<String, SchemaRef>,
        sinks: HashMap<String, Box<dyn Sink>>,
        compiler: &ExprCompiler,
    ) -> Result<Dataflow, Vec<Diagnostic>> {
        let mut build = Build {
            input_schemas,
            sinks,
            compiler,
            scans: HashMap::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            problems: Vec::new(),
        };
        let mut schemas: Vec<SchemaRef> = Vec::with_capacity(plan.nodes.len());
        let mut nodes = Vec::with_capacity(plan.nodes.len());
        // A node after one that could not be compiled is not compiled:
        // its problems would only repeat the first.
        let mut failed = vec![false; plan.nodes.len()];
        for (id, node) in plan.nodes.iter().enumerate() {
            let compiled = if node.inputs.iter().any(|&i| failed[i]) {
                Err(Vec::new())
            } else {
                build.node(id, node, &schemas)
            };
            match compiled {
                Ok((op, schema)) => {
                    schemas.push(schema);
                    nodes.push(RuntimeNode::new(op, node.inputs.len().max(1)));
                }
                Err(d) => {
                    build.problems.extend(d);
                    failed[id] = true;
                    let empty = Arc::new(datafusion::arrow::datatypes::Schema::empty());
                    schemas.push(empty.clone());
                    nodes.push(RuntimeNode::new(Box::new(UnionOperator::new(empty)), 0));
                }
            }
        }
        let mut problems = build.problems;
        if !problems.is_empty() {
            // Two statements reading one failed TIMESTAMP BY report it once.
            problems.dedup_by(|a, b| a.span.start == b.span.start && a.message == b.message);
            return Err(problems);
        }
        let mut consumers = vec![Vec::new(); plan.nodes.len()];
        for (id, node) in plan.nodes.iter().enumerate() {
            for (port, &input) in node.inputs.iter().enumerate() {
                consumers[input].push((id, port));
            }
        }
        Ok(Dataflow {
            nodes,
            consumers,
            scans: build.scans,
            inputs: build.inputs,
            outputs: build.outputs,
            dead_letters: Vec::new(),
        })
    }

    /// The inputs this dataflow reads, by name.
    pub fn input_names(&self) -> Vec<String> {
        self.inputs.iter().map(|i| i.name.clone()).collect()
    }

    pub fn input_stats(&self) -> &[InputStats] {
        &self.inputs
    }

    pub fn output_stats(&self) -> &[OutputStats] {
        &self.outputs
    }

    /// Loads (or reloads) the reference input `name`: every JOIN with it
    /// looks events up in `table` from now on.
    pub fn load_reference(&mut self, name: &str, table: &RecordBatch) -> Result<(), EngineError> {
        for node in &mut self.nodes {
            node.op.on_reference(name, table)?;
        }
        Ok(())
    }

    /// Dead letters produced since the last call.
    pub fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        let mut letters = std::mem::take(&mut self.dead_letters);
        for node in &mut self.nodes {
            if let Some((_, sink)) = node.op.output() {
                letters.extend(sink.take_dead_letters());
            }
        }
        letters
    }

    fn scan(&self, input: &str) -> Result<NodeId, EngineError> {
        self.scans
            .get(&input.to_ascii_lowercase())
            .copied()
            .ok_or_else(|| EngineError::Source {
                input: input.to_string(),
                message: "the job does not read this input".into(),
            })
    }

    /// Pushes a batch of events read from `input`. The batch may carry a
    /// position column (`__iotql_position`, line numbers) for dead letters.
    pub fn push(&mut self, input: &str, batch: RecordBatch) -> Result<(), EngineError> {
        let scan = self.scan(input)?;
        self.run(VecDeque::from([(scan, 0, Message::Batch(batch))]))
    }

    /// `input` has no more events: its watermark becomes +infinity.
    pub fn end_input(&mut self, input: &str) -> Result<(), EngineError> {
        let scan = self.scan(input)?;
        self.run(VecDeque::from([(
            scan,
            0,
            Message::Watermark(EventTime::MAX),
        )]))
    }

    /// The arrival clock of `input` (a live source) reached `now`: its
    /// watermark advances to `now` minus the late-arrival tolerance even
    /// when no event comes, so that windows close on an idle input.
    pub fn advance_arrival(&mut self, input: &str, now: EventTime) -> Result<(), EngineError> {
        self.tell_timestamps(input, |op, out| op.on_arrival(now, out))
    }

    /// The partitions that `input` (a partitioned source) reads are now
    /// `partitions`: its watermark is the slowest of theirs.
    pub fn set_partitions(&mut self, input: &str, partitions: &[u64]) -> Result<(), EngineError> {
        self.tell_timestamps(input, |op, out| op.on_partitions(partitions, out))
    }

    /// Calls `f` on the TIMESTAMP BY operators of `input` and routes what
    /// they send.
    fn tell_timestamps(
        &mut self,
        input: &str,
        f: impl Fn(&mut dyn Operator, &mut Output) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let scan = self.scan(input)?;
        let mut queue = VecDeque::new();
        for &(stamp, _) in &self.consumers[scan] {
            let mut out = Output::default();
            f(self.nodes[stamp].op.as_mut(), &mut out)?;
            for message in out.messages {
                for &(consumer, port) in &self.consumers[stamp] {
                    queue.push_back((consumer, port, message.clone()));
                }
            }
        }
        self.run(queue)
    }

    /// Lets every output write the rows it has held too long
    /// ([`Sink::tick`]).
    pub fn tick_outputs(&mut self) -> Result<(), EngineError> {
        for node in &mut self.nodes {
            if let Some((_, sink)) = node.op.output() {
                sink.tick()?;
            }
        }
        Ok(())
    }

    /// Every output's checkpoint state ([`Sink::checkpoint`]), by output
    /// name; outputs that cannot be rolled back are left out.
    pub fn checkpoint_outputs(
        &mut self,
    ) -> Result<std::collections::BTreeMap<String, Vec<u8>>, EngineError> {
        let mut states = std::collections::BTreeMap::new();
        for node in &mut self.nodes {
            if let Some((name, sink)) = node.op.output()
                && let Some(state) = sink.checkpoint()?
            {
                states.insert(name.to_string(), state);
            }
        }
        Ok(states)
    }

    /// Tells every output that the checkpoint of the states
    /// [`Dataflow::checkpoint_outputs`] returned last is durable
    /// ([`Sink::committed`]).
    pub fn committed_outputs(&mut self) -> Result<(), EngineError> {
        for node in &mut self.nodes {
            if let Some((_, sink)) = node.op.output() {
                sink.committed()?;
            }
        }
        Ok(())
    }

    /// Whether an output waits for a checkpoint ([`Sink::wants_checkpoint`]).
    pub fn outputs_want_checkpoint(&mut self) -> bool {
        self.nodes.iter_mut().any(|n| {
            n.op.output()
                .is_some_and(|(_, sink)| sink.wants_checkpoint())
        })
    }

    /// Flushes every output ([`Sink::flush`]).
    pub fn flush_outputs(&mut self) -> Result<(), EngineError> {
        self.nodes.iter_mut().try_for_each(|n| n.op.flush())
    }

    /// Flushes and closes every output ([`Sink::finish`]), once. Before
    /// the inputs end, this stops the job: the rows of open windows (and
    /// other held events) are not emitted. A live input's positions of held
    /// events are not committed, so a restarted job reads them again and
    /// emits those windows whole.
    pub fn close_outputs(&mut self) -> Result<(), EngineError> {
        self.nodes.iter_mut().try_for_each(|n| n.op.close())
    }

    /// Stops as [`Dataflow::stop`] does, right after a checkpoint that the
    /// next run resumes from: outputs are stopped ([`Sink::stop`]), leaving
    /// what they hold for checkpoints to that run.
    pub fn stop_at_checkpoint(&mut self) -> Result<(), EngineError> {
        self.nodes.iter_mut().try_for_each(|n| match n.op.output() {
            Some((_, sink)) => sink.stop(),
            None => n.op.close(),
        })
    }

    /// The earliest event time that may still change an output row (see
    /// [`crate::operator::Operator::held_since`]); `None` when no operator
    /// holds an event: everything pushed so far is in the outputs.
    pub fn held_since(&self) -> Option<EventTime> {
        self.nodes.iter().filter_map(|n| n.op.held_since()).min()
    }

    /// Ends every input and closes the outputs: [`Dataflow::end_inputs`],
    /// then [`Dataflow::close_outputs`].
    pub fn finish(&mut self) -> Result<(), EngineError> {
        self.end_inputs()?;
        self.close_outputs()
    }

    /// Ends every input that has not ended: every row is emitted to the
    /// outputs, which are flushed but stay open, so that a checkpoint taken
    /// now commits the last rows with it ([`Dataflow::close_outputs`]
    /// closes them).
    pub fn end_inputs(&mut self) -> Result<(), EngineError> {
        let scans: Vec<NodeId> = self.scans.values().copied().collect();
        for scan in scans {
            if !self.nodes[scan].ended {
                self.run(VecDeque::from([(
                    scan,
                    0,
                    Message::Watermark(EventTime::MAX),
                )]))?;
            }
        }
        Ok(())
    }

    fn run(&mut self, mut queue: VecDeque<(NodeId, usize, Message)>) -> Result<(), EngineError> {
        while let Some((id, port, message)) = queue.pop_front() {
            let mut out = Output::default();
            let node = &mut self.nodes[id];
            match message {
                Message::Batch(batch) => node.op.on_batch(port, batch, &mut out)?,
                Message::Watermark(wm) => {
                    let slot = &mut node.input_watermarks[port];
                    if wm.0 > *slot {
                        *slot = wm.0;
                        node.op.on_port_watermark(port, wm, &mut out)?;
                    }
                    let min = node
                        .input_watermarks
                        .iter()
                        .copied()
                        .min()
                        .unwrap_or(i64::MIN);
                    if min > node.watermark {
                        node.watermark = min;
                        if node.input_watermarks.len() > 1 {
                            // An input's end releases the substreams it held back.
                            let ids: Vec<u64> = node.substreams.keys().copied().collect();
                            let advanced = node.advance_substreams(ids);
                            if !advanced.is_empty() {
                                node.op.on_substreams(Arc::new(advanced), &mut out)?;
                            }
                        }
                        node.op.on_watermark(EventTime(min), &mut out)?;
                        if min == i64::MAX && !node.ended {
                            node.ended = true;
                            node.op.on_end(&mut out)?;
                        }
                    }
                }
                Message::Substreams(wms) if node.input_watermarks.len() <= 1 => {
                    node.op.on_substreams(wms, &mut out)?;
                }
                Message::Substreams(wms) => {
                    let received = &mut node.input_substreams[port];
                    for &(id, wm) in wms.iter() {
                        let slot = received.entry(id).or_insert(i64::MIN);
                        *slot = (*slot).max(wm.0);
                    }
                    let advanced = node.advance_substreams(wms.iter().map(|&(id, _)| id));
                    if !advanced.is_empty() {
                        node.op.on_substreams(Arc::new(advanced), &mut out)?;
                    }
                }
            }
            self.dead_letters.append(&mut out.dead_letters);
            for message in out.messages {
                for &(consumer, port) in &self.consumers[id] {
                    queue.push_back((consumer, port, message.clone()));
                }
            }
        }
        Ok(())
    }

    /// Every operator's state and the runtime's watermark bookkeeping, for
    /// a checkpoint.
    pub fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, EngineError> {
        self.nodes
            .iter_mut()
            .map(|n| {
                let mut bytes = Vec::new();
                bytes.extend(n.watermark.to_le_bytes());
                bytes.push(u8::from(n.ended));
                bytes.extend((n.input_watermarks.len() as u64).to_le_bytes());
                for wm in &n.input_watermarks {
                    bytes.extend(wm.to_le_bytes());
                }
                for map in n.input_substreams.iter().chain([&n.substreams]) {
                    let mut pairs: Vec<(&u64, &i64)> = map.iter().collect();
                    pairs.sort_unstable();
                    bytes.extend((pairs.len() as u64).to_le_bytes());
                    for (id, wm) in pairs {
                        bytes.extend(id.to_le_bytes());
                        bytes.extend(wm.to_le_bytes());
                    }
                }
                bytes.extend(n.op.snapshot()?);
                Ok(bytes)
            })
            .collect()
    }

    /// Restores the states a [`Dataflow::snapshot`] of the same job returned.
    pub fn restore(&mut self, states: &[Vec<u8>]) -> Result<(), EngineError> {
        if states.len() != self.nodes.len() {
            return Err(EngineError::State(format!(
                "the checkpoint has {} operators, the job {}",
                states.len(),
                self.nodes.len()
            )));
        }
        let bad = || EngineError::State("a truncated operator state".into());
        for (node, state) in self.nodes.iter_mut().zip(states) {
            let take8 = |at: usize| -> Result<[u8; 8], EngineError> {
                state
                    .get(at..at + 8)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(bad)
            };
            node.watermark = i64::from_le_bytes(take8(0)?);
            node.ended = *state.get(8).ok_or_else(bad)? == 1;
            let inputs = usize::try_from(u64::from_le_bytes(take8(9)?)).map_err(|_| bad())?;
            if inputs != node.input_watermarks.len() {
                return Err(EngineError::State(
                    "the checkpoint is of another job".into(),
                ));
            }
            let mut at = 17;
            for wm in node.input_watermarks.iter_mut() {
                *wm = i64::from_le_bytes(take8(at)?);
                at += 8;
            }
            for map in node
                .input_substreams
                .iter_mut()
                .chain([&mut node.substreams])
            {
                let count = usize::try_from(u64::from_le_bytes(take8(at)?)).map_err(|_| bad())?;
                at += 8;
                map.clear();
                for _ in 0..count {
                    map.insert(
                        u64::from_le_bytes(take8(at)?),
                        i64::from_le_bytes(take8(at + 8)?),
                    );
                    at += 16;
                }
            }
            node.op.restore(&state[at..])?;
        }
        Ok(())
    }
}
