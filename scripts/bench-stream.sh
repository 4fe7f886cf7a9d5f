#!/usr/bin/env bash
# The live stream (GET /api/users/{userId}/stream) under load, on a release
# `cgm-hub serve` (SQLite, auth disabled, audit on): examples/sse_load.rs
#   1. latency baseline: 1 stream, ROUNDS readings (every 3rd pair raises and
#      resolves a low alert): POST start -> stream receipt of `reading` / `alert`;
#   2. the same with STREAMS (1,000) streams on one user;
#   3. resident memory (VmRSS) of the server before and after IDLE (10,000) idle
#      streams (one per user), per stream.
# Figures go to docs/performance.md ("Live stream") by hand, with the date.
#
#   scripts/bench-stream.sh
#   STREAMS=1000 IDLE=10000 ROUNDS=30 scripts/bench-stream.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STREAMS="${STREAMS:-1000}"
IDLE="${IDLE:-10000}"
ROUNDS="${ROUNDS:-30}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
# One socket per stream on each side (the server and the load tool).
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((IDLE + 1000)) ]; then
    echo "the open-files limit $(ulimit -n) is below IDLE + 1000; raise the hard limit" >&2
    exit 1
fi

# SQLite only: the DynamoDB SDK is not needed here and is the longest build.
cargo build --release --locked --no-default-features --bin cgm-hub --example sse_load
BIN="$CARGO_TARGET_DIR/release/cgm-hub"
LOAD="$CARGO_TARGET_DIR/release/examples/sse_load"

WORK=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
wait_for() { for _ in $(seq 1 200); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "no answer from $1"; exit 1; }

start() {
    [ -n "$PID" ] && { kill "$PID"; wait "$PID" 2>/dev/null || true; }
    rm -f "$WORK"/bench.db*
    # Limits high enough never to refuse the load tool (the limiter still runs).
    env -i PATH="$PATH" BIND_ADDR=127.0.0.1:5197 SQLITE_PATH="$WORK/bench.db" AUTH_DISABLED=true \
        RATE_LIMIT_USER_PER_MINUTE=100000000 RATE_LIMIT_ANONYMOUS_PER_MINUTE=100000000 \
        WRITE_QUOTA_READINGS_PER_HOUR=1000000 HTTP_MAX_CONNECTIONS=$((IDLE + 1000)) \
        STREAM_MAX_PER_USER=$((STREAMS + 10)) STREAM_MAX_TOTAL=$((IDLE + STREAMS + 10)) \
        "$BIN" serve >/dev/null 2>"$WORK/stderr.log" &
    PID=$!
    wait_for http://127.0.0.1:5197/health
}

BASE=http://127.0.0.1:5197
echo "== $(date -u +%FT%TZ) $(git rev-parse --short HEAD) on $(nproc) cores"
start
echo "-- baseline: 1 stream"
"$LOAD" latency --base "$BASE" --streams 1 --users 1 --rounds "$ROUNDS" --prefix one
echo "-- $STREAMS streams on one user"
"$LOAD" latency --base "$BASE" --streams "$STREAMS" --users 1 --rounds "$ROUNDS" --prefix many
echo "-- $IDLE idle streams, one per user (fresh server)"
start
"$LOAD" idle --base "$BASE" --streams "$IDLE" --users "$IDLE" --pid "$PID"
