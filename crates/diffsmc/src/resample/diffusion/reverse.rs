//! Reverse mode: the whole reverse process of the diffusion resampler as one tape operation
//! (`crate::tape::custom`), with a hand-written backward pass over the lane kernel.

use super::*;

/// The whitened particles of a tape run, as tape variables and as values (dimension-major).
#[derive(Debug)]
pub(super) struct TapeInputs {
    pub(super) n: usize,
    pub(super) d: usize,
    pub(super) z: Vec<Rev>,
    pub(super) lw: Vec<Rev>,
    pub(super) sqz: Vec<Rev>,
    /// The same as values.
    pub(super) w: Whitened<f64>,
}

impl TapeInputs {
    pub(super) fn new<S: Scalar>(w: &Whitened<S>) -> Self {
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
    pub(super) fn weights<F: MulAdd>(&self, q: &[f64], gamma: f64, e: &mut [f64], m: &mut [f64]) {
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
pub(super) const TAPE_CHUNK: usize = 64;

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
pub(super) struct DriveOp {
    pub(super) inputs: TapeInputs,
    pub(super) steps: Vec<StepCoef>,
    /// `u_k` for k = 0..K (particle-major per step: `traj[k][j * d + c]`).
    pub(super) traj: Vec<Vec<f64>>,
    /// The instruction set of the backward loops.
    pub(super) simd: Simd,
}

impl DriveOp {
    /// Backward pass of particles `range`: adds their input adjoints to `acc`
    /// (`z` dimension-major, then `lw`, then `sqz`), with the widest instruction set the CPU
    /// has.
    #[allow(unsafe_code)]
    pub(super) fn backward_chunk(
        &self,
        range: std::ops::Range<usize>,
        out_adj: &[f64],
        acc: &mut [f64],
    ) {
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
    pub(super) fn backward_chunk_impl<F: MulAdd>(
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
pub(super) fn resample_on_tape<S: Scalar>(
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
pub(super) fn to_rev<S: Scalar>(x: &S) -> Rev {
    tape::as_rev(x).unwrap_or_else(|| Rev::constant(x.re()))
}

/// The inverse of [`to_rev`].
#[inline]
pub(super) fn from_rev<S: Scalar>(r: Rev) -> S {
    tape::from_rev(r).unwrap_or_else(|| S::cst(r.value()))
}
