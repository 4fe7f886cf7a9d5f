//! Runs the background components of a serving instance (relay, workers, the
//! HTTP listener, ...) as one ordered list, so that starting, readiness and an
//! orderly shutdown are written once instead of by hand for each.
//!
//! Components start in list order, each ready before the next starts; a
//! component that fails to start or to become ready stops the ones before it
//! (in reverse) and its error is returned. Shutdown happens in two steps: the
//! shared stop signal tells every component at once to take no new work (stop
//! accepting, stop claiming), then each is stopped in reverse order, finishing
//! what it has in flight within what is left of the shutdown budget. So a
//! component placed early (the outbox relay, the audit writer) outlives those
//! after it and sees everything they produce.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::time::Instant;

/// One piece of background work.
#[async_trait]
pub trait Component: Send {
    /// Names the component in logs and errors.
    fn name(&self) -> &'static str;

    /// Starts the work. `stop` fires when shutdown begins: work that must end
    /// with the others at once (accepting requests, claiming jobs) watches it;
    /// work that must outlive the components after it waits for `stop()`.
    async fn start(&mut self, stop: &watch::Receiver<bool>) -> std::io::Result<()>;

    /// Resolves once the component does its job (listening, subscribed).
    async fn ready(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    /// Finishes what is in flight, by `deadline` where it can (some get a
    /// moment past it, see each). Err only for a failure worth exiting non-zero.
    async fn stop(&mut self, deadline: Instant) -> std::io::Result<()>;
}

pub struct Supervisor {
    components: Vec<Box<dyn Component>>,
    stop: watch::Sender<bool>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self {
            components: Vec::new(),
            stop: watch::channel(false).0,
        }
    }
}

impl Supervisor {
    /// Appends a component: it starts after, and stops before, those added earlier.
    pub fn add(&mut self, component: impl Component + 'static) {
        self.components.push(Box::new(component));
    }

    /// Starts every component, runs until `shutdown` resolves, then stops them
    /// all within `grace`. Returns the first start failure (after stopping the
    /// components already started), or else the first stop failure.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
        grace: Duration,
    ) -> std::io::Result<()> {
        let signal = self.stop.subscribe();
        let mut started = 0;
        let mut failed = None;
        for component in &mut self.components {
            let name = component.name();
            tracing::debug!(component = name, "starting");
            if let Err(e) = component.start(&signal).await {
                tracing::error!(component = name, error = %e, "failed to start");
                failed = Some(failure(name, e));
                break;
            }
            // Started, so it is stopped whether or not it becomes ready.
            started += 1;
            if let Err(e) = component.ready().await {
                tracing::error!(component = name, error = %e, "failed to become ready");
                failed = Some(failure(name, e));
                break;
            }
            tracing::info!(component = name, "started");
        }
        if failed.is_none() {
            shutdown.await;
            tracing::info!(grace_seconds = grace.as_secs(), "shutting down");
        }
        let deadline = Instant::now() + grace;
        let _ = self.stop.send(true);
        let mut outcome = failed.map_or(Ok(()), Err);
        for component in self.components[..started].iter_mut().rev() {
            let name = component.name();
            tracing::debug!(component = name, "stopping");
            match component.stop(deadline).await {
                Ok(()) => tracing::info!(component = name, "stopped"),
                Err(e) => {
                    tracing::error!(component = name, error = %e, "failed while stopping");
                    if outcome.is_ok() {
                        outcome = Err(e);
                    }
                }
            }
        }
        outcome
    }
}

fn failure(name: &str, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{name} failed to start: {e}"))
}

