//! A SQLite table as an output: the edge database that dashboards and
//! local tools read.
//!
//! The table is created from the output's schema when it does not exist
//! (INTEGER, REAL, BOOLEAN, TEXT; datetimes as ISO-8601 text in DATETIME
//! columns, records and arrays as JSON text). An existing table is reused
//! when every output column fits one of its columns; otherwise the job is
//! refused before it runs. With `key = 'col, col'` every write is an upsert
//! on those columns, so a window emitted again (a replay, a restart)
//! overwrites its row instead of adding a second one.
//!
//! A row the table refuses (a NULL in a NOT NULL column, a CHECK) goes to
//! the dead-letter output; the other rows go on.
//!
//! Rows go into one open transaction, committed when it holds `batch_size`
//! rows, when its first row is older than `max_latency`, and on flush (the
//! runner flushes before committing a broker's offsets): a committed row is
//! durable (WAL, `synchronous = FULL`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use iotql_engine::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, StringArray,
};
use iotql_engine::arrow::compute::cast;
use iotql_engine::arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef, TimeUnit};
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::error::EngineError;
use iotql_engine::io::{Sink, SinkMetrics};
use iotql_engine::operator::DeadLetter;
use rusqlite::Connection;

use crate::file::{TIMESTAMP_FORMAT, nested_as_json};
use crate::sql::{create_time_index, indexed_time_column, quote};

/// Rows per transaction unless `batch_size` says otherwise.
const DEFAULT_BATCH_SIZE: usize = 10_000;
/// How long a row may wait in an open transaction unless `max_latency`
/// says otherwise.
const DEFAULT_MAX_LATENCY: Duration = Duration::from_secs(1);
/// How long a write waits for another process's lock on the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const OPTIONS: &[&str] = &[
    "connector",
    "path",
    "table",
    "key",
    "batch_size",
    "max_latency",
];

/// Where and how an output writes into SQLite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOutput {
    pub path: PathBuf,
    pub table: String,
    /// Upsert key columns; empty: plain inserts.
    pub key: Vec<String>,
    pub batch_size: usize,
    pub max_latency: Duration,
}

impl SqliteOutput {
    /// From `PATH?table=NAME[&key=a,b&batch_size=N&max_latency=1s]` (after
    /// `sqlite:`).
    pub fn from_uri(rest: &str) -> Result<Self, String> {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut options: BTreeMap<String, String> =
            crate::endpoint::query_pairs(query)?.into_iter().collect();
        options.insert("path".into(), path.to_string());
        Self::from_options(&options)
            .map_err(|e| format!("`sqlite:{rest}`: {e} (write sqlite:PATH?table=NAME)"))
    }

    /// From a declaration's options (`connector = 'sqlite', path = '...',
    /// table = '...'`); `path` is already resolved.
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Self, String> {
        if let Some(unknown) = options.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
            return Err(format!(
                "unknown SQLite output option `{unknown}` (known: {})",
                OPTIONS[1..].join(", ")
            ));
        }
        let path = options
            .get("path")
            .filter(|p| !p.is_empty())
            .ok_or("the SQLite output needs the database's path")?;
        let table = options
            .get("table")
            .filter(|t| !t.trim().is_empty())
            .ok_or("the SQLite output needs `table = 'NAME'`")?;
        let key = options
            .get("key")
            .map(|k| {
                k.split(',')
                    .map(|c| c.trim().trim_matches(['[', ']', '"']).to_string())
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let batch_size =
            crate::endpoint::count_option(options, "batch_size")?.unwrap_or(DEFAULT_BATCH_SIZE);
        let max_latency = crate::endpoint::duration_option(options, "max_latency")?
            .unwrap_or(DEFAULT_MAX_LATENCY);
        Ok(SqliteOutput {
            path: path.into(),
            table: table.trim().to_string(),
            key,
            batch_size,
            max_latency,
        })
    }
}

/// How an output column is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Integer,
    Real,
    Boolean,
    Text,
    /// ISO-8601 UTC text.
    DateTime,
    /// Records and arrays as JSON text.
    Json,
}

impl Kind {
    fn of(t: &DataType) -> Kind {
        match t {
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64 => Kind::Integer,
            DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(..)
            | DataType::Decimal256(..) => Kind::Real,
            DataType::Boolean => Kind::Boolean,
            DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => Kind::DateTime,
            DataType::Struct(_)
            | DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::Map(..) => Kind::Json,
            _ => Kind::Text,
        }
    }

