//! The `stale` alert: a user whose readings stopped (an uploader phone that
//! died, a sensor that ended, a broken connection) gets an alert once their
//! newest reading is `stale_minutes` old. Nothing arrives to evaluate, so a
//! timer looks instead; the next stored reading resolves it (`alerts.rs`).
//! docs/alerts.md ("Stale") states every rule and number.
//!
//! Every instance runs the timer; no lease. Raising is safe from any number of
//! instances at once (the store keeps one open alert per user and type, and a
//! re-raise is a transition conditional on the stored status), and a pass is
//! cheap (one index range read of the users whose newest reading is between
//! one minute and 24 hours old, then their settings), so a lease would save a
//! little load at the cost of a moving part whose failure stops the alert.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::records::alerts::{Alert, AlertStatus, AlertType};
use crate::records::stale::NewestReading;
use crate::store::{AlertStore, ReadingStore, StaleStore, StoreError};

/// Users with no reading for this long are left alone: their readings did not
/// stop just now (or they stopped using a CGM).
pub const QUIET_FOR_GOOD: Duration = Duration::hours(24);
/// The smallest `stale_minutes`: newer readings are never stale.
pub const MIN_QUIET: Duration = Duration::minutes(1);
/// Candidates read per store call.
const PAGE: usize = 500;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Users whose newest reading is between `MIN_QUIET` and `QUIET_FOR_GOOD` old.
    pub candidates: u64,
    /// Stale alerts raised or raised again after their snooze.
    pub raised: u64,
}

/// Looks for users gone quiet (see the module doc).
#[derive(Clone)]
pub struct StaleWatch {
    readings: Arc<dyn ReadingStore>,
    alerts: Arc<dyn AlertStore>,
    newest: Arc<dyn StaleStore>,
}

impl StaleWatch {
    pub fn new(
        readings: Arc<dyn ReadingStore>,
        alerts: Arc<dyn AlertStore>,
        newest: Arc<dyn StaleStore>,
    ) -> Self {
        Self {
            readings,
            alerts,
            newest,
        }
    }

    /// One pass at `now`: raises the stale alerts due.
    pub async fn check(&self, now: DateTime<Utc>) -> Result<Pass, StoreError> {
        let from = now - QUIET_FOR_GOOD;
        // Whole seconds: a newest time at exactly `now - MIN_QUIET` is a candidate.
        let until = now - MIN_QUIET + Duration::seconds(1);
        let mut pass = Pass::default();
        let mut after = None;
        loop {
            let page = self
                .newest
                .quiet_users(from, until, after.take(), PAGE)
                .await?;
            for candidate in &page {
                pass.candidates += 1;
                if self.check_user(candidate, now).await? {
                    pass.raised += 1;
                }
            }
            if page.len() < PAGE {
                return Ok(pass);
            }
            after = page.last().cloned();
        }
    }

    /// Raises (or raises again after its snooze) the user's stale alert when
    /// due: true when it did.
    async fn check_user(
        &self,
        candidate: &NewestReading,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let user = &candidate.user_id;
        let settings = self
            .alerts
            .get_alert_settings(user)
            .await?
            .unwrap_or_default();
        let stale_after = Duration::minutes(settings.stale_minutes().into());
        if now - candidate.at < stale_after {
            return Ok(false);
        }
        let open = self.alerts.open_alerts(user).await?;
        let current = open.iter().find(|a| a.alert_type == AlertType::Stale);
        let snoozed_out = |a: &Alert| {
            a.status == AlertStatus::Acknowledged
                && a.acknowledged_at
                    .is_some_and(|t| now - t >= Duration::minutes(settings.snooze_minutes().into()))
        };
        if current.is_some_and(|a| !snoozed_out(a)) {
            return Ok(false); // active, or acknowledged and snoozed
        }
        // The readings are the truth (the index may lag them on DynamoDB).
        let Some(latest) = self.readings.latest_reading(user).await? else {
            return Ok(false);
        };
        let at = latest.reading.timestamp.as_datetime();
        let quiet = now - at;
        if quiet < stale_after || quiet > QUIET_FOR_GOOD {
            return Ok(false);
        }
        let value = latest.reading.glucose.mg_dl().get();
        let message = format!(
            "No reading for {} minutes (last: {value} mg/dL at {})",
            quiet.num_minutes(),
            at.format("%Y-%m-%d %H:%M UTC")
        );
        let raised = match current {
            Some(a) => {
                let again = a.reraised(Some(value), Some(at), message);
                let done = self
                    .alerts
                    .transition_alert(AlertStatus::Acknowledged, again.clone())
                    .await?;
                done.then_some(again)
            }
            None => {
                let alert =
                    Alert::raise(user, AlertType::Stale, Some(value), Some(at), now, message);
                let done = self.alerts.raise_alert(alert.clone()).await?;
                done.then_some(alert)
            }
        };
        let Some(alert) = raised else {
            return Ok(false); // another instance was first
        };
        metrics::counter!("alerts_raised_total", "type" => AlertType::Stale.as_str()).increment(1);
        // A reading stored while this pass looked: its evaluation saw no stale
        // alert to resolve, so resolve it here.
        if let Some(newer) = self.readings.latest_reading(user).await? {
            if newer.reading.timestamp.as_datetime() > at {
                self.alerts
                    .transition_alert(AlertStatus::Active, alert.resolved(Utc::now()))
                    .await?;
            }
        }
        Ok(true)
    }

    /// Runs a pass every `every` until `stop` turns true (or its sender is dropped).
    pub fn start(self, every: StdDuration, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
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
                let started = std::time::Instant::now();
                match self.check(Utc::now()).await {
                    Ok(pass) => {
                        metrics::histogram!("alert_stale_pass_seconds")
                            .record(started.elapsed().as_secs_f64());
                        if pass.raised > 0 {
                            tracing::info!(
                                candidates = pass.candidates,
                                raised = pass.raised,
                                "stale alerts raised"
                            );
                        }
                    }
                    // The next tick tries again: the state is the stored readings.
                    Err(e) => {
                        metrics::counter!("alert_stale_passes_failed_total").increment(1);
                        tracing::warn!(error = %e, "stale alert pass failed");
                    }
                }
            }
        })
    }
}
