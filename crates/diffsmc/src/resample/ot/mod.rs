//! Entropic optimal-transport resampling (Corenflos, Thornton, Deligiannidis & Doucet 2021).
//!
//! Given particles `X_1..X_N` with normalised weights `w`, solve the entropy-regularised optimal
//! transport problem between the uniform measure `a = (1/N, …, 1/N)` (rows: the new particles)
//! and `b = w` (columns: the old particles), with cost `C_ij = |X_i − X_j|² / s` (`s` the
//! [`CostScale`]) and regularisation `ε`:
//!
//! `P = argmin ⟨P, C⟩ − ε H(P)` subject to `P 1 = a`, `Pᵀ 1 = b`,
//!
//! by Sinkhorn iterations in the log domain, `P_ij = exp((f_i + g_j − C_ij)/ε)`, and move every
//! particle to the barycentre of its row, `X*_i = N Σ_j P_ij X_j`. The new weights are uniform.
//!
//! Everything is computed in the scalar `S` (the iterations are unrolled), so on dual numbers
//! the derivatives of `X*` with respect to the particles and the log-weights are those of the
//! map actually computed, iteration count included. The value part is used only for the
//! convergence test and for choosing the maxima subtracted in log-sum-exps.
//!
//! Cost per resampling: `O(N² · d · iterations)` time, `O(N · d)` memory: the `N × N` cost is
//! never stored; it is recomputed tile by tile from the points in every pass.

use std::any::Any;
use std::fmt;
use std::str::FromStr;

use super::{ResampleInfo, Resampler};
use crate::error::{Result, SmcError};
use crate::particles::Particles;
use crate::rng::StreamKey;
use crate::scalar::{Scalar, log_sum_exp};

#[cfg(target_arch = "x86_64")]
mod avx512;
mod kernel;
mod sinkhorn;
#[cfg(test)]
mod tests;

use kernel::*;
use sinkhorn::*;

/// How the squared-Euclidean cost is scaled before it is divided by `ε`.
///
/// The scale `s` is computed from the particles at every resampling, in the scalar `S` (so it
/// carries derivatives like everything else), and the cost is `|X_i − X_j|² / s`. With `Mean`
/// or `Max`, `ε` is dimensionless: it is relative to the spread of the cloud, so one value
/// works whatever the units of the state. The default, `None`, is the paper's convention and
/// OTT-JAX's (`PointCloud(epsilon=ε)`: squared Euclidean cost, absolute `ε`).
///
/// ```
/// use diffsmc::resample::CostScale;
/// assert_eq!("max".parse::<CostScale>().unwrap(), CostScale::Max);
/// assert_eq!(CostScale::default().to_string(), "none");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CostScale {
    /// `s` = the mean of `|X_i − X_j|²` over all ordered pairs (uniform, including `i = j`),
    /// `= 2 · (1/N) Σ_i |X_i − X̄|²`: computed in `O(N d)`, robust to a few outlying
    /// particles.
    Mean,
    /// `s` = the largest pairwise squared distance (the squared diameter of the cloud);
    /// costs one extra `O(N² d)` pass and lets a single outlier shrink the effective `ε`.
    Max,
    /// No scaling (`s = 1`): `ε` is in the squared units of the state. The default.
    #[default]
    None,
}

impl FromStr for CostScale {
    type Err = SmcError;
    /// `mean`, `max` or `none`.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mean" => Ok(CostScale::Mean),
            "max" => Ok(CostScale::Max),
            "none" => Ok(CostScale::None),
            _ => Err(SmcError::invalid(
                "scale",
                s.trim(),
                "one of `mean`, `max`, `none`",
            )),
        }
    }
}

impl fmt::Display for CostScale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CostScale::Mean => "mean",
            CostScale::Max => "max",
            CostScale::None => "none",
        })
    }
}

