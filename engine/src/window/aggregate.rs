//! The windowed aggregate: GROUP BY keys and one window, aggregates kept
//! per window and group in DataFusion's vectorised `GroupsAccumulator`s,
//! group keys interned by DataFusion's `GroupValues`.
//!
//! State is one entry per open window: its groups and accumulators. A
//! window's state is freed when the window is emitted, so memory follows
//! the number of open windows and keys, never the number of events.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, TimestampMicrosecondArray, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef, TimestampMicrosecondType};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::{AggregateExprBuilder, AggregateFunctionExpr};
use datafusion::physical_expr::expressions::Literal as LiteralExpr;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use iotql_dsl::Diagnostic;
use iotql_dsl::ast::{self, Expr, ExprKind, FunctionArgs, GroupBy, Ident, SelectItem};

use super::Grid;
use crate::error::EngineError;
use crate::expr::{ExprCompiler, find_field};
use crate::operator::project::Projection;
use crate::operator::{Operator, Output};
use crate::plan::WindowSpec;
use crate::time::{EVENT_TIME, EventTime, event_time_type};

/// Which windows an event falls in.
#[derive(Debug, Clone, Copy)]
enum Assigner {
    Grid(Grid),
    /// One window per distinct event time, ending at it.
    Snapshot,
}

/// The open state of one window.
struct WindowState {
    /// `None` when the query has no keys: one group per window.
    groups: Option<Box<dyn GroupValues>>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    group_count: usize,
}

pub struct WindowAggregateOperator {
    assigner: Assigner,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    key_schema: SchemaRef,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// The rows of an emitted window: keys, aggregates, the window end.
    intermediate: SchemaRef,
    having: Option<Arc<dyn PhysicalExpr>>,
    projection: Projection,
    windows: BTreeMap<i64, WindowState>,
    watermark: i64,
    group_ids: Vec<usize>,
}

impl std::fmt::Debug for WindowAggregateOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowAggregateOperator")
            .field("assigner", &self.assigner)
            .field("open_windows", &self.windows.len())
            .finish_non_exhaustive()
    }
}

/// The DataFusion aggregate implementing an ASA one.
fn aggregate_function(asa: &str) -> Option<&'static str> {
    Some(match asa.to_ascii_uppercase().as_str() {
        "COUNT" => "count",
        "SUM" => "sum",
        "AVG" => "avg",
        "MIN" => "min",
        "MAX" => "max",
        "STDEV" => "stddev",
        "STDEVP" => "stddev_pop",
        "VAR" => "var",
        "VARP" => "var_pop",
        "COLLECT" => "array_agg",
        _ => return None,
    })
}

fn plan_error(span: iotql_dsl::Span, message: impl Into<String>) -> Diagnostic {
    Diagnostic::new("iotql::plan", span, message, "here")
}

fn is_window_aggregate(call: &ast::FunctionCall) -> bool {
    matches!(
        iotql_dsl::catalog::kind_of(call),
        Some(iotql_dsl::catalog::FunctionKind::Aggregate)
    ) && call
        .over
        .as_ref()
        .is_none_or(|o| o.limit_duration.is_none())
}

/// Replaces aggregates and grouping keys in select items by the columns of
/// the intermediate rows.
struct Rewriter<'a> {
    keys: &'a [Expr],
    key_texts: Vec<String>,
    aggregates: Vec<ast::FunctionCall>,
    agg_texts: Vec<String>,
}

fn key_column(i: usize) -> String {
    format!("__iotql_key_{i}")
}

fn agg_column(i: usize) -> String {
    format!("__iotql_agg_{i}")
}

fn column(name: String, span: iotql_dsl::Span) -> Expr {
    Expr::new(ExprKind::Column(vec![Ident::new(name, span)]), span)
}

