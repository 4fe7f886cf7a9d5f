//! Source connections in `user_tokens` (user_id / provider), pending OAuth
//! authorizations in the aux table (with a TTL), and the refresh lease as a
//! conditional update of the connection item.
//!
//! A pending authorization is two items: `AUTH#<state hash>` (what the callback
//! takes), in the `gsi1` partition `OAUTH_STATES` ordered by expiry (what the
//! pruner deletes), and `AUTHS#<user>` / `<expiry>#<state hash>`, the user's
//! list, newest last (what keeps a user to their newest few).

use aws_sdk_dynamodb::types::{Put, ReturnValue, TransactWriteItem};
use chrono::{DateTime, Utc};

use super::item::{
    b, ms, n, put_opt, s, sdk_error, transact_update, Changes, Condition, Fields, Item,
};
use super::schema::{BY_STATUS, EXPIRES_AT, GSI1};
use super::{backoff, lost_race, outbox, DynamoStore, RACE_ATTEMPTS};
use crate::domain::UserId;
use crate::records::connections::{
    Connection, ConnectionStatus, PendingAuthorization, Provider, RefreshOutcome, SealedTokens,
    SyncNote,
};
use crate::records::events::Event;
use crate::secret::Secret;
use crate::store::ConnectionStore;
use crate::store::StoreError;
use async_trait::async_trait;

pub(super) fn key(user: &str, provider: Provider) -> Item {
    Item::from([
        ("user_id".to_owned(), s(user)),
        ("provider".to_owned(), s(provider.as_str())),
    ])
}

fn provider_status(provider: Provider, status: ConnectionStatus) -> String {
    format!("{}#{}", provider.as_str(), status.as_str())
}

pub(super) fn from_item(item: &Item) -> Result<Connection, StoreError> {
    let f = Fields::new(item, "connection");
    let provider = f.s("provider")?;
    let status = f.s("status")?;
    let tokens = match (
        f.opt_s("token_key_id")?,
        f.opt_bytes("token_nonce")?,
        f.opt_bytes("token_ciphertext")?,
    ) {
        (Some(key_id), Some(nonce), Some(ciphertext)) => Some(SealedTokens {
            key_id: key_id.to_owned(),
            nonce,
            ciphertext,
        }),
        (None, None, None) => None,
        _ => return Err(StoreError::Corrupt("partial token attributes".into())),
    };
    Ok(Connection {
        user_id: UserId::parse(f.s("user_id")?).map_err(|e| f.corrupt("user_id", e))?,
        provider: Provider::parse(provider).ok_or_else(|| f.corrupt("provider", provider))?,
        status: ConnectionStatus::parse(status).ok_or_else(|| f.corrupt("status", status))?,
        tokens,
        access_expires_at: f.opt_time("access_expires_at_ms")?,
        access_refresh_at: f.opt_time("access_refresh_at_ms")?,
        token_version: f.i64("token_version")?,
        connected_at: f.opt_time("connected_at_ms")?,
        last_sync_at: f.opt_time("last_sync_at_ms")?,
        sync_cursor: f.opt_time("sync_cursor_ms")?,
        last_error: f.opt_s("last_error")?.map(str::to_owned),
        updated_at: f.time("updated_at_ms")?,
    })
}

/// The token attributes: set from `tokens`, or all removed.
fn token_changes(changes: Changes, tokens: Option<&SealedTokens>) -> Changes {
    changes
        .set_opt("token_key_id", tokens.map(|t| s(t.key_id.clone())))
        .set_opt("token_nonce", tokens.map(|t| b(t.nonce.clone())))
        .set_opt("token_ciphertext", tokens.map(|t| b(t.ciphertext.clone())))
}

fn status_changes(changes: Changes, provider: Provider, status: ConnectionStatus) -> Changes {
    changes
        .set("status", s(status.as_str()))
        .set("provider_status", s(provider_status(provider, status)))
}

