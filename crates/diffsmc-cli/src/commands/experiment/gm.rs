//! `diffsmc experiment gm`: Gaussian-mixture importance resampling (Andersson & Zhao 2025).

use diffsmc::rng::{Purpose, StreamKey, derive_seed};
use diffsmc::{Particles, ResamplerSpec};
use diffsmc_gaussian_mixture::{
    GmProblem, PAPER_DIRECTIONS, SlicedWasserstein, mean_sq_error, weights_from_log,
};
use serde::Serialize;

use crate::support::error::CliError;
use crate::support::output::{Summary, summary};
use std::path::PathBuf;

use crate::support::{output, progress};

/// Settings of the Gaussian-mixture experiment.
#[derive(Debug, Clone)]
pub struct GmSettings {
    /// Independent runs (each a new random problem).
    pub runs: usize,
    /// Particles.
    pub particles: usize,
    /// Resampler.
    pub resampler: ResamplerSpec,
    /// State dimension.
    pub dim: usize,
    /// Mixture components.
    pub components: usize,
    /// Slicing directions.
    pub directions: usize,
    /// Seed.
    pub seed: u64,
}

impl Default for GmSettings {
    fn default() -> Self {
        GmSettings {
            runs: 10,
            particles: 10_000,
            resampler: ResamplerSpec::Multinomial,
            dim: 8,
            components: 5,
            directions: PAPER_DIRECTIONS,
            seed: 0,
        }
    }
}

/// One run: returns (swd, mean_sq_error, converged).
fn one_run(s: &GmSettings, run: usize) -> Result<(f64, f64, bool), CliError> {
    let seed = derive_seed(s.seed, run as u64);
    let problem = GmProblem::paper(s.dim, s.components, seed)?;
    let n = s.particles;
    let d = s.dim;
    let is = problem.importance_sample(n, StreamKey::new(seed, 0, Purpose::Move))?;
    let r = s.resampler.build::<f64>()?;
    let input = Particles::from_vec(n, d, is.particles.clone())?;
    let mut out = Particles::<f64>::zeros(n, d);
    let mut out_lw = vec![0.0; n];
    let info = r.resample(
        &input,
        &is.log_weights,
        StreamKey::new(seed, 1, Purpose::Resample),
        &mut out,
        &mut out_lw,
    )?;
    let w = weights_from_log(&out_lw)?;
    let exact = problem.posterior_draws(n, StreamKey::new(seed, 2, Purpose::Simulate));
    let mut sw =
        SlicedWasserstein::new(d, s.directions, StreamKey::new(seed, 3, Purpose::Other(0)))?;
    let swd = sw.distance(out.as_slice(), Some(&w), &exact, None)?;
    let mse = mean_sq_error(
        out.as_slice(),
        Some(&w),
        d,
        problem.posterior_mean().as_slice(),
    )?;
    Ok((swd, mse, info.converged))
}

/// Runs the experiment (runs in parallel; each run's result depends only on its seed).
pub fn run(s: &GmSettings, pb: &indicatif::ProgressBar) -> Result<GmReport, CliError> {
    if s.runs == 0 {
        return Err(CliError::flag("runs", "must be at least 1"));
    }
    if s.particles == 0 {
        return Err(CliError::flag("particles", "must be at least 1"));
    }
    let results: Vec<Result<(f64, f64, bool), CliError>> =
        diffsmc::par::map_chunks::<f64, _>(s.runs, |k| {
            let r = one_run(s, k);
            pb.inc(1);
            r
        });
    let mut runs = Vec::new();
    let (mut swd, mut mse) = (Vec::new(), Vec::new());
    let mut non_converged = 0;
    for (k, r) in results.into_iter().enumerate() {
        let (a, b, c) = r?;
        swd.push(a);
        mse.push(b);
        if !c {
            non_converged += 1;
        }
        runs.push(GmRun {
            run: k,
            swd: a,
            mean_sq_error: b,
            resampler_converged: c,
        });
    }
    Ok(GmReport {
        experiment: "gm",
        resampler: s.resampler.to_string(),
        particles: s.particles,
        dim: s.dim,
        components: s.components,
        directions: s.directions,
        seed: s.seed,
        runs,
        non_converged_runs: non_converged,
        summary: GmSummary {
            swd: summary(&swd),
            mean_sq_error: summary(&mse),
        },
    })
}

/// One run of the GM experiment.
#[derive(Debug, Clone, Serialize)]
pub struct GmRun {
    /// Run index.
    pub run: usize,
    /// Sliced Wasserstein distance to the exact posterior.
    pub swd: f64,
    /// Squared error of the weighted mean.
    pub mean_sq_error: f64,
    /// Whether the resampler reported convergence.
    pub resampler_converged: bool,
}

/// Summaries over the runs of the GM experiment.
#[derive(Debug, Clone, Serialize)]
pub struct GmSummary {
    /// Sliced Wasserstein distance.
    pub swd: Summary,
    /// Squared error of the mean.
    pub mean_sq_error: Summary,
}

/// The JSON report of `diffsmc experiment gm`.
#[derive(Debug, Clone, Serialize)]
pub struct GmReport {
    /// `"gm"`.
    pub experiment: &'static str,
    /// The resampler spec.
    pub resampler: String,
    /// Particles.
    pub particles: usize,
    /// State dimension.
    pub dim: usize,
    /// Mixture components.
    pub components: usize,
    /// Sliced Wasserstein directions.
    pub directions: usize,
    /// Seed.
    pub seed: u64,
    /// Per-run results.
    pub runs: Vec<GmRun>,
    /// Runs in which the resampler did not converge.
    pub non_converged_runs: usize,
    /// Summaries over the runs.
    pub summary: GmSummary,
}

/// The flags of `diffsmc experiment gm` (see its `--help`).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Independent runs (each a new random problem).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Particles.
    #[arg(long, default_value_t = 10_000)]
    pub particles: usize,
    /// Resampler spec.
    #[arg(long, default_value = "multinomial")]
    pub resampler: ResamplerSpec,
    /// State dimension.
    #[arg(long, default_value_t = 8)]
    pub dim: usize,
    /// Mixture components.
    #[arg(long, default_value_t = 5)]
    pub components: usize,
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

/// Runs `diffsmc experiment gm`.
pub fn execute(args: &Args, force: bool, quiet: bool) -> Result<(), CliError> {
    let Args {
        runs,
        particles,
        resampler,
        dim,
        components,
        directions,
        seed,
        json,
    } = args.clone();
    if let Some(p) = &json {
        output::check_writable(p, force)?;
    }
    let settings = GmSettings {
        runs,
        particles,
        resampler,
        dim,
        components,
        directions,
        seed,
    };
    let pb = progress::bar(runs as u64, "gm runs", quiet);
    let v = run(&settings, &pb)?;
    pb.finish_and_clear();
    let sm = &v.summary;
    println!(
        "gm  resampler {}  N={}  runs={}\n  swd           {:.5} ± {:.5}\n  mean_sq_error {:.5} ± {:.5}",
        settings.resampler,
        particles,
        runs,
        sm.swd.mean,
        sm.swd.std,
        sm.mean_sq_error.mean,
        sm.mean_sq_error.std,
    );
    if v.non_converged_runs > 0 {
        eprintln!(
            "warning: the resampler did not converge in {} runs",
            v.non_converged_runs
        );
    }
    if let Some(p) = &json {
        output::write_json(p, &v, force)?;
    }
    Ok(())
}
