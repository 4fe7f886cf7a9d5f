//! Readings: the `bg_readings` table (user_id / timestamp), the dedup and
//! conflict rule as conditional writes, and range queries.
//!
//! A batch is resolved and written in chunks (`chunks`). Each chunk is
//! one `TransactWriteItems`: every reading it inserts (`attribute_not_exists`) or
//! replaces (conditional on the version it read) together with its outbox event.
//! When another writer got there first, the transaction is cancelled as a whole
//! and the chunk is read and resolved again. A batch is therefore atomic per
//! chunk, not as a whole (DynamoDB transactions hold at most 100 items); writing
//! the same batch again after a failure is idempotent. The day marks of the
//! (user, UTC date)s a chunk writes are raised in the chunk's transaction, so a
//! committed reading always has its mark raised with it (`chunks` sizes chunks
//! so that readings, events and marks fit).

use std::collections::{BTreeSet, HashMap, HashSet};

use aws_sdk_dynamodb::types::{KeysAndAttributes, Put, TransactWriteItem};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};

use super::item::{is_transaction_cancelled, n, put_opt, s, sdk_error, Fields, Item};
use super::{backoff, daily, lost_race, outbox, stale, DynamoStore, RACE_ATTEMPTS};
use crate::domain::{
    DeviceInfo, Glucose, MgDl, Reading, ReadingTime, ReadingType, Resolution, SensorStatus, Source,
    StoredReading, Trend, TrendRate, UserId,
};
use crate::records::events::Event;
use crate::records::readings::{DuplicateKind, Outcome, Upserted};
use crate::store::ReadingStore;
use crate::store::{Order, Scan, StoreError};
use async_trait::async_trait;

/// Items a transaction holds at most.
const MAX_ITEMS: usize = 100;

/// The batch cut into chunks of one transaction each: every reading of a chunk
/// may need its own item and an outbox event, and every (user, UTC date) of the
/// chunk a day-mark update, which together stay within `MAX_ITEMS` (49 readings
/// of one day, fewer when a chunk spans many days).
fn chunks(readings: &[Reading]) -> Vec<&[Reading]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut dates: HashSet<(&str, NaiveDate)> = HashSet::new();
    for (i, r) in readings.iter().enumerate() {
        let date = utc_date(r);
        let new_date = usize::from(!dates.contains(&date));
        if 2 * (i - start + 1) + dates.len() + new_date > MAX_ITEMS {
            out.push(&readings[start..i]);
            start = i;
            dates.clear();
        }
        dates.insert(date);
    }
    if start < readings.len() {
        out.push(&readings[start..]);
    }
    out
}

fn utc_date(r: &Reading) -> (&str, NaiveDate) {
    (r.user_id.as_str(), r.timestamp.as_datetime().date_naive())
}

type Key = (String, i64);

fn key_of(r: &Reading) -> Key {
    (r.user_id.as_str().to_owned(), r.timestamp.unix_seconds())
}

fn key_item(key: &Key) -> Item {
    Item::from([
        ("user_id".to_owned(), s(key.0.clone())),
        ("timestamp".to_owned(), n(key.1)),
    ])
}

fn to_item(r: &StoredReading) -> Item {
    let reading = &r.reading;
    let mut item = key_item(&key_of(reading));
    item.insert("glucose_mg_dl".into(), n(reading.glucose.mg_dl().get()));
    put_opt(
        &mut item,
        "status",
        reading.glucose.status().map(|v| s(v.as_str())),
    );
    put_opt(&mut item, "trend", reading.trend.map(|v| s(v.as_str())));
    put_opt(
        &mut item,
        "trend_rate",
        reading.trend_rate.map(|v| n(v.get())),
    );
    item.insert("reading_type".into(), s(reading.reading_type.as_str()));
    item.insert("source".into(), s(reading.source.as_str()));
    put_opt(&mut item, "device_id", reading.device.device_id().map(s));
    put_opt(
        &mut item,
        "serial_number",
        reading.device.serial_number().map(s),
    );
    put_opt(
        &mut item,
        "transmitter_id",
        reading.device.transmitter_id().map(s),
    );
    put_opt(
        &mut item,
        "source_record_id",
        reading.source_record_id.clone().map(s),
    );
    put_opt(
        &mut item,
        "display_offset_minutes",
        reading.display_offset_minutes.map(n),
    );
    item.insert("version".into(), n(r.version));
    item.insert("created_at_ms".into(), n(r.created_at.timestamp_millis()));
    item.insert("updated_at_ms".into(), n(r.updated_at.timestamp_millis()));
    item
}

