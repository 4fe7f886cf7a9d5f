//! Connecting a user's Dexcom account: starting and completing the OAuth flow,
//! disconnecting, refreshing on request, and queueing the initial backfill.
//! The HTTP handlers (`api::oauth`, `api::connections`) are thin shells over this.

use std::sync::Arc;

use chrono::Utc;
use url::Url;

use super::adapter::DexcomAdapter;
use super::client::DexcomClient;
use super::oauth::{state_hash, OAuthClient, OAuthConfig, TokenError};
use super::outbound::Outbound;
use super::tokens::AccessError;
use super::tokens::TokenManager;
use crate::config::ApiVersion;
use crate::config::SyncSettings;
use crate::connections::cipher::TokenCipher;
use crate::domain::UserId;
use crate::pipeline::Pipeline;
use crate::records::connections::{Connection, ConnectionStatus, PendingAuthorization, Provider};
use crate::records::jobs::{Created, NewJob, TimeRange, Trigger};
use crate::secret::Secret;
use crate::sources::connect::ConnectFault;
use crate::store::{ConnectionStore, Store, StoreError};
use crate::sync::engine::SyncEngine;
use crate::sync::source::{SourceAdapter, Sources};
use subtle::ConstantTimeEq;

/// A callback whose state named a user (so it can be put on that user's audit
/// trail): who, and how the connection attempt ended.
#[derive(Debug)]
pub struct Completion {
    pub user: UserId,
    pub outcome: Result<Connection, ConnectError>,
}

/// What Dexcom (via the browser) sent to `/oauth/callback`.
#[derive(Debug, Default, Clone)]
pub struct Callback {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// The cookie secret the returning browser carries (see `Started`).
    pub browser: Option<String>,
}

/// An authorization that has begun: send the browser to `login_url` and give it
/// `browser_secret` in a cookie; the callback is accepted only from a browser
/// that carries it, so a login link sent to someone else connects nothing.
pub struct Started {
    pub login_url: Url,
    pub browser_secret: Secret<String>,
    /// The cookie's name: one per sign-in in progress, so two started in one
    /// browser do not overwrite each other.
    pub cookie_name: String,
}

/// The browser cookie of the sign-in whose `state` this is.
pub fn browser_cookie_name(state: &str) -> String {
    cookie_name_for_hash(&state_hash(state))
}

fn cookie_name_for_hash(state_hash: &str) -> String {
    format!("cgm_hub_oauth_{}", &state_hash[..16.min(state_hash.len())])
}

impl Callback {
    /// The parameters of a callback URL (as the provider redirected to it).
    pub fn from_url(url: &Url) -> Self {
        let mut callback = Self::default();
        for (key, value) in url.query_pairs() {
            let slot = match key.as_ref() {
                "state" => &mut callback.state,
                "code" => &mut callback.code,
                "error" => &mut callback.error,
                "error_description" => &mut callback.error_description,
                _ => continue,
            };
            *slot = Some(value.into_owned());
        }
        callback
    }
}

/// What `rewrap_tokens` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rewrap {
    pub rewrapped: usize,
    /// Still under an old key (busy or failed): keep that key configured.
    pub left: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "this sign-in link is unknown, already used or expired; start again from /oauth/authorize"
    )]
    BadState,
    #[error("Dexcom access was not granted ({error}); nothing was connected")]
    Denied { error: String },
    #[error("the callback has no authorization code")]
    MissingCode,
    #[error("this sign-in was started in another browser (or its cookie is missing); start again from /oauth/authorize in this browser")]
    OtherBrowser,
    #[error("Dexcom refused the authorization code: {0}")]
    Exchange(TokenError),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct DexcomService {
    oauth: Arc<OAuthClient>,
    client: Arc<DexcomClient>,
    store: Arc<dyn ConnectionStore>,
    engine: Arc<SyncEngine>,
}

/// Dexcom's client stack (outbound policy → OAuth → tokens → data client),
/// built before the sync engine so that its adapter can be registered there.
pub struct DexcomStack {
    oauth: Arc<OAuthClient>,
    client: Arc<DexcomClient>,
}

