//! The lane kernel written with AVX-512 vectors of eight `f64` ([`CH`] = 8). Loads and stores
//! go through slices (`_mm512_set_pd` of eight consecutive elements compiles to one vector
//! load, eight element stores to one vector store), so no `unsafe` is needed beyond the
//! dispatch in [`LaneKernel::means_dispatch`]. Requires Rust ≥ 1.89 (AVX-512 intrinsics,
//! callable safely in `#[target_feature]` functions).
//!
//! Structure of one call (a block of up to [`BLOCK`] queries, tiles of [`TILE`] particles):
//!
//! * the logit offsets `b_i = log w_i − γ |z_i|²` (all lanes) are computed once per call
//!   (they do not depend on the query) into 64-byte-aligned scratch;
//! * `f64` (`P = 0`): the logits of **all the block's queries** are computed together, so each
//!   loaded chunk of a particle coordinate row serves every query (register blocking over the
//!   output particles); then each query's exponentials; then the weighted sums, again with
//!   every loaded chunk of `z` serving all queries (4 coordinates × 4 queries = 16 vector
//!   accumulators);
//! * dual lanes (`P ≥ 1`): one query at a time through the tile (the `P + 1` lanes already
//!   fill the registers), the exponential on the value lane only, the product rule fused into
//!   the accumulation;
//! * the exponential is a table-driven one ([`exp_tab`]: `2^{j/16}` from a 16-entry table held
//!   in two registers, a degree-7 polynomial), 11 multiply-add-pipe operations per vector
//!   instead of the 19 of [`crate::kernels::exp_nonpos`], and ≤ 1 ulp.
//!
//! Each query's arithmetic is the same whatever the other queries of its block are (the
//! blocking only shares loads), so results do not depend on how output particles are grouped
//! into blocks or threads.

use std::arch::x86_64::*;

use super::{BLOCK, CH, LSTRIDE, LaneKernel, LaneScratch, TILE};

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

/// `a · b + c` with one rounding.
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn fma(a: V, b: V, c: V) -> V {
    _mm512_fmadd_pd(a, b, c)
}

/// `2^{j/16}`, `j = 0..16`, correctly rounded (bit patterns computed with 60-digit decimal
/// arithmetic).
pub(super) const EXP2_SIXTEENTHS: [u64; 16] = [
    0x3FF0000000000000,
    0x3FF0B5586CF9890F,
    0x3FF172B83C7D517B,
    0x3FF2387A6E756238,
    0x3FF306FE0A31B715,
    0x3FF3DEA64C123422,
    0x3FF4BFDAD5362A27,
    0x3FF5AB07DD485429,
    0x3FF6A09E667F3BCD,
    0x3FF7A11473EB0187,
    0x3FF8ACE5422AA0DB,
    0x3FF9C49182A3F090,
    0x3FFAE89F995AD3AD,
    0x3FFC199BDD85529C,
    0x3FFD5818DCFBA487,
    0x3FFEA4AFA2A490DA,
];

/// The table of [`exp_tab`] as two vectors (entries 0–7 and 8–15).
#[derive(Clone, Copy)]
struct ExpTable {
    lo: V,
    hi: V,
}

impl ExpTable {
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn new() -> Self {
        let t: [f64; 16] = std::array::from_fn(|j| f64::from_bits(EXP2_SIXTEENTHS[j]));
        ExpTable {
            lo: ld(&t[..8]),
            hi: ld(&t[8..]),
        }
    }
}

