#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::io::Cursor;

use iotql_engine::arrow::array::{Array, AsArray};
use iotql_engine::arrow::datatypes::{Float64Type, Int64Type, TimestampMicrosecondType};

use super::*;
use crate::file::OutputTarget;
use crate::file::csv::CsvSink;
use crate::file::jsonl::JsonLinesSink;

/// One message, flattened for comparison.
#[derive(Debug, Clone, PartialEq)]
enum Flat {
    Row(Row),
    Raw(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq)]
struct Row {
    device_id: String,
    site: String,
    zone: String,
    ts: i64,
    temperature_c: Option<f64>,
    humidity_pct: Option<f64>,
    co2_ppm: Option<i64>,
    occupancy: Option<i64>,
    battery_pct: Option<f64>,
}

impl Row {
    fn sensors_null(&self) -> bool {
        self.temperature_c.is_none()
            && self.humidity_pct.is_none()
            && self.co2_ppm.is_none()
            && self.occupancy.is_none()
            && self.battery_pct.is_none()
    }
}

fn flatten(messages: Vec<Message>) -> Vec<Flat> {
    let mut out = Vec::new();
    for m in messages {
        match m {
            Message::Malformed(p) => out.push(Flat::Raw(p)),
            Message::Rows(b) => {
                assert_eq!(b.schema(), schema());
                let text = |i: usize| b.column(i).as_string::<i32>().clone();
                let float = |i: usize| b.column(i).as_primitive::<Float64Type>().clone();
                let int = |i: usize| b.column(i).as_primitive::<Int64Type>().clone();
                let (id, site, zone) = (text(0), text(1), text(2));
                let ts = b.column(3).as_primitive::<TimestampMicrosecondType>();
                let (temp, hum, batt) = (float(4), float(5), float(8));
                let (co2, occ) = (int(6), int(7));
                let f = |a: &iotql_engine::arrow::array::Float64Array, r| {
                    a.is_valid(r).then(|| a.value(r))
                };
                let i = |a: &iotql_engine::arrow::array::Int64Array, r| {
                    a.is_valid(r).then(|| a.value(r))
                };
                for r in 0..b.num_rows() {
                    out.push(Flat::Row(Row {
                        device_id: id.value(r).to_string(),
                        site: site.value(r).to_string(),
                        zone: zone.value(r).to_string(),
                        ts: ts.value(r),
                        temperature_c: f(&temp, r),
                        humidity_pct: f(&hum, r),
                        co2_ppm: i(&co2, r),
                        occupancy: i(&occ, r),
                        battery_pct: f(&batt, r),
                    }));
                }
            }
        }
    }
    out
}

/// The first `n` messages of `config`'s fleet, taken `chunk` at a time.
fn play(config: &FleetConfig, n: usize, chunk: usize) -> (Vec<Flat>, FleetStats) {
    let mut fleet = config.build().unwrap();
    let mut messages = Vec::new();
    let mut left = n;
    while left > 0 {
        let got = fleet.next_messages(chunk.min(left)).unwrap();
        let count: usize = got
            .iter()
            .map(|m| match m {
                Message::Rows(b) => b.num_rows(),
                Message::Malformed(_) => 1,
            })
            .sum();
        if count == 0 {
            break;
        }
        left -= count;
        messages.extend(got);
    }
    (flatten(messages), fleet.stats())
}

fn rows(flat: &[Flat]) -> Vec<&Row> {
    flat.iter()
        .filter_map(|f| match f {
            Flat::Row(r) => Some(r),
            Flat::Raw(_) => None,
        })
        .collect()
}

fn no_faults() -> FleetConfig {
    FleetConfig {
        anomalies: 0.0,
        duplicates: 0.0,
        out_of_order: 0.0,
        malformed: 0.0,
        ..FleetConfig::default()
    }
}

/// Rows whose time is before a row handed out earlier.
fn count_out_of_order(rows: &[&Row]) -> u64 {
    let mut newest = i64::MIN;
    let mut late = 0;
    for r in rows {
        if r.ts < newest {
            late += 1;
        }
        newest = newest.max(r.ts);
    }
    late
}

#[test]
fn the_same_seed_gives_the_same_messages_whatever_the_chunks() {
    let config = FleetConfig {
        duplicates: 0.01,
        out_of_order: 0.02,
        malformed: 0.01,
        ..FleetConfig::default()
    };
    let (a, stats_a) = play(&config, 20_000, 8192);
    let (b, stats_b) = play(&config, 20_000, 7);
    let (c, _) = play(&config, 20_000, 1);
    assert_eq!(a.len(), 20_000);
    assert!(a == b && a == c, "the chunk size changed the messages");
    assert_eq!(stats_a, stats_b);
    assert!(stats_a.malformed > 0 && stats_a.out_of_order > 0 && stats_a.duplicates > 0);
}

