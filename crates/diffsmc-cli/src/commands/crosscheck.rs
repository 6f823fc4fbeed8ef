//! `diffsmc crosscheck`: export resampling problem instances, run diffsmc's resamplers on them
//! (diffusion with externally supplied normals), and compare outputs and metrics with another
//! implementation's (the JAX reference, run outside the project). See `docs/crosscheck.md`
//! for the JSON formats and the procedure.
//!
//! - `export`: the paper's Gaussian-mixture instances (those of `diffsmc experiment gm`:
//!   instance `k` of seed `s` is run `k` of `experiment gm --seed s`), with the standard
//!   normals diffusion resampling with `K` steps draws.
//! - `run`: one resampler on one instance; diffusion uses the instance's normals.
//! - `compare`: the largest absolute and relative difference between two outputs.
//! - `metrics`: sliced W1 to exact posterior draws and squared error of the mean, per instance
//!   and summarised, for a set of outputs (and, with `--against`, a second set, paired).

use std::path::{Path, PathBuf};

use diffsmc::resample::diffusion::DiffusionNoise;
use diffsmc::resample::{DiffusionConfig, DiffusionResampler, Dynamics};
use diffsmc::rng::{Purpose, StreamKey, derive_seed};
use diffsmc::{Particles, ResamplerSpec};
use diffsmc_gaussian_mixture::{
    GmProblem, PAPER_DIRECTIONS, SlicedWasserstein, mean_sq_error, weights_from_log,
};
use serde::{Deserialize, Serialize};

use crate::support::error::CliError;
use crate::support::output::{self, Summary, summary};

/// The `format` tag of an instance file.
pub const INSTANCE_FORMAT: &str = "diffsmc-crosscheck-instance/1";
/// The `format` tag of an output file.
pub const OUTPUT_FORMAT: &str = "diffsmc-crosscheck-output/1";

/// Where an instance comes from (enough to rebuild its exact posterior).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProblemInfo {
    /// `"gm-paper"`: `GmProblem::paper(dim, components, seed)`.
    pub kind: String,
    /// State dimension.
    pub dim: usize,
    /// Mixture components.
    pub components: usize,
    /// The `--seed` of the export.
    pub base_seed: u64,
    /// The instance index `k`.
    pub index: usize,
    /// The instance's own seed, `derive_seed(base_seed, k)`.
    pub seed: u64,
}

/// The standard normals of one diffusion resampling (whitened coordinates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseJson {
    /// Steps `K` the increments are for.
    pub steps: usize,
    /// `U(0)`, `n × d`.
    pub initial: Vec<Vec<f64>>,
    /// Step increments, `K × n × d`.
    pub increments: Vec<Vec<Vec<f64>>>,
}

/// An instance file: weighted particles and the noise of a diffusion resampling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// [`INSTANCE_FORMAT`].
    pub format: String,
    /// The problem.
    pub problem: ProblemInfo,
    /// Particles `n`.
    pub n: usize,
    /// Dimension `d`.
    pub d: usize,
    /// Particles, `n × d`.
    pub particles: Vec<Vec<f64>>,
    /// Normalised log-weights, `n`.
    pub log_weights: Vec<f64>,
    /// The exact posterior mean, `d`.
    pub posterior_mean: Vec<f64>,
    /// The normals diffsmc's diffusion resampler draws for this instance (key
    /// `StreamKey::new(seed, 1, Resample)`, as `experiment gm`), if exported.
    pub noise: Option<NoiseJson>,
}

