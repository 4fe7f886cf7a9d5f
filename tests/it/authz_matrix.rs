//! Who may do what: every protected endpoint × every kind of caller, from one
//! table. A new endpoint must be added to `ENDPOINTS` (the OpenAPI check below
//! fails otherwise), and the expected status of every cell follows from its
//! action and the caller's kind in `allowed`.

use std::time::Duration;

use cgm_hub::auth::jwt::mint_hs256;
use cgm_hub::records::connections::Provider;
use cgm_hub::records::jobs::{NewJob, Trigger};
use cgm_hub::records::roles::Role;
use cgm_hub::records::shares::{Share, ShareRole};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

const SECRET: &str = "matrix-test-secret-0123456789abcdef";
const AUDIENCE: &str = "cgm-hub";
/// The patient whose data every request touches.
const PATIENT: &str = "pat";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    NoToken,
    Expired,
    ForgedSignature,
    AlgNone,
    WrongAudience,
    PatientOwn,
    PatientOther,
    CaregiverWithShare,
    CaregiverWithoutShare,
    CaregiverExpiredShare,
    Clinician,
    Service,
    Admin,
}

const CALLERS: [Caller; 13] = [
    Caller::NoToken,
    Caller::Expired,
    Caller::ForgedSignature,
    Caller::AlgNone,
    Caller::WrongAudience,
    Caller::PatientOwn,
    Caller::PatientOther,
    Caller::CaregiverWithShare,
    Caller::CaregiverWithoutShare,
    Caller::CaregiverExpiredShare,
    Caller::Clinician,
    Caller::Service,
    Caller::Admin,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Readings: the patient, their caregivers and clinicians, service, admin.
    Read,
    /// Everything else about a patient: the patient and admin only.
    Own,
    /// The audit trail: admins only.
    AdminOnly,
    /// Acting on what a reader is shown (acknowledging alerts): the patient,
    /// their caregivers and clinicians, admin; not a service.
    Follow,
    /// The caller's own readings and figures (`/api/v1` paths, no user in the
    /// path): whoever may read a patient's data reading their own, so any
    /// patient, a service and admin; not a caregiver or clinician (their token
    /// is not a patient's).
    SelfRead,
    /// Changing the caller's own data (`/api/v1` paths): any patient and admin.
    SelfOwn,
}

struct Endpoint {
    method: Method,
    /// Route template as in the OpenAPI document.
    template: &'static str,
    /// The concrete request.
    path: &'static str,
    body: Option<fn() -> Value>,
    access: Access,
    /// The status when allowed.
    ok: u16,
}

fn hours_ago(h: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::hours(h)).to_rfc3339()
}

fn hour_ago() -> String {
    hours_ago(1)
}

fn reading() -> Value {
    reading_json(chrono::Utc::now() - chrono::Duration::hours(1), 110)
}

/// A reading in the GlucoLens format.
fn v1_reading() -> Value {
    let at = chrono::Utc::now() - chrono::Duration::minutes(50);
    json!({"timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
           "value": 115, "source": "dexcom_g7"})
}

