//! Account cases: accounts are unique by email case-insensitively (also under
//! concurrent sign-ups), refresh tokens rotate once, a reused one revokes its
//! whole family, and revocation, expiry and unknown tokens change nothing else.

use cgm_hub::domain::Email;
use cgm_hub::records::accounts::{Account, AccountCreated, NewRefreshToken, Rotation};
use cgm_hub::records::roles::Role;
use chrono::{Duration, DurationRound, Utc};

use super::*;

pub(super) fn account(id: &str, email: &str) -> Account {
    Account {
        id: user(id),
        email: Email::parse(email).unwrap(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNo".into(),
        roles: [Role::Patient, Role::Admin].into(),
        full_name: Some("Alice Ünicode".into()),
        email_verified: false,
        created_at: Utc::now()
            .duration_trunc(Duration::milliseconds(1))
            .unwrap(),
    }
}

pub(super) fn token(hash: &str, owner: &str, expires_in: Duration) -> NewRefreshToken {
    let now = Utc::now()
        .duration_trunc(Duration::milliseconds(1))
        .unwrap();
    NewRefreshToken {
        hash: format!("{hash}-{}", "0".repeat(8)),
        account: user(owner),
        issued_at: now,
        expires_at: now + expires_in,
    }
}

pub(super) async fn accounts_are_unique_by_email_case_insensitively(s: S) {
    let tag = unique();
    let id = format!("acc-{tag}");
    let email = format!("Alice.{tag}@Example.com");
    let a = account(&id, &email);
    assert_eq!(
        s.create_account(a.clone()).await.unwrap(),
        AccountCreated::Created
    );
    assert_eq!(s.get_account(&user(&id)).await.unwrap(), Some(a.clone()));
    let lower = Email::parse(&email.to_lowercase()).unwrap();
    assert_eq!(s.account_by_email(&lower).await.unwrap(), Some(a.clone()));
    // The same email in other case, under another id: taken, nothing written.
    let other_id = format!("acc2-{tag}");
    let upper = account(&other_id, &email.to_uppercase());
    assert_eq!(
        s.create_account(upper).await.unwrap(),
        AccountCreated::Taken
    );
    assert_eq!(s.get_account(&user(&other_id)).await.unwrap(), None);
    // The same id with another email: taken, and the email stays free.
    let free = format!("free.{tag}@example.com");
    assert_eq!(
        s.create_account(account(&id, &free)).await.unwrap(),
        AccountCreated::Taken
    );
    assert_eq!(
        s.account_by_email(&Email::parse(&free).unwrap())
            .await
            .unwrap(),
        None
    );
    // Concurrent sign-ups with one email: exactly one wins.
    let race = format!("race.{tag}@example.com");
    let attempts = (0..6).map(|i| {
        let s = s.clone();
        let a = account(&format!("race{i}-{tag}"), &race);
        tokio::spawn(async move { s.create_account(a).await.unwrap() })
    });
    let results = futures_util::future::join_all(attempts).await;
    let created = results
        .into_iter()
        .filter(|r| *r.as_ref().unwrap() == AccountCreated::Created)
        .count();
    assert_eq!(created, 1);
    // Injection-looking text is data.
    let odd = format!("x'--{tag}@example.com");
    let odd_account = account(&format!("odd-{tag}"), &odd);
    assert_eq!(
        s.create_account(odd_account.clone()).await.unwrap(),
        AccountCreated::Created
    );
    assert_eq!(
        s.account_by_email(&Email::parse(&odd).unwrap())
            .await
            .unwrap(),
        Some(odd_account)
    );
}

pub(super) async fn refresh_tokens_rotate_once_and_reuse_revokes_the_family(s: S) {
    let tag = unique();
    let owner = format!("rt-{tag}");
    let day = Duration::days(1);
    let t1 = token(&format!("a{tag}"), &owner, day);
    let family = s.start_refresh_family(t1.clone()).await.unwrap();
    // A rotation's `account` is the family's, whatever `next` says.
    let t2 = token(&format!("b{tag}"), "someone-else", day);
    assert_eq!(
        s.rotate_refresh_token(&t1.hash, t2.clone()).await.unwrap(),
        Rotation::Rotated {
            account: user(&owner),
            family
        }
    );
    let t3 = token(&format!("c{tag}"), &owner, day);
    assert_eq!(
        s.rotate_refresh_token(&t2.hash, t3.clone()).await.unwrap(),
        Rotation::Rotated {
            account: user(&owner),
            family
        }
    );
    // t1 again: reuse; the family (t3 included) is revoked.
    let t4 = token(&format!("d{tag}"), &owner, day);
    assert_eq!(
        s.rotate_refresh_token(&t1.hash, t4.clone()).await.unwrap(),
        Rotation::Reused {
            account: user(&owner),
            family
        }
    );
    assert_eq!(
        s.rotate_refresh_token(&t3.hash, t4.clone()).await.unwrap(),
        Rotation::Revoked
    );
    // t4 was never stored.
    assert_eq!(
        s.rotate_refresh_token(&t4.hash, token(&format!("e{tag}"), &owner, day))
            .await
            .unwrap(),
        Rotation::Unknown
    );

    // Another family is untouched by that, and logout revokes it.
    let f1 = token(&format!("f{tag}"), &owner, day);
    s.start_refresh_family(f1.clone()).await.unwrap();
    assert!(s.revoke_refresh_family(&f1.hash).await.unwrap());
    assert!(!s.revoke_refresh_family("no-such-token").await.unwrap());
    assert_eq!(
        s.rotate_refresh_token(&f1.hash, token(&format!("g{tag}"), &owner, day))
            .await
            .unwrap(),
        Rotation::Revoked
    );

    // An expired token is refused and stays usable for nothing.
    let old = token(&format!("h{tag}"), &owner, Duration::milliseconds(-1));
    s.start_refresh_family(old.clone()).await.unwrap();
    assert_eq!(
        s.rotate_refresh_token(&old.hash, token(&format!("i{tag}"), &owner, day))
            .await
            .unwrap(),
        Rotation::Expired
    );

    // Concurrent rotations of one token: one rotates, the others see reuse
    // (or, once the family is revoked, revocation).
    let live = token(&format!("j{tag}"), &owner, day);
    s.start_refresh_family(live.clone()).await.unwrap();
    let attempts = (0..4).map(|i| {
        let s = s.clone();
        let presented = live.hash.clone();
        let next = token(&format!("k{i}{tag}"), &owner, day);
        tokio::spawn(async move { s.rotate_refresh_token(&presented, next).await.unwrap() })
    });
    let results: Vec<Rotation> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let rotated = results
        .iter()
        .filter(|r| matches!(r, Rotation::Rotated { .. }))
        .count();
    assert_eq!(rotated, 1, "{results:?}");
    assert!(
        results.iter().all(|r| matches!(
            r,
            Rotation::Rotated { .. } | Rotation::Reused { .. } | Rotation::Revoked
        )),
        "{results:?}"
    );
}

pub(super) async fn a_disabled_account_is_known_as_such_and_loses_its_sessions(s: S) {
    let tag = unique();
    let id = format!("dis-{tag}");
    s.create_account(account(&id, &format!("dis.{tag}@example.com")))
        .await
        .unwrap();
    let first = token(&format!("dis-a-{tag}"), &id, Duration::days(1));
    s.start_refresh_family(first.clone()).await.unwrap();
    assert!(!s.account_disabled(&user(&id)).await.unwrap());
    let at = Utc::now()
        .duration_trunc(Duration::milliseconds(1))
        .unwrap();
    assert!(s.disable_account(&user(&id), at).await.unwrap());
    assert!(s.account_disabled(&user(&id)).await.unwrap());
    // Again: still disabled, still true.
    assert!(s.disable_account(&user(&id), at).await.unwrap());
    assert!(s.account_disabled(&user(&id)).await.unwrap());
    // Unknown ids: nothing to disable, and never "disabled".
    let nobody = user(&format!("nobody-{tag}"));
    assert!(!s.disable_account(&nobody, at).await.unwrap());
    assert!(!s.account_disabled(&nobody).await.unwrap());
    // The account itself is kept.
    assert!(s.get_account(&user(&id)).await.unwrap().is_some());
    // SQL backends revoke its families; DynamoDB leaves them to the account
    // check of every refresh (docs/accounts.md): either way no Reused/Expired.
    let next = token(&format!("dis-b-{tag}"), &id, Duration::days(1));
    let rotation = s.rotate_refresh_token(&first.hash, next).await.unwrap();
    if s.backend() == "dynamodb" {
        assert!(matches!(rotation, Rotation::Rotated { .. }), "{rotation:?}");
    } else {
        assert_eq!(rotation, Rotation::Revoked);
    }
}
