//! Feeds the synthetic demo patients straight into the pipeline, without the
//! Dexcom round trip (`serve --demo` goes through the Dexcom simulator instead;
//! this direct path seeds tests and benchmarks).

use chrono::{DateTime, Utc};

use super::{demo_patients, DemoPatient, DemoSample, SensorLevel};
use crate::domain::{
    DeviceInfo, Glucose, MgDl, Reading, ReadingTime, ReadingType, SensorStatus, Source, Trend,
    TrendRate, UserId,
};
use crate::pipeline::{Pipeline, RecordResult};

/// Converts one synthetic sample into a domain reading, as a CGM would report it.
pub fn to_reading(patient: &DemoPatient, user: &UserId, s: &DemoSample) -> Option<Reading> {
    let glucose = match s.level {
        SensorLevel::Low => Glucose::out_of_range(SensorStatus::Low),
        SensorLevel::High => Glucose::out_of_range(SensorStatus::High),
        SensorLevel::InRange => Glucose::value(MgDl::new(s.glucose_mg_dl).ok()?),
    };
    let rate = s.trend_rate.and_then(|r| TrendRate::new(r).ok());
    Some(Reading {
        user_id: user.clone(),
        timestamp: ReadingTime::from_utc(s.timestamp),
        glucose,
        trend: Some(rate.map_or(Trend::NotComputable, |r| Trend::from_rate(r.get()))),
        trend_rate: rate,
        device: DeviceInfo::parse(
            Some(format!("{}-demo", patient.device_model)),
            Some(patient.serial_number.to_owned()),
            Some(patient.transmitter_id.to_owned()),
        )
        .ok()?,
        reading_type: ReadingType::Cgm,
        source: Source::demo(),
        source_record_id: None,
        display_offset_minutes: None,
    })
}

/// Writes every demo sample in `[from, to)` through the pipeline; returns how many
/// were newly inserted.
pub async fn feed_window(
    pipeline: &Pipeline,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<usize, crate::store::StoreError> {
    let mut inserted = 0;
    for patient in demo_patients() {
        let Ok(user) = UserId::parse(patient.user_id) else {
            continue;
        };
        let samples = patient.samples(from, to);
        for chunk in samples.chunks(5_000) {
            let batch = chunk
                .iter()
                .filter_map(|s| {
                    let reading = to_reading(&patient, &user, s);
                    if reading.is_none() {
                        tracing::warn!(user_id = %user, sample = ?s, "demo sample is not a valid reading; skipped");
                    }
                    reading
                })
                .map(Ok)
                .collect();
            inserted += pipeline
                .ingest(batch)
                .await?
                .iter()
                .filter(|r| {
                    matches!(r, RecordResult::Stored(_, u) if u.outcome == crate::records::readings::Outcome::Inserted)
                })
                .count();
        }
    }
    Ok(inserted)
}
