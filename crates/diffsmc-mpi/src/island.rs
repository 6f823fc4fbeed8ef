//! The island particle filter: every rank runs its own bootstrap filter on its block of the
//! `N` particles, resampling locally, and every `exchange_every` steps each island sends a
//! fraction of its particles, with their weights, to the next island in a ring.
//!
//! The weights are kept global: a particle of island `r` with island-normalised log-weight
//! `lw_i` has global weight `W_i = M_r · exp(lw_i)`, where the island's mass `M_r` starts at
//! `N_r / N` and is multiplied by the island's likelihood increment at every step. Local
//! resampling keeps the island's mass (each of its `N_r` offspring gets `M_r / N_r`), and an
//! exchange only moves weighted particles between islands (the receiving island's mass is the
//! log-sum-exp of the global weights it then holds), so `Ẑ = Σ_r M_r` is the usual unbiased
//! estimate of the likelihood: without exchanges it is the average `Σ_r (N_r / N) Ẑ_r` of the
//! islands' own estimates. Communication per step: `K` masses (all-gather), plus at an
//! exchange `m (d + 1)` values to one neighbour. With one island it is the single-process
//! filter, bit for bit.

use diffsmc::smc::log_sum_exp_and_ess;
use diffsmc::smc::step::{move_key, move_particle, resample_key};
use diffsmc::{FeynmanKac, Particles, SmcError, ess, log_sum_exp, weights_f64};

use crate::comm::Communicator;
use crate::error::{DistError, Result};
use crate::filter::{DistConfig, DistResampler, block_starts, check_message};

/// The island filter's exchange knobs.
///
/// ```
/// use diffsmc_mpi::IslandConfig;
/// let c = IslandConfig::new(5, 0.1)?;
/// assert_eq!(c.exchange_every(), 5);
/// assert!(IslandConfig::new(0, 0.1).is_err() && IslandConfig::new(5, 1.5).is_err());
/// # Ok::<(), diffsmc_mpi::DistError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IslandConfig {
    exchange_every: usize,
    fraction: f64,
}

impl IslandConfig {
    /// Exchange every `exchange_every ≥ 1` steps (at steps `t > 0` with
    /// `t % exchange_every == 0`, after weighting) a `fraction ∈ [0, 1]` of the smallest
    /// island's particles (rounded to the nearest integer; 0 makes the islands independent).
    pub fn new(exchange_every: usize, fraction: f64) -> Result<Self> {
        if exchange_every == 0 {
            return Err(DistError::invalid("exchange-every", 0, "at least 1"));
        }
        if !(0.0..=1.0).contains(&fraction) {
            return Err(DistError::invalid(
                "exchange-fraction",
                fraction,
                "a number in [0, 1]",
            ));
        }
        Ok(IslandConfig {
            exchange_every,
            fraction,
        })
    }
    /// Steps between exchanges.
    pub fn exchange_every(&self) -> usize {
        self.exchange_every
    }
    /// Fraction of an island's particles sent at an exchange.
    pub fn fraction(&self) -> f64 {
        self.fraction
    }
}

/// What an island run produced (the global quantities are the same on every rank).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IslandOutput {
    /// `log Ẑ = log Σ_r M_r` at the last step.
    pub log_likelihood: f64,
    /// Per step: the running estimate `log Σ_r M_r(t)`.
    pub log_likelihood_path: Vec<f64>,
    /// Per step: the ESS of all `N` globally weighted particles, `(Σ W)² / Σ W²`.
    pub ess: Vec<f64>,
    /// Per step: whether this island resampled before the move to the step.
    pub resampled: Vec<bool>,
    /// Per step: whether the islands exchanged particles after weighting at the step.
    pub exchanged: Vec<bool>,
    /// Every island's final log-mass `log M_r`, in rank order.
    pub island_log_masses: Vec<f64>,
    /// This island's particles at the last step.
    pub particles: Particles<f64>,
    /// Their island-normalised log-weights.
    pub log_weights: Vec<f64>,
}

