//! A receiver of notification deliveries (axum on 127.0.0.1, allowed because
//! test apps run in development) that records what it got, can fail or hang on
//! purpose, and checks signatures as a receiver would.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::eventually;

/// How long a delivery may take to arrive on a loaded CI machine.
pub const RECEIVER_WAIT: Duration = Duration::from_secs(30);

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Got {
    pub headers: HeaderMap,
    pub body: String,
}

impl Got {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    Ok,
    /// Answers 500 this many times, then 200.
    FailFirst(u32),
    /// Takes the request and never answers.
    Hang,
}

/// A receiver of notifications on 127.0.0.1.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    got: Arc<Mutex<Vec<Got>>>,
    /// Requests that arrived (answered or not).
    pub arrived: Arc<AtomicU32>,
    _stop: Arc<tokio::sync::oneshot::Sender<()>>,
}

impl Receiver {
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::on(listener, behaviour)
    }

    pub fn on(listener: tokio::net::TcpListener, behaviour: Behaviour) -> Self {
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let arrived: Arc<AtomicU32> = Arc::default();
        let failures = Arc::new(AtomicU32::new(0));
        let (got2, arrived2) = (got.clone(), arrived.clone());
        let handler = move |headers: HeaderMap, body: Bytes| {
            let (got, arrived, failures) = (got2.clone(), arrived2.clone(), failures.clone());
            async move {
                arrived.fetch_add(1, Ordering::SeqCst);
                let request = Got {
                    headers,
                    body: String::from_utf8(body.to_vec()).unwrap(),
                };
                match behaviour {
                    Behaviour::Hang => std::future::pending::<StatusCode>().await,
                    Behaviour::FailFirst(n) if failures.fetch_add(1, Ordering::SeqCst) < n => {
                        got.lock().unwrap().push(request);
                        StatusCode::INTERNAL_SERVER_ERROR
                    }
                    _ => {
                        got.lock().unwrap().push(request);
                        StatusCode::NO_CONTENT
                    }
                }
            }
        };
        let router = axum::Router::new().route("/hook", axum::routing::post(handler));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            url,
            got,
            arrived,
            _stop: Arc::new(tx),
        }
    }

    pub fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// The requests of event type `kind`.
    pub fn of(&self, kind: &str) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| g.header("x-webhook-event") == kind)
            .collect()
    }

    pub async fn wait_for(&self, kind: &str, count: usize) -> Vec<Got> {
        let what = format!("{count} {kind} at {}", self.url);
        eventually(&what, RECEIVER_WAIT, || async {
            self.of(kind).len() >= count
        })
        .await;
        self.of(kind)
    }
}

/// Checks the signature as a receiver would: HMAC-SHA256 of "<ts>.<body>"
/// under the secret, computed here independently of the service's code.
pub fn assert_signed(got: &Got, secret: &str) {
    let ts = got.header("x-webhook-timestamp");
    let ts_value: i64 = ts.parse().expect("a unix timestamp");
    assert!(
        (Utc::now().timestamp() - ts_value).abs() < 300,
        "recent: {ts}"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.{}", got.body).as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(got.header("x-webhook-signature"), format!("sha256={hex}"));
    // The service's own verifier (inbound webhooks) accepts it too.
    cgm_hub::sources::webhook::signature::verify(
        secret.as_bytes(),
        Some(ts),
        Some(got.header("x-webhook-signature")),
        got.body.as_bytes(),
        Utc::now().timestamp(),
    )
    .expect("verifies as an inbound webhook would");
}
