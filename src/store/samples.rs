//! A user's CGM readings in a window as `analytics::Sample`s, read through an
//! in-memory cache that the store's day marks keep honest, and the statistics
//! of a window computed once per distinct set of readings.
//!
//! Every reading write bumps the revision of its (user, UTC date) in the same
//! transaction (`DailyStore::day_marks`). So a UTC date's samples, once read,
//! stay valid while its revision is unchanged, on every instance sharing the
//! store: a request reads the window's marks (one small query), reads from the
//! readings only the dates whose revision moved (one keyset scan per run of
//! such dates, in bounded chunks), and `analytics::stats` runs only when the
//! readings inside the window changed (`StatsKey`).
//!
//! Marks are read before readings: a write landing between the two leaves the
//! cached date with an older revision than its content, which costs one more
//! read later and is never taken as fresh for newer data.

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;

use super::query::{Order, Scan};
use super::{DailyStore, ReadingStore, StoreError};
use crate::analytics::{Sample, Stats};
use crate::domain::{ReadingType, StoredReading, UserId};

/// Readings per scan: a little over two weeks of 5-minute data.
pub const CHUNK: usize = 5_000;

/// Bytes of samples and statistics one process keeps (about 2,000 user-weeks
/// of 5-minute data); least recently used entries go first.
pub const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// The store a window is read from.
pub trait WindowSource: ReadingStore + DailyStore {}
impl<T: ReadingStore + DailyStore + ?Sized> WindowSource for T {}

/// The analytics' view of a stored reading: CGM readings only (a fingerstick or
/// a calibration entry is not part of the sensor trace the metrics are defined
/// on), at the stored value: a reading the sensor reported as LOW or HIGH
/// enters with its stored bound (39 or 401), as `analytics` expects.
pub fn sample_of(stored: &StoredReading) -> Option<Sample> {
    let reading = &stored.reading;
    (reading.reading_type == ReadingType::Cgm).then(|| Sample {
        at: reading.timestamp.as_datetime(),
        mg_dl: f64::from(reading.glucose.mg_dl().get()),
    })
}

/// One UTC date's samples of one user, oldest first, as of `revision`.
struct DaySamples {
    revision: i64,
    samples: Vec<Sample>,
}

/// What the statistics of a window depend on: which readings are inside it (the
/// first, the last, how many, and the revisions of the dates from the first to
/// the last, which move with every write there) and the time zone. Two windows
/// with one key hold the same readings, whatever their bounds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct StatsKey {
    user: UserId,
    tz: Tz,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    count: usize,
    revisions: i64,
}

/// The samples of one window: the cached dates and the bounds to cut them to.
pub struct WindowSamples {
    days: Vec<Arc<DaySamples>>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    /// None for a window without readings.
    key: Option<StatsKey>,
    count: usize,
}

impl WindowSamples {
    /// How many CGM readings the window holds.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The samples, oldest first.
    pub fn to_vec(&self) -> Vec<Sample> {
        let mut out = Vec::with_capacity(self.count);
        for day in &self.days {
            out.extend_from_slice(inside(&day.samples, self.start, self.end));
        }
        out
    }
}

/// The part of sorted `samples` in `[start, end)`.
fn inside(samples: &[Sample], start: DateTime<Utc>, end: DateTime<Utc>) -> &[Sample] {
    let from = samples.partition_point(|s| s.at < start);
    let to = samples.partition_point(|s| s.at < end);
    &samples[from..to.max(from)]
}

/// The cache; one per process, shared by every request. Both maps are bounded by
/// bytes (moka's weigher; least recently used first out), so a sweep across many
/// users only evicts.
pub struct GlucoseWindows {
    days: moka::sync::Cache<(UserId, NaiveDate), Arc<DaySamples>>,
    stats: moka::sync::Cache<StatsKey, Arc<Stats>>,
}

