//! The device simulator behind `iotql simulate`: a fleet of sites × zones ×
//! devices that report temperature, humidity, CO2, occupancy and battery
//! every interval of event time (`model.rs` holds the physics), with
//! anomalies and switchable faults: duplicates, out-of-order and malformed
//! messages.
//!
//! A [`FleetConfig`] builds a [`Fleet`], which hands out the messages in
//! order, in chunks: Arrow record batches of readings, and malformed
//! payloads between them. [`SimSource`] (`source.rs`) plays a fleet as an
//! input (`sim:?devices=3&rate=50`). The same configuration and seed give the same
//! messages in the same order, whatever the chunk sizes.
//!
//! Time: tick `k` is at `start + k × interval`. Device `d` of `n` reads in
//! its own slot of the tick, `[d/n, (d+1)/n)` of the interval, at a random
//! whole millisecond of it, so the readings in their turn come in strictly
//! increasing time (when the interval has at least a millisecond per
//! device).
//!
//! Randomness comes from three ChaCha8 streams of the seed: one for the
//! readings, one for the anomalies and one for the faults, so that changing
//! a share changes only what it governs.

mod fault;
mod model;
mod source;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use iotql_engine::arrow::array::{
    ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use iotql_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use iotql_engine::arrow::error::ArrowError;
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::error::EngineError;
use iotql_engine::io::Sink;
use iotql_engine::time::{EventTime, micros_of};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::endpoint::OutputSpec;
use model::{Device, Gauss, Values, Zone};
pub use source::{
    DEFAULT_PACE, Pace, SimInput, SimSource, now, parse_rate, parse_share, parse_speed, parse_start,
};

/// 2026-01-01T00:00:00Z, the default start of event time.
pub const DEFAULT_START: EventTime = EventTime(1_767_225_600_000_000);

/// How malformed messages are written: in the format of the output, so
/// that its reader refuses them for the right reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// One JSON object a line (JSON-lines files, stdout, brokers).
    JsonLines,
    /// CSV records in the column order of [`Fleet::schema`].
    Csv,
}

impl WireFormat {
    /// The format of the messages `spec` receives: CSV for CSV files, JSON
    /// for everything else.
    pub fn of(spec: &OutputSpec) -> WireFormat {
        match spec {
            OutputSpec::Csv(_) => WireFormat::Csv,
            _ => WireFormat::JsonLines,
        }
    }
}

/// A refused configuration (the user must act).
#[derive(Debug, thiserror::Error)]
#[error("simulator: {0}")]
pub struct SimConfigError(String);

/// What the fleet is and how it misbehaves. Shares are fractions of the
/// readings (0.01 = 1 %).
#[derive(Debug, Clone, PartialEq)]
pub struct FleetConfig {
    pub sites: usize,
    pub zones_per_site: usize,
    pub devices_per_zone: usize,
    /// Event time between two readings of one device.
    pub interval: Duration,
    /// The event time of the first tick.
    pub start: EventTime,
    /// How much event time to play (`None`: no end).
    pub duration: Option<Duration>,
    pub seed: u64,
    /// The share of readings in an anomaly episode (over-temperature or CO2
    /// spike).
    pub anomalies: f64,
    /// The share of readings sent twice in a row.
    pub duplicates: f64,
    /// The share of readings held back and sent 1 to 2 × devices messages
    /// later (their `ts` unchanged), after a newer reading.
    pub out_of_order: f64,
    /// The share of readings sent as a malformed message instead.
    pub malformed: f64,
    /// Whether batteries drain (and empty devices report NULLs).
    pub battery_drain: bool,
    /// How malformed messages are written.
    pub wire: WireFormat,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            sites: 3,
            zones_per_site: 5,
            devices_per_zone: 3,
            interval: Duration::from_secs(10),
            start: DEFAULT_START,
            duration: None,
            seed: 1,
            anomalies: 0.01,
            duplicates: 0.001,
            out_of_order: 0.005,
            malformed: 0.001,
            battery_drain: true,
            wire: WireFormat::JsonLines,
        }
    }
}

impl FleetConfig {
    /// The number of devices: sites × zones per site × devices per zone.
    pub fn devices(&self) -> usize {
        self.sites
            .saturating_mul(self.zones_per_site)
            .saturating_mul(self.devices_per_zone)
    }

    /// The fleet, its devices set up from the seed.
    pub fn build(&self) -> Result<Fleet, SimConfigError> {
        self.check()?;
        Ok(Fleet::new(self.clone()))
    }

