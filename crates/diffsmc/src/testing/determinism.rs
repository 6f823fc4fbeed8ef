//! Bit-identical results whatever the number of threads.

use std::fmt;

use super::CheckReport;
use crate::error::{Result, SmcError};
use crate::model::FeynmanKac;
use crate::resample::Resampler;
use crate::smc::{Smc, SmcConfig, SmcOutput};

/// The first difference between two runs.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Mismatch {
    /// The run compared with the reference run.
    pub run: String,
    /// Where, e.g. `log_likelihood_increments[3]` or `particles[17][0]`.
    pub field: String,
    /// The step at which it shows up (`None` for final-state fields).
    pub step: Option<usize>,
    /// The reference run's value.
    pub expected: f64,
    /// The other run's value.
    pub got: f64,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: first difference at {}{}: {:e} vs {:e} (reference)",
            self.run,
            self.field,
            self.step
                .map(|t| format!(" (step {t})"))
                .unwrap_or_default(),
            self.got,
            self.expected
        )
    }
}

/// What [`check_thread_determinism`] found: the runs made and the first mismatch of each run
/// against the reference (the first run).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeterminismReport {
    /// Particles per run.
    pub n: usize,
    /// The seed.
    pub seed: u64,
    /// `(label, log-likelihood)` of every run; the first is the reference.
    pub runs: Vec<(String, f64)>,
    /// The first mismatch of each run that differs from the reference.
    pub mismatches: Vec<Mismatch>,
}

impl DeterminismReport {
    /// All runs bit-identical.
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }
}

impl CheckReport for DeterminismReport {
    fn passed(&self) -> bool {
        DeterminismReport::passed(self)
    }
}

impl fmt::Display for DeterminismReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "thread determinism {}: N = {}, seed {}, {} runs{}",
            if self.passed() { "passed" } else { "FAILED" },
            self.n,
            self.seed,
            self.runs.len(),
            if self.passed() {
                ", all bit-identical"
            } else {
                ""
            }
        )?;
        for (label, ll) in &self.runs {
            writeln!(f, "  {label:<28} log-likelihood {ll:.17e}")?;
        }
        for m in &self.mismatches {
            writeln!(f, "  MISMATCH {m}")?;
        }
        Ok(())
    }
}

/// The first bitwise difference of `b` from `a`, in the order the filter produces them: per
/// step the increment, ESS, resampling flag and filtering moments; then the final particles,
/// log-weights and the log-likelihood.
fn first_difference(
    a: &SmcOutput<f64>,
    b: &SmcOutput<f64>,
) -> Option<(String, Option<usize>, f64, f64)> {
    let same = |x: f64, y: f64| x.to_bits() == y.to_bits();
    let steps = a
        .log_likelihood_increments
        .len()
        .max(b.log_likelihood_increments.len());
    let at = |v: &[f64], i: usize| v.get(i).copied().unwrap_or(f64::NAN);
    for t in 0..steps {
        let (x, y) = (
            at(&a.log_likelihood_increments, t),
            at(&b.log_likelihood_increments, t),
        );
        if !same(x, y) {
            return Some((format!("log_likelihood_increments[{t}]"), Some(t), x, y));
        }
        let (x, y) = (at(&a.ess, t), at(&b.ess, t));
        if !same(x, y) {
            return Some((format!("ess[{t}]"), Some(t), x, y));
        }
        let (ra, rb) = (a.resampled.get(t), b.resampled.get(t));
        if ra != rb {
            let f = |r: Option<&bool>| r.map_or(f64::NAN, |&r| f64::from(u8::from(r)));
            return Some((format!("resampled[{t}]"), Some(t), f(ra), f(rb)));
        }
        for (name, va, vb) in [
            ("filter_means", &a.filter_means, &b.filter_means),
            ("filter_covs", &a.filter_covs, &b.filter_covs),
        ] {
            let (ea, eb) = (va.get(t), vb.get(t));
            let len = ea.map_or(0, Vec::len).max(eb.map_or(0, Vec::len));
            for k in 0..len {
                let x = ea.map_or(f64::NAN, |v| at(v, k));
                let y = eb.map_or(f64::NAN, |v| at(v, k));
                if !same(x, y) {
                    return Some((format!("{name}[{t}][{k}]"), Some(t), x, y));
                }
            }
        }
    }
    let d = a.particles.dim().max(1);
    let (pa, pb) = (a.particles.as_slice(), b.particles.as_slice());
    for j in 0..pa.len().max(pb.len()) {
        let (x, y) = (at(pa, j), at(pb, j));
        if !same(x, y) {
            return Some((format!("particles[{}][{}]", j / d, j % d), None, x, y));
        }
    }
    for i in 0..a.log_weights.len().max(b.log_weights.len()) {
        let (x, y) = (at(&a.log_weights, i), at(&b.log_weights, i));
        if !same(x, y) {
            return Some((format!("log_weights[{i}]"), None, x, y));
        }
    }
    if !same(a.log_likelihood, b.log_likelihood) {
        return Some((
            "log_likelihood".to_string(),
            None,
            a.log_likelihood,
            b.log_likelihood,
        ));
    }
    None
}

