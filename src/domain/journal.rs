//! The health journal's values: meals, sleep sessions and activities (contract:
//! "Journal: meals, sleep, activities"). The `*Input` types are the wire form
//! (serde, unknown fields refused); `parse` turns one into a value that can
//! only hold what the contract allows, naming every bad field by its pointer.
//! The parsed values serialize back into the same field names, which is the
//! form the store keeps and the API shows.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{FieldError, ReadingTime, TimePolicy, TimeZoneName};

/// Grams of carbohydrate, protein or fat in one meal: 0–2000.
pub const MAX_GRAMS: f64 = 2000.0;
/// Kilocalories of one meal: 0–20000.
pub const MAX_CALORIES: f64 = 20000.0;
pub const MAX_GLYCEMIC_LOAD: f64 = 500.0;
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
pub const MAX_PHOTO_URL_CHARS: usize = 500;
pub const MAX_FOODS: usize = 100;
pub const MAX_FOOD_NAME_CHARS: usize = 200;
/// Minutes of one activity: 1–1440.
pub const MAX_ACTIVITY_MINUTES: u32 = 1440;
/// Kilocalories burned by one activity (a day of ultra-endurance is ~15000).
pub const MAX_CALORIES_BURNED: f64 = 20000.0;
/// Steps of one activity (at most a day of it: 1440 min × ~250 steps/min).
pub const MAX_STEPS: u32 = 500_000;
pub const HEART_RATE: (u16, u16) = (20, 250);
/// One sleep session lasts at most this long.
pub const MAX_SLEEP_MINUTES: i64 = 24 * 60;
pub const MAX_QUALITY_SCORE: f64 = 10.0;
/// The `source` of an entry that names none.
pub const DEFAULT_SOURCE: &str = "manual";
pub const MAX_EXTERNAL_ID_CHARS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MealType {
    Breakfast,
    Lunch,
    Dinner,
    Snack,
}

impl MealType {
    pub fn as_str(self) -> &'static str {
        match self {
            MealType::Breakfast => "breakfast",
            MealType::Lunch => "lunch",
            MealType::Dinner => "dinner",
            MealType::Snack => "snack",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActivityType {
    Walking,
    Running,
    Cycling,
    Strength,
    Swimming,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Intensity {
    Light,
    Moderate,
    Vigorous,
}

/// Where an entry came from and its id there, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryOrigin {
    pub source: String,
    pub external_id: Option<String>,
}

/// `source` and `external_id` as an input gave them. Every input also takes
/// `user_id` (which must be the path's) and ignores `id`, `created_at` and
/// `updated_at`, so an item read from the API can be sent back.
#[derive(Debug, Default, Clone)]
pub struct OriginInput {
    pub source: Option<String>,
    pub external_id: Option<String>,
}

impl OriginInput {
    pub fn parse(self) -> Result<EntryOrigin, Vec<FieldError>> {
        let mut errors = Vec::new();
        let source = match self.source {
            None => DEFAULT_SOURCE.to_owned(),
            Some(s) => {
                if super::Source::parse(&s).is_err() {
                    errors.push(FieldError::new(
                        "source",
                        "must be 1-32 characters of lowercase letters, digits, '_' or '-'",
                    ));
                }
                s
            }
        };
        if let Some(id) = &self.external_id {
            let n = id.chars().count();
            if n == 0 || n > MAX_EXTERNAL_ID_CHARS || id.chars().any(char::is_control) {
                errors.push(FieldError::new(
                    "external_id",
                    format!("must be 1-{MAX_EXTERNAL_ID_CHARS} characters, no control characters"),
                ));
            }
        }
        if errors.is_empty() {
            Ok(EntryOrigin {
                source,
                external_id: self.external_id,
            })
        } else {
            Err(errors)
        }
    }
}

/// One food of a meal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Food {
    /// 1-200 characters.
    name: String,
    /// 0-2000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    carbs_grams: Option<f64>,
}

impl Food {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn carbs_grams(&self) -> Option<f64> {
        self.carbs_grams
    }
}

/// A meal as clients send it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MealInput {
    /// RFC 3339, required; whole seconds are kept. At most 5 minutes in the future.
    #[schema(value_type = String, format = DateTime, example = "2025-01-14T12:30:00Z")]
    pub timestamp: Option<String>,
    pub meal_type: Option<MealType>,
    /// 0-2000.
    pub carbs_grams: Option<f64>,
    /// 0-2000.
    pub protein_grams: Option<f64>,
    /// 0-2000.
    pub fat_grams: Option<f64>,
    /// 0-20000.
    pub calories: Option<f64>,
    /// 0-500.
    pub glycemic_load: Option<f64>,
    /// At most 2000 characters.
    pub description: Option<String>,
    /// https, at most 500 characters.
    pub photo_url: Option<String>,
    /// At most 100.
    pub foods: Option<Vec<Food>>,
    /// 1-32 of `[a-z0-9_-]`; default `manual`.
    #[schema(pattern = "^[a-z0-9_-]{1,32}$", example = "manual")]
    pub source: Option<String>,
    /// The source's own id: the same (user, kind, source, external_id) again
    /// stores nothing new and answers with the stored item.
    #[schema(max_length = 256)]
    pub external_id: Option<String>,
    /// Optional; when present it must equal the user id in the path.
    pub user_id: Option<String>,
    #[schema(ignore)]
    pub id: Option<IgnoredAny>,
    #[schema(ignore)]
    pub created_at: Option<IgnoredAny>,
    #[schema(ignore)]
    pub updated_at: Option<IgnoredAny>,
}