    fn check(&self) -> Result<(), SimConfigError> {
        let refuse = |m: String| Err(SimConfigError(m));
        if self.sites == 0 || self.zones_per_site == 0 || self.devices_per_zone == 0 {
            return refuse("sites, zones and devices per zone must be at least 1".into());
        }
        if self.devices() > 10_000_000 {
            return refuse(format!(
                "{} devices is more than the 10,000,000 the simulator plays",
                self.devices()
            ));
        }
        if self.interval < Duration::from_millis(1) {
            return refuse("the interval must be at least 1ms".into());
        }
        for (name, share) in [
            ("anomalies", self.anomalies),
            ("duplicates", self.duplicates),
            ("out-of-order", self.out_of_order),
            ("malformed", self.malformed),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return refuse(format!(
                    "the share of {name} must be between 0 and 1, got {share}"
                ));
            }
        }
        Ok(())
    }
}

/// The schema of the readings: `device_id` (`site-1/zone-2/dev-3`), `site`
/// (`site-1`), `zone` (`zone-2`, within its site), `ts` (UTC), then the
/// sensors, NULL once the battery is empty.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Utf8, false),
        Field::new("site", DataType::Utf8, false),
        Field::new("zone", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("temperature_c", DataType::Float64, true),
        Field::new("humidity_pct", DataType::Float64, true),
        Field::new("co2_ppm", DataType::Int64, true),
        Field::new("occupancy", DataType::Int64, true),
        Field::new("battery_pct", DataType::Float64, true),
    ]))
}

/// What a [`Fleet`] hands out, in order.
#[derive(Debug, Clone)]
pub enum Message {
    /// Readings, one a row, in the columns of [`schema`].
    Rows(RecordBatch),
    /// A malformed message (see [`WireFormat`]), without a line end.
    Malformed(Vec<u8>),
}

/// Writes `messages` to `sink` in order: rows with [`Sink::write`],
/// malformed payloads with [`Sink::write_raw`].
pub fn write_messages(sink: &mut dyn Sink, messages: &[Message]) -> Result<(), EngineError> {
    for m in messages {
        match m {
            Message::Rows(batch) => sink.write(batch)?,
            Message::Malformed(payload) => sink.write_raw(payload)?,
        }
    }
    Ok(())
}

/// Counts of what a fleet has handed out so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetStats {
    /// Messages: rows and malformed payloads.
    pub events: u64,
    /// The second copies of duplicated readings.
    pub duplicates: u64,
    /// Readings sent after a newer one.
    pub out_of_order: u64,
    pub malformed: u64,
    /// Readings in an anomaly episode (duplicates not counted again).
    pub anomalies: u64,
}

/// The names of a device.
#[derive(Debug, Clone)]
struct Names {
    device_id: String,
    site: String,
    zone: String,
}

/// A reading on its way out.
#[derive(Debug, Clone, Copy)]
struct Reading {
    device: usize,
    ts: i64,
    values: Option<Values>,
    anomalous: bool,
}

/// Why a reading goes out when it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    OnTime,
    Duplicate,
    Late,
}

#[derive(Debug)]
enum Pending {
    Row(Reading, Turn),
    Raw(Vec<u8>),
}

/// A playing fleet: hands out its messages in order with
/// [`Fleet::next_messages`].
#[derive(Debug)]
pub struct Fleet {
    config: FleetConfig,
    names: Vec<Names>,
    zones: Vec<Zone>,
    devices: Vec<Device>,
    readings_rng: ChaCha8Rng,
    anomaly_rng: ChaCha8Rng,
    fault_rng: ChaCha8Rng,
    gauss: Gauss,
    anomaly_start: f64,
    interval_us: i64,
    /// The end of event time, exclusive (`None`: no end).
    end_us: Option<i64>,
    /// The next tick, and the next device in it.
    tick: i64,
    next_device: usize,
    /// Messages decided but not handed out yet.
    pending: VecDeque<Pending>,
    /// Readings held back: (the message count at which they may go, reading).
    held: Vec<(u64, Reading)>,
    /// Messages decided so far.
    decided: u64,
    /// The newest reading time handed out.
    newest_us: i64,
    finished: bool,
    stats: FleetStats,
}

