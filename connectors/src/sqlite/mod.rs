//! SQLite, the edge database: a table (or query) as a bounded source of
//! reference data (per-device thresholds, a device registry), and a table as
//! an output ([`sink`]).
//!
//! Reading, column types come from the table's declared types (SQLite affinity
//! rules: INT -> bigint, REAL/FLOA/DOUB -> float, BOOL -> bit, anything else
//! text); a column without a declared type (an expression in a query) takes
//! the type of its values (all integers: bigint; numbers: float; else text).
//! A value that does not fit its column's type (SQLite does not enforce
//! types) sends its row to the dead letters, with the row number.

mod sink;

pub use sink::{SqliteOutput, SqliteSink};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use iotql_engine::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, UInt64Array,
};
use iotql_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::error::EngineError;
use iotql_engine::io::{Source, SourceBatch};
use iotql_engine::operator::DeadLetter;
use iotql_engine::time::POSITION;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};

/// What to read from the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteInput {
    pub path: PathBuf,
    /// A table name, or a whole `SELECT`.
    pub read: SqliteRead,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqliteRead {
    Table(String),
    Query(String),
}

impl SqliteRead {
    fn sql(&self) -> String {
        match self {
            SqliteRead::Table(t) => format!("SELECT * FROM \"{}\"", t.replace('"', "\"\"")),
            SqliteRead::Query(q) => q.clone(),
        }
    }
}

/// The Arrow type of a declared SQLite column type, by SQLite's affinity rules.
fn declared_type(decl: &str) -> DataType {
    let d = decl.to_ascii_uppercase();
    if d.contains("INT") {
        DataType::Int64
    } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
        DataType::Float64
    } else if d.contains("BOOL") || d == "BIT" {
        DataType::Boolean
    } else {
        DataType::Utf8
    }
}

/// The type that holds every value of an undeclared column.
fn inferred_type(values: &[Value]) -> DataType {
    let mut t = None;
    for v in values {
        t = match (t, v) {
            (t, Value::Null) => t,
            (None | Some(DataType::Int64), Value::Integer(_)) => Some(DataType::Int64),
            (None | Some(DataType::Int64) | Some(DataType::Float64), Value::Real(_))
            | (Some(DataType::Float64), Value::Integer(_)) => Some(DataType::Float64),
            _ => Some(DataType::Utf8),
        };
    }
    t.unwrap_or(DataType::Utf8)
}

/// `v` as a value of type `t`, or why not.
fn fits(v: &Value, t: &DataType) -> Result<(), String> {
    match (v, t) {
        (Value::Null, _)
        | (Value::Integer(_), DataType::Int64 | DataType::Float64 | DataType::Utf8)
        | (Value::Real(_), DataType::Float64 | DataType::Utf8)
        | (Value::Text(_), DataType::Utf8) => Ok(()),
        (Value::Integer(0 | 1), DataType::Boolean) => Ok(()),
        (Value::Text(s), DataType::Int64) if s.trim().parse::<i64>().is_ok() => Ok(()),
        (Value::Text(s), DataType::Float64) if s.trim().parse::<f64>().is_ok() => Ok(()),
        (Value::Real(r), DataType::Int64) if r.fract() == 0.0 => Ok(()),
        (Value::Blob(_), _) => Err("a BLOB cannot be read".into()),
        (v, t) => {
            let shown = match v {
                Value::Integer(i) => i.to_string(),
                Value::Real(x) => x.to_string(),
                Value::Text(s) => format!("'{s}'"),
                _ => "the value".to_string(),
            };
            let asa = match t {
                DataType::Int64 => "bigint",
                DataType::Float64 => "float",
                DataType::Boolean => "bit",
                _ => "nvarchar(max)",
            };
            Err(format!("{shown} is not a {asa}"))
        }
    }
}

