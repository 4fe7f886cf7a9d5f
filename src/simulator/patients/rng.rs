//! Tiny SplitMix64 hash/RNG, so every demo reading is a reproducible function of (seed, time).
//!
//! Why not the `rand` crate: the exact value streams of its generators and
//! distributions are not part of its stability promise (they have changed
//! between releases), and `thread_rng` is seeded per process. A demo trace must
//! come out identical across crate upgrades, builds and processes: the Dexcom
//! simulator will serve these same patients and has to return exactly the
//! reading cgm-hub generated for the same instant. SplitMix64 (Steele, Lea &
//! Flood, 2014) is a dozen lines of fully specified integer arithmetic and is
//! statistically more than good enough for synthetic data.
//!
//! Nothing here keeps state between calls: each draw sequence is re-created
//! from `(patient seed, purpose, index)`, e.g. the meals of local day 20312.

/// Weyl-sequence increment of SplitMix64 (2^64 divided by the golden ratio).
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// 2^53: `unit()` keeps 53 random bits, exactly the precision of an `f64`.
const TWO_POW_53: f64 = 9_007_199_254_740_992.0;

/// SplitMix64's finaliser: a bijective 64-bit avalanche mix.
pub(super) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One independent draw sequence per purpose, so that (say) changing how meals
/// are drawn never moves a sensor gap. The numbers are part of the output
/// format: never renumber them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stream {
    Drift = 1,
    Dawn = 2,
    Meals = 3,
    Exercise = 4,
    Hypos = 5,
    SignalLoss = 6,
    SensorSession = 7,
    Noise = 8,
    FineNoise = 9,
    SensorBias = 10,
    /// What the patient writes in the journal (sleep times, exercise kind, which snacks are logged).
    Diary = 11,
}

/// A SplitMix64 generator positioned at the start of one keyed sequence.
#[derive(Debug, Clone)]
pub(super) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// The sequence for `(seed, stream, index)`; `index` is usually a day, week or knot number.
    pub(super) fn keyed(seed: u64, stream: Stream, index: i64) -> Self {
        let mut h = mix64(seed.wrapping_add(GOLDEN_GAMMA));
        h = mix64(h ^ stream as u64);
        // Two's-complement reinterpretation: negative indices (before 1970) are fine.
        h = mix64(h ^ index as u64);
        Self { state: h }
    }

    /// A generator at a raw state, as in the SplitMix64 reference code.
    #[cfg(test)]
    pub(super) fn from_state(state: u64) -> Self {
        Self { state }
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in [0, 1); exact (53 bits divided by a power of two).
    pub(super) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / TWO_POW_53
    }

    /// Uniform in [lo, hi).
    pub(super) fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// True with probability `p`.
    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform integer in 0..n (0 when n == 0), by Lemire's multiply-shift.
    pub(super) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform integer in lo..=hi (lo when hi < lo).
    pub(super) fn int_in(&mut self, lo: i64, hi: i64) -> i64 {
        let span = u64::try_from(hi.saturating_sub(lo)).map_or(0, |s| s.saturating_add(1));
        lo.saturating_add_unsigned(self.below(span))
    }

    /// Triangular in (-1, 1): mean 0 with more mass near 0, a cheap bell shape.
    pub(super) fn symmetric(&mut self) -> f64 {
        self.unit() + self.unit() - 1.0
    }
}
