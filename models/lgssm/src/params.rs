//! Parametrisations of the linear Gaussian model for gradients and fitting.

use diffsmc::grad::{LinearGaussianParametric, Parametric};
use diffsmc::kalman::LinearGaussian;
use diffsmc::{Bootstrap, Result, Scalar, SmcError};
use nalgebra::{DMatrix, DVector};

use crate::{Lgssm, LgssmData};

fn check_rows(ys: &[Vec<f64>], dy: usize) -> Result<()> {
    if let Some(y) = ys.iter().find(|y| y.len() != dy) {
        return Err(SmcError::DimensionMismatch {
            what: "observation length",
            expected: dy,
            got: y.len(),
        });
    }
    Ok(())
}

/// The paper's parametrisation `θ = (θ1, θ2)`: `A = θ1 I`, `H = θ2 I`, `Q = I`, `R = 0.5 I`,
/// `m0 = 0`, `P0 = I` in dimension `d`, with fixed observations.
///
/// ```
/// use diffsmc::grad::{GradOptions, KalmanNll, ParticleFilterNll, gradient};
/// use diffsmc::{ResamplerSpec, SmcConfig};
/// use diffsmc_lgssm::{Lgssm, PaperParams};
/// let (_, ys) = Lgssm::paper(0.5, 1.0, 1)?.simulate(50, 3);
/// let p = PaperParams::new(1, ys)?;
/// let (nll, g) = gradient(&KalmanNll(&p), &[0.5, 1.0], &GradOptions::default())?;
/// let (nll_pf, g_pf) = gradient(&ParticleFilterNll::new(&p, &SmcConfig::new(64)?, &ResamplerSpec::Systematic, 1), &[0.5, 1.0], &GradOptions::default())?;
/// assert!((nll - nll_pf).abs() < 5.0 && g.len() == 2 && g_pf.len() == 2);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone)]
pub struct PaperParams {
    d: usize,
    ys: Vec<Vec<f64>>,
}

impl PaperParams {
    /// Observations `ys` (each of length `d`).
    pub fn new(d: usize, ys: Vec<Vec<f64>>) -> Result<Self> {
        if d == 0 {
            return Err(SmcError::invalid("dimension d", d, "at least 1"));
        }
        check_rows(&ys, d)?;
        Ok(PaperParams { d, ys })
    }
    /// The observations.
    pub fn ys(&self) -> &[Vec<f64>] {
        &self.ys
    }
    /// The dimension.
    pub fn dim(&self) -> usize {
        self.d
    }
}

impl Parametric for PaperParams {
    type Model<S: Scalar> = Bootstrap<LgssmData<S>>;
    fn n_params(&self) -> usize {
        2
    }
    fn model<S: Scalar>(&self, theta: &[S]) -> Result<Self::Model<S>> {
        Ok(Bootstrap(
            Lgssm::paper(theta[0], theta[1], self.d)?.with_data(self.ys.clone())?,
        ))
    }
}

impl LinearGaussianParametric for PaperParams {
    fn n_params(&self) -> usize {
        2
    }
    fn linear_gaussian<S: Scalar>(&self, theta: &[S]) -> Result<LinearGaussian<S>> {
        Ok(Lgssm::paper(theta[0], theta[1], self.d)?
            .linear_gaussian()
            .clone())
    }
    fn observations(&self) -> &[Vec<f64>] {
        &self.ys
    }
}

/// A general parametrisation: `θ = (vec A, vec H, log σ_Q, log σ_R)` with `A` (`dx × dx`)
/// and `H` (`dy × dx`) row-major, and diagonal `Q = diag(σ_Q²)`, `R = diag(σ_R²)`; `m0` and
/// `P0` fixed. `n_params = dx² + dy·dx + dx + dy`.
///
/// ```
/// use diffsmc::grad::{GradOptions, KalmanNll, gradient};
/// use diffsmc_lgssm::GeneralParams;
/// use nalgebra::{DMatrix, DVector};
/// let ys = vec![vec![0.1, 0.2], vec![-0.3, 0.4], vec![0.5, f64::NAN]];
/// let p = GeneralParams::new(1, 2, DVector::zeros(1), DMatrix::identity(1, 1), ys)?;
/// assert_eq!(p.n_params(), 1 + 2 + 1 + 2);
/// let theta = [0.5, 1.0, 0.7, 0.0, (0.5f64).ln(), (0.5f64).ln()];
/// let (nll, g) = gradient(&KalmanNll(&p), &theta, &GradOptions::default())?;
/// assert!(nll.is_finite() && g.iter().all(|v| v.is_finite()));
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone)]
pub struct GeneralParams {
    dx: usize,
    dy: usize,
    m0: DVector<f64>,
    p0: DMatrix<f64>,
    ys: Vec<Vec<f64>>,
}

