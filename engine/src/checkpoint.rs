//! Checkpoints: a job's operator state, its inputs' read positions and its
//! outputs' commit state, taken together and written atomically to a state
//! folder, so that a restarted job resumes where the last one left off.
//!
//! A checkpoint file is `chk-<id>.iotql`: the magic `IOTQLCK1`, then
//! length-prefixed sections (a JSON header, the operators' states, the
//! sources' positions, the sinks' states), then an xxHash3-64 of everything
//! before it. It is written to a temporary file, synced, and renamed into
//! place, so a crash leaves either the whole new checkpoint or none; a file
//! whose checksum does not match (a torn disk write, a truncated copy) is
//! skipped with a warning and the previous checkpoint is used. The newest
//! [`KEEP`] checkpoints are kept.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use twox_hash::XxHash3_64;

use crate::error::EngineError;

const MAGIC: &[u8; 8] = b"IOTQLCK1";
const SUFFIX: &str = ".iotql";
/// How many checkpoints the store keeps: the newest and the ones before it,
/// to fall back on when the newest is damaged.
pub const KEEP: usize = 3;

/// What a checkpoint says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Increases by one with every checkpoint of a job.
    pub id: u64,
    /// The fingerprint of the job that took it ([`fingerprint`]): a
    /// checkpoint of another query is refused.
    pub fingerprint: String,
    /// Wall-clock time it was taken, milliseconds since the epoch.
    pub taken_at_ms: i64,
}

/// A job's state at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub header: Header,
    /// [`crate::dataflow::Dataflow::snapshot`].
    pub operators: Vec<Vec<u8>>,
    /// Each input's read position, in the source's own encoding.
    pub sources: BTreeMap<String, Vec<u8>>,
    /// Each output's commit state, in the sink's own encoding.
    pub sinks: BTreeMap<String, Vec<u8>>,
}

/// Joins byte sections, each prefixed with its length: the layout of
/// checkpoint files, for operators' and sinks' states too.
pub fn sections(parts: &[Vec<u8>]) -> Vec<u8> {
    crate::window::ipc::sections(parts)
}

/// Splits what [`sections`] joined; a truncated section is an error.
pub fn split_sections(bytes: &[u8]) -> Result<Vec<&[u8]>, EngineError> {
    crate::window::ipc::split_sections(bytes)
}

fn damaged(why: impl std::fmt::Display) -> EngineError {
    EngineError::State(format!("damaged checkpoint: {why}"))
}

fn named(map: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let parts: Vec<Vec<u8>> = map
        .iter()
        .flat_map(|(k, v)| [k.as_bytes().to_vec(), v.clone()])
        .collect();
    sections(&parts)
}

