#![allow(clippy::unwrap_used)]
//! The PostgreSQL output against a real server (scripts/postgres-up on a
//! free port; the benchmark is skipped with a message when that fails):
//! rows per second of 100,000 windowed-aggregate rows (deviceId,
//! windowEnd, avg, count) in transactions of 8,192, as upserts on
//! (deviceId, windowEnd) over rows that are there (a replayed window:
//! every row an update), and as plain inserts; and, as the floor the
//! output's work stands on, the same rows by binary COPY straight into a
//! table with the client alone.
//!
//! `cargo bench -p iotql-connectors --bench postgres`

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use iotql_connectors::endpoint::{open_sink, parse_output_uri};
use iotql_engine::arrow::array::{
    ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use iotql_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::io::Sink;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};

const ROWS: usize = 100_000;
const BATCH: usize = 8192;
/// 2026-01-01T00:00:00Z in microseconds.
const T0: i64 = 1_767_225_600_000_000;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name)
}

/// The benchmark's server, stopped and removed when dropped.
struct Server(u16);

impl Server {
    fn start() -> Option<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let out = Command::new(script("postgres-up"))
            .args(["--port", &port.to_string()])
            .output()
            .ok()?;
        if out.status.success() {
            Some(Server(port))
        } else {
            eprintln!(
                "postgres benchmark skipped: scripts/postgres-up failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
    }

    fn url(&self, query: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres?{query}", self.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new(script("postgres-down"))
            .args(["--port", &self.0.to_string()])
            .output();
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("deviceId", DataType::Utf8, false),
        Field::new(
            "windowEnd",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("avg", DataType::Float64, true),
        Field::new("count", DataType::Int64, true),
    ]))
}

/// 1,000 devices by 100 one-minute windows, in batches of 8,192.
fn rows() -> Vec<RecordBatch> {
    (0..ROWS)
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(|ids| {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values(
                    ids.iter().map(|i| format!("dev-{:04}", i % 1000)),
                )),
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    ids.iter().map(|&i| T0 + (i / 1000) as i64 * 60_000_000),
                )),
                Arc::new(Float64Array::from_iter_values(
                    ids.iter().map(|&i| 20.0 + (i % 97) as f64 / 10.0),
                )),
                Arc::new(Int64Array::from_iter_values(
                    ids.iter().map(|&i| (i % 60) as i64 + 1),
                )),
            ];
            RecordBatch::try_new(schema(), columns).unwrap()
        })
        .collect()
}

fn started(uri: &str) -> Box<dyn Sink> {
    let mut sink = open_sink("bench", &parse_output_uri(uri).unwrap());
    sink.start(&schema()).unwrap();
    sink
}

fn write_all(sink: &mut dyn Sink, batches: &[RecordBatch]) {
    for b in batches {
        sink.write(b).unwrap();
    }
    sink.flush().unwrap();
}

/// The rows by binary COPY straight into a table, with the client alone.
fn copy_straight(client: &mut postgres::Client, batches: &[RecordBatch]) {
    let mut tx = client.transaction().unwrap();
    let sink = tx
        .copy_in(r#"COPY floor ("deviceId", "windowEnd", avg, count) FROM STDIN (FORMAT binary)"#)
        .unwrap();
    let mut writer = BinaryCopyInWriter::new(
        sink,
        &[Type::TEXT, Type::TIMESTAMPTZ, Type::FLOAT8, Type::INT8],
    );
    for b in batches {
        let device = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let window = b
            .column(1)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        let avg = b.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
        let count = b.column(3).as_any().downcast_ref::<Int64Array>().unwrap();
        for r in 0..b.num_rows() {
            let time = chrono::DateTime::from_timestamp_micros(window.value(r)).unwrap();
            let row: [&(dyn ToSql + Sync); 4] =
                [&device.value(r), &time, &avg.value(r), &count.value(r)];
            writer.write(&row).unwrap();
        }
    }
    writer.finish().unwrap();
    tx.commit().unwrap();
}

fn postgres_output(c: &mut Criterion) {
    let Some(server) = Server::start() else {
        return;
    };
    let batches = rows();
    let mut group = c.benchmark_group("postgres");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS as u64));

    let mut upsert = started(&server.url(&format!(
        "table=upserted&key=deviceId,windowEnd&batch_size={BATCH}"
    )));
    write_all(upsert.as_mut(), &batches);
    group.bench_function("upsert 100k rows (all updates)", |b| {
        b.iter(|| write_all(upsert.as_mut(), &batches))
    });

    let mut insert = started(&server.url(&format!("table=inserted&batch_size={BATCH}")));
    group.bench_function("insert 100k rows", |b| {
        b.iter(|| write_all(insert.as_mut(), &batches))
    });

    let mut client = postgres::Client::connect(
        &format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            server.0
        ),
        postgres::NoTls,
    )
    .unwrap();
    client
        .batch_execute(r#"CREATE TABLE floor ("deviceId" text, "windowEnd" timestamptz, avg float8, count bigint)"#)
        .unwrap();
    group.bench_function("floor: binary COPY 100k rows straight in", |b| {
        b.iter(|| copy_straight(&mut client, &batches))
    });
    group.finish();
    upsert.finish().unwrap();
    insert.finish().unwrap();
}

criterion_group!(benches, postgres_output);
criterion_main!(benches);
