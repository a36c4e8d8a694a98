//! `log:PATH`: an append-only JSON-lines alert log. The file is opened for
//! appending (created with its folder, never truncated), so that every run's
//! alerts stay. Each line is the row as the jsonl output writes it, with
//! the alert's `idempotency_key`. Without checkpoints, rows are held and
//! written, then synced to the disk, when `batch_size` rows wait, when the
//! oldest has waited `max_latency`, on `flush` and at the end; with
//! checkpoints, through the outbox (written once the checkpoint that
//! records them is durable; a disk error is retried).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::sink::{AlertSink, Body};
use super::{Alert, AlertOptions, Destination, Direct, Options, Outcome};
use crate::backoff::Backoff;

pub(super) const OPTIONS: &[&str] = &["path", "max_latency", "batch_size"];

/// An alert log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOutput {
    pub path: PathBuf,
    /// The longest a row waits in memory before it is written.
    pub max_latency: Duration,
    /// Rows that are written together.
    pub batch_size: usize,
    pub alert: AlertOptions,
}

impl LogOutput {
    pub(super) fn take(options: &mut Options, base: &Path) -> Result<Self, String> {
        let path = options
            .take("path")
            .filter(|p| !p.trim().is_empty())
            .ok_or("the `log` connector needs `path = '...'` (a JSON-lines file)")?;
        let batch_size = options.number("batch_size", 1000)?;
        if batch_size == 0 {
            return Err("batch_size = '0': write at least 1".into());
        }
        Ok(LogOutput {
            path: base.join(path),
            max_latency: options.duration("max_latency", Duration::from_millis(200))?,
            batch_size,
            alert: AlertOptions::take(options)?,
        })
    }
}

/// The sink of an alert log.
pub(super) fn open(name: &str, output: &LogOutput) -> AlertSink {
    let file = LogFile {
        what: format!("alert log {}", output.path.display()),
        output: output.clone(),
        file: None,
    };
    AlertSink::new(name, Body::Json, &output.alert, Box::new(file))
}

/// The log file as a destination: an attempt appends lines and syncs them.
#[derive(Debug)]
struct LogFile {
    what: String,
    output: LogOutput,
    file: Option<File>,
}

impl LogFile {
    fn append(&mut self, alerts: &[Alert]) -> std::io::Result<()> {
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(append_to(&self.output.path)?),
        };
        let mut lines = Vec::with_capacity(alerts.iter().map(|a| a.body.len() + 1).sum());
        for alert in alerts {
            lines.extend_from_slice(&alert.body);
            lines.push(b'\n');
        }
        let written = file.write_all(&lines).and_then(|()| file.sync_data());
        if written.is_err() {
            // Opened again for the next attempt.
            self.file = None;
        }
        written
    }
}

/// Opens `path` for appending, creating it and its folder.
fn append_to(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    File::options().create(true).append(true).open(path)
}

impl Destination for LogFile {
    fn what(&self) -> &str {
        &self.what
    }

    fn per_attempt(&self) -> usize {
        self.output.batch_size
    }

    fn open(&mut self) -> Result<(), String> {
        let path = &self.output.path;
        let file = append_to(path)
            .map_err(|e| format!("cannot open {} to append: {e}", path.display()))?;
        self.file = Some(file);
        Ok(())
    }

    fn attempt(&mut self, alerts: &[Alert]) -> Outcome {
        match self.append(alerts) {
            Ok(()) => Outcome::Delivered,
            Err(e) => Outcome::Failed {
                reason: format!("cannot append to {}: {e}", self.output.path.display()),
                retry_after: None,
            },
        }
    }

    /// A disk that fails (full, gone): 1 s doubling to 30 s.
    fn backoff(&self) -> Backoff {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(30)).with_jitter()
    }

    fn direct(&self) -> Direct {
        Direct::Batch {
            batch_size: self.output.batch_size,
            max_latency: self.output.max_latency,
        }
    }
}
