//! The diffusion-bridge Feynman–Kac model of one observation interval.

use std::fmt;
use std::str::FromStr;

use diffsmc::linalg::lower_mul_vec;
use diffsmc::rng::{StreamRng, fill_standard_normal};
use diffsmc::{FeynmanKac, Result, Scalar, SmcError};

use crate::sde::{LN_2PI, Sde, half_log_det, whitened_sq_norm, with_scratch};

/// Noise draws of at most this many components live on the stack.
const STACK_DIM: usize = 16;

/// The per-sub-step constants (functions of `k`, `M`, `δ` and `d` only), computed once per
/// bridge so that the per-particle work has no logarithms or square roots of constants.
#[derive(Debug, Clone, Copy)]
struct StepConst {
    /// `δ / R_k`: the pull towards `x_end`.
    frac: f64,
    /// `√c_k`, `1 / c_k`: the proposal covariance is `c_k a(x)`.
    sqrt_c: f64,
    inv_c: f64,
    /// `(d/2) ln(δ / c_k)`.
    log_ratio: f64,
    /// `R_k = (M − k) δ`, `1 / R_k` and `(d/2)(ln 2π + ln R_k)` for the look-ahead.
    rem: f64,
    inv_rem: f64,
    look_norm: f64,
}

/// How the bridge proposes the sub-step `x → x'` of length `δ` at remaining time `R` (the time
/// left to the interval's end, `x_end` the observation there, `a(x) = σ(x)σ(x)ᵀ`).
///
/// Both propose Gaussians whose covariance is a multiple of `a(x)`, so the Cholesky factor of
/// `a(x)` serves the Euler density and the proposal density alike, and its log-determinant
/// cancels in their ratio. The last sub-step is the point mass at `x_end` for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BridgeProposal {
    /// The modified diffusion bridge (Durham & Gallant 2002):
    /// `x' ~ N(x + (x_end − x) δ / R, a(x) δ (R − δ) / R)`. Ignores the drift; its variance
    /// shrinks to zero at the end, like the Brownian bridge's. Exact for Brownian motion.
    #[default]
    ModifiedDiffusionBridge,
    /// The guided proposal of Delyon & Hu (2006), Euler-discretised:
    /// `x' ~ N(x + b(x) δ + (x_end − x) δ / R, a(x) δ)`. Keeps the drift and the full Euler
    /// variance; the pull `(x_end − x)/R` grows as the end approaches.
    DelyonHu,
}

/// The look-ahead function `ψ_k` that twists the bridge potentials (see
/// [`Bridge::with_lookahead`]): an approximation of `p(x_end | x_k = x)` over the remaining time
/// `R_k = (M − k) δ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Lookahead {
    /// No twist: the potentials are the plain ratios `G_k`.
    Off,
    /// `ψ_k(x) = N(x_end; x, a(x) R_k)`, drift-free. With a constant diffusion and the modified
    /// diffusion bridge the twisted potential of a sub-step is exactly the Euler Girsanov ratio
    /// `N(x'; x + b δ, a δ) / N(x'; x, a δ)`.
    #[default]
    Brownian,
    /// `ψ_k(x) = N(x_end; x + b(x) R_k, a(x) R_k)`: one Euler step over the remaining time.
    /// Sharper for short remaining times, but it overshoots when `R_k` times the drift's
    /// Lipschitz constant exceeds about 2 (then the drift term points past the attractor).
    Euler,
}

impl FromStr for Lookahead {
    type Err = SmcError;
    /// `off`, `brownian` or `euler`.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "none" => Ok(Lookahead::Off),
            "brownian" => Ok(Lookahead::Brownian),
            "euler" => Ok(Lookahead::Euler),
            _ => Err(SmcError::invalid(
                "look-ahead",
                s,
                "`off`, `brownian` or `euler`",
            )),
        }
    }
}

impl fmt::Display for Lookahead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lookahead::Off => "off",
            Lookahead::Brownian => "brownian",
            Lookahead::Euler => "euler",
        })
    }
}

impl BridgeProposal {
    /// The names accepted by [`FromStr`].
    pub const NAMES: &'static [&'static str] = &["mdb", "delyon-hu"];
}

