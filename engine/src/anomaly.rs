//! Anomaly detection: the models behind `AnomalyDetection_SpikeAndDip` and
//! `AnomalyDetection_ChangePoint`. Each partition of the function's
//! `OVER ([PARTITION BY k] LIMIT DURATION(unit, n) [WHEN cond])` owns one
//! [`Detector`], fed that partition's events (those satisfying WHEN) in
//! event-time order. Both return a record `{Score, IsAnomaly}`.
//!
//! ## What both detectors share
//!
//! - **History.** A detector learns from the last `historySize` non-NULL
//!   values of its partition whose event time lies within LIMIT DURATION of
//!   the current event, i.e. in `(t - duration, t]`; older values are
//!   forgotten, as are values beyond `historySize`. The current value is
//!   scored against the history, then joins it, anomalous or not (so a
//!   level that keeps coming back stops being anomalous; the change-point
//!   detector may hold a value back for a while first, see below).
//! - **NULL.** A NULL value (and NaN or ±infinity) is neither scored nor
//!   remembered; the function returns NULL for that event.
//! - **Confidence.** `confidence` is a percentage c from 1 to 100; α = 1 − c/100
//!   is the false-alarm level the user accepts. A higher confidence flags
//!   fewer events; 100 flags none.
//! - **Warm-up.** `IsAnomaly` is 0 while the history holds fewer than
//!   min(`historySize`, 10) values ([`WARM_UP`]).
//! - **State** is at most `historySize` (time, value) pairs (the
//!   change-point detector: plus at most a third as many held back, and one
//!   number); it is snapshotted for checkpoints. There is no randomness: the
//!   same input always gives the same output.
//! - **Cost** per event is linear in the history size, as in ASA (whose docs
//!   note that response time grows with `historySize`).
//!
//! ## `AnomalyDetection_SpikeAndDip(x, confidence, historySize, mode)`: kernel density p-value
//!
//! Temporary anomalies: one value far from what the history makes likely.
//! With the history x₁ … xₙ and the current value x:
//!
//! - The history is smoothed into a distribution by a Gaussian kernel on
//!   each xᵢ whose width h adapts to the history's spread: the robust scale
//!   h = min(sd, IQR / 1.349) (the standard deviation alone when the
//!   interquartile range is 0), at least 1e-9·|median| (and above 0), so a
//!   perfectly constant history still has a width.
//! - `Score` is the p-value of x under that distribution, in [0, 1]:
//!   - `'spikes'`: p⁺ = (1/n) Σ Q((x − xᵢ)/h), the probability of a value at
//!     least as high (Q is the standard normal upper tail);
//!   - `'dips'`: p⁻ = (1/n) Σ Q((xᵢ − x)/h), the probability of a value at
//!     least as low;
//!   - `'spikesanddips'`: the two-sided p-value min(1, 2·min(p⁺, p⁻)).
//!
//!   A low score means an unlikely value, as ASA documents ("a lower score
//!   means a lower probability that the event is part of the same
//!   distribution"). During the warm-up the score is computed from what
//!   history there is; with none it is 1.
//! - `IsAnomaly` = 1 when `Score` < α (after the warm-up).
//!
//! The kernel is as wide as the data's own spread (not Silverman's
//! narrower h·0.9·n^(−1/5)): the smoothed distribution then has about twice
//! the variance of the data, so scores are conservative and a history of
//! a hundred points cannot produce overconfident tails. For Gaussian noise
//! a value z standard deviations from the mean scores about Q(z/√2):
//! `'spikes'` at 95 flags z > 2.33 (about 1% of ordinary points), at 99
//! z > 3.29 (about 0.05%); `'spikesanddips'` at 95 flags |z| > 2.77 (about
//! 0.6%). The robust scale keeps earlier spikes in the history from masking
//! later ones; a spike the history has already seen k times scores at
//! least about k/(2n).
//!
//! ## `AnomalyDetection_ChangePoint(x, confidence, historySize)`: conformal exchangeability martingale
//!
//! Persistent anomalies: a lasting change of level, or a trend. Under "no
//! change" the values are exchangeable; the detector bets against that and
//! raises an alarm when its winnings grow too large. With the history
//! (the reference) x₁ … xₙ and the current value x:
//!
//! 1. **Conformal p-value.** The bag is the reference plus x (n + 1
//!    values), m its median, and each value's strangeness its distance
//!    |zᵢ − m|. The p-value of x is (#{stranger than x} + ½·#{as strange as
//!    x, x included}) / (n + 1). Ties are split in half deterministically
//!    (the textbook version breaks them at random; the half split has the
//!    same mean, so the martingale below stays a supermartingale under no
//!    change).
//! 2. **Power martingale.** Each p-value multiplies the capital by the
//!    betting factor f(p) = ε·p^(ε−1) with ε = 0.1; E[f(U)] = 1 for uniform
//!    U, so on exchangeable data the capital is a (super)martingale.
//! 3. **CUSUM restart.** The capital never bets from below 1:
//!    S = max(1, S_previous)·f(p), computed in log space. `Score` is S, which
//!    grows exponentially while values keep being strange (ASA: "a
//!    martingale score that grows exponentially with anomalous values"). It is
//!    1 during the warm-up.
//! 4. **Evidence is held back.** While S > 1 (evidence of a change is
//!    building up) the values are held out of the reference, so that the
//!    values of a new level are compared with the old level rather than
//!    with each other; once S falls back to 1 or below they join the
//!    reference. At most a third of the reference's size is held back (the
//!    oldest then join it), so a small reference frozen for long cannot make
//!    its own quirks look like a change.
//! 5. **Alarm.** `IsAnomaly` = 1 when S ≥ A = `historySize` / α (after the
//!    warm-up). The detector then restarts: S back to 1, and the reference
//!    replaced by the held-back values and x, i.e. the values since the
//!    capital last left 1 (where CUSUM places the change). One change raises
//!    one alarm, and the new level is learned afresh (usually a new
//!    warm-up).
//!
//! Guarantee: on exchangeable data the probability of any false alarm
//! within T events is at most T/A (the capital is bounded by the
//! Shiryaev–Roberts statistic, and Ville's inequality applies to it), so
//! within any `historySize` events at most α. This is approximate here, as
//! the p-values are computed against a sliding, sometimes held, reference
//! rather than the whole past; in tests, false alarms stay well within it
//! (none in 190,000 stationary Gaussian events at 99% with historySize
//! 120; one in 100,000 at 95%).
//!
//! What it finds: a single outlier on its own cannot raise an alarm (one
//! p-value is at least 1/(2(n+1)), a factor of at most 0.1·(2(n+1))^0.9,
//! less than A). A level shift of a few standard deviations makes each new
//! value the strangest of the bag, worth that factor again and again: in
//! tests a shift of 4σ or 10σ is flagged 1–4 events after it for
//! historySize 50–1200 at 75–99% (4–9 for historySize 20 at 95%). A
//! history below about 20 gives too little evidence per value to flag
//! much at high confidence. A trend is flagged once it has moved the level
//! by a few standard deviations (0.05σ per event: after about 65 events,
//! historySize 120 at 95%); a trend that goes on raises an alarm again each
//! time it has moved the level anew. A change of spread alone can also
//! raise an alarm, as values land further from the median.
//!
//! ## How this relates to ASA
//!
//! ASA documents the models only by name ("adaptive kernel density
//! estimation"; "exchangeability martingales"), the arguments, and the
//! meaning of the output: `Score` a p-value for spikes and dips, a martingale
//! score for change points; `IsAnomaly` 0/1. The detectors here follow that,
//! and the public ML.NET detectors (`IidSpikeDetector`,
//! `IidChangePointDetector`) that use the same names, but are our own:
//! scores will not match ASA's digit for digit, and which events are flagged
//! can differ near the threshold. Known differences:
//!
//! - Spike/dip: the kernel width is a robust scale (ML.NET: the standard
//!   deviation), and `'spikesanddips'` uses the two-sided p-value
//!   2·min(p⁺, p⁻) (ML.NET: min(p⁺, p⁻), which flags twice as many ordinary
//!   values at the same confidence).
//! - Change point: conformal rank p-values, a CUSUM with a threshold tied
//!   to the history size, evidence held out of the reference, and a
//!   restart on the new level after an alarm (ML.NET: kernel p-values, a
//!   martingale over a sliding window of bets, a threshold from the
//!   confidence alone, and alerts suppressed for a window after an alert).
//! - Warm-up: alarms start after min(`historySize`, 10) values (ML.NET: once
//!   the history is full). ASA also imputes values for gaps in the time
//!   series; here a gap only ages the history out through LIMIT DURATION.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

