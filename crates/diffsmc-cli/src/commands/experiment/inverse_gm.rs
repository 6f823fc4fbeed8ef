//! `diffsmc experiment inverse-gm`: SMC posterior sampling with a diffusion prior on the
//! Gaussian-mixture inverse problem, against importance sampling from the prior and the
//! guided sampler without reweighting.

use std::path::PathBuf;
use std::time::Instant;

use diffsmc::resample::Multinomial;
use diffsmc::rng::{Purpose, StreamKey, derive_seed};
use diffsmc::{ResamplerSpec, Smc, SmcConfig, SmcOutput, Trigger};
use diffsmc_diffusion_prior::{
    DiffusionPosterior, GaussianMixturePrior, Kernel, LinearObservation, PosteriorConfig, Targets,
    TimeGrid, Unweighted, VpSde,
};
use diffsmc_gaussian_mixture::{PaperConfig, SlicedWasserstein, mean_sq_error, weights_from_log};
use serde::Serialize;

use crate::support::error::CliError;
use crate::support::output::{self, Summary, summary};
use crate::support::progress;

/// Settings of the inverse-problem experiment.
#[derive(Debug, Clone)]
pub struct InverseGmSettings {
    /// Independent runs (each a new random prior and observation).
    pub runs: usize,
    /// Particles (also the size of the exact posterior sample and of the importance sample).
    pub particles: usize,
    /// Resampler of the SMC sampler.
    pub resampler: ResamplerSpec,
    /// Resampling trigger.
    pub trigger: Trigger,
    /// State dimension.
    pub dim: usize,
    /// Mixture components.
    pub components: usize,
    /// Observation dimension (rows of the all-ones H).
    pub obs_dim: usize,
    /// Offset added to y = H E[x].
    pub y_offset: f64,
    /// Diffusion-time steps M.
    pub steps: usize,
    /// Prior kernel.
    pub kernel: Kernel,
    /// Intermediate targets.
    pub targets: Targets,
    /// Guidance scale λ.
    pub guidance: f64,
    /// ρ² of the twisting functions (`None`: the prior's mean per-coordinate variance).
    pub prior_scale: Option<f64>,
    /// Slicing directions.
    pub directions: usize,
    /// Seed.
    pub seed: u64,
}

/// The metrics of one run.
#[derive(Debug, Clone)]
struct RunResult {
    swd: f64,
    swd_importance: f64,
    swd_guided: f64,
    swd_floor: f64,
    mse: f64,
    mse_importance: f64,
    mse_guided: f64,
    log_evidence: f64,
    log_evidence_estimate: f64,
    final_ess: f64,
    importance_ess: f64,
    resampled: usize,
    non_converged: usize,
    prior_scale: f64,
    seconds: f64,
}

fn one_run(s: &InverseGmSettings, run: usize) -> Result<RunResult, CliError> {
    let seed = derive_seed(s.seed, run as u64);
    let (n, d) = (s.particles, s.dim);
    let problem = PaperConfig::new(d, s.components)?
        .with_obs_dim(s.obs_dim)?
        .with_y_offset(s.y_offset)?
        .build(seed)?;
    let prior_scale = match s.prior_scale {
        Some(r) => r,
        None => {
            let cov = problem.prior().covariance();
            (0..d).map(|i| cov[(i, i)]).sum::<f64>() / d as f64
        }
    };
    let sde = VpSde::default();
    let prior = GaussianMixturePrior::new(problem.prior(), sde)?;
    let config = PosteriorConfig::default()
        .with_kernel(s.kernel)
        .with_targets(s.targets)
        .with_guidance(s.guidance)?
        .with_prior_scale(prior_scale)?;
    let model = DiffusionPosterior::new(
        &prior,
        LinearObservation::from_problem(&problem)?,
        TimeGrid::uniform(sde.t_max(), s.steps)?,
        config,
    )?;
    let smc_seed = derive_seed(seed, 1);
    let resampler = s.resampler.build::<f64>()?;
    let start = Instant::now();
    let smc = Smc::new(SmcConfig::new(n)?.with_trigger(s.trigger)?);
    let out: SmcOutput<f64> = smc.run(&model, &*resampler, smc_seed)?;
    let seconds = start.elapsed().as_secs_f64();
    // The same proposal, weights ignored (no resampling: every particle keeps weight 1/N).
    let never = Smc::new(SmcConfig::new(n)?.with_trigger(Trigger::Never)?);
    let guided: SmcOutput<f64> = never.run(&Unweighted(&model), &Multinomial, smc_seed)?;
    let is = problem.importance_sample(n, StreamKey::new(seed, 0, Purpose::Move))?;

    let exact = problem.posterior_draws(n, StreamKey::new(seed, 2, Purpose::Simulate));
    let exact2 = problem.posterior_draws(n, StreamKey::new(seed, 4, Purpose::Simulate));
    let mut sw =
        SlicedWasserstein::new(d, s.directions, StreamKey::new(seed, 3, Purpose::Other(0)))?;
    let truth = problem.posterior_mean();
    let w = weights_from_log(&out.log_weights)?;
    let w_is = is.weights();
    Ok(RunResult {
        swd: sw.distance(out.particles.as_slice(), Some(&w), &exact, None)?,
        swd_importance: sw.distance(&is.particles, Some(&w_is), &exact, None)?,
        swd_guided: sw.distance(guided.particles.as_slice(), None, &exact, None)?,
        swd_floor: sw.distance(&exact2, None, &exact, None)?,
        mse: mean_sq_error(out.particles.as_slice(), Some(&w), d, truth.as_slice())?,
        mse_importance: mean_sq_error(&is.particles, Some(&w_is), d, truth.as_slice())?,
        mse_guided: mean_sq_error(guided.particles.as_slice(), None, d, truth.as_slice())?,
        log_evidence: problem.log_evidence(),
        log_evidence_estimate: out.log_likelihood,
        final_ess: out.ess.last().copied().unwrap_or(f64::NAN),
        importance_ess: is.ess(),
        resampled: out.n_resampled(),
        non_converged: out.resampler_converged.iter().filter(|c| !**c).count(),
        prior_scale,
        seconds,
    })
}