impl FromStr for BridgeProposal {
    type Err = SmcError;
    /// `mdb` (or `modified-diffusion-bridge`), `delyon-hu` (or `guided`, `dh`).
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mdb" | "modified-diffusion-bridge" => Ok(BridgeProposal::ModifiedDiffusionBridge),
            "delyon-hu" | "dh" | "guided" => Ok(BridgeProposal::DelyonHu),
            _ => Err(SmcError::invalid(
                "bridge proposal",
                s,
                "`mdb` (modified diffusion bridge) or `delyon-hu` (guided)",
            )),
        }
    }
}

impl fmt::Display for BridgeProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BridgeProposal::ModifiedDiffusionBridge => "mdb",
            BridgeProposal::DelyonHu => "delyon-hu",
        })
    }
}

/// The bridge Feynman–Kac model between two observations: `x_start` at time 0 and `x_end` at
/// time `Δ`, in `M` Euler sub-steps of length `δ = Δ / M`.
///
/// The FK time index is the sub-step: `n_steps() = M`, step `k` moves from `x_k` to `x_{k+1}`
/// (step 0 from `x_start`), and step `M − 1` lands exactly on `x_end`. The log-potential of
/// a sub-step is the log of the Girsanov-type weight
///
/// ```text
/// log G_k(x, x') = log N(x'; x + b(x) δ, a(x) δ) − log q_k(x' | x)      (k < M − 1)
/// log G_{M−1}(x, x_end) = log N(x_end; x + b(x) δ, a(x) δ)                (the point mass)
/// ```
///
/// with `q_k` the [`BridgeProposal`]. The product of the potentials along a path is the ratio
/// of the Euler path density to the proposal's, so the SMC normalising constant — the
/// engine's `log_likelihood` — is an unbiased estimate (in exp scale) of the `M`-step Euler
/// transition density `p^{(M)}(x_end | x_start)`, which converges to the SDE's as `M` grows.
/// Without resampling ([`diffsmc::Trigger::Never`]) this is importance sampling of bridges;
/// with resampling it is SMC bridge sampling. All of it is in the log domain; covariances
/// enter through Cholesky factors and triangular solves only.
///
/// ```
/// use diffsmc::prelude::*;
/// use diffsmc_sde::{Bridge, BridgeProposal, Ou};
///
/// let ou = Ou::new(1.0, 0.0, 0.5, 1)?;
/// let bridge = Bridge::new(&ou, &[0.3], &[-0.1], 0.5, 16, BridgeProposal::ModifiedDiffusionBridge)?;
/// let config = SmcConfig::new(512)?.with_trigger(Trigger::Never)?;
/// let out: SmcOutput<f64> = Smc::new(config).run(&bridge, &Systematic, 1)?;
/// let euler = ou.euler_log_transition(&[0.3], &[-0.1], 0.5, 16);
/// assert!((out.log_likelihood - euler).abs() < 0.01);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Bridge<'a, S, D: ?Sized> {
    sde: &'a D,
    d: usize,
    x_start: Vec<S>,
    x_end: Vec<S>,
    m: usize,
    delta: f64,
    proposal: BridgeProposal,
    /// The factor of `a` and `Σ ln L_ii`, when the diffusion is constant.
    chol: Option<(Vec<S>, S)>,
    lookahead: Lookahead,
    steps: Vec<StepConst>,
    /// `(d/2)(ln 2π + ln δ)`, the Euler density's normaliser without the determinant.
    euler_norm: f64,
}

