//! Diffusion resampling (Andersson & Zhao, "Diffusion differentiable resampling", 2025).
//!
//! The weighted particles `(X_i, w_i)` define a target `π = Σ w_i δ_{X_i}`. A Gaussian
//! reference `N(μ, Σ)` is fitted to them (weighted moments, or supplied by the user), the
//! particles are whitened (`Σ = L Lᵀ`, `z_i = L⁻¹(X_i − μ)`), and new particles are drawn by
//! running the reverse-time process of the Ornstein–Uhlenbeck noising SDE
//! `dZ = a Z dt + √(−2a) dW` (stationary law `N(0, I)`) from `U(0) ~ N(0, I)` to time `T`. The
//! score of the noised target is known in closed form from the ensemble,
//!
//! ```text
//! s(z, t) = Σ_i α_i(z, t) (c z_i − z) / v,   c = e^{at},  v = 1 − e^{2at},
//! α_i ∝ w_i exp(−|z − c z_i|² / (2v)),
//! ```
//!
//! so no training is needed and every operation is smooth in `(X_i, w_i)`: run on dual numbers,
//! derivatives flow through `μ`, `L`, the softmax weights `α` and the particles. See
//! `docs/resamplers.md` for the maths, the knobs and how to choose them.
//!
//! The hot loop is the score: `K · M · N` kernel evaluations per resampling (`M` output
//! particles, `N` input particles, `K` steps). It is computed per output particle over the
//! whitened particles laid out dimension-major, in the log domain, with the expansion
//! `|z − c z_i|² = |z|² − 2c z·z_i + c²|z_i|²` (the `|z|²` term cancels in the softmax), so each
//! pair costs a `d`-dimensional dot product, one exponential and a `d`-dimensional
//! accumulation. Output particles are independent (each has its own random stream), so they
//! are processed in parallel (rayon) when the work is large enough, with results bit-identical
//! whatever the number of threads.
//!
//! ```
//! use diffsmc::prelude::*;
//! use diffsmc::resample::{DiffusionConfig, DiffusionResampler, Integrator};
//! use diffsmc::rng::Purpose;
//!
//! let config = DiffusionConfig::new()
//!     .with_horizon(2.0)?
//!     .with_steps(8)?
//!     .with_integrator(Integrator::JentzenKloeden)?;
//! let resampler = DiffusionResampler::new(config);
//! let n = 64;
//! let x = Particles::from_vec(n, 1, (0..n).map(|i| i as f64 / n as f64).collect())?;
//! let lw = vec![-(n as f64).ln(); n];
//! let mut out = Particles::zeros(n, 1);
//! let mut out_lw = vec![0.0; n];
//! let key = StreamKey::new(1, 0, Purpose::Resample);
//! resampler.resample(&x, &lw, key, &mut out, &mut out_lw)?;
//! assert!(out.as_slice().iter().all(|v| v.is_finite()));
//! # Ok::<(), SmcError>(())
//! ```

use crate::linalg::{cholesky_with_tolerance, solve_lower};

use super::{ResampleInfo, Resampler, check_shapes};
use crate::error::{Result, SmcError};
use crate::par::map_chunks;
use crate::particles::Particles;
use crate::rng::{StreamKey, StreamRng, standard_normal};
use crate::scalar::{Scalar, log_sum_exp};
use crate::tape::{self, AdjointsMut, CustomOp, Rev};

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// The time integrator of the reverse process (DESIGN §4 step 5).
///
/// With `dU = A U dt + f(U, t) dt + σ dW`, `A = −a`, `Δ = t_k − t_{k−1}`, `ξ ~ N(0, I)`:
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Integrator {
    /// `U' = U + (A U + f) Δ + σ √Δ ξ`. The reference implementation's default.
    #[default]
    EulerMaruyama,
    /// `U' = e^{AΔ} (U + Δ f) + e^{AΔ} σ √Δ ξ`.
    LordRougemont,
    /// Exponential integrator: `U' = e^{AΔ} U + (e^{AΔ} − 1)/A · f + σ √((e^{2AΔ} − 1)/(2A)) ξ`.
    /// Integrates the linear part exactly (with the probability-flow ODE it leaves the
    /// reference `N(0, I)` exactly invariant).
    JentzenKloeden,
    /// Tweedie step (SDE only): `U' = (U + v s) / g + √v ξ` with `g = e^{aΔ}`, `v = 1 − e^{2aΔ}`.
    Tweedie,
}

impl Integrator {
    /// The canonical spec name (`euler-maruyama`, `lord-rougemont`, `jentzen-kloeden`,
    /// `tweedie`).
    pub fn name(self) -> &'static str {
        match self {
            Integrator::EulerMaruyama => "euler-maruyama",
            Integrator::LordRougemont => "lord-rougemont",
            Integrator::JentzenKloeden => "jentzen-kloeden",
            Integrator::Tweedie => "tweedie",
        }
    }

    /// Parses a spec name or its abbreviation (`em`, `lr`, `jk`); `None` if unknown.
    pub fn from_name(s: &str) -> Option<Integrator> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "euler-maruyama" | "em" | "euler" => Some(Integrator::EulerMaruyama),
            "lord-rougemont" | "lr" => Some(Integrator::LordRougemont),
            "jentzen-kloeden" | "jk" => Some(Integrator::JentzenKloeden),
            "tweedie" => Some(Integrator::Tweedie),
            _ => None,
        }
    }
}

/// Which reverse process to integrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Dynamics {
    /// The reverse-time SDE `dU = −a (U + 2 s) dt + √(−2a) dW`.
    Sde,
    /// The probability-flow ODE `dU = −a (U + s) dt` (deterministic given `U(0)`; the default,
    /// as in the reference implementation).
    #[default]
    Ode,
}

/// The Gaussian reference `N(μ, Σ)` the particles are whitened against.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub enum Reference {
    /// Weighted mean and full weighted covariance, whitened with its Cholesky factor.
    #[default]
    Full,
    /// Weighted mean and the diagonal of the weighted covariance.
    Diagonal,
    /// A fixed reference supplied by the user (no derivative flows through it).
    Fixed {
        /// The mean, length `d`.
        mean: Vec<f64>,
        /// The covariance, row-major `d × d`, symmetric positive definite.
        cov: Vec<f64>,
    },
}

/// The knobs of [`DiffusionResampler`], built with validating `with_*` methods.
///
/// | knob | default | valid |
/// |------|---------|-------|
/// | rate `a` | −1 | `a < 0`, finite |
/// | horizon `T` | 1 | `T > 0`, finite |
/// | steps `K` | 8 | `K ≥ 1` (uniform grid `t_k = k T / K`) |
/// | grid | uniform | explicit: strictly increasing, starts at 0, finite (sets `T` and `K`) |
/// | integrator | Euler–Maruyama | any [`Integrator`]; Tweedie needs [`Dynamics::Sde`] |
/// | dynamics | ODE (probability flow) | [`Dynamics`] |
/// | reference | full weighted covariance | [`Reference`] |
/// | jitter | 1e-9 | `≥ 0`, relative to `tr(Σ)/d` |
///
/// ```
/// use diffsmc::resample::{DiffusionConfig, Dynamics, Integrator};
/// let c = DiffusionConfig::new()
///     .with_dynamics(Dynamics::Sde)?
///     .with_integrator(Integrator::Tweedie)?
///     .with_steps(32)?;
/// assert_eq!(c.steps(), 32);
/// assert!(DiffusionConfig::new().with_rate(1.0).is_err());
/// assert!(DiffusionConfig::new().with_integrator(Integrator::Tweedie).is_err()); // ODE default
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DiffusionConfig {
    rate: f64,
    horizon: f64,
    steps: usize,
    grid: Option<Vec<f64>>,
    integrator: Integrator,
    dynamics: Dynamics,
    reference: Reference,
    jitter: f64,
}

impl Default for DiffusionConfig {
    fn default() -> Self {
        DiffusionConfig {
            rate: -1.0,
            horizon: 1.0,
            steps: 8,
            grid: None,
            integrator: Integrator::EulerMaruyama,
            dynamics: Dynamics::Ode,
            reference: Reference::Full,
            jitter: DEFAULT_JITTER,
        }
    }
}

/// Default relative jitter.
pub const DEFAULT_JITTER: f64 = 1e-9;

impl DiffusionConfig {
    /// The defaults: `a = −1`, `T = 1`, `K = 8`, Euler–Maruyama, ODE, full covariance, jitter
    /// `1e-9`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the rate `a < 0` of the noising SDE `dZ = a Z dt + √(−2a) dW`.
    pub fn with_rate(mut self, a: f64) -> Result<Self> {
        if !(a < 0.0 && a.is_finite()) {
            return Err(SmcError::invalid("a", a, "a finite negative rate (a < 0)"));
        }
        self.rate = a;
        Ok(self)
    }

    /// Sets the horizon `T > 0`, with a uniform grid of the current number of steps.
    pub fn with_horizon(mut self, t: f64) -> Result<Self> {
        if !(t > 0.0 && t.is_finite()) {
            return Err(SmcError::invalid(
                "T",
                t,
                "a finite positive horizon (T > 0)",
            ));
        }
        self.horizon = t;
        self.grid = None;
        Ok(self)
    }

    /// Sets the number of steps `K ≥ 1`, with a uniform grid on `[0, T]`.
    pub fn with_steps(mut self, k: usize) -> Result<Self> {
        if k == 0 {
            return Err(SmcError::invalid("K", k, "at least one step (K >= 1)"));
        }
        self.steps = k;
        self.grid = None;
        Ok(self)
    }

    /// Sets an explicit time grid `0 = t_0 < t_1 < … < t_K = T` (which sets `T` and `K`).
    pub fn with_grid(mut self, grid: Vec<f64>) -> Result<Self> {
        const EXPECTED: &str = "a finite, strictly increasing grid of at least two times \
                                starting at 0";
        let shown = || format!("{grid:?}");
        if grid.len() < 2 || grid[0] != 0.0 || grid.iter().any(|t| !t.is_finite()) {
            return Err(SmcError::invalid("grid", shown(), EXPECTED));
        }
        if grid.windows(2).any(|w| w[1] <= w[0]) {
            return Err(SmcError::invalid("grid", shown(), EXPECTED));
        }
        self.horizon = grid[grid.len() - 1];
        self.steps = grid.len() - 1;
        self.grid = Some(grid);
        Ok(self)
    }

    /// Sets the integrator. [`Integrator::Tweedie`] is SDE-only: set
    /// `with_dynamics(Dynamics::Sde)` first.
    pub fn with_integrator(mut self, integrator: Integrator) -> Result<Self> {
        if integrator == Integrator::Tweedie && self.dynamics == Dynamics::Ode {
            return Err(SmcError::invalid(
                "integrator",
                integrator.name(),
                "an ODE integrator (tweedie is SDE-only: set the SDE dynamics first)",
            ));
        }
        self.integrator = integrator;
        Ok(self)
    }

    /// Sets SDE or probability-flow ODE dynamics (ODE with the Tweedie integrator is an error).
    pub fn with_dynamics(mut self, dynamics: Dynamics) -> Result<Self> {
        if dynamics == Dynamics::Ode && self.integrator == Integrator::Tweedie {
            return Err(SmcError::invalid(
                "dynamics",
                "ode",
                "SDE dynamics with the tweedie integrator (it has no ODE form)",
            ));
        }
        self.dynamics = dynamics;
        Ok(self)
    }

    /// Sets the reference; a [`Reference::Fixed`] must have a finite mean and a finite,
    /// symmetric, positive definite covariance of matching size.
    pub fn with_reference(mut self, reference: Reference) -> Result<Self> {
        if let Reference::Fixed { mean, cov } = &reference {
            let d = mean.len();
            if d == 0 || mean.iter().any(|m| !m.is_finite()) {
                return Err(SmcError::invalid(
                    "mean",
                    format!("{mean:?}"),
                    "a non-empty finite mean vector",
                ));
            }
            if cov.len() != d * d {
                return Err(SmcError::DimensionMismatch {
                    what: "reference covariance (d * d entries, row-major)",
                    expected: d * d,
                    got: cov.len(),
                });
            }
            let scale = cov.iter().fold(0.0_f64, |m, c| m.max(c.abs()));
            let symmetric = (0..d)
                .all(|a| (0..a).all(|b| (cov[a * d + b] - cov[b * d + a]).abs() <= 1e-12 * scale));
            if cov.iter().any(|c| !c.is_finite()) || !symmetric {
                return Err(SmcError::invalid(
                    "cov",
                    format!("{cov:?}"),
                    "a finite symmetric covariance matrix",
                ));
            }
            if cholesky(cov, d, 0.0).is_none() {
                return Err(SmcError::NotPositiveDefinite {
                    what: "reference covariance",
                });
            }
        }
        self.reference = reference;
        Ok(self)
    }

    /// Shorthand for `with_reference(Reference::Fixed { mean, cov })`.
    pub fn with_fixed_reference(self, mean: Vec<f64>, cov: Vec<f64>) -> Result<Self> {
        self.with_reference(Reference::Fixed { mean, cov })
    }

    /// Sets the relative jitter `ε ≥ 0`: when the weighted covariance `Σ` is singular (a
    /// Cholesky pivot `≤ 1e-12 τ`, `τ = tr(Σ)/d`), `Σ + ε τ I` is used instead (ε grows ×100
    /// up to four times if needed). With a diagonal reference, each variance `≤ 1e-12 τ` gets
    /// `ε τ` added.
    pub fn with_jitter(mut self, jitter: f64) -> Result<Self> {
        if !(jitter >= 0.0 && jitter.is_finite()) {
            return Err(SmcError::invalid(
                "jitter",
                jitter,
                "a finite non-negative relative jitter",
            ));
        }
        self.jitter = jitter;
        Ok(self)
    }

