//! Running a planned job, shared by `iotql run` and the REPL: binds the
//! plan's inputs and outputs (command line over declarations over a
//! fallback), compiles the dataflow, reads each input on its own thread into
//! a bounded channel (capacity 4 batches: a slow job slows the readers),
//! pushes batches on the calling thread, writes dead letters in input order,
//! commits broker positions, and stops when every input has ended or the
//! interrupt flag is raised.
//!
//! What the caller sees of a run goes through an [`Observer`]: after every
//! push it may update a progress bar or hold the next batch back (the
//! REPL's `.speed`). Rows reach the terminal, a file or a database through
//! the sinks the caller chose.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, bounded};
use iotql_connectors::deadletter::{DeadLetterWriter, in_input_order};
use iotql_connectors::endpoint::{self, InputSpec, OutputSpec};
use iotql_dsl::Diagnostic;
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::checkpoint::{self, Checkpoint, CheckpointStore, Header};
use iotql_engine::dataflow::Dataflow;
use iotql_engine::error::EngineError;
use iotql_engine::expr::ExprCompiler;
use iotql_engine::io::{Committer, Sink, Source, SourceBatch};
use iotql_engine::metrics::{Histogram, RunMetrics};
use iotql_engine::operator::DeadLetter;
use iotql_engine::plan::{LogicalPlan, NodeKind};

use crate::Binding;
use crate::reference::Reference;

/// Inputs, reference inputs and outputs bound outside the job (`--input
/// NAME=URI`); they win over the job's declarations.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bindings<'a> {
    pub inputs: &'a [Binding],
    pub references: &'a [Binding],
    pub outputs: &'a [Binding],
}

/// Why a job could not start.
#[derive(Debug)]
pub(crate) enum PrepareError {
    /// A binding or declaration is wrong: the user must fix the command or
    /// the job (exit 2).
    Usage(String),
    /// The job is invalid (exit 1): problems with their spans.
    Invalid(Vec<Diagnostic>),
    /// An input could not be opened or read (exit 3).
    Runtime(String),
}

impl std::fmt::Display for PrepareError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PrepareError::Usage(m) | PrepareError::Runtime(m) => f.write_str(m),
            PrepareError::Invalid(p) => write!(f, "{} problems in the job", p.len()),
        }
    }
}

fn find<'a>(bindings: &'a [Binding], name: &str) -> Option<&'a Binding> {
    bindings.iter().find(|b| b.name.eq_ignore_ascii_case(name))
}

/// Where an input of a plan comes from: a binding, else its declaration
/// (paths relative to `base`); `None` when it is neither bound nor declared.
pub(crate) fn input_spec(
    name: &str,
    options: &std::collections::BTreeMap<String, String>,
    bindings: Bindings<'_>,
    base: &Path,
) -> Option<Result<InputSpec, String>> {
    match find(bindings.inputs, name).or_else(|| find(bindings.references, name)) {
        Some(b) => Some(endpoint::parse_input_uri(&b.uri)),
        None if options.is_empty() => None,
        None => Some(endpoint::input_from_options(options, base)),
    }
}

/// A compiled job with its inputs open, ready to run.
pub(crate) struct Prepared {
    pub dataflow: Dataflow,
    sources: Vec<(String, Box<dyn Source>)>,
    references: Vec<Reference>,
    /// Rows of the reference tables that could not be read.
    pub refused: Vec<DeadLetter>,
    checkpoints: Option<Checkpoints>,
    /// The dead-letter file's length in the checkpoint resumed from.
    dead_letters_len: Option<u64>,
    /// Where each output writes (the HTTP server reads them back).
    pub outputs: Vec<(String, OutputSpec)>,
    metrics: RunMetrics,
}

/// Lines for the run summary: the batch latency's median and 99th
/// percentile (as bucket bounds: "p99 ≤ 5 ms"), and, for a run stopped
/// before its inputs ended, how far behind each broker input was (as of its
/// last statistics, at most a second old). An input that ended is read to
/// its end: its lag says nothing then.
pub(crate) fn summary(metrics: &RunMetrics, stopped: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let latency = metrics.batch_latency.snapshot();
    if let (Some(p50), Some(p99)) = (latency.quantile(0.5), latency.quantile(0.99)) {
        lines.push(format!(
            "  batch latency: p50 {}, p99 {} ({} batches)",
            at_most(p50),
            at_most(p99),
            latency.count
        ));
    }
    for (name, m) in metrics.sources.iter().filter(|_| stopped) {
        if let Some(lag) = m.total_lag() {
            lines.push(format!(
                "  input  {name:<20} lag: {lag} messages when stopped"
            ));
        }
    }
    lines
}

