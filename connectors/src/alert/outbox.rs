//! The alert outbox of a run with checkpoints: alerts are recorded in a
//! checkpoint before they are delivered, so that neither a crash nor an
//! outage of the receiver loses one.
//!
//! - `push` (the job's `write`) puts alerts at the back, and the output
//!   asks for a checkpoint (`wants_checkpoint`) while some are in none.
//! - `checkpoint` returns every alert not yet confirmed delivered (its
//!   body, key and attempts), which the runner saves; `committed` (the
//!   checkpoint is durable) lets the worker thread deliver them.
//! - The worker delivers from the front, in order, one attempt at a time,
//!   with capped exponential backoff and jitter, for as long as it takes:
//!   the outbox is the buffer, the job never waits for the receiver. A
//!   receiver's refusal (4xx) is a dead letter at once; beyond
//!   `outbox_limit` alerts the oldest become dead letters.
//! - `recover` takes back a checkpoint's alerts: they were not confirmed,
//!   so they are delivered again (at least once). The alerts after the
//!   checkpoint are made again by the resumed job, with the same keys.
//! - `finish` (the inputs ended; the checkpoints are removed after it)
//!   delivers the rest, waiting up to `drain_timeout`, then dead-letters
//!   what is left; `stop` (a stop at a checkpoint) leaves it to the next run.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use iotql_engine::error::EngineError;
use iotql_engine::io::SinkMetrics;
use iotql_engine::operator::DeadLetter;

use super::{Alert, Destination, Outcome, key};
use crate::backoff::Backoff;
use crate::outage::Outage;

/// The first byte of a state: its layout.
const VERSION: u8 = 1;

/// What the worker is to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// Deliver what checkpoints have recorded.
    Deliver,
    /// Deliver everything, then end (the end of the run).
    Drain,
    /// End after the attempt in progress.
    Stop,
}

/// The alerts and the worker's instructions, shared.
#[derive(Debug)]
struct Queue {
    /// Alerts not confirmed delivered, oldest first, with their numbers.
    alerts: VecDeque<(u64, Alert)>,
    /// Alerts numbered up to this are in a durable checkpoint: deliverable.
    deliverable: u64,
    /// Alerts at the front that an attempt in progress carries.
    in_flight: usize,
    run: Run,
    dead: Vec<DeadLetter>,
    /// Why the last attempt failed, while the receiver is failing.
    failing: Option<String>,
}

#[derive(Debug)]
struct Shared {
    /// The output's name, for dead letters.
    output: String,
    queue: Mutex<Queue>,
    /// Signalled when alerts become deliverable or are settled, and when
    /// the worker is told to end.
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A poisoned lock means the worker panicked (a bug); the queue is
        // still consistent (every change is made whole under the lock).
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tell(&self, run: Run) {
        self.lock().run = run;
        self.changed.notify_all();
    }
}

/// An output's outbox. See the module documentation.
#[derive(Debug)]
pub(crate) struct Outbox {
    /// `webhook http://host/…`, for reasons and logs.
    what: String,
    limit: usize,
    drain_timeout: Duration,
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
    metrics: Arc<SinkMetrics>,
    /// The number of the last alert pushed (or recovered).
    last: u64,
    /// The number of the last alert in the state `checkpoint` returned.
    checkpointed: u64,
}

impl Outbox {
    /// The outbox of output `output`, which delivers to `what`.
    pub(crate) fn new(
        output: &str,
        what: &str,
        limit: usize,
        drain_timeout: Duration,
        metrics: Arc<SinkMetrics>,
    ) -> Self {
        Outbox {
            what: what.to_string(),
            limit,
            drain_timeout,
            shared: Arc::new(Shared {
                output: output.to_string(),
                queue: Mutex::new(Queue {
                    alerts: VecDeque::new(),
                    deliverable: 0,
                    in_flight: 0,
                    run: Run::Deliver,
                    dead: Vec::new(),
                    failing: None,
                }),
                changed: Condvar::new(),
            }),
            worker: None,
            metrics,
            last: 0,
            checkpointed: 0,
        }
    }

