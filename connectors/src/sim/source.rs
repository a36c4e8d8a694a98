//! The simulator as an input: `sim:?sites=1&zones=2&devices=3&rate=50`
//! (or `CREATE INPUT readings WITH (connector = 'sim', rate = '50')`), a
//! [`Source`] that plays a [`Fleet`] paced on the wall clock, so that a job
//! or the REPL can watch a live fleet without a broker.
//!
//! The options and their defaults are those of `iotql simulate`: sites (3),
//! zones (5 per site), devices (3 per zone), rate (100 events/s, or `max`),
//! replay_speed (pace by event time instead), seed (1), interval (10s),
//! start (now, to the second), duration and count (no end), the shares of
//! anomalies (0.01), duplicates (0.001), out_of_order (0.005) and malformed
//! (0.001) messages, battery_drain (true). Malformed messages become dead
//! letters with their payload, as a file or broker input would refuse them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use iotql_engine::arrow::datatypes::SchemaRef;
use iotql_engine::error::EngineError;
use iotql_engine::io::{Source, SourceBatch};
use iotql_engine::operator::DeadLetter;
use iotql_engine::time::EventTime;

use super::{Fleet, FleetConfig, Message, WireFormat};

/// How fast the simulator's messages go out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as they are taken.
    Max,
    /// Events per second of wall-clock time.
    Rate(f64),
    /// Event time advances this many times faster than the wall clock.
    Replay(f64),
}

/// The default pace: 100 events per second.
pub const DEFAULT_PACE: Pace = Pace::Rate(100.0);

/// `N|max`: events per second.
pub fn parse_rate(text: &str) -> Result<Pace, String> {
    if text.trim().eq_ignore_ascii_case("max") {
        return Ok(Pace::Max);
    }
    match text.trim().parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(Pace::Rate(r)),
        _ => Err(format!(
            "`{text}` is not a rate: write events per second (e.g. 100) or max"
        )),
    }
}

/// How many times faster than real time event time goes.
pub fn parse_speed(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
        _ => Err(format!(
            "`{text}` is not a speed: write how many times faster than real time (e.g. 60)"
        )),
    }
}

/// A share of the readings, 0 to 1.
pub fn parse_share(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if (0.0..=1.0).contains(&s) => Ok(s),
        _ => Err(format!(
            "`{text}` is not a share: write a fraction from 0 to 1 (e.g. 0.01 for 1 %)"
        )),
    }
}

/// A start of event time: RFC 3339.
pub fn parse_start(text: &str) -> Result<EventTime, String> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| EventTime(t.timestamp_micros()))
        .map_err(|e| format!("`{text}` is not an RFC 3339 time (e.g. 2026-01-01T08:00:00Z): {e}"))
}

/// Now, to the second: the default start of event time.
pub fn now() -> EventTime {
    EventTime(chrono::Utc::now().timestamp() * 1_000_000)
}

/// A simulated fleet read as an input.
#[derive(Debug, Clone, PartialEq)]
pub struct SimInput {
    pub fleet: FleetConfig,
    pub pace: Pace,
    /// Stop after this many events.
    pub count: Option<u64>,
}

// Every float of a `SimInput` is checked finite when it is parsed.
impl Eq for SimInput {}

/// The options a `sim` input takes.
const OPTIONS: &[&str] = &[
    "sites",
    "zones",
    "devices",
    "rate",
    "replay_speed",
    "seed",
    "interval",
    "start",
    "duration",
    "count",
    "anomalies",
    "duplicates",
    "out_of_order",
    "malformed",
    "battery_drain",
];

fn whole<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    key: &str,
    text: &str,
    least: T,
) -> Result<T, String> {
    match text.trim().replace('_', "").parse::<T>() {
        Ok(n) if n >= least => Ok(n),
        _ => Err(format!(
            "{key} `{text}` is not a whole number of at least 1"
        )),
    }
}

impl SimInput {
    /// `?sites=1&rate=50` (the part of a `sim:` URI after the colon).
    pub fn from_uri(rest: &str) -> Result<SimInput, String> {
        let query = rest.strip_prefix('?').unwrap_or(rest);
        let options: BTreeMap<String, String> = crate::endpoint::query_pairs(query)?
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        SimInput::from_options(&options)
    }

