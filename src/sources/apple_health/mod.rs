//! Apple Health export import (`cgm-hub import apple-health`): reads an
//! `export.zip` (streaming its `export.xml` entry) or an `export.xml`, and
//! stores its blood glucose as readings through the pipeline, and its sleep
//! analysis and workouts through a `JournalImportSink`.
//!
//! Exports are gigabytes, mostly step counts and heart rates: the parser
//! (`parse`) reads one element at a time and keeps only the wanted items,
//! compacted (24 bytes per glucose reading), so memory follows the number of
//! glucose readings, not the file's size. Nothing is stored until the whole
//! file has parsed: a truncated or malformed file stores nothing. A record of
//! a wanted kind with a bad value (a glucose of 900 mg/dL, an unknown sleep
//! value) is skipped, counted and reported with its line. Storing is
//! idempotent (readings dedup on (user, timestamp); journal items carry a
//! deterministic `external_id`), so a run cut short by the store is completed
//! by running it again, and a second import of the same file stores nothing new.

pub mod journal;
pub mod parse;
pub mod translate;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::domain::UserId;
use crate::pipeline::{Pipeline, RecordResult, Tally};
use crate::store::StoreError;
pub use journal::StoreJournal;
pub use parse::{ExportParser, ParseError, Parsed, Skip};
pub use translate::{ActivityKind, AppleSleep, AppleWorkout};
use translate::{GlucoseRow, SourceNames};

/// Readings per pipeline batch (one store transaction each).
pub const READING_BATCH: usize = 5_000;

/// What a journal write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutCounts {
    pub new: u64,
    /// Already stored (same `external_id`): nothing written.
    pub duplicate: u64,
    /// Refused by the journal's rules (logged with the reasons): not stored.
    pub refused: u64,
    /// The first `REFUSAL_EXAMPLES` refusals, as "<external id>: <reasons>",
    /// for the summary (an import's operator sees why without the logs).
    pub refusals: Vec<String>,
}

/// Refusals the summary shows per kind.
pub const REFUSAL_EXAMPLES: usize = 5;

/// Where imported sleep sessions and workouts go: the journal store, which
/// must store them idempotently by `external_id`.
#[async_trait]
pub trait JournalImportSink: Send + Sync {
    async fn put_sleep(
        &self,
        user: &UserId,
        sessions: Vec<AppleSleep>,
    ) -> Result<PutCounts, StoreError>;
    async fn put_workouts(
        &self,
        user: &UserId,
        workouts: Vec<AppleWorkout>,
    ) -> Result<PutCounts, StoreError>;
    /// False for a sink that only counts (no journal storage behind it): the
    /// summary then says that sleep and workouts were not stored.
    fn stores(&self) -> bool {
        true
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {message}")]
    Open { path: String, message: String },
    #[error("{path}: {source}; nothing was stored")]
    Parse {
        path: String,
        #[source]
        source: ParseError,
    },
    #[error(
        "storing failed after {stored} of {total} readings ({error}); \
         run the import again: what is stored already counts as duplicate"
    )]
    Store {
        stored: u64,
        total: u64,
        #[source]
        error: StoreError,
    },
}

/// Where the import is, reported at most once a second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Progress {
    Reading {
        bytes: u64,
        total_bytes: u64,
        records: u64,
        elapsed: Duration,
    },
    Storing {
        readings_done: u64,
        readings_total: u64,
        elapsed: Duration,
    },
}

/// Records stepped over, by reason, with the first few lines of each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skips {
    pub by_reason: BTreeMap<&'static str, SkipGroup>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkipGroup {
    pub count: u64,
    /// At most `Skips::EXAMPLES` of them, in file order.
    pub examples: Vec<String>,
}

impl Skips {
    pub const EXAMPLES: usize = 5;

    pub fn add(&mut self, reason: &'static str, example: impl FnOnce() -> String) {
        let group = self.by_reason.entry(reason).or_default();
        group.count += 1;
        if group.examples.len() < Self::EXAMPLES {
            group.examples.push(example());
        }
    }

    fn skip(&mut self, skip: Skip) {
        self.add(skip.reason, || {
            format!("line {}: {}", skip.line, skip.detail)
        });
    }

