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
    /// Log-normal: `ln x ~ N(mu, sigma²)`, on `(0, ∞)`.
    LogNormal {
        /// Mean of `ln x`.
        mu: f64,
        /// Standard deviation of `ln x`.
        sigma: f64,
    },
    /// Gamma with shape `shape` and rate `rate` (mean `shape / rate`), on `(0, ∞)`.
    Gamma {
        /// Shape `k > 0`.
        shape: f64,
        /// Rate `β > 0`.
        rate: f64,
    },
    /// Beta(`a`, `b`) on `(0, 1)`.
    Beta {
        /// First shape `a > 0`.
        a: f64,
        /// Second shape `b > 0`.
        b: f64,
    },
    /// Half-normal: `|N(0, sd²)|`, on `(0, ∞)`.
    HalfNormal {
        /// Scale `sd > 0`.
        sd: f64,
    },
}

/// Where a marginal puts its mass: what [`crate::bayes::Transform::for_support`] maps `R` onto.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Support {
    /// The whole line.
    Real,
    /// `(0, ∞)`.
    Positive,
    /// `(lo, hi)`.
    Interval {
        /// Lower end.
        lo: f64,
        /// Upper end.
        hi: f64,
    },
}

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, 9 terms; relative error below 1e-14 on the
/// shapes priors use).
pub(crate) fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, &c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * LN_2PI + (x + 0.5) * t.ln() - t + a.ln()
}

fn positive(name: &'static str, v: f64) -> Result<f64> {
    if v > 0.0 && v.is_finite() {
        Ok(v)
    } else {
        Err(SmcError::invalid(name, v, "a finite number > 0"))
    }
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

    /// Log-normal: `ln x ~ N(mu, sigma²)`; `mu` finite, `sigma > 0`.
    ///
    /// ```
    /// use diffsmc::bayes::Marginal;
    /// let m = Marginal::log_normal(0.0, 1.0)?;
    /// // At x = 1: the N(0, 1) density at 0.
    /// assert!((m.log_density(1.0_f64) + 0.5 * (2.0 * std::f64::consts::PI).ln()).abs() < 1e-14);
    /// assert!(Marginal::log_normal(0.0, -1.0).is_err());
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn log_normal(mu: f64, sigma: f64) -> Result<Self> {
        if !mu.is_finite() {
            return Err(SmcError::invalid(
                "log-normal prior mu",
                mu,
                "a finite number",
            ));
        }
        Ok(Marginal::LogNormal {
            mu,
            sigma: positive("log-normal prior sigma", sigma)?,
        })
    }
    /// Gamma with `shape > 0` and `rate > 0`.
    pub fn gamma(shape: f64, rate: f64) -> Result<Self> {
        Ok(Marginal::Gamma {
            shape: positive("gamma prior shape", shape)?,
            rate: positive("gamma prior rate", rate)?,
        })
    }
    /// Beta with shapes `a > 0`, `b > 0`.
    pub fn beta(a: f64, b: f64) -> Result<Self> {
        Ok(Marginal::Beta {
            a: positive("beta prior a", a)?,
            b: positive("beta prior b", b)?,
        })
    }
    /// Half-normal with scale `sd > 0`.
    pub fn half_normal(sd: f64) -> Result<Self> {
        Ok(Marginal::HalfNormal {
            sd: positive("half-normal prior sd", sd)?,
        })
    }

    /// The support (open intervals: the density is `-inf` on the boundary).
    pub fn support(&self) -> Support {
        match *self {
            Marginal::Uniform { lo, hi } => Support::Interval { lo, hi },
            Marginal::Normal { .. } => Support::Real,
            Marginal::LogNormal { .. } | Marginal::Gamma { .. } | Marginal::HalfNormal { .. } => {
                Support::Positive
            }
            Marginal::Beta { .. } => Support::Interval { lo: 0.0, hi: 1.0 },
        }
    }

    /// `log p(x)`.
    pub fn log_density<S: Scalar>(&self, x: S) -> S {
        let neg_inf = S::cst(f64::NEG_INFINITY);
        let v = x.re();
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
            Marginal::LogNormal { mu, sigma } => {
                if v.is_nan() || v <= 0.0 {
                    return neg_inf;
                }
                let lx = x.ln();
                let z = (lx - mu) / sigma;
                z * z * -0.5 - lx - (sigma.ln() + 0.5 * LN_2PI)
            }
            Marginal::Gamma { shape, rate } => {
                if v.is_nan() || v <= 0.0 {
                    return neg_inf;
                }
                x.ln() * (shape - 1.0) - x * rate + (shape * rate.ln() - ln_gamma(shape))
            }
            Marginal::Beta { a, b } => {
                if !(v > 0.0 && v < 1.0) {
                    return neg_inf;
                }
                let ln_beta = ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b);
                x.ln() * (a - 1.0) + (-x).ln_1p() * (b - 1.0) - ln_beta
            }
            Marginal::HalfNormal { sd } => {
                if v.is_nan() || v < 0.0 {
                    return neg_inf;
                }
                let z = x / sd;
                z * z * -0.5 + (std::f64::consts::LN_2 - sd.ln() - 0.5 * LN_2PI)
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
            Marginal::LogNormal { mu, sigma } => (mu + sigma * standard_normal(rng)).exp(),
            Marginal::Gamma { shape, rate } => sample_gamma(shape, rng) / rate,
            Marginal::Beta { a, b } => {
                let x = sample_gamma(a, rng);
                let y = sample_gamma(b, rng);
                x / (x + y)
            }
            Marginal::HalfNormal { sd } => (sd * standard_normal(rng)).abs(),
        }
    }
}

