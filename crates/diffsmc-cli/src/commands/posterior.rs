//! `diffsmc posterior`: Bayesian parameter inference (PMMH, particle Gibbs, PMALA, PHMC) for
//! the paper's linear Gaussian model on observations from a CSV file.

use std::path::PathBuf;
use std::time::Instant;

use diffsmc::bayes::{
    GradientPmcmc, Marginal, McmcConfig, ParticleGibbs, PfLikelihood, Pmmh, Posterior,
    ProductPrior, RandomWalkTheta,
};
use diffsmc::{ResamplerSpec, SmcConfig};
use diffsmc_lgssm::PaperParams;
use serde::Serialize;

use crate::support::data::read_csv;
use crate::support::error::CliError;
use crate::support::output::{check_writable, write_json};

/// The sampler. New methods add a variant here, a name in [`Method::name`] and an arm in
/// [`sample`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// Particle marginal Metropolis–Hastings (adaptive random walk).
    Pmmh,
    /// Particle Gibbs with ancestor sampling and a random-walk θ-update.
    Pgibbs,
    /// Particle MALA on the dual-number gradient of the log-likelihood estimate.
    Pmala,
    /// Particle HMC (leapfrog on the gradient of the log-likelihood estimate).
    Phmc,
    /// SMC² (θ-particles each carrying a particle filter; PMMH rejuvenation, exchange step):
    /// `--theta-particles` θ-particles with `--particles` x-particles each.
    Smc2,
}

impl Method {
    /// The name written to the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Method::Pmmh => "pmmh",
            Method::Pgibbs => "pgibbs",
            Method::Pmala => "pmala",
            Method::Phmc => "phmc",
            Method::Smc2 => "smc2",
        }
    }
}

/// The model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PosteriorModel {
    /// The paper's linear Gaussian SSM (A = θ1 I, H = θ2 I, Q = I, R = 0.5 I) in the data's
    /// dimension; prior θ1 ~ U(−1, 1), θ2 ~ U(0, 3).
    Lgssm,
}

/// Arguments of `diffsmc posterior`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  diffsmc posterior --model lgssm --data ys.csv --method pmmh --iterations 4000 --burn-in 1000 --chains 4 --particles 64 --seed 1 --json post.json"
)]
pub struct Args {
    /// Model.
    #[arg(long, value_enum, default_value = "lgssm")]
    pub model: PosteriorModel,
    /// Observations: CSV, one row per time step, one column per dimension, optional header;
    /// an empty or NaN cell is a missing value.
    #[arg(long)]
    pub data: PathBuf,
    /// Sampler.
    #[arg(long, value_enum, default_value = "pmmh")]
    pub method: Method,
    /// Iterations per chain, burn-in included.
    #[arg(long, default_value_t = 2000)]
    pub iterations: usize,
    /// Burn-in iterations (discarded; the proposals adapt during them).
    #[arg(long, default_value_t = 500)]
    pub burn_in: usize,
    /// Chains (run in parallel; each its own random streams).
    #[arg(long, default_value_t = 4)]
    pub chains: usize,
    /// Particles of the filter (of the conditional SMC for pgibbs).
    #[arg(long, default_value_t = 64)]
    pub particles: usize,
    /// Seed: fixes every result whatever the number of threads.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Resampler spec of the filter (pmmh, pmala, phmc). Index resamplers (systematic,
    /// multinomial, stratified, residual) give unbiased likelihood estimates and exact chains.
    #[arg(long, default_value = "systematic")]
    pub resampler: ResamplerSpec,
    /// Initial step size (pmala: 0.5, phmc: 0.3 by default; adapted during burn-in).
    #[arg(long)]
    pub step_size: Option<f64>,
    /// Leapfrog steps per proposal (phmc).
    #[arg(long, default_value_t = 4)]
    pub leapfrog: usize,
    /// Random-walk sd of the θ-update in the unconstrained space (pgibbs).
    #[arg(long, default_value_t = 0.15)]
    pub theta_sd: f64,
    /// Random-walk θ-moves per sweep (pgibbs).
    #[arg(long, default_value_t = 10)]
    pub theta_steps: usize,
    /// θ-particles (smc2).
    #[arg(long, default_value_t = 1000)]
    pub theta_particles: usize,
    /// Write the samples and the summary as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Summary of one parameter.
#[derive(Debug, Serialize)]
pub struct ParamReport {
    /// Parameter name.
    pub name: String,
    /// Prior.
    pub prior: String,
    /// Posterior mean.
    pub mean: f64,
    /// Posterior standard deviation.
    pub sd: f64,
    /// Rank-normalised split R-hat.
    pub rhat: f64,
    /// Bulk effective sample size.
    pub ess: f64,
    /// Effective sample size of the mean.
    pub ess_mean: f64,
    /// Monte Carlo standard error of the mean.
    pub mcse: f64,
    /// Bulk ESS per second of sampling.
    pub ess_per_second: f64,
}

/// The JSON report of `diffsmc posterior`.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Always `"posterior"`.
    pub experiment: &'static str,
    /// The sampler.
    pub method: &'static str,
    /// The model.
    pub model: &'static str,
    /// The data file.
    pub data: String,
    /// Iterations per chain (burn-in included).
    pub iterations: usize,
    /// Burn-in.
    pub burn_in: usize,
    /// Chains.
    pub chains: usize,
    /// Particles.
    pub particles: usize,
    /// Resampler spec.
    pub resampler: String,
    /// Seed.
    pub seed: u64,
    /// Wall-clock seconds of sampling.
    pub seconds: f64,
    /// Parameter names.
    pub parameters: Vec<String>,
    /// Per chain: the kept samples (after burn-in), one θ vector per iteration.
    pub samples: Vec<Vec<Vec<f64>>>,
    /// Per chain: the acceptance rate after burn-in.
    pub acceptance: Vec<f64>,
    /// Per chain: the proposal scale (random-walk scale or step size) after burn-in.
    pub final_scale: Vec<f64>,
    /// Per parameter.
    pub summary: Vec<ParamReport>,
    /// Warnings (chains that never or hardly ever accepted).
    pub warnings: Vec<String>,
}

