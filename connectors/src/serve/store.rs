//! Reading an output's rows back from where it wrote them: a SQLite table,
//! a PostgreSQL table, a Parquet folder (through DataFusion). One SQL shape
//! for the three (a filter on the time column and on key columns, an order,
//! a limit, and the newest row per key through ROW_NUMBER), written in each
//! one's words; the values of a request go in as parameters (SQLite,
//! PostgreSQL) or as quoted literals (DataFusion), never as SQL.

use std::path::PathBuf;

use iotql_engine::arrow::datatypes::{DataType, Schema};
use serde_json::{Map, Value};

use super::query::{RowQuery, iso};
use crate::endpoint::OutputSpec;
use crate::sql::quote;

/// Where an output's rows can be read back.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite { path: PathBuf, table: String },
    Postgres(Box<crate::postgres::PostgresOutput>),
    Parquet { dir: PathBuf },
}

/// How one engine writes the parts of the query that differ.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Dialect {
    Sqlite,
    Postgres,
    DataFusion,
}

impl Store {
    /// The store of an output bound to `spec`, if it has one.
    pub fn of(spec: &OutputSpec) -> Option<Store> {
        match spec {
            OutputSpec::Sqlite(o) => Some(Store::Sqlite {
                path: o.path.clone(),
                table: o.table.clone(),
            }),
            OutputSpec::Postgres(o) => Some(Store::Postgres(o.clone())),
            OutputSpec::Parquet(o) => Some(Store::Parquet { dir: o.dir.clone() }),
            OutputSpec::Throttled(inner, _) => Store::of(inner),
            _ => None,
        }
    }

    /// The kind, as the API shows it.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Sqlite { .. } => "sqlite",
            Store::Postgres(_) => "postgres",
            Store::Parquet { .. } => "parquet",
        }
    }

    /// The rows `query` asks for, as JSON objects with the output's
    /// columns (datetimes as RFC 3339 UTC, as the outputs write them).
    pub async fn query(
        &self,
        query: &RowQuery,
        schema: &Schema,
    ) -> Result<Vec<Map<String, Value>>, String> {
        let rows = match self {
            Store::Sqlite { path, table } => {
                let sql = Sql::build(Dialect::Sqlite, &quote(table), query, schema);
                let path = path.clone();
                let schema = schema.clone();
                blocking(move || sqlite_rows(&path, &sql, &schema)).await?
            }
            Store::Postgres(output) => {
                let sql = Sql::build(Dialect::Postgres, &output.table.quoted(), query, schema);
                let output = output.clone();
                blocking(move || {
                    let wrapped = format!("SELECT row_to_json(r)::text FROM ({}) AS r", sql.text);
                    crate::postgres::query_text(&output, &wrapped, &sql.params)?
                        .iter()
                        .map(|t| serde_json::from_str(t).map_err(|e| e.to_string()))
                        .collect()
                })
                .await?
            }
            Store::Parquet { dir } => parquet_rows(dir, query, schema).await?,
        };
        Ok(rows.into_iter().map(|r| normalize(r, schema)).collect())
    }
}

/// Runs blocking work (a database client) off the server's threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("the query stopped: {e}"))?
}

/// A query's text and its parameters (`?1`/`$1`... in order).
#[derive(Debug, Clone)]
struct Sql {
    text: String,
    params: Vec<String>,
}

impl Sql {
    fn build(dialect: Dialect, table: &str, query: &RowQuery, schema: &Schema) -> Sql {
        let mut sql = Sql {
            text: String::new(),
            params: Vec::new(),
        };
        let columns: Vec<String> = schema.fields().iter().map(|f| quote(f.name())).collect();
        let columns = columns.join(", ");
        let mut conditions = Vec::new();
        if let Some(time) = &query.time_column {
            let time = quote(time);
            if let Some(from) = query.from {
                let bound = sql.time(dialect, from);
                conditions.push(format!("{time} >= {bound}"));
            }
            if let Some(to) = query.to {
                let bound = sql.time(dialect, to);
                conditions.push(format!("{time} < {bound}"));
            }
        }
        for (column, value) in &query.filters {
            let value = sql.text_value(dialect, value);
            let column = match dialect {
                Dialect::Sqlite => format!("CAST({} AS TEXT)", quote(column)),
                Dialect::Postgres => format!("{}::text", quote(column)),
                Dialect::DataFusion => format!("CAST({} AS VARCHAR)", quote(column)),
            };
            conditions.push(format!("{column} = {value}"));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        // Rows in the order of the time column, else as written where the
        // engine knows that order.
        let order = match (&query.time_column, dialect) {
            (Some(t), _) => Some(quote(t)),
            (None, Dialect::Sqlite) => Some("rowid".to_string()),
            (None, _) => None,
        };
        let direction = if query.newest_first || query.latest_by.is_some() {
            "DESC"
        } else {
            "ASC"
        };
        let order_by = order
            .as_ref()
            .map(|o| format!(" ORDER BY {o} {direction}"))
            .unwrap_or_default();
        let from = match &query.latest_by {
            None => format!("{table}{filter}"),
            Some(key) => format!(
                "(SELECT {columns}, ROW_NUMBER() OVER (PARTITION BY {}{order_by}) AS iotql_rank FROM {table}{filter}) AS latest WHERE iotql_rank = 1",
                quote(key)
            ),
        };
        let order_by = match (&query.latest_by, &query.time_column) {
            // rowid is not a column of the subquery.
            (Some(_), None) => String::new(),
            _ => order_by,
        };
        sql.text = format!(
            "SELECT {columns} FROM {from}{order_by} LIMIT {}",
            query.limit
        );
        sql
    }

    /// A time bound, as the engine compares it with the column.
    fn time(&mut self, dialect: Dialect, micros: i64) -> String {
        let text = self.text_value(dialect, &iso(micros));
        match dialect {
            // Datetimes are RFC 3339 text in the table, all in one format.
            Dialect::Sqlite => text,
            Dialect::Postgres => format!("({text})::timestamptz"),
            Dialect::DataFusion => format!("CAST({text} AS TIMESTAMP)"),
        }
    }

    /// A text value: a parameter, or a quoted literal for DataFusion.
    fn text_value(&mut self, dialect: Dialect, value: &str) -> String {
        match dialect {
            Dialect::DataFusion => format!("'{}'", value.replace('\'', "''")),
            Dialect::Sqlite | Dialect::Postgres => {
                self.params.push(value.to_string());
                let n = self.params.len();
                if dialect == Dialect::Sqlite {
                    format!("?{n}")
                } else {
                    format!("${n}::text")
                }
            }
        }
    }
}

fn sqlite_rows(
    path: &std::path::Path,
    sql: &Sql,
    schema: &Schema,
) -> Result<Vec<Map<String, Value>>, String> {
    use rusqlite::types::ValueRef;
    let db = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
    // The job writes meanwhile: wait for its transaction rather than fail.
    db.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let mut stmt = match db.prepare(&sql.text) {
        Ok(s) => s,
        // The job has not created its table yet: no rows.
        Err(e) if e.to_string().contains("no such table") => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(&sql.params))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        let mut values = Map::new();
        for (i, name) in names.iter().enumerate() {
            let value = match row.get_ref(i).map_err(|e| e.to_string())? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(n) => Value::from(n),
                ValueRef::Real(x) => Value::from(x),
                ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::String(b.iter().map(|x| format!("{x:02x}")).collect()),
            };
            values.insert(name.clone(), value);
        }
        out.push(values);
    }
    Ok(out)
}

