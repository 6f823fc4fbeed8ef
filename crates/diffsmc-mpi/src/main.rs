//! `diffsmc-mpi`: `diffsmc filter` with the particles split across MPI ranks, the island
//! filter, and independent runs spread over ranks.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Parser, Subcommand};
use diffsmc::bayes::{Marginal, McmcConfig, PfLikelihood, Pmmh, ProductPrior};
use diffsmc::rng::derive_seed;
use diffsmc::{Bootstrap, ResamplerSpec, Smc, SmcConfig, SmcError, SmcOutput, Trigger};
use diffsmc_lgssm::{Lgssm, LgssmData, PaperParams};
use diffsmc_mpi::{
    Communicator, DistConfig, DistError, DistResampler, IslandConfig, ThreadComm, run_distributed,
    run_filter, run_island_filter,
};
use serde::{Deserialize, Serialize};

const TRANSPORT: &str = if cfg!(feature = "mpi") {
    "This build has MPI: start it with `mpirun -n K diffsmc-mpi …` (or srun) to run on K ranks."
} else {
    "This build has NO MPI (built without the `mpi` feature): it runs on a single rank, or on \
     --local-ranks K threads of one process. Build with `--features mpi` for mpirun."
};

#[derive(Debug, Parser)]
#[command(
    name = "diffsmc-mpi",
    version,
    about = "Distributed particle filters for diffsmc: the particles of one filter split \
             across ranks (bit-identical to `diffsmc filter` for every rank count), the island \
             filter, and independent runs spread over ranks.",
    after_help = TRANSPORT
)]
struct Cli {
    /// No progress output (accepted for compatibility with `diffsmc`; this binary prints none).
    #[arg(long, global = true)]
    quiet: bool,
    /// Overwrite existing output files.
    #[arg(long, global = true)]
    force: bool,
    /// Run K ranks as threads of this one process instead of using MPI's ranks (testing and
    /// measurement without mpirun).
    #[arg(long, global = true, value_name = "K")]
    local_ranks: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one particle filter on observations from a CSV file, its particles split across
    /// the ranks (the flags and JSON of `diffsmc filter`, plus `--island`).
    Filter(FilterArgs),
    /// Independent runs spread over the ranks (run i on rank i mod K), gathered on rank 0:
    /// filter runs with seeds seed, seed+1, … or PMMH chains.
    Runs(RunsArgs),
}

/// The model and data flags shared by `filter` and `runs` (those of `diffsmc filter`).
#[derive(Debug, clap::Args)]
struct ModelArgs {
    /// Model: `lgssm` (the paper's linear Gaussian SSM in the data's dimension; the only
    /// model of this binary).
    #[arg(long, default_value = "lgssm")]
    model: String,
    /// Filtering algorithm: `bootstrap` (the only one the distributed filter runs).
    #[arg(long, default_value = "bootstrap")]
    algorithm: String,
    /// Parameters θ1,θ2, comma-separated.
    #[arg(long, default_value = "0.5,1.0", allow_hyphen_values = true)]
    theta: String,
    /// Observations: CSV, one row per time step, one column per dimension, optional header;
    /// an empty or NaN cell is a missing value.
    #[arg(long)]
    data: PathBuf,
    /// Number of particles (in total, over all ranks).
    #[arg(long, default_value_t = 1024)]
    particles: usize,
    /// Resampler spec: an index resampler (systematic, multinomial, stratified, residual,
    /// ssp, killing).
    #[arg(long, default_value = "systematic")]
    resampler: ResamplerSpec,
    /// When to resample: `always`, `never` or `ess:FRAC`.
    #[arg(long, default_value = "always")]
    trigger: Trigger,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  mpirun -n 4 diffsmc-mpi filter --theta 0.5,1.0 --data ys.csv --particles 100000 \\\n      --seed 1 --kalman --json out.json"
)]
struct FilterArgs {
    #[command(flatten)]
    m: ModelArgs,
    /// Also print the exact Kalman log-likelihood (the JSON always holds it).
    #[arg(long)]
    kalman: bool,
    /// Write the results as JSON (rank 0): the keys of `diffsmc filter --json`, plus `ranks`,
    /// `mode` and `values_received_rank0` (per step, the particle values rank 0 received from
    /// other ranks when resampling).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Not supported by this binary (plot with `diffsmc filter` or `diffsmc plot`).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Run the island filter: every rank a sub-filter of N/K particles resampling locally,
    /// exchanging particles in a ring (not bit-identical to the single-process filter).
    #[arg(long)]
    island: bool,
    /// Island filter: steps between exchanges.
    #[arg(long, default_value_t = 10)]
    exchange_every: usize,
    /// Island filter: fraction of an island's particles sent at an exchange.
    #[arg(long, default_value_t = 0.1)]
    exchange_fraction: f64,
}

