//! One conformance suite for every `Store` backend. A backend joins by adding one
//! `conformance!` line at the bottom; every case below then runs against it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use cgm_hub::domain::{Glucose, ReadingTime, ReadingType, SensorStatus};
use cgm_hub::records::connections::{
    Connection, ConnectionStatus, PendingAuthorization, Provider, RefreshOutcome, SealedTokens,
};
use cgm_hub::records::readings::{DuplicateKind, Outcome};
use cgm_hub::secret::Secret;
use cgm_hub::store::{fetch_page, Order, PageRequest, Seek, Store};
use chrono::Utc;

use crate::helpers::*;

mod account_tokens;
mod accounts;
mod alerts;
mod daily;
mod encoded;
mod health_upload;
mod invitations;
mod journal;
mod limits;
mod meal_responses;
mod notifications;
mod outbox;
mod stale;
mod sync;
mod tasks;
use account_tokens::*;
use accounts::*;
use alerts::*;
use daily::*;
use encoded::*;
use health_upload::*;
use invitations::*;
use journal::*;
use limits::*;
use meal_responses::*;
use notifications::*;
use outbox::*;
use stale::*;
use sync::*;
use tasks::*;

type S = Arc<dyn Store>;

async fn identical_reading_is_a_duplicate(s: S) {
    let r = cgm("u1", slot(1), 120);
    let first = s.upsert_readings(vec![r.clone()]).await.unwrap();
    assert_eq!(first[0].outcome, Outcome::Inserted);
    assert_eq!(first[0].version, 1);
    let before = s.latest_reading(&user("u1")).await.unwrap().unwrap();
    let again = s.upsert_readings(vec![r.clone()]).await.unwrap();
    assert_eq!(
        again[0].outcome,
        Outcome::Duplicate(DuplicateKind::Identical)
    );
    assert_eq!(again[0].version, 1);
    let after = s.latest_reading(&user("u1")).await.unwrap().unwrap();
    assert_eq!(
        after, before,
        "a duplicate changes nothing, not even updated_at"
    );
}

async fn cgm_replaces_manual_and_bumps_version(s: S) {
    let manual = reading("u1", slot(1), 110, ReadingType::Manual);
    s.upsert_readings(vec![manual]).await.unwrap();
    let before = s.latest_reading(&user("u1")).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let sensor = cgm("u1", slot(1), 118);
    let res = s.upsert_readings(vec![sensor.clone()]).await.unwrap();
    assert_eq!(res[0].outcome, Outcome::Updated);
    assert_eq!(res[0].version, 2);
    let after = s.latest_reading(&user("u1")).await.unwrap().unwrap();
    assert_eq!(after.reading, sensor);
    assert_eq!(after.version, 2);
    assert_eq!(after.created_at, before.created_at, "created_at is kept");
    assert!(
        after.updated_at > before.updated_at,
        "updated_at moves forward"
    );
}

async fn manual_never_replaces_cgm(s: S) {
    let sensor = cgm("u1", slot(1), 118);
    s.upsert_readings(vec![sensor.clone()]).await.unwrap();
    let before = s.latest_reading(&user("u1")).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let res = s
        .upsert_readings(vec![reading("u1", slot(1), 90, ReadingType::Manual)])
        .await
        .unwrap();
    assert_eq!(
        res[0].outcome,
        Outcome::Duplicate(DuplicateKind::SensorPrecedence)
    );
    assert_eq!(res[0].version, 1);
    let after = s.latest_reading(&user("u1")).await.unwrap().unwrap();
    assert_eq!(after, before, "the sensor reading and its version stay");
}

async fn newer_record_of_same_type_wins(s: S) {
    s.upsert_readings(vec![cgm("u1", slot(1), 100)])
        .await
        .unwrap();
    let second = s
        .upsert_readings(vec![cgm("u1", slot(1), 104)])
        .await
        .unwrap();
    let third = s
        .upsert_readings(vec![cgm("u1", slot(1), 107)])
        .await
        .unwrap();
    assert_eq!(
        (second[0].outcome, second[0].version),
        (Outcome::Updated, 2)
    );
    assert_eq!((third[0].outcome, third[0].version), (Outcome::Updated, 3));
    let latest = s.latest_reading(&user("u1")).await.unwrap().unwrap();
    assert_eq!(latest.reading.glucose.mg_dl().get(), 107);
}

