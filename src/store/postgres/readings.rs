//! Readings: the batch upsert (dedup key, conflict rule, outbox events in one
//! transaction), the latest reading and the keyset scan.
//!
//! The latest reading: `latest_readings` holds each user's newest reading time,
//! raised by the upsert in its transaction (after every reading lock, users in
//! sorted order), so `latest` is a primary-key lookup and one partition's row.
//!
//! A batch is settled in Rust with `Reading::resolve_against`, the one place
//! the conflict rule lives, and written with array parameters (`UNNEST`): one
//! INSERT for the (user, time) keys that are new, one locking SELECT for those
//! that are stored, one UPDATE for those that change, one INSERT of outbox
//! events, whatever the batch's size.
//!
//! Concurrent batches: the INSERT skips keys another transaction holds (it waits
//! for that one to end first), and the SELECT then locks them `FOR UPDATE`, so
//! each key is settled against what is committed and nobody changes it until
//! this batch commits. Both take keys in one fixed order, which keeps two
//! batches from waiting on each other in a cycle.

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::postgres::{PgArguments, PgBindIterExt, PgRow};
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres};

use super::partitions::Month;
use super::{col, db_error, ms, PostgresStore};
use crate::domain::{
    DeviceInfo, Glucose, MgDl, Reading, ReadingTime, ReadingType, Resolution, SensorStatus, Source,
    StoredReading, Trend, TrendRate, UserId,
};
use crate::records::events::Event;
use crate::records::readings::{DuplicateKind, Outcome, Upserted};
use crate::store::ReadingStore;
use crate::store::{Order, Scan, StoreError};
use async_trait::async_trait;

/// The columns of `readings`, in the order every statement here reads and
/// writes them (a macro, so that the statements are static strings).
macro_rules! columns {
    () => {
        "user_id, ts, glucose_mg_dl, status, trend, trend_rate, reading_type, source, \
         device_id, serial_number, transmitter_id, source_record_id, display_offset_minutes, \
         version, created_at, updated_at"
    };
}

/// A reading's content columns as arrays: `$1..$14` of the INSERT and UPDATE
/// (bound by `bind_content`).
macro_rules! content {
    () => {
        "UNNEST($1::text[], $2::timestamptz[], $3::int2[], $4::text[], $5::text[], \
         $6::float8[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
         $12::text[], $13::int2[], $14::int8[]) AS u(user_id, ts, glucose_mg_dl, status, \
         trend, trend_rate, reading_type, source, device_id, serial_number, transmitter_id, \
         source_record_id, display_offset_minutes, version)"
    };
}

pub(super) const COLUMNS: &str = columns!();

/// New keys' rows, created and updated at `$15`; keys stored already (or being
/// stored by another transaction, which it waits for) are skipped.
const INSERT_NEW: &str = concat!(
    "INSERT INTO readings (",
    columns!(),
    ") SELECT u.*, $15, $15 FROM ",
    content!(),
    " ON CONFLICT (user_id, ts) DO NOTHING RETURNING user_id, ts"
);

/// Stored rows of the keys `$1`/`$2`, locked in the arrays' order.
const LOCK_STORED: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM readings JOIN UNNEST($1::text[], $2::timestamptz[]) WITH ORDINALITY \
     AS k(key_user, key_ts, key_order) ON user_id = key_user AND ts = key_ts \
     ORDER BY key_order FOR UPDATE OF readings"
);

/// New content for stored rows, updated at `$15`.
const UPDATE_STORED: &str = concat!(
    "UPDATE readings AS r SET glucose_mg_dl = u.glucose_mg_dl, status = u.status, \
     trend = u.trend, trend_rate = u.trend_rate, reading_type = u.reading_type, \
     source = u.source, device_id = u.device_id, serial_number = u.serial_number, \
     transmitter_id = u.transmitter_id, source_record_id = u.source_record_id, \
     display_offset_minutes = u.display_offset_minutes, version = u.version, \
     updated_at = $15 FROM ",
    content!(),
    " WHERE r.user_id = u.user_id AND r.ts = u.ts"
);

const LATEST: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM readings WHERE user_id = $1 \
     AND ts = (SELECT ts FROM latest_readings WHERE user_id = $1)"
);