const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        method: Method::GET,
        template: "/api/bg/{userId}/latest",
        path: "/api/bg/pat/latest",
        body: None,
        access: Access::Read,
        ok: 200,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/bg/{userId}",
        path: "/api/bg/pat?limit=5",
        body: None,
        access: Access::Read,
        ok: 200,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/bg/{userId}/stats",
        path: "/api/bg/pat/stats",
        body: None,
        access: Access::Read,
        ok: 200,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/bg/{userId}/agp",
        path: "/api/bg/pat/agp",
        body: None,
        access: Access::Read,
        ok: 200,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/bg/{userId}/summary.fhir",
        path: "/api/bg/pat/summary.fhir",
        body: None,
        access: Access::Read,
        ok: 200,
    },
    Endpoint {
        method: Method::POST,
        template: "/api/bg/{userId}/readings",
        path: "/api/bg/pat/readings",
        body: Some(reading),
        access: Access::Own,
        ok: 201,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/users/{userId}/connections",
        path: "/api/users/pat/connections",
        body: None,
        access: Access::Own,
        ok: 200,
    },
    Endpoint {
        method: Method::DELETE,
        template: "/api/users/{userId}/connections/{provider}",
        path: "/api/users/pat/connections/dexcom",
        body: None,
        access: Access::Own,
        ok: 404,
    },
    Endpoint {
        method: Method::GET,
        template: "/oauth/authorize",
        path: "/oauth/authorize?user_id=pat",
        body: None,
        access: Access::Own,
        ok: 302,
    },
    Endpoint {
        method: Method::POST,
        template: "/oauth/refresh",
        path: "/oauth/refresh",
        body: Some(|| json!({"user_id": PATIENT})),
        access: Access::Own,
        ok: 404,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/users/{userId}/shares",
        path: "/api/users/pat/shares",
        body: None,
        access: Access::Own,
        ok: 200,
    },
    Endpoint {
        method: Method::POST,
        template: "/api/users/{userId}/shares",
        path: "/api/users/pat/shares",
        body: Some(|| json!({"grantee_id": "friend", "role": "caregiver"})),
        access: Access::Own,
        ok: 201,
    },
    Endpoint {
        method: Method::DELETE,
        template: "/api/users/{userId}/shares/{granteeId}",
        path: "/api/users/pat/shares/nobody",
        body: None,
        access: Access::Own,
        ok: 404,
    },
    Endpoint {
        method: Method::POST,
        template: "/api/bg/{userId}/sync",
        path: "/api/bg/pat/sync",
        body: None,
        access: Access::Own,
        // pat has no Dexcom connection.
        ok: 409,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/jobs/{jobId}",
        path: "/api/jobs/00000000-0000-4000-8000-00000000000a",
        body: None,
        access: Access::Own,
        ok: 200,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/tasks/{taskId}",
        // The sync job below answers as a task of kind `sync`.
        path: "/api/tasks/00000000-0000-4000-8000-00000000000a",
        body: None,
        access: Access::Own,
        ok: 200,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/users/{userId}/jobs",
        path: "/api/users/pat/jobs",
        body: None,
        access: Access::Own,
        ok: 200,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/users/{userId}/profile",
        path: "/api/users/pat/profile",
        body: None,
        access: Access::Own,
        ok: 200,
    },
    Endpoint {
        method: Method::PUT,
        template: "/api/users/{userId}/profile",
        path: "/api/users/pat/profile",
        body: Some(|| json!({"timezone": "Europe/Berlin"})),
        access: Access::Own,
        ok: 200,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/bg/{userId}/daily",
        path: "/api/bg/pat/daily",
        body: None,
        access: Access::Read,
        ok: 200,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/users/{userId}/alert-settings",
        path: "/api/users/pat/alert-settings",
        body: None,
        access: Access::Own,
        ok: 200,
    },
    Endpoint {
        method: Method::PUT,
        template: "/api/users/{userId}/alert-settings",
        path: "/api/users/pat/alert-settings",
        body: Some(|| json!({"low": 72})),
        access: Access::Own,
        ok: 200,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/users/{userId}/alerts",
        path: "/api/users/pat/alerts?limit=5",
        body: None,
        access: Access::Read,
        ok: 200,
    },
    Endpoint {
        method: Method::POST,
        template: "/api/users/{userId}/alerts/{alertId}/ack",
        path: "/api/users/pat/alerts/00000000-0000-7000-8000-00000000000a/ack",
        body: None,
        access: Access::Follow,
        // No such alert.
        ok: 404,
    },
    Endpoint {
        method: Method::POST,
        template: "/api/users/{userId}/notification-endpoints",
        path: "/api/users/pat/notification-endpoints",
        // Development (the matrix app's environment) allows a loopback URL.
        body: Some(|| {
            json!({"url": "http://127.0.0.1:9/hook", "secret": "matrix-secret-0123456789",
                   "events": ["alert.raised"]})
        }),
        access: Access::Own,
        ok: 201,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/users/{userId}/notification-endpoints",
        path: "/api/users/pat/notification-endpoints",
        body: None,
        access: Access::Own,
        ok: 200,
    },
    Endpoint {
        method: Method::DELETE,
        template: "/api/users/{userId}/notification-endpoints/{endpointId}",
        path: "/api/users/pat/notification-endpoints/00000000-0000-4000-8000-00000000000b",
        body: None,
        access: Access::Own,
        // No such endpoint.
        ok: 404,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/users/{userId}/stream",
        // Answered with headers at once (the stream itself is endless).
        path: "/api/users/pat/stream",
        body: None,
        access: Access::Read,
        ok: 200,
    },
    Endpoint {
        method: Method::POST,
        template: "/api/users/{userId}/stream-token",
        path: "/api/users/pat/stream-token",
        body: None,
        access: Access::Read,
        ok: 200,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/audit",
        path: "/api/audit?user_id=pat&limit=5",
        body: None,
        access: Access::AdminOnly,
        ok: 200,
    },
    // GlucoLens and Nutri paths: each caller acts on their own data (every
    // caller's subject has a reading, see `secured_app`).
    Endpoint {
        method: Method::POST,
        template: "/api/v1/glucose/readings",
        path: "/api/v1/glucose/readings",
        body: Some(v1_reading),
        access: Access::SelfOwn,
        ok: 201,
    },
    Endpoint {
        method: Method::POST,
        template: "/api/v1/glucose/bulk",
        path: "/api/v1/glucose/bulk",
        body: Some(|| json!({"readings": [v1_reading()]})),
        access: Access::SelfOwn,
        ok: 201,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/v1/glucose/readings",
        path: "/api/v1/glucose/readings?limit=5",
        body: None,
        access: Access::SelfRead,
        ok: 200,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/v1/glucose/latest",
        path: "/api/v1/glucose/latest",
        body: None,
        access: Access::SelfRead,
        ok: 200,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/v1/glucose/daily-summary",
        path: "/api/v1/glucose/daily-summary",
        body: None,
        access: Access::SelfRead,
        ok: 200,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/v1/dashboard/summary",
        path: "/api/v1/dashboard/summary",
        body: None,
        access: Access::SelfRead,
        ok: 200,
    },
    Endpoint {
        method: Method::POST,
        template: "/api/v1/integrations/cgm/connect",
        path: "/api/v1/integrations/cgm/connect",
        body: Some(|| json!({"provider": "dexcom"})),
        access: Access::SelfOwn,
        ok: 200,
    },
    Endpoint {
        method: Method::POST,
        template: "/api/v1/integrations/cgm/sync",
        path: "/api/v1/integrations/cgm/sync",
        body: None,
        access: Access::SelfOwn,
        // No caller has a Dexcom connection.
        ok: 409,
    },
    // The journal's GlucoLens and Nutri paths: the caller's own entries.
    Endpoint {
        method: Method::POST,
        template: "/api/v1/meals",
        path: "/api/v1/meals",
        body: Some(|| json!({"timestamp": hour_ago(), "carbs_grams": 30})),
        access: Access::SelfOwn,
        ok: 201,
    },
    Endpoint {
        method: Method::POST,
        template: "/api/v1/sleep",
        path: "/api/v1/sleep",
        body: Some(|| json!({"sleep_start": hours_ago(9), "sleep_end": hours_ago(1)})),
        access: Access::SelfOwn,
        ok: 201,
    },
    Endpoint {
        method: Method::POST,
        template: "/api/v1/activities",
        path: "/api/v1/activities",
        body: Some(
            || json!({"timestamp": hour_ago(), "activity_type": "walking", "duration_minutes": 30}),
        ),
        access: Access::SelfOwn,
        ok: 201,
    },
    Endpoint {
        method: Method::POST,
        template: "/api/v1/integrations/apple-health",
        path: "/api/v1/integrations/apple-health",
        // A new external id each time: something new is stored (201).
        body: Some(|| {
            json!({"glucose_readings": [v1_reading()],
                   "activities": [{"timestamp": hour_ago(), "activity_type": "running",
                                   "duration_minutes": 20,
                                   "external_id": uuid::Uuid::new_v4().to_string()}]})
        }),
        access: Access::SelfOwn,
        ok: 201,
    },
    // The journal: read like readings, written by the owner (or an admin).
    Endpoint {
        method: Method::POST,
        template: "/api/users/{userId}/meals",
        path: "/api/users/pat/meals",
        body: Some(|| json!({"timestamp": hour_ago(), "carbs_grams": 30})),
        access: Access::Own,
        ok: 201,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/users/{userId}/meals",
        path: "/api/users/pat/meals?limit=5",
        body: None,
        access: Access::Read,
        ok: 200,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/users/{userId}/meals/{entryId}",
        // No such entry.
        path: "/api/users/pat/meals/00000000-0000-4000-8000-00000000000c",
        body: None,
        access: Access::Read,
        ok: 404,
    },
    Endpoint {
        method: Method::PATCH,
        template: "/api/users/{userId}/meals/{entryId}",
        path: "/api/users/pat/meals/00000000-0000-4000-8000-00000000000c",
        body: Some(|| json!({})),
        access: Access::Own,
        ok: 404,
    },
    Endpoint {
        method: Method::DELETE,
        template: "/api/users/{userId}/meals/{entryId}",
        path: "/api/users/pat/meals/00000000-0000-4000-8000-00000000000c",
        body: None,
        access: Access::Own,
        ok: 404,
    },
    Endpoint {
        method: Method::POST,
        template: "/api/users/{userId}/sleep",
        path: "/api/users/pat/sleep",
        body: Some(|| json!({"sleep_start": hours_ago(8), "sleep_end": hour_ago()})),
        access: Access::Own,
        ok: 201,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/users/{userId}/sleep",
        path: "/api/users/pat/sleep?limit=5",
        body: None,
        access: Access::Read,
        ok: 200,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/users/{userId}/sleep/{entryId}",
        // No such entry.
        path: "/api/users/pat/sleep/00000000-0000-4000-8000-00000000000c",
        body: None,
        access: Access::Read,
        ok: 404,
    },
    Endpoint {
        method: Method::PATCH,
        template: "/api/users/{userId}/sleep/{entryId}",
        path: "/api/users/pat/sleep/00000000-0000-4000-8000-00000000000c",
        body: Some(|| json!({})),
        access: Access::Own,
        ok: 404,
    },
    Endpoint {
        method: Method::DELETE,
        template: "/api/users/{userId}/sleep/{entryId}",
        path: "/api/users/pat/sleep/00000000-0000-4000-8000-00000000000c",
        body: None,
        access: Access::Own,
        ok: 404,
    },
    Endpoint {
        method: Method::POST,
        template: "/api/users/{userId}/activities",
        path: "/api/users/pat/activities",
        body: Some(
            || json!({"timestamp": hour_ago(), "activity_type": "walking", "duration_minutes": 20}),
        ),
        access: Access::Own,
        ok: 201,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/users/{userId}/activities",
        path: "/api/users/pat/activities?limit=5",
        body: None,
        access: Access::Read,
        ok: 200,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/users/{userId}/activities/{entryId}",
        // No such entry.
        path: "/api/users/pat/activities/00000000-0000-4000-8000-00000000000c",
        body: None,
        access: Access::Read,
        ok: 404,
    },
    Endpoint {
        method: Method::PATCH,
        template: "/api/users/{userId}/activities/{entryId}",
        path: "/api/users/pat/activities/00000000-0000-4000-8000-00000000000c",
        body: Some(|| json!({})),
        access: Access::Own,
        ok: 404,
    },
    Endpoint {
        method: Method::DELETE,
        template: "/api/users/{userId}/activities/{entryId}",
        path: "/api/users/pat/activities/00000000-0000-4000-8000-00000000000c",
        body: None,
        access: Access::Own,
        ok: 404,
    },
    // Invitations: admins only; the caller is the inviter (no user in the path).
    Endpoint {
        method: Method::POST,
        template: "/api/v1/auth/invitations",
        path: "/api/v1/auth/invitations",
        body: Some(|| json!({"email": "invitee@example.com"})),
        access: Access::AdminOnly,
        ok: 201,
    },
    // Meal responses and insights: read like the journal.
    Endpoint {
        method: Method::GET,
        template: "/api/users/{userId}/meals/{entryId}/response",
        // No such meal.
        path: "/api/users/pat/meals/00000000-0000-4000-8000-00000000000c/response",
        body: None,
        access: Access::Read,
        ok: 404,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/users/{userId}/meals/insights",
        path: "/api/users/pat/meals/insights",
        body: None,
        access: Access::Read,
        ok: 200,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/v1/glucose/meal-response/{mealId}",
        path: "/api/v1/glucose/meal-response/00000000-0000-4000-8000-00000000000c",
        body: None,
        access: Access::SelfRead,
        ok: 404,
    },
    Endpoint {
        method: Method::GET,
        template: "/api/v1/glucose/insights",
        path: "/api/v1/glucose/insights",
        body: None,
        access: Access::SelfRead,
        ok: 200,
    },
];

