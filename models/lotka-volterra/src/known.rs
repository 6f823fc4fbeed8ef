//! The state-space model with the known (true) dynamics.

use std::sync::Arc;

use diffsmc::grad::Parametric;
use diffsmc::prelude::*;

use crate::X0;
use crate::data::{Observations, brownian};
use crate::sde::LvParams;

/// Observation log-density shared by the known and the neural models:
/// `Σ_k log Poisson(y_t,k | λ_k(x))` with the logistic rates, stable in the tails.
#[inline]
pub(crate) fn obs_log_density<S: Scalar>(obs: &Observations, t: usize, x: &[S]) -> S {
    let y = obs.counts()[t];
    let lf = obs.ln_factorials()[t];
    let z = crate::sde::logits(x);
    crate::poisson::logistic_poisson_log_pmf(y[0], z[0], crate::RATE_SCALE, lf[0])
        + crate::poisson::logistic_poisson_log_pmf(y[1], z[1], crate::RATE_SCALE, lf[1])
}

/// The Lotka–Volterra state-space model with known dynamics: deterministic `x_0 = x0`,
/// Milstein transitions with step `dt` of the observations, Poisson observations at every
/// step (`t = 0` included). Generic over the scalar, parameters included; wrap it in
/// [`Bootstrap`] to filter. Its negative log-likelihood estimate is the experiment's "target
/// loss".
///
/// Each transition draws its two standard normals from the particle's stream, so with the
/// same seed the known and the neural models see the same Brownian increments.
///
/// ```
/// use std::sync::Arc;
/// use diffsmc::prelude::*;
/// use diffsmc_lotka_volterra::{LvModel, LvParams, SimConfig, simulate};
///
/// let sim = simulate(&LvParams::paper(), &SimConfig::paper(), 3)?;
/// let model = Bootstrap(LvModel::new(LvParams::paper(), Arc::new(sim.observations)));
/// let out: SmcOutput<f64> = Smc::new(SmcConfig::new(64)?).run(&model, &Systematic, 0)?;
/// let target_loss = -out.log_likelihood;
/// assert!(target_loss.is_finite());
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone)]
pub struct LvModel<S> {
    params: LvParams<S>,
    obs: Arc<Observations>,
    x0: [f64; 2],
}

impl<S: Scalar> LvModel<S> {
    /// The model with parameters `params` for the observations `obs`, started at
    /// `x0 = (2, 5)`.
    pub fn new(params: LvParams<f64>, obs: Arc<Observations>) -> Self {
        Self::with_params(params.cast(), obs)
    }

    /// The model with parameters of scalar type `S` (e.g. duals seeded for a gradient).
    pub fn with_params(params: LvParams<S>, obs: Arc<Observations>) -> Self {
        LvModel {
            params,
            obs,
            x0: X0,
        }
    }

    /// Sets the (deterministic) initial state.
    pub fn with_x0(mut self, x0: [f64; 2]) -> Self {
        self.x0 = x0;
        self
    }

    /// The parameters.
    pub fn params(&self) -> &LvParams<S> {
        &self.params
    }

    /// The observations.
    pub fn observations(&self) -> &Observations {
        &self.obs
    }
}

impl<S: Scalar> StateSpaceModel<S> for LvModel<S> {
    fn state_dim(&self) -> usize {
        2
    }
    fn n_observations(&self) -> usize {
        self.obs.len()
    }
    fn sample_initial(&self, _rng: &mut StreamRng, x: &mut [S]) {
        x[0] = S::cst(self.x0[0]);
        x[1] = S::cst(self.x0[1]);
    }
    #[inline]
    fn sample_transition(&self, _t: usize, x_prev: &[S], rng: &mut StreamRng, x: &mut [S]) {
        let dt = self.obs.dt();
        let dw = brownian(rng, dt.sqrt());
        self.params.milstein_step(x_prev, dw, dt, x);
    }
    #[inline]
    fn observation_log_density(&self, t: usize, x: &[S]) -> S {
        obs_log_density(&self.obs, t, x)
    }
}

/// The known-dynamics model as a [`Parametric`] family in `θ = (α, β, ζ, γ, σ)`, for
/// gradients of the filter's log-likelihood w.r.t. the SDE parameters.
///
/// ```
/// use diffsmc::grad::{GradOptions, Parametric, ParticleFilterNll, gradient};
/// use diffsmc::prelude::*;
/// use diffsmc_lotka_volterra::{KnownLv, LvParams, SimConfig, simulate};
///
/// let sim = simulate(&LvParams::paper(), &SimConfig::paper(), 3)?;
/// let fam = KnownLv::new(sim.observations.truncated(32)?);
/// let theta = KnownLv::theta(&LvParams::paper());
/// let (nll, grad) =
///     gradient(&ParticleFilterNll::new(&fam, &SmcConfig::new(32)?, &ResamplerSpec::Systematic, 0), &theta, &GradOptions::default())?;
/// assert!(nll.is_finite() && grad.len() == 5);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone)]
pub struct KnownLv {
    obs: Arc<Observations>,
    x0: [f64; 2],
}

impl KnownLv {
    /// The family for these observations, started at `x0 = (2, 5)`.
    pub fn new(obs: Observations) -> Self {
        KnownLv {
            obs: Arc::new(obs),
            x0: X0,
        }
    }
    /// Sets the (deterministic) initial state.
    pub fn with_x0(mut self, x0: [f64; 2]) -> Self {
        self.x0 = x0;
        self
    }
    /// `θ = (α, β, ζ, γ, σ)` of a parameter set.
    pub fn theta(p: &LvParams<f64>) -> [f64; 5] {
        [p.alpha, p.beta, p.zeta, p.gamma, p.sigma]
    }
}

impl Parametric for KnownLv {
    type Model<S: Scalar> = Bootstrap<LvModel<S>>;
    fn n_params(&self) -> usize {
        5
    }
    fn model<S: Scalar>(&self, theta: &[S]) -> Result<Self::Model<S>> {
        if theta.len() != 5 {
            return Err(SmcError::DimensionMismatch {
                what: "Lotka–Volterra parameters (α, β, ζ, γ, σ)",
                expected: 5,
                got: theta.len(),
            });
        }
        let params = LvParams {
            alpha: theta[0],
            beta: theta[1],
            zeta: theta[2],
            gamma: theta[3],
            sigma: theta[4],
        };
        Ok(Bootstrap(
            LvModel::with_params(params, self.obs.clone()).with_x0(self.x0),
        ))
    }
}
