//! `diffsmc experiment lotka-volterra`: learning prey–predator dynamics end to end through the
//! particle filter (Andersson & Zhao 2025, §Lotka–Volterra).

use diffsmc::grad::{ChunkSize, GradMode, GradOptions, ParticleFilterNll, gradient, value};
use diffsmc::rng::derive_seed;
use diffsmc::{ResamplerSpec, SmcConfig};
use diffsmc_lotka_volterra::{KnownLv, LvParams, NeuralLv, SimConfig, prediction_rmse, simulate};
use serde::Serialize;

use crate::support::error::CliError;
use crate::support::optimise::{OptimSettings, admissible, minimise};
use crate::support::output::{Summary, summary};
use std::path::PathBuf;

use crate::commands::plot as plot_cmd;
use crate::support::{optimise, output, plot, progress};

/// Number of simulated predictions per run.
pub const PREDICTIONS: usize = 100;
/// A run fails if its RMSE exceeds this (or anything is NaN).
pub const RMSE_FAIL: f64 = 50.0;

/// Settings of the experiment.
#[derive(Debug, Clone)]
pub struct LvSettings {
    /// Independent runs (each new data and a new network initialisation).
    pub runs: usize,
    /// Training iterations.
    pub iterations: usize,
    /// Particles.
    pub particles: usize,
    /// Optimiser.
    pub optim: OptimSettings,
    /// Use the same filter seed at every iteration (default: a fresh seed per iteration).
    pub common_random_numbers: bool,
    /// Forward, reverse or automatic gradients.
    pub grad: GradMode,
    /// Seed.
    pub seed: u64,
}

/// One run's results.
#[derive(Debug, Clone)]
pub struct LvRun {
    /// Mean over predictions of the RMSE against the true trajectory.
    pub rmse: f64,
    /// Loss per iteration.
    pub loss_trace: Vec<f64>,
    /// The particle-filter NLL of the known (true) dynamics on the same data.
    pub target_nll: f64,
    /// Loss and RMSE finite and RMSE ≤ 50.
    pub success: bool,
    /// The true trajectory.
    pub truth: Vec<[f64; 2]>,
    /// The mean of the predicted trajectories.
    pub mean_prediction: Vec<[f64; 2]>,
    /// Skipped non-finite updates.
    pub skipped: usize,
    /// Seconds spent training.
    pub seconds: f64,
}

/// Trains the neural model on one simulated data set.
pub fn one_run(
    s: &LvSettings,
    spec: &ResamplerSpec,
    run: usize,
    on_iter: impl FnMut(),
) -> Result<LvRun, CliError> {
    let mut on_iter = on_iter;
    let seed = derive_seed(s.seed, run as u64);
    let sim = simulate(&LvParams::paper(), &SimConfig::paper(), seed)?;
    let family = NeuralLv::new(sim.observations.clone(), derive_seed(seed, 1))?;
    let smc = SmcConfig::new(s.particles)?;
    let opts = GradOptions::default()
        .with_chunk(ChunkSize::Sixteen)
        .with_mode(s.grad);
    let target_nll = value(
        &ParticleFilterNll::new(
            &KnownLv::new(sim.observations.clone()),
            &smc,
            spec,
            derive_seed(seed, 2),
        ),
        &KnownLv::theta(&LvParams::paper()),
    )?;
    let mut k = 0u64;
    let inadmissible = std::cell::Cell::new(0);
    let t0 = std::time::Instant::now();
    let fit = minimise(
        &s.optim,
        &family.initial_theta(),
        |theta: &[f64]| {
            let fseed = if s.common_random_numbers {
                derive_seed(seed, 3)
            } else {
                derive_seed(seed, 1000 + k)
            };
            k += 1;
            admissible(
                gradient(
                    &ParticleFilterNll::new(&family, &smc, spec, fseed),
                    theta,
                    &opts,
                ),
                theta.len(),
                &inadmissible,
            )
        },
        |_| on_iter(),
    )?;
    let seconds = t0.elapsed().as_secs_f64();
    let paths = family.simulate_learnt(&fit.theta, PREDICTIONS, derive_seed(seed, 4))?;
    let rmse = prediction_rmse(&paths, &sim.states)?;
    let n = sim.states.len();
    let mean_prediction: Vec<[f64; 2]> = (0..n)
        .map(|j| {
            let m = paths.len() as f64;
            [
                paths.iter().map(|p| p[j][0]).sum::<f64>() / m,
                paths.iter().map(|p| p[j][1]).sum::<f64>() / m,
            ]
        })
        .collect();
    let loss_ok = fit.trace.last().is_some_and(|v| v.is_finite());
    Ok(LvRun {
        rmse,
        success: loss_ok && rmse.is_finite() && rmse <= RMSE_FAIL,
        loss_trace: fit.trace,
        target_nll,
        truth: sim.states,
        mean_prediction,
        skipped: fit.skipped,
        seconds,
    })
}