/// A bucket bound as an upper bound: 0.00025 -> "≤ 250 µs", +Inf -> "> 10 s".
fn at_most(seconds: f64) -> String {
    match seconds {
        s if !s.is_finite() => format!(
            "> {} s",
            iotql_engine::metrics::LATENCY_BUCKETS
                [iotql_engine::metrics::LATENCY_BUCKETS.len() - 1]
        ),
        s if s < 1e-3 => format!("≤ {} µs", (s * 1e6).round()),
        s if s < 1.0 => format!("≤ {} ms", (s * 1e6).round() / 1e3),
        s => format!("≤ {s} s"),
    }
}

/// How a run takes checkpoints (`iotql run`; the REPL takes none).
#[derive(Debug)]
pub(crate) struct CheckpointOptions {
    /// The job's own folder of checkpoints.
    pub dir: PathBuf,
    /// How often; `None`: only when stopping and on demand.
    pub interval: Option<Duration>,
    /// Discard the checkpoints there and start over.
    pub fresh: bool,
    /// What shapes the job's state besides its inputs' columns (its
    /// statements in canonical form, the time policy): a checkpoint taken
    /// with other ones is refused.
    pub job: Vec<String>,
    /// Raised (SIGUSR1) to take a checkpoint now.
    pub requested: Arc<AtomicBool>,
}

/// The name under which a checkpoint keeps the dead-letter file's length
/// among the outputs' states (no output can be named with `@`).
const DEAD_LETTERS: &str = "@dead-letters";

/// The checkpoints of a running job.
struct Checkpoints {
    store: CheckpointStore,
    /// Held for the run: one run of a job at a time.
    _lock: std::fs::File,
    interval: Option<Duration>,
    fingerprint: String,
    requested: Arc<AtomicBool>,
    next_id: u64,
    last: Instant,
    /// Each input's position after its last batch pushed.
    positions: Vec<Option<Vec<u8>>>,
    /// Why no checkpoint can be taken (an input that cannot resume).
    disabled: Option<String>,
    /// The checkpoint this run resumed from.
    resumed: Option<(u64, PathBuf)>,
    /// The last checkpoint this run took.
    taken: Option<u64>,
}

impl Checkpoints {
    fn due(&self) -> bool {
        self.disabled.is_none()
            && (self.requested.load(Ordering::SeqCst)
                || self.interval.is_some_and(|i| self.last.elapsed() >= i))
    }
}

/// What a run says about its checkpoints at the end.
#[derive(Debug, Clone)]
pub(crate) struct CheckpointReport {
    pub dir: PathBuf,
    /// The checkpoint the run resumed from, and its file.
    pub resumed: Option<(u64, PathBuf)>,
    /// The last one taken, when the run stopped before its inputs ended.
    pub stopped_at: Option<u64>,
    /// Why none could be taken.
    pub disabled: Option<String>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("sources", &self.sources.len())
            .finish_non_exhaustive()
    }
}

