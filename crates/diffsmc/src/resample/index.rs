//! Index (ancestor-copying) resamplers.

use rand::RngExt;
use rand_distr::{Distribution, Exp1};

use super::{ResampleInfo, Resampler, check_shapes};
use crate::error::{Result, SmcError};
use crate::particles::{Particles, weights_f64_into};
use crate::rng::{StreamKey, StreamRng};
use crate::scalar::Scalar;

/// A resampler that draws ancestor indices from normalised `f64` weights.
///
/// Implementors get [`Resampler<S>`] for every scalar: particles are copied by index, so no
/// derivative flows through the choice of ancestors.
pub trait IndexResampler: Send + Sync + std::fmt::Debug {
    /// A short name, e.g. `"systematic"`.
    fn index_name(&self) -> &'static str;

    /// Fills `ancestors` with indices into `w` (normalised weights, `Σ w = 1`), so that the
    /// expected number of copies of `i` is `ancestors.len() · w_i`.
    fn ancestors(&self, w: &[f64], key: StreamKey, ancestors: &mut [usize]);
}

fn uniform(rng: &mut StreamRng) -> f64 {
    rng.random::<f64>()
}

/// `n` sorted uniforms on `[0, 1)` in O(n): normalised cumulative sums of `n + 1` standard
/// exponentials.
///
/// ```
/// use diffsmc::rng::{Purpose, StreamKey};
/// let mut u = vec![0.0; 100];
/// diffsmc::resample::sorted_uniforms(&mut StreamKey::new(1, 0, Purpose::Resample).rng(0), &mut u);
/// assert!(u.windows(2).all(|p| p[0] <= p[1]) && u[0] >= 0.0 && u[99] < 1.0);
/// ```
pub fn sorted_uniforms(rng: &mut StreamRng, out: &mut [f64]) {
    let mut s = 0.0;
    for u in out.iter_mut() {
        let e: f64 = Exp1.sample(rng);
        s += e;
        *u = s;
    }
    let e: f64 = Exp1.sample(rng);
    let total = s + e;
    for u in out.iter_mut() {
        *u /= total;
    }
}

/// Inverse-CDF walk: for sorted points `u` in `[0, 1)`, the ancestor of each point. The
/// points may be generated on the fly (no buffer needed for systematic/stratified points).
fn inverse_cdf(w: &[f64], u: impl IntoIterator<Item = f64>, ancestors: &mut [usize]) {
    let n = w.len();
    let mut j = 0;
    let mut cum = w[0];
    for (a, ui) in ancestors.iter_mut().zip(u) {
        while ui >= cum && j + 1 < n {
            j += 1;
            cum += w[j];
        }
        *a = j;
    }
}

/// Multinomial resampling: i.i.d. ancestors, O(N) via sorted uniforms.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Multinomial;

/// Systematic resampling: one uniform `u`, points `(i + u) / N`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Systematic;

/// Stratified resampling: points `(i + u_i) / N` with independent `u_i`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stratified;

/// Residual resampling: `⌊N w_i⌋` deterministic copies, the rest multinomial on the residuals.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Residual;

/// SSP resampling (Srinivasan sampling process; Gerber, Chopin & Whiteley 2019): offspring
/// counts are `⌊N w_i⌋` or `⌈N w_i⌉`, chosen by a sequence of pairwise randomised roundings.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ssp;

/// Killing resampling: particle `i` survives with probability `w_i / max w`; killed particles
/// are replaced by multinomial draws.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Killing;

impl IndexResampler for Multinomial {
    fn index_name(&self) -> &'static str {
        "multinomial"
    }
    fn ancestors(&self, w: &[f64], key: StreamKey, ancestors: &mut [usize]) {
        let mut u = vec![0.0; ancestors.len()];
        sorted_uniforms(&mut key.rng(0), &mut u);
        inverse_cdf(w, u, ancestors);
    }
}