/// `always`, `never` or `ess:FRAC` (the syntax `--trigger` parses).
pub fn trigger_name(t: Trigger) -> String {
    match t {
        Trigger::Always => "always".into(),
        Trigger::Never => "never".into(),
        Trigger::EssBelow(f) => format!("ess:{f}"),
    }
}

/// Runs the experiment (runs in parallel; each run's result depends only on its seed).
pub fn run(
    s: &InverseGmSettings,
    pb: &indicatif::ProgressBar,
) -> Result<InverseGmReport, CliError> {
    if s.runs == 0 {
        return Err(CliError::flag("runs", "must be at least 1"));
    }
    if s.particles == 0 {
        return Err(CliError::flag("particles", "must be at least 1"));
    }
    if s.steps == 0 {
        return Err(CliError::flag("steps", "must be at least 1"));
    }
    let results: Vec<Result<RunResult, CliError>> =
        diffsmc::par::map_chunks::<f64, _>(s.runs, |k| {
            let r = one_run(s, k);
            pb.inc(1);
            r
        });
    let results = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    let col = |f: fn(&RunResult) -> f64| results.iter().map(f).collect::<Vec<f64>>();
    let runs = results
        .iter()
        .enumerate()
        .map(|(k, r)| RunRecord {
            run: k,
            swd: r.swd,
            swd_importance: r.swd_importance,
            swd_guided_unweighted: r.swd_guided,
            swd_exact_floor: r.swd_floor,
            mean_sq_error: r.mse,
            mean_sq_error_importance: r.mse_importance,
            mean_sq_error_guided_unweighted: r.mse_guided,
            log_evidence: r.log_evidence,
            log_evidence_estimate: r.log_evidence_estimate,
            final_ess: r.final_ess,
            importance_ess: r.importance_ess,
            resampling_steps: r.resampled,
            resampler_non_converged_steps: r.non_converged,
            prior_scale: r.prior_scale,
            smc_seconds: r.seconds,
        })
        .collect();
    let sde = VpSde::default();
    Ok(InverseGmReport {
        experiment: "inverse-gm",
        resampler: s.resampler.to_string(),
        trigger: trigger_name(s.trigger),
        particles: s.particles,
        dim: s.dim,
        components: s.components,
        obs_dim: s.obs_dim,
        y_offset: s.y_offset,
        steps: s.steps,
        sde: SdeInfo {
            kind: "vp",
            beta_min: sde.beta_min(),
            beta_max: sde.beta_max(),
            t_max: sde.t_max(),
        },
        kernel: s.kernel.to_string(),
        targets: s.targets.to_string(),
        guidance: s.guidance,
        prior_scale: match s.prior_scale {
            Some(r) => PriorScale::Given(r),
            None => PriorScale::Auto("auto"),
        },
        directions: s.directions,
        seed: s.seed,
        runs,
        non_converged_runs: results.iter().filter(|r| r.non_converged > 0).count(),
        summary: InverseGmSummary {
            swd: summary(&col(|r| r.swd)),
            swd_importance: summary(&col(|r| r.swd_importance)),
            swd_guided_unweighted: summary(&col(|r| r.swd_guided)),
            swd_exact_floor: summary(&col(|r| r.swd_floor)),
            mean_sq_error: summary(&col(|r| r.mse)),
            mean_sq_error_importance: summary(&col(|r| r.mse_importance)),
            mean_sq_error_guided_unweighted: summary(&col(|r| r.mse_guided)),
            log_evidence_error: summary(&col(|r| r.log_evidence_estimate - r.log_evidence)),
            final_ess: summary(&col(|r| r.final_ess)),
            importance_ess: summary(&col(|r| r.importance_ess)),
            resampling_steps: summary(&col(|r| r.resampled as f64)),
            smc_seconds: summary(&col(|r| r.seconds)),
        },
    })
}

