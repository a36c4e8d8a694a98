//! Events that come as broker messages (Kafka, MQTT): one event a message,
//! JSON or a CSV line. A batch of messages is decoded by arrow in one call;
//! when that fails, message by message, and the bad ones become dead letters
//! with the broker's position of the message.

use std::collections::BTreeSet;
use std::sync::Arc;

use iotql_engine::arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray, UInt64Array};
use iotql_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::io::SourceBatch;
use iotql_engine::operator::DeadLetter;
use iotql_engine::time::{ARRIVAL_TIME, EventTime, PARTITION, POSITION, RAW};

use crate::file::chunk::{RecordDecoder, SHOWN_BYTES, decode_records, raw_column};
use crate::file::csv::CsvDecoder;
use crate::file::jsonl::{JsonDecoder, infer};
use crate::file::{projection, text_types};

/// How a message's payload holds its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageFormat {
    /// One JSON object.
    Json,
    /// One CSV record, no header: the columns of the declared schema.
    Csv,
}

impl MessageFormat {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "json" => Ok(MessageFormat::Json),
            "csv" => Ok(MessageFormat::Csv),
            other => Err(format!("format `{other}`: use json or csv")),
        }
    }
}

/// The largest message an input takes by default; larger ones are dead letters.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;

/// One message as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub payload: Vec<u8>,
    /// The broker position, encoded by the connector (see [`Describe`]).
    pub position: u64,
    /// When the broker took it (Kafka's message timestamp) or when it was
    /// read, in microseconds since the epoch.
    pub arrival: i64,
    /// The topic it came on, for a source that shows it as a column (MQTT).
    pub topic: Option<Arc<str>>,
    /// Its partition, for a partitioned source (Kafka: one event-time clock
    /// per partition).
    pub partition: Option<u64>,
}

/// Turns an encoded position into words, e.g. `topic t partition 3 offset 42`.
pub type Describe = Arc<dyn Fn(u64) -> String + Send + Sync>;

/// How a [`MessageDecoder`] reads.
pub struct DecoderConfig<'a> {
    pub input: &'a str,
    pub format: MessageFormat,
    /// The declared schema, if any; otherwise inferred from `sample` (JSON).
    pub schema: Option<SchemaRef>,
    /// The columns the job reads (lower case), `None` for all.
    pub columns: Option<&'a BTreeSet<String>>,
    pub max_bytes: usize,
    /// The name of a column holding each message's topic.
    pub topic_column: Option<String>,
    /// Whether messages carry a partition ([`Received::partition`]).
    pub partitioned: bool,
    pub describe: Describe,
}

impl std::fmt::Debug for DecoderConfig<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecoderConfig")
            .field("input", &self.input)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

pub struct MessageDecoder {
    input: String,
    /// The event columns, as decoded.
    events: SchemaRef,
    /// The event columns, then the topic column, then the arrival time.
    schema: SchemaRef,
    with_position: SchemaRef,
    decoder: Box<dyn RecordDecoder>,
    quoted: bool,
    max_bytes: usize,
    topic_column: bool,
    partitioned: bool,
    describe: Describe,
}

