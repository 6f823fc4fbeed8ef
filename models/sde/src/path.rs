//! Discretely observed paths: the observations, the path log-likelihood as a sum of bridge
//! estimates over the intervals, and the objectives the optimisers minimise.

use diffsmc::grad::{BuildResampler, Differentiable, GradOptions, gradient};
use diffsmc::linalg::{cholesky_named, cholesky_solve};
use diffsmc::rng::derive_seed;
use diffsmc::{Resampler, Result, Scalar, Smc, SmcConfig, SmcError, SmcOutput, Trigger};

use crate::bridge::{Bridge, BridgeProposal, Lookahead};
use crate::models::{Ou, SdeFamily};
use crate::sde::Sde;

/// A path observed exactly at `n ≥ 2` strictly increasing times (irregular spacing allowed):
/// `y_0, …, y_{n−1}` in `R^d`. The likelihood is conditional on `y_0`.
///
/// ```
/// use diffsmc_sde::Observations;
/// let obs = Observations::new(vec![0.0, 0.5, 1.25], vec![vec![1.0], vec![0.8], vec![0.3]])?;
/// assert_eq!((obs.len(), obs.n_intervals(), obs.dim()), (3, 2, 1));
/// let (dt, a, b) = obs.interval(1);
/// assert_eq!((dt, a, b), (0.75, &[0.8][..], &[0.3][..]));
/// assert!(Observations::new(vec![0.0, 0.0], vec![vec![1.0], vec![2.0]]).is_err());
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Observations {
    times: Vec<f64>,
    values: Vec<f64>,
    dim: usize,
}

impl Observations {
    /// Validated: as many rows as times, at least 2, every row of the same length `d ≥ 1`,
    /// finite values, finite and strictly increasing times.
    pub fn new(times: Vec<f64>, values: Vec<Vec<f64>>) -> Result<Self> {
        if times.len() != values.len() {
            return Err(SmcError::DimensionMismatch {
                what: "observation rows vs times",
                expected: times.len(),
                got: values.len(),
            });
        }
        if times.len() < 2 {
            return Err(SmcError::invalid(
                "number of observations",
                times.len(),
                "at least 2 (one interval)",
            ));
        }
        let dim = values[0].len();
        if dim == 0 {
            return Err(SmcError::invalid("observation dimension", 0, "at least 1"));
        }
        let mut flat = Vec::with_capacity(dim * values.len());
        for (k, row) in values.iter().enumerate() {
            if row.len() != dim {
                return Err(SmcError::DimensionMismatch {
                    what: "observation row length",
                    expected: dim,
                    got: row.len(),
                });
            }
            if let Some((j, v)) = row.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(SmcError::NonFinite {
                    what: "observation (missing values are not supported)",
                    step: k,
                    component: j,
                    value: *v,
                });
            }
            flat.extend_from_slice(row);
        }
        if let Some(k) = times.iter().position(|t| !t.is_finite()) {
            return Err(SmcError::NonFinite {
                what: "observation time",
                step: k,
                component: 0,
                value: times[k],
            });
        }
        if let Some(k) = (1..times.len()).find(|&k| times[k] <= times[k - 1]) {
            return Err(SmcError::invalid(
                "observation times",
                format!(
                    "t[{k}] = {} after t[{}] = {}",
                    times[k],
                    k - 1,
                    times[k - 1]
                ),
                "strictly increasing times",
            ));
        }
        Ok(Observations {
            times,
            values: flat,
            dim,
        })
    }

    /// Number of observations `n`.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Always `false` (at least two observations).
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Number of intervals `n − 1`.
    pub fn n_intervals(&self) -> usize {
        self.times.len() - 1
    }

    /// The state dimension `d`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The observation times.
    pub fn times(&self) -> &[f64] {
        &self.times
    }

    /// Observation `k`.
    pub fn value(&self, k: usize) -> &[f64] {
        &self.values[k * self.dim..(k + 1) * self.dim]
    }

    /// Interval `k`: its length `t_{k+1} − t_k` and its end points `y_k`, `y_{k+1}`.
    pub fn interval(&self, k: usize) -> (f64, &[f64], &[f64]) {
        (
            self.times[k + 1] - self.times[k],
            self.value(k),
            self.value(k + 1),
        )
    }
}

