#!/usr/bin/env bash
# Meal responses over HTTP (wrk): (a) GET /api/users/{userId}/meals/{mealId}/response at
# 50 connections, and (b) GET /api/users/{userId}/meals?limit=100&include=response (100 meals,
# each with its response, over a 14-day trace) at 1 connection for its latency. One user with
# 14 days of 5-minute data (4,032 readings) and 100 meals (about 7 a day). Targets (issue 20):
# (a) >= 2,000 requests/s; (b) under 20 ms per list. Prints a table (docs/journal.md keeps the
# figures of the last run).
#
#   scripts/bench-meals.sh                    # release build, 10 s per measurement
#   PROFILE=debug DURATION=5s scripts/bench-meals.sh   # the debug binary (slower; say so)
#   BIN=path/to/cgm-hub PROFILE=debug scripts/bench-meals.sh   # a binary built before (another
#                                             # commit's, for a baseline), no build; PROFILE names it
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION="${DURATION:-10s}"
PROFILE="${PROFILE:-release}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

if ! command -v wrk >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
ulimit -n 65536 2>/dev/null || true

if [ -n "${BIN:-}" ]; then
    echo "using $BIN (not built here)" >&2
elif [ "$PROFILE" = release ]; then
    cargo build --release --locked --bin cgm-hub
else
    cargo build --locked --bin cgm-hub
fi
BIN="${BIN:-$CARGO_TARGET_DIR/$PROFILE/cgm-hub}"

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
wait_for() { for _ in $(seq 1 200); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "no answer from $1"; exit 1; }

PORT="${PORT:-5197}"
# Production defaults otherwise (SQLite, audit on); limits high enough never to refuse the
# load generator. AUTH_DISABLED as in scripts/bench-stats.sh.
env -i PATH="$PATH" BIND_ADDR=127.0.0.1:$PORT SQLITE_PATH="$WORK/bench.db" AUTH_DISABLED=true \
    RATE_LIMIT_USER_PER_MINUTE=100000000 RATE_LIMIT_ANONYMOUS_PER_MINUTE=100000000 \
    WRITE_QUOTA_READINGS_PER_HOUR=1000000 \
    "$BIN" serve >/dev/null 2>"$WORK/stderr.log" & PIDS+=($!)
wait_for "http://127.0.0.1:$PORT/health"

# 14 days of readings with a rise after each meal, and 100 meals (all final: the last is
# more than 6 hours old).
MEAL=$(python3 - "http://127.0.0.1:$PORT" <<'PY'
import datetime, json, math, sys, urllib.request
base = sys.argv[1]
end = datetime.datetime.now(datetime.timezone.utc).replace(minute=0, second=0, microsecond=0) - datetime.timedelta(hours=8)
start = end - datetime.timedelta(days=14)
stamp = "%Y-%m-%dT%H:%M:%SZ"
step = (end - start) / 100
meals = [start + step * k for k in range(100)]
def value(t):
    v = 110 + 10 * math.sin(t.timestamp() / 7000)
    for m in meals:
        d = (t - m).total_seconds() / 60
        if 0 < d < 150:
            v += 55 * math.sin(math.pi * d / 150)
    return int(v)
readings = [{"timestamp": (start + datetime.timedelta(minutes=5 * i)).strftime(stamp),
             "glucose_value": value(start + datetime.timedelta(minutes=5 * i)),
             "source": "dexcom", "device_info": {"device_id": "G7"}} for i in range(14 * 288 + 60)]
def post(path, body):
    req = urllib.request.Request(f"{base}{path}", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))
post("/api/bg/meal-user/readings", {"readings": readings})
ids = [post("/api/users/meal-user/meals", {"timestamp": m.replace(second=0).strftime(stamp),
                                             "meal_type": "lunch", "foods": [{"name": f"food {k % 7}"}]})["data"]["id"]
       for k, m in enumerate(meals)]
page = json.load(urllib.request.urlopen(f"{base}/api/users/meal-user/meals?limit=100&include=response"))["data"]
assert len(page["meals"]) == 100
statuses = {}
for m in page["meals"]:
    statuses[m["response"]["status"]] = statuses.get(m["response"]["status"], 0) + 1
print(ids[50])
print(json.dumps(statuses), file=sys.stderr)
PY
)

RESULTS="$WORK/results.tsv"
: > "$RESULTS"
run() { # name connections url
    wrk -t"$(( $2 < 2 ? 1 : 2 ))" -c"$2" -d"$DURATION" --latency "$3" > "$WORK/$1.txt" 2>&1
    python3 scripts/wrk_row.py "$WORK/$1.txt" "$1" "$2" >> "$RESULTS"
}
run meal_response_c50 50 "http://127.0.0.1:$PORT/api/users/meal-user/meals/$MEAL/response"
run meals_100_with_response_c1 1 "http://127.0.0.1:$PORT/api/users/meal-user/meals?limit=100&include=response"
run meals_100_plain_c1 1 "http://127.0.0.1:$PORT/api/users/meal-user/meals?limit=100"

echo "$(nproc) cores, wrk and the server on one machine, $PROFILE build, SQLite, audit on, $DURATION per row"
echo "Command: PROFILE=$PROFILE DURATION=$DURATION scripts/bench-meals.sh"
echo "| measurement | connections | requests/s | p50 ms | p99 ms | non-2xx | target |"
echo "|---|---|---|---|---|---|---|"
while IFS=$'\t' read -r name conns rps p50 p99 non2xx _sock; do
    case "$name" in
        meal_response_c50) target=">= 2,000 req/s" ;;
        meals_100_with_response_c1) target="< 20 ms" ;;
        *) target="" ;;
    esac
    echo "| $name | $conns | $rps | $p50 | $p99 | $non2xx | $target |"
done < "$RESULTS"
