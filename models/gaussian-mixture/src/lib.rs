//! The Gaussian-mixture importance-resampling benchmark of Andersson & Zhao (2025),
//! "Diffusion differentiable resampling".
//!
//! A Gaussian-mixture prior `Σ_i ω_i N(m_i, v_i)` on R^d is observed through
//! `y = H x + N(0, Ξ)`; the posterior is again a Gaussian mixture, known in closed form
//! ([`GmProblem::posterior`]). The experiment draws `N` particles from the prior, weights them
//! by the likelihood ([`GmProblem::importance_sample`]), resamples them with the resampler under
//! test, and compares the result with exact posterior draws using the sliced 1-Wasserstein
//! distance ([`sliced_wasserstein`], [`SlicedWasserstein`]) and the squared error of the
//! resampled mean against the exact posterior mean ([`mean_sq_error`]).
//!
//! The paper's instance ([`GmProblem::paper`]): `d = 8`, `c = 5`, `ω_i = 1/c`,
//! `m_i ~ U[-5, 5]^d`, `v_i = g gᵀ + I_d` with `g ~ N(0, I_d)`, `H` the all-ones `1×d` matrix,
//! `Ξ = 1`, `y = H Σ_i m_i / c`, `N = 10 000`, 1000 directions.
//!
//! All randomness comes from [`diffsmc::rng`] streams, so a seed fixes every result bit for bit.
//! Point sets are particle-major `f64` buffers: `n` points in R^d are `n·d` numbers.
//!
//! ```
//! use diffsmc::rng::{Purpose, StreamKey};
//! use diffsmc_gaussian_mixture::{
//!     GmProblem, PAPER_COMPONENTS, PAPER_DIM, SlicedWasserstein, mean_sq_error,
//! };
//!
//! let seed = 7;
//! let problem = GmProblem::paper(PAPER_DIM, PAPER_COMPONENTS, seed)?;
//! let n = 1000;
//! // Importance step: prior draws and their likelihood weights.
//! let is = problem.importance_sample(n, StreamKey::new(seed, 0, Purpose::Move))?;
//! // (A resampler would turn `is` into equally weighted particles here.)
//! let exact = problem.posterior_draws(n, StreamKey::new(seed, 0, Purpose::Simulate));
//! let mut sw = SlicedWasserstein::new(PAPER_DIM, 200, StreamKey::new(seed, 0, Purpose::Other(0)))?;
//! let w = is.weights();
//! let swd = sw.distance(&is.particles, Some(&w), &exact, None)?;
//! let mse = mean_sq_error(&is.particles, Some(&w), PAPER_DIM, problem.posterior_mean().as_slice())?;
//! assert!(swd.is_finite() && mse.is_finite());
//! # Ok::<(), diffsmc_gaussian_mixture::GmError>(())
//! ```

pub mod error;
mod linalg;
pub mod metrics;
pub mod mixture;
pub mod problem;

pub use error::{GmError, Result};
pub use metrics::{
    SlicedWasserstein, mean_sq_error, sliced_wasserstein, weighted_mean, weights_from_log,
};
pub use mixture::GaussianMixture;
pub use problem::{
    GmProblem, ImportanceSample, PAPER_COMPONENTS, PAPER_DIM, PAPER_DIRECTIONS,
    PAPER_MEAN_HALF_WIDTH, PAPER_PARTICLES, PaperConfig,
};
