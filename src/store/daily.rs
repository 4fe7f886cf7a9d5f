//! Daily aggregates kept current: the one place that decides which stored rows
//! are fresh and recomputes the others from the readings.
//!
//! Every reading upsert adds one to the revision of each (user, UTC date) it
//! changed, in its transaction (the day marks). A row remembers its basis (zone,
//! target range) and the sum of the revisions of the UTC dates its local day
//! overlaps (`marks_revision`). A row is fresh iff both still match, so a late
//! upload for yesterday makes yesterday (and only the days overlapping that UTC
//! date) stale, and a request for 90 days recomputes only what changed.
//!
//! Marks are read before the readings: a write racing a recomputation bumps a
//! mark after that read, so the row written with the older sum is stale at once
//! and recomputed on the next request; it can never be taken as fresh.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::samples::scan_samples;
use super::{DailyStore, JournalStore, ReadingStore, StoreError};
use crate::analytics::{self, Band, DayGlucose};
use crate::domain::{TimeZoneName, UserId};
use crate::records::daily::{DailyRow, DayBasis, GlucoseFigures, JournalFigures};
use crate::records::journal::{JournalBody, JournalEntry, JournalKind, JournalQuery};

/// The answer for a window of local days.
#[derive(Debug, Clone, PartialEq)]
pub struct Daily {
    /// The days with readings, by date (days without any are omitted).
    pub days: Vec<DailyRow>,
    /// The days that were stale and recomputed from the readings, by date.
    pub recomputed: Vec<NaiveDate>,
}

/// The first and the last UTC date (inclusive) that the local day overlaps.
fn utc_dates(tz: TimeZoneName, date: NaiveDate) -> (NaiveDate, NaiveDate) {
    let start = tz.day_start(date);
    let end = tz.day_start(date + Duration::days(1)) - Duration::seconds(1);
    (start.date_naive(), end.date_naive())
}

/// The daily aggregates of the local dates `[from, until)` in `basis.timezone`,
/// recomputing (and storing) only the stale ones.
pub async fn daily_aggregates<S>(
    store: &S,
    user: &UserId,
    basis: DayBasis,
    from: NaiveDate,
    until: NaiveDate,
) -> Result<Daily, StoreError>
where
    S: ReadingStore + DailyStore + ?Sized,
{
    let tz = basis.timezone;
    let dates: Vec<NaiveDate> = from.iter_days().take_while(|d| *d < until).collect();
    if dates.is_empty() {
        return Ok(Daily {
            days: Vec::new(),
            recomputed: Vec::new(),
        });
    }
    let utc_from = utc_dates(tz, from).0;
    let utc_until = utc_dates(tz, until - Duration::days(1)).1 + Duration::days(1);
    // Marks first (see the module's comment), then the rows.
    let marks: HashMap<NaiveDate, i64> = store
        .day_marks(user, utc_from, utc_until)
        .await?
        .into_iter()
        .collect();
    let mut stored: BTreeMap<NaiveDate, DailyRow> = store
        .daily_rows(user, from, until)
        .await?
        .into_iter()
        .map(|r| (r.date, r))
        .collect();

    let mut rows = Vec::with_capacity(dates.len());
    let mut stale = Vec::new();
    for date in dates {
        let (first, last) = utc_dates(tz, date);
        let revision: i64 = first
            .iter_days()
            .take_while(|d| *d <= last)
            .map(|d| marks.get(&d).copied().unwrap_or(0))
            .sum();
        match stored.remove(&date) {
            Some(row) if row.basis == basis && row.marks_revision == revision => rows.push(row),
            held => stale.push((date, revision, held.map(|r| r.journal).unwrap_or_default())),
        }
    }

    let recomputed: Vec<NaiveDate> = stale.iter().map(|(d, _, _)| *d).collect();
    if !stale.is_empty() {
        let figures = recompute(store, user, basis, &recomputed).await?;
        let fresh: Vec<DailyRow> = stale
            .into_iter()
            .map(|(date, marks_revision, journal)| DailyRow {
                date,
                basis,
                marks_revision,
                glucose: figures.get(&date).map(GlucoseFigures::from),
                journal,
            })
            .collect();
        store.put_daily_rows(user, fresh.clone()).await?;
        rows.extend(fresh);
    }
    rows.retain(|r| r.glucose.is_some());
    rows.sort_by_key(|r| r.date);
    Ok(Daily {
        days: rows,
        recomputed,
    })
}

