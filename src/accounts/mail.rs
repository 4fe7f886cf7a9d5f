//! Mail for accounts: invitation links sent over SMTP (`SMTP_URL`, `lettre`
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
        let to: Mailbox = to
            .as_str()
            .parse()
            .map_err(|e| AccountError::Internal(format!("recipient: {e}")))?;
        let why = if pending_share {
            "Someone wants to share their glucose readings with you on cgm-hub."
        } else {
            "You are invited to create an account on cgm-hub."
        };
        let body = format!(
            "{why}\n\nSign up with this invitation (it works once):\n\n{}\n",
            link.expose()
        );
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject("Your cgm-hub invitation")
            .body(body)
            .map_err(|e| AccountError::Internal(format!("building the invitation mail: {e}")))?;
        self.transport
            .send(message)
            .await
            .map_err(|e| AccountError::Mail(e.to_string()))?;
        Ok(())
    }
}
