//! Diffusion priors: the noised prior's score at every diffusion time, and its sampler at `T`.

use diffsmc::Scalar;
use diffsmc::rng::StreamRng;

use crate::sde::VpSde;

/// A prior `p = p_0` on R^d given through the forward SDE [`VpSde`] by the scores
/// `∇ log p_t(x)` of its noised marginals `p_t = law(α_t X_0 + σ_t ε)`, `X_0 ~ p`,
/// `ε ~ N(0, I)`, for `t ∈ [0, T]`, and a sampler of `p_T`.
///
/// This is what a trained diffusion model provides (its score network at every noise level),
/// written generically over the scalar so that the sampler built on it runs on dual numbers
/// too. A learnt model's terminal sampler is usually the reference `N(0, I)`, an approximation
/// of `p_T` whose error is `O(α_T)`; an exact prior (such as [`GaussianMixturePrior`]) samples
/// `p_T` itself.
///
/// Priors that also know the log-density `log p_t(x)` (up to a constant independent of `t`
/// and `x`) implement [`DiffusionPrior::log_density`]; the sampler can then reweight with the
/// exact marginals (see [`crate::Targets::Exact`]).
///
/// [`GaussianMixturePrior`]: crate::GaussianMixturePrior
pub trait DiffusionPrior<S: Scalar>: Sync {
    /// The dimension `d`.
    fn dim(&self) -> usize;
    /// The forward SDE defining `p_t`.
    fn sde(&self) -> VpSde;
    /// Writes `∇_x log p_t(x)` to `score` (length `d`).
    fn score(&self, t: f64, x: &[S], score: &mut [S]);
    /// Draws `x ~ p_T` (`T = self.sde().t_max()`), reparameterised: `f64` noise from `rng`.
    fn sample_terminal(&self, rng: &mut StreamRng, x: &mut [S]);
    /// `log p_t(x)`, or `None` when the prior does not know its density (the default).
    fn log_density(&self, t: f64, x: &[S]) -> Option<S> {
        let _ = (t, x);
        None
    }
    /// The score and the log-density together (the default calls [`DiffusionPrior::score`] and
    /// [`DiffusionPrior::log_density`]; exact priors share the work).
    fn score_and_log_density(&self, t: f64, x: &[S], score: &mut [S]) -> Option<S> {
        self.score(t, x, score);
        self.log_density(t, x)
    }
}

impl<S: Scalar, P: DiffusionPrior<S> + ?Sized> DiffusionPrior<S> for &P {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn sde(&self) -> VpSde {
        (**self).sde()
    }
    fn score(&self, t: f64, x: &[S], score: &mut [S]) {
        (**self).score(t, x, score)
    }
    fn sample_terminal(&self, rng: &mut StreamRng, x: &mut [S]) {
        (**self).sample_terminal(rng, x)
    }
    fn log_density(&self, t: f64, x: &[S]) -> Option<S> {
        (**self).log_density(t, x)
    }
    fn score_and_log_density(&self, t: f64, x: &[S], score: &mut [S]) -> Option<S> {
        (**self).score_and_log_density(t, x, score)
    }
}
