//! The Apple Health upload on PostgreSQL: the readings upsert and the journal
//! batch in one transaction, so an upload is stored whole or not at all.

use async_trait::async_trait;

use super::{db_error, journal, readings, PostgresStore};
use crate::domain::Reading;
use crate::records::journal::{JournalCreated, JournalEntry};
use crate::records::readings::Upserted;
use crate::store::{HealthUploadStore, StoreError};

#[async_trait]
impl HealthUploadStore for PostgresStore {
    async fn store_health_upload(
        &self,
        readings: Vec<Reading>,
        entries: Vec<JournalEntry>,
    ) -> Result<(Vec<Upserted>, Vec<JournalCreated>), StoreError> {
        // The readings' partitions are created before the transaction, as
        // `upsert_readings` does: an empty partition left by a failed upload
        // holds nothing anyone sees.
        let now = self.prepare_upsert(&readings).await?;
        let mut tx = self.begin().await?;
        let (upserted, reading_events) = if readings.is_empty() {
            (Vec::new(), 0)
        } else {
            readings::upsert_in(&mut tx, &readings, now).await?
        };
        let (created, journal_events) = journal::create_all(&mut tx, entries).await?;
        tx.commit().await.map_err(db_error)?;
        self.written(reading_events + journal_events);
        Ok((upserted, created))
    }
}
