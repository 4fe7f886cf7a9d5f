//! The consensus sufficiency gate (Battelino 2019): at least 14 days of data and
//! at least 70 % of the expected readings.

use chrono_tz::Tz;

use super::Sample;

/// Days of data: the local calendar days from the first to the last reading.
pub(crate) fn sufficient(samples: &[Sample], _tz: Tz, active_percent: Option<f64>) -> bool {
    // Fourteen days of wear, measured as elapsed time from the first reading to the
    // last plus one reading interval (up to Libre's 15 minutes): 13 days that start
    // in the evening touch 14 calendar dates but are 13 days of data.
    let (Some(first), Some(last)) = (
        samples.iter().map(|s| s.at).min(),
        samples.iter().map(|s| s.at).max(),
    ) else {
        return false;
    };
    let span = last - first + chrono::Duration::minutes(15);
    span >= chrono::Duration::days(14) && active_percent.is_some_and(|a| a >= 70.0)
}
