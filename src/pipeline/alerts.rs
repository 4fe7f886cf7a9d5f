//! Alert evaluation: after every stored batch, whatever its source, the alerts
//! of each user whose readings were inserted or changed are brought up to date
//! (raised, resolved, re-raised after their snooze). docs/alerts.md states every
//! rule and number.
//!
//! Why here and not in an event subscriber: `Pipeline::ingest` is the one path
//! every source takes (API, Dexcom poll, webhook, demo), it runs synchronously
//! after the upsert, so an alert is raised before the request that stored its
//! reading answers, on the instance that stored it, once (a subscriber would see
//! each event once per instance with RabbitMQ, and after a delay). A crash
//! between the upsert and the evaluation loses nothing for good: alert state is
//! derived from the stored readings, so the user's next stored reading
//! re-evaluates it. An evaluation that fails (storage) is logged and counted and
//! does not fail the ingest, for the same reason.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::domain::{AlertSettings, StoredReading, UserId};
use crate::records::alerts::{Alert, AlertStatus, AlertType};
use crate::store::{AlertStore, Order, ReadingStore, Scan, StoreError};

/// Readings older than this when stored never raise alerts (they may resolve).
pub const FRESH: Duration = Duration::minutes(15);
/// The readings an evaluation looks at: this long up to the user's newest.
pub const WINDOW: Duration = Duration::minutes(30);
/// The rate of change is measured over this long before the newest reading...
pub const RATE_WINDOW: Duration = Duration::minutes(15);
/// ...from at least two readings at least this far apart.
pub const RATE_MIN_SPAN: Duration = Duration::minutes(10);
/// The forecast needs at least this many readings over at least this long.
pub const FORECAST_MIN_READINGS: usize = 3;
pub const FORECAST_MIN_SPAN: Duration = Duration::minutes(15);
/// Hysteresis of the thresholds: a low resolves at `threshold + 10`, a high at
/// `threshold - 10`, a predicted low when the forecast is `urgent_low + 10`.
pub const HYSTERESIS_MG_DL: i32 = 10;
/// A fast change resolves when the rate is below `rate - 1` mg/dL/min (at
/// least half the rate).
pub const RATE_HYSTERESIS: f64 = 1.0;

/// The alert types evaluated on readings (`stale` needs a timer instead).
const EVALUATED: [AlertType; 7] = [
    AlertType::UrgentLow,
    AlertType::Low,
    AlertType::High,
    AlertType::UrgentHigh,
    AlertType::FallingFast,
    AlertType::RisingFast,
    AlertType::PredictedLow,
];

/// What the readings say about one alert type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The condition holds: raise (or keep open).
    Raise,
    /// Back past the threshold with its hysteresis: resolve.
    Clear,
    /// In between, or not enough readings to tell: leave as it is.
    Hold,
}

/// The figures an evaluation decides on, from the readings alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    pub value: u16,
    pub at: DateTime<Utc>,
    /// mg/dL per minute over `RATE_WINDOW`, when measurable.
    pub rate: Option<f64>,
    /// The least-squares forecast `predicted_low_minutes` after the newest
    /// reading, and the fitted slope (mg/dL per minute), when measurable.
    pub forecast: Option<(f64, f64)>,
}

impl Figures {
    /// From readings in time order, the newest last (None without readings).
    pub fn of(readings: &[StoredReading], settings: &AlertSettings) -> Option<Self> {
        let newest = readings.last()?;
        let at = newest.reading.timestamp.as_datetime();
        let points: Vec<(f64, f64)> = readings
            .iter()
            .filter(|r| at - r.reading.timestamp.as_datetime() <= WINDOW)
            .map(|r| {
                let minutes = (r.reading.timestamp.as_datetime() - at).num_seconds() as f64 / 60.0;
                (minutes, f64::from(r.reading.glucose.mg_dl().get()))
            })
            .collect();
        let value = newest.reading.glucose.mg_dl().get();
        let rate = points
            .iter()
            .find(|(m, _)| -*m <= RATE_WINDOW.num_seconds() as f64 / 60.0)
            .filter(|(m, _)| -*m >= RATE_MIN_SPAN.num_seconds() as f64 / 60.0)
            .map(|(m, v)| (f64::from(value) - v) / -m);
        let span = points.first().map_or(0.0, |(m, _)| -m);
        let forecast = (points.len() >= FORECAST_MIN_READINGS
            && span >= FORECAST_MIN_SPAN.num_seconds() as f64 / 60.0)
            .then(|| least_squares(&points))
            .flatten()
            .map(|(intercept, slope)| {
                let horizon = f64::from(settings.predicted_low_minutes());
                (intercept + slope * horizon, slope)
            });
        Some(Self {
            value,
            at,
            rate,
            forecast,
        })
    }

