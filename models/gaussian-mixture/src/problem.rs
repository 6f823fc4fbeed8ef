//! The importance-resampling problem: Gaussian-mixture prior, linear Gaussian observation,
//! closed-form Gaussian-mixture posterior.

use diffsmc::rng::{Purpose, StreamKey, standard_normal};
use nalgebra::{DMatrix, DVector};
use rand::RngExt;

use crate::error::{GmError, Result};
use crate::linalg::{
    LN_2PI, check_finite, check_finite_matrix, cholesky_lower, forward_sub_sq_norm, half_log_det,
    logsumexp, normalise_log, symmetrised,
};
use crate::mixture::{GaussianMixture, points_in};

/// Dimension of the state in the paper's experiment.
pub const PAPER_DIM: usize = 8;
/// Number of prior mixture components in the paper's experiment.
pub const PAPER_COMPONENTS: usize = 5;
/// Number of particles (prior draws, and exact posterior draws) in the paper's experiment.
pub const PAPER_PARTICLES: usize = 10_000;
/// Number of random directions of the sliced Wasserstein metric in the paper's experiment.
pub const PAPER_DIRECTIONS: usize = 1_000;
/// Half-width of the box `[-5, 5]^d` the paper's prior means are drawn from.
pub const PAPER_MEAN_HALF_WIDTH: f64 = 5.0;

/// Configuration of the paper's random instance; [`GmProblem::paper`] is the common case.
///
/// `d`-dimensional state, `c` equally weighted prior components with means uniform on
/// `[-5, 5]^d` and covariances `g gᵀ + I_d`, `g ~ N(0, I_d)`; observation operator
/// `H = 1_{k×d}` (all ones), noise covariance `Ξ = I_k`, and observation
/// `y = H Σ_i m_i / c + offset·1_k` (offset 0 in the paper: `y` is the observation of the prior
/// mean, a "likely" value; a large offset makes it an outlier).
///
/// ```
/// use diffsmc_gaussian_mixture::PaperConfig;
/// let p = PaperConfig::new(4, 3)?.with_obs_dim(2)?.with_y_offset(1.5)?.build(9)?;
/// assert_eq!((p.dim(), p.obs_dim(), p.prior().n_components()), (4, 2, 3));
/// # Ok::<(), diffsmc_gaussian_mixture::GmError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaperConfig {
    dim: usize,
    n_components: usize,
    obs_dim: usize,
    y_offset: f64,
}

impl Default for PaperConfig {
    /// The paper's setting: `d = 8`, `c = 5`, `k = 1`, no offset.
    fn default() -> Self {
        PaperConfig {
            dim: PAPER_DIM,
            n_components: PAPER_COMPONENTS,
            obs_dim: 1,
            y_offset: 0.0,
        }
    }
}

impl PaperConfig {
    /// State dimension `d ≥ 1` and number of components `c ≥ 1`; one observed coordinate and no
    /// offset.
    ///
    /// ```
    /// use diffsmc_gaussian_mixture::{GmError, PaperConfig};
    /// assert!(PaperConfig::new(8, 5).is_ok());
    /// assert!(matches!(PaperConfig::new(0, 5), Err(GmError::InvalidParameter { name: "d", .. })));
    /// assert!(matches!(PaperConfig::new(8, 0), Err(GmError::InvalidParameter { name: "c", .. })));
    /// ```
    pub fn new(d: usize, c: usize) -> Result<Self> {
        if d == 0 {
            return Err(GmError::invalid("d", d, "state dimension of at least 1"));
        }
        if c == 0 {
            return Err(GmError::invalid("c", c, "at least one mixture component"));
        }
        Ok(PaperConfig {
            dim: d,
            n_components: c,
            ..PaperConfig::default()
        })
    }

    /// Number `k ≥ 1` of observed coordinates (`H` is `k×d`, all ones; `Ξ = I_k`).
    pub fn with_obs_dim(mut self, k: usize) -> Result<Self> {
        if k == 0 {
            return Err(GmError::invalid(
                "k",
                k,
                "observation dimension of at least 1",
            ));
        }
        self.obs_dim = k;
        Ok(self)
    }

    /// A finite offset added to every coordinate of `y`.
    pub fn with_y_offset(mut self, offset: f64) -> Result<Self> {
        if !offset.is_finite() {
            return Err(GmError::invalid("y_offset", offset, "a finite number"));
        }
        self.y_offset = offset;
        Ok(self)
    }

    /// State dimension `d`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of prior components `c`.
    pub fn n_components(&self) -> usize {
        self.n_components
    }

