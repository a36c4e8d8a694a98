//! Measurements that a run keeps on at all times, for the run summary and
//! a metrics endpoint (Prometheus): a lock-free [`Histogram`] of durations
//! (the time to process a batch) and each partition's consumer lag of a
//! broker input ([`SourceMetrics`]). Counters of events, rows and late
//! events live with what counts them (`TimestampStats`, `SinkMetrics`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The upper bounds of the batch latency buckets, in seconds: 50 µs to
/// 10 s in steps of x2 and x2.5 (1-2.5-5 per decade, as Prometheus' own
/// defaults). A batch of a few thousand events takes from tens of
/// microseconds (a filter) to tens of milliseconds (a slow output); seconds
/// mean an output that waits for its destination.
pub const LATENCY_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// A histogram of durations over fixed buckets, updated without locks:
/// one observation is two relaxed atomic additions (its bucket and the
/// sum), so it stays on in every run. Readers take a [`Histogram::snapshot`]
/// while observers go on.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds in nanoseconds, ascending (what `observe` compares).
    bounds_ns: Vec<u64>,
    /// Upper bounds in seconds, as given (what a snapshot shows).
    bounds: Vec<f64>,
    /// Observations per bucket (not cumulative); the last one is +Inf.
    counts: Vec<AtomicU64>,
    /// The sum of all observations, in nanoseconds (584 years fit).
    sum_ns: AtomicU64,
}

impl Histogram {
    /// A histogram with the given upper bounds in seconds (ascending), and
    /// a last bucket for anything longer (+Inf).
    pub fn new(bounds: &[f64]) -> Self {
        let mut bounds: Vec<f64> = bounds
            .iter()
            .copied()
            .filter(|b| b.is_finite() && *b > 0.0)
            .collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        Histogram {
            bounds_ns: bounds.iter().map(|b| (b * 1e9).round() as u64).collect(),
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            bounds,
            sum_ns: AtomicU64::new(0),
        }
    }

    /// A histogram over [`LATENCY_BUCKETS`].
    pub fn latency() -> Self {
        Histogram::new(&LATENCY_BUCKETS)
    }

    /// Counts one observation: in the first bucket whose upper bound is at
    /// least `d` (Prometheus' `le`).
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let bucket = self.bounds_ns.partition_point(|&b| b < ns);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// What was observed so far, self-consistent: the count is the total of
    /// the buckets read, so that the +Inf bucket equals it even while
    /// another thread observes (the sum may then miss or hold an
    /// observation more than the buckets).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let bound = self.bounds.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, cumulative));
        }
        HistogramSnapshot {
            buckets,
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            count: cumulative,
        }
    }
}

/// A [`Histogram`] at one moment, as a Prometheus histogram shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound in seconds, observations at most that long): cumulative,
    /// the `_bucket{le=...}` series; the last bound is `f64::INFINITY`
    /// (`le="+Inf"`). For prometheus-client's `encode_histogram`, which
    /// takes per-bucket counts and +Inf as `f64::MAX`, see
    /// [`HistogramSnapshot::per_bucket`].
    pub buckets: Vec<(f64, u64)>,
    /// The sum of the observations in seconds (`_sum`).
    pub sum_seconds: f64,
    /// The number of observations (`_count`, the +Inf bucket).
    pub count: u64,
}

impl HistogramSnapshot {
    /// The buckets with their own counts (not cumulative), the last bound
    /// `f64::MAX`: what prometheus-client's `MetricEncoder::encode_histogram`
    /// takes (it adds them up, and prints `f64::MAX` as `+Inf`).
    pub fn per_bucket(&self) -> Vec<(f64, u64)> {
        let mut before = 0;
        self.buckets
            .iter()
            .map(|&(bound, cumulative)| {
                let own = cumulative - before;
                before = cumulative;
                let bound = if bound.is_finite() { bound } else { f64::MAX };
                (bound, own)
            })
            .collect()
    }

    /// An upper bound of the `q` quantile (0..=1): the bound of the bucket
    /// that holds it (+Inf when it is past the last bound); `None` without
    /// observations. Bucket bounds, not an interpolation: what a summary
    /// can say honestly ("p99 ≤ 5 ms").
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        self.buckets
            .iter()
            .find(|&&(_, cumulative)| cumulative >= rank)
            .map(|&(bound, _)| bound)
    }
}

/// What a run measures beyond the dataflow's counters (events, rows, late
/// events: `Dataflow::input_stats`/`output_stats`), shared with the run
/// summary and a metrics endpoint, which read them while the run goes on.
/// The runner keeps them, not the dataflow: the latency is the runner's
/// view of a push (operators and outputs, as the job's caller waits for
/// it), and sources belong to the runner (the dataflow never sees them).
#[derive(Debug, Clone)]
pub struct RunMetrics {
    /// How long each batch took, from handing it to the dataflow until the
    /// push returned (its outputs written).
    pub batch_latency: Arc<Histogram>,
    /// The metrics of each input that keeps some (a Kafka input's lag), by
    /// input name.
    pub sources: Vec<(String, Arc<SourceMetrics>)>,
}

impl RunMetrics {
    /// The metrics of input `name` (case-insensitive, as in the job).
    pub fn source(&self, name: &str) -> Option<&SourceMetrics> {
        self.sources
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, m)| m.as_ref())
    }
}

