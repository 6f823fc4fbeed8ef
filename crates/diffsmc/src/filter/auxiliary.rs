//! The auxiliary particle filter as a twisted Feynman–Kac model.
//!
//! # The model
//!
//! Start from any Feynman–Kac model `(M_t, G_t)`, `t = 0 .. T−1` (a [`Bootstrap`](crate::Bootstrap) or a
//! [`Guided`](super::Guided) filter), whose normalising constant `Z = E_M[∏_{t<T} G_t]` is the likelihood
//! `p(y_{0:T−1})`. A look-ahead ([`LookAhead`]) gives first-stage weights
//! `η_t(x_{t−1}) ≈ p(y_t | x_{t−1})` for `1 ≤ t ≤ T−1`; set `η_0 ≡ 1` and, after the last
//! step, `η_T ≡ 1`. The twisted model keeps the kernels `M_t` and replaces the potentials by
//!
//! ```text
//! G̃_0(x_0)          = G_0(x_0) · η_1(x_0)
//! G̃_t(x_{t−1}, x_t) = G_t(x_{t−1}, x_t) · η_{t+1}(x_t) / η_t(x_{t−1})     (1 ≤ t ≤ T−1)
//! ```
//!
//! (so `G̃_{T−1} = G_{T−1} / η_{T−1}(x_{T−2})`, and with `T = 1` nothing changes).
//!
//! # Why the likelihood estimate is unbiased
//!
//! Along any path `x_{0:T−1}` the look-aheads telescope:
//!
//! ```text
//! ∏_{t=0}^{T−1} G̃_t = ∏_t G_t · η_1(x_0) · [η_2(x_1)/η_1(x_0)] ⋯ [η_T(x_{T−1})/η_{T−1}(x_{T−2})]
//!                   = ∏_t G_t · η_T(x_{T−1}) / η_0 = ∏_t G_t .
//! ```
//!
//! So the twisted model has the same normalising constant, `Z̃ = Z` — pathwise, not only in
//! expectation — and the driver's estimate `Ẑ = ∏_t Σ_i W̃^i_{t−1} G̃_t(X^i)` of `Z̃` (normalised
//! previous weights, any trigger) is an unbiased estimate of `p(y_{0:T−1})` whenever the
//! resampler is unbiased, and a consistent one with the differentiable resamplers.
//!
//! This is the auxiliary particle filter of Pitt & Shephard (1999) in the form of Johansen &
//! Doucet (2008): the weights the driver resamples with at step `t` are the filtering weights
//! times `η_t(x_{t−1})` — the first-stage weights — and the move's potential divides that
//! factor out again (the second-stage weight `G_t / η_t`) while multiplying in the next
//! step's first-stage factor. The two classic mistakes are visible in the formula: forgetting
//! to divide out the first-stage weight (estimating `E[∏ G_t ∏ η_t]` instead of `Z`), and
//! keeping a look-ahead after the last step (`η_T ≠ 1`, estimating `Z · π_{T−1}(η_T)`; the bug
//! classes of particles issue #4 and LowLevelParticleFilters.jl issue #186).
//!
//! # What the per-step outputs are
//!
//! Only the sum of the driver's log-likelihood increments is `log Ẑ`: the increment at step
//! `t` estimates `p(y_t | y_{0:t−1}) · π_t(η_{t+1}) / π_{t−1}(η_t)` (`π_t` the filter), e.g.
//! for an exact look-ahead `log p(y_{t+1} | y_{0:t})` at `t < T−1` and 0 at the last step. The
//! driver's weighted particles at step `t < T−1` target `π_t · η_{t+1}` (normalised), not the
//! filter `π_t`; multiply the weights by `1/η_{t+1}` ([`Auxiliary::filter_log_weights`]) to
//! get the filter, or run the model truncated to `t + 1` steps ([`Auxiliary::with_steps`]):
//! its last step has `η ≡ 1`, and it draws the same particles as the full run up to `t`.
//! The ESS the driver records and triggers on is that of the first-stage weights.

use crate::error::{Result, SmcError};
use crate::model::FeynmanKac;
use crate::particles::Particles;
use crate::rng::StreamRng;
use crate::scalar::{Scalar, log_sum_exp};

