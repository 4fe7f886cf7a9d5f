//! One trend vocabulary, and its mapping from Dexcom's and Nightscout's names.

use serde::{Deserialize, Serialize};

use super::FieldError;

/// The direction glucose is moving, in the service's canonical names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trend {
    RisingFast,
    Rising,
    RisingSlightly,
    Steady,
    FallingSlightly,
    Falling,
    FallingFast,
    None,
    NotComputable,
    RateOutOfRange,
}

/// Every accepted spelling, lowercased: canonical, Dexcom (camelCase) and Nightscout
/// (PascalCase / upper case with spaces). Anything else is rejected, not guessed.
const NAMES: &[(&str, Trend)] = &[
    ("rising_fast", Trend::RisingFast),
    ("doubleup", Trend::RisingFast),
    ("rising", Trend::Rising),
    ("singleup", Trend::Rising),
    ("rising_slightly", Trend::RisingSlightly),
    ("fortyfiveup", Trend::RisingSlightly),
    ("steady", Trend::Steady),
    ("flat", Trend::Steady),
    ("falling_slightly", Trend::FallingSlightly),
    ("fortyfivedown", Trend::FallingSlightly),
    ("falling", Trend::Falling),
    ("singledown", Trend::Falling),
    ("falling_fast", Trend::FallingFast),
    ("doubledown", Trend::FallingFast),
    ("none", Trend::None),
    ("not_computable", Trend::NotComputable),
    ("notcomputable", Trend::NotComputable),
    ("not computable", Trend::NotComputable),
    ("rate_out_of_range", Trend::RateOutOfRange),
    ("rateoutofrange", Trend::RateOutOfRange),
    ("rate out of range", Trend::RateOutOfRange),
];

impl Trend {
    pub const ALL: [Trend; 10] = [
        Trend::RisingFast,
        Trend::Rising,
        Trend::RisingSlightly,
        Trend::Steady,
        Trend::FallingSlightly,
        Trend::Falling,
        Trend::FallingFast,
        Trend::None,
        Trend::NotComputable,
        Trend::RateOutOfRange,
    ];

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let key = raw.trim().to_ascii_lowercase();
        NAMES
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, trend)| *trend)
            .ok_or_else(|| {
                FieldError::new(
                    "trend_direction",
                    format!("unknown trend {raw:?}; use a canonical, Dexcom or Nightscout name"),
                )
            })
    }

    /// Exact canonical name only (what storage writes); no allocation.
    pub fn from_canonical(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Trend::RisingFast => "rising_fast",
            Trend::Rising => "rising",
            Trend::RisingSlightly => "rising_slightly",
            Trend::Steady => "steady",
            Trend::FallingSlightly => "falling_slightly",
            Trend::Falling => "falling",
            Trend::FallingFast => "falling_fast",
            Trend::None => "none",
            Trend::NotComputable => "not_computable",
            Trend::RateOutOfRange => "rate_out_of_range",
        }
    }

    /// Dexcom's name for this trend (v3 `trend` field).
    pub fn dexcom_name(self) -> &'static str {
        match self {
            Trend::RisingFast => "doubleUp",
            Trend::Rising => "singleUp",
            Trend::RisingSlightly => "fortyFiveUp",
            Trend::Steady => "flat",
            Trend::FallingSlightly => "fortyFiveDown",
            Trend::Falling => "singleDown",
            Trend::FallingFast => "doubleDown",
            Trend::None => "none",
            Trend::NotComputable => "notComputable",
            Trend::RateOutOfRange => "rateOutOfRange",
        }
    }

    /// Nightscout's name for this trend (`direction` field).
    pub fn nightscout_name(self) -> &'static str {
        match self {
            Trend::RisingFast => "DoubleUp",
            Trend::Rising => "SingleUp",
            Trend::RisingSlightly => "FortyFiveUp",
            Trend::Steady => "Flat",
            Trend::FallingSlightly => "FortyFiveDown",
            Trend::Falling => "SingleDown",
            Trend::FallingFast => "DoubleDown",
            Trend::None => "NONE",
            Trend::NotComputable => "NOT COMPUTABLE",
            Trend::RateOutOfRange => "RATE OUT OF RANGE",
        }
    }

    /// The arrow a sensor shows for a rate of change, with Dexcom's thresholds
    /// (mg/dL per minute: 1, 2 and 3).
    pub fn from_rate(rate: f64) -> Self {
        match rate {
            r if !r.is_finite() => Trend::NotComputable,
            r if r > 3.0 => Trend::RisingFast,
            r if r > 2.0 => Trend::Rising,
            r if r > 1.0 => Trend::RisingSlightly,
            r if r >= -1.0 => Trend::Steady,
            r if r >= -2.0 => Trend::FallingSlightly,
            r if r >= -3.0 => Trend::Falling,
            _ => Trend::FallingFast,
        }
    }
}

