//! Canonical ASA text for every AST node (`Display`).
//!
//! The printer is the inverse of the parser: `parse(tree.to_string())`
//! gives a tree equal to `tree`. Keywords print in upper case, functions and
//! windows in ASA's documented spelling, identifiers in brackets when they
//! need them, and parentheses exactly where precedence requires.

use std::fmt::{self, Display, Formatter, Write};

use crate::ast::*;
use crate::keyword::is_plain_identifier;

fn comma_list<T: Display>(f: &mut Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

impl Display for Script {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (i, statement) in self.statements.iter().enumerate() {
            if i > 0 {
                f.write_char('\n')?;
            }
            writeln!(f, "{statement};")?;
        }
        Ok(())
    }
}

impl Display for Statement {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Statement::CreateInput(c) => c.fmt(f),
            Statement::CreateOutput(c) => c.fmt(f),
            Statement::Query(q) => q.fmt(f),
        }
    }
}

fn write_options(f: &mut Formatter<'_>, options: &[OptionEntry]) -> fmt::Result {
    f.write_str(" WITH (")?;
    comma_list(f, options)?;
    f.write_char(')')
}

impl Display for CreateInput {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let reference = if self.reference { "REFERENCE " } else { "" };
        write!(f, "CREATE {reference}INPUT {}", self.name)?;
        write_options(f, &self.options)
    }
}

impl Display for CreateOutput {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "CREATE OUTPUT {}", self.name)?;
        write_options(f, &self.options)
    }
}

impl Display for OptionEntry {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}", self.key, StringLiteral(&self.value))
    }
}

impl Display for Query {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            f.write_str(if i == 0 { "WITH " } else { ", " })?;
            write!(f, "{step}")?;
        }
        if !self.steps.is_empty() {
            f.write_char('\n')?;
        }
        self.body.fmt(f)
    }
}

impl Display for Step {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        // Nested queries are not re-indented: that would change string
        // literals that span lines.
        write!(f, "{} AS (\n{}\n)", self.name, self.query)
    }
}

impl Display for SetExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            SetExpr::Select(s) => s.fmt(f),
            SetExpr::Union { left, right, .. } => {
                write!(f, "{left}\nUNION\n")?;
                if matches!(**right, SetExpr::Union { .. }) {
                    write!(f, "(\n{right}\n)")
                } else {
                    right.fmt(f)
                }
            }
        }
    }
}

impl Display for Select {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("SELECT ")?;
        comma_list(f, &self.projection)?;
        if let Some(into) = &self.into {
            write!(f, "\nINTO {into}")?;
        }
        write!(f, "\n{}", self.from)?;
        if let Some(w) = &self.where_clause {
            write!(f, "\nWHERE {w}")?;
        }
        if let Some(g) = &self.group_by {
            write!(f, "\n{g}")?;
        }
        if let Some(h) = &self.having {
            write!(f, "\nHAVING {h}")?;
        }
        Ok(())
    }
}

impl Display for SelectItem {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            SelectItem::Wildcard(_) => f.write_char('*'),
            SelectItem::QualifiedWildcard(path, _) => {
                write!(f, "{}.*", Path(path))
            }
            SelectItem::Expr { expr, alias, .. } => {
                // An item whose text starts `name =` reads as `alias = expr`:
                // such an expression keeps parentheses around it.
                let text = expr.to_string();
                if starts_like_alias_assignment(&text) {
                    write!(f, "({text})")?;
                } else {
                    f.write_str(&text)?;
                }
                if let Some(alias) = alias {
                    write!(f, " AS {alias}")?;
                }
                Ok(())
            }
        }
    }
}

/// True when `text` begins with a name followed by `=`, as `a = 1` or `[x] = 1`.
fn starts_like_alias_assignment(text: &str) -> bool {
    let rest = if let Some(inner) = text.strip_prefix('[') {
        // `]]` is an escaped `]` inside the name.
        let mut chars = inner.char_indices().peekable();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c == ']' {
                if chars.peek().map(|&(_, c)| c) == Some(']') {
                    chars.next();
                    continue;
                }
                end = Some(i + 1);
                break;
            }
        }
        match end {
            Some(e) => &inner[e..],
            None => return false,
        }
    } else {
        let len = text
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(text.len());
        if len == 0 || text.starts_with(|c: char| c.is_ascii_digit()) {
            return false;
        }
        &text[len..]
    };
    rest.trim_start().starts_with('=')
}

impl Display for FromClause {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "FROM {}", self.source)?;
        for join in &self.joins {
            write!(f, "\n{join}")?;
        }
        Ok(())
    }
}

impl Display for Source {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        if let Some(alias) = &self.alias {
            write!(f, " AS {alias}")?;
        }
        if let Some(ts) = &self.timestamp_by {
            write!(f, " {ts}")?;
        }
        if !self.partition_by.is_empty() {
            f.write_str(" PARTITION BY ")?;
            comma_list(f, &self.partition_by)?;
        }
        Ok(())
    }
}

impl Display for TimestampBy {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "TIMESTAMP BY {}", self.expr)?;
        if !self.over.is_empty() {
            f.write_str(" OVER ")?;
            comma_list(f, &self.over)?;
        }
        Ok(())
    }
}