/// First-stage weights of the auxiliary particle filter: `log η_t(x_{t−1})` for `t ≥ 1`, an
/// approximation of the predictive likelihood `log p(y_t | x_{t−1})` (exact for a fully
/// adapted filter), written once for any scalar. It must be finite wherever particles go;
/// where `y_t` is missing, return 0.
///
/// ```
/// use diffsmc::filter::LookAhead;
/// use diffsmc::Scalar;
/// /// x_t = 0.9 x_{t−1} + N(0, 1), y_t = x_t + N(0, 1): p(y_t | x_{t−1}) = N(y_t; 0.9 x_{t−1}, 2).
/// struct Exact { ys: Vec<f64> }
/// impl<S: Scalar> LookAhead<S> for Exact {
///     fn log_look_ahead(&self, t: usize, x_prev: &[S]) -> S {
///         let r = x_prev[0] * 0.9 - self.ys[t];
///         r * r * -0.25 - 0.5 * (2.0 * std::f64::consts::TAU).ln()
///     }
/// }
/// let v: f64 = Exact { ys: vec![0.0, 0.9] }.log_look_ahead(1, &[1.0]);
/// assert!((v + 0.5 * (2.0 * std::f64::consts::TAU).ln()).abs() < 1e-15);
/// ```
pub trait LookAhead<S: Scalar>: Sync {
    /// `log η_t(x_prev)`, `t ≥ 1`.
    fn log_look_ahead(&self, t: usize, x_prev: &[S]) -> S;
}

impl<S: Scalar, L: LookAhead<S> + ?Sized> LookAhead<S> for &L {
    fn log_look_ahead(&self, t: usize, x_prev: &[S]) -> S {
        (**self).log_look_ahead(t, x_prev)
    }
}

/// The auxiliary particle filter: a Feynman–Kac model `inner` twisted by a look-ahead (see the
/// [module docs](self) for the potentials and why `log Ẑ` is still an unbiased estimate of
/// the likelihood, on the natural scale). Run it with [`crate::Smc::run`] like any model:
/// every trigger and every resampler applies.
///
/// ```
/// use diffsmc::filter::{Auxiliary, LookAhead};
/// use diffsmc::prelude::*;
/// # struct Ar1 { ys: Vec<f64> }
/// # impl<S: Scalar> StateSpaceModel<S> for Ar1 {
/// #     fn state_dim(&self) -> usize { 1 }
/// #     fn n_observations(&self) -> usize { self.ys.len() }
/// #     fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) { x[0] = S::cst(standard_normal(rng)); }
/// #     fn sample_transition(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) {
/// #         x[0] = xp[0] * 0.9 + standard_normal(rng);
/// #     }
/// #     fn observation_log_density(&self, t: usize, x: &[S]) -> S {
/// #         let r = x[0] - self.ys[t];
/// #         r * r * -0.5 - 0.5 * std::f64::consts::TAU.ln()
/// #     }
/// # }
/// /// p(y_t | x_{t−1}) = N(y_t; 0.9 x_{t−1}, 2) for the model above.
/// struct Exact { ys: Vec<f64> }
/// impl<S: Scalar> LookAhead<S> for Exact {
///     fn log_look_ahead(&self, t: usize, x_prev: &[S]) -> S {
///         let r = x_prev[0] * 0.9 - self.ys[t];
///         r * r * -0.25 - 0.5 * (2.0 * std::f64::consts::TAU).ln()
///     }
/// }
/// let ys = vec![0.3, -0.2, 1.1, 0.4];
/// // The classic APF: propose from the transition, look ahead with p(y_t | x_{t−1}).
/// let apf = Auxiliary::new::<f64>(Bootstrap(Ar1 { ys: ys.clone() }), Exact { ys })?;
/// let config = SmcConfig::new(256)?.with_trigger(Trigger::EssBelow(0.5))?;
/// let out: SmcOutput<f64> = Smc::new(config).run(&apf, &Systematic, 2)?;
/// assert!(out.log_likelihood.is_finite());
/// // The same run on the first two observations only: its last weights are the filter's.
/// let first_two = apf.with_steps(2)?;
/// assert_eq!(FeynmanKac::<f64>::n_steps(&first_two), 2);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Auxiliary<F, L> {
    inner: F,
    look_ahead: L,
    inner_steps: usize,
    steps: usize,
}

