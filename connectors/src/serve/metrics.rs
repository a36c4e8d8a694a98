//! `/metrics`: the jobs' counters in the OpenMetrics text format that
//! Prometheus scrapes, read from the engine's own atomics at each scrape
//! (a `prometheus-client` collector): nothing is counted twice and the job
//! pays nothing between scrapes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
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

impl Family<f64> {
    fn gauges(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut metric =
            encoder.encode_descriptor(self.name, self.help, None, MetricType::Gauge)?;
        for (labels, value) in &self.values {
            ConstGauge::new(*value).encode(metric.encode_family(labels)?)?;
        }
        Ok(())
    }
}

impl Collector for Jobs {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let jobs = self.0.jobs();
        let now_us = now_ms() * 1000;
        let mut counters = [
            Family::new("iotql_events_in", "Events read by an input."),
            Family::new(
                "iotql_late_adjusted",
                "Events later than the late-arrival tolerance whose time was set to the watermark.",
            ),
            Family::new(
                "iotql_late_dropped",
                "Events later than the late-arrival tolerance that were dropped.",
            ),
            Family::new("iotql_rows_out", "Rows the job gave an output."),
            Family::new(
                "iotql_sink_rows_written",
                "Rows an output's destination has taken (committed, acknowledged).",
            ),
            Family::new(
                "iotql_sink_retries",
                "Writes an output made again after a failure.",
            ),
            Family::new(
                "iotql_sink_failures",
                "Rows an output gave up on (sent to the dead-letter output).",
            ),
            Family::new(
                "iotql_sink_outages",
                "Times an output's destination became unreachable.",
            ),
            Family::new(
                "iotql_dead_lettered",
                "Events and rows written to the dead-letter output.",
            ),
        ];
        let mut gauges = [
            Family::new(
                "iotql_watermark_delay_seconds",
                "How far an input's watermark is behind the wall clock.",
            ),
            Family::new(
                "iotql_sink_down",
                "1 while an output's destination is unreachable, else 0.",
            ),
            Family::new("iotql_job_running", "1 while the job runs, else 0."),
            Family::new(
                "iotql_last_checkpoint_timestamp_seconds",
                "When the job's newest checkpoint was taken (Unix time; 0: none).",
            ),
        ];
        for job in &jobs {
            collect(job, now_us, &mut counters, &mut gauges);
        }
        for family in &counters {
            family.counters(&mut encoder)?;
        }
        for family in &gauges {
            family.gauges(&mut encoder)?;
        }
        Ok(())
    }
}

fn collect(
    job: &JobView,
    now_us: i64,
    counters: &mut [Family<u64>; 9],
    gauges: &mut [Family<f64>; 4],
) {
    let name = || ("job", job.name.clone());
    for input in job.inputs() {
        let labels = vec![name(), ("input", input.name.clone())];
        let s = &input.stats;
        for (family, value) in [
            (0, s.events_in.load(Ordering::Relaxed)),
            (1, s.late_adjusted.load(Ordering::Relaxed)),
            (2, s.late_dropped.load(Ordering::Relaxed)),
        ] {
            counters[family].values.push((labels.clone(), value));
        }
        let watermark = s.watermark.load(Ordering::Relaxed);
        if watermark != i64::MIN {
            let delay = (now_us - watermark) as f64 / 1e6;
            gauges[0].values.push((labels, delay));
        }
    }
    for output in job.outputs() {
        let labels = vec![name(), ("output", output.name.clone())];
        counters[3].values.push((labels.clone(), output.rows()));
        let Some(m) = output.stats().and_then(|s| s.sink.clone()) else {
            continue;
        };
        for (family, value) in [
            (4, m.rows_written.load(Ordering::Relaxed)),
            (5, m.retries.load(Ordering::Relaxed)),
            (6, m.failures.load(Ordering::Relaxed)),
            (7, m.outages.load(Ordering::Relaxed)),
        ] {
            counters[family].values.push((labels.clone(), value));
        }
        let down = m.down_since_ms.load(Ordering::Relaxed) != 0;
        gauges[1].values.push((labels, f64::from(u8::from(down))));
    }
    counters[8].values.push((vec![name()], job.dead_letters()));
    let running = job.state() == super::registry::JobState::Running;
    gauges[2]
        .values
        .push((vec![name()], f64::from(u8::from(running))));
    let checkpoint = job.checkpoint_ms.load(Ordering::Relaxed) as f64 / 1e3;
    gauges[3].values.push((vec![name()], checkpoint));
}
