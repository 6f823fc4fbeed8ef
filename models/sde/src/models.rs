//! The example SDEs: the Ornstein–Uhlenbeck process (exact transition density known) and the
//! double-well diffusion (no closed form), each with a parameter family for fitting.

use diffsmc::{Result, Scalar, SmcError};

use crate::path::Observations;
use crate::sde::{LN_2PI, Sde};

fn check_finite<S: Scalar>(name: &'static str, v: S) -> Result<()> {
    if !v.re().is_finite() {
        return Err(SmcError::invalid(name, v.re(), "a finite number"));
    }
    Ok(())
}

fn check_positive<S: Scalar>(name: &'static str, v: S) -> Result<()> {
    if !(v.re() > 0.0 && v.re().is_finite()) {
        return Err(SmcError::invalid(name, v.re(), "a finite number > 0"));
    }
    Ok(())
}

/// The Ornstein–Uhlenbeck process `dX = κ(μ − X) dt + σ dW` in `R^d`, the coordinates
/// independent with common parameters (d = 1 is the classic case).
///
/// Its transition density is Gaussian in closed form:
/// `X_{t+Δ} | X_t = x ~ N(μ + (x − μ) e^{−κΔ}, σ² (1 − e^{−2κΔ}) / (2κ))` per coordinate
/// (variance `σ²Δ` at κ = 0), which [`Ou::exact_log_transition`] evaluates; the `M`-step
/// Euler–Maruyama chain is linear Gaussian too ([`Ou::euler_log_transition`]), so both the
/// discretisation bias and the Monte Carlo error of the bridge estimator can be measured.
///
/// ```
/// use diffsmc_sde::Ou;
/// let ou = Ou::new(1.0_f64, 0.5, 0.3, 1)?;
/// let exact = ou.exact_log_transition(&[0.0], &[0.2], 0.5);
/// // Euler with many sub-steps approaches the exact density.
/// let euler = ou.euler_log_transition(&[0.0], &[0.2], 0.5, 4096);
/// assert!((exact - euler).abs() < 1e-3);
/// assert!(Ou::new(1.0, 0.0, -1.0, 1).is_err()); // σ must be positive
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ou<S> {
    /// Mean-reversion rate κ (any finite value; κ > 0 is stationary).
    pub kappa: S,
    /// Long-run mean μ.
    pub mu: S,
    /// Noise scale σ > 0.
    pub sigma: S,
    dim: usize,
}

impl<S: Scalar> Ou<S> {
    /// Validated: κ and μ finite, σ > 0, `dim ≥ 1`.
    pub fn new(kappa: S, mu: S, sigma: S, dim: usize) -> Result<Self> {
        check_finite("kappa", kappa)?;
        check_finite("mu", mu)?;
        check_positive("sigma", sigma)?;
        if dim == 0 {
            return Err(SmcError::invalid("dimension", dim, "at least 1"));
        }
        Ok(Ou {
            kappa,
            mu,
            sigma,
            dim,
        })
    }

    /// The state dimension.
    pub fn state_dim(&self) -> usize {
        self.dim
    }

    /// `(1 − e^{−2κΔ}) / (2κ)`, the exact variance per unit σ², stable at κΔ → 0.
    fn variance_factor(&self, dt: f64) -> S {
        let u = self.kappa * dt;
        if u.re().abs() < 1e-4 {
            // (1 − e^{−2u}) / (2u) = 1 − u + 2u²/3 − u³/3 + O(u⁴).
            (S::one() - u + u * u * (2.0 / 3.0) - u * u * u * (1.0 / 3.0)) * dt
        } else {
            -(u * -2.0).exp_m1() / (self.kappa * 2.0)
        }
    }

    /// `log p_Δ(x1 | x0)`, the exact transition log-density over a time `dt > 0`.
    pub fn exact_log_transition(&self, x0: &[f64], x1: &[f64], dt: f64) -> S {
        let decay = (self.kappa * -dt).exp();
        let var = self.sigma * self.sigma * self.variance_factor(dt);
        self.gaussian_product(x0, x1, decay, var)
    }

