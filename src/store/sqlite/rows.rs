//! Mapping between `readings` rows and domain readings: the database edge.

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Row, Statement};

use crate::domain::{
    DeviceInfo, Glucose, MgDl, Reading, ReadingTime, ReadingType, SensorStatus, Source,
    StoredReading, Trend, TrendRate, UserId,
};
use crate::store::StoreError;

pub const COLUMNS: &str = "user_id, ts, glucose_mg_dl, status, trend, trend_rate, reading_type, \
     source, device_id, serial_number, transmitter_id, source_record_id, display_offset_minutes, \
     version, created_at_ms, updated_at_ms";

/// The raw column values of one row, before they are trusted.
struct RawRow {
    user_id: String,
    ts: i64,
    glucose: i64,
    status: Option<String>,
    trend: Option<String>,
    trend_rate: Option<f64>,
    reading_type: String,
    source: String,
    device_id: Option<String>,
    serial_number: Option<String>,
    transmitter_id: Option<String>,
    source_record_id: Option<String>,
    display_offset_minutes: Option<i64>,
    version: i64,
    created_at_ms: i64,
    updated_at_ms: i64,
}

pub fn read_row(row: &Row<'_>) -> rusqlite::Result<Result<StoredReading, StoreError>> {
    let raw = RawRow {
        user_id: row.get(0)?,
        ts: row.get(1)?,
        glucose: row.get(2)?,
        status: row.get(3)?,
        trend: row.get(4)?,
        trend_rate: row.get(5)?,
        reading_type: row.get(6)?,
        source: row.get(7)?,
        device_id: row.get(8)?,
        serial_number: row.get(9)?,
        transmitter_id: row.get(10)?,
        source_record_id: row.get(11)?,
        display_offset_minutes: row.get(12)?,
        version: row.get(13)?,
        created_at_ms: row.get(14)?,
        updated_at_ms: row.get(15)?,
    };
    Ok(raw.into_domain())
}

impl RawRow {
    fn into_domain(self) -> Result<StoredReading, StoreError> {
        let corrupt = |what: &str| {
            StoreError::Corrupt(format!("reading {}@{}: bad {what}", self.user_id, self.ts))
        };
        let glucose = match self.status.as_deref() {
            None => Glucose::value(
                u16::try_from(self.glucose)
                    .ok()
                    .and_then(|v| MgDl::new(v).ok())
                    .ok_or_else(|| corrupt("glucose"))?,
            ),
            Some(s) => {
                Glucose::out_of_range(SensorStatus::parse(s).ok_or_else(|| corrupt("status"))?)
            }
        };
        let reading = Reading {
            user_id: UserId::parse(&self.user_id).map_err(|_| corrupt("user_id"))?,
            timestamp: ReadingTime::from_unix_seconds(self.ts).ok_or_else(|| corrupt("ts"))?,
            glucose,
            trend: self
                .trend
                .as_deref()
                .map(Trend::parse)
                .transpose()
                .map_err(|_| corrupt("trend"))?,
            trend_rate: self
                .trend_rate
                .map(TrendRate::new)
                .transpose()
                .map_err(|_| corrupt("trend_rate"))?,
            device: DeviceInfo::parse(self.device_id, self.serial_number, self.transmitter_id)
                .map_err(|_| corrupt("device"))?,
            reading_type: ReadingType::parse(&self.reading_type)
                .map_err(|_| corrupt("reading_type"))?,
            source: Source::parse(&self.source).map_err(|_| corrupt("source"))?,
            source_record_id: self.source_record_id,
            display_offset_minutes: self
                .display_offset_minutes
                .map(i16::try_from)
                .transpose()
                .map_err(|_| corrupt("display_offset_minutes"))?,
        };
        Ok(StoredReading {
            reading,
            version: u32::try_from(self.version).map_err(|_| corrupt("version"))?,
            created_at: millis(self.created_at_ms).ok_or_else(|| corrupt("created_at"))?,
            updated_at: millis(self.updated_at_ms).ok_or_else(|| corrupt("updated_at"))?,
        })
    }
}

pub fn millis(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

/// Binds a reading to `INSERT ... VALUES (?1..?16)` in `COLUMNS` order.
pub fn insert(stmt: &mut Statement<'_>, r: &Reading, now_ms: i64) -> rusqlite::Result<usize> {
    stmt.execute(params![
        r.user_id.as_str(),
        r.timestamp.unix_seconds(),
        r.glucose.mg_dl().get(),
        r.glucose.status().map(SensorStatus::as_str),
        r.trend.map(Trend::as_str),
        r.trend_rate.map(TrendRate::get),
        r.reading_type.as_str(),
        r.source.as_str(),
        r.device.device_id(),
        r.device.serial_number(),
        r.device.transmitter_id(),
        r.source_record_id.as_deref(),
        r.display_offset_minutes,
        1,
        now_ms,
        now_ms,
    ])
}

/// Replaces the content of an existing row, bumping its version; binds `?1..?14`.
pub fn replace(stmt: &mut Statement<'_>, r: &Reading, now_ms: i64) -> rusqlite::Result<usize> {
    stmt.execute(params![
        r.user_id.as_str(),
        r.timestamp.unix_seconds(),
        r.glucose.mg_dl().get(),
        r.glucose.status().map(SensorStatus::as_str),
        r.trend.map(Trend::as_str),
        r.trend_rate.map(TrendRate::get),
        r.reading_type.as_str(),
        r.source.as_str(),
        r.device.device_id(),
        r.device.serial_number(),
        r.device.transmitter_id(),
        r.source_record_id.as_deref(),
        r.display_offset_minutes,
        now_ms,
    ])
}
