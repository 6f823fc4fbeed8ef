//! What every particle-MCMC sampler shares: the run configuration ([`McmcConfig`]), the output
//! ([`Chain`], [`Posterior`]), log-likelihood oracles ([`LogLikelihood`]) and the parallel
//! chain driver.

use crate::bayes::diagnostics::{ParamSummary, summarise};
use crate::bayes::prior::Prior;
use crate::bayes::transform::Transforms;
use crate::error::{Result, SmcError};
use crate::grad::{BuildResampler, LinearGaussianParametric, Parametric};
use crate::rng::{Purpose, StreamKey, derive_seed};
use crate::smc::{Smc, SmcConfig};

/// Stream tags (`Purpose::Other`) of the samplers.
pub(crate) const TAG_INIT: u32 = 0xB0;
pub(crate) const TAG_PROPOSE: u32 = 0xB1;
pub(crate) const TAG_ACCEPT: u32 = 0xB2;
pub(crate) const TAG_CSMC: u32 = 0xB3;
pub(crate) const TAG_THETA: u32 = 0xB4;

/// How many prior draws a chain tries before giving up on finding a start point with a
/// finite log posterior.
pub(crate) const MAX_INIT_TRIES: usize = 100;

/// The knobs every sampler shares: iterations (burn-in included), burn-in, chains, seed and
/// an optional start point.
///
/// ```
/// use diffsmc::bayes::McmcConfig;
/// let c = McmcConfig::new(2000, 500, 4, 7)?;
/// assert_eq!(c.kept(), 1500);
/// assert!(McmcConfig::new(100, 100, 4, 7).is_err()); // burn-in ≥ iterations
/// assert!(McmcConfig::new(100, 10, 0, 7).is_err()); // no chains
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct McmcConfig {
    iterations: usize,
    burn_in: usize,
    chains: usize,
    seed: u64,
    init: Option<Vec<f64>>,
}

impl McmcConfig {
    /// `iterations ≥ 1` in total per chain, of which the first `burn_in < iterations` are
    /// discarded (and used for adaptation); `chains ≥ 1`.
    pub fn new(iterations: usize, burn_in: usize, chains: usize, seed: u64) -> Result<Self> {
        if iterations == 0 {
            return Err(SmcError::invalid("iterations", iterations, "at least 1"));
        }
        if burn_in >= iterations {
            return Err(SmcError::invalid(
                "burn-in",
                format!("{burn_in} (iterations {iterations})"),
                "fewer than the iterations",
            ));
        }
        if chains == 0 {
            return Err(SmcError::invalid("chains", chains, "at least 1"));
        }
        Ok(McmcConfig {
            iterations,
            burn_in,
            chains,
            seed,
            init: None,
        })
    }
    /// Starts every chain at `theta` (finite; its prior density must be positive, checked
    /// when the sampler runs). Default: a draw from the prior per chain.
    pub fn with_init(mut self, theta: Vec<f64>) -> Result<Self> {
        if let Some((i, v)) = theta.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(SmcError::NonFinite {
                what: "initial parameter",
                step: 0,
                component: i,
                value: *v,
            });
        }
        self.init = Some(theta);
        Ok(self)
    }
    /// Iterations per chain, burn-in included.
    pub fn iterations(&self) -> usize {
        self.iterations
    }
    /// Burn-in iterations.
    pub fn burn_in(&self) -> usize {
        self.burn_in
    }
    /// Kept iterations per chain.
    pub fn kept(&self) -> usize {
        self.iterations - self.burn_in
    }
    /// Number of chains.
    pub fn chains(&self) -> usize {
        self.chains
    }
    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// The start point, if set.
    pub fn init(&self) -> Option<&[f64]> {
        self.init.as_deref()
    }
    /// The seed of chain `c` (its own stream family).
    pub fn chain_seed(&self, c: usize) -> u64 {
        derive_seed(self.seed, c as u64)
    }
}

/// One chain's output.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Chain {
    /// θ after burn-in, one vector per kept iteration.
    pub samples: Vec<Vec<f64>>,
    /// The log-likelihood (estimate) of each kept sample.
    pub log_likelihood: Vec<f64>,
    /// Accepted proposals after burn-in.
    pub accepted: usize,
    /// Proposals after burn-in.
    pub proposed: usize,
    /// Acceptance rate during burn-in.
    pub burn_in_acceptance: f64,
    /// The proposal scale (random-walk scale or step size) at the end of burn-in.
    pub final_scale: f64,
}

