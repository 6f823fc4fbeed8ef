//! Particle Gibbs with ancestor sampling (Lindsten, Jordan & Schön 2014).
//!
//! One sweep: (1) a conditional SMC pass ([`csmc_as`]) with the bootstrap proposal, keeping
//! the reference trajectory at index 0, multinomial resampling of the other `N − 1` ancestors,
//! and the reference's ancestor drawn with probability `∝ w_{t−1}^j f_θ(x*_t | x_{t−1}^j)`;
//! a trajectory drawn from the final weights becomes the new reference; (2) a θ-update given
//! the trajectory: a user's [`ThetaUpdate`] (e.g. a conjugate draw) or [`RandomWalkTheta`], a
//! random-walk Metropolis–Hastings on φ whose target is the complete-data density
//! `p(θ) p_θ(x_0) Π f_θ(x_t | x_{t−1}) Π g_θ(y_t | x_t)` ([`complete_data_log_density`]).
//! Both steps leave the joint posterior `p(θ, x_{0:T−1} | y)` invariant for any `N ≥ 2`.
//!
//! A model must provide its transition and initial densities
//! ([`StateSpaceModel::has_transition_density`]); otherwise the sampler returns
//! [`SmcError::Unsupported`] `{ what: "transition density", needed_by: "particle Gibbs" }`.
//!
//! ```
//! use diffsmc::bayes::{Marginal, McmcConfig, ParticleGibbs, ProductPrior, RandomWalkTheta};
//! use diffsmc_lgssm::{Lgssm, PaperParams};
//!
//! let (_, ys) = Lgssm::paper(0.5, 1.0, 1)?.simulate(20, 1);
//! let params = PaperParams::new(1, ys)?;
//! let prior = ProductPrior::new(vec![Marginal::uniform(-1.0, 1.0)?, Marginal::uniform(0.0, 3.0)?]);
//! let config = McmcConfig::new(300, 100, 2, 5)?;
//! let update = RandomWalkTheta::new(&prior, 0.1, 5)?;
//! let post = ParticleGibbs::new(16)?.run(&params, &update, &config)?;
//! assert_eq!(post.chains[1].samples.len(), 200);
//! # Ok::<(), diffsmc::SmcError>(())
//! ```

use rand::RngExt;

use crate::bayes::mcmc::{
    Chain, McmcConfig, Posterior, TAG_CSMC, TAG_INIT, TAG_THETA, check_param_dim, log_prior_phi,
    run_chains,
};
use crate::bayes::prior::{Prior, ProductPrior};
use crate::bayes::transform::Transforms;
use crate::error::{Result, SmcError};
use crate::model::{ParametricSsm, StateSpaceModel};
use crate::rng::{Purpose, StreamKey, StreamRng};
use crate::scalar::{Scalar, log_sum_exp};

fn check_density<S: Scalar, M: StateSpaceModel<S> + ?Sized>(m: &M) -> Result<()> {
    if !m.has_transition_density() {
        return Err(SmcError::Unsupported {
            what: "transition density",
            needed_by: "particle Gibbs",
        });
    }
    Ok(())
}

/// `log p_θ(x_0) + Σ_{t≥1} log f_θ(x_t | x_{t−1}) + Σ_t log g_θ(y_t | x_t)` of a trajectory
/// (`T × d`, time-major), for any scalar.
pub fn complete_data_log_density<S: Scalar, M: StateSpaceModel<S> + ?Sized>(
    model: &M,
    path: &[S],
) -> Result<S> {
    check_density(model)?;
    let d = model.state_dim();
    let t_len = model.n_observations();
    if path.len() != d * t_len {
        return Err(SmcError::DimensionMismatch {
            what: "trajectory length (T × d)",
            expected: d * t_len,
            got: path.len(),
        });
    }
    let mut acc =
        model.initial_log_density(&path[..d])? + model.observation_log_density(0, &path[..d]);
    for t in 1..t_len {
        let xp = &path[(t - 1) * d..t * d];
        let x = &path[t * d..(t + 1) * d];
        acc += model.transition_log_density(t, xp, x)? + model.observation_log_density(t, x);
    }
    Ok(acc)
}

