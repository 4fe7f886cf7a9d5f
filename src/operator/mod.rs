//! The operator CLI's work (`cgm-hub config|migrate|users|connections|sync|jobs|import|healthcheck`):
//! what someone running cgm-hub needs besides the HTTP API. Each command reads the same
//! settings as `serve` and works on the configured store directly (docs/cli.md).

mod table;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::app::{open_store, BuildError, Opening};
use crate::config::{EventBusKind, Settings, StorageSettings, VARIABLES};
use crate::domain::{TimePolicy, UserId};
use crate::pipeline::Pipeline;
use crate::records::connections::{Connection, ConnectionStatus, Provider};
use crate::records::jobs::{Created, JobStatus, NewJob, Trigger};
use crate::sources::apple_health::{
    self, ImportSummary, Progress as ImportProgress, PutCounts, StoreJournal,
};
use crate::store::{Store, StoreError};
use crate::sync::provider::{sync_target, SyncTarget};
use table::Table;

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// Bad arguments: exit 2, like a bad setting.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Build(#[from] BuildError),
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The command ran and the answer is no (not found, unhealthy, job failed): exit 1.
    #[error("{0}")]
    Failed(String),
}

impl OperatorError {
    pub fn exit_code(&self) -> u8 {
        match self {
            OperatorError::Usage(_) => 2,
            _ => 1,
        }
    }
}

type Result<T> = std::result::Result<T, OperatorError>;

/// How list commands print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

async fn store(settings: &Settings) -> Result<Arc<dyn Store>> {
    Ok(open_store(&settings.storage, Opening::Operator).await?)
}

fn user_id(raw: &str) -> Result<UserId> {
    UserId::parse(raw).map_err(|e| OperatorError::Usage(format!("user id {raw:?}: {e}")))
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".to_owned(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

fn print_json(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("plain data serializes")
    );
}

/// `config check`: every variable with its effective value (secrets redacted), then
/// whether the store and the event bus answer.
pub async fn config_check(settings: &Settings) -> Result<()> {
    let mut table = Table::new(["VARIABLE", "VALUE", "FROM"]);
    for v in VARIABLES {
        let set = std::env::var(v.name).ok().filter(|s| !s.trim().is_empty());
        let (value, from) = match (&set, v.secret) {
            (Some(_), true) => ("[redacted]".to_owned(), "environment"),
            (Some(value), false) => (value.clone(), "environment"),
            (None, _) if v.default.is_empty() => ("(unset)".to_owned(), "default"),
            (None, _) => (v.default.to_owned(), "default"),
        };
        table.row([v.name.to_owned(), value, from.to_owned()]);
    }
    print!("{table}");
    println!("settings: valid ({:?})", settings.env);

    match &settings.storage {
        StorageSettings::Sqlite { path, .. } if !path.exists() => {
            println!(
                "storage: sqlite, no database yet at {} (serve creates it)",
                path.display()
            )
        }
        _ => {
            let store = store(settings).await?;
            store.ping().await?;
            println!("storage: {} reachable", store.backend());
        }
    }
    match &settings.event_bus {
        EventBusKind::Memory => println!("event bus: in-process"),
        EventBusKind::RabbitMq(rabbit) => {
            let bus = crate::events::rabbitmq::RabbitBus::new(rabbit.clone());
            match tokio::time::timeout(Duration::from_secs(10), bus.connect()).await {
                Ok(Ok(())) => println!("event bus: rabbitmq reachable"),
                Ok(Err(e)) => {
                    return Err(OperatorError::Failed(format!("event bus: rabbitmq: {e}")))
                }
                Err(_) => {
                    return Err(OperatorError::Failed(
                        "event bus: rabbitmq did not answer in 10 s".into(),
                    ))
                }
            }
        }
    }
    match &settings.dexcom.client_id {
        Some(id) => println!(
            "dexcom: client {id} at {} ({})",
            settings.dexcom.api_base_url,
            settings.dexcom.api_version.as_str()
        ),
        None => println!("dexcom: not configured (no DEXCOM_CLIENT_ID; connecting users is off)"),
    }
    Ok(())
}

/// `migrate`: opens the store as `serve` does, which applies pending migrations
/// (SQLite, PostgreSQL) or creates absent tables (DynamoDB), then exits.
pub async fn migrate(settings: &Settings) -> Result<()> {
    let store = open_store(&settings.storage, Opening::Serve).await?;
    store.ping().await?;
    println!("storage: {} schema is up to date", store.backend());
    Ok(())
}

