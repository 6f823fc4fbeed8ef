//! `diffsmc experiment pendulum`: learning a pendulum's dynamics and an image decoder from
//! 32×32 frames through the particle filter (Andersson & Zhao 2025, §4.4, appendix J).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use diffsmc::grad::{GradMode, GradOptions, Parametric, ParticleFilterNll, gradient};
use diffsmc::rng::derive_seed;
use diffsmc::{ResamplerSpec, SmcConfig, SmcError, Trigger};
use diffsmc_optim::{AdamRule, FirstOrder, StepOutcome};
use diffsmc_pendulum::{NeuralPendulum, SIDE, Setting, SimConfig, sequence_scores, simulate};
use serde::Serialize;

use crate::support::error::CliError;
use crate::support::output::{self, Summary, summary};
use crate::support::{plot, progress};

/// At most this many consecutive non-finite updates are skipped; one more ends the run as
/// divergent.
pub const MAX_CONSECUTIVE_SKIPS: usize = 10;
/// Frames shown per image strip.
pub const STRIP_FRAMES: usize = 10;
/// The paper's number of time steps.
pub const PAPER_STEPS: usize = 256;

/// The training knobs of one setting.
#[derive(Debug, Clone)]
pub struct PendulumSettings {
    /// 1 or 2.
    pub setting: Setting,
    /// Independent runs (new data and a new initialisation each).
    pub runs: usize,
    /// Training iterations per run.
    pub iterations: usize,
    /// Particles.
    pub particles: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Adam β₂.
    pub beta2: f64,
    /// Global-norm clipping.
    pub clip_norm: f64,
    /// Time steps of the sequence (256 in the paper; Δ stays 4/256).
    pub steps: usize,
    /// Seed.
    pub seed: u64,
    /// Print a progress line every this many iterations (0: never).
    pub log_every: usize,
}

/// What one training run produced.
#[derive(Debug, Clone)]
pub struct PendulumRun {
    /// The JSON part.
    pub report: PendulumRunReport,
    /// The clean true frames.
    pub truth: Vec<Vec<f64>>,
    /// The unrolled predicted frames before training.
    pub untrained: Vec<Vec<f64>>,
    /// The unrolled predicted frames after training.
    pub predicted: Vec<Vec<f64>>,
    /// Number of parameters.
    pub n_params: usize,
    /// σ_train.
    pub sigma_train: f64,
}

/// One run in the JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct PendulumRunReport {
    /// Run index.
    pub run: usize,
    /// Negative log-likelihood estimate per iteration (`null` when non-finite).
    pub loss_trace: Vec<f64>,
    /// Mean SSIM of the unrolled predicted sequence (learnt dynamics from `z0` without noise,
    /// decoded) against the clean true frames, after training.
    pub ssim: f64,
    /// Mean PSNR (dB) of the same.
    pub psnr: f64,
    /// The same two before training.
    pub ssim_untrained: f64,
    /// See `ssim_untrained`.
    pub psnr_untrained: f64,
    /// Mean SSIM of the decoder at the **true** states (the decoder alone), after training.
    pub decoder_ssim: f64,
    /// The same before training.
    pub decoder_ssim_untrained: f64,
    /// No more than 10 consecutive non-finite updates, finite final θ and scores.
    pub success: bool,
    /// Updates skipped for a non-finite value, gradient or update.
    pub skipped_updates: usize,
    /// Longest run of consecutive skips.
    pub max_consecutive_skips: usize,
    /// Iterations done (fewer than asked when the run diverged).
    pub iterations_done: usize,
    /// Seconds spent training.
    pub seconds: f64,
    /// `seconds / iterations_done`.
    pub seconds_per_iteration: f64,
}

/// Summary over the runs of one resampler.
#[derive(Debug, Clone, Serialize)]
pub struct PendulumSummary {
    /// SSIM of the successful runs.
    pub ssim_successful: Summary,
    /// PSNR of the successful runs.
    pub psnr_successful: Summary,
    /// Successful runs.
    pub successes: usize,
    /// All runs.
    pub runs: usize,
}

/// The runs of one resampler.
#[derive(Debug, Clone, Serialize)]
pub struct PendulumResamplerReport {
    /// The resampler spec.
    pub resampler: String,
    /// Per-run results.
    pub runs: Vec<PendulumRunReport>,
    /// Summary.
    pub summary: PendulumSummary,
}

