//! `diffsmc filter` (linear Gaussian state-space model).

use std::path::PathBuf;
use std::time::Instant;

use diffsmc::{
    Auxiliary, FeynmanKac, Guided, Resampler, ResamplerSpec, Smc, SmcConfig, SmcOutput, Trigger,
    weighted_mean_cov,
};
use diffsmc_lgssm::{Lgssm, LgssmData};
use diffsmc_sde::SdeFamily;
use serde::Serialize;

use crate::models::CliModel;
use crate::models::sde::{
    DoubleWellModel, Model, OuModel, SdeArgs, SdeModel, min_mean, read_time_series, run_path,
    settings,
};
use crate::support::data::read_csv;
use crate::support::error::CliError;
use crate::support::output::{check_writable, write_json};
use crate::support::plot::{Band, Chart, Series, Style};
use crate::support::progress;

/// The filtering algorithm of `diffsmc filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Algorithm {
    /// Propose from the transition, weight by the observation density.
    #[default]
    Bootstrap,
    /// The guided filter with the model's locally optimal proposal p(x_t | x_{t-1}, y_t).
    Guided,
    /// The auxiliary particle filter: the optimal proposal and the exact look-ahead
    /// p(y_t | x_{t-1}) (fully adapted).
    Auxiliary,
}

impl Algorithm {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Bootstrap => "bootstrap",
            Algorithm::Guided => "guided",
            Algorithm::Auxiliary => "auxiliary",
        }
    }
    /// What the algorithm needs from the model beyond the bootstrap filter.
    pub fn needs(self) -> &'static str {
        match self {
            Algorithm::Bootstrap => "nothing",
            Algorithm::Guided => "a locally optimal proposal",
            Algorithm::Auxiliary => "an exact look-ahead p(y_t | x_{t-1}) and optimal proposal",
        }
    }
}

