//! # diffsmc: differentiable sequential Monte Carlo
//!
//! A particle-filtering engine in which every model is differentiable in its parameters end
//! to end. Models are written once, generic over a [`Scalar`], and run on `f64` for filtering
//! and on `num-dual` dual numbers for gradients.
//!
//! - [`model`]: [`FeynmanKac`] models, [`StateSpaceModel`]s and the [`Bootstrap`] adapter.
//! - [`filter`]: proposals, the guided filter ([`Guided`]) and the auxiliary particle filter
//!   ([`Auxiliary`], with a [`LookAhead`]).
//! - [`smc`]: the [`Smc`] driver with [`Trigger`]s and per-step records.
//! - [`resample`]: the [`Resampler`] trait and the resamplers.
//! - [`kalman`]: the exact Kalman filter and RTS smoother ([`LinearGaussian`]), generic over
//!   the scalar, for linear Gaussian models.
//! - [`linalg`]: Cholesky factors, triangular solves and log-determinants on any scalar.
//! - [`rng`]: counter-based random streams (a seed fixes every result, whatever the threads).
//! - [`samplers`]: adaptive tempered SMC for static targets (evidence, rw/MALA/HMC moves,
//!   waste-free) and SMC² for state-space model parameters.
//! - `testing` (cargo feature `testing`): proptest strategies and checkers for your own models
//!   and resamplers (gradients, offspring counts, consistency, thread determinism, finite
//!   potentials).
//!
//! ```
//! use diffsmc::prelude::*;
//! # struct M;
//! # impl<S: Scalar> StateSpaceModel<S> for M {
//! #     fn state_dim(&self) -> usize { 1 }
//! #     fn n_observations(&self) -> usize { 3 }
//! #     fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) { x[0] = S::cst(standard_normal(rng)); }
//! #     fn sample_transition(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) { x[0] = xp[0] * 0.5 + standard_normal(rng); }
//! #     fn observation_log_density(&self, _t: usize, x: &[S]) -> S { x[0] * x[0] * -0.5 }
//! # }
//! let out: SmcOutput<f64> = Smc::new(SmcConfig::new(100)?).run(&Bootstrap(M), &Systematic, 7)?;
//! println!("log-likelihood {}", out.log_likelihood);
//! # Ok::<(), diffsmc::SmcError>(())
//! ```

pub mod bayes;
pub mod error;
pub mod filter;
pub mod grad;
pub mod kalman;
mod kernels;
pub mod linalg;
pub mod model;
pub mod par;
pub mod particles;
pub mod resample;
pub mod rng;
pub mod samplers;
pub mod scalar;
pub mod smc;
pub mod tape;
// Also compiled for the crate's own unit tests, which share `testing::models`.
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::{Result, SmcError};
pub use filter::{Auxiliary, Guided, LookAhead, Proposal};
pub use kalman::{KalmanOutput, LinearGaussian, RtsOutput};
pub use kernels::exp_shifted_sums;
pub use model::{Bootstrap, FeynmanKac, StateSpaceModel};
pub use particles::{
    Particles, ess, normalise_log_weights, weighted_mean, weighted_mean_cov, weights_f64,
    weights_f64_into,
};
pub use resample::{DiffusionConfig, DiffusionResampler, ResampleInfo, Resampler, ResamplerSpec};
pub use samplers::{
    MoveKind, Smc2, Smc2Config, Smc2Output, StaticTarget, TemperingConfig, TemperingOutput,
    TemperingSampler,
};
pub use scalar::{Scalar, log_sum_exp};
pub use smc::{Smc, SmcConfig, SmcOutput, Trigger};
pub use tape::Rev;

/// Everything a model author needs in one import.
pub mod prelude {
    pub use crate::error::{Result, SmcError};
    pub use crate::filter::{Auxiliary, Guided, LookAhead, Proposal};
    pub use crate::model::{Bootstrap, FeynmanKac, StateSpaceModel};
    pub use crate::particles::Particles;
    pub use crate::resample::{
        CostScale, DiffusionConfig, DiffusionResampler, Dynamics, GumbelSoftmaxResampler,
        Integrator, Killing, Multinomial, OtConfig, OtResampler, Reference, ResampleInfo,
        Resampler, ResamplerSpec, Residual, SoftResampler, Ssp, StopGradient, Stratified,
        Systematic,
    };
    pub use crate::rng::{StreamKey, StreamRng, standard_normal};
    pub use crate::scalar::{Scalar, log_sum_exp};
    pub use crate::smc::{Smc, SmcConfig, SmcOutput, Trigger};
    pub use num_dual::DualStruct;
}

/// The README's quick start, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// docs/parameter-estimation.md, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/parameter-estimation.md")]
pub struct ParameterEstimationDoctests;
/// docs/writing-a-model.md, compiled and run as doctests (it uses the testing kit).
#[cfg(all(doctest, feature = "testing"))]
#[doc = include_str!("../../../docs/writing-a-model.md")]
pub struct WritingAModelDoctests;
/// docs/proposals.md, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/proposals.md")]
pub struct ProposalsDoctests;

pub mod smooth;
pub use smc::{Ancestry, History};
pub use smooth::{BackwardConfig, BackwardMethod, ParisConfig, SmoothedMoments};

/// docs/smoothing.md, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/smoothing.md")]
pub struct SmoothingDoctests;
/// docs/smc-samplers.md, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/smc-samplers.md")]
pub struct SmcSamplersDoctests;
pub use bayes::{
    GradientPmcmc, KalmanLikelihood, McmcConfig, ParticleGibbs, PfLikelihood, Pmmh, Posterior,
};
/// docs/bayesian-inference.md, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/bayesian-inference.md")]
pub struct BayesianInferenceDoctests;
