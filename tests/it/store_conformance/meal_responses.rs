//! Stored meal response cases: a response round-trips and is replaced, many
//! ids are read at once (more than one DynamoDB batch, unknown ids among
//! them), users stay apart, and a response lives no longer than its meal.

use cgm_hub::analytics::{MealResponse, MealResponseStatus};
use cgm_hub::domain::{Meal, MealInput, TimePolicy};
use cgm_hub::records::journal::{JournalBody, JournalEntry, JournalKind};
use cgm_hub::records::meal_response::StoredMealResponse;
use chrono::{DateTime, Duration, DurationRound, Utc};
use uuid::Uuid;

use super::*;

fn meal_at(u: &str, at: DateTime<Utc>) -> JournalEntry {
    let input = MealInput {
        timestamp: Some(at.to_rfc3339()),
        carbs_grams: Some(40.0),
        ..Default::default()
    };
    let body = Meal::parse(input, "u", &TimePolicy::default(), Utc::now()).unwrap();
    JournalEntry::new(
        user(u),
        "manual".into(),
        None,
        JournalBody::Meal(body),
        Utc::now(),
    )
}

/// `n` meals of `u` half an hour apart from four days ago, stored.
async fn meals(s: &S, u: &str, n: usize) -> Vec<Uuid> {
    let base = (Utc::now() - Duration::days(4))
        .duration_trunc(Duration::hours(1))
        .unwrap();
    let entries: Vec<JournalEntry> = (0..n)
        .map(|i| meal_at(u, base + Duration::minutes(30 * i as i64)))
        .collect();
    let ids = entries.iter().map(|e| e.id).collect();
    s.create_journal_entries(entries).await.unwrap();
    ids
}

fn complete(iauc_120: f64) -> MealResponse {
    MealResponse {
        status: MealResponseStatus::Complete,
        baseline: Some(100.0),
        peak: Some(160.0),
        time_to_peak: Some(60.0),
        delta_g: Some(60.0),
        iauc_120: Some(iauc_120),
        iauc_180: Some(3600.0),
        return_to_baseline: None,
        coverage: 0.973,
        overlap: true,
        score: Some(100.0 / 3.0 + 0.1),
    }
}

fn stored(u: &str, meal_id: Uuid, response: MealResponse, key: &str) -> StoredMealResponse {
    StoredMealResponse {
        user_id: user(u),
        meal_id,
        response,
        key: key.to_owned(),
        // Whole milliseconds: what every backend keeps.
        computed_at: Utc::now()
            .duration_trunc(Duration::milliseconds(1))
            .unwrap(),
    }
}

pub(super) async fn meal_responses_round_trip_and_are_replaced(s: S) {
    let ids = meals(&s, "mr1", 2).await;
    assert!(s
        .get_meal_responses(&user("mr1"), &ids)
        .await
        .unwrap()
        .is_empty());
    let first = stored("mr1", ids[0], complete(3600.0), "key-1");
    let insufficient = MealResponse {
        status: MealResponseStatus::InsufficientData,
        baseline: None,
        peak: None,
        time_to_peak: None,
        delta_g: None,
        iauc_120: None,
        iauc_180: None,
        return_to_baseline: None,
        coverage: 0.514,
        overlap: false,
        score: None,
    };
    let second = stored("mr1", ids[1], insufficient, "key-2");
    s.put_meal_responses(&user("mr1"), vec![first.clone(), second.clone()])
        .await
        .unwrap();
    let mut got = s.get_meal_responses(&user("mr1"), &ids).await.unwrap();
    got.sort_by_key(|r| r.meal_id == ids[1]);
    assert_eq!(got, vec![first.clone(), second.clone()]);

    // Replaced: a new key and response; the other meal's stays.
    let replaced = stored("mr1", ids[0], complete(1234.5), "key-1b");
    s.put_meal_responses(&user("mr1"), vec![replaced.clone()])
        .await
        .unwrap();
    let got = s.get_meal_responses(&user("mr1"), &ids[..1]).await.unwrap();
    assert_eq!(got, vec![replaced]);
    let got = s.get_meal_responses(&user("mr1"), &ids[1..]).await.unwrap();
    assert_eq!(got, vec![second]);
}