impl std::fmt::Debug for MessageDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageDecoder")
            .field("input", &self.input)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl MessageDecoder {
    /// A decoder for the input of `config`; without a declared schema, the
    /// columns are learnt from the JSON objects of `sample` (those within
    /// `max_bytes`: a message too large to take teaches nothing).
    pub fn new(config: DecoderConfig<'_>, sample: &[Received]) -> Result<Self, String> {
        let declared = config.schema.is_some();
        let schema = match (config.schema, config.format) {
            (Some(s), _) => s,
            (None, MessageFormat::Json) => {
                Arc::new(text_types(&infer(&sample_lines(sample, config.max_bytes))?))
            }
            (None, MessageFormat::Csv) => {
                return Err(
                    "CSV messages carry no header: declare the input's schema = 'name type, ...'"
                        .into(),
                );
            }
        };
        // A declared schema is checked in full, as for files.
        let columns = if declared { None } else { config.columns };
        let keep = projection(&schema, columns);
        let (decoder, events): (Box<dyn RecordDecoder>, SchemaRef) = match config.format {
            MessageFormat::Json => {
                let events = match &keep {
                    Some(p) => Arc::new(schema.project(p).map_err(|e| e.to_string())?),
                    None => schema,
                };
                (
                    Box::new(JsonDecoder {
                        schema: events.clone(),
                    }),
                    events,
                )
            }
            MessageFormat::Csv => {
                let d = CsvDecoder::new(&schema, keep).map_err(|e| e.to_string())?;
                let events = d.schema.clone();
                (Box::new(d), events)
            }
        };
        let mut fields: Vec<Field> = events.fields().iter().map(|f| f.as_ref().clone()).collect();
        if let Some(name) = &config.topic_column {
            fields.push(Field::new(name, DataType::Utf8, false));
        }
        fields.push(Field::new(
            ARRIVAL_TIME,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ));
        if config.partitioned {
            fields.push(Field::new(PARTITION, DataType::UInt64, false));
        }
        let schema = Arc::new(Schema::new(fields.clone()));
        fields.push(Field::new(POSITION, DataType::UInt64, false));
        fields.push(Field::new(RAW, DataType::LargeBinary, false));
        Ok(MessageDecoder {
            input: config.input.to_string(),
            events,
            schema,
            with_position: Arc::new(Schema::new(fields)),
            decoder,
            quoted: config.format == MessageFormat::Csv,
            max_bytes: config.max_bytes,
            topic_column: config.topic_column.is_some(),
            partitioned: config.partitioned,
            describe: config.describe,
        })
    }

    /// The columns of the batches (without the position column).
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn dead(&self, payload: &[u8], position: u64, reason: String) -> DeadLetter {
        dead_letter(&self.input, &self.describe, payload, position, reason)
    }

    /// Decodes `messages`; the batch carries the position and arrival time of
    /// each event, and the topic when the source shows it.
    pub fn decode(&mut self, messages: &[Received]) -> Result<SourceBatch, String> {
        let mut dead_letters = Vec::new();
        let mut buffer = Vec::new();
        let mut records = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            if m.payload.len() > self.max_bytes {
                let shown = &m.payload[..m.payload.len().min(SHOWN_BYTES)];
                dead_letters.push(self.dead(
                    shown,
                    m.position,
                    format!(
                        "the message of {} bytes is larger than the limit of {} bytes (option max_message_bytes); its first 256 bytes are shown",
                        m.payload.len(),
                        self.max_bytes
                    ),
                ));
                continue;
            }
            if m.payload.iter().all(u8::is_ascii_whitespace) {
                dead_letters.push(self.dead(&m.payload, m.position, "the message is empty".into()));
                continue;
            }
            let start = buffer.len();
            buffer.extend_from_slice(&m.payload);
            if buffer.last() != Some(&b'\n') {
                buffer.push(b'\n');
            }
            records.push((start, buffer.len(), i));
        }
        let (input, describe) = (&self.input, &self.describe);
        let (batch, letters, kept) = decode_records(
            self.decoder.as_mut(),
            &self.events,
            self.quoted,
            &buffer,
            &records,
            |record, i, reason| dead_letter(input, describe, record, messages[i].position, reason),
        );
        dead_letters.extend(letters);
        let batch = match batch {
            Some(b) => {
                let mut columns: Vec<ArrayRef> = b.columns().to_vec();
                if self.topic_column {
                    let topics: StringArray =
                        kept.iter().map(|&i| messages[i].topic.as_deref()).collect();
                    columns.push(Arc::new(topics));
                }
                let arrivals = TimestampMicrosecondArray::from_iter_values(
                    kept.iter().map(|&i| messages[i].arrival),
                );
                columns.push(Arc::new(arrivals.with_timezone("UTC")));
                if self.partitioned {
                    let partitions = UInt64Array::from_iter_values(
                        kept.iter().map(|&i| messages[i].partition.unwrap_or(0)),
                    );
                    columns.push(Arc::new(partitions));
                }
                let positions: UInt64Array = kept.iter().map(|&i| messages[i].position).collect();
                columns.push(Arc::new(positions));
                columns.push(raw_column(
                    kept.iter().map(|&i| messages[i].payload.as_slice()),
                ));
                Some(
                    RecordBatch::try_new(self.with_position.clone(), columns)
                        .map_err(|e| e.to_string())?,
                )
            }
            None => None,
        };
        let arrival = messages.iter().map(|m| m.arrival).max().map(EventTime);
        Ok(SourceBatch {
            batch,
            dead_letters,
            mark: 0,
            arrival,
            partitions: None,
            resume: None,
        })
    }
}

/// Now, in microseconds since the epoch: the arrival time of a message
/// without a broker timestamp, and the arrival clock of an idle input.
pub(crate) fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn dead_letter(
    input: &str,
    describe: &Describe,
    payload: &[u8],
    position: u64,
    reason: String,
) -> DeadLetter {
    DeadLetter {
        input: input.to_string(),
        position: describe(position),
        reason,
        raw: String::from_utf8_lossy(payload).trim_end().to_string(),
    }
}

