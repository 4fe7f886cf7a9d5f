//! Mail for accounts: invitation, password-reset and verification links sent over SMTP (`SMTP_URL`, `lettre`
//! on tokio). `smtp://host:port` is plain SMTP (a local relay, the test sink);
//! `smtps://` is TLS from the start; `smtp://...?tls=required` is STARTTLS.

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::AccountError;
use crate::domain::Email;
use crate::secret::Secret;

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// Refuses a URL or a sender lettre cannot use (at start-up).
    pub fn new(smtp_url: &Secret<String>, from: &str) -> Result<Self, AccountError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url.expose())
            .map_err(|e| AccountError::Internal(format!("SMTP_URL: {e}")))?
            .build();
        let from = from
            .parse()
            .map_err(|e| AccountError::Internal(format!("MAIL_FROM: {e}")))?;
        Ok(Self { transport, from })
    }

    /// Sends the invitation with its link (or the bare token without a base URL).
    pub async fn send_invitation(
        &self,
        to: &Email,
        link: &Secret<String>,
        pending_share: bool,
    ) -> Result<(), AccountError> {
        let why = if pending_share {
            "Someone wants to share their glucose readings with you on cgm-hub."
        } else {
            "You are invited to create an account on cgm-hub."
        };
        let body = format!(
            "{why}\n\nSign up with this invitation (it works once):\n\n{}\n",
            link.expose()
        );
        self.send(to.as_str(), "Your cgm-hub invitation", body)
            .await
    }

    /// Sends a password-reset link (it works once, for an hour).
    pub async fn send_password_reset(
        &self,
        to: &Email,
        link: &Secret<String>,
    ) -> Result<(), AccountError> {
        let body = format!(
            "Someone (hopefully you) asked to reset the password of your cgm-hub account.\n\n\
             Choose a new password with this link (it works once, for one hour):\n\n{}\n\n\
             If you did not ask for this, ignore this mail: your password stays as it is.\n",
            link.expose()
        );
        self.send(to.as_str(), "Reset your cgm-hub password", body)
            .await
    }

    /// Sends an email-verification link (it works once, for 48 hours).
    pub async fn send_verification(
        &self,
        to: &Email,
        link: &Secret<String>,
    ) -> Result<(), AccountError> {
        let body = format!(
            "Please confirm that this is your email address for cgm-hub.\n\n\
             Confirm with this link (it works once, for 48 hours):\n\n{}\n",
            link.expose()
        );
        self.send(to.as_str(), "Confirm your email for cgm-hub", body)
            .await
    }

    async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), AccountError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| AccountError::Internal(format!("recipient: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .body(body)
            .map_err(|e| AccountError::Internal(format!("building the mail: {e}")))?;
        self.transport
            .send(message)
            .await
            .map_err(|e| AccountError::Mail(e.to_string()))?;
        Ok(())
    }
}
