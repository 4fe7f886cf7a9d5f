//! The one list of every environment variable this build reads: its default, whether
//! it is a secret, and what it means. Parsing (`Settings::from_vars`) takes defaults
//! from here, and `.env.example` and `docs/configuration.md` are generated from it
//! (`cgm-hub config reference`), so the three cannot drift apart.

/// Where a variable belongs; the order of the variants is the order of the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    Process,
    Storage,
    Events,
    RateLimits,
    ApiLimits,
    Security,
    Dexcom,
    Sync,
    Demo,
}

impl Group {
    pub const ALL: [Group; 9] = [
        Group::Process,
        Group::Storage,
        Group::Events,
        Group::RateLimits,
        Group::ApiLimits,
        Group::Security,
        Group::Dexcom,
        Group::Sync,
        Group::Demo,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Group::Process => "process",
            Group::Storage => "storage",
            Group::Events => "events",
            Group::RateLimits => "rate limits",
            Group::ApiLimits => "API limits and validation",
            Group::Security => "security",
            Group::Dexcom => "Dexcom",
            Group::Sync => "sync engine",
            Group::Demo => "demo",
        }
    }
}

/// One environment variable.
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    pub name: &'static str,
    /// The value used when the variable is unset or empty ("" means none).
    pub default: &'static str,
    pub group: Group,
    /// Never printed (`config check` shows `[redacted]`).
    pub secret: bool,
    /// What it means, in one or a few sentences of plain text.
    pub help: &'static str,
}

const fn var(
    group: Group,
    name: &'static str,
    default: &'static str,
    help: &'static str,
) -> Variable {
    Variable {
        name,
        default,
        group,
        secret: false,
        help,
    }
}

const fn secret(group: Group, name: &'static str, help: &'static str) -> Variable {
    Variable {
        name,
        default: "",
        group,
        secret: true,
        help,
    }
}

use Group::*;

