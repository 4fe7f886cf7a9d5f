//! What the CGM sensor adds on top of physiology: the 5-minute tick grid, warm-up and signal-loss gaps, calibration bias and correlated noise.

use super::curves::value_noise;
use super::events::DAY;
use super::physiology;
use super::rng::{SplitMix64, Stream};
use super::roster::Profile;

/// A transmitter reports once every 5 minutes.
pub(super) const SLOT_SECS: i64 = 300;
const SLOTS_PER_WEEK: i64 = 7 * DAY / SLOT_SECS;
/// Dexcom G6 and G7 sensors are replaced every 10 days.
const SESSION_SECS: i64 = 10 * DAY;
/// Signal loss (phone out of range, lying on the sensor): a few times a week,
/// 15 to 60 minutes each (in 5-minute slots).
const SIGNAL_LOSSES_PER_WEEK: (i64, i64) = (2, 3);
const SIGNAL_LOSS_SLOTS: (i64, i64) = (3, 12);
/// Sensor noise: a slow component (knots every 25 min) plus a faster, smaller
/// one (every 10 min). Both are smooth, so consecutive readings are correlated.
const NOISE_KNOT_SECS: i64 = 25 * 60;
const FINE_NOISE_KNOT_SECS: i64 = 10 * 60;
const FINE_NOISE_SHARE: f64 = 0.4;

/// Index of the 5-minute slot containing UTC second `utc`.
pub(super) fn slot_of(p: &Profile, utc: i64) -> i64 {
    utc.saturating_sub(p.grid_offset_secs).div_euclid(SLOT_SECS)
}

/// UTC second at which slot `slot` is reported.
pub(super) fn slot_start(p: &Profile, slot: i64) -> i64 {
    slot.saturating_mul(SLOT_SECS)
        .saturating_add(p.grid_offset_secs)
}

/// The unclamped sensor value for a slot, mg/dL, or None during a gap.
pub(super) fn reading(p: &Profile, seed: u64, slot: i64) -> Option<f64> {
    if is_gap(p, seed, slot) {
        return None;
    }
    let utc = slot_start(p, slot);
    let local = utc.saturating_add(i64::from(p.utc_offset_secs));
    let true_glucose = physiology::glucose(p, seed, local);
    Some(true_glucose * (1.0 + calibration_error(p, seed, utc)) + noise(p, seed, utc))
}

/// Whether the sensor reported nothing for this slot.
pub(super) fn is_gap(p: &Profile, seed: u64, slot: i64) -> bool {
    in_warmup(p, seed, slot_start(p, slot)) || in_signal_loss(seed, slot)
}

/// Session number and seconds since that sensor was inserted.
fn session(seed: u64, utc: i64) -> (i64, i64) {
    let anchor = SplitMix64::keyed(seed, Stream::SensorSession, 0).int_in(0, SESSION_SECS - 1);
    let since = utc.saturating_sub(anchor);
    (
        since.div_euclid(SESSION_SECS),
        since.rem_euclid(SESSION_SECS),
    )
}

fn in_warmup(p: &Profile, seed: u64, utc: i64) -> bool {
    session(seed, utc).1 < p.warmup_secs
}

fn in_signal_loss(seed: u64, slot: i64) -> bool {
    let week = slot.div_euclid(SLOTS_PER_WEEK);
    // A loss drawn near the end of last week may run into this one.
    [week - 1, week].into_iter().any(|w| {
        let mut rng = SplitMix64::keyed(seed, Stream::SignalLoss, w);
        let count = rng.int_in(SIGNAL_LOSSES_PER_WEEK.0, SIGNAL_LOSSES_PER_WEEK.1);
        (0..count).any(|_| {
            let start = w * SLOTS_PER_WEEK + rng.int_in(0, SLOTS_PER_WEEK - 1);
            let len = rng.int_in(SIGNAL_LOSS_SLOTS.0, SIGNAL_LOSS_SLOTS.1);
            (start..start + len).contains(&slot)
        })
    })
}

/// Each sensor reads a few percent high or low for its whole life.
fn calibration_error(p: &Profile, seed: u64, utc: i64) -> f64 {
    let (index, _) = session(seed, utc);
    p.sensor_bias * SplitMix64::keyed(seed, Stream::SensorBias, index).symmetric()
}

/// Correlated sensor noise, mg/dL.
pub(super) fn noise(p: &Profile, seed: u64, utc: i64) -> f64 {
    let slow = value_noise(seed, Stream::Noise, NOISE_KNOT_SECS, utc);
    let fine = value_noise(seed, Stream::FineNoise, FINE_NOISE_KNOT_SECS, utc);
    p.noise * (slow + FINE_NOISE_SHARE * fine)
}
