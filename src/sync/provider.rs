//! Which provider a requested sync (API or CLI) fetches from, and why a user
//! cannot be synced: decided here once, for every registered source, so the
//! callers name no provider themselves.

use crate::domain::UserId;
use crate::records::connections::{ConnectionStatus, Provider};
use crate::store::{ConnectionStore, StoreError};

/// A provider's name as people read it ("dexcom" → "Dexcom").
pub fn provider_name(provider: Provider) -> String {
    let raw = provider.as_str();
    let mut chars = raw.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Why `user` cannot be synced from `provider` on request: no working
/// connection (the message names the status).
pub async fn not_syncable(
    store: &dyn ConnectionStore,
    user: &UserId,
    provider: Provider,
) -> Result<Option<String>, StoreError> {
    let status = store
        .get_connection(user, provider)
        .await?
        .map(|c| c.status);
    Ok((status != Some(ConnectionStatus::Connected)).then(|| {
        format!(
            "{user} has no working {} connection (status: {})",
            provider_name(provider),
            status.map_or("never connected", ConnectionStatus::as_str)
        )
    }))
}

/// What a requested sync of a user fetches from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncTarget {
    Ready(Provider),
    /// No working connection to sync from (a conflict with the user's state).
    NotSyncable(String),
    /// More than one working connection and none named (a bad request).
    Ambiguous(String),
}

/// The provider a sync of `user` fetches from: `asked` when named; otherwise
/// the one of `registered` the user has a working connection to. With one
/// source registered (Dexcom today) that is always it, and the answers are
/// the ones a Dexcom-only service gave.
pub async fn sync_target(
    store: &dyn ConnectionStore,
    user: &UserId,
    asked: Option<Provider>,
    registered: &[Provider],
) -> Result<SyncTarget, StoreError> {
    let candidates: Vec<Provider> = match asked {
        Some(p) => vec![p],
        None => registered.to_vec(),
    };
    if let [only] = candidates.as_slice() {
        return Ok(match not_syncable(store, user, *only).await? {
            Some(reason) => SyncTarget::NotSyncable(reason),
            None => SyncTarget::Ready(*only),
        });
    }
    let mut working = Vec::new();
    let mut reasons = Vec::new();
    for p in candidates {
        match not_syncable(store, user, p).await? {
            None => working.push(p),
            Some(reason) => reasons.push(reason),
        }
    }
    Ok(match working.as_slice() {
        [one] => SyncTarget::Ready(*one),
        [] if reasons.is_empty() => {
            SyncTarget::NotSyncable(format!("{user} cannot be synced: no source is configured"))
        }
        [] => SyncTarget::NotSyncable(reasons.join("; ")),
        several => SyncTarget::Ambiguous(format!(
            "{user} has working connections to {}; name one with provider",
            several
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names_read_as_before_there_were_several() {
        // "no working Dexcom connection" is pinned by the operator kit and by
        // stored job errors.
        assert_eq!(provider_name(Provider::Dexcom), "Dexcom");
    }
}
