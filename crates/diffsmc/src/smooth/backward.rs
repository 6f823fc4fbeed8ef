//! Backward simulation of smoothing trajectories: exact and rejection samplers.

use rand::RngExt;

use super::{
    SmoothedMoments, check_model, cumulative_weights, draw_cumulative, history_of, weighted_moments,
};
use crate::error::{Result, SmcError};
use crate::model::StateSpaceModel;
use crate::rng::{Purpose, StreamKey, StreamRng};
use crate::scalar::Scalar;
use crate::smc::{History, SmcOutput};

/// Stream tag of backward simulation (`Purpose::Other`).
const BACKWARD_TAG: u32 = 0x5300_0001;
/// Trajectories per parallel task.
const CHUNK: usize = 16;

/// How a backward index is drawn from `Λ_t(x, i) ∝ W_t^i f(x | X_t^i)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackwardMethod {
    /// Compute all `N` backward weights and draw by inverse CDF: `O(N)` per draw, `O(N M)`
    /// per step for `M` trajectories (`O(N²)` for `M = N`).
    Exact,
    /// Rejection sampling (Douc, Garivier, Moulines & Olsson 2011): propose `i ~ W_t`, accept
    /// with probability `f(x | X_t^i) / sup f` (needs
    /// [`StateSpaceModel::transition_log_density_bound`]); after `max_tries` rejections the
    /// draw falls back to [`BackwardMethod::Exact`], so the cost is bounded and the draw still
    /// exact. Expected cost `O(1)` per draw when the acceptance rate is not small.
    Rejection {
        /// Proposals before falling back to the exact draw (≥ 1).
        max_tries: usize,
    },
}

impl BackwardMethod {
    /// Validated [`BackwardMethod::Rejection`].
    ///
    /// ```
    /// use diffsmc::smooth::BackwardMethod;
    /// assert!(BackwardMethod::rejection(32).is_ok());
    /// assert!(BackwardMethod::rejection(0).is_err());
    /// ```
    pub fn rejection(max_tries: usize) -> Result<Self> {
        if max_tries == 0 {
            return Err(SmcError::invalid(
                "rejection max_tries",
                max_tries,
                "at least 1",
            ));
        }
        Ok(BackwardMethod::Rejection { max_tries })
    }
}

/// Configuration of [`backward_simulation`].
///
/// ```
/// use diffsmc::smooth::{BackwardConfig, BackwardMethod};
/// let c = BackwardConfig::new(100)?.with_method(BackwardMethod::rejection(32)?)?.with_seed(7);
/// assert_eq!(c.n_trajectories(), 100);
/// assert!(BackwardConfig::new(0).is_err());
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct BackwardConfig {
    n_trajectories: usize,
    method: BackwardMethod,
    seed: u64,
}

impl BackwardConfig {
    /// `n_trajectories ≥ 1` trajectories, exact draws, seed 0.
    pub fn new(n_trajectories: usize) -> Result<Self> {
        if n_trajectories == 0 {
            return Err(SmcError::invalid(
                "backward trajectories M",
                n_trajectories,
                "at least 1",
            ));
        }
        Ok(BackwardConfig {
            n_trajectories,
            method: BackwardMethod::Exact,
            seed: 0,
        })
    }
    /// The draw method (validated).
    pub fn with_method(mut self, method: BackwardMethod) -> Result<Self> {
        if let BackwardMethod::Rejection { max_tries } = method {
            BackwardMethod::rejection(max_tries)?;
        }
        self.method = method;
        Ok(self)
    }
    /// The seed of the backward draws.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Number of trajectories `M`.
    pub fn n_trajectories(&self) -> usize {
        self.n_trajectories
    }
    /// The draw method.
    pub fn method(&self) -> BackwardMethod {
        self.method
    }
}

/// What [`backward_simulation`] produced.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BackwardOutput<S> {
    /// Per step `t`, per trajectory `m`: the index `J_t^m` of the filtering particle at `t`;
    /// trajectory `m` is `(X_0^{J_0^m}, …, X_{T-1}^{J_{T-1}^m})`.
    pub indices: Vec<Vec<usize>>,
    /// Per step and dimension, the mean and variance of the `M` trajectories' states.
    pub moments: SmoothedMoments<S>,
    /// Backward draws made (`M · (T − 1)`).
    pub draws: usize,
    /// Draws that fell back to the exact sampler after `max_tries` rejections (0 for
    /// [`BackwardMethod::Exact`]).
    pub fallbacks: usize,
    /// Proposals made by the rejection sampler (0 for [`BackwardMethod::Exact`]).
    pub proposals: usize,
}

