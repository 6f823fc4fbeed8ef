//! `diffsmc bench`: timings of the engine's hot paths.

use std::time::Instant;

use diffsmc::rng::{Purpose, StreamKey, standard_normal};
use diffsmc::{Particles, ResamplerSpec, Scalar, normalise_log_weights};
use indicatif::ProgressBar;
use num_dual::{DualSVec64, DualStruct};

use crate::support::error::CliError;
use std::path::PathBuf;

use diffsmc::grad::GradMode;

use crate::support::{output, progress};
use serde::Serialize;

/// Median of a sample of durations in seconds.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Times `f` repeatedly: at least `min_reps` runs and at least `min_seconds` in total (after
/// one warm-up run); returns the per-run times. `pb` counts the runs.
pub fn time_runs(
    min_reps: usize,
    min_seconds: f64,
    pb: &ProgressBar,
    mut f: impl FnMut() -> Result<(), CliError>,
) -> Result<Vec<f64>, CliError> {
    f()?;
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < min_reps || start.elapsed().as_secs_f64() < min_seconds {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
        pb.inc(1);
        if times.len() >= 10_000 {
            break;
        }
    }
    Ok(times)
}

/// Standard normal particles with Gaussian-likelihood-like weights tilted towards the first
/// coordinate (a typical post-observation weight profile).
fn resample_inputs<S: Scalar>(n: usize, d: usize, seed: u64) -> (Particles<S>, Vec<S>) {
    let mut rng = StreamKey::new(seed, 0, Purpose::Other(7)).rng(0);
    let mut x = Vec::with_capacity(n * d);
    let mut lw = Vec::with_capacity(n);
    for _ in 0..n {
        let first = standard_normal(&mut rng);
        x.push(S::cst(first));
        for _ in 1..d {
            x.push(S::cst(standard_normal(&mut rng)));
        }
        lw.push(S::cst(-0.5 * (first - 1.0) * (first - 1.0)));
    }
    let _ = normalise_log_weights(&mut lw, 0);
    (Particles::from_vec(n, d, x).expect("n*d buffer"), lw)
}

fn bench_resample_s<S: Scalar>(
    spec: &ResamplerSpec,
    n: usize,
    d: usize,
    seed: u64,
    min_seconds: f64,
    pb: &ProgressBar,
    seed_lanes: impl Fn(&mut Particles<S>, &mut [S]),
) -> Result<(Vec<f64>, bool), CliError> {
    let r = spec.build::<S>()?;
    let (mut p, mut lw) = resample_inputs::<S>(n, d, seed);
    seed_lanes(&mut p, &mut lw);
    let mut out = Particles::<S>::zeros(n, d);
    let mut out_lw = vec![S::zero(); n];
    let mut k = 0usize;
    let mut all_converged = true;
    let times = time_runs(3, min_seconds, pb, || {
        k += 1;
        let info = r.resample(
            &p,
            &lw,
            StreamKey::new(seed, k, Purpose::Resample),
            &mut out,
            &mut out_lw,
        )?;
        all_converged &= info.converged;
        Ok(())
    })?;
    Ok((times, all_converged))
}

/// Which scalar a benchmark runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchScalar {
    /// Plain `f64`.
    F64,
    /// Two-direction dual numbers (`DualSVec64<2>`).
    Dual2,
}