/// Binds and opens the inputs and outputs of `plan` and compiles it. An
/// output that is neither bound nor declared gets `fallback(name)` (stdout
/// for `iotql run`, the terminal in the REPL).
pub(crate) fn prepare(
    plan: &LogicalPlan,
    bindings: Bindings<'_>,
    base: &Path,
    batch_size: usize,
    fallback: &mut dyn FnMut(&str) -> Box<dyn Sink>,
    checkpointing: Option<CheckpointOptions>,
) -> Result<Prepared, PrepareError> {
    use PrepareError::{Runtime, Usage};
    // Only the columns the job reads are decoded. Reference inputs are read whole.
    let columns = plan.referenced_columns();
    let mut sources: Vec<(String, Box<dyn Source>)> = Vec::new();
    let mut references: Vec<(Reference, RecordBatch)> = Vec::new();
    let reference_names = plan.references();
    let mut refused = Vec::new();
    for input in &plan.inputs {
        let is_reference = reference_names.contains(&input.name);
        let scanned = plan
            .nodes
            .iter()
            .any(|n| matches!(&n.kind, NodeKind::Scan { input: i } if i == &input.name));
        if !is_reference && !scanned {
            continue;
        }
        let spec = match input_spec(&input.name, &input.options, bindings, base) {
            Some(Ok(s)) => s,
            Some(Err(e)) => return Err(Usage(format!("input `{}`: {e}", input.name))),
            None => {
                return Err(Usage(format!(
                    "input `{}` is not bound: declare it (CREATE INPUT {} WITH (connector = 'csv', path = '...')) or pass --input {}=csv:PATH",
                    input.name, input.name, input.name
                )));
            }
        };
        let schema = endpoint::declared_schema(&input.options)
            .map_err(|e| Usage(format!("input `{}`: {e}", input.name)))?;
        if is_reference {
            let (r, table, letters) =
                Reference::new(&input.name, spec, schema, input.options.get("refresh"))
                    .and_then(|mut r| r.read().map(|(table, letters)| (r, table, letters)))
                    .map_err(Runtime)?;
            refused.extend(letters);
            references.push((r, table));
            continue;
        }
        let source =
            endpoint::open_source(&input.name, &spec, schema, batch_size, columns.as_ref())
                .map_err(|e| Runtime(e.to_string()))?;
        sources.push((input.name.clone(), source));
    }

    let mut sinks: HashMap<String, Box<dyn Sink>> = HashMap::new();
    let mut outputs = Vec::new();
    for output in &plan.outputs {
        let spec = match find(bindings.outputs, &output.name) {
            Some(b) => endpoint::parse_output_uri(&b.uri),
            None if output.options.is_empty() => {
                sinks.insert(output.name.clone(), fallback(&output.name));
                continue;
            }
            None => endpoint::output_from_options(&output.options, base),
        };
        let spec: OutputSpec = spec.map_err(|e| Usage(format!("output `{}`: {e}", output.name)))?;
        sinks.insert(
            output.name.clone(),
            endpoint::open_sink(&output.name, &spec),
        );
        outputs.push((output.name.clone(), spec));
    }

    let (checkpoints, resume) = match checkpointing {
        Some(options) => {
            let (c, resume) = open_checkpoints(options, &sources, &mut sinks)?;
            (Some(c), resume)
        }
        None => (None, None),
    };
    if let Some(resume) = &resume {
        // Outputs roll back to the checkpoint before they start; inputs
        // continue after it.
        for (name, state) in &resume.sinks {
            if name == DEAD_LETTERS {
                continue;
            }
            let sink = sinks.get_mut(name).ok_or_else(|| {
                Runtime(format!(
                    "the checkpoint has a state of output `{name}`, which the job does not have"
                ))
            })?;
            sink.recover(state)
                .map_err(|e| Runtime(format!("output `{name}`: {e}")))?;
        }
        for (name, source) in sources.iter_mut() {
            if let Some(position) = resume.sources.get(name) {
                source
                    .seek(position)
                    .map_err(|e| Runtime(format!("input `{name}`: {e}")))?;
            }
        }
    }

    let schemas = sources
        .iter()
        .map(|(n, s)| (n.clone(), s.schema()))
        .chain(references.iter().map(|(r, t)| (r.name.clone(), t.schema())))
        .collect();
    let compiler = ExprCompiler::new();
    let mut dataflow =
        Dataflow::compile(plan, &schemas, sinks, &compiler).map_err(PrepareError::Invalid)?;
    let dead_letters_len = match &resume {
        Some(resume) => {
            dataflow.restore(&resume.operators).map_err(|e| {
                Runtime(format!(
                    "the checkpoint's operator state does not fit the job: {e}"
                ))
            })?;
            resume
                .sinks
                .get(DEAD_LETTERS)
                .and_then(|b| b.as_slice().try_into().ok())
                .map(u64::from_le_bytes)
        }
        None => None,
    };
    let references = references
        .into_iter()
        .map(|(r, table)| dataflow.load_reference(&r.name, &table).map(|()| r))
        .collect::<Result<Vec<Reference>, _>>()
        .map_err(|e| Runtime(e.to_string()))?;
    let metrics = RunMetrics {
        batch_latency: Arc::new(Histogram::latency()),
        sources: sources
            .iter()
            .filter_map(|(name, s)| s.metrics().map(|m| (name.clone(), m)))
            .collect(),
    };
    Ok(Prepared {
        dataflow,
        sources,
        references,
        refused,
        checkpoints,
        dead_letters_len,
        outputs,
        metrics,
    })
}

