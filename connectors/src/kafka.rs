//! Kafka input and output, through librdkafka (the `rdkafka` crate).
//!
//! Input: a consumer in a consumer group, subscribed to one or more topics;
//! every assigned partition is read, the message timestamp is each event's
//! arrival time, and offsets are committed only when the runner says the
//! outputs that depend on them are flushed ([`Committer`]): at-least-once.
//! Output: an idempotent producer writing each row as a JSON object, keyed by
//! a column when asked, so that a key's rows stay in order in one partition.
//!
//! Nothing here leans on one broker's behaviour: it is plain librdkafka with
//! a consumer group, and librdkafka's own settings pass through.
//!
//! Security (docs/kafka.md): `security_protocol`, `sasl_mechanism`,
//! `sasl_username`, `sasl_password`, `ssl_ca`, `ssl_certificate`, `ssl_key`
//! and `ssl_key_password` map to librdkafka's settings, checked first; a
//! refused login or TLS handshake stops the job with the broker's reason
//! (the brokers are reachable: waiting would not help). Secrets never reach
//! a message: settings print through `secret::Redacted`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iotql_engine::arrow::array::Array;
use iotql_engine::arrow::datatypes::SchemaRef;
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::arrow::util::display::array_value_to_string;
use iotql_engine::error::EngineError;
use iotql_engine::io::{Committer, Sink, Source, SourceBatch};
use iotql_engine::time::EventTime;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;

use crate::message::{
    DEFAULT_MAX_MESSAGE_BYTES, DecoderConfig, MessageDecoder, MessageFormat, Received, now_micros,
};

/// Where a consumer starts in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// The group's committed offset; the earliest where it has none.
    Committed,
    /// The first message, whatever the group committed.
    Earliest,
    /// Only messages produced from now on.
    Latest,
    /// The first message at or after this time (milliseconds since the epoch).
    Time(i64),
}

impl StartPosition {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "committed" => Ok(StartPosition::Committed),
            "earliest" => Ok(StartPosition::Earliest),
            "latest" => Ok(StartPosition::Latest),
            _ => chrono::DateTime::parse_from_rfc3339(text.trim())
                .map(|t| StartPosition::Time(t.timestamp_millis()))
                .map_err(|_| {
                    format!(
                        "start `{text}`: use committed, earliest, latest or a time such as 2026-01-01T00:00:00Z"
                    )
                }),
        }
    }
}

/// A Kafka input: where and how to read. Its `Debug` hides secret settings.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaInput {
    /// `host:port[,host:port...]`.
    pub brokers: String,
    pub topics: Vec<String>,
    /// The consumer group; by default `iotql-<input name>`.
    pub group_id: Option<String>,
    pub start: StartPosition,
    pub format: MessageFormat,
    /// Stop when every partition has been read to its end (a backfill or a
    /// test), instead of waiting for more.
    pub until_end: bool,
    pub max_message_bytes: usize,
    /// librdkafka settings passed through (`security.protocol`, `sasl.*`,
    /// `ssl.*`, `session.timeout.ms`, ...).
    pub settings: BTreeMap<String, String>,
}

/// A Kafka output. Its `Debug` hides secret settings.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaOutput {
    pub brokers: String,
    pub topic: String,
    /// The column whose value is each message's key.
    pub key: Option<String>,
    /// librdkafka settings, the security options' included.
    pub settings: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaInput")
            .field("brokers", &self.brokers)
            .field("topics", &self.topics)
            .field("group_id", &self.group_id)
            .field("start", &self.start)
            .field("format", &self.format)
            .field("until_end", &self.until_end)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("settings", &crate::secret::Redacted(&self.settings))
            .finish()
    }
}

impl std::fmt::Debug for KafkaOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaOutput")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("key", &self.key)
            .field("settings", &crate::secret::Redacted(&self.settings))
            .finish()
    }
}

/// iotql's security options and the librdkafka settings they set.
const SECURITY_OPTIONS: &[(&str, &str)] = &[
    ("security_protocol", "security.protocol"),
    ("sasl_mechanism", "sasl.mechanisms"),
    ("sasl_username", "sasl.username"),
    ("sasl_password", "sasl.password"),
    ("ssl_ca", "ssl.ca.location"),
    ("ssl_certificate", "ssl.certificate.location"),
    ("ssl_key", "ssl.key.location"),
    ("ssl_key_password", "ssl.key.password"),
];

