//! PaRIS (Olsson & Westerborn 2017): online smoothing of additive functionals, and the
//! Fisher-identity score estimate.

use num_dual::DualSVec64;

use super::backward::{BackwardKernel, BackwardMethod};
use super::{check_model, history_of};
use crate::error::{Result, SmcError};
use crate::model::{Bootstrap, ParametricSsm, StateSpaceModel};
use crate::resample::Resampler;
use crate::rng::{Purpose, StreamKey};
use crate::scalar::Scalar;
use crate::smc::{Smc, SmcConfig, SmcOutput};

/// Stream tag of the PaRIS backward draws (`Purpose::Other`).
const PARIS_TAG: u32 = 0x5300_0002;
/// Particles per parallel task.
const CHUNK: usize = 64;
/// Proposals of the rejection sampler before the exact fallback, when the model has a bound.
const DEFAULT_MAX_TRIES: usize = 32;

/// An additive functional `H_T(x_0..x_{T-1}) = Σ_t [s_t(x_t) + p_t(x_{t-1}, x_t)]` with
/// vector values (`p_0 = 0`): what [`paris`] smooths. The split into a state term and a pair
/// term lets PaRIS evaluate the state term once per particle and only the pair term once per
/// backward draw.
pub trait AdditiveFunctional: Sync {
    /// Number of components.
    fn dim(&self) -> usize;
    /// Writes `s_t(x)` into `out` (length [`AdditiveFunctional::dim`]).
    fn state_term(&self, t: usize, x: &[f64], out: &mut [f64]) -> Result<()>;
    /// Writes `p_t(x_prev, x)` into `out`, for `t ≥ 1`.
    fn pair_term(&self, t: usize, x_prev: &[f64], x: &[f64], out: &mut [f64]) -> Result<()>;
}

/// Configuration of [`paris`].
///
/// ```
/// use diffsmc::smooth::ParisConfig;
/// let c = ParisConfig::new().with_backward_draws(4)?.with_seed(3);
/// assert_eq!(c.backward_draws(), 4);
/// assert!(ParisConfig::new().with_backward_draws(0).is_err());
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ParisConfig {
    backward_draws: usize,
    method: Option<BackwardMethod>,
    seed: u64,
}

impl Default for ParisConfig {
    fn default() -> Self {
        ParisConfig::new()
    }
}

impl ParisConfig {
    /// `Ñ = 2` backward draws per particle, automatic draw method, seed 0.
    pub fn new() -> Self {
        ParisConfig {
            backward_draws: 2,
            method: None,
            seed: 0,
        }
    }
    /// `Ñ ≥ 1` backward draws per particle and step. `Ñ = 1` is consistent but its variance
    /// grows quickly with `T`; `Ñ = 2` already gives a variance that grows linearly in `T`
    /// (Olsson & Westerborn 2017); larger `Ñ` costs proportionally more.
    pub fn with_backward_draws(mut self, n: usize) -> Result<Self> {
        if n == 0 {
            return Err(SmcError::invalid("PaRIS backward draws Ñ", n, "at least 1"));
        }
        self.backward_draws = n;
        Ok(self)
    }
    /// How backward indices are drawn. Default: rejection with 32 tries when the model
    /// provides [`StateSpaceModel::transition_log_density_bound`], else exact.
    pub fn with_method(mut self, method: BackwardMethod) -> Result<Self> {
        if let BackwardMethod::Rejection { max_tries } = method {
            BackwardMethod::rejection(max_tries)?;
        }
        self.method = Some(method);
        Ok(self)
    }
    /// The seed of the backward draws.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// `Ñ`.
    pub fn backward_draws(&self) -> usize {
        self.backward_draws
    }
}

/// What [`paris`] produced.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ParisOutput {
    /// The estimate of `E[H_T | y_0..y_{T-1}]`.
    pub estimate: Vec<f64>,
    /// Per step `t`: the online estimate of `E[H_t | y_0..y_t]`.
    pub estimates: Vec<Vec<f64>>,
    /// Backward draws made (`N · Ñ · (T − 1)`).
    pub draws: usize,
    /// Draws that fell back to the exact sampler.
    pub fallbacks: usize,
}

