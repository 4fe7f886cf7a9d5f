#!/usr/bin/env bash
# Side by side in one run: criterion times analytics::stats (all 49 metrics) for
# 5 users / ~14,000 readings, then iglu-python 0.4.3 (black-box oracle) computes
# the same 49 metrics on the same CSV (written by the bench). Prints both.
#
#   scripts/bench-analytics.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
cd "$root"
cargo bench --bench analytics -- --noplot 2>&1 | grep -E "stats_5_users|time:|thrpt:"
csv="$target/analytics-bench.csv"
echo "readings: $(($(wc -l < "$csv") - 1))"
start=$(date +%s.%N)
"$root/scripts/iglu-oracle.sh" "$csv" America/New_York --time > "$target/analytics-bench-iglu.json"
end=$(date +%s.%N)
echo "iglu-python wall time including Python start and imports: $(echo "$end - $start" | bc) s"