    /// The declared type of a column created for it.
    fn declared(self) -> &'static str {
        match self {
            Kind::Integer => "INTEGER",
            Kind::Real => "REAL",
            Kind::Boolean => "BOOLEAN",
            Kind::Text | Kind::Json => "TEXT",
            Kind::DateTime => "DATETIME",
        }
    }

    /// Whether an existing column of declared type `decl` holds this kind's
    /// values as they are (SQLite's affinity rules, section 3.1 of its
    /// datatype page: the declared type decides how values are converted).
    fn fits(self, decl: &str) -> bool {
        let affinity = Affinity::of(decl);
        match self {
            Kind::Integer | Kind::Boolean => affinity != Affinity::Text,
            Kind::Real => !matches!(affinity, Affinity::Text | Affinity::Integer),
            Kind::Text | Kind::Json => matches!(affinity, Affinity::Text | Affinity::Blob),
            Kind::DateTime => affinity != Affinity::Integer && affinity != Affinity::Real,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Affinity {
    Integer,
    Text,
    Blob,
    Real,
    Numeric,
}

impl Affinity {
    fn of(decl: &str) -> Affinity {
        let d = decl.to_ascii_uppercase();
        if d.contains("INT") {
            Affinity::Integer
        } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
            Affinity::Text
        } else if d.contains("BLOB") || d.is_empty() {
            Affinity::Blob
        } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
            Affinity::Real
        } else {
            Affinity::Numeric
        }
    }
}

/// A column of an existing table (`PRAGMA table_info`).
#[derive(Debug)]
struct TableColumn {
    name: String,
    decl: String,
    required: bool,
}

/// One database file's connection, shared by every output of the process
/// that writes into it: SQLite has one writer per database, so outputs
/// into two tables of one file share the transaction (two connections would
/// wait for each other's lock forever on the job's one thread).
struct Database {
    conn: Connection,
    /// When the open transaction began; `None`: no transaction is open.
    since: Option<Instant>,
    /// Per output writing here: its counters and its rows in the open
    /// transaction.
    writers: Vec<(Arc<SinkMetrics>, usize)>,
}

impl Database {
    /// Rows in the open transaction, over all outputs.
    fn pending(&self) -> usize {
        self.writers.iter().map(|(_, n)| n).sum()
    }

    fn begin(&mut self) -> rusqlite::Result<()> {
        if self.since.is_none() {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            self.since = Some(Instant::now());
        }
        Ok(())
    }

    /// Commits the open transaction: its rows count as written.
    fn commit(&mut self) -> rusqlite::Result<()> {
        if self.since.is_none() {
            return Ok(());
        }
        self.conn.execute_batch("COMMIT")?;
        self.since = None;
        for (metrics, rows) in &mut self.writers {
            metrics
                .rows_written
                .fetch_add(*rows as u64, Ordering::Relaxed);
            *rows = 0;
        }
        Ok(())
    }
}

type Shared = Arc<Mutex<Database>>;

/// The databases open in this process, by canonical path.
fn databases() -> &'static Mutex<HashMap<PathBuf, Weak<Mutex<Database>>>> {
    static DATABASES: OnceLock<Mutex<HashMap<PathBuf, Weak<Mutex<Database>>>>> = OnceLock::new();
    DATABASES.get_or_init(Mutex::default)
}

fn lock(db: &Shared) -> std::sync::MutexGuard<'_, Database> {
    db.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes an output's rows into a SQLite table.
pub struct SqliteSink {
    name: String,
    output: SqliteOutput,
    /// The database and this output's place among its writers, once started.
    db: Option<(Shared, usize)>,
    kinds: Vec<Kind>,
    insert: String,
    /// Rows the table refused.
    dead_letters: Vec<DeadLetter>,
    metrics: Arc<SinkMetrics>,
    /// The table's last row id in the checkpoint resumed from: rows after
    /// it are deleted at start (a table without a key).
    resume: Option<i64>,
}

impl std::fmt::Debug for SqliteSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteSink")
            .field("name", &self.name)
            .field("output", &self.output)
            .finish_non_exhaustive()
    }
}

