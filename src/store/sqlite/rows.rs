//! Mapping between `readings` rows and domain readings: the database edge.

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Row, Statement};

use crate::domain::{
    DeviceInfo, Glucose, MgDl, Reading, ReadingTime, ReadingType, SensorStatus, Source,
    StoredReading, Trend, TrendRate, UserId,
};
use crate::store::query::ReadingRef;
use crate::store::StoreError;

pub const COLUMNS: &str = "user_id, ts, glucose_mg_dl, status, trend, trend_rate, reading_type, \
     source, device_id, serial_number, transmitter_id, source_record_id, display_offset_minutes, \
     version, created_at_ms, updated_at_ms";

/// The raw column values of one row, borrowed from SQLite, before they are trusted.
struct RawRow<'r> {
    user_id: &'r str,
    ts: i64,
    glucose: i64,
    status: Option<&'r str>,
    trend: Option<&'r str>,
    trend_rate: Option<f64>,
    reading_type: &'r str,
    source: &'r str,
    device_id: Option<&'r str>,
    serial_number: Option<&'r str>,
    transmitter_id: Option<&'r str>,
    source_record_id: Option<&'r str>,
    display_offset_minutes: Option<i64>,
    version: i64,
    created_at_ms: i64,
    updated_at_ms: i64,
}

pub fn read_row(row: &Row<'_>) -> rusqlite::Result<Result<StoredReading, StoreError>> {
    read_row_of(row, None)
}

/// Reads a row; when the caller knows whose rows these are, the user id is shared
/// instead of parsed again for every row.
pub fn read_row_of(
    row: &Row<'_>,
    known_user: Option<&UserId>,
) -> rusqlite::Result<Result<StoredReading, StoreError>> {
    Ok(raw_row(row)?.into_domain(known_user))
}

/// Reads a row of `user`'s as a reading borrowed from the row, checked as
/// `read_row_of` checks it, for encoding before the next row is stepped to.
pub fn read_row_ref<'r>(
    row: &'r Row<'_>,
    user: &UserId,
) -> rusqlite::Result<Result<ReadingRef<'r>, StoreError>> {
    Ok(raw_row(row)?.checked(Some(user)))
}

fn raw_row<'r>(row: &'r Row<'_>) -> rusqlite::Result<RawRow<'r>> {
    let text = |i: usize| -> rusqlite::Result<&str> {
        row.get_ref(i)?.as_str().map_err(rusqlite::Error::from)
    };
    let opt_text = |i: usize| -> rusqlite::Result<Option<&str>> {
        row.get_ref(i)?
            .as_str_or_null()
            .map_err(rusqlite::Error::from)
    };
    Ok(RawRow {
        user_id: text(0)?,
        ts: row.get(1)?,
        glucose: row.get(2)?,
        status: opt_text(3)?,
        trend: opt_text(4)?,
        trend_rate: row.get(5)?,
        reading_type: text(6)?,
        source: text(7)?,
        device_id: opt_text(8)?,
        serial_number: opt_text(9)?,
        transmitter_id: opt_text(10)?,
        source_record_id: opt_text(11)?,
        display_offset_minutes: row.get(12)?,
        version: row.get(13)?,
        created_at_ms: row.get(14)?,
        updated_at_ms: row.get(15)?,
    })
}

impl<'r> RawRow<'r> {
    fn corrupt(&self, what: &str) -> StoreError {
        StoreError::Corrupt(format!("reading {}@{}: bad {what}", self.user_id, self.ts))
    }

    /// Every column checked as a `StoredReading` would be, without building one.
    fn checked(&self, known_user: Option<&UserId>) -> Result<ReadingRef<'r>, StoreError> {
        let corrupt = |what: &str| self.corrupt(what);
        if known_user.is_none_or(|user| user.as_str() != self.user_id) {
            UserId::parse(self.user_id).map_err(|_| corrupt("user_id"))?;
        }
        let glucose = match self.status {
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
        let device = |raw| DeviceInfo::borrowed_identifier(raw).map_err(|_| corrupt("device"));
        Source::parse(self.source).map_err(|_| corrupt("source"))?;
        Ok(ReadingRef {
            user_id: self.user_id,
            timestamp: ReadingTime::from_unix_seconds(self.ts).ok_or_else(|| corrupt("ts"))?,
            glucose,
            trend: match self.trend {
                None => None,
                Some(name) => Some(Trend::from_canonical(name).ok_or_else(|| corrupt("trend"))?),
            },
            trend_rate: self
                .trend_rate
                .map(TrendRate::new)
                .transpose()
                .map_err(|_| corrupt("trend_rate"))?,
            device_id: device(self.device_id)?,
            serial_number: device(self.serial_number)?,
            transmitter_id: device(self.transmitter_id)?,
            reading_type: ReadingType::parse(self.reading_type)
                .map_err(|_| corrupt("reading_type"))?,
            source: self.source,
            source_record_id: self.source_record_id,
            display_offset_minutes: self
                .display_offset_minutes
                .map(i16::try_from)
                .transpose()
                .map_err(|_| corrupt("display_offset_minutes"))?,
            version: u32::try_from(self.version).map_err(|_| corrupt("version"))?,
            created_at: millis(self.created_at_ms).ok_or_else(|| corrupt("created_at"))?,
            updated_at: millis(self.updated_at_ms).ok_or_else(|| corrupt("updated_at"))?,
        })
    }

    fn into_domain(self, known_user: Option<&UserId>) -> Result<StoredReading, StoreError> {
        let r = self.checked(known_user)?;
        let user_id = match known_user {
            Some(user) if user.as_str() == r.user_id => user.clone(),
            _ => UserId::parse(r.user_id).map_err(|_| self.corrupt("user_id"))?,
        };
        let reading = Reading {
            user_id,
            timestamp: r.timestamp,
            glucose: r.glucose,
            trend: r.trend,
            trend_rate: r.trend_rate,
            device: DeviceInfo::parse(
                r.device_id.map(str::to_owned),
                r.serial_number.map(str::to_owned),
                r.transmitter_id.map(str::to_owned),
            )
            .map_err(|_| self.corrupt("device"))?,
            reading_type: r.reading_type,
            source: Source::parse(r.source).map_err(|_| self.corrupt("source"))?,
            source_record_id: r.source_record_id.map(str::to_owned),
            display_offset_minutes: r.display_offset_minutes,
        };
        Ok(StoredReading {
            reading,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

pub fn millis(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

/// Executes `stmt` with a reading bound as `?1..?16` in `COLUMNS` order. The
/// INSERT uses all sixteen; the UPDATE that replaces a row's content uses the same
/// numbering (and leaves `?15` created_at unreferenced), so the two statements
/// cannot drift apart.
pub fn execute(
    stmt: &mut Statement<'_>,
    r: &Reading,
    version: u32,
    created_at_ms: i64,
    updated_at_ms: i64,
) -> rusqlite::Result<usize> {
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
        version,
        created_at_ms,
        updated_at_ms,
    ])
}
