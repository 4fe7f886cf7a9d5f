//! `serve --demo`: the demo patients as Dexcom users of an in-process Dexcom
//! simulator. It is wiring, so it lives beside `App::build`: the simulator is
//! started (its listener bound) before anything that talks to it is built,
//! and the app's Dexcom stack is simply pointed at it. Each patient is then
//! connected through the real OAuth flow over HTTP (authorize → the
//! simulator's login → our `/oauth/callback` → token exchange), backfilled,
//! and polled every minute by the scheduler: the whole path a real user's data
//! takes. So that alerts show at once, Bob's uploader phone is off from 25
//! minutes before the start to 5 minutes after (`BOB_OUTAGE`): a `stale` alert,
//! then its resolution when the backlog arrives. Each patient also keeps their
//! diary (`DemoPatient::diary`): the meals they logged, their exercise and their
//! nights are written to the journal for the backfill window, then the last
//! 24 hours again every poll interval (idempotent by external id).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use url::Url;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::config::SyncSettings;
use crate::config::{DexcomSettings, Settings};
use crate::domain::{
    Activity, ActivityInput, ActivityType, DiabetesType, FieldError, Meal, MealInput, MealType,
    Profile, SleepInput, SleepSession, TimePolicy, TimeZoneName, UserId,
};
use crate::records::journal::{JournalBody, JournalCreated, JournalEntry};
use crate::secret::Secret;
use crate::simulator::dexcom::browser::consent;
use crate::simulator::dexcom::{spawn, Outage, RunningSimulator, SimConfig};
use crate::simulator::patients::{demo_patients, DemoPatient, DiaryEntry};
use crate::sources::dexcom::oauth::OAuthConfig;
use crate::sources::dexcom::service::DexcomService;
use crate::store::{profile_or_default, Store};

/// The demo's poll interval, so a newcomer sees readings arrive.
const POLL: Duration = Duration::from_secs(60);

/// Bob's phone died this long before the demo starts and comes back this long
/// after: his newest reading is older than the default `stale_minutes` (20)
/// from the start, so the `stale` alert is raised on the timer's first pass
/// after his backfill, and resolved when his phone uploads the gap.
const BOB_OUTAGE: (chrono::Duration, chrono::Duration) =
    (chrono::Duration::minutes(25), chrono::Duration::minutes(5));
const BOB: &str = "demo-bob";

/// The running simulator and what the app's Dexcom stack needs to use it.
pub struct Demo {
    sim: RunningSimulator,
    /// DEXCOM_* settings pointed at the simulator.
    pub dexcom: DexcomSettings,
    pub oauth: OAuthConfig,
    /// Settings' sync, polling every minute and backfilling DEMO_BACKFILL_DAYS.
    pub sync: SyncSettings,
}

impl Demo {
    /// Starts the simulator. The OAuth redirect names where cgm-hub will be
    /// reached: PUBLIC_BASE_URL, else BIND_ADDR (on loopback when it is a
    /// wildcard). The demo's own browser goes to the listener `App::serve`
    /// is given, wherever that is (`run`).
    pub async fn start(settings: &Settings) -> std::io::Result<Self> {
        let now = chrono::Utc::now();
        let sim_config = SimConfig {
            outages: vec![Outage {
                sim_user: BOB.to_owned(),
                from: now - BOB_OUTAGE.0,
                until: now + BOB_OUTAGE.1,
            }],
            ..SimConfig::default()
        };
        let sim = spawn(sim_config.clone()).await?;
        let url = |raw: &str| Url::parse(raw).map_err(std::io::Error::other);
        let base = match &settings.public_base_url {
            Some(base) => base.trim_end_matches('/').to_owned(),
            None => format!("http://{}", reachable(settings.bind_addr)),
        };
        let oauth = OAuthConfig {
            base_url: url(&sim.base_url)?,
            client_id: sim_config.client_id.clone(),
            client_secret: Secret::new(sim_config.client_secret.clone()),
            redirect_uri: url(&format!("{base}/oauth/callback"))?,
            pkce: true,
            state_ttl: settings.dexcom.state_ttl,
            pending_per_user: settings.dexcom.pending_per_user,
        };
        let mut dexcom = settings.dexcom.clone();
        dexcom.api_base_url = oauth.base_url.clone();
        let sync = SyncSettings {
            interval: POLL,
            backfill_days: settings.demo_backfill_days,
            ..settings.sync.clone()
        };
        tracing::info!(simulator = %sim.base_url, "demo: Dexcom simulator started");
        Ok(Self {
            sim,
            dexcom,
            oauth,
            sync,
        })
    }

