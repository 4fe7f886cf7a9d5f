//! The DynamoDB backend (`STORAGE_BACKEND=dynamodb`), for deployments that want a
//! managed, horizontally scaled store shared by several instances.
//!
//! DynamoDB has no multi-statement transactions over queries, so every rule the
//! SQLite store gets from its single writer is a conditional write here: inserts
//! are `attribute_not_exists`, replacements are conditional on the version read,
//! leases and claims are conditional updates, and a lost race re-reads and
//! retries. Events are committed with their change by `TransactWriteItems`.
//! The table design and every access pattern are in docs/dynamodb.md.

mod account_tokens;
mod accounts;
mod alerts;
mod audit;
mod connections;
mod daily;
mod health_upload;
mod inbox;
mod invitations;
mod item;
mod jobs;
mod journal;
mod meal_responses;
mod notifications;
mod outbox;
mod profiles;
mod readings;
mod schema;
mod shares;
mod stale;
mod tasks;

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;

pub use schema::Tables;

use super::{Store, StoreError};
pub use crate::config::AwsCredentials;

/// How to reach DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoSettings {
    /// None: the AWS endpoint of `region`.
    pub endpoint: Option<String>,
    pub region: String,
    pub tables: Tables,
    /// Fixed credentials (emulators, tests, AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY); None uses the AWS default chain (environment,
    /// profile, container or instance role).
    pub static_credentials: Option<AwsCredentials>,
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
    if let Some(c) = &settings.static_credentials {
        loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            &c.access_key_id,
            c.secret_access_key.expose(),
            c.session_token.as_ref().map(|t| t.expose().clone()),
            None,
            "static",
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
}