async fn a_batch_is_resolved_in_order(s: S) {
    let res = s
        .upsert_readings(vec![
            cgm("u1", slot(1), 100),
            cgm("u1", slot(1), 100),
            cgm("u1", slot(1), 101),
            cgm("u2", slot(1), 100),
            reading("u2", slot(1), 90, ReadingType::Manual),
        ])
        .await
        .unwrap();
    let outcomes: Vec<_> = res
        .iter()
        .map(|r| (r.outcome.as_str(), r.version))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("inserted", 1),
            ("duplicate", 1),
            ("updated", 2),
            ("inserted", 1),
            ("duplicate", 1)
        ]
    );
}

async fn every_field_round_trips(s: S) {
    let mut r = cgm("u1", slot(3), 250);
    r.source_record_id = Some("3c5f0a7e-6d2a-4c8e-9f0b-1a2b3c4d5e6f".into());
    r.display_offset_minutes = Some(-300);
    let low = cgm("u1", slot(1), 100);
    let low = cgm_hub::domain::Reading {
        glucose: Glucose::out_of_range(SensorStatus::Low),
        trend: None,
        trend_rate: None,
        ..low
    };
    let high = cgm_hub::domain::Reading {
        glucose: Glucose::out_of_range(SensorStatus::High),
        timestamp: slot(2),
        ..low.clone()
    };
    s.upsert_readings(vec![low.clone(), high.clone(), r.clone()])
        .await
        .unwrap();
    let page = fetch_page(s.as_ref(), &request("u1", None, None, Order::Asc, 10))
        .await
        .unwrap();
    let got: Vec<_> = page.readings.into_iter().map(|x| x.reading).collect();
    assert_eq!(got, vec![low, high, r]);
    assert_eq!(got_status(&got[0]), Some((39, SensorStatus::Low)));
    assert_eq!(got_status(&got[1]), Some((401, SensorStatus::High)));
}

fn got_status(r: &cgm_hub::domain::Reading) -> Option<(u16, SensorStatus)> {
    r.glucose.status().map(|s| (r.glucose.mg_dl().get(), s))
}

async fn latest_is_the_newest_of_that_user(s: S) {
    assert!(s.latest_reading(&user("nobody")).await.unwrap().is_none());
    s.upsert_readings(vec![
        cgm("u1", slot(5), 150),
        cgm("u1", slot(9), 160),
        cgm("u1", slot(7), 170),
        cgm("u2", slot(20), 99),
    ])
    .await
    .unwrap();
    let latest = s.latest_reading(&user("u1")).await.unwrap().unwrap();
    assert_eq!(latest.reading.timestamp, slot(9));
    assert_eq!(latest.reading.glucose.mg_dl().get(), 160);
}

