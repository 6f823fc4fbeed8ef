//! Adaptive tempered SMC: from the prior (`β = 0`) to the posterior (`β = 1`) through
//! `π_β(x) ∝ p(x) L(x)^β`, with the next `β` chosen by bisection on the conditional ESS,
//! resampling by any [`Resampler`], MCMC rejuvenation ([`MoveKind`]) with an adapted step size
//! and number of moves, and optionally waste-free SMC.

use super::moves::{Kernel, MoveKind, Preconditioner, evaluate, sweep};
use super::target::StaticTarget;
use super::waste_free::run_chains;
use crate::error::{Result, SmcError};
use crate::particles::{Particles, ess, weighted_mean_cov};
use crate::resample::Resampler;
use crate::rng::{Purpose, StreamKey};
use crate::scalar::log_sum_exp;

/// Stream tags of the sampler (kept apart from the filter's purposes).
const TAG_INIT: u32 = 0x5350_0001;
const TAG_MOVE: u32 = 0x5350_0002;

/// Knobs of the adaptive tempered sampler. Every `with_*` validates its value.
///
/// ```
/// use diffsmc::samplers::{MoveKind, TemperingConfig};
/// let c = TemperingConfig::new(1000)?
///     .with_move(MoveKind::Mala)?
///     .with_ess_target(0.5)?
///     .with_waste_free(Some(50))?;
/// assert_eq!(c.n_particles(), 1000);
/// assert!(TemperingConfig::new(1000)?.with_ess_target(1.5).is_err());
/// assert!(TemperingConfig::new(1000)?.with_waste_free(Some(7)).is_err()); // 7 ∤ 1000
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TemperingConfig {
    n_particles: usize,
    ess_target: f64,
    kind: MoveKind,
    target_acceptance: Option<f64>,
    initial_step: Option<f64>,
    adapt: bool,
    min_moves: usize,
    max_moves: usize,
    stuck_probability: f64,
    waste_free: Option<usize>,
    max_steps: usize,
}

