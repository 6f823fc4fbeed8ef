//! Tiled log-sum-exp and transport passes of the Sinkhorn iterations (`f64` fast path and
//! generic scalar path), parallel over rows through `crate::par`.
//!
//! Sinkhorn in the log domain.
//!
//! Units: with y_i = (X_i − X̄) / sqrt(s ε) the scaled cost is K_ij = |y_i − y_j|² = C_ij / ε, and
//! the potentials are u = f/ε, v = g/ε, so P_ij = exp(u_i + v_j − K_ij). Expanding
//! K_ij = |y_i|² + |y_j|² − 2 y_i·y_j, every pass is, for each target point p,
//!     LSE_q ( h_q + 2 y_p · y_q )   with h_q = (potential)_q − |y_q|²,
//! and the constant −|y_p|² is subtracted afterwards: one dot product of length d per entry.

use super::*;
#[cfg(target_arch = "x86_64")]
use crate::kernels::Fused;
use crate::kernels::{CH, MulAdd, Plain, exp_nonpos, hsum, lane_max};

/// Lanes of the f64 kernel (fixed-size arrays the compiler vectorises).
pub(super) const LANES: usize = CH;
/// Sources per tile (a multiple of LANES).
pub(super) const TILE: usize = 256;
/// Tile for the generic (dual-number) kernel.
pub(super) const GTILE: usize = 64;
/// Rows per rayon task.
#[cfg(feature = "rayon")]
pub(super) const ROWS_PER_TASK: usize = 16;
/// Passes with at least this many entries (targets × sources) run on rayon threads. Measured
/// on the 2-core development machine (best of 300, d = 8, about 4 ns per entry on one thread):
/// at 128 × 128 one thread takes 64 µs and two 121 µs; at 256 × 256, 239 µs against 160 µs.
pub(super) const PAR_MIN_ENTRIES: usize = 192 * 192;

pub(super) fn parallel_default() -> bool {
    cfg!(feature = "rayon")
}

/// Points stored dimension-major: `c[k * stride + i]` is coordinate `k` of point `i`;
/// `stride ≥ n` is `n` rounded up to a multiple of [`LANES`], padded with zeros.
#[derive(Debug, Clone)]
pub(super) struct Soa<S> {
    pub(super) n: usize,
    pub(super) d: usize,
    pub(super) stride: usize,
    pub(super) c: Vec<S>,
}

impl<S: Scalar> Soa<S> {
    pub(super) fn from_fn(n: usize, d: usize, f: impl Fn(usize, usize) -> S) -> Self {
        let stride = n.div_ceil(LANES) * LANES;
        let mut c = vec![S::zero(); stride * d];
        for k in 0..d {
            for i in 0..n {
                c[k * stride + i] = f(i, k);
            }
        }
        Soa { n, d, stride, c }
    }
    /// Multiplies every coordinate by `f`.
    pub(super) fn scale_by(&mut self, f: f64) {
        for v in &mut self.c {
            *v *= f;
        }
    }
    #[inline]
    pub(super) fn get(&self, k: usize, i: usize) -> S {
        self.c[k * self.stride + i]
    }
    pub(super) fn sq_norms(&self) -> Vec<S> {
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
pub(super) fn for_rows<S: Scalar, T: Send>(
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

/// The instruction set the `f64` passes run on, detected once per pass.
///
/// `Baseline` is the portable build (SSE2 on x86-64) with plain multiply-adds; `Avx2Fma` and
/// `Avx512` compile the same loops for those extensions with fused multiply-adds (one
/// rounding). Results are deterministic on a given CPU whatever the number of threads; across
/// CPUs with different levels they differ by rounding (as in the diffusion resampler's
/// kernels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Isa {
    /// Portable build, plain multiply-adds.
    Baseline,
    /// AVX2 with FMA.
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    /// AVX-512F with FMA.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    /// The best level this CPU runs.
    pub(super) fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2Fma;
            }
        }
        Isa::Baseline
    }

    /// Every level this CPU can run, from the baseline up.
    #[cfg(test)]
    pub(super) fn available() -> Vec<Isa> {
        let mut v = vec![Isa::Baseline];
        #[cfg(target_arch = "x86_64")]
        {
            let best = Isa::detect();
            if best != Isa::Baseline {
                v.push(Isa::Avx2Fma);
            }
            if best == Isa::Avx512 {
                v.push(Isa::Avx512);
            }
        }
        v
    }
}

/// Largest dimension whose doubled target coordinates and transport accumulators live on the
/// stack; larger `d` uses one heap buffer per task of rows.
const STACK_D: usize = 32;

/// Fills `z[..d]` with `2 y_p` (target `p`'s coordinates doubled).
#[inline(always)]
fn fill_z(tgt: &Soa<f64>, p: usize, z: &mut [f64]) {
    for (k, zk) in z.iter_mut().enumerate() {
        *zk = 2.0 * tgt.c[k * tgt.stride + p];
    }
}

