//! Parsing speed: a 2,000-line job file must parse well under 50 ms.
//!
//! `cargo bench -p iotql-dsl --bench parse`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// A job file of about `lines` lines mixing the constructs of real jobs.
fn job_file(lines: usize) -> String {
    let mut out = String::from(
        "CREATE INPUT readings WITH (connector = 'kafka', brokers = 'localhost:9092', topic = 'readings');\n",
    );
    let mut i = 0;
    while out.lines().count() < lines {
        out.push_str(&format!(
            "-- step {i}\n\
             WITH hot{i} AS (\n\
             \x20   SELECT device_id, ts, temperature_c, LAG(temperature_c) OVER (PARTITION BY device_id LIMIT DURATION(minute, 5)) AS prev\n\
             \x20   FROM readings TIMESTAMP BY ts\n\
             \x20   WHERE temperature_c > {i} AND battery_pct BETWEEN 10 AND 90 AND device_id LIKE 'dev-%'\n\
             )\n\
             SELECT device_id, System.Timestamp() AS window_end, COUNT(*) AS n,\n\
             \x20      ROUND(AVG(temperature_c), 2) AS avg_t, MAX(prev) AS max_prev,\n\
             \x20      CASE WHEN MAX(temperature_c) > 30 THEN 'hot' ELSE 'ok' END AS status\n\
             INTO out{i}\n\
             FROM hot{i}\n\
             GROUP BY device_id, HoppingWindow(minute, 10, 1)\n\
             HAVING COUNT(*) > 2;\n\n"
        ));
        i += 1;
    }
    out
}

fn bench_parse(c: &mut Criterion) {
    let source = job_file(2000);
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(source.len() as u64));
    group.bench_function("job_2000_lines", |b| {
        b.iter(|| iotql_dsl::parse(std::hint::black_box(&source)).expect("valid job"))
    });
    group.bench_function("job_2000_lines_parse_and_check", |b| {
        b.iter(|| {
            iotql_dsl::parse_and_check(std::hint::black_box(&source), &Default::default())
                .expect("valid job")
        })
    });
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
