//! `/metrics`: the jobs' counters in the OpenMetrics text format that
//! Prometheus scrapes, read from the engine's own atomics at each scrape
//! (a `prometheus-client` collector): nothing is counted twice and the job
//! pays nothing between scrapes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use iotql_engine::metrics::HistogramSnapshot;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::registry::{JobView, Registry, now_ms};

/// The content type of the response.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics of every job of `registry`, as text.
pub fn render(registry: &Arc<Registry>) -> Result<String, std::fmt::Error> {
    let mut metrics = prometheus_client::registry::Registry::default();
    metrics.register_collector(Box::new(Jobs(registry.clone())));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics)?;
    Ok(text)
}

#[derive(Debug)]
struct Jobs(Arc<Registry>);

type Labels = Vec<(&'static str, String)>;

/// One metric: its name, help, type and a value per label set.
struct Family<V> {
    name: &'static str,
    help: &'static str,
    values: Vec<(Labels, V)>,
}

impl<V> Family<V> {
    fn new(name: &'static str, help: &'static str) -> Self {
        Family {
            name,
            help,
            values: Vec::new(),
        }
    }

    fn push(&mut self, labels: &Labels, value: V) {
        self.values.push((labels.clone(), value));
    }
}

impl Family<u64> {
    fn counters(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut metric =
            encoder.encode_descriptor(self.name, self.help, None, MetricType::Counter)?;
        for (labels, value) in &self.values {
            ConstCounter::new(*value).encode(metric.encode_family(labels)?)?;
        }
        Ok(())
    }
}

impl<V: EncodeGaugeValue + Copy> Family<V> {
    fn gauges(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut metric =
            encoder.encode_descriptor(self.name, self.help, None, MetricType::Gauge)?;
        for (labels, value) in &self.values {
            ConstGauge::new(*value).encode(metric.encode_family(labels)?)?;
        }
        Ok(())
    }
}

impl Family<HistogramSnapshot> {
    fn histograms(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut metric =
            encoder.encode_descriptor(self.name, self.help, None, MetricType::Histogram)?;
        for (labels, h) in &self.values {
            metric
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &h.per_bucket(), None)?;
        }
        Ok(())
    }
}

impl Collector for Jobs {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now_us = now_ms() * 1000;
        let mut m = Families::new();
        for job in &self.0.jobs() {
            m.collect(job, now_us);
        }
        for family in [
            &m.events_in,
            &m.late_adjusted,
            &m.late_dropped,
            &m.rows_out,
            &m.rows_written,
            &m.retries,
            &m.failures,
            &m.outages,
            &m.dead_lettered,
        ] {
            family.counters(&mut encoder)?;
        }
        m.watermark_delay.gauges(&mut encoder)?;
        m.consumer_lag.gauges(&mut encoder)?;
        for family in [&m.sink_down, &m.running, &m.checkpoint] {
            family.gauges(&mut encoder)?;
        }
        m.batch_latency.histograms(&mut encoder)
    }
}

/// Every metric of a scrape, by name.
struct Families {
    events_in: Family<u64>,
    late_adjusted: Family<u64>,
    late_dropped: Family<u64>,
    rows_out: Family<u64>,
    rows_written: Family<u64>,
    retries: Family<u64>,
    failures: Family<u64>,
    outages: Family<u64>,
    dead_lettered: Family<u64>,
    watermark_delay: Family<f64>,
    consumer_lag: Family<u64>,
    batch_latency: Family<HistogramSnapshot>,
    sink_down: Family<f64>,
    running: Family<f64>,
    checkpoint: Family<f64>,
}

impl Families {
    fn new() -> Families {
        Families {
            events_in: Family::new("iotql_events_in", "Events read by an input."),
            late_adjusted: Family::new(
                "iotql_late_adjusted",
                "Events later than the late-arrival tolerance whose time was set to the watermark.",
            ),
            late_dropped: Family::new(
                "iotql_late_dropped",
                "Events later than the late-arrival tolerance that were dropped.",
            ),
            rows_out: Family::new("iotql_rows_out", "Rows the job gave an output."),
            rows_written: Family::new(
                "iotql_sink_rows_written",
                "Rows an output's destination has taken (committed, acknowledged).",
            ),
            retries: Family::new(
                "iotql_sink_retries",
                "Writes an output made again after a failure.",
            ),
            failures: Family::new(
                "iotql_sink_failures",
                "Rows an output gave up on (sent to the dead-letter output).",
            ),
            outages: Family::new(
                "iotql_sink_outages",
                "Times an output's destination became unreachable.",
            ),
            dead_lettered: Family::new(
                "iotql_dead_lettered",
                "Events and rows written to the dead-letter output.",
            ),
            watermark_delay: Family::new(
                "iotql_watermark_delay_seconds",
                "How far an input's watermark is behind the wall clock.",
            ),
            consumer_lag: Family::new(
                "iotql_kafka_consumer_lag",
                "Messages between a Kafka input's position in a partition and the partition's end, as of its last statistics.",
            ),
            batch_latency: Family::new(
                "iotql_batch_latency_seconds",
                "How long a batch took to go through the job: operators and outputs.",
            ),
            sink_down: Family::new(
                "iotql_sink_down",
                "1 while an output's destination is unreachable, else 0.",
            ),
            running: Family::new("iotql_job_running", "1 while the job runs, else 0."),
            checkpoint: Family::new(
                "iotql_last_checkpoint_timestamp_seconds",
                "When the job's newest checkpoint was taken (Unix time; 0: none).",
            ),
        }
    }

    /// Adds `job`'s values.
    fn collect(&mut self, job: &JobView, now_us: i64) {
        let name = || ("job", job.name.clone());
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        for input in job.inputs() {
            let labels = vec![name(), ("input", input.name.clone())];
            let s = &input.stats;
            self.events_in.push(&labels, load(&s.events_in));
            self.late_adjusted.push(&labels, load(&s.late_adjusted));
            self.late_dropped.push(&labels, load(&s.late_dropped));
            let watermark = s.watermark.load(Ordering::Relaxed);
            if watermark != i64::MIN {
                let delay = (now_us - watermark) as f64 / 1e6;
                self.watermark_delay.push(&labels, delay);
            }
            for lag in job.lags(&input.name) {
                let mut labels = labels.clone();
                labels.push(("topic", lag.topic));
                labels.push(("partition", lag.partition.to_string()));
                self.consumer_lag.push(&labels, lag.lag);
            }
        }
        for output in job.outputs() {
            let labels = vec![name(), ("output", output.name.clone())];
            self.rows_out.push(&labels, output.rows());
            let Some(m) = output.stats().and_then(|s| s.sink.clone()) else {
                continue;
            };
            self.rows_written.push(&labels, load(&m.rows_written));
            self.retries.push(&labels, load(&m.retries));
            self.failures.push(&labels, load(&m.failures));
            self.outages.push(&labels, load(&m.outages));
            let down = m.down_since_ms.load(Ordering::Relaxed) != 0;
            self.sink_down.push(&labels, f64::from(u8::from(down)));
        }
        let labels = vec![name()];
        if let Some(latency) = job.batch_latency() {
            self.batch_latency.push(&labels, latency);
        }
        self.dead_lettered.push(&labels, job.dead_letters());
        let running = job.state() == super::registry::JobState::Running;
        self.running.push(&labels, f64::from(u8::from(running)));
        let checkpoint = job.checkpoint_ms.load(Ordering::Relaxed) as f64 / 1e3;
        self.checkpoint.push(&labels, checkpoint);
    }
}
