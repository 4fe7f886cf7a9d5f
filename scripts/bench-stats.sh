#!/usr/bin/env bash
# GET /api/bg/{userId}/stats over HTTP at 50 connections (wrk), for a 14-day and a
# 90-day window of one user with 5-minute data, against a trivial axum handler
# measured in the same run; writes the block between the stats markers of
# docs/performance.md. Targets (issue 17): 14 days >= 2,000 requests/s, 90 days >= 300/s.
#
#   scripts/bench-stats.sh              # 10 s per measurement
#   DURATION=30s scripts/bench-stats.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION="${DURATION:-10s}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="${OUT:-docs/performance.md}"

if ! command -v wrk >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
ulimit -n 65536 2>/dev/null || true

cargo build --release --locked --bin cgm-hub --example baseline_axum
BIN="$CARGO_TARGET_DIR/release/cgm-hub"
BASE_BIN="$CARGO_TARGET_DIR/release/examples/baseline_axum"

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
wait_for() { for _ in $(seq 1 200); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "no answer from $1"; exit 1; }

"$BASE_BIN" 127.0.0.1:5199 & PIDS+=($!)
# Production defaults otherwise (SQLite, JSON access logs discarded, audit on); limits
# high enough never to refuse the load generator (the limiter still runs).
env -i PATH="$PATH" BIND_ADDR=127.0.0.1:5198 SQLITE_PATH="$WORK/bench.db" AUTH_DISABLED=true \
    RATE_LIMIT_USER_PER_MINUTE=100000000 RATE_LIMIT_ANONYMOUS_PER_MINUTE=100000000 \
    WRITE_QUOTA_READINGS_PER_HOUR=1000000 \
    "$BIN" serve >/dev/null 2>"$WORK/stderr.log" & PIDS+=($!)
wait_for http://127.0.0.1:5199/
wait_for http://127.0.0.1:5198/health

# 90 days of one user at 5-minute resolution (25,920 readings), a believable trace.
QUERIES=$(python3 - http://127.0.0.1:5198 <<'PY'
import datetime, json, math, sys, urllib.request
base = sys.argv[1]
end = datetime.datetime.now(datetime.timezone.utc).replace(minute=0, second=0, microsecond=0)
start = end - datetime.timedelta(days=90)
stamp = "%Y-%m-%dT%H:%M:%SZ"
def value(i):
    t = i * 5 / 60.0
    return int(max(40, min(400, 130 + 45 * math.sin(2 * math.pi * t / 24) + 30 * math.sin(2 * math.pi * t / 5.3) + (i * 37 % 23) - 11)))
readings = [{"timestamp": (start + datetime.timedelta(minutes=5 * i)).strftime(stamp), "glucose_value": value(i),
             "source": "dexcom", "device_info": {"device_id": "G7"}} for i in range(90 * 288)]
for k in range(0, len(readings), 10000):
    req = urllib.request.Request(f"{base}/api/bg/stats-user/readings", data=json.dumps({"readings": readings[k:k + 10000]}).encode(),
                                 headers={"content-type": "application/json"})
    assert urllib.request.urlopen(req).status == 201
for days in (14, 90):
    q = f"startDate={(end - datetime.timedelta(days=days)).strftime(stamp)}&endDate={end.strftime(stamp)}&tz=Europe/Berlin"
    body = json.load(urllib.request.urlopen(f"{base}/api/bg/stats-user/stats?{q}"))["data"]
    assert body["readings"] == days * 288, (days, body["readings"])
    assert body["metrics"]["mean"] is not None
    print(q)
PY
)
Q14=$(sed -n 1p <<<"$QUERIES")
Q90=$(sed -n 2p <<<"$QUERIES")

