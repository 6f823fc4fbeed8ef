//! The objective abstraction shared by all optimisers.

use std::convert::Infallible;

use crate::OptimError;

/// A differentiable objective `f: Rⁿ → R` to be **minimised**, which may fail.
///
/// `eval` returns the value and the gradient at `theta`, or an error of type
/// [`Objective::Error`] (e.g. the model's own error type). An `Err` ends the run: every
/// minimiser returns it as [`OptimError::Objective`] at once, without further evaluations.
///
/// The gradient must have the same length as `theta` (otherwise the drivers return
/// [`OptimError::GradientLength`]). Values and gradient entries may be non-finite (NaN or
/// ±∞): that is *not* an error — the optimisers treat such points as "not admissible"
/// (L-BFGS backtracks, Adam/Lion skip the update) instead of propagating them into θ.
///
/// The objective may be noisy (e.g. a particle-filter log-likelihood estimate); it is called
/// through `&mut self` so it can carry random-number state.
///
/// Any closure `FnMut(&[f64]) -> R` is an objective when `R` is
/// * `(f64, Vec<f64>)` — an objective that cannot fail (`Error = Infallible`), or
/// * `Result<(f64, Vec<f64>), E>` — a fallible objective (`Error = E`),
///
/// so implementing this trait by hand is only needed for named types. Pass `&mut closure` to
/// keep using the closure after the optimiser has run.
///
/// ```
/// use diffsmc_optim::Objective;
///
/// let mut f = |x: &[f64]| (x[0] * x[0], vec![2.0 * x[0]]);
/// assert_eq!(f.eval(&[3.0]), Ok((9.0, vec![6.0])));
///
/// let mut g = |x: &[f64]| {
///     if x[0] < 0.0 {
///         return Err("x must be ≥ 0");
///     }
///     Ok((x[0].sqrt(), vec![0.5 / x[0].sqrt()]))
/// };
/// assert_eq!(g.eval(&[-1.0]), Err("x must be ≥ 0"));
/// ```
pub trait Objective {
    /// What a failed evaluation returns ([`Infallible`] if evaluation cannot fail).
    type Error;

    /// Value and gradient at `theta`.
    ///
    /// # Errors
    /// Whatever the objective reports; the optimiser stops and hands it back.
    fn eval(&mut self, theta: &[f64]) -> Result<(f64, Vec<f64>), Self::Error>;
}

/// What a closure objective may return: `(value, gradient)` or a `Result` of it.
///
/// This is the glue that lets both infallible and fallible closures be an [`Objective`];
/// there is no need to implement it.
pub trait Evaluation {
    /// The error type ([`Infallible`] for a plain tuple).
    type Error;

    /// Converts into the `Result` form.
    ///
    /// # Errors
    /// The closure's own error.
    fn into_result(self) -> Result<(f64, Vec<f64>), Self::Error>;
}

impl Evaluation for (f64, Vec<f64>) {
    type Error = Infallible;

    fn into_result(self) -> Result<(f64, Vec<f64>), Infallible> {
        Ok(self)
    }
}

impl<E> Evaluation for Result<(f64, Vec<f64>), E> {
    type Error = E;

    fn into_result(self) -> Result<(f64, Vec<f64>), E> {
        self
    }
}

impl<F, R> Objective for F
where
    F: FnMut(&[f64]) -> R,
    R: Evaluation,
{
    type Error = R::Error;

    fn eval(&mut self, theta: &[f64]) -> Result<(f64, Vec<f64>), R::Error> {
        self(theta).into_result()
    }
}

/// Evaluates `objective` at `x`, counts the evaluation and checks the gradient length.
pub(crate) fn evaluate_checked<F: Objective + ?Sized>(
    objective: &mut F,
    x: &[f64],
    evaluations: &mut usize,
) -> Result<(f64, Vec<f64>), OptimError<F::Error>> {
    *evaluations += 1;
    let (value, gradient) = objective.eval(x).map_err(OptimError::Objective)?;
    if gradient.len() != x.len() {
        return Err(OptimError::GradientLength {
            expected: x.len(),
            got: gradient.len(),
        });
    }
    Ok((value, gradient))
}
