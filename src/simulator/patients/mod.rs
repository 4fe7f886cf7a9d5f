//! Deterministic synthetic CGM traces for demo patients, so cgm-hub can be shown and tested without real sensors.
//!
//! Each demo patient wears a simulated Dexcom sensor that reports every five
//! minutes on a fixed per-patient grid (e.g. hh:02:17, hh:07:17, ...). The
//! glucose behind it is a pure function of time, built from physiological
//! components: a baseline with slow day-to-day drift, the dawn phenomenon,
//! three meals a day plus snacks (with their insulin, sometimes bolused late),
//! exercise, occasional hypoglycaemia with carb treatment, then correlated
//! sensor noise, per-sensor calibration error, warm-ups and signal-loss gaps,
//! and Dexcom's LOW/HIGH reporting limits.
//!
//! Every random choice comes from a tiny splitmix64 hash of (patient seed,
//! purpose, day / week / slot), see `rng`. There is no hidden state: any
//! window can be generated on its own, and the same instant always yields the
//! same reading, in every process and build. The Dexcom simulator relies on
//! this to serve exactly the data cgm-hub ingests for the same patients.
//!
//! Submodules: `roster` (who), `events` and `hypos` (what happens in a day),
//! `physiology` (the true glucose), `sensor` (what the CGM reports), `curves`
//! and `rng` (deterministic building blocks); `feed` puts them straight into the
//! pipeline (tests and benchmarks).

mod curves;
mod diary;
mod events;
pub mod feed;
mod hypos;
mod physiology;
mod rng;
mod roster;
mod sensor;
#[cfg(test)]
mod tests;

use chrono::{DateTime, FixedOffset, Offset, Utc};

pub use diary::{DiaryEntry, DiaryMeal};
pub use roster::{demo_patient, demo_patients};

/// Seconds between two readings of a demo sensor.
pub const SAMPLE_INTERVAL_SECS: i64 = sensor::SLOT_SECS;
/// Lowest glucose a Dexcom sensor reports as a number, mg/dL.
pub const MIN_REPORTED_MG_DL: u16 = 40;
/// Highest glucose a Dexcom sensor reports as a number, mg/dL.
pub const MAX_REPORTED_MG_DL: u16 = 400;
/// Value stored for a reading reported as LOW (below 40 mg/dL).
pub const LOW_MG_DL: u16 = MIN_REPORTED_MG_DL - 1;
/// Value stored for a reading reported as HIGH (above 400 mg/dL).
pub const HIGH_MG_DL: u16 = MAX_REPORTED_MG_DL + 1;
/// Minutes between two readings, for the trend rate.
const SAMPLE_INTERVAL_MINUTES: f64 = SAMPLE_INTERVAL_SECS as f64 / 60.0;

/// A synthetic patient with a simulated CGM.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoPatient {
    /// 1-64 chars of `[A-Za-z0-9_-]`, e.g. "demo-alice".
    pub user_id: &'static str,
    /// One line, e.g. "Type 1, well controlled, insulin pump".
    pub description: &'static str,
    /// Dexcom-style 6-character transmitter id, e.g. "8AB12C".
    pub transmitter_id: &'static str,
    /// Serial number of the display device (receiver), e.g. "SM90000001".
    pub serial_number: &'static str,
    /// "G7" or "G6".
    pub device_model: &'static str,
    /// As the profile names it: "type1", "type2", ...
    pub diabetes_type: &'static str,
    profile: roster::Profile,
    seed: u64,
}

/// How the sensor reported a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorLevel {
    /// A number in 40..=400 mg/dL.
    InRange,
    /// Below 40 mg/dL: Dexcom shows LOW, stored as 39.
    Low,
    /// Above 400 mg/dL: Dexcom shows HIGH, stored as 401.
    High,
}

/// One CGM reading.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoSample {
    /// On the patient's 5-minute grid, whole seconds.
    pub timestamp: DateTime<Utc>,
    /// 40..=400 when `InRange`; 39 when `Low`; 401 when `High`.
    pub glucose_mg_dl: u16,
    /// Whether the value is a number or Dexcom's LOW / HIGH.
    pub level: SensorLevel,
    /// mg/dL per minute since the previous reading, 1 decimal; None right
    /// after a gap (the sensor cannot compute it).
    pub trend_rate: Option<f64>,
}

