//! `diffsmc`: differentiable sequential Monte Carlo from the command line.

mod args;
mod bench;
mod data;
mod demo_cmd;
mod error;
mod experiment_gm;
mod experiment_inverse_gm;
mod experiment_lgssm;
mod experiment_lv;
mod fit;
mod lgssm_cmd;
mod optimise;
mod output;
mod plot;
mod plot_cmd;
mod posterior_cmd;
mod progress;
mod sample_cmd;
mod sde_cmd;
mod smc2_cmd;
mod smooth_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use diffsmc::ResamplerSpec;
use diffsmc::grad::GradMode;

use crate::error::CliError;

/// Differentiable sequential Monte Carlo: particle filters whose log-likelihood is
/// differentiable in the model parameters, through the resampling step too.
#[derive(Debug, Parser)]
#[command(name = "diffsmc", version, about, long_about = None)]
struct Cli {
    /// No progress bars.
    #[arg(long, global = true)]
    quiet: bool,
    /// Overwrite existing output files.
    #[arg(long, global = true)]
    force: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate the paper's linear Gaussian model, compare the particle filter with the Kalman
    /// filter, fit θ by L-BFGS through diffusion resampling against the exact MLE, and write
    /// demo.svg and demo-landscape.svg.
    Demo(demo_cmd::DemoArgs),
    /// Run a particle filter on observations from a CSV file.
    Filter(lgssm_cmd::FilterArgs),
    /// Estimate parameters by maximising the particle-filter likelihood.
    Fit(fit::FitArgs),
    /// Draw what experiment or fit JSON files hold (landscapes, traces, metric scatter).
    Plot(plot_cmd::PlotArgs),
    /// Time the engine's hot paths.
    #[command(
        subcommand,
        after_help = "Examples:\n  diffsmc bench filter --particles 16384 --resampler systematic\n  diffsmc bench grad --particles 32 --resampler diffusion:T=2,K=8\n  diffsmc bench resample --resampler diffusion:K=4 --particles 8192 --dim 8"
    )]
    Bench(BenchCommand),
    /// Reproduce the paper's experiments.
    #[command(
        subcommand,
        after_help = "Examples:\n  diffsmc experiment lgssm --runs 100 --particles 32 --resampler diffusion:T=2,K=8 --grid 32 --json lgssm.json\n  diffsmc experiment gm --runs 20 --particles 10000 --resampler diffusion:T=3,K=32,sde --json gm.json\n  diffsmc experiment lotka-volterra --runs 20 --resampler diffusion:T=1,K=4,sde --json lv.json\n  diffsmc experiment inverse-gm --runs 10 --particles 4000 --resampler systematic --trigger ess:0.5 --json inverse.json\n\nEach subcommand's --help has its flags and an example."
    )]
    Experiment(ExperimentCommand),
    /// Smooth a linear Gaussian model with a particle smoother (FFBS, backward simulation,
    /// fixed-lag, PaRIS with the Fisher-identity score), against RTS and Kalman.
    Smooth(smooth_cmd::Args),
    /// Sample a static Bayesian target by adaptive tempered SMC (evidence, posterior moments).
    Sample(sample_cmd::SampleArgs),
    /// Bayesian parameter inference: PMMH, particle Gibbs, PMALA or PHMC chains with
    /// convergence diagnostics.
    Posterior(posterior_cmd::Args),
}