impl DexcomStack {
    pub fn build(
        store: Arc<dyn ConnectionStore>,
        cipher: Arc<TokenCipher>,
        oauth: OAuthConfig,
        outbound: Outbound,
        version: ApiVersion,
    ) -> Self {
        let outbound = Arc::new(outbound);
        let base_url = oauth.base_url.clone();
        let oauth = Arc::new(OAuthClient::new(oauth, outbound.clone()));
        let tokens = Arc::new(TokenManager::new(store, cipher, oauth.clone()));
        let client = Arc::new(DexcomClient::new(outbound, tokens, base_url, version));
        Self { oauth, client }
    }

    /// Dexcom as the sync engine fetches from it.
    pub fn adapter(&self) -> Arc<dyn SourceAdapter> {
        DexcomAdapter::new(self.client.clone())
    }

    pub fn client(&self) -> &Arc<DexcomClient> {
        &self.client
    }
}

impl DexcomService {
    /// Wires the client stack and a sync engine that fetches from Dexcom only
    /// (started by the caller). The app builds its engine over every source
    /// instead (`DexcomStack` and `with_engine`).
    pub fn build(
        store: Arc<dyn Store>,
        pipeline: Pipeline,
        cipher: Arc<TokenCipher>,
        oauth: OAuthConfig,
        outbound: Outbound,
        version: ApiVersion,
        sync: SyncSettings,
    ) -> Arc<Self> {
        let stack = DexcomStack::build(store.clone(), cipher, oauth, outbound, version);
        let engine = SyncEngine::new(
            store.clone(),
            store,
            pipeline,
            Sources::new().with(stack.adapter()),
            sync,
        );
        Self::with_engine(stack, engine)
    }

    /// The service over `stack`, queueing its backfills on `engine` (which
    /// must have Dexcom registered to run them).
    pub fn with_engine(stack: DexcomStack, engine: Arc<SyncEngine>) -> Arc<Self> {
        Arc::new(Self {
            oauth: stack.oauth,
            client: stack.client,
            store: engine.connections().clone(),
            engine,
        })
    }

    pub fn engine(&self) -> &Arc<SyncEngine> {
        &self.engine
    }

    pub fn client(&self) -> &Arc<DexcomClient> {
        &self.client
    }

    pub fn backfill_days(&self) -> u32 {
        self.engine.settings().backfill_days
    }

    /// The Dexcom login URL for `user` and the secret for the starting browser;
    /// the state is remembered for 10 minutes.
    pub async fn begin(&self, user: &UserId) -> Result<Started, StoreError> {
        let (login_url, browser_secret, pending) = self.oauth.begin(user, Utc::now());
        let cookie_name = cookie_name_for_hash(&pending.state_hash);
        self.store
            .put_pending_authorization(pending, self.oauth.config().pending_per_user)
            .await?;
        Ok(Started {
            login_url,
            browser_secret,
            cookie_name,
        })
    }

    /// Where Dexcom sends the browser back: the cookie is scoped to it (and
    /// `Secure` when it is https).
    pub fn redirect_uri(&self) -> &Url {
        &self.oauth.config().redirect_uri
    }

    /// Completes the flow: checks the single-use state, exchanges the code,
    /// stores the sealed tokens and queues the initial backfill.
    pub async fn complete(&self, callback: Callback) -> Result<Completion, ConnectError> {
        let now = Utc::now();
        let state = callback.state.as_deref().ok_or(ConnectError::BadState)?;
        let pending = self
            .store
            .take_pending_authorization(&state_hash(state), now)
            .await?
            .ok_or_else(|| {
                metrics::counter!("dexcom_connect_total", "outcome" => "bad_state").increment(1);
                ConnectError::BadState
            })?;
        let user = pending.user_id.clone();
        let outcome = self.finish_connect(pending, callback, now).await;
        Ok(Completion { user, outcome })
    }