pub(super) async fn meal_responses_are_read_many_at_once_and_per_user(s: S) {
    // 130 meals: more than one DynamoDB read batch (100) and write batch (50).
    let ids = meals(&s, "mr2", 130).await;
    let other = meals(&s, "mr3", 1).await;
    let puts: Vec<StoredMealResponse> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| stored("mr2", *id, complete(i as f64), &format!("k{i}")))
        .collect();
    s.put_meal_responses(&user("mr2"), puts.clone())
        .await
        .unwrap();
    let mut asked: Vec<Uuid> = ids.clone();
    asked.extend((0..20).map(|_| Uuid::new_v4()));
    asked.push(other[0]);
    let mut got = s.get_meal_responses(&user("mr2"), &asked).await.unwrap();
    got.sort_by_key(|r| ids.iter().position(|id| *id == r.meal_id));
    assert_eq!(got, puts, "every stored one, none for unknown ids");

    // Another user asking for those ids gets nothing; nor is anything stored
    // for a meal that is not the writer's, or not a stored meal at all.
    assert!(s
        .get_meal_responses(&user("mr3"), &ids)
        .await
        .unwrap()
        .is_empty());
    s.put_meal_responses(
        &user("mr3"),
        vec![
            stored("mr3", ids[0], complete(1.0), "theirs"),
            stored("mr3", Uuid::new_v4(), complete(1.0), "nobody's"),
            stored("mr2", other[0], complete(1.0), "labelled as mr2"),
        ],
    )
    .await
    .unwrap();
    assert!(s
        .get_meal_responses(&user("mr3"), &[ids[0], other[0]])
        .await
        .unwrap()
        .is_empty());
    let kept = s.get_meal_responses(&user("mr2"), &ids[..1]).await.unwrap();
    assert_eq!(kept, vec![puts[0].clone()]);
    assert!(s
        .get_meal_responses(&user("mr2"), &[])
        .await
        .unwrap()
        .is_empty());
}

pub(super) async fn a_meal_response_goes_with_its_meal(s: S) {
    let ids = meals(&s, "mr4", 2).await;
    let puts = vec![
        stored("mr4", ids[0], complete(1.0), "a"),
        stored("mr4", ids[1], complete(2.0), "b"),
    ];
    s.put_meal_responses(&user("mr4"), puts.clone())
        .await
        .unwrap();
    assert!(s
        .delete_journal_entry(&user("mr4"), JournalKind::Meal, ids[0])
        .await
        .unwrap());
    let got = s.get_meal_responses(&user("mr4"), &ids).await.unwrap();
    assert_eq!(got, vec![puts[1].clone()], "only the kept meal's");
    // A write for the deleted meal (a request that read it before) stores nothing.
    s.put_meal_responses(&user("mr4"), vec![puts[0].clone()])
        .await
        .unwrap();
    let got = s.get_meal_responses(&user("mr4"), &ids[..1]).await.unwrap();
    assert!(got.is_empty(), "{got:?}");
    // An update keeps it (its key tells whether it still holds).
    let entry = s
        .get_journal_entry(&user("mr4"), JournalKind::Meal, ids[1])
        .await
        .unwrap()
        .unwrap();
    let moved = meal_at("mr4", entry.at() + Duration::minutes(5));
    let next = JournalEntry {
        id: entry.id,
        ..moved
    };
    s.update_journal_entry(next).await.unwrap().unwrap();
    let got = s.get_meal_responses(&user("mr4"), &ids[1..]).await.unwrap();
    assert_eq!(got, vec![puts[1].clone()]);
}