fn from_item(item: &Item) -> Result<StoredReading, StoreError> {
    let f = Fields::new(item, "reading");
    let user = f.s("user_id")?;
    let ts = f.i64("timestamp")?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("reading {user}@{ts}: bad {what}"));
    let glucose = match f.opt_s("status")? {
        None => Glucose::value(
            u16::try_from(f.i64("glucose_mg_dl")?)
                .ok()
                .and_then(|v| MgDl::new(v).ok())
                .ok_or_else(|| corrupt("glucose"))?,
        ),
        Some(status) => {
            Glucose::out_of_range(SensorStatus::parse(status).ok_or_else(|| corrupt("status"))?)
        }
    };
    let reading = Reading {
        user_id: UserId::parse(user).map_err(|_| corrupt("user_id"))?,
        timestamp: ReadingTime::from_unix_seconds(ts).ok_or_else(|| corrupt("timestamp"))?,
        glucose,
        trend: f
            .opt_s("trend")?
            .map(|t| Trend::from_canonical(t).ok_or_else(|| corrupt("trend")))
            .transpose()?,
        trend_rate: f
            .opt_f64("trend_rate")?
            .map(TrendRate::new)
            .transpose()
            .map_err(|_| corrupt("trend_rate"))?,
        device: DeviceInfo::parse(
            f.opt_s("device_id")?.map(str::to_owned),
            f.opt_s("serial_number")?.map(str::to_owned),
            f.opt_s("transmitter_id")?.map(str::to_owned),
        )
        .map_err(|_| corrupt("device"))?,
        reading_type: ReadingType::parse(f.s("reading_type")?)
            .map_err(|_| corrupt("reading_type"))?,
        source: Source::parse(f.s("source")?).map_err(|_| corrupt("source"))?,
        source_record_id: f.opt_s("source_record_id")?.map(str::to_owned),
        display_offset_minutes: f
            .opt_i64("display_offset_minutes")?
            .map(i16::try_from)
            .transpose()
            .map_err(|_| corrupt("display_offset_minutes"))?,
    };
    Ok(StoredReading {
        reading,
        version: u32::try_from(f.i64("version")?).map_err(|_| corrupt("version"))?,
        created_at: f.time("created_at_ms")?,
        updated_at: f.time("updated_at_ms")?,
    })
}

/// Now, to the millisecond the item keeps, so what an upsert returns is what
/// a later read sees.
fn now_ms() -> DateTime<Utc> {
    let now = Utc::now();
    Utc.timestamp_millis_opt(now.timestamp_millis())
        .single()
        .unwrap_or(now)
}

/// One chunk resolved against what was read: the results in input order, and
/// the final content of every key it changes with the version it was read at.
struct Resolved {
    results: Vec<Upserted>,
    writes: Vec<(StoredReading, Option<u32>)>,
    events: Vec<Event>,
}

