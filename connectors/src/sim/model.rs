//! The physics of the simulated fleet: what a zone's air does over a day
//! and what each device reads from it.
//!
//! - Temperature follows a daily sine per zone (coolest at 03:00 UTC,
//!   warmest at 15:00), plus a little warmth per person present, a fixed
//!   offset per device (calibration) and noise.
//! - Relative humidity falls as the air warms (anti-correlated with the
//!   device's temperature), with noise.
//! - Occupancy follows office hours (07:00-19:00 UTC on weekdays, a lunch
//!   dip, a tenth of it at weekends) up to the zone's capacity; every
//!   device of a zone sees the zone's head count.
//! - CO2 relaxes towards 420 ppm plus 38 ppm per person, with a time
//!   constant of 20 minutes, plus a device offset and noise.
//! - Batteries start between 40 and 100 % and drain by 10 to 60 % per day
//!   of event time (a rate per device), so with the defaults the weakest
//!   devices are empty within the first simulated day and most within a
//!   few days; an empty device reports NULL for every sensor.
//! - Anomalies are episodes of 3 to 8 readings of one device: an
//!   over-temperature (+15 to +25 °C) or a CO2 spike (2,000 to 5,000 ppm).

use std::f64::consts::PI;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Microseconds in a day.
const DAY_US: i64 = 86_400_000_000;
/// Outdoor CO2, ppm.
const CO2_OUTDOOR: f64 = 420.0;
/// CO2 that one person adds to a zone's steady state, ppm.
const CO2_PER_PERSON: f64 = 38.0;
/// How fast a zone's CO2 follows its occupancy, seconds.
const CO2_TIME_CONSTANT_S: f64 = 1200.0;
/// The shortest and longest anomaly episodes, in readings.
const ANOMALY_READINGS: (u32, u32) = (3, 8);

/// Normal deviates (Box-Muller), one spare kept.
#[derive(Debug, Clone, Default)]
pub(crate) struct Gauss {
    spare: Option<f64>,
}

impl Gauss {
    /// A standard normal deviate.
    pub(crate) fn sample(&mut self, rng: &mut ChaCha8Rng) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        // 1 - u is in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - rng.random::<f64>();
        let u2 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (2.0 * PI * u2).sin_cos();
        self.spare = Some(r * s);
        r * c
    }
}

/// A zone (a room) of a site: its climate and its people.
#[derive(Debug, Clone)]
pub(crate) struct Zone {
    base_temp_c: f64,
    amplitude_c: f64,
    base_humidity_pct: f64,
    capacity: f64,
    /// `None` before the first tick, which starts at the steady state.
    co2_ppm: Option<f64>,
    occupancy: i64,
    /// The zone's temperature at the current tick, before device effects.
    temp_c: f64,
}

impl Zone {
    pub(crate) fn new(rng: &mut ChaCha8Rng) -> Zone {
        Zone {
            base_temp_c: rng.random_range(19.0..23.5),
            amplitude_c: rng.random_range(1.5..3.5),
            base_humidity_pct: rng.random_range(38.0..52.0),
            capacity: f64::from(rng.random_range(2u32..=20)),
            co2_ppm: None,
            occupancy: 0,
            temp_c: 0.0,
        }
    }

    /// Moves the zone to the tick at `ts_us` (microseconds since the epoch),
    /// `interval_s` after the previous one.
    pub(crate) fn advance(
        &mut self,
        ts_us: i64,
        interval_s: f64,
        rng: &mut ChaCha8Rng,
        gauss: &mut Gauss,
    ) {
        let (hour, weekend) = hour_and_weekend(ts_us);
        let presence = presence(hour) * if weekend { 0.1 } else { 1.0 };
        let expected = self.capacity * presence;
        let people = expected + gauss.sample(rng) * expected.sqrt().max(0.3);
        self.occupancy = people.round().clamp(0.0, self.capacity) as i64;
        let target = CO2_OUTDOOR + CO2_PER_PERSON * self.occupancy as f64;
        let alpha = 1.0 - (-interval_s / CO2_TIME_CONSTANT_S).exp();
        self.co2_ppm = Some(match self.co2_ppm {
            Some(co2) => co2 + (target - co2) * alpha,
            None => target,
        });
        let daily = (2.0 * PI * (hour - 9.0) / 24.0).sin();
        self.temp_c = self.base_temp_c + self.amplitude_c * daily + 0.04 * self.occupancy as f64;
    }
}

