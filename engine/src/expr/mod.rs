//! ASA expressions compiled once into DataFusion physical expressions,
//! evaluated on whole batches.
//!
//! The AST is translated into a DataFusion logical expression (names
//! resolved case-insensitively against the input schema, ASA function names
//! mapped to DataFusion's), then planned with type coercion by a
//! DataFusion session into a `PhysicalExpr`. ASA functions that DataFusion
//! lacks or computes differently are ours, in [`functions`].

pub mod functions;

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType as ArrowType, Schema, SchemaRef};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::expr::{Case, Like};
use datafusion::logical_expr::{BinaryExpr, Expr as DfExpr, Operator, lit};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use iotql_dsl::ast::{self, BinaryOp, DataType, ExprKind, FunctionArgs, Literal, UnaryOp};
use iotql_dsl::{Diagnostic, Span};

use crate::time::{EVENT_TIME, event_time_type};

/// Compiles expressions; holds the DataFusion session whose functions they call.
pub struct ExprCompiler {
    ctx: SessionContext,
}

impl std::fmt::Debug for ExprCompiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExprCompiler").finish_non_exhaustive()
    }
}

impl Default for ExprCompiler {
    fn default() -> Self {
        Self::new()
    }
}

/// The DataFusion scalar function that implements an ASA one.
fn scalar_function(asa: &str) -> Option<&'static str> {
    Some(match asa.to_ascii_uppercase().as_str() {
        "ABS" => "abs",
        "ACOS" => "acos",
        "ASIN" => "asin",
        "ATAN" => "atan",
        "ATN2" => "atan2",
        "COS" => "cos",
        "COT" => "cot",
        "DEGREES" => "degrees",
        "EXP" => "exp",
        "LOG10" => "log10",
        "PI" => "pi",
        "RADIANS" => "radians",
        "ROUND" => "round",
        "SIN" => "sin",
        "SQRT" => "sqrt",
        "TAN" => "tan",
        _ => return None,
    })
}

/// The Arrow type of an ASA type.
pub fn arrow_type(t: DataType) -> Option<ArrowType> {
    Some(match t {
        DataType::Bigint => ArrowType::Int64,
        DataType::Float => ArrowType::Float64,
        DataType::Nvarchar => ArrowType::Utf8,
        DataType::Datetime => event_time_type(),
        DataType::Bit => ArrowType::Boolean,
        DataType::Record | DataType::Array => return None,
    })
}

fn error(span: Span, message: impl Into<String>, label: &str) -> Diagnostic {
    Diagnostic::new("iotql::plan", span, message, label)
}

impl ExprCompiler {
    pub fn new() -> Self {
        let ctx = SessionContext::new();
        functions::register(&ctx);
        ExprCompiler { ctx }
    }

    /// The session, for aggregate functions.
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// Compiles `e` against `schema`.
    pub fn compile(
        &self,
        e: &ast::Expr,
        schema: &SchemaRef,
    ) -> Result<Arc<dyn PhysicalExpr>, Diagnostic> {
        let logical = self.logical(e, schema)?;
        self.physical(logical, schema, e.span)
    }

    /// Plans a DataFusion logical expression (with type coercion).
    pub fn physical(
        &self,
        logical: DfExpr,
        schema: &SchemaRef,
        span: Span,
    ) -> Result<Arc<dyn PhysicalExpr>, Diagnostic> {
        let df_schema = DFSchema::try_from(schema.as_ref().clone())
            .map_err(|e| error(span, format!("cannot use this input's schema: {e}"), "here"))?;
        self.ctx
            .create_physical_expr(logical, &df_schema)
            .map_err(|e| error(span, type_message(&e.to_string()), "in this expression"))
    }

