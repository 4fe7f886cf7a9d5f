//! The background components `App::serve` runs under its `Supervisor`, one
//! struct each, in the order `serve` lists them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::supervisor::{join_by, Component};
use crate::api::{self, AppState};
use crate::config::Settings;
use crate::events::relay::Relay;
use crate::events::{subscriber, EventBus, Subscriber};
use crate::serving::{self, ConnectionLimit};
use crate::sources::dexcom::service::DexcomService;
use crate::store::Store;
use crate::sync::engine::SyncEngine;
use crate::sync::scheduler::Scheduler;
use crate::tasks::{StoreQueue, TaskRunner};

/// What is left of the budget, but at least a moment: for work whose loss
/// costs more than a slightly late exit (the audit trail, the outbox).
fn at_least_a_moment(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1))
}

fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// `serve --demo`: the in-process Dexcom simulator and the demo patients
/// connecting through it. First, because it configures the Dexcom service.
pub struct Demo {
    /// The simulator, started by `App::build`; taken when it runs.
    pub demo: Option<super::demo::Demo>,
    pub service: Arc<DexcomService>,
    /// Where the patients' profiles are stored.
    pub store: Arc<dyn crate::store::Store>,
    /// Where cgm-hub listens (the demo's OAuth redirect comes back there).
    pub local: SocketAddr,
    pub task: Option<JoinHandle<()>>,
}

#[async_trait]
impl Component for Demo {
    fn name(&self) -> &'static str {
        "demo"
    }

    async fn start(&mut self, stop: &watch::Receiver<bool>) -> std::io::Result<()> {
        let demo = self
            .demo
            .take()
            .ok_or_else(|| std::io::Error::other("started twice"))?;
        // Connecting the patients goes through our own listener, which accepts
        // once it starts (the socket is bound already).
        self.task = Some(tokio::spawn(demo.run(
            self.service.clone(),
            self.store.clone(),
            self.local,
            stop.clone(),
        )));
        Ok(())
    }

    async fn stop(&mut self, deadline: Instant) -> std::io::Result<()> {
        join_by(self.task.take(), deadline).await;
        Ok(())
    }
}

/// Runs each of this instance's event subscribers; they stop after the relay
/// and the consumer, so they see the events of everything else.
pub struct EventSubscribers {
    pub bus: Arc<dyn EventBus>,
    pub subscribers: Vec<Arc<dyn Subscriber>>,
    pub stop: watch::Sender<bool>,
    pub tasks: Vec<JoinHandle<()>>,
}

#[async_trait]
impl Component for EventSubscribers {
    fn name(&self) -> &'static str {
        "event subscribers"
    }

    async fn start(&mut self, _: &watch::Receiver<bool>) -> std::io::Result<()> {
        for s in &self.subscribers {
            tracing::info!(subscriber = s.name(), "event subscriber running");
            let task = subscriber::run(self.bus.hub(), s.clone(), self.stop.subscribe());
            self.tasks.push(task);
        }
        Ok(())
    }

    async fn stop(&mut self, deadline: Instant) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            join_by(Some(task), deadline).await;
        }
        Ok(())
    }
}

/// With RabbitMQ, this instance's queue on the exchange, feeding the hub: ready
/// (bound) before the relay publishes, so this instance sees its own events.
pub struct EventConsumer {
    pub bus: Arc<dyn EventBus>,
    pub stop: watch::Sender<bool>,
    pub task: Option<JoinHandle<()>>,
}

#[async_trait]
impl Component for EventConsumer {
    fn name(&self) -> &'static str {
        "event consumer"
    }

    async fn start(&mut self, _: &watch::Receiver<bool>) -> std::io::Result<()> {
        // A broker that is down is not fatal: the consumer keeps trying, and
        // /health says so meanwhile.
        self.task = self.bus.start_consuming(self.stop.subscribe()).await;
        Ok(())
    }

    async fn stop(&mut self, deadline: Instant) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        join_by(self.task.take(), deadline).await;
        Ok(())
    }
}

/// The outbox relay. Early in the list so that it stops last: the events of
/// everything stopped before it are published before exit (what is not stays
/// in the outbox for the next start).
pub struct OutboxRelay {
    pub relay: Arc<Relay>,
    pub stop: watch::Sender<bool>,
    pub task: Option<JoinHandle<()>>,
}

#[async_trait]
impl Component for OutboxRelay {
    fn name(&self) -> &'static str {
        "outbox relay"
    }

    async fn start(&mut self, _: &watch::Receiver<bool>) -> std::io::Result<()> {
        self.task = Some(self.relay.start(self.stop.subscribe()));
        Ok(())
    }

    async fn stop(&mut self, deadline: Instant) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(at_least_a_moment(deadline), task).await;
        }
        Ok(())
    }
}