/// `exp(x)` for `x ≤ 0` (and `−∞` → 0; below `EXP_MIN_ARG` = −708 flushed to 0, as in
/// [`crate::kernels::exp_nonpos`]).
///
/// `x = (16 n + j) ln2/16 + r` with `k = 16 n + j = round(16 x / ln 2)` (the shift trick),
/// Cody–Waite reduction with `ln2/16` split in two (`LN2_HI/16` has 21 trailing zero bits,
/// so `k · LN2_HI/16` is exact), `|r| ≤ ln2/32 ≈ 0.0217`; `e^r − 1 ≈ r + r² (1/2 + r/6 +
/// … + r⁵/5040)` (Taylor degree 7: truncation < 1.2e-18 relative); `2^{j/16}` from the table by
/// a two-register permute (the low four bits of `k`), `t (1 + q)` as one fused multiply-add,
/// and `2^n` added to the exponent bits (the result is normal for `x > −708`: `n ≥ −1022`
/// and then `j ≥ 9`, `t (1 + q) ≥ 1.44`). Measured against `f64::exp` on 32 M random
/// arguments in \[−710, 0\]: ≤ 1.0 ulp (the polynomial kernel: ≤ 2.8 ulp); the unit test
/// `table_exp_is_within_an_ulp_of_libm` checks ≤ 2 ulp.
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn exp_tab(x: V, tab: ExpTable) -> V {
    use crate::kernels::{EXP_MIN_ARG, EXP_SHIFT, LN2_HI, LN2_LO};
    const L2E16: f64 = 16.0 * std::f64::consts::LOG2_E;
    let lim = splat(EXP_MIN_ARG);
    let ok = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(x, lim);
    let xc = _mm512_mask_blend_pd(ok, lim, x);
    let shift = splat(EXP_SHIFT);
    let kf = fma(xc, splat(L2E16), shift);
    let nf = _mm512_sub_pd(kf, shift);
    let r = _mm512_fnmadd_pd(nf, splat(LN2_HI / 16.0), xc);
    let r = _mm512_fnmadd_pd(nf, splat(LN2_LO / 16.0), r);
    let r2 = _mm512_mul_pd(r, r);
    let a = fma(splat(1.0 / 6.0), r, splat(0.5));
    let b = fma(splat(1.0 / 120.0), r, splat(1.0 / 24.0));
    let c = fma(splat(1.0 / 5040.0), r, splat(1.0 / 720.0));
    let u = fma(c, r2, b);
    let t = fma(u, r2, a);
    let q = fma(t, r2, r);
    let ki = _mm512_castpd_si512(kf);
    let tj = _mm512_permutex2var_pd(tab.lo, ki, tab.hi);
    let e = fma(tj, q, tj);
    // (k >> 4) << 52: bits 4..16 of k into the exponent field (two's complement wraps).
    let n52 = _mm512_and_si512(
        _mm512_slli_epi64::<48>(ki),
        _mm512_set1_epi64(0xFFF0_0000_0000_0000_u64 as i64),
    );
    let e = _mm512_castsi512_pd(_mm512_add_epi64(_mm512_castpd_si512(e), n52));
    _mm512_maskz_mov_pd(ok, e)
}

/// [`exp_tab`] on one value (the test of its accuracy against `f64::exp`).
#[cfg(test)]
#[target_feature(enable = "avx512f,fma")]
pub(in crate::resample::diffusion) fn exp_tab_scalar(x: f64) -> f64 {
    _mm512_cvtsd_f64(exp_tab(splat(x), ExpTable::new()))
}

