//! The SMC driver; `step` holds the one particle step it shares with the reverse pass and
//! SMC².

pub mod step;
use crate::error::{Result, SmcError};
use crate::model::FeynmanKac;
use crate::particles::{Particles, weighted_mean_cov};
use crate::resample::Resampler;
use crate::scalar::Scalar;

/// When to resample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    /// Before every transition.
    Always,
    /// When the effective sample size falls below `frac · N` (`0 < frac ≤ 1`).
    EssBelow(f64),
    /// Never (sequential importance sampling).
    Never,
}

impl Trigger {
    /// Validated `EssBelow(frac)`.
    pub fn ess_below(frac: f64) -> Result<Self> {
        if !(frac > 0.0 && frac <= 1.0) {
            return Err(SmcError::invalid(
                "ess trigger fraction",
                frac,
                "a number in (0, 1]",
            ));
        }
        Ok(Trigger::EssBelow(frac))
    }

    /// Whether the trigger resamples `n` particles whose current ESS is `ess` (the rule the
    /// driver applies before each move; public so that other drivers, e.g. a distributed
    /// one, take the same decision).
    ///
    /// ```
    /// use diffsmc::Trigger;
    /// assert!(Trigger::EssBelow(0.5).fires(40.0, 100));
    /// assert!(!Trigger::EssBelow(0.5).fires(60.0, 100));
    /// assert!(Trigger::Always.fires(100.0, 100) && !Trigger::Never.fires(1.0, 100));
    /// ```
    pub fn fires(&self, ess: f64, n: usize) -> bool {
        match *self {
            Trigger::Always => true,
            Trigger::Never => false,
            Trigger::EssBelow(f) => ess < f * n as f64,
        }
    }
}

impl std::str::FromStr for Trigger {
    type Err = SmcError;
    /// `always`, `never`, or `ess:FRAC`.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        match s {
            "always" => Ok(Trigger::Always),
            "never" => Ok(Trigger::Never),
            _ => {
                let frac = s
                    .strip_prefix("ess:")
                    .and_then(|f| f.parse::<f64>().ok())
                    .ok_or_else(|| {
                        SmcError::invalid("trigger", s, "`always`, `never` or `ess:FRAC`")
                    })?;
                Trigger::ess_below(frac)
            }
        }
    }
}

/// Configuration of an SMC run.
///
/// ```
/// use diffsmc::{SmcConfig, Trigger};
/// let c = SmcConfig::new(256).unwrap().with_trigger(Trigger::EssBelow(0.5)).unwrap();
/// assert_eq!(c.n_particles(), 256);
/// assert!(SmcConfig::new(0).is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SmcConfig {
    n_particles: usize,
    trigger: Trigger,
    filter_moments: bool,
    parallel_min_particles: usize,
    history: bool,
    first_resample_step: usize,
}

