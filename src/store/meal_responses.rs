//! When a stored meal response (`MealResponseStore`) is still the answer.
//!
//! A response that is not `pending` no longer depends on the clock: it is a
//! function of the meal's time t0, the times of the user's other meals in
//! (t0, t0 + 180] (the overlap flag) and the readings in the trace span
//! [t0 − `TRACE_BEFORE_MIN`, t0 + `TRACE_AFTER_MIN`) (the caller cuts the trace
//! to that span, so the answer is the same whatever else it loaded). Every
//! reading write bumps the revision of its (user, UTC date) in its transaction
//! (`DailyStore::day_marks`), so the readings of the span are named by the
//! revisions of the UTC dates it covers. The validity key is a SHA-256 over
//! those three (and `ALGORITHM`); a stored response is served only under an
//! equal key, and a late reading, another meal in the window or a new t0
//! changes the key.
//!
//! The marks are read before anything else (`read_stored`): a write landing
//! while the answer is computed leaves it stored under an older key than its
//! content, which costs one recomputation later and is never a fresh key on
//! stale content (as in `samples`).

use chrono::{DateTime, Duration, NaiveDate, Utc};
use uuid::Uuid;

use super::{DailyStore, MealResponseStore, StoreError};
use crate::analytics::{MealResponse, MealResponseStatus};
use crate::domain::UserId;
use crate::records::meal_response::StoredMealResponse;

/// Readings a meal's response reads before it: the 30-minute baseline window
/// and an hour more (the reading just before the baseline window).
pub const TRACE_BEFORE_MIN: i64 = 30 + 60;
/// Readings a meal's response reads after it: the 240-minute return search
/// and three hours more (a crossing between a reading before 240 and a later
/// one still counts).
pub const TRACE_AFTER_MIN: i64 = 240 + 180;
/// Another meal this far after a meal overlaps it (the response window).
pub const OVERLAP_MIN: i64 = 180;
/// The version of the computation a key stands for: raise it when
/// `analytics::meal_response` or the span above changes, so that every
/// response stored by the older code is recomputed.
pub const ALGORITHM: u32 = 1;

/// The span of readings the response of a meal at `t0` is computed from,
/// `[from, until)`.
pub fn trace_span(t0: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        t0 - Duration::minutes(TRACE_BEFORE_MIN),
        t0 + Duration::minutes(TRACE_AFTER_MIN),
    )
}

/// The UTC dates `[from, until)` touches, first and last (inclusive).
fn dates_of(from: DateTime<Utc>, until: DateTime<Utc>) -> (NaiveDate, NaiveDate) {
    let last = (until - Duration::nanoseconds(1)).max(from);
    (from.date_naive(), last.date_naive())
}

/// The part of sorted `meal_times` in (t0, t0 + `OVERLAP_MIN`]: the meals
/// that make the one at `t0` overlap.
pub fn overlapping(t0: DateTime<Utc>, meal_times: &[DateTime<Utc>]) -> &[DateTime<Utc>] {
    let from = meal_times.partition_point(|t| *t <= t0);
    let to = meal_times.partition_point(|t| *t <= t0 + Duration::minutes(OVERLAP_MIN));
    &meal_times[from..to.max(from)]
}

/// The day marks of a span of dates: revision 0 for a date never written to.
#[derive(Debug, Clone, Default)]
pub struct Marks(Vec<(NaiveDate, i64)>);

impl Marks {
    pub fn new(mut marks: Vec<(NaiveDate, i64)>) -> Self {
        marks.sort_unstable();
        Self(marks)
    }

    pub fn revision(&self, date: NaiveDate) -> i64 {
        self.0
            .binary_search_by_key(&date, |(d, _)| *d)
            .map_or(0, |i| self.0[i].1)
    }
}

/// The validity key of the response of the meal at `t0`: SHA-256 (hex) over
/// `ALGORITHM`, t0, the other meal times in (t0, t0 + 180] (`overlapping` of
/// the sorted times) and the (date, revision) of each UTC date of
/// `trace_span(t0)`.
pub fn validity_key(t0: DateTime<Utc>, meal_times: &[DateTime<Utc>], marks: &Marks) -> String {
    use std::fmt::Write as _;
    let stamp = |t: DateTime<Utc>| format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos());
    let mut text = format!("meal-response v{ALGORITHM}\nt0 {}\nmeals", stamp(t0));
    for t in overlapping(t0, meal_times) {
        let _ = write!(text, " {}", stamp(*t));
    }
    text.push_str("\ndays");
    let (from, until) = trace_span(t0);
    let (first, last) = dates_of(from, until);
    for date in first.iter_days().take_while(|d| *d <= last) {
        let _ = write!(text, " {date}={}", marks.revision(date));
    }
    crate::digest::sha256_hex(text.as_bytes())
}

