//! # diffsmc-sde: parameter inference for discretely observed SDEs
//!
//! A diffusion `dX = b_θ(X) dt + σ_θ(X) dW` observed exactly at a few times `t_0 < … < t_n`
//! has the likelihood `Π_k p_θ(y_{k+1} | y_k)`, whose transition densities are intractable.
//! Each one is estimated without bias (for the `M`-sub-step Euler scheme) by sampling
//! **diffusion bridges** from `y_k` to `y_{k+1}` and weighting them by the ratio of the
//! Euler path density to the proposal's. The bridge noise is reparameterised (drawn as `f64`,
//! transformed by θ), so the estimate is differentiable in θ with the engine's dual numbers
//! and the built-in optimisers can maximise it.
//!
//! - [`Sde`]: drift and diffusion, generic over the scalar; [`Ou`] (exact transition density
//!   known) and [`DoubleWell`] (none) implement it; [`SdeFamily`] builds them from θ.
//! - [`Bridge`]: the Feynman–Kac model of one interval (the FK time runs over the `M`
//!   sub-steps; potentials are Girsanov-type log-ratios; [`BridgeProposal`] picks the modified
//!   diffusion bridge or the Delyon–Hu guided proposal). The ordinary [`diffsmc::Smc`] driver
//!   runs it: with `Trigger::Never` it is importance sampling, with resampling SMC bridge
//!   sampling.
//! - [`path_log_likelihood`]: the sum over intervals, one seeded run each, in parallel.
//! - [`PathObjective`]: the negative path log-likelihood as a
//!   [`diffsmc::grad::Differentiable`] of φ = (…, log σ) ([`Parametrisation`]), so
//!   [`diffsmc::grad::gradient`] differentiates it; [`ExactOuObjective`] is the exact OU
//!   reference.
//! - [`simulate_euler`], [`Ou::simulate_exact`]: seeded simulators.
//!
//! Written only against the public API of `diffsmc`. The construction, the weights and
//! measured limits are in `docs/sde-bridges.md`.
//!
//! ```
//! use diffsmc::ResamplerSpec;
//! use diffsmc_sde::{BridgeSettings, OuFamily, Ou, Parametrisation, PathObjective, regular_times};
//!
//! // 50 observations of an OU process at Δ = 0.1.
//! let truth = Ou::new(1.5, 0.3, 0.4, 1)?;
//! let obs = truth.simulate_exact(&[0.0], &regular_times(50, 0.1), 11)?;
//!
//! // The NLL estimate (64 bridges of 8 sub-steps per interval) and its gradient in
//! // φ = (κ, μ, log σ), by dual numbers through every bridge.
//! let settings = BridgeSettings::new(64, 8)?;
//! let objective = PathObjective {
//!     family: &OuFamily { dim: 1 },
//!     obs: &obs,
//!     settings: &settings,
//!     resampler: &ResamplerSpec::Systematic,
//!     seed: 5,
//!     parametrisation: Parametrisation::LogPositive,
//! };
//! let (nll, grad) = diffsmc::grad::gradient(&objective, &[1.5, 0.3, 0.4f64.ln()], &diffsmc::grad::GradOptions::default())?;
//! let exact = -truth.exact_log_likelihood(&obs)?;
//! assert!((nll - exact).abs() < 1.0);
//! assert!(grad.iter().all(|g| g.is_finite()));
//! # Ok::<(), diffsmc::SmcError>(())
//! ```

mod bridge;
mod models;
mod path;
mod sde;
mod simulate;

pub use bridge::{Bridge, BridgeProposal, Lookahead};
pub use models::{DoubleWell, DoubleWellFamily, Ou, OuFamily, SdeFamily};
pub use path::{
    BridgeSettings, ExactOuObjective, Observations, Parametrisation, PathEstimate, PathObjective,
    interval_seed, map_intervals, path_log_likelihood, standard_errors,
};
pub use sde::Sde;
pub use simulate::{regular_times, simulate_euler};

/// docs/sde-bridges.md's library example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/sde-bridges.md")]
pub struct SdeBridgesDoctests;