/// The sample's payloads of at most `max_bytes` as JSON lines (a
/// pretty-printed message is compacted), for schema inference.
fn sample_lines(sample: &[Received], max_bytes: usize) -> Vec<u8> {
    let mut lines = Vec::new();
    for m in sample.iter().filter(|m| m.payload.len() <= max_bytes) {
        if m.payload.contains(&b'\n') {
            match serde_json::from_slice::<serde_json::Value>(&m.payload) {
                Ok(v) => lines.extend(v.to_string().into_bytes()),
                Err(_) => continue,
            }
        } else {
            lines.extend_from_slice(&m.payload);
        }
        lines.push(b'\n');
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use iotql_engine::arrow::array::{Array, AsArray};

    fn message(payload: &str, position: u64) -> Received {
        Received {
            payload: payload.as_bytes().to_vec(),
            position,
            arrival: 1_700_000_000_000_000 + position as i64,
            topic: Some(Arc::from(format!("sites/s{position}/telemetry"))),
            partition: None,
        }
    }

    fn decoder(
        format: MessageFormat,
        schema: Option<SchemaRef>,
        sample: &[Received],
    ) -> MessageDecoder {
        MessageDecoder::new(
            DecoderConfig {
                input: "readings",
                format,
                schema,
                columns: None,
                max_bytes: 64,
                topic_column: Some("topic".into()),
                partitioned: false,
                describe: Arc::new(|p| format!("offset {p}")),
            },
            sample,
        )
        .expect("decoder")
    }

    #[test]
    fn bad_messages_become_dead_letters_with_their_position() {
        let messages = vec![
            message(r#"{"device": "a", "temp": 21.5}"#, 10),
            message(r#"{"device": "b", "temp": "#, 11),
            message("not json", 12),
            message(r#"{"device": "c", "temp": "hot"}"#, 13),
            message(&format!(r#"{{"device": "{}"}}"#, "x".repeat(100)), 14),
            message("{\n  \"device\": \"d\",\n  \"temp\": 19\n}", 15),
            message("  ", 16),
        ];
        let mut d = decoder(MessageFormat::Json, None, &messages[..1]);
        let out = d.decode(&messages).expect("decode");
        let batch = out.batch.expect("rows");
        assert_eq!(batch.num_rows(), 2);
        let devices = batch.column(0).as_string::<i32>();
        assert_eq!((devices.value(0), devices.value(1)), ("a", "d"));
        let positions = batch
            .column(4)
            .as_primitive::<iotql_engine::arrow::datatypes::UInt64Type>();
        assert_eq!(positions.values().to_vec(), vec![10, 15]);
        let topics = batch.column(2).as_string::<i32>();
        assert_eq!(topics.value(1), "sites/s15/telemetry");
        let letters: Vec<(&str, &str)> = out
            .dead_letters
            .iter()
            .map(|l| (l.position.as_str(), l.reason.as_str()))
            .collect();
        assert_eq!(letters.len(), 5, "{letters:?}");
        let positions: BTreeSet<&str> = letters.iter().map(|l| l.0).collect();
        for p in [
            "offset 11",
            "offset 12",
            "offset 13",
            "offset 14",
            "offset 16",
        ] {
            assert!(positions.contains(p), "{p} missing from {letters:?}");
        }
        assert!(
            letters
                .iter()
                .any(|l| l.1.contains("larger than the limit of 64 bytes"))
        );
        assert!(
            letters
                .iter()
                .any(|l| l.0 == "offset 13" && l.1.contains("temp")),
            "{letters:?}"
        );
        assert_eq!(out.arrival, Some(EventTime(1_700_000_000_000_016)));
    }

    #[test]
    fn csv_messages_need_a_declared_schema_and_decode_by_it() {
        assert!(
            MessageDecoder::new(
                DecoderConfig {
                    input: "r",
                    format: MessageFormat::Csv,
                    schema: None,
                    columns: None,
                    max_bytes: 64,
                    topic_column: None,
                    partitioned: false,
                    describe: Arc::new(|p| p.to_string()),
                },
                &[],
            )
            .is_err()
        );
        let schema = Arc::new(Schema::new(vec![
            Field::new("device", DataType::Utf8, true),
            Field::new("temp", DataType::Float64, true),
        ]));
        let mut d = decoder(MessageFormat::Csv, Some(schema), &[]);
        let out = d
            .decode(&[message("a,1.5", 1), message("b,warm", 2), message("c,2", 3)])
            .expect("decode");
        let batch = out.batch.expect("rows");
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(
            batch
                .column(1)
                .as_primitive::<iotql_engine::arrow::datatypes::Float64Type>()
                .value(1),
            2.0
        );
        assert_eq!(out.dead_letters.len(), 1);
        assert_eq!(out.dead_letters[0].position, "offset 2");
        assert!(batch.column(3).null_count() == 0);
    }
}
