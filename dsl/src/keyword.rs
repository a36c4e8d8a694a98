//! Keywords of the language, and which of them may also serve as names.

/// Words that never stand as a bare identifier: write `[from]` to use one
/// as a column or alias name.
pub const RESERVED: &[&str] = &[
    "ALL",
    "AND",
    "APPLY",
    "AS",
    "BETWEEN",
    "BY",
    "CASE",
    "CAST",
    "CREATE",
    "CROSS",
    "DISTINCT",
    "ELSE",
    "END",
    "FALSE",
    "FROM",
    "GROUP",
    "HAVING",
    "IN",
    "INNER",
    "INTO",
    "IS",
    "JOIN",
    "LEFT",
    "LIKE",
    "MATCH_RECOGNIZE",
    "NOT",
    "NULL",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "SELECT",
    "THEN",
    "TRUE",
    "TRY_CAST",
    "UNION",
    "WHEN",
    "WHERE",
    "WITH",
];

/// Words that start a clause after a source or an expression. They may be
/// column names (`timestamp` is a common field), but not a bare alias:
/// `FROM input TIMESTAMP BY ts` must not read `TIMESTAMP` as an alias.
pub const CLAUSE_WORDS: &[&str] = &[
    "ASC",
    "DESC",
    "DURATION",
    "FULL",
    "LIMIT",
    "OVER",
    "PARTITION",
    "RIGHT",
    "TIMESTAMP",
];

pub fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|k| k.eq_ignore_ascii_case(word))
}

pub fn is_clause_word(word: &str) -> bool {
    CLAUSE_WORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

/// True when `name` can be printed without brackets and read back as the
/// same identifier.
pub fn is_plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !is_reserved(name)
        && !is_clause_word(name)
}