    /// Observation dimension `k`.
    pub fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    /// The offset added to `y`.
    pub fn y_offset(&self) -> f64 {
        self.y_offset
    }

    /// The random prior of this configuration for `seed`.
    ///
    /// Component `i` draws from stream `StreamKey::new(seed, 0, Purpose::Simulate).rng(i)`:
    /// first the `d` mean coordinates `-5 + 10 u`, `u ~ U[0, 1)`, then the `d` coordinates of
    /// `g`. Components are therefore independent of `c`: the first components of an instance
    /// with more components are those of one with fewer, for the same seed and `d`.
    pub fn random_prior(&self, seed: u64) -> Result<GaussianMixture> {
        let (d, c) = (self.dim, self.n_components);
        let key = StreamKey::new(seed, 0, Purpose::Simulate);
        let mut means = Vec::with_capacity(c);
        let mut covs = Vec::with_capacity(c);
        let mut g = vec![0.0; d];
        for i in 0..c {
            let mut rng = key.rng(i);
            let m = DVector::from_fn(d, |_, _| {
                let u: f64 = rng.random();
                -PAPER_MEAN_HALF_WIDTH + 2.0 * PAPER_MEAN_HALF_WIDTH * u
            });
            for gk in g.iter_mut() {
                *gk = standard_normal(&mut rng);
            }
            let v = DMatrix::from_fn(d, d, |r, s| g[r] * g[s] + if r == s { 1.0 } else { 0.0 });
            means.push(m);
            covs.push(v);
        }
        GaussianMixture::new(vec![1.0 / c as f64; c], means, covs)
    }

    /// Builds the problem instance for `seed` (bit-for-bit reproducible).
    pub fn build(&self, seed: u64) -> Result<GmProblem> {
        let prior = self.random_prior(seed)?;
        let (d, k) = (self.dim, self.obs_dim);
        let h = DMatrix::from_element(k, d, 1.0);
        let xi = DMatrix::identity(k, k);
        let mut y = &h * prior.mean();
        y.add_scalar_mut(self.y_offset);
        GmProblem::new(prior, h, xi, y)
    }
}

/// Gaussian-mixture prior `Σ_i ω_i N(m_i, v_i)` on R^d observed through `y = H x + e`,
/// `e ~ N(0, Ξ)`, with its exact posterior.
///
/// The posterior is the Gaussian mixture with, for every component,
/// `G_i = H v_i Hᵀ + Ξ`, `Ω_i ∝ ω_i N(y; H m_i, G_i)`,
/// `M_i = m_i + v_i Hᵀ G_i⁻¹ (y − H m_i)`, `V_i = v_i − v_i Hᵀ G_i⁻¹ H v_i`
/// (computed with Cholesky solves, the weights in the log domain).
///
/// Importance resampling with the prior as proposal: draw [`GmProblem::proposal_draws`], weight
/// them by [`GmProblem::log_likelihood`] (the prior cancels), resample, and compare with
/// [`GmProblem::posterior`] draws.
///
/// ```
/// use diffsmc::rng::{Purpose, StreamKey};
/// use diffsmc_gaussian_mixture::{GmProblem, sliced_wasserstein};
///
/// let problem = GmProblem::paper(8, 5, 42)?;
/// let post = problem.posterior();
/// assert_eq!(post.n_components(), 5);
/// assert!((post.weights().iter().sum::<f64>() - 1.0).abs() < 1e-12);
///
/// let is = problem.importance_sample(2000, StreamKey::new(42, 0, Purpose::Move))?;
/// let exact = post.sample(2000, StreamKey::new(42, 0, Purpose::Simulate));
/// let w = is.weights();
/// let swd = sliced_wasserstein(
///     &is.particles, Some(&w), &exact, None, 8, 100, StreamKey::new(42, 0, Purpose::Other(0)),
/// )?;
/// assert!(swd.is_finite() && swd >= 0.0);
/// # Ok::<(), diffsmc_gaussian_mixture::GmError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GmProblem {
    prior: GaussianMixture,
    h: DMatrix<f64>,
    xi: DMatrix<f64>,
    y: DVector<f64>,
    posterior: GaussianMixture,
    /// Lower Cholesky factor of Ξ.
    xi_chol: DMatrix<f64>,
    /// `−k/2 ln 2π − ½ ln det Ξ`.
    lik_log_norm: f64,
    /// `ln p(y)`.
    log_evidence: f64,
}

