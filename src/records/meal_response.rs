//! A meal's glucose response as stored (issue 20): the finished answer of
//! `analytics::meal_response` with the validity key it was computed under, so
//! that a list of meals with their responses reads them instead of the trace.
//! `store::meal_responses` decides the key and when a stored one may be served.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::analytics::MealResponse;
use crate::domain::UserId;

/// One meal's stored response. Only answers that no longer depend on the
/// clock (status not `pending`) are stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMealResponse {
    pub user_id: UserId,
    pub meal_id: Uuid,
    pub response: MealResponse,
    /// What the response was computed from, as a digest
    /// (`store::meal_responses::validity_key`): served only while equal.
    pub key: String,
    pub computed_at: DateTime<Utc>,
}

/// The response as the backends keep it: its JSON (the contract's names).
pub fn response_to_json(response: &MealResponse) -> Result<String, serde_json::Error> {
    serde_json::to_string(response)
}

/// A response the backends kept, read back.
pub fn response_from_json(raw: &str) -> Result<MealResponse, serde_json::Error> {
    serde_json::from_str(raw)
}
