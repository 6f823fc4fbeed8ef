//! Shared pieces of the first-order optimisers ([`Adam`](crate::Adam), [`Lion`](crate::Lion)):
//! step outcomes, the run result and the driver loop.

use crate::error::{Knob, OptimError, check_theta0, invalid};
use crate::objective::{Objective, evaluate_checked};
use crate::observer::{Control, IterationInfo, Observer};
use crate::vecops::norm2;

/// Why an update was skipped (θ and the optimiser state are then unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SkipReason {
    /// The objective value was NaN or infinite (detected by the `minimize` drivers).
    NonFiniteValue,
    /// A gradient entry was NaN or infinite.
    NonFiniteGradient,
    /// The gradient was finite but the update was not (overflow in the moments or in θ).
    NonFiniteUpdate,
}

/// Result of one optimiser step.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum StepOutcome {
    /// θ was updated.
    Applied {
        /// Euclidean norm of the gradient before clipping.
        gradient_norm: f64,
        /// Whether global-norm clipping rescaled the gradient.
        clipped: bool,
        /// Euclidean norm of the change applied to θ.
        update_norm: f64,
    },
    /// The update was skipped; θ and the optimiser state are unchanged.
    Skipped(SkipReason),
}

impl StepOutcome {
    /// Whether θ was updated.
    #[must_use]
    pub fn is_applied(&self) -> bool {
        matches!(self, StepOutcome::Applied { .. })
    }
}

/// Outcome of a fixed-budget [`Adam::minimize`](crate::Adam::minimize) or
/// [`Lion::minimize`](crate::Lion::minimize) run.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FirstOrderResult {
    /// Parameters after the last applied update.
    pub theta: Vec<f64>,
    /// `values[k]` is the objective value at the `k`-th iterate, i.e. where the gradient of
    /// step `k` was taken (non-finite entries mark skipped steps). Its length is
    /// `iterations`.
    pub values: Vec<f64>,
    /// Lowest finite value in `values` (`+∞` if there is none). For a noisy objective this
    /// is optimistically biased; prefer `theta` or re-evaluate.
    pub best_value: f64,
    /// The iterate at which `best_value` was observed (`theta0` if no value was finite).
    pub best_theta: Vec<f64>,
    /// Objective evaluations performed (one per iteration).
    pub iterations: usize,
    /// Objective evaluations performed (equal to `iterations` for these drivers; kept for
    /// symmetry with L-BFGS).
    pub evaluations: usize,
    /// Number of skipped updates (non-finite value, gradient or update).
    pub skipped: usize,
    /// Whether the observer ended the run before the iteration budget.
    pub stopped_by_observer: bool,
}

/// Validates a learning rate: finite and > 0.
pub(crate) fn check_learning_rate(lr: f64) -> Result<f64, OptimError> {
    if lr.is_finite() && lr > 0.0 {
        Ok(lr)
    } else {
        Err(invalid(Knob::LearningRate, lr, "a finite number > 0"))
    }
}

/// Validates a decay rate β ∈ [0, 1).
pub(crate) fn check_beta(knob: Knob, beta: f64) -> Result<f64, OptimError> {
    if (0.0..1.0).contains(&beta) {
        Ok(beta)
    } else {
        Err(invalid(knob, beta, "0 ≤ β < 1"))
    }
}

/// Validates a clipping norm: finite and > 0.
pub(crate) fn check_clip(clip: f64) -> Result<f64, OptimError> {
    if clip.is_finite() && clip > 0.0 {
        Ok(clip)
    } else {
        Err(invalid(Knob::ClipNorm, clip, "a finite number > 0"))
    }
}

/// Global-norm clipping factor for a finite gradient: returns `(‖g‖₂, scale, clipped)`, with
/// `scale = clip/‖g‖₂` if that is below 1. `None` if the norm itself overflows while clipping
/// is requested (the update is then skipped).
pub(crate) fn clip_scale(grad: &[f64], clip: Option<f64>) -> Option<(f64, f64, bool)> {
    let norm = norm2(grad);
    match clip {
        Some(c) if norm > c => {
            if norm.is_finite() {
                Some((norm, c / norm, true))
            } else {
                None
            }
        }
        _ => Some((norm, 1.0, false)),
    }
}

/// The stateful single-step interface the shared driver needs.
pub(crate) trait Stepper {
    fn reset_state(&mut self);
    fn apply(&mut self, theta: &mut [f64], grad: &[f64]) -> StepOutcome;
}

/// Runs `iterations` evaluate–observe–step rounds.
pub(crate) fn run<S, F, O>(
    stepper: &mut S,
    mut objective: F,
    theta0: &[f64],
    iterations: usize,
    observer: &mut O,
) -> Result<FirstOrderResult, OptimError>
where
    S: Stepper,
    F: Objective,
    O: Observer + ?Sized,
{
    check_theta0(theta0)?;
    stepper.reset_state();
    let mut theta = theta0.to_vec();
    let mut best_theta = theta0.to_vec();
    let mut best_value = f64::INFINITY;
    let mut values = Vec::with_capacity(iterations);
    let mut evaluations = 0;
    let mut skipped = 0;
    let mut stopped_by_observer = false;
    for iteration in 0..iterations {
        let (value, gradient) = evaluate_checked(&mut objective, &theta, &mut evaluations)?;
        values.push(value);
        if value.is_finite() && value < best_value {
            best_value = value;
            best_theta.copy_from_slice(&theta);
        }
        let control = observer.observe(&IterationInfo {
            iteration,
            value,
            gradient_norm: norm2(&gradient),
            theta: &theta,
            evaluations,
        });
        if control == Control::Stop {
            stopped_by_observer = true;
            break;
        }
        if !value.is_finite() {
            skipped += 1;
            continue;
        }
        if !stepper.apply(&mut theta, &gradient).is_applied() {
            skipped += 1;
        }
    }
    Ok(FirstOrderResult {
        theta,
        iterations: values.len(),
        values,
        best_value,
        best_theta,
        evaluations,
        skipped,
        stopped_by_observer,
    })
}

/// Panics with a clear message if `theta`, `grad` and the state disagree in length.
pub(crate) fn check_lengths(name: &str, theta: &[f64], grad: &[f64], state_len: usize) {
    assert_eq!(
        theta.len(),
        grad.len(),
        "{name}::step: theta has length {} but grad has length {}",
        theta.len(),
        grad.len()
    );
    assert!(
        state_len == 0 || state_len == theta.len(),
        "{name}::step: optimiser state has dimension {state_len} but theta has length {}; call reset() to change dimension",
        theta.len()
    );
}
