//! What can be known about a job without running it: names resolve (every
//! FROM an input or an earlier step, every INTO an output), functions exist,
//! aggregates only with a window, windows only in GROUP BY, exactly one
//! window per GROUP BY, HAVING only with GROUP BY.

use crate::ast::*;
use crate::catalog::{self, FunctionKind};
use crate::diagnostic::Diagnostic;
use crate::span::Span;
use crate::suggest::closest;

/// Names bound outside the file, e.g. by `--input NAME=URI` on the command line.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

/// The output a SELECT without INTO writes to.
pub const DEFAULT_OUTPUT: &str = "output";

/// Every problem in `script`, in file order; empty when the job is valid.
pub fn check(script: &Script, options: &CheckOptions) -> Vec<Diagnostic> {
    let mut checker = Checker::new(script, options);
    checker.run(script);
    checker.problems.sort_by_key(|d| d.span.start);
    checker.problems
}

struct Checker<'a> {
    options: &'a CheckOptions,
    inputs: Vec<&'a Ident>,
    outputs: Vec<&'a Ident>,
    /// Steps defined so far, in order.
    steps: Vec<&'a Ident>,
    /// Every step in the file, to tell "defined later" from "unknown".
    all_steps: Vec<&'a Ident>,
    problems: Vec<Diagnostic>,
}

/// Where an expression stands, for the placement rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clause {
    Select,
    Where,
    GroupKey,
    Having,
    On,
    TimestampBy,
    PartitionBy,
    Apply,
}

impl Clause {
    fn name(self) -> &'static str {
        match self {
            Clause::Select => "SELECT",
            Clause::Where => "WHERE",
            Clause::GroupKey => "GROUP BY",
            Clause::Having => "HAVING",
            Clause::On => "ON",
            Clause::TimestampBy => "TIMESTAMP BY",
            Clause::PartitionBy => "PARTITION BY",
            Clause::Apply => "APPLY",
        }
    }
}

impl<'a> Checker<'a> {
    fn new(script: &'a Script, options: &'a CheckOptions) -> Self {
        let mut all_steps = Vec::new();
        for s in &script.statements {
            if let Statement::Query(q) = s {
                all_steps.extend(q.steps.iter().map(|st| &st.name));
            }
        }
        Checker {
            options,
            inputs: Vec::new(),
            outputs: Vec::new(),
            steps: Vec::new(),
            all_steps,
            problems: Vec::new(),
        }
    }

    fn run(&mut self, script: &'a Script) {
        // Declarations are collected first: a query may precede them.
        for s in &script.statements {
            match s {
                Statement::CreateInput(c) => {
                    declare(&mut self.inputs, &mut self.problems, &c.name, "input")
                }
                Statement::CreateOutput(c) => {
                    declare(&mut self.outputs, &mut self.problems, &c.name, "output")
                }
                Statement::Query(_) => {}
            }
        }
        let mut queries = 0;
        for s in &script.statements {
            if let Statement::Query(q) = s {
                queries += 1;
                self.query(q);
            }
        }
        if queries == 0 {
            let end = script.span.end;
            self.problems.push(
                Diagnostic::new(
                    "iotql::no-query",
                    Span::new(end, end),
                    "the job declares inputs or outputs but has no query",
                    "expected a SELECT",
                )
                .with_help("add a query, e.g. `SELECT * INTO output FROM input`"),
            );
        }
    }

    fn query(&mut self, q: &'a Query) {
        for step in &q.steps {
            if let Some(first) = self.steps.iter().find(|s| s.matches(&step.name.value)) {
                self.problems.push(
                    Diagnostic::new(
                        "iotql::duplicate-step",
                        step.name.span,
                        format!("step `{}` is defined twice", step.name.value),
                        "defined again here",
                    )
                    .with_note(first.span, "first defined here")
                    .with_help("give each step its own name"),
                );
            }
            if let Some(input) = self.inputs.iter().find(|i| i.matches(&step.name.value)) {
                self.problems.push(
                    Diagnostic::new(
                        "iotql::step-shadows-input",
                        step.name.span,
                        format!("step `{}` has the name of an input", step.name.value),
                        "this step",
                    )
                    .with_note(input.span, "the input")
                    .with_help("rename the step"),
                );
            }
            self.set_expr(&step.query, true);
            self.steps.push(&step.name);
        }
        self.set_expr(&q.body, false);
    }

