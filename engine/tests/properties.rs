#![allow(clippy::unwrap_used)]
//! Window invariants: how the input is split into batches never changes the
//! output, events shuffled within the out-of-order tolerance give the same
//! windowed output as sorted ones, and substreams (`TIMESTAMP BY ... OVER`)
//! are independent: a device's rows do not depend on the other devices'
//! clocks.

use std::sync::Arc;

use iotql_engine::arrow::array::{Float64Array, StringArray};
use iotql_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::arrow::util::pretty::pretty_format_batches;
use iotql_engine::io::CollectSink;
use iotql_engine::plan::{PlanOptions, TimePolicy};
use iotql_engine::{Job, Problems};
use proptest::prelude::*;

const QUERIES: &[&str] = &[
    "SELECT device_id, System.Timestamp() AS t, COUNT(*) AS n, SUM(v) AS s, MAX(v) AS hi
     INTO out FROM readings TIMESTAMP BY ts GROUP BY device_id, TumblingWindow(second, 10)",
    "SELECT device_id, System.Timestamp() AS t, COUNT(*) AS n, MIN(v) AS lo
     INTO out FROM readings TIMESTAMP BY ts GROUP BY device_id, HoppingWindow(second, 20, 5)",
    "SELECT device_id, System.Timestamp() AS t, COUNT(*) AS n, SUM(v) AS s
     INTO out FROM readings TIMESTAMP BY ts GROUP BY device_id, SlidingWindow(second, 15)",
    "SELECT device_id, System.Timestamp() AS t, COUNT(*) AS n, AVG(v) AS a
     INTO out FROM readings TIMESTAMP BY ts
     GROUP BY device_id, SessionWindow(second, 8, 60) OVER (PARTITION BY device_id)",
    "SELECT device_id, System.Timestamp() AS t, COUNT(*) AS n
     INTO out FROM readings TIMESTAMP BY ts GROUP BY device_id, System.Timestamp()",
    "SELECT device_id, System.Timestamp() AS t, COUNT(*) AS n, SUM(v) AS s
     INTO out FROM readings TIMESTAMP BY ts OVER device_id
     GROUP BY device_id, HoppingWindow(second, 20, 5)",
    "SELECT device_id, System.Timestamp() AS t, COUNT(*) AS n, AVG(v) AS a
     INTO out FROM readings TIMESTAMP BY ts OVER device_id
     GROUP BY device_id, SessionWindow(second, 8, 60) OVER (PARTITION BY device_id)",
    "SELECT device_id, System.Timestamp() AS t, COUNT(*) AS n, MAX(v) AS hi
     INTO out FROM readings TIMESTAMP BY ts OVER device_id
     GROUP BY device_id, SlidingWindow(second, 15)",
    "SELECT device_id, v, System.Timestamp() AS t,
            LAG(v) OVER (PARTITION BY device_id LIMIT DURATION(second, 20)) AS prev,
            LAST(v) OVER (PARTITION BY device_id LIMIT DURATION(minute, 1) WHEN v > 5) AS last_high,
            SUM(v) OVER (PARTITION BY device_id LIMIT DURATION(second, 20)) AS sum_20s,
            MAX(v) OVER (LIMIT DURATION(second, 10)) AS max_10s,
            ISFIRST(second, 10) OVER (PARTITION BY device_id) AS first
     INTO out FROM readings TIMESTAMP BY ts",
    "SELECT r1.device_id, r1.v AS v1, r2.v AS v2, System.Timestamp() AS t
     INTO out FROM readings r1 TIMESTAMP BY ts
     LEFT JOIN readings r2 TIMESTAMP BY ts
       ON r1.device_id = r2.device_id AND DATEDIFF(second, r1, r2) BETWEEN 1 AND 8 AND r2.v > r1.v",
    "SELECT device_id, v, System.Timestamp() AS t INTO out FROM readings TIMESTAMP BY ts WHERE v > 3",
];