/// The smallest history size accepted.
pub const MIN_HISTORY: usize = 2;
/// The largest history size accepted (state and per-event cost grow with it).
pub const MAX_HISTORY: usize = 100_000;
/// Values a detector must have in its history (or the whole history size,
/// if smaller) before it may flag anything.
pub const WARM_UP: usize = 10;
/// ε of the change-point detector's power martingale.
const POWER_EPSILON: f64 = 0.1;
/// The relative floor of the spike kernel's width (times |median|).
const RELATIVE_WIDTH_FLOOR: f64 = 1e-9;

/// What a detector says about one value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Anomaly {
    pub score: f64,
    pub is_anomaly: bool,
}

/// Which side `AnomalyDetection_SpikeAndDip` looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpikeMode {
    Spikes,
    Dips,
    SpikesAndDips,
}

impl FromStr for SpikeMode {
    type Err = String;

    /// `'spikes'`, `'dips'` or `'spikesanddips'`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "spikes" => Ok(SpikeMode::Spikes),
            "dips" => Ok(SpikeMode::Dips),
            "spikesanddips" => Ok(SpikeMode::SpikesAndDips),
            _ => Err(format!(
                "AnomalyDetection_SpikeAndDip: mode must be 'spikes', 'dips' or 'spikesanddips', got '{s}'"
            )),
        }
    }
}

impl fmt::Display for SpikeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpikeMode::Spikes => "spikes",
            SpikeMode::Dips => "dips",
            SpikeMode::SpikesAndDips => "spikesanddips",
        })
    }
}

/// One partition's detector. `t` is the event time in microseconds (events
/// come in time order), `horizon` the LIMIT DURATION in microseconds: history
/// older than `t - horizon` (exclusive start: keep `(t - horizon, t]`) is
/// forgotten, as is history beyond the history size. A NULL x (None) is not
/// scored and not added: returns None. So is a NaN or infinite x.
pub trait Detector: std::fmt::Debug + Send {
    fn observe(&mut self, t: i64, x: Option<f64>, horizon: i64) -> Option<Anomaly>;
    /// The detector's state as bytes (for checkpoints), and back.
    fn snapshot(&self) -> Vec<u8>;
    fn restore(&mut self, state: &[u8]) -> Result<(), String>;
}

/// Checks the arguments both functions share.
fn validate(function: &str, confidence: f64, history: usize) -> Result<(), String> {
    if !(1.0..=100.0).contains(&confidence) {
        return Err(format!(
            "{function}: confidence must be a percentage from 1 to 100, got {confidence}"
        ));
    }
    if !(MIN_HISTORY..=MAX_HISTORY).contains(&history) {
        return Err(format!(
            "{function}: historySize must be from {MIN_HISTORY} to {MAX_HISTORY} events, got {history}"
        ));
    }
    Ok(())
}

/// A value worth scoring: NULL, NaN and infinities are not.
fn usable(x: Option<f64>) -> Option<f64> {
    x.filter(|x| x.is_finite())
}

/// The values a detector remembers: in arrival order with their event times,
/// and the same values sorted (for medians and quantiles).
#[derive(Debug, Clone, Default, PartialEq)]
struct History {
    events: VecDeque<(i64, f64)>,
    sorted: Vec<f64>,
}

impl History {
    fn len(&self) -> usize {
        self.events.len()
    }

    /// Forgets values at or before `t - horizon`.
    fn forget_before(&mut self, t: i64, horizon: i64) {
        let start = t.saturating_sub(horizon);
        while self.events.front().is_some_and(|(at, _)| *at <= start) {
            self.pop_oldest();
        }
    }

