//! Step coefficients of the integrators, the driver of the reverse-time process over blocks
//! of output particles (parallel through `crate::par`), and the generic score kernel (any
//! scalar).

use super::*;

/// Per-step constants: the score at diffusion time `t = T − t_{k−1}` is
/// `s = (c m − u) / v` with `m = Σ α_i z_i`, logits `β u·z_i + log w_i − γ |z_i|²`; the update
/// is `u' = κ_u u + κ_s s + κ_ξ ξ`.
#[derive(Debug, Clone, Copy)]
pub(super) struct StepCoef {
    pub(super) c: f64,
    pub(super) inv_v: f64,
    pub(super) beta: f64,
    pub(super) gamma: f64,
    pub(super) ku: f64,
    pub(super) ks: f64,
    pub(super) kxi: f64,
}

pub(super) fn step_coefficients(cfg: &DiffusionConfig) -> Vec<StepCoef> {
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
pub(super) trait ScoreKernel<S: Scalar>: Sync {
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
pub(super) const BLOCK: usize = 4;

/// Minimum `K · M · N · (d + 2) · cost` for which the output particles are processed in
/// parallel. Measured (f64, d = 2, K = 8, best of 200, 2 shared cores): at N = 64 (work
/// 1.3e5) two threads were no faster than one; at N = 128 (5.2e5) they were 1.4× faster.
#[cfg(feature = "rayon")]
pub(super) const PAR_MIN_WORK: usize = 1 << 19;

/// Runs the reverse process for every output particle and un-whitens into `out`
/// (particle-major `M × d`).
pub(super) fn drive<S: Scalar, K: ScoreKernel<S>>(
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
pub(super) fn unwhiten<S: Scalar>(prep: &Prepared<S>, u: &[S], x: &mut [S]) {
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
pub(super) struct GenericKernel<'a, S> {
    pub(super) w: &'a Whitened<S>,
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
