//! Reading a line-oriented file (CSV, JSON lines) in chunks of whole
//! records, decoding each chunk with arrow's vectorised decoder, and
//! isolating bad records: when a chunk fails to decode, its records are
//! decoded one by one, the good ones kept and the bad ones dead-lettered.

use std::io::{BufRead, ErrorKind};
use std::sync::Arc;

use iotql_engine::arrow::array::{Array, ArrayRef, AsArray, LargeBinaryArray, UInt64Array};
use iotql_engine::arrow::compute::concat_batches;
use iotql_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use iotql_engine::arrow::error::ArrowError;
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::error::EngineError;
use iotql_engine::io::{Source, SourceBatch};
use iotql_engine::operator::DeadLetter;
use iotql_engine::time::{POSITION, RAW};

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
    /// The longest record taken; longer ones are dead letters.
    pub max_event_bytes: usize,
}

/// The longest record (line) a file input takes by default, as Kafka's
/// default largest message: longer ones are dead letters with their first
/// bytes, read past without being held in memory.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

/// How many bytes of an oversized event its dead letter keeps.
pub(crate) const SHOWN_BYTES: usize = 256;

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
    max_event_bytes: usize,
    /// Oversized records met while scanning, for the next batch.
    pending: Vec<DeadLetter>,
    eof: bool,
    reopen: Option<super::Input>,
    body_start: u64,
    /// Whether `fill` ended the last record with a newline the input does
    /// not have.
    added_newline: bool,
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
        fields.push(Field::new(RAW, DataType::LargeBinary, false));
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
            max_event_bytes: config.max_event_bytes.max(1),
            pending: Vec::new(),
            eof: false,
            reopen: config.reopen,
            body_start: config.body_start,
            added_newline: false,
        }
    }

    /// Where reading resumes after what has been read into batches.
    fn resume_position(&self) -> Option<Vec<u8>> {
        self.reopen.as_ref()?;
        // Read from the input, less what is read but not yet taken.
        // (The newline `fill` added, once taken, was never read.)
        let unread =
            ((self.block.len() - self.start) as u64).saturating_sub(u64::from(self.added_newline));
        let offset = self.body_start + self.bytes_read - unread.min(self.bytes_read);
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
        self.added_newline = false;
        self.bytes_read = offset - self.body_start;
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
                self.added_newline = true;
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
                let event = record.strip_suffix(b"\n").unwrap_or(record);
                let event = event.strip_suffix(b"\r").unwrap_or(event);
                if event.len() > self.max_event_bytes {
                    let shown = &event[..SHOWN_BYTES.min(event.len())];
                    let letter = self.oversized(shown, line, event.len() as u64);
                    self.pending.push(letter);
                } else if !record.iter().all(|b| b.is_ascii_whitespace()) {
                    records.push((at, end, line));
                }
                line += lines_in_record;
                at = end;
            }
            if records.len() >= self.batch_size || self.eof {
                break;
            }
            // A record already longer than the limit is not read into
            // memory: it is cut at the next newline and skipped.
            if self.block.len() - at > self.max_event_bytes {
                if !records.is_empty() {
                    break;
                }
                self.skip_oversized(at, line)?;
                at = self.start;
                line = self.next_line;
                continue;
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

    /// The dead letter of a record of `size` bytes, longer than the limit.
    fn oversized(&self, first: &[u8], line: u64, size: u64) -> DeadLetter {
        DeadLetter {
            input: self.input.clone(),
            position: format!("line {line}"),
            reason: format!(
                "the event of {size} bytes is larger than the limit of {} bytes; its first {} bytes are kept",
                self.max_event_bytes,
                first.len()
            ),
            raw: String::from_utf8_lossy(first).trim_end().to_string(),
        }
    }

    /// Reads past the record starting at `at` on `line`, which has no end
    /// within the limit, up to and including the next newline (quotes or
    /// not), keeping only its first bytes for its dead letter.
    fn skip_oversized(&mut self, at: usize, line: u64) -> Result<(), EngineError> {
        self.start = at;
        let first = self.block[at..(at + SHOWN_BYTES).min(self.block.len())].to_vec();
        let mut size = 0u64;
        let mut lines = 0u64;
        loop {
            let rest = &self.block[self.start..];
            if let Some(i) = memchr::memchr(b'\n', rest) {
                let end = if i > 0 && rest[i - 1] == b'\r' {
                    i - 1
                } else {
                    i
                };
                size += end as u64;
                lines += 1;
                self.start += i + 1;
                break;
            }
            size += rest.len() as u64;
            self.start = self.block.len();
            if self.eof {
                break;
            }
            self.fill()?;
        }
        let letter = self.oversized(&first, line, size);
        self.pending.push(letter);
        self.next_line = line + lines;
        Ok(())
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
    /// Returns the batch, the dead letters and the indices (in `records`)
    /// of the rows kept.
    fn decode(
        &mut self,
        records: &[(usize, usize, u64)],
    ) -> (Option<RecordBatch>, Vec<DeadLetter>, Vec<usize>) {
        let (input, schema, quoted) = (&self.input, &self.schema, self.quoted);
        let indexed: Vec<(usize, usize, usize)> = records
            .iter()
            .enumerate()
            .map(|(i, &(start, end, _))| (start, end, i))
            .collect();
        decode_records(
            &mut self.decoder,
            schema,
            quoted,
            &self.block,
            &indexed,
            |record, i, reason| DeadLetter {
                input: input.clone(),
                position: format!("line {}", records[i].2),
                reason,
                raw: String::from_utf8_lossy(record).trim_end().to_string(),
            },
        )
    }

    fn read_batch(&mut self) -> Result<Option<SourceBatch>, EngineError> {
        let records = self.scan()?;
        let Some(&(_, end, _)) = records.last() else {
            let dead_letters = std::mem::take(&mut self.pending);
            if self.eof && dead_letters.is_empty() {
                return Ok(None);
            }
            return Ok(Some(SourceBatch {
                dead_letters,
                resume: self.resume_position(),
                ..Default::default()
            }));
        };
        let (batch, mut dead_letters, kept) = self.decode(&records);
        dead_letters.append(&mut self.pending);
        let batch = match batch {
            Some(b) => {
                let mut columns = b.columns().to_vec();
                let lines = UInt64Array::from_iter_values(kept.iter().map(|&i| records[i].2));
                columns.push(Arc::new(lines));
                columns.push(raw_column(
                    kept.iter()
                        .map(|&i| &self.block[records[i].0..records[i].1]),
                ));
                Some(RecordBatch::try_new(self.with_position.clone(), columns)?)
            }
            None => None,
        };
        // Past the last record, and any blank lines before the next one.
        let consumed = &self.block[self.start..end];
        self.next_line += memchr::memchr_iter(b'\n', consumed).count() as u64;
        self.start = end;
        Ok(Some(SourceBatch {
            batch,
            dead_letters,
            resume: self.resume_position(),
            ..Default::default()
        }))
    }
}

/// The original bytes of events (without their line end), as the hidden
/// column that TIMESTAMP BY takes a refused event's dead letter from.
pub(crate) fn raw_column<'a>(records: impl Iterator<Item = &'a [u8]>) -> ArrayRef {
    let mut offsets = vec![0i64];
    let mut values = Vec::new();
    for r in records {
        let r = r.strip_suffix(b"\n").unwrap_or(r);
        let r = r.strip_suffix(b"\r").unwrap_or(r);
        values.extend_from_slice(r);
        offsets.push(values.len() as i64);
    }
    Arc::new(LargeBinaryArray::new(
        iotql_engine::arrow::buffer::OffsetBuffer::new(offsets.into()),
        values.into(),
        None,
    ))
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
                    // arrow's expected count is the file's (the schema may
                    // be projected to the columns the job reads).
                    let expected = message
                        .split("expected ")
                        .nth(1)
                        .and_then(|r| r.split_whitespace().next())
                        .and_then(|n| n.parse::<usize>().ok())
                        .unwrap_or(schema.fields().len());
                    format!("expected {expected} fields, found {fields}")
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

/// Refuses a batch holding NaN or an infinity in a float column (nested
/// ones too): JSON has no such numbers, nor has ASA's float, and one would
/// poison every sum and average it enters. Named after the column.
pub(crate) fn check_finite(batch: &RecordBatch) -> Result<(), ArrowError> {
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        finite(field.name(), column.as_ref())?;
    }
    Ok(())
}

