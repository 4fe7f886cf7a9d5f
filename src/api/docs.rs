//! The OpenAPI document (`/openapi.json`) and the Swagger UI explorer (`/docs`),
//! whose assets are compiled into the binary so it works offline.

use axum::Router;
use utoipa::{OpenApi, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

use super::accounts::{
    AcceptedView, AccountView, InvitationInput, InvitationView, LoginInput, MeView,
    RefreshTokenInput, RegisterInput, ResetConfirmInput, ResetRequestInput, SessionView,
    VerifiedView, VerifyEmailInput,
};
use super::alerts::{
    AlertList, AlertPagination, AlertSettingsInputDoc, AlertSettingsView, AlertView,
};
use super::analytics::{
    AgpBinDoc, AgpData, FhirBundleDoc, GriDoc, MetricsDoc, RangesDoc, StatsData,
};
use super::audit::{AuditPage, AuditView};
use super::connections::{ConnectionList, ConnectionView};
use super::daily::{DailyView, DayView};
use super::error::{ErrorBody, ErrorEnvelope};
use super::glucolens::{AuthorizeUrlView, CgmInput, DailySummaryView, GlucoseBulkInput};
use super::jobs::{JobList, JobView, RangeView};
use super::journal::JournalPagination;
use super::journal_v1::{AppleHealthEnvelope, AppleHealthSynced, AppleHealthUpload, GlucoseCounts};
use super::meals::SuggestionView;
use super::notifications::{EndpointInputDoc, EndpointList, EndpointView};
use super::oauth::{BackfillView, Connected, RefreshInput, RefreshView};
use super::profile::{ProfileInput, ProfileView};
use super::readings::{
    BulkInput, BulkResult, OrderName, Pagination, ReadingsPage, RecordOutcome, Summary,
};
use super::shares::{PendingShareView, ShareInput, ShareList, SharePagination, ShareView};
use super::stream::StreamTokenView;
use super::tasks::TaskView;
use super::views::JobCountsView;
use super::views::{DeviceInfoView, ReadingView};
use super::webhook::DeliveryReceipt;
use super::{
    accounts, alerts, daily, glucolens, journal, journal_v1, meals, notifications, profile,
};
use super::{
    analytics, audit, connections, health, jobs, oauth, readings, shares, stream, tasks, webhook,
    AppState,
};
use crate::domain::{
    ActivityInput, ActivityType, Food, Intensity, MealInput, MealType, SleepInput,
};
use crate::pipeline::wire::{DeviceInfoInput, GlucoseInput, ReadingInput};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cgm-hub",
        description = "Collects, validates, stores and serves continuous glucose monitor readings. \
            Success responses are `{\"status\":\"success\",\"data\":...}`; errors are \
            `{\"status\":\"error\",\"error\":{\"code\",\"message\",\"details\"}}`. \
            Every response carries `X-Request-Id`. \
            Authentication: `Authorization: Bearer <JWT>` (see the `bearer` scheme for claims \
            and roles); 401 AUTH_ERROR without valid credentials, 403 FORBIDDEN for a caller \
            without the right. Rate limits (defaults, configurable): 100 requests/min per IP \
            without a token, 300/min per authenticated user, 1000/min per IP on webhooks; \
            responses carry `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`, \
            and over the limit 429 RATE_LIMIT_EXCEEDED with `Retry-After`."
    ),
    paths(
        health::health, health::metrics, readings::latest, readings::range, readings::write,
        oauth::authorize, oauth::callback, oauth::refresh, connections::list,
        connections::disconnect, shares::create, shares::list, shares::revoke, audit::list,
        jobs::sync, jobs::get, jobs::list, tasks::get, webhook::receive, analytics::stats,
        analytics::agp, analytics::summary_fhir, profile::get, profile::put, daily::daily,
        alerts::get_settings, alerts::put_settings, alerts::list, alerts::acknowledge,
        notifications::create, notifications::list, notifications::delete,
        stream::stream, stream::token,
        accounts::register, accounts::login, accounts::refresh, accounts::logout, accounts::me,
        accounts::invite,
        glucolens::post_reading, glucolens::post_bulk, glucolens::list_readings,
        glucolens::latest, glucolens::daily_summary, glucolens::dashboard,
        glucolens::cgm_connect, glucolens::cgm_sync,
        journal::create_meal, journal::list_meals, journal::get_meal, journal::patch_meal,
        journal::delete_meal, journal::create_sleep, journal::list_sleep, journal::get_sleep,
        journal::patch_sleep, journal::delete_sleep, journal::create_activity,
        journal::list_activities, journal::get_activity, journal::patch_activity,
        journal::delete_activity,
        accounts::password_reset, accounts::password_reset_confirm,
        accounts::verify_email, accounts::verify_email_resend,
        journal_v1::post_meal, journal_v1::post_sleep, journal_v1::post_activity,
        journal_v1::apple_health,
        meals::get_response, meals::get_insights,
        glucolens::meal_response, glucolens::insights
    ),
    components(schemas(
        ReadingView, DeviceInfoView, ReadingInput, BulkInput, DeviceInfoInput, RecordOutcome, Summary,
        BulkResult, Pagination, ErrorEnvelope, ErrorBody, ReadingsPage, LatestEnvelope,
        PageEnvelope, WriteEnvelope, WriteData, OrderName, ConnectionView, ConnectionList,
        Connected, BackfillView, RefreshInput, RefreshView, RefreshEnvelope, ConnectionListEnvelope, ConnectionEnvelope,
        ConnectedEnvelope, ShareInput, ShareView, ShareList, SharePagination, ShareEnvelope, ShareListEnvelope, AuditView, AuditPage, AuditEnvelope,
        JobView, JobList, RangeView, JobCountsView, JobEnvelope, JobListEnvelope, DeliveryReceipt,
        DeliveryEnvelope, TaskView, TaskEnvelope, StatsData, MetricsDoc, RangesDoc, GriDoc,
        AgpBinDoc, AgpData, StatsEnvelope, AgpEnvelope, FhirBundleDoc,
        ProfileView, ProfileInput, ProfileEnvelope, DayView, DailyView, DailyEnvelope,
        AlertSettingsView, AlertSettingsInputDoc, AlertView, AlertList, AlertPagination,
        AlertSettingsEnvelope, AlertEnvelope, AlertListEnvelope, EndpointInputDoc, EndpointView,
        EndpointList, EndpointEnvelope, EndpointListEnvelope, StreamTokenView, StreamTokenEnvelope,
        AccountView, SessionView, MeView, RegisterInput, LoginInput, RefreshTokenInput,
        SessionEnvelope, MeEnvelope, InvitationInput, InvitationView, InvitationEnvelope, PendingShareView, PendingShareEnvelope,
        GlucoseInput, GlucoseBulkInput, DailySummaryView, DailySummaryEnvelope, DashboardData,
        DashboardEnvelope, CgmInput, AuthorizeUrlView, AuthorizeUrlEnvelope,
        MealInput, SleepInput, ActivityInput, Food, MealType, ActivityType, Intensity,
        MealView, SleepView, ActivityView, MealEnvelope, SleepEnvelope, ActivityEnvelope,
        JournalPagination, JournalPage, JournalPageEnvelope,
        ResetRequestInput, ResetConfirmInput, VerifyEmailInput, AcceptedView, VerifiedView,
        AcceptedEnvelope, VerifiedEnvelope,
        AppleHealthUpload, AppleHealthSynced, GlucoseCounts, AppleHealthEnvelope, MealResponseView,
        MealResponseStatusName, MealResponseEnvelope, SpreadView, GroupStatsView, GroupsView,
        MealInsightsView, MealInsightsEnvelope, SuggestionView
    )),
    modifiers(&BearerAuth, &GateResponses),
    security(("bearer" = [])),
    tags(
        (name = "readings", description = "Glucose readings"),
        (name = "connections", description = "Connecting Dexcom accounts (OAuth2) and their status"),
        (name = "sharing", description = "A patient's grants of read access to caregivers and clinicians"),
        (name = "sync", description = "Sync jobs: scheduled polls, manual syncs, backfills and webhook windows"),
        (name = "tasks", description = "Background tasks of every kind (sync jobs among them): status"),
        (name = "webhooks", description = "Signed deliveries from a data source"),
        (name = "analytics", description = "Glycemic statistics, the AGP and the FHIR summary of a window of CGM readings"),
        (name = "alerts", description = "Alert settings, alert history and acknowledgement (alerts are raised and resolved as readings are stored), and the per-user live stream of readings and alerts (Server-Sent Events)"),
        (name = "operations", description = "Health and metrics"),
        (name = "profile", description = "A user's time zone, target range, display unit and diabetes type"),
        (name = "glucolens", description = "GlucoLens and Nutri paths: the caller's own data (the token's `sub` is the user), with the rules, answers and errors of the equivalent /api/bg/{userId} routes (the caller being the owner)"),
        (name = "journal", description = "The health journal: meals, sleep sessions and activities (docs/journal.md); each change is announced on the event bus (meal.*, sleep.*, activity.*)"),
        (name = "accounts", description = "Built-in accounts: sign-up, login, refresh-token rotation, logout (docs/accounts.md); the access tokens are the bearer JWTs every other route takes"),
    )
)]
pub struct ApiDoc;

