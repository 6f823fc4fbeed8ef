//! `diffsmc demo`: the headline capability on an embedded default — filter the paper's linear
//! Gaussian model, compare with the Kalman filter, then estimate θ by L-BFGS on the
//! particle-filter likelihood *through diffusion resampling* and compare with the exact
//! (Kalman) maximum-likelihood estimate, with the two loss landscapes drawn side by side.

use std::path::{Path, PathBuf};
use std::time::Instant;

use diffsmc::grad::{GradOptions, KalmanNll, ParticleFilterNll, gradient};
use diffsmc::{Bootstrap, ResamplerSpec, Smc, SmcConfig, SmcOutput};
use diffsmc_lgssm::{Lgssm, PaperParams};

use crate::support::error::CliError;
use crate::support::optimise::{OptimSettings, OptimizerKind, admissible, minimise};
use crate::support::plot::{Band, Chart, Series, Style, draw_heatmaps, landscape_panels};

/// The paper's parameters.
const THETA: [f64; 2] = [0.5, 1.0];
/// The paper's 129 observations.
const STEPS: usize = 129;

/// Arguments of `diffsmc demo`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  diffsmc demo --seed 3 --out demo.svg")]
pub struct DemoArgs {
    /// Seed of the simulation and the filters.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of particles of the filtering comparison.
    #[arg(long, default_value_t = 1024)]
    pub particles: usize,
    /// Number of particles of the fit through diffusion resampling (the paper's 32).
    #[arg(long, default_value_t = 32)]
    pub fit_particles: usize,
    /// The resampler of the fit.
    #[arg(long, default_value = "diffusion:T=2,K=8")]
    pub fit_resampler: ResamplerSpec,
    /// Grid points per axis of the loss landscapes on [θ1 ± 0.25] × [θ2 ± 0.25] (0 skips
    /// them).
    #[arg(long, default_value_t = 21)]
    pub grid: usize,
    /// Where to draw the filtering plot; the landscapes go to the same name with
    /// `-landscape` added. If a file exists (and --force is not given) the next free name
    /// demo-1.svg, demo-2.svg, … is used instead, so nothing is overwritten.
    #[arg(long, default_value = "demo.svg")]
    pub out: PathBuf,
}

