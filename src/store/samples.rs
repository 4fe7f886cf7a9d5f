//! A user's CGM readings in a window as `analytics::Sample`s, read through the
//! keyset scan in bounded chunks: the analytics routes (and later the daily
//! aggregates) need every reading of up to a year, never a whole table in one
//! query or one allocation of full readings.

use crate::analytics::Sample;
use crate::domain::{ReadingType, UserId};

use super::query::{Order, Scan};
use super::{ReadingStore, StoreError};

/// Readings per scan: a little over two weeks of 5-minute data, so the default
/// 14-day window is one query and a full year about 21.
pub const CHUNK: usize = 5_000;

/// What a window held.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowSamples {
    /// Every CGM reading of the window, oldest first.
    All(Vec<Sample>),
    /// More than the caller's limit: reading stopped there.
    TooMany,
}

/// The CGM readings of `user` with `from <= t < until` (unix seconds), oldest
/// first, as samples in mg/dL: a reading the sensor reported as LOW or HIGH
/// enters with its stored bound (39 or 401), as `analytics` expects. Manual
/// (fingerstick) and calibration readings are not CGM data and stay out.
/// Stops with `TooMany` once more than `max` CGM readings were found.
pub async fn window_samples(
    store: &dyn ReadingStore,
    user: &UserId,
    from: i64,
    until: i64,
    max: usize,
) -> Result<WindowSamples, StoreError> {
    let mut out = Vec::new();
    let mut from = from;
    while from < until {
        let chunk = store
            .scan_readings(Scan {
                user_id: user.clone(),
                from,
                until,
                order: Order::Asc,
                limit: CHUNK,
            })
            .await?;
        let Some(last) = chunk.last() else { break };
        let next = last.reading.timestamp.unix_seconds().saturating_add(1);
        let full = chunk.len() == CHUNK;
        out.extend(
            chunk
                .iter()
                .filter(|r| r.reading.reading_type == ReadingType::Cgm)
                .map(|r| Sample {
                    at: r.reading.timestamp.as_datetime(),
                    mg_dl: f64::from(r.reading.glucose.mg_dl().get()),
                }),
        );
        if out.len() > max {
            return Ok(WindowSamples::TooMany);
        }
        if !full {
            break;
        }
        from = next;
    }
    Ok(WindowSamples::All(out))
}
