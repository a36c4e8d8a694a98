#![allow(clippy::unwrap_used)]
//! A job stopped at any point and restored from its snapshot gives exactly
//! the rows of an uninterrupted run.

use std::sync::Arc;

use iotql_engine::Job;
use iotql_engine::arrow::array::{Float64Array, StringArray};
use iotql_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::arrow::util::pretty::pretty_format_batches;
use iotql_engine::io::CollectSink;
use proptest::prelude::*;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Utf8, false),
        Field::new("ts", DataType::Utf8, false),
        Field::new("v", DataType::Float64, true),
    ]))
}

/// `n` events of 3 devices, one every 7 seconds; device d1's clock is an
/// hour behind the others'.
fn events(n: usize) -> RecordBatch {
    let ids: Vec<String> = (0..n).map(|i| format!("d{}", i % 3)).collect();
    let ts: Vec<String> = (0..n)
        .map(|i| {
            let s = i * 7 + if i % 3 == 1 { 0 } else { 3600 };
            format!(
                "2026-01-01T{:02}:{:02}:{:02}Z",
                s / 3600,
                s / 60 % 60,
                s % 60
            )
        })
        .collect();
    let v: Vec<Option<f64>> = (0..n)
        .map(|i| (i % 5 != 0).then_some((i % 17) as f64))
        .collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(ids)),
            Arc::new(StringArray::from(ts)),
            Arc::new(Float64Array::from(v)),
        ],
    )
    .unwrap()
}

const QUERIES: &[&str] = &[
    "SELECT device_id, System.Timestamp() AS window_end, COUNT(*) AS n, COUNT(v) AS nv, SUM(v) AS total,
            AVG(v) AS mean, MIN(v) AS lo, MAX(v) AS hi, STDEV(v) AS sd, COUNT(DISTINCT v) AS distinct_v,
            CollectTop(2, v) OVER (ORDER BY v DESC) AS top_v
     INTO out FROM readings TIMESTAMP BY ts
     GROUP BY device_id, HoppingWindow(minute, 3, 1)",
    "SELECT device_id, System.Timestamp() AS session_end, COUNT(*) AS n, SUM(v) AS total,
            PERCENTILE_DISC(0.5) OVER (ORDER BY v) AS median_v
     INTO out FROM readings TIMESTAMP BY ts
     GROUP BY device_id, SessionWindow(second, 20, 120) OVER (PARTITION BY device_id)",
    "SELECT device_id, System.Timestamp() AS at, COUNT(*) AS n, MAX(v) AS hi
     INTO out FROM readings TIMESTAMP BY ts
     GROUP BY device_id, SlidingWindow(second, 30)",
    "SELECT device_id, v, System.Timestamp() AS t,
            LAG(v, 2) OVER (PARTITION BY device_id LIMIT DURATION(minute, 1)) AS prev,
            AVG(v) OVER (PARTITION BY device_id LIMIT DURATION(second, 30)) AS avg_30s,
            ISFIRST(minute, 1) OVER (PARTITION BY device_id) AS first
     INTO out FROM readings TIMESTAMP BY ts",
    "SELECT r1.device_id, r1.v AS v1, r2.v AS v2, System.Timestamp() AS t
     INTO out FROM readings r1 TIMESTAMP BY ts
     LEFT JOIN readings r2 TIMESTAMP BY ts
       ON r1.device_id = r2.device_id AND DATEDIFF(second, r1, r2) BETWEEN 1 AND 30",
    "SELECT device_id, v, LAST(v) OVER (PARTITION BY device_id LIMIT DURATION(minute, 1) WHEN v > 8) AS hi
     INTO out FROM readings TIMESTAMP BY ts OVER device_id",
    "SELECT device_id, System.Timestamp() AS window_end, COUNT(*) AS n, SUM(v) AS total,
            STDEV(v) AS sd
     INTO out FROM readings TIMESTAMP BY ts OVER device_id
     GROUP BY device_id, HoppingWindow(minute, 3, 1)",
    "SELECT device_id, System.Timestamp() AS session_end, COUNT(*) AS n, SUM(v) AS total
     INTO out FROM readings TIMESTAMP BY ts OVER device_id
     GROUP BY device_id, SessionWindow(second, 20, 120) OVER (PARTITION BY device_id)",
    "SELECT device_id, System.Timestamp() AS at, COUNT(*) AS n, MAX(v) AS hi
     INTO out FROM readings TIMESTAMP BY ts OVER device_id
     GROUP BY device_id, SlidingWindow(second, 30)",
];

/// Rows as sorted text lines.
fn rows(sink: &CollectSink) -> Vec<String> {
    let text = pretty_format_batches(&sink.batches()).unwrap().to_string();
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("| d"))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

fn run(query: &str, events: &RecordBatch, cut: Option<usize>) -> Vec<String> {
    let job = Job::parse(query).unwrap();
    let sink = CollectSink::new();
    let mut flow = job
        .start(
            &[("readings", schema())],
            vec![("out", Box::new(sink.clone()))],
        )
        .unwrap();
    match cut {
        None => flow.push("readings", events.clone()).unwrap(),
        Some(at) => {
            flow.push("readings", events.slice(0, at)).unwrap();
            let state = flow.snapshot().unwrap();
            drop(flow);
            // A new process: a fresh dataflow, restored, fed the rest.
            let mut restored = job
                .start(
                    &[("readings", schema())],
                    vec![("out", Box::new(sink.clone()))],
                )
                .unwrap();
            restored.restore(&state).unwrap();
            restored
                .push("readings", events.slice(at, events.num_rows() - at))
                .unwrap();
            flow = restored;
        }
    }
    flow.finish().unwrap();
    rows(&sink)
}

/// Equal rows, floats to 1e-12 relative: a variance restored from its
/// partial state (count, mean, M2) can differ from the uninterrupted one in
/// the last bit.
fn same(a: &[String], b: &[String]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.split('|').zip(y.split('|')).all(|(p, q)| {
                let (p, q) = (p.trim(), q.trim());
                match (p.parse::<f64>(), q.parse::<f64>()) {
                    (Ok(u), Ok(v)) => (u - v).abs() <= 1e-12 * u.abs().max(v.abs()).max(1.0),
                    _ => p == q,
                }
            })
        })
}

#[test]
fn a_restored_job_continues_where_it_stopped() {
    let all = events(200);
    for query in QUERIES {
        let expected = run(query, &all, None);
        assert!(expected.len() > 20, "{query}");
        let restored = run(query, &all, Some(97));
        assert!(
            same(&restored, &expected),
            "{query}\n{restored:#?}\n{expected:#?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn any_cut_gives_the_same_rows(cut in 0usize..=120, query in prop::sample::select(QUERIES)) {
        let all = events(120);
        let (restored, expected) = (run(query, &all, Some(cut)), run(query, &all, None));
        prop_assert!(same(&restored, &expected), "{:#?}\n{:#?}", restored, expected);
    }
}
