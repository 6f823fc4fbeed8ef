//! Model traits: Feynman–Kac models, state-space models and the bootstrap adapter.

use crate::error::{Result, SmcError};
use crate::rng::StreamRng;
use crate::scalar::Scalar;

/// A Feynman–Kac model: an initial distribution `M0`, Markov kernels `M_t`, and log-potentials
/// `log G_t`, over states in `R^d`, for steps `t = 0 .. n_steps()`.
///
/// Randomness is reparameterised: draw noise as `f64` from `rng` and transform it with the
/// (possibly dual-number) parameters, so derivatives flow through the samples.
///
/// ```
/// use diffsmc::prelude::*;
///
/// /// x_t = 0.9 x_{t-1} + N(0, 1), G_t(x) = N(y_t; x, 1).
/// struct Ar1 { ys: Vec<f64> }
///
/// impl<S: Scalar> FeynmanKac<S> for Ar1 {
///     fn dim(&self) -> usize { 1 }
///     fn n_steps(&self) -> usize { self.ys.len() }
///     fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
///         x[0] = S::cst(standard_normal(rng));
///     }
///     fn log_potential_initial(&self, x: &[S]) -> S {
///         let r = x[0] - self.ys[0];
///         r * r * -0.5
///     }
///     fn sample_transition(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) {
///         x[0] = xp[0] * 0.9 + standard_normal(rng);
///     }
///     fn log_potential(&self, t: usize, _xp: &[S], x: &[S]) -> S {
///         let r = x[0] - self.ys[t];
///         r * r * -0.5
///     }
/// }
///
/// let model = Ar1 { ys: vec![0.1, -0.3, 0.5] };
/// let config = SmcConfig::new(64).unwrap();
/// let out: SmcOutput<f64> = Smc::new(config).run(&model, &Systematic, 1).unwrap();
/// assert!(out.log_likelihood.is_finite());
/// ```
pub trait FeynmanKac<S: Scalar>: Sync {
    /// State dimension `d`.
    fn dim(&self) -> usize;
    /// Number of steps (the initial step `t = 0` included).
    fn n_steps(&self) -> usize;
    /// Draws `x ~ M0`.
    fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]);
    /// `log G_0(x)`.
    fn log_potential_initial(&self, x: &[S]) -> S;
    /// Draws `x ~ M_t(x_prev, ·)` for `t ≥ 1`.
    fn sample_transition(&self, t: usize, x_prev: &[S], rng: &mut StreamRng, x: &mut [S]);
    /// `log G_t(x_prev, x)` for `t ≥ 1`.
    fn log_potential(&self, t: usize, x_prev: &[S], x: &[S]) -> S;

    /// Why this model's weights are valid only if every resampled particle is a copy of a
    /// weighted particle, or `None` (the default: any resampler). A model whose potential
    /// divides by the previous step's target density at `x_prev` (an SMC sampler with a
    /// backward kernel, such as the diffusion-prior posterior sampler) returns a reason: a
    /// resampler that moves particles (diffusion, OT, Gumbel-softmax) can hand the move a point
    /// where that density is tiny, and the weight then explodes. [`crate::Smc::run`] refuses
    /// such a pair with [`crate::SmcError::IncompatibleResampler`] carrying the reason.
    fn requires_index_resampling(&self) -> Option<&'static str> {
        None
    }
}

