//! The glucose response to one meal (`GET /api/users/{userId}/meals/{mealId}/response`),
//! computed from the readings around it exactly as `meal-response.md` defines it, so
//! that every number can be re-derived by hand or by `scripts/meal_response_oracle.py`.
//!
//! Times are minutes from the meal (t = 0); glucose is mg/dL.
//!
//! - **baseline**: mean of the readings with t in [−30, 0] (at least 2).
//! - **peak**, **time_to_peak**: the highest reading with t in (0, 180], the first on ties.
//! - **delta_g** = peak − baseline.
//! - **iauc_120**, **iauc_180**: area of the trace above the baseline over [0, 120] and
//!   [0, 180] (mg/dL·min), trapezoids between consecutive points; a segment that crosses
//!   the baseline counts only the triangle above it (crossing by linear interpolation);
//!   area below the baseline counts nothing (Wolever 2004; ISO 26642).
//!   *Ends of the interval*: the readings rarely fall on 0, 120 or 180, so the trace is
//!   linearly interpolated at those instants from the readings on either side (a reading
//!   exactly there is used as is); the points are then that value at the start, the
//!   readings strictly inside, and that value at the end. Without a reading after the
//!   end (only possible once the late-upload horizon has passed, see below) nothing is
//!   extrapolated: the area stops at the last reading. The start always has a reading on
//!   both sides once the data is sufficient (≥ 2 baseline readings at t ≤ 0, and one in
//!   (0, 45]).
//! - **return_to_baseline**: the first t after the peak at which the linearly interpolated
//!   trace reaches ≤ baseline, searched up to t = 240 (a crossing between a reading before
//!   240 and one after it counts if the crossing itself is at ≤ 240); `None` if it never
//!   does. If the peak itself is ≤ baseline the trace never rose: the answer is
//!   `time_to_peak`. Like the definition, the search does not care about gaps after 180.
//! - **coverage**: readings with t in [0, 180] ÷ 37, capped at 1, rounded to 3 decimals.
//! - **overlap**: another meal at t in (0, 180].
//! - **score** (0–100, non-clinical): the mean of three parts, each 1 at or better than its
//!   full-marks bound and falling linearly to 0 at its zero bound: delta_g 30 → 90, peak
//!   140 → 200, return 120 → 240 (no return by 240 scores 0); × 100, not rounded.
//!
//! **Insufficient data** (the metrics `None`): fewer than 2 baseline readings, coverage
//! below 0.7, two consecutive readings in [0, 180] more than 45 min apart, or no reading
//! within 45 min of either end (none in [0, 45] or none in [135, 180]). `coverage` and
//! `overlap` are always given: they describe the window, and say why data is missing.
//!
//! **Status** (the definition: `pending` before t0 + 180 or while the window's readings
//! have not arrived; Dexcom uploads arrive up to 3 h late). With `now` the time asked:
//! 1. `now` < t0 + 180: `Pending` (the window is not over).
//! 2. Insufficient data: `Pending` until t0 + 360 (180 + the 3-hour late-upload horizon,
//!    since a late upload may still fill it), then `InsufficientData`.
//! 3. Sufficient data: `Complete` once the readings that decide the numbers are stored,
//!    that is a reading at t ≥ 180 (so iauc_180 ends on data) and either a return to
//!    baseline or a reading at t ≥ 240 (so "no return" is seen, not presumed); else
//!    `Pending` until t0 + 360, then `Complete` on what is stored.
//!
//! So a `Complete` answer only changes if readings arrive late (or are backfilled) inside
//! its window; the result is computed from the readings stored when asked. Metrics are
//! `None` while `Pending`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Sample;

/// Start of the baseline window (min).
pub const BASELINE_FROM_MIN: f64 = -30.0;
/// Fewest readings in the baseline window.
pub const MIN_BASELINE_READINGS: usize = 2;
/// The response window [0, 180] (min).
pub const WINDOW_MIN: f64 = 180.0;
/// The shorter iAUC, the main measure of glycemic-index methodology (min).
pub const IAUC_SHORT_MIN: f64 = 120.0;
/// How far the return to baseline is searched (min).
pub const RETURN_SEARCH_MIN: f64 = 240.0;
/// Expected 5-minute samples in [0, 180].
pub const EXPECTED_READINGS: f64 = 37.0;
/// Coverage below this is insufficient.
pub const MIN_COVERAGE: f64 = 0.7;
/// Longest allowed gap inside the window, and farthest allowed first/last reading
/// from its ends (min).
pub const MAX_GAP_MIN: f64 = 45.0;
/// Dexcom uploads arrive up to 3 h late: after window end + this, the answer is final.
pub const LATE_UPLOAD_HORIZON_MIN: f64 = 180.0;