    /// Forgets the oldest values beyond `capacity`.
    fn truncate(&mut self, capacity: usize) {
        while self.events.len() > capacity {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, x)) = self.events.pop_front() {
            let at = self.sorted.partition_point(|v| v.total_cmp(&x).is_lt());
            // The value is there: it went in with `push`.
            if at < self.sorted.len() {
                self.sorted.remove(at);
            }
        }
    }

    /// Takes back the value pushed last.
    fn pop_newest(&mut self) {
        if let Some((_, x)) = self.events.pop_back() {
            let at = self.sorted.partition_point(|v| v.total_cmp(&x).is_lt());
            if at < self.sorted.len() {
                self.sorted.remove(at);
            }
        }
    }

    fn push(&mut self, t: i64, x: f64) {
        self.events.push_back((t, x));
        let at = self.sorted.partition_point(|v| v.total_cmp(&x).is_le());
        self.sorted.insert(at, x);
    }

    fn clear(&mut self) {
        self.events.clear();
        self.sorted.clear();
    }

    /// The p-quantile by linear interpolation between order statistics.
    fn quantile(&self, p: f64) -> f64 {
        let n = self.sorted.len();
        if n == 0 {
            return f64::NAN;
        }
        let pos = p * (n - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = (lo + 1).min(n - 1);
        let frac = pos - lo as f64;
        self.sorted[lo] + (self.sorted[hi] - self.sorted[lo]) * frac
    }

    /// The sample standard deviation (0 for fewer than two values).
    fn std_dev(&self) -> f64 {
        let n = self.sorted.len();
        if n < 2 {
            return 0.0;
        }
        let mean = self.sorted.iter().sum::<f64>() / n as f64;
        let ss: f64 = self.sorted.iter().map(|v| (v - mean) * (v - mean)).sum();
        (ss / (n - 1) as f64).sqrt()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend((self.events.len() as u64).to_le_bytes());
        for (t, x) in &self.events {
            out.extend(t.to_le_bytes());
            out.extend(x.to_bits().to_le_bytes());
        }
    }

    fn decode(reader: &mut Reader<'_>, capacity: usize) -> Result<Self, String> {
        let n = reader.u64()?;
        if n > capacity as u64 {
            return Err(format!(
                "the checkpoint holds {n} values, more than the history size {capacity}"
            ));
        }
        let mut history = History::default();
        for _ in 0..n {
            let t = reader.i64()?;
            let x = reader.f64()?;
            if !x.is_finite() {
                return Err("the checkpoint's history is corrupt".to_string());
            }
            history.push(t, x);
        }
        Ok(history)
    }
}

/// The header of a snapshot: magic, format version, detector kind.
const MAGIC: &[u8; 4] = b"IQAD";
const FORMAT: u8 = 1;
const KIND_SPIKE: u8 = 1;
const KIND_CHANGE: u8 = 2;

/// Reads a snapshot back, failing on anything short or malformed.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let (head, rest) = self
            .bytes
            .split_first_chunk::<N>()
            .ok_or_else(|| "the checkpoint is truncated".to_string())?;
        self.bytes = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take()?))
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.take()?))
    }

    fn f64(&mut self) -> Result<f64, String> {
        Ok(f64::from_bits(self.u64()?))
    }

    /// Checks the header and the arguments the snapshot was taken with.
    fn header(&mut self, kind: u8, confidence: f64, history: usize) -> Result<(), String> {
        if self.take::<4>()? != *MAGIC {
            return Err("not an anomaly detector checkpoint".to_string());
        }
        let format = self.u8()?;
        if format != FORMAT {
            return Err(format!(
                "anomaly detector checkpoint format {format} is not supported (expected {FORMAT})"
            ));
        }
        if self.u8()? != kind {
            return Err("the checkpoint is of the other anomaly detector".to_string());
        }
        let (c, h) = (self.f64()?, self.u64()?);
        if c.to_bits() != confidence.to_bits() || h != history as u64 {
            return Err(format!(
                "the checkpoint was taken with confidence {c} and historySize {h}, \
                 the query now says {confidence} and {history}"
            ));
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), String> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err("the checkpoint has trailing bytes".to_string())
        }
    }
}

fn header(out: &mut Vec<u8>, kind: u8, confidence: f64, history: usize) {
    out.extend(MAGIC);
    out.push(FORMAT);
    out.push(kind);
    out.extend(confidence.to_bits().to_le_bytes());
    out.extend((history as u64).to_le_bytes());
}

/// The complementary error function, with a relative error below 1.2e-7
/// everywhere (the Chebyshev fit of Numerical Recipes, `erfcc`).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * (-z * z + poly).exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// The standard normal upper tail, P(Z > z).
fn upper_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// `AnomalyDetection_SpikeAndDip`: a p-value of each value under a Gaussian
/// kernel density estimate of the history (see the module docs).
#[derive(Debug, Clone)]
pub struct SpikeAndDip {
    confidence: f64,
    capacity: usize,
    mode: SpikeMode,
    /// α: a score below this is an anomaly.
    alpha: f64,
    history: History,
}

impl SpikeAndDip {
    pub fn new(confidence: f64, history: usize, mode: SpikeMode) -> Result<Self, String> {
        validate("AnomalyDetection_SpikeAndDip", confidence, history)?;
        Ok(SpikeAndDip {
            confidence,
            capacity: history,
            mode,
            alpha: 1.0 - confidence / 100.0,
            history: History::default(),
        })
    }

    /// How many values the detector remembers now.
    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    /// The kernel width: the history's robust spread, never 0.
    fn width(&self) -> f64 {
        let sd = self.history.std_dev();
        let iqr = self.history.quantile(0.75) - self.history.quantile(0.25);
        let spread = if iqr > 0.0 { sd.min(iqr / 1.349) } else { sd };
        let floor =
            (RELATIVE_WIDTH_FLOOR * self.history.quantile(0.5).abs()).max(f64::MIN_POSITIVE);
        spread.max(floor)
    }

    /// The p-value of x under the smoothed history (1 with no history).
    fn score(&self, x: f64) -> f64 {
        let n = self.history.len();
        if n == 0 {
            return 1.0;
        }
        let h = self.width();
        let tail = |sign: f64| {
            self.history
                .sorted
                .iter()
                .map(|xi| upper_tail(sign * (x - xi) / h))
                .sum::<f64>()
                / n as f64
        };
        let p = match self.mode {
            SpikeMode::Spikes => tail(1.0),
            SpikeMode::Dips => tail(-1.0),
            SpikeMode::SpikesAndDips => 2.0 * tail(1.0).min(tail(-1.0)),
        };
        p.clamp(0.0, 1.0)
    }
}