/// An output file: resampled particles and log-weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    /// [`OUTPUT_FORMAT`].
    pub format: String,
    /// Who computed it (`"diffsmc"`, or the other implementation's name).
    pub implementation: String,
    /// The resampler (a diffsmc spec, or the other implementation's description).
    pub resampler: String,
    /// `"supplied"` (the instance's normals), `"own"` (drawn by the implementation) or
    /// `"none"` (a deterministic resampler).
    pub noise: String,
    /// Particles `n`.
    pub n: usize,
    /// Dimension `d`.
    pub d: usize,
    /// Particles, `n × d`.
    pub particles: Vec<Vec<f64>>,
    /// Log-weights, `n`.
    pub log_weights: Vec<f64>,
    /// Whether an iterative resampler converged (`null` if not reported).
    pub converged: Option<bool>,
    /// Iterations of an iterative resampler (`null` if not reported).
    pub iterations: Option<usize>,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> CliError {
    CliError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn data_err(path: &Path, message: impl Into<String>) -> CliError {
    CliError::Data {
        file: path.display().to_string(),
        line: 0,
        message: message.into(),
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    serde_json::from_str(&text).map_err(|e| data_err(path, format!("not valid JSON here: {e}")))
}

fn rows(flat: &[f64], d: usize) -> Vec<Vec<f64>> {
    flat.chunks_exact(d.max(1)).map(<[f64]>::to_vec).collect()
}

/// Flattens `n` rows of `d` entries, checking the shape and finiteness.
fn flatten(
    path: &Path,
    what: &str,
    v: &[Vec<f64>],
    n: usize,
    d: usize,
) -> Result<Vec<f64>, CliError> {
    if v.len() != n || v.iter().any(|r| r.len() != d) {
        return Err(data_err(
            path,
            format!("`{what}` must be {n} rows of {d} numbers"),
        ));
    }
    let flat: Vec<f64> = v.iter().flatten().copied().collect();
    if flat.iter().any(|x| !x.is_finite()) {
        return Err(data_err(path, format!("`{what}` has a non-finite entry")));
    }
    Ok(flat)
}

impl Instance {
    /// Instance `index` of the paper's GM problem for `base_seed` with `n` particles, and the
    /// normals of diffusion resampling with `steps` steps (`0`: none).
    pub fn gm(
        dim: usize,
        components: usize,
        n: usize,
        base_seed: u64,
        index: usize,
        steps: usize,
    ) -> Result<Instance, CliError> {
        let seed = derive_seed(base_seed, index as u64);
        let problem = GmProblem::paper(dim, components, seed)?;
        let is = problem.importance_sample(n, StreamKey::new(seed, 0, Purpose::Move))?;
        let noise = if steps == 0 {
            None
        } else {
            // The SDE draws U(0) then the increments from each particle's stream; the ODE
            // draws the same U(0) (the first d normals of the stream) and nothing else.
            let cfg = DiffusionConfig::new()
                .with_steps(steps)?
                .with_dynamics(Dynamics::Sde)?;
            let nz = DiffusionNoise::draw(&cfg, n, dim, resample_key(seed));
            let inc = nz.increments();
            Some(NoiseJson {
                steps,
                initial: rows(nz.initial(), dim),
                increments: (0..steps)
                    .map(|k| rows(&inc[k * n * dim..(k + 1) * n * dim], dim))
                    .collect(),
            })
        };
        Ok(Instance {
            format: INSTANCE_FORMAT.to_string(),
            problem: ProblemInfo {
                kind: "gm-paper".to_string(),
                dim,
                components,
                base_seed,
                index,
                seed,
            },
            n,
            d: dim,
            particles: rows(&is.particles, dim),
            log_weights: is.log_weights.clone(),
            posterior_mean: problem.posterior_mean().as_slice().to_vec(),
            noise,
        })
    }

    /// Reads and validates an instance file.
    pub fn read(path: &Path) -> Result<Instance, CliError> {
        let inst: Instance = read_json(path)?;
        if inst.format != INSTANCE_FORMAT {
            return Err(data_err(
                path,
                format!("format `{}`, expected `{INSTANCE_FORMAT}`", inst.format),
            ));
        }
        if inst.n == 0 || inst.d == 0 {
            return Err(data_err(path, "`n` and `d` must be at least 1"));
        }
        flatten(path, "particles", &inst.particles, inst.n, inst.d)?;
        if inst.log_weights.len() != inst.n || inst.log_weights.iter().any(|v| v.is_nan()) {
            return Err(data_err(
                path,
                format!("`log_weights` must be {} numbers", inst.n),
            ));
        }
        if inst.posterior_mean.len() != inst.d {
            return Err(data_err(
                path,
                format!("`posterior_mean` must be {} numbers", inst.d),
            ));
        }
        Ok(inst)
    }

    fn noise(&self, path: &Path) -> Result<Option<DiffusionNoise>, CliError> {
        let Some(nz) = &self.noise else {
            return Ok(None);
        };
        let (n, d) = (self.n, self.d);
        let initial = flatten(path, "noise.initial", &nz.initial, n, d)?;
        if nz.increments.len() != nz.steps {
            return Err(data_err(
                path,
                format!("`noise.increments` must have {} steps", nz.steps),
            ));
        }
        let mut inc = Vec::with_capacity(nz.steps * n * d);
        for step in &nz.increments {
            inc.extend(flatten(path, "noise.increments", step, n, d)?);
        }
        Ok(Some(DiffusionNoise::new(n, d, nz.steps, initial, inc)?))
    }
}

/// The key diffsmc's resamplers use on instance `seed` (that of `experiment gm`).
fn resample_key(seed: u64) -> StreamKey {
    StreamKey::new(seed, 1, Purpose::Resample)
}

/// Runs `spec` on `inst`: diffusion on the instance's normals unless `own_noise` (then, like
/// every other resampler, on diffsmc's own draws for the instance).
pub fn run_on(
    inst: &Instance,
    path: &Path,
    spec: &ResamplerSpec,
    own_noise: bool,
) -> Result<Output, CliError> {
    let (n, d) = (inst.n, inst.d);
    let x = Particles::from_vec(n, d, flatten(path, "particles", &inst.particles, n, d)?)?;
    let mut out = Particles::<f64>::zeros(n, d);
    let mut out_lw = vec![0.0; n];
    let key = resample_key(inst.problem.seed);
    let (info, noise) = match spec {
        ResamplerSpec::Diffusion(cfg) if !own_noise => {
            let nz = inst.noise(path)?.ok_or_else(|| {
                data_err(
                    path,
                    "no `noise` in the instance: export with --steps, or pass --own-noise",
                )
            })?;
            if nz.steps() != cfg.steps() {
                return Err(CliError::flag(
                    "resampler",
                    format!(
                        "K = {} but the instance's noise is for K = {}",
                        cfg.steps(),
                        nz.steps()
                    ),
                ));
            }
            let nz = if cfg.dynamics() == Dynamics::Ode {
                DiffusionNoise::new(n, d, nz.steps(), nz.initial().to_vec(), vec![])?
            } else {
                nz
            };
            let r = DiffusionResampler::new(cfg.clone());
            let info = r.resample_with_noise(&x, &inst.log_weights, &nz, &mut out, &mut out_lw)?;
            (info, "supplied")
        }
        ResamplerSpec::Ot(_) => {
            let r = spec.build::<f64>()?;
            (
                r.resample(&x, &inst.log_weights, key, &mut out, &mut out_lw)?,
                "none",
            )
        }
        _ => {
            let r = spec.build::<f64>()?;
            (
                r.resample(&x, &inst.log_weights, key, &mut out, &mut out_lw)?,
                "own",
            )
        }
    };
    let iterative = matches!(spec, ResamplerSpec::Ot(_));
    Ok(Output {
        format: OUTPUT_FORMAT.to_string(),
        implementation: "diffsmc".to_string(),
        resampler: spec.to_string(),
        noise: noise.to_string(),
        n,
        d,
        particles: rows(out.as_slice(), d),
        log_weights: out_lw,
        converged: iterative.then_some(info.converged),
        iterations: iterative.then_some(info.iterations),
    })
}

/// Reads and validates an output file.
pub fn read_output(path: &Path) -> Result<Output, CliError> {
    let o: Output = read_json(path)?;
    if o.format != OUTPUT_FORMAT {
        return Err(data_err(
            path,
            format!("format `{}`, expected `{OUTPUT_FORMAT}`", o.format),
        ));
    }
    flatten(path, "particles", &o.particles, o.n, o.d)?;
    if o.log_weights.len() != o.n || o.log_weights.iter().any(|v| v.is_nan()) {
        return Err(data_err(
            path,
            format!("`log_weights` must be {} numbers", o.n),
        ));
    }
    Ok(o)
}

/// Differences between two outputs, entry by entry.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Diff {
    /// `max |a − b|` over the particle coordinates.
    pub max_abs: f64,
    /// `max |a − b| / max(|a|, |b|)` over the particle coordinates (0 where both are 0).
    pub max_rel: f64,
    /// `max |a − b|` over the log-weights.
    pub max_abs_log_weight: f64,
    /// `max |a − b|` over the particle coordinates divided by `max |b|`.
    pub normwise_rel: f64,
}

/// [`Diff`] of `a` against `b` (same `n`, `d`).
pub fn diff(a: &Output, b: &Output) -> Result<Diff, CliError> {
    if (a.n, a.d) != (b.n, b.d) {
        return Err(CliError::flag(
            "outputs",
            format!("shapes differ: {}×{} against {}×{}", a.n, a.d, b.n, b.d),
        ));
    }
    let (mut max_abs, mut max_rel, mut scale) = (0.0_f64, 0.0_f64, 0.0_f64);
    for (x, y) in a
        .particles
        .iter()
        .flatten()
        .zip(b.particles.iter().flatten())
    {
        let e = (x - y).abs();
        max_abs = max_abs.max(e);
        let m = x.abs().max(y.abs());
        if m > 0.0 {
            max_rel = max_rel.max(e / m);
        }
        scale = scale.max(y.abs());
    }
    let lw = a
        .log_weights
        .iter()
        .zip(&b.log_weights)
        .map(|(x, y)| if x == y { 0.0 } else { (x - y).abs() })
        .fold(0.0_f64, f64::max);
    Ok(Diff {
        max_abs,
        max_rel,
        max_abs_log_weight: lw,
        normwise_rel: if scale > 0.0 {
            max_abs / scale
        } else {
            max_abs
        },
    })
}

/// Metrics of one output on its instance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Metrics {
    /// Sliced W1 to `n` exact posterior draws (the draws and the directions of
    /// `experiment gm`).
    pub swd: f64,
    /// Squared error of the weighted mean against the exact posterior mean.
    pub mean_sq_error: f64,
}

