//! The running Parquet output: one open file per partition folder, each
//! written under a hidden temporary name and, once complete, synced and
//! renamed into place. A file is completed when it reaches `max_rows`, when
//! it has been open `roll_interval`, on `flush` (the runner's commit of
//! broker positions: the rows must be durable) and at the end.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use ::parquet::arrow::ArrowWriter;
use ::parquet::basic::{Compression, ZstdLevel};
use ::parquet::file::properties::WriterProperties;
use iotql_engine::arrow::compute::cast;
use iotql_engine::arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::error::EngineError;
use iotql_engine::io::{Sink, SinkMetrics};

use super::partition::Partitioner;
use super::{Codec, ParquetOutput};

/// The suffix of a file being written; with the leading dot, readers and
/// globs (`*.parquet`) skip it.
const IN_PROGRESS: &str = ".inprogress";

/// Writes rows to rolling Parquet files. See the module documentation.
pub struct ParquetSink {
    name: String,
    output: ParquetOutput,
    layout: Option<Layout>,
    /// The open file of each partition folder ("" without partitioning).
    files: BTreeMap<String, OpenFile>,
    /// The run's start, in every file name, so that names of later runs
    /// sort after those of earlier ones.
    run: String,
    /// The number of the next file of this run.
    seq: u64,
    /// The files of the run that a checkpoint counts (those numbered
    /// below it), when the job resumes from one.
    resume: Option<u64>,
    metrics: Arc<SinkMetrics>,
}

impl std::fmt::Debug for ParquetSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetSink")
            .field("name", &self.name)
            .field("dir", &self.output.dir)
            .field("open_files", &self.files.len())
            .finish_non_exhaustive()
    }
}

/// What `start` learnt from the output's schema.
struct Layout {
    partitioner: Partitioner,
    /// The files' schema: the output's less the partition columns, datetimes
    /// marked UTC.
    schema: SchemaRef,
    properties: WriterProperties,
}

/// A file being written.
struct OpenFile {
    writer: ArrowWriter<File>,
    temp: PathBuf,
    path: PathBuf,
    rows: usize,
    opened: Instant,
}

impl ParquetSink {
    pub fn new(name: &str, output: ParquetOutput) -> Self {
        ParquetSink {
            name: name.to_string(),
            output,
            layout: None,
            files: BTreeMap::new(),
            run: chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string(),
            seq: 0,
            resume: None,
            metrics: Arc::new(SinkMetrics::default()),
        }
    }

    fn error(&self, message: impl ToString) -> EngineError {
        EngineError::Sink {
            output: self.name.clone(),
            message: message.to_string(),
        }
    }

    /// Appends `rows` (file columns only) to the folder's file, opening
    /// files and completing full or old ones as it goes.
    fn append(&mut self, folder: &str, rows: &RecordBatch) -> Result<(), EngineError> {
        let mut offset = 0;
        while offset < rows.num_rows() {
            let mut file = match self.files.remove(folder) {
                Some(f) if f.opened.elapsed() < self.output.roll_interval => f,
                Some(old) => {
                    self.complete(old)?;
                    self.open(folder)?
                }
                None => self.open(folder)?,
            };
            let n = (self.output.max_rows - file.rows).min(rows.num_rows() - offset);
            file.writer
                .write(&rows.slice(offset, n))
                .map_err(|e| self.error(format!("cannot write {}: {e}", file.temp.display())))?;
            file.rows += n;
            offset += n;
            if file.rows >= self.output.max_rows {
                self.complete(file)?;
            } else {
                self.files.insert(folder.to_string(), file);
            }
        }
        Ok(())
    }