    fn set_expr(&mut self, e: &'a SetExpr, in_step: bool) {
        let selects = e.selects();
        let intos: Vec<&Ident> = selects.iter().filter_map(|s| s.into.as_ref()).collect();
        if let [first, second, ..] = intos.as_slice() {
            self.problems.push(
                Diagnostic::new(
                    "iotql::union-into",
                    second.span,
                    "a UNION writes to one output: INTO may appear once",
                    "second INTO",
                )
                .with_note(first.span, "first INTO")
                .with_help("keep the INTO of the first SELECT and remove the others"),
            );
        }
        for select in selects {
            self.select(select, in_step);
        }
    }

    fn select(&mut self, s: &'a Select, in_step: bool) {
        if let Some(into) = &s.into {
            if in_step {
                self.problems.push(
                    Diagnostic::new(
                        "iotql::into-in-step",
                        into.span,
                        "INTO inside a WITH step",
                        "a step's rows go to the queries that read it",
                    )
                    .with_help("move INTO to a SELECT that reads the step"),
                );
            } else {
                self.output(into);
            }
        }
        self.source(&s.from.source);
        for join in &s.from.joins {
            match join {
                JoinClause::Join(j) => {
                    self.source(&j.source);
                    self.expr(&j.on, Clause::On, false);
                }
                JoinClause::Apply(a) => self.apply(a),
            }
        }

        // A GROUP BY without a window is reported once, as such; its
        // aggregates are not reported again.
        let windowed = match &s.group_by {
            Some(g) => {
                self.group_by(g);
                true
            }
            None => false,
        };
        for item in &s.projection {
            if let SelectItem::Expr { expr, .. } = item {
                self.expr(expr, Clause::Select, windowed);
            }
        }
        if let Some(w) = &s.where_clause {
            self.expr(w, Clause::Where, false);
        }
        if let Some(h) = &s.having {
            if s.group_by.is_none() {
                self.problems.push(
                    Diagnostic::new(
                        "iotql::having-without-group-by",
                        h.span,
                        "HAVING without GROUP BY",
                        "this condition has no groups to filter",
                    )
                    .with_help("use WHERE to filter events, or add GROUP BY with a window"),
                );
            }
            self.expr(h, Clause::Having, windowed);
        }
    }

    fn group_by(&mut self, g: &'a GroupBy) {
        let windows: Vec<&GroupItem> = g.windows().collect();
        for item in &g.items {
            match item {
                GroupItem::Expr(e) => self.expr(e, Clause::GroupKey, false),
                GroupItem::Window(w) => self.window(w),
                GroupItem::Windows(ws, _) => ws.iter().for_each(|w| self.window(w)),
                GroupItem::Snapshot(_) => {}
            }
        }
        match windows.as_slice() {
            [] => {
                // An unknown function close to a window name was reported
                // already as a misspelled window: no second message.
                let misspelled = g.keys().any(
                    |k| matches!(&k.kind, ExprKind::Function(c) if catalog::kind_of(c).is_none()),
                );
                if !misspelled {
                    self.problems.push(
                        Diagnostic::new(
                            "iotql::group-by-without-window",
                            g.span,
                            "GROUP BY needs a window",
                            "no window in this GROUP BY",
                        )
                        .with_help(
                            "a stream is grouped within time windows: add one, e.g. `GROUP BY device_id, TumblingWindow(minute, 5)`",
                        ),
                    );
                }
            }
            [_] => {}
            [first, second, ..] => {
                self.problems.push(
                    Diagnostic::new(
                        "iotql::several-windows",
                        second.span(),
                        "a GROUP BY takes exactly one window",
                        "second window",
                    )
                    .with_note(first.span(), "first window")
                    .with_help("keep one window, or list several in one `Windows(...)` item"),
                );
            }
        }
    }

    fn window(&mut self, w: &'a Window) {
        for d in [w.size, w.hop, w.offset, w.timeout, w.max_duration]
            .into_iter()
            .flatten()
        {
            if !d.unit.is_time_unit() {
                self.problems.push(
                    Diagnostic::new(
                        "iotql::window-unit",
                        w.span,
                        format!("`{}` is not a window unit", d.unit),
                        "in this window",
                    )
                    .with_help("windows take day, hour, minute, second, millisecond or microsecond (a week is `day, 7`)"),
                );
                break;
            }
        }
        for k in &w.partition_by {
            self.expr(k, Clause::PartitionBy, false);
        }
    }

