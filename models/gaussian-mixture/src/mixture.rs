//! Gaussian mixtures in R^d: exact sampling, log-density, moments.

use diffsmc::rng::{StreamKey, StreamRng, standard_normal};
use nalgebra::{DMatrix, DVector};
use rand::RngExt;

use crate::error::{GmError, Result};
use crate::linalg::{
    LN_2PI, check_finite, check_finite_matrix, cholesky_lower, forward_sub_sq_norm, half_log_det,
    logsumexp, normalise_log, symmetrised,
};

/// A finite mixture of Gaussians `Σ_i ω_i N(m_i, v_i)` on R^d, with the lower Cholesky factor of
/// every covariance cached.
///
/// Sample buffers are particle-major: `n` points in R^d are `n·d` numbers, point `p` occupying
/// `[p·d, (p+1)·d)`.
///
/// ```
/// use diffsmc::rng::{Purpose, StreamKey};
/// use diffsmc_gaussian_mixture::GaussianMixture;
/// use nalgebra::{DMatrix, DVector};
///
/// // ½ N(-1, 1) + ½ N(2, 0.25) on R.
/// let gm = GaussianMixture::new(
///     vec![0.5, 0.5],
///     vec![DVector::from_element(1, -1.0), DVector::from_element(1, 2.0)],
///     vec![DMatrix::from_element(1, 1, 1.0), DMatrix::from_element(1, 1, 0.25)],
/// )?;
/// assert_eq!(gm.mean()[0], 0.5);
/// let xs = gm.sample(1000, StreamKey::new(7, 0, Purpose::Simulate));
/// assert_eq!(xs.len(), 1000);
/// assert!(gm.log_density(&[2.0])?.is_finite());
/// # Ok::<(), diffsmc_gaussian_mixture::GmError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianMixture {
    dim: usize,
    weights: Vec<f64>,
    log_weights: Vec<f64>,
    /// Cumulative weights for inverse-CDF component choice; the last component of positive
    /// weight holds `+inf`, so rounding in the sum can never select a zero-weight component.
    cum_weights: Vec<f64>,
    means: Vec<DVector<f64>>,
    covariances: Vec<DMatrix<f64>>,
    chol: Vec<DMatrix<f64>>,
    /// `ln ω_i − d/2 ln 2π − ½ ln det v_i`.
    log_norm: Vec<f64>,
}

impl GaussianMixture {
    /// A mixture from non-negative weights (normalised here; they need not sum to one), means
    /// (each of length `d ≥ 1`) and symmetric positive-definite `d×d` covariances.
    ///
    /// Errors: no components or `d = 0` ([`GmError::InvalidParameter`]), inconsistent sizes
    /// ([`GmError::DimensionMismatch`]), negative/non-finite weights or a zero total
    /// ([`GmError::InvalidWeights`]), non-finite entries ([`GmError::NonFinite`]), a covariance
    /// that is not symmetric or not positive definite.
    ///
    /// ```
    /// use diffsmc_gaussian_mixture::{GaussianMixture, GmError};
    /// use nalgebra::{DMatrix, DVector};
    /// let gm = GaussianMixture::new(
    ///     vec![2.0, 6.0],
    ///     vec![DVector::zeros(2), DVector::from_element(2, 1.0)],
    ///     vec![DMatrix::identity(2, 2), DMatrix::identity(2, 2)],
    /// )?;
    /// assert_eq!(gm.weights(), &[0.25, 0.75]);
    /// assert!(matches!(
    ///     GaussianMixture::new(vec![], vec![], vec![]),
    ///     Err(GmError::InvalidParameter { .. })
    /// ));
    /// # Ok::<(), GmError>(())
    /// ```
    pub fn new(
        weights: Vec<f64>,
        means: Vec<DVector<f64>>,
        covariances: Vec<DMatrix<f64>>,
    ) -> Result<Self> {
        if weights.is_empty() {
            return Err(GmError::invalid(
                "number of components",
                0,
                "at least one component",
            ));
        }
        for &w in &weights {
            if !w.is_finite() {
                return Err(GmError::InvalidWeights {
                    what: "mixture weights",
                    reason: "a weight is NaN or infinite",
                });
            }
            if w < 0.0 {
                return Err(GmError::InvalidWeights {
                    what: "mixture weights",
                    reason: "a weight is negative",
                });
            }
        }
        let total: f64 = weights.iter().sum();
        if !(total > 0.0 && total.is_finite()) {
            return Err(GmError::InvalidWeights {
                what: "mixture weights",
                reason: "the weights do not have a positive finite total",
            });
        }
        let weights: Vec<f64> = weights.iter().map(|w| w / total).collect();
        let log_weights = weights.iter().map(|w| w.ln()).collect();
        Self::from_normalised(weights, log_weights, means, covariances)
    }

