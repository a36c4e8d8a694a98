#!/usr/bin/env bash
# The HTTP API under load, and what serving costs a job (docs/performance.md,
# "HTTP API"):
#
#   bench/api.sh [CLIENTS] [SECONDS] [EVENTS]      (defaults: 8, 20, 2000000)
#
# 1. Latency: queries/dashboard.asaql (every reading upserted into SQLite,
#    10-second windows per device and per site into SQLite, alerts to a log)
#    over a simulated fleet of 1,000 devices reporting every 20 ms, in real
#    time: 50,000 events/s, event time = the wall clock. With the server on
#    loopback, CLIENTS concurrent clients (cli/examples/api_load.rs, a
#    connection each, requests back to back) ask one endpoint for SECONDS
#    after a 3 s warm-up; p50/p90/p99/max per endpoint, and the job's event
#    rate over the same time (from /api/jobs), which must stay at 50,000/s.
#    Then the same over tables that have grown: the job first backfills an
#    hour of the fleet reporting every second (3.6M readings, 360,000
#    windows of 10 s), then runs live over those tables.
# 2. Throughput: the same job over EVENTS simulated events as fast as it
#    goes (rate=max), with the server off, on and idle, and on with CLIENTS
#    clients asking for the latest rows all along; the job's time from its
#    summary, each relative to the run without the server, REPEAT (3) times
#    interleaved, medians.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
clients="${1:-8}"
seconds="${2:-20}"
events="${3:-2000000}"
repeat="${REPEAT:-3}"
cd "$root"
cargo build --release -q -p iotql-cli --bin iotql --example api_load
target="${CARGO_TARGET_DIR:-$root/target}/release"
iotql="$target/iotql"
load="$target/examples/api_load"
work="$(mktemp -d)"
pid=""
cleanup() {
    [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cp queries/dashboard.asaql "$work/"

# Starts the job (server on), waits for its address; sets pid and base.
# KEEP=1 keeps the outputs of an earlier run.
start() {
    local input="$1" log="$2"
    [ "${KEEP:-}" = 1 ] || rm -rf "$work/out"
    rm -rf "$work/dashboard.state"
    "$iotql" run "$work/dashboard.asaql" --input "readings=$input" --checkpoint-interval off \
        --http 127.0.0.1:0 2>"$log" &
    pid=$!
    base=""
    for _ in $(seq 600); do
        base=$(sed -n 's|^serving the API and dashboard on \(http://[^/]*\)/$|\1|p' "$log")
        [ -n "$base" ] && break
        sleep 0.1
    done
    [ -n "$base" ] || { cat "$log" >&2; exit 1; }
}

events_in() {
    python3 -c "import json,urllib.request; print(json.load(urllib.request.urlopen('$base/api/jobs/dashboard'))['events_in'])"
}

live="sim:?sites=10&zones=10&devices=10&interval=20ms&replay_speed=1"
# The latency of each endpoint under load, the job running live.
latencies() {
    # Let the windows fill (10-second windows, the first closed after 10 s).
    sleep 15
    for endpoint in \
        "/api/jobs/dashboard/outputs/devices/latest?limit=100" \
        "/api/jobs/dashboard/outputs/device_windows/latest?by=device_id&limit=1000" \
        "/api/jobs/dashboard/outputs/device_windows/rows?from={from}&to={to}&limit=1000" \
        "/api/jobs/dashboard/outputs/alerts/latest?limit=50"; do
        before=$(events_in)
        t0=$(date +%s.%N)
        result=$("$load" --base "$base" --path "$endpoint" --clients "$clients" --warmup 3 \
            --duration "$seconds" --window 60 2>/dev/null)
        after=$(events_in)
        t1=$(date +%s.%N)
        rate=$(python3 -c "print(f'{($after - $before) / ($t1 - $t0):,.0f}')")
        echo "$endpoint: $result; job: $rate events/s"
    done
    kill -INT "$pid"
    wait "$pid" || true
    pid=""
}

echo "== latency: $clients clients, ${seconds}s per endpoint, job at 50,000 events/s"
start "$live" "$work/live.log"
latencies

echo "== latency over grown tables: an hour of 1,000 devices first, then the same"
rm -rf "$work/out" "$work/dashboard.state"
"$iotql" run "$work/dashboard.asaql" --checkpoint-interval off \
    --input "readings=sim:?sites=10&zones=10&devices=10&interval=1s&rate=max&count=3600000&start=2026-01-01T00:00:00Z&seed=7" \
    2>"$work/backfill.log"
python3 -c "
import sqlite3
db = sqlite3.connect('$work/out/dashboard.db')
print('tables:', ', '.join(f'{t} {db.execute(f\"SELECT count(*) FROM {t}\").fetchone()[0]:,} rows' for t in ('devices', 'device_windows', 'site_windows')))"
KEEP=1 start "$live" "$work/grown.log"
latencies

echo "== throughput: $events events as fast as they go, median of $repeat"
input="sim:?sites=10&zones=10&devices=10&interval=20ms&rate=max&count=$events&start=2026-01-01T00:00:00Z&seed=7"
seconds_of() { sed -n 's/^.*: finished in \([0-9.]*\) s.*$/\1/p' "$1"; }
declare -A took
for round in $(seq "$repeat"); do
    for mode in off idle loaded; do
        log="$work/$mode-$round.log"
        if [ "$mode" = off ]; then
            rm -rf "$work/out" "$work/dashboard.state"
            "$iotql" run "$work/dashboard.asaql" --input "readings=$input" \
                --checkpoint-interval off 2>"$log"
        else
            start "$input" "$log"
            if [ "$mode" = loaded ]; then
                "$load" --base "$base" --path "/api/jobs/dashboard/outputs/devices/latest?limit=100" \
                    --clients "$clients" --warmup 0 --duration 3600 >/dev/null 2>&1 &
                loader=$!
            fi
            wait "$pid" || true
            pid=""
            [ "$mode" = loaded ] && { kill "$loader" 2>/dev/null || true; wait "$loader" 2>/dev/null || true; }
        fi
        took[$mode]="${took[$mode]:-} $(seconds_of "$log")"
    done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
off=$(echo "${took[off]}" | median)
for mode in off idle loaded; do
    m=$(echo "${took[$mode]}" | median)
    python3 -c "print(f'server $mode: {$m:.2f} s (runs:${took[$mode]}), {$events / $m:,.0f} events/s, {$off / $m:.2f}x the job without the server')"
done
