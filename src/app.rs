//! Wiring: builds the store, event bus, pipeline, sources, sync engine and
//! router from settings, in dependency order, and runs the server with
//! graceful shutdown. `demo` wires `serve --demo`.

mod demo;

mod components;
mod supervisor;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{self, AppContext, AppState, Limits};
use crate::auth::jwt::{AuthConfig, Authenticator};
use crate::config::{DexcomSettings, EventBusKind, Settings, StorageSettings};
use crate::connections::cipher::TokenCipher;
use crate::connections::key_file;
use crate::domain::TimePolicy;
use crate::events::rabbitmq::RabbitBus;
use crate::events::relay::Relay;
use crate::events::{EventBus, MemoryBus, Subscriber};
use crate::pipeline::Pipeline;
use crate::sources::dexcom::oauth::OAuthConfig;
use crate::sources::dexcom::outbound::Outbound;
use crate::sources::dexcom::service::{DexcomService, DexcomStack};
use crate::sources::webhook::worker::WebhookInbox;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};
use crate::sync::engine::SyncEngine;
use crate::sync::source::Sources;
use crate::telemetry;
use supervisor::Supervisor;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot open storage: {0}")]
    Store(#[from] StoreError),
    #[error("cannot read or create the development token key {path}: {error}")]
    KeyFile { path: String, error: std::io::Error },
    #[error("cannot start the demo's Dexcom simulator: {0}")]
    Demo(std::io::Error),
    #[error("cannot set up accounts: {0}")]
    Accounts(#[from] crate::accounts::AccountError),
}

/// Everything a running instance holds.
pub struct App {
    pub state: AppState,
    pub settings: Settings,
    cipher: Arc<TokenCipher>,
    /// `serve --demo`: the simulator, started; `serve` connects its patients.
    demo: Option<demo::Demo>,
}

impl App {
    /// Builds everything (background work starts in `serve`): call inside a
    /// Tokio runtime.
    pub async fn build(settings: Settings) -> Result<Self, BuildError> {
        // First, so that everything below records into it.
        let metrics = telemetry::metrics_handle();
        let store = open_store(&settings.storage, Opening::Serve).await?;
        let bus: Arc<dyn EventBus> = match &settings.event_bus {
            EventBusKind::Memory => {
                // In-process: connected, and its subscribers fed (it is its own
                // consumer), for as long as the process runs.
                metrics::gauge!("event_bus_connected", "bus" => "memory").set(1.0);
                metrics::gauge!("event_consumer_connected", "bus" => "memory").set(1.0);
                Arc::new(MemoryBus::default())
            }
            EventBusKind::RabbitMq(rabbit) => {
                let bus = RabbitBus::new(rabbit.clone());
                // Not fatal: events wait in the outbox until the broker is back.
                if let Err(e) = bus.connect().await {
                    tracing::warn!(error = %e, "RabbitMQ is not reachable yet; events wait in the outbox");
                }
                Arc::new(bus)
            }
        };
        let policy = TimePolicy {
            max_age_years: settings.reading_max_age_years,
            ..TimePolicy::default()
        };
        let pipeline = Pipeline::new(store.clone(), policy).with_alerts(store.clone());
        let cipher = Arc::new(token_cipher(&settings)?);
        let demo = if settings.demo {
            Some(
                demo::Demo::start(&settings)
                    .await
                    .map_err(BuildError::Demo)?,
            )
        } else {
            None
        };
        // Dexcom: the simulator's for the demo, else the configured client (if any).
        let dexcom = match &demo {
            Some(demo) => Some(dexcom_stack(
                &store,
                &demo.dexcom,
                demo.oauth.clone(),
                cipher.clone(),
            )),
            None => oauth_config(&settings.dexcom)
                .map(|oauth| dexcom_stack(&store, &settings.dexcom, oauth, cipher.clone())),
        };
        // Every configured source registers its adapter here; the engine,
        // scheduler and sync API serve whatever is registered.
        let mut sources = Sources::new();
        if let Some(stack) = &dexcom {
            sources = sources.with(stack.adapter());
        }
        let engine = (!sources.is_empty()).then(|| {
            let sync = demo.as_ref().map_or(&settings.sync, |d| &d.sync);
            SyncEngine::new(
                store.clone(),
                store.clone(),
                pipeline.clone(),
                sources,
                sync.clone(),
            )
        });
        let dexcom = dexcom
            .zip(engine.clone())
            .map(|(stack, engine)| DexcomService::with_engine(stack, engine));
        let relay = Relay::new(store.clone(), bus.clone());
        let notifications = crate::notifications::Notifications::new(
            store.clone(),
            cipher.clone(),
            settings.notifications.clone(),
        );
        // Alert events reach notification delivery before they leave the outbox.
        relay.add_sink(notifications.sink());
        let live = crate::events::live::LiveStreams::new(
            store.clone(),
            settings.stream,
            api::render_live_item,
        );
        let stream_tokens = crate::auth::stream_token::StreamTokens::new(
            cipher.derive_key("cgm-hub/stream-token-signing/v1"),
            settings.stream.token_ttl,
        );
        let accounts = Arc::new(account_service(&settings, store.clone())?);
        let state = Arc::new(AppContext {
            live,
            stream_tokens,
            accounts,
            pipeline: pipeline.clone(),
            audit: crate::auth::audit::AuditLog::start(store.clone()),
            relay,
            notifications,
            tasks: crate::tasks::TaskRunner::new(
                crate::tasks::StoreQueue::new(store.clone()),
                crate::tasks::RunnerSettings::default(),
                format!("tasks-{}", uuid::Uuid::new_v4()),
            ),
            event_bus: bus,
            inbox: WebhookInbox::new(store.clone(), pipeline, engine.clone()),
            store,
            metrics,
            limits: Limits {
                max_body_bytes: settings.max_body_bytes,
                max_batch_records: settings.max_batch_records,
                body_read_timeout: settings.http.body_read_timeout,
                webhook: settings.webhook,
                max_shares_per_patient: settings.max_shares_per_patient,
            },
            public_base_url: settings.public_base_url.as_deref().map(Arc::from),
            auth_disabled: settings.auth_disabled,
            dexcom,
            sync: engine.clone(),
            rate_limits: crate::api::rate_limit::RateLimits::new(settings.rate_limits.clone()),
            health: Default::default(),
            glucose_windows: crate::store::samples::GlucoseWindows::new(
                crate::store::samples::CACHE_BYTES,
            ),
            write_quota: crate::api::write_quota::WriteQuota::per_hour(
                settings.write_quota_readings_per_hour,
            ),
            tls: settings.tls.is_some(),
            webhook_secret: settings.webhook_signing_secret.clone(),
            recent_refreshes: crate::api::oauth::RecentRefreshes::new(
                settings.dexcom.refresh_min_interval,
            ),
            webhook_bodies: Arc::new(tokio::sync::Semaphore::new(
                settings.webhook.max_concurrent_bodies,
            )),
            cors_allowed_origins: settings.cors_allowed_origins.clone(),
            authenticator: Authenticator::new(AuthConfig {
                hs256_secret: settings.auth_jwt_secret.clone(),
                jwks_url: settings.auth_jwks_url.clone(),
                issuer: settings.auth_issuer.clone(),
                audience: settings.auth_audience.clone(),
                leeway: std::time::Duration::from_secs(30),
            }),
        });
        Ok(Self {
            state,
            settings,
            cipher,
            demo,
        })
    }

    /// The accounts of this instance's store (also `cgm-hub users create`).
    pub fn accounts(&self) -> &Arc<crate::accounts::AccountService> {
        &self.state.accounts
    }

    pub fn cipher(&self) -> &Arc<TokenCipher> {
        &self.cipher
    }

    pub fn router(&self) -> axum::Router {
        api::router(self.state.clone())
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight
    /// requests finish (bounded by SHUTDOWN_TIMEOUT_SECONDS) and stops background work.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_with(Vec::new(), listener, shutdown).await
    }

    /// `serve`, with `subscribers` reading every event this instance sees.
    pub async fn serve_with(
        mut self,
        subscribers: Vec<Arc<dyn Subscriber>>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        use components::*;
        let state = &self.state;
        let settings = &self.settings;
        // Started in this order, each ready before the next; stopped in reverse
        // (see `supervisor`): each outlives what feeds it.
        let mut supervisor = Supervisor::default();
        if let (Some(demo), Some(service)) = (self.demo.take(), &state.dexcom) {
            supervisor.add(Demo {
                demo: Some(demo),
                service: service.clone(),
                store: state.store.clone(),
                local: listener.local_addr()?,
                task: None,
            });
        }
        // The live streams' feed runs on every instance.
        let mut subscribers = subscribers;
        subscribers.push(state.live.clone());
        supervisor.add(EventSubscribers {
            bus: state.event_bus.clone(),
            subscribers,
            stop: watch::channel(false).0,
            tasks: Vec::new(),
        });
        supervisor.add(EventConsumer {
            bus: state.event_bus.clone(),
            stop: watch::channel(false).0,
            task: None,
        });
        supervisor.add(OutboxRelay {
            relay: state.relay.clone(),
            stop: watch::channel(false).0,
            task: None,
        });
        if let Some(dexcom) = &state.dexcom {
            supervisor.add(DexcomTokens {
                service: dexcom.clone(),
            });
        }
        if let Some(engine) = &state.sync {
            supervisor.add(SyncWorkers {
                engine: engine.clone(),
            });
            supervisor.add(SyncScheduler {
                engine: engine.clone(),
                task: None,
            });
        }
        supervisor.add(AuthorizationPruner {
            store: state.store.clone(),
            every: settings.dexcom.state_prune_interval,
            task: None,
        });
        supervisor.add(StaleAlerts {
            store: state.store.clone(),
            every: settings.alert_stale_check,
            task: None,
        });
        supervisor.add(TaskWorkers {
            runner: state.tasks.clone(),
        });
        supervisor.add(TaskWorkers {
            runner: state.notifications.runner().clone(),
        });
        supervisor.add(WebhookWorker {
            state: state.clone(),
        });
        supervisor.add(AuditWriter {
            state: state.clone(),
        });
        supervisor.add(HttpListener {
            state: state.clone(),
            settings: settings.clone(),
            listener: Some(listener),
            handle: axum_server::Handle::new(),
            task: None,
        });
        supervisor.run(shutdown, settings.shutdown_timeout).await
    }
}

/// Who opens the store: the server, or an operator command that may run beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    Serve,
    /// SQLite: opened even while a server holds the file (see
    /// `SqliteStore::open_beside_server`); the other backends are shared anyway.
    Operator,
}

