//! Glucose concentration in mg/dL, unit conversion, and the sensor's LOW/HIGH status.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::FieldError;

/// 1 mmol/L of glucose in mg/dL (molar mass 180.1559 g/mol), as Nightscout and Tidepool use.
pub const MMOL_TO_MG_DL: f64 = 18.01559;

/// A glucose concentration the service accepts: a whole number of mg/dL in 20–600.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MgDl(u16);

impl MgDl {
    pub const MIN: u16 = 20;
    pub const MAX: u16 = 600;
    /// What a sensor reading below its range (Dexcom "LOW", < 40) is stored as.
    pub const SENSOR_LOW: MgDl = MgDl(39);
    /// What a sensor reading above its range (Dexcom "HIGH", > 400) is stored as.
    pub const SENSOR_HIGH: MgDl = MgDl(401);

    pub fn new(value: u16) -> Result<Self, FieldError> {
        if (Self::MIN..=Self::MAX).contains(&value) {
            Ok(Self(value))
        } else {
            Err(out_of_range())
        }
    }

    /// Parses a measured value in the given unit, rounding to whole mg/dL.
    pub fn from_measurement(value: f64, unit: GlucoseUnit) -> Result<Self, FieldError> {
        if !value.is_finite() {
            return Err(FieldError::new("glucose_value", "must be a finite number"));
        }
        let mg_dl = (unit.to_mg_dl(value)).round();
        if mg_dl < f64::from(Self::MIN) || mg_dl > f64::from(Self::MAX) {
            return Err(out_of_range());
        }
        // In range, so the cast is exact.
        Ok(Self(mg_dl as u16))
    }

    pub fn get(self) -> u16 {
        self.0
    }

    pub fn to_mmol_l(self) -> f64 {
        f64::from(self.0) / MMOL_TO_MG_DL
    }
}

fn out_of_range() -> FieldError {
    FieldError::new(
        "glucose_value",
        format!("must be between {} and {} mg/dL", MgDl::MIN, MgDl::MAX),
    )
}

impl fmt::Display for MgDl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} mg/dL", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum GlucoseUnit {
    #[default]
    #[serde(rename = "mg/dL", alias = "mg/dl", alias = "mgdl")]
    MgDl,
    #[serde(rename = "mmol/L", alias = "mmol/l", alias = "mmol")]
    MmolL,
}

impl GlucoseUnit {
    pub fn to_mg_dl(self, value: f64) -> f64 {
        match self {
            GlucoseUnit::MgDl => value,
            GlucoseUnit::MmolL => value * MMOL_TO_MG_DL,
        }
    }
}

/// A sensor value outside the sensor's reporting range. Ordinary readings have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SensorStatus {
    Low,
    High,
}

impl SensorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SensorStatus::Low => "low",
            SensorStatus::High => "high",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "low" => Some(SensorStatus::Low),
            "high" => Some(SensorStatus::High),
            _ => None,
        }
    }

    pub fn stored_value(self) -> MgDl {
        match self {
            SensorStatus::Low => MgDl::SENSOR_LOW,
            SensorStatus::High => MgDl::SENSOR_HIGH,
        }
    }
}

/// The glucose part of a reading: an ordinary value, or a LOW/HIGH marker with its
/// conventional stored value (39 / 401), which is never dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Glucose {
    value: MgDl,
    status: Option<SensorStatus>,
}

impl Glucose {
    pub fn value(value: MgDl) -> Self {
        Self {
            value,
            status: None,
        }
    }

    pub fn out_of_range(status: SensorStatus) -> Self {
        Self {
            value: status.stored_value(),
            status: Some(status),
        }
    }

    /// Combines a (possibly absent) value with a (possibly absent) status, as the
    /// input formats deliver them. A status pins the value to its conventional one.
    pub fn parse(
        value: Option<f64>,
        unit: GlucoseUnit,
        status: Option<SensorStatus>,
    ) -> Result<Self, FieldError> {
        match (value, status) {
            (None, None) => Err(FieldError::new("glucose_value", "is required")),
            (Some(v), None) => Ok(Self::value(MgDl::from_measurement(v, unit)?)),
            (None, Some(s)) => Ok(Self::out_of_range(s)),
            (Some(v), Some(s)) => {
                let expected = s.stored_value();
                let given = MgDl::from_measurement(v, unit).ok();
                if given == Some(expected) {
                    Ok(Self::out_of_range(s))
                } else {
                    Err(FieldError::new(
                        "glucose_value",
                        format!(
                            "must be null or {} when status is \"{}\"",
                            expected.get(),
                            s.as_str()
                        ),
                    ))
                }
            }
        }
    }

