//! Particle smoothing from a run's [`History`]: the filtering particles and weights of every
//! step plus the model's transition density.
//!
//! - [`ffbs`]: forward-filtering backward-smoothing of the marginals `p(x_t | y_0..y_{T-1})`,
//!   `O(N²)` per step, in the log domain, generic over the scalar (so it runs on dual numbers:
//!   the smoothed moments are differentiable through the particles and weights).
//! - [`backward_simulation`]: `M` trajectories from the backward kernel, by the exact `O(N)`
//!   per draw sampler or the rejection sampler of Douc et al. (2011), `O(1)` expected per draw,
//!   with a fallback to the exact draw after a bounded number of tries.
//! - [`fixed_lag`]: fixed-lag smoothing `p(x_t | y_0..y_{t+L})` from the genealogy (index
//!   resamplers only).
//! - [`paris`]: PaRIS (Olsson & Westerborn 2017), the online smoother of additive functionals,
//!   and with it [`fisher_score`], the Fisher-identity estimate of `∇θ log p(y)` that needs no
//!   differentiable resampling.
//!
//! Every method except fixed-lag works whatever the resampler (diffusion and OT included):
//! backward kernels need only `X_t`, `W_t` and `f(x_{t+1} | x_t)`. They need a run with
//! [`crate::SmcConfig::with_history`] and a model with
//! [`StateSpaceModel::has_transition_density`]; otherwise they return a typed error naming
//! themselves. Parallel loops use fixed chunks and counter-based streams, so a seed fixes
//! every result bit for bit whatever the number of threads. See docs/smoothing.md.
//!
//! ```
//! use diffsmc::prelude::*;
//! use diffsmc::smooth::ffbs;
//! # struct Ar1 { ys: Vec<f64> }
//! # impl<S: Scalar> StateSpaceModel<S> for Ar1 {
//! #     fn state_dim(&self) -> usize { 1 }
//! #     fn n_observations(&self) -> usize { self.ys.len() }
//! #     fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) { x[0] = S::cst(standard_normal(rng)); }
//! #     fn sample_transition(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) {
//! #         x[0] = xp[0] * 0.5 + standard_normal(rng);
//! #     }
//! #     fn observation_log_density(&self, t: usize, x: &[S]) -> S { let r = x[0] - self.ys[t]; r * r * -0.5 }
//! #     fn has_transition_density(&self) -> bool { true }
//! #     fn transition_log_density(&self, _t: usize, xp: &[S], x: &[S]) -> Result<S> {
//! #         let r = x[0] - xp[0] * 0.5; Ok(r * r * -0.5 - 0.918_938_533_204_672_7)
//! #     }
//! #     fn initial_log_density(&self, x: &[S]) -> Result<S> { Ok(x[0] * x[0] * -0.5 - 0.918_938_533_204_672_7) }
//! # }
//! let pf = Bootstrap(Ar1 { ys: vec![0.3, -0.2, 0.9, 0.1] });
//! let config = SmcConfig::new(128)?.with_history(true);
//! let run: SmcOutput<f64> = Smc::new(config).run(&pf, &Systematic, 1)?;
//! let smoothed = ffbs(pf.inner(), &run)?;
//! assert_eq!(smoothed.moments.means.len(), 4);
//! # Ok::<(), diffsmc::SmcError>(())
//! ```

mod backward;
mod ffbs;
mod fixed_lag;
mod paris;

pub use crate::model::ParametricSsm;
pub use backward::{BackwardConfig, BackwardMethod, BackwardOutput, backward_simulation};
pub use ffbs::{FfbsOutput, ffbs};
pub use fixed_lag::fixed_lag;
pub use paris::{
    AdditiveFunctional, FisherScore, ParisConfig, ParisOutput, ScoreEstimate, fisher_score, paris,
};

use crate::error::{Result, SmcError};
use crate::model::StateSpaceModel;
use crate::particles::Particles;
use crate::scalar::Scalar;
use crate::smc::{History, SmcOutput};

/// Smoothed marginal moments: per step `t` and dimension `k`, `E[x_t[k] | y]` and
/// `Var[x_t[k] | y]` as estimated by a smoother.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SmoothedMoments<S> {
    /// Per step, per dimension: the smoothed mean.
    pub means: Vec<Vec<S>>,
    /// Per step, per dimension: the smoothed variance.
    pub variances: Vec<Vec<S>>,
}

