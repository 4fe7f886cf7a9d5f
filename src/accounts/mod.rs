//! Built-in accounts: sign-up, login, refresh-token rotation and logout for
//! people without an identity provider of their own. The access tokens issued
//! are the HS256 bearer JWTs `auth::jwt::Authenticator` verifies (same secret,
//! issuer and audience), so the rest of the API treats them like any other.
//! Passwords are hashed with Argon2id in a bounded pool (`hashing`); failed
//! logins are slowed down per email and per client IP (`throttle`). Password
//! reset and email verification mail single-use tokens (`mail`).

pub mod hashing;
pub mod mail;
pub mod throttle;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use chrono::{DateTime, Utc};

use crate::auth::jwt::mint_hs256;
use crate::config::{AccountSettings, Registration};
use crate::digest::sha256_hex;
use crate::domain::{Email, Password, PasswordAttempt, Profile, TimeZoneName, UserId};
use crate::records::account_tokens::{AccountToken, TokenPurpose};
use crate::records::accounts::{Account, AccountCreated, NewRefreshToken, Rotation};
use crate::records::invitations::{Invitation, PendingShare};
use crate::records::roles::{Role, Roles};
use crate::records::shares::{Share, ShareWrite};
use crate::secret::Secret;
use crate::store::{Store, StoreError};
use hashing::{HashCost, HashPool};
use throttle::Throttle;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("an account with this email already exists")]
    EmailTaken,
    /// Unknown email or wrong password (the same answer for both); the account,
    /// when there is one, for the audit trail.
    #[error("invalid email or password")]
    InvalidCredentials { account: Option<UserId> },
    /// Unknown, expired, revoked or reused refresh token (a reuse revoked its family).
    #[error("the refresh token is invalid, expired or revoked")]
    InvalidRefreshToken { account: Option<UserId> },
    #[error("too many failed logins; retry after {retry_after} s")]
    Throttled { retry_after: u64 },
    #[error("password hashing is busy; retry shortly")]
    Busy,
    #[error("registration is {} on this service", .0.as_str())]
    RegistrationClosed(Registration),
    /// The invitation token is unknown, used, expired or for another email.
    #[error("{0}")]
    InvalidInvitation(&'static str),
    /// REGISTRATION=invite and no invitation token given.
    #[error("registration is by invitation on this service: an invitation_token is required")]
    InvitationRequired,
    #[error("accounts are off: they need AUTH_JWT_SECRET to sign access tokens")]
    Disabled,
    /// The SMTP server refused or could not be reached.
    #[error("sending mail failed: {0}")]
    Mail(String),
    /// No SMTP_URL outside development: password reset and email
    /// verification are off (the feature is named).
    #[error("{0} is off on this service: it needs mail (SMTP_URL)")]
    MailOff(&'static str),
    /// A reset or verification token that is unknown, used, expired or for
    /// the other purpose.
    #[error("{0}")]
    InvalidToken(&'static str),
    #[error("the email is verified already")]
    AlreadyVerified,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

/// What sign-up and login hand out.
#[derive(Debug)]
pub struct Session {
    pub account: Account,
    pub access_token: Secret<String>,
    pub refresh_token: Secret<String>,
    /// Seconds the access token lives.
    pub expires_in: u64,
}

/// A sign-up, parsed.
#[derive(Debug)]
pub struct NewAccount {
    pub email: Email,
    pub password: Password,
    pub full_name: Option<String>,
    pub timezone: Option<TimeZoneName>,
    /// The token of an invitation (required when REGISTRATION=invite).
    pub invitation_token: Option<Secret<String>>,
}

/// An invitation just made: the token to hand over (mailed or shown once), and
/// what was stored.
#[derive(Debug)]
pub struct Invited {
    pub token: Secret<String>,
    pub invitation: Invitation,
    /// The link went out by mail (SMTP_URL set); otherwise mail is off and
    /// the inviter hands the token over.
    pub mailed: bool,
}

/// How access tokens are signed (the service's HS256 settings).
#[derive(Debug, Clone)]
pub struct Signer {
    pub secret: Secret<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

pub struct AccountService {
    store: Arc<dyn Store>,
    signer: Option<Signer>,
    settings: AccountSettings,
    pool: HashPool,
    /// A hash of a random password at the configured cost: what an unknown
    /// email's password is checked against, so that it takes as long as a
    /// wrong password for a known one. Made by the first such login (in the
    /// pool), not at start-up.
    dummy_hash: tokio::sync::OnceCell<String>,
    per_account: Throttle<String>,
    per_ip: Throttle<IpAddr>,
    /// Whether an account id is disabled, as the store said within the last
    /// ACCOUNT_STATUS_CACHE_SECONDS (the revocation delay of access tokens).
    disabled: moka::sync::Cache<String, bool>,
    mailer: Option<Arc<mail::Mailer>>,
    /// Emails a reset was asked for within the last RESET_REQUEST_INTERVAL
    /// (further requests get the same 202 and send nothing).
    recent_resets: moka::sync::Cache<String, ()>,
}

/// How long a password-reset token works.
pub const RESET_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(3600);
/// How long an email-verification token works.
pub const VERIFY_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(48 * 3600);
/// At most one reset mail per email in this time (per instance).
pub const RESET_REQUEST_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Where a reset or verification link goes.
#[derive(Clone)]
enum LinkRoute {
    Mail(Arc<mail::Mailer>),
    /// Development without SMTP_URL: logged at info.
    Log,
}

/// `u` and 32 lower-case hex digits: the shape of the ids accounts get
/// (`new_account_id`). Only tokens whose `sub` has it cost an account check.
fn is_account_id(id: &str) -> bool {
    id.len() == 33
        && id.starts_with('u')
        && id[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl AccountService {
    /// Loads the breached list; refuses Argon2 parameters the crate rejects.
    pub fn new(
        store: Arc<dyn Store>,
        signer: Option<Signer>,
        settings: AccountSettings,
    ) -> Result<Self, AccountError> {
        let cost = HashCost {
            memory_kib: settings.argon2_memory_kib,
            iterations: settings.argon2_iterations,
            parallelism: settings.argon2_parallelism,
        };
        argon2::Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| AccountError::Internal(format!("argon2 parameters: {e}")))?;
        crate::domain::preload_breached_list();
        let mailer = settings
            .smtp_url
            .as_ref()
            .map(|url| mail::Mailer::new(url, &settings.mail_from).map(Arc::new))
            .transpose()?;
        Ok(Self {
            mailer,
            store,
            signer,
            pool: HashPool::new(
                cost,
                settings.hash_concurrency,
                settings.hash_queue,
                settings.hash_queue_timeout,
            ),
            dummy_hash: tokio::sync::OnceCell::new(),
            per_account: Throttle::new(settings.per_account),
            per_ip: Throttle::new(settings.per_ip),
            disabled: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(settings.status_cache_ttl)
                .build(),
            recent_resets: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(RESET_REQUEST_INTERVAL)
                .build(),
            settings,
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.signer.is_some()
    }

    /// Whether browser-session cookies carry `Secure` (outside development).
    pub fn secure_cookies(&self) -> bool {
        self.settings.secure_cookies
    }

    /// Seconds a refresh token lives (and so its cookie).
    pub fn refresh_ttl_seconds(&self) -> u64 {
        self.settings.refresh_ttl.as_secs()
    }

    pub fn registration(&self) -> Registration {
        self.settings.registration
    }

    fn signer(&self) -> Result<&Signer, AccountError> {
        self.signer.as_ref().ok_or(AccountError::Disabled)
    }

    /// Self-service sign-up: a patient account, and a session for it. Under
    /// REGISTRATION=invite an invitation token for this email is required;
    /// under `open` one is optional (it completes a pending share). The
    /// invitation is marked used once the account exists, then its pending
    /// share (if any) is stored and the account gets the share's role.
    pub async fn register(
        &self,
        mut new: NewAccount,
        max_shares: usize,
    ) -> Result<Session, AccountError> {
        self.signer()?;
        let invitation = match (self.settings.registration, new.invitation_token.take()) {
            (Registration::Closed, _) => {
                return Err(AccountError::RegistrationClosed(Registration::Closed))
            }
            (Registration::Invite, None) => return Err(AccountError::InvitationRequired),
            (_, None) => None,
            (_, Some(token)) => Some(self.check_invitation(&token, &new.email).await?),
        };
        let mut roles: Vec<Role> = vec![Role::Patient];
        if let Some(share) = invitation.as_ref().and_then(|i| i.share.as_ref()) {
            roles.push(share.role.as_role());
        }
        let account = self.create(new, roles.into_iter().collect()).await?;
        if let Some(invitation) = invitation {
            // Accounts are unique by email and the token is bound to this
            // email, so it can make at most one account: this cannot lose.
            self.store.use_invitation(&invitation.token_hash).await?;
            if let Some(pending) = invitation.share {
                let share = Share {
                    patient_id: pending.patient.clone(),
                    grantee_id: account.id.clone(),
                    role: pending.role,
                    created_at: now_ms(),
                    expires_at: pending.expires_at,
                };
                if self.store.put_share(share, max_shares).await? == ShareWrite::LimitReached {
                    tracing::warn!(patient_id = %pending.patient, "pending share not stored: the patient holds the most grants allowed");
                } else {
                    tracing::info!(patient_id = %pending.patient, grantee_id = %account.id, "pending share granted at sign-up");
                }
            }
        }
        let session = self.start_session(account).await?;
        self.send_verification(&session.account);
        Ok(session)
    }

    async fn check_invitation(
        &self,
        token: &Secret<String>,
        email: &Email,
    ) -> Result<Invitation, AccountError> {
        const INVALID: &str = "the invitation token is unknown, used, expired or for another email";
        let hash = sha256_hex(token.expose().as_bytes());
        let Some(invitation) = self.store.get_invitation(&hash).await? else {
            return Err(AccountError::InvalidInvitation(INVALID));
        };
        // The lookup is by the token's hash; the email is not a secret.
        let matches = invitation.email.key() == email.key();
        if invitation.used {
            return Err(AccountError::InvalidInvitation(
                "the invitation was used already",
            ));
        }
        if invitation.expires_at <= Utc::now() {
            return Err(AccountError::InvalidInvitation(
                "the invitation has expired",
            ));
        }
        if !matches {
            return Err(AccountError::InvalidInvitation(
                "the invitation is for another email",
            ));
        }
        Ok(invitation)
    }

    /// Stores an invitation for `email` (valid INVITATION_TTL_HOURS), with a
    /// share to create when that person signs up, if any.
    pub async fn invite(
        &self,
        email: Email,
        invited_by: UserId,
        share: Option<PendingShare>,
    ) -> Result<Invited, AccountError> {
        let (token, token_hash) = new_refresh_token();
        let now = now_ms();
        let ttl = chrono::Duration::from_std(self.settings.invitation_ttl)
            .unwrap_or(chrono::Duration::days(7));
        let invitation = Invitation {
            token_hash,
            email,
            invited_by,
            created_at: now,
            expires_at: now + ttl,
            share,
            used: false,
        };
        let pending_share = invitation.share.is_some();
        self.store.put_invitation(invitation.clone()).await?;
        let link = Secret::new(match &self.settings.public_base_url {
            Some(base) => format!(
                "{}/signup?invitation_token={}",
                base.trim_end_matches('/'),
                token.expose()
            ),
            None => format!("invitation_token={}", token.expose()),
        });
        let mailed = match &self.mailer {
            Some(mailer) => {
                mailer
                    .send_invitation(&invitation.email, &link, pending_share)
                    .await?;
                true
            }
            None => {
                if self.settings.log_links {
                    tracing::info!(link = %link.expose(), "mail is off (development): invitation link");
                }
                false
            }
        };
        Ok(Invited {
            token,
            invitation,
            mailed,
        })
    }

    /// Where reset and verification links go: the mail, or the log in
    /// development; elsewhere without SMTP_URL the feature is off.
    fn link_route(&self, feature: &'static str) -> Result<LinkRoute, AccountError> {
        match &self.mailer {
            Some(mailer) => Ok(LinkRoute::Mail(mailer.clone())),
            None if self.settings.log_links => Ok(LinkRoute::Log),
            None => Err(AccountError::MailOff(feature)),
        }
    }

    /// Mails a reset link if an active account has this email. The caller
    /// answers the same whatever happens here: the lookup, the token and the
    /// mail run after the answer (a task), so neither the answer nor its
    /// timing tells whether the email has an account. At most one mail per
    /// email per RESET_REQUEST_INTERVAL. Off (MailOff) without mail outside
    /// development, for every email alike.
    pub fn request_password_reset(&self, email: Email) -> Result<(), AccountError> {
        self.signer()?;
        let route = self.link_route("password reset")?;
        let key = email.key().to_owned();
        if self.recent_resets.contains_key(&key) {
            return Ok(());
        }
        self.recent_resets.insert(key, ());
        let store = self.store.clone();
        let base = self.settings.public_base_url.clone();
        tokio::spawn(async move {
            let account = match store.account_by_email(&email).await {
                Ok(Some(a)) => a,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "password reset: account lookup failed");
                    return;
                }
            };
            match store.account_disabled(&account.id).await {
                Ok(false) => {}
                Ok(true) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "password reset: account check failed");
                    return;
                }
            }
            if let Err(e) = send_link(
                store.as_ref(),
                &route,
                base.as_deref(),
                TokenPurpose::PasswordReset,
                &account,
            )
            .await
            {
                tracing::warn!(user_id = %account.id, error = %e, "password reset mail not sent");
            }
        });
        Ok(())
    }

    /// Sets a new password with a reset token: the token is used up, every
    /// refresh family of the account revoked. The password is hashed before
    /// the token is spent, so a busy pool does not burn it.
    pub async fn confirm_password_reset(
        &self,
        token: &Secret<String>,
        password: Password,
    ) -> Result<UserId, AccountError> {
        self.signer()?;
        self.link_route("password reset")?;
        let found = self.check_token(token, TokenPurpose::PasswordReset).await?;
        let hash = self.pool.hash(password.expose().to_owned()).await?;
        if !self.store.use_account_token(&found.token_hash).await? {
            return Err(AccountError::InvalidToken(TOKEN_USED));
        }
        if !self.store.set_password(&found.account, &hash).await? {
            return Err(AccountError::InvalidToken(TOKEN_UNKNOWN));
        }
        tracing::info!(user_id = %found.account, "password reset: every session revoked");
        Ok(found.account)
    }

    /// Marks the email of the token's account verified; the account after.
    pub async fn verify_email(&self, token: &Secret<String>) -> Result<Account, AccountError> {
        self.signer()?;
        self.link_route("email verification")?;
        let found = self.check_token(token, TokenPurpose::VerifyEmail).await?;
        if !self.store.use_account_token(&found.token_hash).await? {
            return Err(AccountError::InvalidToken(TOKEN_USED));
        }
        self.store.set_email_verified(&found.account).await?;
        let Some(account) = self.store.get_account(&found.account).await? else {
            return Err(AccountError::InvalidToken(TOKEN_UNKNOWN));
        };
        tracing::info!(user_id = %account.id, "email verified");
        Ok(account)
    }

    /// Sends the account a new verification link (`verify-email/resend`).
    pub async fn resend_verification(&self, id: &UserId) -> Result<(), AccountError> {
        self.signer()?;
        self.link_route("email verification")?;
        let Some(account) = self.store.get_account(id).await? else {
            return Err(AccountError::InvalidToken(TOKEN_UNKNOWN));
        };
        if account.email_verified {
            return Err(AccountError::AlreadyVerified);
        }
        self.send_verification(&account);
        Ok(())
    }

    /// Mails (or in development logs) a verification link for a new or
    /// unverified account, after the answer (a task); nothing without mail
    /// outside development. A failure is logged: sign-up does not depend on it.
    fn send_verification(&self, account: &Account) {
        if account.email_verified {
            return;
        }
        let Ok(route) = self.link_route("email verification") else {
            return;
        };
        let store = self.store.clone();
        let base = self.settings.public_base_url.clone();
        let account = account.clone();
        tokio::spawn(async move {
            if let Err(e) = send_link(
                store.as_ref(),
                &route,
                base.as_deref(),
                TokenPurpose::VerifyEmail,
                &account,
            )
            .await
            {
                tracing::warn!(user_id = %account.id, error = %e, "verification mail not sent");
            }
        });
    }

    async fn check_token(
        &self,
        token: &Secret<String>,
        purpose: TokenPurpose,
    ) -> Result<AccountToken, AccountError> {
        let hash = sha256_hex(token.expose().as_bytes());
        let found = match self.store.get_account_token(&hash).await? {
            Some(t) if t.purpose == purpose => t,
            _ => return Err(AccountError::InvalidToken(TOKEN_UNKNOWN)),
        };
        if found.used {
            return Err(AccountError::InvalidToken(TOKEN_USED));
        }
        if found.expires_at <= Utc::now() {
            return Err(AccountError::InvalidToken("the token has expired"));
        }
        Ok(found)
    }

    /// Enables a disabled account again (`cgm-hub users enable`); its
    /// sessions revoked by the disabling stay revoked. None when no account
    /// has the email.
    pub async fn enable(&self, email: &Email) -> Result<Option<UserId>, AccountError> {
        let Some(account) = self.store.account_by_email(email).await? else {
            return Ok(None);
        };
        self.store.enable_account(&account.id).await?;
        self.disabled.insert(account.id.as_str().to_owned(), false);
        tracing::info!(user_id = %account.id, "account enabled");
        Ok(Some(account.id))
    }

    /// The account with this email, if any (shares by email).
    pub async fn account_by_email(&self, email: &Email) -> Result<Option<Account>, AccountError> {
        Ok(self.store.account_by_email(email).await?)
    }

    /// An account made by an operator (`cgm-hub users create`), whatever the
    /// registration policy; no session.
    pub async fn create_by_operator(
        &self,
        email: Email,
        password: Password,
        admin: bool,
    ) -> Result<Account, AccountError> {
        let roles: Roles = if admin {
            [Role::Patient, Role::Admin].into()
        } else {
            [Role::Patient].into()
        };
        let new = NewAccount {
            email,
            password,
            full_name: None,
            timezone: None,
            invitation_token: None,
        };
        self.create(new, roles).await
    }

    async fn create(&self, new: NewAccount, roles: Roles) -> Result<Account, AccountError> {
        // Cheap check first, so a duplicate costs no hash (the insert decides).
        if self.store.account_by_email(&new.email).await?.is_some() {
            return Err(AccountError::EmailTaken);
        }
        let password_hash = self.pool.hash(new.password.expose().to_owned()).await?;
        let account = Account {
            id: new_account_id(),
            email: new.email,
            password_hash,
            roles,
            full_name: new.full_name,
            email_verified: false,
            created_at: now_ms(),
        };
        match self.store.create_account(account.clone()).await? {
            AccountCreated::Created => {}
            AccountCreated::Taken => return Err(AccountError::EmailTaken),
        }
        if let Some(timezone) = new.timezone {
            let profile = Profile {
                timezone,
                ..Profile::default()
            };
            self.store.put_profile(&account.id, &profile).await?;
        }
        tracing::info!(user_id = %account.id, "account created");
        Ok(account)
    }

    /// Checks the password (an unknown email costs the same hash as a known
    /// one) and starts a session. Refused without checking while the email or
    /// the client's IP is throttled.
    pub async fn login(
        &self,
        email: &Email,
        password: PasswordAttempt,
        client: IpAddr,
    ) -> Result<Session, AccountError> {
        self.signer()?;
        let key = email.key().to_owned();
        let now = Instant::now();
        let blocked = [
            self.per_ip.blocked(&client, now),
            self.per_account.blocked(&key, now),
        ];
        if let Some(retry_after) = blocked.into_iter().flatten().max() {
            return Err(AccountError::Throttled { retry_after });
        }
        let account = self.store.account_by_email(email).await?;
        let stored = match &account {
            Some(a) => a.password_hash.clone(),
            None => self.dummy_hash().await?,
        };
        let matches = self
            .pool
            .verify(stored, password.expose().to_owned())
            .await?;
        match account {
            // A disabled account gets the answer of a wrong password.
            Some(account) if matches && !self.store.account_disabled(&account.id).await? => {
                self.per_account.reset(&key);
                self.start_session(account).await
            }
            account => {
                let now = Instant::now();
                self.per_ip.failed(&client, now);
                self.per_account.failed(&key, now);
                Err(AccountError::InvalidCredentials {
                    account: account.map(|a| a.id),
                })
            }
        }
    }

    /// Uses a refresh token and hands out the next pair. A token used before
    /// revokes its whole family.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Session, AccountError> {
        self.signer()?;
        let (next, next_hash) = new_refresh_token();
        let now = now_ms();
        let rotation = self
            .store
            .rotate_refresh_token(
                &sha256_hex(refresh_token.as_bytes()),
                NewRefreshToken {
                    hash: next_hash,
                    // Replaced by the family's owner in the store.
                    account: placeholder_owner(),
                    issued_at: now,
                    expires_at: now + self.refresh_ttl(),
                },
            )
            .await?;
        let account = match rotation {
            Rotation::Rotated { account, .. } => account,
            Rotation::Reused { account, family } => {
                tracing::warn!(user_id = %account, %family, "refresh token reused: family revoked");
                return Err(AccountError::InvalidRefreshToken {
                    account: Some(account),
                });
            }
            Rotation::Revoked | Rotation::Expired | Rotation::Unknown => {
                return Err(AccountError::InvalidRefreshToken { account: None })
            }
        };
        let Some(account) = self.store.get_account(&account).await? else {
            return Err(AccountError::InvalidRefreshToken {
                account: Some(account),
            });
        };
        if self.store.account_disabled(&account.id).await? {
            return Err(AccountError::InvalidRefreshToken {
                account: Some(account.id),
            });
        }
        let access_token = self.mint(&account)?;
        Ok(Session {
            account,
            access_token,
            refresh_token: next,
            expires_in: self.settings.access_ttl.as_secs(),
        })
    }

    /// Revokes the family of a refresh token; false when the token is unknown.
    pub async fn logout(&self, refresh_token: &str) -> Result<bool, AccountError> {
        Ok(self
            .store
            .revoke_refresh_family(&sha256_hex(refresh_token.as_bytes()))
            .await?)
    }

    /// Disables the account with this email (`cgm-hub users disable`): no
    /// login, no refresh, its refresh families revoked, its access tokens
    /// refused within ACCOUNT_STATUS_CACHE_SECONDS. None when no account has the email.
    pub async fn disable(&self, email: &Email) -> Result<Option<UserId>, AccountError> {
        let Some(account) = self.store.account_by_email(email).await? else {
            return Ok(None);
        };
        self.store.disable_account(&account.id, now_ms()).await?;
        self.disabled.insert(account.id.as_str().to_owned(), true);
        tracing::info!(user_id = %account.id, "account disabled");
        Ok(Some(account.id))
    }

    /// Whether an access token whose `sub` is `user` must be refused because
    /// its account is disabled. A `sub` without the shape of an account id (a
    /// token of another issuer) costs no lookup; an account's answer is cached
    /// for ACCOUNT_STATUS_CACHE_SECONDS. A store error lets the token through (logged):
    /// the routes behind need the store anyway.
    pub async fn refuses_access(&self, user: &UserId) -> bool {
        if self.signer.is_none() || !is_account_id(user.as_str()) {
            return false;
        }
        if let Some(disabled) = self.disabled.get(user.as_str()) {
            return disabled;
        }
        match self.store.account_disabled(user).await {
            Ok(disabled) => {
                self.disabled.insert(user.as_str().to_owned(), disabled);
                disabled
            }
            Err(e) => {
                tracing::warn!(user_id = %user, error = %e, "account status check failed");
                false
            }
        }
    }

    pub async fn account(&self, id: &UserId) -> Result<Option<Account>, AccountError> {
        Ok(self.store.get_account(id).await?)
    }

    async fn dummy_hash(&self) -> Result<String, AccountError> {
        self.dummy_hash
            .get_or_try_init(|| {
                let random: [u8; 24] = rand::random();
                self.pool
                    .hash(base64::engine::general_purpose::STANDARD.encode(random))
            })
            .await
            .cloned()
    }

    async fn start_session(&self, account: Account) -> Result<Session, AccountError> {
        let access_token = self.mint(&account)?;
        let (refresh_token, hash) = new_refresh_token();
        let now = now_ms();
        self.store
            .start_refresh_family(NewRefreshToken {
                hash,
                account: account.id.clone(),
                issued_at: now,
                expires_at: now + self.refresh_ttl(),
            })
            .await?;
        Ok(Session {
            account,
            access_token,
            refresh_token,
            expires_in: self.settings.access_ttl.as_secs(),
        })
    }

    fn refresh_ttl(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.settings.refresh_ttl).unwrap_or(chrono::Duration::days(30))
    }

    fn mint(&self, account: &Account) -> Result<Secret<String>, AccountError> {
        let signer = self.signer()?;
        let roles: Vec<Role> = account.roles.iter().collect();
        mint_hs256(
            signer.secret.expose(),
            account.id.as_str(),
            &roles,
            self.settings.access_ttl,
            signer.issuer.as_deref(),
            signer.audience.as_deref(),
        )
        .map(Secret::new)
        .map_err(|e| AccountError::Internal(format!("minting an access token: {e}")))
    }
}

const TOKEN_UNKNOWN: &str = "the token is unknown";
const TOKEN_USED: &str = "the token was used already";

/// Makes a reset or verification token for the account, stores its hash and
/// mails the link (in development without mail: logs it at info).
async fn send_link(
    store: &dyn Store,
    route: &LinkRoute,
    base: Option<&str>,
    purpose: TokenPurpose,
    account: &Account,
) -> Result<(), AccountError> {
    let (token, token_hash) = new_refresh_token();
    let (ttl, page) = match purpose {
        TokenPurpose::PasswordReset => (RESET_TOKEN_TTL, "reset-password"),
        TokenPurpose::VerifyEmail => (VERIFY_TOKEN_TTL, "verify-email"),
    };
    let now = now_ms();
    store
        .put_account_token(AccountToken {
            token_hash,
            purpose,
            account: account.id.clone(),
            created_at: now,
            expires_at: now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(1)),
            used: false,
        })
        .await?;
    let link = Secret::new(match base {
        Some(base) => format!(
            "{}/{page}?token={}",
            base.trim_end_matches('/'),
            token.expose()
        ),
        None => format!("token={}", token.expose()),
    });
    match (route, purpose) {
        (LinkRoute::Mail(mailer), TokenPurpose::PasswordReset) => {
            mailer.send_password_reset(&account.email, &link).await
        }
        (LinkRoute::Mail(mailer), TokenPurpose::VerifyEmail) => {
            mailer.send_verification(&account.email, &link).await
        }
        (LinkRoute::Log, _) => {
            tracing::info!(user_id = %account.id, purpose = purpose.as_str(), link = %link.expose(), "mail is off (development): account link");
            Ok(())
        }
    }
}

/// `u` and 32 hex digits of a random UUID: a valid user id no person picks.
fn new_account_id() -> UserId {
    UserId::parse(&format!("u{}", uuid::Uuid::new_v4().simple()))
        .unwrap_or_else(|_| unreachable!("u + 32 hex digits is a valid user id"))
}

fn placeholder_owner() -> UserId {
    UserId::parse("-").unwrap_or_else(|_| unreachable!("a valid user id"))
}

/// 32 random bytes, base64url without padding (43 characters), and its
/// SHA-256 fingerprint (what the store keeps).
fn new_refresh_token() -> (Secret<String>, String) {
    let bytes: [u8; 32] = rand::random();
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = sha256_hex(token.as_bytes());
    (Secret::new(token), hash)
}

/// Now, to the millisecond (what every backend keeps).
fn now_ms() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}
