//! The streaming reader of Apple Health's `export.xml`: one element at a time
//! through quick-xml, counting lines as it goes, so that memory stays flat
//! whatever the file's size and every problem names its line. It turns the
//! elements the import needs (blood glucose and sleep analysis `Record`s,
//! `Workout`s) into typed samples and steps over everything else after reading
//! one attribute (`type`).

use std::io::{self, BufRead, Read};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::domain::GlucoseUnit;

pub const GLUCOSE_TYPE: &str = "HKQuantityTypeIdentifierBloodGlucose";
pub const SLEEP_TYPE: &str = "HKCategoryTypeIdentifierSleepAnalysis";
const WAS_USER_ENTERED: &str = "HKWasUserEntered";
const ACTIVE_ENERGY: &str = "HKQuantityTypeIdentifierActiveEnergyBurned";

/// A structural problem with the file: nothing from it is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not well-formed XML (including a malformed attribute).
    #[error("line {line}: {message}")]
    Syntax { line: u64, message: String },
    /// The input ended inside an element: the export was cut short.
    #[error(
        "line {line}: the file ends inside <{element}> (opened at line {opened}): \
         the export is truncated (export it again, or check the copy)"
    )]
    Truncated {
        line: u64,
        element: String,
        opened: u64,
    },
    /// Well-formed, but not an Apple Health export.
    #[error("line {line}: {message}")]
    NotAnExport { line: u64, message: String },
    #[error("reading the file: {0}")]
    Io(String),
}

/// A `BufRead` over any reader that counts the lines and bytes the XML reader
/// has consumed, so that an event's line is known without holding the text.
pub struct Counted<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    filled: usize,
    lines: u64,
    bytes: u64,
}

impl<R: Read> Counted<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: vec![0; 256 * 1024].into_boxed_slice(),
            pos: 0,
            filled: 0,
            lines: 0,
            bytes: 0,
        }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos >= self.filled {
            self.filled = loop {
                match self.inner.read(&mut self.buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            self.pos = 0;
        }
        Ok(&self.buf[self.pos..self.filled])
    }

    fn consume(&mut self, amt: usize) {
        let amt = amt.min(self.filled - self.pos);
        let consumed = &self.buf[self.pos..self.pos + amt];
        self.lines += consumed.iter().filter(|&&b| b == b'\n').count() as u64;
        self.bytes += amt as u64;
        self.pos += amt;
    }
}

/// A sleep analysis sample's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SleepStage {
    InBed,
    /// `Asleep` (before iOS 16) and `AsleepUnspecified`: asleep, stage unknown.
    Asleep,
    /// `AsleepCore`: light sleep.
    Core,
    Deep,
    Rem,
    Awake,
}

