//! Checking a model's gradient with the testing kit (`diffsmc::testing`, cargo feature
//! `testing`): the dual-number gradient of the particle filter's negative log-likelihood
//! against finite differences of the same seeded estimator, for a correct model and for one
//! with a deliberately broken derivative.
//!
//! `cargo run --release -p diffsmc --example gradient_check`

use diffsmc::grad::{GradOptions, KalmanNll, Parametric, ParticleFilterNll, gradient};
use diffsmc::prelude::*;
use diffsmc::testing::{GradientReport, check_gradient};
use diffsmc_lgssm::{Lgssm, PaperParams};

/// A reparametrisation bug: θ[0] (the paper's θ1) reaches the model with the right value but
/// twice its derivative (think of a hand-written chain rule gone wrong). Values are untouched,
/// so filtering and the log-likelihood look perfectly fine.
#[derive(Debug)]
pub struct DoubledDerivative(pub PaperParams);

impl Parametric for DoubledDerivative {
    type Model<S: Scalar> = <PaperParams as Parametric>::Model<S>;
    fn n_params(&self) -> usize {
        self.0.n_params()
    }
    fn model<S: Scalar>(&self, theta: &[S]) -> Result<Self::Model<S>> {
        let mut t = theta.to_vec();
        t[0] = S::cst(t[0].re()) + (t[0] - t[0].re()) * 2.0;
        self.0.model(&t)
    }
}

/// The reports of the example.
#[derive(Debug)]
pub struct Reports {
    /// Correct model, diffusion resampling (smooth estimator).
    pub diffusion: GradientReport,
    /// Correct model, no resampling.
    pub no_resampling: GradientReport,
    /// Broken model, diffusion resampling.
    pub broken: GradientReport,
}

/// Runs the three checks on `steps` observations with `n` particles and prints them.
pub fn run(steps: usize, n: usize) -> std::result::Result<Reports, Box<dyn std::error::Error>> {
    let (_, ys) = Lgssm::paper(0.5, 1.0, 1)?.simulate(steps, 3);
    let family = PaperParams::new(1, ys)?;
    let theta = [0.5, 1.0];
    let h = 1e-5;

    // 1. A differentiable resampler: the seeded estimator is smooth in θ.
    let smc = SmcConfig::new(n)?;
    let spec: ResamplerSpec = "diffusion:K=4".parse()?;
    let diffusion = check_gradient(&ParticleFilterNll::new(&family, &smc, &spec, 11), &theta, h)?;
    println!("== correct model, {spec}, N = {n}, {steps} observations");
    println!("{diffusion}");

    // 2. The model's own derivatives, without resampling (any resampler; it never runs).
    let never = smc.clone().with_trigger(Trigger::Never)?;
    let no_resampling = check_gradient(
        &ParticleFilterNll::new(&family, &never, &ResamplerSpec::Systematic, 11),
        &theta,
        h,
    )?;
    println!("== correct model, no resampling");
    println!("{no_resampling}");

    // The check is about derivatives of the estimator, not about how close the estimator's
    // gradient is to the exact one: the Kalman filter gives the latter.
    let (nll, g) = gradient(&KalmanNll(&family), &theta, &GradOptions::default())?;
    println!(
        "exact (Kalman): −log p = {nll:.6}, gradient [{:.6}, {:.6}]; particle filter above: \
         −log p̂ = {:.6}, gradient [{:.6}, {:.6}]",
        g[0], g[1], diffusion.value, diffusion.dual[0], diffusion.dual[1]
    );
    println!();

    // 3. The broken model: values agree, θ[0]'s derivative is twice what it should be.
    let broken = check_gradient(
        &ParticleFilterNll::new(&DoubledDerivative(family), &smc, &spec, 11),
        &theta,
        h,
    )?;
    println!("== broken model (θ[0]'s derivative doubled), {spec}");
    println!("{broken}");
    Ok(Reports {
        diffusion,
        no_resampling,
        broken,
    })
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let r = run(129, 32)?;
    if !(r.diffusion.passed() && r.no_resampling.passed() && !r.broken.passed()) {
        return Err("unexpected verdicts (see the reports above)".into());
    }
    println!("verdicts as expected: the correct model passes, the broken one fails");
    Ok(())
}
