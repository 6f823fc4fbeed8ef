//! The distributed bootstrap particle filter: particles split across ranks, results
//! bit-identical to [`diffsmc::Smc::run`] with the same seed for every rank count.
//!
//! Rank `r` of `K` owns the particles with global indices `lo_r..hi_r` (`lo_r = ⌊r N / K⌋`)
//! and moves each with the stream of its *global* index ([`diffsmc::smc::step`]), so a
//! particle is drawn from the same numbers whichever rank holds it. At every step the ranks
//! all-gather the `N` unnormalised log-weights (`8 N` bytes received per rank) and every rank
//! computes, on the same vector in the same order, what the single-process driver computes:
//! the two-pass log-sum-exp (maximum, then the sum of shifted exponentials), the ESS, the
//! resampling decision and, when it fires, the ancestor indices of all `N` slots. The
//! ancestors then say which particles each rank needs; they are sent once each (distinct
//! ancestors only) with one all-to-all of varying counts. Floating-point sums are never split
//! across ranks, which is why the result does not depend on `K`: see docs/distributed.md for
//! this choice and its communication volume.

use diffsmc::resample::{
    IndexResampler, Killing, Multinomial, Residual, Ssp, Stratified, Systematic,
};
use diffsmc::smc::log_sum_exp_and_ess;
use diffsmc::smc::step::{move_key, move_particle, resample_key};
use diffsmc::{
    FeynmanKac, Particles, ResamplerSpec, SmcConfig, SmcError, Trigger, weighted_mean_cov,
    weights_f64,
};

use crate::comm::Communicator;
use crate::error::{DistError, Result};

/// Largest element count of one message (MPI counts are `i32`).
pub(crate) const MAX_MESSAGE: usize = i32::MAX as usize;

/// The index resampler of a distributed run, from a [`ResamplerSpec`].
///
/// ```
/// use diffsmc_mpi::DistResampler;
/// assert!(DistResampler::from_spec(&"stratified".parse().unwrap()).is_ok());
/// let e = DistResampler::from_spec(&"diffusion".parse().unwrap()).unwrap_err();
/// assert!(e.to_string().contains("`diffusion"));
/// ```
#[derive(Debug)]
pub struct DistResampler(Box<dyn IndexResampler>);

impl DistResampler {
    /// Multinomial, systematic, stratified, residual, SSP or killing resampling (their
    /// ancestors depend only on the normalised weights, which every rank holds); any other
    /// spec is [`DistError::UnsupportedResampler`] naming it.
    pub fn from_spec(spec: &ResamplerSpec) -> Result<Self> {
        let r: Box<dyn IndexResampler> = match spec {
            ResamplerSpec::Multinomial => Box::new(Multinomial),
            ResamplerSpec::Systematic => Box::new(Systematic),
            ResamplerSpec::Stratified => Box::new(Stratified),
            ResamplerSpec::Residual => Box::new(Residual),
            ResamplerSpec::Ssp => Box::new(Ssp),
            ResamplerSpec::Killing => Box::new(Killing),
            other => {
                return Err(DistError::UnsupportedResampler {
                    spec: other.to_string(),
                });
            }
        };
        Ok(DistResampler(r))
    }
    /// Wraps any index resampler.
    pub fn new(r: Box<dyn IndexResampler>) -> Self {
        DistResampler(r)
    }
    /// The resampler's name.
    pub fn name(&self) -> &'static str {
        self.0.index_name()
    }
    pub(crate) fn inner(&self) -> &dyn IndexResampler {
        &*self.0
    }
}

/// Configuration of a distributed run (the knobs of [`diffsmc::SmcConfig`] that the
/// distributed filter supports).
///
/// ```
/// use diffsmc::Trigger;
/// use diffsmc_mpi::DistConfig;
/// let c = DistConfig::new(1000)?.with_trigger(Trigger::EssBelow(0.5))?;
/// assert_eq!(c.n_particles(), 1000);
/// assert!(DistConfig::new(0).is_err());
/// # Ok::<(), diffsmc_mpi::DistError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DistConfig {
    /// The single-process knobs it shares (history is not supported and stays off).
    smc: SmcConfig,
}

