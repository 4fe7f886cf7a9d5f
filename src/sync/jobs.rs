//! Sync jobs: the stored records live in `records::jobs` (re-exported here);
//! what is left is the question the API and the CLI ask before queueing one.

use crate::connections::Provider;
use crate::domain::UserId;

pub use crate::records::jobs::*;

/// Why `user` cannot be synced on request: no working Dexcom connection (the
/// message names the status). Manual syncs from the API and the CLI both ask.
pub async fn not_syncable(
    store: &dyn crate::store::Store,
    user: &UserId,
) -> Result<Option<String>, crate::store::StoreError> {
    use crate::connections::ConnectionStatus;
    let status = store
        .get_connection(user, Provider::Dexcom)
        .await?
        .map(|c| c.status);
    Ok((status != Some(ConnectionStatus::Connected)).then(|| {
        format!(
            "{user} has no working Dexcom connection (status: {})",
            status.map_or("never connected", ConnectionStatus::as_str)
        )
    }))
}
