//! Statements: declarations, WITH steps, SELECT with its clauses, UNION,
//! FROM sources, joins and applies, GROUP BY windows.

use super::expr::{date_part, expr, expr_list, function_call, opt_kw, window_amount};
use super::token::*;
use crate::ast::*;
use crate::keyword::is_reserved;
use crate::span::Span;
use crate::suggest::closest;

/// The whole file: statements separated by optional `;`.
pub(crate) fn script(i: In<'_>) -> PResult<'_, Script> {
    let (mut i, ()) = ws(i)?;
    let mut statements = Vec::new();
    loop {
        while let Ok((rest, _)) = sym(";")(i) {
            i = rest;
        }
        let (rest, ()) = ws(i)?;
        i = rest;
        if i.fragment().is_empty() {
            break;
        }
        let (rest, statement) = statement(i)?;
        statements.push(statement);
        i = rest;
    }
    if statements.is_empty() {
        let end = pos(&i);
        return failure(
            Span::new(end, end),
            "the file has no statement",
            "expected a statement",
            Some("a job needs at least one SELECT, e.g. `SELECT * INTO output FROM input`".into()),
        );
    }
    let end = pos(&i);
    Ok((
        i,
        Script {
            statements,
            span: Span::new(0, end),
        },
    ))
}

fn statement(i: In<'_>) -> PResult<'_, Statement> {
    if peek_kw(i, "CREATE") {
        return create(i);
    }
    if peek_kw(i, "WITH") || peek_kw(i, "SELECT") || sym("(")(i).is_ok() {
        let (i, q) = query(i)?;
        return Ok((i, Statement::Query(q)));
    }
    let (i, ()) = ws(i)?;
    i.extra.expect(pos(&i), "SELECT");
    i.extra.expect(pos(&i), "WITH");
    expected(i, "CREATE")
}

fn create(i: In<'_>) -> PResult<'_, Statement> {
    let (i, start) = kw("CREATE")(i)?;
    let (i, reference) = opt_kw(i, "REFERENCE");
    let (i, is_input) = if reference {
        (cut(kw("INPUT")(i))?.0, true)
    } else if let Ok((rest, _)) = kw("INPUT")(i) {
        (rest, true)
    } else {
        (cut(kw("OUTPUT")(i))?.0, false)
    };
    let (i, name) = cut(ident(i))?;
    let what = if is_input { "INPUT" } else { "OUTPUT" };
    let i = match kw("WITH")(i) {
        Ok((i, _)) => i,
        Err(_) => {
            let (j, ()) = ws(i)?;
            let at = pos(&j);
            let (found, len) = super::found_at(j.fragment(), 0);
            return failure(
                Span::new(at, at + len.max(1)),
                format!(
                    "expected WITH (...) after CREATE {what} {}, found {found}",
                    name.value
                ),
                "expected WITH here",
                Some(format!(
                    "a declaration lists its connector options: CREATE {what} {} WITH (connector = '...', ...)",
                    name.value
                )),
            );
        }
    };
    let (i, _) = cut(sym("(")(i))?;
    let (mut i, first) = cut(option_entry(i))?;
    let mut options = vec![first];
    while let Ok((rest, _)) = sym(",")(i) {
        let (rest, entry) = cut(option_entry(rest))?;
        options.push(entry);
        i = rest;
    }
    let (i, close) = cut(sym(")")(i))?;
    let span = start.to(close);
    let statement = if is_input {
        Statement::CreateInput(CreateInput {
            name,
            reference,
            options,
            span,
        })
    } else {
        Statement::CreateOutput(CreateOutput {
            name,
            options,
            span,
        })
    };
    Ok((i, statement))
}

fn option_entry(i: In<'_>) -> PResult<'_, OptionEntry> {
    let (i, key) = ident(i)?;
    let (i, _) = cut(sym("=")(i))?;
    let (i, ()) = ws(i)?;
    let (i, (value, value_span)) = match string_lit(i) {
        Ok(r) => r,
        Err(nom::Err::Error(_)) => {
            let found = word_at(i.fragment()).unwrap_or("");
            let start = pos(&i);
            let shown = if found.is_empty() { "value" } else { found };
            return failure(
                Span::new(start, start + found.len().max(1)),
                format!(
                    "the value of option `{}` must be a quoted string",
                    key.value
                ),
                "expected a 'quoted string'",
                Some(format!(
                    "options are written key = 'value': {} = '{shown}'",
                    key.value
                )),
            );
        }
        Err(e) => return Err(e),
    };
    let span = key.span.to(value_span);
    Ok((i, OptionEntry { key, value, span }))
}

fn query(i: In<'_>) -> PResult<'_, Query> {
    let (i, ()) = ws(i)?;
    let start = pos(&i);
    let (mut i, mut steps) = (i, Vec::new());
    if let Ok((rest, _)) = kw("WITH")(i) {
        let (mut rest, first) = cut(step(rest))?;
        steps.push(first);
        while let Ok((r, _)) = sym(",")(rest) {
            let (r, s) = cut(step(r))?;
            steps.push(s);
            rest = r;
        }
        i = rest;
    }
    let (i, body) = cut(set_expr(i))?;
    let span = Span::new(start, body.span().end);
    Ok((i, Query { steps, body, span }))
}

fn step(i: In<'_>) -> PResult<'_, Step> {
    let (i, name) = ident(i)?;
    let (i, _) = cut(kw("AS")(i))?;
    let (i, _) = cut(sym("(")(i))?;
    let (i, query) = cut(set_expr(i))?;
    let (i, close) = cut(sym(")")(i))?;
    let span = name.span.to(close);
    Ok((i, Step { name, query, span }))
}

/// `operand (UNION operand)*`, left-associative.
fn set_expr(i: In<'_>) -> PResult<'_, SetExpr> {
    let (mut i, mut left) = set_operand(i)?;
    while let Ok((rest, _)) = kw("UNION")(i) {
        // `UNION ALL` means the same as UNION in ASA: every row is kept.
        let (rest, _) = opt_kw(rest, "ALL");
        let (rest, right) = cut(set_operand(rest))?;
        let span = left.span().to(right.span());
        left = SetExpr::Union {
            left: Box::new(left),
            right: Box::new(right),
            span,
        };
        i = rest;
    }
    Ok((i, left))
}

fn set_operand(i: In<'_>) -> PResult<'_, SetExpr> {
    if let Ok((rest, _)) = sym("(")(i) {
        let (rest, inner) = cut(set_expr(rest))?;
        let (rest, _) = cut(sym(")")(rest))?;
        return Ok((rest, inner));
    }
    let (i, s) = select(i)?;
    Ok((i, SetExpr::Select(Box::new(s))))
}

fn select(i: In<'_>) -> PResult<'_, Select> {
    let (i, start) = kw("SELECT")(i)?;
    let (i, projection) = cut(select_list(i))?;
    let (i, into) = match kw("INTO")(i) {
        Ok((rest, _)) => {
            let (rest, name) = cut(ident(rest))?;
            (rest, Some(name))
        }
        Err(_) => (i, None),
    };
    let (i, from) = cut(from_clause(i))?;
    if next_word(i).is_some_and(|w| w.eq_ignore_ascii_case("MATCH_RECOGNIZE")) {
        let (j, ()) = ws(i)?;
        let at = pos(&j);
        return failure(
            Span::new(at, at + "MATCH_RECOGNIZE".len()),
            "MATCH_RECOGNIZE is not supported yet",
            "not supported",
            Some("compare consecutive events with LAG(x) OVER (PARTITION BY key LIMIT DURATION(unit, n)) in a WITH step".into()),
        );
    }
    let (i, where_clause) = match kw("WHERE")(i) {
        Ok((rest, _)) => {
            let (rest, e) = expr_after(rest, "WHERE")?;
            (rest, Some(e))
        }
        Err(_) => (i, None),
    };
    let (i, group_by) = match kw("GROUP")(i) {
        Ok((rest, g)) => {
            let (rest, _) = cut(kw("BY")(rest))?;
            let (rest, g) = cut(group_by(rest, g))?;
            (rest, Some(g))
        }
        Err(_) => (i, None),
    };
    let (i, having) = match kw("HAVING")(i) {
        Ok((rest, _)) => {
            let (rest, e) = expr_after(rest, "HAVING")?;
            (rest, Some(e))
        }
        Err(_) => (i, None),
    };
    let end = having
        .as_ref()
        .map(|h| h.span)
        .or(group_by.as_ref().map(|g| g.span))
        .or(where_clause.as_ref().map(|w| w.span))
        .unwrap_or(from.span);
    Ok((
        i,
        Select {
            projection,
            into,
            from,
            where_clause,
            group_by,
            having,
            span: start.to(end),
        },
    ))
}

/// The expression a clause keyword requires; its absence is named after
/// the keyword ("expected an expression after WHERE").
fn expr_after<'a>(i: In<'a>, keyword: &str) -> PResult<'a, Expr> {
    let example = match keyword {
        "TIMESTAMP BY" => "TIMESTAMP BY ts",
        "ON" => "ON r.device_id = d.device_id",
        "HAVING" => "HAVING COUNT(*) > 3",
        _ => "WHERE temperature_c > 30",
    };
    match expr(i) {
        Err(nom::Err::Error(_)) => {
            let (j, ()) = ws(i)?;
            let at = pos(&j);
            if at < i.extra.furthest().0 {
                // The expression started and failed further on: that is the error.
                return cut(expr(i));
            }
            let (found, len) = super::found_at(j.fragment(), 0);
            failure(
                Span::new(at, at + len.max(1)),
                format!("expected an expression after {keyword}, found {found}"),
                "expected an expression here",
                Some(format!("{keyword} needs an expression, e.g. `{example}`")),
            )
        }
        other => other,
    }
}

fn select_list(i: In<'_>) -> PResult<'_, Vec<SelectItem>> {
    let (mut i, first) = select_item(i)?;
    let mut items = vec![first];
    loop {
        if let Ok((rest, comma)) = sym(",")(i) {
            match select_item(rest) {
                Ok((rest, item)) => {
                    items.push(item);
                    i = rest;
                    continue;
                }
                Err(nom::Err::Error(_)) => {
                    if let Some(word) = next_word(rest).filter(|w| is_reserved(w)) {
                        return failure(
                            comma,
                            format!("trailing comma before {}", word.to_ascii_uppercase()),
                            "this comma is followed by no select item",
                            Some("remove the comma, or add the missing item after it".into()),
                        );
                    }
                    return cut(select_item(rest).map(|(r, item)| (r, vec![item])));
                }
                Err(e) => return Err(e),
            }
        }
        break;
    }
    missing_comma_check(i, items.last())?;
    Ok((i, items))
}

/// The word at the next token, if it is one.
fn next_word<'a>(i: In<'a>) -> Option<&'a str> {
    let (i, ()) = ws(i).ok()?;
    word_at(i.fragment())
}

/// After the select list, another expression means a comma is missing.
fn missing_comma_check<'a>(i: In<'a>, last: Option<&SelectItem>) -> PResult<'a, ()> {
    let (j, ()) = ws(i)?;
    let s = *j.fragment();
    let starts_item = match s.chars().next() {
        Some(c) if c.is_ascii_digit() || c == '\'' || c == '"' || c == '[' => true,
        Some(c) if is_ident_start(c) => word_at(s).is_some_and(|w| !is_reserved(w)),
        _ => false,
    };
    if !starts_item {
        return Ok((i, ()));
    }
    let start = pos(&j);
    let len = word_at(s).map_or(1, str::len);
    let mut help = "separate select items with commas: `SELECT a, b`".to_string();
    if let Some(SelectItem::Expr {
        expr,
        alias: Some(alias),
        ..
    }) = last
    {
        let keywords = ["FROM", "INTO", "WHERE"];
        help = match closest(&alias.value, keywords) {
            Some(k) => format!(
                "did you mean {k}? `{}` was read as an alias of `{expr}`",
                alias.value
            ),
            None => format!(
                "`{expr} {}` reads `{}` as an alias of `{expr}`; separate select items with commas",
                alias.value, alias.value
            ),
        };
    }
    failure(
        Span::new(start, start + len),
        "missing comma between select items",
        "expected `,` or FROM before this",
        Some(help),
    )
}

fn select_item(i: In<'_>) -> PResult<'_, SelectItem> {
    let (i, ()) = ws(i)?;
    let start = pos(&i);
    if let Ok((rest, star)) = sym("*")(i) {
        return Ok((rest, SelectItem::Wildcard(star)));
    }
    // `alias.*` / `e.record.*`
    if let Some((rest, path, end)) = qualified_wildcard(i) {
        return Ok((
            rest,
            SelectItem::QualifiedWildcard(path, Span::new(start, end)),
        ));
    }
    // `alias = expr`
    if let Ok((rest, alias)) = ident(i)
        && let Ok((rest, _)) = sym("=")(rest)
    {
        let (rest, e) = cut(expr(rest))?;
        let span = Span::new(start, e.span.end);
        return Ok((
            rest,
            SelectItem::Expr {
                expr: e,
                alias: Some(alias),
                span,
            },
        ));
    }
    let (i, e) = expr(i)?;
    let (i, alias) = alias(i)?;
    let end = alias.as_ref().map_or(e.span.end, |a| a.span.end);
    Ok((
        i,
        SelectItem::Expr {
            expr: e,
            alias,
            span: Span::new(start, end),
        },
    ))
}

fn qualified_wildcard(i: In<'_>) -> Option<(In<'_>, Vec<Ident>, usize)> {
    let (mut i, first) = ident(i).ok()?;
    let mut path = vec![first];
    loop {
        let (rest, _) = sym(".")(i).ok()?;
        if let Ok((rest, star)) = sym("*")(rest) {
            return Some((rest, path, star.end));
        }
        let (rest, part) = any_word(rest).ok().or_else(|| ident(rest).ok())?;
        path.push(part);
        i = rest;
    }
}

/// `[AS] alias`, `AS 'alias'`: the name a select item or source is known by.
fn alias(i: In<'_>) -> PResult<'_, Option<Ident>> {
    if let Ok((rest, _)) = kw("AS")(i) {
        if let Ok((rest, (value, span))) = string_lit(rest) {
            return Ok((rest, Some(Ident::new(value, span))));
        }
        return match ident(rest) {
            Ok((rest, name)) => Ok((rest, Some(name))),
            Err(nom::Err::Error(_)) => match next_word(rest) {
                Some(w) if is_reserved(w) => {
                    let (r, ()) = ws(rest)?;
                    let start = pos(&r);
                    failure(
                        Span::new(start, start + w.len()),
                        format!("`{w}` is a reserved word and cannot be an alias as it is"),
                        "reserved word",
                        Some(format!(
                            "write it in brackets, [{w}], or choose another name"
                        )),
                    )
                }
                _ => cut(expected(rest, "an alias")),
            },
            Err(e) => Err(e),
        };
    }
    match ident_of(Names::Alias)(i) {
        Ok((rest, name)) => {
            i.extra.set_bare_alias(name.span);
            Ok((rest, Some(name)))
        }
        Err(nom::Err::Error(_)) => Ok((i, None)),
        Err(e) => Err(e),
    }
}

fn from_clause(i: In<'_>) -> PResult<'_, FromClause> {
    let (i, start) = kw("FROM")(i)?;
    let (mut i, source) = cut(source(i))?;
    let mut joins = Vec::new();
    loop {
        let (rest, join) = join_clause(i)?;
        match join {
            Some(j) => {
                joins.push(j);
                i = rest;
            }
            None => break,
        }
    }
    let end = joins.last().map_or(source.span, JoinClause::span);
    let span = start.to(end);
    Ok((
        i,
        FromClause {
            source,
            joins,
            span,
        },
    ))
}

/// `name [[AS] alias] [TIMESTAMP BY expr [OVER keys]] [PARTITION BY keys]`;
/// the two BY clauses may come in either order.
fn source(i: In<'_>) -> PResult<'_, Source> {
    let (i, name) = ident(i)?;
    let (mut i, alias) = alias(i)?;
    let mut timestamp_by = None;
    let mut partition_by = Vec::new();
    let mut end = alias.as_ref().unwrap_or(&name).span;
    loop {
        if timestamp_by.is_none()
            && let Ok((rest, ts_start)) = kw("TIMESTAMP")(i)
        {
            let (rest, _) = cut(kw("BY")(rest))?;
            let (rest, e) = expr_after(rest, "TIMESTAMP BY")?;
            let (rest, over) = match kw("OVER")(rest) {
                Ok((r, _)) => cut(expr_list(r))?,
                Err(_) => (rest, Vec::new()),
            };
            let ts_end = over.last().map_or(e.span, |o| o.span);
            end = ts_end;
            timestamp_by = Some(TimestampBy {
                expr: e,
                over,
                span: ts_start.to(ts_end),
            });
            i = rest;
            continue;
        }
        if partition_by.is_empty()
            && let Ok((rest, _)) = kw("PARTITION")(i)
        {
            let (rest, _) = cut(kw("BY")(rest))?;
            let (rest, keys) = cut(expr_list(rest))?;
            end = keys.last().map_or(end, |k| k.span);
            partition_by = keys;
            i = rest;
            continue;
        }
        break;
    }
    let span = name.span.to(end);
    Ok((
        i,
        Source {
            name,
            alias,
            timestamp_by,
            partition_by,
            span,
        },
    ))
}

fn join_clause(i: In<'_>) -> PResult<'_, Option<JoinClause>> {
    let (i, ()) = ws(i)?;
    let start = pos(&i);
    let (i, kind) = if let Ok((rest, _)) = kw("JOIN")(i) {
        (rest, JoinKind::Inner)
    } else if let Ok((rest, _)) = kw("INNER")(i) {
        (cut(kw("JOIN")(rest))?.0, JoinKind::Inner)
    } else if let Ok((rest, _)) = kw("LEFT")(i) {
        let (rest, _) = opt_kw(rest, "OUTER");
        (cut(kw("JOIN")(rest))?.0, JoinKind::Left)
    } else if let Ok((rest, _)) = kw("CROSS")(i) {
        let (rest, _) = cut(kw("APPLY")(rest))?;
        return apply(rest, start, ApplyKind::Cross).map(|(r, a)| (r, Some(a)));
    } else if let Ok((rest, _)) = kw("OUTER")(i) {
        let (rest, _) = cut(kw("APPLY")(rest))?;
        return apply(rest, start, ApplyKind::Outer).map(|(r, a)| (r, Some(a)));
    } else if let Some(w) =
        next_word(i).filter(|w| w.eq_ignore_ascii_case("RIGHT") || w.eq_ignore_ascii_case("FULL"))
    {
        return failure(
            Span::new(start, start + w.len()),
            format!("{} JOIN is not supported", w.to_ascii_uppercase()),
            "not supported",
            Some("ASA joins are JOIN (inner) and LEFT [OUTER] JOIN: swap the two sources and use LEFT JOIN".into()),
        );
    } else {
        return Ok((i, None));
    };
    let (i, source) = cut(source(i))?;
    let (i, _) = cut(kw("ON")(i))?;
    let (i, on) = expr_after(i, "ON")?;
    let span = Span::new(start, on.span.end);
    Ok((
        i,
        Some(JoinClause::Join(Box::new(Join {
            kind,
            source,
            on,
            span,
        }))),
    ))
}

fn apply(i: In<'_>, start: usize, kind: ApplyKind) -> PResult<'_, JoinClause> {
    let (i, name) = cut(ident(i))?;
    let mut path = vec![name];
    let mut i = i;
    while let Ok((rest, _)) = sym(".")(i) {
        let (rest, part) = cut(any_word(rest))?;
        path.push(part);
        i = rest;
    }
    let (i, function) = cut(function_call(i, path))?;
    let (i, alias) = alias(i)?;
    let Some(alias) = alias else {
        return cut(expected(i, "AS and an alias for the applied rows"));
    };
    let span = Span::new(start, alias.span.end);
    Ok((
        i,
        JoinClause::Apply(Box::new(Apply {
            kind,
            function,
            alias,
            span,
        })),
    ))
}

fn group_by(i: In<'_>, start: Span) -> PResult<'_, GroupBy> {
    let (mut i, first) = group_item(i)?;
    let mut items = vec![first];
    while let Ok((rest, _)) = sym(",")(i) {
        let (rest, item) = cut(group_item(rest))?;
        items.push(item);
        i = rest;
    }
    let end = items.last().map_or(start, GroupItem::span);
    Ok((
        i,
        GroupBy {
            items,
            span: start.to(end),
        },
    ))
}

/// The word at `i` if it is followed by `(`: the name of a call.
fn call_name<'a>(i: In<'a>) -> Option<&'a str> {
    let (i, ()) = ws(i).ok()?;
    let w = word_at(i.fragment())?;
    i.fragment()[w.len()..]
        .trim_start()
        .starts_with('(')
        .then_some(w)
}

fn group_item(i: In<'_>) -> PResult<'_, GroupItem> {
    if let Some(name) = call_name(i) {
        if name.eq_ignore_ascii_case("Windows") {
            let (i, start) = kw("Windows")(i)?;
            let (i, _) = sym("(")(i)?;
            let (mut i, first) = cut(window(i, true))?;
            let mut windows = vec![first];
            while let Ok((rest, _)) = sym(",")(i) {
                let (rest, w) = cut(window(rest, true))?;
                windows.push(w);
                i = rest;
            }
            let (i, close) = cut(sym(")")(i))?;
            return Ok((i, GroupItem::Windows(windows, start.to(close))));
        }
        if WindowKind::from_name(name).is_some() {
            let (i, w) = window(i, false)?;
            return Ok((i, GroupItem::Window(w)));
        }
    }
    let (i, e) = expr(i)?;
    if let ExprKind::Function(call) = &e.kind {
        let is_snapshot = call.name.len() == 2
            && call.name[0].matches("System")
            && call.name[1].matches("Timestamp")
            && call.over.is_none()
            && matches!(&call.args, FunctionArgs::List { args, .. } if args.is_empty());
        if is_snapshot {
            return Ok((i, GroupItem::Snapshot(e.span)));
        }
    }
    Ok((i, GroupItem::Expr(e)))
}

/// Which arguments a window takes, for arity messages.
fn window_usage(kind: WindowKind) -> &'static str {
    match kind {
        WindowKind::Tumbling => {
            "TumblingWindow(unit, size[, offset]) or TumblingWindow(Duration(unit, size)[, Offset(unit, offset)])"
        }
        WindowKind::Hopping => {
            "HoppingWindow(unit, size, hop[, offset]) or HoppingWindow(Duration(unit, size), Hop(unit, hop)[, Offset(unit, offset)])"
        }
        WindowKind::Sliding => "SlidingWindow(unit, size) or SlidingWindow(Duration(unit, size))",
        WindowKind::Session => {
            "SessionWindow(unit, timeout, maxduration) or SessionWindow(Timeout(unit, timeout), MaxDuration(unit, maxduration))"
        }
    }
}

/// A window call, in positional or named form, with `OVER (PARTITION BY ...)`
/// for sessions; inside `Windows(...)` also `Window('id', w)` and `w AS id`.
fn window(i: In<'_>, in_windows: bool) -> PResult<'_, Window> {
    if in_windows && call_name(i).is_some_and(|n| n.eq_ignore_ascii_case("Window")) {
        let (i, start) = kw("Window")(i)?;
        let (i, _) = sym("(")(i)?;
        let (i, (id, id_span)) = cut(string_lit(i))?;
        let (i, _) = cut(sym(",")(i))?;
        let (i, mut w) = cut(window(i, false))?;
        let (i, close) = cut(sym(")")(i))?;
        w.alias = Some(Ident::new(id, id_span));
        w.span = start.to(close);
        return Ok((i, w));
    }
    let (i, name) = any_word(i)?;
    let Some(kind) = WindowKind::from_name(&name.value) else {
        return cut(expected(i, "a window"));
    };
    let (i, _) = cut(sym("(")(i))?;
    let named = next_word(i).is_some_and(|w| {
        ["Duration", "Hop", "Offset", "Timeout", "MaxDuration"]
            .iter()
            .any(|k| k.eq_ignore_ascii_case(w))
    });
    let mut parts: Vec<(String, Duration)> = Vec::new();
    let mut i = i;
    if named {
        loop {
            let (rest, part_name) = cut(any_word(i))?;
            let signed = part_name.matches("Offset");
            let (rest, d) = cut(super::expr::duration_args(rest, signed))?;
            parts.push((part_name.value.to_ascii_lowercase(), d));
            i = rest;
            match sym(",")(i) {
                Ok((rest, _)) => i = rest,
                Err(_) => break,
            }
        }
    } else {
        let (rest, (unit_span, unit)) = cut(date_part(i))?;
        i = rest;
        let mut amounts = Vec::new();
        while let Ok((rest, _)) = sym(",")(i) {
            let (rest, (n, span)) = cut(window_amount(rest))?;
            amounts.push((n, span));
            i = rest;
        }
        let roles: &[&str] = match (kind, amounts.len()) {
            (WindowKind::Tumbling, 1) => &["duration"],
            (WindowKind::Tumbling, 2) => &["duration", "offset"],
            (WindowKind::Hopping, 2) => &["duration", "hop"],
            (WindowKind::Hopping, 3) => &["duration", "hop", "offset"],
            (WindowKind::Sliding, 1) => &["duration"],
            (WindowKind::Session, 2) => &["timeout", "maxduration"],
            _ => &[],
        };
        if roles.is_empty() || roles.len() != amounts.len() {
            return arity_error(i, &name, kind, amounts.len() + 1);
        }
        for (role, (amount, span)) in roles.iter().zip(amounts) {
            let span = unit_span.to(span);
            parts.push((role.to_string(), Duration { unit, amount, span }));
        }
    }
    let (i, close) = match sym(")")(i) {
        Ok(r) => r,
        Err(_) => return arity_error(i, &name, kind, 0),
    };
    let take = |role: &str| parts.iter().find(|(r, _)| r == role).map(|(_, d)| *d);
    let allowed: &[&str] = match kind {
        WindowKind::Tumbling => &["duration", "offset"],
        WindowKind::Hopping => &["duration", "hop", "offset"],
        WindowKind::Sliding => &["duration"],
        WindowKind::Session => &["timeout", "maxduration"],
    };
    let required: &[&str] = match kind {
        WindowKind::Tumbling | WindowKind::Sliding => &["duration"],
        WindowKind::Hopping => &["duration", "hop"],
        WindowKind::Session => &["timeout", "maxduration"],
    };
    let misplaced = parts.iter().any(|(r, _)| !allowed.contains(&r.as_str()));
    let missing = required.iter().any(|r| take(r).is_none());
    let mut seen = Vec::new();
    let repeated = parts.iter().any(|(r, _)| {
        let dup = seen.contains(r);
        seen.push(r.clone());
        dup
    });
    if misplaced || missing || repeated {
        return failure(
            name.span.to(close),
            format!("wrong arguments for {}", kind.name()),
            "these arguments do not fit this window",
            Some(format!("write {}", window_usage(kind))),
        );
    }
    let mut end = close;
    let (i, partition_by) = if kind == WindowKind::Session && over_follows(i) {
        let (r, _) = kw("OVER")(i)?;
        let (r, _) = cut(sym("(")(r))?;
        let (r, _) = cut(kw("PARTITION")(r))?;
        let (r, _) = cut(kw("BY")(r))?;
        let (r, keys) = cut(expr_list(r))?;
        let (r, close) = cut(sym(")")(r))?;
        end = close;
        (r, keys)
    } else {
        (i, Vec::new())
    };
    let (i, alias) = if in_windows {
        match kw("AS")(i) {
            Ok((r, _)) => {
                let (r, a) = cut(ident(r))?;
                end = a.span;
                (r, Some(a))
            }
            Err(_) => (i, None),
        }
    } else {
        (i, None)
    };
    Ok((
        i,
        Window {
            kind,
            size: take("duration"),
            hop: take("hop"),
            offset: take("offset"),
            timeout: take("timeout"),
            max_duration: take("maxduration"),
            partition_by,
            alias,
            span: name.span.to(end),
        },
    ))
}

fn over_follows(i: In<'_>) -> bool {
    peek_kw(i, "OVER")
}

fn arity_error<'a, T>(i: In<'a>, name: &Ident, kind: WindowKind, given: usize) -> PResult<'a, T> {
    let (j, ()) = ws(i)?;
    let end = pos(&j);
    let message = if given > 0 {
        format!(
            "{} does not take {given} argument{}",
            kind.name(),
            if given == 1 { "" } else { "s" }
        )
    } else {
        format!("wrong arguments for {}", kind.name())
    };
    failure(
        Span::new(name.span.start, end.max(name.span.end)),
        message,
        "this window call",
        Some(format!("write {}", window_usage(kind))),
    )
}