    /// A mixture from log-weights (normalised here with log-sum-exp; `-inf` means weight zero).
    ///
    /// Same errors as [`GaussianMixture::new`]; NaN or `+inf` log-weights, or all `-inf`, are
    /// [`GmError::InvalidWeights`].
    ///
    /// ```
    /// use diffsmc_gaussian_mixture::GaussianMixture;
    /// use nalgebra::{DMatrix, DVector};
    /// let gm = GaussianMixture::from_log_weights(
    ///     vec![-1000.0, -1000.0 + 3f64.ln()],
    ///     vec![DVector::zeros(1), DVector::from_element(1, 1.0)],
    ///     vec![DMatrix::identity(1, 1), DMatrix::identity(1, 1)],
    /// )?;
    /// // The common offset of -1000 costs only the rounding of -1000 + ln 3 (ulp ~1e-13).
    /// assert!((gm.weights()[0] - 0.25).abs() < 1e-12 && (gm.weights()[1] - 0.75).abs() < 1e-12);
    /// # Ok::<(), diffsmc_gaussian_mixture::GmError>(())
    /// ```
    pub fn from_log_weights(
        log_weights: Vec<f64>,
        means: Vec<DVector<f64>>,
        covariances: Vec<DMatrix<f64>>,
    ) -> Result<Self> {
        if log_weights
            .iter()
            .any(|lw| lw.is_nan() || *lw == f64::INFINITY)
        {
            return Err(GmError::InvalidWeights {
                what: "mixture log-weights",
                reason: "a log-weight is NaN or +inf",
            });
        }
        let log_weights = if log_weights.is_empty() {
            log_weights
        } else {
            normalise_log(&log_weights)
                .ok_or(GmError::InvalidWeights {
                    what: "mixture weights",
                    reason: "all weights are zero",
                })?
                .0
        };
        let weights = log_weights.iter().map(|lw| lw.exp()).collect();
        Self::from_normalised(weights, log_weights, means, covariances)
    }

    /// The common constructor: weights already validated and normalised.
    fn from_normalised(
        weights: Vec<f64>,
        log_weights: Vec<f64>,
        means: Vec<DVector<f64>>,
        covariances: Vec<DMatrix<f64>>,
    ) -> Result<Self> {
        let c = log_weights.len();
        if c == 0 {
            return Err(GmError::invalid(
                "number of components",
                0,
                "at least one component",
            ));
        }
        if means.len() != c {
            return Err(GmError::DimensionMismatch {
                what: "number of means vs number of weights",
                expected: c,
                got: means.len(),
            });
        }
        if covariances.len() != c {
            return Err(GmError::DimensionMismatch {
                what: "number of covariances vs number of weights",
                expected: c,
                got: covariances.len(),
            });
        }
        let dim = means[0].len();
        if dim == 0 {
            return Err(GmError::invalid("dimension d", 0, "at least 1"));
        }
        let mut sym_covs = Vec::with_capacity(c);
        let mut chol = Vec::with_capacity(c);
        let mut log_norm = Vec::with_capacity(c);
        for (i, (m, v)) in means.iter().zip(&covariances).enumerate() {
            if m.len() != dim {
                return Err(GmError::DimensionMismatch {
                    what: "mean length",
                    expected: dim,
                    got: m.len(),
                });
            }
            if v.nrows() != dim || v.ncols() != dim {
                return Err(GmError::DimensionMismatch {
                    what: "covariance size (rows and columns)",
                    expected: dim,
                    got: if v.nrows() != dim {
                        v.nrows()
                    } else {
                        v.ncols()
                    },
                });
            }
            check_finite(m.as_slice(), "mixture mean")?;
            check_finite_matrix(v, "mixture covariance")?;
            let v = symmetrised(v, "mixture covariance", Some(i))?;
            let l = cholesky_lower(&v, "mixture covariance", Some(i))?;
            log_norm.push(log_weights[i] - 0.5 * dim as f64 * LN_2PI - half_log_det(&l));
            sym_covs.push(v);
            chol.push(l);
        }

        let mut cum_weights = Vec::with_capacity(c);
        let mut acc = 0.0;
        for &w in &weights {
            acc += w;
            cum_weights.push(acc);
        }
        let last_positive = weights
            .iter()
            .rposition(|&w| w > 0.0)
            .expect("at least one weight is positive after normalisation");
        cum_weights[last_positive] = f64::INFINITY;

        Ok(GaussianMixture {
            dim,
            weights,
            log_weights,
            cum_weights,
            means,
            covariances: sym_covs,
            chol,
            log_norm,
        })
    }

