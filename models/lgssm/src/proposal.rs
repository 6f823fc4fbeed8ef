//! The locally optimal proposal and the exact look-ahead of the linear Gaussian model.
//!
//! For `z_t = A z_{t-1} + N(0, Q)`, `y_t = H z_t + N(0, R)`, with `o` the observed components
//! of `y_t` (NaN components are missing and are not conditioned on):
//!
//! ```text
//! p(x_t | x_{t-1}, y_t) = N(x_t; A x_{t-1} + K (y_o − H_o A x_{t-1}), Σ),
//!     S = H_o Q H_oᵀ + R_oo,   K = Q H_oᵀ S⁻¹,   Σ = (I − K H_o) Q (I − K H_o)ᵀ + K R_oo Kᵀ,
//! p(x_0 | y_0)          = the same with m0, P0 in place of A x_{t-1}, Q,
//! p(y_t | x_{t-1})      = N(y_o; H_o A x_{t-1}, S).
//! ```
//!
//! `K`, `Σ` and `S` do not depend on the state: they are computed once per pattern of observed
//! components (Joseph form for `Σ`, Cholesky factors through `diffsmc::linalg`), and per
//! particle only a mean and a triangular solve remain. Everything is generic over the scalar,
//! so derivatives in the model's parameters flow through the proposal and the look-ahead.
//! With this proposal the guided potential `p(y|x) p(x|x') / q(x|x')` equals `p(y_t | x_{t-1})`
//! whatever `x_t` is, and the auxiliary filter with this look-ahead is fully adapted.

use diffsmc::filter::{LookAhead, Proposal};
use diffsmc::kalman::condition;
use diffsmc::linalg::{cholesky_named, log_det_from_cholesky, mat_vec, matmul};
use diffsmc::rng::StreamRng;
use diffsmc::{Result, Scalar};

use crate::{LN_2PI, LgssmData, add_correlated_noise, gaussian_log_density_chol};

/// Vectors of at most this length live on the stack in the per-particle code.
const SCRATCH: usize = 32;

/// Runs `f` on a zeroed scratch slice of length `n` (on the stack when small).
#[inline]
fn with_scratch<S: Scalar, R>(n: usize, f: impl FnOnce(&mut [S]) -> R) -> R {
    if n <= SCRATCH {
        let mut b = [S::zero(); SCRATCH];
        f(&mut b[..n])
    } else {
        f(&mut vec![S::zero(); n])
    }
}

/// Per pattern of observed components: what the optimal proposal needs at `t ≥ 1`.
#[derive(Debug, Clone)]
struct ProposalPattern<S> {
    observed: Vec<usize>,
    /// `H_o` (`k × dx`).
    h: Vec<S>,
    /// `K` (`dx × k`).
    gain: Vec<S>,
    /// Cholesky factor of `Σ`.
    chol: Vec<S>,
}

/// The locally optimal proposal `p(x_t | x_{t-1}, y_t)` (and `p(x_0 | y_0)`) of an
/// [`LgssmData`], in closed form (see the module docs): a [`Proposal`] for
/// [`diffsmc::Guided`]. Missing components of `y_t` (NaN) are not conditioned on; a fully
/// missing `y_t` gives the transition itself.
///
/// ```
/// use diffsmc::prelude::*;
/// use diffsmc::Guided;
/// use diffsmc_lgssm::Lgssm;
///
/// let model = Lgssm::paper(0.5, 1.0, 1)?;
/// let (_, ys) = model.simulate(30, 4);
/// let data = model.with_data(ys)?;
/// let guided = Guided::new(&data, data.optimal_proposal()?)?;
/// let out: SmcOutput<f64> = Smc::new(SmcConfig::new(64)?).run(&guided, &Systematic, 1)?;
/// assert!((out.log_likelihood - data.kalman()?.log_likelihood).abs() < 0.5);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone)]
pub struct OptimalProposal<S: Scalar> {
    dx: usize,
    ys: Vec<Vec<f64>>,
    a: Vec<S>,
    step_pattern: Vec<usize>,
    patterns: Vec<ProposalPattern<S>>,
    /// Mean and Cholesky factor of `p(x_0 | y_0)`.
    mean0: Vec<S>,
    chol0: Vec<S>,
}