/// Draws backward indices at one step: shared by backward simulation and PaRIS.
pub(crate) struct BackwardKernel<'a, S, M: ?Sized> {
    model: &'a M,
    h: &'a History<S>,
    /// Per step: cumulative filtering weights (value part).
    cum: Vec<Vec<f64>>,
    /// Per step `t + 1`: `log sup f_{t+1}`, for rejection sampling.
    bounds: Option<Vec<f64>>,
    max_tries: usize,
}

/// One backward draw: the index, whether it fell back to the exact draw, proposals made.
pub(crate) struct Draw {
    pub index: usize,
    pub fell_back: bool,
    pub proposals: usize,
}

impl<'a, S: Scalar, M: StateSpaceModel<S> + ?Sized> BackwardKernel<'a, S, M> {
    /// `method`'s kernel; a rejection method on a model without a density bound is
    /// [`SmcError::Unsupported`] naming `needed_by`.
    pub(crate) fn new(
        model: &'a M,
        h: &'a History<S>,
        method: BackwardMethod,
        needed_by: &'static str,
    ) -> Result<Self> {
        let cum = h
            .log_weights
            .iter()
            .map(|lw| cumulative_weights(lw))
            .collect();
        let (bounds, max_tries) = match method {
            BackwardMethod::Exact => (None, 0),
            BackwardMethod::Rejection { max_tries } => {
                let b = (1..h.len())
                    .map(|t| {
                        model
                            .transition_log_density_bound(t)
                            .ok_or(SmcError::Unsupported {
                                what: "transition density bound",
                                needed_by,
                            })
                    })
                    .collect::<Result<Vec<f64>>>()?;
                (Some(b), max_tries)
            }
        };
        Ok(BackwardKernel {
            model,
            h,
            cum,
            bounds,
            max_tries,
        })
    }

    fn log_f(&self, t: usize, i: usize, x_next: &[S]) -> Result<f64> {
        Ok(self
            .model
            .transition_log_density(t + 1, self.h.particles[t].particle(i), x_next)?
            .re())
    }

    /// The normalised backward probabilities `Λ_t(x_next, ·)` (value part).
    pub(crate) fn probabilities(&self, t: usize, x_next: &[S]) -> Result<Vec<f64>> {
        let lw = &self.h.log_weights[t];
        let mut l = Vec::with_capacity(lw.len());
        let mut max = f64::NEG_INFINITY;
        for (i, w) in lw.iter().enumerate() {
            let v = if w.re() == f64::NEG_INFINITY {
                f64::NEG_INFINITY
            } else {
                w.re() + self.log_f(t, i, x_next)?
            };
            if v.is_nan() {
                return Err(SmcError::DegenerateWeights { step: t });
            }
            max = max.max(v);
            l.push(v);
        }
        if !max.is_finite() {
            return Err(SmcError::DegenerateWeights { step: t });
        }
        let mut s = 0.0;
        for v in l.iter_mut() {
            *v = (*v - max).exp();
            s += *v;
        }
        for v in l.iter_mut() {
            *v /= s;
        }
        Ok(l)
    }

    /// Draws `J ~ Λ_t(x_next, ·)`, `x_next` a state at step `t + 1`.
    pub(crate) fn draw(&self, t: usize, x_next: &[S], rng: &mut StreamRng) -> Result<Draw> {
        let mut proposals = 0;
        if let Some(bounds) = &self.bounds {
            let b = bounds[t];
            for _ in 0..self.max_tries {
                proposals += 1;
                let i = draw_cumulative(&self.cum[t], rng.random::<f64>());
                let lf = self.log_f(t, i, x_next)?;
                if lf > b + 1e-9 * (1.0 + b.abs()) {
                    return Err(SmcError::invalid(
                        "transition density bound",
                        format!("{b} < log f = {lf} at step {}", t + 1),
                        "an upper bound of the log transition density",
                    ));
                }
                let u: f64 = rng.random();
                if u.ln() < lf - b {
                    return Ok(Draw {
                        index: i,
                        fell_back: false,
                        proposals,
                    });
                }
            }
        }
        let p = self.probabilities(t, x_next)?;
        let u: f64 = rng.random();
        let mut acc = 0.0;
        let mut index = p.len() - 1;
        for (i, pi) in p.iter().enumerate() {
            acc += pi;
            if u < acc {
                index = i;
                break;
            }
        }
        Ok(Draw {
            index,
            fell_back: self.bounds.is_some(),
            proposals,
        })
    }
}