fn finite(path: &str, column: &dyn Array) -> Result<(), ArrowError> {
    use iotql_engine::arrow::datatypes::{Float32Type, Float64Type};
    let bad = |v: String| {
        ArrowError::ParseError(format!(
            "{v} is not a valid number for column `{path}`: NaN and infinities are refused"
        ))
    };
    match column.data_type() {
        DataType::Float64 => {
            let a = column.as_primitive::<Float64Type>();
            if !a.values().iter().all(|v| v.is_finite())
                && let Some(v) = a.iter().flatten().find(|v| !v.is_finite())
            {
                return Err(bad(v.to_string()));
            }
        }
        DataType::Float32 => {
            let a = column.as_primitive::<Float32Type>();
            if !a.values().iter().all(|v| v.is_finite())
                && let Some(v) = a.iter().flatten().find(|v| !v.is_finite())
            {
                return Err(bad(v.to_string()));
            }
        }
        DataType::Struct(fields) => {
            let a = column.as_struct();
            for (f, c) in fields.iter().zip(a.columns()) {
                finite(&format!("{path}.{}", f.name()), c.as_ref())?;
            }
        }
        DataType::List(_) => finite(path, column.as_list::<i32>().values().as_ref())?,
        DataType::LargeList(_) => finite(path, column.as_list::<i64>().values().as_ref())?,
        _ => {}
    }
    Ok(())
}

