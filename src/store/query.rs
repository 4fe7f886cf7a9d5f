//! Range queries with stable keyset pagination, built once over `ReadingStore::scan_readings`
//! (readings as values) and `ReadingStore::scan_encoded` (readings encoded as the backend reads
//! them, for the range endpoint's hot path).
//!
//! Ranges are half-open: `start` inclusive, `end` exclusive. A page is positioned by
//! a `Seek` relative to a timestamp; because (user, timestamp) is unique, paging by
//! timestamp visits every reading exactly once even while new readings arrive.

use chrono::{DateTime, Utc};

use crate::domain::{Glucose, ReadingTime, ReadingType, StoredReading, Trend, TrendRate, UserId};

use super::{ReadingStore, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

impl Order {
    fn reversed(self) -> Self {
        match self {
            Order::Asc => Order::Desc,
            Order::Desc => Order::Asc,
        }
    }
}

/// A position between pages, in listing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seek {
    /// The readings that follow the one at this timestamp (unix seconds).
    After(i64),
    /// The readings that precede the one at this timestamp.
    Before(i64),
}

/// One bounded keyset scan: readings of `user_id` with `from <= ts < until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub user_id: UserId,
    pub from: i64,
    pub until: i64,
    pub order: Order,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub user_id: UserId,
    pub start: Option<ReadingTime>,
    pub end: Option<ReadingTime>,
    pub order: Order,
    pub limit: usize,
    pub seek: Option<Seek>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub readings: Vec<StoredReading>,
    pub next: Option<Seek>,
    pub prev: Option<Seek>,
}

/// What a page request scans, and how the scan's readings become the page.
struct Plan {
    /// `None` when the cursor leaves nothing to read.
    scan: Option<Scan>,
    /// A `Before` page is read from the cursor backwards (in reverse listing
    /// order), then turned around.
    backwards: bool,
}

fn plan(req: &PageRequest) -> Plan {
    let mut from = req.start.map_or(i64::MIN, ReadingTime::unix_seconds);
    let mut until = req.end.map_or(i64::MAX, ReadingTime::unix_seconds);
    let backwards = matches!(req.seek, Some(Seek::Before(_)));
    if let Some(Seek::After(x) | Seek::Before(x)) = req.seek {
        // Everything on the far side of x, excluding x, in timestamp terms:
        // "after x" is "> x" ascending but "< x" descending, and "before" the reverse.
        let later_than_x = matches!(
            (req.seek, req.order),
            (Some(Seek::After(_)), Order::Asc) | (Some(Seek::Before(_)), Order::Desc)
        );
        if later_than_x {
            from = from.max(x.saturating_add(1));
        } else {
            until = until.min(x);
        }
    }
    let order = if backwards {
        req.order.reversed()
    } else {
        req.order
    };
    Plan {
        scan: (from < until).then(|| Scan {
            user_id: req.user_id.clone(),
            from,
            until,
            order,
            limit: req.limit + 1,
        }),
        backwards,
    }
}

impl Plan {
    /// The cursors of a page whose readings (in listing order) span `first..=last`,
    /// given whether the scan found more than the page holds.
    fn cursors(
        &self,
        req: &PageRequest,
        first: Option<i64>,
        last: Option<i64>,
        more: bool,
    ) -> (Option<Seek>, Option<Seek>) {
        let (has_next, has_prev) = if self.backwards {
            (first.is_some(), more)
        } else {
            (more, req.seek.is_some() && first.is_some())
        };
        (
            last.filter(|_| has_next).map(Seek::After),
            first.filter(|_| has_prev).map(Seek::Before),
        )
    }
}

pub async fn fetch_page(store: &dyn ReadingStore, req: &PageRequest) -> Result<Page, StoreError> {
    let plan = plan(req);
    let mut readings = match &plan.scan {
        None => Vec::new(),
        Some(scan) => store.scan_readings(scan.clone()).await?,
    };
    let more = readings.len() > req.limit;
    readings.truncate(req.limit);
    if plan.backwards {
        readings.reverse();
    }
    let first = readings.first().map(|r| r.reading.timestamp.unix_seconds());
    let last = readings.last().map(|r| r.reading.timestamp.unix_seconds());
    let (next, prev) = plan.cursors(req, first, last, more);
    Ok(Page {
        readings,
        next,
        prev,
    })
}

