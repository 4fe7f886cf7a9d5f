//! The Dexcom data API (v3, or v2 through DEXCOM_API_VERSION) for one user at a
//! time: `egvs`, `dataRange`, `devices`. Each call gets a current access token;
//! a 401 refreshes that token once and retries once (as Tidepool does).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use url::Url;

use super::oauth::host_of;
use super::outbound::{Outbound, OutboundError, Retries};
use super::time::format_query_time;
use super::tokens::{AccessError, TokenManager};
use super::windows::{Window, MAX_WINDOW_DAYS};
use super::wire::{DataRange, DevicesPage, EgvsPage};
use crate::config::ApiVersion;
use crate::domain::UserId;

#[derive(Debug, thiserror::Error)]
pub enum DexcomError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Outbound(#[from] OutboundError),
    #[error("Dexcom rejected the access token twice (401)")]
    Unauthorized,
    #[error("Dexcom answered {status} to {endpoint}")]
    Status { endpoint: &'static str, status: u16 },
    #[error("Dexcom sent a malformed {endpoint} response: {message}")]
    Malformed {
        endpoint: &'static str,
        message: String,
    },
    #[error("window {start} .. {end} is longer than Dexcom's {MAX_WINDOW_DAYS}-day maximum")]
    WindowTooLong {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
}

impl DexcomError {
    /// The user must reconnect; retrying will not help.
    pub fn needs_reauth(&self) -> bool {
        matches!(self, DexcomError::Access(AccessError::ReauthRequired))
    }
}

pub struct DexcomClient {
    outbound: Arc<Outbound>,
    tokens: Arc<TokenManager>,
    base_url: Url,
    host: String,
    version: ApiVersion,
}

impl DexcomClient {
    pub fn new(
        outbound: Arc<Outbound>,
        tokens: Arc<TokenManager>,
        base_url: Url,
        version: ApiVersion,
    ) -> Self {
        let host = host_of(&base_url);
        Self {
            outbound,
            tokens,
            base_url,
            host,
            version,
        }
    }

    pub fn tokens(&self) -> &Arc<TokenManager> {
        &self.tokens
    }

    pub fn outbound(&self) -> &Arc<Outbound> {
        &self.outbound
    }

    /// Estimated glucose values with systemTime in the window (at most 30 days).
    pub async fn egvs(&self, user: &UserId, window: Window) -> Result<EgvsPage, DexcomError> {
        if window.end - window.start > chrono::Duration::days(MAX_WINDOW_DAYS) {
            return Err(DexcomError::WindowTooLong {
                start: window.start,
                end: window.end,
            });
        }
        let query = [
            ("startDate", format_query_time(window.start)),
            ("endDate", format_query_time(window.end)),
        ];
        self.get_json(user, "egvs", "egvs", &query).await
    }

    /// The span of data Dexcom holds for the user; with `last_sync`, only what
    /// arrived after it.
    pub async fn data_range(
        &self,
        user: &UserId,
        last_sync: Option<DateTime<Utc>>,
    ) -> Result<DataRange, DexcomError> {
        let query: Vec<_> = last_sync
            .map(|t| ("lastSyncTime", t.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
            .into_iter()
            .collect();
        self.get_json(user, "data_range", "dataRange", &query).await
    }

    pub async fn devices(&self, user: &UserId) -> Result<DevicesPage, DexcomError> {
        self.get_json(user, "devices", "devices", &[]).await
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        user: &UserId,
        endpoint: &'static str,
        resource: &str,
        query: &[(&str, String)],
    ) -> Result<T, DexcomError> {
        let mut url = self.base_url.clone();
        url.set_path(&format!("/{}/users/self/{resource}", self.version.as_str()));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        self.outbound.acquire_for(user).await?;
        let access = self.tokens.access(user).await?;
        let mut fetched = self.call(endpoint, &url, &access.token).await?;
        if fetched.status == reqwest::StatusCode::UNAUTHORIZED {
            metrics::counter!("dexcom_unauthorized_total", "endpoint" => endpoint).increment(1);
            let renewed = self.tokens.refresh(user, access.version).await?;
            fetched = self.call(endpoint, &url, &renewed.token).await?;
            if fetched.status == reqwest::StatusCode::UNAUTHORIZED {
                return Err(DexcomError::Unauthorized);
            }
        }
        if !fetched.status.is_success() {
            return Err(DexcomError::Status {
                endpoint,
                status: fetched.status.as_u16(),
            });
        }
        serde_json::from_slice(&fetched.body).map_err(|e| DexcomError::Malformed {
            endpoint,
            message: e.to_string(),
        })
    }

    async fn call(
        &self,
        endpoint: &'static str,
        url: &Url,
        token: &crate::secret::Secret<String>,
    ) -> Result<super::outbound::Fetched, OutboundError> {
        self.outbound
            .send(endpoint, &self.host, Retries::Idempotent, |http| {
                http.get(url.clone())
                    .bearer_auth(token.expose())
                    .header(reqwest::header::ACCEPT, "application/json")
            })
            .await
    }
}
