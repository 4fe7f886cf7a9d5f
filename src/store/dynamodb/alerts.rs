//! Alerting in the aux table. Settings: pk `ALERTSETTINGS#<user>`, sk `-`, the
//! settings as JSON. Alerts: pk `ALERTS#<user>`, sk the alert id (time-ordered,
//! so a Query newest first is the history, and a time window is a key range).
//! One open alert per (user, type): a marker item pk `ALERTOPEN#<user>`, sk the
//! type, put (`attribute_not_exists`) in the same `TransactWriteItems` as the
//! alert and its event, and deleted by the transaction that resolves it.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};
use uuid::Uuid;

use super::item::{ms, n, put_opt, s, sdk_error, Fields, Item};
use super::{outbox, DynamoStore};
use crate::domain::{AlertSettings, AlertSettingsInput, UserId};
use crate::records::alerts::{first_id_at, Alert, AlertQuery, AlertStatus, AlertType};
use crate::records::events::Event;
use crate::store::{AlertStore, StoreError};

fn settings_key(user: &UserId) -> Item {
    Item::from([
        (
            "pk".to_owned(),
            s(format!("ALERTSETTINGS#{}", user.as_str())),
        ),
        ("sk".to_owned(), s("-")),
    ])
}

fn alerts_pk(user: &str) -> String {
    format!("ALERTS#{user}")
}

fn alert_key(user: &str, id: Uuid) -> Item {
    Item::from([
        ("pk".to_owned(), s(alerts_pk(user))),
        ("sk".to_owned(), s(id.to_string())),
    ])
}

fn open_key(user: &str, alert_type: AlertType) -> Item {
    Item::from([
        ("pk".to_owned(), s(format!("ALERTOPEN#{user}"))),
        ("sk".to_owned(), s(alert_type.as_str())),
    ])
}

fn to_item(alert: &Alert) -> Item {
    let mut item = alert_key(&alert.user_id, alert.id);
    item.insert("user_id".into(), s(&alert.user_id));
    item.insert("alert_type".into(), s(alert.alert_type.as_str()));
    item.insert("status".into(), s(alert.status.as_str()));
    put_opt(&mut item, "glucose_value", alert.glucose_value.map(n));
    put_opt(&mut item, "reading_ts_ms", alert.reading_timestamp.map(ms));
    item.insert("raised_at_ms".into(), ms(alert.raised_at));
    put_opt(
        &mut item,
        "acknowledged_at_ms",
        alert.acknowledged_at.map(ms),
    );
    put_opt(
        &mut item,
        "acknowledged_by",
        alert.acknowledged_by.as_deref().map(s),
    );
    put_opt(&mut item, "resolved_at_ms", alert.resolved_at.map(ms));
    item.insert("message".into(), s(&alert.message));
    item
}

fn from_item(item: &Item) -> Result<Alert, StoreError> {
    let f = Fields::new(item, "alert");
    let kind = f.s("alert_type")?;
    let status = f.s("status")?;
    Ok(Alert {
        id: Uuid::parse_str(f.s("sk")?).map_err(|e| f.corrupt("sk", e))?,
        user_id: f.s("user_id")?.to_owned(),
        alert_type: AlertType::parse(kind).ok_or_else(|| f.corrupt("alert_type", kind))?,
        status: AlertStatus::parse(status).ok_or_else(|| f.corrupt("status", status))?,
        glucose_value: f
            .opt_i64("glucose_value")?
            .map(|v| u16::try_from(v).map_err(|e| f.corrupt("glucose_value", e)))
            .transpose()?,
        reading_timestamp: f.opt_time("reading_ts_ms")?,
        raised_at: f.time("raised_at_ms")?,
        acknowledged_at: f.opt_time("acknowledged_at_ms")?,
        acknowledged_by: f.opt_s("acknowledged_by")?.map(str::to_owned),
        resolved_at: f.opt_time("resolved_at_ms")?,
        message: f.s("message")?.to_owned(),
    })
}

fn put(table: &str, item: Item, condition: &str) -> Result<Put, StoreError> {
    Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(condition)
        .build()
        .map_err(|e| StoreError::Internal(format!("alert put: {e}")))
}

#[async_trait]
impl AlertStore for DynamoStore {
    async fn get_alert_settings(&self, user: &UserId) -> Result<Option<AlertSettings>, StoreError> {
        let Some(item) = self.get(&self.tables().aux, settings_key(user)).await? else {
            return Ok(None);
        };
        let f = Fields::new(&item, "alert settings");
        let input: AlertSettingsInput =
            serde_json::from_str(f.s("settings")?).map_err(|e| f.corrupt("settings", e))?;
        AlertSettings::parse(&input).map(Some).map_err(|e| {
            f.corrupt(
                "settings",
                e.first().map(ToString::to_string).unwrap_or_default(),
            )
        })
    }

    async fn put_alert_settings(
        &self,
        user: &UserId,
        settings: AlertSettings,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(&settings.to_input())
            .map_err(|e| StoreError::Internal(format!("alert settings: {e}")))?;
        let mut item = settings_key(user);
        item.insert("settings".into(), s(json));
        item.insert("updated_at_ms".into(), ms(chrono::Utc::now()));
        self.client()
            .put_item()
            .table_name(&self.tables().aux)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem alert settings", e))?;
        Ok(())
    }