const PROTOCOLS: &[&str] = &["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];
const MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// The librdkafka settings of the security options among `options`,
/// checked: a protocol and mechanism librdkafka knows, SASL credentials
/// with a SASL protocol (both of them), TLS files that exist (relative to
/// `base`) with a TLS protocol.
fn security(
    options: &BTreeMap<String, String>,
    base: &Path,
) -> Result<BTreeMap<String, String>, String> {
    for (ours, theirs) in SECURITY_OPTIONS {
        if options.contains_key(*ours) && options.contains_key(*theirs) {
            return Err(format!(
                "set `{ours}` or the librdkafka setting [{theirs}], not both"
            ));
        }
    }
    let mut settings = BTreeMap::new();
    let get = |k: &str| options.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let protocol = match get("security_protocol") {
        None => None,
        Some(p) => {
            let p = p.to_ascii_lowercase();
            if !PROTOCOLS.contains(&p.as_str()) {
                return Err(format!(
                    "security_protocol `{p}`: use {}",
                    PROTOCOLS.join(", ")
                ));
            }
            Some(p)
        }
    };
    let sasl = protocol.as_deref().is_some_and(|p| p.starts_with("sasl_"));
    let tls = matches!(protocol.as_deref(), Some("ssl" | "sasl_ssl"));
    let sasl_options = ["sasl_mechanism", "sasl_username", "sasl_password"];
    if !sasl && let Some(k) = sasl_options.iter().find(|k| options.contains_key(**k)) {
        return Err(format!(
            "`{k}` needs security_protocol = 'sasl_ssl' (or 'sasl_plaintext' on a network you trust)"
        ));
    }
    let tls_options = ["ssl_ca", "ssl_certificate", "ssl_key", "ssl_key_password"];
    if !tls && let Some(k) = tls_options.iter().find(|k| options.contains_key(**k)) {
        return Err(format!(
            "`{k}` needs security_protocol = 'ssl' or 'sasl_ssl'"
        ));
    }
    if let Some(p) = &protocol {
        settings.insert("security.protocol".to_string(), p.clone());
    }
    if sasl {
        let mechanism = match get("sasl_mechanism") {
            None => "PLAIN".to_string(),
            Some(m) => MECHANISMS
                .iter()
                .find(|k| k.eq_ignore_ascii_case(m))
                .ok_or_else(|| format!("sasl_mechanism `{m}`: use {}", MECHANISMS.join(", ")))?
                .to_string(),
        };
        let (Some(user), Some(password)) =
            (options.get("sasl_username"), options.get("sasl_password"))
        else {
            return Err(format!(
                "security_protocol = '{}' needs sasl_username and sasl_password (e.g. sasl_password = '${{KAFKA_PASSWORD}}')",
                protocol.as_deref().unwrap_or_default()
            ));
        };
        settings.insert("sasl.mechanisms".to_string(), mechanism);
        settings.insert("sasl.username".to_string(), user.clone());
        settings.insert("sasl.password".to_string(), password.clone());
    }
    if options.contains_key("ssl_certificate") != options.contains_key("ssl_key") {
        return Err(
            "ssl_certificate and ssl_key go together (a client certificate and its key)".into(),
        );
    }
    if options.contains_key("ssl_key_password") && !options.contains_key("ssl_key") {
        return Err("ssl_key_password is the password of ssl_key".into());
    }
    for (ours, theirs) in &SECURITY_OPTIONS[4..7] {
        if let Some(file) = get(ours) {
            let path = crate::endpoint::resolve(file, base);
            if !Path::new(&path).is_file() {
                return Err(format!("{ours} `{path}`: no such file (a PEM file)"));
            }
            settings.insert(theirs.to_string(), path);
        }
    }
    if let Some(p) = options.get("ssl_key_password") {
        settings.insert("ssl.key.password".to_string(), p.clone());
    }
    Ok(settings)
}

/// A client creation error without the value of a secret setting
/// (librdkafka's configuration errors quote the value).
fn config_error(error: &KafkaError) -> String {
    match error {
        KafkaError::ClientConfig(_, description, key, value) => {
            let shown = crate::secret::render_option(None, key, value);
            format!("{description} ({key} = '{shown}')")
        }
        other => crate::secret::scrub(&other.to_string()).into_owned(),
    }
}

/// Options that are iotql's, not librdkafka's.
const INPUT_OPTIONS: &[&str] = &[
    "connector",
    "brokers",
    "topic",
    "topics",
    "group_id",
    "start",
    "format",
    "until",
    "max_message_bytes",
    "schema",
    "arrival_time",
    "out_of_order",
    "late_arrival",
    "late_policy",
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
    "ssl_ca",
    "ssl_certificate",
    "ssl_key",
    "ssl_key_password",
    "max_future",
];
const OUTPUT_OPTIONS: &[&str] = &[
    "connector",
    "brokers",
    "topic",
    "key",
    "format",
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
    "ssl_ca",
    "ssl_certificate",
    "ssl_key",
    "ssl_key_password",
];

/// `host:port[,host:port]/topic[,topic][?key=value&...]` (after `kafka://`):
/// the brokers, the topics and the options.
fn split_uri(rest: &str) -> Result<(String, String, BTreeMap<String, String>), String> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (brokers, topics) = path
        .split_once('/')
        .filter(|(b, t)| !b.is_empty() && !t.is_empty())
        .ok_or_else(|| format!("`kafka://{rest}`: write kafka://HOST:PORT/TOPIC"))?;
    let mut options = BTreeMap::new();
    for (k, v) in crate::endpoint::query_pairs(query)? {
        options.insert(k, v);
    }
    Ok((brokers.to_string(), topics.to_string(), options))
}

/// librdkafka settings among `options`: every key with a dot in it, and
/// those of the security options (files relative to `base`).
fn settings(
    options: &BTreeMap<String, String>,
    known: &[&str],
    base: &Path,
) -> Result<BTreeMap<String, String>, String> {
    let mut settings = security(options, base)?;
    for (k, v) in options {
        if known.contains(&k.as_str()) {
            continue;
        }
        if !k.contains('.') {
            return Err(format!(
                "unknown Kafka option `{k}` (iotql's are {}; librdkafka settings have dots, e.g. [security.protocol] = 'SASL_SSL')",
                known[1..].join(", ")
            ));
        }
        settings.insert(k.clone(), v.clone());
    }
    Ok(settings)
}

impl KafkaInput {
    /// From `kafka://HOST:PORT/TOPIC[,TOPIC]?group_id=...&start=...` (after `kafka://`).
    pub fn from_uri(rest: &str) -> Result<Self, String> {
        let (brokers, topics, mut options) = split_uri(rest)?;
        options.insert("brokers".into(), brokers);
        options.insert("topic".into(), topics);
        Self::from_options(&options, Path::new(""))
    }

