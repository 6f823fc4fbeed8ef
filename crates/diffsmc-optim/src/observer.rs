//! Per-iteration observation hooks (progress display, loss traces, early stopping).

/// What an [`Observer`] sees once per iteration.
///
/// For L-BFGS, iteration `k` is the `k`-th accepted iterate (`0` is the start point). For Adam
/// and Lion, iteration `k` is the `k`-th iterate, observed *before* the update computed from
/// its gradient is applied; the last observation (iteration `max_iterations`) is the final
/// iterate. Either way a full run makes `iterations + 1` observations.
#[derive(Debug, Clone, Copy)]
pub struct IterationInfo<'a> {
    /// Iteration index, starting at 0.
    pub iteration: usize,
    /// Objective value at `theta` (may be non-finite for Adam/Lion, whose update is then
    /// skipped; always finite for L-BFGS).
    pub value: f64,
    /// Euclidean norm of the (unclipped) gradient at `theta`; NaN or ∞ if the gradient is not
    /// finite.
    pub gradient_norm: f64,
    /// The current parameters.
    pub theta: &'a [f64],
    /// Objective evaluations so far, including line-search trial points.
    pub evaluations: usize,
}

/// Whether the optimiser should go on after an observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Control {
    /// Keep iterating.
    #[default]
    Continue,
    /// Stop now; the optimiser returns its current state.
    Stop,
}

impl From<()> for Control {
    /// `()` means "just observing": [`Control::Continue`].
    fn from((): ()) -> Self {
        Control::Continue
    }
}

impl From<bool> for Control {
    /// `true` means continue, `false` means stop.
    fn from(keep_going: bool) -> Self {
        if keep_going {
            Control::Continue
        } else {
            Control::Stop
        }
    }
}

/// A hook called once per iteration by every optimiser driver.
///
/// Implemented by:
/// * `()` — does nothing;
/// * [`Trace`] — records every iteration (for loss-trace plots);
/// * any closure `FnMut(&IterationInfo) -> R` where `R` is [`Control`], `bool` (`true` =
///   continue) or `()` (always continue).
///
/// Drivers take the observer by `&mut`, so it can be inspected afterwards.
///
/// ```
/// use diffsmc_optim::{Control, IterationInfo, Observer};
///
/// // Stop as soon as the value drops below 1.
/// let mut stop_early = |info: &IterationInfo<'_>| info.value >= 1.0;
/// let theta = [0.5];
/// let info = IterationInfo { iteration: 0, value: 0.25, gradient_norm: 1.0, theta: &theta, evaluations: 1 };
/// assert_eq!(stop_early.observe(&info), Control::Stop);
/// ```
pub trait Observer {
    /// Called once per iteration; return [`Control::Stop`] to end the run early.
    fn observe(&mut self, info: &IterationInfo<'_>) -> Control;
}

impl Observer for () {
    fn observe(&mut self, _info: &IterationInfo<'_>) -> Control {
        Control::Continue
    }
}

impl<F, R> Observer for F
where
    F: FnMut(&IterationInfo<'_>) -> R,
    R: Into<Control>,
{
    fn observe(&mut self, info: &IterationInfo<'_>) -> Control {
        self(info).into()
    }
}

/// One recorded iteration of a [`Trace`].
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRecord {
    /// Iteration index.
    pub iteration: usize,
    /// Objective value.
    pub value: f64,
    /// Euclidean norm of the unclipped gradient.
    pub gradient_norm: f64,
    /// Objective evaluations so far.
    pub evaluations: usize,
    /// The parameters at this iteration; empty if the trace was built with
    /// [`Trace::without_theta`].
    pub theta: Vec<f64>,
}

/// An [`Observer`] that records every iteration and never stops the run.
///
/// ```
/// use diffsmc_optim::{Lbfgs, Minimizer, Trace};
///
/// let mut trace = Trace::new();
/// let quadratic = |x: &[f64]| (0.5 * x[0] * x[0], vec![x[0]]);
/// let result = Lbfgs::new().minimize_with_observer(quadratic, &[4.0], &mut trace).unwrap();
/// assert!(result.converged);
/// assert_eq!(trace.len(), result.iterations + 1); // start point plus one record per iteration
/// assert_eq!(trace.records()[0].theta, vec![4.0]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    records: Vec<TraceRecord>,
    record_theta: bool,
}

impl Default for Trace {
    fn default() -> Self {
        Self::new()
    }
}

impl Trace {
    /// An empty trace that records θ at every iteration.
    #[must_use]
    pub fn new() -> Self {
        Self {
            records: Vec::new(),
            record_theta: true,
        }
    }

    /// An empty trace that records values, gradient norms and evaluation counts but not θ
    /// (cheaper for many parameters or many iterations).
    #[must_use]
    pub fn without_theta() -> Self {
        Self {
            records: Vec::new(),
            record_theta: false,
        }
    }

    /// All records, in iteration order.
    #[must_use]
    pub fn records(&self) -> &[TraceRecord] {
        &self.records
    }

    /// The recorded objective values, in iteration order (the loss trace).
    #[must_use]
    pub fn values(&self) -> Vec<f64> {
        self.records.iter().map(|r| r.value).collect()
    }

    /// The recorded gradient norms, in iteration order.
    #[must_use]
    pub fn gradient_norms(&self) -> Vec<f64> {
        self.records.iter().map(|r| r.gradient_norm).collect()
    }

    /// Number of records.
    #[must_use]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether nothing has been recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Forgets all records (keeps the θ-recording setting).
    pub fn clear(&mut self) {
        self.records.clear();
    }
}

impl Observer for Trace {
    fn observe(&mut self, info: &IterationInfo<'_>) -> Control {
        self.records.push(TraceRecord {
            iteration: info.iteration,
            value: info.value,
            gradient_norm: info.gradient_norm,
            evaluations: info.evaluations,
            theta: if self.record_theta {
                info.theta.to_vec()
            } else {
                Vec::new()
            },
        });
        Control::Continue
    }
}
