//! Posterior of the paper's LGSSM parameters (θ1, θ2) by every sampler of `diffsmc::bayes`,
//! against the exact grid posterior, with the efficiency of each (bulk ESS per second).
//!
//! ```text
//! cargo run --release -p diffsmc --example posterior
//! ```

use std::time::Instant;

use diffsmc::bayes::{
    GradientPmcmc, KalmanLikelihood, Marginal, McmcConfig, ParticleGibbs, PfLikelihood, Pmmh,
    Posterior, ProductPrior, RandomWalkTheta,
};
use diffsmc::{ResamplerSpec, SmcConfig};
use diffsmc_lgssm::{Lgssm, PaperParams};

fn report(name: &str, post: &Posterior, secs: f64) {
    let s = post.summary();
    let acc: Vec<String> = post
        .acceptance_rates()
        .iter()
        .map(|a| format!("{a:.2}"))
        .collect();
    let min_ess = s.iter().map(|p| p.ess_bulk).fold(f64::INFINITY, f64::min);
    println!(
        "{name:<16} θ1 {:.3} ± {:.3} (mcse {:.3})  θ2 {:.3} ± {:.3} (mcse {:.3})  R-hat {:.3}/{:.3}  \
         ESS {:.0}/{:.0}  acc [{}]  {secs:.2} s  min ESS/s {:.0}",
        s[0].mean,
        s[0].sd,
        s[0].mcse,
        s[1].mean,
        s[1].sd,
        s[1].mcse,
        s[0].rhat,
        s[1].rhat,
        s[0].ess_bulk,
        s[1].ess_bulk,
        acc.join(", "),
        min_ess / secs
    );
    for w in &post.warnings {
        println!("  warning: {w}");
    }
}

fn main() -> Result<(), diffsmc::SmcError> {
    let (_, ys) = Lgssm::paper(0.5, 1.0, 1)?.simulate(30, 11);
    let params = PaperParams::new(1, ys)?;
    let prior = ProductPrior::new(vec![
        Marginal::uniform(-1.0, 1.0)?,
        Marginal::uniform(0.0, 3.0)?,
    ]);
    let smc = SmcConfig::new(64)?;
    let r = ResamplerSpec::Systematic;
    let config = McmcConfig::new(4000, 1000, 4, 1)?;

    let t = Instant::now();
    let post = Pmmh::default().run(&KalmanLikelihood(&params), &prior, &config)?;
    report("MH (Kalman)", &post, t.elapsed().as_secs_f64());

    let t = Instant::now();
    let pf = PfLikelihood::new(&params, smc.clone(), &r);
    let post = Pmmh::default().run(&pf, &prior, &config)?;
    report("PMMH N=64", &post, t.elapsed().as_secs_f64());

    let t = Instant::now();
    let update = RandomWalkTheta::new(&prior, 0.15, 10)?;
    let post = ParticleGibbs::new(16)?.run(&params, &update, &config)?;
    report("PG N=16", &post, t.elapsed().as_secs_f64());

    let t = Instant::now();
    let post = GradientPmcmc::mala(0.5)?.run(&params, &smc, &r, &prior, &config)?;
    report("PMALA N=64", &post, t.elapsed().as_secs_f64());

    let config = McmcConfig::new(1000, 250, 4, 1)?;
    let t = Instant::now();
    let post = GradientPmcmc::hmc(0.3, 4)?.run(&params, &smc, &r, &prior, &config)?;
    report("PHMC N=64 L=4", &post, t.elapsed().as_secs_f64());
    Ok(())
}