/// Routes that need no token.
const PUBLIC: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/metrics"),
    ("get", "/oauth/callback"),
    // Signed instead (tests/it/webhooks.rs).
    ("post", "/api/bg/{userId}/webhook"),
    // Built-in accounts: credentials or a refresh token in the body, or a
    // browser session's refresh cookie with its CSRF header (tests/it/accounts.rs).
    ("post", "/api/v1/auth/register"),
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/refresh"),
    ("post", "/api/v1/auth/logout"),
    // A mailed single-use token in the body instead (tests/it/account_mail.rs).
    ("post", "/api/v1/auth/password-reset"),
    ("post", "/api/v1/auth/password-reset/confirm"),
    ("post", "/api/v1/auth/verify-email"),
];

/// Routes about the caller alone, whatever their roles (no user in the path, so
/// no cell of the table): any valid token reads its own account, none another's
/// (tests/it/accounts.rs).
const SELF_ONLY: &[(&str, &str)] = &[
    ("get", "/api/v1/auth/me"),
    ("post", "/api/v1/auth/verify-email/resend"),
];

/// The one rule the table is checked against.
fn expected(caller: Caller, e: &Endpoint) -> u16 {
    use Caller::*;
    match caller {
        NoToken | Expired | ForgedSignature | AlgNone | WrongAudience => 401,
        Admin => e.ok,
        _ if e.access == Access::AdminOnly => 403,
        PatientOwn => e.ok,
        CaregiverWithShare | Clinician | Service if e.access == Access::Read => e.ok,
        CaregiverWithShare | Clinician if e.access == Access::Follow => e.ok,
        PatientOther if matches!(e.access, Access::SelfRead | Access::SelfOwn) => e.ok,
        Service if e.access == Access::SelfRead => e.ok,
        _ => 403,
    }
}

