//! MCMC rejuvenation moves that leave the tempered target `p(x) L(x)^β` invariant: a
//! random walk, MALA and HMC, all preconditioned by the particles' covariance.

use rand::RngExt;

use super::target::{StaticTarget, tempered_log_density};
use crate::error::{Result, SmcError};
use crate::grad::{ChunkSize, Differentiable};
use crate::linalg::{cholesky_with_tolerance, solve_lower};
use crate::rng::{StreamRng, fill_standard_normal};
use crate::scalar::Scalar;

/// Which MCMC kernel rejuvenates the particles.
///
/// Parses from `rw`, `mala`, `hmc` or `hmc:L` (`L` leapfrog steps, default 10).
///
/// ```
/// use diffsmc::samplers::MoveKind;
/// assert_eq!("rw".parse::<MoveKind>().unwrap(), MoveKind::RandomWalk);
/// assert_eq!("hmc:5".parse::<MoveKind>().unwrap(), MoveKind::Hmc { leapfrog: 5 });
/// assert!("hmc:0".parse::<MoveKind>().is_err());
/// assert!("gibbs".parse::<MoveKind>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MoveKind {
    /// Gaussian random walk with covariance `s² · 2.38²/d · Σ̂` (Σ̂: the particles' covariance).
    RandomWalk,
    /// Metropolis-adjusted Langevin, preconditioned by Σ̂, gradients from dual numbers.
    Mala,
    /// Hamiltonian Monte Carlo with mass matrix Σ̂⁻¹ and `leapfrog` steps per proposal.
    Hmc {
        /// Leapfrog steps per proposal (≥ 1).
        leapfrog: usize,
    },
}

impl MoveKind {
    /// HMC with `leapfrog ≥ 1` steps.
    pub fn hmc(leapfrog: usize) -> Result<Self> {
        if leapfrog == 0 {
            return Err(SmcError::invalid("HMC leapfrog steps", 0, "at least 1"));
        }
        Ok(MoveKind::Hmc { leapfrog })
    }

    /// The acceptance rate the step size is adapted towards by default: 0.234 (random
    /// walk), 0.574 (MALA), 0.65 (HMC) — the optimal-scaling values.
    pub fn default_target_acceptance(&self) -> f64 {
        match self {
            MoveKind::RandomWalk => 0.234,
            MoveKind::Mala => 0.574,
            MoveKind::Hmc { .. } => 0.65,
        }
    }

    /// The initial step size (in whitened coordinates; for the random walk a multiple of
    /// `2.38/√d`).
    pub(crate) fn initial_step(&self, d: usize) -> f64 {
        match self {
            MoveKind::RandomWalk => 1.0,
            MoveKind::Mala => 1.65 * (d as f64).powf(-1.0 / 3.0),
            MoveKind::Hmc { leapfrog } => 1.5 / *leapfrog as f64 * (d as f64).powf(-0.25),
        }
    }

    /// `rw`, `mala` or `hmc:L`.
    pub fn name(&self) -> String {
        match self {
            MoveKind::RandomWalk => "rw".into(),
            MoveKind::Mala => "mala".into(),
            MoveKind::Hmc { leapfrog } => format!("hmc:{leapfrog}"),
        }
    }
}

impl std::fmt::Display for MoveKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl std::str::FromStr for MoveKind {
    type Err = SmcError;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        match s {
            "rw" | "random-walk" => Ok(MoveKind::RandomWalk),
            "mala" => Ok(MoveKind::Mala),
            "hmc" => MoveKind::hmc(10),
            _ => {
                let l = s
                    .strip_prefix("hmc:")
                    .and_then(|l| l.trim().parse::<usize>().ok())
                    .ok_or_else(|| {
                        SmcError::invalid("move", s, "`rw`, `mala`, `hmc` or `hmc:L`")
                    })?;
                MoveKind::hmc(l)
            }
        }
    }
}

