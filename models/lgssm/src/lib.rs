//! # diffsmc-lgssm: linear Gaussian state-space models
//!
//! ```text
//! z_0 ~ N(m0, P0),   z_t = A z_{t-1} + N(0, Q)  (t ≥ 1),   y_t = H z_t + N(0, R)  (t ≥ 0)
//! ```
//!
//! - [`Lgssm`]: the model, generic over the [`Scalar`], any state and observation
//!   dimensions, validated at construction; [`Lgssm::paper`] is the paper's preset
//!   (`A = θ1 I`, `H = θ2 I`, `Q = I`, `R = 0.5 I`, `m0 = 0`, `P0 = I`).
//! - [`Lgssm::simulate`]: a seeded simulator (counter-based streams, `Purpose::Simulate`).
//! - [`LgssmData`]: the model with its observations; it implements
//!   [`StateSpaceModel`], so `Bootstrap(data)` is the bootstrap particle filter, and
//!   [`LgssmData::kalman`] is the exact reference on the same data.
//!
//! Written only against the public API of `diffsmc`.
//!
//! ```
//! use diffsmc::prelude::*;
//! use diffsmc_lgssm::Lgssm;
//!
//! let model = Lgssm::paper(0.5, 1.0, 1)?;
//! let (_xs, ys) = model.simulate(50, 1);
//! let data = model.with_data(ys)?;
//! let exact = data.kalman()?.log_likelihood;
//! let pf: SmcOutput<f64> = Smc::new(SmcConfig::new(512)?).run(&Bootstrap(&data), &Systematic, 3)?;
//! assert!((pf.log_likelihood - exact).abs() < 2.0);
//! # Ok::<(), diffsmc::SmcError>(())
//! ```

mod params;
mod proposal;
pub use params::{GeneralParams, PaperParams};
pub use proposal::{ExactLookAhead, OptimalProposal};

use std::collections::BTreeMap;

use diffsmc::kalman::{KalmanOutput, LinearGaussian, RtsOutput, check_observation};
use diffsmc::linalg::{cholesky_named, log_det_from_cholesky, solve_lower};
use diffsmc::rng::{Purpose, StreamKey, StreamRng, standard_normal};
use diffsmc::{Result, Scalar, SmcError, StateSpaceModel};
use nalgebra::{DMatrix, DVector};

/// `ln(2π)`.
const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// Observations of at most this many components are whitened in a stack buffer.
const STACK_DIM: usize = 16;

/// A linear Gaussian state-space model with parameters of scalar type `S` (`f64`, or dual
/// numbers for gradients). Constructed with validation (shapes, finite entries, symmetric
/// positive definite `Q`, `R`, `P0`); the Cholesky factors are computed once.
///
/// ```
/// use diffsmc_lgssm::Lgssm;
/// use nalgebra::{DMatrix, DVector};
///
/// // A 2-d constant-velocity model observed in position only.
/// let a = DMatrix::from_row_slice(2, 2, &[1.0, 1.0, 0.0, 1.0]);
/// let q = DMatrix::from_row_slice(2, 2, &[0.25, 0.5, 0.5, 1.0]) * 0.1 + DMatrix::identity(2, 2) * 1e-3;
/// let h = DMatrix::from_row_slice(1, 2, &[1.0, 0.0]);
/// let r = DMatrix::from_element(1, 1, 0.5);
/// let m = Lgssm::new(a, q, h, r, DVector::zeros(2), DMatrix::identity(2, 2))?;
/// assert_eq!((m.state_dim(), m.obs_dim()), (2, 1));
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Lgssm<S: Scalar> {
    lg: LinearGaussian<S>,
}