/// PaRIS, the particle-based rapid incremental smoother (Olsson & Westerborn 2017): per
/// particle a statistic `τ_t^i ≈ E[H_t | x_t = X_t^i, y_0..y_t]`, updated forwards with `Ñ`
/// backward draws `J_k ~ Λ_{t-1}(X_t^i, ·) ∝ W_{t-1}^j f(X_t^i | X_{t-1}^j)`:
///
/// ```text
/// τ_t^i = s_t(X_t^i) + (1/Ñ) Σ_k [τ_{t-1}^{J_k} + p_t(X_{t-1}^{J_k}, X_t^i)],   Ĥ_t = Σ_i W_t^i τ_t^i.
/// ```
///
/// Each step needs only steps `t − 1` and `t`, so the smoother is online (this function runs
/// it over a recorded history and returns every step's estimate). Cost `O(N Ñ)` draws per
/// step: `O(N Ñ)` expected density evaluations with rejection sampling, `O(N² Ñ)` with exact
/// draws. Works for every resampler. Draw `k` of particle `i` at `t` uses stream `i` of a key
/// of `(seed, t)`, so the result does not depend on the number of threads.
///
/// Errors: a run without history; [`SmcError::Unsupported`] (`"transition density"` naming
/// `"PaRIS"`; `"transition density bound"` if a rejection method was asked for a model
/// without one); errors of the functional and the density.
pub fn paris<M, F>(
    model: &M,
    run: &SmcOutput<f64>,
    functional: &F,
    config: &ParisConfig,
) -> Result<ParisOutput>
where
    M: StateSpaceModel<f64> + ?Sized,
    F: AdditiveFunctional + ?Sized,
{
    let h = history_of(run)?;
    check_model(model, h, "PaRIS")?;
    let method = config.method.unwrap_or_else(|| {
        if model.transition_log_density_bound(1).is_some() {
            BackwardMethod::Rejection {
                max_tries: DEFAULT_MAX_TRIES,
            }
        } else {
            BackwardMethod::Exact
        }
    });
    let kernel = BackwardKernel::new(model, h, method, "PaRIS")?;
    let steps = h.len();
    let n = h.n_particles();
    let p = functional.dim();
    let chunks = n.div_ceil(CHUNK);
    let nt = config.backward_draws;
    let estimate_of = |tau: &[f64], lw: &[f64]| {
        let mut e = vec![0.0; p];
        for (i, l) in lw.iter().enumerate() {
            let w = l.exp();
            if w > 0.0 {
                for (ek, tk) in e.iter_mut().zip(&tau[i * p..(i + 1) * p]) {
                    *ek += w * tk;
                }
            }
        }
        e
    };
    // τ_0^i = s_0(X_0^i).
    let mut tau = vec![0.0; n * p];
    for (i, ti) in tau.chunks_exact_mut(p.max(1)).enumerate().take(n) {
        functional.state_term(0, h.particles[0].particle(i), &mut ti[..p])?;
    }
    let mut estimates = vec![estimate_of(&tau, &h.log_weights[0])];
    let mut fallbacks = 0;
    for t in 1..steps {
        let (xp, x) = (&h.particles[t - 1], &h.particles[t]);
        let key = StreamKey::new(config.seed, t, Purpose::Other(PARIS_TAG));
        let prev = &tau;
        let kernel = &kernel;
        let parts = crate::par::map_chunks::<f64, _>(chunks, |c| -> Result<(Vec<f64>, usize)> {
            let range = c * CHUNK..((c + 1) * CHUNK).min(n);
            let mut out = vec![0.0; range.len() * p];
            let mut pair = vec![0.0; p];
            let mut fb = 0;
            for (oi, i) in out.chunks_exact_mut(p.max(1)).zip(range) {
                let oi = &mut oi[..p];
                functional.state_term(t, x.particle(i), oi)?;
                let mut rng = key.rng(i);
                for _ in 0..nt {
                    let d = kernel.draw(t - 1, x.particle(i), &mut rng)?;
                    fb += usize::from(d.fell_back);
                    functional.pair_term(t, xp.particle(d.index), x.particle(i), &mut pair)?;
                    let tj = &prev[d.index * p..(d.index + 1) * p];
                    for ((o, a), b) in oi.iter_mut().zip(tj).zip(&pair) {
                        *o += (a + b) / nt as f64;
                    }
                }
            }
            Ok((out, fb))
        });
        let mut next = Vec::with_capacity(n * p);
        for part in parts {
            let (v, fb) = part?;
            next.extend_from_slice(&v);
            fallbacks += fb;
        }
        tau = next;
        estimates.push(estimate_of(&tau, &h.log_weights[t]));
    }
    Ok(ParisOutput {
        estimate: estimates[steps - 1].clone(),
        estimates,
        draws: n * nt * (steps - 1),
        fallbacks,
    })
}

