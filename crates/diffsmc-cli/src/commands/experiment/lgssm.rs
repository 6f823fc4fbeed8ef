//! `diffsmc experiment lgssm`: loss landscape error, filtering KL and L-BFGS parameter
//! estimation on the paper's linear Gaussian model (Andersson & Zhao 2025, §LGSSM).

use diffsmc::grad::{GradOptions, ParticleFilterNll, gradient};
use diffsmc::rng::derive_seed;
use diffsmc::{Bootstrap, ResamplerSpec, Smc, SmcConfig, SmcOutput};
use diffsmc_lgssm::{Lgssm, PaperParams};
use nalgebra::{DMatrix, DVector};
use serde::Serialize;

use crate::support::error::CliError;
use crate::support::optimise::{OptimSettings, OptimizerKind, admissible, minimise};
use crate::support::output::{Summary, summary};
use std::path::PathBuf;

use crate::support::{output, plot, progress};

/// The true parameters of the experiment.
pub const THETA: [f64; 2] = [0.5, 1.0];
/// Observations per run.
pub const STEPS: usize = 129;

/// Settings of the LGSSM experiment.
#[derive(Debug, Clone)]
pub struct LgssmSettings {
    /// Independent runs (each new data).
    pub runs: usize,
    /// Particles.
    pub particles: usize,
    /// Resampler.
    pub resampler: ResamplerSpec,
    /// Grid points per axis of the loss landscape (0 skips the landscape).
    pub grid: usize,
    /// State dimension.
    pub dim: usize,
    /// L-BFGS iteration cap.
    pub iterations: usize,
    /// Seed.
    pub seed: u64,
}

/// KL(N(m1, S1) ‖ N(m2, S2)) for row-major covariances; NaN if S2 is not positive definite.
pub fn gaussian_kl(m1: &[f64], s1: &[f64], m2: &[f64], s2: &[f64]) -> f64 {
    let d = m1.len();
    let s1m = DMatrix::from_row_slice(d, d, s1);
    let s2m = DMatrix::from_row_slice(d, d, s2);
    let (Some(c1), Some(c2)) = (s1m.clone().cholesky(), s2m.cholesky()) else {
        return f64::NAN;
    };
    let diff = DVector::from_column_slice(m2) - DVector::from_column_slice(m1);
    let tr = c2.solve(&s1m).trace();
    let quad = diff.dot(&c2.solve(&diff));
    let logdet = |l: &DMatrix<f64>| 2.0 * l.diagonal().iter().map(|v| v.ln()).sum::<f64>();
    0.5 * (tr + quad - d as f64 + logdet(&c2.l()) - logdet(&c1.l()))
}

/// The grid of one axis: `n` points evenly on `[c − 0.1, c + 0.1]`.
pub fn axis(c: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![c];
    }
    (0..n)
        .map(|k| c - 0.1 + 0.2 * k as f64 / (n - 1) as f64)
        .collect()
}

/// NLL surfaces over the grid: (Kalman, particle filter), `[i][j]` at `(θ1_i, θ2_j)`.
pub type Landscapes = (Vec<Vec<f64>>, Vec<Vec<f64>>);

/// Results of one run.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// sqrt(mean over the grid of (NLL_Kalman − NLL_PF)²); NaN without a grid.
    pub loss_error: f64,
    /// Mean over steps of KL(Kalman filter ‖ Gaussian fit of the particles).
    pub filtering_kl: f64,
    /// L-BFGS estimate.
    pub theta_hat: Vec<f64>,
    /// L-BFGS converged.
    pub converged: bool,
    /// |θ̂ − θ|.
    pub param_error: f64,
    /// Converged, moved from the start, and param_error < 1.9.
    pub success: bool,
    /// Landscapes (Kalman, PF) for plotting: `[i][j]` at `(θ1_i, θ2_j)`.
    pub landscapes: Option<Landscapes>,
    /// Resampler non-convergence count over all filter runs of this run.
    pub non_converged: usize,
}