/// [`Metrics`] of `out` on `inst`, with `directions` slicing directions.
pub fn metrics(inst: &Instance, out: &Output, directions: usize) -> Result<Metrics, CliError> {
    let p = &inst.problem;
    if p.kind != "gm-paper" {
        return Err(CliError::flag(
            "instances",
            format!("unknown problem kind `{}`", p.kind),
        ));
    }
    if (out.n, out.d) != (inst.n, inst.d) {
        return Err(CliError::flag(
            "outputs",
            "output shape differs from the instance's",
        ));
    }
    let problem = GmProblem::paper(p.dim, p.components, p.seed)?;
    let (n, d) = (inst.n, inst.d);
    let x: Vec<f64> = out.particles.iter().flatten().copied().collect();
    let w = weights_from_log(&out.log_weights)?;
    let exact = problem.posterior_draws(n, StreamKey::new(p.seed, 2, Purpose::Simulate));
    let mut sw =
        SlicedWasserstein::new(d, directions, StreamKey::new(p.seed, 3, Purpose::Other(0)))?;
    Ok(Metrics {
        swd: sw.distance(&x, Some(&w), &exact, None)?,
        mean_sq_error: mean_sq_error(&x, Some(&w), d, &inst.posterior_mean)?,
    })
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

/// `diffsmc crosscheck …`.
#[derive(Debug, clap::Subcommand)]
pub enum CrosscheckCommand {
    /// Write instance files DIR/instance-K.json of the paper's Gaussian-mixture problem.
    ///
    /// Example: diffsmc crosscheck export --out xc --runs 1 --particles 1000 --steps 32
    Export(ExportArgs),
    /// Run one diffsmc resampler on an instance (diffusion on the instance's normals).
    ///
    /// Example: diffsmc crosscheck run --instance xc/instance-0.json --resampler diffusion:a=-0.5,T=3,K=32,cov=diag --out xc/rust-em-ode-0.json
    Run(RunArgs),
    /// Largest absolute and relative difference between two output files.
    ///
    /// Example: diffsmc crosscheck compare xc/rust-em-ode-0.json xc/jax-em-ode-0.json
    Compare(CompareArgs),
    /// Sliced W1 and squared error of the mean of a set of outputs, per instance and summarised.
    ///
    /// Example: diffsmc crosscheck metrics --instances xc --outputs xc --name rust-ot-0.3 --against jax-ot-0.3
    Metrics(MetricsArgs),
}

/// Flags of `crosscheck export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Instances (0..runs).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Particles.
    #[arg(long, default_value_t = 1000)]
    pub particles: usize,
    /// State dimension.
    #[arg(long, default_value_t = 8)]
    pub dim: usize,
    /// Mixture components.
    #[arg(long, default_value_t = 5)]
    pub components: usize,
    /// Base seed (instance k is run k of `experiment gm --seed SEED`).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Export the normals of diffusion resampling with this many steps (0: none).
    #[arg(long, default_value_t = 0)]
    pub steps: usize,
}

