//! Distances between weighted samples: sliced 1-Wasserstein, mean squared error.

use diffsmc::rng::{StreamKey, standard_normal};

use crate::error::{GmError, Result};
use crate::linalg::{check_finite, normalise_log};
use crate::mixture::points_in;

/// Normalised weights `exp(l_p − logsumexp(l))` from log-weights (which need not be
/// normalised), e.g. the output log-weights of a resampler.
///
/// Errors: NaN or `+inf` entries, all `-inf`, or an empty slice ([`GmError::InvalidWeights`]).
///
/// ```
/// use diffsmc_gaussian_mixture::weights_from_log;
/// let w = weights_from_log(&[0.0, 2f64.ln(), f64::NEG_INFINITY])?;
/// assert!((w[0] - 1.0 / 3.0).abs() < 1e-15 && (w[1] - 2.0 / 3.0).abs() < 1e-15 && w[2] == 0.0);
/// # Ok::<(), diffsmc_gaussian_mixture::GmError>(())
/// ```
pub fn weights_from_log(log_weights: &[f64]) -> Result<Vec<f64>> {
    if log_weights
        .iter()
        .any(|l| l.is_nan() || *l == f64::INFINITY)
    {
        return Err(GmError::InvalidWeights {
            what: "log-weights",
            reason: "a log-weight is NaN or +inf",
        });
    }
    let (normalised, _) = normalise_log(log_weights).ok_or(GmError::InvalidWeights {
        what: "log-weights",
        reason: "no log-weight is finite",
    })?;
    Ok(normalised.iter().map(|l| l.exp()).collect())
}

/// Validates weights for `n` points and returns them normalised to sum one.
fn normalised_weights(w: &[f64], n: usize, what: &'static str) -> Result<Vec<f64>> {
    if w.len() != n {
        return Err(GmError::DimensionMismatch {
            what,
            expected: n,
            got: w.len(),
        });
    }
    let mut total = 0.0;
    for &wi in w {
        if !wi.is_finite() {
            return Err(GmError::InvalidWeights {
                what,
                reason: "a weight is NaN or infinite",
            });
        }
        if wi < 0.0 {
            return Err(GmError::InvalidWeights {
                what,
                reason: "a weight is negative",
            });
        }
        total += wi;
    }
    if !(total > 0.0 && total.is_finite()) {
        return Err(GmError::InvalidWeights {
            what,
            reason: "the weights do not have a positive finite total",
        });
    }
    Ok(w.iter().map(|wi| wi / total).collect())
}

/// The (weighted) mean of the points of the particle-major buffer `x` in R^d. Weights `w` are
/// non-negative and normalised here; `None` means uniform.
///
/// Errors: `d = 0`, no points, `x.len()` not a multiple of `d`, a weight count different from
/// the point count, invalid weights, non-finite points.
///
/// ```
/// use diffsmc_gaussian_mixture::weighted_mean;
/// let x = [0.0, 0.0, 2.0, 4.0];
/// assert_eq!(weighted_mean(&x, None, 2)?, vec![1.0, 2.0]);
/// assert_eq!(weighted_mean(&x, Some(&[1.0, 3.0]), 2)?, vec![1.5, 3.0]);
/// # Ok::<(), diffsmc_gaussian_mixture::GmError>(())
/// ```
pub fn weighted_mean(x: &[f64], w: Option<&[f64]>, d: usize) -> Result<Vec<f64>> {
    let n = nonempty_points(x, d, "sample")?;
    let mut mean = vec![0.0; d];
    match w {
        None => {
            for p in x.chunks_exact(d) {
                for (m, v) in mean.iter_mut().zip(p) {
                    *m += v;
                }
            }
            let inv = 1.0 / n as f64;
            mean.iter_mut().for_each(|m| *m *= inv);
        }
        Some(w) => {
            let w = normalised_weights(w, n, "sample weights")?;
            for (p, wp) in x.chunks_exact(d).zip(&w) {
                for (m, v) in mean.iter_mut().zip(p) {
                    *m += wp * v;
                }
            }
        }
    }
    Ok(mean)
}