/// The queries over substreams.
const SUBSTREAM_QUERIES: &[&str] = &[
    "SELECT device_id, System.Timestamp() AS t, COUNT(*) AS n, SUM(v) AS s, MAX(v) AS hi
     INTO out FROM readings TIMESTAMP BY ts OVER device_id GROUP BY device_id, TumblingWindow(second, 10)",
    QUERIES[5],
    QUERIES[6],
    QUERIES[7],
    "SELECT device_id, v, System.Timestamp() AS t
     INTO out FROM readings TIMESTAMP BY ts OVER device_id WHERE v > 3",
    "SELECT device_id, v, System.Timestamp() AS t,
            LAG(v) OVER (PARTITION BY device_id LIMIT DURATION(second, 20)) AS prev,
            ISFIRST(second, 10) OVER (PARTITION BY device_id) AS first
     INTO out FROM readings TIMESTAMP BY ts OVER device_id",
];

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Utf8, false),
        Field::new("ts", DataType::Utf8, false),
        Field::new("v", DataType::Float64, true),
    ]))
}

/// (device, milliseconds since 2026-01-01, value)
type Event = (u8, i64, Option<f64>);

fn batch(events: &[Event]) -> RecordBatch {
    let base = 1_767_225_600_000i64;
    let ids: Vec<String> = events.iter().map(|e| format!("d{}", e.0)).collect();
    let ts: Vec<String> = events
        .iter()
        .map(|e| {
            chrono::DateTime::from_timestamp_millis(base + e.1)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string()
        })
        .collect();
    let v: Vec<Option<f64>> = events.iter().map(|e| e.2).collect();
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

/// Runs `query` over `events` pushed in batches of the given sizes (cycled).
fn run(
    query: &str,
    events: &[Event],
    sizes: &[usize],
    out_of_order_ms: u64,
) -> Result<Vec<String>, Problems> {
    let options = PlanOptions {
        time: TimePolicy {
            out_of_order: std::time::Duration::from_millis(out_of_order_ms),
            ..TimePolicy::default()
        },
        extra_inputs: Vec::new(),
    };
    let job = Job::with_options(query, &options)?;
    let sink = CollectSink::new();
    let mut flow = job.start(
        &[("readings", schema())],
        vec![("out", Box::new(sink.clone()))],
    )?;
    let mut at = 0;
    let mut i = 0;
    while at < events.len() {
        let n = sizes[i % sizes.len()].max(1).min(events.len() - at);
        flow.push("readings", batch(&events[at..at + n])).unwrap();
        at += n;
        i += 1;
    }
    flow.finish().unwrap();
    Ok(sorted_rows(&sink))
}

/// The rows a sink got, as sorted text lines.
fn sorted_rows(sink: &CollectSink) -> Vec<String> {
    let text = pretty_format_batches(&sink.batches()).unwrap().to_string();
    let mut rows: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("| d") && !l.starts_with("| device_id"))
        // Cells without the padding, which depends on the other rows.
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>().join("|"))
        .collect();
    rows.sort();
    rows
}

/// Events of up to 4 devices, in time order, 0-3 s apart.
fn sorted_events() -> impl Strategy<Value = Vec<Event>> {
    events_apart(0)
}

