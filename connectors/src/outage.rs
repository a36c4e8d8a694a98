//! An outage of a destination (a broker, a database, an alert receiver):
//! logged once when it begins and once when it ends, not at every failed
//! attempt, and shown in the output's metrics while it lasts.

use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use iotql_engine::io::SinkMetrics;

/// Follows whether a destination is reachable.
#[derive(Debug)]
pub(crate) struct Outage {
    /// What is unreachable, for the log: `output alerts (webhook http://...)`.
    what: String,
    /// When the current outage began, and the attempts failed in it.
    since: Option<(Instant, u64)>,
    metrics: Option<Arc<SinkMetrics>>,
}

impl Outage {
    pub(crate) fn new(what: impl Into<String>, metrics: Option<Arc<SinkMetrics>>) -> Self {
        Outage {
            what: what.into(),
            since: None,
            metrics,
        }
    }

    /// An attempt failed: the first failure of an outage is logged and
    /// counted; later ones only counted.
    pub(crate) fn failed(&mut self, error: &dyn Display) {
        match &mut self.since {
            Some((_, failures)) => *failures += 1,
            None => {
                tracing::warn!(
                    "{} is unreachable: {error}; retrying until it is back (logged once per outage)",
                    self.what
                );
                self.since = Some((Instant::now(), 1));
                if let Some(m) = &self.metrics {
                    m.outages.fetch_add(1, Ordering::Relaxed);
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(1, |d| d.as_millis() as i64);
                    m.down_since_ms.store(now, Ordering::Relaxed);
                }
            }
        }
    }

    /// An attempt succeeded: an outage in progress ends (and is logged).
    pub(crate) fn succeeded(&mut self) {
        if let Some((since, failures)) = self.since.take() {
            tracing::warn!(
                "{} is reachable again after {:.1} s ({failures} failed attempts)",
                self.what,
                since.elapsed().as_secs_f64()
            );
            if let Some(m) = &self.metrics {
                m.down_since_ms.store(0, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_counted_once_and_cleared() {
        let metrics = Arc::new(SinkMetrics::default());
        let mut outage = Outage::new("output x", Some(metrics.clone()));
        outage.succeeded();
        assert_eq!(metrics.outages.load(Ordering::Relaxed), 0);
        for _ in 0..5 {
            outage.failed(&"connection refused");
        }
        assert_eq!(metrics.outages.load(Ordering::Relaxed), 1);
        assert!(metrics.down_since_ms.load(Ordering::Relaxed) > 0);
        outage.succeeded();
        assert_eq!(metrics.down_since_ms.load(Ordering::Relaxed), 0);
        outage.failed(&"again");
        assert_eq!(metrics.outages.load(Ordering::Relaxed), 2);
    }
}