/// Raises users' newest reading times (`$1` users, sorted; `$2` their newest
/// inserted times).
const RAISE_LATEST: &str = "INSERT INTO latest_readings (user_id, ts) \
     SELECT * FROM UNNEST($1::text[], $2::timestamptz[]) \
     ON CONFLICT (user_id) DO UPDATE SET ts = GREATEST(latest_readings.ts, EXCLUDED.ts)";
const SCAN_ASC: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM readings WHERE user_id = $1 AND ts >= $2 AND ts < $3 ORDER BY ts ASC LIMIT $4"
);
const SCAN_DESC: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM readings WHERE user_id = $1 AND ts >= $2 AND ts < $3 ORDER BY ts DESC LIMIT $4"
);

/// Reading times this backend stores: years 1 to 9999, which PostgreSQL's
/// timestamptz, partition names and RFC 3339 all hold.
const STORABLE_FROM: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z
const STORABLE_UNTIL: i64 = 253_402_300_800; // 10000-01-01T00:00:00Z

/// Rounds of insert-then-lock before a batch gives up: a key skipped by the
/// INSERT is found by the SELECT unless it was deleted in between.
const MAX_ROUNDS: usize = 3;

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// One (user, time) of a batch and its readings' positions, in batch order.
struct Key<'a> {
    user: &'a str,
    ts: i64,
    inputs: Vec<usize>,
}

/// A batch's distinct keys, sorted: the order in which every batch locks them.
fn keys(readings: &[Reading]) -> Vec<Key<'_>> {
    let mut index: HashMap<(&str, i64), usize> = HashMap::with_capacity(readings.len());
    let mut keys: Vec<Key<'_>> = Vec::with_capacity(readings.len());
    for (i, r) in readings.iter().enumerate() {
        let key = (r.user_id.as_str(), r.timestamp.unix_seconds());
        let k = *index.entry(key).or_insert_with(|| {
            keys.push(Key {
                user: key.0,
                ts: key.1,
                inputs: Vec::new(),
            });
            keys.len() - 1
        });
        keys[k].inputs.push(i);
    }
    keys.sort_unstable_by(|a, b| (a.user, a.ts).cmp(&(b.user, b.ts)));
    keys
}

/// The row a key ends up with: `readings[input]` at `version`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Write {
    input: usize,
    version: u32,
}

/// What one key's readings did, in batch order, and the row to write (None
/// when every one was a duplicate).
#[derive(Debug, PartialEq)]
struct Settled {
    outcomes: Vec<(usize, Upserted)>,
    write: Option<Write>,
}

/// Applies a key's readings in batch order to what is stored (None: nothing),
/// exactly as if each were upserted alone. `now` is the batch's write time.
fn settle(
    stored: Option<&StoredReading>,
    inputs: &[usize],
    readings: &[Reading],
    now: DateTime<Utc>,
) -> Settled {
    // The key's current row as the batch goes: reading, version, updated_at.
    let mut current = stored.map(|s| (&s.reading, s.version, s.updated_at));
    let mut write = None;
    let mut outcomes = Vec::with_capacity(inputs.len());
    for &i in inputs {
        let incoming = &readings[i];
        let (outcome, version, updated_at) = match current {
            None => (Outcome::Inserted, 1, now),
            Some((held, version, updated_at)) => match incoming.resolve_against(held) {
                Resolution::Identical => (
                    Outcome::Duplicate(DuplicateKind::Identical),
                    version,
                    updated_at,
                ),
                Resolution::KeepExisting => (
                    Outcome::Duplicate(DuplicateKind::SensorPrecedence),
                    version,
                    updated_at,
                ),
                Resolution::Replace => (Outcome::Updated, version + 1, now),
            },
        };
        if !matches!(outcome, Outcome::Duplicate(_)) {
            current = Some((incoming, version, updated_at));
            write = Some(Write { input: i, version });
        }
        outcomes.push((
            i,
            Upserted {
                outcome,
                version,
                updated_at,
            },
        ));
    }
    Settled { outcomes, write }
}