/// One particle of a tempered sampler: position, log prior and log likelihood.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct State {
    pub x: Vec<f64>,
    pub log_prior: f64,
    pub log_lik: f64,
}

impl State {
    pub fn new<T: StaticTarget + ?Sized>(target: &T, x: Vec<f64>) -> Self {
        let log_prior = target.log_prior(&x);
        let log_lik = if log_prior == f64::NEG_INFINITY {
            f64::NEG_INFINITY
        } else {
            target.log_likelihood(&x)
        };
        State {
            x,
            log_prior,
            log_lik,
        }
    }
    fn tempered(&self, beta: f64) -> f64 {
        if self.log_prior == f64::NEG_INFINITY || beta == 0.0 {
            self.log_prior
        } else {
            self.log_prior + beta * self.log_lik
        }
    }
}

/// The tempered log target as a [`Differentiable`], for gradients.
struct Tempered<'a, T: ?Sized> {
    target: &'a T,
    beta: f64,
}

impl<T: StaticTarget + ?Sized> Differentiable for Tempered<'_, T> {
    fn n_params(&self) -> usize {
        self.target.dim()
    }
    fn eval<S: Scalar>(&self, x: &[S]) -> Result<S> {
        Ok(tempered_log_density(self.target, self.beta, x))
    }
}

/// The one place where the samplers take a gradient: `∇_x [log p(x) + β log L(x)]` (and its
/// value) by forward-mode dual numbers. Non-finite values give a non-finite gradient, which the
/// kernels reject.
fn tempered_gradient<T: StaticTarget + ?Sized>(
    target: &T,
    beta: f64,
    x: &[f64],
) -> Result<(f64, Vec<f64>)> {
    crate::grad::gradient(
        &Tempered { target, beta },
        x,
        &crate::grad::GradOptions::default()
            .with_mode(crate::grad::GradMode::Forward)
            .with_chunk(ChunkSize::Auto),
    )
}

/// The preconditioner: a Cholesky factor `L` of the particles' covariance `Σ̂ = L Lᵀ`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Preconditioner {
    pub d: usize,
    pub l: Vec<f64>,
}

impl Preconditioner {
    /// From a weighted covariance (row-major), with a relative jitter; falls back to its
    /// diagonal, then to the identity, when it is numerically singular.
    pub fn from_cov(cov: &[f64], d: usize) -> Self {
        let scale = (0..d).map(|i| cov[i * d + i]).sum::<f64>() / d as f64;
        if scale.is_finite() && scale > 0.0 {
            let mut c = cov.to_vec();
            for i in 0..d {
                c[i * d + i] += 1e-9 * scale;
            }
            if let Ok(l) = cholesky_with_tolerance(&c, d, 1e-12 * scale, "particle covariance") {
                return Preconditioner { d, l };
            }
        }
        let mut l = vec![0.0; d * d];
        for i in 0..d {
            let v = cov[i * d + i];
            l[i * d + i] = if v.is_finite() && v > 0.0 {
                v.sqrt()
            } else {
                1.0
            };
        }
        Preconditioner { d, l }
    }

    /// `out = L z`.
    fn mul(&self, z: &[f64], out: &mut [f64]) {
        let d = self.d;
        for i in 0..d {
            let mut s = 0.0;
            for k in 0..=i {
                s += self.l[i * d + k] * z[k];
            }
            out[i] = s;
        }
    }

    /// `out = Lᵀ g` (the gradient in whitened coordinates).
    fn mul_t(&self, g: &[f64], out: &mut [f64]) {
        let d = self.d;
        for k in 0..d {
            let mut s = 0.0;
            for i in k..d {
                s += self.l[i * d + k] * g[i];
            }
            out[k] = s;
        }
    }
}

/// The kernel of one move sweep: kind, step size, temperature, preconditioner.
#[derive(Debug, Clone)]
pub(crate) struct Kernel<'a> {
    pub kind: MoveKind,
    pub step: f64,
    pub beta: f64,
    pub pre: &'a Preconditioner,
}

