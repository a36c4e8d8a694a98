//! CSV files: a header row, then one event per record. Empty fields are
//! NULL. Column types are inferred from the first records (integers,
//! floats, booleans; everything else, dates included, stays text) unless
//! the input declares a schema.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, BufWriter, Cursor, Read, Write};
use std::sync::Arc;

use iotql_engine::arrow::array::{AsArray, BooleanArray};
use iotql_engine::arrow::csv::WriterBuilder;
use iotql_engine::arrow::csv::reader::{Format, ReaderBuilder};
use iotql_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use iotql_engine::arrow::error::ArrowError;
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::error::EngineError;
use iotql_engine::io::{Sink, Source};
use regex::Regex;

use super::chunk::{ChunkConfig, ChunkReader, RecordDecoder, field_count};
use super::{Input, OutputTarget, TIMESTAMP_FORMAT, text_types};

/// How many records schema inference looks at.
const INFER_RECORDS: usize = 1000;

pub(crate) struct CsvDecoder {
    /// The schema the source delivers: the file's columns the job reads.
    pub(crate) schema: SchemaRef,
    /// The schema arrow decodes, every column of the file: bit columns as
    /// text, converted afterwards (ASA's bit is 1, 0 or NULL; true and false
    /// are accepted too).
    text_schema: SchemaRef,
    /// Which of the file's columns are decoded.
    projection: Option<Vec<usize>>,
}

impl CsvDecoder {
    pub(crate) fn new(
        file_schema: &SchemaRef,
        projection: Option<Vec<usize>>,
    ) -> Result<Self, ArrowError> {
        let text_schema = Arc::new(Schema::new(
            file_schema
                .fields()
                .iter()
                .map(|f| match f.data_type() {
                    DataType::Boolean => Field::new(f.name(), DataType::Utf8, true),
                    _ => f.as_ref().clone(),
                })
                .collect::<Vec<_>>(),
        ));
        let schema = match &projection {
            Some(p) => Arc::new(file_schema.project(p)?),
            None => file_schema.clone(),
        };
        Ok(CsvDecoder {
            schema,
            text_schema,
            projection,
        })
    }

    /// Empty text fields as NULL, and the bit columns (decoded as text) as
    /// booleans.
    fn bits(&self, batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
        let mut columns = batch.columns().to_vec();
        for c in columns.iter_mut() {
            if let Some(text) = c.as_string_opt::<i32>()
                && text.offsets().windows(2).any(|w| w[0] == w[1])
            {
                let empty: BooleanArray = text.iter().map(|v| Some(v == Some(""))).collect();
                *c = iotql_engine::arrow::compute::nullif(c.as_ref(), &empty)?;
            }
        }
        for (i, f) in self.schema.fields().iter().enumerate() {
            if f.data_type() != &DataType::Boolean {
                continue;
            }
            let text = columns[i].as_string::<i32>();
            let bits = text
                .iter()
                .map(|v| match v.map(str::trim) {
                    None => Ok(None),
                    Some(t) if t == "1" || t.eq_ignore_ascii_case("true") => Ok(Some(true)),
                    Some(t) if t == "0" || t.eq_ignore_ascii_case("false") => Ok(Some(false)),
                    Some(t) => Err(ArrowError::ParseError(format!(
                        "'{t}' is not a valid Boolean for column `{}`",
                        f.name()
                    ))),
                })
                .collect::<Result<BooleanArray, _>>()?;
            columns[i] = Arc::new(bits);
        }
        RecordBatch::try_new(self.schema.clone(), columns)
    }
}

impl RecordDecoder for CsvDecoder {
    fn decode(&mut self, records: &[u8], count: usize) -> Result<Option<RecordBatch>, ArrowError> {
        let mut builder = ReaderBuilder::new(self.text_schema.clone())
            .with_header(false)
            .with_batch_size(count.max(1));
        if let Some(p) = &self.projection {
            builder = builder.with_projection(p.clone());
        }
        let mut decoder = builder.build_decoder();
        let mut rest = records;
        while !rest.is_empty() {
            let n = decoder.decode(rest)?;
            if n == 0 {
                break;
            }
            rest = &rest[n..];
        }
        let batch = decoder.flush()?.map(|b| self.bits(b)).transpose()?;
        if let Some(b) = &batch {
            super::chunk::check_finite(b)?;
        }
        Ok(batch)
    }
}

/// The header and the lines with as many fields as it: ragged lines are the
/// decoder's to dead-letter, not inference's to fail on.
fn well_formed(head: &[u8]) -> Vec<u8> {
    let mut lines = head.split_inclusive(|&b| b == b'\n');
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let width = field_count(header);
    let mut out = header.to_vec();
    for line in lines {
        if field_count(line) == width {
            out.extend_from_slice(line);
        }
    }
    out
}

fn null_regex() -> Result<Regex, EngineError> {
    Regex::new("^$").map_err(|e| EngineError::Internal(e.to_string()))
}