/// The JSON report of `experiment inverse-gm` (keys documented in docs/cli.md; non-finite
/// numbers are written as `null`).
#[derive(Debug, Clone, Serialize)]
pub struct InverseGmReport {
    /// `"inverse-gm"`.
    pub experiment: &'static str,
    /// The resampler spec, every knob printed.
    pub resampler: String,
    /// The trigger (`always`, `never`, `ess:FRAC`).
    pub trigger: String,
    /// Particles.
    pub particles: usize,
    /// State dimension.
    pub dim: usize,
    /// Mixture components.
    pub components: usize,
    /// Observation dimension.
    pub obs_dim: usize,
    /// Offset added to y.
    pub y_offset: f64,
    /// Diffusion-time steps.
    pub steps: usize,
    /// The forward SDE.
    pub sde: SdeInfo,
    /// Prior kernel.
    pub kernel: String,
    /// Intermediate targets.
    pub targets: String,
    /// Guidance scale λ.
    pub guidance: f64,
    /// ρ² as given, or `"auto"`.
    pub prior_scale: PriorScale,
    /// Slicing directions.
    pub directions: usize,
    /// Seed.
    pub seed: u64,
    /// One record per run.
    pub runs: Vec<RunRecord>,
    /// Runs where the resampler reported non-convergence at some step.
    pub non_converged_runs: usize,
    /// Mean, sd and count of each metric over the runs.
    pub summary: InverseGmSummary,
}

/// The forward SDE of the diffusion prior.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SdeInfo {
    /// `"vp"`.
    pub kind: &'static str,
    /// β at t = 0.
    pub beta_min: f64,
    /// β at t = T.
    pub beta_max: f64,
    /// T.
    pub t_max: f64,
}

/// `--prior-scale` as given, or the string `"auto"`.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(untagged)]
pub enum PriorScale {
    /// Given on the command line.
    Given(f64),
    /// `"auto"`: the prior's mean per-coordinate variance, per run (see the runs).
    Auto(&'static str),
}

/// One run of `experiment inverse-gm`.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// Run index.
    pub run: usize,
    /// Sliced W1 of the SMC sampler to exact posterior draws.
    pub swd: f64,
    /// The same for importance sampling from the prior.
    pub swd_importance: f64,
    /// The same for the guided sampler with weights ignored.
    pub swd_guided_unweighted: f64,
    /// Exact against exact (the Monte Carlo floor).
    pub swd_exact_floor: f64,
    /// Squared error of the weighted mean.
    pub mean_sq_error: f64,
    /// The same for importance sampling.
    pub mean_sq_error_importance: f64,
    /// The same for the unweighted guided sampler.
    pub mean_sq_error_guided_unweighted: f64,
    /// Exact log p(y).
    pub log_evidence: f64,
    /// The sampler's estimate.
    pub log_evidence_estimate: f64,
    /// ESS after the last step.
    pub final_ess: f64,
    /// ESS of the importance sample.
    pub importance_ess: f64,
    /// Steps with resampling.
    pub resampling_steps: usize,
    /// Steps where the resampler did not converge.
    pub resampler_non_converged_steps: usize,
    /// ρ² used.
    pub prior_scale: f64,
    /// Wall time of the sampler.
    pub smc_seconds: f64,
}