/// A response may be stored once it no longer depends on the clock.
pub fn storable(response: &MealResponse) -> bool {
    response.status != MealResponseStatus::Pending
}

/// The stored responses of some meals that are still the answer, with the
/// keys that the others are to be stored under.
#[derive(Debug)]
pub struct Lookup {
    meals: Vec<(Uuid, DateTime<Utc>)>,
    keys: Vec<String>,
    found: Vec<Option<MealResponse>>,
}

/// Reads what the responses of `meals` (id and time, one user's) depend on:
/// the day marks of their whole span (one query), then their stored
/// responses (one query), kept where the key still matches. `meal_times`: the
/// sorted times of the user's meals, holding at least those in (t0, t0 + 180]
/// of each meal (the caller computes the misses with the same list).
pub async fn read_stored(
    store: &(impl DailyStore + MealResponseStore + ?Sized),
    user: &UserId,
    meals: &[(Uuid, DateTime<Utc>)],
    meal_times: &[DateTime<Utc>],
) -> Result<Lookup, StoreError> {
    let (Some(first), Some(last)) = (
        meals.iter().map(|m| m.1).min(),
        meals.iter().map(|m| m.1).max(),
    ) else {
        return Ok(Lookup {
            meals: Vec::new(),
            keys: Vec::new(),
            found: Vec::new(),
        });
    };
    let (first_date, _) = dates_of(trace_span(first).0, trace_span(first).1);
    let (_, last_date) = dates_of(trace_span(last).0, trace_span(last).1);
    let until = last_date.succ_opt().unwrap_or(last_date);
    let marks = Marks::new(store.day_marks(user, first_date, until).await?);
    let keys: Vec<String> = meals
        .iter()
        .map(|(_, t0)| validity_key(*t0, meal_times, &marks))
        .collect();
    let ids: Vec<Uuid> = meals.iter().map(|m| m.0).collect();
    let stored = store.get_meal_responses(user, &ids).await?;
    let mut by_id: std::collections::HashMap<Uuid, StoredMealResponse> =
        stored.into_iter().map(|s| (s.meal_id, s)).collect();
    let found = meals
        .iter()
        .zip(&keys)
        .map(|((id, _), key)| {
            by_id
                .remove(id)
                .filter(|s| s.key == *key && storable(&s.response))
                .map(|s| s.response)
        })
        .collect();
    Ok(Lookup {
        meals: meals.to_vec(),
        keys,
        found,
    })
}

impl Lookup {
    /// The indexes (into the meals asked for) of the meals without a stored
    /// answer: these are computed.
    pub fn misses(&self) -> Vec<usize> {
        (0..self.found.len())
            .filter(|&i| self.found[i].is_none())
            .collect()
    }

    /// How many meals had a stored answer.
    pub fn hits(&self) -> usize {
        self.found.iter().filter(|f| f.is_some()).count()
    }

