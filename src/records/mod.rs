//! Records the store persists and returns, below the store and every service that
//! uses them: plain data that imports only `domain`, `analytics` (a stored meal
//! response is its `MealResponse`), `digest`, `secret` and each other, so that
//! the store's traits need nothing from the layers above.

pub mod account_tokens;
pub mod accounts;
pub mod alerts;
pub mod audit;
pub mod connections;
pub mod daily;
pub mod events;
pub mod inbox;
pub mod invitations;
pub mod jobs;
pub mod journal;
pub mod meal_response;
pub mod notifications;
pub mod readings;
pub mod roles;
pub mod shares;
pub mod stale;
pub mod tasks;
