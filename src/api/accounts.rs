//! `/api/v1/auth/*`: sign-up, login, refresh, logout, `me`, password reset
//! and email verification over the
//! built-in accounts (`crate::accounts`). The wire bodies are parsed once into
//! domain values here; every bad field is named by its JSON pointer.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::access::{authorize, record_state_bound, Caller};
use super::body::{read_body, RawBody};
use super::browser_session::{self, Delivery, REFRESH_COOKIE};
use super::error::{json_body, ApiError, ErrorEnvelope};
use super::profile::ProfileView;
use super::views::success;
use super::AppState;
use crate::accounts::{AccountError, NewAccount, Session};
use crate::domain::{Email, FieldError, Password, PasswordAttempt, TimeZoneName, UserId};
use crate::records::accounts::Account;
use crate::records::audit::Action;
use crate::secret::Secret;
use crate::store::profile_or_default;

/// Longest `full_name` taken, in characters.
const MAX_FULL_NAME_CHARS: usize = 200;
/// Longest refresh token looked at (ours are 43 characters).
const MAX_REFRESH_TOKEN_LEN: usize = 512;

/// An account as the API shows it (never its password hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    /// The user id: the `sub` of the account's access tokens, and the
    /// `{userId}` of its data.
    #[schema(example = "u3f2c1e0a9b8d7c6e5f4a3b2c1d0e9f8a")]
    pub id: String,
    #[schema(example = "alice@example.com")]
    pub email: String,
    pub full_name: Option<String>,
    #[schema(example = json!(["patient"]))]
    pub roles: Vec<&'static str>,
    pub email_verified: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
}

impl From<&Account> for AccountView {
    fn from(a: &Account) -> Self {
        Self {
            id: a.id.to_string(),
            email: a.email.to_string(),
            full_name: a.full_name.clone(),
            roles: a.roles.iter().map(|r| r.as_str()).collect(),
            email_verified: a.email_verified,
            created_at: time(a.created_at),
        }
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A new session: the account, a bearer access token and a refresh token.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub user: AccountView,
    /// A bearer JWT (HS256) for `Authorization: Bearer`.
    pub access_token: String,
    /// Single use: `POST /api/v1/auth/refresh` exchanges it for a new pair.
    /// Absent for a browser session (`"session":"cookie"`): it is then in the
    /// HttpOnly `refresh_token` cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds the access token lives.
    #[schema(example = 900)]
    pub expires_in: u64,
}

impl From<Session> for SessionView {
    fn from(s: Session) -> Self {
        Self {
            user: AccountView::from(&s.account),
            access_token: s.access_token.expose().clone(),
            refresh_token: Some(s.refresh_token.expose().clone()),
            token_type: "Bearer",
            expires_in: s.expires_in,
        }
    }
}

/// `GET /api/v1/auth/me`: the account and its profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    pub user: AccountView,
    pub profile: ProfileView,
}

/// The body of a sign-up.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterInput {
    /// At most 254 characters; compared case-insensitively.
    #[schema(value_type = String, example = "alice@example.com")]
    email: Option<Value>,
    /// 8-256 characters, not a commonly breached password.
    #[schema(value_type = String, example = "correct horse battery staple")]
    password: Option<Value>,
    /// At most 200 characters.
    #[schema(value_type = Option<String>, example = "Alice Smith")]
    full_name: Option<Value>,
    /// IANA time zone name, stored in the profile (default UTC).
    #[schema(value_type = Option<String>, example = "Europe/Berlin")]
    timezone: Option<Value>,
    /// `cookie`: a browser session, the refresh token set in an HttpOnly
    /// cookie instead of the body (docs/accounts.md); `body` (the default).
    #[schema(value_type = Option<String>, example = "cookie")]
    session: Option<Value>,
    /// The token of an invitation for this email: required when REGISTRATION
    /// is `invite`, optional when `open` (it completes a pending share).
    #[schema(value_type = Option<String>)]
    invitation_token: Option<Value>,
}

