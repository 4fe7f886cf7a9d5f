//! Wiring: builds the store, event bus, pipeline and router from settings, and runs
//! the server with graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
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
use crate::events::{EventBus, MemoryBus};
use crate::pipeline::Pipeline;
use crate::serving::{self, ConnectionLimit};
use crate::sources::demo_dexcom;
use crate::sources::dexcom::oauth::OAuthConfig;
use crate::sources::dexcom::outbound::Outbound;
use crate::sources::dexcom::service::DexcomService;
use crate::sources::webhook::worker::WebhookInbox;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};
use crate::sync::engine::SyncSettings;
use crate::sync::scheduler::Scheduler;
use crate::telemetry;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot open storage: {0}")]
    Store(#[from] StoreError),
    #[error("cannot read or create the development token key {path}: {error}")]
    KeyFile { path: String, error: std::io::Error },
}

/// Everything a running instance holds.
pub struct App {
    pub state: AppState,
    pub settings: Settings,
    cipher: Arc<TokenCipher>,
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
                // In-process: connected for as long as the process runs.
                metrics::gauge!("event_bus_connected", "bus" => "memory").set(1.0);
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
        let pipeline = Pipeline::new(store.clone(), policy);
        let state = Arc::new(AppContext {
            pipeline: pipeline.clone(),
            audit: crate::auth::audit::AuditLog::start(store.clone()),
            relay: Relay::new(store.clone(), bus.clone()),
            tasks: crate::tasks::TaskRunner::new(
                crate::tasks::StoreQueue::new(store.clone()),
                crate::tasks::RunnerSettings::default(),
                format!("tasks-{}", uuid::Uuid::new_v4()),
            ),
            event_bus: bus,
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
            dexcom: std::sync::OnceLock::new(),
            rate_limits: crate::api::rate_limit::RateLimits::new(settings.rate_limits.clone()),
            health: Default::default(),
            write_quota: crate::api::write_quota::WriteQuota::per_hour(
                settings.write_quota_readings_per_hour,
            ),
            tls: settings.tls.is_some(),
            webhook_secret: settings.webhook_signing_secret.clone(),
            inbox: WebhookInbox::new(pipeline),
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
        let cipher = Arc::new(token_cipher(&settings)?);
        // The demo connects to its own simulator once serving starts.
        if !settings.demo {
            if let Some(oauth) = oauth_config(&settings.dexcom) {
                let service = dexcom_service(
                    &state,
                    &settings.dexcom,
                    settings.sync.clone(),
                    oauth,
                    cipher.clone(),
                );
                let _ = state.dexcom.set(service);
            }
        }
        Ok(Self {
            state,
            settings,
            cipher,
        })
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
        let (stop_tx, stop_rx) = watch::channel(false);
        let demo = if self.settings.demo {
            let local = listener.local_addr()?;
            let (sim, service) =
                demo_dexcom::start(&self.state, &self.settings, self.cipher.clone(), local).await?;
            Some(tokio::spawn(demo_dexcom::run(
                sim,
                service,
                stop_rx.clone(),
            )))
        } else {
            None
        };
        if let Some(dexcom) = self.state.dexcom.get() {
            match dexcom.rewrap_tokens().await {
                Ok(r) if r.rewrapped == 0 && r.left == 0 => {}
                Ok(r) if r.left == 0 => tracing::info!(
                    rewrapped = r.rewrapped,
                    "tokens sealed again under the current TOKEN_ENCRYPTION_KEY"
                ),
                Ok(r) => tracing::warn!(
                    rewrapped = r.rewrapped,
                    left = r.left,
                    "some tokens are still sealed under a previous key; keep \
                     TOKEN_ENCRYPTION_KEY_PREVIOUS and restart later"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "could not re-seal tokens under the current key")
                }
            }
        }
        // Background work: the outbox relay and the webhook inbox always; the
        // sync engine and the scheduler once Dexcom is configured.
        let (relay_stop_tx, relay_stop_rx) = watch::channel(false);
        let relay = self.state.relay.start(relay_stop_rx);
        self.state.inbox.start(stop_rx.clone());
        self.state.tasks.start(stop_rx.clone());
        let pruner = crate::connections::pruner::start(
            self.state.store.clone(),
            self.settings.dexcom.state_prune_interval,
            stop_rx.clone(),
        );
        if let Some(dexcom) = self.state.dexcom.get() {
            let engine = dexcom.engine();
            self.state.inbox.set_engine(engine.clone());
            engine.start(stop_rx.clone());
            tokio::spawn(Scheduler::new(engine.clone()).run(stop_rx.clone()));
        }
        let grace = self.settings.shutdown_timeout;
        let addr = listener.local_addr()?;
        let scheme = if self.settings.tls.is_some() {
            "https"
        } else {
            "http"
        };
        tracing::info!(%addr, scheme, storage = self.state.store.backend(), demo = self.settings.demo, "cgm-hub listening");

        let mut signal_rx = stop_rx.clone();
        let service = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        let handle = axum_server::Handle::new();
        let stop = handle.clone();
        tokio::spawn(async move {
            let _ = signal_rx.changed().await;
            stop.graceful_shutdown(Some(grace));
        });
        let limit = ConnectionLimit::new(self.settings.http.max_connections);
        let listener = listener.into_std()?;
        let server = match &self.settings.tls {
            None => {
                let mut server = axum_server::from_tcp(listener)?
                    .acceptor(limit)
                    .handle(handle);
                serving::configure(server.http_builder(), &self.settings.http);
                tokio::spawn(async move { server.serve(service).await })
            }
            Some(tls) => {
                // rustls speaks TLS 1.2 and 1.3 only.
                let config = RustlsConfig::from_pem_file(&tls.cert_path, &tls.key_path).await?;
                // The limit first: a connection over it is closed before its handshake.
                let mut server = axum_server::from_tcp(listener)?
                    .acceptor(RustlsAcceptor::new(config).acceptor(limit))
                    .handle(handle);
                serving::configure(server.http_builder(), &self.settings.http);
                tokio::spawn(async move { server.serve(service).await })
            }
        };

        shutdown.await;
        tracing::info!(grace_seconds = grace.as_secs(), "shutting down");
        let deadline = tokio::time::Instant::now() + grace;
        let _ = stop_tx.send(true);
        if let Some(demo) = demo {
            let _ = tokio::time::timeout_at(deadline, demo).await;
        }
        let served = tokio::time::timeout_at(deadline, server).await;
        // The trail of requests already answered gets at least a moment, even if
        // draining connections used up the grace period.
        let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
        self.state
            .audit
            .shutdown(left().max(std::time::Duration::from_secs(1)))
            .await;
        // Sync runs in flight get the rest of the grace period; one that cannot
        // finish keeps its checkpoint and is resumed after the restart.
        self.state.inbox.shutdown(left()).await;
        self.state.tasks.shutdown(left()).await;
        let _ = tokio::time::timeout(left(), pruner).await;
        if let Some(dexcom) = self.state.dexcom.get() {
            dexcom.engine().shutdown(left()).await;
            // A token refresh in flight must land, or its rotated token is lost.
            dexcom.client().tokens().shutdown(left()).await;
        }
        // Last, so the events of everything above are published before exit
        // (what is not stays in the outbox for the next start).
        let _ = relay_stop_tx.send(true);
        let _ = tokio::time::timeout(left().max(std::time::Duration::from_secs(1)), relay).await;
        match served {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(std::io::Error::other(join)),
            Err(_) => {
                tracing::warn!("in-flight requests did not finish in time; exiting");
                Ok(())
            }
        }
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

/// The Dexcom service for these settings and OAuth client.
pub fn dexcom_service(
    state: &AppState,
    settings: &DexcomSettings,
    sync: SyncSettings,
    oauth: OAuthConfig,
    cipher: Arc<TokenCipher>,
) -> Arc<DexcomService> {
    DexcomService::build(
        state.pipeline.clone(),
        cipher,
        oauth,
        Outbound::from_settings(settings),
        settings.api_version,
        sync,
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
        static_credentials: None,
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