/// The squared Euclidean error `|x̄ − truth|²` of the (weighted) sample mean `x̄` of the
/// particle-major buffer `x` in R^d against `truth` (length `d`), e.g. the exact posterior mean.
///
/// Errors: those of [`weighted_mean`], and `truth.len() != d`.
///
/// ```
/// use diffsmc_gaussian_mixture::mean_sq_error;
/// let x = [1.0, 1.0, 3.0, 1.0];
/// // Mean (2, 1) against (0, 0).
/// assert_eq!(mean_sq_error(&x, None, 2, &[0.0, 0.0])?, 5.0);
/// # Ok::<(), diffsmc_gaussian_mixture::GmError>(())
/// ```
pub fn mean_sq_error(x: &[f64], w: Option<&[f64]>, d: usize, truth: &[f64]) -> Result<f64> {
    if truth.len() != d {
        return Err(GmError::DimensionMismatch {
            what: "length of the true mean vs dimension",
            expected: d,
            got: truth.len(),
        });
    }
    check_finite(truth, "true mean")?;
    let mean = weighted_mean(x, w, d)?;
    Ok(mean.iter().zip(truth).map(|(m, t)| (m - t) * (m - t)).sum())
}

/// The number of points of a non-empty, finite particle-major buffer.
fn nonempty_points(x: &[f64], d: usize, what: &'static str) -> Result<usize> {
    let n = points_in(x, d, "sample buffer length vs dimension")?;
    if n == 0 {
        return Err(GmError::invalid(
            what,
            "an empty buffer",
            "at least one point",
        ));
    }
    check_finite(x, what)?;
    Ok(n)
}

/// The cumulative distribution of a sorted 1-D weighted sample, evaluated after the first `i`
/// points.
#[derive(Clone, Copy)]
enum Cdf<'a> {
    /// `n` points of weight `1/n` each: `F = i / n` exactly.
    Uniform(f64),
    /// Prefix sums of the sorted weights: `F = cum[i − 1]`.
    Cumulative(&'a [f64]),
}

impl Cdf<'_> {
    #[inline]
    fn at(self, i: usize) -> f64 {
        match self {
            Cdf::Uniform(n) => i as f64 / n,
            Cdf::Cumulative(cum) => {
                if i == 0 {
                    0.0
                } else {
                    cum[i - 1]
                }
            }
        }
    }
}

/// Reusable buffers for one side (one sample) of the 1-D problem.
#[derive(Debug, Clone, Default)]
struct Side {
    /// Sorted projections.
    vals: Vec<f64>,
    /// Prefix sums of the weights in sorted order (weighted samples only).
    cum: Vec<f64>,
    /// `(projection, weight)` pairs for sorting weighted samples.
    pairs: Vec<(f64, f64)>,
}

impl Side {
    /// Projects the `n` points of `x` on `u`, sorts, and returns the sorted values with their
    /// CDF view.
    fn project_sort<'a>(
        &'a mut self,
        x: &[f64],
        w: Option<&[f64]>,
        u: &[f64],
    ) -> (&'a [f64], Cdf<'a>) {
        let d = u.len();
        let proj = |p: &[f64]| p.iter().zip(u).map(|(a, b)| a * b).sum::<f64>();
        match w {
            None => {
                self.vals.clear();
                self.vals.extend(x.chunks_exact(d).map(proj));
                self.vals.sort_unstable_by(f64::total_cmp);
                (&self.vals, Cdf::Uniform(self.vals.len() as f64))
            }
            Some(w) => {
                self.pairs.clear();
                self.pairs
                    .extend(x.chunks_exact(d).map(proj).zip(w.iter().copied()));
                self.pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
                self.vals.clear();
                self.cum.clear();
                let mut acc = 0.0;
                for &(v, wi) in &self.pairs {
                    acc += wi;
                    self.vals.push(v);
                    self.cum.push(acc);
                }
                (&self.vals, Cdf::Cumulative(&self.cum))
            }
        }
    }
}