    /// The rate `a`.
    pub fn rate(&self) -> f64 {
        self.rate
    }
    /// The horizon `T`.
    pub fn horizon(&self) -> f64 {
        self.horizon
    }
    /// The number of steps `K`.
    pub fn steps(&self) -> usize {
        self.steps
    }
    /// The explicit grid, if one was set.
    pub fn explicit_grid(&self) -> Option<&[f64]> {
        self.grid.as_deref()
    }
    /// The time grid `t_0 = 0 < … < t_K = T` (uniform unless an explicit grid was set).
    pub fn times(&self) -> Vec<f64> {
        match &self.grid {
            Some(g) => g.clone(),
            None => (0..=self.steps)
                .map(|k| {
                    if k == self.steps {
                        self.horizon
                    } else {
                        self.horizon * k as f64 / self.steps as f64
                    }
                })
                .collect(),
        }
    }
    /// The integrator.
    pub fn integrator(&self) -> Integrator {
        self.integrator
    }
    /// SDE or ODE.
    pub fn dynamics(&self) -> Dynamics {
        self.dynamics
    }
    /// The reference.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }
    /// The relative jitter.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }
}

// ---------------------------------------------------------------------------------------------
// The resampler
// ---------------------------------------------------------------------------------------------

/// Diffusion resampling (Andersson & Zhao 2025): differentiable by construction.
///
/// Output log-weights are uniform (`−log M`). Output particle `j` uses random stream
/// `key.rng(j)` only (`d` draws for `U(0)`, then `d` per step for the SDE and Tweedie), so
/// results do not depend on the number of threads. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DiffusionResampler {
    config: DiffusionConfig,
    kernel: KernelChoice,
}

/// Which implementation of the score loop to use (the fast lane kernels are selected
/// automatically for `f64`, `Dual64` and `DualSVec64<1|2|3|4|8>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum KernelChoice {
    #[default]
    Auto,
    #[cfg_attr(not(test), allow(dead_code))]
    Generic,
    /// A lane kernel at a given instruction-set level (tests of every level).
    #[cfg_attr(not(test), allow(dead_code))]
    Lanes(Simd),
}

impl DiffusionResampler {
    /// A diffusion resampler with the given knobs.
    pub fn new(config: DiffusionConfig) -> Self {
        DiffusionResampler {
            config,
            kernel: KernelChoice::Auto,
        }
    }

    /// The knobs.
    pub fn config(&self) -> &DiffusionConfig {
        &self.config
    }

    #[cfg(test)]
    fn generic_kernel(mut self) -> Self {
        self.kernel = KernelChoice::Generic;
        self
    }

    #[cfg(test)]
    fn lane_kernel(mut self, simd: Simd) -> Self {
        self.kernel = KernelChoice::Lanes(simd);
        self
    }
}

impl From<DiffusionConfig> for DiffusionResampler {
    fn from(config: DiffusionConfig) -> Self {
        DiffusionResampler::new(config)
    }
}

impl<S: Scalar> Resampler<S> for DiffusionResampler {
    fn name(&self) -> String {
        super::ResamplerSpec::Diffusion(self.config.clone()).to_string()
    }

    fn resample(
        &self,
        particles: &Particles<S>,
        log_weights: &[S],
        key: StreamKey,
        out: &mut Particles<S>,
        out_log_weights: &mut [S],
    ) -> Result<ResampleInfo> {
        check_shapes(particles, log_weights, out, out_log_weights)?;
        let m = out.len();
        out_log_weights.fill(S::cst(-(m as f64).ln()));
        if m == 0 || particles.dim() == 0 {
            return Ok(ResampleInfo::RESAMPLED);
        }
        let prep = prepare(&self.config, particles, log_weights)?;
        let steps = step_coefficients(&self.config);
        let d = particles.dim();
        let out_buf = out.as_mut_slice();
        let (lanes, simd) = match self.kernel {
            KernelChoice::Auto => (S::LANES, Simd::detect()),
            KernelChoice::Generic => (None, Simd::Baseline),
            KernelChoice::Lanes(simd) => (S::LANES, simd),
        };
        let w = &prep.w;
        if S::ON_TAPE {
            resample_on_tape(&prep, &steps, key, simd, out_buf);
            return Ok(ResampleInfo::RESAMPLED);
        }
        match lanes {
            Some(0) => drive(&LaneKernel::<0>::new(w, simd), &prep, &steps, key, out_buf),
            Some(1) => drive(&LaneKernel::<1>::new(w, simd), &prep, &steps, key, out_buf),
            Some(2) => drive(&LaneKernel::<2>::new(w, simd), &prep, &steps, key, out_buf),
            Some(3) => drive(&LaneKernel::<3>::new(w, simd), &prep, &steps, key, out_buf),
            Some(4) => drive(&LaneKernel::<4>::new(w, simd), &prep, &steps, key, out_buf),
            Some(8) => drive(&LaneKernel::<8>::new(w, simd), &prep, &steps, key, out_buf),
            Some(16) => drive(&LaneKernel::<16>::new(w, simd), &prep, &steps, key, out_buf),
            _ => drive(&GenericKernel { w }, &prep, &steps, key, out_buf),
        }
        debug_assert_eq!(out_buf.len(), m * d);
        Ok(ResampleInfo::RESAMPLED)
    }
}

// ---------------------------------------------------------------------------------------------
// Reference, whitening
// ---------------------------------------------------------------------------------------------

/// Whitened particles with positive weight, dimension-major (`z[k * n + i]`), with their
/// normalised log-weights and squared norms.
#[derive(Debug)]
struct Whitened<S> {
    n: usize,
    d: usize,
    z: Vec<S>,
    lw: Vec<S>,
    sqz: Vec<S>,
}

/// The lower-triangular factor `L` of the reference covariance.
#[derive(Debug)]
enum Factor<S> {
    /// Row-major `d × d` lower-triangular.
    Full(Vec<S>),
    /// The diagonal.
    Diag(Vec<S>),
}

#[derive(Debug)]
struct Prepared<S> {
    d: usize,
    mu: Vec<S>,
    factor: Factor<S>,
    w: Whitened<S>,
}

/// Relative pivot threshold below which a covariance counts as singular.
const PIVOT_REL: f64 = 1e-12;

/// Cholesky with a pivot tolerance, `None` when it fails (see [`cholesky_with_tolerance`]).
fn cholesky<S: Scalar>(a: &[S], d: usize, tol: f64) -> Option<Vec<S>> {
    cholesky_with_tolerance(a, d, tol, "covariance").ok()
}

/// Computes the reference and the whitened particles.
fn prepare<S: Scalar>(
    cfg: &DiffusionConfig,
    particles: &Particles<S>,
    log_weights: &[S],
) -> Result<Prepared<S>> {
    let d = particles.dim();
    // Normalise defensively (the trait promises normalised weights; renormalising is cheap and
    // makes the moments exact for slightly unnormalised input).
    if log_weights
        .iter()
        .any(|w| w.re().is_nan() || w.re() == f64::INFINITY)
    {
        return Err(SmcError::invalid(
            "log_weights",
            "NaN or +inf",
            "finite log-weights (or -inf for zero weight)",
        ));
    }
    let lse = log_sum_exp(log_weights);
    if !lse.re().is_finite() {
        return Err(SmcError::invalid(
            "log_weights",
            "all -inf",
            "at least one particle with positive weight",
        ));
    }
    // Particles with zero weight contribute nothing (exactly): drop them.
    let keep: Vec<usize> = (0..particles.len())
        .filter(|&i| log_weights[i].re() > f64::NEG_INFINITY)
        .collect();
    let n = keep.len();
    for &i in &keep {
        if particles.particle(i).iter().any(|v| !v.re().is_finite()) {
            return Err(SmcError::invalid(
                "particles",
                format!("non-finite coordinate in particle {i}"),
                "finite coordinates for every particle with positive weight",
            ));
        }
    }
    let lw: Vec<S> = keep.iter().map(|&i| log_weights[i] - lse).collect();
    let w: Vec<S> = lw.iter().map(|l| l.exp()).collect();

    let (mu, factor) = match &cfg.reference {
        Reference::Fixed { mean, cov } => {
            if mean.len() != d {
                return Err(SmcError::DimensionMismatch {
                    what: "fixed reference mean vs particle dimension",
                    expected: d,
                    got: mean.len(),
                });
            }
            let l = cholesky(cov, d, 0.0).ok_or(SmcError::NotPositiveDefinite {
                what: "reference covariance",
            })?;
            (
                mean.iter().map(|&m| S::cst(m)).collect::<Vec<S>>(),
                Factor::Full(l.into_iter().map(S::cst).collect()),
            )
        }
        Reference::Full | Reference::Diagonal => {
            let diag_only = cfg.reference == Reference::Diagonal;
            let mut mu = vec![S::zero(); d];
            for (&i, &wi) in keep.iter().zip(&w) {
                for (m, &x) in mu.iter_mut().zip(particles.particle(i)) {
                    *m += wi * x;
                }
            }
            let mut cov = vec![S::zero(); d * d];
            let mut dev = vec![S::zero(); d];
            for (&i, &wi) in keep.iter().zip(&w) {
                for ((dv, &x), &m) in dev.iter_mut().zip(particles.particle(i)).zip(&mu) {
                    *dv = x - m;
                }
                for a in 0..d {
                    let wa = wi * dev[a];
                    if diag_only {
                        cov[a * d + a] += wa * dev[a];
                    } else {
                        for b in 0..=a {
                            cov[a * d + b] += wa * dev[b];
                        }
                    }
                }
            }
            for a in 0..d {
                for b in 0..a {
                    cov[b * d + a] = cov[a * d + b];
                }
            }
            let tau = jitter_scale(&cov, &mu, d)?;
            let tol = PIVOT_REL * tau;
            let factor = if diag_only {
                Factor::Diag(
                    (0..d)
                        .map(|k| {
                            let v = cov[k * d + k];
                            if v.re() > tol {
                                v.sqrt()
                            } else {
                                (v + cfg.jitter.max(2.0 * PIVOT_REL) * tau).sqrt()
                            }
                        })
                        .collect(),
                )
            } else {
                Factor::Full(jittered_cholesky(&cov, d, tau, cfg.jitter)?)
            };
            (mu, factor)
        }
    };

    // Whiten: z_i = L⁻¹ (x_i − μ), stored dimension-major.
    let mut z = vec![S::zero(); d * n];
    let mut sqz = vec![S::zero(); n];
    let mut buf = vec![S::zero(); d];
    for (col, &i) in keep.iter().enumerate() {
        for ((b, &x), &m) in buf.iter_mut().zip(particles.particle(i)).zip(&mu) {
            *b = x - m;
        }
        match &factor {
            Factor::Full(l) => solve_lower(l, d, &mut buf),
            Factor::Diag(s) => {
                for (b, &sk) in buf.iter_mut().zip(s) {
                    *b /= sk;
                }
            }
        }
        let mut sq = S::zero();
        for (k, &b) in buf.iter().enumerate() {
            if !b.re().is_finite() {
                return Err(SmcError::invalid(
                    "particles",
                    "non-finite whitened coordinate",
                    "particles whose whitened coordinates are finite",
                ));
            }
            z[k * n + col] = b;
            sq += b * b;
        }
        sqz[col] = sq;
    }
    Ok(Prepared {
        d,
        mu,
        factor,
        w: Whitened { n, d, z, lw, sqz },
    })
}

/// The scale `τ` the jitter is relative to: `tr(Σ)/d`, floored at `2⁻⁵² |μ|²/d` (the
/// resolution of the particles' coordinates) and at the smallest normal `f64` (all particles at
/// the origin).
fn jitter_scale<S: Scalar>(cov: &[S], mu: &[S], d: usize) -> Result<f64> {
    let tr: f64 = (0..d).map(|k| cov[k * d + k].re()).sum::<f64>() / d as f64;
    let mu2: f64 = mu.iter().map(|m| m.re() * m.re()).sum::<f64>() / d as f64;
    if !tr.is_finite() || !mu2.is_finite() {
        return Err(SmcError::invalid(
            "particles",
            "weighted moments overflow",
            "particles whose weighted mean and covariance are finite",
        ));
    }
    Ok(tr.max(f64::EPSILON * mu2).max(f64::MIN_POSITIVE))
}

/// Cholesky of `cov`, adding `ε τ I` (ε = `jitter`, then ×100 up to four times) when a pivot is
/// `≤ 1e-12 τ`.
fn jittered_cholesky<S: Scalar>(cov: &[S], d: usize, tau: f64, jitter: f64) -> Result<Vec<S>> {
    let tol = PIVOT_REL * tau;
    if let Some(l) = cholesky(cov, d, tol) {
        return Ok(l);
    }
    let mut eps = jitter.max(2.0 * PIVOT_REL);
    let mut c = cov.to_vec();
    for _ in 0..5 {
        for k in 0..d {
            c[k * d + k] = cov[k * d + k] + eps * tau;
        }
        if let Some(l) = cholesky(&c, d, tol) {
            return Ok(l);
        }
        eps *= 100.0;
    }
    Err(SmcError::NotPositiveDefinite {
        what: "weighted particle covariance (even after jitter)",
    })
}

// ---------------------------------------------------------------------------------------------
// Step coefficients and the reverse process
// ---------------------------------------------------------------------------------------------

/// Per-step constants: the score at diffusion time `t = T − t_{k−1}` is
/// `s = (c m − u) / v` with `m = Σ α_i z_i`, logits `β u·z_i + log w_i − γ |z_i|²`; the update
/// is `u' = κ_u u + κ_s s + κ_ξ ξ`.
#[derive(Debug, Clone, Copy)]
struct StepCoef {
    c: f64,
    inv_v: f64,
    beta: f64,
    gamma: f64,
    ku: f64,
    ks: f64,
    kxi: f64,
}

