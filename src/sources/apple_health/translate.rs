//! From Apple's samples to what cgm-hub keeps: glucose readings (validated by
//! the domain types), sleep sessions grouped from stage samples, and workouts
//! mapped to the journal's activity types. Each item gets a deterministic
//! `external_id`, so that importing the same export again stores nothing new.

use chrono::{DateTime, Utc};

use super::parse::{GlucoseSample, Skip, SleepSample, SleepStage, WorkoutSample, GLUCOSE_TYPE};
use crate::digest::sha256_hex;
use crate::domain::{
    DeviceInfo, FieldError, Glucose, GlucoseUnit, MgDl, Reading, ReadingTime, ReadingType, Source,
    UserId,
};

/// A gap longer than this between one sleep sample's end (the latest end so
/// far) and the next sample's start starts a new session.
pub const SESSION_GAP_SECONDS: i64 = 2 * 3600;
/// The longest session kept (the journal refuses longer ones).
pub const MAX_SESSION_SECONDS: i64 = 24 * 3600;
/// How far past `now` a sleep session or workout may end (clocks drift; the
/// reading pipeline's time policy allows the same).
pub const MAX_FUTURE_SECONDS: i64 = 300;
pub const IN_THE_FUTURE: &str = "sleep session or workout ending in the future";

/// `ah-` and 32 hex digits of SHA-256 over the item's kind, start, end and source.
pub fn external_id(kind: &str, start: i64, end: i64, source: &str) -> String {
    let digest = sha256_hex(format!("{kind}\n{start}\n{end}\n{source}").as_bytes());
    format!("ah-{}", &digest[..32])
}

/// A blood glucose sample, checked and compacted (24 bytes: an export holds
/// up to a million of them, kept until the whole file has parsed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlucoseRow {
    pub start: i64,
    pub end: i64,
    pub mg_dl: MgDl,
    /// Minutes east of UTC of the sample's own date.
    pub offset_minutes: i16,
    /// Index into the import's source names.
    pub source: u16,
    pub manual: bool,
}

/// Source names seen, each stored once.
#[derive(Debug, Default)]
pub struct SourceNames(Vec<String>);

impl SourceNames {
    pub fn intern(&mut self, name: &str) -> u16 {
        if let Some(i) = self.0.iter().position(|n| n == name) {
            return i as u16;
        }
        if self.0.len() >= usize::from(u16::MAX) {
            return u16::MAX;
        }
        self.0.push(name.to_owned());
        (self.0.len() - 1) as u16
    }

    pub fn name(&self, i: u16) -> &str {
        self.0.get(usize::from(i)).map_or("", String::as_str)
    }
}

pub const GLUCOSE_OUT_OF_RANGE: &str = "blood glucose outside 20-600 mg/dL";

/// Checks a glucose sample's value with the domain's rule (the domain's
/// mmol/L factor, rounding to whole mg/dL).
pub fn glucose_row(sample: &GlucoseSample, sources: &mut SourceNames) -> Result<GlucoseRow, Skip> {
    let mg_dl = MgDl::from_measurement(sample.value, sample.unit).map_err(|e| Skip {
        line: sample.line,
        reason: GLUCOSE_OUT_OF_RANGE,
        detail: format!(
            "value {} {}: {}",
            sample.value,
            match sample.unit {
                GlucoseUnit::MgDl => "mg/dL",
                GlucoseUnit::MmolL => "mmol/L",
            },
            e.message
        ),
    })?;
    Ok(GlucoseRow {
        start: sample.start.timestamp(),
        end: sample.end.timestamp(),
        mg_dl,
        offset_minutes: (sample.start.offset().local_minus_utc() / 60) as i16,
        source: sources.intern(&sample.source_name),
        manual: sample.user_entered,
    })
}

