//! Built-in static targets with known answers, for the CLI, the tests and the docs:
//! a correlated Gaussian likelihood under a Gaussian prior (exact evidence and posterior),
//! Bayesian logistic regression, and a well-separated bimodal mixture (exact evidence and
//! mode weights).

use rand::RngExt;

use super::target::StaticTarget;
use crate::error::{Result, SmcError};
use crate::linalg::{cholesky_named, log_det_from_cholesky, solve_lower};
use crate::rng::{Purpose, StreamKey, StreamRng, standard_normal};
use crate::scalar::Scalar;

const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// `-½ |L⁻¹ r|²` for a lower-triangular `f64` factor `l` and a residual on any scalar.
fn half_mahalanobis<S: Scalar>(l: &[f64], d: usize, r: &mut [S]) -> S {
    let mut acc = S::zero();
    for i in 0..d {
        let mut s = r[i];
        for k in 0..i {
            s -= r[k] * l[i * d + k];
        }
        s /= l[i * d + i];
        r[i] = s;
        acc += s * s;
    }
    acc * -0.5
}

/// A Gaussian prior `N(0, τ² I)` and a Gaussian likelihood `N(y; x, Σ)` with the correlated
/// covariance `Σ_ij = σ² ρ^|i−j|`: the posterior is Gaussian and the evidence
/// `Z = N(y; 0, τ² I + Σ)` is exact.
///
/// ```
/// use diffsmc::samplers::{GaussianTarget, StaticTarget};
/// let t = GaussianTarget::example(3)?;
/// assert_eq!(t.dim(), 3);
/// let (m, sd) = t.posterior_mean_sd();
/// assert!(m.len() == 3 && sd.iter().all(|s| *s > 0.0 && *s < 1.0));
/// assert!(t.log_evidence().is_finite());
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianTarget {
    d: usize,
    prior_sd: f64,
    y: Vec<f64>,
    /// Cholesky factor of Σ.
    l: Vec<f64>,
    lik_const: f64,
    cov: Vec<f64>,
}

impl GaussianTarget {
    /// Prior sd `τ > 0`, likelihood sd `σ > 0`, correlation `ρ ∈ (-1, 1)`, observation `y`
    /// (its length is the dimension, ≥ 1, entries finite).
    pub fn new(prior_sd: f64, lik_sd: f64, rho: f64, y: Vec<f64>) -> Result<Self> {
        if !(prior_sd > 0.0 && prior_sd.is_finite()) {
            return Err(SmcError::invalid(
                "prior sd",
                prior_sd,
                "a finite number > 0",
            ));
        }
        if !(lik_sd > 0.0 && lik_sd.is_finite()) {
            return Err(SmcError::invalid(
                "likelihood sd",
                lik_sd,
                "a finite number > 0",
            ));
        }
        if !(rho > -1.0 && rho < 1.0) {
            return Err(SmcError::invalid(
                "correlation rho",
                rho,
                "a number in (-1, 1)",
            ));
        }
        let d = y.len();
        if d == 0 {
            return Err(SmcError::invalid("target dimension", 0, "at least 1"));
        }
        if let Some((k, v)) = y.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(SmcError::NonFinite {
                what: "observation",
                step: 0,
                component: k,
                value: *v,
            });
        }
        let mut cov = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                cov[i * d + j] = lik_sd * lik_sd * rho.powi((i as i32 - j as i32).abs());
            }
        }
        let l = cholesky_named(&cov, d, "likelihood covariance")?;
        let lik_const = -0.5 * (d as f64 * LN_2PI + log_det_from_cholesky(&l, d));
        Ok(GaussianTarget {
            d,
            prior_sd,
            y,
            l,
            lik_const,
            cov,
        })
    }

    /// The example used by the CLI and the tests: `τ = 1`, `σ = 0.3`, `ρ = 0.7`,
    /// `y_k = 1 − 0.5 k / d` (an informative likelihood: the posterior is about 3 times
    /// narrower than the prior per coordinate, and shifted).
    pub fn example(d: usize) -> Result<Self> {
        let y = (0..d).map(|k| 1.0 - 0.5 * k as f64 / d as f64).collect();
        Self::new(1.0, 0.3, 0.7, y)
    }

    /// The exact log evidence `log N(y; 0, τ² I + Σ)`.
    pub fn log_evidence(&self) -> f64 {
        let d = self.d;
        let mut c = self.cov.clone();
        for i in 0..d {
            c[i * d + i] += self.prior_sd * self.prior_sd;
        }
        let l = cholesky_named(&c, d, "evidence covariance").expect("τ²I + Σ is SPD");
        let mut r = self.y.clone();
        solve_lower(&l, d, &mut r);
        let q: f64 = r.iter().map(|v| v * v).sum();
        -0.5 * (q + d as f64 * LN_2PI + log_det_from_cholesky(&l, d))
    }

    /// The exact posterior covariance (row-major) and mean:
    /// `C = (I/τ² + Σ⁻¹)⁻¹`, `m = C Σ⁻¹ y`.
    pub fn posterior_mean_cov(&self) -> (Vec<f64>, Vec<f64>) {
        let d = self.d;
        let s = nalgebra::DMatrix::from_row_slice(d, d, &self.cov);
        let s_inv = s.try_inverse().expect("Σ is SPD");
        let prec = &s_inv + nalgebra::DMatrix::identity(d, d) / (self.prior_sd * self.prior_sd);
        let c = prec.try_inverse().expect("the posterior precision is SPD");
        let m = &c * (&s_inv * nalgebra::DVector::from_column_slice(&self.y));
        let mut cov = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                cov[i * d + j] = c[(i, j)];
            }
        }
        (m.iter().copied().collect(), cov)
    }

    /// The exact posterior means and standard deviations per coordinate.
    pub fn posterior_mean_sd(&self) -> (Vec<f64>, Vec<f64>) {
        let (m, c) = self.posterior_mean_cov();
        let sd = (0..self.d).map(|i| c[i * self.d + i].sqrt()).collect();
        (m, sd)
    }
}

