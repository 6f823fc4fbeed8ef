//! Dual-number gradients against central finite differences of the same seeded estimator.

use std::fmt;

use super::CheckReport;
use crate::error::{Result, SmcError};
use crate::grad::{Differentiable, GradOptions, gradient, value};

/// Tolerances of [`check_gradient`]: parameter `i` passes when
/// `|g_i − fd_i| ≤ abs + rel · max(|g_i|, |fd_i|) + roundoff`, where
/// `roundoff = 1000 · ε · max_k |f(θ + k h_i e_i)| / (h_i / 2)` (over the evaluated points
/// `k ∈ {0, ±½, ±1}`; 4× that for a one-sided difference) bounds the cancellation error of
/// a finite difference of a long sum of rounded terms (ε the machine epsilon).
///
/// The defaults (`abs = 1e-6`, `rel = 1e-4`) are loose enough for the truncation error of a
/// central difference with `h ≈ 1e-5` on a smooth estimator (`O(h²)` relative) and tight enough
/// that a gradient wrong by more than about 0.01 % fails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradientTolerance {
    /// Absolute tolerance.
    pub abs: f64,
    /// Relative tolerance.
    pub rel: f64,
}

impl Default for GradientTolerance {
    fn default() -> Self {
        GradientTolerance {
            abs: 1e-6,
            rel: 1e-4,
        }
    }
}

/// Which finite difference a parameter's reference value came from.
///
/// For a fixed seed the estimator is smooth in θ except where an index resampler switches an
/// ancestor: there it jumps. [`check_gradient`] evaluates it at `θ ± h/2` and `θ ± h` and uses
/// the central difference when the two central differences agree; otherwise a jump lies within
/// `±h` and it uses the second-order one-sided difference on the side whose second difference
/// shows no jump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FdScheme {
    /// `(f(θ + h/2) − f(θ − h/2)) / h`: the estimator is smooth on `[θ − h, θ + h]`.
    Central,
    /// `(−3 f(θ) + 4 f(θ + h/2) − f(θ + h)) / h`: a jump on the left.
    Right,
    /// `(3 f(θ) − 4 f(θ − h/2) + f(θ − h)) / h`: a jump on the right.
    Left,
    /// Jumps on both sides (or no smooth side): no reliable reference; the parameter does not
    /// pass. Use a differentiable resampler, `Trigger::Never`, or a smaller `h`.
    Discontinuous,
}

impl FdScheme {
    fn label(self) -> &'static str {
        match self {
            FdScheme::Central => "central",
            FdScheme::Right => "right",
            FdScheme::Left => "left",
            FdScheme::Discontinuous => "JUMPS",
        }
    }
}

/// What [`check_gradient`] found: per parameter the dual gradient, the finite difference and
/// their absolute and relative errors.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GradientReport {
    /// The point θ.
    pub theta: Vec<f64>,
    /// The finite-difference step of each parameter, `h · max(1, |θ_i|)`.
    pub steps: Vec<f64>,
    /// The negative log-likelihood estimate at θ from the dual run.
    pub value: f64,
    /// The same estimate from the `f64` run (should agree with `value` to rounding).
    pub value_f64: f64,
    /// `∇(−log p̂)(θ)` by dual numbers.
    pub dual: Vec<f64>,
    /// The finite-difference derivative on `f64`, same seed (see [`FdScheme`]).
    pub finite_difference: Vec<f64>,
    /// Which difference each `finite_difference` is.
    pub scheme: Vec<FdScheme>,
    /// `|dual_i − fd_i|`.
    pub abs_error: Vec<f64>,
    /// `|dual_i − fd_i| / max(|dual_i|, |fd_i|)` (0 when both are 0).
    pub rel_error: Vec<f64>,
    /// The cancellation-error allowance of each finite difference (see [`GradientTolerance`]).
    pub roundoff: Vec<f64>,
    /// The largest absolute error allowed for each parameter (see [`GradientTolerance`]).
    pub allowed: Vec<f64>,
    /// The tolerances used.
    pub tolerance: GradientTolerance,
}

