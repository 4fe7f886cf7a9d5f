//! The DynamoDB backend (`STORAGE_BACKEND=dynamodb`), for deployments that want a
//! managed, horizontally scaled store shared by several instances.
//!
//! DynamoDB has no multi-statement transactions over queries, so every rule the
//! SQLite store gets from its single writer is a conditional write here: inserts
//! are `attribute_not_exists`, replacements are conditional on the version read,
//! leases and claims are conditional updates, and a lost race re-reads and
//! retries. Events are committed with their change by `TransactWriteItems`.
//! The table design and every access pattern are in docs/dynamodb.md.

mod audit;
mod connections;
mod inbox;
mod item;
mod jobs;
mod outbox;
mod readings;
mod schema;
mod shares;
mod tasks;

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use schema::Tables;

use super::{Scan, SharePage, ShareWrite, Store, StoreError, Upserted};
use crate::auth::audit::{AuditBatch, AuditQuery, AuditRecord};
use crate::auth::shares::Share;
use crate::connections::{
    Connection, ConnectionStatus, PendingAuthorization, Provider, RefreshOutcome,
};
use crate::domain::{Reading, StoredReading, UserId};
use crate::events::Message;
use crate::sources::webhook::inbox::{Accepted, Delivery, DeliveryEnd, NewDelivery};
use crate::sync::jobs::{Checkpoint, Created, JobBacklog, JobEnd, NewJob, SyncJob};

/// How to reach DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoSettings {
    /// None: the AWS endpoint of `region`.
    pub endpoint: Option<String>,
    pub region: String,
    pub tables: Tables,
    /// Fixed credentials (emulators, tests); None uses the AWS default chain
    /// (environment, profile, container or instance role).
    pub static_credentials: Option<(String, String)>,
}

#[derive(Clone)]
pub struct DynamoStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    tables: Tables,
    /// Woken after commits that wrote to the outbox.
    outbox_written: tokio::sync::Notify,
}

impl DynamoStore {
    /// Connects, creating missing tables (and waiting until they are ACTIVE).
    pub async fn connect(settings: DynamoSettings) -> Result<Self, StoreError> {
        let client = client_for(&settings).await;
        schema::ensure(&client, &settings.tables).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                tables: settings.tables,
                outbox_written: tokio::sync::Notify::new(),
            }),
        })
    }

    /// Deletes the tables `settings` names, with everything in them (test
    /// tear-down; an emulator keeps every table in memory). Absent tables are
    /// not an error.
    pub async fn delete_tables(settings: &DynamoSettings) -> Result<(), StoreError> {
        let client = client_for(settings).await;
        let t = &settings.tables;
        for table in [&t.readings, &t.user_tokens, &t.sync_jobs, &t.aux] {
            if let Err(e) = client.delete_table().table_name(table).send().await {
                let absent = e
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception());
                if !absent {
                    return Err(StoreError::Unavailable(format!(
                        "dynamodb: deleting {table}: {}",
                        aws_sdk_dynamodb::error::DisplayErrorContext(&e)
                    )));
                }
            }
        }
        Ok(())
    }

    fn client(&self) -> &Client {
        &self.inner.client
    }

    fn tables(&self) -> &Tables {
        &self.inner.tables
    }

    fn wrote_outbox(&self) {
        self.inner.outbox_written.notify_one();
    }
}

/// A client for `settings`' region, endpoint and credentials, over rustls with
/// ring (the SDK's default TLS stack would pull in aws-lc).
async fn client_for(settings: &DynamoSettings) -> Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(settings.region.clone()))
        .http_client(http);
    if let Some(endpoint) = &settings.endpoint {
        loader = loader.endpoint_url(endpoint.trim_end_matches('/'));
    }
    if let Some((key, secret)) = &settings.static_credentials {
        loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            key, secret, None, None, "static",
        ));
    }
    Client::new(&loader.load().await)
}

/// Attempts of a read-decide-conditional-write cycle before giving up on a
/// contended item with `Unavailable`.
const RACE_ATTEMPTS: u32 = 20;

/// A short, growing, jittered pause between attempts of a lost race or of
/// unprocessed batch items.
async fn backoff(attempt: u32) {
    let base = 10u64.saturating_mul(1 << attempt.min(6));
    let jitter = rand::random::<u64>() % base.max(1);
    tokio::time::sleep(std::time::Duration::from_millis(base + jitter)).await;
}

fn lost_race(what: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "dynamodb: {what} kept losing races for {RACE_ATTEMPTS} attempts"
    ))
}

