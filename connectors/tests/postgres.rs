#![allow(clippy::unwrap_used)]
//! The PostgreSQL output against a real server (started by
//! scripts/postgres-up on a free port for each test).

mod support;
#[path = "support/postgres.rs"]
mod support_postgres;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use iotql_connectors::endpoint::{OutputSpec, open_sink, parse_output_uri};
use iotql_engine::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, ListBuilder, StringArray, StringBuilder,
    StructArray, TimestampMicrosecondArray,
};
use iotql_engine::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::io::{Sink, SinkMetrics};
use support_postgres::Postgres;

/// 2026-01-01T00:00:00Z in microseconds.
const T0: i64 = 1_767_225_600_000_000;
const MINUTE: i64 = 60_000_000;

/// Windowed-aggregate rows: deviceId, windowEnd, avgTemp, events.
fn stats_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("deviceId", DataType::Utf8, true),
        Field::new(
            "windowEnd",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
        Field::new("avgTemp", DataType::Float64, true),
        Field::new("events", DataType::Int64, true),
    ]))
}

/// Rows `ids`: device `d{id % 10}`, window `id / 10`, avgTemp `id + offset`.
fn stats(ids: std::ops::Range<i64>, offset: f64) -> RecordBatch {
    let ids: Vec<i64> = ids.collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            ids.iter().map(|i| format!("d{}", i % 10)),
        )),
        Arc::new(TimestampMicrosecondArray::from_iter_values(
            ids.iter().map(|i| T0 + (i / 10) * MINUTE),
        )),
        Arc::new(Float64Array::from_iter_values(
            ids.iter().map(|&i| i as f64 + offset),
        )),
        Arc::new(Int64Array::from_iter_values(ids.iter().copied())),
    ];
    RecordBatch::try_new(stats_schema(), columns).unwrap()
}

/// The sink of a `postgres://` URI, through the same path as `--output`.
fn open(uri: &str) -> Box<dyn Sink> {
    let spec = parse_output_uri(uri).unwrap();
    assert!(matches!(spec, OutputSpec::Postgres(_)));
    open_sink("out", &spec)
}

fn metrics(sink: &dyn Sink) -> Arc<SinkMetrics> {
    sink.metrics().unwrap()
}

fn count(server: &Postgres, sql: &str) -> i64 {
    server.client().query_one(sql, &[]).unwrap().get(0)
}

