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

/// How the squared-Euclidean cost is scaled before it is divided by `ε`.
///
/// The scale `s` is computed from the particles at every resampling, in the scalar `S` (so it
/// carries derivatives like everything else), and the cost is `|X_i − X_j|² / s`. With `Mean`
/// or `Max`, `ε` is dimensionless: it is relative to the spread of the cloud, so one value
/// works whatever the units of the state.
///
/// ```
/// use diffsmc::resample::CostScale;
/// assert_eq!("max".parse::<CostScale>().unwrap(), CostScale::Max);
/// assert_eq!(CostScale::default().to_string(), "mean");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CostScale {
    /// `s` = the mean of `|X_i − X_j|²` over all ordered pairs (uniform, including `i = j`),
    /// `= 2 · (1/N) Σ_i |X_i − X̄|²`: computed in `O(N d)`, robust to a few outlying
    /// particles. The default.
    #[default]
    Mean,
    /// `s` = the largest pairwise squared distance (the squared diameter of the cloud);
    /// costs one extra `O(N² d)` pass and lets a single outlier shrink the effective `ε`.
    Max,
    /// No scaling (`s = 1`): `ε` is in the squared units of the state.
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
///   regularisation, relative to the cost scale. Smaller is closer to exact optimal transport
///   (less bias towards the weighted mean) but needs more iterations.
/// - `tolerance` (`> 0`, default 1e-3): Sinkhorn stops when the L1 error of the row marginal,
///   `Σ_i |Σ_j P_ij − 1/N|`, of the plan whose column marginal is exact falls to it or below.
/// - `max_iterations` (`≥ 1`, default 100): the cap. Reaching it without meeting the
///   tolerance is not an error: the plan of the last iterate is used and the step reports
///   `converged = false` (see [`ResampleInfo`] and the driver's `resampler_converged`).
/// - `scale` (default [`CostScale::Mean`]).
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
}

impl Default for OtConfig {
    fn default() -> Self {
        OtConfig {
            epsilon: Self::DEFAULT_EPSILON,
            tolerance: Self::DEFAULT_TOLERANCE,
            max_iterations: Self::DEFAULT_MAX_ITERATIONS,
            scale: CostScale::Mean,
        }
    }
}

impl OtConfig {
    /// Default `ε` (relative to the mean pairwise squared distance).
    pub const DEFAULT_EPSILON: f64 = 0.1;
    /// Default tolerance on the L1 marginal error.
    pub const DEFAULT_TOLERANCE: f64 = 1e-3;
    /// Default iteration cap.
    pub const DEFAULT_MAX_ITERATIONS: usize = 100;

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
    /// The spec syntax, e.g. `ot:eps=0.1,iters=100,tol=0.001,scale=mean`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ot:eps={},iters={},tol={},scale={}",
            self.epsilon, self.max_iterations, self.tolerance, self.scale
        )
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
    /// The last measured L1 row-marginal error (of the plan before the final row update).
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

// ---------------------------------------------------------------------------------------------
// Sinkhorn in the log domain.
//
// Units: with y_i = (X_i − X̄) / sqrt(s ε) the scaled cost is K_ij = |y_i − y_j|² = C_ij / ε, and
// the potentials are u = f/ε, v = g/ε, so P_ij = exp(u_i + v_j − K_ij). Expanding
// K_ij = |y_i|² + |y_j|² − 2 y_i·y_j, every pass is, for each target point p,
//     LSE_q ( h_q + 2 y_p · y_q )   with h_q = (potential)_q − |y_q|²,
// and the constant −|y_p|² is subtracted afterwards: one dot product of length d per entry.
// ---------------------------------------------------------------------------------------------

/// Lanes of the f64 kernel (fixed-size arrays the compiler vectorises).
const LANES: usize = 8;
/// Sources per tile (a multiple of LANES).
const TILE: usize = 256;
/// Tile for the generic (dual-number) kernel.
const GTILE: usize = 64;
/// Rows per rayon task.
#[cfg(feature = "rayon")]
const ROWS_PER_TASK: usize = 16;
/// Passes with at least this many entries (targets × sources) run on rayon threads. Measured
/// on the 2-core development machine (best of 300, d = 8, about 4 ns per entry on one thread):
/// at 128 × 128 one thread takes 64 µs and two 121 µs; at 256 × 256, 239 µs against 160 µs.
const PAR_MIN_ENTRIES: usize = 192 * 192;

fn parallel_default() -> bool {
    cfg!(feature = "rayon")
}

/// Points stored dimension-major: `c[k * stride + i]` is coordinate `k` of point `i`;
/// `stride ≥ n` is `n` rounded up to a multiple of [`LANES`], padded with zeros.
#[derive(Debug, Clone)]
struct Soa<S> {
    n: usize,
    d: usize,
    stride: usize,
    c: Vec<S>,
}

impl<S: Scalar> Soa<S> {
    fn from_fn(n: usize, d: usize, f: impl Fn(usize, usize) -> S) -> Self {
        let stride = n.div_ceil(LANES) * LANES;
        let mut c = vec![S::zero(); stride * d];
        for k in 0..d {
            for i in 0..n {
                c[k * stride + i] = f(i, k);
            }
        }
        Soa { n, d, stride, c }
    }
    #[inline]
    fn get(&self, k: usize, i: usize) -> S {
        self.c[k * self.stride + i]
    }
    fn sq_norms(&self) -> Vec<S> {
        (0..self.n)
            .map(|i| {
                let mut s = S::zero();
                for k in 0..self.d {
                    let v = self.get(k, i);
                    s += v * v;
                }
                s
            })
            .collect()
    }
}

