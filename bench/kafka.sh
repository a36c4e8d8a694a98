#!/usr/bin/env bash
# The Kafka benchmark of docs/performance.md ("Kafka (broker issue)"):
#
#   bench/kafka.sh [IOTQL_BINARY] [noida|tansu]
#       (defaults: target/release/iotql, noida)
#
# Starts its own broker (scripts/kafka-up on a free port; stopped at exit),
# then measures
#   1. throughput: N simulated readings (KBENCH_EVENTS, default 2000000) in a
#      4-partition topic, produced by `iotql simulate --to kafka://`; the alert
#      filter run over them by `iotql run` with `until=end`, to a CSV file and
#      to a Kafka topic, beside the same job over the same readings in a CSV
#      file (same seed), KBENCH_REPEAT times interleaved (default 3);
#   2. latency: the kafka_bench example (cli/examples/kafka_bench.rs) produces
#      KBENCH_RATE readings/s (default 10000) for KBENCH_WARMUP s (default 5)
#      and KBENCH_DURATION s (default 30), one in ten an alert, to a live
#      `iotql run` job that writes the alerts to another topic; the example
#      reads them and prints the produce-to-alert delays.
# and prints markdown table rows for docs/performance.md.
#
# The example is built with `cargo build --release -p iotql-cli --example
# kafka_bench` unless KBENCH_PROBE names a built one.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
iotql="$(realpath "${1:-$root/target/release/iotql}")"
broker="${2:-noida}"
events="${KBENCH_EVENTS:-2000000}"
repeat="${KBENCH_REPEAT:-3}"
rate="${KBENCH_RATE:-10000}"
warmup="${KBENCH_WARMUP:-5}"
duration="${KBENCH_DURATION:-30}"
seed=7
start=2026-01-05T00:00:00Z

if [ ! -x "$iotql" ]; then
    echo "bench/kafka.sh: no iotql binary at $iotql (cargo build --release -p iotql-cli)" >&2
    exit 2
fi
probe="${KBENCH_PROBE:-}"
if [ -z "$probe" ]; then
    (cd "$root" && cargo build --quiet --release -p iotql-cli --example kafka_bench)
    probe="$root/target/release/examples/kafka_bench"