/// The hour of the day (fractional, UTC) and whether the day is a
/// Saturday or Sunday.
fn hour_and_weekend(ts_us: i64) -> (f64, bool) {
    let day = ts_us.div_euclid(DAY_US);
    let hour = ts_us.rem_euclid(DAY_US) as f64 / 3.6e9;
    // 1970-01-01 was a Thursday: day 0 -> 4 with Sunday = 0.
    let weekday = (day + 4).rem_euclid(7);
    (hour, weekday == 0 || weekday == 6)
}

/// The share of a zone's capacity present at `hour` on a weekday.
fn presence(hour: f64) -> f64 {
    match hour {
        h if !(7.0..19.0).contains(&h) => 0.02,
        h if h < 9.0 => 0.02 + 0.83 * (h - 7.0) / 2.0,
        h if h < 12.0 => 0.85,
        h if h < 13.0 => 0.5,
        h if h < 17.0 => 0.8,
        h => 0.8 - 0.75 * (h - 17.0) / 2.0,
    }
}

/// What a device reads; `None` when its battery is empty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Values {
    pub temperature_c: f64,
    pub humidity_pct: f64,
    pub co2_ppm: i64,
    pub occupancy: i64,
    pub battery_pct: f64,
}

/// An anomaly in progress on one device.
#[derive(Debug, Clone, Copy)]
enum Anomaly {
    /// Degrees added to the temperature.
    OverTemperature { excess_c: f64, left: u32 },
    /// The CO2 reading.
    Co2Spike { ppm: f64, left: u32 },
}

/// One device: its calibration, battery and anomaly state.
#[derive(Debug, Clone)]
pub(crate) struct Device {
    pub zone: usize,
    temp_offset_c: f64,
    humidity_offset_pct: f64,
    co2_offset_ppm: f64,
    battery_pct: f64,
    /// Battery drained per reading, percentage points.
    drain_pct: f64,
    empty: bool,
    anomaly: Option<Anomaly>,
}

impl Device {
    pub(crate) fn new(
        zone: usize,
        interval_s: f64,
        drain: bool,
        rng: &mut ChaCha8Rng,
        gauss: &mut Gauss,
    ) -> Device {
        let per_day = rng.random_range(10.0..60.0);
        Device {
            zone,
            temp_offset_c: 0.4 * gauss.sample(rng),
            humidity_offset_pct: 1.5 * gauss.sample(rng),
            co2_offset_ppm: 15.0 * gauss.sample(rng),
            battery_pct: rng.random_range(40.0..100.0),
            drain_pct: if drain {
                per_day * interval_s / 86_400.0
            } else {
                0.0
            },
            empty: false,
            anomaly: None,
        }
    }