/// Runs `f(row_index, row)` over the rows of `buf` (rows of `width` elements), in fixed tasks
/// of [`ROWS_PER_TASK`] rows on rayon threads when `par` ([`crate::par`]; sequential for tape
/// scalars `S`). Each row is computed independently and sequentially, so the result does not
/// depend on the number of threads.
fn for_rows<S: Scalar, T: Send>(
    buf: &mut [T],
    width: usize,
    par: bool,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if width == 0 {
        return;
    }
    crate::par::for_each_chunk_mut::<S, T>(buf, ROWS_PER_TASK * width, par, |c, chunk| {
        for (j, row) in chunk.chunks_exact_mut(width).enumerate() {
            f(c * ROWS_PER_TASK + j, row);
        }
    });
}

/// Branch-free `exp(x)` for `x ≤ 0` (the callers subtract a maximum; small positive rounding
/// excursions are fine up to 709), written so that the compiler vectorises loops over it:
/// Cody–Waite reduction `x = k ln 2 + r`, `|r| ≤ ln 2 / 2`, a degree-12 Taylor polynomial
/// (truncation error < 3e-16 relative) in Estrin form, and `2^k` assembled in the exponent
/// bits. Inputs below −708 (and −inf) give `exp(−708) ≈ 3e-308`, which is below the rounding
/// unit of every sum it enters (each sum contains a term `exp(0) = 1`).
#[inline(always)]
pub(crate) fn exp_nonpos(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    const LN2_HI: f64 = 0.693_147_180_369_123_8; // 0x1.62e42fee00000p-1
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    // 1.5 · 2^52: adding it rounds to an integer held in the low mantissa bits.
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    let x = if x > -708.0 { x } else { -708.0 };
    let kf = x * LOG2E + SHIFT;
    let bits = kf.to_bits();
    let k = kf - SHIFT;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // Taylor coefficients 1/j!, evaluated by Estrin's scheme (short dependency chains).
    const C: [f64; 13] = [
        1.0,
        1.0,
        0.5,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5_040.0,
        1.0 / 40_320.0,
        1.0 / 362_880.0,
        1.0 / 3_628_800.0,
        1.0 / 39_916_800.0,
        1.0 / 479_001_600.0,
    ];
    let r2 = r * r;
    let r4 = r2 * r2;
    let r8 = r4 * r4;
    let p01 = C[0] + C[1] * r;
    let p23 = C[2] + C[3] * r;
    let p45 = C[4] + C[5] * r;
    let p67 = C[6] + C[7] * r;
    let p89 = C[8] + C[9] * r;
    let p1011 = C[10] + C[11] * r;
    let q0 = p01 + p23 * r2;
    let q1 = p45 + p67 * r2;
    let q2 = p89 + p1011 * r2;
    let s0 = q0 + q1 * r4;
    let s1 = q2 + C[12] * r4;
    let p = s0 + s1 * r8;
    // The low 12 bits of `bits` are (2^51 + k) mod 2^12 = k mod 2^12; adding the bias and
    // shifting puts k + 1023 (in [1, 1023] here) into the exponent field.
    let scale = f64::from_bits(bits.wrapping_add(1023) << 52);
    p * scale
}

/// Calls `f(z)` with `z = 2 y_p` (target `p`'s coordinates doubled), on the stack for d ≤ 32.
#[inline(always)]
fn with_z<R>(tgt: &Soa<f64>, p: usize, f: impl FnOnce(&[f64]) -> R) -> R {
    let d = tgt.d;
    let fill = |z: &mut [f64]| {
        for (k, zk) in z.iter_mut().enumerate() {
            *zk = 2.0 * tgt.c[k * tgt.stride + p];
        }
    };
    if d <= 32 {
        let mut z = [0.0; 32];
        fill(&mut z[..d]);
        f(&z[..d])
    } else {
        let mut z = vec![0.0; d];
        fill(&mut z);
        f(&z)
    }
}

/// Fills `t[..len]` with `h_q + z · y_q` for the sources `start..start+len` (f64 kernel).
#[inline(always)]
fn fill_tile_f64(
    z: &[f64],
    src: &Soa<f64>,
    h: &[f64],
    start: usize,
    len: usize,
    t: &mut [f64; TILE],
) {
    let mut q0 = 0;
    while q0 < len {
        let mut a: [f64; LANES] = h[start + q0..start + q0 + LANES]
            .try_into()
            .expect("lane slice");
        for (k, &z) in z.iter().enumerate() {
            let off = k * src.stride + start + q0;
            let y: &[f64; LANES] = src.c[off..off + LANES].try_into().expect("lane slice");
            for l in 0..LANES {
                a[l] += z * y[l];
            }
        }
        t[q0..q0 + LANES].copy_from_slice(&a);
        q0 += LANES;
    }
}