/// A sleep session as clients send it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SleepInput {
    /// RFC 3339, required.
    #[schema(value_type = String, format = DateTime, example = "2025-01-13T22:30:00Z")]
    pub sleep_start: Option<String>,
    /// RFC 3339, required; after sleep_start, at most 24 h later, at most 5 minutes in the future.
    #[schema(value_type = String, format = DateTime, example = "2025-01-14T06:45:00Z")]
    pub sleep_end: Option<String>,
    /// YYYY-MM-DD: the day the night counts for. Default: the local date of
    /// sleep_end in the profile's time zone; at most one day from it.
    #[schema(value_type = Option<String>, format = Date, example = "2025-01-14")]
    pub date: Option<String>,
    /// Default: end − start − awake_minutes; at most end − start.
    pub duration_minutes: Option<u32>,
    pub deep_sleep_minutes: Option<u32>,
    pub rem_sleep_minutes: Option<u32>,
    pub light_sleep_minutes: Option<u32>,
    pub awake_minutes: Option<u32>,
    /// 0-10.
    pub quality_score: Option<f64>,
    /// 1-32 of `[a-z0-9_-]`; default `manual`.
    #[schema(pattern = "^[a-z0-9_-]{1,32}$", example = "manual")]
    pub source: Option<String>,
    /// The source's own id: the same (user, kind, source, external_id) again
    /// stores nothing new and answers with the stored item.
    #[schema(max_length = 256)]
    pub external_id: Option<String>,
    /// Optional; when present it must equal the user id in the path.
    pub user_id: Option<String>,
    #[schema(ignore)]
    pub id: Option<IgnoredAny>,
    #[schema(ignore)]
    pub created_at: Option<IgnoredAny>,
    #[schema(ignore)]
    pub updated_at: Option<IgnoredAny>,
}

/// An activity as clients send it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivityInput {
    /// RFC 3339 (the start), required.
    #[schema(value_type = String, format = DateTime, example = "2025-01-14T17:00:00Z")]
    pub timestamp: Option<String>,
    /// Required.
    pub activity_type: Option<ActivityType>,
    /// 1-1440, required.
    pub duration_minutes: Option<u32>,
    pub intensity: Option<Intensity>,
    /// 0-20000 kcal.
    pub calories_burned: Option<f64>,
    /// 20-250 beats per minute.
    pub heart_rate_avg: Option<u16>,
    /// 0-500000.
    pub steps: Option<u32>,
    /// 1-32 of `[a-z0-9_-]`; default `manual`.
    #[schema(pattern = "^[a-z0-9_-]{1,32}$", example = "manual")]
    pub source: Option<String>,
    /// The source's own id: the same (user, kind, source, external_id) again
    /// stores nothing new and answers with the stored item.
    #[schema(max_length = 256)]
    pub external_id: Option<String>,
    /// Optional; when present it must equal the user id in the path.
    pub user_id: Option<String>,
    #[schema(ignore)]
    pub id: Option<IgnoredAny>,
    #[schema(ignore)]
    pub created_at: Option<IgnoredAny>,
    #[schema(ignore)]
    pub updated_at: Option<IgnoredAny>,
}

