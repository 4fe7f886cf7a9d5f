//! Account-token cases (password reset, email verification): a token
//! round-trips and is found only by its hash, is used once also when two uses
//! race; a new password revokes every refresh family of its account (and no
//! other's); verifying an email and enabling a disabled account stick.

use cgm_hub::records::account_tokens::{AccountToken, TokenPurpose};
use cgm_hub::records::accounts::Rotation;
use chrono::{Duration, DurationRound, Utc};

use super::accounts::{account, token};
use super::*;

fn account_token(tag: &str, purpose: TokenPurpose, owner: &str) -> AccountToken {
    let now = Utc::now()
        .duration_trunc(Duration::milliseconds(1))
        .unwrap();
    AccountToken {
        token_hash: format!("atoken-{tag}"),
        purpose,
        account: user(owner),
        created_at: now,
        expires_at: now + Duration::hours(1),
        used: false,
    }
}

pub(super) async fn account_tokens_round_trip_and_are_used_once(s: S) {
    let tag = unique();
    let reset = account_token(
        &format!("{tag}-r"),
        TokenPurpose::PasswordReset,
        &format!("owner-{tag}"),
    );
    let verify = account_token(
        &format!("{tag}-v"),
        TokenPurpose::VerifyEmail,
        &format!("owner-{tag}"),
    );
    s.put_account_token(reset.clone()).await.unwrap();
    s.put_account_token(verify.clone()).await.unwrap();
    assert_eq!(
        s.get_account_token(&reset.token_hash).await.unwrap(),
        Some(reset.clone())
    );
    assert_eq!(
        s.get_account_token(&verify.token_hash).await.unwrap(),
        Some(verify.clone())
    );
    assert_eq!(s.get_account_token("no-such-hash").await.unwrap(), None);
    assert!(!s.use_account_token("no-such-hash").await.unwrap());
    // A hash stored already is refused.
    assert!(s.put_account_token(reset.clone()).await.is_err());

    let (a, b) = tokio::join!(
        s.use_account_token(&reset.token_hash),
        s.use_account_token(&reset.token_hash)
    );
    assert!(a.unwrap() ^ b.unwrap());
    assert!(!s.use_account_token(&reset.token_hash).await.unwrap());
    assert!(
        s.get_account_token(&reset.token_hash)
            .await
            .unwrap()
            .unwrap()
            .used
    );
    assert!(
        !s.get_account_token(&verify.token_hash)
            .await
            .unwrap()
            .unwrap()
            .used
    );
}

pub(super) async fn a_new_password_revokes_every_session_of_its_account_only(s: S) {
    let tag = unique();
    let (id, other) = (format!("pw-{tag}"), format!("pw-other-{tag}"));
    s.create_account(account(&id, &format!("pw.{tag}@example.com")))
        .await
        .unwrap();
    s.create_account(account(&other, &format!("pw.other.{tag}@example.com")))
        .await
        .unwrap();
    let first = token(&format!("pw-a-{tag}"), &id, Duration::days(1));
    let second = token(&format!("pw-b-{tag}"), &id, Duration::days(1));
    let others = token(&format!("pw-c-{tag}"), &other, Duration::days(1));
    for t in [&first, &second, &others] {
        s.start_refresh_family(t.clone()).await.unwrap();
    }
    assert!(s.set_password(&user(&id), "$argon2id$new").await.unwrap());
    assert!(!s
        .set_password(&user(&format!("nobody-{tag}")), "$argon2id$x")
        .await
        .unwrap());
    assert_eq!(
        s.get_account(&user(&id))
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "$argon2id$new"
    );
    for t in [&first, &second] {
        let next = token(&format!("{}-next", t.hash), &id, Duration::days(1));
        assert_eq!(
            s.rotate_refresh_token(&t.hash, next).await.unwrap(),
            Rotation::Revoked
        );
    }
    let next = token(&format!("pw-c2-{tag}"), &other, Duration::days(1));
    assert!(matches!(
        s.rotate_refresh_token(&others.hash, next).await.unwrap(),
        Rotation::Rotated { .. }
    ));
    // The other account's password is untouched.
    assert_ne!(
        s.get_account(&user(&other))
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "$argon2id$new"
    );
}

pub(super) async fn verified_emails_and_enabled_accounts_stick(s: S) {
    let tag = unique();
    let id = format!("ve-{tag}");
    s.create_account(account(&id, &format!("ve.{tag}@example.com")))
        .await
        .unwrap();
    assert!(
        !s.get_account(&user(&id))
            .await
            .unwrap()
            .unwrap()
            .email_verified
    );
    assert!(s.set_email_verified(&user(&id)).await.unwrap());
    assert!(
        s.get_account(&user(&id))
            .await
            .unwrap()
            .unwrap()
            .email_verified
    );
    let nobody = user(&format!("nobody-{tag}"));
    assert!(!s.set_email_verified(&nobody).await.unwrap());

    assert!(s.disable_account(&user(&id), Utc::now()).await.unwrap());
    assert!(s.account_disabled(&user(&id)).await.unwrap());
    assert!(s.enable_account(&user(&id)).await.unwrap());
    assert!(!s.account_disabled(&user(&id)).await.unwrap());
    // Enabling an active account changes nothing; an unknown id is false.
    assert!(s.enable_account(&user(&id)).await.unwrap());
    assert!(!s.account_disabled(&user(&id)).await.unwrap());
    assert!(!s.enable_account(&nobody).await.unwrap());
}
