//! What the server knows of the jobs it serves: one [`JobView`] per job,
//! filled by the job's runner (the dataflow's counters once it is built,
//! the checkpoints as they are taken, the state as it changes) and read by
//! the API and the metrics endpoint. Counters are the engine's own atomics,
//! shared, not copied: a request reads them as they are at that moment.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use iotql_engine::arrow::datatypes::SchemaRef;
use iotql_engine::dataflow::{InputStats, OutputStats};
use iotql_engine::metrics::{HistogramSnapshot, PartitionLag, RunMetrics, SourceMetrics};

use super::store::Store;
use super::tail::Tail;
use crate::endpoint::OutputSpec;

/// The jobs one server serves (one for `iotql run --http`, a folder's for
/// `iotql serve`).
#[derive(Debug, Default)]
pub struct Registry {
    jobs: RwLock<Vec<Arc<JobView>>>,
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// Adds a job; its name must be new.
    pub fn add(&self, job: Arc<JobView>) -> Result<(), String> {
        let mut jobs = self
            .jobs
            .write()
            .map_err(|_| "the job registry is poisoned (a bug)".to_string())?;
        if jobs.iter().any(|j| j.name == job.name) {
            return Err(format!("two jobs are named `{}`", job.name));
        }
        jobs.push(job);
        Ok(())
    }

    /// The jobs, in the order they were added.
    pub fn jobs(&self) -> Vec<Arc<JobView>> {
        self.jobs.read().map(|j| j.clone()).unwrap_or_default()
    }

    /// The job named `name` (exactly).
    pub fn job(&self, name: &str) -> Option<Arc<JobView>> {
        self.jobs().into_iter().find(|j| j.name == name)
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Binding its inputs and outputs, resuming from a checkpoint.
    Starting,
    Running,
    /// Its inputs ended and every row is out.
    Completed,
    /// Stopped (Ctrl+C, SIGTERM) before its inputs ended.
    Stopped,
    /// Stopped by an error it could not get past.
    Failed(String),
}

impl JobState {
    pub fn name(&self) -> &'static str {
        match self {
            JobState::Starting => "starting",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Stopped => "stopped",
            JobState::Failed(_) => "failed",
        }
    }
}

/// One job as the server sees it.
#[derive(Debug)]
pub struct JobView {
    pub name: String,
    /// The job file, as given.
    pub file: String,
    /// When the job started (milliseconds since the Unix epoch).
    pub started_ms: i64,
    state: Mutex<JobState>,
    /// The dataflow's counters, once it is built.
    dataflow: OnceLock<Counters>,
    outputs: RwLock<Vec<Arc<OutputView>>>,
    /// Dead letters written (the job's dead-letter output), once known.
    dead_letters: OnceLock<Arc<AtomicU64>>,
    /// The newest checkpoint taken: its number (0: none yet) and when
    /// (milliseconds since the Unix epoch).
    pub checkpoint_id: AtomicU64,
    pub checkpoint_ms: AtomicI64,
}

/// The engine's counters of a running dataflow, and the runner's
/// measurements.
#[derive(Debug)]
struct Counters {
    inputs: Vec<InputStats>,
    metrics: RunMetrics,
}

impl JobView {
    pub fn new(name: &str, file: &str) -> Arc<JobView> {
        Arc::new(JobView {
            name: name.to_string(),
            file: file.to_string(),
            started_ms: now_ms(),
            state: Mutex::new(JobState::Starting),
            dataflow: OnceLock::new(),
            outputs: RwLock::new(Vec::new()),
            dead_letters: OnceLock::new(),
            checkpoint_id: AtomicU64::new(0),
            checkpoint_ms: AtomicI64::new(0),
        })
    }

    pub fn state(&self) -> JobState {
        self.state
            .lock()
            .map(|s| s.clone())
            .unwrap_or(JobState::Failed("state lock poisoned".into()))
    }

    pub fn set_state(&self, state: JobState) {
        if let Ok(mut s) = self.state.lock() {
            *s = state;
        }
    }

    /// The outputs of the job, with the stores they can be read from;
    /// called once the job's outputs are bound.
    pub fn set_outputs(&self, outputs: Vec<Arc<OutputView>>) {
        if let Ok(mut o) = self.outputs.write() {
            *o = outputs;
        }
    }

    /// The dataflow is built: its counters and the run's measurements
    /// become readable, and each output's tap is attached.
    pub fn attach(&self, inputs: &[InputStats], outputs: &[OutputStats], metrics: RunMetrics) {
        let _ = self.dataflow.set(Counters {
            inputs: inputs.to_vec(),
            metrics,
        });
        for stats in outputs {
            if let Some(view) = self.output(&stats.name) {
                view.attach(stats);
            }
        }
    }