impl DistConfig {
    /// `n_particles ≥ 1` in total (over all ranks), resampling at every step.
    pub fn new(n_particles: usize) -> Result<Self> {
        Ok(DistConfig {
            smc: SmcConfig::new(n_particles)?,
        })
    }
    /// Sets the resampling trigger (validated).
    pub fn with_trigger(self, trigger: Trigger) -> Result<Self> {
        Ok(DistConfig {
            smc: self.smc.with_trigger(trigger)?,
        })
    }
    /// Records the filtering mean and covariance at every step on rank 0. They are computed
    /// there from all `N` particles gathered at every step (`8 N d` bytes to rank 0), so they
    /// are bit-identical to the single-process run's; off by default.
    pub fn with_filter_moments(self, yes: bool) -> Self {
        DistConfig {
            smc: self.smc.with_filter_moments(yes),
        }
    }
    /// A rank moves its particles on rayon threads when it holds at least this many (results
    /// do not depend on it). Default 4096.
    pub fn with_parallel_min_particles(self, n: usize) -> Self {
        DistConfig {
            smc: self.smc.with_parallel_min_particles(n),
        }
    }
    /// Total number of particles.
    pub fn n_particles(&self) -> usize {
        self.smc.n_particles()
    }
    /// The trigger.
    pub fn trigger(&self) -> Trigger {
        self.smc.trigger()
    }
    /// Consults the trigger only from step `step` on, as
    /// [`SmcConfig::with_first_resample_step`].
    pub fn with_first_resample_step(self, step: usize) -> Self {
        DistConfig {
            smc: self.smc.with_first_resample_step(step),
        }
    }
    /// The first step before whose move the trigger is consulted (default 1).
    pub fn first_resample_step(&self) -> usize {
        self.smc.first_resample_step()
    }
    /// The particle count from which a rank moves its particles on rayon threads.
    pub fn parallel_min_particles(&self) -> usize {
        self.smc.parallel_min_particles()
    }
    /// Whether rank 0 records filtering moments.
    pub fn filter_moments(&self) -> bool {
        self.smc.filter_moments()
    }
}

/// What a distributed run produced. The per-step records are the same on every rank; the
/// moments are on rank 0 only; the particles are this rank's block.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DistOutput {
    /// The log-likelihood estimate (as [`diffsmc::SmcOutput::log_likelihood`]).
    pub log_likelihood: f64,
    /// Per step: the log-likelihood increment.
    pub log_likelihood_increments: Vec<f64>,
    /// Per step: the ESS after weighting.
    pub ess: Vec<f64>,
    /// Per step: whether the particles were resampled before the move to this step.
    pub resampled: Vec<bool>,
    /// Per step, on rank 0 with [`DistConfig::with_filter_moments`]: the filtering mean.
    pub filter_means: Vec<Vec<f64>>,
    /// Per step, on rank 0 with [`DistConfig::with_filter_moments`]: the filtering
    /// covariance, row-major.
    pub filter_covs: Vec<Vec<f64>>,
    /// This rank's particles at the last step (global indices `first_index..`).
    pub particles: Particles<f64>,
    /// Their normalised log-weights (normalised over all ranks).
    pub log_weights: Vec<f64>,
    /// The global index of this rank's first particle.
    pub first_index: usize,
    /// Per step: the number of particle values (`f64`s) this rank received from other ranks
    /// when resampling (a measure of the communication, 0 when not resampled).
    pub values_received: Vec<usize>,
}

impl DistOutput {
    /// Number of steps at which the particles were resampled.
    pub fn n_resampled(&self) -> usize {
        self.resampled.iter().filter(|&&r| r).count()
    }
}

/// `lo_0 = 0 ≤ lo_1 ≤ … ≤ lo_K = n`: rank `r` owns `lo_r..lo_{r+1}` (sizes differ by at most 1).
///
/// ```
/// assert_eq!(diffsmc_mpi::block_starts(10, 4), vec![0, 2, 5, 7, 10]);
/// ```
pub fn block_starts(n: usize, k: usize) -> Vec<usize> {
    (0..=k)
        .map(|r| ((n as u128 * r as u128) / k.max(1) as u128) as usize)
        .collect()
}

/// The rank owning global index `a`.
fn owner(starts: &[usize], a: usize) -> usize {
    starts.partition_point(|&l| l <= a) - 1
}

