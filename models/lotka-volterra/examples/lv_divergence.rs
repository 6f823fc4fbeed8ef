//! Replays one run of `diffsmc experiment lotka-volterra` (same data, initial network and
//! filter seeds; Lion, lr 0.005, N = 64, resampling at every step) and reports what happens
//! at the first gradient spike: the iteration, the spike's size against the median norm so
//! far, the spread of the particle cloud at that θ, and how long a Lion momentum (β₂ = 0.99)
//! keeps the spike's sign (docs/reproducing-the-paper.md, "Why runs diverged").
//!
//! `cargo run --release -p diffsmc-lotka-volterra --example lv_divergence -- [SPEC] [RUN] [ITERS] [CLIP]`
//!
//! CLIP (optional) clips the gradient's global norm before the update, as `--clip` does.

use diffsmc::grad::{GradMode, GradOptions, ParticleFilterNll, gradient};
use diffsmc::prelude::*;
use diffsmc::rng::derive_seed;
use diffsmc_lotka_volterra::{LvParams, NeuralLv, SimConfig, simulate};
use diffsmc_optim::{Control, IterationInfo, Lion, Minimizer};

/// A norm this many times the running median counts as a spike.
const SPIKE: f64 = 1e3;

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let spec: ResamplerSpec = args
        .first()
        .map_or("diffusion:T=1,K=4,sde", String::as_str)
        .parse()?;
    let run: u64 = args.get(1).map_or(Ok(0), |s| s.parse())?;
    let iters: usize = args.get(2).map_or(Ok(300), |s| s.parse())?;
    let clip: Option<f64> = args.get(3).map(|s| s.parse()).transpose()?;
    let seed = derive_seed(0, run);
    let sim = simulate(&LvParams::paper(), &SimConfig::paper(), seed)?;
    let family = NeuralLv::new(sim.observations.clone(), derive_seed(seed, 1))?;
    let smc = SmcConfig::new(64)?;
    let opts = GradOptions::default().with_mode(GradMode::Reverse);
    let mut lion = Lion::new(0.005)?.with_max_iterations(iters)?;
    if let Some(c) = clip {
        lion = lion.with_clip_norm(c)?;
    }
    let mut k = 0u64;
    let objective = |theta: &[f64]| {
        let fseed = derive_seed(seed, 1000 + k);
        k += 1;
        gradient(
            &ParticleFilterNll::new(&family, &smc, &spec, fseed),
            theta,
            &opts,
        )
    };
    let mut norms: Vec<f64> = Vec::new();
    let mut losses: Vec<f64> = Vec::new();
    let mut spike: Option<(usize, f64, f64, Vec<f64>)> = None;
    let mut observer = |info: &IterationInfo<'_>| {
        let mut sorted = norms.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);
        if spike.is_none() && norms.len() >= 10 && info.gradient_norm > SPIKE * median {
            spike = Some((
                info.iteration,
                info.gradient_norm,
                median,
                info.theta.to_vec(),
            ));
        }
        norms.push(info.gradient_norm);
        losses.push(info.value);
        Control::Continue
    };
    let fit = lion.minimize_with_observer(objective, &family.initial_theta(), &mut observer)?;
    println!(
        "resampler {spec}, run {run}, {iters} Lion iterations, clip {clip:?}: first loss {:.1}, last {:.1}, max {:.3e}",
        losses[0],
        fit.value,
        losses.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    );
    let spread = |theta: &[f64], fseed: u64| -> std::result::Result<f64, SmcError> {
        let model = diffsmc::grad::Parametric::model::<f64>(&family, theta)?;
        let resampler = spec.build::<f64>()?;
        let out: SmcOutput<f64> = Smc::new(SmcConfig::new(64)?.with_filter_moments(true)).run(
            &model,
            resampler.as_ref(),
            fseed,
        )?;
        // The smallest filter standard deviation of either component over the steps after
        // the first (at t = 0 every particle sits at x0).
        Ok(out
            .filter_covs
            .iter()
            .skip(1)
            .map(|c| c[0].min(c[3]).max(0.0).sqrt())
            .fold(f64::INFINITY, f64::min))
    };
    // Gradient norms over 20 fresh filter seeds at θ: median and maximum.
    let tail = |theta: &[f64]| -> std::result::Result<(f64, f64), SmcError> {
        let mut n: Vec<f64> = (0..20)
            .map(|j| {
                gradient(
                    &ParticleFilterNll::new(&family, &smc, &spec, derive_seed(seed, 90_000 + j)),
                    theta,
                    &opts,
                )
                .map(|(_, g)| g.iter().map(|x| x * x).sum::<f64>().sqrt())
            })
            .collect::<std::result::Result<_, _>>()?;
        n.sort_by(f64::total_cmp);
        Ok((n[10], n[19]))
    };
    let (m0, x0) = tail(&family.initial_theta())?;
    println!(
        "initial θ: smallest filter std over the steps {:.3e}; gradient norm over 20 seeds: median {m0:.3e}, max {x0:.3e}",
        spread(&family.initial_theta(), derive_seed(seed, 1000))?
    );
    match spike {
        None => println!("no gradient norm exceeded {SPIKE:e} × the running median"),
        Some((it, n, med, theta)) => {
            println!(
                "first spike at iteration {it}: gradient norm {n:.3e} = {:.3e} × the median {med:.3e} so far",
                n / med
            );
            let (m1, x1) = tail(&theta)?;
            println!(
                "  at that θ: smallest filter std over the steps {:.3e}; gradient norm over 20 seeds: median {m1:.3e}, max {x1:.3e}",
                spread(&theta, derive_seed(seed, 1000 + it as u64))?
            );
            // Lion's momentum m ← β₂ m + (1 − β₂) g keeps the spike's share above the typical
            // gradient for as long as 0.99^j · 0.01 · n > med.
            let j = ((med / (0.01 * n)).ln() / 0.99f64.ln()).max(0.0);
            println!("  Lion momentum (β₂ = 0.99) is dominated by it for about {j:.0} iterations");
            let later: Vec<String> = [it + 1, it + 10, it + 50, it + 100, it + 200]
                .iter()
                .filter(|&&i| i < losses.len())
                .map(|&i| format!("{i}: {:.1}", losses[i]))
                .collect();
            println!("  loss after the spike: {}", later.join(", "));
        }
    }
    Ok(())
}
