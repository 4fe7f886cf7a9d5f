#!/usr/bin/env python3
"""Writes the analytics benchmark's dataset (5 users, ~14,000 readings, 5-minute
Dexcom-like traces with a few gaps) as id,time,gl to the path given; the same
generator (and seed) as benches/analytics.rs."""
import datetime as dt
import math
import sys

state = 42


def rnd():
    global state
    state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
    return (state >> 11) / float(1 << 53)


rows = ["id,time,gl"]
for u in range(5):
    t0 = dt.datetime(2024, 6, 1, 0, 2 + u, tzinfo=dt.timezone.utc)
    for i in range(2800):
        if i % 613 <= 6:
            continue
        m = i * 5.0
        g = 130 + 50 * math.sin(m / 1440 * 2 * math.pi + u) + 25 * math.sin(m / 240) + (rnd() - 0.5) * 20
        g = min(max(float(math.floor(g + 0.5)), 39.0), 401.0)
        t = (t0 + dt.timedelta(minutes=i * 5)).isoformat()
        rows.append(f"u{u},{t},{g}")
open(sys.argv[1], "w").write("\n".join(rows) + "\n")
