//! `proptest` strategies for the inputs resamplers and weight utilities must survive: log-weight
//! vectors (normalised or not, including the degenerate ones) and particle clouds.
//!
//! Sizes are given as anything that converts into a [`SizeRange`] (`5`, `1..80`, `1..=8`); a
//! lower bound of 0 is raised to 1 (the engine has no empty weight vectors or clouds).
//!
//! ```
//! use diffsmc::testing::strategies::{normalised_log_weights, weighted_cloud};
//! use diffsmc::log_sum_exp;
//! use proptest::prelude::*;
//!
//! proptest! {
//!     #![proptest_config(ProptestConfig::with_cases(64))]
//!     // In a test file, put `#[test]` on each function.
//!     fn weights_are_normalised(lw in normalised_log_weights(1..50)) {
//!         prop_assert!(log_sum_exp(&lw).abs() < 1e-12);
//!     }
//!     fn clouds_match_their_weights((x, lw) in weighted_cloud(1..20, 1..4)) {
//!         prop_assert_eq!(x.len(), lw.len());
//!     }
//! }
//! weights_are_normalised();
//! clouds_match_their_weights();
//! ```

use std::ops::RangeInclusive;

use proptest::collection::{SizeRange, vec};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::Union;

use crate::particles::{Particles, normalise_log_weights, weights_f64};

const NEG_INF: f64 = f64::NEG_INFINITY;

/// `(lo, hi_exclusive)` of a size range, with `lo ≥ 1`.
fn bounds(r: impl Into<SizeRange>) -> (usize, usize) {
    let r: SizeRange = r.into();
    let lo = r.start().max(1);
    let hi = r.end_excl().max(lo + 1);
    (lo, hi)
}

/// Unnormalised log-weight vectors with at least one finite entry, lengths in `len`.
///
/// A mixture of: generic values in `[−60, 10]` with some `−∞`; one-hot (one finite entry,
/// the rest `−∞`); all equal; huge spreads (`0` against `ln 1e-300` and anything down to
/// `−745`, below the smallest subnormal once exponentiated); large common offsets (up to
/// `±700`); and, when the range allows it, `N = 1`.
pub fn raw_log_weights(len: impl Into<SizeRange>) -> BoxedStrategy<Vec<f64>> {
    let (lo, hi) = bounds(len);
    let n = move || lo..hi;
    let generic = n()
        .prop_flat_map(|n| vec(prop_oneof![6 => -60.0..10.0f64, 1 => Just(NEG_INF)], n))
        .boxed();
    let one_hot = (n(), any::<Index>(), -50.0..50.0f64)
        .prop_map(|(n, i, c)| {
            let mut v = vec![NEG_INF; n];
            v[i.index(n)] = c;
            v
        })
        .boxed();
    let equal = (n(), -1e3..1e3f64).prop_map(|(n, c)| vec![c; n]).boxed();
    let spread = n()
        .prop_flat_map(|n| {
            vec(
                prop_oneof![Just(0.0), Just(1e-300f64.ln()), -745.0..0.0f64],
                n,
            )
        })
        .boxed();
    let offset = (n(), -700.0..700.0f64)
        .prop_flat_map(|(n, c)| {
            vec(-5.0..5.0f64, n).prop_map(move |v| v.into_iter().map(|x| x + c).collect())
        })
        .boxed();
    let mut parts = vec![
        (4, generic),
        (1, one_hot),
        (1, equal),
        (2, spread),
        (1, offset),
    ];
    if lo == 1 {
        parts.push((1, (-1e3..1e3f64).prop_map(|c| vec![c]).boxed()));
    }
    Union::new_weighted(parts)
        .prop_map(|mut v: Vec<f64>| {
            if v.iter().all(|&x| x == NEG_INF) {
                v[0] = 0.0;
            }
            v
        })
        .boxed()
}

/// Normalised log-weight vectors (`logsumexp = 0`): [`raw_log_weights`] after
/// [`normalise_log_weights`]. Degenerate cases included: one weight 1 and the rest `−∞`, all
/// equal (`−ln N`), huge spreads, `N = 1`.
pub fn normalised_log_weights(len: impl Into<SizeRange>) -> BoxedStrategy<Vec<f64>> {
    raw_log_weights(len)
        .prop_map(|mut v| {
            normalise_log_weights(&mut v, 0)
                .expect("raw_log_weights has a finite entry and no NaN or +inf");
            v
        })
        .boxed()
}

