#!/usr/bin/env bash
# What checkpoints cost (docs/performance.md, "Checkpoints"): the standard
# workloads W1 (5-minute tumbling per device) and W3 (10-minute windows
# hopping every minute: ten open windows per device) of ../shared/bench over
# the same readings, with --checkpoint-interval off, 10s (the default), 1s
# and 100ms, REPEAT times interleaved; the median time, events/s, the
# throughput relative to `off`, and the size of a checkpoint of the job.
#
#   bench/checkpoints.sh [IOTQL_BINARY] [SIZE] [REPEAT]
#       (defaults: target/release/iotql, 10m, 3)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
iotql="$(realpath "${1:-$root/target/release/iotql}")"
size="${2:-10m}"
repeat="${3:-3}"
shared="$root/../shared/bench"
cache="${IOTQL_BENCH_CACHE:-$HOME/.cache/iotql-bench}"
data="$cache/readings_$size.csv"
mkdir -p "$cache"
[ -f "$data" ] || python3 "$shared/gen_readings.py" --events "$size" --out "$data"
events=$(python3 -c "import json; print(json.load(open('$data.meta.json'))['events'])" 2>/dev/null ||
    echo $(($(wc -l <"$data") - 1)))
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

intervals=(off 10s 1s 100ms)
echo "| workload | --checkpoint-interval | median s | events/s | throughput vs off | checkpoint size |"
echo "|---|---|---|---|---|---|"
for w in w1 w3; do
    declare -A times=()
    for _ in $(seq "$repeat"); do
        for i in "${intervals[@]}"; do
            start=$(date +%s.%N)
            "$iotql" run "$shared/queries/$w.asaql" -q --checkpoint-interval "$i" \
                --state-dir "$work/state-$w-$i" \
                --input "input=csv:$data" --output "output=csv:$work/$w-$i.csv" >/dev/null
            times[$i]+=" $(echo "$(date +%s.%N) - $start" | bc)"
        done
    done
    # The size of one checkpoint of this job: stopped by SIGINT midway.
    "$iotql" run "$shared/queries/$w.asaql" -q --checkpoint-interval 1h --state-dir "$work/size-$w" \
        --input "input=csv:$data" --output "output=csv:$work/size-$w.csv" >/dev/null 2>&1 &
    pid=$!
    sleep 1
    kill -INT "$pid" 2>/dev/null || true
    wait "$pid" || true
    bytes=$( (find "$work/size-$w" -name 'chk-*' -printf '%s\n' 2>/dev/null || true) | sort -n | tail -1)
    median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
    base=$(echo "${times[off]}" | median)
    for i in "${intervals[@]}"; do
        m=$(echo "${times[$i]}" | median)
        echo "| $w | $i | $m | $(echo "$events / $m" | bc) | $(echo "scale=3; $base / $m" | bc) | ${bytes:-?} B |"
    done
    unset times
done
