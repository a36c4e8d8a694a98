//! Reading a line-oriented file (CSV, JSON lines) in chunks of whole
//! records, decoding each chunk with arrow's vectorised decoder, and
//! isolating bad records: when a chunk fails to decode, its records are
//! decoded one by one, the good ones kept and the bad ones dead-lettered.

use std::io::{BufRead, ErrorKind};
use std::sync::Arc;

use iotql_engine::arrow::array::UInt64Array;
use iotql_engine::arrow::compute::concat_batches;
use iotql_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use iotql_engine::arrow::error::ArrowError;
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::error::EngineError;
use iotql_engine::io::SourceBatch;
use iotql_engine::operator::DeadLetter;
use iotql_engine::time::POSITION;

/// Decodes a run of whole records (bytes ending in a newline) into a batch.
pub(crate) trait RecordDecoder: Send {
    fn decode(&mut self, records: &[u8]) -> Result<Option<RecordBatch>, ArrowError>;
}

/// How a [`ChunkReader`] reads.
pub(crate) struct ChunkConfig {
    /// The input's name, for dead letters.
    pub input: String,
    pub schema: SchemaRef,
    /// The line number of the first record.
    pub first_line: u64,
    /// The size of the input, when known.
    pub total: Option<u64>,
    pub batch_size: usize,
    /// Whether double quotes group fields that may span lines (CSV).
    pub quoted: bool,
}

/// Splits a reader into chunks of whole records, `batch_size` at a time.
pub(crate) struct ChunkReader<R, D> {
    input: String,
    reader: R,
    decoder: D,
    schema: SchemaRef,
    with_position: SchemaRef,
    batch_size: usize,
    /// The line number of the next record.
    next_line: u64,
    bytes_read: u64,
    total: Option<u64>,
    /// Whether double quotes group fields that may span lines (CSV).
    quoted: bool,
    done: bool,
}

impl<R: BufRead + Send, D: RecordDecoder> ChunkReader<R, D> {
    pub(crate) fn new(config: ChunkConfig, reader: R, decoder: D) -> Self {
        let mut fields: Vec<Field> = config
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(POSITION, DataType::UInt64, false));
        ChunkReader {
            input: config.input,
            reader,
            decoder,
            with_position: Arc::new(Schema::new(fields)),
            schema: config.schema,
            batch_size: config.batch_size.max(1),
            next_line: config.first_line,
            bytes_read: 0,
            total: config.total,
            quoted: config.quoted,
            done: false,
        }
    }

    pub(crate) fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub(crate) fn progress(&self) -> (u64, Option<u64>) {
        (self.bytes_read, self.total)
    }

    /// Reads up to `batch_size` records: their bytes and the line each starts on.
    fn read_records(&mut self) -> Result<(Vec<u8>, Vec<u64>), EngineError> {
        let mut buf = Vec::new();
        let mut starts = Vec::new();
        while starts.len() < self.batch_size {
            let start = buf.len();
            let line = self.next_line;
            // A record is one line, or several while a quoted field is open.
            loop {
                let before = buf.len();
                let n = match self.reader.read_until(b'\n', &mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(EngineError::Source {
                            input: self.input.clone(),
                            message: e.to_string(),
                        });
                    }
                };
                self.bytes_read += n as u64;
                if n == 0 {
                    self.done = true;
                    break;
                }
                self.next_line += 1;
                if !buf.ends_with(b"\n") {
                    buf.push(b'\n');
                }
                let open_quotes =
                    self.quoted && buf[start..].iter().filter(|&&b| b == b'"').count() % 2 == 1;
                if !open_quotes || before == buf.len() {
                    break;
                }
            }
            let record = &buf[start..];
            if record.iter().all(|b| b.is_ascii_whitespace()) {
                // Blank lines are not records.
                buf.truncate(start);
                if self.done {
                    break;
                }
                continue;
            }
            starts.push(line);
            if self.done {
                break;
            }
        }
        Ok((buf, starts))
    }

    /// Decodes `buf`; on failure, record by record.
    fn decode(
        &mut self,
        buf: &[u8],
        lines: &[u64],
    ) -> (Option<RecordBatch>, Vec<DeadLetter>, Vec<u64>) {
        if let Ok(batch) = self.decoder.decode(buf) {
            if batch.as_ref().map_or(0, RecordBatch::num_rows) == lines.len() {
                return (batch, Vec::new(), lines.to_vec());
            }
        }
        let mut good = Vec::new();
        let mut good_lines = Vec::new();
        let mut dead = Vec::new();
        for (i, record) in split_records(buf, lines.len(), self.quoted)
            .into_iter()
            .enumerate()
        {
            match self.decoder.decode(record) {
                Ok(Some(b)) if b.num_rows() == 1 => {
                    good.push(b);
                    good_lines.push(lines[i]);
                }
                Ok(_) => dead.push(self.dead(record, lines[i], "the record holds no event".into())),
                Err(e) => {
                    dead.push(self.dead(record, lines[i], cleanup(&e.to_string(), &self.schema)))
                }
            }
        }
        let batch = if good.is_empty() {
            None
        } else {
            concat_batches(&self.schema, &good).ok()
        };
        (batch, dead, good_lines)
    }

    fn dead(&self, record: &[u8], line: u64, reason: String) -> DeadLetter {
        DeadLetter {
            input: self.input.clone(),
            position: format!("line {line}"),
            reason,
            raw: String::from_utf8_lossy(record).trim_end().to_string(),
        }
    }

    pub(crate) fn next_batch(&mut self) -> Result<Option<SourceBatch>, EngineError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let (buf, lines) = self.read_records()?;
            if lines.is_empty() {
                continue;
            }
            let (batch, dead_letters, good_lines) = self.decode(&buf, &lines);
            let batch = match batch {
                Some(b) => {
                    let mut columns = b.columns().to_vec();
                    columns.push(Arc::new(UInt64Array::from(good_lines)));
                    Some(RecordBatch::try_new(self.with_position.clone(), columns)?)
                }
                None => None,
            };
            return Ok(Some(SourceBatch {
                batch,
                dead_letters,
            }));
        }
    }
}

