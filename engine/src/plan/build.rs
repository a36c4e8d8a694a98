//! AST -> logical plan.

use std::collections::{BTreeMap, HashMap};

use iotql_dsl::ast::*;
use iotql_dsl::check::DEFAULT_OUTPUT;
use iotql_dsl::{Diagnostic, Span};

use super::*;
use crate::time::parse_duration;

/// Plans a checked script. Constructs the engine does not run yet are
/// refused here, with their position, before anything runs.
pub fn build(script: &Script, options: &PlanOptions) -> Result<LogicalPlan, Vec<Diagnostic>> {
    let mut planner = Planner {
        options,
        nodes: Vec::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        steps: HashMap::new(),
        scans: HashMap::new(),
        timestamps: HashMap::new(),
        sinks: BTreeMap::new(),
        substreams: HashMap::new(),
        analytic_columns: 0,
        problems: Vec::new(),
    };
    for s in &script.statements {
        match s {
            Statement::CreateInput(c) => planner.inputs.push(InputDecl {
                name: c.name.value.clone(),
                reference: c.reference,
                options: options_map(&c.options),
                span: c.span,
            }),
            Statement::CreateOutput(c) => planner.outputs.push(OutputDecl {
                name: c.name.value.clone(),
                options: options_map(&c.options),
                span: c.span,
            }),
            Statement::Query(_) => {}
        }
    }
    for name in &options.extra_inputs {
        if !planner
            .inputs
            .iter()
            .any(|i| i.name.eq_ignore_ascii_case(name))
        {
            planner.inputs.push(InputDecl {
                name: name.clone(),
                reference: false,
                options: BTreeMap::new(),
                span: Span::default(),
            });
        }
    }
    for s in &script.statements {
        if let Statement::Query(q) = s {
            planner.query(q);
        }
    }
    planner.finish()
}

fn options_map(entries: &[OptionEntry]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|e| (e.key.value.to_ascii_lowercase(), e.value.clone()))
        .collect()
}

struct Planner<'a> {
    options: &'a PlanOptions,
    nodes: Vec<Node>,
    inputs: Vec<InputDecl>,
    outputs: Vec<OutputDecl>,
    /// Step name (lower case) -> the node producing its rows.
    steps: HashMap<String, NodeId>,
    /// Input name (lower case) -> its Scan.
    scans: HashMap<String, NodeId>,
    /// (input, TIMESTAMP BY text) -> its Timestamp node.
    timestamps: HashMap<(String, String), NodeId>,
    /// Output name (lower case) -> (name as first written, the nodes writing to it, span).
    sinks: BTreeMap<String, (String, Vec<NodeId>, Span)>,
    /// Nodes whose rows come in substreams (`TIMESTAMP BY ... OVER`).
    substreams: HashMap<NodeId, Substreams>,
    /// How many analytic columns have been named.
    analytic_columns: usize,
    problems: Vec<Diagnostic>,
}

/// LAG, LAST, ISFIRST, the anomaly detectors, and aggregates over
/// `LIMIT DURATION`: functions of an event and the events before it.
fn is_analytic(call: &FunctionCall) -> bool {
    call.over
        .as_ref()
        .is_some_and(|o| o.limit_duration.is_some())
        || matches!(
            iotql_dsl::catalog::kind_of(call),
            Some(iotql_dsl::catalog::FunctionKind::Analytic)
        )
}

/// Where the OVER keys of a stream's substreams are among its columns.
#[derive(Debug, Clone, PartialEq)]
struct Substreams {
    /// Each key as the stream's rows name it (see [`key_text`]); `None`
    /// once a SELECT has dropped it.
    keys: Vec<Option<String>>,
    /// The keys as first written, for messages.
    written: Vec<String>,
}

impl Substreams {
    /// The OVER keys (as written, comma-separated) that `present` (key
    /// texts) lacks; `None` when it has them all.
    fn missing_from(&self, present: &[String]) -> Option<String> {
        let missing: Vec<&str> = self
            .keys
            .iter()
            .zip(&self.written)
            .filter(|(key, _)| key.as_ref().is_none_or(|k| !present.contains(k)))
            .map(|(_, written)| written.as_str())
            .collect();
        (!missing.is_empty()).then(|| missing.join(", "))
    }