/// `{"status":"success","data":<reading>}` (documentation of the envelope).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LatestEnvelope {
    #[schema(example = "success")]
    status: String,
    data: ReadingView<'static>,
}

/// `{"status":"success","data":{"readings":[...],"pagination":{...}}}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PageEnvelope {
    #[schema(example = "success")]
    status: String,
    data: ReadingsPage<'static>,
}

/// `{"status":"success","data":<RecordOutcome or BulkResult>}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct WriteEnvelope {
    #[schema(example = "success")]
    status: String,
    data: WriteData,
}

#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum WriteData {
    Single(RecordOutcome),
    Bulk(BulkResult),
}

/// `{"status":"success","data":{"connections":[...]}}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ConnectionListEnvelope {
    #[schema(example = "success")]
    status: String,
    data: ConnectionList,
}

/// `{"status":"success","data":<connection>}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ConnectionEnvelope {
    #[schema(example = "success")]
    status: String,
    data: ConnectionView,
}

/// `{"status":"success","data":<connection, refreshed>}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RefreshEnvelope {
    #[schema(example = "success")]
    status: String,
    data: RefreshView,
}

/// `{"status":"success","data":<job>}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct JobEnvelope {
    #[schema(example = "success")]
    status: String,
    data: JobView,
}

/// `{"status":"success","data":<task>}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TaskEnvelope {
    #[schema(example = "success")]
    status: String,
    data: TaskView,
}