fn release(changes: Changes) -> Changes {
    changes.remove("lease_owner").remove("lease_until_ms")
}

fn pending_key(state_hash: &str) -> Item {
    Item::from([
        ("pk".to_owned(), s(format!("AUTH#{state_hash}"))),
        ("sk".to_owned(), s("-")),
    ])
}

/// The `gsi1` partition of pending authorizations, in expiry order.
const PENDING_PARTITION: &str = "OAUTH_STATES";

/// Expiry order: zero-padded epoch milliseconds, then the state hash.
fn expiry_order(expires_at: DateTime<Utc>, state_hash: &str) -> String {
    format!("{:015}#{state_hash}", expires_at.timestamp_millis().max(0))
}

/// The user's entry for one pending authorization.
fn user_pending_key(user: &str, order: &str) -> Item {
    Item::from([
        ("pk".to_owned(), s(format!("AUTHS#{user}"))),
        ("sk".to_owned(), s(order)),
    ])
}

fn put_item(table: &str, item: Item) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .build()
        .map_err(|e| StoreError::Internal(format!("pending authorization put: {e}")))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// A finished sync's note as changes to the connection's item.
pub(super) fn sync_changes(note: SyncNote) -> Changes {
    let mut changes = Changes::default().set("updated_at_ms", ms(note.updated_at));
    if let Some(synced) = note.last_sync_at {
        changes = changes.set("last_sync_at_ms", ms(synced));
    }
    match note.last_error {
        Some(error) => changes.set("last_error", s(error)),
        None => changes.remove("last_error"),
    }
}

impl DynamoStore {
    /// Deletes a pending authorization and the user's entry for it; true if
    /// the authorization was still there.
    async fn forget_pending(&self, user: &str, order: &str) -> Result<bool, StoreError> {
        let table = &self.tables().aux;
        let state_hash = order.split_once('#').map_or(order, |(_, hash)| hash);
        let out = self
            .client()
            .delete_item()
            .table_name(table)
            .set_key(Some(pending_key(state_hash)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem pending authorization", e))?;
        self.client()
            .delete_item()
            .table_name(table)
            .set_key(Some(user_pending_key(user, order)))
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem pending authorization entry", e))?;
        Ok(out.attributes().is_some_and(|a| !a.is_empty()))
    }

    async fn query_connections(
        &self,
        index: Option<&str>,
        condition: &str,
        value: aws_sdk_dynamodb::types::AttributeValue,
        consistent: bool,
    ) -> Result<Vec<Connection>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client()
                .query()
                .table_name(&self.tables().user_tokens)
                .set_index_name(index.map(str::to_owned))
                .key_condition_expression(condition)
                .expression_attribute_values(":k", value.clone())
                // Global indexes only offer eventually consistent reads.
                .consistent_read(consistent)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query connections", e))?;
            for item in page.items() {
                out.push(from_item(item)?);
            }
            match page.last_evaluated_key() {
                Some(last) if !last.is_empty() => start = Some(last.clone()),
                _ => break,
            }
        }
        out.sort_by(|a, b| {
            (a.user_id.as_str(), a.provider.as_str())
                .cmp(&(b.user_id.as_str(), b.provider.as_str()))
        });
        Ok(out)
    }
}

