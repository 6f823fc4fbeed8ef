//! The distributed algorithms against their oracles: the single-process filter (bit for bit)
//! and the Kalman filter (statistically), on in-process ranks (`ThreadComm`).

use diffsmc::prelude::*;
use diffsmc::resample::Killing;
use diffsmc_lgssm::{Lgssm, LgssmData};
use diffsmc_mpi::{
    DistConfig, DistError, DistResampler, IslandConfig, SingleRank, ThreadComm, run_distributed,
    run_filter, run_island_filter,
};

fn data(d: usize, steps: usize, seed: u64) -> LgssmData<f64> {
    let m = Lgssm::<f64>::paper(0.5, 1.0, d).unwrap();
    let (_, ys) = m.simulate(steps, seed);
    m.with_data(ys).unwrap()
}

fn single(
    data: &LgssmData<f64>,
    n: usize,
    spec: &ResamplerSpec,
    trigger: Trigger,
    seed: u64,
) -> SmcOutput<f64> {
    let r = spec.build::<f64>().unwrap();
    let c = SmcConfig::new(n)
        .unwrap()
        .with_trigger(trigger)
        .unwrap()
        .with_filter_moments(true);
    Smc::new(c).run(&Bootstrap(data), &*r, seed).unwrap()
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The central claim: for every rank count, every index resampler and both kinds of
/// trigger, the distributed run reproduces the single-process run bit for bit (log-likelihood,
/// increments, ESS, resampling decisions, filtering moments, final particles and weights).
/// N = 203 is not a multiple of any rank count, so the blocks are uneven; d = 2 exercises
/// the particle layout.
#[test]
fn bit_identical_to_the_single_process_filter_for_1_to_4_ranks() {
    let data = data(2, 25, 3);
    let n = 203;
    for spec in [
        "systematic",
        "stratified",
        "multinomial",
        "residual",
        "ssp",
        "killing",
    ] {
        let spec: ResamplerSpec = spec.parse().unwrap();
        for trigger in [Trigger::Always, Trigger::EssBelow(0.5)] {
            let want = single(&data, n, &spec, trigger, 11);
            let r = DistResampler::from_spec(&spec).unwrap();
            let config = DistConfig::new(n)
                .unwrap()
                .with_trigger(trigger)
                .unwrap()
                .with_filter_moments(true);
            for k in 1..=4 {
                let outs = ThreadComm::run(k, |c| {
                    run_filter(c, &Bootstrap(&data), &r, &config, 11).unwrap()
                });
                let what = format!("{spec}, {trigger:?}, {k} ranks");
                let mut xs = Vec::new();
                let mut lws = Vec::new();
                for o in &outs {
                    assert_eq!(
                        o.log_likelihood.to_bits(),
                        want.log_likelihood.to_bits(),
                        "{what}"
                    );
                    assert_eq!(
                        bits(&o.log_likelihood_increments),
                        bits(&want.log_likelihood_increments),
                        "{what}"
                    );
                    assert_eq!(bits(&o.ess), bits(&want.ess), "{what}");
                    assert_eq!(o.resampled, want.resampled, "{what}");
                    xs.extend_from_slice(o.particles.as_slice());
                    lws.extend_from_slice(&o.log_weights);
                }
                assert_eq!(bits(&xs), bits(want.particles.as_slice()), "{what}");
                assert_eq!(bits(&lws), bits(&want.log_weights), "{what}");
                assert_eq!(outs[0].filter_means.len(), 25);
                for t in 0..25 {
                    assert_eq!(
                        bits(&outs[0].filter_means[t]),
                        bits(&want.filter_means[t]),
                        "{what}"
                    );
                    assert_eq!(
                        bits(&outs[0].filter_covs[t]),
                        bits(&want.filter_covs[t]),
                        "{what}"
                    );
                }
                assert!(outs[1..].iter().all(|o| o.filter_means.is_empty()));
                if trigger == Trigger::Always && k > 1 {
                    assert!(
                        outs.iter()
                            .any(|o| o.values_received.iter().any(|&v| v > 0)),
                        "{what}: some particles must have crossed ranks"
                    );
                }
            }
        }
    }
}

/// More ranks than particles: some ranks hold none, the result is unchanged.
#[test]
fn ranks_without_particles_change_nothing() {
    let data = data(1, 10, 5);
    let want = single(&data, 3, &ResamplerSpec::Systematic, Trigger::Always, 2);
    let r = DistResampler::from_spec(&ResamplerSpec::Systematic).unwrap();
    let config = DistConfig::new(3).unwrap();
    let outs = ThreadComm::run(5, |c| {
        run_filter(c, &Bootstrap(&data), &r, &config, 2).unwrap()
    });
    assert!(
        outs.iter()
            .all(|o| o.log_likelihood.to_bits() == want.log_likelihood.to_bits())
    );
    assert_eq!(outs.iter().map(|o| o.particles.len()).sum::<usize>(), 3);
}

#[test]
fn non_index_resamplers_are_refused_naming_the_spec() {
    for spec in ["diffusion", "ot:eps=0.5", "soft:alpha=0.5", "stop-gradient"] {
        let s: ResamplerSpec = spec.parse().unwrap();
        let e = DistResampler::from_spec(&s).unwrap_err();
        assert!(matches!(e, DistError::UnsupportedResampler { .. }), "{e}");
        assert!(e.to_string().contains(&s.to_string()), "{e}");
    }
    assert!(DistResampler::new(Box::new(Killing)).name() == "killing");
}

/// A model whose weights all vanish at step 3 gives the same typed error on every rank (no
/// hang, no NaN).
#[test]
fn degenerate_weights_are_the_same_error_on_every_rank() {
    struct Dies;
    impl StateSpaceModel<f64> for Dies {
        fn state_dim(&self) -> usize {
            1
        }
        fn n_observations(&self) -> usize {
            6
        }
        fn sample_initial(&self, rng: &mut StreamRng, x: &mut [f64]) {
            x[0] = standard_normal(rng);
        }
        fn sample_transition(&self, _t: usize, xp: &[f64], rng: &mut StreamRng, x: &mut [f64]) {
            x[0] = xp[0] + standard_normal(rng);
        }
        fn observation_log_density(&self, t: usize, _x: &[f64]) -> f64 {
            if t == 3 { f64::NEG_INFINITY } else { 0.0 }
        }
    }
    let r = DistResampler::from_spec(&ResamplerSpec::Systematic).unwrap();
    let config = DistConfig::new(50).unwrap();
    let errs = ThreadComm::run(3, |c| {
        run_filter(c, &Bootstrap(Dies), &r, &config, 1).unwrap_err()
    });
    for e in errs {
        assert!(
            matches!(e, DistError::Smc(SmcError::DegenerateWeights { step: 3 })),
            "{e}"
        );
    }
    let ic = IslandConfig::new(2, 0.2).unwrap();
    let errs = ThreadComm::run(3, |c| {
        run_island_filter(c, &Bootstrap(Dies), &r, &config, &ic, 1).unwrap_err()
    });
    for e in errs {
        assert!(
            matches!(e, DistError::Smc(SmcError::DegenerateWeights { step: 3 })),
            "{e}"
        );
    }
}

/// One island is the single-process filter, bit for bit (also with an ESS trigger, whose
/// decisions use the driver's own ESS).
#[test]
fn one_island_is_the_single_process_filter() {
    let data = data(1, 40, 8);
    for trigger in [Trigger::Always, Trigger::EssBelow(0.5)] {
        let want = single(&data, 300, &ResamplerSpec::Stratified, trigger, 4);
        let r = DistResampler::from_spec(&ResamplerSpec::Stratified).unwrap();
        let config = DistConfig::new(300).unwrap().with_trigger(trigger).unwrap();
        let ic = IslandConfig::new(5, 0.2).unwrap();
        let o = run_island_filter(&SingleRank, &Bootstrap(&data), &r, &config, &ic, 4).unwrap();
        assert_eq!(o.log_likelihood.to_bits(), want.log_likelihood.to_bits());
        assert_eq!(o.resampled, want.resampled);
        assert_eq!(bits(&o.log_weights), bits(&want.log_weights));
        assert!(o.exchanged.iter().all(|e| !e));
    }
}

/// The island filter on 4 islands (with exchanges) against the Kalman log-likelihood.
///
/// `log Ẑ` of an unbiased likelihood estimator is asymptotically normal with mean `−σ²/2` and
/// variance `σ²` (σ² the relative variance of Ẑ). Over R = 24 seeds the mean error
/// `ē = mean(log Ẑ − log Z)` should then lie within `−s²/2 ± 4 s/√R` (s the sample sd): 4
/// standard errors make a false failure a < 1e-4 event, and the bias term allows for the
/// Jensen gap. We also require s < 1 (N = 800 particles on T = 50 steps of the paper's LGSSM
/// give s ≈ 0.2; an island filter that lost its weights would be far off).
#[test]
fn island_filter_log_likelihood_is_close_to_kalman() {
    let data = data(1, 50, 21);
    let exact = data.kalman().unwrap().log_likelihood;
    let r = DistResampler::from_spec(&ResamplerSpec::Systematic).unwrap();
    let config = DistConfig::new(800).unwrap();
    let ic = IslandConfig::new(5, 0.25).unwrap();
    let reps = 24;
    let errs: Vec<f64> = (0..reps)
        .map(|s| {
            let outs = ThreadComm::run(4, |c| {
                run_island_filter(c, &Bootstrap(&data), &r, &config, &ic, 100 + s).unwrap()
            });
            assert!(
                outs.iter()
                    .all(|o| o.log_likelihood == outs[0].log_likelihood)
            );
            assert!(outs[0].exchanged.iter().filter(|e| **e).count() == 9);
            outs[0].log_likelihood - exact
        })
        .collect();
    let n = reps as f64;
    let mean = errs.iter().sum::<f64>() / n;
    let sd = (errs.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    assert!(sd < 1.0, "sd {sd}");
    let centre = -sd * sd / 2.0;
    assert!(
        (mean - centre).abs() < 4.0 * sd / n.sqrt() + 1e-3,
        "mean error {mean}, sd {sd}"
    );
}

/// The island filter is reproducible for a fixed number of islands.
#[test]
fn island_filter_is_reproducible() {
    let data = data(2, 20, 2);
    let r = DistResampler::from_spec(&ResamplerSpec::Systematic).unwrap();
    let config = DistConfig::new(201)
        .unwrap()
        .with_trigger(Trigger::EssBelow(0.7))
        .unwrap();
    let ic = IslandConfig::new(3, 0.3).unwrap();
    let run = || {
        ThreadComm::run(3, |c| {
            run_island_filter(c, &Bootstrap(&data), &r, &config, &ic, 9).unwrap()
        })
    };
    let (a, b) = (run(), run());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.log_likelihood.to_bits(), y.log_likelihood.to_bits());
        assert_eq!(bits(&x.log_likelihood_path), bits(&y.log_likelihood_path));
        assert_eq!(bits(x.particles.as_slice()), bits(y.particles.as_slice()));
    }
    assert!(a[0].log_likelihood.is_finite());
    assert_eq!(a[0].island_log_masses.len(), 3);
}

