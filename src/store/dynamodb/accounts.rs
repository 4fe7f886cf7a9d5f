//! Accounts in the aux table. An account is `ACCOUNT#<id>`; its email is
//! claimed by a uniqueness item `EMAIL#<email key>` (holding the id) written in
//! the same transaction, each conditional on not existing, so two sign-ups with
//! one email cannot both commit. A refresh family is `RFAMILY#<uuid>` (its
//! `revoked` flag); a refresh token is `REFRESH#<sha-256>` (family, owner,
//! `used`, expiry). All with sk `-`.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{ConditionCheck, Put, TransactWriteItem};
use chrono::{DateTime, Utc};

use super::item::{ms, s, sdk_error, transact_update, Changes, Condition, Fields, Item};
use super::DynamoStore;
use crate::domain::{Email, UserId};
use crate::records::accounts::{roles_to_text, Account, AccountCreated, NewRefreshToken, Rotation};
use crate::store::{AccountStore, StoreError};

fn key(pk: String) -> Item {
    Item::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s("-"))])
}

fn account_key(id: &str) -> Item {
    key(format!("ACCOUNT#{id}"))
}

fn email_key(email: &Email) -> Item {
    key(format!("EMAIL#{}", email.key()))
}

fn family_key(family: uuid::Uuid) -> Item {
    key(format!("RFAMILY#{family}"))
}

fn token_key(hash: &str) -> Item {
    key(format!("REFRESH#{hash}"))
}

fn boolean(v: bool) -> aws_sdk_dynamodb::types::AttributeValue {
    aws_sdk_dynamodb::types::AttributeValue::Bool(v)
}

fn flag(item: &Item, name: &str) -> bool {
    matches!(
        item.get(name),
        Some(aws_sdk_dynamodb::types::AttributeValue::Bool(true))
    )
}

fn put_new(table: &str, item: Item) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(|e| StoreError::Internal(format!("account put: {e}")))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

fn token_item(token: &NewRefreshToken, family: uuid::Uuid) -> Item {
    let mut item = token_key(&token.hash);
    item.insert("family".into(), s(family.to_string()));
    item.insert("user_id".into(), s(token.account.as_str()));
    item.insert("used".into(), boolean(false));
    item.insert("issued_at_ms".into(), ms(token.issued_at));
    item.insert("expires_at_ms".into(), ms(token.expires_at));
    item
}

fn account_from(item: &Item) -> Result<Account, StoreError> {
    let f = Fields::new(item, "account");
    Account::from_stored(
        f.s("user_id")?,
        f.s("email")?,
        f.s("password_hash")?.to_owned(),
        f.s("roles")?,
        f.opt_s("full_name")?.map(str::to_owned),
        flag(item, "email_verified"),
        f.time("created_at_ms")?,
    )
    .map_err(StoreError::Corrupt)
}

