//! The lane score kernel: `f64` (`P = 0`) and first-order duals with `P` derivative lanes, as
//! flat `f64` arrays, vectorised over tiles of particles (baseline, AVX2+FMA and AVX-512).

use super::*;

/// Particles per tile (a multiple of [`CH`]): a tile of whitened particles is read by every
/// query of a block while it is in L1/L2.
pub(super) const TILE: usize = 256;

/// Row stride of the AVX-512 kernel's tile scratch: [`TILE`] plus one line, an odd number of
/// 64-byte lines (rows in distinct L1 sets, no 4 KiB aliasing between a store to one row and
/// a load from another).
pub(super) const LSTRIDE: usize = TILE + CH;

/// Value and `P` derivative lanes of a scalar with [`Scalar::LANES`] `= Some(P)`.
#[inline]
pub(super) fn split<S: Scalar, const P: usize>(x: &S) -> (f64, [f64; P]) {
    let mut eps = [0.0; P];
    let re = x.to_lanes(&mut eps);
    (re, eps)
}

/// The inverse of [`split`].
#[inline]
pub(super) fn join<S: Scalar, const P: usize>(re: f64, eps: [f64; P]) -> S {
    S::from_lanes(re, &eps)
}

/// Row stride (in `f64`) for rows of `n` entries (`n` a multiple of [`CH`]): `n` rounded up to
/// an odd number of 64-byte lines. Rows read in lockstep then fall into distinct L1 sets (with
/// a stride of a power-of-two number of lines, the `d · (P + 1)` rows of a tile, 16 KiB apart
/// at N = 2048, all map onto the same set and evict each other).
pub(super) fn row_stride(n: usize) -> usize {
    let lines = n.div_ceil(CH);
    (lines | 1) * CH
}

/// A zeroed buffer of `len` usable `f64` and the offset at which they start on a 64-byte
/// boundary (so vector loads of a row's chunks never straddle two cache lines).
pub(super) fn aligned_zeros(len: usize) -> (Vec<f64>, usize) {
    let v = vec![0.0; len + CH];
    let misalign = (v.as_ptr() as usize) % 64;
    let off = if misalign == 0 {
        0
    } else {
        (64 - misalign) / std::mem::size_of::<f64>()
    };
    (v, off)
}

