//! L-BFGS with a strong-Wolfe line search, hardened for noisy and partly non-finite objectives.

use crate::error::{Knob, OptimError, check_theta0, invalid};
use crate::minimizer::{Minimizer, Minimum, StopReason};
use crate::objective::{Objective, evaluate_checked};
use crate::observer::{Control, IterationInfo, Observer};
use crate::vecops::{all_finite, axpy_into, dot, norm_inf, norm2};

/// Limited-memory BFGS minimiser with a strong-Wolfe line search (Nocedal & Wright,
/// Algorithms 3.5/3.6, with safeguarded cubic interpolation in the zoom phase).
///
/// Built with [`Lbfgs::new`] and validated `with_*` methods, then run with
/// [`Minimizer::minimize`] or [`Minimizer::minimize_with_observer`]. The configuration is immutable
/// during a run; one `Lbfgs` can run any number of problems.
///
/// # Robustness rules
/// * If the two-loop direction `p` is not a descent direction (`∇f·p ≥ 0`) or is not finite,
///   the history is cleared and steepest descent is used for this iteration.
/// * Curvature pairs with `s·y ≤ ε‖s‖‖y‖` ([`Lbfgs::with_curvature_epsilon`]) are not stored,
///   so the implicit inverse Hessian stays positive definite.
/// * A non-finite value or gradient at a line-search trial point shrinks the step
///   (bisection towards the last admissible step); such points are never accepted.
/// * If the line search exhausts its budget without the Wolfe conditions, the lowest trial
///   point satisfying sufficient decrease is accepted; if there is none, steepest descent is
///   tried once (when the direction came from the history), and otherwise the run stops with
///   [`StopReason::LineSearchFailed`].
/// * The first step (and the first step after a reset) has length
///   `min(‖∇f‖₂, max_initial_step)`, i.e. the step factor along `−∇f` is
///   `min(1, max_initial_step/‖∇f‖₂)`, so a huge gradient does not throw θ far away.
/// * A non-finite value or gradient at the start point ends the run immediately with
///   [`StopReason::NonFiniteStart`].
///
/// # Example
/// ```
/// use diffsmc_optim::{Lbfgs, Minimizer, StopReason};
///
/// // f(x) = Σ (i+1)(x_i − 1)², minimum at (1, 1, 1).
/// let f = |x: &[f64]| {
///     let value = x.iter().enumerate().map(|(i, xi)| (i as f64 + 1.0) * (xi - 1.0).powi(2)).sum();
///     let grad = x.iter().enumerate().map(|(i, xi)| 2.0 * (i as f64 + 1.0) * (xi - 1.0)).collect();
///     (value, grad)
/// };
/// let lbfgs = Lbfgs::new()
///     .with_gradient_tolerance(1e-8)?
///     .with_function_tolerance(0.0)?; // rely on the gradient test only
/// let result = lbfgs.minimize(f, &[0.0, 5.0, -3.0])?;
/// assert!(result.converged);
/// assert_eq!(result.reason, StopReason::GradientTolerance);
/// assert!(result.theta.iter().all(|t| (t - 1.0).abs() < 1e-8));
/// # Ok::<(), diffsmc_optim::OptimError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Lbfgs {
    history_size: usize,
    gradient_tolerance: f64,
    function_tolerance: f64,
    step_tolerance: f64,
    max_iterations: usize,
    max_line_search_evaluations: usize,
    c1: f64,
    c2: f64,
    max_initial_step: f64,
    curvature_epsilon: f64,
}

impl Default for Lbfgs {
    fn default() -> Self {
        Self::new()
    }
}

fn check_nonneg(knob: Knob, value: f64) -> Result<f64, OptimError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(invalid(knob, value, "a finite number ≥ 0"))
    }
}

impl Lbfgs {
    /// Default configuration: history 10, gradient tolerance 1e-5 (∞-norm), relative function
    /// tolerance 1e-10, step tolerance 1e-10, 100 iterations, 25 evaluations per line search,
    /// `c1 = 1e-4`, `c2 = 0.9`, maximal first step 1, curvature epsilon 1e-10.
    #[must_use]
    pub fn new() -> Self {
        Self {
            history_size: 10,
            gradient_tolerance: 1e-5,
            function_tolerance: 1e-10,
            step_tolerance: 1e-10,
            max_iterations: 100,
            max_line_search_evaluations: 25,
            c1: 1e-4,
            c2: 0.9,
            max_initial_step: 1.0,
            curvature_epsilon: 1e-10,
        }
    }

