//! Readings: the batch upsert (dedup key, conflict rule, outbox events in one
//! write transaction, then the latest-reading cache), the latest reading (from
//! the cache when it holds the user) and the keyset scan (as readings, or encoded
//! row by row for the range endpoint).

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{CachedStatement, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::{daily, internal, outbox, rows, stale, Inner, SqliteStore};
use crate::domain::{Reading, Resolution, StoredReading, UserId};
use crate::records::readings::{DuplicateKind, Outcome, Upserted};
use crate::store::query::{EncodeReading, EncodedScan};
use crate::store::{Order, ReadingStore, Scan, StoreError};

#[async_trait]
impl ReadingStore for SqliteStore {
    async fn upsert_readings(&self, readings: Vec<Reading>) -> Result<Vec<Upserted>, StoreError> {
        let inner = self.inner.clone();
        self.write(move |conn| {
            let (results, ()) = upsert_then(&inner, conn, readings, |_| Ok(()))?;
            Ok(results)
        })
        .await
    }

    async fn latest_reading(&self, user: &UserId) -> Result<Option<StoredReading>, StoreError> {
        if let Some(hit) = self.inner.latest.get(user.as_str()) {
            return Ok(Some(StoredReading::clone(&hit)));
        }
        let generation = self.inner.latest.generation(user.as_str());
        let user = user.clone();
        let found = self
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {} FROM readings WHERE user_id = ?1 ORDER BY ts DESC LIMIT 1",
                    rows::COLUMNS
                ))
                .map_err(internal)?
                .query_row([user.as_str()], rows::read_row)
                .optional()
                .map_err(internal)?
                .transpose()
            })
            .await?;
        if let Some(reading) = &found {
            self.inner.latest.fill(generation, reading);
        }
        Ok(found)
    }

    async fn scan_readings(&self, scan: Scan) -> Result<Vec<StoredReading>, StoreError> {
        self.read(move |conn| {
            let mut stmt = prepare_scan(conn, scan.order)?;
            let rows = stmt
                .query_map(scan_params(&scan), |row| {
                    rows::read_row_of(row, Some(&scan.user_id))
                })
                .map_err(internal)?;
            let mut out = Vec::with_capacity(scan.limit.min(1024));
            for row in rows.take(scan.limit) {
                out.push(row.map_err(internal)??);
            }
            Ok(out)
        })
        .await
    }

    /// Encodes each row on the reader thread while SQLite holds it: no
    /// `StoredReading`, no owned strings, no second pass over the page.
    async fn scan_encoded(
        &self,
        scan: Scan,
        encode: EncodeReading,
        prefix: Vec<u8>,
    ) -> Result<EncodedScan, StoreError> {
        self.read(move |conn| {
            let mut stmt = prepare_scan(conn, scan.order)?;
            let mut rows = stmt.query(scan_params(&scan)).map_err(internal)?;
            let mut out = EncodedScan {
                bytes: prefix,
                items: Vec::with_capacity(scan.limit.min(1024)),
            };
            while out.items.len() < scan.limit {
                let Some(row) = rows.next().map_err(internal)? else {
                    break;
                };
                let reading = rows::read_row_ref(row, &scan.user_id).map_err(internal)??;
                out.push(encode, &reading);
            }
            Ok(out)
        })
        .await
    }
}

