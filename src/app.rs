//! Wiring: builds the store, event bus, pipeline and router from settings, and runs
//! the server with graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{self, AppContext, AppState, Limits};
use crate::config::{EventBusKind, Settings, StorageSettings};
use crate::domain::TimePolicy;
use crate::events::{EventBus, MemoryBus};
use crate::pipeline::Pipeline;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};
use crate::telemetry;

/// Everything a running instance holds.
pub struct App {
    pub state: AppState,
    pub settings: Settings,
}

impl App {
    pub fn build(settings: Settings) -> Result<Self, StoreError> {
        let store: Arc<dyn Store> = match &settings.storage {
            StorageSettings::Sqlite { path, durability } => {
                Arc::new(SqliteStore::open(path, *durability)?)
            }
        };
        let bus: Arc<dyn EventBus> = match settings.event_bus {
            EventBusKind::Memory => Arc::new(MemoryBus::default()),
        };
        let policy = TimePolicy {
            max_age_years: settings.reading_max_age_years,
            ..TimePolicy::default()
        };
        let state = Arc::new(AppContext {
            pipeline: Pipeline::new(store.clone(), bus.clone(), policy),
            store,
            event_bus_name: bus.name(),
            metrics: telemetry::metrics_handle(),
            limits: Limits {
                max_body_bytes: settings.max_body_bytes,
                max_batch_records: settings.max_batch_records,
            },
            public_base_url: settings.public_base_url.as_deref().map(Arc::from),
            auth_disabled: settings.auth_disabled,
        });
        Ok(Self { state, settings })
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
        let demo = self.settings.demo.then(|| {
            tokio::spawn(crate::sources::demo_feed::run(
                self.state.pipeline.clone(),
                self.settings.demo_backfill_days,
                stop_rx.clone(),
            ))
        });
        let grace = self.settings.shutdown_timeout;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, storage = self.state.store.backend(), demo = self.settings.demo, "cgm-hub listening");

        let mut signal_rx = stop_rx.clone();
        let server = axum::serve(
            listener,
            self.router()
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = signal_rx.changed().await;
        });
        let server = tokio::spawn(async move { server.await });

        shutdown.await;
        tracing::info!(grace_seconds = grace.as_secs(), "shutting down");
        let deadline = tokio::time::Instant::now() + grace;
        let _ = stop_tx.send(true);
        if let Some(demo) = demo {
            let _ = tokio::time::timeout_at(deadline, demo).await;
        }
        match tokio::time::timeout_at(deadline, server).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(std::io::Error::other(join)),
            Err(_) => {
                tracing::warn!("in-flight requests did not finish in time; exiting");
                Ok(())
            }
        }
    }
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
