//! PostgreSQL backend (STORAGE_BACKEND=postgres). PLACEHOLDER: being written.

use std::sync::Arc;

use crate::store::StoreError;

#[derive(Clone)]
pub struct PostgresStore {
    _inner: Arc<()>,
}

impl PostgresStore {
    pub async fn connect(_url: &str, _max_connections: u32) -> Result<Self, StoreError> {
        Err(StoreError::Unavailable(
            "postgres store not written yet".into(),
        ))
    }
}