    /// The dimension `d` of the space.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The number of components `c`.
    pub fn n_components(&self) -> usize {
        self.weights.len()
    }

    /// The normalised weights `ω_i`.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The normalised log-weights `ln ω_i`.
    pub fn log_weights(&self) -> &[f64] {
        &self.log_weights
    }

    /// The component means `m_i`.
    pub fn means(&self) -> &[DVector<f64>] {
        &self.means
    }

    /// The component covariances `v_i` (exactly symmetric).
    pub fn covariances(&self) -> &[DMatrix<f64>] {
        &self.covariances
    }

    /// The lower Cholesky factors `L_i` with `v_i = L_i L_iᵀ`.
    pub fn cholesky_factors(&self) -> &[DMatrix<f64>] {
        &self.chol
    }

    /// The mixture mean `Σ_i ω_i m_i`.
    ///
    /// ```
    /// use diffsmc_gaussian_mixture::GaussianMixture;
    /// use nalgebra::{DMatrix, DVector};
    /// let gm = GaussianMixture::new(
    ///     vec![1.0, 3.0],
    ///     vec![DVector::from_element(1, 4.0), DVector::zeros(1)],
    ///     vec![DMatrix::identity(1, 1), DMatrix::identity(1, 1)],
    /// )?;
    /// assert_eq!(gm.mean()[0], 1.0);
    /// # Ok::<(), diffsmc_gaussian_mixture::GmError>(())
    /// ```
    pub fn mean(&self) -> DVector<f64> {
        let mut mu = DVector::zeros(self.dim);
        for (w, m) in self.weights.iter().zip(&self.means) {
            mu.axpy(*w, m, 1.0);
        }
        mu
    }

    /// The mixture covariance `Σ_i ω_i (v_i + (m_i − μ)(m_i − μ)ᵀ)` (law of total covariance).
    ///
    /// ```
    /// use diffsmc_gaussian_mixture::GaussianMixture;
    /// use nalgebra::{DMatrix, DVector};
    /// // ½ N(-1, 1) + ½ N(1, 1) has variance 1 + 1 = 2.
    /// let gm = GaussianMixture::new(
    ///     vec![0.5, 0.5],
    ///     vec![DVector::from_element(1, -1.0), DVector::from_element(1, 1.0)],
    ///     vec![DMatrix::identity(1, 1), DMatrix::identity(1, 1)],
    /// )?;
    /// assert_eq!(gm.covariance()[(0, 0)], 2.0);
    /// # Ok::<(), diffsmc_gaussian_mixture::GmError>(())
    /// ```
    pub fn covariance(&self) -> DMatrix<f64> {
        let mu = self.mean();
        let mut cov = DMatrix::zeros(self.dim, self.dim);
        for ((w, m), v) in self.weights.iter().zip(&self.means).zip(&self.covariances) {
            let dm = m - &mu;
            cov += (v + &dm * dm.transpose()) * *w;
        }
        cov
    }

