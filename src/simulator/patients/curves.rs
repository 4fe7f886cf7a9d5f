//! Smooth building-block curves (smoothstep, polynomial bumps, value noise) for the glucose model.
//!
//! Only the IEEE-754 basic operations (+ - * /, rounding) are used: no `exp`,
//! `sin` or `powi`, whose last bit may differ between platform maths
//! libraries. A curve value is therefore bit-identical everywhere, and the
//! rounded mg/dL reading can never flip between two machines.

use super::rng::{SplitMix64, Stream};

/// Seconds per minute, for converting time differences.
const SECS_PER_MINUTE: f64 = 60.0;

/// Minutes elapsed from `from` to `to` (both in seconds).
pub(super) fn minutes_between(from: i64, to: i64) -> f64 {
    to.saturating_sub(from) as f64 / SECS_PER_MINUTE
}

/// Whole seconds in `minutes` minutes (rounded up, so windows never come out short).
pub(super) fn minutes_to_secs(minutes: f64) -> i64 {
    (minutes * SECS_PER_MINUTE).ceil() as i64
}

/// Steepest slope of `smoothstep` (at x = 0.5).
pub(super) const SMOOTHSTEP_MAX_SLOPE: f64 = 1.5;

/// Hermite smoothstep: 0 below 0, 1 above 1, an S-curve with zero slope at both ends.
pub(super) fn smoothstep(x: f64) -> f64 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

pub(super) fn lerp(a: f64, b: f64, w: f64) -> f64 {
    a + (b - a) * w
}

/// x^n by repeated multiplication (deterministic, unlike `powi`).
fn ipow(x: f64, n: u32) -> f64 {
    (0..n).fold(1.0, |acc, _| acc * x)
}

/// A unimodal bump `u^rise * (1-u)^fall` on 0 < u < 1, scaled to peak at 1
/// when u = rise / (rise + fall). This is the beta-density shape: a polynomial
/// stand-in for the gamma curves used in glucose absorption models, with the
/// bonus of compact support (it is exactly 0 once the effect is over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Shape {
    pub(super) rise: u32,
    pub(super) fall: u32,
}

impl Shape {
    /// Where the peak lies, as a fraction of the bump's duration.
    pub(super) fn peak_fraction(self) -> f64 {
        f64::from(self.rise) / f64::from(self.rise + self.fall)
    }

    /// Value at `u` (fraction of the duration), in [0, 1].
    pub(super) fn eval(self, u: f64) -> f64 {
        if u <= 0.0 || u >= 1.0 {
            return 0.0;
        }
        let p = self.peak_fraction();
        let peak = ipow(p, self.rise) * ipow(1.0 - p, self.fall);
        ipow(u, self.rise) * ipow(1.0 - u, self.fall) / peak
    }
}

/// A shape placed in time: starts at `start` (seconds), lasts `duration_min`
/// minutes and peaks at `amplitude` mg/dL (negative for dips).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Bump {
    pub(super) start: i64,
    pub(super) duration_min: f64,
    pub(super) amplitude: f64,
    pub(super) shape: Shape,
}

impl Bump {
    pub(super) fn value_at(&self, t: i64) -> f64 {
        let u = minutes_between(self.start, t) / self.duration_min;
        self.amplitude * self.shape.eval(u)
    }

    /// First second at which the bump is back to exactly 0.
    pub(super) fn end(&self) -> i64 {
        self.start
            .saturating_add(minutes_to_secs(self.duration_min))
    }
}

/// A smooth random curve in (-1, 1): seeded knot values every `period` seconds,
/// joined by smoothstep. Neighbouring samples are correlated (unlike white
/// noise) and any point is computed from just its two surrounding knots.
pub(super) fn value_noise(seed: u64, stream: Stream, period: i64, t: i64) -> f64 {
    let knot = t.div_euclid(period);
    let frac = t.rem_euclid(period) as f64 / period as f64;
    let left = SplitMix64::keyed(seed, stream, knot).symmetric();
    let right = SplitMix64::keyed(seed, stream, knot.saturating_add(1)).symmetric();
    lerp(left, right, smoothstep(frac))
}

/// Up, hold, down: smoothstep up over `rise_min` minutes, flat for `hold_min`,
/// smoothstep back to 0 over `fall_min`. Peaks at `amplitude` mg/dL.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Plateau {
    pub(super) start: i64,
    pub(super) rise_min: f64,
    pub(super) hold_min: f64,
    pub(super) fall_min: f64,
    pub(super) amplitude: f64,
}

impl Plateau {
    pub(super) fn value_at(&self, t: i64) -> f64 {
        let m = minutes_between(self.start, t);
        if m <= 0.0 {
            return 0.0;
        }
        let up = smoothstep(m / self.rise_min);
        let down = smoothstep((m - self.rise_min - self.hold_min) / self.fall_min);
        self.amplitude * (up - down)
    }
}
