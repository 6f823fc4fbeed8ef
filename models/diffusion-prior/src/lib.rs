//! # SMC posterior sampling with a diffusion prior
//!
//! Sampling a Bayesian posterior `p(x | y) ∝ p(x) N(y; H x, R)` when the prior `p` is given
//! by a diffusion model — the scores `∇ log p_t` of its noised marginals under a forward SDE —
//! with weighted particles that are reweighted and resampled over diffusion time. The sampler
//! is a Feynman–Kac model ([`DiffusionPosterior`]) run by the ordinary [`diffsmc::Smc`]
//! driver with any resampler and trigger, so it is consistent: as the number of particles
//! grows its weighted particles converge to the last target, which is the posterior (exactly
//! with [`Targets::Exact`], up to the grid's discretisation with [`Targets::Discretised`]).
//!
//! - [`VpSde`], [`TimeGrid`]: the variance-preserving forward SDE and the diffusion-time grid
//!   `T = τ_0 > … > τ_M = 0`.
//! - [`DiffusionPrior`]: the noised prior's score at every `t` and its sampler at `T`
//!   (optionally its log-density).
//! - [`GaussianMixturePrior`]: the exact diffusion prior of a Gaussian mixture (the noised
//!   prior is a Gaussian mixture in closed form).
//! - [`LinearObservation`]: `y = H x + N(0, R)`.
//! - [`DiffusionPosterior`]: the twisted Feynman–Kac model; [`Unweighted`] runs its proposal
//!   without weights (the biased "guidance only" baseline).
//!
//! The targets, the proposal and the weights are derived in `docs/diffusion-prior.md`.
//!
//! ```
//! use diffsmc::prelude::*;
//! use diffsmc::rng::{Purpose, StreamKey};
//! use diffsmc_diffusion_prior::{
//!     DiffusionPosterior, GaussianMixturePrior, LinearObservation, PosteriorConfig, TimeGrid,
//!     VpSde,
//! };
//! use diffsmc_gaussian_mixture::{PaperConfig, SlicedWasserstein, weights_from_log};
//!
//! let problem = PaperConfig::new(4, 3)?.build(7)?;
//! let prior = GaussianMixturePrior::new(problem.prior(), VpSde::default())?;
//! let model = DiffusionPosterior::new(
//!     &prior,
//!     LinearObservation::from_problem(&problem)?,
//!     TimeGrid::uniform(1.0, 50)?,
//!     PosteriorConfig::default(),
//! )?;
//! let smc = Smc::new(SmcConfig::new(1000)?.with_trigger(Trigger::EssBelow(0.5))?);
//! let out: SmcOutput<f64> = smc.run(&model, &Systematic, 1)?;
//! let w = weights_from_log(&out.log_weights)?;
//! let exact = problem.posterior_draws(1000, StreamKey::new(7, 1, Purpose::Simulate));
//! let mut sw = SlicedWasserstein::new(4, 100, StreamKey::new(7, 2, Purpose::Other(0)))?;
//! let swd = sw.distance(out.particles.as_slice(), Some(&w), &exact, None)?;
//! assert!(swd < 0.5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod gm;
pub mod observation;
pub mod posterior;
pub mod prior;
pub mod sde;

pub use gm::GaussianMixturePrior;
pub use observation::LinearObservation;
pub use posterior::{DiffusionPosterior, Kernel, PosteriorConfig, Targets, Unweighted};
pub use prior::DiffusionPrior;
pub use sde::{TimeGrid, VpSde};
