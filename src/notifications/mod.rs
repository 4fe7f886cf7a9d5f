//! Notification endpoints: outbound signed webhooks for alert events, so that
//! a patient, and everyone a patient shares with, hears of an alert where
//! they choose (contract "Alerts and live streams").
//!
//! Durable end to end: the outbox relay hands each batch to `NotificationSink`
//! before deleting it, and the sink queues one fan-out task per alert event
//! (idempotency key: the event id, so a batch handed over twice queues
//! nothing twice). The fan-out task queues one delivery task per (event,
//! endpoint) of the patient and of every active grantee (key: event id and
//! endpoint id). Deliveries run on a runner of their own (NOTIFICATION_WORKERS),
//! at most one per endpoint at a time (the endpoint is the concurrency key), each
//! bounded by NOTIFICATION_TIMEOUT_SECONDS, retried with NOTIFICATION_RETRY_DELAYS
//! until NOTIFICATION_GIVE_UP_HOURS; ingest never waits for any of it.

pub mod target;

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::config::NotificationSettings;
use crate::connections::cipher::TokenCipher;
use crate::domain::{FieldError, UserId};
use crate::events::{EventSink, SinkError};
use crate::records::events::Message;
use crate::records::notifications::{
    EndpointId, EndpointWrite, NotificationEndpoint, NotificationEvent,
};
use crate::records::shares::SharePage;
use crate::records::tasks::{NewTask, Task, TaskEnd};
use crate::sources::webhook::signature;
use crate::store::{Store, StoreError};
use crate::tasks::{LeaseLost, RunContext, RunnerSettings, StoreQueue, TaskHandler, TaskRunner};
use target::{EndpointUrl, TargetError};

/// Task kinds.
pub const FANOUT_KIND: &str = "notification_fanout";
pub const DELIVERY_KIND: &str = "notification_delivery";

/// Secret lengths accepted, in characters.
pub const SECRET_CHARS: std::ops::RangeInclusive<usize> = 16..=256;

/// Headers of a delivery besides the signature's two.
pub const ID_HEADER: &str = "x-webhook-id";
pub const EVENT_HEADER: &str = "x-webhook-event";

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The request is invalid: one error per field.
    #[error("invalid notification endpoint")]
    Invalid(Vec<FieldError>),
    #[error("user {user} already holds the most notification endpoints allowed ({max})")]
    LimitReached { user: UserId, max: usize },
    #[error("cannot seal the endpoint's secret")]
    Seal,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An endpoint to create, as the API received it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointInput {
    pub url: String,
    #[serde(deserialize_with = "sealed_later")]
    pub secret: crate::secret::Secret<String>,
    pub events: Vec<String>,
}

/// The secret goes straight into a `Secret` (never printed), sealed by `create`.
fn sealed_later<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<crate::secret::Secret<String>, D::Error> {
    String::deserialize(d).map(crate::secret::Secret::new)
}

/// The service: creating endpoints (checked and sealed), and the delivery
/// machinery (sink, fan-out, deliveries) on its own runner.
pub struct Notifications {
    store: Arc<dyn Store>,
    cipher: Arc<TokenCipher>,
    settings: NotificationSettings,
    runner: Arc<TaskRunner<StoreQueue>>,
}

/// What the cipher binds an endpoint's secret to.
fn secret_context(user: &UserId, id: EndpointId) -> String {
    format!("notification-endpoint/{user}/{id}")
}

impl Notifications {
    pub fn new(
        store: Arc<dyn Store>,
        cipher: Arc<TokenCipher>,
        settings: NotificationSettings,
    ) -> Arc<Self> {
        let runner = TaskRunner::new(
            StoreQueue::new(store.clone()),
            RunnerSettings {
                workers: settings.workers,
                ..RunnerSettings::default()
            },
            format!("notify-{}", uuid::Uuid::new_v4()),
        );
        let service = Arc::new(Self {
            store,
            cipher,
            settings,
            runner,
        });
        service.runner.register(Arc::new(FanOut {
            service: Arc::downgrade(&service),
        }));
        service.runner.register(Arc::new(Delivery {
            service: Arc::downgrade(&service),
        }));
        service
    }

    /// The runner of fan-out and delivery tasks (started with the other
    /// background work).
    pub fn runner(&self) -> &Arc<TaskRunner<StoreQueue>> {
        &self.runner
    }

    pub fn settings(&self) -> &NotificationSettings {
        &self.settings
    }

    /// The sink the outbox relay hands every batch to.
    pub fn sink(self: &Arc<Self>) -> Arc<dyn EventSink> {
        Arc::new(NotificationSink {
            service: self.clone(),
        })
    }

