//! Expressions, by precedence climbing: OR, AND, NOT, comparisons
//! (`=`, LIKE, BETWEEN, IN, IS NULL), additive, multiplicative, unary,
//! primary (literals, paths, calls, CASE, CAST).

use super::token::*;
use crate::ast::*;
use crate::catalog;
use crate::span::Span;

pub(crate) fn expr(i: In<'_>) -> PResult<'_, Expr> {
    or_expr(i)
}

/// `left op right`, spanning both.
fn binary(op: BinaryOp, left: Expr, right: Expr) -> Expr {
    let span = left.span.to(right.span);
    Expr::new(
        ExprKind::Binary {
            op,
            left: Box::new(left),
            right: Box::new(right),
        },
        span,
    )
}

/// Left-associative chain of `next (op next)*` where `op` is one of `ops`.
fn binary_chain<'a>(
    i: In<'a>,
    next: fn(In<'a>) -> PResult<'a, Expr>,
    ops: &[(&'static str, BinaryOp, bool)],
) -> PResult<'a, Expr> {
    let (mut i, mut left) = next(i)?;
    'outer: loop {
        for &(token, op, is_word) in ops {
            let matched = if is_word {
                kw(token)(i)
            } else {
                op_sym(token)(i)
            };
            if let Ok((rest, _)) = matched {
                let (rest, right) = cut(next(rest))?;
                left = binary(op, left, right);
                i = rest;
                continue 'outer;
            }
        }
        return Ok((i, left));
    }
}

fn or_expr(i: In<'_>) -> PResult<'_, Expr> {
    binary_chain(i, and_expr, &[("OR", BinaryOp::Or, true)])
}

fn and_expr(i: In<'_>) -> PResult<'_, Expr> {
    binary_chain(i, not_expr, &[("AND", BinaryOp::And, true)])
}

fn not_expr(i: In<'_>) -> PResult<'_, Expr> {
    if let Ok((rest, not_span)) = kw("NOT")(i) {
        let (rest, inner) = cut(not_expr(rest))?;
        let span = not_span.to(inner.span);
        return Ok((
            rest,
            Expr::new(
                ExprKind::Unary {
                    op: UnaryOp::Not,
                    expr: Box::new(inner),
                },
                span,
            ),
        ));
    }
    comparison(i)
}

const COMPARISONS: [(&str, BinaryOp); 7] = [
    ("<>", BinaryOp::NotEq),
    ("!=", BinaryOp::NotEq),
    ("<=", BinaryOp::LtEq),
    (">=", BinaryOp::GtEq),
    ("=", BinaryOp::Eq),
    ("<", BinaryOp::Lt),
    (">", BinaryOp::Gt),
];

fn comparison(i: In<'_>) -> PResult<'_, Expr> {
    let (mut i, mut left) = additive(i)?;
    loop {
        if let Some((rest, op)) = COMPARISONS
            .iter()
            .find_map(|&(t, op)| op_sym(t)(i).ok().map(|(rest, _)| (rest, op)))
        {
            let (rest, right) = cut(additive(rest))?;
            left = binary(op, left, right);
            i = rest;
            continue;
        }
        if let Ok((rest, _)) = kw("IS")(i) {
            let (rest, not) = opt_kw(rest, "NOT");
            let (rest, null) = cut(kw("NULL")(rest))?;
            let span = left.span.to(null);
            left = Expr::new(
                ExprKind::IsNull {
                    expr: Box::new(left),
                    negated: not,
                },
                span,
            );
            i = rest;
            continue;
        }
        // `[NOT] LIKE | BETWEEN | IN`: NOT here belongs to the operator.
        let (after_not, negated) = opt_kw(i, "NOT");
        if let Ok((rest, _)) = kw("LIKE")(after_not) {
            let (rest, pattern) = cut(additive(rest))?;
            let span = left.span.to(pattern.span);
            left = Expr::new(
                ExprKind::Like {
                    expr: Box::new(left),
                    negated,
                    pattern: Box::new(pattern),
                },
                span,
            );
            i = rest;
            continue;
        }
        if let Ok((rest, _)) = kw("BETWEEN")(after_not) {
            let (rest, low) = cut(additive(rest))?;
            let rest = match kw("AND")(rest) {
                Ok((rest, _)) => rest,
                Err(_) => {
                    let (j, ()) = ws(rest)?;
                    let at = pos(&j);
                    let (found, len) = super::found_at(j.fragment(), 0);
                    return failure(
                        Span::new(at, at + len.max(1)),
                        format!("expected AND after `BETWEEN {low}`, found {found}"),
                        "expected AND here",
                        Some("BETWEEN takes two bounds: `x BETWEEN low AND high`".into()),
                    );
                }
            };
            let (rest, high) = cut(additive(rest))?;
            let span = left.span.to(high.span);
            left = Expr::new(
                ExprKind::Between {
                    expr: Box::new(left),
                    negated,
                    low: Box::new(low),
                    high: Box::new(high),
                },
                span,
            );
            i = rest;
            continue;
        }
        if let Ok((rest, _)) = kw("IN")(after_not) {
            let (rest, _) = cut(sym("(")(rest))?;
            let (rest, list) = cut(expr_list(rest))?;
            let (rest, close) = cut(sym(")")(rest))?;
            let span = left.span.to(close);
            left = Expr::new(
                ExprKind::InList {
                    expr: Box::new(left),
                    negated,
                    list,
                },
                span,
            );
            i = rest;
            continue;
        }
        if negated {
            // `NOT` after an operand must start LIKE, BETWEEN or IN.
            return cut(expected(after_not, "LIKE, BETWEEN or IN after NOT"));
        }
        return Ok((i, left));
    }
}

fn additive(i: In<'_>) -> PResult<'_, Expr> {
    binary_chain(
        i,
        multiplicative,
        &[
            ("+", BinaryOp::Plus, false),
            ("-", BinaryOp::Minus, false),
            ("&", BinaryOp::BitAnd, false),
            ("|", BinaryOp::BitOr, false),
            ("^", BinaryOp::BitXor, false),
        ],
    )
}

fn multiplicative(i: In<'_>) -> PResult<'_, Expr> {
    binary_chain(
        i,
        unary,
        &[
            ("*", BinaryOp::Multiply, false),
            ("/", BinaryOp::Divide, false),
            ("%", BinaryOp::Modulo, false),
        ],
    )
}

fn unary(i: In<'_>) -> PResult<'_, Expr> {
    for (token, op) in [("-", UnaryOp::Minus), ("+", UnaryOp::Plus)] {
        if let Ok((rest, op_span)) = op_sym(token)(i) {
            let (rest, inner) = cut(unary(rest))?;
            let span = op_span.to(inner.span);
            return Ok((
                rest,
                Expr::new(
                    ExprKind::Unary {
                        op,
                        expr: Box::new(inner),
                    },
                    span,
                ),
            ));
        }
    }
    primary(i)
}

/// `kw` made optional: whether it was there.
pub(crate) fn opt_kw<'a>(i: In<'a>, word: &'static str) -> (In<'a>, bool) {
    match kw(word)(i) {
        Ok((rest, _)) => (rest, true),
        Err(_) => (i, false),
    }
}

/// `expr, expr, ...` (at least one).
pub(crate) fn expr_list(i: In<'_>) -> PResult<'_, Vec<Expr>> {
    let (mut i, first) = expr(i)?;
    let mut list = vec![first];
    while let Ok((rest, _)) = sym(",")(i) {
        let (rest, e) = cut(expr(rest))?;
        list.push(e);
        i = rest;
    }
    Ok((i, list))
}

fn primary(i: In<'_>) -> PResult<'_, Expr> {
    let (i, ()) = ws(i)?;
    let start = pos(&i);
    let first = i.fragment().chars().next();
    match first {
        Some(c)
            if c.is_ascii_digit()
                || (c == '.' && i.fragment()[1..].starts_with(|c: char| c.is_ascii_digit())) =>
        {
            let (rest, (n, span)) = number(i)?;
            let lit = match n {
                Number::Integer(v) => Literal::Integer(v),
                Number::Float(v) => Literal::Float(v),
            };
            return Ok((rest, Expr::new(ExprKind::Literal(lit), span)));
        }
        Some('\'' | '"') => {
            let (rest, (s, span)) = string_lit(i)?;
            return Ok((rest, Expr::new(ExprKind::Literal(Literal::String(s)), span)));
        }
        Some('(') => {
            let (rest, open) = sym("(")(i)?;
            let (rest, inner) = cut(expr(rest))?;
            let rest = match sym(")")(rest) {
                Ok((rest, _)) => rest,
                Err(_) => {
                    let (j, ()) = ws(rest)?;
                    let (found, _) = super::found_at(j.fragment(), 0);
                    return failure(
                        open,
                        format!("expected `)`, found {found}"),
                        "this `(` is never closed",
                        Some("add `)` where the parenthesised expression ends".into()),
                    );
                }
            };
            // Parentheses only group: the tree does not keep them.
            return Ok((rest, inner));
        }
        _ => {}
    }
    let Some(word) = word_at(i.fragment()) else {
        if first == Some('[') {
            return path_or_call(i);
        }
        return expected(i, "an expression");
    };
    let upper = word.to_ascii_uppercase();
    let literal = match upper.as_str() {
        "NULL" => Some(Literal::Null),
        "TRUE" => Some(Literal::Boolean(true)),
        "FALSE" => Some(Literal::Boolean(false)),
        _ => None,
    };
    if let Some(lit) = literal {
        let (rest, span) = kw(static_word(&upper))(i)?;
        return Ok((rest, Expr::new(ExprKind::Literal(lit), span)));
    }
    match upper.as_str() {
        "CASE" => case_expr(i),
        "CAST" | "TRY_CAST" => cast_expr(i, upper == "TRY_CAST"),
        "MATCH_RECOGNIZE" => failure(
            Span::new(start, start + word.len()),
            "MATCH_RECOGNIZE is not supported yet",
            "not supported",
            Some("express the pattern with LAG/LAST over a step, or see docs/language.md".into()),
        ),
        // `LEFT(s, n)` is a string function although LEFT is a keyword.
        "LEFT" if after_word_is_paren(&i, word) => path_or_call(i),
        _ if crate::keyword::is_reserved(word) => expected(i, "an expression"),
        _ => path_or_call(i),
    }
}

fn static_word(upper: &str) -> &'static str {
    match upper {
        "NULL" => "NULL",
        "TRUE" => "TRUE",
        _ => "FALSE",
    }
}

fn after_word_is_paren(i: &In<'_>, word: &str) -> bool {
    i.fragment()[word.len()..].trim_start().starts_with('(')
}

/// A dotted path part: a name, keywords allowed after a dot (`e.from`) and
/// for function names (`LEFT`).
fn path_part(i: In<'_>) -> PResult<'_, Ident> {
    let (i, ()) = ws(i)?;
    if i.fragment().starts_with('[') {
        return ident(i);
    }
    any_word(i)
}

/// `a.b.c` as a column path, or `name(...)` / `udf.name(...)` as a call.
fn path_or_call(i: In<'_>) -> PResult<'_, Expr> {
    let (mut i, first) = path_part(i)?;
    let mut path = vec![first];
    loop {
        // A `.` followed by `*` belongs to a wildcard select item, not to us.
        let Ok((rest, _)) = sym(".")(i) else { break };
        if sym("*")(rest).is_ok() {
            break;
        }
        let (rest, part) = cut(path_part(rest))?;
        path.push(part);
        i = rest;
    }
    let span = path[0].span.to(path[path.len() - 1].span);
    if sym("(")(i).is_ok() {
        let (mut rest, call) = function_call(i, path)?;
        let span = call.span;
        let mut e = Expr::new(ExprKind::Function(call), span);
        // `System.Window().Id`, `GetArrayElement(a, 0).temp`
        while let Ok((r, _)) = sym(".")(rest) {
            let (r, field) = cut(path_part(r))?;
            let span = e.span.to(field.span);
            e = Expr::new(
                ExprKind::Field {
                    expr: Box::new(e),
                    field,
                },
                span,
            );
            rest = r;
        }
        return Ok((rest, e));
    }
    // `System.Timestamp` without parentheses, as older ASA examples write it.
    if path.len() == 2 && path[0].matches("System") && path[1].matches("Timestamp") {
        let call = FunctionCall {
            name: path,
            args: FunctionArgs::List {
                distinct: false,
                args: vec![],
            },
            over: None,
            span,
        };
        return Ok((i, Expr::new(ExprKind::Function(call), span)));
    }
    Ok((i, Expr::new(ExprKind::Column(path), span)))
}

/// The argument list and optional OVER clause of a call whose name is `name`.
pub(crate) fn function_call<'a>(i: In<'a>, name: Vec<Ident>) -> PResult<'a, FunctionCall> {
    let start = name[0].span;
    let (i, _) = sym("(")(i)?;
    let single = (name.len() == 1).then(|| name[0].value.to_ascii_uppercase());
    let (i, args) = if let Ok((rest, _)) = sym("*")(i) {
        (rest, FunctionArgs::Star)
    } else if sym(")")(i).is_ok() {
        (
            i,
            FunctionArgs::List {
                distinct: false,
                args: vec![],
            },
        )
    } else {
        let (i, distinct) = opt_kw(i, "DISTINCT");
        if distinct && let Ok((_, star)) = sym("*")(i) {
            return failure(
                star,
                "COUNT(DISTINCT *) is not allowed: DISTINCT needs an expression",
                "not an expression",
                Some(
                    "count events with COUNT(*), or distinct values with COUNT(DISTINCT device_id)"
                        .into(),
                ),
            );
        }
        let takes_date_part = single
            .as_deref()
            .is_some_and(catalog::takes_date_part_first);
        let (i, args) = if takes_date_part {
            let (rest, part) = cut(date_part_expr(i))?;
            let mut args = vec![part];
            let mut rest = rest;
            while let Ok((r, _)) = sym(",")(rest) {
                let (r, e) = cut(expr(r))?;
                args.push(e);
                rest = r;
            }
            (rest, args)
        } else {
            cut(expr_list(i))?
        };
        (i, FunctionArgs::List { distinct, args })
    };
    let (i, close) = cut(sym(")")(i))?;
    let (i, over) = if peek_kw(i, "OVER") && over_has_paren(i) {
        let (i, over) = over_clause(i)?;
        (i, Some(Box::new(over)))
    } else {
        (i, None)
    };
    let end = over.as_ref().map_or(close, |o| o.span);
    Ok((
        i,
        FunctionCall {
            name,
            args,
            over,
            span: start.to(end),
        },
    ))
}

/// True when the `OVER` at `i` is followed by `(`: `TIMESTAMP BY f(x) OVER key`
/// has an OVER that is not the call's.
fn over_has_paren(i: In<'_>) -> bool {
    kw("OVER")(i).is_ok_and(|(rest, _)| sym("(")(rest).is_ok())
}

/// A date part argument such as `minute` or `mi`.
pub(crate) fn date_part_expr(i: In<'_>) -> PResult<'_, Expr> {
    let (i, (span, part)) = date_part(i)?;
    Ok((i, Expr::new(ExprKind::DatePart(part), span)))
}

pub(crate) fn date_part(i: In<'_>) -> PResult<'_, (Span, DatePart)> {
    let units = "day, hour, minute, second, millisecond, microsecond";
    let (rest, word) = match any_word(i) {
        Ok(r) => r,
        Err(_) => {
            let (i, ()) = ws(i)?;
            let start = pos(&i);
            let (found, len) = super::found_at(i.fragment(), 0);
            return failure(
                Span::new(start, start + len.max(1)),
                format!("expected a time unit, found {found}"),
                "expected a unit here",
                Some(format!(
                    "a duration is written (unit, amount), e.g. (minute, 10); units: {units}"
                )),
            );
        }
    };
    match DatePart::from_name(&word.value) {
        Some(part) => Ok((rest, (word.span, part))),
        None => {
            let names: Vec<&str> = DatePart::ALL.iter().map(|p| p.name()).collect();
            let help = match crate::suggest::closest(&word.value, names.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? Units: {}", names.join(", ")),
                None => format!("units: {}", names.join(", ")),
            };
            failure(
                word.span,
                format!("unknown time unit `{}`", word.value),
                "not a time unit",
                Some(help),
            )
        }
    }
}

/// `OVER ([PARTITION BY ...] [ORDER BY ...] [LIMIT DURATION(unit, n)] [WHEN cond])`
pub(crate) fn over_clause(i: In<'_>) -> PResult<'_, Over> {
    let (i, start) = kw("OVER")(i)?;
    let (i, _) = cut(sym("(")(i))?;
    let (mut i, mut partition_by) = (i, Vec::new());
    if let Ok((rest, _)) = kw("PARTITION")(i) {
        let (rest, _) = cut(kw("BY")(rest))?;
        let (rest, keys) = cut(expr_list(rest))?;
        partition_by = keys;
        i = rest;
    }
    let mut order_by = Vec::new();
    if let Ok((rest, _)) = kw("ORDER")(i) {
        let (mut rest, _) = cut(kw("BY")(rest))?;
        loop {
            let (r, e) = cut(expr(rest))?;
            let (r, asc, span) = if let Ok((r, s)) = kw("ASC")(r) {
                (r, Some(true), e.span.to(s))
            } else if let Ok((r, s)) = kw("DESC")(r) {
                (r, Some(false), e.span.to(s))
            } else {
                (r, None, e.span)
            };
            order_by.push(OrderByExpr { expr: e, asc, span });
            match sym(",")(r) {
                Ok((r, _)) => rest = r,
                Err(_) => {
                    rest = r;
                    break;
                }
            }
        }
        i = rest;
    }
    let mut limit_duration = None;
    if let Ok((rest, _)) = kw("LIMIT")(i) {
        let (rest, _) = cut(kw("DURATION")(rest))?;
        let (rest, d) = cut(duration_args(rest, false))?;
        limit_duration = Some(d);
        i = rest;
    }
    let mut when = None;
    if let Ok((rest, _)) = kw("WHEN")(i) {
        let (rest, cond) = cut(expr(rest))?;
        when = Some(Box::new(cond));
        i = rest;
    }
    let (i, close) = cut(sym(")")(i))?;
    Ok((
        i,
        Over {
            partition_by,
            order_by,
            limit_duration,
            when,
            span: start.to(close),
        },
    ))
}

/// `(unit, n)`: the arguments of `DURATION`, `Hop`, `Offset`, ...; `signed`
/// admits negative amounts (an `Offset` may shift the grid back).
pub(crate) fn duration_args(i: In<'_>, signed: bool) -> PResult<'_, Duration> {
    let (i, _) = sym("(")(i)?;
    let (i, (unit_span, unit)) = cut(date_part(i))?;
    let (i, _) = cut(sym(",")(i))?;
    let (i, (amount, amount_span)) = if signed {
        match op_sym("-")(i) {
            Ok((rest, minus)) => {
                let (rest, (n, span)) = cut(window_amount(rest))?;
                (rest, (-n, minus.to(span)))
            }
            Err(_) => cut(window_amount(i))?,
        }
    } else {
        cut(window_amount(i))?
    };
    let (i, _) = cut(sym(")")(i))?;
    let span = unit_span.to(amount_span);
    Ok((i, Duration { unit, amount, span }))
}

/// A window size or count: a positive integer literal, with its span.
pub(crate) fn window_amount(i: In<'_>) -> PResult<'_, (i64, Span)> {
    let (i, ()) = ws(i)?;
    let start = pos(&i);
    match expr(i) {
        Ok((
            rest,
            Expr {
                kind: ExprKind::Literal(Literal::Integer(n)),
                span,
            },
        )) if n > 0 => Ok((rest, (n, span))),
        Ok((_, e)) => failure(
            Span::new(start, e.span.end),
            format!("a size must be a positive whole number, not `{e}`"),
            "not a positive whole number",
            Some("write e.g. `minute, 5`; for 90 seconds write `second, 90`".into()),
        ),
        Err(e) => Err(e),
    }
}

fn case_expr(i: In<'_>) -> PResult<'_, Expr> {
    let (i, start) = kw("CASE")(i)?;
    let (i, operand) = if peek_kw(i, "WHEN") {
        (i, None)
    } else {
        let (i, e) = cut(expr(i))?;
        (i, Some(Box::new(e)))
    };
    let mut whens = Vec::new();
    let mut i = i;
    while let Ok((rest, _)) = kw("WHEN")(i) {
        let (rest, cond) = cut(expr(rest))?;
        let (rest, _) = cut(kw("THEN")(rest))?;
        let (rest, result) = cut(expr(rest))?;
        whens.push((cond, result));
        i = rest;
    }
    if whens.is_empty() {
        return cut(expected(i, "WHEN"));
    }
    let (i, else_result) = match kw("ELSE")(i) {
        Ok((rest, _)) => {
            let (rest, e) = cut(expr(rest))?;
            (rest, Some(Box::new(e)))
        }
        Err(_) => (i, None),
    };
    let (i, end) = cut(kw("END")(i))?;
    Ok((
        i,
        Expr::new(
            ExprKind::Case {
                operand,
                whens,
                else_result,
            },
            start.to(end),
        ),
    ))
}

fn cast_expr(i: In<'_>, try_cast: bool) -> PResult<'_, Expr> {
    let (i, start) = kw(if try_cast { "TRY_CAST" } else { "CAST" })(i)?;
    let (i, _) = cut(sym("(")(i))?;
    let (i, inner) = cut(expr(i))?;
    let (i, _) = cut(kw("AS")(i))?;
    let (i, data_type) = cut(data_type(i))?;
    let (i, end) = cut(sym(")")(i))?;
    Ok((
        i,
        Expr::new(
            ExprKind::Cast {
                expr: Box::new(inner),
                data_type,
                try_cast,
            },
            start.to(end),
        ),
    ))
}

/// An ASA type name: bigint, float, nvarchar(max), datetime, bit, record, array.
pub(crate) fn data_type(i: In<'_>) -> PResult<'_, DataType> {
    let (i, word) = match any_word(i) {
        Ok(r) => r,
        Err(_) => {
            let (i, ()) = ws(i)?;
            return expected(i, "a type");
        }
    };
    let found = DataType::ALL
        .into_iter()
        .find(|t| t.name().split('(').next() == Some(word.value.to_ascii_lowercase().as_str()));
    match found {
        Some(DataType::Nvarchar) => {
            // `nvarchar(max)`; a bare `nvarchar` is accepted too.
            if let Ok((rest, _)) = sym("(")(i) {
                let (rest, _) = cut(kw("max")(rest))?;
                let (rest, _) = cut(sym(")")(rest))?;
                return Ok((rest, DataType::Nvarchar));
            }
            Ok((i, DataType::Nvarchar))
        }
        Some(t) => Ok((i, t)),
        None => {
            let names: Vec<&str> = DataType::ALL.iter().map(|t| t.name()).collect();
            let help = match crate::suggest::closest(&word.value, names.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? Types: {}", names.join(", ")),
                None => format!("ASA types: {}", names.join(", ")),
            };
            failure(
                word.span,
                format!("unknown type `{}`", word.value),
                "not an ASA type",
                Some(help),
            )
        }
    }
}