/// One reading per instant, as the store's conflict rule would leave it had
/// the samples arrived in file order (a sensor value is not replaced by a
/// typed-in one; otherwise the later wins). Sending only that one makes a
/// second import identical, hence duplicate. Returns how many were dropped.
pub fn one_per_instant(rows: &mut Vec<GlucoseRow>) -> u64 {
    rows.sort_by_key(|r| r.start); // stable: file order within an instant
    let before = rows.len();
    rows.dedup_by(|next, kept| {
        if next.start != kept.start {
            return false;
        }
        if kept.manual || !next.manual {
            *kept = *next;
        }
        true
    });
    (before - rows.len()) as u64
}

/// The reading a row becomes: source `apple_health`, the source app's name as
/// device id (when it is printable ASCII of at most 64 characters).
pub fn reading(
    row: &GlucoseRow,
    user: &UserId,
    sources: &SourceNames,
) -> Result<Reading, Vec<FieldError>> {
    let source_name = sources.name(row.source);
    let timestamp = ReadingTime::from_unix_seconds(row.start)
        .ok_or_else(|| vec![FieldError::new("timestamp", "is out of range")])?;
    let device = DeviceInfo::parse(Some(source_name.to_owned()), None, None).unwrap_or_default();
    Ok(Reading {
        user_id: user.clone(),
        timestamp,
        glucose: Glucose::value(row.mg_dl),
        trend: None,
        trend_rate: None,
        device,
        reading_type: if row.manual {
            ReadingType::Manual
        } else {
            ReadingType::Cgm
        },
        source: Source::parse("apple_health").expect("a valid source name"),
        source_record_id: Some(external_id(GLUCOSE_TYPE, row.start, row.end, source_name)),
        display_offset_minutes: Some(row.offset_minutes),
    })
}

/// A night's sleep from Apple Health, for the journal's sleep sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppleSleep {
    pub external_id: String,
    pub sleep_start: DateTime<Utc>,
    pub sleep_end: DateTime<Utc>,
    /// Minutes east of UTC at the session's start (the sample's own offset).
    pub utc_offset_minutes: i32,
    pub deep_minutes: u32,
    pub rem_minutes: u32,
    /// `AsleepCore`.
    pub light_minutes: u32,
    /// `Asleep` / `AsleepUnspecified`: asleep, stage unknown (older watches, other apps).
    pub asleep_unspecified_minutes: u32,
    pub awake_minutes: u32,
    pub in_bed_minutes: u32,
    /// The app or device whose samples the minutes come from.
    pub source_name: String,
}

impl AppleSleep {
    pub fn asleep_minutes(&self) -> u32 {
        self.deep_minutes + self.rem_minutes + self.light_minutes + self.asleep_unspecified_minutes
    }
}

#[derive(Debug, Clone)]
pub struct SleepRow {
    pub line: u64,
    pub start: i64,
    pub end: i64,
    pub offset_minutes: i32,
    pub stage: SleepStage,
    pub source: u16,
}

pub fn sleep_row(sample: &SleepSample, sources: &mut SourceNames) -> SleepRow {
    SleepRow {
        line: sample.line,
        start: sample.start.timestamp(),
        end: sample.end.timestamp(),
        offset_minutes: sample.start.offset().local_minus_utc() / 60,
        stage: sample.stage,
        source: sources.intern(&sample.source_name),
    }
}

pub const SLEEP_TOO_LONG: &str = "sleep session longer than 24 h";

/// Groups stage samples into sessions. Samples of every source are sorted by
/// start; a sample starting more than 2 h after the latest end so far opens a
/// new session. Within a session, the minutes come from one source (the one
/// with stage detail, then the most asleep time), because a phone and a
/// watch (or a third-party app) record the same night over each other;
/// overlapping samples of one stage count once.
pub fn sleep_sessions(
    mut rows: Vec<SleepRow>,
    sources: &SourceNames,
    now: i64,
) -> (Vec<AppleSleep>, Vec<Skip>) {
    rows.sort_by_key(|r| (r.start, r.end));
    let mut sessions = Vec::new();
    let mut skips = Vec::new();
    let mut group: Vec<SleepRow> = Vec::new();
    let mut latest_end = i64::MIN;
    for row in rows {
        if !group.is_empty() && row.start > latest_end.saturating_add(SESSION_GAP_SECONDS) {
            session(&group, sources, now, &mut sessions, &mut skips);
            group.clear();
        }
        latest_end = if group.is_empty() {
            row.end
        } else {
            latest_end.max(row.end)
        };
        group.push(row);
    }
    if !group.is_empty() {
        session(&group, sources, now, &mut sessions, &mut skips);
    }
    (sessions, skips)
}

