//! Invitation cases: an invitation round-trips (with and without a pending
//! share), is found only by its token hash, and is used once, also when two
//! uses race.

use cgm_hub::domain::Email;
use cgm_hub::records::invitations::{Invitation, PendingShare};
use cgm_hub::records::shares::ShareRole;
use chrono::{Duration, DurationRound, Utc};

use super::*;

fn invitation(tag: &str, share: Option<PendingShare>) -> Invitation {
    let now = Utc::now()
        .duration_trunc(Duration::milliseconds(1))
        .unwrap();
    Invitation {
        token_hash: format!("hash-{tag}"),
        email: Email::parse(&format!("Bob.{tag}@Example.org")).unwrap(),
        invited_by: user(&format!("inviter-{tag}")),
        created_at: now,
        expires_at: now + Duration::days(7),
        share,
        used: false,
    }
}

pub(super) async fn invitations_round_trip_and_are_used_once(s: S) {
    let tag = unique();
    let plain = invitation(&format!("{tag}-a"), None);
    let shared = invitation(
        &format!("{tag}-b"),
        Some(PendingShare {
            patient: user(&format!("pat-{tag}")),
            role: ShareRole::Clinician,
            expires_at: Some(plain.expires_at + Duration::days(30)),
        }),
    );
    s.put_invitation(plain.clone()).await.unwrap();
    s.put_invitation(shared.clone()).await.unwrap();
    assert_eq!(
        s.get_invitation(&plain.token_hash).await.unwrap(),
        Some(plain.clone())
    );
    assert_eq!(
        s.get_invitation(&shared.token_hash).await.unwrap(),
        Some(shared.clone())
    );
    assert_eq!(s.get_invitation("no-such-hash").await.unwrap(), None);
    assert!(!s.use_invitation("no-such-hash").await.unwrap());

    // Two uses race: exactly one wins.
    let (a, b) = tokio::join!(
        s.use_invitation(&shared.token_hash),
        s.use_invitation(&shared.token_hash)
    );
    assert!(a.unwrap() ^ b.unwrap());
    assert!(!s.use_invitation(&shared.token_hash).await.unwrap());
    let used = s.get_invitation(&shared.token_hash).await.unwrap().unwrap();
    assert!(used.used);
    // The other one is untouched.
    assert!(
        !s.get_invitation(&plain.token_hash)
            .await
            .unwrap()
            .unwrap()
            .used
    );
}