/// A state-space model: hidden Markov states with an observation density. The data live in
/// the model; `observation_log_density(t, x)` is `log p(y_t | x_t = x)` and must return zero
/// when `y_t` is missing (NaN).
pub trait StateSpaceModel<S: Scalar>: Sync {
    /// State dimension.
    fn state_dim(&self) -> usize;
    /// Number of observations `y_0 .. y_{T-1}`.
    fn n_observations(&self) -> usize;
    /// Draws `x_0 ~ p(x_0)`.
    fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]);
    /// Draws `x_t ~ p(x_t | x_{t-1})`.
    fn sample_transition(&self, t: usize, x_prev: &[S], rng: &mut StreamRng, x: &mut [S]);
    /// `log p(y_t | x_t)`, zero when `y_t` is missing.
    fn observation_log_density(&self, t: usize, x: &[S]) -> S;

    /// Whether [`StateSpaceModel::transition_log_density`] and
    /// [`StateSpaceModel::initial_log_density`] are available. Algorithms that need them
    /// (smoothers, particle Gibbs, guided filters) check this first and return
    /// [`SmcError::Unsupported`] naming themselves when it is `false`. Default `false`.
    fn has_transition_density(&self) -> bool {
        false
    }

    /// `log p(x_t = x | x_{t-1} = x_prev)` for `t ≥ 1`, written for any scalar so that it is
    /// differentiable in the parameters. Default: [`SmcError::Unsupported`].
    ///
    /// ```
    /// use diffsmc::prelude::*;
    /// struct Rw;
    /// impl<S: Scalar> StateSpaceModel<S> for Rw {
    ///     fn state_dim(&self) -> usize { 1 }
    ///     fn n_observations(&self) -> usize { 2 }
    ///     fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) { x[0] = S::cst(standard_normal(rng)); }
    ///     fn sample_transition(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) {
    ///         x[0] = xp[0] + standard_normal(rng);
    ///     }
    ///     fn observation_log_density(&self, _t: usize, _x: &[S]) -> S { S::zero() }
    /// }
    /// let err = StateSpaceModel::<f64>::transition_log_density(&Rw, 1, &[0.0], &[0.0]).unwrap_err();
    /// assert!(matches!(err, SmcError::Unsupported { what: "transition density", .. }));
    /// ```
    fn transition_log_density(&self, t: usize, x_prev: &[S], x: &[S]) -> Result<S> {
        let _ = (t, x_prev, x);
        Err(SmcError::Unsupported {
            what: "transition density",
            needed_by: "this algorithm",
        })
    }

    /// `log p(x_0 = x)`. Default: [`SmcError::Unsupported`].
    fn initial_log_density(&self, x: &[S]) -> Result<S> {
        let _ = x;
        Err(SmcError::Unsupported {
            what: "initial density",
            needed_by: "this algorithm",
        })
    }

    /// An upper bound `log sup_{x, x'} p(x | x')` of the transition density at step `t`, when
    /// one is known (it enables O(N) rejection backward sampling). Default `None`.
    fn transition_log_density_bound(&self, t: usize) -> Option<f64> {
        let _ = t;
        None
    }
}

/// The bootstrap Feynman–Kac model of a state-space model: propose from the transition,
/// weight by the observation density.
#[derive(Debug, Clone)]
pub struct Bootstrap<M>(pub M);

impl<M> Bootstrap<M> {
    /// Wraps a state-space model.
    pub fn new(model: M) -> Self {
        Bootstrap(model)
    }
    /// The wrapped state-space model.
    pub fn inner(&self) -> &M {
        &self.0
    }
}

impl<S: Scalar, M: StateSpaceModel<S>> FeynmanKac<S> for Bootstrap<M> {
    fn dim(&self) -> usize {
        self.0.state_dim()
    }
    fn n_steps(&self) -> usize {
        self.0.n_observations()
    }
    fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
        self.0.sample_initial(rng, x)
    }
    fn log_potential_initial(&self, x: &[S]) -> S {
        self.0.observation_log_density(0, x)
    }
    fn sample_transition(&self, t: usize, x_prev: &[S], rng: &mut StreamRng, x: &mut [S]) {
        self.0.sample_transition(t, x_prev, rng, x)
    }
    fn log_potential(&self, t: usize, _x_prev: &[S], x: &[S]) -> S {
        self.0.observation_log_density(t, x)
    }
}

impl<S: Scalar, M: FeynmanKac<S> + ?Sized> FeynmanKac<S> for &M {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn n_steps(&self) -> usize {
        (**self).n_steps()
    }
    fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
        (**self).sample_initial(rng, x)
    }
    fn log_potential_initial(&self, x: &[S]) -> S {
        (**self).log_potential_initial(x)
    }
    fn sample_transition(&self, t: usize, x_prev: &[S], rng: &mut StreamRng, x: &mut [S]) {
        (**self).sample_transition(t, x_prev, rng, x)
    }
    fn log_potential(&self, t: usize, x_prev: &[S], x: &[S]) -> S {
        (**self).log_potential(t, x_prev, x)
    }
    fn requires_index_resampling(&self) -> Option<&'static str> {
        (**self).requires_index_resampling()
    }
}

/// A family of state-space models indexed by θ ∈ R^p, buildable for any scalar (like
/// [`crate::grad::Parametric`], whose models are Feynman–Kac models): what
/// [`crate::smooth::fisher_score`] differentiates and [`crate::bayes::ParticleGibbs`] samples. The LGSSM parametrisations (`diffsmc_lgssm::PaperParams`,
/// `GeneralParams`) implement it.
pub trait ParametricSsm: Sync {
    /// The state-space model for scalar `S`.
    type Ssm<S: Scalar>: StateSpaceModel<S>;
    /// Number of parameters `p`.
    fn n_params(&self) -> usize;
    /// The model at `theta` (length `n_params()`).
    fn ssm<S: Scalar>(&self, theta: &[S]) -> Result<Self::Ssm<S>>;
}