impl TemperingConfig {
    /// `n_particles ≥ 2`; defaults: ESS target 0.5, random-walk moves adapted towards their
    /// optimal acceptance, 1 to 100 moves per step until a particle has probability below
    /// 0.01 of never having moved, no waste-free, at most 1000 tempering steps.
    pub fn new(n_particles: usize) -> Result<Self> {
        if n_particles < 2 {
            return Err(SmcError::invalid("particles", n_particles, "at least 2"));
        }
        Ok(TemperingConfig {
            n_particles,
            ess_target: 0.5,
            kind: MoveKind::RandomWalk,
            target_acceptance: None,
            initial_step: None,
            adapt: true,
            min_moves: 1,
            max_moves: 100,
            stuck_probability: 0.01,
            waste_free: None,
            max_steps: 1000,
        })
    }
    /// The conditional-ESS fraction `α ∈ (0, 1)` each new temperature keeps.
    pub fn with_ess_target(mut self, alpha: f64) -> Result<Self> {
        if !(alpha > 0.0 && alpha < 1.0) {
            return Err(SmcError::invalid("ess target", alpha, "a number in (0, 1)"));
        }
        self.ess_target = alpha;
        Ok(self)
    }
    /// The MCMC kernel.
    pub fn with_move(mut self, kind: MoveKind) -> Result<Self> {
        if let MoveKind::Hmc { leapfrog } = kind {
            MoveKind::hmc(leapfrog)?;
        }
        self.kind = kind;
        Ok(self)
    }
    /// The acceptance rate the step size is adapted towards, in `(0, 1)` (default: the
    /// kernel's, [`MoveKind::default_target_acceptance`]).
    pub fn with_target_acceptance(mut self, a: f64) -> Result<Self> {
        if !(a > 0.0 && a < 1.0) {
            return Err(SmcError::invalid(
                "target acceptance",
                a,
                "a number in (0, 1)",
            ));
        }
        self.target_acceptance = Some(a);
        Ok(self)
    }
    /// The initial step size `> 0` (whitened coordinates; for the random walk a multiple of
    /// `2.38/√d`). Default: 1 (random walk), `1.65 d^{-1/3}` (MALA), `1.5 d^{-1/4} / L` (HMC).
    pub fn with_initial_step(mut self, h: f64) -> Result<Self> {
        if !(h > 0.0 && h.is_finite()) {
            return Err(SmcError::invalid("initial step", h, "a finite number > 0"));
        }
        self.initial_step = Some(h);
        Ok(self)
    }
    /// Whether the step size is adapted (default true): after each sweep,
    /// `h ← h · exp(2 (acceptance − target))`.
    pub fn with_adaptation(mut self, yes: bool) -> Self {
        self.adapt = yes;
        self
    }
    /// Moves per step: at least `min ≥ 1`, at most `max ≥ min`; in between, until the
    /// probability `(1 − ā)^k` that a particle never moved (ā: the step's mean acceptance so
    /// far) falls below `stuck ∈ (0, 1)`.
    pub fn with_moves(mut self, min: usize, max: usize, stuck: f64) -> Result<Self> {
        if min == 0 {
            return Err(SmcError::invalid("min moves", min, "at least 1"));
        }
        if max < min {
            return Err(SmcError::invalid("max moves", max, "at least min moves"));
        }
        if !(stuck > 0.0 && stuck < 1.0) {
            return Err(SmcError::invalid(
                "stuck probability",
                stuck,
                "a number in (0, 1)",
            ));
        }
        self.min_moves = min;
        self.max_moves = max;
        self.stuck_probability = stuck;
        Ok(self)
    }
    /// Waste-free SMC with chains of length `P ≥ 2` (`Some(P)`; `P` must divide the number
    /// of particles, `M = N / P` chains), or standard resample-move (`None`).
    pub fn with_waste_free(mut self, chain_length: Option<usize>) -> Result<Self> {
        if let Some(p) = chain_length {
            if p < 2 {
                return Err(SmcError::invalid(
                    "waste-free chain length",
                    p,
                    "at least 2",
                ));
            }
            if !self.n_particles.is_multiple_of(p) {
                return Err(SmcError::invalid(
                    "waste-free chain length",
                    p,
                    "a divisor of the number of particles",
                ));
            }
        }
        self.waste_free = chain_length;
        Ok(self)
    }
    /// The cap on tempering steps (≥ 1); exceeding it is an error.
    pub fn with_max_steps(mut self, steps: usize) -> Result<Self> {
        if steps == 0 {
            return Err(SmcError::invalid("max tempering steps", 0, "at least 1"));
        }
        self.max_steps = steps;
        Ok(self)
    }
    /// Number of particles.
    pub fn n_particles(&self) -> usize {
        self.n_particles
    }
    /// The kernel.
    pub fn move_kind(&self) -> MoveKind {
        self.kind
    }
}

/// What a tempered SMC run produced. Per-step vectors have one entry per tempering step
/// `t = 1, …, K` (`temperatures` also holds `β_0 = 0`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TemperingOutput {
    /// `log Ẑ = Σ_t log Σ_i W_{t-1}^i L(X^i)^{β_t − β_{t-1}}`.
    pub log_evidence: f64,
    /// `β_0 = 0 < β_1 < … < β_K = 1`.
    pub temperatures: Vec<f64>,
    /// Per step: the ESS after reweighting (before resampling).
    pub ess: Vec<f64>,
    /// Per step: the mean acceptance probability of the moves.
    pub acceptance: Vec<f64>,
    /// Per step: the number of move sweeps (waste-free: `P − 1`).
    pub n_moves: Vec<usize>,
    /// Per step: the step size of the last sweep.
    pub step_sizes: Vec<f64>,
    /// The final particles (targeting the posterior).
    pub particles: Particles<f64>,
    /// Their normalised log-weights.
    pub log_weights: Vec<f64>,
    /// Their log-likelihoods.
    pub log_likelihoods: Vec<f64>,
}

impl TemperingOutput {
    /// Weighted mean and standard deviation per coordinate of the final particles.
    pub fn mean_sd(&self) -> (Vec<f64>, Vec<f64>) {
        let d = self.particles.dim();
        let (m, c) = weighted_mean_cov(&self.particles, &self.log_weights);
        let sd = (0..d).map(|i| c[i * d + i].max(0.0).sqrt()).collect();
        (m, sd)
    }
}

