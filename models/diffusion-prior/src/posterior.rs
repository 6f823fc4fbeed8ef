//! The twisted Feynman–Kac model over diffusion time whose last target is the posterior
//! `p(x | y) ∝ p(x) N(y; H x, R)`. The derivation is in `docs/diffusion-prior.md`.

use std::fmt;
use std::str::FromStr;

use diffsmc::linalg::{cholesky_named, log_det_from_cholesky};
use diffsmc::rng::{StreamRng, standard_normal};
use diffsmc::{FeynmanKac, Result, Scalar, SmcError};

use crate::observation::{LN_2PI, LinearObservation};
use crate::prior::DiffusionPrior;
use crate::sde::TimeGrid;

/// The Gaussian kernel that discretises the prior's reverse-time dynamics over one grid step
/// from `t = τ_k` to `s = τ_{k+1} < t`. With the forward transition `X_t | X_s ~ N(a X_s, v I)`
/// (`a = α_t / α_s`, `v = 1 − a²`), `B = ∫_s^t β = −2 ln a` and the score `∇ log p_t(x)`:
///
/// - `EulerMaruyama`: `N(x + B (x/2 + ∇ log p_t(x)), B I)`, the Euler–Maruyama step of the
///   reverse SDE `dX = −β (X/2 + ∇ log p_t(X)) dt + √β dW̄` (with `∫ β` over the step);
/// - `Tweedie`: `N((x + v ∇ log p_t(x)) / a, v I)`, whose mean is the exact conditional mean
///   `E[X_s | X_t = x]` (Tweedie's formula for the one-step forward transition); exact for
///   the stationary prior `N(0, I)` and more accurate than Euler–Maruyama for large steps.
///
/// ```
/// use diffsmc_diffusion_prior::Kernel;
/// assert_eq!("em".parse::<Kernel>().unwrap(), Kernel::EulerMaruyama);
/// assert_eq!(Kernel::Tweedie.to_string(), "tweedie");
/// assert!("rk4".parse::<Kernel>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernel {
    /// Euler–Maruyama on the reverse SDE.
    EulerMaruyama,
    /// The Tweedie (ancestral, DDPM-type) step.
    #[default]
    Tweedie,
}

impl FromStr for Kernel {
    type Err = SmcError;
    /// `em` / `euler-maruyama` or `tweedie`.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "em" | "euler-maruyama" | "euler" => Ok(Kernel::EulerMaruyama),
            "tweedie" | "ancestral" => Ok(Kernel::Tweedie),
            other => Err(SmcError::invalid(
                "kernel",
                other,
                "`em` (Euler–Maruyama) or `tweedie`",
            )),
        }
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kernel::EulerMaruyama => "em",
            Kernel::Tweedie => "tweedie",
        })
    }
}

/// Which sequence of intermediate targets the potentials follow (see `docs/diffusion-prior.md`).
///
/// - `Exact`: `π_k(x) ∝ p_{τ_k}(x) ỹ_k(x)` with the exact noised marginals, reached with the
///   forward noising kernel as backward kernel. The last target is exactly `p(x | y)` for any
///   grid; needs [`DiffusionPrior::log_density`].
/// - `Discretised`: the path measure of the discretised reverse chain (the [`Kernel`]) started
///   at `p_T`, twisted by `ỹ_k`. Needs only the score; the last target is
///   `p̂_0(x) N(y; H x, R)` with `p̂_0` the chain's law at time 0, which tends to `p(x | y)` as
///   the grid is refined.
///
/// ```
/// use diffsmc_diffusion_prior::Targets;
/// assert_eq!("discretised".parse::<Targets>().unwrap(), Targets::Discretised);
/// assert_eq!(Targets::Exact.to_string(), "exact");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Targets {
    /// Exact noised marginals (needs the prior's log-density).
    #[default]
    Exact,
    /// The discretised reverse chain (score only).
    Discretised,
}

impl FromStr for Targets {
    type Err = SmcError;
    /// `exact` or `discretised` (`discretized`, `chain`).
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "exact" | "marginal" | "marginals" => Ok(Targets::Exact),
            "discretised" | "discretized" | "chain" => Ok(Targets::Discretised),
            other => Err(SmcError::invalid(
                "targets",
                other,
                "`exact` or `discretised`",
            )),
        }
    }
}

