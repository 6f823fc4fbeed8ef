//! Forward-filtering backward-smoothing (FFBS) of the marginals.

use super::{SmoothedMoments, check_model, history_of, weighted_moments};
use crate::error::{Result, SmcError};
use crate::model::StateSpaceModel;
use crate::scalar::{Scalar, log_sum_exp};
use crate::smc::SmcOutput;

/// Rows (particles at `t + 1`) per parallel task.
const CHUNK: usize = 64;

/// What [`ffbs`] computed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FfbsOutput<S> {
    /// Per step `t`: the normalised log smoothing weights `log W_{t|T}^i` of the filtering
    /// particles `X_t^i`.
    pub log_weights: Vec<Vec<S>>,
    /// The smoothed means and variances `Σ_i W_{t|T}^i X_t^i` (per dimension).
    pub moments: SmoothedMoments<S>,
}

/// FFBS marginal smoothing (Doucet, Godsill & Andrieu 2000): the smoothing weights of the
/// filtering particles, backwards from `W_{T-1|T} = W_{T-1}`:
///
/// ```text
/// W_{t|T}^i = W_t^i Σ_j W_{t+1|T}^j f(X_{t+1}^j | X_t^i) / Σ_k W_t^k f(X_{t+1}^j | X_t^k)
/// ```
///
/// computed in the log domain (log-sum-exp over `k` and over `j`), `O(N²)` transition
/// densities per step, in parallel over fixed chunks. Written for any scalar: on dual numbers
/// the smoothing weights and moments carry derivatives through the particles, the filtering
/// weights and the transition density (use a smooth resampler, e.g. diffusion, for a
/// derivative of the whole estimator).
///
/// Works for every resampler. Errors: a run without history; [`SmcError::Unsupported`]
/// (`what: "transition density", needed_by: "FFBS smoothing"`) for a model without a
/// transition density; errors of the density; [`SmcError::DegenerateWeights`] naming the step
/// when some weighted particle at `t + 1` has zero predictive density under every particle at
/// `t`.
///
/// ```
/// use diffsmc::prelude::*;
/// # struct Rw;
/// # impl<S: Scalar> StateSpaceModel<S> for Rw {
/// #     fn state_dim(&self) -> usize { 1 }
/// #     fn n_observations(&self) -> usize { 2 }
/// #     fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) { x[0] = S::cst(standard_normal(rng)); }
/// #     fn sample_transition(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) { x[0] = xp[0] + standard_normal(rng); }
/// #     fn observation_log_density(&self, _t: usize, x: &[S]) -> S { x[0] * x[0] * -0.5 }
/// # }
/// // A model without a transition density cannot be smoothed:
/// let run: SmcOutput<f64> = Smc::new(SmcConfig::new(8)?.with_history(true)).run(&Bootstrap(Rw), &Systematic, 0)?;
/// let err = diffsmc::smooth::ffbs(&Rw, &run).unwrap_err();
/// assert_eq!(err, SmcError::Unsupported { what: "transition density", needed_by: "FFBS smoothing" });
/// # Ok::<(), SmcError>(())
/// ```
pub fn ffbs<S, M>(model: &M, run: &SmcOutput<S>) -> Result<FfbsOutput<S>>
where
    S: Scalar,
    M: StateSpaceModel<S> + ?Sized,
{
    let h = history_of(run)?;
    check_model(model, h, "FFBS smoothing")?;
    let steps = h.len();
    let n = h.n_particles();
    let chunks = n.div_ceil(CHUNK);
    let mut lws: Vec<Vec<S>> = vec![Vec::new(); steps];
    lws[steps - 1] = h.log_weights[steps - 1].clone();
    for t in (0..steps - 1).rev() {
        let (xt, lwt) = (&h.particles[t], &h.log_weights[t]);
        let xn = &h.particles[t + 1];
        let next = &lws[t + 1];
        // Rows j (particles at t + 1): log f(X_{t+1}^j | X_t^i) for all i, and
        // a_j = log W_{t+1|T}^j − log Σ_k W_t^k f(X_{t+1}^j | X_t^k).
        let rows = crate::par::map_chunks::<S, _>(chunks, |c| -> Result<Vec<(Vec<S>, S)>> {
            let mut out = Vec::with_capacity(CHUNK);
            let mut buf = vec![S::zero(); n];
            for j in c * CHUNK..((c + 1) * CHUNK).min(n) {
                let mut lf = Vec::with_capacity(n);
                for i in 0..n {
                    let f = model.transition_log_density(t + 1, xt.particle(i), xn.particle(j))?;
                    lf.push(f);
                    buf[i] = lwt[i] + f;
                }
                let a = if next[j].re() == f64::NEG_INFINITY {
                    S::cst(f64::NEG_INFINITY)
                } else {
                    let denom = log_sum_exp(&buf);
                    if !denom.re().is_finite() {
                        return Err(SmcError::DegenerateWeights { step: t });
                    }
                    next[j] - denom
                };
                out.push((lf, a));
            }
            Ok(out)
        });
        let mut lf: Vec<Vec<S>> = Vec::with_capacity(n);
        let mut a: Vec<S> = Vec::with_capacity(n);
        for r in rows {
            for (row, aj) in r? {
                lf.push(row);
                a.push(aj);
            }
        }
        // Columns i: log W_{t|T}^i = log W_t^i + log Σ_j exp(a_j + log f(X_{t+1}^j | X_t^i)).
        let cols = crate::par::map_chunks::<S, _>(chunks, |c| {
            let mut buf = vec![S::zero(); n];
            (c * CHUNK..((c + 1) * CHUNK).min(n))
                .map(|i| {
                    if lwt[i].re() == f64::NEG_INFINITY {
                        return lwt[i];
                    }
                    for (b, (aj, row)) in buf.iter_mut().zip(a.iter().zip(&lf)) {
                        *b = *aj + row[i];
                    }
                    lwt[i] + log_sum_exp(&buf)
                })
                .collect::<Vec<S>>()
        });
        let mut cur: Vec<S> = cols.into_iter().flatten().collect();
        let lse = log_sum_exp(&cur);
        if !lse.re().is_finite() {
            return Err(SmcError::DegenerateWeights { step: t });
        }
        for w in cur.iter_mut() {
            *w -= lse;
        }
        lws[t] = cur;
    }
    let (means, variances) = (0..steps)
        .map(|t| weighted_moments(&h.particles[t], None, &lws[t]))
        .unzip();
    Ok(FfbsOutput {
        log_weights: lws,
        moments: SmoothedMoments { means, variances },
    })
}
