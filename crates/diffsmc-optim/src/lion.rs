//! Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms") with optional
//! global-norm clipping and skipping of non-finite updates.

use crate::error::{Knob, OptimError, invalid};
use crate::first_order::{
    FirstOrderResult, SkipReason, StepOutcome, Stepper, check_beta, check_clip,
    check_learning_rate, check_lengths, clip_scale, run,
};
use crate::objective::Objective;
use crate::observer::Observer;
use crate::vecops::all_finite;

/// The Lion optimiser: configuration plus momentum state.
///
/// Update, with `g` the (clipped) gradient and `λ` the decoupled weight decay:
/// `c = β1 m + (1−β1) g`, `θ ← θ − lr · (sign(c) + λ θ)`, `m ← β2 m + (1−β2) g`
/// (`sign(0) = 0`). Every coordinate moves by exactly `lr` (plus decay) per step, so the
/// learning rate is an absolute step size; it is typically 3–10× smaller than Adam's.
///
/// A step whose gradient (or resulting update) is not finite is skipped: θ and the momentum
/// are left unchanged. With [`Lion::with_clip_norm`] the gradient is rescaled to Euclidean
/// norm at most `c` before entering `c` and `m`, which bounds the momentum norm by `c`.
///
/// # Example
/// ```
/// use diffsmc_optim::Lion;
///
/// // f(x) = ½‖x − (1, −2)‖².
/// let f = |x: &[f64]| {
///     let d = [x[0] - 1.0, x[1] + 2.0];
///     (0.5 * (d[0] * d[0] + d[1] * d[1]), d.to_vec())
/// };
/// let mut lion = Lion::new(0.01)?;
/// let result = lion.minimize(f, &[0.0, 0.0], 1000)?;
/// // Lion ends in a limit cycle of amplitude ~lr around the optimum.
/// assert!((result.theta[0] - 1.0).abs() < 0.05 && (result.theta[1] + 2.0).abs() < 0.05);
/// # Ok::<(), diffsmc_optim::OptimError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Lion {
    learning_rate: f64,
    beta1: f64,
    beta2: f64,
    weight_decay: f64,
    clip_norm: Option<f64>,
    m: Vec<f64>,
    steps: u64,
}

impl Lion {
    /// Lion with learning rate `learning_rate` and the defaults `β1 = 0.9`, `β2 = 0.99`,
    /// weight decay 0, no clipping.
    ///
    /// # Errors
    /// [`OptimError::InvalidKnob`] with [`Knob::LearningRate`] unless `learning_rate` is finite
    /// and > 0.
    pub fn new(learning_rate: f64) -> Result<Self, OptimError> {
        Ok(Self {
            learning_rate: check_learning_rate(learning_rate)?,
            beta1: 0.9,
            beta2: 0.99,
            weight_decay: 0.0,
            clip_norm: None,
            m: Vec::new(),
            steps: 0,
        })
    }

    /// Interpolation rate `β1` (for the update direction) and momentum decay `β2`, each in
    /// `[0, 1)`.
    ///
    /// # Errors
    /// [`OptimError::InvalidKnob`] with [`Knob::Beta1`] or [`Knob::Beta2`].
    pub fn with_betas(mut self, beta1: f64, beta2: f64) -> Result<Self, OptimError> {
        self.beta1 = check_beta(Knob::Beta1, beta1)?;
        self.beta2 = check_beta(Knob::Beta2, beta2)?;
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
        self.weight_decay = weight_decay;
        Ok(self)
    }

    /// Rescale every gradient to Euclidean norm at most `clip` (finite, > 0).
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

    /// The momentum `m` (empty before the first step).
    #[must_use]
    pub fn momentum(&self) -> &[f64] {
        &self.m
    }

    /// Forgets the momentum and the step count (the configuration is kept). The next step
    /// may use a different dimension.
    pub fn reset(&mut self) {
        self.m.clear();
        self.steps = 0;
    }

    /// One Lion update of `theta` with gradient `grad`.
    ///
    /// # Panics
    /// If `grad.len() != theta.len()`, or if the state was built for another dimension
    /// (call [`Lion::reset`] first).
    pub fn step(&mut self, theta: &mut [f64], grad: &[f64]) -> StepOutcome {
        check_lengths("Lion", theta, grad, self.m.len());
        if !all_finite(grad) {
            return StepOutcome::Skipped(SkipReason::NonFiniteGradient);
        }
        let Some((gradient_norm, scale, clipped)) = clip_scale(grad, self.clip_norm) else {
            return StepOutcome::Skipped(SkipReason::NonFiniteUpdate);
        };
        if self.m.is_empty() {
            self.m.resize(theta.len(), 0.0);
        }
        let (b1, b2) = (self.beta1, self.beta2);
        let lr = self.learning_rate;
        let wd = self.weight_decay;
        let update = |m: f64, theta: f64, g: f64| {
            let g = g * scale;
            let c = b1 * m + (1.0 - b1) * g;
            let sign = if c > 0.0 {
                1.0
            } else if c < 0.0 {
                -1.0
            } else {
                0.0
            };
            let u = lr * (sign + wd * theta);
            (b2 * m + (1.0 - b2) * g, u)
        };
        let mut sq = 0.0;
        for i in 0..theta.len() {
            let (m, u) = update(self.m[i], theta[i], grad[i]);
            if !(m.is_finite() && u.is_finite() && (theta[i] - u).is_finite()) {
                return StepOutcome::Skipped(SkipReason::NonFiniteUpdate);
            }
            sq += u * u;
        }
        for i in 0..theta.len() {
            let (m, u) = update(self.m[i], theta[i], grad[i]);
            self.m[i] = m;
            theta[i] -= u;
        }
        self.steps += 1;
        StepOutcome::Applied {
            gradient_norm,
            clipped,
            update_norm: sq.sqrt(),
        }
    }

    /// Resets the state, then runs `iterations` rounds of evaluate → observe → step from
    /// `theta0`, recording the value of every iterate. The final state stays in `self`.
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

    /// [`Lion::minimize`] with an [`Observer`] called at every iterate before its update; the
    /// observer may stop the run early.
    ///
    /// # Errors
    /// As [`Lion::minimize`].
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

impl Stepper for Lion {
    fn reset_state(&mut self) {
        self.reset();
    }

    fn apply(&mut self, theta: &mut [f64], grad: &[f64]) -> StepOutcome {
        self.step(theta, grad)
    }
}