impl fmt::Display for Targets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Targets::Exact => "exact",
            Targets::Discretised => "discretised",
        })
    }
}

/// Knobs of [`DiffusionPosterior`].
///
/// - `kernel` ([`Kernel`], default Tweedie) and `targets` ([`Targets`], default exact);
/// - `guidance` `λ ≥ 0` (default 1): the proposal replaces the score by
///   `∇ log p_t + λ ∇̃ log ỹ_k` (0: propose from the prior kernel alone; the potentials
///   correct any `λ`);
/// - `prior_scale` `ρ² > 0` (default 1): the variance scale of the Gaussian approximation
///   `Cov[X_0 | X_t] ≈ r_t² I`, `r_t² = ρ² σ_t² / (α_t² ρ² + σ_t²)` (exact for the prior
///   `N(m, ρ² I)`), used by the twisting functions. A typical per-coordinate prior variance is
///   a good choice.
///
/// ```
/// use diffsmc_diffusion_prior::{Kernel, PosteriorConfig};
/// let c = PosteriorConfig::default().with_guidance(0.5)?.with_prior_scale(10.0)?;
/// assert_eq!((c.guidance(), c.prior_scale(), c.kernel()), (0.5, 10.0, Kernel::Tweedie));
/// assert!(PosteriorConfig::default().with_guidance(-1.0).is_err());
/// assert!(PosteriorConfig::default().with_prior_scale(0.0).is_err());
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PosteriorConfig {
    kernel: Kernel,
    targets: Targets,
    guidance: f64,
    prior_scale: f64,
}

impl Default for PosteriorConfig {
    fn default() -> Self {
        PosteriorConfig {
            kernel: Kernel::Tweedie,
            targets: Targets::Exact,
            guidance: 1.0,
            prior_scale: 1.0,
        }
    }
}

impl PosteriorConfig {
    /// Sets the prior kernel.
    pub fn with_kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = kernel;
        self
    }
    /// Sets the targets.
    pub fn with_targets(mut self, targets: Targets) -> Self {
        self.targets = targets;
        self
    }
    /// Sets the guidance scale `λ ≥ 0` (finite).
    pub fn with_guidance(mut self, guidance: f64) -> Result<Self> {
        if !(guidance >= 0.0 && guidance.is_finite()) {
            return Err(SmcError::invalid(
                "guidance",
                guidance,
                "a finite number ≥ 0",
            ));
        }
        self.guidance = guidance;
        Ok(self)
    }
    /// Sets the prior variance scale `ρ² > 0` (finite).
    pub fn with_prior_scale(mut self, prior_scale: f64) -> Result<Self> {
        if !(prior_scale > 0.0 && prior_scale.is_finite()) {
            return Err(SmcError::invalid(
                "prior scale",
                prior_scale,
                "a finite number > 0",
            ));
        }
        self.prior_scale = prior_scale;
        Ok(self)
    }
    /// The kernel.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }
    /// The targets.
    pub fn targets(&self) -> Targets {
        self.targets
    }
    /// The guidance scale `λ`.
    pub fn guidance(&self) -> f64 {
        self.guidance
    }
    /// The prior variance scale `ρ²`.
    pub fn prior_scale(&self) -> f64 {
        self.prior_scale
    }
}

/// Per grid time `τ_k`: the schedule and the twisting function's Gaussian.
#[derive(Debug, Clone, PartialEq)]
struct Level {
    t: f64,
    alpha: f64,
    sigma2: f64,
    /// `α ρ² / (α² ρ² + σ²)`: the approximate Jacobian `∂x̂_0/∂x` (times I).
    jac: f64,
    /// Cholesky factor of `C_k = R + r_k² H Hᵀ` (row-major `k × k`).
    chol: Vec<f64>,
    /// `−½ (k ln 2π + ln det C_k)`.
    log_norm: f64,
}

/// Per step `τ_k → τ_{k+1}`: the forward transition and the kernel.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Step {
    /// Forward `X_{τ_k} | X_{τ_{k+1}} ~ N(a x, v I)`.
    a: f64,
    v: f64,
    /// Kernel mean `c1 x + c2 · drift`, variance `var`.
    c1: f64,
    c2: f64,
    var: f64,
}