impl<S: Scalar> OptimalProposal<S> {
    /// The proposal for `data` (see [`LgssmData::optimal_proposal`]).
    pub fn new(data: &LgssmData<S>) -> Result<Self> {
        let lg = data.model.linear_gaussian();
        let dx = lg.state_dim();
        let q = lg.q_row_major();
        let mut patterns = Vec::with_capacity(data.patterns.len());
        for p in &data.patterns {
            let (ho, ro) = lg.observed_blocks(&p.observed);
            let c = condition(q, &ho, &ro, dx, p.observed.len())?;
            patterns.push(ProposalPattern {
                observed: p.observed.clone(),
                h: ho,
                chol: cholesky_named(&c.cov, dx, "optimal proposal covariance")?,
                gain: c.gain,
            });
        }
        let (mean0, chol0) = match data.ys.first() {
            Some(y0) => {
                let pat = &patterns[data.step_pattern[0]];
                let (ho, ro) = lg.observed_blocks(&pat.observed);
                let k = pat.observed.len();
                let c = condition(lg.p0_row_major(), &ho, &ro, dx, k)?;
                let m0 = lg.m0_slice();
                let mut hm = vec![S::zero(); k];
                mat_vec(&ho, k, dx, m0, &mut hm);
                let v: Vec<S> = pat
                    .observed
                    .iter()
                    .zip(&hm)
                    .map(|(&o, &h)| S::cst(y0[o]) - h)
                    .collect();
                let mut mean = m0.to_vec();
                c.update_mean(&v, &mut mean);
                let chol = cholesky_named(&c.cov, dx, "optimal initial proposal covariance")?;
                (mean, chol)
            }
            None => (lg.m0_slice().to_vec(), lg.chol_p0().to_vec()),
        };
        Ok(OptimalProposal {
            dx,
            ys: data.ys.clone(),
            a: lg.a_row_major().to_vec(),
            step_pattern: data.step_pattern.clone(),
            patterns,
            mean0,
            chol0,
        })
    }

    /// The mean `A x_prev + K (y_o − H_o A x_prev)` of `p(x_t | x_prev, y_t)` into `out`.
    fn mean(&self, t: usize, x_prev: &[S], out: &mut [S]) {
        let dx = self.dx;
        mat_vec(&self.a, dx, dx, x_prev, out);
        let p = &self.patterns[self.step_pattern[t]];
        let k = p.observed.len();
        if k == 0 {
            return;
        }
        let y = &self.ys[t];
        with_scratch(k, |r: &mut [S]| {
            mat_vec(&p.h, k, dx, out, r);
            for (ri, &o) in r.iter_mut().zip(&p.observed) {
                *ri = S::cst(y[o]) - *ri;
            }
            for a in 0..dx {
                out[a] += p.gain[a * k..(a + 1) * k]
                    .iter()
                    .zip(r.iter())
                    .fold(S::zero(), |acc, (&g, &v)| acc + g * v);
            }
        });
    }

    /// The mean of `p(x_0 | y_0)`.
    pub fn initial_mean(&self) -> &[S] {
        &self.mean0
    }
    /// The lower Cholesky factor (row-major) of the covariance of `p(x_0 | y_0)`.
    pub fn initial_chol(&self) -> &[S] {
        &self.chol0
    }
    /// The lower Cholesky factor (row-major) of the covariance of `p(x_t | x_{t-1}, y_t)`
    /// (`t ≥ 1`; it does not depend on `x_{t-1}`).
    ///
    /// # Panics
    /// If `t` is not a step of the data.
    pub fn chol(&self, t: usize) -> &[S] {
        &self.patterns[self.step_pattern[t]].chol
    }
    /// The mean of `p(x_t | x_prev, y_t)` (`t ≥ 1`).
    ///
    /// # Panics
    /// If `t` is not a step of the data or `x_prev` is shorter than the state.
    pub fn mean_at(&self, t: usize, x_prev: &[S]) -> Vec<S> {
        let mut m = vec![S::zero(); self.dx];
        self.mean(t, x_prev, &mut m);
        m
    }
}

