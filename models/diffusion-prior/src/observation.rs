//! The linear Gaussian observation `y = H x + N(0, R)`.

use diffsmc::linalg::{cholesky_named, log_det_from_cholesky};
use diffsmc::{Result, SmcError};
use diffsmc_gaussian_mixture::GmProblem;
use nalgebra::{DMatrix, DVector};

pub(crate) const LN_2PI: f64 = 1.837_877_066_409_345_3;

/// A linear observation `y = H x + N(0, R)` of a state in R^d: `H` is `k × d`, `R` is `k × k`
/// symmetric positive definite. Stored row-major `f64`.
///
/// ```
/// use diffsmc_diffusion_prior::LinearObservation;
/// use nalgebra::{DMatrix, DVector};
/// let obs = LinearObservation::new(
///     &DMatrix::from_row_slice(1, 2, &[1.0, 1.0]),
///     &DMatrix::from_element(1, 1, 0.5),
///     &DVector::from_element(1, 2.0),
/// )?;
/// assert_eq!((obs.state_dim(), obs.obs_dim()), (2, 1));
/// // log N(2; 1 + 1, 0.5)
/// let expected = -0.5 * (2.0 * std::f64::consts::PI * 0.5).ln();
/// assert!((obs.log_likelihood(&[1.0, 1.0]) - expected).abs() < 1e-14);
/// assert!(LinearObservation::new(
///     &DMatrix::from_row_slice(1, 2, &[1.0, 1.0]),
///     &DMatrix::from_element(1, 1, -1.0),
///     &DVector::from_element(1, 2.0),
/// ).is_err());
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LinearObservation {
    d: usize,
    k: usize,
    h: Vec<f64>,
    r: Vec<f64>,
    y: Vec<f64>,
    r_chol: Vec<f64>,
    log_norm: f64,
}

impl LinearObservation {
    /// `H` (`k × d`, `k, d ≥ 1`), `R` (`k × k`, symmetric positive definite), `y` (length `k`),
    /// all finite.
    pub fn new(h: &DMatrix<f64>, r: &DMatrix<f64>, y: &DVector<f64>) -> Result<Self> {
        let (k, d) = h.shape();
        if k == 0 || d == 0 {
            return Err(SmcError::invalid(
                "H shape",
                format!("{k}×{d}"),
                "at least one row and one column",
            ));
        }
        if r.shape() != (k, k) {
            return Err(SmcError::DimensionMismatch {
                what: "size of R vs rows of H",
                expected: k,
                got: if r.nrows() != k { r.nrows() } else { r.ncols() },
            });
        }
        if y.len() != k {
            return Err(SmcError::DimensionMismatch {
                what: "length of y vs rows of H",
                expected: k,
                got: y.len(),
            });
        }
        for (what, v) in [
            ("H", h.as_slice()),
            ("R", r.as_slice()),
            ("y", y.as_slice()),
        ] {
            if let Some(&bad) = v.iter().find(|v| !v.is_finite()) {
                return Err(SmcError::invalid(what, bad, "finite entries"));
            }
        }
        let row_major = |m: &DMatrix<f64>| -> Vec<f64> {
            let (a, b) = m.shape();
            (0..a * b).map(|p| m[(p / b, p % b)]).collect()
        };
        let r_rm = row_major(r);
        if !diffsmc::linalg::is_symmetric(&r_rm, k, 1e-9) {
            return Err(SmcError::invalid(
                "R",
                "an asymmetric matrix",
                "a symmetric matrix",
            ));
        }
        let r_chol = cholesky_named(&r_rm, k, "R")?;
        let log_norm = -0.5 * (k as f64 * LN_2PI + log_det_from_cholesky(&r_chol, k));
        Ok(LinearObservation {
            d,
            k,
            h: row_major(h),
            r: r_rm,
            y: y.iter().copied().collect(),
            r_chol,
            log_norm,
        })
    }

    /// The observation of a Gaussian-mixture problem (`H`, `Ξ`, `y`).
    pub fn from_problem(problem: &GmProblem) -> Result<Self> {
        Self::new(problem.h(), problem.xi(), problem.y())
    }

    /// `d`.
    pub fn state_dim(&self) -> usize {
        self.d
    }

    /// `k`.
    pub fn obs_dim(&self) -> usize {
        self.k
    }

    /// `H`, row-major `k × d`.
    pub fn h(&self) -> &[f64] {
        &self.h
    }

    /// `R`, row-major `k × k`.
    pub fn r(&self) -> &[f64] {
        &self.r
    }

    /// `y`.
    pub fn y(&self) -> &[f64] {
        &self.y
    }

    /// `log N(y; H x, R)` for one point `x` (length `d`).
    ///
    /// # Panics
    /// If `x.len() != d`.
    pub fn log_likelihood(&self, x: &[f64]) -> f64 {
        assert_eq!(x.len(), self.d, "log_likelihood: point length");
        let mut resid: Vec<f64> = (0..self.k)
            .map(|a| {
                self.y[a]
                    - (0..self.d)
                        .map(|b| self.h[a * self.d + b] * x[b])
                        .sum::<f64>()
            })
            .collect();
        diffsmc::linalg::solve_lower(&self.r_chol, self.k, &mut resid);
        self.log_norm - 0.5 * resid.iter().map(|v| v * v).sum::<f64>()
    }
}
