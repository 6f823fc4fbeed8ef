//! One step of a particle filter, shared by every loop that runs one: the forward driver
//! ([`super::Smc`]), the checkpointed reverse pass (`crate::grad`) and SMC²'s per-θ filters.
//! Keeping the stream keys and the move-and-weight of a particle in one place is what makes
//! those loops draw the same particles from the same seed.
//!
//! Public so that drivers outside the engine (e.g. the distributed filter of `diffsmc-mpi`)
//! draw the same particles from the same seed: particle `i` at step `t` of a run seeded with
//! `seed` is `move_particle(model, t, move_key(seed, t), i, …)` whichever process moves it.
//!
//! ```
//! use diffsmc::smc::step::{move_key, resample_key};
//! assert_ne!(move_key(1, 3), resample_key(1, 3));
//! assert_eq!(move_key(1, 3), move_key(1, 3));
//! ```

use crate::model::FeynmanKac;
use crate::rng::{Purpose, StreamKey};
use crate::scalar::Scalar;

/// The streams of the move (initial draw or transition) at step `t`; particle `i` draws from
/// stream `i` of it.
#[inline]
pub fn move_key(seed: u64, t: usize) -> StreamKey {
    StreamKey::new(seed, t, Purpose::Move)
}

/// The streams of the resampling before the move to step `t`.
#[inline]
pub fn resample_key(seed: u64, t: usize) -> StreamKey {
    StreamKey::new(seed, t, Purpose::Resample)
}

/// Moves particle `i` to step `t` and returns its log-potential: `x ~ M_0`, `log G_0(x)` when
/// `x_prev` is `None` (step 0), else `x ~ M_t(x_prev, ·)`, `log G_t(x_prev, x)`; the noise is
/// stream `i` of `key` (from [`move_key`]).
#[inline]
pub fn move_particle<S: Scalar, M: FeynmanKac<S> + ?Sized>(
    model: &M,
    t: usize,
    key: StreamKey,
    i: usize,
    x_prev: Option<&[S]>,
    x: &mut [S],
) -> S {
    let mut rng = key.rng(i);
    match x_prev {
        None => {
            model.sample_initial(&mut rng, x);
            model.log_potential_initial(x)
        }
        Some(xp) => {
            model.sample_transition(t, xp, &mut rng, x);
            model.log_potential(t, xp, x)
        }
    }
}
