//! `TestApp`: the real application, router and background work, in this process.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use cgm_hub::app::{App, BuildError};
use cgm_hub::config::Settings;
use cgm_hub::connections::cipher::TokenCipher;
use cgm_hub::store::Store;
use serde_json::Value;
use tempfile::TempDir;

/// The real router on a random port, in this process, over a temporary SQLite file
/// (or the backend its overrides name: `postgres_app`, `dynamodb_app`).
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub cipher: Arc<TokenCipher>,
    pub db_path: PathBuf,
    _dir: TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    /// The backend's schema or tables, dropped after the app is told to stop.
    pub(super) backend: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// `{base}` in an override value becomes the app's own base URL (for
    /// DEXCOM_REDIRECT_URI, which must point back at this app).
    pub async fn spawn_with(overrides: &[(&str, &str)]) -> Self {
        Self::try_spawn_with(overrides).await.expect("app builds")
    }

    /// `spawn_with`, returning the error when the app cannot be built (its
    /// store cannot be reached, say).
    pub async fn try_spawn_with(overrides: &[(&str, &str)]) -> Result<Self, BuildError> {
        let dir = TempDir::new().expect("temp dir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let mut vars: HashMap<String, String> = HashMap::from([
            (
                "SQLITE_PATH".into(),
                dir.path().join("app.db").display().to_string(),
            ),
            ("AUTH_DISABLED".into(), "true".into()),
            ("SQLITE_SYNCHRONOUS".into(), "normal".into()),
            // Tests send bursts from one address; the limits have tests of their own.
            ("RATE_LIMIT_USER_PER_MINUTE".into(), "10000000".into()),
            ("RATE_LIMIT_ANONYMOUS_PER_MINUTE".into(), "10000000".into()),
        ]);
        for (k, v) in overrides {
            vars.insert((*k).into(), v.replace("{base}", &base));
        }
        let settings = Settings::from_vars(&vars).expect("test settings are valid");
        let app = App::build(settings).await?;
        let store = app.state.store.clone();
        let cipher = app.cipher().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.serve(listener, async move {
            let _ = rx.await;
        }));
        Ok(Self {
            base,
            client: reqwest::Client::new(),
            store,
            cipher,
            db_path: dir.path().join("app.db"),
            _dir: dir,
            _shutdown: tx,
            backend: None,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    pub async fn get_with(&self, path: &str, header: &str, value: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header(header, value)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request")
    }
}
