//! Bearer JWT verification, so every request is tied to a verified `Principal`:
//! HS256 with the shared `AUTH_JWT_SECRET`, RS256/ES256 with keys fetched from
//! `AUTH_JWKS_URL`; plus `mint_hs256` for `cgm-hub token mint` and tests.
//!
//! Security rules live here: the token's header picks the verifier, never the
//! key (no algorithm confusion), `alg: none` and every other algorithm are
//! refused, and an unknown `kid` refetches the key set at most once per 10 s.
//! Tokens are never logged.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::{Error as JwtError, ErrorKind};
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AuthError, Principal, Role, Roles};
use crate::domain::UserId;
use crate::secret::Secret;

/// Clock skew tolerated on `exp` and `nbf` unless configured otherwise.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// Minimum gap between refetches of the key set (unknown `kid`, failed load).
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// Where bearer tokens come from and what they must say.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `AUTH_JWT_SECRET`: enables HS256.
    pub hs256_secret: Option<Secret<String>>,
    /// `AUTH_JWKS_URL`: enables RS256/ES256 with the keys published there.
    pub jwks_url: Option<url::Url>,
    /// `AUTH_ISSUER`: when set, `iss` is required and must match.
    pub issuer: Option<String>,
    /// `AUTH_AUDIENCE`: when set, `aud` is required and must contain it.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp`/`nbf`.
    pub leeway: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            hs256_secret: None,
            jwks_url: None,
            issuer: None,
            audience: None,
            leeway: DEFAULT_LEEWAY,
        }
    }
}

/// Verifies bearer tokens. Shared by all requests (`Send + Sync`); a call only
/// fetches keys when the cache cannot answer.
pub struct Authenticator {
    hs256: Option<Arc<DecodingKey>>,
    jwks: Option<JwksCache>,
    validation: Validation,
    /// Tokens already verified, by their exact text, until their `exp`: an app
    /// sends the same token for every request, and the signature check and
    /// claims parsing were most of the cost of authentication. Only the exact
    /// string hits, so nothing can be forged through the cache.
    verified: std::sync::RwLock<VerifiedTokens>,
}

/// Token bytes → (principal, exp as unix seconds). Hashed with foldhash (seeded per
/// process) rather than SipHash: a token is a few hundred bytes hashed on every
/// request, and only verified tokens are ever inserted, so there is no flood of
/// chosen keys to defend against.
type VerifiedTokens =
    std::collections::HashMap<Box<[u8]>, (Arc<Principal>, i64), foldhash::fast::RandomState>;

/// Verified tokens kept at most; past this the cache starts over.
const VERIFIED_CACHE: usize = 10_000;

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("hs256", &self.hs256.is_some())
            .field("jwks_url", &self.jwks.as_ref().map(|j| j.url.as_str()))
            .finish()
    }
}

impl Authenticator {
    pub fn new(config: AuthConfig) -> Self {
        let hs256 = config
            .hs256_secret
            .as_ref()
            .map(|s| Arc::new(DecodingKey::from_secret(s.expose().as_bytes())));
        Self {
            hs256,
            jwks: config.jwks_url.clone().map(JwksCache::new),
            validation: base_validation(&config),
            verified: Default::default(),
        }
    }

    pub fn is_configured(&self) -> bool {
        self.hs256.is_some() || self.jwks.is_some()
    }

