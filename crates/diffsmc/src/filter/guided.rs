//! The guided filter: a state-space model and a proposal as a Feynman–Kac model.

use super::Proposal;
use crate::error::{Result, SmcError};
use crate::model::{FeynmanKac, StateSpaceModel};
use crate::rng::StreamRng;
use crate::scalar::Scalar;

/// The guided particle filter of a [`StateSpaceModel`] with a [`Proposal`]: the Feynman–Kac
/// model with `M_0 = q_0`, `M_t = q_t` and potentials
///
/// ```text
/// G_0(x_0)          = p(y_0 | x_0) p(x_0) / q_0(x_0)
/// G_t(x_{t-1}, x_t) = p(y_t | x_t) p(x_t | x_{t-1}) / q_t(x_t | x_{t-1})     (t ≥ 1)
/// ```
///
/// so that `∏_t G_t` under the proposal path measure is the joint density `p(x_{0:T-1},
/// y_{0:T-1})` over the proposal's, and the driver's log-likelihood estimate is unbiased (on
/// the natural scale) for `p(y_{0:T-1})` with every unbiased resampler and every trigger.
/// With `q = p` it is the bootstrap filter.
///
/// The model must provide its densities ([`StateSpaceModel::has_transition_density`]): the
/// constructor checks. Should a density call nevertheless fail during a run, the potential
/// is NaN and the run stops with [`SmcError::DegenerateWeights`] at that step.
///
/// ```
/// use diffsmc::filter::{Guided, Proposal};
/// use diffsmc::prelude::*;
/// # #[derive(Debug)]
/// # struct NoDensity;
/// # impl<S: Scalar> StateSpaceModel<S> for NoDensity {
/// #     fn state_dim(&self) -> usize { 1 }
/// #     fn n_observations(&self) -> usize { 1 }
/// #     fn sample_initial(&self, _rng: &mut StreamRng, x: &mut [S]) { x[0] = S::zero(); }
/// #     fn sample_transition(&self, _t: usize, xp: &[S], _rng: &mut StreamRng, x: &mut [S]) { x[0] = xp[0]; }
/// #     fn observation_log_density(&self, _t: usize, _x: &[S]) -> S { S::zero() }
/// # }
/// # #[derive(Debug)]
/// # struct Q;
/// # impl<S: Scalar> Proposal<S> for Q {
/// #     fn dim(&self) -> usize { 1 }
/// #     fn sample_initial(&self, _rng: &mut StreamRng, x: &mut [S]) { x[0] = S::zero(); }
/// #     fn initial_log_density(&self, _x: &[S]) -> S { S::zero() }
/// #     fn sample(&self, _t: usize, xp: &[S], _rng: &mut StreamRng, x: &mut [S]) { x[0] = xp[0]; }
/// #     fn log_density(&self, _t: usize, _xp: &[S], _x: &[S]) -> S { S::zero() }
/// # }
/// // A model without a transition density cannot be guided.
/// let err = Guided::new::<f64>(NoDensity, Q).unwrap_err();
/// assert_eq!(
///     err,
///     SmcError::Unsupported { what: "transition density", needed_by: "guided filter" }
/// );
/// ```
#[derive(Debug, Clone)]
pub struct Guided<M, Q> {
    model: M,
    proposal: Q,
}

impl<M, Q> Guided<M, Q> {
    /// The guided filter of `model` with `proposal`.
    ///
    /// Errors: [`SmcError::Unsupported`] (`what: "transition density"`, `needed_by: "guided
    /// filter"`) when the model does not provide its transition and initial densities;
    /// [`SmcError::DimensionMismatch`] (`"proposal dimension"`) when the proposal's dimension
    /// is not the model's state dimension.
    pub fn new<S: Scalar>(model: M, proposal: Q) -> Result<Self>
    where
        M: StateSpaceModel<S>,
        Q: Proposal<S>,
    {
        if !model.has_transition_density() {
            return Err(SmcError::Unsupported {
                what: "transition density",
                needed_by: "guided filter",
            });
        }
        if proposal.dim() != model.state_dim() {
            return Err(SmcError::DimensionMismatch {
                what: "proposal dimension",
                expected: model.state_dim(),
                got: proposal.dim(),
            });
        }
        Ok(Guided { model, proposal })
    }
    /// The state-space model.
    pub fn model(&self) -> &M {
        &self.model
    }
    /// The proposal.
    pub fn proposal(&self) -> &Q {
        &self.proposal
    }
    /// The model and the proposal.
    pub fn into_parts(self) -> (M, Q) {
        (self.model, self.proposal)
    }
}

/// The value of a density call, NaN (which the driver reports as degenerate weights at the
/// step) if the model fails to provide it.
#[inline]
fn or_nan<S: Scalar>(r: Result<S>) -> S {
    r.unwrap_or_else(|_| S::cst(f64::NAN))
}

