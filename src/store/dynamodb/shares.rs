//! Sharing grants in the aux table: one item per (patient, grantee), pk
//! `SHARE#<patient>`, sk the grantee, so a patient's grants are one Query in
//! grantee order. The per-patient limit is kept with a counter item, pk
//! `SHARECOUNT#<patient>`: a new grant and a revocation change it in the same
//! `TransactWriteItems` as the grant, conditional on the count read, so
//! concurrent grants cannot pass the limit together.

use aws_sdk_dynamodb::types::{Delete, Put, Select, TransactWriteItem};

use super::item::{
    ms, n, put_opt, s, sdk_error, transact_update, Changes, Condition, Fields, Item,
};
use super::{backoff, lost_race, DynamoStore, RACE_ATTEMPTS};
use crate::domain::UserId;
use crate::records::shares::{Share, ShareRole};
use crate::records::shares::{SharePage, ShareWrite};
use crate::store::ShareStore;
use crate::store::StoreError;
use async_trait::async_trait;

fn key(patient: &UserId, grantee: &UserId) -> Item {
    Item::from([
        ("pk".to_owned(), s(format!("SHARE#{}", patient.as_str()))),
        ("sk".to_owned(), s(grantee.as_str())),
    ])
}

fn counter_key(patient: &UserId) -> Item {
    Item::from([
        (
            "pk".to_owned(),
            s(format!("SHARECOUNT#{}", patient.as_str())),
        ),
        ("sk".to_owned(), s("-")),
    ])
}

fn from_item(item: &Item) -> Result<Share, StoreError> {
    let f = Fields::new(item, "share");
    let id = |name: &str| UserId::parse(f.s(name)?).map_err(|e| f.corrupt(name, e));
    let role = f.s("role")?;
    Ok(Share {
        patient_id: id("patient_id")?,
        grantee_id: id("grantee_id")?,
        role: ShareRole::parse(role).ok_or_else(|| f.corrupt("role", role))?,
        created_at: f.time("created_at_ms")?,
        expires_at: f.opt_time("expires_at_ms")?,
    })
}

impl DynamoStore {
    /// The patient's grant count, and the condition that it is still that
    /// count when the transaction commits. Before the first counted write
    /// (grants stored by an older version) the grants are counted instead.
    async fn share_count(&self, patient: &UserId) -> Result<(i64, Condition), StoreError> {
        let table = &self.tables().aux;
        match self.get(table, counter_key(patient)).await? {
            Some(counter) => {
                let held = Fields::new(&counter, "share count").i64("grants")?;
                let still = Condition::new("#cg = :cg")
                    .name("#cg", "grants")
                    .value(":cg", n(held));
                Ok((held, still))
            }
            None => {
                let mut held = 0i64;
                let mut start: Option<Item> = None;
                loop {
                    let page = self
                        .client()
                        .query()
                        .table_name(table)
                        .key_condition_expression("pk = :p")
                        .expression_attribute_values(":p", s(format!("SHARE#{}", patient.as_str())))
                        .select(Select::Count)
                        .consistent_read(true)
                        .set_exclusive_start_key(start.take())
                        .send()
                        .await
                        .map_err(|e| sdk_error("Query share count", e))?;
                    held += i64::from(page.count());
                    match page.last_evaluated_key() {
                        Some(last) if !last.is_empty() => start = Some(last.clone()),
                        _ => break,
                    }
                }
                Ok((held, Condition::new("attribute_not_exists(pk)")))
            }
        }
    }
}