/// The JSON report of `diffsmc experiment pendulum`.
#[derive(Debug, Clone, Serialize)]
pub struct PendulumReport {
    /// `"pendulum"`.
    pub experiment: &'static str,
    /// 1 or 2.
    pub setting: u32,
    /// Training iterations asked for.
    pub iterations: usize,
    /// Particles.
    pub particles: usize,
    /// Time steps.
    pub steps: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Adam β₂.
    pub beta2: f64,
    /// Global-norm clipping.
    pub clip_norm: f64,
    /// σ_train.
    pub sigma_train: f64,
    /// κ.
    pub kappa: f64,
    /// The resampling trigger.
    pub trigger: String,
    /// Number of parameters.
    pub n_params: usize,
    /// `"reverse"`.
    pub grad_mode: &'static str,
    /// Seed.
    pub seed: u64,
    /// Per resampler.
    pub by_resampler: Vec<PendulumResamplerReport>,
}

/// The paper's resampling schedule: `(trigger, first step at which it is consulted)`.
fn trigger(setting: Setting) -> (Trigger, usize) {
    match setting {
        // Resample when ESS < N (the threshold N of N particles), from the first step.
        Setting::One => (Trigger::EssBelow(1.0), 1),
        // Resample at every step j > 10.
        Setting::Two => (Trigger::Always, SETTING2_FIRST_RESAMPLE_STEP),
    }
}

/// Setting 2 resamples before the move to step `j` only for `j > 10` (paper, appendix J).
const SETTING2_FIRST_RESAMPLE_STEP: usize = 11;

fn trigger_name(setting: Setting) -> String {
    let (t, from) = trigger(setting);
    let name = match t {
        Trigger::EssBelow(f) => format!("ess:{f}"),
        Trigger::Always => "always".into(),
        Trigger::Never => "never".into(),
    };
    if from > 1 {
        format!("{name} from step {from}")
    } else {
        name
    }
}

fn sim_config(s: &PendulumSettings) -> SimConfig {
    let mut cfg = match s.setting {
        Setting::One => SimConfig::paper(),
        Setting::Two => SimConfig::paper_setting2(),
    };
    cfg.t_end = cfg.t_end * s.steps as f64 / PAPER_STEPS as f64;
    cfg.n_steps = s.steps;
    cfg
}

/// `(SSIM, PSNR, decoder-at-truth SSIM, unrolled frames)`.
type Scores = (f64, f64, f64, Vec<Vec<f64>>);