/// Instruction set of the lane kernel, detected once per resampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Simd {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Simd {
    /// Every level this CPU can run, from the baseline up.
    #[cfg(test)]
    pub(super) fn available() -> Vec<Simd> {
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

    pub(super) fn detect() -> Simd {
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
pub(super) struct LaneKernel<const P: usize> {
    pub(super) n: usize,
    pub(super) d: usize,
    /// Row stride of `z` (see [`row_stride`]).
    pub(super) stride: usize,
    /// Offset of row 0 in `z`, so that every row starts on a 64-byte boundary.
    pub(super) off: usize,
    /// `z[off + (lane * d + k) * stride + i]`.
    pub(super) z: Vec<f64>,
    /// `lw[lane * n + i]`.
    pub(super) lw: Vec<f64>,
    /// `sqz[lane * n + i]`.
    pub(super) sqz: Vec<f64>,
    pub(super) simd: Simd,
}

#[derive(Debug)]
pub(super) struct LaneScratch {
    /// Logits, then exponentials, of one tile, per lane: `l[lane * TILE + i]`.
    pub(super) l: Vec<f64>,
    /// Query lanes `q[(b * (P + 1) + lane) * d + k]`.
    pub(super) q: Vec<f64>,
    /// Running maximum of the value-lane logits, per query.
    pub(super) mx: Vec<f64>,
    /// Running `Σ e_i` lanes, `s[b * (P + 1) + lane]`.
    pub(super) s: Vec<f64>,
    /// Running `Σ e_i z_i` lanes, `acc[(b * (P + 1) + lane) * d + k]`.
    pub(super) acc: Vec<f64>,
    /// AVX-512 kernel: logit offsets `log w_i − γ |z_i|²` per lane,
    /// `bias[bias_off + lane * stride + i]` (64-byte aligned rows).
    pub(super) bias: Vec<f64>,
    pub(super) bias_off: usize,
    /// AVX-512 kernel: logits, then exponentials, of one tile, `lb[lb_off + r * LSTRIDE + i]`
    /// with `r` the query (`f64`) or the lane (duals).
    pub(super) lb: Vec<f64>,
    pub(super) lb_off: usize,
}

impl<const P: usize> LaneKernel<P> {
    /// `simd` must come from [`Simd::detect`] (or be a level it would also allow).
    pub(super) fn new<S: Scalar>(w: &Whitened<S>, simd: Simd) -> Self {
        let (n0, d) = (w.n, w.d);
        let n = n0.div_ceil(CH) * CH;
        let lanes = P + 1;
        let stride = row_stride(n);
        let (mut z, off) = aligned_zeros(lanes * d * stride);
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
                put(&mut z, off + k * stride + i, d * stride, &w.z[k * n0 + i]);
            }
        }
        LaneKernel {
            n,
            d,
            stride,
            off,
            z,
            lw,
            sqz,
            simd,
        }
    }

    /// Row `k` of lane `lane` of the whitened particles, restricted to the tile.
    #[inline(always)]
    pub(super) fn row(&self, lane: usize, k: usize, t0: usize, tl: usize) -> &[f64] {
        let base = self.off + (lane * self.d + k) * self.stride + t0;
        &self.z[base..base + tl]
    }

    /// Logits of one tile `[t0, t0 + tl)` for one query (all lanes) into `l`; returns the tile
    /// maximum of the value lane.
    #[inline(always)]
    pub(super) fn tile_logits<F: MulAdd>(
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
    pub(super) fn tile_exp<F: MulAdd>(&self, tl: usize, l: &mut [f64], mx: f64, s: &mut [f64]) {
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
    pub(super) fn tile_accumulate<F: MulAdd>(
        &self,
        t0: usize,
        tl: usize,
        l: &[f64],
        acc: &mut [f64],
    ) {
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
    pub(super) fn means_impl<F: MulAdd>(&self, nq: usize, gamma: f64, sc: &mut LaneScratch) {
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
    pub(super) fn means_dispatch(&self, nq: usize, gamma: f64, sc: &mut LaneScratch) {
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
        let self_bias = aligned_zeros(lanes * self.stride);
        let lb = aligned_zeros(BLOCK.max(lanes) * LSTRIDE);
        LaneScratch {
            l: vec![0.0; lanes * TILE],
            q: vec![0.0; BLOCK * lanes * self.d],
            mx: vec![0.0; BLOCK],
            s: vec![0.0; BLOCK * lanes],
            acc: vec![0.0; BLOCK * lanes * self.d],
            bias: self_bias.0,
            bias_off: self_bias.1,
            lb: lb.0,
            lb_off: lb.1,
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

/// `y_i += Σ_j c_j x_{j,i}` over `G` rows (a map loop: vectorises at full width).
#[inline(always)]
pub(super) fn axpy<F: MulAdd, const G: usize>(y: &mut [f64], rows: [(f64, &[f64]); G]) {
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
pub(super) fn dots<F: MulAdd, const G: usize>(e: &[f64], rows: [&[f64]; G]) -> [f64; G] {
    let mut out = [0.0; G];
    for j in 0..G {
        out[j] = dot::<F>(e, rows[j]);
    }
    out
}

/// `[Σ_i (e_i x_{j,i} + f_i y_{j,i})]_j` for `G` row pairs.
#[inline(always)]
pub(super) fn dots2<F: MulAdd, const G: usize>(
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
pub(super) const ACC: usize = 4 * CH;

/// `Σ_i e_i x_i` over a length that is a multiple of [`CH`]: one [`ACC`]-lane accumulator
/// over blocks of `ACC` (one array, so LLVM's SLP vectoriser maps it onto whole vectors), the
/// remaining chunks on its first [`CH`] lanes, then a fixed summation tree.
#[inline(always)]
pub(super) fn dot<F: MulAdd>(e: &[f64], x: &[f64]) -> f64 {
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
pub(super) fn pad<const G: usize>(v: [f64; G]) -> [f64; 4] {
    std::array::from_fn(|j| if j < G { v[j] } else { 0.0 })
}

/// The lane kernel in AVX-512 intrinsics (same maths as [`LaneKernel::means_impl`] with
/// [`Fused`]).
#[cfg(target_arch = "x86_64")]
#[clippy::msrv = "1.89"]
mod avx512;

/// The AVX-512 kernel's exponential on one value (tests of its accuracy).
#[cfg(all(test, target_arch = "x86_64"))]
pub(super) use avx512::exp_tab_scalar as avx512_exp_tab;
