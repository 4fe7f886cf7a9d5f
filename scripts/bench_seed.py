"""Seeds the benchmark user: 7 days at 5-minute resolution (2,016 readings) for
`bench-user` on each cgm-hub given by base URL, checks that a one-day range
returns 288 readings from each, and prints that range's query string.
Shared by the HTTP benchmark scripts. With BENCH_TOKEN set, every request carries
it as a bearer token (for servers with authentication on).

    RANGE_QUERY=$(python3 scripts/bench_seed.py http://127.0.0.1:5098 [...])
"""
import datetime
import json
import os
import sys
import urllib.request

auth = {"Authorization": f"Bearer {os.environ['BENCH_TOKEN']}"} if os.environ.get("BENCH_TOKEN") else {}

end = datetime.datetime.now(datetime.timezone.utc).replace(minute=0, second=0, microsecond=0)
start = end - datetime.timedelta(days=7)
stamp = "%Y-%m-%dT%H:%M:%SZ"
readings = [{"timestamp": (start + datetime.timedelta(minutes=5 * i)).strftime(stamp),
             "glucose_value": 90 + (i * 7) % 120, "trend_direction": "flat", "trend_rate": 0.1,
             "device_info": {"device_id": "G7", "serial_number": "SN1", "transmitter_id": "TX1"},
             "source": "dexcom"} for i in range(7 * 288)]
day_start = (end - datetime.timedelta(days=2)).strftime(stamp)
day_end = (end - datetime.timedelta(days=1)).strftime(stamp)
query = f"startDate={day_start}&endDate={day_end}&limit=1000"
for base in sys.argv[1:]:
    req = urllib.request.Request(f"{base}/api/bg/bench-user/readings",
                                 data=json.dumps({"readings": readings}).encode(),
                                 headers={"content-type": "application/json", **auth})
    assert urllib.request.urlopen(req).status == 201, base
    page = json.load(urllib.request.urlopen(urllib.request.Request(f"{base}/api/bg/bench-user?{query}", headers=auth)))
    n = len(page["data"]["readings"])
    assert n == 288, f"{base}: a one-day range returns {n} readings, expected 288"
print(query)
