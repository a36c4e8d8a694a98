//! JSON lines: one JSON object per line. Objects become records (Arrow
//! structs) and arrays become Arrow lists, so record paths such as
//! `e.gps.lat` work. Types are inferred from the first lines.

use std::io::{BufRead, BufReader, BufWriter, Cursor, Read, Write};
use std::sync::Arc;

use iotql_engine::arrow::datatypes::SchemaRef;
use iotql_engine::arrow::error::ArrowError;
use iotql_engine::arrow::json::reader::{ReaderBuilder, infer_json_schema};
use iotql_engine::arrow::json::writer::{LineDelimited, Writer, WriterBuilder};
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::error::EngineError;
use iotql_engine::io::{Sink, Source, SourceBatch};

use super::chunk::{ChunkConfig, ChunkReader, RecordDecoder};
use super::{Input, OutputTarget, TIMESTAMP_FORMAT, text_types};

const INFER_LINES: usize = 1000;

pub(crate) struct JsonDecoder {
    schema: SchemaRef,
}

impl RecordDecoder for JsonDecoder {
    fn decode(&mut self, records: &[u8]) -> Result<Option<RecordBatch>, ArrowError> {
        let mut decoder = ReaderBuilder::new(self.schema.clone())
            .with_batch_size(records.len().max(1))
            .build_decoder()?;
        let mut rest = records;
        while !rest.is_empty() {
            let n = decoder.decode(rest)?;
            if n == 0 {
                break;
            }
            rest = &rest[n..];
        }
        decoder.flush()
    }
}

pub struct JsonLinesSource {
    reader: ChunkReader<Box<dyn BufRead + Send>, JsonDecoder>,
}

impl std::fmt::Debug for JsonLinesSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesSource").finish_non_exhaustive()
    }
}

impl JsonLinesSource {
    pub fn open(
        name: &str,
        input: &Input,
        schema: Option<SchemaRef>,
        batch_size: usize,
    ) -> Result<Self, EngineError> {
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
            None => {
                // Lines that are not JSON objects are left for the decoder
                // to dead-letter; inference looks at the others.
                let valid: Vec<u8> = head
                    .split(|&b| b == b'\n')
                    .filter(|l| {
                        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(l)
                            .is_ok()
                    })
                    .flat_map(|l| l.iter().copied().chain(std::iter::once(b'\n')))
                    .collect();
                let (inferred, _) = infer_json_schema(Cursor::new(valid), Some(INFER_LINES))
                    .map_err(|e| source_error(format!("cannot infer the schema: {e}")))?;
                if inferred.fields().is_empty() {
                    return Err(source_error(
                        "no JSON object in the first lines to learn the columns from".into(),
                    ));
                }
                Arc::new(text_types(&inferred))
            }
        };
        let body: Box<dyn BufRead + Send> =
            Box::new(BufReader::new(Cursor::new(head).chain(reader)));
        let decoder = JsonDecoder {
            schema: schema.clone(),
        };
        Ok(JsonLinesSource {
            reader: ChunkReader::new(
                ChunkConfig {
                    input: name.to_string(),
                    schema,
                    first_line: 1,
                    total,
                    batch_size,
                    quoted: false,
                },
                body,
                decoder,
            ),
        })
    }
}

impl Source for JsonLinesSource {
    fn schema(&self) -> SchemaRef {
        self.reader.schema()
    }

    fn next_batch(&mut self) -> Result<Option<SourceBatch>, EngineError> {
        self.reader.next_batch()
    }

    fn progress(&self) -> (u64, Option<u64>) {
        self.reader.progress()
    }
}

/// Writes rows as JSON lines with the SELECT's column names; NULLs are
/// written as `null`, datetimes as RFC 3339 UTC strings.
pub struct JsonLinesSink {
    name: String,
    target: OutputTarget,
    writer: Option<Writer<BufWriter<Box<dyn Write + Send>>, LineDelimited>>,
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
        let out = self.target.create().map_err(|e| self.error(e))?;
        self.writer = Some(
            WriterBuilder::new()
                .with_explicit_nulls(true)
                .with_timestamp_tz_format(TIMESTAMP_FORMAT.into())
                .with_timestamp_format(TIMESTAMP_FORMAT.into())
                .build::<_, LineDelimited>(BufWriter::with_capacity(1 << 16, out)),
        );
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

    fn finish(&mut self) -> Result<(), EngineError> {
        if let Some(mut w) = self.writer.take() {
            w.finish().map_err(|e| self.error(e))?;
            w.into_inner().flush().map_err(|e| self.error(e))?;
        }
        Ok(())
    }
}