    /// `log p^{(M)}(x1 | x0)`: the exact transition log-density of `m` Euler–Maruyama steps of
    /// size `dt / m` — what the bridge estimator with `m` sub-steps is unbiased for (in exp
    /// scale). Per step `x ← x (1 − κδ) + κμδ + σ√δ ξ`, so after `m` steps the mean is
    /// `μ + (x0 − μ)φ^m` and the variance `σ²δ Σ_{j<m} φ^{2j}` with `φ = 1 − κδ`.
    pub fn euler_log_transition(&self, x0: &[f64], x1: &[f64], dt: f64, m: usize) -> S {
        let m = m.max(1);
        let delta = dt / m as f64;
        let phi = S::one() - self.kappa * delta;
        let phi2 = phi * phi;
        let mut sum = S::zero();
        let mut p = S::one();
        for _ in 0..m {
            sum += p;
            p *= phi2;
        }
        let decay = phi.powi(m as i32);
        let var = self.sigma * self.sigma * delta * sum;
        self.gaussian_product(x0, x1, decay, var)
    }

    fn gaussian_product(&self, x0: &[f64], x1: &[f64], decay: S, var: S) -> S {
        let mut q = S::zero();
        for (a, b) in x0.iter().zip(x1) {
            let r = self.mu + (S::cst(*a) - self.mu) * decay - *b;
            q += r * r;
        }
        let d = self.dim as f64;
        -(q / var + var.ln() * d + LN_2PI * d) * 0.5
    }

    /// The exact log-likelihood `Σ_k log p_{t_{k+1} − t_k}(y_{k+1} | y_k)` of a discretely
    /// observed path (conditional on the first observation).
    ///
    /// Errors: the observations' dimension differs from the process's.
    pub fn exact_log_likelihood(&self, obs: &Observations) -> Result<S> {
        self.check_dim(obs)?;
        let mut s = S::zero();
        for k in 0..obs.n_intervals() {
            let (dt, a, b) = obs.interval(k);
            s += self.exact_log_transition(a, b, dt);
        }
        Ok(s)
    }

    /// The log-likelihood of the path under the `m`-sub-step Euler scheme (the limit of the
    /// bridge estimate as the particle count grows, for this many sub-steps).
    pub fn euler_log_likelihood(&self, obs: &Observations, m: usize) -> Result<S> {
        self.check_dim(obs)?;
        let mut s = S::zero();
        for k in 0..obs.n_intervals() {
            let (dt, a, b) = obs.interval(k);
            s += self.euler_log_transition(a, b, dt, m);
        }
        Ok(s)
    }

    fn check_dim(&self, obs: &Observations) -> Result<()> {
        if obs.dim() != self.dim {
            return Err(SmcError::DimensionMismatch {
                what: "observations vs OU dimension",
                expected: self.dim,
                got: obs.dim(),
            });
        }
        Ok(())
    }
}

impl<S: Scalar> Sde<S> for Ou<S> {
    fn dim(&self) -> usize {
        self.dim
    }
    fn drift(&self, x: &[S], b: &mut [S]) {
        for (bi, xi) in b.iter_mut().zip(x) {
            *bi = self.kappa * (self.mu - *xi);
        }
    }
    fn diffusion(&self, _x: &[S], sigma: &mut [S]) {
        diagonal(sigma, self.dim, self.sigma);
    }
    fn diffusion_cholesky(&self, _x: &[S], l: &mut [S]) -> bool {
        diagonal(l, self.dim, self.sigma);
        true
    }
    fn is_diffusion_constant(&self) -> bool {
        true
    }
}

fn diagonal<S: Scalar>(m: &mut [S], d: usize, v: S) {
    for i in 0..d {
        for j in 0..d {
            m[i * d + j] = if i == j { v } else { S::zero() };
        }
    }
}

/// The double-well diffusion `dX = θ1 X (θ2 − X²) dt + σ dW` in one dimension: for θ1, θ2 > 0
/// the drift pushes towards the wells at `±√θ2`, separated by a barrier at 0 whose height
/// (in units of σ²) grows with θ1 θ2²; no closed-form transition density.
///
/// ```
/// use diffsmc_sde::{DoubleWell, Sde};
/// let dw = DoubleWell::new(1.0, 1.0, 0.5)?;
/// let mut b = [0.0];
/// dw.drift(&[1.0], &mut b); // a well: zero drift
/// assert_eq!(b[0], 0.0);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DoubleWell<S> {
    /// Drift strength θ1.
    pub theta1: S,
    /// Squared well position θ2.
    pub theta2: S,
    /// Noise scale σ > 0.
    pub sigma: S,
}

