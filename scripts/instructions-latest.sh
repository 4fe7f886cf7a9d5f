#!/usr/bin/env bash
# Instructions the server spends per `GET /api/bg/{user}/latest`, counted by
# valgrind's callgrind: unlike req/s this is repeatable on a noisy machine, so it
# tells small changes apart. Requests go one at a time over one keep-alive
# connection; counting starts after a warm-up and ends after the audit trail's
# batch has been written.
#
#   scripts/instructions-latest.sh BINARY [auth|noauth] [REQUESTS]
#
# `auth` mints an HS256 patient token with the binary (which must have
# `token mint`); `noauth` runs with AUTH_DISABLED=true. Prints instructions per
# request; the callgrind output stays in $OUT (default a temp dir) for
# callgrind_annotate. EXTRA_ENV="NAME=value" is passed to the server (e.g. an
# experiment's switch).
set -euo pipefail
BIN=$(realpath "$1"); MODE="${2:-auth}"; N="${3:-2000}"
OUT="${OUT:-$(mktemp -d)}"; mkdir -p "$OUT"; rm -f "$OUT"/callgrind.out*
command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
secret="instr-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
env_auth=(AUTH_DISABLED=true); token=""
if [ "$MODE" = auth ]; then
    env_auth=(AUTH_JWT_SECRET="$secret")
    token=$(env -i AUTH_JWT_SECRET="$secret" "$BIN" token mint --sub bench-user --roles patient --ttl 1h)
fi
(cd "$work" && exec env -i PATH="$PATH" ${EXTRA_ENV:-} BIND_ADDR="127.0.0.1:$port" SQLITE_PATH="$work/b.db" \
    "${env_auth[@]}" RATE_LIMIT_USER_PER_MINUTE=100000000 RATE_LIMIT_ANONYMOUS_PER_MINUTE=100000000 \
    valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" "$BIN" serve >"$OUT/server.log" 2>&1) &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
python3 - "$port" "$token" "$N" <<'PY'
import http.client, json, sys, time, datetime, subprocess
port, token, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
headers = {"Authorization": f"Bearer {token}"} if token else {}
for _ in range(600):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60); c.request("GET", "/health"); c.getresponse().read(); break
    except (OSError, http.client.HTTPException):
        time.sleep(0.1)
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
ts = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:00:00Z")
body = json.dumps({"timestamp": ts, "glucose_value": 120, "trend_direction": "flat", "trend_rate": 0.1, "source": "dexcom"})
c.request("POST", "/api/bg/bench-user/readings", body, {**headers, "content-type": "application/json"}); r = c.getresponse(); r.read()
assert r.status in (200, 201), r.status
def run(k):
    for _ in range(k):
        c.request("GET", "/api/bg/bench-user/latest", headers=headers); r = c.getresponse(); r.read()
        assert r.status == 200, r.status
run(200); time.sleep(0.5)
subprocess.run(["callgrind_control", "-z"], check=True, capture_output=True)
run(n); time.sleep(1.0)  # let the audit batch be written
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
echo "$(basename "$BIN") $MODE: $((ir / N)) instructions/request ($ir over $N requests; $dumps)"