/// Exact `W1 = ∫ |F(t) − G(t)| dt` between two sorted, weighted 1-D samples, by merging them.
fn w1_sorted(xv: &[f64], fx: Cdf<'_>, yv: &[f64], gy: Cdf<'_>) -> f64 {
    let (n, m) = (xv.len(), yv.len());
    let (mut i, mut j) = (0usize, 0usize);
    let mut acc = 0.0;
    let mut prev = f64::NAN;
    loop {
        let t = match (xv.get(i), yv.get(j)) {
            (Some(&a), Some(&b)) => a.min(b),
            (Some(&a), None) => a,
            (None, Some(&b)) => b,
            (None, None) => break,
        };
        if i + j > 0 {
            acc += (fx.at(i) - gy.at(j)).abs() * (t - prev);
        }
        while i < n && xv[i] <= t {
            i += 1;
        }
        while j < m && yv[j] <= t {
            j += 1;
        }
        prev = t;
    }
    acc
}

/// The sliced 1-Wasserstein distance in R^d with a fixed set of random directions, and buffers
/// reused across directions and calls.
///
/// `SW1(μ, ν) = (1/L) Σ_l W1(u_l#μ, u_l#ν)` with `u_l` uniform on the unit sphere (normalised
/// Gaussian vectors, direction `l` from stream `key.rng(l)`), where each 1-D `W1 = ∫ |F − G|`
/// is computed exactly from the sorted projections of the two (weighted) empirical measures.
/// Cost per direction: `O((n + m) d)` to project plus `O(n log n + m log m)` to sort.
///
/// Keeping one value for many comparisons evaluates every method against the same
/// directions (common random numbers); it is a metric on (weighted) empirical measures.
///
/// ```
/// use diffsmc::rng::{Purpose, StreamKey};
/// use diffsmc_gaussian_mixture::SlicedWasserstein;
///
/// let mut sw = SlicedWasserstein::new(2, 500, StreamKey::new(0, 0, Purpose::Other(1)))?;
/// let x = [0.0, 0.0, 1.0, 1.0];
/// assert_eq!(sw.distance(&x, None, &x, None)?, 0.0);
/// // Point mass at the origin vs. point mass at (3, 4): the mean of |(3, 4)·u| over directions.
/// let d = sw.distance(&[0.0, 0.0], None, &[3.0, 4.0], None)?;
/// let expected: f64 = sw
///     .directions()
///     .chunks_exact(2)
///     .map(|u| (3.0 * u[0] + 4.0 * u[1]).abs())
///     .sum::<f64>()
///     / 500.0;
/// assert!((d - expected).abs() < 1e-12);
/// # Ok::<(), diffsmc_gaussian_mixture::GmError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SlicedWasserstein {
    dim: usize,
    n_directions: usize,
    directions: Vec<f64>,
    x_side: Side,
    y_side: Side,
}

