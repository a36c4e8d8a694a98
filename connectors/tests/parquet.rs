//! The Parquet output on real files in a temporary folder, read back with
//! DataFusion as a listing table (with partition columns), the way users
//! query the output.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use datafusion::arrow::array::{
    Array, ArrayRef, Float64Array, ListArray, StringArray, StructArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use iotql_connectors::endpoint::{open_sink, output_from_options, parse_output_uri};
use iotql_engine::io::Sink;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{LogicalType, TimeUnit as ParquetTimeUnit};

/// 2026-01-01T00:00:00Z in microseconds.
const NEW_YEAR: i64 = 1_767_225_600_000_000;
const HOUR: i64 = 3_600_000_000;

/// A sink for `uri`, started with `schema`.
fn sink(uri: &str, schema: &Arc<Schema>) -> Box<dyn Sink> {
    let mut sink = open_sink("out", &parse_output_uri(uri).unwrap());
    sink.start(schema).unwrap();
    sink
}

fn readings_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("deviceId", DataType::Utf8, true),
        Field::new(
            "windowEnd",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
        Field::new("avgTemp", DataType::Float64, true),
    ]))
}

/// Readings `first..first + n`: device `d{i % 2}`, one hour apart from
/// 2026-01-01T00:00Z, temperature `i`.
fn readings(first: usize, n: usize) -> RecordBatch {
    let rows = first..first + n;
    RecordBatch::try_new(
        readings_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.clone().map(|i| format!("d{}", i % 2)),
            )),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                rows.clone().map(|i| NEW_YEAR + i as i64 * HOUR),
            )),
            Arc::new(Float64Array::from_iter_values(rows.map(|i| i as f64))),
        ],
    )
    .unwrap()
}

/// The complete files under `dir` (partition folders too), relative, sorted.
fn parquet_files(dir: &Path) -> Vec<String> {
    files_where(dir, |name| name.ends_with(".parquet"))
}

fn in_progress_files(dir: &Path) -> Vec<String> {
    files_where(dir, |name| name.ends_with(".inprogress"))
}

fn files_where(dir: &Path, keep: impl Fn(&str) -> bool + Copy) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            found.extend(
                files_where(&path, keep)
                    .into_iter()
                    .map(|f| format!("{name}/{f}")),
            );
        } else if keep(&name) {
            found.push(name);
        }
    }
    found.sort();
    found
}

/// The rows of a file, read with the parquet crate.
fn file_rows(path: &Path) -> usize {
    let file = std::fs::File::open(path).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    builder.metadata().file_metadata().num_rows() as usize
}

/// Runs `sql` over the folder `dir`, registered as the table `t` with the
/// given partition columns (text), and gives each row as `a|b|c`, sorted.
fn query(dir: &Path, partitions: &[&str], sql: &str) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ctx = SessionContext::new();
        let partition_cols = partitions
            .iter()
            .map(|p| (p.to_string(), DataType::Utf8))
            .collect();
        let options = ParquetReadOptions::default().table_partition_cols(partition_cols);
        ctx.register_parquet("t", dir.to_str().unwrap(), options)
            .await
            .unwrap();
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        rows(&batches)
    })
}

fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c, &FormatOptions::default()).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            rows.push(cells.join("|"));
        }
    }
    rows.sort();
    rows
}

/// The rows `readings(0, n)` as DataFusion prints them.
fn expected_readings(n: usize) -> Vec<String> {
    let mut rows: Vec<String> = (0..n)
        .map(|i| {
            let t = chrono::DateTime::from_timestamp_micros(NEW_YEAR + i as i64 * HOUR).unwrap();
            format!("d{}|{}|{}.0", i % 2, t.format("%Y-%m-%dT%H:%M:%SZ"), i)
        })
        .collect();
    rows.sort();
    rows
}

fn rows_written(sink: &dyn Sink) -> u64 {
    sink.metrics().unwrap().rows_written.load(Ordering::Relaxed)
}

