//! Priors on a parameter vector θ: a log density written once for any [`Scalar`] (so
//! gradient-based samplers differentiate it with the same dual numbers as the likelihood) and
//! a sampler for initialisation.

use rand::RngExt;

use crate::error::{Result, SmcError};
use crate::rng::{StreamRng, standard_normal};
use crate::scalar::Scalar;

/// `ln(2π)`.
const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// A prior distribution on `R^p`.
///
/// `log_density` is `-inf` outside the support (its value part decides), and is written for
/// any scalar so that its derivative is exact on dual numbers.
///
/// ```
/// use diffsmc::bayes::{Marginal, Prior, ProductPrior};
/// let prior = ProductPrior::new(vec![Marginal::uniform(-1.0, 1.0)?, Marginal::normal(0.0, 2.0)?]);
/// assert_eq!(prior.dim(), 2);
/// assert_eq!(prior.log_density(&[2.0_f64, 0.0]), f64::NEG_INFINITY);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
pub trait Prior: Sync {
    /// Dimension `p` of θ.
    fn dim(&self) -> usize;
    /// `log p(θ)`, `-inf` outside the support.
    fn log_density<S: Scalar>(&self, theta: &[S]) -> S;
    /// Draws θ ~ p into `out` (length `dim()`).
    fn sample(&self, rng: &mut StreamRng, out: &mut [f64]);
}

/// A one-dimensional distribution, a factor of a [`ProductPrior`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Marginal {
    /// Uniform on `(lo, hi)`.
    Uniform {
        /// Lower end.
        lo: f64,
        /// Upper end.
        hi: f64,
    },
    /// Normal with mean `mean` and standard deviation `sd`.
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        sd: f64,
    },
}

impl Marginal {
    /// Uniform on `(lo, hi)`; `lo < hi`, both finite.
    pub fn uniform(lo: f64, hi: f64) -> Result<Self> {
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(SmcError::invalid(
                "uniform prior bounds",
                format!("({lo}, {hi})"),
                "finite lo < hi",
            ));
        }
        Ok(Marginal::Uniform { lo, hi })
    }
    /// Normal with finite mean and standard deviation `sd > 0`.
    pub fn normal(mean: f64, sd: f64) -> Result<Self> {
        if !mean.is_finite() {
            return Err(SmcError::invalid(
                "normal prior mean",
                mean,
                "a finite number",
            ));
        }
        if !(sd > 0.0 && sd.is_finite()) {
            return Err(SmcError::invalid(
                "normal prior sd",
                sd,
                "a finite number > 0",
            ));
        }
        Ok(Marginal::Normal { mean, sd })
    }

    /// `log p(x)`.
    pub fn log_density<S: Scalar>(&self, x: S) -> S {
        match *self {
            Marginal::Uniform { lo, hi } => {
                let v = x.re();
                if v > lo && v < hi {
                    S::cst(-(hi - lo).ln())
                } else {
                    S::cst(f64::NEG_INFINITY)
                }
            }
            Marginal::Normal { mean, sd } => {
                let z = (x - mean) / sd;
                z * z * -0.5 - (sd.ln() + 0.5 * LN_2PI)
            }
        }
    }

    /// One draw.
    pub fn sample(&self, rng: &mut StreamRng) -> f64 {
        match *self {
            Marginal::Uniform { lo, hi } => {
                let u: f64 = rng.random();
                lo + (hi - lo) * u
            }
            Marginal::Normal { mean, sd } => mean + sd * standard_normal(rng),
        }
    }
}

/// Independent marginals: `p(θ) = Π_i p_i(θ_i)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductPrior {
    marginals: Vec<Marginal>,
}

impl ProductPrior {
    /// The product of `marginals` (one per parameter).
    pub fn new(marginals: Vec<Marginal>) -> Self {
        ProductPrior { marginals }
    }
    /// The factors.
    pub fn marginals(&self) -> &[Marginal] {
        &self.marginals
    }
}

impl Prior for ProductPrior {
    fn dim(&self) -> usize {
        self.marginals.len()
    }
    fn log_density<S: Scalar>(&self, theta: &[S]) -> S {
        let mut acc = S::zero();
        for (m, &x) in self.marginals.iter().zip(theta) {
            let l = m.log_density(x);
            if l.re() == f64::NEG_INFINITY {
                return S::cst(f64::NEG_INFINITY);
            }
            acc += l;
        }
        acc
    }
    fn sample(&self, rng: &mut StreamRng, out: &mut [f64]) {
        for (m, o) in self.marginals.iter().zip(out.iter_mut()) {
            *o = m.sample(rng);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Purpose, StreamKey};
    use num_dual::Dual64;

    /// Against the closed forms (round-off tolerance), with the derivative of the normal
    /// log density `-(x - m)/sd²`.
    #[test]
    fn densities_and_derivatives() {
        let u = Marginal::uniform(-1.0, 3.0).unwrap();
        assert!((u.log_density(0.5_f64) + 4.0_f64.ln()).abs() < 1e-15);
        assert_eq!(u.log_density(3.5_f64), f64::NEG_INFINITY);
        let n = Marginal::normal(1.0, 2.0).unwrap();
        let x = Dual64::new(0.2, 1.0);
        let l = n.log_density(x);
        let exact = -0.5 * (2.0 * std::f64::consts::PI * 4.0).ln() - 0.64 / 8.0;
        assert!((l.re - exact).abs() < 1e-14);
        assert!((l.eps - 0.8 / 4.0).abs() < 1e-14);
    }

    #[test]
    fn bad_knobs_are_typed_errors() {
        assert!(Marginal::uniform(1.0, 1.0).is_err());
        assert!(Marginal::uniform(f64::NAN, 1.0).is_err());
        assert!(Marginal::normal(0.0, 0.0).is_err());
        assert!(Marginal::normal(f64::INFINITY, 1.0).is_err());
    }

    /// 20 000 uniform draws: the mean within 5 standard errors of the exact one.
    #[test]
    fn samples_have_the_right_mean() {
        let prior = ProductPrior::new(vec![
            Marginal::uniform(0.0, 3.0).unwrap(),
            Marginal::normal(-2.0, 0.5).unwrap(),
        ]);
        let key = StreamKey::new(9, 0, Purpose::Other(1));
        let n = 20_000;
        let mut sums = [0.0; 2];
        let mut th = [0.0; 2];
        for i in 0..n {
            prior.sample(&mut key.rng(i), &mut th);
            assert!(prior.log_density(&th).is_finite());
            sums[0] += th[0];
            sums[1] += th[1];
        }
        let se = [
            3.0 / 12f64.sqrt() / (n as f64).sqrt(),
            0.5 / (n as f64).sqrt(),
        ];
        assert!((sums[0] / n as f64 - 1.5).abs() < 5.0 * se[0]);
        assert!((sums[1] / n as f64 + 2.0).abs() < 5.0 * se[1]);
    }
}