#[test]
fn a_different_seed_gives_different_data() {
    let (a, _) = play(&FleetConfig::default(), 5_000, 1000);
    let other = FleetConfig {
        seed: 2,
        ..FleetConfig::default()
    };
    let (b, _) = play(&other, 5_000, 1000);
    let same = rows(&a)
        .iter()
        .zip(rows(&b))
        .filter(|(x, y)| x.temperature_c == y.temperature_c)
        .count();
    assert!(same < 1000, "{same} of 5000 temperatures equal");
}

#[test]
fn the_fleet_has_sites_times_zones_times_devices_devices() {
    let config = FleetConfig {
        sites: 2,
        zones_per_site: 3,
        devices_per_zone: 4,
        ..no_faults()
    };
    assert_eq!(config.devices(), 24);
    let (flat, _) = play(&config, 24 * 10, 100);
    let readings = rows(&flat);
    let ids: BTreeSet<&str> = readings.iter().map(|r| r.device_id.as_str()).collect();
    assert_eq!(ids.len(), 24);
    assert!(ids.contains("site-2/zone-3/dev-4"), "{ids:?}");
    for r in &readings {
        assert_eq!(
            r.device_id,
            format!(
                "{}/{}/{}",
                r.site,
                r.zone,
                r.device_id.rsplit('/').next().unwrap()
            )
        );
    }
    let (flat, _) = play(&no_faults(), 45 * 3, 1000);
    let ids: BTreeSet<String> = rows(&flat).iter().map(|r| r.device_id.clone()).collect();
    assert_eq!(ids.len(), 45, "the default fleet is 3 x 5 x 3");
}

#[test]
fn readings_sit_on_the_tick_grid_in_increasing_time() {
    let config = no_faults();
    let n = config.devices();
    let start = config.start.micros();
    let interval = 10_000_000;
    let (flat, _) = play(&config, n * 200, 512);
    let rows = rows(&flat);
    assert_eq!(rows.len(), n * 200);
    let first_tick: Vec<&str> = rows[..n].iter().map(|r| r.device_id.as_str()).collect();
    for (i, r) in rows.iter().enumerate() {
        let tick = (i / n) as i64;
        let offset = r.ts - start - tick * interval;
        assert!(
            (0..interval).contains(&offset),
            "row {i}: {} is not in tick {tick}",
            r.ts
        );
        assert_eq!(r.ts % 1000, 0, "whole milliseconds");
        assert_eq!(r.device_id, first_tick[i % n], "row {i}: devices in turn");
        if i > 0 {
            assert!(r.ts > rows[i - 1].ts, "row {i}: time went back");
        }
    }
}

#[test]
fn a_duration_ends_the_fleet_on_the_grid() {
    let config = FleetConfig {
        duration: Some(Duration::from_secs(60)),
        out_of_order: 0.2,
        ..FleetConfig::default()
    };
    let mut fleet = config.build().unwrap();
    let mut messages = Vec::new();
    while !fleet.is_finished() {
        messages.extend(fleet.next_messages(100).unwrap());
    }
    assert!(fleet.next_messages(100).unwrap().is_empty());
    let stats = fleet.stats();
    let flat = flatten(messages);
    // 6 ticks of 45 readings, each sent once, plus the second copies.
    assert_eq!(
        flat.len() as u64,
        6 * 45 + stats.duplicates,
        "held readings are sent at the end"
    );
    let end = config.start.micros() + 60_000_000;
    assert!(rows(&flat).iter().all(|r| r.ts < end));
}

#[test]
fn shares_are_roughly_honoured() {
    let config = FleetConfig {
        anomalies: 0.05,
        duplicates: 0.02,
        out_of_order: 0.03,
        malformed: 0.01,
        battery_drain: false,
        ..FleetConfig::default()
    };
    let (flat, stats) = play(&config, 100_000, 8192);
    assert_eq!(stats.events, 100_000);
    let readings = 100_000.0 - stats.duplicates as f64;
    let near = |what: &str, got: u64, share: f64| {
        let expected = share * readings;
        assert!(
            (got as f64 - expected).abs() < 0.15 * expected,
            "{what}: {got}, expected about {expected:.0}"
        );
    };
    near("malformed", stats.malformed, 0.01);
    near("out of order", stats.out_of_order, 0.99 * 0.03);
    near("duplicates", stats.duplicates, 0.99 * 0.97 * 0.02);
    near("anomalies", stats.anomalies, 0.05 * 0.99);
    // The counts are what a reader of the messages sees.
    let raw = flat.iter().filter(|f| matches!(f, Flat::Raw(_))).count();
    assert_eq!(raw as u64, stats.malformed);
    let rows = rows(&flat);
    assert_eq!(count_out_of_order(&rows), stats.out_of_order);
    let repeated = flat
        .windows(2)
        .filter(|w| matches!(w, [Flat::Row(a), Flat::Row(b)] if a == b))
        .count();
    assert_eq!(repeated as u64, stats.duplicates);
}

