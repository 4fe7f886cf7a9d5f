//! Conformance cases of profiles and daily aggregates: profiles round-trip,
//! the reading upsert bumps the day marks of what it changed (and nothing
//! else), rows round-trip with their basis, and `store::daily` recomputes
//! exactly the days a late reading made stale.

use cgm_hub::domain::{DiabetesType, DisplayUnit, Profile, TargetRange, TimeZoneName};
use cgm_hub::records::daily::{DailyRow, DayBasis, GlucoseFigures, JournalFigures};
use cgm_hub::store::daily::daily_aggregates;
use cgm_hub::store::profile_or_default;
use chrono::{Duration, NaiveDate};

use super::S;
use crate::helpers::*;

/// The UTC date of `slot(i)`.
fn date_of_slot(i: i64) -> NaiveDate {
    slot(i).as_datetime().date_naive()
}

async fn marks(s: &S, u: &str, from: NaiveDate, days: i64) -> Vec<(NaiveDate, i64)> {
    let mut m = s
        .day_marks(&user(u), from, from + Duration::days(days))
        .await
        .unwrap();
    m.sort();
    m
}

pub(super) async fn profiles_round_trip_and_default(s: S) {
    assert_eq!(s.get_profile(&user("p1")).await.unwrap(), None);
    assert_eq!(
        profile_or_default(s.as_ref(), &user("p1")).await.unwrap(),
        Profile::default()
    );
    let berlin = Profile {
        timezone: TimeZoneName::parse("timezone", "Europe/Berlin").unwrap(),
        target: TargetRange::new(80, 160).unwrap(),
        display_unit: DisplayUnit::MmolL,
        diabetes_type: Some(DiabetesType::Gestational),
    };
    s.put_profile(&user("p1"), &berlin).await.unwrap();
    assert_eq!(s.get_profile(&user("p1")).await.unwrap(), Some(berlin));
    assert_eq!(s.get_profile(&user("p2")).await.unwrap(), None);
    // A put replaces the whole profile.
    s.put_profile(&user("p1"), &Profile::default())
        .await
        .unwrap();
    assert_eq!(
        s.get_profile(&user("p1")).await.unwrap(),
        Some(Profile::default())
    );
}

pub(super) async fn upserts_bump_the_day_marks_of_what_they_change(s: S) {
    let d0 = date_of_slot(0);
    let d1 = d0 + Duration::days(1);
    assert!(marks(&s, "u1", d0, 2).await.is_empty());
    // One batch, several readings of each of two UTC dates: one bump per date.
    s.upsert_readings(vec![
        cgm("u1", slot(1), 100),
        cgm("u1", slot(2), 110),
        cgm("u1", slot(289), 120),
        cgm("u1", slot(290), 130),
    ])
    .await
    .unwrap();
    assert_eq!(marks(&s, "u1", d0, 2).await, [(d0, 1), (d1, 1)]);
    // An exact duplicate changes nothing, nor does a manual reading that loses
    // to the sensor's.
    s.upsert_readings(vec![
        cgm("u1", slot(1), 100),
        reading("u1", slot(289), 90, cgm_hub::domain::ReadingType::Manual),
    ])
    .await
    .unwrap();
    assert_eq!(marks(&s, "u1", d0, 2).await, [(d0, 1), (d1, 1)]);
    // A changed value bumps its date only.
    s.upsert_readings(vec![cgm("u1", slot(2), 111)])
        .await
        .unwrap();
    assert_eq!(marks(&s, "u1", d0, 2).await, [(d0, 2), (d1, 1)]);
    // A new reading on another date, and another user's readings, leave these
    // marks alone.
    s.upsert_readings(vec![cgm("u2", slot(3), 100), cgm("u1", slot(600), 100)])
        .await
        .unwrap();
    assert_eq!(marks(&s, "u1", d0, 2).await, [(d0, 2), (d1, 1)]);
    assert_eq!(marks(&s, "u2", d0, 2).await, [(d0, 1)]);
    // The range is [from, until).
    assert_eq!(marks(&s, "u1", d1, 1).await, [(d1, 1)]);
}

fn row(date: NaiveDate, tz: &str, revision: i64, readings: Option<u32>) -> DailyRow {
    DailyRow {
        date,
        basis: DayBasis {
            timezone: TimeZoneName::parse("tz", tz).unwrap(),
            target: TargetRange::new(70, 180).unwrap(),
        },
        marks_revision: revision,
        glucose: readings.map(|n| GlucoseFigures {
            readings: n,
            avg_glucose: 123.456_789_012_345_67,
            min_glucose: 55.0,
            max_glucose: 250.0,
            std_glucose: (n > 1).then_some(31.25),
            time_in_range_percent: 100.0 / 3.0,
            time_above_range_percent: 50.0,
            time_below_range_percent: 100.0 / 6.0,
        }),
        journal: JournalFigures::default(),
    }
}