fn column(values: &[Value], rows: &[usize], t: &DataType) -> ArrayRef {
    match t {
        DataType::Int64 => {
            let mut b = Int64Builder::new();
            for &r in rows {
                b.append_option(match &values[r] {
                    Value::Integer(i) => Some(*i),
                    Value::Real(x) => Some(*x as i64),
                    Value::Text(s) => s.trim().parse().ok(),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        DataType::Float64 => {
            let mut b = Float64Builder::new();
            for &r in rows {
                b.append_option(match &values[r] {
                    Value::Integer(i) => Some(*i as f64),
                    Value::Real(x) => Some(*x),
                    Value::Text(s) => s.trim().parse().ok(),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        DataType::Boolean => {
            let mut b = BooleanBuilder::new();
            for &r in rows {
                b.append_option(match &values[r] {
                    Value::Integer(i) => Some(*i != 0),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        _ => {
            let mut b = StringBuilder::new();
            for &r in rows {
                match &values[r] {
                    Value::Integer(i) => b.append_value(i.to_string()),
                    Value::Real(x) => b.append_value(x.to_string()),
                    Value::Text(s) => b.append_value(s),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
    }
}

/// A table read whole when opened, handed out in batches.
#[derive(Debug)]
pub struct SqliteSource {
    schema: SchemaRef,
    batch: Option<RecordBatch>,
    dead_letters: Vec<DeadLetter>,
    at: usize,
    batch_size: usize,
}

fn open(path: &Path) -> Result<Connection, rusqlite::Error> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

impl SqliteSource {
    pub fn open(name: &str, input: &SqliteInput, batch_size: usize) -> Result<Self, EngineError> {
        let conn = open(&input.path).map_err(|e| EngineError::Source {
            input: name.to_string(),
            message: format!("{}: {e}", input.path.display()),
        })?;
        Self::read(
            name,
            &conn,
            &input.read,
            &input.path.display().to_string(),
            batch_size,
        )
    }

    /// Reads `read` (a table or query) of an open database, named `shown`
    /// in messages: a job test's `sql` script runs in an in-memory one.
    pub fn read(
        name: &str,
        conn: &Connection,
        read: &SqliteRead,
        shown: &str,
        batch_size: usize,
    ) -> Result<Self, EngineError> {
        let failed = |e: rusqlite::Error| EngineError::Source {
            input: name.to_string(),
            message: format!("{shown}: {e}"),
        };
        let mut stmt = conn.prepare(&read.sql()).map_err(failed)?;
        let declared: Vec<(String, Option<DataType>)> = stmt
            .columns()
            .iter()
            .map(|c| (c.name().to_string(), c.decl_type().map(declared_type)))
            .collect();
        let width = declared.len();
        let mut columns: Vec<Vec<Value>> = vec![Vec::new(); width];
        let mut rows = stmt.query([]).map_err(failed)?;
        while let Some(row) = rows.next().map_err(failed)? {
            for (i, column) in columns.iter_mut().enumerate() {
                column.push(row.get::<_, Value>(i).map_err(failed)?);
            }
        }
        let n = columns.first().map_or(0, Vec::len);
        let types: Vec<DataType> = declared
            .iter()
            .zip(&columns)
            .map(|((_, t), values)| t.clone().unwrap_or_else(|| inferred_type(values)))
            .collect();
        // Rows with a value that does not fit its column are refused.
        let mut good = Vec::with_capacity(n);
        let mut dead_letters = Vec::new();
        for r in 0..n {
            let misfit =
                columns
                    .iter()
                    .zip(&types)
                    .zip(&declared)
                    .find_map(|((values, t), (column, _))| {
                        fits(&values[r], t)
                            .err()
                            .map(|why| format!("column `{column}`: {why}"))
                    });
            match misfit {
                None => good.push(r),
                Some(reason) => dead_letters.push(DeadLetter {
                    input: name.to_string(),
                    position: format!("row {}", r + 1),
                    reason,
                    raw: format!(
                        "{:?}",
                        columns.iter().map(|values| &values[r]).collect::<Vec<_>>()
                    ),
                }),
            }
        }
        let schema: SchemaRef = Arc::new(Schema::new(
            declared
                .iter()
                .zip(&types)
                .map(|((name, _), t)| Field::new(name, t.clone(), true))
                .collect::<Vec<_>>(),
        ));
        let mut arrays: Vec<ArrayRef> = columns
            .iter()
            .zip(&types)
            .map(|(values, t)| column(values, &good, t))
            .collect();
        arrays.push(Arc::new(UInt64Array::from_iter_values(
            good.iter().map(|&r| r as u64 + 1),
        )));
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(POSITION, DataType::UInt64, false));
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
        Ok(SqliteSource {
            schema,
            batch: Some(batch),
            dead_letters,
            at: 0,
            batch_size: batch_size.max(1),
        })
    }
}

impl Source for SqliteSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<SourceBatch>, EngineError> {
        let Some(all) = &self.batch else {
            return Ok(None);
        };
        let dead_letters = std::mem::take(&mut self.dead_letters);
        if self.at >= all.num_rows() {
            self.batch = None;
            return Ok((!dead_letters.is_empty()).then_some(SourceBatch {
                batch: None,
                dead_letters,
                ..Default::default()
            }));
        }
        let n = self.batch_size.min(all.num_rows() - self.at);
        let slice = all.slice(self.at, n);
        self.at += n;
        Ok(Some(SourceBatch {
            batch: Some(slice),
            dead_letters,
            ..Default::default()
        }))
    }

    fn progress(&self) -> (u64, Option<u64>) {
        let total = self.batch.as_ref().map_or(0, |b| b.num_rows()) as u64;
        (self.at as u64, Some(total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iotql_engine::arrow::array::AsArray;

    #[test]
    fn a_table_is_read_with_its_declared_types_and_misfits_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ref.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE thresholds (device_id TEXT, max_temp REAL, alarms INTEGER, active BOOLEAN);
             INSERT INTO thresholds VALUES ('a', 30, 2, 1), ('b', 20.5, 0, 0), ('c', 'hot', 1, 1), ('d', NULL, '7', 1);",
        )
        .unwrap();
        drop(conn);
        let input = SqliteInput {
            path,
            read: SqliteRead::Table("thresholds".into()),
        };
        let mut source = SqliteSource::open("thresholds", &input, 2).unwrap();
        let schema = source.schema();
        let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
        assert_eq!(
            types,
            vec![
                &DataType::Utf8,
                &DataType::Float64,
                &DataType::Int64,
                &DataType::Boolean
            ]
        );
        let mut rows = 0;
        let mut refused = Vec::new();
        while let Some(b) = source.next_batch().unwrap() {
            refused.extend(b.dead_letters);
            if let Some(batch) = b.batch {
                rows += batch.num_rows();
                let alarms = batch
                    .column(2)
                    .as_primitive::<iotql_engine::arrow::datatypes::Int64Type>();
                assert!(alarms.iter().all(|a| a.is_some()));
            }
        }
        assert_eq!(rows, 3);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].position, "row 3");
        assert!(
            refused[0].reason.contains("max_temp"),
            "{}",
            refused[0].reason
        );
    }

    #[test]
    fn a_query_infers_the_types_of_its_expressions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1), (2);")
            .unwrap();
        drop(conn);
        let input = SqliteInput {
            path,
            read: SqliteRead::Query(
                "SELECT a * 2 AS double_a, a / 2.0 AS half, 'x' || a AS tag FROM t".into(),
            ),
        };
        let source = SqliteSource::open("q", &input, 100).unwrap();
        let schema = source.schema();
        let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
        assert_eq!(
            types,
            vec![&DataType::Int64, &DataType::Float64, &DataType::Utf8]
        );
    }

    #[test]
    fn a_missing_database_is_a_clear_error() {
        let input = SqliteInput {
            path: PathBuf::from("/no/such/dir/x.db"),
            read: SqliteRead::Table("t".into()),
        };
        let e = SqliteSource::open("devices", &input, 10).unwrap_err();
        assert!(e.to_string().contains("/no/such/dir/x.db"), "{e}");
    }
}