fn finite(v: &[f64]) -> bool {
    v.iter().all(|x| x.is_finite())
}

impl Kernel<'_> {
    /// One Metropolis–Hastings move of `state` (in place); returns the acceptance probability
    /// `min(1, r)` (0 for a proposal outside the support or with a non-finite gradient).
    /// `grad` caches the gradient of the tempered target at the current state (MALA, HMC):
    /// `None` on the first move of a sweep sequence.
    pub fn apply<T: StaticTarget + ?Sized>(
        &self,
        target: &T,
        state: &mut State,
        grad: &mut Option<Vec<f64>>,
        rng: &mut StreamRng,
    ) -> Result<f64> {
        let d = self.pre.d;
        let mut xi = vec![0.0; d];
        fill_standard_normal(rng, &mut xi);
        let u: f64 = rng.random();
        let cur = state.tempered(self.beta);
        let mut prop = vec![0.0; d];
        let (log_r, new_grad) = match self.kind {
            MoveKind::RandomWalk => {
                let s = self.step * 2.38 / (d as f64).sqrt();
                self.pre.mul(&xi, &mut prop);
                for k in 0..d {
                    prop[k] = state.x[k] + s * prop[k];
                }
                let p = State::new(target, prop);
                let lr = p.tempered(self.beta) - cur;
                return Ok(self.decide(state, p, lr, u, grad, None));
            }
            MoveKind::Mala => {
                let g = self.gradient(target, &state.x, grad)?;
                let h = self.step;
                let mut gz = vec![0.0; d];
                self.pre.mul_t(&g, &mut gz);
                // z' = z + h²/2 ∇_z + h ξ, mapped back with x = μ + L z.
                let mut dz = vec![0.0; d];
                for k in 0..d {
                    dz[k] = 0.5 * h * h * gz[k] + h * xi[k];
                }
                self.pre.mul(&dz, &mut prop);
                for k in 0..d {
                    prop[k] += state.x[k];
                }
                let p = State::new(target, prop);
                if p.tempered(self.beta) == f64::NEG_INFINITY {
                    return Ok(0.0);
                }
                let (_, gp) = tempered_gradient(target, self.beta, &p.x)?;
                if !finite(&gp) {
                    return Ok(0.0);
                }
                let mut gzp = vec![0.0; d];
                self.pre.mul_t(&gp, &mut gzp);
                // Reverse move: (z − z' − h²/2 ∇_z') / h, with z − z' = L⁻¹(x − x').
                let mut back: Vec<f64> = (0..d).map(|k| state.x[k] - p.x[k]).collect();
                solve_lower(&self.pre.l, d, &mut back);
                let mut q_rev = 0.0;
                for k in 0..d {
                    let r = (back[k] - 0.5 * h * h * gzp[k]) / h;
                    q_rev += r * r;
                }
                let q_fwd: f64 = xi.iter().map(|v| v * v).sum();
                let lr = p.tempered(self.beta) - cur - 0.5 * q_rev + 0.5 * q_fwd;
                (lr, Some((p, gp)))
            }
            MoveKind::Hmc { leapfrog } => {
                let g0 = self.gradient(target, &state.x, grad)?;
                let eps = self.step;
                let mut z = state.x.clone();
                let mut p = xi.clone();
                let mut gz = vec![0.0; d];
                let mut step = vec![0.0; d];
                self.pre.mul_t(&g0, &mut gz);
                let mut g = g0;
                for k in 0..d {
                    p[k] += 0.5 * eps * gz[k];
                }
                for j in 0..leapfrog {
                    self.pre.mul(&p, &mut step);
                    for k in 0..d {
                        z[k] += eps * step[k];
                    }
                    let (v, gn) = tempered_gradient(target, self.beta, &z)?;
                    if !(v.is_finite() && finite(&gn)) {
                        return Ok(0.0);
                    }
                    g = gn;
                    self.pre.mul_t(&g, &mut gz);
                    let f = if j + 1 == leapfrog { 0.5 } else { 1.0 };
                    for k in 0..d {
                        p[k] += f * eps * gz[k];
                    }
                }
                let np = State::new(target, z);
                let k0: f64 = xi.iter().map(|v| v * v).sum::<f64>() * 0.5;
                let k1: f64 = p.iter().map(|v| v * v).sum::<f64>() * 0.5;
                let lr = np.tempered(self.beta) - k1 - cur + k0;
                (lr, Some((np, g)))
            }
        };
        let (p, gp) = new_grad.expect("gradient moves return the proposal");
        Ok(self.decide(state, p, log_r, u, grad, Some(gp)))
    }

    fn gradient<T: StaticTarget + ?Sized>(
        &self,
        target: &T,
        x: &[f64],
        cache: &mut Option<Vec<f64>>,
    ) -> Result<Vec<f64>> {
        if let Some(g) = cache {
            return Ok(g.clone());
        }
        let (_, g) = tempered_gradient(target, self.beta, x)?;
        *cache = Some(g.clone());
        Ok(g)
    }

    fn decide(
        &self,
        state: &mut State,
        proposal: State,
        log_r: f64,
        u: f64,
        grad: &mut Option<Vec<f64>>,
        new_grad: Option<Vec<f64>>,
    ) -> f64 {
        if log_r.is_nan() || proposal.tempered(self.beta) == f64::NEG_INFINITY {
            return 0.0;
        }
        let acc = log_r.min(0.0).exp();
        if u.ln() < log_r {
            *state = proposal;
            if new_grad.is_some() {
                *grad = new_grad;
            }
        }
        acc
    }
}