async fn latest_follows_every_write(s: S) {
    s.upsert_readings(vec![cgm("u1", slot(5), 150)])
        .await
        .unwrap();
    assert_eq!(
        s.latest_reading(&user("u1"))
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
    // A replacement of the latest reading shows at once, with its new version.
    s.upsert_readings(vec![cgm("u1", slot(5), 155)])
        .await
        .unwrap();
    let latest = s.latest_reading(&user("u1")).await.unwrap().unwrap();
    assert_eq!(
        (latest.reading.glucose.mg_dl().get(), latest.version),
        (155, 2)
    );
    // An older reading does not displace it; a newer one does.
    s.upsert_readings(vec![cgm("u1", slot(4), 140)])
        .await
        .unwrap();
    let latest = s.latest_reading(&user("u1")).await.unwrap().unwrap();
    assert_eq!(latest.reading.timestamp, slot(5));
    let batch = vec![
        cgm("u1", slot(6), 160),
        cgm("u1", slot(7), 170),
        cgm("u1", slot(7), 171),
    ];
    s.upsert_readings(batch).await.unwrap();
    let latest = s.latest_reading(&user("u1")).await.unwrap().unwrap();
    assert_eq!((latest.reading.timestamp, latest.version), (slot(7), 2));
    assert_eq!(latest.reading.glucose.mg_dl().get(), 171);
}

async fn latest_stays_exact_under_concurrent_reads_and_writes(s: S) {
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                let r = cgm("u1", slot(i), 100 + (i % 100) as u16);
                s.upsert_readings(vec![r]).await.unwrap();
            }
        })
    };
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut last_seen = i64::MIN;
                for _ in 0..300 {
                    if let Some(r) = s.latest_reading(&user("u1")).await.unwrap() {
                        let t = r.reading.timestamp.unix_seconds();
                        assert!(t >= last_seen, "latest went back in time");
                        last_seen = t;
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    writer.await.unwrap();
    for r in readers {
        r.await.unwrap();
    }
    let latest = s.latest_reading(&user("u1")).await.unwrap().unwrap();
    assert_eq!(
        latest.reading.timestamp,
        slot(199),
        "once writes settle, latest is exact"
    );
}

async fn latest_is_exact_for_many_users_under_writes(s: S) {
    // Cold users are read while other users are written: reads that miss any cache
    // race the commits, and must still never go back in time.
    let users: Vec<String> = (0..40).map(|i| format!("many{i}")).collect();
    let writer = {
        let (s, users) = (s.clone(), users.clone());
        tokio::spawn(async move {
            for step in 0..20 {
                let batch = users.iter().map(|u| cgm(u, slot(step), 100)).collect();
                s.upsert_readings(batch).await.unwrap();
            }
        })
    };
    let reader = {
        let (s, users) = (s.clone(), users.clone());
        tokio::spawn(async move {
            let mut last_seen = vec![i64::MIN; users.len()];
            for round in 0..400 {
                let i = (round * 7) % users.len();
                if let Some(r) = s.latest_reading(&user(&users[i])).await.unwrap() {
                    let t = r.reading.timestamp.unix_seconds();
                    assert!(t >= last_seen[i], "{}: latest went back in time", users[i]);
                    last_seen[i] = t;
                }
            }
        })
    };
    writer.await.unwrap();
    reader.await.unwrap();
    for u in &users {
        let latest = s.latest_reading(&user(u)).await.unwrap().unwrap();
        assert_eq!(latest.reading.timestamp, slot(19), "{u}");
    }
}

fn request(
    u: &str,
    start: Option<i64>,
    end: Option<i64>,
    order: Order,
    limit: usize,
) -> PageRequest {
    PageRequest {
        user_id: user(u),
        start: start.map(slot),
        end: end.map(slot),
        order,
        limit,
        seek: None,
    }
}

async fn seed(s: &S, u: &str, slots: std::ops::Range<i64>) {
    let batch = slots
        .map(|i| cgm(u, slot(i), 100 + i.rem_euclid(50) as u16))
        .collect();
    s.upsert_readings(batch).await.unwrap();
}

async fn range_is_start_inclusive_end_exclusive(s: S) {
    seed(&s, "u1", 0..20).await;
    seed(&s, "u2", 0..20).await;
    let page = fetch_page(
        s.as_ref(),
        &request("u1", Some(5), Some(10), Order::Asc, 100),
    )
    .await
    .unwrap();
    let times: Vec<ReadingTime> = page.readings.iter().map(|r| r.reading.timestamp).collect();
    assert_eq!(times, (5..10).map(slot).collect::<Vec<_>>());
    assert!(page
        .readings
        .iter()
        .all(|r| r.reading.user_id.as_str() == "u1"));
    assert_eq!((page.next, page.prev), (None, None));

    let one_second_later = ReadingTime::from_unix_seconds(slot(5).unix_seconds() + 1).unwrap();
    let mut req = request("u1", None, Some(10), Order::Desc, 100);
    req.start = Some(one_second_later);
    let page = fetch_page(s.as_ref(), &req).await.unwrap();
    let first = page.readings.first().map(|r| r.reading.timestamp);
    let last = page.readings.last().map(|r| r.reading.timestamp);
    assert_eq!((first, last), (Some(slot(9)), Some(slot(6))));

    let empty = fetch_page(
        s.as_ref(),
        &request("u1", Some(30), Some(40), Order::Asc, 10),
    )
    .await
    .unwrap();
    assert!(empty.readings.is_empty() && empty.next.is_none() && empty.prev.is_none());
}

/// Walks forward with `next` to the end, then back with `prev` to the start.
async fn walk(s: &S, order: Order, limit: usize) -> (Vec<i64>, Vec<i64>) {
    let mut req = request("u1", Some(0), Some(103), order, limit);
    let mut forward = Vec::new();
    let mut pages = Vec::new();
    loop {
        let page = fetch_page(s.as_ref(), &req).await.unwrap();
        assert!(page.readings.len() <= limit);
        forward.extend(
            page.readings
                .iter()
                .map(|r| r.reading.timestamp.unix_seconds()),
        );
        pages.push(page.readings.len());
        match page.next {
            Some(next) => req.seek = Some(next),
            None => break,
        }
    }
    // Back from the last page.
    let mut backward = Vec::new();
    let last_page = fetch_page(s.as_ref(), &req).await.unwrap();
    backward.extend(
        last_page
            .readings
            .iter()
            .rev()
            .map(|r| r.reading.timestamp.unix_seconds()),
    );
    let mut prev = last_page.prev;
    while let Some(p) = prev {
        assert!(matches!(p, Seek::Before(_)));
        req.seek = Some(p);
        let page = fetch_page(s.as_ref(), &req).await.unwrap();
        assert!(
            page.next.is_some(),
            "a page reached backwards has a next page"
        );
        backward.extend(
            page.readings
                .iter()
                .rev()
                .map(|r| r.reading.timestamp.unix_seconds()),
        );
        prev = page.prev;
    }
    backward.reverse();
    (forward, backward)
}

async fn pagination_visits_every_reading_once_in_both_orders(s: S) {
    seed(&s, "u1", 0..103).await;
    seed(&s, "u2", 0..103).await;
    let all: Vec<i64> = (0..103).map(|i| slot(i).unix_seconds()).collect();
    for limit in [1, 7, 10, 103, 1000] {
        let (forward, backward) = walk(&s, Order::Asc, limit).await;
        assert_eq!(forward, all, "asc, limit {limit}");
        assert_eq!(backward, all, "asc back, limit {limit}");
        let (forward, backward) = walk(&s, Order::Desc, limit).await;
        let rev: Vec<i64> = all.iter().rev().copied().collect();
        assert_eq!(forward, rev, "desc, limit {limit}");
        assert_eq!(backward, rev, "desc back, limit {limit}");
    }
}

async fn pagination_is_stable_while_readings_arrive(s: S) {
    seed(&s, "u1", 0..50).await;
    let mut req = request("u1", None, None, Order::Asc, 10);
    let mut seen = Vec::new();
    loop {
        let page = fetch_page(s.as_ref(), &req).await.unwrap();
        seen.extend(
            page.readings
                .iter()
                .map(|r| r.reading.timestamp.unix_seconds()),
        );
        // New data lands behind the cursor and ahead of it meanwhile.
        let n = seen.len() as i64;
        seed(&s, "u1", -1 - n..-n).await;
        seed(&s, "u1", 200 + n..201 + n).await;
        match page.next {
            Some(n) => req.seek = Some(n),
            None => break,
        }
    }
    let unique: BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no reading twice");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "strictly ascending");
    assert!(
        (0..50).all(|i| unique.contains(&slot(i).unix_seconds())),
        "none skipped"
    );
    assert!(
        seen.iter().all(|t| *t >= slot(0).unix_seconds()),
        "nothing from behind the cursor"
    );
}

async fn concurrent_writers_to_one_user(s: S) {
    // 8 writers, overlapping slots, different values: every slot ends up with exactly
    // one row whose version equals 1 + the number of updates it received.
    let writers = (0..8u16).map(|w| {
        let s = s.clone();
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for chunk in 0..10i64 {
                let batch = (chunk * 10..chunk * 10 + 20)
                    .map(|i| cgm("u1", slot(i), 100 + w))
                    .collect();
                outcomes.extend(s.upsert_readings(batch).await.unwrap());
            }
            outcomes
        })
    });
    let mut inserted = 0;
    let mut updated = 0;
    for w in writers {
        for o in w.await.unwrap() {
            match o.outcome {
                Outcome::Inserted => inserted += 1,
                Outcome::Updated => updated += 1,
                Outcome::Duplicate(_) => {}
            }
        }
    }
    assert_eq!(inserted, 110, "each of the 110 slots inserted exactly once");
    let page = fetch_page(s.as_ref(), &request("u1", None, None, Order::Asc, 1000))
        .await
        .unwrap();
    assert_eq!(page.readings.len(), 110);
    let version_sum: u32 = page.readings.iter().map(|r| r.version).sum();
    assert_eq!(
        version_sum as usize,
        110 + updated,
        "versions account for every update"
    );
}

