//! `ReadingStore::scan_encoded` (the range endpoint's path: readings encoded as the
//! backend reads them) against `scan_readings`: the same readings, field for field,
//! and through `fetch_page_encoded` the same pages and cursors as `fetch_page`.

use cgm_hub::domain::{Glucose, SensorStatus};
use cgm_hub::store::query::{fetch_page_encoded, ReadingRef};
use cgm_hub::store::{fetch_page, Order};

use super::{request, seed, S};
use crate::helpers::*;

/// Every field of the reading as the backend handed it over.
fn debug_encoding(r: &ReadingRef<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("{r:?}").as_bytes());
}

pub async fn encoded_pages_are_the_pages_of_fetch_page(s: S) {
    seed(&s, "u1", 0..30).await;
    seed(&s, "u2", 0..30).await;
    // Every optional field, both sensor statuses, and a replaced reading (version 2).
    let mut odd = cgm("u1", slot(31), 250);
    odd.source_record_id = Some("rec \"31\"\n\u{1}é".into());
    odd.display_offset_minutes = Some(-300);
    let low = cgm_hub::domain::Reading {
        glucose: Glucose::out_of_range(SensorStatus::Low),
        trend: None,
        trend_rate: None,
        timestamp: slot(32),
        ..odd.clone()
    };
    let high = cgm_hub::domain::Reading {
        glucose: Glucose::out_of_range(SensorStatus::High),
        timestamp: slot(33),
        ..cgm("u1", slot(33), 100)
    };
    s.upsert_readings(vec![odd, low, high, cgm("u1", slot(5), 199)])
        .await
        .unwrap();

    let mut pages = 0;
    for order in [Order::Asc, Order::Desc] {
        for limit in [1, 4, 34, 1000] {
            let mut req = request("u1", Some(0), Some(40), order, limit);
            let mut forward = true;
            loop {
                let old = fetch_page(s.as_ref(), &req).await.unwrap();
                let new = fetch_page_encoded(s.as_ref(), &req, debug_encoding, b"[".to_vec())
                    .await
                    .unwrap();
                let mut want = b"[".to_vec();
                for (i, r) in old.readings.iter().enumerate() {
                    if i > 0 {
                        want.push(b',');
                    }
                    debug_encoding(&ReadingRef::from(r), &mut want);
                }
                assert_eq!(
                    String::from_utf8(new.bytes).unwrap(),
                    String::from_utf8(want).unwrap(),
                    "{order:?}, limit {limit}, seek {:?}",
                    req.seek
                );
                assert_eq!(
                    (new.count, new.next, new.prev),
                    (old.readings.len(), old.next, old.prev)
                );
                pages += 1;
                // Forward to the last page, then back to the first with `prev`.
                req.seek = match (forward, old.next, old.prev) {
                    (true, Some(next), _) => Some(next),
                    (true, None, Some(prev)) => {
                        forward = false;
                        Some(prev)
                    }
                    (false, _, Some(prev)) => Some(prev),
                    _ => break,
                };
            }
        }
    }
    assert!(pages > 100, "{pages} pages compared");
}
