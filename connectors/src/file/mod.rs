//! Files: CSV and JSON lines, read and written; `-` is stdin or stdout.

pub(crate) mod chunk;
pub use chunk::DEFAULT_MAX_EVENT_BYTES;
pub mod csv;
pub mod jsonl;

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::path::PathBuf;
use std::sync::Arc;

use iotql_engine::arrow::array::{ArrayRef, StringArray};
use iotql_engine::arrow::datatypes::{DataType, Field, Schema};
use iotql_engine::arrow::error::ArrowError;
use iotql_engine::arrow::record_batch::RecordBatch;

/// How datetimes are written: RFC 3339, UTC, milliseconds, `Z`.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// A file to read, stdin, or bytes already in memory (a job test's inline
/// events, read by the same decoders as a file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Path(PathBuf),
    Stdin,
    Memory(Arc<[u8]>),
}

impl Input {
    pub fn parse(path: &str) -> Input {
        if path == "-" {
            Input::Stdin
        } else {
            Input::Path(PathBuf::from(path))
        }
    }

    /// The reader and the total size when known.
    pub(crate) fn open(&self) -> Result<(Box<dyn BufRead + Send>, Option<u64>), String> {
        match self {
            Input::Stdin => Ok((
                Box::new(BufReader::with_capacity(1 << 20, std::io::stdin())),
                None,
            )),
            Input::Path(p) => {
                let f = File::open(p).map_err(|e| format!("cannot open {}: {e}", p.display()))?;
                let len = f.metadata().ok().map(|m| m.len());
                Ok((Box::new(BufReader::with_capacity(1 << 20, f)), len))
            }
            Input::Memory(bytes) => Ok((
                Box::new(std::io::Cursor::new(bytes.clone())),
                Some(bytes.len() as u64),
            )),
        }
    }
}

impl Input {
    /// The reader from byte `offset` on (a job resuming from a checkpoint).
    pub(crate) fn open_at(&self, offset: u64) -> Result<Box<dyn BufRead + Send>, String> {
        match self {
            Input::Stdin => Err("stdin cannot be read from a position".into()),
            Input::Path(p) => {
                let mut f =
                    File::open(p).map_err(|e| format!("cannot open {}: {e}", p.display()))?;
                std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(offset))
                    .map_err(|e| format!("cannot seek in {}: {e}", p.display()))?;
                Ok(Box::new(BufReader::with_capacity(1 << 20, f)))
            }
            Input::Memory(bytes) => {
                let mut cursor = std::io::Cursor::new(bytes.clone());
                cursor.set_position(offset);
                Ok(Box::new(cursor))
            }
        }
    }

    /// The input again, when it can be reopened at a position.
    pub(crate) fn reopenable(&self) -> Option<Input> {
        (!matches!(self, Input::Stdin)).then(|| self.clone())
    }
}

/// A file to write (its folder created if missing), or stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    Path(PathBuf),
    Stdout,
}

impl OutputTarget {
    pub fn parse(path: &str) -> OutputTarget {
        if path == "-" {
            OutputTarget::Stdout
        } else {
            OutputTarget::Path(PathBuf::from(path))
        }
    }

    pub(crate) fn create(&self) -> Result<OutFile, String> {
        match self {
            OutputTarget::Stdout => Ok(OutFile {
                out: Out::Stdout(PipeTolerant {
                    inner: std::io::stdout(),
                    closed: false,
                }),
                position: 0,
            }),
            OutputTarget::Path(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                let f =
                    File::create(p).map_err(|e| format!("cannot create {}: {e}", p.display()))?;
                Ok(OutFile {
                    out: Out::File(f),
                    position: 0,
                })
            }
        }
    }

    /// The file of an earlier run cut back to `len` bytes (what a checkpoint
    /// recorded), written on from there: a resumed job's rows follow the
    /// rows the checkpoint covers, and rows written after it are gone.
    pub(crate) fn reopen_at(&self, len: u64) -> Result<OutFile, String> {
        let OutputTarget::Path(p) = self else {
            return Err("stdout cannot be rolled back to a checkpoint".into());
        };
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .map_err(|e| format!("cannot reopen {} to resume: {e}", p.display()))?;
        let size = f
            .metadata()
            .map_err(|e| format!("{}: {e}", p.display()))?
            .len();
        if size < len {
            return Err(format!(
                "{} has {size} bytes, fewer than the {len} its checkpoint recorded: it was changed since; start fresh",
                p.display()
            ));
        }
        f.set_len(len)
            .map_err(|e| format!("cannot cut {} back to {len} bytes: {e}", p.display()))?;
        let mut f = f;
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(len))
            .map_err(|e| format!("cannot seek in {}: {e}", p.display()))?;
        Ok(OutFile {
            out: Out::File(f),
            position: len,
        })
    }
}

