#!/usr/bin/env bash
# HTTP load benchmark: a trivial axum handler and cgm-hub's endpoints, measured in
# one run on this machine with wrk, written to docs/performance.md.
#
#   scripts/bench-http.sh            # default: 10 s per measurement
#   DURATION=30s scripts/bench-http.sh
#
# Everything targets 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION="${DURATION:-10s}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="${OUT:-docs/performance.md}"   # the block between the http markers is replaced

if ! command -v wrk >/dev/null; then
    echo "installing wrk from Debian's packages"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cargo build --release --locked --bin cgm-hub --example baseline_axum
BIN="$CARGO_TARGET_DIR/release/cgm-hub"
BASE_BIN="$CARGO_TARGET_DIR/release/examples/baseline_axum"

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

wait_for() { for _ in $(seq 1 200); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "no answer from $1"; exit 1; }

"$BASE_BIN" 127.0.0.1:5099 & PIDS+=($!)
# cgm-hub with its production defaults (JSON access logs at INFO, SQLite synchronous=FULL),
# logs discarded as a log shipper would take them.
# Rate limits high enough never to refuse the load generator (the limiter still runs).
env -i PATH="$PATH" BIND_ADDR=127.0.0.1:5098 SQLITE_PATH="$WORK/bench.db" AUTH_DISABLED=true \
    RATE_LIMIT_USER_PER_MINUTE=100000000 RATE_LIMIT_ANONYMOUS_PER_MINUTE=100000000 \
    "$BIN" serve >/dev/null 2>"$WORK/stderr.log" & PIDS+=($!)
wait_for http://127.0.0.1:5099/
wait_for http://127.0.0.1:5098/health

# Seed one user with 7 days at 5-minute resolution (2,016 readings).
RANGE_QUERY=$(python3 scripts/bench_seed.py http://127.0.0.1:5098)

# Bulk ingest: each request posts 10,000 new readings for a new user.
python3 - "$WORK/bulk.lua" <<'PY'
import json, sys, datetime
start = datetime.datetime.now(datetime.timezone.utc).replace(minute=0, second=0, microsecond=0) - datetime.timedelta(days=40)
body = json.dumps({"readings": [{"timestamp": (start + datetime.timedelta(minutes=5 * i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "glucose_value": 80 + i % 200, "trend_direction": "flat", "trend_rate": 0.2,
    "device_info": {"device_id": "G7", "serial_number": "SN1", "transmitter_id": "TX1"},
    "source": "dexcom"} for i in range(10000)]})
open(sys.argv[1], "w").write(f"""
local body = [[{body}]]
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "/api/bg/bulk-" .. math.random(1, 1000000000) .. "-" .. n .. "/readings",
                    {{["Content-Type"] = "application/json"}}, body)
end
""")
PY

RESULTS="$WORK/results.tsv"
: > "$RESULTS"
run() { # name connections url [script]
    local name=$1 conns=$2 url=$3 script=${4:-}
    local threads=2; [ "$conns" -lt 2 ] && threads=1
    local args=(-t"$threads" -c"$conns" -d"$DURATION" --latency)
    [ -n "$script" ] && args+=(-s "$script")
    wrk "${args[@]}" "$url" > "$WORK/$name.txt" 2>&1
    python3 scripts/wrk_row.py "$WORK/$name.txt" "$name" "$conns" >> "$RESULTS"
    tail -1 "$RESULTS"
}

ROWS="${ROWS:-baseline_c100 latest_c100 baseline_c1000 latest_c1000 baseline_c50 range_day_c50 bulk_ingest_c4}"
want() { [[ " $ROWS " == *" $1 "* ]]; }
for c in 100 1000; do
    want "baseline_c$c" && run "baseline_c$c" "$c" http://127.0.0.1:5099/
    want "latest_c$c" && run "latest_c$c" "$c" http://127.0.0.1:5098/api/bg/bench-user/latest
done
want baseline_c50 && run baseline_c50 50 http://127.0.0.1:5099/
want range_day_c50 && run range_day_c50 50 "http://127.0.0.1:5098/api/bg/bench-user?$RANGE_QUERY"
want bulk_ingest_c4 && run bulk_ingest_c4 4 http://127.0.0.1:5098/ "$WORK/bulk.lua"
[ "$ROWS" = "baseline_c100 latest_c100 baseline_c1000 latest_c1000 baseline_c50 range_day_c50 bulk_ingest_c4" ] || exit 0

python3 - "$RESULTS" "$OUT" "$DURATION" <<'PY'
import sys, platform, subprocess, datetime
rows = {}
for line in open(sys.argv[1]):
    name, conns, rps, p50, p99, non2xx, sock = line.rstrip("\n").split("\t")
    rows[name] = dict(c=int(conns), rps=float(rps), p50=float(p50), p99=float(p99), non2xx=int(non2xx), sock=sock)
out = []
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
out.append(f"## HTTP load (wrk), {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n")
out.append(f"Machine: {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores, {cpu}; "
           f"wrk and both servers on the same machine; {sys.argv[3]} per row, release build.\n")
out.append("Command: `scripts/bench-http.sh`\n")
out.append("| measurement | connections | requests/s | p50 ms | p99 ms | non-2xx | target | met |")
out.append("|---|---|---|---|---|---|---|---|")
def row(name, target="", met=""):
    r = rows[name]
    out.append(f"| {name} | {r['c']} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['non2xx']} | {target} | {met} |")
for c in (100, 1000):
    b, l = rows[f"baseline_c{c}"], rows[f"latest_c{c}"]
    row(f"baseline_c{c}")
    ok = l["rps"] >= 0.5 * b["rps"] and l["p99"] <= 2 * b["p99"] and l["non2xx"] == 0
    row(f"latest_c{c}", f">= {0.5*b['rps']:.0f} req/s, p99 <= {2*b['p99']:.2f} ms", "yes" if ok else "**no**")
row("baseline_c50")
r = rows["range_day_c50"]
row("range_day_c50", ">= 3000 req/s (288 readings each)", "yes" if r["rps"] >= 3000 and r["non2xx"] == 0 else "**no**")
b = rows["bulk_ingest_c4"]
rate = b["rps"] * 10000
row("bulk_ingest_c4", ">= 100,000 readings/s", "yes" if rate >= 100000 and b["non2xx"] == 0 else "**no**")
out.append("")
out.append(f"Bulk ingest: {rate:,.0f} readings/s over HTTP ({b['rps']:.1f} requests of 10,000 new readings each, "
           "SQLite synchronous=FULL, so each acknowledged batch is on disk before the 201).\n")
out.append("Ratios against the baseline in this run: " + ", ".join(
    f"latest at {c} connections = {rows[f'latest_c{c}']['rps']/rows[f'baseline_c{c}']['rps']:.2f}x throughput, "
    f"{rows[f'latest_c{c}']['p99']/rows[f'baseline_c{c}']['p99']:.2f}x p99" for c in (100, 1000)) + ".\n")
import os, re as _re
block = "<!-- http:begin -->\n" + "\n".join(out) + "\n<!-- http:end -->"
doc = open(sys.argv[2]).read() if os.path.exists(sys.argv[2]) else "# Performance\n\n<!-- http:begin -->\n<!-- http:end -->\n"
doc = _re.sub(r"<!-- http:begin -->.*?<!-- http:end -->", lambda _: block, doc, flags=_re.S)
open(sys.argv[2], "w").write(doc)
print("\n".join(out))
PY
echo "cgm-hub stderr:"; cat "$WORK/stderr.log" | tail -5