/// Rate of change in mg/dL per minute; finite and within ±100.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct TrendRate(f64);

impl TrendRate {
    pub const LIMIT: f64 = 100.0;

    pub fn new(rate: f64) -> Result<Self, FieldError> {
        if rate.is_finite() && rate.abs() <= Self::LIMIT {
            Ok(Self(rate))
        } else {
            Err(FieldError::new(
                "trend_rate",
                format!("must be a finite rate within ±{} mg/dL/min", Self::LIMIT),
            ))
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dexcom_and_nightscout_names_map_to_the_contract() {
        let expected = [
            ("doubleUp", "DoubleUp", "rising_fast"),
            ("singleUp", "SingleUp", "rising"),
            ("fortyFiveUp", "FortyFiveUp", "rising_slightly"),
            ("flat", "Flat", "steady"),
            ("fortyFiveDown", "FortyFiveDown", "falling_slightly"),
            ("singleDown", "SingleDown", "falling"),
            ("doubleDown", "DoubleDown", "falling_fast"),
            ("none", "NONE", "none"),
            ("notComputable", "NOT COMPUTABLE", "not_computable"),
            ("rateOutOfRange", "RATE OUT OF RANGE", "rate_out_of_range"),
        ];
        for (dexcom, nightscout, canonical) in expected {
            assert_eq!(Trend::parse(dexcom).unwrap().as_str(), canonical);
            assert_eq!(Trend::parse(nightscout).unwrap().as_str(), canonical);
            assert_eq!(Trend::parse(canonical).unwrap().as_str(), canonical);
        }
    }

    #[test]
    fn guesses_nothing() {
        for bad in [
            "up",
            "rising fast",
            "double_up",
            "",
            "42",
            "steady!",
            "NotComputable2",
        ] {
            assert_eq!(
                Trend::parse(bad).unwrap_err().pointer,
                "/trend_direction",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rates_map_to_dexcom_arrows() {
        assert_eq!(Trend::from_rate(0.0), Trend::Steady);
        assert_eq!(Trend::from_rate(1.5), Trend::RisingSlightly);
        assert_eq!(Trend::from_rate(-2.5), Trend::Falling);
        assert_eq!(Trend::from_rate(3.5), Trend::RisingFast);
        assert_eq!(Trend::from_rate(-3.5), Trend::FallingFast);
    }

    proptest! {
        #[test]
        fn every_trend_round_trips_through_every_vocabulary(i in 0usize..10) {
            let t = Trend::ALL[i];
            prop_assert_eq!(Trend::parse(t.as_str()).unwrap(), t);
            prop_assert_eq!(Trend::parse(t.dexcom_name()).unwrap(), t);
            prop_assert_eq!(Trend::parse(t.nightscout_name()).unwrap(), t);
            prop_assert_eq!(Trend::parse(&t.dexcom_name().to_uppercase()).unwrap(), t);
        }

        #[test]
        fn arbitrary_strings_parse_only_to_known_names(s in "[a-zA-Z_ ]{0,20}") {
            if let Ok(t) = Trend::parse(&s) {
                let key = s.trim().to_ascii_lowercase();
                prop_assert!(NAMES.iter().any(|(n, tt)| *n == key && *tt == t));
            }
        }

        #[test]
        fn trend_rate_bounds(r in -200.0f64..200.0) {
            prop_assert_eq!(TrendRate::new(r).is_ok(), r.abs() <= 100.0);
        }
    }
}
