#!/usr/bin/env bash
# Property-based HTTP fuzzing of the running binary against its own OpenAPI
# document, with schemathesis (PyPI, pinned): no request may produce a 5xx, every
# response must match the documented status codes, headers and schemas, and
# schema-invalid input must be rejected. "Schema-valid input is accepted" is not
# checked: some rules cannot be written in the schema (a timestamp at most 5
# minutes ahead of now, a cursor issued by this server).
#
#   scripts/fuzz-api.sh [path/to/cgm-hub]    (default: the debug build)
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_DIR="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
BIN="$(realpath "${1:-$TARGET_DIR/debug/cgm-hub}")"
VENV="${FUZZ_VENV:-$TARGET_DIR/schemathesis-venv}"
VERSION=4.32.5
SEED=20261122
EXAMPLES="${FUZZ_EXAMPLES:-100}"

if [ ! -x "$VENV/bin/schemathesis" ] || ! "$VENV/bin/schemathesis" --version | grep -q "$VERSION"; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
fi

WORK=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
SIM_PORT=$(free_port)
# The Dexcom simulator, so that the OAuth endpoints are fuzzed against a real peer.
"$BIN" simulate dexcom --bind "127.0.0.1:$SIM_PORT" >"$WORK/simulator.log" 2>&1 &
SIMULATOR=$!
# Started from the scratch folder, so a developer's .env in the repository is not read.
# Real bearer authentication, so that schemathesis also checks that every
# secured operation refuses requests without (or with a bad) token.
SECRET="fuzz-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
TOKEN=$(env -i PATH="$PATH" AUTH_JWT_SECRET="$SECRET" "$BIN" token mint --sub fuzz-admin --roles admin --ttl 1h)
(cd "$WORK" && exec env -i PATH="$PATH" BIND_ADDR="127.0.0.1:$PORT" SQLITE_PATH="$WORK/fuzz.db" \
    AUTH_JWT_SECRET="$SECRET" WEBHOOK_SIGNING_SECRET="webhook-$SECRET" LOG_LEVEL=WARNING \
    RATE_LIMIT_USER_PER_MINUTE=10000000 RATE_LIMIT_ANONYMOUS_PER_MINUTE=10000000 \
    DEXCOM_API_BASE_URL="http://127.0.0.1:$SIM_PORT" DEXCOM_CLIENT_ID=cgm-hub-demo \
    DEXCOM_CLIENT_SECRET=cgm-hub-demo-secret DEXCOM_REDIRECT_URI="http://127.0.0.1:$PORT/oauth/callback" \
    "$BIN" serve >"$WORK/server.log" 2>&1) &
SERVER=$!
trap 'status=$?; kill $SERVER $SIMULATOR 2>/dev/null || true; [ $status -eq 0 ] || { echo "cgm-hub log:"; cat "$WORK/server.log"; }; rm -rf "$WORK"' EXIT
python3 - "$PORT" <<'PY'
import sys, time, urllib.request
for _ in range(200):
    try:
        if urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1).status == 200:
            sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit("cgm-hub did not become healthy")
PY

cd "$WORK"
"$VENV/bin/schemathesis" run "http://127.0.0.1:$PORT/openapi.json" \
    --url "http://127.0.0.1:$PORT" \
    --header "Authorization: Bearer $TOKEN" \
    --checks all --exclude-checks positive_data_acceptance \
    --max-examples "$EXAMPLES" --seed "$SEED" \
    --no-color