macro_rules! origin_of {
    ($($t:ty),*) => {$(
        impl $t {
            /// `source` and `external_id` as given.
            pub fn origin(&self) -> OriginInput {
                OriginInput {
                    source: self.source.clone(),
                    external_id: self.external_id.clone(),
                }
            }
        }
    )*};
}
origin_of!(MealInput, SleepInput, ActivityInput);

/// A meal: when, what kind, its macronutrients and foods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meal {
    timestamp: DateTime<Utc>,
    meal_type: Option<MealType>,
    carbs_grams: Option<f64>,
    protein_grams: Option<f64>,
    fat_grams: Option<f64>,
    calories: Option<f64>,
    glycemic_load: Option<f64>,
    description: Option<String>,
    photo_url: Option<String>,
    foods: Vec<Food>,
}

/// A night's (or a nap's) sleep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SleepSession {
    sleep_start: DateTime<Utc>,
    sleep_end: DateTime<Utc>,
    date: NaiveDate,
    duration_minutes: u32,
    deep_sleep_minutes: Option<u32>,
    rem_sleep_minutes: Option<u32>,
    light_sleep_minutes: Option<u32>,
    awake_minutes: Option<u32>,
    quality_score: Option<f64>,
}

/// A bout of exercise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    timestamp: DateTime<Utc>,
    activity_type: ActivityType,
    duration_minutes: u32,
    intensity: Option<Intensity>,
    calories_burned: Option<f64>,
    heart_rate_avg: Option<u16>,
    steps: Option<u32>,
}

/// Collects field errors while parsing goes on, so one response lists them all.
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// A required instant: RFC 3339, whole seconds, within the time policy.
    fn time(
        &mut self,
        field: &str,
        raw: Option<&str>,
        policy: &TimePolicy,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let Some(raw) = raw else {
            self.push(field, "is required");
            return None;
        };
        match ReadingTime::parse_rfc3339(raw).and_then(|t| policy.check(t, now)) {
            Ok(t) => Some(t.as_datetime()),
            Err(e) => {
                // The reading rules name `/timestamp`; say which field it was.
                self.0.push(FieldError::new(field, e.message));
                None
            }
        }
    }

    /// An optional amount within `0..=max`.
    fn amount(&mut self, field: &str, v: Option<f64>, max: f64) -> Option<f64> {
        match v {
            Some(x) if !(x.is_finite() && (0.0..=max).contains(&x)) => {
                self.push(field, format!("must be between 0 and {max}"));
                None
            }
            other => other,
        }
    }

    fn text(&mut self, field: &str, v: Option<String>, max: usize) -> Option<String> {
        match v {
            Some(s) if s.chars().count() > max => {
                self.push(field, format!("must be at most {max} characters"));
                None
            }
            other => other,
        }
    }

    /// The user id a body may name: absent, or the one of the path.
    fn user(&mut self, given: Option<&str>, owner: &str) {
        if given.is_some_and(|u| u != owner) {
            self.push("user_id", "does not match the user id in the path");
        }
    }

    fn done<T>(self, value: Option<T>) -> Result<T, Vec<FieldError>> {
        match value {
            Some(v) if self.0.is_empty() => Ok(v),
            _ => Err(self.0),
        }
    }
}