    /// The device's next reading in `zone`, and whether it is anomalous.
    /// `start_anomaly` is the chance that an anomaly starts at this reading;
    /// `anomaly_rng` draws only the anomalies, so that the share of
    /// anomalies changes nothing else.
    pub(crate) fn read(
        &mut self,
        zone: &Zone,
        rng: &mut ChaCha8Rng,
        gauss: &mut Gauss,
        start_anomaly: f64,
        anomaly_rng: &mut ChaCha8Rng,
    ) -> (Option<Values>, bool) {
        if self.empty {
            return (None, false);
        }
        self.battery_pct = (self.battery_pct - self.drain_pct).max(0.0);
        let battery_pct = round_to(self.battery_pct, 10.0);
        if battery_pct <= 0.0 {
            // The last breath: it reports 0 %, then nothing.
            self.empty = true;
        }
        let mut temperature_c = zone.temp_c + self.temp_offset_c + 0.15 * gauss.sample(rng);
        let mut co2_ppm =
            zone.co2_ppm.unwrap_or(CO2_OUTDOOR) + self.co2_offset_ppm + 12.0 * gauss.sample(rng);
        let humidity_noise = 0.8 * gauss.sample(rng);
        if self.anomaly.is_none() && start_anomaly > 0.0 && anomaly_rng.random_bool(start_anomaly) {
            let left = anomaly_rng.random_range(ANOMALY_READINGS.0..=ANOMALY_READINGS.1);
            self.anomaly = Some(if anomaly_rng.random_bool(0.5) {
                Anomaly::OverTemperature {
                    excess_c: anomaly_rng.random_range(15.0..25.0),
                    left,
                }
            } else {
                Anomaly::Co2Spike {
                    ppm: anomaly_rng.random_range(2000.0..5000.0),
                    left,
                }
            });
        }
        let anomalous = match self.anomaly.as_mut() {
            Some(Anomaly::OverTemperature { excess_c, left }) => {
                temperature_c += *excess_c;
                *left -= 1;
                true
            }
            Some(Anomaly::Co2Spike { ppm, left }) => {
                co2_ppm = *ppm + anomaly_rng.random_range(-80.0..80.0);
                *left -= 1;
                true
            }
            None => false,
        };
        if matches!(
            self.anomaly,
            Some(Anomaly::OverTemperature { left: 0, .. } | Anomaly::Co2Spike { left: 0, .. })
        ) {
            self.anomaly = None;
        }
        let humidity_pct = zone.base_humidity_pct + self.humidity_offset_pct
            - 2.0 * (temperature_c - zone.base_temp_c)
            + humidity_noise;
        let values = Values {
            temperature_c: round_to(temperature_c, 100.0),
            humidity_pct: round_to(humidity_pct.clamp(5.0, 95.0), 10.0),
            co2_ppm: co2_ppm.max(380.0).round() as i64,
            occupancy: zone.occupancy,
            battery_pct,
        };
        (Some(values), anomalous)
    }
}

/// The chance that an anomaly starts at a reading of a device without one,
/// such that `share` of the readings are anomalous: with episodes of mean
/// length L, a share f needs p = f / (L (1 - f) + f).
pub(crate) fn anomaly_start_chance(share: f64) -> f64 {
    let mean = f64::from(ANOMALY_READINGS.0 + ANOMALY_READINGS.1) / 2.0;
    (share / (mean * (1.0 - share) + share)).clamp(0.0, 1.0)
}

/// `x` rounded to 1/`per` (10: one decimal).
fn round_to(x: f64, per: f64) -> f64 {
    (x * per).round() / per
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn office_hours_and_weekends() {
        // 2026-01-05 is a Monday, 2026-01-03 a Saturday.
        let monday_noon = 1_767_614_400_000_000;
        assert_eq!(hour_and_weekend(monday_noon), (12.0, false));
        let saturday = monday_noon - 2 * DAY_US;
        assert!(hour_and_weekend(saturday).1);
        assert!(presence(3.0) < 0.05 && presence(10.0) > 0.8);
    }

    #[test]
    fn the_start_chance_gives_the_share() {
        assert_eq!(anomaly_start_chance(0.0), 0.0);
        assert_eq!(anomaly_start_chance(1.0), 1.0);
        let p = anomaly_start_chance(0.05);
        // Expected normal readings between episodes: (1 - p) / p.
        let share = 5.5 / (5.5 + (1.0 - p) / p);
        assert!((share - 0.05).abs() < 1e-9, "{share}");
    }
}