impl Display for JoinClause {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            JoinClause::Join(j) => j.fmt(f),
            JoinClause::Apply(a) => a.fmt(f),
        }
    }
}

impl Display for Join {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            JoinKind::Inner => "JOIN",
            JoinKind::Left => "LEFT JOIN",
        };
        write!(f, "{kind} {} ON {}", self.source, self.on)
    }
}

impl Display for Apply {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ApplyKind::Cross => "CROSS",
            ApplyKind::Outer => "OUTER",
        };
        write!(f, "{kind} APPLY {} AS {}", self.function, self.alias)
    }
}

impl Display for GroupBy {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("GROUP BY ")?;
        comma_list(f, &self.items)
    }
}

impl Display for GroupItem {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            GroupItem::Expr(e) => e.fmt(f),
            GroupItem::Window(w) => w.fmt(f),
            GroupItem::Windows(ws, _) => {
                f.write_str("Windows(")?;
                comma_list(f, ws)?;
                f.write_char(')')
            }
            GroupItem::Snapshot(_) => f.write_str("System.Timestamp()"),
        }
    }
}

impl Display for Duration {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}, {}", self.unit, self.amount)
    }
}

impl Display for Window {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if let Some(id) = &self.alias {
            // ASA's documented form for a window with an id.
            write!(f, "Window({}, ", StringLiteral(&id.value))?;
        }
        write!(f, "{}(", self.kind.name())?;
        // The positional form when every part shares one unit, else the named form.
        let parts: Vec<(&str, Duration)> = match self.kind {
            WindowKind::Tumbling => vec![("Duration", self.size), ("Offset", self.offset)],
            WindowKind::Hopping => vec![
                ("Duration", self.size),
                ("Hop", self.hop),
                ("Offset", self.offset),
            ],
            WindowKind::Sliding => vec![("Duration", self.size)],
            WindowKind::Session => vec![
                ("Timeout", self.timeout),
                ("MaxDuration", self.max_duration),
            ],
        }
        .into_iter()
        .filter_map(|(name, d)| d.map(|d| (name, d)))
        .collect();
        // The positional form has no sign: a negative offset needs the named form.
        let one_unit = parts.windows(2).all(|w| w[0].1.unit == w[1].1.unit)
            && parts.iter().all(|(_, d)| d.amount > 0);
        if let (true, Some((_, first))) = (one_unit, parts.first()) {
            write!(f, "{}", first.unit)?;
            for (_, d) in &parts {
                write!(f, ", {}", d.amount)?;
            }
        } else {
            for (i, (name, d)) in parts.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{name}({d})")?;
            }
        }
        f.write_char(')')?;
        if !self.partition_by.is_empty() {
            f.write_str(" OVER (PARTITION BY ")?;
            comma_list(f, &self.partition_by)?;
            f.write_char(')')?;
        }
        if self.alias.is_some() {
            f.write_char(')')?;
        }
        Ok(())
    }
}

impl Display for DatePart {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Display for DataType {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Display for Ident {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if is_plain_identifier(&self.value) {
            f.write_str(&self.value)
        } else {
            write!(f, "[{}]", self.value.replace(']', "]]"))
        }
    }
}

/// A dotted path of identifiers: `e.gps.lat`.
struct Path<'a>(&'a [Ident]);

impl Display for Path<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (i, part) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_char('.')?;
            }
            write!(f, "{part}")?;
        }
        Ok(())
    }
}

/// A single-quoted string literal, `'` doubled inside.
struct StringLiteral<'a>(&'a str);

impl Display for StringLiteral<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'", self.0.replace('\'', "''"))
    }
}

impl Display for Literal {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Integer(i) => write!(f, "{i}"),
            Literal::Float(x) => {
                let text = x.to_string();
                if text.contains(['.', 'e', 'E']) || !x.is_finite() {
                    f.write_str(&text)
                } else {
                    write!(f, "{text}.0")
                }
            }
            Literal::String(s) => StringLiteral(s).fmt(f),
            Literal::Boolean(true) => f.write_str("TRUE"),
            Literal::Boolean(false) => f.write_str("FALSE"),
            Literal::Null => f.write_str("NULL"),
        }
    }
}

/// Precedence levels of expression forms: higher binds tighter.
pub(crate) mod prec {
    pub const NOT: u8 = 3;
    pub const COMPARISON: u8 = 4;
    pub const ADDITIVE: u8 = 5;
    pub const UNARY: u8 = 7;
    pub const PRIMARY: u8 = 8;
}

impl Expr {
    /// How tightly this expression's outermost form binds.
    fn precedence(&self) -> u8 {
        match &self.kind {
            ExprKind::Binary { op, .. } => op.precedence(),
            ExprKind::Unary {
                op: UnaryOp::Not, ..
            } => prec::NOT,
            ExprKind::Unary { .. } => prec::UNARY,
            ExprKind::Like { .. }
            | ExprKind::Between { .. }
            | ExprKind::InList { .. }
            | ExprKind::IsNull { .. } => prec::COMPARISON,
            _ => prec::PRIMARY,
        }
    }
}