impl SqliteSink {
    pub fn new(name: &str, output: SqliteOutput) -> Self {
        SqliteSink {
            name: name.to_string(),
            output,
            db: None,
            kinds: Vec::new(),
            insert: String::new(),
            dead_letters: Vec::new(),
            metrics: Arc::default(),
            resume: None,
        }
    }

    fn error(&self, message: impl std::fmt::Display) -> EngineError {
        EngineError::Sink {
            output: self.name.clone(),
            message: format!(
                "{} table {}: {message}",
                self.output.path.display(),
                self.output.table
            ),
        }
    }

    /// The database at `path`: the one this process has open, or a new
    /// connection (the file and its folder created when missing).
    fn open(path: &Path) -> Result<Shared, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let conn = Connection::open(path).map_err(|e| e.to_string())?;
        let canonical = path.canonicalize().map_err(|e| e.to_string())?;
        let mut open = databases()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        open.retain(|_, db| db.strong_count() > 0);
        if let Some(db) = open.get(&canonical).and_then(Weak::upgrade) {
            return Ok(db);
        }
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| e.to_string())?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| e.to_string())?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| e.to_string())?;
        let db = Arc::new(Mutex::new(Database {
            conn,
            since: None,
            writers: Vec::new(),
        }));
        open.insert(canonical, Arc::downgrade(&db));
        Ok(db)
    }

    /// The existing table's columns, or `None` when there is no such table.
    fn table_columns(conn: &Connection, table: &str) -> Result<Option<Vec<TableColumn>>, String> {
        let mut stmt = conn
            .prepare("SELECT name, type, \"notnull\", dflt_value FROM pragma_table_info(?1)")
            .map_err(|e| e.to_string())?;
        let columns = stmt
            .query_map([table], |row| {
                Ok(TableColumn {
                    name: row.get(0)?,
                    decl: row.get(1)?,
                    required: row.get::<_, bool>(2)? && row.get::<_, Option<String>>(3)?.is_none(),
                })
            })
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| e.to_string())?;
        Ok((!columns.is_empty()).then_some(columns))
    }

    /// The column sets (lower case) that a unique index or the primary key
    /// of `table` makes unique.
    fn unique_column_sets(conn: &Connection, table: &str) -> Result<Vec<Vec<String>>, String> {
        let sql = "SELECT il.name, ii.name FROM pragma_index_list(?1) AS il \
                   JOIN pragma_index_info(il.name) AS ii WHERE il.\"unique\" \
                   UNION ALL SELECT '', name FROM pragma_table_info(?1) WHERE pk > 0";
        let mut stmt = conn.prepare(sql).map_err(|e| e.to_string())?;
        let pairs = stmt
            .query_map([table], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| e.to_string())?;
        let mut sets: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (index, column) in pairs {
            sets.entry(index)
                .or_default()
                .push(column.to_ascii_lowercase());
        }
        Ok(sets
            .into_values()
            .map(|mut s| {
                s.sort();
                s
            })
            .collect())
    }

    /// Why the existing table cannot take the output's rows, if it cannot.
    fn check_table(
        &self,
        conn: &Connection,
        existing: &[TableColumn],
        schema: &SchemaRef,
    ) -> Result<(), String> {
        let mut problems = Vec::new();
        for field in schema.fields() {
            let kind = Kind::of(field.data_type());
            match existing
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(field.name()))
            {
                None => problems.push(format!("it has no column `{}`", field.name())),
                Some(c) if !kind.fits(&c.decl) => problems.push(format!(
                    "column `{}` is {} but the output's values are {}",
                    c.name,
                    if c.decl.is_empty() {
                        "untyped"
                    } else {
                        &c.decl
                    },
                    kind.declared()
                )),
                Some(_) => {}
            }
        }
        for c in existing.iter().filter(|c| c.required) {
            if !schema
                .fields()
                .iter()
                .any(|f| f.name().eq_ignore_ascii_case(&c.name))
            {
                problems.push(format!(
                    "its column `{}` is NOT NULL without a default and the output has no such column",
                    c.name
                ));
            }
        }
        if !self.output.key.is_empty() {
            let mut key: Vec<String> = self
                .output
                .key
                .iter()
                .map(|k| k.to_ascii_lowercase())
                .collect();
            key.sort();
            if !Self::unique_column_sets(conn, &self.output.table)?.contains(&key) {
                problems.push(format!(
                    "upserts on key ({k}) need a unique index on it: CREATE UNIQUE INDEX ON {t} ({k})",
                    k = self.output.key.join(", "),
                    t = quote(&self.output.table)
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the existing table does not fit the output: {}; drop it, or write to another table",
                problems.join("; ")
            ))
        }
    }

    fn create_table(&self, conn: &Connection, schema: &SchemaRef) -> Result<(), String> {
        let mut columns: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| format!("{} {}", quote(f.name()), Kind::of(f.data_type()).declared()))
            .collect();
        if !self.output.key.is_empty() {
            columns.push(format!(
                "PRIMARY KEY ({})",
                self.output
                    .key
                    .iter()
                    .map(|k| quote(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let table = quote(&self.output.table);
        let mut sql = format!(
            "CREATE TABLE IF NOT EXISTS {table} ({});",
            columns.join(", ")
        );
        if let Some(time) = indexed_time_column(schema, &self.output.key) {
            sql.push_str(&create_time_index(&table, &self.output.table, time));
        }
        conn.execute_batch(&sql).map_err(|e| e.to_string())
    }

    /// `INSERT ... VALUES (?, ...)`, with `ON CONFLICT (key) DO UPDATE` for
    /// an upsert.
    fn insert_sql(&self, schema: &SchemaRef) -> String {
        let names: Vec<String> = schema.fields().iter().map(|f| quote(f.name())).collect();
        let params: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote(&self.output.table),
            names.join(", "),
            params.join(", ")
        );
        if !self.output.key.is_empty() {
            let is_key = |n: &str| self.output.key.iter().any(|k| k.eq_ignore_ascii_case(n));
            let updates: Vec<String> = schema
                .fields()
                .iter()
                .filter(|f| !is_key(f.name()))
                .map(|f| format!("{0} = excluded.{0}", quote(f.name())))
                .collect();
            let key: Vec<String> = self.output.key.iter().map(|k| quote(k)).collect();
            sql.push_str(&format!(" ON CONFLICT ({}) DO ", key.join(", ")));
            if updates.is_empty() {
                sql.push_str("NOTHING");
            } else {
                sql.push_str(&format!("UPDATE SET {}", updates.join(", ")));
            }
        }
        sql
    }

    /// Commits the database's open transaction, if `due` says so.
    fn commit_if(&self, due: impl Fn(&Database) -> bool) -> Result<(), EngineError> {
        let Some((db, _)) = &self.db else {
            return Ok(());
        };
        let mut db = lock(db);
        if db.since.is_some() && due(&db) {
            db.commit().map_err(|e| self.error(e))?;
        }
        Ok(())
    }
}

/// A batch's column as the values SQLite binds.
enum Values {
    Integer(Int64Array),
    Real(Float64Array),
    Boolean(BooleanArray),
    Text(StringArray),
}

impl Values {
    fn of(array: &ArrayRef, kind: Kind) -> Result<Values, EngineError> {
        Ok(match kind {
            Kind::Integer => Values::Integer(
                cast(array, &DataType::Int64)?
                    .as_primitive::<Int64Type>()
                    .clone(),
            ),
            Kind::Real => Values::Real(
                cast(array, &DataType::Float64)?
                    .as_primitive::<Float64Type>()
                    .clone(),
            ),
            Kind::Boolean => Values::Boolean(array.as_boolean().clone()),
            Kind::DateTime => Values::Text(iso_text(array)?),
            Kind::Text | Kind::Json => {
                Values::Text(cast(array, &DataType::Utf8)?.as_string::<i32>().clone())
            }
        })
    }

    fn bind(
        &self,
        stmt: &mut rusqlite::Statement<'_>,
        param: usize,
        row: usize,
    ) -> rusqlite::Result<()> {
        match self {
            Values::Integer(a) => {
                stmt.raw_bind_parameter(param, a.is_valid(row).then(|| a.value(row)))
            }
            Values::Real(a) => {
                stmt.raw_bind_parameter(param, a.is_valid(row).then(|| a.value(row)))
            }
            Values::Boolean(a) => {
                stmt.raw_bind_parameter(param, a.is_valid(row).then(|| a.value(row)))
            }
            Values::Text(a) => {
                stmt.raw_bind_parameter(param, a.is_valid(row).then(|| a.value(row)))
            }
        }
    }
}

/// Datetimes as ISO-8601 UTC text, as the file outputs write them.
fn iso_text(array: &ArrayRef) -> Result<StringArray, EngineError> {
    let micros = cast(array, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    let micros = micros.as_primitive::<iotql_engine::arrow::datatypes::TimestampMicrosecondType>();
    Ok(micros
        .iter()
        .map(|v| {
            v.and_then(chrono::DateTime::from_timestamp_micros)
                .map(|t| t.format(TIMESTAMP_FORMAT).to_string())
        })
        .collect())
}

impl Sink for SqliteSink {
    fn start(&mut self, schema: &SchemaRef) -> Result<(), EngineError> {
        let shared = Self::open(&self.output.path).map_err(|e| self.error(e))?;
        let mut db = lock(&shared);
        // A table is created or checked outside any open transaction of
        // another output of the same file.
        db.commit().map_err(|e| self.error(e))?;
        let conn = &db.conn;
        for k in &self.output.key {
            if !schema
                .fields()
                .iter()
                .any(|f| f.name().eq_ignore_ascii_case(k))
            {
                return Err(self.error(format!(
                    "key column `{k}` is not a column of the output (its columns: {})",
                    schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        match Self::table_columns(conn, &self.output.table).map_err(|e| self.error(e))? {
            Some(existing) => self
                .check_table(conn, &existing, schema)
                .map_err(|e| self.error(e))?,
            None => self.create_table(conn, schema).map_err(|e| self.error(e))?,
        }
        if let Some(last) = self.resume.take() {
            // Rows inserted after the checkpoint are inserted again by the
            // resumed job: remove them first.
            let removed = conn
                .execute(
                    &format!("DELETE FROM {} WHERE rowid > ?1", quote(&self.output.table)),
                    [last],
                )
                .map_err(|e| self.error(e))?;
            if removed > 0 {
                tracing::info!(output = %self.name, removed, "removed rows written after the checkpoint");
            }
        }
        self.kinds = schema
            .fields()
            .iter()
            .map(|f| Kind::of(f.data_type()))
            .collect();
        self.insert = self.insert_sql(schema);
        conn.prepare_cached(&self.insert)
            .map_err(|e| self.error(e))?;
        db.writers.push((self.metrics.clone(), 0));
        let slot = db.writers.len() - 1;
        drop(db);
        self.db = Some((shared, slot));
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = if self.kinds.contains(&Kind::Json) {
            &nested_as_json(batch)?
        } else {
            batch
        };
        let values: Vec<Values> = batch
            .columns()
            .iter()
            .zip(&self.kinds)
            .map(|(a, &k)| Values::of(a, k))
            .collect::<Result<_, _>>()?;
        let (shared, slot) = self
            .db
            .as_ref()
            .ok_or_else(|| EngineError::Internal("SQLite output written before start".into()))?;
        let mut db = lock(shared);
        db.begin().map_err(|e| self.error(e))?;
        let mut stmt = db
            .conn
            .prepare_cached(&self.insert)
            .map_err(|e| self.error(e))?;
        let mut written = 0;
        for row in 0..batch.num_rows() {
            for (i, v) in values.iter().enumerate() {
                v.bind(&mut stmt, i + 1, row).map_err(|e| self.error(e))?;
            }
            match stmt.raw_execute() {
                Ok(_) => written += 1,
                // A row the table refuses (NULL in a NOT NULL column, a
                // CHECK) is bad data: SQLite undoes that statement only,
                // and the row goes to the dead letters.
                Err(rusqlite::Error::SqliteFailure(e, message))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    self.metrics.failures.fetch_add(1, Ordering::Relaxed);
                    self.dead_letters.push(DeadLetter {
                        input: self.name.clone(),
                        position: format!("table {}", self.output.table),
                        reason: message.unwrap_or_else(|| e.to_string()),
                        raw: crate::file::jsonl::row_json(batch, row),
                    });
                }
                Err(e) => return Err(self.error(e)),
            }
        }
        drop(stmt);
        db.writers[*slot].1 += written;
        if db.pending() >= self.output.batch_size {
            db.commit().map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    fn tick(&mut self) -> Result<(), EngineError> {
        let latency = self.output.max_latency;
        self.commit_if(|db| db.since.is_some_and(|t| t.elapsed() >= latency))
    }

    fn flush(&mut self) -> Result<(), EngineError> {
        self.commit_if(|_| true)
    }

    fn finish(&mut self) -> Result<(), EngineError> {
        self.commit_if(|_| true)?;
        // The connection closes with the last output that holds it.
        self.db = None;
        Ok(())
    }

    fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.dead_letters)
    }

    fn metrics(&self) -> Option<Arc<SinkMetrics>> {
        Some(self.metrics.clone())
    }

    /// Commits; with a key, replayed rows overwrite their own (nothing to
    /// undo, no state); without one, the state is the table's last row id.
    fn checkpoint(&mut self) -> Result<Option<Vec<u8>>, EngineError> {
        self.flush()?;
        if !self.output.key.is_empty() {
            return Ok(None);
        }
        let Some((db, _)) = &self.db else {
            return Ok(None);
        };
        let last: rusqlite::Result<Option<i64>> = lock(db).conn.query_row(
            &format!("SELECT max(rowid) FROM {}", quote(&self.output.table)),
            [],
            |r| r.get(0),
        );
        match last {
            Ok(id) => Ok(Some([&b"R1"[..], &id.unwrap_or(0).to_le_bytes()].concat())),
            // A table WITHOUT ROWID cannot be rolled back: at least once.
            Err(e) if e.to_string().contains("no such column") => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    fn recover(&mut self, state: &[u8]) -> Result<(), EngineError> {
        let rest = state.strip_prefix(&b"R1"[..]).ok_or_else(|| {
            self.error("the checkpoint's state of this output is not a SQLite one")
        })?;
        let last = rest
            .try_into()
            .map(i64::from_le_bytes)
            .map_err(|_| self.error("a damaged checkpoint state"))?;
        self.resume = Some(last);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iotql_engine::arrow::array::{Int64Array, TimestampMicrosecondArray};
    use iotql_engine::arrow::datatypes::{Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("deviceId", DataType::Utf8, true),
            Field::new(
                "windowEnd",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                true,
            ),
            Field::new("avgTemp", DataType::Float64, true),
            Field::new("n", DataType::Int64, true),
            Field::new("hot", DataType::Boolean, true),
        ]))
    }

    /// Rows (device, window end in minutes, average, count).
    fn batch(rows: &[(&str, i64, f64, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    rows.iter()
                        .map(|r| 1_767_225_600_000_000 + r.1 * 60_000_000),
                )),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
                Arc::new(BooleanArray::from_iter(
                    rows.iter().map(|r| Some(r.2 > 30.0)),
                )),
            ],
        )
        .unwrap()
    }

    fn output(path: &Path, key: &str) -> SqliteOutput {
        let mut options = BTreeMap::from([
            ("path".to_string(), path.display().to_string()),
            ("table".to_string(), "windows".to_string()),
        ]);
        if !key.is_empty() {
            options.insert("key".into(), key.into());
        }
        SqliteOutput::from_options(&options).unwrap()
    }

    type Row = (String, String, f64, i64, bool);

    fn rows(path: &Path) -> Vec<Row> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare("SELECT deviceId, windowEnd, avgTemp, n, hot FROM windows ORDER BY deviceId, windowEnd")
            .unwrap();
        stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    fn write_all(output: SqliteOutput, batches: &[RecordBatch]) -> Result<(), EngineError> {
        let mut sink = SqliteSink::new("windows", output);
        sink.start(&schema())?;
        for b in batches {
            sink.write(b)?;
        }
        sink.finish()
    }

    #[test]
    fn creates_a_typed_table_and_writes_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edge/fleet.db");
        write_all(
            output(&path, ""),
            &[
                batch(&[("a", 1, 20.5, 3), ("b", 1, 31.0, 2)]),
                batch(&[("a", 2, 21.0, 4)]),
            ],
        )
        .unwrap();
        assert_eq!(
            rows(&path),
            vec![
                (
                    "a".into(),
                    "2026-01-01T00:01:00.000Z".into(),
                    20.5,
                    3,
                    false
                ),
                (
                    "a".into(),
                    "2026-01-01T00:02:00.000Z".into(),
                    21.0,
                    4,
                    false
                ),
                ("b".into(), "2026-01-01T00:01:00.000Z".into(), 31.0, 2, true),
            ]
        );
        let conn = Connection::open(&path).unwrap();
        let types: Vec<String> = conn
            .prepare("SELECT type FROM pragma_table_info('windows')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(types, ["TEXT", "DATETIME", "REAL", "INTEGER", "BOOLEAN"]);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_key_makes_a_replayed_window_overwrite_its_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.db");
        let first = batch(&[("a", 1, 20.0, 1), ("b", 1, 25.0, 1)]);
        write_all(output(&path, "deviceId, windowEnd"), &[first]).unwrap();
        // The job runs again over the same events, with one more reading.
        let replay = batch(&[("a", 1, 20.5, 2), ("b", 1, 25.0, 1), ("a", 2, 22.0, 1)]);
        write_all(output(&path, "deviceId, windowEnd"), &[replay]).unwrap();
        let got = rows(&path);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(
            got[0],
            (
                "a".into(),
                "2026-01-01T00:01:00.000Z".into(),
                20.5,
                2,
                false
            )
        );
    }

    /// The columns of `windows`'s indexes, an index per string.
    fn indexes(path: &Path) -> Vec<String> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT group_concat(i.name, ', ') FROM pragma_index_list('windows') AS l, pragma_index_info(l.name) AS i GROUP BY l.name ORDER BY l.name",
            )
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_created_table_that_grows_with_time_gets_an_index_on_its_time_column() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch(&[("a", 1, 20.0, 1)]);
        let indexed = |key: &str| {
            let path = dir.path().join(format!("{}.db", key.len()));
            write_all(output(&path, key), std::slice::from_ref(&b)).unwrap();
            indexes(&path)
        };
        // Appended windows, and windows by device and time: an index on
        // the window end serves the API's time ranges and newest rows.
        assert_eq!(indexed(""), ["windowEnd"]);
        assert_eq!(
            indexed("deviceId, windowEnd"),
            ["deviceId, windowEnd", "windowEnd"]
        );
        // A row per device: the table stays small, no index beside the key.
        assert_eq!(indexed("deviceId"), ["deviceId"]);
    }

    #[test]
    fn without_a_key_a_replay_adds_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.db");
        let b = batch(&[("a", 1, 20.0, 1)]);
        write_all(output(&path, ""), std::slice::from_ref(&b)).unwrap();
        write_all(output(&path, ""), &[b]).unwrap();
        assert_eq!(rows(&path).len(), 2);
    }

    #[test]
    fn an_existing_compatible_table_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE windows (id INTEGER PRIMARY KEY, DEVICEID varchar(20), windowEnd TEXT, \
                 avgTemp DOUBLE, n BIGINT, hot BOOL, note TEXT DEFAULT 'x', \
                 UNIQUE (deviceid, windowend))",
            )
            .unwrap();
        write_all(
            output(&path, "deviceId,windowEnd"),
            &[batch(&[("a", 1, 20.0, 1)])],
        )
        .unwrap();
        write_all(
            output(&path, "deviceId,windowEnd"),
            &[batch(&[("a", 1, 21.0, 2)])],
        )
        .unwrap();
        assert_eq!(
            rows(&path),
            vec![(
                "a".into(),
                "2026-01-01T00:01:00.000Z".into(),
                21.0,
                2,
                false
            )]
        );
    }

    fn start_error(create: &str, key: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(create)
            .unwrap();
        let mut sink = SqliteSink::new("windows", output(&path, key));
        sink.start(&schema()).unwrap_err().to_string()
    }

    #[test]
    fn an_incompatible_table_is_refused_before_any_row() {
        let e = start_error(
            "CREATE TABLE windows (deviceId INTEGER, windowEnd TEXT, avgTemp REAL, n INTEGER, hot BOOLEAN, site TEXT NOT NULL)",
            "",
        );
        assert!(
            e.contains("column `deviceId` is INTEGER but the output's values are TEXT"),
            "{e}"
        );
        assert!(
            e.contains("its column `site` is NOT NULL without a default"),
            "{e}"
        );
        assert!(e.starts_with("output `windows`: "), "{e}");
        let e = start_error("CREATE TABLE windows (deviceId TEXT, windowEnd TEXT)", "");
        assert!(e.contains("it has no column `avgTemp`"), "{e}");
        let e = start_error(
            "CREATE TABLE windows (deviceId TEXT, windowEnd TEXT, avgTemp REAL, n INTEGER, hot BOOLEAN)",
            "deviceId, windowEnd",
        );
        assert!(e.contains("need a unique index on it"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let mut sink = SqliteSink::new("windows", output(&dir.path().join("x.db"), "site"));
        let e = sink.start(&schema()).unwrap_err().to_string();
        assert!(
            e.contains("key column `site` is not a column of the output"),
            "{e}"
        );
    }

    #[test]
    fn rows_wait_for_a_full_batch_or_the_max_latency_not_longer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.db");
        let mut options = output(&path, "");
        options.batch_size = 3;
        options.max_latency = Duration::from_millis(30);
        let mut sink = SqliteSink::new("windows", options);
        sink.start(&schema()).unwrap();
        let count = || -> i64 {
            Connection::open(&path)
                .unwrap()
                .query_row("SELECT count(*) FROM windows", [], |r| r.get(0))
                .unwrap()
        };
        sink.write(&batch(&[("a", 1, 1.0, 1), ("b", 1, 1.0, 1)]))
            .unwrap();
        sink.tick().unwrap();
        assert_eq!(count(), 0, "two rows wait for a third or the max latency");
        sink.write(&batch(&[("c", 1, 1.0, 1)])).unwrap();
        assert_eq!(count(), 3, "a full batch is committed at once");
        sink.write(&batch(&[("d", 1, 1.0, 1)])).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        sink.tick().unwrap();
        assert_eq!(
            count(),
            4,
            "a row older than max_latency is committed by tick"
        );
        let m = sink.metrics().unwrap();
        assert_eq!(m.rows_written.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn two_outputs_share_one_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.db");
        let mut a = SqliteSink::new("windows", output(&path, ""));
        let mut other = output(&path, "deviceId, windowEnd");
        other.table = "latest".into();
        let mut b = SqliteSink::new("latest", other);
        a.start(&schema()).unwrap();
        b.start(&schema()).unwrap();
        for m in 0..3 {
            a.write(&batch(&[("a", m, 1.0, 1)])).unwrap();
            b.write(&batch(&[("a", 0, m as f64, 1)])).unwrap();
        }
        a.finish().unwrap();
        b.finish().unwrap();
        assert_eq!(rows(&path).len(), 3);
        let latest: f64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT avgTemp FROM latest", [], |r| r.get(0))
            .unwrap();
        assert_eq!(latest, 2.0);
        assert_eq!(a.metrics.rows_written.load(Ordering::Relaxed), 3);
        assert_eq!(b.metrics.rows_written.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_row_the_table_refuses_is_a_dead_letter_and_the_rest_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE windows (deviceId TEXT, windowEnd TEXT, avgTemp REAL CHECK (avgTemp < 100), n INTEGER, hot BOOLEAN)",
            )
            .unwrap();
        let mut sink = SqliteSink::new("windows", output(&path, ""));
        sink.start(&schema()).unwrap();
        sink.write(&batch(&[
            ("a", 1, 20.0, 1),
            ("b", 1, 150.0, 1),
            ("c", 1, 21.0, 1),
        ]))
        .unwrap();
        sink.finish().unwrap();
        assert_eq!(rows(&path).len(), 2);
        let letters = sink.take_dead_letters();
        assert_eq!(letters.len(), 1);
        assert!(
            letters[0].reason.contains("CHECK constraint failed"),
            "{:?}",
            letters[0]
        );
        assert!(
            letters[0].raw.contains(r#""deviceId":"b""#),
            "{}",
            letters[0].raw
        );
        assert_eq!(sink.metrics.rows_written.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn options_are_checked() {
        let e = SqliteOutput::from_uri("fleet.db").unwrap_err();
        assert!(e.contains("needs `table = 'NAME'`"), "{e}");
        let e = SqliteOutput::from_uri("fleet.db?table=t&keys=a").unwrap_err();
        assert!(e.contains("unknown SQLite output option `keys`"), "{e}");
        let o =
            SqliteOutput::from_uri("fleet.db?table=t&key=a,%20b&max_latency=250ms&batch_size=5")
                .unwrap();
        assert_eq!(o.key, ["a", "b"]);
        assert_eq!(o.max_latency, Duration::from_millis(250));
        assert_eq!(o.batch_size, 5);
    }
}