/// Polls `done` until it holds; fails the test after 60 s.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "60 s and still waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_table_is_created_with_typed_columns_and_holds_every_row() {
    let server = Postgres::start();
    let location = Fields::from(vec![
        Field::new("lat", DataType::Float64, true),
        Field::new("lon", DataType::Float64, true),
    ]);
    let schema = Arc::new(Schema::new(vec![
        Field::new("deviceId", DataType::Utf8, true),
        Field::new(
            "windowEnd",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
        Field::new("avgTemp", DataType::Float64, true),
        Field::new("events", DataType::Int64, true),
        Field::new("hot", DataType::Boolean, true),
        Field::new("location", DataType::Struct(location.clone()), true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
    ]));
    let mut tags = ListBuilder::new(StringBuilder::new());
    tags.append_value([Some("a"), Some("b")]);
    tags.append_null();
    tags.append_value([Some("it's \"quoted\"")]);
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec![Some("dev-1"), None, Some("Dév ✓")])),
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(T0),
                Some(T0 + 1),
                None,
            ])),
            Arc::new(Float64Array::from(vec![Some(21.5), None, Some(-3.25)])),
            Arc::new(Int64Array::from(vec![Some(3), Some(i64::MAX), None])),
            Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
            Arc::new(StructArray::new(
                location,
                vec![
                    Arc::new(Float64Array::from(vec![47.6, 0.0, 1.0])),
                    Arc::new(Float64Array::from(vec![-122.3, 0.0, 2.0])),
                ],
                Some(vec![true, false, true].into()),
            )),
            Arc::new(tags.finish()),
        ],
    )
    .unwrap();

    let mut sink = open(&server.url("table=Readings"));
    sink.start(&schema).unwrap();
    sink.write(&batch).unwrap();
    sink.write(&batch.slice(0, 0)).unwrap();
    sink.finish().unwrap();
    assert_eq!(
        metrics(sink.as_ref()).rows_written.load(Ordering::Relaxed),
        3
    );

    let mut client = server.client();
    let types: Vec<(String, String)> = client
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_name = 'Readings' ORDER BY ordinal_position",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected = [
        ("deviceId", "text"),
        ("windowEnd", "timestamp with time zone"),
        ("avgTemp", "double precision"),
        ("events", "bigint"),
        ("hot", "boolean"),
        ("location", "jsonb"),
        ("tags", "jsonb"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    assert_eq!(types, expected);
    // Appended rows grow with time: an index on the time column serves
    // the API's time ranges and newest rows.
    let indexes: Vec<String> = client
        .query(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'Readings'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(indexes.len(), 1, "{indexes:?}");
    assert!(
        indexes[0].ends_with("(\"windowEnd\")") && indexes[0].contains("Readings_windowEnd_idx"),
        "{indexes:?}"
    );

    type Row = (
        Option<String>,
        Option<DateTime<Utc>>,
        Option<f64>,
        Option<i64>,
        Option<bool>,
        Option<serde_json::Value>,
        Option<serde_json::Value>,
    );
    let rows: Vec<Row> = client
        .query(
            r#"SELECT "deviceId", "windowEnd", "avgTemp", events, hot, location, tags FROM "Readings" ORDER BY "windowEnd" NULLS LAST"#,
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
            )
        })
        .collect();
    let time = |micros| DateTime::<Utc>::from_timestamp_micros(micros);
    assert_eq!(
        rows,
        vec![
            (
                Some("dev-1".into()),
                time(T0),
                Some(21.5),
                Some(3),
                Some(true),
                Some(serde_json::json!({"lat": 47.6, "lon": -122.3})),
                Some(serde_json::json!(["a", "b"])),
            ),
            (
                None,
                time(T0 + 1),
                None,
                Some(i64::MAX),
                Some(false),
                None,
                None
            ),
            (
                Some("Dév ✓".into()),
                None,
                Some(-3.25),
                None,
                None,
                Some(serde_json::json!({"lat": 1.0, "lon": 2.0})),
                Some(serde_json::json!(["it's \"quoted\""])),
            ),
        ]
    );
}

