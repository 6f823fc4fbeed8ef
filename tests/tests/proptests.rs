//! Property-based tests of the weight utilities, the resamplers and the random streams, over
//! random inputs including the degenerate cases: one weight 1 and the rest zero, all weights
//! equal, huge spreads (1e-300 vs 1), large offsets, and N = 1.

use diffsmc::prelude::*;
use diffsmc::resample::IndexResampler;
use diffsmc::rng::Purpose;
use diffsmc::{ess, log_sum_exp, normalise_log_weights, weights_f64};
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

/// Unnormalised log-weight vectors with at least one finite entry.
fn log_weights() -> impl Strategy<Value = Vec<f64>> {
    let generic = (1usize..80).prop_flat_map(|n| {
        prop::collection::vec(prop_oneof![6 => -60.0..10.0f64, 1 => Just(NEG_INF)], n)
    });
    let one_hot = (1usize..80, any::<Index>(), -50.0..50.0f64).prop_map(|(n, i, c)| {
        let mut v = vec![NEG_INF; n];
        v[i.index(n)] = c;
        v
    });
    let equal = (1usize..80, -1e3..1e3f64).prop_map(|(n, c)| vec![c; n]);
    // Weights 1e-300 against 1, and anything down to e^-745 (below the smallest subnormal
    // once exponentiated against the largest).
    let spread = (1usize..80).prop_flat_map(|n| {
        prop::collection::vec(
            prop_oneof![Just(0.0), Just(1e-300f64.ln()), -745.0..0.0f64],
            n,
        )
    });
    let single = (-1e3..1e3f64).prop_map(|c| vec![c]);
    let offset = (1usize..80, -700.0..700.0f64).prop_flat_map(|(n, c)| {
        prop::collection::vec(-5.0..5.0f64, n)
            .prop_map(move |v| v.into_iter().map(|x| x + c).collect::<Vec<_>>())
    });
    prop_oneof![
        4 => generic,
        1 => one_hot,
        1 => equal,
        2 => spread,
        1 => single,
        1 => offset,
    ]
    .prop_map(|mut v| {
        if v.iter().all(|&x| x == NEG_INF) {
            v[0] = 0.0;
        }
        v
    })
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
        lw in log_weights(),
        seed in any::<u64>(),
        step in 0usize..1_000_000,
    ) {
        let n = lw.len();
        let mut v = lw.clone();
        normalise_log_weights(&mut v, 0).unwrap();
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
    fn ssp_and_systematic_counts_floor_or_ceil(lw in log_weights(), seed in any::<u64>()) {
        let n = lw.len();
        let w = weights_f64(&lw);
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
