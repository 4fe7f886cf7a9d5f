//! What a failed connect, disconnect or refresh means to a client, whatever
//! the source: each source maps its own errors (and words their messages);
//! the HTTP layer maps each kind to one status and error code.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ConnectFault {
    /// No connection to act on.
    #[error("{0}")]
    NotConnected(String),
    /// The provider revoked or expired the grant: the user must reconnect.
    #[error("{0}")]
    ReauthRequired(String),
    /// This callback cannot complete a sign-in (unknown state, no code,
    /// another browser, a refused code).
    #[error("{0}")]
    BadCallback(String),
    /// The user declined at the provider.
    #[error("{0}")]
    Declined(String),
    /// The provider failed or refused while the client waited.
    #[error("{0}")]
    Upstream(String),
    /// Someone else is doing it right now: retry shortly.
    #[error("{0}")]
    Busy(String),
    /// Our side cannot proceed (e.g. tokens sealed under an unknown key).
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}
