#![allow(clippy::unwrap_used)]
//! The hot operators, on batches already in memory (no file reading):
//! TIMESTAMP BY + filter + projection (the alert path), and window
//! assignment + aggregation for tumbling and hopping windows, and tumbling
//! windows over 1,000 substreams (`TIMESTAMP BY ... OVER device_id`).
//!
//! `cargo bench -p iotql-engine --bench operators`

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use iotql_engine::Job;
use iotql_engine::arrow::array::{Float64Array, Int64Array, StringArray};
use iotql_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::io::Sink;

/// A sink that only counts rows, so that the benchmark measures the engine.
#[derive(Debug, Default)]
struct Discard(u64);

impl Sink for Discard {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), iotql_engine::error::EngineError> {
        self.0 += batch.num_rows() as u64;
        Ok(())
    }
    fn finish(&mut self) -> Result<(), iotql_engine::error::EngineError> {
        Ok(())
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Utf8, false),
        Field::new("ts", DataType::Utf8, false),
        Field::new("temperature_c", DataType::Float64, true),
        Field::new("battery_pct", DataType::Float64, true),
        Field::new("co2_ppm", DataType::Int64, true),
    ]))
}

/// `n` readings of 1,000 devices, one per device per second, in batches of 8,192.
fn readings(n: usize) -> Vec<RecordBatch> {
    let base = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .timestamp_millis();
    (0..n)
        .collect::<Vec<_>>()
        .chunks(8192)
        .map(|rows| {
            let ids: Vec<String> = rows
                .iter()
                .map(|i| format!("dev-{:04}", i % 1000))
                .collect();
            let ts: Vec<String> = rows
                .iter()
                .map(|&i| {
                    let ms = base + (i as i64 / 1000) * 1000 + (i as i64 % 1000) / 2 + 17;
                    chrono::DateTime::from_timestamp_millis(ms)
                        .unwrap()
                        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                        .to_string()
                })
                .collect();
            let temp: Vec<f64> = rows
                .iter()
                .map(|&i| 20.0 + (i % 170) as f64 / 10.0)
                .collect();
            let battery: Vec<f64> = rows.iter().map(|&i| (i % 1000) as f64 / 10.0).collect();
            let co2: Vec<i64> = rows.iter().map(|&i| 400 + (i % 300) as i64).collect();
            RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(StringArray::from(ids)),
                    Arc::new(StringArray::from(ts)),
                    Arc::new(Float64Array::from(temp)),
                    Arc::new(Float64Array::from(battery)),
                    Arc::new(Int64Array::from(co2)),
                ],
            )
            .unwrap()
        })
        .collect()
}

fn run(query: &str, batches: &[RecordBatch]) {
    let job = Job::parse(query).unwrap();
    let mut flow = job
        .start(
            &[("input", schema())],
            vec![("output", Box::new(Discard::default()))],
        )
        .unwrap();
    for b in batches {
        flow.push("input", b.clone()).unwrap();
    }
    flow.finish().unwrap();
}

fn operators(c: &mut Criterion) {
    let events = 200_000;
    let batches = readings(events);
    let mut group = c.benchmark_group("operators");
    group.throughput(Throughput::Elements(events as u64));
    group.sample_size(10);
    let cases = [
        (
            "filter_project",
            "SELECT device_id, ts, temperature_c, battery_pct INTO output FROM input TIMESTAMP BY ts WHERE temperature_c > 30 OR battery_pct < 10",
        ),
        (
            "tumbling_5min",
            "SELECT device_id, System.Timestamp() AS window_end, COUNT(*) AS n, AVG(temperature_c) AS a, MIN(temperature_c) AS lo, MAX(temperature_c) AS hi, MAX(co2_ppm) AS co2 INTO output FROM input TIMESTAMP BY ts GROUP BY device_id, TumblingWindow(minute, 5)",
        ),
        (
            "tumbling_5min_substreams",
            "SELECT device_id, System.Timestamp() AS window_end, COUNT(*) AS n, AVG(temperature_c) AS a, MIN(temperature_c) AS lo, MAX(temperature_c) AS hi, MAX(co2_ppm) AS co2 INTO output FROM input TIMESTAMP BY ts OVER device_id GROUP BY device_id, TumblingWindow(minute, 5)",
        ),
        (
            "hopping_10min_by_1",
            "SELECT device_id, System.Timestamp() AS window_end, COUNT(*) AS n, AVG(temperature_c) AS a INTO output FROM input TIMESTAMP BY ts GROUP BY device_id, HoppingWindow(minute, 10, 1)",
        ),
    ];
    for (name, query) in cases {
        group.bench_function(name, |b| b.iter(|| run(query, &batches)));
    }
    group.finish();
}

criterion_group!(benches, operators);
criterion_main!(benches);