impl SleepStage {
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw.strip_prefix("HKCategoryValueSleepAnalysis")? {
            "InBed" => Self::InBed,
            "Asleep" | "AsleepUnspecified" => Self::Asleep,
            "AsleepCore" => Self::Core,
            "AsleepDeep" => Self::Deep,
            "AsleepREM" => Self::Rem,
            "Awake" => Self::Awake,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GlucoseSample {
    pub line: u64,
    pub start: DateTime<FixedOffset>,
    pub end: DateTime<FixedOffset>,
    pub value: f64,
    pub unit: GlucoseUnit,
    pub source_name: String,
    /// `HKWasUserEntered` = 1 in its metadata: typed in by hand.
    pub user_entered: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SleepSample {
    pub line: u64,
    pub start: DateTime<FixedOffset>,
    pub end: DateTime<FixedOffset>,
    pub stage: SleepStage,
    pub source_name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkoutSample {
    pub line: u64,
    /// `workoutActivityType` without the `HKWorkoutActivityType` prefix.
    pub activity: String,
    pub start: DateTime<FixedOffset>,
    pub end: DateTime<FixedOffset>,
    /// `duration` in minutes (from `durationUnit`), when given.
    pub duration_minutes: Option<f64>,
    /// `totalEnergyBurned` (older exports) or the `ActiveEnergyBurned`
    /// `WorkoutStatistics` child (iOS 16 on), in kcal.
    pub energy_kcal: Option<f64>,
    pub source_name: String,
}

/// One record the file holds for the import, or one it had to step over.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Glucose(GlucoseSample),
    Sleep(SleepSample),
    Workout(WorkoutSample),
    Skipped(Skip),
}

/// A record of a wanted kind with a bad value: stepped over, counted and reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub line: u64,
    /// A short, stable reason (the summary groups by it).
    pub reason: &'static str,
    pub detail: String,
}

/// How far the reader is: for progress and the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    pub bytes: u64,
    pub lines: u64,
    /// Every `Record` element, whatever its type or depth.
    pub records: u64,
    pub workouts: u64,
}

/// The element being read whose children matter.
enum Open {
    None,
    Glucose { sample: GlucoseSample, depth: usize },
    Workout { sample: WorkoutSample, depth: usize },
}

pub struct ExportParser<R> {
    reader: Reader<Counted<R>>,
    buf: Vec<u8>,
    /// Names of the open elements (buffers reused), with the line each opened at.
    stack: Vec<(String, u64)>,
    depth: usize,
    open: Open,
    seen_root: bool,
    records: u64,
    workouts: u64,
    progress_every: Duration,
    last_progress: Instant,
    events_since_check: u32,
}

enum Step {
    Continue,
    Item(Parsed),
    End,
}

impl<R: Read> ExportParser<R> {
    pub fn new(input: R) -> Self {
        let mut reader = Reader::from_reader(Counted::new(input));
        let config = reader.config_mut();
        config.check_end_names = true;
        config.expand_empty_elements = false;
        Self {
            reader,
            buf: Vec::with_capacity(4096),
            stack: Vec::new(),
            depth: 0,
            open: Open::None,
            seen_root: false,
            records: 0,
            workouts: 0,
            progress_every: Duration::from_secs(1),
            last_progress: Instant::now(),
            events_since_check: 0,
        }
    }

    pub fn position(&self) -> Position {
        let counted = self.reader.get_ref();
        Position {
            bytes: counted.bytes,
            lines: counted.lines,
            records: self.records,
            workouts: self.workouts,
        }
    }

    /// True at most once per second: time for the caller to report progress.
    pub fn progress_due(&mut self) -> bool {
        self.events_since_check += 1;
        if self.events_since_check < 4096 {
            return false;
        }
        self.events_since_check = 0;
        if self.last_progress.elapsed() >= self.progress_every {
            self.last_progress = Instant::now();
            true
        } else {
            false
        }
    }

    /// The next wanted record (or skip), or None at the end of a complete document.
    pub fn next_item(&mut self) -> Result<Option<Parsed>, ParseError> {
        let mut buf = std::mem::take(&mut self.buf);
        let out = loop {
            buf.clear();
            match self.step(&mut buf) {
                Ok(Step::Continue) => continue,
                Ok(Step::Item(item)) => break Ok(Some(item)),
                Ok(Step::End) => break Ok(None),
                Err(e) => break Err(e),
            }
        };
        self.buf = buf;
        out
    }

    fn line(&self) -> u64 {
        self.reader.get_ref().lines + 1
    }

    fn step(&mut self, buf: &mut Vec<u8>) -> Result<Step, ParseError> {
        let line = self.line();
        let event = match self.reader.read_event_into(buf) {
            Ok(event) => event,
            Err(quick_xml::Error::Io(e)) => return Err(ParseError::Io(e.to_string())),
            Err(e) => {
                // A cut inside a tag is a truncation too; name the element it is in.
                let message = match (&e, self.stack[..self.depth].last()) {
                    (quick_xml::Error::Syntax(_), Some((name, opened))) => {
                        format!(
                            "{e} (inside <{name}> opened at line {opened}; a truncated export?)"
                        )
                    }
                    _ => e.to_string(),
                };
                return Err(ParseError::Syntax { line, message });
            }
        };
        match event {
            Event::Start(e) => {
                let item = self.element(&e, line, true)?;
                self.push(e.name().as_ref(), line);
                Ok(item.map_or(Step::Continue, Step::Item))
            }
            Event::Empty(e) => Ok(self
                .element(&e, line, false)?
                .map_or(Step::Continue, Step::Item)),
            Event::End(_) => {
                self.depth = self.depth.saturating_sub(1);
                let closes = match &self.open {
                    Open::Glucose { depth, .. } | Open::Workout { depth, .. } => {
                        *depth == self.depth
                    }
                    Open::None => false,
                };
                if closes {
                    return Ok(match std::mem::replace(&mut self.open, Open::None) {
                        Open::Glucose { sample, .. } => Step::Item(Parsed::Glucose(sample)),
                        Open::Workout { sample, .. } => Step::Item(Parsed::Workout(sample)),
                        Open::None => Step::Continue,
                    });
                }
                Ok(Step::Continue)
            }
            Event::Eof => {
                if self.depth > 0 {
                    let (name, opened) = &self.stack[self.depth - 1];
                    return Err(ParseError::Truncated {
                        line: self.line(),
                        element: name.clone(),
                        opened: *opened,
                    });
                }
                if !self.seen_root {
                    return Err(ParseError::NotAnExport {
                        line: self.line(),
                        message: "no <HealthData> element: not an Apple Health export.xml".into(),
                    });
                }
                Ok(Step::End)
            }
            // The XML declaration, the DTD (<!DOCTYPE HealthData [...]>), text
            // between elements, comments: nothing to read.
            _ => Ok(Step::Continue),
        }
    }