impl<S: Scalar> Lgssm<S> {
    /// The model `z_t = A z_{t-1} + N(0, Q)`, `y_t = H z_t + N(0, R)`, `z_0 ~ N(m0, P0)`;
    /// `a`, `q`, `p0` are `dx × dx`, `h` is `dy × dx`, `r` is `dy × dy`, `m0` has length
    /// `dx`.
    ///
    /// Errors (from [`LinearGaussian::new`]): [`SmcError::DimensionMismatch`],
    /// [`SmcError::InvalidParameter`] (non-finite entries, non-symmetric covariance),
    /// [`SmcError::NotPositiveDefinite`] (`"Q"`, `"R"`, `"P0"`).
    ///
    /// ```
    /// use diffsmc::SmcError;
    /// use diffsmc_lgssm::Lgssm;
    /// use nalgebra::{DMatrix, DVector};
    /// let i = DMatrix::<f64>::identity(2, 2);
    /// let err = Lgssm::new(i.clone(), i.clone(), i.clone(), i.clone() * -1.0, DVector::zeros(2), i);
    /// assert_eq!(err.unwrap_err(), SmcError::NotPositiveDefinite { what: "R" });
    /// ```
    pub fn new(
        a: DMatrix<S>,
        q: DMatrix<S>,
        h: DMatrix<S>,
        r: DMatrix<S>,
        m0: DVector<S>,
        p0: DMatrix<S>,
    ) -> Result<Self> {
        Ok(Lgssm {
            lg: LinearGaussian::new(a, q, h, r, m0, p0)?,
        })
    }

    /// The paper's model in dimension `d` (states and observations): `A = θ1 I`,
    /// `H = θ2 I`, `Q = I`, `R = 0.5 I`, `m0 = 0`, `P0 = I`. The reference point is
    /// `θ = (0.5, 1.0)`.
    ///
    /// Errors: [`SmcError::InvalidParameter`] for `d = 0` or a non-finite `θ`.
    ///
    /// ```
    /// use diffsmc_lgssm::Lgssm;
    /// use num_dual::Dual64;
    /// let m = Lgssm::paper(0.5, 1.0, 3)?;
    /// assert_eq!(m.a()[(1, 1)], 0.5);
    /// // Dual parameters: derivatives with respect to θ1.
    /// let md = Lgssm::paper(Dual64::new(0.5, 1.0), Dual64::from(1.0), 1)?;
    /// assert_eq!(md.a()[(0, 0)].eps, 1.0);
    /// assert!(Lgssm::paper(0.5, 1.0, 0).is_err());
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn paper(theta1: S, theta2: S, d: usize) -> Result<Self> {
        if d == 0 {
            return Err(SmcError::invalid("dimension d", d, "at least 1"));
        }
        let diag = |v: S| DMatrix::from_fn(d, d, |i, j| if i == j { v } else { S::zero() });
        Self::new(
            diag(theta1),
            diag(S::one()),
            diag(theta2),
            diag(S::cst(0.5)),
            DVector::from_element(d, S::zero()),
            diag(S::one()),
        )
    }

    /// State dimension `dx`.
    pub fn state_dim(&self) -> usize {
        self.lg.state_dim()
    }
    /// Observation dimension `dy`.
    pub fn obs_dim(&self) -> usize {
        self.lg.obs_dim()
    }
    /// Transition matrix `A`.
    pub fn a(&self) -> &DMatrix<S> {
        self.lg.a()
    }
    /// Transition noise covariance `Q`.
    pub fn q(&self) -> &DMatrix<S> {
        self.lg.q()
    }
    /// Observation matrix `H`.
    pub fn h(&self) -> &DMatrix<S> {
        self.lg.h()
    }
    /// Observation noise covariance `R`.
    pub fn r(&self) -> &DMatrix<S> {
        self.lg.r()
    }
    /// Initial mean `m0`.
    pub fn m0(&self) -> &DVector<S> {
        self.lg.m0()
    }
    /// Initial covariance `P0`.
    pub fn p0(&self) -> &DMatrix<S> {
        self.lg.p0()
    }
    /// The engine's Kalman representation of this model.
    pub fn linear_gaussian(&self) -> &LinearGaussian<S> {
        &self.lg
    }

