//! Hive-style partition folders: which folder each row goes to
//! (`deviceId=d1/`, `date=2026-01-01/hour=13/`), and the escaping that keeps
//! any value a single, safe folder name.

use std::collections::HashMap;

use iotql_engine::arrow::array::{Array, ArrayRef, Int64Array, UInt32Array};
use iotql_engine::arrow::compute::{cast, take_record_batch};
use iotql_engine::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::arrow::util::display::{ArrayFormatter, FormatOptions};

/// The folder name Hive gives a NULL or empty value; readers (DataFusion,
/// Spark, Hive) know it.
pub const DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// One level (or two) of partition folders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionKey {
    /// `col=value/`; the column is left out of the files, as Hive does.
    Column(String),
    /// `date=YYYY-MM-DD/` of a datetime column (UTC), which stays in the files.
    Date(String),
    /// `date=YYYY-MM-DD/hour=HH/` of a datetime column (UTC).
    Hour(String),
}

impl PartitionKey {
    /// `'deviceId, date(windowEnd)'`: columns and `date(col)` / `hour(col)`.
    pub fn parse_list(spec: &str) -> Result<Vec<PartitionKey>, String> {
        let keys: Vec<PartitionKey> = spec
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(Self::parse)
            .collect::<Result<_, _>>()?;
        if keys.is_empty() {
            return Err(
                "partition_by names no column: write e.g. partition_by = 'deviceId'".into(),
            );
        }
        Ok(keys)
    }

    fn parse(text: &str) -> Result<PartitionKey, String> {
        let Some((function, rest)) = text.split_once('(') else {
            return Ok(PartitionKey::Column(unbracket(text).to_string()));
        };
        let column = rest
            .strip_suffix(')')
            .map(|c| unbracket(c.trim()).to_string())
            .filter(|c| !c.is_empty())
            .ok_or_else(|| format!("partition_by `{text}`: write date(COLUMN) or hour(COLUMN)"))?;
        match function.trim().to_ascii_lowercase().as_str() {
            "date" => Ok(PartitionKey::Date(column)),
            "hour" => Ok(PartitionKey::Hour(column)),
            other => Err(format!(
                "partition_by `{text}`: `{other}` is not a time partitioning; write date(COLUMN) or hour(COLUMN)"
            )),
        }
    }

    fn column(&self) -> &str {
        match self {
            PartitionKey::Column(c) | PartitionKey::Date(c) | PartitionKey::Hour(c) => c,
        }
    }
}

/// `[deviceId]` as written in ASA, without its brackets.
fn unbracket(name: &str) -> &str {
    name.trim_start_matches('[').trim_end_matches(']')
}

