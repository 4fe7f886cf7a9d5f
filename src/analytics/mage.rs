//! MAGE, moving-average version (Fernandes 2022), as iglu computes it with its
//! defaults: on the 5-minute grid, split into segments at gaps of more than 180
//! minutes, a short (5-point) and a long (32-point) trailing moving average locate
//! the peaks and nadirs; excursions of at least one SD of the segment are kept and
//! averaged per direction, and the segments are weighted by their duration
//! (`direction = avg`).
//!
//! The rules the paper leaves open (moving-average start, where a peak is
//! searched, which small excursions are dropped, how segments combine) follow
//! iglu-python 0.4.3, found by probing it as a black box on constructed traces;
//! each rule says so where it is applied.

use super::descriptive::sd;
use super::grid::Grid;

const SHORT: usize = 5;
const LONG: usize = 32;
/// A gap between present grid points longer than this (minutes) splits the trace.
const MAX_GAP: f64 = 180.0;
/// Segments with fewer points have no MAGE (iglu answers none for 6 points, a
/// value for 7).
const MIN_POINTS: usize = 7;
/// A segment whose SD is below this (mg/dL) is flat: no MAGE (iglu-python
/// answers none for an SD of 0.99996 and a value for 1.00001).
const MIN_SD: f64 = 1.0;

/// Trailing moving average of `k` points; the first `k - 1` points take the
/// first full window's value, and a series shorter than `k` is its mean
/// throughout.
fn moving_average(x: &[f64], k: usize) -> Vec<f64> {
    let n = x.len();
    if n < k {
        let m = x.iter().sum::<f64>() / n as f64;
        return vec![m; n];
    }
    let mut s: f64 = x[..k].iter().sum();
    let mut out = vec![s / k as f64; k];
    out.extend(x[k..].iter().zip(x).map(|(new, old)| {
        s += new - old;
        s / k as f64
    }));
    out
}

/// Segments of the flattened grid: runs of present points; a run of missing
/// points whose bracketing readings are more than `MAX_GAP` apart splits the
/// trace, a shorter one is linearly interpolated.
fn segments(grid: &Grid) -> Vec<Vec<f64>> {
    let mut segs = Vec::new();
    let mut cur: Vec<f64> = Vec::new();
    let mut hole = 0usize;
    for &g in &grid.v {
        if g.is_nan() {
            hole += 1;
            continue;
        }
        if !cur.is_empty() && hole > 0 {
            if (hole + 1) as f64 * grid.dt0 > MAX_GAP {
                segs.push(std::mem::take(&mut cur));
            } else {
                let a = *cur.last().expect("non-empty");
                for h in 1..=hole {
                    cur.push(a + (g - a) * h as f64 / (hole + 1) as f64);
                }
            }
        }
        hole = 0;
        cur.push(g);
    }
    if !cur.is_empty() {
        segs.push(cur);
    }
    segs
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Peak,
    Nadir,
}

#[derive(Debug, Clone, Copy)]
struct Turn {
    at: usize,
    g: f64,
    kind: Kind,
}

/// The size of the move `from` → `to` in the direction it should go (up from a
/// nadir, down from a peak); negative when it goes the other way.
fn amplitude(from: &Turn, to: &Turn) -> f64 {
    match from.kind {
        Kind::Nadir => to.g - from.g,
        Kind::Peak => from.g - to.g,
    }
}

/// Peaks and nadirs of one segment. The trace is cut where the short average
/// crosses the long one (a zero difference keeps the previous side). Each
/// stretch where the short average is above gives a peak, below a nadir: the
/// first maximum (minimum) of the glucose from just after the previous turning
/// point up to and including the first point past the stretch (iglu-python's
/// search window, found by probing), unless it does not go the right way from
/// the previous turning point.
fn turning_points(x: &[f64]) -> Vec<Turn> {
    let short = moving_average(x, SHORT);
    let long = moving_average(x, LONG);
    let mut above = Vec::with_capacity(x.len());
    for (s, l) in short.iter().zip(&long) {
        let prev = above.last().copied().unwrap_or(true);
        above.push(if s > l {
            true
        } else if s < l {
            false
        } else {
            prev
        });
    }
    let mut cuts = vec![0];
    cuts.extend((1..x.len()).filter(|&i| above[i] != above[i - 1]));
    cuts.push(x.len());
    let mut turns: Vec<Turn> = Vec::new();
    for w in cuts.windows(2) {
        let (a, b) = (w[0], w[1]);
        let kind = if above[a] { Kind::Peak } else { Kind::Nadir };
        let lo = turns.last().map_or(a, |t| t.at + 1);
        let hi = (b + 1).min(x.len());
        if lo >= hi {
            continue;
        }
        let mut best = lo;
        for i in lo + 1..hi {
            let better = match kind {
                Kind::Peak => x[i] > x[best],
                Kind::Nadir => x[i] < x[best],
            };
            if better {
                best = i;
            }
        }
        let turn = Turn {
            at: best,
            g: x[best],
            kind,
        };
        // A nadir not below the peak before it (a peak not above the nadir
        // before it) is no turning point; the next stretch searches on from
        // the same place (iglu-python, found by probing).
        if let Some(prev) = turns.last() {
            if prev.kind != kind && amplitude(prev, &turn) <= 0.0 {
                continue;
            }
        }
        turns.push(turn);
    }
    turns
}