    /// Checks and stores a new endpoint of `user`, its secret sealed.
    pub async fn create(
        &self,
        user: &UserId,
        input: EndpointInput,
    ) -> Result<NotificationEndpoint, NotifyError> {
        let allow = self.settings.allow_insecure;
        let mut errors = Vec::new();
        let url = match EndpointUrl::parse(&input.url, allow) {
            Ok(url) => match url.resolve(allow).await {
                Ok(_) => Some(url),
                Err(e) => {
                    errors.push(e.field("/url"));
                    None
                }
            },
            Err(e) => {
                errors.push(e.field("/url"));
                None
            }
        };
        let chars = input.secret.expose().chars().count();
        if !SECRET_CHARS.contains(&chars) {
            errors.push(FieldError::new(
                "/secret",
                format!(
                    "must be {} to {} characters",
                    SECRET_CHARS.start(),
                    SECRET_CHARS.end()
                ),
            ));
        }
        let mut events = Vec::new();
        if input.events.is_empty() {
            errors.push(FieldError::new("/events", "must name at least one event"));
        }
        for (i, raw) in input.events.iter().enumerate() {
            match NotificationEvent::parse(raw) {
                Some(e) if !events.contains(&e) => events.push(e),
                Some(_) => {}
                None => errors.push(FieldError::new(
                    &format!("/events/{i}"),
                    format!(
                        "must be one of {}",
                        NotificationEvent::ALL.map(|e| e.as_str()).join(", ")
                    ),
                )),
            }
        }
        let url = match url {
            Some(url) if errors.is_empty() => url,
            _ => return Err(NotifyError::Invalid(errors)),
        };
        events.sort();
        let id = EndpointId::new();
        let secret = self
            .cipher
            .seal_secret(&secret_context(user, id), input.secret.expose())
            .map_err(|_| NotifyError::Seal)?;
        let endpoint = NotificationEndpoint {
            id,
            user_id: user.clone(),
            url: url.as_str().to_owned(),
            events,
            secret,
            created_at: Utc::now(),
        };
        let max = self.settings.max_endpoints_per_user;
        match self
            .store
            .put_notification_endpoint(endpoint.clone(), max)
            .await?
        {
            EndpointWrite::Stored => Ok(endpoint),
            EndpointWrite::LimitReached => Err(NotifyError::LimitReached {
                user: user.clone(),
                max,
            }),
        }
    }

    /// Who hears of an alert of `patient`: the patient and every grantee of
    /// an active share.
    async fn recipients(&self, patient: &UserId) -> Result<Vec<UserId>, StoreError> {
        let now = Utc::now();
        let mut out = vec![patient.clone()];
        let mut after = None;
        loop {
            let page = self
                .store
                .list_shares(
                    patient,
                    SharePage {
                        after: after.clone(),
                        limit: 500,
                    },
                )
                .await?;
            let last = page.last().map(|s| s.grantee_id.clone());
            let full = page.len() == 500;
            out.extend(
                page.into_iter()
                    .filter(|s| s.is_active(now) && &s.grantee_id != patient)
                    .map(|s| s.grantee_id),
            );
            match last {
                Some(last) if full => after = Some(last),
                _ => return Ok(out),
            }
        }
    }

    /// The delay after failed attempt `attempt` (from 1).
    fn delay(&self, attempt: u32) -> Duration {
        let delays = &self.settings.retry_delays;
        let i = (attempt.max(1) as usize - 1).min(delays.len().saturating_sub(1));
        delays.get(i).copied().unwrap_or(Duration::from_secs(60))
    }
}

/// Hands alert events over to the durable task queue.
struct NotificationSink {
    service: Arc<Notifications>,
}

/// A fan-out task: the event as published.
#[derive(Debug, Serialize, Deserialize)]
struct FanOutPayload {
    event_id: uuid::Uuid,
    #[serde(rename = "type")]
    event_type: String,
    /// The patient the alert belongs to.
    user_id: String,
    /// The event's JSON exactly as on the bus (what receivers get).
    body: String,
}

/// A delivery task: one event to one endpoint.
#[derive(Debug, Serialize, Deserialize)]
struct DeliveryPayload {
    event_id: uuid::Uuid,
    #[serde(rename = "type")]
    event_type: String,
    /// The endpoint's owner.
    user_id: String,
    endpoint_id: uuid::Uuid,
    body: String,
}

#[async_trait]
impl EventSink for NotificationSink {
    fn name(&self) -> &'static str {
        "notifications"
    }

    async fn accept(&self, messages: &[Message]) -> Result<(), SinkError> {
        for m in messages {
            if NotificationEvent::parse(&m.routing_key).is_none() {
                continue;
            }
            let Some(user) = m.user_id() else {
                continue;
            };
            let payload = FanOutPayload {
                event_id: m.id,
                event_type: m.routing_key.clone(),
                user_id: user.to_string(),
                body: m.payload.clone(),
            };
            let now = Utc::now();
            let mut task = NewTask::new(
                FANOUT_KIND,
                serde_json::to_value(&payload).unwrap_or_default(),
                now,
            );
            task.user_id = Some(user.clone());
            task.idempotency_key = Some(m.id.to_string());
            self.service
                .runner
                .submit(task)
                .await
                .map_err(|e| SinkError {
                    sink: "notifications",
                    message: e.to_string(),
                })?;
        }
        Ok(())
    }
}

