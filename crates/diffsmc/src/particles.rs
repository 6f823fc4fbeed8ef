//! Particle storage and weight utilities.

use crate::error::{Result, SmcError};
use crate::scalar::{Scalar, log_sum_exp};

/// `n` particles in `R^d`, stored particle-major (`x[i * d + k]` is coordinate `k` of
/// particle `i`).
///
/// ```
/// use diffsmc::Particles;
/// let mut p = Particles::<f64>::zeros(3, 2);
/// p.particle_mut(1)[0] = 5.0;
/// assert_eq!(p.particle(1), &[5.0, 0.0]);
/// assert_eq!((p.len(), p.dim()), (3, 2));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Particles<S> {
    n: usize,
    d: usize,
    x: Vec<S>,
}

impl<S: Scalar> Particles<S> {
    /// `n` particles of dimension `d`, all zero.
    pub fn zeros(n: usize, d: usize) -> Self {
        Particles {
            n,
            d,
            x: vec![S::zero(); n * d],
        }
    }

    /// Wraps a particle-major buffer of `n * d` values.
    pub fn from_vec(n: usize, d: usize, x: Vec<S>) -> Result<Self> {
        if x.len() != n * d {
            return Err(SmcError::DimensionMismatch {
                what: "particle buffer length (n * d)",
                expected: n * d,
                got: x.len(),
            });
        }
        Ok(Particles { n, d, x })
    }
}

impl<S> Particles<S> {
    /// Number of particles.
    #[inline]
    pub fn len(&self) -> usize {
        self.n
    }
    /// True when there are no particles.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
    /// Dimension of each particle.
    #[inline]
    pub fn dim(&self) -> usize {
        self.d
    }
    /// Particle `i`.
    #[inline]
    pub fn particle(&self, i: usize) -> &[S] {
        &self.x[i * self.d..(i + 1) * self.d]
    }
    /// Particle `i`, mutably.
    #[inline]
    pub fn particle_mut(&mut self, i: usize) -> &mut [S] {
        &mut self.x[i * self.d..(i + 1) * self.d]
    }
    /// The whole particle-major buffer.
    #[inline]
    pub fn as_slice(&self) -> &[S] {
        &self.x
    }
    /// The whole particle-major buffer, mutably.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [S] {
        &mut self.x
    }
    /// Iterates over particles.
    pub fn iter(&self) -> std::slice::ChunksExact<'_, S> {
        self.x.chunks_exact(self.d.max(1))
    }
    /// Consumes into the particle-major buffer.
    pub fn into_vec(self) -> Vec<S> {
        self.x
    }
}

/// Normalises log-weights in place so that `logsumexp = 0`, and returns the log of the sum
/// before normalisation. Errors with [`SmcError::DegenerateWeights`] (naming `step`) when all
/// weights are `-inf` or any is NaN or `+inf`.
///
/// ```
/// let mut lw = vec![0.0_f64, 0.0];
/// let lse = diffsmc::normalise_log_weights(&mut lw, 0).unwrap();
/// assert!((lse - 2f64.ln()).abs() < 1e-15);
/// assert!((lw[0] - 0.5f64.ln()).abs() < 1e-15);
/// ```
pub fn normalise_log_weights<S: Scalar>(log_w: &mut [S], step: usize) -> Result<S> {
    let lse = log_sum_exp(log_w);
    let r = lse.re();
    if !r.is_finite() || log_w.iter().any(|w| w.re().is_nan()) {
        return Err(SmcError::DegenerateWeights { step });
    }
    for w in log_w.iter_mut() {
        *w -= lse;
    }
    Ok(lse)
}

/// Effective sample size `1 / Σ w_i²` of normalised log-weights (value part), in `[1, N]`.
///
/// ```
/// let lw = vec![(0.5f64).ln(); 2];
/// assert!((diffsmc::ess(&lw) - 2.0).abs() < 1e-12);
/// ```
pub fn ess<S: Scalar>(log_w: &[S]) -> f64 {
    // Recompute from the values with a max shift so that slightly unnormalised input is fine.
    let m = log_w
        .iter()
        .map(|w| w.re())
        .fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return 0.0;
    }
    let (mut s1, mut s2) = (0.0, 0.0);
    for w in log_w {
        let e = (w.re() - m).exp();
        s1 += e;
        s2 += e * e;
    }
    s1 * s1 / s2
}

/// Normalised weights `exp(log_w)` as `f64` values (value part).
///
/// ```
/// let w = diffsmc::weights_f64(&[0.0_f64, 2f64.ln(), f64::NEG_INFINITY]);
/// assert!((w[0] - 1.0 / 3.0).abs() < 1e-15 && (w[1] - 2.0 / 3.0).abs() < 1e-15);
/// assert_eq!(w[2], 0.0);
/// // A NaN or +inf log-weight, or all -inf, gives non-finite weights (callers check).
/// assert!(diffsmc::weights_f64(&[0.0, f64::NAN]).iter().all(|v| v.is_nan()));
/// ```
pub fn weights_f64<S: Scalar>(log_w: &[S]) -> Vec<f64> {
    let mut w = Vec::with_capacity(log_w.len());
    weights_f64_into(log_w, &mut w);
    w
}

/// [`weights_f64`] into a reusable buffer (cleared and refilled; no allocation once it has
/// the capacity). The exponentials are the vectorised kernel of the resamplers (relative
/// error < 1e-15 against `f64::exp`), summed in a fixed lane order, so the weights are the
/// same bits on every thread count and CPU.
pub fn weights_f64_into<S: Scalar>(log_w: &[S], w: &mut Vec<f64>) {
    w.clear();
    w.extend(log_w.iter().map(|x| x.re()));
    let (m, nan) = crate::kernels::max_and_nan(w);
    if nan || !m.is_finite() {
        // NaN, +inf, or all -inf: the plain formula, whose weights are all non-finite.
        let s: f64 = w.iter().map(|x| (x - m).exp()).sum();
        for v in w.iter_mut() {
            *v = (*v - m).exp() / s;
        }
        return;
    }
    let (s, _) = crate::kernels::exp_shifted_sums(w, m);
    for v in w.iter_mut() {
        *v /= s;
    }
}

/// Weighted mean of particles with normalised log-weights.
pub fn weighted_mean<S: Scalar>(p: &Particles<S>, log_w: &[S]) -> Vec<S> {
    let d = p.dim();
    let mut m = vec![S::zero(); d];
    for (x, lw) in p.iter().zip(log_w) {
        let w = lw.exp();
        for k in 0..d {
            m[k] += w * x[k];
        }
    }
    m
}

/// Weighted mean and covariance (row-major `d × d`) of particles with normalised log-weights.
pub fn weighted_mean_cov<S: Scalar>(p: &Particles<S>, log_w: &[S]) -> (Vec<S>, Vec<S>) {
    let d = p.dim();
    let m = weighted_mean(p, log_w);
    let mut c = vec![S::zero(); d * d];
    for (x, lw) in p.iter().zip(log_w) {
        let w = lw.exp();
        for a in 0..d {
            let da = (x[a] - m[a]) * w;
            for b in 0..=a {
                c[a * d + b] += da * (x[b] - m[b]);
            }
        }
    }
    for a in 0..d {
        for b in 0..a {
            c[b * d + a] = c[a * d + b];
        }
    }
    (m, c)
}