/// A Gamma(`shape`, 1) draw (Marsaglia & Tsang 2000; shapes below 1 by the boost
/// `G(k) = G(k + 1) · U^{1/k}`).
fn sample_gamma(shape: f64, rng: &mut StreamRng) -> f64 {
    if shape < 1.0 {
        let u: f64 = rng.random();
        return sample_gamma(shape + 1.0, rng) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let z = standard_normal(rng);
        let v = 1.0 + c * z;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u: f64 = rng.random();
        if u.ln() < 0.5 * z * z + d - d * v + d * v.ln() {
            return d * v;
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
    /// The transforms that map `R^p` onto the support of each factor (identity for the
    /// normal, log for the positive marginals, logit for the bounded ones).
    ///
    /// ```
    /// use diffsmc::bayes::{Marginal, ProductPrior, Transform};
    /// let prior = ProductPrior::new(vec![Marginal::uniform(-1.0, 1.0)?, Marginal::gamma(2.0, 1.0)?]);
    /// let t = prior.transforms();
    /// assert_eq!(t.transforms()[1], Transform::Log);
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn transforms(&self) -> crate::bayes::Transforms {
        crate::bayes::Transforms::new(
            self.marginals
                .iter()
                .map(|m| crate::bayes::Transform::for_support(m.support()))
                .collect(),
        )
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

    /// The generic densities against statrs (f64 oracle) at a few points inside the support,
    /// to round-off (1e-12 absolute on log densities of order 1-10), and `-inf` outside.
    #[test]
    fn densities_match_statrs() {
        use statrs::distribution::{Beta, Continuous, Gamma, LogNormal};
        type Oracle = Box<dyn Fn(f64) -> f64>;
        let cases: Vec<(Marginal, Oracle)> = vec![
            (Marginal::log_normal(0.3, 0.7).unwrap(), {
                let d = LogNormal::new(0.3, 0.7).unwrap();
                Box::new(move |x| d.ln_pdf(x))
            }),
            (Marginal::gamma(2.5, 1.5).unwrap(), {
                let d = Gamma::new(2.5, 1.5).unwrap();
                Box::new(move |x| d.ln_pdf(x))
            }),
            (Marginal::gamma(0.6, 3.0).unwrap(), {
                let d = Gamma::new(0.6, 3.0).unwrap();
                Box::new(move |x| d.ln_pdf(x))
            }),
            (Marginal::beta(2.0, 5.0).unwrap(), {
                let d = Beta::new(2.0, 5.0).unwrap();
                Box::new(move |x| d.ln_pdf(x))
            }),
            (Marginal::beta(0.5, 0.7).unwrap(), {
                let d = Beta::new(0.5, 0.7).unwrap();
                Box::new(move |x| d.ln_pdf(x))
            }),
            (Marginal::half_normal(1.3).unwrap(), {
                let d = statrs::distribution::Normal::new(0.0, 1.3).unwrap();
                Box::new(move |x| d.ln_pdf(x) + std::f64::consts::LN_2)
            }),
        ];
        for (m, oracle) in &cases {
            for x in [0.05, 0.3, 0.5, 0.9] {
                let a = m.log_density(x);
                let b = oracle(x);
                assert!((a - b).abs() < 1e-12, "{m:?} at {x}: {a} vs {b}");
            }
            assert_eq!(m.log_density(-0.1_f64), f64::NEG_INFINITY, "{m:?}");
        }
        // Derivative of the gamma log density: (k − 1)/x − β.
        let g = Marginal::gamma(2.5, 1.5).unwrap();
        let d = g.log_density(Dual64::new(0.8, 1.0));
        assert!((d.eps - (1.5 / 0.8 - 1.5)).abs() < 1e-13);
    }

    /// Sample means and variances of 40 000 draws within 5 standard errors of the exact
    /// moments (the variance's standard error from the fourth central moment, estimated from
    /// the same draws).
    #[test]
    fn sampling_matches_the_moments() {
        let cases = [
            (Marginal::gamma(2.5, 1.5).unwrap(), 2.5 / 1.5, 2.5 / 2.25),
            (Marginal::gamma(0.6, 2.0).unwrap(), 0.3, 0.15),
            (
                Marginal::beta(2.0, 5.0).unwrap(),
                2.0 / 7.0,
                10.0 / (49.0 * 8.0),
            ),
            (
                Marginal::log_normal(0.1, 0.4).unwrap(),
                (0.1f64 + 0.08).exp(),
                (0.16f64.exp() - 1.0) * (0.2f64 + 0.16).exp(),
            ),
            (
                Marginal::half_normal(2.0).unwrap(),
                2.0 * (2.0 / std::f64::consts::PI).sqrt(),
                4.0 * (1.0 - 2.0 / std::f64::consts::PI),
            ),
        ];
        let n = 40_000;
        for (k, (m, mean, var)) in cases.iter().enumerate() {
            let key = StreamKey::new(5, k, Purpose::Other(2));
            let xs: Vec<f64> = (0..n).map(|i| m.sample(&mut key.rng(i))).collect();
            let nf = n as f64;
            let mu = xs.iter().sum::<f64>() / nf;
            let v = xs.iter().map(|x| (x - mu) * (x - mu)).sum::<f64>() / (nf - 1.0);
            let m4 = xs.iter().map(|x| (x - mu).powi(4)).sum::<f64>() / nf;
            assert!(
                (mu - mean).abs() < 5.0 * (var / nf).sqrt(),
                "{m:?} mean {mu} vs {mean}"
            );
            let se_v = ((m4 - v * v) / nf).sqrt();
            assert!((v - var).abs() < 5.0 * se_v, "{m:?} var {v} vs {var}");
            assert!(xs.iter().all(|&x| m.log_density(x).is_finite()));
        }
    }

    #[test]
    fn ln_gamma_matches_statrs() {
        for x in [0.1, 0.5, 1.0, 1.5, 2.5, 7.0, 30.0] {
            let a = ln_gamma(x);
            let b = statrs::function::gamma::ln_gamma(x);
            assert!((a - b).abs() < 1e-12 * b.abs().max(1.0), "{x}: {a} vs {b}");
        }
    }

    #[test]
    fn bad_knobs_are_typed_errors() {
        assert!(Marginal::gamma(0.0, 1.0).is_err());
        assert!(Marginal::gamma(1.0, f64::NAN).is_err());
        assert!(Marginal::beta(-1.0, 1.0).is_err());
        assert!(Marginal::half_normal(0.0).is_err());
        assert!(Marginal::log_normal(f64::INFINITY, 1.0).is_err());
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