/// Every connection of every provider, whatever its status.
async fn all_connections(store: &dyn Store) -> Result<Vec<Connection>> {
    let mut all = Vec::new();
    for provider in Provider::ALL {
        for status in [
            ConnectionStatus::Connected,
            ConnectionStatus::ReauthRequired,
            ConnectionStatus::Disconnected,
        ] {
            all.extend(store.connections_with_status(provider, status).await?);
        }
    }
    all.sort_by(|a, b| {
        (a.user_id.as_str(), a.provider.as_str()).cmp(&(b.user_id.as_str(), b.provider.as_str()))
    });
    Ok(all)
}

#[derive(Debug, Serialize)]
struct ConnectionRow {
    user_id: String,
    provider: &'static str,
    status: &'static str,
    connected_at: Option<DateTime<Utc>>,
    last_sync_at: Option<DateTime<Utc>>,
    /// The newest reading time a sync has stored.
    synced_through: Option<DateTime<Utc>>,
    last_error: Option<String>,
}

impl From<&Connection> for ConnectionRow {
    fn from(c: &Connection) -> Self {
        Self {
            user_id: c.user_id.as_str().to_owned(),
            provider: c.provider.as_str(),
            status: c.status.as_str(),
            connected_at: c.connected_at,
            last_sync_at: c.last_sync_at,
            synced_through: c.sync_cursor,
            last_error: c.last_error.clone(),
        }
    }
}