impl DemoPatient {
    /// The IANA zone of the patient's local time, which their meals and sleep
    /// follow: a fixed offset, so an `Etc/GMT` zone (whose sign is POSIX's:
    /// `Etc/GMT+5` is five hours behind UTC).
    pub fn timezone(&self) -> String {
        let hours = -self.profile.utc_offset_secs / 3600;
        match hours {
            0 => "Etc/GMT".to_owned(),
            h if h > 0 => format!("Etc/GMT+{h}"),
            h => format!("Etc/GMT{h}"),
        }
    }

    /// The sample for the 5-minute slot containing `t`, or None if the sensor
    /// had a gap then. Pure function of (patient, slot).
    pub fn sample_at(&self, t: DateTime<Utc>) -> Option<DemoSample> {
        let slot = sensor::slot_of(&self.profile, t.timestamp());
        let previous = self.reading(slot - 1);
        self.sample(slot, self.reading(slot), previous)
    }

    /// All samples with timestamp in [from, to), ascending. The caller bounds
    /// the window (one day is 288 slots).
    pub fn samples(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DemoSample> {
        if from >= to {
            return Vec::new();
        }
        let first = self.first_slot_at_or_after(from);
        let end = self.first_slot_at_or_after(to);
        let mut out = Vec::with_capacity(usize::try_from(end - first).unwrap_or(0));
        // Each reading is computed once and reused as the next slot's "previous".
        let mut previous = self.reading(first - 1);
        for slot in first..end {
            let current = self.reading(slot);
            out.extend(self.sample(slot, current, previous));
            previous = current;
        }
        out
    }

    /// The patient's "local time" zone (fixed offset, no daylight saving).
    pub fn local_offset(&self) -> FixedOffset {
        FixedOffset::east_opt(self.profile.utc_offset_secs).unwrap_or_else(|| Utc.fix())
    }

    /// Seconds past each 5-minute boundary (of the Unix epoch) at which this sensor reports.
    pub fn grid_offset_secs(&self) -> u32 {
        u32::try_from(self.profile.grid_offset_secs).unwrap_or(0)
    }

    fn reading(&self, slot: i64) -> Option<f64> {
        sensor::reading(&self.profile, self.seed, slot)
    }

    /// First slot whose timestamp is >= `t` (sub-second precision respected).
    fn first_slot_at_or_after(&self, t: DateTime<Utc>) -> i64 {
        let slot = sensor::slot_of(&self.profile, t.timestamp());
        let exact = sensor::slot_start(&self.profile, slot) == t.timestamp()
            && t.timestamp_subsec_nanos() == 0;
        if exact {
            slot
        } else {
            slot + 1
        }
    }

    /// Assemble the reported sample from the unclamped sensor values of a slot and its predecessor.
    fn sample(&self, slot: i64, current: Option<f64>, previous: Option<f64>) -> Option<DemoSample> {
        let value = current?;
        let timestamp = DateTime::from_timestamp(sensor::slot_start(&self.profile, slot), 0)?;
        let (glucose_mg_dl, level) = report(value);
        Some(DemoSample {
            timestamp,
            glucose_mg_dl,
            level,
            trend_rate: previous.map(|p| round_to_tenth((value - p) / SAMPLE_INTERVAL_MINUTES)),
        })
    }
}

/// Dexcom's reporting: whole mg/dL, LOW below 40, HIGH above 400.
fn report(value: f64) -> (u16, SensorLevel) {
    let rounded = value.round();
    if rounded < f64::from(MIN_REPORTED_MG_DL) {
        (LOW_MG_DL, SensorLevel::Low)
    } else if rounded > f64::from(MAX_REPORTED_MG_DL) {
        (HIGH_MG_DL, SensorLevel::High)
    } else {
        // In 40..=400 here, so the conversion is exact.
        (rounded as u16, SensorLevel::InRange)
    }
}

/// Round to one decimal, without producing -0.0.
fn round_to_tenth(x: f64) -> f64 {
    (x * 10.0).round() / 10.0 + 0.0
}