/// What `runs` repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RunKind {
    /// The particle filter, run i with seed `seed + i` (all N particles on one rank).
    Filter,
    /// A PMMH chain over θ (priors θ1 ~ U(−1, 1), θ2 ~ U(0, 3)), chain i seeded with
    /// derive_seed(seed, i).
    Pmmh,
}

#[derive(Debug, clap::Args)]
struct RunsArgs {
    #[command(flatten)]
    m: ModelArgs,
    /// What to run.
    #[arg(long, value_enum, default_value = "filter")]
    kind: RunKind,
    /// Number of runs (filter runs or chains).
    #[arg(long, default_value_t = 8)]
    runs: usize,
    /// PMMH: iterations per chain (burn-in included).
    #[arg(long, default_value_t = 1000)]
    iterations: usize,
    /// PMMH: burn-in iterations.
    #[arg(long, default_value_t = 200)]
    burn_in: usize,
    /// Write the gathered results as JSON (rank 0).
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("--{flag}: {message}")]
    Flag { flag: &'static str, message: String },
    #[error("{file}:{line}: {message}")]
    Data {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{path} exists; pass --force to overwrite it")]
    Exists { path: String },
    #[error(transparent)]
    Dist(#[from] DistError),
    #[error(transparent)]
    Smc(#[from] SmcError),
}

fn flag(flag: &'static str, message: impl Into<String>) -> CliError {
    CliError::Flag {
        flag,
        message: message.into(),
    }
}

fn parse_cell(cell: &str) -> Option<f64> {
    let c = cell.trim().trim_matches('"');
    if c.is_empty() || c.eq_ignore_ascii_case("nan") || c.eq_ignore_ascii_case("na") {
        return Some(f64::NAN);
    }
    c.parse::<f64>().ok().filter(|v| !v.is_infinite())
}

/// Reads observations as `diffsmc filter` does: optional header, one row per step.
fn read_csv(path: &Path) -> Result<Vec<Vec<f64>>, CliError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| CliError::Io {
        path: file.clone(),
        message: e.to_string(),
    })?;
    let mut rows: Vec<Vec<f64>> = Vec::new();
    let mut ncol = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let cells: Vec<&str> = line.split(',').collect();
        let parsed: Vec<Option<f64>> = cells.iter().map(|c| parse_cell(c)).collect();
        if ncol.is_none() {
            ncol = Some(cells.len());
            if parsed.iter().any(Option::is_none) {
                continue; // header
            }
        }
        let data_err = |message: String| CliError::Data {
            file: file.clone(),
            line: i + 1,
            message,
        };
        if Some(cells.len()) != ncol {
            return Err(data_err(format!(
                "expected {} columns, found {}",
                ncol.unwrap_or(0),
                cells.len()
            )));
        }
        let mut row = Vec::with_capacity(cells.len());
        for (k, (p, c)) in parsed.into_iter().zip(&cells).enumerate() {
            row.push(p.ok_or_else(|| {
                data_err(format!(
                    "column {}: `{}` is not a finite number (use an empty cell or NaN for a \
                     missing value)",
                    k + 1,
                    c.trim()
                ))
            })?);
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(CliError::Data {
            file,
            line: 0,
            message: "the file has no data rows".into(),
        });
    }
    Ok(rows)
}

fn parse_theta(s: &str) -> Result<Vec<f64>, CliError> {
    let mut v = Vec::new();
    for (i, part) in s.split(',').enumerate() {
        let x: f64 = part
            .trim()
            .parse()
            .ok()
            .filter(|x: &f64| x.is_finite())
            .ok_or_else(|| {
                flag(
                    "theta",
                    format!("entry {i} (`{}`) is not a finite number", part.trim()),
                )
            })?;
        v.push(x);
    }
    if v.len() != 2 {
        return Err(flag(
            "theta",
            format!("lgssm takes 2 parameters θ1,θ2; got {}", v.len()),
        ));
    }
    Ok(v)
}

fn check_writable(path: &Path, force: bool) -> Result<(), CliError> {
    if !force && path.exists() {
        return Err(CliError::Exists {
            path: path.display().to_string(),
        });
    }
    Ok(())
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<(), CliError> {
    let io = |e: String| CliError::Io {
        path: path.display().to_string(),
        message: e,
    };
    let text = serde_json::to_string_pretty(v).map_err(|e| io(e.to_string()))?;
    std::fs::write(path, text + "\n").map_err(|e| io(e.to_string()))
}

/// Refuses a run whose per-rank storage would not fit in the memory available now: the
/// rank's block (three particle buffers and a log-weight buffer) plus the `N` gathered
/// log-weights, weights and ancestors every rank holds.
fn check_memory(particles: usize, d: usize, ranks: usize) -> Result<(), CliError> {
    let per_rank = particles.div_ceil(ranks.max(1)) as f64 * (3 * d + 1) as f64 * 8.0
        + particles as f64 * 24.0;
    // Ranks as threads share this process's memory.
    let need = per_rank * ranks as f64;
    let avail = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        let l = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
        l.split_whitespace().nth(1)?.parse::<f64>().ok()
    });
    if let Some(kb) = avail
        && need > 0.8 * kb * 1024.0
    {
        return Err(flag(
            "particles",
            format!(
                "{particles} particles need about {:.1} GiB, more than the {:.1} GiB available; \
                 use fewer particles or more machines",
                need / 1073741824.0,
                kb / 1048576.0
            ),
        ));
    }
    Ok(())
}