/// Runs the experiment for each resampler (runs one after another; each gradient is
/// parallel over dual chunks).
pub fn run(
    s: &LvSettings,
    specs: &[ResamplerSpec],
    pb: &indicatif::ProgressBar,
) -> Result<(LvReport, Vec<(String, LvRun)>), CliError> {
    if s.runs == 0 {
        return Err(CliError::flag("runs", "must be at least 1"));
    }
    let mut by_resampler = Vec::new();
    let mut first_runs = Vec::new();
    for spec in specs {
        let mut runs = Vec::new();
        let mut rmse_ok = Vec::new();
        let mut successes = 0;
        for r in 0..s.runs {
            let res = one_run(s, spec, r, || pb.inc(1))?;
            if res.success {
                successes += 1;
                rmse_ok.push(res.rmse);
            }
            runs.push(LvRunReport {
                run: r,
                rmse: res.rmse,
                target_nll: res.target_nll,
                final_loss: res.loss_trace.last().copied().unwrap_or(f64::NAN),
                success: res.success,
                skipped_updates: res.skipped,
                seconds: res.seconds,
                loss_trace: res.loss_trace.clone(),
            });
            if r == 0 {
                first_runs.push((spec.to_string(), res));
            }
        }
        by_resampler.push(LvResamplerReport {
            resampler: spec.to_string(),
            runs,
            summary: LvSummary {
                rmse_successful: summary(&rmse_ok),
                successes,
                runs: s.runs,
            },
        });
    }
    let single = (specs.len() == 1).then(|| by_resampler[0].clone());
    let report = LvReport {
        experiment: "lotka-volterra",
        iterations: s.iterations,
        particles: s.particles,
        optimizer: s.optim.kind.name(),
        lr: s.optim.lr,
        grad_mode: s.grad.name(),
        seed: s.seed,
        predictions: PREDICTIONS,
        by_resampler,
        truth_run0: first_runs.first().map(|(_, r)| r.truth.clone()),
        mean_prediction_run0: first_runs
            .iter()
            .map(|(n, r)| MeanPrediction {
                resampler: n.clone(),
                path: r.mean_prediction.clone(),
            })
            .collect(),
        resampler: single.as_ref().map(|b| b.resampler.clone()),
        runs: single.as_ref().map(|b| b.runs.clone()),
        summary: single.map(|b| b.summary),
    };
    Ok((report, first_runs))
}

/// One run in the JSON report of the Lotka–Volterra experiment.
#[derive(Debug, Clone, Serialize)]
pub struct LvRunReport {
    /// Run index.
    pub run: usize,
    /// Mean over predictions of the RMSE against the true trajectory.
    pub rmse: f64,
    /// The particle-filter NLL of the known dynamics on the same data.
    pub target_nll: f64,
    /// The last loss of the trace.
    pub final_loss: f64,
    /// Loss and RMSE finite and RMSE ≤ 50.
    pub success: bool,
    /// Skipped non-finite updates.
    pub skipped_updates: usize,
    /// Seconds spent training.
    pub seconds: f64,
    /// Loss per observed iterate.
    pub loss_trace: Vec<f64>,
}

