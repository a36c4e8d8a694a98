//! ASA's scalar functions that DataFusion lacks or computes differently,
//! as DataFusion scalar UDFs evaluated on whole Arrow arrays.
//!
//! [`register`] adds them to an `ExprCompiler`'s session; [`call`] builds
//! the call of an ASA function by its (case-insensitive) name, and [`cast`]
//! builds CAST / TRY_CAST. ASA functions that DataFusion computes as ASA
//! documents (ABS, SQRT, UPPER, SUBSTRING, ...) are not here: the compiler
//! maps them to DataFusion's own.
//!
//! Conventions shared by every function here:
//! - NULL in gives NULL out, unless ASA documents otherwise (CONCAT).
//! - A value the function cannot take (text that is not a datetime, a
//!   negative LEFT length, a malformed geography, impossible date parts) is
//!   an evaluation error, as a failed CAST is, so that the operators can
//!   send the event to the dead letters. Wrong argument types that no value
//!   can fix are refused when the job is compiled.
//! - Strings are counted in Unicode characters (code points); .NET, and so
//!   ASA, counts UTF-16 units, which differs only outside the BMP (emoji).
//! - Datetimes are `Timestamp(µs, "UTC")`; text given where a datetime is
//!   expected is read as ISO 8601 (see [`datetime::parse_datetime`]).
//! - A date part (`DATEADD(mi, ...)`) reaches the functions as a string
//!   literal of its canonical name (`'minute'`).

mod cast;
mod datetime;
mod geo;
mod math;
mod nested;
mod string;

use std::any::Any;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility, lit,
};
use datafusion::prelude::SessionContext;

pub use cast::cast;
pub use datetime::parse_datetime;

/// One ASA function: how its arguments are coerced, what it returns and how
/// it runs. Each module implements it on an enum of its functions.
trait AsaFunction: Debug + PartialEq + Eq + Hash + Send + Sync + Any {
    /// The name under which the session knows the function.
    fn name(&self) -> &'static str;

    /// The types the arguments are cast to before the call, or an error
    /// (the job is refused) for types no value of which the function takes.
    fn coerce(&self, types: &[DataType]) -> Result<Vec<DataType>>;

    /// The type of the result (coerced argument types; literal arguments).
    fn return_type(
        &self,
        types: &[DataType],
        literals: &[Option<&ScalarValue>],
    ) -> Result<DataType>;

    /// Computes the function over arrays of equal length (scalars are
    /// expanded by [`run`] unless the function handles them itself).
    fn invoke(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue>;
}

/// Adapts an [`AsaFunction`] to DataFusion.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Udf<F> {
    f: F,
    signature: Signature,
}