/// One conditional SMC pass with ancestor sampling on `model` (bootstrap proposal, `n`
/// particles, multinomial resampling at every step), conditioned on `reference` (`T × d`,
/// kept at index 0) — or, with `None`, an unconditional bootstrap filter — returning a
/// trajectory drawn from the final weights (`T × d`). `seed` fixes every draw.
///
/// Errors: `n < 2` with a reference (`n < 1` without), a model without transition density
/// ([`SmcError::Unsupported`]), a reference of the wrong length, degenerate weights.
///
/// ```
/// use diffsmc::bayes::csmc_as;
/// use diffsmc_lgssm::Lgssm;
/// let data = Lgssm::paper(0.5, 1.0, 1)?.with_data(vec![vec![0.3], vec![-0.2], vec![1.0]])?;
/// let x0 = csmc_as(&data, 8, None, 1)?;
/// let x1 = csmc_as(&data, 8, Some(&x0), 2)?;
/// assert_eq!(x1.len(), 3);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
pub fn csmc_as<M: StateSpaceModel<f64> + ?Sized>(
    model: &M,
    n: usize,
    reference: Option<&[f64]>,
    seed: u64,
) -> Result<Vec<f64>> {
    check_density(model)?;
    let cond = reference.is_some();
    if n < 1 + cond as usize {
        return Err(SmcError::invalid(
            "particles",
            n,
            "at least 2 for conditional SMC (1 without a reference)",
        ));
    }
    let d = model.state_dim();
    let t_len = model.n_observations();
    if t_len == 0 || d == 0 {
        return Err(SmcError::invalid(
            "model",
            format!("T = {t_len}, d = {d}"),
            "at least one step and one dimension",
        ));
    }
    if let Some(r) = reference
        && r.len() != t_len * d
    {
        return Err(SmcError::DimensionMismatch {
            what: "reference trajectory length (T × d)",
            expected: t_len * d,
            got: r.len(),
        });
    }
    // particles[t][i*d..], ancestors[t][i] (t ≥ 1)
    let mut xs = vec![0.0; t_len * n * d];
    let mut anc = vec![0usize; t_len * n];
    let mut lw = vec![0.0; n];
    let first = cond as usize;
    let key0 = StreamKey::new(seed, 0, Purpose::Other(TAG_CSMC));
    for i in 0..n {
        let x = &mut xs[i * d..(i + 1) * d];
        if i < first {
            x.copy_from_slice(&reference.expect("conditional")[..d]);
        } else {
            model.sample_initial(&mut key0.rng(i), x);
        }
        lw[i] = model.observation_log_density(0, x);
    }
    let mut w = vec![0.0; n];
    let normalise = |lw: &[f64], w: &mut [f64], t: usize| -> Result<()> {
        let l = log_sum_exp(lw);
        if !l.is_finite() {
            return Err(SmcError::DegenerateWeights { step: t });
        }
        for (wi, &li) in w.iter_mut().zip(lw) {
            *wi = (li - l).exp();
        }
        Ok(())
    };
    for t in 1..t_len {
        normalise(&lw, &mut w, t - 1)?;
        let key = StreamKey::new(seed, t, Purpose::Other(TAG_CSMC));
        // Multinomial ancestors for the free particles (inverse CDF, one uniform each).
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        for &wi in &w {
            acc += wi;
            cdf.push(acc);
        }
        let pick = |u: f64, cdf: &[f64]| -> usize {
            let target = u * cdf[cdf.len() - 1];
            cdf.partition_point(|&c| c <= target).min(cdf.len() - 1)
        };
        let mut rres = key.sub(1).rng(0);
        for i in first..n {
            let u: f64 = rres.random();
            anc[t * n + i] = pick(u, &cdf);
        }
        if let Some(r) = reference {
            // Ancestor sampling: ∝ w_{t−1}^j f(x*_t | x_{t−1}^j).
            let xr = &r[t * d..(t + 1) * d];
            let mut la = vec![0.0; n];
            for j in 0..n {
                let xp = &xs[((t - 1) * n + j) * d..((t - 1) * n + j + 1) * d];
                la[j] = lw[j] + model.transition_log_density(t, xp, xr)?;
            }
            let l = log_sum_exp(&la);
            if !l.is_finite() {
                return Err(SmcError::DegenerateWeights { step: t });
            }
            let mut c2 = Vec::with_capacity(n);
            let mut a2 = 0.0;
            for &v in &la {
                a2 += (v - l).exp();
                c2.push(a2);
            }
            let u: f64 = key.sub(2).rng(0).random();
            anc[t * n] = pick(u, &c2);
        }
        let (past, now) = xs.split_at_mut(t * n * d);
        let prev = &past[(t - 1) * n * d..];
        for i in 0..n {
            let x = &mut now[i * d..(i + 1) * d];
            if i < first {
                x.copy_from_slice(&reference.expect("conditional")[t * d..(t + 1) * d]);
            } else {
                let a = anc[t * n + i];
                model.sample_transition(t, &prev[a * d..(a + 1) * d], &mut key.rng(i), x);
            }
            lw[i] = model.observation_log_density(t, x);
        }
    }
    normalise(&lw, &mut w, t_len - 1)?;
    let u: f64 = StreamKey::new(seed, t_len, Purpose::Other(TAG_CSMC))
        .rng(0)
        .random();
    let mut k = {
        let mut acc = 0.0;
        let mut k = n - 1;
        for (i, &wi) in w.iter().enumerate() {
            acc += wi;
            if u < acc {
                k = i;
                break;
            }
        }
        k
    };
    let mut path = vec![0.0; t_len * d];
    for t in (0..t_len).rev() {
        path[t * d..(t + 1) * d].copy_from_slice(&xs[(t * n + k) * d..(t * n + k + 1) * d]);
        if t > 0 {
            k = anc[t * n + k];
        }
    }
    Ok(path)
}