    /// The rest of a callback once its state named the user.
    async fn finish_connect(
        &self,
        pending: PendingAuthorization,
        callback: Callback,
        now: chrono::DateTime<Utc>,
    ) -> Result<Connection, ConnectError> {
        let user = pending.user_id.clone();
        let same_browser = match (&pending.browser_hash, &callback.browser) {
            (None, _) => true,
            (Some(expected), Some(secret)) => {
                bool::from(expected.as_bytes().ct_eq(state_hash(secret).as_bytes()))
            }
            (Some(_), None) => false,
        };
        if !same_browser {
            metrics::counter!("dexcom_connect_total", "outcome" => "other_browser").increment(1);
            tracing::warn!(user_id = %user, "OAuth callback from a browser that did not start the flow; refused");
            return Err(ConnectError::OtherBrowser);
        }
        if let Some(error) = callback.error {
            let why = match callback.error_description {
                Some(d) => format!("{error}: {d}"),
                None => error.clone(),
            };
            self.note_failure(&user, format!("authorization not completed: {why}"))
                .await?;
            metrics::counter!("dexcom_connect_total", "outcome" => "denied").increment(1);
            return Err(ConnectError::Denied { error });
        }
        let code = callback.code.ok_or(ConnectError::MissingCode)?;
        let grant = match self
            .oauth
            .exchange_code(&code, pending.pkce_verifier.as_ref())
            .await
        {
            Ok(grant) => grant,
            Err(e) => {
                self.note_failure(&user, format!("token exchange failed: {e}"))
                    .await?;
                metrics::counter!("dexcom_connect_total", "outcome" => "exchange_failed")
                    .increment(1);
                return Err(ConnectError::Exchange(e));
            }
        };
        let (sealed, expires, refresh_at) = self.client.tokens().seal_grant(&user, &grant)?;
        let previous = self.store.get_connection(&user, Provider::Dexcom).await?;
        let connection = Connection {
            status: ConnectionStatus::Connected,
            tokens: Some(sealed),
            access_expires_at: Some(expires),
            access_refresh_at: Some(refresh_at),
            connected_at: Some(now),
            last_error: None,
            updated_at: now,
            last_sync_at: previous.as_ref().and_then(|p| p.last_sync_at),
            ..Connection::disconnected(user.clone(), Provider::Dexcom, now)
        };
        self.store.put_connection(connection).await?;
        metrics::counter!("dexcom_connect_total", "outcome" => "connected").increment(1);
        tracing::info!(user_id = %user, "Dexcom connected");
        self.queue_backfill(&user).await?;
        self.connection(&user).await
    }

    /// Disconnects: tokens deleted, polling stops, readings kept. None if the user
    /// never had a connection.
    pub async fn disconnect(&self, user: &UserId) -> Result<Option<Connection>, StoreError> {
        let Some(existing) = self.store.get_connection(user, Provider::Dexcom).await? else {
            return Ok(None);
        };
        let now = Utc::now();
        self.store
            .put_connection(Connection {
                status: ConnectionStatus::Disconnected,
                tokens: None,
                access_expires_at: None,
                access_refresh_at: None,
                last_error: None,
                updated_at: now,
                ..existing
            })
            .await?;
        tracing::info!(user_id = %user, "Dexcom disconnected; stored readings kept");
        self.store.get_connection(user, Provider::Dexcom).await
    }

    /// The user's Dexcom connection as stored.
    pub async fn current_connection(&self, user: &UserId) -> Result<Connection, ConnectError> {
        self.connection(user).await
    }

    /// Refreshes the user's token now (even if it is not due).
    pub async fn refresh_now(&self, user: &UserId) -> Result<Connection, ConnectError> {
        let current = self
            .store
            .get_connection(user, Provider::Dexcom)
            .await?
            .ok_or(AccessError::NotConnected)?;
        match current.status {
            ConnectionStatus::Connected => {}
            ConnectionStatus::ReauthRequired => return Err(AccessError::ReauthRequired.into()),
            ConnectionStatus::Disconnected => return Err(AccessError::NotConnected.into()),
        }
        self.client
            .tokens()
            .refresh(user, current.token_version)
            .await?;
        self.connection(user).await
    }