/// `diffsmc bench resample`.
pub fn resample(
    spec: &ResamplerSpec,
    n: usize,
    d: usize,
    scalar: BenchScalar,
    seed: u64,
    min_seconds: f64,
    pb: &ProgressBar,
) -> Result<ResampleReport, CliError> {
    if n == 0 {
        return Err(CliError::flag("particles", "must be at least 1"));
    }
    if d == 0 {
        return Err(CliError::flag("dim", "must be at least 1"));
    }
    let (times, converged) = match scalar {
        BenchScalar::F64 => bench_resample_s::<f64>(spec, n, d, seed, min_seconds, pb, |_, _| {})?,
        BenchScalar::Dual2 => {
            bench_resample_s::<DualSVec64<2>>(spec, n, d, seed, min_seconds, pb, |p, lw| {
                // Direction 0: shift of every particle; direction 1: tilt of the weights.
                for x in p.as_mut_slice() {
                    *x = DualSVec64::<2>::from_re(x.re())
                        + DualSVec64::<2>::from_re(0.0).derivative(0);
                }
                let tilt: Vec<_> = (0..lw.len())
                    .map(|i| {
                        lw[i] + DualSVec64::<2>::from_re(0.0).derivative(1) * p.particle(i)[0].re()
                    })
                    .collect();
                lw.copy_from_slice(&tilt);
                let _ = normalise_log_weights(lw, 0);
            })?
        }
    };
    let med = median(times.clone());
    Ok(ResampleReport {
        bench: "resample",
        resampler: spec.to_string(),
        particles: n,
        dim: d,
        scalar: match scalar {
            BenchScalar::F64 => "f64",
            BenchScalar::Dual2 => "dual2",
        },
        repetitions: times.len(),
        median_seconds: med,
        min_seconds: times.iter().copied().fold(f64::INFINITY, f64::min),
        all_converged: converged,
    })
}

/// The JSON report of `diffsmc bench resample`.
#[derive(Debug, Clone, Serialize)]
pub struct ResampleReport {
    /// `"resample"`.
    pub bench: &'static str,
    /// The resampler spec.
    pub resampler: String,
    /// Particles.
    pub particles: usize,
    /// State dimension.
    pub dim: usize,
    /// `"f64"` or `"dual2"`.
    pub scalar: &'static str,
    /// Timed repetitions.
    pub repetitions: usize,
    /// Median seconds of one resampling.
    pub median_seconds: f64,
    /// Fastest repetition.
    pub min_seconds: f64,
    /// Whether the resampler converged in every repetition.
    pub all_converged: bool,
}

/// The JSON report of `diffsmc bench grad` and `diffsmc bench filter`.
#[derive(Debug, Clone, Serialize)]
pub struct GradReport {
    /// `"grad"` or `"filter"`.
    pub bench: &'static str,
    /// `"lgssm"` or `"lotka-volterra"`.
    pub model: &'static str,
    /// The resampler spec.
    pub resampler: String,
    /// Particles.
    pub particles: usize,
    /// Time steps.
    pub steps: usize,
    /// Parameters.
    pub parameters: usize,
    /// The resolved gradient mode (`null` for `bench filter`).
    pub grad_mode: Option<&'static str>,
    /// Median seconds of the timed quantity (value and gradient, or the value alone).
    pub median_seconds: f64,
    /// Median seconds of the value alone.
    pub value_median_seconds: f64,
    /// Median seconds of value and gradient (`null` for `bench filter`).
    pub gradient_median_seconds: Option<f64>,
    /// `gradient_median_seconds / value_median_seconds`.
    pub gradient_to_value: Option<f64>,
    /// Timed repetitions.
    pub repetitions: usize,
}

/// The model of `diffsmc bench grad`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchModel {
    /// The paper LGSSM (d = 1, θ = (0.5, 1), 129 simulated observations; 2 parameters).
    Lgssm,
    /// The neural Lotka–Volterra model (256 steps of paper data, seed 0; 226 parameters).
    LotkaVolterra,
}

impl std::str::FromStr for BenchModel {
    type Err = CliError;
    fn from_str(s: &str) -> Result<Self, CliError> {
        match s {
            "lgssm" => Ok(BenchModel::Lgssm),
            "lotka-volterra" | "lv" => Ok(BenchModel::LotkaVolterra),
            other => Err(CliError::flag(
                "model",
                format!("unknown model `{other}`; expected `lgssm` or `lotka-volterra`"),
            )),
        }
    }
}