impl Fleet {
    fn new(config: FleetConfig) -> Fleet {
        let stream = |n: u64| {
            let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
            rng.set_stream(n);
            rng
        };
        let mut readings_rng = stream(0);
        let mut gauss = Gauss::default();
        let interval_s = config.interval.as_secs_f64();
        let zone_count = config.sites * config.zones_per_site;
        let zones: Vec<Zone> = (0..zone_count)
            .map(|_| Zone::new(&mut readings_rng))
            .collect();
        let mut names = Vec::with_capacity(config.devices());
        let mut devices = Vec::with_capacity(config.devices());
        for zone in 0..zone_count {
            let site = zone / config.zones_per_site + 1;
            let zone_in_site = zone % config.zones_per_site + 1;
            for dev in 1..=config.devices_per_zone {
                names.push(Names {
                    device_id: format!("site-{site}/zone-{zone_in_site}/dev-{dev}"),
                    site: format!("site-{site}"),
                    zone: format!("zone-{zone_in_site}"),
                });
                devices.push(Device::new(
                    zone,
                    interval_s,
                    config.battery_drain,
                    &mut readings_rng,
                    &mut gauss,
                ));
            }
        }
        let interval_us = micros_of(config.interval);
        let end_us = config
            .duration
            .map(|d| config.start.micros().saturating_add(micros_of(d)));
        Fleet {
            anomaly_start: model::anomaly_start_chance(config.anomalies),
            anomaly_rng: stream(1),
            fault_rng: stream(2),
            readings_rng,
            gauss,
            names,
            zones,
            devices,
            interval_us,
            end_us,
            tick: 0,
            next_device: 0,
            pending: VecDeque::new(),
            held: Vec::new(),
            decided: 0,
            newest_us: i64::MIN,
            finished: false,
            stats: FleetStats::default(),
            config,
        }
    }

    /// The schema of the readings ([`schema`]).
    pub fn schema(&self) -> SchemaRef {
        schema()
    }

    /// What has been handed out so far.
    pub fn stats(&self) -> FleetStats {
        self.stats
    }

    /// The time of the newest reading handed out (`None` before the first).
    pub fn newest(&self) -> Option<EventTime> {
        (self.newest_us != i64::MIN).then_some(EventTime(self.newest_us))
    }

    /// Whether every message has been handed out (only with a duration).
    pub fn is_finished(&self) -> bool {
        self.finished && self.pending.is_empty()
    }

    /// The next messages, at most `max` of them (rows and malformed
    /// payloads together), in order: consecutive rows share a batch. Empty
    /// when the fleet is finished.
    pub fn next_messages(&mut self, max: usize) -> Result<Vec<Message>, ArrowError> {
        let mut out = Vec::new();
        let mut rows: Vec<Reading> = Vec::new();
        let mut n = 0;
        while n < max {
            while self.pending.is_empty() && !self.finished {
                self.decide();
            }
            let Some(next) = self.pending.pop_front() else {
                break;
            };
            n += 1;
            self.stats.events += 1;
            match next {
                Pending::Row(r, turn) => {
                    match turn {
                        Turn::Duplicate => self.stats.duplicates += 1,
                        Turn::Late if r.ts < self.newest_us => self.stats.out_of_order += 1,
                        _ => {}
                    }
                    if r.anomalous && turn != Turn::Duplicate {
                        self.stats.anomalies += 1;
                    }
                    self.newest_us = self.newest_us.max(r.ts);
                    rows.push(r);
                }
                Pending::Raw(bytes) => {
                    self.stats.malformed += 1;
                    if !rows.is_empty() {
                        out.push(Message::Rows(self.batch(&rows)?));
                        rows.clear();
                    }
                    out.push(Message::Malformed(bytes));
                }
            }
        }
        if !rows.is_empty() {
            out.push(Message::Rows(self.batch(&rows)?));
        }
        Ok(out)
    }

    /// Decides the next reading's fate, after releasing the held readings
    /// whose turn has come; at the end of event time, releases every held
    /// reading and marks the fleet finished.
    fn decide(&mut self) {
        self.release(false);
        let Some(reading) = self.read() else {
            self.release(true);
            self.finished = true;
            return;
        };
        let (malformed, out_of_order, duplicates) = (
            self.config.malformed,
            self.config.out_of_order,
            self.config.duplicates,
        );
        if malformed > 0.0 && self.fault_rng.random_bool(malformed) {
            let payload = self.malformed(&reading);
            self.push(Pending::Raw(payload));
        } else if out_of_order > 0.0 && self.fault_rng.random_bool(out_of_order) {
            let delay = self
                .fault_rng
                .random_range(1..=2 * self.devices.len() as u64);
            self.held.push((self.decided + delay, reading));
        } else {
            let twice = duplicates > 0.0 && self.fault_rng.random_bool(duplicates);
            self.push(Pending::Row(reading, Turn::OnTime));
            if twice {
                self.push(Pending::Row(reading, Turn::Duplicate));
            }
        }
    }