/// Summaries over the runs of `experiment inverse-gm`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct InverseGmSummary {
    /// Of `swd`.
    pub swd: Summary,
    /// Of `swd_importance`.
    pub swd_importance: Summary,
    /// Of `swd_guided_unweighted`.
    pub swd_guided_unweighted: Summary,
    /// Of `swd_exact_floor`.
    pub swd_exact_floor: Summary,
    /// Of `mean_sq_error`.
    pub mean_sq_error: Summary,
    /// Of `mean_sq_error_importance`.
    pub mean_sq_error_importance: Summary,
    /// Of `mean_sq_error_guided_unweighted`.
    pub mean_sq_error_guided_unweighted: Summary,
    /// Of `log_evidence_estimate − log_evidence`.
    pub log_evidence_error: Summary,
    /// Of `final_ess`.
    pub final_ess: Summary,
    /// Of `importance_ess`.
    pub importance_ess: Summary,
    /// Of `resampling_steps`.
    pub resampling_steps: Summary,
    /// Of `smc_seconds`.
    pub smc_seconds: Summary,
}

/// The `inverse-gm` command: runs, prints the comparison table, writes the JSON.
pub fn command(
    s: &InverseGmSettings,
    json_path: Option<&PathBuf>,
    quiet: bool,
    force: bool,
) -> Result<(), CliError> {
    if let Some(p) = json_path {
        output::check_writable(p, force)?;
    }
    let pb = progress::bar(s.runs as u64, "inverse-gm runs", quiet);
    let v = run(s, &pb)?;
    pb.finish_and_clear();
    let sm = &v.summary;
    println!(
        "inverse-gm  d={} c={} k={} y_offset={}  N={}  M={}  resampler {}  trigger {}  targets {}  kernel {}  guidance {}  runs={}",
        s.dim,
        s.components,
        s.obs_dim,
        s.y_offset,
        s.particles,
        s.steps,
        s.resampler,
        trigger_name(s.trigger),
        s.targets,
        s.kernel,
        s.guidance,
        s.runs
    );
    println!(
        "  {:<34} {:<19}  {:<21}",
        "method", "  SWD to exact", "  squared error of mean"
    );
    for (name, swd, mse) in [
        ("SMC, diffusion prior (weighted)", sm.swd, sm.mean_sq_error),
        (
            "importance sampling from the prior",
            sm.swd_importance,
            sm.mean_sq_error_importance,
        ),
        (
            "guided, weights ignored",
            sm.swd_guided_unweighted,
            sm.mean_sq_error_guided_unweighted,
        ),
    ] {
        println!(
            "  {name:<34} {:>8.4} ± {:<8.4}  {:>10.5} ± {:<8.5}",
            swd.mean, swd.std, mse.mean, mse.std,
        );
    }
    println!(
        "  {:<34} {:>8.4} ± {:<8.4}",
        "exact vs exact (Monte Carlo floor)", sm.swd_exact_floor.mean, sm.swd_exact_floor.std
    );
    println!(
        "  log p(y) estimate − exact {:+.4} ± {:.4}; resampled at {:.1} of {} steps; final ESS {:.0}; importance ESS {:.0}; SMC {:.3} s per run",
        sm.log_evidence_error.mean,
        sm.log_evidence_error.std,
        sm.resampling_steps.mean,
        s.steps,
        sm.final_ess.mean,
        sm.importance_ess.mean,
        sm.smc_seconds.mean,
    );
    if v.non_converged_runs > 0 {
        eprintln!(
            "warning: the resampler did not converge at some step in {} of {} runs",
            v.non_converged_runs, s.runs
        );
    }
    if let Some(p) = json_path {
        output::write_json(p, &v, force)?;
    }
    Ok(())
}

/// The flags of `diffsmc experiment inverse-gm` (see its `--help`).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Independent runs (each a new random prior and observation).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Particles (also the size of the importance and exact posterior samples).
    #[arg(long, default_value_t = 1000)]
    pub particles: usize,
    /// Resampler spec.
    #[arg(long, default_value = "systematic")]
    pub resampler: ResamplerSpec,
    /// Resampling trigger: `always`, `never` or `ess:FRAC`.
    #[arg(long, default_value = "ess:0.5")]
    pub trigger: diffsmc::Trigger,
    /// State dimension.
    #[arg(long, default_value_t = 8)]
    pub dim: usize,
    /// Mixture components.
    #[arg(long, default_value_t = 5)]
    pub components: usize,
    /// Observation dimension (rows of the all-ones H; R = I).
    #[arg(long, default_value_t = 1)]
    pub obs_dim: usize,
    /// Offset added to y = H E[x] (large values make the observation atypical).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub y_offset: f64,
    /// Diffusion-time steps M (uniform grid on the VP SDE's [0, 1]).
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Prior kernel: `tweedie` or `em` (Euler–Maruyama).
    #[arg(long, default_value = "tweedie")]
    pub kernel: diffsmc_diffusion_prior::Kernel,
    /// Intermediate targets: `exact` (noised marginals) or `discretised` (score only).
    #[arg(long, default_value = "exact")]
    pub targets: diffsmc_diffusion_prior::Targets,
    /// Guidance scale λ ≥ 0 of the proposal.
    #[arg(long, default_value_t = 1.0)]
    pub guidance: f64,
    /// ρ² of the twisting functions (default: the prior's mean per-coordinate variance).
    #[arg(long)]
    pub prior_scale: Option<f64>,
    /// Random directions of the sliced Wasserstein distance.
    #[arg(long, default_value_t = 1000)]
    pub directions: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write per-run results and the summary as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs `diffsmc experiment inverse-gm`.
