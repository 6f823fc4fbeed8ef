//! The lane kernel written with AVX-512 vectors of eight `f64` ([`CH`] = 8). Loads and stores
//! go through slices (`_mm512_set_pd` of eight consecutive elements compiles to one vector
//! load, eight element stores to one vector store), so no `unsafe` is needed beyond the
//! dispatch in [`LaneKernel::means_dispatch`]. Requires Rust ≥ 1.89 (AVX-512 intrinsics,
//! callable safely in `#[target_feature]` functions); the workspace `rust-version` (1.85) must
//! be raised accordingly.

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

/// `a · b + c` with one rounding.
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn fma(a: V, b: V, c: V) -> V {
    _mm512_fmadd_pd(a, b, c)
}

/// Vector [`crate::kernels::exp_nonpos`] (identical operations to its fused form, same
/// constants).
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn exp_nonpos(x: V) -> V {
    use crate::kernels::{EXP_C as C, EXP_MIN_ARG, EXP_SHIFT, LN2_HI, LN2_LO};
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