    /// Gives every demo patient a profile (their time zone and diabetes type)
    /// unless they have one, connects them through cgm-hub listening on
    /// `local`, then keeps the simulator alive until `stop` fires (the
    /// scheduler polls the patients like any connected user).
    pub async fn run(
        self,
        service: Arc<DexcomService>,
        store: Arc<dyn Store>,
        local: SocketAddr,
        mut stop: watch::Receiver<bool>,
    ) {
        let browser = reqwest::Client::new();
        let mut patients = Vec::new();
        for patient in demo_patients() {
            let Ok(user) = UserId::parse(patient.user_id) else {
                continue;
            };
            if let Err(e) = give_profile(store.as_ref(), &user, &patient).await {
                tracing::warn!(user_id = %user, error = %e, "demo: could not store the profile");
            }
            if let Err(e) = connect(&service, &browser, &user, local).await {
                tracing::warn!(user_id = %user, error = %e, "demo: could not connect through the simulator");
            }
            let now = Utc::now();
            let from = now - chrono::Duration::days(i64::from(self.sync.backfill_days));
            log_diary(store.as_ref(), &user, &patient, from, now).await;
            patients.push((user, patient));
        }
        // The day so far, again every poll: what has happened since is new,
        // the rest is found by its external id.
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tick.tick() => {
                    let now = Utc::now();
                    for (user, patient) in &patients {
                        log_diary(store.as_ref(), user, patient, now - chrono::Duration::hours(24), now)
                            .await;
                    }
                }
            }
        }
        drop(self.sim);
        tracing::info!("demo: stopped");
    }
}

/// The patient's profile, unless one is stored (a user may have changed it).
async fn give_profile(
    store: &dyn Store,
    user: &UserId,
    patient: &DemoPatient,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if store.get_profile(user).await?.is_some() {
        return Ok(());
    }
    let profile = Profile {
        timezone: TimeZoneName::parse("timezone", &patient.timezone())
            .map_err(|e| format!("{e:?}"))?,
        diabetes_type: DiabetesType::parse(patient.diabetes_type),
        ..Profile::default()
    };
    store.put_profile(user, &profile).await?;
    Ok(())
}

/// The journal `source` of the demo's diary entries.
const DIARY_SOURCE: &str = "demo";

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One diary entry as the journal's wire input, parsed by the journal's own
/// rules; None for what is not (yet) written down: an unlogged snack, a
/// session or night not over at `now`.
fn diary_body(
    entry: &DiaryEntry,
    user: &UserId,
    tz: TimeZoneName,
    now: DateTime<Utc>,
) -> Option<(String, Result<JournalBody, Vec<FieldError>>)> {
    let policy = TimePolicy::default();
    let origin = |kind: &str, at: DateTime<Utc>| format!("demo-{kind}-{}", at.timestamp());
    match entry {
        DiaryEntry::Meal(meal) if meal.logged => {
            let meal_type = match meal.meal_type {
                "breakfast" => MealType::Breakfast,
                "lunch" => MealType::Lunch,
                "dinner" => MealType::Dinner,
                _ => MealType::Snack,
            };
            let input = MealInput {
                timestamp: Some(rfc3339(meal.at)),
                meal_type: Some(meal_type),
                carbs_grams: Some(f64::from(meal.carbs_grams)),
                description: Some(meal.description.clone()),
                source: Some(DIARY_SOURCE.to_owned()),
                ..MealInput::default()
            };
            let body = Meal::parse(input, user.as_str(), &policy, now).map(JournalBody::Meal);
            Some((origin("meal", meal.at), body))
        }
        DiaryEntry::Meal(_) => None,
        DiaryEntry::Exercise {
            start,
            minutes,
            activity_type,
        } => {
            if *start + chrono::Duration::minutes(i64::from(*minutes)) > now {
                return None;
            }
            let activity_type = match *activity_type {
                "walking" => ActivityType::Walking,
                "running" => ActivityType::Running,
                "cycling" => ActivityType::Cycling,
                "strength" => ActivityType::Strength,
                _ => ActivityType::Other,
            };
            let input = ActivityInput {
                timestamp: Some(rfc3339(*start)),
                activity_type: Some(activity_type),
                duration_minutes: Some(*minutes),
                source: Some(DIARY_SOURCE.to_owned()),
                ..ActivityInput::default()
            };
            let body =
                Activity::parse(input, user.as_str(), &policy, now).map(JournalBody::Activity);
            Some((origin("activity", *start), body))
        }
        DiaryEntry::Sleep {
            start,
            end,
            awake_minutes,
            deep_minutes,
            rem_minutes,
            quality_score,
        } => {
            if *end > now {
                return None;
            }
            let input = SleepInput {
                sleep_start: Some(rfc3339(*start)),
                sleep_end: Some(rfc3339(*end)),
                deep_sleep_minutes: Some(*deep_minutes),
                rem_sleep_minutes: Some(*rem_minutes),
                awake_minutes: Some(*awake_minutes),
                quality_score: Some(*quality_score),
                source: Some(DIARY_SOURCE.to_owned()),
                ..SleepInput::default()
            };
            let body =
                SleepSession::parse(input, user.as_str(), tz, &policy, now).map(JournalBody::Sleep);
            Some((origin("sleep", *start), body))
        }
    }
}