/// The Feynman–Kac model of SMC posterior sampling with a diffusion prior, for the linear
/// inverse problem `y = H x + N(0, R)`, over the grid `T = τ_0 > … > τ_M = 0`.
///
/// - Step 0: `X_0 ~ p_T` (the prior's terminal sampler), `log G_0 = log ỹ_0(X_0)`.
/// - Step `k + 1` (`τ_k → τ_{k+1}`): `X' ~ q_k(· | X) = N(c1 X + c2 (∇ log p_{τ_k}(X) +
///   λ g_k(X)), γ_k² I)`, the prior [`Kernel`] with the guidance drift `g_k` added to the
///   score, and the potential that turns the twisted targets of [`Targets`] into one another.
///
/// The twisting functions approximate `p(y | X_{τ_k} = x)` by
/// `ỹ_k(x) = N(y; H x̂_0(x), R + r_k² H Hᵀ)` with the Tweedie denoiser
/// `x̂_0(x) = (x + σ_k² ∇ log p_{τ_k}(x)) / α_k` and `r_k²` from
/// [`PosteriorConfig::prior_scale`]; at `τ_M = 0` it is exactly the likelihood. The guidance
/// `g_k(x) = J_k Hᵀ C_k⁻¹ (y − H x̂_0(x))` is `∇ log ỹ_k` with the denoiser's Jacobian
/// approximated by `J_k I = α_k r_k² / σ_k² I` (the same Gaussian approximation).
///
/// Its final weighted particles target `p(x | y)` (exactly with [`Targets::Exact`]), and the
/// driver's log-likelihood estimates the evidence `log p(y)`. Generic over the scalar: it runs
/// in [`diffsmc::Smc`] with any resampler and trigger, on `f64` or dual numbers.
///
/// ```
/// use diffsmc::prelude::*;
/// use diffsmc_diffusion_prior::{
///     DiffusionPosterior, GaussianMixturePrior, LinearObservation, PosteriorConfig, TimeGrid,
///     VpSde,
/// };
/// use diffsmc_gaussian_mixture::PaperConfig;
///
/// let problem = PaperConfig::new(2, 2).unwrap().build(3).unwrap();
/// let prior = GaussianMixturePrior::new(problem.prior(), VpSde::default())?;
/// let model = DiffusionPosterior::new(
///     &prior,
///     LinearObservation::from_problem(&problem)?,
///     TimeGrid::uniform(1.0, 20)?,
///     PosteriorConfig::default(),
/// )?;
/// let smc = Smc::new(SmcConfig::new(500)?.with_trigger(Trigger::EssBelow(0.5))?);
/// let out: SmcOutput<f64> = smc.run(&model, &Systematic, 1)?;
/// // The evidence estimate is close to the exact log p(y).
/// assert!((out.log_likelihood - problem.log_evidence()).abs() < 0.5);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone)]
pub struct DiffusionPosterior<P> {
    prior: P,
    obs: LinearObservation,
    grid: TimeGrid,
    config: PosteriorConfig,
    levels: Vec<Level>,
    steps: Vec<Step>,
}