/// Knobs of [`OtResampler`], validated on construction.
///
/// - `epsilon` (`ε > 0`, default [`OtConfig::DEFAULT_EPSILON`] = 0.1): the entropic
///   regularisation, in the units of the cost: squared state units by default (the paper's and
///   OTT-JAX's convention), relative to the cloud's spread with `scale=mean|max`. Smaller is
///   closer to exact optimal transport (less bias towards the weighted mean) but needs more
///   iterations.
/// - `tolerance` (`> 0`, default 1e-3): Sinkhorn stops when the L1 error of the column
///   marginal, `Σ_j |Σ_i P_ij − w_j|`, of the plan whose rows are exact (the plan used) falls
///   to it or below: OTT-JAX's `threshold` (balanced problem, `norm_error=1`). It is read off
///   the next column pass, so it is checked after every iteration at no extra cost (OTT-JAX
///   checks every 10).
/// - `max_iterations` (`≥ 1`, default 1000): the cap. Reaching it without meeting the
///   tolerance is not an error: the plan of the last iterate is used and the step reports
///   `converged = false` (see [`ResampleInfo`] and the driver's `resampler_converged`).
/// - `scale` (default [`CostScale::None`]: absolute ε).
/// - `anneal` (`ρ` in `(0, 1)` or `None`, default [`OtConfig::DEFAULT_ANNEAL`] = 0.7):
///   ε-scaling, used when the cloud's mean pairwise squared distance `ε_0` (in cost units) is
///   more than 50 ε: the first iterations use `ε ρ^{−m}, …, ε ρ^{−1}` (`m` the smallest with
///   `ε ρ^{−m} ≥ ε_0`), each warm-starting the next, then `ε`; only iterations at `ε` can meet
///   the tolerance. Whether it pays depends on the instance (d = 8, absolute ε = 0.3: 121
///   against 148 iterations on the `ot_annealing` example's cloud at N = 1024, 94 against 71
///   on `diffsmc bench resample`'s at N = 2048; see `docs/resamplers.md`). `None` runs plain
///   Sinkhorn at `ε` from the first iteration.
/// - `relax` (`ω` in `(0, 2)`, default [`OtConfig::DEFAULT_RELAX`] = 1.5): over-relaxed
///   column updates at the target ε (see [`OtConfig::with_relaxation`]); 1 is plain
///   Sinkhorn.
///
/// ```
/// use diffsmc::resample::{CostScale, OtConfig};
/// let c = OtConfig::new(0.4)?.with_tolerance(1e-4)?.with_max_iterations(200)?
///     .with_scale(CostScale::Max);
/// assert_eq!((c.epsilon(), c.max_iterations()), (0.4, 200));
/// assert!(OtConfig::new(0.0).is_err());
/// assert!(OtConfig::default().with_max_iterations(0).is_err());
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OtConfig {
    epsilon: f64,
    tolerance: f64,
    max_iterations: usize,
    scale: CostScale,
    anneal: Option<f64>,
    relax: f64,
}

impl Default for OtConfig {
    fn default() -> Self {
        OtConfig {
            epsilon: Self::DEFAULT_EPSILON,
            tolerance: Self::DEFAULT_TOLERANCE,
            max_iterations: Self::DEFAULT_MAX_ITERATIONS,
            scale: CostScale::None,
            anneal: Some(Self::DEFAULT_ANNEAL),
            relax: Self::DEFAULT_RELAX,
        }
    }
}

impl OtConfig {
    /// Default `ε` (absolute, in squared state units, with the default [`CostScale::None`]).
    pub const DEFAULT_EPSILON: f64 = 0.1;
    /// Default tolerance on the L1 marginal error.
    pub const DEFAULT_TOLERANCE: f64 = 1e-3;
    /// Default iteration cap.
    pub const DEFAULT_MAX_ITERATIONS: usize = 1000;
    /// Default ε-scaling factor per iteration.
    pub const DEFAULT_ANNEAL: f64 = 0.7;
    /// Default over-relaxation of the column potential (1: plain Sinkhorn).
    pub const DEFAULT_RELAX: f64 = 1.5;

