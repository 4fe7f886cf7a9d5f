//! The domain model of a glucose reading: types that can only hold valid values.
//!
//! Nothing here knows about HTTP, databases or Dexcom's wire format. Raw input is
//! parsed into these types once, at the edges (see `pipeline::wire`, `store::*`).

mod account;
mod alert_settings;
mod device;
mod error;
mod glucose;
pub mod journal;
mod profile;
mod reading;
mod time;
mod trend;
mod user_id;

pub use account::{
    breached_list_len, is_breached, preload_breached_list, Email, Password, PasswordAttempt,
    MAX_EMAIL_LEN, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS,
};
pub use alert_settings::{AlertSettings, AlertSettingsInput};
pub use device::DeviceInfo;
pub use error::FieldError;
pub use glucose::{Glucose, GlucoseUnit, MgDl, SensorStatus, MMOL_TO_MG_DL};
pub use journal::{
    Activity, ActivityInput, ActivityType, EntryOrigin, Food, Intensity, Meal, MealInput, MealType,
    OriginInput, SleepInput, SleepSession,
};
pub use profile::{
    target_from_parts, DiabetesType, DisplayUnit, Profile, TargetRange, TimeZoneName,
};
pub use reading::{Reading, ReadingType, Resolution, Source, StoredReading};
pub use time::{ReadingTime, TimePolicy};
pub use trend::{Trend, TrendRate};
pub use user_id::UserId;
