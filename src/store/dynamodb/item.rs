//! Items as attribute maps: typed getters that turn a missing or malformed
//! attribute into `StoreError::Corrupt`, builders for the common value kinds,
//! and the mapping of SDK errors onto `StoreError`.

use std::collections::HashMap;
use std::fmt::Debug;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, TimeZone, Utc};

use crate::store::StoreError;

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn b(v: impl Into<Vec<u8>>) -> AttributeValue {
    AttributeValue::B(Blob::new(v.into()))
}

pub(super) fn ms(t: DateTime<Utc>) -> AttributeValue {
    n(t.timestamp_millis())
}

/// Puts `value` under `name` when present; absent attributes stand for None.
pub(super) fn put_opt(item: &mut Item, name: &str, value: Option<AttributeValue>) {
    if let Some(value) = value {
        item.insert(name.to_owned(), value);
    }
}

/// Read access to one item, naming `what` it is in corruption messages.
pub(super) struct Fields<'a> {
    item: &'a Item,
    what: &'static str,
}

impl<'a> Fields<'a> {
    pub(super) fn new(item: &'a Item, what: &'static str) -> Self {
        Self { item, what }
    }

    pub(super) fn corrupt(&self, name: &str, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt(format!("{} attribute {name}: {detail}", self.what))
    }

    pub(super) fn opt_s(&self, name: &str) -> Result<Option<&'a str>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v.as_str())),
            Some(_) => Err(self.corrupt(name, "not a string")),
        }
    }

    pub(super) fn s(&self, name: &str) -> Result<&'a str, StoreError> {
        self.opt_s(name)?
            .ok_or_else(|| self.corrupt(name, "missing"))
    }

    pub(super) fn opt_i64(&self, name: &str) -> Result<Option<i64>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(v)) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|e| self.corrupt(name, e)),
            Some(_) => Err(self.corrupt(name, "not a number")),
        }
    }

    pub(super) fn i64(&self, name: &str) -> Result<i64, StoreError> {
        self.opt_i64(name)?
            .ok_or_else(|| self.corrupt(name, "missing"))
    }

    pub(super) fn opt_f64(&self, name: &str) -> Result<Option<f64>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(v)) => v
                .parse::<f64>()
                .map(Some)
                .map_err(|e| self.corrupt(name, e)),
            Some(_) => Err(self.corrupt(name, "not a number")),
        }
    }

    pub(super) fn u64(&self, name: &str) -> Result<u64, StoreError> {
        u64::try_from(self.i64(name)?).map_err(|e| self.corrupt(name, e))
    }

    pub(super) fn opt_bytes(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::B(v)) => Ok(Some(v.as_ref().to_vec())),
            Some(_) => Err(self.corrupt(name, "not binary")),
        }
    }

    pub(super) fn opt_time(&self, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.opt_i64(name)?
            .map(|v| {
                Utc.timestamp_millis_opt(v)
                    .single()
                    .ok_or_else(|| self.corrupt(name, "time out of range"))
            })
            .transpose()
    }

    pub(super) fn time(&self, name: &str) -> Result<DateTime<Utc>, StoreError> {
        self.opt_time(name)?
            .ok_or_else(|| self.corrupt(name, "missing"))
    }

    pub(super) fn uuid(&self, name: &str) -> Result<uuid::Uuid, StoreError> {
        uuid::Uuid::parse_str(self.s(name)?).map_err(|e| self.corrupt(name, e))
    }
}

/// Error codes after which a retry later may succeed.
const PASSING: &[&str] = &[
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
    "LimitExceededException",
];

