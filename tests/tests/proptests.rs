//! Property-based tests of the weight utilities, the resamplers and the random streams, over
//! random inputs including the degenerate cases: one weight 1 and the rest zero, all weights
//! equal, huge spreads (1e-300 vs 1), large offsets, and N = 1; and over particle clouds with
//! repeated particles and tiny or huge scales. The strategies are those of the testing kit
//! (`diffsmc::testing::strategies`), which users get with the `testing` feature.

use diffsmc::prelude::*;
use diffsmc::resample::IndexResampler;
use diffsmc::rng::Purpose;
use diffsmc::testing::strategies::{
    normalised_log_weights, normalised_weights, raw_log_weights, weighted_cloud,
    weighted_cloud_with_scales,
};
use diffsmc::{
    ess, log_sum_exp, normalise_log_weights, weighted_mean, weighted_mean_cov, weights_f64,
};
use num_dual::Dual64;
use proptest::prelude::*;
use proptest::sample::Index;
use rand::RngExt;

const NEG_INF: f64 = f64::NEG_INFINITY;

/// A reference log-sum-exp written independently of the engine's (max-shifted, in f64).
fn lse_ref(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(NEG_INF, f64::max);
    if m == NEG_INF {
        return NEG_INF;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// Unnormalised log-weight vectors with at least one finite entry (the kit's strategy: one-hot,
/// all equal, huge spreads, large offsets, N = 1 included).
fn log_weights() -> impl Strategy<Value = Vec<f64>> {
    raw_log_weights(1..80)
}

/// The resamplers with uniform output weights, each as a `Resampler<f64>`.
fn resamplers() -> Vec<Box<dyn Resampler<f64>>> {
    vec![
        Box::new(Multinomial),
        Box::new(Systematic),
        Box::new(Stratified),
        Box::new(Residual),
        Box::new(Ssp),
        Box::new(Killing),
        Box::new(StopGradient),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// After normalisation the log-sum-exp is 0, −inf entries stay −inf, nothing is NaN, and the
    /// returned value is the log-sum-exp of the input.
    #[test]
    fn normalise_gives_logsumexp_zero(lw in log_weights()) {
        let mut v = lw.clone();
        let lse = normalise_log_weights(&mut v, 4).unwrap();
        let expected = lse_ref(&lw);
        prop_assert!((lse - expected).abs() <= 1e-12 * expected.abs().max(1.0));
        prop_assert!(lse_ref(&v).abs() < 1e-12, "logsumexp after: {}", lse_ref(&v));
        prop_assert!(log_sum_exp(&v).abs() < 1e-12);
        for (a, b) in lw.iter().zip(&v) {
            prop_assert!(!b.is_nan());
            prop_assert_eq!(*a == NEG_INF, *b == NEG_INF);
            prop_assert!(*b <= 1e-12);
        }
        let w = weights_f64(&v);
        prop_assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    /// ESS of normalised weights lies in [1, N]; it is N for equal weights and 1 for one-hot.
    #[test]
    fn ess_between_one_and_n(lw in log_weights()) {
        let n = lw.len() as f64;
        let mut v = lw.clone();
        normalise_log_weights(&mut v, 0).unwrap();
        let e = ess(&v);
        prop_assert!((1.0..=n).contains(&e), "ess {} outside [1, {}]", e, n);
        let finite = lw.iter().filter(|x| x.is_finite()).count();
        if finite == 1 {
            prop_assert_eq!(e, 1.0);
        }
        if lw.iter().all(|&x| x == lw[0]) {
            prop_assert!((e - n).abs() <= 1e-12 * n);
        }
    }

    /// All weights −inf, or any NaN / +inf, is a typed error naming the step.
    #[test]
    fn degenerate_weights_are_typed_errors(
        n in 1usize..40,
        step in 0usize..1000,
        bad in prop_oneof![Just(f64::NAN), Just(f64::INFINITY)],
        at in any::<Index>(),
    ) {
        let mut v = vec![NEG_INF; n];
        prop_assert_eq!(
            normalise_log_weights(&mut v, step),
            Err(SmcError::DegenerateWeights { step })
        );
        let mut v = vec![0.0; n];
        v[at.index(n)] = bad;
        prop_assert_eq!(
            normalise_log_weights(&mut v, step),
            Err(SmcError::DegenerateWeights { step })
        );
    }

    /// Every resampler returns N finite particles copied from in-range, non-zero-weight
    /// ancestors, with normalised (−ln N) output log-weights, reproducibly for a key.
    #[test]
    fn resamplers_return_valid_particles(
        v in normalised_log_weights(1..80),
        seed in any::<u64>(),
        step in 0usize..1_000_000,
    ) {
        let n = v.len();
        let x = Particles::from_vec(n, 1, (0..n).map(|i| i as f64).collect()).unwrap();
        let key = StreamKey::new(seed, step, Purpose::Resample);
        for r in resamplers() {
            let mut out = Particles::zeros(n, 1);
            let mut out_lw = vec![f64::NAN; n];
            r.resample(&x, &v, key, &mut out, &mut out_lw).unwrap();
            prop_assert_eq!(out.len(), n);
            for p in out.iter() {
                prop_assert!(p[0].is_finite());
                let a = p[0] as usize;
                prop_assert!(a < n && a as f64 == p[0]);
                prop_assert!(v[a] > NEG_INF, "{} copied zero-weight particle {}", r.name(), a);
            }
            prop_assert!(out_lw.iter().all(|w| w.is_finite()));
            prop_assert!(lse_ref(&out_lw).abs() < 1e-12, "{}: {:?}", r.name(), out_lw);
            // Same key, same result.
            let mut out2 = Particles::zeros(n, 1);
            let mut out_lw2 = vec![0.0; n];
            r.resample(&x, &v, key, &mut out2, &mut out_lw2).unwrap();
            prop_assert_eq!(&out, &out2);
        }
    }

    /// SSP and systematic counts are ⌊N w_i⌋ or ⌈N w_i⌉ for any weights.
    #[test]
    fn ssp_and_systematic_counts_floor_or_ceil(w in normalised_weights(1..80), seed in any::<u64>()) {
        let n = w.len();
        let mut anc = vec![0; n];
        for r in [&Ssp as &dyn IndexResampler, &Systematic] {
            r.ancestors(&w, StreamKey::new(seed, 1, Purpose::Resample), &mut anc);
            let mut c = vec![0usize; n];
            for &a in &anc {
                c[a] += 1;
            }
            for i in 0..n {
                let nw = n as f64 * w[i];
                let lo = (nw - 1e-9).floor() as usize;
                let hi = (nw + 1e-9).ceil() as usize;
                prop_assert!(
                    (lo..=hi).contains(&c[i]),
                    "{}: index {}: count {} vs N w = {}", r.index_name(), i, c[i], nw
                );
            }
        }
    }

    /// `log_sum_exp` matches the naive `ln Σ exp` where that is safe (no overflow/underflow),
    /// and its derivative on duals is the softmax-weighted sum of the input derivatives.
    #[test]
    fn log_sum_exp_matches_naive(
        v in prop::collection::vec((-30.0..30.0f64, -5.0..5.0f64), 1..60),
    ) {
        let re: Vec<f64> = v.iter().map(|p| p.0).collect();
        let naive = re.iter().map(|x| x.exp()).sum::<f64>().ln();
        let got = log_sum_exp(&re);
        prop_assert!((got - naive).abs() <= 1e-12 * naive.abs().max(1.0), "{} vs {}", got, naive);
        let duals: Vec<Dual64> = v.iter().map(|&(a, b)| Dual64::new(a, b)).collect();
        let d = log_sum_exp(&duals);
        prop_assert_eq!(d.re, got);
        let s: f64 = re.iter().map(|x| x.exp()).sum();
        let deriv: f64 = v.iter().map(|&(a, b)| a.exp() / s * b).sum();
        prop_assert!((d.eps - deriv).abs() <= 1e-12 * deriv.abs().max(1.0));
    }

    /// The same key gives the same stream; changing any part of the key changes it.
    #[test]
    fn stream_keys_are_reproducible_and_distinct(
        seed in any::<u64>(),
        step in 0usize..1_000_000,
        index in 0usize..1_000_000,
        tag in any::<u32>(),
    ) {
        let draws = |k: StreamKey, i: usize| {
            let mut r = k.rng(i);
            (0..8).map(|_| r.random::<u64>()).collect::<Vec<_>>()
        };
        let key = StreamKey::new(seed, step, Purpose::Move);
        prop_assert_eq!(key, StreamKey::new(seed, step, Purpose::Move));
        let a = draws(key, index);
        prop_assert_eq!(&a, &draws(key, index));
        prop_assert_eq!(draws(key.sub(tag as u64), index), draws(key.sub(tag as u64), index));
        // Distinct keys: a collision of the first 8 u64 draws would be a 2^-512 event unless the
        // hashing were broken.
        let others = [
            draws(key, index + 1),
            draws(StreamKey::new(seed.wrapping_add(1), step, Purpose::Move), index),
            draws(StreamKey::new(seed, step + 1, Purpose::Move), index),
            draws(StreamKey::new(seed, step, Purpose::Resample), index),
            draws(StreamKey::new(seed, step, Purpose::Other(tag)), index),
            draws(key.sub(tag as u64), index),
        ];
        for o in &others {
            prop_assert_ne!(&a, o);
        }
        prop_assert_ne!(draws(key.sub(tag as u64), index), draws(key.sub(tag as u64 + 1), index));
    }
}

/// Runs a resampler on `(x, lw)` with a fixed key.
fn resample_cloud(
    r: &dyn Resampler<f64>,
    x: &Particles<f64>,
    lw: &[f64],
    seed: u64,
) -> (Particles<f64>, Vec<f64>) {
    let mut out = Particles::zeros(x.len(), x.dim());
    let mut out_lw = vec![f64::NAN; x.len()];
    r.resample(
        x,
        lw,
        StreamKey::new(seed, 3, Purpose::Resample),
        &mut out,
        &mut out_lw,
    )
    .unwrap();
    (out, out_lw)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// On any weighted cloud (repeated particles, one-hot weights, scales 10^±30), index
    /// resamplers output copies of input particles of positive weight, bit for bit.
    #[test]
    fn index_resamplers_copy_cloud_members(
        (x, lw) in weighted_cloud(1..40, 1..5),
        seed in any::<u64>(),
    ) {
        for r in resamplers() {
            let (out, out_lw) = resample_cloud(r.as_ref(), &x, &lw, seed);
            for p in out.iter() {
                let found = x
                    .iter()
                    .zip(&lw)
                    .any(|(q, w)| *w > NEG_INF && q.iter().zip(p).all(|(a, b)| a.to_bits() == b.to_bits()));
                prop_assert!(found, "{}: {:?} is not a positive-weight input particle", r.name(), p);
            }
            prop_assert!(lse_ref(&out_lw).abs() < 1e-12);
        }
    }

    /// Weighted means lie within the range of the positive-weight particles (up to rounding),
    /// weighted covariances are symmetric with non-negative diagonals, at any scale.
    #[test]
    fn weighted_moments_of_clouds((x, lw) in weighted_cloud(1..40, 1..5)) {
        let d = x.dim();
        let m = weighted_mean(&x, &lw);
        let (m2, c) = weighted_mean_cov(&x, &lw);
        prop_assert_eq!(&m, &m2);
        for k in 0..d {
            let vals: Vec<f64> = x.iter().zip(&lw).filter(|(_, w)| **w > NEG_INF).map(|(p, _)| p[k]).collect();
            let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = vals.iter().copied().fold(NEG_INF, f64::max);
            let slack = 1e-12 * lo.abs().max(hi.abs());
            prop_assert!(m[k] >= lo - slack && m[k] <= hi + slack, "mean {} outside [{}, {}]", m[k], lo, hi);
            prop_assert!(c[k * d + k] >= 0.0);
            for j in 0..d {
                prop_assert_eq!(c[k * d + j], c[j * d + k]);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Diffusion resampling on any weighted cloud gives finite particles with uniform weights,
    /// within 50 reference standard deviations of the weighted mean (Euler–Maruyama with K = 2
    /// SDE steps overshoots: 10.2 was seen; a wrong scale would be off by orders of
    /// magnitude), the reference covariance
    /// being at least the jitter floor the resampler documents (`τ ≥ 2⁻⁵² |μ|²/d` and
    /// `≥ f64::MIN_POSITIVE`): so the output is the mean up to rounding when the weighted
    /// covariance is zero (one-hot weights, repeated particles). Scales 10^±30, both dynamics.
    #[test]
    fn diffusion_output_on_clouds_is_finite_and_near_the_cloud(
        (x, lw) in weighted_cloud_with_scales(1..40, 1..4, -30..=30),
        seed in any::<u64>(),
        sde in any::<bool>(),
    ) {
        let spec = if sde { "diffusion:K=2,sde" } else { "diffusion:K=2" };
        let r = spec.parse::<ResamplerSpec>().unwrap().build::<f64>().unwrap();
        let (out, out_lw) = resample_cloud(r.as_ref(), &x, &lw, seed);
        let d = x.dim();
        let (m, c) = weighted_mean_cov(&x, &lw);
        let mu2: f64 = m.iter().map(|v| v * v).sum();
        let tr: f64 = (0..d)
            .map(|k| c[k * d + k])
            .sum::<f64>()
            .max(f64::EPSILON * mu2)
            .max(d as f64 * f64::MIN_POSITIVE);
        let n = x.len() as f64;
        for w in &out_lw {
            prop_assert!((w + n.ln()).abs() < 1e-12);
        }
        for p in out.iter() {
            for k in 0..d {
                prop_assert!(p[k].is_finite(), "{spec}: non-finite output {:?}", p);
                let bound = 50.0 * tr.sqrt() + 1e-9 * m[k].abs();
                prop_assert!(
                    (p[k] - m[k]).abs() <= bound,
                    "{spec}: coordinate {k} = {} is {} from the mean {} (bound {bound})",
                    p[k], (p[k] - m[k]).abs(), m[k]
                );
            }
        }
    }
}
