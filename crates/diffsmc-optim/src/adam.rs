//! Adam (Kingma & Ba, 2015) with bias correction, optional global-norm clipping and skipping
//! of non-finite updates.

use crate::error::{Knob, OptimError, invalid};
use crate::first_order::{
    FirstOrderResult, SkipReason, StepOutcome, Stepper, check_beta, check_clip,
    check_learning_rate, check_lengths, clip_scale, run,
};
use crate::objective::Objective;
use crate::observer::Observer;
use crate::vecops::all_finite;

/// The Adam optimiser: configuration plus state (moments and step count).
///
/// Update, with `g` the (clipped) gradient and `t` the number of applied steps:
/// `m ← β1 m + (1−β1) g`, `v ← β2 v + (1−β2) g²`,
/// `θ ← θ − lr · (m/(1−β1ᵗ)) / (√(v/(1−β2ᵗ)) + ε)`.
///
/// A step whose gradient (or resulting update) is not finite is skipped: θ, the moments and
/// `t` are left unchanged. With [`Adam::with_clip_norm`] the gradient is rescaled to Euclidean
/// norm at most `c` before entering the moments.
///
/// # Example
/// ```
/// use diffsmc_optim::Adam;
///
/// // f(x) = ½‖x − (1, −2)‖².
/// let f = |x: &[f64]| {
///     let d = [x[0] - 1.0, x[1] + 2.0];
///     (0.5 * (d[0] * d[0] + d[1] * d[1]), d.to_vec())
/// };
/// let mut adam = Adam::new(0.05)?;
/// let result = adam.minimize(f, &[0.0, 0.0], 2000)?;
/// assert_eq!(result.values.len(), 2000);
/// assert!((result.theta[0] - 1.0).abs() < 1e-3 && (result.theta[1] + 2.0).abs() < 1e-3);
/// # Ok::<(), diffsmc_optim::OptimError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Adam {
    learning_rate: f64,
    beta1: f64,
    beta2: f64,
    epsilon: f64,
    clip_norm: Option<f64>,
    m: Vec<f64>,
    v: Vec<f64>,
    beta1_power: f64,
    beta2_power: f64,
    steps: u64,
}

impl Adam {
    /// Adam with learning rate `learning_rate` and the defaults `β1 = 0.9`, `β2 = 0.999`,
    /// `ε = 1e-8`, no clipping.
    ///
    /// # Errors
    /// [`OptimError::InvalidKnob`] with [`Knob::LearningRate`] unless `learning_rate` is finite
    /// and > 0.
    pub fn new(learning_rate: f64) -> Result<Self, OptimError> {
        Ok(Self {
            learning_rate: check_learning_rate(learning_rate)?,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            clip_norm: None,
            m: Vec::new(),
            v: Vec::new(),
            beta1_power: 1.0,
            beta2_power: 1.0,
            steps: 0,
        })
    }

    /// Moment decay rates, each in `[0, 1)`.
    ///
    /// # Errors
    /// [`OptimError::InvalidKnob`] with [`Knob::Beta1`] or [`Knob::Beta2`].
    pub fn with_betas(mut self, beta1: f64, beta2: f64) -> Result<Self, OptimError> {
        self.beta1 = check_beta(Knob::Beta1, beta1)?;
        self.beta2 = check_beta(Knob::Beta2, beta2)?;
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
        self.epsilon = epsilon;
        Ok(self)
    }

    /// Rescale every gradient to Euclidean norm at most `clip` (finite, > 0) before it enters
    /// the moments.
    ///
    /// # Errors
    /// [`OptimError::InvalidKnob`] with [`Knob::ClipNorm`].
    pub fn with_clip_norm(mut self, clip: f64) -> Result<Self, OptimError> {
        self.clip_norm = Some(check_clip(clip)?);
        Ok(self)
    }

    /// The current learning rate.
    #[must_use]
    pub fn learning_rate(&self) -> f64 {
        self.learning_rate
    }

    /// Changes the learning rate without touching the state (for schedules).
    ///
    /// # Errors
    /// [`OptimError::InvalidKnob`] with [`Knob::LearningRate`] unless finite and > 0.
    pub fn set_learning_rate(&mut self, learning_rate: f64) -> Result<(), OptimError> {
        self.learning_rate = check_learning_rate(learning_rate)?;
        Ok(())
    }

