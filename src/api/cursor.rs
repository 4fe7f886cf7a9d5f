//! Opaque pagination cursors.
//!
//! A cursor carries a `Seek` (a position by timestamp) plus a fingerprint of the
//! query it belongs to (user, range, order), and a checksum. Listings ordered by
//! a string key (a patient's shares, by grantee) use key cursors: the last key
//! of the page, with a fingerprint and checksum the same way. A cursor that was
//! edited, truncated, or replayed against another query is rejected with a
//! VALIDATION_ERROR rather than silently returning another page. The checksum is
//! unkeyed on purpose: forging a cursor can only position a reader inside data the
//! request is already authorized to read, so integrity against accidents is the goal.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::domain::FieldError;
use crate::store::{Order, PageRequest, Seek};

/// Largest and default page size of every paginated listing.
const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;

/// The `limit` query parameter of a listing: 1–1000, 100 when absent. A bad one is
/// added to `errors` (pointer `limit`) and the default is used meanwhile, so that one
/// response reports every bad parameter.
pub fn page_limit(raw: Option<&str>, errors: &mut Vec<FieldError>) -> usize {
    match raw.map(str::parse::<usize>) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            errors.push(FieldError::new(
                "limit",
                format!("must be an integer in 1..={MAX_LIMIT}"),
            ));
            DEFAULT_LIMIT
        }
    }
}

const VERSION: u8 = 1;
const LEN: usize = 1 + 1 + 8 + 8 + 8;
/// Key cursors: version, fingerprint, key bytes, checksum.
const KEY_VERSION: u8 = 2;
const KEY_OVERHEAD: usize = 1 + 8 + 8;

/// The identity of a query that a cursor may continue.
pub fn fingerprint(req: &PageRequest) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(req.user_id.as_str().as_bytes());
    h.update([0]);
    h.update(
        req.start
            .map_or(i64::MIN, |t| t.unix_seconds())
            .to_be_bytes(),
    );
    h.update(req.end.map_or(i64::MAX, |t| t.unix_seconds()).to_be_bytes());
    h.update([matches!(req.order, Order::Desc) as u8]);
    first8(&h.finalize())
}

fn first8(bytes: &[u8]) -> [u8; 8] {
    let mut out = [0; 8];
    out.copy_from_slice(&bytes[..8]);
    out
}

pub fn encode(seek: Seek, fingerprint: [u8; 8]) -> String {
    let (kind, ts) = match seek {
        Seek::After(ts) => (b'a', ts),
        Seek::Before(ts) => (b'b', ts),
    };
    let mut buf = Vec::with_capacity(LEN);
    buf.push(VERSION);
    buf.push(kind);
    buf.extend_from_slice(&ts.to_be_bytes());
    buf.extend_from_slice(&fingerprint);
    let check = first8(&Sha256::digest(&buf));
    buf.extend_from_slice(&check);
    URL_SAFE_NO_PAD.encode(buf)
}

pub fn decode(raw: &str, fingerprint: [u8; 8]) -> Result<Seek, FieldError> {
    let bad = |why: &str| FieldError::new("/cursor", format!("invalid cursor: {why}"));
    let buf = URL_SAFE_NO_PAD
        .decode(raw.as_bytes())
        .map_err(|_| bad("not a cursor issued by this service"))?;
    if buf.len() != LEN || buf[0] != VERSION {
        return Err(bad("not a cursor issued by this service"));
    }
    if first8(&Sha256::digest(&buf[..LEN - 8])) != buf[LEN - 8..] {
        return Err(bad("it was modified"));
    }
    if buf[10..18] != fingerprint {
        return Err(bad(
            "it belongs to a different query (user, dates or order)",
        ));
    }
    let mut ts = [0; 8];
    ts.copy_from_slice(&buf[2..10]);
    let ts = i64::from_be_bytes(ts);
    match buf[1] {
        b'a' => Ok(Seek::After(ts)),
        b'b' => Ok(Seek::Before(ts)),
        _ => Err(bad("unknown direction")),
    }
}

/// The identity of a key-ordered listing: its parts (e.g. "shares" and the patient).
pub fn key_fingerprint(parts: &[&str]) -> [u8; 8] {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part.as_bytes());
        h.update([0]);
    }
    first8(&h.finalize())
}

/// A cursor that continues a key-ordered listing after `key`.
pub fn encode_key(key: &str, fingerprint: [u8; 8]) -> String {
    let mut buf = Vec::with_capacity(KEY_OVERHEAD + key.len());
    buf.push(KEY_VERSION);
    buf.extend_from_slice(&fingerprint);
    buf.extend_from_slice(key.as_bytes());
    let check = first8(&Sha256::digest(&buf));
    buf.extend_from_slice(&check);
    URL_SAFE_NO_PAD.encode(buf)
}

/// The key a key cursor continues after.
pub fn decode_key(raw: &str, fingerprint: [u8; 8]) -> Result<String, FieldError> {
    let bad = |why: &str| FieldError::new("/cursor", format!("invalid cursor: {why}"));
    let foreign = || bad("not a cursor issued by this service");
    let buf = URL_SAFE_NO_PAD
        .decode(raw.as_bytes())
        .map_err(|_| foreign())?;
    if buf.len() < KEY_OVERHEAD || buf[0] != KEY_VERSION {
        return Err(foreign());
    }
    let (body, check) = buf.split_at(buf.len() - 8);
    if first8(&Sha256::digest(body)) != check {
        return Err(bad("it was modified"));
    }
    if body[1..9] != fingerprint {
        return Err(bad("it belongs to a different query"));
    }
    String::from_utf8(body[9..].to_vec()).map_err(|_| foreign())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserId;

    fn req(user: &str, order: Order) -> PageRequest {
        PageRequest {
            user_id: UserId::parse(user).unwrap(),
            start: None,
            end: None,
            order,
            limit: 10,
            seek: None,
        }
    }

    #[test]
    fn round_trip_and_tamper_detection() {
        let fp = fingerprint(&req("u1", Order::Asc));
        let c = encode(Seek::After(1_700_000_000), fp);
        assert_eq!(decode(&c, fp).unwrap(), Seek::After(1_700_000_000));
        let mut bytes = URL_SAFE_NO_PAD.decode(&c).unwrap();
        bytes[5] ^= 1;
        assert!(decode(&URL_SAFE_NO_PAD.encode(&bytes), fp).is_err());
        assert!(decode(&c[..c.len() - 1], fp).is_err());
        assert!(decode("garbage!", fp).is_err());
        assert!(decode(&c, fingerprint(&req("u2", Order::Asc))).is_err());
        assert!(decode(&c, fingerprint(&req("u1", Order::Desc))).is_err());
    }

    #[test]
    fn key_cursors_round_trip_and_stay_with_their_listing() {
        let fp = key_fingerprint(&["shares", "pat"]);
        let c = encode_key("mom-42", fp);
        assert_eq!(decode_key(&c, fp).unwrap(), "mom-42");
        assert!(decode_key(&c, key_fingerprint(&["shares", "other"])).is_err());
        let mut bytes = URL_SAFE_NO_PAD.decode(&c).unwrap();
        bytes[10] ^= 1;
        assert!(decode_key(&URL_SAFE_NO_PAD.encode(&bytes), fp).is_err());
        let time = encode(Seek::After(1), fingerprint(&req("pat", Order::Asc)));
        assert!(
            decode_key(&time, fp).is_err(),
            "a time cursor is not a key cursor"
        );
        assert!(decode(&c, fingerprint(&req("pat", Order::Asc))).is_err());
    }
}