/// The body of an invitation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvitationInput {
    #[schema(value_type = String, example = "bob@example.com")]
    email: Option<Value>,
}

/// An invitation made. Only while mail is off (no SMTP_URL) does the answer
/// carry the token, for the inviter to hand over; it is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationView {
    pub email: String,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: String,
    /// `sent`: the link was mailed; `off`: nothing was mailed (no SMTP_URL).
    #[schema(example = "sent")]
    pub mail: &'static str,
    /// The single-use token for `POST /api/v1/auth/register`'s
    /// `invitation_token` (present while mail is off).
    pub invitation_token: Option<String>,
}

impl InvitationView {
    pub fn from_invited(invited: &crate::accounts::Invited) -> Self {
        Self {
            email: invited.invitation.email.to_string(),
            expires_at: time(invited.invitation.expires_at),
            mail: if invited.mailed { "sent" } else { "off" },
            invitation_token: (!invited.mailed).then(|| invited.token.expose().clone()),
        }
    }
}

/// The body of a login.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginInput {
    #[schema(value_type = String, example = "alice@example.com")]
    email: Option<Value>,
    #[schema(value_type = String, example = "correct horse battery staple")]
    password: Option<Value>,
    /// `cookie`: a browser session, the refresh token set in an HttpOnly
    /// cookie instead of the body (docs/accounts.md); `body` (the default).
    #[schema(value_type = Option<String>, example = "cookie")]
    session: Option<Value>,
}

/// The body of a refresh or a logout. A browser session sends no body (or
/// `{}`): its refresh token is the `refresh_token` cookie, and the request must
/// carry `X-CSRF-Token`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshTokenInput {
    /// Required unless the `refresh_token` cookie is sent.
    #[schema(value_type = Option<String>)]
    refresh_token: Option<Value>,
}

/// The body of a password-reset request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequestInput {
    #[schema(value_type = String, example = "alice@example.com")]
    email: Option<Value>,
}

/// The body of a password-reset confirmation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirmInput {
    /// The token from the reset mail (single use, one hour).
    #[schema(value_type = String)]
    token: Option<Value>,
    /// The new password: 8-256 characters, not a commonly breached one.
    #[schema(value_type = String, example = "a new and better passphrase")]
    password: Option<Value>,
}

/// The body of an email verification.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmailInput {
    /// The token from the verification mail (single use, 48 hours).
    #[schema(value_type = String)]
    token: Option<Value>,
}

/// A request taken; what it leads to is not said (no enumeration of emails).
#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedView {
    #[schema(example = "if an account has this email, a link is on its way")]
    pub message: &'static str,
}

/// The account after verifying its email.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifiedView {
    pub user: AccountView,
}

/// A required token field (1-512 characters), or its error.
fn token_field(value: Option<Value>, errors: &mut Vec<FieldError>) -> Option<Secret<String>> {
    text("token", value, errors)
        .filter(|token| {
            let ok = !token.is_empty() && token.len() <= MAX_REFRESH_TOKEN_LEN;
            if !ok {
                errors.push(FieldError::new(
                    "token",
                    format!("must be 1-{MAX_REFRESH_TOKEN_LEN} characters"),
                ));
            }
            ok
        })
        .map(Secret::new)
}

/// A required string field, or its error.
fn text(field: &str, value: Option<Value>, errors: &mut Vec<FieldError>) -> Option<String> {
    match value {
        Some(Value::String(s)) => Some(s),
        None | Some(Value::Null) => {
            errors.push(FieldError::new(field, "is required"));
            None
        }
        Some(_) => {
            errors.push(FieldError::new(field, "must be a string"));
            None
        }
    }
}

fn optional_text(
    field: &str,
    value: Option<Value>,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match value {
        None | Some(Value::Null) => None,
        other => text(field, other, errors),
    }
}

