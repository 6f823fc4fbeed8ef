//! Model traits: Feynman–Kac models, state-space models and the bootstrap adapter.

use crate::error::{Result, SmcError};
use crate::rng::{StreamKey, StreamRng};
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

    /// Moves the contiguous block of particles `first .. first + m` (`m = log_g.len()`) to
    /// step `t` and writes their log-potentials: for each `j < m`, particle `i = first + j`
    /// draws from stream `key.rng(i)` (`key` from [`crate::smc::step::move_key`]);
    /// `x_prev` is `None` at step 0 (then `x_j ~ M_0`, `log_g[j] = log G_0(x_j)`), else the
    /// block's previous states (`x_j ~ M_t(x_prev_j, ·)`, `log_g[j] = log G_t(x_prev_j, x_j)`).
    /// `x_prev` (when given) and `x` hold the block's states one after another
    /// (`m · dim()` values, particle `j` at `j · dim() ..`).
    ///
    /// The engine's drivers (the forward run of [`crate::Smc`] and the checkpointed reverse
    /// pass of [`crate::grad`]) call this on fixed blocks of particles, so a model can
    /// evaluate expensive parts (e.g. a neural network) for all of a block's particles at once.
    ///
    /// **Contract.** The default is exactly the per-particle loop of
    /// [`crate::smc::step::move_particle`]. An override MUST give bit-identical states and
    /// log-potentials (the same values, and for tape scalars the same derivatives up to the
    /// order in which adjoints are summed) to that loop, for every `first` and `m`: other
    /// drivers (SMC², the distributed filters) still move particles one at a time, and results
    /// must not depend on the block size or the number of threads. In practice: draw each
    /// particle's noise from its own stream, in the order the per-particle methods draw it,
    /// and compute every output element with the same operations in the same order.
    ///
    /// ```
    /// use diffsmc::prelude::*;
    /// use diffsmc::smc::step::{move_key, move_particle};
    ///
    /// struct Rw;
    /// impl<S: Scalar> FeynmanKac<S> for Rw {
    ///     fn dim(&self) -> usize { 1 }
    ///     fn n_steps(&self) -> usize { 2 }
    ///     fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) { x[0] = S::cst(standard_normal(rng)); }
    ///     fn log_potential_initial(&self, x: &[S]) -> S { x[0] * x[0] * -0.5 }
    ///     fn sample_transition(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) {
    ///         x[0] = xp[0] + standard_normal(rng);
    ///     }
    ///     fn log_potential(&self, _t: usize, _xp: &[S], x: &[S]) -> S { x[0] * x[0] * -0.5 }
    /// }
    /// // Particles 5, 6, 7 at step 1 from the block method and one at a time: the same bits.
    /// let key = move_key(9, 1);
    /// let xp = [0.1, -0.2, 0.3];
    /// let (mut x, mut g) = ([0.0; 3], [0.0; 3]);
    /// FeynmanKac::<f64>::move_block(&Rw, 1, key, 5, Some(&xp), &mut x, &mut g);
    /// for j in 0..3 {
    ///     let mut xj = [0.0];
    ///     let gj = move_particle(&Rw, 1, key, 5 + j, Some(&xp[j..j + 1]), &mut xj);
    ///     assert_eq!((xj[0].to_bits(), gj.to_bits()), (x[j].to_bits(), g[j].to_bits()));
    /// }
    /// ```
    fn move_block(
        &self,
        t: usize,
        key: StreamKey,
        first: usize,
        x_prev: Option<&[S]>,
        x: &mut [S],
        log_g: &mut [S],
    ) {
        let d = self.dim();
        debug_assert_eq!(x.len(), log_g.len() * d, "move_block: x length");
        for (j, (xj, g)) in x
            .chunks_exact_mut(d.max(1))
            .zip(log_g.iter_mut())
            .enumerate()
        {
            let xp = x_prev.map(|p| &p[j * d..(j + 1) * d]);
            *g = crate::smc::step::move_particle(self, t, key, first + j, xp, &mut xj[..d]);
        }
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

    /// The bootstrap move of the block of particles `first .. first + m`
    /// (`m = log_g.len()`), what [`Bootstrap`]'s [`FeynmanKac::move_block`] calls: for each
    /// `j < m`, with `rng = key.rng(first + j)`, `x_j ~ p(x_0)` when `x_prev` is `None` (step
    /// 0), else `x_j ~ p(x_t | x_prev_j)`, and `log_g[j] = log p(y_t | x_j)`. States are
    /// stored one after another (`m · state_dim()` values).
    ///
    /// Override it to evaluate the block's particles together (e.g. one batched network
    /// evaluation); the override MUST give bit-identical results to this default, the
    /// per-particle calls (see the contract of [`FeynmanKac::move_block`]).
    fn bootstrap_move_block(
        &self,
        t: usize,
        key: StreamKey,
        first: usize,
        x_prev: Option<&[S]>,
        x: &mut [S],
        log_g: &mut [S],
    ) {
        let d = self.state_dim();
        debug_assert_eq!(x.len(), log_g.len() * d, "bootstrap_move_block: x length");
        for (j, (xj, g)) in x
            .chunks_exact_mut(d.max(1))
            .zip(log_g.iter_mut())
            .enumerate()
        {
            let xj = &mut xj[..d];
            let mut rng = key.rng(first + j);
            *g = match x_prev {
                None => {
                    self.sample_initial(&mut rng, xj);
                    self.observation_log_density(0, xj)
                }
                Some(p) => {
                    self.sample_transition(t, &p[j * d..(j + 1) * d], &mut rng, xj);
                    self.observation_log_density(t, xj)
                }
            };
        }
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
    fn move_block(
        &self,
        t: usize,
        key: StreamKey,
        first: usize,
        x_prev: Option<&[S]>,
        x: &mut [S],
        log_g: &mut [S],
    ) {
        self.0.bootstrap_move_block(t, key, first, x_prev, x, log_g)
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
    fn move_block(
        &self,
        t: usize,
        key: StreamKey,
        first: usize,
        x_prev: Option<&[S]>,
        x: &mut [S],
        log_g: &mut [S],
    ) {
        (**self).move_block(t, key, first, x_prev, x, log_g)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grad::{Differentiable, Parametric, ParticleFilterNll};
    use crate::resample::ResamplerSpec;
    use crate::rng::standard_normal;
    use crate::smc::{Smc, SmcConfig};

    /// `x_t = a x_{t-1} + s ε`, `y_t ~ N(x_t, 1)`, with the default block move.
    struct Ar1<S> {
        a: S,
        s: S,
        ys: Vec<f64>,
    }

    impl<S: Scalar> StateSpaceModel<S> for Ar1<S> {
        fn state_dim(&self) -> usize {
            1
        }
        fn n_observations(&self) -> usize {
            self.ys.len()
        }
        fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
            x[0] = self.s * standard_normal(rng);
        }
        fn sample_transition(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) {
            x[0] = xp[0] * self.a + self.s * standard_normal(rng);
        }
        fn observation_log_density(&self, t: usize, x: &[S]) -> S {
            let r = x[0] - self.ys[t];
            r * r * -0.5
        }
    }

    /// [`Ar1`] with an override of [`StateSpaceModel::bootstrap_move_block`] that draws a
    /// whole block's noise first, then transforms it, then weights it.
    struct Blocked<S>(Ar1<S>);

    impl<S: Scalar> StateSpaceModel<S> for Blocked<S> {
        fn state_dim(&self) -> usize {
            1
        }
        fn n_observations(&self) -> usize {
            self.0.ys.len()
        }
        fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
            self.0.sample_initial(rng, x)
        }
        fn sample_transition(&self, t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) {
            self.0.sample_transition(t, xp, rng, x)
        }
        fn observation_log_density(&self, t: usize, x: &[S]) -> S {
            self.0.observation_log_density(t, x)
        }
        fn bootstrap_move_block(
            &self,
            t: usize,
            key: StreamKey,
            first: usize,
            x_prev: Option<&[S]>,
            x: &mut [S],
            log_g: &mut [S],
        ) {
            let m = &self.0;
            let eps: Vec<f64> = (0..log_g.len())
                .map(|j| standard_normal(&mut key.rng(first + j)))
                .collect();
            for (j, xj) in x.iter_mut().enumerate() {
                *xj = match x_prev {
                    None => m.s * eps[j],
                    Some(p) => p[j] * m.a + m.s * eps[j],
                };
            }
            for (g, xj) in log_g.iter_mut().zip(x.chunks_exact(1)) {
                *g = m.observation_log_density(t, xj);
            }
        }
    }

    struct Fam(Vec<f64>);
    struct BlockedFam(Vec<f64>);

    impl Parametric for Fam {
        type Model<S: Scalar> = Bootstrap<Ar1<S>>;
        fn n_params(&self) -> usize {
            2
        }
        fn model<S: Scalar>(&self, theta: &[S]) -> Result<Self::Model<S>> {
            Ok(Bootstrap(Ar1 {
                a: theta[0],
                s: theta[1],
                ys: self.0.clone(),
            }))
        }
    }

    impl Parametric for BlockedFam {
        type Model<S: Scalar> = Bootstrap<Blocked<S>>;
        fn n_params(&self) -> usize {
            2
        }
        fn model<S: Scalar>(&self, theta: &[S]) -> Result<Self::Model<S>> {
            Ok(Bootstrap(Blocked(Fam(self.0.clone()).model(theta)?.0)))
        }
    }

    fn ys() -> Vec<f64> {
        (0..12).map(|t| (t as f64 * 0.7).sin()).collect()
    }

    #[test]
    fn overridden_block_move_gives_the_default_bits() {
        let ys = ys();
        let theta = [0.8, 0.6];
        // 600 particles: two full blocks of 256 and a partial one.
        for n in [7, 600] {
            for parallel in [1, usize::MAX] {
                let config = SmcConfig::new(n)
                    .unwrap()
                    .with_filter_moments(true)
                    .with_parallel_min_particles(parallel);
                let smc = Smc::new(config);
                let run = |block: bool| {
                    let r = ResamplerSpec::Systematic.build::<f64>().unwrap();
                    if block {
                        smc.run(&BlockedFam(ys.clone()).model(&theta).unwrap(), &r, 3)
                    } else {
                        smc.run(&Fam(ys.clone()).model(&theta).unwrap(), &r, 3)
                    }
                    .unwrap()
                };
                let (a, b) = (run(false), run(true));
                assert!(a.n_resampled() > 0);
                assert_eq!(a.log_likelihood.to_bits(), b.log_likelihood.to_bits());
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(a.particles.as_slice()), bits(b.particles.as_slice()));
                assert_eq!(bits(&a.log_weights), bits(&b.log_weights));
                assert_eq!(
                    bits(&a.log_likelihood_increments),
                    bits(&b.log_likelihood_increments)
                );
            }
        }
    }

    #[test]
    fn overridden_block_move_gives_the_default_reverse_gradient() {
        let ys = ys();
        let theta = [0.8, 0.6];
        let config = SmcConfig::new(300).unwrap();
        let spec = ResamplerSpec::Systematic;
        let (fa, fb) = (Fam(ys.clone()), BlockedFam(ys));
        let (va, ga) = ParticleFilterNll::new(&fa, &config, &spec, 5)
            .reverse(&theta)
            .unwrap()
            .unwrap();
        let (vb, gb) = ParticleFilterNll::new(&fb, &config, &spec, 5)
            .reverse(&theta)
            .unwrap()
            .unwrap();
        assert_eq!(va.to_bits(), vb.to_bits());
        assert!(ga.iter().all(|g| g.is_finite() && *g != 0.0));
        for (x, y) in ga.iter().zip(&gb) {
            assert_eq!(x.to_bits(), y.to_bits());
        }
    }

    #[test]
    fn default_block_moves_match_move_particle() {
        let m = Bootstrap(Ar1::<f64> {
            a: 0.9,
            s: 1.1,
            ys: ys(),
        });
        let key = crate::smc::step::move_key(4, 2);
        let xp = [0.3, -1.0, 2.0, 0.0];
        let (mut x, mut g) = ([0.0; 4], [0.0; 4]);
        FeynmanKac::move_block(&m, 2, key, 10, Some(&xp), &mut x, &mut g);
        for j in 0..4 {
            let mut xj = [0.0];
            let gj =
                crate::smc::step::move_particle(&m, 2, key, 10 + j, Some(&xp[j..j + 1]), &mut xj);
            assert_eq!(xj[0].to_bits(), x[j].to_bits());
            assert_eq!(gj.to_bits(), g[j].to_bits());
        }
    }
}