/// `{"status":"success","data":{"jobs":[...]}}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct JobListEnvelope {
    #[schema(example = "success")]
    status: String,
    data: JobList,
}

/// `{"status":"success","data":{"delivery_id","status","type"}}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DeliveryEnvelope {
    #[schema(example = "success")]
    status: String,
    data: DeliveryReceipt,
}

/// `{"status":"success","data":{"user_id","connection","backfill"}}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ConnectedEnvelope {
    #[schema(example = "success")]
    status: String,
    data: Connected,
}

/// `{"status":"success","data":<share>}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ShareEnvelope {
    #[schema(example = "success")]
    status: String,
    data: ShareView,
}

/// `{"status":"success","data":{"shares":[...],"pagination":{...}}}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ShareListEnvelope {
    #[schema(example = "success")]
    status: String,
    data: ShareList,
}

/// `{"status":"success","data":{"entries":[...],"next_cursor"}}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditEnvelope {
    #[schema(example = "success")]
    status: String,
    data: AuditPage,
}

/// `{"status":"success","data":<stats>}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StatsEnvelope {
    #[schema(example = "success")]
    status: String,
    data: StatsData,
}

/// `{"status":"success","data":{"start","end","tz","bins":[...],"stats":{...}}}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AgpEnvelope {
    #[schema(example = "success")]
    status: String,
    data: AgpData,
}