#[test]
fn files_roll_by_row_count_and_hold_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut sink = sink(
        &format!("parquet:{}?max_rows=4", out.display()),
        &readings_schema(),
    );
    for first in [0, 3, 6, 9] {
        sink.write(&readings(first, 3)).unwrap();
    }
    // 12 rows: three full files; only complete files count as written.
    assert_eq!(parquet_files(&out).len(), 3);
    assert_eq!(rows_written(sink.as_ref()), 12);
    assert!(in_progress_files(&out).is_empty());
    sink.write(&readings(12, 2)).unwrap();
    assert_eq!(rows_written(sink.as_ref()), 12);
    sink.finish().unwrap();

    let files = parquet_files(&out);
    let sizes: Vec<usize> = files.iter().map(|f| file_rows(&out.join(f))).collect();
    assert_eq!(sizes, vec![4, 4, 4, 2], "files in name order: {files:?}");
    assert_eq!(rows_written(sink.as_ref()), 14);
    assert!(in_progress_files(&out).is_empty());
    assert_eq!(
        query(
            &out,
            &[],
            "SELECT \"deviceId\", \"windowEnd\", \"avgTemp\" FROM t"
        ),
        expected_readings(14)
    );
}

#[test]
fn datetimes_are_stored_as_utc_microsecond_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(
        &format!("parquet:{}", dir.path().display()),
        &readings_schema(),
    );
    sink.write(&readings(0, 1)).unwrap();
    sink.finish().unwrap();
    let file = std::fs::File::open(dir.path().join(&parquet_files(dir.path())[0])).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    assert_eq!(
        builder.parquet_schema().column(1).logical_type_ref(),
        Some(&LogicalType::timestamp(true, ParquetTimeUnit::MICROS))
    );
    assert_eq!(
        builder.schema().field(1).data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
}

#[test]
fn files_roll_by_time_on_tick_and_on_write() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("parquet:{}?roll_interval=50ms", dir.path().display());
    let mut sink = sink(&uri, &readings_schema());
    sink.write(&readings(0, 3)).unwrap();
    assert!(parquet_files(dir.path()).is_empty());
    std::thread::sleep(Duration::from_millis(80));
    sink.tick().unwrap();
    assert_eq!(
        parquet_files(dir.path()).len(),
        1,
        "tick closes an old file"
    );
    assert_eq!(rows_written(sink.as_ref()), 3);

    sink.write(&readings(3, 2)).unwrap();
    std::thread::sleep(Duration::from_millis(80));
    sink.write(&readings(5, 1)).unwrap();
    assert_eq!(
        parquet_files(dir.path()).len(),
        2,
        "a write closes an old file"
    );
    assert_eq!(in_progress_files(dir.path()).len(), 1);
    sink.finish().unwrap();

    let files = parquet_files(dir.path());
    let sizes: Vec<usize> = files
        .iter()
        .map(|f| file_rows(&dir.path().join(f)))
        .collect();
    assert_eq!(sizes, vec![3, 2, 1]);
    assert_eq!(
        query(dir.path(), &[], "SELECT * FROM t"),
        expected_readings(6)
    );
}

#[test]
fn flush_completes_the_open_file_and_makes_no_empty_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(
        &format!("parquet:{}", dir.path().display()),
        &readings_schema(),
    );
    sink.write(&readings(0, 2)).unwrap();
    sink.flush().unwrap();
    assert_eq!(parquet_files(dir.path()).len(), 1);
    assert_eq!(rows_written(sink.as_ref()), 2);
    sink.flush().unwrap();
    sink.tick().unwrap();
    sink.finish().unwrap();
    assert_eq!(parquet_files(dir.path()).len(), 1);
    assert!(in_progress_files(dir.path()).is_empty());
}

