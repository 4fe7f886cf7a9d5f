#!/usr/bin/env bash
# Runs iglu-python 0.4.3 (GPL; a black-box oracle, never read or vendored) on a
# CSV of id,time,gl (time an RFC 3339 instant) with the process zone set to TZ,
# and prints the 49 metrics per id as JSON (scripts/oracle/iglu_metrics.py).
#
#   scripts/iglu-oracle.sh data.csv America/New_York [--agp] [--grid]
#
# The venv lives under ${CARGO_TARGET_DIR:-target}/iglu-venv and is created once
# (under a lock, so parallel callers wait for one install).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/iglu-venv"
mkdir -p "$target"
csv="$1"; tz="$2"; shift 2
(
  flock 9
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import iglu_python' 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'iglu-python==0.4.3' >&2
  fi
) 9>"$target/iglu-venv.lock"
TZ="$tz" exec "$venv/bin/python" "$here/oracle/iglu_metrics.py" "$csv" "$tz" "$@"