/// One run of the experiment.
pub fn one_run(s: &LgssmSettings, run: usize, keep_landscape: bool) -> Result<RunResult, CliError> {
    let seed = derive_seed(s.seed, run as u64);
    let model = Lgssm::paper(THETA[0], THETA[1], s.dim)?;
    let (_, ys) = model.simulate(STEPS, seed);
    let pf_seed = derive_seed(seed, 1);
    let smc = SmcConfig::new(s.particles)?;
    let r = s.resampler.build::<f64>()?;
    let smc_runner = Smc::new(smc.clone());
    let mut non_converged = 0;

    // (i) Loss landscape error, one seed at every grid point.
    let (loss_error, landscapes) = if s.grid > 0 {
        let a1 = axis(THETA[0], s.grid);
        let a2 = axis(THETA[1], s.grid);
        let cells: Vec<Result<(f64, f64, usize), CliError>> =
            diffsmc::par::map_chunks::<f64, _>(s.grid * s.grid, |k| {
                let (i, j) = (k / s.grid, k % s.grid);
                let data = Lgssm::paper(a1[i], a2[j], s.dim)?.with_data(ys.clone())?;
                let kf = -data.kalman()?.log_likelihood;
                let pf: SmcOutput<f64> = smc_runner.run(&Bootstrap(&data), &r, pf_seed)?;
                let nc = pf.resampler_converged.iter().filter(|c| !**c).count();
                Ok((kf, -pf.log_likelihood, nc))
            });
        let mut kf_grid = vec![vec![0.0; s.grid]; s.grid];
        let mut pf_grid = vec![vec![0.0; s.grid]; s.grid];
        let mut sq = 0.0;
        for (k, c) in cells.into_iter().enumerate() {
            let (kf, pf, nc) = c?;
            non_converged += nc;
            kf_grid[k / s.grid][k % s.grid] = kf;
            pf_grid[k / s.grid][k % s.grid] = pf;
            sq += (kf - pf) * (kf - pf);
        }
        let le = (sq / (s.grid * s.grid) as f64).sqrt();
        (le, keep_landscape.then_some((kf_grid, pf_grid)))
    } else {
        (f64::NAN, None)
    };

    // (ii) Filtering KL at the true θ.
    let data = model.with_data(ys.clone())?;
    let kf = data.kalman()?;
    let pf: SmcOutput<f64> =
        Smc::new(smc.clone().with_filter_moments(true)).run(&Bootstrap(&data), &r, pf_seed)?;
    let kls: Vec<f64> = (0..STEPS)
        .map(|t| {
            gaussian_kl(
                &kf.filter_means[t],
                &kf.filter_covs[t],
                &pf.filter_means[t],
                &pf.filter_covs[t],
            )
        })
        .collect();
    let filtering_kl = kls.iter().sum::<f64>() / STEPS as f64;

    // (iii) L-BFGS on the PF NLL from θ + 1, common random numbers.
    let params = PaperParams::new(s.dim, ys)?;
    let start = [THETA[0] + 1.0, THETA[1] + 1.0];
    let settings = OptimSettings {
        kind: OptimizerKind::Lbfgs,
        lr: 0.0,
        iterations: s.iterations,
        clip: None,
    };
    let inadmissible = std::cell::Cell::new(0);
    let fit = minimise(
        &settings,
        &start,
        |th: &[f64]| {
            admissible(
                gradient(
                    &ParticleFilterNll::new(&params, &smc, &s.resampler, pf_seed),
                    th,
                    &GradOptions::default(),
                ),
                th.len(),
                &inadmissible,
            )
        },
        |_| {},
    )?;
    let dist = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f64>()
            .sqrt()
    };
    let param_error = dist(&fit.theta, &THETA);
    let moved = fit.iterations > 0 && dist(&fit.theta, &start) > 1e-6;
    let success = fit.converged && moved && param_error < 1.9;
    Ok(RunResult {
        loss_error,
        filtering_kl,
        theta_hat: fit.theta,
        converged: fit.converged,
        param_error,
        success,
        landscapes,
        non_converged,
    })
}

