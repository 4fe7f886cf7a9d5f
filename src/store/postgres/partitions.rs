//! Monthly range partitions of `readings`, made ahead of the writes that need
//! them, so that a month's readings sit in a table of their own (cheap range
//! scans, and old months can be detached or dropped whole).
//!
//! At start-up the store makes the partitions of the last month through
//! `AHEAD` months ahead, plus the months of any rows waiting in the DEFAULT
//! partition. Before each write it makes those of the batch's months it has not
//! seen yet. Making one is best effort: when it fails the write still succeeds,
//! its rows going to the DEFAULT partition, and the next start-up moves them.
//!
//! Nothing here runs when `readings` is a TimescaleDB hypertable.

use std::collections::HashSet;
use std::sync::Mutex;

use chrono::{DateTime, Datelike, Months, TimeZone, Utc};
use sqlx::{AssertSqlSafe, PgPool};

use super::{advisory_lock, col, db_error};
use crate::store::StoreError;

/// Months made ahead of now at start-up.
const AHEAD: u32 = 3;
/// Months further from now than these get no partition of their own (a bad
/// clock must not create hundreds of tables); their rows stay in DEFAULT.
const OLDEST_YEARS_BACK: u32 = 30;
const NEWEST_MONTHS_AHEAD: u32 = 12;

/// A calendar month in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Month {
    year: i32,
    /// 1-12
    month: u32,
}

impl Month {
    pub(super) fn of(t: DateTime<Utc>) -> Self {
        Self {
            year: t.year(),
            month: t.month(),
        }
    }

    fn start(self) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(self.year, self.month, 1, 0, 0, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// `readings_2026_03`
    fn table(self) -> String {
        format!("readings_{:04}_{:02}", self.year, self.month)
    }

    fn parse_table(name: &str) -> Option<Self> {
        let rest = name.strip_prefix("readings_")?;
        let (year, month) = rest.split_once('_')?;
        let month = Self {
            year: year.parse().ok()?,
            month: month.parse().ok()?,
        };
        (month.table() == name).then_some(month)
    }

    /// Whether the month gets a partition of its own at `now`.
    fn in_horizon(self, now: DateTime<Utc>) -> bool {
        let oldest = now
            .checked_sub_months(Months::new(OLDEST_YEARS_BACK * 12))
            .map_or(Month { year: 1, month: 1 }, Month::of);
        let newest = now
            .checked_add_months(Months::new(NEWEST_MONTHS_AHEAD))
            .map_or(Month::of(now), Month::of);
        // Four-digit years only: partition names and bounds are written with them.
        (oldest..=newest).contains(&self) && (1..=9999).contains(&self.year)
    }
}

/// The partition upkeep of one store.
pub(super) struct Partitions {
    /// False when `readings` is not natively partitioned (a hypertable).
    managed: bool,
    /// Months known to have a partition, or given up on until the next start.
    settled: Mutex<HashSet<Month>>,
}

impl Partitions {
    /// Finds the existing partitions and makes the ones start-up wants.
    pub(super) async fn load(pool: &PgPool, now: DateTime<Utc>) -> Result<Self, StoreError> {
        let managed: bool = sqlx::query_scalar(
            "SELECT COALESCE((SELECT relkind = 'p' FROM pg_class \
             WHERE oid = to_regclass('readings')), false)",
        )
        .fetch_one(pool)
        .await
        .map_err(db_error)?;
        if !managed {
            return Ok(Self {
                managed,
                settled: Mutex::new(HashSet::new()),
            });
        }
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = to_regclass('readings')",
        )
        .fetch_all(pool)
        .await
        .map_err(db_error)?;
        let partitions = Self {
            managed,
            settled: Mutex::new(names.iter().filter_map(|n| Month::parse_table(n)).collect()),
        };
        // The months around now, and those of rows that went to DEFAULT.
        let mut wanted: Vec<Month> = Vec::new();
        let mut month = Month::of(now.checked_sub_months(Months::new(1)).unwrap_or(now));
        for _ in 0..=AHEAD + 1 {
            wanted.push(month);
            month = month.next();
        }
        let waiting: Vec<DateTime<Utc>> =
            sqlx::query("SELECT DISTINCT date_trunc('month', ts, 'UTC') FROM readings_default")
                .fetch_all(pool)
                .await
                .map_err(db_error)?
                .iter()
                .map(|row| col(row, 0))
                .collect::<Result<_, _>>()?;
        wanted.extend(waiting.into_iter().map(Month::of));
        partitions.ensure(pool, wanted, now).await?;
        Ok(partitions)
    }