/// Arguments of `diffsmc filter`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  diffsmc filter --model lgssm --theta 0.5,1.0 --data ys.csv --particles 1024 \\\n      --algorithm guided --resampler systematic --trigger ess:0.5 --seed 1 --kalman --json out.json --plot out.svg"
)]
pub struct FilterArgs {
    /// Model: `lgssm` (the paper's linear Gaussian SSM in the data's dimension), or a
    /// discretely observed SDE: `ou` (dX = κ(μ − X)dt + σ dW, any dimension) or
    /// `double-well` (dX = θ1 X(θ2 − X²)dt + σ dW), whose data have a time column first.
    #[arg(long, default_value = "lgssm")]
    pub model: String,
    /// Filtering algorithm: `bootstrap`, `guided` (the model's locally optimal proposal) or
    /// `auxiliary` (the optimal proposal and the exact look-ahead); guided and auxiliary need
    /// a model that provides them (lgssm).
    #[arg(long, value_enum, default_value = "bootstrap")]
    pub algorithm: Algorithm,
    /// Parameters, comma-separated, given once (lgssm: θ1,θ2; ou: κ,μ,σ; double-well:
    /// θ1,θ2,σ).
    #[arg(long, default_value = "0.5,1.0", allow_hyphen_values = true)]
    pub theta: crate::support::args::Theta,
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
    pub sde: SdeArgs,
    /// Also print the exact Kalman log-likelihood (the JSON and the plot always hold the
    /// Kalman reference for lgssm).
    #[arg(long)]
    pub kalman: bool,
    /// Write the results as JSON (log-likelihood, ESS and filtering moments per step, and the
    /// Kalman filter's for lgssm).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Plot the filtering mean ± 2 sd (dimension 0) against the Kalman filter as SVG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// What `diffsmc filter --json` writes for lgssm.
#[derive(Debug, Serialize)]
struct FilterReport {
    model: &'static str,
    algorithm: &'static str,
    theta: Vec<f64>,
    data: String,
    particles: usize,
    resampler: String,
    trigger: String,
    seed: u64,
    steps: usize,
    log_likelihood: f64,
    kalman_log_likelihood: f64,
    resampled_steps: usize,
    resampled: Vec<bool>,
    resampler_converged: Vec<bool>,
    /// Per step: the ESS of the weights the driver resamples with (for `auxiliary`, the
    /// first-stage weights).
    ess: Vec<f64>,
    log_likelihood_increments: Vec<f64>,
    /// Per step, per dimension: the filtering mean E[x_t | y_0..y_t].
    filter_means: Vec<Vec<f64>>,
    /// Per step, per dimension: the filtering variance.
    filter_variances: Vec<Vec<f64>>,
    kalman_means: Vec<Vec<f64>>,
    kalman_variances: Vec<Vec<f64>>,
    /// Per step: the filtering mean (same as `filter_means`; kept for older readers).
    filter_mean: Vec<Vec<f64>>,
    /// Per step: the filtering covariance, row-major.
    filter_cov: Vec<Vec<f64>>,
    /// Per step: the Kalman filtering mean (same as `kalman_means`).
    kalman_filter_mean: Vec<Vec<f64>>,
    seconds: f64,
}

/// The diagonal of each row-major `d × d` covariance.
fn diagonals(covs: &[Vec<f64>], d: usize) -> Vec<Vec<f64>> {
    covs.iter()
        .map(|c| (0..d).map(|k| c[k * d + k]).collect())
        .collect()
}

/// Filtering means and row-major covariances, per step.
type Moments = (Vec<Vec<f64>>, Vec<Vec<f64>>);

/// One filter run on `model`, with a spinner.
fn run_model<M: FeynmanKac<f64>>(
    model: &M,
    config: &SmcConfig,
    resampler: &dyn Resampler<f64>,
    seed: u64,
    quiet: bool,
) -> Result<SmcOutput<f64>, CliError> {
    let pb = crate::support::progress::spinner("filter", quiet);
    let out = Smc::new(config.clone()).run(model, resampler, seed);
    pb.finish_and_clear();
    Ok(out?)
}

/// The filtering moments of the auxiliary filter at every step: the driver's weights at step
/// `t < T − 1` carry the look-ahead `η_{t+1}`, so they are corrected on the run's recorded
/// history ([`Auxiliary::filter_log_weights`]); one run with the same seed as `last` (the
/// history does not change a run), so O(T) steps.
fn auxiliary_moments<F: FeynmanKac<f64>, L: diffsmc::LookAhead<f64>>(
    apf: &Auxiliary<F, L>,
    config: &SmcConfig,
    resampler: &dyn Resampler<f64>,
    seed: u64,
) -> Result<Moments, CliError> {
    let smc = Smc::new(config.clone().with_filter_moments(false).with_history(true));
    let out: SmcOutput<f64> = smc.run(apf, resampler, seed)?;
    let history = out
        .history
        .as_ref()
        .ok_or_else(|| CliError::flag("algorithm", "the run kept no history"))?;
    let (mut means, mut covs) = (
        Vec::with_capacity(history.len()),
        Vec::with_capacity(history.len()),
    );
    for t in 0..history.len() {
        let lw = apf.filter_log_weights(t, &history.particles[t], &history.log_weights[t])?;
        let (m, c) = weighted_mean_cov(&history.particles[t], &lw);
        means.push(m);
        covs.push(c);
    }
    Ok((means, covs))
}

/// Runs `args.algorithm` on the LGSSM data: the output and the filtering moments per step.
fn run_algorithm(
    args: &FilterArgs,
    data: &LgssmData<f64>,
    config: &SmcConfig,
    resampler: &dyn Resampler<f64>,
    quiet: bool,
) -> Result<(SmcOutput<f64>, Moments), CliError> {
    let seed = args.seed;
    let moments = |o: &SmcOutput<f64>| (o.filter_means.clone(), o.filter_covs.clone());
    match args.algorithm {
        Algorithm::Bootstrap => {
            let out = run_model(&diffsmc::Bootstrap(data), config, resampler, seed, quiet)?;
            let mc = moments(&out);
            Ok((out, mc))
        }
        Algorithm::Guided => {
            let g = Guided::new(data, data.optimal_proposal()?)?;
            let out = run_model(&g, config, resampler, seed, quiet)?;
            let mc = moments(&out);
            Ok((out, mc))
        }
        Algorithm::Auxiliary => {
            let apf = Auxiliary::new(
                Guided::new(data, data.optimal_proposal()?)?,
                data.exact_look_ahead()?,
            )?;
            let out = run_model(&apf, config, resampler, seed, quiet)?;
            let mc = if args.json.is_some() || args.plot.is_some() {
                auxiliary_moments(&apf, config, resampler, seed)?
            } else {
                (Vec::new(), Vec::new())
            };
            Ok((out, mc))
        }
    }
}

/// Runs `diffsmc filter`.
pub fn filter(args: &FilterArgs, force: bool, quiet: bool) -> Result<(), CliError> {
    if let CliModel::Sde(model) = args.model.parse()? {
        if args.algorithm != Algorithm::Bootstrap {
            return Err(CliError::Unsupported {
                algorithm: args.algorithm.name(),
                model: args.model.clone(),
                needs: args.algorithm.needs(),
            });
        }
        return filter_sde(model, args, force, quiet);
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
        // The auxiliary filter's driver moments are of the twisted weights: not reported.
        .with_filter_moments(args.algorithm != Algorithm::Auxiliary);
    let resampler = args.resampler.build::<f64>()?;
    let t0 = Instant::now();
    let (pf, (means, covs)) = run_algorithm(args, &data, &config, &*resampler, quiet)?;
    // For `auxiliary` with --json/--plot this includes the truncated runs of its moments.
    let elapsed = t0.elapsed().as_secs_f64();
    let kf = data.kalman()?;
    let non_converged = pf.resampler_converged.iter().filter(|c| !**c).count();

    println!(
        "filter: lgssm d = {d}, {} steps, N = {}, {} filter, resampler {}, trigger {:?}",
        obs.len(),
        args.particles,
        args.algorithm.name(),
        args.resampler,
        trigger
    );
    println!(
        "  log-likelihood (particle filter) {:.6}",
        pf.log_likelihood
    );
    if args.kalman {
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
    let variances = diagonals(&covs, d);
    let kalman_variances = diagonals(&kf.filter_covs, d);
    if let Some(p) = &args.json {
        let report = FilterReport {
            model: "lgssm",
            algorithm: args.algorithm.name(),
            theta: args.theta.0.clone(),
            data: args.data.display().to_string(),
            particles: args.particles,
            resampler: args.resampler.to_string(),
            trigger: format!("{trigger:?}"),
            seed: args.seed,
            steps: obs.len(),
            log_likelihood: pf.log_likelihood,
            kalman_log_likelihood: kf.log_likelihood,
            resampled_steps: pf.n_resampled(),
            resampled: pf.resampled.clone(),
            resampler_converged: pf.resampler_converged.clone(),
            ess: pf.ess.clone(),
            log_likelihood_increments: pf.log_likelihood_increments.clone(),
            filter_means: means.clone(),
            filter_variances: variances.clone(),
            kalman_means: kf.filter_means.clone(),
            kalman_variances: kalman_variances.clone(),
            filter_mean: means.clone(),
            filter_cov: covs.clone(),
            kalman_filter_mean: kf.filter_means.clone(),
            seconds: elapsed,
        };
        let v = serde_json::to_value(&report).map_err(|e| CliError::Io {
            path: p.display().to_string(),
            message: e.to_string(),
        })?;
        write_json(p, &v, force)?;
    }
    if let Some(p) = &args.plot {
        let t: Vec<f64> = (0..obs.len()).map(|k| k as f64).collect();
        let line = |name: String, ys: Vec<f64>, color: usize, style: Style| Series {
            name,
            points: t.iter().copied().zip(ys).collect(),
            style,
            color,
        };
        let band = |name: String, m: &[Vec<f64>], v: &[Vec<f64>], color: usize| Band {
            name,
            points: m
                .iter()
                .zip(v)
                .enumerate()
                .map(|(k, (m, v))| {
                    let sd = v[0].max(0.0).sqrt();
                    (k as f64, m[0] - 2.0 * sd, m[0] + 2.0 * sd)
                })
                .collect(),
            color,
        };
        let alg = args.algorithm.name();
        Chart {
            title: format!(
                "Filtering means ± 2 sd (dim 0): {alg} filter (N = {}, {}) vs Kalman",
                args.particles, args.resampler
            ),
            x_label: "time step".into(),
            y_label: "state".into(),
            series: vec![
                line(
                    "Kalman mean".into(),
                    kf.filter_means.iter().map(|m| m[0]).collect(),
                    0,
                    Style::Line,
                ),
                line(
                    format!("{alg} filter mean"),
                    means.iter().map(|m| m[0]).collect(),
                    1,
                    Style::Line,
                ),
                line(
                    "observation (dim 0)".into(),
                    obs.values.iter().map(|y| y[0]).collect(),
                    6,
                    Style::Points,
                ),
            ],
            bands: vec![
                band(
                    "Kalman ± 2 sd".into(),
                    &kf.filter_means,
                    &kalman_variances,
                    0,
                ),
                band(format!("{alg} filter ± 2 sd"), &means, &variances, 1),
            ],
            log_y: false,
        }
        .draw_svg(p)?;
    }
    Ok(())
}

/// `diffsmc filter --model ou|double-well`.
fn filter_sde(model: Model, args: &FilterArgs, force: bool, quiet: bool) -> Result<(), CliError> {
    match model {
        Model::Ou => filter_sde_model(&OuModel, args, force, quiet),
        Model::DoubleWell => filter_sde_model(&DoubleWellModel, args, force, quiet),
    }
}

/// `diffsmc filter` for one SDE model.
fn filter_sde_model<M: SdeModel>(
    model: &M,
    args: &FilterArgs,
    force: bool,
    quiet: bool,
) -> Result<(), CliError> {
    if args.kalman {
        return Err(CliError::flag(
            "kalman",
            "applies to lgssm only (for ou the exact likelihood is always reported)",
        ));
    }
    if args.plot.is_some() {
        return Err(CliError::flag(
            "plot",
            "is not available for the SDE models",
        ));
    }
    if let Some(p) = &args.json {
        check_writable(p, force)?;
    }
    let (obs, lines) = read_time_series(&args.data)?;
    let d = obs.dim();
    let family = model.family(d)?;
    model.check_theta("theta", &args.theta, d)?;
    let settings = settings(&args.sde, args.particles, args.trigger)?;
    let resampler = args.resampler.build::<f64>()?;
    let file = args.data.display().to_string();
    let th = &args.theta;
    let t0 = Instant::now();
    let pb = progress::spinner("filter", quiet);
    let sde = family.sde(th)?;
    let run = run_path(&sde, &obs, &lines, &file, &settings, &resampler, args.seed)?;
    let (exact, euler) = model.reference_log_likelihoods(th, &obs, settings.substeps())?;
    pb.finish_and_clear();
    let elapsed = t0.elapsed().as_secs_f64();
    let (fin_min, fin_mean) = min_mean(&run.final_ess);
    let (min_min, _) = min_mean(&run.min_ess);

    println!(
        "filter: {} d = {d}, {} observations ({} intervals), N = {}, M = {} sub-steps, proposal {}, trigger {:?}",
        model.name(),
        obs.len(),
        obs.n_intervals(),
        settings.particles(),
        settings.substeps(),
        settings.proposal(),
        settings.trigger()
    );
    println!(
        "  {:<44} {:.6}",
        "log-likelihood (bridge estimate)", run.log_likelihood
    );
    if let (Some(e), Some(u)) = (exact, euler) {
        println!("  {:<44} {e:.6}", "log-likelihood (exact OU)");
        println!(
            "  {:<44} {u:.6}",
            format!(
                "log-likelihood (Euler scheme, M = {}; N → ∞)",
                settings.substeps()
            )
        );
    }
    println!(
        "  final ESS / N: min {fin_min:.3}, mean {fin_mean:.3}; smallest ESS / N at any sub-step {min_min:.3}; resampled {} times; {:.3} s",
        run.resampled, elapsed
    );
    if fin_min < 0.1 {
        eprintln!(
            "warning: an interval's ESS fell to {:.1}% of N: the estimate is unreliable there (long interval or strong nonlinearity); add --substeps, --particles or resampling (--trigger ess:0.5)",
            100.0 * fin_min
        );
    }
    if let Some(p) = &args.json {
        let v = SdeFilterReport {
            model: model.name(),
            theta: args.theta.0.clone(),
            data: file,
            dim: d,
            observations: obs.len(),
            intervals: obs.n_intervals(),
            particles: settings.particles(),
            substeps: settings.substeps(),
            proposal: settings.proposal().to_string(),
            lookahead: settings.lookahead().to_string(),
            trigger: format!("{:?}", settings.trigger()),
            resampler: args.resampler.to_string(),
            seed: args.seed,
            log_likelihood: run.log_likelihood,
            exact_log_likelihood: exact,
            euler_log_likelihood: euler,
            interval_log_likelihoods: run.intervals,
            final_ess_fraction: run.final_ess,
            min_ess_fraction: run.min_ess,
            resampled_steps: run.resampled,
            seconds: elapsed,
        };
        write_json(p, &v, force)?;
    }
    Ok(())
}

/// The JSON report of `filter --model ou|double-well` (keys in docs/cli.md; non-finite numbers
/// are written as `null`; the exact and Euler log-likelihoods are `null` but for the OU model).
#[derive(Debug, Serialize)]
struct SdeFilterReport {
    model: &'static str,
    theta: Vec<f64>,
    data: String,
    dim: usize,
    observations: usize,
    intervals: usize,
    particles: usize,
    substeps: usize,
    proposal: String,
    lookahead: String,
    trigger: String,
    resampler: String,
    seed: u64,
    log_likelihood: f64,
    exact_log_likelihood: Option<f64>,
    euler_log_likelihood: Option<f64>,
    interval_log_likelihoods: Vec<f64>,
    final_ess_fraction: Vec<f64>,
    min_ess_fraction: Vec<f64>,
    resampled_steps: usize,
    seconds: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn cli(args: &[&str]) -> Result<(), CliError> {
        use clap::Parser;
        let mut all = vec!["diffsmc", "--quiet"];
        all.extend_from_slice(args);
        crate::run(crate::Cli::try_parse_from(all).expect("arguments parse"))
    }

    /// `filter --algorithm …` on 20 steps of the paper LGSSM (N = 2000): every algorithm's
    /// JSON has the documented per-step fields; the log-likelihoods are within 0.3 of Kalman
    /// (the bootstrap's sd at this N is ≈ 0.03, so 10 sd) and the filtering means and
    /// variances within 0.1 (the Monte Carlo error of a mean at N = 2000 is ≈ 0.02 sd of the
    /// filter, which is ≈ 0.6); the auxiliary filter's moments are those of the filter, not of
    /// its look-ahead-twisted weights. A plot is written.
    #[test]
    fn filter_algorithms_against_kalman() {
        let dir = tempfile::tempdir().unwrap();
        let (_, ys) = Lgssm::paper(0.5, 1.0, 1).unwrap().simulate(20, 5);
        let csv = dir.path().join("ys.csv");
        let text: String = ys.iter().map(|y| format!("{}\n", y[0])).collect();
        std::fs::write(&csv, format!("y\n{text}")).unwrap();
        for alg in ["bootstrap", "guided", "auxiliary"] {
            let out = dir.path().join(format!("{alg}.json"));
            let svg = dir.path().join(format!("{alg}.svg"));
            cli(&[
                "filter",
                "--algorithm",
                alg,
                "--data",
                csv.to_str().unwrap(),
                "--particles",
                "2000",
                "--trigger",
                "ess:0.5",
                "--json",
                out.to_str().unwrap(),
                "--plot",
                svg.to_str().unwrap(),
            ])
            .unwrap();
            assert!(svg.exists());
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
            assert_eq!(v["algorithm"], alg);
            let (ll, kl) = (
                v["log_likelihood"].as_f64().unwrap(),
                v["kalman_log_likelihood"].as_f64().unwrap(),
            );
            assert!((ll - kl).abs() < 0.3, "{alg}: {ll} vs {kl}");
            let get = |k: &str| -> Vec<Vec<f64>> { serde_json::from_value(v[k].clone()).unwrap() };
            let (m, var, km, kv) = (
                get("filter_means"),
                get("filter_variances"),
                get("kalman_means"),
                get("kalman_variances"),
            );
            assert_eq!(m.len(), 20);
            assert_eq!(v["ess"].as_array().unwrap().len(), 20);
            for t in 0..20 {
                assert!((m[t][0] - km[t][0]).abs() < 0.1, "{alg} step {t}: mean");
                assert!(
                    (var[t][0] - kv[t][0]).abs() < 0.1,
                    "{alg} step {t}: variance"
                );
            }
        }
    }

    /// The SDE models have no optimal proposal or look-ahead: a typed error naming both.
    #[test]
    fn guided_on_an_sde_model_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("ou.csv");
        std::fs::write(&csv, "t,x\n0,0.1\n0.1,0.2\n").unwrap();
        for alg in ["guided", "auxiliary"] {
            let err = cli(&[
                "filter",
                "--model",
                "ou",
                "--theta",
                "2,0.5,0.5",
                "--algorithm",
                alg,
                "--data",
                csv.to_str().unwrap(),
            ])
            .unwrap_err();
            assert!(
                matches!(&err, CliError::Unsupported { algorithm, model, .. } if *algorithm == alg && model == "ou"),
                "{err}"
            );
        }
    }
}
