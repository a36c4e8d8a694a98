//! Batch look-ups over results already written: plain SQL run by
//! DataFusion over the outputs (and file inputs) of a session, registered by
//! name — Parquet folders as listing tables with their Hive partition
//! columns, CSV and JSON-lines files, SQLite tables read whole through the
//! SQLite source into a memory table — and any file named by its path
//! (`SELECT * FROM 'out/hourly.parquet'`). The REPL's `.sql` command.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::datasource::MemTable;
use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionContext};
use iotql_engine::arrow::record_batch::RecordBatch;

use crate::endpoint::{InputSpec, OutputSpec};
use crate::file::{Input, OutputTarget};
use crate::sqlite::{SqliteInput, SqliteRead};

/// Why a look-up failed.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The SQL is wrong or names a table that is not there (the user must act).
    #[error("{0}")]
    Query(String),
    /// A table could not be read (its file or database).
    #[error("table `{name}`: {message}")]
    Table { name: String, message: String },
    #[error("cannot start the SQL runtime: {0}")]
    Runtime(String),
}

/// A table that `.sql` can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableSource {
    /// A folder of Parquet files, partition folders (`key=value`) included.
    Parquet(PathBuf),
    Csv(PathBuf),
    JsonLines(PathBuf),
    /// A table (or query) of a SQLite database.
    Sqlite(SqliteInput),
}

impl TableSource {
    /// The table an output writes, if it writes one that can be read back.
    pub fn of_output(spec: &OutputSpec) -> Option<TableSource> {
        match spec {
            OutputSpec::Csv(OutputTarget::Path(p)) => Some(TableSource::Csv(p.clone())),
            OutputSpec::JsonLines(OutputTarget::Path(p)) => Some(TableSource::JsonLines(p.clone())),
            OutputSpec::Parquet(o) => Some(TableSource::Parquet(o.dir.clone())),
            OutputSpec::Sqlite(o) => Some(TableSource::Sqlite(SqliteInput {
                path: o.path.clone(),
                read: SqliteRead::Table(o.table.clone()),
            })),
            OutputSpec::Throttled(inner, _) => TableSource::of_output(inner),
            _ => None,
        }
    }

    /// The table an input reads, if it is a file or a database.
    pub fn of_input(spec: &InputSpec) -> Option<TableSource> {
        match spec {
            InputSpec::Csv(Input::Path(p)) => Some(TableSource::Csv(p.clone())),
            InputSpec::JsonLines(Input::Path(p)) => Some(TableSource::JsonLines(p.clone())),
            InputSpec::Sqlite(s) => Some(TableSource::Sqlite(s.clone())),
            _ => None,
        }
    }

    /// Whether there is something to read yet (an output not written yet
    /// is left out rather than failing every look-up).
    fn exists(&self) -> bool {
        match self {
            TableSource::Parquet(p) | TableSource::Csv(p) | TableSource::JsonLines(p) => p.exists(),
            TableSource::Sqlite(s) => s.path.exists(),
        }
    }
}

/// The partition columns of a Parquet folder: the `key=` folder names on
/// the way to its first data file (hidden in-progress files are skipped).
fn partition_columns(dir: &Path) -> Vec<String> {
    let mut columns = Vec::new();
    let mut at = dir.to_path_buf();
    loop {
        let Ok(entries) = std::fs::read_dir(&at) else {
            return columns;
        };
        let mut names: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.') && !n.starts_with('_'))
            })
            .collect();
        names.sort();
        let next = names.into_iter().find(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.contains('='))
        });
        match next {
            Some(p) => {
                if let Some((key, _)) = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.split_once('='))
                {
                    columns.push(key.to_string());
                }
                at = p;
            }
            None => return columns,
        }
    }
}

fn text(path: &Path) -> String {
    path.display().to_string()
}

