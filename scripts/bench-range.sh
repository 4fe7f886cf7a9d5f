#!/usr/bin/env bash
# The one-day range read (issue 15 item 9): `GET /api/bg/bench-user?startDate=..&endDate=..&limit=1000`,
# 288 readings of a 7-day series, with bearer authentication and the audit trail on, against the
# seed's FastAPI stack (scripts/bench/fastapi_seed/) measured in the same run.
#
#   scripts/bench-range.sh [ROUNDS]          (default 3 rounds; DURATION=10s per wrk row)
#
# BIN is the cgm-hub under test (default: this tree's release build, built here).
# BEFORE_BIN=/path adds a second cgm-hub build to every round (a before/after in one run).
# With PIN=1 the servers run on CPU 0 and wrk on CPU 1 (taskset), as in bench-ab-latest.sh.
# The FastAPI side runs under uvicorn with 2 worker processes (one per core, as a deployment
# would), from a venv built from scripts/bench/fastapi_seed/requirements.txt (PyPI) at
# FASTAPI_VENV (default /tmp/cgm-hub-fastapi-venv).
#
# Every server is started fresh for each measurement (as bench-ab-latest.sh does, so that no side
# carries the previous round's audit rows or SQLite WAL into the next) and seeded with the same
# readings (scripts/bench_seed.py); before any load the script checks that it returns the same 288
# readings as the first server (everything but created_at/updated_at, each store's write times).
# wrk: 2 threads, 50 connections; rounds alternate between the servers so the machine's drift hits
# them alike. Everything targets 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS="${1:-3}"
DURATION="${DURATION:-10s}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="${FASTAPI_VENV:-/tmp/cgm-hub-fastapi-venv}"
REQS=scripts/bench/fastapi_seed/requirements.txt

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
if [ -z "${BIN:-}" ]; then
    # With the example, as bench-ab-latest.sh builds: the same features, so no second build of the dependencies.
    cargo build --release --locked --bin cgm-hub --example baseline_axum -q
    BIN="$CARGO_TARGET_DIR/release/cgm-hub"
fi
BIN=$(realpath "$BIN")
if ! cmp -s "$REQS" "$VENV/requirements.txt" 2>/dev/null; then
    rm -rf "$VENV" && python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQS"
    cp "$REQS" "$VENV/requirements.txt"
fi

server_cpu=(); client_cpu=()
if [ "${PIN:-0}" = 1 ]; then server_cpu=(taskset -c 0); client_cpu=(taskset -c 1); fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 1 300); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1"; exit 1; }

WORK=$(mktemp -d)
SERVER_PID=
stop_server() { [ -z "$SERVER_PID" ] || { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }; SERVER_PID=; }
trap 'stop_server; rm -rf "$WORK"' EXIT

SECRET="bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
# One token for every server: cgm-hub mints it, PyJWT verifies the same HS256 claims.
TOKEN=$(env -i AUTH_JWT_SECRET="$SECRET" "$BIN" token mint --sub bench-user --roles patient --ttl 1h)

start_server() { # name; sets URL and SERVER_PID
    local port; port=$(free_port); rm -rf "${WORK:?}/$1"; mkdir -p "$WORK/$1"
    if [ "$1" = fastapi ]; then
        (cd scripts/bench/fastapi_seed && exec env FASTAPI_DB="$WORK/$1/fastapi.db" AUTH_JWT_SECRET="$SECRET" \
            PYTHONWARNINGS=ignore "${server_cpu[@]}" "$VENV/bin/uvicorn" app:app --host 127.0.0.1 --port "$port" \
            --workers 2 --no-access-log --log-level warning >/dev/null 2>"$WORK/$1/stderr.log") &
        SERVER_PID=$!
        wait_for "http://127.0.0.1:$port/docs"
    else
        local bin=$BIN; [ "$1" = cgm-hub-before ] && bin=$(realpath "$BEFORE_BIN")
        (cd "$WORK/$1" && exec env -i PATH="$PATH" BIND_ADDR="127.0.0.1:$port" SQLITE_PATH="$WORK/$1/b.db" \
            AUTH_JWT_SECRET="$SECRET" RATE_LIMIT_USER_PER_MINUTE=100000000 RATE_LIMIT_ANONYMOUS_PER_MINUTE=100000000 \
            "${server_cpu[@]}" "$bin" serve >/dev/null 2>"$WORK/$1/stderr.log") &
        SERVER_PID=$!
        wait_for "http://127.0.0.1:$port/health"
    fi
    URL="http://127.0.0.1:$port"
}

NAMES=(cgm-hub)
[ -n "${BEFORE_BIN:-}" ] && NAMES+=(cgm-hub-before)
NAMES+=(fastapi)
rates="$WORK/rates"
for round in $(seq 1 "$ROUNDS"); do
    for name in "${NAMES[@]}"; do
        start_server "$name"
        QUERY=$(BENCH_TOKEN="$TOKEN" python3 scripts/bench_seed.py "$URL")
        python3 scripts/bench_page.py "$TOKEN" "$URL/api/bg/bench-user?$QUERY" >"$WORK/page.$name"
        cmp -s "$WORK/page.$name" "$WORK/page.${NAMES[0]}" || { echo "$name returns other readings than ${NAMES[0]}"; exit 1; }
        out=$("${client_cpu[@]}" wrk -t2 -c50 -d"$DURATION" --latency -H "Authorization: Bearer $TOKEN" "$URL/api/bg/bench-user?$QUERY")
        stop_server
        rate=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
        p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
        bad=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
        echo "round $round $name: $rate req/s, p99 $p99${bad:+, non-2xx $bad} (same 288 readings as ${NAMES[0]})"
        [ -z "$bad" ] || { echo "$name answered non-2xx under load"; exit 1; }
        echo "$round $name $rate" >>"$rates"
    done
done

python3 - "$rates" <<'PY'
import collections, statistics, sys
by = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    rnd, name, rate = line.split()
    by[name][rnd] = float(rate)
fa = by["fastapi"]
for name, rounds in by.items():
    print(f"{name}: median {statistics.median(rounds.values()):.0f} req/s over {len(rounds)} rounds")
for name, rounds in by.items():
    if name != "fastapi":
        paired = statistics.median(rounds[r] / fa[r] for r in rounds)
        print(f"{name} / fastapi: {statistics.median(rounds.values()) / statistics.median(fa.values()):.1f}x "
              f"(medians; median of the rounds' own ratios {paired:.1f}x)")
if "cgm-hub-before" in by:
    a, b = by["cgm-hub"], by["cgm-hub-before"]
    print(f"cgm-hub / cgm-hub-before: {statistics.median(a.values()) / statistics.median(b.values()):.2f}x")
PY
