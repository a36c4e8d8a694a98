//! The abstract syntax tree of an ASA job file.
//!
//! Every node carries the [`Span`] it was parsed from, and every node prints
//! itself as canonical ASA text through `Display` (see [`crate::print`]):
//! parsing that text again gives an equal tree.

use crate::span::Span;

/// A whole job file: declarations and query statements, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    pub statements: Vec<Statement>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `CREATE [REFERENCE] INPUT name WITH (k = 'v', ...)`
    CreateInput(CreateInput),
    /// `CREATE OUTPUT name WITH (k = 'v', ...)`
    CreateOutput(CreateOutput),
    /// `[WITH step AS (...), ...] SELECT ...`
    Query(Query),
}

impl Statement {
    pub fn span(&self) -> Span {
        match self {
            Statement::CreateInput(c) => c.span,
            Statement::CreateOutput(c) => c.span,
            Statement::Query(q) => q.span,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateInput {
    pub name: Ident,
    /// `CREATE REFERENCE INPUT`: slowly changing data joined to streams.
    pub reference: bool,
    pub options: Vec<OptionEntry>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateOutput {
    pub name: Ident,
    pub options: Vec<OptionEntry>,
    pub span: Span,
}

/// One `key = 'value'` entry of a declaration's `WITH (...)` list.
#[derive(Debug, Clone, PartialEq)]
pub struct OptionEntry {
    pub key: Ident,
    pub value: String,
    pub span: Span,
}

/// A query statement: optional `WITH` steps, then a body.
///
/// Steps are visible to this statement and to every statement after it in
/// the file, as in ASA where one `WITH` clause serves the whole job.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub steps: Vec<Step>,
    pub body: SetExpr,
    pub span: Span,
}

/// `name AS (query)` in a `WITH` clause.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: Ident,
    pub query: SetExpr,
    pub span: Span,
}

/// A SELECT or a UNION of them.
#[derive(Debug, Clone, PartialEq)]
pub enum SetExpr {
    Select(Box<Select>),
    /// `left UNION right`: all rows of both, duplicates included (ASA's UNION).
    Union {
        left: Box<SetExpr>,
        right: Box<SetExpr>,
        span: Span,
    },
}

impl SetExpr {
    pub fn span(&self) -> Span {
        match self {
            SetExpr::Select(s) => s.span,
            SetExpr::Union { span, .. } => *span,
        }
    }

    /// The SELECTs of this expression, left to right.
    pub fn selects(&self) -> Vec<&Select> {
        match self {
            SetExpr::Select(s) => vec![s],
            SetExpr::Union { left, right, .. } => {
                let mut v = left.selects();
                v.extend(right.selects());
                v
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    pub projection: Vec<SelectItem>,
    pub into: Option<Ident>,
    pub from: FromClause,
    pub where_clause: Option<Expr>,
    pub group_by: Option<GroupBy>,
    pub having: Option<Expr>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem {
    /// `*`
    Wildcard(Span),
    /// `alias.*` or `record.path.*`
    QualifiedWildcard(Vec<Ident>, Span),
    /// `expr [AS] alias`; `alias = expr` parses to the same node.
    Expr {
        expr: Expr,
        alias: Option<Ident>,
        span: Span,
    },
}

/// The FROM clause: one source, then joins and applies in order.
#[derive(Debug, Clone, PartialEq)]
pub struct FromClause {
    pub source: Source,
    pub joins: Vec<JoinClause>,
    pub span: Span,
}

/// An input or step named in FROM or JOIN.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub name: Ident,
    pub alias: Option<Ident>,
    pub timestamp_by: Option<TimestampBy>,
    pub partition_by: Vec<Expr>,
    pub span: Span,
}

impl Source {
    /// The name rows of this source are qualified with: the alias, else the name.
    pub fn qualifier(&self) -> &Ident {
        self.alias.as_ref().unwrap_or(&self.name)
    }
}

/// `TIMESTAMP BY expr [OVER key, ...]`
#[derive(Debug, Clone, PartialEq)]
pub struct TimestampBy {
    pub expr: Expr,
    pub over: Vec<Expr>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum JoinClause {
    Join(Box<Join>),
    Apply(Box<Apply>),
}

impl JoinClause {
    pub fn span(&self) -> Span {
        match self {
            JoinClause::Join(j) => j.span,
            JoinClause::Apply(a) => a.span,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
}

/// `[INNER] JOIN src ON cond` / `LEFT [OUTER] JOIN src ON cond`
#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    pub kind: JoinKind,
    pub source: Source,
    pub on: Expr,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyKind {
    Cross,
    Outer,
}

/// `CROSS APPLY GetArrayElements(e.arr) AS alias`
#[derive(Debug, Clone, PartialEq)]
pub struct Apply {
    pub kind: ApplyKind,
    pub function: FunctionCall,
    pub alias: Ident,
    pub span: Span,
}

/// `GROUP BY item, ...`: keys and (validated later) exactly one window.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupBy {
    pub items: Vec<GroupItem>,
    pub span: Span,
}

impl GroupBy {
    /// The grouping keys, without the window.
    pub fn keys(&self) -> impl Iterator<Item = &Expr> {
        self.items.iter().filter_map(|i| match i {
            GroupItem::Expr(e) => Some(e),
            _ => None,
        })
    }

    /// The window items (a valid query has exactly one). `System.Timestamp()`
    /// is the (snapshot) window only when no other window is present;
    /// beside one, it is a grouping key, as ASA documents.
    pub fn windows(&self) -> impl Iterator<Item = &GroupItem> {
        let has_window = self
            .items
            .iter()
            .any(|i| matches!(i, GroupItem::Window(_) | GroupItem::Windows(..)));
        self.items.iter().filter(move |i| match i {
            GroupItem::Expr(_) => false,
            GroupItem::Snapshot(_) => !has_window,
            _ => true,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum GroupItem {
    Expr(Expr),
    Window(Window),
    /// `Windows(w1 AS a, w2 AS b, ...)`: several windows in one query.
    Windows(Vec<Window>, Span),
    /// `System.Timestamp()` in GROUP BY: a snapshot window.
    Snapshot(Span),
}

impl GroupItem {
    pub fn span(&self) -> Span {
        match self {
            GroupItem::Expr(e) => e.span,
            GroupItem::Window(w) => w.span,
            GroupItem::Windows(_, s) | GroupItem::Snapshot(s) => *s,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowKind {
    Tumbling,
    Hopping,
    Sliding,
    Session,
}

impl WindowKind {
    pub const ALL: [WindowKind; 4] = [
        WindowKind::Tumbling,
        WindowKind::Hopping,
        WindowKind::Sliding,
        WindowKind::Session,
    ];

    /// The canonical function name, e.g. `TumblingWindow`.
    pub fn name(self) -> &'static str {
        match self {
            WindowKind::Tumbling => "TumblingWindow",
            WindowKind::Hopping => "HoppingWindow",
            WindowKind::Sliding => "SlidingWindow",
            WindowKind::Session => "SessionWindow",
        }
    }

    /// Looks up `TumblingWindow` or its short form `Tumbling`, case-insensitively.
    pub fn from_name(name: &str) -> Option<WindowKind> {
        let lower = name.to_ascii_lowercase();
        let base = lower.strip_suffix("window").unwrap_or(&lower);
        Self::ALL
            .into_iter()
            .find(|k| k.name().to_ascii_lowercase().strip_suffix("window") == Some(base))
    }
}

/// A window in GROUP BY, with its sizes normalised from either the
/// positional form `(unit, size[, hop][, offset])` or the named form
/// `(Duration(...), Hop(...), Offset(...))`.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub kind: WindowKind,
    /// Window size (tumbling, hopping, sliding).
    pub size: Option<Duration>,
    /// Hop size (hopping).
    pub hop: Option<Duration>,
    /// Grid offset (tumbling, hopping).
    pub offset: Option<Duration>,
    /// Inactivity timeout (session).
    pub timeout: Option<Duration>,
    /// Maximum session length (session).
    pub max_duration: Option<Duration>,
    /// `OVER (PARTITION BY ...)` (session).
    pub partition_by: Vec<Expr>,
    /// The window's id inside `Windows(...)`: `Window('id', ...)` or `... AS id`.
    pub alias: Option<Ident>,
    pub span: Span,
}

/// An amount of a time unit, e.g. `minute, 5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration {
    pub unit: DatePart,
    pub amount: i64,
    /// From the unit to the amount.
    pub span: Span,
}

impl Duration {
    /// The length in microseconds, or `None` for calendar units (month, year,
    /// ...), which have no fixed length, or on overflow.
    pub fn micros(&self) -> Option<i64> {
        self.unit.micros()?.checked_mul(self.amount)
    }
}

/// A date part or time unit: the first argument of DATEADD, DATEDIFF,
/// DATEPART, DATENAME, and the unit of windows and `LIMIT DURATION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatePart {
    Year,
    Quarter,
    Month,
    DayOfYear,
    Day,
    Week,
    Weekday,
    Hour,
    Minute,
    Second,
    Millisecond,
    Microsecond,
    Nanosecond,
}

impl DatePart {
    pub const ALL: [DatePart; 13] = [
        DatePart::Year,
        DatePart::Quarter,
        DatePart::Month,
        DatePart::DayOfYear,
        DatePart::Day,
        DatePart::Week,
        DatePart::Weekday,
        DatePart::Hour,
        DatePart::Minute,
        DatePart::Second,
        DatePart::Millisecond,
        DatePart::Microsecond,
        DatePart::Nanosecond,
    ];

    /// The canonical spelling.
    pub fn name(self) -> &'static str {
        self.spellings()[0]
    }

    /// Every accepted spelling, canonical first (T-SQL's abbreviations).
    pub fn spellings(self) -> &'static [&'static str] {
        match self {
            DatePart::Year => &["year", "yy", "yyyy"],
            DatePart::Quarter => &["quarter", "qq", "q"],
            DatePart::Month => &["month", "mm", "m"],
            DatePart::DayOfYear => &["dayofyear", "dy", "y"],
            DatePart::Day => &["day", "dd", "d"],
            DatePart::Week => &["week", "wk", "ww"],
            DatePart::Weekday => &["weekday", "dw", "w"],
            DatePart::Hour => &["hour", "hh"],
            DatePart::Minute => &["minute", "mi", "n"],
            DatePart::Second => &["second", "ss", "s"],
            DatePart::Millisecond => &["millisecond", "ms"],
            DatePart::Microsecond => &["microsecond", "mcs"],
            DatePart::Nanosecond => &["nanosecond", "ns"],
        }
    }

    pub fn from_name(name: &str) -> Option<DatePart> {
        Self::ALL
            .into_iter()
            .find(|p| p.spellings().iter().any(|s| s.eq_ignore_ascii_case(name)))
    }

    /// Fixed length in microseconds; `None` for calendar parts.
    pub fn micros(self) -> Option<i64> {
        Some(match self {
            DatePart::Day => 86_400_000_000,
            DatePart::Hour => 3_600_000_000,
            DatePart::Minute => 60_000_000,
            DatePart::Second => 1_000_000,
            DatePart::Millisecond => 1_000,
            DatePart::Microsecond => 1,
            DatePart::Week => 7 * 86_400_000_000,
            _ => return None,
        })
    }

    /// Units that windows and `LIMIT DURATION` accept.
    pub fn is_time_unit(self) -> bool {
        matches!(
            self,
            DatePart::Day
                | DatePart::Hour
                | DatePart::Minute
                | DatePart::Second
                | DatePart::Millisecond
                | DatePart::Microsecond
        )
    }
}

/// An identifier as written: `device_id` or `[Device Id]`.
///
/// Names are case-insensitive in ASA; compare them with [`Ident::matches`].
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub value: String,
    pub span: Span,
}

impl Ident {
    pub fn new(value: impl Into<String>, span: Span) -> Self {
        Self {
            value: value.into(),
            span,
        }
    }

    /// Case-insensitive comparison, as ASA compares names.
    pub fn matches(&self, other: &str) -> bool {
        self.value.eq_ignore_ascii_case(other)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

impl Expr {
    pub fn new(kind: ExprKind, span: Span) -> Self {
        Self { kind, span }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Literal(Literal),
    /// A column or a record path: `temp`, `e.temp`, `e.gps.lat`. The first
    /// part may name a source alias; the planner resolves which.
    Column(Vec<Ident>),
    /// A date part argument, e.g. the `minute` of `DATEDIFF(minute, a, b)`.
    DatePart(DatePart),
    Unary {
        op: UnaryOp,
        expr: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    Like {
        expr: Box<Expr>,
        negated: bool,
        pattern: Box<Expr>,
    },
    Between {
        expr: Box<Expr>,
        negated: bool,
        low: Box<Expr>,
        high: Box<Expr>,
    },
    InList {
        expr: Box<Expr>,
        negated: bool,
        list: Vec<Expr>,
    },
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    Case {
        operand: Option<Box<Expr>>,
        whens: Vec<(Expr, Expr)>,
        else_result: Option<Box<Expr>>,
    },
    Cast {
        expr: Box<Expr>,
        data_type: DataType,
        /// `TRY_CAST`: NULL instead of an error when the value does not convert.
        try_cast: bool,
    },
    Function(FunctionCall),
    /// `expr.field` after a call: `System.Window().Id`,
    /// `GetArrayElement(arr, 0).temp`.
    Field {
        expr: Box<Expr>,
        field: Ident,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Integer(i64),
    Float(f64),
    String(String),
    Boolean(bool),
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    Minus,
    Plus,
    Not,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Or,
    And,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    Plus,
    Minus,
    Multiply,
    Divide,
    Modulo,
    BitAnd,
    BitOr,
    BitXor,
}

impl BinaryOp {
    /// Binding strength: higher binds tighter.
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::And => 2,
            BinaryOp::Eq
            | BinaryOp::NotEq
            | BinaryOp::Lt
            | BinaryOp::LtEq
            | BinaryOp::Gt
            | BinaryOp::GtEq => 4,
            BinaryOp::Plus
            | BinaryOp::Minus
            | BinaryOp::BitAnd
            | BinaryOp::BitOr
            | BinaryOp::BitXor => 5,
            BinaryOp::Multiply | BinaryOp::Divide | BinaryOp::Modulo => 6,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "OR",
            BinaryOp::And => "AND",
            BinaryOp::Eq => "=",
            BinaryOp::NotEq => "<>",
            BinaryOp::Lt => "<",
            BinaryOp::LtEq => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::GtEq => ">=",
            BinaryOp::Plus => "+",
            BinaryOp::Minus => "-",
            BinaryOp::Multiply => "*",
            BinaryOp::Divide => "/",
            BinaryOp::Modulo => "%",
            BinaryOp::BitAnd => "&",
            BinaryOp::BitOr => "|",
            BinaryOp::BitXor => "^",
        }
    }
}

/// The ASA data types of CAST / TRY_CAST and `CREATE INPUT` schemas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bigint,
    Float,
    /// `nvarchar(max)`
    Nvarchar,
    Datetime,
    Bit,
    Record,
    Array,
}

impl DataType {
    pub const ALL: [DataType; 7] = [
        DataType::Bigint,
        DataType::Float,
        DataType::Nvarchar,
        DataType::Datetime,
        DataType::Bit,
        DataType::Record,
        DataType::Array,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DataType::Bigint => "bigint",
            DataType::Float => "float",
            DataType::Nvarchar => "nvarchar(max)",
            DataType::Datetime => "datetime",
            DataType::Bit => "bit",
            DataType::Record => "record",
            DataType::Array => "array",
        }
    }
}

/// A function call: scalar, aggregate, analytic, or a `udf.` / `uda.` call.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionCall {
    /// `COUNT`, `System.Timestamp`, `udf.celsius`: one or more parts.
    pub name: Vec<Ident>,
    pub args: FunctionArgs,
    pub over: Option<Box<Over>>,
    pub span: Span,
}

impl FunctionCall {
    /// The dotted name as written, e.g. `udf.celsius`.
    pub fn qualified_name(&self) -> String {
        self.name
            .iter()
            .map(|i| i.value.as_str())
            .collect::<Vec<_>>()
            .join(".")
    }

    /// True when the name is exactly `name` (one part, case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name.len() == 1 && self.name[0].matches(name)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum FunctionArgs {
    /// `COUNT(*)`
    Star,
    /// `f(a, b)`, `COUNT(DISTINCT x)`
    List { distinct: bool, args: Vec<Expr> },
}

/// `OVER ([PARTITION BY ...] [ORDER BY ...] [LIMIT DURATION(unit, n)] [WHEN cond])`
#[derive(Debug, Clone, PartialEq)]
pub struct Over {
    pub partition_by: Vec<Expr>,
    pub order_by: Vec<OrderByExpr>,
    pub limit_duration: Option<Duration>,
    pub when: Option<Box<Expr>>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderByExpr {
    pub expr: Expr,
    pub span: Span,
    /// `Some(true)` for ASC, `Some(false)` for DESC, `None` when unstated (ASC).
    pub asc: Option<bool>,
}

impl Expr {
    /// Calls `f` on this expression and every expression inside it
    /// (operands, call arguments, OVER clauses, CASE arms), parents first.
    pub fn walk<'a>(&'a self, f: &mut impl FnMut(&'a Expr)) {
        f(self);
        match &self.kind {
            ExprKind::Literal(_) | ExprKind::Column(_) | ExprKind::DatePart(_) => {}
            ExprKind::Unary { expr, .. }
            | ExprKind::IsNull { expr, .. }
            | ExprKind::Cast { expr, .. }
            | ExprKind::Field { expr, .. } => expr.walk(f),
            ExprKind::Binary { left, right, .. } => {
                left.walk(f);
                right.walk(f);
            }
            ExprKind::Like { expr, pattern, .. } => {
                expr.walk(f);
                pattern.walk(f);
            }
            ExprKind::Between {
                expr, low, high, ..
            } => {
                expr.walk(f);
                low.walk(f);
                high.walk(f);
            }
            ExprKind::InList { expr, list, .. } => {
                expr.walk(f);
                list.iter().for_each(|e| e.walk(f));
            }
            ExprKind::Case {
                operand,
                whens,
                else_result,
            } => {
                if let Some(o) = operand {
                    o.walk(f);
                }
                for (w, t) in whens {
                    w.walk(f);
                    t.walk(f);
                }
                if let Some(e) = else_result {
                    e.walk(f);
                }
            }
            ExprKind::Function(call) => call.walk_args(f),
        }
    }
}

impl Expr {
    /// Replaces each direct operand of this expression (call arguments
    /// included, OVER clauses not) by `f` of it: the step of a rewrite.
    pub fn map_children(&mut self, f: &mut impl FnMut(&Expr) -> Expr) {
        fn apply(b: &mut Box<Expr>, f: &mut impl FnMut(&Expr) -> Expr) {
            **b = f(b);
        }
        match &mut self.kind {
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
}

impl FunctionCall {
    /// Calls [`Expr::walk`] on the arguments and the OVER clause.
    pub fn walk_args<'a>(&'a self, f: &mut impl FnMut(&'a Expr)) {
        if let FunctionArgs::List { args, .. } = &self.args {
            args.iter().for_each(|a| a.walk(f));
        }
        if let Some(over) = &self.over {
            over.partition_by.iter().for_each(|e| e.walk(f));
            over.order_by.iter().for_each(|o| o.expr.walk(f));
            if let Some(w) = &over.when {
                w.walk(f);
            }
        }
    }
}
