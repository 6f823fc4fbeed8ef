//! Particle marginal Metropolis–Hastings (Andrieu, Doucet & Holenstein 2010).
//!
//! The chain moves in the unconstrained space φ ([`Transforms`]) with a Gaussian random walk,
//! adapted during burn-in (Haario-style covariance of the chain so far, global scale tuned by
//! Robbins–Monro towards the target acceptance rate, 0.25 by default) and frozen afterwards.
//! The log-likelihood comes from a [`LogLikelihood`] oracle — the particle filter
//! ([`crate::bayes::PfLikelihood`], any resampler) or the exact Kalman filter
//! ([`crate::bayes::KalmanLikelihood`]). Every proposal gets a fresh filter seed,
//! `derive_seed(chain seed, iteration)`, and the estimate at the current point is kept (never
//! refreshed), so with an unbiased estimator the chain is exact: it leaves
//! `π(θ) p̂(y | θ, U) p(U)` invariant, whose θ-marginal is the posterior.
//!
//! ```
//! use diffsmc::bayes::{KalmanLikelihood, Marginal, McmcConfig, PfLikelihood, Pmmh, ProductPrior};
//! use diffsmc::{ResamplerSpec, SmcConfig};
//! use diffsmc_lgssm::{Lgssm, PaperParams};
//!
//! let (_, ys) = Lgssm::paper(0.5, 1.0, 1)?.simulate(20, 1);
//! let params = PaperParams::new(1, ys)?;
//! let prior = ProductPrior::new(vec![Marginal::uniform(-1.0, 1.0)?, Marginal::uniform(0.0, 3.0)?]);
//! let config = McmcConfig::new(400, 100, 2, 7)?;
//! let pf = PfLikelihood::new(&params, SmcConfig::new(32)?, &ResamplerSpec::Systematic);
//! let post = Pmmh::default().run(&pf, &prior, &config)?;
//! assert_eq!(post.chains.len(), 2);
//! assert_eq!(post.chains[0].samples.len(), 300);
//! let exact = Pmmh::default().run(&KalmanLikelihood(&params), &prior, &config)?;
//! assert!(exact.summary()[0].mean.abs() < 1.0);
//! # Ok::<(), diffsmc::SmcError>(())
//! ```

use crate::bayes::mcmc::{
    AdaptiveRw, Chain, LogLikelihood, McmcConfig, Posterior, TAG_ACCEPT, TAG_PROPOSE,
    check_param_dim, log_prior_phi, run_chains, start_point,
};
use crate::bayes::prior::{Prior, ProductPrior};
use crate::bayes::transform::Transforms;
use crate::error::{Result, SmcError};
use crate::rng::{Purpose, StreamKey, derive_seed};
use rand::RngExt;

/// The PMMH sampler's knobs.
///
/// ```
/// use diffsmc::bayes::Pmmh;
/// let p = Pmmh::default().with_target_acceptance(0.3)?.with_initial_sd(0.2)?;
/// assert!(Pmmh::default().with_target_acceptance(1.5).is_err());
/// assert!(Pmmh::default().with_initial_sd(0.0).is_err());
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Pmmh {
    target_acceptance: f64,
    initial_sd: f64,
    adapt: bool,
}

impl Default for Pmmh {
    /// Target acceptance 0.25, initial random-walk sd 0.1 in φ, adaptation on.
    fn default() -> Self {
        Pmmh {
            target_acceptance: 0.25,
            initial_sd: 0.1,
            adapt: true,
        }
    }
}

impl Pmmh {
    /// The acceptance rate the burn-in adaptation aims at, in `(0, 1)`.
    pub fn with_target_acceptance(mut self, a: f64) -> Result<Self> {
        if !(a > 0.0 && a < 1.0) {
            return Err(SmcError::invalid(
                "target acceptance",
                a,
                "a number in (0, 1)",
            ));
        }
        self.target_acceptance = a;
        Ok(self)
    }
    /// The random walk's sd per coordinate of φ before the covariance adaptation starts
    /// (and throughout without adaptation), `> 0`.
    pub fn with_initial_sd(mut self, sd: f64) -> Result<Self> {
        if !(sd > 0.0 && sd.is_finite()) {
            return Err(SmcError::invalid(
                "initial proposal sd",
                sd,
                "a finite number > 0",
            ));
        }
        self.initial_sd = sd;
        Ok(self)
    }
    /// Turns the burn-in adaptation on or off.
    pub fn with_adaptation(mut self, yes: bool) -> Self {
        self.adapt = yes;
        self
    }