impl<S: Scalar> Proposal<S> for OptimalProposal<S> {
    fn dim(&self) -> usize {
        self.dx
    }
    /// `x = m_{0|0} + L ξ`.
    fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
        x[..self.dx].copy_from_slice(&self.mean0);
        add_correlated_noise(&self.chol0, self.dx, rng, x);
    }
    fn initial_log_density(&self, x: &[S]) -> S {
        let dx = self.dx;
        with_scratch(dx, |r: &mut [S]| {
            for a in 0..dx {
                r[a] = x[a] - self.mean0[a];
            }
            gaussian_log_density_chol(&self.chol0, dx, r)
        })
    }
    /// `x = A x_prev + K (y_o − H_o A x_prev) + L_Σ ξ`.
    fn sample(&self, t: usize, x_prev: &[S], rng: &mut StreamRng, x: &mut [S]) {
        self.mean(t, x_prev, x);
        add_correlated_noise(self.chol(t), self.dx, rng, x);
    }
    fn log_density(&self, t: usize, x_prev: &[S], x: &[S]) -> S {
        let dx = self.dx;
        with_scratch(dx, |r: &mut [S]| {
            self.mean(t, x_prev, r);
            for a in 0..dx {
                r[a] = x[a] - r[a];
            }
            gaussian_log_density_chol(self.chol(t), dx, r)
        })
    }
}

/// Per pattern: `H_o A` (`k × dx`), the Cholesky factor of `S = H_o Q H_oᵀ + R_o` and the
/// normalising constant `−(log det S + k ln 2π)/2`.
#[derive(Debug, Clone)]
struct LookPattern<S> {
    observed: Vec<usize>,
    ha: Vec<S>,
    chol: Vec<S>,
    log_norm: S,
}

/// The exact look-ahead `η_t(x_{t-1}) = p(y_t | x_{t-1}) = N(y_o; H_o A x_{t-1}, H_o Q H_oᵀ +
/// R_o)` of an [`LgssmData`] (observed components only; 0 when `y_t` is fully missing): a
/// [`LookAhead`] for [`diffsmc::Auxiliary`]. With the [`OptimalProposal`] it makes the
/// auxiliary particle filter fully adapted.
///
/// ```
/// use diffsmc::prelude::*;
/// use diffsmc::{Auxiliary, Guided};
/// use diffsmc_lgssm::Lgssm;
///
/// let model = Lgssm::paper(0.5, 1.0, 1)?;
/// let (_, ys) = model.simulate(30, 4);
/// let data = model.with_data(ys)?;
/// let apf = Auxiliary::new(Guided::new(&data, data.optimal_proposal()?)?, data.exact_look_ahead()?)?;
/// let out: SmcOutput<f64> = Smc::new(SmcConfig::new(64)?).run(&apf, &Systematic, 1)?;
/// assert!((out.log_likelihood - data.kalman()?.log_likelihood).abs() < 0.5);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ExactLookAhead<S: Scalar> {
    dx: usize,
    ys: Vec<Vec<f64>>,
    step_pattern: Vec<usize>,
    patterns: Vec<LookPattern<S>>,
}

impl<S: Scalar> ExactLookAhead<S> {
    /// The look-ahead for `data` (see [`LgssmData::exact_look_ahead`]).
    pub fn new(data: &LgssmData<S>) -> Result<Self> {
        let lg = data.model.linear_gaussian();
        let dx = lg.state_dim();
        let q = lg.q_row_major();
        let mut patterns = Vec::with_capacity(data.patterns.len());
        for p in &data.patterns {
            let k = p.observed.len();
            let (ho, ro) = lg.observed_blocks(&p.observed);
            let c = condition(q, &ho, &ro, dx, k)?;
            let log_norm = if k == 0 {
                S::zero()
            } else {
                (log_det_from_cholesky(&c.chol_innovation, k) + LN_2PI * k as f64) * -0.5
            };
            patterns.push(LookPattern {
                observed: p.observed.clone(),
                ha: matmul(&ho, lg.a_row_major(), k, dx, dx),
                chol: c.chol_innovation,
                log_norm,
            });
        }
        Ok(ExactLookAhead {
            dx,
            ys: data.ys.clone(),
            step_pattern: data.step_pattern.clone(),
            patterns,
        })
    }
}

