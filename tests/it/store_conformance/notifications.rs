//! Notification endpoint cases: endpoints round-trip with their sealed secret,
//! list per user oldest first, delete, and the per-user cap holds even under
//! concurrent creations.

use cgm_hub::records::notifications::{
    EndpointId, EndpointWrite, NotificationEndpoint, NotificationEvent,
};
use chrono::Utc;

use super::*;

fn endpoint(u: &str, at_ms: i64) -> NotificationEndpoint {
    NotificationEndpoint {
        id: EndpointId::new(),
        user_id: user(u),
        url: format!("https://example.com/hooks/{u}/{at_ms}"),
        events: vec![
            NotificationEvent::AlertRaised,
            NotificationEvent::AlertResolved,
        ],
        secret: SealedTokens {
            key_id: "k1".into(),
            nonce: vec![1; 12],
            ciphertext: vec![9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0, 255],
        },
        // Millisecond precision: every backend keeps that much.
        created_at: chrono::DateTime::from_timestamp_millis(
            Utc::now().timestamp_millis() - 10_000 + at_ms,
        )
        .unwrap(),
    }
}

pub(super) async fn notification_endpoints_round_trip_list_and_delete(s: S) {
    let a = endpoint("ne1", 1);
    let b = endpoint("ne1", 2);
    let other = endpoint("ne2", 3);
    for e in [&b, &a, &other] {
        assert_eq!(
            s.put_notification_endpoint(e.clone(), 10).await.unwrap(),
            EndpointWrite::Stored
        );
    }
    assert_eq!(
        s.list_notification_endpoints(&user("ne1")).await.unwrap(),
        vec![a.clone(), b.clone()],
        "oldest first, every field (the sealed secret included) as stored"
    );
    assert_eq!(
        s.get_notification_endpoint(&user("ne1"), a.id)
            .await
            .unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        s.get_notification_endpoint(&user("ne2"), a.id)
            .await
            .unwrap(),
        None,
        "an endpoint is found only under its own user"
    );
    assert!(
        !s.delete_notification_endpoint(&user("ne2"), a.id)
            .await
            .unwrap(),
        "nor deleted by another"
    );
    assert!(s
        .delete_notification_endpoint(&user("ne1"), a.id)
        .await
        .unwrap());
    assert!(!s
        .delete_notification_endpoint(&user("ne1"), a.id)
        .await
        .unwrap());
    assert_eq!(
        s.list_notification_endpoints(&user("ne1")).await.unwrap(),
        vec![b]
    );
    assert_eq!(
        s.list_notification_endpoints(&user("ne2")).await.unwrap(),
        vec![other]
    );
    assert!(s
        .list_notification_endpoints(&user("ne3"))
        .await
        .unwrap()
        .is_empty());
}

pub(super) async fn notification_endpoints_are_capped_per_user_even_concurrently(s: S) {
    let cap = 3;
    let writes: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.put_notification_endpoint(endpoint("cap1", i), cap)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut stored = 0;
    for w in writes {
        if w.await.unwrap() == EndpointWrite::Stored {
            stored += 1;
        }
    }
    assert_eq!(stored, cap, "exactly the cap is stored");
    let held = s.list_notification_endpoints(&user("cap1")).await.unwrap();
    assert_eq!(held.len(), cap);
    // A deletion frees a place; another user is not affected.
    assert!(s
        .delete_notification_endpoint(&user("cap1"), held[0].id)
        .await
        .unwrap());
    assert_eq!(
        s.put_notification_endpoint(endpoint("cap1", 20), cap)
            .await
            .unwrap(),
        EndpointWrite::Stored
    );
    assert_eq!(
        s.put_notification_endpoint(endpoint("cap1", 21), cap)
            .await
            .unwrap(),
        EndpointWrite::LimitReached
    );
    assert_eq!(
        s.put_notification_endpoint(endpoint("cap2", 1), cap)
            .await
            .unwrap(),
        EndpointWrite::Stored
    );
}