/// Times value (and, with `mode`, value-and-gradient) of a parametric family at `theta`.
fn time_family<P: diffsmc::grad::Parametric>(
    p: &P,
    theta: &[f64],
    spec: &ResamplerSpec,
    n: usize,
    min_seconds: f64,
    mode: Option<diffsmc::grad::GradMode>,
    reps: usize,
    pb: &ProgressBar,
) -> Result<(Vec<f64>, Option<Vec<f64>>), CliError> {
    use diffsmc::SmcConfig;
    use diffsmc::grad::{ChunkSize, GradOptions, ParticleFilterNll, gradient, value};
    let smc = SmcConfig::new(n)?;
    let mut k = 0u64;
    let value_times = time_runs(reps, min_seconds, pb, || {
        k += 1;
        value(&ParticleFilterNll::new(p, &smc, spec, k), theta)?;
        Ok(())
    })?;
    let grad_times = match mode {
        Some(mode) => {
            let opts = GradOptions::default()
                .with_mode(mode)
                .with_chunk(if p.n_params() > 8 {
                    ChunkSize::Sixteen
                } else {
                    ChunkSize::Auto
                });
            Some(time_runs(reps, min_seconds, pb, || {
                k += 1;
                gradient(&ParticleFilterNll::new(p, &smc, spec, k), theta, &opts)?;
                Ok(())
            })?)
        }
        None => None,
    };
    Ok((value_times, grad_times))
}

/// `diffsmc bench grad` and `diffsmc bench filter`: median seconds of one value-and-gradient
/// (when `mode` is given) and of the value alone.
pub fn grad(
    model: BenchModel,
    spec: &ResamplerSpec,
    n: usize,
    seed: u64,
    min_seconds: f64,
    mode: Option<diffsmc::grad::GradMode>,
    reps: usize,
    pb: &ProgressBar,
) -> Result<GradReport, CliError> {
    use diffsmc_lgssm::{Lgssm, PaperParams};
    use diffsmc_lotka_volterra::{LvParams, NeuralLv, SimConfig, simulate};
    if n == 0 {
        return Err(CliError::flag("particles", "must be at least 1"));
    }
    let (name, steps, n_params, (value_times, grad_times)) = match model {
        BenchModel::Lgssm => {
            let (_, ys) = Lgssm::paper(0.5, 1.0, 1)?.simulate(129, seed);
            let params = PaperParams::new(1, ys)?;
            let t = time_family(&params, &[0.5, 1.0], spec, n, min_seconds, mode, reps, pb)?;
            ("lgssm", 129, 2, t)
        }
        BenchModel::LotkaVolterra => {
            let sim = simulate(&LvParams::paper(), &SimConfig::paper(), seed)?;
            let fam = NeuralLv::new(sim.observations.clone(), seed)?;
            let theta = fam.initial_theta();
            let steps = sim.observations.n_steps();
            let t = time_family(&fam, &theta, spec, n, min_seconds, mode, reps, pb)?;
            ("lotka-volterra", steps, theta.len(), t)
        }
    };
    let resolved = mode.map(|m| m.resolve(n_params).name());
    let value_median = median(value_times.clone());
    let grad_median = grad_times.as_ref().map(|t| median(t.clone()));
    Ok(GradReport {
        bench: if mode.is_some() { "grad" } else { "filter" },
        model: name,
        resampler: spec.to_string(),
        particles: n,
        steps,
        parameters: n_params,
        grad_mode: resolved,
        median_seconds: grad_median.unwrap_or(value_median),
        value_median_seconds: value_median,
        gradient_median_seconds: grad_median,
        gradient_to_value: grad_median.map(|g| g / value_median),
        repetitions: grad_times.as_ref().map_or(value_times.len(), Vec::len),
    })
}

