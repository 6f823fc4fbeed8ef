//! The first-order driver [`FirstOrder`] shared by [`Adam`](crate::Adam) and
//! [`Lion`](crate::Lion), and the [`FirstOrderRule`] trait they implement.
//!
//! The driver owns everything the two methods have in common: the learning rate, global-norm
//! clipping, skipping of non-finite values, gradients and updates (leaving θ and the state
//! unchanged), the step count, the observer and the iteration budget. A rule only says how
//! its state evolves and what update a (clipped, finite) gradient produces.

use std::fmt;

use crate::error::{Knob, OptimError, check_theta0, invalid};
use crate::minimizer::{Minimizer, Minimum, StopReason};
use crate::objective::{Objective, evaluate_checked};
use crate::observer::{Control, IterationInfo, Observer};
use crate::vecops::{all_finite, norm2};

/// Why an update was skipped (θ and the optimiser state are then unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SkipReason {
    /// The objective value was NaN or infinite (detected by the `minimize` drivers).
    NonFiniteValue,
    /// A gradient entry was NaN or infinite.
    NonFiniteGradient,
    /// The gradient was finite but the update was not (overflow in the state or in θ).
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

/// An update rule of the first-order driver [`FirstOrder`]: how the state evolves and which
/// update a gradient produces.
///
/// The driver calls [`FirstOrderRule::update`] on a *copy* of the state with a finite,
/// already clipped gradient, and commits the new state and `θ ← θ − u` only if the new state
/// ([`FirstOrderRule::state_is_finite`]), every `u_i` and every `θ_i − u_i` are finite;
/// otherwise the step is skipped with [`SkipReason::NonFiniteUpdate`].
///
/// [`AdamRule`](crate::AdamRule) and [`LionRule`](crate::LionRule) are the two rules of this
/// crate; a new rule gets clipping, skipping, observers, budgets and the [`Minimizer`]
/// interface for free:
///
/// ```
/// use diffsmc_optim::{FirstOrder, FirstOrderRule, Minimizer};
///
/// /// Plain gradient descent: no state.
/// #[derive(Debug, Clone, PartialEq)]
/// struct Sgd;
///
/// impl FirstOrderRule for Sgd {
///     type State = ();
///     fn init(&self, _n: usize) {}
///     fn update(&self, _state: &mut (), _theta: &[f64], g: &[f64], lr: f64, u: &mut [f64]) {
///         for (ui, gi) in u.iter_mut().zip(g) {
///             *ui = lr * gi;
///         }
///     }
///     fn state_is_finite(&self, _state: &()) -> bool {
///         true
///     }
/// }
///
/// let sgd = FirstOrder::with_rule(Sgd, 0.1)?.with_max_iterations(200)?;
/// let r = sgd.minimize(|x: &[f64]| (x[0] * x[0], vec![2.0 * x[0]]), &[1.0])?;
/// assert!(r.theta[0].abs() < 1e-10);
/// # Ok::<(), diffsmc_optim::OptimError>(())
/// ```
pub trait FirstOrderRule: Clone + fmt::Debug {
    /// The rule's state (moments, step-dependent factors).
    type State: Clone + fmt::Debug + PartialEq;

    /// The state before the first step, for `n` parameters.
    fn init(&self, n: usize) -> Self::State;

    /// Advances `state` and writes the update `u` (the driver then sets `θ ← θ − u`) for the
    /// gradient `gradient` (finite, already clipped) at `theta` with learning rate
    /// `learning_rate`. `gradient`, `theta` and `u` have the same length as the state.
    fn update(
        &self,
        state: &mut Self::State,
        theta: &[f64],
        gradient: &[f64],
        learning_rate: f64,
        u: &mut [f64],
    );

    /// Whether every number of `state` is finite (a step producing a non-finite state is
    /// skipped).
    fn state_is_finite(&self, state: &Self::State) -> bool;
}