/// Writes the patient's diary of [from, to) to the journal (source `demo`,
/// external id `demo-<kind>-<unix seconds>`): what was stored before is
/// found again (`Existing`), not written twice.
async fn log_diary(
    store: &dyn Store,
    user: &UserId,
    patient: &DemoPatient,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) {
    let tz = match profile_or_default(store, user).await {
        Ok(profile) => profile.timezone,
        Err(e) => {
            tracing::warn!(user_id = %user, error = %e, "demo: could not read the profile");
            return;
        }
    };
    let now = Utc::now();
    let mut entries = Vec::new();
    for entry in patient.diary(from, to) {
        match diary_body(&entry, user, tz, now) {
            Some((external_id, Ok(body))) => entries.push(JournalEntry::new(
                user.clone(),
                DIARY_SOURCE.to_owned(),
                Some(external_id),
                body,
                now,
            )),
            Some((external_id, Err(errors))) => {
                tracing::warn!(user_id = %user, external_id, ?errors, "demo: diary entry refused");
            }
            None => {}
        }
    }
    if entries.is_empty() {
        return;
    }
    match store.create_journal_entries(entries).await {
        Ok(results) => {
            let new = results
                .iter()
                .filter(|r| matches!(r, JournalCreated::Created(_)))
                .count();
            if new > 0 {
                tracing::info!(user_id = %user, new, "demo: diary written to the journal");
            }
        }
        Err(e) => tracing::warn!(user_id = %user, error = %e, "demo: could not write the diary"),
    }
}

/// Where a listener on `addr` is reached: a wildcard bind on loopback
/// (SocketAddr's Display brackets IPv6 addresses).
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        let loopback = if addr.is_ipv6() {
            std::net::Ipv6Addr::LOCALHOST.into()
        } else {
            std::net::Ipv4Addr::LOCALHOST.into()
        };
        SocketAddr::new(loopback, addr.port())
    } else {
        addr
    }
}

/// Connects `user`: our login URL, the simulator's consent, then the redirect
/// back to our own `/oauth/callback` over HTTP, sent to the listener itself
/// (the redirect's host may be a public name, or BIND_ADDR while a test
/// listens elsewhere). Done at every start, since the in-process simulator
/// forgets the tokens it issued when cgm-hub stops.
async fn connect(
    service: &DexcomService,
    browser: &reqwest::Client,
    user: &UserId,
    local: SocketAddr,
) -> Result<(), String> {
    let started = service.begin(user).await.map_err(|e| e.to_string())?;
    let back = consent(&started.login_url, user.as_str()).await?;
    let mut callback = Url::parse(&format!("http://{}/oauth/callback", reachable(local)))
        .map_err(|e| e.to_string())?;
    callback.set_query(back.query());
    let done = browser
        .get(callback)
        .header(
            reqwest::header::COOKIE,
            format!(
                "{}={}",
                started.cookie_name,
                started.browser_secret.expose()
            ),
        )
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !done.status().is_success() {
        return Err(format!("callback answered {}", done.status()));
    }
    tracing::info!(user_id = %user, "demo: connected through the Dexcom OAuth flow");
    Ok(())
}