fi

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export IOTQL_KAFKA_PORT="$port"
brokers="127.0.0.1:$port"
work="$(mktemp -d "${TMPDIR:-/tmp}/iotql-kbench.XXXXXX")"
job_pid=""
cleanup() {
    if [ -n "$job_pid" ] && kill -0 "$job_pid" 2>/dev/null; then
        kill -INT "$job_pid" 2>/dev/null || true
        wait "$job_pid" 2>/dev/null || true
    fi
    "$root/scripts/kafka-down" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# Seconds since the epoch, with nanoseconds.
now() { date +%s.%N; }
# The "N events/s" of a summary (iotql run's last line, or simulate's line).
summary_rate() { grep -Eo '[0-9.]+[kM]? events/s' "$1" | tail -n 1 | cut -d' ' -f1; }
# events / seconds, as 1.23M or 456.7k.
per_second() {
    python3 -c 'import sys
n = float(sys.argv[1]) / float(sys.argv[2])
print(f"{n/1e6:.2f}M" if n >= 1e6 else f"{n/1e3:.1f}k")' "$1" "$2"
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "bench/kafka.sh: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$root" rev-parse --short HEAD), broker $broker on $brokers, $(nproc) cores, load:$(uptime | sed 's/.*load average://')" >&2
"$root/scripts/kafka-up" "$broker" >&2

# --- 1. Throughput --------------------------------------------------------
if [ "${KBENCH_SKIP_THROUGHPUT:-}" != 1 ]; then
"$probe" create-topics --brokers "$brokers" --partitions 4 readings alerts_out >&2

t0="$(now)"
"$iotql" simulate --count "$events" --rate max --seed "$seed" --start "$start" \
    --malformed 0 --duplicates 0 --out-of-order 0 \
    --to "kafka://$brokers/readings?key=device_id" 2>"$work/produce.err"
t1="$(now)"
produce_s="$(echo "$t1 - $t0" | bc -l)"
cat "$work/produce.err" >&2
"$iotql" simulate --count "$events" --rate max --seed "$seed" --start "$start" \
    --malformed 0 --duplicates 0 --out-of-order 0 \
    --to "csv:$work/readings.csv" 2>"$work/produce_csv.err"
cat "$work/produce_csv.err" >&2

cat >"$work/filter.asaql" <<'EOF'
-- The alert filter (W2's WHERE) over the simulated readings.
SELECT device_id, ts, temperature_c, battery_pct
INTO alerts
FROM readings TIMESTAMP BY ts
WHERE temperature_c > 30 OR battery_pct < 10;
EOF

# Runs the filter job; sets $s (wall seconds) and $r (the summary's events/s).
run_filter() {
    local name="$1" input="$2" output="$3"
    local t0 t1
    t0="$(now)"
    if ! "$iotql" run "$work/filter.asaql" --input "readings=$input" --output "alerts=$output" \
        --late-arrival 3650d --dead-letter "$work/$name.dead.jsonl" 2>"$work/$name.err"; then
        cat "$work/$name.err" >&2
        exit 1
    fi
    t1="$(now)"
    s="$(echo "$t1 - $t0" | bc -l)"
    r="$(summary_rate "$work/$name.err")"
}

# noida answers a fetch with everything the partitions hold, past librdkafka's
# fetch.max.bytes (a 1M-reading topic gives a 111 MB response, beyond the
# default receive.message.max.bytes of 100 MB): let the consumer take it.
big="receive.message.max.bytes=2147483647"
declare -a file_s=() kcsv_s=() kkafka_s=() file_r=() kcsv_r=() kkafka_r=()
s="" r=""
for i in $(seq 1 "$repeat"); do
    run_filter "file-$i" "csv:$work/readings.csv" "csv:$work/alerts-file.csv"
    file_s+=("$s"); file_r+=("$r")
    run_filter "kcsv-$i" \
        "kafka://$brokers/readings?group_id=bench-csv-$i&start=earliest&until=end&session.timeout.ms=6000&$big" \
        "csv:$work/alerts-kafka.csv"
    kcsv_s+=("$s"); kcsv_r+=("$r")
    run_filter "kkafka-$i" \
        "kafka://$brokers/readings?group_id=bench-kafka-$i&start=earliest&until=end&session.timeout.ms=6000&$big" \
        "kafka://$brokers/alerts_out?key=device_id"
    kkafka_s+=("$s"); kkafka_r+=("$r")
    echo "run $i: file ${file_s[-1]} s, kafka->csv ${kcsv_s[-1]} s, kafka->kafka ${kkafka_s[-1]} s" >&2
done
cat "$work/kcsv-1.err" >&2

# The job over Kafka must give the rows of the job over the file.
in_events="$(grep -Eo 'input +readings +[0-9]+' "$work/kcsv-1.err" | awk '{print $3}')"
if cmp -s <(tail -n +2 "$work/alerts-file.csv" | sort) <(tail -n +2 "$work/alerts-kafka.csv" | sort) \
    && [ "$in_events" = "$events" ]; then
    agrees=yes
else
    agrees="NO ($in_events events read)"
fi
alerts="$(($(wc -l <"$work/alerts-file.csv") - 1))"

fs="$(median "${file_s[@]}")"
ks="$(median "${kcsv_s[@]}")"
kk="$(median "${kkafka_s[@]}")"
ratio_csv="$(printf %.2f "$(echo "$fs / $ks" | bc -l)")"
ratio_kafka="$(printf %.2f "$(echo "$fs / $kk" | bc -l)")"
fi

# --- 2. Latency -----------------------------------------------------------
# On a fresh broker: not one that holds the throughput runs' millions of messages.
"$root/scripts/kafka-down" >&2
"$root/scripts/kafka-up" "$broker" >&2
"$probe" create-topics --brokers "$brokers" --partitions 4 lat_in lat_out >&2
cat >"$work/latency.asaql" <<EOF
-- A live alert job: every reading carries sent_at, its produce time.
CREATE INPUT readings WITH (
    connector = 'kafka', brokers = '$brokers', topic = 'lat_in',
    group_id = 'bench-latency', start = 'latest', [session.timeout.ms] = '6000',
    schema = 'device_id nvarchar(max), ts datetime, temperature_c float, battery_pct float, sent_at bigint'
);
CREATE OUTPUT alerts WITH (connector = 'kafka', brokers = '$brokers', topic = 'lat_out');

SELECT device_id, ts, temperature_c, battery_pct, sent_at
INTO alerts
FROM readings TIMESTAMP BY ts
WHERE temperature_c > 30 OR battery_pct < 10;
EOF
IOTQL_LOG=info "$iotql" run "$work/latency.asaql" --dead-letter "$work/latency.dead.jsonl" \
    2>"$work/latency.err" &
job_pid=$!
# The job's consumer has its partitions before the load starts.
for _ in $(seq 1 600); do
    grep -q 'assigned' "$work/latency.err" && break
    kill -0 "$job_pid" 2>/dev/null || { cat "$work/latency.err" >&2; exit 1; }
    sleep 0.1
done
grep -q 'assigned' "$work/latency.err" || { echo "the job got no partitions in 60 s" >&2; exit 1; }
"$probe" latency --brokers "$brokers" --input lat_in --output lat_out \
    --rate "$rate" --warmup "$warmup" --duration "$duration" \
    --linger-ms "${KBENCH_LINGER_MS:-5}" ${KBENCH_DUMP:+--dump "$KBENCH_DUMP"} >"$work/latency.out"
kill -INT "$job_pid"
wait "$job_pid" || true
job_pid=""
grep -v ' INFO ' "$work/latency.err" >&2 || true
cat "$work/latency.out" >&2

field() { grep "^$1 " "$work/latency.out" | grep -Eo "$2=[0-9.]+" | cut -d= -f2; }

# --- Markdown -------------------------------------------------------------
if [ "${KBENCH_SKIP_THROUGHPUT:-}" != 1 ]; then
    cat <<EOF

Throughput, $events readings (alert filter, $alerts alerts), median of $repeat interleaved runs, broker $broker:

| run | wall s | events/s (N / wall) | summary events/s | throughput vs file | agrees with file |
|---|---|---|---|---|---|
| \`iotql simulate --to kafka://\` (4 partitions, key=device_id) | $(printf %.2f "$produce_s") | $(per_second "$events" "$produce_s") | $(summary_rate "$work/produce.err") | | |
| file → filter → CSV file | $(printf %.2f "$fs") | $(per_second "$events" "$fs") | $(median "${file_r[@]}") | 1.00 | reference |
| Kafka → filter → CSV file | $(printf %.2f "$ks") | $(per_second "$events" "$ks") | $(median "${kcsv_r[@]}") | $ratio_csv | $agrees |
| Kafka → filter → Kafka topic | $(printf %.2f "$kk") | $(per_second "$events" "$kk") | $(median "${kkafka_r[@]}") | $ratio_kafka | |
EOF
fi
cat <<EOF

Latency, produce → alert, $rate readings/s for ${duration} s after ${warmup} s of warm-up, 1 in 10 an alert, broker $broker ($(field load rate) readings/s achieved, $(field load alerts_received) of $(field load alerts_expected) alerts):

| delay from \`sent_at\` to | alerts | p50 ms | p90 ms | p99 ms | max ms |
|---|---|---|---|---|---|
| iotql's produce of the alert (output CreateTime) | $(field "latency created_ms" count) | $(field "latency created_ms" p50) | $(field "latency created_ms" p90) | $(field "latency created_ms" p99) | $(field "latency created_ms" max) |
| the alert received by a consumer | $(field "latency received_ms" count) | $(field "latency received_ms" p50) | $(field "latency received_ms" p90) | $(field "latency received_ms" p99) | $(field "latency received_ms" max) |
EOF