/// `"session"`: how the refresh token is handed out.
fn parse_delivery(value: Option<Value>, errors: &mut Vec<FieldError>) -> Delivery {
    optional_text("session", value, errors)
        .and_then(|raw| {
            Delivery::parse(&raw).or_else(|| {
                errors.push(FieldError::new("session", "must be \"cookie\" or \"body\""));
                None
            })
        })
        .unwrap_or(Delivery::Body)
}

fn parse_register(input: RegisterInput) -> Result<(NewAccount, Delivery), ApiError> {
    let mut errors = Vec::new();
    let email = text("email", input.email, &mut errors)
        .and_then(|raw| Email::parse(&raw).map_err(|e| errors.push(e)).ok());
    let password = text("password", input.password, &mut errors)
        .and_then(|raw| Password::parse(&raw).map_err(|e| errors.push(e)).ok());
    let full_name = optional_text("full_name", input.full_name, &mut errors)
        .map(|name| name.trim().to_owned())
        .filter(|name| {
            let ok = name.chars().count() <= MAX_FULL_NAME_CHARS
                && !name.chars().any(char::is_control);
            if !ok {
                errors.push(FieldError::new(
                    "full_name",
                    format!("must be at most {MAX_FULL_NAME_CHARS} characters, without control characters"),
                ));
            }
            ok
        })
        .filter(|name| !name.is_empty());
    let timezone = optional_text("timezone", input.timezone, &mut errors).and_then(|raw| {
        TimeZoneName::parse("timezone", &raw)
            .map_err(|e| errors.push(e))
            .ok()
    });
    let delivery = parse_delivery(input.session, &mut errors);
    let invitation_token = optional_text("invitation_token", input.invitation_token, &mut errors)
        .filter(|token| {
            let ok = !token.is_empty() && token.len() <= MAX_REFRESH_TOKEN_LEN;
            if !ok {
                errors.push(FieldError::new(
                    "invitation_token",
                    format!("must be 1-{MAX_REFRESH_TOKEN_LEN} characters"),
                ));
            }
            ok
        })
        .map(crate::secret::Secret::new);
    match (email, password) {
        (Some(email), Some(password)) if errors.is_empty() => Ok((
            NewAccount {
                email,
                password,
                full_name,
                timezone,
                invitation_token,
            },
            delivery,
        )),
        _ => Err(ApiError::unprocessable("invalid registration", errors)),
    }
}

fn parse_login(input: LoginInput) -> Result<(Email, PasswordAttempt, Delivery), ApiError> {
    let mut errors = Vec::new();
    let email = text("email", input.email, &mut errors)
        .and_then(|raw| Email::parse(&raw).map_err(|e| errors.push(e)).ok());
    let password = text("password", input.password, &mut errors).and_then(|raw| {
        PasswordAttempt::parse(&raw)
            .map_err(|e| errors.push(e))
            .ok()
    });
    let delivery = parse_delivery(input.session, &mut errors);
    match (email, password) {
        (Some(email), Some(password)) if errors.is_empty() => Ok((email, password, delivery)),
        _ => Err(ApiError::unprocessable("invalid login", errors)),
    }
}

fn parse_refresh(input: RefreshTokenInput) -> Result<String, ApiError> {
    let mut errors = Vec::new();
    match text("refresh_token", input.refresh_token, &mut errors) {
        Some(token) if !token.is_empty() && token.len() <= MAX_REFRESH_TOKEN_LEN => Ok(token),
        Some(_) => Err(ApiError::unprocessable(
            "invalid refresh token",
            vec![FieldError::new(
                "refresh_token",
                format!("must be 1-{MAX_REFRESH_TOKEN_LEN} characters"),
            )],
        )),
        None => Err(ApiError::unprocessable("invalid refresh token", errors)),
    }
}

/// Where a refresh or logout found its refresh token.
enum Presented {
    Body(String),
    /// The `refresh_token` cookie; the CSRF check has passed.
    Cookie(String),
}

impl Presented {
    fn token(&self) -> &str {
        match self {
            Presented::Body(t) | Presented::Cookie(t) => t,
        }
    }
}