/// Every variable this build reads, grouped in reference order.
pub const VARIABLES: &[Variable] = &[
    var(
        Process,
        "SERVICE_ENV",
        "development",
        "development | staging | production. Staging and production require TOKEN_ENCRYPTION_KEY; \
         refuse DEMO, AUTH_DISABLED, an AUTH_JWT_SECRET or WEBHOOK_SIGNING_SECRET shorter than \
         32 bytes, an http:// AUTH_JWKS_URL, and AUTH_JWKS_URL without AUTH_ISSUER and \
         AUTH_AUDIENCE; production talks to Dexcom over TLS only.",
    ),
    var(
        Process,
        "LOG_LEVEL",
        "INFO",
        "DEBUG | INFO | WARNING | ERROR | CRITICAL",
    ),
    var(
        Process,
        "LOG_FORMAT",
        "json",
        "json (one JSON line per event, one access-log line per request) | pretty",
    ),
    var(Process, "BIND_ADDR", "0.0.0.0:5001", "Listen address."),
    var(
        Process,
        "PORT",
        "",
        "PORT alone also works (binds 0.0.0.0:PORT) when BIND_ADDR is unset.",
    ),
    var(
        Process,
        "PUBLIC_BASE_URL",
        "",
        "Base of absolute links in responses (pagination), e.g. https://cgm.example.org; \
         unset: taken from the request's Host. Set it behind a proxy and in production.",
    ),
    var(
        Process,
        "TLS_CERT_PATH",
        "",
        "Serve HTTPS (rustls; TLS 1.2 and 1.3) with this PEM certificate chain and \
         TLS_KEY_PATH (both or neither); responses then carry Strict-Transport-Security. \
         Or run behind a TLS-terminating proxy.",
    ),
    var(
        Process,
        "TLS_KEY_PATH",
        "",
        "The PEM private key of TLS_CERT_PATH.",
    ),
    var(
        Process,
        "CORS_ALLOWED_ORIGINS",
        "",
        "Browser origins allowed to call the API, comma-separated (empty: no CORS headers).",
    ),
    var(
        Process,
        "SHUTDOWN_TIMEOUT_SECONDS",
        "25",
        "After SIGTERM or SIGINT: how long in-flight requests, sync jobs, queued audit \
         entries and token refreshes get to finish.",
    ),
    var(
        Storage,
        "STORAGE_BACKEND",
        "sqlite",
        "sqlite (embedded, one process per file) | postgres | dynamodb (docs/backends.md).",
    ),
    var(
        Storage,
        "SQLITE_PATH",
        "./data/cgm-hub.db",
        "The SQLite file, created with its folder (readable by the service's user only).",
    ),
    var(
        Storage,
        "SQLITE_SYNCHRONOUS",
        "full",
        "full: every acknowledged write survives power loss | normal: survives a process crash.",
    ),
    secret(
        Storage,
        "DATABASE_URL",
        "PostgreSQL URL (postgres://user:pass@host:5432/db), required with \
         STORAGE_BACKEND=postgres. May hold a password: never printed.",
    ),
    var(
        Storage,
        "DATABASE_MAX_CONNECTIONS",
        "10",
        "PostgreSQL connection pool size per instance.",
    ),
    var(
        Storage,
        "DYNAMODB_ENDPOINT",
        "",
        "DynamoDB endpoint for a local server such as moto (http://127.0.0.1:8000); unset: \
         AWS itself, with credentials from the AWS default chain. Tables are created when \
         absent (docs/dynamodb.md).",
    ),
    var(
        Storage,
        "AWS_REGION",
        "us-east-1",
        "AWS region of the DynamoDB tables.",
    ),
    var(
        Storage,
        "AWS_ACCESS_KEY_ID",
        "",
        "With AWS_SECRET_ACCESS_KEY (both or neither): fixed credentials of the DynamoDB \
         client, e.g. an emulator's; unset: the AWS default chain (profile, container or \
         instance role).",
    ),
    secret(
        Storage,
        "AWS_SECRET_ACCESS_KEY",
        "The secret key of AWS_ACCESS_KEY_ID. Never printed.",
    ),
    secret(
        Storage,
        "AWS_SESSION_TOKEN",
        "The session token of temporary AWS credentials (STS), only with \
         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. Never printed.",
    ),
    var(
        Storage,
        "DYNAMODB_TABLE",
        "bg_readings",
        "DynamoDB table of readings.",
    ),
    var(
        Storage,
        "DYNAMODB_USER_TOKENS_TABLE",
        "user_tokens",
        "DynamoDB table of connections and their sealed OAuth tokens.",
    ),
    var(
        Storage,
        "DYNAMODB_SYNC_JOBS_TABLE",
        "sync_jobs",
        "DynamoDB table of sync jobs.",
    ),
    var(
        Storage,
        "DYNAMODB_AUX_TABLE",
        "cgm_hub",
        "DynamoDB table of shares, audit, OAuth states, leases, the webhook inbox and the \
         event outbox.",
    ),
    var(
        Events,
        "EVENT_BUS",
        "memory",
        "memory (in-process) | rabbitmq (a durable topic exchange and a durable queue bound \
         to every routing key; events reach the broker through the store's outbox).",
    ),
    secret(
        Events,
        "RABBITMQ_URL",
        "amqp://user:pass@host:5672/%2f, required with EVENT_BUS=rabbitmq. Never printed.",
    ),
    var(
        Events,
        "RABBITMQ_EXCHANGE",
        "bg_events",
        "The durable topic exchange events go to.",
    ),
    var(
        Events,
        "RABBITMQ_QUEUE",
        "bg_readings",
        "The durable queue bound to every event type.",
    ),
    var(
        Events,
        "ALERT_STALE_CHECK_SECONDS",
        "60",
        "How often (1-3600 s) every instance looks for users whose readings stopped and raises \
         their `stale` alert (docs/alerts.md): an alert comes at most this long after the \
         user's `stale_minutes` ran out.",
    ),
    var(
        Events,
        "NOTIFICATION_ENDPOINTS_MAX_PER_USER",
        "10",
        "Notification endpoints (signed outbound webhooks for alert events) one user may \
         hold; one more is 409 CONFLICT (docs/alerts.md).",
    ),
    var(
        Events,
        "NOTIFICATION_TIMEOUT_SECONDS",
        "10",
        "One delivery to a notification endpoint, connect to last byte; a receiver that \
         has not answered by then counts as failed and is retried.",
    ),
    var(
        Events,
        "NOTIFICATION_WORKERS",
        "8",
        "Deliveries to notification endpoints in flight at once on this instance (one \
         per endpoint at a time, so a slow receiver holds at most one).",
    ),
    var(
        Events,
        "NOTIFICATION_RETRY_DELAYS",
        "10s,30s,1m,5m,15m,30m,1h,2h,4h,8h",
        "Delays after failed delivery attempts 1, 2, ... (units ms, s, m, h; the last \
         repeats), until NOTIFICATION_GIVE_UP_HOURS.",
    ),
    var(
        Events,
        "NOTIFICATION_GIVE_UP_HOURS",
        "24",
        "A delivery still failing this long after it was queued is given up (counted in \
         notification_deliveries_total{outcome=\"gave_up\"} and logged).",
    ),
    var(
        Events,
        "STREAM_KEEPALIVE_SECONDS",
        "15",
        "1-15: a live stream (GET /api/users/{id}/stream) sends a `: keep-alive` comment \
         line at least this often, so proxies keep it open.",
    ),
    var(
        Events,
        "STREAM_MAX_PER_USER",
        "20",
        "Open live streams of one user on one instance; one more is 429 RATE_LIMITED.",
    ),
    var(
        Events,
        "STREAM_MAX_TOTAL",
        "20000",
        "Open live streams on one instance; one more is 503 SERVICE_UNAVAILABLE. Each \
         stream holds a connection: keep HTTP_MAX_CONNECTIONS and the open-files limit above it.",
    ),
    var(
        Events,
        "STREAM_BUFFER_EVENTS",
        "256",
        "Events queued for one live stream whose client reads too slowly; when it is full \
         the stream is closed (the client reconnects with Last-Event-ID and is replayed \
         what it missed). Ingest and other streams never wait for it.",
    ),
    var(
        Events,
        "STREAM_TOKEN_TTL_SECONDS",
        "300",
        "10-3600: lifetime of a stream token (POST /api/users/{id}/stream-token), which a \
         browser's EventSource passes as ?access_token= on that user's stream only.",
    ),
    var(
        RateLimits,
        "RATE_LIMIT_ANONYMOUS_PER_MINUTE",
        "100",
        "Requests per minute per client IP without a (valid) token. Responses carry \
         X-RateLimit-Limit/-Remaining/-Reset; over the limit: 429 (docs/rate-limits.md).",
    ),
    var(
        RateLimits,
        "RATE_LIMIT_USER_PER_MINUTE",
        "300",
        "Requests per minute per authenticated user.",
    ),
    var(
        RateLimits,
        "RATE_LIMIT_WEBHOOK_PER_MINUTE",
        "1000",
        "Requests per minute per client IP on webhooks.",
    ),
    var(
        RateLimits,
        "TRUSTED_PROXIES",
        "",
        "Networks of the proxies in front of cgm-hub, comma-separated CIDRs (e.g. \
         10.0.0.0/8,fd00::/8). X-Forwarded-For is read only when the TCP peer is in one of \
         them (empty: never). Required when TRUSTED_PROXY_HOPS is above 0.",
    ),
    var(
        RateLimits,
        "TRUSTED_PROXY_HOPS",
        "0",
        "At most this many X-Forwarded-For entries are walked from the right, each only \
         while the one after it is a trusted proxy (0: use the peer address; needs \
         TRUSTED_PROXIES). Behind one load balancer: 1.",
    ),
    var(
        ApiLimits,
        "MAX_BODY_BYTES",
        "16777216",
        "Largest request body, bytes (a 10,000-reading batch is about 2.5 MB).",
    ),
    var(
        ApiLimits,
        "HTTP_HEADER_READ_TIMEOUT_SECONDS",
        "10",
        "A request's headers must arrive within this many seconds of the connection being \
         ready for a request, else the connection is closed (slow-header attacks). It is also \
         how long an idle keep-alive connection is kept.",
    ),
    var(
        ApiLimits,
        "HTTP_BODY_READ_TIMEOUT_SECONDS",
        "30",
        "A request body must arrive in full within this many seconds (408 otherwise).",
    ),
    var(
        ApiLimits,
        "HTTP_MAX_CONNECTIONS",
        "2048",
        "Open client connections at most, per process; one more is closed at once.",
    ),
    var(
        ApiLimits,
        "WEBHOOK_MAX_BODY_BYTES",
        "1048576",
        "Largest webhook body, bytes; read only after the signature headers passed their checks.",
    ),
    var(
        ApiLimits,
        "WEBHOOK_BODY_TIMEOUT_SECONDS",
        "10",
        "A webhook body must arrive in full within this many seconds (408 otherwise).",
    ),
    var(
        ApiLimits,
        "WEBHOOK_MAX_CONCURRENT_BODIES",
        "64",
        "Webhook bodies read at once, per process; one more gets 429 with Retry-After.",
    ),
    var(
        ApiLimits,
        "MAX_BATCH_RECORDS",
        "10000",
        "Most readings in one bulk request.",
    ),
    var(
        ApiLimits,
        "WRITE_QUOTA_READINGS_PER_HOUR",
        "100000",
        "Readings one user id may write per hour through POST /api/bg/{userId}/readings, per \
         process (a CGM sends 12 to 60 an hour; a 30-day import at one a minute is 43,200). A \
         batch that would cross it is refused whole: 429 with Retry-After.",
    ),
    var(
        ApiLimits,
        "READING_MAX_AGE_YEARS",
        "10",
        "Readings older than this many calendar years are rejected.",
    ),
    var(
        ApiLimits,
        "SHARES_MAX_PER_PATIENT",
        "100",
        "Most grants one patient may hold (expired ones count until revoked); one more is \
         409 CONFLICT, replacing an existing grantee's grant is always allowed.",
    ),
    var(
        Security,
        "AUTH_DISABLED",
        "false",
        "Development only: every request acts as admin (dev-admin). Refused unless \
         SERVICE_ENV=development.",
    ),
    secret(
        Security,
        "AUTH_JWT_SECRET",
        "Verifies HS256 bearer JWTs (claims: sub = user id, roles, exp); at least 32 bytes in \
         staging and production (`openssl rand -hex 32`). For development, mint a token with \
         `cgm-hub token mint --sub ID --roles patient`.",
    ),
    var(
        Security,
        "AUTH_JWKS_URL",
        "",
        "Verifies RS256/ES256 bearer JWTs with the keys of this JWKS document (cached; \
         refetched on an unknown kid). With AUTH_JWT_SECRET, either kind is accepted. In \
         staging and production: https:// only, and AUTH_ISSUER and AUTH_AUDIENCE are required.",
    ),
    var(
        Security,
        "AUTH_ISSUER",
        "",
        "The JWT `iss` required, when set (required with AUTH_JWKS_URL in staging and production).",
    ),
    var(
        Security,
        "AUTH_AUDIENCE",
        "",
        "The JWT `aud` required, when set (required with AUTH_JWKS_URL in staging and production).",
    ),
    secret(
        Security,
        "TOKEN_ENCRYPTION_KEY",
        "Base64 of 32 bytes (`openssl rand -base64 32`); seals OAuth tokens at rest with \
         AES-256-GCM. Required in staging and production; in development a key is generated \
         into token-encryption.key next to the SQLite file. Rotation: docs/dexcom.md.",
    ),
    secret(
        Security,
        "TOKEN_ENCRYPTION_KEY_PREVIOUS",
        "Comma-separated previous keys, still accepted for opening tokens after a rotation.",
    ),
    secret(
        Security,
        "WEBHOOK_SIGNING_SECRET",
        "HMAC-SHA256 key of POST /api/bg/{userId}/webhook (X-Webhook-Signature); without it \
         webhooks answer 503 (docs/webhooks.md). At least 32 bytes in staging and production.",
    ),
    var(
        Security,
        "REGISTRATION",
        "",
        "Who may create an account with POST /api/v1/auth/register: open, invite (by \
         invitation; until invitations exist, only `cgm-hub users create`) or closed. Unset: open \
         in development, invite otherwise. Accounts need AUTH_JWT_SECRET (docs/accounts.md).",
    ),
    var(
        Security,
        "ACCOUNT_ACCESS_TOKEN_TTL_SECONDS",
        "900",
        "Lifetime of the access tokens (bearer JWTs) that login and refresh issue, 60-86400.",
    ),
    var(
        Security,
        "ACCOUNT_REFRESH_TOKEN_TTL_SECONDS",
        "2592000",
        "Lifetime of a refresh token (each refresh issues a new one with a new lifetime), \
         300-31536000.",
    ),
    var(
        Security,
        "ACCOUNT_STATUS_CACHE_SECONDS",
        "30",
        "How long an instance reuses \"is this account disabled?\" when checking a built-in \
         account's access token: the revocation delay after `cgm-hub users disable`, 1-300.",
    ),
    var(
        Security,
        "SMTP_URL",
        "",
        "SMTP server for invitation, password-reset and verification mail: smtp://host:port \
         (plain, a local relay), smtps://user:pass@host:465 (TLS) or \
         smtp://user:pass@host:587?tls=required (STARTTLS). Unset: mail is off (invitation \
         answers carry the token instead; password reset and email verification log their \
         links in development and are off, 503, elsewhere).",
    ),
    var(
        Security,
        "MAIL_FROM",
        "cgm-hub <no-reply@localhost>",
        "Sender of invitation, password-reset and verification mail.",
    ),
    var(
        Security,
        "INVITATION_TTL_HOURS",
        "168",
        "How long an invitation (admin invitation or share by email) can be used to sign up, \
         1-2160 hours.",
    ),
    var(
        Security,
        "ARGON2_MEMORY_KIB",
        "19456",
        "Argon2id memory cost of new password hashes, in KiB (stored hashes keep their own); \
         with the defaults a hash takes about 70-90 ms here (docs/performance.md).",
    ),
    var(
        Security,
        "ARGON2_ITERATIONS",
        "4",
        "Argon2id time cost (passes) of new password hashes.",
    ),
    var(
        Security,
        "ARGON2_PARALLELISM",
        "1",
        "Argon2id lanes of new password hashes.",
    ),
    var(
        Security,
        "PASSWORD_HASH_CONCURRENCY",
        "2",
        "Password hashes (sign-up, login) computed at once, each on a blocking thread; more \
         wait in a bounded queue, so a login storm cannot take every thread.",
    ),
    var(
        Security,
        "PASSWORD_HASH_QUEUE",
        "64",
        "Requests that may wait for a hashing slot; beyond it 503 SERVICE_UNAVAILABLE at once.",
    ),
    var(
        Security,
        "PASSWORD_HASH_QUEUE_TIMEOUT_SECONDS",
        "5",
        "Longest wait for a hashing slot before 503 SERVICE_UNAVAILABLE.",
    ),
    var(
        Security,
        "LOGIN_ACCOUNT_FREE_FAILURES",
        "5",
        "Consecutive failed logins of one email before it is slowed down: each further \
         failure blocks it for 1 s, 2 s, 4 s, ... (429 with Retry-After). A success resets it.",
    ),
    var(
        Security,
        "LOGIN_ACCOUNT_MAX_DELAY_SECONDS",
        "60",
        "Longest block of one email after failed logins (so an attacker cannot lock its owner \
         out for longer).",
    ),
    var(
        Security,
        "LOGIN_IP_FREE_FAILURES",
        "20",
        "Consecutive failed logins from one client IP before it is slowed down as above.",
    ),
    var(
        Security,
        "LOGIN_IP_MAX_DELAY_SECONDS",
        "900",
        "Longest block of one client IP after failed logins.",
    ),
    var(
        Dexcom,
        "DEXCOM_CLIENT_ID",
        "",
        "The OAuth client registered at developer.dexcom.com; set DEXCOM_CLIENT_ID, \
         DEXCOM_CLIENT_SECRET and DEXCOM_REDIRECT_URI, or none (docs/dexcom-onboarding.md).",
    ),
    secret(Dexcom, "DEXCOM_CLIENT_SECRET", "The OAuth client's secret."),
    var(
        Dexcom,
        "DEXCOM_REDIRECT_URI",
        "",
        "Must match the registered redirect URI; points at this service's /oauth/callback.",
    ),
    var(
        Dexcom,
        "DEXCOM_API_BASE_URL",
        "https://sandbox-api.dexcom.com",
        "sandbox | us | eu | jp, or a URL (e.g. the simulator: `cgm-hub simulate dexcom`).",
    ),
    var(Dexcom, "DEXCOM_API_VERSION", "v3", "v3 | v2"),
    var(
        Dexcom,
        "DEXCOM_PKCE",
        "true",
        "Send a PKCE S256 challenge with the authorization (Dexcom does not document PKCE).",
    ),
    var(
        Dexcom,
        "OAUTH_STATE_TTL_SECONDS",
        "600",
        "How long an /oauth/authorize stays completable (1-600): the user must be back at \
         /oauth/callback within this long.",
    ),
    var(
        Dexcom,
        "OAUTH_PENDING_PER_USER",
        "10",
        "Authorizations in progress kept per user; an older one is dropped when the user starts \
         another, so calling /oauth/authorize in a loop cannot grow the store.",
    ),
    var(
        Dexcom,
        "OAUTH_STATE_PRUNE_INTERVAL_SECONDS",
        "60",
        "How often expired authorizations are deleted from the store.",
    ),
    var(
        Dexcom,
        "DEXCOM_CALLS_PER_HOUR",
        "60000",
        "Budget of calls to Dexcom per hour, per process (Dexcom allows 60,000 per app: with \
         N instances, set 60000/N).",
    ),
    var(
        Dexcom,
        "DEXCOM_CALLS_PER_USER_PER_HOUR",
        "300",
        "Each user's share of that budget, per process: data calls per user per hour. A poll \
         takes 2 calls (8 an hour at the default interval), a 90-day backfill 4; a user over \
         their share has their sync retried later, like an exhausted app-wide budget.",
    ),
    var(
        Dexcom,
        "OAUTH_REFRESH_MIN_INTERVAL_SECONDS",
        "60",
        "POST /oauth/refresh refreshes the token now, except within this many seconds of a \
         refresh of the same user that succeeded on this process: then it answers with that \
         token (`refreshed: false`) and makes no call. 0: every request calls Dexcom.",
    ),
    var(
        Dexcom,
        "DEXCOM_BACKFILL_DAYS",
        "30",
        "History fetched when a user connects.",
    ),
    var(
        Dexcom,
        "MAX_RETRIES",
        "3",
        "Outbound calls to Dexcom: retries after the first attempt (jittered exponential \
         backoff; a 429 honours Retry-After).",
    ),
    var(
        Dexcom,
        "RETRY_BACKOFF_FACTOR",
        "2",
        "Growth of the backoff between retries.",
    ),
    var(
        Dexcom,
        "REQUEST_TIMEOUT_SECONDS",
        "30",
        "Timeout of one attempt of one outbound call.",
    ),
    var(
        Sync,
        "POLL_INTERVAL_SECONDS",
        "900",
        "Every connected user is polled this often, plus up to 10% jitter; phases are spread \
         evenly over the interval, so a restart is no thundering herd.",
    ),
    var(
        Sync,
        "SYNC_OVERLAP_SECONDS",
        "10800",
        "Each incremental sync re-reads this much before the newest reading synced (Dexcom \
         data arrives late); dedup makes the re-read free of duplicates.",
    ),
    var(
        Sync,
        "SYNC_CONCURRENCY",
        "4",
        "Sync jobs this instance runs at once.",
    ),
    var(
        Sync,
        "SYNC_TIMEOUT_SECONDS",
        "600",
        "One run of one job; a longer run is put back in the queue with its progress kept.",
    ),
    var(
        Sync,
        "SYNC_LEASE_SECONDS",
        "60",
        "A per-user lease keeps two instances from syncing one user at once; a crashed \
         holder's lease lapses after this long and another instance resumes its job.",
    ),
    var(
        Sync,
        "SYNC_MAX_QUEUED_JOBS_PER_USER",
        "20",
        "Queued sync jobs one user may have (manual, webhook and backfill requests; a \
         scheduled poll is coalesced anyway). Beyond it a manual sync gets 429 and a webhook \
         window is recorded as skipped. The same request while its job is still queued gets \
         that job.",
    ),
    var(
        Demo,
        "DEMO",
        "false",
        "Three synthetic demo patients, connected through an in-process Dexcom simulator by \
         the real OAuth flow, then polled every minute (same as `serve --demo`).",
    ),
    var(
        Demo,
        "DEMO_BACKFILL_DAYS",
        "14",
        "Days of history the demo patients start with.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_grouped_in_reference_order() {
        let mut seen = std::collections::HashSet::new();
        for v in VARIABLES {
            assert!(seen.insert(v.name), "{} listed twice", v.name);
            assert!(!v.help.is_empty(), "{} has no help", v.name);
            assert!(
                !v.secret || v.default.is_empty(),
                "{}: a secret has no default",
                v.name
            );
        }
        assert!(
            VARIABLES.windows(2).all(|w| w[0].group <= w[1].group),
            "VARIABLES must be listed group by group, in Group::ALL order"
        );
    }
}