fn step_coefficients(cfg: &DiffusionConfig) -> Vec<StepCoef> {
    let a = cfg.rate;
    let grid = cfg.times();
    let t_end = grid[grid.len() - 1];
    let sde = cfg.dynamics == Dynamics::Sde;
    // f = φ s, σ = √(−2a) (SDE) or 0 (ODE).
    let phi = if sde { -2.0 * a } else { -a };
    let sigma = if sde { (-2.0 * a).sqrt() } else { 0.0 };
    grid.windows(2)
        .map(|w| {
            let t = t_end - w[0];
            let delta = w[1] - w[0];
            let c = (a * t).exp();
            let v = -(2.0 * a * t).exp_m1();
            let (ku, ks, kxi) = match cfg.integrator {
                Integrator::EulerMaruyama => (1.0 - a * delta, phi * delta, sigma * delta.sqrt()),
                Integrator::LordRougemont => {
                    let e = (-a * delta).exp();
                    (e, e * delta * phi, e * sigma * delta.sqrt())
                }
                Integrator::JentzenKloeden => {
                    let e = (-a * delta).exp();
                    let lin = (-a * delta).exp_m1() / -a;
                    let var = (-2.0 * a * delta).exp_m1() / (-2.0 * a);
                    (e, lin * phi, sigma * var.sqrt())
                }
                Integrator::Tweedie => {
                    let g = (a * delta).exp();
                    let vv = -(2.0 * a * delta).exp_m1();
                    (1.0 / g, vv / g, vv.sqrt())
                }
            };
            StepCoef {
                c,
                inv_v: 1.0 / v,
                beta: c / v,
                gamma: c * c / (2.0 * v),
                ku,
                ks,
                kxi,
            }
        })
        .collect()
}

/// The ensemble score loop: for each query `q_b` of a block,
/// `m_b = Σ_i α_i z_i` with `log α_i = q_b·z_i + log w_i − γ|z_i|² + const`.
///
/// Implementations must compute each query independently of the others in its block (so that
/// results do not depend on how output particles are grouped or scheduled).
#[cfg_attr(not(feature = "rayon"), allow(dead_code))]
trait ScoreKernel<S: Scalar>: Sync {
    type Scratch: Send;
    /// Work per kernel evaluation, relative to one `f64` evaluation (for the parallel
    /// threshold).
    const COST: usize;
    fn scratch(&self) -> Self::Scratch;
    fn n(&self) -> usize;
    /// `q` and `m` hold `q.len() / d` queries, particle-major.
    fn means(&self, q: &[S], gamma: f64, m: &mut [S], scratch: &mut Self::Scratch);
}

/// Output particles advanced together through the steps (they share each pass over a tile of
/// the whitened particles).
const BLOCK: usize = 4;

/// Minimum `K · M · N · (d + 2) · cost` for which the output particles are processed in
/// parallel. Measured (f64, d = 2, K = 8, best of 200, 2 shared cores): at N = 64 (work
/// 1.3e5) two threads were no faster than one; at N = 128 (5.2e5) they were 1.4× faster.
#[cfg(feature = "rayon")]
const PAR_MIN_WORK: usize = 1 << 19;

/// Runs the reverse process for every output particle and un-whitens into `out`
/// (particle-major `M × d`).
fn drive<S: Scalar, K: ScoreKernel<S>>(
    kernel: &K,
    prep: &Prepared<S>,
    steps: &[StepCoef],
    key: StreamKey,
    out: &mut [S],
) {
    let d = prep.d;
    let noisy = steps.iter().any(|s| s.kxi != 0.0);
    let run = |j0: usize, chunk: &mut [S]| {
        let mut scratch = kernel.scratch();
        let mut u = vec![S::zero(); BLOCK * d];
        let mut q = vec![S::zero(); BLOCK * d];
        let mut mean = vec![S::zero(); BLOCK * d];
        let mut rngs: Vec<StreamRng> = (0..BLOCK).map(|b| key.rng(j0 + b)).collect();
        for (bi, block) in chunk.chunks_mut(BLOCK * d).enumerate() {
            let nb = block.len() / d;
            let (u, q, mean) = (&mut u[..nb * d], &mut q[..nb * d], &mut mean[..nb * d]);
            for (b, rng) in rngs.iter_mut().take(nb).enumerate() {
                *rng = key.rng(j0 + bi * BLOCK + b);
                for uk in &mut u[b * d..(b + 1) * d] {
                    *uk = S::cst(standard_normal(rng));
                }
            }
            for st in steps {
                for (qk, &uk) in q.iter_mut().zip(u.iter()) {
                    *qk = uk * st.beta;
                }
                kernel.means(q, st.gamma, mean, &mut scratch);
                for (b, rng) in rngs.iter_mut().take(nb).enumerate() {
                    for k in b * d..(b + 1) * d {
                        let uk = u[k];
                        let s = (mean[k] * st.c - uk) * st.inv_v;
                        let mut next = uk * st.ku + s * st.ks;
                        if noisy {
                            next += standard_normal(rng) * st.kxi;
                        }
                        u[k] = next;
                    }
                }
            }
            for (ub, xo) in u.chunks_exact(d).zip(block.chunks_exact_mut(d)) {
                unwhiten(prep, ub, xo);
            }
        }
    };
    let m = out.len() / d;
    let work = steps.len() * m * kernel.n() * (d + 2) * K::COST;
    let threads = crate::par::threads();
    if threads > 1 && work >= PAR_MIN_WORK && m > BLOCK && crate::par::may_parallelise::<S>() {
        // Chunks are whole blocks; the grouping does not change any result.
        let per = m.div_ceil(4 * threads).div_ceil(BLOCK).max(1) * BLOCK;
        crate::par::for_each_chunk_mut::<S, _>(out, per * d, true, |c, chunk| run(c * per, chunk));
        return;
    }
    run(0, out);
}

