//! The logical plan: the job as a graph of operators, built from the AST
//! before any data is seen, and printed by `iotql explain`.
//!
//! One `Scan` per input feeds every statement and step that reads it
//! (fan-out); one `Timestamp` per distinct `TIMESTAMP BY` of an input; one
//! `Sink` per output, fed by every SELECT that writes to it.

mod build;
mod explain;

use std::collections::BTreeMap;
use std::time::Duration;

use iotql_dsl::Span;
use iotql_dsl::ast::{Expr, GroupBy, SelectItem, Window};

pub use build::build;

/// Index of a node in [`LogicalPlan::nodes`].
pub type NodeId = usize;

#[derive(Debug, Clone)]
pub struct LogicalPlan {
    /// In topological order: a node's inputs come before it.
    pub nodes: Vec<Node>,
    /// Every input the job reads, declared or bound from outside.
    pub inputs: Vec<InputDecl>,
    /// Every output the job writes.
    pub outputs: Vec<OutputDecl>,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub kind: NodeKind,
    pub inputs: Vec<NodeId>,
    /// Where in the job file this node comes from.
    pub span: Span,
}

// Plans are built once per job: the size of a variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum NodeKind {
    /// Reads an input.
    Scan { input: String },
    /// Sets event time (from an expression, or the arrival time) and the
    /// watermark, and applies the late-event policy.
    Timestamp {
        input: String,
        by: Option<Expr>,
        over: Vec<Expr>,
        time: TimePolicy,
        /// The column holding each event's arrival time (input option
        /// `arrival_time`); without it, the source's own arrival times if
        /// it has them.
        arrival: Option<String>,
    },
    /// The analytic functions of a SELECT (LAG, LAST, ISFIRST), computed
    /// for every event in time order, before the SELECT's WHERE; each adds
    /// a hidden column that the SELECT reads in its place.
    Analytic { functions: Vec<AnalyticFunction> },
    /// JOIN of two streams (inputs: left, right), bounded in time by a
    /// DATEDIFF in ON.
    Join {
        left_outer: bool,
        left_alias: String,
        right_alias: String,
        on: Expr,
    },
    /// JOIN of a stream with reference data (the input `reference`, loaded
    /// from outside); one input, the stream.
    ReferenceJoin {
        reference: String,
        left_outer: bool,
        left_alias: String,
        right_alias: String,
        on: Expr,
    },
    /// CROSS / OUTER APPLY of GetArrayElements or GetRecordProperties: a
    /// row per element, under `alias`.
    Apply {
        outer: bool,
        function: iotql_dsl::ast::FunctionCall,
        alias: String,
    },
    /// Keeps the rows for which the predicate is true.
    Filter { predicate: Expr },
    /// A SELECT without GROUP BY: one output row per input row.
    Project { items: Vec<SelectItem> },
    /// A SELECT with GROUP BY and a window.
    WindowAggregate {
        window: WindowSpec,
        group_by: GroupBy,
        items: Vec<SelectItem>,
        having: Option<Expr>,
    },
    /// All rows of every input.
    Union,
    /// Writes to an output.
    Sink { output: String },
}

/// One analytic function call and the hidden column of its values.
#[derive(Debug, Clone)]
pub struct AnalyticFunction {
    pub call: iotql_dsl::ast::FunctionCall,
    pub column: String,
}

/// The window of a windowed aggregate.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum WindowSpec {
    Window(Window),
    /// `GROUP BY System.Timestamp()`: one window per distinct event time.
    Snapshot,
}

/// Out-of-order and late-arrival handling of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimePolicy {
    /// Events may arrive this much out of order without being late: the
    /// watermark is the largest event time seen minus this.
    pub out_of_order: Duration,
    /// Events whose event time is this much before their arrival time are
    /// late (sources with a real arrival time: Kafka, MQTT).
    pub late_arrival: Duration,
    pub late_policy: LatePolicy,
    /// An event timed more than this ahead of the wall clock (or of its
    /// arrival time) is refused into the dead letters instead of moving the
    /// watermark; `None`: no limit.
    pub max_future: Option<Duration>,
}

/// The default of [`TimePolicy::max_future`]: one day.
pub const DEFAULT_MAX_FUTURE: Duration = Duration::from_secs(86_400);