impl IndexResampler for Systematic {
    fn index_name(&self) -> &'static str {
        "systematic"
    }
    fn ancestors(&self, w: &[f64], key: StreamKey, ancestors: &mut [usize]) {
        let m = ancestors.len();
        let u0 = uniform(&mut key.rng(0));
        inverse_cdf(w, (0..m).map(|i| (i as f64 + u0) / m as f64), ancestors);
    }
}

impl IndexResampler for Stratified {
    fn index_name(&self) -> &'static str {
        "stratified"
    }
    fn ancestors(&self, w: &[f64], key: StreamKey, ancestors: &mut [usize]) {
        let m = ancestors.len();
        let mut rng = key.rng(0);
        inverse_cdf(
            w,
            (0..m).map(|i| (i as f64 + uniform(&mut rng)) / m as f64),
            ancestors,
        );
    }
}

impl IndexResampler for Residual {
    fn index_name(&self) -> &'static str {
        "residual"
    }
    fn ancestors(&self, w: &[f64], key: StreamKey, ancestors: &mut [usize]) {
        let m = ancestors.len();
        let mf = m as f64;
        let mut k = 0;
        let mut resid = Vec::with_capacity(w.len());
        for (i, &wi) in w.iter().enumerate() {
            let c = (mf * wi).floor();
            let c_int = (c as usize).min(m - k);
            ancestors[k..k + c_int].fill(i);
            k += c_int;
            resid.push((mf * wi - c).max(0.0));
        }
        let r = m - k;
        if r > 0 {
            let s: f64 = resid.iter().sum();
            if s > 0.0 {
                for v in &mut resid {
                    *v /= s;
                }
            } else {
                resid.fill(1.0 / w.len() as f64);
            }
            let mut u = vec![0.0; r];
            sorted_uniforms(&mut key.rng(0), &mut u);
            inverse_cdf(&resid, u, &mut ancestors[k..]);
        }
    }
}

impl IndexResampler for Ssp {
    fn index_name(&self) -> &'static str {
        "ssp"
    }
    fn ancestors(&self, w: &[f64], key: StreamKey, ancestors: &mut [usize]) {
        let n = w.len();
        let m = ancestors.len();
        let mut rng = key.rng(0);
        let mut counts: Vec<usize> = Vec::with_capacity(n);
        let mut xi: Vec<f64> = Vec::with_capacity(n);
        for &wi in w {
            let mw = m as f64 * wi;
            let c = mw.floor();
            counts.push(c as usize);
            xi.push(mw - c);
        }
        // Pairwise randomised rounding of the fractional parts (Gerber, Chopin & Whiteley
        // 2019, Algorithm 3); each step settles one of the two indices at 0 or 1.
        let (mut i, mut j) = (0usize, 1usize);
        for k in 0..n.saturating_sub(1) {
            let mut delta_i = xi[j].min(1.0 - xi[i]);
            let delta_j = xi[i].min(1.0 - xi[j]);
            let sum = delta_i + delta_j;
            let pj = if sum > 0.0 { delta_i / sum } else { 0.0 };
            if uniform(&mut rng) < pj {
                std::mem::swap(&mut i, &mut j);
                delta_i = delta_j;
            }
            if xi[j] < 1.0 - xi[i] {
                xi[i] += delta_i;
                j = k + 2;
            } else {
                xi[j] -= delta_i;
                counts[i] += 1;
                i = k + 2;
            }
        }
        // The loop leaves exactly one index unsettled (the other of `i`, `j` is `n`); it holds
        // the remaining fractional mass, which is 0 or 1 up to round-off. When round-off leaves
        // the total one short, that index is the one to round up. (The `xi` of settled indices
        // are stale, so they must not be used to choose it: doing so could give an index
        // already rounded up a second extra copy.)
        let last = if i < n { i } else { j };
        let mut total: usize = counts.iter().sum();
        if total < m && last < n {
            counts[last] += 1;
            total += 1;
        }
        // Weights that do not sum to one could leave the total off by more: settle the
        // remainder on the largest leftover fractional parts, remove excess from the largest
        // counts, so the output always has exactly m particles.
        if total < m {
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| xi[b].total_cmp(&xi[a]));
            for &o in order.iter().cycle().take(m - total) {
                counts[o] += 1;
            }
        } else if total > m {
            let mut excess = total - m;
            while excess > 0 {
                let imax = (0..n).max_by_key(|&a| counts[a]).unwrap_or(0);
                counts[imax] -= 1;
                excess -= 1;
            }
        }
        let mut k = 0;
        for (idx, &c) in counts.iter().enumerate() {
            ancestors[k..k + c].fill(idx);
            k += c;
        }
    }
}