/// `{"status":"success","data":<profile>}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ProfileEnvelope {
    #[schema(example = "success")]
    status: String,
    data: ProfileView,
}

/// `{"status":"success","data":{"user","access_token","refresh_token","token_type","expires_in"}}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SessionEnvelope {
    #[schema(example = "success")]
    status: String,
    data: SessionView,
}

/// `{"status":"success","data":{"email","expires_at","mail","invitation_token"}}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InvitationEnvelope {
    #[schema(example = "success")]
    status: String,
    data: InvitationView,
}

/// `{"status":"success","data":{"status":"pending","email","role","expires_at","mail","invitation_token"}}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PendingShareEnvelope {
    #[schema(example = "success")]
    status: String,
    data: PendingShareView,
}

/// `{"status":"success","data":{"message"}}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AcceptedEnvelope {
    #[schema(example = "success")]
    status: String,
    data: AcceptedView,
}

/// `{"status":"success","data":{"user"}}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct VerifiedEnvelope {
    #[schema(example = "success")]
    status: String,
    data: VerifiedView,
}

/// `{"status":"success","data":{"user","profile"}}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MeEnvelope {
    #[schema(example = "success")]
    status: String,
    data: MeView,
}

/// A stored meal.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MealView {
    #[schema(format = "uuid")]
    id: String,
    user_id: String,
    #[schema(value_type = String, format = DateTime)]
    timestamp: String,
    meal_type: Option<MealType>,
    carbs_grams: Option<f64>,
    protein_grams: Option<f64>,
    fat_grams: Option<f64>,
    calories: Option<f64>,
    glycemic_load: Option<f64>,
    description: Option<String>,
    photo_url: Option<String>,
    foods: Vec<Food>,
    #[schema(example = "manual")]
    source: String,
    external_id: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: String,
    #[schema(value_type = String, format = DateTime)]
    updated_at: String,
}

/// A stored sleep session.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SleepView {
    #[schema(format = "uuid")]
    id: String,
    user_id: String,
    #[schema(value_type = String, format = DateTime)]
    sleep_start: String,
    #[schema(value_type = String, format = DateTime)]
    sleep_end: String,
    /// The day the session counts for (daily aggregates).
    #[schema(value_type = String, format = Date)]
    date: String,
    duration_minutes: u32,
    deep_sleep_minutes: Option<u32>,
    rem_sleep_minutes: Option<u32>,
    light_sleep_minutes: Option<u32>,
    awake_minutes: Option<u32>,
    quality_score: Option<f64>,
    #[schema(example = "manual")]
    source: String,
    external_id: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: String,
    #[schema(value_type = String, format = DateTime)]
    updated_at: String,
}

/// A stored activity.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ActivityView {
    #[schema(format = "uuid")]
    id: String,
    user_id: String,
    #[schema(value_type = String, format = DateTime)]
    timestamp: String,
    activity_type: ActivityType,
    duration_minutes: u32,
    intensity: Option<Intensity>,
    calories_burned: Option<f64>,
    heart_rate_avg: Option<u16>,
    steps: Option<u32>,
    #[schema(example = "manual")]
    source: String,
    external_id: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: String,
    #[schema(value_type = String, format = DateTime)]
    updated_at: String,
}

/// `{"status":"success","data":<meal>}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MealEnvelope {
    #[schema(example = "success")]
    status: String,
    data: MealView,
}

/// `{"status":"success","data":<sleep session>}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SleepEnvelope {
    #[schema(example = "success")]
    status: String,
    data: SleepView,
}

/// `{"status":"success","data":<activity>}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ActivityEnvelope {
    #[schema(example = "success")]
    status: String,
    data: ActivityView,
}

