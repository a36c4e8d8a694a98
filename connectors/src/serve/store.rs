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
                let (path, table) = (path.clone(), table.clone());
                let (query, schema) = (query.clone(), schema.clone());
                blocking(move || sqlite_rows(&path, &table, &query, &schema)).await?
            }
            Store::Postgres(output) => {
                let output = output.clone();
                let (query, schema) = (query.clone(), schema.clone());
                blocking(move || {
                    let table = output.table.quoted();
                    let sql = match (&query.latest_by, &query.time_column) {
                        (Some(key), Some(_)) if postgres_key_leads_an_index(&output, key) => {
                            Sql::latest_by_skip_scan(
                                Dialect::Postgres,
                                &table,
                                key,
                                &query,
                                &schema,
                            )
                        }
                        _ => Sql::build(Dialect::Postgres, &table, &query, &schema),
                    };
                    let wrapped = format!("SELECT row_to_json(r)::text FROM ({}) AS r", sql.text);
                    crate::postgres::query_text(&output, &wrapped, &sql.params)?
                        .iter()
                        .map(|t| serde_json::from_str(t).map_err(|e| e.to_string()))
                        .collect()
                })
                .await?
            }
            Store::Parquet { dir } => {
                let _turn = read_turn().await?;
                parquet_rows(dir, query, schema).await?
            }
        };
        Ok(rows.into_iter().map(|r| normalize(r, schema)).collect())
    }
}

/// Runs blocking work (a database client) off the server's threads, in
/// its turn.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let turn = read_turn().await?;
    tokio::task::spawn_blocking(move || {
        // Held until the work is done, even if the request went away.
        let _turn = turn;
        work()
    })
    .await
    .map_err(|e| format!("the query stopped: {e}"))?
}

/// A turn to read a store. At most half the machine's cores (at least
/// one) read stores at once, so that clients asking without pause cannot
/// take the cores the job runs on; more requests wait for a turn
/// (docs/http.md, docs/performance.md "HTTP API").
async fn read_turn() -> Result<tokio::sync::SemaphorePermit<'static>, String> {
    static TURNS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    TURNS
        .get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            tokio::sync::Semaphore::new((cores / 2).max(1))
        })
        .acquire()
        .await
        .map_err(|e| format!("no turn to read: {e}"))
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
        let columns = column_list(schema);
        let conditions = sql.conditions(dialect, query, schema);
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

    /// The newest row per `key` of a SQLite or PostgreSQL table with an
    /// index that starts with `key`, without reading the whole table (which
    /// ROW_NUMBER must, and PostgreSQL's DISTINCT ON too): the distinct keys
    /// one index seek each (a recursive skip scan), then each key's newest
    /// row one index seek each (by rowid on SQLite, through LATERAL on
    /// PostgreSQL), and the rows of a NULL key the same way. A thousand
    /// devices over 360,000 windows take milliseconds instead of half a
    /// second (docs/performance.md, "HTTP API"). Without a time column the
    /// newest row is the last written, which only SQLite knows (rowid): the
    /// PostgreSQL caller asks only with one.
    fn latest_by_skip_scan(
        dialect: Dialect,
        table: &str,
        key: &str,
        query: &RowQuery,
        schema: &Schema,
    ) -> Sql {
        let mut sql = Sql {
            text: String::new(),
            params: Vec::new(),
        };
        let columns = column_list(schema);
        let and: String = sql
            .conditions(dialect, query, schema)
            .iter()
            .map(|c| format!(" AND {c}"))
            .collect();
        let key = quote(key);
        let order = query.time_column.as_deref().map_or("rowid".into(), quote);
        let newest = |what: &str, which: &str| {
            format!(
                "SELECT {what} FROM {table} WHERE {key} {which}{and} ORDER BY {order} DESC LIMIT 1"
            )
        };
        let (each, null) = ("= iotql_keys.k", "IS NULL");
        let rows = match dialect {
            Dialect::Sqlite => format!(
                "SELECT {columns} FROM {table} WHERE rowid IN (SELECT ({}) FROM iotql_keys WHERE k IS NOT NULL UNION ALL SELECT ({}))",
                newest("rowid", each),
                newest("rowid", null)
            ),
            Dialect::Postgres | Dialect::DataFusion => format!(
                "SELECT {columns} FROM (SELECT newest.* FROM iotql_keys, LATERAL ({}) AS newest WHERE iotql_keys.k IS NOT NULL UNION ALL ({})) AS latest",
                newest(&columns, each),
                newest(&columns, null)
            ),
        };
        sql.text = format!(
            "WITH RECURSIVE iotql_keys(k) AS (SELECT MIN({key}) FROM {table} UNION ALL SELECT (SELECT MIN({key}) FROM {table} WHERE {key} > iotql_keys.k) FROM iotql_keys WHERE iotql_keys.k IS NOT NULL) \
             {rows} ORDER BY {order} DESC LIMIT {}",
            query.limit
        );
        sql
    }

    /// The WHERE conditions of `query`: its time range and its filters.
    fn conditions(&mut self, dialect: Dialect, query: &RowQuery, schema: &Schema) -> Vec<String> {
        let mut conditions = Vec::new();
        if let Some(time) = &query.time_column {
            let time = quote(time);
            if let Some(from) = query.from {
                let bound = self.time(dialect, from);
                conditions.push(format!("{time} >= {bound}"));
            }
            if let Some(to) = query.to {
                let bound = self.time(dialect, to);
                conditions.push(format!("{time} < {bound}"));
            }
        }
        for (column, value) in &query.filters {
            let value = self.text_value(dialect, value);
            let is_text = schema
                .field_with_name(column)
                .is_ok_and(|f| matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8));
            // A text column is compared as it is, so that an index on it
            // serves the filter; others as text, as the request gives them.
            let column = match dialect {
                Dialect::Sqlite | Dialect::Postgres if is_text => quote(column),
                Dialect::Sqlite => format!("CAST({} AS TEXT)", quote(column)),
                Dialect::Postgres => format!("{}::text", quote(column)),
                Dialect::DataFusion => format!("CAST({} AS VARCHAR)", quote(column)),
            };
            conditions.push(format!("{column} = {value}"));
        }
        conditions
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