/// Backward simulation (Godsill, Doucet & West 2004): `M` trajectories, each drawn backwards
/// from `J_{T-1} ~ W_{T-1}` and `J_t ~ Λ_t(X_{t+1}^{J_{t+1}}, ·)`,
/// `Λ_t(x, i) ∝ W_t^i f(x | X_t^i)`, by the exact or the rejection sampler
/// ([`BackwardMethod`]). The trajectories are draws from the particle approximation of the
/// joint smoothing distribution; their moments estimate the smoothed moments.
///
/// Draw `t` of trajectory `m` uses stream `m` of a key of `(seed, t)`, so a seed fixes the
/// result whatever the number of threads. Works for every resampler.
///
/// Errors: a run without history; [`SmcError::Unsupported`] (`"transition density"`, or
/// `"transition density bound"` for rejection) naming `"backward simulation"`;
/// [`SmcError::DegenerateWeights`]; an invalid bound (a density above it) as
/// [`SmcError::InvalidParameter`].
pub fn backward_simulation<S, M>(
    model: &M,
    run: &SmcOutput<S>,
    config: &BackwardConfig,
) -> Result<BackwardOutput<S>>
where
    S: Scalar,
    M: StateSpaceModel<S> + ?Sized,
{
    let h = history_of(run)?;
    check_model(model, h, "backward simulation")?;
    let kernel = BackwardKernel::new(model, h, config.method, "backward simulation")?;
    let steps = h.len();
    let m_total = config.n_trajectories;
    let seed = config.seed;
    let chunks = m_total.div_ceil(CHUNK);
    type Chunk = (Vec<Vec<usize>>, usize, usize);
    let results = crate::par::map_chunks::<S, _>(chunks, |c| -> Result<Chunk> {
        let mut trajs = Vec::with_capacity(CHUNK);
        let (mut fallbacks, mut proposals) = (0, 0);
        for m in c * CHUNK..((c + 1) * CHUNK).min(m_total) {
            let mut idx = vec![0usize; steps];
            let last = steps - 1;
            let mut rng = StreamKey::new(seed, last, Purpose::Other(BACKWARD_TAG)).rng(m);
            idx[last] = draw_cumulative(&kernel.cum[last], rng.random::<f64>());
            for t in (0..last).rev() {
                let mut rng = StreamKey::new(seed, t, Purpose::Other(BACKWARD_TAG)).rng(m);
                let x_next = h.particles[t + 1].particle(idx[t + 1]);
                let d = kernel.draw(t, x_next, &mut rng)?;
                idx[t] = d.index;
                fallbacks += usize::from(d.fell_back);
                proposals += d.proposals;
            }
            trajs.push(idx);
        }
        Ok((trajs, fallbacks, proposals))
    });
    let mut indices = vec![Vec::with_capacity(m_total); steps];
    let (mut fallbacks, mut proposals) = (0, 0);
    for r in results {
        let (trajs, f, p) = r?;
        fallbacks += f;
        proposals += p;
        for traj in trajs {
            for (t, &i) in traj.iter().enumerate() {
                indices[t].push(i);
            }
        }
    }
    let uniform = vec![S::cst(-(m_total as f64).ln()); m_total];
    let (means, variances) = (0..steps)
        .map(|t| weighted_moments(&h.particles[t], Some(&indices[t]), &uniform))
        .unzip();
    Ok(BackwardOutput {
        indices,
        moments: SmoothedMoments { means, variances },
        draws: m_total * (steps - 1),
        fallbacks,
        proposals,
    })
}
