//! The canonical printer on the cases where printing is subtle: each text
//! prints as expected and parses back to the same tree.

use iotql_dsl::ast::{ExprKind, SelectItem, SetExpr, Statement};
use iotql_dsl::parse;

/// Parses `text`, checks its canonical form, and that the form parses back the same.
fn canonical(text: &str) -> String {
    let script = parse(text).unwrap_or_else(|d| panic!("{text}: {d}"));
    let printed = script.to_string();
    let again = parse(&printed).unwrap_or_else(|d| panic!("{printed}: {d}"));
    assert_eq!(script, again, "{printed}");
    printed
}

#[test]
fn an_equality_at_the_head_of_an_item_keeps_its_parentheses() {
    let p = canonical("SELECT (a = b) AS v FROM i");
    assert!(p.starts_with("SELECT (a = b) AS v"), "{p}");
    let p = canonical("SELECT ((a = a) = a) AS v, ([x y] = 1) FROM i");
    assert!(p.starts_with("SELECT (a = a = a) AS v, ([x y] = 1)"), "{p}");
    // `alias = expr` is the other reading, and prints with AS.
    let p = canonical("SELECT v = a + 1 FROM i");
    assert!(p.starts_with("SELECT a + 1 AS v"), "{p}");
}

#[test]
fn nested_minus_does_not_print_as_a_comment() {
    let p = canonical("SELECT - -1 AS v FROM i");
    assert!(p.starts_with("SELECT -(-1) AS v"), "{p}");
}

#[test]
fn precedence_decides_the_parentheses() {
    let p = canonical(
        "SELECT (a + b) * c, a + (b * c), (a OR b) AND c, NOT (a = 1), (a - b) - c, a - (b - c) FROM i",
    );
    assert!(
        p.starts_with(
            "SELECT (a + b) * c, a + b * c, (a OR b) AND c, NOT a = 1, a - b - c, a - (b - c)"
        ),
        "{p}"
    );
}

#[test]
fn a_right_nested_union_keeps_its_grouping() {
    let p = canonical("SELECT * FROM a UNION (SELECT * FROM b UNION SELECT * FROM c)");
    assert!(
        p.contains("UNION\n(\nSELECT *\nFROM b\nUNION\nSELECT *\nFROM c\n)"),
        "{p}"
    );
}

#[test]
fn windows_print_positionally_when_units_agree_else_named() {
    let p = canonical(
        "SELECT COUNT(*) FROM i GROUP BY TumblingWindow(Duration(minute, 5), Offset(minute, 1))",
    );
    assert!(p.contains("TumblingWindow(minute, 5, 1)"), "{p}");
    let p = canonical(
        "SELECT COUNT(*) FROM i GROUP BY HoppingWindow(Duration(hour, 1), Hop(minute, 5), Offset(millisecond, -1))",
    );
    assert!(
        p.contains("HoppingWindow(Duration(hour, 1), Hop(minute, 5), Offset(millisecond, -1))"),
        "{p}"
    );
    let p = canonical("SELECT COUNT(*) FROM i GROUP BY Tumbling(mi, 5), x");
    assert!(p.contains("TumblingWindow(minute, 5), x"), "{p}");
    let p = canonical(
        "SELECT COUNT(*) FROM i GROUP BY Windows(Window('a', TumblingWindow(minute, 1)), HoppingWindow(minute, 5, 1) AS b)",
    );
    assert!(
        p.contains("Windows(Window('a', TumblingWindow(minute, 1)), Window('b', HoppingWindow(minute, 5, 1)))"),
        "{p}"
    );
}

#[test]
fn names_and_literals_print_so_they_read_back() {
    let p = canonical(
        "SELECT [from], [a]]b], [two words], \"it's\", 'it''s', 1.0, 1e5, .5, TRUE, NULL, System.Timestamp FROM i",
    );
    assert!(
        p.starts_with("SELECT [from], [a]]b], [two words], 'it''s', 'it''s', 1.0, 100000.0, 0.5, TRUE, NULL, System.Timestamp()"),
        "{p}"
    );
}

#[test]
fn spans_point_at_the_source_text() {
    let text = "SELECT device_id, AVG(t) AS avg_t\nFROM readings r TIMESTAMP BY ts\nGROUP BY device_id, TumblingWindow(minute, 5)";
    let script = parse(text).unwrap();
    let Statement::Query(q) = &script.statements[0] else {
        panic!("not a query")
    };
    let SetExpr::Select(s) = &q.body else {
        panic!("not a select")
    };
    let SelectItem::Expr { expr, alias, span } = &s.projection[1] else {
        panic!("not an expression")
    };
    assert_eq!(&text[span.range()], "AVG(t) AS avg_t");
    assert_eq!(&text[expr.span.range()], "AVG(t)");
    assert!(matches!(expr.kind, ExprKind::Function(_)));
    assert_eq!(&text[alias.as_ref().unwrap().span.range()], "avg_t");
    assert_eq!(
        &text[s.from.source.span.range()],
        "readings r TIMESTAMP BY ts"
    );
    let window = s.group_by.as_ref().unwrap().windows().next().unwrap();
    assert_eq!(&text[window.span().range()], "TumblingWindow(minute, 5)");
    assert_eq!(s.span.line_col(text), (1, 1));
    assert_eq!(window.span().line_col(text), (3, 21));
}