    /// Simulates `steps` states and observations `(xs, ys)` (each a `Vec` of length
    /// `steps`, of vectors of length `dx` and `dy`) from the model at the value part of its
    /// parameters. Step `t` draws its state noise from stream 0 and its observation noise
    /// from stream 1 of `StreamKey::new(seed, t, Purpose::Simulate)`, so a seed fixes the
    /// data bit for bit.
    ///
    /// ```
    /// use diffsmc_lgssm::Lgssm;
    /// let m = Lgssm::paper(0.5, 1.0, 2)?;
    /// let (xs, ys) = m.simulate(10, 42);
    /// assert_eq!((xs.len(), ys.len(), xs[0].len(), ys[9].len()), (10, 10, 2, 2));
    /// assert_eq!(m.simulate(10, 42).1, ys);
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn simulate(&self, steps: usize, seed: u64) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        let (dx, dy) = (self.state_dim(), self.obs_dim());
        let re = |v: &[S]| v.iter().map(|x| x.re()).collect::<Vec<f64>>();
        let a = re(self.lg.a_row_major());
        let h = re(self.lg.h_row_major());
        let m0 = re(self.lg.m0_slice());
        let lq = re(self.lg.chol_q());
        let lr = re(self.lg.chol_r());
        let lp0 = re(self.lg.chol_p0());
        let mut xs: Vec<Vec<f64>> = Vec::with_capacity(steps);
        let mut ys = Vec::with_capacity(steps);
        for t in 0..steps {
            let key = StreamKey::new(seed, t, Purpose::Simulate);
            let mut x = vec![0.0; dx];
            let mut rng = key.rng(0);
            if t == 0 {
                x.copy_from_slice(&m0);
                add_correlated_noise(&lp0, dx, &mut rng, &mut x);
            } else {
                let xp = &xs[t - 1];
                for i in 0..dx {
                    x[i] = (0..dx).map(|j| a[i * dx + j] * xp[j]).sum();
                }
                add_correlated_noise(&lq, dx, &mut rng, &mut x);
            }
            let mut y: Vec<f64> = (0..dy)
                .map(|i| (0..dx).map(|j| h[i * dx + j] * x[j]).sum())
                .collect();
            add_correlated_noise(&lr, dy, &mut key.rng(1), &mut y);
            xs.push(x);
            ys.push(y);
        }
        (xs, ys)
    }

    /// The model together with observations `ys` (`T` vectors of length `dy`; NaN
    /// components are missing). See [`LgssmData::new`].
    ///
    /// ```
    /// use diffsmc_lgssm::Lgssm;
    /// let data = Lgssm::paper(0.5, 1.0, 1)?.with_data(vec![vec![0.3], vec![f64::NAN]])?;
    /// assert_eq!(data.len(), 2);
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn with_data(self, ys: Vec<Vec<f64>>) -> Result<LgssmData<S>> {
        LgssmData::new(self, ys)
    }

    /// The exact Kalman filter on `ys` (see [`LinearGaussian::filter`]).
    ///
    /// ```
    /// use diffsmc_lgssm::Lgssm;
    /// let out = Lgssm::paper(0.5, 1.0, 1)?.kalman(&[[0.3], [0.1]])?;
    /// assert!(out.log_likelihood < 0.0);
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn kalman<Y: AsRef<[f64]>>(&self, ys: &[Y]) -> Result<KalmanOutput<S>> {
        self.lg.filter(ys)
    }
}

/// `x += L ξ` with `ξ ~ N(0, I)` drawn coordinate by coordinate (no buffer): `L` lower
/// triangular row-major, `S`-valued, the noise `f64` (reparameterised).
#[inline]
fn add_correlated_noise<S: Scalar>(l: &[S], d: usize, rng: &mut StreamRng, x: &mut [S]) {
    for j in 0..d {
        let xi = standard_normal(rng);
        for i in j..d {
            x[i] += l[i * d + j] * xi;
        }
    }
}

/// The observation density restricted to one pattern of observed components.
#[derive(Debug, Clone)]
struct ObsPattern<S> {
    /// Indices of the observed components.
    observed: Vec<usize>,
    /// The observed rows of `H` (`k × dx`, row-major).
    h: Vec<S>,
    /// The lower Cholesky factor of the observed block of `R` (`k × k`).
    chol: Vec<S>,
    /// `-(log det R_o + k ln 2π) / 2`.
    log_norm: S,
}

