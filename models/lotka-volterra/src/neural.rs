//! The neural state-space model: a learnt residual transition `x' = x + MLP([x, dW])·dt`.

use std::cell::RefCell;
use std::sync::Arc;

use diffsmc::grad::Parametric;
use diffsmc::prelude::*;
use diffsmc::rng::Purpose;
use diffsmc_nn::{Activation, Mlp, PreparedTheta};

use crate::X0;
use crate::data::{Observations, brownian};
use crate::known::obs_log_density;

/// Hidden width of the reference network.
pub const HIDDEN: usize = 32;

/// Stream tag of [`NeuralLv::simulate_learnt`] (`Purpose::Other`).
pub const PREDICT_STREAM_TAG: u32 = 0x4c56_5052; // "LVPR"

/// Scalar scratch kept on the stack for networks that need one (deeper than one hidden layer).
const STACK_SCRATCH: usize = 128;

thread_local! {
    /// Per-thread `f64` work space of the network evaluation (grown once, then reused).
    static WORK: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

/// The neural Lotka–Volterra family: transition `x' = x + MLP_θ([c, r, dW₁, dW₂])·dt` with
/// `dW ~ N(0, dt I₂)` drawn as `f64` per particle and step, the Poisson observation model of
/// the true system, and a deterministic initial state `x0 = (2, 5)` (every particle starts
/// there, so the `t = 0` observation adds the same constant to every run; the learnt part is
/// the transition only).
///
/// θ is the flat parameter vector of the network ([`diffsmc_nn::Mlp`] layout: `W₀` row-major
/// 32×4, `b₀`, `W₁` 2×32, `b₁`; 226 parameters for the reference 4 → 32 → 2 swish network).
/// [`Parametric::model`] copies θ once into the model; every transition evaluates the network
/// from that flat slice, allocation-free.
///
/// ```
/// use diffsmc::grad::{Parametric, ParticleFilterNll, value};
/// use diffsmc::prelude::*;
/// use diffsmc_lotka_volterra::{LvParams, NeuralLv, SimConfig, simulate};
///
/// let sim = simulate(&LvParams::paper(), &SimConfig::paper(), 1)?;
/// let fam = NeuralLv::new(sim.observations.truncated(64)?, 7)?;
/// let theta = fam.initial_theta();
/// assert_eq!(fam.n_params(), 226);
/// let smc = SmcConfig::new(16)?;
/// let loss = value(&ParticleFilterNll::new(&fam, &smc, &ResamplerSpec::Systematic, 0), &theta)?;
/// assert!(loss.is_finite());
/// // Predictions from the (untrained) model.
/// let paths = fam.simulate_learnt(&theta, 10, 0)?;
/// assert_eq!((paths.len(), paths[0].len()), (10, 65));
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone)]
pub struct NeuralLv {
    net: Arc<Mlp>,
    obs: Arc<Observations>,
    x0: [f64; 2],
}

impl NeuralLv {
    /// The reference family for `obs`: a 4 → 32 → 2 swish network whose initial parameters
    /// ([`NeuralLv::initial_theta`]) are Glorot-uniform weights and zero biases from `seed`.
    pub fn new(obs: Observations, seed: u64) -> Result<Self> {
        let net = Mlp::new(&[4, HIDDEN, 2], Activation::Swish, seed)?;
        Self::with_network(obs, net)
    }

    /// A family with any network of 4 inputs (`c, r, dW₁, dW₂`) and 2 outputs (the drift
    /// of `c` and `r` per unit time).
    pub fn with_network(obs: Observations, net: Mlp) -> Result<Self> {
        if net.n_inputs() != 4 {
            return Err(SmcError::DimensionMismatch {
                what: "network inputs (c, r, dW1, dW2)",
                expected: 4,
                got: net.n_inputs(),
            });
        }
        if net.n_outputs() != 2 {
            return Err(SmcError::DimensionMismatch {
                what: "network outputs",
                expected: 2,
                got: net.n_outputs(),
            });
        }
        Ok(NeuralLv {
            net: Arc::new(net),
            obs: Arc::new(obs),
            x0: X0,
        })
    }

    /// Sets the (deterministic) initial state.
    pub fn with_x0(mut self, x0: [f64; 2]) -> Self {
        self.x0 = x0;
        self
    }

    /// The network (its owned parameters are the initial θ).
    pub fn network(&self) -> &Mlp {
        &self.net
    }

    /// The observations.
    pub fn observations(&self) -> &Observations {
        &self.obs
    }

    /// The initial parameter vector (the network's Glorot-uniform draw).
    pub fn initial_theta(&self) -> Vec<f64> {
        self.net.to_flat()
    }