impl Detector for SpikeAndDip {
    fn observe(&mut self, t: i64, x: Option<f64>, horizon: i64) -> Option<Anomaly> {
        let x = usable(x)?;
        self.history.forget_before(t, horizon);
        let warm = self.history.len() >= self.capacity.min(WARM_UP);
        let score = self.score(x);
        self.history.push(t, x);
        self.history.truncate(self.capacity);
        Some(Anomaly {
            score,
            is_anomaly: warm && score < self.alpha,
        })
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + 16 * self.history.len());
        header(&mut out, KIND_SPIKE, self.confidence, self.capacity);
        out.push(self.mode as u8);
        self.history.encode(&mut out);
        out
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let mut reader = Reader { bytes: state };
        reader.header(KIND_SPIKE, self.confidence, self.capacity)?;
        let mode = reader.u8()?;
        if mode != self.mode as u8 {
            return Err(format!(
                "the checkpoint was taken with another mode than '{}'",
                self.mode
            ));
        }
        let history = History::decode(&mut reader, self.capacity)?;
        reader.finish()?;
        self.history = history;
        Ok(())
    }
}

/// `AnomalyDetection_ChangePoint`: a power martingale over conformal
/// p-values, restarted CUSUM-style (see the module docs).
#[derive(Debug, Clone)]
pub struct ChangePoint {
    confidence: f64,
    capacity: usize,
    /// ln A: the alarm threshold on the log capital (+inf at 100%).
    log_threshold: f64,
    /// ln S, the log capital since the last restart.
    log_capital: f64,
    /// The reference the values are compared with.
    history: History,
    /// The values seen since the capital last rose above 1, oldest first:
    /// held out of the history while they are evidence of a change.
    pending: VecDeque<(i64, f64)>,
}

/// The log capital is kept below this, so that `Score` stays finite when
/// nothing can raise an alarm (confidence 100).
const MAX_LOG_CAPITAL: f64 = 700.0;

impl ChangePoint {
    pub fn new(confidence: f64, history: usize) -> Result<Self, String> {
        validate("AnomalyDetection_ChangePoint", confidence, history)?;
        let alpha = 1.0 - confidence / 100.0;
        let log_threshold = if alpha > 0.0 {
            (history as f64 / alpha).ln()
        } else {
            f64::INFINITY
        };
        Ok(ChangePoint {
            confidence,
            capacity: history,
            log_threshold,
            log_capital: 0.0,
            history: History::default(),
            pending: VecDeque::new(),
        })
    }

    /// How many values the detector remembers now (reference and held out).
    pub fn history_len(&self) -> usize {
        self.history.len() + self.pending.len()
    }

    /// The alarm threshold A on `Score`.
    pub fn threshold(&self) -> f64 {
        self.log_threshold.exp()
    }

    /// The conformal p-value of `x` against the bag history ∪ {x}.
    fn p_value(&mut self, t: i64, x: f64) -> f64 {
        self.history.push(t, x);
        let bag = &self.history.sorted;
        let m = self.history.quantile(0.5);
        let strangeness = (x - m).abs();
        let (mut stranger, mut as_strange) = (0usize, 0usize);
        for z in bag {
            let a = (z - m).abs();
            if a > strangeness {
                stranger += 1;
            } else if a == strangeness {
                as_strange += 1;
            }
        }
        let p = (stranger as f64 + 0.5 * as_strange as f64) / bag.len() as f64;
        self.history.pop_newest();
        p
    }

    /// Moves the held-out values, then (t, x), into the history.
    fn settle(&mut self, t: i64, x: f64) {
        for (at, v) in self.pending.drain(..) {
            self.history.push(at, v);
        }
        self.history.push(t, x);
        self.history.truncate(self.capacity);
    }
}

impl Detector for ChangePoint {
    fn observe(&mut self, t: i64, x: Option<f64>, horizon: i64) -> Option<Anomaly> {
        let x = usable(x)?;
        self.history.forget_before(t, horizon);
        let start = t.saturating_sub(horizon);
        while self.pending.front().is_some_and(|(at, _)| *at <= start) {
            self.pending.pop_front();
        }
        if self.history.len() < self.capacity.min(WARM_UP) {
            // Not enough history to bet against: start afresh once there is.
            self.log_capital = 0.0;
            self.settle(t, x);
            return Some(Anomaly {
                score: 1.0,
                is_anomaly: false,
            });
        }
        let p = self.p_value(t, x);
        let log_bet = POWER_EPSILON.ln() + (POWER_EPSILON - 1.0) * p.ln();
        self.log_capital = (self.log_capital.max(0.0) + log_bet).min(MAX_LOG_CAPITAL);
        let score = self.log_capital.exp();
        let is_anomaly = self.log_capital >= self.log_threshold;
        if is_anomaly {
            // One change, one alarm: the values since the capital left 1
            // (the change, as CUSUM estimates it) start the new history.
            self.log_capital = 0.0;
            self.history.clear();
            self.settle(t, x);
        } else if self.log_capital > 0.0 {
            // Evidence of a change: keep x out of the reference for now.
            self.pending.push_back((t, x));
            // Never more than a third of the reference: a small reference
            // frozen for long would make its own quirks look like a change.
            let cap = (self.history.len() / 3).max(1);
            while self.pending.len() > cap
                && let Some((at, v)) = self.pending.pop_front()
            {
                self.history.push(at, v);
                self.history.truncate(self.capacity);
            }
        } else {
            self.settle(t, x);
        }
        Some(Anomaly { score, is_anomaly })
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48 + 16 * self.history_len());
        header(&mut out, KIND_CHANGE, self.confidence, self.capacity);
        out.extend(self.log_capital.to_bits().to_le_bytes());
        self.history.encode(&mut out);
        out.extend((self.pending.len() as u64).to_le_bytes());
        for (t, x) in &self.pending {
            out.extend(t.to_le_bytes());
            out.extend(x.to_bits().to_le_bytes());
        }
        out
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let mut reader = Reader { bytes: state };
        reader.header(KIND_CHANGE, self.confidence, self.capacity)?;
        let log_capital = reader.f64()?;
        if !log_capital.is_finite() {
            return Err("the checkpoint's martingale is corrupt".to_string());
        }
        let history = History::decode(&mut reader, self.capacity)?;
        let pending = History::decode(&mut reader, self.capacity)?;
        reader.finish()?;
        self.log_capital = log_capital;
        self.history = history;
        self.pending = pending.events;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One second, in microseconds.
    const SEC: i64 = 1_000_000;
    /// No LIMIT DURATION to speak of.
    const FOREVER: i64 = i64::MAX;

