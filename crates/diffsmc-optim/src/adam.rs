//! Adam (Kingma & Ba, 2015) with bias correction: the rule [`AdamRule`] of the first-order
//! driver, and [`Adam`] = [`FirstOrder<AdamRule>`].

use crate::error::{Knob, OptimError, invalid};
use crate::first_order::{FirstOrder, FirstOrderRule, check_beta};
use crate::vecops::all_finite;

/// The Adam optimiser: the first-order driver [`FirstOrder`] (learning rate, clipping,
/// skipping of non-finite updates, budget, stateful [`FirstOrder::step`]) with the update rule
/// [`AdamRule`].
///
/// Update, with `g` the (clipped) gradient and `t` the number of applied steps:
/// `m ← β1 m + (1−β1) g`, `v ← β2 v + (1−β2) g²`,
/// `θ ← θ − lr · (m/(1−β1ᵗ)) / (√(v/(1−β2ᵗ)) + ε)`.
///
/// A step whose gradient (or resulting update) is not finite is skipped: θ, the moments and
/// `t` are left unchanged. With [`FirstOrder::with_clip_norm`] the gradient is rescaled to
/// Euclidean norm at most `c` before entering the moments.
///
/// # Example
/// ```
/// use diffsmc_optim::{Adam, Minimizer, StopReason};
///
/// // f(x) = ½‖x − (1, −2)‖².
/// let f = |x: &[f64]| {
///     let d = [x[0] - 1.0, x[1] + 2.0];
///     (0.5 * (d[0] * d[0] + d[1] * d[1]), d.to_vec())
/// };
/// let adam = Adam::new(0.05)?.with_max_iterations(2000)?;
/// let result = adam.minimize(f, &[0.0, 0.0])?;
/// assert_eq!(result.reason, StopReason::MaxIterations);
/// assert_eq!((result.iterations, result.evaluations), (2000, 2001));
/// assert!((result.theta[0] - 1.0).abs() < 1e-3 && (result.theta[1] + 2.0).abs() < 1e-3);
/// # Ok::<(), diffsmc_optim::OptimError>(())
/// ```
pub type Adam = FirstOrder<AdamRule>;

/// Adam's update rule: moment decays `β1`, `β2` and denominator offset `ε`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamRule {
    beta1: f64,
    beta2: f64,
    epsilon: f64,
}

/// Adam's state: the moments and the powers `β1ᵗ`, `β2ᵗ` of the bias corrections.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamState {
    /// First-moment estimate.
    pub m: Vec<f64>,
    /// Second-moment estimate.
    pub v: Vec<f64>,
    /// `β1ᵗ` after `t` applied steps.
    pub beta1_power: f64,
    /// `β2ᵗ` after `t` applied steps.
    pub beta2_power: f64,
}

impl Default for AdamRule {
    /// `β1 = 0.9`, `β2 = 0.999`, `ε = 1e-8`.
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        }
    }
}

impl FirstOrderRule for AdamRule {
    type State = AdamState;

    fn init(&self, n: usize) -> AdamState {
        AdamState {
            m: vec![0.0; n],
            v: vec![0.0; n],
            beta1_power: 1.0,
            beta2_power: 1.0,
        }
    }

    fn update(&self, s: &mut AdamState, _theta: &[f64], g: &[f64], lr: f64, u: &mut [f64]) {
        let (b1, b2, eps) = (self.beta1, self.beta2, self.epsilon);
        let bias1 = 1.0 - s.beta1_power * b1;
        let bias2 = 1.0 - s.beta2_power * b2;
        for i in 0..g.len() {
            let m = b1 * s.m[i] + (1.0 - b1) * g[i];
            let v = b2 * s.v[i] + (1.0 - b2) * g[i] * g[i];
            u[i] = lr * (m / bias1) / ((v / bias2).sqrt() + eps);
            s.m[i] = m;
            s.v[i] = v;
        }
        s.beta1_power *= b1;
        s.beta2_power *= b2;
    }

    fn state_is_finite(&self, s: &AdamState) -> bool {
        all_finite(&s.m) && all_finite(&s.v)
    }
}

impl FirstOrder<AdamRule> {
    /// Adam with learning rate `learning_rate` and the defaults `β1 = 0.9`, `β2 = 0.999`,
    /// `ε = 1e-8`, no clipping, a budget of 1000 iterations.
    ///
    /// # Errors
    /// [`OptimError::InvalidKnob`] with [`Knob::LearningRate`] unless `learning_rate` is finite
    /// and > 0.
    pub fn new(learning_rate: f64) -> Result<Self, OptimError> {
        Self::with_rule(AdamRule::default(), learning_rate)
    }

    /// Moment decay rates, each in `[0, 1)`.
    ///
    /// # Errors
    /// [`OptimError::InvalidKnob`] with [`Knob::Beta1`] or [`Knob::Beta2`].
    pub fn with_betas(mut self, beta1: f64, beta2: f64) -> Result<Self, OptimError> {
        let beta1 = check_beta(Knob::Beta1, beta1)?;
        let beta2 = check_beta(Knob::Beta2, beta2)?;
        let rule = self.rule_mut();
        rule.beta1 = beta1;
        rule.beta2 = beta2;
        Ok(self)
    }

    /// Denominator offset `ε` (finite, > 0).
    ///
    /// # Errors
    /// [`OptimError::InvalidKnob`] with [`Knob::Epsilon`].
    pub fn with_epsilon(mut self, epsilon: f64) -> Result<Self, OptimError> {
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(invalid(Knob::Epsilon, epsilon, "a finite number > 0"));
        }
        self.rule_mut().epsilon = epsilon;
        Ok(self)
    }

    /// The first-moment estimate `m` of the stateful API (empty before the first step).
    #[must_use]
    pub fn first_moment(&self) -> &[f64] {
        self.state().map_or(&[], |s| &s.m)
    }

    /// The second-moment estimate `v` of the stateful API (empty before the first step).
    #[must_use]
    pub fn second_moment(&self) -> &[f64] {
        self.state().map_or(&[], |s| &s.v)
    }
}