    /// Makes the partitions of `months` that do not exist yet. Fails only when
    /// the database is unavailable; any other failure is logged, and the
    /// month's rows go to DEFAULT meanwhile.
    pub(super) async fn ensure(
        &self,
        pool: &PgPool,
        months: impl IntoIterator<Item = Month>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if !self.managed {
            return Ok(());
        }
        let missing: Vec<Month> = {
            let settled = self.settled.lock().unwrap_or_else(|p| p.into_inner());
            let mut missing: Vec<Month> = months
                .into_iter()
                .filter(|m| !settled.contains(m) && m.in_horizon(now))
                .collect();
            missing.sort_unstable();
            missing.dedup();
            missing
        };
        for month in missing {
            match create(pool, month).await {
                Ok(()) => {}
                Err(e @ StoreError::Unavailable(_)) => return Err(e),
                Err(e) => tracing::warn!(
                    partition = month.table(),
                    error = %e,
                    "cannot create a readings partition; its rows go to readings_default \
                     until the next start"
                ),
            }
            self.settled
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(month);
        }
        Ok(())
    }
}

/// Creates `month`'s partition unless it exists, moving any of its rows out of
/// DEFAULT. The table is made apart and then attached, which locks `readings`
/// only against other schema changes (not reads and writes); DEFAULT is locked
/// for the moment of the move, so no row can land there meanwhile.
async fn create(pool: &PgPool, month: Month) -> Result<(), StoreError> {
    let table = month.table();
    let mut tx = pool.begin().await.map_err(db_error)?;
    advisory_lock(&mut tx, "cgm-hub readings partitions", "").await?;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(&table)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
    if exists {
        return tx.commit().await.map_err(db_error);
    }
    // Bounds and name come from `Month`, never from input.
    let from = month.start().format("%Y-%m-%d 00:00:00+00");
    let to = month.next().start().format("%Y-%m-%d 00:00:00+00");
    let columns = super::readings::COLUMNS;
    let steps = [
        format!("CREATE TABLE {table} (LIKE readings INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"),
        "LOCK TABLE readings_default IN ACCESS EXCLUSIVE MODE".to_owned(),
        format!(
            "WITH moved AS (DELETE FROM readings_default WHERE ts >= '{from}' AND ts < '{to}' \
             RETURNING {columns}) INSERT INTO {table} ({columns}) SELECT {columns} FROM moved"
        ),
        format!(
            "ALTER TABLE readings ATTACH PARTITION {table} FOR VALUES FROM ('{from}') TO ('{to}')"
        ),
    ];
    for step in steps {
        sqlx::raw_sql(AssertSqlSafe(step))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
    }
    tx.commit().await.map_err(db_error)?;
    tracing::info!(partition = table, "created readings partition");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_name_their_tables_and_roll_over_the_year() {
        let dec = Month::of(Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap());
        assert_eq!(dec.table(), "readings_2026_12");
        assert_eq!(dec.next().table(), "readings_2027_01");
        assert_eq!(
            dec.next().start(),
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(Month::parse_table("readings_2026_12"), Some(dec));
        assert_eq!(Month::parse_table("readings_default"), None);
        assert_eq!(Month::parse_table("readings_2026_1"), None);
    }

    #[test]
    fn only_months_near_now_get_partitions() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let month = |y, m| Month { year: y, month: m };
        assert!(month(2026, 11).in_horizon(now));
        assert!(month(1996, 11).in_horizon(now));
        assert!(!month(1996, 10).in_horizon(now));
        assert!(month(2027, 11).in_horizon(now));
        assert!(!month(2027, 12).in_horizon(now));
    }
}
