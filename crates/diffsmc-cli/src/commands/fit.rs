//! `diffsmc fit`: maximum-likelihood estimation through the particle filter.

use std::cell::Cell;
use std::path::PathBuf;
use std::time::Instant;

use diffsmc::grad::{
    Differentiable, GradMode, GradOptions, KalmanNll, ParticleFilterNll, gradient,
};
use diffsmc::rng::derive_seed;
use diffsmc::{ResamplerSpec, SmcConfig, Trigger};
use diffsmc_lgssm::PaperParams;
use diffsmc_sde::{Observations, Parametrisation, PathObjective, SdeFamily, standard_errors};
use serde::Serialize;

use crate::models::CliModel;
use crate::models::sde::{
    DoubleWellModel, Model, OuModel, SdeArgs, SdeModel, natural_se, optimise, read_time_series,
    settings,
};
use crate::support::data::read_csv;
use crate::support::error::CliError;
use crate::support::optimise::{
    OptimSettings, OptimizerKind, admissible, minimise, warn_inadmissible,
};
use crate::support::output::{check_writable, write_json};
use crate::support::progress;

/// Arguments of `diffsmc fit`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  diffsmc fit --model lgssm --data ys.csv --init 1.5,2.0 --optimizer lbfgs \\\n      --particles 32 --resampler diffusion:T=2,K=8,integrator=jentzen-kloeden,sde --seed 1 --json fit.json"
)]
pub struct FitArgs {
    /// Model: `lgssm` (θ = (θ1, θ2) of the paper's linear Gaussian SSM), `ou` (θ = (κ, μ, σ)
    /// of dX = κ(μ − X)dt + σ dW) or `double-well` (θ = (θ1, θ2, σ) of
    /// dX = θ1 X(θ2 − X²)dt + σ dW); the SDE models read a time column first.
    #[arg(long, default_value = "lgssm")]
    pub model: String,
    /// Observations (CSV; see `diffsmc filter --help`).
    #[arg(long)]
    pub data: PathBuf,
    /// Starting point, comma-separated (given once).
    #[arg(long, default_value = "1.5,2.0", allow_hyphen_values = true)]
    pub init: crate::support::args::Theta,
    /// Optimiser.
    #[arg(long, value_enum, default_value = "lbfgs")]
    pub optimizer: OptimizerKind,
    /// Learning rate (lion, adam).
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    /// Iteration cap (lbfgs) or budget (lion, adam).
    #[arg(long, default_value_t = 100)]
    pub iterations: usize,
    /// Global-norm gradient clipping (lion, adam).
    #[arg(long)]
    pub clip: Option<f64>,
    /// Number of particles.
    #[arg(long, default_value_t = 32)]
    pub particles: usize,
    /// Resampler spec; a differentiable one (diffusion:…, ot:…, gumbel:…) makes the estimate
    /// a smooth function of θ.
    #[arg(
        long,
        default_value = "diffusion:T=2,K=8,integrator=jentzen-kloeden,sde"
    )]
    pub resampler: ResamplerSpec,
    /// When to resample: `always`, `never` or `ess:FRAC` (default: `always` for lgssm,
    /// `never` — bridge importance sampling, smooth in θ — for the SDE models).
    #[arg(long)]
    pub trigger: Option<Trigger>,
    /// Seed. L-BFGS uses it at every evaluation (common random numbers: one smooth
    /// objective); Lion and Adam draw a fresh seed per iteration (stochastic gradients) unless
    /// --common-random-numbers is given.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Use the same seed at every iteration with Lion and Adam too.
    #[arg(long)]
    pub common_random_numbers: bool,
    /// Gradient mode (lgssm): `forward` (dual numbers), `reverse` (checkpointed tape) or
    /// `auto` (forward for few parameters).
    #[arg(long, default_value = "auto")]
    pub grad: GradMode,
    /// Write the results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub sde: SdeArgs,
}