    /// Translates `e` into a DataFusion logical expression over `schema`.
    pub fn logical(&self, e: &ast::Expr, schema: &Schema) -> Result<DfExpr, Diagnostic> {
        let span = e.span;
        Ok(match &e.kind {
            ExprKind::Literal(l) => lit(match l {
                Literal::Integer(i) => ScalarValue::Int64(Some(*i)),
                Literal::Float(x) => ScalarValue::Float64(Some(*x)),
                Literal::String(s) => ScalarValue::Utf8(Some(s.clone())),
                Literal::Boolean(b) => ScalarValue::Boolean(Some(*b)),
                Literal::Null => ScalarValue::Null,
            }),
            ExprKind::Column(path) => column_path(path, schema, span)?,
            // The first argument of DATEADD and co.: its canonical name.
            ExprKind::DatePart(p) => lit(p.name()),
            ExprKind::Unary { op, expr } => {
                let inner = self.logical(expr, schema)?;
                match op {
                    UnaryOp::Minus => DfExpr::Negative(Box::new(inner)),
                    UnaryOp::Plus => inner,
                    UnaryOp::Not => DfExpr::Not(Box::new(inner)),
                }
            }
            ExprKind::Binary { op, left, right } => DfExpr::BinaryExpr(BinaryExpr::new(
                Box::new(self.logical(left, schema)?),
                operator(*op),
                Box::new(self.logical(right, schema)?),
            )),
            ExprKind::Like {
                expr,
                negated,
                pattern,
            } => DfExpr::Like(Like::new(
                *negated,
                Box::new(self.logical(expr, schema)?),
                Box::new(self.logical(pattern, schema)?),
                None,
                false,
            )),
            ExprKind::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let e = self.logical(expr, schema)?;
                let (low, high) = (self.logical(low, schema)?, self.logical(high, schema)?);
                if *negated {
                    e.not_between(low, high)
                } else {
                    e.between(low, high)
                }
            }
            ExprKind::InList {
                expr,
                negated,
                list,
            } => {
                let e = self.logical(expr, schema)?;
                let list = list
                    .iter()
                    .map(|x| self.logical(x, schema))
                    .collect::<Result<Vec<_>, _>>()?;
                e.in_list(list, *negated)
            }
            ExprKind::IsNull { expr, negated } => {
                let e = self.logical(expr, schema)?;
                if *negated {
                    e.is_not_null()
                } else {
                    e.is_null()
                }
            }
            ExprKind::Case {
                operand,
                whens,
                else_result,
            } => {
                let operand = match operand {
                    Some(o) => Some(Box::new(self.logical(o, schema)?)),
                    None => None,
                };
                let whens = whens
                    .iter()
                    .map(|(w, t)| {
                        Ok((
                            Box::new(self.logical(w, schema)?),
                            Box::new(self.logical(t, schema)?),
                        ))
                    })
                    .collect::<Result<Vec<_>, Diagnostic>>()?;
                let else_result = match else_result {
                    Some(x) => Some(Box::new(self.logical(x, schema)?)),
                    None => None,
                };
                DfExpr::Case(Case::new(operand, whens, else_result))
            }
            ExprKind::Cast {
                expr,
                data_type,
                try_cast,
            } => {
                let inner = self.logical(expr, schema)?;
                functions::cast(&self.ctx, inner, *data_type, *try_cast)
                    .map_err(|m| error(span, m, "in this CAST"))?
            }
            ExprKind::Function(call) => self.function(call, schema)?,
            ExprKind::Field { expr, field } => {
                let base = self.logical(expr, schema)?;
                datafusion::functions::core::expr_fn::get_field(base, field.value.clone())
            }
        })
    }

    fn function(&self, call: &ast::FunctionCall, schema: &Schema) -> Result<DfExpr, Diagnostic> {
        let span = call.span;
        if call.name.len() == 2
            && call.name[0].matches("System")
            && call.name[1].matches("Timestamp")
        {
            return column_named(EVENT_TIME, schema, span);
        }
        let name = call.qualified_name();
        let args = match &call.args {
            FunctionArgs::Star => {
                return Err(error(
                    span,
                    format!("{name}(*) is only valid for COUNT"),
                    "here",
                ));
            }
            FunctionArgs::List { args, .. } => args
                .iter()
                .map(|a| self.logical(a, schema))
                .collect::<Result<Vec<_>, _>>()?,
        };
        // COALESCE as CASE: DataFusion's coalesce must be simplified into a
        // CASE before it runs, and that is what it means.
        // ISNULL(x, replacement) is COALESCE with two arguments.
        if call.is("ISNULL") && args.len() != 2 {
            return Err(error(
                span,
                "ISNULL takes two arguments: ISNULL(value, replacement)",
                "here",
            ));
        }
        if (call.is("COALESCE") || call.is("ISNULL")) && !args.is_empty() {
            let mut args = args;
            let last = args.pop().unwrap_or_else(|| lit(ScalarValue::Null));
            if args.is_empty() {
                return Ok(last);
            }
            let whens = args
                .into_iter()
                .map(|a| (Box::new(a.clone().is_not_null()), Box::new(a)))
                .collect();
            return Ok(DfExpr::Case(Case::new(None, whens, Some(Box::new(last)))));
        }
        // ASA's LEN counts characters without trailing blanks.
        if call.is("LEN") && args.len() == 1 {
            let udf = |n: &str| {
                self.ctx
                    .udf(n)
                    .map_err(|e| error(span, format!("{name}: {e}"), "here"))
            };
            let trimmed = udf("rtrim")?.call(args);
            return Ok(udf("character_length")?.call(vec![trimmed]));
        }
        // ASA's SIGN keeps its argument's type: -1, 0, 1 for integers.
        if call.is("SIGN") && args.len() == 1 {
            let x = args
                .into_iter()
                .next()
                .unwrap_or_else(|| lit(ScalarValue::Null));
            let zero = x.clone() * lit(ScalarValue::Int64(Some(0)));
            return Ok(DfExpr::Case(Case::new(
                None,
                vec![
                    (Box::new(x.clone().gt(lit(0i64))), Box::new(lit(1i64))),
                    (Box::new(x.lt(lit(0i64))), Box::new(lit(-1i64))),
                ],
                Some(Box::new(zero)),
            )));
        }
        if call.is("SQUARE") && args.len() == 1 {
            let x = args
                .into_iter()
                .next()
                .unwrap_or_else(|| lit(ScalarValue::Null));
            return Ok(x.clone() * x);
        }
        if call.name.len() == 1 && functions::is_asa_function(&name) {
            return functions::call(&self.ctx, &name, args)
                .map_err(|m| error(span, m, "in this call"));
        }
        let Some(df_name) = (call.name.len() == 1)
            .then(|| scalar_function(&name))
            .flatten()
        else {
            let what = match iotql_dsl::catalog::kind_of(call) {
                Some(iotql_dsl::catalog::FunctionKind::Aggregate) => {
                    "an aggregate outside a windowed SELECT or HAVING".to_string()
                }
                _ => format!("the function {name}"),
            };
            return Err(error(
                span,
                format!("{what} is not supported by the engine yet"),
                "not supported yet",
            ));
        };
        let udf = self
            .ctx
            .udf(df_name)
            .map_err(|e| error(span, format!("{name}: {e}"), "here"))?;
        Ok(udf.call(args))
    }
}