    /// Number of curvature pairs kept (≥ 1; default 10).
    ///
    /// # Errors
    /// [`OptimError::InvalidKnob`] with [`Knob::HistorySize`] if `m == 0`.
    pub fn with_history_size(mut self, m: usize) -> Result<Self, OptimError> {
        if m == 0 {
            return Err(invalid(Knob::HistorySize, 0.0, "an integer ≥ 1"));
        }
        self.history_size = m;
        Ok(self)
    }

    /// Stop when `‖∇f(θ)‖_∞ ≤ tol` (default 1e-5). `0` disables the test unless the gradient
    /// is exactly zero.
    ///
    /// # Errors
    /// [`OptimError::InvalidKnob`] with [`Knob::GradientTolerance`] unless `tol` is finite and ≥ 0.
    pub fn with_gradient_tolerance(mut self, tol: f64) -> Result<Self, OptimError> {
        self.gradient_tolerance = check_nonneg(Knob::GradientTolerance, tol)?;
        Ok(self)
    }

    /// Stop when an accepted step changes the value by at most `tol · max(|f_k|, |f_{k+1}|, 1)`
    /// (default 1e-10). `0` disables the test unless the value does not change at all.
    ///
    /// # Errors
    /// [`OptimError::InvalidKnob`] with [`Knob::FunctionTolerance`] unless `tol` is finite and ≥ 0.
    pub fn with_function_tolerance(mut self, tol: f64) -> Result<Self, OptimError> {
        self.function_tolerance = check_nonneg(Knob::FunctionTolerance, tol)?;
        Ok(self)
    }

    /// Stop when an accepted step satisfies `‖θ_{k+1} − θ_k‖_∞ ≤ tol · max(‖θ_{k+1}‖_∞, 1)`
    /// (default 1e-10).
    ///
    /// # Errors
    /// [`OptimError::InvalidKnob`] with [`Knob::StepTolerance`] unless `tol` is finite and ≥ 0.
    pub fn with_step_tolerance(mut self, tol: f64) -> Result<Self, OptimError> {
        self.step_tolerance = check_nonneg(Knob::StepTolerance, tol)?;
        Ok(self)
    }

    /// Maximum number of accepted steps (≥ 1; default 100); the run then ends with
    /// [`StopReason::MaxIterations`].
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

    /// Maximum number of objective evaluations in one line search (≥ 1; default 25),
    /// including evaluations spent backtracking from non-finite trial points.
    ///
    /// # Errors
    /// [`OptimError::InvalidKnob`] with [`Knob::MaxLineSearchEvaluations`] if `n == 0`.
    pub fn with_max_line_search_evaluations(mut self, n: usize) -> Result<Self, OptimError> {
        if n == 0 {
            return Err(invalid(
                Knob::MaxLineSearchEvaluations,
                0.0,
                "an integer ≥ 1",
            ));
        }
        self.max_line_search_evaluations = n;
        Ok(self)
    }

    /// Strong-Wolfe constants: sufficient decrease `c1` and curvature `c2`, with
    /// `0 < c1 < c2 < 1` (defaults 1e-4 and 0.9).
    ///
    /// # Errors
    /// [`OptimError::InvalidKnob`] with [`Knob::WolfeC1`] unless `0 < c1 < 1`, or with
    /// [`Knob::WolfeC2`] unless `c1 < c2 < 1`.
    pub fn with_wolfe(mut self, c1: f64, c2: f64) -> Result<Self, OptimError> {
        if !(c1 > 0.0 && c1 < 1.0) {
            return Err(invalid(Knob::WolfeC1, c1, "0 < c1 < 1"));
        }
        if !(c2 > c1 && c2 < 1.0) {
            return Err(invalid(Knob::WolfeC2, c2, "c1 < c2 < 1"));
        }
        self.c1 = c1;
        self.c2 = c2;
        Ok(self)
    }

