//! `iotql simulate`: plays a simulated fleet ([`iotql_connectors::sim`])
//! into an output, paced by events per second (wall clock) or by a replay
//! speed of event time, until a count of events, the end of a duration of
//! event time, or Ctrl+C; then finishes the output and prints a summary.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded};
use iotql_connectors::endpoint;
use iotql_connectors::sim::{Fleet, FleetConfig, WireFormat, write_messages};
use iotql_engine::error::EngineError;
use iotql_engine::io::Sink;

// The pace and option parsers are the simulator's own, shared with the
// `sim:` input.
pub(crate) use iotql_connectors::sim::{
    Pace, now, parse_rate, parse_share, parse_speed, parse_start,
};

/// The options of `iotql simulate`.
#[derive(Debug, Clone)]
pub(crate) struct SimulateOptions {
    /// The fleet; its wire format is chosen from the output.
    pub fleet: FleetConfig,
    pub pace: Pace,
    /// Stop after this many events.
    pub count: Option<u64>,
    /// The most events per write.
    pub batch: usize,
    pub to: String,
    pub quiet: bool,
}

fn usage(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("iotql simulate: {message}");
    ExitCode::from(2)
}

fn runtime(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("iotql simulate: {message}");
    ExitCode::from(3)
}

pub(crate) fn run(options: SimulateOptions) -> ExitCode {
    let spec = match endpoint::parse_output_uri(&options.to) {
        Ok(s) => s,
        Err(e) => return usage(format!("--to: {e}")),
    };
    let config = FleetConfig {
        wire: WireFormat::of(&spec),
        ..options.fleet.clone()
    };
    let mut fleet = match config.build() {
        Ok(f) => f,
        Err(e) => return usage(e),
    };
    let mut sink = endpoint::open_sink(&options.to, &spec);
    if let Err(e) = sink.start(&fleet.schema()) {
        return runtime(e);
    }
    let (tx, interrupt) = bounded(1);
    // A second Ctrl+C while finishing is not caught: the command stops at once.
    let _ = ctrlc::set_handler(move || {
        let _ = tx.try_send(());
    });
    let started = Instant::now();
    let played = play(&mut fleet, sink.as_mut(), &options, &interrupt);
    let finished = sink.finish();
    let interrupted = match (played, finished) {
        (Ok(interrupted), Ok(())) => interrupted,
        (Err(e), _) | (Ok(_), Err(e)) => {
            let hint = match e {
                EngineError::Unsupported(_) => " (pass --malformed 0 to send only valid events)",
                _ => "",
            };
            return runtime(format!("{e}{hint}"));
        }
    };
    if !options.quiet {
        summary(&fleet, config.devices(), started.elapsed(), interrupted);
    }
    ExitCode::SUCCESS
}

/// Writes the fleet's messages until the count, the end of event time or
/// Ctrl+C (then true).
fn play(
    fleet: &mut Fleet,
    sink: &mut dyn Sink,
    options: &SimulateOptions,
    interrupt: &Receiver<()>,
) -> Result<bool, EngineError> {
    let started = Instant::now();
    let start = options.fleet.start;
    // Small writes when paced, so events spread over each second.
    let chunk = match options.pace {
        Pace::Max => options.batch,
        Pace::Rate(r) => ((r / 20.0).ceil() as usize).clamp(1, options.batch),
        Pace::Replay(_) => options.fleet.devices().clamp(1, options.batch),
    };
    loop {
        if interrupt.try_recv().is_ok() {
            return Ok(true);
        }
        let events = fleet.stats().events;
        let want = match options.count {
            Some(c) => usize::try_from(c.saturating_sub(events))
                .unwrap_or(usize::MAX)
                .min(chunk),
            None => chunk,
        };
        if want == 0 {
            return Ok(false);
        }
        let messages = fleet.next_messages(want)?;
        if messages.is_empty() {
            return Ok(false);
        }
        write_messages(sink, &messages)?;
        let due = match options.pace {
            Pace::Max => continue,
            Pace::Rate(r) => Duration::from_secs_f64(fleet.stats().events as f64 / r),
            Pace::Replay(x) => {
                let played = fleet.newest().map_or(0, |t| t.micros() - start.micros());
                Duration::from_secs_f64(played.max(0) as f64 / 1e6 / x)
            }
        };
        sink.flush()?;
        let wait = (started + due).saturating_duration_since(Instant::now());
        if !wait.is_zero() && interrupt.recv_timeout(wait).is_ok() {
            return Ok(true);
        }
    }
}

fn summary(fleet: &Fleet, devices: usize, elapsed: Duration, interrupted: bool) {
    let s = fleet.stats();
    let secs = elapsed.as_secs_f64();
    let stopped = if interrupted {
        " (stopped by Ctrl+C)"
    } else {
        ""
    };
    eprintln!(
        "iotql simulate: {} events from {devices} devices in {secs:.2} s ({:.0} events/s): {} duplicates, {} out of order, {} malformed, {} anomalous readings{stopped}",
        s.events,
        s.events as f64 / secs.max(1e-9),
        s.duplicates,
        s.out_of_order,
        s.malformed,
        s.anomalies,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_speeds_shares_and_starts_parse() {
        assert_eq!(parse_rate("max"), Ok(Pace::Max));
        assert_eq!(parse_rate("250"), Ok(Pace::Rate(250.0)));
        assert!(parse_rate("0").is_err() && parse_rate("fast").is_err());
        assert_eq!(parse_speed("60"), Ok(60.0));
        assert!(parse_speed("-1").is_err());
        assert_eq!(parse_share("0.01"), Ok(0.01));
        assert!(parse_share("2").is_err() && parse_share("1%").is_err());
        assert_eq!(
            parse_start("2026-01-01T00:00:00Z"),
            Ok(iotql_connectors::sim::DEFAULT_START)
        );
        assert!(parse_start("yesterday").is_err());
        assert_eq!(now().micros() % 1_000_000, 0);
    }
}