impl<'a, S: Scalar, D: Sde<S> + ?Sized> Bridge<'a, S, D> {
    /// The bridge from `x_start` to `x_end` over a time `dt > 0` in `substeps ≥ 1` sub-steps.
    ///
    /// Errors: a non-positive or non-finite `dt`, `substeps = 0`, endpoints whose length is not
    /// the SDE's dimension or that are not finite, and (for a constant diffusion) a diffusion
    /// covariance that is not positive definite.
    pub fn new(
        sde: &'a D,
        x_start: &[f64],
        x_end: &[f64],
        dt: f64,
        substeps: usize,
        proposal: BridgeProposal,
    ) -> Result<Self> {
        let d = sde.dim();
        if d == 0 {
            return Err(SmcError::invalid("SDE dimension", d, "at least 1"));
        }
        if !(dt > 0.0 && dt.is_finite()) {
            return Err(SmcError::invalid(
                "interval length",
                dt,
                "a finite number > 0",
            ));
        }
        if substeps == 0 {
            return Err(SmcError::invalid("substeps", substeps, "at least 1"));
        }
        for (what, x) in [("bridge start", x_start), ("bridge end", x_end)] {
            if x.len() != d {
                return Err(SmcError::DimensionMismatch {
                    what,
                    expected: d,
                    got: x.len(),
                });
            }
            if let Some((j, v)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(SmcError::NonFinite {
                    what,
                    step: 0,
                    component: j,
                    value: *v,
                });
            }
        }
        let x_start: Vec<S> = x_start.iter().map(|&v| S::cst(v)).collect();
        let chol = if sde.is_diffusion_constant() {
            let mut l = vec![S::zero(); d * d];
            if !sde.diffusion_cholesky(&x_start, &mut l) {
                return Err(SmcError::NotPositiveDefinite {
                    what: "diffusion covariance σσᵀ",
                });
            }
            let h = half_log_det(&l, d);
            Some((l, h))
        } else {
            None
        };
        let delta = dt / substeps as f64;
        let half_d = 0.5 * d as f64;
        let steps = (0..substeps)
            .map(|k| {
                let left = (substeps - k) as f64;
                let c = match proposal {
                    BridgeProposal::ModifiedDiffusionBridge => delta * ((left - 1.0) / left),
                    BridgeProposal::DelyonHu => delta,
                };
                let rem = left * delta;
                StepConst {
                    frac: 1.0 / left,
                    sqrt_c: c.sqrt(),
                    inv_c: 1.0 / c,
                    log_ratio: half_d * (delta / c).ln(),
                    rem,
                    inv_rem: 1.0 / rem,
                    look_norm: half_d * (LN_2PI + rem.ln()),
                }
            })
            .collect();
        Ok(Bridge {
            sde,
            d,
            x_start,
            x_end: x_end.iter().map(|&v| S::cst(v)).collect(),
            m: substeps,
            delta,
            proposal,
            chol,
            lookahead: Lookahead::default(),
            steps,
            euler_norm: half_d * (LN_2PI + delta.ln()),
        })
    }

    /// Twists the potentials by a look-ahead `ψ_k` ([`Lookahead`]; default
    /// [`Lookahead::Brownian`]): the potential of sub-step `k` becomes
    /// `G_k ψ_{k+1}(x_{k+1}) / ψ_k(x_k)` (no `ψ_0` at the start, no `ψ_M` at the end), so the
    /// product over the path — the estimate — is unchanged, while the intermediate weights
    /// say how well each partial bridge can still reach `x_end`. That is what resampling (and
    /// the ESS trigger) should see; without a twist the intermediate weights mostly reward
    /// paths that wandered away from `x_end` (they are paid back at the end). Without
    /// resampling the choice changes nothing but rounding.
    pub fn with_lookahead(mut self, lookahead: Lookahead) -> Self {
        self.lookahead = lookahead;
        self
    }

    /// Number of sub-steps `M`.
    pub fn substeps(&self) -> usize {
        self.m
    }

    /// The sub-step length `δ`.
    pub fn delta(&self) -> f64 {
        self.delta
    }

    /// Fills `l` with the factor of `a(x)` (or borrows the constant one); `None` when `a(x)` is
    /// not positive definite.
    #[inline]
    fn factor<'b>(&'b self, x: &[S], l: &'b mut [S]) -> Option<&'b [S]> {
        match &self.chol {
            Some((c, _)) => Some(c),
            None => self.sde.diffusion_cholesky(x, l).then_some(&*l),
        }
    }

    /// `Σ ln L_ii` of a factor from [`Bridge::factor`].
    #[inline]
    fn half_log_det(&self, l: &[S]) -> S {
        match &self.chol {
            Some((_, h)) => *h,
            None => half_log_det(l, self.d),
        }
    }

