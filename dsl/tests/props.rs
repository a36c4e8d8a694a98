//! Property tests: no input makes the parser panic, and generated valid
//! expressions survive printing and parsing again.

use iotql_dsl::parse;
use proptest::prelude::*;

/// Fragments of the language, so that random text reaches deep into the grammar.
const TOKENS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP BY",
    "HAVING",
    "INTO",
    "WITH",
    "AS",
    "UNION",
    "JOIN",
    "LEFT",
    "ON",
    "CROSS APPLY",
    "TIMESTAMP BY",
    "OVER",
    "PARTITION BY",
    "LIMIT DURATION",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "CAST",
    "AS bigint",
    "NOT",
    "AND",
    "OR",
    "LIKE",
    "BETWEEN",
    "IN",
    "IS",
    "NULL",
    "TumblingWindow",
    "HoppingWindow(",
    "SessionWindow",
    "Windows(",
    "Duration(",
    "minute",
    "System.Timestamp()",
    "COUNT(*)",
    "(",
    ")",
    ",",
    ".",
    "*",
    "=",
    "<>",
    "<",
    "-",
    "+",
    "/",
    ";",
    "'s'",
    "\"d\"",
    "[x y]",
    "--c\n",
    "/*c*/",
    "/*",
    "'",
    "[",
    "1",
    "2.5",
    "1e400",
    "x",
    "e.a.b",
    "udf.f(",
    "CREATE INPUT i WITH (",
    "k = 'v'",
    "MATCH_RECOGNIZE",
    "\n",
    " ",
    "é",
    "\u{0}",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..40).prop_map(|t| t.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = parse(&text);
    }

    #[test]
    fn token_soup_never_panics(text in token_soup()) {
        let _ = parse(&text);
    }

    #[test]
    fn parsed_soup_round_trips(text in token_soup()) {
        if let Ok(script) = parse(&text) {
            let printed = script.to_string();
            let again = parse(&printed).map_err(|d| TestCaseError::fail(format!("{d}: {printed}")))?;
            prop_assert_eq!(script, again);
        }
    }
}

/// Random expressions built from the grammar, printed and parsed back.
fn expr_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        "[a-z][a-z0-9_]{0,6}".prop_filter("not a keyword", |s| !iotql_dsl::keyword::is_reserved(s)
            && !iotql_dsl::keyword::is_clause_word(s)),
        (0i64..1_000_000).prop_map(|n| n.to_string()),
        (0.0f64..1e6).prop_map(|x| format!("{x:?}")),
        "[a-z ']{0,5}".prop_map(|s| format!("'{}'", s.replace('\'', "''"))),
        Just("NULL".to_string()),
    ];
    leaf.prop_recursive(5, 40, 4, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(
                    &["+", "-", "*", "/", "%", "=", "<>", "<", ">=", "AND", "OR"][..]
                ),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("({a}) {op} ({b})")),
            inner.clone().prop_map(|a| format!("NOT ({a})")),
            inner.clone().prop_map(|a| format!("-({a})")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("({a}) BETWEEN ({b}) AND ({c})")),
            (inner.clone(), prop::collection::vec(inner.clone(), 1..3))
                .prop_map(|(a, l)| format!("({a}) NOT IN ({})", l.join(", "))),
            inner.clone().prop_map(|a| format!("({a}) IS NOT NULL")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("CASE WHEN {a} THEN {b} END")),
            inner.clone().prop_map(|a| format!("CAST({a} AS float)")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("COALESCE({a}, {b})")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn generated_expressions_round_trip(e in expr_text()) {
        let text = format!("SELECT {e} AS v FROM input");
        let script = parse(&text).map_err(|d| TestCaseError::fail(format!("{d}: {text}")))?;
        let printed = script.to_string();
        let again = parse(&printed).map_err(|d| TestCaseError::fail(format!("{d}: {printed}")))?;
        prop_assert_eq!(&script, &again);
        prop_assert_eq!(printed, again.to_string());
    }
}
