#!/usr/bin/env python3
"""A small cgm-hub client: the latest reading and a summary of one UTC day.

Python 3.11, standard library only.

    python3 examples/client.py --base-url http://127.0.0.1:5001 --user demo-alice \
        [--token TOKEN] [--day 2026-12-05] [--page-size 288] [--json]

Authentication: a bearer JWT from --token, else from the CGM_HUB_TOKEN environment
variable; with neither, no Authorization header is sent (fine against a server run
with AUTH_DISABLED=true). For development, mint one with
`cgm-hub token mint --sub demo-alice --roles patient --ttl 1h`.

What it does:
  1. GET /api/bg/{user}/latest
  2. GET /api/bg/{user}?startDate=DAY&endDate=DAY+1&limit=N, then every
     data.pagination.next link until there is none (DAY defaults to the UTC day of
     the latest reading). A link is followed as given when it points at --base-url's
     scheme and host; otherwise (a proxy rewrote the host) its path and query are sent
     to --base-url, so the token never goes anywhere else.
  3. Prints a summary; with --json one JSON object:
     {"latest": <the reading as the server returned it>, "day": "YYYY-MM-DD",
      "count": N, "pages": P, "min": .., "max": .., "mean": .., "low_count": ..,
      "high_count": .., "time_in_range_percent": ..}

Readings beyond the sensor's range come back with "status": "low" or "high" and a
stand-in glucose_value (39 or 401, not a measurement). They are counted in `count`
and in the time-in-range denominator (always out of range), but left out of min,
max and mean, which describe measured values only. Time in range is the share of
readings in 70-180 mg/dL inclusive; mean and the percentage are rounded to 0.1.

Errors: the API's envelope {"status":"error","error":{"code","message","details"}}
is printed to stderr as `error CODE: message` (plus any field errors). A 429 is
retried after its Retry-After, at most 3 times.

Exit codes: 0 success; 1 an API, network or protocol error; 2 bad command line
(argparse); 3 no data: the user has no reading at all (404 on latest), or none on
the requested day (the summary is still printed).
"""

import argparse
import datetime as dt
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

TARGET_LOW, TARGET_HIGH = 70, 180  # mg/dL, inclusive
MAX_429_RETRIES = 3
EXIT_ERROR, EXIT_NO_DATA = 1, 3


class ApiError(Exception):
    def __init__(self, status, code, message, details=None):
        super().__init__(f"error {code}: {message}")
        self.status, self.code, self.details = status, code, details or {}


