//! Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms"): the rule
//! [`LionRule`] of the first-order driver, and [`Lion`] = [`FirstOrder<LionRule>`].

use crate::error::{Knob, OptimError, invalid};
use crate::first_order::{FirstOrder, FirstOrderRule, check_beta};
use crate::vecops::all_finite;

/// The Lion optimiser: the first-order driver [`FirstOrder`] (learning rate, clipping,
/// skipping of non-finite updates, budget, stateful [`FirstOrder::step`]) with the update rule
/// [`LionRule`].
///
/// Update, with `g` the (clipped) gradient and `λ` the decoupled weight decay:
/// `c = β1 m + (1−β1) g`, `θ ← θ − lr · (sign(c) + λ θ)`, `m ← β2 m + (1−β2) g`
/// (`sign(0) = 0`). Every coordinate moves by exactly `lr` (plus decay) per step, so the
/// learning rate is an absolute step size; it is typically 3–10× smaller than Adam's.
///
/// A step whose gradient (or resulting update) is not finite is skipped: θ and the momentum
/// are left unchanged. With [`FirstOrder::with_clip_norm`] the gradient is rescaled to
/// Euclidean norm at most `c` before entering `c` and `m`, which bounds the momentum norm by
/// `c`.
///
/// # Example
/// ```
/// use diffsmc_optim::{Lion, Minimizer};
///
/// // f(x) = ½‖x − (1, −2)‖².
/// let f = |x: &[f64]| {
///     let d = [x[0] - 1.0, x[1] + 2.0];
///     (0.5 * (d[0] * d[0] + d[1] * d[1]), d.to_vec())
/// };
/// let lion = Lion::new(0.01)?.with_max_iterations(1000)?;
/// let result = lion.minimize(f, &[0.0, 0.0])?;
/// // Lion ends in a limit cycle of amplitude ~lr around the optimum.
/// assert!((result.theta[0] - 1.0).abs() < 0.05 && (result.theta[1] + 2.0).abs() < 0.05);
/// # Ok::<(), diffsmc_optim::OptimError>(())
/// ```
pub type Lion = FirstOrder<LionRule>;

/// Lion's update rule: interpolation rate `β1`, momentum decay `β2`, decoupled weight decay.
#[derive(Debug, Clone, PartialEq)]
pub struct LionRule {
    beta1: f64,
    beta2: f64,
    weight_decay: f64,
}

impl Default for LionRule {
    /// `β1 = 0.9`, `β2 = 0.99`, weight decay 0.
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.99,
            weight_decay: 0.0,
        }
    }
}

impl FirstOrderRule for LionRule {
    /// The momentum `m`.
    type State = Vec<f64>;

    fn init(&self, n: usize) -> Vec<f64> {
        vec![0.0; n]
    }

    fn update(&self, m: &mut Vec<f64>, theta: &[f64], g: &[f64], lr: f64, u: &mut [f64]) {
        let (b1, b2, wd) = (self.beta1, self.beta2, self.weight_decay);
        for i in 0..g.len() {
            let c = b1 * m[i] + (1.0 - b1) * g[i];
            let sign = if c > 0.0 {
                1.0
            } else if c < 0.0 {
                -1.0
            } else {
                0.0
            };
            u[i] = lr * (sign + wd * theta[i]);
            m[i] = b2 * m[i] + (1.0 - b2) * g[i];
        }
    }

    fn state_is_finite(&self, m: &Vec<f64>) -> bool {
        all_finite(m)
    }
}

impl FirstOrder<LionRule> {
    /// Lion with learning rate `learning_rate` and the defaults `β1 = 0.9`, `β2 = 0.99`,
    /// weight decay 0, no clipping, a budget of 1000 iterations.
    ///
    /// # Errors
    /// [`OptimError::InvalidKnob`] with [`Knob::LearningRate`] unless `learning_rate` is finite
    /// and > 0.
    pub fn new(learning_rate: f64) -> Result<Self, OptimError> {
        Self::with_rule(LionRule::default(), learning_rate)
    }

    /// Interpolation rate `β1` (for the update direction) and momentum decay `β2`, each in
    /// `[0, 1)`.
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

    /// Decoupled weight decay `λ` (finite, ≥ 0).
    ///
    /// # Errors
    /// [`OptimError::InvalidKnob`] with [`Knob::WeightDecay`].
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Result<Self, OptimError> {
        if !(weight_decay.is_finite() && weight_decay >= 0.0) {
            return Err(invalid(
                Knob::WeightDecay,
                weight_decay,
                "a finite number ≥ 0",
            ));
        }
        self.rule_mut().weight_decay = weight_decay;
        Ok(self)
    }

    /// The momentum `m` of the stateful API (empty before the first step).
    #[must_use]
    pub fn momentum(&self) -> &[f64] {
        self.state().map_or(&[], Vec::as_slice)
    }
}