    /// Defaults with regularisation `epsilon` (`> 0`, finite).
    pub fn new(epsilon: f64) -> Result<Self> {
        Self::default().with_epsilon(epsilon)
    }
    /// Sets `ε` (`> 0`, finite).
    pub fn with_epsilon(mut self, epsilon: f64) -> Result<Self> {
        if !(epsilon > 0.0 && epsilon.is_finite()) {
            return Err(SmcError::invalid("eps", epsilon, "a finite number > 0"));
        }
        self.epsilon = epsilon;
        Ok(self)
    }
    /// Sets the tolerance on the L1 marginal error (`> 0`, finite).
    pub fn with_tolerance(mut self, tolerance: f64) -> Result<Self> {
        if !(tolerance > 0.0 && tolerance.is_finite()) {
            return Err(SmcError::invalid("tol", tolerance, "a finite number > 0"));
        }
        self.tolerance = tolerance;
        Ok(self)
    }
    /// Sets the iteration cap (`≥ 1`).
    pub fn with_max_iterations(mut self, max_iterations: usize) -> Result<Self> {
        if max_iterations == 0 {
            return Err(SmcError::invalid("iters", max_iterations, "at least 1"));
        }
        self.max_iterations = max_iterations;
        Ok(self)
    }
    /// Sets the cost scaling.
    pub fn with_scale(mut self, scale: CostScale) -> Self {
        self.scale = scale;
        self
    }
    /// Sets ε-scaling: `Some(ρ)` with `0 < ρ < 1` divides ε by `1/ρ` per iteration down to
    /// the target; `None` disables it.
    pub fn with_anneal(mut self, anneal: Option<f64>) -> Result<Self> {
        if let Some(rho) = anneal
            && !(rho > 0.0 && rho < 1.0)
        {
            return Err(SmcError::invalid(
                "anneal",
                rho,
                "a number in (0, 1), or none",
            ));
        }
        self.anneal = anneal;
        Ok(self)
    }
    /// Sets the over-relaxation `ω` of the column update (`0 < ω < 2`; 1 is plain Sinkhorn).
    ///
    /// Sinkhorn is a fixed-point iteration `v ← Φ(v)` on the column potential (the row
    /// potential is a function of it); with `ω ≠ 1` the iteration is
    /// `v ← v + ω (Φ(v) − v)` once the solver is at the target ε (never during ε-scaling
    /// stages), with the same fixed point. The row update stays exact, so the plan used and the
    /// convergence test are unchanged. `Φ`'s linearisation has real eigenvalues in `[0, 1]`,
    /// so any `ω < 2` converges near the solution, and `ω > 1` speeds up the slow modes
    /// (rate `1 − ω (1 − λ)` instead of `λ`).
    ///
    /// ```
    /// use diffsmc::resample::OtConfig;
    /// assert_eq!(OtConfig::default().with_relaxation(1.5)?.relaxation(), 1.5);
    /// assert!(OtConfig::default().with_relaxation(2.0).is_err());
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn with_relaxation(mut self, omega: f64) -> Result<Self> {
        if !(omega > 0.0 && omega < 2.0) {
            return Err(SmcError::invalid("relax", omega, "a number in (0, 2)"));
        }
        self.relax = omega;
        Ok(self)
    }
    /// The over-relaxation `ω` of the column update.
    pub fn relaxation(&self) -> f64 {
        self.relax
    }
    /// The ε-scaling factor, if any.
    pub fn anneal(&self) -> Option<f64> {
        self.anneal
    }
    /// `ε`.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }
    /// The tolerance.
    pub fn tolerance(&self) -> f64 {
        self.tolerance
    }
    /// The iteration cap.
    pub fn max_iterations(&self) -> usize {
        self.max_iterations
    }
    /// The cost scaling.
    pub fn scale(&self) -> CostScale {
        self.scale
    }
}

