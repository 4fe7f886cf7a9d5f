//! Invitations in the aux table: `INVITE#<sha-256 of the token>`, sk `-`.
//! "Use" is an update conditional on `used = false`.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::item::{ms, put_opt, s, sdk_error, Changes, Condition, Fields, Item};
use super::DynamoStore;
use crate::records::invitations::{Invitation, StoredInvitation};
use crate::store::{InvitationStore, StoreError};

fn key(hash: &str) -> Item {
    Item::from([
        ("pk".to_owned(), s(format!("INVITE#{hash}"))),
        ("sk".to_owned(), s("-")),
    ])
}

#[async_trait]
impl InvitationStore for DynamoStore {
    async fn put_invitation(&self, i: Invitation) -> Result<(), StoreError> {
        let mut item = key(&i.token_hash);
        item.insert("email".into(), s(i.email.as_str()));
        item.insert("invited_by".into(), s(i.invited_by.as_str()));
        item.insert("created_at_ms".into(), ms(i.created_at));
        item.insert("expires_at_ms".into(), ms(i.expires_at));
        put_opt(
            &mut item,
            "share_patient",
            i.share.as_ref().map(|x| s(x.patient.as_str())),
        );
        put_opt(
            &mut item,
            "share_role",
            i.share.as_ref().map(|x| s(x.role.as_str())),
        );
        put_opt(
            &mut item,
            "share_expires_ms",
            i.share.as_ref().and_then(|x| x.expires_at).map(ms),
        );
        item.insert("used".into(), AttributeValue::Bool(i.used));
        self.client()
            .put_item()
            .table_name(&self.tables().aux)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| sdk_error("PutItem invitation", e))?;
        Ok(())
    }

    async fn get_invitation(&self, token_hash: &str) -> Result<Option<Invitation>, StoreError> {
        let Some(item) = self.get(&self.tables().aux, key(token_hash)).await? else {
            return Ok(None);
        };
        let f = Fields::new(&item, "invitation");
        StoredInvitation {
            token_hash: token_hash.to_owned(),
            email: f.s("email")?,
            invited_by: f.s("invited_by")?,
            created_at: f.time("created_at_ms")?,
            expires_at: f.time("expires_at_ms")?,
            share_patient: f.opt_s("share_patient")?,
            share_role: f.opt_s("share_role")?,
            share_expires: f.opt_time("share_expires_ms")?,
            used: matches!(item.get("used"), Some(AttributeValue::Bool(true))),
        }
        .parse()
        .map(Some)
        .map_err(StoreError::Corrupt)
    }

    async fn use_invitation(&self, token_hash: &str) -> Result<bool, StoreError> {
        Ok(self
            .update_if(
                &self.tables().aux,
                key(token_hash),
                Changes::default().set("used", AttributeValue::Bool(true)),
                Condition::new("attribute_exists(pk) AND #u = :f")
                    .name("#u", "used")
                    .value(":f", AttributeValue::Bool(false)),
            )
            .await?
            .is_some())
    }
}