    /// Verifies a raw JWT (without "Bearer ") into a Principal.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        self.authenticate_at(token.as_bytes(), chrono::Utc::now().timestamp())
            .await
            .map(|p| Principal::clone(&p))
    }

    /// `authenticate` at `now` (unix seconds), sharing the principal: a token
    /// verified before is answered from the cache without a copy.
    pub async fn authenticate_at(
        &self,
        token: &[u8],
        now: i64,
    ) -> Result<Arc<Principal>, AuthError> {
        if !self.is_configured() {
            return Err(AuthError::NotConfigured);
        }
        if let Some((principal, exp)) = self
            .verified
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
        {
            // Expired entries are not trusted: they fall through to a full check.
            if now < *exp {
                return Ok(principal.clone());
            }
        }
        let token = std::str::from_utf8(token).map_err(|_| AuthError::Malformed)?;
        let header = read_header(token)?;
        let key = self.key_for(&header).await?;
        let claims = verify(token, &key, &self.validation_for(header.alg))?;
        let principal = Arc::new(principal_from(&claims)?);
        let mut verified = self.verified.write().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= VERIFIED_CACHE {
            verified.clear();
        }
        // Strictly before exp (the leeway is for clocks, not for the cache).
        verified.insert(Box::from(token.as_bytes()), (principal.clone(), claims.exp));
        Ok(principal)
    }

    /// The principal of an Authorization header whose token was verified before
    /// and has not expired: no signature work. None does not mean invalid, only
    /// that `authenticate_header_at` has to verify it.
    pub fn cached_header_at(&self, header: Option<&[u8]>, now: i64) -> Option<Arc<Principal>> {
        let token = bearer_token(header).ok()?;
        let verified = self.verified.read().unwrap_or_else(|p| p.into_inner());
        let (principal, exp) = verified.get(token)?;
        (now < *exp).then(|| principal.clone())
    }

    /// Parses an Authorization header value: "Bearer <jwt>" (scheme
    /// case-insensitive), then authenticates the token.
    pub async fn authenticate_header(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        self.authenticate_header_at(header.map(str::as_bytes), chrono::Utc::now().timestamp())
            .await
            .map(|p| Principal::clone(&p))
    }

    /// `authenticate_header` on the header's raw bytes at `now` (unix seconds),
    /// sharing the principal: the request path, where the header is neither
    /// copied nor checked character by character before the cache is asked.
    pub async fn authenticate_header_at(
        &self,
        header: Option<&[u8]>,
        now: i64,
    ) -> Result<Arc<Principal>, AuthError> {
        self.authenticate_at(bearer_token(header)?, now).await
    }

    /// The key for the header's algorithm, from the verifier configured for it.
    async fn key_for(&self, header: &Header) -> Result<Arc<DecodingKey>, AuthError> {
        match header.alg {
            Algorithm::HS256 => self.hs256.clone().ok_or_else(|| rejected(header.alg)),
            Algorithm::RS256 | Algorithm::ES256 => match &self.jwks {
                Some(jwks) => jwks.key_for(header.alg, header.kid.as_deref()).await,
                None => Err(rejected(header.alg)),
            },
            other => Err(rejected(other)),
        }
    }

    /// Exactly one accepted algorithm per call: the one the key was chosen for.
    fn validation_for(&self, alg: Algorithm) -> Validation {
        let mut validation = self.validation.clone();
        validation.algorithms = vec![alg];
        validation
    }
}

fn base_validation(config: &AuthConfig) -> Validation {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = config.leeway.as_secs();
    validation.validate_exp = true;
    validation.validate_nbf = true;
    let mut required = vec!["exp"];
    if let Some(issuer) = &config.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    match &config.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation
}

/// "Bearer <jwt>" -> "<jwt>", on bytes (a token is ASCII; anything else fails
/// verification as malformed).
fn bearer_token(header: Option<&[u8]>) -> Result<&[u8], AuthError> {
    // The usual form, exactly "Bearer " and a token, without a scan.
    if let Some(token) = header.and_then(|h| h.strip_prefix(b"Bearer ")) {
        if token.first().is_some_and(|b| !b.is_ascii_whitespace())
            && token.last().is_some_and(|b| !b.is_ascii_whitespace())
        {
            return Ok(token);
        }
    }
    let value = header
        .map(<[u8]>::trim_ascii)
        .filter(|v| !v.is_empty())
        .ok_or(AuthError::Missing)?;
    let scheme_end = value
        .iter()
        .position(u8::is_ascii_whitespace)
        .unwrap_or(value.len());
    let (scheme, rest) = value.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(AuthError::NotBearer);
    }
    match rest.trim_ascii() {
        [] => Err(AuthError::Missing),
        token => Ok(token),
    }
}

fn rejected(alg: Algorithm) -> AuthError {
    AuthError::Algorithm(format!("{alg:?}"))
}

/// The header, read before anything else; an algorithm the library does not
/// even know (`none`, `HS1024`) is an `Algorithm` error, anything else unreadable
/// is `Malformed`.
fn read_header(token: &str) -> Result<Header, AuthError> {
    jsonwebtoken::decode_header(token).map_err(|_| match unknown_alg(token) {
        Some(alg) => AuthError::Algorithm(printable(&alg)),
        None => AuthError::Malformed,
    })
}

/// The header's `alg` string when it is not an algorithm name the library knows.
fn unknown_alg(token: &str) -> Option<String> {
    let encoded = token.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    let header: Value = serde_json::from_slice(&bytes).ok()?;
    let alg = header.get("alg")?.as_str()?;
    alg.parse::<Algorithm>().is_err().then(|| alg.to_owned())
}

/// Attacker-chosen text is echoed only when short and plain.
fn printable(raw: &str) -> String {
    let plain = raw.len() <= 16 && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if plain {
        raw.to_owned()
    } else {
        "(unrecognised)".to_owned()
    }
}

/// The claims this service reads; the rest are checked by `Validation`.
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    sub: Value,
    #[serde(default)]
    roles: Value,
    /// Required and checked by `Validation`; kept to bound the cache entry.
    #[serde(default)]
    exp: i64,
}

fn verify(token: &str, key: &DecodingKey, validation: &Validation) -> Result<RawClaims, AuthError> {
    jsonwebtoken::decode::<RawClaims>(token, key, validation)
        .map(|data| data.claims)
        .map_err(|e| classify(&e, validation))
}

