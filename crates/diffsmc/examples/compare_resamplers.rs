//! Every resampler on one linear Gaussian dataset: the log-likelihood estimate's mean and
//! standard deviation over seeds and the time per filter run, against the exact Kalman value.
//! (The mean log-likelihood sits below the Kalman value even for unbiased resamplers: `Ẑ` is
//! unbiased, so `E[log Ẑ] < log Z` by Jensen's inequality, by about half the variance of
//! `log Ẑ`.)
//!
//! `cargo run --release -p diffsmc --example compare_resamplers -- [N] [seeds] [spec …]`
//! (defaults: N = 32 particles, 50 seeds, all the specs below). The paper's LGSSM: d = 1,
//! θ = (0.5, 1.0), 129 observations, resampling at every step.

use std::time::Instant;

use diffsmc::prelude::*;
use diffsmc::rng::derive_seed;
use diffsmc_lgssm::Lgssm;

/// The specs compared by default. `ot`, `gumbel` and `soft` are parsed at run time: on a build
/// whose `ResamplerSpec` does not know them they are skipped with a note.
pub const SPECS: &[&str] = &[
    "multinomial",
    "systematic",
    "stratified",
    "residual",
    "ssp",
    "killing",
    "stop-gradient",
    "diffusion",
    "diffusion:K=4",
    "diffusion:K=32",
    "diffusion:T=2,K=8,sde",
    "diffusion:integrator=jk",
    "diffusion:T=2,K=8,sde,integrator=tweedie",
    "diffusion:cov=diag",
    "ot:eps=0.4,scale=mean",
    "gumbel:tau=0.1",
    "soft:alpha=0.9",
];

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// The spec as printed by `ResamplerSpec`.
    pub spec: String,
    /// Mean log-likelihood estimate over seeds.
    pub mean: f64,
    /// Its standard deviation over seeds.
    pub sd: f64,
    /// Milliseconds per filter run.
    pub ms_per_run: f64,
    /// Runs that failed (typed errors), left out of the statistics.
    pub failures: usize,
}

/// The table and the specs that were skipped (with the parse error).
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The exact log-likelihood.
    pub kalman: f64,
    /// One row per spec that parsed.
    pub rows: Vec<Row>,
    /// `(spec, reason)` of every spec that did not parse.
    pub skipped: Vec<(String, String)>,
}

/// Runs every spec of `specs` with `n` particles over `seeds` seeds on the paper's LGSSM.
pub fn compare(
    n: usize,
    seeds: usize,
    specs: &[&str],
) -> std::result::Result<Comparison, Box<dyn std::error::Error>> {
    let model = Lgssm::paper(0.5, 1.0, 1)?;
    let (_, ys) = model.simulate(129, 2025);
    let data = model.with_data(ys)?;
    let kalman = data.kalman()?.log_likelihood;
    let config = SmcConfig::new(n)?;
    let smc = Smc::new(config);
    let target = Bootstrap(&data);
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for s in specs {
        let spec: ResamplerSpec = match s.parse() {
            Ok(spec) => spec,
            Err(e) => {
                skipped.push((s.to_string(), e.to_string()));
                continue;
            }
        };
        let resampler = spec.build::<f64>()?;
        let mut lls = Vec::with_capacity(seeds);
        let mut failures = 0;
        let started = Instant::now();
        for k in 0..seeds {
            match smc.run(&target, &resampler, derive_seed(7, k as u64)) {
                Ok(out) => lls.push(out.log_likelihood),
                Err(_) => failures += 1,
            }
        }
        let ms_per_run = started.elapsed().as_secs_f64() * 1e3 / seeds.max(1) as f64;
        let m = lls.len().max(1) as f64;
        let mean = lls.iter().sum::<f64>() / m;
        let sd = (lls.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (m - 1.0).max(1.0)).sqrt();
        rows.push(Row {
            spec: spec.to_string(),
            mean,
            sd,
            ms_per_run,
            failures,
        });
    }
    Ok(Comparison {
        kalman,
        rows,
        skipped,
    })
}

/// Prints the table.
pub fn print(c: &Comparison, n: usize, seeds: usize) {
    println!(
        "LGSSM (paper): d = 1, θ = (0.5, 1.0), 129 observations; N = {n}, resampling at every \
         step, {seeds} seeds"
    );
    println!("Kalman log-likelihood: {:.3}", c.kalman);
    println!();
    println!(
        "{:<42} {:>11} {:>8} {:>10} {:>9}",
        "resampler", "mean loglik", "sd", "− Kalman", "ms/run"
    );
    for r in &c.rows {
        println!(
            "{:<42} {:>11.3} {:>8.3} {:>+10.3} {:>9.3}{}",
            r.spec,
            r.mean,
            r.sd,
            r.mean - c.kalman,
            r.ms_per_run,
            if r.failures > 0 {
                format!("  ({} runs failed)", r.failures)
            } else {
                String::new()
            }
        );
    }
    for (s, reason) in &c.skipped {
        println!("note: skipped `{s}`: this build does not parse it ({reason})");
    }
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = args.first().map(|s| s.parse()).transpose()?.unwrap_or(32);
    let seeds = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(50);
    let specs: Vec<&str> = if args.len() > 2 {
        args[2..].iter().map(String::as_str).collect()
    } else {
        SPECS.to_vec()
    };
    let c = compare(n, seeds, &specs)?;
    print(&c, n, seeds);
    Ok(())
}