impl<P> DiffusionPosterior<P> {
    /// The model for `prior`, `observation` and `grid`. The grid must start at the SDE's `T`
    /// (relative tolerance 1e-12) and the dimensions must agree; [`Targets::Exact`] needs a
    /// prior with a log-density.
    pub fn new(
        prior: P,
        observation: LinearObservation,
        grid: TimeGrid,
        config: PosteriorConfig,
    ) -> Result<Self>
    where
        P: DiffusionPrior<f64>,
    {
        let d = prior.dim();
        if d == 0 {
            return Err(SmcError::invalid("prior dimension", 0, "at least 1"));
        }
        if observation.state_dim() != d {
            return Err(SmcError::DimensionMismatch {
                what: "columns of H vs prior dimension",
                expected: d,
                got: observation.state_dim(),
            });
        }
        let sde = prior.sde();
        if (grid.start() - sde.t_max()).abs() > 1e-12 * sde.t_max() {
            return Err(SmcError::invalid(
                "first grid time",
                grid.start(),
                "the SDE's horizon T (the prior samples p_T)",
            ));
        }
        if config.targets == Targets::Exact
            && prior.log_density(sde.t_max(), &vec![0.0; d]).is_none()
        {
            return Err(SmcError::invalid(
                "targets",
                "exact",
                "a prior with a log-density (use discretised targets for score-only priors)",
            ));
        }
        let k = observation.obs_dim();
        let h = observation.h();
        let mut hht = vec![0.0; k * k];
        for a in 0..k {
            for b in 0..k {
                hht[a * k + b] = (0..d).map(|j| h[a * d + j] * h[b * d + j]).sum();
            }
        }
        let rho2 = config.prior_scale;
        let mut levels = Vec::with_capacity(grid.times().len());
        for &t in grid.times() {
            let (alpha, sigma2) = (sde.alpha(t), sde.sigma2(t));
            let denom = alpha * alpha * rho2 + sigma2;
            let r2 = rho2 * sigma2 / denom;
            let c: Vec<f64> = observation
                .r()
                .iter()
                .zip(&hht)
                .map(|(r, hh)| r + r2 * hh)
                .collect();
            let chol = cholesky_named(&c, k, "R + r² H Hᵀ")?;
            let log_norm = -0.5 * (k as f64 * LN_2PI + log_det_from_cholesky(&chol, k));
            levels.push(Level {
                t,
                alpha,
                sigma2,
                jac: alpha * rho2 / denom,
                chol,
                log_norm,
            });
        }
        let steps = grid
            .times()
            .windows(2)
            .map(|w| {
                let (a, v) = sde.transition(w[1], w[0]);
                let (c1, c2, var) = match config.kernel {
                    Kernel::EulerMaruyama => {
                        let b = -2.0 * a.ln();
                        (1.0 + 0.5 * b, b, b)
                    }
                    Kernel::Tweedie => (1.0 / a, v / a, v),
                };
                Step { a, v, c1, c2, var }
            })
            .collect();
        Ok(DiffusionPosterior {
            prior,
            obs: observation,
            grid,
            config,
            levels,
            steps,
        })
    }

    /// The prior.
    pub fn prior(&self) -> &P {
        &self.prior
    }

    /// The observation model.
    pub fn observation(&self) -> &LinearObservation {
        &self.obs
    }

    /// The diffusion-time grid.
    pub fn grid(&self) -> &TimeGrid {
        &self.grid
    }

    /// The configuration.
    pub fn config(&self) -> &PosteriorConfig {
        &self.config
    }

    /// `log ỹ_k(x)`, the twisting function at grid time `τ_k` (`k ≤ M`); at `k = M` it is
    /// the log-likelihood `log N(y; H x, R)`.
    ///
    /// # Panics
    /// If `k > M` or `x.len() != d`.
    pub fn log_twist<S: Scalar>(&self, k: usize, x: &[S]) -> S
    where
        P: DiffusionPrior<S>,
    {
        assert_eq!(x.len(), self.obs.state_dim(), "log_twist: point length");
        let d = x.len();
        let mut score = vec![S::zero(); d];
        if self.levels[k].sigma2 > 0.0 {
            self.prior.score(self.levels[k].t, x, &mut score);
        }
        self.twist(k, x, &score, None)
    }

    /// `log ỹ_k(x)` from the score at `x`; writes the guidance `g_k(x)` to `guidance` if given.
    fn twist<S: Scalar>(&self, k: usize, x: &[S], score: &[S], guidance: Option<&mut [S]>) -> S {
        let lev = &self.levels[k];
        let (d, m) = (self.obs.state_dim(), self.obs.obs_dim());
        let h = self.obs.h();
        let y = self.obs.y();
        // w = L⁻¹ (y − H x̂_0), x̂_0 = (x + σ² s) / α.
        let inv_a = 1.0 / lev.alpha;
        let mut w: Vec<S> = (0..m)
            .map(|a| {
                let mut hx = S::zero();
                for j in 0..d {
                    let x0 = if lev.sigma2 > 0.0 {
                        (x[j] + score[j] * lev.sigma2) * inv_a
                    } else {
                        x[j]
                    };
                    hx += x0 * h[a * d + j];
                }
                S::cst(y[a]) - hx
            })
            .collect();
        solve_lower_mixed(&lev.chol, m, &mut w);
        let mut quad = S::zero();
        for wa in &w {
            quad += *wa * *wa;
        }
        if let Some(g) = guidance {
            // g = J Hᵀ C⁻¹ (y − H x̂_0) = J Hᵀ L⁻ᵀ w.
            solve_lower_transpose_mixed(&lev.chol, m, &mut w);
            for j in 0..d {
                let mut s = S::zero();
                for a in 0..m {
                    s += w[a] * h[a * d + j];
                }
                g[j] = s * lev.jac;
            }
        }
        S::cst(lev.log_norm) - quad * 0.5
    }

