//! JSON lines: one JSON object per line. Objects become records (Arrow
//! structs) and arrays become Arrow lists, so record paths such as
//! `e.gps.lat` work. Types are inferred from the first lines.

use std::io::{BufRead, BufReader, BufWriter, Cursor, Read, Write};
use std::sync::Arc;

use iotql_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use iotql_engine::arrow::error::ArrowError;
use iotql_engine::arrow::json::reader::{ReaderBuilder, infer_json_schema};
use iotql_engine::arrow::json::writer::{LineDelimited, Writer, WriterBuilder};
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::error::EngineError;
use iotql_engine::io::{Sink, Source};

use super::chunk::{ChunkConfig, ChunkReader, RecordDecoder};
use super::{Input, OutputTarget, TIMESTAMP_FORMAT, text_types};

const INFER_LINES: usize = 1000;

pub(crate) struct JsonDecoder {
    pub(crate) schema: SchemaRef,
}

impl RecordDecoder for JsonDecoder {
    fn decode(&mut self, records: &[u8], count: usize) -> Result<Option<RecordBatch>, ArrowError> {
        let mut decoder = ReaderBuilder::new(self.schema.clone())
            // A text column takes numbers and booleans as their text: ASA
            // types values, not columns.
            .with_coerce_primitive(true)
            .with_batch_size(count.max(1))
            .build_decoder()?;
        let mut rest = records;
        while !rest.is_empty() {
            let n = decoder.decode(rest)?;
            if n == 0 {
                break;
            }
            rest = &rest[n..];
        }
        let batch = decoder.flush()?;
        if let Some(b) = &batch {
            super::chunk::check_finite(b)?;
        }
        if let Some(key) = super::chunk::duplicate_key(records) {
            return Err(ArrowError::JsonError(format!("duplicate key `{key}`")));
        }
        Ok(batch)
    }
}

/// The schema of the JSON objects among `head`'s lines: each line's types,
/// merged; a field keeps the type it first had (integers widen to floats),
/// so that a line whose value does not fit is refused later, on its own.
/// Fields keep the order in which they first appear. Lines that are not
/// objects are left for the decoder to dead-letter.
pub(crate) fn infer(head: &[u8]) -> Result<Schema, String> {
    let mut fields: Vec<Field> = Vec::new();
    for line in head.split(|&b| b == b'\n') {
        let Ok(object) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line)
        else {
            continue;
        };
        let Ok((schema, _)) = infer_json_schema(Cursor::new(line), Some(1)) else {
            continue;
        };
        for key in object.keys() {
            let Ok(field) = schema.field_with_name(key) else {
                continue;
            };
            match fields.iter_mut().find(|f| f.name() == key) {
                None => fields.push(field.clone()),
                Some(existing) => {
                    *existing = Field::new(
                        key,
                        merge_types(existing.data_type(), field.data_type()),
                        true,
                    );
                }
            }
        }
    }
    if fields.is_empty() {
        return Err("no JSON object in the first lines to learn the columns from: declare the input's schema".into());
    }
    Ok(Schema::new(fields))
}

/// The type that holds values of both `a` (seen first) and `b`: records
/// merge field by field, integers widen to floats, NULL gives way; any
/// other conflict keeps `a`.
fn merge_types(a: &DataType, b: &DataType) -> DataType {
    match (a, b) {
        (DataType::Null, other) | (other, DataType::Null) => other.clone(),
        (DataType::Int64, DataType::Float64) | (DataType::Float64, DataType::Int64) => {
            DataType::Float64
        }
        (DataType::Struct(fa), DataType::Struct(fb)) => {
            let mut fields: Vec<Field> = fa.iter().map(|f| f.as_ref().clone()).collect();
            for f in fb.iter() {
                match fields.iter_mut().find(|x| x.name() == f.name()) {
                    Some(x) => {
                        *x = Field::new(f.name(), merge_types(x.data_type(), f.data_type()), true)
                    }
                    None => fields.push(f.as_ref().clone()),
                }
            }
            DataType::Struct(fields.into())
        }
        (DataType::List(ea), DataType::List(eb)) => {
            let item = merge_types(ea.data_type(), eb.data_type());
            DataType::List(Arc::new(Field::new(ea.name(), item, true)))
        }
        (a, _) => a.clone(),
    }
}