fn classify(error: &JwtError, validation: &Validation) -> AuthError {
    match error.kind() {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::MissingRequiredClaim(claim) => claims_error(&format!("`{claim}` is required")),
        ErrorKind::InvalidClaimFormat(claim) => {
            claims_error(&format!("`{claim}` has the wrong type"))
        }
        ErrorKind::InvalidIssuer => claims_error("`iss` is not the expected issuer"),
        ErrorKind::InvalidAudience => claims_error("`aud` is not the expected audience"),
        ErrorKind::InvalidSubject => claims_error("`sub` is not accepted"),
        ErrorKind::ImmatureSignature => claims_error("`nbf` is in the future"),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName => match validation.algorithms.first() {
            Some(alg) => rejected(*alg),
            None => AuthError::Algorithm("(none)".to_owned()),
        },
        _ => AuthError::Malformed,
    }
}

fn claims_error(message: &str) -> AuthError {
    AuthError::Claims(message.to_owned())
}

fn principal_from(claims: &RawClaims) -> Result<Principal, AuthError> {
    Ok(Principal {
        user_id: subject(&claims.sub)?,
        roles: roles(&claims.roles)?,
    })
}

fn subject(sub: &Value) -> Result<UserId, AuthError> {
    let raw = sub
        .as_str()
        .ok_or_else(|| claims_error("`sub` must be a string"))?;
    UserId::parse(raw).map_err(|_| claims_error("`sub` is not a valid user id"))
}

/// A non-empty array of known role names (duplicates collapse).
fn roles(raw: &Value) -> Result<Roles, AuthError> {
    let items = raw
        .as_array()
        .ok_or_else(|| claims_error("`roles` must be an array of role names"))?;
    let roles = items
        .iter()
        .map(|item| item.as_str().and_then(Role::parse))
        .collect::<Option<Roles>>()
        .ok_or_else(|| claims_error("`roles` contains an unknown role"))?;
    if roles.is_empty() {
        return Err(claims_error("`roles` must not be empty"));
    }
    Ok(roles)
}

/// Public keys from `AUTH_JWKS_URL`, loaded on first use and cached.
struct JwksCache {
    url: url::Url,
    keys: RwLock<Option<Arc<KeySet>>>,
    /// Held while fetching, so concurrent misses cause one request.
    limiter: tokio::sync::Mutex<FetchLimiter>,
}

impl JwksCache {
    fn new(url: url::Url) -> Self {
        Self {
            url,
            keys: RwLock::new(None),
            limiter: tokio::sync::Mutex::new(FetchLimiter::default()),
        }
    }

