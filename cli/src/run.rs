//! `iotql run FILE`: checks and plans the job, runs it with the shared
//! runner (`runner.rs`: inputs and outputs bound, one reader thread per
//! input, the pump), shows a progress bar and prints a summary.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use iotql_connectors::deadletter::DeadLetterWriter;
use iotql_connectors::endpoint::{self, OutputSpec};
use iotql_connectors::file::OutputTarget;
use iotql_connectors::serve::{self, HttpOptions, JobState, JobView, OutputView, Registry};
use iotql_dsl::CheckOptions;
use iotql_engine::dataflow::Dataflow;
use iotql_engine::plan::{LatePolicy, PlanOptions, TimePolicy};

use crate::Binding;
use crate::job::JobFile;
use crate::runner::{self, Bindings, Observer, OnInterrupt, PrepareError, human_count};

/// `--max-future`: a duration, or `None` for no limit (a named type, so
/// that clap takes it as a value, not as an optional flag).
pub(crate) type MaxFuture = Option<Duration>;

/// The options of `iotql run`.
#[derive(Debug, Clone)]
pub(crate) struct RunOptions {
    pub inputs: Vec<Binding>,
    pub references: Vec<Binding>,
    pub outputs: Vec<Binding>,
    pub out_of_order: Duration,
    pub late_arrival: Duration,
    pub late_policy: LatePolicy,
    pub max_future: MaxFuture,
    pub dead_letter: Option<PathBuf>,
    pub batch_size: usize,
    pub quiet: bool,
    /// Where checkpoints go (default: beside the job).
    pub state_dir: Option<PathBuf>,
    /// How often; `None`: no checkpoints.
    pub checkpoint_interval: Option<Duration>,
    /// Discard the job's checkpoints and start over.
    pub fresh: bool,
    /// Serve the API, metrics and dashboard while the job runs.
    pub http: Option<HttpOptions>,
}

/// The job's checkpoint folder: `--state-dir`, else `JOB.state` beside the
/// job; a run with inputs or outputs bound on the command line is another
/// pipeline and keeps its checkpoints in a folder of its own inside it.
fn state_dir(file: &Path, options: &RunOptions) -> PathBuf {
    if let Some(dir) = &options.state_dir {
        return dir.clone();
    }
    let dir = file.with_extension("state");
    let bindings: Vec<String> = [
        ("input", &options.inputs),
        ("reference", &options.references),
        ("output", &options.outputs),
    ]
    .iter()
    .flat_map(|(kind, list)| {
        list.iter()
            .map(move |b| format!("{kind} {}={}", b.name, b.uri))
    })
    .collect();
    if bindings.is_empty() {
        return dir;
    }
    let parts: Vec<&str> = bindings.iter().map(String::as_str).collect();
    dir.join(format!(
        "bound-{}",
        iotql_engine::checkpoint::fingerprint(&parts)
    ))
}

/// Who says what goes wrong: `iotql run`, or `iotql serve: JOB` for one
/// job of a folder.
fn usage(who: &str, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("{who}: {message}");
    ExitCode::from(2)
}

fn runtime(who: &str, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("{who}: {message}");
    ExitCode::from(3)
}

/// A job checked and planned, not started: what `run` and `serve` execute.
pub(crate) struct Planned {
    file: PathBuf,
    job: JobFile,
    script: iotql_dsl::ast::Script,
    plan: iotql_engine::plan::LogicalPlan,
    time: TimePolicy,
    started: Instant,
}

impl Planned {
    /// Reads, checks and plans the job `file` (`command` names the
    /// subcommand in messages); a refusal is printed, with its exit code.
    pub(crate) fn new(
        file: &Path,
        options: &RunOptions,
        command: &str,
    ) -> Result<Planned, ExitCode> {
        let started = Instant::now();
        let job = JobFile::read(file, command)?;
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
        let time = TimePolicy {
            out_of_order: options.out_of_order,
            late_arrival: options.late_arrival,
            late_policy: options.late_policy,
            max_future: options.max_future,
        };
        let plan_options = PlanOptions {
            time,
            extra_inputs: bound_inputs,
        };
        let script = job.check(&check)?;
        job.check_env(&script, false)?;
        let plan = job.plan(&script, &plan_options)?;
        Ok(Planned {
            file: file.to_path_buf(),
            job,
            script,
            plan,
            time,
            started,
        })
    }

