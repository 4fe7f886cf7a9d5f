#!/usr/bin/env bash
# Side by side in one run, on the same CSV (5 users, ~14,000 readings):
#  1. cgm-hub: analytics::stats (all 49 metrics, ranges, GRI) for every user,
#     timed by examples/analytics_csv --repeat (BUILD=release for an optimised
#     build; the default debug build is a conservative, slower figure);
#  2. iglu-python 0.4.3 (black-box oracle): the same 49 metrics, timed inside
#     Python (imports excluded).
# The criterion bench `cargo bench --bench analytics` measures the same code path
# on the same generated data with statistics.
#
#   scripts/bench-analytics.sh            # BUILD=release scripts/bench-analytics.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
cd "$root"
csv="$target/analytics-bench.csv"
python3 "$root/scripts/oracle/bench_data.py" "$csv"
echo "readings: $(($(wc -l < "$csv") - 1))"
profile=()
dir=debug
if [ "${BUILD:-debug}" = release ]; then profile=(--release); dir=release; fi
cargo build -q "${profile[@]}" --example analytics_csv
"$target/$dir/examples/analytics_csv" "$csv" America/New_York --repeat 20
"$root/scripts/iglu-oracle.sh" "$csv" America/New_York --time > "$target/analytics-bench-iglu.json"
