//! The Kafka input: a consumer in a group, whose batches carry the next
//! offset of every partition read (their resume position), so that a job
//! resuming from a checkpoint reads each partition from where the
//! checkpoint's events end, whatever offsets the group committed since.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iotql_engine::arrow::datatypes::SchemaRef;
use iotql_engine::error::EngineError;
use iotql_engine::io::{Committer, Source, SourceBatch};
use iotql_engine::metrics::SourceMetrics;
use iotql_engine::time::EventTime;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;

use super::{Health, KafkaInput, StartPosition, config_error, forward_log, is_outage};
use crate::message::{DecoderConfig, MessageDecoder, MessageFormat, Received, now_micros};

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

/// A resume position's first bytes: what it is and its layout's version.
const RESUME_TAG: &[u8; 3] = b"KR1";

/// Encodes the next offset of each partition as a resume position: per
/// topic, its name (u16 length and UTF-8), its number of partitions (u32)
/// and each partition (i32) with its next offset (i64), little-endian.
/// Topics go by name, so a job may list its topics in another order.
fn encode_resume(positions: &BTreeMap<(String, i32), i64>) -> Vec<u8> {
    let mut by_topic: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for ((topic, partition), offset) in positions {
        by_topic
            .entry(topic)
            .or_default()
            .push((*partition, *offset));
    }
    let mut out = RESUME_TAG.to_vec();
    for (topic, partitions) in by_topic {
        out.extend_from_slice(&(topic.len() as u16).to_le_bytes());
        out.extend_from_slice(topic.as_bytes());
        out.extend_from_slice(&(partitions.len() as u32).to_le_bytes());
        for (partition, offset) in partitions {
            out.extend_from_slice(&partition.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
        }
    }
    out
}

/// Reads what [`encode_resume`] wrote.
fn decode_resume(bytes: &[u8]) -> Result<BTreeMap<(String, i32), i64>, String> {
    let not_ours = || "the checkpoint's position is not a Kafka position".to_string();
    let mut rest = bytes.strip_prefix(&RESUME_TAG[..]).ok_or_else(not_ours)?;
    let mut take = |n: usize| -> Result<&[u8], String> {
        if rest.len() < n {
            return Err(format!("{} (it is cut short)", not_ours()));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let mut positions = BTreeMap::new();
    while let Ok(len) = take(2) {
        let len = u16::from_le_bytes([len[0], len[1]]) as usize;
        let topic = String::from_utf8(take(len)?.to_vec()).map_err(|_| not_ours())?;
        let count = take(4)?;
        let count = u32::from_le_bytes([count[0], count[1], count[2], count[3]]);
        for _ in 0..count {
            let entry = take(12)?;
            let mut partition = [0; 4];
            partition.copy_from_slice(&entry[..4]);
            let mut offset = [0; 8];
            offset.copy_from_slice(&entry[4..]);
            positions.insert(
                (topic.clone(), i32::from_le_bytes(partition)),
                i64::from_le_bytes(offset),
            );
        }
    }
    Ok(positions)
}

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
    /// The next offset of each partition this process has read (or, not
    /// read yet, where it starts).
    read: Positions,
    /// The next offset of each partition in the checkpoint the job resumes
    /// from ([`Source::seek`]): where such a partition starts when assigned.
    checkpointed: Positions,
    /// Where each partition assigned for the first time starts, as an
    /// offset, for the source's resume position (taken by the source).
    started: Positions,
    /// Read positions after each batch (by mark), not yet committed.
    marks: VecDeque<(u64, Positions)>,
}

#[derive(Debug)]
struct ConsumerCtx {
    health: Health,
    state: Mutex<ConsumerState>,
    /// Each assigned partition's lag, from librdkafka's statistics.
    metrics: Arc<SourceMetrics>,
    /// Whether the consumer reads committed messages only (librdkafka's
    /// default `isolation.level`): a partition then ends at its last
    /// stable offset, not its high watermark.
    committed_only: bool,
    /// The source is closed: the lags stay as they were when it stopped
    /// (the run summary shows them), not forgotten when closing revokes
    /// the partitions.
    closed: AtomicBool,
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

    /// librdkafka's statistics (every `statistics.interval.ms`, served by
    /// `poll` on the reader's thread): each assigned partition's lag.
    fn stats_raw(&self, statistics: &[u8]) {
        match serde_json::from_slice::<Statistics>(statistics) {
            Ok(stats) => self.update_lags(&stats),
            Err(e) => tracing::debug!(
                "{}: cannot read librdkafka's statistics: {e}",
                self.health.what
            ),
        }
    }
}

/// The part of librdkafka's statistics (its STATISTICS.md) that the lag
/// is made of; the rest of the document is skipped.
#[derive(Debug, serde::Deserialize)]
struct Statistics {
    #[serde(default)]
    topics: HashMap<String, TopicStatistics>,
}

#[derive(Debug, serde::Deserialize)]
struct TopicStatistics {
    #[serde(default)]
    partitions: HashMap<String, PartitionStatistics>,
}

/// Offsets as librdkafka knows them (negative: not known yet).
#[derive(Debug, serde::Deserialize)]
struct PartitionStatistics {
    /// -1 is librdkafka's internal "unassigned" partition.
    partition: i32,
    /// The high watermark, from the last fetch response.
    hi_offset: i64,
    /// The last stable offset (the end for read_committed).
    #[serde(default = "unknown_offset")]
    ls_offset: i64,
    /// The offset at which the partition's end was last reported.
    #[serde(default = "unknown_offset")]
    eof_offset: i64,
}

fn unknown_offset() -> i64 {
    -1
}

/// A partition's lag: messages from `read` (the next offset the input
/// takes) to `end` (the offset after the partition's last message, as of
/// the last fetch). `None` while either is unknown. A partition whose end
/// was reported at or past `end` is read to its end: 0, also where `end`
/// counts a transaction's commit marker, which is no message to read.
fn partition_lag(end: i64, read: Option<i64>, eof: i64) -> Option<u64> {
    if end < 0 {
        return None;
    }
    if eof >= end {
        return Some(0);
    }
    read.map(|read| end.saturating_sub(read).max(0) as u64)
}

impl ConsumerCtx {
    /// Sets each partition's lag from `stats` and the input's read
    /// positions, and forgets partitions no longer assigned. The
    /// statistics come through the consumer's queue after the messages
    /// fetched before them, so the positions are taken when they are
    /// served, not from the statistics: what was fetched then is read by
    /// now, and the lag counts what is left on the broker.
    fn update_lags(&self, stats: &Statistics) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let Ok(state) = self.state.lock() else {
            return;
        };
        for (topic, t) in &stats.topics {
            for p in t.partitions.values().filter(|p| p.partition >= 0) {
                let key = (topic.clone(), p.partition);
                let lag = if state.assigned.contains(&key) {
                    let end = if self.committed_only && p.ls_offset >= 0 {
                        p.ls_offset
                    } else {
                        p.hi_offset
                    };
                    partition_lag(end, state.read.get(&key).copied(), p.eof_offset)
                } else {
                    None
                };
                self.metrics.set_lag(topic, p.partition, lag);
            }
        }
    }

    /// Sets where the assigned partitions start: a partition this process
    /// has read before resumes where it stopped (its events are in the
    /// dataflow's state, even when a commit was lost to an outage; a broker
    /// that lost the data answers out of range and librdkafka starts from
    /// the earliest); else a partition of the checkpoint the job resumes
    /// from starts at the checkpoint's offset; else it starts at the
    /// input's start position, found as an offset ([`ConsumerCtx::resolve`]).
    fn place(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let mut fresh = TopicPartitionList::new();
        for e in tpl.elements() {
            let p = (e.topic().to_string(), e.partition());
            let known = state.read.get(&p).or_else(|| state.checkpointed.get(&p));
            if known.is_none() && !state.seen.contains(&p) {
                fresh.add_partition(&p.0, p.1);
            }
        }
        let mut placed: Vec<((String, i32), i64)> = tpl
            .elements()
            .iter()
            .filter_map(|e| {
                let p = (e.topic().to_string(), e.partition());
                let next = state.read.get(&p).or_else(|| state.checkpointed.get(&p))?;
                Some((p, *next))
            })
            .collect();
        let starts = self.resolve(consumer, state.start, &fresh);
        for (p, offset) in &starts {
            state.started.insert(p.clone(), *offset);
            state.read.insert(p.clone(), *offset);
        }
        placed.extend(starts);
        for e in fresh.elements() {
            state.seen.insert((e.topic().to_string(), e.partition()));
        }
        for ((topic, partition), next) in placed {
            state.seen.insert((topic.clone(), partition));
            if let Err(err) = tpl.set_partition_offset(&topic, partition, Offset::Offset(next)) {
                tracing::warn!(
                    "{}: cannot place {topic}/{partition} at offset {next}: {err}",
                    self.health.what
                );
            }
        }
    }

    /// The offset at which each of `fresh`'s partitions starts by `start`:
    /// the group's committed offset (the earliest where it has none), the
    /// earliest, the latest, or the first at or after a time. An offset,
    /// not a place such as "the latest", so that a checkpoint taken before
    /// the partition's first message still says where it began. A
    /// partition whose offset the brokers cannot tell now is left to
    /// librdkafka (its start is then not in the resume position).
    fn resolve(
        &self,
        consumer: &BaseConsumer<Self>,
        start: StartPosition,
        fresh: &TopicPartitionList,
    ) -> Vec<((String, i32), i64)> {
        const ASK: Duration = Duration::from_secs(30);
        if fresh.count() == 0 {
            return Vec::new();
        }
        let found = match start {
            StartPosition::Committed => consumer.committed_offsets(fresh.clone(), ASK),
            StartPosition::Time(ms) => {
                let mut wanted = TopicPartitionList::new();
                for e in fresh.elements() {
                    let _ =
                        wanted.add_partition_offset(e.topic(), e.partition(), Offset::Offset(ms));
                }
                consumer.offsets_for_times(wanted, ASK)
            }
            StartPosition::Earliest | StartPosition::Latest => Ok(fresh.clone()),
        };
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(
                    "{}: cannot find where the new partitions start ({e}); librdkafka places them",
                    self.health.what
                );
                return Vec::new();
            }
        };
        let mut starts = Vec::new();
        for e in found.elements() {
            let watermarks = || consumer.fetch_watermarks(e.topic(), e.partition(), ASK);
            let offset = match (start, e.offset()) {
                (StartPosition::Committed | StartPosition::Time(_), Offset::Offset(n)) => Ok(n),
                // No committed offset: librdkafka's reset is to the earliest.
                (StartPosition::Committed | StartPosition::Earliest, _) => {
                    watermarks().map(|(low, _)| low)
                }
                // After the last message (or no message at the time).
                (StartPosition::Latest | StartPosition::Time(_), _) => {
                    watermarks().map(|(_, high)| high)
                }
            };
            match offset {
                Ok(n) => starts.push(((e.topic().to_string(), e.partition()), n)),
                Err(err) => tracing::warn!(
                    "{}: cannot find where {}/{} starts ({err}); librdkafka places it",
                    self.health.what,
                    e.topic(),
                    e.partition()
                ),
            }
        }
        starts
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
    /// The next offset of every partition in the batches handed out (or
    /// where it starts, or the checkpoint's offset): the resume position.
    positions: BTreeMap<(String, i32), i64>,
    /// Whether a batch has told where the partitions start: the first
    /// batch with a resume position has no events, so that a checkpoint
    /// taken right after it covers nothing read yet.
    told_start: bool,
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
            .set("session.timeout.ms", "10000")
            // Partition offsets for the lag (SourceMetrics), once a second.
            .set("statistics.interval.ms", "1000");
        for (k, v) in &input.settings {
            config.set(k, v);
        }
        let ctx = ConsumerCtx {
            health: Health::new(format!("input `{name}`"), None),
            metrics: Arc::new(SourceMetrics::default()),
            committed_only: config.get("isolation.level") != Some("read_uncommitted"),
            closed: AtomicBool::new(false),
            state: Mutex::new(ConsumerState {
                start: input.start,
                seen: BTreeSet::new(),
                assigned: BTreeSet::new(),
                assignment: 0,
                read: HashMap::new(),
                checkpointed: HashMap::new(),
                started: HashMap::new(),
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
            positions: BTreeMap::new(),
            told_start: false,
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

impl KafkaSource {
    /// Takes where newly assigned partitions start into the resume position
    /// (a partition of the checkpoint keeps the checkpoint's offset).
    fn take_starts(&mut self) {
        if let Ok(mut state) = self.reader.consumer.context().state.lock() {
            for (p, offset) in state.started.drain() {
                self.positions.entry(p).or_insert(offset);
            }
        }
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
        self.take_starts();
        if !self.told_start && !self.positions.is_empty() {
            // The partitions are placed: say where they start before
            // handing out their first events (these wait for the next batch).
            self.told_start = true;
            for m in messages.drain(..).rev() {
                self.early.push_front(m);
            }
        }
        for m in &messages {
            let (t, partition, offset) = decode_position(m.position);
            if let Some(topic) = self.reader.topics.get(t) {
                self.positions
                    .insert((topic.clone(), partition), offset + 1);
            }
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
        if self.told_start {
            batch.resume = Some(encode_resume(&self.positions));
        }
        Ok(Some(batch))
    }

    fn progress(&self) -> (u64, Option<u64>) {
        (self.reader.bytes, None)
    }

    /// Continues after the checkpoint's events: each partition of the
    /// position starts at its offset when assigned. Partitions assigned
    /// already (the messages read to learn the columns from) are moved back
    /// there, and those messages dropped.
    fn seek(&mut self, position: &[u8]) -> Result<(), EngineError> {
        let error = |message: String| EngineError::Source {
            input: self.reader.name.clone(),
            message,
        };
        let checkpointed = decode_resume(position).map_err(error)?;
        let assigned: Vec<((String, i32), i64)> = {
            let mut state = self
                .reader
                .consumer
                .context()
                .state
                .lock()
                .map_err(|_| error("the consumer's state lock is poisoned".into()))?;
            state.checkpointed = checkpointed.clone().into_iter().collect();
            let targets: Vec<((String, i32), i64)> = state
                .assigned
                .iter()
                .filter_map(|p| {
                    let next = checkpointed.get(p).or_else(|| state.started.get(p))?;
                    Some((p.clone(), *next))
                })
                .collect();
            for (p, next) in &targets {
                state.read.insert(p.clone(), *next);
                state.at_end.remove(&p.1);
            }
            targets
        };
        self.early.clear();
        for ((topic, partition), next) in assigned {
            self.reader
                .consumer
                .seek(
                    &topic,
                    partition,
                    Offset::Offset(next),
                    Duration::from_secs(30),
                )
                .map_err(|e| {
                    error(format!(
                        "cannot move {topic}/{partition} to the checkpoint's offset {next}: {e}"
                    ))
                })?;
        }
        self.positions = checkpointed;
        Ok(())
    }

    fn metrics(&self) -> Option<Arc<SourceMetrics>> {
        Some(self.reader.consumer.context().metrics.clone())
    }

    fn committer(&self) -> Option<Box<dyn Committer>> {
        Some(Box::new(KafkaCommitter {
            consumer: self.reader.consumer.clone(),
            topics: self.reader.topics.clone(),
        }))
    }
}

impl Drop for KafkaSource {
    /// Keeps the lags as they are while the consumer closes (and serves
    /// its last statistics after giving up its partitions).
    fn drop(&mut self) {
        self.reader
            .consumer
            .context()
            .closed
            .store(true, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_read_position_to_the_end() {
        assert_eq!(partition_lag(100, Some(40), -1), Some(60));
        assert_eq!(partition_lag(100, Some(100), -1), Some(0));
        // Read past the end of the last statistics: nothing left.
        assert_eq!(partition_lag(100, Some(130), -1), Some(0));
        // The end or the position not known yet.
        assert_eq!(partition_lag(-1001, Some(40), -1), None);
        assert_eq!(partition_lag(100, None, -1), None);
        // Read to the end, whose offset counts a commit marker.
        assert_eq!(partition_lag(101, Some(100), 101), Some(0));
        // Messages came after the end was reported.
        assert_eq!(partition_lag(150, Some(101), 101), Some(49));
    }

    #[test]
    fn lags_are_read_from_librdkafka_statistics() {
        let json = br#"{"name":"c","brokers":{},"topics":{"readings":{"topic":"readings",
            "partitions":{"0":{"partition":0,"hi_offset":120,"ls_offset":110,"eof_offset":-1},
            "1":{"partition":1,"hi_offset":50,"ls_offset":50,"eof_offset":-1},
            "-1":{"partition":-1,"hi_offset":-1001,"ls_offset":-1001,"eof_offset":-1001}}}}}"#;
        let stats: Statistics = serde_json::from_slice(json).expect("statistics");
        let ctx = |committed_only| ConsumerCtx {
            health: Health::new("input `t`".into(), None),
            state: Mutex::new(ConsumerState {
                start: StartPosition::Earliest,
                seen: BTreeSet::new(),
                // Partition 1 is another consumer's.
                assigned: [("readings".to_string(), 0)].into_iter().collect(),
                assignment: 1,
                at_end: HashSet::new(),
                read: [(("readings".to_string(), 0), 100)].into_iter().collect(),
                checkpointed: HashMap::new(),
                started: HashMap::new(),
                marks: VecDeque::new(),
            }),
            metrics: Arc::new(SourceMetrics::default()),
            committed_only,
            closed: AtomicBool::new(false),
        };
        for (committed_only, lag) in [(true, 10), (false, 20)] {
            let ctx = ctx(committed_only);
            ctx.metrics.set_lag("readings", 1, Some(7));
            ctx.update_lags(&stats);
            let lags = ctx.metrics.lags();
            assert_eq!(lags.len(), 1, "{lags:?}");
            assert_eq!((lags[0].partition, lags[0].lag), (0, lag));
        }
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

    #[test]
    fn resume_positions_round_trip_by_topic_name() {
        let mut positions = BTreeMap::new();
        positions.insert(("readings".to_string(), 0), 17);
        positions.insert(("readings".to_string(), 2), 1 << 40);
        positions.insert(("états".to_string(), 1), 0);
        let bytes = encode_resume(&positions);
        assert_eq!(decode_resume(&bytes), Ok(positions));
        assert_eq!(decode_resume(RESUME_TAG), Ok(BTreeMap::new()));
        assert!(decode_resume(&bytes[..bytes.len() - 3]).is_err());
        assert!(decode_resume(b"file position").is_err());
    }
}
