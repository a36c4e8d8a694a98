//! The Kafka side of `bench/kafka.sh`: creates the benchmark's topics, and
//! measures the latency of a live `iotql run` job from a produce to the
//! alert it writes.
//!
//!     cargo run --release -p iotql-cli --example kafka_bench -- \
//!         create-topics --brokers 127.0.0.1:9092 --partitions 4 readings alerts
//!     cargo run --release -p iotql-cli --example kafka_bench -- \
//!         latency --brokers 127.0.0.1:9092 --input lat_in --output lat_out \
//!         --rate 10000 --warmup 5 --duration 30
//!
//! `latency` produces JSON readings to `--input` at a fixed rate (a warm-up,
//! then the measured phase), every one carrying `sent_at`, the epoch
//! milliseconds right before its produce; a share of them are alerts
//! (`temperature_c` 35). A probe consumer reads `--output`, where the job
//! writes the alerts with their `sent_at`, and for each alert of the measured
//! phase takes two delays: the output message's timestamp (librdkafka's
//! CreateTime: when iotql produced it) minus `sent_at`, and the time the probe
//! received it minus `sent_at`. It prints count, p50, p90, p99 and max of both.
//!
//! The load generator batches as librdkafka does by default (`linger.ms` 5,
//! `--linger-ms`): `sent_at` is taken before that wait, so it is in the
//! figures, as a device's or gateway's producer batching would be.

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Timestamp;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

#[derive(Debug, Parser)]
#[command(about = "Topics and the produce-to-alert latency probe of bench/kafka.sh")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Creates topics (an existing topic is left as it is).
    CreateTopics {
        #[arg(long)]
        brokers: String,
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        topics: Vec<String>,
    },
    /// Produces readings at a fixed rate and measures when their alerts come out.
    Latency {
        #[arg(long)]
        brokers: String,
        /// The topic the job reads.
        #[arg(long)]
        input: String,
        /// The topic the job writes its alerts to.
        #[arg(long)]
        output: String,
        /// Events per second.
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        /// Seconds of load before the measured phase (its alerts are not counted).
        #[arg(long, default_value_t = 5)]
        warmup: u64,
        /// Seconds of the measured phase.
        #[arg(long, default_value_t = 30)]
        duration: u64,
        /// One event in this many is an alert.
        #[arg(long, default_value_t = 10)]
        alert_every: u64,
        /// Devices (message keys).
        #[arg(long, default_value_t = 1000)]
        devices: u64,
        /// The load generator's `linger.ms` (librdkafka's default is 5).
        #[arg(long, default_value_t = 5)]
        linger_ms: u64,
        /// Also write every measured alert as `sent_at,created,received` here.
        #[arg(long)]
        dump: Option<std::path::PathBuf>,
        /// Seconds to wait for the last alerts after the load stops.
        #[arg(long, default_value_t = 15)]
        drain: u64,
    },
}

fn main() -> Result<()> {
    match Args::parse().command {
        Command::CreateTopics {
            brokers,
            partitions,
            topics,
        } => create_topics(&brokers, partitions, &topics),
        Command::Latency {
            brokers,
            input,
            output,
            rate,
            warmup,
            duration,
            alert_every,
            devices,
            linger_ms,
            dump,
            drain,
        } => latency(&Load {
            brokers,
            input,
            output,
            rate: rate.max(1),
            warmup: Duration::from_secs(warmup),
            duration: Duration::from_secs(duration),
            alert_every: alert_every.max(1),
            devices: devices.max(1),
            linger_ms,
            dump,
            drain: Duration::from_secs(drain),
        }),
    }
}

fn create_topics(brokers: &str, partitions: i32, topics: &[String]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let results = futures_executor::block_on(admin.create_topics(
        &new,
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))?;
    for result in results {
        match result {
            Ok(topic) => eprintln!("kafka_bench: created {topic} ({partitions} partitions)"),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                eprintln!("kafka_bench: {topic} exists already");
            }
            Err((topic, code)) => return Err(format!("cannot create {topic}: {code}").into()),
        }
    }
    Ok(())
}

