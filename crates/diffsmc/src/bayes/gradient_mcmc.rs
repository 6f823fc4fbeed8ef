//! Gradient-based particle MCMC: MALA and HMC proposals on the unconstrained parameters φ,
//! driven by the dual-number gradient of the particle filter's log-likelihood estimate.
//!
//! # Which target is sampled
//!
//! Write `U` for the random numbers of one filter run (in practice its seed) and
//! `p̂(y | θ, U)` for the estimate. With an index resampler (multinomial, systematic,
//! stratified, residual) `E_U p̂(y | θ, U) = p(y | θ)`, so the extended target
//! `π̄(φ, U) ∝ π(θ(φ)) |dθ/dφ| p̂(y | θ(φ), U) p(U)` has the posterior as its φ-marginal.
//! Both samplers are exact Metropolis–Hastings chains on this extended space:
//!
//! - **MALA** keeps `(φ, U)` and the gradient `g(φ, U)` of `log π̄(·, U)`. A proposal draws a
//!   fresh `U' ~ p(U)` (seed `derive_seed(chain seed, iteration)`) and
//!   `φ' = φ + (h²/2) D g(φ, U) + h D^{1/2} ξ` (`D` a diagonal preconditioner), evaluates
//!   value and gradient at `(φ', U')` in one dual-number run (common random numbers), and
//!   accepts with `π̄(φ', U') q_{U'}(φ | φ') / (π̄(φ, U) q_U(φ' | φ))`. The proposal kernel is
//!   `p(U') q_U(φ' | φ)`, its reverse `p(U) q_{U'}(φ | φ')`; the `p(U)` factors cancel, so
//!   this is exactly MH for `π̄`.
//! - **HMC** draws per iteration a momentum `ρ ~ N(0, D⁻¹)`, a trajectory seed `W` and an end
//!   seed `U'`, both fresh. All `L` leapfrog steps (and the gradient at the start point) use
//!   the gradient of `log π̄(·, W)`: common random numbers along the trajectory, so it follows
//!   one smooth (piecewise smooth under index resampling) energy surface. The accept ratio
//!   is `π̄(φ', U') N(ρ'; 0, D⁻¹) / (π̄(φ, U) N(ρ; 0, D⁻¹))`, with the end point's estimate
//!   computed with its own seed `U'` (one extra `f64` filter run) and the current one kept.
//!   This is exact: on the space `(φ, ρ, U, U', W)` with target `π̄(φ, U) p(U') p(W) N(ρ)`
//!   the map `(φ, ρ, U, U', W) ↦ (leapfrog_W(φ, ρ) with ρ flipped, U', U, W)` is a
//!   volume-preserving involution, and MH with it accepts with exactly that ratio. (Reusing
//!   the trajectory seed for the end-point estimate, `U' = W`, would break the involution —
//!   the reverse move would integrate with `U` — and is *not* exact; that is why the end point
//!   gets its own seed.)
//!
//! Under a differentiable resampler (diffusion, OT, soft, Gumbel) `p̂` is biased and both
//! chains target `π(θ) E_U[p̂(y | θ, U)]`, an approximation of the posterior. The gradient
//! itself need not be exact for either chain to be correct: it only shapes the proposal.
//!
//! During burn-in the step size is tuned by Robbins–Monro towards a target acceptance
//! (0.574 for MALA, 0.65 for HMC) of the *common-random-numbers* ratio — for HMC the energy
//! change along the trajectory (all with seed `W`), for MALA the ratio with the current point
//! re-estimated with the proposal's seed `U'` (one extra `f64` filter run, burn-in only). The
//! pseudo-marginal ratio itself cannot be tuned on: its acceptance is capped by the noise of
//! the log-likelihood estimate, so a target above that cap would drive the step size to zero.
//! The diagonal preconditioner `D` is set at mid burn-in to the variance of φ over the second
//! quarter of burn-in (if the chain accepted at least 10% there). Both are frozen afterwards.
//!
//! ```
//! use diffsmc::bayes::{GradientPmcmc, Marginal, McmcConfig, ProductPrior};
//! use diffsmc::{ResamplerSpec, SmcConfig};
//! use diffsmc_lgssm::{Lgssm, PaperParams};
//!
//! let (_, ys) = Lgssm::paper(0.5, 1.0, 1)?.simulate(20, 1);
//! let params = PaperParams::new(1, ys)?;
//! let prior = ProductPrior::new(vec![Marginal::uniform(-1.0, 1.0)?, Marginal::uniform(0.0, 3.0)?]);
//! let config = McmcConfig::new(100, 50, 1, 3)?;
//! let smc = SmcConfig::new(32)?;
//! let post = GradientPmcmc::mala(0.3)?.run(&params, &smc, &ResamplerSpec::Systematic, &prior, &config)?;
//! assert_eq!(post.chains[0].samples.len(), 50);
//! # Ok::<(), diffsmc::SmcError>(())
//! ```

