//! Waste-free SMC (Dau & Chopin 2022): resample only `M = N / P` particles and run an MCMC
//! chain of length `P` from each; all `M · P` states of the chains (the starting points
//! included) are the next particle system.
//!
//! Compared with standard resample-move SMC (N particles, each moved k times and only the
//! last state kept) no intermediate state is thrown away, and the chains' correlation is
//! accounted for by the particle system as a whole; the evidence estimate keeps the same
//! form. `P` trades mixing (long chains) against diversity of starting points (large `M`).

use super::moves::{Kernel, State, sweep};
use super::target::StaticTarget;
use crate::error::Result;
use crate::rng::StreamKey;

/// Runs `P − 1` sweeps of `kernel` on the `M` chain starts; returns the `M · P` states (chain
/// `m`, position `j` at index `m · P + j`) and the mean acceptance probability of each sweep.
/// `adapt(step, acceptance)` is called after each sweep and returns the step size of the next.
pub(crate) fn run_chains<T: StaticTarget + ?Sized>(
    target: &T,
    kernel: &mut Kernel<'_>,
    starts: Vec<State>,
    chain_length: usize,
    key: StreamKey,
    adapt: &dyn Fn(f64, f64) -> f64,
) -> Result<(Vec<State>, Vec<f64>)> {
    let m = starts.len();
    let mut all: Vec<Vec<State>> = starts.iter().map(|s| vec![s.clone()]).collect();
    let mut cur = starts;
    let mut grads = vec![None; m];
    let mut acc = Vec::with_capacity(chain_length.saturating_sub(1));
    for j in 1..chain_length {
        let a = sweep(target, kernel, &mut cur, &mut grads, key.sub(j as u64))?;
        let mean = a.iter().sum::<f64>() / m as f64;
        acc.push(mean);
        kernel.step = adapt(kernel.step, mean);
        for (chain, s) in all.iter_mut().zip(&cur) {
            chain.push(s.clone());
        }
    }
    Ok((all.into_iter().flatten().collect(), acc))
}
