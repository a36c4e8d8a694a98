#!/usr/bin/env bash
# The long crash test of docs/reliability.md: `iotql run` killed with SIGKILL
# at random moments and restarted each time, until its inputs end; the final
# outputs must equal an uninterrupted run's, row for row.
#
#   bench/kill.sh [EVENTS] [KILLS] [INTERVAL]
#       (defaults: 10000000 events, 20 kills, checkpoints every 1s)
#
# It runs the CI tests of cli/tests/checkpoints.rs (12 kills over 100k events
# there) at this size, in a release build: a windowed aggregation to CSV,
# SQLite and Parquet, a filter to JSON lines, every reading to a SQLite table,
# bad lines to the dead-letter file. Each test prints what it measured.
set -euo pipefail
cd "$(dirname "$0")/.."
export IOTQL_KILL_EVENTS="${1:-10000000}"
export IOTQL_KILLS="${2:-20}"
export IOTQL_KILL_INTERVAL="${3:-1s}"
cargo test --release -p iotql-cli --test checkpoints \
    runs_killed_at_random_moments -- --nocapture 2>&1 | grep -E "events:|test result|panicked|differs"