/// Opens the job's checkpoint folder (locked for the run) and reads the
/// checkpoint to resume from, refusing one of another version of the job.
fn open_checkpoints(
    options: CheckpointOptions,
    sources: &[(String, Box<dyn Source>)],
    sinks: &mut HashMap<String, Box<dyn Sink>>,
) -> Result<(Checkpoints, Option<Checkpoint>), PrepareError> {
    use PrepareError::{Runtime, Usage};
    let store = CheckpointStore::open(&options.dir).map_err(|e| Runtime(e.to_string()))?;
    let lock_path = options.dir.join("lock");
    let lock = std::fs::File::create(&lock_path)
        .map_err(|e| Runtime(format!("{}: {e}", lock_path.display())))?;
    if lock.try_lock().is_err() {
        return Err(Usage(format!(
            "another run of this job is using its checkpoints in {} (give this one its own with --state-dir)",
            options.dir.display()
        )));
    }
    if options.fresh {
        store.clear().map_err(|e| Runtime(e.to_string()))?;
    }
    let mut parts = options.job.clone();
    for (name, source) in sources {
        parts.push(format!("input {name}: {:?}", source.schema().fields()));
    }
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let fingerprint = checkpoint::fingerprint(&parts);
    // Outputs learn that the run takes checkpoints (a Kafka output opens
    // its transactions), then say which checkpoints they can resume from.
    let folder = std::fs::canonicalize(&options.dir).unwrap_or_else(|_| options.dir.clone());
    for (name, sink) in sinks.iter_mut() {
        let scope = format!(
            "iotql-{}-{name}",
            &checkpoint::fingerprint(&[&folder.to_string_lossy()])[..16]
        );
        sink.enable_checkpoints(&scope)
            .map_err(|e| Runtime(format!("output `{name}`: {e}")))?;
    }
    let refuse = |c: &Checkpoint| {
        for (name, state) in &c.sinks {
            if let Some(sink) = sinks.get_mut(name)
                && !sink.can_resume(state)?
            {
                return Ok(Some(format!(
                    "output `{name}` did not commit what this checkpoint counts as written"
                )));
            }
        }
        Ok(None)
    };
    let recovered = store.latest_where(refuse).map_err(|e| {
        Runtime(format!(
            "{e}; run with --fresh to start over from the beginning of the inputs"
        ))
    })?;
    let mut checkpoints = Checkpoints {
        store,
        _lock: lock,
        interval: options.interval,
        fingerprint,
        requested: options.requested,
        next_id: 1,
        last: Instant::now(),
        positions: vec![None; sources.len()],
        disabled: None,
        resumed: None,
        taken: None,
    };
    let Some(recovered) = recovered else {
        return Ok((checkpoints, None));
    };
    for (path, why) in &recovered.skipped {
        tracing::warn!("checkpoint {} skipped: {why}", path.display());
    }
    let resume = recovered.checkpoint;
    if resume.header.fingerprint != checkpoints.fingerprint {
        return Err(Usage(format!(
            "the checkpoint in {} was taken by another version of this job (its query, time policy or input columns differ), so its state cannot be carried over; run with --fresh to start over from the beginning of the inputs",
            options.dir.display()
        )));
    }
    checkpoints.next_id = resume.header.id + 1;
    checkpoints.resumed = Some((resume.header.id, recovered.path));
    for (i, (name, _)) in sources.iter().enumerate() {
        checkpoints.positions[i] = resume.sources.get(name).cloned();
    }
    Ok((checkpoints, Some(resume)))
}

/// What happens to open windows when the run is interrupted before its
/// inputs end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnInterrupt {
    /// Bounded inputs end as if read to the end (every window is emitted);
    /// a live (broker) input stops, leaving its open windows for the next
    /// run. `iotql run`.
    FinishFiles,
    /// Stop at once, whatever the inputs: open windows are not emitted.
    /// The REPL.
    Stop,
}

/// Sees a run as it goes.
pub(crate) trait Observer {
    /// Called after every batch pushed, with the events pushed and the bytes
    /// read so far; returns when the next batch may be pushed (`None`: at
    /// once). Outputs are ticked and the interrupt flag checked meanwhile.
    fn pushed(&mut self, _dataflow: &Dataflow, _events: u64, _bytes: u64) -> Option<Instant> {
        None
    }

    /// Checkpoint `id` is durable.
    fn checkpointed(&mut self, _id: u64) {}
}

