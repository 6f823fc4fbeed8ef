//! Bootstrap, guided (locally optimal proposal) and fully adapted auxiliary particle filters on
//! one linear Gaussian dataset: the mean and standard deviation over seeds of
//! `log Ẑ − log Z` (Z the exact Kalman likelihood) and the time per run, for several N.
//!
//! `cargo run --release -p diffsmc --example guided_filter -- [steps] [seeds]`
//! (defaults: 100 steps, 100 seeds). The paper's LGSSM: d = 1, θ = (0.5, 1.0), systematic
//! resampling at every step.

use std::time::Instant;

use diffsmc::prelude::*;
use diffsmc::rng::derive_seed;
use diffsmc_lgssm::Lgssm;

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// `bootstrap`, `guided` or `auxiliary`.
    pub algorithm: &'static str,
    /// Particles.
    pub particles: usize,
    /// Mean of `log Ẑ − log Z` over seeds.
    pub mean_error: f64,
    /// Standard deviation of `log Ẑ` over seeds.
    pub sd: f64,
    /// Mean time per run in milliseconds.
    pub ms: f64,
}

/// `(mean of log Ẑ − exact, sd, ms per run)` over `seeds` seeds.
fn spread<M: FeynmanKac<f64>>(m: &M, n: usize, seeds: u64, exact: f64) -> Result<(f64, f64, f64)> {
    let smc = Smc::new(SmcConfig::new(n)?);
    let t0 = Instant::now();
    let mut v = Vec::with_capacity(seeds as usize);
    for s in 0..seeds {
        let out: SmcOutput<f64> = smc.run(m, &Systematic, derive_seed(17, s))?;
        v.push(out.log_likelihood - exact);
    }
    let ms = t0.elapsed().as_secs_f64() * 1e3 / seeds as f64;
    let k = v.len() as f64;
    let mean = v.iter().sum::<f64>() / k;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0)).sqrt();
    Ok((mean, sd, ms))
}

/// Runs the comparison on `steps` observations for each N in `particles`.
pub fn run(steps: usize, seeds: u64, particles: &[usize]) -> Result<(f64, Vec<Row>)> {
    let model = Lgssm::paper(0.5, 1.0, 1)?;
    let (_, ys) = model.simulate(steps, 2);
    let data = model.with_data(ys)?;
    let exact = data.kalman()?.log_likelihood;
    let guided = Guided::new(&data, data.optimal_proposal()?)?;
    let apf = Auxiliary::new(
        Guided::new(&data, data.optimal_proposal()?)?,
        data.exact_look_ahead()?,
    )?;
    let mut rows = Vec::new();
    for &n in particles {
        for (algorithm, (mean_error, sd, ms)) in [
            ("bootstrap", spread(&Bootstrap(&data), n, seeds, exact)?),
            ("guided", spread(&guided, n, seeds, exact)?),
            ("auxiliary", spread(&apf, n, seeds, exact)?),
        ] {
            rows.push(Row {
                algorithm,
                particles: n,
                mean_error,
                sd,
                ms,
            });
        }
    }
    Ok((exact, rows))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let steps = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100);
    let seeds = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let (exact, rows) = run(steps, seeds, &[16, 64, 256])?;
    println!("LGSSM d = 1, θ = (0.5, 1.0), T = {steps}, {seeds} seeds; Kalman log Z = {exact:.4}");
    println!();
    println!(
        "  {:<10} {:>6} {:>16} {:>12} {:>10}",
        "algorithm", "N", "mean log Ẑ−log Z", "sd log Ẑ", "ms/run"
    );
    for r in &rows {
        println!(
            "  {:<10} {:>6} {:>16.4} {:>12.4} {:>10.3}",
            r.algorithm, r.particles, r.mean_error, r.sd, r.ms
        );
    }
    Ok(())
}
