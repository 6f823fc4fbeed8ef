//! Resampling: one trait, many resamplers.
//!
//! Every resampler maps weighted particles `(X_i, log w_i)` (log-weights normalised) to new
//! particles and new normalised log-weights, drawing its randomness from a counter-based
//! [`StreamKey`], and reports what it did in a [`ResampleInfo`].
//!
//! Index resamplers ([`Multinomial`], [`Systematic`], [`Stratified`], [`Residual`], [`Ssp`],
//! [`Killing`]) copy particles by ancestor index: no derivative flows through the choice.
//! [`StopGradient`] copies by multinomial indices but gives each copy the log-weight
//! `log w_I − stopgrad(log w_I) − log N`, whose value is uniform and whose derivative is that
//! of `log w_I` (Ścibior & Wood 2021).
//!
//! [`DiffusionResampler`] (Andersson & Zhao 2025) draws new particles by a reverse-time
//! diffusion whose score is computed in closed form from the weighted particles: every output
//! particle is a smooth function of the inputs, so derivatives flow through it.
//!
//! Differentiable baselines: [`OtResampler`] (entropic optimal transport, Sinkhorn in the log
//! domain), [`GumbelSoftmaxResampler`] (a tempered relaxation of multinomial resampling) and
//! [`SoftResampler`] (multinomial from a mixture with the uniform, importance-corrected
//! weights: the one resampler here whose output weights are not uniform).

pub mod diffusion;
mod gumbel;
mod index;
mod ot;
mod soft;
mod spec;

pub use diffusion::{DiffusionConfig, DiffusionResampler, Dynamics, Integrator, Reference};
pub use gumbel::GumbelSoftmaxResampler;
pub use index::{
    IndexResampler, Killing, Multinomial, Residual, Ssp, StopGradient, Stratified, Systematic,
    sorted_uniforms,
};
pub use ot::{CostScale, OtConfig, OtPlan, OtResampler};
pub use soft::SoftResampler;
pub use spec::ResamplerSpec;

use crate::error::{Result, SmcError};
use crate::particles::Particles;
use crate::rng::StreamKey;
use crate::scalar::Scalar;

/// What a resampling step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResampleInfo {
    /// Whether the particles were actually resampled.
    pub resampled: bool,
    /// Whether an iterative resampler (e.g. Sinkhorn) converged; `true` for the others.
    pub converged: bool,
    /// Iterations used by an iterative resampler; 0 for the others.
    pub iterations: usize,
}

impl ResampleInfo {
    /// A completed, non-iterative resampling.
    pub const RESAMPLED: ResampleInfo = ResampleInfo {
        resampled: true,
        converged: true,
        iterations: 0,
    };

    /// An iterative resampling with its convergence status.
    pub fn iterative(converged: bool, iterations: usize) -> Self {
        ResampleInfo {
            resampled: true,
            converged,
            iterations,
        }
    }
}

/// A resampling scheme, generic over the scalar.
///
/// `log_weights` are normalised (`logsumexp = 0`). `out` has the same shape as `particles`
/// and `out_log_weights` the same length; the resampler fills both, with `out_log_weights`
/// normalised (uniform `-log N` for all but weight-returning schemes such as soft resampling).
pub trait Resampler<S: Scalar>: Send + Sync + std::fmt::Debug {
    /// A short name for logs and tables, e.g. `"systematic"`.
    fn name(&self) -> String;

    /// Whether every output particle is a copy of an input particle (index resamplers, soft
    /// and stop-gradient resampling: `true`), rather than a new point (diffusion, OT,
    /// Gumbel-softmax: `false`, the default). The driver refuses a resampler that returns
    /// `false` for a model whose [`crate::FeynmanKac::requires_index_resampling`] says why it
    /// needs copies ([`crate::SmcError::IncompatibleResampler`]).
    ///
    /// ```
    /// use diffsmc::prelude::*;
    /// use diffsmc::resample::ResamplerSpec;
    /// assert!(Resampler::<f64>::copies_by_index(&Systematic));
    /// let diffusion = "diffusion:T=2,K=8".parse::<ResamplerSpec>()?.build::<f64>()?;
    /// assert!(!diffusion.copies_by_index());
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    fn copies_by_index(&self) -> bool {
        false
    }

