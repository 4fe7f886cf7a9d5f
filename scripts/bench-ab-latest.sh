#!/usr/bin/env bash
# A/B of `GET /api/bg/{user}/latest` between two cgm-hub builds, alternating runs so
# that the machine's drift hits both alike, plus the trivial axum baseline.
#
#   scripts/bench-ab-latest.sh OLD_BINARY NEW_BINARY [ROUNDS]   (default 3 rounds)
#
# With NEW_AUTH=1 the new build runs with real bearer authentication (an HS256
# token minted by the new binary, so authorization and the audit trail run too),
# while the old one runs with AUTH_DISABLED=true as before access control.
#
# With OLD_AUTH=1 the old build runs with bearer authentication too (both sides
# alike, for two builds that both have access control).
#
# OLD_ENV="NAME=value" is set for the old build only (e.g. an experiment's
# switch, when OLD and NEW are one binary).
#
# With PIN=1 the server runs on CPU 0 and wrk on CPU 1 (taskset): each gets a
# core of its own, which makes runs steadier on a 2-core machine.
#
# With BASELINE_EACH_ROUND=1 the trivial axum baseline is measured in every round
# (after the two builds) instead of once at the end, and each build's ratio to
# the baseline of its own round is printed: on a machine whose speed drifts
# between rounds, that ratio is the figure to read.
#
# Build the old one from a worktree, e.g.
#   git worktree add /tmp/old <rev> && CARGO_TARGET_DIR=/tmp/old-target cargo build --release --manifest-path /tmp/old/Cargo.toml
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=$(realpath "$1"); NEW=$(realpath "$2"); ROUNDS="${3:-3}"
DURATION="${DURATION:-10s}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build --release --locked --example baseline_axum -q
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

server_cpu=(); client_cpu=()
if [ "${PIN:-0}" = 1 ]; then server_cpu=(taskset -c 0); client_cpu=(taskset -c 1); fi
SECRET="bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
run_one() { # label binary auth(0|1)
    local label=$1 bin=$2 auth=$3 work port pid ts
    local auth_env=(AUTH_DISABLED=true) header=() extra=()
    [ "$label" = old ] && [ -n "${OLD_ENV:-}" ] && extra=("$OLD_ENV")
    if [ "$auth" = 1 ]; then
        auth_env=(AUTH_JWT_SECRET="$SECRET")
        header=(-H "Authorization: Bearer $(env -i AUTH_JWT_SECRET="$SECRET" "$bin" token mint --sub bench-user --roles patient --ttl 1h)")
    fi
    work=$(mktemp -d); port=$(free_port)
    (cd "$work" && exec env -i PATH="$PATH" BIND_ADDR="127.0.0.1:$port" SQLITE_PATH="$work/b.db" \
        "${auth_env[@]}" "${extra[@]}" RATE_LIMIT_USER_PER_MINUTE=100000000 \
        RATE_LIMIT_ANONYMOUS_PER_MINUTE=100000000 "${server_cpu[@]}" "$bin" serve >/dev/null 2>&1) &
    pid=$!
    for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.05; done
    ts=$(date -u -d '-1 hour' +%Y-%m-%dT%H:00:00Z)
    curl -sf -XPOST -H 'content-type: application/json' "${header[@]}" "http://127.0.0.1:$port/api/bg/bench-user/readings" \
        -d "{\"timestamp\":\"$ts\",\"glucose_value\":120,\"trend_direction\":\"flat\",\"trend_rate\":0.1,\"source\":\"dexcom\"}" >/dev/null
    local status
    status=$(curl -s -o /dev/null -w '%{http_code}' "${header[@]}" "http://127.0.0.1:$port/api/bg/bench-user/latest")
    [ "$status" = 200 ] || { echo "$label: GET latest answered $status"; exit 1; }
    local rate
    rate=$("${client_cpu[@]}" wrk -t2 -c100 -d"$DURATION" "${header[@]}" "http://127.0.0.1:$port/api/bg/bench-user/latest" | awk '/Requests\/sec/ {print $2}')
    echo "$label $rate req/s"
    echo "$label $rate" >>"$rates"
    kill "$pid"; wait "$pid" 2>/dev/null || true; rm -rf "$work"
}

rates=$(mktemp)
port=$(free_port)
"${server_cpu[@]}" "$CARGO_TARGET_DIR/release/examples/baseline_axum" "127.0.0.1:$port" & B=$!
sleep 0.5
baseline() {
    local rate
    rate=$("${client_cpu[@]}" wrk -t2 -c100 -d"$DURATION" "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}')
    echo "baseline $rate req/s"
    echo "baseline $rate" >>"$rates"
}
for _ in $(seq 1 "$ROUNDS"); do
    run_one old "$OLD" "${OLD_AUTH:-0}"
    run_one new "$NEW" "${NEW_AUTH:-0}"
    if [ "${BASELINE_EACH_ROUND:-0}" = 1 ]; then baseline; fi
done
[ "${BASELINE_EACH_ROUND:-0}" = 1 ] || baseline
kill "$B"
# Medians of each side, and the median of the rounds' own changes (each new run
# against the old run just before it, which the machine's drift hits alike).
python3 - "$rates" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
old = [float(r) for label, r in rows if label == "old"]
new = [float(r) for label, r in rows if label == "new"]
base = [float(r) for label, r in rows if label == "baseline"]
pairs = [(n / o - 1) * 100 for o, n in zip(old, new)]
print(f"median old {statistics.median(old):.0f} req/s, new {statistics.median(new):.0f} req/s: "
      f"{(statistics.median(new) / statistics.median(old) - 1) * 100:+.1f}%; "
      f"median of the {len(pairs)} rounds' changes {statistics.median(pairs):+.1f}%")
if len(base) == len(new) > 1:
    for name, side in (("old", old), ("new", new)):
        ratios = [x / b for x, b in zip(side, base)]
        print(f"{name} / baseline of the same round: median {statistics.median(ratios):.2f}x "
              f"({', '.join(f'{r:.2f}' for r in ratios)})")
PY
rm -f "$rates"