/// Score bounds: full marks at or below the first, zero at or above the second.
pub const SCORE_DELTA_G: (f64, f64) = (30.0, 90.0);
pub const SCORE_PEAK: (f64, f64) = (140.0, 200.0);
pub const SCORE_RETURN_MIN: (f64, f64) = (120.0, 240.0);

/// Where a meal's response stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MealResponseStatus {
    Complete,
    Pending,
    InsufficientData,
}

/// The response to one meal, under the contract's names (without `meal_id`, which the
/// caller knows). Times in minutes from the meal, glucose in mg/dL, areas in mg/dL·min.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MealResponse {
    pub status: MealResponseStatus,
    pub baseline: Option<f64>,
    pub peak: Option<f64>,
    pub time_to_peak: Option<f64>,
    pub delta_g: Option<f64>,
    pub iauc_120: Option<f64>,
    pub iauc_180: Option<f64>,
    pub return_to_baseline: Option<f64>,
    pub coverage: f64,
    pub overlap: bool,
    pub score: Option<f64>,
}

/// The metrics of a window with sufficient data.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Metrics {
    baseline: f64,
    peak: f64,
    time_to_peak: f64,
    iauc_120: f64,
    iauc_180: f64,
    return_to_baseline: Option<f64>,
}

/// One reading as (minutes from the meal, mg/dL).
type Point = (f64, f64);

fn minutes(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 60_000.0
}

/// The response to the meal at `meal_at`. `readings` sorted by time (as the store
/// returns them; any span, only [−30, 240] and the readings just around it are read),
/// `other_meals` the user's other meal times (any order; this meal's own time is
/// ignored), `now` the time asked.
pub fn meal_response(
    meal_at: DateTime<Utc>,
    readings: &[Sample],
    other_meals: &[DateTime<Utc>],
    now: DateTime<Utc>,
) -> MealResponse {
    let lo = meal_at + chrono::Duration::minutes(BASELINE_FROM_MIN as i64);
    let hi = meal_at + chrono::Duration::minutes(RETURN_SEARCH_MIN as i64);
    // One reading either side of [−30, 240], for interpolating at the edges.
    let start = readings.partition_point(|s| s.at < lo).saturating_sub(1);
    let end = (readings.partition_point(|s| s.at <= hi) + 1).min(readings.len());
    // Only the part read is checked, so a long trace costs nothing more in debug builds.
    debug_assert!(readings[start..end].windows(2).all(|w| w[0].at <= w[1].at));
    let points: Vec<Point> = readings[start..end]
        .iter()
        .filter(|s| s.mg_dl.is_finite())
        .map(|s| (minutes(meal_at, s.at), s.mg_dl))
        .collect();
    let others: Vec<f64> = other_meals.iter().map(|m| minutes(meal_at, *m)).collect();
    response_at(&points, &others, minutes(meal_at, now))
}

