//! Observations, simulation settings and the simulator of the true model.

use diffsmc::rng::{Purpose, StreamKey, StreamRng, standard_normal};
use diffsmc::{Result, SmcError};
use rand_distr::{Distribution, Poisson};

use crate::poisson::ln_factorial;
use crate::sde::{LvParams, rates};
use crate::{N_STEPS, T_END, X0};

/// Poisson count observations `y_0, …, y_n` at times `t_j = j·dt` (the first at `t = 0`),
/// with `ln y_j!` precomputed.
///
/// ```
/// use diffsmc_lotka_volterra::Observations;
/// let obs = Observations::new(0.5, vec![[1, 2], [0, 3], [4, 4]])?;
/// assert_eq!((obs.len(), obs.n_steps()), (3, 2));
/// assert_eq!(obs.times(), vec![0.0, 0.5, 1.0]);
/// assert_eq!(obs.truncated(1)?.counts(), &[[1, 2], [0, 3]]);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Observations {
    dt: f64,
    counts: Vec<[u64; 2]>,
    ln_fact: Vec<[f64; 2]>,
}

impl Observations {
    /// Observations `counts[j]` at `t_j = j·dt` (`dt > 0`, at least one observation).
    pub fn new(dt: f64, counts: Vec<[u64; 2]>) -> Result<Self> {
        if !(dt > 0.0 && dt.is_finite()) {
            return Err(SmcError::invalid(
                "time step dt",
                dt,
                "a positive finite number",
            ));
        }
        if counts.is_empty() {
            return Err(SmcError::invalid(
                "observations",
                0,
                "at least one observation",
            ));
        }
        let ln_fact = counts
            .iter()
            .map(|y| [ln_factorial(y[0]), ln_factorial(y[1])])
            .collect();
        Ok(Observations {
            dt,
            counts,
            ln_fact,
        })
    }

    /// The time step between observations.
    pub fn dt(&self) -> f64 {
        self.dt
    }
    /// The counts, `y_j = counts[j]`.
    pub fn counts(&self) -> &[[u64; 2]] {
        &self.counts
    }
    /// `ln y_j!` per observation and component.
    pub fn ln_factorials(&self) -> &[[f64; 2]] {
        &self.ln_fact
    }
    /// Number of observations `n + 1`.
    pub fn len(&self) -> usize {
        self.counts.len()
    }
    /// Always false (there is at least one observation).
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
    /// Number of transitions `n` (observations minus one).
    pub fn n_steps(&self) -> usize {
        self.counts.len() - 1
    }
    /// The observation times `j·dt`.
    pub fn times(&self) -> Vec<f64> {
        (0..self.len()).map(|j| j as f64 * self.dt).collect()
    }
    /// The first `n_steps + 1` observations (`t ≤ n_steps·dt`).
    pub fn truncated(&self, n_steps: usize) -> Result<Self> {
        if n_steps > self.n_steps() {
            return Err(SmcError::invalid(
                "truncation steps",
                n_steps,
                "at most the number of steps of the series",
            ));
        }
        Ok(Observations {
            dt: self.dt,
            counts: self.counts[..=n_steps].to_vec(),
            ln_fact: self.ln_fact[..=n_steps].to_vec(),
        })
    }
}

/// The time grid and initial state of a simulation.
///
/// ```
/// use diffsmc_lotka_volterra::SimConfig;
/// let c = SimConfig::paper();
/// assert_eq!((c.x0(), c.t_end(), c.n_steps()), ([2.0, 5.0], 3.0, 256));
/// assert_eq!(c.dt(), 3.0 / 256.0);
/// assert!(SimConfig::new([2.0, 5.0], 3.0, 0).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    x0: [f64; 2],
    t_end: f64,
    n_steps: usize,
}

