//! The output's table: its columns typed from the output's schema, created
//! when missing, checked when it exists; and the statements that write a
//! batch into it (through a staging table) and keep the output's progress.

use std::hash::{DefaultHasher, Hash, Hasher};

use iotql_engine::arrow::datatypes::{DataType, Schema};
use postgres::types::Type;

use super::ledger::Ledger;
use super::{PostgresOutput, TableName};
pub(super) use crate::sql::quote;
use crate::sql::{create_time_index, indexed_time_column};

/// The table that records, per output without a key, the number of its
/// last committed batch (in the schema of the output's table).
const PROGRESS_TABLE: &str = "iotql_sink_progress";

/// The staging column that numbers the rows of a batch, so that of two
/// rows with one key the later wins.
const ROW_NUMBER: &str = "__iotql_row";

/// The PostgreSQL type a column is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum ColumnType {
    Text,
    BigInt,
    Double,
    Boolean,
    /// Output datetimes are UTC instants.
    Timestamptz,
    /// Records and arrays, as the JSON of the jsonl output.
    Jsonb,
    Bytea,
}

impl ColumnType {
    /// The type of a column of Arrow type `t`; `None` for a type no ASA
    /// query produces.
    pub(super) fn of(t: &DataType) -> Option<ColumnType> {
        Some(match t {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
                ColumnType::Text
            }
            t if t.is_integer() => ColumnType::BigInt,
            t if t.is_floating() => ColumnType::Double,
            DataType::Decimal128(..) | DataType::Decimal256(..) => ColumnType::Double,
            DataType::Boolean => ColumnType::Boolean,
            DataType::Timestamp(..) => ColumnType::Timestamptz,
            DataType::Struct(_)
            | DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::Map(..) => ColumnType::Jsonb,
            DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_) => ColumnType::Bytea,
            _ => return None,
        })
    }

    pub(super) fn sql(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::BigInt => "bigint",
            ColumnType::Double => "double precision",
            ColumnType::Boolean => "boolean",
            ColumnType::Timestamptz => "timestamptz",
            ColumnType::Jsonb => "jsonb",
            ColumnType::Bytea => "bytea",
        }
    }

    pub(super) fn pg_type(self) -> Type {
        match self {
            ColumnType::Text => Type::TEXT,
            ColumnType::BigInt => Type::INT8,
            ColumnType::Double => Type::FLOAT8,
            ColumnType::Boolean => Type::BOOL,
            ColumnType::Timestamptz => Type::TIMESTAMPTZ,
            ColumnType::Jsonb => Type::JSONB,
            ColumnType::Bytea => Type::BYTEA,
        }
    }

    /// Whether an existing column of type `typname` (`pg_type.typname`)
    /// takes our values: same kind, converted by PostgreSQL on insert (a
    /// value out of a narrower column's range is an error then). A
    /// timestamptz goes into a `timestamp` column as UTC.
    fn fits(self, typname: &str) -> bool {
        let fits: &[&str] = match self {
            ColumnType::Text => &["text", "varchar", "bpchar"],
            ColumnType::BigInt => &["int8", "int4", "int2", "numeric"],
            ColumnType::Double => &["float8", "float4", "numeric"],
            ColumnType::Boolean => &["bool"],
            ColumnType::Timestamptz => &["timestamptz", "timestamp"],
            ColumnType::Jsonb => &["jsonb", "json"],
            ColumnType::Bytea => &["bytea"],
        };
        fits.contains(&typname)
    }
}

/// An output column and where it goes.
#[derive(Debug, Clone)]
pub(super) struct Column {
    /// The column's name in the table (the output's name, or an existing
    /// table's spelling of it).
    pub(super) name: String,
    pub(super) ty: ColumnType,
    /// The table's column is of exactly this type, so a binary COPY can
    /// write it.
    pub(super) exact: bool,
}

/// The statements of an output without a key that keep its batch number.
#[derive(Debug)]
pub(super) struct Progress {
    /// `(target, output)`: this output's row.
    pub(super) target: String,
    pub(super) output: String,
    /// Locks the row and reads the number (parameters: target, output).
    pub(super) lock: String,
    /// Sets the number (parameters: target, output, number).
    pub(super) update: String,
    /// Which transaction committed each batch, when the run takes
    /// checkpoints (see [`super::ledger`]).
    pub(super) ledger: Option<Ledger>,
}