impl GmProblem {
    /// The paper's random instance with state dimension `d`, `c` prior components and one
    /// observed coordinate (`H` all ones `1×d`, `Ξ = 1`, `y = H Σ_i m_i / c`), reproducible from
    /// `seed`. See [`PaperConfig`] for the details and the variants.
    ///
    /// Errors: `d = 0` or `c = 0` ([`GmError::InvalidParameter`]).
    ///
    /// ```
    /// use diffsmc_gaussian_mixture::{GmError, GmProblem};
    /// let a = GmProblem::paper(8, 5, 1)?;
    /// assert_eq!(a, GmProblem::paper(8, 5, 1)?); // a seed fixes the instance
    /// assert_ne!(a, GmProblem::paper(8, 5, 2)?);
    /// assert!(matches!(GmProblem::paper(0, 5, 1), Err(GmError::InvalidParameter { .. })));
    /// # Ok::<(), GmError>(())
    /// ```
    pub fn paper(d: usize, c: usize, seed: u64) -> Result<Self> {
        PaperConfig::new(d, c)?.build(seed)
    }

    /// A problem from any prior, observation operator `h` (`k×d`), symmetric positive-definite
    /// noise covariance `xi` (`k×k`) and observation `y` (length `k`), with `k ≥ 1`.
    ///
    /// Errors: inconsistent sizes or `k = 0`, non-finite entries, `Ξ` not symmetric or not
    /// positive definite, or a posterior covariance that is numerically not positive definite.
    ///
    /// ```
    /// use diffsmc_gaussian_mixture::{GaussianMixture, GmProblem};
    /// use nalgebra::{DMatrix, DVector};
    /// // N(0, 1) prior, y = x + N(0, 1), y = 2: posterior N(1, 1/2).
    /// let prior = GaussianMixture::new(vec![1.0], vec![DVector::zeros(1)], vec![DMatrix::identity(1, 1)])?;
    /// let p = GmProblem::new(
    ///     prior,
    ///     DMatrix::identity(1, 1),
    ///     DMatrix::identity(1, 1),
    ///     DVector::from_element(1, 2.0),
    /// )?;
    /// assert!((p.posterior_mean()[0] - 1.0).abs() < 1e-15);
    /// assert!((p.posterior().covariances()[0][(0, 0)] - 0.5).abs() < 1e-15);
    /// # Ok::<(), diffsmc_gaussian_mixture::GmError>(())
    /// ```
    pub fn new(
        prior: GaussianMixture,
        h: DMatrix<f64>,
        xi: DMatrix<f64>,
        y: DVector<f64>,
    ) -> Result<Self> {
        let d = prior.dim();
        let k = h.nrows();
        if k == 0 {
            return Err(GmError::invalid(
                "k (rows of H)",
                0,
                "observation dimension of at least 1",
            ));
        }
        if h.ncols() != d {
            return Err(GmError::DimensionMismatch {
                what: "columns of H vs prior dimension",
                expected: d,
                got: h.ncols(),
            });
        }
        if xi.nrows() != k || xi.ncols() != k {
            return Err(GmError::DimensionMismatch {
                what: "size of Xi vs rows of H",
                expected: k,
                got: if xi.nrows() != k {
                    xi.nrows()
                } else {
                    xi.ncols()
                },
            });
        }
        if y.len() != k {
            return Err(GmError::DimensionMismatch {
                what: "length of y vs rows of H",
                expected: k,
                got: y.len(),
            });
        }
        check_finite_matrix(&h, "H")?;
        check_finite_matrix(&xi, "Xi")?;
        check_finite(y.as_slice(), "y")?;
        let xi = symmetrised(&xi, "Xi", None)?;
        let xi_chol = cholesky_lower(&xi, "Xi", None)?;
        let lik_log_norm = -0.5 * k as f64 * LN_2PI - half_log_det(&xi_chol);

        let c = prior.n_components();
        let mut log_omega = Vec::with_capacity(c);
        let mut post_means = Vec::with_capacity(c);
        let mut post_covs = Vec::with_capacity(c);
        let mut z = vec![0.0; k];
        for i in 0..c {
            let (m, v) = (&prior.means()[i], &prior.covariances()[i]);
            // H v_i (k×d); v_i Hᵀ = (H v_i)ᵀ since v_i is symmetric.
            let hv = &h * v;
            let g = symmetrised(
                &(&hv * h.transpose() + &xi),
                "G (innovation covariance)",
                Some(i),
            )?;
            let g_chol = nalgebra::Cholesky::new(g).ok_or(GmError::NotPositiveDefinite {
                what: "G (innovation covariance)",
                index: Some(i),
            })?;
            let g_chol_l = g_chol.l();
            let resid = &y - &h * m;
            let log_marg = -0.5 * k as f64 * LN_2PI
                - half_log_det(&g_chol_l)
                - 0.5 * forward_sub_sq_norm(&g_chol_l, resid.as_slice(), &mut z);
            log_omega.push(prior.log_weights()[i] + log_marg);
            let gain_resid = g_chol.solve(&resid); // G⁻¹ (y − H m)
            let mean = m + hv.transpose() * gain_resid;
            let g_inv_hv = g_chol.solve(&hv); // G⁻¹ H v
            let cov = v - hv.transpose() * g_inv_hv;
            let cov = symmetrised(&cov, "posterior covariance", Some(i))?;
            post_means.push(mean);
            post_covs.push(cov);
        }
        let log_evidence = logsumexp(&log_omega);
        if !log_evidence.is_finite() {
            return Err(GmError::InvalidWeights {
                what: "posterior weights",
                reason: "the observation has zero (or non-finite) evidence under every component",
            });
        }
        let posterior = GaussianMixture::from_log_weights(log_omega, post_means, post_covs)?;
        Ok(GmProblem {
            prior,
            h,
            xi,
            y,
            posterior,
            xi_chol,
            lik_log_norm,
            log_evidence,
        })
    }