    /// The options of a `sim:` URI or of a declaration (`connector` is
    /// ignored; any other unknown key is refused).
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<SimInput, String> {
        let mut fleet = FleetConfig {
            start: now(),
            wire: WireFormat::JsonLines,
            ..FleetConfig::default()
        };
        let mut pace = DEFAULT_PACE;
        let mut count = None;
        for (key, value) in options {
            let key = key.to_ascii_lowercase();
            let v = value.as_str();
            match key.as_str() {
                "connector" | "format" => {}
                "sites" => fleet.sites = whole(&key, v, 1)?,
                "zones" => fleet.zones_per_site = whole(&key, v, 1)?,
                "devices" => fleet.devices_per_zone = whole(&key, v, 1)?,
                "seed" => fleet.seed = whole(&key, v, 0)?,
                "count" => count = Some(whole(&key, v, 1)?),
                "rate" => pace = parse_rate(v)?,
                "replay_speed" => pace = Pace::Replay(parse_speed(v)?),
                "interval" => {
                    fleet.interval = iotql_engine::time::parse_duration(v)
                        .map_err(|e| format!("interval `{v}`: {e}"))?
                }
                "duration" => {
                    fleet.duration = Some(
                        iotql_engine::time::parse_duration(v)
                            .map_err(|e| format!("duration `{v}`: {e}"))?,
                    )
                }
                "start" => fleet.start = parse_start(v)?,
                "anomalies" => fleet.anomalies = parse_share(v)?,
                "duplicates" => fleet.duplicates = parse_share(v)?,
                "out_of_order" => fleet.out_of_order = parse_share(v)?,
                "malformed" => fleet.malformed = parse_share(v)?,
                "battery_drain" => {
                    fleet.battery_drain = match v.trim().to_ascii_lowercase().as_str() {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" => false,
                        _ => return Err(format!("battery_drain `{v}`: write true or false")),
                    }
                }
                other => {
                    return Err(format!(
                        "unknown option `{other}` of the simulator (known: {})",
                        OPTIONS.join(", ")
                    ));
                }
            }
        }
        if options.contains_key("rate") && options.contains_key("replay_speed") {
            return Err("give rate or replay_speed, not both".into());
        }
        // The fleet's own checks (sizes, interval), before anything runs.
        fleet.build().map_err(|e| e.to_string())?;
        Ok(SimInput { fleet, pace, count })
    }
}

/// Plays a fleet as an input, paced by its rate on the wall clock (or its
/// replay speed of event time, or as fast as it is read).
#[derive(Debug)]
pub struct SimSource {
    name: String,
    fleet: Fleet,
    pace: Pace,
    count: Option<u64>,
    batch_size: usize,
    started: Option<Instant>,
}

impl SimSource {
    pub fn open(name: &str, input: &SimInput, batch_size: usize) -> Result<SimSource, EngineError> {
        let fleet = input.fleet.build().map_err(|e| EngineError::Source {
            input: name.to_string(),
            message: e.to_string(),
        })?;
        Ok(SimSource {
            name: name.to_string(),
            fleet,
            pace: input.pace,
            count: input.count,
            batch_size: batch_size.max(1),
            started: None,
        })
    }

    /// Events per read: small when paced, so that events spread over each
    /// second.
    fn chunk(&self) -> usize {
        match self.pace {
            Pace::Max => self.batch_size,
            Pace::Rate(r) => ((r / 20.0).ceil() as usize).clamp(1, self.batch_size),
            Pace::Replay(_) => self.fleet.config.devices().clamp(1, self.batch_size),
        }
    }

    /// How long after the start the events handed out so far are due.
    fn due(&self) -> Duration {
        match self.pace {
            Pace::Max => Duration::ZERO,
            Pace::Rate(r) => Duration::from_secs_f64(self.fleet.stats().events as f64 / r),
            Pace::Replay(x) => {
                let start = self.fleet.config.start.micros();
                let played = self.fleet.newest().map_or(0, |t| t.micros() - start);
                Duration::from_secs_f64(played.max(0) as f64 / 1e6 / x)
            }
        }
    }
}

impl Source for SimSource {
    fn schema(&self) -> SchemaRef {
        super::schema()
    }

