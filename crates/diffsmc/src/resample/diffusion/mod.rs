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
#[cfg(target_arch = "x86_64")]
use crate::kernels::Fused;
use crate::kernels::{CH, MulAdd, Plain, exp_nonpos, hsum, lane_max, lane_sum};
use crate::par::map_chunks;
use crate::particles::Particles;
use crate::rng::{StreamKey, StreamRng, standard_normal};
use crate::scalar::{Scalar, log_sum_exp};
use crate::tape::{self, AdjointsMut, CustomOp, Rev};

mod external;
mod integrate;
mod lanes;
mod reference;
mod reverse;
#[cfg(test)]
mod tests;

pub use external::DiffusionNoise;
use integrate::*;
use lanes::*;
use reference::*;
use reverse::*;

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