/// Binds rows' content as `$1..$14` (see `content!`).
fn bind_content<'q>(
    query: Query<'q, Postgres, PgArguments>,
    readings: &'q [Reading],
    rows: &'q [Write],
) -> Query<'q, Postgres, PgArguments> {
    let each = move || rows.iter().map(move |w| &readings[w.input]);
    query
        .bind(each().map(|r| r.user_id.as_str()).bind_iter())
        .bind(each().map(|r| r.timestamp.as_datetime()).bind_iter())
        .bind(each().map(|r| r.glucose.mg_dl().get() as i16).bind_iter())
        .bind(
            each()
                .map(|r| r.glucose.status().map(SensorStatus::as_str))
                .bind_iter(),
        )
        .bind(each().map(|r| r.trend.map(Trend::as_str)).bind_iter())
        .bind(each().map(|r| r.trend_rate.map(TrendRate::get)).bind_iter())
        .bind(each().map(|r| r.reading_type.as_str()).bind_iter())
        .bind(each().map(|r| r.source.as_str()).bind_iter())
        .bind(each().map(|r| r.device.device_id()).bind_iter())
        .bind(each().map(|r| r.device.serial_number()).bind_iter())
        .bind(each().map(|r| r.device.transmitter_id()).bind_iter())
        .bind(each().map(|r| r.source_record_id.as_deref()).bind_iter())
        .bind(each().map(|r| r.display_offset_minutes).bind_iter())
        .bind(rows.iter().map(|w| i64::from(w.version)).bind_iter())
}

/// Inserts the rows whose keys are not stored; returns the keys it inserted.
/// A key stored (or being stored by another transaction, which it waits for)
/// is skipped.
async fn insert_new(
    tx: &mut PgConnection,
    readings: &[Reading],
    rows: &[Write],
    now: DateTime<Utc>,
) -> Result<Vec<(String, i64)>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let inserted = bind_content(sqlx::query(INSERT_NEW), readings, rows)
        .bind(now)
        .fetch_all(tx)
        .await
        .map_err(db_error)?;
    inserted
        .iter()
        .map(|row| {
            Ok((
                col::<String>(row, 0)?,
                col::<DateTime<Utc>>(row, 1)?.timestamp(),
            ))
        })
        .collect()
}

