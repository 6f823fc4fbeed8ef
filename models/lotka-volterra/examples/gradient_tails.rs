//! The distribution of the Lotka–Volterra training gradient over filter seeds at one θ: how
//! heavy its tail is decides whether a sign-momentum optimiser (Lion) can be locked in one
//! direction by a single evaluation (docs/reproducing-the-paper.md, "Why runs diverged").
//!
//! `cargo run --release -p diffsmc-lotka-volterra --example gradient_tails -- [SPEC] [SEEDS] [DATA_SEED]`
//!
//! For each of SEEDS filter seeds (default 100) it computes the reverse-mode gradient of the
//! paper objective (N = 64, resampling at every step, 256 steps) at the network's initial θ
//! and prints the quantiles of the gradient norm, the largest norms, and the ratio of the
//! largest to the median.

use diffsmc::grad::{GradMode, GradOptions, ParticleFilterNll, gradient};
use diffsmc::prelude::*;
use diffsmc::rng::derive_seed;
use diffsmc_lotka_volterra::{LvParams, NeuralLv, SimConfig, simulate};

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let spec: ResamplerSpec = args
        .first()
        .map_or("diffusion:T=1,K=4,sde", String::as_str)
        .parse()?;
    let seeds: u64 = args.get(1).map_or(Ok(100), |s| s.parse())?;
    let data_seed: u64 = args.get(2).map_or(Ok(0), |s| s.parse())?;
    let seed = derive_seed(data_seed, 0);
    let sim = simulate(&LvParams::paper(), &SimConfig::paper(), seed)?;
    let family = NeuralLv::new(sim.observations.clone(), derive_seed(seed, 1))?;
    let theta = family.initial_theta();
    let smc = SmcConfig::new(64)?;
    let opts = GradOptions::default().with_mode(GradMode::Reverse);
    let mut norms = Vec::new();
    let mut losses = Vec::new();
    for k in 0..seeds {
        let (v, g) = gradient(
            &ParticleFilterNll::new(&family, &smc, &spec, derive_seed(seed, 1000 + k)),
            &theta,
            &opts,
        )?;
        norms.push((g.iter().map(|x| x * x).sum::<f64>().sqrt(), k, v));
        losses.push(v);
    }
    norms.sort_by(|a, b| a.0.total_cmp(&b.0));
    let q = |p: f64| norms[((norms.len() - 1) as f64 * p).round() as usize].0;
    println!("resampler {spec}, {seeds} filter seeds at the initial θ of run 0");
    println!(
        "gradient norm: min {:.3e}  q25 {:.3e}  median {:.3e}  q75 {:.3e}  q95 {:.3e}  max {:.3e}",
        norms[0].0,
        q(0.25),
        q(0.5),
        q(0.75),
        q(0.95),
        norms[norms.len() - 1].0
    );
    println!("max / median: {:.3e}", norms[norms.len() - 1].0 / q(0.5));
    for (n, k, v) in norms.iter().rev().take(3) {
        println!("  seed {k}: norm {n:.3e}, loss {v:.1}");
    }
    losses.sort_by(f64::total_cmp);
    println!(
        "loss: median {:.1}, min {:.1}, max {:.1}",
        losses[losses.len() / 2],
        losses[0],
        losses[losses.len() - 1]
    );
    Ok(())
}
