//! Notification endpoints in the aux table: one item per endpoint, pk
//! `NOTIFYEP#<user>`, sk the endpoint id, so a user's endpoints are one Query.
//! The per-user cap is kept with a counter item, pk `NOTIFYEPCOUNT#<user>`,
//! changed in the same `TransactWriteItems` as the endpoint and conditional on
//! the count read, so concurrent creations cannot pass the cap together.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};

use super::item::{b, ms, n, s, sdk_error, transact_update, Changes, Condition, Fields, Item};
use super::{backoff, lost_race, DynamoStore, RACE_ATTEMPTS};
use crate::domain::UserId;
use crate::records::connections::SealedTokens;
use crate::records::notifications::{
    join_events, split_events, EndpointId, EndpointWrite, NotificationEndpoint,
};
use crate::store::{NotificationStore, StoreError};

fn partition(user: &UserId) -> String {
    format!("NOTIFYEP#{}", user.as_str())
}

fn key(user: &UserId, id: EndpointId) -> Item {
    Item::from([
        ("pk".to_owned(), s(partition(user))),
        ("sk".to_owned(), s(id.to_string())),
    ])
}

fn counter_key(user: &UserId) -> Item {
    Item::from([
        (
            "pk".to_owned(),
            s(format!("NOTIFYEPCOUNT#{}", user.as_str())),
        ),
        ("sk".to_owned(), s("-")),
    ])
}

fn from_item(item: &Item) -> Result<NotificationEndpoint, StoreError> {
    let f = Fields::new(item, "notification endpoint");
    let events = f.s("events")?;
    let bytes = |name: &str| f.opt_bytes(name)?.ok_or_else(|| f.corrupt(name, "missing"));
    Ok(NotificationEndpoint {
        id: EndpointId(f.uuid("id")?),
        user_id: UserId::parse(f.s("user_id")?).map_err(|e| f.corrupt("user_id", e))?,
        url: f.s("url")?.to_owned(),
        events: split_events(events).ok_or_else(|| f.corrupt("events", events))?,
        secret: SealedTokens {
            key_id: f.s("secret_key_id")?.to_owned(),
            nonce: bytes("secret_nonce")?,
            ciphertext: bytes("secret_ciphertext")?,
        },
        created_at: f.time("created_at_ms")?,
    })
}

impl DynamoStore {
    /// The user's endpoint count, and the condition that it is still that
    /// count when the transaction commits.
    async fn endpoint_count(&self, user: &UserId) -> Result<(i64, Condition), StoreError> {
        match self.get(&self.tables().aux, counter_key(user)).await? {
            Some(counter) => {
                let held = Fields::new(&counter, "endpoint count").i64("endpoints")?;
                let still = Condition::new("#ce = :ce")
                    .name("#ce", "endpoints")
                    .value(":ce", n(held));
                Ok((held, still))
            }
            None => Ok((0, Condition::new("attribute_not_exists(pk)"))),
        }
    }
}

#[async_trait]
impl NotificationStore for DynamoStore {
    async fn put_notification_endpoint(
        &self,
        e: NotificationEndpoint,
        max_per_user: usize,
    ) -> Result<EndpointWrite, StoreError> {
        let table = self.tables().aux.clone();
        let mut item = key(&e.user_id, e.id);
        item.insert("id".into(), s(e.id.to_string()));
        item.insert("user_id".into(), s(e.user_id.as_str()));
        item.insert("url".into(), s(e.url.clone()));
        item.insert("events".into(), s(join_events(&e.events)));
        item.insert("secret_key_id".into(), s(e.secret.key_id.clone()));
        item.insert("secret_nonce".into(), b(e.secret.nonce.clone()));
        item.insert("secret_ciphertext".into(), b(e.secret.ciphertext.clone()));
        item.insert("created_at_ms".into(), ms(e.created_at));
        for attempt in 0..RACE_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let (held, counted) = self.endpoint_count(&e.user_id).await?;
            if usize::try_from(held).unwrap_or(usize::MAX) >= max_per_user {
                return Ok(EndpointWrite::LimitReached);
            }
            let put = Put::builder()
                .table_name(&table)
                .set_item(Some(item.clone()))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(|e| StoreError::Internal(format!("endpoint put: {e}")))?;
            let items = vec![
                TransactWriteItem::builder().put(put).build(),
                transact_update(
                    &table,
                    counter_key(&e.user_id),
                    Changes::default().set("endpoints", n(held + 1)),
                    counted,
                )?,
            ];
            if self
                .transact("TransactWriteItems notification endpoint", items)
                .await?
            {
                return Ok(EndpointWrite::Stored);
            }
        }
        Err(lost_race("creating a notification endpoint"))
    }

    async fn list_notification_endpoints(
        &self,
        user: &UserId,
    ) -> Result<Vec<NotificationEndpoint>, StoreError> {
        let mut endpoints = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client()
                .query()
                .table_name(&self.tables().aux)
                .key_condition_expression("pk = :p")
                .expression_attribute_values(":p", s(partition(user)))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query notification endpoints", e))?;
            for item in out.items() {
                endpoints.push(from_item(item)?);
            }
            match out.last_evaluated_key() {
                Some(last) if !last.is_empty() => start = Some(last.clone()),
                _ => break,
            }
        }
        // Keyed by a random id: ordered here (a user holds a handful).
        endpoints.sort_by_key(|e| (e.created_at, e.id));
        Ok(endpoints)
    }

    async fn get_notification_endpoint(
        &self,
        user: &UserId,
        id: EndpointId,
    ) -> Result<Option<NotificationEndpoint>, StoreError> {
        self.get(&self.tables().aux, key(user, id))
            .await?
            .as_ref()
            .map(from_item)
            .transpose()
    }

    async fn delete_notification_endpoint(
        &self,
        user: &UserId,
        id: EndpointId,
    ) -> Result<bool, StoreError> {
        let table = self.tables().aux.clone();
        for attempt in 0..RACE_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            if self.get(&table, key(user, id)).await?.is_none() {
                return Ok(false);
            }
            let (held, counted) = self.endpoint_count(user).await?;
            let delete = Delete::builder()
                .table_name(&table)
                .set_key(Some(key(user, id)))
                .condition_expression("attribute_exists(pk)")
                .build()
                .map_err(|e| StoreError::Internal(format!("endpoint delete: {e}")))?;
            let items = vec![
                TransactWriteItem::builder().delete(delete).build(),
                transact_update(
                    &table,
                    counter_key(user),
                    Changes::default().set("endpoints", n((held - 1).max(0))),
                    counted,
                )?,
            ];
            if self
                .transact("TransactWriteItems notification endpoint delete", items)
                .await?
            {
                return Ok(true);
            }
        }
        Err(lost_race("deleting a notification endpoint"))
    }
}
