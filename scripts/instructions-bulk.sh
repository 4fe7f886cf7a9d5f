#!/usr/bin/env bash
# Instructions the server spends per reading of a bulk `POST /api/bg/{user}/readings`,
# counted by valgrind's callgrind (repeatable on a noisy machine, unlike readings/s).
# Batches of 1,000 new readings go one at a time over one keep-alive connection, with
# bearer authentication and the audit trail on; counting starts after a warm-up batch
# and ends after the outbox relay and the audit writer have caught up.
#
#   scripts/instructions-bulk.sh BINARY [BATCHES]   (default 20 batches of 1,000)
#
# Prints instructions per reading; the callgrind output stays in $OUT (default a temp
# dir) for callgrind_annotate.
set -euo pipefail
BIN=$(realpath "$1"); N="${2:-20}"
OUT="${OUT:-$(mktemp -d)}"; mkdir -p "$OUT"; rm -f "$OUT"/callgrind.out*
command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
secret="instr-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
token=$(env -i AUTH_JWT_SECRET="$secret" "$BIN" token mint --sub bench-user --roles patient --ttl 1h)
(cd "$work" && exec env -i PATH="$PATH" BIND_ADDR="127.0.0.1:$port" SQLITE_PATH="$work/b.db" \
    AUTH_JWT_SECRET="$secret" RATE_LIMIT_USER_PER_MINUTE=100000000 RATE_LIMIT_ANONYMOUS_PER_MINUTE=100000000 \
    valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" "$BIN" serve >"$OUT/server.log" 2>&1) &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
python3 - "$port" "$token" "$N" <<'PY'
import http.client, json, sys, time, datetime, subprocess
port, token, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
for _ in range(600):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60); c.request("GET", "/health"); c.getresponse().read(); break
    except (OSError, http.client.HTTPException):
        time.sleep(0.1)
c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
start = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0) - datetime.timedelta(hours=1)
def batch(k):
    # 1,000 readings 5 minutes apart, batch k further back in time than batch k-1.
    out = []
    for i in range(1000):
        t = start - datetime.timedelta(minutes=5 * (k * 1000 + i))
        out.append({"timestamp": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "glucose_value": 80 + (i * 7) % 150,
                    "trend_direction": "flat", "trend_rate": 0.1, "source": "dexcom",
                    "device_info": {"device_id": "G7-1"}})
    return json.dumps({"readings": out})
def post(k):
    c.request("POST", "/api/bg/bench-user/readings", batch(k), headers); r = c.getresponse(); body = r.read()
    assert r.status == 201, (r.status, body[:200])
    assert b'"inserted":1000,' in body, body[:200]
post(0); time.sleep(2.0)
subprocess.run(["callgrind_control", "-z"], check=True, capture_output=True)
for k in range(1, n + 1):
    post(k)
time.sleep(3.0)  # let the relay publish the outbox and the audit batch be written
subprocess.run(["callgrind_control", "-d"], check=True, capture_output=True)
PY
# callgrind sometimes writes the counts since the zeroing in two dumps (a dump
# request can be taken up twice), so every numbered dump is added up: all of them
# were written after the zeroing and before the server stops.
ir=0
for dump in "$OUT"/callgrind.out.*; do
    ir=$((ir + $(grep -m1 '^summary:\|^totals:' "$dump" | awk '{print $2}')))
done
dumps="$(ls "$OUT"/callgrind.out.* | wc -l) dump(s) in $OUT"
echo "$(basename "$BIN") bulk: $((ir / (N * 1000))) instructions/reading ($ir over $N batches of 1,000; $dumps)"