/// Seconds covered by the union of intervals (sorted by start).
fn covered(intervals: impl Iterator<Item = (i64, i64)>) -> i64 {
    let mut total = 0;
    let mut until = i64::MIN;
    for (start, end) in intervals {
        let from = start.max(until);
        if end > from {
            total += end - from;
        }
        until = until.max(end);
    }
    total
}

/// Whole minutes, rounded down: the stages of a session then never add up to
/// more than the session's own whole minutes (which the journal checks), as
/// rounding each stage to the nearest minute could (three stages each half a
/// minute up made a night one minute longer than itself).
fn minutes(seconds: i64) -> u32 {
    u32::try_from(seconds.max(0) / 60).unwrap_or(u32::MAX)
}

fn session(
    group: &[SleepRow],
    sources: &SourceNames,
    now: i64,
    out: &mut Vec<AppleSleep>,
    skips: &mut Vec<Skip>,
) {
    // The source to count: stage detail first, then the most asleep time.
    let mut candidates: Vec<u16> = group.iter().map(|r| r.source).collect();
    candidates.sort_unstable();
    candidates.dedup();
    let rank = |source: u16| {
        let rows = group.iter().filter(|r| r.source == source);
        let detailed = rows.clone().any(|r| {
            matches!(
                r.stage,
                SleepStage::Core | SleepStage::Deep | SleepStage::Rem
            )
        });
        let asleep = covered(
            rows.filter(|r| !matches!(r.stage, SleepStage::InBed | SleepStage::Awake))
                .map(|r| (r.start, r.end)),
        );
        (detailed, asleep, std::cmp::Reverse(source))
    };
    let source = candidates
        .into_iter()
        .max_by_key(|s| rank(*s))
        .expect("a group has a sample");
    let rows: Vec<&SleepRow> = group.iter().filter(|r| r.source == source).collect();
    let stage = |stage: SleepStage| {
        minutes(covered(
            rows.iter()
                .filter(|r| r.stage == stage)
                .map(|r| (r.start, r.end)),
        ))
    };
    // The session spans the stage samples; only in-bed ones when there are no others.
    let spanning: Vec<&&SleepRow> = {
        let staged: Vec<_> = rows
            .iter()
            .filter(|r| r.stage != SleepStage::InBed)
            .collect();
        if staged.is_empty() {
            rows.iter().collect()
        } else {
            staged
        }
    };
    let start = spanning.iter().map(|r| r.start).min().expect("non-empty");
    let end = spanning.iter().map(|r| r.end).max().expect("non-empty");
    let first = spanning.iter().min_by_key(|r| r.start).expect("non-empty");
    let source_name = sources.name(source);
    if end - start > MAX_SESSION_SECONDS {
        skips.push(Skip {
            line: first.line,
            reason: SLEEP_TOO_LONG,
            detail: format!(
                "sleep samples of {source_name:?} from line {} span {} h without a 2 h gap",
                first.line,
                (end - start) / 3600
            ),
        });
        return;
    }
    if end > now + MAX_FUTURE_SECONDS {
        skips.push(Skip {
            line: first.line,
            reason: IN_THE_FUTURE,
            detail: format!(
                "sleep of {source_name:?} from line {} ends after now",
                first.line
            ),
        });
        return;
    }
    let (Some(sleep_start), Some(sleep_end)) = (
        DateTime::from_timestamp(start, 0),
        DateTime::from_timestamp(end, 0),
    ) else {
        return;
    };
    out.push(AppleSleep {
        external_id: external_id(super::parse::SLEEP_TYPE, start, end, source_name),
        sleep_start,
        sleep_end,
        utc_offset_minutes: first.offset_minutes,
        deep_minutes: stage(SleepStage::Deep),
        rem_minutes: stage(SleepStage::Rem),
        light_minutes: stage(SleepStage::Core),
        asleep_unspecified_minutes: stage(SleepStage::Asleep),
        awake_minutes: stage(SleepStage::Awake),
        in_bed_minutes: stage(SleepStage::InBed),
        source_name: source_name.to_owned(),
    });
}