/// Normalised weights (`Σ w = 1`, as `f64` probabilities, some exactly 0): the exponentials of
/// [`normalised_log_weights`], the input of
/// [`IndexResampler::ancestors`](crate::resample::IndexResampler::ancestors).
pub fn normalised_weights(len: impl Into<SizeRange>) -> BoxedStrategy<Vec<f64>> {
    normalised_log_weights(len)
        .prop_map(|lw| weights_f64(&lw))
        .boxed()
}

/// Particle clouds of `n` particles in `R^d` at scales `10^-30 … 10^30`: see
/// [`particle_cloud_with_scales`].
pub fn particle_cloud(
    n: impl Into<SizeRange>,
    d: impl Into<SizeRange>,
) -> BoxedStrategy<Particles<f64>> {
    particle_cloud_with_scales(n, d, -30..=30)
}

/// Particle clouds of `n` particles in `R^d` whose spread is `10^e` with `e` drawn from
/// `log10_scales`, around a centre up to 10 spreads away. A mixture of:
///
/// - generic clouds (coordinates uniform in `centre ± scale`);
/// - clouds of a few distinct points, each repeated many times (`k ∈ 1..=3` distinct points,
///   so `k = 1` is the all-identical cloud whose covariance is exactly zero);
/// - anisotropic clouds, each coordinate with its own scale `10^e_k` (a condition number up to
///   `10^6` within the range);
/// - a cloud that is one outlier far away from a tight cluster.
///
/// Panics if `log10_scales` is empty.
pub fn particle_cloud_with_scales(
    n: impl Into<SizeRange>,
    d: impl Into<SizeRange>,
    log10_scales: RangeInclusive<i32>,
) -> BoxedStrategy<Particles<f64>> {
    let (nlo, nhi) = bounds(n);
    let (dlo, dhi) = bounds(d);
    let (elo, ehi) = (*log10_scales.start(), *log10_scales.end());
    assert!(elo <= ehi, "particle_cloud_with_scales: empty scale range");
    let shape = move || (nlo..nhi, dlo..dhi, elo..=ehi, -10.0..10.0f64);
    let generic = shape()
        .prop_flat_map(|(n, d, e, c)| {
            let s = 10f64.powi(e);
            vec(-1.0..1.0f64, n * d).prop_map(move |u| {
                let x = u.iter().map(|v| c * s + v * s).collect();
                Particles::from_vec(n, d, x).expect("n * d values")
            })
        })
        .boxed();
    let repeated = shape()
        .prop_flat_map(|(n, d, e, c)| {
            let s = 10f64.powi(e);
            let k = n.min(3);
            (1..=k, vec(-1.0..1.0f64, k * d), vec(any::<Index>(), n)).prop_map(
                move |(k, pts, pick)| {
                    let mut x = Vec::with_capacity(n * d);
                    for p in &pick {
                        let j = p.index(k);
                        x.extend(pts[j * d..(j + 1) * d].iter().map(|v| c * s + v * s));
                    }
                    Particles::from_vec(n, d, x).expect("n * d values")
                },
            )
        })
        .boxed();
    let anisotropic = shape()
        .prop_flat_map(move |(n, d, e, c)| {
            // Per-coordinate exponents within the range and within 6 decades of `e`.
            let lo = elo.max(e - 3);
            let hi = ehi.min(e + 3);
            (vec(lo..=hi, d), vec(-1.0..1.0f64, n * d)).prop_map(move |(es, u)| {
                let x = u
                    .iter()
                    .enumerate()
                    .map(|(j, v)| {
                        let s = 10f64.powi(es[j % d]);
                        c * s + v * s
                    })
                    .collect();
                Particles::from_vec(n, d, x).expect("n * d values")
            })
        })
        .boxed();
    let outlier = shape()
        .prop_flat_map(|(n, d, e, c)| {
            let s = 10f64.powi(e);
            (vec(-1.0..1.0f64, n * d), any::<Index>()).prop_map(move |(u, at)| {
                let mut x: Vec<f64> = u.iter().map(|v| c * s + v * s * 1e-3).collect();
                let i = at.index(n);
                for v in &mut x[i * d..(i + 1) * d] {
                    *v += 1e3 * s;
                }
                Particles::from_vec(n, d, x).expect("n * d values")
            })
        })
        .boxed();
    prop_oneof![3 => generic, 2 => repeated, 2 => anisotropic, 1 => outlier].boxed()
}