/// Fills `t[..len]` with `h_q + z · y_q` for the sources `start..start+len` (f64 kernel).
#[inline(always)]
fn fill_tile_f64<F: MulAdd>(
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
                a[l] = F::madd(z, y[l], a[l]);
            }
        }
        t[q0..q0 + LANES].copy_from_slice(&a);
        q0 += LANES;
    }
}

/// `Σ_q exp(t_q − m)` in lane accumulators (fixed order).
#[inline(always)]
fn sum_exp_lanes<F: MulAdd>(t: &[f64], m: f64) -> f64 {
    let mut s = [0.0; LANES];
    for c in t.chunks_exact(LANES) {
        for l in 0..LANES {
            s[l] += exp_nonpos::<F>(c[l] - m);
        }
    }
    hsum(&s)
}

/// `LSE_q (h_q + z · y_q)` over all sources (f64 kernel, online max over tiles).
#[inline(always)]
fn lse_row_z<F: MulAdd>(z: &[f64], src: &Soa<f64>, h: &[f64]) -> f64 {
    let mut t = [0.0; TILE];
    let (mut m, mut s) = (f64::NEG_INFINITY, 0.0);
    let mut start = 0;
    while start < src.stride {
        let len = TILE.min(src.stride - start);
        fill_tile_f64::<F>(z, src, h, start, len, &mut t);
        let tt = &t[..len];
        let cm = lane_max(tt);
        if cm > m {
            s *= exp_nonpos::<F>(m - cm);
            m = cm;
        }
        s += sum_exp_lanes::<F>(tt, m);
        start += len;
    }
    m + s.ln()
}

/// `out[j] = LSE_q (h_q + 2 y_{p0+j} · y_q)` for the consecutive targets `p0, p0 + 1, …`.
#[inline(always)]
fn lse_rows_impl<F: MulAdd>(tgt: &Soa<f64>, p0: usize, src: &Soa<f64>, h: &[f64], out: &mut [f64]) {
    let d = tgt.d;
    let mut stack = [0.0; STACK_D];
    let mut heap = Vec::new();
    let z: &mut [f64] = if d <= STACK_D {
        &mut stack[..d]
    } else {
        heap.resize(d, 0.0);
        &mut heap
    };
    for (j, o) in out.iter_mut().enumerate() {
        fill_z(tgt, p0 + j, z);
        *o = lse_row_z::<F>(z, src, h);
    }
}

/// [`lse_rows_impl`] on the instruction set `isa` (which must be available: from
/// [`Isa::detect`] or [`Isa::available`]).
pub(super) fn lse_rows_f64(
    isa: Isa,
    tgt: &Soa<f64>,
    p0: usize,
    src: &Soa<f64>,
    h: &[f64],
    out: &mut [f64],
) {
    match isa {
        Isa::Baseline => lse_rows_impl::<Plain>(tgt, p0, src, h, out),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => {
            #[target_feature(enable = "avx2,fma")]
            fn avx2(tgt: &Soa<f64>, p0: usize, src: &Soa<f64>, h: &[f64], out: &mut [f64]) {
                lse_rows_impl::<Fused>(tgt, p0, src, h, out)
            }
            // SAFETY: `Isa::Avx2Fma` is only produced after `is_x86_feature_detected!` found
            // AVX2 and FMA.
            #[allow(unsafe_code)]
            unsafe {
                avx2(tgt, p0, src, h, out)
            }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            #[target_feature(enable = "avx512f,avx2,fma")]
            fn avx512(tgt: &Soa<f64>, p0: usize, src: &Soa<f64>, h: &[f64], out: &mut [f64]) {
                if tgt.d <= super::avx512::MAX_D {
                    super::avx512::lse_rows(tgt, p0, src, h, out)
                } else {
                    lse_rows_impl::<Fused>(tgt, p0, src, h, out)
                }
            }
            // SAFETY: `Isa::Avx512` is only produced after `is_x86_feature_detected!` found
            // AVX-512F and FMA.
            #[allow(unsafe_code)]
            unsafe {
                avx512(tgt, p0, src, h, out)
            }
        }
    }
}