/// The first key that appears twice in one JSON object of `json` (one or
/// more valid JSON texts), if any: arrow's decoder would keep one of the
/// values silently. Keys are compared as written (an escaped spelling of
/// the same key is not caught). One pass over the bytes, no allocation
/// per object.
pub(crate) fn duplicate_key(json: &[u8]) -> Option<String> {
    let mut keys: Vec<&[u8]> = Vec::new();
    // Each open object: where its keys start in `keys`, and a 64-bit filter
    // of their hashes, so that a key is compared only when its bit is set.
    let mut objects: Vec<(usize, u64)> = Vec::new();
    let n = json.len();
    let mut i = 0;
    // Between strings, a plain loop: the gaps are a few bytes, too short
    // for memchr to pay.
    while i < n {
        let b = json[i];
        i += 1;
        match b {
            b'"' => {
                let start = i;
                loop {
                    let k = i + memchr::memchr2(b'"', b'\\', &json[i..])?;
                    if json[k] == b'\\' {
                        i = k + 2;
                        if i > n {
                            return None;
                        }
                    } else {
                        i = k;
                        break;
                    }
                }
                let end = i;
                i += 1;
                let mut j = i;
                while j < n && json[j].is_ascii_whitespace() {
                    j += 1;
                }
                if j < n
                    && json[j] == b':'
                    && let Some((first, filter)) = objects.last_mut()
                {
                    i = j + 1;
                    let key = &json[start..end];
                    let hash = key.len() as u64
                        ^ u64::from(key.first().copied().unwrap_or(0))
                        ^ (u64::from(key.last().copied().unwrap_or(0)) << 1);
                    let bit = 1u64 << (hash & 63);
                    if *filter & bit != 0 && keys[*first..].contains(&key) {
                        return Some(String::from_utf8_lossy(key).into_owned());
                    }
                    *filter |= bit;
                    keys.push(key);
                }
            }
            b'{' => objects.push((keys.len(), 0)),
            b'}' => {
                if let Some((first, _)) = objects.pop() {
                    keys.truncate(first);
                }
            }
            _ => {}
        }
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_found_in_any_object_and_only_within_one() {
        let found = |t: &str| duplicate_key(t.as_bytes());
        assert_eq!(found(r#"{"a":1,"b":2,"a":3}"#).as_deref(), Some("a"));
        assert_eq!(
            found(r#"{"a":1,"g":{"x":1,"y":2,"x" : 3}}"#).as_deref(),
            Some("x")
        );
        // The same key in sibling and nested objects, in arrays, in
        // another line, or as a string value is not a duplicate.
        assert_eq!(
            found("{\"a\":{\"a\":1},\"l\":[{\"a\":1},{\"a\":2}],\"s\":\"a\"}\n{\"a\":2}\n"),
            None
        );
        // Quotes and braces inside strings.
        assert_eq!(found(r#"{"a":"x\"}{\"a\":","b":"\\","c":1}"#), None);
        assert_eq!(found(r#"{"k\"":1,"k\"":2}"#).as_deref(), Some("k\\\""));
        // Truncated text ends the search quietly.
        assert_eq!(found(r#"{"a":1,"a"#), None);
        assert_eq!(found(r#"{"a":"\"#), None);
    }

    #[test]
    fn the_raw_column_keeps_events_without_their_line_ends() {
        let raw = raw_column([&b"{\"a\":1}\r\n"[..], b"x,y\n", b"last"].into_iter());
        let raw = raw.as_binary::<i64>();
        assert_eq!(raw.value(0), b"{\"a\":1}");
        assert_eq!(raw.value(1), b"x,y");
        assert_eq!(raw.value(2), b"last");
    }

    /// Reads `source` to its end: each batch's rows (as debug text of the
    /// first column's values), dead letters, and resume position.
    fn read_to_end(source: &mut dyn Source) -> Vec<(Vec<String>, usize, Option<Vec<u8>>)> {
        let mut batches = Vec::new();
        while let Some(b) = source.next_batch().expect("read") {
            let rows = b.batch.map_or_else(Vec::new, |batch| {
                let column = batch.column(0);
                (0..batch.num_rows())
                    .map(|i| {
                        iotql_engine::arrow::util::display::array_value_to_string(column, i)
                            .expect("cell")
                    })
                    .collect()
            });
            batches.push((rows, b.dead_letters.len(), b.resume));
        }
        batches
    }

    #[test]
    fn reading_resumes_at_every_batch_position_with_what_follows_it() {
        // Longer than the limit on one event: a dead letter, read past.
        let long = "x".repeat(DEFAULT_MAX_EVENT_BYTES + 10);
        let csv = format!("id,v\na,1\nb,2\n\nc,3\nbad line\"\n{long},4\nd,5\ne,6\r\nf,7");
        let jsonl = format!(
            "{{\"id\":\"a\"}}\n{{\"id\":\"b\"}}\n\n{{\"id\":\"c\"}}\n{{\"id\":\"{long}\"}}\n{{\"id\":\"d\"}}\n{{\"id\":\"f\"}}"
        );
        for (text, csv_format) in [(csv, true), (jsonl, false)] {
            let input = super::super::Input::Memory(std::sync::Arc::from(text.as_bytes()));
            let open = || -> Box<dyn Source> {
                if csv_format {
                    super::super::csv::open_source("t", &input, None, 2, None)
                } else {
                    super::super::jsonl::open_source("t", &input, None, 2, None)
                }
                .expect("open")
            };
            let whole = read_to_end(open().as_mut());
            let all: Vec<String> = whole.iter().flat_map(|b| b.0.clone()).collect();
            let letters: usize = whole.iter().map(|b| b.1).sum();
            assert!(letters >= 1, "the long event is a dead letter");
            let mut seen = 0;
            for (rows, _, position) in &whole {
                seen += rows.len();
                let position = position.as_ref().expect("a memory input resumes");
                let mut resumed = open();
                resumed.seek(position).expect("seek");
                let rest: Vec<String> = read_to_end(resumed.as_mut())
                    .into_iter()
                    .flat_map(|b| b.0)
                    .collect();
                assert_eq!(rest, all[seen..], "after {seen} rows ({csv_format})");
            }
        }
    }
}
