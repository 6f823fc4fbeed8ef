//! Counter-based random streams.
//!
//! Every random draw of a run comes from a stream identified by `(seed, step, index, purpose)`.
//! A stream is a SplitMix64 generator whose starting point is a SplitMix64 hash of that key,
//! so a seed fixes every result bit for bit whatever the number of threads and whatever order
//! the particles are processed in.
//!
//! SplitMix64 (Steele, Lea & Flood 2014) passes BigCrush, costs one multiply-xorshift
//! finaliser per 64-bit word, and — what matters here, where every particle opens a fresh
//! stream at every step — costs nothing to seed: opening a stream is one hash of the key.

use std::convert::Infallible;

use rand::rand_core::{TryRng, utils};
use rand_distr::{Distribution, StandardNormal};

const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// The generator behind every stream: SplitMix64 from a hashed key. It implements
/// [`rand::Rng`], so any `rand_distr` distribution can sample from it.
///
/// ```
/// use diffsmc::rng::StreamRng;
/// use rand::RngExt;
/// let mut a = StreamRng::from_state(7);
/// let mut b = a.clone();
/// let x: f64 = a.random();
/// assert_eq!(x, b.random::<f64>());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRng {
    state: u64,
}

impl StreamRng {
    /// A generator starting from a raw 64-bit state (prefer [`StreamKey::rng`]).
    pub fn from_state(state: u64) -> Self {
        StreamRng { state }
    }
}

impl TryRng for StreamRng {
    type Error = Infallible;

    #[inline]
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        self.try_next_u64().map(|v| (v >> 32) as u32)
    }

    #[inline]
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.state = self.state.wrapping_add(GAMMA);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Ok(z ^ (z >> 31))
    }

    #[inline]
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        utils::fill_bytes_via_next_word(dst, || self.try_next_u64())
    }
}

#[inline]
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What a stream is used for; keeps the streams of different stages of one step apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Purpose {
    /// Propagation (initial sampling and transitions) of one particle.
    Move,
    /// A resampling step.
    Resample,
    /// Simulation of data.
    Simulate,
    /// Anything else, with a user tag.
    Other(u32),
}

impl Purpose {
    fn code(self) -> u64 {
        match self {
            Purpose::Move => 1,
            Purpose::Resample => 2,
            Purpose::Simulate => 3,
            Purpose::Other(t) => 0x1_0000_0000 | u64::from(t),
        }
    }
}

/// A family of streams for one `(seed, step, purpose)`; `rng(i)` gives stream `i` of it.
///
/// ```
/// use diffsmc::rng::{Purpose, StreamKey};
/// use rand::RngExt;
/// let key = StreamKey::new(42, 7, Purpose::Resample);
/// let a: f64 = key.rng(3).random();
/// let b: f64 = key.rng(3).random();
/// assert_eq!(a, b); // the same stream, the same numbers
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamKey {
    base: u64,
}

impl StreamKey {
    /// The streams of `purpose` at `step` for `seed`.
    pub fn new(seed: u64, step: usize, purpose: Purpose) -> Self {
        let mut h = splitmix(seed);
        h = splitmix(h ^ (step as u64).wrapping_mul(0xd6e8_feb8_6659_fd93));
        h = splitmix(h ^ purpose.code().wrapping_mul(0xa076_1d64_78bd_642f));
        StreamKey { base: h }
    }

    /// A sub-family: streams keyed additionally by `tag` (e.g. an integrator sub-step).
    pub fn sub(&self, tag: u64) -> StreamKey {
        StreamKey {
            base: splitmix(self.base ^ splitmix(tag.wrapping_add(0x5851_f42d_4c95_7f2d))),
        }
    }

    /// Stream number `index` of this family.
    #[inline]
    pub fn rng(&self, index: usize) -> StreamRng {
        StreamRng::from_state(splitmix(
            self.base ^ (index as u64).wrapping_mul(0xe703_7ed1_a0b4_28db),
        ))
    }
}

/// One standard normal draw.
#[inline]
pub fn standard_normal(rng: &mut StreamRng) -> f64 {
    StandardNormal.sample(rng)
}

/// Fills `out` with standard normal draws.
#[inline]
pub fn fill_standard_normal(rng: &mut StreamRng, out: &mut [f64]) {
    for v in out {
        *v = StandardNormal.sample(rng);
    }
}

/// A seed for independent sub-run `index` of a run seeded with `seed` (e.g. the runs of an
/// experiment), by SplitMix64 hashing.
///
/// ```
/// use diffsmc::rng::derive_seed;
/// assert_ne!(derive_seed(1, 0), derive_seed(1, 1));
/// assert_eq!(derive_seed(5, 3), derive_seed(5, 3));
/// ```
pub fn derive_seed(seed: u64, index: u64) -> u64 {
    splitmix(splitmix(seed ^ 0x2545_f491_4f6c_dd1d) ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}