    /// Maximal length (Euclidean, in θ units) of the first trial step of a run and of the
    /// first trial step after a steepest-descent reset (default 1). Must be finite and > 0.
    ///
    /// # Errors
    /// [`OptimError::InvalidKnob`] with [`Knob::MaxInitialStep`].
    pub fn with_max_initial_step(mut self, length: f64) -> Result<Self, OptimError> {
        if !(length.is_finite() && length > 0.0) {
            return Err(invalid(Knob::MaxInitialStep, length, "a finite number > 0"));
        }
        self.max_initial_step = length;
        Ok(self)
    }

    /// Curvature pairs with `s·y ≤ ε‖s‖₂‖y‖₂` are skipped (default `ε = 1e-10`). `ε` is the
    /// cosine of the angle between `s` and `y`, so it must lie in `[0, 1)`.
    ///
    /// # Errors
    /// [`OptimError::InvalidKnob`] with [`Knob::CurvatureEpsilon`] unless `0 ≤ ε < 1`.
    pub fn with_curvature_epsilon(mut self, eps: f64) -> Result<Self, OptimError> {
        if !(0.0..1.0).contains(&eps) {
            return Err(invalid(Knob::CurvatureEpsilon, eps, "0 ≤ ε < 1"));
        }
        self.curvature_epsilon = eps;
        Ok(self)
    }
}

impl Minimizer for Lbfgs {
    /// Minimises `objective` from `theta0`, calling `observer` at the start point and after
    /// every accepted step (before the convergence tests, so the last iterate is always
    /// observed).
    ///
    /// Numerical trouble is reported through [`Minimum::reason`], not as an error.
    ///
    /// # Errors
    /// * [`OptimError::EmptyParameters`] / [`OptimError::NonFiniteParameter`] for a bad `theta0`;
    /// * [`OptimError::GradientLength`] if the objective returns a gradient of the wrong length.
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
        let n = theta0.len();
        let mut theta = theta0.to_vec();
        let mut evaluations = 0;
        let (mut value, mut gradient) = evaluate_checked(&mut objective, &theta, &mut evaluations)?;

        let mut resets = 0;
        let mut skipped_pairs = 0;
        if !(value.is_finite() && all_finite(&gradient)) {
            return Ok(Minimum {
                theta,
                value,
                gradient,
                iterations: 0,
                evaluations,
                converged: false,
                reason: StopReason::NonFiniteStart,
                skipped_updates: 0,
                steepest_descent_resets: 0,
                skipped_curvature_pairs: 0,
            });
        }

        let mut history = History::new(self.history_size, n);
        let mut direction = vec![0.0; n];
        let mut trial = vec![0.0; n];
        let mut iterations = 0;
        let mut pending: Option<StopReason> = None;

        let reason = loop {
            let control = observer.observe(&IterationInfo {
                iteration: iterations,
                value,
                gradient_norm: norm2(&gradient),
                theta: &theta,
                evaluations,
            });
            if norm_inf(&gradient) <= self.gradient_tolerance {
                break StopReason::GradientTolerance;
            }
            if let Some(reason) = pending {
                break reason;
            }
            if control == Control::Stop {
                break StopReason::ObserverStop;
            }
            if iterations >= self.max_iterations {
                break StopReason::MaxIterations;
            }

            // Search direction: two-loop recursion, falling back to steepest descent.
            let mut steepest = match history.descent_direction(&gradient, &mut direction) {
                Direction::QuasiNewton => false,
                Direction::Steepest => true,
                Direction::SteepestAfterReset => {
                    resets += 1;
                    true
                }
            };
            let accepted = loop {
                if steepest {
                    steepest_descent(&gradient, &mut direction);
                }
                let slope = dot(&gradient, &direction);
                let alpha0 = if steepest {
                    (self.max_initial_step / norm2(&direction)).min(1.0)
                } else {
                    1.0
                };
                let outcome = self.line_search(
                    &mut objective,
                    &theta,
                    value,
                    &direction,
                    slope,
                    alpha0,
                    &mut trial,
                    &mut evaluations,
                )?;
                match outcome {
                    Some(point) => break Some(point),
                    None if !steepest => {
                        history.clear();
                        resets += 1;
                        steepest = true;
                    }
                    None => break None,
                }
            };
            let Some(point) = accepted else {
                break StopReason::LineSearchFailed;
            };

            // θ_{k+1} = θ_k + α p (recomputed exactly as at the trial point).
            axpy_into(&mut trial, &theta, point.alpha, &direction);
            if !history.push(
                &theta,
                &trial,
                &gradient,
                &point.gradient,
                self.curvature_epsilon,
            ) {
                skipped_pairs += 1;
            }
            let mut step_inf = 0.0_f64;
            for (t, x) in theta.iter().zip(&trial) {
                step_inf = step_inf.max((x - t).abs());
            }
            let previous_value = value;
            theta.copy_from_slice(&trial);
            value = point.value;
            gradient = point.gradient;
            iterations += 1;

            let scale = previous_value.abs().max(value.abs()).max(1.0);
            if (previous_value - value).abs() <= self.function_tolerance * scale {
                pending = Some(StopReason::FunctionTolerance);
            } else if step_inf <= self.step_tolerance * norm_inf(&theta).max(1.0) {
                pending = Some(StopReason::StepTolerance);
            }
        };

