//! `GET` and `PUT /api/users/{userId}/profile`: the user's time zone (what a
//! "day" is for them), target range, display unit and diabetes type. A PUT
//! replaces the whole profile; fields it leaves out take their defaults.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::access::{authorize, Caller};
use super::body::RawBody;
use super::error::{json_body, ApiError, ErrorEnvelope};
use super::readings::UserPath;
use super::views::success;
use super::AppState;
use crate::domain::{DiabetesType, DisplayUnit, FieldError, Profile, TargetRange, TimeZoneName};
use crate::records::audit::Action;
use crate::store::profile_or_default;

/// A profile as the API shows and takes it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileView {
    /// IANA time zone name; decides what a day is (daily aggregates, AGP, tasks).
    #[schema(example = "Europe/Berlin")]
    pub timezone: &'static str,
    /// mg/dL, 40-400, below target_high.
    #[schema(example = 70)]
    pub target_low: u16,
    /// mg/dL, 40-400, above target_low.
    #[schema(example = 180)]
    pub target_high: u16,
    /// `mg/dL` or `mmol/L` (presentation only; the API always speaks mg/dL).
    #[schema(example = "mg/dL")]
    pub display_unit: &'static str,
    /// `type1`, `type2`, `prediabetes`, `gestational`, `other` or null.
    #[schema(example = "type1")]
    pub diabetes_type: Option<&'static str>,
}

impl From<Profile> for ProfileView {
    fn from(p: Profile) -> Self {
        Self {
            timezone: p.timezone.name(),
            target_low: p.target.low(),
            target_high: p.target.high(),
            display_unit: p.display_unit.as_str(),
            diabetes_type: p.diabetes_type.map(DiabetesType::as_str),
        }
    }
}

/// The body of a PUT: every field optional (absent or null: its default).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileInput {
    /// IANA name; default `UTC`.
    #[schema(value_type = Option<String>, example = "Europe/Berlin")]
    timezone: Option<Value>,
    /// Default 70.
    #[schema(value_type = Option<u16>, example = 70)]
    target_low: Option<Value>,
    /// Default 180.
    #[schema(value_type = Option<u16>, example = 180)]
    target_high: Option<Value>,
    /// Default `mg/dL`.
    #[schema(value_type = Option<String>, example = "mg/dL")]
    display_unit: Option<Value>,
    /// Default null.
    #[schema(value_type = Option<String>, example = "type1")]
    diabetes_type: Option<Value>,
}

/// Each field of the input checked; every bad one is named by its pointer.
fn parse(input: ProfileInput) -> Result<Profile, ApiError> {
    let mut errors = Vec::new();
    let text = |field: &str, v: Option<Value>, errors: &mut Vec<FieldError>| match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            errors.push(FieldError::new(field, "must be a string"));
            None
        }
    };
    let number = |field: &str, v: Option<Value>, default: u16, errors: &mut Vec<FieldError>| match v
    {
        None | Some(Value::Null) => Some(default),
        Some(Value::Number(n)) => match n.as_u64().and_then(|n| u16::try_from(n).ok()) {
            Some(n) => Some(n),
            None => {
                errors.push(FieldError::new(
                    field,
                    format!(
                        "must be a whole number of mg/dL, {}-{}",
                        TargetRange::MIN,
                        TargetRange::MAX
                    ),
                ));
                None
            }
        },
        Some(_) => {
            errors.push(FieldError::new(field, "must be a number"));
            None
        }
    };
    let timezone = match text("timezone", input.timezone, &mut errors) {
        None => Some(TimeZoneName::UTC),
        Some(raw) => TimeZoneName::parse("timezone", &raw)
            .map_err(|e| errors.push(e))
            .ok(),
    };
    let low = number(
        "target_low",
        input.target_low,
        TargetRange::DEFAULT.low(),
        &mut errors,
    );
    let high = number(
        "target_high",
        input.target_high,
        TargetRange::DEFAULT.high(),
        &mut errors,
    );
    let target = match (low, high) {
        (Some(low), Some(high)) => TargetRange::new(low, high)
            .map_err(|e| errors.extend(e))
            .ok(),
        _ => None,
    };
    let display_unit = match text("display_unit", input.display_unit, &mut errors) {
        None => Some(DisplayUnit::default()),
        Some(raw) => DisplayUnit::parse(&raw)
            .ok_or_else(|| errors.push(FieldError::new("display_unit", "must be mg/dL or mmol/L")))
            .ok(),
    };
    let diabetes_type = match text("diabetes_type", input.diabetes_type, &mut errors) {
        None => Some(None),
        Some(raw) => DiabetesType::parse(&raw)
            .map(Some)
            .ok_or_else(|| {
                errors.push(FieldError::new(
                    "diabetes_type",
                    "must be type1, type2, prediabetes, gestational, other or null",
                ))
            })
            .ok(),
    };
    match (timezone, target, display_unit, diabetes_type) {
        (Some(timezone), Some(target), Some(display_unit), Some(diabetes_type))
            if errors.is_empty() =>
        {
            Ok(Profile {
                timezone,
                target,
                display_unit,
                diabetes_type,
            })
        }
        _ => Err(ApiError::unprocessable("invalid profile", errors)),
    }
}

