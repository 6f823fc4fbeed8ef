//! A model written from scratch against the public API: stochastic volatility,
//!
//! ```text
//! x_0 ~ N(μ, σ² / (1 − φ²)),   x_t = μ + φ (x_{t−1} − μ) + σ ε_t,   y_t ~ N(0, e^{x_t}),
//! ```
//!
//! simulated, filtered with diffusion resampling, and fitted — (μ, φ, σ) by L-BFGS on the
//! particle filter's negative log-likelihood, with φ = tanh(θ₁) and σ = exp(θ₂) so that the
//! optimisation is unconstrained. docs/writing-a-model.md walks through the same code.
//!
//! `cargo run --release -p diffsmc --example custom_model -- [T] [N] [K] [seed]`
//! (defaults: T = 200 observations, N = 64 particles, K = 4 diffusion steps, seed 1).

use std::sync::Arc;
use std::time::Instant;

use diffsmc::grad::{GradOptions, Parametric, ParticleFilterNll, gradient, value};
use diffsmc::prelude::*;
use diffsmc::rng::Purpose;
use diffsmc_optim::{Lbfgs, Minimizer};

const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// The stochastic-volatility family: θ = (μ, atanh φ, ln σ) and the observations.
#[derive(Debug, Clone)]
pub struct StochVol {
    /// Observations `y_0 .. y_{T−1}` (NaN = missing).
    pub ys: Arc<Vec<f64>>,
}

/// The model at one θ, for scalar `S` (`f64` to filter, dual numbers for gradients).
#[derive(Debug, Clone)]
pub struct SvModel<S> {
    mu: S,
    phi: S,
    sigma: S,
    ys: Arc<Vec<f64>>,
}

impl<S: Scalar> StateSpaceModel<S> for SvModel<S> {
    fn state_dim(&self) -> usize {
        1
    }
    fn n_observations(&self) -> usize {
        self.ys.len()
    }
    fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
        // The stationary law of the AR(1) log-variance.
        let sd0 = self.sigma / (S::one() - self.phi * self.phi).sqrt();
        x[0] = self.mu + sd0 * standard_normal(rng);
    }
    fn sample_transition(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) {
        x[0] = self.mu + self.phi * (xp[0] - self.mu) + self.sigma * standard_normal(rng);
    }
    fn observation_log_density(&self, t: usize, x: &[S]) -> S {
        let y = self.ys[t];
        if y.is_nan() {
            return S::zero(); // missing observation
        }
        // log N(y; 0, e^x) = −½ (ln 2π + x + y² e^{−x})
        (x[0] + (-x[0]).exp() * (y * y) + LN_2PI) * -0.5
    }
}

impl Parametric for StochVol {
    type Model<S: Scalar> = Bootstrap<SvModel<S>>;
    fn n_params(&self) -> usize {
        3
    }
    fn model<S: Scalar>(&self, theta: &[S]) -> Result<Self::Model<S>> {
        Ok(Bootstrap(SvModel {
            mu: theta[0],
            phi: theta[1].tanh(),
            sigma: theta[2].exp(),
            ys: self.ys.clone(),
        }))
    }
}

/// `(μ, φ, σ)` from the unconstrained θ.
pub fn natural(theta: &[f64]) -> [f64; 3] {
    [theta[0], theta[1].tanh(), theta[2].exp()]
}

/// The unconstrained θ of `(μ, φ, σ)`.
pub fn unconstrained(mu: f64, phi: f64, sigma: f64) -> Vec<f64> {
    vec![mu, phi.atanh(), sigma.ln()]
}

/// Simulates `steps` states and observations; step `t` draws from streams 0 (state) and 1
/// (observation) of `StreamKey::new(seed, t, Purpose::Simulate)`.
pub fn simulate(mu: f64, phi: f64, sigma: f64, steps: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut xs = Vec::with_capacity(steps);
    let mut ys = Vec::with_capacity(steps);
    for t in 0..steps {
        let key = StreamKey::new(seed, t, Purpose::Simulate);
        let e = standard_normal(&mut key.rng(0));
        let x = if t == 0 {
            mu + sigma / (1.0 - phi * phi).sqrt() * e
        } else {
            mu + phi * (xs[t - 1] - mu) + sigma * e
        };
        xs.push(x);
        ys.push((0.5 * x).exp() * standard_normal(&mut key.rng(1)));
    }
    (xs, ys)
}

/// Knobs of the example.
#[derive(Debug, Clone)]
pub struct Options {
    /// Number of observations.
    pub steps: usize,
    /// Particles.
    pub particles: usize,
    /// Diffusion steps `K`.
    pub diffusion_steps: usize,
    /// Seed of the data and of the filter.
    pub seed: u64,
    /// L-BFGS iteration budget.
    pub max_iterations: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            steps: 200,
            particles: 64,
            diffusion_steps: 4,
            seed: 1,
            max_iterations: 60,
        }
    }
}

