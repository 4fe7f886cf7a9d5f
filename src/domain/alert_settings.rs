//! A user's alert settings (contract: "Alerts and live streams"): thresholds and
//! timings that can only hold a coherent set of values, so evaluation never
//! has to ask whether `low` is below `high`.

use serde::{Deserialize, Serialize};

use super::FieldError;

/// The settings as a client sends them (and as the store keeps them): every
/// field optional, absent fields take their defaults. `AlertSettings::parse`
/// turns it into settings or into every problem, each with its JSON pointer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSettingsInput {
    pub urgent_low: Option<i64>,
    pub low: Option<i64>,
    pub high: Option<i64>,
    /// Null (or absent): no urgent-high alerts.
    pub urgent_high: Option<i64>,
    pub rate_mgdl_per_min: Option<f64>,
    pub stale_minutes: Option<i64>,
    pub predicted_low_minutes: Option<i64>,
    pub snooze_minutes: Option<i64>,
}

/// Valid alert settings: `urgent_low < low < high < urgent_high` (when set),
/// every threshold in 40–400 mg/dL, the rate in 1–10 mg/dL per minute,
/// `stale_minutes` and `snooze_minutes` in 1–1440, `predicted_low_minutes` in 5–60.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AlertSettings {
    urgent_low: u16,
    low: u16,
    high: u16,
    urgent_high: Option<u16>,
    rate_mgdl_per_min: f64,
    stale_minutes: u16,
    predicted_low_minutes: u16,
    snooze_minutes: u16,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            urgent_low: 54,
            low: 70,
            high: 250,
            urgent_high: None,
            rate_mgdl_per_min: 3.0,
            stale_minutes: 20,
            predicted_low_minutes: 20,
            snooze_minutes: 30,
        }
    }
}

impl AlertSettings {
    /// Thresholds a user may set (mg/dL): what a CGM measures, with margin.
    pub const GLUCOSE_RANGE: (i64, i64) = (40, 400);
    pub const RATE_RANGE: (f64, f64) = (1.0, 10.0);
    pub const MINUTES_RANGE: (i64, i64) = (1, 1440);
    /// A straight-line forecast is not worth more than an hour.
    pub const PREDICTION_RANGE: (i64, i64) = (5, 60);