    /// From a declaration's options (`connector = 'kafka', brokers = '...',
    /// topic = '...'`); TLS files are relative to `base`.
    pub fn from_options(options: &BTreeMap<String, String>, base: &Path) -> Result<Self, String> {
        let brokers = options
            .get("brokers")
            .ok_or("the `kafka` connector needs `brokers = 'HOST:PORT'`")?
            .clone();
        let topics: Vec<String> = options
            .get("topic")
            .or_else(|| options.get("topics"))
            .ok_or("the `kafka` connector needs `topic = 'NAME'`")?
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        if topics.is_empty() {
            return Err("the `kafka` connector needs `topic = 'NAME'`".into());
        }
        let until_end = match options.get("until").map(|u| u.to_ascii_lowercase()) {
            None => false,
            Some(u) if u == "end" => true,
            Some(u) => return Err(format!("until `{u}`: the only value is `end`")),
        };
        if until_end && topics.len() > 1 {
            return Err("until = 'end' reads one topic".into());
        }
        let max_message_bytes = match options.get("max_message_bytes") {
            None => DEFAULT_MAX_MESSAGE_BYTES,
            Some(n) => n
                .parse()
                .map_err(|_| format!("max_message_bytes `{n}` is not a number of bytes"))?,
        };
        Ok(KafkaInput {
            brokers,
            topics,
            group_id: options.get("group_id").cloned(),
            start: options
                .get("start")
                .map_or(Ok(StartPosition::Committed), |s| StartPosition::parse(s))?,
            format: options
                .get("format")
                .map_or(Ok(MessageFormat::Json), |f| MessageFormat::parse(f))?,
            until_end,
            max_message_bytes,
            settings: settings(options, INPUT_OPTIONS, base)?,
        })
    }
}

impl KafkaOutput {
    /// From `kafka://HOST:PORT/TOPIC?key=COLUMN` (after `kafka://`).
    pub fn from_uri(rest: &str) -> Result<Self, String> {
        let (brokers, topic, mut options) = split_uri(rest)?;
        options.insert("brokers".into(), brokers);
        options.insert("topic".into(), topic);
        Self::from_options(&options, Path::new(""))
    }

    /// From a declaration's options; TLS files are relative to `base`.
    pub fn from_options(options: &BTreeMap<String, String>, base: &Path) -> Result<Self, String> {
        let get = |k: &str| {
            options
                .get(k)
                .cloned()
                .ok_or_else(|| format!("the `kafka` connector needs `{k} = '...'`"))
        };
        if let Some(f) = options.get("format")
            && !f.eq_ignore_ascii_case("json")
        {
            return Err(format!("format `{f}`: a Kafka output writes JSON objects"));
        }
        Ok(KafkaOutput {
            brokers: get("brokers")?,
            topic: get("topic")?,
            key: options.get("key").cloned(),
            settings: settings(options, OUTPUT_OPTIONS, base)?,
        })
    }
}

/// Whether librdkafka's error means the brokers (or the topic) cannot be
/// reached yet (it reconnects by itself: the job waits).
fn is_outage(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::OperationTimedOut
                // A topic not created yet: waited for, like a broker.
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
        )
    )
}

/// Whether librdkafka's error means the brokers refuse this client: a
/// refused login (wrong password, mechanism) or TLS handshake (wrong
/// certificate, or TLS to a plaintext port). Waiting would not help.
fn is_refusal(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SSL
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::UnsupportedSASLMechanism
        )
    )
}

/// The connection state shared by a client's callbacks: an outage is logged
/// once when it starts and once when it ends, not per failed request; a
/// refusal is kept for the reader or writer to stop on.
#[derive(Debug)]
struct Health {
    what: String,
    down: AtomicBool,
    refused: Mutex<Option<String>>,
}

impl Health {
    fn new(what: String) -> Self {
        Health {
            what,
            down: AtomicBool::new(false),
            refused: Mutex::new(None),
        }
    }

    /// Why the brokers refused this client, if they did.
    fn refusal(&self) -> Option<String> {
        self.refused.lock().ok().and_then(|r| r.clone())
    }

    fn failed(&self, error: &KafkaError, reason: &str) {
        // TLS to a plaintext listener, or a certificate not trusted, comes
        // as a transport failure whose reason says so.
        if is_refusal(error) || reason.contains("SSL handshake failed") {
            let message = crate::secret::scrub(&format!(
                "the Kafka brokers refused the connection: {error} ({reason}); check security_protocol, the SASL credentials and the TLS files"
            ))
            .into_owned();
            if let Ok(mut refused) = self.refused.lock()
                && refused.is_none()
            {
                tracing::debug!("{}: {message}", self.what);
                *refused = Some(message);
            }
        } else if is_outage(error) {
            if !self.down.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "{}: cannot reach the Kafka brokers or topic ({error}, {reason}); waiting for them",
                    self.what
                );
            }
        } else {
            tracing::warn!("{}: {error}: {reason}", self.what);
        }
    }

    fn working(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::warn!("{}: the Kafka brokers are back", self.what);
        }
    }
}

fn forward_log(what: &str, level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::debug!("{what}: librdkafka {facility}: {message}"),
        _ => tracing::trace!("{what}: librdkafka {facility}: {message}"),
    }
}

/// Encodes a message's place: topic (8 bits), partition (16), offset (40).
fn encode(topic: usize, partition: i32, offset: i64) -> u64 {
    ((topic as u64 & 0xff) << 56)
        | ((partition as u64 & 0xffff) << 40)
        | (offset as u64 & 0xff_ffff_ffff)
}

/// A partition's id in the partition column: topic index and partition.
fn partition_id(topic: usize, partition: i32) -> u64 {
    ((topic as u64) << 32) | (partition as u32 as u64)
}