    /// The log-density `ln Σ_i ω_i N(x; m_i, v_i)` at one point `x` of length `d`.
    ///
    /// Errors: [`GmError::DimensionMismatch`] when `x.len() != d`.
    ///
    /// ```
    /// use diffsmc_gaussian_mixture::GaussianMixture;
    /// use nalgebra::{DMatrix, DVector};
    /// let gm = GaussianMixture::new(
    ///     vec![1.0],
    ///     vec![DVector::zeros(1)],
    ///     vec![DMatrix::identity(1, 1)],
    /// )?;
    /// let expected = -0.5 * (2.0 * std::f64::consts::PI).ln();
    /// assert!((gm.log_density(&[0.0])? - expected).abs() < 1e-15);
    /// assert!(gm.log_density(&[0.0, 1.0]).is_err());
    /// # Ok::<(), diffsmc_gaussian_mixture::GmError>(())
    /// ```
    pub fn log_density(&self, x: &[f64]) -> Result<f64> {
        if x.len() != self.dim {
            return Err(GmError::DimensionMismatch {
                what: "point length vs mixture dimension",
                expected: self.dim,
                got: x.len(),
            });
        }
        let mut scratch = vec![0.0; 2 * self.dim];
        let mut terms = vec![0.0; self.n_components()];
        Ok(self.log_density_with(x, &mut scratch, &mut terms))
    }

    /// The log-density at each of the `n` points of the particle-major buffer `xs` (`n·d`
    /// numbers).
    ///
    /// Errors: [`GmError::DimensionMismatch`] when `xs.len()` is not a multiple of `d`.
    ///
    /// ```
    /// use diffsmc_gaussian_mixture::GaussianMixture;
    /// use nalgebra::{DMatrix, DVector};
    /// let gm = GaussianMixture::new(vec![1.0], vec![DVector::zeros(2)], vec![DMatrix::identity(2, 2)])?;
    /// let lp = gm.log_densities(&[0.0, 0.0, 1.0, 1.0])?;
    /// assert_eq!(lp.len(), 2);
    /// assert!((lp[0] - lp[1] - 1.0).abs() < 1e-14);
    /// # Ok::<(), diffsmc_gaussian_mixture::GmError>(())
    /// ```
    pub fn log_densities(&self, xs: &[f64]) -> Result<Vec<f64>> {
        let n = points_in(xs, self.dim, "sample buffer length vs dimension")?;
        let mut scratch = vec![0.0; 2 * self.dim];
        let mut terms = vec![0.0; self.n_components()];
        Ok((0..n)
            .map(|p| {
                self.log_density_with(
                    &xs[p * self.dim..(p + 1) * self.dim],
                    &mut scratch,
                    &mut terms,
                )
            })
            .collect())
    }

    fn log_density_with(&self, x: &[f64], scratch: &mut [f64], terms: &mut [f64]) -> f64 {
        let d = self.dim;
        let (r, z) = scratch.split_at_mut(d);
        for (i, term) in terms.iter_mut().enumerate() {
            if self.log_weights[i] == f64::NEG_INFINITY {
                *term = f64::NEG_INFINITY;
                continue;
            }
            let m = &self.means[i];
            for k in 0..d {
                r[k] = x[k] - m[k];
            }
            let sq = forward_sub_sq_norm(&self.chol[i], r, z);
            *term = self.log_norm[i] - 0.5 * sq;
        }
        logsumexp(terms)
    }

    /// `n` exact draws, particle-major (`n·d` numbers).
    ///
    /// Point `p` uses stream `key.rng(p)` only (one uniform for the component, then `d`
    /// standard normals `z`, `x = m_i + L_i z`), so the draws are reproducible from the key and
    /// independent of how many points are drawn or in which order.
    ///
    /// ```
    /// use diffsmc::rng::{Purpose, StreamKey};
    /// use diffsmc_gaussian_mixture::GaussianMixture;
    /// use nalgebra::{DMatrix, DVector};
    /// let gm = GaussianMixture::new(vec![1.0], vec![DVector::zeros(3)], vec![DMatrix::identity(3, 3)])?;
    /// let key = StreamKey::new(1, 0, Purpose::Simulate);
    /// let a = gm.sample(10, key);
    /// let b = gm.sample(20, key);
    /// assert_eq!(a.len(), 30);
    /// assert_eq!(&a[..], &b[..30]); // a prefix of a longer draw
    /// # Ok::<(), diffsmc_gaussian_mixture::GmError>(())
    /// ```
    pub fn sample(&self, n: usize, key: StreamKey) -> Vec<f64> {
        let mut out = vec![0.0; n * self.dim];
        self.fill_samples(key, &mut out);
        out
    }

