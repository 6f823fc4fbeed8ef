//! The one interface of all optimisers: [`Minimizer`], its result [`Minimum`] and
//! [`StopReason`].

use crate::error::OptimError;
use crate::objective::Objective;
use crate::observer::Observer;
use crate::vecops::norm2;

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopReason {
    /// `‖∇f(θ)‖_∞ ≤ gradient_tolerance` (L-BFGS). Counts as converged.
    GradientTolerance,
    /// The last accepted step changed the value by at most
    /// `function_tolerance · max(|f_k|, |f_{k+1}|, 1)` (L-BFGS). Counts as converged.
    FunctionTolerance,
    /// The last accepted step satisfied
    /// `‖θ_{k+1} − θ_k‖_∞ ≤ step_tolerance · max(‖θ_{k+1}‖_∞, 1)` (L-BFGS). Counts as
    /// converged.
    StepTolerance,
    /// The iteration budget (`with_max_iterations`) ran out. Not converged. This is how a
    /// fixed-budget Adam or Lion run ends.
    MaxIterations,
    /// Neither the L-BFGS direction nor steepest descent yielded a point with sufficient
    /// decrease within the line-search budget. Not converged; the result holds the last
    /// accepted iterate.
    LineSearchFailed,
    /// The value or gradient at the starting point is not finite (L-BFGS). Not converged; no
    /// step was taken.
    NonFiniteStart,
    /// The [`Observer`] returned [`Control::Stop`](crate::Control::Stop). Not converged.
    ObserverStop,
}

impl StopReason {
    /// Whether this reason is one of the tolerance-based (converged) reasons.
    #[must_use]
    pub fn is_converged(self) -> bool {
        matches!(
            self,
            StopReason::GradientTolerance
                | StopReason::FunctionTolerance
                | StopReason::StepTolerance
        )
    }

    /// A stable snake-case name (`"gradient_tolerance"`, `"max_iterations"`, …) for reports.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            StopReason::GradientTolerance => "gradient_tolerance",
            StopReason::FunctionTolerance => "function_tolerance",
            StopReason::StepTolerance => "step_tolerance",
            StopReason::MaxIterations => "max_iterations",
            StopReason::LineSearchFailed => "line_search_failed",
            StopReason::NonFiniteStart => "non_finite_start",
            StopReason::ObserverStop => "observer_stop",
        }
    }
}

/// Outcome of a run of any [`Minimizer`].
///
/// `theta`, `value` and `gradient` always belong together: the value and gradient were
/// evaluated at `theta`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Minimum {
    /// The final iterate: for L-BFGS the last accepted iterate (the start point if no step was
    /// accepted), for Adam/Lion the iterate after the last update. Always finite.
    pub theta: Vec<f64>,
    /// Objective value at `theta`. Always finite for L-BFGS unless `reason` is
    /// [`StopReason::NonFiniteStart`]; may be non-finite for Adam/Lion (whose update at a
    /// non-finite value is skipped).
    pub value: f64,
    /// Gradient at `theta`.
    pub gradient: Vec<f64>,
    /// Iterations: accepted steps (L-BFGS) or update rounds, applied or skipped (Adam/Lion).
    pub iterations: usize,
    /// Total objective evaluations, including line-search trial points (L-BFGS) and the
    /// evaluation at the final iterate.
    pub evaluations: usize,
    /// `true` exactly when `reason.is_converged()`.
    pub converged: bool,
    /// Why the run ended.
    pub reason: StopReason,
    /// Update rounds skipped because the value, gradient or update was not finite
    /// (Adam/Lion; always 0 for L-BFGS, which backtracks instead).
    pub skipped_updates: usize,
    /// How many times the quasi-Newton history was discarded in favour of steepest descent
    /// (non-descent or non-finite direction, or a failed line search along it). L-BFGS only.
    pub steepest_descent_resets: usize,
    /// How many curvature pairs were skipped because `s·y ≤ ε‖s‖‖y‖`. L-BFGS only.
    pub skipped_curvature_pairs: usize,
}

impl Minimum {
    /// Euclidean norm of [`Minimum::gradient`] (NaN or ∞ if it is not finite).
    #[must_use]
    pub fn gradient_norm(&self) -> f64 {
        norm2(&self.gradient)
    }
}

/// A minimiser of an [`Objective`] over `θ ∈ Rⁿ`: [`Lbfgs`](crate::Lbfgs),
/// [`Adam`](crate::Adam) and [`Lion`](crate::Lion).
///
/// The configuration (including the iteration budget, `with_max_iterations`) is fixed before
/// the run and not changed by it, so one minimiser can run any number of problems.
///
/// ```
/// use diffsmc_optim::{Adam, Lbfgs, Lion, Minimizer, OptimError, StopReason};
///
/// fn fit(m: &impl Minimizer) -> Result<Vec<f64>, OptimError> {
///     let f = |x: &[f64]| ((x[0] - 2.0).powi(2), vec![2.0 * (x[0] - 2.0)]);
///     Ok(m.minimize(f, &[0.0])?.theta)
/// }
/// assert!((fit(&Lbfgs::new())?[0] - 2.0).abs() < 1e-5);
/// assert!((fit(&Adam::new(0.1)?.with_max_iterations(500)?)?[0] - 2.0).abs() < 1e-2);
/// assert!((fit(&Lion::new(0.01)?.with_max_iterations(500)?)?[0] - 2.0).abs() < 5e-2);
/// # Ok::<(), OptimError>(())
/// ```
pub trait Minimizer {
    /// Minimises `objective` from `theta0`, calling `observer` once per iteration (see
    /// [`IterationInfo`](crate::IterationInfo) for what an iteration is).
    ///
    /// # Errors
    /// [`OptimError::EmptyParameters`] or [`OptimError::NonFiniteParameter`] for a bad
    /// `theta0`, [`OptimError::GradientLength`] if the objective returns a gradient of the
    /// wrong length, and [`OptimError::Objective`] with the objective's error if an evaluation
    /// fails (the run stops there).
    fn minimize_with_observer<F, O>(
        &self,
        objective: F,
        theta0: &[f64],
        observer: &mut O,
    ) -> Result<Minimum, OptimError<F::Error>>
    where
        F: Objective,
        O: Observer + ?Sized;

    /// [`Minimizer::minimize_with_observer`] with the no-op observer `()`.
    ///
    /// # Errors
    /// As [`Minimizer::minimize_with_observer`].
    fn minimize<F: Objective>(
        &self,
        objective: F,
        theta0: &[f64],
    ) -> Result<Minimum, OptimError<F::Error>> {
        self.minimize_with_observer(objective, theta0, &mut ())
    }
}
