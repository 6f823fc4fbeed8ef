//! The neural state-space model: SIREN dynamics on `h(z)` and a transposed-convolution
//! decoder, both learnt from the images.

use std::sync::Arc;

use diffsmc::grad::Parametric;
use diffsmc::prelude::*;
use diffsmc_nn::{Init, Net, NetTheta, Padding};

use crate::sim::PIXELS;

/// Hidden width of the SIREN dynamics.
pub const HIDDEN: usize = 256;
/// `ω₀` of the SIREN's first layer (and the divisor of the hidden layers' init bound).
pub const OMEGA0: f64 = 8.0;
/// The velocity feature's divisor: `h(z) = [sin z¹, cos z¹, z²/10]`.
pub const VEL_SCALE: f64 = 10.0;
/// Stream tag of the init of the dynamics network (its seed is derived with this).
pub const DYN_INIT_TAG: u64 = 0x5044_4459; // "PDDY"
/// Stream tag of the init of the decoder.
pub const DEC_INIT_TAG: u64 = 0x5044_4445; // "PDDE"

/// The two model settings of the paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// `z' = z + Net([h(z), ζ]) Δ`, `ζ ~ N(0, Λ Δ)`, `Λ = 0.01 I`; σ_train = 10 σ_obs,
    /// likelihood divided by κ = 10⁴.
    One,
    /// `z' = z + Net(h(z)) Δ + ζ`, `ζ ~ N(0, Λ Δ)`, `Λ = 0.1 · diag(0, 1)`;
    /// σ_train = 5 σ_obs, κ = 1.
    Two,
}

impl Setting {
    /// From 1 or 2.
    pub fn from_number(n: u32) -> Result<Self> {
        match n {
            1 => Ok(Setting::One),
            2 => Ok(Setting::Two),
            _ => Err(SmcError::invalid("pendulum setting", n, "1 or 2")),
        }
    }
    /// 1 or 2.
    pub fn number(self) -> u32 {
        match self {
            Setting::One => 1,
            Setting::Two => 2,
        }
    }
    /// `diag Λ` of the model (per unit time).
    pub fn lambda(self) -> [f64; 2] {
        match self {
            Setting::One => [0.01, 0.01],
            Setting::Two => [0.0, 0.1],
        }
    }
    /// `σ_train / σ_obs`.
    pub fn sigma_factor(self) -> f64 {
        match self {
            Setting::One => 10.0,
            Setting::Two => 5.0,
        }
    }
    /// κ: the per-pixel-mean log-likelihood is divided by it.
    pub fn kappa(self) -> f64 {
        match self {
            Setting::One => 1e4,
            Setting::Two => 1.0,
        }
    }
    fn dyn_inputs(self) -> usize {
        match self {
            Setting::One => 5,
            Setting::Two => 3,
        }
    }
}

/// The SIREN dynamics network: `n_in → 256 → 256 → 256 → 2`, `sin(ω₀ ·)` after the first
/// layer (ω₀ = 8, init `U(±1/n_in)`), `sin` after the next two (init `U(±√(6/256)/ω₀)`),
/// a bias-free Glorot output layer.
pub fn dynamics_net(n_in: usize, seed: u64) -> Result<Net> {
    Net::builder(n_in)
        .dense(HIDDEN, true, Init::SirenFirst)?
        .sine(OMEGA0)?
        .dense(HIDDEN, true, Init::SirenHidden { omega0: OMEGA0 })?
        .sine(1.0)?
        .dense(HIDDEN, true, Init::SirenHidden { omega0: OMEGA0 })?
        .sine(1.0)?
        .dense(2, false, Init::Glorot)?
        .build(seed)
}