    /// Like [`GaussianMixture::sample`], writing `out.len() / d` draws into `out`.
    ///
    /// Errors: [`GmError::DimensionMismatch`] when `out.len()` is not a multiple of `d`.
    ///
    /// ```
    /// use diffsmc::rng::{Purpose, StreamKey};
    /// use diffsmc_gaussian_mixture::GaussianMixture;
    /// use nalgebra::{DMatrix, DVector};
    /// let gm = GaussianMixture::new(vec![1.0], vec![DVector::zeros(2)], vec![DMatrix::identity(2, 2)])?;
    /// let key = StreamKey::new(1, 0, Purpose::Simulate);
    /// let mut buf = vec![0.0; 8];
    /// gm.sample_into(key, &mut buf)?;
    /// assert_eq!(buf, gm.sample(4, key));
    /// # Ok::<(), diffsmc_gaussian_mixture::GmError>(())
    /// ```
    pub fn sample_into(&self, key: StreamKey, out: &mut [f64]) -> Result<()> {
        points_in(out, self.dim, "output buffer length vs dimension")?;
        self.fill_samples(key, out);
        Ok(())
    }

    fn fill_samples(&self, key: StreamKey, out: &mut [f64]) {
        let d = self.dim;
        let mut z = vec![0.0; d];
        for (p, x) in out.chunks_exact_mut(d).enumerate() {
            let mut rng = key.rng(p);
            self.sample_one(&mut rng, &mut z, x);
        }
    }

    /// The component index selected by a uniform `u ∈ [0, 1)`.
    fn component_for(&self, u: f64) -> usize {
        self.cum_weights.partition_point(|&c| c <= u)
    }

    fn sample_one(&self, rng: &mut StreamRng, z: &mut [f64], x: &mut [f64]) {
        let u: f64 = rng.random();
        let i = self.component_for(u);
        for zk in z.iter_mut() {
            *zk = standard_normal(rng);
        }
        let (m, l) = (&self.means[i], &self.chol[i]);
        for r in 0..self.dim {
            let mut s = m[r];
            for c in 0..=r {
                s += l[(r, c)] * z[c];
            }
            x[r] = s;
        }
    }
}