    /// State dimension `d`.
    pub fn dim(&self) -> usize {
        self.prior.dim()
    }

    /// Observation dimension `k`.
    pub fn obs_dim(&self) -> usize {
        self.h.nrows()
    }

    /// The prior (and proposal) mixture.
    pub fn prior(&self) -> &GaussianMixture {
        &self.prior
    }

    /// The observation operator `H` (`k×d`).
    pub fn h(&self) -> &DMatrix<f64> {
        &self.h
    }

    /// The observation-noise covariance `Ξ` (`k×k`).
    pub fn xi(&self) -> &DMatrix<f64> {
        &self.xi
    }

    /// The observation `y`.
    pub fn y(&self) -> &DVector<f64> {
        &self.y
    }

    /// The exact posterior mixture `Σ_i Ω_i N(M_i, V_i)`.
    pub fn posterior(&self) -> &GaussianMixture {
        &self.posterior
    }

    /// The exact posterior mean `Σ_i Ω_i M_i`.
    ///
    /// ```
    /// let p = diffsmc_gaussian_mixture::GmProblem::paper(8, 5, 3)?;
    /// assert_eq!(p.posterior_mean(), p.posterior().mean());
    /// # Ok::<(), diffsmc_gaussian_mixture::GmError>(())
    /// ```
    pub fn posterior_mean(&self) -> DVector<f64> {
        self.posterior.mean()
    }

    /// The exact log-evidence `ln p(y) = ln Σ_i ω_i N(y; H m_i, G_i)`, the limit of the
    /// importance-sampling estimate [`ImportanceSample::log_evidence_estimate`].
    pub fn log_evidence(&self) -> f64 {
        self.log_evidence
    }

    /// `n` proposal draws, that is prior draws (particle-major, `n·d` numbers), point `p` from
    /// stream `key.rng(p)`.
    ///
    /// ```
    /// use diffsmc::rng::{Purpose, StreamKey};
    /// let p = diffsmc_gaussian_mixture::GmProblem::paper(8, 5, 3)?;
    /// let key = StreamKey::new(3, 0, Purpose::Move);
    /// assert_eq!(p.proposal_draws(10, key), p.prior().sample(10, key));
    /// # Ok::<(), diffsmc_gaussian_mixture::GmError>(())
    /// ```
    pub fn proposal_draws(&self, n: usize, key: StreamKey) -> Vec<f64> {
        self.prior.sample(n, key)
    }

    /// `n` exact posterior draws (particle-major), point `p` from stream `key.rng(p)`.
    pub fn posterior_draws(&self, n: usize, key: StreamKey) -> Vec<f64> {
        self.posterior.sample(n, key)
    }