impl SmcConfig {
    /// `n_particles ≥ 1`, resampling at every step, no moment records.
    pub fn new(n_particles: usize) -> Result<Self> {
        if n_particles == 0 {
            return Err(SmcError::invalid("particles", n_particles, "at least 1"));
        }
        Ok(SmcConfig {
            n_particles,
            trigger: Trigger::Always,
            filter_moments: false,
            parallel_min_particles: 4096,
            history: false,
            first_resample_step: 1,
        })
    }
    /// Sets the resampling trigger (validated).
    pub fn with_trigger(mut self, trigger: Trigger) -> Result<Self> {
        if let Trigger::EssBelow(f) = trigger {
            Trigger::ess_below(f)?;
        }
        self.trigger = trigger;
        Ok(self)
    }
    /// Records the filtering mean and covariance at every step.
    pub fn with_filter_moments(mut self, yes: bool) -> Self {
        self.filter_moments = yes;
        self
    }
    /// Propagation and weighting run on rayon threads when there are at least this many
    /// particles (results do not depend on it). Default 4096.
    pub fn with_parallel_min_particles(mut self, n: usize) -> Self {
        self.parallel_min_particles = n.max(1);
        self
    }
    /// Keeps the run's [`History`] (every step's filtering particles and normalised
    /// log-weights, and the genealogy where the resampler reports it) in
    /// [`SmcOutput::history`], for the smoothers of [`crate::smooth`]. Memory `O(T·N·d)`.
    /// Off by default; when off nothing is recorded or allocated.
    ///
    /// ```
    /// use diffsmc::SmcConfig;
    /// let c = SmcConfig::new(64)?.with_history(true);
    /// assert!(c.history());
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn with_history(mut self, yes: bool) -> Self {
        self.history = yes;
        self
    }
    /// Whether the run keeps its [`History`].
    pub fn history(&self) -> bool {
        self.history
    }
    /// Consults the trigger only from step `step` on: before the move to a step `t < step`
    /// the particles are never resampled (their weights accumulate). The default, 1, lets the
    /// trigger decide before every move (there is no resampling before step 0, so 0 means
    /// the same as 1). A schedule such as the paper's vision-pendulum setting 2 ("resample at
    /// every step j > 10") is `Trigger::Always` with `with_first_resample_step(11)`.
    ///
    /// ```
    /// use diffsmc::{SmcConfig, Trigger};
    /// let c = SmcConfig::new(16)?.with_first_resample_step(11);
    /// assert!(!c.resamples_at(10, 1.0));
    /// assert!(c.resamples_at(11, 16.0));
    /// let ess = SmcConfig::new(16)?.with_trigger(Trigger::EssBelow(0.5))?;
    /// assert!(ess.resamples_at(1, 7.9) && !ess.resamples_at(1, 8.0));
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn with_first_resample_step(mut self, step: usize) -> Self {
        self.first_resample_step = step.max(1);
        self
    }
    /// The first step before whose move the trigger is consulted (default 1).
    pub fn first_resample_step(&self) -> usize {
        self.first_resample_step
    }
    /// The driver's decision before the move to step `t` (`t ≥ 1`), given the ESS of the
    /// current normalised weights: the trigger's, from [`Self::first_resample_step`] on.
    /// Public so that other drivers (e.g. the distributed ones) decide the same way.
    pub fn resamples_at(&self, t: usize, ess: f64) -> bool {
        t >= self.first_resample_step && self.trigger.fires(ess, self.n_particles)
    }
    /// Number of particles.
    pub fn n_particles(&self) -> usize {
        self.n_particles
    }
    /// The trigger.
    pub fn trigger(&self) -> Trigger {
        self.trigger
    }
    /// Whether the run records filtering moments.
    pub fn filter_moments(&self) -> bool {
        self.filter_moments
    }
    /// The particle count from which propagation and weighting run on rayon threads.
    pub fn parallel_min_particles(&self) -> usize {
        self.parallel_min_particles
    }
}

/// What an SMC run produced.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SmcOutput<S> {
    /// The log-likelihood estimate `Σ_t log(Σ_i W_{t-1}^i G_t(X^i))` (for `t = 0` the
    /// previous weights are uniform).
    pub log_likelihood: S,
    /// Per step: the log-likelihood increment.
    pub log_likelihood_increments: Vec<S>,
    /// Per step: the ESS after weighting.
    pub ess: Vec<f64>,
    /// Per step: whether the particles were resampled before the move to this step
    /// (always `false` at step 0).
    pub resampled: Vec<bool>,
    /// Per step: whether the resampler reported convergence (`true` when it did not resample
    /// or is not iterative).
    pub resampler_converged: Vec<bool>,
    /// Per step (with [`SmcConfig::with_filter_moments`]): the weighted mean of the particles.
    pub filter_means: Vec<Vec<S>>,
    /// Per step (with [`SmcConfig::with_filter_moments`]): the weighted covariance, row-major.
    pub filter_covs: Vec<Vec<S>>,
    /// The particles at the last step.
    pub particles: Particles<S>,
    /// Their normalised log-weights.
    pub log_weights: Vec<S>,
    /// The run's history, with [`SmcConfig::with_history`] (else `None`).
    pub history: Option<History<S>>,
}

/// How the particles of step `t` descend from those of step `t − 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ancestry {
    /// Step 0: no parent step.
    Initial,
    /// Not resampled before the move to `t`: particle `i` at `t` was moved from particle `i`.
    Identity,
    /// Resampled by an index resampler: particle `i` at `t` was moved from particle
    /// `ancestors[i]` of step `t − 1`.
    Indices(Vec<usize>),
    /// Resampled by a resampler that does not copy by index (diffusion, OT, …): the
    /// genealogy is not defined.
    Unknown,
}

