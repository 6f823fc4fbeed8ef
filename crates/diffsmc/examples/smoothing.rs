//! Particle smoothing against the exact RTS smoother on the paper's linear Gaussian model:
//! FFBS (systematic and diffusion resampling), backward simulation (exact and rejection),
//! fixed-lag, and the PaRIS Fisher-identity score against the exact Kalman score. Prints, per
//! method, the RMSE over steps of the smoothed means and variances against RTS and the time.
//!
//! `cargo run --release -p diffsmc --example smoothing -- [N] [T] [seed]`
//! (defaults: N = 500 particles, T = 100 observations, seed 1). d = 1, θ = (0.5, 1.0).

use std::time::Instant;

use diffsmc::grad::{GradOptions, KalmanNll, gradient};
use diffsmc::prelude::*;
use diffsmc::smooth::{
    BackwardConfig, BackwardMethod, ParisConfig, SmoothedMoments, backward_simulation, ffbs,
    fisher_score, fixed_lag,
};
use diffsmc_lgssm::{Lgssm, PaperParams};

/// Sizes of a run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Particles (and backward trajectories).
    pub particles: usize,
    /// Observations.
    pub steps: usize,
    /// Seed of the data, the filters and the backward draws.
    pub seed: u64,
}

/// One method's errors against RTS.
#[derive(Debug, Clone)]
pub struct Row {
    /// The method.
    pub name: String,
    /// RMSE over steps of the smoothed means.
    pub mean_rmse: f64,
    /// RMSE over steps of the smoothed variances.
    pub var_rmse: f64,
    /// Seconds (the smoother alone, without the filter run).
    pub seconds: f64,
}

/// What the example computed.
#[derive(Debug, Clone)]
pub struct Summary {
    /// One row per method (the first is the filter, for contrast).
    pub rows: Vec<Row>,
    /// The PaRIS score estimate.
    pub score: Vec<f64>,
    /// The exact score (Kalman).
    pub kalman_score: Vec<f64>,
    /// Backward draws of the rejection sampler that fell back to the exact draw, of all.
    pub fallbacks: (usize, usize),
}

fn rmse(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    let s: f64 = a.iter().zip(b).map(|(x, y)| (x[0] - y[0]).powi(2)).sum();
    (s / a.len() as f64).sqrt()
}

/// Runs every smoother and compares with RTS.
pub fn run(o: &Options) -> Result<Summary> {
    let model = Lgssm::paper(0.5, 1.0, 1)?;
    let (_, ys) = model.simulate(o.steps, o.seed);
    let data = model.with_data(ys.clone())?;
    let (_, rts) = data.smooth()?;
    let n = o.particles;
    let config = SmcConfig::new(n)?.with_history(true);
    let filter = |r: &dyn Resampler<f64>| -> Result<SmcOutput<f64>> {
        Smc::new(config.clone()).run(&Bootstrap(&data), r, o.seed)
    };
    let sys = filter(&Systematic)?;
    let diffusion = "diffusion:T=1,K=4"
        .parse::<ResamplerSpec>()?
        .build::<f64>()?;
    let diff = filter(&*diffusion)?;
    let mut rows = Vec::new();
    let mut row = |name: &str, s: &SmoothedMoments<f64>, seconds: f64| {
        rows.push(Row {
            name: name.into(),
            mean_rmse: rmse(&s.means, &rts.means),
            var_rmse: rmse(&s.variances, &rts.covs),
            seconds,
        });
    };
    let time = Instant::now();
    let lag0 = fixed_lag(&sys, 0)?;
    row(
        "filter (fixed-lag L = 0)",
        &lag0,
        time.elapsed().as_secs_f64(),
    );
    let time = Instant::now();
    let f = ffbs(&data, &sys)?;
    row("FFBS, systematic", &f.moments, time.elapsed().as_secs_f64());
    let time = Instant::now();
    let f = ffbs(&data, &diff)?;
    row("FFBS, diffusion", &f.moments, time.elapsed().as_secs_f64());
    let time = Instant::now();
    let b = backward_simulation(&data, &sys, &BackwardConfig::new(n)?.with_seed(o.seed))?;
    row(
        "backward, exact (M = N)",
        &b.moments,
        time.elapsed().as_secs_f64(),
    );
    let time = Instant::now();
    let rc = BackwardConfig::new(n)?
        .with_seed(o.seed)
        .with_method(BackwardMethod::rejection(32)?)?;
    let b = backward_simulation(&data, &sys, &rc)?;
    row(
        "backward, rejection (M = N)",
        &b.moments,
        time.elapsed().as_secs_f64(),
    );
    let fallbacks = (b.fallbacks, b.draws);
    let time = Instant::now();
    let fl = fixed_lag(&sys, 3)?;
    row("fixed-lag L = 3", &fl, time.elapsed().as_secs_f64());

    let p = PaperParams::new(1, ys)?;
    let est = fisher_score(
        &p,
        &[0.5, 1.0],
        &SmcConfig::new(n)?,
        &Systematic,
        o.seed,
        &ParisConfig::new().with_seed(o.seed),
    )?;
    let (_, g) = gradient(&KalmanNll(&p), &[0.5, 1.0], &GradOptions::default())?;
    Ok(Summary {
        rows,
        score: est.score,
        kalman_score: g.iter().map(|v| -v).collect(),
        fallbacks,
    })
}

#[allow(dead_code)]
fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let o = Options {
        particles: get(0, 500) as usize,
        steps: get(1, 100) as usize,
        seed: get(2, 1),
    };
    let s = run(&o)?;
    println!(
        "LGSSM d = 1, θ = (0.5, 1.0), T = {}, N = {}, seed {}: errors against RTS",
        o.steps, o.particles, o.seed
    );
    println!(
        "  {:<30} {:>12} {:>14} {:>10}",
        "method", "mean RMSE", "variance RMSE", "ms"
    );
    for r in &s.rows {
        println!(
            "  {:<30} {:>12.5} {:>14.5} {:>10.2}",
            r.name,
            r.mean_rmse,
            r.var_rmse,
            r.seconds * 1e3
        );
    }
    println!(
        "  rejection sampler: {} of {} draws fell back to the exact draw",
        s.fallbacks.0, s.fallbacks.1
    );
    println!(
        "score ∇θ log p(y): PaRIS (Ñ = 2) [{:.4}, {:.4}], Kalman (exact) [{:.4}, {:.4}]",
        s.score[0], s.score[1], s.kalman_score[0], s.kalman_score[1]
    );
    Ok(())
}