    /// Every meal's response in the order asked, the misses from `computed`
    /// (index, response), and those of them to store (not pending), under
    /// the keys read. A miss left out of `computed` is an error.
    pub fn finish(
        self,
        user: &UserId,
        computed: Vec<(usize, MealResponse)>,
        now: DateTime<Utc>,
    ) -> Result<(Vec<MealResponse>, Vec<StoredMealResponse>), StoreError> {
        let mut found = self.found;
        let mut to_store = Vec::new();
        for (i, response) in computed {
            let (Some(slot), Some((meal_id, _)), Some(key)) =
                (found.get_mut(i), self.meals.get(i), self.keys.get(i))
            else {
                return Err(StoreError::Internal(format!(
                    "meal response {i} out of range"
                )));
            };
            if storable(&response) {
                to_store.push(StoredMealResponse {
                    user_id: user.clone(),
                    meal_id: *meal_id,
                    response: response.clone(),
                    key: key.clone(),
                    computed_at: now,
                });
            }
            *slot = Some(response);
        }
        let responses = found
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| StoreError::Internal("a meal response was not computed".into()))?;
        Ok((responses, to_store))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 10, h, m, 0).unwrap()
    }

    fn date(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
    }

    fn response(status: MealResponseStatus) -> MealResponse {
        MealResponse {
            status,
            baseline: None,
            peak: None,
            time_to_peak: None,
            delta_g: None,
            iauc_120: None,
            iauc_180: None,
            return_to_baseline: None,
            coverage: 0.5,
            overlap: false,
            score: None,
        }
    }

    #[test]
    fn the_span_and_its_dates() {
        let (from, until) = trace_span(t(12, 0));
        assert_eq!((from, until), (t(10, 30), t(19, 0)));
        assert_eq!(dates_of(from, until), (date(10), date(10)));
        // 01:00: from the day before; 17:00 runs to 00:00 exclusive, one date.
        let (from, until) = trace_span(t(1, 0));
        assert_eq!(dates_of(from, until), (date(9), date(10)));
        let (from, until) = trace_span(t(17, 0));
        assert_eq!(until, Utc.with_ymd_and_hms(2026, 3, 11, 0, 0, 0).unwrap());
        assert_eq!(dates_of(from, until), (date(10), date(10)));
        let (from, until) = trace_span(t(17, 1));
        assert_eq!(dates_of(from, until), (date(10), date(11)));
    }

    #[test]
    fn overlapping_is_the_half_open_window_after_the_meal() {
        let times = [t(11, 0), t(12, 0), t(12, 1), t(15, 0), t(15, 1)];
        assert_eq!(overlapping(t(12, 0), &times), &[t(12, 1), t(15, 0)]);
        assert!(overlapping(t(16, 0), &times).is_empty());
        assert!(overlapping(t(7, 0), &times).is_empty());
        assert_eq!(overlapping(t(9, 0), &times), &[t(11, 0), t(12, 0)]);
    }

    #[test]
    fn the_key_moves_with_each_input_and_only_with_them() {
        let marks = Marks::new(vec![(date(10), 3), (date(9), 1)]);
        let times = [t(11, 0), t(12, 0), t(13, 0), t(16, 0)];
        let key = validity_key(t(12, 0), &times, &marks);
        assert_eq!(key.len(), 64);
        assert_eq!(key, validity_key(t(12, 0), &times, &marks));
        // A meal outside (t0, t0 + 180] or a mark outside the span: same key.
        let wider = [t(8, 0), t(11, 0), t(12, 0), t(13, 0), t(15, 1), t(16, 0)];
        let more_marks = Marks::new(vec![(date(10), 3), (date(9), 7), (date(11), 2)]);
        assert_eq!(key, validity_key(t(12, 0), &wider, &more_marks));
        // A meal at t0 + 180 overlaps: new key; so do a moved meal, a bumped
        // date, a new t0.
        let closer = [t(11, 0), t(12, 0), t(13, 0), t(15, 0)];
        assert_ne!(key, validity_key(t(12, 0), &closer, &marks));
        let moved = [t(11, 0), t(12, 0), t(13, 5), t(16, 0)];
        assert_ne!(key, validity_key(t(12, 0), &moved, &marks));
        let bumped = Marks::new(vec![(date(10), 4), (date(9), 1)]);
        assert_ne!(key, validity_key(t(12, 0), &times, &bumped));
        assert_ne!(key, validity_key(t(12, 1), &times, &marks));
        // A date never written to is revision 0, whether listed or not.
        let zero = Marks::new(vec![(date(10), 3), (date(9), 1), (date(11), 0)]);
        let late = t(22, 0);
        assert_eq!(
            validity_key(late, &times, &marks),
            validity_key(late, &times, &zero)
        );
        // The day before counts for a meal just after midnight.
        let early = t(0, 30);
        assert_ne!(
            validity_key(early, &[], &marks),
            validity_key(early, &[], &more_marks)
        );
    }

    #[test]
    fn finish_stores_only_what_no_longer_depends_on_the_clock() {
        let user = UserId::parse("u1").unwrap();
        let ids = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
        let lookup = Lookup {
            meals: ids.iter().map(|id| (*id, t(12, 0))).collect(),
            keys: vec!["a".into(), "b".into(), "c".into()],
            found: vec![None, Some(response(MealResponseStatus::Complete)), None],
        };
        assert_eq!((lookup.misses(), lookup.hits()), (vec![0, 2], 1));
        let (responses, to_store) = lookup
            .finish(
                &user,
                vec![
                    (0, response(MealResponseStatus::Pending)),
                    (2, response(MealResponseStatus::InsufficientData)),
                ],
                t(20, 0),
            )
            .unwrap();
        assert_eq!(
            responses.iter().map(|r| r.status).collect::<Vec<_>>(),
            [
                MealResponseStatus::Pending,
                MealResponseStatus::Complete,
                MealResponseStatus::InsufficientData
            ]
        );
        assert_eq!(to_store.len(), 1);
        assert_eq!(
            (to_store[0].meal_id, to_store[0].key.as_str()),
            (ids[2], "c")
        );
        assert_eq!(to_store[0].computed_at, t(20, 0));
    }

    #[test]
    fn a_miss_left_uncomputed_is_an_error() {
        let lookup = Lookup {
            meals: vec![(Uuid::new_v4(), t(12, 0))],
            keys: vec!["a".into()],
            found: vec![None],
        };
        let user = UserId::parse("u1").unwrap();
        assert!(lookup.finish(&user, Vec::new(), t(20, 0)).is_err());
    }
}
