"""Prints the readings of one range page as JSON, less `created_at`/`updated_at` (each store's own
write times), so that scripts/bench-range.sh can check that two servers return the same readings.

    python3 scripts/bench_page.py TOKEN URL
"""
import json
import sys
import urllib.request

token, url = sys.argv[1], sys.argv[2]
req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
readings = json.load(urllib.request.urlopen(req))["data"]["readings"]
assert len(readings) == 288, f"{url}: {len(readings)} readings, expected 288"
print(json.dumps([{k: v for k, v in r.items() if k not in ("created_at", "updated_at")} for r in readings]))