/// Summary over the runs of one resampler.
#[derive(Debug, Clone, Serialize)]
pub struct LvSummary {
    /// RMSE over the successful runs.
    pub rmse_successful: Summary,
    /// Successful runs.
    pub successes: usize,
    /// All runs.
    pub runs: usize,
}

/// The runs of one resampler.
#[derive(Debug, Clone, Serialize)]
pub struct LvResamplerReport {
    /// The resampler spec.
    pub resampler: String,
    /// Per-run results.
    pub runs: Vec<LvRunReport>,
    /// Summary over the runs.
    pub summary: LvSummary,
}

/// The mean predicted trajectory of run 0 under one resampler.
#[derive(Debug, Clone, Serialize)]
pub struct MeanPrediction {
    /// The resampler spec.
    pub resampler: String,
    /// Mean (prey, predator) per time point.
    pub path: Vec<[f64; 2]>,
}

/// The JSON report of `diffsmc experiment lotka-volterra`. With a single `--resampler`, its
/// `resampler`, `runs` and `summary` are repeated at the top level.
#[derive(Debug, Clone, Serialize)]
pub struct LvReport {
    /// `"lotka-volterra"`.
    pub experiment: &'static str,
    /// Training iterations.
    pub iterations: usize,
    /// Particles.
    pub particles: usize,
    /// The optimiser.
    pub optimizer: &'static str,
    /// Learning rate.
    pub lr: f64,
    /// Gradient mode.
    pub grad_mode: &'static str,
    /// Seed.
    pub seed: u64,
    /// Predicted trajectories per run.
    pub predictions: usize,
    /// Per resampler.
    pub by_resampler: Vec<LvResamplerReport>,
    /// The true trajectory of run 0.
    pub truth_run0: Option<Vec<[f64; 2]>>,
    /// The mean predicted trajectories of run 0.
    pub mean_prediction_run0: Vec<MeanPrediction>,
    /// The single resampler's spec.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resampler: Option<String>,
    /// The single resampler's runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<Vec<LvRunReport>>,
    /// The single resampler's summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<LvSummary>,
}

/// The flags of `diffsmc experiment lotka-volterra` (see its `--help`).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Independent runs (each new data and a new network initialisation).
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Training iterations.
    #[arg(long, default_value_t = 1000)]
    pub iterations: usize,
    /// Particles.
    #[arg(long, default_value_t = 64)]
    pub particles: usize,
    /// Resampler spec; repeat the flag to compare several in one run.
    #[arg(long = "resampler", default_value = "multinomial")]
    pub resamplers: Vec<ResamplerSpec>,
    /// Optimiser.
    #[arg(long, value_enum, default_value = "lion")]
    pub optimizer: optimise::OptimizerKind,
    /// Learning rate.
    #[arg(long, default_value_t = 0.005)]
    pub lr: f64,
    /// Global-norm gradient clipping.
    #[arg(long)]
    pub clip: Option<f64>,
    /// Use the same filter seed at every iteration (default: a fresh seed per iteration).
    #[arg(long)]
    pub common_random_numbers: bool,
    /// Gradient mode: `forward` (dual numbers), `reverse` (checkpointed tape) or `auto`
    /// (reverse for the network's 226 parameters).
    #[arg(long, default_value = "auto")]
    pub grad: GradMode,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write per-run results (with loss traces) and summaries as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw the median loss trace per resampler as SVG; the mean predicted trajectories of
    /// run 0 against the truth go to the same name with `-predictions` added.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// Runs `diffsmc experiment lotka-volterra`.
