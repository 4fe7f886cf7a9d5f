//! Who a simulated Dexcom account is: its ids, devices and glucose history,
//! derived from the demo patients so the simulator needs no stored data.

use chrono::{DateTime, Duration, FixedOffset, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::simulator::patients::{demo_patient, demo_patients, DemoPatient, DemoSample};

/// Names the sandbox user picker offers besides the demo patients.
pub(super) const SANDBOX_USERS: [&str; 2] = ["SandboxUser6", "SandboxUser7"];

/// Longest span, in days, searched for the first or newest reading around a gap.
const SEARCH_DAYS: i64 = 30;

/// A simulated account, cheap to build on every request.
#[derive(Debug, Clone)]
pub(super) struct SimUser {
    /// The login name, e.g. "demo-alice" or "SandboxUser7".
    pub(super) name: String,
    /// Dexcom's `userId`: 64 hex chars, stable per (client_id, account).
    pub(super) user_id: String,
    /// 6-character transmitter serial.
    pub(super) transmitter_id: String,
    /// "iOS" or "android" for records uploaded by the phone app.
    pub(super) app_device: &'static str,
    patient: DemoPatient,
    /// Readings are the patient's, moved this many whole days later, so two
    /// accounts sharing a patient still differ.
    shift: Duration,
}

impl SimUser {
    /// A demo patient id gives exactly that patient's readings (what
    /// cgm-hub's own demo source produces). Any other name picks a demo
    /// patient by a hash of the name and shifts its history by 1-997 days.
    pub(super) fn resolve(name: &str, client_id: &str) -> Self {
        let hash = Sha256::digest(name.as_bytes());
        let h = u64::from_be_bytes(hash[..8].try_into().unwrap_or([0; 8]));
        let (patient, shift_days, transmitter_id) = match demo_patient(name) {
            Some(p) => {
                let tx = p.transmitter_id.to_owned();
                (p, 0, tx)
            }
            None => {
                let mut all = demo_patients();
                let index = usize::try_from(h % all.len() as u64).unwrap_or(0);
                let p = all.swap_remove(index);
                (p, 1 + (h / 3 % 997) as i64, derived_transmitter_id(&hash))
            }
        };
        let user_hash = Sha256::digest(format!("cgm-hub-sim/{client_id}/{name}").as_bytes());
        Self {
            name: name.to_owned(),
            user_id: hex(&user_hash),
            transmitter_id,
            app_device: if h & (1 << 40) == 0 { "iOS" } else { "android" },
            patient,
            shift: Duration::days(shift_days),
        }
    }

    /// The zone the patient's display device shows.
    pub(super) fn local_offset(&self) -> FixedOffset {
        self.patient.local_offset()
    }

    /// Readings with timestamp in [from, to], both inclusive, ascending.
    pub(super) fn samples_inclusive(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<DemoSample> {
        if to < from {
            return Vec::new();
        }
        let end = to + Duration::nanoseconds(1);
        let mut out = self.patient.samples(from - self.shift, end - self.shift);
        for s in &mut out {
            s.timestamp += self.shift;
        }
        out
    }

    /// The first reading at or after `t`, searching up to 30 days ahead and
    /// not past `limit`.
    pub(super) fn first_at_or_after(
        &self,
        t: DateTime<Utc>,
        limit: DateTime<Utc>,
    ) -> Option<DemoSample> {
        let mut from = t;
        for _ in 0..SEARCH_DAYS {
            if from > limit {
                return None;
            }
            let to = (from + Duration::days(1)).min(limit);
            if let Some(s) = self.samples_inclusive(from, to).into_iter().next() {
                return Some(s);
            }
            from = to + Duration::nanoseconds(1);
        }
        None
    }

    /// The newest reading at or before `t`, searching up to 30 days back and
    /// not before `floor`.
    pub(super) fn last_at_or_before(
        &self,
        t: DateTime<Utc>,
        floor: DateTime<Utc>,
    ) -> Option<DemoSample> {
        let mut to = t;
        for _ in 0..SEARCH_DAYS {
            if to < floor {
                return None;
            }
            let from = (to - Duration::days(1)).max(floor);
            if let Some(s) = self.samples_inclusive(from, to).pop() {
                return Some(s);
            }
            to = from - Duration::nanoseconds(1);
        }
        None
    }

    /// Dexcom's `recordId`: the same UUID whenever this reading is served.
    pub(super) fn record_id(&self, t: DateTime<Utc>) -> Uuid {
        let name = format!("{}/{}", self.name, t.timestamp());
        Uuid::new_v5(&record_namespace(), name.as_bytes())
    }
}

/// Whether `name` is acceptable as `sim_user`: 1-64 chars of `[A-Za-z0-9_-]`.
pub(super) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The names the login page offers.
pub(super) fn picker_names() -> Vec<String> {
    SANDBOX_USERS
        .iter()
        .map(|s| (*s).to_owned())
        .chain(demo_patients().into_iter().map(|p| p.user_id.to_owned()))
        .collect()
}

fn record_namespace() -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        b"https://cgm-hub.invalid/simulator/dexcom/egv",
    )
}

/// A transmitter id like the demo ones: "8" and five of Dexcom's characters.
fn derived_transmitter_id(hash: &[u8]) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";
    std::iter::once('8')
        .chain(
            hash[8..13]
                .iter()
                .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()])),
        )
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_names_use_the_demo_patient_unshifted() {
        let u = SimUser::resolve("demo-carol", "c");
        let p = demo_patient("demo-carol").unwrap_or_else(|| panic!("demo-carol exists"));
        let to = Utc::now();
        let from = to - Duration::hours(6);
        let want = p.samples(from, to + Duration::nanoseconds(1));
        assert!(!want.is_empty());
        assert_eq!(u.samples_inclusive(from, to), want);
        assert_eq!(u.transmitter_id, p.transmitter_id);
    }

    #[test]
    fn other_names_are_deterministic_and_distinct() {
        let a = SimUser::resolve("SandboxUser7", "c");
        let b = SimUser::resolve("SandboxUser7", "c");
        let other = SimUser::resolve("SandboxUser6", "c");
        assert_eq!(a.user_id, b.user_id);
        assert_eq!(a.user_id.len(), 64);
        assert!(a.user_id.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.user_id, other.user_id);
        assert_ne!(
            a.user_id,
            SimUser::resolve("SandboxUser7", "other-client").user_id
        );
        assert_eq!(a.transmitter_id.len(), 6);
        let t = Utc::now() - Duration::days(2);
        assert_eq!(a.record_id(t), b.record_id(t));
        assert_ne!(a.record_id(t), other.record_id(t));
        let day = |u: &SimUser| u.samples_inclusive(t, t + Duration::days(1));
        assert_eq!(day(&a), day(&b));
        assert_ne!(day(&a), day(&other));
    }

    #[test]
    fn names_are_validated() {
        assert!(valid_name("SandboxUser7"));
        assert!(valid_name("a-b_C9"));
        assert!(valid_name(&"x".repeat(64)));
        for bad in ["", "has space", "ü", "a/b", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