    /// Number of applied (not skipped) steps since construction or the last reset.
    #[must_use]
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The first-moment estimate `m` (empty before the first step).
    #[must_use]
    pub fn first_moment(&self) -> &[f64] {
        &self.m
    }

    /// The second-moment estimate `v` (empty before the first step).
    #[must_use]
    pub fn second_moment(&self) -> &[f64] {
        &self.v
    }

    /// Forgets the moments and the step count (the configuration is kept). The next step
    /// may use a different dimension.
    pub fn reset(&mut self) {
        self.m.clear();
        self.v.clear();
        self.beta1_power = 1.0;
        self.beta2_power = 1.0;
        self.steps = 0;
    }

    /// One Adam update of `theta` with gradient `grad`.
    ///
    /// # Panics
    /// If `grad.len() != theta.len()`, or if the state was built for another dimension
    /// (call [`Adam::reset`] first).
    pub fn step(&mut self, theta: &mut [f64], grad: &[f64]) -> StepOutcome {
        check_lengths("Adam", theta, grad, self.m.len());
        if !all_finite(grad) {
            return StepOutcome::Skipped(SkipReason::NonFiniteGradient);
        }
        let Some((gradient_norm, scale, clipped)) = clip_scale(grad, self.clip_norm) else {
            return StepOutcome::Skipped(SkipReason::NonFiniteUpdate);
        };
        if self.m.is_empty() {
            self.m.resize(theta.len(), 0.0);
            self.v.resize(theta.len(), 0.0);
        }
        let (b1, b2) = (self.beta1, self.beta2);
        let bias1 = 1.0 - self.beta1_power * b1;
        let bias2 = 1.0 - self.beta2_power * b2;
        let lr = self.learning_rate;
        let eps = self.epsilon;
        let moments = |m: f64, v: f64, g: f64| {
            let g = g * scale;
            let m = b1 * m + (1.0 - b1) * g;
            let v = b2 * v + (1.0 - b2) * g * g;
            let u = lr * (m / bias1) / ((v / bias2).sqrt() + eps);
            (m, v, u)
        };
        // Pass 1: check that everything stays finite, without mutating.
        let mut sq = 0.0;
        for i in 0..theta.len() {
            let (m, v, u) = moments(self.m[i], self.v[i], grad[i]);
            if !(m.is_finite() && v.is_finite() && u.is_finite() && (theta[i] - u).is_finite()) {
                return StepOutcome::Skipped(SkipReason::NonFiniteUpdate);
            }
            sq += u * u;
        }
        // Pass 2: commit.
        for i in 0..theta.len() {
            let (m, v, u) = moments(self.m[i], self.v[i], grad[i]);
            self.m[i] = m;
            self.v[i] = v;
            theta[i] -= u;
        }
        self.beta1_power *= b1;
        self.beta2_power *= b2;
        self.steps += 1;
        StepOutcome::Applied {
            gradient_norm,
            clipped,
            update_norm: sq.sqrt(),
        }
    }

    /// Resets the state, then runs `iterations` rounds of evaluate → observe → step from
    /// `theta0`, recording the value of every iterate. The final state stays in `self`, so
    /// the run can be continued with [`Adam::step`].
    ///
    /// Rounds whose value or gradient is non-finite skip the update (counted in
    /// [`FirstOrderResult::skipped`]).
    ///
    /// # Errors
    /// [`OptimError::EmptyParameters`], [`OptimError::NonFiniteParameter`] or
    /// [`OptimError::GradientLength`].
    pub fn minimize<F: Objective>(
        &mut self,
        objective: F,
        theta0: &[f64],
        iterations: usize,
    ) -> Result<FirstOrderResult, OptimError> {
        run(self, objective, theta0, iterations, &mut ())
    }

    /// [`Adam::minimize`] with an [`Observer`] called at every iterate before its update; the
    /// observer may stop the run early.
    ///
    /// # Errors
    /// As [`Adam::minimize`].
    pub fn minimize_with_observer<F, O>(
        &mut self,
        objective: F,
        theta0: &[f64],
        iterations: usize,
        observer: &mut O,
    ) -> Result<FirstOrderResult, OptimError>
    where
        F: Objective,
        O: Observer + ?Sized,
    {
        run(self, objective, theta0, iterations, observer)
    }
}

impl Stepper for Adam {
    fn reset_state(&mut self) {
        self.reset();
    }

    fn apply(&mut self, theta: &mut [f64], grad: &[f64]) -> StepOutcome {
        self.step(theta, grad)
    }
}