    pub fn total(&self) -> u64 {
        self.by_reason.values().map(|g| g.count).sum()
    }
}

/// The wanted contents of an export, parsed completely.
#[derive(Debug, Default)]
pub struct Contents {
    /// One per instant, sorted by time.
    pub glucose: Vec<GlucoseRow>,
    pub sources: SourceNames,
    /// Glucose samples at an instant that already had one (the conflict rule
    /// kept one of them).
    pub same_instant: u64,
    pub sleep: Vec<AppleSleep>,
    pub workouts: Vec<AppleWorkout>,
    pub skips: Skips,
    pub position: parse::Position,
    pub total_bytes: u64,
    pub elapsed: Duration,
}

/// The export's XML as a reader, and its size: the `export.xml` entry of a zip
/// (decompressed as it is read), or the file itself.
fn with_export<T>(
    path: &Path,
    read: impl FnOnce(&mut dyn Read, u64) -> Result<T, ImportError>,
) -> Result<T, ImportError> {
    let shown = path.display().to_string();
    let open_error = |message: String| ImportError::Open {
        path: shown.clone(),
        message,
    };
    let mut file = File::open(path).map_err(|e| open_error(e.to_string()))?;
    let mut magic = [0u8; 4];
    let n = file
        .read(&mut magic)
        .map_err(|e| open_error(e.to_string()))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| open_error(e.to_string()))?;
    if n == 4 && magic == *b"PK\x03\x04" {
        let mut archive = zip::ZipArchive::new(BufReader::new(file))
            .map_err(|e| open_error(format!("not a readable zip: {e}")))?;
        // `apple_health_export/export.xml` (the folder's name is localized);
        // not `export_cda.xml`.
        let index = (0..archive.len())
            .find(|&i| {
                archive
                    .name_for_index(i)
                    .and_then(Result::ok)
                    .is_some_and(|name| name == "export.xml" || name.ends_with("/export.xml"))
            })
            .ok_or_else(|| open_error("the zip has no export.xml".into()))?;
        let mut entry = archive
            .by_index(index)
            .map_err(|e| open_error(format!("export.xml in the zip: {e}")))?;
        let size = entry.size();
        read(&mut entry, size)
    } else {
        let size = file
            .metadata()
            .map_err(|e| open_error(e.to_string()))?
            .len();
        read(&mut file, size)
    }
}