#[test]
fn with_a_key_a_replayed_window_overwrites_its_rows() {
    let server = Postgres::start();
    let mut sink = open(&server.url("table=stats&key=deviceId,%20windowEnd"));
    sink.start(&stats_schema()).unwrap();
    sink.write(&stats(0..30, 0.0)).unwrap();
    sink.flush().unwrap();
    // Window 2 again with new values; in one batch, of two rows with one
    // key the later wins.
    sink.write(&stats(20..30, 100.0)).unwrap();
    sink.write(&stats(25..26, 1000.0)).unwrap();
    sink.finish().unwrap();
    assert_eq!(
        metrics(sink.as_ref()).rows_written.load(Ordering::Relaxed),
        41
    );

    assert_eq!(count(&server, "SELECT count(*) FROM stats"), 30);
    let mut client = server.client();
    let rows: Vec<(String, f64)> = client
        .query(
            r#"SELECT "deviceId", "avgTemp" FROM stats WHERE "windowEnd" = $1 ORDER BY "deviceId""#,
            &[&DateTime::<Utc>::from_timestamp_micros(T0 + 2 * MINUTE).unwrap()],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected: Vec<(String, f64)> = (20..30)
        .map(|i| {
            let avg = if i == 25 { 1025.0 } else { i as f64 + 100.0 };
            (format!("d{}", i % 10), avg)
        })
        .collect();
    assert_eq!(rows, expected);
    // Earlier windows are as first written.
    assert_eq!(
        count(
            &server,
            r#"SELECT count(*) FROM stats WHERE "avgTemp" = events::float8"#
        ),
        20
    );
    let key: String = client
        .query_one(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'stats'::regclass AND contype = 'p'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(key, r#"PRIMARY KEY ("deviceId", "windowEnd")"#);
}

#[test]
fn an_existing_table_with_compatible_columns_is_reused() {
    let server = Postgres::start();
    // Column names as an unquoted CREATE TABLE leaves them (lower case),
    // narrower and other types that take the values, and columns the
    // output does not have.
    server
        .client()
        .batch_execute(
            r#"CREATE TABLE devicestats (
                id serial,
                deviceid varchar(40) NOT NULL,
                "windowEnd" timestamp NOT NULL,
                avgtemp numeric,
                events integer,
                note text,
                created timestamptz NOT NULL DEFAULT now(),
                UNIQUE (deviceid, "windowEnd"));
               INSERT INTO devicestats (deviceid, "windowEnd", avgtemp, events, note)
                 VALUES ('d1', '2026-01-01 00:00:00', 0, 0, 'kept');"#,
        )
        .unwrap();
    let mut sink = open(&server.url("table=devicestats&key=deviceId,windowEnd"));
    sink.start(&stats_schema()).unwrap();
    sink.write(&stats(0..20, 0.5)).unwrap();
    sink.finish().unwrap();

    let mut client = server.client();
    assert_eq!(count(&server, "SELECT count(*) FROM devicestats"), 20);
    // The row that was there is updated in the output's columns only; the
    // timestamptz goes into the timestamp column as UTC.
    let row = client
        .query_one(
            r#"SELECT avgtemp::float8, events, note, "windowEnd"::text FROM devicestats WHERE deviceid = 'd1' AND "windowEnd" = '2026-01-01 00:00:00'"#,
            &[],
        )
        .unwrap();
    let got: (f64, i32, Option<String>, String) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(
        got,
        (1.5, 1, Some("kept".into()), "2026-01-01 00:00:00".into())
    );
    assert_eq!(
        count(
            &server,
            "SELECT count(*) FROM devicestats WHERE id IS NULL OR created IS NULL"
        ),
        0
    );

    // Without a key too (the values are converted on the way in).
    client
        .batch_execute(
            r#"CREATE TABLE log (deviceid text, "windowEnd" timestamp, avgtemp real, events int)"#,
        )
        .unwrap();
    let mut sink = open(&server.url("table=log"));
    sink.start(&stats_schema()).unwrap();
    sink.write(&stats(0..20, 0.5)).unwrap();
    sink.finish().unwrap();
    assert_eq!(
        count(
            &server,
            "SELECT count(*) FROM log WHERE avgtemp = events + 0.5"
        ),
        20
    );
}

#[test]
fn a_table_that_does_not_fit_the_output_is_refused_at_start() {
    let server = Postgres::start();
    server
        .client()
        .batch_execute(
            r#"CREATE TABLE missing ("deviceId" text, "windowEnd" timestamptz, events bigint);
               CREATE TABLE mistyped ("deviceId" text, "windowEnd" timestamptz, "avgTemp" boolean, events bigint);
               CREATE TABLE unkeyed ("deviceId" text, "windowEnd" timestamptz, "avgTemp" float8, events bigint);
               CREATE TABLE required ("deviceId" text, "windowEnd" timestamptz, "avgTemp" float8, events bigint, site text NOT NULL);"#,
        )
        .unwrap();
    let refused = |query: &str| {
        let mut sink = open(&server.url(query));
        sink.start(&stats_schema()).unwrap_err().to_string()
    };
    let e = refused("table=missing");
    assert!(
        e.contains("table missing has no column `avgTemp`") && e.contains("ADD COLUMN"),
        "{e}"
    );
    let e = refused("table=mistyped");
    assert!(
        e.contains("column `avgTemp` of table mistyped is boolean, which cannot hold the output's double precision values"),
        "{e}"
    );
    let e = refused("table=unkeyed&key=deviceId,windowEnd");
    assert!(
        e.contains("table unkeyed has no unique constraint on the key (deviceId, windowEnd)"),
        "{e}"
    );
    let e = refused("table=required");
    assert!(
        e.contains("column `site` of table required is NOT NULL without a default"),
        "{e}"
    );
    let e = refused("table=anything&key=device");
    assert!(
        e.contains("key column `device` is not a column of the output"),
        "{e}"
    );
    // The output named the error's place and the table is untouched.
    assert!(e.starts_with("output `out`"), "{e}");
    assert_eq!(
        count(
            &server,
            "SELECT count(*) FROM pg_class WHERE relname = 'anything'"
        ),
        0
    );
}

#[test]
fn rows_held_longer_than_max_latency_are_written_by_tick() {
    let server = Postgres::start();
    let mut sink = open(&server.url("table=quiet&batch_size=10000&max_latency=100ms"));
    sink.start(&stats_schema()).unwrap();
    sink.write(&stats(0..5, 0.0)).unwrap();
    // Buffered: fewer rows than batch_size, and no flush.
    assert_eq!(count(&server, "SELECT count(*) FROM quiet"), 0);
    wait_until("tick to write the rows", || {
        sink.tick().unwrap();
        count(&server, "SELECT count(*) FROM quiet") == 5
    });
    sink.finish().unwrap();
    assert_eq!(count(&server, "SELECT count(*) FROM quiet"), 5);
}

/// Writes rows `from..to` in batches of 50, flushing every other batch,
/// and hands the sink back.
fn write_range(mut sink: Box<dyn Sink>, from: i64, to: i64) -> Box<dyn Sink> {
    for start in (from..to).step_by(50) {
        sink.write(&stats(start..(start + 50).min(to), 0.0))
            .unwrap();
        if (start / 50) % 2 == 1 {
            sink.flush().unwrap();
        }
    }
    sink.flush().unwrap();
    sink
}

#[test]
fn a_server_restart_mid_stream_loses_and_doubles_no_row() {
    let mut server = Postgres::start();
    let mut keyed = open(&server.url("table=keyed&key=events&batch_size=100"));
    let mut plain = open(&server.url("table=plain&batch_size=100"));
    keyed.start(&stats_schema()).unwrap();
    plain.start(&stats_schema()).unwrap();
    let keyed = write_range(keyed, 0, 500);
    let plain = write_range(plain, 0, 500);

    server.stop_keeping_data();
    let metrics = [metrics(keyed.as_ref()), metrics(plain.as_ref())];
    let writers =
        [keyed, plain].map(|sink| std::thread::spawn(move || write_range(sink, 500, 1000)));
    // Both outputs wait for the server (they retry) rather than fail.
    wait_until("both outputs to retry", || {
        metrics
            .iter()
            .all(|m| m.retries.load(Ordering::Relaxed) > 0)
    });
    server.restart();
    for writer in writers {
        let mut sink = writer.join().unwrap();
        sink.finish().unwrap();
    }

    for table in ["keyed", "plain"] {
        assert_eq!(
            count(&server, &format!("SELECT count(*) FROM {table}")),
            1000,
            "{table}"
        );
        assert_eq!(
            count(
                &server,
                &format!(
                    "SELECT count(DISTINCT events) FROM {table} WHERE events BETWEEN 0 AND 999"
                )
            ),
            1000,
            "{table}"
        );
    }
    for m in &metrics {
        assert_eq!(m.rows_written.load(Ordering::Relaxed), 1000);
    }
}

/// The simple-query message COMMIT, as the client sends it.
const COMMIT: &[u8] = b"Q\0\0\0\x0bCOMMIT\0";

/// A TCP proxy to the server that, once armed, breaks the connection that
/// sends COMMIT after handing the COMMIT to the server, so that the client
/// never learns that its transaction was committed.
struct CommitCutter {
    port: u16,
    armed: Arc<AtomicBool>,
    cuts: Arc<AtomicU64>,
}

impl CommitCutter {
    fn start(server_port: u16) -> CommitCutter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicU64::new(0));
        let (a, c) = (armed.clone(), cuts.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let server = TcpStream::connect(("127.0.0.1", server_port)).unwrap();
                let (a, c) = (a.clone(), c.clone());
                std::thread::spawn(move || relay(client, server, &a, &c));
            }
        });
        CommitCutter { port, armed, cuts }
    }
}