/// What a run keeps with [`SmcConfig::with_history`]: per step `t`, the filtering particles
/// `X_t` and their normalised log-weights `log W_t` (after weighting, so
/// `Σ_i W_t^i δ(X_t^i)` approximates `p(x_t | y_0..y_t)` for a bootstrap filter), and the
/// [`Ancestry`] linking step `t` to step `t − 1`.
///
/// ```
/// use diffsmc::prelude::*;
/// use diffsmc::smc::Ancestry;
/// # struct M;
/// # impl<S: Scalar> StateSpaceModel<S> for M {
/// #     fn state_dim(&self) -> usize { 1 }
/// #     fn n_observations(&self) -> usize { 3 }
/// #     fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) { x[0] = S::cst(standard_normal(rng)); }
/// #     fn sample_transition(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) { x[0] = xp[0] * 0.5 + standard_normal(rng); }
/// #     fn observation_log_density(&self, _t: usize, x: &[S]) -> S { x[0] * x[0] * -0.5 }
/// # }
/// let config = SmcConfig::new(16)?.with_history(true);
/// let out: SmcOutput<f64> = Smc::new(config).run(&Bootstrap(M), &Systematic, 1)?;
/// let h = out.history.as_ref().unwrap();
/// assert_eq!((h.len(), h.n_particles(), h.dim()), (3, 16, 1));
/// assert!(matches!(h.ancestry[1], Ancestry::Indices(ref a) if a.len() == 16));
/// assert!(h.has_genealogy());
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct History<S> {
    /// Per step: the filtering particles.
    pub particles: Vec<Particles<S>>,
    /// Per step: their normalised log-weights.
    pub log_weights: Vec<Vec<S>>,
    /// Per step: how its particles descend from the previous step's.
    pub ancestry: Vec<Ancestry>,
}

impl<S> History<S> {
    /// Number of steps `T`.
    pub fn len(&self) -> usize {
        self.particles.len()
    }
    /// Whether no step was recorded.
    pub fn is_empty(&self) -> bool {
        self.particles.is_empty()
    }
    /// Number of particles `N`.
    pub fn n_particles(&self) -> usize {
        self.particles.first().map_or(0, Particles::len)
    }
    /// State dimension `d`.
    pub fn dim(&self) -> usize {
        self.particles.first().map_or(0, Particles::dim)
    }
    /// Whether the genealogy is known at every step (no [`Ancestry::Unknown`]).
    pub fn has_genealogy(&self) -> bool {
        !self.ancestry.iter().any(|a| matches!(a, Ancestry::Unknown))
    }
}

impl<S> SmcOutput<S> {
    /// Number of steps at which the particles were resampled.
    pub fn n_resampled(&self) -> usize {
        self.resampled.iter().filter(|&&r| r).count()
    }
}

/// The SMC sampler.
#[derive(Debug, Clone)]
pub struct Smc {
    config: SmcConfig,
}

/// Particles per block of the move-and-weighting loop (fixed, so that results do not depend on
/// the number of threads; by the contract of [`FeynmanKac::move_block`] they do not depend on
/// it either).
const MOVE_BLOCK: usize = 256;

/// Moves the particles in fixed blocks of [`MOVE_BLOCK`] ([`crate::par`]) with
/// [`FeynmanKac::move_block`] and adds each particle's log-potential to its `lw`: block `c`
/// is particles `c · MOVE_BLOCK ..`, moved from `x_prev`'s rows of the same particles (`None`
/// at step 0).
fn move_blocks<S: Scalar, M: FeynmanKac<S> + ?Sized>(
    model: &M,
    t: usize,
    key: crate::rng::StreamKey,
    d: usize,
    x_prev: Option<&[S]>,
    x: &mut [S],
    lw: &mut [S],
    parallel: bool,
) {
    let d1 = d.max(1);
    crate::par::for_each_chunk_pair_mut::<S, _, _>(
        x,
        MOVE_BLOCK * d1,
        lw,
        MOVE_BLOCK,
        parallel,
        |c, xc, lc| {
            let first = c * MOVE_BLOCK;
            let m = lc.len();
            let xp = x_prev.map(|p| &p[first * d..(first + m) * d]);
            let mut g = vec![S::zero(); m];
            model.move_block(t, key, first, xp, xc, &mut g);
            for (l, gi) in lc.iter_mut().zip(g) {
                *l += gi;
            }
        },
    );
}