/// The JSON report of `diffsmc fit --model lgssm` (non-finite numbers are written as
/// `null`).
#[derive(Debug, Serialize)]
struct LgssmFitReport<'a> {
    model: &'static str,
    data: String,
    init: &'a [f64],
    optimizer: &'static str,
    particles: usize,
    resampler: String,
    seed: u64,
    theta_hat: &'a [f64],
    nll: f64,
    converged: bool,
    stop_reason: &'a str,
    iterations: usize,
    skipped_updates: usize,
    loss_trace: &'a [f64],
    seconds: f64,
    kalman_theta_hat: &'a [f64],
    kalman_nll: f64,
    kalman_converged: bool,
}

/// Runs `diffsmc fit`.
pub fn fit(args: &FitArgs, quiet: bool, force: bool) -> Result<(), CliError> {
    if let CliModel::Sde(model) = args.model.parse()? {
        return fit_sde(model, args, quiet, force);
    }
    if args.init.len() != 2 {
        return Err(CliError::flag(
            "init",
            format!("lgssm takes 2 parameters θ1,θ2; got {}", args.init.len()),
        ));
    }
    if let Some(p) = &args.json {
        check_writable(p, force)?;
    }
    let obs = read_csv(&args.data)?;
    // Gradient runs carry up to 16 derivative lanes per scalar, two chunks at a time.
    crate::support::args::check_memory(
        "particles",
        args.particles,
        2 * crate::support::args::filter_bytes_per_particle(obs.dim(), 8 * 17),
    )?;
    let params = PaperParams::new(obs.dim(), obs.values.clone())?;
    let smc =
        SmcConfig::new(args.particles)?.with_trigger(args.trigger.unwrap_or(Trigger::Always))?;
    let settings = OptimSettings {
        kind: args.optimizer,
        lr: args.lr,
        iterations: args.iterations,
        clip: args.clip,
    };
    let fixed_seed = args.optimizer == OptimizerKind::Lbfgs || args.common_random_numbers;
    let evals = Cell::new(0u64);
    let inadmissible = Cell::new(0);
    let objective = |theta: &[f64]| {
        let seed = if fixed_seed {
            args.seed
        } else {
            derive_seed(args.seed, evals.get())
        };
        evals.set(evals.get() + 1);
        let opts = GradOptions::default().with_mode(args.grad);
        admissible(
            gradient(
                &ParticleFilterNll::new(&params, &smc, &args.resampler, seed),
                theta,
                &opts,
            ),
            theta.len(),
            &inadmissible,
        )
    };
    let pb = progress::bar(args.iterations as u64, "fit", quiet);
    let t0 = Instant::now();
    let res = minimise(&settings, &args.init, objective, |_| pb.inc(1))?;
    let elapsed = t0.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let kalman = minimise(
        &settings,
        &args.init,
        |theta: &[f64]| {
            admissible(
                gradient(&KalmanNll(&params), theta, &GradOptions::default()),
                theta.len(),
                &inadmissible,
            )
        },
        |_| {},
    )?;
    println!(
        "fit: lgssm, {} steps, N = {}, resampler {}, optimiser {}",
        obs.len(),
        args.particles,
        args.resampler,
        args.optimizer.name()
    );
    println!(
        "  particle filter: θ̂ = ({:.5}, {:.5})  NLL {:.5}  converged {}  ({}, {} iterations, {:.2} s)",
        res.theta[0], res.theta[1], res.value, res.converged, res.reason, res.iterations, elapsed
    );
    println!(
        "  Kalman (exact):  θ̂ = ({:.5}, {:.5})  NLL {:.5}  converged {}",
        kalman.theta[0], kalman.theta[1], kalman.value, kalman.converged
    );
    if res.skipped > 0 {
        eprintln!(
            "warning: {} updates skipped for non-finite values or gradients",
            res.skipped
        );
    }
    warn_inadmissible(inadmissible.get());
    if let Some(p) = &args.json {
        let report = LgssmFitReport {
            model: "lgssm",
            data: args.data.display().to_string(),
            init: &args.init.0,
            optimizer: args.optimizer.name(),
            particles: args.particles,
            resampler: args.resampler.to_string(),
            seed: args.seed,
            theta_hat: &res.theta,
            nll: res.value,
            converged: res.converged,
            stop_reason: &res.reason,
            iterations: res.iterations,
            skipped_updates: res.skipped,
            loss_trace: &res.trace,
            seconds: elapsed,
            kalman_theta_hat: &kalman.theta,
            kalman_nll: kalman.value,
            kalman_converged: kalman.converged,
        };
        write_json(p, &report, force)?;
    }
    Ok(())
}