    /// Starts the thread that delivers to `destination`.
    pub(crate) fn start(
        &mut self,
        destination: Box<dyn Destination>,
        outage: Outage,
    ) -> Result<(), EngineError> {
        let worker = Worker {
            shared: self.shared.clone(),
            backoff: destination.backoff(),
            destination,
            outage,
            metrics: self.metrics.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("iotql-outbox".into())
            .spawn(move || worker.run())
            .map_err(|e| EngineError::Internal(format!("cannot start the outbox thread: {e}")))?;
        self.worker = Some(handle);
        Ok(())
    }

    /// Records alerts written by the job; beyond the limit, the oldest
    /// not in an attempt become dead letters.
    pub(crate) fn push(&mut self, alerts: Vec<Alert>) {
        let mut queue = self.shared.lock();
        for alert in alerts {
            self.last += 1;
            queue.alerts.push_back((self.last, alert));
        }
        // The alerts of an attempt in progress stay: the attempt settles them.
        let from = queue.in_flight;
        let excess = queue
            .alerts
            .len()
            .saturating_sub(self.limit)
            .min(queue.alerts.len() - from);
        if excess > 0 {
            let given_up: Vec<Alert> = queue
                .alerts
                .drain(from..from + excess)
                .map(|(_, a)| a)
                .collect();
            let reason = format!(
                "the outbox holds more than outbox_limit = {} alerts: the oldest are given up",
                self.limit
            );
            self.metrics
                .failures
                .fetch_add(given_up.len() as u64, Ordering::Relaxed);
            let letters = self.dead_letters(&reason, queue.failing.as_deref(), given_up);
            queue.dead.extend(letters);
        }
    }

    /// Whether alerts wait for a checkpoint.
    pub(crate) fn wants_checkpoint(&self) -> bool {
        self.last > self.checkpointed
    }

    /// The state of a checkpoint: every alert not confirmed delivered.
    pub(crate) fn checkpoint(&mut self) -> Vec<u8> {
        let queue = self.shared.lock();
        self.checkpointed = self.last;
        encode(queue.alerts.iter().map(|(_, a)| a))
    }

    /// The checkpoint of the last `checkpoint` is durable: its alerts may go.
    pub(crate) fn committed(&mut self) {
        let mut queue = self.shared.lock();
        queue.deliverable = queue.deliverable.max(self.checkpointed);
        self.shared.changed.notify_all();
    }

    /// Takes back the alerts of a checkpoint (before `start`): they are in
    /// a durable checkpoint, so deliverable at once.
    pub(crate) fn recover(&mut self, state: &[u8]) -> Result<(), EngineError> {
        let alerts = decode(state)?;
        let mut queue = self.shared.lock();
        for alert in alerts {
            self.last += 1;
            queue.alerts.push_back((self.last, alert));
        }
        self.checkpointed = self.last;
        queue.deliverable = self.last;
        if !queue.alerts.is_empty() {
            tracing::info!(
                output = %self.shared.output,
                "{}: {} alerts of the checkpoint not confirmed delivered are delivered again",
                self.what,
                queue.alerts.len()
            );
        }
        Ok(())
    }

    /// The end of the run: delivers every alert, waiting up to the drain
    /// timeout, then dead-letters the rest with the reason.
    pub(crate) fn finish(&mut self) {
        {
            let mut queue = self.shared.lock();
            queue.deliverable = u64::MAX;
            queue.run = Run::Drain;
            self.shared.changed.notify_all();
            let deadline = Instant::now() + self.drain_timeout;
            while !queue.alerts.is_empty() && self.worker.is_some() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                queue = self
                    .shared
                    .changed
                    .wait_timeout(queue, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        self.end();
        let mut queue = self.shared.lock();
        if queue.alerts.is_empty() {
            return;
        }
        let left: Vec<Alert> = queue.alerts.drain(..).map(|(_, a)| a).collect();
        tracing::warn!(
            output = %self.shared.output,
            "{}: {} alerts not delivered within drain_timeout = {:?} at the end of the run go to the dead-letter output",
            self.what,
            left.len(),
            self.drain_timeout
        );
        self.metrics
            .failures
            .fetch_add(left.len() as u64, Ordering::Relaxed);
        let reason = format!(
            "not delivered within drain_timeout = {:?} at the end of the run",
            self.drain_timeout
        );
        let letters = self.dead_letters(&reason, queue.failing.as_deref(), left);
        queue.dead.extend(letters);
    }

    /// A stop at a checkpoint that holds every alert: the worker ends after
    /// its attempt in progress, and the next run delivers the rest.
    pub(crate) fn stop(&mut self) {
        self.end();
        let queue = self.shared.lock();
        if !queue.alerts.is_empty() {
            tracing::info!(
                output = %self.shared.output,
                "{}: {} alerts wait in the checkpoint for the next run",
                self.what,
                queue.alerts.len()
            );
        }
    }

    /// Ends the worker (after its attempt in progress).
    fn end(&mut self) {
        self.shared.tell(Run::Stop);
        if let Some(worker) = self.worker.take()
            && worker.join().is_err()
        {
            tracing::error!(output = %self.shared.output, "{}: the outbox thread panicked (a bug)", self.what);
        }
    }

    pub(crate) fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.shared.lock().dead)
    }

    fn dead_letters(
        &self,
        reason: &str,
        failing: Option<&str>,
        alerts: Vec<Alert>,
    ) -> Vec<DeadLetter> {
        dead_letters(&self.shared.output, &self.what, reason, failing, alerts)
    }
}

impl Drop for Outbox {
    /// A job that fails leaves the worker to end by itself, after its
    /// attempt in progress (the checkpoint holds the alerts).
    fn drop(&mut self) {
        self.shared.tell(Run::Stop);
    }
}

/// The dead letters of output `output`'s alerts to `what` given up for
/// `reason` (and the receiver's last failure, when it was failing).
fn dead_letters(
    output: &str,
    what: &str,
    reason: &str,
    failing: Option<&str>,
    alerts: Vec<Alert>,
) -> Vec<DeadLetter> {
    alerts
        .into_iter()
        .map(|alert| {
            let mut why = format!("{what}: {reason} after {} attempts", alert.attempts);
            if let Some(failure) = failing.filter(|_| alert.attempts > 0) {
                why.push_str(&format!(" (last: {failure})"));
            }
            DeadLetter {
                input: output.to_string(),
                position: format!("alert {}", key::hex(&alert.key)),
                reason: why,
                raw: alert.raw(),
            }
        })
        .collect()
}

/// The thread that delivers an outbox's alerts.
struct Worker {
    shared: Arc<Shared>,
    destination: Box<dyn Destination>,
    backoff: Backoff,
    outage: Outage,
    metrics: Arc<SinkMetrics>,
}

impl Worker {
    fn run(mut self) {
        while let Some(alerts) = self.next() {
            let outcome = self.destination.attempt(&alerts);
            if let Some(delay) = self.settle(alerts.len(), outcome)
                && !self.wait(delay)
            {
                return;
            }
        }
    }

