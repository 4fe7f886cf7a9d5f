//! Dexcom's OAuth2 authorization-code flow (docs/dexcom.md, "The flow"): the
//! login URL with `state` and an optional PKCE S256 challenge, and the two token
//! grants, form-encoded with the client credentials as form fields.
//!
//! Written against reqwest rather than the `oauth2` crate because token calls must
//! share `Outbound`'s retries, breaker and budget, and because Dexcom's error
//! bodies are not always RFC 6749 (we classify them with `wire::oauth_error_code`,
//! and only `invalid_grant` means the user must reconnect). PKCE is RFC 7636's
//! S256: a random verifier and the base64url SHA-256 of it.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use url::Url;

use super::outbound::{Outbound, OutboundError, Retries};
use super::wire::{oauth_error_code, TokenResponse};
use crate::config::MAX_OAUTH_STATE_TTL;
use crate::connections::TokenSet;
use crate::domain::UserId;
use crate::records::connections::{PendingAuthorization, Provider};
use crate::secret::Secret;

/// Used when a token response has no `expires_in` (Dexcom documents 7200 s).
const DEFAULT_EXPIRES_IN: i64 = 7200;

/// The OAuth client registered with Dexcom.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    pub base_url: Url,
    pub client_id: String,
    pub client_secret: Secret<String>,
    pub redirect_uri: Url,
    pub pkce: bool,
    /// How long a `state` stays usable (OAUTH_STATE_TTL_SECONDS, at most `STATE_TTL`).
    pub state_ttl: Duration,
    /// Authorizations in progress kept per user: starting one more drops the oldest.
    pub pending_per_user: usize,
}

/// Tokens as granted, with their lifetime.
#[derive(Debug, Clone)]
pub struct Grant {
    pub tokens: TokenSet,
    pub expires_in: Duration,
}

impl Grant {
    /// When the access token expires, and when to refresh it: a tenth of its
    /// lifetime early (between 5 s and 5 min), so a sync never starts with a
    /// token about to die.
    pub fn schedule(&self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let life = chrono::Duration::from_std(self.expires_in).unwrap_or(chrono::Duration::zero());
        let margin = (life / 10).clamp(chrono::Duration::seconds(5), chrono::Duration::minutes(5));
        let expires = now + life;
        (expires, (expires - margin).max(now))
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// The grant (code or refresh token) is dead: for a refresh token, the user
    /// must connect again.
    #[error("Dexcom refused the grant (invalid_grant){}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    InvalidGrant { description: Option<String> },
    /// Any other refusal (bad client credentials, unsupported grant, ...).
    #[error("Dexcom token endpoint answered {status}{}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Rejected { status: u16, code: Option<String> },
    #[error("{0}")]
    Unavailable(#[from] OutboundError),
    #[error("Dexcom token response is malformed: {0}")]
    Malformed(String),
}

pub struct OAuthClient {
    config: OAuthConfig,
    outbound: Arc<Outbound>,
    host: String,
}

/// A random URL-safe string of `bytes` random bytes.
fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// What the store keys a state by (never the state itself); also how the
/// browser's cookie secret is kept.
pub fn state_hash(state: &str) -> String {
    crate::digest::sha256_hex(state.as_bytes())
}

pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

pub fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => "unknown".to_owned(),
    }
}

impl OAuthClient {
    pub fn new(config: OAuthConfig, outbound: Arc<Outbound>) -> Self {
        let host = host_of(&config.base_url);
        Self {
            config,
            outbound,
            host,
        }
    }

    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    /// The longest a token call can take, retries and waits included.
    pub fn worst_case_call(&self) -> Duration {
        self.outbound.worst_case()
    }