/// Locks the stored rows of `keys`, in the keys' order; absent keys are missing
/// from the map.
async fn lock_stored(
    tx: &mut PgConnection,
    keys: &[&Key<'_>],
) -> Result<HashMap<(String, i64), StoredReading>, StoreError> {
    let rows = sqlx::query(LOCK_STORED)
        .bind(keys.iter().map(|k| k.user).bind_iter())
        .bind(keys.iter().map(|k| at(k.ts)).bind_iter())
        .fetch_all(tx)
        .await
        .map_err(db_error)?;
    rows.iter()
        .map(|row| {
            let stored = read_row(row, None)?;
            let key = (
                stored.reading.user_id.as_str().to_owned(),
                stored.reading.timestamp.unix_seconds(),
            );
            Ok((key, stored))
        })
        .collect()
}

/// Replaces the content of stored (and locked) rows.
async fn update_stored(
    tx: &mut PgConnection,
    readings: &[Reading],
    rows: &[Write],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let updated = bind_content(sqlx::query(UPDATE_STORED), readings, rows)
        .bind(now)
        .execute(tx)
        .await
        .map_err(db_error)?
        .rows_affected();
    if updated != rows.len() as u64 {
        return Err(StoreError::Internal(format!(
            "updated {updated} of {} locked readings",
            rows.len()
        )));
    }
    Ok(())
}

/// Raises each user's newest time to the largest of its keys in `newest`
/// (the keys a batch inserted).
async fn raise_latest(
    tx: &mut PgConnection,
    mut newest: Vec<(&str, i64)>,
) -> Result<(), StoreError> {
    if newest.is_empty() {
        return Ok(());
    }
    // One row per user (an upsert may not touch a row twice), and one fixed
    // order for the row locks, as for the readings'.
    newest.sort_unstable();
    newest.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            kept.1 = kept.1.max(later.1);
        }
        same
    });
    sqlx::query(RAISE_LATEST)
        .bind(newest.iter().map(|(u, _)| *u).bind_iter())
        .bind(newest.iter().map(|(_, t)| at(*t)).bind_iter())
        .execute(tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

impl PostgresStore {
    /// What an upsert of `readings` needs before its transaction: every time
    /// storable, every month's partition there (created outside the
    /// transaction, so a partition created stays, empty, when the upsert
    /// fails). The batch's write time.
    pub(super) async fn prepare_upsert(
        &self,
        readings: &[Reading],
    ) -> Result<DateTime<Utc>, StoreError> {
        if let Some(r) = readings
            .iter()
            .find(|r| !(STORABLE_FROM..STORABLE_UNTIL).contains(&r.timestamp.unix_seconds()))
        {
            return Err(StoreError::Internal(format!(
                "reading time {} is outside years 1-9999, which this store cannot hold",
                r.timestamp.unix_seconds()
            )));
        }
        let now = ms(Utc::now());
        self.inner
            .partitions
            .ensure(
                self.pool(),
                readings
                    .iter()
                    .map(|r| Month::of(r.timestamp.as_datetime())),
                now,
            )
            .await?;
        Ok(now)
    }
}

/// The batch upsert in the caller's transaction (`prepare_upsert` first):
/// each reading's outcome in batch order, and the outbox events it wrote.
/// `upsert_readings` commits it alone, the Apple Health upload
/// (`health_upload`) with its journal entries.
pub(super) async fn upsert_in(
    tx: &mut PgConnection,
    readings: &[Reading],
    now: DateTime<Utc>,
) -> Result<(Vec<Upserted>, usize), StoreError> {
    let keys = keys(readings);
    let mut settled: Vec<Option<Settled>> = (0..keys.len()).map(|_| None).collect();
    let mut updates: Vec<Write> = Vec::new();
    // The keys this batch inserted, for `latest_readings`.
    let mut inserted_keys: Vec<(&str, i64)> = Vec::new();
    // Keys not settled yet, in lock order. Normally one round settles all:
    // the INSERT takes the new keys, the SELECT finds the others.
    let mut pending: Vec<usize> = (0..keys.len()).collect();
    for _ in 0..MAX_ROUNDS {
        if pending.is_empty() {
            break;
        }
        let fresh: Vec<Settled> = pending
            .iter()
            .map(|&k| settle(None, &keys[k].inputs, readings, now))
            .collect();
        let rows: Vec<Write> = fresh.iter().filter_map(|s| s.write).collect();
        let inserted = insert_new(&mut *tx, readings, &rows, now).await?;
        let inserted: std::collections::HashSet<(&str, i64)> =
            inserted.iter().map(|(u, t)| (u.as_str(), *t)).collect();
        let mut stored_keys = Vec::new();
        for (k, fresh) in pending.iter().copied().zip(fresh) {
            if inserted.contains(&(keys[k].user, keys[k].ts)) {
                inserted_keys.push((keys[k].user, keys[k].ts));
                settled[k] = Some(fresh);
            } else {
                stored_keys.push(k);
            }
        }
        if stored_keys.is_empty() {
            pending.clear();
            break;
        }
        let locked: Vec<&Key<'_>> = stored_keys.iter().map(|&k| &keys[k]).collect();
        let stored = lock_stored(&mut *tx, &locked).await?;
        pending.clear();
        for k in stored_keys {
            let key = &keys[k];
            match stored.get(&(key.user.to_owned(), key.ts)) {
                Some(s) => {
                    let result = settle(Some(s), &key.inputs, readings, now);
                    updates.extend(result.write);
                    settled[k] = Some(result);
                }
                // Gone between the INSERT and the SELECT: insert it next round.
                None => pending.push(k),
            }
        }
    }
    if !pending.is_empty() {
        return Err(StoreError::Unavailable(
            "readings kept changing under the batch; try again".into(),
        ));
    }
    update_stored(&mut *tx, readings, &updates, now).await?;
    // The UTC dates of every key inserted or changed, for their day marks
    // (bumped last: the mark rows are the last locks a batch takes).
    let marks: Vec<(&str, chrono::NaiveDate)> = inserted_keys
        .iter()
        .copied()
        .chain(updates.iter().map(|w| {
            let r = &readings[w.input];
            (r.user_id.as_str(), r.timestamp.unix_seconds())
        }))
        .map(|(user, ts)| (user, at(ts).date_naive()))
        .collect();
    raise_latest(&mut *tx, inserted_keys).await?;
    super::daily::bump_marks(&mut *tx, marks).await?;

    let mut results: Vec<Option<Upserted>> = vec![None; readings.len()];
    for (i, upserted) in settled.into_iter().flatten().flat_map(|s| s.outcomes) {
        results[i] = Some(upserted);
    }
    let results: Vec<Upserted> = results
        .into_iter()
        .collect::<Option<_>>()
        .ok_or_else(|| StoreError::Internal("a reading of the batch was not settled".into()))?;
    let events = super::outbox::append(
        &mut *tx,
        readings
            .iter()
            .zip(&results)
            .filter_map(|(r, u)| Event::reading_changed(r, u)),
    )
    .await?;
    Ok((results, events))
}

#[async_trait]
impl ReadingStore for PostgresStore {
    async fn upsert_readings(&self, readings: Vec<Reading>) -> Result<Vec<Upserted>, StoreError> {
        if readings.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.prepare_upsert(&readings).await?;
        let mut tx = self.begin().await?;
        let (results, events) = upsert_in(&mut tx, &readings, now).await?;
        tx.commit().await.map_err(db_error)?;
        self.written(events);
        Ok(results)
    }

    async fn latest_reading(&self, user: &UserId) -> Result<Option<StoredReading>, StoreError> {
        let row = sqlx::query(LATEST)
            .bind(user.as_str())
            .fetch_optional(self.pool())
            .await
            .map_err(db_error)?;
        row.map(|row| read_row(&row, Some(user))).transpose()
    }

    async fn scan_readings(&self, scan: Scan) -> Result<Vec<StoredReading>, StoreError> {
        // No stored reading lies outside the storable years, so clamping the
        // bounds to them changes nothing but keeps them representable.
        let from = scan.from.clamp(STORABLE_FROM, STORABLE_UNTIL);
        let until = scan.until.clamp(STORABLE_FROM, STORABLE_UNTIL);
        if from >= until || scan.limit == 0 {
            return Ok(Vec::new());
        }
        let sql = match scan.order {
            Order::Asc => SCAN_ASC,
            Order::Desc => SCAN_DESC,
        };
        let rows = sqlx::query(sql)
            .bind(scan.user_id.as_str())
            .bind(at(from))
            .bind(at(until))
            .bind(super::int(scan.limit))
            .fetch_all(self.pool())
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|row| read_row(row, Some(&scan.user_id)))
            .collect()
    }
}