/// `log Σ exp(lw)` and the ESS `(Σ w)² / Σ w²` (value part) from one pass of exponentials:
/// the normaliser [`Smc::run`] computes at every step (public so that other drivers, e.g. a
/// distributed one, reproduce it bit for bit).
///
/// ```
/// let (lse, ess) = diffsmc::smc::log_sum_exp_and_ess(&[0.0_f64, 0.0]);
/// assert!((lse - 2f64.ln()).abs() < 1e-15 && (ess - 2.0).abs() < 1e-12);
/// ```
///
/// For `f64` and the forward-mode duals the exponentials of the value parts are the
/// vectorised kernel of the resamplers (relative error < 1e-15 against `f64::exp`) summed in
/// a fixed lane order, so the value part is the same bits for `f64` and for every dual width,
/// on every thread count and CPU; it equals [`crate::log_sum_exp`] up to rounding. The
/// derivative parts are those of `m + ln Σ exp(x − m)` (each `exp(x − m)` has derivative
/// `exp(x − m)·(x' − m')`). Tape scalars use the operations of [`crate::log_sum_exp`]. Any NaN
/// gives a NaN log-sum-exp, all `-inf` gives `-inf`.
pub fn log_sum_exp_and_ess<S: Scalar>(lw: &[S]) -> (S, f64) {
    /// Derivative lanes handled by the fast path (wider duals take the plain one).
    const MAX_LANES: usize = 32;
    match S::LANES {
        Some(p) if p <= MAX_LANES && !lw.is_empty() => {
            LSE_SCRATCH.with(|c| match c.try_borrow_mut() {
                Ok(mut buf) => lse_and_ess_lanes(lw, p, &mut buf),
                Err(_) => lse_and_ess_lanes(lw, p, &mut Vec::new()),
            })
        }
        _ => lse_and_ess_plain(lw),
    }
}

thread_local! {
    /// The value parts and exponentials of [`log_sum_exp_and_ess`] (no per-step allocation).
    static LSE_SCRATCH: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`log_sum_exp_and_ess`] for scalars of `p ≤ 32` derivative lanes (`p = 0`: `f64`).
fn lse_and_ess_lanes<S: Scalar>(lw: &[S], p: usize, buf: &mut Vec<f64>) -> (S, f64) {
    buf.clear();
    buf.extend(lw.iter().map(|x| x.re()));
    let (max, nan) = crate::kernels::max_and_nan(buf);
    if nan || !max.is_finite() {
        // NaN, +inf or all -inf: the plain path's answer.
        return lse_and_ess_plain(lw);
    }
    let (s1, s2) = crate::kernels::exp_shifted_sums(buf, max);
    let ess = s1 * s1 / s2;
    let lse_re = max + s1.ln();
    if p == 0 {
        return (S::cst(lse_re), ess);
    }
    // Derivative lanes: Σ_i e_i (x_i' − m') over the finite entries, then ln's chain rule.
    let imax = lw.iter().position(|x| x.re() == max).unwrap_or(0);
    let mut em = [0.0; 32];
    lw[imax].to_lanes(&mut em[..p]);
    let mut acc = [0.0; 32];
    let mut ex = [0.0; 32];
    for (x, &e) in lw.iter().zip(buf.iter()) {
        if e != 0.0 {
            x.to_lanes(&mut ex[..p]);
            for k in 0..p {
                acc[k] += e * (ex[k] - em[k]);
            }
        }
    }
    // d(m + ln s) = m' + s'/s.
    let mut eps = [0.0; 32];
    for k in 0..p {
        eps[k] = em[k] + acc[k] / s1;
    }
    (S::from_lanes(lse_re, &eps[..p]), ess)
}