async fn ping_answers(s: S) {
    s.ping().await.unwrap();
    assert!(!s.backend().is_empty());
}

// --- Source connections ---

fn sealed(tag: u8) -> SealedTokens {
    SealedTokens {
        key_id: format!("key{tag}"),
        nonce: vec![tag; 12],
        ciphertext: vec![tag; 40],
    }
}

pub(super) fn connected(u: &str, tag: u8) -> Connection {
    let now = Utc::now();
    Connection {
        status: ConnectionStatus::Connected,
        tokens: Some(sealed(tag)),
        access_expires_at: Some(now + chrono::Duration::hours(2)),
        access_refresh_at: Some(now + chrono::Duration::minutes(115)),
        connected_at: Some(now),
        ..Connection::disconnected(user(u), Provider::Dexcom, now)
    }
}

async fn pending_authorization_is_single_use_and_expires(s: S) {
    let now = Utc::now();
    let pending = |hash: &str, expires_in: i64| PendingAuthorization {
        state_hash: hash.into(),
        user_id: user("u1"),
        provider: Provider::Dexcom,
        pkce_verifier: Some(Secret::new("verifier".into())),
        browser_hash: Some("browser".into()),
        expires_at: now + chrono::Duration::seconds(expires_in),
    };
    s.put_pending_authorization(pending("live", 600), 10)
        .await
        .unwrap();
    s.put_pending_authorization(pending("stale", -1), 10)
        .await
        .unwrap();
    let taken = s
        .take_pending_authorization("live", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.user_id, user("u1"));
    assert_eq!(taken.pkce_verifier.unwrap().expose(), "verifier");
    assert_eq!(taken.browser_hash.as_deref(), Some("browser"));
    assert!(
        s.take_pending_authorization("live", now)
            .await
            .unwrap()
            .is_none(),
        "single use"
    );
    assert!(
        s.take_pending_authorization("stale", now)
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    assert!(s
        .take_pending_authorization("never", now)
        .await
        .unwrap()
        .is_none());
}

async fn connection_round_trips_and_versions_bump(s: S) {
    assert!(s
        .get_connection(&user("u1"), Provider::Dexcom)
        .await
        .unwrap()
        .is_none());
    let c = connected("u1", 1);
    s.put_connection(c.clone()).await.unwrap();
    let got = s
        .get_connection(&user("u1"), Provider::Dexcom)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.tokens, c.tokens);
    assert_eq!(got.status, ConnectionStatus::Connected);
    assert_eq!(
        got.access_refresh_at.map(|t| t.timestamp_millis()),
        c.access_refresh_at.map(|t| t.timestamp_millis())
    );
    let v1 = got.token_version;
    s.put_connection(connected("u1", 2)).await.unwrap();
    let got = s
        .get_connection(&user("u1"), Provider::Dexcom)
        .await
        .unwrap()
        .unwrap();
    assert!(
        got.token_version > v1,
        "the store bumps token_version on every write"
    );
    assert_eq!(got.tokens, Some(sealed(2)));
    assert_eq!(s.list_connections(&user("u1")).await.unwrap().len(), 1);
    assert!(s.list_connections(&user("u2")).await.unwrap().is_empty());
    let at = Utc::now();
    s.record_sync(&user("u1"), Provider::Dexcom, at, None)
        .await
        .unwrap();
    s.record_sync(&user("u1"), Provider::Dexcom, at, Some("boom".into()))
        .await
        .unwrap();
    let got = s
        .get_connection(&user("u1"), Provider::Dexcom)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.last_sync_at.map(|t| t.timestamp_millis()),
        Some(at.timestamp_millis())
    );
    assert_eq!(
        got.last_error.as_deref(),
        Some("boom"),
        "a failed sync keeps last_sync_at"
    );
}

