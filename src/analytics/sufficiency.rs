//! The consensus sufficiency gate (Battelino 2019): at least 14 days of data and
//! at least 70 % of the expected readings.

use chrono_tz::Tz;

use super::Sample;

/// Days of data: the local calendar days from the first to the last reading.
pub(crate) fn sufficient(samples: &[Sample], tz: Tz, active_percent: Option<f64>) -> bool {
    let dates = samples.iter().map(|s| s.at.with_timezone(&tz).date_naive());
    let (Some(first), Some(last)) = (dates.clone().min(), dates.max()) else {
        return false;
    };
    let days = (last - first).num_days() + 1;
    days >= 14 && active_percent.is_some_and(|a| a >= 70.0)
}
