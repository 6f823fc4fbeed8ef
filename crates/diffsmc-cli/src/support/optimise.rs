//! The optimiser choice shared by `fit` and the experiments.

use std::cell::Cell;

use diffsmc::SmcError;
use diffsmc_optim::{Adam, Control, IterationInfo, Lbfgs, Lion, Minimizer};

use crate::support::error::CliError;

/// Which optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OptimizerKind {
    /// L-BFGS with a strong-Wolfe line search (smooth objectives: Kalman, diffusion resampling
    /// with common random numbers).
    Lbfgs,
    /// Lion (sign-momentum; noisy objectives, many parameters).
    Lion,
    /// Adam (noisy objectives, many parameters).
    Adam,
}

impl OptimizerKind {
    /// The name as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Lbfgs => "lbfgs",
            OptimizerKind::Lion => "lion",
            OptimizerKind::Adam => "adam",
        }
    }
}

/// Optimiser settings.
#[derive(Debug, Clone, Copy)]
pub struct OptimSettings {
    /// Which optimiser.
    pub kind: OptimizerKind,
    /// Learning rate (Lion/Adam).
    pub lr: f64,
    /// Iteration cap (L-BFGS) or budget (Lion/Adam).
    pub iterations: usize,
    /// Global-norm gradient clipping (Lion/Adam).
    pub clip: Option<f64>,
}

/// What an optimisation returned.
#[derive(Debug, Clone)]
pub struct FitOutcome {
    /// The estimate (L-BFGS: last accepted iterate; Lion/Adam: the iterate after the last
    /// update).
    pub theta: Vec<f64>,
    /// The objective at the estimate.
    pub value: f64,
    /// Converged by a tolerance (L-BFGS); `false` for fixed-budget Lion/Adam.
    pub converged: bool,
    /// Iterations.
    pub iterations: usize,
    /// Why it stopped (`StopReason` in `Debug` form, e.g. `GradientTolerance`,
    /// `MaxIterations`).
    pub reason: String,
    /// Objective value per observed iterate (the start, then one per iteration).
    pub trace: Vec<f64>,
    /// Skipped non-finite updates (Lion/Adam).
    pub skipped: usize,
}

/// How an SMC evaluation error enters the optimiser.
///
/// Numerical trouble at θ — θ outside the model's domain, weights that all vanish, a
/// non-finite intermediate, a covariance that is not positive definite — makes θ an
/// inadmissible point: a non-finite value, which L-BFGS backtracks from and Lion/Adam skip
/// (counted in `inadmissible`). Any other error (a configuration the model cannot run) is
/// returned and ends the optimisation.
pub fn admissible(
    result: diffsmc::Result<(f64, Vec<f64>)>,
    n: usize,
    inadmissible: &Cell<usize>,
) -> Result<(f64, Vec<f64>), SmcError> {
    match result {
        Ok(v) => Ok(v),
        Err(
            SmcError::InvalidParameter { .. }
            | SmcError::DegenerateWeights { .. }
            | SmcError::NonFinite { .. }
            | SmcError::NotPositiveDefinite { .. },
        ) => {
            inadmissible.set(inadmissible.get() + 1);
            Ok((f64::NAN, vec![f64::NAN; n]))
        }
        Err(e) => Err(e),
    }
}

/// Prints the warning for evaluations that [`admissible`] turned into non-finite points.
pub fn warn_inadmissible(count: usize) {
    if count > 0 {
        eprintln!(
            "warning: {count} evaluations were not admissible (θ outside the model's domain or degenerate weights); the optimiser backtracked from or skipped them"
        );
    }
}

/// Minimises `f` from `theta0`; `on_iter` is called once per observed iterate (progress
/// bars). An `Err` of `f` ends the run and is returned.
pub fn minimise<E>(
    s: &OptimSettings,
    theta0: &[f64],
    f: impl FnMut(&[f64]) -> Result<(f64, Vec<f64>), E>,
    mut on_iter: impl FnMut(&IterationInfo<'_>),
) -> Result<FitOutcome, CliError>
where
    CliError: From<E>,
{
    if s.iterations == 0 {
        return Err(CliError::flag("iterations", "must be at least 1"));
    }
    let mut trace = Vec::new();
    let mut obs = |info: &IterationInfo<'_>| {
        trace.push(info.value);
        on_iter(info);
        Control::Continue
    };
    let result = match s.kind {
        OptimizerKind::Lbfgs => Lbfgs::new()
            .with_max_iterations(s.iterations)?
            .minimize_with_observer(f, theta0, &mut obs),
        OptimizerKind::Lion => {
            let mut o = Lion::new(s.lr)?.with_max_iterations(s.iterations)?;
            if let Some(c) = s.clip {
                o = o.with_clip_norm(c)?;
            }
            o.minimize_with_observer(f, theta0, &mut obs)
        }
        OptimizerKind::Adam => {
            let mut o = Adam::new(s.lr)?.with_max_iterations(s.iterations)?;
            if let Some(c) = s.clip {
                o = o.with_clip_norm(c)?;
            }
            o.minimize_with_observer(f, theta0, &mut obs)
        }
    };
    let r = match result {
        Ok(r) => r,
        Err(e) => {
            return Err(match e.into_objective_error() {
                Ok(objective_error) => CliError::from(objective_error),
                Err(optim_error) => CliError::Optim(optim_error),
            });
        }
    };
    Ok(FitOutcome {
        theta: r.theta,
        value: r.value,
        converged: r.converged,
        iterations: r.iterations,
        reason: format!("{:?}", r.reason),
        trace,
        skipped: r.skipped_updates,
    })
}