    fn sample_step(&self, k: usize, x: &[S], rng: &mut StreamRng, out: &mut [S]) {
        if k + 1 >= self.m {
            out.copy_from_slice(&self.x_end);
            return;
        }
        let d = self.d;
        let st = self.steps[k];
        let lsize = if self.chol.is_some() { 0 } else { d * d };
        let mut xi_stack = [0.0_f64; STACK_DIM];
        let mut xi_heap = Vec::new();
        let xi: &mut [f64] = if d <= STACK_DIM {
            &mut xi_stack[..d]
        } else {
            xi_heap.resize(d, 0.0);
            &mut xi_heap
        };
        fill_standard_normal(rng, xi);
        with_scratch(2 * d + lsize, |buf: &mut [S]| {
            let (b, rest) = buf.split_at_mut(d);
            let (noise, lbuf) = rest.split_at_mut(d);
            let Some(l) = self.factor(x, lbuf) else {
                // A singular diffusion at x: stay put (the weight is zero anyway).
                out.copy_from_slice(x);
                return;
            };
            lower_mul_vec(l, d, xi, noise);
            let drift = self.proposal == BridgeProposal::DelyonHu;
            if drift {
                self.sde.drift(x, b);
            }
            for i in 0..d {
                let mut mean = x[i] + (self.x_end[i] - x[i]) * st.frac;
                if drift {
                    mean += b[i] * self.delta;
                }
                out[i] = mean + noise[i] * st.sqrt_c;
            }
        });
    }

    /// `log ψ_k(x)`: `log N(x_end; x [+ b(x) R_k], a(x) R_k)` over the remaining time
    /// `R_k = (M − k) δ`, from the drift `b` (read for [`Lookahead::Euler`] only) and factor `l`
    /// at `x` (`r` is scratch).
    #[inline]
    fn log_lookahead(&self, k: usize, x: &[S], b: &[S], l: &[S], r: &mut [S]) -> S {
        let d = self.d;
        let st = &self.steps[k];
        if self.lookahead == Lookahead::Euler {
            for i in 0..d {
                r[i] = self.x_end[i] - x[i] - b[i] * st.rem;
            }
        } else {
            for i in 0..d {
                r[i] = self.x_end[i] - x[i];
            }
        }
        let q = whitened_sq_norm(l, d, r);
        q * (-0.5 * st.inv_rem) - st.look_norm - self.half_log_det(l)
    }

    fn log_weight(&self, k: usize, x: &[S], y: &[S]) -> S {
        let d = self.d;
        let last = k + 1 >= self.m;
        let twisted = self.lookahead != Lookahead::Off && self.m > 1;
        if last && twisted && self.lookahead == Lookahead::Euler {
            // G_{M−1} / ψ_{M−1}(x): the Euler density at x_end over itself.
            return S::zero();
        }
        let lsize = if self.chol.is_some() { 0 } else { d * d };
        let w = with_scratch(2 * d + lsize, |buf: &mut [S]| {
            let (b, rest) = buf.split_at_mut(d);
            let (r, lbuf) = rest.split_at_mut(d);
            let Some(l) = self.factor(x, lbuf) else {
                return S::cst(f64::NEG_INFINITY);
            };
            self.sde.drift(x, b);
            let delta = self.delta;
            for i in 0..d {
                r[i] = y[i] - x[i] - b[i] * delta;
            }
            let qe = whitened_sq_norm(l, d, r);
            if last {
                // The point mass at x_end: the Euler density itself (over ψ_{M−1}(x)).
                let w = qe * (-0.5 / delta) - self.euler_norm - self.half_log_det(l);
                return if twisted {
                    w - self.log_lookahead(k, x, b, l, r)
                } else {
                    w
                };
            }
            let st = &self.steps[k];
            let drift = self.proposal == BridgeProposal::DelyonHu;
            for i in 0..d {
                let mut mean = x[i] + (self.x_end[i] - x[i]) * st.frac;
                if drift {
                    mean += b[i] * delta;
                }
                r[i] = y[i] - mean;
            }
            let qq = whitened_sq_norm(l, d, r);
            // log N(y; ·, a δ) − log N(y; ·, a c): the log-determinants of L cancel.
            let mut w = (qq * st.inv_c - qe * (1.0 / delta)) * 0.5 - st.log_ratio;
            if twisted {
                if k > 0 {
                    w -= self.log_lookahead(k, x, b, l, r);
                }
                if self.lookahead == Lookahead::Euler {
                    self.sde.drift(y, b);
                }
                let Some(ly) = self.factor(y, lbuf) else {
                    return S::cst(f64::NEG_INFINITY);
                };
                w += self.log_lookahead(k + 1, y, b, ly, r);
            }
            w
        });
        if w.re().is_nan() {
            S::cst(f64::NEG_INFINITY)
        } else {
            w
        }
    }
}