/// Events of up to 4 devices, in time order, `min_gap` ms to 3 s apart.
fn events_apart(min_gap: i64) -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec(
        (
            0u8..4,
            min_gap..3000,
            prop::option::weighted(0.9, 0.0f64..10.0),
        ),
        1..60,
    )
    .prop_map(|raw| {
        let mut t = 0;
        raw.into_iter()
            .map(|(d, gap, v)| {
                t += gap;
                (d, t, v.map(|x| (x * 4.0).round() / 4.0))
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn batching_never_changes_the_output(
        events in sorted_events(),
        sizes in prop::collection::vec(1usize..7, 1..5),
        query in prop::sample::select(QUERIES),
    ) {
        let whole = run(query, &events, &[events.len()], 0).unwrap();
        let split = run(query, &events, &sizes, 0).unwrap();
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn shuffling_within_the_tolerance_never_changes_windowed_output(
        // Distinct times: events of the same time are taken in arrival
        // order (as in ASA), which a shuffle changes, and LAG sees it.
        events in events_apart(1),
        delays in prop::collection::vec(0i64..5000, 60),
        query in prop::sample::select(&QUERIES[..QUERIES.len() - 1]),
    ) {
        // Each event arrives up to 5 s after its time; with a 5 s tolerance
        // none is late, so the windows are those of the sorted stream.
        let mut shuffled: Vec<(i64, Event)> = events.iter().zip(&delays).map(|(e, d)| (e.1 + d, *e)).collect();
        shuffled.sort_by_key(|(arrival, _)| *arrival);
        let shuffled: Vec<Event> = shuffled.into_iter().map(|(_, e)| e).collect();
        let sorted = run(query, &events, &[7], 5000).unwrap();
        let arrived = run(query, &shuffled, &[7], 5000).unwrap();
        prop_assert_eq!(arrived, sorted);
    }

    /// Each device's clock is shifted by up to three hours, and its events
    /// may arrive up to 5 s out of order (the tolerance): over substreams,
    /// the rows of a device are those of a job that reads that device alone.
    #[test]
    fn substreams_are_independent(
        events in events_apart(1),
        shifts in prop::collection::vec(0i64..10_800_000, 4),
        delays in prop::collection::vec(0i64..5000, 60),
        sizes in prop::collection::vec(1usize..7, 1..5),
        query in prop::sample::select(SUBSTREAM_QUERIES),
    ) {
        let mut arrivals: Vec<(i64, Event)> = events
            .iter()
            .zip(&delays)
            .map(|(e, d)| {
                let t = e.1 + shifts[e.0 as usize];
                // Arrival order: by the unshifted time plus the delay.
                (e.1 + d, (e.0, t, e.2))
            })
            .collect();
        arrivals.sort_by_key(|(arrival, _)| *arrival);
        let skewed: Vec<Event> = arrivals.into_iter().map(|(_, e)| e).collect();
        let whole = run(query, &skewed, &sizes, 5000).unwrap();
        let mut alone = Vec::new();
        for device in 0..4u8 {
            let own: Vec<Event> = skewed.iter().copied().filter(|e| e.0 == device).collect();
            if !own.is_empty() {
                alone.extend(run(query, &own, &[7], 5000).unwrap());
            }
        }
        alone.sort();
        prop_assert_eq!(whole, alone);
    }

    /// A JOIN of two inputs gives the same rows however their batches
    /// interleave: each input keeps its own order, but one may run far
    /// ahead of the other or end first.
    #[test]
    fn a_join_does_not_depend_on_how_its_inputs_interleave(
        left in sorted_events(),
        right in sorted_events(),
        turns in prop::collection::vec(any::<bool>(), 1..200),
        sizes in prop::collection::vec(1usize..5, 1..4),
    ) {
        let query = "SELECT a.device_id, a.v AS va, b.v AS vb, System.Timestamp() AS t
             INTO out FROM left_in a TIMESTAMP BY ts
             LEFT JOIN right_in b TIMESTAMP BY ts
               ON a.device_id = b.device_id AND DATEDIFF(second, a, b) BETWEEN -3 AND 5";
        let interleaved = |turns: &[bool]| -> Vec<String> {
            let job = Job::parse(query).unwrap();
            let sink = CollectSink::new();
            let mut flow = job
                .start(
                    &[("left_in", schema()), ("right_in", schema())],
                    vec![("out", Box::new(sink.clone()))],
                )
                .unwrap();
            let (mut l, mut r, mut i) = (0, 0, 0);
            while l < left.len() || r < right.len() {
                let n = sizes[i % sizes.len()];
                let take_left = r >= right.len() || (l < left.len() && turns[i % turns.len()]);
                if take_left {
                    let m = n.min(left.len() - l);
                    flow.push("left_in", batch(&left[l..l + m])).unwrap();
                    l += m;
                    if l == left.len() {
                        flow.end_input("left_in").unwrap();
                    }
                } else {
                    let m = n.min(right.len() - r);
                    flow.push("right_in", batch(&right[r..r + m])).unwrap();
                    r += m;
                    if r == right.len() {
                        flow.end_input("right_in").unwrap();
                    }
                }
                i += 1;
            }
            flow.finish().unwrap();
            sorted_rows(&sink)
        };
        let left_first: Vec<bool> = vec![true];
        let right_first: Vec<bool> = vec![false];
        let mixed = interleaved(&turns);
        prop_assert_eq!(&interleaved(&left_first), &mixed);
        prop_assert_eq!(&interleaved(&right_first), &mixed);
    }
}
