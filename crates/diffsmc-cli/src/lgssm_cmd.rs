//! `diffsmc filter` (linear Gaussian state-space model).

use std::path::PathBuf;
use std::time::Instant;

use diffsmc::{ResamplerSpec, Smc, SmcConfig, SmcOutput, Trigger};
use diffsmc_lgssm::Lgssm;
use serde_json::json;

use crate::data::read_csv;
use crate::error::CliError;
use crate::output::{check_writable, num, write_json};
use crate::plot::{Band, Chart, Series, Style};

/// Arguments of `diffsmc filter`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  diffsmc filter --model lgssm --theta 0.5,1.0 --data ys.csv --particles 1024 \\\n      --resampler systematic --trigger ess:0.5 --seed 1 --kalman --json out.json --plot out.svg"
)]
pub struct FilterArgs {
    /// Model: `lgssm` (the paper's linear Gaussian SSM in the data's dimension), or a
    /// discretely observed SDE: `ou` (dX = κ(μ − X)dt + σ dW, any dimension) or
    /// `double-well` (dX = θ1 X(θ2 − X²)dt + σ dW), whose data have a time column first.
    #[arg(long, default_value = "lgssm")]
    pub model: String,
    /// Parameters, comma-separated (lgssm: θ1,θ2; ou: κ,μ,σ; double-well: θ1,θ2,σ).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.5,1.0",
        allow_hyphen_values = true
    )]
    pub theta: Vec<f64>,
    /// Observations: CSV, one row per time step, one column per dimension, optional header;
    /// an empty or NaN cell is a missing value.
    #[arg(long)]
    pub data: PathBuf,
    /// Number of particles.
    #[arg(long, default_value_t = 1024)]
    pub particles: usize,
    /// Resampler spec (systematic, multinomial, …, diffusion:…, ot:…, gumbel:…, soft:…).
    #[arg(long, default_value = "systematic")]
    pub resampler: ResamplerSpec,
    /// When to resample: `always`, `never` or `ess:FRAC` (default: `always` for lgssm,
    /// `never` — bridge importance sampling — for the SDE models).
    #[arg(long)]
    pub trigger: Option<Trigger>,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub sde: crate::sde_cmd::SdeArgs,
    /// Also run the exact Kalman filter.
    #[arg(long)]
    pub kalman: bool,
    /// Write the results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Plot the filtering means (and the Kalman band with --kalman) as SVG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// Runs `diffsmc filter`.
pub fn filter(args: &FilterArgs, force: bool, quiet: bool) -> Result<(), CliError> {
    if crate::sde_cmd::is_sde_model(&args.model) {
        return crate::sde_cmd::filter(args, force, quiet);
    }
    if args.model != "lgssm" {
        return Err(CliError::flag(
            "model",
            format!(
                "unknown model `{}`; expected `lgssm`, `ou` or `double-well`",
                args.model
            ),
        ));
    }
    let trigger = args.trigger.unwrap_or(Trigger::Always);
    if args.theta.len() != 2 {
        return Err(CliError::flag(
            "theta",
            format!("lgssm takes 2 parameters θ1,θ2; got {}", args.theta.len()),
        ));
    }
    for p in [&args.json, &args.plot].into_iter().flatten() {
        check_writable(p, force)?;
    }
    let obs = read_csv(&args.data)?;
    let d = obs.dim();
    let model = Lgssm::paper(args.theta[0], args.theta[1], d)?;
    let data = model.with_data(obs.values.clone())?;
    let config = SmcConfig::new(args.particles)?
        .with_trigger(trigger)?
        .with_filter_moments(true);
    let resampler = args.resampler.build::<f64>()?;
    let t0 = Instant::now();
    let pb = crate::progress::spinner("filter", quiet);
    let pf = Smc::new(config).run(&diffsmc::Bootstrap(&data), &resampler, args.seed);
    pb.finish_and_clear();
    let pf: SmcOutput<f64> = pf?;
    let elapsed = t0.elapsed().as_secs_f64();
    let kf = if args.kalman {
        Some(data.kalman()?)
    } else {
        None
    };
    let non_converged = pf.resampler_converged.iter().filter(|c| !**c).count();

    println!(
        "filter: lgssm d = {d}, {} steps, N = {}, resampler {}, trigger {:?}",
        obs.len(),
        args.particles,
        args.resampler,
        trigger
    );
    println!(
        "  log-likelihood (particle filter) {:.6}",
        pf.log_likelihood
    );
    if let Some(kf) = &kf {
        println!(
            "  log-likelihood (Kalman)          {:.6}",
            kf.log_likelihood
        );
    }
    println!(
        "  resampled at {} of {} steps; {:.3} ms",
        pf.n_resampled(),
        obs.len(),
        elapsed * 1e3
    );
    if non_converged > 0 {
        eprintln!("warning: the resampler did not converge at {non_converged} steps");
    }
    if let Some(p) = &args.json {
        let v = json!({
            "model": "lgssm",
            "theta": args.theta,
            "data": args.data.display().to_string(),
            "particles": args.particles,
            "resampler": args.resampler.to_string(),
            "trigger": format!("{:?}", trigger),
            "seed": args.seed,
            "steps": obs.len(),
            "log_likelihood": num(pf.log_likelihood),
            "kalman_log_likelihood": kf.as_ref().map(|k| num(k.log_likelihood)),
            "resampled_steps": pf.n_resampled(),
            "resampled": pf.resampled,
            "resampler_converged": pf.resampler_converged,
            "ess": pf.ess,
            "log_likelihood_increments": pf.log_likelihood_increments,
            "filter_mean": pf.filter_means,
            "filter_cov": pf.filter_covs,
            "kalman_filter_mean": kf.as_ref().map(|k| k.filter_means.clone()),
            "seconds": elapsed,
        });
        write_json(p, &v, force)?;
    }
    if let Some(p) = &args.plot {
        let t: Vec<f64> = (0..obs.len()).map(|k| k as f64).collect();
        let mut series = vec![Series {
            name: "particle filter mean (dim 0)".into(),
            points: t
                .iter()
                .copied()
                .zip(pf.filter_means.iter().map(|m| m[0]))
                .collect(),
            style: Style::Line,
            color: 1,
        }];
        series.push(Series {
            name: "observation (dim 0)".into(),
            points: t
                .iter()
                .copied()
                .zip(obs.values.iter().map(|y| y[0]))
                .collect(),
            style: Style::Points,
            color: 6,
        });
        let mut bands = Vec::new();
        if let Some(kf) = &kf {
            series.push(Series {
                name: "Kalman mean (dim 0)".into(),
                points: t
                    .iter()
                    .copied()
                    .zip(kf.filter_means.iter().map(|m| m[0]))
                    .collect(),
                style: Style::Line,
                color: 0,
            });
            bands.push(Band {
                name: "Kalman ± 2 sd".into(),
                points: kf
                    .filter_means
                    .iter()
                    .zip(&kf.filter_covs)
                    .enumerate()
                    .map(|(k, (m, c))| {
                        (k as f64, m[0] - 2.0 * c[0].sqrt(), m[0] + 2.0 * c[0].sqrt())
                    })
                    .collect(),
                color: 0,
            });
        }
        Chart {
            title: format!("Filtering means, {}", args.resampler),
            x_label: "time step".into(),
            y_label: "state".into(),
            series,
            bands,
            log_y: false,
        }
        .draw_svg(p)?;
    }
    Ok(())
}
