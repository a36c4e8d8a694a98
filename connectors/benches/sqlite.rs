#![allow(clippy::unwrap_used)]
//! Rows per second into a SQLite table: windowed-aggregate rows (device,
//! window end, average, count) written in batches of 8,192, as plain
//! inserts and as upserts on (device, window end) over a table that already
//! holds every key (a replay: each row overwrites one).
//!
//! `cargo bench -p iotql-connectors --bench sqlite`

use std::collections::BTreeMap;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use iotql_connectors::sqlite::{SqliteOutput, SqliteSink};
use iotql_engine::arrow::array::{
    Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use iotql_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::io::Sink;

const ROWS: usize = 100_000;
const BATCH: usize = 8_192;
const DEVICES: usize = 1_000;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("deviceId", DataType::Utf8, false),
        Field::new(
            "windowEnd",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("avgTemp", DataType::Float64, true),
        Field::new("readings", DataType::Int64, false),
    ]))
}

/// 100k rows: 1,000 devices x 100 one-minute windows.
fn batches() -> Vec<RecordBatch> {
    (0..ROWS)
        .step_by(BATCH)
        .map(|start| {
            let rows = start..(start + BATCH).min(ROWS);
            RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(StringArray::from_iter_values(
                        rows.clone().map(|r| format!("dev-{:04}", r % DEVICES)),
                    )),
                    Arc::new(TimestampMicrosecondArray::from_iter_values(
                        rows.clone()
                            .map(|r| 1_767_225_600_000_000 + (r / DEVICES) as i64 * 60_000_000),
                    )),
                    Arc::new(Float64Array::from_iter_values(
                        rows.clone().map(|r| 20.0 + (r % 97) as f64 / 10.0),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        rows.map(|r| 6 + (r % 5) as i64),
                    )),
                ],
            )
            .unwrap()
        })
        .collect()
}

fn output(path: &std::path::Path, key: bool) -> SqliteOutput {
    let mut options = BTreeMap::from([
        ("path".to_string(), path.display().to_string()),
        ("table".to_string(), "windows".to_string()),
    ]);
    if key {
        options.insert("key".into(), "deviceId, windowEnd".into());
    }
    SqliteOutput::from_options(&options).unwrap()
}

fn write(output: SqliteOutput, batches: &[RecordBatch]) {
    let mut sink = SqliteSink::new("windows", output);
    sink.start(&schema()).unwrap();
    for b in batches {
        sink.write(b).unwrap();
    }
    sink.finish().unwrap();
}

fn sqlite(c: &mut Criterion) {
    let batches = batches();
    let mut group = c.benchmark_group("sqlite");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(10);
    group.bench_function("insert", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |dir| write(output(&dir.path().join("b.db"), false), &batches),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("upsert_replay", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                write(output(&dir.path().join("b.db"), true), &batches);
                dir
            },
            |dir| write(output(&dir.path().join("b.db"), true), &batches),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, sqlite);
criterion_main!(benches);