/// Where and how an output writes: ready once the table is checked.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) columns: Vec<Column>,
    /// Per transaction, before the copy: session settings (and the staging
    /// table).
    pub(super) begin: String,
    /// `COPY ... FROM STDIN (FORMAT binary)`, into the staging table or
    /// straight into the table.
    pub(super) copy: String,
    /// The types the copy sends: the columns', then, into a staging table,
    /// the row number.
    pub(super) copy_types: Vec<Type>,
    /// Staging table to table; `None` when the copy goes straight in.
    pub(super) insert: Option<String>,
    /// `None` with a key: upserts need no batch numbers.
    pub(super) progress: Option<Progress>,
}

impl Target {
    /// The output's progress row and ledger, when it keeps one (no key,
    /// a run with checkpoints).
    pub(super) fn ledger(&self) -> Option<(&Progress, &Ledger)> {
        let progress = self.progress.as_ref()?;
        Some((progress, progress.ledger.as_ref()?))
    }
}

/// Why an output cannot start.
#[derive(Debug)]
pub(super) enum StartError {
    /// The server failed (maybe away: see `server::is_outage`).
    Server(postgres::Error),
    /// The output and the table do not fit together: the user must act.
    Refused(String),
}

impl From<postgres::Error> for StartError {
    fn from(e: postgres::Error) -> Self {
        StartError::Server(e)
    }
}

pub(super) fn qualified(schema: Option<&str>, name: &str) -> String {
    match schema {
        Some(s) => format!("{}.{}", quote(s), quote(name)),
        None => quote(name),
    }
}

/// An existing table's column.
#[derive(Debug)]
struct Existing {
    name: String,
    typname: String,
    /// `format_type`, for messages (`character varying(20)`).
    shown: String,
    /// NOT NULL without a default: every insert must give it.
    required: bool,
}

/// Checks the table of `output` against the output's schema (creating it
/// when missing, with the key as primary key) and, without a key, readies
/// the output's progress row (and its ledger, when the run takes
/// `checkpoints`); returns the output's target and the number of its last
/// committed batch.
pub(super) fn prepare(
    client: &mut postgres::Client,
    output_name: &str,
    output: &PostgresOutput,
    schema: &Schema,
    checkpoints: bool,
) -> Result<(Target, i64), StartError> {
    let mut columns = output_columns(schema)?;
    let key = key_indexes(&output.key, &columns)?;
    let table = qualified(output.table.schema.as_deref(), &output.table.name);
    if existing(client, &table)?.is_none() {
        client.batch_execute(&create_table(&table, &columns, &key))?;
        if let Some(time) = indexed_time_column(schema, &output.key) {
            client.batch_execute(&create_time_index(&table, &output.table.name, time))?;
        }
    }
    let existing = existing(client, &table)?.ok_or_else(|| {
        StartError::Refused(format!(
            "table {} vanished while it was created",
            output.table
        ))
    })?;
    match_columns(&output.table, &mut columns, &existing.1)?;
    if !key.is_empty() {
        check_unique(client, existing.0, &output.table, &columns, &key)?;
    }
    let (progress, seq) = if key.is_empty() {
        let (mut progress, seq) = progress(client, &output.table, output_name)?;
        if checkpoints {
            progress.ledger = Some(Ledger::create(client, &output.table, &table)?);
        }
        (Some(progress), seq)
    } else {
        (None, 0)
    };
    Ok((statements(&table, columns, &key, progress), seq))
}

/// The output's columns with the types they are written as.
fn output_columns(schema: &Schema) -> Result<Vec<Column>, StartError> {
    schema
        .fields()
        .iter()
        .map(|f| {
            ColumnType::of(f.data_type())
                .map(|ty| Column {
                    name: f.name().clone(),
                    ty,
                    exact: false,
                })
                .ok_or_else(|| {
                    StartError::Refused(format!(
                        "column `{}` is of type {}, which the postgres output cannot write; CAST it in the query (e.g. to nvarchar(max))",
                        f.name(),
                        f.data_type()
                    ))
                })
        })
        .collect()
}

/// The positions of the key's columns among the output's (names matched
/// without case, as ASA does).
fn key_indexes(key: &[String], columns: &[Column]) -> Result<Vec<usize>, StartError> {
    key.iter()
        .map(|k| {
            columns
                .iter()
                .position(|c| c.name == *k)
                .or_else(|| columns.iter().position(|c| c.name.eq_ignore_ascii_case(k)))
                .ok_or_else(|| {
                    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
                    StartError::Refused(format!(
                        "key column `{k}` is not a column of the output (its columns: {})",
                        names.join(", ")
                    ))
                })
        })
        .collect()
}