    fn next_batch(&mut self) -> Result<Option<SourceBatch>, EngineError> {
        let started = *self.started.get_or_insert_with(Instant::now);
        let wait = (started + self.due()).saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        let events = self.fleet.stats().events;
        let want = match self.count {
            Some(c) => usize::try_from(c.saturating_sub(events))
                .unwrap_or(usize::MAX)
                .min(self.chunk()),
            None => self.chunk(),
        };
        if want == 0 {
            return Ok(None);
        }
        let messages = self.fleet.next_messages(want)?;
        if messages.is_empty() {
            return Ok(None);
        }
        let mut rows = Vec::new();
        let mut dead_letters = Vec::new();
        let mut n = events;
        for m in messages {
            match m {
                Message::Rows(b) => {
                    n += b.num_rows() as u64;
                    rows.push(b);
                }
                Message::Malformed(payload) => {
                    n += 1;
                    dead_letters.push(DeadLetter {
                        input: self.name.clone(),
                        position: format!("event {n}"),
                        reason: "a malformed message (a fault the simulator plays)".into(),
                        raw: String::from_utf8_lossy(&payload).into_owned(),
                    });
                }
            }
        }
        let batch = match rows.len() {
            0 => None,
            1 => rows.pop(),
            _ => Some(iotql_engine::arrow::compute::concat_batches(
                &super::schema(),
                &rows,
            )?),
        };
        Ok(Some(SourceBatch {
            batch,
            dead_letters,
            ..SourceBatch::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::endpoint::options;

    #[test]
    fn a_uri_sets_the_simulate_options_and_keeps_their_defaults() {
        let input = SimInput::from_uri(
            "?sites=1&zones=2&devices=3&rate=50&seed=7&interval=5s&start=2026-01-01T00:00:00Z&anomalies=0.2",
        )
        .unwrap();
        assert_eq!(input.fleet.devices(), 6);
        assert_eq!(input.fleet.seed, 7);
        assert_eq!(input.fleet.interval, Duration::from_secs(5));
        assert_eq!(input.fleet.start, super::super::DEFAULT_START);
        assert_eq!(input.fleet.anomalies, 0.2);
        assert_eq!(input.pace, Pace::Rate(50.0));
        // Untouched: the defaults of `iotql simulate`.
        assert_eq!(input.fleet.duplicates, 0.001);
        assert_eq!(input.fleet.malformed, 0.001);
        assert!(input.fleet.battery_drain);
        assert_eq!(input.count, None);

        let plain = SimInput::from_uri("").unwrap();
        assert_eq!(plain.fleet.devices(), 45);
        assert_eq!(plain.pace, DEFAULT_PACE);
        assert_eq!(plain.fleet.start.micros() % 1_000_000, 0);
        assert_eq!(
            SimInput::from_uri("?rate=max&count=10").unwrap().pace,
            Pace::Max
        );
    }

    #[test]
    fn bad_options_are_refused_with_what_to_write() {
        for (uri, says) in [
            ("?sites=0", "sites `0`"),
            ("?rate=fast", "not a rate"),
            ("?anomalies=2", "not a share"),
            ("?start=yesterday", "RFC 3339"),
            ("?interval=0s", "at least 1ms"),
            ("?colour=red", "unknown option `colour`"),
            ("?rate=10&replay_speed=60", "not both"),
            ("?sites", "key=value"),
        ] {
            let e = SimInput::from_uri(uri).unwrap_err();
            assert!(e.contains(says), "{uri}: {e}");
        }
        let declared = options(&[("connector", "sim"), ("devices", "2"), ("rate", "max")]);
        assert_eq!(
            SimInput::from_options(&declared).unwrap().fleet.devices(),
            30
        );
    }

    #[test]
    fn the_source_hands_out_the_fleets_events_and_refuses_malformed_ones() {
        let mut input = SimInput::from_options(&options(&[
            ("sites", "1"),
            ("zones", "1"),
            ("devices", "4"),
            ("rate", "max"),
            ("malformed", "0.2"),
            ("count", "200"),
            ("start", "2026-01-01T00:00:00Z"),
        ]))
        .unwrap();
        let mut source = SimSource::open("readings", &input, 64).unwrap();
        let (mut rows, mut letters) = (0, Vec::new());
        while let Some(b) = source.next_batch().unwrap() {
            if let Some(batch) = b.batch {
                assert_eq!(batch.schema(), source.schema());
                rows += batch.num_rows();
            }
            letters.extend(b.dead_letters);
        }
        // Every event is a row or a dead letter; none is lost.
        assert_eq!(rows + letters.len(), 200);
        assert!(!letters.is_empty());
        assert!(
            letters
                .iter()
                .all(|l| l.input == "readings" && !l.raw.is_empty())
        );

        // The same seed gives the same events as the fleet itself.
        input.fleet.malformed = 0.0;
        let mut fleet = input.fleet.build().unwrap();
        let mut source = SimSource::open("readings", &input, 200).unwrap();
        let from_source = source.next_batch().unwrap().unwrap().batch.unwrap();
        let Message::Rows(from_fleet) = fleet.next_messages(200).unwrap().remove(0) else {
            panic!("no rows");
        };
        assert_eq!(from_source, from_fleet);
    }

    #[test]
    fn a_paced_source_spreads_events_over_the_wall_clock() {
        let input = SimInput::from_options(&options(&[("rate", "200"), ("count", "60")])).unwrap();
        let mut source = SimSource::open("readings", &input, 8192).unwrap();
        let started = Instant::now();
        let mut events = 0;
        while let Some(b) = source.next_batch().unwrap() {
            events += b.batch.map_or(0, |b| b.num_rows()) + b.dead_letters.len();
        }
        assert_eq!(events, 60);
        // 60 events at 200/s: the last chunk is due after 0.25 s at least.
        assert!(started.elapsed() >= Duration::from_millis(250));
    }
}