impl GradientReport {
    /// Whether parameter `i` passed (a reference was found and the error is within bounds).
    pub fn param_passed(&self, i: usize) -> bool {
        self.scheme[i] != FdScheme::Discontinuous && self.abs_error[i] <= self.allowed[i]
    }

    /// Whether some parameter had no smooth finite-difference reference (jumps on both sides):
    /// the check could not decide for it.
    pub fn inconclusive(&self) -> bool {
        self.scheme.contains(&FdScheme::Discontinuous)
    }

    /// Whether the values of the dual and `f64` runs agree (relative `1e-8`): when they do
    /// not, the model computes something different on dual numbers.
    pub fn values_agree(&self) -> bool {
        (self.value - self.value_f64).abs() <= 1e-8 * self.value_f64.abs().max(1.0)
    }

    /// Every parameter within tolerance, every number finite, values agree.
    pub fn passed(&self) -> bool {
        self.values_agree() && (0..self.dual.len()).all(|i| self.param_passed(i))
    }

    /// The parameters that failed.
    pub fn failures(&self) -> Vec<usize> {
        (0..self.dual.len())
            .filter(|&i| !self.param_passed(i))
            .collect()
    }

    /// The same comparison judged with other tolerances.
    pub fn with_tolerance(mut self, tolerance: GradientTolerance) -> Self {
        self.tolerance = tolerance;
        self.allowed = allowed(
            &self.dual,
            &self.finite_difference,
            &self.roundoff,
            tolerance,
        );
        self
    }
}

fn allowed(dual: &[f64], fd: &[f64], roundoff: &[f64], tol: GradientTolerance) -> Vec<f64> {
    dual.iter()
        .zip(fd)
        .zip(roundoff)
        .map(|((g, f), r)| tol.abs + tol.rel * g.abs().max(f.abs()) + r)
        .collect()
}

impl CheckReport for GradientReport {
    fn passed(&self) -> bool {
        GradientReport::passed(self)
    }
}

impl fmt::Display for GradientReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failed = self.failures();
        if self.passed() {
            writeln!(
                f,
                "gradient check passed: {} parameters, dual gradient = finite differences of the seeded estimator",
                self.dual.len()
            )?;
        } else {
            writeln!(
                f,
                "gradient check FAILED: {} of {} parameters off{}",
                failed.len(),
                self.dual.len(),
                if self.values_agree() {
                    String::new()
                } else {
                    format!(
                        "; the dual run's value {} differs from the f64 run's {} (the model \
                         computes something else on dual numbers)",
                        self.value, self.value_f64
                    )
                }
            )?;
        }
        writeln!(
            f,
            "  −log p̂ = {:.10} (dual run), {:.10} (f64 run); tolerance abs {:e} + rel {:e} + round-off",
            self.value, self.value_f64, self.tolerance.abs, self.tolerance.rel
        )?;
        writeln!(
            f,
            "  {:>6} {:>12} {:>10} {:>16} {:>16} {:>8} {:>10} {:>10} {:>10}",
            "param", "θ", "h", "dual", "finite diff", "fd", "abs err", "rel err", "allowed"
        )?;
        for i in 0..self.dual.len() {
            writeln!(
                f,
                "  {:>6} {:>12.6} {:>10.1e} {:>16.8e} {:>16.8e} {:>8} {:>10.2e} {:>10.2e} {:>10.2e}{}",
                format!("θ[{i}]"),
                self.theta[i],
                self.steps[i],
                self.dual[i],
                self.finite_difference[i],
                self.scheme[i].label(),
                self.abs_error[i],
                self.rel_error[i],
                self.allowed[i],
                if self.param_passed(i) {
                    ""
                } else {
                    "  <- FAIL"
                }
            )?;
        }
        if self.inconclusive() {
            writeln!(
                f,
                "  JUMPS: the seeded estimator jumps on both sides within ±h (an index resampler \
                 switched ancestors); check with a differentiable resampler, Trigger::Never, or \
                 a smaller h"
            )?;
        }
        Ok(())
    }
}