/// The decoder: `h(z)` (3) → 16 → 256 (ReLU, LeCun-normal), reshape 4×4×16, transposed
/// convolutions 3×3 stride 2 ("SAME") to 8×8×32, 16×16×16 (ReLU) and 32×32×1 (linear).
pub fn decoder_net(seed: u64) -> Result<Net> {
    Net::builder(3)
        .dense(16, true, Init::LecunNormal)?
        .relu()
        .dense(256, true, Init::LecunNormal)?
        .relu()
        .reshape(4, 4, 16)?
        .conv_transpose(32, 3, 2, Padding::Same)?
        .relu()
        .conv_transpose(16, 3, 2, Padding::Same)?
        .relu()
        .conv_transpose(1, 3, 2, Padding::Same)?
        .build(seed)
}

/// An unrolled trajectory: the states and their decoded frames.
pub type Unrolled = (Vec<[f64; 2]>, Vec<Vec<f64>>);

/// The neural pendulum family: θ = [θ_dynamics, θ_decoder] (the two networks' flat vectors),
/// every particle starting at `z0`, Gaussian image likelihood
/// `(1/κ) · mean_pixels ln N(y; r_φ(z), σ_train²)`.
///
/// ```
/// use diffsmc::grad::{Parametric, ParticleFilterNll, value};
/// use diffsmc::prelude::*;
/// use diffsmc_pendulum::{NeuralPendulum, Setting, SimConfig, simulate};
///
/// let mut cfg = SimConfig::paper();
/// cfg.n_steps = 8;
/// cfg.t_end = 4.0 * 8.0 / 256.0;
/// let data = simulate(&cfg, 1)?;
/// let fam = NeuralPendulum::new(Setting::One, &data, &cfg, 3)?;
/// assert_eq!(fam.n_params(), 133_632 + 13_825);
/// let smc = SmcConfig::new(4)?;
/// let nll = value(&ParticleFilterNll::new(&fam, &smc, &ResamplerSpec::Systematic, 0), &fam.initial_theta())?;
/// assert!(nll.is_finite());
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone)]
pub struct NeuralPendulum {
    setting: Setting,
    dynamics: Arc<Net>,
    decoder: Arc<Net>,
    images: Arc<Vec<Vec<f64>>>,
    z0: [f64; 2],
    dt: f64,
    sigma_train: f64,
    kappa: f64,
}

impl NeuralPendulum {
    /// The family of `setting` for the observations of `data` (simulated with `cfg`:
    /// `z0`, `Δ`, `σ_obs` are taken from it), networks initialised from `seed`.
    pub fn new(
        setting: Setting,
        data: &crate::PendulumData,
        cfg: &crate::SimConfig,
        seed: u64,
    ) -> Result<Self> {
        if data.images.is_empty() || data.images.iter().any(|i| i.len() != PIXELS) {
            return Err(SmcError::invalid(
                "pendulum images",
                data.images.len(),
                "at least one 32×32 frame",
            ));
        }
        let dyn_seed = diffsmc::rng::derive_seed(seed, DYN_INIT_TAG);
        let dec_seed = diffsmc::rng::derive_seed(seed, DEC_INIT_TAG);
        Ok(NeuralPendulum {
            setting,
            dynamics: Arc::new(dynamics_net(setting.dyn_inputs(), dyn_seed)?),
            decoder: Arc::new(decoder_net(dec_seed)?),
            images: Arc::new(data.images.clone()),
            z0: cfg.z0,
            dt: data.dt,
            sigma_train: setting.sigma_factor() * cfg.sigma_obs,
            kappa: setting.kappa(),
        })
    }

    /// The setting.
    pub fn setting(&self) -> Setting {
        self.setting
    }
    /// The dynamics network (its parameters are the initial θ_dynamics).
    pub fn dynamics(&self) -> &Net {
        &self.dynamics
    }
    /// The decoder (its parameters are the initial θ_decoder).
    pub fn decoder(&self) -> &Net {
        &self.decoder
    }
    /// σ_train.
    pub fn sigma_train(&self) -> f64 {
        self.sigma_train
    }
    /// The initial θ.
    pub fn initial_theta(&self) -> Vec<f64> {
        let mut t = self.dynamics.to_flat();
        t.extend_from_slice(self.decoder.params());
        t
    }