impl StaticTarget for GaussianTarget {
    fn dim(&self) -> usize {
        self.d
    }
    fn log_prior<S: Scalar>(&self, x: &[S]) -> S {
        let t2 = self.prior_sd * self.prior_sd;
        let mut q = S::zero();
        for v in x {
            q += *v * *v;
        }
        q * (-0.5 / t2) - 0.5 * self.d as f64 * (LN_2PI + t2.ln())
    }
    fn log_likelihood<S: Scalar>(&self, x: &[S]) -> S {
        let mut r: Vec<S> = x.iter().zip(&self.y).map(|(a, b)| *a - *b).collect();
        half_mahalanobis(&self.l, self.d, &mut r) + self.lik_const
    }
    fn sample_prior(&self, rng: &mut StreamRng, out: &mut [f64]) {
        for o in out {
            *o = self.prior_sd * standard_normal(rng);
        }
    }
}

/// Bayesian logistic regression: `P(y_i = 1 | x) = σ(a_iᵀ x)` for the rows `a_i` of a design
/// matrix, with a Gaussian prior `N(0, s² I)` on the coefficients.
///
/// ```
/// use diffsmc::samplers::{LogisticRegression, StaticTarget};
/// let (rows, y) = LogisticRegression::simulate(100, 3, 7)?;
/// let t = LogisticRegression::new(rows, y, 2.5)?;
/// assert_eq!(t.dim(), 3);
/// assert!(t.log_likelihood(&[0.0_f64; 3]) < 0.0);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticRegression {
    d: usize,
    design: Vec<f64>,
    y: Vec<f64>,
    prior_sd: f64,
}