/// Runs the sampler `method` on the paper LGSSM with the default prior.
pub fn sample(
    args: &Args,
    params: &PaperParams,
    prior: &ProductPrior,
    config: &McmcConfig,
    progress: &(dyn Fn() + Sync),
) -> Result<Posterior, CliError> {
    let transforms = prior.transforms();
    let smc = SmcConfig::new(args.particles)?;
    Ok(match args.method {
        Method::Pmmh => {
            let pf = PfLikelihood::new(params, smc, &args.resampler);
            Pmmh::default().run_with(&pf, prior, &transforms, config, progress)?
        }
        Method::Pgibbs => {
            let update = RandomWalkTheta::new(prior, args.theta_sd, args.theta_steps)?;
            ParticleGibbs::new(args.particles)?.run_with(params, &update, config, progress)?
        }
        Method::Smc2 => {
            return Err(CliError::flag(
                "method",
                "smc2 produces weighted θ-particles, not chains: run it through `posterior`",
            ));
        }
        Method::Pmala | Method::Phmc => {
            let sampler = if args.method == Method::Pmala {
                GradientPmcmc::mala(args.step_size.unwrap_or(0.5))?
            } else {
                GradientPmcmc::hmc(args.step_size.unwrap_or(0.3), args.leapfrog)?
            };
            sampler.run_with(
                params,
                &smc,
                &args.resampler,
                prior,
                &transforms,
                config,
                progress,
            )?
        }
    })
}