fn unnamed(bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, EngineError> {
    let parts = split_sections(bytes)?;
    if parts.len() % 2 != 0 {
        return Err(damaged("a name without its state"));
    }
    parts
        .chunks(2)
        .map(|pair| {
            let name = std::str::from_utf8(pair[0]).map_err(damaged)?;
            Ok((name.to_string(), pair[1].to_vec()))
        })
        .collect()
}

impl Checkpoint {
    /// The bytes of the checkpoint file.
    pub fn encode(&self) -> Result<Vec<u8>, EngineError> {
        let header =
            serde_json::to_vec(&self.header).map_err(|e| EngineError::State(e.to_string()))?;
        let mut out = MAGIC.to_vec();
        out.extend(sections(&[
            header,
            sections(&self.operators),
            named(&self.sources),
            named(&self.sinks),
        ]));
        let sum = XxHash3_64::oneshot(&out);
        out.extend(sum.to_le_bytes());
        Ok(out)
    }

    /// Reads what [`Checkpoint::encode`] wrote; a wrong checksum, magic or
    /// layout is an error.
    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, EngineError> {
        if bytes.len() < MAGIC.len() + 8 || !bytes.starts_with(MAGIC) {
            return Err(damaged("not an iotql checkpoint"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        let sum = u64::from_le_bytes(sum.try_into().map_err(damaged)?);
        if XxHash3_64::oneshot(body) != sum {
            return Err(damaged("checksum mismatch (torn or truncated write)"));
        }
        let parts = split_sections(&body[MAGIC.len()..])?;
        let [header, operators, sources, sinks] = parts[..] else {
            return Err(damaged(format!("{} sections, expected 4", parts.len())));
        };
        Ok(Checkpoint {
            header: serde_json::from_slice(header).map_err(damaged)?,
            operators: split_sections(operators)?
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect(),
            sources: unnamed(sources)?,
            sinks: unnamed(sinks)?,
        })
    }
}

/// The fingerprint of a job for its checkpoints: a hash of the job's
/// statements in canonical form (comments, spacing and the connectors of
/// CREATE INPUT/OUTPUT do not count) and of anything else that shapes its
/// state (the time policy), as given in `parts`.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut joined = Vec::new();
    for p in parts {
        joined.extend((p.len() as u64).to_le_bytes());
        joined.extend(p.as_bytes());
    }
    format!("{:016x}", XxHash3_64::oneshot(&joined))
}

/// The checkpoints of one job, in a folder of their own.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
}

/// A checkpoint read back, and the newer ones that could not be read.
#[derive(Debug)]
pub struct Recovered {
    pub checkpoint: Checkpoint,
    pub path: PathBuf,
    /// Newer checkpoint files that were damaged, with why: the job says so.
    pub skipped: Vec<(PathBuf, String)>,
}

impl CheckpointStore {
    /// The store in `dir`, created if missing.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, EngineError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        Ok(CheckpointStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The checkpoint files, oldest first.
    fn files(&self) -> Result<Vec<(u64, PathBuf)>, EngineError> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| io_error(&self.dir, e))? {
            let path = entry.map_err(|e| io_error(&self.dir, e))?.path();
            let id = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("chk-"))
                .and_then(|n| n.strip_suffix(SUFFIX))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(id) = id {
                files.push((id, path));
            }
        }
        files.sort();
        Ok(files)
    }

    /// Writes `checkpoint` atomically (temporary file, fsync, rename, fsync
    /// of the folder) and removes all but the newest [`KEEP`].
    pub fn save(&self, checkpoint: &Checkpoint) -> Result<PathBuf, EngineError> {
        let bytes = checkpoint.encode()?;
        let path = self
            .dir
            .join(format!("chk-{:020}{SUFFIX}", checkpoint.header.id));
        let tmp = self
            .dir
            .join(format!(".chk-{:020}.tmp", checkpoint.header.id));
        {
            let mut file = File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
            file.write_all(&bytes).map_err(|e| io_error(&tmp, e))?;
            file.sync_all().map_err(|e| io_error(&tmp, e))?;
        }
        fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))?;
        sync_dir(&self.dir)?;
        let files = self.files()?;
        for (_, old) in files.iter().take(files.len().saturating_sub(KEEP)) {
            fs::remove_file(old).map_err(|e| io_error(old, e))?;
        }
        Ok(path)
    }

    /// The newest checkpoint that reads back whole, if any; damaged newer
    /// ones are listed in [`Recovered::skipped`]. Leftover temporary files of
    /// an interrupted save are removed.
    pub fn latest(&self) -> Result<Option<Recovered>, EngineError> {
        self.latest_where(|_| Ok(None))
    }

    /// The newest checkpoint that reads back whole and that `refuse` does
    /// not refuse (`Some(why)`: the outputs cannot resume from it, as a
    /// Kafka transaction it counted on was aborted); damaged and refused
    /// newer ones are listed in [`Recovered::skipped`].
    pub fn latest_where(
        &self,
        mut refuse: impl FnMut(&Checkpoint) -> Result<Option<String>, EngineError>,
    ) -> Result<Option<Recovered>, EngineError> {
        for entry in fs::read_dir(&self.dir).map_err(|e| io_error(&self.dir, e))? {
            let path = entry.map_err(|e| io_error(&self.dir, e))?.path();
            if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".chk-") && n.ends_with(".tmp"))
            {
                fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
            }
        }
        let mut skipped = Vec::new();
        for (_, path) in self.files()?.into_iter().rev() {
            let read = fs::read(&path)
                .map_err(|e| io_error(&path, e))
                .and_then(|bytes| Checkpoint::decode(&bytes));
            match read {
                Ok(checkpoint) => match refuse(&checkpoint)? {
                    None => {
                        return Ok(Some(Recovered {
                            checkpoint,
                            path,
                            skipped,
                        }));
                    }
                    Some(why) => skipped.push((path, why)),
                },
                Err(e) => skipped.push((path, e.to_string())),
            }
        }
        if skipped.is_empty() {
            Ok(None)
        } else {
            Err(EngineError::State(format!(
                "no checkpoint in {} can be resumed from: {}",
                self.dir.display(),
                skipped
                    .iter()
                    .map(|(p, e)| format!("{}: {e}", p.display()))
                    .collect::<Vec<_>>()
                    .join("; ")
            )))
        }
    }

    /// Removes every checkpoint (a fresh start).
    pub fn clear(&self) -> Result<(), EngineError> {
        for (_, path) in self.files()? {
            fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
        }
        Ok(())
    }
}

