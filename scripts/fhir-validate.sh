#!/usr/bin/env bash
# Validates a FHIR R4 JSON resource (a Bundle and every resource in it) against
# the R4 (4.0.1) models of the PyPI package fhir.resources 6.1.0 (BSD), used as
# an independent check of the shape of GET /api/bg/{userId}/summary.fhir.
#
#   scripts/fhir-validate.sh bundle.json
#
# Prints what it checked and exits 0 when valid, 1 when not, 2 when it cannot run.
# The venv lives under ${CARGO_TARGET_DIR:-target}/fhir-venv and is created once
# (under a lock, so parallel callers wait for one install).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/fhir-venv"
mkdir -p "$target"
(
  flock 9
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import fhir.resources.bundle' 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv" >&2 || exit 2
    # fhir.resources 6.1.0 holds the R4 models (later majors default to R5 and
    # need pydantic 2); it needs pydantic 1.
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      'fhir.resources==6.1.0' 'pydantic[email]==1.10.27' >&2 || exit 2
  fi
) 9>"$target/fhir-venv.lock"
exec "$venv/bin/python" "$here/fhir_validate.py" "$@"