async fn connections_are_listed_by_status(s: S) {
    s.put_connection(connected("b", 1)).await.unwrap();
    s.put_connection(connected("a", 1)).await.unwrap();
    let mut off = connected("c", 1);
    off.status = ConnectionStatus::Disconnected;
    off.tokens = None;
    s.put_connection(off).await.unwrap();
    let ids: Vec<String> = s
        .connections_with_status(Provider::Dexcom, ConnectionStatus::Connected)
        .await
        .unwrap()
        .iter()
        .map(|c| c.user_id.to_string())
        .collect();
    assert_eq!(ids, ["a", "b"]);
}

async fn one_refresh_lease_at_a_time(s: S) {
    s.put_connection(connected("u1", 1)).await.unwrap();
    let now = Utc::now();
    let until = now + chrono::Duration::seconds(60);
    let a = s
        .try_refresh_lease(&user("u1"), Provider::Dexcom, "a", now, until)
        .await
        .unwrap();
    assert!(a.is_some());
    let b = s
        .try_refresh_lease(&user("u1"), Provider::Dexcom, "b", now, until)
        .await
        .unwrap();
    assert!(b.is_none(), "held by a");
    // Only the holder can finish.
    let refreshed = RefreshOutcome::Refreshed {
        tokens: sealed(9),
        access_expires_at: until,
        access_refresh_at: until,
    };
    assert!(!s
        .finish_refresh(&user("u1"), Provider::Dexcom, "b", refreshed.clone(), now)
        .await
        .unwrap());
    let before = s
        .get_connection(&user("u1"), Provider::Dexcom)
        .await
        .unwrap()
        .unwrap();
    assert!(s
        .finish_refresh(&user("u1"), Provider::Dexcom, "a", refreshed, now)
        .await
        .unwrap());
    let after = s
        .get_connection(&user("u1"), Provider::Dexcom)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.tokens, Some(sealed(9)));
    assert_eq!(after.token_version, before.token_version + 1);
    // Released: b may take it now; an expired lease can be taken over.
    let short = now + chrono::Duration::milliseconds(1);
    assert!(s
        .try_refresh_lease(&user("u1"), Provider::Dexcom, "b", now, short)
        .await
        .unwrap()
        .is_some());
    let later = now + chrono::Duration::seconds(1);
    assert!(
        s.try_refresh_lease(
            &user("u1"),
            Provider::Dexcom,
            "c",
            later,
            later + chrono::Duration::seconds(60)
        )
        .await
        .unwrap()
        .is_some(),
        "a crashed holder's lease expires"
    );
    assert!(!s
        .finish_refresh(
            &user("u1"),
            Provider::Dexcom,
            "b",
            RefreshOutcome::Released,
            later
        )
        .await
        .unwrap());
}