/// Flags of `crosscheck run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The instance file.
    #[arg(long)]
    pub instance: PathBuf,
    /// Resampler spec.
    #[arg(long)]
    pub resampler: ResamplerSpec,
    /// Diffusion: draw diffsmc's own normals instead of using the instance's.
    #[arg(long)]
    pub own_noise: bool,
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
}

/// Flags of `crosscheck compare`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// First output file.
    pub a: PathBuf,
    /// Second output file (the reference of the relative errors).
    pub b: PathBuf,
    /// Also write the differences as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Flags of `crosscheck metrics`.
#[derive(Debug, Clone, clap::Args)]
pub struct MetricsArgs {
    /// Directory of the instance files (every instance-K.json in it).
    #[arg(long)]
    pub instances: PathBuf,
    /// Directory of the output files, named NAME-K.json.
    #[arg(long)]
    pub outputs: PathBuf,
    /// The outputs' name prefix.
    #[arg(long)]
    pub name: String,
    /// A second prefix to compare with, instance by instance.
    #[arg(long)]
    pub against: Option<String>,
    /// Random directions of the sliced Wasserstein distance.
    #[arg(long, default_value_t = PAPER_DIRECTIONS)]
    pub directions: usize,
    /// Write the per-instance metrics and summaries as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Metrics of one instance.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceMetrics {
    /// Instance index.
    pub index: usize,
    /// Metrics of `--name`.
    pub name: Metrics,
    /// Metrics of `--against`.
    pub against: Option<Metrics>,
}