/// Dexcom's tokens: sealed again under the current key at start; at stop, a
/// refresh in flight must land, or its rotated token is lost.
pub struct DexcomTokens {
    pub service: Arc<DexcomService>,
}

#[async_trait]
impl Component for DexcomTokens {
    fn name(&self) -> &'static str {
        "dexcom tokens"
    }

    async fn start(&mut self, _: &watch::Receiver<bool>) -> std::io::Result<()> {
        match self.service.rewrap_tokens().await {
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
        Ok(())
    }

    async fn stop(&mut self, deadline: Instant) -> std::io::Result<()> {
        self.service
            .client()
            .tokens()
            .shutdown(left(deadline))
            .await;
        Ok(())
    }
}

/// The sync engine's job workers. At stop, runs in flight get the rest of the
/// budget; one that cannot finish keeps its checkpoint and is resumed after
/// the restart.
pub struct SyncWorkers {
    pub engine: Arc<SyncEngine>,
}

#[async_trait]
impl Component for SyncWorkers {
    fn name(&self) -> &'static str {
        "sync engine"
    }

    async fn start(&mut self, stop: &watch::Receiver<bool>) -> std::io::Result<()> {
        self.engine.start(stop.clone());
        Ok(())
    }

    async fn stop(&mut self, deadline: Instant) -> std::io::Result<()> {
        self.engine.shutdown(left(deadline)).await;
        Ok(())
    }
}

/// Queues each connected user's scheduled poll.
pub struct SyncScheduler {
    pub engine: Arc<SyncEngine>,
    pub task: Option<JoinHandle<()>>,
}

#[async_trait]
impl Component for SyncScheduler {
    fn name(&self) -> &'static str {
        "sync scheduler"
    }

    async fn start(&mut self, stop: &watch::Receiver<bool>) -> std::io::Result<()> {
        let scheduler = Scheduler::new(self.engine.clone());
        self.task = Some(tokio::spawn(scheduler.run(stop.clone())));
        Ok(())
    }

    async fn stop(&mut self, deadline: Instant) -> std::io::Result<()> {
        join_by(self.task.take(), deadline).await;
        Ok(())
    }
}

/// The general task runner's workers (every registered kind but sync, which
/// the sync engine runs on its own queue). At stop, a task in flight gets the
/// rest of the budget; one that cannot finish is put back for the next start.
pub struct TaskWorkers {
    pub runner: Arc<TaskRunner<StoreQueue>>,
}

#[async_trait]
impl Component for TaskWorkers {
    fn name(&self) -> &'static str {
        "task runner"
    }

    async fn start(&mut self, stop: &watch::Receiver<bool>) -> std::io::Result<()> {
        self.runner.start(stop.clone());
        Ok(())
    }

    async fn stop(&mut self, deadline: Instant) -> std::io::Result<()> {
        self.runner.shutdown(left(deadline)).await;
        Ok(())
    }
}

/// Deletes expired pending OAuth authorizations.
pub struct AuthorizationPruner {
    pub store: Arc<dyn Store>,
    pub every: Duration,
    pub task: Option<JoinHandle<()>>,
}

#[async_trait]
impl Component for AuthorizationPruner {
    fn name(&self) -> &'static str {
        "authorization pruner"
    }

    async fn start(&mut self, stop: &watch::Receiver<bool>) -> std::io::Result<()> {
        self.task = Some(crate::connections::pruner::start(
            self.store.clone(),
            self.every,
            stop.clone(),
        ));
        Ok(())
    }

    async fn stop(&mut self, deadline: Instant) -> std::io::Result<()> {
        join_by(self.task.take(), deadline).await;
        Ok(())
    }
}

/// Raises `stale` alerts for users whose readings stopped, on every instance
/// (`pipeline::stale` says why without a lease).
pub struct StaleAlerts {
    pub store: Arc<dyn Store>,
    pub every: Duration,
    pub task: Option<JoinHandle<()>>,
}

#[async_trait]
impl Component for StaleAlerts {
    fn name(&self) -> &'static str {
        "stale alerts"
    }

    async fn start(&mut self, stop: &watch::Receiver<bool>) -> std::io::Result<()> {
        let watch = crate::pipeline::stale::StaleWatch::new(
            self.store.clone(),
            self.store.clone(),
            self.store.clone(),
        );
        self.task = Some(watch.start(self.every, stop.clone()));
        Ok(())
    }

    async fn stop(&mut self, deadline: Instant) -> std::io::Result<()> {
        join_by(self.task.take(), deadline).await;
        Ok(())
    }
}

