//! Webhook signatures: proves a delivery came from a holder of `WEBHOOK_SIGNING_SECRET`,
//! unaltered and recently, before any of its readings are trusted.
//!
//! A sender signs `"<timestamp>.<raw body>"` with HMAC-SHA256 and sends
//!
//! ```text
//! X-Webhook-Timestamp: 1700000000
//! X-Webhook-Signature: sha256=<64 hex digits>
//! ```
//!
//! The MAC covers the timestamp header exactly as sent, so a captured delivery cannot be
//! replayed with a fresh timestamp, and deliveries outside [`REPLAY_WINDOW_SECONDS`] are
//! refused. The `sha256=` prefix is case-sensitive, as the contract writes it: one spelling,
//! no guessing. The digest itself may be in either case.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How far a delivery's timestamp may be from now, either way (replay window).
pub const REPLAY_WINDOW_SECONDS: i64 = 300;
pub const TIMESTAMP_HEADER: &str = "x-webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "x-webhook-signature";

/// What precedes the hex digest in the signature header.
const ALGORITHM_PREFIX: &str = "sha256=";
/// Bytes in an HMAC-SHA256 tag.
const DIGEST_LEN: usize = 32;
/// Longest timestamp header accepted: the length of `i64::MIN` written out.
const MAX_TIMESTAMP_LEN: usize = 20;

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery was refused. All of them are a 401; none of the messages carries the
/// secret or the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Webhook-Timestamp header (unix seconds)")]
    MissingTimestamp,
    #[error("missing X-Webhook-Signature header (sha256=<hex HMAC-SHA256>)")]
    MissingSignature,
    #[error("X-Webhook-Timestamp must be unix seconds written as a plain integer")]
    MalformedTimestamp,
    #[error(
        "timestamp is {age_seconds} s old; deliveries older than {window} s are refused",
        window = REPLAY_WINDOW_SECONDS
    )]
    Stale { age_seconds: u64 },
    #[error(
        "timestamp is {ahead_seconds} s in the future; deliveries more than {window} s ahead \
         are refused (check the sender's clock)",
        window = REPLAY_WINDOW_SECONDS
    )]
    Future { ahead_seconds: u64 },
    #[error("X-Webhook-Signature must start with \"sha256=\" (lowercase)")]
    WrongAlgorithm,
    #[error("X-Webhook-Signature must be \"sha256=\" followed by 64 hex digits")]
    MalformedSignature,
    #[error("X-Webhook-Signature does not match HMAC-SHA256 of \"<timestamp>.<raw body>\"")]
    Mismatch,
}

/// Verifies a delivery. `timestamp`/`signature` are the raw header values (None when absent),
/// `now_unix` the current time in unix seconds. Returns the verified timestamp.
///
/// Checks, in order: both headers present, timestamp well formed, timestamp within
/// [`REPLAY_WINDOW_SECONDS`] of `now_unix`, signature well formed, and last the MAC, compared
/// in constant time. The same as [`SignedHeaders::parse`] then [`SignedHeaders::verify`].
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_unix: i64,
) -> Result<i64, SignatureError> {
    SignedHeaders::parse(timestamp, signature, now_unix)?.verify(secret, body)
}

/// A delivery's signature headers, checked before its body is read: present, well formed and
/// recent. Only a delivery that gets this far has its body read at all; the MAC over the body
/// is checked afterwards by [`SignedHeaders::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// The timestamp exactly as sent: the MAC covers these bytes.
    raw_timestamp: String,
    timestamp: i64,
    tag: [u8; DIGEST_LEN],
}

impl SignedHeaders {
    /// Checks, in order: both headers present, timestamp well formed, timestamp within
    /// [`REPLAY_WINDOW_SECONDS`] of `now_unix`, signature well formed.
    pub fn parse(
        timestamp: Option<&str>,
        signature: Option<&str>,
        now_unix: i64,
    ) -> Result<Self, SignatureError> {
        let raw_timestamp = timestamp.ok_or(SignatureError::MissingTimestamp)?;
        let signature = signature.ok_or(SignatureError::MissingSignature)?;

        let timestamp = parse_timestamp(raw_timestamp)?;
        check_window(timestamp, now_unix)?;

        let hex = signature
            .strip_prefix(ALGORITHM_PREFIX)
            .ok_or(SignatureError::WrongAlgorithm)?;
        let tag = decode_digest(hex)?;
        Ok(Self {
            raw_timestamp: raw_timestamp.to_owned(),
            timestamp,
            tag,
        })
    }