impl<F, L> Auxiliary<F, L> {
    /// `inner` twisted by `look_ahead`, over all of `inner`'s steps.
    ///
    /// Errors: [`SmcError::InvalidParameter`] (`"model steps"`) when `inner` has no steps.
    pub fn new<S: Scalar>(inner: F, look_ahead: L) -> Result<Self>
    where
        F: FeynmanKac<S>,
        L: LookAhead<S>,
    {
        let steps = inner.n_steps();
        if steps == 0 {
            return Err(SmcError::invalid("model steps", 0, "at least one step"));
        }
        Ok(Auxiliary {
            inner,
            look_ahead,
            inner_steps: steps,
            steps,
        })
    }

    /// The auxiliary filter on the first `steps` steps only (`η ≡ 1` after step `steps − 1`):
    /// its estimate is of `p(y_{0:steps−1})`, its last weighted particles approximate the
    /// filter at step `steps − 1`, and with the same seed it draws the same particles as the
    /// full run up to that step.
    ///
    /// Errors: [`SmcError::InvalidParameter`] (`"auxiliary steps"`) unless
    /// `1 ≤ steps ≤` the inner model's number of steps.
    pub fn with_steps(mut self, steps: usize) -> Result<Self> {
        if steps == 0 || steps > self.inner_steps {
            return Err(SmcError::invalid(
                "auxiliary steps",
                steps,
                "between 1 and the model's number of steps",
            ));
        }
        self.steps = steps;
        Ok(self)
    }

    /// Number of steps run.
    pub fn steps(&self) -> usize {
        self.steps
    }
    /// The untwisted model.
    pub fn inner(&self) -> &F {
        &self.inner
    }
    /// The look-ahead.
    pub fn look_ahead(&self) -> &L {
        &self.look_ahead
    }

    /// `log η_{t+1}(x)` when step `t + 1` is run, else 0 (`η_T ≡ 1`).
    #[inline]
    fn twist<S: Scalar>(&self, t: usize, x: &[S]) -> S
    where
        L: LookAhead<S>,
    {
        if t + 1 < self.steps {
            self.look_ahead.log_look_ahead(t + 1, x)
        } else {
            S::zero()
        }
    }

    /// The filtering log-weights at step `t` from the driver's (twisted) normalised log-weights
    /// `log_weights` of `particles` at that step: `log W̃ − log η_{t+1}(x)`, normalised (at the
    /// last step they are unchanged).
    ///
    /// Errors: [`SmcError::DimensionMismatch`] when the lengths disagree,
    /// [`SmcError::DegenerateWeights`] (step `t`) when the corrected weights vanish.
    pub fn filter_log_weights<S: Scalar>(
        &self,
        t: usize,
        particles: &Particles<S>,
        log_weights: &[S],
    ) -> Result<Vec<S>>
    where
        L: LookAhead<S>,
    {
        if particles.len() != log_weights.len() {
            return Err(SmcError::DimensionMismatch {
                what: "log-weights",
                expected: particles.len(),
                got: log_weights.len(),
            });
        }
        let mut lw: Vec<S> = particles
            .iter()
            .zip(log_weights)
            .map(|(x, &w)| w - self.twist(t, x))
            .collect();
        let lse = log_sum_exp(&lw);
        if !lse.re().is_finite() {
            return Err(SmcError::DegenerateWeights { step: t });
        }
        for w in &mut lw {
            *w -= lse;
        }
        Ok(lw)
    }
}