/// The columns of `schema`, quoted, for a SELECT.
fn column_list(schema: &Schema) -> String {
    let columns: Vec<String> = schema.fields().iter().map(|f| quote(f.name())).collect();
    columns.join(", ")
}

/// Whether the newest rows per `key` can be read by a skip scan
/// ([`Sql::latest_by_skip_scan`]): an index of the table starts with
/// `key`, and `rowid` is the row's id (the table has one, and no column
/// of that name).
fn sqlite_skip_scan_fits(
    db: &rusqlite::Connection,
    table: &str,
    key: &str,
    schema: &Schema,
) -> bool {
    let leads_an_index = db
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_index_list(?1) AS l, pragma_index_info(l.name) AS i WHERE i.seqno = 0 AND i.name = ?2 COLLATE NOCASE)",
            [table, key],
            |r| r.get::<_, bool>(0),
        )
        .unwrap_or(false);
    let rowid_is_the_id = !schema
        .fields()
        .iter()
        .any(|f| ["rowid", "_rowid_", "oid"].contains(&f.name().to_ascii_lowercase().as_str()))
        && db
            .prepare(&format!("SELECT rowid FROM {} LIMIT 0", quote(table)))
            .is_ok();
    leads_an_index && rowid_is_the_id
}

/// Whether an index of the output's PostgreSQL table starts with `key`
/// (so that [`Sql::latest_by_skip_scan`] seeks rather than scans).
fn postgres_key_leads_an_index(output: &crate::postgres::PostgresOutput, key: &str) -> bool {
    let check = "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] WHERE i.indrelid = to_regclass($1) AND a.attname = $2)::text";
    crate::postgres::query_text(output, check, &[output.table.quoted(), key.to_string()])
        .is_ok_and(|rows| rows.first().is_some_and(|r| r == "true"))
}

