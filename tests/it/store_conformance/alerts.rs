//! Alert cases: settings round-trip, one open alert per (user, type) even under
//! concurrent raises, every change commits its `alert.*` event, and the history
//! lists newest first with status, window and cursor.

use cgm_hub::domain::{AlertSettings, AlertSettingsInput};
use cgm_hub::records::alerts::{Alert, AlertQuery, AlertStatus, AlertType};
use chrono::{DateTime, Duration, Utc};

use super::*;

fn low(u: &str, at: DateTime<Utc>) -> Alert {
    Alert::raise(
        &user(u),
        AlertType::Low,
        Some(65),
        Some(at),
        at,
        "Low: 65 mg/dL (below 70)".into(),
    )
}

pub(super) async fn alert_settings_round_trip(s: S) {
    assert_eq!(s.get_alert_settings(&user("as1")).await.unwrap(), None);
    let custom = AlertSettings::parse(&AlertSettingsInput {
        low: Some(75),
        urgent_high: Some(320),
        rate_mgdl_per_min: Some(2.5),
        snooze_minutes: Some(45),
        ..Default::default()
    })
    .unwrap();
    s.put_alert_settings(&user("as1"), custom).await.unwrap();
    assert_eq!(
        s.get_alert_settings(&user("as1")).await.unwrap(),
        Some(custom)
    );
    s.put_alert_settings(&user("as1"), AlertSettings::default())
        .await
        .unwrap();
    assert_eq!(
        s.get_alert_settings(&user("as1")).await.unwrap(),
        Some(AlertSettings::default()),
        "replaced"
    );
    assert_eq!(s.get_alert_settings(&user("as2")).await.unwrap(), None);
}

pub(super) async fn one_open_alert_per_type_even_concurrently(s: S) {
    let now = Utc::now();
    let raises: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.raise_alert(low("ao1", now)).await.unwrap() })
        })
        .collect();
    let mut raised = 0;
    for r in raises {
        raised += usize::from(r.await.unwrap());
    }
    assert_eq!(raised, 1, "one of the concurrent raises wins");
    let open = s.open_alerts(&user("ao1")).await.unwrap();
    assert_eq!(open.len(), 1);
    // Another type, and another user, are independent.
    let mut urgent = low("ao1", now);
    urgent.alert_type = AlertType::UrgentLow;
    assert!(s.raise_alert(urgent).await.unwrap());
    assert!(s.raise_alert(low("ao2", now)).await.unwrap());
    // Acknowledged is still open; resolved is not.
    let first = open[0].clone();
    let acked = first.acknowledged(&user("mom"), now);
    assert!(s
        .transition_alert(AlertStatus::Active, acked.clone())
        .await
        .unwrap());
    assert!(!s.raise_alert(low("ao1", now)).await.unwrap());
    assert!(s
        .transition_alert(AlertStatus::Acknowledged, acked.resolved(now))
        .await
        .unwrap());
    assert!(
        s.raise_alert(low("ao1", now)).await.unwrap(),
        "a new alert once the last one resolved"
    );
    let mut types: Vec<_> = s
        .open_alerts(&user("ao1"))
        .await
        .unwrap()
        .iter()
        .map(|a| a.alert_type.as_str())
        .collect();
    types.sort_unstable();
    assert_eq!(types, ["low", "urgent_low"]);
}

