//! Single-use account tokens (password reset, email verification) in the aux
//! table: `ATOKEN#<sha-256 of the token>`, sk `-`. "Use" is an update
//! conditional on `used = false`.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::item::{ms, s, sdk_error, Changes, Condition, Fields, Item};
use super::DynamoStore;
use crate::records::account_tokens::AccountToken;
use crate::store::{AccountTokenStore, StoreError};

fn key(hash: &str) -> Item {
    Item::from([
        ("pk".to_owned(), s(format!("ATOKEN#{hash}"))),
        ("sk".to_owned(), s("-")),
    ])
}

#[async_trait]
impl AccountTokenStore for DynamoStore {
    async fn put_account_token(&self, t: AccountToken) -> Result<(), StoreError> {
        let mut item = key(&t.token_hash);
        item.insert("purpose".into(), s(t.purpose.as_str()));
        item.insert("user_id".into(), s(t.account.as_str()));
        item.insert("created_at_ms".into(), ms(t.created_at));
        item.insert("expires_at_ms".into(), ms(t.expires_at));
        item.insert("used".into(), AttributeValue::Bool(t.used));
        self.client()
            .put_item()
            .table_name(&self.tables().aux)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| sdk_error("PutItem account token", e))?;
        Ok(())
    }

    async fn get_account_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<AccountToken>, StoreError> {
        let Some(item) = self.get(&self.tables().aux, key(token_hash)).await? else {
            return Ok(None);
        };
        let f = Fields::new(&item, "account token");
        AccountToken::from_stored(
            token_hash.to_owned(),
            f.s("purpose")?,
            f.s("user_id")?,
            f.time("created_at_ms")?,
            f.time("expires_at_ms")?,
            matches!(item.get("used"), Some(AttributeValue::Bool(true))),
        )
        .map(Some)
        .map_err(StoreError::Corrupt)
    }

    async fn use_account_token(&self, token_hash: &str) -> Result<bool, StoreError> {
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