#[inline(always)]
fn max_lanes(t: &[f64]) -> f64 {
    let mut m = [f64::NEG_INFINITY; LANES];
    for c in t.chunks_exact(LANES) {
        for l in 0..LANES {
            m[l] = if c[l] > m[l] { c[l] } else { m[l] };
        }
    }
    m.iter()
        .fold(f64::NEG_INFINITY, |a, &b| if b > a { b } else { a })
}

/// `Σ_q exp(t_q − m)` in lane accumulators (fixed order).
#[inline(always)]
fn sum_exp_lanes(t: &[f64], m: f64) -> f64 {
    let mut s = [0.0; LANES];
    for c in t.chunks_exact(LANES) {
        for l in 0..LANES {
            s[l] += exp_nonpos(c[l] - m);
        }
    }
    s.iter().sum()
}

/// `LSE_q (h_q + 2 y_p · y_q)` over all sources (f64 kernel, online max over tiles).
fn lse_row_f64(tgt: &Soa<f64>, p: usize, src: &Soa<f64>, h: &[f64]) -> f64 {
    with_z(tgt, p, |z| lse_row_z(z, src, h))
}

fn lse_row_z(z: &[f64], src: &Soa<f64>, h: &[f64]) -> f64 {
    let mut t = [0.0; TILE];
    let (mut m, mut s) = (f64::NEG_INFINITY, 0.0);
    let mut start = 0;
    while start < src.stride {
        let len = TILE.min(src.stride - start);
        fill_tile_f64(z, src, h, start, len, &mut t);
        let tt = &t[..len];
        let cm = max_lanes(tt);
        if cm > m {
            s *= exp_nonpos(m - cm);
            m = cm;
        }
        s += sum_exp_lanes(tt, m);
        start += len;
    }
    m + s.ln()
}

/// `LSE_q (h_q + 2 y_p · y_q)` in the scalar `S` (generic kernel; no padding read).
fn lse_row_generic<S: Scalar>(tgt: &Soa<S>, p: usize, src: &Soa<S>, h: &[S]) -> S {
    let mut t = [S::zero(); GTILE];
    let mut m: Option<S> = None;
    let mut s = S::zero();
    let mut start = 0;
    let n = src.n;
    let d = src.d;
    while start < n {
        let len = GTILE.min(n - start);
        let tt = &mut t[..len];
        tt.copy_from_slice(&h[start..start + len]);
        for k in 0..d {
            let z = tgt.get(k, p) * 2.0;
            let y = &src.c[k * src.stride + start..k * src.stride + start + len];
            for (a, &yq) in tt.iter_mut().zip(y) {
                *a += z * yq;
            }
        }
        let mut cm = tt[0];
        for &a in tt.iter() {
            if a.re() > cm.re() {
                cm = a;
            }
        }
        let mm = match m {
            Some(mo) if mo.re() >= cm.re() => mo,
            Some(mo) => {
                s *= (mo - cm).exp();
                cm
            }
            None => cm,
        };
        m = Some(mm);
        for &a in tt.iter() {
            s += (a - mm).exp();
        }
        start += len;
    }
    let m = m.unwrap_or(S::cst(f64::NEG_INFINITY));
    m + s.ln()
}

/// One log-sum-exp pass: `out[p] = LSE_q (h_q + 2 y_p · y_q)` for every target `p`.
// `&Vec` (not a slice) so that it can be downcast to the f64 fast path.
#[allow(clippy::ptr_arg)]
fn lse_pass<S: Scalar>(tgt: &Soa<S>, src: &Soa<S>, h: &Vec<S>, out: &mut Vec<S>, par: bool) {
    let par = par && tgt.n * src.n >= PAR_MIN_ENTRIES;
    out.resize(tgt.n, S::zero());
    if let (Some(t), Some(s), Some(h)) = (
        (tgt as &dyn Any).downcast_ref::<Soa<f64>>(),
        (src as &dyn Any).downcast_ref::<Soa<f64>>(),
        (h as &dyn Any).downcast_ref::<Vec<f64>>(),
    ) && let Some(o) = (out as &mut dyn Any).downcast_mut::<Vec<f64>>()
    {
        for_rows::<f64, _>(o, 1, par, |p, r| r[0] = lse_row_f64(t, p, s, h));
        return;
    }
    for_rows::<S, _>(out, 1, par, |p, r| r[0] = lse_row_generic(tgt, p, src, h));
}

/// Transport row `p`: `Σ_q exp(h_q + 2 y_p · y_q − l_p) x_q` normalised by the sum of the
/// coefficients, into `row` (f64 kernel).
fn transport_row_f64(
    tgt: &Soa<f64>,
    p: usize,
    src: &Soa<f64>,
    xs: &Soa<f64>,
    h: &[f64],
    lp: f64,
    row: &mut [f64],
) {
    with_z(tgt, p, |z| transport_row_z(z, src, xs, h, lp, row));
}