use rand::RngExt;

use crate::bayes::mcmc::{
    Chain, LogLikelihood, McmcConfig, PfLikelihood, Posterior, TAG_ACCEPT, TAG_PROPOSE,
    check_param_dim, log_prior_phi, run_chains, start_point,
};
use crate::bayes::prior::{Prior, ProductPrior};
use crate::bayes::transform::Transforms;
use crate::error::{Result, SmcError};
use crate::grad::{
    BuildResampler, Differentiable, GradMode, GradOptions, Parametric, ParticleFilterNll, gradient,
};
use crate::rng::{Purpose, StreamKey, derive_seed, standard_normal};
use crate::scalar::Scalar;
use crate::smc::SmcConfig;

/// The one place the particle filter's gradient is computed: `(log p̂, ∇_θ log p̂)` with
/// seed `seed` (forward-mode duals; common random numbers across chunks).
fn pf_loglik_and_gradient<P: Parametric, B: BuildResampler>(
    model: &P,
    theta: &[f64],
    smc: &SmcConfig,
    resampler: &B,
    seed: u64,
) -> Result<(f64, Vec<f64>)> {
    let nll = ParticleFilterNll::new(model, smc, resampler, seed);
    let (nll, g) = gradient(
        &nll,
        theta,
        &GradOptions::default().with_mode(GradMode::Forward),
    )?;
    Ok((-nll, g.into_iter().map(|v| -v).collect()))
}

/// `log p(θ(φ)) + log |dθ/dφ|` as a function of φ, for its dual-number gradient.
struct PriorPhi<'a, Pr> {
    prior: &'a Pr,
    transforms: &'a Transforms,
}

impl<Pr: Prior> Differentiable for PriorPhi<'_, Pr> {
    fn n_params(&self) -> usize {
        self.prior.dim()
    }
    fn eval<S: Scalar>(&self, phi: &[S]) -> Result<S> {
        let (theta, logj) = self.transforms.forward(phi);
        Ok(self.prior.log_density(&theta) + logj)
    }
}

/// The proposal of a [`GradientPmcmc`] sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GradientProposal {
    /// Metropolis-adjusted Langevin.
    Mala,
    /// Hamiltonian Monte Carlo with `leapfrog` steps.
    Hmc {
        /// Leapfrog steps per proposal (≥ 1).
        leapfrog: usize,
    },
}

/// A gradient-based particle MCMC sampler (see the module docs for the target).
///
/// ```
/// use diffsmc::bayes::GradientPmcmc;
/// assert!(GradientPmcmc::mala(0.0).is_err());
/// assert!(GradientPmcmc::hmc(0.1, 0).is_err());
/// let h = GradientPmcmc::hmc(0.1, 5)?.with_adaptation(false);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GradientPmcmc {
    proposal: GradientProposal,
    step_size: f64,
    target_acceptance: f64,
    adapt: bool,
}