impl<S: Scalar> DoubleWell<S> {
    /// Validated: θ1, θ2 finite, σ > 0.
    pub fn new(theta1: S, theta2: S, sigma: S) -> Result<Self> {
        check_finite("theta1", theta1)?;
        check_finite("theta2", theta2)?;
        check_positive("sigma", sigma)?;
        Ok(DoubleWell {
            theta1,
            theta2,
            sigma,
        })
    }
}

impl<S: Scalar> Sde<S> for DoubleWell<S> {
    fn dim(&self) -> usize {
        1
    }
    fn drift(&self, x: &[S], b: &mut [S]) {
        b[0] = self.theta1 * x[0] * (self.theta2 - x[0] * x[0]);
    }
    fn diffusion(&self, _x: &[S], sigma: &mut [S]) {
        sigma[0] = self.sigma;
    }
    fn diffusion_cholesky(&self, _x: &[S], l: &mut [S]) -> bool {
        l[0] = self.sigma;
        true
    }
    fn is_diffusion_constant(&self) -> bool {
        true
    }
}

/// A family of SDEs indexed by θ ∈ R^p, buildable for any scalar type (the SDE analogue of
/// [`diffsmc::grad::Parametric`]): what [`crate::PathObjective`] differentiates.
pub trait SdeFamily: Sync {
    /// The SDE for scalar `S`.
    type Sde<S: Scalar>: Sde<S>;
    /// Number of parameters `p`.
    fn n_params(&self) -> usize;
    /// The parameters' names, in order (for output).
    fn param_names(&self) -> &'static [&'static str];
    /// Which parameters must be positive: [`crate::Parametrisation::LogPositive`] optimises
    /// their logarithms.
    fn positive(&self) -> &'static [bool];
    /// The state dimension.
    fn dim(&self) -> usize;
    /// The SDE at θ (natural parameters); an invalid θ is an error.
    fn sde<S: Scalar>(&self, theta: &[S]) -> Result<Self::Sde<S>>;
}

fn check_len(theta_len: usize, n: usize) -> Result<()> {
    if theta_len != n {
        return Err(SmcError::DimensionMismatch {
            what: "parameter vector θ",
            expected: n,
            got: theta_len,
        });
    }
    Ok(())
}

/// θ = (κ, μ, σ) of the [`Ou`] process in `dim` dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OuFamily {
    /// State dimension.
    pub dim: usize,
}

impl SdeFamily for OuFamily {
    type Sde<S: Scalar> = Ou<S>;
    fn n_params(&self) -> usize {
        3
    }
    fn param_names(&self) -> &'static [&'static str] {
        &["kappa", "mu", "sigma"]
    }
    fn positive(&self) -> &'static [bool] {
        &[false, false, true]
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn sde<S: Scalar>(&self, theta: &[S]) -> Result<Ou<S>> {
        check_len(theta.len(), 3)?;
        Ou::new(theta[0], theta[1], theta[2], self.dim)
    }
}

/// θ = (θ1, θ2, σ) of the [`DoubleWell`] diffusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DoubleWellFamily;