fn transport_row_z(z: &[f64], src: &Soa<f64>, xs: &Soa<f64>, h: &[f64], lp: f64, row: &mut [f64]) {
    let d = xs.d;
    let mut t = [0.0; TILE];
    let mut acc = vec![[0.0; LANES]; d];
    let mut sum = [0.0; LANES];
    let mut start = 0;
    while start < src.stride {
        let len = TILE.min(src.stride - start);
        fill_tile_f64(z, src, h, start, len, &mut t);
        let tt = &mut t[..len];
        for c in tt.chunks_exact_mut(LANES) {
            for l in 0..LANES {
                c[l] = exp_nonpos(c[l] - lp);
                sum[l] += c[l];
            }
        }
        for (k, a) in acc.iter_mut().enumerate() {
            let off = k * xs.stride + start;
            for (c, x) in tt
                .chunks_exact(LANES)
                .zip(xs.c[off..off + len].chunks_exact(LANES))
            {
                for l in 0..LANES {
                    a[l] += c[l] * x[l];
                }
            }
        }
        start += len;
    }
    let total: f64 = sum.iter().sum();
    for (r, a) in row.iter_mut().zip(&acc) {
        *r = a.iter().sum::<f64>() / total;
    }
}

/// Generic version of [`transport_row_f64`].
fn transport_row_generic<S: Scalar>(
    tgt: &Soa<S>,
    p: usize,
    src: &Soa<S>,
    xs: &Soa<S>,
    h: &[S],
    lp: S,
    row: &mut [S],
) {
    let d = xs.d;
    row.fill(S::zero());
    let mut total = S::zero();
    for q in 0..src.n {
        let mut a = h[q];
        for k in 0..d {
            a += tgt.get(k, p) * 2.0 * src.get(k, q);
        }
        let e = (a - lp).exp();
        total += e;
        for k in 0..d {
            row[k] += e * xs.get(k, q);
        }
    }
    for r in row.iter_mut() {
        *r /= total;
    }
}

/// The state of a solved Sinkhorn problem.
#[derive(Debug)]
struct Sinkhorn<S> {
    /// All points, scaled (`y = (X − X̄)/sqrt(s ε)`).
    ya: Soa<S>,
    /// The points with positive weight, scaled.
    yb: Soa<S>,
    /// The points with positive weight, original coordinates.
    xb: Soa<S>,
    /// Indices of the points with positive weight.
    support: Vec<usize>,
    /// Row potentials (`f/ε`), all points.
    u: Vec<S>,
    /// Column potentials (`g/ε`), support points.
    v: Vec<S>,
    /// `h = v − |y_b|²`, padded with −inf, used by the last row pass.
    hb: Vec<S>,
    /// Kernel outputs of the last row pass (`LSE_q (h_q + 2 y_p · y_q)`).
    rows: Vec<S>,
    scale: S,
    iterations: usize,
    converged: bool,
    error: f64,
}

impl<S: Scalar> Sinkhorn<S> {
    fn solve(
        config: &OtConfig,
        particles: &Particles<S>,
        log_weights: &[S],
        par: bool,
    ) -> Result<Self> {
        let n = particles.len();
        let d = particles.dim();
        if n == 0 {
            return Err(SmcError::invalid("particles", 0, "at least one particle"));
        }
        if log_weights.len() != n {
            return Err(SmcError::DimensionMismatch {
                what: "log-weights vs particles",
                expected: n,
                got: log_weights.len(),
            });
        }
        let nf = n as f64;
        // Column marginal b = w (renormalised defensively; a no-op for normalised input).
        let lse_w = log_sum_exp(log_weights);
        if !lse_w.re().is_finite() {
            return Err(SmcError::invalid(
                "log_weights",
                lse_w.re(),
                "normalised log-weights (at least one finite)",
            ));
        }
        let support: Vec<usize> = (0..n)
            .filter(|&j| log_weights[j].re() > f64::NEG_INFINITY)
            .collect();
        let log_b: Vec<S> = support.iter().map(|&j| log_weights[j] - lse_w).collect();

        // Centre and scale.
        let mut mean = vec![S::zero(); d];
        for x in particles.iter() {
            for (m, &xk) in mean.iter_mut().zip(x) {
                *m += xk;
            }
        }
        for m in &mut mean {
            *m /= nf;
        }
        let scale = match config.scale {
            CostScale::None => S::one(),
            CostScale::Mean => {
                let mut s = S::zero();
                for x in particles.iter() {
                    for (&xk, &m) in x.iter().zip(&mean) {
                        let z = xk - m;
                        s += z * z;
                    }
                }
                s * (2.0 / nf)
            }
            CostScale::Max => max_sq_distance(particles, par),
        };
        let scale = if scale.re() > 0.0 && scale.re().is_finite() {
            scale
        } else {
            // All particles equal (or d = 0): the cost vanishes, any scale will do.
            S::one()
        };
        let c = (scale * config.epsilon).sqrt().recip();
        let ya = Soa::from_fn(n, d, |i, k| (particles.particle(i)[k] - mean[k]) * c);
        let yb = Soa::from_fn(support.len(), d, |j, k| ya.get(k, support[j]));
        let xb = Soa::from_fn(support.len(), d, |j, k| particles.particle(support[j])[k]);
        let qa = ya.sq_norms();
        let qb = yb.sq_norms();

        let log_a = -nf.ln();
        let neg_inf = S::cst(f64::NEG_INFINITY);
        let mut ha = vec![neg_inf; ya.stride];
        let mut hb = vec![neg_inf; yb.stride];
        let mut rows = Vec::with_capacity(n);
        let mut cols = Vec::with_capacity(support.len());

        // Start from f = 0 (any constant would do: the first column update absorbs it).
        let mut u = vec![S::zero(); n];
        let mut v = vec![S::zero(); support.len()];

        let mut iterations = 0;
        let mut converged = false;
        let mut error = f64::INFINITY;
        for it in 1..=config.max_iterations {
            // Column update: columns exact.
            for (h, (&ui, &q)) in ha.iter_mut().zip(u.iter().zip(&qa)) {
                *h = ui - q;
            }
            lse_pass(&yb, &ya, &ha, &mut cols, par);
            for (j, vj) in v.iter_mut().enumerate() {
                *vj = log_b[j] - (cols[j] - qb[j]);
            }
            // Row pass: measures the row marginal of (u, v), then makes rows exact.
            for (h, (&vj, &q)) in hb.iter_mut().zip(v.iter().zip(&qb)) {
                *h = vj - q;
            }
            lse_pass(&ya, &yb, &hb, &mut rows, par);
            let a = 1.0 / nf;
            error = 0.0;
            for i in 0..n {
                let l = rows[i] - qa[i];
                error += ((u[i].re() + l.re()).exp() - a).abs();
                u[i] = S::cst(log_a) - l;
            }
            iterations = it;
            if error <= config.tolerance {
                converged = true;
                break;
            }
        }
        if !error.is_finite() {
            converged = false;
        }
        Ok(Sinkhorn {
            ya,
            yb,
            xb,
            support,
            u,
            v,
            hb,
            rows,
            scale,
            iterations,
            converged,
            error,
        })
    }

