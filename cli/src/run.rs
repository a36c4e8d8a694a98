//! `iotql run FILE`: binds inputs and outputs, compiles the job, reads every
//! input (one reader thread each, bounded channels), pushes the batches
//! through the dataflow, and prints a summary.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, bounded};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use iotql_connectors::deadletter::{DeadLetterWriter, in_input_order};
use iotql_connectors::endpoint::{self, InputSpec, OutputSpec};
use iotql_dsl::CheckOptions;
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::dataflow::Dataflow;
use iotql_engine::error::EngineError;
use iotql_engine::expr::ExprCompiler;
use iotql_engine::io::{Committer, Sink, Source, SourceBatch};
use iotql_engine::operator::DeadLetter;
use iotql_engine::plan::{LatePolicy, PlanOptions, TimePolicy};

use crate::Binding;
use crate::job::JobFile;
use crate::reference::Reference;

/// The options of `iotql run`.
#[derive(Debug, Clone)]
pub(crate) struct RunOptions {
    pub inputs: Vec<Binding>,
    pub references: Vec<Binding>,
    pub outputs: Vec<Binding>,
    pub out_of_order: Duration,
    pub late_arrival: Duration,
    pub late_policy: LatePolicy,
    pub dead_letter: Option<PathBuf>,
    pub batch_size: usize,
    pub quiet: bool,
}

fn usage(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("iotql run: {message}");
    ExitCode::from(2)
}

fn runtime(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("iotql run: {message}");
    ExitCode::from(3)
}

fn find<'a>(bindings: &'a [Binding], name: &str) -> Option<&'a Binding> {
    bindings.iter().find(|b| b.name.eq_ignore_ascii_case(name))
}

/// What one reader thread sends.
type Read = Result<Option<SourceBatch>, EngineError>;

pub(crate) fn run(file: &Path, options: &RunOptions) -> ExitCode {
    let started = Instant::now();
    let job = match JobFile::read(file, "run") {
        Ok(j) => j,
        Err(code) => return code,
    };
    let bound_inputs: Vec<String> = options
        .inputs
        .iter()
        .chain(&options.references)
        .map(|b| b.name.clone())
        .collect();
    let check = CheckOptions {
        inputs: bound_inputs.clone(),
        outputs: options.outputs.iter().map(|b| b.name.clone()).collect(),
    };
    let plan_options = PlanOptions {
        time: TimePolicy {
            out_of_order: options.out_of_order,
            late_arrival: options.late_arrival,
            late_policy: options.late_policy,
        },
        extra_inputs: bound_inputs,
    };
    let plan = match job.check(&check).and_then(|s| job.plan(&s, &plan_options)) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let base = file.parent().unwrap_or(Path::new("."));

    // Inputs: a command-line binding, else the declaration. Only the
    // columns the job reads are decoded. Reference inputs are read whole.
    let columns = plan.referenced_columns();
    let mut sources: Vec<(String, Box<dyn Source>)> = Vec::new();
    let mut references: Vec<(Reference, RecordBatch)> = Vec::new();
    let reference_names = plan.references();
    let mut refused = Vec::new();
    for input in &plan.inputs {
        let is_reference = reference_names.contains(&input.name);
        if !is_reference && !plan.nodes.iter().any(|n| matches!(&n.kind, iotql_engine::plan::NodeKind::Scan { input: i } if i == &input.name)) {
            continue;
        }
        let spec = match find(&options.inputs, &input.name)
            .or_else(|| find(&options.references, &input.name))
        {
            Some(b) => endpoint::parse_input_uri(&b.uri),
            None if input.options.is_empty() => {
                return usage(format!(
                    "input `{}` is not bound: declare it (CREATE INPUT {} WITH (connector = 'csv', path = '...')) or pass --input {}=csv:PATH",
                    input.name, input.name, input.name
                ));
            }
            None => endpoint::input_from_options(&input.options, base),
        };
        let spec: InputSpec = match spec {
            Ok(s) => s,
            Err(e) => return usage(format!("input `{}`: {e}", input.name)),
        };
        let schema = match endpoint::declared_schema(&input.options) {
            Ok(s) => s,
            Err(e) => return usage(format!("input `{}`: {e}", input.name)),
        };
        if is_reference {
            let loaded = Reference::new(&input.name, spec, schema, input.options.get("refresh"))
                .and_then(|mut r| r.read().map(|(table, letters)| (r, table, letters)));
            match loaded {
                Ok((r, table, letters)) => {
                    refused.extend(letters);
                    references.push((r, table));
                }
                Err(e) => return runtime(e),
            }
            continue;
        }
        match endpoint::open_source(
            &input.name,
            &spec,
            schema,
            options.batch_size,
            columns.as_ref(),
        ) {
            Ok(s) => sources.push((input.name.clone(), s)),
            Err(e) => return runtime(e),
        }
    }

    // Outputs: a command-line binding, else the declaration, else stdout.
    let mut sinks: HashMap<String, Box<dyn Sink>> = HashMap::new();
    for output in &plan.outputs {
        let spec = match find(&options.outputs, &output.name) {
            Some(b) => endpoint::parse_output_uri(&b.uri),
            None if output.options.is_empty() => endpoint::parse_output_uri("stdout"),
            None => endpoint::output_from_options(&output.options, base),
        };
        let spec: OutputSpec = match spec {
            Ok(s) => s,
            Err(e) => return usage(format!("output `{}`: {e}", output.name)),
        };
        sinks.insert(
            output.name.clone(),
            endpoint::open_sink(&output.name, &spec),
        );
    }

    let schemas = sources
        .iter()
        .map(|(n, s)| (n.clone(), s.schema()))
        .chain(references.iter().map(|(r, t)| (r.name.clone(), t.schema())))
        .collect();
    let compiler = ExprCompiler::new();
    let mut dataflow = match Dataflow::compile(&plan, &schemas, sinks, &compiler) {
        Ok(d) => d,
        Err(problems) => return job.refuse(&problems),
    };
    let mut references: Vec<Reference> = match references
        .into_iter()
        .map(|(r, table)| dataflow.load_reference(&r.name, &table).map(|()| r))
        .collect()
    {
        Ok(r) => r,
        Err(e) => return runtime(e),
    };

    let dead_path = options
        .dead_letter
        .clone()
        .unwrap_or_else(|| file.with_extension("deadletter.jsonl"));
    let mut dead = DeadLetterWriter::new(dead_path);
    if let Err(e) = dead.write(&refused) {
        return runtime(format!("dead-letter file {}: {e}", dead.path().display()));
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        // A second Ctrl+C while stopping is not caught: the job stops at once.
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    }

    let total_bytes: Option<u64> = sources.iter().map(|(_, s)| s.progress().1).sum();
    let progress = progress_bar(options.quiet, total_bytes);
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

    let mut stopped = false;
    let result = pump(
        &mut Pump {
            dataflow: &mut dataflow,
            names: &names,
            receivers: &receivers,
            commits: &mut commits,
            references: &mut references,
            dead: &mut dead,
            interrupted: &interrupted,
            progress: &progress,
        },
        &mut stopped,
    );
    progress.finish_and_clear();
    // The readers see their channel closed and stop.
    drop(receivers);
    for reader in readers {
        let _ = reader.join();
    }
    if let Err(e) = result {
        return runtime(e);
    }
    if let Err(e) = dead.flush() {
        return runtime(format!("dead-letter file {}: {e}", dead.path().display()));
    }
    if !options.quiet {
        summary(
            &job.shown,
            &dataflow,
            &dead,
            started.elapsed(),
            interrupted.load(Ordering::SeqCst),
        );
        if stopped {
            eprintln!(
                "  open windows were not emitted: the positions of their events are not committed, so the next run reads them again"
            );
        }
    }
    ExitCode::SUCCESS
}