fn io_error(path: &Path, e: std::io::Error) -> EngineError {
    EngineError::State(format!("{}: {e}", path.display()))
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), EngineError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: u64) -> Checkpoint {
        Checkpoint {
            header: Header {
                id,
                fingerprint: fingerprint(&["SELECT 1", "out_of_order=0s"]),
                taken_at_ms: 1_767_225_600_000,
            },
            operators: vec![vec![1, 2, 3], Vec::new(), vec![9; 100]],
            sources: BTreeMap::from([("readings".to_string(), 42u64.to_le_bytes().to_vec())]),
            sinks: BTreeMap::from([
                ("alerts".to_string(), b"file 3".to_vec()),
                ("stats".to_string(), Vec::new()),
            ]),
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let c = sample(7);
        assert_eq!(
            Checkpoint::decode(&c.encode().expect("encode")).expect("decode"),
            c
        );
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_detected() {
        let bytes = sample(1).encode().expect("encode");
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(
                Checkpoint::decode(&bad).is_err(),
                "flip at {i} not detected"
            );
        }
        for len in 0..bytes.len() {
            assert!(
                Checkpoint::decode(&bytes[..len]).is_err(),
                "cut at {len} not detected"
            );
        }
    }

    #[test]
    fn fingerprint_separates_parts() {
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
        assert_eq!(fingerprint(&["a"]), fingerprint(&["a"]));
    }

    #[test]
    fn store_keeps_the_newest_and_falls_back_over_a_damaged_one() {
        let dir = std::env::temp_dir().join(format!("iotql-chk-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = CheckpointStore::open(&dir).expect("open");
        assert!(store.latest().expect("empty").is_none());
        for id in 1..=5 {
            store.save(&sample(id)).expect("save");
        }
        assert_eq!(store.files().expect("files").len(), KEEP);
        let newest = store.latest().expect("latest").expect("some");
        assert_eq!(newest.checkpoint.header.id, 5);
        assert!(newest.skipped.is_empty());

        // A torn write of the newest: the one before it is used, and named.
        let bytes = fs::read(&newest.path).expect("read");
        fs::write(&newest.path, &bytes[..bytes.len() / 2]).expect("truncate");
        fs::write(dir.join(".chk-00000000000000000006.tmp"), b"half").expect("tmp");
        let back = store.latest().expect("latest").expect("some");
        assert_eq!(back.checkpoint.header.id, 4);
        assert_eq!(back.skipped.len(), 1);
        assert!(back.skipped[0].1.contains("checksum"), "{:?}", back.skipped);
        assert!(!dir.join(".chk-00000000000000000006.tmp").exists());

        // A checkpoint the outputs refuse (an aborted Kafka transaction)
        // is passed over for the one before it.
        let refused = store
            .latest_where(|c| Ok((c.header.id == 4).then(|| "not committed".to_string())))
            .expect("latest")
            .expect("some");
        assert_eq!(refused.checkpoint.header.id, 3);
        assert_eq!(refused.skipped.len(), 2);
        assert_eq!(refused.skipped[1].1, "not committed");

        // Nothing readable at all is an error, not a silent fresh start.
        for (_, p) in store.files().expect("files") {
            fs::write(&p, b"IOTQLCK1 garbage").expect("damage");
        }
        assert!(store.latest().is_err());
        store.clear().expect("clear");
        assert!(store.latest().expect("cleared").is_none());
        let _ = fs::remove_dir_all(&dir);
    }
}