/// Runs `diffsmc posterior`.
pub fn run(args: &Args, force: bool, quiet: bool) -> Result<(), CliError> {
    if let Some(p) = &args.json {
        check_writable(p, force)?;
    }
    if args.step_size.is_some() && !matches!(args.method, Method::Pmala | Method::Phmc) {
        return Err(CliError::flag(
            "step-size",
            format!(
                "only pmala and phmc take a step size, not {}",
                args.method.name()
            ),
        ));
    }
    let obs = read_csv(&args.data)?;
    let d = obs.dim();
    let params = PaperParams::new(d, obs.values.clone())?;
    let prior = ProductPrior::new(vec![
        Marginal::uniform(-1.0, 1.0)?,
        Marginal::uniform(0.0, 3.0)?,
    ]);
    let prior_names = ["U(-1, 1)", "U(0, 3)"];
    if args.method == Method::Smc2 {
        return run_smc2(args, &obs.values, &prior, force, quiet);
    }
    let config = McmcConfig::new(args.iterations, args.burn_in, args.chains, args.seed)?;
    let pb = crate::support::progress::bar(
        (args.iterations * args.chains) as u64,
        &format!("{} ({} chains)", args.method.name(), args.chains),
        quiet,
    );
    let t0 = Instant::now();
    let post = sample(args, &params, &prior, &config, &|| pb.inc(1))?;
    let seconds = t0.elapsed().as_secs_f64();
    pb.finish_and_clear();

    let names = ["theta1".to_string(), "theta2".to_string()];
    let summary: Vec<ParamReport> = post
        .summary()
        .into_iter()
        .enumerate()
        .map(|(j, s)| ParamReport {
            name: names[j].clone(),
            prior: prior_names[j].to_string(),
            mean: s.mean,
            sd: s.sd,
            rhat: s.rhat,
            ess: s.ess_bulk,
            ess_mean: s.ess_mean,
            mcse: s.mcse,
            ess_per_second: s.ess_bulk / seconds,
        })
        .collect();
    println!(
        "diffsmc posterior: {} on lgssm (d = {d}, T = {}), {} chains × {} iterations ({} burn-in), \
         N = {}, seed {}: {seconds:.2} s",
        args.method.name(),
        obs.len(),
        args.chains,
        args.iterations,
        args.burn_in,
        args.particles,
        args.seed
    );
    println!(
        "  {:<8} {:>9} {:>9} {:>9} {:>7} {:>8} {:>8}",
        "param", "mean", "sd", "mcse", "R-hat", "ESS", "ESS/s"
    );
    for s in &summary {
        println!(
            "  {:<8} {:>9.4} {:>9.4} {:>9.4} {:>7.3} {:>8.0} {:>8.1}",
            s.name, s.mean, s.sd, s.mcse, s.rhat, s.ess, s.ess_per_second
        );
    }
    let acc: Vec<String> = post
        .acceptance_rates()
        .iter()
        .map(|a| format!("{a:.3}"))
        .collect();
    println!("  acceptance per chain: {}", acc.join(", "));
    for w in &post.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(path) = &args.json {
        let report = Report {
            experiment: "posterior",
            method: args.method.name(),
            model: "lgssm",
            data: args.data.display().to_string(),
            iterations: args.iterations,
            burn_in: args.burn_in,
            chains: args.chains,
            particles: args.particles,
            resampler: args.resampler.to_string(),
            seed: args.seed,
            seconds,
            parameters: names.to_vec(),
            samples: post.chains.iter().map(|c| c.samples.clone()).collect(),
            acceptance: post.acceptance_rates(),
            final_scale: post.chains.iter().map(|c| c.final_scale).collect(),
            summary,
            warnings: post.warnings.clone(),
        };
        write_json(path, &report, force)?;
        println!("  wrote {}", path.display());
    }
    Ok(())
}