    /// The verdict for one alert type under `settings`.
    pub fn verdict(&self, alert_type: AlertType, settings: &AlertSettings) -> Verdict {
        let v = i32::from(self.value);
        let below = |threshold: u16| {
            let t = i32::from(threshold);
            if v < t {
                Verdict::Raise
            } else if v >= t + HYSTERESIS_MG_DL {
                Verdict::Clear
            } else {
                Verdict::Hold
            }
        };
        let above = |threshold: u16| {
            let t = i32::from(threshold);
            if v > t {
                Verdict::Raise
            } else if v <= t - HYSTERESIS_MG_DL {
                Verdict::Clear
            } else {
                Verdict::Hold
            }
        };
        let rate_limit = settings.rate_mgdl_per_min();
        let calm = (rate_limit - RATE_HYSTERESIS).max(rate_limit / 2.0);
        let fast = |signed: f64| match self.rate {
            None => Verdict::Hold,
            Some(r) if r * signed >= rate_limit => Verdict::Raise,
            Some(r) if r * signed < calm => Verdict::Clear,
            Some(_) => Verdict::Hold,
        };
        match alert_type {
            AlertType::UrgentLow => below(settings.urgent_low()),
            // An urgent low says it already; a low is not raised beside it.
            AlertType::Low => match below(settings.low()) {
                Verdict::Raise if v < i32::from(settings.urgent_low()) => Verdict::Hold,
                other => other,
            },
            AlertType::High => match above(settings.high()) {
                Verdict::Raise if settings.urgent_high().is_some_and(|uh| v > i32::from(uh)) => {
                    Verdict::Hold
                }
                other => other,
            },
            AlertType::UrgentHigh => match settings.urgent_high() {
                Some(t) => above(t),
                // Off: an alert raised before it was switched off resolves.
                None => Verdict::Clear,
            },
            AlertType::FallingFast => fast(-1.0),
            AlertType::RisingFast => fast(1.0),
            AlertType::PredictedLow => {
                let urgent = f64::from(settings.urgent_low());
                match self.forecast {
                    None => Verdict::Hold,
                    // Already urgent low: that alert says it.
                    Some(_) if v < i32::from(settings.urgent_low()) => Verdict::Hold,
                    Some((p, slope)) if slope < 0.0 && p < urgent => Verdict::Raise,
                    Some((p, _)) if p >= urgent + f64::from(HYSTERESIS_MG_DL) => Verdict::Clear,
                    Some(_) => Verdict::Hold,
                }
            }
            AlertType::Stale => Verdict::Hold,
        }
    }

    fn message(&self, alert_type: AlertType, settings: &AlertSettings) -> String {
        let v = self.value;
        match alert_type {
            AlertType::UrgentLow => {
                format!("Urgent low: {v} mg/dL (below {})", settings.urgent_low())
            }
            AlertType::Low => format!("Low: {v} mg/dL (below {})", settings.low()),
            AlertType::High => format!("High: {v} mg/dL (above {})", settings.high()),
            AlertType::UrgentHigh => format!(
                "Urgent high: {v} mg/dL (above {})",
                settings.urgent_high().unwrap_or_default()
            ),
            AlertType::FallingFast => format!(
                "Falling fast: {:.1} mg/dL/min, now {v} mg/dL",
                self.rate.unwrap_or_default()
            ),
            AlertType::RisingFast => format!(
                "Rising fast: {:.1} mg/dL/min, now {v} mg/dL",
                self.rate.unwrap_or_default()
            ),
            AlertType::PredictedLow => format!(
                "Predicted urgent low: {:.0} mg/dL within {} minutes, now {v} mg/dL",
                self.forecast.map_or(0.0, |(p, _)| p),
                settings.predicted_low_minutes()
            ),
            // Raised by the timer (`stale.rs`), which writes its own message.
            AlertType::Stale => "No readings".to_owned(),
        }
    }
}