/// Mean ± sd of a metric and, with `--against`, of the other set and of the paired
/// difference.
#[derive(Debug, Clone, Serialize)]
pub struct MetricSummary {
    /// `--name`.
    pub name: Summary,
    /// `--against`.
    pub against: Option<Summary>,
    /// `name − against`, per instance.
    pub difference: Option<Summary>,
}

/// The JSON report of `crosscheck metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsReport {
    /// `--name`.
    pub name: String,
    /// `--against`.
    pub against: Option<String>,
    /// Per instance.
    pub instances: Vec<InstanceMetrics>,
    /// Sliced W1.
    pub swd: MetricSummary,
    /// Squared error of the mean.
    pub mean_sq_error: MetricSummary,
}

/// The instance files `instance-K.json` of `dir`, sorted by `K`.
fn instance_files(dir: &Path) -> Result<Vec<(usize, PathBuf)>, CliError> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let p = e.map_err(|e| io_err(dir, e))?.path();
        let name = p.file_name().and_then(|s| s.to_str()).unwrap_or("");
        if let Some(k) = name
            .strip_prefix("instance-")
            .and_then(|r| r.strip_suffix(".json"))
            .and_then(|k| k.parse::<usize>().ok())
        {
            v.push((k, p));
        }
    }
    v.sort();
    if v.is_empty() {
        return Err(CliError::flag(
            "instances",
            format!("no instance-K.json in {}", dir.display()),
        ));
    }
    Ok(v)
}

/// Computes the `crosscheck metrics` report.
pub fn metrics_report(a: &MetricsArgs) -> Result<MetricsReport, CliError> {
    let mut instances = Vec::new();
    for (k, path) in instance_files(&a.instances)? {
        let inst = Instance::read(&path)?;
        let one = |name: &str| -> Result<Metrics, CliError> {
            let p = a.outputs.join(format!("{name}-{k}.json"));
            metrics(&inst, &read_output(&p)?, a.directions)
        };
        instances.push(InstanceMetrics {
            index: k,
            name: one(&a.name)?,
            against: a.against.as_deref().map(one).transpose()?,
        });
    }
    let pick = |f: fn(&Metrics) -> f64| -> MetricSummary {
        let x: Vec<f64> = instances.iter().map(|m| f(&m.name)).collect();
        let y: Option<Vec<f64>> = instances
            .iter()
            .map(|m| m.against.as_ref().map(f))
            .collect();
        MetricSummary {
            name: summary(&x),
            against: y.as_ref().map(|y| summary(y)),
            difference: y
                .map(|y| summary(&x.iter().zip(&y).map(|(p, q)| p - q).collect::<Vec<_>>())),
        }
    };
    Ok(MetricsReport {
        name: a.name.clone(),
        against: a.against.clone(),
        swd: pick(|m| m.swd),
        mean_sq_error: pick(|m| m.mean_sq_error),
        instances,
    })
}