/// A broker input's committer and the batches pushed but not committed:
/// (mark, the input's largest event time once the batch was pushed).
struct Commits {
    committer: Box<dyn Committer>,
    pending: std::collections::VecDeque<(u64, i64)>,
}

impl Commits {
    fn new(committer: Box<dyn Committer>) -> Self {
        Commits {
            committer,
            pending: std::collections::VecDeque::new(),
        }
    }
}

/// How often a broker input's positions are committed.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// What the pump loop works with.
struct Pump<'a> {
    dataflow: &'a mut Dataflow,
    names: &'a [String],
    receivers: &'a [Receiver<(Read, u64)>],
    commits: &'a mut [Option<Commits>],
    references: &'a mut [Reference],
    dead: &'a mut DeadLetterWriter,
    interrupted: &'a AtomicBool,
    progress: &'a ProgressBar,
}

impl Pump<'_> {
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
}

/// Moves batches from the reader threads into the dataflow until every
/// input has ended (or Ctrl+C); `stopped` tells whether it stopped early
/// with a live input, leaving held events (open windows) unemitted.
fn pump(p: &mut Pump<'_>, stopped: &mut bool) -> Result<(), String> {
    let mut open: Vec<bool> = vec![true; p.receivers.len()];
    let mut bytes = vec![0u64; p.receivers.len()];
    let mut events = 0u64;
    let started = Instant::now();
    let mut last_commit = Instant::now();
    while open.iter().any(|&o| o) {
        if p.interrupted.load(Ordering::SeqCst) {
            // Stop reading; what was read is flushed.
            break;
        }
        for r in p.references.iter_mut() {
            let letters = r.refresh(p.dataflow)?;
            p.dead
                .write(&letters)
                .map_err(|e| format!("dead-letter file: {e}"))?;
        }
        p.dataflow.tick_outputs().map_err(|e| e.to_string())?;
        let letters = p.dataflow.take_dead_letters();
        p.write_dead(letters)?;
        if last_commit.elapsed() >= COMMIT_INTERVAL {
            p.commit_done()?;
            last_commit = Instant::now();
        }
        let mut select = Select::new();
        let indices: Vec<usize> = (0..p.receivers.len()).filter(|&i| open[i]).collect();
        for &i in &indices {
            select.recv(&p.receivers[i]);
        }
        let op = match select.select_timeout(Duration::from_millis(200)) {
            Ok(op) => op,
            Err(_) => continue,
        };
        let i = indices[op.index()];
        let (read, position) = op
            .recv(&p.receivers[i])
            .map_err(|_| format!("the reader of `{}` stopped", p.names[i]))?;
        bytes[i] = position;
        match read {
            Ok(Some(batch)) => {
                let mut letters = batch.dead_letters;
                if let Some(partitions) = &batch.partitions {
                    p.dataflow
                        .set_partitions(&p.names[i], partitions)
                        .map_err(|e| e.to_string())?;
                }
                if let Some(b) = batch.batch {
                    events += b.num_rows() as u64;
                    p.dataflow.push(&p.names[i], b).map_err(|e| e.to_string())?;
                }
                if let Some(now) = batch.arrival {
                    p.dataflow
                        .advance_arrival(&p.names[i], now)
                        .map_err(|e| e.to_string())?;
                }
                if batch.mark > 0 {
                    let latest = p.latest_event(i);
                    if let Some(c) = &mut p.commits[i] {
                        c.pending.push_back((batch.mark, latest));
                    }
                }
                letters.extend(p.dataflow.take_dead_letters());
                in_input_order(&mut letters);
                p.write_dead(letters)?;
            }
            Ok(None) => {
                open[i] = false;
                p.dataflow
                    .end_input(&p.names[i])
                    .map_err(|e| e.to_string())?;
            }
            Err(e) => return Err(e.to_string()),
        }
        let letters = p.dataflow.take_dead_letters();
        p.write_dead(letters)?;
        p.progress.set_position(bytes.iter().sum());
        let rate = events as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let watermark = p
            .dataflow
            .input_stats()
            .iter()
            .filter_map(|i| i.stats.watermark())
            .min()
            .map_or_else(|| "-".to_string(), |w| w.to_string());
        p.progress.set_message(format!(
            "{} events, {}/s, watermark {watermark}",
            human_count(events),
            human_count(rate as u64)
        ));
    }
    // A broker input (one with a committer) is live: Ctrl+C does not end it.
    let live = p.commits.iter().any(Option::is_some);
    if live && open.iter().any(|&o| o) {
        // Stopped with a live input: what is emitted is flushed and its
        // positions committed; open windows wait for the next run.
        p.commit_done()?;
        *stopped = p.dataflow.held_since().is_some();
        p.dataflow.stop().map_err(|e| e.to_string())?;
        let letters = p.dataflow.take_dead_letters();
        p.write_dead(letters)?;
    } else {
        p.dataflow.finish().map_err(|e| e.to_string())?;
        let letters = p.dataflow.take_dead_letters();
        p.write_dead(letters)?;
        p.commit_done()?;
    }
    Ok(())
}

