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
use iotql_engine::io::{Source, SourceBatch};
use iotql_engine::operator::DeadLetter;
use iotql_engine::time::POSITION;

/// Decodes a run of whole records (bytes ending in a newline) into a batch.
pub(crate) trait RecordDecoder: Send {
    /// `records` holds `count` records.
    fn decode(&mut self, records: &[u8], count: usize) -> Result<Option<RecordBatch>, ArrowError>;
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
    /// The input, to reopen at a checkpoint's position; `None` when it
    /// cannot be reopened (stdin).
    pub reopen: Option<super::Input>,
    /// The offset in the input of the first record (after a CSV header).
    pub body_start: u64,
}

/// Splits a reader into chunks of whole records, `batch_size` at a time.
///
/// Bytes are read in large blocks; record ends are found with `memchr`
/// (newlines outside double quotes when `quoted`), and a chunk of records is
/// decoded by arrow in one call, straight from the block.
pub(crate) struct ChunkReader<D> {
    input: String,
    reader: Box<dyn BufRead + Send>,
    decoder: D,
    schema: SchemaRef,
    with_position: SchemaRef,
    batch_size: usize,
    /// Read but not yet decoded bytes are `block[start..]`.
    block: Vec<u8>,
    start: usize,
    /// The line number of the record at `start`.
    next_line: u64,
    bytes_read: u64,
    total: Option<u64>,
    quoted: bool,
    eof: bool,
    reopen: Option<super::Input>,
    body_start: u64,
    /// The bytes of records (and blank lines) read into batches so far.
    consumed: u64,
}

/// How many bytes a read asks for.
const BLOCK: usize = 1 << 20;

/// The tag of a file input's resume position: the byte offset of the next
/// record and its line.
const POSITION_TAG: &[u8; 2] = b"F1";

