#!/usr/bin/env bash
# What the batch latency histogram costs (docs/performance.md, "Metrics"):
# the standard workload W1 (5-minute tumbling per device) of ../shared/bench
# through `iotql run`, with a binary that observes every batch and one that
# does not (the same source with the observation removed, see below), at
# each batch size given (the default 8192, and smaller ones: more batches,
# so more observations per event), REPEAT times interleaved; the median
# time, events/s and the throughput of the histogram's binary relative to
# the other's, with the number of batches observed.
#
#   bench/metrics.sh WITH_BINARY WITHOUT_BINARY [SIZE] [REPEAT] [BATCH_SIZE...]
#       (defaults: 10m, 5, 8192 256)
#
# The binary without the histogram: remove the observation (the clock
# readings and `observe`) from the pump, build, and put the source back:
#
#   cargo build --release -p iotql-cli && cp target/release/iotql /tmp/iotql-with
#   sed -i -e '/let started = Instant::now();/d' \
#       -e 's/self.batch_latency.observe(started.elapsed());//' cli/src/runner.rs
#   cargo build --release -p iotql-cli && cp target/release/iotql /tmp/iotql-without
#   git checkout cli/src/runner.rs
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
with="$(realpath "${1:?usage: bench/metrics.sh WITH_BINARY WITHOUT_BINARY [SIZE] [REPEAT] [BATCH_SIZE...]}")"
without="$(realpath "${2:?usage: bench/metrics.sh WITH_BINARY WITHOUT_BINARY [SIZE] [REPEAT] [BATCH_SIZE...]}")"
size="${3:-10m}"
repeat="${4:-5}"
shift $(($# < 4 ? $# : 4))
batch_sizes=("$@")
[ ${#batch_sizes[@]} -gt 0 ] || batch_sizes=(8192 256)
shared="$root/../shared/bench"
cache="${IOTQL_BENCH_CACHE:-$HOME/.cache/iotql-bench}"
data="$cache/readings_$size.csv"
mkdir -p "$cache"
[ -f "$data" ] || python3 "$shared/gen_readings.py" --events "$size" --devices 1000 --seed 42 --out "$data"
events=$(python3 -c "import json; print(json.load(open('$data.meta.json'))['events'])" 2>/dev/null ||
    echo $(($(wc -l <"$data") - 1)))
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "| batch size | binary | median s | events/s | throughput vs without | batches observed |"
echo "|---|---|---|---|---|---|"
for b in "${batch_sizes[@]}"; do
    declare -A times=()
    batches="?"
    for _ in $(seq "$repeat"); do
        for variant in without with; do
            bin=$without
            [ "$variant" = with ] && bin=$with
            start=$(date +%s.%N)
            "$bin" run "$shared/queries/w1.asaql" --batch-size "$b" \
                --input "input=csv:$data" --output "output=csv:$work/w1-$variant.csv" \
                >/dev/null 2>"$work/summary"
            times[$variant]+=" $(echo "$(date +%s.%N) - $start" | bc)"
            if [ "$variant" = with ]; then
                batches=$(sed -n 's/.*batch latency:.*(\([0-9]*\) batches).*/\1/p' "$work/summary")
            fi
        done
    done
    base=$(echo "${times[without]}" | median)
    for variant in without with; do
        m=$(echo "${times[$variant]}" | median)
        shown="-"
        [ "$variant" = with ] && shown=$batches
        echo "| $b | $variant | $m | $(echo "$events / $m" | bc) | $(echo "scale=3; $base / $m" | bc) | $shown |"
    done
    unset times
done