fn relay(mut client: TcpStream, mut server: TcpStream, armed: &AtomicBool, cuts: &AtomicU64) {
    let (mut from_server, mut to_client) =
        (server.try_clone().unwrap(), client.try_clone().unwrap());
    std::thread::spawn(move || std::io::copy(&mut from_server, &mut to_client));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        let commit = chunk.windows(COMMIT.len()).any(|w| w == COMMIT);
        if commit && armed.swap(false, Ordering::SeqCst) {
            // The client loses the connection first; the server still gets
            // the COMMIT, then the end of the stream.
            let _ = client.shutdown(Shutdown::Both);
            server.write_all(chunk).unwrap();
            let _ = server.shutdown(Shutdown::Write);
            cuts.fetch_add(1, Ordering::SeqCst);
            return;
        }
        if server.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Write);
}

#[test]
fn a_connection_lost_during_commit_does_not_write_the_batch_twice() {
    let server = Postgres::start();
    let cutter = CommitCutter::start(server.port);
    let uri = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?table=cut&batch_size=100",
        cutter.port
    );
    let mut sink = open(&uri);
    sink.start(&stats_schema()).unwrap();
    sink.write(&stats(0..100, 0.0)).unwrap();
    sink.flush().unwrap();
    cutter.armed.store(true, Ordering::SeqCst);
    sink.write(&stats(100..200, 0.0)).unwrap();
    sink.flush().unwrap();
    sink.write(&stats(200..300, 0.0)).unwrap();
    sink.finish().unwrap();

    assert_eq!(cutter.cuts.load(Ordering::SeqCst), 1, "a COMMIT was cut");
    assert!(metrics(sink.as_ref()).retries.load(Ordering::Relaxed) >= 1);
    assert_eq!(count(&server, "SELECT count(*) FROM cut"), 300);
    assert_eq!(
        count(&server, "SELECT count(DISTINCT events) FROM cut"),
        300
    );
    assert_eq!(
        count(
            &server,
            "SELECT seq FROM iotql_sink_progress WHERE target = 'cut' AND output = 'out'"
        ),
        3
    );
}

