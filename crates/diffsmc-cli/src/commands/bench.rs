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