impl SimConfig {
    /// `n_steps ≥ 1` steps of size `t_end / n_steps` from `x0` (finite, `t_end > 0`).
    pub fn new(x0: [f64; 2], t_end: f64, n_steps: usize) -> Result<Self> {
        if !x0.iter().all(|v| v.is_finite()) {
            return Err(SmcError::invalid(
                "initial state",
                format!("{x0:?}"),
                "finite numbers",
            ));
        }
        if !(t_end > 0.0 && t_end.is_finite()) {
            return Err(SmcError::invalid(
                "end time",
                t_end,
                "a positive finite number",
            ));
        }
        if n_steps == 0 {
            return Err(SmcError::invalid("steps", n_steps, "at least 1"));
        }
        Ok(SimConfig { x0, t_end, n_steps })
    }
    /// The reference experiment: x0 = (2, 5), t ∈ [0, 3], 256 steps.
    pub const fn paper() -> Self {
        SimConfig {
            x0: X0,
            t_end: T_END,
            n_steps: N_STEPS,
        }
    }
    /// The initial state.
    pub fn x0(&self) -> [f64; 2] {
        self.x0
    }
    /// The end time.
    pub fn t_end(&self) -> f64 {
        self.t_end
    }
    /// Number of steps.
    pub fn n_steps(&self) -> usize {
        self.n_steps
    }
    /// The step size `t_end / n_steps`.
    pub fn dt(&self) -> f64 {
        self.t_end / self.n_steps as f64
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self::paper()
    }
}

/// A simulated data set: the true trajectory `x_0 … x_n` and the observations `y_0 … y_n`.
#[derive(Debug, Clone, PartialEq)]
pub struct Simulation {
    /// The true states at `t_j = j·dt`, `x_0 = x0` included.
    pub states: Vec<[f64; 2]>,
    /// The observations at the same times.
    pub observations: Observations,
}

impl Simulation {
    /// The first `n_steps` steps (`n_steps + 1` states and observations).
    pub fn truncated(&self, n_steps: usize) -> Result<Self> {
        let observations = self.observations.truncated(n_steps)?;
        Ok(Simulation {
            states: self.states[..=n_steps].to_vec(),
            observations,
        })
    }
}

/// Two Brownian increments `N(0, dt)` from `rng`.
#[inline]
pub(crate) fn brownian(rng: &mut StreamRng, sqrt_dt: f64) -> [f64; 2] {
    let a = standard_normal(rng);
    let b = standard_normal(rng);
    [a * sqrt_dt, b * sqrt_dt]
}

/// Draws `y ~ Poisson(λ(x))` per component.
pub(crate) fn observe(x: &[f64; 2], rng: &mut StreamRng) -> [u64; 2] {
    rates(x).map(|l| {
        if l > 0.0 && l.is_finite() {
            // λ ≤ 5, far inside rand_distr's valid range.
            Poisson::new(l).map(|p| p.sample(rng) as u64).unwrap_or(0)
        } else {
            0
        }
    })
}

/// Simulates the true model: the Milstein trajectory from `x0` over the grid of `config`
/// and Poisson observations at every grid time, `t = 0` included (`n_steps + 1` of each).
///
/// Randomness: the Brownian increments of step `j ≥ 1` come from stream 0 and the
/// observation `y_j` from stream 1 of `StreamKey::new(seed, j, Purpose::Simulate)`, so the
/// trajectory does not depend on the observation draws.
///
/// ```
/// use diffsmc_lotka_volterra::{LvParams, SimConfig, simulate};
/// let sim = simulate(&LvParams::paper(), &SimConfig::paper(), 1)?;
/// assert_eq!(sim.states.len(), 257);
/// assert_eq!(sim.observations.len(), 257);
/// assert_eq!(sim.states[0], [2.0, 5.0]);
/// assert_eq!(sim, simulate(&LvParams::paper(), &SimConfig::paper(), 1)?);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
pub fn simulate(params: &LvParams<f64>, config: &SimConfig, seed: u64) -> Result<Simulation> {
    params.validate()?;
    let dt = config.dt();
    let sqrt_dt = dt.sqrt();
    let n = config.n_steps;
    let mut states = Vec::with_capacity(n + 1);
    let mut counts = Vec::with_capacity(n + 1);
    let mut x = config.x0;
    states.push(x);
    counts.push(observe(
        &x,
        &mut StreamKey::new(seed, 0, Purpose::Simulate).rng(1),
    ));
    for j in 1..=n {
        let key = StreamKey::new(seed, j, Purpose::Simulate);
        let dw = brownian(&mut key.rng(0), sqrt_dt);
        let mut next = [0.0; 2];
        params.milstein_step(&x, dw, dt, &mut next);
        x = next;
        states.push(x);
        counts.push(observe(&x, &mut key.rng(1)));
    }
    Ok(Simulation {
        states,
        observations: Observations::new(dt, counts)?,
    })
}

