//! PostgreSQL side of daily aggregates: `day_marks` (bumped by the reading
//! upsert in its transaction, `readings.rs`) and `daily_aggregates`.

use async_trait::async_trait;
use chrono::NaiveDate;
use sqlx::postgres::{PgBindIterExt, PgRow};
use sqlx::PgConnection;

use super::{col, db_error, PostgresStore};
use crate::domain::{target_from_parts, TimeZoneName, UserId};
use crate::records::daily::{DailyRow, DayBasis, GlucoseFigures, JournalFigures};
use crate::store::{DailyStore, StoreError};

/// Adds one to the revision of each (user, UTC date) of `marks`, in the
/// upsert's transaction. Sorted and deduplicated here, so that every batch
/// locks mark rows in one order.
pub(super) async fn bump_marks(
    tx: &mut PgConnection,
    mut marks: Vec<(&str, NaiveDate)>,
) -> Result<(), StoreError> {
    if marks.is_empty() {
        return Ok(());
    }
    marks.sort_unstable();
    marks.dedup();
    sqlx::query(
        "INSERT INTO day_marks (user_id, day, revision) \
         SELECT u, d, 1 FROM UNNEST($1::text[], $2::date[]) AS m(u, d) ORDER BY u, d \
         ON CONFLICT (user_id, day) DO UPDATE SET revision = day_marks.revision + 1",
    )
    .bind(marks.iter().map(|(u, _)| *u).bind_iter())
    .bind(marks.iter().map(|(_, d)| *d).bind_iter())
    .execute(tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// A user's rows of `[$2, $3)`, in `read_row`'s column order.
const ROWS: &str = "SELECT day, timezone, target_low, target_high, marks_revision, readings, \
     avg_glucose, min_glucose, max_glucose, std_glucose, time_in_range_percent, \
     time_above_range_percent, time_below_range_percent, total_sleep_minutes, \
     sleep_quality_score, total_exercise_minutes, total_carbs_grams, total_calories \
     FROM daily_aggregates WHERE user_id = $1 AND day >= $2 AND day < $3 ORDER BY day";

fn read_row(row: &PgRow) -> Result<DailyRow, StoreError> {
    let date: NaiveDate = col(row, 0)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("daily row {date}: {what}"));
    let tz: &str = col(row, 1)?;
    let (low, high): (i16, i16) = (col(row, 2)?, col(row, 3)?);
    let readings: i32 = col(row, 5)?;
    let f = |i: usize| col::<Option<f64>>(row, i);
    let glucose = match (readings, [f(6)?, f(7)?, f(8)?, f(10)?, f(11)?, f(12)?]) {
        (0, _) => None,
        (n, [Some(avg), Some(min), Some(max), Some(tir), Some(tar), Some(tbr)]) => {
            Some(GlucoseFigures {
                readings: u32::try_from(n).map_err(|_| corrupt("readings"))?,
                avg_glucose: avg,
                min_glucose: min,
                max_glucose: max,
                std_glucose: f(9)?,
                time_in_range_percent: tir,
                time_above_range_percent: tar,
                time_below_range_percent: tbr,
            })
        }
        _ => return Err(corrupt("missing figures")),
    };
    Ok(DailyRow {
        date,
        basis: DayBasis {
            timezone: TimeZoneName::parse("timezone", tz).map_err(|_| corrupt("timezone"))?,
            target: target_from_parts(low.into(), high.into()).map_err(|e| corrupt(&e))?,
        },
        marks_revision: col(row, 4)?,
        glucose,
        journal: JournalFigures {
            total_sleep_minutes: f(13)?,
            sleep_quality_score: f(14)?,
            total_exercise_minutes: f(15)?,
            total_carbs_grams: f(16)?,
            total_calories: f(17)?,
        },
    })
}

#[async_trait]
impl DailyStore for PostgresStore {
    async fn day_marks(
        &self,
        user: &UserId,
        from: NaiveDate,
        until: NaiveDate,
    ) -> Result<Vec<(NaiveDate, i64)>, StoreError> {
        sqlx::query_as(
            "SELECT day, revision FROM day_marks WHERE user_id = $1 AND day >= $2 AND day < $3",
        )
        .bind(user.as_str())
        .bind(from)
        .bind(until)
        .fetch_all(self.pool())
        .await
        .map_err(db_error)
    }

    async fn daily_rows(
        &self,
        user: &UserId,
        from: NaiveDate,
        until: NaiveDate,
    ) -> Result<Vec<DailyRow>, StoreError> {
        let rows = sqlx::query(ROWS)
            .bind(user.as_str())
            .bind(from)
            .bind(until)
            .fetch_all(self.pool())
            .await
            .map_err(db_error)?;
        rows.iter().map(read_row).collect()
    }

    async fn put_daily_rows(&self, user: &UserId, rows: Vec<DailyRow>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let g = || rows.iter().map(|r| r.glucose);
        sqlx::query(
            "INSERT INTO daily_aggregates (user_id, day, timezone, target_low, target_high, \
             marks_revision, readings, avg_glucose, min_glucose, max_glucose, std_glucose, \
             time_in_range_percent, time_above_range_percent, time_below_range_percent, \
             computed_at) \
             SELECT $1, r.*, now() FROM UNNEST($2::date[], $3::text[], $4::int2[], $5::int2[], \
             $6::int8[], $7::int4[], $8::float8[], $9::float8[], $10::float8[], $11::float8[], \
             $12::float8[], $13::float8[], $14::float8[]) AS r \
             ON CONFLICT (user_id, day) DO UPDATE SET timezone = excluded.timezone, \
             target_low = excluded.target_low, target_high = excluded.target_high, \
             marks_revision = excluded.marks_revision, readings = excluded.readings, \
             avg_glucose = excluded.avg_glucose, min_glucose = excluded.min_glucose, \
             max_glucose = excluded.max_glucose, std_glucose = excluded.std_glucose, \
             time_in_range_percent = excluded.time_in_range_percent, \
             time_above_range_percent = excluded.time_above_range_percent, \
             time_below_range_percent = excluded.time_below_range_percent, \
             computed_at = excluded.computed_at",
        )
        .bind(user.as_str())
        .bind(rows.iter().map(|r| r.date).bind_iter())
        .bind(rows.iter().map(|r| r.basis.timezone.name()).bind_iter())
        .bind(rows.iter().map(|r| r.basis.target.low() as i16).bind_iter())
        .bind(
            rows.iter()
                .map(|r| r.basis.target.high() as i16)
                .bind_iter(),
        )
        .bind(rows.iter().map(|r| r.marks_revision).bind_iter())
        .bind(g().map(|g| g.map_or(0, |g| g.readings as i32)).bind_iter())
        .bind(g().map(|g| g.map(|g| g.avg_glucose)).bind_iter())
        .bind(g().map(|g| g.map(|g| g.min_glucose)).bind_iter())
        .bind(g().map(|g| g.map(|g| g.max_glucose)).bind_iter())
        .bind(g().map(|g| g.and_then(|g| g.std_glucose)).bind_iter())
        .bind(g().map(|g| g.map(|g| g.time_in_range_percent)).bind_iter())
        .bind(
            g().map(|g| g.map(|g| g.time_above_range_percent))
                .bind_iter(),
        )
        .bind(
            g().map(|g| g.map(|g| g.time_below_range_percent))
                .bind_iter(),
        )
        .execute(self.pool())
        .await
        .map_err(db_error)?;
        Ok(())
    }
}