fn decode_position(position: u64) -> (usize, i32, i64) {
    (
        (position >> 56) as usize,
        ((position >> 40) & 0xffff) as i32,
        (position & 0xff_ffff_ffff) as i64,
    )
}

/// A position in words: `topic readings partition 3 offset 1042`.
fn describe_position(topics: &[String], position: u64) -> String {
    let (t, partition, offset) = decode_position(position);
    let topic = topics.get(t).map_or("?", String::as_str);
    format!("topic {topic} partition {partition} offset {offset}")
}

/// Partition -> the offset of the next message to read.
type Positions = HashMap<(String, i32), i64>;

/// What the consumer's callbacks and the committer share.
#[derive(Debug)]
struct ConsumerState {
    start: StartPosition,
    /// Partitions assigned to this process so far: the start position
    /// applies only the first time.
    seen: BTreeSet<(String, i32)>,
    assigned: BTreeSet<(String, i32)>,
    /// Bumped at every change of `assigned`.
    assignment: u64,
    /// Partitions read to their end, since their last message.
    at_end: HashSet<i32>,
    /// The next offset of each partition this process has read.
    read: Positions,
    /// Read positions after each batch (by mark), not yet committed.
    marks: VecDeque<(u64, Positions)>,
}

#[derive(Debug)]
struct ConsumerCtx {
    health: Health,
    state: Mutex<ConsumerState>,
}

impl ClientContext for ConsumerCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        forward_log(&self.health.what, level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // The end of a partition is news for `poll`, not a problem.
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) {
            self.health.failed(&error, reason);
        }
    }
}

impl ConsumerCtx {
    /// Sets where the assigned partitions start: a partition this process
    /// has read before resumes where it stopped (its events are in the
    /// dataflow's state, even when a commit was lost to an outage; a broker
    /// that lost the data answers out of range and librdkafka starts from
    /// the earliest); a partition seen for the first time starts at the
    /// input's start position.
    fn place(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let start = state.start;
        let resumed: Vec<(String, i32, i64)> = tpl
            .elements()
            .iter()
            .filter_map(|e| {
                let p = (e.topic().to_string(), e.partition());
                state.read.get(&p).map(|&next| (p.0, p.1, next))
            })
            .collect();
        for (topic, partition, next) in resumed {
            if let Err(err) = tpl.set_partition_offset(&topic, partition, Offset::Offset(next)) {
                tracing::warn!(
                    "{}: cannot resume {topic}/{partition}: {err}",
                    self.health.what
                );
            }
        }
        let fresh: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .filter(|p| !state.seen.contains(p))
            .collect();
        for p in &fresh {
            state.seen.insert(p.clone());
        }
        let offset = match start {
            StartPosition::Committed => return,
            StartPosition::Earliest => Offset::Beginning,
            StartPosition::Latest => Offset::End,
            StartPosition::Time(ms) => Offset::Offset(ms),
        };
        let mut wanted = TopicPartitionList::new();
        for (topic, partition) in &fresh {
            let _ = wanted.add_partition_offset(topic, *partition, offset);
        }
        if let StartPosition::Time(_) = start {
            match consumer.offsets_for_times(wanted.clone(), Duration::from_secs(30)) {
                Ok(found) => wanted = found,
                Err(e) => {
                    tracing::warn!(
                        "{}: cannot find the offsets of the start time ({e}); starting from the committed offsets",
                        self.health.what
                    );
                    return;
                }
            }
        }
        for e in wanted.elements() {
            if let Err(err) = tpl.set_partition_offset(e.topic(), e.partition(), e.offset()) {
                tracing::warn!(
                    "{}: cannot set the start of {}/{}: {err}",
                    self.health.what,
                    e.topic(),
                    e.partition()
                );
            }
        }
    }
}

impl ConsumerContext for ConsumerCtx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.place(consumer, tpl);
                if let Ok(mut state) = self.state.lock() {
                    if !cooperative {
                        state.assigned.clear();
                    }
                    state.assigned.extend(parts.iter().cloned());
                    state.assignment += 1;
                }
                tracing::info!("{}: assigned {parts:?}", self.health.what);
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Positions of partitions now another consumer's are not
                // ours to commit.
                if let Ok(mut state) = self.state.lock() {
                    state.assignment += 1;
                    for p in &parts {
                        state.assigned.remove(p);
                        state.at_end.remove(&p.1);
                    }
                    for (_, positions) in state.marks.iter_mut() {
                        positions.retain(|p, _| !parts.contains(p));
                    }
                }
                tracing::info!("{}: revoked {parts:?}", self.health.what);
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::warn!("{}: rebalance failed: {other:?}", self.health.what);
                consumer.unassign()
            }
        };
        if let Err(e) = result {
            tracing::warn!("{}: cannot take the assignment: {e}", self.health.what);
        }
    }
}

/// How long a read waits when no message comes (then it reports the
/// arrival clock, for idle inputs' watermarks).
const IDLE: Duration = Duration::from_millis(200);
/// How many messages schema inference looks at.
const SAMPLE: usize = 1000;

/// The consumer and what it has read.
struct Reader {
    name: String,
    consumer: Arc<BaseConsumer<ConsumerCtx>>,
    topics: Arc<Vec<String>>,
    until_end: bool,
    /// The next offset of each partition read so far.
    next_mark: u64,
    bytes: u64,
    /// The assignment last told to the dataflow.
    told: u64,
}

/// Reads a Kafka input.
pub struct KafkaSource {
    reader: Reader,
    decoder: MessageDecoder,
    batch_size: usize,
    /// Messages read before the decoder existed (the inference sample).
    early: VecDeque<Received>,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("name", &self.reader.name)
            .field("topics", &self.reader.topics)
            .finish_non_exhaustive()
    }
}