#[test]
fn partitioned_rows_go_to_hive_folders_and_read_back_with_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!(
        "parquet:{}?partition_by=deviceId,date(windowEnd)",
        dir.path().display()
    );
    let mut sink = sink(&uri, &readings_schema());
    // 30 hours from 2026-01-01T00:00Z: two devices, two dates.
    sink.write(&readings(0, 30)).unwrap();
    sink.finish().unwrap();

    let folders: Vec<String> = parquet_files(dir.path())
        .iter()
        .map(|f| f.rsplit_once('/').unwrap().0.to_string())
        .collect();
    assert_eq!(
        folders,
        vec![
            "deviceId=d0/date=2026-01-01",
            "deviceId=d0/date=2026-01-02",
            "deviceId=d1/date=2026-01-01",
            "deviceId=d1/date=2026-01-02",
        ]
    );
    // The partition column is in the folder names, not in the files.
    let first = dir.path().join(&parquet_files(dir.path())[0]);
    let file = std::fs::File::open(first).unwrap();
    let schema = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .schema()
        .clone();
    let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(columns, vec!["windowEnd", "avgTemp"]);

    let partitions = ["deviceId", "date"];
    assert_eq!(
        query(
            dir.path(),
            &partitions,
            "SELECT \"deviceId\", \"windowEnd\", \"avgTemp\" FROM t"
        ),
        expected_readings(30)
    );
    assert_eq!(
        query(
            dir.path(),
            &partitions,
            "SELECT \"deviceId\", count(*) FROM t WHERE date = '2026-01-02' GROUP BY \"deviceId\""
        ),
        vec!["d0|3", "d1|3"]
    );
}

#[test]
fn hour_partitions_and_escaped_values_read_back_as_written() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("site", DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("n", DataType::Float64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec![Some("a/b"), Some("x=1%"), None])),
            Arc::new(TimestampMicrosecondArray::from(vec![
                NEW_YEAR + 13 * HOUR,
                NEW_YEAR,
                NEW_YEAR,
            ])),
            Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0])),
        ],
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let uri = format!(
        "parquet:{}?partition_by=site,hour(ts)",
        dir.path().display()
    );
    let mut sink = sink(&uri, &schema);
    sink.write(&batch).unwrap();
    sink.finish().unwrap();

    let folders: Vec<String> = parquet_files(dir.path())
        .iter()
        .map(|f| f.rsplit_once('/').unwrap().0.to_string())
        .collect();
    assert_eq!(
        folders,
        vec![
            "site=__HIVE_DEFAULT_PARTITION__/date=2026-01-01/hour=00",
            "site=a%2Fb/date=2026-01-01/hour=13",
            "site=x%3D1%25/date=2026-01-01/hour=00",
        ]
    );
    assert_eq!(
        query(
            dir.path(),
            &["site", "date", "hour"],
            "SELECT site, hour, n FROM t"
        ),
        vec![
            "__HIVE_DEFAULT_PARTITION__|00|3.0",
            "a/b|13|1.0",
            "x=1%|00|2.0"
        ]
    );
}

#[test]
fn a_reader_never_sees_the_file_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("parquet:{}?row_group_size=1000", dir.path().display());
    let mut sink = sink(&uri, &readings_schema());
    sink.write(&readings(0, 2)).unwrap();
    sink.flush().unwrap();
    sink.write(&readings(2, 20_000)).unwrap();
    // The second file is on disk, its first row groups written, under its
    // temporary name.
    let writing = in_progress_files(dir.path());
    assert_eq!(writing.len(), 1);
    assert!(writing[0].starts_with(".part-"), "{writing:?}");
    assert!(
        std::fs::metadata(dir.path().join(&writing[0]))
            .unwrap()
            .len()
            > 0
    );
    // Readers list only the complete file.
    assert_eq!(
        query(dir.path(), &[], "SELECT * FROM t"),
        expected_readings(2)
    );
    sink.finish().unwrap();
    assert_eq!(
        query(dir.path(), &[], "SELECT * FROM t"),
        expected_readings(20_002)
    );
}