impl Default for TimePolicy {
    fn default() -> Self {
        TimePolicy {
            out_of_order: Duration::ZERO,
            late_arrival: Duration::from_secs(5),
            late_policy: LatePolicy::Adjust,
            max_future: Some(DEFAULT_MAX_FUTURE),
        }
    }
}

/// A `max_future` as the CLI and input options write it: a duration, or
/// `none` for no limit.
pub fn parse_max_future(text: &str) -> Result<Option<Duration>, String> {
    if text.trim().eq_ignore_ascii_case("none") {
        Ok(None)
    } else {
        crate::time::parse_duration(text).map(Some)
    }
}

/// What happens to an event older than the watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatePolicy {
    /// Its event time is set to the watermark, and it is processed.
    Adjust,
    /// It is counted and dropped.
    Drop,
}

impl std::str::FromStr for LatePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "adjust" => Ok(LatePolicy::Adjust),
            "drop" => Ok(LatePolicy::Drop),
            other => Err(format!("late policy is `adjust` or `drop`, not `{other}`")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct InputDecl {
    pub name: String,
    pub reference: bool,
    /// `WITH (...)` options of the declaration, keys in lower case.
    pub options: BTreeMap<String, String>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct OutputDecl {
    pub name: String,
    pub options: BTreeMap<String, String>,
    pub span: Span,
}

/// What the planner needs from outside the job file.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Defaults for every input (command-line flags); an input's own
    /// options (`out_of_order`, `late_arrival`, `late_policy`) win.
    pub time: TimePolicy,
    /// Inputs bound on the command line that the file does not declare.
    pub extra_inputs: Vec<String>,
}

impl LogicalPlan {
    /// The names the job can read from its inputs' columns (lower case):
    /// the first part of every column path in every expression. `None`
    /// when a `*` asks for every column. Sources read only these columns.
    pub fn referenced_columns(&self) -> Option<std::collections::BTreeSet<String>> {
        let mut names = std::collections::BTreeSet::new();
        let mut arrivals = Vec::new();
        let mut add = |e: &Expr| {
            e.walk(&mut |x| {
                if let iotql_dsl::ast::ExprKind::Column(path) = &x.kind {
                    for part in path.iter().take(2) {
                        names.insert(part.value.to_ascii_lowercase());
                    }
                }
            })
        };
        let items_of = |items: &[SelectItem], add: &mut dyn FnMut(&Expr)| -> bool {
            for item in items {
                match item {
                    SelectItem::Expr { expr, .. } => add(expr),
                    _ => return false,
                }
            }
            true
        };
        for node in &self.nodes {
            match &node.kind {
                NodeKind::Scan { .. } | NodeKind::Union | NodeKind::Sink { .. } => {}
                NodeKind::Timestamp {
                    by, over, arrival, ..
                } => {
                    by.iter().chain(over).for_each(&mut add);
                    arrivals.extend(arrival.iter().map(|a| a.to_ascii_lowercase()));
                }
                NodeKind::Filter { predicate } => add(predicate),
                NodeKind::Join { on, .. } | NodeKind::ReferenceJoin { on, .. } => add(on),
                NodeKind::Apply { function, .. } => function.walk_args(&mut |e| add(e)),
                NodeKind::Analytic { functions } => {
                    for f in functions {
                        f.call.walk_args(&mut |e| add(e));
                    }
                }
                NodeKind::Project { items } => {
                    if !items_of(items, &mut add) {
                        return None;
                    }
                }
                NodeKind::WindowAggregate {
                    window,
                    group_by,
                    items,
                    having,
                } => {
                    if !items_of(items, &mut add) {
                        return None;
                    }
                    group_by.keys().for_each(&mut add);
                    having.iter().for_each(&mut add);
                    if let WindowSpec::Window(w) = window {
                        w.partition_by.iter().for_each(&mut add);
                    }
                }
            }
        }
        names.extend(arrivals);
        Some(names)
    }

    /// The reference inputs the job joins with (loaded from outside with
    /// `Dataflow::load_reference`, not read as streams).
    pub fn references(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|n| match &n.kind {
                NodeKind::ReferenceJoin { reference, .. } => Some(reference.clone()),
                _ => None,
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    pub fn input(&self, name: &str) -> Option<&InputDecl> {
        self.inputs
            .iter()
            .find(|i| i.name.eq_ignore_ascii_case(name))
    }

    /// The nodes that read `id`'s output.
    pub fn consumers(&self, id: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(move |(_, n)| n.inputs.contains(&id))
            .map(|(i, _)| i)
    }
}