/// What one poll gave.
enum Polled {
    Message(Received),
    Nothing,
    AtEnd,
}

impl KafkaSource {
    /// Joins the consumer group and subscribes; without a declared schema,
    /// waits for the first messages to learn the columns from.
    pub fn open(
        name: &str,
        input: &KafkaInput,
        schema: Option<SchemaRef>,
        batch_size: usize,
        columns: Option<&BTreeSet<String>>,
    ) -> Result<Self, EngineError> {
        let error = |message: String| EngineError::Source {
            input: name.to_string(),
            message,
        };
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &input.brokers)
            .set(
                "group.id",
                input
                    .group_id
                    .clone()
                    .unwrap_or_else(|| format!("iotql-{name}")),
            )
            .set("client.id", format!("iotql-{name}"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "true")
            .set("allow.auto.create.topics", "true")
            .set("session.timeout.ms", "10000");
        for (k, v) in &input.settings {
            config.set(k, v);
        }
        let ctx = ConsumerCtx {
            health: Health::new(format!("input `{name}`")),
            state: Mutex::new(ConsumerState {
                start: input.start,
                seen: BTreeSet::new(),
                assigned: BTreeSet::new(),
                assignment: 0,
                read: HashMap::new(),
                at_end: HashSet::new(),
                marks: VecDeque::new(),
            }),
        };
        let consumer: BaseConsumer<ConsumerCtx> = config.create_with_context(ctx).map_err(|e| {
            error(format!(
                "cannot create the Kafka consumer: {}",
                config_error(&e)
            ))
        })?;
        let topics: Vec<&str> = input.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| error(format!("cannot subscribe to {topics:?}: {e}")))?;
        let consumer = Arc::new(consumer);
        let topic_names = Arc::new(input.topics.clone());
        let describe_topics = topic_names.clone();
        let describe: crate::message::Describe =
            Arc::new(move |p| describe_position(&describe_topics, p));
        let mut reader = Reader {
            name: name.to_string(),
            consumer,
            topics: topic_names,
            until_end: input.until_end,
            next_mark: 1,
            bytes: 0,
            told: 0,
        };
        let mut early = if schema.is_none() && input.format == MessageFormat::Json {
            reader.sample()?
        } else {
            VecDeque::new()
        };
        let decoder = MessageDecoder::new(
            DecoderConfig {
                input: name,
                format: input.format,
                schema,
                columns,
                max_bytes: input.max_message_bytes,
                topic_column: None,
                partitioned: true,
                describe,
            },
            early.make_contiguous(),
        )
        .map_err(error)?;
        Ok(KafkaSource {
            reader,
            decoder,
            batch_size: batch_size.max(1),
            early,
        })
    }
}

impl Reader {
    /// Reads the first messages, to infer the columns from.
    fn sample(&mut self) -> Result<VecDeque<Received>, EngineError> {
        let started = Instant::now();
        let mut told = false;
        let mut first: Option<Instant> = None;
        let mut early = VecDeque::new();
        while early.len() < SAMPLE {
            if first.is_some_and(|f| f.elapsed() > Duration::from_secs(1)) {
                break;
            }
            match self.poll(IDLE)? {
                Polled::Message(m) => {
                    first.get_or_insert_with(Instant::now);
                    early.push_back(m);
                }
                Polled::AtEnd if early.is_empty() => {
                    return Err(EngineError::Source {
                        input: self.name.clone(),
                        message: format!(
                            "topic {} has no messages to learn the columns from: declare the input's schema = 'name type, ...'",
                            self.topics.join(", ")
                        ),
                    });
                }
                Polled::AtEnd => break,
                Polled::Nothing => {}
            }
            if !told && first.is_none() && started.elapsed() > Duration::from_secs(5) {
                told = true;
                tracing::warn!(
                    "input `{}`: waiting for the first messages of {} to learn the columns from (or declare schema = '...')",
                    self.name,
                    self.topics.join(", ")
                );
            }
        }
        Ok(early)
    }

    /// One poll of the consumer.
    fn poll(&mut self, timeout: Duration) -> Result<Polled, EngineError> {
        let polled = self.consumer.poll(timeout);
        if let Some(message) = self.consumer.context().health.refusal() {
            return Err(EngineError::Source {
                input: self.name.clone(),
                message,
            });
        }
        match polled {
            None => Ok(if self.read_to_end() {
                Polled::AtEnd
            } else {
                Polled::Nothing
            }),
            Some(Ok(m)) => {
                self.consumer.context().health.working();
                let topic = self.topics.iter().position(|t| t == m.topic()).unwrap_or(0);
                let payload = m.payload().map(<[u8]>::to_vec).unwrap_or_default();
                self.bytes += payload.len() as u64;
                let arrival = m
                    .timestamp()
                    .to_millis()
                    .map_or_else(now_micros, |ms| ms.saturating_mul(1000));
                // Read: past this offset, and no longer at the partition's end.
                if let Ok(mut state) = self.consumer.context().state.lock() {
                    state.at_end.remove(&m.partition());
                    let next = state
                        .read
                        .entry((m.topic().to_string(), m.partition()))
                        .or_insert(0);
                    *next = (*next).max(m.offset() + 1);
                }
                Ok(Polled::Message(Received {
                    payload,
                    position: encode(topic, m.partition(), m.offset()),
                    arrival,
                    topic: None,
                    partition: Some(partition_id(topic, m.partition())),
                }))
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                if let Ok(mut state) = self.consumer.context().state.lock() {
                    state.at_end.insert(p);
                }
                Ok(if self.read_to_end() {
                    Polled::AtEnd
                } else {
                    Polled::Nothing
                })
            }
            Some(Err(e)) if is_outage(&e) => {
                self.consumer.context().health.failed(&e, "while reading");
                Ok(Polled::Nothing)
            }
            Some(Err(e)) => Err(EngineError::Source {
                input: self.name.clone(),
                message: format!("Kafka: {e}"),
            }),
        }
    }