/// The refresh token of a refresh or logout: the body's `refresh_token` when
/// given (no CSRF check: not a browser session), else the cookie, which needs
/// the CSRF header (403 CSRF_ERROR without it).
fn presented_token(state: &AppState, incoming: &Incoming) -> Result<Presented, ApiError> {
    let input: RefreshTokenInput = if incoming.body.iter().all(u8::is_ascii_whitespace) {
        RefreshTokenInput::default()
    } else {
        json_body(&incoming.body)?
    };
    if input.refresh_token.is_none() {
        if let Some(token) = browser_session::cookie(&incoming.headers, REFRESH_COOKIE) {
            browser_session::check_csrf(&incoming.headers, &state.cors_allowed_origins)?;
            if token.is_empty() || token.len() > MAX_REFRESH_TOKEN_LEN {
                return Err(ApiError::Unauthorized(
                    AccountError::InvalidRefreshToken { account: None }.to_string(),
                ));
            }
            return Ok(Presented::Cookie(token));
        }
    }
    parse_refresh(input).map(Presented::Body)
}

/// A session's answer: the pair in the body, or for a browser session the
/// refresh token in its cookie (with a new CSRF cookie) and not in the body.
fn session_response(
    state: &AppState,
    status: StatusCode,
    session: Session,
    delivery: Delivery,
) -> Response {
    let cookies = (delivery == Delivery::Cookie).then(|| {
        browser_session::session_cookies(
            session.refresh_token.expose(),
            state.accounts.refresh_ttl_seconds(),
            state.accounts.secure_cookies(),
        )
    });
    let mut view = SessionView::from(session);
    if cookies.is_some() {
        view.refresh_token = None;
    }
    let mut response = (status, success(view)).into_response();
    for cookie in cookies.into_iter().flatten() {
        response
            .headers_mut()
            .append(axum::http::header::SET_COOKIE, cookie);
    }
    response
}

/// The body and what the audit entry and throttles need from the request.
struct Incoming {
    headers: HeaderMap,
    client: std::net::IpAddr,
    body: bytes::Bytes,
}

async fn incoming(state: &AppState, request: Request) -> Result<Incoming, ApiError> {
    let (parts, body) = request.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let client = state.rate_limits.client_ip(peer, &parts.headers);
    let body = read_body(
        &parts.headers,
        body,
        state.limits.max_body_bytes,
        state.limits.body_read_timeout,
    )
    .await?;
    Ok(Incoming {
        headers: parts.headers,
        client,
        body,
    })
}

/// The actor of audit entries about a login with an unknown email.
fn anonymous() -> UserId {
    UserId::parse("anonymous").unwrap_or_else(|_| unreachable!("a valid user id"))
}

async fn audit(
    state: &AppState,
    actor: Option<&UserId>,
    action: Action,
    headers: &HeaderMap,
    status: StatusCode,
) {
    let actor = actor.cloned().unwrap_or_else(anonymous);
    record_state_bound(state, &actor, action, status.is_success(), headers, status).await;
}

fn audited_account(e: &AccountError) -> Option<&UserId> {
    match e {
        AccountError::InvalidCredentials { account }
        | AccountError::InvalidRefreshToken { account } => account.as_ref(),
        _ => None,
    }
}

