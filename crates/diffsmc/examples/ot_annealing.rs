//! Sinkhorn with and without ε-scaling: iterations to the tolerance, whether it is met, and
//! time per resampling, at the paper's absolute ε (`none`, the default) or at ε relative to the
//! mean squared distance (`mean`).
//!
//! ```sh
//! cargo run --release -p diffsmc --example ot_annealing [N] [d] [none|mean]
//! ```
//! The cloud: `N` standard-normal points in `d` dimensions times 2 (so squared distances are of
//! order `8 d`, as in the paper's Gaussian-mixture problems), log-weights `−|x − m|²/8` for a
//! shifted `m`, normalised.
use std::time::Instant;

use diffsmc::prelude::*;
use diffsmc::resample::{CostScale, OtConfig};
use diffsmc::rng::{Purpose, fill_standard_normal};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().map_or(Ok(2048), |a| a.parse())?;
    let d: usize = args.get(1).map_or(Ok(8), |a| a.parse())?;
    let scale: CostScale = args.get(2).map_or(Ok(CostScale::None), |a| a.parse())?;
    let epsilons: &[f64] = match scale {
        CostScale::None => &[0.1, 0.3, 0.6, 0.9],
        _ => &[0.02, 0.1, 0.4],
    };
    let mut rng = StreamKey::new(1, 0, Purpose::Simulate).rng(0);
    let mut xs = vec![0.0; n * d];
    fill_standard_normal(&mut rng, &mut xs);
    xs.iter_mut().for_each(|v| *v *= 2.0);
    let lw: Vec<f64> = xs
        .chunks(d)
        .map(|x| -x.iter().map(|v| (v - 1.0) * (v - 1.0)).sum::<f64>() / 8.0)
        .collect();
    let lse = diffsmc::log_sum_exp(&lw);
    let lw: Vec<f64> = lw.iter().map(|l| l - lse).collect();
    let p = Particles::from_vec(n, d, xs)?;
    println!("N = {n}, d = {d}, tolerance 1e-3 (L1 column-marginal error), cap 2000 iterations");
    println!("| ε (scale {scale}) | anneal | iterations | converged | seconds |");
    println!("|---|---|---|---|---|");
    for &eps in epsilons {
        for anneal in [None, Some(0.5), Some(0.7)] {
            let config = OtConfig::new(eps)?
                .with_scale(scale)
                .with_max_iterations(2000)?
                .with_anneal(anneal)?;
            let ot = OtResampler::new(config);
            let (mut out, mut olw) = (Particles::zeros(n, d), vec![0.0; n]);
            let start = Instant::now();
            let info = ot.resample(
                &p,
                &lw,
                StreamKey::new(0, 1, Purpose::Resample),
                &mut out,
                &mut olw,
            )?;
            let secs = start.elapsed().as_secs_f64();
            let a = anneal.map_or("none".to_string(), |r| r.to_string());
            println!(
                "| {eps} | {a} | {} | {} | {secs:.3} |",
                info.iterations, info.converged
            );
        }
    }
    Ok(())
}