fn progress_bar(quiet: bool, total: Option<u64>) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::no_length(),
    };
    bar.set_draw_target(ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// 12345678 -> "12.3M".
fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 10_000 => format!("{:.1}k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

fn summary(
    job: &str,
    dataflow: &Dataflow,
    dead: &DeadLetterWriter,
    elapsed: Duration,
    interrupted: bool,
) {
    let secs = elapsed.as_secs_f64();
    let stopped = if interrupted {
        " (stopped by Ctrl+C)"
    } else {
        ""
    };
    eprintln!("{job}: finished in {secs:.2} s{stopped}");
    let mut total = 0;
    for i in dataflow.input_stats() {
        let s = &i.stats;
        let n = s.events_in.load(Ordering::Relaxed);
        total += n;
        eprintln!(
            "  input  {:<20} {:>12} events   late: {} adjusted, {} dropped",
            i.name,
            n,
            s.late_adjusted.load(Ordering::Relaxed),
            s.late_dropped.load(Ordering::Relaxed),
        );
    }
    for o in dataflow.output_stats() {
        let mut line = format!(
            "  output {:<20} {:>12} rows",
            o.name,
            o.rows.load(Ordering::Relaxed)
        );
        if let Some(m) = &o.sink {
            let written = m.rows_written.load(Ordering::Relaxed);
            if written != o.rows.load(Ordering::Relaxed) {
                line.push_str(&format!("   written: {written}"));
            }
            for (what, n) in [
                ("retries", m.retries.load(Ordering::Relaxed)),
                ("failed", m.failures.load(Ordering::Relaxed)),
                ("throttled", m.suppressed.load(Ordering::Relaxed)),
            ] {
                if n > 0 {
                    line.push_str(&format!("   {what}: {n}"));
                }
            }
        }
        eprintln!("{line}");
    }
    if dead.count() > 0 {
        eprintln!(
            "  dead letters: {} (in {})",
            dead.count(),
            dead.path().display()
        );
    } else {
        eprintln!("  dead letters: 0");
    }
    eprintln!(
        "  {} events/s",
        human_count((total as f64 / secs.max(1e-9)) as u64)
    );
}