/// How a run ended.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// Events pushed into the dataflow.
    pub events: u64,
    /// Stopped by the interrupt flag before the inputs ended.
    pub interrupted: bool,
    /// Stopped with events held (open windows not emitted).
    pub held: bool,
    /// What became of the run's checkpoints, when it takes them.
    pub checkpoints: Option<CheckpointReport>,
}

/// What one reader thread sends.
type Read = Result<Option<SourceBatch>, EngineError>;

impl Prepared {
    /// The total size of the inputs, when every one knows it.
    pub(crate) fn total_bytes(&self) -> Option<u64> {
        self.sources.iter().map(|(_, s)| s.progress().1).sum()
    }

    /// The run's batch latency and its inputs' metrics: handles to read
    /// while it runs (take them before [`Prepared::execute`]).
    pub(crate) fn metrics(&self) -> RunMetrics {
        self.metrics.clone()
    }

    /// Runs until every input has ended or `interrupted` is raised;
    /// returns the dataflow (for its counters) and how the run ended.
    pub(crate) fn execute(
        self,
        dead: &mut DeadLetterWriter,
        interrupted: &AtomicBool,
        on_interrupt: OnInterrupt,
        observer: &mut dyn Observer,
    ) -> (Dataflow, Result<Outcome, String>) {
        let Prepared {
            mut dataflow,
            sources,
            mut references,
            refused,
            mut checkpoints,
            dead_letters_len,
            outputs: _,
            metrics,
        } = self;
        if let Some(len) = dead_letters_len
            && let Err(e) = dead.recover(len)
        {
            return (
                dataflow,
                Err(format!("dead-letter file {}: {e}", dead.path().display())),
            );
        }
        if let Err(e) = dead.write(&refused) {
            return (
                dataflow,
                Err(format!("dead-letter file {}: {e}", dead.path().display())),
            );
        }
        let names: Vec<String> = sources.iter().map(|(n, _)| n.clone()).collect();
        let mut commits: Vec<Option<Commits>> = sources
            .iter()
            .map(|(_, s)| s.committer().map(Commits::new))
            .collect();
        let (receivers, readers): (Vec<Receiver<(Read, u64)>>, Vec<_>) = sources
            .into_iter()
            .map(|(_, mut source)| {
                let (tx, rx) = bounded(4);
                let reader = std::thread::spawn(move || {
                    loop {
                        let read = source.next_batch();
                        let done = !matches!(read, Ok(Some(_)));
                        if tx.send((read, source.progress().0)).is_err() || done {
                            break;
                        }
                    }
                    // Dropping the source here closes it (a Kafka consumer
                    // leaves its group at once).
                });
                (rx, reader)
            })
            .unzip();
        let result = pump(&mut Pump {
            dataflow: &mut dataflow,
            names: &names,
            receivers: &receivers,
            commits: &mut commits,
            references: &mut references,
            dead,
            interrupted,
            on_interrupt,
            observer,
            checkpoints: checkpoints.as_mut(),
            batch_latency: &metrics.batch_latency,
        });
        // The readers see their channel closed and stop.
        drop(receivers);
        for reader in readers {
            let _ = reader.join();
        }
        let result = result.and_then(|mut outcome| {
            dead.flush()
                .map_err(|e| format!("dead-letter file {}: {e}", dead.path().display()))?;
            if let Some(c) = checkpoints {
                let stopped_at = if outcome.interrupted && c.disabled.is_none() {
                    c.taken
                } else {
                    None
                };
                if stopped_at.is_none() {
                    #[cfg(debug_assertions)]
                    crash_before_clear_for_tests();
                    // The inputs ended and every row is out: nothing to
                    // resume, and the next run starts over.
                    c.store.clear().map_err(|e| e.to_string())?;
                    // Leave no empty folders behind (errors: something else is there).
                    let dir = c.store.dir();
                    let _ = std::fs::remove_file(dir.join("lock"));
                    if std::fs::remove_dir(dir).is_ok()
                        && dir
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("bound-"))
                        && let Some(parent) = dir.parent()
                    {
                        let _ = std::fs::remove_dir(parent);
                    }
                }
                outcome.checkpoints = Some(CheckpointReport {
                    dir: c.store.dir().to_path_buf(),
                    resumed: c.resumed,
                    stopped_at,
                    disabled: c.disabled,
                });
            }
            Ok(outcome)
        });
        (dataflow, result)
    }
}