impl GradientPmcmc {
    /// MALA with initial step size `h > 0` (adapted during burn-in towards acceptance 0.574).
    pub fn mala(step_size: f64) -> Result<Self> {
        Self::new(GradientProposal::Mala, step_size, 0.574)
    }
    /// HMC with step size `ε > 0` and `leapfrog ≥ 1` steps (adapted towards acceptance 0.65).
    pub fn hmc(step_size: f64, leapfrog: usize) -> Result<Self> {
        if leapfrog == 0 {
            return Err(SmcError::invalid("leapfrog steps", leapfrog, "at least 1"));
        }
        Self::new(GradientProposal::Hmc { leapfrog }, step_size, 0.65)
    }
    fn new(proposal: GradientProposal, step_size: f64, target: f64) -> Result<Self> {
        if !(step_size > 0.0 && step_size.is_finite()) {
            return Err(SmcError::invalid(
                "step size",
                step_size,
                "a finite number > 0",
            ));
        }
        Ok(GradientPmcmc {
            proposal,
            step_size,
            target_acceptance: target,
            adapt: true,
        })
    }
    /// The acceptance rate the step-size adaptation aims at, in `(0, 1)`.
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
    /// Turns the burn-in adaptation (step size and preconditioner) on or off.
    pub fn with_adaptation(mut self, yes: bool) -> Self {
        self.adapt = yes;
        self
    }
    /// `"pmala"` or `"phmc"`.
    pub fn method_name(&self) -> &'static str {
        match self.proposal {
            GradientProposal::Mala => "pmala",
            GradientProposal::Hmc { .. } => "phmc",
        }
    }

    /// Runs the sampler on a [`Parametric`] model with a product prior (moving in its
    /// transforms).
    pub fn run<P: Parametric, B: BuildResampler>(
        &self,
        model: &P,
        smc: &SmcConfig,
        resampler: &B,
        prior: &ProductPrior,
        config: &McmcConfig,
    ) -> Result<Posterior> {
        self.run_with(
            model,
            smc,
            resampler,
            prior,
            &prior.transforms(),
            config,
            &|| {},
        )
    }

    /// Any prior and transforms, with a progress callback.
    pub fn run_with<P: Parametric, B: BuildResampler, Pr: Prior>(
        &self,
        model: &P,
        smc: &SmcConfig,
        resampler: &B,
        prior: &Pr,
        transforms: &Transforms,
        config: &McmcConfig,
        progress: &(dyn Fn() + Sync),
    ) -> Result<Posterior> {
        check_param_dim(
            "prior dimension vs model parameters",
            model.n_params(),
            prior.dim(),
        )?;
        let t = Target {
            model,
            smc,
            resampler,
            prior,
            transforms,
        };
        run_chains(self.method_name(), config, |c| {
            self.chain(&t, config, c, progress)
        })
    }

    fn chain<P: Parametric, B: BuildResampler, Pr: Prior>(
        &self,
        t: &Target<'_, P, B, Pr>,
        config: &McmcConfig,
        c: usize,
        progress: &(dyn Fn() + Sync),
    ) -> Result<Chain> {
        let cs = config.chain_seed(c);
        let p = t.prior.dim();
        let mut cur: Option<Point> = None;
        let mut phi = start_point(config, t.prior, t.transforms, cs, |phi| {
            cur = t.eval(phi, derive_seed(cs, 0))?;
            Ok(cur.is_some())
        })?;
        let mut cur = cur.expect("start point is finite");
        let mut log_h = self.step_size.ln();
        let mut dvar = vec![1.0; p];
        let (mut wn, mut wacc, mut wmean, mut wm2) = (0usize, 0usize, vec![0.0; p], vec![0.0; p]);
        let kept = config.kept();
        let mut out = Chain {
            samples: Vec::with_capacity(kept),
            log_likelihood: Vec::with_capacity(kept),
            accepted: 0,
            proposed: 0,
            burn_in_acceptance: f64::NAN,
            final_scale: self.step_size,
        };
        let burn = config.burn_in();
        let mut burn_acc = 0usize;
        for i in 1..=config.iterations() {
            let h = log_h.exp();
            let mut rng = StreamKey::new(cs, i, Purpose::Other(TAG_PROPOSE)).rng(0);
            let seed_end = derive_seed(cs, i as u64);
            let tuning = self.adapt && i <= burn;
            // (proposal, log acceptance ratio, acceptance probability used for tuning)
            let (prop, log_alpha, tune_prob) = match self.proposal {
                GradientProposal::Mala => {
                    let mut prop = vec![0.0; p];
                    for j in 0..p {
                        prop[j] = phi[j]
                            + 0.5 * h * h * dvar[j] * cur.grad[j]
                            + h * dvar[j].sqrt() * standard_normal(&mut rng);
                    }
                    let new = t.eval(&prop, seed_end)?;
                    match new {
                        Some(new) => {
                            let lq = |to: &[f64], from: &[f64], g: &[f64]| -> f64 {
                                (0..p)
                                    .map(|j| {
                                        let m = from[j] + 0.5 * h * h * dvar[j] * g[j];
                                        -(to[j] - m).powi(2) / (2.0 * h * h * dvar[j])
                                    })
                                    .sum()
                            };
                            let lq_ratio = lq(&phi, &prop, &new.grad) - lq(&prop, &phi, &cur.grad);
                            let la = new.value - cur.value + lq_ratio;
                            // Tuning: the same ratio with common random numbers (the current
                            // point re-estimated with U'), free of the estimator's noise.
                            let tp = if tuning {
                                match t.eval_value(&phi, seed_end)? {
                                    Some(c0) => (new.value - c0.value + lq_ratio).min(0.0).exp(),
                                    None => 1.0,
                                }
                            } else {
                                f64::NAN
                            };
                            (Some((prop, new)), la, tp)
                        }
                        None => (None, f64::NEG_INFINITY, 0.0),
                    }
                }
                GradientProposal::Hmc { leapfrog } => {
                    let seed_traj = derive_seed(seed_end, 1);
                    let mut rho: Vec<f64> = (0..p)
                        .map(|j| standard_normal(&mut rng) / dvar[j].sqrt())
                        .collect();
                    let kinetic = |r: &[f64]| -> f64 {
                        0.5 * (0..p).map(|j| r[j] * r[j] * dvar[j]).sum::<f64>()
                    };
                    let k0 = kinetic(&rho);
                    let mut x = phi.clone();
                    let mut ok = true;
                    // Energy change along the trajectory with its own seed W (CRN): what
                    // the step size is tuned on, free of the estimator's noise.
                    let mut crn_delta = f64::NEG_INFINITY;
                    match t.eval(&x, seed_traj)? {
                        None => ok = false,
                        Some(start) => {
                            let mut g = start.grad;
                            let mut v_end = start.value;
                            for _ in 0..leapfrog {
                                for j in 0..p {
                                    rho[j] += 0.5 * h * g[j];
                                    x[j] += h * dvar[j] * rho[j];
                                }
                                match t.eval(&x, seed_traj)? {
                                    Some(pt) => {
                                        g = pt.grad;
                                        v_end = pt.value;
                                    }
                                    None => {
                                        ok = false;
                                        break;
                                    }
                                }
                                for j in 0..p {
                                    rho[j] += 0.5 * h * g[j];
                                }
                            }
                            if ok {
                                crn_delta = v_end - kinetic(&rho) - (start.value - k0);
                            }
                        }
                    }
                    let tp = crn_delta.min(0.0).exp();
                    if ok && let Some(end) = t.eval_value(&x, seed_end)? {
                        let la = end.value - kinetic(&rho) - (cur.value - k0);
                        (Some((x, end)), la, tp)
                    } else {
                        (None, f64::NEG_INFINITY, 0.0)
                    }
                }
            };
            let log_alpha = if log_alpha.is_nan() {
                f64::NEG_INFINITY
            } else {
                log_alpha
            };
            let u: f64 = StreamKey::new(cs, i, Purpose::Other(TAG_ACCEPT))
                .rng(0)
                .random();
            let accept = u.ln() < log_alpha;
            if accept && let Some((x, pt)) = prop {
                phi = x;
                cur = pt;
            }
            if i <= burn {
                burn_acc += accept as usize;
                if self.adapt {
                    let gamma = (i as f64 + 1.0).powf(-0.6);
                    let a = if tune_prob.is_nan() { 0.0 } else { tune_prob };
                    log_h = (log_h + gamma * (a - self.target_acceptance)).clamp(-20.0, 5.0);
                    // Variance of φ over the second quarter of burn-in → preconditioner at
                    // mid burn-in (only with enough draws to estimate it).
                    if i > burn / 4 && i <= burn / 2 {
                        wacc += accept as usize;
                        wn += 1;
                        for j in 0..p {
                            let dl = phi[j] - wmean[j];
                            wmean[j] += dl / wn as f64;
                            wm2[j] += dl * (phi[j] - wmean[j]);
                        }
                    }
                    // Only from a window where the chain moved (≥ 10% accepted); otherwise
                    // D stays the identity.
                    if i == burn / 2 && wn >= 20 && wacc * 10 >= wn {
                        for j in 0..p {
                            let v = wm2[j] / (wn - 1) as f64;
                            if v.is_finite() && v > 0.0 {
                                dvar[j] = v.clamp(1e-6, 1e4);
                            }
                        }
                        // The gradient is unchanged; the stored drift uses the new D from
                        // here on (burn-in only).
                    }
                }
                if i == burn {
                    out.final_scale = log_h.exp();
                }
            } else {
                out.proposed += 1;
                out.accepted += accept as usize;
                out.samples.push(cur.theta.clone());
                out.log_likelihood.push(cur.loglik);
            }
            progress();
        }
        out.burn_in_acceptance = if burn > 0 {
            burn_acc as f64 / burn as f64
        } else {
            f64::NAN
        };
        Ok(out)
    }
}