/// Opens a JSON-lines `input` (a file or stdin); `schema` is the declared
/// one, if any.
pub fn open_source(
    name: &str,
    input: &Input,
    schema: Option<SchemaRef>,
    batch_size: usize,
    columns: Option<&std::collections::BTreeSet<String>>,
) -> Result<Box<dyn Source>, EngineError> {
    let source_error = |message: String| EngineError::Source {
        input: name.to_string(),
        message,
    };
    let (mut reader, total) = input.open().map_err(&source_error)?;
    let mut head = Vec::new();
    for _ in 0..INFER_LINES {
        if reader
            .read_until(b'\n', &mut head)
            .map_err(|e| source_error(e.to_string()))?
            == 0
        {
            break;
        }
    }
    let schema = match schema {
        Some(s) => s,
        None => Arc::new(text_types(&infer(&head).map_err(source_error)?)),
    };
    // Fields the job does not read are skipped by the decoder.
    let schema = match super::projection(&schema, columns) {
        Some(p) => Arc::new(
            schema
                .project(&p)
                .map_err(|e| source_error(e.to_string()))?,
        ),
        None => schema,
    };
    let body: Box<dyn BufRead + Send> = Box::new(BufReader::new(Cursor::new(head).chain(reader)));
    let decoder = JsonDecoder {
        schema: schema.clone(),
    };
    Ok(Box::new(ChunkReader::new(
        ChunkConfig {
            input: name.to_string(),
            schema,
            first_line: 1,
            total,
            batch_size,
            quoted: false,
            reopen: input.reopenable(),
            body_start: 0,
            max_event_bytes: super::chunk::DEFAULT_MAX_EVENT_BYTES,
        },
        body,
        decoder,
    )))
}

/// `batch`'s rows as JSON lines, written as the JSON-lines sink writes
/// them: one object per row (a message of a broker output).
pub fn json_lines(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let mut writer = json_writer(Vec::new());
    writer.write(batch)?;
    writer.finish()?;
    Ok(writer.into_inner())
}

/// Row `row` of `batch` as one line of JSON (no newline), for a dead
/// letter's `raw`.
pub(crate) fn row_json(batch: &RecordBatch, row: usize) -> String {
    json_lines(&batch.slice(row, 1))
        .map(|line| String::from_utf8_lossy(&line).trim_end().to_string())
        .unwrap_or_default()
}

fn json_writer<W: Write>(out: W) -> Writer<W, LineDelimited> {
    WriterBuilder::new()
        .with_explicit_nulls(true)
        .with_timestamp_tz_format(TIMESTAMP_FORMAT.into())
        .with_timestamp_format(TIMESTAMP_FORMAT.into())
        .build::<_, LineDelimited>(out)
}

/// Writes rows as JSON lines with the SELECT's column names; NULLs are
/// written as `null`, datetimes as RFC 3339 UTC strings.
pub struct JsonLinesSink {
    name: String,
    target: OutputTarget,
    writer: Option<Writer<BufWriter<super::OutFile>, LineDelimited>>,
    /// The length to cut the file back to and write on from, when the job
    /// resumes from a checkpoint.
    resume: Option<u64>,
}

impl std::fmt::Debug for JsonLinesSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesSink")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl JsonLinesSink {
    pub fn new(name: &str, target: OutputTarget) -> Self {
        JsonLinesSink {
            name: name.to_string(),
            target,
            writer: None,
            resume: None,
        }
    }

    fn error(&self, message: impl ToString) -> EngineError {
        EngineError::Sink {
            output: self.name.clone(),
            message: message.to_string(),
        }
    }
}

impl Sink for JsonLinesSink {
    fn start(&mut self, _schema: &SchemaRef) -> Result<(), EngineError> {
        let out = match self.resume {
            Some(len) => self.target.reopen_at(len),
            None => self.target.create(),
        }
        .map_err(|e| self.error(e))?;
        self.writer = Some(json_writer(BufWriter::with_capacity(1 << 16, out)));
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<Option<Vec<u8>>, EngineError> {
        let Some(w) = self.writer.as_mut() else {
            return Ok(None);
        };
        super::checkpoint_buffered(w.get_mut()).map_err(|e| self.error(e))
    }

    fn recover(&mut self, state: &[u8]) -> Result<(), EngineError> {
        self.resume = Some(super::file_state_len(state).map_err(|e| self.error(e))?);
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        let name = self.name.clone();
        match self.writer.as_mut() {
            Some(w) => w.write(batch).map_err(|e| EngineError::Sink {
                output: name,
                message: e.to_string(),
            }),
            None => Err(self.error("written before it was started")),
        }
    }

    /// Writes `payload` and a newline through the same buffer as the rows
    /// (the JSON-lines writer has written every row it was given), so the
    /// order of rows and raw lines is kept.
    fn write_raw(&mut self, payload: &[u8]) -> Result<(), EngineError> {
        let w = match self.writer.as_mut() {
            Some(w) => w.get_mut(),
            None => return Err(self.error("written before it was started")),
        };
        let written = w.write_all(payload).and_then(|()| w.write_all(b"\n"));
        written.map_err(|e| self.error(e))
    }

    fn flush(&mut self) -> Result<(), EngineError> {
        match self.writer.as_mut() {
            Some(w) => w.get_mut().flush().map_err(|e| self.error(e)),
            None => Ok(()),
        }
    }

    fn finish(&mut self) -> Result<(), EngineError> {
        if let Some(mut w) = self.writer.take() {
            w.finish().map_err(|e| self.error(e))?;
            w.into_inner().flush().map_err(|e| self.error(e))?;
        }
        Ok(())
    }
}