    fn build<S: Scalar>(&self, theta: &[S]) -> Result<PendulumSsm<S>> {
        let nd = self.dynamics.n_params();
        if theta.len() != self.n_params() {
            return Err(SmcError::DimensionMismatch {
                what: "pendulum parameter vector θ",
                expected: self.n_params(),
                got: theta.len(),
            });
        }
        Ok(PendulumSsm {
            setting: self.setting,
            dynamics: NetTheta::new(&self.dynamics, &theta[..nd])?,
            decoder: NetTheta::new(&self.decoder, &theta[nd..])?,
            images: Arc::clone(&self.images),
            z0: self.z0,
            dt: self.dt,
            sd: self.setting.lambda().map(|l| (l * self.dt).sqrt()),
            sigma_train: self.sigma_train,
            kappa: self.kappa,
        })
    }

    /// The learnt dynamics unrolled from `z0` without noise (`ζ = 0`) for `n_steps` steps
    /// (`n_steps + 1` states), and its decoded images.
    pub fn unroll(&self, theta: &[f64], n_steps: usize) -> Result<Unrolled> {
        let m = self.build::<f64>(theta)?;
        let mut z = self.z0;
        let mut states = vec![z];
        for _ in 0..n_steps {
            let mut next = [0.0; 2];
            m.step(&z, [0.0, 0.0], &mut next);
            z = next;
            states.push(z);
        }
        let images = states.iter().map(|s| m.decode(*s)).collect();
        Ok((states, images))
    }

    /// The decoder's images at given states (e.g. the true ones).
    pub fn decode_states(&self, theta: &[f64], states: &[[f64; 2]]) -> Result<Vec<Vec<f64>>> {
        let m = self.build::<f64>(theta)?;
        Ok(states.iter().map(|s| m.decode(*s)).collect())
    }
}

impl Parametric for NeuralPendulum {
    type Model<S: Scalar> = Bootstrap<PendulumSsm<S>>;
    fn n_params(&self) -> usize {
        self.dynamics.n_params() + self.decoder.n_params()
    }
    fn model<S: Scalar>(&self, theta: &[S]) -> Result<Self::Model<S>> {
        Ok(Bootstrap(self.build(theta)?))
    }
}

/// The neural pendulum at one θ; see [`NeuralPendulum`].
#[derive(Debug)]
pub struct PendulumSsm<S> {
    setting: Setting,
    dynamics: NetTheta<S>,
    decoder: NetTheta<S>,
    images: Arc<Vec<Vec<f64>>>,
    z0: [f64; 2],
    dt: f64,
    sd: [f64; 2],
    sigma_train: f64,
    kappa: f64,
}

/// `h(z) = [sin z¹, cos z¹, z²/10]`.
#[inline]
pub fn features<S: Scalar>(z: &[S]) -> [S; 3] {
    [z[0].sin(), z[0].cos(), z[1] / VEL_SCALE]
}

impl<S: Scalar> PendulumSsm<S> {
    /// One transition for the noise draw `zeta` (already scaled: `ζ ~ N(0, Λ Δ)`).
    pub fn step(&self, z: &[S], zeta: [f64; 2], out: &mut [S]) {
        let h = features(z);
        let mut f = [S::zero(); 2];
        match self.setting {
            Setting::One => {
                let input = [h[0], h[1], h[2], S::cst(zeta[0]), S::cst(zeta[1])];
                self.dynamics.eval(&input, &mut f);
                out[0] = z[0] + f[0] * self.dt;
                out[1] = z[1] + f[1] * self.dt;
            }
            Setting::Two => {
                self.dynamics.eval(&h, &mut f);
                out[0] = z[0] + f[0] * self.dt + zeta[0];
                out[1] = z[1] + f[1] * self.dt + zeta[1];
            }
        }
    }