/// A θ-update of particle Gibbs: a draw from (or an MCMC move leaving invariant)
/// `p(θ | x_{0:T−1}, y)`.
pub trait ThetaUpdate<F: ParametricSsm + ?Sized>: Sync {
    /// Number of parameters.
    fn dim(&self) -> usize;
    /// The prior density at θ (to check a start point); `-inf` outside the support.
    fn log_prior(&self, theta: &[f64]) -> f64;
    /// A draw from the prior (for start points).
    fn sample_prior(&self, rng: &mut StreamRng, out: &mut [f64]);
    /// Updates `theta` in place given the trajectory `path` (`T × d`), with `rng`; returns
    /// the number of accepted moves (for an acceptance rate) and the number proposed.
    fn update(
        &self,
        family: &F,
        path: &[f64],
        theta: &mut Vec<f64>,
        rng: &mut StreamRng,
    ) -> Result<(usize, usize)>;
}

/// Random-walk Metropolis–Hastings on φ targeting `p(θ) |dθ/dφ| p_θ(x, y)` (the complete-data
/// density), `steps` moves per sweep with a Gaussian step of sd `sd` per coordinate of φ.
#[derive(Debug, Clone)]
pub struct RandomWalkTheta<'a, Pr> {
    prior: &'a Pr,
    transforms: Transforms,
    sd: f64,
    steps: usize,
}

impl<'a> RandomWalkTheta<'a, ProductPrior> {
    /// With the prior's own transforms ([`ProductPrior::transforms`]); `sd > 0`, `steps ≥ 1`.
    pub fn new(prior: &'a ProductPrior, sd: f64, steps: usize) -> Result<Self> {
        Self::with_transforms(prior, prior.transforms(), sd, steps)
    }
}