async fn revoked_refresh_drops_tokens_and_a_put_cancels_leases(s: S) {
    s.put_connection(connected("u1", 1)).await.unwrap();
    let now = Utc::now();
    let until = now + chrono::Duration::seconds(60);
    assert!(s
        .try_refresh_lease(&user("u1"), Provider::Dexcom, "a", now, until)
        .await
        .unwrap()
        .is_some());
    let revoked = RefreshOutcome::Revoked {
        error: "invalid_grant".into(),
    };
    assert!(s
        .finish_refresh(&user("u1"), Provider::Dexcom, "a", revoked, now)
        .await
        .unwrap());
    let c = s
        .get_connection(&user("u1"), Provider::Dexcom)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.status, ConnectionStatus::ReauthRequired);
    assert!(c.tokens.is_none() && c.access_expires_at.is_none());
    assert_eq!(c.last_error.as_deref(), Some("invalid_grant"));
    assert!(
        s.try_refresh_lease(&user("u1"), Provider::Dexcom, "a", now, until)
            .await
            .unwrap()
            .is_none(),
        "no lease on a connection that is not connected"
    );

    // A reconnect (put) while a refresh is in flight wins over that refresh.
    s.put_connection(connected("u2", 1)).await.unwrap();
    assert!(s
        .try_refresh_lease(&user("u2"), Provider::Dexcom, "a", now, until)
        .await
        .unwrap()
        .is_some());
    s.put_connection(connected("u2", 2)).await.unwrap();
    let late = RefreshOutcome::Refreshed {
        tokens: sealed(3),
        access_expires_at: until,
        access_refresh_at: until,
    };
    assert!(!s
        .finish_refresh(&user("u2"), Provider::Dexcom, "a", late, now)
        .await
        .unwrap());
    let c = s
        .get_connection(&user("u2"), Provider::Dexcom)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.tokens, Some(sealed(2)));
}

// --- Sharing ---