impl Rewriter<'_> {
    fn key_index(&self, e: &Expr) -> Option<usize> {
        let text = e.to_string();
        if let Some(i) = self.key_texts.iter().position(|k| *k == text) {
            return Some(i);
        }
        // `device_id` matches the key `r.device_id` (and the other way round).
        let ExprKind::Column(path) = &e.kind else {
            return None;
        };
        let last = &path[path.len() - 1];
        self.keys.iter().position(|k| match &k.kind {
            ExprKind::Column(kp) => {
                kp[kp.len() - 1].matches(&last.value) && (kp.len() == 1 || path.len() == 1)
            }
            _ => false,
        })
    }

    fn rewrite(&mut self, e: &Expr) -> Expr {
        if let Some(i) = self.key_index(e) {
            return column(key_column(i), e.span);
        }
        if let ExprKind::Function(call) = &e.kind {
            if is_window_aggregate(call) {
                let text = e.to_string();
                let i = match self.agg_texts.iter().position(|t| *t == text) {
                    Some(i) => i,
                    None => {
                        self.aggregates.push(call.clone());
                        self.agg_texts.push(text);
                        self.aggregates.len() - 1
                    }
                };
                return column(agg_column(i), e.span);
            }
        }
        let mut out = e.clone();
        rewrite_children(&mut out, &mut |child| self.rewrite(child));
        out
    }
}

/// Applies `f` to each direct child expression of `e`, in place.
fn rewrite_children(e: &mut Expr, f: &mut impl FnMut(&Expr) -> Expr) {
    fn apply(b: &mut Box<Expr>, f: &mut impl FnMut(&Expr) -> Expr) {
        **b = f(b);
    }
    match &mut e.kind {
        ExprKind::Literal(_) | ExprKind::Column(_) | ExprKind::DatePart(_) => {}
        ExprKind::Unary { expr, .. }
        | ExprKind::IsNull { expr, .. }
        | ExprKind::Cast { expr, .. }
        | ExprKind::Field { expr, .. } => apply(expr, f),
        ExprKind::Binary { left, right, .. } => {
            apply(left, f);
            apply(right, f);
        }
        ExprKind::Like { expr, pattern, .. } => {
            apply(expr, f);
            apply(pattern, f);
        }
        ExprKind::Between {
            expr, low, high, ..
        } => {
            apply(expr, f);
            apply(low, f);
            apply(high, f);
        }
        ExprKind::InList { expr, list, .. } => {
            apply(expr, f);
            for x in list.iter_mut() {
                *x = f(x);
            }
        }
        ExprKind::Case {
            operand,
            whens,
            else_result,
        } => {
            if let Some(o) = operand {
                apply(o, f);
            }
            for (w, t) in whens.iter_mut() {
                *w = f(w);
                *t = f(t);
            }
            if let Some(x) = else_result {
                apply(x, f);
            }
        }
        ExprKind::Function(call) => {
            if let FunctionArgs::List { args, .. } = &mut call.args {
                for a in args.iter_mut() {
                    *a = f(a);
                }
            }
        }
    }
}

/// The name of an unaliased select item: a column keeps its name, anything
/// else is named by its canonical text.
fn item_name(expr: &Expr, input: &Schema) -> String {
    match &expr.kind {
        ExprKind::Column(path) => {
            let last = &path[path.len() - 1].value;
            find_field(input, last).unwrap_or(last).to_string()
        }
        ExprKind::Field { field, .. } => field.value.clone(),
        _ => expr.to_string(),
    }
}