#[test]
fn tls_connections_with_and_without_certificate_checks() {
    let server = Postgres::start_with_tls();
    let authority = server.authority.clone().unwrap();
    let verified = server.url(&format!(
        "table=secure&sslmode=verify-full&sslrootcert={}&application_name=iotql-verified",
        authority.display()
    ));
    let mut sink = open(&verified);
    sink.start(&stats_schema()).unwrap();
    sink.write(&stats(0..10, 0.0)).unwrap();
    sink.finish().unwrap();
    let mut sink =
        open(&server.url("table=secure&sslmode=require&application_name=iotql-unverified"));
    sink.start(&stats_schema()).unwrap();
    sink.write(&stats(10..20, 0.0)).unwrap();
    sink.finish().unwrap();
    assert_eq!(count(&server, "SELECT count(*) FROM secure"), 20);
    // The pool keeps the outputs' connections: both are encrypted.
    assert_eq!(
        count(
            &server,
            "SELECT count(DISTINCT a.application_name) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.ssl AND a.application_name LIKE 'iotql-%'"
        ),
        2
    );
    // A certificate that the system's authorities did not sign is refused
    // at once, not waited for like an outage.
    let mut sink = open(&server.url("table=secure&sslmode=verify-full"));
    let e = sink.start(&stats_schema()).unwrap_err().to_string();
    assert!(e.contains("TLS") || e.contains("certificate"), "{e}");
    assert_eq!(metrics(sink.as_ref()).retries.load(Ordering::Relaxed), 0);
}

#[test]
fn rows_the_server_refuses_are_dead_letters_and_the_rest_are_written() {
    let server = Postgres::start();
    server
        .client()
        .batch_execute(
            r#"CREATE TABLE checked (deviceid text, "windowEnd" timestamptz, avgtemp float8 CHECK (avgtemp < 100), events bigint)"#,
        )
        .unwrap();
    let mut sink = open(&server.url("table=checked"));
    sink.start(&stats_schema()).unwrap();
    // Rows 0..40 with avgTemp = id + 70: ids 30..39 break the CHECK; and
    // one device name holds a NUL, which PostgreSQL's text cannot.
    let batch = stats(0..40, 70.0);
    let mut devices: Vec<String> = (0..40).map(|i| format!("d{}", i % 10)).collect();
    devices[5] = "bad\0name".into();
    let mut columns = batch.columns().to_vec();
    columns[0] = Arc::new(StringArray::from_iter_values(devices));
    sink.write(&RecordBatch::try_new(stats_schema(), columns).unwrap())
        .unwrap();
    sink.finish().unwrap();
    assert_eq!(count(&server, "SELECT count(*) FROM checked"), 29);
    let letters = sink.take_dead_letters();
    assert_eq!(letters.len(), 11, "{letters:?}");
    assert!(
        letters[0].raw.contains(r#""events":5"#),
        "{}",
        letters[0].raw
    );
    assert!(
        letters[1..]
            .iter()
            .all(|l| l.reason.contains("checked_avgtemp_check")),
        "{letters:?}"
    );
    assert_eq!(metrics(sink.as_ref()).failures.load(Ordering::Relaxed), 11);
    assert_eq!(
        metrics(sink.as_ref()).rows_written.load(Ordering::Relaxed),
        29
    );
}