/// Runs spread over 1..4 ranks give rank 0 the same results, in run order, as running them
/// in one loop.
#[test]
fn distributed_runs_gather_in_run_order_for_every_rank_count() {
    let data = data(1, 15, 1);
    let smc = Smc::new(SmcConfig::new(64).unwrap());
    let f = |i: usize| -> f64 {
        let o: SmcOutput<f64> = smc.run(&Bootstrap(&data), &Systematic, i as u64).unwrap();
        o.log_likelihood
    };
    let want: Vec<u64> = (0..9).map(|i| f(i).to_bits()).collect();
    for k in 1..=4 {
        let outs = ThreadComm::run(k, |c| run_distributed(c, 9, f).unwrap());
        let got: Vec<u64> = outs[0]
            .as_ref()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect();
        assert_eq!(got, want, "{k} ranks");
        assert!(outs[1..].iter().all(Option::is_none));
    }
}

/// A step schedule (`with_first_resample_step`) is honoured by the distributed filter exactly
/// as by `Smc::run`: same resampling decisions (none before step 7) and the same bits, for
/// 1–3 ranks.
#[test]
fn first_resample_step_is_honoured_by_the_distributed_filters() {
    let data = data(1, 20, 5);
    let n = 101;
    let spec: ResamplerSpec = "systematic".parse().unwrap();
    let r64 = spec.build::<f64>().unwrap();
    let c = SmcConfig::new(n).unwrap().with_first_resample_step(7);
    let want = Smc::new(c).run(&Bootstrap(&data), &*r64, 3).unwrap();
    let expected: Vec<bool> = (0..20).map(|t| t >= 7).collect();
    assert_eq!(want.resampled, expected);
    let r = DistResampler::from_spec(&spec).unwrap();
    let config = DistConfig::new(n).unwrap().with_first_resample_step(7);
    assert_eq!(config.first_resample_step(), 7);
    for k in 1..=3 {
        let outs = ThreadComm::run(k, |c| {
            run_filter(c, &Bootstrap(&data), &r, &config, 3).unwrap()
        });
        for o in &outs {
            assert_eq!(o.resampled, want.resampled, "{k} ranks");
            assert_eq!(
                o.log_likelihood.to_bits(),
                want.log_likelihood.to_bits(),
                "{k} ranks"
            );
        }
    }
}