/// How each interval's transition density is estimated: sub-steps `M`, the bridge proposal,
/// the look-ahead twist, and the SMC configuration (particles, trigger). The default trigger
/// is [`Trigger::Never`] — importance sampling of bridges, a smooth function of θ for a fixed
/// seed.
///
/// ```
/// use diffsmc::Trigger;
/// use diffsmc_sde::BridgeSettings;
/// let s = BridgeSettings::new(256, 16)?.with_trigger(Trigger::EssBelow(0.5))?;
/// assert_eq!((s.particles(), s.substeps()), (256, 16));
/// assert!(BridgeSettings::new(256, 0).is_err());
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeSettings {
    substeps: usize,
    proposal: BridgeProposal,
    lookahead: Lookahead,
    smc: SmcConfig,
}

impl BridgeSettings {
    /// `particles ≥ 1`, `substeps ≥ 1`; modified diffusion bridge, Brownian look-ahead, no
    /// resampling.
    pub fn new(particles: usize, substeps: usize) -> Result<Self> {
        if substeps == 0 {
            return Err(SmcError::invalid("substeps", substeps, "at least 1"));
        }
        Ok(BridgeSettings {
            substeps,
            proposal: BridgeProposal::default(),
            lookahead: Lookahead::default(),
            smc: SmcConfig::new(particles)?.with_trigger(Trigger::Never)?,
        })
    }
    /// Sets the bridge proposal.
    pub fn with_proposal(mut self, proposal: BridgeProposal) -> Self {
        self.proposal = proposal;
        self
    }
    /// Sets the look-ahead twist (see [`Bridge::with_lookahead`]).
    pub fn with_lookahead(mut self, lookahead: Lookahead) -> Self {
        self.lookahead = lookahead;
        self
    }
    /// The look-ahead twist.
    pub fn lookahead(&self) -> Lookahead {
        self.lookahead
    }
    /// Sets the resampling trigger (validated).
    pub fn with_trigger(mut self, trigger: Trigger) -> Result<Self> {
        self.smc = self.smc.with_trigger(trigger)?;
        Ok(self)
    }
    /// Number of sub-steps per interval.
    pub fn substeps(&self) -> usize {
        self.substeps
    }
    /// Particles per interval.
    pub fn particles(&self) -> usize {
        self.smc.n_particles()
    }
    /// The proposal.
    pub fn proposal(&self) -> BridgeProposal {
        self.proposal
    }
    /// The trigger.
    pub fn trigger(&self) -> Trigger {
        self.smc.trigger()
    }
    /// The SMC configuration of each interval.
    pub fn smc(&self) -> &SmcConfig {
        &self.smc
    }

    /// The bridge model of interval `k` of `obs`.
    pub fn bridge<'a, S: Scalar, D: Sde<S> + ?Sized>(
        &self,
        sde: &'a D,
        obs: &Observations,
        k: usize,
    ) -> Result<Bridge<'a, S, D>> {
        let (dt, a, b) = obs.interval(k);
        Ok(
            Bridge::new(sde, a, b, dt, self.substeps, self.proposal)?
                .with_lookahead(self.lookahead),
        )
    }
}

/// The seed of interval `k`'s SMC run in a path run seeded with `seed`.
pub fn interval_seed(seed: u64, k: usize) -> u64 {
    derive_seed(seed, k as u64)
}

fn check_dims<S: Scalar, D: Sde<S> + ?Sized>(sde: &D, obs: &Observations) -> Result<()> {
    if sde.dim() != obs.dim() {
        return Err(SmcError::DimensionMismatch {
            what: "observations vs SDE dimension",
            expected: sde.dim(),
            got: obs.dim(),
        });
    }
    Ok(())
}

/// Runs `f` on every interval's SMC output (in parallel over intervals, each its own run
/// seeded with [`interval_seed`]) and returns the results in interval order: deterministic for
/// a seed whatever the number of threads.
pub fn map_intervals<S, D, R, T, F>(
    sde: &D,
    obs: &Observations,
    settings: &BridgeSettings,
    resampler: &R,
    seed: u64,
    f: F,
) -> Result<Vec<Result<T>>>
where
    S: Scalar,
    D: Sde<S> + ?Sized,
    R: Resampler<S> + ?Sized,
    T: Send,
    F: Fn(usize, SmcOutput<S>) -> T + Sync + Send,
{
    check_dims(sde, obs)?;
    let smc = Smc::new(settings.smc.clone());
    // One chunk per interval; sequential for tape scalars (diffsmc::par's guard).
    Ok(diffsmc::par::map_chunks::<S, _>(obs.n_intervals(), |k| {
        let bridge = settings.bridge(sde, obs, k)?;
        let out = smc.run(&bridge, resampler, interval_seed(seed, k))?;
        Ok(f(k, out))
    }))
}