/// Processes stored webhook deliveries. After the sync engine, so that it stops
/// first: it queues the engine's jobs.
pub struct WebhookWorker {
    pub state: AppState,
}

#[async_trait]
impl Component for WebhookWorker {
    fn name(&self) -> &'static str {
        "webhook inbox"
    }

    async fn start(&mut self, stop: &watch::Receiver<bool>) -> std::io::Result<()> {
        self.state.inbox.start(stop.clone());
        Ok(())
    }

    async fn stop(&mut self, deadline: Instant) -> std::io::Result<()> {
        self.state.inbox.shutdown(left(deadline)).await;
        Ok(())
    }
}

/// The audit trail's writer (running since the app was built). Just before the
/// listener, so it stops right after it: the trail of requests already
/// answered is flushed, even if draining connections used up the budget.
pub struct AuditWriter {
    pub state: AppState,
}

#[async_trait]
impl Component for AuditWriter {
    fn name(&self) -> &'static str {
        "audit writer"
    }

    async fn start(&mut self, _: &watch::Receiver<bool>) -> std::io::Result<()> {
        Ok(())
    }

    async fn stop(&mut self, deadline: Instant) -> std::io::Result<()> {
        self.state.audit.shutdown(at_least_a_moment(deadline)).await;
        Ok(())
    }
}

/// The HTTP(S) listener. Last, so it accepts once everything behind it runs,
/// and stops first: it stops accepting, and in-flight requests get the budget
/// to finish.
pub struct HttpListener {
    pub state: AppState,
    pub settings: Settings,
    pub listener: Option<TcpListener>,
    pub handle: axum_server::Handle<SocketAddr>,
    pub task: Option<JoinHandle<std::io::Result<()>>>,
}

#[async_trait]
impl Component for HttpListener {
    fn name(&self) -> &'static str {
        "http listener"
    }

    async fn start(&mut self, _: &watch::Receiver<bool>) -> std::io::Result<()> {
        let listener = self
            .listener
            .take()
            .ok_or_else(|| std::io::Error::other("started twice"))?;
        let addr = listener.local_addr()?;
        let scheme = if self.settings.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let service =
            api::router(self.state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let limit = ConnectionLimit::new(self.settings.http.max_connections);
        let listener = listener.into_std()?;
        let task = match &self.settings.tls {
            None => {
                let mut server = axum_server::from_tcp(listener)?
                    .acceptor(limit)
                    .handle(self.handle.clone());
                serving::configure(server.http_builder(), &self.settings.http);
                tokio::spawn(async move { server.serve(service).await })
            }
            Some(tls) => {
                // rustls speaks TLS 1.2 and 1.3 only.
                let config = RustlsConfig::from_pem_file(&tls.cert_path, &tls.key_path).await?;
                // The limit first: a connection over it is closed before its handshake.
                let mut server = axum_server::from_tcp(listener)?
                    .acceptor(RustlsAcceptor::new(config).acceptor(limit))
                    .handle(self.handle.clone());
                serving::configure(server.http_builder(), &self.settings.http);
                tokio::spawn(async move { server.serve(service).await })
            }
        };
        self.task = Some(task);
        tracing::info!(%addr, scheme, storage = self.state.store.backend(), demo = self.settings.demo, "cgm-hub listening");
        Ok(())
    }

    async fn ready(&mut self) -> std::io::Result<()> {
        match self.handle.listening().await {
            Some(_) => Ok(()),
            None => match self.task.take() {
                Some(task) => match task.await {
                    Ok(Err(e)) => Err(e),
                    Ok(Ok(())) => Err(std::io::Error::other("the listener ended at once")),
                    Err(join) => Err(std::io::Error::other(join)),
                },
                None => Err(std::io::Error::other("not started")),
            },
        }
    }

    async fn stop(&mut self, deadline: Instant) -> std::io::Result<()> {
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        // First to stop: this is the moment shutdown began, and in-flight
        // requests get the whole budget. Live streams never end by themselves:
        // they are ended (after what they have queued) so they do not hold it up.
        self.state.live.close_all();
        self.handle.graceful_shutdown(Some(left(deadline)));
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(served)) => served,
            Ok(Err(join)) => Err(std::io::Error::other(join)),
            Err(_) => {
                tracing::warn!("in-flight requests did not finish in time; exiting");
                Ok(())
            }
        }
    }
}