    /// [`PendulumSsm::step`] for a block of states (`z`, two values per state) and their
    /// noise draws, the dynamics network evaluated once for the block; the same bits as
    /// `step` state by state.
    pub fn step_block(&self, z: &[S], zeta: &[[f64; 2]], out: &mut [S]) {
        let m = zeta.len();
        let mut f = vec![S::zero(); 2 * m];
        let input: Vec<S> = match self.setting {
            Setting::One => z
                .chunks_exact(2)
                .zip(zeta)
                .flat_map(|(zj, e)| {
                    let h = features(zj);
                    [h[0], h[1], h[2], S::cst(e[0]), S::cst(e[1])]
                })
                .collect(),
            Setting::Two => z.chunks_exact(2).flat_map(features).collect(),
        };
        self.dynamics
            .eval_batch(&input, &mut f)
            .expect("one input and two outputs per state by construction");
        for (((o, zj), fj), e) in out
            .chunks_exact_mut(2)
            .zip(z.chunks_exact(2))
            .zip(f.chunks_exact(2))
            .zip(zeta)
        {
            match self.setting {
                Setting::One => {
                    o[0] = zj[0] + fj[0] * self.dt;
                    o[1] = zj[1] + fj[1] * self.dt;
                }
                Setting::Two => {
                    o[0] = zj[0] + fj[0] * self.dt + e[0];
                    o[1] = zj[1] + fj[1] * self.dt + e[1];
                }
            }
        }
    }

    fn decode(&self, z: [f64; 2]) -> Vec<f64> {
        let h = features(&[S::cst(z[0]), S::cst(z[1])]);
        let mut out = vec![S::zero(); PIXELS];
        self.decoder.eval(&h, &mut out);
        out.iter().map(|v| v.re()).collect()
    }
}

impl<S: Scalar> StateSpaceModel<S> for PendulumSsm<S> {
    fn state_dim(&self) -> usize {
        2
    }
    fn n_observations(&self) -> usize {
        self.images.len()
    }
    fn sample_initial(&self, _rng: &mut StreamRng, x: &mut [S]) {
        x[0] = S::cst(self.z0[0]);
        x[1] = S::cst(self.z0[1]);
    }
    fn sample_transition(&self, _t: usize, x_prev: &[S], rng: &mut StreamRng, x: &mut [S]) {
        let zeta = [
            self.sd[0] * standard_normal(rng),
            self.sd[1] * standard_normal(rng),
        ];
        self.step(x_prev, zeta, x);
    }
    fn observation_log_density(&self, t: usize, x: &[S]) -> S {
        let h = features(x);
        self.decoder
            .gaussian_loglik(&h, &self.images[t], self.sigma_train, 1.0 / self.kappa)
            .expect("targets are 32×32 and σ_train > 0 by construction")
    }

    /// The block's particles together: each particle's noise is drawn from its own stream
    /// first (as [`StateSpaceModel::sample_transition`] draws it), then the dynamics network
    /// runs once for the whole block ([`NetTheta::eval_batch`]) and the decoder likelihood
    /// once ([`NetTheta::gaussian_loglik_batch`]); every state and log-density has the bits
    /// of the per-particle calls.
    fn bootstrap_move_block(
        &self,
        t: usize,
        key: StreamKey,
        first: usize,
        x_prev: Option<&[S]>,
        x: &mut [S],
        log_g: &mut [S],
    ) {
        let m = log_g.len();
        match x_prev {
            None => {
                for xj in x.chunks_exact_mut(2) {
                    xj[0] = S::cst(self.z0[0]);
                    xj[1] = S::cst(self.z0[1]);
                }
            }
            Some(xp) => {
                let zeta: Vec<[f64; 2]> = (0..m)
                    .map(|j| {
                        let mut rng = key.rng(first + j);
                        [
                            self.sd[0] * standard_normal(&mut rng),
                            self.sd[1] * standard_normal(&mut rng),
                        ]
                    })
                    .collect();
                self.step_block(xp, &zeta, x);
            }
        }
        let h: Vec<S> = x.chunks_exact(2).flat_map(features).collect();
        self.decoder
            .gaussian_loglik_batch(
                &h,
                &self.images[t],
                self.sigma_train,
                1.0 / self.kappa,
                log_g,
            )
            .expect("targets are 32×32, σ_train > 0 and one slot per particle by construction");
    }
}