    /// The job's name as the API shows it: its file's name without
    /// extension.
    pub(crate) fn name(&self) -> String {
        job_name(&self.file)
    }
}

/// Starts the HTTP server of `jobs` (before they start: a port in use
/// stops the command there, and the jobs' states show from their first
/// moment).
pub(crate) fn start_server(
    who: &str,
    http: &HttpOptions,
    jobs: &[Arc<JobView>],
    quiet: bool,
) -> Result<serve::Server, ExitCode> {
    let registry = Registry::new();
    for view in jobs {
        registry.add(view.clone()).map_err(|e| usage(who, e))?;
    }
    let server = serve::Server::start(http, registry).map_err(|e| usage(who, e))?;
    if !quiet {
        eprintln!(
            "serving the API and dashboard on http://{}/",
            server.address()
        );
    }
    Ok(server)
}

/// The flag that Ctrl+C and SIGTERM (a service manager stopping the
/// command) set: every job running then stops at a checkpoint. A second
/// Ctrl+C while stopping is not caught: the process stops at once.
pub(crate) fn stop_on_signals() -> Arc<AtomicBool> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    let _ = signal_hook::flag::register(signal_hook::consts::SIGTERM, interrupted.clone());
    interrupted
}

pub(crate) fn run(file: &Path, options: &RunOptions) -> ExitCode {
    let planned = match Planned::new(file, options, "run") {
        Ok(p) => p,
        Err(code) => return code,
    };
    let view = JobView::new(&planned.name(), &file.display().to_string());
    let _server = match &options.http {
        Some(http) => match start_server(
            "iotql run",
            http,
            std::slice::from_ref(&view),
            options.quiet,
        ) {
            Ok(s) => Some(s),
            Err(code) => return code,
        },
        None => None,
    };
    let interrupted = stop_on_signals();
    execute(planned, options, &view, &interrupted, "iotql run", true)
}