/// Prints `expr`, in parentheses if it binds less tightly than `min`.
struct Operand<'a>(&'a Expr, u8);

impl Display for Operand<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.0.precedence() < self.1 {
            write!(f, "({})", self.0)
        } else {
            self.0.fmt(f)
        }
    }
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExprKind::Literal(l) => l.fmt(f),
            ExprKind::Column(path) => Path(path).fmt(f),
            ExprKind::DatePart(p) => p.fmt(f),
            ExprKind::Unary { op, expr } => match op {
                UnaryOp::Not => write!(f, "NOT {}", Operand(expr, prec::NOT)),
                UnaryOp::Minus | UnaryOp::Plus => {
                    let sign = if *op == UnaryOp::Minus { '-' } else { '+' };
                    // `- -x` must not print as `--x`, which starts a comment.
                    if matches!(expr.kind, ExprKind::Unary { .. }) {
                        write!(f, "{sign}({expr})")
                    } else {
                        write!(f, "{sign}{}", Operand(expr, prec::UNARY))
                    }
                }
            },
            ExprKind::Binary { op, left, right } => {
                let p = op.precedence();
                write!(
                    f,
                    "{} {} {}",
                    Operand(left, p),
                    op.symbol(),
                    Operand(right, p + 1)
                )
            }
            ExprKind::Like {
                expr,
                negated,
                pattern,
            } => {
                let not = if *negated { "NOT " } else { "" };
                write!(
                    f,
                    "{} {not}LIKE {}",
                    Operand(expr, prec::ADDITIVE),
                    Operand(pattern, prec::ADDITIVE)
                )
            }
            ExprKind::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let not = if *negated { "NOT " } else { "" };
                write!(
                    f,
                    "{} {not}BETWEEN {} AND {}",
                    Operand(expr, prec::ADDITIVE),
                    Operand(low, prec::ADDITIVE),
                    Operand(high, prec::ADDITIVE)
                )
            }
            ExprKind::InList {
                expr,
                negated,
                list,
            } => {
                let not = if *negated { "NOT " } else { "" };
                write!(f, "{} {not}IN (", Operand(expr, prec::ADDITIVE))?;
                comma_list(f, list)?;
                f.write_char(')')
            }
            ExprKind::IsNull { expr, negated } => {
                let not = if *negated { "NOT " } else { "" };
                write!(f, "{} IS {not}NULL", Operand(expr, prec::ADDITIVE))
            }
            ExprKind::Case {
                operand,
                whens,
                else_result,
            } => {
                f.write_str("CASE")?;
                if let Some(op) = operand {
                    write!(f, " {op}")?;
                }
                for (when, then) in whens {
                    write!(f, " WHEN {when} THEN {then}")?;
                }
                if let Some(e) = else_result {
                    write!(f, " ELSE {e}")?;
                }
                f.write_str(" END")
            }
            ExprKind::Cast {
                expr,
                data_type,
                try_cast,
            } => {
                let name = if *try_cast { "TRY_CAST" } else { "CAST" };
                write!(f, "{name}({expr} AS {data_type})")
            }
            ExprKind::Function(call) => call.fmt(f),
            ExprKind::Field { expr, field } => write!(f, "{expr}.{field}"),
        }
    }
}

impl Display for FunctionCall {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        // Function names may be keywords (`LEFT`, `System.Timestamp`): only
        // names that are not words need brackets.
        for (i, part) in self.name.iter().enumerate() {
            if i > 0 {
                f.write_char('.')?;
            }
            let word = part
                .value
                .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && part
                    .value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if word {
                f.write_str(&part.value)?;
            } else {
                write!(f, "{part}")?;
            }
        }
        f.write_char('(')?;
        match &self.args {
            FunctionArgs::Star => f.write_char('*')?,
            FunctionArgs::List { distinct, args } => {
                if *distinct {
                    f.write_str("DISTINCT ")?;
                }
                comma_list(f, args)?;
            }
        }
        f.write_char(')')?;
        if let Some(over) = &self.over {
            write!(f, " {over}")?;
        }
        Ok(())
    }
}

impl Display for Over {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.partition_by.is_empty() {
            let keys: Vec<String> = self.partition_by.iter().map(|e| e.to_string()).collect();
            parts.push(format!("PARTITION BY {}", keys.join(", ")));
        }
        if !self.order_by.is_empty() {
            let keys: Vec<String> = self.order_by.iter().map(|o| o.to_string()).collect();
            parts.push(format!("ORDER BY {}", keys.join(", ")));
        }
        if let Some(d) = &self.limit_duration {
            parts.push(format!("LIMIT DURATION({d})"));
        }
        if let Some(w) = &self.when {
            parts.push(format!("WHEN {w}"));
        }
        write!(f, "OVER ({})", parts.join(" "))
    }
}

impl Display for OrderByExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.expr)?;
        match self.asc {
            Some(true) => f.write_str(" ASC"),
            Some(false) => f.write_str(" DESC"),
            None => Ok(()),
        }
    }
}