/// Waits for `task` (if it was started) until `deadline`; false when it was
/// still running.
pub async fn join_by<T>(task: Option<tokio::task::JoinHandle<T>>, deadline: Instant) -> bool {
    match task {
        Some(task) => tokio::time::timeout_at(deadline, task).await.is_ok(),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    type Log = Arc<Mutex<Vec<String>>>;

    /// Records its calls; fails where told to.
    struct Step {
        name: &'static str,
        log: Log,
        fail_start: bool,
        fail_ready: bool,
        /// Whether the stop signal had fired when `stop` was called.
        saw_signal: Option<watch::Receiver<bool>>,
    }

    fn step(name: &'static str, log: &Log) -> Step {
        Step {
            name,
            log: log.clone(),
            fail_start: false,
            fail_ready: false,
            saw_signal: None,
        }
    }

    #[async_trait]
    impl Component for Step {
        fn name(&self) -> &'static str {
            self.name
        }
        async fn start(&mut self, stop: &watch::Receiver<bool>) -> std::io::Result<()> {
            self.log
                .lock()
                .unwrap()
                .push(format!("start {}", self.name));
            self.saw_signal = Some(stop.clone());
            if self.fail_start {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file",
                ));
            }
            Ok(())
        }
        async fn ready(&mut self) -> std::io::Result<()> {
            self.log
                .lock()
                .unwrap()
                .push(format!("ready {}", self.name));
            if self.fail_ready {
                return Err(std::io::Error::other("never listening"));
            }
            Ok(())
        }
        async fn stop(&mut self, _deadline: Instant) -> std::io::Result<()> {
            let signalled = self.saw_signal.as_ref().is_some_and(|s| *s.borrow());
            self.log
                .lock()
                .unwrap()
                .push(format!("stop {} signalled={signalled}", self.name));
            Ok(())
        }
    }

    fn entries(log: &Log) -> Vec<String> {
        log.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn components_start_in_order_and_stop_in_reverse_after_the_signal() {
        let log = Log::default();
        let mut supervisor = Supervisor::default();
        for name in ["relay", "engine", "http"] {
            supervisor.add(step(name, &log));
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(supervisor.run(
            async {
                let _ = rx.await;
            },
            Duration::from_secs(1),
        ));
        // Nothing stops before shutdown is asked for.
        tokio::task::yield_now().await;
        let _ = tx.send(());
        running.await.unwrap().expect("clean run");
        assert_eq!(
            entries(&log),
            [
                "start relay",
                "ready relay",
                "start engine",
                "ready engine",
                "start http",
                "ready http",
                "stop http signalled=true",
                "stop engine signalled=true",
                "stop relay signalled=true",
            ]
        );
    }

    #[tokio::test]
    async fn a_component_that_fails_to_start_stops_those_before_it_and_fails_serve() {
        let log = Log::default();
        let mut supervisor = Supervisor::default();
        supervisor.add(step("relay", &log));
        supervisor.add(step("engine", &log));
        supervisor.add(Step {
            fail_start: true,
            ..step("http", &log)
        });
        supervisor.add(step("after", &log));
        let error = supervisor
            .run(std::future::pending(), Duration::from_secs(1))
            .await
            .expect_err("the start failure is returned");
        assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(error.to_string(), "http failed to start: no such file");
        assert_eq!(
            entries(&log),
            [
                "start relay",
                "ready relay",
                "start engine",
                "ready engine",
                "start http",
                "stop engine signalled=true",
                "stop relay signalled=true",
            ],
            "the failed one is not stopped, the one after it never starts"
        );
    }

    #[tokio::test]
    async fn a_component_that_never_becomes_ready_is_stopped_with_those_before_it() {
        let log = Log::default();
        let mut supervisor = Supervisor::default();
        supervisor.add(step("relay", &log));
        supervisor.add(Step {
            fail_ready: true,
            ..step("http", &log)
        });
        let error = supervisor
            .run(std::future::pending(), Duration::from_secs(1))
            .await
            .expect_err("the readiness failure is returned");
        assert_eq!(error.to_string(), "http failed to start: never listening");
        assert_eq!(
            entries(&log),
            [
                "start relay",
                "ready relay",
                "start http",
                "ready http",
                "stop http signalled=true",
                "stop relay signalled=true",
            ]
        );
    }
}