    /// At `(τ_k, x)`: the score, the log-density (exact targets) and `log ỹ_k`; the proposal
    /// drift `∇ log p + λ g` is written to `drift` when given.
    fn evaluate<S: Scalar>(
        &self,
        k: usize,
        x: &[S],
        score: &mut [S],
        drift: Option<&mut [S]>,
    ) -> (Option<S>, S)
    where
        P: DiffusionPrior<S>,
    {
        let lev = &self.levels[k];
        let exact = self.config.targets == Targets::Exact;
        let log_p = if exact {
            self.prior.score_and_log_density(lev.t, x, score)
        } else {
            if lev.sigma2 > 0.0 {
                self.prior.score(lev.t, x, score);
            }
            None
        };
        let lambda = self.config.guidance;
        let log_twist = match drift {
            Some(drift) if lambda > 0.0 => {
                let lt = self.twist(k, x, score, Some(drift));
                for (dr, s) in drift.iter_mut().zip(score.iter()) {
                    *dr = *s + *dr * lambda;
                }
                lt
            }
            Some(drift) => {
                drift.copy_from_slice(score);
                self.twist(k, x, score, None)
            }
            None => self.twist(k, x, score, None),
        };
        (log_p, log_twist)
    }
}

/// Solves `L x = b` in place, `L` lower-triangular `f64`, `b` scalars.
fn solve_lower_mixed<S: Scalar>(l: &[f64], k: usize, b: &mut [S]) {
    for i in 0..k {
        let mut s = b[i];
        for j in 0..i {
            s -= b[j] * l[i * k + j];
        }
        b[i] = s / l[i * k + i];
    }
}

/// Solves `Lᵀ x = b` in place, `L` lower-triangular `f64`, `b` scalars.
fn solve_lower_transpose_mixed<S: Scalar>(l: &[f64], k: usize, b: &mut [S]) {
    for i in (0..k).rev() {
        let mut s = b[i];
        for j in i + 1..k {
            s -= b[j] * l[j * k + i];
        }
        b[i] = s / l[i * k + i];
    }
}

impl<S: Scalar, P: DiffusionPrior<S>> FeynmanKac<S> for DiffusionPosterior<P> {
    fn dim(&self) -> usize {
        self.obs.state_dim()
    }

    fn n_steps(&self) -> usize {
        self.grid.times().len()
    }

    fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
        self.prior.sample_terminal(rng, x);
    }

    fn log_potential_initial(&self, x: &[S]) -> S {
        self.log_twist(0, x)
    }

    fn sample_transition(&self, t: usize, x_prev: &[S], rng: &mut StreamRng, x: &mut [S]) {
        let k = t - 1;
        let d = x.len();
        let step = self.steps[k];
        let lev = &self.levels[k];
        let mut score = vec![S::zero(); 2 * d];
        let (score, drift) = score.split_at_mut(d);
        self.prior.score(lev.t, x_prev, score);
        if self.config.guidance > 0.0 {
            self.twist(k, x_prev, score, Some(drift));
            for (dr, s) in drift.iter_mut().zip(score.iter()) {
                *dr = *s + *dr * self.config.guidance;
            }
        } else {
            drift.copy_from_slice(score);
        }
        let sd = step.var.sqrt();
        for j in 0..d {
            x[j] = x_prev[j] * step.c1 + drift[j] * step.c2 + sd * standard_normal(rng);
        }
    }

    fn log_potential(&self, t: usize, x_prev: &[S], x: &[S]) -> S {
        let k = t - 1;
        let d = x.len();
        let step = self.steps[k];
        let mut buf = vec![S::zero(); 3 * d];
        let (score, rest) = buf.split_at_mut(d);
        let (drift, score_new) = rest.split_at_mut(d);
        let (log_p_prev, twist_prev) = self.evaluate(k, x_prev, score, Some(drift));
        let (log_p_new, twist_new) = self.evaluate(k + 1, x, score_new, None);
        // Residuals of x against the prior kernel's mean μ and the proposal's mean μ + δ.
        let mut sq_prior = S::zero();
        let mut sq_prop = S::zero();
        for j in 0..d {
            let r_prop = x[j] - x_prev[j] * step.c1 - drift[j] * step.c2;
            sq_prop += r_prop * r_prop;
            if self.config.targets == Targets::Discretised {
                let r_prior = x[j] - x_prev[j] * step.c1 - score[j] * step.c2;
                sq_prior += r_prior * r_prior;
            }
        }
        let inv2var = 0.5 / step.var;
        let log_prior_over_q = match self.config.targets {
            // log p^K(x | x_prev) − log q(x | x_prev): same variance, normalisers cancel.
            Targets::Discretised => (sq_prop - sq_prior) * inv2var,
            // log p_{k+1}(x) + log F(x_prev | x) − log p_k(x_prev) − log q(x | x_prev).
            Targets::Exact => {
                let (lp_new, lp_prev) = match (log_p_new, log_p_prev) {
                    (Some(a), Some(b)) => (a, b),
                    // `new` checked that the prior has a density; a prior that returns None
                    // at some point gives a NaN weight, reported by the driver.
                    _ => return S::cst(f64::NAN),
                };
                let mut sq_fwd = S::zero();
                for j in 0..d {
                    let r = x_prev[j] - x[j] * step.a;
                    sq_fwd += r * r;
                }
                let half_d = 0.5 * d as f64;
                let log_fwd = sq_fwd * (-0.5 / step.v) - half_d * (LN_2PI + step.v.ln());
                let log_q = sq_prop * (-inv2var) - half_d * (LN_2PI + step.var.ln());
                lp_new + log_fwd - lp_prev - log_q
            }
        };
        log_prior_over_q + twist_new - twist_prev
    }

    /// The potential divides by the previous target `p_{τ_k}(x_prev) ỹ_k(x_prev)` (exact
    /// targets) or by `ỹ_k(x_prev)` (discretised targets): a resampler that moves particles
    /// puts some between the prior's modes, where that is tiny, and the weights explode
    /// (measured in `docs/diffusion-prior.md`). The driver refuses such resamplers.
    fn requires_index_resampling(&self) -> Option<&'static str> {
        Some(
            "the diffusion-prior sampler's potential divides by the previous target density \
             at the resampled point, which a moved particle can make arbitrarily small \
             (docs/diffusion-prior.md, \"Resamplers that move particles\")",
        )
    }
}

/// A Feynman–Kac model with the moves of `M` and every potential zero: the proposal run
/// without reweighting. Run it with [`diffsmc::Trigger::Never`]; for a
/// [`DiffusionPosterior`] it is the (biased) "guidance without reweighting" sampler.
///
/// ```
/// use diffsmc::prelude::*;
/// use diffsmc_diffusion_prior::Unweighted;
/// # struct M;
/// # impl<S: Scalar> FeynmanKac<S> for M {
/// #     fn dim(&self) -> usize { 1 }
/// #     fn n_steps(&self) -> usize { 2 }
/// #     fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) { x[0] = S::cst(standard_normal(rng)); }
/// #     fn log_potential_initial(&self, x: &[S]) -> S { x[0] }
/// #     fn sample_transition(&self, _t: usize, xp: &[S], _rng: &mut StreamRng, x: &mut [S]) { x[0] = xp[0]; }
/// #     fn log_potential(&self, _t: usize, _xp: &[S], x: &[S]) -> S { x[0] }
/// # }
/// let smc = Smc::new(SmcConfig::new(10)?.with_trigger(Trigger::Never)?);
/// let out: SmcOutput<f64> = smc.run(&Unweighted(M), &Multinomial, 0)?;
/// assert_eq!(out.log_likelihood, 0.0);
/// assert!(out.ess.iter().all(|&e| (e - 10.0).abs() < 1e-9));
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Unweighted<M>(pub M);

impl<S: Scalar, M: FeynmanKac<S>> FeynmanKac<S> for Unweighted<M> {
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn n_steps(&self) -> usize {
        self.0.n_steps()
    }
    fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
        self.0.sample_initial(rng, x)
    }
    fn log_potential_initial(&self, _x: &[S]) -> S {
        S::zero()
    }
    fn sample_transition(&self, t: usize, x_prev: &[S], rng: &mut StreamRng, x: &mut [S]) {
        self.0.sample_transition(t, x_prev, rng, x)
    }
    fn log_potential(&self, _t: usize, _x_prev: &[S], _x: &[S]) -> S {
        S::zero()
    }
}