/// Reads a row in `COLUMNS` order; when the caller knows whose rows these are,
/// the user id is shared instead of parsed again for every row.
fn read_row(row: &PgRow, known_user: Option<&UserId>) -> Result<StoredReading, StoreError> {
    let user: &str = col(row, 0)?;
    let ts: DateTime<Utc> = col(row, 1)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("reading {user}@{ts}: bad {what}"));
    let glucose: i16 = col(row, 2)?;
    let status: Option<&str> = col(row, 3)?;
    let trend: Option<&str> = col(row, 4)?;
    let trend_rate: Option<f64> = col(row, 5)?;
    let reading_type: &str = col(row, 6)?;
    let source: &str = col(row, 7)?;
    let device_id: Option<&str> = col(row, 8)?;
    let serial_number: Option<&str> = col(row, 9)?;
    let transmitter_id: Option<&str> = col(row, 10)?;
    let source_record_id: Option<&str> = col(row, 11)?;
    let display_offset_minutes: Option<i16> = col(row, 12)?;
    let version: i64 = col(row, 13)?;
    let created_at: DateTime<Utc> = col(row, 14)?;
    let updated_at: DateTime<Utc> = col(row, 15)?;

    let glucose = match status {
        None => Glucose::value(
            u16::try_from(glucose)
                .ok()
                .and_then(|v| MgDl::new(v).ok())
                .ok_or_else(|| corrupt("glucose"))?,
        ),
        Some(s) => Glucose::out_of_range(SensorStatus::parse(s).ok_or_else(|| corrupt("status"))?),
    };
    let user_id = match known_user {
        Some(known) if known.as_str() == user => known.clone(),
        _ => UserId::parse(user).map_err(|_| corrupt("user_id"))?,
    };
    // Written as whole seconds: anything else was not written by this store.
    if ts.timestamp_subsec_nanos() != 0 {
        return Err(corrupt("ts"));
    }
    let reading = Reading {
        user_id,
        timestamp: ReadingTime::from_unix_seconds(ts.timestamp()).ok_or_else(|| corrupt("ts"))?,
        glucose,
        trend: trend
            .map(|name| Trend::from_canonical(name).ok_or_else(|| corrupt("trend")))
            .transpose()?,
        trend_rate: trend_rate
            .map(TrendRate::new)
            .transpose()
            .map_err(|_| corrupt("trend_rate"))?,
        device: DeviceInfo::parse(
            device_id.map(str::to_owned),
            serial_number.map(str::to_owned),
            transmitter_id.map(str::to_owned),
        )
        .map_err(|_| corrupt("device"))?,
        reading_type: ReadingType::parse(reading_type).map_err(|_| corrupt("reading_type"))?,
        source: Source::parse(source).map_err(|_| corrupt("source"))?,
        source_record_id: source_record_id.map(str::to_owned),
        display_offset_minutes,
    };
    Ok(StoredReading {
        reading,
        version: u32::try_from(version).map_err(|_| corrupt("version"))?,
        created_at,
        updated_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(user: &str, secs: i64, mg_dl: u16, kind: ReadingType) -> Reading {
        Reading {
            user_id: UserId::parse(user).unwrap(),
            timestamp: ReadingTime::from_unix_seconds(secs).unwrap(),
            glucose: Glucose::value(MgDl::new(mg_dl).unwrap()),
            trend: None,
            trend_rate: None,
            device: DeviceInfo::default(),
            reading_type: kind,
            source: Source::api(),
            source_record_id: None,
            display_offset_minutes: None,
        }
    }

    fn kinds(s: &Settled) -> Vec<(&'static str, u32)> {
        s.outcomes
            .iter()
            .map(|(_, u)| (u.outcome.as_str(), u.version))
            .collect()
    }

    #[test]
    fn keys_gather_repeats_in_batch_order_and_sort() {
        let batch = vec![
            reading("b", 10, 100, ReadingType::Cgm),
            reading("a", 20, 100, ReadingType::Cgm),
            reading("b", 10, 101, ReadingType::Cgm),
            reading("a", 10, 100, ReadingType::Cgm),
        ];
        let keys = keys(&batch);
        let got: Vec<_> = keys
            .iter()
            .map(|k| (k.user, k.ts, k.inputs.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("a", 10, vec![3]),
                ("a", 20, vec![1]),
                ("b", 10, vec![0, 2])
            ]
        );
    }

    #[test]
    fn a_new_key_settles_in_batch_order() {
        let now = Utc::now();
        let batch = vec![
            reading("u", 10, 100, ReadingType::Cgm),
            reading("u", 10, 100, ReadingType::Cgm),
            reading("u", 10, 101, ReadingType::Cgm),
            reading("u", 10, 90, ReadingType::Manual),
        ];
        let s = settle(None, &[0, 1, 2, 3], &batch, now);
        assert_eq!(
            kinds(&s),
            [
                ("inserted", 1),
                ("duplicate", 1),
                ("updated", 2),
                ("duplicate", 2)
            ]
        );
        assert_eq!(
            s.outcomes[3].1.outcome,
            Outcome::Duplicate(DuplicateKind::SensorPrecedence)
        );
        assert_eq!(
            s.write,
            Some(Write {
                input: 2,
                version: 2
            })
        );
    }

    #[test]
    fn a_stored_key_keeps_its_times_until_replaced() {
        let then = Utc.timestamp_opt(1_000, 0).unwrap();
        let now = Utc::now();
        let stored = StoredReading {
            reading: reading("u", 10, 100, ReadingType::Cgm),
            version: 4,
            created_at: then,
            updated_at: then,
        };
        let batch = vec![
            reading("u", 10, 100, ReadingType::Cgm),
            reading("u", 10, 80, ReadingType::Manual),
        ];
        let s = settle(Some(&stored), &[0, 1], &batch, now);
        assert_eq!(kinds(&s), [("duplicate", 4), ("duplicate", 4)]);
        assert!(s.outcomes.iter().all(|(_, u)| u.updated_at == then));
        assert_eq!(s.write, None);

        let s = settle(Some(&stored), &[0, 1, 0], &batch, now);
        assert_eq!(
            s.write, None,
            "repeating the stored reading changes nothing"
        );
        let replace = vec![reading("u", 10, 120, ReadingType::Cgm)];
        let s = settle(Some(&stored), &[0], &replace, now);
        assert_eq!(kinds(&s), [("updated", 5)]);
        assert_eq!(s.outcomes[0].1.updated_at, now);
        assert_eq!(
            s.write,
            Some(Write {
                input: 0,
                version: 5
            })
        );
    }
}
