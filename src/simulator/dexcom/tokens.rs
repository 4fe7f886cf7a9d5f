//! The authorization server's memory: authorization codes, access tokens and
//! rotating refresh tokens, with the single-use and reuse rules of OAuth 2.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// How long an authorization code can be exchanged.
const CODE_TTL: Duration = Duration::from_secs(10 * 60);

/// A token pair just issued for `sim_user`.
#[derive(Debug, Clone)]
pub(super) struct Issued {
    pub(super) access_token: String,
    pub(super) refresh_token: String,
}

/// What the login step bound a code to.
#[derive(Debug, Clone)]
pub(super) struct CodeGrant {
    pub(super) client_id: String,
    pub(super) redirect_uri: String,
    pub(super) sim_user: String,
    /// The S256 `code_challenge`, if the login had one.
    pub(super) challenge: Option<String>,
}

/// What the token request presents with a code.
#[derive(Debug, Clone, Copy)]
pub(super) struct CodeRedemption<'a> {
    pub(super) code: &'a str,
    pub(super) client_id: &'a str,
    pub(super) redirect_uri: &'a str,
    pub(super) code_verifier: Option<&'a str>,
}

#[derive(Debug)]
struct PendingCode {
    grant: CodeGrant,
    expires_at: Instant,
    /// None while unused; Some(family) once an exchange was attempted (the
    /// family is None if that attempt failed).
    used: Option<Option<u64>>,
}

#[derive(Debug)]
struct Token {
    sim_user: String,
    /// Every token descending from one authorization code shares a family.
    family: u64,
    expires_at: Instant,
    /// Refresh tokens only: already exchanged for a newer pair.
    rotated: bool,
}

/// All live codes and tokens. Guarded by the simulator's mutex.
#[derive(Debug)]
pub(super) struct TokenStore {
    access_ttl: Duration,
    refresh_ttl: Duration,
    codes: HashMap<String, PendingCode>,
    access: HashMap<String, Token>,
    refresh: HashMap<String, Token>,
    next_family: u64,
}

impl TokenStore {
    pub(super) fn new(access_ttl: Duration, refresh_ttl: Duration) -> Self {
        Self {
            access_ttl,
            refresh_ttl,
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            next_family: 1,
        }
    }

    /// A fresh single-use code, valid for 10 minutes.
    pub(super) fn issue_code(&mut self, grant: CodeGrant) -> String {
        let now = Instant::now();
        self.codes.retain(|_, c| c.expires_at > now);
        let code = random_token(24);
        let pending = PendingCode {
            grant,
            expires_at: deadline(now, CODE_TTL),
            used: None,
        };
        self.codes.insert(code.clone(), pending);
        code
    }

