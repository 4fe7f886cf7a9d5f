#!/usr/bin/env bash
# Starts a local DynamoDB emulator (moto server) for the dynamodb store's tests and
# benchmarks. Idempotent: installs moto into a venv only when missing, starts the server
# only when the port does not answer, and returns once it answers.
#   MOTO_VENV [~/.cache/cgm-hub/moto-venv]  MOTO_HOST [127.0.0.1]  MOTO_PORT [8000]
#   MOTO_LOG [~/.cache/cgm-hub/moto.log]  MOTO_MAX_RSS_MIB [3072]
set -euo pipefail

venv="${MOTO_VENV:-$HOME/.cache/cgm-hub/moto-venv}"
host="${MOTO_HOST:-127.0.0.1}"
port="${MOTO_PORT:-8000}"
log="${MOTO_LOG:-$HOME/.cache/cgm-hub/moto.log}"
url="http://$host:$port/moto-api/"

answers() { curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; }

# moto's memory only grows (about 2 GiB per run of the suite's DynamoDB tests, even
# though they delete their tables); one of ours past MOTO_MAX_RSS_MIB [3072] is
# restarted before it is used again.
ours=$(pgrep -f "moto_server -H $host -p $port" | head -1 || true)
if [ -n "$ours" ] && answers; then
    rss_mib=$(( $(awk '/VmRSS/ {print $2}' "/proc/$ours/status" 2>/dev/null || echo 0) / 1024 ))
    if [ "$rss_mib" -gt "${MOTO_MAX_RSS_MIB:-3072}" ]; then
        echo "restarting moto_server (pid $ours, ${rss_mib} MiB resident)"
        kill -9 "$ours"  # in-memory only: nothing to save, and a clean exit frees gigabytes slowly
        for _ in $(seq 1 50); do answers || break; sleep 0.2; done
    fi
fi
if answers; then
    echo "moto already answering at http://$host:$port"
    exit 0
fi

if [ ! -x "$venv/bin/moto_server" ]; then
    echo "installing moto[server] into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'moto[server]'
fi

mkdir -p "$(dirname "$log")"
nohup "$venv/bin/moto_server" -H "$host" -p "$port" >>"$log" 2>&1 &
echo "started moto_server (pid $!), log $log"

for _ in $(seq 1 150); do
    if answers; then
        echo "moto answering at http://$host:$port"
        exit 0
    fi
    sleep 0.2
done
echo "moto did not answer at $url within 30 s; see $log" >&2
exit 1