    /// The log-likelihood `ln N(y; H x, Ξ)` of each point of the particle-major buffer `xs`.
    /// For prior draws these are the (unnormalised) importance log-weights.
    ///
    /// Errors: [`GmError::DimensionMismatch`] when `xs.len()` is not a multiple of `d`.
    ///
    /// ```
    /// use diffsmc_gaussian_mixture::GmProblem;
    /// let p = GmProblem::paper(2, 1, 0)?;
    /// // H = (1, 1), Ξ = 1: at a point with x1 + x2 = y the log-likelihood is −½ ln 2π.
    /// let y = p.y()[0];
    /// let ll = p.log_likelihood(&[y, 0.0, 0.0, y])?;
    /// let top = -0.5 * (2.0 * std::f64::consts::PI).ln();
    /// assert!((ll[0] - top).abs() < 1e-14 && (ll[1] - top).abs() < 1e-14);
    /// # Ok::<(), diffsmc_gaussian_mixture::GmError>(())
    /// ```
    pub fn log_likelihood(&self, xs: &[f64]) -> Result<Vec<f64>> {
        let d = self.dim();
        let n = points_in(xs, d, "sample buffer length vs dimension")?;
        let k = self.obs_dim();
        let mut r = vec![0.0; k];
        let mut z = vec![0.0; k];
        let mut out = Vec::with_capacity(n);
        for x in xs.chunks_exact(d) {
            for (a, ra) in r.iter_mut().enumerate() {
                let mut hx = 0.0;
                for (b, xb) in x.iter().enumerate() {
                    hx += self.h[(a, b)] * xb;
                }
                *ra = self.y[a] - hx;
            }
            out.push(self.lik_log_norm - 0.5 * forward_sub_sq_norm(&self.xi_chol, &r, &mut z));
        }
        Ok(out)
    }

    /// The whole importance step without resampling: `n ≥ 1` prior draws from `key` and their
    /// log-likelihoods and normalised log-weights, ready to hand to a resampler.
    ///
    /// Errors: `n = 0` ([`GmError::InvalidParameter`]).
    ///
    /// ```
    /// use diffsmc::rng::{Purpose, StreamKey};
    /// let p = diffsmc_gaussian_mixture::GmProblem::paper(8, 5, 3)?;
    /// let is = p.importance_sample(1000, StreamKey::new(3, 0, Purpose::Move))?;
    /// assert_eq!(is.particles.len(), 1000 * 8);
    /// let ess = is.ess();
    /// assert!((1.0..=1000.0).contains(&ess));
    /// # Ok::<(), diffsmc_gaussian_mixture::GmError>(())
    /// ```
    pub fn importance_sample(&self, n: usize, key: StreamKey) -> Result<ImportanceSample> {
        if n == 0 {
            return Err(GmError::invalid("n", n, "at least one particle"));
        }
        let particles = self.proposal_draws(n, key);
        let log_likelihoods = self.log_likelihood(&particles)?;
        let (log_weights, lse) =
            normalise_log(&log_likelihoods).ok_or(GmError::InvalidWeights {
                what: "importance weights",
                reason: "every likelihood underflowed to zero",
            })?;
        Ok(ImportanceSample {
            dim: self.dim(),
            particles,
            log_likelihoods,
            log_weights,
            log_sum: lse,
        })
    }
}

/// The result of the importance step: prior draws with their likelihood weights.
///
/// The fields are public so they can be moved into a resampler without copying.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportanceSample {
    /// State dimension `d`.
    pub dim: usize,
    /// The prior draws, particle-major (`n·d` numbers).
    pub particles: Vec<f64>,
    /// `ln N(y; H x_p, Ξ)` of each draw (the unnormalised log-weights).
    pub log_likelihoods: Vec<f64>,
    /// The normalised log-weights (`logsumexp = 0`).
    pub log_weights: Vec<f64>,
    log_sum: f64,
}

impl ImportanceSample {
    /// Number of particles `n`.
    pub fn len(&self) -> usize {
        self.log_weights.len()
    }

    /// Whether there are no particles (never true for a sample built by
    /// [`GmProblem::importance_sample`]).
    pub fn is_empty(&self) -> bool {
        self.log_weights.is_empty()
    }

    /// The normalised weights `exp(log_weights)`.
    pub fn weights(&self) -> Vec<f64> {
        self.log_weights.iter().map(|l| l.exp()).collect()
    }

    /// Effective sample size `1 / Σ w_p²`, in `[1, n]`.
    pub fn ess(&self) -> f64 {
        let s: f64 = self.log_weights.iter().map(|l| (2.0 * l).exp()).sum();
        1.0 / s
    }

    /// The importance-sampling estimate `ln (1/n Σ_p N(y; H x_p, Ξ))` of the log-evidence
    /// (its exponential is unbiased for `p(y)`).
    pub fn log_evidence_estimate(&self) -> f64 {
        self.log_sum - (self.len() as f64).ln()
    }
}