        Ok(Minimum {
            theta,
            value,
            gradient,
            iterations,
            evaluations,
            converged: reason.is_converged(),
            reason,
            skipped_updates: 0,
            steepest_descent_resets: resets,
            skipped_curvature_pairs: skipped_pairs,
        })
    }
}

impl Lbfgs {
    /// Strong-Wolfe line search along `p` from `theta` (value `f0`, slope `slope0 < 0`).
    ///
    /// Returns the accepted point, or `None` if no trial point with sufficient decrease was
    /// found within the evaluation budget. `trial` is scratch space of length `n`.
    fn line_search<F: Objective>(
        &self,
        objective: &mut F,
        theta: &[f64],
        f0: f64,
        p: &[f64],
        slope0: f64,
        alpha_init: f64,
        trial: &mut [f64],
        evaluations: &mut usize,
    ) -> Result<Option<AcceptedPoint>, OptimError<F::Error>> {
        let budget = self.max_line_search_evaluations;
        let mut used = 0;
        let mut best: Option<AcceptedPoint> = None;
        let sufficient = |alpha: f64, phi: f64| phi <= f0 + self.c1 * alpha * slope0;
        let curvature_ok = |dphi: f64| dphi.abs() <= -self.c2 * slope0;
        // Phase 1: bracket an interval containing strong-Wolfe points.
        let mut a_prev = 0.0;
        let mut phi_prev = f0;
        let mut dphi_prev = slope0;
        let mut a_nonfinite = f64::INFINITY;
        let mut alpha = alpha_init;
        let bracket = loop {
            if used >= budget {
                return Ok(best);
            }
            axpy_into(trial, theta, alpha, p);
            let (phi, grad) = evaluate_checked(objective, trial, evaluations)?;
            used += 1;
            if !(phi.is_finite() && all_finite(&grad)) {
                // Inadmissible point: shrink towards the last admissible step.
                a_nonfinite = alpha;
                alpha = a_prev + 0.5 * (alpha - a_prev);
                continue;
            }
            let dphi = dot(&grad, p);
            if !sufficient(alpha, phi) || phi >= phi_prev {
                break Bracket {
                    lo: a_prev,
                    phi_lo: phi_prev,
                    dphi_lo: dphi_prev,
                    hi: alpha,
                    phi_hi: phi,
                    dphi_hi: dphi,
                };
            }
            if curvature_ok(dphi) {
                return Ok(Some(AcceptedPoint {
                    alpha,
                    value: phi,
                    gradient: grad,
                }));
            }
            if dphi >= 0.0 {
                keep_best(&mut best, alpha, phi, grad);
                break Bracket {
                    lo: alpha,
                    phi_lo: phi,
                    dphi_lo: dphi,
                    hi: a_prev,
                    phi_hi: phi_prev,
                    dphi_hi: dphi_prev,
                };
            }
            keep_best(&mut best, alpha, phi, grad);
            a_prev = alpha;
            phi_prev = phi;
            dphi_prev = dphi;
            let mut next = 4.0 * alpha;
            if a_nonfinite.is_finite() {
                next = next.min(0.5 * (alpha + a_nonfinite));
            }
            if !(next.is_finite() && next > alpha) {
                return Ok(best);
            }
            alpha = next;
        };

        // Phase 2: zoom into the bracket. `lo` always satisfies sufficient decrease and has
        // the lowest value seen among such points; `hi` is the other end.
        let Bracket {
            mut lo,
            mut phi_lo,
            mut dphi_lo,
            mut hi,
            mut phi_hi,
            mut dphi_hi,
        } = bracket;
        while used < budget {
            let width = (hi - lo).abs();
            if width <= f64::EPSILON * lo.abs().max(hi.abs()) {
                break;
            }
            let (left, right) = (lo.min(hi), lo.max(hi));
            let margin = 0.1 * width;
            let cubic = cubic_minimiser(lo, phi_lo, dphi_lo, hi, phi_hi, dphi_hi);
            let a = if cubic.is_finite() {
                cubic.clamp(left + margin, right - margin)
            } else {
                0.5 * (lo + hi)
            };
            axpy_into(trial, theta, a, p);
            let (phi, grad) = evaluate_checked(objective, trial, evaluations)?;
            used += 1;
            if !(phi.is_finite() && all_finite(&grad)) {
                hi = a;
                phi_hi = f64::INFINITY;
                dphi_hi = f64::NAN;
                continue;
            }
            let dphi = dot(&grad, p);
            if !sufficient(a, phi) || phi >= phi_lo {
                hi = a;
                phi_hi = phi;
                dphi_hi = dphi;
            } else {
                if curvature_ok(dphi) {
                    return Ok(Some(AcceptedPoint {
                        alpha: a,
                        value: phi,
                        gradient: grad,
                    }));
                }
                keep_best(&mut best, a, phi, grad);
                if dphi * (hi - lo) >= 0.0 {
                    hi = lo;
                    phi_hi = phi_lo;
                    dphi_hi = dphi_lo;
                }
                lo = a;
                phi_lo = phi;
                dphi_lo = dphi;
            }
        }
        Ok(best)
    }
}