#[test]
fn unfinished_files_of_a_crashed_run_are_removed_on_start() {
    let dir = tempfile::tempdir().unwrap();
    let partition = dir.path().join("deviceId=d1");
    std::fs::create_dir_all(&partition).unwrap();
    let leftovers = [
        dir.path()
            .join(".part-20260101T000000.000Z-000000.parquet.inprogress"),
        partition.join(".part-20260101T000000.000Z-000001.parquet.inprogress"),
    ];
    for path in &leftovers {
        std::fs::write(path, b"PAR1 half a file").unwrap();
    }
    let someone_elses = dir.path().join("notes.txt");
    std::fs::write(&someone_elses, b"kept").unwrap();

    let uri = format!("parquet:{}?partition_by=deviceId", dir.path().display());
    let mut sink = sink(&uri, &readings_schema());
    assert!(in_progress_files(dir.path()).is_empty());
    assert!(someone_elses.exists());
    sink.finish().unwrap();
}

#[test]
fn records_and_arrays_keep_their_nesting() {
    let position = Arc::new(StructArray::from(vec![
        (
            Arc::new(Field::new("lat", DataType::Float64, true)),
            Arc::new(Float64Array::from(vec![47.5, 48.1])) as ArrayRef,
        ),
        (
            Arc::new(Field::new(
                "fix",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                true,
            )),
            Arc::new(TimestampMicrosecondArray::from(vec![
                NEW_YEAR,
                NEW_YEAR + HOUR,
            ])) as ArrayRef,
        ),
    ]));
    let codes = Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
        Some(vec![Some(1), Some(2)]),
        Some(vec![]),
    ]));
    let schema = Arc::new(Schema::new(vec![
        Field::new("position", position.data_type().clone(), true),
        Field::new("codes", codes.data_type().clone(), true),
    ]));
    let batch = RecordBatch::try_new(schema.clone(), vec![position, codes]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&format!("parquet:{}", dir.path().display()), &schema);
    sink.write(&batch).unwrap();
    sink.finish().unwrap();
    assert_eq!(
        query(dir.path(), &[], "SELECT position, codes FROM t"),
        vec![
            "{lat: 47.5, fix: 2026-01-01T00:00:00Z}|[1, 2]",
            "{lat: 48.1, fix: 2026-01-01T01:00:00Z}|[]"
        ]
    );
}

#[test]
fn a_declared_output_writes_to_a_folder_beside_the_job_file() {
    let dir = tempfile::tempdir().unwrap();
    let options: BTreeMap<String, String> = [
        ("connector", "Parquet"),
        ("path", "out/alerts"),
        ("partition_by", "deviceId"),
        ("row_group_size", "2"),
        ("compression", "uncompressed"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let spec = output_from_options(&options, dir.path()).unwrap();
    let mut sink = open_sink("alerts", &spec);
    sink.start(&readings_schema()).unwrap();
    sink.write(&readings(0, 5)).unwrap();
    sink.finish().unwrap();
    let out: PathBuf = dir.path().join("out/alerts");
    let files = parquet_files(&out);
    assert_eq!(files.len(), 2, "{files:?}");
    let d0 = std::fs::File::open(out.join(&files[0])).unwrap();
    let metadata = ParquetRecordBatchReaderBuilder::try_new(d0)
        .unwrap()
        .metadata()
        .clone();
    // d0 has 3 rows: row groups of at most 2.
    assert_eq!(metadata.num_row_groups(), 2);
}

#[test]
fn partitioning_by_a_missing_column_refuses_the_output_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("parquet:{}?partition_by=site", dir.path().display());
    let mut sink = open_sink("out", &parse_output_uri(&uri).unwrap());
    let err = sink.start(&readings_schema()).unwrap_err().to_string();
    assert!(
        err.contains(
            "`site` is not a column of the output (its columns: deviceId, windowEnd, avgTemp)"
        ),
        "{err}"
    );
}