/// The figures of `dates` (sorted) from the readings: one scan per run of
/// consecutive dates.
async fn recompute<S>(
    store: &S,
    user: &UserId,
    basis: DayBasis,
    dates: &[NaiveDate],
) -> Result<HashMap<NaiveDate, DayGlucose>, StoreError>
where
    S: ReadingStore + ?Sized,
{
    let tz = basis.timezone;
    let band = Band {
        low: f64::from(basis.target.low()),
        high: f64::from(basis.target.high()),
    };
    let mut figures = HashMap::with_capacity(dates.len());
    let mut i = 0;
    while i < dates.len() {
        let mut j = i + 1;
        while j < dates.len() && dates[j] == dates[j - 1] + Duration::days(1) {
            j += 1;
        }
        let start = tz.day_start(dates[i]);
        let end = tz.day_start(dates[j - 1] + Duration::days(1));
        // CGM readings only, as every analytics route counts them.
        let samples = scan_samples(store, user, start.timestamp(), end.timestamp(), usize::MAX)
            .await?
            .unwrap_or_default();
        for day in analytics::daily(&samples, tz.tz(), band) {
            figures.insert(day.date, day);
        }
        i = j;
    }
    Ok(figures)
}

impl From<&DayGlucose> for GlucoseFigures {
    fn from(d: &DayGlucose) -> Self {
        Self {
            readings: u32::try_from(d.readings).unwrap_or(u32::MAX),
            avg_glucose: d.avg_glucose,
            min_glucose: d.min_glucose,
            max_glucose: d.max_glucose,
            std_glucose: d.std_glucose,
            time_in_range_percent: d.time_in_range_percent,
            time_above_range_percent: d.time_above_range_percent,
            time_below_range_percent: d.time_below_range_percent,
        }
    }
}

/// Entries read per page when totalling a window's journal.
const JOURNAL_PAGE: usize = 1000;

/// Every entry of one kind with `at` in `[from, until)`.
async fn journal_window<S>(
    store: &S,
    user: &UserId,
    kind: JournalKind,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<JournalEntry>, StoreError>
where
    S: JournalStore + ?Sized,
{
    let mut out: Vec<JournalEntry> = Vec::new();
    loop {
        let page = store
            .list_journal_entries(JournalQuery {
                user_id: user.clone(),
                kind,
                from: Some(from),
                until: Some(until),
                descending: false,
                after: out.last().map(|e| (e.at(), e.id)),
                limit: JOURNAL_PAGE,
            })
            .await?;
        let last = page.len() < JOURNAL_PAGE;
        out.extend(page);
        if last {
            return Ok(out);
        }
    }
}

/// The journal totals of the local dates `[from, until)` in `tz`, computed
/// from the entries as they are now (so adding, changing or deleting one
/// shows at once): sleep by each session's `date` (minutes summed, quality
/// the mean of the sessions that have one), exercise minutes by the local
/// date of each activity's start, carbs and calories eaten by the local date
/// of each meal. A total is None when no entry of the day gives a value for it;
/// days without entries are absent.
pub async fn journal_figures<S>(
    store: &S,
    user: &UserId,
    tz: TimeZoneName,
    from: NaiveDate,
    until: NaiveDate,
) -> Result<BTreeMap<NaiveDate, JournalFigures>, StoreError>
where
    S: JournalStore + ?Sized,
{
    let start = tz.day_start(from);
    let end = tz.day_start(until);
    let mut days: BTreeMap<NaiveDate, JournalFigures> = BTreeMap::new();
    let add = |slot: &mut Option<f64>, v: f64| *slot = Some(slot.unwrap_or(0.0) + v);
    let in_window = |d: NaiveDate| d >= from && d < until;
    // A session's date is within a day of its end's local date, and it ends
    // at most 24 h after it starts.
    let sleep = journal_window(
        store,
        user,
        JournalKind::Sleep,
        start - Duration::days(3),
        end + Duration::days(2),
    )
    .await?;
    let mut quality: BTreeMap<NaiveDate, (f64, u32)> = BTreeMap::new();
    for entry in &sleep {
        if let JournalBody::Sleep(s) = &entry.body {
            if !in_window(s.date()) {
                continue;
            }
            let day = days.entry(s.date()).or_default();
            add(
                &mut day.total_sleep_minutes,
                f64::from(s.duration_minutes()),
            );
            if let Some(q) = s.quality_score() {
                let (sum, n) = quality.entry(s.date()).or_default();
                *sum += q;
                *n += 1;
            }
        }
    }
    for (date, (sum, n)) in quality {
        if let Some(day) = days.get_mut(&date) {
            day.sleep_quality_score = Some(sum / f64::from(n));
        }
    }
    for entry in journal_window(store, user, JournalKind::Activity, start, end).await? {
        if let JournalBody::Activity(a) = &entry.body {
            let day = days.entry(tz.date_of(a.timestamp())).or_default();
            add(
                &mut day.total_exercise_minutes,
                f64::from(a.duration_minutes()),
            );
        }
    }
    for entry in journal_window(store, user, JournalKind::Meal, start, end).await? {
        if let JournalBody::Meal(m) = &entry.body {
            let day = days.entry(tz.date_of(m.timestamp())).or_default();
            if let Some(c) = m.carbs_grams() {
                add(&mut day.total_carbs_grams, c);
            }
            if let Some(c) = m.calories() {
                add(&mut day.total_calories, c);
            }
        }
    }
    Ok(days)
}
