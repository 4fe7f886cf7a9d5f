//! OpenAPI schemas of the analytics bodies. The bodies themselves are the
//! `crate::analytics` types serialized as they are (that layer knows nothing of
//! OpenAPI), so these documentation-only types mirror them; the metric names
//! are read from `analytics::Metrics` itself, so the list cannot drift.

use std::borrow::Cow;

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

use crate::analytics::Metrics;

/// `data` of `GET /api/bg/{userId}/stats`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StatsData {
    #[schema(example = "u1")]
    user_id: String,
    /// Inclusive start of the window (RFC 3339, UTC).
    start: chrono::DateTime<chrono::Utc>,
    /// Exclusive end of the window.
    end: chrono::DateTime<chrono::Utc>,
    /// The IANA zone days were counted in.
    #[schema(example = "Europe/Berlin")]
    tz: String,
    /// CGM readings in the window.
    readings: usize,
    /// The consensus gate: at least 14 days and at least 70 % of the expected readings.
    sufficient: bool,
    metrics: MetricsDoc,
    /// Null without readings.
    #[schema(required = true)]
    ranges: Option<RangesDoc>,
    /// Null without readings.
    #[schema(required = true)]
    gri: Option<GriDoc>,
}

/// The five disjoint consensus bands, percent of readings (they sum to 100).
#[derive(ToSchema)]
#[schema(as = Ranges)]
#[allow(dead_code)]
pub struct RangesDoc {
    /// < 54 mg/dL
    very_low: f64,
    /// 54–69 mg/dL
    low: f64,
    /// 70–180 mg/dL
    target: f64,
    /// 181–250 mg/dL
    high: f64,
    /// > 250 mg/dL
    very_high: f64,
}

/// The Glycemia Risk Index and its zone.
#[derive(ToSchema)]
#[schema(as = Gri)]
#[allow(dead_code)]
pub struct GriDoc {
    #[schema(example = 7.19)]
    value: f64,
    /// A (0–20) … E (80–100)
    #[schema(example = "A", pattern = "^[A-E]$")]
    zone: String,
}

/// One 5-minute column of the AGP.
#[derive(ToSchema)]
#[schema(as = AgpBin)]
#[allow(dead_code)]
pub struct AgpBinDoc {
    /// The column's time of day in `tz`: 5, 10, …, 1440.
    #[schema(example = 5)]
    minute: u16,
    #[schema(required = true)]
    p05: Option<f64>,
    #[schema(required = true)]
    p25: Option<f64>,
    #[schema(required = true)]
    p50: Option<f64>,
    #[schema(required = true)]
    p75: Option<f64>,
    #[schema(required = true)]
    p95: Option<f64>,
    /// Non-missing grid values in the column (days).
    n: usize,
}

/// `data` of `GET /api/bg/{userId}/agp`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AgpData {
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
    #[schema(example = "UTC")]
    tz: String,
    /// Exactly 288 bins.
    bins: Vec<AgpBinDoc>,
    stats: StatsData,
}

/// A FHIR R4 Bundle of type `collection` (HL7 FHIR CGM IG 1.0.0 summary): a
/// Patient, the summary Observation and its six member Observations.
#[derive(ToSchema)]
#[schema(as = FhirBundle)]
#[allow(dead_code)]
pub struct FhirBundleDoc {
    #[schema(rename = "resourceType")]
    #[schema(example = "Bundle")]
    resource_type: String,
    #[schema(rename = "type")]
    #[schema(example = "collection")]
    kind: String,
    timestamp: chrono::DateTime<chrono::Utc>,
    /// `{"fullUrl":"urn:uuid:…","resource":{…}}`
    entry: Vec<serde_json::Value>,
}

/// The 49 metrics of `cgm-metrics.md`, each a number or null.
pub struct MetricsDoc;

impl MetricsDoc {
    /// The metric names, as `analytics::Metrics` serializes them.
    pub fn names() -> Vec<String> {
        match serde_json::to_value(Metrics::default()) {
            Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }
}

impl utoipa::PartialSchema for MetricsDoc {
    fn schema() -> RefOr<Schema> {
        let mut object = ObjectBuilder::new().description(Some(
            "The 49 metrics of cgm-metrics.md (mg/dL, percent, or as defined there); \
             null where the data cannot define one",
        ));
        for name in Self::names() {
            object = object
                .property(
                    &name,
                    ObjectBuilder::new().schema_type(
                        utoipa::openapi::schema::SchemaType::from_iter([Type::Number, Type::Null]),
                    ),
                )
                .required(&name);
        }
        RefOr::T(Schema::Object(object.build()))
    }
}

impl ToSchema for MetricsDoc {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Metrics")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn metrics_has_the_49_keys() {
        assert_eq!(super::MetricsDoc::names().len(), 49);
    }
}