/// Runs `diffsmc crosscheck …`.
pub fn execute(cmd: &CrosscheckCommand, force: bool) -> Result<(), CliError> {
    match cmd {
        CrosscheckCommand::Export(a) => {
            if a.particles == 0 || a.runs == 0 {
                return Err(CliError::flag(
                    "particles",
                    "--particles and --runs must be at least 1",
                ));
            }
            std::fs::create_dir_all(&a.out).map_err(|e| io_err(&a.out, e))?;
            for k in 0..a.runs {
                let p = a.out.join(format!("instance-{k}.json"));
                output::check_writable(&p, force)?;
                let inst = Instance::gm(a.dim, a.components, a.particles, a.seed, k, a.steps)?;
                write_compact(&p, &inst)?;
                println!("wrote {}", p.display());
            }
            Ok(())
        }
        CrosscheckCommand::Run(a) => {
            output::check_writable(&a.out, force)?;
            let inst = Instance::read(&a.instance)?;
            let o = run_on(&inst, &a.instance, &a.resampler, a.own_noise)?;
            write_compact(&a.out, &o)?;
            if o.converged == Some(false) {
                eprintln!(
                    "warning: {} did not converge ({} iterations)",
                    o.resampler,
                    o.iterations.unwrap_or(0)
                );
            }
            println!("wrote {}", a.out.display());
            Ok(())
        }
        CrosscheckCommand::Compare(a) => {
            let d = diff(&read_output(&a.a)?, &read_output(&a.b)?)?;
            println!(
                "max abs {:.3e}  max rel {:.3e}  normwise rel {:.3e}  max abs log-weight {:.3e}",
                d.max_abs, d.max_rel, d.normwise_rel, d.max_abs_log_weight
            );
            if let Some(p) = &a.json {
                output::write_json(p, &d, force)?;
            }
            Ok(())
        }
        CrosscheckCommand::Metrics(a) => {
            if let Some(p) = &a.json {
                output::check_writable(p, force)?;
            }
            let r = metrics_report(a)?;
            let line = |label: &str, s: &MetricSummary| {
                let mut t = format!(
                    "  {label:<14} {}: {:.5} ± {:.5}",
                    r.name, s.name.mean, s.name.std
                );
                if let (Some(o), Some(df), Some(n)) = (&s.against, &s.difference, &r.against) {
                    let se = df.std / (df.n as f64).sqrt();
                    t += &format!(
                        "   {n}: {:.5} ± {:.5}   paired difference {:.5} ± {:.5} (se)",
                        o.mean, o.std, df.mean, se
                    );
                }
                println!("{t}");
            };
            println!("crosscheck metrics over {} instances", r.instances.len());
            line("swd", &r.swd);
            line("mean_sq_error", &r.mean_sq_error);
            if let Some(p) = &a.json {
                output::write_json(p, &r, force)?;
            }
            Ok(())
        }
    }
}