    fn push(&mut self, name: &str, line: u64) {
        if self.stack.len() == self.depth {
            self.stack.push((String::new(), 0));
        }
        let slot = &mut self.stack[self.depth];
        slot.0.clear();
        slot.0.push_str(name);
        slot.1 = line;
        self.depth += 1;
    }

    /// A start or empty element at `self.depth` (its parent's depth + 1 - 1).
    fn element(
        &mut self,
        e: &BytesStart<'_>,
        line: u64,
        has_children: bool,
    ) -> Result<Option<Parsed>, ParseError> {
        let name = e.name();
        let name = name.as_ref();
        if self.depth == 0 {
            if name != "HealthData" {
                return Err(ParseError::NotAnExport {
                    line,
                    message: format!(
                        "the root element is <{name}>, not <HealthData>: not an Apple Health export.xml"
                    ),
                });
            }
            self.seen_root = true;
            return Ok(None);
        }
        match name {
            "Record" => {
                self.records += 1;
                // Records inside a Correlation repeat top-level ones (the DTD says so).
                if self.depth != 1 {
                    return Ok(None);
                }
                let Some(kind) = record_type(e, line)? else {
                    return Ok(None);
                };
                match kind {
                    Wanted::Glucose => match glucose(e, line)? {
                        Ok(sample) if has_children => {
                            self.open = Open::Glucose {
                                sample,
                                depth: self.depth,
                            };
                            Ok(None)
                        }
                        Ok(sample) => Ok(Some(Parsed::Glucose(sample))),
                        Err(skip) => Ok(Some(Parsed::Skipped(skip))),
                    },
                    Wanted::Sleep => Ok(Some(match sleep(e, line)? {
                        Ok(sample) => Parsed::Sleep(sample),
                        Err(skip) => Parsed::Skipped(skip),
                    })),
                }
            }
            "Workout" if self.depth == 1 => {
                self.workouts += 1;
                match workout(e, line)? {
                    Ok(sample) if has_children => {
                        self.open = Open::Workout {
                            sample,
                            depth: self.depth,
                        };
                        Ok(None)
                    }
                    Ok(sample) => Ok(Some(Parsed::Workout(sample))),
                    Err(skip) => Ok(Some(Parsed::Skipped(skip))),
                }
            }
            "MetadataEntry" => {
                if let Open::Glucose { sample, depth } = &mut self.open {
                    if self.depth == *depth + 1 {
                        let attrs = attributes(e, line, &["key", "value"])?;
                        if attrs[0].as_deref() == Some(WAS_USER_ENTERED) {
                            sample.user_entered = attrs[1].as_deref() == Some("1");
                        }
                    }
                }
                Ok(None)
            }
            "WorkoutStatistics" => {
                if let Open::Workout { sample, depth } = &mut self.open {
                    if self.depth == *depth + 1 {
                        let attrs = attributes(e, line, &["type", "sum", "unit"])?;
                        if attrs[0].as_deref() == Some(ACTIVE_ENERGY) {
                            if let (Some(sum), Some(unit)) = (&attrs[1], &attrs[2]) {
                                sample.energy_kcal = sum
                                    .parse::<f64>()
                                    .ok()
                                    .and_then(|v| kcal(v, unit))
                                    .or(sample.energy_kcal);
                            }
                        }
                    }
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }
}

enum Wanted {
    Glucose,
    Sleep,
}

/// The `type` of a Record (its first attribute in Apple's exports), if wanted.
fn record_type(e: &BytesStart<'_>, line: u64) -> Result<Option<Wanted>, ParseError> {
    for attr in e.attributes().with_checks(false) {
        let attr = attr.map_err(|err| malformed(line, "Record", err))?;
        if attr.key.as_ref() == "type" {
            return Ok(match &*attr.value {
                GLUCOSE_TYPE => Some(Wanted::Glucose),
                SLEEP_TYPE => Some(Wanted::Sleep),
                _ => None,
            });
        }
    }
    Ok(None)
}

fn malformed(line: u64, element: &str, err: impl std::fmt::Display) -> ParseError {
    ParseError::Syntax {
        line,
        message: format!("malformed attribute in <{element}>: {err}"),
    }
}

/// The values of the named attributes (unescaped), in the order asked.
fn attributes<const N: usize>(
    e: &BytesStart<'_>,
    line: u64,
    names: &[&str; N],
) -> Result<[Option<String>; N], ParseError> {
    let element = e.name().as_ref().to_owned();
    let mut out: [Option<String>; N] = std::array::from_fn(|_| None);
    for attr in e.attributes() {
        let attr = attr.map_err(|err| malformed(line, &element, err))?;
        if let Some(i) = names.iter().position(|n| *n == attr.key.as_ref()) {
            let value = quick_xml::escape::unescape(&attr.value).map_err(|err| {
                malformed(
                    line,
                    &element,
                    format_args!("attribute {}: {err}", names[i]),
                )
            })?;
            out[i] = Some(value.into_owned());
        }
    }
    Ok(out)
}

/// Apple's date format: `2024-03-01 07:15:00 +0100`.
pub fn parse_date(raw: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S %z").ok()
}

fn skip(line: u64, reason: &'static str, detail: String) -> Skip {
    Skip {
        line,
        reason,
        detail,
    }
}

/// A required attribute, or the skip that names it.
fn required<'a>(
    value: &'a Option<String>,
    name: &str,
    line: u64,
    reason: &'static str,
) -> Result<&'a str, Skip> {
    value
        .as_deref()
        .ok_or_else(|| skip(line, reason, format!("attribute {name} is missing")))
}

fn date(
    value: &Option<String>,
    name: &str,
    line: u64,
    reason: &'static str,
) -> Result<DateTime<FixedOffset>, Skip> {
    let raw = required(value, name, line, reason)?;
    parse_date(raw).ok_or_else(|| {
        skip(
            line,
            reason,
            format!("{name}={raw:?} is not a date like 2024-03-01 07:15:00 +0100"),
        )
    })
}

fn span(
    start: &Option<String>,
    end: &Option<String>,
    line: u64,
    reason: &'static str,
) -> Result<(DateTime<FixedOffset>, DateTime<FixedOffset>), Skip> {
    let start = date(start, "startDate", line, reason)?;
    let end = date(end, "endDate", line, reason)?;
    if end < start {
        return Err(skip(
            line,
            reason,
            format!("endDate {end} is before startDate {start}"),
        ));
    }
    Ok((start, end))
}

const BAD_GLUCOSE: &str = "blood glucose record with a bad attribute";
const BAD_SLEEP: &str = "sleep analysis record with a bad attribute";
const BAD_WORKOUT: &str = "workout with a bad attribute";

/// The unit of a blood glucose record: `mg/dL`, or `mmol<180.1558800000541>/L`
/// (Apple writes the molar mass it converts with into the unit).
pub fn glucose_unit(raw: &str) -> Option<GlucoseUnit> {
    if raw == "mg/dL" {
        return Some(GlucoseUnit::MgDl);
    }
    let rest = raw.strip_prefix("mmol")?.strip_suffix("/L")?;
    let plain = rest.is_empty();
    let with_mass = rest
        .strip_prefix('<')
        .and_then(|r| r.strip_suffix('>'))
        .and_then(|m| m.parse::<f64>().ok())
        .is_some_and(|m| (180.0..180.3).contains(&m));
    (plain || with_mass).then_some(GlucoseUnit::MmolL)
}

fn glucose(e: &BytesStart<'_>, line: u64) -> Result<Result<GlucoseSample, Skip>, ParseError> {
    let [unit, value, start, end, source] = attributes(
        e,
        line,
        &["unit", "value", "startDate", "endDate", "sourceName"],
    )?;
    Ok((|| {
        let unit_raw = required(&unit, "unit", line, BAD_GLUCOSE)?;
        let unit = glucose_unit(unit_raw).ok_or_else(|| {
            skip(
                line,
                BAD_GLUCOSE,
                format!("unit={unit_raw:?} is neither mg/dL nor mmol/L"),
            )
        })?;
        let raw = required(&value, "value", line, BAD_GLUCOSE)?;
        let value = raw
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| skip(line, BAD_GLUCOSE, format!("value={raw:?} is not a number")))?;
        let (start, end) = span(&start, &end, line, BAD_GLUCOSE)?;
        Ok(GlucoseSample {
            line,
            start,
            end,
            value,
            unit,
            source_name: source.unwrap_or_default(),
            user_entered: false,
        })
    })())
}

fn sleep(e: &BytesStart<'_>, line: u64) -> Result<Result<SleepSample, Skip>, ParseError> {
    let [value, start, end, source] =
        attributes(e, line, &["value", "startDate", "endDate", "sourceName"])?;
    Ok((|| {
        let raw = required(&value, "value", line, BAD_SLEEP)?;
        let stage = SleepStage::parse(raw).ok_or_else(|| {
            skip(
                line,
                BAD_SLEEP,
                format!("value={raw:?} is not a known HKCategoryValueSleepAnalysis"),
            )
        })?;
        let (start, end) = span(&start, &end, line, BAD_SLEEP)?;
        Ok(SleepSample {
            line,
            start,
            end,
            stage,
            source_name: source.unwrap_or_default(),
        })
    })())
}

/// Energy in kcal from a value in `Cal`/`kcal` or `kJ`.
fn kcal(value: f64, unit: &str) -> Option<f64> {
    match unit {
        "Cal" | "kcal" => Some(value),
        "kJ" => Some(value / 4.184),
        _ => None,
    }
    .filter(|v| v.is_finite() && *v >= 0.0)
}

fn workout(e: &BytesStart<'_>, line: u64) -> Result<Result<WorkoutSample, Skip>, ParseError> {
    let [activity, duration, duration_unit, energy, energy_unit, start, end, source] = attributes(
        e,
        line,
        &[
            "workoutActivityType",
            "duration",
            "durationUnit",
            "totalEnergyBurned",
            "totalEnergyBurnedUnit",
            "startDate",
            "endDate",
            "sourceName",
        ],
    )?;
    Ok((|| {
        let raw = required(&activity, "workoutActivityType", line, BAD_WORKOUT)?;
        let activity = raw
            .strip_prefix("HKWorkoutActivityType")
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                skip(
                    line,
                    BAD_WORKOUT,
                    format!("workoutActivityType={raw:?} is not an HKWorkoutActivityType"),
                )
            })?
            .to_owned();
        let duration_minutes = match &duration {
            None => None,
            Some(raw) => {
                let unit = duration_unit.as_deref().unwrap_or("min");
                let factor = match unit {
                    "min" => 1.0,
                    "s" => 1.0 / 60.0,
                    "hr" | "h" => 60.0,
                    _ => {
                        return Err(skip(
                            line,
                            BAD_WORKOUT,
                            format!("durationUnit={unit:?} is not min, s or hr"),
                        ))
                    }
                };
                let value = raw
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| {
                        skip(
                            line,
                            BAD_WORKOUT,
                            format!("duration={raw:?} is not a non-negative number"),
                        )
                    })?;
                Some(value * factor)
            }
        };
        let energy_kcal = match &energy {
            None => None,
            Some(raw) => {
                let unit = energy_unit.as_deref().unwrap_or("kcal");
                let kcal = raw.parse::<f64>().ok().and_then(|v| kcal(v, unit));
                Some(kcal.ok_or_else(|| {
                    skip(
                        line,
                        BAD_WORKOUT,
                        format!("totalEnergyBurned={raw:?} {unit} is not an energy in kcal or kJ"),
                    )
                })?)
            }
        };
        let (start, end) = span(&start, &end, line, BAD_WORKOUT)?;
        Ok(WorkoutSample {
            line,
            activity,
            start,
            end,
            duration_minutes,
            energy_kcal,
            source_name: source.unwrap_or_default(),
        })
    })())
}