#[async_trait]
impl Store for DynamoStore {
    fn backend(&self) -> &'static str {
        "dynamodb"
    }

    async fn upsert_readings(&self, readings: Vec<Reading>) -> Result<Vec<Upserted>, StoreError> {
        self.upsert_readings_impl(readings).await
    }

    async fn latest_reading(&self, user: &UserId) -> Result<Option<StoredReading>, StoreError> {
        self.latest_reading_impl(user).await
    }

    async fn scan_readings(&self, scan: Scan) -> Result<Vec<StoredReading>, StoreError> {
        self.scan_readings_impl(scan).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // A data-plane read of a key that never exists: cheap, and not subject
        // to the low rate limits of DescribeTable.
        self.client()
            .get_item()
            .table_name(&self.tables().aux)
            .key("pk", item::s("PING"))
            .key("sk", item::s("-"))
            .send()
            .await
            .map(drop)
            .map_err(|e| item::sdk_error("GetItem ping", e))
    }

    fn outbox_signal(&self) -> &tokio::sync::Notify {
        &self.inner.outbox_written
    }

    async fn claim_outbox(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        self.claim_outbox_impl(owner, now, until, limit).await
    }

    async fn ack_outbox(&self, ids: Vec<Uuid>) -> Result<usize, StoreError> {
        self.ack_outbox_impl(ids).await
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        self.outbox_backlog_impl().await
    }

    async fn append_audit(&self, entries: AuditBatch) -> Result<(), StoreError> {
        self.append_audit_impl(entries).await
    }

    async fn query_audit(&self, query: AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        self.query_audit_impl(query).await
    }

    async fn put_share(&self, share: Share, max: usize) -> Result<ShareWrite, StoreError> {
        self.put_share_impl(share, max).await
    }

    async fn list_shares(
        &self,
        patient: &UserId,
        page: SharePage,
    ) -> Result<Vec<Share>, StoreError> {
        self.list_shares_impl(patient, page).await
    }

    async fn get_share(
        &self,
        patient: &UserId,
        grantee: &UserId,
    ) -> Result<Option<Share>, StoreError> {
        self.get_share_impl(patient, grantee).await
    }

    async fn delete_share(&self, patient: &UserId, grantee: &UserId) -> Result<bool, StoreError> {
        self.delete_share_impl(patient, grantee).await
    }

    async fn put_pending_authorization(
        &self,
        p: PendingAuthorization,
        keep_per_user: usize,
    ) -> Result<(), StoreError> {
        self.put_pending_authorization_impl(p, keep_per_user).await
    }

    async fn prune_pending_authorizations(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.prune_pending_authorizations_impl(now).await
    }

    async fn take_pending_authorization(
        &self,
        state_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingAuthorization>, StoreError> {
        self.take_pending_authorization_impl(state_hash, now).await
    }

    async fn put_connection(&self, connection: Connection) -> Result<(), StoreError> {
        self.put_connection_impl(connection).await
    }

    async fn get_connection(
        &self,
        user: &UserId,
        provider: Provider,
    ) -> Result<Option<Connection>, StoreError> {
        self.get_connection_impl(user, provider).await
    }

    async fn list_connections(&self, user: &UserId) -> Result<Vec<Connection>, StoreError> {
        self.list_connections_impl(user).await
    }

    async fn connections_with_status(
        &self,
        provider: Provider,
        status: ConnectionStatus,
    ) -> Result<Vec<Connection>, StoreError> {
        self.connections_with_status_impl(provider, status).await
    }

    async fn record_sync(
        &self,
        user: &UserId,
        provider: Provider,
        at: DateTime<Utc>,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        self.record_sync_impl(user, provider, at, error).await
    }

    async fn try_refresh_lease(
        &self,
        user: &UserId,
        provider: Provider,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Connection>, StoreError> {
        self.try_refresh_lease_impl(user, provider, owner, now, until)
            .await
    }

    async fn finish_refresh(
        &self,
        user: &UserId,
        provider: Provider,
        owner: &str,
        outcome: RefreshOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.finish_refresh_impl(user, provider, owner, outcome, now)
            .await
    }

    async fn create_job(
        &self,
        job: NewJob,
        coalesce_within: Option<chrono::Duration>,
    ) -> Result<Created, StoreError> {
        self.create_job_impl(job, crate::store::Admission::of_poll(coalesce_within))
            .await
    }

    async fn create_requested_job(
        &self,
        job: NewJob,
        max_queued: u32,
    ) -> Result<Created, StoreError> {
        self.create_job_impl(job, crate::store::Admission::Request { max_queued })
            .await
    }

    async fn claim_job(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<SyncJob>, StoreError> {
        self.claim_job_impl(owner, now, until).await
    }

    async fn checkpoint_job(
        &self,
        job: Uuid,
        owner: &str,
        checkpoint: Checkpoint,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.checkpoint_job_impl(job, owner, checkpoint, until)
            .await
    }

    async fn renew_job_lease(
        &self,
        job: Uuid,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.renew_job_lease_impl(job, owner, until).await
    }

    async fn finish_job(
        &self,
        job: Uuid,
        owner: &str,
        end: JobEnd,
        now: DateTime<Utc>,
    ) -> Result<Option<SyncJob>, StoreError> {
        self.finish_job_impl(job, owner, end, now).await
    }

    async fn get_job(&self, job: Uuid) -> Result<Option<SyncJob>, StoreError> {
        self.get_job_impl(job).await
    }

    async fn list_jobs(&self, user: &UserId, limit: usize) -> Result<Vec<SyncJob>, StoreError> {
        self.list_jobs_impl(user, limit).await
    }

    async fn job_backlog(&self, now: DateTime<Utc>) -> Result<JobBacklog, StoreError> {
        self.job_backlog_impl(now).await
    }

    async fn put_delivery(&self, delivery: NewDelivery) -> Result<Accepted, StoreError> {
        self.put_delivery_impl(delivery).await
    }

    async fn claim_deliveries(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.claim_deliveries_impl(owner, now, until, limit).await
    }

    async fn finish_deliveries(
        &self,
        owner: &str,
        ends: Vec<(Uuid, DeliveryEnd)>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        self.finish_deliveries_impl(owner, ends, now).await
    }

    async fn get_delivery(&self, delivery: Uuid) -> Result<Option<Delivery>, StoreError> {
        self.get_delivery_impl(delivery).await
    }

    async fn inbox_backlog(&self) -> Result<u64, StoreError> {
        self.inbox_backlog_impl().await
    }
}