async fn parquet_rows(
    dir: &std::path::Path,
    query: &RowQuery,
    schema: &Schema,
) -> Result<Vec<Map<String, Value>>, String> {
    use datafusion::prelude::{ParquetReadOptions, SessionContext};
    if !has_parquet_files(dir) {
        return Ok(Vec::new());
    }
    let ctx = SessionContext::new();
    let path = format!("{}/", dir.display());
    ctx.register_parquet("output", &path, ParquetReadOptions::default())
        .await
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let sql = Sql::build(Dialect::DataFusion, "output", query, schema);
    let batches = ctx
        .sql(&sql.text)
        .await
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for batch in &batches {
        rows.extend(super::tail::json_objects(batch)?);
    }
    Ok(rows)
}

/// Whether `dir` (or a partition folder in it) holds a completed file.
fn has_parquet_files(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let path = e.path();
            path.is_dir() && has_parquet_files(&path)
                || path.extension().is_some_and(|x| x == "parquet")
        })
}

/// Datetimes as the outputs write them (a PostgreSQL `timestamptz` comes
/// back as `2026-11-24T10:00:00+00:00`), booleans as booleans (SQLite
/// keeps 0 and 1).
fn normalize(mut row: Map<String, Value>, schema: &Schema) -> Map<String, Value> {
    for field in schema.fields() {
        let Some(value) = row.get_mut(field.name()) else {
            continue;
        };
        match (field.data_type(), &*value) {
            (DataType::Timestamp(..), Value::String(s)) => {
                if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
                    *value = Value::String(iso(t.timestamp_micros()));
                }
            }
            (DataType::Boolean, Value::Number(n)) => {
                *value = Value::Bool(n.as_i64() != Some(0));
            }
            _ => {}
        }
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use iotql_engine::arrow::datatypes::{Field, TimeUnit};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("device_id", DataType::Utf8, true),
            Field::new(
                "window_end",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ])
    }

    fn query(pairs: &[(&str, &str)], newest_first: bool) -> RowQuery {
        RowQuery::parse(&super::super::query::params(pairs), &schema(), newest_first).unwrap()
    }

    #[test]
    fn one_query_in_each_engines_words_with_values_as_parameters() {
        let q = query(
            &[
                ("from", "2026-11-24T10:00:00Z"),
                ("device_id", "d'1"),
                ("limit", "7"),
            ],
            false,
        );
        let s = Sql::build(Dialect::Sqlite, "\"t\"", &q, &schema());
        assert_eq!(
            s.text,
            "SELECT \"device_id\", \"window_end\" FROM \"t\" WHERE \"window_end\" >= ?1 AND CAST(\"device_id\" AS TEXT) = ?2 ORDER BY \"window_end\" ASC LIMIT 7"
        );
        assert_eq!(s.params, ["2026-11-24T10:00:00.000Z", "d'1"]);
        let p = Sql::build(Dialect::Postgres, "\"t\"", &q, &schema());
        assert!(
            p.text.contains(
                "\"window_end\" >= ($1::text)::timestamptz AND \"device_id\"::text = $2::text"
            ),
            "{}",
            p.text
        );
        let d = Sql::build(Dialect::DataFusion, "output", &q, &schema());
        assert!(d.params.is_empty());
        assert!(
            d.text.contains("CAST(\"device_id\" AS VARCHAR) = 'd''1'"),
            "{}",
            d.text
        );
        let latest = Sql::build(
            Dialect::Sqlite,
            "\"t\"",
            &query(&[("by", "device_id")], true),
            &schema(),
        );
        assert_eq!(
            latest.text,
            "SELECT \"device_id\", \"window_end\" FROM (SELECT \"device_id\", \"window_end\", ROW_NUMBER() OVER (PARTITION BY \"device_id\" ORDER BY \"window_end\" DESC) AS iotql_rank FROM \"t\") AS latest WHERE iotql_rank = 1 ORDER BY \"window_end\" DESC LIMIT 100"
        );
    }
}
