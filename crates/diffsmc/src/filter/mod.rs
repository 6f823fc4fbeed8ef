//! Proposals and the filters built from them: the guided filter ([`Guided`]) and the auxiliary
//! particle filter ([`Auxiliary`]), both as adapters to [`FeynmanKac`](crate::FeynmanKac)
//! models, so the engine's one driver runs them with every trigger and every resampler
//! (diffusion and optimal transport included), on `f64` and on dual numbers.
//!
//! (The bootstrap filter, [`Bootstrap`](crate::Bootstrap), stays in [`crate::model`]: it is
//! the guided filter whose proposal is the transition itself.)
//!
//! - [`Proposal`]: a user proposal `q_0(x_0)`, `q_t(x_t | x_{t-1})` — reparameterised samplers
//!   and log densities, generic over the scalar.
//! - [`Guided`]: a [`StateSpaceModel`](crate::StateSpaceModel) that provides its transition and
//!   initial densities, plus a proposal, as the Feynman–Kac model with potentials
//!   `G_0 = p(y_0 | x_0) p(x_0) / q_0(x_0)` and
//!   `G_t = p(y_t | x_t) p(x_t | x_{t-1}) / q_t(x_t | x_{t-1})`.
//! - [`LookAhead`]: first-stage weights `η_t(x_{t-1}) ≈ p(y_t | x_{t-1})`.
//! - [`Auxiliary`]: any Feynman–Kac model twisted by a look-ahead (the auxiliary particle
//!   filter); its log-likelihood estimate is that of the untwisted model (see the
//!   [`auxiliary`] module docs for the derivation).
//!
//! The maths, and when to use which: `docs/proposals.md`.
//!
//! ```
//! use diffsmc::filter::{Guided, Proposal};
//! use diffsmc::prelude::*;
//!
//! /// x_t = 0.9 x_{t-1} + N(0, 1), y_t = x_t + N(0, 1), x_0 ~ N(0, 1).
//! struct Ar1 { ys: Vec<f64> }
//! fn ln_normal<S: Scalar>(x: S, m: S, v: f64) -> S {
//!     let r = x - m;
//!     r * r * (-0.5 / v) - 0.5 * (std::f64::consts::TAU * v).ln()
//! }
//! impl<S: Scalar> StateSpaceModel<S> for Ar1 {
//!     fn state_dim(&self) -> usize { 1 }
//!     fn n_observations(&self) -> usize { self.ys.len() }
//!     fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) { x[0] = S::cst(standard_normal(rng)); }
//!     fn sample_transition(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) {
//!         x[0] = xp[0] * 0.9 + standard_normal(rng);
//!     }
//!     fn observation_log_density(&self, t: usize, x: &[S]) -> S { ln_normal(x[0], S::cst(self.ys[t]), 1.0) }
//!     fn has_transition_density(&self) -> bool { true }
//!     fn transition_log_density(&self, _t: usize, xp: &[S], x: &[S]) -> Result<S> {
//!         Ok(ln_normal(x[0], xp[0] * 0.9, 1.0))
//!     }
//!     fn initial_log_density(&self, x: &[S]) -> Result<S> { Ok(ln_normal(x[0], S::zero(), 1.0)) }
//! }
//!
//! /// The locally optimal proposal of this model: N((0.9 x' + y) / 2, 1/2).
//! struct Optimal { ys: Vec<f64> }
//! impl<S: Scalar> Proposal<S> for Optimal {
//!     fn dim(&self) -> usize { 1 }
//!     fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
//!         x[0] = S::cst(self.ys[0] / 2.0 + 0.5f64.sqrt() * standard_normal(rng));
//!     }
//!     fn initial_log_density(&self, x: &[S]) -> S { ln_normal(x[0], S::cst(self.ys[0] / 2.0), 0.5) }
//!     fn sample(&self, t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) {
//!         x[0] = (xp[0] * 0.9 + self.ys[t]) * 0.5 + 0.5f64.sqrt() * standard_normal(rng);
//!     }
//!     fn log_density(&self, t: usize, xp: &[S], x: &[S]) -> S {
//!         ln_normal(x[0], (xp[0] * 0.9 + self.ys[t]) * 0.5, 0.5)
//!     }
//! }
//!
//! let ys = vec![0.3, -0.2, 1.1, 0.4];
//! let guided = Guided::new::<f64>(Ar1 { ys: ys.clone() }, Optimal { ys })?;
//! let out: SmcOutput<f64> = Smc::new(SmcConfig::new(128)?).run(&guided, &Systematic, 1)?;
//! assert!(out.log_likelihood.is_finite());
//! # Ok::<(), diffsmc::SmcError>(())
//! ```

pub mod auxiliary;
mod guided;

pub use auxiliary::{Auxiliary, LookAhead};
pub use guided::Guided;

use crate::rng::StreamRng;
use crate::scalar::Scalar;

/// A proposal for a state-space model: `q_0(x_0)` and `q_t(x_t | x_{t-1})` for `t ≥ 1`, with
/// reparameterised samplers (draw the noise as `f64` from `rng` and transform it with the
/// possibly dual-number parameters, so derivatives flow through the samples) and log
/// densities, written once for any scalar.
///
/// The proposal must put mass wherever the target does (its density must be positive where
/// `p(y_t | x_t) p(x_t | x_{t-1})` is), or the guided filter is biased. The data the proposal
/// conditions on (typically `y_t`) live in it, as they live in the model.
pub trait Proposal<S: Scalar>: Sync {
    /// State dimension (must equal the model's).
    fn dim(&self) -> usize;
    /// Draws `x ~ q_0`.
    fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]);
    /// `log q_0(x)`.
    fn initial_log_density(&self, x: &[S]) -> S;
    /// Draws `x ~ q_t(· | x_prev)` for `t ≥ 1`.
    fn sample(&self, t: usize, x_prev: &[S], rng: &mut StreamRng, x: &mut [S]);
    /// `log q_t(x | x_prev)` for `t ≥ 1`.
    fn log_density(&self, t: usize, x_prev: &[S], x: &[S]) -> S;
}

impl<S: Scalar, Q: Proposal<S> + ?Sized> Proposal<S> for &Q {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
        (**self).sample_initial(rng, x)
    }
    fn initial_log_density(&self, x: &[S]) -> S {
        (**self).initial_log_density(x)
    }
    fn sample(&self, t: usize, x_prev: &[S], rng: &mut StreamRng, x: &mut [S]) {
        (**self).sample(t, x_prev, rng, x)
    }
    fn log_density(&self, t: usize, x_prev: &[S], x: &[S]) -> S {
        (**self).log_density(t, x_prev, x)
    }
}