    /// Exchanges a code. Any attempt on a known code uses it up, even a failed
    /// one; presenting a code a second time also revokes the tokens the first
    /// exchange issued (RFC 6749 §4.1.2). Errors are `invalid_grant` texts.
    pub(super) fn redeem_code(&mut self, r: CodeRedemption<'_>) -> Result<Issued, &'static str> {
        let now = Instant::now();
        let Some(pending) = self.codes.get_mut(r.code) else {
            return Err("unknown authorization code");
        };
        if let Some(family) = pending.used {
            if let Some(family) = family {
                self.revoke_family(family);
            }
            return Err("authorization code was already used");
        }
        pending.used = Some(None);
        if pending.expires_at <= now {
            return Err("authorization code expired");
        }
        let grant = &pending.grant;
        if grant.client_id != r.client_id {
            return Err("authorization code was issued to another client");
        }
        if grant.redirect_uri != r.redirect_uri {
            return Err("redirect_uri does not match the authorization request");
        }
        if let Some(challenge) = &grant.challenge {
            match r.code_verifier {
                None => return Err("code_verifier is required for this code"),
                Some(v) if s256(v) != *challenge => {
                    return Err("code_verifier does not match the code_challenge")
                }
                Some(_) => {}
            }
        }
        let sim_user = grant.sim_user.clone();
        let family = self.next_family;
        self.next_family += 1;
        if let Some(pending) = self.codes.get_mut(r.code) {
            pending.used = Some(Some(family));
        }
        Ok(self.issue_pair(&sim_user, family))
    }

    /// Rotates a refresh token: the presented one dies, a new pair is issued.
    /// Presenting an already rotated token is treated as theft (RFC 9700
    /// §4.14.2): the whole family, including the newest pair, is revoked.
    pub(super) fn refresh(&mut self, refresh_token: &str) -> Result<Issued, &'static str> {
        let now = Instant::now();
        let Some(token) = self.refresh.get_mut(refresh_token) else {
            return Err("unknown or revoked refresh token");
        };
        if token.rotated {
            let family = token.family;
            self.revoke_family(family);
            return Err("refresh token was already used; its token family is revoked");
        }
        if token.expires_at <= now {
            self.refresh.remove(refresh_token);
            return Err("refresh token expired");
        }
        token.rotated = true;
        let (sim_user, family) = (token.sim_user.clone(), token.family);
        Ok(self.issue_pair(&sim_user, family))
    }

    /// The sim user an access token belongs to, if it is live.
    pub(super) fn user_of(&self, access_token: &str) -> Option<&str> {
        self.access
            .get(access_token)
            .filter(|t| t.expires_at > Instant::now())
            .map(|t| t.sim_user.as_str())
    }

    /// Forgets every code and token of `sim_user`; a new login is possible.
    pub(super) fn revoke_user(&mut self, sim_user: &str) {
        self.codes.retain(|_, c| c.grant.sim_user != sim_user);
        self.access.retain(|_, t| t.sim_user != sim_user);
        self.refresh.retain(|_, t| t.sim_user != sim_user);
    }

    /// Makes every access token issued so far expired as of now.
    pub(super) fn expire_access_tokens(&mut self) {
        let now = Instant::now();
        for t in self.access.values_mut() {
            t.expires_at = t.expires_at.min(now);
        }
    }

    fn revoke_family(&mut self, family: u64) {
        self.access.retain(|_, t| t.family != family);
        self.refresh.retain(|_, t| t.family != family);
    }

    /// A token pair for `sim_user` as if it had just completed a login (a new
    /// token family), without the login: for provisioning many users in load
    /// tests.
    pub(super) fn provision(&mut self, sim_user: &str) -> Issued {
        let family = self.next_family;
        self.next_family += 1;
        self.insert_pair(sim_user, family, Instant::now())
    }

    fn issue_pair(&mut self, sim_user: &str, family: u64) -> Issued {
        let now = Instant::now();
        self.access.retain(|_, t| t.expires_at > now);
        self.refresh.retain(|_, t| t.expires_at > now);
        self.insert_pair(sim_user, family, now)
    }

    fn insert_pair(&mut self, sim_user: &str, family: u64, now: Instant) -> Issued {
        let token = |ttl| Token {
            sim_user: sim_user.to_owned(),
            family,
            expires_at: deadline(now, ttl),
            rotated: false,
        };
        let issued = Issued {
            access_token: random_token(32),
            refresh_token: random_token(32),
        };
        self.access
            .insert(issued.access_token.clone(), token(self.access_ttl));
        self.refresh
            .insert(issued.refresh_token.clone(), token(self.refresh_ttl));
        issued
    }
}

/// PKCE S256: base64url-no-pad(SHA-256(verifier)).
pub(super) fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// `bytes` random bytes as base64url without padding.
fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// `now + ttl`, saturating at a century for absurd configured lifetimes.
fn deadline(now: Instant, ttl: Duration) -> Instant {
    now.checked_add(ttl)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_the_rfc_7636_example() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn tokens_are_long_random_and_distinct() {
        let a = random_token(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token(32));
    }
}