/// Throttling and transport failures are `Unavailable`; the rest `Internal`.
pub(super) fn sdk_error<E, R>(op: &str, e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + Debug + std::error::Error + 'static,
    R: Debug + 'static,
{
    match &e {
        SdkError::ServiceError(service) => {
            let err = service.err();
            let code = err.code().unwrap_or("unknown");
            let message = format!("dynamodb {op}: {code}: {}", err.message().unwrap_or(""));
            if PASSING.contains(&code) {
                StoreError::Unavailable(message)
            } else {
                StoreError::Internal(message)
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(format!("dynamodb {op}: {}", error_chain(&e)))
        }
        _ => StoreError::Internal(format!("dynamodb {op}: {}", error_chain(&e))),
    }
}

/// The whole source chain, since an SdkError's own Display is only its kind.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Whether a service error is a failed condition (of a single-item write).
pub(super) fn is_condition_failed<E, R>(e: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|err| err.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

/// Whether a transaction was cancelled by a failed condition (as opposed to a
/// conflict or throttling, which `sdk_error` maps).
pub(super) fn is_transaction_cancelled<E, R>(e: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|err| err.code())
        .is_some_and(|code| code == "TransactionCanceledException")
}

/// The attributes an update sets and removes, turned into an update expression
/// with placeholders (`#u0`, `:u0`, ...) that cannot clash with reserved words
/// or with a condition's own placeholders.
#[derive(Default, Clone)]
pub(super) struct Changes {
    sets: Vec<(String, AttributeValue)>,
    removes: Vec<String>,
}

/// An expression and the placeholders it uses.
pub(super) struct Expression {
    pub text: String,
    pub names: HashMap<String, String>,
    pub values: HashMap<String, AttributeValue>,
}

impl Changes {
    pub(super) fn set(mut self, name: &str, value: AttributeValue) -> Self {
        self.sets.push((name.to_owned(), value));
        self
    }

    /// Sets `name` when `value` is present, removes it otherwise.
    pub(super) fn set_opt(self, name: &str, value: Option<AttributeValue>) -> Self {
        match value {
            Some(value) => self.set(name, value),
            None => self.remove(name),
        }
    }

    pub(super) fn remove(mut self, name: &str) -> Self {
        self.removes.push(name.to_owned());
        self
    }

    pub(super) fn expression(self) -> Expression {
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        let mut sets = Vec::new();
        for (i, (name, value)) in self.sets.into_iter().enumerate() {
            names.insert(format!("#u{i}"), name);
            values.insert(format!(":u{i}"), value);
            sets.push(format!("#u{i} = :u{i}"));
        }
        let mut removes = Vec::new();
        for (i, name) in self.removes.into_iter().enumerate() {
            names.insert(format!("#r{i}"), name);
            removes.push(format!("#r{i}"));
        }
        let mut text = String::new();
        if !sets.is_empty() {
            text.push_str("SET ");
            text.push_str(&sets.join(", "));
        }
        if !removes.is_empty() {
            text.push_str(" REMOVE ");
            text.push_str(&removes.join(", "));
        }
        Expression {
            text,
            names,
            values,
        }
    }
}

/// A condition with its own placeholders (use `#c...` and `:c...` names).
#[derive(Default)]
pub(super) struct Condition {
    pub text: String,
    pub names: HashMap<String, String>,
    pub values: HashMap<String, AttributeValue>,
}

impl Condition {
    pub(super) fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            ..Self::default()
        }
    }

    pub(super) fn name(mut self, placeholder: &str, name: &str) -> Self {
        self.names.insert(placeholder.to_owned(), name.to_owned());
        self
    }

    pub(super) fn value(mut self, placeholder: &str, value: AttributeValue) -> Self {
        self.values.insert(placeholder.to_owned(), value);
        self
    }
}

/// An `Update` transaction item: `changes` to the item at `key`, if `condition`.
pub(super) fn transact_update(
    table: &str,
    key: Item,
    changes: Changes,
    condition: Condition,
) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, StoreError> {
    let update = changes.expression();
    let mut names = update.names;
    names.extend(condition.names);
    let mut values = update.values;
    values.extend(condition.values);
    let built = aws_sdk_dynamodb::types::Update::builder()
        .table_name(table)
        .set_key(Some(key))
        .update_expression(update.text)
        .set_condition_expression((!condition.text.is_empty()).then_some(condition.text))
        .set_expression_attribute_names((!names.is_empty()).then_some(names))
        .set_expression_attribute_values((!values.is_empty()).then_some(values))
        .build()
        .map_err(|e| StoreError::Internal(format!("transaction update: {e}")))?;
    Ok(aws_sdk_dynamodb::types::TransactWriteItem::builder()
        .update(built)
        .build())
}

impl super::DynamoStore {
    /// Applies `changes` to the item at `key` if `condition` holds; returns the
    /// item as it is afterwards, or None when the condition failed.
    pub(super) async fn update_if(
        &self,
        table: &str,
        key: Item,
        changes: Changes,
        condition: Condition,
    ) -> Result<Option<Item>, StoreError> {
        let update = changes.expression();
        let mut names = update.names;
        names.extend(condition.names);
        let mut values = update.values;
        values.extend(condition.values);
        let result = self
            .client()
            .update_item()
            .table_name(table)
            .set_key(Some(key))
            .update_expression(update.text)
            .set_condition_expression((!condition.text.is_empty()).then_some(condition.text))
            .set_expression_attribute_names((!names.is_empty()).then_some(names))
            .set_expression_attribute_values((!values.is_empty()).then_some(values))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => Ok(Some(out.attributes().cloned().unwrap_or_default())),
            Err(e) if is_condition_failed(&e) => Ok(None),
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }

    /// The item at `key` (strongly consistent).
    pub(super) async fn get(&self, table: &str, key: Item) -> Result<Option<Item>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(out.item().cloned())
    }

    /// Commits a transaction: Ok(true), or Ok(false) when it was cancelled (a
    /// condition failed or another transaction conflicted).
    pub(super) async fn transact(
        &self,
        what: &str,
        items: Vec<aws_sdk_dynamodb::types::TransactWriteItem>,
    ) -> Result<bool, StoreError> {
        match self
            .client()
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_transaction_cancelled(&e) => Ok(false),
            Err(e) => Err(sdk_error(what, e)),
        }
    }
}