impl LogisticRegression {
    /// Rows of the design matrix (all of the same length ≥ 1, finite), responses in `{0, 1}`
    /// (one per row, at least one row), prior sd `s > 0`.
    pub fn new(rows: Vec<Vec<f64>>, y: Vec<f64>, prior_sd: f64) -> Result<Self> {
        if rows.is_empty() {
            return Err(SmcError::invalid("design rows", 0, "at least one row"));
        }
        if rows.len() != y.len() {
            return Err(SmcError::DimensionMismatch {
                what: "responses vs design rows",
                expected: rows.len(),
                got: y.len(),
            });
        }
        let d = rows[0].len();
        if d == 0 {
            return Err(SmcError::invalid("design columns", 0, "at least 1"));
        }
        let mut design = Vec::with_capacity(rows.len() * d);
        for (i, r) in rows.iter().enumerate() {
            if r.len() != d {
                return Err(SmcError::DimensionMismatch {
                    what: "design row length",
                    expected: d,
                    got: r.len(),
                });
            }
            if let Some((k, v)) = r.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(SmcError::NonFinite {
                    what: "design matrix entry",
                    step: i,
                    component: k,
                    value: *v,
                });
            }
            design.extend_from_slice(r);
        }
        if let Some(v) = y.iter().find(|v| **v != 0.0 && **v != 1.0) {
            return Err(SmcError::invalid("response", v, "0 or 1"));
        }
        if !(prior_sd > 0.0 && prior_sd.is_finite()) {
            return Err(SmcError::invalid(
                "prior sd",
                prior_sd,
                "a finite number > 0",
            ));
        }
        Ok(LogisticRegression {
            d,
            design,
            y,
            prior_sd,
        })
    }

    /// Simulated data from a seed: `n` rows of `d` columns, the first column 1 (intercept),
    /// the others `N(0, 1)`; true coefficients `(−0.5, 1, −1, 1.5, −1.5, …)` (alternating
    /// signs, growing magnitudes, at most 2); `y ~ Bernoulli(σ(aᵀ x))`.
    pub fn simulate(n: usize, d: usize, seed: u64) -> Result<(Vec<Vec<f64>>, Vec<f64>)> {
        if n == 0 {
            return Err(SmcError::invalid("rows", 0, "at least 1"));
        }
        if d == 0 {
            return Err(SmcError::invalid("columns", 0, "at least 1"));
        }
        let truth = Self::true_coefficients(d);
        let key = StreamKey::new(seed, 0, Purpose::Simulate);
        let mut rows = Vec::with_capacity(n);
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let mut rng = key.rng(i);
            let mut r = vec![1.0; d];
            for v in r.iter_mut().skip(1) {
                *v = standard_normal(&mut rng);
            }
            let eta: f64 = r.iter().zip(&truth).map(|(a, b)| a * b).sum();
            let p = 1.0 / (1.0 + (-eta).exp());
            let u: f64 = rng.random();
            y.push(if u < p { 1.0 } else { 0.0 });
            rows.push(r);
        }
        Ok((rows, y))
    }

    /// The coefficients [`LogisticRegression::simulate`] draws from.
    pub fn true_coefficients(d: usize) -> Vec<f64> {
        (0..d)
            .map(|k| {
                if k == 0 {
                    -0.5
                } else {
                    let m = (0.5 + 0.5 * k as f64).min(2.0);
                    if k % 2 == 1 { m } else { -m }
                }
            })
            .collect()
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.y.len()
    }
}

/// `log(1 + e^η)` without overflow, for any scalar.
fn softplus<S: Scalar>(eta: S) -> S {
    if eta.re() > 0.0 {
        eta + (-eta).exp().ln_1p()
    } else {
        eta.exp().ln_1p()
    }
}

impl StaticTarget for LogisticRegression {
    fn dim(&self) -> usize {
        self.d
    }
    fn log_prior<S: Scalar>(&self, x: &[S]) -> S {
        let s2 = self.prior_sd * self.prior_sd;
        let mut q = S::zero();
        for v in x {
            q += *v * *v;
        }
        q * (-0.5 / s2) - 0.5 * self.d as f64 * (LN_2PI + s2.ln())
    }
    fn log_likelihood<S: Scalar>(&self, x: &[S]) -> S {
        let mut acc = S::zero();
        for (row, &yi) in self.design.chunks_exact(self.d).zip(&self.y) {
            let mut eta = S::zero();
            for (a, b) in row.iter().zip(x) {
                eta += *b * *a;
            }
            acc += eta * yi - softplus(eta);
        }
        acc
    }
    fn sample_prior(&self, rng: &mut StreamRng, out: &mut [f64]) {
        for o in out {
            *o = self.prior_sd * standard_normal(rng);
        }
    }
}