/// Replaces `best` by the given point if it has a lower value.
fn keep_best(best: &mut Option<AcceptedPoint>, alpha: f64, value: f64, gradient: Vec<f64>) {
    if best.as_ref().is_none_or(|b| value < b.value) {
        *best = Some(AcceptedPoint {
            alpha,
            value,
            gradient,
        });
    }
}

/// A point accepted by the line search.
#[derive(Debug)]
struct AcceptedPoint {
    alpha: f64,
    value: f64,
    gradient: Vec<f64>,
}

/// Bracketing interval handed from phase 1 to the zoom phase.
#[derive(Debug, Clone, Copy)]
struct Bracket {
    lo: f64,
    phi_lo: f64,
    dphi_lo: f64,
    hi: f64,
    phi_hi: f64,
    dphi_hi: f64,
}

/// Minimiser of the cubic interpolating values and slopes at `a` and `b`
/// (Nocedal & Wright eq. 3.59). Non-finite if the cubic has no minimiser or the data are
/// not finite.
fn cubic_minimiser(a: f64, fa: f64, da: f64, b: f64, fb: f64, db: f64) -> f64 {
    let d1 = da + db - 3.0 * (fa - fb) / (a - b);
    let disc = d1 * d1 - da * db;
    if disc.is_nan() || disc < 0.0 {
        return f64::NAN;
    }
    let d2 = (b - a).signum() * disc.sqrt();
    b - (b - a) * (db + d2 - d1) / (db - da + 2.0 * d2)
}

/// Which search direction [`History::descent_direction`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// The two-loop L-BFGS direction (a descent direction).
    QuasiNewton,
    /// Steepest descent because the history is empty.
    Steepest,
    /// Steepest descent because the two-loop direction was not a finite descent direction;
    /// the history has been cleared.
    SteepestAfterReset,
}

/// `p = −g`.
fn steepest_descent(g: &[f64], p: &mut [f64]) {
    for (pi, gi) in p.iter_mut().zip(g) {
        *pi = -gi;
    }
}

/// Ring buffer of the last `m` curvature pairs `(s, y)`, preallocated.
#[derive(Debug)]
struct History {
    s: Vec<Vec<f64>>,
    y: Vec<Vec<f64>>,
    rho: Vec<f64>,
    gamma: Vec<f64>,
    alpha: Vec<f64>,
    /// Slot that the next accepted pair is written to.
    head: usize,
    len: usize,
    scratch_s: Vec<f64>,
    scratch_y: Vec<f64>,
}