/// With IOTQL_TEST_CRASH_BEFORE_CLEAR set (debug builds, for tests),
/// aborts the process at the end of a run, its last rows committed, before
/// its checkpoints are removed: a crash that the last checkpoint is for,
/// made testable without timing.
#[cfg(debug_assertions)]
fn crash_before_clear_for_tests() {
    if std::env::var_os("IOTQL_TEST_CRASH_BEFORE_CLEAR").is_some() {
        eprintln!(
            "IOTQL_TEST_CRASH_BEFORE_CLEAR: aborting at the end, before the checkpoints are removed"
        );
        std::process::abort();
    }
}

/// A broker input's committer and the batches pushed but not committed:
/// (mark, the input's largest event time once the batch was pushed).
struct Commits {
    committer: Box<dyn Committer>,
    pending: VecDeque<(u64, i64)>,
}

impl Commits {
    fn new(committer: Box<dyn Committer>) -> Self {
        Commits {
            committer,
            pending: VecDeque::new(),
        }
    }
}

/// How often a broker input's positions are committed.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// How soon a checkpoint follows the last one when an output waits for
/// one (alerts in the outbox), whatever the interval.
const EARLY_CHECKPOINT: Duration = Duration::from_secs(1);

/// How often outputs are ticked and the interrupt flag checked when no
/// batch comes.
const TICK: Duration = Duration::from_millis(200);

/// What the pump loop works with.
struct Pump<'a> {
    dataflow: &'a mut Dataflow,
    names: &'a [String],
    receivers: &'a [Receiver<(Read, u64)>],
    commits: &'a mut [Option<Commits>],
    references: &'a mut [Reference],
    dead: &'a mut DeadLetterWriter,
    interrupted: &'a AtomicBool,
    on_interrupt: OnInterrupt,
    observer: &'a mut dyn Observer,
    checkpoints: Option<&'a mut Checkpoints>,
    batch_latency: &'a Histogram,
}