impl<'a, Pr: Prior> RandomWalkTheta<'a, Pr> {
    /// Any prior with explicit transforms.
    pub fn with_transforms(
        prior: &'a Pr,
        transforms: Transforms,
        sd: f64,
        steps: usize,
    ) -> Result<Self> {
        if !(sd > 0.0 && sd.is_finite()) {
            return Err(SmcError::invalid(
                "θ random-walk sd",
                sd,
                "a finite number > 0",
            ));
        }
        if steps == 0 {
            return Err(SmcError::invalid(
                "θ random-walk steps",
                steps,
                "at least 1",
            ));
        }
        if transforms.dim() != prior.dim() {
            return Err(SmcError::DimensionMismatch {
                what: "transforms",
                expected: prior.dim(),
                got: transforms.dim(),
            });
        }
        Ok(RandomWalkTheta {
            prior,
            transforms,
            sd,
            steps,
        })
    }
}

impl<F: ParametricSsm, Pr: Prior> ThetaUpdate<F> for RandomWalkTheta<'_, Pr> {
    fn dim(&self) -> usize {
        self.prior.dim()
    }
    fn log_prior(&self, theta: &[f64]) -> f64 {
        self.prior.log_density::<f64>(theta)
    }
    fn sample_prior(&self, rng: &mut StreamRng, out: &mut [f64]) {
        self.prior.sample(rng, out)
    }
    fn update(
        &self,
        family: &F,
        path: &[f64],
        theta: &mut Vec<f64>,
        rng: &mut StreamRng,
    ) -> Result<(usize, usize)> {
        let target = |phi: &[f64]| -> Result<(Vec<f64>, f64)> {
            let (th, lp) = log_prior_phi(self.prior, &self.transforms, phi);
            if !lp.is_finite() {
                return Ok((th, f64::NEG_INFINITY));
            }
            let m = family.ssm::<f64>(&th)?;
            let l = complete_data_log_density(&m, path)?;
            Ok((th, lp + l))
        };
        let mut phi = self.transforms.inverse(theta)?;
        let (_, mut cur) = target(&phi)?;
        let mut acc = 0;
        let mut prop = phi.clone();
        for _ in 0..self.steps {
            for (q, &p) in prop.iter_mut().zip(&phi) {
                *q = p + self.sd * crate::rng::standard_normal(rng);
            }
            let (th, new) = target(&prop)?;
            let u: f64 = rng.random();
            if new.is_finite() && u.ln() < new - cur {
                phi.copy_from_slice(&prop);
                *theta = th;
                cur = new;
                acc += 1;
            }
        }
        Ok((acc, self.steps))
    }
}

/// The particle Gibbs sampler's knobs: the particle count of the conditional SMC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParticleGibbs {
    n_particles: usize,
}

impl ParticleGibbs {
    /// `n_particles ≥ 2`.
    pub fn new(n_particles: usize) -> Result<Self> {
        if n_particles < 2 {
            return Err(SmcError::invalid(
                "particles",
                n_particles,
                "at least 2 for particle Gibbs",
            ));
        }
        Ok(ParticleGibbs { n_particles })
    }
    /// The particle count.
    pub fn n_particles(&self) -> usize {
        self.n_particles
    }

    /// Runs the chains (one sweep per iteration: CSMC-AS, then the θ-update). The recorded
    /// acceptance is that of the θ-update.
    pub fn run<F: ParametricSsm, U: ThetaUpdate<F>>(
        &self,
        family: &F,
        update: &U,
        config: &McmcConfig,
    ) -> Result<Posterior> {
        self.run_with(family, update, config, &|| {})
    }

    /// [`ParticleGibbs::run`] with a progress callback (after every iteration of every chain).
    pub fn run_with<F: ParametricSsm, U: ThetaUpdate<F>>(
        &self,
        family: &F,
        update: &U,
        config: &McmcConfig,
        progress: &(dyn Fn() + Sync),
    ) -> Result<Posterior> {
        check_param_dim(
            "θ-update dimension vs model parameters",
            family.n_params(),
            update.dim(),
        )?;
        run_chains("pgibbs", config, |c| {
            self.chain(family, update, config, c, progress)
        })
    }

