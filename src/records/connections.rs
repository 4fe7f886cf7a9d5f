//! Links between a user and their account at a data source, as the store keeps
//! them: the connection's status, its sealed tokens and the OAuth
//! authorizations in progress. Sealing and the key file are `connections`'.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::domain::UserId;
use crate::secret::Secret;

/// A source account a user can connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    Dexcom,
}

impl Provider {
    pub const ALL: [Provider; 1] = [Provider::Dexcom];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Dexcom => "dexcom",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == raw)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The contract's connection states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionStatus {
    /// Tokens are stored and polling runs.
    Connected,
    /// Dexcom refused our refresh token (`invalid_grant`): tokens were discarded
    /// and polling stops until the user connects again.
    ReauthRequired,
    /// Never finished connecting, or disconnected by the user: no tokens.
    Disconnected,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Connected => "connected",
            ConnectionStatus::ReauthRequired => "reauth_required",
            ConnectionStatus::Disconnected => "disconnected",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Connected, Self::ReauthRequired, Self::Disconnected]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }

    /// Whether storing a connection in this status over one in `previous` (None:
    /// no row yet) is news for event consumers: any change of status, and every
    /// (re)connect, which brings new tokens. Every store backend asks this, so
    /// all publish the same `connection.*` events.
    pub fn is_news_after(self, previous: Option<ConnectionStatus>) -> bool {
        self == ConnectionStatus::Connected || previous != Some(self)
    }
}

/// Tokens sealed by `cipher::TokenCipher`: what the store keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedTokens {
    /// Which key sealed them (so keys can rotate).
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// One user's link to one provider, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub user_id: UserId,
    pub provider: Provider,
    pub status: ConnectionStatus,
    /// Present exactly when `status` is `Connected`.
    pub tokens: Option<SealedTokens>,
    pub access_expires_at: Option<DateTime<Utc>>,
    /// When to refresh ahead of expiry (derived from `expires_in` when issued).
    pub access_refresh_at: Option<DateTime<Utc>>,
    /// Bumped by every token write, so a caller can tell whether a refresh
    /// happened since it read the tokens.
    pub token_version: i64,
    pub connected_at: Option<DateTime<Utc>>,
    pub last_sync_at: Option<DateTime<Utc>>,
    /// The high-water mark: the newest reading time a sync has stored. The next
    /// incremental poll starts here minus the overlap window. Written only by
    /// sync jobs (`JobStore::checkpoint_job`); `put_connection` keeps the stored one.
    pub sync_cursor: Option<DateTime<Utc>>,
    /// Why the connection is not (or was not) working, for the user and operators.
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl Connection {
    /// A record for a user who has not (successfully) connected.
    pub fn disconnected(user_id: UserId, provider: Provider, now: DateTime<Utc>) -> Self {
        Self {
            user_id,
            provider,
            status: ConnectionStatus::Disconnected,
            tokens: None,
            access_expires_at: None,
            access_refresh_at: None,
            token_version: 0,
            connected_at: None,
            last_sync_at: None,
            sync_cursor: None,
            last_error: None,
            updated_at: now,
        }
    }
}

/// An OAuth authorization in progress: created by `/oauth/authorize`, consumed
/// (once) by `/oauth/callback`.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingAuthorization {
    /// SHA-256 of the `state` parameter: the store never holds a usable state.
    pub state_hash: String,
    pub user_id: UserId,
    pub provider: Provider,
    /// The PKCE verifier; useless without the authorization code, which only the
    /// user's browser receives, and gone after 10 minutes or first use.
    pub pkce_verifier: Option<Secret<String>>,
    /// SHA-256 of the secret in the cookie of the browser that started the
    /// flow: the callback must come back to that browser (no login CSRF).
    pub browser_hash: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// How a refresh under a lease ended (see `ConnectionStore::finish_refresh`).
#[derive(Debug, Clone)]
pub enum RefreshOutcome {
    /// New tokens: stored, version bumped, status connected.
    Refreshed {
        tokens: SealedTokens,
        access_expires_at: DateTime<Utc>,
        access_refresh_at: DateTime<Utc>,
    },
    /// The provider refused the refresh token: tokens dropped, reauth required.
    Revoked { error: String },
    /// A transient failure: the lease is released and the error recorded; the
    /// tokens stay for the next attempt.
    Failed { error: String },
    /// The same tokens sealed again under the current key: only the sealed
    /// columns change (no version bump, `last_error` kept).
    Rewrapped { tokens: SealedTokens },
    /// Nothing to do after all (another holder refreshed first): release only.
    Released,
}

/// What a finished sync notes on its connection, decided here once for
/// `ConnectionStore::record_sync` and for a job's final end, in every backend:
/// success notes `last_sync_at` and clears the error, a failure notes the error
/// and keeps `last_sync_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncNote {
    /// Some: the connection's `last_sync_at` becomes this; None: kept.
    pub last_sync_at: Option<DateTime<Utc>>,
    /// The connection's `last_error` from now on (None clears it).
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl SyncNote {
    /// A sync that ended at `at`, with `error` if it failed.
    pub fn of(at: DateTime<Utc>, error: Option<String>) -> Self {
        Self {
            last_sync_at: error.is_none().then_some(at),
            last_error: error,
            updated_at: at,
        }
    }
}