/// [`log_sum_exp_and_ess`] with the operations of [`crate::log_sum_exp`] (tape scalars and
/// the non-finite cases).
fn lse_and_ess_plain<S: Scalar>(lw: &[S]) -> (S, f64) {
    let mut imax = None;
    let mut max = f64::NEG_INFINITY;
    for (i, x) in lw.iter().enumerate() {
        let r = x.re();
        if r.is_nan() {
            return (*x, f64::NAN);
        }
        if r > max {
            max = r;
            imax = Some(i);
        }
    }
    let Some(imax) = imax else {
        return (S::cst(f64::NEG_INFINITY), 0.0);
    };
    if max == f64::INFINITY {
        return (lw[imax], f64::NAN);
    }
    let m = lw[imax];
    let mut acc = S::zero();
    let mut s2 = 0.0;
    for x in lw {
        if x.re() != f64::NEG_INFINITY {
            let e = (*x - m).exp();
            let er = e.re();
            s2 += er * er;
            acc += e;
        }
    }
    let s1 = acc.re();
    (m + acc.ln(), s1 * s1 / s2)
}

/// The value parts of one run's states, for the checkpointed reverse pass
/// ([`crate::grad`]): per step `t`, the normalised particles and log-weights after weighting,
/// and (when the particles were resampled before the move to `t`) the resampler's output.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    /// Per step: particles (particle-major) and normalised log-weights.
    pub states: Vec<(Vec<f64>, Vec<f64>)>,
    /// Per step: the resampled particles and log-weights the move to `t` started from.
    pub resampled: Vec<Option<(Vec<f64>, Vec<f64>)>>,
}

fn values<S: Scalar>(v: &[S]) -> Vec<f64> {
    v.iter().map(|x| x.re()).collect()
}

impl Smc {
    /// A sampler with this configuration.
    pub fn new(config: SmcConfig) -> Self {
        Smc { config }
    }

    /// The configuration.
    pub fn config(&self) -> &SmcConfig {
        &self.config
    }

    /// Runs the particle filter for `model` with `resampler`; `seed` fixes every random draw.
    ///
    /// Errors: [`SmcError::DegenerateWeights`] naming the step where all weights vanished (or
    /// became NaN); errors of the resampler; a model with zero steps or zero dimension;
    /// [`SmcError::IncompatibleResampler`] for a resampler that moves particles and a model
    /// that [requires index resampling](FeynmanKac::requires_index_resampling).
    pub fn run<S, M, R>(&self, model: &M, resampler: &R, seed: u64) -> Result<SmcOutput<S>>
    where
        S: Scalar,
        M: FeynmanKac<S> + ?Sized,
        R: Resampler<S> + ?Sized,
    {
        self.run_traced(model, resampler, seed, None)
    }

