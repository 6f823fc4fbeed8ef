//! The `f64` Sinkhorn passes written with AVX-512 vectors of eight `f64` ([`LANES`] = 8), for
//! `d ≤` [`MAX_D`]. Loads and stores go through slices (`_mm512_set_pd` of eight consecutive
//! elements compiles to one vector load), so no `unsafe` is needed beyond the dispatch in
//! `kernel.rs`. Same algorithm as the portable kernel (tiles of [`TILE`] sources, the logits
//! `h_q + z · y_q` of a tile stored, their maximum, then `Σ exp(t − m)` with an online maximum
//! over tiles), with [`ROWS`] targets per sweep so that every source vector loaded feeds
//! several independent FMA chains.

use std::arch::x86_64::*;

use super::kernel::{LANES, Soa, TILE};
use crate::kernels::{EXP_C as C, EXP_MIN_ARG, EXP_SHIFT, LN2_HI, LN2_LO};

type V = __m512d;

/// Largest dimension handled here (the doubled target coordinates are kept as broadcast
/// vectors on the stack).
pub(super) const MAX_D: usize = 32;
/// Targets per sweep over the sources.
const ROWS: usize = 4;

const _: () = assert!(LANES == 8 && TILE.is_multiple_of(8));

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

#[inline]
#[target_feature(enable = "avx512f,fma")]
fn fma(a: V, b: V, c: V) -> V {
    _mm512_fmadd_pd(a, b, c)
}

/// Vector [`crate::kernels::exp_nonpos`]: the operations of its fused form, same constants.
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn exp_nonpos(x: V) -> V {
    let lim = splat(EXP_MIN_ARG);
    let ok = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(x, lim);
    let xc = _mm512_mask_blend_pd(ok, lim, x);
    let shift = splat(EXP_SHIFT);
    let kf = _mm512_fmadd_pd(xc, splat(std::f64::consts::LOG2_E), shift);
    let nf = _mm512_sub_pd(kf, shift);
    let r = _mm512_fnmadd_pd(nf, splat(LN2_HI), xc);
    let r = _mm512_fnmadd_pd(nf, splat(LN2_LO), r);
    let r2 = _mm512_mul_pd(r, r);
    let r4 = _mm512_mul_pd(r2, r2);
    let r8 = _mm512_mul_pd(r4, r4);
    let p01 = fma(splat(C[1]), r, splat(C[0]));
    let p23 = fma(splat(C[3]), r, splat(C[2]));
    let p45 = fma(splat(C[5]), r, splat(C[4]));
    let p67 = fma(splat(C[7]), r, splat(C[6]));
    let p89 = fma(splat(C[9]), r, splat(C[8]));
    let p1011 = fma(splat(C[11]), r, splat(C[10]));
    let q0 = fma(p23, r2, p01);
    let q1 = fma(p67, r2, p45);
    let q2 = fma(p1011, r2, p89);
    let s0 = fma(q1, r4, q0);
    let s1 = fma(splat(C[12]), r4, q2);
    let p = fma(s1, r8, s0);
    let bits = _mm512_add_epi64(_mm512_castpd_si512(kf), _mm512_set1_epi64(1023));
    let scale = _mm512_castsi512_pd(_mm512_slli_epi64::<52>(bits));
    _mm512_maskz_mov_pd(ok, _mm512_mul_pd(p, scale))
}

/// `exp(x)` of one `x ≤ 0` through the vector kernel (lane 0).
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn exp1(x: f64) -> f64 {
    _mm_cvtsd_f64(_mm512_castpd512_pd128(exp_nonpos(splat(x))))
}

/// Broadcasts `2 y_{p+u}` coordinate by coordinate: `z[k][u]`.
#[inline]
#[target_feature(enable = "avx512f")]
fn targets<const U: usize>(tgt: &Soa<f64>, p: usize) -> [[V; U]; MAX_D] {
    let mut z = [[_mm512_setzero_pd(); U]; MAX_D];
    for (k, zk) in z.iter_mut().enumerate().take(tgt.d) {
        for (u, zu) in zk.iter_mut().enumerate() {
            *zu = splat(2.0 * tgt.c[k * tgt.stride + p + u]);
        }
    }
    z
}