/// The number of `d`-dimensional points in a particle-major buffer, or a typed error.
pub(crate) fn points_in(xs: &[f64], d: usize, what: &'static str) -> Result<usize> {
    if d == 0 {
        return Err(GmError::invalid("dimension d", 0, "at least 1"));
    }
    if !xs.len().is_multiple_of(d) {
        return Err(GmError::DimensionMismatch {
            what,
            expected: xs.len().div_ceil(d) * d,
            got: xs.len(),
        });
    }
    Ok(xs.len() / d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffsmc::rng::Purpose;

    fn two_component() -> GaussianMixture {
        GaussianMixture::new(
            vec![0.3, 0.7],
            vec![
                DVector::from_row_slice(&[1.0, -1.0]),
                DVector::from_row_slice(&[-2.0, 0.5]),
            ],
            vec![
                DMatrix::from_row_slice(2, 2, &[2.0, 0.3, 0.3, 1.0]),
                DMatrix::from_row_slice(2, 2, &[0.5, -0.1, -0.1, 0.8]),
            ],
        )
        .unwrap()
    }

    #[test]
    fn zero_weight_components_are_never_sampled_nor_counted() {
        let gm = GaussianMixture::new(
            vec![0.0, 1.0, 0.0],
            vec![
                DVector::from_element(1, -100.0),
                DVector::from_element(1, 0.0),
                DVector::from_element(1, 100.0),
            ],
            vec![DMatrix::identity(1, 1); 3],
        )
        .unwrap();
        assert_eq!(gm.component_for(0.0), 1);
        assert_eq!(gm.component_for(0.999_999_999_999), 1);
        let xs = gm.sample(2000, StreamKey::new(3, 0, Purpose::Simulate));
        // A N(0, 1) draw beyond ±10 has probability ~1e-23: any such point came from a
        // zero-weight component.
        assert!(xs.iter().all(|x| x.abs() < 10.0));
        let lp = gm.log_density(&[0.0]).unwrap();
        assert!((lp + 0.5 * LN_2PI).abs() < 1e-15);
    }

    #[test]
    fn component_choice_follows_cumulative_weights() {
        let gm = two_component();
        assert_eq!(gm.component_for(0.0), 0);
        assert_eq!(gm.component_for(0.299), 0);
        assert_eq!(gm.component_for(0.3), 1);
        assert_eq!(gm.component_for(0.999_999), 1);
    }

    #[test]
    fn invalid_inputs_give_typed_errors() {
        let one = || vec![DMatrix::<f64>::identity(2, 2)];
        let mean = || vec![DVector::<f64>::zeros(2)];
        assert!(matches!(
            GaussianMixture::new(vec![-1.0], mean(), one()),
            Err(GmError::InvalidWeights { .. })
        ));
        assert!(matches!(
            GaussianMixture::new(vec![0.0], mean(), one()),
            Err(GmError::InvalidWeights { .. })
        ));
        assert!(matches!(
            GaussianMixture::new(vec![f64::NAN], mean(), one()),
            Err(GmError::InvalidWeights { .. })
        ));
        assert!(matches!(
            GaussianMixture::new(vec![1.0, 1.0], mean(), one()),
            Err(GmError::DimensionMismatch { .. })
        ));
        assert!(matches!(
            GaussianMixture::new(
                vec![1.0],
                vec![DVector::zeros(0)],
                vec![DMatrix::zeros(0, 0)]
            ),
            Err(GmError::InvalidParameter { .. })
        ));
        assert!(matches!(
            GaussianMixture::new(vec![1.0], vec![DVector::zeros(3)], one()),
            Err(GmError::DimensionMismatch { .. })
        ));
        assert!(matches!(
            GaussianMixture::new(
                vec![1.0],
                mean(),
                vec![DMatrix::from_row_slice(2, 2, &[1.0, 0.0, 0.0, -1.0])]
            ),
            Err(GmError::NotPositiveDefinite { index: Some(0), .. })
        ));
        assert!(matches!(
            GaussianMixture::new(
                vec![1.0],
                mean(),
                vec![DMatrix::from_row_slice(2, 2, &[1.0, 0.5, 0.0, 1.0])]
            ),
            Err(GmError::NotSymmetric { .. })
        ));
        assert!(matches!(
            GaussianMixture::new(vec![1.0], vec![DVector::from_element(2, f64::NAN)], one()),
            Err(GmError::NonFinite { .. })
        ));
        assert!(matches!(
            GaussianMixture::from_log_weights(vec![f64::NEG_INFINITY], mean(), one()),
            Err(GmError::InvalidWeights { .. })
        ));
        let gm = two_component();
        assert!(matches!(
            gm.log_densities(&[0.0; 3]),
            Err(GmError::DimensionMismatch { .. })
        ));
        assert!(matches!(
            gm.sample_into(StreamKey::new(0, 0, Purpose::Simulate), &mut [0.0; 5]),
            Err(GmError::DimensionMismatch { .. })
        ));
    }

    #[test]
    fn batch_and_single_log_density_agree() {
        let gm = two_component();
        let xs = gm.sample(50, StreamKey::new(11, 0, Purpose::Simulate));
        let batch = gm.log_densities(&xs).unwrap();
        for (p, lp) in batch.iter().enumerate() {
            assert_eq!(*lp, gm.log_density(&xs[2 * p..2 * p + 2]).unwrap());
        }
    }

    #[test]
    fn sampling_is_reproducible_and_key_dependent() {
        let gm = two_component();
        let k1 = StreamKey::new(5, 0, Purpose::Simulate);
        let k2 = StreamKey::new(6, 0, Purpose::Simulate);
        assert_eq!(gm.sample(100, k1), gm.sample(100, k1));
        assert_ne!(gm.sample(100, k1), gm.sample(100, k2));
    }
}
