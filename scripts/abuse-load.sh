#!/usr/bin/env bash
# Runs the hardening review's abuse cases (scripts/abuse_load.py) against a release build for
# DURATION seconds (default 60) and prints the server's resident memory before and after.
# Fails when memory grew by more than 50 MiB or the server stopped answering /health.
# Not part of the test suite (it takes over a minute); docs/security.md and
# docs/performance.md cite its output.
#
#   scripts/abuse-load.sh [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-60}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked --bin cgm-hub -q
bin="$CARGO_TARGET_DIR/release/cgm-hub"
work="$(mktemp -d)"
secret="abuse-load-webhook-secret-0123456789abcdef"
jwt_secret="abuse-load-jwt-secret-0123456789abcdef0123"
ulimit -n 8192 || true

# A connection cap below what the script opens, so the flood crosses it.
env -i PATH="$PATH" BIND_ADDR=127.0.0.1:0 SQLITE_PATH="$work/abuse.db" \
    AUTH_JWT_SECRET="$jwt_secret" WEBHOOK_SIGNING_SECRET="$secret" HTTP_MAX_CONNECTIONS=512 \
    LOG_FORMAT=json LOG_LEVEL=INFO "$bin" serve >"$work/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
    addr=$(grep -o '"addr":"[^"]*"' "$work/log" | head -1 | cut -d'"' -f4 || true)
    [ -n "$addr" ] && break
    sleep 0.1
done
[ -n "$addr" ] || { echo "the server did not start"; cat "$work/log"; exit 1; }
base="http://$addr"
token=$(env -i PATH="$PATH" AUTH_JWT_SECRET="$jwt_secret" "$bin" token mint --sub abuser --roles patient --ttl 1h)

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
# Warm up: the allocator's and the store's steady state before the baseline.
for _ in $(seq 1 200); do curl -fsS -o /dev/null "$base/health"; done
before=$(rss_kib)
echo "== abuse for ${duration} s against $base (pid $pid); resident memory before: $((before / 1024)) MiB"
python3 scripts/abuse_load.py "$base" "$duration" "$secret" "$token"
# Connections the attackers left are closed by the header-read timeout (10 s).
sleep 12
curl -fsS -o /dev/null "$base/health" || { echo "FAIL: /health does not answer"; exit 1; }
after=$(rss_kib)
echo "== resident memory after: $((after / 1024)) MiB (growth $(((after - before) / 1024)) MiB; limit 50 MiB)"
if [ $((after - before)) -gt $((50 * 1024)) ]; then
    echo "FAIL: memory grew by more than 50 MiB"
    exit 1
fi