/// Opens a CSV `input` (a file or stdin); `schema` is the declared one, if any.
pub fn open_source(
    name: &str,
    input: &Input,
    schema: Option<SchemaRef>,
    batch_size: usize,
    columns: Option<&BTreeSet<String>>,
) -> Result<Box<dyn Source>, EngineError> {
    let source_error = |message: String| EngineError::Source {
        input: name.to_string(),
        message,
    };
    let (reader, total) = input.open().map_err(source_error)?;
    let mut reader: Box<dyn BufRead + Send> = reader;
    // The header and the first records, read once for inference and kept.
    let mut head = Vec::new();
    for _ in 0..=INFER_RECORDS {
        if reader
            .read_until(b'\n', &mut head)
            .map_err(|e| source_error(e.to_string()))?
            == 0
        {
            break;
        }
    }
    let null = null_regex()?;
    let format = Format::default()
        .with_header(true)
        .with_null_regex(null.clone());
    let schema = match schema {
        Some(s) => s,
        None => {
            let (inferred, _) = format
                .infer_schema(Cursor::new(well_formed(&head)), Some(INFER_RECORDS))
                .map_err(|e| source_error(format!("cannot read the header: {e}")))?;
            Arc::new(text_types(&inferred))
        }
    };
    if head.is_empty() {
        return Err(source_error(
            "the file is empty: a CSV input starts with a header row".into(),
        ));
    }
    // Skip the header.
    let header_end = head
        .iter()
        .position(|&b| b == b'\n')
        .map_or(head.len(), |i| i + 1);
    let body: Box<dyn BufRead + Send> = Box::new(BufReader::new(
        Cursor::new(head[header_end..].to_vec()).chain(reader),
    ));
    let projection = super::projection(&schema, columns);
    let decoder = CsvDecoder::new(&schema, projection).map_err(|e| source_error(e.to_string()))?;
    let schema = decoder.schema.clone();
    Ok(Box::new(ChunkReader::new(
        ChunkConfig {
            input: name.to_string(),
            schema,
            first_line: 2,
            total,
            batch_size,
            quoted: true,
            reopen: input.reopenable(),
            body_start: header_end as u64,
            max_event_bytes: super::chunk::DEFAULT_MAX_EVENT_BYTES,
        },
        body,
        decoder,
    )))
}

/// Writes rows as CSV: a header row of the column names, datetimes as
/// RFC 3339 UTC with milliseconds, NULL as an empty field. Raw messages
/// ([`Sink::write_raw`]) are written as lines of their own, between the rows.
pub struct CsvSink {
    name: String,
    target: OutputTarget,
    /// The file; each write encodes its rows into it with an arrow CSV
    /// writer of its own (which writes out every row it is given), so raw
    /// lines can go through the same buffer in order.
    out: Option<BufWriter<super::OutFile>>,
    /// The length to cut the file back to and write on from, when the job
    /// resumes from a checkpoint.
    resume: Option<u64>,
}

impl CsvSink {
    pub fn new(name: &str, target: OutputTarget) -> Self {
        CsvSink {
            name: name.to_string(),
            target,
            out: None,
            resume: None,
        }
    }

    fn error(&self, message: impl ToString) -> EngineError {
        EngineError::Sink {
            output: self.name.clone(),
            message: message.to_string(),
        }
    }

    /// Encodes `batch` (nested values as JSON text) into the file, with the
    /// header row first when `header`.
    fn encode(&mut self, batch: &RecordBatch, header: bool) -> Result<(), EngineError> {
        let batch = super::nested_as_json(batch).map_err(|e| self.error(e))?;
        let Some(out) = self.out.as_mut() else {
            return Err(self.error("written before it was started"));
        };
        let written = writer(out, header).write(&batch);
        written.map_err(|e| self.error(e))
    }
}

/// arrow's CSV writer as CSV outputs use it.
fn writer<W: Write>(out: W, header: bool) -> iotql_engine::arrow::csv::Writer<W> {
    WriterBuilder::new()
        .with_header(header)
        .with_timestamp_tz_format(TIMESTAMP_FORMAT.into())
        .with_timestamp_format(TIMESTAMP_FORMAT.into())
        .build(out)
}

/// Rows as the text a CSV output writes: the header row, then the rows
/// (the golden cases' expected files are written with it).
pub fn to_text(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<String, ArrowError> {
    let mut out = Vec::new();
    {
        let mut header = writer(&mut out, true);
        header.write(&super::nested_as_json(&RecordBatch::new_empty(
            schema.clone(),
        ))?)?;
    }
    for batch in batches {
        writer(&mut out, false).write(&super::nested_as_json(batch)?)?;
    }
    String::from_utf8(out).map_err(|e| ArrowError::CsvError(e.to_string()))
}

impl Sink for CsvSink {
    fn start(&mut self, schema: &SchemaRef) -> Result<(), EngineError> {
        if let Some(len) = self.resume {
            let out = self.target.reopen_at(len).map_err(|e| self.error(e))?;
            self.out = Some(BufWriter::with_capacity(1 << 16, out));
            return Ok(());
        }
        let out = self.target.create().map_err(|e| self.error(e))?;
        self.out = Some(BufWriter::with_capacity(1 << 16, out));
        // The header, even if no row ever comes.
        self.encode(&RecordBatch::new_empty(schema.clone()), true)
    }

    fn checkpoint(&mut self) -> Result<Option<Vec<u8>>, EngineError> {
        let Some(out) = self.out.as_mut() else {
            return Ok(None);
        };
        super::checkpoint_buffered(out).map_err(|e| self.error(e))
    }

    fn recover(&mut self, state: &[u8]) -> Result<(), EngineError> {
        self.resume = Some(super::file_state_len(state).map_err(|e| self.error(e))?);
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        self.encode(batch, false)
    }

    fn write_raw(&mut self, payload: &[u8]) -> Result<(), EngineError> {
        let Some(out) = self.out.as_mut() else {
            return Err(self.error("written before it was started"));
        };
        let written = out.write_all(payload).and_then(|()| out.write_all(b"\n"));
        written.map_err(|e| self.error(e))
    }

    fn flush(&mut self) -> Result<(), EngineError> {
        match self.out.as_mut() {
            Some(out) => out.flush().map_err(|e| self.error(e)),
            None => Ok(()),
        }
    }

    fn finish(&mut self) -> Result<(), EngineError> {
        if let Some(mut out) = self.out.take() {
            out.flush().map_err(|e| self.error(e))?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for CsvSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvSink")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