#[derive(Debug, Subcommand)]
enum ExperimentCommand {
    /// Prey–predator (Lotka–Volterra) dynamics learnt end to end by a neural transition
    /// (MLP 4→32→2) through the particle filter; RMSE of 100 predictions against the truth.
    ///
    /// Example: diffsmc experiment lotka-volterra --runs 20 --iterations 1000 --particles 64 --resampler diffusion:T=1,K=4,sde --resampler multinomial --optimizer lion --lr 0.005 --json lv.json --plot traces.svg
    #[command(name = "lotka-volterra", alias = "lv")]
    LotkaVolterra {
        /// Independent runs (each new data and a new network initialisation).
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Training iterations.
        #[arg(long, default_value_t = 1000)]
        iterations: usize,
        /// Particles.
        #[arg(long, default_value_t = 64)]
        particles: usize,
        /// Resampler spec; repeat the flag to compare several in one run.
        #[arg(long = "resampler", default_value = "multinomial")]
        resamplers: Vec<ResamplerSpec>,
        /// Optimiser.
        #[arg(long, value_enum, default_value = "lion")]
        optimizer: optimise::OptimizerKind,
        /// Learning rate.
        #[arg(long, default_value_t = 0.005)]
        lr: f64,
        /// Global-norm gradient clipping.
        #[arg(long)]
        clip: Option<f64>,
        /// Use the same filter seed at every iteration (default: a fresh seed per iteration).
        #[arg(long)]
        common_random_numbers: bool,
        /// Gradient mode: `forward` (dual numbers), `reverse` (checkpointed tape) or `auto`
        /// (reverse for the network's 226 parameters).
        #[arg(long, default_value = "auto")]
        grad: GradMode,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write per-run results (with loss traces) and summaries as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Draw the median loss trace per resampler as SVG; the mean predicted trajectories of
        /// run 0 against the truth go to the same name with `-predictions` added.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// Linear Gaussian SSM: loss-landscape error against Kalman, filtering KL, and L-BFGS
    /// parameter estimation from θ + 1.
    ///
    /// Example: diffsmc experiment lgssm --runs 100 --particles 32 --resampler diffusion:T=2,K=8,integrator=jentzen-kloeden,sde --grid 32 --json lgssm.json --plot landscape.svg
    Lgssm {
        /// Independent runs (each with new data).
        #[arg(long, default_value_t = 100)]
        runs: usize,
        /// Particles.
        #[arg(long, default_value_t = 32)]
        particles: usize,
        /// Resampler spec.
        #[arg(long, default_value = "multinomial")]
        resampler: ResamplerSpec,
        /// Grid points per axis of the loss landscape on [θ1 ± 0.1] × [θ2 ± 0.1] (0 skips it).
        #[arg(long, default_value_t = 128)]
        grid: usize,
        /// State dimension.
        #[arg(long, default_value_t = 1)]
        dim: usize,
        /// L-BFGS iteration cap.
        #[arg(long, default_value_t = 100)]
        iterations: usize,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write per-run results and the summary as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Draw the Kalman and PF NLL surfaces of run 0 as SVG.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// Gaussian-mixture importance resampling: sliced Wasserstein distance and squared error
    /// of the mean against the exact posterior.
    ///
    /// Example: diffsmc experiment gm --runs 20 --particles 10000 --resampler diffusion:T=3,K=32,sde --json gm.json
    Gm {
        /// Independent runs (each a new random problem).
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Particles.
        #[arg(long, default_value_t = 10_000)]
        particles: usize,
        /// Resampler spec.
        #[arg(long, default_value = "multinomial")]
        resampler: ResamplerSpec,
        /// State dimension.
        #[arg(long, default_value_t = 8)]
        dim: usize,
        /// Mixture components.
        #[arg(long, default_value_t = 5)]
        components: usize,
        /// Random directions of the sliced Wasserstein distance.
        #[arg(long, default_value_t = 1000)]
        directions: usize,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write per-run results and the summary as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// SMC posterior sampling with a diffusion prior (Gaussian-mixture prior, exact score) for
    /// y = H x + N(0, R): sliced Wasserstein distance and squared error of the mean against the
    /// exact posterior, beside importance sampling from the prior and unweighted guidance.
    ///
    /// Example: diffsmc experiment inverse-gm --runs 10 --particles 4000 --resampler systematic --trigger ess:0.5 --steps 100 --json inverse.json
    #[command(name = "inverse-gm")]
    InverseGm {
        /// Independent runs (each a new random prior and observation).
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Particles (also the size of the importance and exact posterior samples).
        #[arg(long, default_value_t = 1000)]
        particles: usize,
        /// Resampler spec.
        #[arg(long, default_value = "systematic")]
        resampler: ResamplerSpec,
        /// Resampling trigger: `always`, `never` or `ess:FRAC`.
        #[arg(long, default_value = "ess:0.5")]
        trigger: diffsmc::Trigger,
        /// State dimension.
        #[arg(long, default_value_t = 8)]
        dim: usize,
        /// Mixture components.
        #[arg(long, default_value_t = 5)]
        components: usize,
        /// Observation dimension (rows of the all-ones H; R = I).
        #[arg(long, default_value_t = 1)]
        obs_dim: usize,
        /// Offset added to y = H E[x] (large values make the observation atypical).
        #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
        y_offset: f64,
        /// Diffusion-time steps M (uniform grid on the VP SDE's [0, 1]).
        #[arg(long, default_value_t = 100)]
        steps: usize,
        /// Prior kernel: `tweedie` or `em` (Euler–Maruyama).
        #[arg(long, default_value = "tweedie")]
        kernel: diffsmc_diffusion_prior::Kernel,
        /// Intermediate targets: `exact` (noised marginals) or `discretised` (score only).
        #[arg(long, default_value = "exact")]
        targets: diffsmc_diffusion_prior::Targets,
        /// Guidance scale λ ≥ 0 of the proposal.
        #[arg(long, default_value_t = 1.0)]
        guidance: f64,
        /// ρ² of the twisting functions (default: the prior's mean per-coordinate variance).
        #[arg(long)]
        prior_scale: Option<f64>,
        /// Random directions of the sliced Wasserstein distance.
        #[arg(long, default_value_t = 1000)]
        directions: usize,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write per-run results and the summary as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Median time of one negative log-likelihood value-and-gradient on the paper LGSSM (129
    /// steps, 2 parameters) or the neural Lotka–Volterra model (256 steps, 226 parameters), and
    /// of the value alone.
    ///
    /// Example: diffsmc bench grad --model lotka-volterra --particles 64 --resampler diffusion:T=1,K=4,sde --grad reverse --json grad.json
    Grad {
        /// Model: `lgssm` or `lotka-volterra`.
        #[arg(long, default_value = "lgssm")]
        model: String,
        /// Resampler spec.
        #[arg(long, default_value = "systematic")]
        resampler: ResamplerSpec,
        /// Number of particles.
        #[arg(long, default_value_t = 32)]
        particles: usize,
        /// Gradient mode: `forward`, `reverse` or `auto`.
        #[arg(long, default_value = "auto")]
        grad: GradMode,
        /// Minimum number of timed repetitions (after one warm-up), e.g. 1 for long runs.
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Minimum total measuring time in seconds.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Write the result as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Median time of one bootstrap particle filter run on the paper LGSSM (d = 1, 129 steps).
    ///
    /// Example: diffsmc bench filter --particles 16384 --resampler systematic
    Filter {
        /// Resampler spec.
        #[arg(long, default_value = "systematic")]
        resampler: ResamplerSpec,
        /// Number of particles.
        #[arg(long, default_value_t = 1024)]
        particles: usize,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Minimum total measuring time in seconds.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Write the result as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Median time of one resampling.
    ///
    /// Example: diffsmc bench resample --resampler diffusion:K=4 --particles 8192 --dim 8
    Resample {
        /// Resampler spec, e.g. `systematic`, `diffusion:T=2,K=8,sde`, `ot:eps=0.4`.
        #[arg(long, default_value = "systematic")]
        resampler: ResamplerSpec,
        /// Number of particles.
        #[arg(long, default_value_t = 1024)]
        particles: usize,
        /// State dimension.
        #[arg(long, default_value_t = 8)]
        dim: usize,
        /// Scalar type.
        #[arg(long, value_enum, default_value = "f64")]
        scalar: bench::BenchScalar,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Minimum total measuring time in seconds.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Write the result as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Demo(a) => demo_cmd::demo(&a, cli.force),
        Command::Filter(a) => lgssm_cmd::filter(&a, cli.force, cli.quiet),
        Command::Fit(a) => fit::fit(&a, cli.quiet, cli.force),
        Command::Plot(a) => plot_cmd::plot(&a, cli.force),
        Command::Smooth(a) => smooth_cmd::run(&a, cli.force, cli.quiet),
        Command::Sample(a) => sample_cmd::run(&a, cli.force, cli.quiet),
        Command::Posterior(a) => posterior_cmd::run(&a, cli.force, cli.quiet),
        Command::Experiment(ExperimentCommand::Lgssm {
            runs,
            particles,
            resampler,
            grid,
            dim,
            iterations,
            seed,
            json,
            plot,
        }) => {
            for p in [&json, &plot].into_iter().flatten() {
                output::check_writable(p, cli.force)?;
            }
            if plot.is_some() && grid == 0 {
                return Err(CliError::flag(
                    "plot",
                    "needs a landscape: pass --grid N with N > 0",
                ));
            }
            let settings = experiment_lgssm::LgssmSettings {
                runs,
                particles,
                resampler,
                grid,
                dim,
                iterations,
                seed,
            };
            let pb = progress::bar(runs as u64, "lgssm runs", cli.quiet);
            let (v, landscape) = experiment_lgssm::run(&settings, &pb)?;
            pb.finish_and_clear();
            let sm = &v["summary"];
            let f = |k: &str, q: &str| sm[k][q].as_f64().unwrap_or(f64::NAN);
            println!(
                "lgssm  resampler {}  N={}  runs={}  grid={}",
                settings.resampler, particles, runs, grid
            );
            println!(
                "  loss_error     {:.4} ± {:.4}",
                f("loss_error", "mean"),
                f("loss_error", "std")
            );
            println!(
                "  filtering_kl   {:.5} ± {:.5}  (2·KL {:.5})",
                f("filtering_kl", "mean"),
                f("filtering_kl", "std"),
                f("filtering_kl2", "mean")
            );
            println!(
                "  param_error    {:.4} ± {:.4} over {} successful runs of {}",
                f("param_error_successful", "mean"),
                f("param_error_successful", "std"),
                sm["successes"],
                runs
            );
            if v["resampler_non_converged_steps"].as_u64().unwrap_or(0) > 0 {
                eprintln!(
                    "warning: the resampler did not converge at {} steps",
                    v["resampler_non_converged_steps"]
                );
            }
            if let Some(p) = &json {
                output::write_json(p, &v, cli.force)?;
            }
            if let (Some(p), Some((kf, pf))) = (&plot, landscape) {
                let a1 = experiment_lgssm::axis(experiment_lgssm::THETA[0], grid);
                let a2 = experiment_lgssm::axis(experiment_lgssm::THETA[1], grid);
                let panels = plot::landscape_panels(
                    &a1,
                    &a2,
                    experiment_lgssm::THETA,
                    [
                        ("Kalman NLL (run 0)".into(), kf),
                        (format!("PF NLL, {} (run 0)", settings.resampler), pf),
                    ],
                );
                plot::draw_heatmaps(p, &panels)?;
            }
            Ok(())
        }
        Command::Experiment(ExperimentCommand::LotkaVolterra {
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
        }) => {
            let pred_plot = plot.as_ref().map(|p| {
                let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("traces");
                p.with_file_name(format!("{stem}-predictions.svg"))
            });
            for p in [&json, &plot, &pred_plot].into_iter().flatten() {
                output::check_writable(p, cli.force)?;
            }
            let settings = experiment_lv::LvSettings {
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
                cli.quiet,
            );
            let (v, first) = experiment_lv::run(&settings, &resamplers, &pb)?;
            pb.finish_and_clear();
            println!(
                "lotka-volterra  N={particles}  iterations={iterations}  optimiser {}  lr {lr}  runs={runs}",
                optimizer.name()
            );
            for b in v["by_resampler"].as_array().into_iter().flatten() {
                let sm = &b["summary"];
                println!(
                    "  {:<40} RMSE {:.3} ± {:.3}  ({} of {} runs succeeded)",
                    b["resampler"].as_str().unwrap_or(""),
                    sm["rmse_successful"]["mean"].as_f64().unwrap_or(f64::NAN),
                    sm["rmse_successful"]["std"].as_f64().unwrap_or(f64::NAN),
                    sm["successes"],
                    runs
                );
            }
            if let Some(p) = &json {
                output::write_json(p, &v, cli.force)?;
            }
            if let Some(p) = &plot {
                let series = v["by_resampler"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                    .map(|(i, b)| {
                        let traces: Vec<Vec<f64>> = b["runs"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|r| {
                                r["loss_trace"]
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .map(|x| x.as_f64().unwrap_or(f64::NAN))
                                    .collect()
                            })
                            .collect();
                        plot::Series {
                            name: format!(
                                "{} (median loss)",
                                b["resampler"].as_str().unwrap_or("")
                            ),
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
        Command::Experiment(ExperimentCommand::Gm {
            runs,
            particles,
            resampler,
            dim,
            components,
            directions,
            seed,
            json,
        }) => {
            if let Some(p) = &json {
                output::check_writable(p, cli.force)?;
            }
            let settings = experiment_gm::GmSettings {
                runs,
                particles,
                resampler,
                dim,
                components,
                directions,
                seed,
            };
            let pb = progress::bar(runs as u64, "gm runs", cli.quiet);
            let v = experiment_gm::run(&settings, &pb)?;
            pb.finish_and_clear();
            let sm = &v["summary"];
            println!(
                "gm  resampler {}  N={}  runs={}\n  swd           {:.5} ± {:.5}\n  mean_sq_error {:.5} ± {:.5}",
                settings.resampler,
                particles,
                runs,
                sm["swd"]["mean"].as_f64().unwrap_or(f64::NAN),
                sm["swd"]["std"].as_f64().unwrap_or(f64::NAN),
                sm["mean_sq_error"]["mean"].as_f64().unwrap_or(f64::NAN),
                sm["mean_sq_error"]["std"].as_f64().unwrap_or(f64::NAN),
            );
            if v["non_converged_runs"].as_u64().unwrap_or(0) > 0 {
                eprintln!(
                    "warning: the resampler did not converge in {} runs",
                    v["non_converged_runs"]
                );
            }
            if let Some(p) = &json {
                output::write_json(p, &v, cli.force)?;
            }
            Ok(())
        }
        Command::Experiment(ExperimentCommand::InverseGm {
            runs,
            particles,
            resampler,
            trigger,
            dim,
            components,
            obs_dim,
            y_offset,
            steps,
            kernel,
            targets,
            guidance,
            prior_scale,
            directions,
            seed,
            json,
        }) => {
            let settings = experiment_inverse_gm::InverseGmSettings {
                runs,
                particles,
                resampler,
                trigger,
                dim,
                components,
                obs_dim,
                y_offset,
                steps,
                kernel,
                targets,
                guidance,
                prior_scale,
                directions,
                seed,
            };
            experiment_inverse_gm::command(&settings, json.as_ref(), cli.quiet, cli.force)
        }
        Command::Bench(BenchCommand::Grad {
            model,
            resampler,
            particles,
            grad,
            reps,
            seed,
            seconds,
            json,
        }) => {
            if reps == 0 {
                return Err(CliError::flag("reps", "must be at least 1"));
            }
            let model: bench::BenchModel = model.parse()?;
            if let Some(p) = &json {
                output::check_writable(p, cli.force)?;
            }
            let pb = progress::spinner("bench grad", cli.quiet);
            let v = bench::grad(
                model,
                &resampler,
                particles,
                seed,
                seconds,
                Some(grad),
                reps,
                &pb,
            )?;
            pb.finish_and_clear();
            println!(
                "grad {} {} N={} ({} mode): value+gradient median {:.6} s, value alone {:.6} s",
                v["model"].as_str().unwrap_or(""),
                resampler,
                particles,
                v["grad_mode"].as_str().unwrap_or(""),
                v["median_seconds"].as_f64().unwrap_or(f64::NAN),
                v["value_median_seconds"].as_f64().unwrap_or(f64::NAN)
            );
            if let Some(p) = &json {
                output::write_json(p, &v, cli.force)?;
            }
            Ok(())
        }
        Command::Bench(BenchCommand::Filter {
            resampler,
            particles,
            seed,
            seconds,
            json,
        }) => {
            if let Some(p) = &json {
                output::check_writable(p, cli.force)?;
            }
            let pb = progress::spinner("bench filter", cli.quiet);
            let v = bench::grad(
                bench::BenchModel::Lgssm,
                &resampler,
                particles,
                seed,
                seconds,
                None,
                3,
                &pb,
            )?;
            pb.finish_and_clear();
            println!(
                "filter lgssm {} N={}: median {:.6} s over {} runs",
                resampler,
                particles,
                v["median_seconds"].as_f64().unwrap_or(f64::NAN),
                v["repetitions"]
            );
            if let Some(p) = &json {
                output::write_json(p, &v, cli.force)?;
            }
            Ok(())
        }
        Command::Bench(BenchCommand::Resample {
            resampler,
            particles,
            dim,
            scalar,
            seed,
            seconds,
            json,
        }) => {
            if let Some(p) = &json {
                output::check_writable(p, cli.force)?;
            }
            let pb = progress::spinner("bench resample", cli.quiet);
            let v = bench::resample(&resampler, particles, dim, scalar, seed, seconds, &pb)?;
            pb.finish_and_clear();
            println!(
                "resample {} N={} d={} {}: median {:.6} s over {} runs",
                resampler,
                particles,
                dim,
                v["scalar"].as_str().unwrap_or(""),
                v["median_seconds"].as_f64().unwrap_or(f64::NAN),
                v["repetitions"]
            );
            if v["all_converged"] == serde_json::Value::Bool(false) {
                eprintln!("warning: the resampler reported non-convergence in some runs");
            }
            if let Some(p) = &json {
                output::write_json(p, &v, cli.force)?;
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `diffsmc …` command shown in a ```sh block of README.md and docs/*.md parses with
    /// the current CLI (flags, values and resampler specs), so the docs cannot drift from it.
    #[test]
    fn documented_commands_parse() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = vec![root.join("README.md")];
        for e in std::fs::read_dir(root.join("docs")).expect("docs/ exists") {
            let p = e.expect("readable docs entry").path();
            if p.extension().is_some_and(|x| x == "md") {
                files.push(p);
            }
        }
        let mut checked = 0;
        for f in &files {
            let text = std::fs::read_to_string(f).expect("readable doc");
            let mut in_sh = false;
            let mut pending = String::new();
            for (lineno, line) in text.lines().enumerate() {
                // Shell line continuations: join `…\` with the next line.
                if in_sh && line.trim_end().ends_with('\\') {
                    pending.push_str(line.trim_end().trim_end_matches('\\'));
                    pending.push(' ');
                    continue;
                }
                let joined = std::mem::take(&mut pending) + line;
                let t = joined.trim();
                if t.starts_with("```") {
                    in_sh = t == "```sh" || t == "```bash";
                    continue;
                }
                if !in_sh {
                    continue;
                }
                let cmd = t.split('#').next().unwrap_or("").trim();
                let args: Option<Vec<&str>> =
                    if let Some(rest) = cmd.strip_prefix("cargo run --release -p diffsmc-cli --") {
                        Some(
                            std::iter::once("diffsmc")
                                .chain(rest.split_whitespace())
                                .collect(),
                        )
                    } else if cmd.starts_with("diffsmc ") {
                        Some(cmd.split_whitespace().collect())
                    } else {
                        None
                    };
                if let Some(args) = args {
                    if let Err(e) = Cli::try_parse_from(&args) {
                        panic!(
                            "{}:{}: `{cmd}` does not parse:\n{e}",
                            f.display(),
                            lineno + 1
                        );
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked >= 10, "found only {checked} documented commands");
    }
}
