//! Range queries with stable keyset pagination, built once over `ReadingStore::scan_readings`.
//!
//! Ranges are half-open: `start` inclusive, `end` exclusive. A page is positioned by
//! a `Seek` relative to a timestamp; because (user, timestamp) is unique, paging by
//! timestamp visits every reading exactly once even while new readings arrive.

use crate::domain::{ReadingTime, StoredReading, UserId};

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

pub async fn fetch_page(store: &dyn ReadingStore, req: &PageRequest) -> Result<Page, StoreError> {
    let mut from = req.start.map_or(i64::MIN, ReadingTime::unix_seconds);
    let mut until = req.end.map_or(i64::MAX, ReadingTime::unix_seconds);
    // A `Before` page is read from the cursor backwards (in reverse listing order),
    // then turned around.
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
    let scan_order = if backwards {
        req.order.reversed()
    } else {
        req.order
    };

    let mut readings = if from >= until {
        Vec::new()
    } else {
        store
            .scan_readings(Scan {
                user_id: req.user_id.clone(),
                from,
                until,
                order: scan_order,
                limit: req.limit + 1,
            })
            .await?
    };
    let more = readings.len() > req.limit;
    readings.truncate(req.limit);
    if backwards {
        readings.reverse();
    }

    let first = readings.first().map(|r| r.reading.timestamp.unix_seconds());
    let last = readings.last().map(|r| r.reading.timestamp.unix_seconds());
    let (has_next, has_prev) = if backwards {
        (first.is_some(), more)
    } else {
        (more, req.seek.is_some() && first.is_some())
    };
    Ok(Page {
        next: last.filter(|_| has_next).map(Seek::After),
        prev: first.filter(|_| has_prev).map(Seek::Before),
        readings,
    })
}