    fn chain<F: ParametricSsm, U: ThetaUpdate<F>>(
        &self,
        family: &F,
        update: &U,
        config: &McmcConfig,
        c: usize,
        progress: &(dyn Fn() + Sync),
    ) -> Result<Chain> {
        let cs = config.chain_seed(c);
        let p = update.dim();
        // Start: θ from the configuration or the prior, x from an unconditional filter.
        let key = StreamKey::new(cs, 0, Purpose::Other(TAG_INIT));
        let mut theta = vec![0.0; p];
        let mut path = None;
        let mut last_err = None;
        for k in 0..crate::bayes::mcmc::MAX_INIT_TRIES {
            if let Some(init) = config.init() {
                if init.len() != p {
                    return Err(SmcError::DimensionMismatch {
                        what: "initial θ",
                        expected: p,
                        got: init.len(),
                    });
                }
                theta.copy_from_slice(init);
                if !update.log_prior(&theta).is_finite() {
                    return Err(SmcError::invalid(
                        "initial θ",
                        format!("{init:?}"),
                        "a point where the prior density is positive and finite",
                    ));
                }
            } else {
                update.sample_prior(&mut key.rng(k), &mut theta);
                if !update.log_prior(&theta).is_finite() {
                    continue;
                }
            }
            let m = family.ssm::<f64>(&theta)?;
            match csmc_as(
                &m,
                self.n_particles,
                None,
                key.sub(k as u64).rng(0).random(),
            ) {
                Ok(x) => {
                    path = Some(x);
                    break;
                }
                Err(SmcError::DegenerateWeights { step }) => {
                    last_err = Some(SmcError::DegenerateWeights { step });
                    if config.init().is_some() {
                        break;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let Some(mut path) = path else {
            return Err(last_err.unwrap_or_else(|| {
                SmcError::invalid(
                    "prior",
                    "no draw with positive density",
                    "a prior with draws of finite density (set an initial θ)",
                )
            }));
        };
        let kept = config.kept();
        let mut out = Chain {
            samples: Vec::with_capacity(kept),
            log_likelihood: Vec::with_capacity(kept),
            accepted: 0,
            proposed: 0,
            burn_in_acceptance: f64::NAN,
            final_scale: f64::NAN,
        };
        let (mut b_acc, mut b_prop) = (0usize, 0usize);
        for i in 1..=config.iterations() {
            let m = family.ssm::<f64>(&theta)?;
            let seed = crate::rng::derive_seed(cs, i as u64);
            path = csmc_as(&m, self.n_particles, Some(&path), seed)?;
            let mut rng = StreamKey::new(cs, i, Purpose::Other(TAG_THETA)).rng(0);
            let (a, n) = update.update(family, &path, &mut theta, &mut rng)?;
            if i <= config.burn_in() {
                b_acc += a;
                b_prop += n;
            } else {
                out.accepted += a;
                out.proposed += n;
                out.samples.push(theta.clone());
                let m = family.ssm::<f64>(&theta)?;
                out.log_likelihood
                    .push(complete_data_log_density(&m, &path)?);
            }
            progress();
        }
        out.burn_in_acceptance = if b_prop > 0 {
            b_acc as f64 / b_prop as f64
        } else {
            f64::NAN
        };
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoDensity;
    impl StateSpaceModel<f64> for NoDensity {
        fn state_dim(&self) -> usize {
            1
        }
        fn n_observations(&self) -> usize {
            2
        }
        fn sample_initial(&self, _rng: &mut StreamRng, x: &mut [f64]) {
            x[0] = 0.0;
        }
        fn sample_transition(&self, _t: usize, xp: &[f64], _rng: &mut StreamRng, x: &mut [f64]) {
            x[0] = xp[0];
        }
        fn observation_log_density(&self, _t: usize, _x: &[f64]) -> f64 {
            0.0
        }
    }

    #[test]
    fn a_model_without_transition_density_is_unsupported() {
        let e = csmc_as(&NoDensity, 4, None, 0).unwrap_err();
        assert_eq!(
            e,
            SmcError::Unsupported {
                what: "transition density",
                needed_by: "particle Gibbs"
            }
        );
        assert!(ParticleGibbs::new(1).is_err());
    }
}