impl<F: AsaFunction> ScalarUDFImpl for Udf<F> {
    fn name(&self) -> &str {
        self.f.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.f.coerce(arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.f.return_type(arg_types, &vec![None; arg_types.len()])
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let t = self.f.return_type(&types, args.scalar_arguments)?;
        Ok(Arc::new(Field::new(self.f.name(), t, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.f.invoke(args)
    }
}

fn udf<F: AsaFunction>(f: F) -> ScalarUDF {
    ScalarUDF::new_from_impl(Udf {
        f,
        signature: Signature::user_defined(Volatility::Immutable),
    })
}

fn all_udfs() -> Vec<ScalarUDF> {
    let mut v = Vec::new();
    v.extend(datetime::udfs());
    v.extend(string::udfs());
    v.extend(math::udfs());
    v.extend(nested::udfs());
    v.extend(geo::udfs());
    v.extend(cast::udfs());
    v
}

/// Adds every function of this module to `ctx`.
pub fn register(ctx: &SessionContext) {
    for f in all_udfs() {
        ctx.register_udf(f);
    }
}

/// ASA name, the session function that computes it, and how many arguments
/// it takes (least, most).
const FUNCTIONS: &[(&str, &str, usize, usize)] = &[
    ("DATEADD", "asa_dateadd", 3, 3),
    ("DATEDIFF", "asa_datediff", 3, 3),
    ("DATEPART", "asa_datepart", 2, 2),
    ("DATENAME", "asa_datename", 2, 2),
    ("DATETIMEFROMPARTS", "asa_datetimefromparts", 7, 7),
    ("DAY", "asa_datepart", 1, 1),
    ("MONTH", "asa_datepart", 1, 1),
    ("YEAR", "asa_datepart", 1, 1),
    ("CHARINDEX", "asa_charindex", 2, 3),
    ("PATINDEX", "asa_patindex", 2, 2),
    ("REGEXMATCH", "asa_regexmatch", 2, 2),
    ("LEFT", "asa_left", 2, 2),
    ("RIGHT", "asa_right", 2, 2),
    ("LTRIM", "asa_ltrim", 1, 1),
    ("RTRIM", "asa_rtrim", 1, 1),
    ("TRIM", "asa_trim", 1, 1),
    ("REPLACE", "asa_replace", 3, 3),
    ("CONCAT", "asa_concat", 2, usize::MAX),
    ("SUBSTRING", "asa_substring", 3, 3),
    ("UPPER", "asa_upper", 1, 1),
    ("LOWER", "asa_lower", 1, 1),
    ("POWER", "asa_power", 2, 2),
    ("LOG", "ln", 1, 2),
    ("CEILING", "asa_ceiling", 1, 1),
    ("FLOOR", "asa_floor", 1, 1),
    ("GETARRAYELEMENT", "asa_getarrayelement", 2, 2),
    ("GETARRAYLENGTH", "asa_getarraylength", 1, 1),
    ("GETRECORDPROPERTYVALUE", "asa_getrecordpropertyvalue", 2, 2),
    ("CREATEPOINT", "asa_createpoint", 2, 2),
    ("CREATELINESTRING", "asa_createlinestring", 2, usize::MAX),
    ("CREATEPOLYGON", "asa_createpolygon", 3, usize::MAX),
    ("ST_DISTANCE", "asa_st_distance", 2, 2),
    ("ST_WITHIN", "asa_st_within", 2, 2),
    ("ST_INTERSECTS", "asa_st_intersects", 2, 2),
    ("ST_OVERLAPS", "asa_st_overlaps", 2, 2),
];

fn entry(name: &str) -> Option<&'static (&'static str, &'static str, usize, usize)> {
    FUNCTIONS.iter().find(|f| f.0.eq_ignore_ascii_case(name))
}

/// Whether the ASA function `name` is built by [`call`].
pub fn is_asa_function(name: &str) -> bool {
    entry(name).is_some()
}

/// The call of the ASA function `name` on `args` (already translated), or
/// what is wrong with it, for the user.
pub fn call(ctx: &SessionContext, name: &str, mut args: Vec<Expr>) -> Result<Expr, String> {
    let Some(&(asa, session_name, least, most)) = entry(name) else {
        return Err(format!("{name} is not a function of this module"));
    };
    if args.len() < least || args.len() > most {
        let count = match (least, most) {
            (l, m) if l == m => format!("{l}"),
            (l, usize::MAX) => format!("at least {l}"),
            (l, m) => format!("{l} to {m}"),
        };
        return Err(format!(
            "{asa} takes {count} argument{}, not {}",
            if most == 1 { "" } else { "s" },
            args.len()
        ));
    }
    let mut session_name = session_name;
    match asa {
        // DAY(t) is DATEPART(day, t), and so on.
        "DAY" | "MONTH" | "YEAR" => args.insert(0, lit(asa.to_ascii_lowercase())),
        // ASA's LOG(x, base) is DataFusion's log(base, x); LOG(x) is ln.
        "LOG" if args.len() == 2 => {
            args.swap(0, 1);
            session_name = "log";
        }
        _ => {}
    }
    let f = ctx.udf(session_name).map_err(|e| e.to_string())?;
    Ok(f.call(args))
}

/// A value a function cannot take: the reason an event is dead-lettered.
#[derive(Debug)]
struct ValueError(String);

impl std::fmt::Display for ValueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ValueError {}

/// An evaluation error: a value the function cannot take. (External, so
/// that the reason reads as the message alone.)
fn value_error(message: impl Into<String>) -> DataFusionError {
    DataFusionError::External(Box::new(ValueError(message.into())))
}

/// A planning error: argument types no value of which the function takes.
fn type_error(message: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(message.into())
}

/// Runs `f` over the arguments as arrays of the batch's length; when every
/// argument is a scalar, over one row, giving a scalar.
fn run(
    args: &ScalarFunctionArgs,
    f: impl FnOnce(&[ArrayRef]) -> Result<ArrayRef>,
) -> Result<ColumnarValue> {
    let all_scalar = args
        .args
        .iter()
        .all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let n = if all_scalar { 1 } else { args.number_rows };
    let arrays = args
        .args
        .iter()
        .map(|a| a.to_array(n))
        .collect::<Result<Vec<_>>>()?;
    let out = f(&arrays)?;
    if all_scalar {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
    } else {
        Ok(ColumnarValue::Array(out))
    }
}

/// The text of a literal argument (a date part, a type name).
fn literal_text(v: Option<&ScalarValue>) -> Option<&str> {
    match v? {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s.as_str()),
        _ => None,
    }
}

/// The text of a scalar argument at run time.
fn scalar_text(v: &ColumnarValue) -> Option<&str> {
    match v {
        ColumnarValue::Scalar(s) => literal_text(Some(s)),
        ColumnarValue::Array(_) => None,
    }
}

/// ASA's name for an Arrow type, for messages.
fn asa_type_name(t: &DataType) -> &'static str {
    match t {
        t if t.is_integer() => "bigint",
        t if t.is_floating() => "float",
        t if is_text(t) => "nvarchar(max)",
        DataType::Boolean => "bit",
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => "datetime",
        DataType::Struct(_) => "record",
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => "array",
        DataType::Null => "NULL",
        _ => "a value of another type",
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Coercion of an argument that must be a whole number (fractions are
/// truncated, as ASA documents for DATEADD).
fn integer_arg(function: &str, t: &DataType) -> Result<DataType> {
    if t.is_numeric() || t.is_null() || is_text(t) {
        Ok(DataType::Int64)
    } else {
        Err(type_error(format!(
            "{function} expects a number, not {}",
            asa_type_name(t)
        )))
    }
}

fn downcast<'a, T: Any>(a: &'a ArrayRef, what: &str) -> Result<&'a T> {
    a.as_any().downcast_ref::<T>().ok_or_else(|| {
        DataFusionError::Internal(format!(
            "{what}: unexpected argument type {}",
            a.data_type()
        ))
    })
}

#[cfg(test)]
pub(crate) mod testing {
    //! Compiles an ASA expression against a batch, as `iotql run` does, and
    //! evaluates it.

    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, RecordBatch};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    use iotql_dsl::ast::{SelectItem, SetExpr, Statement};

    use crate::expr::ExprCompiler;

    /// A batch of the given columns.
    pub fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect();
        let arrays = columns.into_iter().map(|(_, a)| a).collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("batch")
    }

