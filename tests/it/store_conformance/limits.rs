//! Conformance cases of the store's limits: the per-patient grant limit and
//! paging of grants, and the bounds on pending OAuth authorizations (pruned
//! when expired, the newest few kept per user).

use std::collections::BTreeSet;

use cgm_hub::records::connections::{PendingAuthorization, Provider};
use cgm_hub::records::shares::{Share, ShareRole};
use cgm_hub::records::shares::{SharePage, ShareWrite};
use chrono::{DateTime, Utc};

use super::S;
use crate::helpers::*;

/// Every grant of a patient in one page (the tests hold far fewer).
pub(super) fn all_shares() -> SharePage {
    SharePage {
        after: None,
        limit: 1000,
    }
}

fn grant(patient: &str, grantee: &str) -> Share {
    let now = Utc::now();
    Share {
        patient_id: user(patient),
        grantee_id: user(grantee),
        role: ShareRole::Caregiver,
        created_at: DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap(),
        expires_at: None,
    }
}

async fn grantees(s: &S, patient: &str, page: SharePage) -> Vec<String> {
    s.list_shares(&user(patient), page)
        .await
        .unwrap()
        .iter()
        .map(|x| x.grantee_id.to_string())
        .collect()
}

pub(super) async fn shares_are_capped_per_patient_even_concurrently(s: S) {
    const MAX: usize = 5;
    // Twenty new grantees at once: exactly MAX get in.
    let attempts = (0..20).map(|i| {
        let s = s.clone();
        tokio::spawn(async move { s.put_share(grant("pat", &format!("g{i:02}")), MAX).await })
    });
    let mut stored = 0;
    for attempt in attempts {
        match attempt.await.unwrap().unwrap() {
            ShareWrite::Stored => stored += 1,
            ShareWrite::LimitReached => {}
        }
    }
    assert_eq!(stored, MAX, "the limit holds under concurrent grants");
    let held = grantees(&s, "pat", all_shares()).await;
    assert_eq!(held.len(), MAX);
    // At the limit: an existing grantee's grant is still replaced ...
    let mut replaced = grant("pat", &held[0]);
    replaced.role = ShareRole::Clinician;
    assert_eq!(
        s.put_share(replaced.clone(), MAX).await.unwrap(),
        ShareWrite::Stored
    );
    assert_eq!(
        s.get_share(&user("pat"), &user(&held[0])).await.unwrap(),
        Some(replaced)
    );
    // ... a new one is refused and not written ...
    assert_eq!(
        s.put_share(grant("pat", "late"), MAX).await.unwrap(),
        ShareWrite::LimitReached
    );
    assert!(s
        .get_share(&user("pat"), &user("late"))
        .await
        .unwrap()
        .is_none());
    // ... until one is revoked; another patient has a limit of their own.
    assert!(s.delete_share(&user("pat"), &user(&held[1])).await.unwrap());
    assert_eq!(
        s.put_share(grant("pat", "late"), MAX).await.unwrap(),
        ShareWrite::Stored
    );
    assert_eq!(
        s.put_share(grant("pat", "later"), MAX).await.unwrap(),
        ShareWrite::LimitReached
    );
    assert_eq!(
        s.put_share(grant("other", "late"), MAX).await.unwrap(),
        ShareWrite::Stored
    );
    assert_eq!(grantees(&s, "pat", all_shares()).await.len(), MAX);
}

pub(super) async fn shares_page_in_grantee_order(s: S) {
    for g in ["g5", "g2", "g7", "g1", "g4", "g3", "g6"] {
        s.put_share(grant("pat", g), 100).await.unwrap();
    }
    s.put_share(grant("other", "g0"), 100).await.unwrap();
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = grantees(&s, "pat", SharePage { after, limit: 3 }).await;
        after = page.last().map(|g| user(g));
        let done = page.len() < 3;
        pages.push(page);
        if done {
            break;
        }
    }
    assert_eq!(
        pages,
        [vec!["g1", "g2", "g3"], vec!["g4", "g5", "g6"], vec!["g7"]]
    );
    let tail = SharePage {
        after: Some(user("g7")),
        limit: 3,
    };
    assert!(grantees(&s, "pat", tail).await.is_empty());
}

fn pending(hash: &str, who: &str, expires_at: DateTime<Utc>) -> PendingAuthorization {
    PendingAuthorization {
        state_hash: hash.into(),
        user_id: user(who),
        provider: Provider::Dexcom,
        pkce_verifier: None,
        browser_hash: None,
        expires_at,
    }
}

/// The pending authorizations among `hashes` still there (taking them).
async fn still_there(s: &S, hashes: &[String], now: DateTime<Utc>) -> BTreeSet<String> {
    let mut there = BTreeSet::new();
    for h in hashes {
        if s.take_pending_authorization(h, now)
            .await
            .unwrap()
            .is_some()
        {
            there.insert(h.clone());
        }
    }
    there
}

pub(super) async fn expired_pending_authorizations_are_pruned(s: S) {
    let now = Utc::now();
    let seconds = chrono::Duration::seconds;
    for (i, who) in ["u1", "u2", "u3"].iter().enumerate() {
        let ago = seconds(1 + i as i64);
        s.put_pending_authorization(pending(&format!("old-{who}"), who, now - ago), 10)
            .await
            .unwrap();
    }
    s.put_pending_authorization(pending("at-now", "u1", now), 10)
        .await
        .unwrap();
    s.put_pending_authorization(pending("live-1", "u1", now + seconds(600)), 10)
        .await
        .unwrap();
    s.put_pending_authorization(pending("live-2", "u4", now + seconds(60)), 10)
        .await
        .unwrap();
    assert_eq!(
        s.prune_pending_authorizations(now).await.unwrap(),
        4,
        "expired at `now` (expiry <= now), of every user"
    );
    assert_eq!(s.prune_pending_authorizations(now).await.unwrap(), 0);
    assert_eq!(
        s.prune_pending_authorizations(now + seconds(61))
            .await
            .unwrap(),
        1,
        "live-2 once its time has come"
    );
    let live = still_there(&s, &["live-1".into(), "live-2".into()], now).await;
    assert_eq!(live, BTreeSet::from(["live-1".to_owned()]));
    assert_eq!(
        s.prune_pending_authorizations(now + seconds(3600))
            .await
            .unwrap(),
        0,
        "a taken authorization is gone"
    );
}

pub(super) async fn each_user_keeps_only_their_newest_pending_authorizations(s: S) {
    let now = Utc::now();
    let at = |i: i64| now + chrono::Duration::seconds(60 + i);
    let hashes: Vec<String> = (0..15).map(|i| format!("u1-{i:02}")).collect();
    for (i, h) in hashes.iter().enumerate() {
        s.put_pending_authorization(pending(h, "u1", at(i as i64)), 10)
            .await
            .unwrap();
    }
    s.put_pending_authorization(pending("u2-only", "u2", at(0)), 10)
        .await
        .unwrap();
    // One more of u1's that expires before all the others: it is kept (it is
    // the one the user is about to complete), the oldest of the rest goes.
    s.put_pending_authorization(pending("u1-late", "u1", at(-30)), 10)
        .await
        .unwrap();
    let mut all = hashes.clone();
    all.push("u1-late".into());
    all.push("u2-only".into());
    let kept = still_there(&s, &all, now).await;
    let expected: BTreeSet<String> = hashes[6..]
        .iter()
        .cloned()
        .chain(["u1-late".to_owned(), "u2-only".to_owned()])
        .collect();
    assert_eq!(
        kept, expected,
        "u1's 10 newest (the latest put included), and u2's"
    );
}