impl Meal {
    pub fn parse(
        input: MealInput,
        owner: &str,
        policy: &TimePolicy,
        now: DateTime<Utc>,
    ) -> Result<Meal, Vec<FieldError>> {
        let mut e = Errors(Vec::new());
        e.user(input.user_id.as_deref(), owner);
        let timestamp = e.time("timestamp", input.timestamp.as_deref(), policy, now);
        let carbs_grams = e.amount("carbs_grams", input.carbs_grams, MAX_GRAMS);
        let protein_grams = e.amount("protein_grams", input.protein_grams, MAX_GRAMS);
        let fat_grams = e.amount("fat_grams", input.fat_grams, MAX_GRAMS);
        let calories = e.amount("calories", input.calories, MAX_CALORIES);
        let glycemic_load = e.amount("glycemic_load", input.glycemic_load, MAX_GLYCEMIC_LOAD);
        let description = e.text("description", input.description, MAX_DESCRIPTION_CHARS);
        let photo_url = match input.photo_url {
            Some(url)
                if url.chars().count() > MAX_PHOTO_URL_CHARS
                    || !url.starts_with("https://")
                    || url.len() <= "https://".len()
                    || url.chars().any(|c| c.is_whitespace() || c.is_control()) =>
            {
                e.push(
                    "photo_url",
                    format!("must be an https:// URL of at most {MAX_PHOTO_URL_CHARS} characters"),
                );
                None
            }
            other => other,
        };
        let foods = input.foods.unwrap_or_default();
        if foods.len() > MAX_FOODS {
            e.push("foods", format!("at most {MAX_FOODS} foods"));
        }
        for (i, food) in foods.iter().enumerate() {
            if food.name.trim().is_empty() || food.name.chars().count() > MAX_FOOD_NAME_CHARS {
                e.push(
                    &format!("/foods/{i}/name"),
                    format!("must be 1-{MAX_FOOD_NAME_CHARS} characters"),
                );
            }
            e.amount(
                &format!("/foods/{i}/carbs_grams"),
                food.carbs_grams,
                MAX_GRAMS,
            );
        }
        let meal = timestamp.map(|timestamp| Meal {
            timestamp,
            meal_type: input.meal_type,
            carbs_grams,
            protein_grams,
            fat_grams,
            calories,
            glycemic_load,
            description,
            photo_url,
            foods,
        });
        e.done(meal)
    }

    pub fn timestamp(&self) -> DateTime<Utc> {
        self.timestamp
    }

    pub fn meal_type(&self) -> Option<MealType> {
        self.meal_type
    }

    pub fn carbs_grams(&self) -> Option<f64> {
        self.carbs_grams
    }

    pub fn calories(&self) -> Option<f64> {
        self.calories
    }

    pub fn foods(&self) -> &[Food] {
        &self.foods
    }
}

impl SleepSession {
    /// `tz` decides the default `date` (the local date of `sleep_end`).
    pub fn parse(
        input: SleepInput,
        owner: &str,
        tz: TimeZoneName,
        policy: &TimePolicy,
        now: DateTime<Utc>,
    ) -> Result<SleepSession, Vec<FieldError>> {
        let mut e = Errors(Vec::new());
        e.user(input.user_id.as_deref(), owner);
        let start = e.time("sleep_start", input.sleep_start.as_deref(), policy, now);
        let end = e.time("sleep_end", input.sleep_end.as_deref(), policy, now);
        let span = match (start, end) {
            (Some(s), Some(t)) if t <= s => {
                e.push("sleep_end", "must be after sleep_start");
                None
            }
            (Some(s), Some(t)) if t - s > Duration::minutes(MAX_SLEEP_MINUTES) => {
                e.push("sleep_end", "a sleep session lasts at most 24 hours");
                None
            }
            (Some(s), Some(t)) => Some((t - s).num_minutes()),
            _ => None,
        };
        let parts = [
            ("deep_sleep_minutes", input.deep_sleep_minutes),
            ("rem_sleep_minutes", input.rem_sleep_minutes),
            ("light_sleep_minutes", input.light_sleep_minutes),
            ("awake_minutes", input.awake_minutes),
        ];
        if let Some(span) = span {
            for (field, v) in parts {
                if v.is_some_and(|m| i64::from(m) > span) {
                    e.push(
                        field,
                        "must not exceed the session (sleep_end − sleep_start)",
                    );
                }
            }
        }
        let duration = match (input.duration_minutes, span) {
            (Some(d), Some(span)) if i64::from(d) > span => {
                e.push(
                    "duration_minutes",
                    "must not exceed the session (sleep_end − sleep_start)",
                );
                None
            }
            (Some(d), _) => Some(d),
            (None, Some(span)) => {
                let awake = i64::from(input.awake_minutes.unwrap_or(0));
                u32::try_from((span - awake).max(0)).ok()
            }
            (None, None) => None,
        };
        let default_date = end.map(|t| tz.date_of(t));
        let date = match input.date.as_deref() {
            None => default_date,
            Some(raw) => match NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
                Ok(date) if default_date.is_some_and(|d| (date - d).num_days().abs() > 1) => {
                    e.push(
                        "date",
                        "must be within one day of the local date of sleep_end",
                    );
                    None
                }
                Ok(date) => Some(date),
                Err(_) => {
                    e.push("date", format!("{raw:?} is not a date (YYYY-MM-DD)"));
                    None
                }
            },
        };
        let quality_score = e.amount("quality_score", input.quality_score, MAX_QUALITY_SCORE);
        let session = (|| {
            Some(SleepSession {
                sleep_start: start?,
                sleep_end: end?,
                date: date?,
                duration_minutes: duration?,
                deep_sleep_minutes: input.deep_sleep_minutes,
                rem_sleep_minutes: input.rem_sleep_minutes,
                light_sleep_minutes: input.light_sleep_minutes,
                awake_minutes: input.awake_minutes,
                quality_score,
            })
        })();
        e.done(session)
    }

    pub fn sleep_start(&self) -> DateTime<Utc> {
        self.sleep_start
    }

    pub fn sleep_end(&self) -> DateTime<Utc> {
        self.sleep_end
    }

    /// The day the session counts for.
    pub fn date(&self) -> NaiveDate {
        self.date
    }

    pub fn duration_minutes(&self) -> u32 {
        self.duration_minutes
    }

    pub fn quality_score(&self) -> Option<f64> {
        self.quality_score
    }
}