impl WindowAggregateOperator {
    /// Compiles a windowed SELECT over `input` (which carries the event time).
    pub fn compile(
        window: &WindowSpec,
        group_by: &GroupBy,
        items: &[SelectItem],
        having: Option<&Expr>,
        input: &SchemaRef,
        compiler: &ExprCompiler,
    ) -> Result<Self, Vec<Diagnostic>> {
        let assigner = match window {
            WindowSpec::Snapshot => Assigner::Snapshot,
            WindowSpec::Window(w) => {
                let micros = |d: Option<ast::Duration>| d.and_then(|d| d.micros());
                match w.kind {
                    ast::WindowKind::Tumbling | ast::WindowKind::Hopping => {
                        let size = micros(w.size).ok_or_else(|| {
                            vec![plan_error(w.span, "the window size must be a time")]
                        })?;
                        let hop = if w.kind == ast::WindowKind::Tumbling {
                            size
                        } else {
                            micros(w.hop).unwrap_or(size)
                        };
                        let offset = micros(w.offset).unwrap_or(0);
                        if hop > size {
                            return Err(vec![plan_error(
                                w.span,
                                "the hop of a hopping window must not exceed its size",
                            )]);
                        }
                        Assigner::Grid(Grid { size, hop, offset })
                    }
                    ast::WindowKind::Sliding | ast::WindowKind::Session => {
                        return Err(vec![
                            Diagnostic::new(
                                "iotql::not-supported-yet",
                                w.span,
                                format!("{} is not supported by the engine yet", w.kind.name()),
                                "not supported yet",
                            )
                            .with_help("tumbling, hopping and snapshot windows run today"),
                        ]);
                    }
                }
            }
        };
        let mut problems = Vec::new();

        // Grouping keys.
        let key_exprs: Vec<Expr> = group_by.keys().cloned().collect();
        let mut keys = Vec::new();
        let mut key_fields = Vec::new();
        for (i, k) in key_exprs.iter().enumerate() {
            match compiler.compile(k, input) {
                Ok(p) => match p.data_type(input) {
                    Ok(t) => {
                        key_fields.push(Field::new(key_column(i), t, true));
                        keys.push(p);
                    }
                    Err(e) => {
                        problems.push(plan_error(k.span, format!("cannot type this key: {e}")))
                    }
                },
                Err(d) => problems.push(d),
            }
        }

        // Select items and HAVING over the intermediate rows.
        let mut rewriter = Rewriter {
            keys: &key_exprs,
            key_texts: key_exprs.iter().map(|k| k.to_string()).collect(),
            aggregates: Vec::new(),
            agg_texts: Vec::new(),
        };
        let mut rewritten_items = Vec::new();
        for item in items {
            match item {
                SelectItem::Expr { expr, alias, span } => {
                    let name = alias
                        .clone()
                        .unwrap_or_else(|| Ident::new(item_name(expr, input), expr.span));
                    rewritten_items.push(SelectItem::Expr {
                        expr: rewriter.rewrite(expr),
                        alias: Some(name),
                        span: *span,
                    });
                }
                SelectItem::Wildcard(s) | SelectItem::QualifiedWildcard(_, s) => problems.push(
                    plan_error(*s, "`*` cannot be used with GROUP BY")
                        .with_help("list the keys and aggregates to output"),
                ),
            }
        }
        let having_rewritten = having.map(|h| rewriter.rewrite(h));

        // Columns left after rewriting are neither keys nor aggregated.
        let mut check_leftovers = |e: &Expr| {
            e.walk(&mut |x| {
                if let ExprKind::Column(path) = &x.kind {
                    if !path[0].value.starts_with("__iotql_") {
                        let name = path
                            .iter()
                            .map(|p| p.value.as_str())
                            .collect::<Vec<_>>()
                            .join(".");
                        problems.push(
                            plan_error(
                                x.span,
                                format!(
                                    "`{name}` is neither a GROUP BY key nor inside an aggregate"
                                ),
                            )
                            .with_help(format!(
                                "add `{name}` to GROUP BY, or aggregate it, e.g. MAX({name})"
                            )),
                        );
                    }
                }
            })
        };
        for item in &rewritten_items {
            if let SelectItem::Expr { expr, .. } = item {
                check_leftovers(expr);
            }
        }
        if let Some(h) = &having_rewritten {
            check_leftovers(h);
        }

        // Aggregates.
        let mut aggregates = Vec::new();
        let mut agg_fields = Vec::new();
        for (i, call) in rewriter.aggregates.iter().enumerate() {
            match compile_aggregate(call, &agg_column(i), input, compiler) {
                Ok(a) => {
                    agg_fields.push(Field::new(
                        agg_column(i),
                        a.field().data_type().clone(),
                        true,
                    ));
                    aggregates.push(Arc::new(a));
                }
                Err(d) => problems.push(d),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }

        let mut fields = key_fields.clone();
        fields.extend(agg_fields);
        fields.push(Field::new(EVENT_TIME, event_time_type(), false));
        let intermediate = Arc::new(Schema::new(fields));
        let having = match &having_rewritten {
            Some(h) => Some(compiler.compile(h, &intermediate).map_err(|d| vec![d])?),
            None => None,
        };
        let projection = Projection::compile(&rewritten_items, &intermediate, compiler)?;
        Ok(WindowAggregateOperator {
            assigner,
            keys,
            key_schema: Arc::new(Schema::new(key_fields)),
            aggregates,
            intermediate,
            having,
            projection,
            windows: BTreeMap::new(),
            watermark: i64::MIN,
            group_ids: Vec::new(),
        })
    }

    /// The schema of the rows this operator emits.
    pub fn schema(&self) -> SchemaRef {
        self.projection.schema.clone()
    }

    fn new_window(&self) -> Result<WindowState, EngineError> {
        let groups = if self.keys.is_empty() {
            None
        } else {
            Some(new_group_values(
                self.key_schema.clone(),
                &GroupOrdering::None,
            )?)
        };
        let accumulators = self
            .aggregates
            .iter()
            .map(|a| create_groups_accumulator(a))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(WindowState {
            groups,
            accumulators,
            group_count: 0,
        })
    }

    /// Adds rows (already evaluated: keys and aggregate inputs) to the window ending at `end`.
    fn update(
        &mut self,
        end: i64,
        keys: &[ArrayRef],
        values: &[Vec<ArrayRef>],
        rows: usize,
    ) -> Result<(), EngineError> {
        if !self.windows.contains_key(&end) {
            let w = self.new_window()?;
            self.windows.insert(end, w);
        }
        let Some(state) = self.windows.get_mut(&end) else {
            return Err(EngineError::Internal("window vanished".into()));
        };
        match &mut state.groups {
            Some(groups) => {
                groups.intern(keys, &mut self.group_ids)?;
                state.group_count = groups.len();
            }
            None => {
                self.group_ids.clear();
                self.group_ids.resize(rows, 0);
                state.group_count = 1;
            }
        }
        for (acc, vals) in state.accumulators.iter_mut().zip(values) {
            acc.update_batch(vals, &self.group_ids, None, state.group_count)?;
        }
        Ok(())
    }

    fn emit(
        &mut self,
        end: i64,
        mut state: WindowState,
        out: &mut Output,
    ) -> Result<(), EngineError> {
        let mut columns: Vec<ArrayRef> = match &mut state.groups {
            Some(g) => g.emit(EmitTo::All)?,
            None => Vec::new(),
        };
        let n = state.group_count;
        for acc in state.accumulators.iter_mut() {
            columns.push(acc.evaluate(EmitTo::All)?);
        }
        columns.push(Arc::new(
            TimestampMicrosecondArray::from(vec![end; n]).with_timezone("UTC"),
        ));
        let columns = columns
            .into_iter()
            .zip(self.intermediate.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c)
                } else {
                    cast(&c, f.data_type())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut batch = RecordBatch::try_new(self.intermediate.clone(), columns)?;
        if let Some(h) = &self.having {
            batch = crate::operator::filter::filter(h, &batch)?;
        }
        out.batch(self.projection.apply(&batch)?);
        Ok(())
    }
}

fn create_groups_accumulator(
    a: &Arc<AggregateFunctionExpr>,
) -> Result<Box<dyn GroupsAccumulator>, EngineError> {
    if a.groups_accumulator_supported() {
        return Ok(a.create_groups_accumulator()?);
    }
    let factory = a.clone();
    Ok(Box::new(
        datafusion::physical_expr::GroupsAccumulatorAdapter::new(move || {
            factory.create_accumulator()
        }),
    ))
}

fn compile_aggregate(
    call: &ast::FunctionCall,
    name: &str,
    input: &SchemaRef,
    compiler: &ExprCompiler,
) -> Result<AggregateFunctionExpr, Diagnostic> {
    let asa = call.qualified_name();
    let Some(df_name) = aggregate_function(&asa) else {
        return Err(Diagnostic::new(
            "iotql::not-supported-yet",
            call.span,
            format!("the aggregate {asa} is not supported by the engine yet"),
            "not supported yet",
        ));
    };
    let udaf = compiler
        .session()
        .udaf(df_name)
        .map_err(|e| plan_error(call.span, format!("{asa}: {e}")))?;
    let (args, distinct): (Vec<Arc<dyn PhysicalExpr>>, bool) = match &call.args {
        FunctionArgs::Star => (
            vec![Arc::new(LiteralExpr::new(ScalarValue::Int64(Some(1))))],
            false,
        ),
        FunctionArgs::List { distinct, args } => {
            let compiled = args
                .iter()
                .map(|a| compiler.compile(a, input))
                .collect::<Result<Vec<_>, _>>()?;
            (compiled, *distinct)
        }
    };
    if args.is_empty() {
        return Err(plan_error(call.span, format!("{asa} needs an argument")));
    }
    // The argument types the aggregate accepts (AVG of integers reads floats).
    let coerce = || -> datafusion::error::Result<Vec<Arc<dyn PhysicalExpr>>> {
        let fields = args
            .iter()
            .map(|a| a.return_field(input))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let wanted = datafusion::logical_expr::type_coercion::functions::fields_with_udf(
            &fields,
            udaf.as_ref(),
        )?;
        args.iter()
            .zip(wanted)
            .map(|(a, f)| {
                if &a.data_type(input)? == f.data_type() {
                    Ok(a.clone())
                } else {
                    datafusion::physical_expr::expressions::cast(
                        a.clone(),
                        input,
                        f.data_type().clone(),
                    )
                }
            })
            .collect()
    };
    let args = coerce().map_err(|e| plan_error(call.span, format!("{asa}: {e}")))?;
    AggregateExprBuilder::new(udaf, args)
        .schema(input.clone())
        .alias(name)
        .with_distinct(distinct)
        .build()
        .map_err(|e| plan_error(call.span, format!("{asa}: {e}")))
}

use datafusion::execution::FunctionRegistry as _;

impl Operator for WindowAggregateOperator {
    fn on_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        _out: &mut Output,
    ) -> Result<(), EngineError> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let keys = self
            .keys
            .iter()
            .map(|k| k.evaluate(&batch).and_then(|v| v.into_array(n)))
            .collect::<Result<Vec<_>, _>>()?;
        let values = self
            .aggregates
            .iter()
            .map(|a| {
                a.expressions()
                    .iter()
                    .map(|e| e.evaluate(&batch).and_then(|v| v.into_array(n)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let time_index = batch.schema_ref().index_of(EVENT_TIME)?;
        let times = batch
            .column(time_index)
            .as_primitive::<TimestampMicrosecondType>();
        let times = times.values();

        // Rows by the end of their first window, in order of that end.
        let first_end = |t: i64| match self.assigner {
            Assigner::Grid(g) => g.first_end(t),
            Assigner::Snapshot => t,
        };
        let first = first_end(times[0]);
        let runs: Vec<(i64, Option<UInt32Array>)> = if times.iter().all(|&t| first_end(t) == first)
        {
            vec![(first, None)]
        } else {
            let mut by_end: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
            for (row, &t) in times.iter().enumerate() {
                by_end.entry(first_end(t)).or_default().push(row as u32);
            }
            by_end
                .into_iter()
                .map(|(e, rows)| (e, Some(UInt32Array::from(rows))))
                .collect()
        };
        for (end, rows) in runs {
            let pick = |arrays: &[ArrayRef]| -> Result<Vec<ArrayRef>, EngineError> {
                match &rows {
                    None => Ok(arrays.to_vec()),
                    Some(idx) => arrays
                        .iter()
                        .map(|a| Ok(take(a.as_ref(), idx, None)?))
                        .collect(),
                }
            };
            let run_keys = pick(&keys)?;
            let run_values = values
                .iter()
                .map(|v| pick(v))
                .collect::<Result<Vec<_>, _>>()?;
            let run_rows = rows.as_ref().map_or(n, |r| r.len());
            match self.assigner {
                Assigner::Snapshot => self.update(end, &run_keys, &run_values, run_rows)?,
                Assigner::Grid(g) => {
                    let run_times: Vec<i64> = match &rows {
                        None => times.to_vec(),
                        Some(idx) => idx.values().iter().map(|&r| times[r as usize]).collect(),
                    };
                    for j in 0..g.windows_per_event() {
                        let window_end = end + j * g.hop;
                        let inside: Vec<bool> = run_times
                            .iter()
                            .map(|&t| g.contains(window_end, t))
                            .collect();
                        let count = inside.iter().filter(|&&b| b).count();
                        if count == 0 {
                            continue;
                        }
                        if count == run_rows {
                            self.update(window_end, &run_keys, &run_values, run_rows)?;
                        } else {
                            let mask = datafusion::arrow::array::BooleanArray::from(inside);
                            let f = |a: &ArrayRef| {
                                datafusion::arrow::compute::filter(a.as_ref(), &mask)
                            };
                            let k = run_keys.iter().map(f).collect::<Result<Vec<_>, _>>()?;
                            let v = run_values
                                .iter()
                                .map(|vs| vs.iter().map(f).collect::<Result<Vec<_>, _>>())
                                .collect::<Result<Vec<_>, _>>()?;
                            self.update(window_end, &k, &v, count)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, wm: EventTime, out: &mut Output) -> Result<(), EngineError> {
        self.watermark = self.watermark.max(wm.0);
        while let Some(entry) = self.windows.first_entry() {
            // A window covers (start, end]: an event at `end` is not late
            // until the watermark passes `end`.
            if *entry.key() >= self.watermark && wm != EventTime::MAX {
                break;
            }
            let (end, state) = entry.remove_entry();
            self.emit(end, state, out)?;
        }
        out.watermark(wm);
        Ok(())
    }
}