fn resolve(chunk: &[Reading], stored: &HashMap<Key, StoredReading>) -> Resolved {
    let now = now_ms();
    let mut current: HashMap<Key, StoredReading> = HashMap::new();
    let mut changed: Vec<Key> = Vec::new();
    let mut results = Vec::with_capacity(chunk.len());
    let mut events = Vec::new();
    for reading in chunk {
        let key = key_of(reading);
        let seen = current.get(&key).or_else(|| stored.get(&key));
        let (upserted, write) = match seen {
            None => (
                Upserted {
                    outcome: Outcome::Inserted,
                    version: 1,
                    updated_at: now,
                },
                Some(StoredReading {
                    reading: reading.clone(),
                    version: 1,
                    created_at: now,
                    updated_at: now,
                }),
            ),
            Some(seen) => match reading.resolve_against(&seen.reading) {
                Resolution::Identical => (duplicate(seen, DuplicateKind::Identical), None),
                Resolution::KeepExisting => {
                    (duplicate(seen, DuplicateKind::SensorPrecedence), None)
                }
                Resolution::Replace => (
                    Upserted {
                        outcome: Outcome::Updated,
                        version: seen.version + 1,
                        updated_at: now,
                    },
                    Some(StoredReading {
                        reading: reading.clone(),
                        version: seen.version + 1,
                        created_at: seen.created_at,
                        updated_at: now,
                    }),
                ),
            },
        };
        if let Some(write) = write {
            if !changed.contains(&key) {
                changed.push(key.clone());
            }
            current.insert(key, write);
        }
        events.extend(Event::reading_changed(reading, &upserted));
        results.push(upserted);
    }
    let writes = changed
        .into_iter()
        .filter_map(|key| {
            let expected = stored.get(&key).map(|r| r.version);
            current.remove(&key).map(|w| (w, expected))
        })
        .collect();
    Resolved {
        results,
        writes,
        events,
    }
}

fn duplicate(stored: &StoredReading, kind: DuplicateKind) -> Upserted {
    Upserted {
        outcome: Outcome::Duplicate(kind),
        version: stored.version,
        updated_at: stored.updated_at,
    }
}

impl DynamoStore {
    async fn upsert_chunk(&self, chunk: &[Reading]) -> Result<Vec<Upserted>, StoreError> {
        let table = &self.tables().readings;
        for attempt in 0..RACE_ATTEMPTS {
            let stored = self.get_readings(chunk).await?;
            let resolved = resolve(chunk, &stored);
            if resolved.writes.is_empty() {
                return Ok(resolved.results);
            }
            let mut items = Vec::with_capacity(resolved.writes.len() + resolved.events.len());
            for (write, expected) in &resolved.writes {
                let put = Put::builder()
                    .table_name(table)
                    .set_item(Some(to_item(write)));
                let put = match expected {
                    None => put.condition_expression("attribute_not_exists(user_id)"),
                    Some(version) => put
                        .condition_expression("#v = :v")
                        .expression_attribute_names("#v", "version")
                        .expression_attribute_values(":v", n(*version)),
                };
                let put = put
                    .build()
                    .map_err(|e| StoreError::Internal(format!("reading put: {e}")))?;
                items.push(TransactWriteItem::builder().put(put).build());
            }
            for event in &resolved.events {
                items.push(outbox::append(&self.tables().aux, event)?);
            }
            // One mark bump per (user, UTC date) written, in the same
            // transaction (the chunking leaves room for them).
            let marks: BTreeSet<(&str, NaiveDate)> = resolved
                .writes
                .iter()
                .map(|(w, _)| utc_date(&w.reading))
                .collect();
            for (user, date) in marks {
                items.push(daily::bump_mark(&self.tables().aux, user, date)?);
            }
            let has_events = !resolved.events.is_empty();
            match self
                .client()
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await
            {
                Ok(_) => {
                    if has_events {
                        self.wrote_outbox();
                    }
                    return Ok(resolved.results);
                }
                // Another writer changed one of these readings since the read.
                Err(e) if is_transaction_cancelled(&e) => backoff(attempt).await,
                Err(e) => return Err(sdk_error("TransactWriteItems readings", e)),
            }
        }
        Err(lost_race("a batch of readings"))
    }

    /// The stored readings of a chunk's keys (strongly consistent).
    async fn get_readings(
        &self,
        chunk: &[Reading],
    ) -> Result<HashMap<Key, StoredReading>, StoreError> {
        let mut keys: Vec<Key> = chunk.iter().map(key_of).collect();
        keys.sort();
        keys.dedup();
        let table = self.tables().readings.clone();
        let mut pending = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys.iter().map(key_item).collect()))
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::Internal(format!("batch get keys: {e}")))?,
        );
        let mut found = HashMap::new();
        let mut attempt = 0;
        while let Some(request) = pending.take() {
            let out = self
                .client()
                .batch_get_item()
                .request_items(&table, request)
                .send()
                .await
                .map_err(|e| sdk_error("BatchGetItem readings", e))?;
            for item in out
                .responses()
                .and_then(|r| r.get(&table))
                .into_iter()
                .flatten()
            {
                let reading = from_item(item)?;
                found.insert(key_of(&reading.reading), reading);
            }
            pending = out
                .unprocessed_keys()
                .and_then(|u| u.get(&table))
                .filter(|k| !k.keys().is_empty())
                .cloned();
            if pending.is_some() {
                if attempt >= RACE_ATTEMPTS {
                    return Err(StoreError::Unavailable(
                        "dynamodb kept returning unprocessed keys".into(),
                    ));
                }
                backoff(attempt).await;
                attempt += 1;
            }
        }
        Ok(found)
    }
}

