//! The stochastic Lotka–Volterra SDE, its Milstein and Euler–Maruyama steps, and the
//! observation rates.

use diffsmc::{Result, Scalar, SmcError};

use crate::{ALPHA, BETA, GAMMA, SIGMA, ZETA};

/// Parameters of `dC = C(α − βR)dt + σC dW₁`, `dR = R(ζC − γ)dt + σR dW₂`, of any scalar
/// type (so the known-dynamics filter can be differentiated in them).
///
/// ```
/// use diffsmc_lotka_volterra::LvParams;
/// let p = LvParams::paper();
/// assert_eq!((p.alpha, p.beta, p.zeta, p.gamma, p.sigma), (6.0, 2.0, 4.0, 6.0, 0.15));
/// // The coexistence equilibrium (γ/ζ, α/β).
/// assert_eq!(p.equilibrium(), [1.5, 3.0]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LvParams<S> {
    /// Prey growth rate α.
    pub alpha: S,
    /// Predation rate β.
    pub beta: S,
    /// Predator growth per prey ζ.
    pub zeta: S,
    /// Predator death rate γ.
    pub gamma: S,
    /// Multiplicative noise level σ.
    pub sigma: S,
}

impl LvParams<f64> {
    /// The reference experiment: α = γ = 6, β = 2, ζ = 4, σ = 0.15.
    pub const fn paper() -> Self {
        LvParams {
            alpha: ALPHA,
            beta: BETA,
            zeta: ZETA,
            gamma: GAMMA,
            sigma: SIGMA,
        }
    }

    /// The same parameters as constants of scalar type `S`.
    pub fn cast<S: Scalar>(&self) -> LvParams<S> {
        LvParams {
            alpha: S::cst(self.alpha),
            beta: S::cst(self.beta),
            zeta: S::cst(self.zeta),
            gamma: S::cst(self.gamma),
            sigma: S::cst(self.sigma),
        }
    }

    /// The coexistence equilibrium `(γ/ζ, α/β)` of the drift.
    pub fn equilibrium(&self) -> [f64; 2] {
        [self.gamma / self.zeta, self.alpha / self.beta]
    }

    /// Checks that every parameter is finite.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("alpha", self.alpha),
            ("beta", self.beta),
            ("zeta", self.zeta),
            ("gamma", self.gamma),
            ("sigma", self.sigma),
        ] {
            if !v.is_finite() {
                return Err(SmcError::invalid(name, v, "a finite number"));
            }
        }
        Ok(())
    }
}

impl Default for LvParams<f64> {
    fn default() -> Self {
        Self::paper()
    }
}

impl<S: Scalar> LvParams<S> {
    /// The drift `(C(α − βR), R(ζC − γ))`.
    #[inline]
    pub fn drift(&self, x: &[S]) -> [S; 2] {
        let (c, r) = (x[0], x[1]);
        [
            c * (self.alpha - self.beta * r),
            r * (self.zeta * c - self.gamma),
        ]
    }

    /// One Milstein step of size `dt` with Brownian increments `dw ~ N(0, dt I₂)`:
    /// per component `x' = x + b(x) dt + σ x dW + ½ σ² x (dW² − dt)` (the diffusion `σx` is
    /// diagonal, so there are no Lévy areas).
    ///
    /// ```
    /// use diffsmc_lotka_volterra::LvParams;
    /// let p = LvParams::paper();
    /// let mut x = [0.0; 2];
    /// p.milstein_step(&[2.0, 5.0], [0.0, 0.0], 0.01, &mut x);
    /// // Zero noise: Euler drift plus the −½σ²x dt correction.
    /// let c = 2.0 + 2.0 * (6.0 - 2.0 * 5.0) * 0.01 - 0.5 * 0.0225 * 2.0 * 0.01;
    /// assert!((x[0] - c).abs() < 1e-15);
    /// ```
    #[inline]
    pub fn milstein_step(&self, x: &[S], dw: [f64; 2], dt: f64, out: &mut [S]) {
        let b = self.drift(x);
        let half_s2 = self.sigma * self.sigma * 0.5;
        for k in 0..2 {
            let noise = self.sigma * dw[k] + half_s2 * (dw[k] * dw[k] - dt);
            out[k] = x[k] + b[k] * dt + x[k] * noise;
        }
    }

    /// One Euler–Maruyama step: `x' = x + b(x) dt + σ x dW` per component.
    #[inline]
    pub fn euler_maruyama_step(&self, x: &[S], dw: [f64; 2], dt: f64, out: &mut [S]) {
        let b = self.drift(x);
        for k in 0..2 {
            out[k] = x[k] + b[k] * dt + x[k] * self.sigma * dw[k];
        }
    }
}

/// The observation rates `λ(c, r) = 5 / (1 + exp((−5c + 4, −c·r + 4)))` in `f64`.
///
/// ```
/// let l = diffsmc_lotka_volterra::rates(&[0.8, 5.0]);
/// assert_eq!(l, [2.5, 2.5]);
/// ```
#[inline]
pub fn rates(x: &[f64]) -> [f64; 2] {
    let z = logits(x);
    z.map(|z| crate::RATE_SCALE / (1.0 + z.exp()))
}

/// The logits `z = (−5c + 4, −c·r + 4)` of the rates, `λ = 5 / (1 + e^z)`.
#[inline]
pub fn logits<S: Scalar>(x: &[S]) -> [S; 2] {
    let (c, r) = (x[0], x[1]);
    [c * -5.0 + 4.0, -(c * r) + 4.0]
}