    /// The keys after a select list: renamed by an alias, kept by `*`,
    /// lost when not selected.
    fn through(&self, items: &[SelectItem]) -> Substreams {
        let wildcard = items.iter().any(|i| matches!(i, SelectItem::Wildcard(_)));
        let keys = self
            .keys
            .iter()
            .map(|key| {
                let key = key.as_ref()?;
                let renamed = items.iter().find_map(|item| match item {
                    SelectItem::Expr { expr, alias, .. } if key_text(expr) == *key => Some(
                        alias
                            .as_ref()
                            .map_or_else(|| key.clone(), |a| a.value.to_lowercase()),
                    ),
                    _ => None,
                });
                renamed.or_else(|| wildcard.then(|| key.clone()))
            })
            .collect();
        Substreams {
            keys,
            written: self.written.clone(),
        }
    }
}

/// How a grouping or OVER key is compared: a column by its last name, any
/// other expression by its canonical text, both without case.
fn key_text(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Column(path) => path[path.len() - 1].value.to_lowercase(),
        _ => e.to_string().to_lowercase(),
    }
}

impl Planner<'_> {
    fn add(&mut self, kind: NodeKind, inputs: Vec<NodeId>, span: Span) -> NodeId {
        self.nodes.push(Node { kind, inputs, span });
        self.nodes.len() - 1
    }

    fn unsupported(&mut self, span: Span, what: &str, issue: &str) {
        self.problems.push(
            Diagnostic::new(
                "iotql::not-supported-yet",
                span,
                format!("{what} is not supported by the engine yet"),
                "not supported yet",
            )
            .with_help(format!(
                "`iotql check` accepts it; running it comes with {issue}"
            )),
        );
    }

    fn query(&mut self, q: &Query) {
        for step in &q.steps {
            if let Some(id) = self.set_expr(&step.query) {
                self.steps.insert(step.name.value.to_ascii_lowercase(), id);
            }
        }
        let Some(id) = self.set_expr(&q.body) else {
            return;
        };
        let into = q
            .body
            .selects()
            .into_iter()
            .find_map(|s| s.into.as_ref())
            .map_or_else(|| DEFAULT_OUTPUT.to_string(), |i| i.value.clone());
        let entry = self
            .sinks
            .entry(into.to_ascii_lowercase())
            .or_insert_with(|| (into.clone(), Vec::new(), q.span));
        entry.1.push(id);
    }

    fn set_expr(&mut self, e: &SetExpr) -> Option<NodeId> {
        match e {
            SetExpr::Select(s) => self.select(s),
            SetExpr::Union { span, .. } => {
                let ids: Vec<NodeId> = e
                    .selects()
                    .into_iter()
                    .filter_map(|s| self.select(s))
                    .collect();
                if ids.len() != e.selects().len() {
                    return None;
                }
                let streams: Vec<Option<Substreams>> = ids
                    .iter()
                    .map(|i| self.substreams.get(i).cloned())
                    .collect();
                if streams.iter().any(|s| s != &streams[0]) {
                    self.problems.push(
                        Diagnostic::new(
                            "iotql::substreams",
                            *span,
                            "the SELECTs of this UNION differ in their substreams",
                            "here",
                        )
                        .with_help(
                            "use TIMESTAMP BY ... OVER with the same key for every input of a UNION, or for none",
                        ),
                    );
                    return None;
                }
                let id = self.add(NodeKind::Union, ids, *span);
                if let Some(s) = streams.into_iter().next().flatten() {
                    self.substreams.insert(id, s);
                }
                Some(id)
            }
        }
    }

    fn select(&mut self, s: &Select) -> Option<NodeId> {
        if let Some(j) = s
            .from
            .joins
            .iter()
            .filter(|j| matches!(j, JoinClause::Join(_)))
            .nth(1)
        {
            self.unsupported(
                j.span(),
                "a second JOIN in one FROM",
                "a later step (join in a WITH step first)",
            );
            return None;
        }
        let (rewritten, analytics) = self.extract_analytics(s);
        let s = &rewritten;
        let mut current = self.source(&s.from.source)?;
        let mut substreams = self.substreams.get(&current).cloned();
        for clause in &s.from.joins {
            match clause {
                JoinClause::Apply(a) => {
                    // Every row keeps its event's time (and substream).
                    current = self.add(
                        NodeKind::Apply {
                            outer: a.kind == ApplyKind::Outer,
                            function: a.function.clone(),
                            alias: a.alias.value.clone(),
                        },
                        vec![current],
                        a.span,
                    );
                }
                JoinClause::Join(j) => {
                    let reference = self
                        .inputs
                        .iter()
                        .find(|i| i.reference && i.name.eq_ignore_ascii_case(&j.source.name.value))
                        .map(|i| i.name.clone());
                    match reference {
                        // Every row keeps its event's time (and substream).
                        Some(reference) => {
                            current = self.add(
                                NodeKind::ReferenceJoin {
                                    reference,
                                    left_outer: j.kind == JoinKind::Left,
                                    left_alias: s.from.source.qualifier().value.clone(),
                                    right_alias: j.source.qualifier().value.clone(),
                                    on: j.on.clone(),
                                },
                                vec![current],
                                j.span,
                            );
                        }
                        None => {
                            current = self.stream_join(s, j, current, substreams.is_some())?;
                            substreams = None;
                        }
                    }
                }
            }
        }
        if !analytics.is_empty() {
            if let Some(g) = &s.group_by {
                self.unsupported(
                    g.span,
                    "an analytic function in a windowed SELECT",
                    "a later issue (compute it in a step before the window)",
                );
                return None;
            }
            if let Some(sub) = &substreams {
                for f in &analytics {
                    self.check_analytic_partition(&f.call, sub)?;
                }
            }
            current = self.add(
                NodeKind::Analytic {
                    functions: analytics,
                },
                vec![current],
                s.span,
            );
        }
        if let Some(w) = &s.where_clause {
            current = self.add(
                NodeKind::Filter {
                    predicate: w.clone(),
                },
                vec![current],
                w.span,
            );
        }
        if let (Some(g), Some(sub)) = (&s.group_by, &substreams) {
            self.check_substream_keys(g, sub)?;
        }
        let id = match &s.group_by {
            None => self.add(
                NodeKind::Project {
                    items: s.projection.clone(),
                },
                vec![current],
                s.span,
            ),
            Some(g) => {
                let window = match g.windows().next() {
                    Some(GroupItem::Window(w)) => WindowSpec::Window(w.clone()),
                    Some(GroupItem::Snapshot(_)) => WindowSpec::Snapshot,
                    Some(other) => {
                        self.unsupported(
                            other.span(),
                            "Windows(...) with several windows",
                            "the analytic-functions issue",
                        );
                        return None;
                    }
                    None => return None,
                };
                self.add(
                    NodeKind::WindowAggregate {
                        window,
                        group_by: g.clone(),
                        items: s.projection.clone(),
                        having: s.having.clone(),
                    },
                    vec![current],
                    s.span,
                )
            }
        };
        if let Some(sub) = substreams {
            self.substreams.insert(id, sub.through(&s.projection));
        }
        Some(id)
    }

    /// A JOIN of the stream `left` with another stream.
    fn stream_join(
        &mut self,
        s: &Select,
        j: &Join,
        left: NodeId,
        left_substreams: bool,
    ) -> Option<NodeId> {
        let right = self.source(&j.source)?;
        if left_substreams || self.substreams.contains_key(&right) {
            self.unsupported(
                j.span,
                "a JOIN of substreams (TIMESTAMP BY ... OVER)",
                "a later step",
            );
            return None;
        }
        Some(self.add(
            NodeKind::Join {
                left_outer: j.kind == JoinKind::Left,
                left_alias: s.from.source.qualifier().value.clone(),
                right_alias: j.source.qualifier().value.clone(),
                on: j.on.clone(),
            },
            vec![left, right],
            j.span,
        ))
    }

    /// An analytic function over substreams looks back within a substream,
    /// so it must partition by every OVER key.
    fn check_analytic_partition(&mut self, call: &FunctionCall, sub: &Substreams) -> Option<()> {
        let partition: Vec<String> = call
            .over
            .as_ref()
            .map(|o| o.partition_by.iter().map(key_text).collect())
            .unwrap_or_default();
        let Some(list) = sub.missing_from(&partition) else {
            return Some(());
        };
        self.problems.push(
            Diagnostic::new(
                "iotql::substreams",
                call.span,
                format!(
                    "{} over substreams must PARTITION BY their OVER key ({list})",
                    call.qualified_name()
                ),
                "does not partition by the OVER key",
            )
            .with_help(format!(
                "each substream (TIMESTAMP BY ... OVER {list}) has a clock of its own: add PARTITION BY {list} to its OVER clause"
            )),
        );
        None
    }

    /// A window over substreams closes per substream, so it must group by
    /// every OVER key (or partition a session window by it).
    fn check_substream_keys(&mut self, g: &GroupBy, sub: &Substreams) -> Option<()> {
        let mut grouped: Vec<String> = g.keys().map(key_text).collect();
        for item in &g.items {
            if let GroupItem::Window(w) = item {
                grouped.extend(w.partition_by.iter().map(key_text));
            }
        }
        let Some(list) = sub.missing_from(&grouped) else {
            return Some(());
        };
        self.problems.push(
            Diagnostic::new(
                "iotql::substreams",
                g.span,
                format!("a window over substreams must GROUP BY their OVER key ({list})"),
                "does not group by the OVER key",
            )
            .with_help(format!(
                "each substream (TIMESTAMP BY ... OVER {list}) has a clock of its own, so a window closes per substream: add {list} to the GROUP BY, or select it under its name in the steps before"
            )),
        );
        None
    }

    /// Takes the analytic functions (LAG, LAST, ISFIRST, anything with
    /// LIMIT DURATION) out of the select list and WHERE of `s`: each call
    /// becomes a hidden column, which the returned SELECT reads instead.
    fn extract_analytics(&mut self, s: &Select) -> (Select, Vec<AnalyticFunction>) {
        let mut functions: Vec<AnalyticFunction> = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        let mut rewrite = |e: &Expr| -> Expr {
            fn go(
                e: &Expr,
                functions: &mut Vec<AnalyticFunction>,
                texts: &mut Vec<String>,
                next: &mut usize,
            ) -> Expr {
                if let ExprKind::Function(call) = &e.kind
                    && is_analytic(call)
                {
                    let text = e.to_string();
                    let i = match texts.iter().position(|t| *t == text) {
                        Some(i) => i,
                        None => {
                            functions.push(AnalyticFunction {
                                call: call.clone(),
                                column: format!("__iotql_analytic_{next}"),
                            });
                            *next += 1;
                            texts.push(text);
                            functions.len() - 1
                        }
                    };
                    let column = Ident::new(functions[i].column.clone(), e.span);
                    return Expr::new(ExprKind::Column(vec![column]), e.span);
                }
                let mut out = e.clone();
                out.map_children(&mut |c| go(c, functions, texts, next));
                out
            }
            go(e, &mut functions, &mut texts, &mut self.analytic_columns)
        };
        let mut out = s.clone();
        for item in &mut out.projection {
            if let SelectItem::Expr { expr, .. } = item {
                *expr = rewrite(expr);
            }
        }
        if let Some(w) = &mut out.where_clause {
            *w = rewrite(w);
        }
        (out, functions)
    }

    /// The node whose rows a FROM source names: a step, or an input's
    /// Timestamp node (created once per input and TIMESTAMP BY).
    fn source(&mut self, src: &Source) -> Option<NodeId> {
        let key = src.name.value.to_ascii_lowercase();
        if let Some(&step) = self.steps.get(&key) {
            if let Some(ts) = &src.timestamp_by {
                self.problems.push(
                    Diagnostic::new(
                        "iotql::timestamp-on-step",
                        ts.span,
                        "TIMESTAMP BY applies to inputs, not to steps",
                        "on a step",
                    )
                    .with_help(format!(
                        "a step keeps the event time of its input: move TIMESTAMP BY to the FROM that reads the input, inside step `{}`",
                        src.name.value
                    )),
                );
            }
            return Some(step);
        }
        // PARTITION BY only states how the input is partitioned; one worker
        // reads every partition, so it does not change the plan.
        let input_name = match self
            .inputs
            .iter()
            .find(|i| i.name.eq_ignore_ascii_case(&src.name.value))
        {
            Some(i) => i.name.clone(),
            None => {
                // No declarations: any name is an input bound at run time.
                self.inputs.push(InputDecl {
                    name: src.name.value.clone(),
                    reference: false,
                    options: BTreeMap::new(),
                    span: src.name.span,
                });
                src.name.value.clone()
            }
        };
        let scan = match self.scans.get(&key) {
            Some(&id) => id,
            None => {
                let id = self.add(
                    NodeKind::Scan {
                        input: input_name.clone(),
                    },
                    vec![],
                    src.name.span,
                );
                self.scans.insert(key.clone(), id);
                id
            }
        };
        let ts_text = src
            .timestamp_by
            .as_ref()
            .map(|t| t.to_string())
            .unwrap_or_default();
        if let Some(&id) = self.timestamps.get(&(key.clone(), ts_text.clone())) {
            return Some(id);
        }
        let time = self.time_policy(&input_name)?;
        let (by, over, span) = match &src.timestamp_by {
            Some(t) => (Some(t.expr.clone()), t.over.clone(), t.span),
            None => (None, Vec::new(), src.span),
        };
        let substreams = (!over.is_empty()).then(|| Substreams {
            keys: over.iter().map(|k| Some(key_text(k))).collect(),
            written: over.iter().map(|k| k.to_string()).collect(),
        });
        let id = self.add(
            NodeKind::Timestamp {
                arrival: self
                    .inputs
                    .iter()
                    .find(|i| i.name.eq_ignore_ascii_case(&input_name))
                    .and_then(|i| i.options.get("arrival_time").cloned()),
                input: input_name,
                by,
                over,
                time,
            },
            vec![scan],
            span,
        );
        self.timestamps.insert((key, ts_text), id);
        if let Some(s) = substreams {
            self.substreams.insert(id, s);
        }
        Some(id)
    }

    /// The command-line defaults, overridden by the input's own options.
    fn time_policy(&mut self, input: &str) -> Option<TimePolicy> {
        let mut policy = self.options.time;
        let Some(decl) = self
            .inputs
            .iter()
            .find(|i| i.name.eq_ignore_ascii_case(input))
        else {
            return Some(policy);
        };
        let span = decl.span;
        let mut errors = Vec::new();
        for (key, value) in &decl.options {
            let result = match key.as_str() {
                "out_of_order" => parse_duration(value).map(|d| policy.out_of_order = d),
                "late_arrival" => parse_duration(value).map(|d| policy.late_arrival = d),
                "late_policy" => value.parse().map(|p| policy.late_policy = p),
                "max_future" => super::parse_max_future(value).map(|d| policy.max_future = d),
                _ => Ok(()),
            };
            if let Err(e) = result {
                errors.push(Diagnostic::new(
                    "iotql::input-option",
                    span,
                    format!("option `{key}` of input `{input}`: {e}"),
                    "in this declaration",
                ));
            }
        }
        if errors.is_empty() {
            Some(policy)
        } else {
            self.problems.extend(errors);
            None
        }
    }

    fn finish(mut self) -> Result<LogicalPlan, Vec<Diagnostic>> {
        let sinks = std::mem::take(&mut self.sinks);
        for (_, (name, inputs, span)) in sinks {
            let name = self
                .outputs
                .iter()
                .find(|o| o.name.eq_ignore_ascii_case(&name))
                .map_or(name, |o| o.name.clone());
            if !self.outputs.iter().any(|o| o.name == name) {
                self.outputs.push(OutputDecl {
                    name: name.clone(),
                    options: BTreeMap::new(),
                    span,
                });
            }
            self.add(NodeKind::Sink { output: name }, inputs, span);
        }
        if self.problems.is_empty() {
            Ok(LogicalPlan {
                nodes: self.nodes,
                inputs: self.inputs,
                outputs: self.outputs,
            })
        } else {
            self.problems.sort_by_key(|d| d.span.start);
            Err(self.problems)
        }
    }
}