/// Trains one run; `on_iter(k, loss, seconds_per_iteration)` after every iteration.
pub fn one_run(
    s: &PendulumSettings,
    spec: &ResamplerSpec,
    run: usize,
    mut on_iter: impl FnMut(usize, f64, f64),
) -> Result<PendulumRun, CliError> {
    let seed = derive_seed(s.seed, run as u64);
    let cfg = sim_config(s);
    let data = simulate(&cfg, seed)?;
    let family = NeuralPendulum::new(s.setting, &data, &cfg, derive_seed(seed, 1))?;
    let (trig, from) = trigger(s.setting);
    let smc = SmcConfig::new(s.particles)?
        .with_trigger(trig)?
        .with_first_resample_step(from);
    let opts = GradOptions::default().with_mode(GradMode::Reverse);
    let mut adam = FirstOrder::<AdamRule>::new(s.lr)?
        .with_betas(0.9, s.beta2)?
        .with_clip_norm(s.clip_norm)?;
    let mut theta = family.initial_theta();
    let scores = |theta: &[f64]| -> Result<Scores, CliError> {
        let (_, frames) = family.unroll(theta, s.steps)?;
        let (ssim, psnr) = sequence_scores(&frames, &data.clean, SIDE)?;
        let dec = family.decode_states(theta, &data.states)?;
        let (dssim, _) = sequence_scores(&dec, &data.clean, SIDE)?;
        Ok((ssim, psnr, dssim, frames))
    };
    let (ssim0, psnr0, dssim0, untrained) = scores(&theta)?;

    let mut trace = Vec::with_capacity(s.iterations);
    let (mut skipped, mut consecutive, mut max_consecutive) = (0, 0, 0);
    let mut diverged = false;
    let t0 = Instant::now();
    for k in 0..s.iterations {
        let nll = ParticleFilterNll::new(&family, &smc, spec, derive_seed(seed, 1000 + k as u64));
        // A numerical failure of the filter (all weights vanished, a non-finite value) is a
        // non-finite iteration like a NaN loss: skipped, and counted towards divergence.
        let (v, g) = match gradient(&nll, &theta, &opts) {
            Ok(vg) => vg,
            Err(SmcError::DegenerateWeights { .. } | SmcError::NonFinite { .. }) => {
                (f64::NAN, Vec::new())
            }
            Err(e) => return Err(e.into()),
        };
        trace.push(v);
        let applied = if v.is_finite() {
            matches!(adam.step(&mut theta, &g), StepOutcome::Applied { .. })
        } else {
            false
        };
        if applied {
            consecutive = 0;
        } else {
            skipped += 1;
            consecutive += 1;
            max_consecutive = max_consecutive.max(consecutive);
            if consecutive > MAX_CONSECUTIVE_SKIPS {
                diverged = true;
            }
        }
        on_iter(k, v, t0.elapsed().as_secs_f64() / (k + 1) as f64);
        if diverged {
            break;
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let done = trace.len();
    let (ssim, psnr, dssim, predicted) = scores(&theta)?;
    let success = !diverged && theta.iter().all(|v| v.is_finite()) && ssim.is_finite();
    Ok(PendulumRun {
        report: PendulumRunReport {
            run,
            loss_trace: trace,
            ssim,
            psnr,
            ssim_untrained: ssim0,
            psnr_untrained: psnr0,
            decoder_ssim: dssim,
            decoder_ssim_untrained: dssim0,
            success,
            skipped_updates: skipped,
            max_consecutive_skips: max_consecutive,
            iterations_done: done,
            seconds,
            seconds_per_iteration: seconds / done.max(1) as f64,
        },
        truth: data.clean,
        untrained,
        predicted,
        n_params: family.n_params(),
        sigma_train: family.sigma_train(),
    })
}

/// Runs every resampler's runs; returns the report and run 0 of each resampler.
pub fn run(
    s: &PendulumSettings,
    specs: &[ResamplerSpec],
    pb: &indicatif::ProgressBar,
    quiet: bool,
) -> Result<(PendulumReport, Vec<(String, PendulumRun)>), CliError> {
    if s.runs == 0 {
        return Err(CliError::flag("runs", "must be at least 1"));
    }
    if s.iterations == 0 {
        return Err(CliError::flag("iterations", "must be at least 1"));
    }
    if s.steps == 0 {
        return Err(CliError::flag("steps", "must be at least 1"));
    }
    let mut by_resampler = Vec::new();
    let mut first = Vec::new();
    let mut n_params = 0;
    let mut sigma_train = f64::NAN;
    for spec in specs {
        let mut runs = Vec::new();
        let (mut ssims, mut psnrs, mut successes) = (Vec::new(), Vec::new(), 0);
        for r in 0..s.runs {
            let res = one_run(s, spec, r, |k, v, spi| {
                pb.inc(1);
                if !quiet && s.log_every > 0 && (k + 1) % s.log_every == 0 {
                    eprintln!(
                        "pendulum {spec} run {r} iteration {} loss {v:.6} ({spi:.2} s/iteration)",
                        k + 1
                    );
                }
            })?;
            if res.report.success {
                successes += 1;
                ssims.push(res.report.ssim);
                psnrs.push(res.report.psnr);
            }
            runs.push(res.report.clone());
            if r == 0 {
                first.push((spec.to_string(), res));
            }
        }
        by_resampler.push(PendulumResamplerReport {
            resampler: spec.to_string(),
            runs,
            summary: PendulumSummary {
                ssim_successful: summary(&ssims),
                psnr_successful: summary(&psnrs),
                successes,
                runs: s.runs,
            },
        });
    }
    if let Some((_, r0)) = first.first() {
        n_params = r0.n_params;
        sigma_train = r0.sigma_train;
    }
    Ok((
        PendulumReport {
            experiment: "pendulum",
            setting: s.setting.number(),
            iterations: s.iterations,
            particles: s.particles,
            steps: s.steps,
            lr: s.lr,
            beta2: s.beta2,
            clip_norm: s.clip_norm,
            sigma_train,
            kappa: s.setting.kappa(),
            trigger: trigger_name(s.setting),
            n_params,
            grad_mode: "reverse",
            seed: s.seed,
            by_resampler,
        },
        first,
    ))
}

/// The flags of `diffsmc experiment pendulum` (see its `--help`).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Paper setting: 1 (noise as a network input, ESS-adaptive resampling) or 2 (additive
    /// noise on the velocity, resampling at every step).
    #[arg(long, default_value_t = 1)]
    pub setting: u32,
    /// Independent runs (each new data and a new initialisation).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Training iterations [default: 3000 in setting 1, 1500 in setting 2].
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Particles [default: 32 in setting 1, 16 in setting 2].
    #[arg(long)]
    pub particles: Option<usize>,
    /// Resampler spec; repeat the flag to compare several.
    #[arg(long = "resampler", default_value = "diffusion:T=1,K=4")]
    pub resamplers: Vec<ResamplerSpec>,
    /// Adam learning rate [default: 1e-4 in setting 1, 2e-4 in setting 2].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Time steps of the sequence (the paper's 256; fewer for quick checks, Δ unchanged).
    #[arg(long, default_value_t = PAPER_STEPS)]
    pub steps: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print a progress line (iteration, loss, seconds per iteration) to stderr every this
    /// many iterations; 0 for none.
    #[arg(long, default_value_t = 10)]
    pub log_every: usize,
    /// Write per-run results (loss traces, SSIM, PSNR) and summaries as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw run 0's true, untrained and predicted image strips as SVG; the loss traces go
    /// to the same name with `-loss` added.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// Runs `diffsmc experiment pendulum`.
pub fn execute(args: &Args, force: bool, quiet: bool) -> Result<(), CliError> {
    let setting = Setting::from_number(args.setting)
        .map_err(|_| CliError::flag("setting", format!("{}: expected 1 or 2", args.setting)))?;
    let (it, n, lr, beta2) = match setting {
        Setting::One => (3000, 32, 1e-4, 0.999),
        Setting::Two => (1500, 16, 2e-4, 0.99),
    };
    let s = PendulumSettings {
        setting,
        runs: args.runs,
        iterations: args.iterations.unwrap_or(it),
        particles: args.particles.unwrap_or(n),
        lr: args.lr.unwrap_or(lr),
        beta2,
        clip_norm: 1.0,
        steps: args.steps,
        seed: args.seed,
        log_every: args.log_every,
    };
    let loss_plot = args.plot.as_ref().map(|p| {
        let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("pendulum");
        p.with_file_name(format!("{stem}-loss.svg"))
    });
    for p in [&args.json, &args.plot, &loss_plot].into_iter().flatten() {
        output::check_writable(p, force)?;
    }
    let pb = progress::bar(
        (s.runs * s.iterations * args.resamplers.len()) as u64,
        "pendulum training",
        quiet,
    );
    let (report, first) = run(&s, &args.resamplers, &pb, quiet)?;
    pb.finish_and_clear();
    println!(
        "pendulum setting {}  N={}  iterations={}  steps={}  Adam lr {} β₂ {}  runs={}",
        s.setting.number(),
        s.particles,
        s.iterations,
        s.steps,
        s.lr,
        s.beta2,
        s.runs
    );
    for b in &report.by_resampler {
        let sm = &b.summary;
        println!(
            "  {:<32} SSIM {:.3} ± {:.3}  PSNR {:.2} ± {:.2} dB  ({} of {} runs succeeded)",
            b.resampler,
            sm.ssim_successful.mean,
            sm.ssim_successful.std,
            sm.psnr_successful.mean,
            sm.psnr_successful.std,
            sm.successes,
            sm.runs
        );
        for r in &b.runs {
            println!(
                "    run {}: SSIM {:.3} (untrained {:.3}), decoder-at-truth SSIM {:.3} (untrained {:.3}), {:.2} s/iteration",
                r.run,
                r.ssim,
                r.ssim_untrained,
                r.decoder_ssim,
                r.decoder_ssim_untrained,
                r.seconds_per_iteration
            );
        }
    }
    if let Some(p) = &args.json {
        output::write_json(p, &report, force)?;
    }
    if let Some(p) = &args.plot {
        draw_strips(p, &first)?;
    }
    if let Some(p) = &loss_plot {
        let series = report
            .by_resampler
            .iter()
            .enumerate()
            .flat_map(|(i, b)| {
                b.runs.iter().map(move |r| plot::Series {
                    name: format!("{} run {}", b.resampler, r.run),
                    points: r
                        .loss_trace
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| v.is_finite())
                        .map(|(k, &v)| (k as f64, v))
                        .collect(),
                    style: plot::Style::Line,
                    color: i,
                })
            })
            .collect();
        plot::Chart {
            title: format!("Pendulum setting {}: training loss", s.setting.number()),
            x_label: "iteration".into(),
            y_label: "negative log-likelihood estimate".into(),
            series,
            bands: vec![],
            log_y: false,
        }
        .draw_svg(p)?;
    }
    Ok(())
}

/// Rows of 32×32 frames (as the paper's Figure 6): the truth, the untrained model's unrolled
/// prediction, and each resampler's trained prediction; [`STRIP_FRAMES`] frames evenly spaced.
fn draw_strips(path: &Path, first: &[(String, PendulumRun)]) -> Result<(), CliError> {
    let Some((_, r0)) = first.first() else {
        return Ok(());
    };
    let mut rows: Vec<(String, &Vec<Vec<f64>>)> = vec![
        ("truth".into(), &r0.truth),
        ("untrained".into(), &r0.untrained),
    ];
    for (name, r) in first {
        rows.push((format!("trained, {name}"), &r.predicted));
    }
    let n = r0.truth.len();
    let frames: Vec<usize> = (0..STRIP_FRAMES)
        .map(|i| i * (n - 1) / (STRIP_FRAMES - 1).max(1))
        .collect();
    let (px, gap, label_h, left) = (3usize, 6usize, 18usize, 8usize);
    let tile = SIDE * px;
    let width = left + frames.len() * (tile + gap);
    let height = 24 + rows.len() * (label_h + tile + gap);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>"#
    );
    let _ = write!(
        svg,
        r#"<text x="{left}" y="15">frames {}</text>"#,
        frames
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (ri, (name, seq)) in rows.iter().enumerate() {
        let y0 = 24 + ri * (label_h + tile + gap);
        let _ = write!(
            svg,
            r#"<text x="{left}" y="{}">{name}</text>"#,
            y0 + label_h - 5
        );
        for (fi, &f) in frames.iter().enumerate() {
            let x0 = left + fi * (tile + gap);
            let ty = y0 + label_h;
            let _ = write!(
                svg,
                r#"<rect x="{x0}" y="{ty}" width="{tile}" height="{tile}" fill="black"/>"#
            );
            let img = &seq[f];
            for r in 0..SIDE {
                for c in 0..SIDE {
                    // 64 grey levels; the black background is already drawn.
                    let v = (img[r * SIDE + c].clamp(0.0, 1.0) * 63.0).round() as u32;
                    if v == 0 {
                        continue;
                    }
                    let g = v * 255 / 63;
                    let _ = write!(
                        svg,
                        r#"<rect x="{}" y="{}" width="{px}" height="{px}" fill="rgb({g},{g},{g})"/>"#,
                        x0 + c * px,
                        ty + r * px
                    );
                }
            }
        }
    }
    svg.push_str("</svg>\n");
    std::fs::write(path, svg).map_err(|e| CliError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(setting: Setting) -> PendulumSettings {
        PendulumSettings {
            setting,
            runs: 1,
            iterations: 2,
            particles: 4,
            lr: 1e-4,
            beta2: 0.999,
            clip_norm: 1.0,
            steps: 3,
            seed: 1,
            log_every: 0,
        }
    }

    #[test]
    fn report_is_complete_and_seeded() {
        let pb = indicatif::ProgressBar::hidden();
        let specs: Vec<ResamplerSpec> = vec!["diffusion:T=1,K=4".parse().unwrap()];
        for setting in [Setting::One, Setting::Two] {
            let (rep, first) = run(&settings(setting), &specs, &pb, true).unwrap();
            let v = serde_json::to_value(&rep).unwrap();
            assert_eq!(v["experiment"], "pendulum");
            assert_eq!(
                v["n_params"],
                133_632 - 2 * 256 * (setting.number() as i64 - 1) + 13_825
            );
            let r = &v["by_resampler"][0]["runs"][0];
            assert_eq!(r["loss_trace"].as_array().unwrap().len(), 2);
            assert!(r["ssim"].as_f64().unwrap().is_finite());
            assert!(r["psnr"].as_f64().unwrap().is_finite());
            assert_eq!(r["success"], true);
            assert_eq!(first[0].1.truth.len(), 4);
            let (again, _) = run(&settings(setting), &specs, &pb, true).unwrap();
            assert_eq!(
                rep.by_resampler[0].runs[0].loss_trace,
                again.by_resampler[0].runs[0].loss_trace
            );
        }
        let mut bad = settings(Setting::One);
        bad.runs = 0;
        assert!(run(&bad, &specs, &pb, true).is_err());
    }

    #[test]
    fn strips_svg_is_written() {
        let pb = indicatif::ProgressBar::hidden();
        let specs: Vec<ResamplerSpec> = vec![ResamplerSpec::Systematic];
        let (_, first) = run(&settings(Setting::Two), &specs, &pb, true).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.svg");
        draw_strips(&p, &first).unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.starts_with("<svg") && s.contains("truth") && s.contains("trained, "));
    }
}
