//! The four tables and their indexes, created on start-up when absent
//! (on-demand billing) and awaited until ACTIVE. See docs/dynamodb.md.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;

use super::item::sdk_error;
use crate::store::StoreError;

/// Table names (each configurable; tests give every test its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    /// Readings: `user_id` (S) / `timestamp` (N, unix seconds).
    pub readings: String,
    /// Connections and sealed tokens: `user_id` (S) / `provider` (S).
    pub user_tokens: String,
    /// Sync jobs: `id` (S), with the `by_user` and `open` indexes.
    pub sync_jobs: String,
    /// Everything else, generic `pk` (S) / `sk` (S), with index `gsi1`.
    pub aux: String,
}

impl Tables {
    /// The default names, each with `prefix` in front.
    pub fn prefixed(prefix: &str) -> Self {
        Self {
            readings: format!("{prefix}bg_readings"),
            user_tokens: format!("{prefix}user_tokens"),
            sync_jobs: format!("{prefix}sync_jobs"),
            aux: format!("{prefix}cgm_hub"),
        }
    }
}

/// Index of connections by `provider_status` ("dexcom#connected") / `user_id`.
pub(super) const BY_STATUS: &str = "by_provider_status";
/// Index of jobs by `user_id` / `created_at_ms`.
pub(super) const BY_USER: &str = "by_user";
/// Sparse index of queued and running jobs: `open_pk` ("open") / `open_sk`
/// ("{priority}#{created_ms}#{id}"), in claim order.
pub(super) const OPEN: &str = "open";
/// Sparse index of the aux table: `gsi1pk` / `gsi1sk` (outbox and inbox order).
pub(super) const GSI1: &str = "gsi1";
/// The aux table's TTL attribute (epoch seconds).
pub(super) const EXPIRES_AT: &str = "expires_at";

struct Spec<'a> {
    name: &'a str,
    key: (
        &'a str,
        ScalarAttributeType,
        Option<(&'a str, ScalarAttributeType)>,
    ),
    indexes: Vec<(
        &'a str,
        &'a str,
        ScalarAttributeType,
        &'a str,
        ScalarAttributeType,
    )>,
    ttl: Option<&'a str>,
}

pub(super) async fn ensure(client: &Client, tables: &Tables) -> Result<(), StoreError> {
    use ScalarAttributeType::{N, S};
    let specs = [
        Spec {
            name: &tables.readings,
            key: ("user_id", S, Some(("timestamp", N))),
            indexes: vec![],
            ttl: None,
        },
        Spec {
            name: &tables.user_tokens,
            key: ("user_id", S, Some(("provider", S))),
            indexes: vec![(BY_STATUS, "provider_status", S, "user_id", S)],
            ttl: None,
        },
        Spec {
            name: &tables.sync_jobs,
            key: ("id", S, None),
            indexes: vec![
                (BY_USER, "user_id", S, "created_at_ms", N),
                (OPEN, "open_pk", S, "open_sk", S),
            ],
            ttl: None,
        },
        Spec {
            name: &tables.aux,
            key: ("pk", S, Some(("sk", S))),
            indexes: vec![(GSI1, "gsi1pk", S, "gsi1sk", S)],
            ttl: Some(EXPIRES_AT),
        },
    ];
    for spec in &specs {
        ensure_one(client, spec).await?;
    }
    Ok(())
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(|e| StoreError::Internal(format!("key schema: {e}")))
}

fn attribute(name: &str, kind: ScalarAttributeType) -> Result<AttributeDefinition, StoreError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()
        .map_err(|e| StoreError::Internal(format!("attribute definition: {e}")))
}

async fn ensure_one(client: &Client, spec: &Spec<'_>) -> Result<(), StoreError> {
    let exists = match client.describe_table().table_name(spec.name).send().await {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            false
        }
        Err(e) => return Err(sdk_error("DescribeTable", e)),
    };
    if !exists {
        let mut create = client
            .create_table()
            .table_name(spec.name)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key(spec.key.0, KeyType::Hash)?)
            .attribute_definitions(attribute(spec.key.0, spec.key.1.clone())?);
        let mut defined = vec![spec.key.0.to_owned()];
        if let Some((sort, kind)) = &spec.key.2 {
            create = create
                .key_schema(key(sort, KeyType::Range)?)
                .attribute_definitions(attribute(sort, kind.clone())?);
            defined.push((*sort).to_owned());
        }
        for (index, pk, pk_kind, sk, sk_kind) in &spec.indexes {
            for (name, kind) in [(pk, pk_kind), (sk, sk_kind)] {
                if !defined.iter().any(|d| d == name) {
                    create = create.attribute_definitions(attribute(name, kind.clone())?);
                    defined.push((*name).to_owned());
                }
            }
            create = create.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(*index)
                    .key_schema(key(pk, KeyType::Hash)?)
                    .key_schema(key(sk, KeyType::Range)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .map_err(|e| StoreError::Internal(format!("index {index}: {e}")))?,
            );
        }
        match create.send().await {
            Ok(_) => tracing::info!(table = spec.name, "created dynamodb table"),
            // Another instance created it meanwhile.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => return Err(sdk_error("CreateTable", e)),
        }
    }
    wait_active(client, spec.name).await?;
    if let Some(attribute) = spec.ttl {
        enable_ttl(client, spec.name, attribute).await?;
    }
    Ok(())
}

async fn wait_active(client: &Client, table: &str) -> Result<(), StoreError> {
    for _ in 0..600 {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTable", e))?;
        let Some(t) = described.table() else {
            return Err(StoreError::Internal(format!("{table}: no description")));
        };
        let indexes_ready = t.global_secondary_indexes().iter().all(|i| {
            i.index_status()
                .is_none_or(|s| *s == aws_sdk_dynamodb::types::IndexStatus::Active)
        });
        if t.table_status() == Some(&TableStatus::Active) && indexes_ready {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(StoreError::Unavailable(format!(
        "dynamodb table {table} did not become ACTIVE within 2 minutes"
    )))
}

async fn enable_ttl(client: &Client, table: &str, attribute: &str) -> Result<(), StoreError> {
    let current = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeTimeToLive", e))?;
    let enabled = current
        .time_to_live_description()
        .and_then(|d| d.attribute_name())
        .is_some_and(|a| a == attribute);
    if enabled {
        return Ok(());
    }
    let spec = TimeToLiveSpecification::builder()
        .attribute_name(attribute)
        .enabled(true)
        .build()
        .map_err(|e| StoreError::Internal(format!("ttl spec: {e}")))?;
    match client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(spec)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        // Enabled meanwhile by another instance, or being enabled.
        Err(e)
            if e.as_service_error().is_some_and(|s| {
                s.meta()
                    .message()
                    .is_some_and(|m| m.contains("already enabled"))
            }) =>
        {
            Ok(())
        }
        Err(e) => Err(sdk_error("UpdateTimeToLive", e)),
    }
}
