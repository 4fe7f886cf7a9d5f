#!/usr/bin/env python3
"""The abuse cases of the hardening review, run against a live cgm-hub for a while.

Standard library only. Each worker repeats one attack until the deadline:

  slowloris        connections that send half a request's headers, then nothing
  idle             connections opened and left idle (past the connection cap)
  unsigned-body    webhooks without signature headers, streaming a body that never ends
  big-webhook      signed webhooks one byte over WEBHOOK_MAX_BODY_BYTES
  slow-webhook     signed webhooks whose body stalls (the concurrency cap and timeout)
  replay           one captured signed delivery re-sent to many users, digest in upper case
  request-id       anonymous requests with an 8 KB X-Request-Id
  bulk             bulk writes of MAX_BATCH_RECORDS + 1000 readings, with a valid token
  bad-token        requests with forged bearer tokens

It prints how many attempts each made and what the server answered, and exits 0.
Usage: abuse_load.py BASE_URL SECONDS WEBHOOK_SECRET BEARER_TOKEN
"""

import collections
import hashlib
import hmac
import json
import socket
import sys
import threading
import time
import urllib.parse

BASE, SECONDS, SECRET, TOKEN = sys.argv[1], float(sys.argv[2]), sys.argv[3].encode(), sys.argv[4]
HOST, PORT = urllib.parse.urlsplit(BASE).hostname, urllib.parse.urlsplit(BASE).port
DEADLINE = time.monotonic() + SECONDS
counts = collections.Counter()
lock = threading.Lock()


def count(what):
    with lock:
        counts[what] += 1


def connect():
    s = socket.create_connection((HOST, PORT), timeout=30)
    s.settimeout(30)
    return s


def status_of(s):
    """The status code of the response on socket s ('closed' if none came)."""
    try:
        head = s.recv(4096)
    except OSError:
        return "closed"
    if not head:
        return "closed"
    parts = head.split(b" ", 2)
    return parts[1].decode() if len(parts) > 1 else "garbage"


def request(method, path, headers, body=b""):
    s = connect()
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return status_of(s)
    except OSError:
        return "closed"
    finally:
        s.close()


def signed(body, ts=None):
    ts = str(ts if ts is not None else int(time.time()))
    digest = hmac.new(SECRET, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return ts, "sha256=" + digest


def slowloris():
    held = []
    while time.monotonic() < DEADLINE:
        try:
            s = connect()
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            held.append(s)
            count("slowloris opened")
        except OSError:
            count("slowloris refused")
        if len(held) >= 200:
            # The server closes them after HTTP_HEADER_READ_TIMEOUT_SECONDS: read the closes.
            for s in held:
                count("slowloris closed by server" if status_of(s) == "closed" else "slowloris answered")
                s.close()
            held = []
    for s in held:
        s.close()


def idle():
    while time.monotonic() < DEADLINE:
        held = []
        for _ in range(300):
            try:
                held.append(connect())
            except OSError:
                count("idle refused")
        count(f"idle opened {len(held)}")
        time.sleep(2)
        for s in held:
            s.close()


def unsigned_body():
    while time.monotonic() < DEADLINE:
        s = connect()
        try:
            s.sendall(b"POST /api/bg/victim/webhook HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 16000000\r\n\r\n" + b"{" * 65536)
            count("unsigned-body " + status_of(s))
        except OSError:
            count("unsigned-body closed")
        finally:
            s.close()


def big_webhook():
    body = b'{"type":"egvs","records":[],"pad":"' + b"x" * (1 << 20) + b'"}'
    while time.monotonic() < DEADLINE:
        ts, sig = signed(body)
        count("big-webhook " + request("POST", "/api/bg/victim/webhook",
                                       {"X-Webhook-Timestamp": ts, "X-Webhook-Signature": sig}, body))


def slow_webhook():
    while time.monotonic() < DEADLINE:
        ts, sig = signed(b"{}")
        s = connect()
        try:
            s.sendall(f"POST /api/bg/victim/webhook HTTP/1.1\r\nHost: x\r\nX-Webhook-Timestamp: {ts}\r\n"
                      f"X-Webhook-Signature: {sig}\r\nContent-Length: 1000\r\n\r\n{{".encode())
            count("slow-webhook " + status_of(s))
        except OSError:
            count("slow-webhook closed")
        finally:
            s.close()


def replay():
    body = json.dumps({"type": "other", "note": "captured"}).encode()
    ts, sig = signed(body)
    upper = "sha256=" + sig[len("sha256="):].upper()
    n = 0
    while time.monotonic() < DEADLINE:
        n += 1
        if int(time.time()) - int(ts) > 250:
            ts, sig = signed(body)
            upper = "sha256=" + sig[len("sha256="):].upper()
        status = request("POST", f"/api/bg/victim-{n % 1000}/webhook",
                         {"X-Webhook-Timestamp": ts, "X-Webhook-Signature": upper}, body)
        count("replay " + status)


def request_id():
    long_id = "r" * 8000
    while time.monotonic() < DEADLINE:
        count("request-id " + request("GET", "/health", {"X-Request-Id": long_id}))


def bulk():
    reading = {"timestamp": "2026-01-01T00:00:00Z", "glucose_value": 100}
    body = json.dumps({"readings": [reading] * 11000}).encode()
    while time.monotonic() < DEADLINE:
        count("bulk " + request("POST", "/api/bg/abuser/readings",
                                {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
                                body))


def bad_token():
    forged = TOKEN[:-4] + ("AAAA" if not TOKEN.endswith("AAAA") else "BBBB")
    while time.monotonic() < DEADLINE:
        count("bad-token " + request("GET", "/api/bg/abuser/latest", {"Authorization": f"Bearer {forged}"}))


workers = [slowloris, idle, unsigned_body, big_webhook, slow_webhook, replay, request_id, bulk, bad_token]
threads = [threading.Thread(target=w, daemon=True) for w in workers for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join(timeout=SECONDS + 60)
for what, n in sorted(counts.items()):
    print(f"  {what:45} {n}")