/// The checks and the data every rank does and reads (identically, so every rank fails alike).
fn setup(m: &ModelArgs) -> Result<(LgssmData<f64>, Vec<f64>, DistResampler), CliError> {
    if m.model != "lgssm" {
        return Err(flag(
            "model",
            format!(
                "`{}` is not supported by diffsmc-mpi; the distributed filter runs `lgssm`",
                m.model
            ),
        ));
    }
    if m.algorithm != "bootstrap" {
        return Err(flag(
            "algorithm",
            format!(
                "`{}` is not supported by diffsmc-mpi; the distributed filter is `bootstrap`",
                m.algorithm
            ),
        ));
    }
    let theta = parse_theta(&m.theta)?;
    let ys = read_csv(&m.data)?;
    let d = ys[0].len();
    let data = Lgssm::paper(theta[0], theta[1], d)?.with_data(ys)?;
    let resampler = DistResampler::from_spec(&m.resampler)?;
    Ok((data, theta, resampler))
}

fn num(v: f64) -> serde_json::Value {
    if v.is_finite() {
        v.into()
    } else {
        serde_json::Value::Null
    }
}

fn diagonals(covs: &[Vec<f64>], d: usize) -> Vec<Vec<f64>> {
    covs.iter()
        .map(|c| (0..d).map(|k| c[k * d + k]).collect())
        .collect()
}

