//! DynamoDB side of the users' newest reading times: one aux item per user, pk
//! `NEWEST#<user>`, sk `-`, `ts` (unix seconds), listed in the sparse `gsi1`
//! under one of `BUCKETS` partitions `NEWEST#<n>` (by a hash of the user, so
//! the index's writes spread) with sort key `<ts, 12 digits>#<user>`: the
//! stale timer reads a time window as one key range per bucket.
//!
//! The item is raised after the readings' transactions commit, with a
//! condition that it only moves forward (a condition inside the transaction
//! would cancel the readings with it). A crash between the two leaves it
//! behind the readings for that user until their next batch: the timer then
//! checks a candidate against the readings before raising (`pipeline::stale`),
//! so a lagging item can cost a check, never a false alert.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::item::{n, s, sdk_error, Changes, Condition, Fields, Item};
use super::schema::GSI1;
use super::DynamoStore;
use crate::domain::{Reading, UserId};
use crate::records::readings::{Outcome, Upserted};
use crate::records::stale::NewestReading;
use crate::store::{StaleStore, StoreError};

/// Index partitions the newest times are spread over.
const BUCKETS: u32 = 16;

fn bucket(user: &str) -> u32 {
    // FNV-1a: stable across builds and processes.
    let hash = user.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % BUCKETS
}

fn order(ts: i64, user: &str) -> String {
    format!("{:012}#{user}", ts.max(0))
}

/// Each user's newest reading time among the `readings` a batch wrote
/// (`results` in the same order; duplicates wrote nothing).
pub(super) fn newest_written<'a>(
    readings: &'a [Reading],
    results: &[Upserted],
) -> HashMap<&'a str, i64> {
    let mut newest: HashMap<&str, i64> = HashMap::new();
    for (r, u) in readings.iter().zip(results) {
        if matches!(u.outcome, Outcome::Inserted | Outcome::Updated) {
            let ts = r.timestamp.unix_seconds();
            let slot = newest.entry(r.user_id.as_str()).or_insert(ts);
            *slot = (*slot).max(ts);
        }
    }
    newest
}

impl DynamoStore {
    /// Raises each user's newest time to at least the given one (never lowers it).
    pub(super) async fn raise_newest(&self, newest: HashMap<&str, i64>) -> Result<(), StoreError> {
        for (user, ts) in newest {
            let key = Item::from([
                ("pk".to_owned(), s(format!("NEWEST#{user}"))),
                ("sk".to_owned(), s("-")),
            ]);
            let changes = Changes::default()
                .set("user_id", s(user))
                .set("ts", n(ts))
                .set("gsi1pk", s(format!("NEWEST#{}", bucket(user))))
                .set("gsi1sk", s(order(ts, user)));
            let condition = Condition::new("attribute_not_exists(#cts) OR #cts < :cts")
                .name("#cts", "ts")
                .value(":cts", n(ts));
            // None: already at that time or later.
            self.update_if(&self.tables().aux, key, changes, condition)
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl StaleStore for DynamoStore {
    async fn quiet_users(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        after: Option<NewestReading>,
        limit: usize,
    ) -> Result<Vec<NewestReading>, StoreError> {
        if limit == 0 || from >= until {
            return Ok(Vec::new());
        }
        // `[from, until)` as a key range: "<from>#" is below every key of that
        // second, "<until>#" below every key of `until` (user ids are never empty).
        let mut low = format!("{:012}#", from.timestamp().max(0));
        if let Some(a) = &after {
            // Just above `after`: a space sorts below every character a user
            // id may hold ('-', '_', letters, digits).
            let past = format!("{} ", order(a.at.timestamp(), a.user_id.as_str()));
            low = low.max(past);
        }
        let high = format!("{:012}#", until.timestamp().max(0));
        if low > high {
            return Ok(Vec::new());
        }
        let mut found: Vec<(String, NewestReading)> = Vec::new();
        for b in 0..BUCKETS {
            let mut start: Option<Item> = None;
            let mut taken = 0;
            while taken < limit {
                let page = self
                    .client()
                    .query()
                    .table_name(&self.tables().aux)
                    .index_name(GSI1)
                    .key_condition_expression("gsi1pk = :p AND gsi1sk BETWEEN :lo AND :hi")
                    .expression_attribute_values(":p", s(format!("NEWEST#{b}")))
                    .expression_attribute_values(":lo", s(low.clone()))
                    .expression_attribute_values(":hi", s(high.clone()))
                    .limit(i32::try_from(limit - taken).unwrap_or(i32::MAX))
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| sdk_error("Query newest reading times", e))?;
                for item in page.items() {
                    let f = Fields::new(item, "newest reading time");
                    let user = f.s("user_id")?;
                    let ts = f.i64("ts")?;
                    found.push((
                        f.s("gsi1sk")?.to_owned(),
                        NewestReading {
                            user_id: UserId::parse(user).map_err(|e| f.corrupt("user_id", e))?,
                            at: DateTime::from_timestamp(ts, 0)
                                .ok_or_else(|| f.corrupt("ts", ts))?,
                        },
                    ));
                    taken += 1;
                }
                match page.last_evaluated_key() {
                    Some(last) if !last.is_empty() => start = Some(last.clone()),
                    _ => break,
                }
            }
        }
        // Each bucket gave its first `limit` in order: the first `limit` of
        // their union are the first `limit` overall.
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.truncate(limit);
        Ok(found.into_iter().map(|(_, n)| n).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_by_time_then_user() {
        assert!(order(99, "zz") < order(100, "a"));
        assert!(order(100, "a") < order(100, "a-"));
        assert!(format!("{} ", order(100, "a")) < order(100, "a-"));
        assert!(format!("{:012}#", 100) < order(100, "-"));
        assert!(bucket("patient-1") < BUCKETS);
    }
}