    /// Resamples `particles` with normalised `log_weights` into `out` / `out_log_weights`.
    fn resample(
        &self,
        particles: &Particles<S>,
        log_weights: &[S],
        key: StreamKey,
        out: &mut Particles<S>,
        out_log_weights: &mut [S],
    ) -> Result<ResampleInfo>;

    /// [`Resampler::resample`], also reporting the ancestor of every output particle when the
    /// resampler copies by index: on return `ancestors` is empty (no ancestry: the default,
    /// for resamplers that do not copy by index, such as diffusion, OT or Gumbel-softmax) or
    /// holds `out.len()` indices into `particles` (`out[i]` is a copy of
    /// `particles[ancestors[i]]`). The output particles and weights are those of
    /// [`Resampler::resample`] with the same key, bit for bit.
    ///
    /// Index resamplers ([`Multinomial`], [`Systematic`], [`Stratified`], [`Residual`],
    /// [`Ssp`], [`Killing`], [`StopGradient`]) override it. The driver calls it only when
    /// the run keeps a history ([`crate::SmcConfig::with_history`]); fixed-lag smoothing
    /// needs the genealogy it records.
    ///
    /// ```
    /// use diffsmc::prelude::*;
    /// let p = Particles::from_vec(3, 1, vec![0.0_f64, 1.0, 2.0])?;
    /// let lw = vec![f64::NEG_INFINITY, 0.0, f64::NEG_INFINITY]; // all mass on particle 1
    /// let (mut out, mut olw, mut anc) = (Particles::zeros(3, 1), vec![0.0; 3], Vec::new());
    /// let key = StreamKey::new(1, 1, diffsmc::rng::Purpose::Resample);
    /// Systematic.resample_with_ancestors(&p, &lw, key, &mut out, &mut olw, &mut anc)?;
    /// assert_eq!(anc, vec![1, 1, 1]);
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    fn resample_with_ancestors(
        &self,
        particles: &Particles<S>,
        log_weights: &[S],
        key: StreamKey,
        out: &mut Particles<S>,
        out_log_weights: &mut [S],
        ancestors: &mut Vec<usize>,
    ) -> Result<ResampleInfo> {
        ancestors.clear();
        self.resample(particles, log_weights, key, out, out_log_weights)
    }
}

impl<S: Scalar, R: Resampler<S> + ?Sized> Resampler<S> for Box<R> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn copies_by_index(&self) -> bool {
        (**self).copies_by_index()
    }
    fn resample(
        &self,
        particles: &Particles<S>,
        log_weights: &[S],
        key: StreamKey,
        out: &mut Particles<S>,
        out_log_weights: &mut [S],
    ) -> Result<ResampleInfo> {
        (**self).resample(particles, log_weights, key, out, out_log_weights)
    }
    fn resample_with_ancestors(
        &self,
        particles: &Particles<S>,
        log_weights: &[S],
        key: StreamKey,
        out: &mut Particles<S>,
        out_log_weights: &mut [S],
        ancestors: &mut Vec<usize>,
    ) -> Result<ResampleInfo> {
        (**self).resample_with_ancestors(
            particles,
            log_weights,
            key,
            out,
            out_log_weights,
            ancestors,
        )
    }
}

/// Shape checks shared by the resamplers: at least one particle, log-weights and output
/// buffers that match the particles.
pub(crate) fn check_shapes<S: Scalar>(
    particles: &Particles<S>,
    log_weights: &[S],
    out: &Particles<S>,
    out_log_weights: &[S],
) -> Result<()> {
    let n = particles.len();
    if n == 0 {
        return Err(SmcError::invalid("particles", 0, "at least one particle"));
    }
    if log_weights.len() != n {
        return Err(SmcError::DimensionMismatch {
            what: "log-weights vs particles",
            expected: n,
            got: log_weights.len(),
        });
    }
    if out.dim() != particles.dim() {
        return Err(SmcError::DimensionMismatch {
            what: "output particle dimension",
            expected: particles.dim(),
            got: out.dim(),
        });
    }
    if out_log_weights.len() != out.len() {
        return Err(SmcError::DimensionMismatch {
            what: "output log-weights vs output particles",
            expected: out.len(),
            got: out_log_weights.len(),
        });
    }
    Ok(())
}