/// `x = μ + L u`.
fn unwhiten<S: Scalar>(prep: &Prepared<S>, u: &[S], x: &mut [S]) {
    let d = prep.d;
    match &prep.factor {
        Factor::Full(l) => {
            for k in 0..d {
                let mut s = prep.mu[k];
                for (lk, &ul) in l[k * d..k * d + k + 1].iter().zip(u) {
                    s += *lk * ul;
                }
                x[k] = s;
            }
        }
        Factor::Diag(sd) => {
            for k in 0..d {
                x[k] = prep.mu[k] + sd[k] * u[k];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Generic kernel (any scalar)
// ---------------------------------------------------------------------------------------------

/// The score loop written once for any [`Scalar`] (two passes per query: logits and their
/// maximum, then exponentials and accumulation). Used for scalars without a lane kernel.
#[derive(Debug)]
struct GenericKernel<'a, S> {
    w: &'a Whitened<S>,
}

impl<S: Scalar> ScoreKernel<S> for GenericKernel<'_, S> {
    type Scratch = Vec<S>;
    const COST: usize = 8;

    fn scratch(&self) -> Vec<S> {
        vec![S::zero(); self.w.n]
    }

    fn n(&self) -> usize {
        self.w.n
    }

    fn means(&self, q: &[S], gamma: f64, m: &mut [S], l: &mut Vec<S>) {
        let w = self.w;
        let (n, d) = (w.n, w.d);
        for (qb, mb) in q.chunks_exact(d).zip(m.chunks_exact_mut(d)) {
            let mut mx = f64::NEG_INFINITY;
            for i in 0..n {
                let mut li = w.lw[i] - w.sqz[i] * gamma;
                for k in 0..d {
                    li += qb[k] * w.z[k * n + i];
                }
                if li.re() > mx {
                    mx = li.re();
                }
                l[i] = li;
            }
            let mut s = S::zero();
            mb.fill(S::zero());
            for i in 0..n {
                let e = (l[i] - mx).exp();
                s += e;
                for k in 0..d {
                    mb[k] += e * w.z[k * n + i];
                }
            }
            for mk in mb.iter_mut() {
                *mk /= s;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reverse mode: the whole reverse process as one tape operation
// ---------------------------------------------------------------------------------------------

/// The whitened particles of a tape run, as tape variables and as values (dimension-major).
#[derive(Debug)]
struct TapeInputs {
    n: usize,
    d: usize,
    z: Vec<Rev>,
    lw: Vec<Rev>,
    sqz: Vec<Rev>,
    /// The same as values.
    w: Whitened<f64>,
}

impl TapeInputs {
    fn new<S: Scalar>(w: &Whitened<S>) -> Self {
        let z: Vec<Rev> = w.z.iter().map(to_rev).collect();
        let lw: Vec<Rev> = w.lw.iter().map(to_rev).collect();
        let sqz: Vec<Rev> = w.sqz.iter().map(to_rev).collect();
        let vals = |v: &[Rev]| v.iter().map(|r| r.value()).collect::<Vec<f64>>();
        let w64 = Whitened {
            n: w.n,
            d: w.d,
            z: vals(&z),
            lw: vals(&lw),
            sqz: vals(&sqz),
        };
        TapeInputs {
            n: w.n,
            d: w.d,
            z,
            lw,
            sqz,
            w: w64,
        }
    }

    /// Softmax weights `α_i ∝ exp(q·z_i + lw_i − γ|z_i|²)` of one query into `e` (normalised),
    /// and the mean `Σ α_i z_i` into `m`.
    #[inline(always)]
    fn weights<F: MulAdd>(&self, q: &[f64], gamma: f64, e: &mut [f64], m: &mut [f64]) {
        let (n, w) = (self.n, &self.w);
        for ((ei, &l), &sq) in e.iter_mut().zip(&w.lw).zip(&w.sqz) {
            *ei = l - sq * gamma;
        }
        for (k, &qk) in q.iter().enumerate() {
            for (ei, &z) in e.iter_mut().zip(&w.z[k * n..(k + 1) * n]) {
                *ei += qk * z;
            }
        }
        let mx = e.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        for ei in e.iter_mut() {
            *ei = exp_nonpos::<F>(*ei - mx);
        }
        let inv = 1.0 / e.iter().sum::<f64>();
        for ei in e.iter_mut() {
            *ei *= inv;
        }
        for (k, mk) in m.iter_mut().enumerate() {
            let zk = &w.z[k * n..(k + 1) * n];
            *mk = e.iter().zip(zk).map(|(a, z)| a * z).sum();
        }
    }
}

/// Output particles per task of the reverse-mode forward and backward loops (fixed, so the
/// result does not depend on the number of threads).
const TAPE_CHUNK: usize = 64;

/// The whitened reverse process of every output particle, `u_K = Φ(z, lw, |z|²; ξ)`, as one
/// tape operation. The forward pass is the `f64` run's own (the lane kernel, in parallel) and
/// keeps the trajectories `u_k`; the backward pass walks each particle's steps in reverse:
/// with `s = (c·m − u)/v`, `m = Σ_i α_i z_i` at `q = β u`,
/// `ū_k = k_u ū_{k+1} − (k_s/v) ū_{k+1} + β q̄`, `m̄ = (c k_s / v) ū_{k+1}`, and through the
/// softmax (`l̄_i = α_i (m̄·z_i − m̄·m)`): `z̄_i += α_i m̄ + l̄_i q`, `lw̄_i += l̄_i`,
/// `sq̄z_i −= γ l̄_i`, `q̄ = Σ_i l̄_i z_i`. The weights `α` are recomputed, so the memory is
/// the trajectories, O(K·M·d); the input adjoints are summed per fixed chunk of particles, in
/// parallel, then in chunk order.
#[derive(Debug)]
struct DriveOp {
    inputs: TapeInputs,
    steps: Vec<StepCoef>,
    /// `u_k` for k = 0..K (particle-major per step: `traj[k][j * d + c]`).
    traj: Vec<Vec<f64>>,
    /// The instruction set of the backward loops.
    simd: Simd,
}

impl DriveOp {
    /// Backward pass of particles `range`: adds their input adjoints to `acc`
    /// (`z` dimension-major, then `lw`, then `sqz`), with the widest instruction set the CPU
    /// has.
    #[allow(unsafe_code)]
    fn backward_chunk(&self, range: std::ops::Range<usize>, out_adj: &[f64], acc: &mut [f64]) {
        match self.simd {
            // SAFETY: `Simd::detect` returned this level only after `is_x86_feature_detected!`
            // confirmed every feature the function enables.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => unsafe { self.backward_chunk_avx512(range, out_adj, acc) },
            // SAFETY: as above (avx2 and fma detected).
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2Fma => unsafe { self.backward_chunk_avx2(range, out_adj, acc) },
            Simd::Baseline => self.backward_chunk_impl::<Plain>(range, out_adj, acc),
        }
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[allow(unsafe_code)]
    unsafe fn backward_chunk_avx2(
        &self,
        range: std::ops::Range<usize>,
        out_adj: &[f64],
        acc: &mut [f64],
    ) {
        self.backward_chunk_impl::<Fused>(range, out_adj, acc)
    }

    /// # Safety
    /// The CPU must support AVX-512 (F, DQ), AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
    #[allow(unsafe_code)]
    unsafe fn backward_chunk_avx512(
        &self,
        range: std::ops::Range<usize>,
        out_adj: &[f64],
        acc: &mut [f64],
    ) {
        self.backward_chunk_impl::<Fused>(range, out_adj, acc)
    }

    #[inline(always)]
    fn backward_chunk_impl<F: MulAdd>(
        &self,
        range: std::ops::Range<usize>,
        out_adj: &[f64],
        acc: &mut [f64],
    ) {
        let w = &self.inputs;
        let (n, d) = (w.n, w.d);
        let (zacc, rest) = acc.split_at_mut(n * d);
        let (lwacc, sqacc) = rest.split_at_mut(n);
        let mut alpha = vec![0.0; n];
        let mut g = vec![0.0; n];
        let mut m = vec![0.0; d];
        let mut q = vec![0.0; d];
        let mut ubar = vec![0.0; d];
        let mut next = vec![0.0; d];
        let mut mbar = vec![0.0; d];
        for j in range {
            ubar.copy_from_slice(&out_adj[j * d..(j + 1) * d]);
            if ubar.iter().all(|&v| v == 0.0) {
                continue;
            }
            for (k, st) in self.steps.iter().enumerate().rev() {
                let u = &self.traj[k][j * d..(j + 1) * d];
                for (qc, &uc) in q.iter_mut().zip(u) {
                    *qc = uc * st.beta;
                }
                w.weights::<F>(&q, st.gamma, &mut alpha, &mut m);
                // ū_{k+1} → ū_k (direct), m̄.
                let mscale = st.ks * st.inv_v * st.c;
                for c in 0..d {
                    next[c] = ubar[c] * (st.ku - st.ks * st.inv_v);
                }
                for (mb, &v) in mbar.iter_mut().zip(&ubar) {
                    *mb = v * mscale;
                }
                let gbar: f64 = mbar.iter().zip(&m).map(|(a, b)| a * b).sum();
                g.fill(-gbar);
                for (c, &mc) in mbar.iter().enumerate() {
                    for (gi, &z) in g.iter_mut().zip(&w.w.z[c * n..(c + 1) * n]) {
                        *gi += mc * z;
                    }
                }
                for (gi, &a) in g.iter_mut().zip(&alpha) {
                    *gi *= a;
                }
                for c in 0..d {
                    let zc = &w.w.z[c * n..(c + 1) * n];
                    let (mc, qc) = (mbar[c], q[c]);
                    for ((za, &a), &gi) in zacc[c * n..(c + 1) * n].iter_mut().zip(&alpha).zip(&g) {
                        *za += a * mc + gi * qc;
                    }
                    let qbar: f64 = g.iter().zip(zc).map(|(gi, z)| gi * z).sum();
                    next[c] += qbar * st.beta;
                }
                for ((la, sa), &gi) in lwacc.iter_mut().zip(sqacc.iter_mut()).zip(&g) {
                    *la += gi;
                    *sa -= st.gamma * gi;
                }
                ubar.copy_from_slice(&next);
            }
        }
    }
}

impl CustomOp for DriveOp {
    fn backward(&self, out_adj: &[f64], adj: &mut AdjointsMut<'_>) {
        let w = &self.inputs;
        let m = out_adj.len() / w.d.max(1);
        let len = w.n * (w.d + 2);
        let chunks = m.div_ceil(TAPE_CHUNK);
        let one = |c: usize| {
            let mut acc = vec![0.0; len];
            self.backward_chunk(
                c * TAPE_CHUNK..((c + 1) * TAPE_CHUNK).min(m),
                out_adj,
                &mut acc,
            );
            acc
        };
        let parts = map_chunks::<f64, _>(chunks, one);
        let mut total = vec![0.0; len];
        for p in &parts {
            for (t, v) in total.iter_mut().zip(p) {
                *t += v;
            }
        }
        let nodes = w.z.iter().chain(&w.lw).chain(&w.sqz);
        for (&r, &a) in nodes.zip(&total) {
            if a != 0.0 {
                adj.add(r, a);
            }
        }
    }
}

/// [`DiffusionResampler::resample`] on the reverse-mode tape scalar: the reverse process runs
/// in `f64` with the lane kernel and is recorded as one [`DriveOp`]; the reference, the
/// whitening and the un-whitening are recorded node by node (O(N·d²)).
fn resample_on_tape<S: Scalar>(
    prep: &Prepared<S>,
    steps: &[StepCoef],
    key: StreamKey,
    simd: Simd,
    out: &mut [S],
) {
    let inputs = TapeInputs::new(&prep.w);
    let d = prep.d;
    let m = out.len() / d;
    let noisy = steps.iter().any(|s| s.kxi != 0.0);
    let kernel = LaneKernel::<0>::new(&inputs.w, simd);
    // Trajectories, per chunk of output particles.
    let run = |c: usize| -> Vec<Vec<f64>> {
        let range = c * TAPE_CHUNK..((c + 1) * TAPE_CHUNK).min(m);
        let mut traj = vec![Vec::with_capacity(range.len() * d); steps.len() + 1];
        let mut scratch = <LaneKernel<0> as ScoreKernel<f64>>::scratch(&kernel);
        let mut q = vec![0.0; BLOCK * d];
        let mut mean = vec![0.0; BLOCK * d];
        let mut j = range.start;
        while j < range.end {
            let nb = BLOCK.min(range.end - j);
            let mut rngs: Vec<StreamRng> = (0..nb).map(|b| key.rng(j + b)).collect();
            let mut u: Vec<f64> = Vec::with_capacity(nb * d);
            for rng in rngs.iter_mut() {
                for _ in 0..d {
                    u.push(standard_normal(rng));
                }
            }
            for (k, st) in steps.iter().enumerate() {
                traj[k].extend_from_slice(&u);
                let (q, mean) = (&mut q[..nb * d], &mut mean[..nb * d]);
                for (qk, &uk) in q.iter_mut().zip(&u) {
                    *qk = uk * st.beta;
                }
                ScoreKernel::<f64>::means(&kernel, q, st.gamma, mean, &mut scratch);
                for (b, rng) in rngs.iter_mut().enumerate() {
                    for kk in b * d..(b + 1) * d {
                        let uk = u[kk];
                        let s = (mean[kk] * st.c - uk) * st.inv_v;
                        let mut nx = uk * st.ku + s * st.ks;
                        if noisy {
                            nx += standard_normal(rng) * st.kxi;
                        }
                        u[kk] = nx;
                    }
                }
            }
            traj[steps.len()].extend_from_slice(&u);
            j += nb;
        }
        traj
    };
    let parts = map_chunks::<f64, _>(m.div_ceil(TAPE_CHUNK), run);
    let mut traj = vec![Vec::with_capacity(m * d); steps.len() + 1];
    for part in parts {
        for (t, p) in traj.iter_mut().zip(part) {
            t.extend_from_slice(&p);
        }
    }
    let values = traj[steps.len()].clone();
    let mut uk = vec![Rev::constant(0.0); m * d];
    tape::custom(
        &values,
        Box::new(DriveOp {
            inputs,
            steps: steps.to_vec(),
            traj,
            simd,
        }),
        &mut uk,
    );
    let mut ub = vec![S::zero(); d];
    for (ur, xo) in uk.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        for (b, &r) in ub.iter_mut().zip(ur) {
            *b = from_rev(r);
        }
        unwhiten(prep, &ub, xo);
    }
}

/// The scalar as a tape variable (a constant for any other scalar type; only used for
/// [`Rev`], see [`Scalar::ON_TAPE`]).
#[inline]
fn to_rev<S: Scalar>(x: &S) -> Rev {
    tape::as_rev(x).unwrap_or_else(|| Rev::constant(x.re()))
}

/// The inverse of [`to_rev`].
#[inline]
fn from_rev<S: Scalar>(r: Rev) -> S {
    tape::from_rev(r).unwrap_or_else(|| S::cst(r.value()))
}

// ---------------------------------------------------------------------------------------------
// Lane kernel: f64 (P = 0) and first-order duals with P derivative lanes, as flat f64 arrays
// ---------------------------------------------------------------------------------------------

/// Chunk width of the vectorised loops (`f64` lanes processed together).
const CH: usize = 8;
/// Particles per tile (a multiple of [`CH`]): a tile of whitened particles is read by every
/// query of a block while it is in L1/L2.
const TILE: usize = 256;

/// Value and `P` derivative lanes of a scalar with [`Scalar::LANES`] `= Some(P)`.
#[inline]
fn split<S: Scalar, const P: usize>(x: &S) -> (f64, [f64; P]) {
    let mut eps = [0.0; P];
    let re = x.to_lanes(&mut eps);
    (re, eps)
}

/// The inverse of [`split`].
#[inline]
fn join<S: Scalar, const P: usize>(re: f64, eps: [f64; P]) -> S {
    S::from_lanes(re, &eps)
}

/// `a · b + c`, plain (two roundings) or fused (one rounding; only where the CPU has FMA).
trait MulAdd {
    fn madd(a: f64, b: f64, c: f64) -> f64;
}

#[derive(Debug)]
struct Plain;
impl MulAdd for Plain {
    #[inline(always)]
    fn madd(a: f64, b: f64, c: f64) -> f64 {
        a * b + c
    }
}

#[cfg(target_arch = "x86_64")]
#[derive(Debug)]
struct Fused;
#[cfg(target_arch = "x86_64")]
impl MulAdd for Fused {
    #[inline(always)]
    fn madd(a: f64, b: f64, c: f64) -> f64 {
        a.mul_add(b, c)
    }
}

/// Instruction set of the lane kernel, detected once per resampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Simd {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Simd {
    /// Every level this CPU can run, from the baseline up.
    #[cfg(test)]
    fn available() -> Vec<Simd> {
        let mut v = vec![Simd::Baseline];
        #[cfg(target_arch = "x86_64")]
        {
            let best = Simd::detect();
            if best != Simd::Baseline {
                v.push(Simd::Avx2Fma);
            }
            if best == Simd::Avx512 {
                v.push(Simd::Avx512);
            }
        }
        v
    }

    fn detect() -> Simd {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Simd::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Simd::Avx2Fma;
            }
        }
        Simd::Baseline
    }
}

/// Whitened particles as `f64` lanes, padded to a multiple of [`CH`] with zero-weight entries.
/// Lane 0 is the value, lanes `1..=P` the derivative parts.
#[derive(Debug)]
struct LaneKernel<const P: usize> {
    n: usize,
    d: usize,
    /// `z[(lane * d + k) * n + i]`.
    z: Vec<f64>,
    /// `lw[lane * n + i]`.
    lw: Vec<f64>,
    /// `sqz[lane * n + i]`.
    sqz: Vec<f64>,
    simd: Simd,
}

#[derive(Debug)]
struct LaneScratch {
    /// Logits, then exponentials, of one tile, per lane: `l[lane * TILE + i]`.
    l: Vec<f64>,
    /// Query lanes `q[(b * (P + 1) + lane) * d + k]`.
    q: Vec<f64>,
    /// Running maximum of the value-lane logits, per query.
    mx: Vec<f64>,
    /// Running `Σ e_i` lanes, `s[b * (P + 1) + lane]`.
    s: Vec<f64>,
    /// Running `Σ e_i z_i` lanes, `acc[(b * (P + 1) + lane) * d + k]`.
    acc: Vec<f64>,
}

impl<const P: usize> LaneKernel<P> {
    /// `simd` must come from [`Simd::detect`] (or be a level it would also allow).
    fn new<S: Scalar>(w: &Whitened<S>, simd: Simd) -> Self {
        let (n0, d) = (w.n, w.d);
        let n = n0.div_ceil(CH) * CH;
        let lanes = P + 1;
        let mut z = vec![0.0; lanes * d * n];
        let mut lw = vec![0.0; lanes * n];
        let mut sqz = vec![0.0; lanes * n];
        lw[n0..n].fill(f64::NEG_INFINITY);
        // Lane `p` of a value lives at `base + p * stride`.
        let put = |dst: &mut [f64], base: usize, stride: usize, x: &S| {
            let (re, eps) = split::<S, P>(x);
            dst[base] = re;
            for (p, e) in eps.iter().enumerate() {
                dst[base + (p + 1) * stride] = *e;
            }
        };
        for i in 0..n0 {
            put(&mut lw, i, n, &w.lw[i]);
            put(&mut sqz, i, n, &w.sqz[i]);
            for k in 0..d {
                put(&mut z, k * n + i, d * n, &w.z[k * n0 + i]);
            }
        }
        LaneKernel {
            n,
            d,
            z,
            lw,
            sqz,
            simd,
        }
    }

    /// Row `k` of lane `lane` of the whitened particles, restricted to the tile.
    #[inline(always)]
    fn row(&self, lane: usize, k: usize, t0: usize, tl: usize) -> &[f64] {
        let base = (lane * self.d + k) * self.n + t0;
        &self.z[base..base + tl]
    }

    /// Logits of one tile `[t0, t0 + tl)` for one query (all lanes) into `l`; returns the tile
    /// maximum of the value lane.
    #[inline(always)]
    fn tile_logits<F: MulAdd>(
        &self,
        t0: usize,
        tl: usize,
        q: &[f64],
        gamma: f64,
        l: &mut [f64],
    ) -> f64 {
        let (n, d) = (self.n, self.d);
        let ng = -gamma;
        for lane in 0..=P {
            let lt = &mut l[lane * TILE..lane * TILE + tl];
            let lw = &self.lw[lane * n + t0..lane * n + t0 + tl];
            let sq = &self.sqz[lane * n + t0..lane * n + t0 + tl];
            for ((v, &a), &b) in lt.iter_mut().zip(lw).zip(sq) {
                *v = F::madd(ng, b, a);
            }
            // Value lane: Σ_k q_k z_k. Derivative lane p: Σ_k (q'_k z_k + q_k z'_k).
            let terms = if lane == 0 { d } else { 2 * d };
            let term = |t: usize| -> (f64, &[f64]) {
                if lane == 0 {
                    (q[t], self.row(0, t, t0, tl))
                } else if t < d {
                    (q[lane * d + t], self.row(0, t, t0, tl))
                } else {
                    (q[t - d], self.row(lane, t - d, t0, tl))
                }
            };
            let mut t = 0;
            while t < terms {
                match terms - t {
                    1 => {
                        axpy::<F, 1>(lt, [term(t)]);
                        t += 1;
                    }
                    2 | 3 => {
                        axpy::<F, 2>(lt, [term(t), term(t + 1)]);
                        t += 2;
                    }
                    _ => {
                        axpy::<F, 4>(lt, [term(t), term(t + 1), term(t + 2), term(t + 3)]);
                        t += 4;
                    }
                }
            }
        }
        lane_max(&l[..tl])
    }

    /// Exponentials of one tile: `e_i = exp(l_i − mx)` (value lane) and `e_i · l_i`
    /// (derivative lanes), in place; adds their sums to `s`.
    #[inline(always)]
    fn tile_exp<F: MulAdd>(&self, tl: usize, l: &mut [f64], mx: f64, s: &mut [f64]) {
        let (l0, lp) = l.split_at_mut(TILE);
        let l0 = &mut l0[..tl];
        // A plain map loop: the loop vectoriser uses the full vector width.
        for v in l0.iter_mut() {
            *v = exp_nonpos::<F>(*v - mx);
        }
        s[0] += lane_sum(l0);
        for p in 1..=P {
            let lpp = &mut lp[(p - 1) * TILE..(p - 1) * TILE + tl];
            for (v, &e) in lpp.iter_mut().zip(l0.iter()) {
                *v *= e;
            }
            s[p] += lane_sum(lpp);
        }
    }

    /// Adds `Σ_i e_i z_i` over one tile to `acc` (all lanes; product rule on the derivative
    /// lanes: `Σ (e_i z_i' + e_i' z_i)`), several coordinates at a time.
    #[inline(always)]
    fn tile_accumulate<F: MulAdd>(&self, t0: usize, tl: usize, l: &[f64], acc: &mut [f64]) {
        let d = self.d;
        let e0 = &l[..tl];
        let mut k = 0;
        while k < d {
            let g = match d - k {
                1 => 1,
                2 | 3 => 2,
                _ => 4,
            };
            let r = |lane: usize, j: usize| self.row(lane, k + j.min(g - 1), t0, tl);
            let sums: [f64; 4] = match g {
                1 => pad(dots::<F, 1>(e0, [r(0, 0)])),
                2 => pad(dots::<F, 2>(e0, [r(0, 0), r(0, 1)])),
                _ => dots::<F, 4>(e0, [r(0, 0), r(0, 1), r(0, 2), r(0, 3)]),
            };
            for j in 0..g {
                acc[k + j] += sums[j];
            }
            for p in 1..=P {
                let ep = &l[p * TILE..p * TILE + tl];
                let sums: [f64; 4] = match g {
                    1 => pad(dots2::<F, 1>(e0, ep, [r(p, 0)], [r(0, 0)])),
                    2 => pad(dots2::<F, 2>(
                        e0,
                        ep,
                        [r(p, 0), r(p, 1)],
                        [r(0, 0), r(0, 1)],
                    )),
                    _ => dots2::<F, 4>(
                        e0,
                        ep,
                        [r(p, 0), r(p, 1), r(p, 2), r(p, 3)],
                        [r(0, 0), r(0, 1), r(0, 2), r(0, 3)],
                    ),
                };
                for j in 0..g {
                    acc[p * d + k + j] += sums[j];
                }
            }
            k += g;
        }
    }

    /// The score loop over tiles for a block of queries with online max-rescaling: when a tile
    /// raises a query's running maximum, its running sums are scaled by `exp(old − new)`.
    #[inline(always)]
    fn means_impl<F: MulAdd>(&self, nq: usize, gamma: f64, sc: &mut LaneScratch) {
        let d = self.d;
        let lanes = P + 1;
        sc.mx[..nq].fill(f64::NEG_INFINITY);
        sc.s[..nq * lanes].fill(0.0);
        sc.acc[..nq * lanes * d].fill(0.0);
        let mut t0 = 0;
        while t0 < self.n {
            let tl = TILE.min(self.n - t0);
            for b in 0..nq {
                let q = &sc.q[b * lanes * d..(b + 1) * lanes * d];
                let tm = self.tile_logits::<F>(t0, tl, q, gamma, &mut sc.l);
                if tm == f64::NEG_INFINITY {
                    continue;
                }
                let mx = &mut sc.mx[b];
                let s = &mut sc.s[b * lanes..(b + 1) * lanes];
                let acc = &mut sc.acc[b * lanes * d..(b + 1) * lanes * d];
                if tm > *mx {
                    if *mx > f64::NEG_INFINITY {
                        let r = (*mx - tm).exp();
                        s.iter_mut().for_each(|v| *v *= r);
                        acc.iter_mut().for_each(|v| *v *= r);
                    }
                    *mx = tm;
                }
                self.tile_exp::<F>(tl, &mut sc.l, *mx, s);
                self.tile_accumulate::<F>(t0, tl, &sc.l, acc);
            }
            t0 += tl;
        }
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[allow(unsafe_code)]
    unsafe fn means_avx2(&self, nq: usize, gamma: f64, sc: &mut LaneScratch) {
        self.means_impl::<Fused>(nq, gamma, sc)
    }

    /// # Safety
    /// The CPU must support AVX-512 (F, DQ), AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
    #[allow(unsafe_code)]
    unsafe fn means_avx512(&self, nq: usize, gamma: f64, sc: &mut LaneScratch) {
        avx512::means(self, nq, gamma, sc)
    }

    /// Runs the score loop with the widest instruction set the CPU has.
    #[allow(unsafe_code)]
    fn means_dispatch(&self, nq: usize, gamma: f64, sc: &mut LaneScratch) {
        match self.simd {
            // SAFETY: `Simd::detect` returned this level only after `is_x86_feature_detected!`
            // confirmed every feature the function enables.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => unsafe { self.means_avx512(nq, gamma, sc) },
            // SAFETY: as above (avx2 and fma detected).
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2Fma => unsafe { self.means_avx2(nq, gamma, sc) },
            Simd::Baseline => self.means_impl::<Plain>(nq, gamma, sc),
        }
    }
}

impl<S: Scalar, const P: usize> ScoreKernel<S> for LaneKernel<P> {
    type Scratch = LaneScratch;
    const COST: usize = 1 + 2 * P;

    fn scratch(&self) -> LaneScratch {
        let lanes = P + 1;
        LaneScratch {
            l: vec![0.0; lanes * TILE],
            q: vec![0.0; BLOCK * lanes * self.d],
            mx: vec![0.0; BLOCK],
            s: vec![0.0; BLOCK * lanes],
            acc: vec![0.0; BLOCK * lanes * self.d],
        }
    }

    fn n(&self) -> usize {
        self.n
    }

    fn means(&self, q: &[S], gamma: f64, m: &mut [S], sc: &mut LaneScratch) {
        let d = self.d;
        let lanes = P + 1;
        let nq = q.len() / d;
        for (b, qb) in q.chunks_exact(d).enumerate() {
            for (k, qk) in qb.iter().enumerate() {
                let (re, eps) = split::<S, P>(qk);
                sc.q[b * lanes * d + k] = re;
                for (p, e) in eps.iter().enumerate() {
                    sc.q[(b * lanes + p + 1) * d + k] = *e;
                }
            }
        }
        self.means_dispatch(nq, gamma, sc);
        for (b, mb) in m.chunks_exact_mut(d).enumerate() {
            let s = &sc.s[b * lanes..(b + 1) * lanes];
            let acc = &sc.acc[b * lanes * d..(b + 1) * lanes * d];
            let inv = 1.0 / s[0];
            for (k, mk) in mb.iter_mut().enumerate() {
                let re = acc[k] * inv;
                let mut eps = [0.0; P];
                for (p, e) in eps.iter_mut().enumerate() {
                    *e = (acc[(p + 1) * d + k] - re * s[p + 1]) * inv;
                }
                *mk = join::<S, P>(re, eps);
            }
        }
    }
}

#[inline(always)]
fn hsum(a: &[f64; CH]) -> f64 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// `y_i += Σ_j c_j x_{j,i}` over `G` rows (a map loop: vectorises at full width).
#[inline(always)]
fn axpy<F: MulAdd, const G: usize>(y: &mut [f64], rows: [(f64, &[f64]); G]) {
    let n = y.len();
    let x: [&[f64]; G] = std::array::from_fn(|j| &rows[j].1[..n]);
    let c: [f64; G] = std::array::from_fn(|j| rows[j].0);
    for i in 0..n {
        let mut v = y[i];
        for j in 0..G {
            v = F::madd(c[j], x[j][i], v);
        }
        y[i] = v;
    }
}

/// `[Σ_i e_i x_{j,i}]_j` for `G` rows (one row at a time: see [`dot`]).
#[inline(always)]
fn dots<F: MulAdd, const G: usize>(e: &[f64], rows: [&[f64]; G]) -> [f64; G] {
    let mut out = [0.0; G];
    for j in 0..G {
        out[j] = dot::<F>(e, rows[j]);
    }
    out
}

/// `[Σ_i (e_i x_{j,i} + f_i y_{j,i})]_j` for `G` row pairs.
#[inline(always)]
fn dots2<F: MulAdd, const G: usize>(
    e: &[f64],
    f: &[f64],
    x: [&[f64]; G],
    y: [&[f64]; G],
) -> [f64; G] {
    let mut out = [0.0; G];
    for j in 0..G {
        out[j] = dot::<F>(e, x[j]) + dot::<F>(f, y[j]);
    }
    out
}

/// Lanes of the accumulators of [`dot`]: four vectors of [`CH`] `f64`, so four independent
/// FMA chains hide the FMA latency.
const ACC: usize = 4 * CH;

/// `Σ_i e_i x_i` over a length that is a multiple of [`CH`]: one [`ACC`]-lane accumulator
/// over blocks of `ACC` (one array, so LLVM's SLP vectoriser maps it onto whole vectors), the
/// remaining chunks on its first [`CH`] lanes, then a fixed summation tree.
#[inline(always)]
fn dot<F: MulAdd>(e: &[f64], x: &[f64]) -> f64 {
    let n = e.len();
    let x = &x[..n];
    let mut a = [0.0; ACC];
    let eb = e.chunks_exact(ACC);
    let xb = x.chunks_exact(ACC);
    let (er, xr) = (eb.remainder(), xb.remainder());
    for (ev, xv) in eb.zip(xb) {
        for c in 0..ACC {
            a[c] = F::madd(ev[c], xv[c], a[c]);
        }
    }
    for (ev, xv) in er.chunks_exact(CH).zip(xr.chunks_exact(CH)) {
        for c in 0..CH {
            a[c] = F::madd(ev[c], xv[c], a[c]);
        }
    }
    let mut s = [0.0; CH];
    for c in 0..CH {
        s[c] = (a[c] + a[CH + c]) + (a[2 * CH + c] + a[3 * CH + c]);
    }
    hsum(&s)
}

/// Pads a short array of sums to four entries.
#[inline(always)]
fn pad<const G: usize>(v: [f64; G]) -> [f64; 4] {
    std::array::from_fn(|j| if j < G { v[j] } else { 0.0 })
}

/// Maximum of a slice whose length is a multiple of [`CH`], with [`CH`] lanes.
#[inline(always)]
fn lane_max(v: &[f64]) -> f64 {
    let mut m = [f64::NEG_INFINITY; CH];
    for vc in v.chunks_exact(CH) {
        for c in 0..CH {
            m[c] = if vc[c] > m[c] { vc[c] } else { m[c] };
        }
    }
    hmax(&m)
}

/// `Σ v_i` for a slice whose length is a multiple of [`CH`], with [`CH`] lane accumulators.
#[inline(always)]
fn lane_sum(v: &[f64]) -> f64 {
    let mut s = [0.0; CH];
    for vc in v.chunks_exact(CH) {
        for c in 0..CH {
            s[c] += vc[c];
        }
    }
    hsum(&s)
}

#[inline(always)]
fn hmax(a: &[f64; CH]) -> f64 {
    a.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// `ln 2` split for Cody–Waite reduction: `LN2_HI` has trailing zero bits (0x3FE62E42FEE00000),
/// so `n · LN2_HI` is exact for the `|n| ≤ 1022` used here.
const LN2_HI: f64 = 6.931_471_803_691_238e-1;
/// `ln 2 − LN2_HI`.
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
/// `1.5 · 2^52`: adding it rounds to an integer held in the low mantissa bits.
const EXP_SHIFT: f64 = 6_755_399_441_055_744.0;

/// Branch-free `exp(x)` for `x ≤ 0` (max-subtracted logits), including `-inf` (→ 0); results
/// below `exp(−708)` are flushed to 0. Cody–Waite reduction `x = n ln 2 + r`, `|r| ≤ ln2/2`,
/// degree-12 Taylor polynomial (truncation error < 2.5e-16 relative), scaling by `2^n` through
/// the exponent bits. Relative error ≲ 4e-16 (tested against `f64::exp`). Written so that the
/// loops calling it vectorise.
#[inline(always)]
fn exp_nonpos<F: MulAdd>(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    const SHIFT: f64 = EXP_SHIFT;
    const C: [f64; 11] = [
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40320.0,
        1.0 / 5040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        1.0 / 2.0,
    ];
    let ok = x > -708.0;
    let xc = if ok { x } else { -708.0 };
    let kf = F::madd(xc, LOG2E, SHIFT);
    let bits = kf.to_bits();
    let nf = kf - SHIFT;
    let r = F::madd(-nf, LN2_LO, F::madd(-nf, LN2_HI, xc));
    let mut p = C[0];
    for &c in &C[1..] {
        p = F::madd(p, r, c);
    }
    let p = F::madd(p, r, 1.0);
    let p = F::madd(p, r, 1.0);
    // 2^n: the low bits of `bits` hold n (two's complement); n + 1023 ∈ [1, 1023].
    let scale = f64::from_bits(bits.wrapping_add(1023) << 52);
    if ok { p * scale } else { 0.0 }
}

// ---------------------------------------------------------------------------------------------
// AVX-512 lane kernel (explicit vectors; same maths as `LaneKernel::means_impl::<Fused>`)
// ---------------------------------------------------------------------------------------------

/// The lane kernel written with AVX-512 vectors of eight `f64` ([`CH`] = 8). Loads and stores
/// go through slices (`_mm512_set_pd` of eight consecutive elements compiles to one vector
/// load, eight element stores to one vector store), so no `unsafe` is needed beyond the
/// dispatch in [`LaneKernel::means_dispatch`]. Requires Rust ≥ 1.89 (AVX-512 intrinsics,
/// callable safely in `#[target_feature]` functions); the workspace `rust-version` (1.85) must
/// be raised accordingly.
#[cfg(target_arch = "x86_64")]
#[clippy::msrv = "1.89"]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{LaneKernel, LaneScratch, TILE};

    type V = __m512d;

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn ld(s: &[f64]) -> V {
        let a = &s[..8];
        _mm512_set_pd(a[7], a[6], a[5], a[4], a[3], a[2], a[1], a[0])
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn st(v: V, out: &mut [f64]) {
        let out = &mut out[..8];
        let lo = _mm512_castpd512_pd256(v);
        let hi = _mm512_extractf64x4_pd::<1>(v);
        let q = [
            _mm256_castpd256_pd128(lo),
            _mm256_extractf128_pd::<1>(lo),
            _mm256_castpd256_pd128(hi),
            _mm256_extractf128_pd::<1>(hi),
        ];
        for (j, h) in q.into_iter().enumerate() {
            out[2 * j] = _mm_cvtsd_f64(h);
            out[2 * j + 1] = _mm_cvtsd_f64(_mm_unpackhi_pd(h, h));
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn splat(x: f64) -> V {
        _mm512_set1_pd(x)
    }

    /// Vector [`super::exp_nonpos`] (identical operations to its fused form).
    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    fn exp_nonpos(x: V) -> V {
        const C: [f64; 11] = [
            1.0 / 479_001_600.0,
            1.0 / 39_916_800.0,
            1.0 / 3_628_800.0,
            1.0 / 362_880.0,
            1.0 / 40320.0,
            1.0 / 5040.0,
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            1.0 / 2.0,
        ];
        let lim = splat(-708.0);
        let ok = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(x, lim);
        let xc = _mm512_mask_blend_pd(ok, lim, x);
        let shift = splat(super::EXP_SHIFT);
        let kf = _mm512_fmadd_pd(xc, splat(std::f64::consts::LOG2_E), shift);
        let nf = _mm512_sub_pd(kf, shift);
        let r = _mm512_fnmadd_pd(nf, splat(super::LN2_HI), xc);
        let r = _mm512_fnmadd_pd(nf, splat(super::LN2_LO), r);
        let mut p = splat(C[0]);
        for &c in &C[1..] {
            p = _mm512_fmadd_pd(p, r, splat(c));
        }
        let one = splat(1.0);
        let p = _mm512_fmadd_pd(p, r, one);
        let p = _mm512_fmadd_pd(p, r, one);
        let bits = _mm512_add_epi64(_mm512_castpd_si512(kf), _mm512_set1_epi64(1023));
        let scale = _mm512_castsi512_pd(_mm512_slli_epi64::<52>(bits));
        _mm512_maskz_mov_pd(ok, _mm512_mul_pd(p, scale))
    }

    /// Logits of one tile (all lanes at once, `U` chunks of 8 particles per step so that `U`
    /// independent FMA chains share each broadcast); returns the tile maximum of the value
    /// lane.
    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    fn tile_logits<const P: usize, const U: usize>(
        kern: &LaneKernel<P>,
        t0: usize,
        tl: usize,
        q: &[f64],
        gamma: f64,
        l: &mut [f64],
    ) -> f64 {
        let mut mx = splat(f64::NEG_INFINITY);
        let mut c0 = 0;
        while c0 + 8 * U <= tl {
            logits_block::<P, U>(kern, t0 + c0, c0, q, gamma, l, &mut mx);
            c0 += 8 * U;
        }
        while c0 < tl {
            logits_block::<P, 1>(kern, t0 + c0, c0, q, gamma, l, &mut mx);
            c0 += 8;
        }
        _mm512_reduce_max_pd(mx)
    }

    /// Logits of particles `i..i + 8U` into tile positions `c0..c0 + 8U`.
    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    fn logits_block<const P: usize, const U: usize>(
        kern: &LaneKernel<P>,
        i: usize,
        c0: usize,
        q: &[f64],
        gamma: f64,
        l: &mut [f64],
        mx: &mut V,
    ) {
        let (n, d) = (kern.n, kern.d);
        let w = 8 * U;
        let ng = splat(-gamma);
        let mut a0 = [_mm512_setzero_pd(); U];
        let mut ap = [[_mm512_setzero_pd(); U]; P];
        let mut bp = [[_mm512_setzero_pd(); U]; P];
        {
            let (lw, sq) = (&kern.lw[i..i + w], &kern.sqz[i..i + w]);
            for u in 0..U {
                a0[u] = _mm512_fmadd_pd(ng, ld(&sq[8 * u..]), ld(&lw[8 * u..]));
            }
        }
        for (p, a) in ap.iter_mut().enumerate() {
            let j = (p + 1) * n + i;
            let (lw, sq) = (&kern.lw[j..j + w], &kern.sqz[j..j + w]);
            for u in 0..U {
                a[u] = _mm512_fmadd_pd(ng, ld(&sq[8 * u..]), ld(&lw[8 * u..]));
            }
        }
        for k in 0..d {
            let z0r = &kern.z[k * n + i..k * n + i + w];
            let q0 = splat(q[k]);
            let mut z0 = [_mm512_setzero_pd(); U];
            for u in 0..U {
                z0[u] = ld(&z0r[8 * u..]);
                a0[u] = _mm512_fmadd_pd(q0, z0[u], a0[u]);
            }
            // Two accumulators per derivative lane (q'·z and q·z') halve the FMA chains.
            for p in 0..P {
                let j = ((p + 1) * d + k) * n + i;
                let zpr = &kern.z[j..j + w];
                let qp = splat(q[(p + 1) * d + k]);
                for u in 0..U {
                    ap[p][u] = _mm512_fmadd_pd(qp, z0[u], ap[p][u]);
                    bp[p][u] = _mm512_fmadd_pd(q0, ld(&zpr[8 * u..]), bp[p][u]);
                }
            }
        }
        for p in 0..P {
            for u in 0..U {
                ap[p][u] = _mm512_add_pd(ap[p][u], bp[p][u]);
            }
        }
        for u in 0..U {
            *mx = _mm512_max_pd(*mx, a0[u]);
            st(a0[u], &mut l[c0 + 8 * u..]);
            for (p, a) in ap.iter().enumerate() {
                st(a[u], &mut l[(p + 1) * TILE + c0 + 8 * u..]);
            }
        }
    }

    /// Exponentials of one tile (value lane) and `e · l'` (derivative lanes), in place; adds
    /// their sums to `s`.
    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    fn tile_exp<const P: usize>(tl: usize, l: &mut [f64], mx: f64, s: &mut [f64]) {
        let m = splat(mx);
        let mut s0 = _mm512_setzero_pd();
        let mut sp = [_mm512_setzero_pd(); P];
        for c0 in (0..tl).step_by(8) {
            let e = exp_nonpos(_mm512_sub_pd(ld(&l[c0..]), m));
            st(e, &mut l[c0..]);
            s0 = _mm512_add_pd(s0, e);
            for (p, a) in sp.iter_mut().enumerate() {
                let j = (p + 1) * TILE + c0;
                let v = _mm512_mul_pd(e, ld(&l[j..]));
                st(v, &mut l[j..]);
                *a = _mm512_add_pd(*a, v);
            }
        }
        s[0] += _mm512_reduce_add_pd(s0);
        for (p, a) in sp.iter().enumerate() {
            s[p + 1] += _mm512_reduce_add_pd(*a);
        }
    }

    /// Adds `Σ_i e_i z_i` (all lanes) over one tile for coordinates `k..k + G` to `acc`.
    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    fn acc_group<const P: usize, const G: usize>(
        kern: &LaneKernel<P>,
        t0: usize,
        tl: usize,
        k: usize,
        l: &[f64],
        acc: &mut [f64],
    ) {
        let (n, d) = (kern.n, kern.d);
        let row = |lane: usize, j: usize| {
            let base = (lane * d + k + j) * n + t0;
            &kern.z[base..base + tl]
        };
        let z0r: [&[f64]; G] = std::array::from_fn(|j| row(0, j));
        let zpr: [[&[f64]; G]; P] = std::array::from_fn(|p| std::array::from_fn(|j| row(p + 1, j)));
        let e0 = &l[..tl];
        let mut a0 = [_mm512_setzero_pd(); G];
        let mut ap = [[_mm512_setzero_pd(); G]; P];
        for c0 in (0..tl).step_by(8) {
            let e = ld(&e0[c0..]);
            let mut ep = [_mm512_setzero_pd(); P];
            for (p, v) in ep.iter_mut().enumerate() {
                *v = ld(&l[(p + 1) * TILE + c0..]);
            }
            for j in 0..G {
                let z0 = ld(&z0r[j][c0..]);
                a0[j] = _mm512_fmadd_pd(e, z0, a0[j]);
                for p in 0..P {
                    let zp = ld(&zpr[p][j][c0..]);
                    ap[p][j] = _mm512_fmadd_pd(ep[p], z0, _mm512_fmadd_pd(e, zp, ap[p][j]));
                }
            }
        }
        for j in 0..G {
            acc[k + j] += _mm512_reduce_add_pd(a0[j]);
            for p in 0..P {
                acc[(p + 1) * d + k + j] += _mm512_reduce_add_pd(ap[p][j]);
            }
        }
    }

    /// [`LaneKernel::means_impl`] with explicit AVX-512 vectors.
    #[target_feature(enable = "avx512f,avx512dq,fma")]
    pub(super) fn means<const P: usize>(
        kern: &LaneKernel<P>,
        nq: usize,
        gamma: f64,
        sc: &mut LaneScratch,
    ) {
        let d = kern.d;
        let lanes = P + 1;
        // Coordinates per accumulation pass: (P + 1)·G accumulators stay in registers.
        let gmax = if P <= 2 {
            4
        } else if P <= 4 {
            2
        } else {
            1
        };
        sc.mx[..nq].fill(f64::NEG_INFINITY);
        sc.s[..nq * lanes].fill(0.0);
        sc.acc[..nq * lanes * d].fill(0.0);
        let mut t0 = 0;
        while t0 < kern.n {
            let tl = TILE.min(kern.n - t0);
            for b in 0..nq {
                let q = &sc.q[b * lanes * d..(b + 1) * lanes * d];
                let tm = match P {
                    0 => tile_logits::<P, 4>(kern, t0, tl, q, gamma, &mut sc.l),
                    1 | 2 => tile_logits::<P, 2>(kern, t0, tl, q, gamma, &mut sc.l),
                    _ => tile_logits::<P, 1>(kern, t0, tl, q, gamma, &mut sc.l),
                };
                if tm == f64::NEG_INFINITY {
                    continue;
                }
                let mx = &mut sc.mx[b];
                let s = &mut sc.s[b * lanes..(b + 1) * lanes];
                let acc = &mut sc.acc[b * lanes * d..(b + 1) * lanes * d];
                if tm > *mx {
                    if *mx > f64::NEG_INFINITY {
                        let r = (*mx - tm).exp();
                        s.iter_mut().for_each(|v| *v *= r);
                        acc.iter_mut().for_each(|v| *v *= r);
                    }
                    *mx = tm;
                }
                tile_exp::<P>(tl, &mut sc.l, *mx, s);
                let mut k = 0;
                while k < d {
                    let g = gmax.min(d - k);
                    match g {
                        4 => acc_group::<P, 4>(kern, t0, tl, k, &sc.l, acc),
                        3 => acc_group::<P, 3>(kern, t0, tl, k, &sc.l, acc),
                        2 => acc_group::<P, 2>(kern, t0, tl, k, &sc.l, acc),
                        _ => acc_group::<P, 1>(kern, t0, tl, k, &sc.l, acc),
                    }
                    k += g;
                }
            }
            t0 += tl;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resample::{Multinomial, ResamplerSpec};
    use crate::rng::Purpose;
    use num_dual::{Dual64, DualNum, DualSVec64};

    fn key(seed: u64) -> StreamKey {
        StreamKey::new(seed, 3, Purpose::Resample)
    }

    fn normalise<S: Scalar>(lw: &mut [S]) {
        let lse = log_sum_exp(lw);
        for w in lw.iter_mut() {
            *w -= lse;
        }
    }

    /// `n` draws from `N(0, I_d)` weighted towards `N(1, 0.5² I_d)`.
    fn gaussian_case(n: usize, d: usize, seed: u64) -> (Particles<f64>, Vec<f64>) {
        let mut rng = StreamKey::new(seed, 0, Purpose::Other(9)).rng(0);
        let x: Vec<f64> = (0..n * d).map(|_| standard_normal(&mut rng)).collect();
        let mut lw: Vec<f64> = x
            .chunks(d)
            .map(|p| {
                p.iter()
                    .map(|&v| -2.0 * (v - 1.0).powi(2) + 0.5 * v * v)
                    .sum()
            })
            .collect();
        normalise(&mut lw);
        (Particles::from_vec(n, d, x).unwrap(), lw)
    }

    fn target_draws(n: usize, d: usize, seed: u64) -> Vec<f64> {
        let mut rng = StreamKey::new(seed, 0, Purpose::Other(10)).rng(0);
        (0..n * d)
            .map(|_| 1.0 + 0.5 * standard_normal(&mut rng))
            .collect()
    }

    fn run<S: Scalar>(
        r: &DiffusionResampler,
        x: &Particles<S>,
        lw: &[S],
        m: usize,
        seed: u64,
    ) -> Result<Particles<S>> {
        let mut out = Particles::zeros(m, x.dim());
        let mut olw = vec![S::zero(); m];
        r.resample(x, lw, key(seed), &mut out, &mut olw)?;
        let want = -(m as f64).ln();
        assert!(olw.iter().all(|w| w.re() == want));
        Ok(out)
    }

    fn coord(p: &Particles<f64>, k: usize) -> Vec<f64> {
        p.iter().map(|x| x[k]).collect()
    }

    /// 1-D Wasserstein-1 distance between two equal-size samples.
    fn w1(a: &[f64], b: &[f64]) -> f64 {
        let (mut a, mut b) = (a.to_vec(), b.to_vec());
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len() as f64
    }

    /// Mean over coordinates of the per-coordinate W1 to exact target draws.
    fn w1_to_target(p: &Particles<f64>, seed: u64) -> f64 {
        let d = p.dim();
        let t = Particles::from_vec(p.len(), d, target_draws(p.len(), d, seed)).unwrap();
        (0..d).map(|k| w1(&coord(p, k), &coord(&t, k))).sum::<f64>() / d as f64
    }

    fn mean_var(v: &[f64]) -> (f64, f64) {
        let n = v.len() as f64;
        let m = v.iter().sum::<f64>() / n;
        (m, v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n)
    }

    #[test]
    fn exp_nonpos_is_accurate() {
        let mut worst: f64 = 0.0;
        let mut x = 0.0;
        while x > -708.0 {
            let want = x.exp();
            for got in [exp_nonpos::<Plain>(x), exp_nonpos::<Fused>(x)] {
                worst = worst.max(((got - want) / want).abs());
            }
            x -= 0.000_731_3;
        }
        assert!(worst < 1e-15, "worst relative error {worst:e}");
        assert_eq!(exp_nonpos::<Plain>(0.0), 1.0);
        assert_eq!(exp_nonpos::<Plain>(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpos::<Plain>(-1e300), 0.0);
        assert_eq!(exp_nonpos::<Plain>(-709.0), 0.0);
    }

    #[test]
    fn diffusion_consistency_improves_with_n_and_matches_multinomial() {
        // Exact draws from N(0, I) weighted to N(1, 0.5² I) in d = 2; the per-coordinate W1 to
        // exact target draws must fall as N grows, and at large T, K be comparable to that
        // of multinomial resampling (which only has Monte Carlo error).
        let cfg = DiffusionConfig::new()
            .with_horizon(3.0)
            .unwrap()
            .with_steps(16)
            .unwrap();
        let r = DiffusionResampler::new(cfg);
        let mut dist = Vec::new();
        for &n in &[256, 4096] {
            let mut w = 0.0;
            let mut wm = 0.0;
            let reps = 2;
            for rep in 0..reps {
                let (x, lw) = gaussian_case(n, 2, 100 + rep);
                let out = run(&r, &x, &lw, n, rep).unwrap();
                w += w1_to_target(&out, 200 + rep) / reps as f64;
                let mut mo = Particles::zeros(n, 2);
                let mut mlw = vec![0.0; n];
                Multinomial
                    .resample(&x, &lw, key(rep), &mut mo, &mut mlw)
                    .unwrap();
                wm += w1_to_target(&mo, 200 + rep) / reps as f64;
            }
            eprintln!("N = {n}: W1 diffusion {w:.4}, multinomial {wm:.4}");
            dist.push((w, wm));
        }
        let ((w_small, _), (w_big, wm_big)) = (dist[0], dist[1]);
        assert!(
            w_big < 0.6 * w_small,
            "W1 did not fall: {w_small} -> {w_big}"
        );
        assert!(
            w_big < 1.5 * wm_big + 0.01,
            "diffusion {w_big} vs multinomial {wm_big}"
        );
    }

    fn all_integrators() -> Vec<(Integrator, Dynamics)> {
        let mut v = Vec::new();
        for i in [
            Integrator::EulerMaruyama,
            Integrator::LordRougemont,
            Integrator::JentzenKloeden,
        ] {
            v.push((i, Dynamics::Ode));
            v.push((i, Dynamics::Sde));
        }
        v.push((Integrator::Tweedie, Dynamics::Sde));
        v
    }

    #[test]
    fn every_integrator_recovers_gaussian_target_moments() {
        // Target N(1, 0.25) per coordinate; the weighted input has ESS ≈ 0.3 N ≈ 600, so the
        // Monte Carlo error of the mean is ≈ 0.5/√600 ≈ 0.02 and of the variance ≈ 0.25·√(2/600)
        // ≈ 0.015. On top come the discretisation error (K = 16 steps on [0, 2]) and the
        // finite-ensemble score bias; tolerances: mean ± 0.08, variance within [0.15, 0.35].
        let (x, lw) = gaussian_case(2048, 2, 5);
        for (integ, dy) in all_integrators() {
            let cfg = DiffusionConfig::new()
                .with_dynamics(dy)
                .unwrap()
                .with_integrator(integ)
                .unwrap()
                .with_horizon(2.0)
                .unwrap()
                .with_steps(16)
                .unwrap();
            let out = run(&DiffusionResampler::new(cfg), &x, &lw, 2048, 1).unwrap();
            assert!(out.as_slice().iter().all(|v| v.is_finite()));
            for k in 0..2 {
                let (m, v) = mean_var(&coord(&out, k));
                eprintln!("{integ:?}/{dy:?} coord {k}: mean {m:.4} var {v:.4}");
                assert!((m - 1.0).abs() < 0.08, "{integ:?}/{dy:?}: mean {m}");
                assert!(v > 0.15 && v < 0.35, "{integ:?}/{dy:?}: var {v}");
            }
        }
    }

    #[test]
    fn fixed_and_diagonal_references_recover_target_moments() {
        // Same target and tolerances as above, with a fixed reference N(0.9, 0.3 I) (a user
        // guess close to the target, not the weighted fit) and with the diagonal fit. (A
        // reference much wider than the target, e.g. N(0, 2 I), needs many more steps: the
        // discretisation error scales with the reference, and with the SDE the last step
        // leaves noise of variance ≈ (1 − e^{2aΔ}) Σ_ref.)
        let (x, lw) = gaussian_case(2048, 2, 5);
        let fixed = Reference::Fixed {
            mean: vec![0.9, 0.9],
            cov: vec![0.3, 0.0, 0.0, 0.3],
        };
        for reference in [fixed, Reference::Diagonal] {
            let cfg = DiffusionConfig::new()
                .with_reference(reference.clone())
                .unwrap()
                .with_horizon(2.0)
                .unwrap()
                .with_steps(16)
                .unwrap();
            let out = run(&DiffusionResampler::new(cfg), &x, &lw, 2048, 1).unwrap();
            for k in 0..2 {
                let (m, v) = mean_var(&coord(&out, k));
                eprintln!("{reference:?} coord {k}: mean {m:.4} var {v:.4}");
                assert!((m - 1.0).abs() < 0.08, "{reference:?}: mean {m}");
                assert!(v > 0.15 && v < 0.35, "{reference:?}: var {v}");
            }
        }
    }

    /// Input particles and weights depending on θ: shift θ₀, scale 1 + θ₁/2, weights tilted by
    /// θ₀ (and by θ₁ when present).
    fn param_case<S: Scalar>(theta: &[S], n: usize, d: usize) -> (Particles<S>, Vec<S>) {
        let mut rng = StreamKey::new(77, 0, Purpose::Other(3)).rng(0);
        let t0 = theta[0];
        let t1 = if theta.len() > 1 { theta[1] } else { S::zero() };
        let scale = S::one() + t1 * 0.5;
        let mut x = Vec::with_capacity(n * d);
        let mut lw = Vec::with_capacity(n);
        for _ in 0..n {
            let mut l = S::zero();
            for k in 0..d {
                let v = t0 + scale * standard_normal(&mut rng) + k as f64 * 0.3;
                l += v * (t0 * 0.7 + 0.2) - v * v * (t1 * 0.1 + 0.3);
                x.push(v);
            }
            lw.push(l);
        }
        normalise(&mut lw);
        (Particles::from_vec(n, d, x).unwrap(), lw)
    }

    fn resampled_mean<S: Scalar>(r: &DiffusionResampler, theta: &[S], n: usize, d: usize) -> S {
        let (x, lw) = param_case(theta, n, d);
        let out = run(r, &x, &lw, n, 42).unwrap();
        let mut s = S::zero();
        for p in out.iter() {
            s += p[0] + p[d - 1] * 0.5;
        }
        s / n as f64
    }

    fn fd<F: Fn(f64) -> f64>(f: F, x: f64, h: f64) -> f64 {
        (f(x + h) - f(x - h)) / (2.0 * h)
    }

    #[test]
    fn dual_derivative_matches_central_finite_difference() {
        // The resampling map is smooth in θ for a fixed seed, so the Dual64 derivative must
        // match a central difference of the same seeded f64 map. With h = 1e-5 the truncation
        // error is O(h²·g''') ≈ 1e-10 and the rounding error ≈ 1e-16·|g|/h ≈ 1e-11; the dual
        // and f64 runs also differ by rounding in their value parts (≈ 1e-13 relative), so a
        // tolerance of 1e-6 (relative to max(1, |g'|)) is generous but still catches any
        // missing derivative path (those are O(0.1–1)).
        let (n, d, theta, h) = (96, 2, 0.3, 1e-5);
        for (integ, dy) in [
            (Integrator::EulerMaruyama, Dynamics::Ode),
            (Integrator::JentzenKloeden, Dynamics::Sde),
            (Integrator::Tweedie, Dynamics::Sde),
        ] {
            for reference in [Reference::Full, Reference::Diagonal] {
                let cfg = DiffusionConfig::new()
                    .with_dynamics(dy)
                    .unwrap()
                    .with_integrator(integ)
                    .unwrap()
                    .with_reference(reference.clone())
                    .unwrap();
                let r = DiffusionResampler::new(cfg);
                let g = resampled_mean(&r, &[Dual64::new(theta, 1.0)], n, d);
                let want = fd(|t| resampled_mean(&r, &[t], n, d), theta, h);
                let tol = 1e-6 * want.abs().max(1.0);
                assert!(
                    (g.eps - want).abs() < tol,
                    "{integ:?}/{dy:?}/{reference:?}: dual {} vs fd {want}",
                    g.eps
                );
                assert!(
                    g.eps.abs() > 1e-3,
                    "derivative suspiciously small: {}",
                    g.eps
                );
            }
        }
    }

    #[test]
    fn dual_vec_gradient_matches_finite_differences() {
        // Two parameters at once with DualSVec64<2>, same tolerance argument as above.
        let (n, d, h) = (80, 3, 1e-5);
        let theta = [0.2, -0.4];
        let cfg = DiffusionConfig::new()
            .with_dynamics(Dynamics::Sde)
            .unwrap()
            .with_integrator(Integrator::LordRougemont)
            .unwrap();
        let r = DiffusionResampler::new(cfg);
        let th: Vec<DualSVec64<2>> = (0..2)
            .map(|i| DualSVec64::from_re(theta[i]).derivative(i))
            .collect();
        let g = resampled_mean(&r, &th, n, d);
        let grad = g.eps.unwrap_generic(nalgebra::Const::<2>, nalgebra::U1);
        let f64_at = |t: [f64; 2]| resampled_mean(&r, &t, n, d);
        let want = [
            fd(|t| f64_at([t, theta[1]]), theta[0], h),
            fd(|t| f64_at([theta[0], t]), theta[1], h),
        ];
        for i in 0..2 {
            let tol = 1e-6 * want[i].abs().max(1.0);
            assert!(
                (grad[i] - want[i]).abs() < tol,
                "param {i}: {} vs {}",
                grad[i],
                want[i]
            );
        }
        assert!((g.re - f64_at(theta)).abs() < 1e-10);
    }

    #[test]
    fn lane_kernels_agree_with_generic_kernel() {
        // The fast lane kernels (f64 and dual lanes, FMA and a polynomial exp, tiles with
        // online max-rescaling) compute the same function as the generic scalar code, at every
        // instruction-set level the CPU has: values and derivatives agree to rounding (1e-11
        // relative; the logits are O(10), so exponentials differ by ≲ 1e-14 relative, and
        // errors do not grow over K = 8 steps).
        let (n, d) = (300, 3); // n not a multiple of the chunk or tile sizes
        for dy in [Dynamics::Ode, Dynamics::Sde] {
            let cfg = DiffusionConfig::new().with_dynamics(dy).unwrap();
            let slow = DiffusionResampler::new(cfg.clone()).generic_kernel();
            for simd in Simd::available() {
                let fast = DiffusionResampler::new(cfg.clone()).lane_kernel(simd);
                let th = [
                    DualSVec64::<2>::from_re(0.1).derivative(0),
                    DualSVec64::from_re(0.2).derivative(1),
                ];
                let (x, lw) = param_case(&th, n, d);
                let a = run(&fast, &x, &lw, n, 9).unwrap();
                let b = run(&slow, &x, &lw, n, 9).unwrap();
                for (u, v) in a.as_slice().iter().zip(b.as_slice()) {
                    assert!(
                        (u.re - v.re).abs() < 1e-11 * (1.0 + v.re.abs()),
                        "{u} vs {v}"
                    );
                    let (eu, ev) = (
                        u.eps.unwrap_generic(nalgebra::Const::<2>, nalgebra::U1),
                        v.eps.unwrap_generic(nalgebra::Const::<2>, nalgebra::U1),
                    );
                    for i in 0..2 {
                        assert!(
                            (eu[i] - ev[i]).abs() < 1e-10 * (1.0 + ev[i].abs()),
                            "{u} vs {v}"
                        );
                    }
                }
                let (xf, lwf) = param_case(&[0.1_f64, 0.2], n, d);
                let a = run(&fast, &xf, &lwf, n, 9).unwrap();
                let b = run(&slow, &xf, &lwf, n, 9).unwrap();
                for (u, v) in a.as_slice().iter().zip(b.as_slice()) {
                    assert!(
                        (u - v).abs() < 1e-11 * (1.0 + v.abs()),
                        "{simd:?}: {u} vs {v}"
                    );
                }
            }
        }
    }

    /// Lane kernel with `P` derivative lanes (two seeded, the others zero) vs generic kernel.
    fn check_lanes<const P: usize>(simd: Simd) {
        let (n, d) = (300, 2);
        let cfg = DiffusionConfig::new().with_dynamics(Dynamics::Sde).unwrap();
        let slow = DiffusionResampler::new(cfg.clone()).generic_kernel();
        let fast = DiffusionResampler::new(cfg).lane_kernel(simd);
        let th = [
            DualSVec64::<P>::from_re(0.1).derivative(0),
            DualSVec64::from_re(0.2).derivative(P - 1),
        ];
        let (x, lw) = param_case(&th, n, d);
        let a = run(&fast, &x, &lw, n, 9).unwrap();
        let b = run(&slow, &x, &lw, n, 9).unwrap();
        for (u, v) in a.as_slice().iter().zip(b.as_slice()) {
            assert!(
                (u.re - v.re).abs() < 1e-11 * (1.0 + v.re.abs()),
                "P = {P}: {u} vs {v}"
            );
            let eu = u.eps.unwrap_generic(nalgebra::Const::<P>, nalgebra::U1);
            let ev = v.eps.unwrap_generic(nalgebra::Const::<P>, nalgebra::U1);
            for i in 0..P {
                assert!(
                    (eu[i] - ev[i]).abs() < 1e-10 * (1.0 + ev[i].abs()),
                    "P = {P}: {u} vs {v}"
                );
            }
        }
    }

    #[test]
    fn every_lane_count_agrees_with_generic_kernel() {
        for simd in Simd::available() {
            check_lanes::<1>(simd);
            check_lanes::<3>(simd);
            check_lanes::<4>(simd);
            check_lanes::<8>(simd);
        }
        // Dual64 takes the one-lane kernel.
        let r = DiffusionResampler::default();
        let (x, lw) = param_case(&[Dual64::new(0.1, 1.0)], 100, 2);
        let a = run(&r, &x, &lw, 100, 1).unwrap();
        let b = run(&r.clone().generic_kernel(), &x, &lw, 100, 1).unwrap();
        for (u, v) in a.as_slice().iter().zip(b.as_slice()) {
            assert!(
                (u.re - v.re).abs() < 1e-11 && (u.eps - v.eps).abs() < 1e-10 * (1.0 + v.eps.abs())
            );
        }
    }

    fn assert_finite(p: &Particles<f64>) {
        assert!(
            p.as_slice().iter().all(|v| v.is_finite()),
            "non-finite output"
        );
    }

    #[test]
    fn degenerate_inputs_give_finite_output() {
        for dy in [Dynamics::Ode, Dynamics::Sde] {
            for reference in [Reference::Full, Reference::Diagonal] {
                let cfg = DiffusionConfig::new()
                    .with_dynamics(dy)
                    .unwrap()
                    .with_reference(reference)
                    .unwrap();
                let r = DiffusionResampler::new(cfg);
                // One weight 1, the others 0: the output collapses onto that particle.
                let (x, _) = gaussian_case(50, 3, 1);
                let mut lw = vec![f64::NEG_INFINITY; 50];
                lw[7] = 0.0;
                let out = run(&r, &x, &lw, 50, 1).unwrap();
                assert_finite(&out);
                for p in out.iter() {
                    for (a, b) in p.iter().zip(x.particle(7)) {
                        assert!((a - b).abs() < 1e-3, "{a} vs {b}");
                    }
                }
                // Identical particles (Σ = 0): jitter, output at the particle.
                let x = Particles::from_vec(20, 2, [1.5, -2.0].repeat(20)).unwrap();
                let lw = vec![-(20f64).ln(); 20];
                let out = run(&r, &x, &lw, 20, 2).unwrap();
                assert_finite(&out);
                assert!(
                    out.iter()
                        .all(|p| (p[0] - 1.5).abs() < 1e-3 && (p[1] + 2.0).abs() < 1e-3)
                );
                // All particles at the origin.
                let x = Particles::zeros(5, 2);
                let out = run(&r, &x, &[-(5f64).ln(); 5], 5, 2).unwrap();
                assert!(out.as_slice().iter().all(|v| v.abs() < 1e-20));
                // N = 1, and more outputs than inputs.
                let x = Particles::from_vec(1, 2, vec![3.0, 4.0]).unwrap();
                let out = run(&r, &x, &[0.0], 4, 3).unwrap();
                assert_finite(&out);
                assert!(
                    out.iter()
                        .all(|p| (p[0] - 3.0).abs() < 1e-3 && (p[1] - 4.0).abs() < 1e-3)
                );
                // d = 1.
                let (x, lw) = gaussian_case(300, 1, 4);
                let out = run(&r, &x, &lw, 300, 4).unwrap();
                assert_finite(&out);
                let (m, _) = mean_var(&coord(&out, 0));
                assert!((m - 1.0).abs() < 0.15, "d = 1 mean {m}");
                // Particles on a line in d = 2 (singular covariance).
                let xs: Vec<f64> = (0..40).flat_map(|i| [i as f64, 2.0 * i as f64]).collect();
                let x = Particles::from_vec(40, 2, xs).unwrap();
                let out = run(&r, &x, &[-(40f64).ln(); 40], 40, 5).unwrap();
                assert_finite(&out);
                // Huge and tiny scales: output mean tracks the weighted mean, relative to scale.
                for scale in [1e8, 1e-8, 1e150, 1e-150] {
                    let (x0, lw) = gaussian_case(200, 2, 6);
                    let xs: Vec<f64> = x0.as_slice().iter().map(|v| (v + 3.0) * scale).collect();
                    let x = Particles::from_vec(200, 2, xs).unwrap();
                    let out = run(&r, &x, &lw, 200, 6).unwrap();
                    assert_finite(&out);
                    let (m, _) = mean_var(&coord(&out, 0));
                    let w: Vec<f64> = lw.iter().map(|l| l.exp()).collect();
                    let wm: f64 = x.iter().zip(&w).map(|(p, w)| p[0] * w).sum();
                    assert!(((m - wm) / scale).abs() < 0.2, "scale {scale}: {m} vs {wm}");
                }
            }
        }
    }

    #[test]
    fn bad_inputs_give_typed_errors() {
        let r = DiffusionResampler::default();
        let x = Particles::<f64>::zeros(3, 2);
        let mut out = Particles::zeros(3, 2);
        let mut olw = vec![0.0; 3];
        let k = key(0);
        let e = r.resample(&x, &[f64::NEG_INFINITY; 3], k, &mut out, &mut olw);
        assert!(matches!(
            e,
            Err(SmcError::InvalidParameter {
                name: "log_weights",
                ..
            })
        ));
        let e = r.resample(&x, &[0.0, f64::NAN, 0.0], k, &mut out, &mut olw);
        assert!(matches!(e, Err(SmcError::InvalidParameter { .. })));
        let e = r.resample(&x, &[0.0; 2], k, &mut out, &mut olw);
        assert!(matches!(e, Err(SmcError::DimensionMismatch { .. })));
        let bad = Particles::from_vec(3, 2, vec![0.0, 1.0, f64::NAN, 0.0, 1.0, 2.0]).unwrap();
        let e = r.resample(&bad, &[-(3f64).ln(); 3], k, &mut out, &mut olw);
        assert!(matches!(
            e,
            Err(SmcError::InvalidParameter {
                name: "particles",
                ..
            })
        ));
        let mut out3 = Particles::zeros(3, 3);
        let e = r.resample(&x, &[-(3f64).ln(); 3], k, &mut out3, &mut olw);
        assert!(matches!(e, Err(SmcError::DimensionMismatch { .. })));
        let fixed = DiffusionResampler::new(
            DiffusionConfig::new()
                .with_fixed_reference(
                    vec![0.0; 3],
                    vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                )
                .unwrap(),
        );
        let e = fixed.resample(&x, &[-(3f64).ln(); 3], k, &mut out, &mut olw);
        assert!(matches!(e, Err(SmcError::DimensionMismatch { .. })));
    }

    #[test]
    fn bad_knobs_give_typed_errors() {
        let c = DiffusionConfig::new();
        let name = |e: SmcError| match e {
            SmcError::InvalidParameter { name, .. } => name,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(name(c.clone().with_rate(0.0).unwrap_err()), "a");
        assert_eq!(name(c.clone().with_rate(f64::NAN).unwrap_err()), "a");
        assert_eq!(name(c.clone().with_horizon(0.0).unwrap_err()), "T");
        assert_eq!(
            name(c.clone().with_horizon(f64::INFINITY).unwrap_err()),
            "T"
        );
        assert_eq!(name(c.clone().with_steps(0).unwrap_err()), "K");
        assert_eq!(name(c.clone().with_grid(vec![0.0]).unwrap_err()), "grid");
        assert_eq!(
            name(c.clone().with_grid(vec![0.1, 1.0]).unwrap_err()),
            "grid"
        );
        assert_eq!(
            name(c.clone().with_grid(vec![0.0, 1.0, 1.0]).unwrap_err()),
            "grid"
        );
        assert_eq!(name(c.clone().with_jitter(-1.0).unwrap_err()), "jitter");
        assert_eq!(
            name(c.clone().with_integrator(Integrator::Tweedie).unwrap_err()),
            "integrator"
        );
        let sde = c.clone().with_dynamics(Dynamics::Sde).unwrap();
        let tw = sde.with_integrator(Integrator::Tweedie).unwrap();
        assert_eq!(
            name(tw.with_dynamics(Dynamics::Ode).unwrap_err()),
            "dynamics"
        );
        assert!(matches!(
            c.clone()
                .with_fixed_reference(vec![0.0, 0.0], vec![1.0, 2.0, 2.0, 1.0]),
            Err(SmcError::NotPositiveDefinite { .. })
        ));
        assert!(matches!(
            c.clone()
                .with_fixed_reference(vec![0.0, 0.0], vec![1.0, 0.0, 0.0]),
            Err(SmcError::DimensionMismatch { .. })
        ));
        assert!(matches!(
            c.clone()
                .with_fixed_reference(vec![0.0, 0.0], vec![1.0, 0.5, 0.0, 1.0]),
            Err(SmcError::InvalidParameter { name: "cov", .. })
        ));
        let g = c.with_grid(vec![0.0, 0.1, 0.5, 2.0]).unwrap();
        assert_eq!((g.steps(), g.horizon()), (3, 2.0));
        assert_eq!(g.times(), vec![0.0, 0.1, 0.5, 2.0]);
    }

    #[test]
    fn specs_parse_print_and_reject() {
        let parse = |s: &str| s.parse::<ResamplerSpec>();
        let d = parse("diffusion").unwrap();
        assert_eq!(d, ResamplerSpec::Diffusion(DiffusionConfig::new()));
        assert!(d.is_differentiable());
        assert_eq!(d.to_string(), "diffusion");
        let s = parse("diffusion:T=2,K=8,integrator=jentzen-kloeden,sde").unwrap();
        let want = DiffusionConfig::new()
            .with_horizon(2.0)
            .unwrap()
            .with_dynamics(Dynamics::Sde)
            .unwrap()
            .with_integrator(Integrator::JentzenKloeden)
            .unwrap();
        assert_eq!(s, ResamplerSpec::Diffusion(want));
        for spec in [
            "diffusion:a=-0.5,T=3,K=32,integrator=lr,ode,cov=diag,jitter=1e-6",
            "diffusion:integrator=tweedie,sde",
            "diffusion:integrator=em,sde,K=4",
            "diffusion:grid=0;0.25;0.5;2",
            "diffusion:mean=1;2,cov=2;0.5;0.5;1",
            "diffusion:a=-1e-7,T=1e20",
        ] {
            let v = parse(spec).unwrap();
            let printed = v.to_string();
            assert_eq!(parse(&printed).unwrap(), v, "{spec} -> {printed}");
            let built = v.build::<f64>().unwrap();
            assert_eq!(built.name(), printed);
        }
        let reason = |s: &str| match parse(s) {
            Err(SmcError::BadSpec { reason, .. }) => reason,
            other => panic!("{s}: expected BadSpec, got {other:?}"),
        };
        assert!(reason("diffusion:foo=1").contains("unknown option `foo`"));
        assert!(reason("diffusion:a=1").contains("option `a`"));
        assert!(reason("diffusion:a=x").contains("option `a`"));
        assert!(reason("diffusion:T=-1").contains("option `T`"));
        assert!(reason("diffusion:K=0").contains("option `K`"));
        assert!(reason("diffusion:K=2.5").contains("option `K`"));
        assert!(reason("diffusion:integrator=rk4").contains("option `integrator`"));
        assert!(reason("diffusion:integrator=tweedie").contains("sde"));
        assert!(reason("diffusion:integrator=tweedie,ode").contains("option `integrator`"));
        assert!(reason("diffusion:sde=1").contains("bare flag"));
        assert!(reason("diffusion:cov=weird").contains("option `cov`"));
        assert!(reason("diffusion:mean=0;0").contains("option `mean`"));
        assert!(reason("diffusion:grid=0;1,T=2").contains("grid"));
        assert!(reason("diffusion:grid=1;2").contains("option `grid`"));
        assert!(reason("diffusion:T=1,T=2").contains("twice"));
        assert!(reason("diffusion:mean=0;0,cov=1;2;2;1").contains("mean/cov"));
    }

    #[test]
    fn determinism_same_seed_and_any_thread_count() {
        // Large enough to take the parallel path (K·M·N·(d+2) ≥ PAR_MIN_WORK).
        let (x, lw) = gaussian_case(640, 2, 8);
        for dy in [Dynamics::Ode, Dynamics::Sde] {
            let r = DiffusionResampler::new(DiffusionConfig::new().with_dynamics(dy).unwrap());
            let a = run(&r, &x, &lw, 640, 5).unwrap();
            let b = run(&r, &x, &lw, 640, 5).unwrap();
            assert_eq!(a.as_slice(), b.as_slice());
            let c = run(&r, &x, &lw, 640, 6).unwrap();
            assert_ne!(a.as_slice(), c.as_slice());
            #[cfg(feature = "rayon")]
            {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .build()
                    .unwrap();
                let s = pool.install(|| run(&r, &x, &lw, 640, 5).unwrap());
                assert_eq!(a.as_slice(), s.as_slice());
                let pool3 = rayon::ThreadPoolBuilder::new()
                    .num_threads(3)
                    .build()
                    .unwrap();
                let t = pool3.install(|| run(&r, &x, &lw, 640, 5).unwrap());
                assert_eq!(a.as_slice(), t.as_slice());
            }
            // Output particle j depends only on its own stream: fewer outputs give a prefix.
            let p = run(&r, &x, &lw, 37, 5).unwrap();
            assert_eq!(p.as_slice(), &a.as_slice()[..37 * 2]);
        }
    }
}
