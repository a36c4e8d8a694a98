//! SQL text shared by the database connectors.

/// `name` as a double-quoted SQL identifier (case kept): SQLite,
/// PostgreSQL and DataFusion quote alike.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