    /// [`Smc::run`], optionally recording the value parts of every step's state for a
    /// checkpointed reverse pass.
    pub(crate) fn run_traced<S, M, R>(
        &self,
        model: &M,
        resampler: &R,
        seed: u64,
        mut trace: Option<&mut Trace>,
    ) -> Result<SmcOutput<S>>
    where
        S: Scalar,
        M: FeynmanKac<S> + ?Sized,
        R: Resampler<S> + ?Sized,
    {
        let n = self.config.n_particles;
        let d = model.dim();
        let steps = model.n_steps();
        if steps == 0 {
            return Err(SmcError::invalid("model steps", 0, "at least one step"));
        }
        if d == 0 {
            return Err(SmcError::invalid("model dimension", 0, "at least 1"));
        }
        check_resampler(model, resampler)?;
        let parallel = n >= self.config.parallel_min_particles;
        let moments = self.config.filter_moments;
        let ln_n = (n as f64).ln();

        let mut cur = Particles::<S>::zeros(n, d);
        let mut prev = Particles::<S>::zeros(n, d);
        let mut res = Particles::<S>::zeros(n, d);
        let mut lw = vec![S::zero(); n];
        let mut lw_res = vec![S::zero(); n];

        let mut out_inc = Vec::with_capacity(steps);
        let mut out_ess = Vec::with_capacity(steps);
        let mut out_res = Vec::with_capacity(steps);
        let mut out_conv = Vec::with_capacity(steps);
        let mut means = Vec::new();
        let mut covs = Vec::new();
        let mut history = self.config.history.then(|| History {
            particles: Vec::with_capacity(steps),
            log_weights: Vec::with_capacity(steps),
            ancestry: Vec::with_capacity(steps),
        });
        let mut ancestors: Vec<usize> = Vec::new();

        // Step 0.
        {
            let key = step::move_key(seed, 0);
            move_blocks(
                model,
                0,
                key,
                d,
                None,
                cur.as_mut_slice(),
                &mut lw,
                parallel,
            );
        }
        let mut loglik = S::zero();
        // ESS of the current normalised weights (the one recorded at the previous step).
        let mut cur_ess = n as f64;
        for t in 0..steps {
            if let Some(tr) = trace.as_deref_mut() {
                tr.resampled.push(None);
            }
            let mut resampled = false;
            let mut converged = true;
            let mut ancestry = if t == 0 {
                Ancestry::Initial
            } else {
                Ancestry::Identity
            };
            if t > 0 {
                // Decide on the value part of the current (normalised) weights.
                if self.config.resamples_at(t, cur_ess) {
                    let key = step::resample_key(seed, t);
                    let info = if history.is_some() {
                        resampler.resample_with_ancestors(
                            &cur,
                            &lw,
                            key,
                            &mut res,
                            &mut lw_res,
                            &mut ancestors,
                        )?
                    } else {
                        resampler.resample(&cur, &lw, key, &mut res, &mut lw_res)?
                    };
                    if info.resampled && history.is_some() {
                        ancestry = if ancestors.len() == n {
                            Ancestry::Indices(std::mem::take(&mut ancestors))
                        } else {
                            Ancestry::Unknown
                        };
                    }
                    if info.resampled {
                        std::mem::swap(&mut res, &mut cur);
                        std::mem::swap(&mut lw_res, &mut lw);
                        if let Some(tr) = trace.as_deref_mut() {
                            tr.resampled[t] = Some((values(cur.as_slice()), values(&lw)));
                        }
                    }
                    resampled = info.resampled;
                    converged = info.converged;
                }
                std::mem::swap(&mut prev, &mut cur);
                let key = step::move_key(seed, t);
                move_blocks(
                    model,
                    t,
                    key,
                    d,
                    Some(prev.as_slice()),
                    cur.as_mut_slice(),
                    &mut lw,
                    parallel,
                );
            }
            // Increment: previous weights normalised (uniform at t = 0). One pass of
            // exponentials gives the increment, the normaliser and the ESS.
            let (lse, step_ess) = log_sum_exp_and_ess(&lw);
            if !lse.re().is_finite() {
                // All weights -inf, or a NaN or +inf weight.
                return Err(SmcError::DegenerateWeights { step: t });
            }
            let inc = if t == 0 { lse - ln_n } else { lse };
            for w in lw.iter_mut() {
                *w -= lse;
            }
            cur_ess = step_ess;
            if let Some(tr) = trace.as_deref_mut() {
                tr.states.push((values(cur.as_slice()), values(&lw)));
            }
            if let Some(h) = history.as_mut() {
                h.particles.push(cur.clone());
                h.log_weights.push(lw.clone());
                h.ancestry.push(ancestry);
            }
            loglik += inc;
            out_inc.push(inc);
            out_ess.push(step_ess);
            out_res.push(resampled);
            out_conv.push(converged);
            if moments {
                let (m, c) = weighted_mean_cov(&cur, &lw);
                means.push(m);
                covs.push(c);
            }
        }
        Ok(SmcOutput {
            log_likelihood: loglik,
            log_likelihood_increments: out_inc,
            ess: out_ess,
            resampled: out_res,
            resampler_converged: out_conv,
            filter_means: means,
            filter_covs: covs,
            particles: cur,
            log_weights: lw,
            history,
        })
    }
}