def get(url, token):
    """GET a URL and return the parsed JSON body, retrying 429s after Retry-After."""
    headers = {"Accept": "application/json", "User-Agent": "cgm-hub-example-client/1"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    for attempt in range(MAX_429_RETRIES + 1):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            if e.code == 429 and attempt < MAX_429_RETRIES:
                retry_after = e.headers.get("Retry-After", "1")
                time.sleep(min(int(retry_after) if retry_after.isdigit() else 1, 120))
                continue
            raise envelope_error(e) from None
        except (urllib.error.URLError, OSError) as e:
            raise ApiError(None, "NETWORK", f"{url}: {getattr(e, 'reason', e)}") from None
        except ValueError:
            raise ApiError(None, "BAD_RESPONSE", f"{url}: the body is not JSON") from None


def envelope_error(e):
    """The API's error envelope as an ApiError (or the bare status when there is none)."""
    try:
        error = json.loads(e.read())["error"]
        return ApiError(e.code, error["code"], error["message"], error.get("details"))
    except (ValueError, KeyError, TypeError):
        return ApiError(e.code, f"HTTP_{e.code}", e.reason or "unexpected response")


def same_origin_link(base_url, link):
    """`link` if it points at base_url's scheme and host, else its path and query on base_url."""
    base, target = urllib.parse.urlsplit(base_url), urllib.parse.urlsplit(link)
    if (target.scheme, target.netloc) == (base.scheme, base.netloc):
        return link
    return urllib.parse.urlunsplit((base.scheme, base.netloc, target.path, target.query, ""))


def fetch_day(base_url, user, day, page_size, token):
    """All readings of one UTC day, oldest first, and the number of pages it took."""
    query = urllib.parse.urlencode(
        {"startDate": day.isoformat(), "endDate": (day + dt.timedelta(days=1)).isoformat(), "limit": page_size}
    )
    url, readings, pages = f"{base_url}/api/bg/{user}?{query}", [], 0
    while url:
        data = get(url, token)["data"]
        readings += data["readings"]
        pages += 1
        url = data["pagination"]["next"] and same_origin_link(base_url, data["pagination"]["next"])
    return readings, pages


def summarize(latest, day, readings, pages):
    measured = [r["glucose_value"] for r in readings if not r.get("status")]
    in_range = sum(TARGET_LOW <= v <= TARGET_HIGH for v in measured)
    return {
        "latest": latest,
        "day": day.isoformat(),
        "count": len(readings),
        "pages": pages,
        "min": min(measured, default=None),
        "max": max(measured, default=None),
        "mean": round(sum(measured) / len(measured), 1) if measured else None,
        "low_count": sum(r.get("status") == "low" for r in readings),
        "high_count": sum(r.get("status") == "high" for r in readings),
        "time_in_range_percent": round(100 * in_range / len(readings), 1) if readings else None,
    }


def describe(reading):
    value = f"{reading['status'].upper()} (beyond the sensor's range)" if reading.get("status") \
        else f"{reading['glucose_value']} {reading['glucose_unit']}"
    return f"{value}, trend {reading.get('trend_direction') or 'unknown'}, at {reading['timestamp']}"


def page_size(raw):
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise argparse.ArgumentTypeError("must be an integer in 1..1000 (the server's limit)")
    return int(raw)


def main():
    p = argparse.ArgumentParser(description="Latest reading and a one-day summary from cgm-hub.")
    p.add_argument("--base-url", default="http://127.0.0.1:5001", help="e.g. http://127.0.0.1:5001")
    p.add_argument("--user", required=True, help="user id, e.g. demo-alice")
    p.add_argument("--token", default=os.environ.get("CGM_HUB_TOKEN"), help="bearer JWT (default: $CGM_HUB_TOKEN)")
    p.add_argument("--day", type=dt.date.fromisoformat, help="UTC day YYYY-MM-DD (default: the latest reading's)")
    p.add_argument("--page-size", type=page_size, default=288, metavar="1-1000",
                   help="readings per page (server maximum 1000; default 288, a day of 5-minute readings)")
    p.add_argument("--json", action="store_true", help="print one machine-readable JSON object")
    args = p.parse_args()
    base_url, user = args.base_url.rstrip("/"), urllib.parse.quote(args.user, safe="")

    try:
        latest = get(f"{base_url}/api/bg/{user}/latest", args.token)["data"]
    except ApiError as e:
        if e.status == 404:
            print(f"no readings for user {args.user!r} ({e})", file=sys.stderr)
            return EXIT_NO_DATA
        raise
    day = args.day or dt.datetime.fromisoformat(latest["timestamp"].replace("Z", "+00:00")).date()
    readings, pages = fetch_day(base_url, user, day, args.page_size, args.token)
    summary = summarize(latest, day, readings, pages)

    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{args.user} latest: {describe(latest)}")
        print(f"{summary['day']} (UTC): {summary['count']} readings in {pages} page(s)")
        if summary["min"] is not None:
            print(f"  min {summary['min']}  max {summary['max']}  mean {summary['mean']} mg/dL")
        if readings:
            print(f"  time in range {TARGET_LOW}-{TARGET_HIGH} mg/dL: {summary['time_in_range_percent']} %")
        if summary["low_count"] or summary["high_count"]:
            print(f"  {summary['low_count']} LOW and {summary['high_count']} HIGH (counted as out of range,"
                  " left out of min/max/mean)")
    if not readings:
        print(f"no readings for user {args.user!r} on {day} (UTC)", file=sys.stderr)
        return EXIT_NO_DATA
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ApiError as e:
        print(e, file=sys.stderr)
        for field in e.details.get("errors", []) if isinstance(e.details, dict) else []:
            print(f"  {field.get('pointer')}: {field.get('message')}", file=sys.stderr)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        sys.exit(130)
