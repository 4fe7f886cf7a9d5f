#!/usr/bin/env bash
# An SMTP sink for the invitation tests (tests/it/invitations.rs): writes each
# message it receives to a file in DIR and prints its port on standard output.
# Usage: scripts/smtp-sink.sh DIR
# The venv lives under ${CARGO_TARGET_DIR:-target}/smtp-venv and is created once
# (aiosmtpd from PyPI). Exit 2: it cannot run (no python3, no PyPI).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/smtp-venv"
mkdir -p "$target"
(
  flock 9
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv" >&2 || exit 2
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'aiosmtpd==1.4.6' >&2 || exit 2
  fi
) 9>"$target/smtp-venv.lock" || exit 2
exec "$venv/bin/python" "$here/smtp_sink.py" "$@"