fn filter_cmd<C: Communicator + ?Sized>(
    comm: &C,
    a: &FilterArgs,
    force: bool,
) -> Result<(), CliError> {
    if a.plot.is_some() {
        return Err(flag(
            "plot",
            "not supported by diffsmc-mpi; write --json and plot with `diffsmc plot`, or run \
             `diffsmc filter --plot`",
        ));
    }
    if let Some(p) = &a.json {
        check_writable(p, force)?;
    }
    let (data, theta, resampler) = setup(&a.m)?;
    let (n, d, steps) = (a.m.particles, data.model().state_dim(), data.len());
    check_memory(n, d, comm.size())?;
    let config = DistConfig::new(n)?
        .with_trigger(a.m.trigger)?
        // The moments gather all particles to rank 0 every step: only when they are written.
        .with_filter_moments(!a.island && a.json.is_some());
    let model = Bootstrap(&data);
    let t0 = Instant::now();
    let (ll, incs, ess, resampled, means, covs, mode, received) = if a.island {
        let ic = IslandConfig::new(a.exchange_every, a.exchange_fraction)?;
        let o = run_island_filter(comm, &model, &resampler, &config, &ic, a.m.seed)?;
        let incs: Vec<f64> = o
            .log_likelihood_path
            .iter()
            .scan(0.0, |prev, &z| {
                let inc = z - *prev;
                *prev = z;
                Some(inc)
            })
            .collect();
        let mode = format!(
            "island (exchange every {} steps, fraction {})",
            ic.exchange_every(),
            ic.fraction()
        );
        (
            o.log_likelihood,
            incs,
            o.ess,
            o.resampled,
            Vec::new(),
            Vec::new(),
            mode,
            Vec::new(),
        )
    } else {
        let o = run_filter(comm, &model, &resampler, &config, a.m.seed)?;
        (
            o.log_likelihood,
            o.log_likelihood_increments,
            o.ess,
            o.resampled,
            o.filter_means,
            o.filter_covs,
            "distributed".to_string(),
            o.values_received,
        )
    };
    let elapsed = t0.elapsed().as_secs_f64();
    if comm.rank() != 0 {
        return Ok(());
    }
    let kf = data.kalman()?;
    let n_res = resampled.iter().filter(|r| **r).count();
    println!(
        "filter: lgssm d = {d}, {steps} steps, N = {n}, bootstrap filter, resampler {}, trigger {:?}, {} ranks, {mode}",
        a.m.resampler,
        a.m.trigger,
        comm.size()
    );
    println!("  log-likelihood (particle filter) {ll:.6}");
    if a.kalman {
        println!(
            "  log-likelihood (Kalman)          {:.6}",
            kf.log_likelihood
        );
    }
    println!(
        "  resampled at {n_res} of {steps} steps; {:.3} ms",
        elapsed * 1e3
    );
    if let Some(p) = &a.json {
        let variances = diagonals(&covs, d);
        let v = serde_json::json!({
            "model": "lgssm",
            "algorithm": "bootstrap",
            "theta": theta,
            "data": a.m.data.display().to_string(),
            "particles": n,
            "resampler": a.m.resampler.to_string(),
            "trigger": format!("{:?}", a.m.trigger),
            "seed": a.m.seed,
            "steps": steps,
            "log_likelihood": num(ll),
            "kalman_log_likelihood": num(kf.log_likelihood),
            "resampled_steps": n_res,
            "resampled": resampled,
            "resampler_converged": vec![true; steps],
            "ess": ess,
            "log_likelihood_increments": incs,
            "filter_means": means,
            "filter_variances": variances,
            "kalman_means": kf.filter_means,
            "kalman_variances": diagonals(&kf.filter_covs, d),
            "filter_mean": means,
            "filter_cov": covs,
            "kalman_filter_mean": kf.filter_means,
            "seconds": elapsed,
            "ranks": comm.size(),
            "mode": mode,
            "values_received_rank0": received,
        });
        write_json(p, &v)?;
    }
    Ok(())
}

/// One filter run of `runs --kind filter`.
#[derive(Debug, Serialize, Deserialize)]
struct FilterRun {
    seed: u64,
    log_likelihood: Option<f64>,
    resampled_steps: usize,
    error: Option<String>,
}

/// One chain of `runs --kind pmmh`.
#[derive(Debug, Serialize, Deserialize)]
struct ChainRun {
    seed: u64,
    acceptance_rate: Option<f64>,
    posterior_mean: Vec<Option<f64>>,
    last: Vec<f64>,
    error: Option<String>,
}