#[async_trait]
impl ConnectionStore for DynamoStore {
    async fn put_pending_authorization(
        &self,
        p: PendingAuthorization,
        keep_per_user: usize,
    ) -> Result<(), StoreError> {
        let table = self.tables().aux.clone();
        let order = expiry_order(p.expires_at, &p.state_hash);
        let mut item = pending_key(&p.state_hash);
        item.insert("user_id".into(), s(p.user_id.as_str()));
        item.insert("provider".into(), s(p.provider.as_str()));
        put_opt(
            &mut item,
            "pkce_verifier",
            p.pkce_verifier.as_ref().map(|v| s(v.expose().clone())),
        );
        put_opt(&mut item, "browser_hash", p.browser_hash.clone().map(s));
        item.insert("expires_at_ms".into(), ms(p.expires_at));
        // DynamoDB's TTL (epoch seconds) deletes it some time after it expires.
        item.insert(EXPIRES_AT.into(), n(p.expires_at.timestamp() + 1));
        item.insert("gsi1pk".into(), s(PENDING_PARTITION));
        item.insert("gsi1sk".into(), s(order.clone()));
        let mut entry = user_pending_key(p.user_id.as_str(), &order);
        entry.insert(EXPIRES_AT.into(), n(p.expires_at.timestamp() + 1));
        let items = vec![put_item(&table, item)?, put_item(&table, entry)?];
        if !self
            .transact("TransactWriteItems pending authorization", items)
            .await?
        {
            return Err(StoreError::Unavailable(
                "dynamodb: storing a pending authorization conflicted; retry".into(),
            ));
        }
        // The new one stays; of the others, the newest keep_per_user - 1.
        let mut kept = 1;
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client()
                .query()
                .table_name(&table)
                .key_condition_expression("pk = :p")
                .expression_attribute_values(":p", s(format!("AUTHS#{}", p.user_id.as_str())))
                .scan_index_forward(false)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query pending authorizations", e))?;
            for entry in page.items() {
                let other = Fields::new(entry, "pending authorization entry").s("sk")?;
                if other == order {
                    continue;
                }
                if kept < keep_per_user {
                    kept += 1;
                } else {
                    self.forget_pending(p.user_id.as_str(), other).await?;
                }
            }
            match page.last_evaluated_key() {
                Some(last) if !last.is_empty() => start = Some(last.clone()),
                _ => return Ok(()),
            }
        }
    }

    async fn prune_pending_authorizations(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        // Expired at `now`: an order below the next millisecond's.
        let bound = format!("{:015}", now.timestamp_millis().max(0) + 1);
        let mut pruned = 0;
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client()
                .query()
                .table_name(&self.tables().aux)
                .index_name(GSI1)
                .key_condition_expression("gsi1pk = :p AND gsi1sk < :bound")
                .expression_attribute_values(":p", s(PENDING_PARTITION))
                .expression_attribute_values(":bound", s(bound.clone()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query expired pending authorizations", e))?;
            for item in page.items() {
                let f = Fields::new(item, "pending authorization");
                if self.forget_pending(f.s("user_id")?, f.s("gsi1sk")?).await? {
                    pruned += 1;
                }
            }
            match page.last_evaluated_key() {
                Some(last) if !last.is_empty() => start = Some(last.clone()),
                _ => return Ok(pruned),
            }
        }
    }

    async fn take_pending_authorization(
        &self,
        state_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingAuthorization>, StoreError> {
        // Deleting and returning the old item makes it single use.
        let out = self
            .client()
            .delete_item()
            .table_name(&self.tables().aux)
            .set_key(Some(pending_key(state_hash)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem pending authorization", e))?;
        let Some(item) = out.attributes().filter(|a| !a.is_empty()) else {
            return Ok(None);
        };
        let f = Fields::new(item, "pending authorization");
        let expires_at = f.time("expires_at_ms")?;
        let user = f.s("user_id")?;
        self.client()
            .delete_item()
            .table_name(&self.tables().aux)
            .set_key(Some(user_pending_key(
                user,
                &expiry_order(expires_at, state_hash),
            )))
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem pending authorization entry", e))?;
        // TTL deletion is lazy: an expired item may still be there.
        if expires_at <= now {
            return Ok(None);
        }
        let provider = f.s("provider")?;
        Ok(Some(PendingAuthorization {
            state_hash: state_hash.to_owned(),
            user_id: UserId::parse(f.s("user_id")?).map_err(|e| f.corrupt("user_id", e))?,
            provider: Provider::parse(provider).ok_or_else(|| f.corrupt("provider", provider))?,
            pkce_verifier: f.opt_s("pkce_verifier")?.map(|v| Secret::new(v.to_owned())),
            browser_hash: f.opt_s("browser_hash")?.map(str::to_owned),
            expires_at,
        }))
    }

    async fn put_connection(&self, c: Connection) -> Result<(), StoreError> {
        let table = self.tables().user_tokens.clone();
        let key = key(c.user_id.as_str(), c.provider);
        for attempt in 0..RACE_ATTEMPTS {
            let previous = self.get(&table, key.clone()).await?;
            let (previous_status, condition, version) = match &previous {
                None => (None, Condition::new("attribute_not_exists(user_id)"), 1),
                Some(item) => {
                    let f = Fields::new(item, "connection");
                    let version = f.i64("token_version")?;
                    (
                        ConnectionStatus::parse(f.s("status")?),
                        Condition::new("token_version = :cv").value(":cv", n(version)),
                        version + 1,
                    )
                }
            };
            // An update rather than a put keeps the sync cursor, which only
            // sync jobs write.
            let changes = status_changes(Changes::default(), c.provider, c.status);
            let changes = token_changes(changes, c.tokens.as_ref())
                .set_opt("access_expires_at_ms", c.access_expires_at.map(ms))
                .set_opt("access_refresh_at_ms", c.access_refresh_at.map(ms))
                .set("token_version", n(version))
                .set_opt("connected_at_ms", c.connected_at.map(ms))
                .set_opt("last_sync_at_ms", c.last_sync_at.map(ms))
                .set_opt("last_error", c.last_error.clone().map(s))
                .set("updated_at_ms", ms(c.updated_at));
            let mut items = vec![transact_update(
                &table,
                key.clone(),
                release(changes),
                condition,
            )?];
            let news = c.status.is_news_after(previous_status);
            if news {
                items.push(outbox::append(
                    &self.tables().aux,
                    &Event::connection_changed(&c.user_id, c.provider, c.status),
                )?);
            }
            if self
                .transact("TransactWriteItems connection", items)
                .await?
            {
                if news {
                    self.wrote_outbox();
                }
                return Ok(());
            }
            backoff(attempt).await;
        }
        Err(lost_race("put_connection"))
    }

    async fn get_connection(
        &self,
        user: &UserId,
        provider: Provider,
    ) -> Result<Option<Connection>, StoreError> {
        self.get(&self.tables().user_tokens, key(user.as_str(), provider))
            .await?
            .as_ref()
            .map(from_item)
            .transpose()
    }

    async fn list_connections(&self, user: &UserId) -> Result<Vec<Connection>, StoreError> {
        self.query_connections(None, "user_id = :k", s(user.as_str()), true)
            .await
    }

    async fn connections_with_status(
        &self,
        provider: Provider,
        status: ConnectionStatus,
    ) -> Result<Vec<Connection>, StoreError> {
        self.query_connections(
            Some(BY_STATUS),
            "provider_status = :k",
            s(provider_status(provider, status)),
            false,
        )
        .await
    }

    async fn record_sync(
        &self,
        user: &UserId,
        provider: Provider,
        at: DateTime<Utc>,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        self.update_if(
            &self.tables().user_tokens,
            key(user.as_str(), provider),
            sync_changes(SyncNote::of(at, error)),
            Condition::new("attribute_exists(user_id)"),
        )
        .await?;
        Ok(())
    }

    async fn try_refresh_lease(
        &self,
        user: &UserId,
        provider: Provider,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Connection>, StoreError> {
        let taken = self
            .update_if(
                &self.tables().user_tokens,
                key(user.as_str(), provider),
                Changes::default()
                    .set("lease_owner", s(owner))
                    .set("lease_until_ms", ms(until)),
                Condition::new(
                    "#cs = :connected AND (attribute_not_exists(lease_owner) \
                     OR lease_owner = :owner OR lease_until_ms <= :now)",
                )
                .name("#cs", "status")
                .value(":connected", s(ConnectionStatus::Connected.as_str()))
                .value(":owner", s(owner))
                .value(":now", ms(now)),
            )
            .await?;
        taken.as_ref().map(from_item).transpose()
    }

    async fn finish_refresh(
        &self,
        user: &UserId,
        provider: Provider,
        owner: &str,
        outcome: RefreshOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let table = self.tables().user_tokens.clone();
        let key = key(user.as_str(), provider);
        let held = || Condition::new("lease_owner = :owner").value(":owner", s(owner));
        // Refreshed and Revoked write tokens, so they bump the token version
        // (read first, and the write is conditional on it); Revoked also emits
        // its event; Failed only notes the error.
        let (changes, bumps, event) = match outcome {
            RefreshOutcome::Refreshed {
                tokens,
                access_expires_at,
                access_refresh_at,
            } => {
                let changes =
                    status_changes(Changes::default(), provider, ConnectionStatus::Connected);
                let changes = token_changes(changes, Some(&tokens))
                    .set("access_expires_at_ms", ms(access_expires_at))
                    .set("access_refresh_at_ms", ms(access_refresh_at))
                    .remove("last_error")
                    .set("updated_at_ms", ms(now));
                (changes, true, None)
            }
            RefreshOutcome::Revoked { error } => {
                let changes = status_changes(
                    Changes::default(),
                    provider,
                    ConnectionStatus::ReauthRequired,
                );
                let changes = token_changes(changes, None)
                    .remove("access_expires_at_ms")
                    .remove("access_refresh_at_ms")
                    .set("last_error", s(error))
                    .set("updated_at_ms", ms(now));
                let event =
                    Event::connection_changed(user, provider, ConnectionStatus::ReauthRequired);
                (changes, true, Some(event))
            }
            RefreshOutcome::Failed { error } => {
                let changes = Changes::default()
                    .set("last_error", s(error))
                    .set("updated_at_ms", ms(now));
                (changes, false, None)
            }
            RefreshOutcome::Rewrapped { tokens } => {
                let changes = token_changes(Changes::default(), Some(&tokens));
                let condition = Condition::new("lease_owner = :owner AND #cs = :connected")
                    .value(":owner", s(owner))
                    .name("#cs", "status")
                    .value(":connected", s(ConnectionStatus::Connected.as_str()));
                let done = self
                    .update_if(&table, key, release(changes), condition)
                    .await?;
                return Ok(done.is_some());
            }
            RefreshOutcome::Released => {
                let done = self
                    .update_if(&table, key, release(Changes::default()), held())
                    .await?;
                return Ok(done.is_some());
            }
        };
        if !bumps {
            let done = self
                .update_if(&table, key, release(changes), held())
                .await?;
            return Ok(done.is_some());
        }
        for attempt in 0..RACE_ATTEMPTS {
            let Some(current) = self.get(&table, key.clone()).await? else {
                return Ok(false);
            };
            let f = Fields::new(&current, "connection");
            if f.opt_s("lease_owner")? != Some(owner) {
                return Ok(false);
            }
            let version = f.i64("token_version")?;
            let condition = Condition::new("lease_owner = :owner AND token_version = :cv")
                .value(":owner", s(owner))
                .value(":cv", n(version));
            let changes = release(changes.clone()).set("token_version", n(version + 1));
            let mut items = vec![transact_update(&table, key.clone(), changes, condition)?];
            if let Some(event) = &event {
                items.push(outbox::append(&self.tables().aux, event)?);
            }
            if self
                .transact("TransactWriteItems finish refresh", items)
                .await?
            {
                if event.is_some() {
                    self.wrote_outbox();
                }
                return Ok(true);
            }
            backoff(attempt).await;
        }
        Err(lost_race("finish_refresh"))
    }
}