pub(super) async fn alert_changes_commit_their_events(s: S) {
    let now = Utc::now();
    let alert = low("ae1", now);
    assert!(s.raise_alert(alert.clone()).await.unwrap());
    assert_eq!(
        s.get_alert(&user("ae1"), alert.id).await.unwrap(),
        Some(alert.clone())
    );
    assert_eq!(s.get_alert(&user("other"), alert.id).await.unwrap(), None);
    let acked = alert.acknowledged(&user("mom"), now);
    assert!(s
        .transition_alert(AlertStatus::Active, acked.clone())
        .await
        .unwrap());
    assert!(
        !s.transition_alert(AlertStatus::Active, acked.clone())
            .await
            .unwrap(),
        "a transition from a status it no longer has writes nothing"
    );
    let again = acked.reraised(Some(60), Some(now), "Low: 60 mg/dL (below 70)".into());
    assert!(s
        .transition_alert(AlertStatus::Acknowledged, again.clone())
        .await
        .unwrap());
    let resolved = again.resolved(now + Duration::minutes(5));
    assert!(s
        .transition_alert(AlertStatus::Active, resolved.clone())
        .await
        .unwrap());
    assert_eq!(
        s.get_alert(&user("ae1"), alert.id).await.unwrap(),
        Some(resolved.clone())
    );
    assert!(s.open_alerts(&user("ae1")).await.unwrap().is_empty());

    let claimed = s
        .claim_outbox("relay-alerts", now, now + Duration::seconds(30), 20)
        .await
        .unwrap();
    let events: Vec<(String, String, String)> = claimed
        .iter()
        .filter(|m| m.routing_key.starts_with("alert."))
        .map(|m| {
            let json = m.json();
            (
                m.routing_key.clone(),
                json["data"]["status"].as_str().unwrap().to_owned(),
                json["data"]["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let id = alert.id.to_string();
    assert_eq!(
        events,
        [
            ("alert.raised".into(), "active".into(), id.clone()),
            (
                "alert.acknowledged".into(),
                "acknowledged".into(),
                id.clone()
            ),
            ("alert.raised".into(), "active".into(), id.clone()),
            ("alert.resolved".into(), "resolved".into(), id),
        ]
    );
    let json = claimed
        .iter()
        .find(|m| m.routing_key == "alert.acknowledged")
        .unwrap()
        .json();
    assert_eq!(json["user_id"], "ae1");
    assert_eq!(json["data"]["acknowledged_by"], "mom");
    assert_eq!(json["data"]["type"], "low");
}

pub(super) async fn alerts_list_newest_first_by_status_window_and_cursor(s: S) {
    let t0 = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap()
        - Duration::hours(1);
    let mut ids = Vec::new();
    for i in 0..6 {
        let at = t0 + Duration::minutes(i * 10);
        let alert = low("al1", at);
        assert!(s.raise_alert(alert.clone()).await.unwrap());
        if i < 5 {
            assert!(s
                .transition_alert(AlertStatus::Active, alert.resolved(at))
                .await
                .unwrap());
        }
        ids.push(alert.id);
    }
    assert!(s.raise_alert(low("al2", t0)).await.unwrap());
    let query = AlertQuery {
        user_id: user("al1"),
        status: None,
        from: None,
        until: None,
        before: None,
        limit: 100,
    };
    let listed = |alerts: Vec<Alert>| -> Vec<uuid::Uuid> { alerts.iter().map(|a| a.id).collect() };
    let newest_first: Vec<_> = ids.iter().rev().copied().collect();
    assert_eq!(
        listed(s.list_alerts(query.clone()).await.unwrap()),
        newest_first
    );
    let active = AlertQuery {
        status: Some(AlertStatus::Active),
        ..query.clone()
    };
    assert_eq!(listed(s.list_alerts(active).await.unwrap()), [ids[5]]);
    let resolved = AlertQuery {
        status: Some(AlertStatus::Resolved),
        limit: 2,
        ..query.clone()
    };
    assert_eq!(
        listed(s.list_alerts(resolved).await.unwrap()),
        [ids[4], ids[3]]
    );
    // [from, until) on the raise time.
    let window = AlertQuery {
        from: Some(t0 + Duration::minutes(10)),
        until: Some(t0 + Duration::minutes(30)),
        ..query.clone()
    };
    assert_eq!(
        listed(s.list_alerts(window).await.unwrap()),
        [ids[2], ids[1]]
    );
    // Pages of two, each before the last id of the one before.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = s
            .list_alerts(AlertQuery {
                before,
                limit: 2,
                ..query.clone()
            })
            .await
            .unwrap();
        before = page.last().map(|a| a.id);
        let done = page.len() < 2;
        pages.extend(listed(page));
        if done {
            break;
        }
    }
    assert_eq!(pages, newest_first);
}