    fn push(&mut self, p: Pending) {
        self.decided += 1;
        self.pending.push_back(p);
    }

    /// Moves held readings whose turn has come (and that a newer reading
    /// has been decided before) to the pending messages; `all`: every one.
    fn release(&mut self, all: bool) {
        if self.held.is_empty() {
            return;
        }
        let newest_decided = self.newest_decided();
        let mut i = 0;
        while i < self.held.len() {
            let (due, r) = self.held[i];
            if all || (due <= self.decided && r.ts < newest_decided) {
                self.held.remove(i);
                self.push(Pending::Row(r, Turn::Late));
            } else {
                i += 1;
            }
        }
    }

    /// The start of the slot of the last reading taken in its turn.
    fn newest_decided(&self) -> i64 {
        let (tick, device) = match self.next_device {
            0 => (self.tick - 1, self.devices.len() - 1),
            d => (self.tick, d - 1),
        };
        self.tick_start(tick) + self.slot(device).0 * 1000
    }

    fn tick_start(&self, tick: i64) -> i64 {
        self.config.start.micros() + tick * self.interval_us
    }

    /// `device`'s slot of a tick, whole milliseconds from its start:
    /// `[d × I / n, (d + 1) × I / n)` for an interval of I ms and n devices.
    fn slot(&self, device: usize) -> (i64, i64) {
        let interval_ms = i128::from(self.interval_us / 1000);
        let n = self.devices.len() as i128;
        let at = |d: i128| i64::try_from(d * interval_ms / n).unwrap_or(i64::MAX);
        (at(device as i128), at(device as i128 + 1))
    }

    /// The next reading in turn; `None` at the end of event time.
    fn read(&mut self) -> Option<Reading> {
        let tick_us = self.tick_start(self.tick);
        if self.end_us.is_some_and(|end| tick_us >= end) {
            return None;
        }
        if self.next_device == 0 {
            let interval_s = self.config.interval.as_secs_f64();
            for zone in &mut self.zones {
                zone.advance(tick_us, interval_s, &mut self.readings_rng, &mut self.gauss);
            }
        }
        let d = self.next_device;
        let (lo, hi) = self.slot(d);
        let offset_ms = if hi > lo {
            self.readings_rng.random_range(lo..hi)
        } else {
            lo
        };
        let device = &mut self.devices[d];
        let (values, anomalous) = device.read(
            &self.zones[device.zone],
            &mut self.readings_rng,
            &mut self.gauss,
            self.anomaly_start,
            &mut self.anomaly_rng,
        );
        self.next_device += 1;
        if self.next_device == self.devices.len() {
            self.next_device = 0;
            self.tick += 1;
        }
        Some(Reading {
            device: d,
            ts: tick_us + offset_ms * 1000,
            values,
            anomalous,
        })
    }

    fn malformed(&mut self, r: &Reading) -> Vec<u8> {
        let names = &self.names[r.device];
        let ts = chrono::DateTime::from_timestamp_micros(r.ts)
            .map(|t| t.format(crate::file::TIMESTAMP_FORMAT).to_string())
            .unwrap_or_default();
        let event = fault::Event {
            device_id: &names.device_id,
            site: &names.site,
            zone: &names.zone,
            ts: &ts,
            values: r.values,
        };
        fault::malformed(&event, self.config.wire, &mut self.fault_rng)
    }

    fn batch(&self, rows: &[Reading]) -> Result<RecordBatch, ArrowError> {
        let names = |f: fn(&Names) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| f(&self.names[r.device])),
            ))
        };
        let values = |f: fn(&Values) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter(
                rows.iter().map(|r| r.values.as_ref().map(f)),
            ))
        };
        let counts = |f: fn(&Values) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter(
                rows.iter().map(|r| r.values.as_ref().map(f)),
            ))
        };
        let ts = TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.ts))
            .with_timezone("UTC");
        RecordBatch::try_new(
            schema(),
            vec![
                names(|n| &n.device_id),
                names(|n| &n.site),
                names(|n| &n.zone),
                Arc::new(ts),
                values(|v| v.temperature_c),
                values(|v| v.humidity_pct),
                counts(|v| v.co2_ppm),
                counts(|v| v.occupancy),
                values(|v| v.battery_pct),
            ],
        )
    }
}

#[cfg(test)]
mod tests;
