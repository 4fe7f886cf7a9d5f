//! SQLite side of daily aggregates: `day_marks` (bumped by the reading upsert,
//! `readings.rs`) and `daily_aggregates`, both keyed (user, days since 1970).

use async_trait::async_trait;
use chrono::NaiveDate;
use rusqlite::{params, Row, Transaction};

use super::{internal, SqliteStore};
use crate::domain::{target_from_parts, TimeZoneName, UserId};
use crate::records::daily::{DailyRow, DayBasis, GlucoseFigures, JournalFigures};
use crate::store::{DailyStore, StoreError};

const EPOCH: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date");

/// A date as the day number these tables keep.
pub(super) fn day_number(date: NaiveDate) -> i64 {
    (date - EPOCH).num_days()
}

fn date_of(day: i64) -> Result<NaiveDate, StoreError> {
    EPOCH
        .checked_add_signed(chrono::Duration::days(day))
        .ok_or_else(|| StoreError::Corrupt(format!("day number {day} out of range")))
}

/// Adds one to the revision of each (user, UTC day number) in `marks`, in the
/// upsert's transaction.
pub(super) fn bump_marks<'a>(
    tx: &Transaction<'_>,
    marks: impl IntoIterator<Item = (&'a str, i64)>,
) -> Result<(), StoreError> {
    let mut bump = tx
        .prepare_cached(
            "INSERT INTO day_marks (user_id, day, revision) VALUES (?1, ?2, 1) \
             ON CONFLICT (user_id, day) DO UPDATE SET revision = revision + 1",
        )
        .map_err(internal)?;
    for (user, day) in marks {
        bump.execute((user, day)).map_err(internal)?;
    }
    Ok(())
}

const ROW_COLUMNS: &str = "day, timezone, target_low, target_high, marks_revision, readings, \
     avg_glucose, min_glucose, max_glucose, std_glucose, time_in_range_percent, \
     time_above_range_percent, time_below_range_percent, total_sleep_minutes, \
     sleep_quality_score, total_exercise_minutes, total_carbs_grams, total_calories";

fn read_row(row: &Row<'_>) -> rusqlite::Result<Result<DailyRow, StoreError>> {
    let day: i64 = row.get(0)?;
    let tz: String = row.get(1)?;
    let (low, high): (i64, i64) = (row.get(2)?, row.get(3)?);
    let marks_revision: i64 = row.get(4)?;
    let readings: i64 = row.get(5)?;
    let f = |i: usize| row.get::<_, Option<f64>>(i);
    let figures = [f(6)?, f(7)?, f(8)?, f(10)?, f(11)?, f(12)?];
    let std_glucose = f(9)?;
    let journal = JournalFigures {
        total_sleep_minutes: f(13)?,
        sleep_quality_score: f(14)?,
        total_exercise_minutes: f(15)?,
        total_carbs_grams: f(16)?,
        total_calories: f(17)?,
    };
    Ok((|| {
        let corrupt = |what: &str| StoreError::Corrupt(format!("daily row {day}: {what}"));
        let glucose = match (readings, figures) {
            (0, _) => None,
            (n, [Some(avg), Some(min), Some(max), Some(tir), Some(tar), Some(tbr)]) => {
                Some(GlucoseFigures {
                    readings: u32::try_from(n).map_err(|_| corrupt("readings"))?,
                    avg_glucose: avg,
                    min_glucose: min,
                    max_glucose: max,
                    std_glucose,
                    time_in_range_percent: tir,
                    time_above_range_percent: tar,
                    time_below_range_percent: tbr,
                })
            }
            _ => return Err(corrupt("missing figures")),
        };
        Ok(DailyRow {
            date: date_of(day)?,
            basis: DayBasis {
                timezone: TimeZoneName::parse("timezone", &tz).map_err(|_| corrupt("timezone"))?,
                target: target_from_parts(low, high).map_err(|e| corrupt(&e))?,
            },
            marks_revision,
            glucose,
            journal,
        })
    })())
}

#[async_trait]
impl DailyStore for SqliteStore {
    async fn day_marks(
        &self,
        user: &UserId,
        from: NaiveDate,
        until: NaiveDate,
    ) -> Result<Vec<(NaiveDate, i64)>, StoreError> {
        let user = user.clone();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT day, revision FROM day_marks \
                     WHERE user_id = ?1 AND day >= ?2 AND day < ?3",
                )
                .map_err(internal)?;
            let rows = stmt
                .query_map((user.as_str(), day_number(from), day_number(until)), |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(internal)?;
            let mut out = Vec::new();
            for row in rows {
                let (day, revision) = row.map_err(internal)?;
                out.push((date_of(day)?, revision));
            }
            Ok(out)
        })
        .await
    }

    async fn daily_rows(
        &self,
        user: &UserId,
        from: NaiveDate,
        until: NaiveDate,
    ) -> Result<Vec<DailyRow>, StoreError> {
        let user = user.clone();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {ROW_COLUMNS} FROM daily_aggregates \
                     WHERE user_id = ?1 AND day >= ?2 AND day < ?3 ORDER BY day"
                ))
                .map_err(internal)?;
            let rows = stmt
                .query_map(
                    (user.as_str(), day_number(from), day_number(until)),
                    read_row,
                )
                .map_err(internal)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row.map_err(internal)??);
            }
            Ok(out)
        })
        .await
    }

    async fn put_daily_rows(&self, user: &UserId, rows: Vec<DailyRow>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let user = user.clone();
        self.write(move |conn| {
            let now = chrono::Utc::now().timestamp_millis();
            let tx = conn.transaction().map_err(internal)?;
            {
                let mut put = tx
                    .prepare_cached(
                        "INSERT INTO daily_aggregates (user_id, day, timezone, target_low, \
                         target_high, marks_revision, readings, avg_glucose, min_glucose, \
                         max_glucose, std_glucose, time_in_range_percent, \
                         time_above_range_percent, time_below_range_percent, computed_at_ms) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
                         ON CONFLICT (user_id, day) DO UPDATE SET timezone = excluded.timezone, \
                         target_low = excluded.target_low, target_high = excluded.target_high, \
                         marks_revision = excluded.marks_revision, readings = excluded.readings, \
                         avg_glucose = excluded.avg_glucose, min_glucose = excluded.min_glucose, \
                         max_glucose = excluded.max_glucose, std_glucose = excluded.std_glucose, \
                         time_in_range_percent = excluded.time_in_range_percent, \
                         time_above_range_percent = excluded.time_above_range_percent, \
                         time_below_range_percent = excluded.time_below_range_percent, \
                         computed_at_ms = excluded.computed_at_ms",
                    )
                    .map_err(internal)?;
                for row in &rows {
                    let g = row.glucose.as_ref();
                    put.execute(params![
                        user.as_str(),
                        day_number(row.date),
                        row.basis.timezone.name(),
                        row.basis.target.low(),
                        row.basis.target.high(),
                        row.marks_revision,
                        g.map_or(0, |g| g.readings),
                        g.map(|g| g.avg_glucose),
                        g.map(|g| g.min_glucose),
                        g.map(|g| g.max_glucose),
                        g.and_then(|g| g.std_glucose),
                        g.map(|g| g.time_in_range_percent),
                        g.map(|g| g.time_above_range_percent),
                        g.map(|g| g.time_below_range_percent),
                        now,
                    ])
                    .map_err(internal)?;
                }
            }
            tx.commit().map_err(internal)
        })
        .await
    }
}