    /// Runs PMMH with a product prior, moving in the transforms of its marginals
    /// ([`ProductPrior::transforms`]).
    pub fn run<L: LogLikelihood>(
        &self,
        loglik: &L,
        prior: &ProductPrior,
        config: &McmcConfig,
    ) -> Result<Posterior> {
        self.run_with(loglik, prior, &prior.transforms(), config, &|| {})
    }

    /// Runs PMMH with any prior and transforms; `progress` is called after every iteration of
    /// every chain (from several threads).
    pub fn run_with<L: LogLikelihood, Pr: Prior>(
        &self,
        loglik: &L,
        prior: &Pr,
        transforms: &Transforms,
        config: &McmcConfig,
        progress: &(dyn Fn() + Sync),
    ) -> Result<Posterior> {
        check_param_dim(
            "prior dimension vs model parameters",
            loglik.n_params(),
            prior.dim(),
        )?;
        run_chains("pmmh", config, |c| {
            self.chain(loglik, prior, transforms, config, c, progress)
        })
    }

    fn chain<L: LogLikelihood, Pr: Prior>(
        &self,
        loglik: &L,
        prior: &Pr,
        transforms: &Transforms,
        config: &McmcConfig,
        c: usize,
        progress: &(dyn Fn() + Sync),
    ) -> Result<Chain> {
        let cs = config.chain_seed(c);
        let p = prior.dim();
        let mut ll = f64::NEG_INFINITY;
        let mut phi = start_point(config, prior, transforms, cs, |phi| {
            let (theta, lp) = log_prior_phi(prior, transforms, phi);
            if !lp.is_finite() {
                return Ok(false);
            }
            ll = loglik.log_likelihood(&theta, derive_seed(cs, 0))?;
            Ok(ll.is_finite())
        })?;
        let (mut theta, mut lp) = log_prior_phi(prior, transforms, &phi);
        let mut rw = AdaptiveRw::new(p, self.initial_sd, self.target_acceptance);
        let mut prop = vec![0.0; p];
        let kept = config.kept();
        let mut out = Chain {
            samples: Vec::with_capacity(kept),
            log_likelihood: Vec::with_capacity(kept),
            accepted: 0,
            proposed: 0,
            burn_in_acceptance: f64::NAN,
            final_scale: rw.scale(),
        };
        let mut burn_acc = 0usize;
        for i in 1..=config.iterations() {
            let mut rng = StreamKey::new(cs, i, Purpose::Other(TAG_PROPOSE)).rng(0);
            rw.propose(&phi, &mut rng, &mut prop);
            let (theta_p, lp_p) = log_prior_phi(prior, transforms, &prop);
            let mut log_alpha = f64::NEG_INFINITY;
            let mut ll_p = f64::NEG_INFINITY;
            if lp_p.is_finite() {
                ll_p = loglik.log_likelihood(&theta_p, derive_seed(cs, i as u64))?;
                if ll_p.is_finite() {
                    log_alpha = ll_p + lp_p - ll - lp;
                }
            }
            let u: f64 = StreamKey::new(cs, i, Purpose::Other(TAG_ACCEPT))
                .rng(0)
                .random();
            let accept = u.ln() < log_alpha;
            if accept {
                phi.copy_from_slice(&prop);
                theta = theta_p;
                lp = lp_p;
                ll = ll_p;
            }
            if i <= config.burn_in() {
                burn_acc += accept as usize;
                if self.adapt {
                    rw.adapt(i, &phi, log_alpha.min(0.0).exp());
                }
                if i == config.burn_in() {
                    out.final_scale = rw.scale();
                }
            } else {
                out.proposed += 1;
                out.accepted += accept as usize;
                out.samples.push(theta.clone());
                out.log_likelihood.push(ll);
            }
            progress();
        }
        out.burn_in_acceptance = if config.burn_in() > 0 {
            burn_acc as f64 / config.burn_in() as f64
        } else {
            f64::NAN
        };
        Ok(out)
    }
}