/// Creates an account (the patient role) and signs it in.
#[utoipa::path(
    post, path = "/api/v1/auth/register", tag = "accounts", security(()),
    request_body = RegisterInput,
    responses(
        (status = 201, description = "The account and its first session", body = super::docs::SessionEnvelope),
        (status = 403, description = "REGISTRATION is closed", body = ErrorEnvelope),
        (status = 409, description = "CONFLICT: an account with this email (compared case-insensitively) exists", body = ErrorEnvelope),
        (status = 422, description = "VALIDATION_ERROR naming each bad field (/email, /password: 8-256 characters and not a commonly breached password, /full_name, /timezone; /invitation_token: missing under REGISTRATION=invite, or unknown, used, expired or for another email)", body = ErrorEnvelope),
        (status = 503, description = "Accounts are off (no AUTH_JWT_SECRET) or password hashing is busy", body = ErrorEnvelope),
    )
)]
pub async fn register(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let incoming = incoming(&state, request).await?;
    let (new, delivery) = parse_register(json_body(&incoming.body)?)?;
    match state
        .accounts
        .register(new, state.limits.max_shares_per_patient)
        .await
    {
        Ok(session) => {
            audit(
                &state,
                Some(&session.account.id),
                Action::Register,
                &incoming.headers,
                StatusCode::CREATED,
            )
            .await;
            Ok(session_response(
                &state,
                StatusCode::CREATED,
                session,
                delivery,
            ))
        }
        Err(e) => {
            let e = ApiError::from(e);
            audit(
                &state,
                None,
                Action::Register,
                &incoming.headers,
                e.status(),
            )
            .await;
            Err(e)
        }
    }
}

/// Signs in with email and password. Unknown email and wrong password get the
/// same 401 in about the same time.
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "accounts", security(()),
    request_body = LoginInput,
    responses(
        (status = 200, description = "A new session", body = super::docs::SessionEnvelope),
        (status = 401, description = "AUTH_ERROR: invalid email or password (the same for both)", body = ErrorEnvelope),
        (status = 422, description = "VALIDATION_ERROR: /email malformed, /password empty or over 256 characters", body = ErrorEnvelope),
        (status = 429, description = "Too many failed logins for this email or from this IP (Retry-After)", body = ErrorEnvelope),
        (status = 503, description = "Accounts are off (no AUTH_JWT_SECRET) or password hashing is busy", body = ErrorEnvelope),
    )
)]
pub async fn login(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let incoming = incoming(&state, request).await?;
    let (email, password, delivery) = parse_login(json_body(&incoming.body)?)?;
    match state
        .accounts
        .login(&email, password, incoming.client)
        .await
    {
        Ok(session) => {
            audit(
                &state,
                Some(&session.account.id),
                Action::Login,
                &incoming.headers,
                StatusCode::OK,
            )
            .await;
            Ok(session_response(&state, StatusCode::OK, session, delivery))
        }
        Err(e) => {
            let account = audited_account(&e).cloned();
            let e = ApiError::from(e);
            audit(
                &state,
                account.as_ref(),
                Action::Login,
                &incoming.headers,
                e.status(),
            )
            .await;
            Err(e)
        }
    }
}

/// Exchanges a refresh token for a new pair. Each refresh token works once:
/// presenting a used one revokes every token of its session (401).
#[utoipa::path(
    post, path = "/api/v1/auth/refresh", tag = "accounts",
    security((), ("refresh_cookie" = [], "csrf_header" = [])),
    request_body = RefreshTokenInput,
    responses(
        (status = 200, description = "A new access token and refresh token", body = super::docs::SessionEnvelope),
        (status = 401, description = "AUTH_ERROR: unknown, expired, revoked or already used refresh token (a reuse revokes the session)", body = ErrorEnvelope),
        (status = 403, description = "CSRF_ERROR: the refresh_token cookie without a matching X-CSRF-Token header, or from a foreign Origin; nothing rotated", body = ErrorEnvelope),
        (status = 422, description = "VALIDATION_ERROR: /refresh_token missing or over 512 characters", body = ErrorEnvelope),
    )
)]
pub async fn refresh(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let incoming = incoming(&state, request).await?;
    let presented = match presented_token(&state, &incoming) {
        Ok(p) => p,
        Err(e) => {
            audit(
                &state,
                None,
                Action::RefreshSession,
                &incoming.headers,
                e.status(),
            )
            .await;
            return Err(e);
        }
    };
    let delivery = match presented {
        Presented::Body(_) => Delivery::Body,
        Presented::Cookie(_) => Delivery::Cookie,
    };
    match state.accounts.refresh(presented.token()).await {
        Ok(session) => {
            audit(
                &state,
                Some(&session.account.id),
                Action::RefreshSession,
                &incoming.headers,
                StatusCode::OK,
            )
            .await;
            Ok(session_response(&state, StatusCode::OK, session, delivery))
        }
        Err(e) => {
            let account = audited_account(&e).cloned();
            let e = ApiError::from(e);
            audit(
                &state,
                account.as_ref(),
                Action::RefreshSession,
                &incoming.headers,
                e.status(),
            )
            .await;
            Err(e)
        }
    }
}