    /// Whether `until = 'end'` is set and every assigned partition is read to its end.
    fn read_to_end(&self) -> bool {
        if !self.until_end {
            return false;
        }
        self.consumer.context().state.lock().is_ok_and(|s| {
            !s.assigned.is_empty() && s.assigned.iter().all(|(_, p)| s.at_end.contains(p))
        })
    }

    /// The partition ids of the assignment, if it changed since last asked.
    fn assignment_change(&mut self) -> Option<Vec<u64>> {
        let state = self.consumer.context().state.lock().ok()?;
        if state.assignment == self.told {
            return None;
        }
        self.told = state.assignment;
        Some(
            state
                .assigned
                .iter()
                .filter_map(|(t, p)| {
                    let topic = self.topics.iter().position(|n| n == t)?;
                    Some(partition_id(topic, *p))
                })
                .collect(),
        )
    }

    /// Records the positions read so far under a new mark.
    fn mark(&mut self) -> u64 {
        let mark = self.next_mark;
        self.next_mark += 1;
        if let Ok(mut state) = self.consumer.context().state.lock() {
            let positions: Positions = state
                .read
                .iter()
                .filter(|(p, _)| state.assigned.contains(*p))
                .map(|(p, o)| (p.clone(), *o))
                .collect();
            state.marks.push_back((mark, positions));
        }
        mark
    }
}

impl Source for KafkaSource {
    fn schema(&self) -> SchemaRef {
        self.decoder.schema()
    }

    fn next_batch(&mut self) -> Result<Option<SourceBatch>, EngineError> {
        let mut messages: Vec<Received> = Vec::new();
        while messages.len() < self.batch_size {
            let Some(m) = self.early.pop_front() else {
                break;
            };
            messages.push(m);
        }
        let mut ended = false;
        let deadline = Instant::now() + IDLE;
        while messages.len() < self.batch_size {
            // Wait for a first message; then take what is already fetched,
            // and no more: a batch does not wait for messages to come.
            let wait = if messages.is_empty() {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            match self.reader.poll(wait)? {
                Polled::Message(m) => {
                    messages.push(m);
                }
                Polled::Nothing if messages.is_empty() && Instant::now() < deadline => {}
                Polled::Nothing => break,
                Polled::AtEnd => {
                    ended = true;
                    break;
                }
            }
        }
        if ended && messages.is_empty() {
            return Ok(None);
        }
        let mut batch = if messages.is_empty() {
            SourceBatch::default()
        } else {
            self.decoder
                .decode(&messages)
                .map_err(|message| EngineError::Source {
                    input: self.reader.name.clone(),
                    message,
                })?
        };
        // The arrival clock: the latest message timestamp, or now when idle.
        batch.arrival = Some(EventTime(
            batch.arrival.map_or_else(now_micros, |a| a.0.max(0)),
        ));
        if !messages.is_empty() {
            batch.mark = self.reader.mark();
        }
        batch.partitions = self.reader.assignment_change();
        Ok(Some(batch))
    }

    fn progress(&self) -> (u64, Option<u64>) {
        (self.reader.bytes, None)
    }

    fn committer(&self) -> Option<Box<dyn Committer>> {
        Some(Box::new(KafkaCommitter {
            consumer: self.reader.consumer.clone(),
            topics: self.reader.topics.clone(),
        }))
    }
}

/// Commits a Kafka source's offsets from the runner's thread.
struct KafkaCommitter {
    consumer: Arc<BaseConsumer<ConsumerCtx>>,
    topics: Arc<Vec<String>>,
}

impl Committer for KafkaCommitter {
    fn commit(&mut self, mark: u64) -> Result<(), EngineError> {
        let positions = {
            let Ok(mut state) = self.consumer.context().state.lock() else {
                return Ok(());
            };
            let mut latest = None;
            while state.marks.front().is_some_and(|(m, _)| *m <= mark) {
                latest = state.marks.pop_front().map(|(_, p)| p);
            }
            match latest {
                Some(p) => p,
                None => return Ok(()),
            }
        };
        if positions.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &positions {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
        }
        match self.consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => Ok(()),
            // A commit that cannot reach the brokers is retried with the
            // next one; the offsets are only ever behind, never lost.
            Err(e) => {
                self.consumer
                    .context()
                    .health
                    .failed(&e, "while committing offsets");
                if let Ok(mut state) = self.consumer.context().state.lock() {
                    state.marks.push_front((mark, positions));
                }
                Ok(())
            }
        }
    }

    fn describe(&self, position: u64) -> String {
        describe_position(&self.topics, position)
    }
}

/// The producer's context: delivery failures are kept, so that the next
/// write or flush fails instead of a row being dropped.
struct ProducerCtx {
    health: Health,
    failure: Mutex<Option<String>>,
}

impl ClientContext for ProducerCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        forward_log(&self.health.what, level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.health.failed(&error, reason);
    }
}