/// A page of one kind: the list under `meals`, `sleep` or `activities`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct JournalPage {
    meals: Option<Vec<MealView>>,
    sleep: Option<Vec<SleepView>>,
    activities: Option<Vec<ActivityView>>,
    pagination: JournalPagination,
}

/// `{"status":"success","data":{"<kind>":[...],"pagination":{...}}}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct JournalPageEnvelope {
    #[schema(example = "success")]
    status: String,
    data: JournalPage,
}

/// `{"status":"success","data":{"days":[...]}}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DailyEnvelope {
    #[schema(example = "success")]
    status: String,
    data: DailyView,
}

/// `{"status":"success","data":{"date","tz","start","end","summary"}}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DailySummaryEnvelope {
    #[schema(example = "success")]
    status: String,
    data: DailySummaryView,
}

/// `data` of `GET /api/v1/dashboard/summary`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DashboardData {
    #[schema(example = "user123")]
    user_id: String,
    /// The instant both windows end at (RFC 3339, whole seconds).
    generated_at: chrono::DateTime<chrono::Utc>,
    /// The IANA zone the statistics count days in.
    #[schema(example = "Europe/Berlin")]
    tz: String,
    /// The newest reading; null without readings.
    #[schema(required = true)]
    latest: Option<ReadingView<'static>>,
    /// Statistics of [generated_at − 7 days, generated_at), as `/stats` gives them.
    last_7_days: StatsData,
    /// Statistics of [generated_at − 30 days, generated_at).
    last_30_days: StatsData,
}

/// `{"status":"success","data":{"user_id","generated_at","tz","latest","last_7_days","last_30_days"}}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DashboardEnvelope {
    #[schema(example = "success")]
    status: String,
    data: DashboardData,
}

/// `{"status":"success","data":{"authorize_url","provider"}}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuthorizeUrlEnvelope {
    #[schema(example = "success")]
    status: String,
    data: AuthorizeUrlView,
}

/// `{"status":"success","data":<alert settings>}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AlertSettingsEnvelope {
    #[schema(example = "success")]
    status: String,
    data: AlertSettingsView,
}

/// `{"status":"success","data":{"token","expires_in"}}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StreamTokenEnvelope {
    #[schema(example = "success")]
    status: String,
    data: StreamTokenView,
}

/// `{"status":"success","data":<alert>}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AlertEnvelope {
    #[schema(example = "success")]
    status: String,
    data: AlertView,
}

/// `{"status":"success","data":{"alerts":[...],"pagination":{...}}}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AlertListEnvelope {
    #[schema(example = "success")]
    status: String,
    data: AlertList,
}

/// `{"status":"success","data":<notification endpoint>}` (never its secret)
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EndpointEnvelope {
    #[schema(example = "success")]
    status: String,
    data: EndpointView,
}

/// `{"status":"success","data":{"endpoints":[...]}}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EndpointListEnvelope {
    #[schema(example = "success")]
    status: String,
    data: EndpointList,
}

/// The bearer scheme, with the roles and what each may do.
struct BearerAuth;

/// The error responses a route can give because of what stands in front of it
/// (authentication, rate limits, body limits, the error mapping itself), added to
/// every operation from the router's own table rather than repeated per handler.
struct GateResponses;

/// `(status, description)` every route of this gate and method may answer.
pub fn gate_errors(route: &super::Route, has_body: bool) -> Vec<(u16, &'static str)> {
    use super::Gate;
    let mut errors = match route.gate {
        Gate::Open => vec![],
        Gate::Stream => vec![
            (
                401,
                "No or bad credentials (a bearer token, or a stream token in access_token)",
            ),
            (403, "Not allowed for this caller"),
            (429, "Over the rate limit (Retry-After says when to retry)"),
            (500, "Internal error (with the request id to report)"),
        ],
        Gate::Bearer => vec![
            (401, "No or bad credentials"),
            (403, "Not allowed for this caller"),
            (429, "Over the rate limit (Retry-After says when to retry)"),
            (500, "Internal error (with the request id to report)"),
        ],
        Gate::Webhook => vec![
            (401, "Missing or bad signature or timestamp"),
            (
                429,
                "Over the per-IP webhook limit, or too many webhook bodies being read",
            ),
            (500, "Internal error (with the request id to report)"),
        ],
        Gate::Anonymous => vec![
            (429, "Over the per-IP limit"),
            (500, "Internal error (with the request id to report)"),
        ],
    };
    if has_body {
        errors.push((400, "Malformed request body"));
        errors.push((
            408,
            "The body did not arrive within HTTP_BODY_READ_TIMEOUT_SECONDS",
        ));
        errors.push((413, "Body larger than MAX_BODY_BYTES"));
    }
    errors
}