fn operator(op: BinaryOp) -> Operator {
    match op {
        BinaryOp::Or => Operator::Or,
        BinaryOp::And => Operator::And,
        BinaryOp::Eq => Operator::Eq,
        BinaryOp::NotEq => Operator::NotEq,
        BinaryOp::Lt => Operator::Lt,
        BinaryOp::LtEq => Operator::LtEq,
        BinaryOp::Gt => Operator::Gt,
        BinaryOp::GtEq => Operator::GtEq,
        BinaryOp::Plus => Operator::Plus,
        BinaryOp::Minus => Operator::Minus,
        BinaryOp::Multiply => Operator::Multiply,
        BinaryOp::Divide => Operator::Divide,
        BinaryOp::Modulo => Operator::Modulo,
        BinaryOp::BitAnd => Operator::BitwiseAnd,
        BinaryOp::BitOr => Operator::BitwiseOr,
        BinaryOp::BitXor => Operator::BitwiseXor,
    }
}

/// DataFusion's planning errors, shortened for people.
fn type_message(e: &str) -> String {
    // The refusals of our own functions (`functions`), unwrapped.
    let e = e
        .split_once("coercion failed with: ")
        .map_or(e, |(_, ours)| ours);
    let e = e.trim_start_matches("Error during planning: ");
    format!("this expression cannot be computed: {e}")
}