/// `connections list [--user ID] [--status S]`.
pub async fn connections_list(
    settings: &Settings,
    user: Option<&str>,
    status: Option<&str>,
    output: Output,
) -> Result<()> {
    let status = status
        .map(|raw| {
            ConnectionStatus::parse(raw).ok_or_else(|| {
                OperatorError::Usage(format!(
                    "status {raw:?} is not connected, reauth_required or disconnected"
                ))
            })
        })
        .transpose()?;
    let user = user.map(user_id).transpose()?;
    let store = store(settings).await?;
    let connections = match &user {
        Some(user) => store.list_connections(user).await?,
        None => all_connections(store.as_ref()).await?,
    };
    let rows: Vec<ConnectionRow> = connections
        .iter()
        .filter(|c| status.is_none_or(|s| c.status == s))
        .map(ConnectionRow::from)
        .collect();
    if output == Output::Json {
        print_json(&rows);
        return Ok(());
    }
    let mut table = Table::new([
        "USER",
        "PROVIDER",
        "STATUS",
        "LAST SYNC",
        "SYNCED THROUGH",
        "LAST ERROR",
    ]);
    for r in &rows {
        table.row([
            r.user_id.clone(),
            r.provider.to_owned(),
            r.status.to_owned(),
            time(r.last_sync_at),
            time(r.synced_through),
            r.last_error.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    print!("{table}");
    Ok(())
}

#[derive(Debug, Serialize)]
struct UserRow {
    user_id: String,
    /// provider → status, e.g. {"dexcom": "connected"}.
    connections: std::collections::BTreeMap<&'static str, &'static str>,
    last_sync_at: Option<DateTime<Utc>>,
    newest_reading_at: Option<DateTime<Utc>>,
}

/// `users list`: every user with a connection, and the newest reading stored for each.
pub async fn users_list(settings: &Settings, output: Output) -> Result<()> {
    let store = store(settings).await?;
    let mut rows: Vec<UserRow> = Vec::new();
    for c in all_connections(store.as_ref()).await? {
        if rows.last().is_none_or(|r| r.user_id != c.user_id.as_str()) {
            let newest = store.latest_reading(&c.user_id).await?;
            rows.push(UserRow {
                user_id: c.user_id.as_str().to_owned(),
                connections: Default::default(),
                last_sync_at: None,
                newest_reading_at: newest.map(|r| r.reading.timestamp.as_datetime()),
            });
        }
        let row = rows.last_mut().expect("pushed above");
        row.connections
            .insert(c.provider.as_str(), c.status.as_str());
        row.last_sync_at = row.last_sync_at.max(c.last_sync_at);
    }
    if output == Output::Json {
        print_json(&rows);
        return Ok(());
    }
    let mut table = Table::new(["USER", "CONNECTIONS", "LAST SYNC", "NEWEST READING"]);
    for r in &rows {
        let connections: Vec<String> = r
            .connections
            .iter()
            .map(|(provider, status)| format!("{provider}:{status}"))
            .collect();
        table.row([
            r.user_id.clone(),
            connections.join(","),
            time(r.last_sync_at),
            time(r.newest_reading_at),
        ]);
    }
    print!("{table}");
    Ok(())
}

/// `users create --email E [--admin]`: a built-in account (the patient role,
/// plus admin with `admin`), whatever REGISTRATION says. `password` comes from
/// standard input (the caller reads it), never from the command line; it must
/// meet the sign-up policy (8-256 characters, not a breached password).
pub async fn users_create(
    settings: &Settings,
    email: &str,
    password: &str,
    admin: bool,
    output: Output,
) -> Result<()> {
    use crate::accounts::AccountError;
    use crate::domain::{Email, Password};
    let email = Email::parse(email).map_err(|e| OperatorError::Usage(format!("email: {e}")))?;
    let password =
        Password::parse(password).map_err(|e| OperatorError::Usage(format!("password: {e}")))?;
    let store = store(settings).await?;
    let accounts = crate::app::account_service(settings, store)?;
    let account = match accounts.create_by_operator(email, password, admin).await {
        Ok(account) => account,
        Err(AccountError::EmailTaken) => {
            return Err(OperatorError::Failed(
                "an account with this email already exists".into(),
            ))
        }
        Err(AccountError::Store(e)) => return Err(e.into()),
        Err(e) => return Err(OperatorError::Failed(e.to_string())),
    };
    let roles: Vec<&str> = account.roles.iter().map(|r| r.as_str()).collect();
    if output == Output::Json {
        print_json(&serde_json::json!({
            "id": account.id.as_str(),
            "email": account.email.as_str(),
            "roles": roles,
        }));
    } else {
        println!(
            "created account {} for {} (roles: {})",
            account.id,
            account.email,
            roles.join(",")
        );
    }
    Ok(())
}

/// `users disable --email E`: the account can no longer log in or refresh, its
/// refresh families are revoked and its access tokens refused (within the
/// ACCOUNT_STATUS_CACHE_SECONDS on a running instance). Fails when no account has E.
pub async fn users_disable(settings: &Settings, email: &str, output: Output) -> Result<()> {
    use crate::accounts::AccountError;
    use crate::domain::Email;
    let email = Email::parse(email).map_err(|e| OperatorError::Usage(format!("email: {e}")))?;
    let store = store(settings).await?;
    let accounts = crate::app::account_service(settings, store)?;
    let id = match accounts.disable(&email).await {
        Ok(Some(id)) => id,
        Ok(None) => return Err(OperatorError::Failed("no account has this email".into())),
        Err(AccountError::Store(e)) => return Err(e.into()),
        Err(e) => return Err(OperatorError::Failed(e.to_string())),
    };
    if output == Output::Json {
        print_json(&serde_json::json!({"id": id.as_str(), "disabled": true}));
    } else {
        println!("disabled account {id} ({email})");
    }
    Ok(())
}

/// `users enable --email E`: a disabled account can log in again (its revoked
/// sessions stay revoked; a running instance accepts its new access tokens
/// within ACCOUNT_STATUS_CACHE_SECONDS). Fails when no account has E.
pub async fn users_enable(settings: &Settings, email: &str, output: Output) -> Result<()> {
    use crate::accounts::AccountError;
    use crate::domain::Email;
    let email = Email::parse(email).map_err(|e| OperatorError::Usage(format!("email: {e}")))?;
    let store = store(settings).await?;
    let accounts = crate::app::account_service(settings, store)?;
    let id = match accounts.enable(&email).await {
        Ok(Some(id)) => id,
        Ok(None) => return Err(OperatorError::Failed("no account has this email".into())),
        Err(AccountError::Store(e)) => return Err(e.into()),
        Err(e) => return Err(OperatorError::Failed(e.to_string())),
    };
    if output == Output::Json {
        print_json(&serde_json::json!({"id": id.as_str(), "disabled": false}));
    } else {
        println!("enabled account {id} ({email})");
    }
    Ok(())
}

/// `sync --user ID [--start-date D] [--end-date D] [--wait]`: queues a manual sync
/// job, exactly as `POST /api/bg/{userId}/sync` does; a running instance's workers
/// claim it within a second. With `wait`, polls until it has finished. It syncs
/// from the provider the user has a working connection to (the CLI has no
/// engine to ask which sources are configured, so every known provider counts).
pub async fn sync(
    settings: &Settings,
    user: &str,
    start: Option<&str>,
    end: Option<&str>,
    wait: Option<Duration>,
    output: Output,
) -> Result<()> {
    let user = user_id(user)?;
    let range = crate::api::sync_range(start, end)
        .map_err(|e| OperatorError::Usage(format!("{}: {}", e.pointer, e.message)))?;
    let store = store(settings).await?;
    let provider = match sync_target(store.as_ref(), &user, None, &Provider::ALL).await? {
        SyncTarget::Ready(provider) => provider,
        SyncTarget::NotSyncable(reason) | SyncTarget::Ambiguous(reason) => {
            return Err(OperatorError::Failed(reason))
        }
    };
    let job = NewJob::new(user, provider, Trigger::Manual, range, Utc::now());
    let Created::New(job) = store.create_job(job, None).await? else {
        return Err(OperatorError::Failed(
            "the store did not queue the job".into(),
        ));
    };
    if output == Output::Table {
        println!("queued sync job {}", job.id);
    }
    let Some(limit) = wait else {
        if output == Output::Json {
            print_json(&crate::api::JobView::from(job));
        }
        return Ok(());
    };
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let current = store
            .get_job(job.id)
            .await?
            .ok_or_else(|| OperatorError::Failed(format!("job {} disappeared", job.id)))?;
        if current.status.is_finished() || tokio::time::Instant::now() >= deadline {
            let status = current.status;
            show_job(&current, output);
            return match status {
                JobStatus::Succeeded => Ok(()),
                JobStatus::Failed => Err(OperatorError::Failed(format!("job {} failed", job.id))),
                _ => Err(OperatorError::Failed(format!(
                    "job {} is still {} after {}; is a cgm-hub serve with {} configured running?",
                    job.id,
                    status.as_str(),
                    humantime::format_duration(limit),
                    crate::sync::provider::provider_name(provider)
                ))),
            };
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn show_job(job: &crate::records::jobs::SyncJob, output: Output) {
    if output == Output::Json {
        print_json(&crate::api::JobView::from(job.clone()));
        return;
    }
    let c = &job.counts;
    let range = job.resolved.or(job.requested).map_or_else(
        || "incremental".to_owned(),
        |r| format!("{} .. {}", time(Some(r.start)), time(Some(r.end))),
    );
    let mut table = Table::new(["FIELD", "VALUE"]);
    for (field, value) in [
        ("job", job.id.to_string()),
        ("user", job.user_id.as_str().to_owned()),
        ("trigger", job.trigger.as_str().to_owned()),
        ("status", job.status.as_str().to_owned()),
        ("range", range),
        (
            "counts",
            format!(
                "fetched {} inserted {} updated {} duplicates {} rejected {}",
                c.fetched, c.inserted, c.updated, c.duplicates, c.rejected
            ),
        ),
        ("attempts", job.attempts.to_string()),
        ("created", time(Some(job.created_at))),
        ("started", time(job.started_at)),
        ("finished", time(job.finished_at)),
    ] {
        table.row([field.to_owned(), value]);
    }
    for error in &job.errors {
        table.row(["error".to_owned(), error.clone()]);
    }
    print!("{table}");
}

/// `jobs show JOB_ID`.
pub async fn jobs_show(settings: &Settings, id: &str, output: Output) -> Result<()> {
    let id = uuid::Uuid::parse_str(id)
        .map_err(|_| OperatorError::Usage(format!("{id:?} is not a job id (a UUID)")))?;
    let store = store(settings).await?;
    let job = store
        .get_job(id)
        .await?
        .ok_or_else(|| OperatorError::Failed(format!("no job {id}")))?;
    show_job(&job, output);
    Ok(())
}

/// `jobs list --user ID`: the user's latest jobs, newest first.
pub async fn jobs_list(
    settings: &Settings,
    user: &str,
    limit: usize,
    output: Output,
) -> Result<()> {
    let user = user_id(user)?;
    let store = store(settings).await?;
    let jobs = store.list_jobs(&user, limit).await?;
    if output == Output::Json {
        let views: Vec<_> = jobs.into_iter().map(crate::api::JobView::from).collect();
        print_json(&views);
        return Ok(());
    }
    let mut table = Table::new([
        "JOB", "TRIGGER", "STATUS", "CREATED", "FINISHED", "INSERTED",
    ]);
    for j in &jobs {
        table.row([
            j.id.to_string(),
            j.trigger.as_str().to_owned(),
            j.status.as_str().to_owned(),
            time(Some(j.created_at)),
            time(j.finished_at),
            j.counts.inserted.to_string(),
        ]);
    }
    print!("{table}");
    Ok(())
}

/// `healthcheck [--url URL]`: GET /health; success only on 200. Without a URL, the
/// local instance of these settings (127.0.0.1 on BIND_ADDR's port; https with
/// TLS, whose certificate is then not verified: this is the process's own port).
pub async fn healthcheck(settings: Option<&Settings>, url: Option<&str>) -> Result<()> {
    let (url, tls) = match (url, settings) {
        (Some(url), _) => (url.to_owned(), false),
        (None, settings) => {
            let port = settings.map_or(5001, |s| s.bind_addr.port());
            let tls = settings.is_some_and(|s| s.tls.is_some());
            let scheme = if tls { "https" } else { "http" };
            (format!("{scheme}://127.0.0.1:{port}/health"), tls)
        }
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .danger_accept_invalid_certs(tls)
        .build()
        .map_err(|e| OperatorError::Failed(format!("http client: {e}")))?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| OperatorError::Failed(format!("{url}: {e}")))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status == reqwest::StatusCode::OK {
        println!("{url}: {status} {body}");
        Ok(())
    } else {
        Err(OperatorError::Failed(format!("{url}: {status} {body}")))
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn per_second(count: u64, elapsed: Duration) -> u64 {
    (count as f64 / elapsed.as_secs_f64().max(1e-3)) as u64
}

/// Progress on standard error (the parser reports at most once a second).
fn print_progress(progress: &ImportProgress) {
    match *progress {
        ImportProgress::Reading {
            bytes,
            total_bytes,
            records,
            elapsed,
        } => eprintln!(
            "reading: {} of {} ({:.0}%), {records} records, {} records/s",
            megabytes(bytes),
            megabytes(total_bytes),
            100.0 * bytes as f64 / total_bytes.max(1) as f64,
            per_second(records, elapsed)
        ),
        ImportProgress::Storing {
            readings_done,
            readings_total,
            ..
        } => eprintln!("storing: {readings_done} of {readings_total} glucose readings"),
    }
}

/// `import apple-health --user ID FILE`: an Apple Health `export.zip` or
/// `export.xml` (docs: "Apple Health import"). Blood glucose becomes readings
/// (source `apple_health`) through the pipeline; sleep sessions and workouts
/// go to the journal (source `apple_health`). Nothing is stored when the file does not parse to
/// its end; a second import of the same file stores nothing new.
pub async fn import_apple_health(settings: &Settings, user: &str, file: &Path) -> Result<()> {
    let user = user_id(user)?;
    if !file.is_file() {
        return Err(OperatorError::Usage(format!(
            "{}: no such file (give the export.zip or export.xml)",
            file.display()
        )));
    }
    let store = store(settings).await?;
    let policy = TimePolicy {
        max_age_years: settings.reading_max_age_years,
        ..TimePolicy::default()
    };
    // No alert evaluation: an import is history, not a live reading.
    let journal = StoreJournal::new(store.clone(), policy);
    let pipeline = Pipeline::new(store, policy);
    let summary = apple_health::import(
        file.to_path_buf(),
        &user,
        &pipeline,
        &journal,
        print_progress,
    )
    .await
    .map_err(|e| OperatorError::Failed(e.to_string()))?;
    print!("{}", import_summary(&user, file, &summary));
    Ok(())
}

/// The summary `import apple-health` prints.
pub fn import_summary(user: &UserId, file: &Path, s: &ImportSummary) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "imported {} for user {user}: {} read, {} records and {} workouts in {:.1} s \
         ({} records/s), {:.1} s in all",
        file.display(),
        megabytes(s.bytes),
        s.records,
        s.workout_elements,
        s.read_time.as_secs_f64(),
        per_second(s.records + s.workout_elements, s.read_time),
        s.total_time.as_secs_f64(),
    );
    let _ = writeln!(
        out,
        "glucose readings: {} new, {} updated, {} duplicate (already stored), {} refused; \
         {} more at an instant that already had one",
        s.tally.inserted, s.tally.updated, s.tally.duplicates, s.tally.rejected, s.same_instant
    );
    let journal = |what: &str, n: u64, put: &PutCounts| {
        if s.journal_stored {
            let mut line = format!(
                "{what}: {n} ({} new, {} duplicate, {} refused)",
                put.new, put.duplicate, put.refused
            );
            for refusal in &put.refusals {
                line.push_str(&format!("\n  refused {refusal}"));
            }
            if put.refused > put.refusals.len() as u64 {
                line.push_str("\n  ...");
            }
            line
        } else {
            format!("{what}: {n} parsed, not stored (journal storage is not wired yet)")
        }
    };
    let _ = writeln!(
        out,
        "{}",
        journal("sleep sessions", s.sleep_sessions, &s.sleep)
    );
    let _ = writeln!(out, "{}", journal("workouts", s.workouts, &s.workouts_put));
    let _ = writeln!(out, "skipped records: {}", s.skips.total());
    for (reason, group) in &s.skips.by_reason {
        let _ = writeln!(out, "  {reason}: {}", group.count);
        for example in &group.examples {
            let _ = writeln!(out, "    {example}");
        }
        if group.count > group.examples.len() as u64 {
            let _ = writeln!(out, "    ...");
        }
    }
    out
}