impl DynamoStore {
    async fn revoke_family(&self, family: uuid::Uuid) -> Result<(), StoreError> {
        self.update_if(
            &self.tables().aux,
            family_key(family),
            Changes::default().set("revoked", boolean(true)),
            Condition::new("attribute_exists(pk)"),
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl AccountStore for DynamoStore {
    async fn create_account(&self, a: Account) -> Result<AccountCreated, StoreError> {
        let table = &self.tables().aux;
        let mut item = account_key(a.id.as_str());
        item.insert("user_id".into(), s(a.id.as_str()));
        item.insert("email".into(), s(a.email.as_str()));
        item.insert("password_hash".into(), s(a.password_hash.clone()));
        item.insert("roles".into(), s(roles_to_text(a.roles)));
        if let Some(name) = &a.full_name {
            item.insert("full_name".into(), s(name.clone()));
        }
        item.insert("email_verified".into(), boolean(a.email_verified));
        item.insert("created_at_ms".into(), ms(a.created_at));
        let mut claim = email_key(&a.email);
        claim.insert("user_id".into(), s(a.id.as_str()));
        let committed = self
            .transact(
                "TransactWriteItems account",
                vec![put_new(table, item)?, put_new(table, claim)?],
            )
            .await?;
        Ok(if committed {
            AccountCreated::Created
        } else {
            AccountCreated::Taken
        })
    }

    async fn get_account(&self, id: &UserId) -> Result<Option<Account>, StoreError> {
        self.get(&self.tables().aux, account_key(id.as_str()))
            .await?
            .as_ref()
            .map(account_from)
            .transpose()
    }

    async fn account_by_email(&self, email: &Email) -> Result<Option<Account>, StoreError> {
        let Some(claim) = self.get(&self.tables().aux, email_key(email)).await? else {
            return Ok(None);
        };
        let id = Fields::new(&claim, "email claim").s("user_id")?.to_owned();
        self.get(&self.tables().aux, account_key(&id))
            .await?
            .as_ref()
            .map(account_from)
            .transpose()
    }

    async fn start_refresh_family(&self, first: NewRefreshToken) -> Result<uuid::Uuid, StoreError> {
        let table = &self.tables().aux;
        let family = uuid::Uuid::new_v4();
        let mut family_item = family_key(family);
        family_item.insert("user_id".into(), s(first.account.as_str()));
        family_item.insert("revoked".into(), boolean(false));
        family_item.insert("created_at_ms".into(), ms(first.issued_at));
        let committed = self
            .transact(
                "TransactWriteItems refresh family",
                vec![
                    put_new(table, family_item)?,
                    put_new(table, token_item(&first, family))?,
                ],
            )
            .await?;
        if !committed {
            return Err(StoreError::Unavailable(
                "refresh family: transaction cancelled".into(),
            ));
        }
        Ok(family)
    }

    async fn rotate_refresh_token(
        &self,
        presented: &str,
        next: NewRefreshToken,
    ) -> Result<Rotation, StoreError> {
        let table = self.tables().aux.clone();
        let Some(token) = self.get(&table, token_key(presented)).await? else {
            return Ok(Rotation::Unknown);
        };
        let f = Fields::new(&token, "refresh token");
        let family = f.uuid("family")?;
        let account = UserId::parse(f.s("user_id")?)
            .map_err(|e| StoreError::Corrupt(format!("refresh token owner: {e}")))?;
        let expires_at = f.time("expires_at_ms")?;
        let family_item = self.get(&table, family_key(family)).await?;
        if family_item.as_ref().is_none_or(|i| flag(i, "revoked")) {
            return Ok(Rotation::Revoked);
        }
        if flag(&token, "used") {
            self.revoke_family(family).await?;
            return Ok(Rotation::Reused { account, family });
        }
        if expires_at <= next.issued_at {
            return Ok(Rotation::Expired);
        }
        let next = NewRefreshToken {
            account: account.clone(),
            ..next
        };
        let use_token = transact_update(
            &table,
            token_key(presented),
            Changes::default().set("used", boolean(true)),
            Condition::new("#cu = :cf")
                .name("#cu", "used")
                .value(":cf", boolean(false)),
        )?;
        let family_live = ConditionCheck::builder()
            .table_name(&table)
            .set_key(Some(family_key(family)))
            .condition_expression("#cr = :cf")
            .expression_attribute_names("#cr", "revoked")
            .expression_attribute_values(":cf", boolean(false))
            .build()
            .map_err(|e| StoreError::Internal(format!("refresh family check: {e}")))?;
        let committed = self
            .transact(
                "TransactWriteItems refresh rotation",
                vec![
                    use_token,
                    TransactWriteItem::builder()
                        .condition_check(family_live)
                        .build(),
                    put_new(&table, token_item(&next, family))?,
                ],
            )
            .await?;
        if committed {
            return Ok(Rotation::Rotated { account, family });
        }
        // Someone used the token (or revoked the family) in between: as if
        // this presentation came second.
        let revoked = self
            .get(&table, family_key(family))
            .await?
            .as_ref()
            .is_none_or(|i| flag(i, "revoked"));
        if revoked {
            return Ok(Rotation::Revoked);
        }
        self.revoke_family(family).await?;
        Ok(Rotation::Reused { account, family })
    }

    async fn disable_account(&self, id: &UserId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let Some(account) = self
            .get(&self.tables().aux, account_key(id.as_str()))
            .await?
        else {
            return Ok(false);
        };
        if account.contains_key("disabled_at_ms") {
            return Ok(true);
        }
        self.update_if(
            &self.tables().aux,
            account_key(id.as_str()),
            Changes::default().set("disabled_at_ms", ms(at)),
            Condition::new("attribute_exists(pk)"),
        )
        .await?;
        Ok(true)
    }

    async fn account_disabled(&self, id: &UserId) -> Result<bool, StoreError> {
        Ok(self
            .get(&self.tables().aux, account_key(id.as_str()))
            .await?
            .is_some_and(|item| item.contains_key("disabled_at_ms")))
    }

    async fn enable_account(&self, id: &UserId) -> Result<bool, StoreError> {
        Ok(self
            .update_if(
                &self.tables().aux,
                account_key(id.as_str()),
                Changes::default().remove("disabled_at_ms"),
                Condition::new("attribute_exists(pk)"),
            )
            .await?
            .is_some())
    }

    async fn set_password(&self, id: &UserId, password_hash: &str) -> Result<bool, StoreError> {
        let found = self
            .update_if(
                &self.tables().aux,
                account_key(id.as_str()),
                Changes::default().set("password_hash", s(password_hash)),
                Condition::new("attribute_exists(pk)"),
            )
            .await?
            .is_some();
        if !found {
            return Ok(false);
        }
        // No index of an account's families: a filtered scan (resets are rare).
        let mut start = None;
        loop {
            let page = self
                .client()
                .scan()
                .table_name(&self.tables().aux)
                .filter_expression("begins_with(pk, :p) AND user_id = :u AND revoked = :f")
                .expression_attribute_values(":p", s("RFAMILY#"))
                .expression_attribute_values(":u", s(id.as_str()))
                .expression_attribute_values(":f", boolean(false))
                .projection_expression("pk")
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Scan refresh families", e))?;
            for item in page.items() {
                let pk = Fields::new(item, "refresh family").s("pk")?;
                let family = pk
                    .strip_prefix("RFAMILY#")
                    .and_then(|f| uuid::Uuid::parse_str(f).ok())
                    .ok_or_else(|| StoreError::Corrupt(format!("refresh family key {pk:?}")))?;
                self.revoke_family(family).await?;
            }
            match page.last_evaluated_key() {
                Some(last) if !last.is_empty() => start = Some(last.clone()),
                _ => break,
            }
        }
        Ok(true)
    }

    async fn set_email_verified(&self, id: &UserId) -> Result<bool, StoreError> {
        Ok(self
            .update_if(
                &self.tables().aux,
                account_key(id.as_str()),
                Changes::default().set("email_verified", boolean(true)),
                Condition::new("attribute_exists(pk)"),
            )
            .await?
            .is_some())
    }

    async fn revoke_refresh_family(&self, presented: &str) -> Result<bool, StoreError> {
        let Some(token) = self.get(&self.tables().aux, token_key(presented)).await? else {
            return Ok(false);
        };
        let family = Fields::new(&token, "refresh token").uuid("family")?;
        self.revoke_family(family).await?;
        Ok(true)
    }
}
