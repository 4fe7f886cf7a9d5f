//! Journal cases: uploads are idempotent by (user, kind, source, external id),
//! windows page with (at, id) cursors in both orders, updates and deletes
//! keep identity and announce themselves, users and kinds stay apart, and a
//! batch is stored whole or not at all.

use cgm_hub::domain::{Activity, ActivityInput, ActivityType, Meal, MealInput, TimePolicy};
use cgm_hub::records::journal::{
    JournalBody, JournalCreated, JournalEntry, JournalKind, JournalQuery,
};
use chrono::{DateTime, Duration, DurationRound, Utc};

use super::*;

fn base() -> DateTime<Utc> {
    (Utc::now() - Duration::days(2))
        .duration_trunc(Duration::hours(1))
        .unwrap()
}

fn meal_body(at: DateTime<Utc>, carbs: f64) -> JournalBody {
    let input = MealInput {
        timestamp: Some(at.to_rfc3339()),
        carbs_grams: Some(carbs),
        ..Default::default()
    };
    JournalBody::Meal(Meal::parse(input, "u", &TimePolicy::default(), Utc::now()).unwrap())
}

fn meal(u: &str, at: DateTime<Utc>, carbs: f64, external_id: Option<&str>) -> JournalEntry {
    JournalEntry::new(
        user(u),
        "manual".into(),
        external_id.map(str::to_owned),
        meal_body(at, carbs),
        Utc::now(),
    )
}

fn activity(u: &str, at: DateTime<Utc>) -> JournalEntry {
    let input = ActivityInput {
        timestamp: Some(at.to_rfc3339()),
        activity_type: Some(ActivityType::Walking),
        duration_minutes: Some(30),
        ..Default::default()
    };
    let body = Activity::parse(input, "u", &TimePolicy::default(), Utc::now()).unwrap();
    JournalEntry::new(
        user(u),
        "manual".into(),
        None,
        JournalBody::Activity(body),
        Utc::now(),
    )
}

fn query(u: &str, kind: JournalKind, descending: bool, limit: usize) -> JournalQuery {
    JournalQuery {
        user_id: user(u),
        kind,
        from: None,
        until: None,
        descending,
        after: None,
        limit,
    }
}