/// `/api/bg/{user_id}` (axum) → `/api/bg/{userId}` (the document's names).
pub fn openapi_path(route_path: &str) -> String {
    let mut out = String::with_capacity(route_path.len());
    let mut upper = false;
    let mut in_param = false;
    for c in route_path.chars() {
        match c {
            '{' => in_param = true,
            '}' => in_param = false,
            '_' if in_param => {
                upper = true;
                continue;
            }
            _ => {}
        }
        out.push(if upper { c.to_ascii_uppercase() } else { c });
        upper = false;
    }
    out
}

/// The document's operation for a route, if it has one.
fn operation_mut<'a>(
    openapi: &'a mut utoipa::openapi::OpenApi,
    route: &super::Route,
) -> Option<&'a mut utoipa::openapi::path::Operation> {
    use axum::http::Method;
    let item = openapi.paths.paths.get_mut(&openapi_path(route.path))?;
    match route.method {
        Method::GET => item.get.as_mut(),
        Method::POST => item.post.as_mut(),
        Method::PUT => item.put.as_mut(),
        Method::DELETE => item.delete.as_mut(),
        Method::PATCH => item.patch.as_mut(),
        _ => None,
    }
}

impl utoipa::Modify for GateResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        for route in super::route_table() {
            let Some(operation) = operation_mut(openapi, &route) else {
                continue; // the OpenAPI test reports a route without an operation
            };
            let has_body = operation.request_body.is_some();
            for (status, description) in gate_errors(&route, has_body) {
                operation
                    .responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| {
                        ResponseBuilder::new()
                            .description(description)
                            .content(
                                "application/json",
                                ContentBuilder::new()
                                    .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                                    .build(),
                            )
                            .build()
                            .into()
                    });
            }
        }
    }
}

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT with `sub` (the user id), `roles` (any of patient, caregiver, \
                         clinician, admin, service) and `exp`; HS256 (AUTH_JWT_SECRET) or \
                         RS256/ES256 (AUTH_JWKS_URL). A patient reads and writes their own data; \
                         caregivers and clinicians read patients who shared with them; service \
                         reads all; admin does everything. Built-in accounts get one from \
                         `POST /api/v1/auth/login` (HS256, signed with AUTH_JWT_SECRET). `/health`, \
                         `/metrics`, `/docs`, `/openapi.json`, `/oauth/callback` and \
                         `/api/v1/auth/{register,login,refresh,logout,password-reset,\
                         password-reset/confirm,verify-email}` need no token. A browser \
                         session keeps its refresh token in a cookie instead (the \
                         `refresh_cookie` scheme).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "refresh_cookie",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Cookie(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "refresh_token",
                    "A browser session (docs/accounts.md, \"Browser sessions\"): register or \
                     login with `\"session\":\"cookie\"` sets the refresh token in this HttpOnly, \
                     SameSite=Lax cookie (Secure outside development, Path=/api/v1/auth, living as \
                     long as the refresh token) and a `csrf_token` cookie readable by scripts \
                     (SameSite=Strict, Path=/). POST /api/v1/auth/refresh and /logout then take \
                     no body and need the `csrf_header` scheme too: X-CSRF-Token equal to the \
                     csrf_token cookie, else 403 CSRF_ERROR. Only used when the body has no \
                     refresh_token.",
                ),
            )),
        );
        components.add_security_scheme(
            "csrf_header",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "X-CSRF-Token",
                    "With the refresh_cookie scheme only: the value of the csrf_token cookie \
                     (double submit, compared in constant time). Missing or different: 403 \
                     CSRF_ERROR, nothing rotated or revoked.",
                ),
            )),
        );
        components.add_security_scheme(
            "stream_token",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Query(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "access_token",
                    "For a browser's EventSource, which cannot send an Authorization header: \
                     a token from POST /api/users/{userId}/stream-token (same rights as reading \
                     the user's data), valid STREAM_TOKEN_TTL_SECONDS (300 s), bound to the \
                     caller and that user, accepted on that user's GET .../stream only. Bearer \
                     JWTs are never accepted in the query string.",
                ),
            )),
        );
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
}