#[async_trait]
impl ShareStore for DynamoStore {
    async fn put_share(
        &self,
        share: Share,
        max_per_patient: usize,
    ) -> Result<ShareWrite, StoreError> {
        let table = self.tables().aux.clone();
        let share_key = key(&share.patient_id, &share.grantee_id);
        let mut item = share_key.clone();
        item.insert("patient_id".into(), s(share.patient_id.as_str()));
        item.insert("grantee_id".into(), s(share.grantee_id.as_str()));
        item.insert("role".into(), s(share.role.as_str()));
        item.insert("created_at_ms".into(), ms(share.created_at));
        put_opt(&mut item, "expires_at_ms", share.expires_at.map(ms));
        for attempt in 0..RACE_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            // The grantee's earlier grant is replaced in place: the count stays.
            if self.get(&table, share_key.clone()).await?.is_some() {
                let replaced = self
                    .client()
                    .put_item()
                    .table_name(&table)
                    .set_item(Some(item.clone()))
                    .condition_expression("attribute_exists(pk)")
                    .send()
                    .await;
                match replaced {
                    Ok(_) => return Ok(ShareWrite::Stored),
                    // Revoked meanwhile: this is a new grant now.
                    Err(e) if super::item::is_condition_failed(&e) => continue,
                    Err(e) => return Err(sdk_error("PutItem share", e)),
                }
            }
            let (held, counted) = self.share_count(&share.patient_id).await?;
            if usize::try_from(held).unwrap_or(usize::MAX) >= max_per_patient {
                return Ok(ShareWrite::LimitReached);
            }
            let put = Put::builder()
                .table_name(&table)
                .set_item(Some(item.clone()))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(|e| StoreError::Internal(format!("share put: {e}")))?;
            let items = vec![
                TransactWriteItem::builder().put(put).build(),
                transact_update(
                    &table,
                    counter_key(&share.patient_id),
                    Changes::default().set("grants", n(held + 1)),
                    counted,
                )?,
            ];
            if self.transact("TransactWriteItems share", items).await? {
                return Ok(ShareWrite::Stored);
            }
        }
        Err(lost_race("granting a share"))
    }

    async fn list_shares(
        &self,
        patient: &UserId,
        page: SharePage,
    ) -> Result<Vec<Share>, StoreError> {
        let mut shares = Vec::new();
        let mut start: Option<Item> = None;
        while shares.len() < page.limit {
            let mut query = self
                .client()
                .query()
                .table_name(&self.tables().aux)
                .expression_attribute_values(":p", s(format!("SHARE#{}", patient.as_str())))
                .consistent_read(true)
                .limit(i32::try_from(page.limit - shares.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take());
            query = match &page.after {
                Some(after) => query
                    .key_condition_expression("pk = :p AND sk > :after")
                    .expression_attribute_values(":after", s(after.as_str())),
                None => query.key_condition_expression("pk = :p"),
            };
            let out = query
                .send()
                .await
                .map_err(|e| sdk_error("Query shares", e))?;
            for item in out.items() {
                shares.push(from_item(item)?);
            }
            match out.last_evaluated_key() {
                Some(last) if !last.is_empty() => start = Some(last.clone()),
                _ => break,
            }
        }
        Ok(shares)
    }

    async fn get_share(
        &self,
        patient: &UserId,
        grantee: &UserId,
    ) -> Result<Option<Share>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(&self.tables().aux)
            .set_key(Some(key(patient, grantee)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem share", e))?;
        out.item().map(from_item).transpose()
    }

    async fn delete_share(&self, patient: &UserId, grantee: &UserId) -> Result<bool, StoreError> {
        let table = self.tables().aux.clone();
        for attempt in 0..RACE_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            if self.get(&table, key(patient, grantee)).await?.is_none() {
                return Ok(false);
            }
            let (held, counted) = self.share_count(patient).await?;
            let delete = Delete::builder()
                .table_name(&table)
                .set_key(Some(key(patient, grantee)))
                .condition_expression("attribute_exists(pk)")
                .build()
                .map_err(|e| StoreError::Internal(format!("share delete: {e}")))?;
            let items = vec![
                TransactWriteItem::builder().delete(delete).build(),
                transact_update(
                    &table,
                    counter_key(patient),
                    Changes::default().set("grants", n((held - 1).max(0))),
                    counted,
                )?,
            ];
            if self
                .transact("TransactWriteItems share revoke", items)
                .await?
            {
                return Ok(true);
            }
        }
        Err(lost_race("revoking a share"))
    }
}