/// The field of `schema` named `name`, case-insensitively (exact case first).
pub fn find_field<'s>(schema: &'s Schema, name: &str) -> Option<&'s str> {
    schema
        .fields()
        .iter()
        .find(|f| f.name() == name)
        .or_else(|| {
            schema
                .fields()
                .iter()
                .find(|f| f.name().eq_ignore_ascii_case(name))
        })
        .map(|f| f.name().as_str())
}

fn column_named(name: &str, schema: &Schema, span: Span) -> Result<DfExpr, Diagnostic> {
    match find_field(schema, name) {
        Some(actual) => Ok(DfExpr::Column(Column::new_unqualified(actual))),
        None => Err(error(
            span,
            format!("no column `{name}` here"),
            "unknown column",
        )),
    }
}

/// `a.b.c`: a column, then record fields. A first part that is not a column
/// is a source qualifier (`r.temp` where `r` names the source) and is skipped.
fn column_path(path: &[ast::Ident], schema: &Schema, span: Span) -> Result<DfExpr, Diagnostic> {
    let visible: Vec<&str> = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|n| !n.starts_with("__iotql_"))
        .collect();
    let mut parts = path;
    if parts.len() > 1 && find_field(schema, &parts[0].value).is_none() {
        parts = &parts[1..];
    }
    let Some(actual) = find_field(schema, &parts[0].value) else {
        let name = &parts[0].value;
        let mut d = error(
            parts[0].span,
            format!("no column `{name}` in the input"),
            "unknown column",
        );
        d.help = Some(
            match iotql_dsl::suggest::closest(name, visible.iter().copied()) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!("the columns are: {}", visible.join(", ")),
            },
        );
        return Err(d);
    };
    let _ = span;
    let mut e = DfExpr::Column(Column::new_unqualified(actual));
    // Record paths: each part names a field of the record before it.
    let mut record = schema
        .field_with_name(actual)
        .ok()
        .map(|f| f.data_type().clone());
    let mut path_so_far = actual.to_string();
    for field in &parts[1..] {
        if let Some(ArrowType::Struct(fields)) = &record {
            match fields
                .iter()
                .find(|f| f.name().eq_ignore_ascii_case(&field.value))
            {
                Some(f) => {
                    e = datafusion::functions::core::expr_fn::get_field(e, f.name().clone());
                    record = Some(f.data_type().clone());
                }
                None => {
                    let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
                    let mut d = error(
                        field.span,
                        format!("`{path_so_far}` has no field `{}`", field.value),
                        "unknown field",
                    );
                    d.help = Some(
                        match iotql_dsl::suggest::closest(&field.value, names.iter().copied()) {
                            Some(c) => format!("did you mean `{path_so_far}.{c}`?"),
                            None => {
                                format!("the fields of `{path_so_far}` are: {}", names.join(", "))
                            }
                        },
                    );
                    return Err(d);
                }
            }
        } else {
            e = datafusion::functions::core::expr_fn::get_field(e, field.value.clone());
            record = None;
        }
        path_so_far.push('.');
        path_so_far.push_str(&field.value);
    }
    Ok(e)
}
