//! The load generator of `bench/api.sh`: `--clients` threads, each with a
//! connection of its own (kept alive), request one path of a running
//! `iotql run --http` server back to back, a warm-up then the measured
//! phase; prints the measured phase's request count, errors, requests per
//! second and the latency's p50, p90, p99 and max.
//!
//!     cargo run --release -p iotql-cli --example api_load -- \
//!         --base http://127.0.0.1:8080 --clients 8 --warmup 3 --duration 20 \
//!         --path '/api/jobs/dashboard/outputs/device_windows/rows?from={from}&to={to}&limit=1000' \
//!         --window 60
//!
//! In the path, `{from}` and `{to}` become the wall clock minus `--window`
//! seconds and the wall clock, in RFC 3339, at each request: a time range
//! that follows a live job's event time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Concurrent clients of the iotql HTTP API, timed (bench/api.sh)")]
struct Args {
    /// The server, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    base: String,
    /// The path to request, with `{from}` and `{to}` for a time range.
    #[arg(long)]
    path: String,
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seconds of requests not measured first.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Seconds of measured requests.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// The time range's length in seconds, ending now.
    #[arg(long, default_value_t = 60)]
    window: i64,
    /// The server's access token.
    #[arg(long, env = "IOTQL_HTTP_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// What one client measured: each measured request's latency, and the
/// requests that failed (a status other than 200, or no answer).
struct Measured {
    latencies: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
}

fn client(args: &Args, measuring: &AtomicBool, stop: &AtomicBool) -> Measured {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut measured = Measured {
        latencies: Vec::new(),
        errors: 0,
        first_error: None,
    };
    while !stop.load(Ordering::Relaxed) {
        let now = chrono::Utc::now();
        let from = now - chrono::Duration::seconds(args.window);
        let iso = |t: chrono::DateTime<chrono::Utc>| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        let url = format!(
            "{}{}",
            args.base,
            args.path
                .replace("{from}", &iso(from))
                .replace("{to}", &iso(now))
        );
        let mut request = agent.get(&url);
        if let Some(token) = &args.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let counted = measuring.load(Ordering::Relaxed);
        let started = Instant::now();
        let outcome = request.call().and_then(|mut r| {
            let status = r.status().as_u16();
            r.body_mut().read_to_vec().map(|body| (status, body.len()))
        });
        let took = started.elapsed();
        if !counted {
            continue;
        }
        match outcome {
            Ok((200, _)) => measured.latencies.push(took),
            Ok((status, _)) => {
                measured.errors += 1;
                measured
                    .first_error
                    .get_or_insert_with(|| format!("{url}: status {status}"));
            }
            Err(e) => {
                measured.errors += 1;
                measured
                    .first_error
                    .get_or_insert_with(|| format!("{url}: {e}"));
            }
        }
    }
    measured
}

fn main() {
    let args = Args::parse();
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let results: Vec<Measured> = thread::scope(|scope| {
        let clients: Vec<_> = (0..args.clients)
            .map(|_| scope.spawn(|| client(&args, &measuring, &stop)))
            .collect();
        thread::sleep(Duration::from_secs(args.warmup));
        measuring.store(true, Ordering::Relaxed);
        let started = Instant::now();
        thread::sleep(Duration::from_secs(args.duration));
        stop.store(true, Ordering::Relaxed);
        let results = clients
            .into_iter()
            .map(|c| c.join().expect("a client thread panicked"))
            .collect();
        eprintln!("measured for {:.1} s", started.elapsed().as_secs_f64());
        results
    });
    let mut latencies: Vec<Duration> = results
        .iter()
        .flat_map(|m| m.latencies.iter().copied())
        .collect();
    latencies.sort();
    let errors: u64 = results.iter().map(|m| m.errors).sum();
    if let Some(e) = results.iter().find_map(|m| m.first_error.as_ref()) {
        eprintln!("first error: {e}");
    }
    let at = |q: f64| {
        latencies
            .get(((q * latencies.len() as f64).ceil() as usize).saturating_sub(1))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "requests {} errors {} rate {:.0}/s p50 {:.2} ms p90 {:.2} ms p99 {:.2} ms max {:.2} ms",
        latencies.len(),
        errors,
        latencies.len() as f64 / args.duration as f64,
        at(0.5),
        at(0.9),
        at(0.99),
        latencies.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    );
}