impl SlicedWasserstein {
    /// `n_directions ≥ 1` random unit directions in R^d (`d ≥ 1`) drawn from `key`.
    ///
    /// ```
    /// use diffsmc::rng::{Purpose, StreamKey};
    /// use diffsmc_gaussian_mixture::{GmError, SlicedWasserstein};
    /// let key = StreamKey::new(0, 0, Purpose::Other(1));
    /// let sw = SlicedWasserstein::new(3, 10, key)?;
    /// for u in sw.directions().chunks_exact(3) {
    ///     assert!((u.iter().map(|v| v * v).sum::<f64>() - 1.0).abs() < 1e-12);
    /// }
    /// assert!(matches!(SlicedWasserstein::new(0, 10, key), Err(GmError::InvalidParameter { .. })));
    /// assert!(matches!(SlicedWasserstein::new(3, 0, key), Err(GmError::InvalidParameter { .. })));
    /// # Ok::<(), GmError>(())
    /// ```
    pub fn new(d: usize, n_directions: usize, key: StreamKey) -> Result<Self> {
        if d == 0 {
            return Err(GmError::invalid("d", d, "dimension of at least 1"));
        }
        if n_directions == 0 {
            return Err(GmError::invalid(
                "n_directions",
                n_directions,
                "at least one direction",
            ));
        }
        let mut directions = vec![0.0; n_directions * d];
        for (l, u) in directions.chunks_exact_mut(d).enumerate() {
            let mut rng = key.rng(l);
            loop {
                for v in u.iter_mut() {
                    *v = standard_normal(&mut rng);
                }
                let norm = u.iter().map(|v| v * v).sum::<f64>().sqrt();
                // A zero vector has probability zero; redraw from the same stream if it occurs.
                if norm > 0.0 && norm.is_finite() {
                    u.iter_mut().for_each(|v| *v /= norm);
                    break;
                }
            }
        }
        Ok(SlicedWasserstein {
            dim: d,
            n_directions,
            directions,
            x_side: Side::default(),
            y_side: Side::default(),
        })
    }

    /// The dimension `d`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The number of directions.
    pub fn n_directions(&self) -> usize {
        self.n_directions
    }

    /// The unit directions, direction-major (`n_directions·d` numbers).
    pub fn directions(&self) -> &[f64] {
        &self.directions
    }

    /// The sliced 1-Wasserstein distance between the empirical measures of the particle-major
    /// samples `x` and `y` (any sizes `n, m ≥ 1`), weighted by `wx`, `wy` (non-negative,
    /// normalised here) or uniform when `None`.
    ///
    /// Errors: empty samples, lengths that are not multiples of `d`, weight counts that do not
    /// match, invalid weights, non-finite points.
    pub fn distance(
        &mut self,
        x: &[f64],
        wx: Option<&[f64]>,
        y: &[f64],
        wy: Option<&[f64]>,
    ) -> Result<f64> {
        let d = self.dim;
        let nx = nonempty_points(x, d, "first sample")?;
        let ny = nonempty_points(y, d, "second sample")?;
        let wx = wx
            .map(|w| normalised_weights(w, nx, "first sample weights"))
            .transpose()?;
        let wy = wy
            .map(|w| normalised_weights(w, ny, "second sample weights"))
            .transpose()?;
        let mut total = 0.0;
        for u in self.directions.chunks_exact(d) {
            let (xv, fx) = self.x_side.project_sort(x, wx.as_deref(), u);
            let (yv, gy) = self.y_side.project_sort(y, wy.as_deref(), u);
            total += w1_sorted(xv, fx, yv, gy);
        }
        Ok(total / self.n_directions as f64)
    }
}