/// `n_paths` trajectories of the true model (Milstein, no observations): path `p` takes its
/// increments of step `j` from stream `p` of `StreamKey::new(seed, j, Purpose::Other(tag))`
/// with a fixed tag, so path `p` of one call does not share noise with [`simulate`].
///
/// ```
/// use diffsmc_lotka_volterra::{LvParams, SimConfig, simulate_paths};
/// let paths = simulate_paths(&LvParams::paper(), &SimConfig::paper(), 3, 0)?;
/// assert_eq!((paths.len(), paths[0].len()), (3, 257));
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
pub fn simulate_paths(
    params: &LvParams<f64>,
    config: &SimConfig,
    n_paths: usize,
    seed: u64,
) -> Result<Vec<Vec<[f64; 2]>>> {
    params.validate()?;
    let dt = config.dt();
    let sqrt_dt = dt.sqrt();
    let keys: Vec<StreamKey> = (1..=config.n_steps)
        .map(|j| StreamKey::new(seed, j, Purpose::Other(PATHS_STREAM_TAG)))
        .collect();
    Ok((0..n_paths)
        .map(|p| {
            let mut x = config.x0;
            let mut path = Vec::with_capacity(config.n_steps + 1);
            path.push(x);
            for key in &keys {
                let dw = brownian(&mut key.rng(p), sqrt_dt);
                let mut next = [0.0; 2];
                params.milstein_step(&x, dw, dt, &mut next);
                x = next;
                path.push(x);
            }
            path
        })
        .collect())
}

/// Stream tag of [`simulate_paths`].
pub(crate) const PATHS_STREAM_TAG: u32 = 0x4c56_5041; // "LVPA"

/// The prediction error of the experiment: the mean over predicted paths of the
/// root-mean-square error against the true trajectory,
/// `(1/P) Σ_p sqrt( (1/(2(n+1))) Σ_j Σ_k (x̂_{p,j,k} − x_{j,k})² )`, over every time point
/// (`t = 0` included) and both components.
///
/// Errors when there are no paths or a path's length differs from the truth's.
///
/// ```
/// use diffsmc_lotka_volterra::prediction_rmse;
/// let truth = vec![[1.0, 1.0], [2.0, 2.0]];
/// let paths = vec![vec![[1.0, 1.0], [2.0, 2.0]], vec![[1.0, 3.0], [2.0, 2.0]]];
/// // Second path: one squared error of 4 over 4 entries → RMSE 1. Mean over paths 0.5.
/// assert_eq!(prediction_rmse(&paths, &truth)?, 0.5);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
pub fn prediction_rmse(paths: &[Vec<[f64; 2]>], truth: &[[f64; 2]]) -> Result<f64> {
    if paths.is_empty() {
        return Err(SmcError::invalid("predicted paths", 0, "at least one path"));
    }
    let mut total = 0.0;
    for p in paths {
        if p.len() != truth.len() {
            return Err(SmcError::DimensionMismatch {
                what: "predicted path length",
                expected: truth.len(),
                got: p.len(),
            });
        }
        let sq: f64 = p
            .iter()
            .zip(truth)
            .map(|(a, b)| (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2))
            .sum();
        total += (sq / (2 * truth.len()) as f64).sqrt();
    }
    Ok(total / paths.len() as f64)
}