/// `diffsmc fit` for one SDE model, whose family for the data's dimension is `family`.
fn fit_family<M: SdeModel>(
    model: &M,
    family: &M::Family,
    args: &FitArgs,
    obs: &Observations,
    quiet: bool,
) -> Result<SdeFitReport, CliError> {
    let settings = settings(&args.sde, args.particles, args.trigger)?;
    let optim = OptimSettings {
        kind: args.optimizer,
        lr: args.lr,
        iterations: args.iterations,
        clip: args.clip,
    };
    let fixed_seed = args.optimizer == OptimizerKind::Lbfgs || args.common_random_numbers;
    let positive = family.positive();
    let objective_at = |seed: u64| PathObjective {
        family,
        obs,
        settings: &settings,
        resampler: &args.resampler,
        seed,
        parametrisation: Parametrisation::LogPositive,
    };
    let pb = progress::bar(args.iterations as u64, "fit", quiet);
    let t0 = Instant::now();
    let fit = optimise(
        &optim,
        positive,
        &args.init,
        |k| {
            if fixed_seed {
                args.seed
            } else {
                derive_seed(args.seed, k)
            }
        },
        |phi, seed| {
            diffsmc::grad::gradient(
                &objective_at(seed),
                phi,
                &diffsmc::grad::GradOptions::default(),
            )
        },
        || pb.inc(1),
    )?;
    let elapsed = t0.elapsed().as_secs_f64();
    pb.finish_and_clear();
    // Standard errors from the curvature of the seeded (smooth) estimate, when it is smooth.
    let smooth = settings.trigger() == Trigger::Never;
    let se = if smooth && fit.outcome.value.is_finite() {
        standard_errors(&objective_at(args.seed), &fit.outcome.theta, 1e-4)
            .ok()
            .map(|s| natural_se(positive, &fit.theta, &s))
    } else {
        None
    };
    let names = family.param_names();
    println!(
        "fit: {}, {} observations ({} intervals), N = {}, M = {}, proposal {}, trigger {:?}, optimiser {}",
        model.name(),
        obs.len(),
        obs.n_intervals(),
        settings.particles(),
        settings.substeps(),
        settings.proposal(),
        settings.trigger(),
        args.optimizer.name()
    );
    let show = |theta: &[f64]| {
        names
            .iter()
            .zip(theta)
            .map(|(n, v)| format!("{n} {v:.5}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "  bridge estimate: {}  NLL {:.5}  converged {}  ({}, {} iterations, {:.2} s)",
        show(&fit.theta),
        fit.outcome.value,
        fit.outcome.converged,
        fit.outcome.reason,
        fit.outcome.iterations,
        elapsed
    );
    if let Some(se) = &se {
        println!("  standard errors (bridge curvature): {}", show(se));
    }
    if fit.outcome.skipped > 0 {
        eprintln!(
            "warning: {} updates skipped for non-finite values or gradients",
            fit.outcome.skipped
        );
    }
    warn_inadmissible(fit.inadmissible);
    let mut v = SdeFitReport {
        model: model.name(),
        data: args.data.display().to_string(),
        param_names: names,
        init: args.init.0.clone(),
        optimizer: args.optimizer.name(),
        parametrisation: "log-positive: the optimiser works on (…, log σ); theta_hat is natural",
        particles: settings.particles(),
        substeps: settings.substeps(),
        proposal: settings.proposal().to_string(),
        lookahead: settings.lookahead().to_string(),
        trigger: format!("{:?}", settings.trigger()),
        resampler: args.resampler.to_string(),
        seed: args.seed,
        theta_hat: fit.theta.clone(),
        nll: fit.outcome.value,
        converged: fit.outcome.converged,
        stop_reason: fit.outcome.reason.clone(),
        iterations: fit.outcome.iterations,
        skipped_updates: fit.outcome.skipped,
        standard_errors: se,
        loss_trace: fit.outcome.trace.clone(),
        seconds: elapsed,
        exact_mle: None,
        exact_nll: None,
        exact_converged: None,
        exact_standard_errors: None,
        exact_nll_at_theta_hat: None,
    };
    if let Some(exact) = model.exact_objective(obs, Parametrisation::LogPositive) {
        let ex = optimise(
            &optim,
            positive,
            &args.init,
            |_| 0,
            |phi, _| {
                diffsmc::grad::gradient(
                    &exact,
                    phi,
                    &diffsmc::grad::GradOptions::default()
                        .with_mode(diffsmc::grad::GradMode::Forward)
                        .with_chunk(diffsmc::grad::ChunkSize::Auto),
                )
            },
            || {},
        )?;
        let ex_se = standard_errors(&exact, &ex.outcome.theta, 1e-4)
            .ok()
            .map(|s| natural_se(positive, &ex.theta, &s));
        let at_hat = Parametrisation::LogPositive
            .from_natural(positive, &fit.theta)
            .ok()
            .and_then(|phi| exact.eval::<f64>(&phi).ok());
        println!(
            "  exact OU MLE:    {}  NLL {:.5}  converged {}",
            show(&ex.theta),
            ex.outcome.value,
            ex.outcome.converged
        );
        if let Some(s) = &ex_se {
            println!("  standard errors (exact):            {}", show(s));
            let z: Vec<String> = fit
                .theta
                .iter()
                .zip(&ex.theta)
                .zip(s)
                .map(|((a, b), s)| format!("{:+.2}", (a - b) / s))
                .collect();
            println!(
                "  bridge − exact, in exact standard errors: ({})",
                z.join(", ")
            );
        }
        v.exact_mle = Some(ex.theta);
        v.exact_nll = Some(ex.outcome.value);
        v.exact_converged = Some(ex.outcome.converged);
        v.exact_standard_errors = Some(ex_se);
        v.exact_nll_at_theta_hat = Some(at_hat);
    }
    Ok(v)
}

/// The JSON report of `fit --model ou|double-well` (keys in docs/cli.md; non-finite numbers
/// are written as `null`). The `exact_*` keys other than `exact_mle` (`null` for the
/// double-well) appear only for the OU model.
#[derive(Debug, Serialize)]
struct SdeFitReport {
    model: &'static str,
    data: String,
    param_names: &'static [&'static str],
    init: Vec<f64>,
    optimizer: &'static str,
    parametrisation: &'static str,
    particles: usize,
    substeps: usize,
    proposal: String,
    lookahead: String,
    trigger: String,
    resampler: String,
    seed: u64,
    theta_hat: Vec<f64>,
    nll: f64,
    converged: bool,
    stop_reason: String,
    iterations: usize,
    skipped_updates: usize,
    standard_errors: Option<Vec<f64>>,
    loss_trace: Vec<f64>,
    seconds: f64,
    exact_mle: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exact_nll: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exact_converged: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exact_standard_errors: Option<Option<Vec<f64>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exact_nll_at_theta_hat: Option<Option<f64>>,
}

/// Checks the data's dimension and the start, then fits.
fn fit_model<M: SdeModel>(
    model: &M,
    args: &FitArgs,
    obs: &Observations,
    quiet: bool,
) -> Result<SdeFitReport, CliError> {
    let family = model.family(obs.dim())?;
    model.check_theta("init", &args.init, obs.dim())?;
    fit_family(model, &family, args, obs, quiet)
}

/// `diffsmc fit --model ou|double-well`.
fn fit_sde(model: Model, args: &FitArgs, quiet: bool, force: bool) -> Result<(), CliError> {
    if let Some(p) = &args.json {
        check_writable(p, force)?;
    }
    let (obs, _) = read_time_series(&args.data)?;
    let v = match model {
        Model::Ou => fit_model(&OuModel, args, &obs, quiet)?,
        Model::DoubleWell => fit_model(&DoubleWellModel, args, &obs, quiet)?,
    };
    if let Some(p) = &args.json {
        write_json(p, &v, force)?;
    }
    Ok(())
}
