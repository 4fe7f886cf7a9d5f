//! What the demo patients write in their journal: the meals and exercise
//! their simulated trace is made of, and the night's sleep before each day,
//! so that their meal glucose responses and daily journal totals line up with
//! the glucose the simulator serves. Like the trace, a pure function of
//! (patient, time): any window can be written on its own and again.
//!
//! People forget: some snacks go unlogged (`DiaryMeal::logged` is false), which
//! is what the unlogged-meal detection is there to find.

use chrono::{DateTime, Utc};

use super::events::{day_plan, exercise_for_day, hm, Bolus, Meal, DAY, MINUTE};
use super::rng::{SplitMix64, Stream};
use super::DemoPatient;

/// Bedtime, local: between these (seconds after midnight, the evening before).
const BEDTIME: (i64, i64) = (hm(22, 15), hm(23, 45));
/// Waking up this many minutes before breakfast.
const WAKE_BEFORE_BREAKFAST_MINUTES: (i64, i64) = (20, 50);
/// Minutes awake during the night.
const AWAKE_MINUTES: (i64, i64) = (5, 35);
/// Share of a night's sleep in deep and REM stages (the rest is light).
const DEEP_SHARE: (f64, f64) = (0.13, 0.23);
const REM_SHARE: (f64, f64) = (0.18, 0.25);
/// Chance that a snack is not written down.
const UNLOGGED_SNACK_CHANCE: f64 = 0.5;
/// The activity types of a session, drawn per day.
const EXERCISE_KINDS: [&str; 4] = ["walking", "running", "cycling", "strength"];

/// One meal as the patient logs it.
#[derive(Debug, Clone, PartialEq)]
pub struct DiaryMeal {
    pub at: DateTime<Utc>,
    /// `breakfast`, `lunch`, `dinner` or `snack`.
    pub meal_type: &'static str,
    /// Whole grams, as people count them.
    pub carbs_grams: u32,
    /// A short description, e.g. "lunch (late bolus)".
    pub description: String,
    /// False for a snack the patient forgot to log.
    pub logged: bool,
}

/// One journal entry of a demo patient.
#[derive(Debug, Clone, PartialEq)]
pub enum DiaryEntry {
    Meal(DiaryMeal),
    Exercise {
        start: DateTime<Utc>,
        minutes: u32,
        /// `walking`, `running`, `cycling` or `strength`.
        activity_type: &'static str,
    },
    Sleep {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        awake_minutes: u32,
        deep_minutes: u32,
        rem_minutes: u32,
        /// 0-10.
        quality_score: f64,
    },
}

impl DiaryEntry {
    /// When the entry happened (a sleep's start), to order and window them.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            DiaryEntry::Meal(meal) => meal.at,
            DiaryEntry::Exercise { start, .. } | DiaryEntry::Sleep { start, .. } => *start,
        }
    }
}

