#!/usr/bin/env bash
# `GET latest` and a one-day range over HTTP on the SQLite and the PostgreSQL
# store, with the trivial axum baseline, all in one run (wrk on this machine),
# written to docs/performance.md between the backends markers.
#
#   scripts/bench-http-backends.sh          # 10 s per row, each row twice (alternating)
#   DURATION=20s ROUNDS=3 scripts/bench-http-backends.sh
#
# PostgreSQL: DATABASE_URL (default the local server, database test); the run
# uses a schema of its own and drops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-2}"
PG_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
OUT="${OUT:-docs/performance.md}"
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
ulimit -n 65536 2>/dev/null || true

cargo build --release --locked --bin cgm-hub --example baseline_axum
BIN="$CARGO_TARGET_DIR/release/cgm-hub"
BASE_BIN="$CARGO_TARGET_DIR/release/examples/baseline_axum"

WORK=$(mktemp -d)
SCHEMA="bench_$(python3 -c 'import secrets; print(secrets.token_hex(6))')"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
wait_for() { for _ in $(seq 1 400); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "no answer from $1"; exit 1; }

psql -q "$PG_URL" -c "CREATE SCHEMA $SCHEMA" >/dev/null
COMMON=(PATH="$PATH" AUTH_DISABLED=true RATE_LIMIT_USER_PER_MINUTE=100000000 RATE_LIMIT_ANONYMOUS_PER_MINUTE=100000000)
"$BASE_BIN" 127.0.0.1:5099 & PIDS+=($!)
env -i "${COMMON[@]}" BIND_ADDR=127.0.0.1:5098 SQLITE_PATH="$WORK/bench.db" \
    "$BIN" serve >/dev/null 2>"$WORK/sqlite.log" & PIDS+=($!)
env -i "${COMMON[@]}" BIND_ADDR=127.0.0.1:5097 SQLITE_PATH="$WORK/unused.db" STORAGE_BACKEND=postgres \
    DATABASE_URL="$PG_URL?options=-c%20search_path%3D$SCHEMA" \
    "$BIN" serve >/dev/null 2>"$WORK/postgres.log" & PIDS+=($!)
wait_for http://127.0.0.1:5099/
wait_for http://127.0.0.1:5098/health
wait_for http://127.0.0.1:5097/health

# The same 7 days at 5-minute resolution (2,016 readings) for one user in each store.
RANGE_QUERY=$(python3 scripts/bench_seed.py http://127.0.0.1:5098 http://127.0.0.1:5097)

RESULTS="$WORK/results.tsv"
: > "$RESULTS"
run() { # name connections url
    wrk -t2 -c"$2" -d"$DURATION" --latency "$3" > "$WORK/$1.txt" 2>&1
    python3 scripts/wrk_row.py "$WORK/$1.txt" "$1" "$2" >> "$RESULTS"
    tail -1 "$RESULTS"
}
for _ in $(seq 1 "$ROUNDS"); do
    run baseline_c100 100 http://127.0.0.1:5099/
    run latest_sqlite_c100 100 http://127.0.0.1:5098/api/bg/bench-user/latest
    run latest_postgres_c100 100 http://127.0.0.1:5097/api/bg/bench-user/latest
    run baseline_c50 50 http://127.0.0.1:5099/
    run range_day_sqlite_c50 50 "http://127.0.0.1:5098/api/bg/bench-user?$RANGE_QUERY"
    run range_day_postgres_c50 50 "http://127.0.0.1:5097/api/bg/bench-user?$RANGE_QUERY"
done

python3 - "$RESULTS" "$OUT" "$DURATION" "$ROUNDS" <<'PY'
import sys, re, os, datetime, statistics
rows = {}
for line in open(sys.argv[1]):
    name, conns, rps, p50, p99, non2xx, _ = line.rstrip("\n").split("\t")
    rows.setdefault(name, []).append(dict(c=int(conns), rps=float(rps), p50=float(p50), p99=float(p99), bad=int(non2xx)))
def med(name, key):
    return statistics.median(r[key] for r in rows[name])
out = [f"## Stores over HTTP: SQLite and PostgreSQL (issue 6), {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n",
       f"Command: `scripts/bench-http-backends.sh` (release build; wrk, the baseline and both servers on this "
       f"2-core machine; {sys.argv[3]} per row, {sys.argv[4]} rounds alternating, medians shown; PostgreSQL 15 on "
       "127.0.0.1, same machine; one user with 7 days of readings in each store).\n",
       "| measurement | connections | requests/s (each round) | median req/s | p50 ms | p99 ms | non-2xx | vs baseline |",
       "|---|---|---|---|---|---|---|---|"]
for name, base in [("baseline_c100", None), ("latest_sqlite_c100", "baseline_c100"), ("latest_postgres_c100", "baseline_c100"),
                   ("baseline_c50", None), ("range_day_sqlite_c50", "baseline_c50"), ("range_day_postgres_c50", "baseline_c50")]:
    each = ", ".join(f"{r['rps']:.0f}" for r in rows[name])
    ratio = f"{med(name, 'rps') / med(base, 'rps'):.2f}x" if base else ""
    out.append(f"| {name} | {rows[name][0]['c']} | {each} | {med(name, 'rps'):.0f} | {med(name, 'p50'):.2f} | "
               f"{med(name, 'p99'):.2f} | {sum(r['bad'] for r in rows[name])} | {ratio} |")
out.append("")
out.append(f"PostgreSQL against SQLite in this run: latest {med('latest_postgres_c100', 'rps') / med('latest_sqlite_c100', 'rps'):.2f}x "
           f"the requests/s, one-day range {med('range_day_postgres_c50', 'rps') / med('range_day_sqlite_c50', 'rps'):.2f}x.\n")
block = "<!-- backends:begin -->\n" + "\n".join(out) + "\n<!-- backends:end -->"
doc = open(sys.argv[2]).read()
if "<!-- backends:begin -->" not in doc:
    doc = doc.replace("## Access control", "<!-- backends:begin -->\n<!-- backends:end -->\n\n## Access control", 1)
doc = re.sub(r"<!-- backends:begin -->.*?<!-- backends:end -->", lambda _: block, doc, flags=re.S)
open(sys.argv[2], "w").write(doc)
print("\n".join(out))
PY