async fn shares_are_kept_replaced_and_revoked(s: S) {
    use cgm_hub::records::shares::{Share, ShareRole};
    let now = Utc::now();
    let share = |grantee: &str, role, expires: Option<i64>| Share {
        patient_id: user("pat"),
        grantee_id: user(grantee),
        role,
        created_at: chrono::DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap(),
        expires_at: expires
            .map(|e| chrono::DateTime::from_timestamp_millis(now.timestamp_millis() + e).unwrap()),
    };
    assert!(s
        .get_share(&user("pat"), &user("mom"))
        .await
        .unwrap()
        .is_none());
    s.put_share(share("mom", ShareRole::Caregiver, None), 100)
        .await
        .unwrap();
    s.put_share(share("doc", ShareRole::Clinician, Some(60_000)), 100)
        .await
        .unwrap();
    s.put_share(share("mom", ShareRole::Caregiver, Some(-1)), 100)
        .await
        .unwrap();
    let got = s
        .get_share(&user("pat"), &user("mom"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got,
        share("mom", ShareRole::Caregiver, Some(-1)),
        "replaced, expiry kept"
    );
    assert!(!got.is_active(now));
    let listed = s.list_shares(&user("pat"), all_shares()).await.unwrap();
    let grantees: Vec<_> = listed.iter().map(|x| x.grantee_id.to_string()).collect();
    assert_eq!(grantees, ["doc", "mom"]);
    assert!(
        s.list_shares(&user("mom"), all_shares())
            .await
            .unwrap()
            .is_empty(),
        "grants are one-way"
    );
    assert!(s.delete_share(&user("pat"), &user("mom")).await.unwrap());
    assert!(!s.delete_share(&user("pat"), &user("mom")).await.unwrap());
    assert!(s
        .get_share(&user("pat"), &user("mom"))
        .await
        .unwrap()
        .is_none());
}

// --- Audit trail ---

async fn audit_entries_are_appended_in_order_and_filtered(s: S) {
    use cgm_hub::records::audit::{AuditEntry, AuditQuery};
    use cgm_hub::records::roles::Role;
    let at = |ms: i64| chrono::DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap();
    let entry = |ms, target: &str, action| AuditEntry {
        at: at(ms),
        actor: user("doc"),
        actor_roles: [Role::Clinician].into(),
        action,
        target_user: user(target),
        decision: "allowed",
        status: 200,
        request_id: format!("req-{ms}"),
    };
    // Alike accesses in a row (a backend may store them together), broken by
    // others, and times that are not in order within a batch.
    let first_batch = vec![
        entry(1, "a", "read_readings"),
        entry(4, "a", "read_readings"),
        entry(2, "a", "read_readings"),
        entry(5, "b", "read_readings"),
        entry(6, "a", "read_readings"),
        AuditEntry {
            status: 403,
            decision: "denied",
            ..entry(7, "a", "read_readings")
        },
    ];
    s.append_audit(std::sync::Arc::from(first_batch.clone()))
        .await
        .unwrap();
    s.append_audit(std::sync::Arc::from(vec![entry(8, "a", "manage_shares")]))
        .await
        .unwrap();
    let query = AuditQuery {
        target_user: None,
        from: None,
        until: None,
        after_seq: None,
        limit: 100,
    };
    let everything = s.query_audit(query.clone()).await.unwrap();
    let entries: Vec<AuditEntry> = everything.iter().map(|r| r.entry.clone()).collect();
    let mut expected = first_batch;
    expected.push(entry(8, "a", "manage_shares"));
    assert_eq!(entries, expected, "every entry, as appended, in order");
    assert!(
        everything.windows(2).all(|w| w[0].seq < w[1].seq),
        "positions increase"
    );
    let ids = |records: Vec<cgm_hub::records::audit::AuditRecord>| -> Vec<String> {
        records.into_iter().map(|r| r.entry.request_id).collect()
    };
    let of_a = AuditQuery {
        target_user: Some(user("a")),
        ..query.clone()
    };
    assert_eq!(
        ids(s.query_audit(of_a).await.unwrap()),
        ["req-1", "req-4", "req-2", "req-6", "req-7", "req-8"]
    );
    let window = AuditQuery {
        from: Some(at(2)),
        until: Some(at(5)),
        ..query.clone()
    };
    assert_eq!(
        ids(s.query_audit(window).await.unwrap()),
        ["req-4", "req-2"],
        "[from, until) by each entry's own time"
    );
    // Pages of two, each starting after the last position of the one before.
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .query_audit(AuditQuery {
                after_seq: after,
                limit: 2,
                ..query.clone()
            })
            .await
            .unwrap();
        after = page.last().map(|r| r.seq);
        let done = page.len() < 2;
        pages.push(ids(page));
        if done {
            break;
        }
    }
    assert_eq!(
        pages,
        [
            vec!["req-1", "req-4"],
            vec!["req-2", "req-5"],
            vec!["req-6", "req-7"],
            vec!["req-8"]
        ]
    );
}