/// Fills this rank's slots of `out` with `cur`'s particles `ancestors[slot]` (global indices),
/// fetching each distinct ancestor once from the rank that holds it. Returns the number of
/// values received from other ranks.
fn redistribute<C: Communicator + ?Sized>(
    comm: &C,
    starts: &[usize],
    cur: &Particles<f64>,
    ancestors: &[usize],
    out: &mut Particles<f64>,
) -> usize {
    let (me, k, d) = (comm.rank(), comm.size(), cur.dim());
    let (lo, hi) = (starts[me], starts[me + 1]);
    // What every rank needs from me: the distinct ancestors of its slots that I hold, in
    // increasing order (every rank knows all ancestors, so no request message is needed).
    let mut send = Vec::new();
    let mut counts = vec![0usize; k];
    let mut list = Vec::new();
    for r in 0..k {
        list.clear();
        list.extend(
            ancestors[starts[r]..starts[r + 1]]
                .iter()
                .copied()
                .filter(|&a| (lo..hi).contains(&a)),
        );
        list.sort_unstable();
        list.dedup();
        for &a in &list {
            send.extend_from_slice(cur.particle(a - lo));
        }
        counts[r] = list.len() * d;
    }
    let (recv, rcounts) = comm.all_to_all_v(&send, &counts);
    // What I receive from each source: the same lists, computed for my slots.
    let mine = &ancestors[lo..hi];
    let mut from: Vec<Vec<usize>> = vec![Vec::new(); k];
    for &a in mine {
        from[owner(starts, a)].push(a);
    }
    let mut offsets = vec![0usize; k];
    let mut off = 0;
    for (s, l) in from.iter_mut().enumerate() {
        l.sort_unstable();
        l.dedup();
        debug_assert_eq!(l.len() * d, rcounts[s], "sender and receiver lists agree");
        offsets[s] = off;
        off += rcounts[s];
    }
    // Index resamplers but killing give non-decreasing ancestors: then each source's list
    // is walked in order (a cursor per source) instead of searched.
    let sorted = mine.windows(2).all(|w| w[0] <= w[1]);
    let (mut cursor, mut last) = (vec![usize::MAX; k], vec![usize::MAX; k]);
    for (j, &a) in mine.iter().enumerate() {
        let s = owner(starts, a);
        let pos = if sorted {
            if last[s] != a {
                cursor[s] = cursor[s].wrapping_add(1);
                last[s] = a;
            }
            cursor[s]
        } else {
            from[s]
                .binary_search(&a)
                .expect("ancestor in the source's list")
        };
        debug_assert_eq!(from[s][pos], a);
        let at = offsets[s] + pos * d;
        out.particle_mut(j).copy_from_slice(&recv[at..at + d]);
    }
    recv.len() - rcounts[me]
}

/// Adds `f(global index, x)` to the log-weights of this rank's particles, in fixed chunks
/// (on rayon threads when `parallel`; the result does not depend on it).
fn for_each_particle(
    first: usize,
    d: usize,
    x: &mut [f64],
    lw: &mut [f64],
    parallel: bool,
    f: impl Fn(usize, &mut [f64]) -> f64 + Sync + Send,
) {
    const CHUNK: usize = 256;
    diffsmc::par::for_each_chunk_pair_mut::<f64, _, _>(
        x,
        CHUNK * d,
        lw,
        CHUNK,
        parallel,
        |c, xc, lc| {
            for (j, (xi, l)) in xc.chunks_exact_mut(d).zip(lc.iter_mut()).enumerate() {
                *l += f(first + c * CHUNK + j, xi);
            }
        },
    );
}

/// Checks the sizes a run will send in one message.
pub(crate) fn check_message(what: &'static str, count: usize) -> Result<()> {
    if count > MAX_MESSAGE {
        return Err(DistError::TooLarge {
            what,
            count,
            max: MAX_MESSAGE,
        });
    }
    Ok(())
}