pub fn execute(args: &Args, force: bool, quiet: bool) -> Result<(), CliError> {
    let Args {
        runs,
        iterations,
        particles,
        resamplers,
        optimizer,
        lr,
        clip,
        common_random_numbers,
        grad,
        seed,
        json,
        plot,
    } = args.clone();
    let pred_plot = plot.as_ref().map(|p| {
        let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("traces");
        p.with_file_name(format!("{stem}-predictions.svg"))
    });
    for p in [&json, &plot, &pred_plot].into_iter().flatten() {
        output::check_writable(p, force)?;
    }
    let settings = LvSettings {
        runs,
        iterations,
        particles,
        optim: optimise::OptimSettings {
            kind: optimizer,
            lr,
            iterations,
            clip,
        },
        common_random_numbers,
        grad,
        seed,
    };
    let pb = progress::bar(
        (runs * iterations * resamplers.len()) as u64,
        "lotka-volterra training",
        quiet,
    );
    let (v, first) = run(&settings, &resamplers, &pb)?;
    pb.finish_and_clear();
    println!(
        "lotka-volterra  N={particles}  iterations={iterations}  optimiser {}  lr {lr}  runs={runs}",
        optimizer.name()
    );
    for b in &v.by_resampler {
        let sm = &b.summary;
        println!(
            "  {:<40} RMSE {:.3} ± {:.3}  ({} of {} runs succeeded)",
            b.resampler, sm.rmse_successful.mean, sm.rmse_successful.std, sm.successes, runs
        );
    }
    if let Some(p) = &json {
        output::write_json(p, &v, force)?;
    }
    if let Some(p) = &plot {
        let series = v
            .by_resampler
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let traces: Vec<Vec<f64>> = b.runs.iter().map(|r| r.loss_trace.clone()).collect();
                plot::Series {
                    name: format!("{} (median loss)", b.resampler),
                    points: plot_cmd::median_trace(&traces)
                        .into_iter()
                        .enumerate()
                        .map(|(k, y)| (k as f64, y))
                        .collect(),
                    style: plot::Style::Line,
                    color: i,
                }
            })
            .collect();
        plot::Chart {
            title: "Lotka–Volterra: training loss".into(),
            x_label: "iteration".into(),
            y_label: "negative log-likelihood".into(),
            series,
            bands: vec![],
            log_y: false,
        }
        .draw_svg(p)?;
    }
    if let (Some(p), Some((_, r0))) = (&pred_plot, first.first()) {
        let t: Vec<f64> = (0..r0.truth.len())
            .map(|j| j as f64 * diffsmc_lotka_volterra::DT)
            .collect();
        let mut series = vec![
            plot::Series {
                name: "true prey".into(),
                points: t
                    .iter()
                    .copied()
                    .zip(r0.truth.iter().map(|x| x[0]))
                    .collect(),
                style: plot::Style::Line,
                color: 6,
            },
            plot::Series {
                name: "true predator".into(),
                points: t
                    .iter()
                    .copied()
                    .zip(r0.truth.iter().map(|x| x[1]))
                    .collect(),
                style: plot::Style::Line,
                color: 7,
            },
        ];
        for (i, (name, r)) in first.iter().enumerate() {
            for (k, what) in ["prey", "predator"].iter().enumerate() {
                series.push(plot::Series {
                    name: format!("{name}: mean predicted {what}"),
                    points: t
                        .iter()
                        .copied()
                        .zip(r.mean_prediction.iter().map(|x| x[k]))
                        .collect(),
                    style: plot::Style::Points,
                    color: (2 * i + k) % 6,
                });
            }
        }
        plot::Chart {
            title: "Lotka–Volterra run 0: mean of 100 predictions vs truth".into(),
            x_label: "time".into(),
            y_label: "population".into(),
            series,
            bands: vec![],
            log_y: false,
        }
        .draw_svg(p)?;
    }
    Ok(())
}