/// Turns one alert event into one delivery task per interested endpoint.
struct FanOut {
    service: Weak<Notifications>,
}

#[async_trait]
impl TaskHandler for FanOut {
    fn kind(&self) -> &str {
        FANOUT_KIND
    }

    fn max_attempts(&self) -> u32 {
        // Only the store can fail it; keep trying (backing off to 15 min).
        1000
    }

    async fn run(&self, task: &Task, _run: &RunContext) -> Result<TaskEnd, LeaseLost> {
        let Some(service) = self.service.upgrade() else {
            return Ok(TaskEnd::Retry {
                not_before: Utc::now(),
                error: None,
            });
        };
        let payload: FanOutPayload = match serde_json::from_value(task.payload.clone()) {
            Ok(p) => p,
            Err(e) => {
                return Ok(TaskEnd::Failed {
                    error: format!("unreadable payload: {e}"),
                })
            }
        };
        match fan_out(&service, &payload).await {
            Ok(queued) => {
                tracing::debug!(event_id = %payload.event_id, queued, "notification fanned out");
                Ok(TaskEnd::Succeeded)
            }
            Err(e) => Ok(TaskEnd::Retry {
                not_before: Utc::now(),
                error: Some(e.to_string()),
            }),
        }
    }
}

async fn fan_out(service: &Notifications, p: &FanOutPayload) -> Result<usize, StoreError> {
    let patient = UserId::parse(&p.user_id)
        .map_err(|e| StoreError::Corrupt(format!("fan-out user id: {e}")))?;
    let mut queued = 0;
    for recipient in service.recipients(&patient).await? {
        for endpoint in service
            .store
            .list_notification_endpoints(&recipient)
            .await?
        {
            if !endpoint.wants(&p.event_type) {
                continue;
            }
            let payload = DeliveryPayload {
                event_id: p.event_id,
                event_type: p.event_type.clone(),
                user_id: recipient.to_string(),
                endpoint_id: endpoint.id.0,
                body: p.body.clone(),
            };
            let now = Utc::now();
            let mut task = NewTask::new(
                DELIVERY_KIND,
                serde_json::to_value(&payload).unwrap_or_default(),
                now,
            );
            task.user_id = Some(recipient.clone());
            task.idempotency_key = Some(format!("{}/{}", p.event_id, endpoint.id));
            // One delivery per endpoint at a time: a receiver that hangs holds
            // one worker, never all of them.
            task.concurrency_key = Some(format!("notification-endpoint/{}", endpoint.id));
            service.runner.submit(task).await?;
            queued += 1;
        }
    }
    Ok(queued)
}

/// POSTs one event to one endpoint.
struct Delivery {
    service: Weak<Notifications>,
}

/// How one attempt ended.
enum Attempt {
    Delivered(u16),
    /// The endpoint is gone (deleted): nothing to deliver.
    Dropped,
    Failed(String),
}

#[async_trait]
impl TaskHandler for Delivery {
    fn kind(&self) -> &str {
        DELIVERY_KIND
    }

    fn max_attempts(&self) -> u32 {
        // Bounded by time instead (NOTIFICATION_GIVE_UP_HOURS): see `run`.
        u32::MAX
    }

    fn retry_delay(&self, attempt: u32) -> Duration {
        self.service
            .upgrade()
            .map_or(Duration::from_secs(60), |s| s.delay(attempt))
    }

    fn timeout(&self) -> Option<Duration> {
        // The HTTP client's own timeout ends an attempt first; this bounds
        // DNS and the store too.
        self.service
            .upgrade()
            .map(|s| s.settings.timeout + Duration::from_secs(5))
    }