/// Compact JSON (instance and output files hold large arrays).
fn write_compact<T: Serialize>(path: &Path, v: &T) -> Result<(), CliError> {
    let text = serde_json::to_string(v).map_err(|e| io_err(path, e))?;
    std::fs::write(path, text + "\n").map_err(|e| io_err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(particles: Vec<Vec<f64>>, lw: Vec<f64>) -> Output {
        Output {
            format: OUTPUT_FORMAT.to_string(),
            implementation: "test".to_string(),
            resampler: "none".to_string(),
            noise: "none".to_string(),
            n: particles.len(),
            d: particles[0].len(),
            particles,
            log_weights: lw,
            converged: None,
            iterations: None,
        }
    }

    /// Hand-made: entries (1, 2; 4, 0) against (1, 2.5; 3, 0): the largest absolute
    /// difference is 1 (4 vs 3), the largest relative 0.25 (1/4, larger than 0.5/2.5 = 0.2),
    /// normwise 1/3 (max |b| = 3); log-weights differ by 0.5 at most.
    #[test]
    fn compare_reports_hand_made_errors() {
        let a = out(vec![vec![1.0, 2.0], vec![4.0, 0.0]], vec![-0.5, -1.0]);
        let b = out(vec![vec![1.0, 2.5], vec![3.0, 0.0]], vec![-1.0, -1.0]);
        let d = diff(&a, &b).unwrap();
        assert_eq!(d.max_abs, 1.0);
        assert_eq!(d.max_rel, 0.25);
        assert_eq!(d.normwise_rel, 1.0 / 3.0);
        assert_eq!(d.max_abs_log_weight, 0.5);
        assert_eq!(diff(&a, &a).unwrap().max_abs, 0.0);
        let c = out(vec![vec![1.0]], vec![0.0]);
        assert!(diff(&a, &c).is_err());
    }

    /// Export → file → read → run → file → read round trip: the instance survives JSON
    /// exactly, diffusion on the exported normals equals diffsmc's own draws bit for bit (SDE
    /// and ODE), and the metrics of a run are finite and reproducible.
    #[test]
    fn export_run_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let inst = Instance::gm(3, 2, 40, 5, 1, 4).unwrap();
        let ip = dir.path().join("instance-1.json");
        write_compact(&ip, &inst).unwrap();
        let back = Instance::read(&ip).unwrap();
        // Bit-exact (serde_json's `float_roundtrip`); `assert!` keeps the huge Debug out.
        assert!(back == inst, "the instance changed through JSON");
        assert_eq!(back.problem.seed, derive_seed(5, 1));
        for spec in [
            "diffusion:a=-0.5,T=2,K=4,cov=diag,sde",
            "diffusion:a=-0.5,T=2,K=4,cov=diag,integrator=jk",
        ] {
            let spec: ResamplerSpec = spec.parse().unwrap();
            let supplied = run_on(&back, &ip, &spec, false).unwrap();
            let own = run_on(&back, &ip, &spec, true).unwrap();
            assert_eq!(supplied.noise, "supplied");
            assert!(supplied.particles == own.particles, "{spec}");
            let op = dir.path().join("rust-1.json");
            write_compact(&op, &supplied).unwrap();
            let o = read_output(&op).unwrap();
            assert!(o == supplied, "the output changed through JSON");
            assert_eq!(diff(&o, &own).unwrap().max_abs, 0.0);
            let m = metrics(&back, &o, 50).unwrap();
            assert!(m.swd.is_finite() && m.swd > 0.0 && m.mean_sq_error.is_finite());
            assert_eq!(m, metrics(&back, &o, 50).unwrap());
        }
        // K must match the exported noise.
        let k8: ResamplerSpec = "diffusion:K=8".parse().unwrap();
        assert!(run_on(&back, &ip, &k8, false).is_err());
        // OT is deterministic and reports its iterations.
        let ot: ResamplerSpec = "ot:eps=0.5".parse().unwrap();
        let o = run_on(&back, &ip, &ot, false).unwrap();
        assert!(o.iterations.is_some() && o.noise == "none");
    }

    /// `metrics` pairs NAME-K.json with AGAINST-K.json per instance; the same outputs under
    /// two names give a zero paired difference.
    #[test]
    fn metrics_pairs_outputs() {
        let dir = tempfile::tempdir().unwrap();
        for k in 0..2 {
            let inst = Instance::gm(2, 2, 30, 0, k, 0).unwrap();
            let ip = dir.path().join(format!("instance-{k}.json"));
            write_compact(&ip, &inst).unwrap();
            let o = run_on(&inst, &ip, &"systematic".parse().unwrap(), false).unwrap();
            write_compact(&dir.path().join(format!("a-{k}.json")), &o).unwrap();
            write_compact(&dir.path().join(format!("b-{k}.json")), &o).unwrap();
        }
        let args = MetricsArgs {
            instances: dir.path().to_path_buf(),
            outputs: dir.path().to_path_buf(),
            name: "a".to_string(),
            against: Some("b".to_string()),
            directions: 20,
            json: None,
        };
        let r = metrics_report(&args).unwrap();
        assert_eq!(r.instances.len(), 2);
        let df = r.swd.difference.unwrap();
        assert_eq!((df.mean, df.n), (0.0, 2));
        let missing = MetricsArgs {
            against: Some("c".to_string()),
            ..args
        };
        assert!(metrics_report(&missing).is_err());
    }
}
