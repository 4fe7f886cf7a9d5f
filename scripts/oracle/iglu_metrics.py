#!/usr/bin/env python3
"""Black-box oracle: runs iglu-python 0.4.3 (GPL; only called, never read) on a CSV.

Usage: iglu_metrics.py CSV TZ [--agp] [--grid] [--time]
CSV columns: id,time,gl with time an RFC 3339 UTC instant. The process zone must be TZ
(scripts/iglu-oracle.sh sets it): iglu localises naive timestamps to the process zone, so
the instants are handed over as naive local wall-clock times in TZ.
Prints one JSON object: {"<id>": {"<metric>": value|null, ...}, ...}; errors of one metric
are reported as null plus an entry in "_errors".
"""
import contextlib
import json
import math
import sys
import time
import warnings

import numpy as np
import pandas as pd
import iglu_python as iglu

warnings.filterwarnings("ignore")


def scalar(x, col=None):
    if isinstance(x, pd.DataFrame):
        if col is None:
            cols = [c for c in x.columns if c != "id"]
            col = cols[0]
        x = x[col].iloc[0]
    elif isinstance(x, dict):
        x = x[col] if col is not None else next(v for k, v in x.items() if k != "id")
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def metrics(df, tz):
    out, errors = {}, {}

    def put(name, fn, col=None):
        try:
            out[name] = scalar(fn(), col)
        except Exception as e:  # noqa: BLE001 - the oracle reports, the test decides
            out[name] = None
            errors[name] = f"{type(e).__name__}: {e}"

    def put_columns(name, fn, columns):
        """One iglu call whose result holds several metrics: {our key: its column}."""
        try:
            result = fn()
            for key, col in columns.items():
                out[key] = scalar(result, col)
        except Exception as e:  # noqa: BLE001 - the oracle reports, the test decides
            for key in columns:
                out[key] = None
            errors[name] = f"{type(e).__name__}: {e}"

    put("mean", lambda: iglu.mean_glu(df))
    put("median", lambda: iglu.median_glu(df))
    put("sd", lambda: iglu.sd_glu(df))
    put("cv", lambda: iglu.cv_glu(df))
    put("range", lambda: iglu.range_glu(df))
    put("iqr", lambda: iglu.iqr_glu(df))
    put("mad", lambda: iglu.mad_glu(df))
    put("gmi", lambda: iglu.gmi(df))
    put("ea1c", lambda: iglu.ea1c(df))
    put("in_range_70_180", lambda: iglu.in_range_percent(df, [[70, 180]]))
    put("in_range_70_140", lambda: iglu.in_range_percent(df, [[70, 140]]))
    put("below_54", lambda: iglu.below_percent(df, [54]))
    put("below_70", lambda: iglu.below_percent(df, [70]))
    put("above_180", lambda: iglu.above_percent(df, [180]))
    put("above_250", lambda: iglu.above_percent(df, [250]))
    put("gri", lambda: iglu.gri(df, tz=tz))
    put("lbgi", lambda: iglu.lbgi(df))
    put("hbgi", lambda: iglu.hbgi(df))
    put("adrr", lambda: iglu.adrr(df))
    put("j_index", lambda: iglu.j_index(df))
    put("grade", lambda: iglu.grade(df))
    put("grade_eugly", lambda: iglu.grade_eugly(df))
    put("grade_hyper", lambda: iglu.grade_hyper(df))
    put("grade_hypo", lambda: iglu.grade_hypo(df))
    put("m_value", lambda: iglu.m_value(df))
    put("hyper_index", lambda: iglu.hyper_index(df))
    put("hypo_index", lambda: iglu.hypo_index(df))
    put("igc", lambda: iglu.igc(df))
    put("cogi", lambda: iglu.cogi(df))
    put("mage", lambda: iglu.mage(df, tz=tz))
    put("mage_naive", lambda: iglu.mage(df, version="naive", tz=tz))
    put("conga24", lambda: iglu.conga(df, n=24, tz=tz))
    put("conga1", lambda: iglu.conga(df, n=1, tz=tz))
    put("modd", lambda: iglu.modd(df, tz=tz))
    put("mag", lambda: iglu.mag(df, tz=tz))
    put("gvp", lambda: iglu.gvp(df))
    put("sd_roc", lambda: iglu.sd_roc(df, tz=tz))
    put("hourly_auc", lambda: iglu.auc(df, tz=tz))
    put_columns("active_percent", lambda: iglu.active_percent(df, tz=tz),
                {"active_percent": "active_percent", "ndays": "ndays"})
    put_columns("sd_measures", lambda: iglu.sd_measures(df, tz=tz),
                {"sd_w": "SDw", "sd_hhmm": "SDhhmm", "sd_wsh": "SDwsh",
                 "sd_dm": "SDdm", "sd_b": "SDb", "sd_bdm": "SDbdm"})
    put_columns("cv_measures", lambda: iglu.cv_measures(df, tz=tz),
                {"cv_mean": "CVmean", "cv_sd": "CVsd"})
    put("pgs", lambda: iglu.pgs(df))
    if errors:
        out["_errors"] = errors
    return out


def agp(df, tz):
    gd2d, _dates, dt0 = iglu.CGMS2DayByDay(df, dt0=5, tz=tz)
    cols = []
    for j in range(gd2d.shape[1]):
        col = gd2d[:, j]
        col = col[~np.isnan(col)]
        if col.size == 0:
            cols.append({"n": 0, "p": None})
        else:
            cols.append({"n": int(col.size),
                         "p": [float(v) for v in np.percentile(col, [5, 25, 50, 75, 95])]})
    return cols


def main():
    # iglu prints warnings on stdout; keep stdout for the JSON alone.
    with contextlib.redirect_stdout(sys.stderr):
        result = compute()
    json.dump(result, sys.stdout)


def compute():
    path, tz = sys.argv[1], sys.argv[2]
    raw = pd.read_csv(path, dtype={"id": str})
    t = pd.to_datetime(raw["time"], utc=True).dt.tz_convert(tz).dt.tz_localize(None)
    result = {}
    started = time.perf_counter()
    for uid in raw["id"].unique():
        mask = raw["id"] == uid
        df = pd.DataFrame({"id": raw["id"][mask].values, "time": t[mask].values,
                           "gl": raw["gl"][mask].astype(float).values})
        result[uid] = metrics(df, tz)
        if "--agp" in sys.argv:
            try:
                result[uid]["_agp"] = agp(df, tz)
            except Exception as e:  # noqa: BLE001
                result[uid]["_agp_error"] = f"{type(e).__name__}: {e}"
        if "--grid" in sys.argv:
            gd2d, dates, dt0 = iglu.CGMS2DayByDay(df, tz=tz)
            result[uid]["_grid"] = {"dt0": float(dt0), "dates": [str(d) for d in dates],
                                    "rows": [[None if np.isnan(v) else float(v) for v in r]
                                             for r in gd2d]}
    if "--time" in sys.argv:
        print(f"iglu-python metrics: {time.perf_counter() - started:.3f} s for {len(raw)} readings",
              file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