/// An [`Lgssm`] with observations: a [`StateSpaceModel`] (so `Bootstrap(data)` is the
/// bootstrap particle filter) and the exact Kalman reference on the same data.
///
/// The observation log-density `log N(y_t; H x, R)` is evaluated through the Cholesky factor
/// of `R`; a partially missing `y_t` uses the observed rows of `H` and the observed block of
/// `R` (factorised once per distinct pattern), a fully missing one contributes 0.
///
/// ```
/// use diffsmc::prelude::*;
/// use diffsmc_lgssm::Lgssm;
///
/// let model = Lgssm::paper(0.5, 1.0, 2)?;
/// let (_, mut ys) = model.simulate(20, 7);
/// ys[3][1] = f64::NAN; // a missing component
/// let data = model.with_data(ys)?;
/// let config = SmcConfig::new(256)?.with_filter_moments(true);
/// let pf: SmcOutput<f64> = Smc::new(config).run(&Bootstrap(&data), &Systematic, 1)?;
/// let kf = data.kalman()?;
/// assert!((pf.log_likelihood - kf.log_likelihood).abs() < 3.0);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone)]
pub struct LgssmData<S: Scalar> {
    model: Lgssm<S>,
    ys: Vec<Vec<f64>>,
    /// Per step: index into `patterns`.
    step_pattern: Vec<usize>,
    patterns: Vec<ObsPattern<S>>,
}

impl<S: Scalar> LgssmData<S> {
    /// Attaches observations to `model`.
    ///
    /// Errors: [`SmcError::DimensionMismatch`] (`"observation length"`) when some `y_t` does
    /// not have `dy` components; [`SmcError::NonFinite`] (`what: "observation"`, with step
    /// and component) for a `±inf` component. NaN components are missing.
    ///
    /// ```
    /// use diffsmc::SmcError;
    /// use diffsmc_lgssm::{Lgssm, LgssmData};
    /// let m = Lgssm::paper(0.5, 1.0, 1)?;
    /// let err = LgssmData::new(m, vec![vec![0.0], vec![f64::INFINITY]]).unwrap_err();
    /// assert_eq!(
    ///     err,
    ///     SmcError::NonFinite { what: "observation", step: 1, component: 0, value: f64::INFINITY }
    /// );
    /// # Ok::<(), SmcError>(())
    /// ```
    pub fn new(model: Lgssm<S>, ys: Vec<Vec<f64>>) -> Result<Self> {
        let dy = model.obs_dim();
        let mut index: BTreeMap<Vec<usize>, usize> = BTreeMap::new();
        let mut patterns = Vec::new();
        let mut step_pattern = Vec::with_capacity(ys.len());
        for (t, y) in ys.iter().enumerate() {
            check_observation(y, dy, t)?;
            let observed: Vec<usize> = (0..dy).filter(|&i| !y[i].is_nan()).collect();
            let p = match index.get(&observed) {
                Some(&p) => p,
                None => {
                    let k = observed.len();
                    let (ho, ro) = model.lg.observed_blocks(&observed);
                    // A principal block of a positive definite R is positive definite.
                    let chol = cholesky_named(&ro, k, "R")?;
                    let log_norm = (log_det_from_cholesky(&chol, k) + LN_2PI * k as f64) * -0.5;
                    patterns.push(ObsPattern {
                        observed: observed.clone(),
                        h: ho,
                        chol,
                        log_norm,
                    });
                    index.insert(observed, patterns.len() - 1);
                    patterns.len() - 1
                }
            };
            step_pattern.push(p);
        }
        Ok(LgssmData {
            model,
            ys,
            step_pattern,
            patterns,
        })
    }

    /// The model.
    pub fn model(&self) -> &Lgssm<S> {
        &self.model
    }
    /// The observations.
    pub fn ys(&self) -> &[Vec<f64>] {
        &self.ys
    }
    /// Number of observations `T`.
    pub fn len(&self) -> usize {
        self.ys.len()
    }
    /// Whether there are no observations.
    pub fn is_empty(&self) -> bool {
        self.ys.is_empty()
    }