impl<S: Scalar, F: FeynmanKac<S>, L: LookAhead<S>> FeynmanKac<S> for Auxiliary<F, L> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn n_steps(&self) -> usize {
        self.steps
    }
    fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
        self.inner.sample_initial(rng, x)
    }
    /// `log G_0(x) + log η_1(x)`.
    fn log_potential_initial(&self, x: &[S]) -> S {
        self.inner.log_potential_initial(x) + self.twist(0, x)
    }
    fn sample_transition(&self, t: usize, x_prev: &[S], rng: &mut StreamRng, x: &mut [S]) {
        self.inner.sample_transition(t, x_prev, rng, x)
    }
    /// `log G_t(x_prev, x) + log η_{t+1}(x) − log η_t(x_prev)`.
    fn log_potential(&self, t: usize, x_prev: &[S], x: &[S]) -> S {
        self.inner.log_potential(t, x_prev, x) + self.twist(t, x)
            - self.look_ahead.log_look_ahead(t, x_prev)
    }
    fn requires_index_resampling(&self) -> Option<&'static str> {
        self.inner.requires_index_resampling()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FeynmanKac;

    /// A deterministic toy model (states fixed at 1, 2, 3, …) to check the potentials.
    struct Path;
    impl<S: Scalar> FeynmanKac<S> for Path {
        fn dim(&self) -> usize {
            1
        }
        fn n_steps(&self) -> usize {
            4
        }
        fn sample_initial(&self, _rng: &mut StreamRng, x: &mut [S]) {
            x[0] = S::one();
        }
        fn log_potential_initial(&self, x: &[S]) -> S {
            x[0] * 0.1
        }
        fn sample_transition(&self, _t: usize, xp: &[S], _rng: &mut StreamRng, x: &mut [S]) {
            x[0] = xp[0] + 1.0;
        }
        fn log_potential(&self, _t: usize, _xp: &[S], x: &[S]) -> S {
            x[0] * 0.1
        }
    }
    struct Eta;
    impl<S: Scalar> LookAhead<S> for Eta {
        fn log_look_ahead(&self, t: usize, x: &[S]) -> S {
            x[0] * x[0] + t as f64
        }
    }

    /// Along one path the twisted log-potentials sum to the untwisted ones (the telescoping
    /// identity, to round-off), for every truncation.
    #[test]
    fn twisted_potentials_telescope() {
        let apf = Auxiliary::new::<f64>(Path, Eta).unwrap();
        for steps in 1..=4 {
            let a = apf.clone_with(steps);
            let xs: Vec<f64> = (1..=steps).map(|k| k as f64).collect();
            let mut twisted = FeynmanKac::<f64>::log_potential_initial(&a, &xs[..1]);
            let mut plain = FeynmanKac::<f64>::log_potential_initial(&Path, &xs[..1]);
            for t in 1..steps {
                twisted += FeynmanKac::<f64>::log_potential(&a, t, &xs[t - 1..t], &xs[t..=t]);
                plain += FeynmanKac::<f64>::log_potential(&Path, t, &xs[t - 1..t], &xs[t..=t]);
            }
            assert!(
                (twisted - plain).abs() < 1e-12,
                "{steps}: {twisted} vs {plain}"
            );
        }
    }

    /// Bad truncations are typed errors; the filter correction removes η_{t+1} and not at
    /// the last step.
    #[test]
    fn truncation_and_filter_weights() {
        let apf = Auxiliary::new::<f64>(Path, Eta).unwrap();
        assert!(matches!(
            apf.clone_with_checked(0),
            Err(SmcError::InvalidParameter {
                name: "auxiliary steps",
                ..
            })
        ));
        assert!(apf.clone_with_checked(5).is_err());
        let p = Particles::from_vec(2, 1, vec![0.0, 1.0]).unwrap();
        let lw = vec![(0.5f64).ln(); 2];
        let f = apf.filter_log_weights(0, &p, &lw).unwrap();
        // η_1 = (x² + 1): weights ∝ 1, e^{-1}.
        let e = (-1.0f64).exp();
        assert!((f[0] - (1.0 / (1.0 + e)).ln()).abs() < 1e-12);
        let last = apf.filter_log_weights(3, &p, &lw).unwrap();
        assert!((last[0] - lw[0]).abs() < 1e-15);
        assert!(apf.filter_log_weights(0, &p, &lw[..1]).is_err());
    }

    impl Auxiliary<Path, Eta> {
        fn clone_with_checked(&self, steps: usize) -> Result<Self> {
            Auxiliary::new::<f64>(Path, Eta)?.with_steps(steps)
        }
        fn clone_with(&self, steps: usize) -> Self {
            self.clone_with_checked(steps).unwrap()
        }
    }
}