/// The logit offsets `b_i = −γ |z_i|² + log w_i` of every lane into `sc.bias`
/// (`bias[bias_off + lane * stride + i]`).
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn offsets<const P: usize>(kern: &LaneKernel<P>, gamma: f64, sc: &mut LaneScratch) {
    let (n, stride, off) = (kern.n, kern.stride, sc.bias_off);
    let ng = splat(-gamma);
    for lane in 0..=P {
        let (lw, sq) = (
            &kern.lw[lane * n..(lane + 1) * n],
            &kern.sqz[lane * n..(lane + 1) * n],
        );
        let out = &mut sc.bias[off + lane * stride..off + lane * stride + n];
        for c0 in (0..n).step_by(8) {
            st(fma(ng, ld(&sq[c0..]), ld(&lw[c0..])), &mut out[c0..]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// f64: all queries of a block through each tile together
// ---------------------------------------------------------------------------------------------

/// Logits of particles `t0 + c0 .. + 8U` for `NQ` queries into `l[b * LSTRIDE + c0 ..]`, and
/// the running per-query maxima.
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn logits0<const P: usize, const NQ: usize, const U: usize>(
    kern: &LaneKernel<P>,
    bias: &[f64],
    t0: usize,
    c0: usize,
    q: &[f64],
    l: &mut [f64],
    mx: &mut [V; NQ],
) {
    let d = kern.d;
    let i = t0 + c0;
    let mut a = [[_mm512_setzero_pd(); U]; NQ];
    for u in 0..U {
        let b0 = ld(&bias[i + 8 * u..]);
        for ab in a.iter_mut() {
            ab[u] = b0;
        }
    }
    for k in 0..d {
        let zr = kern.row(0, k, i, 8 * U);
        let z: [V; U] = std::array::from_fn(|u| ld(&zr[8 * u..]));
        for b in 0..NQ {
            let qb = splat(q[b * d + k]);
            for u in 0..U {
                a[b][u] = fma(qb, z[u], a[b][u]);
            }
        }
    }
    for b in 0..NQ {
        for u in 0..U {
            mx[b] = _mm512_max_pd(mx[b], a[b][u]);
            st(a[b][u], &mut l[b * LSTRIDE + c0 + 8 * u..]);
        }
    }
}

/// Adds `Σ_i e_{b,i} z_{k+j,i}` over one tile to `acc[b * d + k + j]`, `j < G`, for `NQ`
/// queries (every loaded chunk of `z` serves all queries).
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn accumulate0<const P: usize, const NQ: usize, const G: usize>(
    kern: &LaneKernel<P>,
    t0: usize,
    tl: usize,
    k: usize,
    l: &[f64],
    acc: &mut [f64],
) {
    let d = kern.d;
    let rows: [&[f64]; G] = std::array::from_fn(|j| kern.row(0, k + j, t0, tl));
    let mut a = [[_mm512_setzero_pd(); G]; NQ];
    for c0 in (0..tl).step_by(8) {
        let e: [V; NQ] = std::array::from_fn(|b| ld(&l[b * LSTRIDE + c0..]));
        for j in 0..G {
            let z = ld(&rows[j][c0..]);
            for b in 0..NQ {
                a[b][j] = fma(e[b], z, a[b][j]);
            }
        }
    }
    for b in 0..NQ {
        for j in 0..G {
            acc[b * d + k + j] += _mm512_reduce_add_pd(a[b][j]);
        }
    }
}

/// The `f64` score loop for a block of `NQ` queries (lane 0 only: called with `P = 0`).
#[inline]
#[target_feature(enable = "avx512f,avx512dq,fma")]
fn means0<const P: usize, const NQ: usize>(kern: &LaneKernel<P>, sc: &mut LaneScratch) {
    let d = kern.d;
    let tab = ExpTable::new();
    let LaneScratch {
        q,
        mx,
        s,
        acc,
        bias,
        bias_off,
        lb,
        lb_off,
        ..
    } = sc;
    let bias = &bias[*bias_off..];
    let l = &mut lb[*lb_off..];
    let mut t0 = 0;
    while t0 < kern.n {
        let tl = TILE.min(kern.n - t0);
        let mut tmx = [splat(f64::NEG_INFINITY); NQ];
        let mut c0 = 0;
        while c0 + 16 <= tl {
            logits0::<P, NQ, 2>(kern, bias, t0, c0, q, l, &mut tmx);
            c0 += 16;
        }
        if c0 < tl {
            logits0::<P, NQ, 1>(kern, bias, t0, c0, q, l, &mut tmx);
        }
        for b in 0..NQ {
            let lt = &mut l[b * LSTRIDE..b * LSTRIDE + tl];
            let tm = _mm512_reduce_max_pd(tmx[b]);
            if tm == f64::NEG_INFINITY {
                // No particle of positive weight in this tile: contributes exactly nothing.
                lt.fill(0.0);
                continue;
            }
            let (mb, sb) = (&mut mx[b], &mut s[b]);
            let ab = &mut acc[b * d..(b + 1) * d];
            if tm > *mb {
                if *mb > f64::NEG_INFINITY {
                    let r = (*mb - tm).exp();
                    *sb *= r;
                    ab.iter_mut().for_each(|v| *v *= r);
                }
                *mb = tm;
            }
            let m = splat(*mb);
            let mut s0 = _mm512_setzero_pd();
            for c in (0..tl).step_by(8) {
                let e = exp_tab(_mm512_sub_pd(ld(&lt[c..]), m), tab);
                st(e, &mut lt[c..]);
                s0 = _mm512_add_pd(s0, e);
            }
            *sb += _mm512_reduce_add_pd(s0);
        }
        let mut k = 0;
        while k < d {
            match d - k {
                1 => accumulate0::<P, NQ, 1>(kern, t0, tl, k, l, acc),
                2 => accumulate0::<P, NQ, 2>(kern, t0, tl, k, l, acc),
                3 => accumulate0::<P, NQ, 3>(kern, t0, tl, k, l, acc),
                _ => accumulate0::<P, NQ, 4>(kern, t0, tl, k, l, acc),
            }
            k += 4;
        }
        t0 += tl;
    }
}

// ---------------------------------------------------------------------------------------------
// Dual lanes: one query at a time
// ---------------------------------------------------------------------------------------------

/// Logits of one tile (all lanes at once, `U` chunks of 8 particles per step so that `U`
/// independent FMA chains share each broadcast) into `l[lane * LSTRIDE + i]`; returns the
/// tile maximum of the value lane.
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn tile_logits<const P: usize, const U: usize>(
    kern: &LaneKernel<P>,
    bias: &[f64],
    t0: usize,
    tl: usize,
    q: &[f64],
    l: &mut [f64],
) -> f64 {
    let mut mx = splat(f64::NEG_INFINITY);
    let mut c0 = 0;
    while c0 + 8 * U <= tl {
        logits_block::<P, U>(kern, bias, t0 + c0, c0, q, l, &mut mx);
        c0 += 8 * U;
    }
    while c0 < tl {
        logits_block::<P, 1>(kern, bias, t0 + c0, c0, q, l, &mut mx);
        c0 += 8;
    }
    _mm512_reduce_max_pd(mx)
}

/// Logits of particles `i..i + 8U` into tile positions `c0..c0 + 8U`.
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn logits_block<const P: usize, const U: usize>(
    kern: &LaneKernel<P>,
    bias: &[f64],
    i: usize,
    c0: usize,
    q: &[f64],
    l: &mut [f64],
    mx: &mut V,
) {
    let (d, stride) = (kern.d, kern.stride);
    let mut a0 = [_mm512_setzero_pd(); U];
    let mut ap = [[_mm512_setzero_pd(); U]; P];
    let mut bp = [[_mm512_setzero_pd(); U]; P];
    for u in 0..U {
        a0[u] = ld(&bias[i + 8 * u..]);
    }
    for (p, a) in ap.iter_mut().enumerate() {
        let bl = &bias[(p + 1) * stride + i..];
        for u in 0..U {
            a[u] = ld(&bl[8 * u..]);
        }
    }
    for k in 0..d {
        let z0r = kern.row(0, k, i, 8 * U);
        let q0 = splat(q[k]);
        let mut z0 = [_mm512_setzero_pd(); U];
        for u in 0..U {
            z0[u] = ld(&z0r[8 * u..]);
            a0[u] = fma(q0, z0[u], a0[u]);
        }
        // Two accumulators per derivative lane (q'·z and q·z') halve the FMA chains.
        for p in 0..P {
            let zpr = kern.row(p + 1, k, i, 8 * U);
            let qp = splat(q[(p + 1) * d + k]);
            for u in 0..U {
                ap[p][u] = fma(qp, z0[u], ap[p][u]);
                bp[p][u] = fma(q0, ld(&zpr[8 * u..]), bp[p][u]);
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
            st(a[u], &mut l[(p + 1) * LSTRIDE + c0 + 8 * u..]);
        }
    }
}

/// Exponentials of one tile (value lane) and `e · l'` (derivative lanes), in place; adds
/// their sums to `s`.
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn tile_exp<const P: usize>(tl: usize, l: &mut [f64], mx: f64, s: &mut [f64], tab: ExpTable) {
    let m = splat(mx);
    let mut s0 = _mm512_setzero_pd();
    let mut sp = [_mm512_setzero_pd(); P];
    for c0 in (0..tl).step_by(8) {
        let e = exp_tab(_mm512_sub_pd(ld(&l[c0..]), m), tab);
        st(e, &mut l[c0..]);
        s0 = _mm512_add_pd(s0, e);
        for (p, a) in sp.iter_mut().enumerate() {
            let j = (p + 1) * LSTRIDE + c0;
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
    let d = kern.d;
    let z0r: [&[f64]; G] = std::array::from_fn(|j| kern.row(0, k + j, t0, tl));
    let zpr: [[&[f64]; G]; P] =
        std::array::from_fn(|p| std::array::from_fn(|j| kern.row(p + 1, k + j, t0, tl)));
    let mut a0 = [_mm512_setzero_pd(); G];
    let mut ap = [[_mm512_setzero_pd(); G]; P];
    for c0 in (0..tl).step_by(8) {
        let e = ld(&l[c0..]);
        let mut ep = [_mm512_setzero_pd(); P];
        for (p, v) in ep.iter_mut().enumerate() {
            *v = ld(&l[(p + 1) * LSTRIDE + c0..]);
        }
        for j in 0..G {
            let z0 = ld(&z0r[j][c0..]);
            a0[j] = fma(e, z0, a0[j]);
            for p in 0..P {
                let zp = ld(&zpr[p][j][c0..]);
                ap[p][j] = fma(ep[p], z0, fma(e, zp, ap[p][j]));
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

/// The dual-lane score loop, one query at a time.
#[inline]
#[target_feature(enable = "avx512f,avx512dq,fma")]
fn means_lanes<const P: usize>(kern: &LaneKernel<P>, nq: usize, sc: &mut LaneScratch) {
    let d = kern.d;
    let lanes = P + 1;
    let tab = ExpTable::new();
    // Coordinates per accumulation pass: (P + 1)·G accumulators stay in registers.
    let gmax = if P <= 2 {
        4
    } else if P <= 4 {
        2
    } else {
        1
    };
    let LaneScratch {
        q,
        mx,
        s,
        acc,
        bias,
        bias_off,
        lb,
        lb_off,
        ..
    } = sc;
    let bias = &bias[*bias_off..];
    let l = &mut lb[*lb_off..];
    let mut t0 = 0;
    while t0 < kern.n {
        let tl = TILE.min(kern.n - t0);
        for b in 0..nq {
            let q = &q[b * lanes * d..(b + 1) * lanes * d];
            let tm = match P {
                1 | 2 => tile_logits::<P, 2>(kern, bias, t0, tl, q, l),
                _ => tile_logits::<P, 1>(kern, bias, t0, tl, q, l),
            };
            if tm == f64::NEG_INFINITY {
                continue;
            }
            let mx = &mut mx[b];
            let s = &mut s[b * lanes..(b + 1) * lanes];
            let acc = &mut acc[b * lanes * d..(b + 1) * lanes * d];
            if tm > *mx {
                if *mx > f64::NEG_INFINITY {
                    let r = (*mx - tm).exp();
                    s.iter_mut().for_each(|v| *v *= r);
                    acc.iter_mut().for_each(|v| *v *= r);
                }
                *mx = tm;
            }
            tile_exp::<P>(tl, l, *mx, s, tab);
            let mut k = 0;
            while k < d {
                let g = gmax.min(d - k);
                match g {
                    4 => acc_group::<P, 4>(kern, t0, tl, k, l, acc),
                    3 => acc_group::<P, 3>(kern, t0, tl, k, l, acc),
                    2 => acc_group::<P, 2>(kern, t0, tl, k, l, acc),
                    _ => acc_group::<P, 1>(kern, t0, tl, k, l, acc),
                }
                k += g;
            }
        }
        t0 += tl;
    }
}

/// [`LaneKernel::means_impl`] with explicit AVX-512 vectors (see the module docs).
#[target_feature(enable = "avx512f,avx512dq,fma")]
pub(super) fn means<const P: usize>(
    kern: &LaneKernel<P>,
    nq: usize,
    gamma: f64,
    sc: &mut LaneScratch,
) {
    debug_assert!(nq <= BLOCK && kern.n.is_multiple_of(CH));
    let lanes = P + 1;
    sc.mx[..nq].fill(f64::NEG_INFINITY);
    sc.s[..nq * lanes].fill(0.0);
    sc.acc[..nq * lanes * kern.d].fill(0.0);
    offsets(kern, gamma, sc);
    if P == 0 {
        match nq {
            1 => means0::<P, 1>(kern, sc),
            2 => means0::<P, 2>(kern, sc),
            3 => means0::<P, 3>(kern, sc),
            _ => means0::<P, 4>(kern, sc),
        }
    } else {
        means_lanes(kern, nq, sc);
    }
}