    /// The exact Kalman filter on the data: log-likelihood, filtering and predicted moments.
    ///
    /// ```
    /// use diffsmc_lgssm::Lgssm;
    /// let data = Lgssm::paper(0.5, 1.0, 1)?.with_data(vec![vec![0.0]])?;
    /// // y_0 ~ N(0, 1 + 0.5)
    /// let ll = data.kalman()?.log_likelihood;
    /// assert!((ll + 0.5 * (2.0 * std::f64::consts::PI * 1.5).ln()).abs() < 1e-14);
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn kalman(&self) -> Result<KalmanOutput<S>> {
        self.model.lg.filter(&self.ys)
    }

    /// The exact Kalman filter and RTS smoother on the data.
    ///
    /// ```
    /// use diffsmc_lgssm::Lgssm;
    /// let data = Lgssm::paper(0.5, 1.0, 1)?.with_data(vec![vec![0.5], vec![1.0]])?;
    /// let (f, s) = data.smooth()?;
    /// assert_eq!(s.means[1], f.filter_means[1]);
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn smooth(&self) -> Result<(KalmanOutput<S>, RtsOutput<S>)> {
        self.model.lg.smooth(&self.ys)
    }

    /// The locally optimal proposal `p(x_t | x_{t-1}, y_t)` (and `p(x_0 | y_0)`) on these
    /// data, for the guided filter ([`diffsmc::Guided`]).
    ///
    /// Errors: [`SmcError::NotPositiveDefinite`] if a conditional covariance loses positive
    /// definiteness numerically.
    ///
    /// ```
    /// use diffsmc_lgssm::Lgssm;
    /// // y_0 = 1 observes x_0 ~ N(0, 1) with noise variance 0.5: p(x_0 | y_0) = N(2/3, 1/3).
    /// let data = Lgssm::<f64>::paper(0.5, 1.0, 1)?.with_data(vec![vec![1.0]])?;
    /// let q = data.optimal_proposal()?;
    /// assert!((q.initial_mean()[0] - 2.0 / 3.0).abs() < 1e-15);
    /// assert!((q.initial_chol()[0].powi(2) - 1.0 / 3.0).abs() < 1e-15);
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn optimal_proposal(&self) -> Result<OptimalProposal<S>> {
        OptimalProposal::new(self)
    }

    /// The exact look-ahead `p(y_t | x_{t-1})` on these data, for the (fully adapted)
    /// auxiliary particle filter ([`diffsmc::Auxiliary`]).
    ///
    /// ```
    /// use diffsmc::LookAhead;
    /// use diffsmc_lgssm::Lgssm;
    /// // p(y_1 | x_0) = N(y_1; 0.5 x_0, 1 + 0.5).
    /// let data = Lgssm::paper(0.5, 1.0, 1)?.with_data(vec![vec![0.0], vec![1.0]])?;
    /// let eta: f64 = data.exact_look_ahead()?.log_look_ahead(1, &[2.0]);
    /// assert!((eta + 0.5 * (2.0 * std::f64::consts::PI * 1.5).ln()).abs() < 1e-15);
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn exact_look_ahead(&self) -> Result<ExactLookAhead<S>> {
        ExactLookAhead::new(self)
    }

    fn log_density(&self, t: usize, x: &[S]) -> S {
        let p = &self.patterns[self.step_pattern[t]];
        let k = p.observed.len();
        if k == 0 {
            return S::zero();
        }
        let dx = self.model.state_dim();
        let y = &self.ys[t];
        if k == 1 && dx == 1 {
            // Scalar fast path (the same arithmetic as the general path below).
            let u = (S::cst(y[p.observed[0]]) - p.h[0] * x[0]) / p.chol[0];
            return p.log_norm - u * u * 0.5;
        }
        let whiten = |u: &mut [S]| {
            for (row, &i) in p.observed.iter().enumerate() {
                let hx = p.h[row * dx..(row + 1) * dx]
                    .iter()
                    .zip(x)
                    .fold(S::zero(), |acc, (&hij, &xj)| acc + hij * xj);
                u[row] = S::cst(y[i]) - hx;
            }
            solve_lower(&p.chol, k, u);
            let quad = u.iter().fold(S::zero(), |acc, &v| acc + v * v);
            p.log_norm - quad * 0.5
        };
        if k <= STACK_DIM {
            let mut buf = [S::zero(); STACK_DIM];
            whiten(&mut buf[..k])
        } else {
            whiten(&mut vec![S::zero(); k])
        }
    }
}