/// Checks that a model and resampler give bit-identical filter output whatever the number of
/// threads: runs the filter with `n` particles, resampling at every step and filtering
/// moments recorded, (1) on the calling thread without parallelism, (2) in a 1-thread and
/// (3) a 2-thread rayon pool with [`SmcConfig::with_parallel_min_particles`]`(1)` (so the
/// particles are moved and weighted in parallel chunks), and (4) once more in the 2-thread
/// pool; every run is compared bit for bit with the first.
///
/// A model that draws randomness from anywhere but the `StreamRng` it is given, keeps mutable
/// state between calls (a counter, a cache), or depends on the thread it runs on fails here,
/// with the first differing number named.
///
/// Errors: `n = 0`, a thread pool that cannot be built, and any error of the filter.
///
/// ```
/// use diffsmc::prelude::*;
/// use diffsmc::testing::check_thread_determinism;
///
/// struct Ar1 { ys: Vec<f64> }
/// impl<S: Scalar> StateSpaceModel<S> for Ar1 {
///     fn state_dim(&self) -> usize { 1 }
///     fn n_observations(&self) -> usize { self.ys.len() }
///     fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
///         x[0] = S::cst(standard_normal(rng));
///     }
///     fn sample_transition(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) {
///         x[0] = xp[0] * 0.9 + standard_normal(rng);
///     }
///     fn observation_log_density(&self, t: usize, x: &[S]) -> S {
///         let r = x[0] - self.ys[t];
///         r * r * -0.5
///     }
/// }
///
/// let model = Bootstrap(Ar1 { ys: vec![0.2, -0.4, 1.0, 0.3, 0.8] });
/// let report = check_thread_determinism(&model, &Systematic, 1000, 42)?;
/// assert!(report.passed(), "{report}");
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
pub fn check_thread_determinism<M, R>(
    model: &M,
    resampler: &R,
    n: usize,
    seed: u64,
) -> Result<DeterminismReport>
where
    M: FeynmanKac<f64> + ?Sized,
    R: Resampler<f64> + ?Sized,
{
    let config = SmcConfig::new(n)?.with_filter_moments(true);
    check_thread_determinism_with(model, resampler, &config, seed)
}