/// `posterior --method smc2`: SMC² on the paper LGSSM with the default prior; prints the
/// weighted posterior moments and writes [`crate::commands::smc2::Smc2Report`] as JSON.
fn run_smc2(
    args: &Args,
    ys: &[Vec<f64>],
    prior: &ProductPrior,
    force: bool,
    quiet: bool,
) -> Result<(), CliError> {
    let report = crate::commands::smc2::run_smc2_lgssm(
        ys,
        prior,
        args.theta_particles,
        args.particles,
        args.seed,
        quiet,
    )?;
    println!(
        "diffsmc posterior: smc2 on lgssm (T = {}), {} θ-particles × N_x = {} (final {}), seed {}: \
         {:.2} s, log evidence {:.4}",
        ys.len(),
        args.theta_particles,
        args.particles,
        report.n_x.last().copied().unwrap_or(args.particles),
        args.seed,
        report.seconds,
        report.log_evidence
    );
    println!("  {:<8} {:>9} {:>9}", "param", "mean", "sd");
    for (j, name) in ["theta1", "theta2"].iter().enumerate() {
        println!(
            "  {:<8} {:>9.4} {:>9.4}",
            name, report.mean[j], report.sd[j]
        );
    }
    if let Some(path) = &args.json {
        write_json(path, &report, force)?;
        println!("  wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_knobs_are_flag_errors() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("ys.csv");
        std::fs::write(&data, "0.1\n0.2\n-0.3\n").unwrap();
        let mut args = Args {
            model: PosteriorModel::Lgssm,
            data,
            method: Method::Pmmh,
            iterations: 10,
            burn_in: 10,
            chains: 1,
            particles: 8,
            seed: 0,
            resampler: ResamplerSpec::Systematic,
            step_size: None,
            leapfrog: 2,
            theta_sd: 0.15,
            theta_steps: 2,
            theta_particles: 200,
            json: None,
        };
        // burn-in ≥ iterations
        assert!(matches!(run(&args, false, true), Err(CliError::Engine(_))));
        args.burn_in = 2;
        args.step_size = Some(0.1);
        assert!(matches!(
            run(&args, false, true),
            Err(CliError::Flag {
                flag: "step-size",
                ..
            })
        ));
    }

    /// End to end on a short simulated series: the JSON has the documented shape.
    #[test]
    fn writes_samples_and_summary() {
        let dir = tempfile::tempdir().unwrap();
        let (_, ys) = diffsmc_lgssm::Lgssm::paper(0.5, 1.0, 1)
            .unwrap()
            .simulate(15, 2);
        let csv: String = ys.iter().map(|y| format!("{}\n", y[0])).collect();
        let data = dir.path().join("ys.csv");
        std::fs::write(&data, csv).unwrap();
        for method in [Method::Pmmh, Method::Pgibbs, Method::Pmala, Method::Phmc] {
            let json = dir.path().join(format!("{}.json", method.name()));
            let args = Args {
                model: PosteriorModel::Lgssm,
                data: data.clone(),
                method,
                iterations: 40,
                burn_in: 10,
                chains: 2,
                particles: 16,
                seed: 1,
                resampler: ResamplerSpec::Systematic,
                step_size: None,
                leapfrog: 2,
                theta_sd: 0.15,
                theta_steps: 2,
                theta_particles: 200,
                json: Some(json.clone()),
            };
            run(&args, false, true).unwrap();
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
            assert_eq!(v["samples"].as_array().unwrap().len(), 2);
            assert_eq!(v["samples"][0].as_array().unwrap().len(), 30);
            assert_eq!(v["summary"].as_array().unwrap().len(), 2);
            for key in ["mean", "sd", "rhat", "ess", "mcse"] {
                assert!(v["summary"][0].get(key).is_some(), "{key}");
            }
            assert_eq!(v["acceptance"].as_array().unwrap().len(), 2);
            // Not overwritten without --force.
            assert!(matches!(
                run(&args, false, true),
                Err(CliError::Exists { .. })
            ));
            // `diffsmc plot` draws traces and densities from it.
            let svg = dir.path().join(format!("{}.svg", method.name()));
            let plot = crate::commands::plot::PlotArgs {
                files: vec![json.clone()],
                out: svg.clone(),
            };
            crate::commands::plot::plot(&plot, false).unwrap();
            let text = std::fs::read_to_string(&svg).unwrap();
            assert!(text.contains("trace of theta1") && text.contains("density of theta2"));
        }
    }

    /// `--method smc2` runs SMC² and writes its weighted θ-particles, moments and evidence;
    /// the posterior mean lies within the prior's support and the weights sum to one.
    #[test]
    fn smc2_through_posterior() {
        let dir = tempfile::tempdir().unwrap();
        let (_, ys) = diffsmc_lgssm::Lgssm::paper(0.5, 1.0, 1)
            .unwrap()
            .simulate(15, 2);
        let csv: String = ys.iter().map(|y| format!("{}\n", y[0])).collect();
        let data = dir.path().join("ys.csv");
        std::fs::write(&data, csv).unwrap();
        let json = dir.path().join("smc2.json");
        let args = Args {
            model: PosteriorModel::Lgssm,
            data,
            method: Method::Smc2,
            iterations: 2000,
            burn_in: 500,
            chains: 4,
            particles: 32,
            seed: 3,
            resampler: ResamplerSpec::Systematic,
            step_size: None,
            leapfrog: 4,
            theta_sd: 0.15,
            theta_steps: 10,
            theta_particles: 200,
            json: Some(json.clone()),
        };
        run(&args, false, true).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(v["method"], "smc2");
        assert_eq!(v["samples"].as_array().unwrap().len(), 200);
        let w: f64 = v["weights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .sum();
        assert!((w - 1.0).abs() < 1e-9);
        let m1 = v["mean"][0].as_f64().unwrap();
        let m2 = v["mean"][1].as_f64().unwrap();
        assert!((-1.0..1.0).contains(&m1) && (0.0..3.0).contains(&m2));
        assert!(v["log_evidence"].as_f64().unwrap().is_finite());
    }
}