    async fn raise_alert(&self, alert: Alert) -> Result<bool, StoreError> {
        let table = self.tables().aux.clone();
        let mut marker = open_key(&alert.user_id, alert.alert_type);
        marker.insert("alert_id".into(), s(alert.id.to_string()));
        let items = vec![
            TransactWriteItem::builder()
                .put(put(&table, marker, "attribute_not_exists(pk)")?)
                .build(),
            TransactWriteItem::builder()
                .put(put(&table, to_item(&alert), "attribute_not_exists(pk)")?)
                .build(),
            outbox::append(&table, &Event::alert_changed(&alert))?,
        ];
        // Cancelled: the marker exists, an alert of the type is open.
        let raised = self
            .transact("TransactWriteItems alert raise", items)
            .await?;
        if raised {
            self.wrote_outbox();
        }
        Ok(raised)
    }

    async fn transition_alert(&self, from: AlertStatus, next: Alert) -> Result<bool, StoreError> {
        let table = self.tables().aux.clone();
        let replace = Put::builder()
            .table_name(&table)
            .set_item(Some(to_item(&next)))
            .condition_expression("#st = :from")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":from", s(from.as_str()))
            .build()
            .map_err(|e| StoreError::Internal(format!("alert put: {e}")))?;
        let mut items = vec![TransactWriteItem::builder().put(replace).build()];
        if next.status == AlertStatus::Resolved {
            let delete = Delete::builder()
                .table_name(&table)
                .set_key(Some(open_key(&next.user_id, next.alert_type)))
                .condition_expression("attribute_not_exists(pk) OR alert_id = :id")
                .expression_attribute_values(":id", s(next.id.to_string()))
                .build()
                .map_err(|e| StoreError::Internal(format!("alert marker delete: {e}")))?;
            items.push(TransactWriteItem::builder().delete(delete).build());
        }
        items.push(outbox::append(&table, &Event::alert_changed(&next))?);
        let changed = self
            .transact("TransactWriteItems alert change", items)
            .await?;
        if changed {
            self.wrote_outbox();
        }
        Ok(changed)
    }

    async fn get_alert(&self, user: &UserId, id: Uuid) -> Result<Option<Alert>, StoreError> {
        self.get(&self.tables().aux, alert_key(user.as_str(), id))
            .await?
            .as_ref()
            .map(from_item)
            .transpose()
    }

    async fn open_alerts(&self, user: &UserId) -> Result<Vec<Alert>, StoreError> {
        let markers = self
            .client()
            .query()
            .table_name(&self.tables().aux)
            .key_condition_expression("pk = :p")
            .expression_attribute_values(":p", s(format!("ALERTOPEN#{}", user.as_str())))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("Query open alerts", e))?;
        let mut open = Vec::new();
        for marker in markers.items() {
            let id = Fields::new(marker, "open alert marker").uuid("alert_id")?;
            if let Some(alert) = self.get_alert(user, id).await? {
                if alert.status.is_open() {
                    open.push(alert);
                }
            }
        }
        Ok(open)
    }

    async fn list_alerts(&self, query: AlertQuery) -> Result<Vec<Alert>, StoreError> {
        // The sort key is the time-ordered id: newest first from below the
        // window's end (or the cursor) down to its start; the status is a
        // filter, so pages are followed until the limit is met.
        let lower = query.from.map(|t| first_id_at(t.timestamp_millis()));
        let mut upper = query.until.map(|t| first_id_at(t.timestamp_millis()));
        if let Some(before) = query.before {
            upper = Some(upper.map_or(before, |u| u.min(before)));
        }
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        'pages: while out.len() < query.limit {
            let mut q = self
                .client()
                .query()
                .table_name(&self.tables().aux)
                .expression_attribute_values(":p", s(alerts_pk(query.user_id.as_str())))
                .scan_index_forward(false)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .limit(i32::try_from(query.limit.max(25)).unwrap_or(i32::MAX));
            q = match upper {
                Some(u) => q
                    .key_condition_expression("pk = :p AND sk < :hi")
                    .expression_attribute_values(":hi", s(u.to_string())),
                None => q.key_condition_expression("pk = :p"),
            };
            if let Some(status) = query.status {
                q = q
                    .filter_expression("#st = :st")
                    .expression_attribute_names("#st", "status")
                    .expression_attribute_values(":st", s(status.as_str()));
            }
            let page = q.send().await.map_err(|e| sdk_error("Query alerts", e))?;
            for item in page.items() {
                let alert = from_item(item)?;
                if lower.is_some_and(|lo| alert.id < lo) {
                    break 'pages;
                }
                if out.len() < query.limit {
                    out.push(alert);
                }
            }
            match page.last_evaluated_key() {
                Some(last) if !last.is_empty() => start = Some(last.clone()),
                _ => break,
            }
        }
        Ok(out)
    }
}
