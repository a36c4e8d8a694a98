#!/usr/bin/env bash
# Backpressure (docs/reliability.md): an output 100 times slower than the
# input keeps the job's memory bounded and loses nothing.
#
#   bench/backpressure.sh [IOTQL_BINARY] [EVENTS] [SLOWDOWN]
#       (defaults: target/release/iotql, 1000000, 100)
#
# The job copies every reading of a CSV file to a CSV output. First the
# output is a plain file (the job at full speed: its time and peak RSS); then
# the output is a FIFO that a reader drains at 1/SLOWDOWN of the bytes per
# second the first run wrote, so the sink is SLOWDOWN times slower than the
# input. Peak RSS is GNU time's maximum resident set size. The rows read
# from the FIFO are counted.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
iotql="$(realpath "${1:-$root/target/release/iotql}")"
events="${2:-1000000}"
slowdown="${3:-100}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

python3 - "$events" <<'PY'
import sys
n = int(sys.argv[1])
with open("readings.csv", "w") as f:
    f.write("device_id,ts,temperature_c\n")
    for i in range(n):
        s = i // 20
        f.write(f"dev-{i % 20},2026-01-{s // 86400 + 1:02d}T{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z,{20 + i % 15}.{i % 100:02d}\n")
PY
job() {
    cat >job.asaql <<JOB
CREATE INPUT readings WITH (connector = 'csv', path = 'readings.csv');
CREATE OUTPUT all_rows WITH (connector = 'csv', path = '$1');
SELECT device_id, ts, temperature_c INTO all_rows FROM readings TIMESTAMP BY ts;
JOB
}

# Full speed.
job rows.csv
/usr/bin/time -f "%e %M" -o fast.time "$iotql" run job.asaql -q --checkpoint-interval off
read -r fast_s fast_kb <fast.time
bytes=$(stat -c %s rows.csv)
rate=$(python3 -c "print(max(1, int($bytes / max($fast_s, 0.01) / $slowdown)))")

# The output SLOWDOWN times slower: a FIFO drained at `rate` bytes/s.
mkfifo rows.fifo
job rows.fifo
python3 - "$rate" >slow.count <<'PY' &
import sys, time
rate = int(sys.argv[1])
chunk = max(1, rate // 20)
lines = 0
start = time.monotonic()
read = 0
with open("rows.fifo", "rb") as f:
    while True:
        data = f.read(chunk)
        if not data:
            break
        lines += data.count(b"\n")
        read += len(data)
        ahead = read / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
print(lines)
PY
reader=$!
/usr/bin/time -f "%e %M" -o slow.time "$iotql" run job.asaql -q --checkpoint-interval off
wait "$reader"
read -r slow_s slow_kb <slow.time
rows=$(cat slow.count)

echo "| events | output | run s | peak RSS MiB | rows out |"
echo "|---|---|---|---|---|"
echo "| $events | file, full speed | $fast_s | $((fast_kb / 1024)) | $(($(wc -l <rows.csv) - 1)) |"
echo "| $events | ${slowdown}x slower (FIFO read at $((rate / 1024)) KiB/s) | $slow_s | $((slow_kb / 1024)) | $((rows - 1)) |"
[ "$((rows - 1))" -eq "$events" ] || { echo "backpressure: $((rows - 1)) rows of $events arrived" >&2; exit 1; }