/// arrow's messages, reworded for one record: its line numbers and row
/// dumps count within the chunk, not the file, so they are left out.
fn cleanup(message: &str, schema: &SchemaRef) -> String {
    let m = message
        .trim_start_matches("Parser error: ")
        .trim_start_matches("Json error: ")
        .trim_start_matches("Csv error: ");
    if let Some(rest) = m.strip_prefix("incorrect number of fields for line ") {
        if let Some((_, counts)) = rest.split_once(", ") {
            // "expected 3 got 2"
            let words: Vec<&str> = counts.split_whitespace().collect();
            if let ["expected", want, "got", have] = words.as_slice() {
                return format!("expected {want} fields, found {have}");
            }
        }
    }
    if let Some(rest) = m.strip_prefix("whilst decoding field '") {
        // "v': expected { got \"x\""
        if let Some((field, detail)) = rest.split_once("': expected ") {
            let (want, got) = detail.split_once(" got ").unwrap_or((detail, "?"));
            let want = match want {
                "{" => "a record",
                "[" => "an array",
                "string" => "text",
                other => other,
            };
            return format!(
                "field `{field}` should be {want} (its type in earlier events), not {got}"
            );
        }
    }
    if let Some(rest) = m.strip_prefix("Error while parsing value ") {
        // "'hot' as type 'Float64' for column 2 at line 0. Row data: ..."
        let parts: Vec<&str> = rest.splitn(2, " as type ").collect();
        if let [value, tail] = parts.as_slice() {
            let ty = tail.split('\'').nth(1).unwrap_or("?");
            let column = tail
                .split("for column ")
                .nth(1)
                .and_then(|c| c.split_whitespace().next())
                .and_then(|c| c.parse::<usize>().ok())
                .and_then(|i| schema.fields().get(i))
                .map_or("?".to_string(), |f| f.name().clone());
            return format!("{value} is not a valid {ty} for column `{column}`");
        }
    }
    m.to_string()
}

/// Splits `buf` into its `count` records.
fn split_records(buf: &[u8], count: usize, quoted: bool) -> Vec<&[u8]> {
    let mut records = Vec::with_capacity(count);
    let mut start = 0;
    let mut in_quotes = false;
    for (i, &b) in buf.iter().enumerate() {
        if quoted && b == b'"' {
            in_quotes = !in_quotes;
        } else if b == b'\n' && !in_quotes {
            let record = &buf[start..=i];
            if !record.iter().all(|b| b.is_ascii_whitespace()) {
                records.push(record);
            }
            start = i + 1;
        }
    }
    records
}
