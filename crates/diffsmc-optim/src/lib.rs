//! Optimisers for noisy, possibly non-finite objectives over `θ ∈ Rⁿ` (`f64`).
//!
//! The objective is any closure `FnMut(&[f64]) -> (f64, Vec<f64>)` returning the value to
//! **minimise** (e.g. a negative log-likelihood) and its gradient, or a fallible one returning
//! `Result<(f64, Vec<f64>), E>` (see [`Objective`]); an `Err` ends the run and comes back as
//! [`OptimError::Objective`]. Non-finite values or gradients are not errors and are never
//! propagated into θ: L-BFGS backtracks away from them, Adam and Lion skip (and count) the
//! update.
//!
//! Every optimiser is a [`Minimizer`] (`minimize`, `minimize_with_observer`) returning a
//! [`Minimum`] with a [`StopReason`]. Adam and Lion are two update rules ([`AdamRule`],
//! [`LionRule`], see [`FirstOrderRule`]) of one first-order driver [`FirstOrder`], which does
//! the clipping, skipping, budget and observing.
//!
//! # Which optimiser?
//!
//! * [`Lbfgs`] — quasi-Newton with a strong-Wolfe line search. Choose it when the objective is
//!   a *smooth, deterministic* function of θ: the exact Kalman-filter negative log-likelihood of
//!   a linear-Gaussian model, or a particle-filter estimate that is made smooth in θ by a
//!   differentiable (diffusion) resampling step **and** common random numbers (the same random
//!   stream for every θ). Then line searches are meaningful and L-BFGS converges in tens of
//!   iterations where first-order methods need thousands. It stops on tolerances and reports
//!   why ([`StopReason`]).
//! * [`Adam`] — choose it for *noisy* objectives (fresh randomness at every evaluation, e.g.
//!   a particle filter without common random numbers), for many parameters, and for neural
//!   model components. The per-coordinate step is roughly `lr` regardless of the gradient
//!   scale, and there is no line search to be fooled by noise. Runs for a fixed budget
//!   ([`FirstOrder::with_max_iterations`]).
//! * [`Lion`] — same use cases as Adam with half the state (one momentum vector) and a
//!   sign-based update of exactly `lr` per coordinate, which makes it insensitive to gradient
//!   outliers; use a learning rate 3–10× smaller than for Adam.
//!
//! Both first-order methods support global-norm gradient clipping
//! ([`FirstOrder::with_clip_norm`]) and expose a stateful [`FirstOrder::step`] API besides
//! the `minimize` drivers.
//!
//! # Observing a run
//!
//! [`Minimizer::minimize_with_observer`] takes an [`Observer`]: `()` for
//! nothing, a [`Trace`] to record loss traces, or a closure `|info: &IterationInfo| ...`
//! returning `()`, `bool` (`false` = stop) or [`Control`].
//!
//! # Configuration errors
//!
//! All knobs are set through `with_*` methods that validate their argument and return
//! [`OptimError::InvalidKnob`] naming the [`Knob`] and the rejected value.
//!
//! # Example
//! ```
//! use diffsmc_optim::{Adam, Lbfgs, Minimizer, Trace};
//!
//! // An anisotropic quadratic with minimum at (3, −1).
//! let f = |x: &[f64]| {
//!     let (a, b) = (x[0] - 3.0, x[1] + 1.0);
//!     (a * a + 10.0 * b * b, vec![2.0 * a, 20.0 * b])
//! };
//!
//! let mut trace = Trace::without_theta();
//! let lbfgs = Lbfgs::new().minimize_with_observer(f, &[0.0, 0.0], &mut trace)?;
//! assert!(lbfgs.converged);
//! assert!((lbfgs.theta[0] - 3.0).abs() < 1e-5 && (lbfgs.theta[1] + 1.0).abs() < 1e-5);
//! assert!(trace.values().windows(2).all(|w| w[1] <= w[0])); // monotone decrease
//!
//! let adam = Adam::new(0.05)?.with_clip_norm(10.0)?.with_max_iterations(3000)?;
//! let adam = adam.minimize(f, &[0.0, 0.0])?;
//! assert!((adam.theta[0] - 3.0).abs() < 1e-3 && (adam.theta[1] + 1.0).abs() < 1e-3);
//! # Ok::<(), diffsmc_optim::OptimError>(())
//! ```

mod adam;
mod error;
mod first_order;
mod lbfgs;
mod lion;
mod minimizer;
mod objective;
mod observer;
mod vecops;

pub use adam::{Adam, AdamRule, AdamState};
pub use error::{Knob, OptimError};
pub use first_order::{
    DEFAULT_FIRST_ORDER_ITERATIONS, FirstOrder, FirstOrderRule, SkipReason, StepOutcome,
};
pub use lbfgs::Lbfgs;
pub use lion::{Lion, LionRule};
pub use minimizer::{Minimizer, Minimum, StopReason};
pub use objective::{Evaluation, Objective};
pub use observer::{Control, IterationInfo, Observer, Trace, TraceRecord};