/// A bimodal target: prior `N(0, τ² I)`, likelihood `w N(x; μ, s² I) + (1 − w) N(x; −μ, s² I)`.
/// Both modes are equally far from the prior mean, so the posterior is the mixture of
/// `N(±κ μ, κ s² I)` (`κ = τ² / (τ² + s²)`) with weights exactly `w` and `1 − w`, and the
/// evidence is `N(μ; 0, (τ² + s²) I)`. A particle is in the first mode when `xᵀμ > 0`.
///
/// ```
/// use diffsmc::samplers::{MixtureTarget, StaticTarget};
/// let t = MixtureTarget::example(2)?;
/// assert_eq!(t.weight(), 0.3);
/// assert!(t.in_first_mode(&[2.0, 2.0]) && !t.in_first_mode(&[-2.0, -2.0]));
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MixtureTarget {
    mu: Vec<f64>,
    weight: f64,
    sd: f64,
    prior_sd: f64,
}

impl MixtureTarget {
    /// Mode `μ` (length ≥ 1, finite, non-zero), weight `w ∈ (0, 1)` of the mode at `+μ`,
    /// component sd `s > 0`, prior sd `τ > 0`.
    pub fn new(mu: Vec<f64>, weight: f64, sd: f64, prior_sd: f64) -> Result<Self> {
        if mu.is_empty() {
            return Err(SmcError::invalid("target dimension", 0, "at least 1"));
        }
        if mu.iter().any(|v| !v.is_finite()) || mu.iter().all(|v| *v == 0.0) {
            return Err(SmcError::invalid(
                "mixture mode mu",
                format!("{mu:?}"),
                "finite and not all zero",
            ));
        }
        if !(weight > 0.0 && weight < 1.0) {
            return Err(SmcError::invalid(
                "mixture weight",
                weight,
                "a number in (0, 1)",
            ));
        }
        if !(sd > 0.0 && sd.is_finite()) {
            return Err(SmcError::invalid("component sd", sd, "a finite number > 0"));
        }
        if !(prior_sd > 0.0 && prior_sd.is_finite()) {
            return Err(SmcError::invalid(
                "prior sd",
                prior_sd,
                "a finite number > 0",
            ));
        }
        Ok(MixtureTarget {
            mu,
            weight,
            sd,
            prior_sd,
        })
    }

    /// The example: `μ = (2.5, …, 2.5)`, `w = 0.3`, `s = 0.5`, `τ = 3` in dimension `d`
    /// (modes `2·2.5·√d / 0.5 ≥ 10` component sds apart).
    pub fn example(d: usize) -> Result<Self> {
        Self::new(vec![2.5; d], 0.3, 0.5, 3.0)
    }

    /// The weight of the mode at `+μ`.
    pub fn weight(&self) -> f64 {
        self.weight
    }

    /// Whether `x` lies on the `+μ` side (`xᵀμ > 0`).
    pub fn in_first_mode(&self, x: &[f64]) -> bool {
        x.iter().zip(&self.mu).map(|(a, b)| a * b).sum::<f64>() > 0.0
    }

    /// The exact log evidence `log N(μ; 0, (τ² + s²) I)`.
    pub fn log_evidence(&self) -> f64 {
        let v = self.prior_sd * self.prior_sd + self.sd * self.sd;
        let q: f64 = self.mu.iter().map(|m| m * m).sum();
        -0.5 * (q / v + self.mu.len() as f64 * (LN_2PI + v.ln()))
    }

    /// The posterior mean and sd per coordinate (of the mixture).
    pub fn posterior_mean_sd(&self) -> (Vec<f64>, Vec<f64>) {
        let t2 = self.prior_sd * self.prior_sd;
        let kappa = t2 / (t2 + self.sd * self.sd);
        let var_c = kappa * self.sd * self.sd;
        let w = self.weight;
        let mean: Vec<f64> = self
            .mu
            .iter()
            .map(|m| (2.0 * w - 1.0) * kappa * m)
            .collect();
        let sd = self
            .mu
            .iter()
            .zip(&mean)
            .map(|(m, e)| (var_c + kappa * kappa * m * m - e * e).sqrt())
            .collect();
        (mean, sd)
    }
}