/// An output file or stdout, knowing how many bytes it holds, for
/// checkpoints.
pub(crate) struct OutFile {
    out: Out,
    position: u64,
}

enum Out {
    Stdout(PipeTolerant),
    File(File),
}

impl OutFile {
    /// Makes what was written durable (fsync) and returns the file's
    /// length: the state a checkpoint records. `None` for stdout, which
    /// cannot be rolled back.
    pub(crate) fn checkpoint(&mut self) -> std::io::Result<Option<u64>> {
        match &mut self.out {
            Out::Stdout(s) => s.flush().map(|()| None),
            Out::File(f) => f.sync_data().map(|()| Some(self.position)),
        }
    }
}

impl Write for OutFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = match &mut self.out {
            Out::Stdout(s) => s.write(buf)?,
            Out::File(f) => f.write(buf)?,
        };
        self.position += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.out {
            Out::Stdout(s) => s.flush(),
            Out::File(f) => f.flush(),
        }
    }
}

/// Flushes a file output's buffer and makes it durable; the checkpoint
/// state (its length), or `None` for stdout.
pub(crate) fn checkpoint_buffered(
    out: &mut std::io::BufWriter<OutFile>,
) -> std::io::Result<Option<Vec<u8>>> {
    out.flush()?;
    Ok(out.get_mut().checkpoint()?.map(file_state))
}

/// The checkpoint state of a file output: its length.
fn file_state(len: u64) -> Vec<u8> {
    [&b"L1"[..], &len.to_le_bytes()].concat()
}

/// What [`file_state`] encoded.
pub(crate) fn file_state_len(state: &[u8]) -> Result<u64, String> {
    state
        .strip_prefix(&b"L1"[..])
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| "the checkpoint's state of this output is not a file length (the output's connector changed?)".to_string())
}

/// Stdout that treats a closed pipe (`iotql run ... | head`) as the reader
/// having had enough: later writes are discarded, not errors.
struct PipeTolerant {
    inner: std::io::Stdout,
    closed: bool,
}

impl Write for PipeTolerant {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        match self.inner.write(buf) {
            Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(buf.len())
            }
            other => other,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.closed {
            return Ok(());
        }
        match self.inner.flush() {
            Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            other => other,
        }
    }
}

/// The indices of `schema`'s fields that the job reads (names in lower
/// case), or `None` to read them all. At least one column is kept, so that
/// batches still count their rows.
pub(crate) fn projection(
    schema: &Schema,
    columns: Option<&std::collections::BTreeSet<String>>,
) -> Option<Vec<usize>> {
    let columns = columns?;
    let mut keep: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| columns.contains(&schema.field(i).name().to_ascii_lowercase()))
        .collect();
    if keep.len() == schema.fields().len() {
        return None;
    }
    if keep.is_empty() {
        keep.push(0);
    }
    Some(keep)
}

/// An inferred schema with dates and times read as text: ASA reads them
/// as strings until a CAST or TIMESTAMP BY says otherwise.
pub(crate) fn text_types(schema: &Schema) -> Schema {
    Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                let t = match f.data_type() {
                    DataType::Date32
                    | DataType::Date64
                    | DataType::Timestamp(..)
                    | DataType::Time32(_)
                    | DataType::Time64(_)
                    | DataType::Null => DataType::Utf8,
                    other => other.clone(),
                };
                Field::new(f.name(), t, true)
            })
            .collect::<Vec<_>>(),
    )
}

/// `batch` with record and array columns turned into JSON text, for formats
/// that hold only scalars (CSV).
pub(crate) fn nested_as_json(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let nested = |t: &DataType| {
        matches!(
            t,
            DataType::Struct(_)
                | DataType::List(_)
                | DataType::LargeList(_)
                | DataType::Map(..)
                | DataType::FixedSizeList(..)
        )
    };
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| nested(f.data_type())) {
        return Ok(batch.clone());
    }
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        if nested(f.data_type()) {
            let one = RecordBatch::try_new(
                Arc::new(Schema::new(vec![f.as_ref().clone()])),
                vec![c.clone()],
            )?;
            let mut buf = Vec::new();
            {
                let mut w = iotql_engine::arrow::json::ArrayWriter::new(&mut buf);
                w.write(&one)?;
                w.finish()?;
            }
            let rows: Vec<serde_json::Value> =
                serde_json::from_slice(&buf).map_err(|e| ArrowError::JsonError(e.to_string()))?;
            let texts: StringArray = rows
                .iter()
                .map(|r| {
                    r.get(f.name())
                        .filter(|v| !v.is_null())
                        .map(|v| v.to_string())
                })
                .collect();
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            columns.push(Arc::new(texts));
        } else {
            fields.push(f.as_ref().clone());
            columns.push(c.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}