pub fn execute(args: &Args, force: bool, quiet: bool) -> Result<(), CliError> {
    let Args {
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
    } = args.clone();
    let settings = InverseGmSettings {
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
    command(&settings, json.as_ref(), quiet, force)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> InverseGmSettings {
        InverseGmSettings {
            runs: 2,
            particles: 300,
            resampler: ResamplerSpec::Systematic,
            trigger: Trigger::EssBelow(0.5),
            dim: 3,
            components: 2,
            obs_dim: 1,
            y_offset: 0.0,
            steps: 20,
            kernel: Kernel::Tweedie,
            targets: Targets::Exact,
            guidance: 1.0,
            prior_scale: None,
            directions: 50,
            seed: 3,
        }
    }

    #[test]
    fn json_has_the_fields_plot_and_summary_need() {
        let pb = indicatif::ProgressBar::hidden();
        let v = serde_json::to_value(run(&settings(), &pb).unwrap()).unwrap();
        assert_eq!(v["experiment"], "inverse-gm");
        assert_eq!(v["prior_scale"], "auto");
        assert_eq!(v["runs"].as_array().unwrap().len(), 2);
        for r in v["runs"].as_array().unwrap() {
            assert!(r["swd"].as_f64().unwrap().is_finite());
            assert!(r["mean_sq_error"].as_f64().unwrap().is_finite());
        }
        for k in [
            "swd",
            "swd_importance",
            "swd_guided_unweighted",
            "swd_exact_floor",
            "mean_sq_error",
            "mean_sq_error_importance",
            "mean_sq_error_guided_unweighted",
            "log_evidence_error",
        ] {
            assert!(v["summary"][k]["mean"].as_f64().unwrap().is_finite(), "{k}");
            assert!(v["summary"][k]["std"].as_f64().unwrap().is_finite(), "{k}");
        }
        // Same seed, same numbers (all but the wall time).
        let again = serde_json::to_value(run(&settings(), &pb).unwrap()).unwrap();
        for k in [
            "swd",
            "swd_importance",
            "swd_guided_unweighted",
            "log_evidence_error",
        ] {
            assert_eq!(v["summary"][k], again["summary"][k], "{k}");
        }
    }

    #[test]
    fn bad_settings_are_flag_errors() {
        let pb = indicatif::ProgressBar::hidden();
        for s in [
            InverseGmSettings {
                runs: 0,
                ..settings()
            },
            InverseGmSettings {
                steps: 0,
                ..settings()
            },
            InverseGmSettings {
                particles: 0,
                ..settings()
            },
        ] {
            assert!(matches!(run(&s, &pb), Err(CliError::Flag { .. })));
        }
        let s = InverseGmSettings {
            guidance: -1.0,
            ..settings()
        };
        assert!(matches!(run(&s, &pb), Err(CliError::Engine(_))));
        assert_eq!(trigger_name(Trigger::EssBelow(0.25)), "ess:0.25");
    }

    /// The sampler refuses resamplers that move particles (docs/diffusion-prior.md): the
    /// experiment fails with the engine's typed error, whose message says what to use.
    #[test]
    fn moving_resamplers_are_refused_with_the_reason() {
        let pb = indicatif::ProgressBar::hidden();
        for spec in [
            "diffusion:T=2,K=8,integrator=jentzen-kloeden,sde",
            "ot:eps=0.4",
            "gumbel",
        ] {
            let s = InverseGmSettings {
                resampler: spec.parse().unwrap(),
                ..settings()
            };
            let err = run(&s, &pb).unwrap_err();
            assert!(
                matches!(
                    err,
                    CliError::Engine(diffsmc::SmcError::IncompatibleResampler { .. })
                ),
                "{spec}: {err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains("moves particles") && msg.contains("systematic"),
                "{msg}"
            );
        }
    }
}