/// Particles per fixed chunk of the parallel sweeps (results do not depend on it or on the
/// number of threads: every particle draws from its own stream).
const CHUNK: usize = 32;

/// One sweep: every state moved once by `kernel`, state `i` drawing from `key.rng(i)`, in
/// fixed chunks on rayon threads. Returns the acceptance probability per state.
pub(crate) fn sweep<T: StaticTarget + ?Sized>(
    target: &T,
    kernel: &Kernel<'_>,
    states: &mut [State],
    grads: &mut [Option<Vec<f64>>],
    key: crate::rng::StreamKey,
) -> Result<Vec<f64>> {
    let n = states.len();
    let chunks = n.div_ceil(CHUNK);
    let cur: &[State] = states;
    let cur_g: &[Option<Vec<f64>>] = grads;
    type Moved = (State, Option<Vec<f64>>, f64);
    let out: Vec<Result<Vec<Moved>>> = crate::par::map_chunks::<f64, _>(chunks, |c| {
        let lo = c * CHUNK;
        let hi = (lo + CHUNK).min(n);
        let mut v = Vec::with_capacity(hi - lo);
        for i in lo..hi {
            let mut s = cur[i].clone();
            let mut g = cur_g[i].clone();
            let a = kernel.apply(target, &mut s, &mut g, &mut key.rng(i))?;
            v.push((s, g, a));
        }
        Ok(v)
    });
    let mut acc = Vec::with_capacity(n);
    let mut i = 0;
    for chunk in out {
        for (s, g, a) in chunk? {
            states[i] = s;
            grads[i] = g;
            acc.push(a);
            i += 1;
        }
    }
    Ok(acc)
}