fn more_extreme(a: &Turn, than: &Turn) -> bool {
    match a.kind {
        Kind::Peak => a.g > than.g,
        Kind::Nadir => a.g < than.g,
    }
}

/// The turning points that bound excursions of at least `sd` (iglu-python's
/// rules, found by probing). Until the first such excursion the direction is
/// open: the highest peak and the lowest nadir so far are remembered, and the
/// first point at least `sd` away from the opposite one starts the walk from
/// that one. Walking on, a point of the same kind as the last kept one replaces
/// it when more extreme, and a point of the other kind is kept when the move to
/// it is at least `sd` (smaller moves are ignored).
fn excursion_points(turns: &[Turn], sd: f64) -> Vec<Turn> {
    let (mut high, mut low): (Option<Turn>, Option<Turn>) = (None, None);
    let mut start = None;
    for (k, t) in turns.iter().enumerate() {
        let opposite = match t.kind {
            Kind::Peak => low,
            Kind::Nadir => high,
        };
        if let Some(o) = opposite.filter(|o| amplitude(o, t) >= sd) {
            start = Some((o, k));
            break;
        }
        let slot = match t.kind {
            Kind::Peak => &mut high,
            Kind::Nadir => &mut low,
        };
        if slot.is_none_or(|s| more_extreme(t, &s)) {
            *slot = Some(*t);
        }
    }
    let Some((first, k)) = start else {
        return Vec::new();
    };
    let mut kept = vec![first];
    for t in &turns[k..] {
        let last = kept.last_mut().expect("non-empty");
        if t.kind == last.kind {
            if more_extreme(t, last) {
                *last = *t;
            }
        } else if amplitude(last, t) >= sd {
            kept.push(*t);
        }
    }
    kept
}

/// MAGE+ (nadir to peak) and MAGE− (peak to nadir) of one segment; none for a
/// segment too short or too flat.
fn segment_mage(x: &[f64]) -> (Option<f64>, Option<f64>) {
    let Some(seg_sd) = sd(x.iter().copied()).filter(|s| x.len() >= MIN_POINTS && *s >= MIN_SD)
    else {
        return (None, None);
    };
    let kept = excursion_points(&turning_points(x), seg_sd);
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for w in kept.windows(2) {
        let a = amplitude(&w[0], &w[1]);
        match w[0].kind {
            Kind::Nadir => up.push(a),
            Kind::Peak => down.push(a),
        }
    }
    let avg = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    (avg(up), avg(down))
}