/// The table's oid and columns, or `None` when there is no such table.
fn existing(
    client: &mut postgres::Client,
    table: &str,
) -> Result<Option<(u32, Vec<Existing>)>, StartError> {
    let oid: Option<u32> = client
        .query_one("SELECT to_regclass($1)::oid", &[&table])?
        .get(0);
    let Some(oid) = oid else {
        return Ok(None);
    };
    let rows = client.query(
        "SELECT a.attname::text, t.typname::text, format_type(a.atttypid, a.atttypmod),
                a.attnotnull AND NOT a.atthasdef
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
         WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY a.attnum",
        &[&oid],
    )?;
    let columns = rows
        .iter()
        .map(|r| Existing {
            name: r.get(0),
            typname: r.get(1),
            shown: r.get(2),
            required: r.get(3),
        })
        .collect();
    Ok(Some((oid, columns)))
}

fn create_table(table: &str, columns: &[Column], key: &[usize]) -> String {
    let mut parts: Vec<String> = columns
        .iter()
        .map(|c| format!("{} {}", quote(&c.name), c.ty.sql()))
        .collect();
    if !key.is_empty() {
        let key: Vec<String> = key.iter().map(|&i| quote(&columns[i].name)).collect();
        parts.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    format!("CREATE TABLE IF NOT EXISTS {table} ({})", parts.join(", "))
}

/// Finds each output column in the existing table (by exact name, else by
/// name without case, taking the table's spelling) and checks its type;
/// the table's other columns must be nullable or have defaults.
fn match_columns(
    table: &TableName,
    columns: &mut [Column],
    existing: &[Existing],
) -> Result<(), StartError> {
    let mut used = vec![false; existing.len()];
    for column in columns.iter_mut() {
        let found = existing
            .iter()
            .position(|e| e.name == column.name)
            .or_else(|| {
                let mut matches = existing
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.name.eq_ignore_ascii_case(&column.name));
                match (matches.next(), matches.next()) {
                    (Some((i, _)), None) => Some(i),
                    _ => None,
                }
            })
            .ok_or_else(|| {
                let names: Vec<&str> = existing.iter().map(|e| e.name.as_str()).collect();
                StartError::Refused(format!(
                    "table {table} has no column `{}` (its columns: {}); add it (ALTER TABLE ... ADD COLUMN \"{}\" {}) or write to another table",
                    column.name,
                    names.join(", "),
                    column.name,
                    column.ty.sql()
                ))
            })?;
        let e = &existing[found];
        if !column.ty.fits(&e.typname) {
            return Err(StartError::Refused(format!(
                "column `{}` of table {table} is {}, which cannot hold the output's {} values; change its type or write to another table",
                e.name,
                e.shown,
                column.ty.sql()
            )));
        }
        column.name = e.name.clone();
        column.exact = e.typname == column.ty.pg_type().name();
        used[found] = true;
    }
    if let Some(e) = existing
        .iter()
        .zip(&used)
        .find_map(|(e, &used)| (!used && e.required).then_some(e))
    {
        return Err(StartError::Refused(format!(
            "column `{}` of table {table} is NOT NULL without a default, and the output has no such column",
            e.name
        )));
    }
    Ok(())
}

/// An upsert needs a unique constraint (or unique index) on exactly the
/// key's columns.
fn check_unique(
    client: &mut postgres::Client,
    oid: u32,
    table: &TableName,
    columns: &[Column],
    key: &[usize],
) -> Result<(), StartError> {
    let rows = client.query(
        "SELECT array_agg(a.attname::text)
         FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
         WHERE i.indrelid = $1 AND i.indisunique AND i.indimmediate
           AND i.indpred IS NULL AND i.indexprs IS NULL
         GROUP BY i.indexrelid",
        &[&oid],
    )?;
    let mut wanted: Vec<&str> = key.iter().map(|&i| columns[i].name.as_str()).collect();
    wanted.sort_unstable();
    let found = rows.iter().any(|r| {
        let mut names: Vec<String> = r.get(0);
        names.sort_unstable();
        names == wanted
    });
    if found {
        return Ok(());
    }
    let names: Vec<String> = wanted.iter().map(|n| quote(n)).collect();
    Err(StartError::Refused(format!(
        "table {table} has no unique constraint on the key ({}), so writes cannot be upserts; add one (ALTER TABLE ... ADD UNIQUE ({})) or write to a new table",
        wanted.join(", "),
        names.join(", ")
    )))
}