/// The history of `run`, or a typed error when the run kept none.
pub(crate) fn history_of<S>(run: &SmcOutput<S>) -> Result<&History<S>> {
    run.history.as_ref().ok_or(SmcError::InvalidParameter {
        name: "run history",
        value: "none".into(),
        expected: "a run with SmcConfig::with_history(true) (smoothers need every step)",
    })
}

/// Checks that `model` provides its transition density and that `h` matches its shape.
pub(crate) fn check_model<S: Scalar, M: StateSpaceModel<S> + ?Sized>(
    model: &M,
    h: &History<S>,
    needed_by: &'static str,
) -> Result<()> {
    if !model.has_transition_density() {
        return Err(SmcError::Unsupported {
            what: "transition density",
            needed_by,
        });
    }
    check_shape(model, h)
}

/// The history has one step per observation, in the model's dimension, and particles.
pub(crate) fn check_shape<S: Scalar, M: StateSpaceModel<S> + ?Sized>(
    model: &M,
    h: &History<S>,
) -> Result<()> {
    if h.len() != model.n_observations() {
        return Err(SmcError::DimensionMismatch {
            what: "history steps vs model observations",
            expected: model.n_observations(),
            got: h.len(),
        });
    }
    if h.is_empty() || h.n_particles() == 0 {
        return Err(SmcError::invalid(
            "run history",
            "empty",
            "at least one step and one particle",
        ));
    }
    if h.dim() != model.state_dim() {
        return Err(SmcError::DimensionMismatch {
            what: "history state dimension",
            expected: model.state_dim(),
            got: h.dim(),
        });
    }
    Ok(())
}

/// Per-dimension mean and variance of the particles `x[idx[i]]` with normalised log-weights
/// `lw[i]` (`idx = None`: the identity).
pub(crate) fn weighted_moments<S: Scalar>(
    x: &Particles<S>,
    idx: Option<&[usize]>,
    lw: &[S],
) -> (Vec<S>, Vec<S>) {
    let d = x.dim();
    let pick = |i: usize| x.particle(idx.map_or(i, |a| a[i]));
    let w: Vec<S> = lw.iter().map(|l| l.exp()).collect();
    let mut m = vec![S::zero(); d];
    for (i, wi) in w.iter().enumerate() {
        if wi.re() == 0.0 {
            continue;
        }
        for (mk, xk) in m.iter_mut().zip(pick(i)) {
            *mk += *wi * *xk;
        }
    }
    let mut v = vec![S::zero(); d];
    for (i, wi) in w.iter().enumerate() {
        if wi.re() == 0.0 {
            continue;
        }
        for ((vk, xk), mk) in v.iter_mut().zip(pick(i)).zip(&m) {
            let r = *xk - *mk;
            *vk += *wi * r * r;
        }
    }
    (m, v)
}

/// Inverse-CDF draw from normalised weights given by their cumulative sums `cum`
/// (`cum[N-1] ≈ 1`), by binary search.
pub(crate) fn draw_cumulative(cum: &[f64], u: f64) -> usize {
    let target = u * cum[cum.len() - 1];
    cum.partition_point(|&c| c <= target).min(cum.len() - 1)
}

/// Cumulative sums of the value part of normalised log-weights.
pub(crate) fn cumulative_weights<S: Scalar>(lw: &[S]) -> Vec<f64> {
    let mut s = 0.0;
    lw.iter()
        .map(|l| {
            s += l.re().exp();
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inverse-CDF draws land in the bin of `u`, zero-weight bins are never drawn, and
    /// `u → 1` stays in range.
    #[test]
    fn cumulative_draws_respect_the_bins() {
        let lw = [0.25f64.ln(), f64::NEG_INFINITY, 0.75f64.ln()];
        let cum = cumulative_weights(&lw);
        assert_eq!(draw_cumulative(&cum, 0.0), 0);
        assert_eq!(draw_cumulative(&cum, 0.2499), 0);
        assert_eq!(draw_cumulative(&cum, 0.2501), 2);
        assert_eq!(draw_cumulative(&cum, 1.0 - 1e-16), 2);
        for k in 0..1000 {
            assert_ne!(draw_cumulative(&cum, k as f64 / 1000.0), 1);
        }
    }

    /// Weighted moments against a hand computation, with an index map.
    #[test]
    fn weighted_moments_by_hand() {
        let x = Particles::from_vec(3, 1, vec![1.0f64, 2.0, 4.0]).unwrap();
        let lw = [0.5f64.ln(), 0.5f64.ln()];
        let (m, v) = weighted_moments(&x, Some(&[0, 2]), &lw);
        assert!((m[0] - 2.5).abs() < 1e-15 && (v[0] - 2.25).abs() < 1e-15);
    }
}
