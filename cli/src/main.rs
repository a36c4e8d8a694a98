//! The `iotql` command: a thin layer of wiring over the iotql libraries.
//!
//! Exit codes (DESIGN.md §5): 0 ok; 1 the job is invalid (diagnostics on
//! stderr); 2 usage error; 3 a runtime failure that could not be retried.

mod check;
mod env;
mod explain;
mod job;
mod reference;
mod repl;
mod run;
mod runner;
mod serve;
mod simulate;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// iotql: an embedded streaming engine for IoT telemetry, driven by Azure
/// Stream Analytics queries.
#[derive(Debug, Parser)]
#[command(name = "iotql", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `NAME=URI`, as in `--input readings=csv:data/readings.csv`.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    pub name: String,
    pub uri: String,
}

/// A duration, or `off`.
#[derive(Debug, Clone, Copy)]
struct Interval(Option<std::time::Duration>);

fn parse_interval(s: &str) -> Result<Interval, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(Interval(None));
    }
    match iotql_engine::time::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("a checkpoint interval of 0; use `off` for none".into()),
        Ok(d) => Ok(Interval(Some(d))),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_binding(s: &str) -> Result<Binding, String> {
    match s.split_once('=') {
        Some((name, uri)) if !name.trim().is_empty() && !uri.trim().is_empty() => Ok(Binding {
            name: name.trim().to_string(),
            uri: uri.trim().to_string(),
        }),
        _ => Err(format!(
            "expected NAME=URI, e.g. readings=csv:data/readings.csv, got `{s}`"
        )),
    }
}

/// The flags of `iotql run` that `iotql serve` gives each of its jobs.
#[derive(Debug, clap::Args)]
struct JobFlags {
    /// How far out of order events may arrive without being late (e.g. 5s).
    #[arg(long, value_parser = iotql_engine::time::parse_duration, default_value = "0s")]
    out_of_order: std::time::Duration,
    /// How long after their event time events may arrive (sources with an arrival time).
    #[arg(long, value_parser = iotql_engine::time::parse_duration, default_value = "5s")]
    late_arrival: std::time::Duration,
    /// What happens to late events: adjust their time to the watermark, or drop them.
    #[arg(long, default_value = "adjust")]
    late_policy: iotql_engine::plan::LatePolicy,
    /// Refuse events timed more than this ahead of the clock (or of their arrival), or `none`.
    #[arg(long, value_parser = iotql_engine::plan::parse_max_future, default_value = "1d")]
    max_future: run::MaxFuture,
    /// Events per batch read from an input.
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    /// No progress bar and no summary.
    #[arg(short, long)]
    quiet: bool,
    /// How often a checkpoint is taken (also when stopping, and on
    /// SIGUSR1); `off`: none, a stopped run starts over.
    #[arg(long, value_parser = parse_interval, default_value = "10s")]
    checkpoint_interval: Interval,
    /// Discard the job's checkpoints and start over.
    #[arg(long)]
    fresh: bool,
    /// Serve the REST API, metrics and dashboard while the job runs, on
    /// ADDR:PORT (e.g. 127.0.0.1:8080, `iotql serve`'s default; an address
    /// beyond this machine needs --http-token). See docs/http.md.
    #[arg(long, value_name = "ADDR:PORT")]
    http: Option<String>,
    /// The access token every HTTP request must carry (Authorization:
    /// Bearer TOKEN, or ?token=TOKEN).
    #[arg(long, env = "IOTQL_HTTP_TOKEN", hide_env_values = true)]
    http_token: Option<String>,
}

