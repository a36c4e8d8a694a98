//! `log:PATH`: an append-only JSON-lines alert log. The file is opened for
//! appending (created with its folder, never truncated), so that every run's
//! alerts stay. Rows are buffered and written, then synced to the disk, when
//! `batch_size` rows wait, when the oldest has waited `max_latency`, on
//! `flush` and at the end.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use iotql_engine::arrow::datatypes::SchemaRef;
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::error::EngineError;
use iotql_engine::io::{Sink, SinkMetrics};

use super::Options;

pub(super) const OPTIONS: &[&str] = &["path", "max_latency", "batch_size"];

/// An alert log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOutput {
    pub path: PathBuf,
    /// The longest a row waits in memory before it is written.
    pub max_latency: Duration,
    /// Rows that are written together.
    pub batch_size: usize,
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
        })
    }
}

/// Appends rows to an alert log. See the module documentation.
#[derive(Debug)]
pub struct LogSink {
    name: String,
    output: LogOutput,
    file: Option<File>,
    /// JSON lines not yet written.
    pending: Vec<u8>,
    pending_rows: u64,
    /// When the oldest pending row came.
    since: Option<Instant>,
    metrics: Arc<SinkMetrics>,
}

impl LogSink {
    pub fn new(name: &str, output: LogOutput) -> Self {
        LogSink {
            name: name.to_string(),
            output,
            file: None,
            pending: Vec::new(),
            pending_rows: 0,
            since: None,
            metrics: Arc::new(SinkMetrics::default()),
        }
    }

    fn error(&self, message: impl ToString) -> EngineError {
        EngineError::Sink {
            output: self.name.clone(),
            message: message.to_string(),
        }
    }

    /// Writes the pending rows and syncs them to the disk.
    fn persist(&mut self) -> Result<(), EngineError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let path = self.output.path.display().to_string();
        let file = self.file.as_mut().ok_or_else(|| {
            EngineError::Internal("alert log written before it was started".into())
        })?;
        file.write_all(&self.pending)
            .and_then(|()| file.sync_data())
            .map_err(|e| EngineError::Sink {
                output: self.name.clone(),
                message: format!("cannot append to {path}: {e}"),
            })?;
        self.metrics
            .rows_written
            .fetch_add(self.pending_rows, Ordering::Relaxed);
        self.pending.clear();
        self.pending_rows = 0;
        self.since = None;
        Ok(())
    }

    fn due(&self) -> bool {
        self.pending_rows >= self.output.batch_size as u64
            || self
                .since
                .is_some_and(|t| t.elapsed() >= self.output.max_latency)
    }
}

impl Sink for LogSink {
    /// Opens the log for appending, creating it and its folder.
    fn start(&mut self, _schema: &SchemaRef) -> Result<(), EngineError> {
        let path = &self.output.path;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| self.error(format!("cannot create {}: {e}", dir.display())))?;
        }
        let file = File::options()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| self.error(format!("cannot open {} to append: {e}", path.display())))?;
        self.file = Some(file);
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let lines = crate::file::jsonl::json_lines(batch).map_err(|e| self.error(e))?;
        self.pending.extend_from_slice(&lines);
        self.pending_rows += batch.num_rows() as u64;
        self.since.get_or_insert_with(Instant::now);
        if self.due() { self.persist() } else { Ok(()) }
    }

    fn tick(&mut self) -> Result<(), EngineError> {
        if self.due() { self.persist() } else { Ok(()) }
    }

    fn flush(&mut self) -> Result<(), EngineError> {
        self.persist()
    }

    fn finish(&mut self) -> Result<(), EngineError> {
        self.persist()?;
        self.file = None;
        Ok(())
    }

    fn metrics(&self) -> Option<Arc<SinkMetrics>> {
        Some(self.metrics.clone())
    }
}