impl StaticTarget for MixtureTarget {
    fn dim(&self) -> usize {
        self.mu.len()
    }
    fn log_prior<S: Scalar>(&self, x: &[S]) -> S {
        let t2 = self.prior_sd * self.prior_sd;
        let mut q = S::zero();
        for v in x {
            q += *v * *v;
        }
        q * (-0.5 / t2) - 0.5 * self.mu.len() as f64 * (LN_2PI + t2.ln())
    }
    fn log_likelihood<S: Scalar>(&self, x: &[S]) -> S {
        let s2 = self.sd * self.sd;
        let (mut qp, mut qm) = (S::zero(), S::zero());
        for (v, m) in x.iter().zip(&self.mu) {
            let a = *v - *m;
            let b = *v + *m;
            qp += a * a;
            qm += b * b;
        }
        let c = -0.5 * self.mu.len() as f64 * (LN_2PI + s2.ln());
        let lp = qp * (-0.5 / s2) + self.weight.ln();
        let lm = qm * (-0.5 / s2) + (1.0 - self.weight).ln();
        crate::scalar::log_sum_exp(&[lp, lm]) + c
    }
    fn sample_prior(&self, rng: &mut StreamRng, out: &mut [f64]) {
        for o in out {
            *o = self.prior_sd * standard_normal(rng);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_dual::Dual64;

    /// The Gaussian evidence against a direct 1-d quadrature (trapezoid on a fine grid;
    /// error far below the 1e-6 tolerance).
    #[test]
    fn gaussian_evidence_matches_quadrature() {
        let t = GaussianTarget::new(1.0, 0.4, 0.0, vec![0.7]).unwrap();
        let (a, b, n) = (-8.0, 8.0, 200_000);
        let h = (b - a) / n as f64;
        let mut s = 0.0;
        for i in 0..=n {
            let x = [a + i as f64 * h];
            let f = (t.log_prior(&x) + t.log_likelihood(&x)).exp();
            s += if i == 0 || i == n { 0.5 * f } else { f };
        }
        assert!((t.log_evidence() - (s * h).ln()).abs() < 1e-6);
    }

    /// Mixture evidence by quadrature in 1-d, and the derivative of the logistic
    /// log-likelihood against a central difference (tolerance 1e-6: O(h²) error with h = 1e-5).
    #[test]
    fn mixture_evidence_and_logistic_derivative() {
        let t = MixtureTarget::new(vec![2.0], 0.3, 0.5, 3.0).unwrap();
        let (a, b, n) = (-20.0, 20.0, 400_000);
        let h = (b - a) / n as f64;
        let mut s = 0.0;
        for i in 0..=n {
            let x = [a + i as f64 * h];
            s += (t.log_prior(&x) + t.log_likelihood(&x)).exp();
        }
        assert!(((s * h).ln() - t.log_evidence()).abs() < 1e-6);

        let (rows, y) = LogisticRegression::simulate(50, 2, 1).unwrap();
        let lr = LogisticRegression::new(rows, y, 2.0).unwrap();
        let x = [Dual64::new(0.3, 1.0), Dual64::new(-0.2, 0.0)];
        let g = lr.log_likelihood(&x).eps;
        let e = 1e-5;
        let fd =
            (lr.log_likelihood(&[0.3 + e, -0.2]) - lr.log_likelihood(&[0.3 - e, -0.2])) / (2.0 * e);
        assert!((g - fd).abs() < 1e-6, "{g} vs {fd}");
    }

    #[test]
    fn bad_knobs_are_typed_errors() {
        assert!(GaussianTarget::new(0.0, 1.0, 0.0, vec![1.0]).is_err());
        assert!(GaussianTarget::new(1.0, 1.0, 1.0, vec![1.0]).is_err());
        assert!(GaussianTarget::new(1.0, 1.0, 0.0, vec![]).is_err());
        assert!(GaussianTarget::new(1.0, 1.0, 0.0, vec![f64::NAN]).is_err());
        assert!(LogisticRegression::new(vec![vec![1.0]], vec![2.0], 1.0).is_err());
        assert!(LogisticRegression::new(vec![vec![1.0], vec![]], vec![1.0, 0.0], 1.0).is_err());
        assert!(LogisticRegression::new(vec![], vec![], 1.0).is_err());
        assert!(MixtureTarget::new(vec![0.0], 0.5, 1.0, 1.0).is_err());
        assert!(MixtureTarget::new(vec![1.0], 1.0, 1.0, 1.0).is_err());
    }
}
