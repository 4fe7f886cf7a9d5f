//! The Apple Health upload on DynamoDB: the journal batch, then the readings
//! upsert. A DynamoDB transaction holds at most 100 items, so an upload of
//! thousands cannot be one: each step is atomic per transaction
//! (`JOURNAL_BATCH_ATOMIC` entries, a readings chunk) and idempotent (every
//! item has a deterministic key), so an error part-way leaves a part stored
//! that the same upload again completes without duplicates (docs/journal.md,
//! "Apple Health upload").

use async_trait::async_trait;

use super::DynamoStore;
use crate::domain::Reading;
use crate::records::journal::{JournalCreated, JournalEntry};
use crate::records::readings::Upserted;
use crate::store::{HealthUploadStore, JournalStore, ReadingStore, StoreError};

#[async_trait]
impl HealthUploadStore for DynamoStore {
    async fn store_health_upload(
        &self,
        readings: Vec<Reading>,
        entries: Vec<JournalEntry>,
    ) -> Result<(Vec<Upserted>, Vec<JournalCreated>), StoreError> {
        let created = if entries.is_empty() {
            Vec::new()
        } else {
            self.create_journal_entries(entries).await?
        };
        let upserted = if readings.is_empty() {
            Vec::new()
        } else {
            self.upsert_readings(readings).await?
        };
        Ok((upserted, created))
    }
}
