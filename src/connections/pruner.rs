//! Deletes expired OAuth authorizations on a timer. Without it, a state that
//! nobody brings back to `/oauth/callback` stays in the store for good (the
//! callback removes only what it passes on its way), so `/oauth/authorize`
//! called in a loop would grow the `oauth_states` table without bound.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::ConnectionStore;

/// Prunes every `every` until `stop` turns true (or its sender is dropped).
pub fn start(
    store: Arc<dyn ConnectionStore>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                    continue;
                }
            }
            match store.prune_pending_authorizations(Utc::now()).await {
                Ok(0) => {}
                Ok(pruned) => {
                    metrics::counter!("oauth_states_pruned_total").increment(pruned);
                    tracing::debug!(pruned, "expired OAuth authorizations deleted");
                }
                // The next tick tries again; states are single use and expire
                // anyway, so a missed pass costs only space.
                Err(e) => {
                    tracing::warn!(error = %e, "could not prune expired OAuth authorizations")
                }
            }
        }
    })
}