fn runs_cmd<C: Communicator + ?Sized>(comm: &C, a: &RunsArgs, force: bool) -> Result<(), CliError> {
    if let Some(p) = &a.json {
        check_writable(p, force)?;
    }
    if a.runs == 0 {
        return Err(flag("runs", "at least 1"));
    }
    let (data, theta, _) = setup(&a.m)?;
    let config = SmcConfig::new(a.m.particles)?.with_trigger(a.m.trigger)?;
    // Checks that the run index and chain knobs are valid before any rank starts.
    McmcConfig::new(a.iterations, a.burn_in, 1, 0)?;
    let t0 = Instant::now();
    let results: Option<serde_json::Value> = match a.kind {
        RunKind::Filter => {
            let resampler = a.m.resampler.build::<f64>()?;
            let model = Bootstrap(&data);
            let smc = Smc::new(config);
            let runs = run_distributed(comm, a.runs, |i| {
                let seed = a.m.seed.wrapping_add(i as u64);
                match smc.run::<f64, _, _>(&model, &*resampler, seed) {
                    Ok(o) => {
                        let o: SmcOutput<f64> = o;
                        FilterRun {
                            seed,
                            log_likelihood: Some(o.log_likelihood).filter(|v| v.is_finite()),
                            resampled_steps: o.n_resampled(),
                            error: None,
                        }
                    }
                    Err(e) => FilterRun {
                        seed,
                        log_likelihood: None,
                        resampled_steps: 0,
                        error: Some(e.to_string()),
                    },
                }
            })?;
            runs.map(|r| {
                let ll: Vec<f64> = r.iter().filter_map(|x| x.log_likelihood).collect();
                serde_json::json!({ "runs": r, "log_likelihood": summary(&ll) })
            })
        }
        RunKind::Pmmh => {
            let params = PaperParams::new(data.model().state_dim(), data.ys().to_vec())?;
            let prior = ProductPrior::new(vec![
                Marginal::uniform(-1.0, 1.0)?,
                Marginal::uniform(0.0, 3.0)?,
            ]);
            let pf = PfLikelihood::new(&params, config, &a.m.resampler);
            let runs = run_distributed(comm, a.runs, |i| {
                let seed = derive_seed(a.m.seed, i as u64);
                let res = McmcConfig::new(a.iterations, a.burn_in, 1, seed)
                    .and_then(|c| Pmmh::default().run(&pf, &prior, &c));
                match res {
                    Ok(post) => {
                        let ch = &post.chains[0];
                        ChainRun {
                            seed,
                            acceptance_rate: Some(ch.acceptance_rate()).filter(|v| v.is_finite()),
                            posterior_mean: (0..2)
                                .map(|j| {
                                    let t = ch.trace(j);
                                    Some(t.iter().sum::<f64>() / t.len() as f64)
                                        .filter(|v| v.is_finite())
                                })
                                .collect(),
                            last: ch.samples.last().cloned().unwrap_or_default(),
                            error: None,
                        }
                    }
                    Err(e) => ChainRun {
                        seed,
                        acceptance_rate: None,
                        posterior_mean: Vec::new(),
                        last: Vec::new(),
                        error: Some(e.to_string()),
                    },
                }
            })?;
            runs.map(|r| serde_json::json!({ "chains": r }))
        }
    };
    let elapsed = t0.elapsed().as_secs_f64();
    let Some(mut v) = results else {
        return Ok(());
    };
    println!(
        "runs: {} {:?} runs on {} ranks, N = {}, {:.3} s",
        a.runs,
        a.kind,
        comm.size(),
        a.m.particles,
        elapsed
    );
    if let Some(s) = v.get("log_likelihood") {
        println!("  log-likelihood over runs: {s}");
    }
    if let Some(p) = &a.json {
        let obj = v.as_object_mut().expect("an object");
        obj.insert("kind".into(), format!("{:?}", a.kind).to_lowercase().into());
        obj.insert("theta".into(), serde_json::json!(theta));
        obj.insert("particles".into(), a.m.particles.into());
        obj.insert("resampler".into(), a.m.resampler.to_string().into());
        obj.insert("seed".into(), a.m.seed.into());
        obj.insert("ranks".into(), comm.size().into());
        obj.insert("seconds".into(), elapsed.into());
        write_json(p, &v)?;
    }
    Ok(())
}

fn summary(v: &[f64]) -> serde_json::Value {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let s = if v.len() > 1 {
        (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    serde_json::json!({ "mean": num(m), "std": num(s), "n": v.len() })
}

fn dispatch<C: Communicator + ?Sized>(comm: &C, cli: &Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Filter(a) => filter_cmd(comm, a, cli.force),
        Command::Runs(a) => runs_cmd(comm, a, cli.force),
    }
}

fn run(cli: &Cli) -> (usize, Result<(), CliError>) {
    if let Some(k) = cli.local_ranks {
        if k == 0 {
            return (0, Err(flag("local-ranks", "at least 1")));
        }
        let mut results = ThreadComm::run(k, |c| dispatch(c, cli));
        return (0, results.swap_remove(0));
    }
    #[cfg(feature = "mpi")]
    {
        match diffsmc_mpi::MpiComm::init() {
            Some(c) => (c.rank(), dispatch(&c, cli)),
            None => (0, Err(flag("local-ranks", "MPI could not be initialised"))),
        }
    }
    #[cfg(not(feature = "mpi"))]
    {
        (0, dispatch(&diffsmc_mpi::SingleRank, cli))
    }
}

fn main() {
    let cli = Cli::parse();
    let _ = cli.quiet;
    let (rank, res) = run(&cli);
    if let Err(e) = res {
        // Every rank fails alike; one message is enough.
        if rank == 0 {
            eprintln!("error: {e}");
        }
        std::process::exit(2);
    }
}
