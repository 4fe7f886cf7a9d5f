#!/usr/bin/env python3
"""Independent oracle for the meal glucose response (meal-response.md), plain Python.

Written from the definition and the status rule documented in docs/journal.md
("Meal glucose response"), not from the Rust code; tests/it/meal_response_oracle.rs
compares the two on random traces.

Input (stdin): JSON {"cases": [{"readings": [[ms, mg_dl], ...], "others": [ms, ...],
"now": ms}, ...]}, times in milliseconds from the meal, readings sorted by time.
Output (stdout): a JSON list, one object per case, with the contract's fields
(status, baseline, peak, time_to_peak, delta_g, iauc_120, iauc_180,
return_to_baseline, coverage, overlap, score); times in minutes.
"""

import json
import sys

WINDOW = 180.0
SHORT = 120.0
RETURN_UNTIL = 240.0
LATE = 180.0  # Dexcom uploads may arrive up to 3 h late
MAX_GAP = 45.0


def value_at(pts, t):
    """The linearly interpolated trace at t, or None outside the readings."""
    for k, (tk, gk) in enumerate(pts):
        if tk == t:
            return gk
        if tk > t:
            if k == 0:
                return None
            ta, ga = pts[k - 1]
            return ga + (gk - ga) * (t - ta) / (tk - ta)
    return None


def area_above(pts, base, end):
    """iAUC over [0, end]: trapezoids between the trace at 0, the readings inside,
    and the trace at end; only the part above base counts."""
    knots = []
    g0 = value_at(pts, 0.0)
    if g0 is not None:
        knots.append((0.0, g0))
    knots += [(t, g) for (t, g) in pts if 0.0 < t < end]
    ge = value_at(pts, end)
    if ge is not None:
        knots.append((end, ge))
    total = 0.0
    for (ta, ga), (tb, gb) in zip(knots, knots[1:]):
        above_a, above_b = ga >= base, gb >= base
        if above_a and above_b:
            total += (tb - ta) * ((ga - base) + (gb - base)) / 2.0
        elif ga > base and gb < base:
            tc = ta + (tb - ta) * (ga - base) / (ga - gb)
            total += (tc - ta) * (ga - base) / 2.0
        elif ga < base and gb > base:
            tc = ta + (tb - ta) * (base - ga) / (gb - ga)
            total += (tb - tc) * (gb - base) / 2.0
    return total


def first_return(pts, k_peak, base):
    tp, gp = pts[k_peak]
    if gp <= base:
        return tp
    for (ta, ga), (tb, gb) in zip(pts[k_peak:], pts[k_peak + 1:]):
        if gb <= base:
            tc = ta + (tb - ta) * (ga - base) / (ga - gb)
            return tc if tc <= RETURN_UNTIL else None
    return None


def clamp01(x):
    return max(0.0, min(1.0, x))


def score(delta, peak, back):
    parts = [clamp01((90.0 - delta) / 60.0), clamp01((200.0 - peak) / 60.0)]
    parts.append(0.0 if back is None else clamp01((240.0 - back) / 120.0))
    return 100.0 * sum(parts) / 3.0


def evaluate(case):
    pts = [(ms / 60000.0, float(g)) for ms, g in case["readings"]]
    now = case["now"] / 60000.0
    others = [ms / 60000.0 for ms in case["others"]]
    inside = [(t, g) for (t, g) in pts if 0.0 <= t <= WINDOW]
    coverage = round(min(1.0, len(inside) / 37.0), 3)
    out = {
        "status": "pending",
        "baseline": None,
        "peak": None,
        "time_to_peak": None,
        "delta_g": None,
        "iauc_120": None,
        "iauc_180": None,
        "return_to_baseline": None,
        "coverage": coverage,
        "overlap": any(0.0 < t <= WINDOW for t in others),
        "score": None,
    }
    if now < WINDOW:
        return out
    before = [g for (t, g) in pts if -30.0 <= t <= 0.0]
    enough = (
        len(before) >= 2
        and coverage >= 0.7
        and len(inside) > 0
        and inside[0][0] <= MAX_GAP
        and inside[-1][0] >= WINDOW - MAX_GAP
        and all(b[0] - a[0] <= MAX_GAP for a, b in zip(inside, inside[1:]))
    )
    after_meal = [k for k, (t, _) in enumerate(pts) if 0.0 < t <= WINDOW]
    if not enough or not after_meal:
        if now >= WINDOW + LATE:
            out["status"] = "insufficient_data"
        return out
    base = sum(before) / len(before)
    k_peak = after_meal[0]
    for k in after_meal:
        if pts[k][1] > pts[k_peak][1]:
            k_peak = k
    back = first_return(pts, k_peak, base)
    last_t = pts[-1][0]
    arrived = last_t >= WINDOW and (back is not None or last_t >= RETURN_UNTIL)
    if not arrived and now < WINDOW + LATE:
        return out
    peak = pts[k_peak][1]
    out.update(
        status="complete",
        baseline=base,
        peak=peak,
        time_to_peak=pts[k_peak][0],
        delta_g=peak - base,
        iauc_120=area_above(pts, base, SHORT),
        iauc_180=area_above(pts, base, WINDOW),
        return_to_baseline=back,
        score=score(peak - base, peak, back),
    )
    return out


def main():
    cases = json.load(sys.stdin)["cases"]
    json.dump([evaluate(c) for c in cases], sys.stdout)


if __name__ == "__main__":
    main()