    /// `X*_i = N Σ_j P_ij X_j` for the final plan (rows exact: a convex combination).
    fn transport(&self, out: &mut Particles<S>, par: bool) {
        let d = self.ya.d;
        let par = par && self.ya.n * self.yb.n >= PAR_MIN_ENTRIES;
        if let (Some(t), Some(s), Some(xs), Some(h), Some(rows)) = (
            (&self.ya as &dyn Any).downcast_ref::<Soa<f64>>(),
            (&self.yb as &dyn Any).downcast_ref::<Soa<f64>>(),
            (&self.xb as &dyn Any).downcast_ref::<Soa<f64>>(),
            (&self.hb as &dyn Any).downcast_ref::<Vec<f64>>(),
            (&self.rows as &dyn Any).downcast_ref::<Vec<f64>>(),
        ) && let Some(o) = (out as &mut dyn Any).downcast_mut::<Particles<f64>>()
        {
            for_rows::<f64, _>(o.as_mut_slice(), d, par, |p, row| {
                transport_row_f64(t, p, s, xs, h, rows[p], row);
            });
            return;
        }
        for_rows::<S, _>(out.as_mut_slice(), d, par, |p, row| {
            transport_row_generic(&self.ya, p, &self.yb, &self.xb, &self.hb, self.rows[p], row);
        });
    }
}

