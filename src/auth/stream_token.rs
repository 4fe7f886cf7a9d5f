//! Stream tokens: how a browser's `EventSource`, which cannot send an
//! Authorization header, opens a user's live stream. A short-lived token, bound
//! to the caller and to the user whose stream it opens, signed with HMAC-SHA256
//! under a key derived from TOKEN_ENCRYPTION_KEY (which every instance has), and
//! accepted only as `?access_token=` on that user's stream route.

use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::Principal;
use crate::domain::UserId;
use crate::records::roles::{Role, Roles};
use crate::secret::Secret;

/// Every stream token starts with this, so it is never mistaken for a JWT (and a
/// JWT in `?access_token=` is refused before any signature is checked).
const PREFIX: &str = "cgmst1.";
/// What the MAC covers besides the payload: the format and purpose.
const CONTEXT: &[u8] = b"cgm-hub/stream-token/v1.";

/// Why a stream token is refused (all 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamTokenError {
    #[error("access_token is not a stream token (get one from POST /api/users/{{userId}}/stream-token; bearer tokens are not accepted in the query string)")]
    Malformed,
    #[error("the stream token's signature does not verify")]
    BadSignature,
    #[error(
        "the stream token has expired; get a new one from POST /api/users/{{userId}}/stream-token"
    )]
    Expired,
    #[error("the stream token is for another user's stream")]
    OtherUser,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    /// Whose stream it opens.
    sub: String,
    /// Who asked for it (the principal the stream acts as).
    act: String,
    roles: Vec<String>,
    /// Unix seconds.
    exp: i64,
}

/// Mints and verifies stream tokens under one key.
pub struct StreamTokens {
    key: Secret<[u8; 32]>,
    ttl: std::time::Duration,
}

impl StreamTokens {
    pub fn new(key: Secret<[u8; 32]>, ttl: std::time::Duration) -> Self {
        Self { key, ttl }
    }

    pub fn ttl(&self) -> std::time::Duration {
        self.ttl
    }

    fn mac(&self) -> hmac::Hmac<Sha256> {
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(self.key.expose())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(CONTEXT);
        mac
    }

    /// A token for `principal` to open `user`'s stream until `now` + ttl.
    pub fn mint(&self, principal: &Principal, user: &UserId, now: DateTime<Utc>) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let claims = Claims {
            sub: user.to_string(),
            act: principal.user_id.to_string(),
            roles: principal
                .roles
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
            exp: now.timestamp() + self.ttl.as_secs() as i64,
        };
        let payload = b64.encode(serde_json::to_vec(&claims).expect("plain claims serialize"));
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let tag = b64.encode(mac.finalize().into_bytes());
        format!("{PREFIX}{payload}.{tag}")
    }

    /// The principal a token for `user`'s stream stands for, at `now`. The
    /// signature is checked (in constant time) before anything in the token is
    /// believed.
    pub fn verify(
        &self,
        token: &str,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> Result<Principal, StreamTokenError> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let rest = token
            .strip_prefix(PREFIX)
            .ok_or(StreamTokenError::Malformed)?;
        let (payload, tag) = rest.split_once('.').ok_or(StreamTokenError::Malformed)?;
        let tag = b64.decode(tag).map_err(|_| StreamTokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&tag)
            .map_err(|_| StreamTokenError::BadSignature)?;
        let claims: Claims = b64
            .decode(payload)
            .ok()
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .ok_or(StreamTokenError::Malformed)?;
        if claims.exp <= now.timestamp() {
            return Err(StreamTokenError::Expired);
        }
        if claims.sub != user.as_str() {
            return Err(StreamTokenError::OtherUser);
        }
        let roles: Roles = claims.roles.iter().filter_map(|r| Role::parse(r)).collect();
        let user_id = UserId::parse(&claims.act).map_err(|_| StreamTokenError::Malformed)?;
        if roles.is_empty() {
            return Err(StreamTokenError::Malformed);
        }
        Ok(Principal { user_id, roles })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(key: u8) -> StreamTokens {
        StreamTokens::new(Secret::new([key; 32]), std::time::Duration::from_secs(300))
    }

    fn principal() -> Principal {
        Principal {
            user_id: UserId::parse("carer").expect("valid"),
            roles: [Role::Caregiver].into(),
        }
    }

    #[test]
    fn a_token_opens_its_users_stream_as_its_principal_until_it_expires() {
        let t = tokens(1);
        let user = UserId::parse("patient").expect("valid");
        let now = Utc::now();
        let token = t.mint(&principal(), &user, now);
        assert_eq!(t.verify(&token, &user, now), Ok(principal()));
        let later = now + chrono::Duration::seconds(300);
        assert_eq!(
            t.verify(&token, &user, later),
            Err(StreamTokenError::Expired)
        );
        let other = UserId::parse("someone-else").expect("valid");
        assert_eq!(
            t.verify(&token, &other, now),
            Err(StreamTokenError::OtherUser)
        );
    }

    #[test]
    fn tampered_foreign_and_bearer_tokens_are_refused() {
        let user = UserId::parse("patient").expect("valid");
        let now = Utc::now();
        let token = tokens(1).mint(&principal(), &user, now);
        assert_eq!(
            tokens(2).verify(&token, &user, now),
            Err(StreamTokenError::BadSignature),
            "another key"
        );
        let (head, tag) = token.rsplit_once('.').expect("two parts");
        let mut forged = head.to_owned();
        forged.push('A');
        assert_eq!(
            tokens(1).verify(&format!("{forged}.{tag}"), &user, now),
            Err(StreamTokenError::BadSignature)
        );
        assert_eq!(
            tokens(1).verify("eyJhbGciOiJIUzI1NiJ9.e30.sig", &user, now),
            Err(StreamTokenError::Malformed),
            "a JWT is not a stream token"
        );
    }
}