    /// The MAC over `"<timestamp>.<body>"`, compared in constant time. Returns the timestamp.
    pub fn verify(&self, secret: &[u8], body: &[u8]) -> Result<i64, SignatureError> {
        mac(secret, &self.raw_timestamp, body)
            .verify_slice(&self.tag)
            .map_err(|_| SignatureError::Mismatch)?;
        Ok(self.timestamp)
    }

    /// What identifies this delivery for replay detection: the MAC's bytes, written the one
    /// way [`sign`] writes them. Spelling the digest in the other case, or sending it to
    /// another user's path, gives the same key, so a captured delivery is accepted once in
    /// all. (The same string the inbox hashed before the digest was decoded, for senders
    /// that write lowercase hex, so stored deliveries keep deduplicating.)
    pub fn replay_key(&self) -> String {
        format!("{ALGORITHM_PREFIX}{}", encode_hex(&self.tag))
    }
}

/// The header value a sender puts in X-Webhook-Signature ("sha256=<lowercase hex>"): used by tests,
/// the docs' examples and our load scripts.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, &timestamp.to_string(), body)
        .finalize()
        .into_bytes();
    format!("{ALGORITHM_PREFIX}{}", encode_hex(&tag))
}

/// HMAC-SHA256 over `"<timestamp>.<body>"`, with the timestamp exactly as it appears in the header.
fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Unix seconds as an optional `-` and ASCII digits only: no `+`, no whitespace, nothing that
/// overflows an `i64`. Every value [`sign`] can produce parses.
fn parse_timestamp(raw: &str) -> Result<i64, SignatureError> {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    let well_formed = raw.len() <= MAX_TIMESTAMP_LEN
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit());
    if !well_formed {
        return Err(SignatureError::MalformedTimestamp);
    }
    raw.parse().map_err(|_| SignatureError::MalformedTimestamp)
}

/// Refuses a timestamp more than [`REPLAY_WINDOW_SECONDS`] from `now_unix`. `abs_diff` is
/// exact for any pair of `i64`s, so extreme values cannot overflow.
fn check_window(timestamp: i64, now_unix: i64) -> Result<(), SignatureError> {
    let drift = now_unix.abs_diff(timestamp);
    if drift <= REPLAY_WINDOW_SECONDS.unsigned_abs() {
        Ok(())
    } else if timestamp < now_unix {
        Err(SignatureError::Stale { age_seconds: drift })
    } else {
        Err(SignatureError::Future {
            ahead_seconds: drift,
        })
    }
}

// Hex by hand: no hex crate is a dependency, and these two helpers are all that is needed.
// Decoding branches only on the sender's own digits; the comparison with the expected tag
// stays in `verify_slice`, which is constant time.

/// Decodes the 64 hex digits of an HMAC-SHA256 tag, either case.
fn decode_digest(hex: &str) -> Result<[u8; DIGEST_LEN], SignatureError> {
    let hex = hex.as_bytes();
    if hex.len() != 2 * DIGEST_LEN {
        return Err(SignatureError::MalformedSignature);
    }
    let mut tag = [0; DIGEST_LEN];
    for (byte, pair) in tag.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Ok(tag)
}