impl Activity {
    pub fn parse(
        input: ActivityInput,
        owner: &str,
        policy: &TimePolicy,
        now: DateTime<Utc>,
    ) -> Result<Activity, Vec<FieldError>> {
        let mut e = Errors(Vec::new());
        e.user(input.user_id.as_deref(), owner);
        let timestamp = e.time("timestamp", input.timestamp.as_deref(), policy, now);
        let activity_type = input.activity_type;
        if activity_type.is_none() {
            e.push("activity_type", "is required");
        }
        let duration = match input.duration_minutes {
            None => {
                e.push("duration_minutes", "is required");
                None
            }
            Some(d) if !(1..=MAX_ACTIVITY_MINUTES).contains(&d) => {
                e.push(
                    "duration_minutes",
                    format!("must be 1-{MAX_ACTIVITY_MINUTES}"),
                );
                None
            }
            d => d,
        };
        let calories_burned = e.amount(
            "calories_burned",
            input.calories_burned,
            MAX_CALORIES_BURNED,
        );
        let heart_rate_avg = match input.heart_rate_avg {
            Some(h) if !(HEART_RATE.0..=HEART_RATE.1).contains(&h) => {
                e.push(
                    "heart_rate_avg",
                    format!("must be {}-{} beats per minute", HEART_RATE.0, HEART_RATE.1),
                );
                None
            }
            h => h,
        };
        let steps = match input.steps {
            Some(s) if s > MAX_STEPS => {
                e.push("steps", format!("must be 0-{MAX_STEPS}"));
                None
            }
            s => s,
        };
        let activity = (|| {
            Some(Activity {
                timestamp: timestamp?,
                activity_type: activity_type?,
                duration_minutes: duration?,
                intensity: input.intensity,
                calories_burned,
                heart_rate_avg,
                steps,
            })
        })();
        e.done(activity)
    }

    pub fn timestamp(&self) -> DateTime<Utc> {
        self.timestamp
    }

    pub fn activity_type(&self) -> ActivityType {
        self.activity_type
    }

    pub fn duration_minutes(&self) -> u32 {
        self.duration_minutes
    }