/// Runs a planned job until its inputs end or `interrupted` is set, its
/// state and counters shown to `view`; prints its summary (unless quiet)
/// and, with `bar`, a progress bar on a terminal. `who` names it in
/// messages.
pub(crate) fn execute(
    planned: Planned,
    options: &RunOptions,
    view: &Arc<JobView>,
    interrupted: &Arc<AtomicBool>,
    who: &str,
    bar: bool,
) -> ExitCode {
    let Planned {
        file,
        job,
        script,
        plan,
        time,
        started,
    } = planned;
    let file = file.as_path();
    let requested = Arc::new(AtomicBool::new(false));
    let checkpointing = options.checkpoint_interval.map(|interval| {
        // SIGUSR1 takes a checkpoint now (`kill -USR1 PID`).
        let _ = signal_hook::flag::register(signal_hook::consts::SIGUSR1, requested.clone());
        runner::CheckpointOptions {
            dir: state_dir(file, options),
            interval: Some(interval),
            fresh: options.fresh,
            job: vec![script.to_string(), format!("{time:?}")],
            requested: requested.clone(),
        }
    });
    let base = file.parent().unwrap_or(Path::new("."));
    let bindings = Bindings {
        inputs: &options.inputs,
        references: &options.references,
        outputs: &options.outputs,
    };
    // An output neither bound nor declared prints to stdout.
    let mut stdout =
        |name: &str| endpoint::open_sink(name, &OutputSpec::JsonLines(OutputTarget::Stdout));
    let prepared = match runner::prepare(
        &plan,
        bindings,
        base,
        options.batch_size,
        &mut stdout,
        checkpointing,
    ) {
        Ok(p) => p,
        Err(e) => {
            let code = match e {
                PrepareError::Usage(m) => usage(who, m),
                PrepareError::Runtime(m) => runtime(who, m),
                PrepareError::Invalid(problems) => job.refuse(&problems),
            };
            view.set_state(JobState::Failed("it could not start (see its log)".into()));
            return code;
        }
    };
    show(view, &prepared);

    let dead_path = options
        .dead_letter
        .clone()
        .unwrap_or_else(|| file.with_extension("deadletter.jsonl"));
    let mut dead = DeadLetterWriter::new(dead_path);
    view.count_dead_letters(dead.counter());

    let mut progress = Progress {
        bar: progress_bar(options.quiet || !bar, prepared.total_bytes()),
        started: Instant::now(),
        view: view.clone(),
    };
    let metrics = prepared.metrics();
    view.set_state(JobState::Running);
    let (dataflow, result) = prepared.execute(
        &mut dead,
        interrupted,
        OnInterrupt::FinishFiles,
        &mut progress,
    );
    progress.bar.finish_and_clear();
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            view.set_state(JobState::Failed(e.clone()));
            return runtime(who, e);
        }
    };
    view.set_state(if outcome.interrupted {
        JobState::Stopped
    } else {
        JobState::Completed
    });
    if !options.quiet {
        // One job's lines together, when several jobs end at once.
        let _together = std::io::stderr().lock();
        summary(
            &job.shown,
            &dataflow,
            &dead,
            started.elapsed(),
            outcome.interrupted,
        );
        for line in runner::summary(&metrics, outcome.interrupted) {
            eprintln!("{line}");
        }
        if let Some(c) = &outcome.checkpoints {
            if let Some((id, path)) = &c.resumed {
                eprintln!("  resumed from checkpoint {id} ({})", path.display());
            }
            if let (true, Some(why)) = (outcome.interrupted, &c.disabled) {
                eprintln!("  no checkpoint was taken: {why}");
            }
            if let Some(id) = c.stopped_at {
                eprintln!(
                    "  stopped at checkpoint {id} in {}: run again to resume there (open windows are emitted then), or with --fresh to start over",
                    c.dir.display()
                );
            }
        }
        if outcome.held
            && outcome
                .checkpoints
                .as_ref()
                .is_none_or(|c| c.stopped_at.is_none())
        {
            eprintln!(
                "  open windows were not emitted: the positions of their events are not committed, so the next run reads them again"
            );
        }
    }
    ExitCode::SUCCESS
}

/// The job's name as the API shows it: its file's name without extension.
fn job_name(file: &Path) -> String {
    file.file_stem().map_or_else(
        || file.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

/// Shows the job's outputs and counters to the HTTP server (when there is
/// none, nobody reads them: the cost is a few clones of counter handles).
fn show(view: &JobView, prepared: &runner::Prepared) {
    let outputs = prepared
        .outputs
        .iter()
        .map(|(name, spec)| OutputView::new(name, spec))
        .chain(
            // Outputs neither bound nor declared print to stdout.
            prepared
                .dataflow
                .output_stats()
                .iter()
                .filter(|o| !prepared.outputs.iter().any(|(n, _)| *n == o.name))
                .map(|o| OutputView::new(&o.name, &OutputSpec::JsonLines(OutputTarget::Stdout))),
        )
        .collect();
    view.set_outputs(outputs);
    view.attach(
        prepared.dataflow.input_stats(),
        prepared.dataflow.output_stats(),
        prepared.metrics(),
    );
}

/// The progress bar of `iotql run` (a terminal only), and the job's state
/// for the HTTP server.
struct Progress {
    bar: ProgressBar,
    started: Instant,
    view: Arc<JobView>,
}

impl Observer for Progress {
    fn pushed(&mut self, dataflow: &Dataflow, events: u64, bytes: u64) -> Option<Instant> {
        self.bar.set_position(bytes);
        let rate = events as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let watermark = dataflow
            .input_stats()
            .iter()
            .filter_map(|i| i.stats.watermark())
            .min()
            .map_or_else(|| "-".to_string(), |w| w.to_string());
        self.bar.set_message(format!(
            "{} events, {}/s, watermark {watermark}",
            human_count(events),
            human_count(rate as u64)
        ));
        None
    }

    fn checkpointed(&mut self, id: u64) {
        self.view.checkpointed(id);
    }
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
                ("outages", m.outages.load(Ordering::Relaxed)),
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
