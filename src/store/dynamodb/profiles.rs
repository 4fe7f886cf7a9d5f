//! Profiles in the aux table: one item per user, pk `PROFILE#<user>`, sk `-`.

use async_trait::async_trait;

use super::item::{put_opt, s, sdk_error, Fields, Item};
use super::DynamoStore;
use crate::domain::{Profile, UserId};
use crate::store::{ProfileStore, StoreError};

fn key(user: &UserId) -> Item {
    Item::from([
        ("pk".to_owned(), s(format!("PROFILE#{}", user.as_str()))),
        ("sk".to_owned(), s("-")),
    ])
}

#[async_trait]
impl ProfileStore for DynamoStore {
    async fn get_profile(&self, user: &UserId) -> Result<Option<Profile>, StoreError> {
        let Some(item) = self.get(&self.tables().aux, key(user)).await? else {
            return Ok(None);
        };
        let f = Fields::new(&item, "profile");
        Profile::from_parts(
            f.s("timezone")?,
            f.i64("target_low")?,
            f.i64("target_high")?,
            f.s("display_unit")?,
            f.opt_s("diabetes_type")?,
        )
        .map(Some)
        .map_err(|e| StoreError::Corrupt(format!("profile of {user}: {e}")))
    }

    async fn put_profile(&self, user: &UserId, profile: &Profile) -> Result<(), StoreError> {
        use super::item::n;
        let mut item = key(user);
        item.insert("timezone".into(), s(profile.timezone.name()));
        item.insert("target_low".into(), n(profile.target.low()));
        item.insert("target_high".into(), n(profile.target.high()));
        item.insert("display_unit".into(), s(profile.display_unit.as_str()));
        put_opt(
            &mut item,
            "diabetes_type",
            profile.diabetes_type.map(|t| s(t.as_str())),
        );
        item.insert(
            "updated_at_ms".into(),
            n(chrono::Utc::now().timestamp_millis()),
        );
        self.client()
            .put_item()
            .table_name(&self.tables().aux)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem profile", e))?;
        Ok(())
    }
}
