//! Dexcom behind the sync engine's port (`sync::source::SourceAdapter`): its
//! 30-day windows, `dataRange`, `egvs` translated for the pipeline, and which
//! of its failures are worth a retry, final, or need the user to reconnect.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::client::{DexcomClient, DexcomError};
use super::tokens::AccessError;
use super::translate::translate_for_pipeline;
use super::windows::MAX_WINDOW_DAYS;
use crate::domain::UserId;
use crate::records::connections::Provider;
use crate::sync::source::{Disposition, FetchWindow, FetchedRecord, SourceAdapter, SourceError};

pub struct DexcomAdapter {
    client: Arc<DexcomClient>,
}

impl DexcomAdapter {
    pub fn new(client: Arc<DexcomClient>) -> Arc<Self> {
        Arc::new(Self { client })
    }
}

/// What a Dexcom failure means for a sync job. Retrying does not help when the
/// user revoked access (reconnect), is not connected, the stored tokens cannot
/// be opened, or Dexcom's answer cannot be read; everything else (outages,
/// 5xx, 429, a refresh in flight elsewhere) passes.
pub fn disposition(e: &DexcomError) -> Disposition {
    match e {
        DexcomError::Access(AccessError::ReauthRequired) => Disposition::Reauth,
        DexcomError::Access(AccessError::NotConnected | AccessError::Cipher(_))
        | DexcomError::Malformed { .. }
        | DexcomError::WindowTooLong { .. } => Disposition::Final,
        _ => Disposition::Retry,
    }
}

impl From<DexcomError> for SourceError {
    fn from(e: DexcomError) -> Self {
        SourceError::new(disposition(&e), e)
    }
}

#[async_trait::async_trait]
impl SourceAdapter for DexcomAdapter {
    fn provider(&self) -> Provider {
        Provider::Dexcom
    }

    fn max_window(&self) -> chrono::Duration {
        chrono::Duration::days(MAX_WINDOW_DAYS)
    }

    async fn data_range(
        &self,
        user: &UserId,
    ) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>, SourceError> {
        self.client
            .data_range(user, None)
            .await?
            .egvs_span()
            .map_err(|e| SourceError::new(Disposition::Final, format!("Dexcom dataRange: {e}")))
    }

    async fn fetch(
        &self,
        user: &UserId,
        window: FetchWindow,
    ) -> Result<Vec<FetchedRecord>, SourceError> {
        let page = self.client.egvs(user, window).await?;
        Ok(translate_for_pipeline(user, &page))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connections::cipher::CipherError;
    use crate::sources::dexcom::outbound::OutboundError;

    #[test]
    fn dexcom_failures_keep_their_retry_classification() {
        use Disposition::*;
        let cases = [
            (DexcomError::Access(AccessError::ReauthRequired), Reauth),
            (DexcomError::Access(AccessError::NotConnected), Final),
            (DexcomError::Access(AccessError::RefreshBusy), Retry),
            (
                DexcomError::Access(AccessError::Cipher(CipherError::Open)),
                Final,
            ),
            (
                DexcomError::Outbound(OutboundError::RateLimited { retry_after: None }),
                Retry,
            ),
            (
                DexcomError::Malformed {
                    endpoint: "egvs",
                    message: "x".into(),
                },
                Final,
            ),
            (
                DexcomError::WindowTooLong {
                    start: Utc::now(),
                    end: Utc::now(),
                },
                Final,
            ),
            (DexcomError::Unauthorized, Retry),
            (
                DexcomError::Status {
                    endpoint: "egvs",
                    status: 503,
                },
                Retry,
            ),
        ];
        for (error, expected) in cases {
            let message = error.to_string();
            let source = SourceError::from(error);
            assert_eq!(source.disposition(), expected, "{message}");
            // The job's error reads as Dexcom's.
            assert_eq!(source.to_string(), message);
        }
    }
}