/// The first-order driver: an update rule `R` with a learning rate, optional global-norm
/// clipping, an iteration budget and the state of the stateful [`FirstOrder::step`] API.
///
/// [`Adam`](crate::Adam) and [`Lion`](crate::Lion) are this driver with
/// [`AdamRule`](crate::AdamRule) and [`LionRule`](crate::LionRule).
///
/// Two ways to use it:
/// * as a [`Minimizer`]: [`Minimizer::minimize`] runs `max_iterations` rounds of
///   evaluate → observe → step from a fresh state (the driver's own state is not touched),
///   then evaluates and observes the final iterate, so the result's `value` and `gradient`
///   belong to its `theta`. Rounds whose value or gradient is non-finite skip the update
///   (counted in [`Minimum::skipped_updates`]). The run ends with
///   [`StopReason::MaxIterations`] (or [`StopReason::ObserverStop`]); it never counts as
///   converged. Observer iteration `k` sees the `k`-th iterate *before* its update.
/// * step by step: [`FirstOrder::step`] applies one update with a given gradient to the state
///   kept in the driver.
#[derive(Debug, Clone, PartialEq)]
pub struct FirstOrder<R: FirstOrderRule> {
    rule: R,
    learning_rate: f64,
    clip_norm: Option<f64>,
    max_iterations: usize,
    /// `None` before the first applied step.
    state: Option<R::State>,
    /// The dimension `state` was built for.
    dimension: usize,
    steps: u64,
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

/// Global-norm clipping factor for a finite gradient: returns `(‖g‖₂, scale, clipped)`, with
/// `scale = clip/‖g‖₂` if that is below 1. `None` if the norm itself overflows while clipping
/// is requested (the update is then skipped).
fn clip_scale(grad: &[f64], clip: Option<f64>) -> Option<(f64, f64, bool)> {
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

/// Default iteration budget of [`FirstOrder`] (Adam, Lion).
pub const DEFAULT_FIRST_ORDER_ITERATIONS: usize = 1000;

impl<R: FirstOrderRule> FirstOrder<R> {
    /// The driver for `rule` with learning rate `learning_rate`, no clipping and a budget of
    /// [`DEFAULT_FIRST_ORDER_ITERATIONS`] iterations.
    ///
    /// # Errors
    /// [`OptimError::InvalidKnob`] with [`Knob::LearningRate`] unless `learning_rate` is finite
    /// and > 0.
    pub fn with_rule(rule: R, learning_rate: f64) -> Result<Self, OptimError> {
        Ok(Self {
            rule,
            learning_rate: check_learning_rate(learning_rate)?,
            clip_norm: None,
            max_iterations: DEFAULT_FIRST_ORDER_ITERATIONS,
            state: None,
            dimension: 0,
            steps: 0,
        })
    }

    /// The update rule.
    #[must_use]
    pub fn rule(&self) -> &R {
        &self.rule
    }

    /// The update rule, for the rule-specific `with_*` knobs.
    pub(crate) fn rule_mut(&mut self) -> &mut R {
        &mut self.rule
    }

    /// Rescale every gradient to Euclidean norm at most `clip` (finite, > 0) before it enters
    /// the rule.
    ///
    /// # Errors
    /// [`OptimError::InvalidKnob`] with [`Knob::ClipNorm`].
    pub fn with_clip_norm(mut self, clip: f64) -> Result<Self, OptimError> {
        if !(clip.is_finite() && clip > 0.0) {
            return Err(invalid(Knob::ClipNorm, clip, "a finite number > 0"));
        }
        self.clip_norm = Some(clip);
        Ok(self)
    }

    /// Number of update rounds of a [`Minimizer::minimize`] run (≥ 1; default
    /// [`DEFAULT_FIRST_ORDER_ITERATIONS`]).
    ///
    /// # Errors
    /// [`OptimError::InvalidKnob`] with [`Knob::MaxIterations`] if `n == 0`.
    pub fn with_max_iterations(mut self, n: usize) -> Result<Self, OptimError> {
        if n == 0 {
            return Err(invalid(Knob::MaxIterations, 0.0, "an integer ≥ 1"));
        }
        self.max_iterations = n;
        Ok(self)
    }

    /// The iteration budget.
    #[must_use]
    pub fn max_iterations(&self) -> usize {
        self.max_iterations
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

    /// Number of applied (not skipped) [`FirstOrder::step`]s since construction or the last
    /// reset.
    #[must_use]
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The state of the stateful API (`None` before the first applied step).
    #[must_use]
    pub fn state(&self) -> Option<&R::State> {
        self.state.as_ref()
    }

    /// Forgets the state and the step count (the configuration is kept). The next step may
    /// use a different dimension.
    pub fn reset(&mut self) {
        self.state = None;
        self.dimension = 0;
        self.steps = 0;
    }

    /// One update of `theta` with gradient `grad`, using and advancing the state kept in
    /// `self`.
    ///
    /// # Panics
    /// If `grad.len() != theta.len()`, or if the state was built for another dimension
    /// (call [`FirstOrder::reset`] first).
    pub fn step(&mut self, theta: &mut [f64], grad: &[f64]) -> StepOutcome {
        assert_eq!(
            theta.len(),
            grad.len(),
            "step: theta has length {} but grad has length {}",
            theta.len(),
            grad.len()
        );
        assert!(
            self.state.is_none() || self.dimension == theta.len(),
            "step: optimiser state has dimension {} but theta has length {}; call reset() to change dimension",
            self.dimension,
            theta.len()
        );
        let mut scratch = Scratch::default();
        let outcome = apply_step(
            &self.rule,
            self.learning_rate,
            self.clip_norm,
            &mut self.state,
            theta,
            grad,
            &mut scratch,
        );
        if outcome.is_applied() {
            self.dimension = theta.len();
            self.steps += 1;
        }
        outcome
    }
}

/// Reusable buffers of [`apply_step`].
#[derive(Debug)]
struct Scratch<S> {
    state: Option<S>,
    gradient: Vec<f64>,
    update: Vec<f64>,
}

impl<S> Default for Scratch<S> {
    fn default() -> Self {
        Self {
            state: None,
            gradient: Vec::new(),
            update: Vec::new(),
        }
    }
}

/// The shared step: checks, clipping, the rule's update on a copy of the state, and the
/// commit if everything stayed finite.
fn apply_step<R: FirstOrderRule>(
    rule: &R,
    learning_rate: f64,
    clip_norm: Option<f64>,
    state: &mut Option<R::State>,
    theta: &mut [f64],
    grad: &[f64],
    scratch: &mut Scratch<R::State>,
) -> StepOutcome {
    let n = theta.len();
    if !all_finite(grad) {
        return StepOutcome::Skipped(SkipReason::NonFiniteGradient);
    }
    let Some((gradient_norm, scale, clipped)) = clip_scale(grad, clip_norm) else {
        return StepOutcome::Skipped(SkipReason::NonFiniteUpdate);
    };
    scratch.gradient.clear();
    scratch.gradient.extend(grad.iter().map(|g| g * scale));
    scratch.update.clear();
    scratch.update.resize(n, 0.0);
    let next = match (state.as_ref(), scratch.state.as_mut()) {
        (Some(s), Some(buf)) => {
            buf.clone_from(s);
            buf
        }
        (Some(s), None) => scratch.state.insert(s.clone()),
        (None, _) => scratch.state.insert(rule.init(n)),
    };
    rule.update(
        next,
        theta,
        &scratch.gradient,
        learning_rate,
        &mut scratch.update,
    );
    let finite = rule.state_is_finite(next)
        && theta
            .iter()
            .zip(&scratch.update)
            .all(|(t, u)| u.is_finite() && (t - u).is_finite());
    if !finite {
        return StepOutcome::Skipped(SkipReason::NonFiniteUpdate);
    }
    let mut sq = 0.0;
    for (t, u) in theta.iter_mut().zip(&scratch.update) {
        sq += u * u;
        *t -= u;
    }
    std::mem::swap(state, &mut scratch.state);
    StepOutcome::Applied {
        gradient_norm,
        clipped,
        update_norm: sq.sqrt(),
    }
}

impl<R: FirstOrderRule> Minimizer for FirstOrder<R> {
    fn minimize_with_observer<F, O>(
        &self,
        mut objective: F,
        theta0: &[f64],
        observer: &mut O,
    ) -> Result<Minimum, OptimError<F::Error>>
    where
        F: Objective,
        O: Observer + ?Sized,
    {
        check_theta0(theta0)?;
        let mut state = None;
        let mut scratch = Scratch::default();
        let mut theta = theta0.to_vec();
        let mut evaluations = 0;
        let mut skipped = 0;
        let mut iteration = 0;
        loop {
            let (value, gradient) = evaluate_checked(&mut objective, &theta, &mut evaluations)?;
            let control = observer.observe(&IterationInfo {
                iteration,
                value,
                gradient_norm: norm2(&gradient),
                theta: &theta,
                evaluations,
            });
            let reason = if control == Control::Stop {
                Some(StopReason::ObserverStop)
            } else if iteration == self.max_iterations {
                Some(StopReason::MaxIterations)
            } else {
                None
            };
            if let Some(reason) = reason {
                return Ok(Minimum {
                    theta,
                    value,
                    gradient,
                    iterations: iteration,
                    evaluations,
                    converged: false,
                    reason,
                    skipped_updates: skipped,
                    steepest_descent_resets: 0,
                    skipped_curvature_pairs: 0,
                });
            }
            iteration += 1;
            let applied = value.is_finite()
                && apply_step(
                    &self.rule,
                    self.learning_rate,
                    self.clip_norm,
                    &mut state,
                    &mut theta,
                    &gradient,
                    &mut scratch,
                )
                .is_applied();
            if !applied {
                skipped += 1;
            }
        }
    }
}
