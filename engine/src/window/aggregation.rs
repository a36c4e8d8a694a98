//! The aggregation shared by every window kind: grouping keys, aggregates
//! kept per group in DataFusion's vectorised `GroupsAccumulator`s (keys
//! interned by DataFusion's `GroupValues`), and the select list and HAVING
//! computed over a closed window's rows.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, TimestampMicrosecondArray};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::execution::FunctionRegistry as _;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::{AggregateExprBuilder, AggregateFunctionExpr};
use datafusion::physical_expr::expressions::Literal as LiteralExpr;
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use iotql_dsl::Diagnostic;
use iotql_dsl::ast::{self, Expr, ExprKind, FunctionArgs, GroupBy, Ident, SelectItem};

use crate::error::EngineError;
use crate::expr::{ExprCompiler, find_field};
use crate::operator::project::Projection;
use crate::time::{EVENT_TIME, event_time_type};

/// The groups of one window (or session, or sliding point) and their
/// accumulators.
pub(crate) struct GroupState {
    /// `None` when the query has no keys: one group.
    groups: Option<Box<dyn GroupValues>>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    group_count: usize,
}

/// The evaluated inputs of a batch: key columns and each aggregate's arguments.
pub(crate) struct Inputs {
    pub keys: Vec<ArrayRef>,
    pub values: Vec<Vec<ArrayRef>>,
}

impl GroupState {
    /// How many groups the window holds.
    pub fn group_count(&self) -> usize {
        self.group_count
    }
}