/// Where a meal's response stands.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum MealResponseStatusName {
    /// The window is over and its readings are in: the metrics are final.
    Complete,
    /// The 180-minute window has not ended, or its readings may still arrive
    /// (up to 3 h late): the metrics are null.
    Pending,
    /// The window's readings are too few or too sparse (metrics null).
    InsufficientData,
}

/// The glucose response to a meal (docs/journal.md, "Meal glucose response"):
/// times in minutes from the meal, glucose in mg/dL, areas in mg/dL·min; the
/// metrics are null unless `status` is `complete`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MealResponseView {
    #[schema(format = "uuid")]
    meal_id: String,
    status: MealResponseStatusName,
    /// Mean of the readings in the 30 minutes before the meal.
    baseline: Option<f64>,
    /// Highest reading in (0, 180] minutes.
    peak: Option<f64>,
    /// Minutes from the meal to the peak.
    time_to_peak: Option<f64>,
    /// peak − baseline.
    delta_g: Option<f64>,
    /// Incremental area above the baseline over the first 120 minutes.
    iauc_120: Option<f64>,
    /// Incremental area above the baseline over the first 180 minutes.
    iauc_180: Option<f64>,
    /// Minutes until the trace is back at the baseline (searched to 240); null if it is not.
    return_to_baseline: Option<f64>,
    /// Readings in [0, 180] ÷ 37, at most 1.
    coverage: f64,
    /// Another meal was logged within 180 minutes after this one.
    overlap: bool,
    /// 0-100, higher is gentler: a NON-CLINICAL summary of delta_g, peak and
    /// return time, for comparing one's own meals; not a medical assessment.
    score: Option<f64>,
}

/// `{"status":"success","data":<meal response>}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MealResponseEnvelope {
    #[schema(example = "success")]
    status: String,
    data: MealResponseView,
}

/// Mean and sample SD (null for one meal).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SpreadView {
    mean: f64,
    sd: Option<f64>,
}

/// One food (name trimmed and lower-cased) or meal type.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct GroupStatsView {
    name: String,
    /// Meals with a complete response.
    n: usize,
    iauc_120: SpreadView,
    delta_g: SpreadView,
}

/// Groups of at least `min_meals` meals ranked by mean iauc_120 (gentlest
/// first), and the others.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct GroupsView {
    ranked: Vec<GroupStatsView>,
    not_enough_meals: Vec<GroupStatsView>,
}

/// Food insights and unlogged-meal suggestions of a window.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MealInsightsView {
    user_id: String,
    #[schema(value_type = String, format = DateTime)]
    start: String,
    #[schema(value_type = String, format = DateTime)]
    end: String,
    /// Fewest meals for a group to be ranked (3).
    min_meals: usize,
    /// Meals of the window with a complete response (the others are left out).
    meals: usize,
    foods: GroupsView,
    meal_types: GroupsView,
    /// Rises of the trace with no meal logged within 30 minutes of their start.
    unlogged_meals: Vec<SuggestionView>,
}

/// `{"status":"success","data":<insights>}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MealInsightsEnvelope {
    #[schema(example = "success")]
    status: String,
    data: MealInsightsView,
}