/// `path`, or the first of `stem-1.ext`, `stem-2.ext`, … that does not exist.
fn free_name(path: &Path) -> PathBuf {
    if !path.exists() {
        return path.to_path_buf();
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("out");
    let ext = path.extension().and_then(|s| s.to_str()).unwrap_or("svg");
    let dir = path.parent().unwrap_or(Path::new(""));
    (1..)
        .map(|k| dir.join(format!("{stem}-{k}.{ext}")))
        .find(|p| !p.exists())
        .expect("some name is free")
}

/// `stem-landscape.ext` beside `path`.
fn landscape_name(path: &Path) -> PathBuf {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("demo");
    let ext = path.extension().and_then(|s| s.to_str()).unwrap_or("svg");
    path.with_file_name(format!("{stem}-landscape.{ext}"))
}

fn rmse(a: &[f64], b: &[f64]) -> f64 {
    (a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>() / a.len() as f64).sqrt()
}

/// One row of the printed comparison tables: a label column and right-aligned numbers.
fn row(label: &str, cells: &[String]) {
    let mut line = format!("  {label:<44}");
    for c in cells {
        line.push_str(&format!(" {c:>14}"));
    }
    println!("{line}");
}

/// Runs the demo.
pub fn demo(args: &DemoArgs, force: bool) -> Result<(), CliError> {
    if args.fit_particles == 0 {
        return Err(CliError::flag("fit-particles", "must be at least 1"));
    }
    let out_path = if force {
        args.out.clone()
    } else {
        free_name(&args.out)
    };
    let landscape_path = if force {
        landscape_name(&out_path)
    } else {
        free_name(&landscape_name(&out_path))
    };
    crate::support::args::check_memory(
        "particles",
        args.particles,
        crate::support::args::filter_bytes_per_particle(1, 8),
    )?;
    let model = Lgssm::paper(THETA[0], THETA[1], 1)?;
    let (xs, ys) = model.simulate(STEPS, args.seed);
    let data = model.with_data(ys.clone())?;

    // 1. Filtering: particle filter vs Kalman.
    let t0 = Instant::now();
    let config = SmcConfig::new(args.particles)?.with_filter_moments(true);
    let pf: SmcOutput<f64> =
        Smc::new(config).run(&Bootstrap(&data), &diffsmc::resample::Systematic, args.seed)?;
    let pf_time = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let kf = data.kalman()?;
    let kf_time = t1.elapsed().as_secs_f64();

    let truth: Vec<f64> = xs.iter().map(|x| x[0]).collect();
    let pf_mean: Vec<f64> = pf.filter_means.iter().map(|m| m[0]).collect();
    let kf_mean: Vec<f64> = kf.filter_means.iter().map(|m| m[0]).collect();
    let kf_sd: Vec<f64> = kf.filter_covs.iter().map(|c| c[0].sqrt()).collect();

    println!(
        "diffsmc demo: linear Gaussian SSM, d = 1, θ = (0.5, 1.0), {STEPS} observations, seed {}",
        args.seed
    );
    println!();
    println!("1. Filtering");
    row("", &["log-likelihood".into(), "time (ms)".into()]);
    row(
        &format!("particle filter (N = {}, systematic)", args.particles),
        &[
            format!("{:.4}", pf.log_likelihood),
            format!("{:.3}", pf_time * 1e3),
        ],
    );
    row(
        "Kalman filter (exact)",
        &[
            format!("{:.4}", kf.log_likelihood),
            format!("{:.3}", kf_time * 1e3),
        ],
    );
    println!(
        "  filtering RMSE, PF mean vs Kalman mean: {:.5}; vs true states: PF {:.4}, Kalman {:.4}",
        rmse(&pf_mean, &kf_mean),
        rmse(&pf_mean, &truth),
        rmse(&kf_mean, &truth)
    );

    // 2. Maximum likelihood through the resampling step.
    let params = PaperParams::new(1, ys.clone())?;
    let fit_smc = SmcConfig::new(args.fit_particles)?;
    let fit_seed = diffsmc::rng::derive_seed(args.seed, 1);
    let start = [THETA[0] + 0.3, THETA[1] + 0.3];
    let settings = OptimSettings {
        kind: OptimizerKind::Lbfgs,
        lr: 0.0,
        iterations: 100,
        clip: None,
    };
    let nll = ParticleFilterNll::new(&params, &fit_smc, &args.fit_resampler, fit_seed);
    let t2 = Instant::now();
    let pf_fit = minimise(
        &settings,
        &start,
        |th: &[f64]| gradient(&nll, th, &GradOptions::default()),
        |_| {},
    )?;
    let pf_fit_time = t2.elapsed().as_secs_f64();
    let exact = KalmanNll(&params);
    let inadmissible = std::cell::Cell::new(0);
    let kalman_fit = minimise(
        &settings,
        &start,
        |th: &[f64]| {
            admissible(
                gradient(&exact, th, &GradOptions::default()),
                th.len(),
                &inadmissible,
            )
        },
        |_| {},
    )?;
    let dist = ((pf_fit.theta[0] - kalman_fit.theta[0]).powi(2)
        + (pf_fit.theta[1] - kalman_fit.theta[1]).powi(2))
    .sqrt();
    println!();
    println!(
        "2. Maximum likelihood by L-BFGS from θ = ({:.1}, {:.1}), gradients through the resampler",
        start[0], start[1]
    );
    row(
        "",
        &["θ1".into(), "θ2".into(), "NLL".into(), "iterations".into()],
    );
    row(
        &format!(
            "PF, N = {}, {} ({:.2} s)",
            args.fit_particles, args.fit_resampler, pf_fit_time
        ),
        &[
            format!("{:.4}", pf_fit.theta[0]),
            format!("{:.4}", pf_fit.theta[1]),
            format!("{:.4}", pf_fit.value),
            format!("{}", pf_fit.iterations),
        ],
    );
    row(
        "Kalman (exact MLE)",
        &[
            format!("{:.4}", kalman_fit.theta[0]),
            format!("{:.4}", kalman_fit.theta[1]),
            format!("{:.4}", kalman_fit.value),
            format!("{}", kalman_fit.iterations),
        ],
    );
    println!(
        "  |θ̂_PF − θ̂_Kalman| = {dist:.4}; PF fit {}",
        if pf_fit.converged {
            "converged"
        } else {
            "did not converge"
        }
    );

    // 3. The filtering plot.
    let t: Vec<f64> = (0..STEPS).map(|k| k as f64).collect();
    let chart = Chart {
        title: format!(
            "Linear Gaussian SSM: particle filter (N = {}) vs Kalman",
            args.particles
        ),
        x_label: "time step".into(),
        y_label: "state".into(),
        series: vec![
            Series {
                name: "true state".into(),
                points: t.iter().copied().zip(truth.iter().copied()).collect(),
                style: Style::Points,
                color: 6,
            },
            Series {
                name: "Kalman mean".into(),
                points: t.iter().copied().zip(kf_mean.iter().copied()).collect(),
                style: Style::Line,
                color: 0,
            },
            Series {
                name: "particle filter mean".into(),
                points: t.iter().copied().zip(pf_mean.iter().copied()).collect(),
                style: Style::Line,
                color: 1,
            },
        ],
        bands: vec![Band {
            name: "Kalman mean ± 2 sd".into(),
            points: (0..STEPS)
                .map(|k| {
                    (
                        t[k],
                        kf_mean[k] - 2.0 * kf_sd[k],
                        kf_mean[k] + 2.0 * kf_sd[k],
                    )
                })
                .collect(),
            color: 0,
        }],
        log_y: false,
    };
    chart.draw_svg(&out_path)?;
    println!();
    println!("  filtering plot written to {}", out_path.display());

    // 4. The loss landscapes, one filter seed at every grid point (common random numbers).
    if args.grid > 0 {
        let g = args.grid;
        let axis = |c: f64| -> Vec<f64> {
            (0..g)
                .map(|i| {
                    if g == 1 {
                        c
                    } else {
                        c - 0.25 + 0.5 * i as f64 / (g - 1) as f64
                    }
                })
                .collect()
        };
        let (a1, a2) = (axis(THETA[0]), axis(THETA[1]));
        let cells =
            diffsmc::par::map_chunks::<f64, _>(g * g, |k| -> Result<(f64, f64), CliError> {
                let th = [a1[k / g], a2[k % g]];
                Ok((
                    diffsmc::grad::value(&exact, &th)?,
                    diffsmc::grad::value(&nll, &th)?,
                ))
            });
        let mut kf_grid = vec![vec![0.0; g]; g];
        let mut pf_grid = vec![vec![0.0; g]; g];
        for (k, c) in cells.into_iter().enumerate() {
            let (kv, pv) = c?;
            kf_grid[k / g][k % g] = kv;
            pf_grid[k / g][k % g] = pv;
        }
        let panels = landscape_panels(
            &a1,
            &a2,
            THETA,
            [
                ("Kalman NLL (exact)".into(), kf_grid),
                (
                    format!("PF NLL, N = {}, {}", args.fit_particles, args.fit_resampler),
                    pf_grid,
                ),
            ],
        );
        draw_heatmaps(&landscape_path, &panels)?;
        println!(
            "  loss landscapes ({g} × {g} grid) written to {}",
            landscape_path.display()
        );
    }
    Ok(())
}