/// Ends a session: the refresh token's whole family is revoked. 204 whether
/// or not the token was known (access tokens already issued live out their
/// short lifetime).
#[utoipa::path(
    post, path = "/api/v1/auth/logout", tag = "accounts",
    security((), ("refresh_cookie" = [], "csrf_header" = [])),
    request_body = RefreshTokenInput,
    responses(
        (status = 204, description = "Logged out (a browser session's cookies are cleared)"),
        (status = 403, description = "CSRF_ERROR: the refresh_token cookie without a matching X-CSRF-Token header, or from a foreign Origin; nothing revoked", body = ErrorEnvelope),
        (status = 422, description = "VALIDATION_ERROR: /refresh_token missing or over 512 characters", body = ErrorEnvelope),
    )
)]
pub async fn logout(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let incoming = incoming(&state, request).await?;
    let presented = match presented_token(&state, &incoming) {
        Ok(p) => p,
        Err(e) => {
            audit(&state, None, Action::Logout, &incoming.headers, e.status()).await;
            return Err(e);
        }
    };
    let known = state.accounts.logout(presented.token()).await?;
    audit(
        &state,
        None,
        Action::Logout,
        &incoming.headers,
        if known {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::UNAUTHORIZED
        },
    )
    .await;
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Presented::Cookie(_) = presented {
        for cookie in browser_session::cleared_cookies(state.accounts.secure_cookies()) {
            response
                .headers_mut()
                .append(axum::http::header::SET_COOKIE, cookie);
        }
    }
    Ok(response)
}

/// Invites an email to sign up (admins only). The token is single use and
/// works for INVITATION_TTL_HOURS (default 168).
#[utoipa::path(
    post, path = "/api/v1/auth/invitations", tag = "accounts",
    security(("bearer" = [])),
    request_body = InvitationInput,
    responses(
        (status = 201, description = "The invitation (with its token while mail is off)", body = super::docs::InvitationEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Only admins invite", body = ErrorEnvelope),
        (status = 422, description = "VALIDATION_ERROR: /email", body = ErrorEnvelope),
    )
)]
pub async fn invite(
    State(state): State<AppState>,
    caller: Caller,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let user = caller.principal.user_id.clone();
    authorize(&state, &caller, Action::InviteUser, &user).await?;
    let input: InvitationInput = json_body(&body)?;
    let mut errors = Vec::new();
    let Some(email) = text("email", input.email, &mut errors)
        .and_then(|raw| Email::parse(&raw).map_err(|e| errors.push(e)).ok())
    else {
        return Err(ApiError::unprocessable("invalid invitation", errors));
    };
    let invited = state.accounts.invite(email, user, None).await?;
    tracing::info!(invited_by = %invited.invitation.invited_by, "invitation made");
    Ok((
        StatusCode::CREATED,
        success(InvitationView::from_invited(&invited)),
    )
        .into_response())
}