/// What the example computed.
#[derive(Debug, Clone)]
pub struct Summary {
    /// `(μ, φ, σ)` used to simulate.
    pub truth: [f64; 3],
    /// `(μ, φ, σ)` at the start of the fit.
    pub start: [f64; 3],
    /// The fitted `(μ, φ, σ)`.
    pub estimate: [f64; 3],
    /// The particle-filter NLL at the truth, at the start and at the estimate (same seed).
    pub nll_truth: f64,
    /// NLL at the start.
    pub nll_start: f64,
    /// NLL at the estimate.
    pub nll_estimate: f64,
    /// RMSE of the filtering means against the simulated states, at the truth.
    pub filter_rmse: f64,
    /// Whether L-BFGS reported convergence.
    pub converged: bool,
    /// L-BFGS iterations and objective evaluations.
    pub iterations: usize,
    /// Objective evaluations.
    pub evaluations: usize,
    /// Wall-clock seconds of the fit.
    pub seconds: f64,
}

/// Simulates, filters and fits; prints as it goes.
pub fn run(o: &Options) -> std::result::Result<Summary, Box<dyn std::error::Error>> {
    let truth = [-1.0, 0.9, 0.35];
    let (xs, ys) = simulate(truth[0], truth[1], truth[2], o.steps, o.seed);
    let family = StochVol { ys: Arc::new(ys) };
    let spec: ResamplerSpec = format!("diffusion:K={}", o.diffusion_steps).parse()?;
    let smc = SmcConfig::new(o.particles)?;
    println!(
        "stochastic volatility: T = {}, truth μ = {}, φ = {}, σ = {}; N = {}, resampler {spec}",
        o.steps, truth[0], truth[1], truth[2], o.particles
    );

    // Filter at the truth: filtering means against the simulated log-variances.
    let theta_true = unconstrained(truth[0], truth[1], truth[2]);
    let model = family.model::<f64>(&theta_true)?;
    let resampler = spec.build::<f64>()?;
    let out: SmcOutput<f64> =
        Smc::new(smc.clone().with_filter_moments(true)).run(&model, &resampler, o.seed)?;
    let filter_rmse = (out
        .filter_means
        .iter()
        .zip(&xs)
        .map(|(m, x)| (m[0] - x).powi(2))
        .sum::<f64>()
        / xs.len() as f64)
        .sqrt();
    let mean_ess = out.ess.iter().sum::<f64>() / out.ess.len() as f64;
    println!(
        "filter at the truth: log-likelihood {:.3}, mean ESS {:.1} of {}, RMSE of filtering means {:.3} (state sd {:.3})",
        out.log_likelihood,
        mean_ess,
        o.particles,
        filter_rmse,
        truth[2] / (1.0 - truth[1] * truth[1]).sqrt()
    );

    // Fit by L-BFGS on the seeded (common random numbers), differentiable NLL.
    let theta0 = unconstrained(0.0, 0.5, 0.5);
    let seed = o.seed;
    let objective = |theta: &[f64]| match gradient(
        &ParticleFilterNll::new(&family, &smc, &spec, seed),
        theta,
        &GradOptions::default(),
    ) {
        Ok(vg) => vg,
        Err(_) => (f64::NAN, vec![f64::NAN; theta.len()]),
    };
    let started = Instant::now();
    let fit = Lbfgs::new()
        .with_max_iterations(o.max_iterations)?
        .with_gradient_tolerance(1e-4)?
        .minimize(objective, &theta0)?;
    let seconds = started.elapsed().as_secs_f64();
    let nll_truth = value(
        &ParticleFilterNll::new(&family, &smc, &spec, seed),
        &theta_true,
    )?;
    let nll_start = value(&ParticleFilterNll::new(&family, &smc, &spec, seed), &theta0)?;
    let estimate = natural(&fit.theta);
    let summary = Summary {
        truth,
        start: natural(&theta0),
        estimate,
        nll_truth,
        nll_start,
        nll_estimate: fit.value,
        filter_rmse,
        converged: fit.converged,
        iterations: fit.iterations,
        evaluations: fit.evaluations,
        seconds,
    };
    println!(
        "L-BFGS: {:?} after {} iterations, {} evaluations, {:.1} s",
        fit.reason, fit.iterations, fit.evaluations, seconds
    );
    println!();
    println!("{:>10} {:>10} {:>10} {:>10}", "", "μ", "φ", "σ");
    for (label, v) in [
        ("truth", summary.truth),
        ("start", summary.start),
        ("estimate", summary.estimate),
    ] {
        println!("{label:>10} {:>10.4} {:>10.4} {:>10.4}", v[0], v[1], v[2]);
    }
    println!();
    println!(
        "NLL (same seed): truth {:.3}, start {:.3}, estimate {:.3}",
        nll_truth, nll_start, summary.nll_estimate
    );
    Ok(summary)
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut o = Options::default();
    let arg = |i: usize| args.get(i).map(|s| s.parse::<u64>()).transpose();
    if let Some(v) = arg(0)? {
        o.steps = v as usize;
    }
    if let Some(v) = arg(1)? {
        o.particles = v as usize;
    }
    if let Some(v) = arg(2)? {
        o.diffusion_steps = v as usize;
    }
    if let Some(v) = arg(3)? {
        o.seed = v;
    }
    run(&o)?;
    Ok(())
}
