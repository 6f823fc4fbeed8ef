//! SMC samplers for static models and SMC² for state-space models.
//!
//! - [`StaticTarget`]: a prior and a likelihood on `R^d` for any scalar ([`Posterior`] builds
//!   one from a [`crate::bayes::Prior`]).
//! - [`TemperingSampler`]: adaptive tempered SMC (conditional-ESS bisection, any resampler,
//!   random-walk / MALA / HMC moves with adapted step size and number of moves, waste-free
//!   SMC) with its log-evidence estimate.
//! - [`Smc2`]: SMC² (Chopin, Jacob & Papaspiliopoulos 2013): θ-particles each carrying a
//!   particle filter, PMMH rejuvenation and the exchange step.
//! - Built-in targets with known answers: [`GaussianTarget`], [`LogisticRegression`],
//!   [`MixtureTarget`].
//!
//! See docs/smc-samplers.md for the maths and the knobs.

mod moves;
mod smc2;
mod target;
mod targets;
mod tempering;
mod waste_free;

pub use moves::MoveKind;
pub use smc2::{Smc2, Smc2Config, Smc2Output};
pub use target::{LogLikelihood, Posterior, StaticTarget};
pub use targets::{GaussianTarget, LogisticRegression, MixtureTarget};
pub use tempering::{TemperingConfig, TemperingOutput, TemperingSampler};