/// A stored reading borrowed from wherever the backend holds it (a database row
/// while it is being read, or a `StoredReading`), with every field already checked
/// as `StoredReading`'s are. The range path encodes these straight into the response
/// instead of building a `StoredReading` per row and a view of it: for a one-day page
/// (288 readings) that building was a third of the request's instructions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadingRef<'r> {
    pub user_id: &'r str,
    pub timestamp: ReadingTime,
    pub glucose: Glucose,
    pub trend: Option<Trend>,
    pub trend_rate: Option<TrendRate>,
    pub device_id: Option<&'r str>,
    pub serial_number: Option<&'r str>,
    pub transmitter_id: Option<&'r str>,
    pub reading_type: ReadingType,
    pub source: &'r str,
    pub source_record_id: Option<&'r str>,
    pub display_offset_minutes: Option<i16>,
    pub version: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl<'r> From<&'r StoredReading> for ReadingRef<'r> {
    fn from(s: &'r StoredReading) -> Self {
        let r = &s.reading;
        Self {
            user_id: r.user_id.as_str(),
            timestamp: r.timestamp,
            glucose: r.glucose,
            trend: r.trend,
            trend_rate: r.trend_rate,
            device_id: r.device.device_id(),
            serial_number: r.device.serial_number(),
            transmitter_id: r.device.transmitter_id(),
            reading_type: r.reading_type,
            source: r.source.as_str(),
            source_record_id: r.source_record_id.as_deref(),
            display_offset_minutes: r.display_offset_minutes,
            version: s.version,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// Appends one reading's encoding (the API's JSON) to the buffer. A plain function,
/// so a backend can run it on its own reader thread.
pub type EncodeReading = fn(&ReadingRef<'_>, &mut Vec<u8>);

/// A scan's readings encoded into `bytes` after what it held before (the
/// response's prefix), in scan order and separated by commas: the contents of a
/// JSON array, so that a forward page needs no copy.
#[derive(Debug, Default)]
pub struct EncodedScan {
    pub bytes: Vec<u8>,
    /// Each reading's timestamp (unix seconds) and byte range in `bytes` (without
    /// the comma before it).
    pub items: Vec<(i64, std::ops::Range<usize>)>,
}

impl EncodedScan {
    /// Encodes `reading` at the end of `bytes` and records where it lies.
    pub fn push(&mut self, encode: EncodeReading, reading: &ReadingRef<'_>) {
        if !self.items.is_empty() {
            self.bytes.push(b',');
        }
        let start = self.bytes.len();
        encode(reading, &mut self.bytes);
        self.items
            .push((reading.timestamp.unix_seconds(), start..self.bytes.len()));
    }
}

/// A page whose readings are already encoded: `bytes` holds them in listing order,
/// separated by commas (a JSON array's contents), after the prefix the caller gave.
#[derive(Debug)]
pub struct EncodedPage {
    pub bytes: Vec<u8>,
    pub count: usize,
    pub next: Option<Seek>,
    pub prev: Option<Seek>,
}

/// `fetch_page`, with the readings encoded by `encode` as the backend reads them
/// and appended to `prefix` (the response so far), sparing a `StoredReading` and a
/// view per reading. Pages exactly as `fetch_page` does (same scan, same cursors).
pub async fn fetch_page_encoded(
    store: &dyn ReadingStore,
    req: &PageRequest,
    encode: EncodeReading,
    prefix: Vec<u8>,
) -> Result<EncodedPage, StoreError> {
    let plan = plan(req);
    let mut scan = match &plan.scan {
        None => EncodedScan {
            bytes: prefix,
            items: Vec::new(),
        },
        Some(scan) => store.scan_encoded(scan.clone(), encode, prefix).await?,
    };
    let more = scan.items.len() > req.limit;
    scan.items.truncate(req.limit);
    let start = scan
        .items
        .first()
        .map_or(scan.bytes.len(), |(_, r)| r.start);
    if plan.backwards {
        // Listing order is the scan's reversed: rebuild the list from the items.
        let mut bytes = Vec::with_capacity(scan.bytes.len());
        bytes.extend_from_slice(&scan.bytes[..start]);
        for (i, (_, range)) in scan.items.iter().rev().enumerate() {
            if i > 0 {
                bytes.push(b',');
            }
            bytes.extend_from_slice(&scan.bytes[range.clone()]);
        }
        scan.bytes = bytes;
        scan.items.reverse();
    } else {
        let end = scan.items.last().map_or(start, |(_, r)| r.end);
        scan.bytes.truncate(end);
    }
    let first = scan.items.first().map(|(ts, _)| *ts);
    let last = scan.items.last().map(|(ts, _)| *ts);
    let (next, prev) = plan.cursors(req, first, last, more);
    Ok(EncodedPage {
        count: scan.items.len(),
        bytes: scan.bytes,
        next,
        prev,
    })
}