RESULTS="$WORK/results.tsv"
: > "$RESULTS"
run() { # name url
    wrk -t2 -c50 -d"$DURATION" --latency "$2" > "$WORK/$1.txt" 2>&1
    python3 scripts/wrk_row.py "$WORK/$1.txt" "$1" 50 >> "$RESULTS"
    tail -1 "$RESULTS"
}
run baseline_c50 http://127.0.0.1:5199/
run stats_14d_c50 "http://127.0.0.1:5198/api/bg/stats-user/stats?$Q14"
run stats_90d_c50 "http://127.0.0.1:5198/api/bg/stats-user/stats?$Q90"
# Every request a different 90-day window (start and end moved by random multiples of
# 5 minutes: ~83,000 distinct sets of readings), so the statistics are computed for
# nearly every request; the user-days stay cached.
python3 - "$Q90" "$WORK/varying.lua" <<'PY'
import sys, urllib.parse, datetime
q = dict(urllib.parse.parse_qsl(sys.argv[1]))
fmt = "%Y-%m-%dT%H:%M:%SZ"
start = int(datetime.datetime.strptime(q["startDate"], fmt).replace(tzinfo=datetime.timezone.utc).timestamp())
end = int(datetime.datetime.strptime(q["endDate"], fmt).replace(tzinfo=datetime.timezone.utc).timestamp())
open(sys.argv[2], "w").write(f'''
request = function()
  local s = {start} + 300 * math.random(0, 287)
  local e = {end} - 300 * math.random(0, 287)
  return wrk.format("GET", "/api/bg/stats-user/stats?startDate=" .. os.date("!%Y-%m-%dT%H:%M:%SZ", s)
    .. "&endDate=" .. os.date("!%Y-%m-%dT%H:%M:%SZ", e) .. "&tz=Europe/Berlin")
end
''')
PY
run_script() { # name script
    wrk -t2 -c50 -d"$DURATION" --latency -s "$2" http://127.0.0.1:5198/ > "$WORK/$1.txt" 2>&1
    python3 scripts/wrk_row.py "$WORK/$1.txt" "$1" 50 >> "$RESULTS"
    tail -1 "$RESULTS"
}
run_script stats_90d_recomputed_c50 "$WORK/varying.lua"

python3 - "$RESULTS" "$OUT" "$DURATION" <<'PY'
import datetime, os, re, subprocess, sys
rows = {}
for line in open(sys.argv[1]):
    name, conns, rps, p50, p99, non2xx, sock = line.rstrip("\n").split("\t")
    rows[name] = dict(rps=float(rps), p50=float(p50), p99=float(p99), non2xx=int(non2xx))
out = [f"## GET /stats over HTTP (wrk), {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n",
       f"{subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores, wrk and the servers on the same machine, "
       f"50 connections, {sys.argv[3]} per row, release build, SQLite, audit on, one user with 90 days of 5-minute data "
       "(25,920 readings), `tz=Europe/Berlin`; the same explicit window in every request, except in "
       "`stats_90d_recomputed` (a different window each time, so the 49 metrics are computed per request). "
       "AUTH_DISABLED as in `scripts/bench-http.sh`.\n",
       "Command: `scripts/bench-stats.sh`\n",
       "| measurement | requests/s | p50 ms | p99 ms | non-2xx | target | met |", "|---|---|---|---|---|---|---|"]
targets = {"stats_14d_c50": 2000, "stats_90d_c50": 300}
for name, r in rows.items():
    t = targets.get(name)
    met = "" if t is None else ("yes" if r["rps"] >= t and r["non2xx"] == 0 else "**no**")
    out.append(f"| {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['non2xx']} | {'' if t is None else f'>= {t} req/s'} | {met} |")
out.append("")
block = "<!-- stats:begin -->\n" + "\n".join(out) + "\n<!-- stats:end -->"
doc = open(sys.argv[2]).read()
if "<!-- stats:begin -->" not in doc:
    doc += "\n<!-- stats:begin -->\n<!-- stats:end -->\n"
doc = re.sub(r"<!-- stats:begin -->.*?<!-- stats:end -->", lambda _: block, doc, flags=re.S)
open(sys.argv[2], "w").write(doc)
print("\n".join(out))
PY