impl IndexResampler for Killing {
    fn index_name(&self) -> &'static str {
        "killing"
    }
    fn ancestors(&self, w: &[f64], key: StreamKey, ancestors: &mut [usize]) {
        let n = w.len();
        let wmax = w.iter().copied().fold(0.0, f64::max);
        let mut rng = key.rng(0);
        let mut killed = Vec::new();
        for (i, a) in ancestors.iter_mut().enumerate() {
            // With m == n each particle keeps its own slot when it survives.
            let own = i.min(n - 1);
            *a = own;
            if uniform(&mut rng) * wmax >= w[own] {
                killed.push(i);
            }
        }
        if !killed.is_empty() {
            let mut u = vec![0.0; killed.len()];
            sorted_uniforms(&mut key.rng(1), &mut u);
            let mut new = vec![0; killed.len()];
            inverse_cdf(w, u, &mut new);
            for (&slot, a) in killed.iter().zip(new) {
                ancestors[slot] = a;
            }
        }
    }
}

/// Stop-gradient multinomial resampling (Ścibior & Wood 2021): multinomial ancestors, new
/// log-weights `log w_I − stopgrad(log w_I) − log N` (value `−log N`, derivative that of
/// `log w_I`), so the log-likelihood gradient carries the score of the resampling choice.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StopGradient;

fn copy_by_index<S: Scalar>(particles: &Particles<S>, ancestors: &[usize], out: &mut Particles<S>) {
    if particles.dim() == 1 {
        // One value per particle: a plain gather (a slice copy per particle would call memcpy).
        let src = particles.as_slice();
        for (o, &a) in out.as_mut_slice().iter_mut().zip(ancestors) {
            *o = src[a];
        }
        return;
    }
    for (i, &a) in ancestors.iter().enumerate() {
        out.particle_mut(i).copy_from_slice(particles.particle(a));
    }
}

/// Runs an index resampler on scalar particles: draws ancestors from the value part of the
/// weights (into `ancestors`, resized to the output size) and copies particles.
pub(crate) fn index_resample<S: Scalar, R: IndexResampler + ?Sized>(
    r: &R,
    particles: &Particles<S>,
    log_weights: &[S],
    key: StreamKey,
    out: &mut Particles<S>,
    out_log_weights: &mut [S],
    ancestors: &mut Vec<usize>,
) -> Result<()> {
    check_shapes(particles, log_weights, out, out_log_weights)?;
    with_weight_scratch(|w| {
        weights_f64_into(log_weights, w);
        if w.iter().any(|v| !v.is_finite()) {
            return Err(SmcError::invalid(
                "log_weights",
                "non-finite",
                "normalised finite log-weights",
            ));
        }
        // `ancestors` fills every entry: only the length matters (no memset per step).
        ancestors.resize(out.len(), 0);
        r.ancestors(w, key, ancestors);
        Ok(())
    })?;
    copy_by_index(particles, ancestors, out);
    let lw = -(out.len() as f64).ln();
    out_log_weights.fill(S::cst(lw));
    Ok(())
}