impl<D: RecordDecoder> ChunkReader<D> {
    pub(crate) fn new(config: ChunkConfig, reader: Box<dyn BufRead + Send>, decoder: D) -> Self {
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
            block: Vec::new(),
            start: 0,
            next_line: config.first_line,
            bytes_read: 0,
            total: config.total,
            quoted: config.quoted,
            eof: false,
            reopen: config.reopen,
            body_start: config.body_start,
            consumed: 0,
        }
    }

    /// Where reading resumes after what has been read into batches.
    fn resume_position(&self) -> Option<Vec<u8>> {
        self.reopen.as_ref()?;
        let offset = self.body_start + self.consumed;
        Some(
            [
                &POSITION_TAG[..],
                &offset.to_le_bytes(),
                &self.next_line.to_le_bytes(),
            ]
            .concat(),
        )
    }

    /// Reopens the input at a [`Self::resume_position`] of an earlier run.
    fn seek_to(&mut self, position: &[u8]) -> Result<(), EngineError> {
        let error = |message: String| EngineError::Source {
            input: self.input.clone(),
            message,
        };
        let (offset, line) = match position.strip_prefix(&POSITION_TAG[..]) {
            Some(rest) if rest.len() == 16 => {
                let (offset, line) = rest.split_at(8);
                let number = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
                (number(offset), number(line))
            }
            _ => {
                return Err(error(
                    "the checkpoint's position is not a file position".into(),
                ));
            }
        };
        let Some(input) = &self.reopen else {
            return Err(error("stdin cannot resume from a checkpoint".into()));
        };
        if offset < self.body_start || self.total.is_some_and(|t| offset > t) {
            return Err(error(format!(
                "the checkpoint's position (byte {offset}) is not in the input ({} bytes): the file was replaced or truncated; start fresh",
                self.total.map_or("?".into(), |t| t.to_string())
            )));
        }
        self.reader = input.open_at(offset).map_err(error)?;
        self.block.clear();
        self.start = 0;
        self.eof = false;
        self.next_line = line;
        self.consumed = offset - self.body_start;
        self.bytes_read = offset;
        Ok(())
    }

    /// Reads another block, keeping the unread bytes at the front.
    fn fill(&mut self) -> Result<(), EngineError> {
        if self.start > 0 {
            self.block.drain(..self.start);
            self.start = 0;
        }
        let before = self.block.len();
        self.block.resize(before + BLOCK, 0);
        let n = loop {
            match self.reader.read(&mut self.block[before..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.block.truncate(before);
                    return Err(EngineError::Source {
                        input: self.input.clone(),
                        message: e.to_string(),
                    });
                }
            }
        };
        self.block.truncate(before + n);
        self.bytes_read += n as u64;
        if n == 0 {
            self.eof = true;
            if self.block.last().is_some_and(|&b| b != b'\n') {
                self.block.push(b'\n');
            }
        }
        Ok(())
    }

    /// The next `batch_size` records: their end offsets in `block` (after
    /// the newline) and the line each starts on. Blank lines are skipped.
    fn scan(&mut self) -> Result<Vec<(usize, usize, u64)>, EngineError> {
        let mut records = Vec::with_capacity(self.batch_size.min(65_536));
        let mut at = self.start;
        let mut line = self.next_line;
        loop {
            while records.len() < self.batch_size {
                let Some(end) = self.record_end(at) else {
                    break;
                };
                let record = &self.block[at..end];
                let lines_in_record = if self.quoted {
                    memchr::memchr_iter(b'\n', record).count() as u64
                } else {
                    1
                };
                if !record.iter().all(|b| b.is_ascii_whitespace()) {
                    records.push((at, end, line));
                }
                line += lines_in_record;
                at = end;
            }
            if records.len() >= self.batch_size || self.eof {
                break;
            }
            // Keep what was scanned: rebase offsets after the block moves.
            let shift = self.start;
            self.fill()?;
            for r in records.iter_mut() {
                r.0 -= shift;
                r.1 -= shift;
            }
            at -= shift;
        }
        Ok(records)
    }

    /// The end (after its newline) of the record starting at `at`, if the
    /// block holds all of it.
    fn record_end(&self, at: usize) -> Option<usize> {
        let rest = &self.block[at..];
        if !self.quoted {
            return memchr::memchr(b'\n', rest).map(|i| at + i + 1);
        }
        let mut in_quotes = false;
        let mut from = 0;
        loop {
            let i = from + memchr::memchr2(b'\n', b'"', &rest[from..])?;
            if rest[i] == b'"' {
                in_quotes = !in_quotes;
            } else if !in_quotes {
                return Some(at + i + 1);
            }
            from = i + 1;
        }
    }

    /// Decodes the records; on failure, record by record.
    fn decode(
        &mut self,
        records: &[(usize, usize, u64)],
    ) -> (Option<RecordBatch>, Vec<DeadLetter>, Vec<u64>) {
        let (input, schema, quoted) = (&self.input, &self.schema, self.quoted);
        decode_records(
            &mut self.decoder,
            schema,
            quoted,
            &self.block,
            records,
            |record, line, reason| DeadLetter {
                input: input.clone(),
                position: format!("line {line}"),
                reason,
                raw: String::from_utf8_lossy(record).trim_end().to_string(),
            },
        )
    }

    fn read_batch(&mut self) -> Result<Option<SourceBatch>, EngineError> {
        let records = self.scan()?;
        let Some(&(_, end, _)) = records.last() else {
            if self.eof {
                return Ok(None);
            }
            return Ok(Some(SourceBatch::default()));
        };
        let (batch, dead_letters, good_lines) = self.decode(&records);
        // Past the last record, and any blank lines before the next one.
        let consumed = &self.block[self.start..end];
        self.next_line += memchr::memchr_iter(b'\n', consumed).count() as u64;
        self.consumed += consumed.len() as u64;
        self.start = end;
        let batch = match batch {
            Some(b) => {
                let mut columns = b.columns().to_vec();
                columns.push(Arc::new(UInt64Array::from(good_lines)));
                Some(RecordBatch::try_new(self.with_position.clone(), columns)?)
            }
            None => None,
        };
        Ok(Some(SourceBatch {
            batch,
            dead_letters,
            resume: self.resume_position(),
            ..Default::default()
        }))
    }
}