impl ProducerContext for ProducerCtx {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.health.working(),
            Err((e, _)) => {
                if let Ok(mut failure) = self.failure.lock() {
                    failure.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

/// Writes rows to a Kafka topic as JSON objects.
pub struct KafkaSink {
    name: String,
    output: KafkaOutput,
    producer: Option<BaseProducer<ProducerCtx>>,
    key: Option<usize>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("name", &self.name)
            .field("topic", &self.output.topic)
            .finish_non_exhaustive()
    }
}

/// How long a flush waits between reports while the brokers do not answer.
const FLUSH_REPORT: Duration = Duration::from_secs(30);

impl KafkaSink {
    pub fn new(name: &str, output: KafkaOutput) -> Self {
        KafkaSink {
            name: name.to_string(),
            output,
            producer: None,
            key: None,
        }
    }

    fn error(&self, message: impl ToString) -> EngineError {
        EngineError::Sink {
            output: self.name.clone(),
            message: message.to_string(),
        }
    }

    fn producer(&self) -> Result<&BaseProducer<ProducerCtx>, EngineError> {
        let producer = self
            .producer
            .as_ref()
            .ok_or_else(|| self.error("written before it was started"))?;
        if let Some(refusal) = producer.context().health.refusal() {
            return Err(self.error(refusal));
        }
        if let Some(failure) = producer
            .context()
            .failure
            .lock()
            .ok()
            .and_then(|f| f.clone())
        {
            return Err(self.error(format!("a message could not be delivered: {failure}")));
        }
        Ok(producer)
    }

    /// Sends one message, waiting while librdkafka's queue is full.
    fn send(&self, key: Option<&[u8]>, payload: &[u8]) -> Result<(), EngineError> {
        let producer = self.producer()?;
        let mut record = BaseRecord::<[u8], [u8]>::to(&self.output.topic).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        loop {
            match producer.send(record) {
                Ok(()) => {
                    producer.poll(Duration::ZERO);
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // Backpressure: wait for deliveries to free the queue.
                    record = r;
                    producer.poll(Duration::from_millis(50));
                    if let Some(refusal) = producer.context().health.refusal() {
                        return Err(self.error(refusal));
                    }
                }
                Err((e, _)) => return Err(self.error(format!("cannot send: {e}"))),
            }
        }
    }
}

impl Sink for KafkaSink {
    fn start(&mut self, schema: &SchemaRef) -> Result<(), EngineError> {
        self.key = match &self.output.key {
            None => None,
            Some(k) => Some(
                schema
                    .fields()
                    .iter()
                    .position(|f| f.name().eq_ignore_ascii_case(k))
                    .ok_or_else(|| {
                        self.error(format!(
                            "key `{k}` is not a column of the output (its columns: {})",
                            schema
                                .fields()
                                .iter()
                                .map(|f| f.name().as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })?,
            ),
        };
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.output.brokers)
            .set("client.id", format!("iotql-{}", self.name))
            .set("enable.idempotence", "true")
            // Never give up on a message: an outage makes the job wait.
            .set("message.timeout.ms", "0")
            .set("linger.ms", "5");
        for (k, v) in &self.output.settings {
            config.set(k, v);
        }
        let ctx = ProducerCtx {
            health: Health::new(format!("output `{}`", self.name)),
            failure: Mutex::new(None),
        };
        self.producer = Some(config.create_with_context(ctx).map_err(|e| {
            self.error(format!(
                "cannot create the Kafka producer: {}",
                config_error(&e)
            ))
        })?);
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        let lines = crate::file::jsonl::json_lines(batch).map_err(|e| self.error(e))?;
        let keys: Option<Vec<Option<String>>> = match self.key {
            None => None,
            Some(i) => {
                let column = batch.column(i);
                Some(
                    (0..batch.num_rows())
                        .map(|r| {
                            (!column.is_null(r))
                                .then(|| array_value_to_string(column, r).ok())
                                .flatten()
                        })
                        .collect(),
                )
            }
        };
        for (row, line) in lines
            .split(|&b| b == b'\n')
            .take(batch.num_rows())
            .enumerate()
        {
            let key = keys
                .as_ref()
                .and_then(|k| k[row].as_deref())
                .map(str::as_bytes);
            self.send(key, line)?;
        }
        Ok(())
    }

    /// A message that is not a row (the simulator's malformed events),
    /// sent as it is, without a key.
    fn write_raw(&mut self, payload: &[u8]) -> Result<(), EngineError> {
        self.send(None, payload)
    }

    fn flush(&mut self) -> Result<(), EngineError> {
        if self.producer.is_none() {
            // Finished: everything was flushed then.
            return Ok(());
        }
        let producer = self.producer()?;
        let started = Instant::now();
        loop {
            match producer.flush(FLUSH_REPORT) {
                Ok(()) => break,
                Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) => {
                    if let Some(refusal) = producer.context().health.refusal() {
                        return Err(self.error(refusal));
                    }
                    tracing::warn!(
                        "output `{}`: {} messages not yet acknowledged after {:?}; still waiting for the brokers",
                        self.name,
                        producer.in_flight_count(),
                        started.elapsed()
                    );
                }
                Err(e) => return Err(self.error(format!("flush: {e}"))),
            }
        }
        // A delivery that failed while flushing.
        self.producer().map(|_| ())
    }

    fn finish(&mut self) -> Result<(), EngineError> {
        if self.producer.is_some() {
            self.flush()?;
        }
        self.producer = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_and_options() {
        let input = KafkaInput::from_uri(
            "127.0.0.1:9092/readings?group_id=g1&start=earliest&until=end&session.timeout.ms=6000",
        )
        .expect("uri");
        assert_eq!(input.brokers, "127.0.0.1:9092");
        assert_eq!(input.topics, vec!["readings"]);
        assert_eq!(input.group_id.as_deref(), Some("g1"));
        assert_eq!(input.start, StartPosition::Earliest);
        assert!(input.until_end);
        assert_eq!(
            input.settings.get("session.timeout.ms").map(String::as_str),
            Some("6000")
        );
        let input = KafkaInput::from_uri("a:1,b:2/t1,t2?start=2026-01-01T00:00:00Z").expect("uri");
        assert_eq!(input.topics, vec!["t1", "t2"]);
        assert_eq!(input.start, StartPosition::Time(1_767_225_600_000));
        assert!(
            KafkaInput::from_uri("a:1/t?grup=x")
                .unwrap_err()
                .contains("unknown Kafka option `grup`")
        );
        assert!(KafkaInput::from_uri("a:1").is_err());
        assert!(KafkaInput::from_uri("a:1/t1,t2?until=end").is_err());
        assert!(KafkaInput::from_uri("a:1/t?start=yesterday").is_err());
        let output =
            KafkaOutput::from_uri("h:9/alerts?key=device_id&compression.type=zstd").expect("uri");
        assert_eq!(output.key.as_deref(), Some("device_id"));
        assert_eq!(
            output.settings.get("compression.type").map(String::as_str),
            Some("zstd")
        );
    }

    #[test]
    fn security_options_map_to_librdkafka_settings() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["ca.pem", "client.pem", "client.key"] {
            std::fs::write(dir.path().join(f), "-----BEGIN CERTIFICATE-----\n").unwrap();
        }
        let options = crate::endpoint::options(&[
            ("connector", "kafka"),
            ("brokers", "b:9093"),
            ("topic", "t"),
            ("security_protocol", "SASL_SSL"),
            ("sasl_mechanism", "scram-sha-512"),
            ("sasl_username", "iot"),
            ("sasl_password", "hunter2"),
            ("ssl_ca", "ca.pem"),
            ("ssl_certificate", "client.pem"),
            ("ssl_key", "client.key"),
            ("ssl_key_password", "keypass"),
        ]);
        let input = KafkaInput::from_options(&options, dir.path()).unwrap();
        let get = |k: &str| input.settings.get(k).map(String::as_str);
        assert_eq!(get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(get("sasl.username"), Some("iot"));
        assert_eq!(get("sasl.password"), Some("hunter2"));
        assert_eq!(get("ssl.key.password"), Some("keypass"));
        let ca = dir.path().join("ca.pem").display().to_string();
        assert_eq!(get("ssl.ca.location"), Some(ca.as_str()));
        assert!(get("ssl.certificate.location").is_some_and(|p| p.ends_with("client.pem")));
        assert!(get("ssl.key.location").is_some_and(|p| p.ends_with("client.key")));
        let shown = format!("{input:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("keypass"),
            "{shown}"
        );
        let output = KafkaOutput::from_options(&options, dir.path()).unwrap();
        assert_eq!(output.settings, input.settings);
        assert!(!format!("{output:?}").contains("hunter2"));

        // PLAIN by default; by URI too.
        let input = KafkaInput::from_uri(
            "b:9093/t?security_protocol=sasl_plaintext&sasl_username=u&sasl_password=p",
        )
        .unwrap();
        assert_eq!(input.settings.get("sasl.mechanisms").unwrap(), "PLAIN");

        let refused = |pairs: &[(&str, &str)]| {
            let mut all = vec![("connector", "kafka"), ("brokers", "b:1"), ("topic", "t")];
            all.extend_from_slice(pairs);
            KafkaInput::from_options(&crate::endpoint::options(&all), dir.path()).unwrap_err()
        };
        let e = refused(&[("security_protocol", "tls")]);
        assert!(
            e.contains("plaintext, ssl, sasl_plaintext, sasl_ssl"),
            "{e}"
        );
        let e = refused(&[("sasl_username", "u"), ("sasl_password", "hunter2")]);
        assert!(e.contains("sasl_ssl") && !e.contains("hunter2"), "{e}");
        let e = refused(&[("security_protocol", "sasl_ssl"), ("sasl_username", "u")]);
        assert!(e.contains("sasl_password"), "{e}");
        let e = refused(&[
            ("security_protocol", "sasl_ssl"),
            ("sasl_mechanism", "GSSAPI"),
            ("sasl_username", "u"),
            ("sasl_password", "p"),
        ]);
        assert!(e.contains("SCRAM-SHA-256"), "{e}");
        let e = refused(&[("ssl_ca", "ca.pem")]);
        assert!(e.contains("'ssl' or 'sasl_ssl'"), "{e}");
        let e = refused(&[("security_protocol", "ssl"), ("ssl_ca", "nope.pem")]);
        assert!(e.contains("no such file"), "{e}");
        let e = refused(&[("security_protocol", "ssl"), ("ssl_key", "client.key")]);
        assert!(e.contains("go together"), "{e}");
        let e = refused(&[
            ("security_protocol", "sasl_ssl"),
            ("sasl_username", "u"),
            ("sasl_password", "p"),
            ("sasl.password", "p"),
        ]);
        assert!(e.contains("not both"), "{e}");
    }

    #[test]
    fn a_config_error_does_not_quote_a_secret_value() {
        let e = KafkaError::ClientConfig(
            rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value".into(),
            "sasl.password".into(),
            "hunter2".into(),
        );
        let shown = config_error(&e);
        assert!(
            !shown.contains("hunter2") && shown.contains("sasl.password"),
            "{shown}"
        );
    }

    #[test]
    fn positions_round_trip() {
        for (t, p, o) in [
            (0, 0, 0),
            (3, 17, 123_456_789),
            (255, 65_535, (1 << 40) - 1),
        ] {
            assert_eq!(decode_position(encode(t, p, o)), (t, p, o));
        }
    }
}