/// Least-squares line through (minutes, mg/dL): (value at minute 0, slope).
fn least_squares(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx <= f64::EPSILON {
        return None;
    }
    let slope = sxy / sxx;
    Some((my - slope * mx, slope))
}

/// Brings alerts up to date after a batch (see the module doc).
#[derive(Clone)]
pub struct AlertEvaluator {
    readings: Arc<dyn ReadingStore>,
    alerts: Arc<dyn AlertStore>,
}

impl AlertEvaluator {
    pub fn new(readings: Arc<dyn ReadingStore>, alerts: Arc<dyn AlertStore>) -> Self {
        Self { readings, alerts }
    }

    /// Evaluates `user`, whose readings a batch inserted or changed; `fresh`:
    /// the batch held one of theirs at most `FRESH` old (only then may it raise).
    pub async fn evaluate(
        &self,
        user: &UserId,
        fresh: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let open = self.alerts.open_alerts(user).await?;
        let stale = open.iter().find(|a| a.alert_type == AlertType::Stale);
        if !fresh && open.is_empty() {
            return Ok(()); // nothing it may raise, nothing to resolve (a backfill)
        }
        let Some(latest) = self.readings.latest_reading(user).await? else {
            return Ok(());
        };
        if let Some(stale) = stale {
            // Readings again (even late ones): the stale alert resolves, once
            // the newest reading is newer than the one it was raised on (a
            // backfill of older readings is no sign of life).
            let newer = stale
                .reading_timestamp
                .is_none_or(|t| latest.reading.timestamp.as_datetime() > t);
            if newer {
                self.alerts
                    .transition_alert(stale.status, stale.resolved(now))
                    .await?;
            }
        }
        if !fresh && open.iter().all(|a| a.alert_type == AlertType::Stale) {
            return Ok(()); // nothing else it may raise or resolve
        }
        let until = latest.reading.timestamp.unix_seconds() + 1;
        let window = self
            .readings
            .scan_readings(Scan {
                user_id: user.clone(),
                from: until - 1 - WINDOW.num_seconds(),
                until,
                order: Order::Asc,
                limit: 256,
            })
            .await?;
        let settings = self
            .alerts
            .get_alert_settings(user)
            .await?
            .unwrap_or_default();
        let Some(figures) = Figures::of(&window, &settings) else {
            return Ok(());
        };
        // Raising also needs the newest stored reading to be recent (a late
        // upload of an old reading is not news about now).
        let may_raise = fresh && now - figures.at <= FRESH;
        for alert_type in EVALUATED {
            let current = open.iter().find(|a| a.alert_type == alert_type);
            let verdict = figures.verdict(alert_type, &settings);
            let message = || figures.message(alert_type, &settings);
            match (current, verdict) {
                (None, Verdict::Raise) if may_raise => {
                    let alert = Alert::raise(
                        user,
                        alert_type,
                        Some(figures.value),
                        Some(figures.at),
                        now,
                        message(),
                    );
                    if self.alerts.raise_alert(alert).await? {
                        metrics::counter!("alerts_raised_total", "type" => alert_type.as_str())
                            .increment(1);
                    }
                }
                (Some(a), Verdict::Clear) => {
                    self.alerts
                        .transition_alert(a.status, a.resolved(now))
                        .await?;
                }
                (Some(a), Verdict::Raise)
                    if may_raise
                        && a.status == AlertStatus::Acknowledged
                        && a.acknowledged_at.is_some_and(|t| {
                            now - t >= Duration::minutes(settings.snooze_minutes().into())
                        }) =>
                {
                    let again = a.reraised(Some(figures.value), Some(figures.at), message());
                    self.alerts
                        .transition_alert(AlertStatus::Acknowledged, again)
                        .await?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        AlertSettingsInput, DeviceInfo, Glucose, MgDl, Reading, ReadingTime, ReadingType, Source,
    };

    fn series(values: &[(i64, u16)]) -> Vec<StoredReading> {
        let base = Utc::now();
        values
            .iter()
            .map(|&(minutes, v)| StoredReading {
                reading: Reading {
                    user_id: UserId::parse("u").unwrap(),
                    timestamp: ReadingTime::from_utc(base + Duration::minutes(minutes)),
                    glucose: Glucose::value(MgDl::new(v).unwrap()),
                    trend: None,
                    trend_rate: None,
                    device: DeviceInfo::parse(None, None, None).unwrap(),
                    reading_type: ReadingType::Cgm,
                    source: Source::api(),
                    source_record_id: None,
                    display_offset_minutes: None,
                },
                version: 1,
                created_at: base,
                updated_at: base,
            })
            .collect()
    }

    fn verdicts(values: &[(i64, u16)], settings: &AlertSettings) -> Vec<(AlertType, Verdict)> {
        let f = Figures::of(&series(values), settings).unwrap();
        EVALUATED
            .iter()
            .map(|t| (*t, f.verdict(*t, settings)))
            .filter(|(_, v)| *v == Verdict::Raise)
            .collect()
    }

    #[test]
    fn thresholds_raise_alone_and_clear_past_their_hysteresis() {
        let s = AlertSettings::default();
        assert_eq!(verdicts(&[(0, 65)], &s), [(AlertType::Low, Verdict::Raise)]);
        assert_eq!(
            verdicts(&[(0, 50)], &s),
            [(AlertType::UrgentLow, Verdict::Raise)]
        );
        assert_eq!(
            verdicts(&[(0, 260)], &s),
            [(AlertType::High, Verdict::Raise)]
        );
        let f = Figures::of(&series(&[(0, 75)]), &s).unwrap();
        assert_eq!(f.verdict(AlertType::Low, &s), Verdict::Hold, "70..79 holds");
        let f = Figures::of(&series(&[(0, 80)]), &s).unwrap();
        assert_eq!(f.verdict(AlertType::Low, &s), Verdict::Clear);
        let with_urgent_high = AlertSettings::parse(&AlertSettingsInput {
            urgent_high: Some(300),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            verdicts(&[(0, 320)], &with_urgent_high),
            [(AlertType::UrgentHigh, Verdict::Raise)]
        );
    }

    #[test]
    fn rates_need_two_readings_ten_minutes_apart() {
        let s = AlertSettings::default();
        assert!(verdicts(&[(-5, 200), (0, 170)], &s).is_empty(), "5 minutes");
        assert_eq!(
            verdicts(&[(-15, 200), (-10, 180), (-5, 160), (0, 150)], &s),
            [(AlertType::FallingFast, Verdict::Raise)],
            "50 mg/dL in 15 minutes is 3.3/min"
        );
        assert_eq!(
            verdicts(&[(-10, 150), (-5, 170), (0, 185)], &s),
            [(AlertType::RisingFast, Verdict::Raise)]
        );
    }

    #[test]
    fn the_forecast_predicts_an_urgent_low() {
        let s = AlertSettings::default();
        // -2 mg/dL/min from 100: 60 in 20 minutes is not below 54 ...
        let v = verdicts(
            &[(-20, 140), (-15, 130), (-10, 120), (-5, 110), (0, 100)],
            &s,
        );
        assert!(
            !v.contains(&(AlertType::PredictedLow, Verdict::Raise)),
            "{v:?}"
        );
        // ... from 90 it is (50).
        let v = verdicts(
            &[(-20, 130), (-15, 120), (-10, 110), (-5, 100), (0, 90)],
            &s,
        );
        assert!(
            v.contains(&(AlertType::PredictedLow, Verdict::Raise)),
            "{v:?}"
        );
    }
}
