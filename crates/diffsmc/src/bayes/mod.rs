//! Bayesian inference on model parameters: priors and transforms, particle marginal
//! Metropolis–Hastings ([`Pmmh`]), particle Gibbs with ancestor sampling ([`ParticleGibbs`]),
//! gradient-based particle MCMC ([`GradientPmcmc`]: MALA and HMC on the dual-number gradient
//! of the filter's log-likelihood estimate) and convergence diagnostics ([`diagnostics`]).
//!
//! All samplers move in an unconstrained space φ ∈ R^p ([`Transforms`]), run several chains
//! in parallel (each its own stream family, results identical whatever the thread count) and
//! return a [`Posterior`]. See docs/bayesian-inference.md.

pub mod diagnostics;
pub mod gradient_mcmc;
pub mod mcmc;
pub mod pgibbs;
pub mod pmmh;
pub mod prior;
pub mod transform;

/// The θ ↦ state-space model family particle Gibbs samples (also used by the smoothers).
pub use crate::model::ParametricSsm;
pub use diagnostics::ParamSummary;
pub use gradient_mcmc::{GradientPmcmc, GradientProposal};
pub use mcmc::{Chain, KalmanLikelihood, LogLikelihood, McmcConfig, PfLikelihood, Posterior};
pub use pgibbs::{ParticleGibbs, RandomWalkTheta, ThetaUpdate, complete_data_log_density, csmc_as};
pub use pmmh::Pmmh;
pub use prior::{Marginal, Prior, ProductPrior, Support};
pub use transform::{Transform, Transforms};
