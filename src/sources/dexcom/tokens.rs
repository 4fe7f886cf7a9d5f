//! Access tokens on demand: opens the sealed tokens, refreshes ahead of expiry,
//! and makes sure one refresh at a time happens per user, within this process (a
//! per-user async lock) and across instances sharing a store (a lease row, with
//! an id of its own per acquisition). The rotated refresh token is persisted
//! before the new access token is used, and only `invalid_grant` turns a
//! connection into `reauth_required`.
//!
//! A refresh spends the old refresh token, so once it may have reached Dexcom its
//! outcome must be stored whatever happens to the caller. The whole refresh (the
//! lock, the lease, the grant and the write) runs in a task of its own, tracked
//! so that shutdown waits for it; a dropped request cannot cut it short, and the
//! lease outlasts the longest possible call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio_util::task::TaskTracker;

use super::oauth::{Grant, OAuthClient, TokenError};
use crate::connections::cipher::{CipherError, TokenCipher};
use crate::domain::UserId;
use crate::records::connections::{
    Connection, ConnectionStatus, Provider, RefreshOutcome, SealedTokens,
};
use crate::secret::Secret;
use crate::store::{ConnectionStore, StoreError};

/// Added to the longest possible token call to size the refresh lease.
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// How often a caller waiting on another instance's lease looks again.
const LEASE_POLL: Duration = Duration::from_millis(100);
/// Attempts to store a refresh's outcome before giving up on it.
const SAVE_ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("user has no Dexcom connection")]
    NotConnected,
    #[error("Dexcom authorization was revoked or expired; the user must reconnect")]
    ReauthRequired,
    #[error("token refresh failed: {0}")]
    Refresh(#[from] TokenError),
    #[error("another instance is refreshing this user's token and has not finished")]
    RefreshBusy,
    #[error("stored tokens cannot be opened: {0}")]
    Cipher(#[from] CipherError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An access token and the token version it belongs to (so that a 401 can ask
/// for a refresh of exactly this token).
pub struct Access {
    pub token: Secret<String>,
    pub version: i64,
}

pub struct TokenManager {
    shared: Arc<Shared>,
    /// Every refresh task, so that shutdown can wait for them.
    tasks: TaskTracker,
}

/// What a refresh task needs.
struct Shared {
    store: Arc<dyn ConnectionStore>,
    cipher: Arc<TokenCipher>,
    oauth: Arc<OAuthClient>,
    /// This instance's prefix for lease ids.
    instance: String,
    lease: Duration,
    locks: Mutex<HashMap<UserId, Arc<tokio::sync::Mutex<()>>>>,
}

impl TokenManager {
    pub fn new(
        store: Arc<dyn ConnectionStore>,
        cipher: Arc<TokenCipher>,
        oauth: Arc<OAuthClient>,
    ) -> Self {
        let lease = oauth.worst_case_call() + LEASE_MARGIN;
        Self {
            shared: Arc::new(Shared {
                store,
                cipher,
                oauth,
                instance: format!("instance-{}", uuid::Uuid::new_v4()),
                lease,
                locks: Mutex::new(HashMap::new()),
            }),
            tasks: TaskTracker::new(),
        }
    }

    pub fn cipher(&self) -> &TokenCipher {
        &self.shared.cipher
    }

    /// How long a refresh lease is held at most (a crashed holder's expires).
    pub fn lease(&self) -> Duration {
        self.shared.lease
    }

    /// Waits (at most `grace`) for refreshes in flight, so that shutting down
    /// does not lose a rotated token. No new refresh starts afterwards.
    pub async fn shutdown(&self, grace: Duration) {
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("a Dexcom token refresh was still running at shutdown");
        }
    }

    /// A usable access token, refreshed first if it is due. If the refresh fails
    /// for a passing reason while the current token is still valid, the current
    /// one is used (and the next call tries again).
    pub async fn access(&self, user: &UserId) -> Result<Access, AccessError> {
        let c = self.shared.connected(user).await?;
        if fresh(&c) {
            return self.shared.open(&c);
        }
        match self.refresh(user, c.token_version).await {
            Err(e @ (AccessError::Refresh(_) | AccessError::RefreshBusy))
                if c.access_expires_at.is_some_and(|at| Utc::now() < at) =>
            {
                tracing::warn!(user_id = %user, error = %e, "early token refresh failed; using the current token until it expires");
                self.shared.open(&c)
            }
            other => other,
        }
    }

    /// Refreshes the token of version `seen` (the one that is due, or that got a
    /// 401). If another caller already replaced it, their fresh token is returned
    /// instead of refreshing again.
    pub async fn refresh(&self, user: &UserId, seen: i64) -> Result<Access, AccessError> {
        if self.tasks.is_closed() {
            return Err(AccessError::Store(StoreError::Unavailable(
                "shutting down".into(),
            )));
        }
        let shared = self.shared.clone();
        let user = user.clone();
        let task = self.tasks.spawn(async move {
            let lock = shared.user_lock(&user);
            let turn = lock.clone().lock_owned().await;
            let result = shared.refresh_locked(&user, seen).await;
            drop(turn);
            shared.forget_lock(&user, lock);
            result
        });
        task.await.unwrap_or_else(|e| {
            Err(AccessError::Store(StoreError::Internal(format!(
                "token refresh task failed: {e}"
            ))))
        })
    }

    /// Seals the user's tokens again under the current key if an older key
    /// sealed them, under the user's lock and the refresh lease (so it cannot
    /// race a refresh). Returns whether it rewrote them; a busy lease is skipped.
    pub async fn rewrap(&self, user: &UserId) -> Result<bool, AccessError> {
        let s = &self.shared;
        let lock = s.user_lock(user);
        let turn = lock.clone().lock_owned().await;
        let result = s.rewrap_locked(user).await;
        drop(turn);
        s.forget_lock(user, lock);
        result
    }

    /// Seals a grant for `user` and computes when it expires and when to refresh.
    pub fn seal_grant(
        &self,
        user: &UserId,
        grant: &Grant,
    ) -> Result<(SealedTokens, chrono::DateTime<Utc>, chrono::DateTime<Utc>), AccessError> {
        self.shared.seal_grant(user, grant)
    }
}

impl Shared {
    async fn refresh_locked(&self, user: &UserId, seen: i64) -> Result<Access, AccessError> {
        let waited_since = tokio::time::Instant::now();
        loop {
            let c = self.connected(user).await?;
            if c.token_version != seen && fresh(&c) {
                return self.open(&c);
            }
            let Some((lease_id, c)) = self.take_lease(user).await? else {
                // Another instance holds the lease: wait for its result.
                if waited_since.elapsed() > self.lease + LEASE_POLL {
                    return Err(AccessError::RefreshBusy);
                }
                tokio::time::sleep(LEASE_POLL).await;
                continue;
            };
            if c.token_version != seen && fresh(&c) {
                self.save(user, &lease_id, RefreshOutcome::Released).await?;
                return self.open(&c);
            }
            return self.refresh_leased(user, &lease_id, &c).await;
        }
    }

    /// Takes the refresh lease under a fresh id; the row as it is now.
    async fn take_lease(&self, user: &UserId) -> Result<Option<(String, Connection)>, StoreError> {
        let lease_id = format!("{}/{}", self.instance, uuid::Uuid::new_v4());
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(self.lease).unwrap_or_default();
        Ok(self
            .store
            .try_refresh_lease(user, Provider::Dexcom, &lease_id, now, until)
            .await?
            .map(|c| (lease_id, c)))
    }

    async fn refresh_leased(
        &self,
        user: &UserId,
        lease_id: &str,
        c: &Connection,
    ) -> Result<Access, AccessError> {
        let tokens = match self.open_tokens(c) {
            Ok(t) => t,
            Err(e) => {
                let error = e.to_string();
                self.save(user, lease_id, RefreshOutcome::Failed { error })
                    .await?;
                return Err(e.into());
            }
        };
        match self.oauth.refresh(&tokens.refresh_token).await {
            Ok(grant) => {
                let outcome = match self.seal_grant(user, &grant) {
                    Ok((sealed, expires, refresh_at)) => RefreshOutcome::Refreshed {
                        tokens: sealed,
                        access_expires_at: expires,
                        access_refresh_at: refresh_at,
                    },
                    Err(e) => {
                        let error = e.to_string();
                        self.save(user, lease_id, RefreshOutcome::Failed { error })
                            .await?;
                        return Err(e);
                    }
                };
                // Persisted (with the rotated refresh token) before anyone uses it.
                if !self.save(user, lease_id, outcome).await? {
                    // Disconnected or reconnected meanwhile: what we got is not
                    // the user's connection any more.
                    return Err(AccessError::NotConnected);
                }
                tracing::info!(user_id = %user, "Dexcom token refreshed");
                Ok(Access {
                    token: grant.tokens.access_token,
                    version: c.token_version + 1,
                })
            }
            Err(TokenError::InvalidGrant { description }) => {
                let error = format!(
                    "Dexcom refused the refresh token (invalid_grant){}; reconnect through /oauth/authorize",
                    description.map(|d| format!(": {d}")).unwrap_or_default()
                );
                self.save(user, lease_id, RefreshOutcome::Revoked { error })
                    .await?;
                metrics::counter!("dexcom_reauth_required_total").increment(1);
                tracing::warn!(user_id = %user, "Dexcom connection needs re-authorization; polling stops for this user");
                Err(AccessError::ReauthRequired)
            }
            Err(e) => {
                let error = e.to_string();
                self.save(user, lease_id, RefreshOutcome::Failed { error })
                    .await?;
                tracing::warn!(user_id = %user, error = %e, "Dexcom token refresh failed; will retry");
                Err(e.into())
            }
        }
    }

    async fn rewrap_locked(&self, user: &UserId) -> Result<bool, AccessError> {
        let Some((lease_id, c)) = self.take_lease(user).await? else {
            return Ok(false);
        };
        let Some(sealed) = c.tokens.as_ref().filter(|s| self.cipher.needs_rewrap(s)) else {
            self.save(user, &lease_id, RefreshOutcome::Released).await?;
            return Ok(false);
        };
        let resealed = self
            .cipher
            .open(user, Provider::Dexcom, sealed)
            .and_then(|tokens| self.cipher.seal(user, Provider::Dexcom, &tokens));
        match resealed {
            Ok(tokens) => Ok(self
                .save(user, &lease_id, RefreshOutcome::Rewrapped { tokens })
                .await?),
            Err(e) => {
                self.save(user, &lease_id, RefreshOutcome::Released).await?;
                Err(e.into())
            }
        }
    }

    /// Stores a refresh's outcome and releases the lease, retrying a failing
    /// store: new tokens that are not stored are lost for good.
    async fn save(
        &self,
        user: &UserId,
        lease_id: &str,
        outcome: RefreshOutcome,
    ) -> Result<bool, StoreError> {
        let mut attempt = 1;
        loop {
            match self
                .store
                .finish_refresh(
                    user,
                    Provider::Dexcom,
                    lease_id,
                    outcome.clone(),
                    Utc::now(),
                )
                .await
            {
                Ok(held) => return Ok(held),
                Err(e) if attempt < SAVE_ATTEMPTS => {
                    tracing::error!(user_id = %user, attempt, error = %e, "could not store a token refresh; retrying");
                    tokio::time::sleep(Duration::from_millis(100) * 2u32.pow(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn seal_grant(
        &self,
        user: &UserId,
        grant: &Grant,
    ) -> Result<(SealedTokens, chrono::DateTime<Utc>, chrono::DateTime<Utc>), AccessError> {
        let sealed = self.cipher.seal(user, Provider::Dexcom, &grant.tokens)?;
        let (expires, refresh_at) = grant.schedule(Utc::now());
        Ok((sealed, expires, refresh_at))
    }

    async fn connected(&self, user: &UserId) -> Result<Connection, AccessError> {
        let c = self
            .store
            .get_connection(user, Provider::Dexcom)
            .await?
            .ok_or(AccessError::NotConnected)?;
        match c.status {
            ConnectionStatus::Connected => Ok(c),
            ConnectionStatus::ReauthRequired => Err(AccessError::ReauthRequired),
            ConnectionStatus::Disconnected => Err(AccessError::NotConnected),
        }
    }

    fn open_tokens(&self, c: &Connection) -> Result<crate::connections::TokenSet, CipherError> {
        let sealed = c.tokens.as_ref().ok_or(CipherError::Open)?;
        self.cipher.open(&c.user_id, c.provider, sealed)
    }

    fn open(&self, c: &Connection) -> Result<Access, AccessError> {
        Ok(Access {
            token: self.open_tokens(c)?.access_token,
            version: c.token_version,
        })
    }

    fn user_lock(&self, user: &UserId) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(user.clone())
            .or_default()
            .clone()
    }

    /// Drops the user's lock entry once nobody else holds or waits on it, so the
    /// map stays as small as the set of users refreshing right now.
    fn forget_lock(&self, user: &UserId, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Two references: the map's and ours.
        if Arc::strong_count(&lock) == 2 {
            locks.remove(user);
        }
    }
}

fn fresh(c: &Connection) -> bool {
    c.access_refresh_at.is_some_and(|at| Utc::now() < at)
}