/// [`SmcError::IncompatibleResampler`] if `model` requires index resampling and `resampler`
/// moves particles; shared by every driver that runs a [`FeynmanKac`] model.
pub(crate) fn check_resampler<S, M, R>(model: &M, resampler: &R) -> Result<()>
where
    S: Scalar,
    M: FeynmanKac<S> + ?Sized,
    R: Resampler<S> + ?Sized,
{
    match model.requires_index_resampling() {
        Some(reason) if !resampler.copies_by_index() => Err(SmcError::IncompatibleResampler {
            resampler: resampler.name(),
            reason,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_dual::{DualSVec64, DualStruct};

    /// The fast path against the plain one (the operations of `log_sum_exp`), value and
    /// derivative lanes, for lengths around the lane width: the value within 1e-14 (the fast
    /// exponential's 1e-15 and a reassociated sum), derivatives within 1e-13 relative.
    #[test]
    fn lanes_path_matches_the_plain_path() {
        for n in [1usize, 3, 8, 13, 64, 257] {
            let lw: Vec<DualSVec64<2>> = (0..n)
                .map(|i| {
                    let x = -(((i * 29) % 31) as f64) * 0.37 + 0.1;
                    DualSVec64::<2>::from_re(x)
                        + DualSVec64::<2>::from_re(0.0).derivative(0) * (i as f64 * 0.1)
                        + DualSVec64::<2>::from_re(0.0).derivative(1) * (1.0 - x)
                })
                .collect();
            let (fast, ess_fast) = log_sum_exp_and_ess(&lw);
            let (plain, ess_plain) = lse_and_ess_plain(&lw);
            assert!((fast.re() - plain.re()).abs() < 1e-14, "n = {n}");
            assert!((ess_fast - ess_plain).abs() < 1e-12 * ess_plain, "n = {n}");
            let (mut a, mut b) = ([0.0; 2], [0.0; 2]);
            fast.to_lanes(&mut a);
            plain.to_lanes(&mut b);
            for k in 0..2 {
                assert!((a[k] - b[k]).abs() < 1e-13 * b[k].abs().max(1.0), "n = {n}");
            }
            // The value part is the same bits as the f64 run's.
            let values: Vec<f64> = lw.iter().map(|x| x.re()).collect();
            let (v64, ess64) = log_sum_exp_and_ess(&values);
            assert_eq!(v64.to_bits(), fast.re().to_bits());
            assert_eq!(ess64.to_bits(), ess_fast.to_bits());
        }
        // Non-finite inputs keep the plain path's answers.
        let (l, e) = log_sum_exp_and_ess(&[0.0, f64::NAN]);
        assert!(l.is_nan() && e.is_nan());
        let (l, e) = log_sum_exp_and_ess(&[f64::NEG_INFINITY; 3]);
        assert_eq!((l, e), (f64::NEG_INFINITY, 0.0));
        let (l, _) = log_sum_exp_and_ess(&[0.0, f64::INFINITY]);
        assert_eq!(l, f64::INFINITY);
        let (l, e) = log_sum_exp_and_ess(&[f64::NEG_INFINITY, 0.0]);
        assert_eq!((l, e), (0.0, 1.0));
    }

    /// A step schedule: with `Always` from step 6, the run equals sequential importance
    /// sampling up to step 5 (the same increments, bit for bit: no resampling draws are made
    /// and the move streams are keyed by step and particle) and resamples at every later step;
    /// a schedule past the last step is `Never`. Both facts would break if the driver consulted
    /// the trigger before the first scheduled step or ignored the schedule.
    #[test]
    fn first_resample_step_delays_the_trigger() {
        use crate::model::Bootstrap;
        use crate::resample::Systematic;
        use crate::testing::models::Ar1Model;
        let ys: Vec<f64> = (0..12).map(|t| ((t * 7) % 5) as f64 * 0.4 - 0.8).collect();
        let model = Bootstrap(Ar1Model::new(0.8, 1.0, 0.5, 0.4, ys).unwrap());
        let run =
            |c: SmcConfig| -> SmcOutput<f64> { Smc::new(c).run(&model, &Systematic, 7).unwrap() };
        let base = SmcConfig::new(64).unwrap();
        let sched = run(base.clone().with_first_resample_step(6));
        let never = run(base.clone().with_trigger(Trigger::Never).unwrap());
        let always = run(base.clone());
        let expected: Vec<bool> = (0..12).map(|t| t >= 6).collect();
        assert_eq!(sched.resampled, expected);
        for t in 0..6 {
            assert_eq!(
                sched.log_likelihood_increments[t].to_bits(),
                never.log_likelihood_increments[t].to_bits(),
                "step {t}"
            );
        }
        assert_ne!(
            sched.log_likelihood.to_bits(),
            never.log_likelihood.to_bits()
        );
        assert_ne!(
            sched.log_likelihood.to_bits(),
            always.log_likelihood.to_bits()
        );
        let late = run(base.clone().with_first_resample_step(100));
        assert_eq!(
            late.log_likelihood.to_bits(),
            never.log_likelihood.to_bits()
        );
        // 0 and 1 both mean "from the first move".
        let zero = run(base.with_first_resample_step(0));
        assert_eq!(
            zero.log_likelihood.to_bits(),
            always.log_likelihood.to_bits()
        );
    }
}