macro_rules! conformance {
    ($backend:ident, $make:path) => {
        mod $backend {
            conformance!(@cases $make;
                identical_reading_is_a_duplicate,
                cgm_replaces_manual_and_bumps_version,
                manual_never_replaces_cgm,
                newer_record_of_same_type_wins,
                a_batch_is_resolved_in_order,
                every_field_round_trips,
                latest_is_the_newest_of_that_user,
                latest_follows_every_write,
                latest_stays_exact_under_concurrent_reads_and_writes,
                latest_is_exact_for_many_users_under_writes,
                range_is_start_inclusive_end_exclusive,
                pagination_visits_every_reading_once_in_both_orders,
                pagination_is_stable_while_readings_arrive,
                encoded_pages_are_the_pages_of_fetch_page,
                concurrent_writers_to_one_user,
                ping_answers,
                pending_authorization_is_single_use_and_expires,
                connection_round_trips_and_versions_bump,
                connections_are_listed_by_status,
                one_refresh_lease_at_a_time,
                revoked_refresh_drops_tokens_and_a_put_cancels_leases,
                shares_are_kept_replaced_and_revoked,
                shares_are_capped_per_patient_even_concurrently,
                shares_page_in_grantee_order,
                expired_pending_authorizations_are_pruned,
                each_user_keeps_only_their_newest_pending_authorizations,
                audit_entries_are_appended_in_order_and_filtered,
                jobs_are_idempotent_and_scheduled_polls_coalesce,
                one_sync_lease_per_user_and_priority_order,
                a_lapsed_lease_hands_the_job_on_with_its_checkpoint,
                job_ends_update_the_connection_and_retries_wait,
                a_job_behind_its_users_running_sync_is_due_but_not_lagging,
                requested_jobs_coalesce_while_queued_and_are_capped,
                finished_scheduled_jobs_are_pruned,
                webhook_inbox_stores_claims_and_finishes,
                changes_commit_their_events_and_duplicates_none,
                outbox_claims_are_exclusive_until_they_lapse,
                task_claims_are_exclusive_under_concurrency,
                a_lapsed_task_lease_is_reclaimed,
                tasks_are_idempotent_by_key,
                tasks_are_claimed_by_priority_then_age,
                one_running_task_per_concurrency_key,
                task_renewals_and_ends_need_the_lease,
                profiles_round_trip_and_default,
                upserts_bump_the_day_marks_of_what_they_change,
                daily_rows_round_trip,
                a_late_reading_makes_only_its_days_stale,
                alert_settings_round_trip,
                one_open_alert_per_type_even_concurrently,
                alert_changes_commit_their_events,
                alerts_list_newest_first_by_status_window_and_cursor,
                newest_times_move_forward_only_and_list_by_time,
                quiet_users_page_in_time_then_user_order,
                notification_endpoints_round_trip_list_and_delete,
                notification_endpoints_are_capped_per_user_even_concurrently,
                accounts_are_unique_by_email_case_insensitively,
                a_disabled_account_is_known_as_such_and_loses_its_sessions,
                refresh_tokens_rotate_once_and_reuse_revokes_the_family,
                invitations_round_trip_and_are_used_once,
                journal_uploads_are_idempotent_by_external_id,
                journal_windows_page_by_time_and_id_in_both_orders,
                journal_updates_and_deletes_keep_identity,
                journal_batches_are_stored_whole_or_not_at_all,
                health_uploads_are_stored_whole_or_not_at_all,
                meal_responses_round_trip_and_are_replaced,
                meal_responses_are_read_many_at_once_and_per_user,
                a_meal_response_goes_with_its_meal,
                account_tokens_round_trip_and_are_used_once,
                a_new_password_revokes_every_session_of_its_account_only,
                verified_emails_and_enabled_accounts_stick
            );
        }
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let under_test = $make().await;
                super::$case(under_test.store.clone()).await;
            }
        )*
    };
}

// One line per backend.
conformance!(sqlite, crate::helpers::sqlite_store);
conformance!(postgres, crate::helpers::postgres_store);
#[cfg(feature = "dynamodb")]
conformance!(dynamodb, crate::helpers::dynamodb_store);