/// [`check_thread_determinism`] with your own [`SmcConfig`] (trigger, moments); its parallel
/// threshold is overridden: the first run is serial, the pooled runs use threshold 1.
pub fn check_thread_determinism_with<M, R>(
    model: &M,
    resampler: &R,
    config: &SmcConfig,
    seed: u64,
) -> Result<DeterminismReport>
where
    M: FeynmanKac<f64> + ?Sized,
    R: Resampler<f64> + ?Sized,
{
    let serial = Smc::new(config.clone().with_parallel_min_particles(usize::MAX));
    let forced = Smc::new(config.clone().with_parallel_min_particles(1));
    let pool = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| SmcError::invalid("rayon thread pool", e, "a pool that can be built"))
    };
    let (p1, p2) = (pool(1)?, pool(2)?);
    let runs: Vec<(String, SmcOutput<f64>)> = vec![
        ("serial".into(), serial.run(model, resampler, seed)?),
        (
            "1-thread pool, parallel path".into(),
            p1.install(|| forced.run(model, resampler, seed))?,
        ),
        (
            "2-thread pool, parallel path".into(),
            p2.install(|| forced.run(model, resampler, seed))?,
        ),
        (
            "2-thread pool, again".into(),
            p2.install(|| forced.run(model, resampler, seed))?,
        ),
    ];
    let reference = &runs[0].1;
    let mismatches = runs[1..]
        .iter()
        .filter_map(|(label, out)| {
            first_difference(reference, out).map(|(field, step, expected, got)| Mismatch {
                run: label.clone(),
                field,
                step,
                expected,
                got,
            })
        })
        .collect();
    Ok(DeterminismReport {
        n: config.n_particles(),
        seed,
        runs: runs
            .iter()
            .map(|(l, o)| (l.clone(), o.log_likelihood))
            .collect(),
        mismatches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Bootstrap, StateSpaceModel};
    use crate::resample::{DiffusionConfig, DiffusionResampler, Multinomial, Systematic};
    use crate::rng::{StreamRng, standard_normal};
    use crate::scalar::Scalar;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    struct Ar1 {
        /// Bug: a call counter shared by all particles and runs perturbs the transition.
        counter: Option<AtomicU64>,
        /// Bug: the transition depends on the number of threads of the pool it runs in.
        thread_dependent: bool,
    }
    impl<S: Scalar> StateSpaceModel<S> for Ar1 {
        fn state_dim(&self) -> usize {
            2
        }
        fn n_observations(&self) -> usize {
            6
        }
        fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
            x[0] = S::cst(standard_normal(rng));
            x[1] = S::cst(standard_normal(rng));
        }
        fn sample_transition(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) {
            let mut drift = 0.0;
            if let Some(c) = &self.counter {
                drift += 1e-6 * (c.fetch_add(1, Ordering::Relaxed) % 97) as f64;
            }
            if self.thread_dependent {
                drift += 1e-3 * rayon::current_num_threads() as f64;
            }
            x[0] = xp[0] * 0.9 + standard_normal(rng) + drift;
            x[1] = xp[1] * 0.5 + xp[0] * 0.2 + standard_normal(rng);
        }
        fn observation_log_density(&self, t: usize, x: &[S]) -> S {
            let r = x[0] + x[1] - (t as f64 * 0.7).sin();
            r * r * -0.5
        }
    }

    #[test]
    fn correct_model_is_deterministic() {
        let model = Bootstrap(Ar1::default());
        let diffusion = DiffusionResampler::new(DiffusionConfig::new().with_steps(2).unwrap());
        let rs: [&dyn Resampler<f64>; 3] = [&Systematic, &Multinomial, &diffusion];
        for r in rs {
            // 700 particles: three chunks of the driver, the last one partial.
            let rep = check_thread_determinism(&model, r, 700, 9).unwrap();
            assert!(rep.passed(), "{rep}");
            assert_eq!(rep.runs.len(), 4);
        }
    }

    #[test]
    fn shared_counter_is_caught() {
        let model = Bootstrap(Ar1 {
            counter: Some(AtomicU64::new(0)),
            ..Default::default()
        });
        let rep = check_thread_determinism(&model, &Systematic, 600, 1).unwrap();
        assert!(!rep.passed(), "{rep}");
        // Every later run starts from another counter value: all three differ, at step 1.
        assert_eq!(rep.mismatches.len(), 3, "{rep}");
        assert_eq!(rep.mismatches[0].step, Some(1), "{rep}");
        assert!(rep.to_string().contains("MISMATCH"));
    }

    #[test]
    fn thread_dependence_is_caught() {
        let model = Bootstrap(Ar1 {
            thread_dependent: true,
            ..Default::default()
        });
        let rep = check_thread_determinism(&model, &Systematic, 600, 1).unwrap();
        assert!(!rep.passed(), "{rep}");
        // The serial run sees the global pool's thread count, the pools see 1 and 2: at least
        // one pooled run differs from the serial one, at the first transition.
        assert!(!rep.mismatches.is_empty());
        for m in &rep.mismatches {
            assert_eq!(m.field, "log_likelihood_increments[1]", "{rep}");
        }
    }

    #[test]
    fn zero_particles_is_an_error() {
        let model = Bootstrap(Ar1::default());
        assert!(check_thread_determinism(&model, &Systematic, 0, 1).is_err());
    }
}