#[test]
fn faults_reorder_and_repeat_the_same_readings() {
    let clean = no_faults();
    let faulty = FleetConfig {
        duplicates: 0.05,
        out_of_order: 0.05,
        ..no_faults()
    };
    let n = 45 * 400;
    let (a, _) = play(&clean, n, 4096);
    let (b, stats) = play(&faulty, n + 3000, 4096);
    let mut deduplicated: Vec<&Row> = rows(&b);
    deduplicated.dedup();
    assert_eq!(
        deduplicated.len() as u64 + stats.duplicates,
        rows(&b).len() as u64
    );
    let late = count_out_of_order(&deduplicated);
    assert_eq!(late, stats.out_of_order);
    assert!(late > 500, "{late}");
    // In time order, they are the clean readings.
    let key = |r: &&Row| (r.ts, r.device_id.clone());
    deduplicated.sort_by_key(key);
    let clean_rows = rows(&a);
    let upto = deduplicated.len().min(clean_rows.len()) - 200;
    assert_eq!(&deduplicated[..upto], &clean_rows[..upto]);
    // Late by at most two ticks (and the slot).
    let mut newest = i64::MIN;
    for r in &deduplicated_in_order(&b) {
        assert!(
            r.ts > newest.saturating_sub(30_000_000),
            "{} is too late",
            r.ts
        );
        newest = newest.max(r.ts);
    }
}

fn deduplicated_in_order(flat: &[Flat]) -> Vec<&Row> {
    let mut rows = rows(flat);
    rows.dedup();
    rows
}

#[test]
fn anomalies_come_with_a_share_and_only_then() {
    let hot = |r: &&&Row| r.temperature_c.is_some_and(|t| t > 32.0);
    let spike = |r: &&&Row| r.co2_ppm.is_some_and(|c| c >= 2000);
    let (calm, stats) = play(&no_faults(), 50_000, 8192);
    assert_eq!(stats.anomalies, 0);
    let calm = rows(&calm);
    assert_eq!(calm.iter().filter(hot).count(), 0);
    assert_eq!(calm.iter().filter(spike).count(), 0);
    let config = FleetConfig {
        anomalies: 0.02,
        ..no_faults()
    };
    let (wild, stats) = play(&config, 50_000, 8192);
    let wild = rows(&wild);
    assert!(stats.anomalies > 500, "{stats:?}");
    let (hot_n, spike_n) = (
        wild.iter().filter(hot).count(),
        wild.iter().filter(spike).count(),
    );
    assert!(
        hot_n > 100 && spike_n > 100,
        "{hot_n} hot, {spike_n} spikes"
    );
    assert!((hot_n + spike_n) as u64 <= stats.anomalies);
    // Anomalies change the anomalous readings, nothing else.
    let same = calm.iter().zip(&wild).filter(|(a, b)| a == b).count() as u64;
    assert_eq!(same + stats.anomalies, 50_000);
    assert!(
        calm.iter()
            .zip(&wild)
            .all(|(a, b)| a.ts == b.ts && a.battery_pct == b.battery_pct)
    );
}

#[test]
fn empty_batteries_report_nulls() {
    let config = FleetConfig {
        interval: Duration::from_secs(600),
        ..no_faults()
    };
    // Three days.
    let (flat, _) = play(&config, 45 * 432, 8192);
    let mut by_device: HashMap<&str, Vec<&Row>> = HashMap::new();
    for r in rows(&flat) {
        by_device.entry(&r.device_id).or_default().push(r);
    }
    let mut emptied = 0;
    for (device, readings) in &by_device {
        let mut empty = false;
        let mut last = f64::MAX;
        for r in readings {
            if empty {
                assert!(r.sensors_null(), "{device}: a reading after empty: {r:?}");
                continue;
            }
            let battery = r.battery_pct.unwrap();
            assert!(battery <= last, "{device}: the battery charged itself");
            assert!(r.temperature_c.is_some() && r.co2_ppm.is_some());
            last = battery;
            empty = battery == 0.0;
        }
        emptied += usize::from(empty);
    }
    assert!(
        emptied >= 5,
        "only {emptied} of 45 devices emptied in 3 days"
    );
    assert!(emptied < 45, "every device emptied in 3 days");

    let kept = FleetConfig {
        battery_drain: false,
        ..config
    };
    let (flat, _) = play(&kept, 45 * 432, 8192);
    let mut levels: HashMap<&str, f64> = HashMap::new();
    for r in rows(&flat) {
        assert!(!r.sensors_null());
        let level = *levels.entry(&r.device_id).or_insert(r.battery_pct.unwrap());
        assert_eq!(r.battery_pct, Some(level));
    }
}