/// The sliced 1-Wasserstein distance between two weighted (or, with `None`, uniform) empirical
/// measures in R^d given as particle-major buffers, averaged over `n_directions` random
/// directions drawn from `key`. A one-shot [`SlicedWasserstein`]; see there for the definition.
///
/// The paper uses 1000 directions ([`crate::PAPER_DIRECTIONS`]).
///
/// ```
/// use diffsmc::rng::{Purpose, StreamKey};
/// use diffsmc_gaussian_mixture::sliced_wasserstein;
/// let key = StreamKey::new(0, 0, Purpose::Other(1));
/// // In 1-D the only directions are ±1: W1 between δ_0 and ½δ_1 + ½δ_3 is 2.
/// let w = sliced_wasserstein(&[0.0], None, &[1.0, 3.0], None, 1, 10, key)?;
/// assert!((w - 2.0).abs() < 1e-15);
/// // Weights: ¼δ_0 + ¾δ_1 against δ_{0.5}.
/// let w = sliced_wasserstein(&[0.0, 1.0], Some(&[0.25, 0.75]), &[0.5], None, 1, 10, key)?;
/// assert!((w - 0.5).abs() < 1e-15);
/// # Ok::<(), diffsmc_gaussian_mixture::GmError>(())
/// ```
pub fn sliced_wasserstein(
    x: &[f64],
    wx: Option<&[f64]>,
    y: &[f64],
    wy: Option<&[f64]>,
    d: usize,
    n_directions: usize,
    key: StreamKey,
) -> Result<f64> {
    SlicedWasserstein::new(d, n_directions, key)?.distance(x, wx, y, wy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffsmc::rng::Purpose;
    use proptest::prelude::*;

    fn key(tag: u32) -> StreamKey {
        StreamKey::new(2024, 0, Purpose::Other(tag))
    }

    /// A brute-force `W1 = ∫|F − G|` on a fine grid for small 1-D examples.
    fn w1_brute(x: &[f64], wx: &[f64], y: &[f64], wy: &[f64]) -> f64 {
        let mut pts: Vec<f64> = x.iter().chain(y).copied().collect();
        pts.sort_by(f64::total_cmp);
        let cdf = |s: &[f64], w: &[f64], t: f64| -> f64 {
            s.iter()
                .zip(w)
                .filter(|(v, _)| **v <= t)
                .map(|(_, w)| w)
                .sum()
        };
        let tw: f64 = wx.iter().sum();
        let tv: f64 = wy.iter().sum();
        pts.windows(2)
            .map(|p| (cdf(x, wx, p[0]) / tw - cdf(y, wy, p[0]) / tv).abs() * (p[1] - p[0]))
            .sum()
    }

    #[test]
    fn merge_matches_brute_force_cdf_integral() {
        let x = [0.3, -1.0, 2.5, 0.3, 7.0];
        let wx = [0.1, 0.4, 0.2, 0.05, 0.25];
        let y = [1.0, -2.0, 0.3];
        let wy = [1.0, 2.0, 1.0];
        let got = sliced_wasserstein(&x, Some(&wx), &y, Some(&wy), 1, 3, key(0)).unwrap();
        let expected = w1_brute(&x, &wx, &y, &wy);
        // Both sum the same few products; only rounding separates them.
        assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
    }

    #[test]
    fn one_dimensional_shift_is_exact() {
        // In 1-D every direction is ±1, so SW1 = W1 = |δ| exactly for a shifted copy.
        let x: Vec<f64> = (0..101)
            .map(|i| ((i * 37) % 101) as f64 * 0.1 - 3.0)
            .collect();
        for delta in [0.0, 0.25, -1.5, 10.0] {
            let y: Vec<f64> = x.iter().map(|v| v + delta).collect();
            let w = sliced_wasserstein(&x, None, &y, None, 1, 7, key(1)).unwrap();
            // Each segment length carries an O(ε·|x|) rounding error from the shift.
            assert!((w - f64::abs(delta)).abs() < 1e-12, "{w} vs {delta}");
        }
    }

    #[test]
    fn point_masses() {
        let w = sliced_wasserstein(&[-1.0], None, &[2.5], None, 1, 4, key(2)).unwrap();
        assert_eq!(w, 3.5);
        // Different sizes: δ_0 vs the uniform measure on {0, 1, 2, 3}: W1 = (0+1+2+3)/4.
        let w =
            sliced_wasserstein(&[0.0], None, &[3.0, 1.0, 0.0, 2.0], None, 1, 4, key(2)).unwrap();
        assert_eq!(w, 1.5);
    }

    #[test]
    fn identical_samples_give_zero_even_with_ties_and_weights() {
        let x = [1.0, 2.0, 1.0, 2.0, 0.0, 5.0];
        let w = [0.2, 0.3, 0.5];
        let mut sw = SlicedWasserstein::new(2, 50, key(3)).unwrap();
        assert_eq!(sw.distance(&x, None, &x, None).unwrap(), 0.0);
        assert_eq!(sw.distance(&x, Some(&w), &x, Some(&w)).unwrap(), 0.0);
        // Unnormalised weights describe the same measure.
        let w2 = [2.0, 3.0, 5.0];
        assert!(sw.distance(&x, Some(&w), &x, Some(&w2)).unwrap() < 1e-14);
    }

    #[test]
    fn shift_along_all_directions_is_mean_abs_projection() {
        // x and x + δ: every projection shifts by δ·u, so W1 per direction is |δ·u| exactly.
        let d = 5;
        let x: Vec<f64> = (0..60 * d)
            .map(|i| ((i * 7919) % 113) as f64 / 17.0)
            .collect();
        let delta = [0.5, -1.0, 2.0, 0.0, 0.25];
        let y: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, v)| v + delta[i % d])
            .collect();
        let mut sw = SlicedWasserstein::new(d, 300, key(4)).unwrap();
        let got = sw.distance(&x, None, &y, None).unwrap();
        let expected: f64 = sw
            .directions()
            .chunks_exact(d)
            .map(|u| u.iter().zip(&delta).map(|(a, b)| a * b).sum::<f64>().abs())
            .sum::<f64>()
            / 300.0;
        // Rounding of the projections (|x| ≲ 7, d = 5 terms): far below 1e-10.
        assert!((got - expected).abs() < 1e-10, "{got} vs {expected}");
    }

    #[test]
    fn shift_matches_sphere_average_statistically() {
        // E|δ·u| for u uniform on the sphere in R^d is |δ| Γ(d/2) / (√π Γ((d+1)/2)); in d = 3
        // that is |δ|/2. With L directions the average has standard deviation
        // sd(|u_1|)|δ|/√L, sd(|u_1|) = √(1/3 − 1/4) ≈ 0.289 in d = 3; allow 5 of them.
        let d = 3;
        let l = 20_000;
        let delta = [1.0, 2.0, -2.0]; // |δ| = 3
        let x = [0.0, 0.0, 0.0];
        let mut sw = SlicedWasserstein::new(d, l, key(5)).unwrap();
        let got = sw.distance(&x, None, &delta, None).unwrap();
        let tol = 5.0 * (1.0f64 / 3.0 - 0.25).sqrt() * 3.0 / (l as f64).sqrt();
        assert!((got - 1.5).abs() < tol, "{got} vs 1.5 ± {tol}");
    }

    #[test]
    fn weighted_equals_replicated_uniform() {
        let d = 3;
        let x: Vec<f64> = (0..4 * d).map(|i| ((i * 31) % 11) as f64 - 5.0).collect();
        let counts = [1usize, 3, 0, 2];
        let wx: Vec<f64> = counts.iter().map(|&c| c as f64).collect();
        let mut rep = Vec::new();
        for (p, &c) in counts.iter().enumerate() {
            for _ in 0..c {
                rep.extend_from_slice(&x[p * d..(p + 1) * d]);
            }
        }
        let y: Vec<f64> = (0..7 * d).map(|i| ((i * 13) % 7) as f64 * 0.7).collect();
        let mut sw = SlicedWasserstein::new(d, 200, key(6)).unwrap();
        let a = sw.distance(&x, Some(&wx), &y, None).unwrap();
        let b = sw.distance(&rep, None, &y, None).unwrap();
        // Same CDFs up to rounding of the cumulative weights (k/6 vs sums of 1/6's).
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn invalid_inputs_give_typed_errors() {
        let mut sw = SlicedWasserstein::new(2, 5, key(7)).unwrap();
        let x = [0.0, 1.0, 2.0, 3.0];
        assert!(matches!(
            sw.distance(&x[..3], None, &x, None),
            Err(GmError::DimensionMismatch { .. })
        ));
        assert!(matches!(
            sw.distance(&[], None, &x, None),
            Err(GmError::InvalidParameter { .. })
        ));
        assert!(matches!(
            sw.distance(&x, Some(&[1.0]), &x, None),
            Err(GmError::DimensionMismatch { .. })
        ));
        assert!(matches!(
            sw.distance(&x, Some(&[1.0, -1.0]), &x, None),
            Err(GmError::InvalidWeights { .. })
        ));
        assert!(matches!(
            sw.distance(&x, None, &x, Some(&[0.0, 0.0])),
            Err(GmError::InvalidWeights { .. })
        ));
        assert!(matches!(
            sw.distance(&[0.0, f64::NAN], None, &x, None),
            Err(GmError::NonFinite { .. })
        ));
        assert!(matches!(
            mean_sq_error(&x, None, 2, &[0.0]),
            Err(GmError::DimensionMismatch { .. })
        ));
        assert!(matches!(
            weighted_mean(&x, None, 0),
            Err(GmError::InvalidParameter { .. })
        ));
        assert!(matches!(
            weights_from_log(&[f64::NEG_INFINITY]),
            Err(GmError::InvalidWeights { .. })
        ));
        assert!(matches!(
            weights_from_log(&[0.0, f64::NAN]),
            Err(GmError::InvalidWeights { .. })
        ));
    }

    #[test]
    fn mean_sq_error_weighted() {
        let x = [0.0, 10.0, 4.0, 2.0];
        // Weighted mean with (0.75, 0.25): (1, 8); truth (1, 5): error 9.
        let e = mean_sq_error(&x, Some(&[3.0, 1.0]), 2, &[1.0, 5.0]).unwrap();
        assert_eq!(e, 9.0);
    }

    fn sample(d: usize, max_n: usize) -> impl Strategy<Value = (Vec<f64>, Option<Vec<f64>>)> {
        (1..=max_n).prop_flat_map(move |n| {
            (
                prop::collection::vec(-10.0f64..10.0, n * d),
                prop::option::of(prop::collection::vec(0.01f64..5.0, n)),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn metric_axioms(
            (x, wx) in sample(3, 12),
            (y, wy) in sample(3, 9),
            (z, wz) in sample(3, 15),
            seed in any::<u64>(),
        ) {
            let mut sw = SlicedWasserstein::new(3, 40, StreamKey::new(seed, 0, Purpose::Other(9))).unwrap();
            let dxy = sw.distance(&x, wx.as_deref(), &y, wy.as_deref()).unwrap();
            let dyx = sw.distance(&y, wy.as_deref(), &x, wx.as_deref()).unwrap();
            let dyz = sw.distance(&y, wy.as_deref(), &z, wz.as_deref()).unwrap();
            let dxz = sw.distance(&x, wx.as_deref(), &z, wz.as_deref()).unwrap();
            prop_assert!(dxy >= 0.0 && dxy.is_finite());
            // The merge visits the same breakpoints in the same order either way round.
            prop_assert_eq!(dxy, dyx);
            // W1 per direction is a metric, hence so is the average over fixed directions;
            // slack for rounding of sums of O(10)-sized terms.
            prop_assert!(dxz <= dxy + dyz + 1e-9, "{} > {} + {}", dxz, dxy, dyz);
            prop_assert_eq!(sw.distance(&x, wx.as_deref(), &x, wx.as_deref()).unwrap(), 0.0);
        }

        #[test]
        fn w1_one_dimensional_matches_brute_force(
            (x, wx) in sample(1, 10),
            (y, wy) in sample(1, 10),
        ) {
            let wxv = wx.clone().unwrap_or_else(|| vec![1.0; x.len()]);
            let wyv = wy.clone().unwrap_or_else(|| vec![1.0; y.len()]);
            let got = sliced_wasserstein(&x, wx.as_deref(), &y, wy.as_deref(), 1, 2, key(10)).unwrap();
            let expected = w1_brute(&x, &wxv, &y, &wyv);
            prop_assert!((got - expected).abs() < 1e-10, "{} vs {}", got, expected);
        }
    }
}