    /// The deliverable alerts at the front, as many as an attempt
    /// carries, once there are some; `None` when told to end.
    fn next(&self) -> Option<Vec<Alert>> {
        let mut queue = self.shared.lock();
        loop {
            if queue.run == Run::Stop {
                return None;
            }
            let deliverable = queue.deliverable;
            let alerts: Vec<Alert> = queue
                .alerts
                .iter()
                .take_while(|(n, _)| *n <= deliverable)
                .take(self.destination.per_attempt())
                .map(|(_, a)| a.clone())
                .collect();
            if !alerts.is_empty() {
                queue.in_flight = alerts.len();
                return Some(alerts);
            }
            if queue.run == Run::Drain && queue.alerts.is_empty() {
                return None;
            }
            queue = self
                .shared
                .changed
                .wait(queue)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Records how the attempt of the `n` alerts at the front ended;
    /// returns the delay before the next attempt after a failure.
    fn settle(&mut self, n: usize, outcome: Outcome) -> Option<Duration> {
        let mut queue = self.shared.lock();
        let n = std::mem::take(&mut queue.in_flight).min(n);
        let settled = match outcome {
            Outcome::Delivered => {
                self.outage.succeeded();
                self.backoff.reset();
                queue.failing = None;
                let done = queue.alerts.drain(..n).count();
                self.metrics
                    .rows_written
                    .fetch_add(done as u64, Ordering::Relaxed);
                None
            }
            Outcome::Refused(reason) => {
                self.outage.succeeded();
                let refused: Vec<Alert> = queue.alerts.drain(..n).map(|(_, a)| a).collect();
                self.metrics
                    .failures
                    .fetch_add(refused.len() as u64, Ordering::Relaxed);
                let letters = dead_letters(
                    &self.shared.output,
                    self.destination.what(),
                    &format!("{reason} (refused: not retried)"),
                    None,
                    refused,
                );
                queue.dead.extend(letters);
                None
            }
            Outcome::Failed {
                reason,
                retry_after,
            } => {
                self.outage.failed(&reason);
                self.metrics.retries.fetch_add(1, Ordering::Relaxed);
                for (_, alert) in queue.alerts.iter_mut().take(n) {
                    alert.attempts = alert.attempts.saturating_add(1);
                }
                tracing::debug!(output = %self.shared.output, "{}: {reason}; retrying", self.destination.what());
                queue.failing = Some(reason);
                Some(retry_after.unwrap_or_else(|| self.backoff.next()))
            }
        };
        self.shared.changed.notify_all();
        settled
    }

    /// Waits `delay` before the next attempt; `false` when told to end.
    fn wait(&self, delay: Duration) -> bool {
        let queue = self.shared.lock();
        let (queue, _) = self
            .shared
            .changed
            .wait_timeout_while(queue, delay, |q| q.run != Run::Stop)
            .unwrap_or_else(|e| e.into_inner());
        queue.run != Run::Stop
    }
}

/// `VERSION`, then per alert: key (16 bytes), attempts (u32), body and
/// row (each a u32 length then the bytes; no row: length 0), little-endian.
fn encode<'a>(alerts: impl Iterator<Item = &'a Alert>) -> Vec<u8> {
    let mut out = vec![VERSION];
    for alert in alerts {
        out.extend_from_slice(&alert.key);
        out.extend(alert.attempts.to_le_bytes());
        for bytes in [&alert.body[..], alert.row.as_deref().unwrap_or_default()] {
            out.extend((bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
    }
    out
}

fn decode(state: &[u8]) -> Result<Vec<Alert>, EngineError> {
    let mut reader = match state.split_first() {
        Some((&VERSION, rest)) => Reader(rest),
        _ => return Err(damaged()),
    };
    let mut alerts = Vec::new();
    while !reader.0.is_empty() {
        let key = reader.take(16)?.try_into().map_err(|_| damaged())?;
        let attempts = reader.u32()?;
        let body = reader.bytes()?.to_vec();
        let row = reader.bytes()?;
        alerts.push(Alert {
            key,
            body,
            row: (!row.is_empty()).then(|| row.to_vec()),
            attempts,
        });
    }
    Ok(alerts)
}

fn damaged() -> EngineError {
    EngineError::State("a damaged alert outbox state".into())
}

/// Reads a state from its start.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EngineError> {
        let (head, tail) = self.0.split_at_checked(n).ok_or_else(damaged)?;
        self.0 = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, EngineError> {
        let bytes = self.take(4)?.try_into().map_err(|_| damaged())?;
        Ok(u32::from_le_bytes(bytes))
    }

    /// A u32 length, then as many bytes.
    fn bytes(&mut self) -> Result<&'a [u8], EngineError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(n: u8) -> Alert {
        Alert {
            key: [n; 16],
            body: format!("{{\"n\":{n}}}").into_bytes(),
            row: n.is_multiple_of(2).then(|| b"{\"row\":1}".to_vec()),
            attempts: u32::from(n),
        }
    }

    #[test]
    fn a_state_holds_its_alerts_and_a_damaged_one_is_refused() {
        let alerts: Vec<Alert> = (0..4).map(alert).collect();
        let state = encode(alerts.iter());
        assert_eq!(decode(&state).unwrap(), alerts);
        assert_eq!(decode(&encode([].iter())).unwrap(), vec![]);
        for cut in 1..state.len() {
            if let Ok(got) = decode(&state[..cut]) {
                // A cut between two alerts reads the ones before it.
                assert!(
                    got.len() < alerts.len() && got[..] == alerts[..got.len()],
                    "cut {cut}"
                );
            }
        }
        assert!(decode(&[]).is_err());
        assert!(decode(&[9]).is_err(), "another layout");
    }

    #[test]
    fn beyond_the_limit_the_oldest_become_dead_letters() {
        let metrics = Arc::new(SinkMetrics::default());
        let mut outbox = Outbox::new("a", "test", 3, Duration::ZERO, metrics.clone());
        outbox.push((0..5).map(alert).collect());
        let letters = outbox.take_dead_letters();
        assert_eq!(letters.len(), 2);
        assert_eq!(letters[0].position, format!("alert {}", key::hex(&[0; 16])));
        assert!(
            letters[1].reason.contains("outbox_limit = 3"),
            "{}",
            letters[1].reason
        );
        assert_eq!(metrics.failures.load(Ordering::Relaxed), 2);
        assert!(outbox.wants_checkpoint());
        let state = outbox.checkpoint();
        assert!(!outbox.wants_checkpoint());
        assert_eq!(
            decode(&state).unwrap(),
            (2..5).map(alert).collect::<Vec<_>>()
        );

        // The alerts of an attempt in progress stay; the next oldest go.
        outbox.shared.lock().in_flight = 2;
        outbox.push(vec![alert(5), alert(6)]);
        let kept: Vec<u8> = outbox
            .shared
            .lock()
            .alerts
            .iter()
            .map(|(_, a)| a.key[0])
            .collect();
        assert_eq!(kept, vec![2, 3, 6]);
    }
}