impl<S: Scalar> StateSpaceModel<S> for LgssmData<S> {
    fn state_dim(&self) -> usize {
        self.model.state_dim()
    }
    fn n_observations(&self) -> usize {
        self.ys.len()
    }
    /// `x = m0 + L_P0 ξ`, `ξ ~ N(0, I)` drawn as `f64`.
    fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
        let lg = &self.model.lg;
        let dx = lg.state_dim();
        x[..dx].copy_from_slice(lg.m0_slice());
        add_correlated_noise(lg.chol_p0(), dx, rng, x);
    }
    /// `x = A x_prev + L_Q ξ`, `ξ ~ N(0, I)` drawn as `f64`.
    fn sample_transition(&self, _t: usize, x_prev: &[S], rng: &mut StreamRng, x: &mut [S]) {
        let lg = &self.model.lg;
        let dx = lg.state_dim();
        let a = lg.a_row_major();
        if dx == 1 {
            x[0] = a[0] * x_prev[0] + lg.chol_q()[0] * standard_normal(rng);
            return;
        }
        for i in 0..dx {
            x[i] = a[i * dx..(i + 1) * dx]
                .iter()
                .zip(x_prev)
                .fold(S::zero(), |acc, (&aij, &xj)| acc + aij * xj);
        }
        add_correlated_noise(lg.chol_q(), dx, rng, x);
    }
    /// `log N(y_t[obs]; H[obs] x, R[obs, obs])`, zero when `y_t` is fully missing.
    fn observation_log_density(&self, t: usize, x: &[S]) -> S {
        self.log_density(t, x)
    }
    fn has_transition_density(&self) -> bool {
        true
    }
    /// `log N(x; A x_prev, Q)`.
    fn transition_log_density(&self, _t: usize, x_prev: &[S], x: &[S]) -> Result<S> {
        let lg = &self.model.lg;
        let dx = lg.state_dim();
        let a = lg.a_row_major();
        // Smoothers call this O(N²) times per step: no allocation for small states.
        let mut stack = [S::zero(); STACK_DIM];
        let mut heap = Vec::new();
        let r: &mut [S] = if dx <= STACK_DIM {
            &mut stack[..dx]
        } else {
            heap.resize(dx, S::zero());
            &mut heap
        };
        for i in 0..dx {
            let ax = a[i * dx..(i + 1) * dx]
                .iter()
                .zip(x_prev)
                .fold(S::zero(), |acc, (&aij, &xj)| acc + aij * xj);
            r[i] = x[i] - ax;
        }
        Ok(gaussian_log_density_chol(lg.chol_q(), dx, r))
    }
    /// `log N(x; m0, P0)`.
    fn initial_log_density(&self, x: &[S]) -> Result<S> {
        let lg = &self.model.lg;
        let dx = lg.state_dim();
        let m0 = lg.m0_slice();
        let mut r: Vec<S> = (0..dx).map(|i| x[i] - m0[i]).collect();
        Ok(gaussian_log_density_chol(lg.chol_p0(), dx, &mut r))
    }
    /// `log N(0; 0, Q) = -(d ln 2π + ln det Q) / 2`, the density's maximum.
    fn transition_log_density_bound(&self, _t: usize) -> Option<f64> {
        let lg = &self.model.lg;
        let dx = lg.state_dim();
        let chol: Vec<f64> = lg.chol_q().iter().map(|v| v.re()).collect();
        Some((log_det_from_cholesky(&chol, dx) + LN_2PI * dx as f64) * -0.5)
    }
}

/// `log N(r; 0, L Lᵀ)` with `L` lower triangular row-major (`r` is overwritten by `L⁻¹ r`).
fn gaussian_log_density_chol<S: Scalar>(chol: &[S], d: usize, r: &mut [S]) -> S {
    solve_lower(chol, d, r);
    let quad = r.iter().fold(S::zero(), |acc, &v| acc + v * v);
    (log_det_from_cholesky(chol, d) + LN_2PI * d as f64) * -0.5 - quad * 0.5
}