impl GeneralParams {
    /// State dimension `dx`, observation dimension `dy`, fixed `m0`, `P0`, observations.
    pub fn new(
        dx: usize,
        dy: usize,
        m0: DVector<f64>,
        p0: DMatrix<f64>,
        ys: Vec<Vec<f64>>,
    ) -> Result<Self> {
        if dx == 0 {
            return Err(SmcError::invalid("state dimension dx", dx, "at least 1"));
        }
        if dy == 0 {
            return Err(SmcError::invalid(
                "observation dimension dy",
                dy,
                "at least 1",
            ));
        }
        if m0.len() != dx {
            return Err(SmcError::DimensionMismatch {
                what: "m0",
                expected: dx,
                got: m0.len(),
            });
        }
        if p0.shape() != (dx, dx) {
            return Err(SmcError::DimensionMismatch {
                what: "P0 rows",
                expected: dx,
                got: p0.nrows(),
            });
        }
        check_rows(&ys, dy)?;
        Ok(GeneralParams { dx, dy, m0, p0, ys })
    }

    /// Number of parameters.
    pub fn n_params(&self) -> usize {
        self.dx * self.dx + self.dy * self.dx + self.dx + self.dy
    }

    /// The model at θ.
    pub fn lgssm<S: Scalar>(&self, theta: &[S]) -> Result<Lgssm<S>> {
        let (dx, dy) = (self.dx, self.dy);
        if theta.len() != self.n_params() {
            return Err(SmcError::DimensionMismatch {
                what: "parameter vector θ",
                expected: self.n_params(),
                got: theta.len(),
            });
        }
        let a = DMatrix::from_row_slice(dx, dx, &theta[..dx * dx]);
        let h = DMatrix::from_row_slice(dy, dx, &theta[dx * dx..dx * dx + dy * dx]);
        let off = dx * dx + dy * dx;
        let q = DMatrix::from_fn(dx, dx, |i, j| {
            if i == j {
                (theta[off + i] * 2.0).exp()
            } else {
                S::zero()
            }
        });
        let r = DMatrix::from_fn(dy, dy, |i, j| {
            if i == j {
                (theta[off + dx + i] * 2.0).exp()
            } else {
                S::zero()
            }
        });
        let m0 = self.m0.map(S::cst);
        let p0 = self.p0.map(S::cst);
        Lgssm::new(a, q, h, r, m0, p0)
    }
}

impl Parametric for GeneralParams {
    type Model<S: Scalar> = Bootstrap<LgssmData<S>>;
    fn n_params(&self) -> usize {
        GeneralParams::n_params(self)
    }
    fn model<S: Scalar>(&self, theta: &[S]) -> Result<Self::Model<S>> {
        Ok(Bootstrap(self.lgssm(theta)?.with_data(self.ys.clone())?))
    }
}

impl LinearGaussianParametric for GeneralParams {
    fn n_params(&self) -> usize {
        GeneralParams::n_params(self)
    }
    fn linear_gaussian<S: Scalar>(&self, theta: &[S]) -> Result<LinearGaussian<S>> {
        Ok(self.lgssm(theta)?.linear_gaussian().clone())
    }
    fn observations(&self) -> &[Vec<f64>] {
        &self.ys
    }
}

/// The state-space models of the paper's parametrisation, for the smoothers' Fisher-identity
/// score ([`diffsmc::smooth::fisher_score`]).
impl diffsmc::model::ParametricSsm for PaperParams {
    type Ssm<S: Scalar> = LgssmData<S>;
    fn n_params(&self) -> usize {
        2
    }
    fn ssm<S: Scalar>(&self, theta: &[S]) -> Result<LgssmData<S>> {
        Ok(self.model(theta)?.0)
    }
}

/// The state-space models of the general parametrisation, for
/// [`diffsmc::smooth::fisher_score`].
impl diffsmc::model::ParametricSsm for GeneralParams {
    type Ssm<S: Scalar> = LgssmData<S>;
    fn n_params(&self) -> usize {
        GeneralParams::n_params(self)
    }
    fn ssm<S: Scalar>(&self, theta: &[S]) -> Result<LgssmData<S>> {
        self.lgssm(theta)?.with_data(self.ys.clone())
    }
}