    /// Deterministic Gaussian noise: an LCG (Knuth's MMIX constants) fed
    /// through Box–Muller.
    struct Noise(u64);

    impl Noise {
        fn uniform(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            // The top 53 bits, shifted into (0, 1).
            ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }

        fn gaussian(&mut self) -> f64 {
            let (u, v) = (self.uniform(), self.uniform());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        }
    }

    /// A series around 10 with unit Gaussian noise; every 97th point from
    /// 150 on is a spike (+5σ to +8σ) or a dip (-5σ to -8σ), alternately.
    /// Returns the values and, per point, +1 spike, -1 dip, 0 ordinary.
    fn spiky_series(seed: u64, len: usize) -> (Vec<f64>, Vec<i8>) {
        let mut noise = Noise(seed);
        let mut values = Vec::with_capacity(len);
        let mut kinds = Vec::with_capacity(len);
        let mut injected = 0;
        for i in 0..len {
            let base = 10.0 + noise.gaussian();
            if i >= 150 && (i - 150) % 97 == 0 {
                let size = 5.0 + 3.0 * noise.uniform();
                let sign = if injected % 2 == 0 { 1.0 } else { -1.0 };
                injected += 1;
                values.push(10.0 + sign * size);
                kinds.push(sign as i8);
            } else {
                values.push(base);
                kinds.push(0);
            }
        }
        (values, kinds)
    }

    fn run(detector: &mut dyn Detector, values: &[f64]) -> Vec<Anomaly> {
        values
            .iter()
            .enumerate()
            .map(|(i, x)| {
                detector
                    .observe(i as i64 * SEC, Some(*x), FOREVER)
                    .expect("a value is scored")
            })
            .collect()
    }

    /// (recall on the injected kinds, false-positive rate on ordinary points,
    /// flags on the other injected kind), after the warm-up.
    fn rates(out: &[Anomaly], kinds: &[i8], wanted: &[i8]) -> (f64, f64, usize) {
        let (mut hit, mut total, mut fp, mut ordinary, mut other) = (0, 0, 0, 0, 0);
        for (a, k) in out.iter().zip(kinds).skip(WARM_UP) {
            if *k == 0 {
                ordinary += 1;
                fp += a.is_anomaly as usize;
            } else if wanted.contains(k) {
                total += 1;
                hit += a.is_anomaly as usize;
            } else {
                other += a.is_anomaly as usize;
            }
        }
        (
            hit as f64 / total as f64,
            fp as f64 / ordinary as f64,
            other,
        )
    }

    #[test]
    fn spikes_and_dips_are_found_with_few_false_positives() {
        for (confidence, max_fp) in [(95.0, 0.02), (99.0, 0.005)] {
            let (mut fp_sum, mut runs) = (0.0, 0);
            for seed in 1..=5 {
                let (values, kinds) = spiky_series(seed, 5000);
                let mut d = SpikeAndDip::new(confidence, 120, SpikeMode::SpikesAndDips).unwrap();
                let out = run(&mut d, &values);
                let (recall, fp, _) = rates(&out, &kinds, &[1, -1]);
                eprintln!(
                    "spikesanddips {confidence}% seed {seed}: recall {recall:.3}, FP rate {fp:.4}"
                );
                assert!(recall >= 0.98, "recall {recall} at {confidence}%");
                assert!(fp < max_fp, "false-positive rate {fp} at {confidence}%");
                fp_sum += fp;
                runs += 1;
            }
            eprintln!(
                "spikesanddips {confidence}%: mean FP rate {:.4}",
                fp_sum / runs as f64
            );
        }
    }

    #[test]
    fn spikes_mode_ignores_dips_and_dips_mode_ignores_spikes() {
        let (values, kinds) = spiky_series(7, 5000);
        for (mode, wanted) in [(SpikeMode::Spikes, 1i8), (SpikeMode::Dips, -1i8)] {
            let mut d = SpikeAndDip::new(95.0, 120, mode).unwrap();
            let out = run(&mut d, &values);
            let (recall, fp, other) = rates(&out, &kinds, &[wanted]);
            eprintln!(
                "{mode} 95%: recall {recall:.3}, FP rate {fp:.4}, other side flagged {other}"
            );
            assert_eq!(recall, 1.0, "{mode}");
            assert_eq!(other, 0, "{mode} flagged the other side");
            assert!(fp < 0.02, "{mode}: false-positive rate {fp}");
            // The other side scores as ordinary as can be.
            for (a, k) in out.iter().zip(&kinds) {
                if *k == -wanted {
                    assert!(a.score > 0.9, "{mode}: score {} on the other side", a.score);
                }
            }
        }
    }

    #[test]
    fn spike_false_positive_rate_tracks_the_conservative_p_value() {
        // Pure noise: spikes at 95% flags z > 1.645·√2 ≈ 2.33, about 1%.
        let mut noise = Noise(42);
        let values: Vec<f64> = (0..20_000).map(|_| noise.gaussian()).collect();
        let mut d = SpikeAndDip::new(95.0, 200, SpikeMode::Spikes).unwrap();
        let out = run(&mut d, &values);
        let rate = out.iter().filter(|a| a.is_anomaly).count() as f64 / out.len() as f64;
        eprintln!("spikes 95% on pure noise: flag rate {rate:.4}");
        assert!((0.004..0.02).contains(&rate), "flag rate {rate}");
    }

    #[test]
    fn spike_score_is_a_p_value_that_falls_as_the_value_rises() {
        let mut d = SpikeAndDip::new(95.0, 100, SpikeMode::Spikes).unwrap();
        let mut noise = Noise(3);
        for i in 0..100 {
            d.observe(i * SEC, Some(noise.gaussian()), FOREVER);
        }
        let mut last = 1.0;
        for k in -40..=40 {
            let s = d.score(k as f64 * 0.25);
            assert!((0.0..=1.0).contains(&s));
            assert!(
                s <= last,
                "score rose from {last} to {s} at x = {}",
                k as f64 * 0.25
            );
            last = s;
        }
        // Around the middle, about even odds.
        assert!((d.score(0.0) - 0.5).abs() < 0.15);
    }