/// Runs the bootstrap particle filter of `model` with `config.n_particles()` particles split
/// across the ranks of `comm`; every rank calls it with the same arguments. The log-likelihood,
/// its increments, the ESS, the resampling decisions and (on rank 0) the filtering moments are
/// bit-identical to those of [`diffsmc::Smc::run`] with the same model, resampler, trigger and
/// seed, for every number of ranks.
///
/// ```
/// use diffsmc::prelude::*;
/// use diffsmc_mpi::{DistConfig, DistResampler, SingleRank, ThreadComm, run_filter};
/// # struct M;
/// # impl<S: Scalar> StateSpaceModel<S> for M {
/// #     fn state_dim(&self) -> usize { 1 }
/// #     fn n_observations(&self) -> usize { 5 }
/// #     fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) { x[0] = S::cst(standard_normal(rng)); }
/// #     fn sample_transition(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) { x[0] = xp[0] * 0.5 + standard_normal(rng); }
/// #     fn observation_log_density(&self, t: usize, x: &[S]) -> S { (x[0] - t as f64 * 0.1).powi(2) * -0.5 }
/// # }
/// let model = Bootstrap(M);
/// let single: SmcOutput<f64> = Smc::new(SmcConfig::new(100)?).run(&model, &Systematic, 7)?;
/// let config = DistConfig::new(100)?;
/// let r = DistResampler::from_spec(&"systematic".parse()?)?;
/// let outs = ThreadComm::run(3, |c| run_filter(c, &model, &r, &config, 7).unwrap());
/// for o in &outs {
///     assert_eq!(o.log_likelihood.to_bits(), single.log_likelihood.to_bits());
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Errors (the same on every rank): [`SmcError::DegenerateWeights`] naming the step, a model
/// with zero steps or dimension, a block larger than one message can carry.
pub fn run_filter<C, M>(
    comm: &C,
    model: &M,
    resampler: &DistResampler,
    config: &DistConfig,
    seed: u64,
) -> Result<DistOutput>
where
    C: Communicator + ?Sized,
    M: FeynmanKac<f64> + ?Sized,
{
    let n = config.n_particles();
    let d = model.dim();
    let steps = model.n_steps();
    if steps == 0 {
        return Err(SmcError::invalid("model steps", 0, "at least one step").into());
    }
    if d == 0 {
        return Err(SmcError::invalid("model dimension", 0, "at least 1").into());
    }
    let k = comm.size();
    let me = comm.rank();
    let starts = block_starts(n, k);
    let (lo, hi) = (starts[me], starts[me + 1]);
    let nl = hi - lo;
    // The largest message: all N log-weights (all-gather) or the N·d particle values that the
    // moments gather to rank 0; a block of ancestors is at most its N/K·d values.
    check_message("the all-gather of log-weights", n)?;
    if config.filter_moments() {
        check_message("the gather of particles for the moments", n * d)?;
    }
    let parallel = nl >= config.parallel_min_particles();
    let ln_n = (n as f64).ln();

    let mut cur = Particles::<f64>::zeros(nl, d);
    let mut prev = Particles::<f64>::zeros(nl, d);
    let mut res = Particles::<f64>::zeros(nl, d);
    let mut lw = vec![0.0; nl];
    let mut lw_full: Vec<f64> = Vec::new();
    let mut ancestors = vec![0usize; n];

    let mut out_inc = Vec::with_capacity(steps);
    let mut out_ess = Vec::with_capacity(steps);
    let mut out_res = Vec::with_capacity(steps);
    let mut out_recv = Vec::with_capacity(steps);
    let (mut means, mut covs) = (Vec::new(), Vec::new());

    {
        let key = move_key(seed, 0);
        for_each_particle(lo, d, cur.as_mut_slice(), &mut lw, parallel, |i, x| {
            move_particle(model, 0, key, i, None, x)
        });
    }
    let mut loglik = 0.0;
    let mut cur_ess = n as f64;
    for t in 0..steps {
        let mut resampled = false;
        let mut received = 0;
        if t > 0 {
            if config.smc.resamples_at(t, cur_ess) {
                // What `index_resample` does on one process, on the gathered weights.
                let w = weights_f64(&lw_full);
                if w.iter().any(|v| !v.is_finite()) {
                    return Err(SmcError::invalid(
                        "log_weights",
                        "non-finite",
                        "normalised finite log-weights",
                    )
                    .into());
                }
                resampler
                    .inner()
                    .ancestors(&w, resample_key(seed, t), &mut ancestors);
                received = redistribute(comm, &starts, &cur, &ancestors, &mut res);
                std::mem::swap(&mut res, &mut cur);
                lw.fill(-ln_n);
                resampled = true;
            }
            std::mem::swap(&mut prev, &mut cur);
            let key = move_key(seed, t);
            let prev_ref = &prev;
            for_each_particle(lo, d, cur.as_mut_slice(), &mut lw, parallel, |i, x| {
                move_particle(model, t, key, i, Some(prev_ref.particle(i - lo)), x)
            });
        }
        lw_full = comm.all_gather_v(&lw);
        let (lse, step_ess) = log_sum_exp_and_ess(&lw_full);
        if !lse.is_finite() {
            return Err(SmcError::DegenerateWeights { step: t }.into());
        }
        let inc = if t == 0 { lse - ln_n } else { lse };
        for w in lw.iter_mut().chain(lw_full.iter_mut()) {
            *w -= lse;
        }
        cur_ess = step_ess;
        loglik += inc;
        out_inc.push(inc);
        out_ess.push(step_ess);
        out_res.push(resampled);
        out_recv.push(received);
        // A collective: every rank calls it when the moments are on.
        if config.filter_moments()
            && let Some(all) = comm.gather_v(0, cur.as_slice())
        {
            let p = Particles::from_vec(n, d, all)?;
            let (m, c) = weighted_mean_cov(&p, &lw_full);
            means.push(m);
            covs.push(c);
        }
    }
    Ok(DistOutput {
        log_likelihood: loglik,
        log_likelihood_increments: out_inc,
        ess: out_ess,
        resampled: out_res,
        filter_means: means,
        filter_covs: covs,
        particles: cur,
        log_weights: lw,
        first_index: lo,
        values_received: out_recv,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_every_index_once() {
        for (n, k) in [(1, 1), (1, 4), (7, 3), (100, 7), (5, 5)] {
            let s = block_starts(n, k);
            assert_eq!((s[0], s[k]), (0, n));
            assert!(s.windows(2).all(|w| w[1] - w[0] <= n.div_ceil(k)));
            for a in 0..n {
                let r = owner(&s, a);
                assert!(s[r] <= a && a < s[r + 1]);
            }
        }
    }
}