/// Asks for a password-reset link. 202 whether or not an account has the
/// email, in about the same time: the mail (if any) goes out after the answer.
#[utoipa::path(
    post, path = "/api/v1/auth/password-reset", tag = "accounts", security(()),
    request_body = ResetRequestInput,
    responses(
        (status = 202, description = "Taken: if an active account has this email, a single-use reset link (valid one hour) is mailed to it; the same answer for every email", body = super::docs::AcceptedEnvelope),
        (status = 422, description = "VALIDATION_ERROR: /email", body = ErrorEnvelope),
        (status = 503, description = "Password reset is off: no SMTP_URL outside development (or accounts are off)", body = ErrorEnvelope),
    )
)]
pub async fn password_reset(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let incoming = incoming(&state, request).await?;
    let input: ResetRequestInput = json_body(&incoming.body)?;
    let mut errors = Vec::new();
    let Some(email) = text("email", input.email, &mut errors)
        .and_then(|raw| Email::parse(&raw).map_err(|e| errors.push(e)).ok())
    else {
        return Err(ApiError::unprocessable("invalid request", errors));
    };
    let status = match state.accounts.request_password_reset(email) {
        Ok(()) => StatusCode::ACCEPTED,
        Err(e) => {
            let e = ApiError::from(e);
            audit(
                &state,
                None,
                Action::ResetPassword,
                &incoming.headers,
                e.status(),
            )
            .await;
            return Err(e);
        }
    };
    audit(
        &state,
        None,
        Action::ResetPassword,
        &incoming.headers,
        status,
    )
    .await;
    Ok((
        status,
        success(AcceptedView {
            message: "if an account has this email, a reset link is on its way",
        }),
    )
        .into_response())
}

/// Sets a new password with the token of a reset mail. The token works once;
/// every session (refresh token) of the account is revoked.
#[utoipa::path(
    post, path = "/api/v1/auth/password-reset/confirm", tag = "accounts", security(()),
    request_body = ResetConfirmInput,
    responses(
        (status = 204, description = "The password is set; every refresh token of the account is revoked"),
        (status = 422, description = "VALIDATION_ERROR: /token unknown, used already or expired; /password 8-256 characters and not a commonly breached password", body = ErrorEnvelope),
        (status = 503, description = "Password reset is off (no SMTP_URL outside development), or password hashing is busy", body = ErrorEnvelope),
    )
)]
pub async fn password_reset_confirm(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let incoming = incoming(&state, request).await?;
    let input: ResetConfirmInput = json_body(&incoming.body)?;
    let mut errors = Vec::new();
    let token = token_field(input.token, &mut errors);
    let password = text("password", input.password, &mut errors)
        .and_then(|raw| Password::parse(&raw).map_err(|e| errors.push(e)).ok());
    let (Some(token), Some(password)) = (token, password) else {
        return Err(ApiError::unprocessable("invalid password reset", errors));
    };
    match state
        .accounts
        .confirm_password_reset(&token, password)
        .await
    {
        Ok(account) => {
            audit(
                &state,
                Some(&account),
                Action::ResetPassword,
                &incoming.headers,
                StatusCode::NO_CONTENT,
            )
            .await;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(e) => {
            let e = ApiError::from(e);
            audit(
                &state,
                None,
                Action::ResetPassword,
                &incoming.headers,
                e.status(),
            )
            .await;
            Err(e)
        }
    }
}

/// Confirms the account's email with the token of a verification mail
/// (sent at sign-up while mail is on). The token works once.
#[utoipa::path(
    post, path = "/api/v1/auth/verify-email", tag = "accounts", security(()),
    request_body = VerifyEmailInput,
    responses(
        (status = 200, description = "The account, now with email_verified true", body = super::docs::VerifiedEnvelope),
        (status = 422, description = "VALIDATION_ERROR: /token unknown, used already or expired", body = ErrorEnvelope),
        (status = 503, description = "Email verification is off: no SMTP_URL outside development", body = ErrorEnvelope),
    )
)]
pub async fn verify_email(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let incoming = incoming(&state, request).await?;
    let input: VerifyEmailInput = json_body(&incoming.body)?;
    let mut errors = Vec::new();
    let Some(token) = token_field(input.token, &mut errors) else {
        return Err(ApiError::unprocessable("invalid verification", errors));
    };
    match state.accounts.verify_email(&token).await {
        Ok(account) => {
            audit(
                &state,
                Some(&account.id),
                Action::VerifyEmail,
                &incoming.headers,
                StatusCode::OK,
            )
            .await;
            Ok(success(VerifiedView {
                user: AccountView::from(&account),
            })
            .into_response())
        }
        Err(e) => {
            let e = ApiError::from(e);
            audit(
                &state,
                None,
                Action::VerifyEmail,
                &incoming.headers,
                e.status(),
            )
            .await;
            Err(e)
        }
    }
}

