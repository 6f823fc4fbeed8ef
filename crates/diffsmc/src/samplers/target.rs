//! Static targets: a prior and a likelihood on `R^d`, written once for any scalar.

use crate::bayes::Prior;
use crate::error::{Result, SmcError};
use crate::rng::StreamRng;
use crate::scalar::Scalar;

/// A static Bayesian target `π(x) ∝ p(x) L(x)` on `R^d`: the object an SMC sampler tempers
/// from the prior (`β = 0`) to the posterior (`β = 1`) through `p(x) L(x)^β`.
///
/// Both log densities are written for any [`Scalar`], so gradient-based moves (MALA, HMC)
/// differentiate them with dual numbers. `log_prior` is `-inf` outside the prior's support
/// and `log_likelihood` may be `-inf` (zero likelihood); neither may be NaN.
///
/// ```
/// use diffsmc::Scalar;
/// use diffsmc::rng::{StreamRng, standard_normal};
/// use diffsmc::samplers::StaticTarget;
///
/// /// Prior N(0, 1), one observation y = 1 with noise N(0, 0.5²).
/// struct Toy;
/// impl StaticTarget for Toy {
///     fn dim(&self) -> usize { 1 }
///     fn log_prior<S: Scalar>(&self, x: &[S]) -> S { x[0] * x[0] * -0.5 }
///     fn log_likelihood<S: Scalar>(&self, x: &[S]) -> S {
///         let r = (x[0] - 1.0) / 0.5;
///         r * r * -0.5
///     }
///     fn sample_prior(&self, rng: &mut StreamRng, out: &mut [f64]) {
///         out[0] = standard_normal(rng);
///     }
/// }
/// assert_eq!(Toy.log_likelihood(&[1.0_f64]), 0.0);
/// ```
pub trait StaticTarget: Sync {
    /// Dimension `d` of the state.
    fn dim(&self) -> usize;
    /// `log p(x)` (normalised, so that the evidence estimate is that of the model).
    fn log_prior<S: Scalar>(&self, x: &[S]) -> S;
    /// `log L(x)`.
    fn log_likelihood<S: Scalar>(&self, x: &[S]) -> S;
    /// Draws `x ~ p` into `out` (length `dim()`).
    fn sample_prior(&self, rng: &mut StreamRng, out: &mut [f64]);
}

impl<T: StaticTarget + ?Sized> StaticTarget for &T {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn log_prior<S: Scalar>(&self, x: &[S]) -> S {
        (**self).log_prior(x)
    }
    fn log_likelihood<S: Scalar>(&self, x: &[S]) -> S {
        (**self).log_likelihood(x)
    }
    fn sample_prior(&self, rng: &mut StreamRng, out: &mut [f64]) {
        (**self).sample_prior(rng, out)
    }
}

/// A log-likelihood on `R^d` for any scalar: the other half of a [`Posterior`].
pub trait LogLikelihood: Sync {
    /// Dimension `d` of the parameter.
    fn dim(&self) -> usize;
    /// `log L(x)`.
    fn log_likelihood<S: Scalar>(&self, x: &[S]) -> S;
}

/// A [`StaticTarget`] from a [`Prior`] (e.g. [`crate::bayes::ProductPrior`]) and a
/// [`LogLikelihood`].
///
/// ```
/// use diffsmc::Scalar;
/// use diffsmc::bayes::{Marginal, ProductPrior};
/// use diffsmc::samplers::{LogLikelihood, Posterior, StaticTarget};
/// struct Obs(f64);
/// impl LogLikelihood for Obs {
///     fn dim(&self) -> usize { 1 }
///     fn log_likelihood<S: Scalar>(&self, x: &[S]) -> S { let r = x[0] - self.0; r * r * -0.5 }
/// }
/// let post = Posterior::new(ProductPrior::new(vec![Marginal::normal(0.0, 1.0)?]), Obs(0.3))?;
/// assert_eq!(post.dim(), 1);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Posterior<P, L> {
    prior: P,
    likelihood: L,
}

impl<P: Prior, L: LogLikelihood> Posterior<P, L> {
    /// The posterior of `likelihood` under `prior`; their dimensions must agree and be ≥ 1.
    pub fn new(prior: P, likelihood: L) -> Result<Self> {
        if prior.dim() != likelihood.dim() {
            return Err(SmcError::DimensionMismatch {
                what: "prior vs likelihood dimension",
                expected: likelihood.dim(),
                got: prior.dim(),
            });
        }
        if prior.dim() == 0 {
            return Err(SmcError::invalid("target dimension", 0, "at least 1"));
        }
        Ok(Posterior { prior, likelihood })
    }
    /// The prior.
    pub fn prior(&self) -> &P {
        &self.prior
    }
    /// The likelihood.
    pub fn likelihood(&self) -> &L {
        &self.likelihood
    }
}

impl<P: Prior, L: LogLikelihood> StaticTarget for Posterior<P, L> {
    fn dim(&self) -> usize {
        self.prior.dim()
    }
    fn log_prior<S: Scalar>(&self, x: &[S]) -> S {
        self.prior.log_density(x)
    }
    fn log_likelihood<S: Scalar>(&self, x: &[S]) -> S {
        self.likelihood.log_likelihood(x)
    }
    fn sample_prior(&self, rng: &mut StreamRng, out: &mut [f64]) {
        self.prior.sample(rng, out)
    }
}

/// `log p(x) + β log L(x)`, `-inf` outside the prior's support (never `0 · -inf`).
pub(crate) fn tempered_log_density<S: Scalar, T: StaticTarget + ?Sized>(
    target: &T,
    beta: f64,
    x: &[S],
) -> S {
    let lp = target.log_prior(x);
    if lp.re() == f64::NEG_INFINITY || beta == 0.0 {
        return lp;
    }
    lp + target.log_likelihood(x) * beta
}
