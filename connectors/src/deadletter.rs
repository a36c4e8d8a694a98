//! The dead-letter output: every refused event, one JSON object a line,
//! with the input, the position, the reason and the event as read.
//! The file is created with the first dead letter, not before.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use iotql_engine::operator::DeadLetter;

/// Sorts the dead letters of one batch into input order: those refused while
/// reading and those refused by TIMESTAMP BY come from the same lines.
pub fn in_input_order(letters: &mut [DeadLetter]) {
    let line = |d: &DeadLetter| {
        d.position
            .strip_prefix("line ")
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(u64::MAX)
    };
    letters.sort_by_key(|d| line(d));
}

#[derive(Debug)]
pub struct DeadLetterWriter {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    /// Dead letters written; shared with whoever shows it live.
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl DeadLetterWriter {
    pub fn new(path: PathBuf) -> Self {
        DeadLetterWriter {
            path,
            file: None,
            count: Default::default(),
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The count of dead letters written, as it grows (the HTTP server's).
    pub fn counter(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        self.count.clone()
    }

    pub fn write(&mut self, letters: &[DeadLetter]) -> std::io::Result<()> {
        if letters.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.file = Some(BufWriter::new(f));
        }
        if let Some(f) = self.file.as_mut() {
            for letter in letters {
                serde_json::to_writer(&mut *f, letter)?;
                f.write_all(b"\n")?;
                self.count
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }

    /// Makes the dead letters written so far durable and returns the
    /// file's length, for a checkpoint (0 when there is no file yet).
    pub fn checkpoint(&mut self) -> std::io::Result<u64> {
        if let Some(f) = self.file.as_mut() {
            f.flush()?;
            f.get_ref().sync_data()?;
        }
        match std::fs::metadata(&self.path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Cuts the file back to `len` bytes (what a checkpoint recorded): the
    /// dead letters of events after the checkpoint are written again by the
    /// resumed job, once.
    pub fn recover(&mut self, len: u64) -> std::io::Result<()> {
        self.file = None;
        match OpenOptions::new().write(true).open(&self.path) {
            Ok(f) if f.metadata()?.len() > len => f.set_len(len),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}