impl fmt::Display for OtConfig {
    /// The spec syntax, e.g. `ot:eps=0.1,iters=100,tol=0.001,scale=none,anneal=0.7,relax=1.5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ot:eps={},iters={},tol={},scale={},anneal=",
            self.epsilon, self.max_iterations, self.tolerance, self.scale
        )?;
        match self.anneal {
            Some(rho) => write!(f, "{rho}")?,
            None => f.write_str("none")?,
        }
        write!(f, ",relax={}", self.relax)
    }
}

/// Entropic optimal-transport resampling (Corenflos, Thornton, Deligiannidis & Doucet 2021).
///
/// Solves `P = argmin ⟨P, C⟩ − ε H(P)` subject to `P 1 = 1/N` (rows: new particles) and
/// `Pᵀ 1 = w` (columns: old particles), with `C_ij = |X_i − X_j|² / s` (`s` the [`CostScale`]),
/// by Sinkhorn iterations in the log domain on the scalar `S` (unrolled: on dual numbers the
/// derivatives are those of the map computed), and returns `X*_i = N Σ_j P_ij X_j` with uniform
/// weights. Differentiable in the particles and the log-weights; biased for `ε > 0` (the cloud
/// is contracted towards local weighted means); `O(N² d)` time per Sinkhorn iteration and
/// `O(N d)` memory (the cost is recomputed tile by tile, never stored). See
/// `docs/resamplers.md` for the knobs, their defaults and measured timings.
///
/// Requires as many output particles as input particles, and finite coordinates. Particles
/// with zero weight (`log w = −inf`) receive no mass and do not enter the computation as
/// columns (no NaN); they are still moved like the others.
///
/// The returned transport has rows summing to exactly `1/N` (each new particle is a convex
/// combination of the old ones) and columns matching `w` to the measured L1 error, which is at
/// most the tolerance when the step reports `converged`.
///
/// ```
/// use diffsmc::prelude::*;
/// use diffsmc::rng::Purpose;
///
/// let x = Particles::from_vec(3, 1, vec![0.0_f64, 1.0, 2.0])?;
/// let lw: Vec<f64> = [0.2_f64, 0.3, 0.5].iter().map(|w| w.ln()).collect();
/// let ot = OtResampler::new(OtConfig::new(0.05)?.with_tolerance(1e-9)?.with_max_iterations(10_000)?);
/// let (mut out, mut out_lw) = (Particles::zeros(3, 1), vec![0.0; 3]);
/// let info = ot.resample(&x, &lw, StreamKey::new(0, 1, Purpose::Resample), &mut out, &mut out_lw)?;
/// assert!(info.converged);
/// // Columns match w to the tolerance, so the mean is the weighted mean (1.3) up to it.
/// let mean = out.as_slice().iter().sum::<f64>() / 3.0;
/// assert!((mean - 1.3).abs() < 1e-6);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OtResampler {
    config: OtConfig,
}

/// The Sinkhorn solution for one resampling, for inspection (see
/// [`OtResampler::transport_plan`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OtPlan<S> {
    /// The dense `N × N` plan `P` (row-major; rows: new particles, columns: old particles).
    pub matrix: Vec<S>,
    /// The cost scale `s` used.
    pub scale: S,
    /// Sinkhorn iterations performed.
    pub iterations: usize,
    /// Whether the tolerance was met within the cap.
    pub converged: bool,
    /// The L1 column-marginal error `Σ_j |Σ_i P_ij − w_j|` of the returned plan (rows exact).
    pub marginal_error: f64,
}