/// `LSE_q (h_q + 2 y_p · y_q)` in the scalar `S` (generic kernel; no padding read).
pub(super) fn lse_row_generic<S: Scalar>(tgt: &Soa<S>, p: usize, src: &Soa<S>, h: &[S]) -> S {
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

/// One log-sum-exp pass: `out[p] = LSE_q (h_q + 2 y_p · y_q)` for every target `p`, with the
/// `f64` fast path on the instruction set `isa` (the generic kernel for other scalars).
// `&Vec` (not a slice) so that it can be downcast to the f64 fast path.
#[allow(clippy::ptr_arg)]
pub(super) fn lse_pass_isa<S: Scalar>(
    isa: Isa,
    tgt: &Soa<S>,
    src: &Soa<S>,
    h: &Vec<S>,
    out: &mut Vec<S>,
    par: bool,
) {
    let par = par && tgt.n * src.n >= PAR_MIN_ENTRIES;
    out.resize(tgt.n, S::zero());
    if let (Some(t), Some(s), Some(h)) = (
        (tgt as &dyn Any).downcast_ref::<Soa<f64>>(),
        (src as &dyn Any).downcast_ref::<Soa<f64>>(),
        (h as &dyn Any).downcast_ref::<Vec<f64>>(),
    ) && let Some(o) = (out as &mut dyn Any).downcast_mut::<Vec<f64>>()
    {
        crate::par::for_each_chunk_mut::<f64, f64>(o, ROWS_PER_TASK, par, |c, chunk| {
            lse_rows_f64(isa, t, c * ROWS_PER_TASK, s, h, chunk)
        });
        return;
    }
    for_rows::<S, _>(out, 1, par, |p, r| r[0] = lse_row_generic(tgt, p, src, h));
}

/// Transport rows `p0, p0 + 1, …` into `rows` (`d` coordinates each): row `p` is
/// `Σ_q exp(h_q + 2 y_p · y_q − l_p) x_q` normalised by the sum of the coefficients
/// (f64 kernel).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn transport_rows_impl<F: MulAdd>(
    tgt: &Soa<f64>,
    p0: usize,
    src: &Soa<f64>,
    xs: &Soa<f64>,
    h: &[f64],
    lp: &[f64],
    rows: &mut [f64],
) {
    let d = xs.d;
    let mut zs = [0.0; STACK_D];
    let mut accs = [[0.0; LANES]; STACK_D];
    let (mut zh, mut ah) = (Vec::new(), Vec::new());
    let (z, acc): (&mut [f64], &mut [[f64; LANES]]) = if d <= STACK_D {
        (&mut zs[..d], &mut accs[..d])
    } else {
        zh.resize(d, 0.0);
        ah.resize(d, [0.0; LANES]);
        (&mut zh, &mut ah)
    };
    let mut t = [0.0; TILE];
    for (j, row) in rows.chunks_exact_mut(d).enumerate() {
        let p = p0 + j;
        fill_z(tgt, p, z);
        acc.fill([0.0; LANES]);
        let mut sum = [0.0; LANES];
        let mut start = 0;
        while start < src.stride {
            let len = TILE.min(src.stride - start);
            fill_tile_f64::<F>(z, src, h, start, len, &mut t);
            let tt = &mut t[..len];
            for c in tt.chunks_exact_mut(LANES) {
                for l in 0..LANES {
                    c[l] = exp_nonpos::<F>(c[l] - lp[p]);
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
                        a[l] = F::madd(c[l], x[l], a[l]);
                    }
                }
            }
            start += len;
        }
        let total = hsum(&sum);
        for (r, a) in row.iter_mut().zip(acc.iter()) {
            *r = hsum(a) / total;
        }
    }
}

/// [`transport_rows_impl`] on the instruction set `isa` (which must be available).
#[allow(clippy::too_many_arguments)]
pub(super) fn transport_rows_f64(
    isa: Isa,
    tgt: &Soa<f64>,
    p0: usize,
    src: &Soa<f64>,
    xs: &Soa<f64>,
    h: &[f64],
    lp: &[f64],
    rows: &mut [f64],
) {
    match isa {
        Isa::Baseline => transport_rows_impl::<Plain>(tgt, p0, src, xs, h, lp, rows),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => {
            #[target_feature(enable = "avx2,fma")]
            fn avx2(
                tgt: &Soa<f64>,
                p0: usize,
                src: &Soa<f64>,
                xs: &Soa<f64>,
                h: &[f64],
                lp: &[f64],
                rows: &mut [f64],
            ) {
                transport_rows_impl::<Fused>(tgt, p0, src, xs, h, lp, rows)
            }
            // SAFETY: `Isa::Avx2Fma` is only produced after `is_x86_feature_detected!` found
            // AVX2 and FMA.
            #[allow(unsafe_code)]
            unsafe {
                avx2(tgt, p0, src, xs, h, lp, rows)
            }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            #[target_feature(enable = "avx512f,avx2,fma")]
            fn avx512(
                tgt: &Soa<f64>,
                p0: usize,
                src: &Soa<f64>,
                xs: &Soa<f64>,
                h: &[f64],
                lp: &[f64],
                rows: &mut [f64],
            ) {
                if xs.d <= super::avx512::MAX_D {
                    super::avx512::transport_rows(tgt, p0, src, xs, h, lp, rows)
                } else {
                    transport_rows_impl::<Fused>(tgt, p0, src, xs, h, lp, rows)
                }
            }
            // SAFETY: `Isa::Avx512` is only produced after `is_x86_feature_detected!` found
            // AVX-512F and FMA.
            #[allow(unsafe_code)]
            unsafe {
                avx512(tgt, p0, src, xs, h, lp, rows)
            }
        }
    }
}

/// Generic version of [`transport_rows_f64`] (one row).
pub(super) fn transport_row_generic<S: Scalar>(
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