impl History {
    fn new(m: usize, n: usize) -> Self {
        Self {
            s: vec![vec![0.0; n]; m],
            y: vec![vec![0.0; n]; m],
            rho: vec![0.0; m],
            gamma: vec![0.0; m],
            alpha: vec![0.0; m],
            head: 0,
            len: 0,
            scratch_s: vec![0.0; n],
            scratch_y: vec![0.0; n],
        }
    }

    fn capacity(&self) -> usize {
        self.s.len()
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    /// Slot of the `i`-th newest pair (`i = 0` is the newest).
    fn slot(&self, i: usize) -> usize {
        let m = self.capacity();
        (self.head + m - 1 - i) % m
    }

    /// Stores `s = x_new − x_old`, `y = g_new − g_old` unless `s·y ≤ eps‖s‖‖y‖` (or the pair is
    /// not finite). Returns whether the pair was stored.
    fn push(
        &mut self,
        x_old: &[f64],
        x_new: &[f64],
        g_old: &[f64],
        g_new: &[f64],
        eps: f64,
    ) -> bool {
        for i in 0..x_old.len() {
            self.scratch_s[i] = x_new[i] - x_old[i];
            self.scratch_y[i] = g_new[i] - g_old[i];
        }
        let sy = dot(&self.scratch_s, &self.scratch_y);
        let yy = dot(&self.scratch_y, &self.scratch_y);
        let threshold = eps * norm2(&self.scratch_s) * norm2(&self.scratch_y);
        if !(sy > threshold && sy.is_finite() && yy.is_finite() && yy > 0.0) {
            return false;
        }
        let slot = self.head;
        std::mem::swap(&mut self.s[slot], &mut self.scratch_s);
        std::mem::swap(&mut self.y[slot], &mut self.scratch_y);
        self.rho[slot] = 1.0 / sy;
        self.gamma[slot] = sy / yy;
        self.head = (self.head + 1) % self.capacity();
        self.len = (self.len + 1).min(self.capacity());
        true
    }

    /// Writes a descent direction for gradient `g` into `p`: the two-loop direction if it is
    /// finite and satisfies `g·p < 0`, otherwise `−g` (clearing the history in that case).
    fn descent_direction(&mut self, g: &[f64], p: &mut [f64]) -> Direction {
        if self.is_empty() {
            steepest_descent(g, p);
            return Direction::Steepest;
        }
        self.direction(g, p);
        let slope = dot(g, p);
        if slope < 0.0 && slope.is_finite() && all_finite(p) {
            Direction::QuasiNewton
        } else {
            self.clear();
            steepest_descent(g, p);
            Direction::SteepestAfterReset
        }
    }

    /// Two-loop recursion: `p = −H g` with `H₀ = γ I`, `γ = s·y / y·y` of the newest pair.
    fn direction(&mut self, g: &[f64], p: &mut [f64]) {
        p.copy_from_slice(g);
        for i in 0..self.len {
            let k = self.slot(i);
            let a = self.rho[k] * dot(&self.s[k], p);
            self.alpha[k] = a;
            for (pj, yj) in p.iter_mut().zip(&self.y[k]) {
                *pj -= a * yj;
            }
        }
        let gamma = self.gamma[self.slot(0)];
        for pj in p.iter_mut() {
            *pj *= gamma;
        }
        for i in (0..self.len).rev() {
            let k = self.slot(i);
            let b = self.rho[k] * dot(&self.y[k], p);
            let coef = self.alpha[k] - b;
            for (pj, sj) in p.iter_mut().zip(&self.s[k]) {
                *pj += coef * sj;
            }
        }
        for pj in p.iter_mut() {
            *pj = -*pj;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_loop_reproduces_exact_inverse_on_quadratic() {
        // For f = ½ xᵀ diag(1, 4) x, pairs along both axes make H exact.
        let mut h = History::new(5, 2);
        assert!(h.push(&[0.0, 0.0], &[1.0, 0.0], &[0.0, 0.0], &[1.0, 0.0], 1e-10));
        assert!(h.push(&[0.0, 0.0], &[0.0, 1.0], &[0.0, 0.0], &[0.0, 4.0], 1e-10));
        let mut p = [0.0; 2];
        h.direction(&[2.0, 8.0], &mut p);
        assert!(
            (p[0] + 2.0).abs() < 1e-12 && (p[1] + 2.0).abs() < 1e-12,
            "{p:?}"
        );
    }

    #[test]
    fn ring_buffer_keeps_newest_pairs() {
        let mut h = History::new(2, 1);
        for k in 1..=5 {
            let k = f64::from(k);
            assert!(h.push(&[0.0], &[1.0], &[0.0], &[k], 0.0));
        }
        assert_eq!(h.len, 2);
        // Newest pair has y = 5, previous y = 4.
        assert_eq!(h.y[h.slot(0)], vec![5.0]);
        assert_eq!(h.y[h.slot(1)], vec![4.0]);
    }

    #[test]
    fn negative_curvature_pairs_are_skipped() {
        let mut h = History::new(3, 2);
        // s·y < 0.
        assert!(!h.push(&[0.0, 0.0], &[1.0, 0.0], &[0.0, 0.0], &[-1.0, 0.0], 1e-10));
        // s ⟂ y: s·y = 0 ≤ ε‖s‖‖y‖.
        assert!(!h.push(&[0.0, 0.0], &[1.0, 0.0], &[0.0, 0.0], &[0.0, 1.0], 1e-10));
        // Barely positive but below the relative threshold.
        assert!(!h.push(&[0.0, 0.0], &[1.0, 0.0], &[0.0, 0.0], &[1e-6, 1.0], 1e-3));
        assert!(h.is_empty());
        assert!(h.push(&[0.0, 0.0], &[1.0, 0.0], &[0.0, 0.0], &[1.0, 1.0], 1e-3));
    }

    #[test]
    fn non_descent_direction_falls_back_to_steepest_descent() {
        // Inject an indefinite pair (s·y < 0) bypassing the curvature check, as can arise
        // numerically with noisy gradients: the two-loop direction then points uphill.
        let mut h = History::new(3, 1);
        h.s[0] = vec![1.0];
        h.y[0] = vec![-1.0];
        h.rho[0] = -1.0;
        h.gamma[0] = -1.0;
        h.head = 1;
        h.len = 1;
        let mut p = [0.0];
        h.direction(&[2.0], &mut p);
        assert!(
            2.0 * p[0] >= 0.0,
            "constructed direction must be non-descent: {p:?}"
        );

        let mut h2 = History::new(3, 1);
        h2.s = h.s.clone();
        h2.y = h.y.clone();
        h2.rho = h.rho.clone();
        h2.gamma = h.gamma.clone();
        h2.head = 1;
        h2.len = 1;
        let kind = h2.descent_direction(&[2.0], &mut p);
        assert_eq!(kind, Direction::SteepestAfterReset);
        assert_eq!(p, [-2.0]);
        assert!(h2.is_empty(), "history must be reset");

        // A non-finite direction (overflow in the two-loop recursion) is treated the same way.
        let mut h3 = History::new(3, 1);
        h3.s[0] = vec![1e300];
        h3.y[0] = vec![1.0];
        h3.rho[0] = 1e-300;
        h3.gamma[0] = 1e300;
        h3.head = 1;
        h3.len = 1;
        let kind = h3.descent_direction(&[1e300], &mut p);
        assert_eq!(kind, Direction::SteepestAfterReset);
        assert_eq!(p, [-1e300]);

        // A valid history gives the quasi-Newton direction.
        let mut h4 = History::new(3, 1);
        assert!(h4.push(&[0.0], &[1.0], &[0.0], &[2.0], 1e-10));
        assert_eq!(h4.descent_direction(&[4.0], &mut p), Direction::QuasiNewton);
        assert_eq!(p, [-2.0]);
    }

    #[test]
    fn cubic_minimiser_finds_minimum_of_a_cubic() {
        // φ(a) = (a − 1)² has φ(0)=1, φ'(0)=−2, φ(3)=4, φ'(3)=4, minimiser 1.
        let a = cubic_minimiser(0.0, 1.0, -2.0, 3.0, 4.0, 4.0);
        assert!((a - 1.0).abs() < 1e-12, "{a}");
        assert!(cubic_minimiser(0.0, 1.0, -2.0, 3.0, f64::INFINITY, f64::NAN).is_nan());
    }
}