fn token(caller: Caller) -> Option<String> {
    let mint = |secret: &str, sub: &str, role: Role, ttl: u64, aud: &str| {
        mint_hs256(
            secret,
            sub,
            &[role],
            Duration::from_secs(ttl),
            None,
            Some(aud),
        )
        .unwrap()
    };
    use Caller::*;
    Some(match caller {
        NoToken => return None,
        Expired => {
            // Minted already expired beyond the 30 s leeway: hand-made claims.
            let header = base64url(br#"{"alg":"HS256","typ":"JWT"}"#);
            let claims = json!({"sub": PATIENT, "roles": ["patient"], "aud": AUDIENCE,
                "exp": chrono::Utc::now().timestamp() - 600});
            let unsigned = format!("{header}.{}", base64url(claims.to_string().as_bytes()));
            format!("{unsigned}.{}", hs256(SECRET, &unsigned))
        }
        ForgedSignature => mint(
            "some-other-secret-0123456789abcdef",
            PATIENT,
            Role::Patient,
            600,
            AUDIENCE,
        ),
        AlgNone => {
            let header = base64url(br#"{"alg":"none","typ":"JWT"}"#);
            let claims = json!({"sub": PATIENT, "roles": ["admin"], "aud": AUDIENCE,
                "exp": chrono::Utc::now().timestamp() + 600});
            format!("{header}.{}.", base64url(claims.to_string().as_bytes()))
        }
        WrongAudience => mint(SECRET, PATIENT, Role::Patient, 600, "someone-else"),
        PatientOwn => mint(SECRET, PATIENT, Role::Patient, 600, AUDIENCE),
        PatientOther => mint(SECRET, "other", Role::Patient, 600, AUDIENCE),
        CaregiverWithShare => mint(SECRET, "mom", Role::Caregiver, 600, AUDIENCE),
        CaregiverWithoutShare => mint(SECRET, "aunt", Role::Caregiver, 600, AUDIENCE),
        CaregiverExpiredShare => mint(SECRET, "uncle", Role::Caregiver, 600, AUDIENCE),
        Clinician => mint(SECRET, "doc", Role::Clinician, 600, AUDIENCE),
        Service => mint(SECRET, "ml-pipeline", Role::Service, 600, AUDIENCE),
        Admin => mint(SECRET, "ops", Role::Admin, 600, AUDIENCE),
    })
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn hs256(secret: &str, message: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::HS256).unwrap()
}

async fn secured_app(sim: &cgm_hub::simulator::dexcom::RunningSimulator) -> TestApp {
    let app = dexcom_app(
        sim,
        &[
            ("AUTH_DISABLED", "false"),
            ("AUTH_JWT_SECRET", SECRET),
            ("AUTH_AUDIENCE", AUDIENCE),
            ("DEXCOM_BACKFILL_DAYS", "0"),
        ],
    )
    .await;
    let now = chrono::Utc::now();
    let share = |grantee: &str, role, expires_at| Share {
        patient_id: user(PATIENT),
        grantee_id: user(grantee),
        role,
        created_at: now,
        expires_at,
    };
    for s in [
        share("mom", ShareRole::Caregiver, None),
        share(
            "doc",
            ShareRole::Clinician,
            Some(now + chrono::Duration::days(1)),
        ),
        share(
            "uncle",
            ShareRole::Caregiver,
            Some(now - chrono::Duration::seconds(1)),
        ),
    ] {
        app.store.put_share(s, 100).await.unwrap();
    }
    // A reading for every caller's own subject too (the `/api/v1` paths).
    let subjects = [
        PATIENT,
        "other",
        "mom",
        "aunt",
        "uncle",
        "doc",
        "ml-pipeline",
        "ops",
    ];
    app.store
        .upsert_readings(subjects.iter().map(|s| cgm(s, slot(1), 120)).collect())
        .await
        .unwrap();
    // The job of `GET /api/jobs/{jobId}` (pat has no connection, so it never runs).
    let job = NewJob {
        id: uuid::Uuid::parse_str("00000000-0000-4000-8000-00000000000a").unwrap(),
        ..NewJob::new(user(PATIENT), Provider::Dexcom, Trigger::Manual, None, now)
    };
    app.store.create_job(job, None).await.unwrap();
    app
}

#[tokio::test]
async fn every_endpoint_for_every_kind_of_caller() {
    let sim = simulator().await;
    let app = secured_app(&sim).await;
    let client = no_redirects();
    let mut failures = Vec::new();
    for e in ENDPOINTS {
        for caller in CALLERS {
            let mut request = client.request(e.method.clone(), app.url(e.path));
            if let Some(t) = token(caller) {
                request = request.bearer_auth(t);
            }
            if let Some(body) = e.body {
                request = request.json(&body());
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let want = expected(caller, e);
            if status != want {
                failures.push(format!(
                    "{} {} as {caller:?}: {status}, want {want}",
                    e.method, e.path
                ));
                continue;
            }
            if status == 401 || status == 403 {
                let body: Value = response.json().await.unwrap();
                let code = if status == 401 {
                    "AUTH_ERROR"
                } else {
                    "FORBIDDEN"
                };
                if body["error"]["code"] != code {
                    failures.push(format!("{} {} as {caller:?}: {body}", e.method, e.path));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_documented_route_is_in_the_table() {
    use utoipa::OpenApi;
    let doc = cgm_hub::api::ApiDoc::openapi();
    let value = serde_json::to_value(&doc).unwrap();
    let mut missing = Vec::new();
    for (path, item) in value["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let covered = ENDPOINTS
                .iter()
                .any(|e| e.template == path && e.method.as_str().eq_ignore_ascii_case(method))
                || PUBLIC.contains(&(method.as_str(), path.as_str()))
                || SELF_ONLY.contains(&(method.as_str(), path.as_str()));
            if !covered {
                missing.push(format!("{method} {path}"));
            }
        }
    }
    assert!(missing.is_empty(), "add these to ENDPOINTS: {missing:?}");
    assert!(value["components"]["securitySchemes"]["bearer"].is_object());
    // Browser sessions: the refresh cookie and the CSRF header, on refresh and logout.
    let schemes = &value["components"]["securitySchemes"];
    assert_eq!(schemes["refresh_cookie"]["type"], "apiKey", "{schemes}");
    assert_eq!(schemes["refresh_cookie"]["in"], "cookie");
    assert_eq!(schemes["refresh_cookie"]["name"], "refresh_token");
    assert_eq!(schemes["csrf_header"]["in"], "header");
    assert_eq!(schemes["csrf_header"]["name"], "X-CSRF-Token");
    for op in ["refresh", "logout"] {
        let security = &value["paths"][format!("/api/v1/auth/{op}")]["post"]["security"];
        assert_eq!(
            security,
            &serde_json::json!([{}, {"refresh_cookie": [], "csrf_header": []}]),
            "{op}"
        );
    }
}

#[tokio::test]
async fn revoking_a_share_takes_effect_on_the_next_request() {
    let sim = simulator().await;
    let app = secured_app(&sim).await;
    let mom = token(Caller::CaregiverWithShare).unwrap();
    let patient = token(Caller::PatientOwn).unwrap();
    let read = || {
        app.client
            .get(app.url("/api/bg/pat/latest"))
            .bearer_auth(&mom)
            .send()
    };
    assert_eq!(read().await.unwrap().status(), 200);
    let r = app
        .client
        .delete(app.url("/api/users/pat/shares/mom"))
        .bearer_auth(&patient)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    expect_error(read().await.unwrap(), 403, "FORBIDDEN").await;
    // Granting again through the API restores it.
    let r = app
        .client
        .post(app.url("/api/users/pat/shares"))
        .bearer_auth(&patient)
        .json(&json!({"grantee_id": "mom", "role": "caregiver",
                      "expires_at": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["active"], true);
    assert_eq!(read().await.unwrap().status(), 200);
}

#[tokio::test]
async fn bad_shares_are_rejected_with_pointers() {
    let sim = simulator().await;
    let app = secured_app(&sim).await;
    let patient = token(Caller::PatientOwn).unwrap();
    let post = |body: Value| {
        app.client
            .post(app.url("/api/users/pat/shares"))
            .bearer_auth(&patient)
            .json(&body)
            .send()
    };
    let error = expect_error(
        post(json!({"grantee_id": "pat", "role": "friend", "expires_at": "2001-01-01T00:00:00Z"}))
            .await
            .unwrap(),
        422,
        "VALIDATION_ERROR",
    )
    .await;
    let pointers: Vec<&str> = error["details"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/grantee_id", "/role", "/expires_at"]);
    expect_error(
        post(json!({"grantee_id": "mom", "role": "caregiver", "extra": 1}))
            .await
            .unwrap(),
        400,
        "VALIDATION_ERROR",
    )
    .await;
}

#[test]
fn the_cli_mints_a_token_the_service_accepts() {
    let here = std::path::Path::new(".");
    let secret = [("AUTH_JWT_SECRET", SECRET)];
    let mint = [
        "token",
        "mint",
        "--sub",
        "pat",
        "--roles",
        "patient,caregiver",
        "--ttl",
        "5m",
    ];
    let out = run_cgm_hub(here, &mint, &secret);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let auth = cgm_hub::auth::jwt::Authenticator::new(cgm_hub::auth::jwt::AuthConfig {
        hs256_secret: Some(cgm_hub::secret::Secret::new(SECRET.into())),
        ..Default::default()
    });
    let principal = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(auth.authenticate(token.trim()))
        .unwrap();
    assert_eq!(principal.user_id.as_str(), "pat");
    assert_eq!(principal.roles, [Role::Patient, Role::Caregiver]);
    let refused = run_cgm_hub(
        here,
        &["token", "mint", "--sub", "pat", "--roles", "superuser"],
        &secret,
    );
    assert_eq!(refused.status.code(), Some(2));
}

#[tokio::test]
async fn rate_limits_count_down_then_refuse_with_retry_after() {
    let app = TestApp::spawn_with(&[
        ("AUTH_DISABLED", "false"),
        ("AUTH_JWT_SECRET", SECRET),
        ("AUTH_AUDIENCE", AUDIENCE),
        ("RATE_LIMIT_USER_PER_MINUTE", "3"),
        ("RATE_LIMIT_ANONYMOUS_PER_MINUTE", "2"),
    ])
    .await;
    let patient = token(Caller::PatientOwn).unwrap();
    let get = |token: Option<String>| {
        let mut r = app.client.get(app.url("/api/users/pat/shares"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let header = |r: &reqwest::Response, name: &str| -> u64 {
        r.headers()[name].to_str().unwrap().parse().unwrap()
    };
    for remaining in [2, 1, 0] {
        let r = get(Some(patient.clone())).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-ratelimit-limit"), 3);
        assert_eq!(header(&r, "x-ratelimit-remaining"), remaining);
        assert!(header(&r, "x-ratelimit-reset") <= 60);
    }
    let refused = get(Some(patient.clone())).await.unwrap();
    assert_eq!(
        header(&refused, "retry-after"),
        20,
        "one request refills every 20 s"
    );
    expect_error(refused, 429, "RATE_LIMIT_EXCEEDED").await;
    // Another user has an allowance of their own.
    let admin = token(Caller::Admin).unwrap();
    assert_eq!(get(Some(admin)).await.unwrap().status(), 200);

    // Without a valid token, the client IP's (smaller) allowance is counted,
    // so guessing tokens is limited as well.
    let r = get(None).await.unwrap();
    assert_eq!(header(&r, "x-ratelimit-limit"), 2);
    expect_error(r, 401, "AUTH_ERROR").await;
    expect_error(get(None).await.unwrap(), 401, "AUTH_ERROR").await;
    let r = get(Some("not-a-jwt".into())).await.unwrap();
    assert!(r.headers().contains_key("retry-after"));
    expect_error(r, 429, "RATE_LIMIT_EXCEEDED").await;
    // The OAuth callback takes no token and is limited per IP too.
    let r = app.get("/oauth/callback?state=x&code=y").await;
    expect_error(r, 429, "RATE_LIMIT_EXCEEDED").await;
    // Health checks are never limited.
    assert_eq!(app.get("/health").await.status(), 200);
}

#[tokio::test]
async fn every_access_is_audited_without_values_or_tokens() {
    let sim = simulator().await;
    let app = secured_app(&sim).await;
    let patient = token(Caller::PatientOwn).unwrap();
    let mom = token(Caller::CaregiverWithShare).unwrap();
    let stranger = token(Caller::CaregiverWithoutShare).unwrap();
    let admin = token(Caller::Admin).unwrap();
    let send = |method: Method, path: &str, token: &str, body: Option<Value>| {
        let mut r = app.client.request(method, app.url(path)).bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send()
    };
    let mut request_ids = Vec::new();
    let share = json!({"grantee_id": "aunt", "role": "caregiver"});
    for (method, path, token, body, status) in [
        (Method::GET, "/api/bg/pat/latest", &patient, None, 200),
        (
            Method::POST,
            "/api/bg/pat/readings",
            &patient,
            Some(reading()),
            201,
        ),
        (Method::GET, "/api/bg/pat?limit=2", &mom, None, 200),
        (Method::GET, "/api/bg/pat/latest", &stranger, None, 403),
        (
            Method::POST,
            "/api/users/pat/shares",
            &patient,
            Some(share),
            201,
        ),
        (
            Method::GET,
            "/api/users/pat/connections",
            &patient,
            None,
            200,
        ),
    ] {
        let r = send(method, path, token, body).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
        request_ids.push(r.headers()["x-request-id"].to_str().unwrap().to_owned());
    }
    // The trail is written in the background: wait for all six.
    let audit = |query: String| {
        let send = &send;
        let admin = &admin;
        async move {
            let body: Value = send(Method::GET, &query, admin, None)
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["data"].clone()
        }
    };
    let entries = eventually_ok("six audit entries for pat", Duration::from_secs(10), || {
        let audit = &audit;
        async move {
            let entries = audit("/api/audit?user_id=pat".into()).await["entries"]
                .as_array()
                .unwrap()
                .clone();
            if entries.len() >= 6 {
                Ok(entries)
            } else {
                Err(format!("{} entries: {entries:?}", entries.len()))
            }
        }
    })
    .await;
    let seen: Vec<(String, String, String, u64)> = entries
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
                e["decision"].as_str().unwrap().to_owned(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<_> = [
        ("pat", "read_readings", "allowed", 200),
        ("pat", "write_readings", "allowed", 201),
        ("mom", "read_readings", "allowed", 200),
        ("aunt", "read_readings", "denied", 403),
        ("pat", "manage_shares", "allowed", 201),
        ("pat", "read_connections", "allowed", 200),
    ]
    .iter()
    .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), *d))
    .collect();
    assert_eq!(seen, want);
    for (entry, id) in entries.iter().zip(&request_ids) {
        assert_eq!(entry["request_id"], id.as_str());
        assert_eq!(entry["target_user"], "pat");
    }
    let text = serde_json::to_string(&entries).unwrap();
    for secret in [&patient, &mom, &stranger, &admin] {
        assert!(!text.contains(secret.as_str()), "a token is in the trail");
    }
    // Only these fields: no glucose value (nor anything else) can ride along.
    let fields: std::collections::BTreeSet<&str> = entries
        .iter()
        .flat_map(|e| e.as_object().unwrap().keys().map(String::as_str))
        .collect();
    let expected_fields = [
        "action",
        "actor",
        "actor_roles",
        "at",
        "decision",
        "request_id",
        "status",
        "target_user",
    ];
    assert_eq!(fields, expected_fields.into_iter().collect());

    // Paging two at a time; a cursor not from this endpoint is refused.
    let page = audit("/api/audit?user_id=pat&limit=2".into()).await;
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let next = audit(format!("/api/audit?user_id=pat&limit=2&cursor={cursor}")).await;
    assert_eq!(next["entries"][0]["actor"], "mom");
    let r = send(Method::GET, "/api/audit?cursor=garbage", &admin, None)
        .await
        .unwrap();
    expect_error(r, 400, "VALIDATION_ERROR").await;
}
