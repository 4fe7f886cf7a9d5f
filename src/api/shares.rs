//! `POST/GET /api/users/{userId}/shares` and `DELETE .../shares/{granteeId}`: a
//! patient grants caregivers and clinicians read access to their readings. A
//! patient holds at most SHARES_MAX_PER_PATIENT grants; the list is paged in
//! grantee order.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::access::{authorize, Caller};
use super::body::RawBody;
use super::cursor;
use super::error::{json_body, query_params, ApiError, ErrorEnvelope};
use super::readings::{path_user, UserPath};
use super::views::success;
use super::AppState;
use crate::domain::{Email, FieldError, UserId};
use crate::records::audit::Action;
use crate::records::invitations::PendingShare;
use crate::records::shares::{Share, ShareRole};
use crate::records::shares::{SharePage, ShareWrite};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareInput {
    /// The grantee's user id; exactly one of grantee_id and grantee_email.
    #[schema(example = "mom-42", pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub grantee_id: Option<String>,
    /// The grantee's email: the share is made at once for the account with
    /// this email, or (none yet) an invitation carrying it is made (202).
    #[schema(example = "mom@example.com")]
    pub grantee_email: Option<String>,
    /// caregiver or clinician
    #[schema(example = "caregiver")]
    pub role: String,
    /// When the grant ends (RFC 3339, in the future); none: until revoked.
    pub expires_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShareView {
    pub patient_id: String,
    pub grantee_id: String,
    #[schema(example = "caregiver")]
    pub role: &'static str,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// False once `expires_at` has passed.
    pub active: bool,
}

impl From<&Share> for ShareView {
    fn from(s: &Share) -> Self {
        Self {
            patient_id: s.patient_id.to_string(),
            grantee_id: s.grantee_id.to_string(),
            role: s.role.as_str(),
            created_at: s.created_at,
            expires_at: s.expires_at,
            active: s.is_active(Utc::now()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShareList {
    pub shares: Vec<ShareView>,
    pub pagination: SharePagination,
}

/// Where the next page of grants starts (grantee order).
#[derive(Debug, Serialize, ToSchema)]
pub struct SharePagination {
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
    /// Absolute URL of the next page; null on the last.
    pub next: Option<String>,
    pub limit: usize,
}

/// Query parameters of the list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ShareListParams {
    /// 1-1000, default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Opaque cursor from `pagination.next_cursor`.
    cursor: Option<String>,
}

/// A share by email for someone without an account yet: an invitation that
/// makes the share when they sign up with it (202).
#[derive(Debug, Serialize, ToSchema)]
pub struct PendingShareView {
    #[schema(example = "pending")]
    pub status: &'static str,
    pub grantee_email: String,
    #[schema(example = "caregiver")]
    pub role: &'static str,
    /// When the invitation's token stops working.
    pub invitation_expires_at: DateTime<Utc>,
    /// `sent`: the link was mailed; `off`: nothing was mailed (no SMTP_URL).
    #[schema(example = "sent")]
    pub mail: &'static str,
    /// The single-use sign-up token (present while mail is off): hand it to
    /// the grantee for `POST /api/v1/auth/register`'s `invitation_token`.
    pub invitation_token: Option<String>,
}

/// Who the grant is for, as the body names them.
enum Grantee {
    Id(UserId),
    Email(Email),
}

fn parse(
    patient: &UserId,
    input: ShareInput,
    now: DateTime<Utc>,
) -> Result<(Grantee, ShareRole, Option<DateTime<Utc>>), ApiError> {
    let mut errors = Vec::new();
    let grantee = match (input.grantee_id.as_deref(), input.grantee_email.as_deref()) {
        (Some(id), None) => UserId::parse(id)
            .map(Grantee::Id)
            .map_err(|e| errors.push(FieldError::new("/grantee_id", e.message)))
            .ok(),
        (None, Some(email)) => Email::parse(email)
            .map(Grantee::Email)
            .map_err(|_| {
                errors.push(FieldError::new(
                    "/grantee_email",
                    "must be an email address",
                ))
            })
            .ok(),
        (Some(_), Some(_)) => {
            errors.push(FieldError::new(
                "/grantee_email",
                "give exactly one of grantee_id and grantee_email",
            ));
            None
        }
        (None, None) => {
            errors.push(FieldError::new(
                "/grantee_id",
                "is required (or grantee_email)",
            ));
            None
        }
    };
    let grantee_id = match &grantee {
        Some(Grantee::Id(id)) => Some(id.clone()),
        _ => None,
    };
    if grantee_id.as_ref() == Some(patient) {
        errors.push(FieldError::new(
            "/grantee_id",
            "a patient cannot share with themselves",
        ));
    }
    let role = ShareRole::parse(&input.role)
        .ok_or_else(|| errors.push(FieldError::new("/role", "must be caregiver or clinician")))
        .ok();
    let expires_at = match input
        .expires_at
        .as_deref()
        .map(DateTime::parse_from_rfc3339)
    {
        None => None,
        Some(Ok(t)) if t.with_timezone(&Utc) > now => Some(t.with_timezone(&Utc)),
        Some(Ok(_)) => {
            errors.push(FieldError::new("/expires_at", "must be in the future"));
            None
        }
        Some(Err(_)) => {
            errors.push(FieldError::new(
                "/expires_at",
                "must be an RFC 3339 date-time",
            ));
            None
        }
    };
    match (grantee, role) {
        (Some(grantee), Some(role)) if errors.is_empty() => Ok((grantee, role, expires_at)),
        _ => Err(ApiError::unprocessable("invalid share", errors)),
    }
}

/// Grants a caregiver or clinician read access (replacing an earlier grant to them).
#[utoipa::path(
    post, path = "/api/users/{userId}/shares", tag = "sharing",
    params(("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$")),
    request_body = ShareInput,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The grant (grantee_id, or grantee_email of an existing account)", body = super::docs::ShareEnvelope),
        (status = 202, description = "grantee_email has no account yet: an invitation carrying the share was made; the share is created when they sign up with its token", body = super::docs::PendingShareEnvelope),
        (status = 400, description = "Malformed body or user id", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Only the patient (or an admin) shares", body = ErrorEnvelope),
        (status = 409, description = "A new grantee, and the patient already holds SHARES_MAX_PER_PATIENT grants (expired ones count until revoked)", body = ErrorEnvelope),
        (status = 422, description = "Invalid grant", body = ErrorEnvelope),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    UserPath(patient): UserPath,
    caller: Caller,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    authorize(&state, &caller, Action::ManageShares, &patient).await?;
    let input: ShareInput = json_body(&body)?;
    let now = Utc::now();
    let (grantee, role, expires_at) = parse(&patient, input, now)?;
    let grantee_id = match grantee {
        Grantee::Id(id) => id,
        Grantee::Email(email) => match state.accounts.account_by_email(&email).await? {
            Some(account) if account.id == patient => {
                return Err(ApiError::unprocessable(
                    "invalid share",
                    vec![FieldError::new(
                        "/grantee_email",
                        "a patient cannot share with themselves",
                    )],
                ))
            }
            Some(account) => account.id,
            None => {
                let pending = PendingShare {
                    patient: patient.clone(),
                    role,
                    expires_at,
                };
                let invited = state
                    .accounts
                    .invite(email, caller.principal.user_id.clone(), Some(pending))
                    .await?;
                tracing::info!(patient_id = %patient, role = role.as_str(), "share pending: invitation made");
                let view = PendingShareView {
                    status: "pending",
                    grantee_email: invited.invitation.email.to_string(),
                    role: role.as_str(),
                    invitation_expires_at: invited.invitation.expires_at,
                    mail: if invited.mailed { "sent" } else { "off" },
                    invitation_token: (!invited.mailed).then(|| invited.token.expose().clone()),
                };
                return Ok((StatusCode::ACCEPTED, success(view)).into_response());
            }
        },
    };
    let share = Share {
        patient_id: patient.clone(),
        grantee_id,
        role,
        created_at: now,
        expires_at,
    };
    let max = state.limits.max_shares_per_patient;
    if state.store.put_share(share.clone(), max).await? == ShareWrite::LimitReached {
        return Err(ApiError::Conflict(format!(
            "patient {patient} already holds the most grants allowed ({max}); revoke one \
             (expired grants count until revoked) or replace an existing grantee's"
        )));
    }
    tracing::info!(patient_id = %share.patient_id, grantee_id = %share.grantee_id, role = share.role.as_str(), "share granted");
    Ok((StatusCode::CREATED, success(ShareView::from(&share))).into_response())
}

/// A patient's grants, a page at a time in grantee order.
#[utoipa::path(
    get, path = "/api/users/{userId}/shares", tag = "sharing",
    params(("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$"), ShareListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of grants, expired ones marked inactive, with the cursor and absolute link of the next page", body = super::docs::ShareListEnvelope),
        (status = 400, description = "Invalid user id, limit or cursor", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Only the patient (or an admin)", body = ErrorEnvelope),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    UserPath(patient): UserPath,
    caller: Caller,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &caller, Action::ReadShares, &patient).await?;
    let params: ShareListParams = query_params(query.as_deref())?;
    let fingerprint = cursor::key_fingerprint(&["shares", patient.as_str()]);
    let mut errors = Vec::new();
    let limit = super::cursor::page_limit(params.limit.as_deref(), &mut errors);
    let after = match params.cursor.as_deref() {
        None => None,
        Some(raw) => cursor::decode_key(raw, fingerprint)
            .and_then(|key| {
                UserId::parse(&key).map_err(|_| FieldError::new("/cursor", "invalid cursor"))
            })
            .map_err(|e| errors.push(e))
            .ok(),
    };
    if !errors.is_empty() {
        return Err(ApiError::bad_request("invalid query parameters", errors));
    }
    // One more than the page, to know whether another follows.
    let mut shares = state
        .store
        .list_shares(
            &patient,
            SharePage {
                after,
                limit: limit + 1,
            },
        )
        .await?;
    let more = shares.len() > limit;
    shares.truncate(limit);
    let next_cursor = more
        .then(|| shares.last())
        .flatten()
        .map(|last| cursor::encode_key(last.grantee_id.as_str(), fingerprint));
    let next = next_cursor.as_ref().map(|c| {
        let query =
            serde_urlencoded::to_string([("limit", limit.to_string()), ("cursor", c.clone())])
                .unwrap_or_default();
        format!(
            "{}/api/users/{patient}/shares?{query}",
            state.base_url(&headers)
        )
    });
    Ok(success(ShareList {
        shares: shares.iter().map(ShareView::from).collect(),
        pagination: SharePagination {
            next_cursor,
            next,
            limit,
        },
    })
    .into_response())
}

/// Revokes a grant; effective on the grantee's next request.
#[utoipa::path(
    delete, path = "/api/users/{userId}/shares/{granteeId}", tag = "sharing",
    params(("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$"),
           ("granteeId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "Invalid id", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Only the patient (or an admin)", body = ErrorEnvelope),
        (status = 404, description = "No such grant", body = ErrorEnvelope),
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    Path((raw_patient, raw_grantee)): Path<(String, String)>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let (patient, grantee) = (path_user(&raw_patient)?, path_user(&raw_grantee)?);
    authorize(&state, &caller, Action::ManageShares, &patient).await?;
    if !state.store.delete_share(&patient, &grantee).await? {
        return Err(ApiError::NotFound("share".into()));
    }
    tracing::info!(patient_id = %patient, grantee_id = %grantee, "share revoked");
    Ok(StatusCode::NO_CONTENT.into_response())
}