impl JobFlags {
    /// The options of a run with these flags and nothing bound on the
    /// command line; `http`: the server's address when none is given.
    fn options(self, command: &str, http: Option<&str>) -> Result<run::RunOptions, ExitCode> {
        let http = match self
            .http
            .or(http.map(str::to_string))
            .map(|a| iotql_connectors::serve::HttpOptions::new(&a, self.http_token))
            .transpose()
        {
            Ok(h) => h,
            Err(e) => {
                eprintln!("iotql {command}: {e}");
                return Err(ExitCode::from(2));
            }
        };
        Ok(run::RunOptions {
            inputs: Vec::new(),
            references: Vec::new(),
            outputs: Vec::new(),
            out_of_order: self.out_of_order,
            late_arrival: self.late_arrival,
            late_policy: self.late_policy,
            max_future: self.max_future,
            dead_letter: None,
            batch_size: usize::try_from(self.batch_size).unwrap_or(usize::MAX),
            quiet: self.quiet,
            state_dir: None,
            checkpoint_interval: self.checkpoint_interval.0,
            fresh: self.fresh,
            http,
        })
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a job over its inputs until they end (files) or Ctrl+C.
    Run {
        /// The job file (`.asaql` by convention; the extension is not significant).
        file: std::path::PathBuf,
        /// Bind or override an input: NAME=URI (csv:PATH, jsonl:PATH, `-` is stdin;
        /// kafka://HOST:PORT/TOPIC, mqtt://HOST:PORT/FILTER, sim:?devices=3&rate=50 for the
        /// device simulator).
        #[arg(long = "input", value_parser = parse_binding)]
        inputs: Vec<Binding>,
        /// Bind or override a reference input: NAME=URI.
        #[arg(long = "reference", value_parser = parse_binding)]
        references: Vec<Binding>,
        /// Bind or override an output: NAME=URI (csv:PATH, jsonl:PATH, stdout,
        /// sqlite:PATH?table=T, postgres://USER@HOST:PORT/DB?table=T, parquet:DIR,
        /// kafka://HOST:PORT/TOPIC, mqtt://HOST:PORT/TOPIC, webhook:URL, slack:URL, log:PATH;
        /// any with ?throttle=10m&throttle_by=COLUMN). See docs/outputs.md.
        #[arg(long = "output", value_parser = parse_binding)]
        outputs: Vec<Binding>,
        /// Where refused events go (default: next to the job, JOB.deadletter.jsonl).
        #[arg(long)]
        dead_letter: Option<std::path::PathBuf>,
        /// Where the job's checkpoints go [default: JOB.state beside the job].
        #[arg(long)]
        state_dir: Option<std::path::PathBuf>,
        #[command(flatten)]
        flags: JobFlags,
    },
    /// Parse and check a job file; problems are printed with line, column and a caret.
    Check {
        /// The job file.
        file: std::path::PathBuf,
        /// An input bound on the command line (NAME=URI), so FROM NAME is known.
        #[arg(long = "input", value_parser = parse_binding)]
        inputs: Vec<Binding>,
        /// An output bound on the command line (NAME=URI), so INTO NAME is known.
        #[arg(long = "output", value_parser = parse_binding)]
        outputs: Vec<Binding>,
        /// Print the job in canonical form after checking it (secret option
        /// values as ***; ${NAME} references as written).
        #[arg(long)]
        print: bool,
        /// Check a job whose ${NAME} environment variables are not set here
        /// (they are listed; `run` still needs them).
        #[arg(long)]
        allow_missing_env: bool,
    },
    /// Print the operator graph of a job.
    Explain {
        /// The job file.
        file: std::path::PathBuf,
    },
    /// Run the tests of the jobs in PATH (NAME.test.toml beside NAME.asaql), with row diffs.
    Test {
        /// A folder (every *.test.toml under it), a job file or a test file.
        path: std::path::PathBuf,
        /// Run only the tests whose name contains TEXT.
        #[arg(long, value_name = "TEXT")]
        filter: Option<String>,
    },
    /// An interactive shell for ad-hoc window queries over live and replayed
    /// inputs (docs/repl.md).
    Repl {
        /// Bind an input: NAME=URI (csv:PATH, jsonl:PATH, kafka://HOST:PORT/TOPIC,
        /// mqtt://HOST:PORT/FILTER, sim:?devices=3&rate=50).
        #[arg(long = "input", value_parser = parse_binding)]
        inputs: Vec<Binding>,
        /// Bind a reference input: NAME=URI.
        #[arg(long = "reference", value_parser = parse_binding)]
        references: Vec<Binding>,
        /// Bind an output: NAME=URI; a query writes there with INTO NAME.
        #[arg(long = "output", value_parser = parse_binding)]
        outputs: Vec<Binding>,
        /// Where refused events go [default: a file in the temporary folder].
        #[arg(long)]
        dead_letter: Option<std::path::PathBuf>,
    },
    /// Play a fleet of simulated devices into an output: readings with daily
    /// cycles, anomalies, draining batteries, and switchable faults.
    Simulate {
        /// Sites in the fleet.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
        sites: u32,
        /// Zones per site.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
        zones: u32,
        /// Devices per zone.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
        devices: u32,
        /// Events per second (wall clock), or `max` for as fast as the output
        /// takes them [default: 100].
        #[arg(long, value_parser = simulate::parse_rate, conflicts_with = "replay_speed")]
        rate: Option<simulate::Pace>,
        /// Pace by event time instead: it advances X times faster than the
        /// wall clock (1 = real time).
        #[arg(long, value_parser = simulate::parse_speed)]
        replay_speed: Option<f64>,
        /// How much event time to play (e.g. 1h, 7d).
        #[arg(long, value_parser = iotql_engine::time::parse_duration)]
        duration: Option<std::time::Duration>,
        /// Stop after this many events. Without --count or --duration, play
        /// until Ctrl+C.
        #[arg(long)]
        count: Option<u64>,
        /// The seed: the same seed and options give the same events.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The event time of the first readings, RFC 3339 [default: now, to the second].
        #[arg(long, value_parser = simulate::parse_start)]
        start: Option<iotql_engine::time::EventTime>,
        /// Event time between two readings of a device.
        #[arg(long, value_parser = iotql_engine::time::parse_duration, default_value = "10s")]
        interval: std::time::Duration,
        /// Share of readings in an anomaly (over-temperature, CO2 spike).
        #[arg(long, value_parser = simulate::parse_share, default_value = "0.01")]
        anomalies: f64,
        /// Share of readings sent twice.
        #[arg(long, value_parser = simulate::parse_share, default_value = "0.001")]
        duplicates: f64,
        /// Share of readings sent late, after newer ones.
        #[arg(long, value_parser = simulate::parse_share, default_value = "0.005")]
        out_of_order: f64,
        /// Share of readings sent as malformed messages.
        #[arg(long, value_parser = simulate::parse_share, default_value = "0.001")]
        malformed: f64,
        /// Batteries keep their charge (no device goes silent).
        #[arg(long)]
        no_battery_drain: bool,
        /// The most events per write.
        #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1..))]
        batch: u64,
        /// Where the events go: csv:PATH, jsonl:PATH (`-` = stdout), stdout.
        #[arg(long)]
        to: String,
        /// No summary.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Run every job of a folder (its *.asaql files) side by side, with one
    /// HTTP server for them all (API, metrics, dashboard), which keeps
    /// serving after the jobs end, until Ctrl+C.
    Serve {
        /// The folder of job files.
        dir: std::path::PathBuf,
        #[command(flatten)]
        flags: JobFlags,
    },
}

/// Log lines on stderr, without secrets (`secret::scrub`: values from the
/// environment in secret options, URL passwords): one rule for every log.
struct Scrubbed;

impl std::io::Write for Scrubbed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(iotql_connectors::secret::scrub(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn main() -> ExitCode {
    // Warnings (a broker outage, a failed reload) on stderr; IOTQL_LOG=info
    // or =debug tells more.
    tracing_subscriber::fmt()
        .with_writer(|| Scrubbed)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IOTQL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            file,
            inputs,
            outputs,
            print,
            allow_missing_env,
        } => check::run(
            &file,
            &inputs,
            &outputs,
            check::Show {
                print,
                allow_missing_env,
            },
        ),
        Command::Run {
            file,
            inputs,
            references,
            outputs,
            dead_letter,
            state_dir,
            flags,
        } => match flags.options("run", None) {
            Ok(options) => run::run(
                &file,
                &run::RunOptions {
                    inputs,
                    references,
                    outputs,
                    dead_letter,
                    state_dir,
                    ..options
                },
            ),
            Err(code) => code,
        },
        Command::Explain { file } => explain::run(&file),
        Command::Test { path, filter } => test::run(&path, filter.as_deref()),
        Command::Repl {
            inputs,
            references,
            outputs,
            dead_letter,
        } => repl::run(repl::ReplOptions {
            inputs,
            references,
            outputs,
            dead_letter,
        }),
        Command::Simulate {
            sites,
            zones,
            devices,
            rate,
            replay_speed,
            duration,
            count,
            seed,
            start,
            interval,
            anomalies,
            duplicates,
            out_of_order,
            malformed,
            no_battery_drain,
            batch,
            to,
            quiet,
        } => simulate::run(simulate::SimulateOptions {
            fleet: iotql_connectors::sim::FleetConfig {
                sites: sites as usize,
                zones_per_site: zones as usize,
                devices_per_zone: devices as usize,
                interval,
                start: start.unwrap_or_else(simulate::now),
                duration,
                seed,
                anomalies,
                duplicates,
                out_of_order,
                malformed,
                battery_drain: !no_battery_drain,
                ..Default::default()
            },
            pace: match (rate, replay_speed) {
                (_, Some(x)) => simulate::Pace::Replay(x),
                (Some(r), None) => r,
                (None, None) => simulate::Pace::Rate(100.0),
            },
            count,
            batch: usize::try_from(batch).unwrap_or(usize::MAX),
            to,
            quiet,
        }),
        Command::Serve { dir, flags } => match flags.options("serve", Some("127.0.0.1:8080")) {
            Ok(options) => serve::run(&dir, &options),
            Err(code) => code,
        },
    }
}