impl Chain {
    /// Acceptance rate after burn-in (NaN for a sampler without accept steps).
    pub fn acceptance_rate(&self) -> f64 {
        if self.proposed == 0 {
            f64::NAN
        } else {
            self.accepted as f64 / self.proposed as f64
        }
    }
    /// The kept draws of parameter `j`.
    pub fn trace(&self, j: usize) -> Vec<f64> {
        self.samples.iter().map(|s| s[j]).collect()
    }
}

/// The output of a sampler: its chains, and warnings (a chain that never or hardly ever
/// accepted).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Posterior {
    /// The method, e.g. `"pmmh"`.
    pub method: &'static str,
    /// The chains, in order.
    pub chains: Vec<Chain>,
    /// Human-readable warnings.
    pub warnings: Vec<String>,
}

impl Posterior {
    pub(crate) fn new(method: &'static str, chains: Vec<Chain>) -> Self {
        let mut warnings = Vec::new();
        for (c, ch) in chains.iter().enumerate() {
            let a = ch.acceptance_rate();
            if ch.proposed > 0 && ch.accepted == 0 {
                warnings.push(format!(
                    "chain {c} never accepted a proposal after burn-in: its samples are all the \
                     start point (reduce the step size / proposal scale, or add particles)"
                ));
            } else if a < 0.02 {
                warnings.push(format!(
                    "chain {c} accepted only {:.1}% of proposals after burn-in: the chain mixes \
                     poorly (more particles lower the variance of the log-likelihood estimate)",
                    100.0 * a
                ));
            }
        }
        Posterior {
            method,
            chains,
            warnings,
        }
    }
    /// Number of parameters.
    pub fn dim(&self) -> usize {
        self.chains
            .first()
            .and_then(|c| c.samples.first())
            .map_or(0, |s| s.len())
    }
    /// Per parameter: mean, sd, split R-hat, bulk ESS and Monte Carlo standard error over
    /// all chains.
    pub fn summary(&self) -> Vec<ParamSummary> {
        (0..self.dim())
            .map(|j| {
                let traces: Vec<Vec<f64>> = self.chains.iter().map(|c| c.trace(j)).collect();
                summarise(&traces)
            })
            .collect()
    }
    /// Acceptance rate per chain after burn-in.
    pub fn acceptance_rates(&self) -> Vec<f64> {
        self.chains.iter().map(|c| c.acceptance_rate()).collect()
    }
}

/// A log-likelihood `log p(y | θ)` or an unbiased estimate of `p(y | θ)` on the log scale,
/// seeded: what PMMH calls. Implemented by the particle filter ([`PfLikelihood`]) and by the
/// exact Kalman filter ([`KalmanLikelihood`], which ignores the seed).
pub trait LogLikelihood: Sync {
    /// Number of parameters.
    fn n_params(&self) -> usize;
    /// `log p̂(y | θ)` with randomness fixed by `seed`; `-inf` when the estimate is zero
    /// (e.g. all particle weights vanished).
    fn log_likelihood(&self, theta: &[f64], seed: u64) -> Result<f64>;
}

/// The particle filter's log-likelihood estimate of a [`Parametric`] model with any
/// resampler ([`crate::ResamplerSpec`] or your own [`BuildResampler`]). Under an index
/// resampler (multinomial, systematic, stratified, residual) `p̂` is unbiased, which makes
/// PMMH exact; under a differentiable resampler (diffusion, OT, soft, Gumbel) it is not, and
/// the chain targets a perturbed posterior.
#[derive(Debug)]
pub struct PfLikelihood<'a, P, B> {
    model: &'a P,
    smc: SmcConfig,
    resampler: &'a B,
}

impl<'a, P: Parametric, B: BuildResampler> PfLikelihood<'a, P, B> {
    /// The filter of `model` with `smc` (particle count, trigger) and `resampler`.
    pub fn new(model: &'a P, smc: SmcConfig, resampler: &'a B) -> Self {
        PfLikelihood {
            model,
            smc,
            resampler,
        }
    }
    /// The filter configuration.
    pub fn smc(&self) -> &SmcConfig {
        &self.smc
    }
}