/// The rows `refs` (batch index, row) of `batches`' inputs, in that order.
pub(crate) fn gather<B: AsRef<Inputs>>(
    batches: &[B],
    refs: &[(usize, usize)],
) -> Result<Inputs, EngineError> {
    let Some(first) = batches.first().map(AsRef::as_ref) else {
        return Err(EngineError::Internal("gathering rows from no batch".into()));
    };
    let column = |get: &dyn Fn(&Inputs) -> &ArrayRef| -> Result<ArrayRef, EngineError> {
        let arrays: Vec<&dyn Array> = batches.iter().map(|b| get(b.as_ref()).as_ref()).collect();
        Ok(datafusion::arrow::compute::interleave(&arrays, refs)?)
    };
    let keys = (0..first.keys.len())
        .map(|k| column(&|i: &Inputs| &i.keys[k]))
        .collect::<Result<Vec<_>, _>>()?;
    let values = (0..first.values.len())
        .map(|a| {
            (0..first.values[a].len())
                .map(|c| column(&|i: &Inputs| &i.values[a][c]))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Inputs { keys, values })
}

impl AsRef<Inputs> for Inputs {
    fn as_ref(&self) -> &Inputs {
        self
    }
}

impl Inputs {
    /// Every column, keys and arguments alike, passed through `f`.
    fn map_columns(
        &self,
        f: impl Fn(&ArrayRef) -> Result<ArrayRef, datafusion::arrow::error::ArrowError>,
    ) -> Result<Inputs, EngineError> {
        Ok(Inputs {
            keys: self.keys.iter().map(&f).collect::<Result<_, _>>()?,
            values: self
                .values
                .iter()
                .map(|v| v.iter().map(&f).collect::<Result<_, _>>())
                .collect::<Result<_, _>>()?,
        })
    }

    /// The rows at `indices`.
    pub fn take(
        &self,
        indices: &datafusion::arrow::array::UInt32Array,
    ) -> Result<Inputs, EngineError> {
        self.map_columns(|a| datafusion::arrow::compute::take(a.as_ref(), indices, None))
    }

    /// The rows where `mask` is true.
    pub fn filter(
        &self,
        mask: &datafusion::arrow::array::BooleanArray,
    ) -> Result<Inputs, EngineError> {
        self.map_columns(|a| datafusion::arrow::compute::filter(a.as_ref(), mask))
    }
}

#[derive(Clone)]
pub(crate) struct Aggregation {
    keys: Vec<Arc<dyn PhysicalExpr>>,
    key_schema: SchemaRef,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// The rows of an emitted window: keys, aggregates, the window end.
    intermediate: SchemaRef,
    having: Option<Arc<dyn PhysicalExpr>>,
    projection: Projection,
    group_ids: Vec<usize>,
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
        "TOPONE" => "first_value",
        "COLLECTTOP" => "collect_top",
        "PERCENTILE_CONT" => "percentile_cont",
        "PERCENTILE_DISC" => "percentile_disc",
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
        if let ExprKind::Function(call) = &e.kind
            && is_window_aggregate(call)
        {
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
        let mut out = e.clone();
        out.map_children(&mut |child| self.rewrite(child));
        out
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

impl Aggregation {
    /// Compiles the aggregation of a windowed SELECT over `input` (which
    /// carries the event time).
    pub fn compile(
        group_by: &GroupBy,
        items: &[SelectItem],
        having: Option<&Expr>,
        input: &SchemaRef,
        compiler: &ExprCompiler,
    ) -> Result<Self, Vec<Diagnostic>> {
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
                if let ExprKind::Column(path) = &x.kind
                    && !path[0].value.starts_with("__iotql_")
                {
                    let name = path
                        .iter()
                        .map(|p| p.value.as_str())
                        .collect::<Vec<_>>()
                        .join(".");
                    problems.push(
                        plan_error(
                            x.span,
                            format!("`{name}` is neither a GROUP BY key nor inside an aggregate"),
                        )
                        .with_help(format!(
                            "add `{name}` to GROUP BY, or aggregate it, e.g. MAX({name})"
                        )),
                    );
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
        Ok(Aggregation {
            keys,
            key_schema: Arc::new(Schema::new(key_fields)),
            aggregates,
            intermediate,
            having,
            projection,
            group_ids: Vec::new(),
        })
    }

    /// The columns that represent `state` in a checkpoint: its keys, then
    /// each accumulator's intermediate state. `state` is rebuilt from them,
    /// so it is unchanged.
    pub fn save_state(&mut self, state: &mut GroupState) -> Result<Vec<ArrayRef>, EngineError> {
        let n = state.group_count;
        let keys = match &mut state.groups {
            Some(g) => g.emit(EmitTo::All)?,
            None => Vec::new(),
        };
        let mut partials = Vec::new();
        for acc in state.accumulators.iter_mut() {
            partials.push(acc.state(EmitTo::All)?);
        }
        let mut columns = keys.clone();
        columns.extend(partials.iter().flatten().cloned());
        *state = self.load_state(&keys, &partials, n)?;
        Ok(columns)
    }

    /// A state from the columns [`Aggregation::save_state`] wrote.
    pub fn state_from_columns(
        &mut self,
        columns: &[ArrayRef],
        groups: usize,
    ) -> Result<GroupState, EngineError> {
        let k = self.keys.len();
        if columns.len() < k {
            return Err(EngineError::State(
                "a window state has too few columns".into(),
            ));
        }
        let (keys, mut rest) = columns.split_at(k);
        let mut partials = Vec::new();
        for a in &self.aggregates {
            let width = a.state_fields()?.len();
            if rest.len() < width {
                return Err(EngineError::State(
                    "a window state has too few columns".into(),
                ));
            }
            let (mine, others) = rest.split_at(width);
            partials.push(mine.to_vec());
            rest = others;
        }
        self.load_state(keys, &partials, groups)
    }

    fn load_state(
        &mut self,
        keys: &[ArrayRef],
        partials: &[Vec<ArrayRef>],
        groups: usize,
    ) -> Result<GroupState, EngineError> {
        let mut state = self.new_state()?;
        match &mut state.groups {
            Some(g) => {
                g.intern(keys, &mut self.group_ids)?;
                state.group_count = g.len();
            }
            None => {
                self.group_ids.clear();
                self.group_ids.resize(groups, 0);
                state.group_count = groups.min(1);
            }
        }
        for (acc, partial) in state.accumulators.iter_mut().zip(partials) {
            acc.merge_batch(partial, &self.group_ids, state.group_count)?;
        }
        Ok(state)
    }

    /// How many key columns and how many argument columns per aggregate an
    /// [`Inputs`] of this aggregation has (for buffered rows in checkpoints).
    pub fn input_widths(&self) -> (usize, Vec<usize>) {
        let widths = self
            .aggregates
            .iter()
            .map(|a| {
                let all = a.all_expressions();
                all.args.len() + all.order_by_exprs.len()
            })
            .collect();
        (self.keys.len(), widths)
    }

    /// An interner of grouping keys (`None` when there are none).
    pub fn key_interner(&self) -> Result<Option<Box<dyn GroupValues>>, EngineError> {
        if self.keys.is_empty() {
            Ok(None)
        } else {
            Ok(Some(new_group_values(
                self.key_schema.clone(),
                &GroupOrdering::None,
            )?))
        }
    }

    /// The rows of `batch` whose keys and arguments can be computed, and
    /// those inputs; the other rows (a failing CAST, ...) become dead
    /// letters. `None` when no row is left (or there was none).
    pub fn checked_inputs(
        &self,
        batch: RecordBatch,
        out: &mut crate::operator::Output,
    ) -> Result<Option<(RecordBatch, Inputs)>, EngineError> {
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        if let Ok(inputs) = self.inputs(&batch) {
            return Ok(Some((batch, inputs)));
        }
        let kept = crate::operator::per_row_on_error(
            &batch,
            "GROUP BY",
            |b| self.inputs(b).map(|_| b.clone()),
            out,
        )?;
        match kept {
            Some(b) if b.num_rows() > 0 => {
                let inputs = self.inputs(&b)?;
                Ok(Some((b, inputs)))
            }
            _ => Ok(None),
        }
    }

    /// Evaluates the keys and the aggregates' arguments over `batch`.
    pub fn inputs(&self, batch: &RecordBatch) -> Result<Inputs, EngineError> {
        let n = batch.num_rows();
        let keys = self
            .keys
            .iter()
            .map(|k| k.evaluate(batch).and_then(|v| v.into_array(n)))
            .collect::<Result<Vec<_>, _>>()?;
        let values = self
            .aggregates
            .iter()
            .map(|a| {
                {
                    // Arguments, then the OVER (ORDER BY ...) columns, as
                    // DataFusion's order-sensitive accumulators expect.
                    let all = a.all_expressions();
                    all.args
                        .into_iter()
                        .chain(all.order_by_exprs)
                        .collect::<Vec<_>>()
                }
                .iter()
                .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
                .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Inputs { keys, values })
    }
    /// The schema of the rows this operator emits.
    pub fn schema(&self) -> SchemaRef {
        self.projection.schema.clone()
    }

    pub fn new_state(&self) -> Result<GroupState, EngineError> {
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
        Ok(GroupState {
            groups,
            accumulators,
            group_count: 0,
        })
    }

    /// Adds rows (already evaluated: keys and aggregate inputs) to the window ending at `end`.
    /// Adds rows (evaluated by [`Aggregation::inputs`]) to `state`.
    pub fn update(
        &mut self,
        state: &mut GroupState,
        inputs: &Inputs,
        rows: usize,
    ) -> Result<(), EngineError> {
        match &mut state.groups {
            Some(groups) => {
                groups.intern(&inputs.keys, &mut self.group_ids)?;
                state.group_count = groups.len();
            }
            None => {
                self.group_ids.clear();
                self.group_ids.resize(rows, 0);
                state.group_count = 1;
            }
        }
        for (acc, vals) in state.accumulators.iter_mut().zip(&inputs.values) {
            acc.update_batch(vals, &self.group_ids, None, state.group_count)?;
        }
        Ok(())
    }

    /// The output rows of a closed window ending at `end` (HAVING applied).
    pub fn emit(&self, end: i64, mut state: GroupState) -> Result<RecordBatch, EngineError> {
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
        self.projection.apply(&batch)
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

pub(crate) fn compile_aggregate(
    call: &ast::FunctionCall,
    name: &str,
    input: &SchemaRef,
    compiler: &ExprCompiler,
) -> Result<AggregateFunctionExpr, Diagnostic> {
    let asa = call.qualified_name();
    let upper = asa.to_ascii_uppercase();
    let Some(df_name) = aggregate_function(&asa) else {
        return Err(Diagnostic::new(
            "iotql::not-supported-yet",
            call.span,
            format!("the aggregate {asa} is not supported by the engine yet"),
            "not supported yet",
        ));
    };
    let udaf = if upper == "PERCENTILE_DISC" {
        Arc::new(datafusion::logical_expr::AggregateUDF::from(
            super::percentile::PercentileDisc::new(),
        ))
    } else if upper == "COLLECTTOP" {
        Arc::new(datafusion::logical_expr::AggregateUDF::from(
            super::collect_top::CollectTop::new(),
        ))
    } else {
        compiler
            .session()
            .udaf(df_name)
            .map_err(|e| plan_error(call.span, format!("{asa}: {e}")))?
    };
    let compile_all = |args: &[Expr]| {
        args.iter()
            .map(|a| compiler.compile(a, input))
            .collect::<Result<Vec<_>, _>>()
    };
    let list: &[Expr] = match &call.args {
        FunctionArgs::List { args, .. } => args,
        FunctionArgs::Star => &[],
    };
    // `... OVER (ORDER BY x [DESC])`: the ranking of TopOne, CollectTop and
    // the percentiles. NULL ranks lowest (ASA).
    let order: Vec<PhysicalSortExpr> = match &call.over {
        Some(over) => over
            .order_by
            .iter()
            .map(|o| {
                Ok(PhysicalSortExpr {
                    expr: compiler.compile(&o.expr, input)?,
                    options: SortOptions {
                        descending: o.asc == Some(false),
                        nulls_first: o.asc != Some(false),
                    },
                })
            })
            .collect::<Result<Vec<_>, Diagnostic>>()?,
        None => Vec::new(),
    };
    let needs_order = matches!(
        upper.as_str(),
        "TOPONE" | "COLLECTTOP" | "PERCENTILE_CONT" | "PERCENTILE_DISC"
    );
    if needs_order && order.is_empty() {
        return Err(plan_error(
            call.span,
            format!("{asa} needs OVER (ORDER BY column)"),
        ));
    }
    let (args, distinct): (Vec<Arc<dyn PhysicalExpr>>, bool) = match (&call.args, upper.as_str()) {
        (FunctionArgs::Star, _) => (
            vec![Arc::new(LiteralExpr::new(ScalarValue::Int64(Some(1))))],
            false,
        ),
        // PERCENTILE_CONT(p) OVER (ORDER BY x): the values are the ORDER BY column.
        (_, "PERCENTILE_CONT" | "PERCENTILE_DISC") => {
            let [p] = list else {
                return Err(plan_error(
                    call.span,
                    format!("{asa} takes one argument, the percentile (0 to 1)"),
                ));
            };
            let value = order[0].expr.clone();
            (vec![value, compiler.compile(p, input)?], false)
        }
        // CollectTop(n [, expr]): the events (or expr of them), then n.
        (_, "COLLECTTOP") => {
            let (n, value) = match list {
                [n] => (
                    n,
                    whole_event(input, compiler).map_err(|e| plan_error(call.span, e))?,
                ),
                [n, e] => (n, compiler.compile(e, input)?),
                _ => {
                    return Err(plan_error(
                        call.span,
                        "CollectTop takes the number of events, then an optional expression",
                    ));
                }
            };
            (vec![value, compiler.compile(n, input)?], false)
        }
        // TopOne(): the whole top-ranked event, as a record.
        (_, "TOPONE") if list.is_empty() => (
            vec![whole_event(input, compiler).map_err(|e| plan_error(call.span, e))?],
            false,
        ),
        (FunctionArgs::List { distinct, .. }, _) => (compile_all(list)?, *distinct),
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
    let mut builder = AggregateExprBuilder::new(udaf, args)
        .schema(input.clone())
        .alias(name)
        .with_distinct(distinct);
    if needs_order {
        builder = builder.order_by(order);
    }
    builder
        .build()
        .map_err(|e| plan_error(call.span, format!("{asa}: {e}")))
}

/// Every visible column of `input` as one record (`named_struct`).
pub(crate) fn whole_event(
    input: &SchemaRef,
    compiler: &ExprCompiler,
) -> Result<Arc<dyn PhysicalExpr>, String> {
    use datafusion::logical_expr::{Expr as DfExpr, lit};
    let mut args = Vec::new();
    for f in input
        .fields()
        .iter()
        .filter(|f| !f.name().starts_with("__iotql_"))
    {
        args.push(lit(f.name().as_str()));
        args.push(DfExpr::Column(datafusion::common::Column::new_unqualified(
            f.name(),
        )));
    }
    let udf = compiler
        .session()
        .udf("named_struct")
        .map_err(|e| e.to_string())?;
    compiler
        .physical(udf.call(args), input, iotql_dsl::Span::default())
        .map_err(|d| d.message)
}