impl GlucoseWindows {
    /// A cache of about `bytes`: 7/8 for samples, 1/8 for statistics.
    pub fn new(bytes: u64) -> Self {
        let days = moka::sync::Cache::builder()
            .max_capacity(bytes / 8 * 7)
            .weigher(|_, day: &Arc<DaySamples>| {
                let bytes = 96 + day.samples.len() * std::mem::size_of::<Sample>();
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .build();
        let stats = moka::sync::Cache::builder()
            .max_capacity(bytes / 8)
            .weigher(|_, _: &Arc<Stats>| 1_024)
            .build();
        Self { days, stats }
    }

    /// The CGM readings of `user` in `[start, end)`; None when there are more
    /// than `max` of them.
    pub async fn window(
        &self,
        store: &(impl WindowSource + ?Sized),
        user: &UserId,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        max: usize,
    ) -> Result<Option<WindowSamples>, StoreError> {
        if start >= end {
            return Ok(Some(WindowSamples {
                days: Vec::new(),
                start,
                end,
                key: None,
                count: 0,
            }));
        }
        let first_date = start.date_naive();
        let last_date = (end - Duration::nanoseconds(1)).date_naive();
        let until_date = last_date.succ_opt().unwrap_or(last_date);
        let marks = store.day_marks(user, first_date, until_date).await?;
        let revision_of = |date: NaiveDate| {
            marks
                .iter()
                .find(|(d, _)| *d == date)
                .map_or(0, |(_, r)| *r)
        };

        // Each date with its revision now and its samples, if cached as of it.
        let mut dates: Vec<(NaiveDate, i64, Option<Arc<DaySamples>>)> = first_date
            .iter_days()
            .take_while(|d| *d <= last_date)
            .map(|date| {
                let revision = revision_of(date);
                let cached = self
                    .days
                    .get(&(user.clone(), date))
                    .filter(|day| day.revision == revision);
                (date, revision, cached)
            })
            .collect();

        // The other dates from the readings, each run of consecutive ones in one scan.
        let mut i = 0;
        while i < dates.len() {
            if dates[i].2.is_some() {
                i += 1;
                continue;
            }
            let mut j = i;
            while j + 1 < dates.len() && dates[j + 1].2.is_none() {
                j += 1;
            }
            let Some(read) = read_dates(store, user, dates[i].0, dates[j].0, max).await? else {
                return Ok(None);
            };
            for (k, samples) in (i..=j).zip(read) {
                let day = Arc::new(DaySamples {
                    revision: dates[k].1,
                    samples,
                });
                self.days.insert((user.clone(), dates[k].0), day.clone());
                dates[k].2 = Some(day);
            }
            i = j + 1;
        }

        let days: Vec<(i64, Arc<DaySamples>)> = dates
            .into_iter()
            .map(|(_, revision, day)| (revision, day.expect("every date was read")))
            .collect();
        let mut count = 0;
        let mut first: Option<(usize, DateTime<Utc>)> = None;
        let mut last: Option<(usize, DateTime<Utc>)> = None;
        for (i, (_, day)) in days.iter().enumerate() {
            let part = inside(&day.samples, start, end);
            count += part.len();
            if let (None, Some(s)) = (first, part.first()) {
                first = Some((i, s.at));
            }
            if let Some(s) = part.last() {
                last = Some((i, s.at));
            }
        }
        if count > max {
            return Ok(None);
        }
        let key = match (first, last) {
            (Some((i, first)), Some((j, last))) => Some(StatsKey {
                user: user.clone(),
                tz: Tz::UTC,
                first,
                last,
                count,
                revisions: days[i..=j].iter().map(|(r, _)| *r).sum(),
            }),
            _ => None,
        };
        Ok(Some(WindowSamples {
            days: days.into_iter().map(|(_, day)| day).collect(),
            start,
            end,
            key,
            count,
        }))
    }

    /// The statistics computed before for the same readings in `tz`, if any.
    pub fn cached_stats(&self, window: &WindowSamples, tz: Tz) -> Option<Arc<Stats>> {
        let key = window.key.clone()?;
        self.stats.get(&StatsKey { tz, ..key })
    }

    /// Keeps `stats` of `window` in `tz` for the next request with the same readings.
    pub fn remember_stats(&self, window: &WindowSamples, tz: Tz, stats: Arc<Stats>) {
        if let Some(key) = window.key.clone() {
            self.stats.insert(StatsKey { tz, ..key }, stats);
        }
    }
}

/// The CGM samples of `user` in `[from, until)` (unix seconds), oldest first,
/// read in chunks of `CHUNK`; None once more than `max` were found. The one
/// reader of samples from the store (the analytics windows, the daily rows).
pub async fn scan_samples(
    store: &(impl ReadingStore + ?Sized),
    user: &UserId,
    from: i64,
    until: i64,
    max: usize,
) -> Result<Option<Vec<Sample>>, StoreError> {
    let mut out = Vec::new();
    let mut from = from;
    while from < until {
        let chunk = store
            .scan_readings(Scan {
                user_id: user.clone(),
                from,
                until,
                order: Order::Asc,
                limit: CHUNK,
            })
            .await?;
        let Some(newest) = chunk.last() else { break };
        from = newest.reading.timestamp.unix_seconds().saturating_add(1);
        out.extend(chunk.iter().filter_map(sample_of));
        if out.len() > max {
            return Ok(None);
        }
        if chunk.len() < CHUNK {
            break;
        }
    }
    Ok(Some(out))
}

/// The CGM samples of every UTC date from `first` to `last` (inclusive), one
/// vector per date, oldest first; None past `max`.
async fn read_dates(
    store: &(impl ReadingStore + ?Sized),
    user: &UserId,
    first: NaiveDate,
    last: NaiveDate,
    max: usize,
) -> Result<Option<Vec<Vec<Sample>>>, StoreError> {
    let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    let until = (midnight(last) + Duration::days(1)).timestamp();
    let Some(samples) = scan_samples(store, user, midnight(first).timestamp(), until, max).await?
    else {
        return Ok(None);
    };
    let dates = usize::try_from((last - first).num_days() + 1).unwrap_or(0);
    let mut out: Vec<Vec<Sample>> = vec![Vec::new(); dates];
    for sample in samples {
        let index = (sample.at.date_naive() - first).num_days();
        if let Some(day) = usize::try_from(index).ok().and_then(|i| out.get_mut(i)) {
            day.push(sample);
        }
    }
    Ok(Some(out))
}