/// MAGE (`direction = avg`): the mean of the segments' MAGE+ and MAGE− values
/// that exist, each weighted by its segment's duration (as iglu-python combines
/// them: a segment with only MAGE+ counts once, with its weight).
pub(crate) fn mage(grid5: &Grid) -> Option<f64> {
    let (mut num, mut den) = (0.0, 0.0);
    for seg in segments(grid5) {
        let w = (seg.len() - 1) as f64 * grid5.dt0;
        let (plus, minus) = segment_mage(&seg);
        for v in [plus, minus].into_iter().flatten() {
            num += w * v;
            den += w;
        }
    }
    (den > 0.0).then(|| num / den)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn grid5(v: Vec<f64>) -> Grid {
        let n = v.len().div_ceil(288) * 288;
        let mut v = v;
        v.resize(n, f64::NAN);
        Grid {
            dt0: 5.0,
            ndays: n / 288,
            cols: 288,
            first_day: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            v,
        }
    }

    /// A triangle wave 100 → 200 → 100 … of 40-point cycles.
    fn triangle(cycles: usize) -> Vec<f64> {
        (0..cycles * 40)
            .map(|i| {
                let p = (i % 40) as f64;
                if p <= 20.0 {
                    100.0 + 5.0 * p
                } else {
                    200.0 - 5.0 * (p - 20.0)
                }
            })
            .collect()
    }

    #[test]
    fn a_clean_oscillation_has_its_full_swing() {
        // Every rise and fall is 100 mg/dL; the trace starts at a nadir and
        // stops one step before the fifth, so its last fall is 200 → 105.
        // Rises: 4 × 100; falls: 3 × 100 and 95 (iglu-python: 99.375).
        let v = triangle(4);
        let m = mage(&grid5(v)).unwrap();
        let want = (100.0 + (300.0 + 95.0) / 4.0) / 2.0;
        assert!((m - want).abs() < 1e-9, "{m} vs {want}");
    }

    #[test]
    fn small_wiggles_do_not_count() {
        // A 4 mg/dL wiggle on top of the big swing is below one SD: it is
        // absorbed and the big swing alone is measured.
        let mut v = triangle(4);
        for (i, g) in v.iter_mut().enumerate() {
            if i % 40 == 30 {
                *g += 4.0;
            }
        }
        let clean = mage(&grid5(triangle(4))).unwrap();
        assert!((mage(&grid5(v)).unwrap() - clean).abs() < 1e-9);
    }

    #[test]
    fn a_segment_with_only_a_rise_counts_once_with_its_weight() {
        // Segment 1: a 30-point rise (145 min, MAGE+ = 145, no MAGE−).
        // Segment 2 (after a 4-hour hole): a triangle with MAGE+ = 100 and
        // MAGE− = (300 + 95) / 4 over 160 points (795 min); iglu-python:
        // 103.188.
        let mut v: Vec<f64> = (0..30).map(|i| 100.0 + 5.0 * i as f64).collect();
        v.extend(std::iter::repeat_n(f64::NAN, 48));
        v.extend(triangle(4));
        let (w1, w2) = (145.0, 795.0);
        let want = (w1 * 145.0 + w2 * 100.0 + w2 * 98.75) / (w1 + 2.0 * w2);
        let m = mage(&grid5(v)).unwrap();
        assert!((m - want).abs() < 1e-9, "{m} vs {want}");
    }

    #[test]
    fn the_first_excursion_starts_at_the_lowest_nadir_before_it() {
        // Moves smaller than sd = 53 before the big rise: the walk starts at
        // the lowest nadir (117), not at the first point nor the last nadir.
        let t = |at, g, kind| Turn { at, g, kind };
        let (p, n) = (Kind::Peak, Kind::Nadir);
        let turns = [
            t(0, 157.0, p),
            t(1, 127.0, n),
            t(2, 168.0, p),
            t(3, 117.0, n),
            t(4, 160.0, p),
            t(5, 124.0, n),
            t(6, 294.0, p),
            t(7, 213.0, n),
            t(8, 259.0, p),
        ];
        let kept: Vec<f64> = excursion_points(&turns, 53.0).iter().map(|t| t.g).collect();
        assert_eq!(kept, [117.0, 294.0, 213.0]);
    }

    #[test]
    fn a_nadir_above_the_peak_before_it_is_no_turning_point() {
        // 34 points (iglu-python: MAGE+ 80, MAGE− 72). At the end a short
        // "nadir" stretch yields 200, above the peak before it; dropped, the
        // last peak is 200 and the last rise 120 → 200. Kept, it would end
        // the search and the last rise would be 120 → 180 (MAGE+ 76.67).
        let v = [
            110.0, 130.0, 160.0, 80.0, 130.0, 190.0, 160.0, 140.0, 130.0, 140.0, 120.0, 180.0,
            160.0, 140.0, 200.0, 140.0, 110.0, 170.0, 140.0, 140.0, 120.0, 180.0, 100.0, 150.0,
            140.0, 150.0, 90.0, 180.0, 120.0, 130.0, 130.0, 150.0, 180.0, 200.0,
        ];
        assert_eq!(segment_mage(&v), (Some(80.0), Some(72.0)));
        assert_eq!(mage(&grid5(v.to_vec())), Some(76.0));
    }

    #[test]
    fn a_flat_segment_has_no_mage() {
        // Alternating 100 / 101.5: SD 0.75 < 1, no MAGE although every move is
        // 1.5 (iglu-python: none). Alternating 100 / 102: SD 1.005, MAGE 2.
        let alternating = |a: f64| (0..100).map(|i| 100.0 + a * (i % 2) as f64).collect();
        assert_eq!(mage(&grid5(alternating(1.5))), None);
        assert_eq!(mage(&grid5(alternating(2.0))), Some(2.0));
    }

    #[test]
    fn a_hole_of_180_minutes_is_bridged_and_185_splits() {
        let seg = |hole: usize| {
            let mut v = vec![100.0; 10];
            v.extend(std::iter::repeat_n(f64::NAN, hole));
            v.extend([100.0; 10]);
            segments(&grid5(v)).len()
        };
        assert_eq!(seg(35), 1);
        assert_eq!(seg(36), 2);
    }

    #[test]
    fn six_points_have_no_mage_and_seven_do() {
        assert_eq!(
            mage(&grid5(vec![100.0, 200.0, 100.0, 200.0, 100.0, 200.0])),
            None
        );
        assert!(mage(&grid5(vec![
            100.0, 200.0, 100.0, 200.0, 100.0, 200.0, 100.0
        ]))
        .is_some());
    }
}
