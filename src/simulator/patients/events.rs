//! What happens in a patient's local day (meals with their insulin, exercise), drawn from the seed per day.

use super::curves::{minutes_to_secs, Bump, Plateau, Shape, SMOOTHSTEP_MAX_SLOPE};
use super::rng::{SplitMix64, Stream};
use super::roster::Profile;

pub(super) const MINUTE: i64 = 60;
const HOUR: i64 = 60 * MINUTE;
pub(super) const DAY: i64 = 24 * HOUR;

/// Seconds after local midnight of hh:mm.
pub(super) const fn hm(hours: i64, minutes: i64) -> i64 {
    hours * HOUR + minutes * MINUTE
}

/// Net glucose excursion of a bolused meal: carbs appear faster than the
/// insulin acts, so glucose rises, peaks at a third of the duration, then
/// insulin brings it back down over the remaining two thirds.
pub(super) const MEAL_SHAPE: Shape = Shape { rise: 2, fall: 4 };
/// Steepest slope of `MEAL_SHAPE` per unit of its duration (checked by a test).
pub(super) const MEAL_SHAPE_MAX_SLOPE: f64 = 4.8;
/// Time to peak for a meal bolused on time, minutes (fast vs slow meals).
const MEAL_PEAK_MINUTES: (f64, f64) = (45.0, 75.0);
/// A late bolus lets the meal run further before insulin catches up.
const LATE_BOLUS_EXTRA_PEAK_MINUTES: f64 = 15.0;
/// Latest peak; a rise too big to reach by then at the allowed rate is capped.
const MEAL_PEAK_MAX_MINUTES: f64 = 90.0;
/// How much bigger the spike gets when the bolus is late.
const LATE_BOLUS_RISE_FACTOR: (f64, f64) = (1.4, 1.9);
/// Steepest post-meal rise we allow, mg/dL/min. Real CGM traces rarely exceed
/// 3 mg/dL/min; this also keeps 5-minute steps under 25 mg/dL even when a
/// meal coincides with the recovery from exercise.
const MAX_MEAL_RISE_PER_MINUTE: f64 = 2.75;
/// Insulin outlasting the carbs: a shallow symmetric dip after the peak,
/// deeper when the bolus came late.
const LATE_BOLUS_TAIL_FACTOR: f64 = 1.5;
const INSULIN_TAIL_SHAPE: Shape = Shape { rise: 2, fall: 2 };
/// Without insulin the same carbs raise glucose much more, and for hours.
const MISSED_BOLUS_RISE_FACTOR: f64 = 1.8;
const MISSED_BOLUS_MAX_RISE: f64 = 260.0;
const MISSED_BOLUS_MIN_RISE_MINUTES: f64 = 100.0;
/// Until the high is noticed and a correction bolus is taken.
const MISSED_BOLUS_HOLD_MINUTES: (f64, f64) = (45.0, 120.0);
/// A correction bolus lowers glucose over a few hours.
const CORRECTION_FALL_MINUTES: (f64, f64) = (150.0, 210.0);
const MAX_CORRECTION_FALL_PER_MINUTE: f64 = 2.0;

/// Exercise lowers glucose during the session (muscle uptake) and for a couple
/// of hours after (raised insulin sensitivity); deepest 20 min after the end.
const EXERCISE_SHAPE: Shape = Shape { rise: 2, fall: 3 };
const EXERCISE_NADIR_AFTER_END_MINUTES: f64 = 20.0;
const EXERCISE_MINUTES: (i64, i64) = (30, 60);
/// Probability that a session is a late-morning one rather than after work.
const MORNING_EXERCISE_CHANCE: f64 = 0.3;
const MORNING_EXERCISE_START: (i64, i64) = (hm(10, 15), hm(11, 15));
const EVENING_EXERCISE_START: (i64, i64) = (hm(16, 30), hm(17, 45));
/// Nobody eats dinner during a workout: dinner moves to after the session.
const DINNER_AFTER_EXERCISE_MINUTES: (i64, i64) = (20, 40);

/// When a meal may start (local time of day) and how many grams of carbs it has.
struct MealWindow {
    earliest: i64,
    latest: i64,
    carbs_g: (f64, f64),
}

const BREAKFAST_WEEKDAY: MealWindow = MealWindow {
    earliest: hm(6, 45),
    latest: hm(8, 15),
    carbs_g: (25.0, 60.0),
};
/// People sleep in on Saturdays and Sundays.
const BREAKFAST_WEEKEND: MealWindow = MealWindow {
    earliest: hm(8, 30),
    latest: hm(10, 0),
    carbs_g: (30.0, 70.0),
};
const LUNCH: MealWindow = MealWindow {
    earliest: hm(11, 50),
    latest: hm(13, 40),
    carbs_g: (35.0, 75.0),
};
const DINNER: MealWindow = MealWindow {
    earliest: hm(18, 0),
    latest: hm(20, 30),
    carbs_g: (45.0, 95.0),
};
const SNACK_AFTERNOON: MealWindow = MealWindow {
    earliest: hm(15, 0),
    latest: hm(16, 15),
    carbs_g: (10.0, 30.0),
};
const SNACK_EVENING: MealWindow = MealWindow {
    earliest: hm(21, 0),
    latest: hm(22, 15),
    carbs_g: (10.0, 30.0),
};