    pub fn mg_dl(self) -> MgDl {
        self.value
    }

    pub fn status(self) -> Option<SensorStatus> {
        self.status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn boundaries_of_the_accepted_range() {
        assert!(MgDl::new(19).is_err());
        assert_eq!(MgDl::new(20).unwrap().get(), 20);
        assert_eq!(MgDl::new(600).unwrap().get(), 600);
        assert_eq!(MgDl::new(601).unwrap_err().pointer, "/glucose_value");
        assert!(MgDl::from_measurement(19.4, GlucoseUnit::MgDl).is_err());
        assert!(MgDl::from_measurement(19.5, GlucoseUnit::MgDl).is_ok());
        assert!(MgDl::from_measurement(600.4, GlucoseUnit::MgDl).is_ok());
        assert!(MgDl::from_measurement(600.5, GlucoseUnit::MgDl).is_err());
        assert!(MgDl::from_measurement(f64::NAN, GlucoseUnit::MgDl).is_err());
        assert!(MgDl::from_measurement(f64::INFINITY, GlucoseUnit::MmolL).is_err());
    }

    #[test]
    fn known_mmol_conversions() {
        let cases = [(5.5, 99), (10.0, 180), (3.9, 70), (1.2, 22), (33.3, 600)];
        for (mmol, mg) in cases {
            assert_eq!(
                MgDl::from_measurement(mmol, GlucoseUnit::MmolL)
                    .unwrap()
                    .get(),
                mg,
                "{mmol} mmol/L"
            );
        }
        assert!(MgDl::from_measurement(1.0, GlucoseUnit::MmolL).is_err());
        assert!(MgDl::from_measurement(33.4, GlucoseUnit::MmolL).is_err());
    }

    #[test]
    fn low_and_high_keep_their_conventional_values() {
        let low = Glucose::parse(None, GlucoseUnit::MgDl, Some(SensorStatus::Low)).unwrap();
        assert_eq!(
            (low.mg_dl().get(), low.status()),
            (39, Some(SensorStatus::Low))
        );
        let high = Glucose::parse(Some(401.0), GlucoseUnit::MgDl, Some(SensorStatus::High));
        assert_eq!(high.unwrap().mg_dl().get(), 401);
        assert!(Glucose::parse(Some(120.0), GlucoseUnit::MgDl, Some(SensorStatus::High)).is_err());
        assert!(Glucose::parse(None, GlucoseUnit::MgDl, None).is_err());
    }

    proptest! {
        #[test]
        fn mg_dl_accepts_exactly_20_to_600(v in 0u16..2000) {
            prop_assert_eq!(MgDl::new(v).is_ok(), (20..=600).contains(&v));
        }

        #[test]
        fn mmol_round_trip_is_within_half_a_mg_dl(mmol in 1.2f64..33.3) {
            let mg = MgDl::from_measurement(mmol, GlucoseUnit::MmolL).unwrap();
            let exact = mmol * MMOL_TO_MG_DL;
            prop_assert!((f64::from(mg.get()) - exact).abs() <= 0.5);
            prop_assert!((mg.to_mmol_l() - mmol).abs() <= 0.5 / MMOL_TO_MG_DL + 1e-9);
        }

        #[test]
        fn conversion_is_monotonic(a in 1.0f64..34.0, b in 1.0f64..34.0) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            if let (Ok(x), Ok(y)) = (
                MgDl::from_measurement(lo, GlucoseUnit::MmolL),
                MgDl::from_measurement(hi, GlucoseUnit::MmolL),
            ) {
                prop_assert!(x <= y);
            }
        }

        #[test]
        fn any_in_range_mg_dl_float_rounds_into_range(v in 19.5f64..600.49) {
            let mg = MgDl::from_measurement(v, GlucoseUnit::MgDl).unwrap();
            prop_assert_eq!(f64::from(mg.get()), v.round());
        }
    }
}