/// The path log-likelihood estimate and per-interval diagnostics.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PathEstimate<S> {
    /// `Σ_k log p̂(y_{k+1} | y_k)`.
    pub log_likelihood: S,
    /// Per interval: `log p̂(y_{k+1} | y_k)`.
    pub intervals: Vec<S>,
    /// Per interval: the effective sample size of the final weights (the importance-sampling
    /// ESS without resampling), as a fraction of the particles.
    pub final_ess_fraction: Vec<f64>,
    /// Per interval: the smallest ESS over the sub-steps, as a fraction of the particles.
    pub min_ess_fraction: Vec<f64>,
    /// Total number of resampling steps over all intervals.
    pub resampled_steps: usize,
}

/// Estimates `log p_θ(y_1, …, y_{n−1} | y_0) = Σ_k log p_θ(y_{k+1} | y_k)` by one bridge SMC
/// run per interval (in parallel, each seeded with [`interval_seed`]). With the default
/// [`Trigger::Never`] it is importance sampling of bridges; in exp scale it is an unbiased
/// estimate of the `M`-sub-step Euler likelihood, since the intervals' estimates are
/// independent.
///
/// Errors: dimensions that disagree, invalid settings, and the first failing interval's error
/// (e.g. [`SmcError::DegenerateWeights`], whose `step` is the sub-step within the interval).
///
/// ```
/// use diffsmc::ResamplerSpec;
/// use diffsmc_sde::{BridgeSettings, Ou, path_log_likelihood};
///
/// let ou = Ou::new(2.0, 0.0, 0.5, 1)?;
/// let times: Vec<f64> = (0..21).map(|k| 0.1 * k as f64).collect();
/// let obs = ou.simulate_exact(&[0.5], &times, 7)?;
/// let settings = BridgeSettings::new(256, 8)?;
/// let est = path_log_likelihood::<f64, _, _>(&ou, &obs, &settings, &ResamplerSpec::Systematic, 1)?;
/// let euler = ou.euler_log_likelihood(&obs, 8)?;
/// assert!((est.log_likelihood - euler).abs() < 0.05);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
pub fn path_log_likelihood<S, D, B>(
    sde: &D,
    obs: &Observations,
    settings: &BridgeSettings,
    resampler: &B,
    seed: u64,
) -> Result<PathEstimate<S>>
where
    S: Scalar,
    D: Sde<S> + ?Sized,
    B: BuildResampler + ?Sized,
{
    let r = resampler.build_for::<S>()?;
    let n = settings.particles() as f64;
    let per = map_intervals(sde, obs, settings, &r, seed, |_, out| {
        let min_ess = out.ess.iter().copied().fold(f64::INFINITY, f64::min);
        (
            out.log_likelihood,
            out.ess.last().copied().unwrap_or(f64::NAN) / n,
            min_ess / n,
            out.n_resampled(),
        )
    })?;
    let mut est = PathEstimate {
        log_likelihood: S::zero(),
        intervals: Vec::with_capacity(per.len()),
        final_ess_fraction: Vec::with_capacity(per.len()),
        min_ess_fraction: Vec::with_capacity(per.len()),
        resampled_steps: 0,
    };
    for r in per {
        let (ll, fin, min, res) = r?;
        est.log_likelihood += ll;
        est.intervals.push(ll);
        est.final_ess_fraction.push(fin);
        est.min_ess_fraction.push(min);
        est.resampled_steps += res;
    }
    Ok(est)
}

/// How the optimiser's coordinates φ map to the natural parameters θ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Parametrisation {
    /// φ = θ.
    Natural,
    /// φ_i = log θ_i for the parameters the family marks positive (σ), φ_i = θ_i otherwise:
    /// every φ ∈ R^p is a valid model, so an optimiser cannot step out of the domain.
    #[default]
    LogPositive,
}

impl Parametrisation {
    /// θ from φ (on any scalar; derivatives flow through `exp`).
    pub fn to_natural<S: Scalar>(&self, positive: &[bool], phi: &[S]) -> Vec<S> {
        phi.iter()
            .enumerate()
            .map(|(i, &p)| match self {
                Parametrisation::LogPositive if positive.get(i).copied().unwrap_or(false) => {
                    p.exp()
                }
                _ => p,
            })
            .collect()
    }