/// Runs `sql` over `tables` (name, where); the result's batches.
pub fn run_sql(
    tables: &[(String, TableSource)],
    sql: &str,
) -> Result<Vec<RecordBatch>, LookupError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| LookupError::Runtime(e.to_string()))?;
    runtime.block_on(async {
        let ctx = SessionContext::new().enable_url_table();
        for (name, source) in tables {
            if !source.exists() {
                continue;
            }
            let failed = |e: datafusion::error::DataFusionError| LookupError::Table {
                name: name.clone(),
                message: e.to_string(),
            };
            match source {
                TableSource::Parquet(dir) => {
                    let columns = partition_columns(dir)
                        .into_iter()
                        .map(|c| (c, DataType::Utf8))
                        .collect();
                    let options = ParquetReadOptions::default().table_partition_cols(columns);
                    ctx.register_parquet(name, &text(dir), options)
                        .await
                        .map_err(failed)?;
                }
                TableSource::Csv(path) => {
                    ctx.register_csv(name, &text(path), CsvReadOptions::new())
                        .await
                        .map_err(failed)?;
                }
                TableSource::JsonLines(path) => {
                    // DataFusion keeps to its own extension unless told.
                    let extension = path
                        .extension()
                        .and_then(|e| e.to_str())
                        .map_or(String::new(), |e| format!(".{e}"));
                    let options = JsonReadOptions::default().file_extension(&extension);
                    ctx.register_json(name, &text(path), options)
                        .await
                        .map_err(failed)?;
                }
                TableSource::Sqlite(input) => {
                    let table = sqlite_table(name, input)?;
                    let memory =
                        MemTable::try_new(table.schema(), vec![vec![table]]).map_err(failed)?;
                    ctx.register_table(name.as_str(), Arc::new(memory))
                        .map_err(failed)?;
                }
            }
        }
        let frame = ctx
            .sql(sql)
            .await
            .map_err(|e| LookupError::Query(e.to_string()))?;
        frame
            .collect()
            .await
            .map_err(|e| LookupError::Query(e.to_string()))
    })
}

/// A SQLite table read whole through the SQLite source.
fn sqlite_table(name: &str, input: &SqliteInput) -> Result<RecordBatch, LookupError> {
    let failed = |message: String| LookupError::Table {
        name: name.to_string(),
        message,
    };
    let mut source =
        crate::sqlite::SqliteSource::open(name, input, 8192).map_err(|e| failed(e.to_string()))?;
    let (table, refused) =
        crate::endpoint::read_all(&mut source).map_err(|e| failed(e.to_string()))?;
    if let Some(first) = refused.first() {
        return Err(failed(format!(
            "{} rows could not be read ({}: {})",
            refused.len(),
            first.position,
            first.reason
        )));
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use iotql_engine::arrow::util::display::{ArrayFormatter, FormatOptions};

    use super::*;

    /// Every row as `a|b|c`.
    fn rows(batches: &[RecordBatch]) -> Vec<String> {
        let mut out = Vec::new();
        for b in batches {
            let options = FormatOptions::default();
            let formatters: Vec<ArrayFormatter> = b
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
                .collect();
            for r in 0..b.num_rows() {
                let cells: Vec<String> =
                    formatters.iter().map(|f| f.value(r).to_string()).collect();
                out.push(cells.join("|"));
            }
        }
        out
    }

    #[test]
    fn csv_json_and_sqlite_tables_are_looked_up_by_name_and_files_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("hourly.csv");
        std::fs::write(&csv, "device,avg_temp\na,20.5\nb,31\n").unwrap();
        let jsonl = dir.path().join("alerts.jsonl");
        std::fs::write(&jsonl, "{\"device\":\"b\",\"level\":2}\n").unwrap();
        let db = dir.path().join("fleet.db");
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE devices (device TEXT, site TEXT); INSERT INTO devices VALUES ('a', 'north'), ('b', 'south');",
        )
        .unwrap();
        drop(conn);
        let tables = vec![
            ("hourly".to_string(), TableSource::Csv(csv.clone())),
            ("alerts".to_string(), TableSource::JsonLines(jsonl)),
            (
                "devices".to_string(),
                TableSource::Sqlite(SqliteInput {
                    path: db,
                    read: SqliteRead::Table("devices".into()),
                }),
            ),
            // Not written yet: left out, not an error.
            (
                "later".to_string(),
                TableSource::Csv(dir.path().join("missing.csv")),
            ),
        ];
        let got = run_sql(
            &tables,
            "SELECT h.device, d.site, a.level FROM hourly h JOIN devices d ON h.device = d.device \
             LEFT JOIN alerts a ON a.device = h.device ORDER BY h.device",
        )
        .unwrap();
        assert_eq!(rows(&got), ["a|north|", "b|south|2"]);

        let by_path = run_sql(&[], &format!("SELECT COUNT(*) FROM '{}'", csv.display())).unwrap();
        assert_eq!(rows(&by_path), ["2"]);

        let e = run_sql(&tables, "SELECT * FROM nowhere").unwrap_err();
        assert!(matches!(e, LookupError::Query(_)), "{e}");
    }

    #[test]
    fn partition_folders_name_their_columns() {
        let dir = tempfile::tempdir().unwrap();
        let leaf = dir.path().join("deviceId=a").join("date=2026-01-01");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::create_dir_all(dir.path().join(".tmp")).unwrap();
        std::fs::write(leaf.join("part-0.parquet"), b"").unwrap();
        assert_eq!(partition_columns(dir.path()), ["deviceId", "date"]);
        assert!(partition_columns(&leaf).is_empty());
    }
}