    fn apply(&mut self, a: &'a Apply) {
        let ok = a.function.is("GetArrayElements") || a.function.is("GetRecordProperties");
        if !ok {
            self.problems.push(
                Diagnostic::new(
                    "iotql::apply-function",
                    a.function.span,
                    format!("`{}` cannot be applied", a.function.qualified_name()),
                    "not an array or record expansion",
                )
                .with_help("CROSS APPLY and OUTER APPLY take GetArrayElements(array) or GetRecordProperties(record)"),
            );
        }
        a.function
            .walk_args(&mut |e| self.call_rules(e, Clause::Apply, false));
    }

    fn source(&mut self, src: &'a Source) {
        let name = &src.name;
        if let Some(ts) = &src.timestamp_by {
            self.expr(&ts.expr, Clause::TimestampBy, false);
            ts.over
                .iter()
                .for_each(|e| self.expr(e, Clause::PartitionBy, false));
        }
        src.partition_by
            .iter()
            .for_each(|e| self.expr(e, Clause::PartitionBy, false));
        if self.steps.iter().any(|s| s.matches(&name.value)) {
            return;
        }
        if let Some(later) = self.all_steps.iter().find(|s| s.matches(&name.value)) {
            self.problems.push(
                Diagnostic::new(
                    "iotql::step-order",
                    name.span,
                    format!("step `{}` is used before it is defined", name.value),
                    "used here",
                )
                .with_note(later.span, "defined here")
                .with_help("a step reads inputs and earlier steps only: move it above"),
            );
            return;
        }
        let declared_any = !self.inputs.is_empty();
        let known = self.inputs.iter().any(|i| i.matches(&name.value))
            || self
                .options
                .inputs
                .iter()
                .any(|i| i.eq_ignore_ascii_case(&name.value));
        if declared_any && !known {
            let candidates: Vec<&str> = self
                .inputs
                .iter()
                .map(|i| i.value.as_str())
                .chain(self.steps.iter().map(|s| s.value.as_str()))
                .chain(self.options.inputs.iter().map(String::as_str))
                .collect();
            let mut d = Diagnostic::new(
                "iotql::unknown-input",
                name.span,
                format!(
                    "`{}` is neither a declared input nor an earlier step",
                    name.value
                ),
                "unknown source",
            );
            d.help = Some(match closest(&name.value, candidates.iter().copied()) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!(
                    "declare it with CREATE INPUT {} WITH (...), or bind it with --input {}=URI; known: {}",
                    name.value,
                    name.value,
                    candidates.join(", ")
                ),
            });
            self.problems.push(d);
        }
    }

    fn output(&mut self, into: &'a Ident) {
        if self.outputs.is_empty()
            || into.matches(DEFAULT_OUTPUT)
            || self.outputs.iter().any(|o| o.matches(&into.value))
            || self
                .options
                .outputs
                .iter()
                .any(|o| o.eq_ignore_ascii_case(&into.value))
        {
            return;
        }
        let candidates: Vec<&str> = self
            .outputs
            .iter()
            .map(|o| o.value.as_str())
            .chain(self.options.outputs.iter().map(String::as_str))
            .collect();
        let mut d = Diagnostic::new(
            "iotql::unknown-output",
            into.span,
            format!("`{}` is not a declared output", into.value),
            "unknown output",
        );
        d.help = Some(match closest(&into.value, candidates.iter().copied()) {
            Some(c) => format!("did you mean `{c}`?"),
            None => format!(
                "declare it with CREATE OUTPUT {} WITH (...), or bind it with --output {}=URI; declared: {}",
                into.value,
                into.value,
                candidates.join(", ")
            ),
        });
        self.problems.push(d);
    }

    /// Applies the function rules to every call inside `e`.
    fn expr(&mut self, e: &'a Expr, clause: Clause, windowed: bool) {
        e.walk(&mut |sub| self.call_rules(sub, clause, windowed));
    }

    fn call_rules(&mut self, e: &'a Expr, clause: Clause, windowed: bool) {
        let ExprKind::Function(call) = &e.kind else {
            return;
        };
        let name = call.qualified_name();
        let Some(kind) = catalog::kind_of(call) else {
            self.unknown_function(call, clause);
            return;
        };
        if let (FunctionArgs::List { distinct: true, .. }, false) = (&call.args, call.is("COUNT")) {
            self.problems.push(Diagnostic::new(
                "iotql::distinct",
                call.span,
                format!("DISTINCT is only allowed in COUNT, not in {name}"),
                "DISTINCT here",
            ));
        }
        let analytic_use = call
            .over
            .as_ref()
            .is_some_and(|o| o.limit_duration.is_some());
        match kind {
            FunctionKind::Window => self.problems.push(
                Diagnostic::new(
                    "iotql::window-placement",
                    call.span,
                    format!("{name} is a window: it belongs in GROUP BY, not in {}", clause.name()),
                    "window outside GROUP BY",
                )
                .with_help("group by it (`GROUP BY device_id, TumblingWindow(minute, 5)`); System.Timestamp() gives the window end"),
            ),
            FunctionKind::Aggregate if !analytic_use => {
                let allowed = matches!(clause, Clause::Select | Clause::Having) && windowed;
                if !allowed {
                    let (message, help) = if matches!(clause, Clause::Select | Clause::Having) {
                        (
                            format!("aggregate {name} needs a GROUP BY with a window"),
                            "add a window, e.g. `GROUP BY device_id, TumblingWindow(minute, 5)`, or make it analytic with OVER (LIMIT DURATION(minute, 5))".to_string(),
                        )
                    } else {
                        (
                            format!("aggregate {name} is not allowed in {}", clause.name()),
                            "aggregates are computed per window: filter them with HAVING".to_string(),
                        )
                    };
                    self.problems.push(
                        Diagnostic::new("iotql::aggregate-placement", call.span, message, "aggregate here")
                            .with_help(help),
                    );
                }
            }
            FunctionKind::Analytic
                if (call.is("LAG") || call.is("LAST"))
                    && call.over.as_ref().is_none_or(|o| o.limit_duration.is_none()) =>
            {
                self.problems.push(
                    Diagnostic::new(
                        "iotql::analytic-over",
                        call.span,
                        format!("{name} needs OVER (... LIMIT DURATION(unit, n))"),
                        "no LIMIT DURATION",
                    )
                    .with_help(format!(
                        "say how far back to look, e.g. `{name}(temperature_c) OVER (PARTITION BY device_id LIMIT DURATION(minute, 10))`"
                    )),
                );
            }
            _ => {}
        }
        if let Some(d) = call.over.as_ref().and_then(|o| o.limit_duration)
            && !d.unit.is_time_unit()
        {
            self.problems.push(
                Diagnostic::new(
                    "iotql::window-unit",
                    call.over.as_ref().map_or(call.span, |o| o.span),
                    format!("`{}` is not a unit for LIMIT DURATION", d.unit),
                    "in this OVER clause",
                )
                .with_help("use day, hour, minute, second, millisecond or microsecond"),
            );
        }
    }

    fn unknown_function(&mut self, call: &'a FunctionCall, clause: Clause) {
        let name = call.qualified_name();
        let windows: Vec<&str> = WindowKind::ALL.iter().map(|k| k.name()).collect();
        let window_like =
            clause == Clause::GroupKey || name.to_ascii_lowercase().ends_with("window");
        let suggestion = catalog::other_dialect(&name).or_else(|| {
            if window_like {
                closest(&name, windows.iter().copied()).or_else(|| closest(&name, catalog::names()))
            } else {
                closest(&name, catalog::names())
            }
        });
        let is_window = suggestion.is_some_and(|s| windows.contains(&s));
        let what = if is_window { "window" } else { "function" };
        let mut d = Diagnostic::new(
            if is_window {
                "iotql::unknown-window"
            } else {
                "iotql::unknown-function"
            },
            call.name[0].span.to(call.name[call.name.len() - 1].span),
            format!("unknown {what} `{name}`"),
            format!("no such {what}"),
        );
        d.help = Some(match suggestion {
            Some(s) => format!("did you mean {s}?"),
            None if window_like => format!("windows: {}", windows.join(", ")),
            None => "see docs/language.md for the functions iotql knows; user-defined functions are called as udf.name(...)".into(),
        });
        self.problems.push(d);
    }
}

fn declare<'a>(
    names: &mut Vec<&'a Ident>,
    problems: &mut Vec<Diagnostic>,
    name: &'a Ident,
    what: &str,
) {
    if let Some(first) = names.iter().find(|n| n.matches(&name.value)) {
        problems.push(
            Diagnostic::new(
                "iotql::duplicate-declaration",
                name.span,
                format!("{what} `{}` is declared twice", name.value),
                "declared again here",
            )
            .with_note(first.span, "first declared here")
            .with_help(format!("give each {what} its own name")),
        );
    } else {
        names.push(name);
    }
}