impl Pump<'_> {
    /// Takes a checkpoint: outputs and dead letters made durable and their
    /// states, the operators' state and each input's position, written
    /// atomically. Between two batches, so all of it describes one moment.
    fn checkpoint(&mut self) -> Result<(), String> {
        match self.checkpoints.as_deref_mut() {
            None => return Ok(()),
            Some(c) => {
                c.requested.store(false, Ordering::SeqCst);
                c.last = Instant::now();
                if c.disabled.is_some() {
                    // Nothing to resume from, but outputs that hold work
                    // for a checkpoint (a transaction, the alert outbox)
                    // still commit and deliver it at each one.
                    self.dataflow
                        .checkpoint_outputs()
                        .and_then(|_| self.dataflow.committed_outputs())
                        .map_err(|e| e.to_string())?;
                    return Ok(());
                }
            }
        }
        let mut sinks = self
            .dataflow
            .checkpoint_outputs()
            .map_err(|e| e.to_string())?;
        self.drain_dead()?;
        let dead_len = self
            .dead
            .checkpoint()
            .map_err(|e| format!("dead-letter file: {e}"))?;
        sinks.insert(DEAD_LETTERS.to_string(), dead_len.to_le_bytes().to_vec());
        let operators = self.dataflow.snapshot().map_err(|e| e.to_string())?;
        let names = self.names;
        let Some(c) = self.checkpoints.as_deref_mut() else {
            return Ok(());
        };
        let sources = names
            .iter()
            .zip(&c.positions)
            .filter_map(|(n, p)| p.clone().map(|p| (n.clone(), p)))
            .collect();
        let taken_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let checkpoint = Checkpoint {
            header: Header {
                id: c.next_id,
                fingerprint: c.fingerprint.clone(),
                taken_at_ms,
            },
            operators,
            sources,
            sinks,
        };
        c.store.save(&checkpoint).map_err(|e| e.to_string())?;
        tracing::debug!("checkpoint {} taken", c.next_id);
        c.taken = Some(c.next_id);
        self.observer.checkpointed(c.next_id);
        c.next_id += 1;
        self.dataflow.committed_outputs().map_err(|e| e.to_string())
    }

    /// Writes dead letters, with a broker input's positions in its words.
    fn write_dead(&mut self, mut letters: Vec<DeadLetter>) -> Result<(), String> {
        for letter in letters.iter_mut() {
            let Some(i) = self.names.iter().position(|n| *n == letter.input) else {
                continue;
            };
            if let (Some(c), Some(line)) = (
                &self.commits[i],
                letter
                    .position
                    .strip_prefix("line ")
                    .and_then(|n| n.parse::<u64>().ok()),
            ) {
                letter.position = c.committer.describe(line);
            }
        }
        self.dead
            .write(&letters)
            .map_err(|e| format!("dead-letter file: {e}"))
    }

    /// The dataflow's dead letters since the last call, written.
    fn drain_dead(&mut self) -> Result<(), String> {
        let letters = self.dataflow.take_dead_letters();
        self.write_dead(letters)
    }

    /// The largest event time given to an event of input `i` so far.
    fn latest_event(&self, i: usize) -> i64 {
        self.dataflow
            .input_stats()
            .iter()
            .filter(|s| s.name == self.names[i])
            .map(|s| s.stats.max_event_time.load(Ordering::Relaxed))
            .max()
            .unwrap_or(i64::MIN)
    }

    /// Commits the positions of the batches whose events no operator holds
    /// any more, after flushing the outputs (and dead letters) they went to.
    fn commit_done(&mut self) -> Result<(), String> {
        let held = self.dataflow.held_since().map_or(i64::MAX, |t| t.0);
        let mut ready = Vec::new();
        for (i, c) in self.commits.iter_mut().enumerate() {
            let Some(c) = c else { continue };
            let mut last = None;
            while let Some(&(mark, latest)) = c.pending.front() {
                if latest >= held {
                    break;
                }
                last = Some(mark);
                c.pending.pop_front();
            }
            if let Some(mark) = last {
                ready.push((i, mark));
            }
        }
        if ready.is_empty() {
            return Ok(());
        }
        self.dataflow.flush_outputs().map_err(|e| e.to_string())?;
        self.dead
            .flush()
            .map_err(|e| format!("dead-letter file: {e}"))?;
        for (i, mark) in ready {
            if let Some(c) = &mut self.commits[i] {
                c.committer.commit(mark).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// Pushes what reader `i` sent.
    fn take(&mut self, i: usize, mut batch: SourceBatch) -> Result<u64, String> {
        if let Some(c) = self.checkpoints.as_deref_mut()
            && c.disabled.is_none()
        {
            match batch.resume.take() {
                Some(position) => {
                    // An input that tells where it starts before its first
                    // event (a Kafka input: its partitions' offsets) gets a
                    // checkpoint at once: one taken before it would make a
                    // resumed run start from the consumer group's offsets,
                    // which this run moves on.
                    if c.positions[i].is_none()
                        && batch.batch.is_none()
                        && batch.dead_letters.is_empty()
                    {
                        c.requested.store(true, Ordering::SeqCst);
                    }
                    c.positions[i] = Some(position);
                }
                None if batch.batch.is_some() || !batch.dead_letters.is_empty() => {
                    let why = format!(
                        "input `{}` cannot resume from a position (stdin, or a source without checkpoints)",
                        self.names[i]
                    );
                    tracing::info!("no checkpoints: {why}");
                    // The checkpoint taken before the first event must not
                    // be resumed from: it would cut the outputs back to
                    // where this run started.
                    c.store.clear().map_err(|e| e.to_string())?;
                    c.disabled = Some(why);
                }
                None => {}
            }
        }
        let mut letters = batch.dead_letters;
        let mut events = 0;
        if let Some(partitions) = &batch.partitions {
            self.dataflow
                .set_partitions(&self.names[i], partitions)
                .map_err(|e| e.to_string())?;
        }
        if let Some(b) = batch.batch {
            events = b.num_rows() as u64;
            let started = Instant::now();
            self.dataflow
                .push(&self.names[i], b)
                .map_err(|e| e.to_string())?;
            self.batch_latency.observe(started.elapsed());
        }
        if let Some(now) = batch.arrival {
            self.dataflow
                .advance_arrival(&self.names[i], now)
                .map_err(|e| e.to_string())?;
        }
        if batch.mark > 0 {
            let latest = self.latest_event(i);
            if let Some(c) = &mut self.commits[i] {
                c.pending.push_back((batch.mark, latest));
            }
        }
        letters.extend(self.dataflow.take_dead_letters());
        in_input_order(&mut letters);
        self.write_dead(letters)?;
        Ok(events)
    }
}

/// Moves batches from the reader threads into the dataflow until every
/// input has ended (or the interrupt flag is raised).
fn pump(p: &mut Pump<'_>) -> Result<Outcome, String> {
    let mut open: Vec<bool> = vec![true; p.receivers.len()];
    let mut bytes = vec![0u64; p.receivers.len()];
    let mut outcome = Outcome {
        events: 0,
        interrupted: false,
        held: false,
        checkpoints: None,
    };
    let mut last_commit = Instant::now();
    let mut hold_until: Option<Instant> = None;
    // A first checkpoint before any event: a run killed before the next one
    // resumes from here, with the dead-letter file cut back to where it was.
    if p.checkpoints
        .as_deref()
        .is_some_and(|c| c.resumed.is_none())
    {
        p.checkpoint()?;
    }
    while open.iter().any(|&o| o) {
        if p.interrupted.load(Ordering::SeqCst) {
            // Stop reading; what was read is flushed.
            outcome.interrupted = true;
            break;
        }
        for r in p.references.iter_mut() {
            let letters = r.refresh(p.dataflow)?;
            p.dead
                .write(&letters)
                .map_err(|e| format!("dead-letter file: {e}"))?;
        }
        p.dataflow.tick_outputs().map_err(|e| e.to_string())?;
        p.drain_dead()?;
        if last_commit.elapsed() >= COMMIT_INTERVAL {
            p.commit_done()?;
            last_commit = Instant::now();
        }
        if p.checkpoints.as_deref().is_some_and(|c| {
            c.due()
                || (c.last.elapsed() >= EARLY_CHECKPOINT && p.dataflow.outputs_want_checkpoint())
        }) {
            p.checkpoint()?;
        }
        if let Some(until) = hold_until {
            let wait = until.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait.min(TICK));
                continue;
            }
            hold_until = None;
        }
        let mut select = Select::new();
        let indices: Vec<usize> = (0..p.receivers.len()).filter(|&i| open[i]).collect();
        for &i in &indices {
            select.recv(&p.receivers[i]);
        }
        let op = match select.select_timeout(TICK) {
            Ok(op) => op,
            Err(_) => continue,
        };
        let i = indices[op.index()];
        let (read, position) = op
            .recv(&p.receivers[i])
            .map_err(|_| format!("the reader of `{}` stopped", p.names[i]))?;
        bytes[i] = position;
        match read {
            Ok(Some(batch)) => outcome.events += p.take(i, batch)?,
            Ok(None) => {
                open[i] = false;
                p.dataflow
                    .end_input(&p.names[i])
                    .map_err(|e| e.to_string())?;
            }
            Err(e) => return Err(e.to_string()),
        }
        p.drain_dead()?;
        hold_until = p
            .observer
            .pushed(p.dataflow, outcome.events, bytes.iter().sum());
    }
    // A broker input (one with a committer) is live: Ctrl+C does not end it.
    let live = p.commits.iter().any(Option::is_some);
    // With checkpoints, a stopped run resumes where it stopped: its open
    // windows wait for the next run, whatever the inputs.
    let resumable = p
        .checkpoints
        .as_deref()
        .is_some_and(|c| c.disabled.is_none());
    let stop = outcome.interrupted
        && match p.on_interrupt {
            OnInterrupt::Stop => true,
            OnInterrupt::FinishFiles => (live || resumable) && open.iter().any(|&o| o),
        };
    if stop {
        // Stopped early: what is emitted is flushed and its positions
        // committed; open windows are not emitted (a broker input's wait
        // for the next run).
        p.commit_done()?;
        p.checkpoint()?;
        outcome.held = p.dataflow.held_since().is_some();
        // Outputs leave what they hold for checkpoints (the alert outbox)
        // to the next run only when that run resumes from this checkpoint.
        if resumable {
            p.dataflow.stop_at_checkpoint()
        } else {
            p.dataflow.close_outputs()
        }
        .map_err(|e| e.to_string())?;
        p.drain_dead()?;
    } else {
        p.dataflow.end_inputs().map_err(|e| e.to_string())?;
        p.drain_dead()?;
        p.commit_done()?;
        // A last checkpoint, at the end of the inputs, commits the last
        // rows (a Kafka transaction, the alert outbox) with it: a crash
        // before the checkpoints are removed resumes there with nothing
        // left to do, not from an earlier one whose later rows are
        // committed already.
        p.checkpoint()?;
        p.dataflow.close_outputs().map_err(|e| e.to_string())?;
        p.drain_dead()?;
    }
    Ok(outcome)
}

/// 12345678 -> "12.3M".
pub(crate) fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 10_000 => format!("{:.1}k", n as f64 / 1e3),
        n => n.to_string(),
    }
}