/// A particle cloud ([`particle_cloud`]) with normalised log-weights of the same length
/// ([`normalised_log_weights`]).
pub fn weighted_cloud(
    n: impl Into<SizeRange>,
    d: impl Into<SizeRange>,
) -> BoxedStrategy<(Particles<f64>, Vec<f64>)> {
    weighted_cloud_with_scales(n, d, -30..=30)
}

/// [`particle_cloud_with_scales`] with normalised log-weights of the same length.
pub fn weighted_cloud_with_scales(
    n: impl Into<SizeRange>,
    d: impl Into<SizeRange>,
    log10_scales: RangeInclusive<i32>,
) -> BoxedStrategy<(Particles<f64>, Vec<f64>)> {
    let (nlo, nhi) = bounds(n);
    let d: SizeRange = d.into();
    (nlo..nhi)
        .prop_flat_map(move |n| {
            (
                particle_cloud_with_scales(n, d.clone(), log10_scales.clone()),
                normalised_log_weights(n),
            )
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ess, log_sum_exp};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn raw_weights_have_a_finite_entry(v in raw_log_weights(1..40)) {
            prop_assert!((1..40).contains(&v.len()));
            prop_assert!(v.iter().any(|x| x.is_finite()));
            prop_assert!(v.iter().all(|x| !x.is_nan() && *x != f64::INFINITY));
        }

        #[test]
        fn normalised_weights_sum_to_one(lw in normalised_log_weights(3..=7)) {
            prop_assert!((3..=7).contains(&lw.len()));
            prop_assert!(log_sum_exp(&lw).abs() < 1e-12);
            let e = ess(&lw);
            prop_assert!((1.0..=lw.len() as f64 + 1e-9).contains(&e));
            let w = weights_f64(&lw);
            prop_assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }

        #[test]
        fn clouds_have_the_requested_shape(
            x in particle_cloud_with_scales(2..30, 1..5, -5..=5),
        ) {
            prop_assert!((2..30).contains(&x.len()) && (1..5).contains(&x.dim()));
            prop_assert!(x.as_slice().iter().all(|v| v.is_finite()));
            let max = x.as_slice().iter().fold(0.0f64, |m, v| m.max(v.abs()));
            prop_assert!(max <= 1e3 * 1e5 + 11.0 * 1e5);
        }

        #[test]
        fn weighted_clouds_agree_in_length((x, lw) in weighted_cloud(1..30, 1..4)) {
            prop_assert_eq!(x.len(), lw.len());
            prop_assert!(log_sum_exp(&lw).abs() < 1e-12);
        }
    }

    /// The degenerate cases are actually generated (not only possible): over a fixed number of
    /// cases from a deterministic runner, each shows up.
    #[test]
    fn degenerate_cases_occur() {
        use proptest::test_runner::{Config, TestRng, TestRunner};
        let mut runner = TestRunner::new_with_rng(
            Config::default(),
            TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
        );
        let s = normalised_log_weights(1..20);
        let (mut one_hot, mut equal, mut single, mut tiny) = (false, false, false, false);
        for _ in 0..2000 {
            let v = s.new_tree(&mut runner).unwrap().current();
            let finite = v.iter().filter(|x| x.is_finite()).count();
            one_hot |= finite == 1 && v.len() > 1;
            equal |= v.len() > 1 && v.iter().all(|&x| x == v[0]);
            single |= v.len() == 1;
            tiny |= v.iter().any(|&x| x.is_finite() && x < -600.0);
        }
        assert!(
            one_hot && equal && single && tiny,
            "{one_hot} {equal} {single} {tiny}"
        );
        let c = particle_cloud(5..10, 2);
        let mut identical = false;
        for _ in 0..500 {
            let x = c.new_tree(&mut runner).unwrap().current();
            identical |= x.iter().all(|p| p == x.particle(0));
        }
        assert!(identical);
    }
}