/// The user's profile (the defaults when none was stored).
#[utoipa::path(
    get, path = "/api/users/{userId}/profile", tag = "profile",
    params(("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The profile; a user who never stored one has the defaults (UTC, 70-180 mg/dL, mg/dL, no diabetes type)", body = super::docs::ProfileEnvelope),
        (status = 400, description = "Invalid user id", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Only the user (or an admin)", body = ErrorEnvelope),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    caller: Caller,
) -> Result<Response, ApiError> {
    authorize(&state, &caller, Action::ReadProfile, &user).await?;
    let profile = profile_or_default(state.store.as_ref(), &user).await?;
    Ok(success(ProfileView::from(profile)).into_response())
}

/// Replaces the user's profile as a whole: a field left out (or null) takes its
/// default (timezone `UTC`, target 70-180, `mg/dL`, diabetes_type null), it does
/// not keep its stored value.
#[utoipa::path(
    put, path = "/api/users/{userId}/profile", tag = "profile",
    params(("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$")),
    request_body = ProfileInput,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The profile as stored", body = super::docs::ProfileEnvelope),
        (status = 400, description = "Malformed body (not JSON, unknown field) or user id", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Only the user (or an admin)", body = ErrorEnvelope),
        (status = 422, description = "VALIDATION_ERROR naming each bad field by JSON pointer (/timezone, /target_low, /target_high, /display_unit, /diabetes_type)", body = ErrorEnvelope),
    )
)]
pub async fn put(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    caller: Caller,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    authorize(&state, &caller, Action::WriteProfile, &user).await?;
    let input: ProfileInput = json_body(&body)?;
    let profile = parse(input)?;
    state.store.put_profile(&user, &profile).await?;
    tracing::info!(user_id = %user, timezone = profile.timezone.name(), "profile stored");
    Ok(success(ProfileView::from(profile)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointers(body: Value) -> Vec<String> {
        let input: ProfileInput = serde_json::from_value(body).unwrap();
        match parse(input) {
            Err(ApiError::Validation { errors, .. }) => {
                errors.into_iter().map(|e| e.pointer).collect()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn absent_fields_take_their_defaults() {
        let input: ProfileInput = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(parse(input).unwrap(), Profile::default());
        let input: ProfileInput =
            serde_json::from_value(serde_json::json!({"timezone": "Europe/Berlin", "target_high": 160, "diabetes_type": "type2"}))
                .unwrap();
        let p = parse(input).unwrap();
        assert_eq!(p.timezone.name(), "Europe/Berlin");
        assert_eq!((p.target.low(), p.target.high()), (70, 160));
        assert_eq!(p.diabetes_type, Some(DiabetesType::Type2));
    }

    #[test]
    fn every_bad_field_is_named() {
        assert_eq!(
            pointers(
                serde_json::json!({"timezone": "Moon/Base", "target_low": 30,
                "display_unit": "mg", "diabetes_type": "type3"})
            ),
            [
                "/timezone",
                "/target_low",
                "/display_unit",
                "/diabetes_type"
            ]
        );
        assert_eq!(
            pointers(serde_json::json!({"target_low": 200, "target_high": 150})),
            ["/target_high"]
        );
        assert_eq!(
            pointers(serde_json::json!({"target_low": 70.5, "timezone": 3})),
            ["/timezone", "/target_low"]
        );
    }
}