    /// The dead-letter output's count, as it grows.
    pub fn count_dead_letters(&self, counter: Arc<AtomicU64>) {
        let _ = self.dead_letters.set(counter);
    }

    /// Dead letters written so far.
    pub fn dead_letters(&self) -> u64 {
        self.dead_letters
            .get()
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// A checkpoint was taken.
    pub fn checkpointed(&self, id: u64) {
        self.checkpoint_ms.store(now_ms(), Ordering::Relaxed);
        self.checkpoint_id.store(id, Ordering::Relaxed);
    }

    pub fn inputs(&self) -> &[InputStats] {
        self.dataflow.get().map_or(&[], |c| &c.inputs)
    }

    pub fn outputs(&self) -> Vec<Arc<OutputView>> {
        self.outputs.read().map(|o| o.clone()).unwrap_or_default()
    }

    /// The output named `name` (case-insensitive, as in the job).
    pub fn output(&self, name: &str) -> Option<Arc<OutputView>> {
        self.outputs()
            .into_iter()
            .find(|o| o.name.eq_ignore_ascii_case(name))
    }

    /// How long the job's batches took so far; `None` before the dataflow
    /// is built.
    pub fn batch_latency(&self) -> Option<HistogramSnapshot> {
        self.dataflow
            .get()
            .map(|c| c.metrics.batch_latency.snapshot())
    }

    /// The consumer lag of each partition input `input` reads (a Kafka
    /// input's, as of its last statistics); empty for other inputs.
    pub fn lags(&self, input: &str) -> Vec<PartitionLag> {
        self.dataflow
            .get()
            .and_then(|c| c.metrics.source(input))
            .map(SourceMetrics::lags)
            .unwrap_or_default()
    }

    /// Events read by every input so far.
    pub fn events_in(&self) -> u64 {
        self.inputs()
            .iter()
            .map(|i| i.stats.events_in.load(Ordering::Relaxed))
            .sum()
    }

    /// The job's watermark: the slowest input's (microseconds).
    pub fn watermark(&self) -> Option<i64> {
        self.inputs()
            .iter()
            .map(|i| i.stats.watermark.load(Ordering::Relaxed))
            .filter(|&w| w != i64::MIN)
            .min()
    }
}

/// One output of a job.
#[derive(Debug)]
pub struct OutputView {
    /// The name as the job declares it.
    pub name: String,
    /// The connector (`sqlite`, `parquet`, `webhook`, ...).
    pub connector: &'static str,
    /// Where its rows can be read back, when it has such a store.
    pub store: Option<Store>,
    /// The latest rows given to it, and its live feed.
    pub tail: Arc<Tail>,
    stats: OnceLock<OutputStats>,
}

impl OutputView {
    /// The view of an output bound to `spec`. An output with a store is
    /// read from it: only its live feed passes through memory; another
    /// keeps its latest [`super::TAIL_ROWS`] rows.
    pub fn new(name: &str, spec: &OutputSpec) -> Arc<OutputView> {
        let store = Store::of(spec);
        let tail_rows = if store.is_some() { 0 } else { super::TAIL_ROWS };
        Arc::new(OutputView {
            name: name.to_string(),
            connector: connector(spec),
            store,
            tail: Arc::new(Tail::new(tail_rows)),
            stats: OnceLock::new(),
        })
    }

    fn attach(&self, stats: &OutputStats) {
        let _ = stats.tap.set(self.tail.clone());
        let _ = self.stats.set(stats.clone());
    }

    /// The columns of its rows, once the job has started.
    pub fn schema(&self) -> Option<SchemaRef> {
        self.stats.get().map(|s| s.schema.clone())
    }

    pub fn stats(&self) -> Option<&OutputStats> {
        self.stats.get()
    }

    /// Rows the job gave it.
    pub fn rows(&self) -> u64 {
        self.stats
            .get()
            .map_or(0, |s| s.rows.load(Ordering::Relaxed))
    }
}

/// The connector's name, as a job declares it.
fn connector(spec: &OutputSpec) -> &'static str {
    match spec {
        OutputSpec::Csv(_) => "csv",
        OutputSpec::JsonLines(crate::file::OutputTarget::Stdout) => "stdout",
        OutputSpec::JsonLines(_) => "jsonl",
        OutputSpec::Sqlite(_) => "sqlite",
        OutputSpec::Kafka(_) => "kafka",
        OutputSpec::Mqtt(_) => "mqtt",
        OutputSpec::Alert(a) => match **a {
            crate::alert::AlertOutput::Webhook(_) => "webhook",
            crate::alert::AlertOutput::Slack(_) => "slack",
            crate::alert::AlertOutput::Log(_) => "log",
        },
        OutputSpec::Parquet(_) => "parquet",
        OutputSpec::Postgres(_) => "postgres",
        OutputSpec::Throttled(inner, _) => connector(inner),
    }
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