impl DemoPatient {
    /// The patient's journal entries that start in [from, to), in time order:
    /// every meal and exercise session of the simulated trace, and each
    /// night's sleep. The caller bounds the window.
    pub fn diary(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DiaryEntry> {
        if from >= to {
            return Vec::new();
        }
        let offset = i64::from(self.profile.utc_offset_secs);
        let local = |t: DateTime<Utc>| t.timestamp() + offset;
        let utc = |local_secs: i64| DateTime::from_timestamp(local_secs - offset, 0);
        // A night's sleep begins the evening before its day: look one day back.
        let first_day = local(from).div_euclid(DAY) - 1;
        let last_day = local(to).div_euclid(DAY) + 1;
        let mut entries = Vec::new();
        for day in first_day..=last_day {
            let plan = day_plan(&self.profile, self.seed, day);
            let mut rng = SplitMix64::keyed(self.seed, Stream::Diary, day);
            let sleep = self.night_before(&mut rng, day, plan.meals[0].at);
            entries.extend(sleep_entry(sleep, &utc));
            let names = ["breakfast", "lunch", "dinner"];
            for (meal, name) in plan.meals.iter().zip(names) {
                entries.extend(meal_entry(meal, name, true, &utc));
            }
            if let Some(snack) = &plan.snack {
                let logged = !rng.chance(UNLOGGED_SNACK_CHANCE);
                entries.extend(meal_entry(snack, "snack", logged, &utc));
            }
            if let Some(exercise) = exercise_for_day(&self.profile, self.seed, day) {
                let kind = EXERCISE_KINDS[rng.int_in(0, EXERCISE_KINDS.len() as i64 - 1) as usize];
                if let Some(start) = utc(exercise.start) {
                    entries.push(DiaryEntry::Exercise {
                        start,
                        minutes: ((exercise.end - exercise.start) / MINUTE) as u32,
                        activity_type: kind,
                    });
                }
            }
        }
        entries.retain(|e| (from..to).contains(&e.at()));
        entries.sort_by_key(DiaryEntry::at);
        entries
    }

    /// The night ending on the morning of `day`, in local seconds, with its
    /// stage minutes: bed the evening before, up shortly before breakfast.
    fn night_before(&self, rng: &mut SplitMix64, day: i64, breakfast: i64) -> Night {
        let bed = day * DAY - DAY + MINUTE * rng.int_in(BEDTIME.0 / MINUTE, BEDTIME.1 / MINUTE);
        let up = breakfast
            - MINUTE
                * rng.int_in(
                    WAKE_BEFORE_BREAKFAST_MINUTES.0,
                    WAKE_BEFORE_BREAKFAST_MINUTES.1,
                );
        let awake = rng.int_in(AWAKE_MINUTES.0, AWAKE_MINUTES.1);
        let asleep = ((up - bed) / MINUTE - awake).max(0) as f64;
        let deep = (asleep * rng.range(DEEP_SHARE.0, DEEP_SHARE.1)).round();
        let rem = (asleep * rng.range(REM_SHARE.0, REM_SHARE.1)).round();
        // Longer, less broken nights score better; one decimal.
        let hours = asleep / 60.0;
        let quality = (4.0 + (hours - 5.0).clamp(0.0, 3.5) - awake as f64 / 20.0).clamp(0.0, 10.0);
        Night {
            bed,
            up,
            awake: awake as u32,
            deep: deep as u32,
            rem: rem as u32,
            quality: (quality * 10.0).round() / 10.0,
        }
    }
}

/// A night in local seconds.
struct Night {
    bed: i64,
    up: i64,
    awake: u32,
    deep: u32,
    rem: u32,
    quality: f64,
}

fn sleep_entry(night: Night, utc: &impl Fn(i64) -> Option<DateTime<Utc>>) -> Option<DiaryEntry> {
    Some(DiaryEntry::Sleep {
        start: utc(night.bed)?,
        end: utc(night.up)?,
        awake_minutes: night.awake,
        deep_minutes: night.deep,
        rem_minutes: night.rem,
        quality_score: night.quality,
    })
}

fn meal_entry(
    meal: &Meal,
    name: &'static str,
    logged: bool,
    utc: &impl Fn(i64) -> Option<DateTime<Utc>>,
) -> Option<DiaryEntry> {
    let bolus = match meal.bolus {
        Bolus::OnTime => "",
        Bolus::Late => " (late bolus)",
        Bolus::Missed => " (forgot the bolus)",
    };
    Some(DiaryEntry::Meal(DiaryMeal {
        at: utc(meal.at)?,
        meal_type: name,
        carbs_grams: meal.carbs_g.round().max(0.0) as u32,
        description: format!("{name}{bolus}"),
        logged,
    }))
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::simulator::patients::demo_patients;

    fn week() -> (DateTime<Utc>, DateTime<Utc>) {
        let from = Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap();
        (from, from + Duration::days(7))
    }

    #[test]
    fn a_week_has_three_meals_a_day_a_sleep_a_night_and_stays_in_the_window() {
        let (from, to) = week();
        for patient in demo_patients() {
            let diary = patient.diary(from, to);
            assert!(diary.iter().all(|e| (from..to).contains(&e.at())));
            assert!(diary.windows(2).all(|w| w[0].at() <= w[1].at()));
            let main_meals = diary
                .iter()
                .filter(|e| matches!(e, DiaryEntry::Meal(m) if m.meal_type != "snack"))
                .count();
            // The window cuts local days at UTC midnight: 21 meals, give or take one day's.
            assert!(
                (18..=24).contains(&main_meals),
                "{}: {main_meals}",
                patient.user_id
            );
            let nights: Vec<_> = diary
                .iter()
                .filter_map(|e| match e {
                    DiaryEntry::Sleep {
                        start,
                        end,
                        awake_minutes,
                        quality_score,
                        ..
                    } => Some((*start, *end, *awake_minutes, *quality_score)),
                    _ => None,
                })
                .collect();
            assert!((6..=8).contains(&nights.len()), "{}", patient.user_id);
            for (start, end, awake, quality) in nights {
                let hours = (end - start).num_minutes() as f64 / 60.0;
                assert!(
                    (5.5..=12.0).contains(&hours),
                    "{}: {hours} h",
                    patient.user_id
                );
                assert!((5..=35).contains(&awake));
                assert!((0.0..=10.0).contains(&quality));
            }
        }
    }

    #[test]
    fn the_same_window_gives_the_same_diary_and_a_split_window_its_two_halves() {
        let (from, to) = week();
        let middle = from + Duration::hours(77);
        for patient in demo_patients() {
            let whole = patient.diary(from, to);
            assert_eq!(whole, patient.diary(from, to));
            let mut halves = patient.diary(from, middle);
            halves.extend(patient.diary(middle, to));
            assert_eq!(whole, halves, "{}", patient.user_id);
        }
    }

    #[test]
    fn the_logged_meals_are_the_ones_the_trace_rises_after() {
        let (from, to) = week();
        for patient in demo_patients() {
            let mut rises = 0;
            let mut meals = 0;
            for entry in patient.diary(from, to) {
                let DiaryEntry::Meal(meal) = entry else {
                    continue;
                };
                if meal.meal_type == "snack" {
                    continue;
                }
                meals += 1;
                let before = patient.samples(meal.at - Duration::minutes(30), meal.at);
                let after = patient.samples(meal.at, meal.at + Duration::minutes(120));
                let (Some(base), Some(peak)) = (
                    before.iter().map(|s| s.glucose_mg_dl).min(),
                    after.iter().map(|s| s.glucose_mg_dl).max(),
                ) else {
                    continue;
                };
                if peak > base + 10 {
                    rises += 1;
                }
            }
            // Exercise, hypos and sensor gaps can mask a few; most meals show.
            assert!(
                rises * 10 >= meals * 7,
                "{}: {rises} of {meals}",
                patient.user_id
            );
        }
    }
}