/// Parses the whole export (blocking: run it off the async runtime).
pub fn read_export(
    path: &Path,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Contents, ImportError> {
    let started = Instant::now();
    let parse_error = |source: ParseError| ImportError::Parse {
        path: path.display().to_string(),
        source,
    };
    with_export(path, |input, total_bytes| {
        let mut parser = ExportParser::new(input);
        let mut contents = Contents {
            total_bytes,
            ..Contents::default()
        };
        let mut sleep_rows = Vec::new();
        let now = chrono::Utc::now().timestamp();
        while let Some(item) = parser.next_item().map_err(parse_error)? {
            match item {
                Parsed::Glucose(sample) => {
                    match translate::glucose_row(&sample, &mut contents.sources) {
                        Ok(row) => contents.glucose.push(row),
                        Err(skip) => contents.skips.skip(skip),
                    }
                }
                Parsed::Sleep(sample) => {
                    sleep_rows.push(translate::sleep_row(&sample, &mut contents.sources))
                }
                Parsed::Workout(sample) => match translate::workout(&sample, now) {
                    Ok(workout) => contents.workouts.push(workout),
                    Err(skip) => contents.skips.skip(skip),
                },
                Parsed::Skipped(skip) => contents.skips.skip(skip),
            }
            if parser.progress_due() {
                let position = parser.position();
                progress(&Progress::Reading {
                    bytes: position.bytes,
                    total_bytes,
                    records: position.records,
                    elapsed: started.elapsed(),
                });
            }
        }
        contents.position = parser.position();
        contents.same_instant = translate::one_per_instant(&mut contents.glucose);
        let (sessions, skips) = translate::sleep_sessions(sleep_rows, &contents.sources, now);
        contents.sleep = sessions;
        for skip in skips {
            contents.skips.skip(skip);
        }
        // The same workout twice in one file (two sources' copies keep theirs).
        contents
            .workouts
            .sort_by(|a, b| (a.start, &a.external_id).cmp(&(b.start, &b.external_id)));
        contents
            .workouts
            .dedup_by(|a, b| a.external_id == b.external_id);
        contents.elapsed = started.elapsed();
        Ok(contents)
    })
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportSummary {
    pub bytes: u64,
    /// Every `Record` element read, of any type.
    pub records: u64,
    pub workout_elements: u64,
    /// Distinct glucose instants sent to the pipeline, and what it did with them.
    pub readings: u64,
    pub tally: Tally,
    pub same_instant: u64,
    pub sleep_sessions: u64,
    pub sleep: PutCounts,
    pub workouts: u64,
    pub workouts_put: PutCounts,
    /// False when the sink only counted (no journal storage yet).
    pub journal_stored: bool,
    pub skips: Skips,
    pub read_time: Duration,
    pub total_time: Duration,
}

/// Parses the export at `path` completely, then stores its readings (in
/// batches of `READING_BATCH` through the pipeline), sleep sessions and
/// workouts (through `sink`).
pub async fn import(
    path: PathBuf,
    user: &UserId,
    pipeline: &Pipeline,
    sink: &dyn JournalImportSink,
    mut progress: impl FnMut(&Progress) + Send + 'static,
) -> Result<ImportSummary, ImportError> {
    let started = Instant::now();
    let (contents, mut progress) = tokio::task::spawn_blocking(move || {
        read_export(&path, &mut progress).map(|contents| (contents, progress))
    })
    .await
    .map_err(|e| ImportError::Open {
        path: "export".into(),
        message: format!("the parser stopped: {e}"),
    })??;
    let mut skips = contents.skips;
    let total = contents.glucose.len() as u64;
    let mut tally = Tally::default();
    let mut last_report = Instant::now();
    for chunk in contents.glucose.chunks(READING_BATCH) {
        let batch = chunk
            .iter()
            .map(|row| translate::reading(row, user, &contents.sources))
            .collect();
        let results = pipeline
            .ingest(batch)
            .await
            .map_err(|error| ImportError::Store {
                stored: tally.inserted + tally.updated + tally.duplicates,
                total,
                error,
            })?;
        for (row, result) in chunk.iter().zip(&results) {
            if let RecordResult::Rejected(errors) = result {
                skips.add("blood glucose refused by the reading pipeline", || {
                    let at = chrono::DateTime::from_timestamp(row.start, 0)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default();
                    let why: Vec<String> = errors
                        .iter()
                        .map(|e| format!("{} {}", e.pointer, e.message))
                        .collect();
                    format!("{at}: {}", why.join(", "))
                });
            }
        }
        let batch_tally = Tally::of(&results);
        tally.inserted += batch_tally.inserted;
        tally.updated += batch_tally.updated;
        tally.duplicates += batch_tally.duplicates;
        tally.rejected += batch_tally.rejected;
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            progress(&Progress::Storing {
                readings_done: tally.inserted + tally.updated + tally.duplicates + tally.rejected,
                readings_total: total,
                elapsed: started.elapsed(),
            });
        }
    }
    let store_error = |error| ImportError::Store {
        stored: total,
        total,
        error,
    };
    let sleep_sessions = contents.sleep.len() as u64;
    let workouts = contents.workouts.len() as u64;
    let sleep = sink
        .put_sleep(user, contents.sleep)
        .await
        .map_err(store_error)?;
    let workouts_put = sink
        .put_workouts(user, contents.workouts)
        .await
        .map_err(store_error)?;
    Ok(ImportSummary {
        bytes: contents.position.bytes,
        records: contents.position.records,
        workout_elements: contents.position.workouts,
        readings: total,
        tally,
        same_instant: contents.same_instant,
        sleep_sessions,
        sleep,
        workouts,
        workouts_put,
        journal_stored: sink.stores(),
        skips,
        read_time: contents.elapsed,
        total_time: started.elapsed(),
    })
}

#[cfg(test)]
mod tests;
