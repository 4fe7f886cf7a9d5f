//! Newest-reading-time cases (the stale timer's index): the upsert raises a
//! user's time to the newest reading it writes, never back (a backfill, a
//! duplicate); users are listed by time in `[from, until)`, paged in (time,
//! user) order, ties included.

use cgm_hub::records::stale::NewestReading;
use chrono::{DateTime, Duration, Utc};

use super::*;

fn at(secs: i64) -> ReadingTime {
    ReadingTime::from_unix_seconds(secs).unwrap()
}

fn newest(u: &str, secs: i64) -> NewestReading {
    NewestReading {
        user_id: user(u),
        at: DateTime::from_timestamp(secs, 0).unwrap(),
    }
}

pub(super) async fn newest_times_move_forward_only_and_list_by_time(s: S) {
    let now = Utc::now();
    let t = now.timestamp();
    s.upsert_readings(vec![
        cgm("nw1", at(t - 30 * 60), 120),
        cgm("nw1", at(t - 10 * 60), 121),
        cgm("nw2", at(t - 2 * 3600), 130),
        cgm("nw3", at(t - 3 * 86_400), 140),
    ])
    .await
    .unwrap();
    // A backfill of older readings, a duplicate and a replaced reading do
    // not move nw1's time back.
    s.upsert_readings(vec![
        cgm("nw1", at(t - 5 * 3600), 100),
        cgm("nw1", at(t - 10 * 60), 121),
        cgm("nw1", at(t - 30 * 60), 125),
    ])
    .await
    .unwrap();
    let day = now - Duration::hours(24);
    let quiet = s
        .quiet_users(day, now - Duration::minutes(1), None, 100)
        .await
        .unwrap();
    assert_eq!(
        quiet,
        [newest("nw2", t - 2 * 3600), newest("nw1", t - 10 * 60)],
        "by time; nw3 is more than a day old"
    );
    // `until` is exclusive, `from` inclusive.
    let until = DateTime::from_timestamp(t - 10 * 60, 0).unwrap();
    let quiet = s.quiet_users(day, until, None, 100).await.unwrap();
    assert_eq!(quiet, [newest("nw2", t - 2 * 3600)]);
    let from = DateTime::from_timestamp(t - 10 * 60, 0).unwrap();
    let quiet = s.quiet_users(from, now, None, 100).await.unwrap();
    assert_eq!(quiet, [newest("nw1", t - 10 * 60)]);
    // A newer reading moves the time forward, out of the window.
    s.upsert_readings(vec![cgm("nw2", at(t - 20), 131)])
        .await
        .unwrap();
    let quiet = s
        .quiet_users(day, now - Duration::minutes(1), None, 100)
        .await
        .unwrap();
    assert_eq!(quiet, [newest("nw1", t - 10 * 60)]);
}

pub(super) async fn quiet_users_page_in_time_then_user_order(s: S) {
    let now = Utc::now();
    let t = now.timestamp();
    // 23 users over 5 distinct times (ties share a second).
    let mut expected: Vec<NewestReading> = (0..23)
        .map(|i| newest(&format!("pg{:02}", (i * 7) % 23), t - 600 - 60 * (i % 5)))
        .collect();
    s.upsert_readings(
        expected
            .iter()
            .map(|n| cgm(n.user_id.as_str(), at(n.at.timestamp()), 110))
            .collect(),
    )
    .await
    .unwrap();
    expected.sort_by(|a, b| (a.at, a.user_id.as_str()).cmp(&(b.at, b.user_id.as_str())));
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .quiet_users(now - Duration::hours(24), now, after.take(), 4)
            .await
            .unwrap();
        assert!(page.len() <= 4);
        seen.extend(page.iter().cloned());
        if page.len() < 4 {
            break;
        }
        after = page.last().cloned();
    }
    assert_eq!(seen, expected, "every user once, in (time, user) order");
}