/// The largest pairwise squared distance, chosen on the value part and recomputed in `S`.
fn max_sq_distance<S: Scalar>(particles: &Particles<S>, par: bool) -> S {
    let n = particles.len();
    let d = particles.dim();
    let vals: Vec<f64> = particles.as_slice().iter().map(|v| v.re()).collect();
    let mut best = vec![(0.0_f64, 0usize); n];
    let par = par && n * n >= PAR_MIN_ENTRIES;
    for_rows::<f64, _>(&mut best, 1, par, |i, r| {
        let xi = &vals[i * d..(i + 1) * d];
        let mut b = (0.0, i);
        for j in 0..n {
            let xj = &vals[j * d..(j + 1) * d];
            let mut s = 0.0;
            for k in 0..d {
                let z = xi[k] - xj[k];
                s += z * z;
            }
            if s > b.0 {
                b = (s, j);
            }
        }
        r[0] = b;
    });
    let (mut bi, mut bj, mut bv) = (0, 0, 0.0);
    for (i, &(v, j)) in best.iter().enumerate() {
        if v > bv {
            (bi, bj, bv) = (i, j, v);
        }
    }
    let mut s = S::zero();
    for (&a, &b) in particles.particle(bi).iter().zip(particles.particle(bj)) {
        let z = a - b;
        s += z * z;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Purpose, StreamRng, standard_normal};
    use num_dual::Dual64;

    fn cloud(n: usize, d: usize, seed: u64) -> (Particles<f64>, Vec<f64>) {
        let key = StreamKey::new(seed, 0, Purpose::Other(7));
        let mut rng: StreamRng = key.rng(0);
        let x: Vec<f64> = (0..n * d).map(|_| standard_normal(&mut rng)).collect();
        let mut lw: Vec<f64> = (0..n)
            .map(|i| {
                let xi = &x[i * d..(i + 1) * d];
                -0.5 * xi.iter().map(|v| (v - 0.5) * (v - 0.5)).sum::<f64>()
            })
            .collect();
        crate::particles::normalise_log_weights(&mut lw, 0).unwrap();
        (Particles::from_vec(n, d, x).unwrap(), lw)
    }

    fn run<S: Scalar>(r: &OtResampler, x: &Particles<S>, lw: &[S]) -> (Particles<S>, ResampleInfo) {
        let mut out = Particles::zeros(x.len(), x.dim());
        let mut olw = vec![S::zero(); x.len()];
        let info = r
            .resample(
                x,
                lw,
                StreamKey::new(1, 1, Purpose::Resample),
                &mut out,
                &mut olw,
            )
            .unwrap();
        let ln_n = (x.len() as f64).ln();
        assert!(olw.iter().all(|w| (w.re() + ln_n).abs() < 1e-15));
        (out, info)
    }

    #[test]
    fn ot_fast_exp_is_accurate() {
        let mut worst: f64 = 0.0;
        let mut x: f64 = 0.0;
        while x > -700.0 {
            let e = x.exp();
            worst = worst.max(((exp_nonpos(x) - e) / e).abs());
            x -= 0.001_37;
        }
        assert!(worst < 1e-15, "worst relative error {worst}");
        assert_eq!(exp_nonpos(0.0), 1.0);
        assert!(exp_nonpos(f64::NEG_INFINITY) < 1e-307);
    }

    #[test]
    fn ot_fast_kernel_matches_generic() {
        for &(n, d) in &[(1, 1), (7, 3), (300, 8), (513, 2)] {
            let (x, lw) = cloud(n, d, n as u64);
            let ya = Soa::from_fn(n, d, |i, k| x.particle(i)[k] * 0.7);
            let mut h = vec![f64::NEG_INFINITY; ya.stride];
            for i in 0..n {
                h[i] = lw[i] * 3.0;
            }
            let mut fast = Vec::new();
            let mut slow = vec![0.0; n];
            lse_pass(&ya, &ya, &h, &mut fast, false);
            for (p, s) in slow.iter_mut().enumerate() {
                *s = lse_row_generic(&ya, p, &ya, &h);
            }
            for (a, b) in fast.iter().zip(&slow) {
                assert!((a - b).abs() < 1e-12 * b.abs().max(1.0), "{a} vs {b}");
            }
        }
    }

    fn marginals(plan: &OtPlan<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
        let mut rows = vec![0.0; n];
        let mut cols = vec![0.0; n];
        for i in 0..n {
            for j in 0..n {
                rows[i] += plan.matrix[i * n + j];
                cols[j] += plan.matrix[i * n + j];
            }
        }
        (rows, cols)
    }

    #[test]
    fn ot_sinkhorn_marginals_match_to_tolerance() {
        for &(eps, scale) in &[
            (0.1, CostScale::Mean),
            (0.5, CostScale::Max),
            (1.0, CostScale::None),
        ] {
            for &tol in &[1e-3, 1e-6] {
                let n = 40;
                let (x, lw) = cloud(n, 2, 3);
                let cfg = OtConfig::new(eps)
                    .unwrap()
                    .with_tolerance(tol)
                    .unwrap()
                    .with_max_iterations(10_000)
                    .unwrap()
                    .with_scale(scale);
                let plan = OtResampler::new(cfg).transport_plan(&x, &lw).unwrap();
                assert!(plan.converged);
                let (rows, cols) = marginals(&plan, n);
                let row_err: f64 = rows.iter().map(|r| (r - 1.0 / n as f64).abs()).sum();
                assert!(row_err < 1e-12, "row error {row_err}");
                // The final row update perturbs the exact columns by at most about the
                // measured row error (Sinkhorn errors contract).
                let col_err: f64 = cols.iter().zip(&lw).map(|(c, l)| (c - l.exp()).abs()).sum();
                assert!(
                    col_err <= tol,
                    "eps {eps} tol {tol}: column error {col_err}"
                );
            }
        }
    }

    /// Brute force: with weights k_j / N, exact OT between uniform and w is an assignment of
    /// the N sources to the multiset of targets; minimise the total cost over permutations.
    fn brute_force_assignment(x: &[f64], d: usize, counts: &[usize]) -> Vec<usize> {
        let n = counts.len();
        let targets: Vec<usize> = counts
            .iter()
            .enumerate()
            .flat_map(|(j, &c)| std::iter::repeat_n(j, c))
            .collect();
        let mut perm: Vec<usize> = (0..n).collect();
        let mut best = (f64::INFINITY, vec![]);
        fn heap(k: usize, perm: &mut Vec<usize>, f: &mut dyn FnMut(&[usize])) {
            if k == 1 {
                f(perm);
                return;
            }
            heap(k - 1, perm, f);
            for i in 0..k - 1 {
                if k.is_multiple_of(2) {
                    perm.swap(i, k - 1);
                } else {
                    perm.swap(0, k - 1);
                }
                heap(k - 1, perm, f);
            }
        }
        heap(n, &mut perm, &mut |p: &[usize]| {
            let mut c = 0.0;
            for i in 0..n {
                let j = targets[p[i]];
                for k in 0..d {
                    let z = x[i * d + k] - x[j * d + k];
                    c += z * z;
                }
            }
            if c < best.0 {
                best = (c, p.iter().map(|&q| targets[q]).collect());
            }
        });
        best.1
    }

    #[test]
    fn ot_small_epsilon_approaches_exact_transport() {
        let (n, d) = (6, 2);
        let (x, _) = cloud(n, d, 11);
        let counts = [3usize, 0, 1, 2, 0, 0];
        let lw: Vec<f64> = counts.iter().map(|&c| (c as f64 / n as f64).ln()).collect();
        let assign = brute_force_assignment(x.as_slice(), d, &counts);
        // Near the unregularised limit Sinkhorn converges slowly (the marginal error decays
        // like 1/iterations here), hence the generous cap.
        let mut errs = Vec::new();
        for &eps in &[0.1, 0.01, 0.001] {
            let cfg = OtConfig::new(eps)
                .unwrap()
                .with_tolerance(1e-5)
                .unwrap()
                .with_max_iterations(200_000)
                .unwrap();
            let (out, info) = run(&OtResampler::new(cfg), &x, &lw);
            assert!(info.converged, "eps {eps}: {info:?}");
            let mut err: f64 = 0.0;
            for i in 0..n {
                for k in 0..d {
                    err = err.max((out.particle(i)[k] - x.particle(assign[i])[k]).abs());
                }
            }
            errs.push(err);
        }
        // ε = 0.1 blurs visibly; below, the remaining error is that of the marginal
        // tolerance, not of the regularisation.
        assert!(errs[0] > 0.05, "errors {errs:?}");
        assert!(errs[1] < 1e-3 && errs[2] < 1e-3, "errors {errs:?}");
        assert!(errs[2] <= errs[1] * 1.01, "errors {errs:?}");
    }

    #[test]
    fn ot_preserves_weighted_mean_and_degenerate_cases() {
        // One weight 1: every particle moves onto it.
        let (x, _) = cloud(10, 3, 5);
        let mut lw = vec![f64::NEG_INFINITY; 10];
        lw[4] = 0.0;
        let (out, info) = run(&OtResampler::default(), &x, &lw);
        assert!(info.converged);
        for i in 0..10 {
            for k in 0..3 {
                assert!((out.particle(i)[k] - x.particle(4)[k]).abs() < 1e-12);
            }
        }
        // N = 1, d = 1.
        let x1 = Particles::from_vec(1, 1, vec![2.5]).unwrap();
        let (out, info) = run(&OtResampler::default(), &x1, &[0.0]);
        assert_eq!(out.as_slice(), &[2.5]);
        assert!(info.converged);
        // Repeated particles (zero scale).
        let xr = Particles::from_vec(4, 1, vec![1.0; 4]).unwrap();
        let lw4 = vec![-(4f64).ln(); 4];
        let (out, _) = run(&OtResampler::default(), &xr, &lw4);
        assert!(out.as_slice().iter().all(|&v| (v - 1.0).abs() < 1e-15));
        // Zero weights and a huge spread: finite output, mean within the tolerance's reach.
        let (mut x, mut lw) = cloud(50, 2, 9);
        x.as_mut_slice()[0] = 1e6;
        lw[3] = f64::NEG_INFINITY;
        lw[7] = f64::NEG_INFINITY;
        crate::particles::normalise_log_weights(&mut lw, 0).unwrap();
        for scale in [CostScale::Mean, CostScale::Max, CostScale::None] {
            let cfg = OtConfig::default().with_scale(scale);
            let (out, _) = run(&OtResampler::new(cfg), &x, &lw);
            assert!(out.as_slice().iter().all(|v| v.is_finite()), "{scale}");
        }
    }

    #[test]
    fn ot_non_convergence_is_reported() {
        let (x, lw) = cloud(64, 2, 2);
        let cfg = OtConfig::new(0.001)
            .unwrap()
            .with_tolerance(1e-12)
            .unwrap()
            .with_max_iterations(3)
            .unwrap();
        let (out, info) = run(&OtResampler::new(cfg), &x, &lw);
        assert!(!info.converged);
        assert_eq!(info.iterations, 3);
        assert!(out.as_slice().iter().all(|v| v.is_finite()));
    }

    /// A smooth seeded family: particles and log-weights depending on θ.
    fn family<S: Scalar>(theta: S, n: usize, d: usize) -> (Particles<S>, Vec<S>) {
        let (x, _) = cloud(n, d, 21);
        let xs: Vec<S> = x
            .as_slice()
            .iter()
            .enumerate()
            .map(|(i, &v)| theta * (0.3 + 0.01 * i as f64) + (theta * 0.5 + 1.0) * v)
            .collect();
        let p = Particles::from_vec(n, d, xs).unwrap();
        let mut lw: Vec<S> = p
            .iter()
            .map(|xi| {
                let mut s = S::zero();
                for &v in xi {
                    s -= (v - theta) * (v - theta) * 0.5;
                }
                s
            })
            .collect();
        crate::particles::normalise_log_weights(&mut lw, 0).unwrap();
        (p, lw)
    }

    fn statistic<S: Scalar>(p: &Particles<S>) -> S {
        let mut s = S::zero();
        for (i, v) in p.as_slice().iter().enumerate() {
            s += *v * (1.0 + 0.1 * (i % 7) as f64) + *v * *v * 0.05;
        }
        s
    }

    #[test]
    fn ot_derivatives_match_central_differences() {
        for scale in [CostScale::Mean, CostScale::Max, CostScale::None] {
            // A fixed number of iterations (unreachable tolerance) makes the map one smooth
            // composition, the same for θ ± h.
            let cfg = OtConfig::new(0.2)
                .unwrap()
                .with_tolerance(1e-300)
                .unwrap()
                .with_max_iterations(30)
                .unwrap()
                .with_scale(scale);
            let r = OtResampler::new(cfg);
            let (n, d) = (24, 2);
            let theta = 0.3;
            let (xd, lwd) = family(Dual64::new(theta, 1.0), n, d);
            let (outd, _) = run(&r, &xd, &lwd);
            let sd = statistic(&outd);
            let f = |t: f64| {
                let (x, lw) = family(t, n, d);
                statistic(&run(&r, &x, &lw).0)
            };
            let h = 1e-5;
            let fd = (f(theta + h) - f(theta - h)) / (2.0 * h);
            assert!(
                (sd.eps - fd).abs() < 1e-6 * fd.abs().max(1.0),
                "{scale}: dual {} vs fd {fd}",
                sd.eps
            );
            assert!((sd.re - f(theta)).abs() < 1e-10 * sd.re.abs().max(1.0));
        }
    }

    #[test]
    fn ot_dual_derivatives_are_finite_with_zero_weights() {
        let (n, d) = (12, 2);
        let (x, lw) = family(Dual64::new(0.2, 1.0), n, d);
        let mut lw = lw;
        lw[0] = Dual64::new(f64::NEG_INFINITY, f64::NAN);
        lw[5] = Dual64::new(f64::NEG_INFINITY, 1.0);
        crate::particles::normalise_log_weights(&mut lw, 0).unwrap();
        for scale in [CostScale::Mean, CostScale::Max, CostScale::None] {
            let r = OtResampler::new(OtConfig::default().with_scale(scale));
            let (out, _) = run(&r, &x, &lw);
            assert!(
                out.as_slice()
                    .iter()
                    .all(|v| v.re.is_finite() && v.eps.is_finite()),
                "{scale}"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(64))]
        #[test]
        fn ot_outputs_are_convex_combinations(
            n in 1usize..40,
            d in 1usize..4,
            seed in 0u64..1000,
            eps in 0.01f64..2.0,
            spread in -3.0f64..3.0,
        ) {
            let (x, lw) = cloud(n, d, seed);
            // Rescale the cloud by 10^spread: results must not depend on the units much.
            let scale = 10f64.powf(spread);
            let xs = Particles::from_vec(n, d, x.as_slice().iter().map(|v| v * scale).collect())
                .unwrap();
            let r = OtResampler::new(OtConfig::new(eps).unwrap());
            let (out, info) = run(&r, &xs, &lw);
            proptest::prop_assert!(info.iterations >= 1);
            for k in 0..d {
                let lo = (0..n).map(|i| xs.particle(i)[k]).fold(f64::INFINITY, f64::min);
                let hi = (0..n).map(|i| xs.particle(i)[k]).fold(f64::NEG_INFINITY, f64::max);
                let tol = 1e-12 * (hi - lo).abs().max(scale);
                for i in 0..n {
                    let v = out.particle(i)[k];
                    proptest::prop_assert!(v.is_finite() && v >= lo - tol && v <= hi + tol);
                }
            }
            if info.converged {
                // Mean preserved up to tol · max|X|.
                for k in 0..d {
                    let m_out = (0..n).map(|i| out.particle(i)[k]).sum::<f64>() / n as f64;
                    let m_w: f64 = (0..n).map(|i| lw[i].exp() * xs.particle(i)[k]).sum();
                    let xmax = xs.as_slice().iter().fold(0.0f64, |a, v| a.max(v.abs()));
                    proptest::prop_assert!((m_out - m_w).abs() <= 2.0 * 1e-3 * xmax + 1e-12 * xmax);
                }
            }
        }
    }

    #[cfg(feature = "rayon")]
    #[test]
    fn ot_is_deterministic_across_thread_counts() {
        let (x, lw) = cloud(700, 3, 4);
        let r = OtResampler::default();
        let (a, ia) = run(&r, &x, &lw);
        let (b, ib) = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| run(&r, &x, &lw));
        assert_eq!(ia, ib);
        assert_eq!(a, b);
    }

    #[test]
    fn ot_bad_inputs_are_typed_errors() {
        assert!(matches!(
            OtConfig::new(-1.0),
            Err(SmcError::InvalidParameter { name: "eps", .. })
        ));
        assert!(matches!(
            OtConfig::new(f64::NAN),
            Err(SmcError::InvalidParameter { name: "eps", .. })
        ));
        assert!(matches!(
            OtConfig::default().with_tolerance(0.0),
            Err(SmcError::InvalidParameter { name: "tol", .. })
        ));
        assert!(matches!(
            OtConfig::default().with_max_iterations(0),
            Err(SmcError::InvalidParameter { name: "iters", .. })
        ));
        let (x, lw) = cloud(5, 1, 1);
        let r = OtResampler::default();
        let mut out = Particles::zeros(4, 1);
        let mut olw = vec![0.0; 4];
        let key = StreamKey::new(0, 0, Purpose::Resample);
        assert!(matches!(
            r.resample(&x, &lw, key, &mut out, &mut olw),
            Err(SmcError::DimensionMismatch { .. })
        ));
        let mut out = Particles::zeros(5, 1);
        let mut olw = vec![0.0; 5];
        let bad = vec![f64::NAN; 5];
        assert!(r.resample(&x, &bad, key, &mut out, &mut olw).is_err());
    }
}
