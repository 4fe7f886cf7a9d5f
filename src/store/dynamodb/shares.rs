//! Sharing grants in the aux table: one item per (patient, grantee), pk
//! `SHARE#<patient>`, sk the grantee, so a patient's grants are one Query in
//! grantee order.

use aws_sdk_dynamodb::types::ReturnValue;

use super::item::{ms, put_opt, s, sdk_error, Fields, Item};
use super::DynamoStore;
use crate::auth::shares::{Share, ShareRole};
use crate::domain::UserId;
use crate::store::StoreError;

fn key(patient: &UserId, grantee: &UserId) -> Item {
    Item::from([
        ("pk".to_owned(), s(format!("SHARE#{}", patient.as_str()))),
        ("sk".to_owned(), s(grantee.as_str())),
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
    pub(super) async fn put_share_impl(&self, share: Share) -> Result<(), StoreError> {
        let mut item = key(&share.patient_id, &share.grantee_id);
        item.insert("patient_id".into(), s(share.patient_id.as_str()));
        item.insert("grantee_id".into(), s(share.grantee_id.as_str()));
        item.insert("role".into(), s(share.role.as_str()));
        item.insert("created_at_ms".into(), ms(share.created_at));
        put_opt(&mut item, "expires_at_ms", share.expires_at.map(ms));
        self.client()
            .put_item()
            .table_name(&self.tables().aux)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem share", e))?;
        Ok(())
    }

    pub(super) async fn list_shares_impl(
        &self,
        patient: &UserId,
    ) -> Result<Vec<Share>, StoreError> {
        let mut shares = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client()
                .query()
                .table_name(&self.tables().aux)
                .key_condition_expression("pk = :p")
                .expression_attribute_values(":p", s(format!("SHARE#{}", patient.as_str())))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query shares", e))?;
            for item in page.items() {
                shares.push(from_item(item)?);
            }
            match page.last_evaluated_key() {
                Some(last) if !last.is_empty() => start = Some(last.clone()),
                _ => return Ok(shares),
            }
        }
    }

    pub(super) async fn get_share_impl(
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

    pub(super) async fn delete_share_impl(
        &self,
        patient: &UserId,
        grantee: &UserId,
    ) -> Result<bool, StoreError> {
        let out = self
            .client()
            .delete_item()
            .table_name(&self.tables().aux)
            .set_key(Some(key(patient, grantee)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem share", e))?;
        Ok(out.attributes().is_some_and(|a| !a.is_empty()))
    }
}