impl<P: Parametric, B: BuildResampler> LogLikelihood for PfLikelihood<'_, P, B> {
    fn n_params(&self) -> usize {
        self.model.n_params()
    }
    fn log_likelihood(&self, theta: &[f64], seed: u64) -> Result<f64> {
        crate::grad::check_theta(self.model.n_params(), theta)?;
        let m = self.model.model::<f64>(theta)?;
        let r = self.resampler.build_for::<f64>()?;
        match Smc::new(self.smc.clone()).run(&m, &*r, seed) {
            Ok(out) => Ok(out.log_likelihood),
            Err(SmcError::DegenerateWeights { .. }) => Ok(f64::NEG_INFINITY),
            Err(e) => Err(e),
        }
    }
}

/// The exact log-likelihood of a linear Gaussian model (Kalman filter) as a
/// [`LogLikelihood`]: plugged into PMMH it gives the ideal marginal MH chain.
#[derive(Debug)]
pub struct KalmanLikelihood<'a, P>(pub &'a P);

impl<P: LinearGaussianParametric> LogLikelihood for KalmanLikelihood<'_, P> {
    fn n_params(&self) -> usize {
        self.0.n_params()
    }
    fn log_likelihood(&self, theta: &[f64], _seed: u64) -> Result<f64> {
        Ok(-crate::grad::value(&crate::grad::KalmanNll(self.0), theta)?)
    }
}

/// A chain's start point in φ: the configured θ (its prior density must be positive), else
/// prior draws until `finite(φ)` holds (at most [`MAX_INIT_TRIES`]).
pub(crate) fn start_point<Pr: Prior + ?Sized>(
    config: &McmcConfig,
    prior: &Pr,
    transforms: &Transforms,
    chain_seed: u64,
    mut finite: impl FnMut(&[f64]) -> Result<bool>,
) -> Result<Vec<f64>> {
    let p = prior.dim();
    if transforms.dim() != p {
        return Err(SmcError::DimensionMismatch {
            what: "transforms",
            expected: p,
            got: transforms.dim(),
        });
    }
    if let Some(init) = config.init() {
        if init.len() != p {
            return Err(SmcError::DimensionMismatch {
                what: "initial θ",
                expected: p,
                got: init.len(),
            });
        }
        if !prior.log_density::<f64>(init).is_finite() {
            return Err(SmcError::invalid(
                "initial θ",
                format!("{init:?}"),
                "a point where the prior density is positive and finite",
            ));
        }
        let phi = transforms.inverse(init)?;
        if !finite(&phi)? {
            return Err(SmcError::invalid(
                "initial θ",
                format!("{init:?}"),
                "a point with a finite log-likelihood",
            ));
        }
        return Ok(phi);
    }
    let key = StreamKey::new(chain_seed, 0, Purpose::Other(TAG_INIT));
    let mut theta = vec![0.0; p];
    for k in 0..MAX_INIT_TRIES {
        prior.sample(&mut key.rng(k), &mut theta);
        if !prior.log_density::<f64>(&theta).is_finite() {
            continue;
        }
        let Ok(phi) = transforms.inverse(&theta) else {
            continue;
        };
        if finite(&phi)? {
            return Ok(phi);
        }
    }
    Err(SmcError::invalid(
        "prior",
        format!("{MAX_INIT_TRIES} draws"),
        "a prior with draws of finite log posterior (set an initial θ)",
    ))
}

/// The dimension check every sampler makes before its chains: `got` (the prior's or the
/// θ-update's dimension) must equal the model's number of parameters.
pub(crate) fn check_param_dim(what: &'static str, n_params: usize, got: usize) -> Result<()> {
    if n_params != got {
        return Err(SmcError::DimensionMismatch {
            what,
            expected: n_params,
            got,
        });
    }
    Ok(())
}

/// Runs `chain(c)` for every chain (on rayon threads, one chain per task; the results come
/// back in chain order, so nothing depends on the number of threads).
pub(crate) fn run_chains(
    method: &'static str,
    config: &McmcConfig,
    chain: impl Fn(usize) -> Result<Chain> + Sync + Send,
) -> Result<Posterior> {
    let chains = crate::par::map_chunks::<f64, _>(config.chains(), chain)
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    Ok(Posterior::new(method, chains))
}