/// The journal's activity types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActivityKind {
    Walking,
    Running,
    Cycling,
    Strength,
    Swimming,
    Other,
}

impl ActivityKind {
    /// From `HKWorkoutActivityType…` without its prefix.
    pub fn from_apple(activity: &str) -> Self {
        match activity {
            "Walking" => Self::Walking,
            "Running" => Self::Running,
            "Cycling" => Self::Cycling,
            "TraditionalStrengthTraining" | "FunctionalStrengthTraining" => Self::Strength,
            "Swimming" => Self::Swimming,
            _ => Self::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Walking => "walking",
            Self::Running => "running",
            Self::Cycling => "cycling",
            Self::Strength => "strength",
            Self::Swimming => "swimming",
            Self::Other => "other",
        }
    }
}

/// A workout from Apple Health, for the journal's activities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppleWorkout {
    pub external_id: String,
    pub activity_type: ActivityKind,
    /// Apple's own type without `HKWorkoutActivityType` (`Yoga`, `Hiking`, ...).
    pub apple_activity_type: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub utc_offset_minutes: i32,
    /// 1-1440.
    pub duration_minutes: u32,
    pub calories_burned: Option<u32>,
    pub source_name: String,
}

pub const WORKOUT_DURATION: &str = "workout shorter than 30 s or longer than 24 h";

/// The workout's duration (Apple's `duration`, else end - start) rounded to
/// whole minutes; outside 1-1440 it is skipped.
pub fn workout(sample: &WorkoutSample, now: i64) -> Result<AppleWorkout, Skip> {
    let start = sample.start.timestamp();
    let end = sample.end.timestamp();
    if end > now + MAX_FUTURE_SECONDS {
        return Err(Skip {
            line: sample.line,
            reason: IN_THE_FUTURE,
            detail: format!("{} ending {} is after now", sample.activity, sample.end),
        });
    }
    let minutes_f = sample
        .duration_minutes
        .unwrap_or((end - start) as f64 / 60.0)
        .round();
    if !(1.0..=1440.0).contains(&minutes_f) {
        return Err(Skip {
            line: sample.line,
            reason: WORKOUT_DURATION,
            detail: format!("{} lasting {minutes_f} min", sample.activity),
        });
    }
    let (Some(start_utc), Some(end_utc)) = (
        DateTime::from_timestamp(start, 0),
        DateTime::from_timestamp(end, 0),
    ) else {
        return Err(Skip {
            line: sample.line,
            reason: WORKOUT_DURATION,
            detail: "dates out of range".into(),
        });
    };
    let kind = format!("HKWorkoutActivityType{}", sample.activity);
    Ok(AppleWorkout {
        external_id: external_id(&kind, start, end, &sample.source_name),
        activity_type: ActivityKind::from_apple(&sample.activity),
        apple_activity_type: sample.activity.clone(),
        start: start_utc,
        end: end_utc,
        utc_offset_minutes: sample.start.offset().local_minus_utc() / 60,
        duration_minutes: minutes_f as u32,
        calories_burned: sample
            .energy_kcal
            .map(|kcal| kcal.round().min(f64::from(u32::MAX)) as u32),
        source_name: sample.source_name.clone(),
    })
}
