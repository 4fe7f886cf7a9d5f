//! Occasional hypoglycaemia for the type-1 patients: one or two planned lows a week, treated with carbs.
//!
//! A low is placed where insulin-treated people typically get them (overnight,
//! after exercise, or when a lunch bolus was too big). Its depth is chosen so
//! that glucose bottoms out at a drawn target (48-67 mg/dL): the episode looks
//! at what glucose would have been at the nadir without it. The patient then
//! eats fast carbs, glucose recovers within about 40 minutes and often
//! overshoots a little (rebound from over-treatment).

use super::curves::{minutes_between, minutes_to_secs, smoothstep, Bump, Shape};
use super::events::{day_plan, day_start, hm, MINUTE};
use super::rng::{SplitMix64, Stream};
use super::roster::Profile;

/// Most episodes a week can hold (the profile's range is clamped to it).
pub(super) const MAX_PER_WEEK: usize = 2;
pub(super) const DAYS_PER_WEEK: i64 = 7;
/// Glucose at the bottom of the low, mg/dL: always below 70, now and then below 55.
const NADIR_TARGET: (f64, f64) = (48.0, 67.0);
/// How far the episode may pull glucose down, mg/dL. The upper limit keeps the
/// fall and recovery rates physiological (< 3 mg/dL/min).
const DEPTH_LIMITS: (f64, f64) = (15.0, 85.0);
/// Slow slide into the low (insulin outlasting food or activity).
const FALL_MINUTES: (f64, f64) = (60.0, 90.0);
/// Time to notice the alarm and for the carbs to start acting.
const HOLD_MINUTES: (f64, f64) = (10.0, 20.0);
/// Fast carbs bring glucose back up.
const RECOVER_MINUTES: (f64, f64) = (45.0, 60.0);
/// Over-treatment: extra rise after recovery, mg/dL, and its duration.
const REBOUND_RISE: (f64, f64) = (0.0, 20.0);
const REBOUND_MINUTES: f64 = 150.0;
const REBOUND_SHAPE: Shape = Shape { rise: 2, fall: 4 };
/// Night-time lows (basal rate too high, late-evening correction).
const NOCTURNAL_NADIR: (i64, i64) = (hm(1, 30), hm(4, 30));
const NOCTURNAL_CHANCE: f64 = 0.55;
/// A daytime low is not planned while a meal is still rising (up to two hours
/// after eating) nor just after the treatment, so the two never add up.
const MEAL_RISE_SECS: i64 = 120 * MINUTE;
const MEAL_CLEARANCE_AFTER_SECS: i64 = 30 * MINUTE;
/// Minutes from the end of exercise to the nadir.
const AFTER_EXERCISE_MINUTES: (i64, i64) = (60, 150);
/// Minutes from the start of lunch to the nadir when the bolus was too big.
const AFTER_LUNCH_MINUTES: (i64, i64) = (180, 240);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HypoCause {
    Nocturnal,
    AfterExercise,
    AfterLunchBolus,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Hypo {
    pub(super) cause: HypoCause,
    /// Local seconds of the lowest point (when treatment is taken).
    pub(super) nadir: i64,
    pub(super) target_mg_dl: f64,
    fall_min: f64,
    hold_min: f64,
    recover_min: f64,
    rebound: Bump,
}

impl Hypo {
    fn start(&self) -> i64 {
        self.nadir - minutes_to_secs(self.fall_min)
    }

    fn end(&self) -> i64 {
        let recovered = self.nadir + minutes_to_secs(self.hold_min + self.recover_min);
        recovered.max(self.rebound.end())
    }

    /// Whether the episode changes glucose at local time `t`.
    pub(super) fn affects(&self, t: i64) -> bool {
        self.start() <= t && t < self.end()
    }

    /// Effect at `t`, mg/dL, given the glucose the patient would have had at
    /// the nadir without this episode.
    pub(super) fn effect_at(&self, t: i64, glucose_at_nadir_without: f64) -> f64 {
        let depth =
            (glucose_at_nadir_without - self.target_mg_dl).clamp(DEPTH_LIMITS.0, DEPTH_LIMITS.1);
        -depth * self.depth_fraction(t) + self.rebound.value_at(t)
    }

    /// 0 before and after, easing into 1 at the nadir, held while treating.
    fn depth_fraction(&self, t: i64) -> f64 {
        let rel = minutes_between(self.nadir, t);
        if rel < 0.0 {
            smoothstep((rel + self.fall_min) / self.fall_min)
        } else if rel < self.hold_min {
            1.0
        } else {
            1.0 - smoothstep((rel - self.hold_min) / self.recover_min)
        }
    }
}

/// The week's planned episodes (week `w` = local days 7w..7w+6).
pub(super) fn week_hypos(p: &Profile, seed: u64, week: i64) -> [Option<Hypo>; MAX_PER_WEEK] {
    let mut out = [None, None];
    let (lo, hi) = p.hypos_per_week;
    if hi <= 0 {
        return out;
    }
    let mut rng = SplitMix64::keyed(seed, Stream::Hypos, week);
    let count = usize::try_from(rng.int_in(lo, hi))
        .unwrap_or(0)
        .min(MAX_PER_WEEK);
    // Two episodes are at least two days apart (also across the week's end), so they never overlap.
    let first = rng.int_in(0, DAYS_PER_WEEK - 1);
    let second = (first + rng.int_in(2, DAYS_PER_WEEK - 2)) % DAYS_PER_WEEK;
    for (slot, weekday) in out.iter_mut().zip([first, second]).take(count) {
        *slot = Some(plan_hypo(p, seed, &mut rng, week * DAYS_PER_WEEK + weekday));
    }
    out
}

fn plan_hypo(p: &Profile, seed: u64, rng: &mut SplitMix64, day: i64) -> Hypo {
    let target_mg_dl = rng.range(NADIR_TARGET.0, NADIR_TARGET.1);
    let fall_min = rng.range(FALL_MINUTES.0, FALL_MINUTES.1);
    let hold_min = rng.range(HOLD_MINUTES.0, HOLD_MINUTES.1);
    let recover_min = rng.range(RECOVER_MINUTES.0, RECOVER_MINUTES.1);
    let rebound_rise = rng.range(REBOUND_RISE.0, REBOUND_RISE.1);
    let plan = day_plan(p, seed, day);
    let after_exercise = MINUTE * rng.int_in(AFTER_EXERCISE_MINUTES.0, AFTER_EXERCISE_MINUTES.1);
    let after_lunch = MINUTE * rng.int_in(AFTER_LUNCH_MINUTES.0, AFTER_LUNCH_MINUTES.1);
    let at_night = day_start(day)
        + MINUTE * rng.int_in(NOCTURNAL_NADIR.0 / MINUTE, NOCTURNAL_NADIR.1 / MINUTE);
    let daytime = match &plan.exercise {
        Some(exercise) => (HypoCause::AfterExercise, exercise.end + after_exercise),
        None => (HypoCause::AfterLunchBolus, plan.meals[1].at + after_lunch),
    };
    // A daytime low must not coincide with eating (the meal would treat it);
    // lows that would are moved to the night, when nobody eats.
    let treatment_end = |nadir: i64| nadir + minutes_to_secs(hold_min + recover_min);
    let clashes_with_meal = plan.meals.iter().chain(&plan.snack).any(|meal| {
        meal.at >= daytime.1 - MEAL_RISE_SECS
            && meal.at <= treatment_end(daytime.1) + MEAL_CLEARANCE_AFTER_SECS
    });
    let prefer_night = plan.exercise.is_none() && rng.chance(NOCTURNAL_CHANCE);
    let (cause, nadir) = if prefer_night || clashes_with_meal {
        (HypoCause::Nocturnal, at_night)
    } else {
        daytime
    };
    Hypo {
        cause,
        nadir,
        target_mg_dl,
        fall_min,
        hold_min,
        recover_min,
        rebound: Bump {
            start: nadir + minutes_to_secs(hold_min),
            duration_min: REBOUND_MINUTES,
            amplitude: rebound_rise,
            shape: REBOUND_SHAPE,
        },
    }
}