#[async_trait]
impl ReadingStore for DynamoStore {
    async fn upsert_readings(&self, readings: Vec<Reading>) -> Result<Vec<Upserted>, StoreError> {
        let mut results = Vec::with_capacity(readings.len());
        let mut failed = None;
        for chunk in chunks(&readings) {
            match self.upsert_chunk(chunk).await {
                Ok(written) => results.extend(written),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        // The chunks that committed raise the users' newest times, even when
        // a later one failed (`stale.rs`).
        self.raise_newest(stale::newest_written(&readings, &results))
            .await?;
        match failed {
            Some(e) => Err(e),
            None => Ok(results),
        }
    }

    async fn latest_reading(&self, user: &UserId) -> Result<Option<StoredReading>, StoreError> {
        let out = self
            .client()
            .query()
            .table_name(&self.tables().readings)
            .key_condition_expression("user_id = :u")
            .expression_attribute_values(":u", s(user.as_str()))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("Query latest reading", e))?;
        out.items().first().map(from_item).transpose()
    }

    async fn scan_readings(&self, scan: Scan) -> Result<Vec<StoredReading>, StoreError> {
        let last = scan.until.saturating_sub(1);
        if scan.limit == 0 || scan.from > last {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(scan.limit.min(1024));
        let mut start: Option<Item> = None;
        while out.len() < scan.limit {
            let page = self
                .client()
                .query()
                .table_name(&self.tables().readings)
                .key_condition_expression("user_id = :u AND #ts BETWEEN :from AND :last")
                .expression_attribute_names("#ts", "timestamp")
                .expression_attribute_values(":u", s(scan.user_id.as_str()))
                .expression_attribute_values(":from", n(scan.from))
                .expression_attribute_values(":last", n(last))
                .scan_index_forward(scan.order == Order::Asc)
                .limit(i32::try_from(scan.limit - out.len()).unwrap_or(i32::MAX))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query readings", e))?;
            for item in page.items() {
                out.push(from_item(item)?);
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        out.truncate(scan.limit);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeviceInfo, Glucose, MgDl, ReadingTime, ReadingType, Source, UserId};

    fn at(secs: i64) -> Reading {
        Reading {
            user_id: UserId::parse("u").unwrap(),
            timestamp: ReadingTime::from_unix_seconds(secs).unwrap(),
            glucose: Glucose::value(MgDl::new(100).unwrap()),
            trend: None,
            trend_rate: None,
            device: DeviceInfo::default(),
            reading_type: ReadingType::Cgm,
            source: Source::api(),
            source_record_id: None,
            display_offset_minutes: None,
        }
    }

    fn items(chunk: &[Reading]) -> usize {
        let dates: HashSet<_> = chunk.iter().map(utc_date).collect();
        2 * chunk.len() + dates.len()
    }

    #[test]
    fn chunks_leave_room_for_the_day_marks() {
        // One day: 49 readings per chunk, as before the marks.
        let one_day: Vec<Reading> = (0..120).map(|i| at(1_699_920_000 + i * 60)).collect();
        let sizes: Vec<usize> = chunks(&one_day).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [49, 49, 22]);
        // A reading per day: each needs a mark of its own.
        let daily: Vec<Reading> = (0..100).map(|i| at(1_700_000_000 + i * 86_400)).collect();
        let parts = chunks(&daily);
        assert!(parts.iter().all(|c| items(c) <= MAX_ITEMS));
        assert_eq!(parts.iter().map(|c| c.len()).sum::<usize>(), 100);
        assert_eq!(parts[0].len(), 33);
        assert!(chunks(&[]).is_empty());
    }
}
