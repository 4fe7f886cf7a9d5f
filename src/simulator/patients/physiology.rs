//! The patient's true glucose as a pure function of local time: baseline + drift + dawn + meals + exercise + lows.

use super::curves::{smoothstep, value_noise};
use super::events::{day_plan, hm, DAY};
use super::hypos::{week_hypos, Hypo, DAYS_PER_WEEK};
use super::rng::{SplitMix64, Stream};
use super::roster::Profile;

/// The baseline wanders smoothly between random levels set at each local midnight.
const DRIFT_KNOT_SECS: i64 = DAY;
/// Dawn phenomenon: growth hormone and cortisol raise glucose from about 04:00,
/// fully by 07:30; the effect fades over the late morning.
const DAWN_START: i64 = hm(4, 0);
const DAWN_FULL: i64 = hm(7, 30);
const DAWN_FADE: i64 = hm(8, 30);
const DAWN_END: i64 = hm(11, 0);
/// Day-to-day spread of the dawn rise around the profile's value, and its limits (mg/dL).
const DAWN_DAY_FACTOR: (f64, f64) = (0.7, 1.3);
const DAWN_RISE_LIMITS: (f64, f64) = (15.0, 40.0);
/// Counter-regulation makes very low values rare: below the knee, glucose
/// approaches (knee - span) asymptotically instead of going to 0.
const FLOOR_KNEE: f64 = 50.0;
const FLOOR_SPAN: f64 = 15.0;

/// True (interstitial) glucose at local time `t` (seconds), mg/dL.
pub(super) fn glucose(p: &Profile, seed: u64, t: i64) -> f64 {
    let without_lows = glucose_without_lows(p, seed, t);
    let lows: f64 = hypos_near(p, seed, t)
        .filter(|h| h.affects(t))
        .map(|h| h.effect_at(t, glucose_without_lows(p, seed, h.nadir)))
        .sum();
    soft_floor(without_lows + lows)
}

/// Everything except hypoglycaemia episodes (which are sized against this).
fn glucose_without_lows(p: &Profile, seed: u64, t: i64) -> f64 {
    let day = t.div_euclid(DAY);
    // Yesterday's dinner, snack or exercise may still act after midnight.
    let events = day_plan(p, seed, day - 1).effect_at(t) + day_plan(p, seed, day).effect_at(t);
    p.baseline + drift(p, seed, t) + dawn(p, seed, t) + events
}

/// Episodes that may act at `t`: those planned for today's and yesterday's week.
fn hypos_near(p: &Profile, seed: u64, t: i64) -> impl Iterator<Item = Hypo> + '_ {
    let day = t.div_euclid(DAY);
    let this_week = day.div_euclid(DAYS_PER_WEEK);
    let last_week = (day - 1).div_euclid(DAYS_PER_WEEK);
    let previous = (last_week != this_week).then_some(last_week);
    previous
        .into_iter()
        .chain(Some(this_week))
        .flat_map(move |week| week_hypos(p, seed, week))
        .flatten()
}

/// Slow day-to-day wander of the fasting level.
fn drift(p: &Profile, seed: u64, t: i64) -> f64 {
    p.drift * value_noise(seed, Stream::Drift, DRIFT_KNOT_SECS, t)
}

/// Early-morning rise, sized per day.
fn dawn(p: &Profile, seed: u64, t: i64) -> f64 {
    let time_of_day = t.rem_euclid(DAY);
    if !(DAWN_START..DAWN_END).contains(&time_of_day) {
        return 0.0;
    }
    let mut rng = SplitMix64::keyed(seed, Stream::Dawn, t.div_euclid(DAY));
    let rise = (p.dawn_rise * rng.range(DAWN_DAY_FACTOR.0, DAWN_DAY_FACTOR.1))
        .clamp(DAWN_RISE_LIMITS.0, DAWN_RISE_LIMITS.1);
    let rising = smoothstep(fraction(time_of_day, DAWN_START, DAWN_FULL));
    let fading = smoothstep(fraction(time_of_day, DAWN_FADE, DAWN_END));
    rise * (rising - fading)
}

/// Where `t` lies between `from` and `to`, as a fraction (unclamped).
fn fraction(t: i64, from: i64, to: i64) -> f64 {
    (t - from) as f64 / (to - from) as f64
}

/// Identity above the knee; below it, a gentle curve bounded by knee - span.
/// Its slope is at most 1, so it never steepens the trace.
fn soft_floor(g: f64) -> f64 {
    if g >= FLOOR_KNEE {
        return g;
    }
    let below = FLOOR_KNEE - g;
    FLOOR_KNEE - below / (1.0 + below / FLOOR_SPAN)
}
