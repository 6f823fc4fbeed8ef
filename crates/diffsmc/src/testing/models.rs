//! Small models with known answers, for tests of filters, gradients and samplers.
//!
//! One AR(1) state-space model serves the crate's own unit tests (the `testing` module is
//! compiled for them whatever the features) and the workspace's test crate; doc examples keep
//! their own short copies, since a doc example must be readable on its own.

use crate::error::Result;
use crate::grad::Parametric;
use crate::model::{Bootstrap, StateSpaceModel};
use crate::rng::{StreamRng, standard_normal};
use crate::scalar::Scalar;

/// The AR(1) model `x_0 ~ N(0, 1)`, `x_t = φ x_{t−1} + √q ε_t`, `y_t = c x_t + √r η_t`
/// (`ε_t`, `η_t` standard normal) on fixed observations `ys`, with parameters `φ` and `c` in
/// the scalar `S`.
///
/// The observation log-density is `−(c x − y)² / (2r) + log_norm`: [`Ar1Model::new`] uses the
/// normalised density (`log_norm = −½ ln(2π r)`), [`Ar1Model::unit`] the unnormalised one with
/// `q = r = 1` (`log_norm = 0`: log-likelihoods are then shifted by `T · ½ ln 2π`).
/// [`kalman_log_likelihood`](Self::kalman_log_likelihood) is the exact oracle.
///
/// ```
/// use diffsmc::prelude::*;
/// use diffsmc::testing::models::Ar1Model;
///
/// let model = Ar1Model::new(0.8, 1.0, 0.5, 0.4, vec![0.3, -0.1, 0.6])?;
/// let exact = model.kalman_log_likelihood();
/// let out: SmcOutput<f64> = Smc::new(SmcConfig::new(2000)?).run(&Bootstrap(model.clone()), &Systematic, 1)?;
/// assert!((out.log_likelihood - exact).abs() < 0.1);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Ar1Model<S> {
    /// The autoregression coefficient `φ`.
    pub phi: S,
    /// The observation coefficient `c`.
    pub c: S,
    /// The transition noise variance `q`.
    pub q: f64,
    /// The observation noise variance `r`.
    pub r: f64,
    /// The constant added to every observation log-density.
    pub log_norm: f64,
    /// The observations `y_0, …, y_{T−1}`.
    pub ys: Vec<f64>,
}

impl<S: Scalar> Ar1Model<S> {
    /// The model with the normalised observation density.
    ///
    /// Errors: [`crate::SmcError::InvalidParameter`] when `q` or `r` is not a positive finite
    /// number.
    pub fn new(phi: S, c: S, q: f64, r: f64, ys: Vec<f64>) -> Result<Self> {
        for (name, v) in [("transition variance q", q), ("observation variance r", r)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(crate::SmcError::invalid(
                    name,
                    v,
                    "a positive finite number",
                ));
            }
        }
        Ok(Ar1Model {
            phi,
            c,
            q,
            r,
            log_norm: -0.5 * (2.0 * std::f64::consts::PI * r).ln(),
            ys,
        })
    }

    /// `q = r = 1` and the unnormalised observation density `−(c x − y)² / 2`.
    pub fn unit(phi: S, c: S, ys: Vec<f64>) -> Self {
        Ar1Model {
            phi,
            c,
            q: 1.0,
            r: 1.0,
            log_norm: 0.0,
            ys,
        }
    }

    /// The exact log-likelihood (Kalman filter on the value parts), including `log_norm`'s
    /// offset from the normalised density.
    pub fn kalman_log_likelihood(&self) -> f64 {
        let (phi, c) = (self.phi.re(), self.c.re());
        let (q, r) = (self.q, self.r);
        let offset = self.log_norm + 0.5 * (2.0 * std::f64::consts::PI * r).ln();
        let (mut m, mut p, mut ll) = (0.0, 1.0, 0.0);
        for (t, &y) in self.ys.iter().enumerate() {
            if t > 0 {
                (m, p) = (phi * m, phi * phi * p + q);
            }
            let s = c * c * p + r;
            ll += -0.5 * ((2.0 * std::f64::consts::PI * s).ln() + (y - c * m).powi(2) / s) + offset;
            let k = p * c / s;
            (m, p) = (m + k * (y - c * m), (1.0 - k * c) * p);
        }
        ll
    }
}

impl<S: Scalar> StateSpaceModel<S> for Ar1Model<S> {
    fn state_dim(&self) -> usize {
        1
    }
    fn n_observations(&self) -> usize {
        self.ys.len()
    }
    fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
        x[0] = S::cst(standard_normal(rng));
    }
    fn sample_transition(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) {
        x[0] = xp[0] * self.phi + self.q.sqrt() * standard_normal(rng);
    }
    fn observation_log_density(&self, t: usize, x: &[S]) -> S {
        let e = x[0] * self.c - self.ys[t];
        e * e * (-0.5 / self.r) + self.log_norm
    }
}

/// The parametrisation `θ = (φ, c)` of [`Ar1Model::unit`] on fixed observations: a
/// [`Parametric`] family for gradient tests.
///
/// ```
/// use diffsmc::grad::{GradOptions, ParticleFilterNll, gradient};
/// use diffsmc::testing::models::Ar1;
/// use diffsmc::{ResamplerSpec, SmcConfig};
///
/// let family = Ar1 { ys: vec![0.1, 0.4, -0.2] };
/// let smc = SmcConfig::new(32)?;
/// let nll = ParticleFilterNll::new(&family, &smc, &ResamplerSpec::Systematic, 1);
/// let (_, g) = gradient(&nll, &[0.5, 1.0], &GradOptions::default())?;
/// assert_eq!(g.len(), 2);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Ar1 {
    /// The observations.
    pub ys: Vec<f64>,
}

impl Parametric for Ar1 {
    type Model<S: Scalar> = Bootstrap<Ar1Model<S>>;
    fn n_params(&self) -> usize {
        2
    }
    fn model<S: Scalar>(&self, theta: &[S]) -> Result<Self::Model<S>> {
        Ok(Bootstrap(Ar1Model::unit(
            theta[0],
            theta[1],
            self.ys.clone(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Kalman oracle against a direct evaluation of the one-step case
    /// `y_0 ~ N(0, c² + r)` (round-off tolerance).
    #[test]
    fn kalman_oracle_one_step_and_offsets() {
        let m = Ar1Model::new(0.5, 2.0, 0.3, 0.7, vec![0.9]).unwrap();
        let s: f64 = 4.0 + 0.7;
        let want = -0.5 * ((2.0 * std::f64::consts::PI * s).ln() + 0.81 / s);
        assert!((m.kalman_log_likelihood() - want).abs() < 1e-14);
        let u = Ar1Model::unit(0.5, 2.0, vec![0.9, 0.1]);
        let n = Ar1Model::new(0.5, 2.0, 1.0, 1.0, vec![0.9, 0.1]).unwrap();
        let shift = (2.0 * std::f64::consts::PI).ln(); // 2 steps · ½ ln 2π
        assert!((u.kalman_log_likelihood() - n.kalman_log_likelihood() - shift).abs() < 1e-14);
        assert!(Ar1Model::new(0.5, 1.0, 0.0, 1.0, vec![]).is_err());
        assert!(Ar1Model::new(0.5, 1.0, 1.0, f64::NAN, vec![]).is_err());
    }
}
