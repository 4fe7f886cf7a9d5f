//! Metrics over the readings themselves (nothing interpolated): location,
//! spread, time in ranges, risk indices (LBGI/HBGI/ADRR, GRADE, M-value, IGC),
//! GRI and COGI. Definitions and sources: `cgm-metrics.md`.

use chrono::NaiveDate;

use super::descriptive::{mean, quantile_sorted, sd, sorted};
use super::{Gri, Metrics, Ranges};

/// Percent of `g` for which `f` holds.
fn pct(g: &[f64], f: impl Fn(f64) -> bool) -> f64 {
    g.iter().filter(|x| f(**x)).count() as f64 * 100.0 / g.len() as f64
}

/// Kovatchev's symmetrised risk term f(g).
fn risk_f(g: f64) -> f64 {
    1.509 * (g.ln().powf(1.084) - 5.381)
}

fn grade_term(g: f64) -> f64 {
    (425.0 * ((g / 18.0).log10().log10() + 0.16).powi(2)).min(50.0)
}

/// The five disjoint consensus bands; `None` without readings.
pub(crate) fn ranges(g: &[f64]) -> Option<Ranges> {
    if g.is_empty() {
        return None;
    }
    let n = g.len() as f64;
    let count = |f: &dyn Fn(f64) -> bool| g.iter().filter(|x| f(**x)).count() as f64;
    let very_low = count(&|x| x < 54.0);
    let low = count(&|x| (54.0..70.0).contains(&x));
    let high = count(&|x| x > 180.0 && x <= 250.0);
    let very_high = count(&|x| x > 250.0);
    let target = n - very_low - low - high - very_high;
    Some(Ranges {
        very_low: very_low * 100.0 / n,
        low: low * 100.0 / n,
        target: target * 100.0 / n,
        high: high * 100.0 / n,
        very_high: very_high * 100.0 / n,
    })
}

/// GRI = 3.0·VLow + 2.4·Low + 1.6·VHigh + 0.8·High, capped at 100 (Klonoff 2023).
pub(crate) fn gri(r: &Ranges) -> Gri {
    let value = (3.0 * r.very_low + 2.4 * r.low + 1.6 * r.very_high + 0.8 * r.high).min(100.0);
    let zone = match value {
        v if v <= 20.0 => 'A',
        v if v <= 40.0 => 'B',
        v if v <= 60.0 => 'C',
        v if v <= 80.0 => 'D',
        _ => 'E',
    };
    Gri { value, zone }
}

/// Fills the reading-level metrics of `m`. `g` holds every reading (any order),
/// `days` the local date of each.
pub(crate) fn fill(m: &mut Metrics, g: &[f64], days: &[NaiveDate]) {
    if g.is_empty() {
        return;
    }
    let n = g.len() as f64;
    let s = sorted(g.iter().copied());
    let mu = mean(g.iter().copied()).expect("non-empty");
    let sdv = sd(g.iter().copied());
    m.mean = Some(mu);
    m.median = quantile_sorted(&s, 0.5);
    m.sd = sdv;
    m.cv = sdv.map(|v| v / mu * 100.0);
    m.range = Some(s[s.len() - 1] - s[0]);
    m.iqr =
        Some(quantile_sorted(&s, 0.75).unwrap_or(0.0) - quantile_sorted(&s, 0.25).unwrap_or(0.0));
    let med = m.median.expect("non-empty");
    let dev = sorted(g.iter().map(|x| (x - med).abs()));
    m.mad = quantile_sorted(&dev, 0.5).map(|v| v * 1.4826);
    m.gmi = Some(3.31 + 0.02392 * mu);
    m.ea1c = Some((mu + 46.7) / 28.7);
    m.in_range_70_180 = Some(pct(g, |x| (70.0..=180.0).contains(&x)));
    m.in_range_70_140 = Some(pct(g, |x| (70.0..=140.0).contains(&x)));
    m.below_54 = Some(pct(g, |x| x < 54.0));
    m.below_70 = Some(pct(g, |x| x < 70.0));
    m.above_180 = Some(pct(g, |x| x > 180.0));
    m.above_250 = Some(pct(g, |x| x > 250.0));
    m.gri = ranges(g).map(|r| gri(&r).value);

    let (mut lo, mut hi) = (0.0, 0.0);
    for &x in g {
        let f = risk_f(x);
        let r = 10.0 * f * f;
        if f < 0.0 {
            lo += r;
        } else {
            hi += r;
        }
    }
    m.lbgi = Some(lo / n);
    m.hbgi = Some(hi / n);
    m.adrr = adrr(g, days);
    m.j_index = sdv.map(|v| 0.001 * (mu + v) * (mu + v));

    let terms: Vec<f64> = g.iter().map(|x| grade_term(*x)).collect();
    let total: f64 = terms.iter().sum();
    m.grade = Some(total / n);
    let share = |f: &dyn Fn(f64) -> bool| {
        let part: f64 = g
            .iter()
            .zip(&terms)
            .filter(|(x, _)| f(**x))
            .map(|(_, t)| t)
            .sum();
        part / total * 100.0
    };
    m.grade_hypo = Some(share(&|x| x < 80.0));
    m.grade_eugly = Some(share(&|x| (70.0..=140.0).contains(&x)));
    m.grade_hyper = Some(share(&|x| x > 140.0));
    m.m_value = Some(
        g.iter()
            .map(|x| 1000.0 * (x / 90.0).log10().abs().powi(3))
            .sum::<f64>()
            / n,
    );
    let hyper = g
        .iter()
        .filter(|x| **x > 140.0)
        .map(|x| (x - 140.0).powf(1.1))
        .sum::<f64>()
        / (30.0 * n);
    let hypo = g
        .iter()
        .filter(|x| **x < 80.0)
        .map(|x| (80.0 - x).powi(2))
        .sum::<f64>()
        / (30.0 * n);
    m.hyper_index = Some(hyper);
    m.hypo_index = Some(hypo);
    m.igc = Some(hyper + hypo);
    m.cogi = sdv.map(|v| {
        let tir = m.in_range_70_180.expect("set above");
        let tbr = m.below_70.expect("set above");
        100.0
            * (0.5 * tir / 100.0
                + 0.35 * (1.0 - (tbr / 15.0).min(1.0))
                + 0.15 * (1.0 - ((v - 18.0) / 90.0).clamp(0.0, 1.0)))
    });
    m.mage_naive = sdv
        .map(|v| mean(g.iter().map(|x| (x - mu).abs()).filter(|d| *d > v)).unwrap_or(f64::NAN))
        .filter(|x| !x.is_nan());
}

/// ADRR: per local day, max low-risk + max high-risk; mean over days. The risk
/// is Kovatchev's ADRR form 22.77·(ln(g)^1.084 − 5.381)², not 10·f² of
/// LBGI/HBGI (10·1.509² = 22.771; iglu uses 22.77, as the ADRR paper does).
fn adrr(g: &[f64], days: &[NaiveDate]) -> Option<f64> {
    let mut per: std::collections::BTreeMap<NaiveDate, (f64, f64)> = Default::default();
    for (x, d) in g.iter().zip(days) {
        let f = risk_f(*x);
        let u = x.ln().powf(1.084) - 5.381;
        let r = 22.77 * u * u;
        let e = per.entry(*d).or_insert((0.0, 0.0));
        if f < 0.0 {
            e.0 = e.0.max(r);
        } else {
            e.1 = e.1.max(r);
        }
    }
    mean(per.values().map(|(l, h)| l + h))
}
