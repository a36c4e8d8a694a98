//! SELECT without GROUP BY: computes the select list for every row, and
//! carries each row's event time (and substream) along.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use iotql_dsl::Diagnostic;
use iotql_dsl::ast::{ExprKind, SelectItem};

use super::{Operator, Output};
use crate::error::EngineError;
use crate::expr::{ExprCompiler, find_field};
use crate::time::{EVENT_TIME, SUBSTREAM};

/// A compiled select list: output columns and the expressions computing them.
#[derive(Debug, Clone)]
pub struct Projection {
    pub exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// The output schema; the event time is its last column.
    pub schema: SchemaRef,
}

impl Projection {
    /// Compiles `items` over `input` (which must carry the event time);
    /// `*` stands for every visible column of the input.
    pub fn compile(
        items: &[SelectItem],
        input: &SchemaRef,
        compiler: &ExprCompiler,
    ) -> Result<Projection, Vec<Diagnostic>> {
        let mut exprs: Vec<Arc<dyn PhysicalExpr>> = Vec::new();
        let mut fields = Vec::new();
        let mut problems = Vec::new();
        for item in items {
            match item {
                // `record.*` (or `alias.record.*`); a bare `alias.*` is `*`.
                SelectItem::QualifiedWildcard(path, span)
                    if find_field(input, &path[0].value).is_some()
                        || path
                            .get(1)
                            .is_some_and(|p| find_field(input, &p.value).is_some()) =>
                {
                    if let Err(d) =
                        record_fields(path, *span, input, compiler, &mut exprs, &mut fields)
                    {
                        problems.push(d);
                    }
                }
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                    for (i, f) in input.fields().iter().enumerate() {
                        if !f.name().starts_with("__iotql_") {
                            exprs.push(Arc::new(Column::new(f.name(), i)));
                            fields.push(f.as_ref().clone());
                        }
                    }
                }
                SelectItem::Expr { expr, alias, .. } => match compiler.compile(expr, input) {
                    Ok(phys) => {
                        let name = match (alias, &expr.kind) {
                            (Some(a), _) => a.value.clone(),
                            (None, ExprKind::Column(path)) => {
                                let last = &path[path.len() - 1].value;
                                // A column keeps its name as the data spells it.
                                find_field(input, last).unwrap_or(last).to_string()
                            }
                            (None, ExprKind::Field { field, .. }) => field.value.clone(),
                            (None, _) => expr.to_string(),
                        };
                        match (phys.data_type(input), phys.nullable(input)) {
                            (Ok(t), Ok(nullable)) => {
                                fields.push(Field::new(name, t, nullable));
                                exprs.push(phys);
                            }
                            (Err(e), _) | (_, Err(e)) => problems.push(Diagnostic::new(
                                "iotql::plan",
                                expr.span,
                                format!("cannot type this expression: {e}"),
                                "here",
                            )),
                        }
                    }
                    Err(d) => problems.push(d),
                },
            }
        }
        let Some(time_index) = input.index_of(EVENT_TIME).ok() else {
            return Err(vec![Diagnostic::new(
                "iotql::internal",
                iotql_dsl::Span::default(),
                "internal: a projection's input has no event time",
                "here",
            )]);
        };
        exprs.push(Arc::new(Column::new(EVENT_TIME, time_index)));
        fields.push(input.field(time_index).clone());
        if let Ok(i) = input.index_of(SUBSTREAM) {
            exprs.push(Arc::new(Column::new(SUBSTREAM, i)));
            fields.push(input.field(i).clone());
        }
        if problems.is_empty() {
            Ok(Projection {
                exprs,
                schema: Arc::new(Schema::new(fields)),
            })
        } else {
            Err(problems)
        }
    }

    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, EngineError> {
        let columns = self
            .exprs
            .iter()
            .map(|e| {
                e.evaluate(batch)
                    .and_then(|v| v.into_array(batch.num_rows()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let options = datafusion::arrow::record_batch::RecordBatchOptions::new()
            .with_row_count(Some(batch.num_rows()));
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?)
    }
}

/// Adds the fields of the record at `path` (`e.reading.*`) to the select
/// list: an expression reading each and its output field.
fn record_fields(
    path: &[iotql_dsl::ast::Ident],
    span: iotql_dsl::Span,
    input: &SchemaRef,
    compiler: &ExprCompiler,
    exprs: &mut Vec<Arc<dyn PhysicalExpr>>,
    fields: &mut Vec<Field>,
) -> Result<(), Diagnostic> {
    let record = iotql_dsl::ast::Expr::new(ExprKind::Column(path.to_vec()), span);
    let compiled = compiler.compile(&record, input)?;
    let Ok(datafusion::arrow::datatypes::DataType::Struct(members)) = compiled.data_type(input)
    else {
        return Err(Diagnostic::new(
            "iotql::plan",
            span,
            format!("`{record}.*` needs a record"),
            "not a record",
        ));
    };
    for m in members.iter() {
        let mut member_path = path.to_vec();
        member_path.push(iotql_dsl::ast::Ident::new(m.name().clone(), span));
        let e = iotql_dsl::ast::Expr::new(ExprKind::Column(member_path), span);
        exprs.push(compiler.compile(&e, input)?);
        fields.push(m.as_ref().clone());
    }
    Ok(())
}

#[derive(Debug)]
pub struct ProjectOperator {
    projection: Projection,
}

impl ProjectOperator {
    pub fn new(projection: Projection) -> Self {
        Self { projection }
    }
}

impl Operator for ProjectOperator {
    fn on_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> Result<(), EngineError> {
        if let Some(rows) =
            super::per_row_on_error(&batch, "SELECT", |b| self.projection.apply(b), out)?
        {
            out.batch(rows);
        }
        Ok(())
    }
}