/// Runs the experiment (runs in parallel).
pub fn run(
    s: &LgssmSettings,
    pb: &indicatif::ProgressBar,
) -> Result<(LgssmReport, Option<Landscapes>), CliError> {
    if s.runs == 0 {
        return Err(CliError::flag("runs", "must be at least 1"));
    }
    if s.dim == 0 {
        return Err(CliError::flag("dim", "must be at least 1"));
    }
    let results: Vec<Result<RunResult, CliError>> =
        diffsmc::par::map_chunks::<f64, _>(s.runs, |k| {
            let r = one_run(s, k, k == 0);
            pb.inc(1);
            r
        });
    let mut runs = Vec::new();
    let (mut le, mut kl, mut pe) = (Vec::new(), Vec::new(), Vec::new());
    let mut successes = 0;
    let mut landscape = None;
    let mut non_converged = 0;
    for (k, r) in results.into_iter().enumerate() {
        let r = r?;
        le.push(r.loss_error);
        kl.push(r.filtering_kl);
        if r.success {
            successes += 1;
            pe.push(r.param_error);
        }
        non_converged += r.non_converged;
        runs.push(LgssmRunRecord {
            run: k,
            loss_error: r.loss_error,
            filtering_kl: r.filtering_kl,
            filtering_kl2: 2.0 * r.filtering_kl,
            theta_hat: r.theta_hat,
            converged: r.converged,
            param_error: r.param_error,
            success: r.success,
        });
        if k == 0 {
            landscape = r.landscapes;
        }
    }
    let kl2: Vec<f64> = kl.iter().map(|v| 2.0 * v).collect();
    let v = LgssmReport {
        experiment: "lgssm",
        resampler: s.resampler.to_string(),
        particles: s.particles,
        grid: s.grid,
        dim: s.dim,
        theta: THETA,
        steps: STEPS,
        seed: s.seed,
        runs,
        resampler_non_converged_steps: non_converged,
        summary: LgssmSummary {
            loss_error: summary(&le),
            filtering_kl: summary(&kl),
            filtering_kl2: summary(&kl2),
            param_error_successful: summary(&pe),
            successes,
            runs: s.runs,
        },
        landscape_run0: landscape.as_ref().map(|(k, p)| LandscapeRecord {
            theta1: axis(THETA[0], s.grid),
            theta2: axis(THETA[1], s.grid),
            kalman_nll: k.clone(),
            pf_nll: p.clone(),
        }),
    };
    Ok((v, landscape))
}

/// The JSON report of `experiment lgssm` (keys in docs/cli.md; non-finite numbers are
/// written as `null`).
#[derive(Debug, Clone, Serialize)]
pub struct LgssmReport {
    /// `"lgssm"`.
    pub experiment: &'static str,
    /// The resampler spec, every knob printed.
    pub resampler: String,
    /// Particles.
    pub particles: usize,
    /// Landscape grid points per axis.
    pub grid: usize,
    /// State dimension.
    pub dim: usize,
    /// The true θ.
    pub theta: [f64; 2],
    /// Observations per run.
    pub steps: usize,
    /// Seed.
    pub seed: u64,
    /// One record per run.
    pub runs: Vec<LgssmRunRecord>,
    /// Resampling steps, over all runs and grid points, where the resampler did not converge.
    pub resampler_non_converged_steps: usize,
    /// Summaries over the runs.
    pub summary: LgssmSummary,
    /// Run 0's Kalman and PF NLL surfaces (`null` without a grid).
    pub landscape_run0: Option<LandscapeRecord>,
}

/// One run of `experiment lgssm`.
#[derive(Debug, Clone, Serialize)]
pub struct LgssmRunRecord {
    /// Run index.
    pub run: usize,
    /// RMS difference of the PF and Kalman NLL over the grid.
    pub loss_error: f64,
    /// Mean filtering KL.
    pub filtering_kl: f64,
    /// 2 · `filtering_kl` (the other convention).
    pub filtering_kl2: f64,
    /// The L-BFGS estimate.
    pub theta_hat: Vec<f64>,
    /// Whether L-BFGS converged.
    pub converged: bool,
    /// |θ̂ − θ|.
    pub param_error: f64,
    /// Converged, moved from the start and |θ̂ − θ| < 1.9.
    pub success: bool,
}

/// Summaries over the runs of `experiment lgssm`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LgssmSummary {
    /// Of `loss_error`.
    pub loss_error: Summary,
    /// Of `filtering_kl`.
    pub filtering_kl: Summary,
    /// Of `filtering_kl2`.
    pub filtering_kl2: Summary,
    /// Of `param_error` over the successful runs.
    pub param_error_successful: Summary,
    /// Successful runs.
    pub successes: usize,
    /// Runs.
    pub runs: usize,
}

/// The loss landscapes of run 0 (rows: θ1, columns: θ2).
#[derive(Debug, Clone, Serialize)]
pub struct LandscapeRecord {
    /// θ1 grid.
    pub theta1: Vec<f64>,
    /// θ2 grid.
    pub theta2: Vec<f64>,
    /// Kalman NLL at every grid point.
    pub kalman_nll: Vec<Vec<f64>>,
    /// PF NLL at every grid point (same seed everywhere).
    pub pf_nll: Vec<Vec<f64>>,
}