    pub fn calories_burned(&self) -> Option<f64> {
        self.calories_burned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 14, 12, 0, 0).unwrap()
    }

    fn pointers<T: std::fmt::Debug>(r: Result<T, Vec<FieldError>>) -> Vec<String> {
        r.unwrap_err().into_iter().map(|e| e.pointer).collect()
    }

    fn sleep(json: serde_json::Value) -> Result<SleepSession, Vec<FieldError>> {
        let input: SleepInput = serde_json::from_value(json).unwrap();
        let tz = TimeZoneName::parse("tz", "Europe/Berlin").unwrap();
        SleepSession::parse(input, "u1", tz, &TimePolicy::default(), now())
    }

    #[test]
    fn sleep_defaults_its_date_and_duration() {
        let s = sleep(serde_json::json!({"sleep_start": "2025-01-13T22:00:00Z",
            "sleep_end": "2025-01-14T06:30:00Z", "awake_minutes": 30}))
        .unwrap();
        assert_eq!(s.duration_minutes(), 480);
        assert_eq!(s.date(), NaiveDate::from_ymd_opt(2025, 1, 14).unwrap());
        // 23:30 UTC is already the next day in Berlin.
        let s = sleep(serde_json::json!({"sleep_start": "2025-01-13T20:00:00Z",
            "sleep_end": "2025-01-13T23:30:00Z"}))
        .unwrap();
        assert_eq!(s.date(), NaiveDate::from_ymd_opt(2025, 1, 14).unwrap());
        assert_eq!(s.duration_minutes(), 210);
    }

    #[test]
    fn bad_sleep_is_named() {
        assert_eq!(
            pointers(sleep(
                serde_json::json!({"sleep_start": "2025-01-14T06:00:00Z",
                "sleep_end": "2025-01-13T22:00:00Z"})
            )),
            ["/sleep_end"]
        );
        assert_eq!(
            pointers(sleep(
                serde_json::json!({"sleep_start": "2025-01-12T06:00:00Z",
                "sleep_end": "2025-01-13T06:00:01Z"})
            )),
            ["/sleep_end"]
        );
        assert!(
            sleep(serde_json::json!({"sleep_start": "2025-01-12T06:00:00Z",
            "sleep_end": "2025-01-13T06:00:00Z"}))
            .is_ok()
        );
        assert_eq!(
            pointers(sleep(
                serde_json::json!({"sleep_start": "2025-01-13T22:00:00Z",
                "sleep_end": "2025-01-14T06:00:00Z", "quality_score": 11,
                "date": "2025-01-10", "deep_sleep_minutes": 600})
            )),
            ["/deep_sleep_minutes", "/date", "/quality_score"]
        );
        assert_eq!(
            pointers(sleep(
                serde_json::json!({"sleep_end": "2025-01-15T06:00:00Z"})
            )),
            ["/sleep_start", "/sleep_end"]
        );
    }

    #[test]
    fn meals_check_every_bound() {
        let meal = |json: serde_json::Value| {
            let input: MealInput = serde_json::from_value(json).unwrap();
            Meal::parse(input, "u1", &TimePolicy::default(), now())
        };
        let ok = meal(serde_json::json!({"timestamp": "2025-01-14T11:30:00.7Z",
            "meal_type": "lunch", "carbs_grams": 60,
            "foods": [{"name": "rice", "carbs_grams": 45}]}))
        .unwrap();
        assert_eq!(ok.timestamp(), now() - Duration::minutes(30));
        assert_eq!(ok.foods()[0].name(), "rice");
        assert_eq!(
            pointers(meal(
                serde_json::json!({"timestamp": "2025-01-14T12:30:00Z",
                "carbs_grams": -1, "calories": 20001, "glycemic_load": 501,
                "photo_url": "http://x.example/a.jpg",
                "foods": [{"name": ""}, {"name": "ok", "carbs_grams": 2001}]})
            )),
            [
                "/timestamp",
                "/carbs_grams",
                "/calories",
                "/glycemic_load",
                "/photo_url",
                "/foods/0/name",
                "/foods/1/carbs_grams"
            ]
        );
        assert_eq!(
            pointers(meal(
                serde_json::json!({"timestamp": "2025-01-14T11:00:00Z",
                "user_id": "someone-else"})
            )),
            ["/user_id"]
        );
    }

    #[test]
    fn activities_check_every_bound() {
        let activity = |json: serde_json::Value| {
            let input: ActivityInput = serde_json::from_value(json).unwrap();
            Activity::parse(input, "u1", &TimePolicy::default(), now())
        };
        assert!(
            activity(serde_json::json!({"timestamp": "2025-01-14T11:00:00Z",
            "activity_type": "running", "duration_minutes": 30, "heart_rate_avg": 150}))
            .is_ok()
        );
        assert_eq!(
            pointers(activity(
                serde_json::json!({"timestamp": "2025-01-14T11:00:00Z",
                "duration_minutes": 0, "heart_rate_avg": 19, "steps": 500001})
            )),
            [
                "/activity_type",
                "/duration_minutes",
                "/heart_rate_avg",
                "/steps"
            ]
        );
    }

    #[test]
    fn origins_default_to_manual() {
        assert_eq!(
            OriginInput::default().parse().unwrap(),
            EntryOrigin {
                source: "manual".into(),
                external_id: None
            }
        );
        let bad = OriginInput {
            source: Some("Apple Health".into()),
            external_id: Some(String::new()),
        };
        assert_eq!(pointers(bad.parse()), ["/source", "/external_id"]);
    }
}