/// `log CESS(δ) = 2 lse(lw + δℓ) − lse(lw + 2δℓ)` for normalised `lw`, as a fraction of 1.
fn log_cess(lw: &[f64], ll: &[f64], delta: f64, buf: &mut Vec<f64>) -> f64 {
    buf.clear();
    buf.extend(lw.iter().zip(ll).map(|(w, l)| w + delta * l));
    let a = log_sum_exp(buf);
    buf.clear();
    buf.extend(lw.iter().zip(ll).map(|(w, l)| w + 2.0 * delta * l));
    2.0 * a - log_sum_exp(buf)
}

/// The next increment `δ ∈ (0, 1 − β]`: the largest keeping the conditional ESS
/// `(Σ W w)² / Σ W w²` (with `w = L^δ`) at least `alpha`, by bisection; `1 − β` when that
/// already keeps it.
pub(crate) fn next_increment(lw: &[f64], ll: &[f64], beta: f64, alpha: f64) -> f64 {
    let mut buf = Vec::with_capacity(lw.len());
    let target = alpha.ln();
    let max = 1.0 - beta;
    // Log-likelihoods shifted by their maximum (finite ones): CESS is invariant to it, and
    // it keeps the exponentials in range.
    let top = ll
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    let ll: Vec<f64> = ll.iter().map(|v| v - top).collect();
    if log_cess(lw, &ll, max, &mut buf) >= target {
        return max;
    }
    let (mut lo, mut hi) = (0.0, max);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if log_cess(lw, &ll, mid, &mut buf) >= target {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-12 * hi {
            break;
        }
    }
    // Always progress: `lo` can be 0 only if even the smallest δ drops the CESS below α.
    if lo > 0.0 { lo } else { hi }
}

/// The adaptive tempered SMC sampler.
///
/// ```
/// use diffsmc::resample::Systematic;
/// use diffsmc::samplers::{GaussianTarget, MoveKind, TemperingConfig, TemperingSampler};
/// let target = GaussianTarget::example(2)?;
/// let config = TemperingConfig::new(400)?.with_move(MoveKind::RandomWalk)?;
/// let out = TemperingSampler::new(config).run(&target, &Systematic, 1)?;
/// assert_eq!(*out.temperatures.last().unwrap(), 1.0);
/// assert!((out.log_evidence - target.log_evidence()).abs() < 0.5);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone)]
pub struct TemperingSampler {
    config: TemperingConfig,
}

impl TemperingSampler {
    /// A sampler with this configuration.
    pub fn new(config: TemperingConfig) -> Self {
        TemperingSampler { config }
    }
    /// The configuration.
    pub fn config(&self) -> &TemperingConfig {
        &self.config
    }