impl<S: Scalar, M: StateSpaceModel<S>, Q: Proposal<S>> FeynmanKac<S> for Guided<M, Q> {
    fn dim(&self) -> usize {
        self.model.state_dim()
    }
    fn n_steps(&self) -> usize {
        self.model.n_observations()
    }
    fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
        self.proposal.sample_initial(rng, x)
    }
    /// `log p(y_0 | x) + log p(x) − log q_0(x)`.
    fn log_potential_initial(&self, x: &[S]) -> S {
        self.model.observation_log_density(0, x) + or_nan(self.model.initial_log_density(x))
            - self.proposal.initial_log_density(x)
    }
    fn sample_transition(&self, t: usize, x_prev: &[S], rng: &mut StreamRng, x: &mut [S]) {
        self.proposal.sample(t, x_prev, rng, x)
    }
    /// `log p(y_t | x) + log p(x | x_prev) − log q_t(x | x_prev)`.
    fn log_potential(&self, t: usize, x_prev: &[S], x: &[S]) -> S {
        self.model.observation_log_density(t, x)
            + or_nan(self.model.transition_log_density(t, x_prev, x))
            - self.proposal.log_density(t, x_prev, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::standard_normal;

    /// A scalar random walk with unit noise observed with unit noise, densities included.
    #[derive(Debug)]
    struct Rw {
        ys: Vec<f64>,
    }
    fn ln_normal<S: Scalar>(x: S, m: S, v: f64) -> S {
        let r = x - m;
        r * r * (-0.5 / v) - 0.5 * (std::f64::consts::TAU * v).ln()
    }
    impl<S: Scalar> StateSpaceModel<S> for Rw {
        fn state_dim(&self) -> usize {
            1
        }
        fn n_observations(&self) -> usize {
            self.ys.len()
        }
        fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
            x[0] = S::cst(standard_normal(rng));
        }
        fn sample_transition(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) {
            x[0] = xp[0] + standard_normal(rng);
        }
        fn observation_log_density(&self, t: usize, x: &[S]) -> S {
            ln_normal(x[0], S::cst(self.ys[t]), 1.0)
        }
        fn has_transition_density(&self) -> bool {
            true
        }
        fn transition_log_density(&self, _t: usize, xp: &[S], x: &[S]) -> Result<S> {
            Ok(ln_normal(x[0], xp[0], 1.0))
        }
        fn initial_log_density(&self, x: &[S]) -> Result<S> {
            Ok(ln_normal(x[0], S::zero(), 1.0))
        }
    }
    /// The transition itself as a proposal (then the guided filter is the bootstrap filter).
    struct Prior;
    impl<S: Scalar> Proposal<S> for Prior {
        fn dim(&self) -> usize {
            1
        }
        fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
            x[0] = S::cst(standard_normal(rng));
        }
        fn initial_log_density(&self, x: &[S]) -> S {
            ln_normal(x[0], S::zero(), 1.0)
        }
        fn sample(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) {
            x[0] = xp[0] + standard_normal(rng);
        }
        fn log_density(&self, _t: usize, xp: &[S], x: &[S]) -> S {
            ln_normal(x[0], xp[0], 1.0)
        }
    }
    #[derive(Debug)]
    struct Wide;
    impl<S: Scalar> Proposal<S> for Wide {
        fn dim(&self) -> usize {
            2
        }
        fn sample_initial(&self, _rng: &mut StreamRng, _x: &mut [S]) {}
        fn initial_log_density(&self, _x: &[S]) -> S {
            S::zero()
        }
        fn sample(&self, _t: usize, _xp: &[S], _rng: &mut StreamRng, _x: &mut [S]) {}
        fn log_density(&self, _t: usize, _xp: &[S], _x: &[S]) -> S {
            S::zero()
        }
    }

    /// With the transition as the proposal, the guided filter draws the same particles as the
    /// bootstrap filter (same streams) and its potentials differ only by the cancelled
    /// densities (round-off): the log-likelihoods agree to 1e-10.
    #[test]
    fn prior_proposal_is_the_bootstrap_filter() {
        let ys = vec![0.2, -0.4, 1.0, 0.3, 0.0];
        let g = Guided::new::<f64>(Rw { ys: ys.clone() }, Prior).unwrap();
        let smc = crate::Smc::new(crate::SmcConfig::new(64).unwrap());
        let a: crate::SmcOutput<f64> = smc.run(&g, &crate::resample::Systematic, 3).unwrap();
        let b: crate::SmcOutput<f64> = smc
            .run(
                &crate::Bootstrap(Rw { ys }),
                &crate::resample::Systematic,
                3,
            )
            .unwrap();
        assert!((a.log_likelihood - b.log_likelihood).abs() < 1e-10);
    }

    /// A proposal of the wrong dimension is a typed error.
    #[test]
    fn proposal_dimension_is_checked() {
        let err = Guided::new::<f64>(Rw { ys: vec![0.0] }, Wide).unwrap_err();
        assert_eq!(
            err,
            SmcError::DimensionMismatch {
                what: "proposal dimension",
                expected: 1,
                got: 2
            }
        );
    }
}