/// Decodes `records` (start, end, position: slices of `buffer`, each whole
/// records ending in a newline) in one call; when that fails, record by
/// record, keeping the good ones and making `dead` letters of the others.
/// Returns the batch, the dead letters and the positions of the rows kept.
pub(crate) fn decode_records<D: RecordDecoder + ?Sized, P: Copy>(
    decoder: &mut D,
    schema: &SchemaRef,
    quoted: bool,
    buffer: &[u8],
    records: &[(usize, usize, P)],
    dead: impl Fn(&[u8], P, String) -> DeadLetter,
) -> (Option<RecordBatch>, Vec<DeadLetter>, Vec<P>) {
    let Some((first, last)) = records.first().zip(records.last()) else {
        return (None, Vec::new(), Vec::new());
    };
    let positions: Vec<P> = records.iter().map(|r| r.2).collect();
    // Blank lines between records make the slice hold more than the records.
    let contiguous = records.windows(2).all(|w| w[0].1 == w[1].0);
    if contiguous
        && let Ok(batch) = decoder.decode(&buffer[first.0..last.1], records.len())
        && batch.as_ref().map_or(0, RecordBatch::num_rows) == records.len()
    {
        return (batch, Vec::new(), positions);
    }
    let mut good = Vec::new();
    let mut good_positions = Vec::new();
    let mut letters = Vec::new();
    for &(start, end, position) in records {
        let record = &buffer[start..end];
        match decoder.decode(record, 1) {
            Ok(Some(b)) if b.num_rows() == 1 => {
                good.push(b);
                good_positions.push(position);
            }
            Ok(_) => letters.push(dead(record, position, "the record holds no event".into())),
            Err(e) => {
                let message = e.to_string();
                let reason = if quoted && message.contains("incorrect number of fields") {
                    // arrow's count is not always the record's ("more than 3").
                    let text = String::from_utf8_lossy(record);
                    let fields = field_count(text.trim_end_matches(['\n', '\r']).as_bytes());
                    format!("expected {} fields, found {fields}", schema.fields().len())
                } else {
                    cleanup(&message, schema)
                };
                letters.push(dead(record, position, reason))
            }
        }
    }
    let batch = if good.is_empty() {
        None
    } else {
        concat_batches(schema, &good).ok()
    };
    (batch, letters, good_positions)
}

/// arrow's messages, reworded for one record: its line numbers and row
/// dumps count within the chunk, not the file, so they are left out.
fn cleanup(message: &str, schema: &SchemaRef) -> String {
    let m = message
        .trim_start_matches("Parser error: ")
        .trim_start_matches("Json error: ")
        .trim_start_matches("Csv error: ");
    if let Some(rest) = m.strip_prefix("incorrect number of fields for line ")
        && let Some((_, counts)) = rest.split_once(", ")
    {
        // "expected 3 got 2"
        let words: Vec<&str> = counts.split_whitespace().collect();
        if let ["expected", want, "got", have] = words.as_slice() {
            return format!("expected {want} fields, found {have}");
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

/// Fields in a CSV line (commas outside double quotes, plus one).
pub(crate) fn field_count(line: &[u8]) -> usize {
    let mut quoted = false;
    let mut count = 1;
    for &b in line {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => count += 1,
            _ => {}
        }
    }
    count
}

impl<D: RecordDecoder> Source for ChunkReader<D> {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<SourceBatch>, EngineError> {
        self.read_batch()
    }

    fn progress(&self) -> (u64, Option<u64>) {
        (self.bytes_read, self.total)
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), EngineError> {
        self.seek_to(position)
    }
}
