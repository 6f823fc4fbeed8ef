//! The objective abstraction shared by all optimisers.

/// A differentiable objective `f: Rⁿ → R` to be **minimised**.
///
/// `evaluate` returns the value and the gradient at `theta`. The gradient must have the same
/// length as `theta` (otherwise the drivers return
/// [`OptimError::GradientLength`](crate::OptimError::GradientLength)). Values and gradient
/// entries may be non-finite (NaN or ±∞): the optimisers treat such points as "not admissible"
/// (L-BFGS backtracks, Adam/Lion skip the update) instead of propagating them into θ.
///
/// The objective may be noisy (e.g. a particle-filter log-likelihood estimate); it is called
/// through `&mut self` so it can carry random-number state.
///
/// Any closure `FnMut(&[f64]) -> (f64, Vec<f64>)` is an objective, so implementing this trait by
/// hand is only needed for named types. Pass `&mut closure` to keep using the closure after
/// the optimiser has run.
///
/// ```
/// use diffsmc_optim::Objective;
///
/// let mut f = |x: &[f64]| (x[0] * x[0], vec![2.0 * x[0]]);
/// let (value, grad) = f.evaluate(&[3.0]);
/// assert_eq!((value, grad), (9.0, vec![6.0]));
/// ```
pub trait Objective {
    /// Value and gradient at `theta`.
    fn evaluate(&mut self, theta: &[f64]) -> (f64, Vec<f64>);
}

impl<F> Objective for F
where
    F: FnMut(&[f64]) -> (f64, Vec<f64>),
{
    fn evaluate(&mut self, theta: &[f64]) -> (f64, Vec<f64>) {
        self(theta)
    }
}

/// Evaluates `objective` at `x`, counts the evaluation and checks the gradient length.
pub(crate) fn evaluate_checked<F: Objective + ?Sized>(
    objective: &mut F,
    x: &[f64],
    evaluations: &mut usize,
) -> Result<(f64, Vec<f64>), crate::OptimError> {
    let (value, gradient) = objective.evaluate(x);
    *evaluations += 1;
    if gradient.len() != x.len() {
        return Err(crate::OptimError::GradientLength {
            expected: x.len(),
            got: gradient.len(),
        });
    }
    Ok((value, gradient))
}