fn nibble(digit: u8) -> Result<u8, SignatureError> {
    match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        b'A'..=b'F' => Ok(digit - b'A' + 10),
        _ => Err(SignatureError::MalformedSignature),
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use SignatureError::*;

    const SECRET: &[u8] = b"whsec_test_secret";
    const NOW: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"type":"egvs","records":[{"value":112}]}"#;

    /// A valid signature header for `BODY` at `timestamp`.
    fn signed(timestamp: i64) -> String {
        sign(SECRET, timestamp, BODY)
    }

    /// A signature header carrying `digest` after a correct prefix.
    fn with_digest(digest: &str) -> String {
        format!("sha256={digest}")
    }

    struct Case {
        name: &'static str,
        timestamp: Option<String>,
        signature: Option<String>,
        body: Vec<u8>,
        now: i64,
        want: Result<i64, SignatureError>,
    }

    /// A delivery of `BODY` checked at `NOW`.
    fn case(
        name: &'static str,
        timestamp: Option<&str>,
        signature: Option<String>,
        want: Result<i64, SignatureError>,
    ) -> Case {
        Case {
            name,
            timestamp: timestamp.map(str::to_owned),
            signature,
            body: BODY.to_vec(),
            now: NOW,
            want,
        }
    }

    /// A delivery of `BODY` with `timestamp` in its header, checked at `NOW`.
    fn at(
        name: &'static str,
        timestamp: i64,
        signature: String,
        want: Result<i64, SignatureError>,
    ) -> Case {
        Case {
            timestamp: Some(timestamp.to_string()),
            ..case(name, None, Some(signature), want)
        }
    }

    fn matrix() -> Vec<Case> {
        let now = NOW.to_string();
        let now = Some(now.as_str());
        let valid = signed(NOW);
        let digest = valid.strip_prefix("sha256=").unwrap().to_owned();

        let mut tampered = BODY.to_vec();
        tampered[10] ^= 0x01;
        assert_ne!(tampered, BODY);

        let mut cases = vec![
            case("valid", now, Some(valid.clone()), Ok(NOW)),
            case(
                "wrong secret",
                now,
                Some(sign(b"another secret", NOW, BODY)),
                Err(Mismatch),
            ),
            Case {
                body: tampered,
                ..case("tampered body", now, Some(valid.clone()), Err(Mismatch))
            },
            at(
                "timestamp moved, old signature",
                NOW + 1,
                valid.clone(),
                Err(Mismatch),
            ),
            case(
                "timestamp with a leading zero: the MAC covers the header as sent",
                Some("01700000000"),
                Some(valid.clone()),
                Err(Mismatch),
            ),
            at(
                "stale",
                NOW - 301,
                signed(NOW - 301),
                Err(Stale { age_seconds: 301 }),
            ),
            at(
                "future",
                NOW + 301,
                signed(NOW + 301),
                Err(Future { ahead_seconds: 301 }),
            ),
            at(
                "exactly 300 s old",
                NOW - 300,
                signed(NOW - 300),
                Ok(NOW - 300),
            ),
            at(
                "exactly 300 s ahead",
                NOW + 300,
                signed(NOW + 300),
                Ok(NOW + 300),
            ),
            case(
                "missing timestamp",
                None,
                Some(valid.clone()),
                Err(MissingTimestamp),
            ),
            case("missing signature", now, None, Err(MissingSignature)),
            case("both missing", None, None, Err(MissingTimestamp)),
            case(
                "sha1 prefix",
                now,
                Some(format!("sha1={digest}")),
                Err(WrongAlgorithm),
            ),
            case(
                "uppercase prefix",
                now,
                Some(format!("SHA256={digest}")),
                Err(WrongAlgorithm),
            ),
            case(
                "bare digest",
                now,
                Some(digest.clone()),
                Err(WrongAlgorithm),
            ),
            case(
                "empty signature",
                now,
                Some(String::new()),
                Err(WrongAlgorithm),
            ),
            case(
                "space after prefix",
                now,
                Some(format!("sha256= {digest}")),
                Err(MalformedSignature),
            ),
            case(
                "odd length hex",
                now,
                Some(with_digest(&digest[1..])),
                Err(MalformedSignature),
            ),
            case(
                "non-hex digit",
                now,
                Some(with_digest(&format!("g{}", &digest[1..]))),
                Err(MalformedSignature),
            ),
            case(
                "too short (31 bytes)",
                now,
                Some(with_digest(&digest[2..])),
                Err(MalformedSignature),
            ),
            case(
                "too long (a SHA-512 length)",
                now,
                Some(with_digest(&digest.repeat(2))),
                Err(MalformedSignature),
            ),
            case(
                "empty digest",
                now,
                Some(with_digest("")),
                Err(MalformedSignature),
            ),
            case(
                "uppercase digest",
                now,
                Some(with_digest(&digest.to_uppercase())),
                Ok(NOW),
            ),
            Case {
                body: Vec::new(),
                ..case("empty body", now, Some(sign(SECRET, NOW, b"")), Ok(NOW))
            },
            // Check order: timestamp problems are reported before signature problems, and the
            // window before the MAC.
            case(
                "malformed timestamp and signature",
                Some("soon"),
                Some("md5=x".into()),
                Err(MalformedTimestamp),
            ),
            at(
                "stale and wrong algorithm",
                NOW - 301,
                "sha1=x".into(),
                Err(Stale { age_seconds: 301 }),
            ),
            at(
                "stale and mismatched",
                NOW - 301,
                valid.clone(),
                Err(Stale { age_seconds: 301 }),
            ),
            // Extremes: nothing overflows.
            at(
                "i64::MIN timestamp",
                i64::MIN,
                signed(i64::MIN),
                Err(Stale {
                    age_seconds: NOW.abs_diff(i64::MIN),
                }),
            ),
            at(
                "i64::MAX timestamp",
                i64::MAX,
                signed(i64::MAX),
                Err(Future {
                    ahead_seconds: i64::MAX.abs_diff(NOW),
                }),
            ),
            Case {
                now: i64::MIN,
                ..at(
                    "i64::MAX timestamp at i64::MIN",
                    i64::MAX,
                    signed(i64::MAX),
                    Err(Future {
                        ahead_seconds: u64::MAX,
                    }),
                )
            },
            Case {
                now: i64::MAX,
                ..at(
                    "i64::MIN timestamp at i64::MAX",
                    i64::MIN,
                    signed(i64::MIN),
                    Err(Stale {
                        age_seconds: u64::MAX,
                    }),
                )
            },
            Case {
                now: i64::MAX,
                ..at(
                    "i64::MAX timestamp at i64::MAX",
                    i64::MAX,
                    signed(i64::MAX),
                    Ok(i64::MAX),
                )
            },
        ];

        for malformed in [
            "",
            "12a",
            "1.5",
            "+123",
            " 123",
            "123 ",
            "-",
            "--1",
            "0x10",
            "１２３", // full-width digits
            "99999999999999999999999",
            "9223372036854775808",  // i64::MAX + 1
            "-9223372036854775809", // i64::MIN - 1
        ] {
            cases.push(Case {
                timestamp: Some(malformed.to_owned()),
                ..case(
                    "malformed timestamp",
                    None,
                    Some(valid.clone()),
                    Err(MalformedTimestamp),
                )
            });
        }
        // Absurdly long: refused without parsing it.
        cases.push(Case {
            timestamp: Some("1".repeat(100_000)),
            ..case("huge timestamp", None, Some(valid), Err(MalformedTimestamp))
        });
        cases
    }

    #[test]
    fn verify_matrix() {
        let cases = matrix();
        let failures: Vec<String> = cases
            .iter()
            .filter_map(|c| {
                let got = verify(
                    SECRET,
                    c.timestamp.as_deref(),
                    c.signature.as_deref(),
                    &c.body,
                    c.now,
                );
                (got != c.want).then(|| {
                    let shown: String = c
                        .timestamp
                        .iter()
                        .flat_map(|t| t.chars().take(30))
                        .collect();
                    format!(
                        "{} (timestamp {shown:?}): got {got:?}, want {:?}",
                        c.name, c.want
                    )
                })
            })
            .collect();
        assert!(
            failures.is_empty(),
            "{} of {} cases failed:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    }

    /// Computed independently, so `sign` cannot pass by agreeing with `verify` alone:
    /// python3 -c 'import hmac,hashlib;print(hmac.new(b"secret", b"1700000000.{\"type\":\"egvs\"}", hashlib.sha256).hexdigest())'
    #[test]
    fn sign_matches_a_known_answer() {
        let body = br#"{"type":"egvs"}"#;
        let want = "sha256=6cf8da23133ffbffa7578692f7ec88037cce58fb541fd78d14fe7b87a5a17957";
        assert_eq!(sign(b"secret", 1_700_000_000, body), want);
        assert_eq!(
            verify(
                b"secret",
                Some("1700000000"),
                Some(want),
                body,
                1_700_000_000
            ),
            Ok(1_700_000_000)
        );
    }

    /// The same, for an empty body (`b"1700000000."`).
    #[test]
    fn sign_matches_a_known_answer_for_an_empty_body() {
        assert_eq!(
            sign(b"secret", 1_700_000_000, b""),
            "sha256=4bc5f74d868b97888288889c5d9d65df02526f94c1592a79fdf4fe8b26e311e5"
        );
    }

    #[test]
    fn the_replay_key_is_the_mac_not_its_spelling() {
        let lower = signed(NOW);
        let upper = format!("sha256={}", lower["sha256=".len()..].to_uppercase());
        let now = NOW.to_string();
        let key = |sig: &str| {
            SignedHeaders::parse(Some(&now), Some(sig), NOW)
                .unwrap()
                .replay_key()
        };
        assert_eq!(key(&lower), key(&upper));
        assert_eq!(key(&lower), lower, "stored deliveries keep their key");
        assert_ne!(key(&lower), key(&signed(NOW - 1)));
    }

    #[test]
    fn messages_are_clear_and_leak_nothing() {
        assert_eq!(
            Stale { age_seconds: 412 }.to_string(),
            "timestamp is 412 s old; deliveries older than 300 s are refused"
        );
        assert!(Future { ahead_seconds: 412 }
            .to_string()
            .starts_with("timestamp is 412 s in the future;"));

        let secret = String::from_utf8_lossy(SECRET);
        let body = String::from_utf8_lossy(BODY);
        for c in matrix() {
            if let Err(e) = c.want {
                let message = e.to_string();
                assert!(!message.contains(&*secret), "{message}");
                assert!(!message.contains(&*body), "{message}");
            }
        }
    }
}
