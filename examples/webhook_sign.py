#!/usr/bin/env python3
"""Send a signed webhook delivery to cgm-hub (Python 3.11, standard library only).

    python3 examples/webhook_sign.py --url http://127.0.0.1:5001 --user demo-alice \
        --secret "$WEBHOOK_SIGNING_SECRET" --file examples/webhook_payload.json

The payload file is sent byte for byte as read (no re-serialization), because the
signature covers the exact bytes of the body. --secret defaults to the
WEBHOOK_SIGNING_SECRET environment variable (a secret on the command line is
visible to other users of the machine in `ps`).

The server checks (src/sources/webhook/signature.rs):
    X-Webhook-Timestamp: <unix seconds, plain integer, within 300 s of its clock>
    X-Webhook-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>

Prints the HTTP status and the response body to stdout. Exit codes: 0 on a 2xx
(202: stored in the inbox, processed right after), 1 otherwise (including a
network error or an unreadable file), 2 bad command line.
"""

import argparse
import hashlib
import hmac
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Webhook-Signature header value for `body` sent with X-Webhook-Timestamp `timestamp`."""
    message = str(timestamp).encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def deliver(url: str, secret: str, body: bytes) -> tuple[int, str]:
    """POSTs a signed delivery; returns (HTTP status, response body)."""
    timestamp = int(time.time())
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json",
        "X-Webhook-Timestamp": str(timestamp),
        "X-Webhook-Signature": sign(secret, timestamp, body),
    })
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def main() -> int:
    p = argparse.ArgumentParser(description="POST a signed webhook delivery to cgm-hub.")
    p.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:5001")
    p.add_argument("--user", required=True, help="user id, e.g. demo-alice")
    p.add_argument("--secret", default=os.environ.get("WEBHOOK_SIGNING_SECRET"),
                   help="the server's WEBHOOK_SIGNING_SECRET (default: that environment variable)")
    p.add_argument("--file", required=True, help="JSON payload, sent exactly as stored")
    args = p.parse_args()
    if not args.secret:
        p.error("--secret or WEBHOOK_SIGNING_SECRET is required")

    try:
        with open(args.file, "rb") as f:
            body = f.read()
    except OSError as e:
        print(f"cannot read {args.file}: {e.strerror}", file=sys.stderr)
        return 1
    url = f"{args.url.rstrip('/')}/api/bg/{urllib.parse.quote(args.user, safe='')}/webhook"
    try:
        status, text = deliver(url, args.secret, body)
    except (urllib.error.URLError, OSError) as e:
        print(f"cannot reach {url}: {getattr(e, 'reason', e)}", file=sys.stderr)
        return 1
    print(status)
    print(text)
    return 0 if 200 <= status < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
