//! # Stochastic Lotka–Volterra with Poisson observations
//!
//! The prey–predator experiment of the diffusion-resampling paper:
//!
//! ```text
//! dC = C(α − βR) dt + σ C dW₁,    dR = R(ζC − γ) dt + σ R dW₂,
//! α = γ = 6, β = 2, ζ = 4, σ = 0.15, x0 = (C, R)(0) = (2, 5), t ∈ [0, 3], 256 Milstein steps,
//! y_j ~ Poisson(λ(C, R)),  λ(c, r) = 5 / (1 + exp((−5c + 4, −c·r + 4)))  (elementwise).
//! ```
//!
//! **Conventions.** Observations are taken at every grid time `t_j = j·dt`, `j = 0 … 256`,
//! **including `t = 0`**: 257 observations and 257 true states (`x_0 = x0`). The filters
//! start every particle at `x0` (deterministic), weight by `y_0`, and then alternate a
//! transition and a weighting 256 times. Prediction RMSEs run over all 257 states.
//!
//! - [`simulate`]: the true trajectory and observations from a seed ([`Simulation`]).
//! - [`poisson_log_pmf`], [`logistic_poisson_log_pmf`]: the observation log-density generic
//!   over the scalar.
//! - [`LvModel`]: the state-space model with the known dynamics (its NLL is the "target
//!   loss"); [`KnownLv`]: the same as a [`diffsmc::grad::Parametric`] family in
//!   `(α, β, ζ, γ, σ)`.
//! - [`NeuralLv`]: the learnt transition `x' = x + MLP([x, dW])·dt` (4 → 32 → 2, swish,
//!   226 parameters) as a `Parametric` family, with [`NeuralLv::simulate_learnt`] for
//!   predictions and [`prediction_rmse`] for the metric.
//!
//! ```
//! use diffsmc::grad::{ChunkSize, GradOptions, ParticleFilterNll, gradient};
//! use diffsmc::prelude::*;
//! use diffsmc_lotka_volterra::{prediction_rmse, LvParams, NeuralLv, SimConfig, simulate};
//!
//! let sim = simulate(&LvParams::paper(), &SimConfig::paper(), 42)?;
//! let short = sim.truncated(16)?;
//! let fam = NeuralLv::new(short.observations.clone(), 0)?;
//! let theta = fam.initial_theta();
//! let smc = SmcConfig::new(8)?;
//! let nll = ParticleFilterNll::new(&fam, &smc, &ResamplerSpec::Systematic, 1);
//! let options = GradOptions::default().with_chunk(ChunkSize::Sixteen);
//! let (loss, grad) = gradient(&nll, &theta, &options)?;
//! assert!(loss.is_finite() && grad.len() == 226);
//! let paths = fam.simulate_learnt(&theta, 5, 2)?;
//! let rmse = prediction_rmse(&paths, &short.states)?;
//! assert!(rmse.is_finite());
//! # Ok::<(), diffsmc::SmcError>(())
//! ```

mod data;
mod known;
mod neural;
mod poisson;
mod sde;

pub use data::{Observations, SimConfig, Simulation, prediction_rmse, simulate, simulate_paths};
pub use known::{KnownLv, LvModel};
pub use neural::{HIDDEN, NeuralLv, NeuralLvModel, PREDICT_STREAM_TAG};
pub use poisson::{ln_factorial, logistic_poisson_log_pmf, poisson_log_pmf, poisson_log_pmf_with};
pub use sde::{LvParams, logits, rates};

/// Prey growth rate α.
pub const ALPHA: f64 = 6.0;
/// Predation rate β.
pub const BETA: f64 = 2.0;
/// Predator growth per prey ζ.
pub const ZETA: f64 = 4.0;
/// Predator death rate γ.
pub const GAMMA: f64 = 6.0;
/// Noise level σ.
pub const SIGMA: f64 = 0.15;
/// Initial state (prey, predator).
pub const X0: [f64; 2] = [2.0, 5.0];
/// End time.
pub const T_END: f64 = 3.0;
/// Number of Milstein steps on `[0, T_END]`.
pub const N_STEPS: usize = 256;
/// The step size `T_END / N_STEPS`.
pub const DT: f64 = T_END / N_STEPS as f64;
/// The maximal Poisson rate (the `5` of `λ = 5 / (1 + e^z)`).
pub const RATE_SCALE: f64 = 5.0;

/// The guide `docs/neural-ssm.md`, compiled and run as doctests so its code stays correct.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/neural-ssm.md")]
pub struct NeuralSsmGuide;