/// So that `Bootstrap(&data)` works without moving the data.
impl<S: Scalar> StateSpaceModel<S> for &LgssmData<S> {
    fn state_dim(&self) -> usize {
        (**self).state_dim()
    }
    fn n_observations(&self) -> usize {
        (**self).n_observations()
    }
    fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
        (**self).sample_initial(rng, x)
    }
    fn sample_transition(&self, t: usize, x_prev: &[S], rng: &mut StreamRng, x: &mut [S]) {
        (**self).sample_transition(t, x_prev, rng, x)
    }
    fn observation_log_density(&self, t: usize, x: &[S]) -> S {
        (**self).observation_log_density(t, x)
    }
    fn has_transition_density(&self) -> bool {
        true
    }
    fn transition_log_density(&self, t: usize, x_prev: &[S], x: &[S]) -> Result<S> {
        (**self).transition_log_density(t, x_prev, x)
    }
    fn initial_log_density(&self, x: &[S]) -> Result<S> {
        (**self).initial_log_density(x)
    }
    fn transition_log_density_bound(&self, t: usize) -> Option<f64> {
        StateSpaceModel::<S>::transition_log_density_bound(*self, t)
    }
}

#[cfg(test)]
mod density_tests {
    use super::*;

    /// The transition and initial densities against the closed-form scalar normal density
    /// (round-off only: tolerance 1e-12), and the bound is the density's maximum.
    #[test]
    fn transition_and_initial_densities_match_closed_form() {
        let data = Lgssm::paper(0.7, 1.0, 1)
            .unwrap()
            .with_data(vec![vec![0.1], vec![0.2]])
            .unwrap();
        let normal = |x: f64, m: f64, v: f64| {
            -0.5 * (2.0 * std::f64::consts::PI * v).ln() - (x - m) * (x - m) / (2.0 * v)
        };
        let f = StateSpaceModel::<f64>::transition_log_density(&data, 1, &[0.4], &[-0.3]).unwrap();
        assert!((f - normal(-0.3, 0.7 * 0.4, 1.0)).abs() < 1e-12);
        let f0 = StateSpaceModel::<f64>::initial_log_density(&data, &[0.9]).unwrap();
        assert!((f0 - normal(0.9, 0.0, 1.0)).abs() < 1e-12);
        let b = StateSpaceModel::<f64>::transition_log_density_bound(&data, 1).unwrap();
        assert!((b - normal(0.0, 0.0, 1.0)).abs() < 1e-12);
        assert!(StateSpaceModel::<f64>::has_transition_density(&data));
    }

    /// In two dimensions with a correlated Q: against the explicit 2x2 formula.
    #[test]
    fn transition_density_two_dimensions() {
        let a = DMatrix::from_row_slice(2, 2, &[0.9, 0.1, 0.0, 0.8]);
        let q = DMatrix::from_row_slice(2, 2, &[1.0, 0.3, 0.3, 0.5]);
        let h = DMatrix::identity(2, 2);
        let r = DMatrix::identity(2, 2);
        let m = Lgssm::new(a, q, h, r, DVector::zeros(2), DMatrix::identity(2, 2)).unwrap();
        let data = m.with_data(vec![vec![0.0, 0.0]; 2]).unwrap();
        let (xp, x) = ([0.5, -1.0], [0.2, 0.4]);
        let mean = [0.9 * xp[0] + 0.1 * xp[1], 0.8 * xp[1]];
        let (r0, r1) = (x[0] - mean[0], x[1] - mean[1]);
        let det: f64 = 1.0 * 0.5 - 0.3 * 0.3;
        let quad = (0.5 * r0 * r0 - 2.0 * 0.3 * r0 * r1 + 1.0 * r1 * r1) / det;
        let exact = -(2.0 * std::f64::consts::PI).ln() - 0.5 * det.ln() - 0.5 * quad;
        let got = StateSpaceModel::<f64>::transition_log_density(&data, 1, &xp, &x).unwrap();
        assert!((got - exact).abs() < 1e-12, "{got} vs {exact}");
    }
}
