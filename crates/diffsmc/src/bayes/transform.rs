//! Transforms from an unconstrained `φ ∈ R^p` to the parameters θ, so that samplers move in
//! `R^p` whatever the support: identity on `R`, `θ = exp φ` on `(0, ∞)`, and
//! `θ = lo + (hi − lo) σ(φ)` (logistic σ) on `(lo, hi)`. The density of φ is
//! `p(θ(φ)) · |dθ/dφ|`; [`Transforms::forward`] returns θ and `log |dθ/dφ|`, written for any
//! [`Scalar`] so its derivative is exact on dual numbers.

use crate::bayes::prior::Support;
use crate::error::{Result, SmcError};
use crate::scalar::Scalar;

/// The transform of one coordinate.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Transform {
    /// `θ = φ`.
    Identity,
    /// `θ = exp φ` onto `(0, ∞)`.
    Log,
    /// `θ = lo + (hi − lo) / (1 + exp(−φ))` onto `(lo, hi)`.
    Logit {
        /// Lower end.
        lo: f64,
        /// Upper end.
        hi: f64,
    },
}

/// `log(1 + e^z)`, stable for any sign of `z` (branch on the value part).
fn softplus<S: Scalar>(z: S) -> S {
    if z.re() > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

impl Transform {
    /// The transform onto a support.
    pub fn for_support(s: Support) -> Self {
        match s {
            Support::Real => Transform::Identity,
            Support::Positive => Transform::Log,
            Support::Interval { lo, hi } => Transform::Logit { lo, hi },
        }
    }

    /// A validated logit transform onto `(lo, hi)`.
    pub fn logit(lo: f64, hi: f64) -> Result<Self> {
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(SmcError::invalid(
                "logit transform bounds",
                format!("({lo}, {hi})"),
                "finite lo < hi",
            ));
        }
        Ok(Transform::Logit { lo, hi })
    }

    /// `(θ, log |dθ/dφ|)`.
    pub fn forward<S: Scalar>(&self, phi: S) -> (S, S) {
        match *self {
            Transform::Identity => (phi, S::zero()),
            Transform::Log => (phi.exp(), phi),
            Transform::Logit { lo, hi } => {
                // σ(φ) = exp(−softplus(−φ)); log σ'(φ) = −softplus(−φ) − softplus(φ).
                let sp_neg = softplus(-phi);
                let sig = (-sp_neg).exp();
                let theta = sig * (hi - lo) + lo;
                let logj = -sp_neg - softplus(phi) + (hi - lo).ln();
                (theta, logj)
            }
        }
    }

    /// `φ = θ⁻¹(θ)`; an error when `theta` is outside the open support.
    pub fn inverse(&self, theta: f64) -> Result<f64> {
        match *self {
            Transform::Identity => Ok(theta),
            Transform::Log => {
                if theta > 0.0 && theta.is_finite() {
                    Ok(theta.ln())
                } else {
                    Err(SmcError::invalid(
                        "parameter for a log transform",
                        theta,
                        "a finite number > 0",
                    ))
                }
            }
            Transform::Logit { lo, hi } => {
                if theta > lo && theta < hi {
                    Ok(((theta - lo) / (hi - theta)).ln())
                } else {
                    Err(SmcError::invalid(
                        "parameter for a logit transform",
                        theta,
                        "a number strictly inside the transform's interval",
                    ))
                }
            }
        }
    }
}

/// One [`Transform`] per coordinate.
///
/// ```
/// use diffsmc::bayes::{Transform, Transforms};
/// let t = Transforms::new(vec![Transform::Logit { lo: -1.0, hi: 1.0 }, Transform::Log]);
/// let phi = t.inverse(&[0.5, 2.0])?;
/// let (theta, logj) = t.forward::<f64>(&phi);
/// assert!((theta[0] - 0.5).abs() < 1e-15 && (theta[1] - 2.0).abs() < 1e-15);
/// // log |dθ/dφ| = log((θ1 + 1)(1 − θ1)/2) + log θ2
/// assert!((logj - ((1.5_f64 * 0.5 / 2.0).ln() + 2.0_f64.ln())).abs() < 1e-14);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Transforms {
    items: Vec<Transform>,
}

impl Transforms {
    /// From one transform per coordinate.
    pub fn new(items: Vec<Transform>) -> Self {
        Transforms { items }
    }
    /// `p` identity transforms.
    pub fn identity(p: usize) -> Self {
        Transforms {
            items: vec![Transform::Identity; p],
        }
    }
    /// The transforms.
    pub fn transforms(&self) -> &[Transform] {
        &self.items
    }
    /// Number of coordinates.
    pub fn dim(&self) -> usize {
        self.items.len()
    }
    /// `(θ(φ), Σ log |dθ_i/dφ_i|)`.
    pub fn forward<S: Scalar>(&self, phi: &[S]) -> (Vec<S>, S) {
        let mut logj = S::zero();
        let theta = self
            .items
            .iter()
            .zip(phi)
            .map(|(t, &p)| {
                let (th, lj) = t.forward(p);
                logj += lj;
                th
            })
            .collect();
        (theta, logj)
    }
    /// `φ(θ)`.
    pub fn inverse(&self, theta: &[f64]) -> Result<Vec<f64>> {
        if theta.len() != self.items.len() {
            return Err(SmcError::DimensionMismatch {
                what: "parameter vector θ",
                expected: self.items.len(),
                got: theta.len(),
            });
        }
        self.items
            .iter()
            .zip(theta)
            .map(|(t, &th)| t.inverse(th))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_dual::Dual64;

    /// Round trips, and the log-Jacobian against the dual-number derivative of θ(φ)
    /// (both exact up to round-off), including far in the tails where a naive logistic
    /// would overflow.
    #[test]
    fn round_trip_and_jacobian() {
        let ts = [
            Transform::Identity,
            Transform::Log,
            Transform::logit(-1.0, 3.0).unwrap(),
        ];
        for t in ts {
            for phi in [-30.0, -2.0, 0.0, 0.7, 5.0, 30.0] {
                let (th, lj) = t.forward(Dual64::new(phi, 1.0));
                assert!(lj.re.is_finite(), "{t:?} {phi}");
                assert!(
                    (th.eps.abs().ln() - lj.re).abs() < 1e-9,
                    "{t:?} at {phi}: {} vs {}",
                    th.eps.abs().ln(),
                    lj.re
                );
                if phi.abs() < 10.0 {
                    let back = t.inverse(th.re).unwrap();
                    assert!((back - phi).abs() < 1e-12, "{t:?}: {back} vs {phi}");
                }
            }
        }
        assert!(Transform::Log.inverse(-1.0).is_err());
        assert!(Transform::logit(0.0, 1.0).unwrap().inverse(1.0).is_err());
        assert!(Transform::logit(1.0, 0.0).is_err());
    }
}