/// Opens the configured store, applying pending migrations (PostgreSQL, SQLite) or
/// creating absent tables (DynamoDB).
pub async fn open_store(
    storage: &StorageSettings,
    opening: Opening,
) -> Result<Arc<dyn Store>, BuildError> {
    Ok(match storage {
        StorageSettings::Sqlite { path, durability } => Arc::new(match opening {
            Opening::Serve => SqliteStore::open(path, *durability)?,
            Opening::Operator => SqliteStore::open_beside_server(path, *durability)?,
        }),
        StorageSettings::Postgres {
            url,
            max_connections,
        } => Arc::new(PostgresStore::connect(url.expose(), *max_connections).await?),
        StorageSettings::DynamoDb { .. } => dynamodb_store(storage).await?,
    })
}

/// The configured OAuth client, if DEXCOM_CLIENT_ID, DEXCOM_CLIENT_SECRET and
/// DEXCOM_REDIRECT_URI are all set (settings refuse a partial set).
fn oauth_config(s: &DexcomSettings) -> Option<OAuthConfig> {
    Some(OAuthConfig {
        base_url: s.api_base_url.clone(),
        client_id: s.client_id.clone()?,
        client_secret: s.client_secret.clone()?,
        redirect_uri: s.redirect_uri.clone()?,
        pkce: s.pkce,
        state_ttl: s.state_ttl,
        pending_per_user: s.pending_per_user,
    })
}