/// What a source measures of where it reads, shared with whoever reports
/// it: each partition's consumer lag (Kafka). Written by the source at its
/// own pace (Kafka: once per statistics interval, never per batch), read
/// by the run summary and a metrics endpoint; a read lock for the map, no
/// lock on the source's batch path.
#[derive(Debug, Default)]
pub struct SourceMetrics {
    lags: RwLock<BTreeMap<(String, i32), u64>>,
}

/// One partition's consumer lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// Messages between the input's position and the partition's end (its
    /// high watermark, or last stable offset when reading committed only).
    pub lag: u64,
}

impl SourceMetrics {
    /// Sets a partition's lag; `None` forgets it (a partition revoked, or
    /// whose end or position is not known yet).
    pub fn set_lag(&self, topic: &str, partition: i32, lag: Option<u64>) {
        let Ok(mut lags) = self.lags.write() else {
            return;
        };
        let key = (topic.to_string(), partition);
        match lag {
            Some(lag) => {
                lags.insert(key, lag);
            }
            None => {
                lags.remove(&key);
            }
        }
    }

    /// The lag of each partition that has one, by topic and partition.
    pub fn lags(&self) -> Vec<PartitionLag> {
        self.lags.read().map_or_else(
            |_| Vec::new(),
            |lags| {
                lags.iter()
                    .map(|((topic, partition), &lag)| PartitionLag {
                        topic: topic.clone(),
                        partition: *partition,
                        lag,
                    })
                    .collect()
            },
        )
    }

    /// The lag over all partitions; `None` when no partition has one.
    pub fn total_lag(&self) -> Option<u64> {
        let lags = self.lags();
        (!lags.is_empty()).then(|| lags.iter().map(|l| l.lag).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn an_observation_lands_in_the_first_bucket_at_least_as_long() {
        let h = Histogram::latency();
        // On a bound (le is inclusive), just past it, below the first,
        // past the last.
        for d in [us(50), us(51), us(1), Duration::from_secs(11)] {
            h.observe(d);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(s.buckets[0], (0.000_05, 2), "1 µs and 50 µs");
        assert_eq!(s.buckets[1], (0.000_1, 3), "51 µs");
        assert_eq!(s.buckets[16], (10.0, 3));
        assert_eq!(s.buckets[17], (f64::INFINITY, 4), "11 s");
        assert_eq!(s.count, 4);
        assert!(
            (s.sum_seconds - 11.000_102).abs() < 1e-9,
            "{}",
            s.sum_seconds
        );
    }

    #[test]
    fn per_bucket_counts_are_the_differences_with_max_for_inf() {
        let h = Histogram::new(&[0.001, 0.01]);
        for d in [us(10), us(2000), us(3000), Duration::from_secs(1)] {
            h.observe(d);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(0.001, 1), (0.01, 3), (f64::INFINITY, 4)]);
        assert_eq!(s.per_bucket(), vec![(0.001, 1), (0.01, 2), (f64::MAX, 1)]);
    }

    #[test]
    fn quantiles_are_bucket_bounds() {
        let h = Histogram::latency();
        assert_eq!(h.snapshot().quantile(0.5), None);
        for _ in 0..98 {
            h.observe(us(700));
        }
        h.observe(Duration::from_millis(20));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.quantile(0.5), Some(0.001));
        assert_eq!(s.quantile(0.98), Some(0.001));
        assert_eq!(s.quantile(0.99), Some(0.025));
        assert_eq!(s.quantile(1.0), Some(f64::INFINITY));
    }

    #[test]
    fn observers_on_several_threads_lose_nothing() {
        let h = std::sync::Arc::new(Histogram::latency());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        h.observe(us((i * 7 + t) % 20_000));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("an observer thread panicked");
        }
        assert_eq!(h.snapshot().count, 40_000);
    }

    #[test]
    fn lags_are_set_replaced_and_forgotten() {
        let m = SourceMetrics::default();
        assert_eq!(m.total_lag(), None);
        m.set_lag("b", 0, Some(5));
        m.set_lag("a", 1, Some(7));
        m.set_lag("a", 1, Some(3));
        m.set_lag("a", 0, None);
        assert_eq!(
            m.lags(),
            vec![
                PartitionLag {
                    topic: "a".into(),
                    partition: 1,
                    lag: 3
                },
                PartitionLag {
                    topic: "b".into(),
                    partition: 0,
                    lag: 5
                },
            ]
        );
        assert_eq!(m.total_lag(), Some(8));
        m.set_lag("b", 0, None);
        assert_eq!(m.total_lag(), Some(3));
    }

    proptest! {
        /// Whatever is observed: the buckets add up to the count, are
        /// cumulative, each observation is counted in the first bucket whose
        /// bound it does not pass, and the sum is the sum of them.
        #[test]
        fn buckets_add_up_to_the_count(
            micros in proptest::collection::vec(0u64..20_000_000, 0..200)
        ) {
            let h = Histogram::latency();
            for &m in &micros {
                h.observe(us(m));
            }
            let s = h.snapshot();
            prop_assert_eq!(s.count, micros.len() as u64);
            prop_assert_eq!(s.per_bucket().iter().map(|b| b.1).sum::<u64>(), s.count);
            prop_assert!(s.buckets.windows(2).all(|w| w[0].1 <= w[1].1 && w[0].0 < w[1].0));
            for &(bound, cumulative) in &s.buckets {
                let expected = micros.iter().filter(|&&m| m as f64 / 1e6 <= bound).count();
                prop_assert_eq!(cumulative, expected as u64, "le {}", bound);
            }
            let sum: u64 = micros.iter().sum();
            prop_assert!((s.sum_seconds - sum as f64 / 1e6).abs() < 1e-6);
        }
    }
}