/// Creates the progress table and this output's row in it; returns the
/// statements and the number of the output's last committed batch.
fn progress(
    client: &mut postgres::Client,
    table: &TableName,
    output: &str,
) -> Result<(Progress, i64), StartError> {
    let progress = qualified(table.schema.as_deref(), PROGRESS_TABLE);
    client.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {progress} (target text NOT NULL, output text NOT NULL, seq bigint NOT NULL, PRIMARY KEY (target, output))"
    ))?;
    let target = table.to_string();
    client.execute(
        &format!(
            "INSERT INTO {progress} (target, output, seq) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING"
        ),
        &[&target, &output],
    )?;
    let read = format!("SELECT seq FROM {progress} WHERE target = $1 AND output = $2");
    let seq = client.query_one(&read, &[&target, &output])?.get(0);
    let statements = Progress {
        target,
        output: output.to_string(),
        lock: format!("{read} FOR UPDATE"),
        update: format!("UPDATE {progress} SET seq = $3 WHERE target = $1 AND output = $2"),
        ledger: None,
    };
    Ok((statements, seq))
}

/// The statements that write a batch. Without a key, into a table whose
/// columns are of our types, a binary COPY straight in (the fastest way
/// in). Otherwise into a temporary staging table of our types (binary COPY
/// needs them exact), then one INSERT into the table, which converts them
/// to its own and, with a key, upserts.
fn statements(
    table: &str,
    columns: Vec<Column>,
    key: &[usize],
    progress: Option<Progress>,
) -> Target {
    let names: Vec<String> = columns.iter().map(|c| quote(&c.name)).collect();
    let mut copy_types: Vec<Type> = columns.iter().map(|c| c.ty.pg_type()).collect();
    let settings = "SET LOCAL TimeZone = 'UTC'; SET LOCAL client_min_messages = warning";
    if key.is_empty() && columns.iter().all(|c| c.exact) {
        return Target {
            begin: settings.to_string(),
            copy: format!(
                "COPY {table} ({}) FROM STDIN (FORMAT binary)",
                names.join(", ")
            ),
            copy_types,
            insert: None,
            columns,
            progress,
        };
    }
    copy_types.push(Type::INT8);
    // Outputs whose columns have the same types share a staging table per
    // connection; it is emptied at every commit.
    let mut hasher = DefaultHasher::new();
    columns.iter().for_each(|c| c.ty.hash(&mut hasher));
    let stage = quote(&format!("iotql_stage_{:016x}", hasher.finish()));
    let stage_columns: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("c{i} {}", c.ty.sql()))
        .chain([format!("{ROW_NUMBER} bigint")])
        .collect();
    let begin = format!(
        "{settings}; CREATE TEMP TABLE IF NOT EXISTS {stage} ({}) ON COMMIT DELETE ROWS",
        stage_columns.join(", ")
    );
    let values: Vec<String> = (0..columns.len()).map(|i| format!("c{i}")).collect();
    let insert = if key.is_empty() {
        format!(
            "INSERT INTO {table} ({}) SELECT {} FROM {stage}",
            names.join(", "),
            values.join(", ")
        )
    } else {
        let key_names: Vec<&str> = key.iter().map(|&i| names[i].as_str()).collect();
        let key_values: Vec<&str> = key.iter().map(|&i| values[i].as_str()).collect();
        let updates: Vec<String> = (0..columns.len())
            .filter(|i| !key.contains(i))
            .map(|i| format!("{0} = EXCLUDED.{0}", names[i]))
            .collect();
        let action = if updates.is_empty() {
            "NOTHING".to_string()
        } else {
            format!("UPDATE SET {}", updates.join(", "))
        };
        // Of a batch's rows with one key the last wins (one INSERT may not
        // touch a row twice).
        format!(
            "INSERT INTO {table} ({}) SELECT DISTINCT ON ({keys}) {} FROM {stage} ORDER BY {keys}, {ROW_NUMBER} DESC ON CONFLICT ({}) DO {action}",
            names.join(", "),
            values.join(", "),
            key_names.join(", "),
            keys = key_values.join(", "),
        )
    };
    Target {
        columns,
        begin,
        copy: format!("COPY {stage} FROM STDIN (FORMAT binary)"),
        copy_types,
        insert: Some(insert),
        progress,
    }
}