impl<S: Scalar, D: Sde<S> + ?Sized> FeynmanKac<S> for Bridge<'_, S, D> {
    fn dim(&self) -> usize {
        self.d
    }
    fn n_steps(&self) -> usize {
        self.m
    }
    fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
        self.sample_step(0, &self.x_start, rng, x)
    }
    fn log_potential_initial(&self, x: &[S]) -> S {
        self.log_weight(0, &self.x_start, x)
    }
    fn sample_transition(&self, t: usize, x_prev: &[S], rng: &mut StreamRng, x: &mut [S]) {
        self.sample_step(t, x_prev, rng, x)
    }
    fn log_potential(&self, t: usize, x_prev: &[S], x: &[S]) -> S {
        self.log_weight(t, x_prev, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Ou;
    use diffsmc::prelude::*;

    fn run(b: &Bridge<'_, f64, Ou<f64>>, n: usize, seed: u64) -> SmcOutput<f64> {
        let c = SmcConfig::new(n)
            .unwrap()
            .with_trigger(Trigger::Never)
            .unwrap();
        Smc::new(c).run(b, &Systematic, seed).unwrap()
    }

    /// Brownian motion (κ = 0) under the modified diffusion bridge: the proposal is the exact
    /// Brownian bridge of the Euler chain, so every path has the same weight — the estimate
    /// equals the Euler density (which is the exact one) for any seed and N, and ESS = N.
    #[test]
    fn brownian_motion_mdb_is_exact() {
        let bm = Ou::new(0.0, 0.0, 0.7, 2).unwrap();
        let (a, b, dt) = ([0.1, -0.4], [0.9, 0.2], 1.3);
        let exact = bm.exact_log_transition(&a, &b, dt);
        for m in [1, 2, 7, 32] {
            let br =
                Bridge::new(&bm, &a, &b, dt, m, BridgeProposal::ModifiedDiffusionBridge).unwrap();
            let out = run(&br, 16, m as u64);
            assert!((out.log_likelihood - exact).abs() < 1e-10, "M = {m}");
            assert!(out.ess.iter().all(|&e| (e - 16.0).abs() < 1e-9));
        }
    }

    #[test]
    fn last_substep_lands_on_the_end_point() {
        let ou = Ou::new(1.0, 0.0, 0.5, 1).unwrap();
        for p in [
            BridgeProposal::ModifiedDiffusionBridge,
            BridgeProposal::DelyonHu,
        ] {
            let br = Bridge::new(&ou, &[0.0], &[1.5], 0.4, 5, p).unwrap();
            let out = run(&br, 8, 3);
            assert!(out.particles.iter().all(|x| x[0] == 1.5));
            assert_eq!(out.log_likelihood_increments.len(), 5);
        }
    }

    #[test]
    fn invalid_bridges_are_errors() {
        let ou = Ou::new(1.0, 0.0, 0.5, 1).unwrap();
        let mdb = BridgeProposal::ModifiedDiffusionBridge;
        assert!(Bridge::new(&ou, &[0.0], &[1.0], 0.5, 0, mdb).is_err());
        assert!(Bridge::new(&ou, &[0.0], &[1.0], 0.0, 4, mdb).is_err());
        assert!(Bridge::new(&ou, &[0.0], &[1.0], f64::NAN, 4, mdb).is_err());
        assert!(Bridge::new(&ou, &[0.0, 1.0], &[1.0], 0.5, 4, mdb).is_err());
        assert!(Bridge::new(&ou, &[f64::NAN], &[1.0], 0.5, 4, mdb).is_err());
        assert_eq!(
            "guided".parse::<BridgeProposal>().unwrap(),
            BridgeProposal::DelyonHu
        );
        assert_eq!("mdb".parse::<BridgeProposal>().unwrap().to_string(), "mdb");
        assert!("euler".parse::<BridgeProposal>().is_err());
    }
}