    #[test]
    fn spike_warm_up_flags_nothing() {
        let mut d = SpikeAndDip::new(99.0, 120, SpikeMode::SpikesAndDips).unwrap();
        let values = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1e6];
        for (i, x) in values.iter().enumerate() {
            let a = d.observe(i as i64 * SEC, Some(*x), FOREVER).unwrap();
            assert!(!a.is_anomaly, "flagged during warm-up at {i}");
        }
        // The history now holds WARM_UP values: the next outlier counts.
        assert_eq!(d.history_len(), WARM_UP);
        assert!(d.observe(10 * SEC, Some(-1e6), FOREVER).unwrap().is_anomaly);
        // A small history size shortens the warm-up.
        let mut d = SpikeAndDip::new(99.0, 3, SpikeMode::Spikes).unwrap();
        for i in 0..3 {
            assert!(!d.observe(i * SEC, Some(5.0), FOREVER).unwrap().is_anomaly);
        }
        assert!(d.observe(3 * SEC, Some(6.0), FOREVER).unwrap().is_anomaly);
    }

    #[test]
    fn spike_on_a_constant_history() {
        let mut d = SpikeAndDip::new(95.0, 50, SpikeMode::SpikesAndDips).unwrap();
        for i in 0..50 {
            d.observe(i * SEC, Some(20.0), FOREVER);
        }
        let same = d.observe(50 * SEC, Some(20.0), FOREVER).unwrap();
        assert!(!same.is_anomaly);
        assert_eq!(same.score, 1.0);
        let moved = d.observe(51 * SEC, Some(20.5), FOREVER).unwrap();
        assert!(moved.is_anomaly, "{moved:?}");
        assert!(moved.score < 1e-6);
    }

    #[test]
    fn spike_history_is_bounded_by_its_size() {
        let mut d = SpikeAndDip::new(95.0, 50, SpikeMode::Spikes).unwrap();
        let mut noise = Noise(5);
        for i in 0..1000 {
            d.observe(i * SEC, Some(noise.gaussian()), FOREVER);
            assert!(d.history_len() <= 50);
        }
        assert_eq!(d.history_len(), 50);
        let empty = SpikeAndDip::new(95.0, 50, SpikeMode::Spikes)
            .unwrap()
            .snapshot()
            .len();
        assert_eq!(d.snapshot().len(), empty + 50 * 16);
    }

    #[test]
    fn horizon_forgets_old_history() {
        // 60 events at level 50, then 60 at level 10, one a second; then 50.
        let mut noise = Noise(11);
        let mut series: Vec<(i64, f64)> = (0..60)
            .map(|i| (i * SEC, 50.0 + noise.gaussian()))
            .collect();
        series.extend((60..120).map(|i| (i * SEC, 10.0 + noise.gaussian())));
        let probe = (120 * SEC, 50.0);
        for (horizon, flagged, remembered) in [(FOREVER, false, 120), (50 * SEC, true, 49)] {
            let mut d = SpikeAndDip::new(95.0, 200, SpikeMode::Spikes).unwrap();
            for (t, x) in &series {
                d.observe(*t, Some(*x), horizon);
            }
            let a = d.observe(probe.0, Some(probe.1), horizon).unwrap();
            assert_eq!(a.is_anomaly, flagged, "horizon {horizon}: {a:?}");
            // Kept: (120 s - 50 s, 120 s], the probe included.
            assert_eq!(d.history_len(), remembered + 1, "horizon {horizon}");
        }
    }

    #[test]
    fn horizon_start_is_exclusive() {
        let mut d = SpikeAndDip::new(95.0, 10, SpikeMode::Spikes).unwrap();
        d.observe(0, Some(1.0), 10 * SEC);
        d.observe(SEC, Some(1.0), 10 * SEC);
        // At t = 10 s the event at 0 is exactly LIMIT DURATION old: gone.
        d.observe(10 * SEC, Some(1.0), 10 * SEC);
        assert_eq!(d.history_len(), 2);
        let mut c = ChangePoint::new(95.0, 10).unwrap();
        c.observe(0, Some(1.0), 10 * SEC);
        c.observe(10 * SEC - 1, Some(1.0), 10 * SEC);
        c.observe(10 * SEC, Some(1.0), 10 * SEC);
        assert_eq!(c.history_len(), 2);
        // A gap longer than the horizon empties the history.
        c.observe(100 * SEC, Some(1.0), 10 * SEC);
        assert_eq!(c.history_len(), 1);
    }

    #[test]
    fn nulls_are_skipped() {
        let (values, _) = spiky_series(9, 600);
        let detectors: [Box<dyn Fn() -> Box<dyn Detector>>; 2] = [
            Box::new(|| Box::new(SpikeAndDip::new(95.0, 100, SpikeMode::SpikesAndDips).unwrap())),
            Box::new(|| Box::new(ChangePoint::new(95.0, 100).unwrap())),
        ];
        for make in detectors {
            let mut plain = make();
            let mut holey = make();
            for (i, x) in values.iter().enumerate() {
                let t = i as i64 * SEC;
                for bad in [None, Some(f64::NAN), Some(f64::INFINITY)] {
                    assert_eq!(holey.observe(t, bad, FOREVER), None);
                }
                let state = holey.snapshot();
                assert_eq!(holey.observe(t, None, FOREVER), None);
                assert_eq!(holey.snapshot(), state, "a NULL changed the state");
                assert_eq!(
                    plain.observe(t, Some(*x), FOREVER),
                    holey.observe(t, Some(*x), FOREVER)
                );
            }
        }
    }

    #[test]
    fn snapshot_and_restore_give_identical_outputs() {
        let (mut values, _) = spiky_series(13, 1200);
        // A level shift in the middle, so the martingale is mid-climb at 601.
        for v in &mut values[600..] {
            *v += 10.0;
        }
        let makers: [Box<dyn Fn() -> Box<dyn Detector>>; 4] = [
            Box::new(|| Box::new(SpikeAndDip::new(95.0, 120, SpikeMode::Spikes).unwrap())),
            Box::new(|| Box::new(SpikeAndDip::new(99.0, 120, SpikeMode::SpikesAndDips).unwrap())),
            Box::new(|| Box::new(ChangePoint::new(99.0, 120).unwrap())),
            Box::new(|| Box::new(ChangePoint::new(75.0, 30).unwrap())),
        ];
        for make in makers {
            for cut in [5, 300, 601] {
                let mut original = make();
                let horizon = 100 * SEC;
                for (i, x) in values[..cut].iter().enumerate() {
                    original.observe(i as i64 * SEC, Some(*x), horizon);
                }
                let state = original.snapshot();
                let mut restored = make();
                restored.restore(&state).unwrap();
                assert_eq!(restored.snapshot(), state);
                for (i, x) in values.iter().enumerate().skip(cut) {
                    let t = i as i64 * SEC;
                    assert_eq!(
                        original.observe(t, Some(*x), horizon),
                        restored.observe(t, Some(*x), horizon),
                        "{original:?} at {i} after a cut at {cut}"
                    );
                }
            }
        }
    }

    #[test]
    fn restore_refuses_foreign_or_broken_state() {
        let mut spike = SpikeAndDip::new(95.0, 20, SpikeMode::Spikes).unwrap();
        let mut change = ChangePoint::new(95.0, 20).unwrap();
        for i in 0..30 {
            spike.observe(i * SEC, Some(i as f64), FOREVER);
            change.observe(i * SEC, Some(i as f64), FOREVER);
        }
        let (s, c) = (spike.snapshot(), change.snapshot());
        let before = spike.snapshot();
        let err = |d: &mut dyn Detector, bytes: &[u8]| d.restore(bytes).unwrap_err();
        assert!(err(&mut spike, &c).contains("other anomaly detector"));
        assert!(err(&mut change, &s).contains("other anomaly detector"));
        assert!(err(&mut spike, &s[..s.len() - 3]).contains("truncated"));
        assert!(err(&mut spike, b"garbage!").contains("not an anomaly detector"));
        let mut longer = s.clone();
        longer.push(0);
        assert!(err(&mut spike, &longer).contains("trailing"));
        let mut other_args = SpikeAndDip::new(99.0, 20, SpikeMode::Spikes).unwrap();
        assert!(err(&mut other_args, &s).contains("confidence 95 and historySize 20"));
        let mut other_mode = SpikeAndDip::new(95.0, 20, SpikeMode::Dips).unwrap();
        assert!(err(&mut other_mode, &s).contains("mode"));
        // A failed restore leaves the detector as it was.
        assert_eq!(spike.snapshot(), before);
        // A well-formed snapshot restores into a fresh detector.
        let mut fresh = ChangePoint::new(95.0, 20).unwrap();
        fresh.restore(&c).unwrap();
        assert_eq!(fresh.history_len(), change.history_len());
    }

    #[test]
    fn arguments_are_validated() {
        for confidence in [0.0, 0.99, 100.01, -5.0, f64::NAN, f64::INFINITY] {
            let e = SpikeAndDip::new(confidence, 120, SpikeMode::Spikes).unwrap_err();
            assert!(
                e.contains(
                    "AnomalyDetection_SpikeAndDip: confidence must be a percentage from 1 to 100"
                ),
                "{e}"
            );
            let e = ChangePoint::new(confidence, 120).unwrap_err();
            assert!(
                e.contains("AnomalyDetection_ChangePoint: confidence"),
                "{e}"
            );
        }
        for history in [0, 1, MAX_HISTORY + 1] {
            let e = SpikeAndDip::new(95.0, history, SpikeMode::Spikes).unwrap_err();
            assert_eq!(
                e,
                format!(
                    "AnomalyDetection_SpikeAndDip: historySize must be from 2 to 100000 events, got {history}"
                )
            );
            assert!(
                ChangePoint::new(95.0, history)
                    .unwrap_err()
                    .contains("historySize")
            );
        }
        for (confidence, history) in [(1.0, 2), (100.0, MAX_HISTORY), (95.5, 120)] {
            assert!(SpikeAndDip::new(confidence, history, SpikeMode::Dips).is_ok());
            assert!(ChangePoint::new(confidence, history).is_ok());
        }
        for (text, mode) in [
            ("spikes", SpikeMode::Spikes),
            ("DIPS", SpikeMode::Dips),
            ("SpikesAndDips", SpikeMode::SpikesAndDips),
        ] {
            assert_eq!(text.parse::<SpikeMode>(), Ok(mode));
            assert_eq!(mode.to_string().parse::<SpikeMode>(), Ok(mode));
        }
        let e = "spike".parse::<SpikeMode>().unwrap_err();
        assert_eq!(
            e,
            "AnomalyDetection_SpikeAndDip: mode must be 'spikes', 'dips' or 'spikesanddips', got 'spike'"
        );
    }

    #[test]
    fn full_confidence_flags_nothing() {
        let (mut values, _) = spiky_series(17, 2000);
        for v in &mut values[1000..] {
            *v += 20.0;
        }
        let mut spike = SpikeAndDip::new(100.0, 120, SpikeMode::SpikesAndDips).unwrap();
        let mut change = ChangePoint::new(100.0, 120).unwrap();
        assert!(run(&mut spike, &values).iter().all(|a| !a.is_anomaly));
        let out = run(&mut change, &values);
        assert!(out.iter().all(|a| !a.is_anomaly && a.score.is_finite()));
    }

    /// A series around `before` with unit noise that moves to `after` at `at`.
    fn shifted(seed: u64, len: usize, at: usize, before: f64, after: f64) -> Vec<f64> {
        let mut noise = Noise(seed);
        (0..len)
            .map(|i| if i < at { before } else { after } + noise.gaussian())
            .collect()
    }

    fn alarms(out: &[Anomaly]) -> Vec<usize> {
        out.iter()
            .enumerate()
            .filter(|(_, a)| a.is_anomaly)
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn change_point_finds_a_level_shift_within_a_few_points() {
        for (confidence, history) in [
            (95.0, 20),
            (95.0, 50),
            (99.0, 120),
            (99.0, 500),
            (75.0, 72),
            (80.0, 1200),
        ] {
            let (mut false_alarms, mut points) = (0, 0);
            for (before, after, max_delay) in [(10.0, 20.0, 8), (20.0, 10.0, 8), (10.0, 14.0, 10)] {
                let mut delays = Vec::new();
                for seed in 1..=10 {
                    let values = shifted(seed, 3000, 1500, before, after);
                    let mut d = ChangePoint::new(confidence, history).unwrap();
                    let out = run(&mut d, &values);
                    let found = alarms(&out);
                    let case = format!("{confidence}%/{history} {before}->{after} seed {seed}");
                    let detected = found.iter().copied().find(|i| *i >= 1500);
                    let delay = detected.map_or(i64::MAX, |i| i as i64 - 1500);
                    assert!(delay <= max_delay, "{case}: alarms at {found:?}");
                    assert!(out[1500 + delay as usize].score >= d.threshold(), "{case}");
                    delays.push(delay);
                    // Anything else is a false alarm.
                    false_alarms += found.len() - 1;
                    points += values.len();
                }
                eprintln!(
                    "change point {confidence}%/{history} {before}->{after}: delays {delays:?}"
                );
            }
            // At most α per history's worth of events.
            let bound = points as f64 / history as f64 * (1.0 - confidence / 100.0);
            eprintln!(
                "change point {confidence}%/{history}: {false_alarms} false alarms in {points} points (bound {bound:.0})"
            );
            assert!(
                false_alarms as f64 <= bound.max(1.0),
                "{false_alarms} false alarms"
            );
            if confidence >= 99.0 {
                assert_eq!(false_alarms, 0);
            }
        }
    }

    #[test]
    fn change_point_alarm_starts_a_new_history() {
        let values = shifted(21, 800, 400, 10.0, 20.0);
        let mut d = ChangePoint::new(95.0, 100).unwrap();
        for (i, x) in values.iter().enumerate() {
            let a = d.observe(i as i64 * SEC, Some(*x), FOREVER).unwrap();
            if a.is_anomaly {
                assert!(a.score >= d.threshold(), "{a:?}");
                // Only values from the new level are left, the alarming one included.
                assert!(
                    i >= 400 && d.history_len() <= i - 400 + 1,
                    "{} at {i}",
                    d.history_len()
                );
                assert!(d.history.events.iter().all(|(_, v)| *v > 15.0));
                // Score restarts from 1.
                let next = d
                    .observe((i + 1) as i64 * SEC, Some(values[i + 1]), FOREVER)
                    .unwrap();
                assert_eq!(
                    next,
                    Anomaly {
                        score: 1.0,
                        is_anomaly: false
                    }
                );
                return;
            }
        }
        panic!("no alarm");
    }

    #[test]
    fn change_point_history_is_bounded() {
        // At 100% nothing alarms, so a lasting change is held out as long as can be.
        let values = shifted(4, 3000, 1000, 10.0, 30.0);
        let mut d = ChangePoint::new(100.0, 50).unwrap();
        for (i, x) in values.iter().enumerate() {
            d.observe(i as i64 * SEC, Some(*x), FOREVER);
            assert!(d.history.len() <= 50 && d.pending.len() <= 50 / 3, "at {i}");
        }
        // The new level has become the reference: nothing is held out any more.
        assert_eq!(d.history_len(), 50);
    }

    #[test]
    fn change_point_is_quiet_on_stationary_series() {
        for confidence in [95.0, 99.0] {
            let (mut alarms_total, mut points) = (0, 0);
            for seed in 1..=20 {
                let values = shifted(seed * 1000, 5000, usize::MAX, 10.0, 10.0);
                let mut d = ChangePoint::new(confidence, 120).unwrap();
                let out = run(&mut d, &values);
                alarms_total += alarms(&out).len();
                points += out.len();
            }
            eprintln!(
                "change point {confidence}% on {points} stationary points: {alarms_total} alarms"
            );
            // The bound: at most α per history's worth of events.
            let bound = points as f64 / 120.0 * (1.0 - confidence / 100.0);
            assert!(
                (alarms_total as f64) <= bound,
                "{alarms_total} alarms, bound {bound}"
            );
            if confidence == 99.0 {
                assert!(alarms_total <= 1, "{alarms_total} alarms at 99%");
            }
        }
        // Integer-valued (tied) readings too.
        let mut noise = Noise(99);
        let values: Vec<f64> = (0..5000).map(|_| (noise.uniform() * 4.0).floor()).collect();
        let mut d = ChangePoint::new(99.0, 120).unwrap();
        assert!(alarms(&run(&mut d, &values)).is_empty());
    }

    #[test]
    fn change_point_ignores_isolated_spikes() {
        let (values, _) = spiky_series(23, 5000);
        let mut d = ChangePoint::new(95.0, 120).unwrap();
        let found = alarms(&run(&mut d, &values));
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn change_point_finds_a_slow_trend() {
        // Flat for 1000 points, then rising 0.05σ a point: 3σ over half a history.
        let mut noise = Noise(31);
        let values: Vec<f64> = (0..1600)
            .map(|i| {
                10.0 + noise.gaussian()
                    + if i < 1000 {
                        0.0
                    } else {
                        0.05 * (i - 1000) as f64
                    }
            })
            .collect();
        let mut d = ChangePoint::new(95.0, 120).unwrap();
        let found = alarms(&run(&mut d, &values));
        eprintln!("change point, trend of 0.05σ/point from 1000: alarms at {found:?}");
        assert!(
            found.first().is_some_and(|i| (1000..1150).contains(i)),
            "{found:?}"
        );
    }

    proptest::proptest! {
        #[test]
        fn scores_stay_in_range(
            xs in proptest::collection::vec(proptest::prelude::prop_oneof![
                -1e12f64..1e12, -1.0f64..1.0, proptest::prelude::Just(0.0)
            ], 1..200),
            history in 2usize..40,
        ) {
            let mut spike = SpikeAndDip::new(90.0, history, SpikeMode::SpikesAndDips).unwrap();
            let mut change = ChangePoint::new(90.0, history).unwrap();
            for (i, x) in xs.iter().enumerate() {
                let t = i as i64 * SEC;
                let a = spike.observe(t, Some(*x), 30 * SEC).unwrap();
                proptest::prop_assert!((0.0..=1.0).contains(&a.score), "{:?}", a);
                let b = change.observe(t, Some(*x), 30 * SEC).unwrap();
                proptest::prop_assert!(b.score.is_finite() && b.score > 0.0, "{:?}", b);
                proptest::prop_assert!(spike.history_len() <= history);
                proptest::prop_assert!(change.history_len() <= history + (history / 3).max(1));
            }
        }
    }
}