    /// Seals again, under the current key, tokens sealed under a previous key
    /// (after a key rotation). Every user is tried; one that fails or whose
    /// lease is busy is logged and counted as left under the old key.
    pub async fn rewrap_tokens(&self) -> Result<Rewrap, StoreError> {
        let tokens = self.client.tokens();
        let mut report = Rewrap::default();
        for c in self
            .store
            .connections_with_status(Provider::Dexcom, ConnectionStatus::Connected)
            .await?
        {
            if !c
                .tokens
                .as_ref()
                .is_some_and(|s| tokens.cipher().needs_rewrap(s))
            {
                continue;
            }
            match tokens.rewrap(&c.user_id).await {
                Ok(true) => report.rewrapped += 1,
                Ok(false) => report.left += 1,
                Err(e) => {
                    tracing::error!(user_id = %c.user_id, error = %e, "could not seal tokens again under the current key");
                    report.left += 1;
                }
            }
        }
        Ok(report)
    }

    async fn connection(&self, user: &UserId) -> Result<Connection, ConnectError> {
        Ok(self
            .store
            .get_connection(user, Provider::Dexcom)
            .await?
            .ok_or(AccessError::NotConnected)?)
    }

    /// Records why a connection attempt failed. An existing connection only gets
    /// its `last_error` set (its tokens, and any refresh in flight, untouched).
    async fn note_failure(&self, user: &UserId, error: String) -> Result<(), StoreError> {
        let now = Utc::now();
        if self
            .store
            .get_connection(user, Provider::Dexcom)
            .await?
            .is_some()
        {
            return self
                .store
                .record_sync(user, Provider::Dexcom, now, Some(error))
                .await;
        }
        self.store
            .put_connection(Connection {
                last_error: Some(error),
                ..Connection::disconnected(user.clone(), Provider::Dexcom, now)
            })
            .await
    }

    /// Queues the initial history fetch as a durable job (it survives restarts).
    async fn queue_backfill(&self, user: &UserId) -> Result<(), StoreError> {
        let now = Utc::now();
        let days = i64::from(self.backfill_days());
        if days == 0 {
            return Ok(());
        }
        let range = TimeRange {
            start: now - chrono::Duration::days(days),
            end: now,
        };
        let job = NewJob::new(
            user.clone(),
            Provider::Dexcom,
            Trigger::Backfill,
            Some(range),
            now,
        );
        match self.engine.submit_requested(job).await? {
            Created::New(job) => {
                tracing::info!(user_id = %user, job_id = %job.id, days, "initial backfill queued");
            }
            Created::QueueFull { max_queued } => {
                // Polls still sync the user, from the backfill horizon on.
                tracing::warn!(user_id = %user, max_queued, "initial backfill not queued: the user's sync queue is full");
            }
            _ => {}
        }
        Ok(())
    }
}

/// Dexcom's access failures as a client hears of them.
impl From<AccessError> for ConnectFault {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::NotConnected => ConnectFault::NotConnected("Dexcom connection".into()),
            AccessError::ReauthRequired => ConnectFault::ReauthRequired(
                "the Dexcom authorization was revoked or has expired; reconnect through /oauth/authorize"
                    .into(),
            ),
            AccessError::Refresh(e) => {
                ConnectFault::Upstream(format!("Dexcom token refresh failed: {e}"))
            }
            AccessError::RefreshBusy => ConnectFault::Busy(e.to_string()),
            AccessError::Cipher(e) => ConnectFault::Internal(e.to_string()),
            AccessError::Store(e) => ConnectFault::Store(e),
        }
    }
}

/// Dexcom's sign-in failures as a client hears of them.
impl From<ConnectError> for ConnectFault {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::BadState | ConnectError::MissingCode | ConnectError::OtherBrowser => {
                ConnectFault::BadCallback(e.to_string())
            }
            ConnectError::Denied { .. } => ConnectFault::Declined(e.to_string()),
            ConnectError::Exchange(TokenError::InvalidGrant { .. }) => ConnectFault::BadCallback(
                "Dexcom refused the authorization code (used or expired); start again from /oauth/authorize"
                    .into(),
            ),
            ConnectError::Exchange(other) => {
                ConnectFault::Upstream(format!("could not complete the Dexcom sign-in: {other}"))
            }
            ConnectError::Access(e) => e.into(),
            ConnectError::Store(e) => ConnectFault::Store(e),
        }
    }
}