/// Checks the dual-number gradient of a model's negative log-likelihood estimate against
/// finite differences **of the same seeded estimator** (common random numbers), with step
/// `h_i = h · max(1, |θ_i|)` per parameter and [`GradientTolerance::default`]: four `f64`
/// runs per parameter, at `θ ± h_i/2` and `θ ± h_i`.
///
/// For a fixed seed the estimator is a smooth function of θ without resampling or with a
/// differentiable resampler (diffusion), and only piecewise smooth with index resamplers: an
/// ancestor switches when θ moves a resampling threshold across a uniform, and the estimator
/// jumps. The chance of a jump within `±h` grows like `h · N² · T`, so with index resamplers
/// and many particles or steps jumps near θ are common. The check detects them
/// ([`FdScheme`]), differentiates on the smooth side, and says when there is none. To check
/// a *model's* derivatives, prefer `Trigger::Never` or a diffusion resampler: the model code
/// is the same, and the estimator is smooth.
///
/// The dual gradient must match the smooth finite difference. A mismatch means the model
/// loses or distorts derivatives somewhere: an `S::cst(x.re())` that cuts a dependence on θ,
/// a hand-written derivative, a branch on a parameter.
///
/// Stop-gradient resampling ([`ResamplerSpec::StopGradient`](crate::ResamplerSpec)) is the
/// exception by design: its dual gradient adds the score of the resampling choice, an
/// unbiased estimate of the likelihood's gradient that is *not* the derivative of the seeded
/// estimator, so this check fails for it whenever the filter resamples.
///
/// `h` around `1e-5` balances truncation (`O(h²)`) and cancellation (`O(ε |f| / h)`).
/// Re-judge with other tolerances with [`GradientReport::with_tolerance`].
///
/// Errors: an invalid `h`, and anything [`gradient`] or [`value`] reports (wrong length of
/// θ, non-finite θ, model or filter errors).
///
/// ```
/// use diffsmc::grad::{Parametric, ParticleFilterNll};
/// use diffsmc::prelude::*;
/// use diffsmc::testing::check_gradient;
///
/// /// x_t = θ0 x_{t-1} + N(0, 1), y_t ~ N(θ1 x_t, 1).
/// struct Ar1 { ys: Vec<f64> }
/// struct Ar1Model<S> { phi: S, c: S, ys: Vec<f64> }
///
/// impl<S: Scalar> StateSpaceModel<S> for Ar1Model<S> {
///     fn state_dim(&self) -> usize { 1 }
///     fn n_observations(&self) -> usize { self.ys.len() }
///     fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
///         x[0] = S::cst(standard_normal(rng));
///     }
///     fn sample_transition(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) {
///         x[0] = xp[0] * self.phi + standard_normal(rng);
///     }
///     fn observation_log_density(&self, t: usize, x: &[S]) -> S {
///         let r = x[0] * self.c - self.ys[t];
///         r * r * -0.5
///     }
/// }
///
/// impl Parametric for Ar1 {
///     type Model<S: Scalar> = Bootstrap<Ar1Model<S>>;
///     fn n_params(&self) -> usize { 2 }
///     fn model<S: Scalar>(&self, theta: &[S]) -> Result<Self::Model<S>> {
///         Ok(Bootstrap(Ar1Model { phi: theta[0], c: theta[1], ys: self.ys.clone() }))
///     }
/// }
///
/// let family = Ar1 { ys: (0..30).map(|t| (0.3 * t as f64).sin()).collect() };
/// let smc = SmcConfig::new(64)?;
/// let spec: ResamplerSpec = "diffusion:K=4".parse()?;
/// let nll = ParticleFilterNll::new(&family, &smc, &spec, 7);
/// let report = check_gradient(&nll, &[0.6, 1.1], 1e-5)?;
/// assert!(report.passed(), "{report}");
/// println!("{report}");
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
pub fn check_gradient<F: Differentiable + ?Sized>(
    f: &F,
    theta: &[f64],
    h: f64,
) -> Result<GradientReport> {
    if !(h > 0.0 && h.is_finite()) {
        return Err(SmcError::invalid(
            "finite-difference step h",
            h,
            "a finite number > 0",
        ));
    }
    let (v, g) = gradient(f, theta, &GradOptions::default())?;
    let v64 = value(f, theta)?;
    let tolerance = GradientTolerance::default();
    let n = theta.len();
    let mut steps = Vec::with_capacity(n);
    let mut fd = Vec::with_capacity(n);
    let mut scheme = Vec::with_capacity(n);
    let mut roundoff = Vec::with_capacity(n);
    for i in 0..n {
        let hi = h * theta[i].abs().max(1.0);
        let at = |k: f64| -> Result<f64> {
            let mut t = theta.to_vec();
            t[i] += k * hi;
            value(f, &t)
        };
        let (fm2, fm1, fp1, fp2) = (at(-1.0)?, at(-0.5)?, at(0.5)?, at(1.0)?);
        let f0 = v64;
        let big = [fm2, fm1, f0, fp1, fp2]
            .iter()
            .fold(0.0f64, |m, x| m.max(x.abs()));
        // Cancellation error of one difference quotient with step h/2 (see GradientTolerance).
        let r = 1000.0 * f64::EPSILON * big / (0.5 * hi);
        let central_h = (fp2 - fm2) / (2.0 * hi);
        let central_half = (fp1 - fm1) / hi;
        // Smooth: the two central differences agree to well within the tolerance (they differ
        // by O(h²) on a smooth function, by about J/h across a jump J).
        let scale = central_h.abs().max(central_half.abs());
        let smooth_tol = 0.1 * (tolerance.abs + tolerance.rel * scale) + 2.0 * r;
        let (d, sch) = if (central_h - central_half).abs() <= smooth_tol {
            (central_half, FdScheme::Central)
        } else {
            // Second differences: O(f'' h²) on a smooth side, about the jump on the other.
            let right = (fp2 - 2.0 * fp1 + f0).abs();
            let left = (fm2 - 2.0 * fm1 + f0).abs();
            if right <= 0.01 * left {
                ((-3.0 * f0 + 4.0 * fp1 - fp2) / hi, FdScheme::Right)
            } else if left <= 0.01 * right {
                ((3.0 * f0 - 4.0 * fm1 + fm2) / hi, FdScheme::Left)
            } else {
                (central_half, FdScheme::Discontinuous)
            }
        };
        steps.push(hi);
        fd.push(d);
        scheme.push(sch);
        roundoff.push(if sch == FdScheme::Central { r } else { 4.0 * r });
    }
    let abs_error: Vec<f64> = g.iter().zip(&fd).map(|(a, b)| (a - b).abs()).collect();
    let rel_error = g
        .iter()
        .zip(&fd)
        .zip(&abs_error)
        .map(|((a, b), e)| {
            let s = a.abs().max(b.abs());
            if s == 0.0 { 0.0 } else { e / s }
        })
        .collect();
    // NaN errors never pass: `allowed` is compared with `<=`.
    let allowed = allowed(&g, &fd, &roundoff, tolerance);
    Ok(GradientReport {
        theta: theta.to_vec(),
        steps,
        value: v,
        value_f64: v64,
        dual: g,
        finite_difference: fd,
        scheme,
        abs_error,
        rel_error,
        roundoff,
        allowed,
        tolerance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grad::{Parametric, ParticleFilterNll};
    use crate::model::Bootstrap;
    use crate::resample::ResamplerSpec;
    use crate::scalar::Scalar;
    use crate::smc::{SmcConfig, Trigger};
    use crate::testing::models::Ar1Model;

    /// How the test model distorts derivatives.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Bug {
        None,
        /// φ's derivative part doubled (value unchanged): a gradient wrong by a factor 2.
        DoubledDerivative,
        /// The observation coefficient enters as a constant (`S::cst(c.re())`): its derivative
        /// is lost.
        DroppedDerivative,
        /// The model computes a different value on duals than on f64.
        DifferentOnDuals,
    }

    struct Ar1 {
        ys: Vec<f64>,
        bug: Bug,
    }
    impl Parametric for Ar1 {
        type Model<S: Scalar> = Bootstrap<Ar1Model<S>>;
        fn n_params(&self) -> usize {
            2
        }
        fn model<S: Scalar>(&self, theta: &[S]) -> Result<Self::Model<S>> {
            let (mut phi, mut c) = (theta[0], theta[1]);
            match self.bug {
                Bug::None => {}
                Bug::DoubledDerivative => phi = S::cst(phi.re()) + (phi - phi.re()) * 2.0,
                Bug::DroppedDerivative => c = S::cst(c.re()),
                Bug::DifferentOnDuals => {
                    // On f64 the derivative part is empty, so this detects duals.
                    if std::mem::size_of::<S>() != std::mem::size_of::<f64>() {
                        c += 1e-3;
                    }
                }
            }
            Ok(Bootstrap(Ar1Model::unit(phi, c, self.ys.clone())))
        }
    }

    fn family(bug: Bug) -> Ar1 {
        Ar1 {
            ys: (0..25).map(|t| (0.4 * t as f64).sin() * 1.5).collect(),
            bug,
        }
    }

    fn specs() -> Vec<ResamplerSpec> {
        vec![
            ResamplerSpec::Systematic,
            "diffusion:K=4".parse().unwrap(),
            ResamplerSpec::Multinomial,
        ]
    }

    #[test]
    fn correct_model_passes_with_and_without_resampling() {
        let fam = family(Bug::None);
        let theta = [0.7, 0.9];
        for trigger in [Trigger::Never, Trigger::Always] {
            let smc = SmcConfig::new(48).unwrap().with_trigger(trigger).unwrap();
            for spec in specs() {
                let r = check_gradient(&ParticleFilterNll::new(&fam, &smc, &spec, 5), &theta, 1e-5)
                    .unwrap();
                assert!(r.passed(), "{spec} {trigger:?}:\n{r}");
                assert!(r.rel_error.iter().all(|e| *e < 1e-5), "{r}");
            }
        }
    }

    /// With an index resampler the seeded estimator jumps where an ancestor switches. Over 40
    /// seeds (N = 48, 25 steps, resampling at every step) some parameters see a jump within
    /// ±h: the check must then use the smooth side (and still pass for the correct model and
    /// fail for the broken one), never report a spurious mismatch.
    #[test]
    fn jumps_of_index_resamplers_are_sidestepped() {
        let good = family(Bug::None);
        let bad = family(Bug::DoubledDerivative);
        let smc = SmcConfig::new(48).unwrap();
        let mut one_sided = 0;
        for seed in 0..40 {
            let r = check_gradient(
                &ParticleFilterNll::new(&good, &smc, &ResamplerSpec::Systematic, seed),
                &[0.7, 0.9],
                1e-5,
            )
            .unwrap();
            one_sided += r
                .scheme
                .iter()
                .filter(|s| matches!(s, FdScheme::Left | FdScheme::Right))
                .count();
            assert!(r.passed() || r.inconclusive(), "seed {seed}:\n{r}");
            let b = check_gradient(
                &ParticleFilterNll::new(&bad, &smc, &ResamplerSpec::Systematic, seed),
                &[0.7, 0.9],
                1e-5,
            )
            .unwrap();
            assert!(!b.passed(), "seed {seed}:\n{b}");
            if b.scheme[0] != FdScheme::Discontinuous {
                assert_eq!(b.failures(), vec![0], "seed {seed}:\n{b}");
            }
        }
        assert!(
            one_sided > 0,
            "no jump met: the one-sided branch is untested"
        );
    }

    #[test]
    fn gradient_wrong_by_a_factor_fails() {
        let fam = family(Bug::DoubledDerivative);
        let smc = SmcConfig::new(48).unwrap();
        for spec in specs() {
            let r = check_gradient(
                &ParticleFilterNll::new(&fam, &smc, &spec, 5),
                &[0.7, 0.9],
                1e-5,
            )
            .unwrap();
            assert!(!r.passed(), "{spec}:\n{r}");
            assert_eq!(r.failures(), vec![0], "{r}");
            // dual ≈ 2 × (the derivative through φ) : far from the finite difference.
            assert!(r.rel_error[0] > 0.1, "{r}");
            let text = r.to_string();
            assert!(
                text.contains("FAILED") && text.contains("<- FAIL"),
                "{text}"
            );
        }
    }

    /// Stop-gradient resampling adds the score of the resampling choice to the dual gradient on
    /// purpose, so its gradient is not the derivative of the seeded estimator: the check says
    /// so (and passes when the filter never resamples).
    #[test]
    fn stop_gradient_is_not_pathwise() {
        let fam = family(Bug::None);
        let always = SmcConfig::new(48).unwrap();
        let r = check_gradient(
            &ParticleFilterNll::new(&fam, &always, &ResamplerSpec::StopGradient, 5),
            &[0.7, 0.9],
            1e-5,
        )
        .unwrap();
        assert!(!r.passed(), "{r}");
        let never = always.with_trigger(Trigger::Never).unwrap();
        let r = check_gradient(
            &ParticleFilterNll::new(&fam, &never, &ResamplerSpec::StopGradient, 5),
            &[0.7, 0.9],
            1e-5,
        )
        .unwrap();
        assert!(r.passed(), "{r}");
    }

    #[test]
    fn dropped_derivative_fails() {
        let fam = family(Bug::DroppedDerivative);
        let smc = SmcConfig::new(48).unwrap();
        let r = check_gradient(
            &ParticleFilterNll::new(&fam, &smc, &ResamplerSpec::Systematic, 5),
            &[0.7, 0.9],
            1e-5,
        )
        .unwrap();
        assert!(!r.passed(), "{r}");
        assert_eq!(r.dual[1], 0.0);
        assert_eq!(r.failures(), vec![1], "{r}");
    }

    #[test]
    fn different_value_on_duals_fails() {
        let fam = family(Bug::DifferentOnDuals);
        let smc = SmcConfig::new(32).unwrap();
        let r = check_gradient(
            &ParticleFilterNll::new(&fam, &smc, &ResamplerSpec::Systematic, 5),
            &[0.7, 0.9],
            1e-5,
        )
        .unwrap();
        assert!(!r.values_agree() && !r.passed(), "{r}");
        assert!(r.to_string().contains("differs from the f64 run"));
    }

    #[test]
    fn tolerance_can_be_rejudged_and_bad_inputs_are_errors() {
        let fam = family(Bug::DoubledDerivative);
        let smc = SmcConfig::new(16).unwrap();
        let r = check_gradient(
            &ParticleFilterNll::new(&fam, &smc, &ResamplerSpec::Systematic, 1),
            &[0.7, 0.9],
            1e-5,
        )
        .unwrap();
        assert!(!r.passed());
        let loose = r
            .clone()
            .with_tolerance(GradientTolerance { abs: 1e9, rel: 0.0 });
        assert!(loose.passed(), "{loose}");
        let back = loose.with_tolerance(GradientTolerance::default());
        assert_eq!(back.allowed, r.allowed);
        for h in [0.0, -1.0, f64::NAN] {
            assert!(
                check_gradient(
                    &ParticleFilterNll::new(&fam, &smc, &ResamplerSpec::Systematic, 1),
                    &[0.7, 0.9],
                    h
                )
                .is_err()
            );
        }
        assert!(
            check_gradient(
                &ParticleFilterNll::new(&fam, &smc, &ResamplerSpec::Systematic, 1),
                &[0.7],
                1e-5
            )
            .is_err()
        );
    }
}