/// Upserts `readings` (dedup key, conflict rule, day marks, newest times,
/// outbox events) and then runs `also` in the same write transaction, commits,
/// and updates the latest-reading cache: `upsert_readings` with nothing else,
/// the Apple Health upload with its journal entries (`health_upload`). An
/// error of either rolls back both.
pub(super) fn upsert_then<T>(
    inner: &Inner,
    conn: &mut Connection,
    readings: Vec<Reading>,
    also: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
) -> Result<(Vec<Upserted>, T), StoreError> {
    let latest = &inner.latest;
    let now = Utc::now();
    let now_ms = now.timestamp_millis();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(internal)?;
    let mut results = Vec::with_capacity(readings.len());
    let mut newest = NewestWrites::default();
    // The (user, UTC day) of every reading inserted or changed: their
    // day marks are bumped once each, below.
    let mut marked: BTreeSet<(&str, i64)> = BTreeSet::new();
    {
        let mut insert = tx
            .prepare_cached(&format!(
                "INSERT INTO readings ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
                 ?10, ?11, ?12, ?13, ?14, ?15, ?16) ON CONFLICT (user_id, ts) DO NOTHING",
                rows::COLUMNS
            ))
            .map_err(internal)?;
        let mut existing = tx
            .prepare_cached(&format!(
                "SELECT {} FROM readings WHERE user_id = ?1 AND ts = ?2",
                rows::COLUMNS
            ))
            .map_err(internal)?;
        let mut replace = tx
            .prepare_cached(
                "UPDATE readings SET glucose_mg_dl = ?3, status = ?4, trend = ?5, \
                 trend_rate = ?6, reading_type = ?7, source = ?8, device_id = ?9, \
                 serial_number = ?10, transmitter_id = ?11, source_record_id = ?12, \
                 display_offset_minutes = ?13, version = ?14, updated_at_ms = ?16 \
                 WHERE user_id = ?1 AND ts = ?2",
            )
            .map_err(internal)?;
        for (i, reading) in readings.iter().enumerate() {
            if rows::execute(&mut insert, reading, 1, now_ms, now_ms).map_err(internal)? == 1 {
                results.push(Upserted {
                    outcome: Outcome::Inserted,
                    version: 1,
                    updated_at: now,
                });
                newest.note(&readings, i, now);
                marked.insert(utc_day(reading));
                continue;
            }
            let stored = existing
                .query_row(
                    (reading.user_id.as_str(), reading.timestamp.unix_seconds()),
                    rows::read_row,
                )
                .map_err(internal)??;
            let result = match reading.resolve_against(&stored.reading) {
                Resolution::Identical => duplicate(&stored, DuplicateKind::Identical),
                Resolution::KeepExisting => duplicate(&stored, DuplicateKind::SensorPrecedence),
                Resolution::Replace => {
                    rows::execute(
                        &mut replace,
                        reading,
                        stored.version + 1,
                        stored.created_at.timestamp_millis(),
                        now_ms,
                    )
                    .map_err(internal)?;
                    newest.note(&readings, i, stored.created_at);
                    marked.insert(utc_day(reading));
                    Upserted {
                        outcome: Outcome::Updated,
                        version: stored.version + 1,
                        updated_at: now,
                    }
                }
            };
            results.push(result);
        }
    }
    daily::bump_marks(&tx, marked)?;
    stale::raise_newest(&tx, newest.times(&readings))?;
    let events = outbox::append(
        &tx,
        readings
            .iter()
            .zip(&results)
            .filter_map(|(r, u)| crate::records::events::Event::reading_changed(r, u)),
    )?;
    let extra = also(&tx)?;
    let pending = latest.begin_write(newest.users());
    tx.commit().map_err(internal)?;
    pending.committed(&newest.into_stored(&readings, &results));
    if events > 0 {
        inner.outbox_written.notify_one();
    }
    Ok((results, extra))
}

// The limit is applied by reading no further rather than by `LIMIT ?`: SQLite
// takes a bound LIMIT's value into account when it plans, so binding it again on
// the cached statement marked the statement expired and every scan compiled it
// anew (5% of a one-day range request's instructions in callgrind). Rows are
// produced as they are stepped to, so the ones never read cost nothing.
fn prepare_scan(conn: &Connection, order: Order) -> Result<CachedStatement<'_>, StoreError> {
    let direction = match order {
        Order::Asc => "ASC",
        Order::Desc => "DESC",
    };
    conn.prepare_cached(&format!(
        "SELECT {} FROM readings WHERE user_id = ?1 AND ts >= ?2 AND ts < ?3 \
         ORDER BY ts {direction}",
        rows::COLUMNS
    ))
    .map_err(internal)
}

fn scan_params(scan: &Scan) -> (&str, i64, i64) {
    (scan.user_id.as_str(), scan.from, scan.until)
}

/// The newest reading each user got in a batch (by position in the batch and the
/// created_at its row keeps): only these can become a user's latest, so only these
/// are copied for the cache.
#[derive(Default)]
struct NewestWrites<'a>(HashMap<&'a str, (usize, DateTime<Utc>)>);

impl<'a> NewestWrites<'a> {
    /// Notes that `readings[i]` was inserted or replaced. Of two writes to one
    /// instant the later one wins.
    fn note(&mut self, readings: &'a [Reading], i: usize, created_at: DateTime<Utc>) {
        match self.0.entry(readings[i].user_id.as_str()) {
            Entry::Occupied(mut best) => {
                if readings[i].timestamp >= readings[best.get().0].timestamp {
                    best.insert((i, created_at));
                }
            }
            Entry::Vacant(slot) => {
                slot.insert((i, created_at));
            }
        }
    }

    /// Each user's newest written reading time (unix seconds).
    fn times<'b>(&'b self, readings: &'a [Reading]) -> impl Iterator<Item = (&'a str, i64)> + 'b
    where
        'a: 'b,
    {
        self.0
            .iter()
            .map(|(user, (i, _))| (*user, readings[*i].timestamp.unix_seconds()))
    }

    fn users(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.0.keys().copied()
    }

    /// The noted readings as stored, with the version and updated_at of `results`
    /// (which is in batch order).
    fn into_stored(self, readings: &[Reading], results: &[Upserted]) -> Vec<StoredReading> {
        self.0
            .into_values()
            .map(|(i, created_at)| StoredReading {
                reading: readings[i].clone(),
                version: results[i].version,
                created_at,
                updated_at: results[i].updated_at,
            })
            .collect()
    }
}

/// A reading's user and UTC day (days since 1970-01-01).
fn utc_day(reading: &Reading) -> (&str, i64) {
    (
        reading.user_id.as_str(),
        reading.timestamp.unix_seconds().div_euclid(86_400),
    )
}

fn duplicate(stored: &StoredReading, kind: DuplicateKind) -> Upserted {
    Upserted {
        outcome: Outcome::Duplicate(kind),
        version: stored.version,
        updated_at: stored.updated_at,
    }
}
