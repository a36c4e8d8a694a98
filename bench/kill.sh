#!/usr/bin/env bash
# The long crash tests of docs/reliability.md: `iotql run` killed with
# SIGKILL at random moments and restarted each time, until its inputs end;
# the final outputs must equal an uninterrupted run's, row for row.
#
#   bench/kill.sh [EVENTS] [KILLS] [INTERVAL] [file|kafka|both]
#       (defaults: 10000000 events, 20 kills, checkpoints every 1s, both)
#
# It runs the CI tests at this size, in a release build:
# - file: cli/tests/checkpoints.rs (12 kills over 100k events in CI): a CSV
#   file through windowed aggregations to CSV, SQLite and Parquet, a filter
#   to JSON lines, every reading to a SQLite table, alerts to a log, bad
#   lines to the dead-letter file;
# - kafka: cli/tests/kafka_exactly_once.rs (6 kills over 50k events in CI):
#   a topic (3 partitions in CI, 1 here) through per-device windows to a CSV file, a
#   SQLite table, Parquet files and a Kafka topic read back read_committed,
#   alerts to a log (its own noida broker, scripts/kafka-up; at 10M events
#   the test lets librdkafka take fetch responses up to 1.5 GB, as noida
#   answers a fetch with all it has. Not on Tansu: Tansu shows the rows of
#   aborted transactions to read_committed consumers, see reliability.md).
# Each run is killed at a random moment after its first checkpoint, within
# a share of the uninterrupted run's time (IOTQL_KILL_SPREAD_MS sets it),
# so that the kills spread over the whole input. Each test prints what it
# measured.
set -euo pipefail
cd "$(dirname "$0")/.."
export IOTQL_KILL_EVENTS="${1:-10000000}"
export IOTQL_KILLS="${2:-20}"
export IOTQL_KILL_INTERVAL="${3:-1s}"
# The Kafka version's input topic: one partition (see kafka_exactly_once.rs).
export IOTQL_KILL_PARTITIONS="${IOTQL_KILL_PARTITIONS:-1}"
which="${4:-both}"
run() {
    cargo test --release -p iotql-cli --test "$1" "$2" -- --nocapture 2>&1 |
        grep -E "events|test result|panicked|differs|missing|expected"
}
case "$which" in
    file) run checkpoints runs_killed_at_random_moments ;;
    kafka) run kafka_exactly_once killed_at_random_moments ;;
    both)
        run checkpoints runs_killed_at_random_moments
        run kafka_exactly_once killed_at_random_moments
        ;;
    *) echo "kill.sh: the fourth argument is file, kafka or both" >&2; exit 2 ;;
esac