    /// φ from θ; a positive parameter that is not `> 0` is an error.
    pub fn from_natural(&self, positive: &[bool], theta: &[f64]) -> Result<Vec<f64>> {
        theta
            .iter()
            .enumerate()
            .map(|(i, &t)| match self {
                Parametrisation::LogPositive if positive.get(i).copied().unwrap_or(false) => {
                    if t > 0.0 && t.is_finite() {
                        Ok(t.ln())
                    } else {
                        Err(SmcError::invalid(
                            "positive parameter",
                            t,
                            "a finite number > 0",
                        ))
                    }
                }
                _ => Ok(t),
            })
            .collect()
    }
}

/// The negative path log-likelihood estimate `−Σ_k log p̂_θ(y_{k+1} | y_k)` of an SDE family
/// as a [`Differentiable`] of φ (see [`Parametrisation`]): fixed settings, resampler and seed
/// (common random numbers), so [`diffsmc::grad::gradient`] gives the gradient of one function
/// of φ — smooth without resampling.
#[derive(Debug, Clone)]
pub struct PathObjective<'a, F, B: ?Sized> {
    /// The SDE family.
    pub family: &'a F,
    /// The data.
    pub obs: &'a Observations,
    /// How each interval is estimated.
    pub settings: &'a BridgeSettings,
    /// The resampler (used only if the trigger fires).
    pub resampler: &'a B,
    /// The seed.
    pub seed: u64,
    /// The optimiser's coordinates.
    pub parametrisation: Parametrisation,
}

impl<F: SdeFamily, B: BuildResampler + ?Sized> Differentiable for PathObjective<'_, F, B> {
    fn n_params(&self) -> usize {
        self.family.n_params()
    }
    fn eval<S: Scalar>(&self, phi: &[S]) -> Result<S> {
        let theta = self.parametrisation.to_natural(self.family.positive(), phi);
        let sde = self.family.sde(&theta)?;
        let est = path_log_likelihood(&sde, self.obs, self.settings, self.resampler, self.seed)?;
        Ok(-est.log_likelihood)
    }
}

/// The exact negative log-likelihood of the [`Ou`] process (θ = (κ, μ, σ) through
/// [`Parametrisation`]) as a [`Differentiable`]: the reference the bridge estimate is checked
/// against, and the exact MLE's objective.
#[derive(Debug, Clone, Copy)]
pub struct ExactOuObjective<'a> {
    /// The data.
    pub obs: &'a Observations,
    /// The optimiser's coordinates.
    pub parametrisation: Parametrisation,
}

impl Differentiable for ExactOuObjective<'_> {
    fn n_params(&self) -> usize {
        3
    }
    fn eval<S: Scalar>(&self, phi: &[S]) -> Result<S> {
        let theta = self.parametrisation.to_natural(&[false, false, true], phi);
        let ou = Ou::new(theta[0], theta[1], theta[2], self.obs.dim())?;
        Ok(-ou.exact_log_likelihood(self.obs)?)
    }
}

/// Standard errors at a minimum `phi` of a negative log-likelihood: the square roots of the
/// diagonal of the inverse observed information, the information being the Hessian from
/// central differences (step `h`) of the dual-number gradient, symmetrised. The inverse is
/// never formed: each diagonal entry is `e_iᵀ H⁻¹ e_i` by Cholesky solves.
///
/// Errors: a Hessian that is not positive definite (not a minimum, or a flat direction).
pub fn standard_errors<O: Differentiable + ?Sized>(o: &O, phi: &[f64], h: f64) -> Result<Vec<f64>> {
    let p = phi.len();
    let mut hess = vec![0.0; p * p];
    for j in 0..p {
        let mut a = phi.to_vec();
        let mut b = phi.to_vec();
        a[j] += h;
        b[j] -= h;
        let (_, ga) = gradient(o, &a, &GradOptions::default())?;
        let (_, gb) = gradient(o, &b, &GradOptions::default())?;
        for i in 0..p {
            hess[i * p + j] = (ga[i] - gb[i]) / (2.0 * h);
        }
    }
    for i in 0..p {
        for j in 0..i {
            let s = 0.5 * (hess[i * p + j] + hess[j * p + i]);
            hess[i * p + j] = s;
            hess[j * p + i] = s;
        }
    }
    let l = cholesky_named(&hess, p, "observed information (Hessian of the NLL)")?;
    Ok((0..p)
        .map(|i| {
            let mut e = vec![0.0; p];
            e[i] = 1.0;
            cholesky_solve(&l, p, &mut e);
            e[i].sqrt()
        })
        .collect())
}