/// Dual width of the score's derivative chunks.
const LANES: usize = 4;
/// The dual type of the score's derivative chunks.
type D = DualSVec64<LANES>;

/// The gradient `∇θ log p_θ(·)` of one log-density, through the models built at dual θ (one
/// per chunk of 4 parameters), on `f64` states lifted to constants. Every gradient of this
/// module goes through here.
fn log_density_gradient<P: ParametricSsm>(
    models: &[P::Ssm<D>],
    n_params: usize,
    out: &mut [f64],
    f: impl Fn(&P::Ssm<D>) -> Result<D>,
) -> Result<()> {
    let mut lanes = [0.0; LANES];
    for (c, m) in models.iter().enumerate() {
        f(m)?.to_lanes(&mut lanes);
        let start = c * LANES;
        let len = (n_params - start).min(LANES);
        out[start..start + len].copy_from_slice(&lanes[..len]);
    }
    Ok(())
}

fn lift(x: &[f64]) -> Vec<D> {
    x.iter().map(|&v| D::cst(v)).collect()
}

/// The Fisher-identity functional: `s_0(x) = ∇θ[log μ_θ(x) + log g_θ(y_0 | x)]`,
/// `s_t(x) = ∇θ log g_θ(y_t | x)`, `p_t(x', x) = ∇θ log f_θ(x | x')`, so that
/// `E[H_T | y] = ∇θ log p_θ(y)` (Fisher's identity). Built once at θ: the models at dual θ,
/// one per chunk of four parameters.
pub struct FisherScore<P: ParametricSsm> {
    models: Vec<P::Ssm<D>>,
    n_params: usize,
}

impl<P: ParametricSsm> std::fmt::Debug for FisherScore<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FisherScore")
            .field("n_params", &self.n_params)
            .finish_non_exhaustive()
    }
}

impl<P: ParametricSsm> FisherScore<P> {
    /// The functional of `p` at `theta`. Errors: a θ of the wrong length or non-finite,
    /// errors of the model constructor.
    pub fn new(p: &P, theta: &[f64]) -> Result<Self> {
        crate::grad::check_theta(p.n_params(), theta)?;
        let n_params = theta.len();
        let models = (0..n_params.div_ceil(LANES))
            .map(|c| {
                let th: Vec<D> = theta
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let mut unit = [0.0; LANES];
                        if i / LANES == c {
                            unit[i % LANES] = 1.0;
                        }
                        D::from_lanes(v, &unit)
                    })
                    .collect();
                p.ssm::<D>(&th)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FisherScore { models, n_params })
    }
}

impl<P: ParametricSsm> AdditiveFunctional for FisherScore<P> {
    fn dim(&self) -> usize {
        self.n_params
    }
    fn state_term(&self, t: usize, x: &[f64], out: &mut [f64]) -> Result<()> {
        let xd = lift(x);
        log_density_gradient::<P>(&self.models, self.n_params, out, |m| {
            let g = m.observation_log_density(t, &xd);
            if t == 0 {
                Ok(m.initial_log_density(&xd)? + g)
            } else {
                Ok(g)
            }
        })
    }
    fn pair_term(&self, t: usize, x_prev: &[f64], x: &[f64], out: &mut [f64]) -> Result<()> {
        let (xpd, xd) = (lift(x_prev), lift(x));
        log_density_gradient::<P>(&self.models, self.n_params, out, |m| {
            m.transition_log_density(t, &xpd, &xd)
        })
    }
}

/// What [`fisher_score`] estimated.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ScoreEstimate {
    /// The estimate of `∇θ log p_θ(y)`.
    pub score: Vec<f64>,
    /// The filter's log-likelihood estimate at θ.
    pub log_likelihood: f64,
    /// The PaRIS run (per-step estimates of `∇θ log p_θ(y_0..y_t)`, draws, fallbacks).
    pub paris: ParisOutput,
}

