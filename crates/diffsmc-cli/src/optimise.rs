//! The optimiser choice shared by `fit` and the experiments.

use diffsmc_optim::{Adam, Control, IterationInfo, Lbfgs, Lion};

use crate::error::CliError;

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
    /// The estimate (L-BFGS: last iterate; Lion/Adam: last iterate).
    pub theta: Vec<f64>,
    /// The objective at the estimate (for Lion/Adam: the last evaluated value).
    pub value: f64,
    /// Converged by a tolerance (L-BFGS); `false` for fixed-budget Lion/Adam.
    pub converged: bool,
    /// Iterations.
    pub iterations: usize,
    /// Why it stopped.
    pub reason: String,
    /// Objective value per iteration.
    pub trace: Vec<f64>,
    /// Skipped non-finite updates (Lion/Adam).
    pub skipped: usize,
}

/// Minimises `f` from `theta0`; `on_iter` is called once per iteration (progress bars).
pub fn minimise(
    s: &OptimSettings,
    theta0: &[f64],
    mut f: impl FnMut(&[f64]) -> (f64, Vec<f64>),
    mut on_iter: impl FnMut(&IterationInfo<'_>),
) -> Result<FitOutcome, CliError> {
    if s.iterations == 0 {
        return Err(CliError::flag("iterations", "must be at least 1"));
    }
    let mut trace = Vec::new();
    let mut obs = |info: &IterationInfo<'_>| {
        trace.push(info.value);
        on_iter(info);
        Control::Continue
    };
    match s.kind {
        OptimizerKind::Lbfgs => {
            let r = Lbfgs::new()
                .with_max_iterations(s.iterations)?
                .minimize_with_observer(&mut f, theta0, &mut obs)?;
            Ok(FitOutcome {
                theta: r.theta,
                value: r.value,
                converged: r.converged,
                iterations: r.iterations,
                reason: format!("{:?}", r.reason),
                trace,
                skipped: 0,
            })
        }
        OptimizerKind::Lion | OptimizerKind::Adam => {
            let r = if s.kind == OptimizerKind::Lion {
                let mut o = Lion::new(s.lr)?;
                if let Some(c) = s.clip {
                    o = o.with_clip_norm(c)?;
                }
                o.minimize_with_observer(&mut f, theta0, s.iterations, &mut obs)?
            } else {
                let mut o = Adam::new(s.lr)?;
                if let Some(c) = s.clip {
                    o = o.with_clip_norm(c)?;
                }
                o.minimize_with_observer(&mut f, theta0, s.iterations, &mut obs)?
            };
            let value = r.values.last().copied().unwrap_or(f64::NAN);
            Ok(FitOutcome {
                theta: r.theta,
                value,
                converged: false,
                iterations: r.iterations,
                reason: "iteration budget".to_string(),
                trace,
                skipped: r.skipped,
            })
        }
    }
}