impl OtResampler {
    /// An OT resampler with these knobs.
    pub fn new(config: OtConfig) -> Self {
        OtResampler { config }
    }
    /// Defaults with regularisation `epsilon`.
    pub fn with_epsilon(epsilon: f64) -> Result<Self> {
        Ok(Self::new(OtConfig::new(epsilon)?))
    }
    /// The knobs.
    pub fn config(&self) -> &OtConfig {
        &self.config
    }

    /// Solves the Sinkhorn problem and returns the dense plan: `O(N²)` memory, meant for
    /// tests and inspection on small `N` (the resampler itself never forms it).
    ///
    /// The returned plan has row sums exactly `1/N` (up to rounding); its column sums match
    /// `w` to about the tolerance when `converged`.
    pub fn transport_plan<S: Scalar>(
        &self,
        particles: &Particles<S>,
        log_weights: &[S],
    ) -> Result<OtPlan<S>> {
        let sol = Sinkhorn::solve(&self.config, particles, log_weights, parallel_default())?;
        let n = particles.len();
        let mut matrix = vec![S::zero(); n * n];
        let d = sol.ya.d;
        for i in 0..n {
            for (jb, &j) in sol.support.iter().enumerate() {
                let mut k2 = S::zero();
                for k in 0..d {
                    let z = sol.ya.get(k, i) - sol.yb.get(k, jb);
                    k2 += z * z;
                }
                matrix[i * n + j] = (sol.u[i] + sol.v[jb] - k2).exp();
            }
        }
        Ok(OtPlan {
            matrix,
            scale: sol.scale,
            iterations: sol.iterations,
            converged: sol.converged,
            marginal_error: sol.error,
        })
    }
}

impl<S: Scalar> Resampler<S> for OtResampler {
    fn name(&self) -> String {
        self.config.to_string()
    }

    fn resample(
        &self,
        particles: &Particles<S>,
        log_weights: &[S],
        _key: StreamKey,
        out: &mut Particles<S>,
        out_log_weights: &mut [S],
    ) -> Result<ResampleInfo> {
        let n = particles.len();
        check_square(particles, log_weights, out, out_log_weights)?;
        let par = parallel_default();
        let sol = Sinkhorn::solve(&self.config, particles, log_weights, par)?;
        sol.transport(out, par);
        out_log_weights.fill(S::cst(-(n as f64).ln()));
        Ok(ResampleInfo::iterative(sol.converged, sol.iterations))
    }
}

/// Shape checks for resamplers that need as many outputs as inputs.
pub(super) fn check_square<S: Scalar>(
    particles: &Particles<S>,
    log_weights: &[S],
    out: &Particles<S>,
    out_log_weights: &[S],
) -> Result<()> {
    check_io(particles, log_weights, out, out_log_weights)?;
    if out.len() != particles.len() {
        return Err(SmcError::DimensionMismatch {
            what: "output particles vs input particles",
            expected: particles.len(),
            got: out.len(),
        });
    }
    Ok(())
}

/// Shape and value checks shared by the resamplers of this crate that read the weights in
/// `S`: at least one particle, matching lengths and dimensions, finite particle values, no NaN
/// or `+inf` log-weight and at least one finite one.
pub(super) fn check_io<S: Scalar>(
    particles: &Particles<S>,
    log_weights: &[S],
    out: &Particles<S>,
    out_log_weights: &[S],
) -> Result<()> {
    super::check_shapes(particles, log_weights, out, out_log_weights)?;
    if log_weights
        .iter()
        .any(|w| w.re().is_nan() || w.re() == f64::INFINITY)
        || log_weights.iter().all(|w| w.re() == f64::NEG_INFINITY)
    {
        return Err(SmcError::invalid(
            "log_weights",
            "NaN, +inf or all -inf",
            "normalised log-weights (finite or -inf, at least one finite)",
        ));
    }
    if let Some(v) = particles.as_slice().iter().find(|v| !v.re().is_finite()) {
        return Err(SmcError::invalid(
            "particles",
            v.re(),
            "finite particle coordinates",
        ));
    }
    Ok(())
}
