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
    pub rows: Arc<AtomicU64>,
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

/// Counts the rows a sink receives.
struct CountingSink {
    inner: Box<dyn Sink>,
    rows: Arc<AtomicU64>,
}

impl Sink for CountingSink {
    fn start(&mut self, schema: &SchemaRef) -> Result<(), EngineError> {
        self.inner.start(schema)
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        self.rows
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        self.inner.write(batch)
    }

    fn finish(&mut self) -> Result<(), EngineError> {
        self.inner.finish()
    }
}

fn diag(span: iotql_dsl::Span, message: impl Into<String>) -> Vec<Diagnostic> {
    vec![Diagnostic::new("iotql::plan", span, message, "here")]
}

impl Dataflow {
    /// Compiles `plan` against the inputs' schemas, writing to `sinks`
    /// (one per output of the plan, by name).
    pub fn compile(
        plan: &LogicalPlan,
        input_schemas: &HashMap<String, SchemaRef>,
        mut sinks: HashMap<String, Box<dyn Sink>>,
        compiler: &ExprCompiler,
    ) -> Result<Dataflow, Vec<Diagnostic>> {
        let mut schemas: Vec<SchemaRef> = Vec::with_capacity(plan.nodes.len());
        let mut nodes = Vec::with_capacity(plan.nodes.len());
        let mut scans = HashMap::new();
        let mut inputs = Vec::new();
        let mut outputs = Vec::new();
        let mut problems = Vec::new();
        for (id, node) in plan.nodes.iter().enumerate() {
            let input_schema = node.inputs.first().map(|&i| schemas[i].clone());
            let compiled: Result<(Box<dyn Operator>, SchemaRef), Vec<Diagnostic>> = match (
                &node.kind,
                input_schema,
            ) {
                (NodeKind::Scan { input }, _) => {
                    let schema = input_schemas
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(input))
                        .map(|(_, s)| s.clone());
                    match schema {
                        Some(s) => {
                            scans.insert(input.to_ascii_lowercase(), id);
                            let op = ScanOperator::new(&s);
                            Ok((Box::new(op) as Box<dyn Operator>, scan::with_position(&s)))
                        }
                        None => Err(diag(
                            node.span,
                            format!("input `{input}` is not bound to a source"),
                        )),
                    }
                }
                (
                    NodeKind::Timestamp {
                        input, by, time, ..
                    },
                    Some(schema),
                ) => {
                    let by = match by {
                        Some(e) => match compiler.compile(e, &schema) {
                            Ok(p) => match p.data_type(&schema) {
                                Ok(t) if is_time_type(&t) => Ok(Some(p)),
                                Ok(t) => Err(diag(
                                    e.span,
                                    format!(
                                        "TIMESTAMP BY needs a time, a time string or an epoch number, not {t}"
                                    ),
                                )),
                                Err(err) => Err(diag(e.span, err.to_string())),
                            },
                            Err(d) => Err(vec![d]),
                        },
                        None => Ok(None),
                    };
                    by.and_then(|by| {
                        let stats = Arc::new(TimestampStats::default());
                        if !inputs
                            .iter()
                            .any(|i: &InputStats| i.name.eq_ignore_ascii_case(input))
                        {
                            inputs.push(InputStats {
                                name: input.clone(),
                                stats: stats.clone(),
                            });
                        }
                        let stats = inputs
                            .iter()
                            .find(|i| i.name.eq_ignore_ascii_case(input))
                            .map_or(stats, |i| i.stats.clone());
                        TimestampOperator::new(input.clone(), by, *time, &schema, stats)
                            .map(|op| {
                                let s = op.schema();
                                (Box::new(op) as Box<dyn Operator>, s)
                            })
                            .map_err(|e| diag(node.span, e.to_string()))
                    })
                }
                (NodeKind::Filter { predicate }, Some(schema)) => compiler
                    .compile(predicate, &schema)
                    .map_err(|d| vec![d])
                    .and_then(|p| match p.data_type(&schema) {
                        Ok(DataType::Boolean | DataType::Null) => Ok((
                            Box::new(FilterOperator::new(p)) as Box<dyn Operator>,
                            schema.clone(),
                        )),
                        Ok(t) => Err(diag(
                            predicate.span,
                            format!("WHERE needs a condition, but this is {t}"),
                        )),
                        Err(e) => Err(diag(predicate.span, e.to_string())),
                    }),
                (NodeKind::Project { items }, Some(schema)) => {
                    Projection::compile(items, &schema, compiler).map(|p| {
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
                    compiler,
                ),
                (NodeKind::Union, Some(schema)) => {
                    let widths: Vec<usize> = node
                        .inputs
                        .iter()
                        .map(|&i| schemas[i].fields().len())
                        .collect();
                    if widths.iter().any(|&w| w != schema.fields().len()) {
                        Err(diag(
                            node.span,
                            "the SELECTs of a UNION must have the same number of columns",
                        ))
                    } else {
                        Ok((
                            Box::new(UnionOperator::new(schema.clone())) as Box<dyn Operator>,
                            schema,
                        ))
                    }
                }
                (NodeKind::Sink { output }, Some(schema)) => {
                    let key = sinks
                        .keys()
                        .find(|k| k.eq_ignore_ascii_case(output))
                        .cloned();
                    match key.and_then(|k| sinks.remove(&k)) {
                        Some(mut sink) => {
                            let visible = Arc::new(datafusion::arrow::datatypes::Schema::new(
                                schema
                                    .fields()
                                    .iter()
                                    .filter(|f| !f.name().starts_with("__iotql_"))
                                    .cloned()
                                    .collect::<Vec<_>>(),
                            ));
                            if let Err(e) = sink.start(&visible) {
                                problems.push(Diagnostic::new(
                                    "iotql::sink",
                                    node.span,
                                    e.to_string(),
                                    "this output",
                                ));
                            }
                            let rows = Arc::new(AtomicU64::new(0));
                            outputs.push(OutputStats {
                                name: output.clone(),
                                rows: rows.clone(),
                            });
                            let counting = CountingSink { inner: sink, rows };
                            Ok((
                                Box::new(SinkOperator::new(Box::new(counting)))
                                    as Box<dyn Operator>,
                                schema,
                            ))
                        }
                        None => Err(diag(
                            node.span,
                            format!("output `{output}` is not bound to a sink"),
                        )),
                    }
                }
                (_, None) => Err(diag(node.span, "internal: an operator without input")),
            };
            match compiled {
                Ok((op, schema)) => {
                    schemas.push(schema);
                    nodes.push(RuntimeNode {
                        op,
                        input_watermarks: vec![i64::MIN; node.inputs.len().max(1)],
                        watermark: i64::MIN,
                        ended: false,
                    });
                }
                Err(d) => {
                    problems.extend(d);
                    // Later nodes still get checked, against an empty schema.
                    schemas.push(Arc::new(datafusion::arrow::datatypes::Schema::empty()));
                    nodes.push(RuntimeNode {
                        op: Box::new(UnionOperator::new(Arc::new(
                            datafusion::arrow::datatypes::Schema::empty(),
                        ))),
                        input_watermarks: vec![],
                        watermark: i64::MIN,
                        ended: false,
                    });
                }
            }
        }
        if !problems.is_empty() {
            // Problems downstream of a failed node repeat it: keep the first per span.
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
            scans,
            inputs,
            outputs,
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

    /// Dead letters produced since the last call.
    pub fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.dead_letters)
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

    /// Ends every input that has not ended.
    pub fn finish(&mut self) -> Result<(), EngineError> {
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
                    *slot = (*slot).max(wm.0);
                    let min = node
                        .input_watermarks
                        .iter()
                        .copied()
                        .min()
                        .unwrap_or(i64::MIN);
                    if min > node.watermark {
                        node.watermark = min;
                        node.op.on_watermark(EventTime(min), &mut out)?;
                        if min == i64::MAX && !node.ended {
                            node.ended = true;
                            node.op.on_end(&mut out)?;
                        }
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
            node.op.restore(&state[at..])?;
        }
        Ok(())
    }
}