/// A point of the chain: θ, `log π̄(φ, U)`, its φ-gradient, and the log-likelihood.
#[derive(Debug, Clone)]
struct Point {
    theta: Vec<f64>,
    value: f64,
    grad: Vec<f64>,
    loglik: f64,
}

struct Target<'a, P, B, Pr> {
    model: &'a P,
    smc: &'a SmcConfig,
    resampler: &'a B,
    prior: &'a Pr,
    transforms: &'a Transforms,
}

impl<P: Parametric, B: BuildResampler, Pr: Prior> Target<'_, P, B, Pr> {
    /// Value and φ-gradient of `log π̄(φ, seed)`; `None` outside the support or when the
    /// filter's weights degenerate (a zero estimate).
    fn eval(&self, phi: &[f64], seed: u64) -> Result<Option<Point>> {
        if phi.iter().any(|v| !v.is_finite()) {
            return Ok(None);
        }
        let (theta, lp) = log_prior_phi(self.prior, self.transforms, phi);
        if !lp.is_finite() {
            return Ok(None);
        }
        let (ll, gll) =
            match pf_loglik_and_gradient(self.model, &theta, self.smc, self.resampler, seed) {
                Ok(v) => v,
                Err(SmcError::DegenerateWeights { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
        if !ll.is_finite() || gll.iter().any(|g| !g.is_finite()) {
            return Ok(None);
        }
        let prior_phi = PriorPhi {
            prior: self.prior,
            transforms: self.transforms,
        };
        let (_, gprior) = gradient(
            &prior_phi,
            phi,
            &GradOptions::default().with_mode(GradMode::Forward),
        )?;
        let grad = (0..phi.len())
            .map(|j| {
                let (th, _) =
                    self.transforms.transforms()[j].forward(num_dual::Dual64::new(phi[j], 1.0));
                gll[j] * th.eps + gprior[j]
            })
            .collect();
        Ok(Some(Point {
            theta,
            value: ll + lp,
            grad,
            loglik: ll,
        }))
    }

    /// The value alone (an `f64` filter run), for HMC's end point.
    fn eval_value(&self, phi: &[f64], seed: u64) -> Result<Option<Point>> {
        if phi.iter().any(|v| !v.is_finite()) {
            return Ok(None);
        }
        let (theta, lp) = log_prior_phi(self.prior, self.transforms, phi);
        if !lp.is_finite() {
            return Ok(None);
        }
        let ll = PfLikelihood::new(self.model, self.smc.clone(), self.resampler)
            .log_likelihood(&theta, seed)?;
        if !ll.is_finite() {
            return Ok(None);
        }
        // The gradient is not needed at an HMC end point (each trajectory recomputes it
        // with its own seed).
        Ok(Some(Point {
            theta,
            value: ll + lp,
            grad: vec![0.0; phi.len()],
            loglik: ll,
        }))
    }
}