fn sqlite_rows(
    path: &std::path::Path,
    table: &str,
    query: &RowQuery,
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
    let sql = match &query.latest_by {
        Some(key) if sqlite_skip_scan_fits(&db, table, key, schema) => {
            Sql::latest_by_skip_scan(Dialect::Sqlite, &quote(table), key, query, schema)
        }
        _ => Sql::build(Dialect::Sqlite, &quote(table), query, schema),
    };
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
            "SELECT \"device_id\", \"window_end\" FROM \"t\" WHERE \"window_end\" >= ?1 AND \"device_id\" = ?2 ORDER BY \"window_end\" ASC LIMIT 7"
        );
        assert_eq!(s.params, ["2026-11-24T10:00:00.000Z", "d'1"]);
        let p = Sql::build(Dialect::Postgres, "\"t\"", &q, &schema());
        assert!(
            p.text
                .contains("\"window_end\" >= ($1::text)::timestamptz AND \"device_id\" = $2::text"),
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

    /// A table of `rows` windows of 13 devices, one a second in turn, every
    /// 11th with no device; each row's time is its own.
    fn windows_table(db: &rusqlite::Connection, name: &str, primary_key: &str, rows: usize) {
        db.execute_batch(&format!(
            "CREATE TABLE {name} (device_id TEXT, site TEXT, window_end DATETIME, v REAL{primary_key})"
        ))
        .unwrap();
        let mut insert = db
            .prepare(&format!("INSERT INTO {name} VALUES (?1, ?2, ?3, ?4)"))
            .unwrap();
        for i in 0..rows {
            let device = (i % 11 != 0).then(|| format!("d{}", (i * 7) % 13));
            let site = format!("s{}", i % 3);
            let t = iso(1_795_000_000_000_000 + i as i64 * 1_000_000);
            insert
                .execute(rusqlite::params![device, site, t, i as f64])
                .unwrap();
        }
    }

    fn windows_schema() -> Schema {
        Schema::new(vec![
            Field::new("device_id", DataType::Utf8, true),
            Field::new("site", DataType::Utf8, true),
            Field::new(
                "window_end",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("v", DataType::Float64, true),
        ])
    }

    fn run(db: &rusqlite::Connection, sql: &Sql) -> Vec<String> {
        let mut stmt = db.prepare(&sql.text).unwrap();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(&sql.params), |r| {
                Ok(format!(
                    "{:?} {:?} {:?}",
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, f64>(3)?
                ))
            })
            .unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn the_skip_scan_gives_the_newest_row_per_key_as_row_number_does() {
        let dir = tempfile::tempdir().unwrap();
        let db = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
        windows_table(&db, "keyed", ", PRIMARY KEY (device_id, window_end)", 500);
        windows_table(&db, "plain", "", 50);
        db.execute_batch("CREATE INDEX by_site ON plain (site)")
            .unwrap();
        let schema = windows_schema();
        let at = |s: i64| iso(1_795_000_000_000_000 + s * 1_000_000);
        let (from, to) = (at(100), at(300));
        let cases: Vec<Vec<(&str, &str)>> = vec![
            vec![("by", "device_id"), ("limit", "1000")],
            vec![("by", "device_id"), ("limit", "5")],
            vec![("by", "device_id"), ("site", "s1")],
            vec![("by", "device_id"), ("from", &from), ("to", &to)],
            vec![("by", "device_id"), ("device_id", "d3")],
            vec![("by", "device_id"), ("device_id", "nobody")],
        ];
        for pairs in &cases {
            let q = RowQuery::parse(&super::super::query::params(pairs), &schema, true).unwrap();
            assert!(sqlite_skip_scan_fits(&db, "keyed", "device_id", &schema));
            let skip =
                Sql::latest_by_skip_scan(Dialect::Sqlite, "\"keyed\"", "device_id", &q, &schema);
            let ranked = Sql::build(Dialect::Sqlite, "\"keyed\"", &q, &schema);
            let (skip_rows, ranked_rows) = (run(&db, &skip), run(&db, &ranked));
            assert_eq!(skip_rows, ranked_rows, "{pairs:?}");
            let expected = match pairs.get(1) {
                Some(("limit", "5")) => 5,
                Some(("device_id", "d3")) => 1,
                Some(("device_id", _)) => 0,
                // 13 devices and the rows of none.
                _ => 14,
            };
            assert_eq!(skip_rows.len(), expected, "{pairs:?}: {skip_rows:?}");
        }
        // Another key than the index's first column, or no index: ROW_NUMBER.
        assert!(!sqlite_skip_scan_fits(&db, "keyed", "site", &schema));
        assert!(!sqlite_skip_scan_fits(&db, "plain", "device_id", &schema));
        assert!(sqlite_skip_scan_fits(&db, "plain", "SITE", &schema));
        assert!(!sqlite_skip_scan_fits(&db, "missing", "site", &schema));
        // Without a time column, the newest is the last written.
        let untimed = Schema::new(vec![
            Field::new("device_id", DataType::Utf8, true),
            Field::new("site", DataType::Utf8, true),
            Field::new("window_end", DataType::Utf8, true),
            Field::new("v", DataType::Float64, true),
        ]);
        let q = RowQuery::parse(
            &super::super::query::params(&[("by", "site")]),
            &untimed,
            true,
        )
        .unwrap();
        let skip = Sql::latest_by_skip_scan(Dialect::Sqlite, "\"plain\"", "site", &q, &untimed);
        let mut rows = run(&db, &skip);
        rows.sort();
        let mut ranked = run(&db, &Sql::build(Dialect::Sqlite, "\"plain\"", &q, &untimed));
        ranked.sort();
        assert_eq!(rows, ranked);
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert!(rows.iter().any(|r| r.ends_with("49.0")), "{rows:?}");
    }
}