/// `log π(φ) = log p(θ(φ)) + log |dθ/dφ|` and θ.
pub(crate) fn log_prior_phi<Pr: Prior + ?Sized>(
    prior: &Pr,
    transforms: &Transforms,
    phi: &[f64],
) -> (Vec<f64>, f64) {
    let (theta, logj) = transforms.forward::<f64>(phi);
    let lp = prior.log_density::<f64>(&theta);
    (theta, if lp.is_finite() { lp + logj } else { lp })
}

/// An adaptive Gaussian random walk in φ: before `n0` draws `N(0, s² σ0² I)`, then
/// (Haario et al. 2001) `N(0, s² (2.38²/p) (C + εI))` with `C` the covariance of the chain so
/// far; `log s` follows Robbins–Monro towards the target acceptance rate. Adapted only
/// during burn-in, frozen afterwards (so the kept chain is a fixed MH kernel).
#[derive(Debug, Clone)]
pub(crate) struct AdaptiveRw {
    p: usize,
    n: usize,
    mean: Vec<f64>,
    m2: Vec<f64>,
    log_scale: f64,
    init_sd: f64,
    target: f64,
    n0: usize,
    chol: Vec<f64>,
}

impl AdaptiveRw {
    pub(crate) fn new(p: usize, init_sd: f64, target: f64) -> Self {
        let mut rw = AdaptiveRw {
            p,
            n: 0,
            mean: vec![0.0; p],
            m2: vec![0.0; p * p],
            log_scale: 0.0,
            init_sd,
            target,
            n0: (10 * p).max(50),
            chol: vec![0.0; p * p],
        };
        rw.refresh();
        rw
    }
    pub(crate) fn scale(&self) -> f64 {
        self.log_scale.exp()
    }
    fn refresh(&mut self) {
        let p = self.p;
        let s2 = (2.0 * self.log_scale).exp();
        let mut cov = vec![0.0; p * p];
        if self.n >= self.n0 {
            let k = 2.38 * 2.38 / p as f64;
            let nf = (self.n - 1) as f64;
            for i in 0..p {
                for j in 0..p {
                    cov[i * p + j] = s2 * k * self.m2[i * p + j] / nf;
                }
                cov[i * p + i] += s2 * k * 1e-8;
            }
        } else {
            for i in 0..p {
                cov[i * p + i] = s2 * self.init_sd * self.init_sd;
            }
        }
        if let Ok(l) = crate::linalg::cholesky_named(&cov, p, "proposal covariance") {
            self.chol = l;
        }
    }
    /// `φ + L ξ`.
    pub(crate) fn propose(&self, phi: &[f64], rng: &mut crate::rng::StreamRng, out: &mut [f64]) {
        let p = self.p;
        out.copy_from_slice(phi);
        for j in 0..p {
            let xi = crate::rng::standard_normal(rng);
            for i in j..p {
                out[i] += self.chol[i * p + j] * xi;
            }
        }
    }
    /// Records the current state and the acceptance probability of iteration `i ≥ 1`.
    pub(crate) fn adapt(&mut self, i: usize, phi: &[f64], accept_prob: f64) {
        let p = self.p;
        self.n += 1;
        let nf = self.n as f64;
        let delta: Vec<f64> = (0..p).map(|k| phi[k] - self.mean[k]).collect();
        for k in 0..p {
            self.mean[k] += delta[k] / nf;
        }
        for a in 0..p {
            for b in 0..p {
                self.m2[a * p + b] += delta[a] * (phi[b] - self.mean[b]);
            }
        }
        let gamma = (i as f64 + 1.0).powf(-0.6);
        let a = if accept_prob.is_nan() {
            0.0
        } else {
            accept_prob.min(1.0)
        };
        self.log_scale = (self.log_scale + gamma * (a - self.target)).clamp(-15.0, 5.0);
        if self.n == self.n0 {
            // Switch to the empirical covariance from a neutral global scale.
            self.log_scale = 0.0;
        }
        self.refresh();
    }
}