/// How the meal's insulin was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bolus {
    OnTime,
    /// Injected after eating: a bigger, later spike and a deeper dip after.
    Late,
    /// Forgotten: glucose climbs and stays up until a correction bolus hours later.
    Missed,
}

/// The glucose excursion a meal causes.
#[derive(Debug, Clone, PartialEq)]
enum Excursion {
    /// Carbs absorbed faster than the insulin acts: a bump, then a shallow
    /// dip while the insulin outlasts the carbs.
    Bolused { rise: Bump, insulin_tail: Bump },
    /// No insulin: a long plateau ended by a correction bolus.
    Uncovered(Plateau),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Meal {
    /// Local seconds when eating starts.
    pub(super) at: i64,
    pub(super) carbs_g: f64,
    pub(super) bolus: Bolus,
    excursion: Excursion,
}

impl Meal {
    fn effect_at(&self, t: i64) -> f64 {
        match &self.excursion {
            Excursion::Bolused { rise, insulin_tail } => {
                rise.value_at(t) + insulin_tail.value_at(t)
            }
            Excursion::Uncovered(plateau) => plateau.value_at(t),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Exercise {
    /// Local seconds of the session's start and end.
    pub(super) start: i64,
    pub(super) end: i64,
    dip: Bump,
}

/// Everything scheduled on one local day.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct DayPlan {
    /// Breakfast, lunch, dinner.
    pub(super) meals: [Meal; 3],
    pub(super) snack: Option<Meal>,
    pub(super) exercise: Option<Exercise>,
}

impl DayPlan {
    /// Summed effect of this day's events at local time `t`, mg/dL (may be
    /// non-zero after midnight: dinner and evening exercise run into the night).
    pub(super) fn effect_at(&self, t: i64) -> f64 {
        let meals: f64 = self
            .meals
            .iter()
            .chain(&self.snack)
            .map(|m| m.effect_at(t))
            .sum();
        let exercise = self.exercise.as_ref().map_or(0.0, |e| e.dip.value_at(t));
        meals + exercise
    }
}

/// Monday = 0 ... Sunday = 6 for a local day number (day 0 = 1970-01-01, a Thursday).
pub(super) fn weekday(day: i64) -> i64 {
    (day + 3).rem_euclid(7)
}

/// Local midnight of `day`, in local seconds.
pub(super) fn day_start(day: i64) -> i64 {
    day.saturating_mul(DAY)
}

/// The day's plan; a pure function of (profile, seed, day).
pub(super) fn day_plan(p: &Profile, seed: u64, day: i64) -> DayPlan {
    let exercise = exercise_for_day(p, seed, day);
    let mut rng = SplitMix64::keyed(seed, Stream::Meals, day);
    let midnight = day_start(day);
    // Insulin sensitivity varies from day to day (stress, illness, hormones).
    let sensitivity = rng.range(1.0 - p.day_variability, 1.0 + p.day_variability);

    let breakfast_window = if weekday(day) >= 5 {
        &BREAKFAST_WEEKEND
    } else {
        &BREAKFAST_WEEKDAY
    };
    let breakfast_at = midnight + draw_time(&mut rng, breakfast_window);
    let lunch_at = midnight + draw_time(&mut rng, &LUNCH);
    let mut dinner_at = midnight + draw_time(&mut rng, &DINNER);
    // Drawn on every day so that exercise never shifts the draws that follow.
    let dinner_delay = MINUTE
        * rng.int_in(
            DINNER_AFTER_EXERCISE_MINUTES.0,
            DINNER_AFTER_EXERCISE_MINUTES.1,
        );
    if let Some(e) = &exercise {
        dinner_at = dinner_at.max(e.end + dinner_delay);
    }

    let meals = [
        meal(p, &mut rng, breakfast_at, breakfast_window, sensitivity),
        meal(p, &mut rng, lunch_at, &LUNCH, sensitivity),
        meal(p, &mut rng, dinner_at, &DINNER, sensitivity),
    ];
    let snack = if rng.chance(p.snack_chance) {
        let window = if rng.chance(0.5) {
            &SNACK_AFTERNOON
        } else {
            &SNACK_EVENING
        };
        let at = midnight + draw_time(&mut rng, window);
        Some(meal(p, &mut rng, at, window, sensitivity))
    } else {
        None
    };
    DayPlan {
        meals,
        snack,
        exercise,
    }
}

/// The day's exercise session, if any (its own stream: hypo planning needs it alone).
pub(super) fn exercise_for_day(p: &Profile, seed: u64, day: i64) -> Option<Exercise> {
    let mut rng = SplitMix64::keyed(seed, Stream::Exercise, day);
    if !rng.chance(p.exercise_chance) {
        return None;
    }
    let (earliest, latest) = if rng.chance(MORNING_EXERCISE_CHANCE) {
        MORNING_EXERCISE_START
    } else {
        EVENING_EXERCISE_START
    };
    let start = day_start(day) + MINUTE * rng.int_in(earliest / MINUTE, latest / MINUTE);
    let minutes = rng.int_in(EXERCISE_MINUTES.0, EXERCISE_MINUTES.1);
    let depth = rng.range(p.exercise_dip.0, p.exercise_dip.1);
    let nadir_minutes = minutes as f64 + EXERCISE_NADIR_AFTER_END_MINUTES;
    Some(Exercise {
        start,
        end: start + MINUTE * minutes,
        dip: Bump {
            start,
            duration_min: nadir_minutes / EXERCISE_SHAPE.peak_fraction(),
            amplitude: -depth,
            shape: EXERCISE_SHAPE,
        },
    })
}

/// A start time inside the window, on a whole minute, in seconds after midnight.
fn draw_time(rng: &mut SplitMix64, window: &MealWindow) -> i64 {
    MINUTE * rng.int_in(window.earliest / MINUTE, window.latest / MINUTE)
}

/// One meal and its bolus, eaten at local time `at`.
fn meal(p: &Profile, rng: &mut SplitMix64, at: i64, window: &MealWindow, sensitivity: f64) -> Meal {
    let carbs_g = rng.range(window.carbs_g.0, window.carbs_g.1) * p.carb_scale;
    let rise = carbs_g * p.rise_per_gram * sensitivity;
    let draw = rng.unit();
    let bolus = if draw < p.missed_bolus_chance {
        Bolus::Missed
    } else if draw < p.missed_bolus_chance + p.late_bolus_chance {
        Bolus::Late
    } else {
        Bolus::OnTime
    };
    let excursion = match bolus {
        Bolus::OnTime => bolused_excursion(p, rng, at, rise, false),
        Bolus::Late => bolused_excursion(p, rng, at, rise, true),
        Bolus::Missed => uncovered_excursion(rng, at, rise),
    };
    Meal {
        at,
        carbs_g,
        bolus,
        excursion,
    }
}

/// Net excursion of a meal with its bolus; `late` when injected after eating.
fn bolused_excursion(
    p: &Profile,
    rng: &mut SplitMix64,
    at: i64,
    rise: f64,
    late: bool,
) -> Excursion {
    let mut peak_min = rng.range(MEAL_PEAK_MINUTES.0, MEAL_PEAK_MINUTES.1);
    let mut rise = rise;
    let mut tail = p.insulin_tail;
    if late {
        rise *= rng.range(LATE_BOLUS_RISE_FACTOR.0, LATE_BOLUS_RISE_FACTOR.1);
        peak_min += LATE_BOLUS_EXTRA_PEAK_MINUTES;
        // The late insulin is then still acting when the carbs are gone.
        tail *= LATE_BOLUS_TAIL_FACTOR;
    }
    // Carbs cannot be absorbed arbitrarily fast: a big meal takes longer to
    // peak (up to 90 min), and beyond that its rise is capped.
    let steepness_limited_min = rise * MEAL_SHAPE_MAX_SLOPE / MAX_MEAL_RISE_PER_MINUTE;
    let duration_min = (peak_min / MEAL_SHAPE.peak_fraction())
        .max(steepness_limited_min)
        .min(MEAL_PEAK_MAX_MINUTES / MEAL_SHAPE.peak_fraction());
    let rise = rise.min(MAX_MEAL_RISE_PER_MINUTE * duration_min / MEAL_SHAPE_MAX_SLOPE);
    let peak_min = duration_min * MEAL_SHAPE.peak_fraction();
    Excursion::Bolused {
        rise: Bump {
            start: at,
            duration_min,
            amplitude: rise,
            shape: MEAL_SHAPE,
        },
        insulin_tail: Bump {
            start: at + minutes_to_secs(peak_min),
            duration_min,
            amplitude: -rise * tail,
            shape: INSULIN_TAIL_SHAPE,
        },
    }
}

/// A meal without insulin: glucose climbs for a couple of hours, stays up
/// until the patient notices and corrects, then comes down slowly.
fn uncovered_excursion(rng: &mut SplitMix64, at: i64, rise: f64) -> Excursion {
    let amplitude = (rise * MISSED_BOLUS_RISE_FACTOR).min(MISSED_BOLUS_MAX_RISE);
    // Stretch the climb and the fall so that neither is steeper than allowed.
    let rise_min = MISSED_BOLUS_MIN_RISE_MINUTES
        .max(SMOOTHSTEP_MAX_SLOPE * amplitude / MAX_MEAL_RISE_PER_MINUTE);
    Excursion::Uncovered(Plateau {
        start: at,
        rise_min,
        hold_min: rng.range(MISSED_BOLUS_HOLD_MINUTES.0, MISSED_BOLUS_HOLD_MINUTES.1),
        fall_min: rng
            .range(CORRECTION_FALL_MINUTES.0, CORRECTION_FALL_MINUTES.1)
            .max(SMOOTHSTEP_MAX_SLOPE * amplitude / MAX_CORRECTION_FALL_PER_MINUTE),
        amplitude,
    })
}
