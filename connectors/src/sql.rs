//! SQL text shared by the database connectors.

use iotql_engine::arrow::datatypes::{DataType, Schema};

/// `name` as a double-quoted SQL identifier (case kept): SQLite,
/// PostgreSQL and DataFusion quote alike.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A column type the API reads as a point in time.
pub(crate) fn is_time_type(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
    )
}

/// The column the API's time ranges and newest-first reads use by default
/// (`docs/http.md`): the output's first datetime column.
pub(crate) fn default_time_column(schema: &Schema) -> Option<&str> {
    schema
        .fields()
        .iter()
        .find(|f| is_time_type(f.data_type()))
        .map(|f| f.name().as_str())
}

/// The column a table created for an output gets an index on, so that the
/// API's time ranges and newest rows are read through it rather than by a
/// scan of the whole table: [`default_time_column`], unless the output is
/// keyed without a datetime column in its key. Such a table holds a row
/// per key (a device's latest reading) and stays small, and an index would
/// only cost its upserts.
pub(crate) fn indexed_time_column<'a>(schema: &'a Schema, key: &[String]) -> Option<&'a str> {
    let time = default_time_column(schema)?;
    let key_has_time = key.iter().any(|k| {
        schema
            .fields()
            .iter()
            .any(|f| f.name().eq_ignore_ascii_case(k) && is_time_type(f.data_type()))
    });
    (key.is_empty() || key_has_time).then_some(time)
}

/// `CREATE INDEX` on `column` of `table` (both as written in SQL), named
/// after them: the same statement for SQLite and PostgreSQL.
pub(crate) fn create_time_index(table: &str, table_name: &str, column: &str) -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS {} ON {table} ({})",
        quote(&format!("{table_name}_{column}_idx")),
        quote(column)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use iotql_engine::arrow::datatypes::{Field, TimeUnit};

    fn schema() -> Schema {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        Schema::new(vec![
            Field::new("device_id", DataType::Utf8, true),
            Field::new("window_end", ts.clone(), true),
            Field::new("ts", ts, true),
            Field::new("avg", DataType::Float64, true),
        ])
    }

    #[test]
    fn a_growing_table_is_indexed_on_its_first_datetime_column_a_table_of_a_row_per_key_is_not() {
        let s = schema();
        let key = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(indexed_time_column(&s, &[]), Some("window_end"));
        assert_eq!(
            indexed_time_column(&s, &key(&["device_id", "WINDOW_END"])),
            Some("window_end")
        );
        assert_eq!(
            indexed_time_column(&s, &key(&["device_id", "ts"])),
            Some("window_end")
        );
        assert_eq!(indexed_time_column(&s, &key(&["device_id"])), None);
        let untimed = Schema::new(vec![Field::new("a", DataType::Int64, true)]);
        assert_eq!(indexed_time_column(&untimed, &[]), None);
        assert_eq!(
            create_time_index("\"main\".\"t\"", "t", "window_end"),
            "CREATE INDEX IF NOT EXISTS \"t_window_end_idx\" ON \"main\".\"t\" (\"window_end\")"
        );
    }
}