    /// Settings from input, absent fields at their defaults; every problem is
    /// reported, each at its field's pointer (`/low`).
    pub fn parse(input: &AlertSettingsInput) -> Result<Self, Vec<FieldError>> {
        let d = Self::default();
        let mut errors = Vec::new();
        let mut ranged = |name: &str, value: Option<i64>, default: u16, (lo, hi): (i64, i64)| {
            let Some(v) = value else { return default };
            if (lo..=hi).contains(&v) {
                v as u16
            } else {
                errors.push(FieldError::new(
                    name,
                    format!("must be between {lo} and {hi}"),
                ));
                default
            }
        };
        let g = Self::GLUCOSE_RANGE;
        let urgent_low = ranged("urgent_low", input.urgent_low, d.urgent_low, g);
        let low = ranged("low", input.low, d.low, g);
        let high = ranged("high", input.high, d.high, g);
        let urgent_high = input
            .urgent_high
            .map(|v| ranged("urgent_high", Some(v), 0, g));
        let m = Self::MINUTES_RANGE;
        let stale_minutes = ranged("stale_minutes", input.stale_minutes, d.stale_minutes, m);
        let snooze_minutes = ranged("snooze_minutes", input.snooze_minutes, d.snooze_minutes, m);
        let predicted_low_minutes = ranged(
            "predicted_low_minutes",
            input.predicted_low_minutes,
            d.predicted_low_minutes,
            Self::PREDICTION_RANGE,
        );
        let rate_mgdl_per_min = match input.rate_mgdl_per_min {
            None => d.rate_mgdl_per_min,
            Some(r) if r.is_finite() && (Self::RATE_RANGE.0..=Self::RATE_RANGE.1).contains(&r) => r,
            Some(_) => {
                errors.push(FieldError::new(
                    "rate_mgdl_per_min",
                    format!(
                        "must be between {} and {} mg/dL per minute",
                        Self::RATE_RANGE.0,
                        Self::RATE_RANGE.1
                    ),
                ));
                d.rate_mgdl_per_min
            }
        };
        // Order, only between values that were themselves valid.
        if errors.is_empty() {
            if low <= urgent_low {
                errors.push(FieldError::new(
                    "low",
                    format!("must be above urgent_low ({urgent_low})"),
                ));
            }
            if high <= low {
                errors.push(FieldError::new(
                    "high",
                    format!("must be above low ({low})"),
                ));
            }
            if let Some(uh) = urgent_high {
                if uh <= high {
                    errors.push(FieldError::new(
                        "urgent_high",
                        format!("must be above high ({high})"),
                    ));
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            urgent_low,
            low,
            high,
            urgent_high,
            rate_mgdl_per_min,
            stale_minutes,
            predicted_low_minutes,
            snooze_minutes,
        })
    }

    /// The settings as input: what the store keeps, and what `parse` reads back.
    pub fn to_input(&self) -> AlertSettingsInput {
        AlertSettingsInput {
            urgent_low: Some(self.urgent_low.into()),
            low: Some(self.low.into()),
            high: Some(self.high.into()),
            urgent_high: self.urgent_high.map(i64::from),
            rate_mgdl_per_min: Some(self.rate_mgdl_per_min),
            stale_minutes: Some(self.stale_minutes.into()),
            predicted_low_minutes: Some(self.predicted_low_minutes.into()),
            snooze_minutes: Some(self.snooze_minutes.into()),
        }
    }

    pub fn urgent_low(&self) -> u16 {
        self.urgent_low
    }
    pub fn low(&self) -> u16 {
        self.low
    }
    pub fn high(&self) -> u16 {
        self.high
    }
    pub fn urgent_high(&self) -> Option<u16> {
        self.urgent_high
    }
    pub fn rate_mgdl_per_min(&self) -> f64 {
        self.rate_mgdl_per_min
    }
    pub fn stale_minutes(&self) -> u16 {
        self.stale_minutes
    }
    pub fn predicted_low_minutes(&self) -> u16 {
        self.predicted_low_minutes
    }
    pub fn snooze_minutes(&self) -> u16 {
        self.snooze_minutes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointers(input: AlertSettingsInput) -> Vec<String> {
        AlertSettings::parse(&input)
            .unwrap_err()
            .into_iter()
            .map(|e| e.pointer)
            .collect()
    }

    #[test]
    fn absent_fields_take_the_contract_defaults() {
        let s = AlertSettings::parse(&AlertSettingsInput::default()).unwrap();
        assert_eq!(s, AlertSettings::default());
        assert_eq!((s.urgent_low(), s.low(), s.high()), (54, 70, 250));
        assert_eq!(s.urgent_high(), None);
        assert_eq!(AlertSettings::parse(&s.to_input()).unwrap(), s);
    }

    #[test]
    fn out_of_order_or_out_of_range_values_are_named() {
        let input = |f: fn(&mut AlertSettingsInput)| {
            let mut i = AlertSettingsInput::default();
            f(&mut i);
            i
        };
        assert_eq!(pointers(input(|i| i.low = Some(50))), ["/low"]);
        assert_eq!(pointers(input(|i| i.high = Some(70))), ["/high"]);
        assert_eq!(
            pointers(input(|i| i.urgent_high = Some(250))),
            ["/urgent_high"]
        );
        assert_eq!(
            pointers(input(|i| {
                i.urgent_low = Some(39);
                i.rate_mgdl_per_min = Some(0.5);
                i.snooze_minutes = Some(0);
                i.predicted_low_minutes = Some(61);
            })),
            [
                "/urgent_low",
                "/snooze_minutes",
                "/predicted_low_minutes",
                "/rate_mgdl_per_min"
            ]
        );
        assert_eq!(
            pointers(input(|i| i.rate_mgdl_per_min = Some(f64::NAN))),
            ["/rate_mgdl_per_min"]
        );
        let ok = AlertSettings::parse(&input(|i| i.urgent_high = Some(300))).unwrap();
        assert_eq!(ok.urgent_high(), Some(300));
    }
}