/// The flags of `diffsmc experiment lgssm` (see its `--help`).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Independent runs (each with new data).
    #[arg(long, default_value_t = 100)]
    pub runs: usize,
    /// Particles.
    #[arg(long, default_value_t = 32)]
    pub particles: usize,
    /// Resampler spec.
    #[arg(long, default_value = "multinomial")]
    pub resampler: ResamplerSpec,
    /// Grid points per axis of the loss landscape on [θ1 ± 0.1] × [θ2 ± 0.1] (0 skips it).
    #[arg(long, default_value_t = 128)]
    pub grid: usize,
    /// State dimension.
    #[arg(long, default_value_t = 1)]
    pub dim: usize,
    /// L-BFGS iteration cap.
    #[arg(long, default_value_t = 100)]
    pub iterations: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write per-run results and the summary as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw the Kalman and PF NLL surfaces of run 0 as SVG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// Runs `diffsmc experiment lgssm`.
pub fn execute(args: &Args, force: bool, quiet: bool) -> Result<(), CliError> {
    let Args {
        runs,
        particles,
        resampler,
        grid,
        dim,
        iterations,
        seed,
        json,
        plot,
    } = args.clone();
    for p in [&json, &plot].into_iter().flatten() {
        output::check_writable(p, force)?;
    }
    if plot.is_some() && grid == 0 {
        return Err(CliError::flag(
            "plot",
            "needs a landscape: pass --grid N with N > 0",
        ));
    }
    let settings = LgssmSettings {
        runs,
        particles,
        resampler,
        grid,
        dim,
        iterations,
        seed,
    };
    let pb = progress::bar(runs as u64, "lgssm runs", quiet);
    let (v, landscape) = run(&settings, &pb)?;
    pb.finish_and_clear();
    let sm = &v.summary;
    println!(
        "lgssm  resampler {}  N={}  runs={}  grid={}",
        settings.resampler, particles, runs, grid
    );
    println!(
        "  loss_error     {:.4} ± {:.4}",
        sm.loss_error.mean, sm.loss_error.std
    );
    println!(
        "  filtering_kl   {:.5} ± {:.5}  (2·KL {:.5})",
        sm.filtering_kl.mean, sm.filtering_kl.std, sm.filtering_kl2.mean
    );
    println!(
        "  param_error    {:.4} ± {:.4} over {} successful runs of {}",
        sm.param_error_successful.mean, sm.param_error_successful.std, sm.successes, runs
    );
    if v.resampler_non_converged_steps > 0 {
        eprintln!(
            "warning: the resampler did not converge at {} resampling steps (over all runs and \
             grid points): raise its iteration cap or ε",
            v.resampler_non_converged_steps
        );
    }
    if let Some(p) = &json {
        output::write_json(p, &v, force)?;
    }
    if let (Some(p), Some((kf, pf))) = (&plot, landscape) {
        let a1 = axis(THETA[0], grid);
        let a2 = axis(THETA[1], grid);
        let panels = plot::landscape_panels(
            &a1,
            &a2,
            THETA,
            [
                ("Kalman NLL (run 0)".into(), kf),
                (format!("PF NLL, {} (run 0)", settings.resampler), pf),
            ],
        );
        plot::draw_heatmaps(p, &panels)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kl_of_known_gaussians() {
        // KL(N(0,1) ‖ N(1,2)) = ½(1/2 + 1/2 − 1 + ln 2) = ½ ln 2.
        let v = gaussian_kl(&[0.0], &[1.0], &[1.0], &[2.0]);
        assert!((v - 0.5 * 2f64.ln()).abs() < 1e-14);
        assert_eq!(
            gaussian_kl(
                &[0.0, 1.0],
                &[1.0, 0.2, 0.2, 1.0],
                &[0.0, 1.0],
                &[1.0, 0.2, 0.2, 1.0]
            ),
            0.0
        );
        assert!(gaussian_kl(&[0.0], &[1.0], &[0.0], &[0.0]).is_nan());
    }

    #[test]
    fn axis_spans_plus_minus_point_one() {
        let a = axis(0.5, 5);
        assert!(
            (a[0] - 0.4).abs() < 1e-15 && (a[4] - 0.6).abs() < 1e-15 && (a[2] - 0.5).abs() < 1e-15
        );
    }
}