impl SdeFamily for DoubleWellFamily {
    type Sde<S: Scalar> = DoubleWell<S>;
    fn n_params(&self) -> usize {
        3
    }
    fn param_names(&self) -> &'static [&'static str] {
        &["theta1", "theta2", "sigma"]
    }
    fn positive(&self) -> &'static [bool] {
        &[false, false, true]
    }
    fn dim(&self) -> usize {
        1
    }
    fn sde<S: Scalar>(&self, theta: &[S]) -> Result<DoubleWell<S>> {
        check_len(theta.len(), 3)?;
        DoubleWell::new(theta[0], theta[1], theta[2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_dual::{Dual64, DualStruct};

    #[test]
    fn exact_density_matches_closed_form_and_small_kappa_limit() {
        let ou = Ou::new(0.7, 0.2, 0.4, 1).unwrap();
        let (x0, x1, dt) = (0.5, -0.1, 0.8);
        let m = 0.2 + (x0 - 0.2) * (-0.7_f64 * dt).exp();
        let v = 0.16 * (1.0 - (-1.4_f64 * dt).exp()) / 1.4;
        let expect = -0.5 * ((x1 - m) * (x1 - m) / v + v.ln() + LN_2PI);
        assert!((ou.exact_log_transition(&[x0], &[x1], dt) - expect).abs() < 1e-13);
        // κ → 0: Brownian motion, continuous across the series switch at |κΔ| = 1e-4.
        let bm = Ou::new(0.0, 0.0, 0.4, 1).unwrap();
        let expect = -0.5 * ((x1 - x0) * (x1 - x0) / (0.16 * dt) + (0.16 * dt).ln() + LN_2PI);
        assert!((bm.exact_log_transition(&[x0], &[x1], dt) - expect).abs() < 1e-13);
        for k in [0.99e-4 / dt, 1.01e-4 / dt, -0.99e-4 / dt, -1.01e-4 / dt] {
            let a = Ou::new(k, 0.0, 0.4, 1).unwrap();
            let e = a.exact_log_transition(&[x0], &[x1], dt);
            let b = bm.exact_log_transition(&[x0], &[x1], dt);
            assert!((e - b).abs() < 1e-3, "{k}: {e} vs {b}");
        }
        // The derivative in κ at κ = 0 from the series equals a central difference.
        let d = Ou::new(
            Dual64::new(0.0, 1.0),
            Dual64::from(0.0),
            Dual64::from(0.4),
            1,
        )
        .unwrap()
        .exact_log_transition(&[x0], &[x1], dt);
        let h = 1e-6;
        let fp = Ou::new(h, 0.0, 0.4, 1)
            .unwrap()
            .exact_log_transition(&[x0], &[x1], dt);
        let fm = Ou::new(-h, 0.0, 0.4, 1)
            .unwrap()
            .exact_log_transition(&[x0], &[x1], dt);
        assert!((d.eps - (fp - fm) / (2.0 * h)).abs() < 1e-6);
        assert!((d.re() - expect).abs() < 1e-13);
    }

    #[test]
    fn euler_density_one_step_is_the_euler_gaussian() {
        let ou = Ou::new(1.3, -0.2, 0.6, 2).unwrap();
        let (x0, x1, dt): ([f64; 2], [f64; 2], f64) = ([0.4, -1.0], [0.1, -0.5], 0.3);
        let mut e = 0.0;
        for i in 0..2 {
            let m = x0[i] + 1.3 * (-0.2 - x0[i]) * dt;
            let v = 0.36 * dt;
            e += -0.5 * ((x1[i] - m) * (x1[i] - m) / v + v.ln() + LN_2PI);
        }
        assert!((ou.euler_log_transition(&x0, &x1, dt, 1) - e).abs() < 1e-13);
        // And converges to the exact density as the step shrinks (error O(δ)).
        let ex = ou.exact_log_transition(&x0, &x1, dt);
        let e8 = (ou.euler_log_transition(&x0, &x1, dt, 8) - ex).abs();
        let e64 = (ou.euler_log_transition(&x0, &x1, dt, 64) - ex).abs();
        assert!(e64 < e8 / 4.0, "{e8} {e64}");
    }

    #[test]
    fn constructors_validate() {
        assert!(Ou::new(f64::NAN, 0.0, 1.0, 1).is_err());
        assert!(Ou::new(1.0, 0.0, 0.0, 1).is_err());
        assert!(Ou::new(1.0, 0.0, 1.0, 0).is_err());
        assert!(DoubleWell::new(1.0, 1.0, -0.1).is_err());
        assert!(DoubleWell::new(1.0, f64::INFINITY, 0.1).is_err());
        assert!(OuFamily { dim: 1 }.sde(&[1.0, 0.0]).is_err());
        assert!(DoubleWellFamily.sde(&[1.0, 1.0, 0.5]).is_ok());
    }
}