#[derive(Debug)]
struct Load {
    brokers: String,
    input: String,
    output: String,
    rate: u64,
    warmup: Duration,
    duration: Duration,
    alert_every: u64,
    devices: u64,
    linger_ms: u64,
    dump: Option<std::path::PathBuf>,
    drain: Duration,
}

fn epoch_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// One alert seen by the probe: its `sent_at`, its message timestamp and
/// when the probe received it (epoch milliseconds).
#[derive(Debug, Clone, Copy)]
struct Seen {
    sent_at: i64,
    created: Option<i64>,
    received: i64,
}

/// The probe: reads every partition of `topic` from its start until `stop`,
/// counting the alerts sent at or after `counted_from` (set by the producer
/// when the measured phase starts; `i64::MAX` until then).
fn probe(
    brokers: &str,
    topic: &str,
    counted_from: Arc<AtomicU64>,
    counted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<(Vec<Seen>, &'static str)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("kafka-bench-probe-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        // The probe's own fetch wait should add nothing to the receive delay.
        .set("fetch.wait.max.ms", "5")
        .set("session.timeout.ms", "6000")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    if tpl.count() == 0 {
        return Err(format!("topic {topic} has no partitions (create it first)").into());
    }
    consumer.assign(&tpl)?;
    let mut seen = Vec::new();
    let mut kind = "none";
    while !stop.load(Ordering::Relaxed) {
        let Some(polled) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let received = epoch_millis();
        let message = match polled {
            Ok(m) => m,
            Err(KafkaError::PartitionEOF(_)) => continue,
            Err(e) => return Err(format!("probe: {e}").into()),
        };
        let Some(sent_at) = message
            .payload()
            .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
            .and_then(|v| v.get("sent_at").and_then(serde_json::Value::as_i64))
        else {
            continue;
        };
        if sent_at < counted_from.load(Ordering::Relaxed) as i64 {
            continue;
        }
        let created = match message.timestamp() {
            Timestamp::CreateTime(ms) => {
                kind = "CreateTime";
                Some(ms)
            }
            Timestamp::LogAppendTime(ms) => {
                kind = "LogAppendTime";
                Some(ms)
            }
            Timestamp::NotAvailable => None,
        };
        seen.push(Seen {
            sent_at,
            created,
            received,
        });
        counted.fetch_add(1, Ordering::Relaxed);
    }
    Ok((seen, kind))
}

/// A reading as the job reads it; one in `alert_every` is too hot.
fn reading(i: u64, load: &Load, sent_at: i64) -> (String, String) {
    let device = format!("dev-{:04}", i % load.devices);
    let alert = i.is_multiple_of(load.alert_every);
    let temperature = if alert {
        35.0
    } else {
        20.0 + (i % 97) as f64 / 10.0
    };
    let ts = chrono::DateTime::from_timestamp_millis(sent_at)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let payload = format!(
        "{{\"device_id\":\"{device}\",\"ts\":\"{ts}\",\"temperature_c\":{temperature:.2},\"battery_pct\":80.0,\"sent_at\":{sent_at}}}"
    );
    (device, payload)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: f64) -> i64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn report(what: &str, mut delays: Vec<i64>) {
    if delays.is_empty() {
        println!("latency {what} count=0");
        return;
    }
    delays.sort_unstable();
    println!(
        "latency {what} count={} p50={} p90={} p99={} max={}",
        delays.len(),
        percentile(&delays, 0.50),
        percentile(&delays, 0.90),
        percentile(&delays, 0.99),
        delays[delays.len() - 1]
    );
}

/// The delays to the output's timestamp by 5 s of the measured phase, on
/// stderr: a delay that grows over the run is a backlog, a spike a stall.
fn timeline(seen: &[Seen], from: i64) {
    let mut buckets: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for s in seen {
        if let Some(c) = s.created {
            buckets
                .entry((s.sent_at - from) / 5000)
                .or_default()
                .push(c - s.sent_at);
        }
    }
    for (bucket, mut delays) in buckets {
        delays.sort_unstable();
        eprintln!(
            "kafka_bench: sent {:>3}-{:<3} s: {:>6} alerts, delay ms p50 {:>5} p99 {:>5} max {:>5}",
            bucket * 5,
            bucket * 5 + 5,
            delays.len(),
            percentile(&delays, 0.5),
            percentile(&delays, 0.99),
            delays[delays.len() - 1]
        );
    }
}

fn latency(load: &Load) -> Result<()> {
    let counted_from = Arc::new(AtomicU64::new(i64::MAX as u64));
    let counted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (brokers, topic) = (load.brokers.clone(), load.output.clone());
        let (from, counted, stop) = (counted_from.clone(), counted.clone(), stop.clone());
        thread::spawn(move || probe(&brokers, &topic, from, counted, stop))
    };

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &load.brokers)
        .set("linger.ms", load.linger_ms.to_string())
        .create()?;
    let started = Instant::now();
    let total = load.warmup + load.duration;
    let mut sent = 0u64;
    let mut measured_first: Option<u64> = None;
    let mut measured_alerts = 0u64;
    let mut measured_since = started;
    loop {
        let elapsed = started.elapsed();
        if elapsed >= total {
            break;
        }
        if measured_first.is_none() && elapsed >= load.warmup {
            measured_first = Some(sent);
            measured_since = Instant::now();
            counted_from.store(epoch_millis() as u64, Ordering::Relaxed);
        }
        let due = (elapsed.as_secs_f64() * load.rate as f64) as u64;
        while sent < due {
            let sent_at = epoch_millis();
            let (key, payload) = reading(sent, load, sent_at);
            let record = BaseRecord::to(&load.input).key(&key).payload(&payload);
            match producer.send(record) {
                Ok(()) => {}
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(10));
                    continue;
                }
                Err((e, _)) => return Err(format!("produce: {e}").into()),
            }
            if measured_first.is_some() && sent.is_multiple_of(load.alert_every) {
                measured_alerts += 1;
            }
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        thread::sleep(Duration::from_micros(500));
    }
    let measured_secs = measured_since.elapsed().as_secs_f64();
    producer.flush(Duration::from_secs(30))?;
    let measured = sent - measured_first.unwrap_or(sent);
    eprintln!(
        "kafka_bench: produced {sent} events in {:.1} s; {measured} in the measured {measured_secs:.1} s ({:.0} events/s), {measured_alerts} of them alerts",
        started.elapsed().as_secs_f64(),
        measured as f64 / measured_secs.max(1e-9),
    );

    let waiting = Instant::now();
    while counted.load(Ordering::Relaxed) < measured_alerts && waiting.elapsed() < load.drain {
        thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let (seen, kind) = prober.join().map_err(|_| "the probe thread panicked")??;
    eprintln!(
        "kafka_bench: {} of {measured_alerts} alerts received (output timestamps: {kind})",
        seen.len()
    );
    println!(
        "load rate={:.0} measured_events={measured} alerts_expected={measured_alerts} alerts_received={}",
        measured as f64 / measured_secs.max(1e-9),
        seen.len()
    );
    timeline(&seen, counted_from.load(Ordering::Relaxed) as i64);
    if let Some(path) = &load.dump {
        let mut text = String::from("sent_at,created,received\n");
        for s in &seen {
            let created = s.created.map(|c| c.to_string()).unwrap_or_default();
            text.push_str(&format!("{},{created},{}\n", s.sent_at, s.received));
        }
        std::fs::write(path, text)?;
    }
    report(
        "created_ms",
        seen.iter()
            .filter_map(|s| s.created.map(|c| c - s.sent_at))
            .collect(),
    );
    report(
        "received_ms",
        seen.iter().map(|s| s.received - s.sent_at).collect(),
    );
    Ok(())
}
