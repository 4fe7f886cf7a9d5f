//! The Apple Health upload on SQLite: the readings upsert and the journal
//! batch in one write transaction, so an upload is stored whole or not at all.

use async_trait::async_trait;

use super::{journal, readings, SqliteStore};
use crate::domain::Reading;
use crate::records::journal::{JournalCreated, JournalEntry};
use crate::records::readings::Upserted;
use crate::store::{HealthUploadStore, StoreError};

#[async_trait]
impl HealthUploadStore for SqliteStore {
    async fn store_health_upload(
        &self,
        readings: Vec<Reading>,
        entries: Vec<JournalEntry>,
    ) -> Result<(Vec<Upserted>, Vec<JournalCreated>), StoreError> {
        let inner = self.inner.clone();
        self.write(move |conn| {
            let (upserted, created) = readings::upsert_then(&inner, conn, readings, |tx| {
                journal::create_all(tx, entries)
            })?;
            if journal::any_created(&created) {
                inner.outbox_written.notify_one();
            }
            Ok((upserted, created))
        })
        .await
    }
}