/// [`meal_response`] on times already in minutes from the meal (points sorted).
fn response_at(points: &[Point], other_meals: &[f64], now: f64) -> MealResponse {
    let in_window = points
        .iter()
        .filter(|(t, _)| (0.0..=WINDOW_MIN).contains(t))
        .count();
    let coverage = round3((in_window as f64 / EXPECTED_READINGS).min(1.0));
    let overlap = other_meals.iter().any(|t| *t > 0.0 && *t <= WINDOW_MIN);
    let mut out = MealResponse {
        status: MealResponseStatus::Pending,
        baseline: None,
        peak: None,
        time_to_peak: None,
        delta_g: None,
        iauc_120: None,
        iauc_180: None,
        return_to_baseline: None,
        coverage,
        overlap,
        score: None,
    };
    if now < WINDOW_MIN {
        return out;
    }
    let final_after = WINDOW_MIN + LATE_UPLOAD_HORIZON_MIN;
    let Some(m) = metrics(points, coverage) else {
        if now >= final_after {
            out.status = MealResponseStatus::InsufficientData;
        }
        return out;
    };
    let last = points.last().map_or(f64::NEG_INFINITY, |p| p.0);
    let settled =
        last >= WINDOW_MIN && (m.return_to_baseline.is_some() || last >= RETURN_SEARCH_MIN);
    if !settled && now < final_after {
        return out;
    }
    let delta_g = m.peak - m.baseline;
    MealResponse {
        status: MealResponseStatus::Complete,
        baseline: Some(m.baseline),
        peak: Some(m.peak),
        time_to_peak: Some(m.time_to_peak),
        delta_g: Some(delta_g),
        iauc_120: Some(m.iauc_120),
        iauc_180: Some(m.iauc_180),
        return_to_baseline: m.return_to_baseline,
        coverage,
        overlap,
        score: Some(score(delta_g, m.peak, m.return_to_baseline)),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The metrics, or `None` when the data is insufficient.
fn metrics(points: &[Point], coverage: f64) -> Option<Metrics> {
    let base: Vec<f64> = points
        .iter()
        .filter(|(t, _)| (BASELINE_FROM_MIN..=0.0).contains(t))
        .map(|p| p.1)
        .collect();
    if base.len() < MIN_BASELINE_READINGS || coverage < MIN_COVERAGE {
        return None;
    }
    let window: Vec<Point> = points
        .iter()
        .copied()
        .filter(|(t, _)| (0.0..=WINDOW_MIN).contains(t))
        .collect();
    let (first, last) = (window.first()?.0, window.last()?.0);
    if first > MAX_GAP_MIN || last < WINDOW_MIN - MAX_GAP_MIN {
        return None;
    }
    if window.windows(2).any(|w| w[1].0 - w[0].0 > MAX_GAP_MIN) {
        return None;
    }
    let baseline = base.iter().sum::<f64>() / base.len() as f64;
    // The first of the highest readings in (0, 180].
    let mut peak: Option<(usize, Point)> = None;
    for (i, p) in points.iter().enumerate() {
        if p.0 > 0.0 && p.0 <= WINDOW_MIN && peak.is_none_or(|(_, q)| p.1 > q.1) {
            peak = Some((i, *p));
        }
    }
    let (peak_idx, (time_to_peak, peak)) = peak?;
    Some(Metrics {
        baseline,
        peak,
        time_to_peak,
        iauc_120: iauc(points, baseline, IAUC_SHORT_MIN),
        iauc_180: iauc(points, baseline, WINDOW_MIN),
        return_to_baseline: return_to_baseline(&points[peak_idx..], baseline),
    })
}

/// The trace at `t`: the reading there, else linear between its neighbours; `None`
/// outside the readings.
fn trace_at(points: &[Point], t: f64) -> Option<f64> {
    let i = points.partition_point(|p| p.0 < t);
    let after = points.get(i)?;
    if after.0 == t {
        return Some(after.1);
    }
    let before = points.get(i.checked_sub(1)?)?;
    Some(before.1 + (after.1 - before.1) * (t - before.0) / (after.0 - before.0))
}

/// iAUC over [0, `until`] above `baseline` (see the module docs for the ends).
fn iauc(points: &[Point], baseline: f64, until: f64) -> f64 {
    let mut trace: Vec<Point> = Vec::with_capacity(points.len() + 2);
    if let Some(g) = trace_at(points, 0.0) {
        trace.push((0.0, g));
    }
    trace.extend(points.iter().filter(|(t, _)| *t > 0.0 && *t < until));
    if let Some(g) = trace_at(points, until) {
        trace.push((until, g));
    }
    trace
        .windows(2)
        .map(|w| segment_above(w[0], w[1], baseline))
        .sum()
}

/// Area of one straight segment above `baseline`: a trapezoid when both ends are at
/// or above it, nothing when both are at or below, else the triangle above.
fn segment_above((ta, ga): Point, (tb, gb): Point, baseline: f64) -> f64 {
    let (ya, yb, dt) = (ga - baseline, gb - baseline, tb - ta);
    if ya >= 0.0 && yb >= 0.0 {
        (ya + yb) / 2.0 * dt
    } else if ya <= 0.0 && yb <= 0.0 {
        0.0
    } else {
        // One end above: the crossing is at dt·y_above/(y_above − y_below) from it.
        let (up, down) = if ya > 0.0 { (ya, yb) } else { (yb, ya) };
        up * up * dt / (2.0 * (up - down))
    }
}

/// The first t after the peak (`from[0]`) where the interpolated trace is ≤ `baseline`,
/// at most [`RETURN_SEARCH_MIN`].
fn return_to_baseline(from: &[Point], baseline: f64) -> Option<f64> {
    let (tp, gp) = *from.first()?;
    if gp <= baseline {
        return Some(tp);
    }
    from.windows(2)
        .find(|w| w[1].1 <= baseline)
        .map(|w| {
            let ((ta, ga), (tb, gb)) = (w[0], w[1]);
            ta + (ga - baseline) / (ga - gb) * (tb - ta)
        })
        .filter(|t| *t <= RETURN_SEARCH_MIN)
}

/// One score part: 1 at or below `full`, 0 at or above `zero`, linear between.
fn part(x: f64, (full, zero): (f64, f64)) -> f64 {
    ((zero - x) / (zero - full)).clamp(0.0, 1.0)
}

/// The score, 0–100: the mean of the delta, peak and return parts.
pub fn score(delta_g: f64, peak: f64, return_to_baseline: Option<f64>) -> f64 {
    let back = return_to_baseline.map_or(0.0, |r| part(r, SCORE_RETURN_MIN));
    100.0 * (part(delta_g, SCORE_DELTA_G) + part(peak, SCORE_PEAK) + back) / 3.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 4, 12, 0, 0).unwrap()
    }

    fn at(min: f64) -> DateTime<Utc> {
        t0() + chrono::Duration::milliseconds((min * 60_000.0).round() as i64)
    }

    /// Readings at the given minutes.
    fn trace(points: &[(f64, f64)]) -> Vec<Sample> {
        points
            .iter()
            .map(|(t, g)| Sample {
                at: at(*t),
                mg_dl: *g,
            })
            .collect()
    }

    /// Every 5 minutes from −30 to `to`, glucose `f(t)`.
    fn every5(to: i32, f: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        (-6..=to / 5)
            .map(|i| {
                let t = i as f64 * 5.0;
                (t, f(t))
            })
            .collect()
    }

    fn run(points: &[(f64, f64)], others: &[f64], now: f64) -> MealResponse {
        let o: Vec<_> = others.iter().map(|m| at(*m)).collect();
        meal_response(t0(), &trace(points), &o, at(now))
    }

    fn close(a: Option<f64>, b: f64) {
        let a = a.expect("a value");
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }

    /// 100 until 0, a straight rise to 160 at 60, a straight fall to 100 at 120, then
    /// 90 from 125 on: a triangle of base 120 and height 60.
    fn rise_and_fall(t: f64) -> f64 {
        match t {
            t if t <= 0.0 => 100.0,
            t if t <= 60.0 => 100.0 + t,
            t if t <= 120.0 => 220.0 - t,
            _ => 90.0,
        }
    }

    #[test]
    fn a_clean_rise_and_fall() {
        let r = run(&every5(300, rise_and_fall), &[], 400.0);
        assert_eq!(r.status, MealResponseStatus::Complete);
        close(r.baseline, 100.0);
        close(r.peak, 160.0);
        close(r.time_to_peak, 60.0);
        close(r.delta_g, 60.0);
        // Triangle: ½ · 120 · 60 = 3600; nothing above baseline after 120 (120→125
        // goes 100→90: no area).
        close(r.iauc_120, 3600.0);
        close(r.iauc_180, 3600.0);
        // The reading at 120 is exactly the baseline.
        close(r.return_to_baseline, 120.0);
        // 37 readings at 0, 5, …, 180.
        assert_eq!(r.coverage, 1.0);
        assert!(!r.overlap);
        // delta 60: (90−60)/60 = 0.5; peak 160: (200−160)/60 = 2/3; return 120: 1.
        close(r.score, 100.0 * (0.5 + 2.0 / 3.0 + 1.0) / 3.0);
    }

    #[test]
    fn a_segment_crossing_the_baseline_counts_only_the_triangle_above() {
        // Baseline 100 (two readings). Every 5 min from 0 to 240 at 100 except: 110 at
        // 5, and at 10 the value 70: the segment 5→10 goes +10 → −30 and crosses at
        // 5 + 5·10/40 = 6.25, so the triangle above is ½·1.25·10 = 6.25. The segment
        // 0→5 (0 → +10) adds ½·5·10 = 25. 10→15 (−30 → 0): nothing.
        let mut p = vec![(-10.0, 100.0), (-5.0, 100.0)];
        p.extend((0..=48).map(|i| {
            let t = i as f64 * 5.0;
            let g = match i {
                1 => 110.0,
                2 => 70.0,
                _ => 100.0,
            };
            (t, g)
        }));
        let r = run(&p, &[], 300.0);
        assert_eq!(r.status, MealResponseStatus::Complete);
        close(r.iauc_120, 31.25);
        close(r.iauc_180, 31.25);
        close(r.peak, 110.0);
        close(r.time_to_peak, 5.0);
        // After the peak at 5 the trace reaches 100 at the crossing 6.25.
        close(r.return_to_baseline, 6.25);
    }

    #[test]
    fn the_ends_are_interpolated_at_0_120_and_180() {
        // Baseline 100 (−20, −10); then 130 at 10, 130 every 10 min to 170, 100 at 190.
        // At 0: between (−10,100) and (10,130): 115. Over [0,10]: (15+30)/2·10 = 225;
        // [10,120]: 30·110 = 3300, so iauc_120 = 3525. At 180: between (170,130) and
        // (190,100): 115; [120,170]: 30·50 = 1500; [170,180]: (30+15)/2·10 = 225;
        // iauc_180 = 3525 + 1725 = 5250. Return: 100 at 190.
        let mut p = vec![(-20.0, 100.0), (-10.0, 100.0)];
        p.extend((1..=17).map(|i| (i as f64 * 10.0, 130.0)));
        p.push((190.0, 100.0));
        // 17 readings in [0,180] is coverage 0.459: insufficient, so check the pieces.
        let pts: Vec<Point> = p.clone();
        close(Some(iauc(&pts, 100.0, 120.0)), 3525.0);
        close(Some(iauc(&pts, 100.0, 180.0)), 5250.0);
        close(return_to_baseline(&pts[2..], 100.0), 190.0);
        assert_eq!(run(&p, &[], 400.0).coverage, 0.459);
        assert_eq!(
            run(&p, &[], 400.0).status,
            MealResponseStatus::InsufficientData
        );
    }

    #[test]
    fn no_return_by_240_is_null_and_scores_zero_on_that_part() {
        // 100 before the meal, 150 from 5 on: never back.
        let r = run(
            &every5(300, |t| if t <= 0.0 { 100.0 } else { 150.0 }),
            &[],
            400.0,
        );
        assert_eq!(r.status, MealResponseStatus::Complete);
        assert_eq!(r.return_to_baseline, None);
        close(r.peak, 150.0);
        close(r.time_to_peak, 5.0);
        // [0,5]: (0+50)/2·5 = 125; then 50/min: iauc_120 = 125 + 50·115 = 5875,
        // iauc_180 = 125 + 50·175 = 8875.
        close(r.iauc_120, 5875.0);
        close(r.iauc_180, 8875.0);
        // delta 50: 40/60; peak 150: 50/60; return: 0.
        close(r.score, 100.0 * (40.0 / 60.0 + 50.0 / 60.0) / 3.0);
    }

    #[test]
    fn a_return_past_240_is_null_but_at_240_counts() {
        // Baseline 100; 150 from 5 to 235, then 50 at 245: crossing at 235 + 10·50/100 = 240.
        let mut p = every5(235, |t| if t <= 0.0 { 100.0 } else { 150.0 });
        p.push((245.0, 50.0));
        close(run(&p, &[], 400.0).return_to_baseline, 240.0);
        // 150 at 235, 60 at 245: crossing at 235 + 10·50/90 = 240.56 > 240.
        p.last_mut().unwrap().1 = 60.0;
        assert_eq!(run(&p, &[], 400.0).return_to_baseline, None);
    }

    #[test]
    fn a_gap_over_45_minutes_is_insufficient() {
        // Readings every 5 min except none strictly between 60 and 110 (a 50-min gap).
        let p: Vec<_> = every5(300, rise_and_fall)
            .into_iter()
            .filter(|(t, _)| *t <= 60.0 || *t >= 110.0)
            .collect();
        // In [0,180]: 37 − 9 = 28 readings, coverage 0.757 (enough on its own).
        let r = run(&p, &[], 400.0);
        assert_eq!(r.coverage, 0.757);
        assert_eq!(r.status, MealResponseStatus::InsufficientData);
        assert_eq!((r.baseline, r.iauc_120, r.score), (None, None, None));
        // Exactly 45 min (none strictly between 60 and 105) is allowed.
        let p: Vec<_> = every5(300, rise_and_fall)
            .into_iter()
            .filter(|(t, _)| *t <= 60.0 || *t >= 105.0)
            .collect();
        assert_eq!(run(&p, &[], 400.0).status, MealResponseStatus::Complete);
    }

    #[test]
    fn no_reading_near_an_end_is_insufficient() {
        // First reading in [0,180] at 50 (> 45 from 0), every 5 min after: 27 readings
        // (0.730), no inner gap.
        let p: Vec<_> = every5(300, rise_and_fall)
            .into_iter()
            .filter(|(t, _)| *t < 0.0 || *t >= 50.0)
            .collect();
        let r = run(&p, &[], 400.0);
        assert_eq!(r.coverage, 0.730);
        assert_eq!(r.status, MealResponseStatus::InsufficientData);
        // Last reading at 130 (< 135), then readings again from 185.
        let p: Vec<_> = every5(300, rise_and_fall)
            .into_iter()
            .filter(|(t, _)| *t <= 130.0 || *t >= 185.0)
            .collect();
        assert_eq!(run(&p, &[], 400.0).coverage, 0.730);
        assert_eq!(
            run(&p, &[], 400.0).status,
            MealResponseStatus::InsufficientData
        );
    }

    #[test]
    fn coverage_below_0_7_is_insufficient() {
        // Every 5 min, but every third reading of the window dropped from 0: in [0,180]
        // 37 − 13 (t = 0, 15, …, 180) = 24 readings: 0.649. No gap exceeds 10 min.
        let p: Vec<_> = every5(300, rise_and_fall)
            .into_iter()
            .filter(|(t, _)| !(*t >= 0.0 && *t <= 180.0 && (*t as i64) % 15 == 0))
            .collect();
        let r = run(&p, &[], 400.0);
        assert_eq!(r.coverage, 0.649);
        assert_eq!(r.status, MealResponseStatus::InsufficientData);
        // 26 readings (0.703) suffice: drop 11 instead (t = 15, 30, …, 165).
        let p: Vec<_> = every5(300, rise_and_fall)
            .into_iter()
            .filter(|(t, _)| !(*t > 0.0 && *t < 170.0 && (*t as i64) % 15 == 0))
            .collect();
        let r = run(&p, &[], 400.0);
        assert_eq!(r.coverage, 0.703);
        assert_eq!(r.status, MealResponseStatus::Complete);
    }

    #[test]
    fn fewer_than_two_baseline_readings_is_insufficient() {
        let p: Vec<_> = every5(300, rise_and_fall)
            .into_iter()
            .filter(|(t, _)| *t >= 0.0)
            .collect();
        // Only the reading at 0 is in [−30, 0].
        assert_eq!(
            run(&p, &[], 400.0).status,
            MealResponseStatus::InsufficientData
        );
        let mut p2 = p.clone();
        p2.insert(0, (-30.0, 100.0));
        // −30 and 0: two, and −30 is inside the closed window.
        assert_eq!(run(&p2, &[], 400.0).status, MealResponseStatus::Complete);
        let mut p3 = p;
        p3.insert(0, (-30.5, 100.0));
        assert_eq!(
            run(&p3, &[], 400.0).status,
            MealResponseStatus::InsufficientData
        );
    }

    #[test]
    fn an_overlapping_meal_is_flagged_and_still_computed() {
        let p = every5(300, rise_and_fall);
        let r = run(&p, &[0.0, 90.0, -60.0], 400.0);
        assert!(r.overlap);
        assert_eq!(r.status, MealResponseStatus::Complete);
        close(r.iauc_120, 3600.0);
        // Meals at 0 (this one), before it or after 180 are not an overlap.
        for others in [&[0.0][..], &[-10.0], &[180.5]] {
            assert!(!run(&p, others, 400.0).overlap, "{others:?}");
        }
        assert!(run(&p, &[180.0], 400.0).overlap);
    }

    #[test]
    fn the_first_of_equal_peaks_wins() {
        // 140 at 30 and again at 90, 120 between, baseline 100, 100 after 120.
        let f = |t: f64| match t as i64 {
            i64::MIN..=0 => 100.0,
            30 | 90 => 140.0,
            1..=119 => 120.0,
            _ => 100.0,
        };
        let r = run(&every5(300, f), &[], 400.0);
        close(r.peak, 140.0);
        close(r.time_to_peak, 30.0);
        // After the first peak the trace first reaches 100 at 120.
        close(r.return_to_baseline, 120.0);
        // A reading at 0 higher than everything after does not count: (0, 180].
        let mut p = every5(300, f);
        p.iter_mut().find(|(t, _)| *t == 0.0).unwrap().1 = 200.0;
        let r = run(&p, &[], 400.0);
        close(r.peak, 140.0);
        // Baseline now (6·100 + 200)/7.
        close(r.baseline, 800.0 / 7.0);
    }

    #[test]
    fn a_peak_at_or_below_baseline_returns_at_the_peak() {
        // Falling glucose: 120 before, 100 at 5, then 90.
        let r = run(
            &every5(300, |t| match t {
                t if t <= 0.0 => 120.0,
                t if t <= 5.0 => 100.0,
                _ => 90.0,
            }),
            &[],
            400.0,
        );
        close(r.delta_g, -20.0);
        close(r.return_to_baseline, 5.0);
        close(r.iauc_120, 0.0);
        // delta and peak full marks, return at 5 (≤ 120) full marks.
        close(r.score, 100.0);
    }

    #[test]
    fn the_score_parts_at_and_between_their_bounds() {
        let s = |d, p, r| score(d, p, r) / 100.0 * 3.0;
        // At the full-marks bounds, and below them: 3 parts of 1.
        assert!((s(30.0, 140.0, Some(120.0)) - 3.0).abs() < 1e-12);
        assert!((s(-5.0, 90.0, Some(10.0)) - 3.0).abs() < 1e-12);
        // At the zero bounds and beyond: 0.
        assert!(s(90.0, 200.0, Some(240.0)).abs() < 1e-12);
        assert!(s(150.0, 300.0, None).abs() < 1e-12);
        // Each part alone, a quarter of the way: delta 45 → 0.75, peak 155 → 0.75,
        // return 150 → 0.75; the others at zero.
        assert!((s(45.0, 200.0, None) - 0.75).abs() < 1e-12);
        assert!((s(90.0, 155.0, None) - 0.75).abs() < 1e-12);
        assert!((s(90.0, 200.0, Some(150.0)) - 0.75).abs() < 1e-12);
        // Halfway each: 0.5 + 0.5 + 0.5 → score 50.
        assert!((score(60.0, 170.0, Some(180.0)) - 50.0).abs() < 1e-12);
    }

    #[test]
    fn pending_until_the_window_and_its_readings_are_in() {
        let full = every5(300, rise_and_fall);
        let upto = |last: f64| -> Vec<_> { full.iter().copied().filter(|p| p.0 <= last).collect() };
        // Before t0 + 180: pending, even with every reading there.
        assert_eq!(run(&full, &[], 179.9).status, MealResponseStatus::Pending);
        assert_eq!(run(&full, &[], 180.0).status, MealResponseStatus::Complete);
        // At 181 with readings to 175 only: no reading at ≥ 180 yet, pending.
        let r = run(&upto(175.0), &[], 181.0);
        assert_eq!(r.status, MealResponseStatus::Pending);
        assert_eq!(r.iauc_120, None);
        // Once the 180 reading arrives: complete (the return, at 120, is known).
        assert_eq!(
            run(&upto(180.0), &[], 181.0).status,
            MealResponseStatus::Complete
        );
        // Still no reading ≥ 180 at t0 + 360: complete on what is stored.
        assert_eq!(
            run(&upto(175.0), &[], 359.0).status,
            MealResponseStatus::Pending
        );
        let r = run(&upto(175.0), &[], 360.0);
        assert_eq!(r.status, MealResponseStatus::Complete);
        // The area stops at the last reading (175, at 90: below baseline anyway).
        close(r.iauc_180, 3600.0);
    }

    #[test]
    fn no_return_waits_for_the_240_reading() {
        let full = every5(300, |t| if t <= 0.0 { 100.0 } else { 150.0 });
        let upto = |last: f64| -> Vec<_> { full.iter().copied().filter(|p| p.0 <= last).collect() };
        // Readings to 235: the return may still come, pending.
        assert_eq!(
            run(&upto(235.0), &[], 236.0).status,
            MealResponseStatus::Pending
        );
        let r = run(&upto(240.0), &[], 241.0);
        assert_eq!(r.status, MealResponseStatus::Complete);
        assert_eq!(r.return_to_baseline, None);
        // The sensor stopped at 200: complete (no return) only after t0 + 360.
        assert_eq!(
            run(&upto(200.0), &[], 300.0).status,
            MealResponseStatus::Pending
        );
        assert_eq!(
            run(&upto(200.0), &[], 360.0).status,
            MealResponseStatus::Complete
        );
    }

    #[test]
    fn insufficient_data_stays_pending_for_late_uploads() {
        // Readings stop at 100 (a phone out of range): maybe uploaded later.
        let p: Vec<_> = every5(300, rise_and_fall)
            .into_iter()
            .filter(|p| p.0 <= 100.0)
            .collect();
        let r = run(&p, &[50.0], 200.0);
        assert_eq!(r.status, MealResponseStatus::Pending);
        // Coverage and overlap are still reported: 21 readings, 0.568.
        assert_eq!((r.coverage, r.overlap), (0.568, true));
        assert_eq!(run(&p, &[], 359.9).status, MealResponseStatus::Pending);
        assert_eq!(
            run(&p, &[], 360.0).status,
            MealResponseStatus::InsufficientData
        );
        // The late upload arrives: complete.
        assert_eq!(
            run(&every5(300, rise_and_fall), &[], 360.0).status,
            MealResponseStatus::Complete
        );
    }

    #[test]
    fn readings_far_outside_the_window_do_not_matter() {
        // A 14-day trace: the response only reads the window.
        let day = |t: f64| {
            if (-1000.0..=300.0).contains(&t) {
                rise_and_fall(t)
            } else {
                300.0
            }
        };
        let p: Vec<_> = (-2000..2000)
            .map(|i| (i as f64 * 5.0, day(i as f64 * 5.0)))
            .collect();
        let r = run(&p, &[], 400.0);
        close(r.iauc_180, 3600.0);
        close(r.baseline, 100.0);
        // Non-finite values are skipped.
        let mut q = every5(300, rise_and_fall);
        q.insert(7, (2.5, f64::NAN));
        assert_eq!(
            run(&q, &[], 400.0),
            run(&every5(300, rise_and_fall), &[], 400.0)
        );
    }

    #[test]
    fn serializes_under_the_contract_names() {
        let r = run(&every5(300, rise_and_fall), &[], 400.0);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["status"], "complete");
        for k in [
            "baseline",
            "peak",
            "time_to_peak",
            "delta_g",
            "iauc_120",
            "iauc_180",
            "return_to_baseline",
            "coverage",
            "overlap",
            "score",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        let p = serde_json::to_value(run(&[], &[], 0.0)).unwrap();
        assert_eq!(p["status"], "pending");
        assert!(p["iauc_120"].is_null());
        let i = serde_json::to_value(run(&[], &[], 1000.0)).unwrap();
        assert_eq!(i["status"], "insufficient_data");
    }
}