/// Every message of `config`'s first `n`, written to `sink`; the file's text.
fn written(config: &FleetConfig, n: usize, sink: &mut dyn Sink, path: &std::path::Path) -> Vec<u8> {
    let mut fleet = config.build().unwrap();
    sink.start(&fleet.schema()).unwrap();
    let mut left = n;
    while left > 0 {
        let messages = fleet.next_messages(left.min(1000)).unwrap();
        write_messages(sink, &messages).unwrap();
        left -= 1000.min(left);
    }
    sink.finish().unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn malformed_json_lines_fail_to_parse_as_the_event_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.jsonl");
    let config = FleetConfig {
        malformed: 0.1,
        ..FleetConfig::default()
    };
    let mut sink = JsonLinesSink::new("sim", OutputTarget::Path(path.clone()));
    let text = written(&config, 5000, &mut sink, &path);
    let (flat, stats) = play(&config, 5000, 1000);
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    assert_eq!(lines.len(), 5001, "one line a message");
    let parses = |line: &[u8]| {
        let mut decoder = iotql_engine::arrow::json::ReaderBuilder::new(schema())
            .build_decoder()
            .unwrap();
        decoder
            .decode(line)
            .and_then(|_| decoder.flush())
            .is_ok_and(|b| b.is_some_and(|b| b.num_rows() == 1))
    };
    let mut kinds = BTreeSet::new();
    for (line, message) in lines.iter().zip(&flat) {
        match message {
            Flat::Raw(payload) => {
                assert_eq!(*line, payload.as_slice(), "raw lines keep their place");
                assert!(!parses(line), "{}", String::from_utf8_lossy(line));
                let t = String::from_utf8_lossy(line);
                kinds.insert(match () {
                    _ if std::str::from_utf8(line).is_err() => "garbage",
                    _ if !t.ends_with('}') => "truncated",
                    _ if !t.contains("\"ts\"") => "missing",
                    _ => "bad value",
                });
            }
            Flat::Row(_) => assert!(parses(line), "{}", String::from_utf8_lossy(line)),
        }
    }
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    assert!(stats.malformed > 300, "{stats:?}");
}

#[test]
fn malformed_csv_records_fail_to_parse_as_the_event_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.csv");
    let config = FleetConfig {
        malformed: 0.1,
        wire: WireFormat::Csv,
        ..FleetConfig::default()
    };
    let mut sink = CsvSink::new("sim", OutputTarget::Path(path.clone()));
    let text = written(&config, 3000, &mut sink, &path);
    let (flat, stats) = play(&config, 3000, 1000);
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    assert_eq!(
        lines[0],
        b"device_id,site,zone,ts,temperature_c,humidity_pct,co2_ppm,occupancy,battery_pct"
    );
    assert_eq!(lines.len(), 3002, "a header, then one line a message");
    let parses = |line: &[u8]| {
        iotql_engine::arrow::csv::ReaderBuilder::new(schema())
            .with_header(false)
            .build(Cursor::new(line.to_vec()))
            .unwrap()
            .next()
            .is_some_and(|b| b.is_ok_and(|b| b.num_rows() == 1))
    };
    for (line, message) in lines[1..].iter().zip(&flat) {
        match message {
            Flat::Raw(payload) => {
                assert_eq!(*line, payload.as_slice(), "raw lines keep their place");
                assert!(!parses(line), "{}", String::from_utf8_lossy(line));
            }
            Flat::Row(_) => assert!(parses(line), "{}", String::from_utf8_lossy(line)),
        }
    }
    assert!(stats.malformed > 200, "{stats:?}");
}

#[test]
fn a_config_out_of_range_is_refused() {
    for config in [
        FleetConfig {
            sites: 0,
            ..FleetConfig::default()
        },
        FleetConfig {
            malformed: 1.5,
            ..FleetConfig::default()
        },
        FleetConfig {
            interval: Duration::ZERO,
            ..FleetConfig::default()
        },
    ] {
        assert!(config.build().is_err(), "{config:?}");
    }
}