/// Escapes a value as Hive does (`FileUtils.escapePathName`): characters
/// that are special in paths or to readers become `%XX`, so a value is one
/// folder name (no `/`), and `col=` before it keeps `..` harmless; NULL and
/// empty values become [`DEFAULT_PARTITION`].
pub fn escape(value: Option<&str>) -> String {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return DEFAULT_PARTITION.to_string();
    };
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_control() || "\"#%'*/:=?\\{[]^".contains(c) {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// How a key reads its column, once the output's schema is known.
#[derive(Debug)]
enum Level {
    /// `name=value` of the column at `index`.
    Column { name: String, index: usize },
    /// `date=...` (and `hour=...`) of the datetime column at `index`.
    Time { index: usize, hour: bool },
}

/// The partition folders of an output: splits batches by folder.
#[derive(Debug)]
pub struct Partitioner {
    levels: Vec<Level>,
    /// The columns that go into the files (all but the partition columns).
    file_columns: Vec<usize>,
}

impl Partitioner {
    /// Binds the keys to the output's columns (matched case-insensitively,
    /// as ASA names are); says what is wrong with a key otherwise.
    pub fn new(keys: &[PartitionKey], schema: &SchemaRef) -> Result<Self, String> {
        let mut levels = Vec::new();
        let mut folders: Vec<String> = Vec::new();
        for key in keys {
            let index = schema
                .fields()
                .iter()
                .position(|f| f.name().eq_ignore_ascii_case(key.column()))
                .ok_or_else(|| {
                    format!(
                        "partition_by: `{}` is not a column of the output (its columns: {})",
                        key.column(),
                        column_names(schema)
                    )
                })?;
            let field = schema.field(index);
            let level = match key {
                PartitionKey::Column(_) if field.data_type().is_nested() => {
                    return Err(format!(
                        "partition_by: `{}` is a record or an array; partition by a column of plain values",
                        field.name()
                    ));
                }
                PartitionKey::Column(_) => {
                    folders.push(field.name().clone());
                    Level::Column {
                        name: field.name().clone(),
                        index,
                    }
                }
                PartitionKey::Date(_) | PartitionKey::Hour(_) => {
                    if !matches!(field.data_type(), DataType::Timestamp(..)) {
                        return Err(format!(
                            "partition_by {}: `{}` is not a datetime column (it is {}); CAST it AS datetime in the SELECT",
                            match key {
                                PartitionKey::Hour(_) => "hour(...)",
                                _ => "date(...)",
                            },
                            field.name(),
                            field.data_type()
                        ));
                    }
                    let hour = matches!(key, PartitionKey::Hour(_));
                    folders.push("date".into());
                    if hour {
                        folders.push("hour".into());
                    }
                    Level::Time { index, hour }
                }
            };
            levels.push(level);
        }
        check_folder_names(&folders)?;
        let partition_columns: Vec<usize> = levels
            .iter()
            .filter_map(|l| match l {
                Level::Column { index, .. } => Some(*index),
                Level::Time { .. } => None,
            })
            .collect();
        let file_columns: Vec<usize> = (0..schema.fields().len())
            .filter(|i| !partition_columns.contains(i))
            .collect();
        if file_columns.is_empty() {
            return Err(
                "partition_by takes every column of the output into folder names; a Parquet file needs at least one column left".into(),
            );
        }
        for folder in folders.iter().filter(|f| *f == "date" || *f == "hour") {
            if let Some(clash) = file_columns
                .iter()
                .map(|&i| schema.field(i).name())
                .find(|n| n.eq_ignore_ascii_case(folder))
            {
                return Err(format!(
                    "partition_by: the folder `{folder}=` has the name of the column `{clash}`, which readers would confuse; rename the column (AS ...) or partition by it"
                ));
            }
        }
        Ok(Partitioner {
            levels,
            file_columns,
        })
    }

    /// The columns of the output that go into the files.
    pub fn file_columns(&self) -> &[usize] {
        &self.file_columns
    }

    /// The rows of `batch` by folder (relative to the output's folder; ""
    /// without partitioning), in order of first appearance, each with the
    /// file columns only.
    pub fn split(&self, batch: &RecordBatch) -> Result<Vec<(String, RecordBatch)>, String> {
        let rows = self.folders(batch)?;
        let mut groups: Vec<(String, Vec<u32>)> = Vec::new();
        let mut by_folder: HashMap<&str, usize> = HashMap::new();
        for (row, folder) in rows.iter().enumerate() {
            let group = *by_folder.entry(folder).or_insert_with(|| {
                groups.push((folder.clone(), Vec::new()));
                groups.len() - 1
            });
            groups[group].1.push(row as u32);
        }
        let files = batch
            .project(&self.file_columns)
            .map_err(|e| e.to_string())?;
        if groups.len() == 1 {
            let folder = groups.pop().map(|(f, _)| f).unwrap_or_default();
            return Ok(vec![(folder, files)]);
        }
        groups
            .into_iter()
            .map(|(folder, rows)| {
                take_record_batch(&files, &UInt32Array::from(rows))
                    .map(|b| (folder, b))
                    .map_err(|e| e.to_string())
            })
            .collect()
    }

    /// Each row's folder path, e.g. `deviceId=d1/date=2026-01-01`.
    fn folders(&self, batch: &RecordBatch) -> Result<Vec<String>, String> {
        let mut paths = vec![String::new(); batch.num_rows()];
        for level in &self.levels {
            let parts = match level {
                Level::Column { name, index } => column_parts(name, batch.column(*index))?,
                Level::Time { index, hour } => time_parts(batch.column(*index), *hour)?,
            };
            for (path, part) in paths.iter_mut().zip(parts) {
                if !path.is_empty() {
                    path.push('/');
                }
                path.push_str(&part);
            }
        }
        Ok(paths)
    }
}

fn column_names(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refuses a folder level named twice (`date(a), date(b)`, `x, X`).
fn check_folder_names(folders: &[String]) -> Result<(), String> {
    for (i, f) in folders.iter().enumerate() {
        if folders[..i].iter().any(|g| g.eq_ignore_ascii_case(f)) {
            return Err(format!(
                "partition_by makes two `{f}=` folder levels; name each column once (hour(col) already includes date=)"
            ));
        }
    }
    Ok(())
}

/// `name=value` of each row.
fn column_parts(name: &str, column: &ArrayRef) -> Result<Vec<String>, String> {
    let formatter =
        ArrayFormatter::try_new(column, &FormatOptions::default()).map_err(|e| e.to_string())?;
    let name = escape(Some(name));
    Ok((0..column.len())
        .map(|row| {
            let value = (!column.is_null(row)).then(|| formatter.value(row).to_string());
            format!("{name}={}", escape(value.as_deref()))
        })
        .collect())
}

/// `date=YYYY-MM-DD` (and `/hour=HH`) of each row's datetime, in UTC.
fn time_parts(column: &ArrayRef, hour: bool) -> Result<Vec<String>, String> {
    let micros = cast(column, &DataType::Timestamp(TimeUnit::Microsecond, None))
        .and_then(|c| cast(&c, &DataType::Int64))
        .map_err(|e| e.to_string())?;
    let micros = micros
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or("a datetime column did not read as microseconds")?;
    let format = if hour {
        "date=%Y-%m-%d/hour=%H"
    } else {
        "date=%Y-%m-%d"
    };
    Ok(micros
        .iter()
        .map(
            |t| match t.and_then(chrono::DateTime::from_timestamp_micros) {
                Some(t) => t.format(format).to_string(),
                None if hour => format!("date={DEFAULT_PARTITION}/hour={DEFAULT_PARTITION}"),
                None => format!("date={DEFAULT_PARTITION}"),
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use iotql_engine::arrow::array::{StringArray, TimestampMicrosecondArray};
    use iotql_engine::arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn values_become_one_safe_folder_name() {
        assert_eq!(escape(Some("d1")), "d1");
        assert_eq!(escape(Some("a/b")), "a%2Fb");
        assert_eq!(escape(Some("k=v")), "k%3Dv");
        assert_eq!(escape(Some("50%")), "50%25");
        assert_eq!(escape(Some("..")), "..");
        assert_eq!(escape(Some("")), DEFAULT_PARTITION);
        assert_eq!(escape(None), DEFAULT_PARTITION);
    }

    #[test]
    fn keys_parse_with_time_functions() {
        assert_eq!(
            PartitionKey::parse_list("[site], HOUR(ts)"),
            Ok(vec![
                PartitionKey::Column("site".into()),
                PartitionKey::Hour("ts".into())
            ])
        );
        assert!(PartitionKey::parse_list(" , ").is_err());
        assert!(PartitionKey::parse_list("date()").is_err());
    }

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("site", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("a"), None, Some("a")])),
                Arc::new(TimestampMicrosecondArray::from(vec![
                    Some(1_767_272_400_000_000), // 2026-01-01T13:00:00Z
                    Some(1_767_312_000_000_000), // 2026-01-02T00:00:00Z
                    None,
                ])),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn rows_split_by_folder_without_the_partition_column() {
        let batch = batch();
        let keys = PartitionKey::parse_list("site, hour(ts)").expect("keys");
        let p = Partitioner::new(&keys, &batch.schema()).expect("bound");
        let split = p.split(&batch).expect("split");
        let folders: Vec<(&str, usize, usize)> = split
            .iter()
            .map(|(f, b)| (f.as_str(), b.num_rows(), b.num_columns()))
            .collect();
        assert_eq!(
            folders,
            vec![
                ("site=a/date=2026-01-01/hour=13", 1, 1),
                (
                    "site=__HIVE_DEFAULT_PARTITION__/date=2026-01-02/hour=00",
                    1,
                    1
                ),
                (
                    "site=a/date=__HIVE_DEFAULT_PARTITION__/hour=__HIVE_DEFAULT_PARTITION__",
                    1,
                    1
                ),
            ]
        );
    }

    #[test]
    fn keys_that_cannot_work_are_refused() {
        let schema = batch().schema();
        let refuse = |spec: &str| {
            Partitioner::new(&PartitionKey::parse_list(spec).expect("keys"), &schema)
                .expect_err("refused")
        };
        assert!(refuse("nope").contains("not a column of the output (its columns: site, ts)"));
        assert!(refuse("date(site)").contains("not a datetime column"));
        assert!(refuse("site, ts").contains("at least one column"));
        assert!(refuse("date(ts), hour(ts)").contains("two `date=` folder levels"));
    }
}