    /// Starts an authorization: the login URL to send the browser to, the
    /// secret for that browser's cookie, and what to remember until the callback.
    pub fn begin(
        &self,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> (Url, Secret<String>, PendingAuthorization) {
        let state = random_token(32);
        let browser = random_token(32);
        let verifier = self.config.pkce.then(|| random_token(32));
        let mut url = self.config.base_url.clone();
        url.set_path("/v2/oauth2/login");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &self.config.client_id)
                .append_pair("redirect_uri", self.config.redirect_uri.as_str())
                .append_pair("response_type", "code")
                .append_pair("scope", "offline_access")
                .append_pair("state", &state);
            if let Some(v) = &verifier {
                q.append_pair("code_challenge", &pkce_challenge(v))
                    .append_pair("code_challenge_method", "S256");
            }
        }
        let pending = PendingAuthorization {
            state_hash: state_hash(&state),
            user_id: user.clone(),
            provider: Provider::Dexcom,
            pkce_verifier: verifier.map(Secret::new),
            browser_hash: Some(state_hash(&browser)),
            expires_at: now
                + chrono::Duration::from_std(self.config.state_ttl.min(MAX_OAUTH_STATE_TTL))
                    .unwrap_or_default(),
        };
        (url, Secret::new(browser), pending)
    }

    pub async fn exchange_code(
        &self,
        code: &str,
        verifier: Option<&Secret<String>>,
    ) -> Result<Grant, TokenError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.config.redirect_uri.as_str()),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v.expose()));
        }
        let grant = self.token_call("token_code", &form, None).await?;
        metrics::counter!("dexcom_token_requests_total", "grant" => "authorization_code", "outcome" => "ok").increment(1);
        Ok(grant)
    }

    /// Refreshes; if Dexcom returns no new refresh token the old one stays.
    pub async fn refresh(&self, refresh_token: &Secret<String>) -> Result<Grant, TokenError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose().as_str()),
            // Dexcom expects redirect_uri when refreshing too (as the dexcom-js client sends it).
            ("redirect_uri", self.config.redirect_uri.as_str()),
        ];
        let result = self
            .token_call("token_refresh", &form, Some(refresh_token))
            .await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(TokenError::InvalidGrant { .. }) => "invalid_grant",
            Err(_) => "error",
        };
        metrics::counter!("dexcom_token_requests_total", "grant" => "refresh_token", "outcome" => outcome).increment(1);
        result
    }

    async fn token_call(
        &self,
        endpoint: &'static str,
        form: &[(&str, &str)],
        previous_refresh: Option<&Secret<String>>,
    ) -> Result<Grant, TokenError> {
        let mut url = self.config.base_url.clone();
        url.set_path("/v2/oauth2/token");
        let mut fields: Vec<(&str, &str)> = vec![
            ("client_id", &self.config.client_id),
            ("client_secret", self.config.client_secret.expose()),
        ];
        fields.extend_from_slice(form);
        let fetched = self
            .outbound
            // Both grants spend something single-use (the code, or the refresh
            // token that Dexcom rotates): never repeat one that may have landed.
            .send(endpoint, &self.host, Retries::OnlyIfUnsent, |http| {
                http.post(url.clone())
                    .header(reqwest::header::ACCEPT, "application/json")
                    .form(&fields)
            })
            .await?;
        if !fetched.status.is_success() {
            let code = oauth_error_code(fetched.status.as_u16(), &fetched.body);
            if code.as_deref() == Some("invalid_grant") {
                let description = serde_json::from_slice::<serde_json::Value>(&fetched.body)
                    .ok()
                    .and_then(|v| v.get("error_description")?.as_str().map(str::to_owned));
                return Err(TokenError::InvalidGrant { description });
            }
            return Err(TokenError::Rejected {
                status: fetched.status.as_u16(),
                code,
            });
        }
        let parsed: TokenResponse = serde_json::from_slice(&fetched.body)
            .map_err(|e| TokenError::Malformed(e.to_string()))?;
        if parsed.access_token.is_empty() {
            return Err(TokenError::Malformed("empty access_token".into()));
        }
        let refresh_token = match (parsed.refresh_token, previous_refresh) {
            (Some(r), _) if !r.is_empty() => r,
            (_, Some(previous)) => previous.expose().clone(),
            _ => {
                return Err(TokenError::Malformed(
                    "no refresh_token (was offline_access granted?)".into(),
                ))
            }
        };
        let expires_in = parsed
            .expires_in
            .filter(|s| *s > 0)
            .unwrap_or(DEFAULT_EXPIRES_IN);
        Ok(Grant {
            tokens: TokenSet {
                access_token: Secret::new(parsed.access_token),
                refresh_token: Secret::new(refresh_token),
            },
            expires_in: Duration::from_secs(u64::try_from(expires_in).unwrap_or(7200)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc_7636_example() {
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn refresh_is_scheduled_ahead_of_expiry() {
        let now = Utc::now();
        let grant = |secs| Grant {
            tokens: TokenSet {
                access_token: Secret::new("a".into()),
                refresh_token: Secret::new("r".into()),
            },
            expires_in: Duration::from_secs(secs),
        };
        let (expires, refresh) = grant(7200).schedule(now);
        assert_eq!(expires - now, chrono::Duration::seconds(7200));
        assert_eq!(expires - refresh, chrono::Duration::minutes(5));
        let (expires, refresh) = grant(20).schedule(now);
        assert_eq!(expires - refresh, chrono::Duration::seconds(5));
        let (_, refresh) = grant(2).schedule(now);
        assert_eq!(refresh, now);
    }
}