/// The flags of `diffsmc bench grad` (see its `--help`).
#[derive(Debug, Clone, clap::Args)]
pub struct GradArgs {
    /// Model: `lgssm` or `lotka-volterra`.
    #[arg(long, default_value = "lgssm")]
    pub model: String,
    /// Resampler spec.
    #[arg(long, default_value = "systematic")]
    pub resampler: ResamplerSpec,
    /// Number of particles.
    #[arg(long, default_value_t = 32)]
    pub particles: usize,
    /// Gradient mode: `forward`, `reverse` or `auto`.
    #[arg(long, default_value = "auto")]
    pub grad: GradMode,
    /// Minimum number of timed repetitions (after one warm-up), e.g. 1 for long runs.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Minimum total measuring time in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Write the result as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs `diffsmc bench grad`.
pub fn grad_command(args: &GradArgs, force: bool, quiet: bool) -> Result<(), CliError> {
    let GradArgs {
        model,
        resampler,
        particles,
        grad,
        reps,
        seed,
        seconds,
        json,
    } = args.clone();
    if reps == 0 {
        return Err(CliError::flag("reps", "must be at least 1"));
    }
    let model: BenchModel = model.parse()?;
    if let Some(p) = &json {
        output::check_writable(p, force)?;
    }
    let pb = progress::spinner("bench grad", quiet);
    let v = self::grad(
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
        v.model,
        resampler,
        particles,
        v.grad_mode.unwrap_or(""),
        v.median_seconds,
        v.value_median_seconds
    );
    if let Some(p) = &json {
        output::write_json(p, &v, force)?;
    }
    Ok(())
}

/// The flags of `diffsmc bench filter` (see its `--help`).
#[derive(Debug, Clone, clap::Args)]
pub struct FilterArgs {
    /// Resampler spec.
    #[arg(long, default_value = "systematic")]
    pub resampler: ResamplerSpec,
    /// Number of particles.
    #[arg(long, default_value_t = 1024)]
    pub particles: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Minimum total measuring time in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Write the result as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs `diffsmc bench filter`.
pub fn filter_command(args: &FilterArgs, force: bool, quiet: bool) -> Result<(), CliError> {
    let FilterArgs {
        resampler,
        particles,
        seed,
        seconds,
        json,
    } = args.clone();
    if let Some(p) = &json {
        output::check_writable(p, force)?;
    }
    let pb = progress::spinner("bench filter", quiet);
    let v = self::grad(
        BenchModel::Lgssm,
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
        resampler, particles, v.median_seconds, v.repetitions
    );
    if let Some(p) = &json {
        output::write_json(p, &v, force)?;
    }
    Ok(())
}

/// The flags of `diffsmc bench resample` (see its `--help`).
#[derive(Debug, Clone, clap::Args)]
pub struct ResampleArgs {
    /// Resampler spec, e.g. `systematic`, `diffusion:T=2,K=8,sde`, `ot:eps=0.4`.
    #[arg(long, default_value = "systematic")]
    pub resampler: ResamplerSpec,
    /// Number of particles.
    #[arg(long, default_value_t = 1024)]
    pub particles: usize,
    /// State dimension.
    #[arg(long, default_value_t = 8)]
    pub dim: usize,
    /// Scalar type.
    #[arg(long, value_enum, default_value = "f64")]
    pub scalar: BenchScalar,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Minimum total measuring time in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Write the result as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs `diffsmc bench resample`.
pub fn resample_command(args: &ResampleArgs, force: bool, quiet: bool) -> Result<(), CliError> {
    let ResampleArgs {
        resampler,
        particles,
        dim,
        scalar,
        seed,
        seconds,
        json,
    } = args.clone();
    if let Some(p) = &json {
        output::check_writable(p, force)?;
    }
    let pb = progress::spinner("bench resample", quiet);
    let v = resample(&resampler, particles, dim, scalar, seed, seconds, &pb)?;
    pb.finish_and_clear();
    println!(
        "resample {} N={} d={} {}: median {:.6} s over {} runs",
        resampler, particles, dim, v.scalar, v.median_seconds, v.repetitions
    );
    if !v.all_converged {
        eprintln!("warning: the resampler reported non-convergence in some runs");
    }
    if let Some(p) = &json {
        output::write_json(p, &v, force)?;
    }
    Ok(())
}

/// The flags of `diffsmc bench train` (see its `--help`).
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Model: `lotka-volterra` (the neural Lotka–Volterra model, 226 parameters).
    #[arg(long, default_value = "lotka-volterra")]
    pub model: String,
    /// Resampler spec (the default of `experiment lotka-volterra`).
    #[arg(long, default_value = "multinomial")]
    pub resampler: ResamplerSpec,
    /// Number of particles.
    #[arg(long, default_value_t = 64)]
    pub particles: usize,
    /// Gradient mode: `forward`, `reverse` or `auto` (reverse for 226 parameters).
    #[arg(long, default_value = "reverse")]
    pub grad: GradMode,
    /// Timed training steps (after one warm-up step), at least 3.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the result as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The JSON report of `diffsmc bench train`.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// `"train"`.
    pub bench: &'static str,
    /// `"lotka-volterra"`.
    pub model: &'static str,
    /// The resampler spec.
    pub resampler: String,
    /// Particles.
    pub particles: usize,
    /// Time steps of the data.
    pub steps: usize,
    /// Parameters.
    pub parameters: usize,
    /// The resolved gradient mode.
    pub grad_mode: &'static str,
    /// The optimiser (that of `experiment lotka-volterra`).
    pub optimizer: &'static str,
    /// Median seconds of one training step (filter value and gradient at a fresh seed, and
    /// the optimiser's update).
    pub median_seconds: f64,
    /// Fastest step.
    pub min_seconds: f64,
    /// Timed steps.
    pub repetitions: usize,
}

/// `diffsmc bench train`: the training loop of `experiment lotka-volterra` (Lion, lr 0.005,
/// a fresh filter seed per step), timed step by step.
pub fn train(
    model: BenchModel,
    spec: &ResamplerSpec,
    n: usize,
    mode: GradMode,
    steps: usize,
    seed: u64,
    pb: &ProgressBar,
) -> Result<TrainReport, CliError> {
    use crate::support::optimise::{OptimSettings, OptimizerKind, minimise};
    use diffsmc::SmcConfig;
    use diffsmc::grad::{ChunkSize, GradOptions, ParticleFilterNll, gradient};
    use diffsmc::rng::derive_seed;
    use diffsmc_lotka_volterra::{LvParams, NeuralLv, SimConfig, simulate};
    if n == 0 {
        return Err(CliError::flag("particles", "must be at least 1"));
    }
    if steps < 3 {
        return Err(CliError::flag("steps", "must be at least 3"));
    }
    if model != BenchModel::LotkaVolterra {
        return Err(CliError::flag(
            "model",
            "bench train supports `lotka-volterra` only",
        ));
    }
    let sim = simulate(&LvParams::paper(), &SimConfig::paper(), seed)?;
    let family = NeuralLv::new(sim.observations.clone(), derive_seed(seed, 1))?;
    let theta0 = family.initial_theta();
    let smc = SmcConfig::new(n)?;
    let opts = GradOptions::default()
        .with_chunk(ChunkSize::Sixteen)
        .with_mode(mode);
    let settings = OptimSettings {
        kind: OptimizerKind::Lion,
        lr: 0.005,
        iterations: steps + 1,
        clip: None,
    };
    let mut k = 0u64;
    let mut stamps = Vec::with_capacity(steps + 2);
    let start = Instant::now();
    minimise(
        &settings,
        &theta0,
        |theta: &[f64]| {
            k += 1;
            gradient(
                &ParticleFilterNll::new(&family, &smc, spec, derive_seed(seed, 1000 + k)),
                theta,
                &opts,
            )
        },
        |_| {
            stamps.push(start.elapsed().as_secs_f64());
            pb.inc(1);
        },
    )?;
    // Step j runs from observation j to j + 1 (the first interval, the warm-up, is dropped).
    let times: Vec<f64> = stamps.windows(2).skip(1).map(|w| w[1] - w[0]).collect();
    if times.is_empty() {
        return Err(CliError::flag(
            "steps",
            "the optimiser stopped before a step could be timed",
        ));
    }
    Ok(TrainReport {
        bench: "train",
        model: "lotka-volterra",
        resampler: spec.to_string(),
        particles: n,
        steps: sim.observations.n_steps(),
        parameters: theta0.len(),
        grad_mode: mode.resolve(theta0.len()).name(),
        optimizer: OptimizerKind::Lion.name(),
        median_seconds: median(times.clone()),
        min_seconds: times.iter().copied().fold(f64::INFINITY, f64::min),
        repetitions: times.len(),
    })
}

/// Runs `diffsmc bench train`.
pub fn train_command(args: &TrainArgs, force: bool, quiet: bool) -> Result<(), CliError> {
    let model: BenchModel = args.model.parse()?;
    if let Some(p) = &args.json {
        output::check_writable(p, force)?;
    }
    let pb = progress::spinner("bench train", quiet);
    let v = train(
        model,
        &args.resampler,
        args.particles,
        args.grad,
        args.steps,
        args.seed,
        &pb,
    )?;
    pb.finish_and_clear();
    println!(
        "train {} {} N={} ({} params, {} mode): median {:.6} s per step over {} steps",
        v.model,
        v.resampler,
        v.particles,
        v.parameters,
        v.grad_mode,
        v.median_seconds,
        v.repetitions
    );
    if let Some(p) = &args.json {
        output::write_json(p, &v, force)?;
    }
    Ok(())
}

/// The flags of `diffsmc bench timing` (see its `--help`).
#[derive(Debug, Clone, clap::Args)]
pub struct TimingArgs {
    /// Particle counts (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "256,512,1024,2048")]
    pub particles: Vec<usize>,
    /// State dimension.
    #[arg(long, default_value_t = 8)]
    pub dim: usize,
    /// Diffusion steps K (comma-separated; one series each; empty for none).
    #[arg(long, value_delimiter = ',', default_value = "4,8,16,32")]
    pub steps: Vec<usize>,
    /// OT regularisations ε (comma-separated; one series each; empty for none).
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.2,0.4,0.8")]
    pub eps: Vec<f64>,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Minimum measuring time per point in seconds (at least 3 timed runs).
    #[arg(long, default_value_t = 0.5)]
    pub seconds: f64,
    /// Write the result as JSON (`diffsmc plot` draws it).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// One point of `diffsmc bench timing`.
#[derive(Debug, Clone, Serialize)]
pub struct TimingPoint {
    /// Particles.
    pub particles: usize,
    /// Median seconds of one resampling.
    pub median_seconds: f64,
    /// Fastest repetition.
    pub min_seconds: f64,
    /// Timed repetitions.
    pub repetitions: usize,
    /// Whether the resampler converged in every repetition.
    pub all_converged: bool,
}

/// One series (one resampler) of `diffsmc bench timing`.
#[derive(Debug, Clone, Serialize)]
pub struct TimingSeries {
    /// The resampler spec.
    pub resampler: String,
    /// `"diffusion"` or `"ot"`.
    pub family: &'static str,
    /// `K` (diffusion) or `ε` (OT).
    pub parameter: f64,
    /// One point per particle count.
    pub points: Vec<TimingPoint>,
}

/// The JSON report of `diffsmc bench timing`.
#[derive(Debug, Clone, Serialize)]
pub struct TimingReport {
    /// `"timing"`.
    pub bench: &'static str,
    /// State dimension.
    pub dim: usize,
    /// Scalar (`"f64"`).
    pub scalar: &'static str,
    /// Rayon threads the runs could use.
    pub threads: usize,
    /// The series.
    pub series: Vec<TimingSeries>,
}

/// `diffsmc bench timing`: resampling time against N for diffusion resampling (one series per
/// K) and entropic OT (one per ε), the paper's Figure 1.
pub fn timing(args: &TimingArgs, pb: &ProgressBar) -> Result<TimingReport, CliError> {
    if args.particles.is_empty() || args.particles.contains(&0) {
        return Err(CliError::flag("particles", "give positive particle counts"));
    }
    if args.dim == 0 {
        return Err(CliError::flag("dim", "must be at least 1"));
    }
    if args.steps.is_empty() && args.eps.is_empty() {
        return Err(CliError::flag(
            "steps",
            "give diffusion steps or OT ε (or both)",
        ));
    }
    let mut specs: Vec<(ResamplerSpec, &'static str, f64)> = Vec::new();
    for &k in &args.steps {
        let s: ResamplerSpec = format!("diffusion:K={k}")
            .parse()
            .map_err(|e| CliError::flag("steps", format!("K = {k}: {e}")))?;
        specs.push((s, "diffusion", k as f64));
    }
    for &e in &args.eps {
        let s: ResamplerSpec = format!("ot:eps={e}")
            .parse()
            .map_err(|err| CliError::flag("eps", format!("ε = {e}: {err}")))?;
        specs.push((s, "ot", e));
    }
    let mut series = Vec::with_capacity(specs.len());
    for (spec, family, parameter) in specs {
        let mut points = Vec::with_capacity(args.particles.len());
        for &n in &args.particles {
            let (times, conv) = bench_resample_s::<f64>(
                &spec,
                n,
                args.dim,
                args.seed,
                args.seconds,
                pb,
                |_, _| {},
            )?;
            points.push(TimingPoint {
                particles: n,
                median_seconds: median(times.clone()),
                min_seconds: times.iter().copied().fold(f64::INFINITY, f64::min),
                repetitions: times.len(),
                all_converged: conv,
            });
        }
        series.push(TimingSeries {
            resampler: spec.to_string(),
            family,
            parameter,
            points,
        });
    }
    Ok(TimingReport {
        bench: "timing",
        dim: args.dim,
        scalar: "f64",
        threads: diffsmc::par::threads(),
        series,
    })
}

/// Runs `diffsmc bench timing`.
pub fn timing_command(args: &TimingArgs, force: bool, quiet: bool) -> Result<(), CliError> {
    if let Some(p) = &args.json {
        output::check_writable(p, force)?;
    }
    let pb = progress::spinner("bench timing", quiet);
    let v = timing(args, &pb)?;
    pb.finish_and_clear();
    for s in &v.series {
        for p in &s.points {
            println!(
                "timing {} N={} d={}: median {:.6} s over {} runs{}",
                s.resampler,
                p.particles,
                v.dim,
                p.median_seconds,
                p.repetitions,
                if p.all_converged {
                    ""
                } else {
                    " (not converged)"
                }
            );
        }
    }
    if let Some(p) = &args.json {
        output::write_json(p, &v, force)?;
    }
    Ok(())
}

/// The flags of `diffsmc bench exp` (see its `--help`).
#[derive(Debug, Clone, clap::Args)]
pub struct ExpArgs {
    /// Values per pass (a buffer that stays in L1/L2).
    #[arg(long, default_value_t = 4096)]
    pub len: usize,
    /// Minimum total measuring time in seconds (per variant).
    #[arg(long, default_value_t = 1.0)]
    pub seconds: f64,
    /// Write the result as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The JSON report of `diffsmc bench exp`.
#[derive(Debug, Clone, Serialize)]
pub struct ExpReport {
    /// `"exp"`.
    pub bench: &'static str,
    /// Values per pass.
    pub len: usize,
    /// Median seconds of one pass of the engine's vectorised kernel
    /// ([`diffsmc::exp_shifted_sums`], one thread).
    pub median_seconds: f64,
    /// The kernel's exponentials per second on one thread.
    pub kernel_exp_per_second: f64,
    /// Median seconds of one pass of `f64::exp` (the C library's scalar exp) and a sum.
    pub libm_median_seconds: f64,
    /// `f64::exp` evaluations per second on one thread.
    pub libm_exp_per_second: f64,
}

/// `diffsmc bench exp`: the machine's exp throughput on one thread, the engine's vectorised
/// kernel and the C library's scalar `exp` (the yardstick for the hot loops' achieved
/// evaluations per second).
pub fn exp_throughput(
    len: usize,
    min_seconds: f64,
    pb: &ProgressBar,
) -> Result<ExpReport, CliError> {
    if len == 0 {
        return Err(CliError::flag("len", "must be at least 1"));
    }
    let src: Vec<f64> = (0..len)
        .map(|i| -(((i * 7919) % 1000) as f64) * 0.02)
        .collect();
    let mut buf = src.clone();
    let mut sink = 0.0;
    let kernel = time_runs(5, min_seconds, pb, || {
        buf.copy_from_slice(&src);
        sink += diffsmc::exp_shifted_sums(&mut buf, 0.0).0;
        Ok(())
    })?;
    let libm = time_runs(5, min_seconds, pb, || {
        sink += std::hint::black_box(&src)
            .iter()
            .map(|x| x.exp())
            .sum::<f64>();
        Ok(())
    })?;
    std::hint::black_box(sink);
    let (k, l) = (median(kernel), median(libm));
    Ok(ExpReport {
        bench: "exp",
        len,
        median_seconds: k,
        kernel_exp_per_second: len as f64 / k,
        libm_median_seconds: l,
        libm_exp_per_second: len as f64 / l,
    })
}

/// Runs `diffsmc bench exp`.
pub fn exp_command(args: &ExpArgs, force: bool, quiet: bool) -> Result<(), CliError> {
    if let Some(p) = &args.json {
        output::check_writable(p, force)?;
    }
    let pb = progress::spinner("bench exp", quiet);
    let v = exp_throughput(args.len, args.seconds, &pb)?;
    pb.finish_and_clear();
    println!(
        "exp len={}: kernel median {:.3e} s ({:.0} M exp/s), libm exp median {:.3e} s ({:.0} M exp/s), one thread",
        v.len,
        v.median_seconds,
        v.kernel_exp_per_second / 1e6,
        v.libm_median_seconds,
        v.libm_exp_per_second / 1e6
    );
    if let Some(p) = &args.json {
        output::write_json(p, &v, force)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet() -> ProgressBar {
        ProgressBar::hidden()
    }

    #[test]
    fn exp_bench_reports_positive_throughputs() {
        let v = exp_throughput(64, 0.0, &quiet()).unwrap();
        assert!(v.median_seconds > 0.0 && v.kernel_exp_per_second.is_finite());
        assert!(v.libm_exp_per_second > 0.0);
        assert!(exp_throughput(0, 0.0, &quiet()).is_err());
    }

    #[test]
    fn timing_bench_has_one_series_per_resampler_and_plots() {
        let args = TimingArgs {
            particles: vec![16, 32],
            dim: 2,
            steps: vec![4],
            eps: vec![0.8],
            seed: 1,
            seconds: 0.0,
            json: None,
        };
        let v = timing(&args, &quiet()).unwrap();
        assert_eq!(v.series.len(), 2);
        assert_eq!(
            (v.series[0].family, v.series[1].family),
            ("diffusion", "ot")
        );
        for s in &v.series {
            assert_eq!(s.points.len(), 2);
            assert!(s.points.iter().all(|p| p.median_seconds > 0.0));
        }
        let dir = std::env::temp_dir().join(format!("diffsmc-timing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("timing.json");
        output::write_json(&json, &v, true).unwrap();
        let svg = dir.join("timing.svg");
        crate::commands::plot::plot(
            &crate::commands::plot::PlotArgs {
                files: vec![json],
                out: svg.clone(),
            },
            true,
        )
        .unwrap();
        assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
        let bad = TimingArgs {
            particles: vec![0],
            ..args
        };
        assert!(timing(&bad, &quiet()).is_err());
    }

    #[test]
    fn train_bench_rejects_bad_flags() {
        let spec: ResamplerSpec = "multinomial".parse().unwrap();
        let pb = quiet();
        assert!(train(BenchModel::Lgssm, &spec, 64, GradMode::Reverse, 3, 0, &pb).is_err());
        assert!(
            train(
                BenchModel::LotkaVolterra,
                &spec,
                0,
                GradMode::Reverse,
                3,
                0,
                &pb
            )
            .is_err()
        );
        assert!(
            train(
                BenchModel::LotkaVolterra,
                &spec,
                8,
                GradMode::Reverse,
                2,
                0,
                &pb
            )
            .is_err()
        );
        // A few cheap steps (N = 8): one interval per timed step, the warm-up dropped.
        let v = train(
            BenchModel::LotkaVolterra,
            &spec,
            8,
            GradMode::Reverse,
            3,
            0,
            &pb,
        )
        .unwrap();
        assert_eq!(
            (v.repetitions, v.parameters, v.grad_mode),
            (3, 226, "reverse")
        );
        assert!(v.median_seconds > 0.0 && v.min_seconds <= v.median_seconds);
    }
}