    /// Opens a new file in `folder` under its temporary name.
    fn open(&mut self, folder: &str) -> Result<OpenFile, EngineError> {
        let layout = self
            .layout
            .as_ref()
            .ok_or_else(|| self.error("written before it was started"))?;
        let dir = self.output.dir.join(folder);
        std::fs::create_dir_all(&dir)
            .map_err(|e| self.error(format!("cannot create {}: {e}", dir.display())))?;
        let name = format!("part-{}-{:06}.parquet", self.run, self.seq);
        self.seq += 1;
        let temp = dir.join(format!(".{name}{IN_PROGRESS}"));
        let file = File::create_new(&temp)
            .map_err(|e| self.error(format!("cannot create {}: {e}", temp.display())))?;
        let writer =
            ArrowWriter::try_new(file, layout.schema.clone(), Some(layout.properties.clone()))
                .map_err(|e| self.error(format!("cannot start {}: {e}", temp.display())))?;
        Ok(OpenFile {
            writer,
            temp,
            path: dir.join(name),
            rows: 0,
            opened: Instant::now(),
        })
    }

    /// Writes the file's footer, syncs it, renames it into place and syncs
    /// the folder, so that the complete file, and only it, survives a crash.
    fn complete(&self, file: OpenFile) -> Result<(), EngineError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            self.error(format!("cannot {what} {}: {e}", file.temp.display()))
        };
        let f = file.writer.into_inner().map_err(|e| fail("close", &e))?;
        f.sync_all().map_err(|e| fail("sync", &e))?;
        std::fs::rename(&file.temp, &file.path).map_err(|e| fail("rename", &e))?;
        if let Some(dir) = file.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| self.error(format!("cannot sync {}: {e}", dir.display())))?;
        }
        self.metrics
            .rows_written
            .fetch_add(file.rows as u64, Ordering::Relaxed);
        tracing::debug!(output = %self.name, path = %file.path.display(), rows = file.rows, "parquet file complete");
        Ok(())
    }

    /// Completes the open files `done` picks.
    fn complete_where(&mut self, done: impl Fn(&OpenFile) -> bool) -> Result<(), EngineError> {
        let folders: Vec<String> = self
            .files
            .iter()
            .filter(|(_, f)| done(f))
            .map(|(k, _)| k.clone())
            .collect();
        for folder in folders {
            if let Some(file) = self.files.remove(&folder) {
                self.complete(file)?;
            }
        }
        Ok(())
    }
}

impl Sink for ParquetSink {
    fn start(&mut self, schema: &SchemaRef) -> Result<(), EngineError> {
        let partitioner =
            Partitioner::new(&self.output.partition_by, schema).map_err(|e| self.error(e))?;
        let fields: Vec<FieldRef> = partitioner
            .file_columns()
            .iter()
            .map(|&i| utc_field(schema.field(i)))
            .collect();
        let compression = match self.output.compression {
            Codec::Zstd(level) => {
                Compression::ZSTD(ZstdLevel::try_new(level as i32).map_err(|e| self.error(e))?)
            }
            Codec::Uncompressed => Compression::UNCOMPRESSED,
        };
        let properties = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(self.output.row_group_size))
            .build();
        std::fs::create_dir_all(&self.output.dir).map_err(|e| {
            self.error(format!(
                "cannot create the folder {}: {e}; check the path and its permissions",
                self.output.dir.display()
            ))
        })?;
        remove_leftovers(&self.name, &self.output.dir).map_err(|e| self.error(e))?;
        if let Some(committed) = self.resume.take() {
            // Files completed after the checkpoint resumed from: their rows
            // are written again by this run.
            let run = self.run.clone();
            let removed = remove_files(&self.output.dir, |name| {
                file_seq(name, &run).is_some_and(|n| n >= committed)
            })
            .map_err(|e| self.error(e))?;
            if removed > 0 {
                tracing::info!(output = %self.name, removed, "removed Parquet files written after the checkpoint");
            }
            self.seq = committed;
        }
        self.layout = Some(Layout {
            partitioner,
            schema: Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
            properties,
        });
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let layout = self
            .layout
            .as_ref()
            .ok_or_else(|| self.error("written before it was started"))?;
        let parts = layout.partitioner.split(batch).map_err(|e| self.error(e))?;
        let schema = layout.schema.clone();
        for (folder, rows) in parts {
            let rows = to_utc(&rows, &schema).map_err(|e| self.error(e))?;
            self.append(&folder, &rows)?;
        }
        Ok(())
    }

    /// Completes every open file: a row is durable only in a complete file.
    fn flush(&mut self) -> Result<(), EngineError> {
        self.complete_where(|_| true)
    }

    fn finish(&mut self) -> Result<(), EngineError> {
        self.flush()
    }

    /// Completes the files open longer than `roll_interval`.
    fn tick(&mut self) -> Result<(), EngineError> {
        let interval = self.output.roll_interval;
        self.complete_where(|f| f.opened.elapsed() >= interval)
    }

    fn metrics(&self) -> Option<Arc<SinkMetrics>> {
        Some(self.metrics.clone())
    }

    /// Completes the open files; the state is the run's name and the number
    /// of its next file: every file numbered below it is complete and
    /// counted by the checkpoint.
    fn checkpoint(&mut self) -> Result<Option<Vec<u8>>, EngineError> {
        self.flush()?;
        Ok(Some(
            [&b"P1"[..], &self.seq.to_le_bytes(), self.run.as_bytes()].concat(),
        ))
    }

    /// Continues the run of the checkpoint: files it wrote after the
    /// checkpoint are removed at start, and numbering goes on from there.
    fn recover(&mut self, state: &[u8]) -> Result<(), EngineError> {
        let parsed = state
            .strip_prefix(&b"P1"[..])
            .filter(|rest| rest.len() >= 8)
            .and_then(|rest| {
                let (seq, run) = rest.split_at(8);
                Some((
                    u64::from_le_bytes(seq.try_into().ok()?),
                    String::from_utf8(run.to_vec()).ok()?,
                ))
            });
        let Some((seq, run)) = parsed else {
            return Err(self.error("the checkpoint's state of this output is not a Parquet one"));
        };
        self.resume = Some(seq);
        self.run = run;
        Ok(())
    }
}