/// The Fisher-identity estimate of the score `∇θ log p_θ(y) = E[Σ_t ∇θ log f_θ(x_t | x_{t-1})
/// + ∇θ log g_θ(y_t | x_t) + ∇θ log μ_θ(x_0) | y]`: a bootstrap filter at θ (with history;
/// `smc`'s other settings, `resampler` and `seed` as given), then [`paris`] with the
/// [`FisherScore`] functional. The derivatives are those of the model's log-densities at θ
/// (dual numbers on constant states), so the resampler need not be differentiable: this is a
/// gradient to compare with the dual-number gradients of the filter's estimate. It is
/// consistent in `N` (bias `O(T/N)`, standard deviation `O(√T/√N)` for `Ñ ≥ 2`).
///
/// Errors: those of the model constructor, the filter and [`paris`] (`needed_by: "PaRIS"`);
/// [`SmcError::NonFinite`] (`what: "score estimate"`) for a non-finite component.
///
/// ```
/// use diffsmc::prelude::*;
/// use diffsmc::smooth::{ParametricSsm, ParisConfig, fisher_score};
/// // x_t = θ x_{t-1} + N(0, 1), y_t = x_t + N(0, 1).
/// struct Ar1 { ys: Vec<f64> }
/// struct Model<S> { phi: S, ys: Vec<f64> }
/// const C: f64 = 0.918_938_533_204_672_7; // ln √(2π)
/// impl<S: Scalar> StateSpaceModel<S> for Model<S> {
///     fn state_dim(&self) -> usize { 1 }
///     fn n_observations(&self) -> usize { self.ys.len() }
///     fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) { x[0] = S::cst(standard_normal(rng)); }
///     fn sample_transition(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) {
///         x[0] = xp[0] * self.phi + standard_normal(rng);
///     }
///     fn observation_log_density(&self, t: usize, x: &[S]) -> S { let r = x[0] - self.ys[t]; r * r * -0.5 - C }
///     fn has_transition_density(&self) -> bool { true }
///     fn transition_log_density(&self, _t: usize, xp: &[S], x: &[S]) -> Result<S> {
///         let r = x[0] - xp[0] * self.phi; Ok(r * r * -0.5 - C)
///     }
///     fn initial_log_density(&self, x: &[S]) -> Result<S> { Ok(x[0] * x[0] * -0.5 - C) }
///     fn transition_log_density_bound(&self, _t: usize) -> Option<f64> { Some(-C) }
/// }
/// impl ParametricSsm for Ar1 {
///     type Ssm<S: Scalar> = Model<S>;
///     fn n_params(&self) -> usize { 1 }
///     fn ssm<S: Scalar>(&self, th: &[S]) -> Result<Model<S>> { Ok(Model { phi: th[0], ys: self.ys.clone() }) }
/// }
/// let p = Ar1 { ys: vec![0.5, 0.9, 1.2, 0.4, -0.3] };
/// let est = fisher_score(&p, &[0.6], &SmcConfig::new(256)?, &Systematic, 1, &ParisConfig::new())?;
/// assert!(est.score[0].is_finite());
/// # Ok::<(), SmcError>(())
/// ```
pub fn fisher_score<P, R>(
    p: &P,
    theta: &[f64],
    smc: &SmcConfig,
    resampler: &R,
    seed: u64,
    config: &ParisConfig,
) -> Result<ScoreEstimate>
where
    P: ParametricSsm,
    R: Resampler<f64> + ?Sized,
{
    let functional = FisherScore::new(p, theta)?;
    let model = Bootstrap(p.ssm::<f64>(theta)?);
    let run: SmcOutput<f64> =
        Smc::new(smc.clone().with_history(true)).run(&model, resampler, seed)?;
    let out = paris(model.inner(), &run, &functional, config)?;
    if let Some((component, &value)) = out
        .estimate
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite())
    {
        return Err(SmcError::NonFinite {
            what: "score estimate",
            step: out.estimates.len() - 1,
            component,
            value,
        });
    }
    Ok(ScoreEstimate {
        score: out.estimate.clone(),
        log_likelihood: run.log_likelihood,
        paris: out,
    })
}
