//! The three demo patients: identities shown to users plus the private profile driving their traces.

use super::DemoPatient;

const HOUR_SECS: i32 = 3600;
const MINUTE_SECS: i64 = 60;

/// Dexcom G6 sensors need a 2 h warm-up after insertion, G7 sensors 30 min.
const G6_WARMUP_SECS: i64 = 120 * MINUTE_SECS;
const G7_WARMUP_SECS: i64 = 30 * MINUTE_SECS;

/// Everything that makes one patient's glucose differ from another's.
/// Glucose values are mg/dL, durations as named.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Profile {
    /// The patient's "local time" (fixed, no DST) that meals and sleep follow.
    pub(super) utc_offset_secs: i32,
    /// The transmitter ticks at hh:mm:ss where (seconds since epoch) mod 300 equals this.
    pub(super) grid_offset_secs: i64,
    /// Fasting level the curve returns to when nothing happens.
    pub(super) baseline: f64,
    /// Peak size of the slow day-to-day wander of the baseline.
    pub(super) drift: f64,
    /// Typical early-morning rise (counter-regulatory hormones, dawn phenomenon).
    pub(super) dawn_rise: f64,
    /// Scales the carbohydrate content of every meal (appetite).
    pub(super) carb_scale: f64,
    /// Net post-meal rise per gram of carbs with the usual bolus (insulin-to-carb ratio fit).
    pub(super) rise_per_gram: f64,
    /// Day-to-day change of insulin sensitivity, as a +/- fraction of meal rises.
    pub(super) day_variability: f64,
    /// Probability that a meal bolus comes late, giving a bigger, later spike.
    pub(super) late_bolus_chance: f64,
    /// Probability that a meal bolus is forgotten altogether.
    pub(super) missed_bolus_chance: f64,
    /// Size of the post-meal dip below baseline when insulin outlasts the carbs, as a fraction of the rise.
    pub(super) insulin_tail: f64,
    /// Probability of an extra snack on a given day.
    pub(super) snack_chance: f64,
    /// Probability of an exercise session on a given day.
    pub(super) exercise_chance: f64,
    /// Range of the exercise dip depth.
    pub(super) exercise_dip: (f64, f64),
    /// Range of planned hypoglycaemia episodes per week; (0, 0) for none.
    pub(super) hypos_per_week: (i64, i64),
    /// Amplitude of the correlated sensor noise.
    pub(super) noise: f64,
    /// Per-sensor calibration error, as a +/- fraction.
    pub(super) sensor_bias: f64,
    /// Missing readings after every sensor change.
    pub(super) warmup_secs: i64,
}

/// The demo patients, always in this order with these identities.
pub fn demo_patients() -> Vec<DemoPatient> {
    vec![alice(), bob(), carol()]
}

/// The demo patient with this `user_id`, if any.
pub fn demo_patient(user_id: &str) -> Option<DemoPatient> {
    demo_patients().into_iter().find(|p| p.user_id == user_id)
}

/// Adult type 1 on a pump, tight control, active: small meal rises, frequent
/// exercise, one or two mild lows a week.
fn alice() -> DemoPatient {
    DemoPatient {
        user_id: "demo-alice",
        description: "Type 1, well controlled, insulin pump",
        transmitter_id: "8AB12C",
        serial_number: "SM90000001",
        device_model: "G7",
        diabetes_type: "type1",
        seed: 0x0A11_CE00_5EED_0001,
        profile: Profile {
            utc_offset_secs: -5 * HOUR_SECS,
            grid_offset_secs: 137,
            baseline: 105.0,
            drift: 8.0,
            dawn_rise: 18.0,
            carb_scale: 1.0,
            rise_per_gram: 1.4,
            day_variability: 0.15,
            late_bolus_chance: 0.12,
            missed_bolus_chance: 0.0,
            insulin_tail: 0.12,
            snack_chance: 0.35,
            exercise_chance: 0.45,
            exercise_dip: (25.0, 55.0),
            hypos_per_week: (1, 2),
            noise: 3.0,
            sensor_bias: 0.04,
            warmup_secs: G7_WARMUP_SECS,
        },
    }
}

/// Young adult type 1 on injections: larger, more variable excursions,
/// late boluses now and then, lows after over-correction.
fn bob() -> DemoPatient {
    DemoPatient {
        user_id: "demo-bob",
        description: "Type 1, moderate control, multiple daily injections",
        transmitter_id: "8GK3Q7",
        serial_number: "SM90000002",
        device_model: "G6",
        diabetes_type: "type1",
        seed: 0x0B0B_0000_5EED_0002,
        profile: Profile {
            utc_offset_secs: HOUR_SECS,
            grid_offset_secs: 251,
            baseline: 130.0,
            drift: 18.0,
            dawn_rise: 28.0,
            carb_scale: 1.1,
            rise_per_gram: 1.9,
            day_variability: 0.25,
            late_bolus_chance: 0.25,
            missed_bolus_chance: 0.05,
            insulin_tail: 0.2,
            snack_chance: 0.5,
            exercise_chance: 0.3,
            exercise_dip: (20.0, 50.0),
            hypos_per_week: (1, 2),
            noise: 3.5,
            sensor_bias: 0.05,
            warmup_secs: G6_WARMUP_SECS,
        },
    }
}

/// Older type 2 on basal-bolus insulin, poorly controlled: high baseline,
/// strong dawn phenomenon, big late-bolused meals that occasionally read HIGH;
/// no planned lows.
fn carol() -> DemoPatient {
    DemoPatient {
        user_id: "demo-carol",
        description: "Type 2, poorly controlled, basal-bolus insulin",
        transmitter_id: "8HM9X4",
        serial_number: "SM90000003",
        device_model: "G6",
        diabetes_type: "type2",
        seed: 0x0CA2_0100_5EED_0003,
        profile: Profile {
            utc_offset_secs: -8 * HOUR_SECS,
            grid_offset_secs: 44,
            baseline: 135.0,
            drift: 30.0,
            dawn_rise: 40.0,
            carb_scale: 1.2,
            rise_per_gram: 2.2,
            day_variability: 0.3,
            late_bolus_chance: 0.4,
            missed_bolus_chance: 0.06,
            insulin_tail: 0.05,
            snack_chance: 0.6,
            exercise_chance: 0.15,
            exercise_dip: (20.0, 40.0),
            hypos_per_week: (0, 0),
            noise: 4.0,
            sensor_bias: 0.06,
            warmup_secs: G6_WARMUP_SECS,
        },
    }
}