thread_local! {
    /// Per-thread buffers of [`index_resample`] (normalised weights, ancestors), so that a
    /// filter's resampling steps allocate nothing after the first.
    static SCRATCH: std::cell::RefCell<(Vec<f64>, Vec<usize>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// `f` with this thread's weight buffer (a fresh one if it is in use further up the stack,
/// e.g. by an [`IndexResampler`] that resamples inside `ancestors`).
fn with_weight_scratch<T>(f: impl FnOnce(&mut Vec<f64>) -> T) -> T {
    SCRATCH.with(|c| match c.try_borrow_mut() {
        Ok(mut s) => f(&mut s.0),
        Err(_) => f(&mut Vec::new()),
    })
}

/// `f` with this thread's ancestor buffer (as [`with_weight_scratch`]).
fn with_ancestor_scratch<T>(f: impl FnOnce(&mut Vec<usize>) -> T) -> T {
    let mut mine = SCRATCH.with(|c| match c.try_borrow_mut() {
        Ok(mut s) => std::mem::take(&mut s.1),
        Err(_) => Vec::new(),
    });
    let r = f(&mut mine);
    SCRATCH.with(|c| {
        if let Ok(mut s) = c.try_borrow_mut() {
            s.1 = mine;
        }
    });
    r
}

macro_rules! index_resampler_impl {
    ($($t:ty),*) => {$(
        impl<S: Scalar> Resampler<S> for $t {
            fn name(&self) -> String {
                self.index_name().to_string()
            }
            fn copies_by_index(&self) -> bool {
                true
            }
            fn resample(
                &self,
                particles: &Particles<S>,
                log_weights: &[S],
                key: StreamKey,
                out: &mut Particles<S>,
                out_log_weights: &mut [S],
            ) -> Result<ResampleInfo> {
                with_ancestor_scratch(|ancestors| {
                    index_resample(self, particles, log_weights, key, out, out_log_weights, ancestors)
                })?;
                Ok(ResampleInfo::RESAMPLED)
            }
            fn resample_with_ancestors(
                &self,
                particles: &Particles<S>,
                log_weights: &[S],
                key: StreamKey,
                out: &mut Particles<S>,
                out_log_weights: &mut [S],
                ancestors: &mut Vec<usize>,
            ) -> Result<ResampleInfo> {
                index_resample(self, particles, log_weights, key, out, out_log_weights, ancestors)?;
                Ok(ResampleInfo::RESAMPLED)
            }
        }
    )*};
}

index_resampler_impl!(Multinomial, Systematic, Stratified, Residual, Ssp, Killing);

impl StopGradient {
    fn resample_into<S: Scalar>(
        &self,
        particles: &Particles<S>,
        log_weights: &[S],
        key: StreamKey,
        out: &mut Particles<S>,
        out_log_weights: &mut [S],
        ancestors: &mut Vec<usize>,
    ) -> Result<ResampleInfo> {
        index_resample(
            &Multinomial,
            particles,
            log_weights,
            key,
            out,
            out_log_weights,
            ancestors,
        )?;
        let ln_n = (out.len() as f64).ln();
        for (o, &a) in out_log_weights.iter_mut().zip(ancestors.iter()) {
            let lw = log_weights[a];
            *o = lw - S::cst(lw.re()) - ln_n;
        }
        Ok(ResampleInfo::RESAMPLED)
    }
}

impl<S: Scalar> Resampler<S> for StopGradient {
    fn name(&self) -> String {
        "stop-gradient".to_string()
    }
    fn copies_by_index(&self) -> bool {
        true
    }
    fn resample(
        &self,
        particles: &Particles<S>,
        log_weights: &[S],
        key: StreamKey,
        out: &mut Particles<S>,
        out_log_weights: &mut [S],
    ) -> Result<ResampleInfo> {
        with_ancestor_scratch(|ancestors| {
            self.resample_into(particles, log_weights, key, out, out_log_weights, ancestors)
        })
    }
    fn resample_with_ancestors(
        &self,
        particles: &Particles<S>,
        log_weights: &[S],
        key: StreamKey,
        out: &mut Particles<S>,
        out_log_weights: &mut [S],
        ancestors: &mut Vec<usize>,
    ) -> Result<ResampleInfo> {
        self.resample_into(particles, log_weights, key, out, out_log_weights, ancestors)
    }
}