pub(super) async fn daily_rows_round_trip(s: S) {
    let d = NaiveDate::from_ymd_opt(2025, 1, 14).unwrap();
    let rows = vec![
        row(d, "UTC", 3, Some(288)),
        row(d + Duration::days(1), "America/New_York", 0, None),
        row(d + Duration::days(2), "UTC", 7, Some(1)),
    ];
    s.put_daily_rows(&user("u1"), rows.clone()).await.unwrap();
    let got = s
        .daily_rows(&user("u1"), d, d + Duration::days(3))
        .await
        .unwrap();
    assert_eq!(got, rows);
    assert!(s
        .daily_rows(&user("u2"), d, d + Duration::days(3))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.daily_rows(&user("u1"), d + Duration::days(1), d + Duration::days(2))
            .await
            .unwrap(),
        rows[1..2]
    );
    // A put replaces a row.
    let replaced = row(d, "Europe/Berlin", 4, None);
    s.put_daily_rows(&user("u1"), vec![replaced.clone()])
        .await
        .unwrap();
    assert_eq!(
        s.daily_rows(&user("u1"), d, d + Duration::days(1))
            .await
            .unwrap(),
        [replaced]
    );
}

pub(super) async fn a_late_reading_makes_only_its_days_stale(s: S) {
    let d0 = date_of_slot(0);
    let (d1, d2) = (d0 + Duration::days(1), d0 + Duration::days(2));
    let utc = DayBasis {
        timezone: TimeZoneName::UTC,
        target: TargetRange::default(),
    };
    // d0: 100, 200; d1: 60, 120, 180.
    s.upsert_readings(vec![
        cgm("u1", slot(10), 100),
        cgm("u1", slot(20), 200),
        cgm("u1", slot(300), 60),
        cgm("u1", slot(310), 120),
        cgm("u1", slot(320), 180),
    ])
    .await
    .unwrap();
    let first = daily_aggregates(s.as_ref(), &user("u1"), utc, d0, d2 + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(first.recomputed, [d0, d1, d2]);
    let dates: Vec<NaiveDate> = first.days.iter().map(|r| r.date).collect();
    assert_eq!(dates, [d0, d1], "a day without readings is omitted");
    let g1 = first.days[1].glucose.unwrap();
    assert_eq!((g1.readings, g1.avg_glucose), (3, 120.0));
    assert_eq!((g1.min_glucose, g1.max_glucose), (60.0, 180.0));
    assert_eq!(g1.std_glucose, Some(60.0));
    assert!((g1.time_below_range_percent - 100.0 / 3.0).abs() < 1e-9);
    assert!((g1.time_in_range_percent - 200.0 / 3.0).abs() < 1e-9);

    // Asked again: every row is fresh, nothing is recomputed.
    let again = daily_aggregates(s.as_ref(), &user("u1"), utc, d0, d2 + Duration::days(1))
        .await
        .unwrap();
    assert!(again.recomputed.is_empty(), "{:?}", again.recomputed);
    assert_eq!(again.days, first.days);

    // A late reading for d1 (and a duplicate for d0): d1 alone is stale.
    s.upsert_readings(vec![cgm("u1", slot(330), 240), cgm("u1", slot(10), 100)])
        .await
        .unwrap();
    let late = daily_aggregates(s.as_ref(), &user("u1"), utc, d0, d2 + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(late.recomputed, [d1]);
    let g1 = late.days[1].glucose.unwrap();
    assert_eq!(
        (g1.readings, g1.avg_glucose, g1.max_glucose),
        (4, 150.0, 240.0)
    );
    assert!((g1.time_above_range_percent - 25.0).abs() < 1e-9);
    assert_eq!(late.days[0], first.days[0]);

    // Another basis (zone or target) makes rows stale too.
    let tokyo = DayBasis {
        timezone: TimeZoneName::parse("tz", "Asia/Tokyo").unwrap(),
        ..utc
    };
    let shifted = daily_aggregates(s.as_ref(), &user("u1"), tokyo, d0, d2 + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(shifted.recomputed, [d0, d1, d2]);
    // In Tokyo (UTC+9) d1's readings at 01:00-03:30 UTC are all on local d1 too.
    assert_eq!(shifted.days[1].glucose.unwrap().readings, 4);
    let narrow = DayBasis {
        target: TargetRange::new(100, 200).unwrap(),
        ..tokyo
    };
    let ranged = daily_aggregates(s.as_ref(), &user("u1"), narrow, d1, d2)
        .await
        .unwrap();
    assert_eq!(ranged.recomputed, [d1]);
    assert!((ranged.days[0].glucose.unwrap().time_below_range_percent - 25.0).abs() < 1e-9);
}