    /// Runs the sampler on `target` with `resampler` (any resampler of the engine; waste-free
    /// SMC needs one that can draw `M ≠ N` particles, as the index resamplers do); `seed`
    /// fixes every result whatever the number of threads.
    ///
    /// Errors: a zero-dimensional target; a prior draw outside the prior's support or with a
    /// NaN or `+inf` log-likelihood ([`SmcError::NonFinite`], `step` = particle);
    /// [`SmcError::DegenerateWeights`] when every likelihood is zero; more tempering steps
    /// than the cap; the resampler's errors.
    pub fn run<T, R>(&self, target: &T, resampler: &R, seed: u64) -> Result<TemperingOutput>
    where
        T: StaticTarget + ?Sized,
        R: Resampler<f64> + ?Sized,
    {
        let c = &self.config;
        let n = c.n_particles;
        let d = target.dim();
        if d == 0 {
            return Err(SmcError::invalid("target dimension", 0, "at least 1"));
        }
        let target_acc = c
            .target_acceptance
            .unwrap_or_else(|| c.kind.default_target_acceptance());
        let adapt_on = c.adapt;
        let adapt = move |h: f64, a: f64| {
            if adapt_on {
                (h * (2.0 * (a - target_acc)).exp()).clamp(1e-8, 1e3)
            } else {
                h
            }
        };

        // Initial particles from the prior.
        let key0 = StreamKey::new(seed, 0, Purpose::Other(TAG_INIT));
        let mut xs = vec![0.0; n * d];
        for (i, x) in xs.chunks_exact_mut(d).enumerate() {
            target.sample_prior(&mut key0.rng(i), x);
        }
        let mut states = evaluate(target, &xs, d);
        for (i, s) in states.iter().enumerate() {
            if !s.log_prior.is_finite() {
                return Err(SmcError::NonFinite {
                    what: "log prior of a prior draw",
                    step: i,
                    component: 0,
                    value: s.log_prior,
                });
            }
            if s.log_lik.is_nan() || s.log_lik == f64::INFINITY {
                return Err(SmcError::NonFinite {
                    what: "log-likelihood of a prior draw",
                    step: i,
                    component: 0,
                    value: s.log_lik,
                });
            }
        }
        let mut lw = vec![-(n as f64).ln(); n];
        let mut beta = 0.0;
        let mut step = c.initial_step.unwrap_or_else(|| c.kind.initial_step(d));
        let mut out = TemperingOutput {
            log_evidence: 0.0,
            temperatures: vec![0.0],
            ess: Vec::new(),
            acceptance: Vec::new(),
            n_moves: Vec::new(),
            step_sizes: Vec::new(),
            particles: Particles::zeros(0, d),
            log_weights: Vec::new(),
            log_likelihoods: Vec::new(),
        };
        let mut t = 0;
        while beta < 1.0 {
            t += 1;
            if t > c.max_steps {
                return Err(SmcError::invalid(
                    "max tempering steps",
                    c.max_steps,
                    "enough steps to reach β = 1 (raise the cap or lower the ESS target)",
                ));
            }
            // Reweight to the next temperature.
            let ll: Vec<f64> = states.iter().map(|s| s.log_lik).collect();
            let delta = next_increment(&lw, &ll, beta, c.ess_target);
            let new_beta = if beta + delta >= 1.0 || delta >= 1.0 - beta {
                1.0
            } else {
                beta + delta
            };
            let delta = new_beta - beta;
            for (w, l) in lw.iter_mut().zip(&ll) {
                *w += delta * l;
            }
            let lse = log_sum_exp(&lw);
            if !lse.is_finite() {
                return Err(SmcError::DegenerateWeights { step: t });
            }
            out.log_evidence += lse;
            for w in lw.iter_mut() {
                *w -= lse;
            }
            out.ess.push(ess(&lw));
            beta = new_beta;

            // Preconditioner from the weighted particles at the new temperature.
            let xs: Vec<f64> = states.iter().flat_map(|s| s.x.iter().copied()).collect();
            let parts = Particles::from_vec(n, d, xs)?;
            let (_, cov) = weighted_mean_cov(&parts, &lw);
            let pre = Preconditioner::from_cov(&cov, d);

            // Resample N (standard) or M = N / P (waste-free) particles.
            let m = c.waste_free.map_or(n, |p| n / p);
            let mut res = Particles::<f64>::zeros(m, d);
            let mut res_lw = vec![0.0; m];
            resampler.resample(
                &parts,
                &lw,
                StreamKey::new(seed, t, Purpose::Resample),
                &mut res,
                &mut res_lw,
            )?;
            let starts = evaluate(target, res.as_slice(), d);
            let mut kernel = Kernel {
                kind: c.kind,
                step,
                beta,
                pre: &pre,
            };
            let key = StreamKey::new(seed, t, Purpose::Other(TAG_MOVE));
            let (acc_sum, sweeps);
            match c.waste_free {
                Some(p) => {
                    let (all, acc) = run_chains(target, &mut kernel, starts, p, key, &adapt)?;
                    states = all;
                    lw = res_lw
                        .iter()
                        .flat_map(|w| std::iter::repeat_n(*w - (p as f64).ln(), p))
                        .collect();
                    acc_sum = acc.iter().sum::<f64>();
                    sweeps = acc.len();
                }
                None => {
                    states = starts;
                    lw = res_lw;
                    let mut grads = vec![None; n];
                    let mut total = 0.0;
                    let mut k = 0;
                    loop {
                        let a = sweep(target, &kernel, &mut states, &mut grads, key.sub(k as u64))?;
                        let mean = a.iter().sum::<f64>() / n as f64;
                        total += mean;
                        k += 1;
                        kernel.step = adapt(kernel.step, mean);
                        if k >= c.max_moves {
                            break;
                        }
                        if k >= c.min_moves {
                            let abar = total / k as f64;
                            let needed = if abar >= 1.0 {
                                1.0
                            } else if abar <= 0.0 {
                                f64::INFINITY
                            } else {
                                c.stuck_probability.ln() / (1.0 - abar).ln()
                            };
                            if k as f64 >= needed {
                                break;
                            }
                        }
                    }
                    acc_sum = total;
                    sweeps = k;
                }
            }
            step = kernel.step;
            out.temperatures.push(beta);
            out.acceptance.push(if sweeps > 0 {
                acc_sum / sweeps as f64
            } else {
                f64::NAN
            });
            out.n_moves.push(sweeps);
            out.step_sizes.push(step);
        }
        let xs: Vec<f64> = states.iter().flat_map(|s| s.x.iter().copied()).collect();
        out.particles = Particles::from_vec(states.len(), d, xs)?;
        out.log_likelihoods = states.iter().map(|s| s.log_lik).collect();
        out.log_weights = lw;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bisection hits the CESS target (to 1e-9) and returns the full increment when the
    /// target is already met.
    #[test]
    fn increment_hits_the_cess_target() {
        let n = 200;
        let lw = vec![-(n as f64).ln(); n];
        let ll: Vec<f64> = (0..n).map(|i| -0.05 * i as f64 * i as f64).collect();
        let delta = next_increment(&lw, &ll, 0.0, 0.5);
        assert!(delta > 0.0 && delta < 1.0);
        let mut buf = Vec::new();
        assert!((log_cess(&lw, &ll, delta, &mut buf).exp() - 0.5).abs() < 1e-9);
        let flat = vec![-1.0; n];
        assert_eq!(next_increment(&lw, &flat, 0.3, 0.5), 0.7);
    }

    /// A 1-d target whose log-likelihood is a fixed value (NaN, -inf, …) or a quadratic.
    struct Fixed(f64);
    impl StaticTarget for Fixed {
        fn dim(&self) -> usize {
            1
        }
        fn log_prior<S: crate::Scalar>(&self, x: &[S]) -> S {
            x[0] * x[0] * -0.5
        }
        fn log_likelihood<S: crate::Scalar>(&self, x: &[S]) -> S {
            if self.0 == 0.0 {
                x[0] * x[0] * -50.0
            } else {
                S::cst(self.0)
            }
        }
        fn sample_prior(&self, rng: &mut crate::rng::StreamRng, out: &mut [f64]) {
            out[0] = crate::rng::standard_normal(rng);
        }
    }

    #[test]
    fn bad_knobs_are_typed_errors() {
        let bad = |r: Result<TemperingConfig>, name: &str| match r {
            Err(SmcError::InvalidParameter { name: n, .. }) => assert_eq!(n, name),
            other => panic!("expected an error for {name}, got {other:?}"),
        };
        bad(TemperingConfig::new(1), "particles");
        let c = || TemperingConfig::new(100).unwrap();
        bad(c().with_ess_target(0.0), "ess target");
        bad(c().with_ess_target(1.0), "ess target");
        bad(c().with_ess_target(f64::NAN), "ess target");
        bad(
            c().with_move(MoveKind::Hmc { leapfrog: 0 }),
            "HMC leapfrog steps",
        );
        bad(c().with_target_acceptance(1.0), "target acceptance");
        bad(c().with_initial_step(-1.0), "initial step");
        bad(c().with_moves(0, 10, 0.01), "min moves");
        bad(c().with_moves(5, 4, 0.01), "max moves");
        bad(c().with_moves(1, 4, 1.0), "stuck probability");
        bad(c().with_waste_free(Some(1)), "waste-free chain length");
        bad(c().with_waste_free(Some(7)), "waste-free chain length");
        bad(c().with_max_steps(0), "max tempering steps");
    }

    #[test]
    fn bad_targets_are_typed_errors() {
        use crate::resample::Systematic;
        let s = TemperingSampler::new(TemperingConfig::new(50).unwrap());
        let e = s.run(&Fixed(f64::NAN), &Systematic, 1).unwrap_err();
        assert!(matches!(e, SmcError::NonFinite { step: 0, .. }), "{e}");
        let e = s
            .run(&Fixed(f64::NEG_INFINITY), &Systematic, 1)
            .unwrap_err();
        assert_eq!(e, SmcError::DegenerateWeights { step: 1 });
        let capped = TemperingConfig::new(50)
            .unwrap()
            .with_ess_target(0.99)
            .unwrap()
            .with_max_steps(1)
            .unwrap();
        let e = TemperingSampler::new(capped)
            .run(&Fixed(0.0), &Systematic, 1)
            .unwrap_err();
        assert!(
            matches!(
                e,
                SmcError::InvalidParameter {
                    name: "max tempering steps",
                    ..
                }
            ),
            "{e}"
        );
    }
}
