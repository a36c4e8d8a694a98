//! The control topic of a Kafka output's transactions (`commit_topic`,
//! default `iotql-commits`, one partition): at each checkpoint the output
//! writes, inside the transaction that holds the checkpoint's rows, a
//! marker record whose key is the output's scope (a stable name of the job,
//! its state folder and the output) and whose value is the checkpoint's
//! sequence number and the run that took it. The marker is visible to a
//! `read_committed` reader exactly when the rows are: a resuming run reads
//! the topic's last records to decide whether the checkpoint it resumes
//! from was committed ([`is_committed`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode as Code;

/// One checkpoint's marker: its sequence number among the output's
/// checkpoints, and the run that wrote it (a run resumed from an older
/// checkpoint numbers its checkpoints again from there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Marker {
    pub seq: u64,
    pub run: u64,
}

impl Marker {
    /// 16 bytes: the sequence and the run, little-endian. Also the output's
    /// state in the checkpoint.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = self.seq.to_le_bytes().to_vec();
        out.extend_from_slice(&self.run.to_le_bytes());
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<Marker> {
        let seq = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let run = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
        (bytes.len() == 16).then_some(Marker { seq, run })
    }
}

/// How many records a look at the control topic reads at a time, from its
/// end backwards.
const WINDOW: i64 = 1000;

/// How long a look at the control topic may take before it is reported as
/// an error (the brokers answer but the reads do not end).
const LOOK_LIMIT: Duration = Duration::from_secs(120);

/// Creates the control topic with one partition if it is missing (a topic
/// that exists is left as it is).
pub(super) fn ensure_topic(settings: &BTreeMap<String, String>, topic: &str) -> Result<(), String> {
    let mut config = ClientConfig::new();
    for (k, v) in settings {
        config.set(k, v);
    }
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(|e| format!("cannot create a Kafka admin client: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| format!("cannot start the admin client's runtime: {e}"))?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let created = runtime.block_on(admin.create_topics(
        &[NewTopic::new(topic, 1, TopicReplication::Fixed(-1))],
        &options,
    ));
    let results = created.map_err(|e| format!("cannot create the control topic `{topic}`: {e}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, Code::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(format!(
                    "cannot create the control topic `{topic}` (commit_topic): {code}; create it with one partition"
                ));
            }
        }
    }
    Ok(())
}

/// Whether `marker` of `scope` is in the control topic for a
/// `read_committed` reader: its transaction was committed. Reads the
/// topic's records from the end backwards, a window at a time, until the
/// marker, or an older marker of the scope (the sequence below), or the
/// topic's beginning.
pub(super) fn is_committed(
    settings: &BTreeMap<String, String>,
    topic: &str,
    scope: &str,
    marker: Marker,
) -> Result<bool, String> {
    let mut config = ClientConfig::new();
    for (k, v) in settings {
        config.set(k, v);
    }
    config
        .set("group.id", format!("{scope}-check"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed");
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| format!("cannot create a Kafka consumer for `{topic}`: {e}"))?;
    let (low, high) = match consumer.fetch_watermarks(topic, 0, Duration::from_secs(30)) {
        Ok(w) => w,
        // No control topic yet: no transaction was ever committed with a marker.
        Err(e) if is_missing(&e) => return Ok(false),
        Err(e) => return Err(format!("cannot read the control topic `{topic}`: {e}")),
    };
    let mut end = high;
    while end > low {
        let from = (end - WINDOW).max(low);
        let records = read_window(&consumer, topic, from, end)?;
        for (key, value) in records.iter().rev() {
            if key.as_slice() != scope.as_bytes() {
                continue;
            }
            match Marker::decode(value) {
                Some(m) if m == marker => return Ok(true),
                // Markers of a scope follow their sequence: past an older
                // one, this one cannot come.
                Some(m) if m.seq < marker.seq => return Ok(false),
                _ => {}
            }
        }
        end = from;
    }
    Ok(false)
}

fn is_missing(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic)
    )
}

/// A record of the control topic: its key and value.
type Record = (Vec<u8>, Vec<u8>);

/// The committed records of the control topic from offset `from` up to
/// `end` (or to the end of what is committed): (key, value).
fn read_window(
    consumer: &BaseConsumer,
    topic: &str,
    from: i64,
    end: i64,
) -> Result<Vec<Record>, String> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(from))
        .map_err(|e| format!("control topic `{topic}`: {e}"))?;
    consumer
        .assign(&tpl)
        .map_err(|e| format!("cannot read the control topic `{topic}`: {e}"))?;
    let started = Instant::now();
    let mut records = Vec::new();
    loop {
        if started.elapsed() > LOOK_LIMIT {
            return Err(format!(
                "reading the control topic `{topic}` from offset {from} did not end in {LOOK_LIMIT:?}"
            ));
        }
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Ok(m)) => {
                if m.offset() >= end {
                    break;
                }
                records.push((
                    m.key().map(<[u8]>::to_vec).unwrap_or_default(),
                    m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                ));
                if m.offset() + 1 >= end {
                    break;
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) if super::is_outage(&e) => {}
            Some(Err(e)) => return Err(format!("reading the control topic `{topic}`: {e}")),
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_round_trips_and_refuses_other_bytes() {
        let m = Marker { seq: 42, run: 7 };
        assert_eq!(Marker::decode(&m.encode()), Some(m));
        assert_eq!(Marker::decode(&[0; 15]), None);
        assert_eq!(Marker::decode(&[0; 17]), None);
    }
}