    async fn run(&self, task: &Task, _run: &RunContext) -> Result<TaskEnd, LeaseLost> {
        let Some(service) = self.service.upgrade() else {
            return Ok(TaskEnd::Retry {
                not_before: Utc::now(),
                error: None,
            });
        };
        let payload: DeliveryPayload = match serde_json::from_value(task.payload.clone()) {
            Ok(p) => p,
            Err(e) => {
                return Ok(TaskEnd::Failed {
                    error: format!("unreadable payload: {e}"),
                })
            }
        };
        let outcome = attempt(&service, &payload).await;
        let now = Utc::now();
        Ok(match outcome {
            Attempt::Delivered(status) => {
                metrics::counter!("notification_deliveries_total", "outcome" => "delivered")
                    .increment(1);
                tracing::debug!(event_id = %payload.event_id, endpoint_id = %payload.endpoint_id,
                    status, attempt = task.attempts, "notification delivered");
                TaskEnd::Succeeded
            }
            Attempt::Dropped => {
                metrics::counter!("notification_deliveries_total", "outcome" => "dropped")
                    .increment(1);
                TaskEnd::Succeeded
            }
            Attempt::Failed(error) => {
                let delay = service.delay(task.attempts);
                let deadline = task.created_at
                    + chrono::Duration::from_std(service.settings.give_up_after)
                        .unwrap_or_default();
                let next = now + chrono::Duration::from_std(delay).unwrap_or_default();
                if next > deadline {
                    metrics::counter!("notification_deliveries_total", "outcome" => "gave_up")
                        .increment(1);
                    tracing::warn!(event_id = %payload.event_id, endpoint_id = %payload.endpoint_id,
                        user_id = %payload.user_id, attempts = task.attempts, error = %error,
                        "notification given up");
                    TaskEnd::Failed {
                        error: format!(
                            "{error} (gave up after {} attempts over {} h)",
                            task.attempts,
                            service.settings.give_up_after.as_secs() / 3600
                        ),
                    }
                } else {
                    metrics::counter!("notification_deliveries_total", "outcome" => "failed")
                        .increment(1);
                    tracing::info!(event_id = %payload.event_id, endpoint_id = %payload.endpoint_id,
                        attempt = task.attempts, retry_in_ms = delay.as_millis() as u64,
                        error = %error, "notification delivery failed; will retry");
                    TaskEnd::Retry {
                        not_before: next,
                        error: Some(error),
                    }
                }
            }
        })
    }
}

/// One attempt: the endpoint read again (deleted: dropped), its address
/// resolved and checked, then one signed POST to exactly that address.
async fn attempt(service: &Notifications, p: &DeliveryPayload) -> Attempt {
    let Ok(user) = UserId::parse(&p.user_id) else {
        return Attempt::Dropped;
    };
    let id = EndpointId(p.endpoint_id);
    let endpoint = match service.store.get_notification_endpoint(&user, id).await {
        Ok(Some(e)) => e,
        Ok(None) => return Attempt::Dropped,
        Err(e) => return Attempt::Failed(format!("cannot read the endpoint: {e}")),
    };
    let allow = service.settings.allow_insecure;
    let url = match EndpointUrl::parse(&endpoint.url, allow) {
        Ok(u) => u,
        Err(e) => return Attempt::Failed(format!("url: {e}")),
    };
    let addrs = match url.resolve(allow).await {
        Ok(a) => a,
        Err(e @ TargetError::Forbidden { .. }) => {
            tracing::warn!(endpoint_id = %id, error = %e, "notification endpoint refused at delivery");
            return Attempt::Failed(e.to_string());
        }
        Err(e) => return Attempt::Failed(e.to_string()),
    };
    let secret = match service
        .cipher
        .open_secret(&secret_context(&user, id), &endpoint.secret)
    {
        Ok(s) => s,
        Err(e) => return Attempt::Failed(format!("cannot open the endpoint's secret: {e}")),
    };
    // Connect to the checked address only (no DNS of its own, no proxy, no
    // redirects), so a name that resolves elsewhere a moment later (DNS
    // rebinding) or a redirect to an internal address goes nowhere.
    let client = match reqwest::Client::builder()
        .resolve(&url.host(), addrs[0])
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(service.settings.timeout)
        .connect_timeout(service.settings.timeout)
        .user_agent(concat!("cgm-hub-notifications/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => return Attempt::Failed(format!("http client: {e}")),
    };
    let timestamp = Utc::now().timestamp();
    let signature = signature::sign(secret.expose().as_bytes(), timestamp, p.body.as_bytes());
    let sent = client
        .post(url.as_url().clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(signature::TIMESTAMP_HEADER, timestamp.to_string())
        .header(signature::SIGNATURE_HEADER, signature)
        .header(ID_HEADER, p.event_id.to_string())
        .header(EVENT_HEADER, p.event_type.as_str())
        .body(p.body.clone())
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => Attempt::Delivered(r.status().as_u16()),
        Ok(r) => Attempt::Failed(format!("receiver answered {}", r.status().as_u16())),
        Err(e) if e.is_timeout() => Attempt::Failed(format!(
            "receiver did not answer within {} s",
            service.settings.timeout.as_secs()
        )),
        Err(e) => Attempt::Failed(format!("cannot reach the receiver: {}", without_url(&e))),
    }
}

/// A client error's message without the URL (which may carry a token in its
/// query string).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "<endpoint>");
    }
    if e.is_connect() {
        "connection failed".to_owned()
    } else {
        s
    }
}