/// The field with its datetimes (nested ones too) marked UTC, so Parquet
/// stores TIMESTAMP(MICROS, isAdjustedToUTC = true): iotql's datetimes
/// are UTC instants, and readers then show them as such.
fn utc_field(field: &Field) -> FieldRef {
    Arc::new(field.clone().with_data_type(utc_type(field.data_type())))
}

fn utc_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Timestamp(unit, None) => DataType::Timestamp(*unit, Some("UTC".into())),
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(|f| utc_field(f)).collect::<Fields>())
        }
        DataType::List(f) => DataType::List(utc_field(f)),
        DataType::LargeList(f) => DataType::LargeList(utc_field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(utc_field(f), *n),
        other => other.clone(),
    }
}

/// `rows` in the files' schema: the datetime columns marked UTC (the
/// values, UTC microseconds, do not change).
fn to_utc(rows: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, String> {
    let columns = rows
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                cast(column, field.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

/// Removes the temporary files a crashed run left in `dir` and its
/// partition folders: they were never complete, and their rows were not
/// committed (a broker input reads them again). One job writes a folder.
fn remove_leftovers(output: &str, dir: &Path) -> Result<(), String> {
    let removed = remove_files(dir, |name| {
        name.starts_with(".part-") && name.ends_with(IN_PROGRESS)
    })?;
    if removed > 0 {
        tracing::warn!(output, removed, dir = %dir.display(), "removed unfinished Parquet files of an earlier run");
    }
    Ok(())
}

/// Removes the files in `dir` and its partition folders whose names `pick`
/// picks; returns how many.
fn remove_files(dir: &Path, pick: impl Fn(&str) -> bool) -> Result<usize, String> {
    let mut removed = 0;
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder)
            .map_err(|e| format!("cannot list {}: {e}", folder.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", folder.display()))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let kind = entry
                .file_type()
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if kind.is_dir() && name.contains('=') {
                folders.push(path);
            } else if kind.is_file() && pick(&name) {
                std::fs::remove_file(&path)
                    .map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// The number of a complete file `part-RUN-SEQ.parquet` of run `run`.
fn file_seq(name: &str, run: &str) -> Option<u64> {
    name.strip_prefix("part-")?
        .strip_prefix(run)?
        .strip_prefix('-')?
        .strip_suffix(".parquet")?
        .parse()
        .ok()
}