/// Logits `h_q + z_u · y_q` of the sources `start..start + len` for `U` targets into `t[u]`;
/// returns their maxima.
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn tile<const U: usize>(
    z: &[[V; U]; MAX_D],
    src: &Soa<f64>,
    h: &[f64],
    start: usize,
    len: usize,
    t: &mut [[f64; TILE]; U],
) -> [f64; U] {
    let (d, stride) = (src.d, src.stride);
    let mut mx = [splat(f64::NEG_INFINITY); U];
    let mut q0 = 0;
    while q0 < len {
        let q = start + q0;
        let mut a = [ld(&h[q..]); U];
        for (k, zk) in z.iter().enumerate().take(d) {
            let y = ld(&src.c[k * stride + q..]);
            for u in 0..U {
                a[u] = fma(zk[u], y, a[u]);
            }
        }
        for u in 0..U {
            mx[u] = _mm512_max_pd(mx[u], a[u]);
            st(a[u], &mut t[u][q0..]);
        }
        q0 += 8;
    }
    let mut m = [0.0; U];
    for u in 0..U {
        m[u] = _mm512_reduce_max_pd(mx[u]);
    }
    m
}

/// `out[u] = LSE_q (h_q + 2 y_{p+u} · y_q)` for `u < U`.
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn lse_block<const U: usize>(tgt: &Soa<f64>, p: usize, src: &Soa<f64>, h: &[f64], out: &mut [f64]) {
    let z = targets::<U>(tgt, p);
    let mut t = [[0.0; TILE]; U];
    let mut m = [f64::NEG_INFINITY; U];
    let mut s = [0.0; U];
    let mut start = 0;
    while start < src.stride {
        let len = TILE.min(src.stride - start);
        let cm = tile::<U>(&z, src, h, start, len, &mut t);
        for u in 0..U {
            if cm[u] > m[u] {
                s[u] *= exp1(m[u] - cm[u]);
                m[u] = cm[u];
            }
            let mv = splat(m[u]);
            let mut acc = _mm512_setzero_pd();
            let mut q0 = 0;
            while q0 < len {
                acc = _mm512_add_pd(acc, exp_nonpos(_mm512_sub_pd(ld(&t[u][q0..]), mv)));
                q0 += 8;
            }
            s[u] += _mm512_reduce_add_pd(acc);
        }
        start += len;
    }
    for u in 0..U {
        out[u] = m[u] + s[u].ln();
    }
}

/// `out[j] = LSE_q (h_q + 2 y_{p0+j} · y_q)` for the consecutive targets `p0, p0 + 1, …`
/// (`tgt.d = src.d ≤ MAX_D`).
#[target_feature(enable = "avx512f,fma")]
pub(super) fn lse_rows(tgt: &Soa<f64>, p0: usize, src: &Soa<f64>, h: &[f64], out: &mut [f64]) {
    assert!(tgt.d <= MAX_D && src.d == tgt.d);
    let mut j = 0;
    while j + ROWS <= out.len() {
        lse_block::<ROWS>(tgt, p0 + j, src, h, &mut out[j..j + ROWS]);
        j += ROWS;
    }
    while j < out.len() {
        lse_block::<1>(tgt, p0 + j, src, h, &mut out[j..j + 1]);
        j += 1;
    }
}

/// Transport rows `p0, p0 + 1, …` into `rows` (`d` coordinates each): row `p` is
/// `Σ_q exp(h_q + 2 y_p · y_q − l_p) x_q` normalised by the sum of the coefficients
/// (`tgt.d = src.d = xs.d ≤ MAX_D`).
#[target_feature(enable = "avx512f,fma")]
pub(super) fn transport_rows(
    tgt: &Soa<f64>,
    p0: usize,
    src: &Soa<f64>,
    xs: &Soa<f64>,
    h: &[f64],
    lp: &[f64],
    rows: &mut [f64],
) {
    let d = xs.d;
    assert!(d <= MAX_D && src.d == d && tgt.d == d);
    let mut t = [[0.0; TILE]; 1];
    for (j, row) in rows.chunks_exact_mut(d).enumerate() {
        let p = p0 + j;
        let z = targets::<1>(tgt, p);
        let mut acc = [_mm512_setzero_pd(); MAX_D];
        let mut sum = _mm512_setzero_pd();
        let l = splat(lp[p]);
        let mut start = 0;
        while start < src.stride {
            let len = TILE.min(src.stride - start);
            tile::<1>(&z, src, h, start, len, &mut t);
            let mut q0 = 0;
            while q0 < len {
                let e = exp_nonpos(_mm512_sub_pd(ld(&t[0][q0..]), l));
                sum = _mm512_add_pd(sum, e);
                for (k, a) in acc.iter_mut().enumerate().take(d) {
                    *a = fma(e, ld(&xs.c[k * xs.stride + start + q0..]), *a);
                }
                q0 += 8;
            }
            start += len;
        }
        let total = _mm512_reduce_add_pd(sum);
        for (r, a) in row.iter_mut().zip(acc.iter()) {
            *r = _mm512_reduce_add_pd(*a) / total;
        }
    }
}