impl<S: Scalar> LookAhead<S> for ExactLookAhead<S> {
    fn log_look_ahead(&self, t: usize, x_prev: &[S]) -> S {
        let p = &self.patterns[self.step_pattern[t]];
        let k = p.observed.len();
        if k == 0 {
            return S::zero();
        }
        let y = &self.ys[t];
        with_scratch(k, |r: &mut [S]| {
            mat_vec(&p.ha, k, self.dx, x_prev, r);
            for (ri, &o) in r.iter_mut().zip(&p.observed) {
                *ri = S::cst(y[o]) - *ri;
            }
            diffsmc::linalg::solve_lower(&p.chol, k, r);
            let quad = r.iter().fold(S::zero(), |acc, &v| acc + v * v);
            p.log_norm - quad * 0.5
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Lgssm;
    use diffsmc::StateSpaceModel;
    use diffsmc::rng::{Purpose, StreamKey, standard_normal};
    use nalgebra::{DMatrix, DVector};
    use num_dual::{Dual64, DualStruct};

    fn ln_normal(x: f64, m: f64, v: f64) -> f64 {
        -0.5 * (std::f64::consts::TAU * v).ln() - (x - m) * (x - m) / (2.0 * v)
    }

    /// Scalar model: mean, variance and densities against the textbook formulas
    /// `S = θ2² + 0.5`, `K = θ2 / S`, `Σ = 0.5 / S` (round-off tolerance 1e-12).
    #[test]
    fn scalar_optimal_proposal_matches_closed_form() {
        let (t1, t2) = (0.7, 1.3);
        let data = Lgssm::<f64>::paper(t1, t2, 1)
            .unwrap()
            .with_data(vec![vec![0.4], vec![-0.9]])
            .unwrap();
        let q = data.optimal_proposal().unwrap();
        let s = t2 * t2 + 0.5;
        let (k, var) = (t2 / s, 0.5 / s);
        let xp = 0.8;
        let mean = t1 * xp + k * (-0.9 - t2 * t1 * xp);
        assert!((q.mean_at(1, &[xp])[0] - mean).abs() < 1e-12);
        assert!((q.chol(1)[0].powi(2) - var).abs() < 1e-12);
        let x = 0.1;
        assert!(
            (Proposal::<f64>::log_density(&q, 1, &[xp], &[x]) - ln_normal(x, mean, var)).abs()
                < 1e-12
        );
        // t = 0: prior N(0, 1).
        let (s0, m0) = (t2 * t2 + 0.5, t2 * 0.4 / (t2 * t2 + 0.5));
        assert!((q.initial_mean()[0] - m0).abs() < 1e-12);
        assert!(
            (Proposal::<f64>::initial_log_density(&q, &[x]) - ln_normal(x, m0, 0.5 / s0)).abs()
                < 1e-12
        );
        // Look-ahead: N(y_1; θ2 θ1 x', θ2² + 0.5).
        let eta = data.exact_look_ahead().unwrap();
        let e: f64 = eta.log_look_ahead(1, &[xp]);
        assert!((e - ln_normal(-0.9, t2 * t1 * xp, s)).abs() < 1e-12);
    }

    /// A 2-d model with correlated `Q` and `R` and a non-diagonal `H`, with a partially and a
    /// fully missing observation: for the optimal proposal the guided potential
    /// `log p(y|x) + log p(x|x') − log q(x|x')` does not depend on `x` and equals the
    /// look-ahead `log p(y_t | x')`, and `G_0 = log p(y_0)` (the Kalman filter's first
    /// increment). Both hold only if `q` is the exact conditional; round-off tolerance 1e-10.
    #[test]
    fn guided_potential_is_the_predictive_likelihood() {
        let a = DMatrix::from_row_slice(2, 2, &[0.9, 0.2, -0.1, 0.7]);
        let q = DMatrix::from_row_slice(2, 2, &[1.0, 0.3, 0.3, 0.6]);
        let h = DMatrix::from_row_slice(2, 2, &[1.0, 0.5, 0.0, 1.0]);
        let r = DMatrix::from_row_slice(2, 2, &[0.5, 0.1, 0.1, 0.4]);
        let p0 = DMatrix::from_row_slice(2, 2, &[2.0, 0.4, 0.4, 1.0]);
        let m = Lgssm::new(a, q, h, r, DVector::from_vec(vec![0.3, -0.2]), p0).unwrap();
        let ys = vec![
            vec![0.5, f64::NAN],
            vec![1.0, -0.4],
            vec![f64::NAN, 0.7],
            vec![f64::NAN, f64::NAN],
        ];
        let data = m.with_data(ys.clone()).unwrap();
        let prop = data.optimal_proposal().unwrap();
        let eta = data.exact_look_ahead().unwrap();
        let key = StreamKey::new(1, 0, Purpose::Other(7));
        for i in 0..20 {
            let mut rng = key.rng(i);
            let xp = [standard_normal(&mut rng), standard_normal(&mut rng)];
            let x = [standard_normal(&mut rng) * 2.0, standard_normal(&mut rng)];
            let g0: f64 = data.observation_log_density(0, &x)
                + data.initial_log_density(&x).unwrap()
                - prop.initial_log_density(&x);
            let ll0 = data.kalman().unwrap().log_likelihood_increments[0];
            assert!((g0 - ll0).abs() < 1e-10, "t = 0: {g0} vs {ll0}");
            for t in 1..ys.len() {
                let g: f64 = data.observation_log_density(t, &x)
                    + data.transition_log_density(t, &xp, &x).unwrap()
                    - prop.log_density(t, &xp, &x);
                let e = eta.log_look_ahead(t, &xp);
                assert!((g - e).abs() < 1e-10, "t = {t}: {g} vs {e}");
            }
        }
    }

    /// The proposal's sampler draws from its density: over 20 000 draws the sample mean and
    /// variance of a scalar step agree with the closed form within 5 standard errors.
    #[test]
    fn sampler_matches_density() {
        let data = Lgssm::<f64>::paper(0.5, 1.0, 1)
            .unwrap()
            .with_data(vec![vec![0.2], vec![1.5]])
            .unwrap();
        let q = data.optimal_proposal().unwrap();
        let key = StreamKey::new(3, 1, Purpose::Other(1));
        let n = 20_000;
        let draws: Vec<f64> = (0..n)
            .map(|i| {
                let mut x = [0.0];
                Proposal::<f64>::sample(&q, 1, &[0.4], &mut key.rng(i), &mut x);
                x[0]
            })
            .collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let (m, v) = (q.mean_at(1, &[0.4])[0], q.chol(1)[0].powi(2));
        let se_m = (v / n as f64).sqrt();
        let se_v = v * (2.0 / (n - 1) as f64).sqrt();
        assert!((mean - m).abs() < 5.0 * se_m, "{mean} vs {m}");
        assert!((var - v).abs() < 5.0 * se_v, "{var} vs {v}");
    }

    /// Derivatives flow through the proposal: d/dθ1 of the look-ahead on dual numbers equals
    /// a central finite difference (h = 1e-6, truncation O(h²), tolerance 1e-7).
    #[test]
    fn look_ahead_is_differentiable() {
        let ys = vec![vec![0.1], vec![0.8]];
        let f = |t1: f64| -> f64 {
            let d = Lgssm::paper(t1, 1.0, 1)
                .unwrap()
                .with_data(ys.clone())
                .unwrap();
            d.exact_look_ahead().unwrap().log_look_ahead(1, &[0.6])
        };
        let d = Lgssm::paper(Dual64::new(0.5, 1.0), Dual64::from(1.0), 1)
            .unwrap()
            .with_data(ys.clone())
            .unwrap();
        let v: Dual64 = d
            .exact_look_ahead()
            .unwrap()
            .log_look_ahead(1, &[Dual64::from(0.6)]);
        let fd = (f(0.5 + 1e-6) - f(0.5 - 1e-6)) / 2e-6;
        assert!((v.re() - f(0.5)).abs() < 1e-14);
        assert!((v.eps - fd).abs() < 1e-7, "{} vs {fd}", v.eps);
    }
}