    async fn key_for(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Arc<DecodingKey>, AuthError> {
        let cached = self.cached();
        if let Some(set) = &cached {
            match set.select(alg, kid) {
                Err(AuthError::UnknownKey) => {}
                found => return found,
            }
        }
        let fresh = self
            .refresh(cached.as_ref())
            .await
            .ok_or(AuthError::KeysUnavailable)?;
        fresh.select(alg, kid)
    }

    fn cached(&self) -> Option<Arc<KeySet>> {
        match self.keys.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn store(&self, set: Arc<KeySet>) {
        match self.keys.write() {
            Ok(mut guard) => *guard = Some(set),
            Err(poisoned) => *poisoned.into_inner() = Some(set),
        }
    }

    /// Refetches unless another caller already did, or the rate limit says no;
    /// returns the newest key set either way (`None` if never loaded).
    async fn refresh(&self, seen: Option<&Arc<KeySet>>) -> Option<Arc<KeySet>> {
        let mut limiter = self.limiter.lock().await;
        let current = self.cached();
        if !same_set(current.as_ref(), seen) || !limiter.try_acquire(Instant::now()) {
            return current;
        }
        match self.fetch().await {
            Ok(set) => {
                let set = Arc::new(set);
                self.store(set.clone());
                Some(set)
            }
            Err(reason) => {
                tracing::warn!(host = self.url.host_str().unwrap_or(""), %reason, "JWKS fetch failed");
                current
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let client = reqwest::Client::builder()
            .timeout(JWKS_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        let response = client
            .get(self.url.clone())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.without_url().to_string())?;
        let body = response
            .bytes()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| format!("not a JWKS: {e}"))?;
        let keys = KeySet::from_jwks(&set);
        tracing::info!(keys = keys.keys.len(), "JWKS loaded");
        Ok(keys)
    }
}

fn same_set(a: Option<&Arc<KeySet>>, b: Option<&Arc<KeySet>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// The first load is free; every later fetch (refetch on an unknown `kid`, or a
/// retry after a failed load) waits `JWKS_REFETCH_INTERVAL` after the previous one.
#[derive(Default)]
struct FetchLimiter {
    loaded_once: bool,
    last_refetch: Option<Instant>,
}

impl FetchLimiter {
    fn try_acquire(&mut self, now: Instant) -> bool {
        if !self.loaded_once {
            self.loaded_once = true;
            return true;
        }
        if self
            .last_refetch
            .is_some_and(|last| now.duration_since(last) < JWKS_REFETCH_INTERVAL)
        {
            return false;
        }
        self.last_refetch = Some(now);
        true
    }
}

/// The usable keys of a JWKS: RSA keys for RS256, P-256 keys for ES256.
struct KeySet {
    keys: Vec<VerifyingKey>,
}

struct VerifyingKey {
    kid: Option<String>,
    alg: Algorithm,
    key: Arc<DecodingKey>,
}

impl KeySet {
    fn from_jwks(set: &JwkSet) -> Self {
        Self {
            keys: set.keys.iter().filter_map(VerifyingKey::from_jwk).collect(),
        }
    }

    /// By `kid` when the token has one (its algorithm must match the key's),
    /// else the single key of the token's algorithm.
    fn select(&self, alg: Algorithm, kid: Option<&str>) -> Result<Arc<DecodingKey>, AuthError> {
        let Some(kid) = kid else {
            let mut matching = self.keys.iter().filter(|k| k.alg == alg);
            return match (matching.next(), matching.next()) {
                (Some(only), None) => Ok(only.key.clone()),
                _ => Err(AuthError::UnknownKey),
            };
        };
        let found = self
            .keys
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid))
            .ok_or(AuthError::UnknownKey)?;
        if found.alg != alg {
            return Err(rejected(alg));
        }
        Ok(found.key.clone())
    }
}

impl VerifyingKey {
    /// `None` for keys this service never verifies with (encryption keys,
    /// symmetric keys, other algorithms and curves).
    fn from_jwk(jwk: &Jwk) -> Option<Self> {
        if matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
        ) {
            return None;
        }
        let alg = jwk_algorithm(jwk)?;
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some(Self {
            kid: jwk.common.key_id.clone(),
            alg,
            key: Arc::new(key),
        })
    }
}

/// The algorithm a JWK may verify: implied by its key type, and equal to its
/// own `alg` when it declares one.
fn jwk_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        _ => return None,
    };
    let declared = match jwk.common.key_algorithm {
        None => return Some(implied),
        Some(KeyAlgorithm::RS256) => Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => Algorithm::ES256,
        Some(_) => return None,
    };
    (declared == implied).then_some(implied)
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    roles: Vec<&'static str>,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// For `cgm-hub token mint` and tests: an HS256 token with sub, roles, iat,
/// exp (now + ttl), plus iss/aud if given. Refuses to mint what
/// `Authenticator` would reject (bad sub, no roles, empty secret).
pub fn mint_hs256(
    secret: &str,
    sub: &str,
    roles: &[Role],
    ttl: Duration,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> Result<String, AuthError> {
    if secret.is_empty() {
        return Err(AuthError::NotConfigured);
    }
    UserId::parse(sub).map_err(|_| claims_error("`sub` is not a valid user id"))?;
    let mut roles = roles.to_vec();
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        return Err(claims_error("`roles` must not be empty"));
    }
    let iat = jsonwebtoken::get_current_timestamp();
    let claims = MintedClaims {
        sub,
        roles: roles.into_iter().map(Role::as_str).collect(),
        iat,
        exp: iat.saturating_add(ttl.as_secs()),
        iss: issuer,
        aud: audience,
    };
    let key = EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
        .map_err(|_| AuthError::Malformed)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::StatusCode;
    use serde_json::json;

    use super::*;

    const SECRET: &str = "test-secret-that-is-long-enough-for-hs256";
    const RSA_PRIVATE: &str = include_str!("testdata/rsa_private.pem");
    const RSA_PUBLIC: &str = include_str!("testdata/rsa_public.pem");
    const EC_PRIVATE: &str = include_str!("testdata/ec_private.pem");
    const JWKS: &str = include_str!("testdata/jwks.json");
    const HOUR: Duration = Duration::from_secs(3600);

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn hs_config() -> AuthConfig {
        AuthConfig {
            hs256_secret: Some(Secret::new(SECRET.to_owned())),
            ..AuthConfig::default()
        }
    }

    fn hs_auth() -> Authenticator {
        Authenticator::new(hs_config())
    }

    fn jwks_auth(url: url::Url) -> Authenticator {
        Authenticator::new(AuthConfig {
            jwks_url: Some(url),
            ..AuthConfig::default()
        })
    }

    fn claims(sub: &str, roles: &[&str]) -> Value {
        json!({ "sub": sub, "roles": roles, "iat": now(), "exp": now() + 3600 })
    }

    fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
        jsonwebtoken::encode(header, claims, key).expect("sign test token")
    }

    fn sign_hs(secret: &[u8], claims: &Value) -> String {
        sign(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret),
        )
    }

    fn with_kid(alg: Algorithm, kid: Option<&str>) -> Header {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        header
    }

    fn sign_rs(kid: Option<&str>, claims: &Value) -> String {
        let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).expect("rsa pem");
        sign(&with_kid(Algorithm::RS256, kid), claims, &key)
    }

    fn sign_es(kid: Option<&str>, claims: &Value) -> String {
        let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).expect("ec pem");
        sign(&with_kid(Algorithm::ES256, kid), claims, &key)
    }

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
    }

    /// Serves `body` with `status` at /jwks.json and counts requests.
    async fn jwks_server(status: StatusCode, body: &'static str) -> (url::Url, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async move { (status, [("content-type", "application/json")], body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let url = url::Url::parse(&format!("http://{addr}/jwks.json")).expect("url");
        (url, hits)
    }

    async fn serve_jwks() -> (url::Url, Arc<AtomicUsize>) {
        jwks_server(StatusCode::OK, JWKS).await
    }

    #[tokio::test]
    async fn hs256_valid_token_yields_sorted_deduplicated_roles() {
        let token = mint_hs256(
            SECRET,
            "alice_01",
            &[Role::Admin, Role::Patient, Role::Admin],
            HOUR,
            None,
            None,
        )
        .expect("mint");
        let principal = hs_auth().authenticate(&token).await.expect("valid");
        assert_eq!(principal.user_id.as_str(), "alice_01");
        assert_eq!(principal.roles, [Role::Patient, Role::Admin]);
    }

    #[tokio::test]
    async fn duplicate_role_names_in_token_are_deduplicated() {
        let token = sign_hs(
            SECRET.as_bytes(),
            &claims("bob", &["service", "caregiver", "service"]),
        );
        let principal = hs_auth().authenticate(&token).await.expect("valid");
        assert_eq!(principal.roles, [Role::Caregiver, Role::Service]);
    }

    #[tokio::test]
    async fn expired_token_is_rejected() {
        let mut c = claims("alice", &["patient"]);
        c["exp"] = json!(now() - 120);
        let token = sign_hs(SECRET.as_bytes(), &c);
        assert_eq!(
            hs_auth().authenticate(&token).await,
            Err(AuthError::Expired)
        );
    }

    #[tokio::test]
    async fn expired_within_leeway_is_accepted() {
        let mut c = claims("alice", &["patient"]);
        c["exp"] = json!(now() - 10);
        let token = sign_hs(SECRET.as_bytes(), &c);
        let principal = hs_auth()
            .authenticate(&token)
            .await
            .expect("within 30 s leeway");
        assert_eq!(principal.user_id.as_str(), "alice");
    }

    #[tokio::test]
    async fn missing_exp_is_a_claims_error() {
        let token = sign_hs(
            SECRET.as_bytes(),
            &json!({ "sub": "alice", "roles": ["patient"] }),
        );
        let err = hs_auth().authenticate(&token).await.expect_err("no exp");
        assert!(
            matches!(err, AuthError::Claims(ref m) if m.contains("exp")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn future_nbf_is_a_claims_error() {
        let mut c = claims("alice", &["patient"]);
        c["nbf"] = json!(now() + 600);
        let token = sign_hs(SECRET.as_bytes(), &c);
        let err = hs_auth()
            .authenticate(&token)
            .await
            .expect_err("not yet valid");
        assert!(
            matches!(err, AuthError::Claims(ref m) if m.contains("nbf")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn wrong_secret_is_a_bad_signature() {
        let token = sign_hs(b"another-secret-entirely", &claims("alice", &["patient"]));
        assert_eq!(
            hs_auth().authenticate(&token).await,
            Err(AuthError::BadSignature)
        );
    }

    #[tokio::test]
    async fn the_verified_cache_serves_only_the_exact_token() {
        let auth = hs_auth();
        let token = sign_hs(SECRET.as_bytes(), &claims("alice", &["patient"]));
        let first = auth.authenticate(&token).await.unwrap();
        assert_eq!(auth.authenticate(&token).await.unwrap(), first, "cached");
        // Same header and signature, claims swapped: not the cached string.
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(&claims("alice", &["admin"])),
            parts[2]
        );
        assert_eq!(
            auth.authenticate(&forged).await,
            Err(AuthError::BadSignature)
        );
    }

    #[tokio::test]
    async fn tampered_payload_is_a_bad_signature() {
        let token = sign_hs(SECRET.as_bytes(), &claims("alice", &["patient"]));
        let parts: Vec<&str> = token.split('.').collect();
        let forged = b64(&claims("alice", &["admin"]));
        let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
        assert_eq!(
            hs_auth().authenticate(&tampered).await,
            Err(AuthError::BadSignature)
        );
    }

    #[tokio::test]
    async fn alg_none_is_rejected() {
        let header = b64(&json!({ "alg": "none", "typ": "JWT" }));
        let payload = b64(&claims("alice", &["admin"]));
        let token = format!("{header}.{payload}.");
        assert_eq!(
            hs_auth().authenticate(&token).await,
            Err(AuthError::Algorithm("none".to_owned()))
        );
    }

    #[tokio::test]
    async fn other_known_algorithms_are_rejected() {
        let c = claims("alice", &["patient"]);
        let hs512 = sign(
            &Header::new(Algorithm::HS512),
            &c,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        );
        assert_eq!(
            hs_auth().authenticate(&hs512).await,
            Err(AuthError::Algorithm("HS512".to_owned()))
        );
        let rs384 = sign(
            &Header::new(Algorithm::RS384),
            &c,
            &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).expect("pem"),
        );
        let (url, _) = serve_jwks().await;
        assert_eq!(
            jwks_auth(url).authenticate(&rs384).await,
            Err(AuthError::Algorithm("RS384".to_owned()))
        );
    }

    #[tokio::test]
    async fn malformed_tokens_are_rejected() {
        let auth = hs_auth();
        for token in ["", "abc", "a.b.c", "a.b", "!!!.###.$$$"] {
            assert_eq!(
                auth.authenticate(token).await,
                Err(AuthError::Malformed),
                "{token}"
            );
        }
        // Correctly signed, but the payload is not JSON.
        let message = format!(
            "{}.{}",
            b64(&json!({ "alg": "HS256" })),
            URL_SAFE_NO_PAD.encode("hi")
        );
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).expect("sign");
        let token = format!("{message}.{signature}");
        assert_eq!(auth.authenticate(&token).await, Err(AuthError::Malformed));
        // An unsigned garbage payload fails on the signature first.
        let token = format!("{}.not-json.c2ln", b64(&json!({ "alg": "HS256" })));
        assert_eq!(
            auth.authenticate(&token).await,
            Err(AuthError::BadSignature)
        );
    }

    #[tokio::test]
    async fn nothing_configured_is_not_configured() {
        let token = mint_hs256(SECRET, "alice", &[Role::Patient], HOUR, None, None).expect("mint");
        let auth = Authenticator::new(AuthConfig::default());
        assert!(!auth.is_configured());
        assert_eq!(
            auth.authenticate(&token).await,
            Err(AuthError::NotConfigured)
        );
        assert!(hs_auth().is_configured());
    }

    #[tokio::test]
    async fn hs256_signed_with_public_key_is_rejected_when_only_jwks() {
        let (url, hits) = serve_jwks().await;
        let token = sign_hs(RSA_PUBLIC.as_bytes(), &claims("mallory", &["admin"]));
        assert_eq!(
            jwks_auth(url).authenticate(&token).await,
            Err(AuthError::Algorithm("HS256".to_owned()))
        );
        assert_eq!(hits.load(Ordering::SeqCst), 0, "no key lookup for HS256");
    }

    #[tokio::test]
    async fn hs256_signed_with_public_key_fails_against_the_secret() {
        let (url, _) = serve_jwks().await;
        let auth = Authenticator::new(AuthConfig {
            jwks_url: Some(url),
            ..hs_config()
        });
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa-1".to_owned());
        let token = sign(
            &header,
            &claims("mallory", &["admin"]),
            &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
        );
        assert_eq!(
            auth.authenticate(&token).await,
            Err(AuthError::BadSignature)
        );
    }

    #[tokio::test]
    async fn rs256_token_is_rejected_without_jwks() {
        let token = sign_rs(Some("rsa-1"), &claims("alice", &["patient"]));
        assert_eq!(
            hs_auth().authenticate(&token).await,
            Err(AuthError::Algorithm("RS256".to_owned()))
        );
    }

    #[tokio::test]
    async fn rs256_and_es256_verify_through_a_cached_jwks() {
        let (url, hits) = serve_jwks().await;
        let auth = jwks_auth(url);
        let rs = sign_rs(Some("rsa-1"), &claims("alice", &["clinician"]));
        let es = sign_es(Some("ec-1"), &claims("bob", &["patient", "caregiver"]));
        let alice = auth.authenticate(&rs).await.expect("rs256");
        assert_eq!(
            (alice.user_id.as_str(), alice.roles),
            ("alice", Roles::from([Role::Clinician]))
        );
        let bob = auth.authenticate(&es).await.expect("es256");
        assert_eq!(bob.user_id.as_str(), "bob");
        assert_eq!(bob.roles, [Role::Patient, Role::Caregiver]);
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "keys fetched once, then cached"
        );
    }

    #[tokio::test]
    async fn without_kid_the_single_key_of_that_type_is_used() {
        let (url, _) = serve_jwks().await;
        let auth = jwks_auth(url);
        let rs = sign_rs(None, &claims("alice", &["patient"]));
        let es = sign_es(None, &claims("bob", &["patient"]));
        assert!(auth.authenticate(&rs).await.is_ok());
        assert!(auth.authenticate(&es).await.is_ok());
    }

    #[tokio::test]
    async fn kid_pointing_at_a_key_of_another_type_is_rejected() {
        let (url, _) = serve_jwks().await;
        let auth = jwks_auth(url);
        let rs = sign_rs(Some("ec-1"), &claims("alice", &["patient"]));
        assert_eq!(
            auth.authenticate(&rs).await,
            Err(AuthError::Algorithm("RS256".to_owned()))
        );
        let es = sign_es(Some("rsa-1"), &claims("alice", &["patient"]));
        assert_eq!(
            auth.authenticate(&es).await,
            Err(AuthError::Algorithm("ES256".to_owned()))
        );
    }

    #[tokio::test]
    async fn rs256_signed_by_another_key_is_a_bad_signature() {
        let (url, _) = serve_jwks().await;
        // An ES256 signature relabelled as RS256 for the RSA key.
        let es = sign_es(Some("ec-1"), &claims("alice", &["patient"]));
        let signature = es.rsplit('.').next().unwrap_or_default();
        let header = b64(&json!({ "alg": "RS256", "kid": "rsa-1" }));
        let payload = b64(&claims("alice", &["patient"]));
        let token = format!("{header}.{payload}.{signature}");
        assert_eq!(
            jwks_auth(url).authenticate(&token).await,
            Err(AuthError::BadSignature)
        );
    }

    #[tokio::test]
    async fn unknown_kid_refetches_at_most_once_per_interval() {
        let (url, hits) = serve_jwks().await;
        let auth = jwks_auth(url);
        let good = sign_rs(Some("rsa-1"), &claims("alice", &["patient"]));
        assert!(auth.authenticate(&good).await.is_ok());
        assert_eq!(hits.load(Ordering::SeqCst), 1, "initial load");

        let unknown = sign_rs(Some("rotated-1"), &claims("alice", &["patient"]));
        assert_eq!(
            auth.authenticate(&unknown).await,
            Err(AuthError::UnknownKey)
        );
        assert_eq!(hits.load(Ordering::SeqCst), 2, "one refetch");

        let another = sign_rs(Some("rotated-2"), &claims("alice", &["patient"]));
        assert_eq!(
            auth.authenticate(&another).await,
            Err(AuthError::UnknownKey)
        );
        assert_eq!(hits.load(Ordering::SeqCst), 2, "rate-limited within 10 s");

        assert!(auth.authenticate(&good).await.is_ok(), "cache still serves");
    }

    #[test]
    fn limiter_allows_a_refetch_again_after_the_interval() {
        let start = Instant::now();
        let mut limiter = FetchLimiter::default();
        assert!(limiter.try_acquire(start), "first load");
        assert!(limiter.try_acquire(start), "first refetch");
        assert!(!limiter.try_acquire(start + Duration::from_secs(9)));
        assert!(limiter.try_acquire(start + JWKS_REFETCH_INTERVAL));
    }

    #[tokio::test]
    async fn unreachable_jwks_is_keys_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let url = url::Url::parse(&format!("http://{addr}/jwks.json")).expect("url");
        let token = sign_rs(Some("rsa-1"), &claims("alice", &["patient"]));
        assert_eq!(
            jwks_auth(url).authenticate(&token).await,
            Err(AuthError::KeysUnavailable)
        );
    }

    #[tokio::test]
    async fn failing_jwks_is_keys_unavailable_and_retried_sparingly() {
        let (url, hits) = jwks_server(StatusCode::INTERNAL_SERVER_ERROR, "oops").await;
        let auth = jwks_auth(url);
        let token = sign_rs(Some("rsa-1"), &claims("alice", &["patient"]));
        for _ in 0..4 {
            assert_eq!(
                auth.authenticate(&token).await,
                Err(AuthError::KeysUnavailable)
            );
        }
        assert_eq!(hits.load(Ordering::SeqCst), 2, "first load plus one retry");
    }

    #[tokio::test]
    async fn jwks_ignores_symmetric_and_encryption_keys() {
        const ODD: &str = r#"{"keys":[
            {"kty":"oct","kid":"hmac","alg":"HS256","k":"c2VjcmV0"},
            {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"}
        ]}"#;
        let (url, _) = jwks_server(StatusCode::OK, ODD).await;
        let auth = jwks_auth(url);
        let token = sign_rs(Some("enc"), &claims("alice", &["patient"]));
        assert_eq!(auth.authenticate(&token).await, Err(AuthError::UnknownKey));
        let token = sign_hs(b"secret", &claims("alice", &["patient"]));
        assert_eq!(
            auth.authenticate(&token).await,
            Err(AuthError::Algorithm("HS256".to_owned()))
        );
    }

    #[tokio::test]
    async fn issuer_and_audience_are_checked_when_configured() {
        let auth = Authenticator::new(AuthConfig {
            issuer: Some("https://idp.example".to_owned()),
            audience: Some("cgm-hub".to_owned()),
            ..hs_config()
        });
        let mint = |iss, aud| mint_hs256(SECRET, "alice", &[Role::Patient], HOUR, iss, aud);
        let good = mint(Some("https://idp.example"), Some("cgm-hub")).expect("mint");
        assert!(auth.authenticate(&good).await.is_ok());

        let cases = [
            (Some("https://evil.example"), Some("cgm-hub"), "iss"),
            (Some("https://idp.example"), Some("other-api"), "aud"),
            (None, Some("cgm-hub"), "iss"),
            (Some("https://idp.example"), None, "aud"),
        ];
        for (iss, aud, claim) in cases {
            let token = mint(iss, aud).expect("mint");
            let err = auth.authenticate(&token).await.expect_err("rejected");
            assert!(
                matches!(err, AuthError::Claims(ref m) if m.contains(claim)),
                "{err:?}"
            );
        }
    }

    #[tokio::test]
    async fn issuer_and_audience_are_ignored_when_not_configured() {
        let token = mint_hs256(
            SECRET,
            "alice",
            &[Role::Patient],
            HOUR,
            Some("anyone"),
            Some("anything"),
        )
        .expect("mint");
        assert!(hs_auth().authenticate(&token).await.is_ok());
    }

    #[tokio::test]
    async fn bad_roles_are_claims_errors() {
        let auth = hs_auth();
        let cases = [
            json!(["patient", "superuser"]),
            json!([]),
            json!("patient"),
            json!(["Patient"]),
            json!([1]),
            Value::Null,
        ];
        for roles in cases {
            let mut c = claims("alice", &[]);
            c["roles"] = roles.clone();
            let token = sign_hs(SECRET.as_bytes(), &c);
            let err = auth.authenticate(&token).await.expect_err("bad roles");
            assert!(
                matches!(err, AuthError::Claims(ref m) if m.contains("roles")),
                "{roles}: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn bad_sub_is_a_claims_error() {
        let auth = hs_auth();
        for sub in [json!("not a user!"), json!(""), json!(42), Value::Null] {
            let mut c = claims("x", &["patient"]);
            c["sub"] = sub.clone();
            let token = sign_hs(SECRET.as_bytes(), &c);
            let err = auth.authenticate(&token).await.expect_err("bad sub");
            assert!(
                matches!(err, AuthError::Claims(ref m) if m.contains("sub")),
                "{sub}: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn authenticate_header_variants() {
        let auth = hs_auth();
        let token = mint_hs256(SECRET, "alice", &[Role::Patient], HOUR, None, None).expect("mint");
        for value in [
            format!("Bearer {token}"),
            format!("bearer {token}"),
            format!("BEARER   {token}  "),
        ] {
            let principal = auth
                .authenticate_header(Some(&value))
                .await
                .expect("bearer");
            assert_eq!(principal.user_id.as_str(), "alice");
        }
        assert_eq!(
            auth.authenticate_header(None).await,
            Err(AuthError::Missing)
        );
        assert_eq!(
            auth.authenticate_header(Some("  ")).await,
            Err(AuthError::Missing)
        );
        assert_eq!(
            auth.authenticate_header(Some("Bearer")).await,
            Err(AuthError::Missing)
        );
        assert_eq!(
            auth.authenticate_header(Some("Bearer  ")).await,
            Err(AuthError::Missing)
        );
        assert_eq!(
            auth.authenticate_header(Some("Basic YWxpY2U6cHc=")).await,
            Err(AuthError::NotBearer)
        );
        assert_eq!(
            auth.authenticate_header(Some(&format!("Bearer{token}")))
                .await,
            Err(AuthError::NotBearer)
        );
        assert_eq!(
            auth.authenticate_header(Some("Bearer not.a.jwt")).await,
            Err(AuthError::Malformed)
        );
        assert_eq!(
            auth.authenticate_header(Some("Bearer  not.a.jwt ")).await,
            Err(AuthError::Malformed)
        );
        // Bytes that are not text (a header value may hold them) are malformed.
        assert_eq!(
            auth.authenticate_header_at(Some(b"Bearer \xff\xfe.a.b"), 0)
                .await
                .map(|p| p.user_id.clone()),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn mint_refuses_tokens_that_would_be_rejected() {
        let mint = |secret, sub, roles: &[Role]| mint_hs256(secret, sub, roles, HOUR, None, None);
        assert!(matches!(
            mint(SECRET, "bad sub", &[Role::Patient]),
            Err(AuthError::Claims(_))
        ));
        assert!(matches!(
            mint(SECRET, "alice", &[]),
            Err(AuthError::Claims(_))
        ));
        assert_eq!(
            mint("", "alice", &[Role::Patient]),
            Err(AuthError::NotConfigured)
        );
    }

    #[test]
    fn minted_token_carries_the_requested_claims() {
        let token = mint_hs256(
            SECRET,
            "alice",
            &[Role::Service],
            Duration::from_secs(600),
            Some("iss-x"),
            Some("aud-y"),
        )
        .expect("mint");
        let payload = token.split('.').nth(1).expect("payload");
        let body: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
        assert_eq!(body["sub"], "alice");
        assert_eq!(body["roles"], json!(["service"]));
        assert_eq!(
            (body["iss"].as_str(), body["aud"].as_str()),
            (Some("iss-x"), Some("aud-y"))
        );
        let ttl = body["exp"].as_i64().expect("exp") - body["iat"].as_i64().expect("iat");
        assert_eq!(ttl, 600);
    }

    #[test]
    fn authenticator_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Authenticator>();
    }
}
