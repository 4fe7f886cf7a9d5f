//! Daily aggregates in the aux table. Day marks: pk `DAYMARK#<user>`, sk the
//! UTC date (`YYYY-MM-DD`), `revision` raised with `ADD` inside the readings'
//! `TransactWriteItems` (`readings.rs`). Rows: pk `DAILY#<user>`, sk the local
//! date. A user's marks or rows of a date range are one Query each.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use chrono::NaiveDate;
use futures_util::stream::{self, TryStreamExt};

use super::item::{n, s, sdk_error, Changes, Fields, Item};
use super::DynamoStore;
use crate::domain::{target_from_parts, TimeZoneName, UserId};
use crate::records::daily::{DailyRow, DayBasis, GlucoseFigures, JournalFigures};
use crate::store::{DailyStore, StoreError};

const DATE: &str = "%Y-%m-%d";

/// Row updates in flight at once in `put_daily_rows`.
const PARALLEL_ROW_UPDATES: usize = 16;

fn mark_key(user: &str, date: NaiveDate) -> Item {
    Item::from([
        ("pk".to_owned(), s(format!("DAYMARK#{user}"))),
        ("sk".to_owned(), s(date.format(DATE).to_string())),
    ])
}

fn row_key(user: &UserId, date: NaiveDate) -> Item {
    Item::from([
        ("pk".to_owned(), s(format!("DAILY#{}", user.as_str()))),
        ("sk".to_owned(), s(date.format(DATE).to_string())),
    ])
}

/// The transaction item that adds one to the mark of (user, UTC date).
pub(super) fn bump_mark(
    table: &str,
    user: &str,
    date: NaiveDate,
) -> Result<TransactWriteItem, StoreError> {
    let update = Update::builder()
        .table_name(table)
        .set_key(Some(mark_key(user, date)))
        .update_expression("ADD revision :one")
        .expression_attribute_values(":one", n(1))
        .build()
        .map_err(|e| StoreError::Internal(format!("day mark update: {e}")))?;
    Ok(TransactWriteItem::builder().update(update).build())
}

fn date_of(f: &Fields<'_>, name: &str) -> Result<NaiveDate, StoreError> {
    let raw = f.s(name)?;
    NaiveDate::parse_from_str(raw, DATE).map_err(|e| f.corrupt(name, e))
}

fn read_row(item: &Item) -> Result<DailyRow, StoreError> {
    let f = Fields::new(item, "daily row");
    let date = date_of(&f, "sk")?;
    let tz = f.s("timezone")?;
    let readings = f.i64("readings")?;
    let glucose = if readings == 0 {
        None
    } else {
        let num = |name: &str| f.opt_f64(name)?.ok_or_else(|| f.corrupt(name, "missing"));
        Some(GlucoseFigures {
            readings: u32::try_from(readings).map_err(|e| f.corrupt("readings", e))?,
            avg_glucose: num("avg_glucose")?,
            min_glucose: num("min_glucose")?,
            max_glucose: num("max_glucose")?,
            std_glucose: f.opt_f64("std_glucose")?,
            time_in_range_percent: num("time_in_range_percent")?,
            time_above_range_percent: num("time_above_range_percent")?,
            time_below_range_percent: num("time_below_range_percent")?,
        })
    };
    Ok(DailyRow {
        date,
        basis: DayBasis {
            timezone: TimeZoneName::parse("timezone", tz).map_err(|e| f.corrupt("timezone", e))?,
            target: target_from_parts(f.i64("target_low")?, f.i64("target_high")?)
                .map_err(|e| f.corrupt("target", e))?,
        },
        marks_revision: f.i64("marks_revision")?,
        glucose,
        journal: JournalFigures {
            total_sleep_minutes: f.opt_f64("total_sleep_minutes")?,
            sleep_quality_score: f.opt_f64("sleep_quality_score")?,
            total_exercise_minutes: f.opt_f64("total_exercise_minutes")?,
            total_carbs_grams: f.opt_f64("total_carbs_grams")?,
            total_calories: f.opt_f64("total_calories")?,
        },
    })
}

impl DynamoStore {
    /// Every item of partition `pk` with a date sort key in `[from, until)`.
    async fn query_dates(
        &self,
        pk: String,
        from: NaiveDate,
        until: NaiveDate,
    ) -> Result<Vec<Item>, StoreError> {
        let Some(last) = until.pred_opt().filter(|last| *last >= from) else {
            return Ok(Vec::new());
        };
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client()
                .query()
                .table_name(&self.tables().aux)
                .key_condition_expression("pk = :p AND sk BETWEEN :from AND :last")
                .expression_attribute_values(":p", s(pk.clone()))
                .expression_attribute_values(":from", s(from.format(DATE).to_string()))
                .expression_attribute_values(":last", s(last.format(DATE).to_string()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query daily", e))?;
            items.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(items),
            }
        }
    }

    /// One row, by an update, so that the journal's attributes stay as they are.
    async fn put_daily_row(&self, user: &UserId, row: DailyRow) -> Result<(), StoreError> {
        let g = row.glucose;
        let num = |v: Option<f64>| v.map(n);
        let changes = Changes::default()
            .set("timezone", s(row.basis.timezone.name()))
            .set("target_low", n(row.basis.target.low()))
            .set("target_high", n(row.basis.target.high()))
            .set("marks_revision", n(row.marks_revision))
            .set("readings", n(g.map_or(0, |g| g.readings)))
            .set_opt("avg_glucose", num(g.map(|g| g.avg_glucose)))
            .set_opt("min_glucose", num(g.map(|g| g.min_glucose)))
            .set_opt("max_glucose", num(g.map(|g| g.max_glucose)))
            .set_opt("std_glucose", num(g.and_then(|g| g.std_glucose)))
            .set_opt(
                "time_in_range_percent",
                num(g.map(|g| g.time_in_range_percent)),
            )
            .set_opt(
                "time_above_range_percent",
                num(g.map(|g| g.time_above_range_percent)),
            )
            .set_opt(
                "time_below_range_percent",
                num(g.map(|g| g.time_below_range_percent)),
            )
            .set("computed_at_ms", n(chrono::Utc::now().timestamp_millis()));
        self.update_if(
            &self.tables().aux,
            row_key(user, row.date),
            changes,
            Default::default(),
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl DailyStore for DynamoStore {
    async fn day_marks(
        &self,
        user: &UserId,
        from: NaiveDate,
        until: NaiveDate,
    ) -> Result<Vec<(NaiveDate, i64)>, StoreError> {
        let items = self
            .query_dates(format!("DAYMARK#{}", user.as_str()), from, until)
            .await?;
        items
            .iter()
            .map(|item| {
                let f = Fields::new(item, "day mark");
                Ok((date_of(&f, "sk")?, f.i64("revision")?))
            })
            .collect()
    }

    async fn daily_rows(
        &self,
        user: &UserId,
        from: NaiveDate,
        until: NaiveDate,
    ) -> Result<Vec<DailyRow>, StoreError> {
        let items = self
            .query_dates(format!("DAILY#{}", user.as_str()), from, until)
            .await?;
        items.iter().map(read_row).collect()
    }

    async fn put_daily_rows(&self, user: &UserId, rows: Vec<DailyRow>) -> Result<(), StoreError> {
        // Rows are independent items: a window of new days (a year is 366) costs
        // the round trips of 1/PARALLEL_ROW_UPDATES of them, not all of them.
        stream::iter(rows.into_iter().map(Ok))
            .try_for_each_concurrent(PARALLEL_ROW_UPDATES, |row| self.put_daily_row(user, row))
            .await
    }
}
