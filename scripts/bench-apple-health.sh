#!/usr/bin/env bash
# Apple Health import throughput and memory (docs/performance.md): regenerates a
# synthetic export of SIZE_MB (default 1000) in the target dir, then imports it
# into a fresh SQLite database with the release binary under /usr/bin/time -v.
#
#   scripts/bench-apple-health.sh                 # 1 GB export.xml
#   SIZE_MB=200 ZIP=1 scripts/bench-apple-health.sh
#   NO_BUILD=1 CARGO_TARGET_DIR=... scripts/bench-apple-health.sh
#
# Prints the generator's summary, the import's summary (records/s while
# reading; readings new/duplicate), and the peak RSS. The file stays in
# $TARGET/apple-health-bench/ (never commit it).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-1000}
TARGET=${CARGO_TARGET_DIR:-target}
OUT="$TARGET/apple-health-bench"
BIN="$TARGET/release/cgm-hub"
mkdir -p "$OUT"

if [[ -z "${NO_BUILD:-}" ]]; then
    cargo build --release --locked --bin cgm-hub ${CARGO_FLAGS:-}
fi

if [[ -n "${ZIP:-}" ]]; then FILE="$OUT/export.zip"; ZIPARG=--zip; else FILE="$OUT/export.xml"; ZIPARG=; fi
echo "generating $SIZE_MB MB into $FILE ..." >&2
python3 scripts/gen-apple-health.py --size-mb "$SIZE_MB" --out "$FILE" $ZIPARG | tee "$OUT/generated.json"

rm -f "$OUT"/bench.db*
export SQLITE_PATH="$OUT/bench.db"
"$BIN" migrate > /dev/null
/usr/bin/time -v "$BIN" import apple-health --user bench "$FILE" \
    > "$OUT/summary.txt" 2> "$OUT/stderr.txt"
cat "$OUT/summary.txt"
grep -E "Maximum resident set size|Elapsed \(wall clock\)|User time|System time" "$OUT/stderr.txt"