/// States evaluated at positions `xs` (particle-major, dimension `d`), in parallel chunks.
pub(crate) fn evaluate<T: StaticTarget + ?Sized>(target: &T, xs: &[f64], d: usize) -> Vec<State> {
    let n = xs.len() / d;
    let chunks = n.div_ceil(CHUNK);
    crate::par::map_chunks::<f64, _>(chunks, |c| {
        let lo = c * CHUNK;
        let hi = (lo + CHUNK).min(n);
        (lo..hi)
            .map(|i| State::new(target, xs[i * d..(i + 1) * d].to_vec()))
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samplers::targets::LogisticRegression;

    /// The tempered gradient against central differences of the same function (h = 1e-5:
    /// O(h²) truncation, tolerance 1e-5 relative to the gradient's scale).
    #[test]
    fn tempered_gradient_matches_finite_differences() {
        let (rows, y) = LogisticRegression::simulate(80, 3, 2).unwrap();
        let t = LogisticRegression::new(rows, y, 2.0).unwrap();
        let x = [0.2, -0.4, 0.9];
        let beta = 0.37;
        let (v, g) = tempered_gradient(&t, beta, &x).unwrap();
        assert_eq!(v, tempered_log_density(&t, beta, &x));
        let h = 1e-5;
        for k in 0..3 {
            let (mut a, mut b) = (x, x);
            a[k] += h;
            b[k] -= h;
            let fd = (tempered_log_density(&t, beta, &a) - tempered_log_density(&t, beta, &b))
                / (2.0 * h);
            assert!(
                (g[k] - fd).abs() < 1e-5 * (1.0 + fd.abs()),
                "{k}: {} vs {fd}",
                g[k]
            );
        }
    }

    /// Every kernel leaves a standard normal invariant: starting from exact draws, one move
    /// keeps the mean within 4.5 standard errors of 0 and the variance within 4.5 of 1
    /// (20 000 independent chains, so the draws are i.i.d.).
    #[test]
    fn kernels_leave_the_target_invariant() {
        struct Std;
        impl StaticTarget for Std {
            fn dim(&self) -> usize {
                2
            }
            fn log_prior<S: Scalar>(&self, x: &[S]) -> S {
                (x[0] * x[0] + x[1] * x[1]) * -0.5
            }
            fn log_likelihood<S: Scalar>(&self, _x: &[S]) -> S {
                S::zero()
            }
            fn sample_prior(&self, rng: &mut StreamRng, out: &mut [f64]) {
                fill_standard_normal(rng, out);
            }
        }
        // A deliberately mismatched preconditioner: invariance must not depend on it.
        let pre = Preconditioner::from_cov(&[2.0, 0.5, 0.5, 0.7], 2);
        let key = crate::rng::StreamKey::new(4, 0, crate::rng::Purpose::Other(9));
        let n = 20_000;
        for kind in [
            MoveKind::RandomWalk,
            MoveKind::Mala,
            MoveKind::Hmc { leapfrog: 3 },
        ] {
            let kernel = Kernel {
                kind,
                step: 0.8,
                beta: 1.0,
                pre: &pre,
            };
            let mut states: Vec<State> = (0..n)
                .map(|i| {
                    let mut x = vec![0.0; 2];
                    Std.sample_prior(&mut key.sub(1).rng(i), &mut x);
                    State::new(&Std, x)
                })
                .collect();
            let mut grads = vec![None; n];
            let acc = sweep(&Std, &kernel, &mut states, &mut grads, key.sub(2)).unwrap();
            let mean_acc = acc.iter().sum::<f64>() / n as f64;
            assert!(mean_acc > 0.1 && mean_acc < 1.0, "{kind}: {mean_acc}");
            for k in 0..2 {
                let m = states.iter().map(|s| s.x[k]).sum::<f64>() / n as f64;
                let v = states.iter().map(|s| s.x[k] * s.x[k]).sum::<f64>() / n as f64;
                let se_m = (1.0 / n as f64).sqrt();
                let se_v = (2.0 / n as f64).sqrt();
                assert!(m.abs() < 4.5 * se_m, "{kind}: mean {m}");
                assert!((v - 1.0).abs() < 4.5 * se_v, "{kind}: var {v}");
            }
        }
    }
}