    /// `expr` evaluated over `batch`: the column, or the compile or
    /// evaluation error as text.
    pub fn eval(expr: &str, batch: &RecordBatch) -> Result<ArrayRef, String> {
        let source = format!("SELECT {expr} AS v FROM input");
        let script = iotql_dsl::parse(&source).map_err(|d| d.message.clone())?;
        let Some(Statement::Query(q)) = script.statements.first() else {
            return Err("not a query".into());
        };
        let SetExpr::Select(select) = &q.body else {
            return Err("not a select".into());
        };
        let Some(SelectItem::Expr { expr, .. }) = select.projection.first() else {
            return Err("no expression".into());
        };
        let compiler = ExprCompiler::new();
        let physical = compiler
            .compile(expr, &batch.schema())
            .map_err(|d| d.message.clone())?;
        physical
            .evaluate(batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(|e| e.to_string())
    }

    /// The values of `expr` over `batch` as text (`NULL` for nulls).
    pub fn texts(expr: &str, batch: &RecordBatch) -> Result<Vec<String>, String> {
        let a = eval(expr, batch)?;
        let options = FormatOptions::default().with_null("NULL");
        let f = ArrayFormatter::try_new(a.as_ref(), &options).map_err(|e| e.to_string())?;
        Ok((0..a.len()).map(|i| f.value(i).to_string()).collect())
    }

    /// The values of `expr` over a batch of one row with no useful column.
    pub fn one(expr: &str) -> Result<String, String> {
        let b = batch(vec![(
            "id",
            Arc::new(datafusion::arrow::array::Int64Array::from(vec![1])) as ArrayRef,
        )]);
        Ok(texts(expr, &b)?.remove(0))
    }

    /// Shorthand for tests: the value, or the error prefixed with `error: `.
    pub fn show(expr: &str) -> String {
        one(expr).unwrap_or_else(|e| format!("error: {e}"))
    }
}