/// Mails the caller a new verification link.
#[utoipa::path(
    post, path = "/api/v1/auth/verify-email/resend", tag = "accounts",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "A new single-use link (valid 48 hours) is on its way", body = super::docs::AcceptedEnvelope),
        (status = 404, description = "The token's user has no built-in account", body = ErrorEnvelope),
        (status = 409, description = "CONFLICT: the email is verified already", body = ErrorEnvelope),
        (status = 503, description = "Email verification is off: no SMTP_URL outside development", body = ErrorEnvelope),
    )
)]
pub async fn verify_email_resend(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let user = caller.principal.user_id.clone();
    authorize(&state, &caller, Action::VerifyEmail, &user).await?;
    if state.accounts.account(&user).await?.is_none() {
        return Err(ApiError::NotFound("account".into()));
    }
    state.accounts.resend_verification(&user).await?;
    Ok((
        StatusCode::ACCEPTED,
        success(AcceptedView {
            message: "a verification link is on its way",
        }),
    )
        .into_response())
}

/// The caller's account and profile.
#[utoipa::path(
    get, path = "/api/v1/auth/me", tag = "accounts",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account and its profile", body = super::docs::MeEnvelope),
        (status = 404, description = "The token's user has no built-in account (a token from another issuer)", body = ErrorEnvelope),
    )
)]
pub async fn me(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let user = caller.principal.user_id.clone();
    authorize(&state, &caller, Action::ReadAccount, &user).await?;
    let Some(account) = state.accounts.account(&user).await? else {
        return Err(ApiError::NotFound("account".into()));
    };
    let profile = profile_or_default(state.store.as_ref(), &user).await?;
    Ok(success(MeView {
        user: AccountView::from(&account),
        profile: ProfileView::from(profile),
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointers(result: Result<impl std::fmt::Debug, ApiError>) -> Vec<String> {
        match result {
            Err(ApiError::Validation { errors, .. }) => {
                errors.into_iter().map(|e| e.pointer).collect()
            }
            other => panic!("{other:?}"),
        }
    }

    fn register(body: Value) -> Result<NewAccount, ApiError> {
        parse_register(serde_json::from_value(body).unwrap()).map(|(new, _)| new)
    }

    #[test]
    fn every_bad_sign_up_field_is_named() {
        assert_eq!(
            pointers(register(serde_json::json!({}))),
            ["/email", "/password"]
        );
        assert_eq!(
            pointers(register(
                serde_json::json!({"email": 3, "password": ["x"], "timezone": "Mars/Base", "full_name": "a\u{0}b"})
            )),
            ["/email", "/password", "/full_name", "/timezone"]
        );
        assert_eq!(
            pointers(register(
                serde_json::json!({"email": "a@example.com", "password": "password123"})
            )),
            ["/password"]
        );
        let ok = register(serde_json::json!({"email": " A@Example.com ", "password": "correct horse battery", "full_name": " Al ", "timezone": "Europe/Berlin"})).unwrap();
        assert_eq!(ok.email.key(), "a@example.com");
        assert_eq!(ok.full_name.as_deref(), Some("Al"));
    }

    #[test]
    fn login_and_refresh_bodies_are_bounded() {
        let long = "x".repeat(257);
        assert_eq!(
            pointers(parse_login(
                serde_json::from_value(serde_json::json!({"email": "a@b", "password": long}))
                    .unwrap()
            )),
            ["/email", "/password"]
        );
        assert_eq!(
            pointers(parse_refresh(
                serde_json::from_value(serde_json::json!({"refresh_token": "x".repeat(513)}))
                    .unwrap()
            )),
            ["/refresh_token"]
        );
        assert_eq!(
            pointers(parse_refresh(
                serde_json::from_value(serde_json::json!({})).unwrap()
            )),
            ["/refresh_token"]
        );
    }
}