/// Runs the island particle filter: rank `r` of `comm` is island `r`, with the block
/// `lo_r..hi_r` of the `config.n_particles()` particles (moved with the streams of those
/// global indices); island `r > 0` resamples with stream family `r` of the step's resampling
/// key (island 0, and a single island, with the key itself). The trigger applies to each
/// island's own ESS. With one rank the result is [`diffsmc::Smc::run`]'s, bit for bit.
///
/// ```
/// use diffsmc::prelude::*;
/// use diffsmc_mpi::{DistConfig, DistResampler, IslandConfig, SingleRank, run_island_filter};
/// # struct M;
/// # impl<S: Scalar> StateSpaceModel<S> for M {
/// #     fn state_dim(&self) -> usize { 1 }
/// #     fn n_observations(&self) -> usize { 5 }
/// #     fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) { x[0] = S::cst(standard_normal(rng)); }
/// #     fn sample_transition(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) { x[0] = xp[0] * 0.5 + standard_normal(rng); }
/// #     fn observation_log_density(&self, t: usize, x: &[S]) -> S { (x[0] - t as f64 * 0.1).powi(2) * -0.5 }
/// # }
/// let model = Bootstrap(M);
/// let single: SmcOutput<f64> = Smc::new(SmcConfig::new(64)?).run(&model, &Systematic, 3)?;
/// let r = DistResampler::from_spec(&"systematic".parse()?)?;
/// let out = run_island_filter(&SingleRank, &model, &r, &DistConfig::new(64)?,
///     &IslandConfig::new(4, 0.25)?, 3)?;
/// assert_eq!(out.log_likelihood.to_bits(), single.log_likelihood.to_bits());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Errors (the same on every rank): fewer particles than islands; degenerate weights on any
/// island ([`SmcError::DegenerateWeights`] naming the step).
pub fn run_island_filter<C, M>(
    comm: &C,
    model: &M,
    resampler: &DistResampler,
    config: &DistConfig,
    island: &IslandConfig,
    seed: u64,
) -> Result<IslandOutput>
where
    C: Communicator + ?Sized,
    M: FeynmanKac<f64> + ?Sized,
{
    let n = config.n_particles();
    let d = model.dim();
    let steps = model.n_steps();
    let (k, me) = (comm.size(), comm.rank());
    if steps == 0 {
        return Err(SmcError::invalid("model steps", 0, "at least one step").into());
    }
    if d == 0 {
        return Err(SmcError::invalid("model dimension", 0, "at least 1").into());
    }
    if n < k {
        return Err(DistError::invalid(
            "particles",
            n,
            "at least one particle per island (rank)",
        ));
    }
    let starts = block_starts(n, k);
    let (lo, hi) = (starts[me], starts[me + 1]);
    let nl = hi - lo;
    let m_ex = ((n / k) as f64 * island.fraction).round() as usize;
    check_message("an exchange", m_ex * (d + 1))?;
    let ln_nl = (nl as f64).ln();
    let parallel = nl >= config.parallel_min_particles();

    let mut cur = Particles::<f64>::zeros(nl, d);
    let mut prev = Particles::<f64>::zeros(nl, d);
    let mut lw = vec![0.0; nl];
    let mut ancestors = vec![0usize; nl];
    let mut log_mass = (nl as f64 / n as f64).ln();
    let (mut path, mut out_ess, mut out_res, mut out_ex) = (
        Vec::with_capacity(steps),
        Vec::with_capacity(steps),
        Vec::with_capacity(steps),
        Vec::with_capacity(steps),
    );
    let mut masses = vec![log_mass];

    let weigh = |t: usize, cur: &mut Particles<f64>, prev: &Particles<f64>, lw: &mut [f64]| {
        let key = move_key(seed, t);
        diffsmc::par::for_each_chunk_pair_mut::<f64, _, _>(
            cur.as_mut_slice(),
            256 * d,
            lw,
            256,
            parallel,
            |c, xc, lc| {
                for (j, (xi, l)) in xc.chunks_exact_mut(d).zip(lc.iter_mut()).enumerate() {
                    let i = c * 256 + j;
                    let xp = (t > 0).then(|| prev.particle(i));
                    *l += move_particle(model, t, key, lo + i, xp, xi);
                }
            },
        );
    };

    weigh(0, &mut cur, &prev, &mut lw);
    let mut cur_ess = nl as f64;
    for t in 0..steps {
        let mut resampled = false;
        if t > 0 {
            if t >= config.first_resample_step() && config.trigger().fires(cur_ess, nl) {
                let w = weights_f64(&lw);
                let mut key = resample_key(seed, t);
                if me > 0 {
                    key = key.sub(me as u64);
                }
                resampler.inner().ancestors(&w, key, &mut ancestors);
                for (j, &a) in ancestors.iter().enumerate() {
                    prev.particle_mut(j).copy_from_slice(cur.particle(a));
                }
                std::mem::swap(&mut prev, &mut cur);
                lw.fill(-ln_nl);
                resampled = true;
            }
            std::mem::swap(&mut prev, &mut cur);
            weigh(t, &mut cur, &prev, &mut lw);
        }
        let (lse, step_ess) = log_sum_exp_and_ess(&lw);
        // Every island must see a failure on any island, or the others would wait.
        let bad = if lse.is_finite() { 0.0 } else { 1.0 };
        if comm.all_reduce_max(bad) > 0.0 {
            return Err(SmcError::DegenerateWeights { step: t }.into());
        }
        for w in lw.iter_mut() {
            *w -= lse;
        }
        log_mass += if t == 0 { lse - ln_nl } else { lse };
        let mut exchanged = false;
        if k > 1 && m_ex > 0 && t > 0 && t % island.exchange_every == 0 {
            // Send my last m particles with their global log-weights to the next island;
            // put the previous island's in their place.
            let next = (me + 1) % k;
            let mut send = Vec::with_capacity(m_ex * (d + 1));
            for i in nl - m_ex..nl {
                send.extend_from_slice(cur.particle(i));
                send.push(log_mass + lw[i]);
            }
            let mut counts = vec![0; k];
            counts[next] = send.len();
            let (recv, _) = comm.all_to_all_v(&send, &counts);
            let mut global: Vec<f64> = lw.iter().map(|l| log_mass + l).collect();
            for (j, chunk) in recv.chunks_exact(d + 1).enumerate() {
                let i = nl - m_ex + j;
                cur.particle_mut(i).copy_from_slice(&chunk[..d]);
                global[i] = chunk[d];
            }
            log_mass = log_sum_exp(&global);
            for (l, g) in lw.iter_mut().zip(&global) {
                *l = g - log_mass;
            }
            exchanged = true;
        }
        // The single-process driver's ESS, unless the exchange changed the weights.
        cur_ess = if exchanged { ess(&lw) } else { step_ess };
        // Global estimate and ESS from every island's mass and Σ w².
        let s2: f64 = lw.iter().map(|l| (2.0 * l).exp()).sum();
        let all = comm.all_gather_v(&[log_mass, s2]);
        masses = all.chunks_exact(2).map(|p| p[0]).collect();
        let log_z = log_sum_exp(&masses);
        let (mut a1, mut a2) = (0.0, 0.0);
        for p in all.chunks_exact(2) {
            let m = (p[0] - log_z).exp();
            a1 += m;
            a2 += m * m * p[1];
        }
        path.push(log_z);
        out_ess.push(a1 * a1 / a2);
        out_res.push(resampled);
        out_ex.push(exchanged);
    }
    Ok(IslandOutput {
        log_likelihood: *path.last().expect("at least one step"),
        log_likelihood_path: path,
        ess: out_ess,
        resampled: out_res,
        exchanged: out_ex,
        island_log_masses: masses,
        particles: cur,
        log_weights: lw,
    })
}
