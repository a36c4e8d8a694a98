//! The Parquet output: rows written to rolling Parquet files in a folder,
//! optionally split into Hive-style partition folders (`device=d1/`,
//! `date=2026-01-01/hour=13/`), for DataFusion, DuckDB, pandas and Spark to
//! read while the job runs.
//!
//! A file is written under a hidden temporary name (`.part-...inprogress`)
//! and renamed to `part-....parquet` only once it is complete and synced, so
//! a reader listing the folder never sees half a file. See `docs/parquet.md`.

mod partition;
mod sink;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use partition::PartitionKey;
pub use sink::ParquetSink;

/// Rows per file before it is closed and a new one begun.
pub const DEFAULT_MAX_ROWS: usize = 1_000_000;
/// How long a file stays open (wall clock) before it is closed.
pub const DEFAULT_ROLL_INTERVAL: Duration = Duration::from_secs(3600);
/// Rows per row group: a row group is held in memory until it is full, once
/// per open file (one per partition folder), so this bounds memory; DuckDB
/// uses about the same (122,880).
pub const DEFAULT_ROW_GROUP_SIZE: usize = 100_000;

/// The options of a Parquet output (`connector = 'parquet'`).
const OPTIONS: &[&str] = &[
    "connector",
    "path",
    "partition_by",
    "max_rows",
    "roll_interval",
    "row_group_size",
    "compression",
];

/// How the pages of a file are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Zstandard at this level (1 to 22).
    Zstd(u32),
    Uncompressed,
}

impl Codec {
    /// `zstd`, `zstd(N)`, `uncompressed` (or `none`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim().to_ascii_lowercase();
        let level = t
            .strip_prefix("zstd(")
            .and_then(|rest| rest.strip_suffix(')'));
        match (t.as_str(), level) {
            ("zstd", _) => Ok(Codec::Zstd(1)),
            ("uncompressed" | "none", _) => Ok(Codec::Uncompressed),
            (_, Some(n)) => match n.trim().parse::<u32>() {
                Ok(level @ 1..=22) => Ok(Codec::Zstd(level)),
                _ => Err(format!("compression `{text}`: the zstd level is 1 to 22")),
            },
            _ => Err(format!(
                "compression `{text}`: write zstd, zstd(LEVEL) or uncompressed"
            )),
        }
    }
}

/// A Parquet output: where, how it is partitioned, when files roll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetOutput {
    /// The folder the files (and partition folders) go in.
    pub dir: PathBuf,
    pub partition_by: Vec<PartitionKey>,
    /// A file is closed when it has this many rows.
    pub max_rows: usize,
    /// A file is closed when it has been open this long.
    pub roll_interval: Duration,
    pub row_group_size: usize,
    pub compression: Codec,
}

impl ParquetOutput {
    /// From `DIR?partition_by=...&max_rows=...` (after `parquet:`); the
    /// folder is relative to the working directory.
    pub fn from_uri(rest: &str) -> Result<Self, String> {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut options: BTreeMap<String, String> =
            crate::endpoint::query_pairs(query)?.into_iter().collect();
        if options.contains_key("path") {
            return Err(format!(
                "`parquet:{rest}`: the folder comes before the `?`, not as path=..."
            ));
        }
        options.insert("path".into(), path.to_string());
        Self::from_options(&options, Path::new(""))
    }

    /// From a declaration's options (`connector = 'parquet', path = 'DIR'`);
    /// a relative folder is relative to `base` (the job file's folder).
    pub fn from_options(options: &BTreeMap<String, String>, base: &Path) -> Result<Self, String> {
        if let Some(unknown) = options.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
            return Err(format!(
                "unknown Parquet option `{unknown}` (the options are {})",
                OPTIONS[1..].join(", ")
            ));
        }
        let dir = options
            .get("path")
            .filter(|p| !p.trim().is_empty())
            .ok_or("the `parquet` connector needs `path = 'FOLDER'` (in a URI: parquet:FOLDER)")?;
        Ok(ParquetOutput {
            dir: PathBuf::from(crate::endpoint::resolve(dir, base)),
            partition_by: match options.get("partition_by") {
                Some(spec) => PartitionKey::parse_list(spec)?,
                None => Vec::new(),
            },
            max_rows: crate::endpoint::count_option(options, "max_rows")?
                .unwrap_or(DEFAULT_MAX_ROWS),
            roll_interval: match options.get("roll_interval") {
                None => DEFAULT_ROLL_INTERVAL,
                Some(text) => match iotql_engine::time::parse_duration(text)? {
                    Duration::ZERO => return Err("roll_interval must be more than 0".into()),
                    d => d,
                },
            },
            row_group_size: crate::endpoint::count_option(options, "row_group_size")?
                .unwrap_or(DEFAULT_ROW_GROUP_SIZE),
            compression: match options.get("compression") {
                Some(c) => Codec::parse(c)?,
                None => Codec::Zstd(1),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::options;

    #[test]
    fn a_uri_gives_the_folder_and_options() {
        let o = ParquetOutput::from_uri(
            "out/alerts?partition_by=deviceId,%20date(windowEnd)&max_rows=500&roll_interval=10m",
        )
        .expect("uri");
        assert_eq!(o.dir, PathBuf::from("out/alerts"));
        assert_eq!(
            o.partition_by,
            vec![
                PartitionKey::Column("deviceId".into()),
                PartitionKey::Date("windowEnd".into())
            ]
        );
        assert_eq!(o.max_rows, 500);
        assert_eq!(o.roll_interval, Duration::from_secs(600));
        assert_eq!(o.row_group_size, DEFAULT_ROW_GROUP_SIZE);
        assert_eq!(o.compression, Codec::Zstd(1));
    }

    #[test]
    fn declared_folders_are_relative_to_the_job_file() {
        let o = ParquetOutput::from_options(
            &options(&[("connector", "parquet"), ("path", "out")]),
            Path::new("/jobs"),
        )
        .expect("options");
        assert_eq!(o.dir, PathBuf::from("/jobs/out"));
    }

    #[test]
    fn bad_options_are_refused_with_what_to_write() {
        let err = |pairs: &[(&str, &str)]| {
            ParquetOutput::from_options(&options(pairs), Path::new("")).expect_err("refused")
        };
        assert!(
            err(&[("path", "o"), ("max_row", "5")]).contains("unknown Parquet option `max_row`")
        );
        assert!(err(&[("connector", "parquet")]).contains("needs `path"));
        assert!(err(&[("path", "o"), ("max_rows", "0")]).contains("above 0"));
        assert!(err(&[("path", "o"), ("roll_interval", "0s")]).contains("more than 0"));
        assert!(err(&[("path", "o"), ("compression", "snappy")]).contains("zstd"));
        assert!(err(&[("path", "o"), ("compression", "zstd(30)")]).contains("1 to 22"));
        assert!(err(&[("path", "o"), ("partition_by", "month(t)")]).contains("month"));
    }

    #[test]
    fn compression_levels_parse() {
        assert_eq!(Codec::parse("ZSTD(3)"), Ok(Codec::Zstd(3)));
        assert_eq!(Codec::parse("none"), Ok(Codec::Uncompressed));
    }
}
