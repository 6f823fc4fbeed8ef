//! Fixed-lag smoothing from the genealogy of index resamplers.

use super::{SmoothedMoments, history_of, weighted_moments};
use crate::error::{Result, SmcError};
use crate::scalar::Scalar;
use crate::smc::{Ancestry, SmcOutput};

/// Fixed-lag smoothing (Kitagawa & Sato 2001; Olsson et al. 2008): the moments of
/// `p(x_t | y_0..y_s)`, `s = min(t + lag, T − 1)`, estimated by the filtering weights at `s`
/// on the ancestors at `t` of the particles at `s`:
/// `Σ_i W_s^i X_t^{a_{s→t}(i)}`, with `a_{s→t}` the composed ancestor indices.
/// `O(T · lag · N)`, no transition density needed. `lag = 0` gives the filtering moments; a
/// large lag degenerates (few distinct ancestors survive many resamplings), a small lag is
/// biased towards the filter: a lag of a few correlation times is the usual choice.
///
/// Needs the genealogy: the run's resampler must copy by index (multinomial, systematic,
/// stratified, residual, SSP, killing, stop-gradient), or the run must never resample.
///
/// Errors: a run without history; [`SmcError::InvalidParameter`] for `lag ≥ T` (the series
/// length); [`SmcError::Unsupported`] (`what: "ancestor indices", needed_by: "fixed-lag
/// smoothing"`) when some step was resampled by a resampler that does not report ancestors
/// (diffusion, OT, Gumbel-softmax, soft).
///
/// ```
/// use diffsmc::prelude::*;
/// # struct M;
/// # impl<S: Scalar> StateSpaceModel<S> for M {
/// #     fn state_dim(&self) -> usize { 1 }
/// #     fn n_observations(&self) -> usize { 5 }
/// #     fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) { x[0] = S::cst(standard_normal(rng)); }
/// #     fn sample_transition(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) { x[0] = xp[0] * 0.5 + standard_normal(rng); }
/// #     fn observation_log_density(&self, _t: usize, x: &[S]) -> S { x[0] * x[0] * -0.5 }
/// # }
/// let run: SmcOutput<f64> = Smc::new(SmcConfig::new(64)?.with_history(true)).run(&Bootstrap(M), &Systematic, 3)?;
/// let s = diffsmc::smooth::fixed_lag(&run, 2)?;
/// assert_eq!(s.means.len(), 5);
/// assert!(diffsmc::smooth::fixed_lag(&run, 5).is_err()); // lag ≥ series length
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
pub fn fixed_lag<S: Scalar>(run: &SmcOutput<S>, lag: usize) -> Result<SmoothedMoments<S>> {
    let h = history_of(run)?;
    let steps = h.len();
    if h.is_empty() || h.n_particles() == 0 {
        return Err(SmcError::invalid(
            "run history",
            "empty",
            "at least one step and one particle",
        ));
    }
    if lag >= steps {
        return Err(SmcError::invalid(
            "fixed-lag lag L",
            lag,
            "less than the series length (number of steps)",
        ));
    }
    if !h.has_genealogy() {
        return Err(SmcError::Unsupported {
            what: "ancestor indices",
            needed_by: "fixed-lag smoothing",
        });
    }
    let n = h.n_particles();
    let mut means = Vec::with_capacity(steps);
    let mut variances = Vec::with_capacity(steps);
    let mut idx: Vec<usize> = Vec::with_capacity(n);
    for t in 0..steps {
        let s = (t + lag).min(steps - 1);
        idx.clear();
        idx.extend(0..n);
        for u in (t + 1..=s).rev() {
            if let Ancestry::Indices(a) = &h.ancestry[u] {
                for i in idx.iter_mut() {
                    *i = a[*i];
                }
            }
        }
        let (m, v) = weighted_moments(&h.particles[t], Some(&idx), &h.log_weights[s]);
        means.push(m);
        variances.push(v);
    }
    Ok(SmoothedMoments { means, variances })
}