async fn journal_events(s: &S) -> Vec<(String, String)> {
    let now = Utc::now();
    let claimed = s
        .claim_outbox("relay-journal", now, now + Duration::seconds(30), 100)
        .await
        .unwrap();
    // Acknowledged, so the next look sees only what came after.
    s.ack_outbox(claimed.iter().map(|m| m.id).collect())
        .await
        .unwrap();
    claimed
        .iter()
        .filter(|m| {
            ["meal.", "sleep.", "activity."]
                .iter()
                .any(|p| m.routing_key.starts_with(p))
        })
        .map(|m| {
            let json = m.json();
            assert_eq!(json["user_id"], json["data"]["user_id"]);
            (
                m.routing_key.clone(),
                json["data"]["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

pub(super) async fn journal_uploads_are_idempotent_by_external_id(s: S) {
    let first = meal("j1", base(), 40.0, Some("hk-1"));
    let created = s.create_journal_entry(first.clone()).await.unwrap();
    assert_eq!(created, JournalCreated::Created(first.clone()));
    assert_eq!(
        s.get_journal_entry(&user("j1"), JournalKind::Meal, first.id)
            .await
            .unwrap(),
        Some(first.clone())
    );
    // The same key again, with other fields and a new id: the stored one.
    let again = meal("j1", base() + Duration::hours(1), 99.0, Some("hk-1"));
    assert_eq!(
        s.create_journal_entry(again.clone()).await.unwrap(),
        JournalCreated::Existing(first.clone())
    );
    assert_eq!(
        s.get_journal_entry(&user("j1"), JournalKind::Meal, again.id)
            .await
            .unwrap(),
        None
    );
    // Another source, user or kind is another key; no external id never collides.
    let mut other_source = meal("j1", base(), 10.0, Some("hk-1"));
    other_source.source = "apple_health".into();
    let other_user = meal("j2", base(), 10.0, Some("hk-1"));
    let mut other_kind = activity("j1", base());
    other_kind.external_id = Some("hk-1".into());
    let plain = [meal("j1", base(), 5.0, None), meal("j1", base(), 5.0, None)];
    for e in [other_source, other_user, other_kind]
        .into_iter()
        .chain(plain)
    {
        assert!(matches!(
            s.create_journal_entry(e).await.unwrap(),
            JournalCreated::Created(_)
        ));
    }
    let meals = s
        .list_journal_entries(query("j1", JournalKind::Meal, false, 100))
        .await
        .unwrap();
    assert_eq!(meals.len(), 4, "the repeat stored nothing");
    let events = journal_events(&s).await;
    assert_eq!(events.len(), 6, "{events:?}");
    assert_eq!(events[0], ("meal.created".into(), first.id.to_string()));
    assert_eq!(
        events
            .iter()
            .filter(|(k, _)| k == "activity.created")
            .count(),
        1
    );
}

pub(super) async fn journal_windows_page_by_time_and_id_in_both_orders(s: S) {
    let t0 = base();
    let mut all = Vec::new();
    for i in [3, 0, 5, 1, 4] {
        all.push(meal("jp", t0 + Duration::minutes(10 * i), i as f64, None));
    }
    // Three at one instant: ordered by id.
    for _ in 0..3 {
        all.push(meal("jp", t0 + Duration::minutes(20), 2.0, None));
    }
    for e in &all {
        s.create_journal_entry(e.clone()).await.unwrap();
    }
    s.create_journal_entry(activity("jp", t0)).await.unwrap();
    s.create_journal_entry(meal("other", t0, 1.0, None))
        .await
        .unwrap();
    let mut asc = all.clone();
    asc.sort_by_key(|e| (e.at(), e.id));
    for descending in [false, true] {
        let mut want = asc.clone();
        if descending {
            want.reverse();
        }
        let mut got: Vec<JournalEntry> = Vec::new();
        loop {
            let mut q = query("jp", JournalKind::Meal, descending, 3);
            q.after = got.last().map(|e| (e.at(), e.id));
            let page = s.list_journal_entries(q).await.unwrap();
            assert!(page.len() <= 3);
            let done = page.len() < 3;
            got.extend(page);
            if done {
                break;
            }
        }
        assert_eq!(got, want, "descending: {descending}");
    }
    // [from, until): the start included, the end not.
    let mut q = query("jp", JournalKind::Meal, false, 100);
    q.from = Some(t0 + Duration::minutes(10));
    q.until = Some(t0 + Duration::minutes(40));
    let window: Vec<_> = s
        .list_journal_entries(q)
        .await
        .unwrap()
        .iter()
        .map(|e| (e.at() - t0).num_minutes())
        .collect();
    assert_eq!(window, [10, 20, 20, 20, 30]);
    let activities = s
        .list_journal_entries(query("jp", JournalKind::Activity, false, 100))
        .await
        .unwrap();
    assert_eq!(activities.len(), 1, "kinds stay apart");
    assert_eq!(
        s.get_journal_entry(&user("other"), JournalKind::Meal, all[0].id)
            .await
            .unwrap(),
        None,
        "users stay apart"
    );
    assert_eq!(
        s.get_journal_entry(&user("jp"), JournalKind::Activity, all[0].id)
            .await
            .unwrap(),
        None
    );
}

pub(super) async fn journal_updates_and_deletes_keep_identity(s: S) {
    let t0 = base();
    let first = meal("ju", t0, 40.0, Some("ext-9"));
    s.create_journal_entry(first.clone()).await.unwrap();
    s.create_journal_entry(meal("ju", t0 + Duration::minutes(30), 1.0, None))
        .await
        .unwrap();
    let later = Utc::now() + Duration::seconds(1);
    let next = first.replaced(meal_body(t0 + Duration::hours(1), 55.0), later);
    let stored = s
        .update_journal_entry(next.clone())
        .await
        .unwrap()
        .expect("updated");
    assert_eq!(stored, next);
    assert_eq!(stored.created_at, first.created_at);
    assert_eq!(stored.external_id.as_deref(), Some("ext-9"));
    assert!(stored.updated_at > first.updated_at);
    assert_eq!(
        s.get_journal_entry(&user("ju"), JournalKind::Meal, first.id)
            .await
            .unwrap(),
        Some(next.clone())
    );
    // Listed at its new time only.
    let order: Vec<_> = s
        .list_journal_entries(query("ju", JournalKind::Meal, false, 10))
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(order.len(), 2);
    assert_eq!(order[1], first.id);
    // Someone else's id, or another kind: nothing.
    let mut foreign = next.clone();
    foreign.user_id = user("intruder");
    assert_eq!(s.update_journal_entry(foreign).await.unwrap(), None);
    assert!(!s
        .delete_journal_entry(&user("intruder"), JournalKind::Meal, first.id)
        .await
        .unwrap());
    assert!(!s
        .delete_journal_entry(&user("ju"), JournalKind::Sleep, first.id)
        .await
        .unwrap());
    assert!(s
        .delete_journal_entry(&user("ju"), JournalKind::Meal, first.id)
        .await
        .unwrap());
    assert_eq!(
        s.get_journal_entry(&user("ju"), JournalKind::Meal, first.id)
            .await
            .unwrap(),
        None
    );
    assert!(!s
        .delete_journal_entry(&user("ju"), JournalKind::Meal, first.id)
        .await
        .unwrap());
    assert_eq!(
        s.update_journal_entry(next.clone()).await.unwrap(),
        None,
        "a deleted entry is not updated"
    );
    let listed = s
        .list_journal_entries(query("ju", JournalKind::Meal, false, 10))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    // Its external id is free again.
    let reupload = meal("ju", t0, 40.0, Some("ext-9"));
    assert_eq!(
        s.create_journal_entry(reupload.clone()).await.unwrap(),
        JournalCreated::Created(reupload)
    );
    let id = first.id.to_string();
    let events: Vec<_> = journal_events(&s)
        .await
        .into_iter()
        .filter(|(_, i)| *i == id)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(events, ["meal.created", "meal.updated", "meal.deleted"]);
}

pub(super) async fn journal_batches_are_stored_whole_or_not_at_all(s: S) {
    let t0 = base();
    let a = meal("jb", t0, 1.0, Some("a"));
    let b = meal("jb", t0 + Duration::minutes(5), 2.0, Some("b"));
    let a_again = meal("jb", t0 + Duration::minutes(9), 3.0, Some("a"));
    let plain = meal("jb", t0 + Duration::minutes(7), 4.0, None);
    let out = s
        .create_journal_entries(vec![a.clone(), b.clone(), a_again, plain.clone()])
        .await
        .unwrap();
    assert_eq!(
        out,
        [
            JournalCreated::Created(a.clone()),
            JournalCreated::Created(b.clone()),
            JournalCreated::Existing(a.clone()),
            JournalCreated::Created(plain.clone()),
        ]
    );
    // Importing again stores nothing new.
    let again = s
        .create_journal_entries(vec![
            meal("jb", t0, 1.0, Some("a")),
            meal("jb", t0, 1.0, Some("b")),
        ])
        .await
        .unwrap();
    assert_eq!(
        again,
        [
            JournalCreated::Existing(a.clone()),
            JournalCreated::Existing(b.clone())
        ]
    );
    let before = journal_events(&s).await.len();
    assert_eq!(before, 3);
    // One entry fails (its id is taken): nothing of the batch is stored.
    let c = meal("jb", t0 + Duration::minutes(1), 5.0, Some("c"));
    let d = meal("jb", t0 + Duration::minutes(2), 6.0, None);
    let mut clash = meal("jb", t0 + Duration::minutes(3), 7.0, Some("e"));
    clash.id = plain.id;
    assert!(s
        .create_journal_entries(vec![c.clone(), d.clone(), clash])
        .await
        .is_err());
    for id in [c.id, d.id] {
        assert_eq!(
            s.get_journal_entry(&user("jb"), JournalKind::Meal, id)
                .await
                .unwrap(),
            None
        );
    }
    let listed = s
        .list_journal_entries(query("jb", JournalKind::Meal, false, 100))
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(
        journal_events(&s).await.len(),
        0,
        "no event of the failed batch"
    );
    // The key "c" was not taken by the failed batch.
    assert!(matches!(
        s.create_journal_entry(c.clone()).await.unwrap(),
        JournalCreated::Created(_)
    ));
}