    /// `n_paths` trajectories of the learnt model at `theta` over the observation grid
    /// (`n_steps + 1` states each, `x0` first), for predictions.
    pub fn simulate_learnt(
        &self,
        theta: &[f64],
        n_paths: usize,
        seed: u64,
    ) -> Result<Vec<Vec<[f64; 2]>>> {
        self.simulate_learnt_steps(theta, self.obs.n_steps(), n_paths, seed)
    }

    /// [`NeuralLv::simulate_learnt`] over `n_steps` steps of the observations' `dt` (to
    /// predict beyond the data). Path `p` draws the increments of step `j` from stream `p` of
    /// `StreamKey::new(seed, j, Purpose::Other(PREDICT_STREAM_TAG))`.
    pub fn simulate_learnt_steps(
        &self,
        theta: &[f64],
        n_steps: usize,
        n_paths: usize,
        seed: u64,
    ) -> Result<Vec<Vec<[f64; 2]>>> {
        let model = self.build::<f64>(theta)?;
        let keys: Vec<StreamKey> = (1..=n_steps)
            .map(|j| StreamKey::new(seed, j, Purpose::Other(PREDICT_STREAM_TAG)))
            .collect();
        Ok((0..n_paths)
            .map(|p| {
                let mut x = self.x0;
                let mut path = Vec::with_capacity(n_steps + 1);
                path.push(x);
                for (j, key) in keys.iter().enumerate() {
                    let mut next = [0.0; 2];
                    model.sample_transition(j + 1, &x, &mut key.rng(p), &mut next);
                    x = next;
                    path.push(x);
                }
                path
            })
            .collect())
    }

    fn build<S: Scalar>(&self, theta: &[S]) -> Result<NeuralLvModel<S>> {
        if theta.len() != self.net.n_params() {
            return Err(SmcError::DimensionMismatch {
                what: "network parameter vector θ",
                expected: self.net.n_params(),
                got: theta.len(),
            });
        }
        Ok(NeuralLvModel {
            prep: self.net.prepare(theta),
            net: self.net.clone(),
            obs: self.obs.clone(),
            x0: self.x0,
        })
    }
}

impl Parametric for NeuralLv {
    type Model<S: Scalar> = Bootstrap<NeuralLvModel<S>>;
    fn n_params(&self) -> usize {
        self.net.n_params()
    }
    fn model<S: Scalar>(&self, theta: &[S]) -> Result<Self::Model<S>> {
        Ok(Bootstrap(self.build(theta)?))
    }
}

/// The neural state-space model at one θ (of scalar type `S`); see [`NeuralLv`].
#[derive(Debug, Clone)]
pub struct NeuralLvModel<S> {
    prep: PreparedTheta<S>,
    net: Arc<Mlp>,
    obs: Arc<Observations>,
    x0: [f64; 2],
}

impl<S: Scalar> NeuralLvModel<S> {
    /// The parameters the model was built from.
    pub fn theta(&self) -> &[S] {
        self.prep.theta()
    }

    /// `x' = x + MLP_θ([x, dW])·dt` for given increments. Uses
    /// [`Mlp::forward_prepared`]: on `f64` the plain forward pass; on the duals of a chunked
    /// gradient an `f64` forward and backward pass plus a few dual operations for the
    /// parameters of the chunk. The `f64` work space is a per-thread buffer reused across
    /// calls; the scalar scratch (needed only by networks with two or more hidden layers on
    /// other than `f64` or the num-dual first-order types) lives on the stack up to
    /// 128 scalars. So the step does not allocate for any network of practical size.
    #[inline]
    pub fn step(&self, x_prev: &[S], dw: [f64; 2], x: &mut [S]) {
        let dt = self.obs.dt();
        let input = [x_prev[0], x_prev[1], S::cst(dw[0]), S::cst(dw[1])];
        let mut f = [S::zero(); 2];
        let (need, need_f) = self.net.prepared_scratch_len();
        WORK.with_borrow_mut(|work| {
            if work.len() < need_f {
                work.resize(need_f, 0.0);
            }
            let work = &mut work[..need_f];
            if need == 0 {
                self.net
                    .forward_prepared(&self.prep, &input, &mut f, &mut [], work);
            } else if need <= STACK_SCRATCH {
                let mut scratch = [S::zero(); STACK_SCRATCH];
                self.net
                    .forward_prepared(&self.prep, &input, &mut f, &mut scratch, work);
            } else {
                let mut scratch = vec![S::zero(); need];
                self.net
                    .forward_prepared(&self.prep, &input, &mut f, &mut scratch, work);
            }
        });
        x[0] = x_prev[0] + f[0] * dt;
        x[1] = x_prev[1] + f[1] * dt;
    }
}

impl<S: Scalar> StateSpaceModel<S> for NeuralLvModel<S> {
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
        let dw = brownian(rng, self.obs.dt().sqrt());
        self.step(x_prev, dw, x);
    }
    #[inline]
    fn observation_log_density(&self, t: usize, x: &[S]) -> S {
        obs_log_density(&self.obs, t, x)
    }
}
