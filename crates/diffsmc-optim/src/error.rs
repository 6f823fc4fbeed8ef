//! Typed errors of the optimisers.

use std::convert::Infallible;
use std::fmt;

use thiserror::Error;

/// The configuration knobs that can be rejected by a `with_*` builder method.
///
/// Carried by [`OptimError::InvalidKnob`] so that callers can match on *which* knob was wrong
/// without parsing a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Knob {
    /// L-BFGS history size (number of stored curvature pairs).
    HistorySize,
    /// L-BFGS gradient tolerance.
    GradientTolerance,
    /// L-BFGS relative function tolerance.
    FunctionTolerance,
    /// L-BFGS step tolerance.
    StepTolerance,
    /// Iteration budget of any minimiser (L-BFGS accepted steps, Adam/Lion update rounds).
    MaxIterations,
    /// L-BFGS maximum number of objective evaluations per line search.
    MaxLineSearchEvaluations,
    /// Sufficient-decrease (Armijo) constant `c1` of the Wolfe conditions.
    WolfeC1,
    /// Curvature constant `c2` of the Wolfe conditions.
    WolfeC2,
    /// Cap on the length of the first trial step of L-BFGS (and after a steepest-descent reset).
    MaxInitialStep,
    /// Relative threshold below which an L-BFGS curvature pair is skipped.
    CurvatureEpsilon,
    /// Learning rate of Adam or Lion.
    LearningRate,
    /// First-moment (momentum) decay `β1` of Adam or Lion.
    Beta1,
    /// Second-moment decay `β2` of Adam, or momentum-tracking decay `β2` of Lion.
    Beta2,
    /// Adam's denominator offset `ε`.
    Epsilon,
    /// Lion's decoupled weight decay.
    WeightDecay,
    /// Global-norm gradient clipping threshold.
    ClipNorm,
}

impl Knob {
    /// The knob's name as used in the builder method (`with_<name>`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Knob::HistorySize => "history_size",
            Knob::GradientTolerance => "gradient_tolerance",
            Knob::FunctionTolerance => "function_tolerance",
            Knob::StepTolerance => "step_tolerance",
            Knob::MaxIterations => "max_iterations",
            Knob::MaxLineSearchEvaluations => "max_line_search_evaluations",
            Knob::WolfeC1 => "c1",
            Knob::WolfeC2 => "c2",
            Knob::MaxInitialStep => "max_initial_step",
            Knob::CurvatureEpsilon => "curvature_epsilon",
            Knob::LearningRate => "learning_rate",
            Knob::Beta1 => "beta1",
            Knob::Beta2 => "beta2",
            Knob::Epsilon => "epsilon",
            Knob::WeightDecay => "weight_decay",
            Knob::ClipNorm => "clip_norm",
        }
    }
}

impl fmt::Display for Knob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything that can go wrong when configuring or running an optimiser.
///
/// `E` is the error type of the [`Objective`](crate::Objective) being minimised; it is
/// [`Infallible`] for objectives that cannot fail (plain closures returning `(f64, Vec<f64>)`)
/// and for the configuration errors of the `with_*` methods, so `OptimError` alone means
/// `OptimError<Infallible>`.
///
/// Numerical trouble *during* a run (non-finite values at trial points, a failing line search,
/// a non-finite start value for L-BFGS) is not an error: it is handled by the optimiser and
/// reported through the [`Minimum`](crate::Minimum) (`StopReason`, skipped-update counts).
/// Errors are reserved for invalid configuration, for inputs that cannot be optimised at all,
/// and for an objective that returned `Err` ([`OptimError::Objective`]), which ends the run.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum OptimError<E = Infallible> {
    /// A knob passed to a `with_*` builder method (or constructor) is out of its valid range.
    #[error("invalid value {value} for `{knob}`: expected {expected}")]
    InvalidKnob {
        /// Which knob.
        knob: Knob,
        /// The rejected value (integers are converted to `f64`).
        value: f64,
        /// The valid range, in words.
        expected: &'static str,
    },
    /// The starting parameter vector is empty.
    #[error("the parameter vector is empty")]
    EmptyParameters,
    /// The starting parameter vector contains a NaN or infinite entry.
    #[error("starting parameter {index} is not finite: {value}")]
    NonFiniteParameter {
        /// Index of the first offending entry.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// The objective returned a gradient whose length differs from the parameter dimension.
    #[error("the objective returned a gradient of length {got}, expected {expected}")]
    GradientLength {
        /// The parameter dimension.
        expected: usize,
        /// The gradient length returned.
        got: usize,
    },
    /// The objective returned an error; the run stopped at that evaluation.
    #[error("{0}")]
    Objective(E),
}

impl<E> OptimError<E> {
    /// Separates the objective's own error from the optimiser's errors: `Ok(e)` for
    /// [`OptimError::Objective`], `Err` with the same optimiser error otherwise.
    ///
    /// ```
    /// use diffsmc_optim::{Lbfgs, Minimizer, OptimError};
    ///
    /// let failing = |_: &[f64]| Err::<(f64, Vec<f64>), _>("model blew up");
    /// let err = Lbfgs::new().minimize(failing, &[1.0]).unwrap_err();
    /// assert_eq!(err.into_objective_error(), Ok("model blew up"));
    ///
    /// let err = Lbfgs::new().minimize(failing, &[]).unwrap_err();
    /// assert_eq!(err.into_objective_error(), Err(OptimError::EmptyParameters));
    /// ```
    ///
    /// # Errors
    /// The optimiser's own error (any variant but [`OptimError::Objective`]).
    pub fn into_objective_error(self) -> Result<E, OptimError> {
        match self {
            OptimError::Objective(e) => Ok(e),
            OptimError::InvalidKnob {
                knob,
                value,
                expected,
            } => Err(OptimError::InvalidKnob {
                knob,
                value,
                expected,
            }),
            OptimError::EmptyParameters => Err(OptimError::EmptyParameters),
            OptimError::NonFiniteParameter { index, value } => {
                Err(OptimError::NonFiniteParameter { index, value })
            }
            OptimError::GradientLength { expected, got } => {
                Err(OptimError::GradientLength { expected, got })
            }
        }
    }
}

impl OptimError {
    /// The same error for an objective with error type `E` (an `OptimError` without objective
    /// error fits any objective).
    #[must_use]
    pub fn for_objective<E>(self) -> OptimError<E> {
        match self {
            OptimError::Objective(never) => match never {},
            OptimError::InvalidKnob {
                knob,
                value,
                expected,
            } => OptimError::InvalidKnob {
                knob,
                value,
                expected,
            },
            OptimError::EmptyParameters => OptimError::EmptyParameters,
            OptimError::NonFiniteParameter { index, value } => {
                OptimError::NonFiniteParameter { index, value }
            }
            OptimError::GradientLength { expected, got } => {
                OptimError::GradientLength { expected, got }
            }
        }
    }
}

/// Validates the starting point shared by all drivers.
pub(crate) fn check_theta0<E>(theta0: &[f64]) -> Result<(), OptimError<E>> {
    if theta0.is_empty() {
        return Err(OptimError::EmptyParameters);
    }
    if let Some((index, &value)) = theta0.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(OptimError::NonFiniteParameter { index, value });
    }
    Ok(())
}

/// Builds an [`OptimError::InvalidKnob`].
pub(crate) fn invalid(knob: Knob, value: f64, expected: &'static str) -> OptimError {
    OptimError::InvalidKnob {
        knob,
        value,
        expected,
    }
}
