//! Waiting between attempts: a delay that doubles from a base up to a
//! ceiling, with optional jitter so that many clients of one server do not
//! retry in step.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A reconnection or retry delay: `base`, doubling per failure, at most
/// `max`; with jitter, each delay is drawn from [delay/2, delay].
#[derive(Debug)]
pub(crate) struct Backoff {
    failures: u32,
    base: Duration,
    max: Duration,
    jitter: Option<ChaCha8Rng>,
}

impl Default for Backoff {
    /// 100 ms doubling to 5 s, without jitter (a broker reconnection).
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

impl Backoff {
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            failures: 0,
            base,
            max,
            jitter: None,
        }
    }

    /// Draws each delay from its upper half.
    pub(crate) fn with_jitter(mut self) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        self.jitter = Some(ChaCha8Rng::seed_from_u64(seed));
        self
    }

    /// The delay before the next attempt, after one more failure.
    pub(crate) fn next(&mut self) -> Duration {
        let delay = self
            .base
            .saturating_mul(1u32 << self.failures.min(16))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        match &mut self.jitter {
            Some(rng) => delay.mul_f64(rng.random_range(0.5..=1.0)),
            None => delay,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    /// Whether the last attempt was the first failure of an outage.
    pub(crate) fn first(&self) -> bool {
        self.failures == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_a_ceiling() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..9).map(|_| b.next().as_millis() as u64).collect();
        assert_eq!(
            delays,
            vec![100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]
        );
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(100));
        assert!(b.first());
    }

    #[test]
    fn jitter_stays_in_the_upper_half() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).with_jitter();
        for n in 0..12 {
            let ceiling = Duration::from_millis(100 << n.min(16)).min(Duration::from_secs(1));
            let d = b.next();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} for ceiling {ceiling:?}"
            );
        }
    }
}
