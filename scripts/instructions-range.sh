#!/usr/bin/env bash
# Instructions the server spends per one-day range read (`GET /api/bg/{user}?startDate=..&endDate=..
# &limit=1000`, 288 readings of the 7-day series of scripts/bench_seed.py), counted by valgrind's
# callgrind, as scripts/instructions-latest.sh counts them for GET latest: requests go one at a time
# over one keep-alive connection with a patient bearer token (authorization and the audit trail on);
# counting starts after a warm-up and ends after the audit trail's batch has been written.
#
#   scripts/instructions-range.sh BINARY [REQUESTS]      (default 500)
#
# Prints instructions per request; the callgrind output stays in $OUT (default a temp dir) for
# callgrind_annotate. EXTRA_ENV="NAME=value" is passed to the server.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "$1"); N="${2:-500}"
OUT="${OUT:-$(mktemp -d)}"; mkdir -p "$OUT"; rm -f "$OUT"/callgrind.out*
command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
secret="instr-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
token=$(env -i AUTH_JWT_SECRET="$secret" "$BIN" token mint --sub bench-user --roles patient --ttl 1h)
(cd "$work" && exec env -i PATH="$PATH" ${EXTRA_ENV:-} BIND_ADDR="127.0.0.1:$port" SQLITE_PATH="$work/b.db" \
    AUTH_JWT_SECRET="$secret" RATE_LIMIT_USER_PER_MINUTE=100000000 RATE_LIMIT_ANONYMOUS_PER_MINUTE=100000000 \
    valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" "$BIN" serve >"$OUT/server.log" 2>&1) &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 600); do curl -sf -o /dev/null "http://127.0.0.1:$port/health" && break; sleep 0.1; done
query=$(BENCH_TOKEN="$token" python3 scripts/bench_seed.py "http://127.0.0.1:$port")
python3 - "$port" "$token" "$N" "$query" <<'PY'
import http.client, sys, time, subprocess
port, token, n, query = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
headers = {"Authorization": f"Bearer {token}"}
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
def run(k):
    for _ in range(k):
        c.request("GET", f"/api/bg/bench-user?{query}", headers=headers); r = c.getresponse(); r.read()
        assert r.status == 200, r.status
run(50); time.sleep(0.5)
subprocess.run(["callgrind_control", "-z"], check=True, capture_output=True)
run(n); time.sleep(1.0)  # let the audit batch be written
subprocess.run(["callgrind_control", "-d"], check=True, capture_output=True)
PY
# callgrind sometimes writes the counts since the zeroing in two dumps (a
# dump request can be taken up twice), so every numbered dump is added up: all
# of them were written after the zeroing and before the server stops.
ir=0
for dump in "$OUT"/callgrind.out.*; do
    ir=$((ir + $(grep -m1 '^summary:\|^totals:' "$dump" | awk '{print $2}')))
done
echo "$(basename "$BIN") range: $((ir / N)) instructions/request ($ir over $N requests; $(ls "$OUT"/callgrind.out.* | wc -l) dump(s) in $OUT)"