/// Dexcom's client stack for these settings and OAuth client.
fn dexcom_stack(
    store: &Arc<dyn Store>,
    settings: &DexcomSettings,
    oauth: OAuthConfig,
    cipher: Arc<TokenCipher>,
) -> DexcomStack {
    DexcomStack::build(
        store.clone(),
        cipher,
        oauth,
        Outbound::from_settings(settings),
        settings.api_version,
    )
}

/// TOKEN_ENCRYPTION_KEY (plus previous keys), or in development a generated key
/// kept next to the SQLite file.
fn token_cipher(settings: &Settings) -> Result<TokenCipher, BuildError> {
    let previous: Vec<[u8; 32]> = settings
        .token_encryption_key_previous
        .iter()
        .map(|k| *k.expose())
        .collect();
    if let Some(key) = &settings.token_encryption_key {
        return Ok(TokenCipher::new(key.expose(), &previous));
    }
    // Settings refuse a missing key outside development. The key lives next to
    // the SQLite file, or in ./data for the other backends.
    let dir = match &settings.storage {
        StorageSettings::Sqlite { path, .. } => path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new(".")),
        _ => std::path::Path::new("data"),
    };
    let (key, key_path) = key_file::load_or_create(dir).map_err(|error| BuildError::KeyFile {
        path: dir.join(key_file::FILE_NAME).display().to_string(),
        error,
    })?;
    tracing::warn!(
        path = %key_path.display(),
        "TOKEN_ENCRYPTION_KEY is not set: OAuth tokens are sealed with a generated development key kept in this file (staging and production require TOKEN_ENCRYPTION_KEY)"
    );
    Ok(TokenCipher::new(&key, &previous))
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// The DynamoDB store of `STORAGE_BACKEND=dynamodb` (tables created when absent).
#[cfg(feature = "dynamodb")]
async fn dynamodb_store(storage: &StorageSettings) -> Result<Arc<dyn Store>, BuildError> {
    use crate::store::dynamodb::{DynamoSettings, DynamoStore, Tables};
    let StorageSettings::DynamoDb {
        endpoint,
        region,
        readings_table,
        user_tokens_table,
        sync_jobs_table,
        aux_table,
        credentials,
    } = storage
    else {
        return Err(StoreError::Internal("not dynamodb settings".into()).into());
    };
    let store = DynamoStore::connect(DynamoSettings {
        endpoint: endpoint.as_ref().map(|u| u.to_string()),
        region: region.clone(),
        tables: Tables {
            readings: readings_table.clone(),
            user_tokens: user_tokens_table.clone(),
            sync_jobs: sync_jobs_table.clone(),
            aux: aux_table.clone(),
        },
        static_credentials: credentials.as_deref().cloned(),
    })
    .await?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "dynamodb"))]
async fn dynamodb_store(_: &StorageSettings) -> Result<Arc<dyn Store>, BuildError> {
    Err(StoreError::Internal(
        "STORAGE_BACKEND=dynamodb needs a build with the cargo feature \"dynamodb\"".into(),
    )
    .into())
}

/// The built-in accounts over `store`: on when AUTH_JWT_SECRET can sign their
/// access tokens (with AUTH_ISSUER and AUTH_AUDIENCE, as `Authenticator`
/// checks them); with only a JWKS configured they are off (503).
pub fn account_service(
    settings: &Settings,
    store: Arc<dyn crate::store::Store>,
) -> Result<crate::accounts::AccountService, BuildError> {
    let signer = settings
        .auth_jwt_secret
        .clone()
        .map(|secret| crate::accounts::Signer {
            secret,
            issuer: settings.auth_issuer.clone(),
            audience: settings.auth_audience.clone(),
        });
    let mut accounts = settings.accounts.clone();
    accounts.public_base_url = settings.public_base_url.clone();
    Ok(crate::accounts::AccountService::new(
        store, signer, accounts,
    )?)
}
