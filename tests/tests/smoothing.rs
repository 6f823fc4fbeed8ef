//! Particle smoothers against the exact RTS smoother and the exact Kalman score on the paper's
//! linear Gaussian model (θ = (0.5, 1.0), d = 1), the rejection backward sampler against the
//! exact backward probabilities, the run history, determinism across thread counts, and typed
//! errors.
//!
//! Tolerances. The Monte Carlo error of a smoothed mean is measured in units of
//! `sqrt(P_{t|T} / N)`, the standard error of an i.i.d. sample of size `N` from the exact
//! smoothing marginal (`z_rms` below: the root mean square over steps). A particle smoother's
//! error is a small multiple of it (its asymptotic variance is `σ²_t P_{t|T} / N` with `σ²_t`
//! of order one to a few for this well-mixing model). Measured over seeds 0..4 at N = 300,
//! T = 40: FFBS means 1.6–1.8, FFBS variances 1.0–1.8, backward simulation (M = N) 1.6–2.2,
//! fixed-lag (L = 2) 2.1–2.8, while the filter (what a smoother that did nothing would return)
//! is at 4.7–5.9 and grows as √N. Bounds are set at ~1.7× the largest measured value.

use diffsmc::grad::{GradOptions, KalmanNll, gradient};
use diffsmc::prelude::*;
use diffsmc::resample::IndexResampler;
use diffsmc::rng::Purpose;
use diffsmc::smc::Ancestry;
use diffsmc::smooth::{
    BackwardConfig, BackwardMethod, ParisConfig, backward_simulation, ffbs, fisher_score,
    fixed_lag, paris,
};
use diffsmc_lgssm::{Lgssm, LgssmData, PaperParams};
use num_dual::Dual64;
use statrs::distribution::{ChiSquared, ContinuousCDF};

/// The paper's model at θ = (0.5, 1.0), `steps` observations simulated with seed 11.
fn data(steps: usize) -> LgssmData<f64> {
    let m = Lgssm::paper(0.5, 1.0, 1).unwrap();
    let (_, ys) = m.simulate(steps, 11);
    m.with_data(ys).unwrap()
}

fn run<R: Resampler<f64> + ?Sized>(
    d: &LgssmData<f64>,
    n: usize,
    r: &R,
    seed: u64,
) -> SmcOutput<f64> {
    let c = SmcConfig::new(n).unwrap().with_history(true);
    Smc::new(c).run(&Bootstrap(d), r, seed).unwrap()
}

/// RMS over steps of `(est_t − exact_t) / sqrt(scale_t / n)`.
fn z_rms(est: &[Vec<f64>], exact: &[Vec<f64>], scale: &[Vec<f64>], n: usize) -> f64 {
    let s: f64 = est
        .iter()
        .zip(exact)
        .zip(scale)
        .map(|((e, x), v)| {
            let z = (e[0] - x[0]) / (v[0] / n as f64).sqrt();
            z * z
        })
        .sum();
    (s / est.len() as f64).sqrt()
}

/// Per step, per dimension.
type Series = Vec<Vec<f64>>;

/// RTS means, variances, and the scale `2 P²` of a sample variance's variance.
fn rts(d: &LgssmData<f64>) -> (Series, Series, Series) {
    let (_, s) = d.smooth().unwrap();
    let vv = s.covs.iter().map(|c| vec![2.0 * c[0] * c[0]]).collect();
    (s.means, s.covs, vv)
}

#[test]
fn ffbs_matches_rts() {
    let d = data(40);
    let (m, v, vv) = rts(&d);
    let n = 300;
    let r = run(&d, n, &Systematic, 1);
    let f = ffbs(&d, &r).unwrap();
    let zm = z_rms(&f.moments.means, &m, &v, n);
    let zv = z_rms(&f.moments.variances, &v, &vv, n);
    // The filter, for contrast: the test can tell smoothing from filtering.
    let h = r.history.as_ref().unwrap();
    let filt: Vec<Vec<f64>> = (0..40)
        .map(|t| vec![diffsmc::weighted_mean(&h.particles[t], &h.log_weights[t])[0]])
        .collect();
    let zf = z_rms(&filt, &m, &v, n);
    println!("FFBS z: means {zm:.3}, variances {zv:.3}; filter {zf:.3}");
    assert!(zm < 3.0, "FFBS means z_rms {zm}");
    assert!(zv < 3.0, "FFBS variances z_rms {zv}");
    assert!(zf > 3.5, "the filter should differ from the smoother: {zf}");
    for lw in &f.log_weights {
        assert!((log_sum_exp(lw)).abs() < 1e-12);
    }
}

/// FFBS needs only the filtering particles and weights: with diffusion resampling too.
/// Measured z (N = 256, T = 30, seeds 0..4, `measure_spread`): means 1.5–2.7, variances
/// 1.5–2.1; bound 4.0.
#[test]
fn ffbs_with_diffusion_resampling_matches_rts() {
    let d = data(30);
    let (m, v, vv) = rts(&d);
    let n = 256;
    let spec: ResamplerSpec = "diffusion:T=1,K=4".parse().unwrap();
    let r = run(&d, n, &*spec.build::<f64>().unwrap(), 2);
    assert!(r.history.as_ref().unwrap().ancestry[1] == Ancestry::Unknown);
    let f = ffbs(&d, &r).unwrap();
    let zm = z_rms(&f.moments.means, &m, &v, n);
    let zv = z_rms(&f.moments.variances, &v, &vv, n);
    println!("FFBS (diffusion) z: means {zm:.3}, variances {zv:.3}");
    assert!(zm < 4.0, "means z_rms {zm}");
    assert!(zv < 4.0, "variances z_rms {zv}");
}

/// On dual numbers under diffusion resampling, the derivative of the smoothed means in θ1
/// equals the central finite difference of the same seeded estimator (h = 1e-5: truncation
/// O(h²) ≈ 1e-10, round-off ≈ 1e-16/h ≈ 1e-11, so 1e-6 relative is generous).
#[test]
fn ffbs_is_differentiable_under_diffusion_resampling() {
    let steps = 12;
    let (_, ys) = Lgssm::paper(0.5, 1.0, 1).unwrap().simulate(steps, 11);
    let spec: ResamplerSpec = "diffusion:T=1,K=4".parse().unwrap();
    let n = 64;
    let means_at = |th: f64| -> Vec<f64> {
        let d = Lgssm::paper(th, 1.0, 1)
            .unwrap()
            .with_data(ys.clone())
            .unwrap();
        let r = run(&d, n, &*spec.build::<f64>().unwrap(), 5);
        ffbs(&d, &r)
            .unwrap()
            .moments
            .means
            .iter()
            .map(|m| m[0])
            .collect()
    };
    let dd = Lgssm::paper(Dual64::new(0.5, 1.0), Dual64::from(1.0), 1)
        .unwrap()
        .with_data(ys.clone())
        .unwrap();
    let c = SmcConfig::new(n).unwrap().with_history(true);
    let rd: SmcOutput<Dual64> = Smc::new(c)
        .run(&Bootstrap(&dd), &*spec.build::<Dual64>().unwrap(), 5)
        .unwrap();
    let fd = ffbs(&dd, &rd).unwrap();
    let h = 1e-5;
    let (up, down) = (means_at(0.5 + h), means_at(0.5 - h));
    let base = means_at(0.5);
    for t in 0..steps {
        let g = fd.moments.means[t][0];
        assert!((g.re - base[t]).abs() < 1e-9, "value part at {t}");
        let num = (up[t] - down[t]) / (2.0 * h);
        assert!(
            (g.eps - num).abs() < 1e-6 * num.abs().max(1.0),
            "step {t}: dual {} vs finite difference {num}",
            g.eps
        );
    }
    // Derivatives are not trivially zero.
    assert!(fd.moments.means.iter().any(|m| m[0].eps.abs() > 1e-2));
}

#[test]
fn backward_simulation_matches_rts_exact_and_rejection() {
    let d = data(40);
    let (m, v, _) = rts(&d);
    let n = 300;
    let r = run(&d, n, &Systematic, 3);
    let exact = backward_simulation(&d, &r, &BackwardConfig::new(n).unwrap().with_seed(4)).unwrap();
    let rej_cfg = BackwardConfig::new(n)
        .unwrap()
        .with_seed(4)
        .with_method(BackwardMethod::rejection(32).unwrap())
        .unwrap();
    let rej = backward_simulation(&d, &r, &rej_cfg).unwrap();
    let (ze, zr) = (
        z_rms(&exact.moments.means, &m, &v, n),
        z_rms(&rej.moments.means, &m, &v, n),
    );
    println!(
        "backward z: exact {ze:.3}, rejection {zr:.3} ({} fallbacks, {} proposals, {} draws)",
        rej.fallbacks, rej.proposals, rej.draws
    );
    assert!(ze < 3.7 && zr < 3.7, "{ze} {zr}");
    assert_eq!(exact.fallbacks, 0);
    assert_eq!(rej.draws, n * 39);
    // Fallbacks are rare with 32 tries here (measured ~1.5%) and proposals ~2.7 per draw.
    assert!(rej.fallbacks < rej.draws / 10);
    assert!(rej.proposals >= rej.draws - rej.fallbacks);
    assert_eq!(exact.indices.len(), 40);
    assert!(
        exact
            .indices
            .iter()
            .all(|s| s.len() == n && s.iter().all(|&i| i < n))
    );
}

/// With T = 2 the marginal law of the backward index at t = 0 is exactly the FFBS smoothing
/// weight `W_{0|1}`: a chi-square goodness-of-fit test of M = 20 000 draws against it (bins
/// with expected count ≥ 5, the rest pooled), at level 1e-3, for the exact sampler and the
/// rejection sampler with many tries and with 2 tries (mostly fallbacks: the mixture must be
/// exact too).
#[test]
fn rejection_sampler_draws_the_exact_backward_distribution() {
    let d = data(2);
    let n = 40;
    let r = run(&d, n, &Systematic, 8);
    let w: Vec<f64> = ffbs(&d, &r).unwrap().log_weights[0]
        .iter()
        .map(|l| l.exp())
        .collect();
    let m = 20_000;
    for method in [
        BackwardMethod::Exact,
        BackwardMethod::rejection(1000).unwrap(),
        BackwardMethod::rejection(2).unwrap(),
    ] {
        let c = BackwardConfig::new(m)
            .unwrap()
            .with_seed(9)
            .with_method(method)
            .unwrap();
        let b = backward_simulation(&d, &r, &c).unwrap();
        let mut counts = vec![0.0; n];
        for &i in &b.indices[0] {
            counts[i] += 1.0;
        }
        let (mut chi2, mut bins) = (0.0, 0);
        let (mut pool_o, mut pool_e) = (0.0, 0.0);
        for (o, wi) in counts.iter().zip(&w) {
            let e = wi * m as f64;
            if e >= 5.0 {
                chi2 += (o - e) * (o - e) / e;
                bins += 1;
            } else {
                pool_o += o;
                pool_e += e;
            }
        }
        if pool_e > 0.0 {
            chi2 += (pool_o - pool_e) * (pool_o - pool_e) / pool_e.max(1e-300);
            bins += 1;
        }
        let crit = ChiSquared::new((bins - 1) as f64)
            .unwrap()
            .inverse_cdf(0.999);
        println!(
            "{method:?}: chi2 {chi2:.1} on {} df (crit {crit:.1}), fallbacks {}",
            bins - 1,
            b.fallbacks
        );
        assert!(chi2 < crit, "{method:?}: chi2 {chi2} ≥ {crit}");
        if method == BackwardMethod::rejection(2).unwrap() {
            assert!(b.fallbacks > 0);
        }
    }
}

/// The exact fixed-lag target `E[x_t | y_0..y_{min(t+L, T-1)}]`: RTS on the truncated data.
fn exact_fixed_lag(d: &LgssmData<f64>, lag: usize) -> (Series, Series) {
    let steps = d.len();
    let model = d.model().clone();
    (0..steps)
        .map(|t| {
            let s = (t + lag).min(steps - 1);
            let dt = model.clone().with_data(d.ys()[..=s].to_vec()).unwrap();
            let (_, r) = dt.smooth().unwrap();
            (r.means[t].clone(), r.covs[t].clone())
        })
        .unzip()
}

/// Fixed-lag smoothing against its exact target (RTS on the data up to `t + L`), at N = 2000
/// where the filter is far from that target (z ≈ 12 measured). The genealogy's degeneracy
/// inflates the variance: measured z (seeds 0..4, `measure_spread`) 2.8–4.0 at L = 3, bound
/// 6.0; at L = 10 against RTS 3.9–5.9, bound 8.0 (still well below the filter's 12).
#[test]
fn fixed_lag_matches_its_exact_target() {
    let d = data(40);
    let n = 2000;
    let r = run(&d, n, &Systematic, 6);
    let lag = 3;
    let (m, v) = exact_fixed_lag(&d, lag);
    let fl = fixed_lag(&r, lag).unwrap();
    let f0 = fixed_lag(&r, 0).unwrap();
    let (z3, z0) = (z_rms(&fl.means, &m, &v, n), z_rms(&f0.means, &m, &v, n));
    println!("fixed-lag z: L = 3 {z3:.3}, L = 0 (filter) {z0:.3}");
    assert!(z3 < 6.0, "{z3}");
    assert!(z0 > 6.0, "{z0}");
    // Lag 0 is the filter exactly.
    let h = r.history.as_ref().unwrap();
    for t in 0..40 {
        let fm = diffsmc::weighted_mean(&h.particles[t], &h.log_weights[t])[0];
        assert!((f0.means[t][0] - fm).abs() < 1e-12);
    }
    // The last step has nothing to look ahead to: every lag gives the filter there.
    assert_eq!(fl.means[39], f0.means[39]);
    // With a long lag, fixed-lag is close to FFBS on the same particles (within the
    // smoothers' own Monte Carlo error, bounds as above).
    let long = fixed_lag(&r, 10).unwrap();
    let f = ffbs(&d, &run(&d, 300, &Systematic, 6)).unwrap();
    let (rm, rv, _) = rts(&d);
    let zl = z_rms(&long.means, &rm, &rv, n);
    let zf = z_rms(&f.moments.means, &rm, &rv, 300);
    println!("against RTS: fixed-lag L = 10 z {zl:.3} (N = {n}), FFBS z {zf:.3} (N = 300)");
    assert!(zl < 8.0 && zf < 3.0, "{zl} {zf}");
}

#[test]
#[ignore = "measurement sweep for the tolerances (run with --ignored --nocapture)"]
fn measure_spread() {
    let d = data(40);
    let (m, v, vv) = rts(&d);
    let d30 = data(30);
    let (m30, v30, vv30) = rts(&d30);
    let spec: ResamplerSpec = "diffusion:T=1,K=4".parse().unwrap();
    let diff = spec.build::<f64>().unwrap();
    let (fm, fv) = exact_fixed_lag(&d, 3);
    for seed in 0..5 {
        let r = run(&d30, 256, &*diff, seed);
        let f = ffbs(&d30, &r).unwrap();
        let r2 = run(&d, 2000, &Systematic, seed);
        let fl = fixed_lag(&r2, 3).unwrap();
        let l10 = fixed_lag(&r2, 10).unwrap();
        println!(
            "seed {seed}: diffusion FFBS z means {:.3} variances {:.3}; fixed-lag L=3 {:.3}; L=10 vs RTS {:.3}",
            z_rms(&f.moments.means, &m30, &v30, 256),
            z_rms(&f.moments.variances, &v30, &vv30, 256),
            z_rms(&fl.means, &fm, &fv, 2000),
            z_rms(&l10.means, &m, &v, 2000),
        );
        let _ = &vv;
    }
}

/// PaRIS Fisher score against the exact score `∇θ log p(y)` (dual numbers through the Kalman
/// log-likelihood). R = 12 independent runs at N = 600, T = 40: each component's mean is
/// within 5 standard errors (estimated from the runs; 5 > the 0.9995 quantile 4.4 of Student's
/// t with 11 df) of the exact score. Measured: (−1.56 ± 0.13, 4.55 ± 0.34) against Kalman
/// (−1.85, 4.48), i.e. 2.2 and 0.2 standard errors (the first includes the O(T/N) bias). A
/// missing observation term would be off by the whole θ2 component (4.5, 13 standard errors).
#[test]
fn paris_score_matches_the_kalman_score() {
    let d = data(40);
    let p = PaperParams::new(1, d.ys().to_vec()).unwrap();
    let theta = [0.5, 1.0];
    let (_, g) = gradient(&KalmanNll(&p), &theta, &GradOptions::default()).unwrap();
    let exact: Vec<f64> = g.iter().map(|v| -v).collect();
    let reps = 12;
    let smc = SmcConfig::new(600).unwrap();
    let scores: Vec<Vec<f64>> = (0..reps)
        .map(|s| {
            let c = ParisConfig::new().with_seed(100 + s);
            fisher_score(&p, &theta, &smc, &Systematic, s, &c)
                .unwrap()
                .score
        })
        .collect();
    for k in 0..2 {
        let xs: Vec<f64> = scores.iter().map(|s| s[k]).collect();
        let mean = xs.iter().sum::<f64>() / reps as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (reps - 1) as f64;
        let se = (var / reps as f64).sqrt();
        println!(
            "score[{k}]: PaRIS {mean:.4} ± {se:.4}, Kalman {:.4}",
            exact[k]
        );
        assert!(
            (mean - exact[k]).abs() < 5.0 * se,
            "component {k}: {mean} vs {} (se {se})",
            exact[k]
        );
    }
}

/// PaRIS of the functional `x_t` at one step reproduces FFBS's smoothed mean closely (both
/// estimate the same quantity from the same particles; they differ by the PaRIS sampling
/// error, O(1/√(N Ñ)) in sd units).
#[test]
fn paris_of_a_marginal_matches_ffbs() {
    struct At(usize);
    impl diffsmc::smooth::AdditiveFunctional for At {
        fn dim(&self) -> usize {
            1
        }
        fn state_term(&self, t: usize, x: &[f64], out: &mut [f64]) -> diffsmc::Result<()> {
            out[0] = if t == self.0 { x[0] } else { 0.0 };
            Ok(())
        }
        fn pair_term(
            &self,
            _: usize,
            _: &[f64],
            _: &[f64],
            out: &mut [f64],
        ) -> diffsmc::Result<()> {
            out[0] = 0.0;
            Ok(())
        }
    }
    let d = data(20);
    let (_, v, _) = rts(&d);
    let n = 400;
    let r = run(&d, n, &Systematic, 12);
    let f = ffbs(&d, &r).unwrap();
    for t in [0, 10, 19] {
        let c = ParisConfig::new()
            .with_backward_draws(4)
            .unwrap()
            .with_seed(1);
        let e = paris(&d, &r, &At(t), &c).unwrap();
        let diff = (e.estimate[0] - f.moments.means[t][0]).abs();
        // 4 sd units of an i.i.d. sample of size N (the PaRIS noise is smaller than that).
        assert!(diff < 4.0 * (v[t][0] / n as f64).sqrt(), "step {t}: {diff}");
    }
}

/// Every parallel loop has fixed chunks: one thread and two give the same bits.
#[test]
fn smoothers_do_not_depend_on_the_thread_count() {
    let d = data(15);
    let r = run(&d, 200, &Systematic, 1);
    let compute = || {
        let f = ffbs(&d, &r).unwrap();
        let c = BackwardConfig::new(100)
            .unwrap()
            .with_method(BackwardMethod::rejection(8).unwrap())
            .unwrap();
        let b = backward_simulation(&d, &r, &c).unwrap();
        let p = PaperParams::new(1, d.ys().to_vec()).unwrap();
        let s = fisher_score(
            &p,
            &[0.5, 1.0],
            &SmcConfig::new(200).unwrap(),
            &Systematic,
            1,
            &ParisConfig::new(),
        )
        .unwrap();
        (f.log_weights, b.indices, b.fallbacks, s.score)
    };
    let pool = |k| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(k)
            .build()
            .unwrap()
    };
    let one = pool(1).install(compute);
    let two = pool(2).install(compute);
    assert_eq!(one.0, two.0);
    assert_eq!(one.1, two.1);
    assert_eq!(one.2, two.2);
    assert_eq!(one.3, two.3);
}

/// History on or off, the run is the same bit for bit; the history's last step is the output;
/// ancestry is reported by index resamplers (and matches a direct call of the index
/// resampler with the run's stream), identity without resampling, unknown otherwise.
#[test]
fn history_records_the_run_and_its_genealogy() {
    let d = data(10);
    let spec: ResamplerSpec = "diffusion:T=1,K=4".parse().unwrap();
    let specs: Vec<ResamplerSpec> = vec![
        ResamplerSpec::Systematic,
        ResamplerSpec::Multinomial,
        ResamplerSpec::StopGradient,
        spec,
        "soft:alpha=0.5".parse().unwrap(),
    ];
    for s in &specs {
        let r = s.build::<f64>().unwrap();
        let base = SmcConfig::new(50).unwrap();
        let a: SmcOutput<f64> = Smc::new(base.clone()).run(&Bootstrap(&d), &r, 3).unwrap();
        let b: SmcOutput<f64> = Smc::new(base.with_history(true))
            .run(&Bootstrap(&d), &r, 3)
            .unwrap();
        assert!(a.history.is_none());
        assert_eq!(
            a.log_likelihood.to_bits(),
            b.log_likelihood.to_bits(),
            "{s}"
        );
        assert_eq!(a.particles.as_slice(), b.particles.as_slice());
        let h = b.history.as_ref().unwrap();
        assert_eq!(h.len(), 10);
        assert_eq!(h.particles[9].as_slice(), b.particles.as_slice());
        assert_eq!(h.log_weights[9], b.log_weights);
        assert_eq!(h.ancestry[0], Ancestry::Initial);
        let index = matches!(
            s,
            ResamplerSpec::Systematic | ResamplerSpec::Multinomial | ResamplerSpec::StopGradient
        );
        assert_eq!(h.has_genealogy(), index, "{s}");
    }
    // The recorded ancestors are the systematic resampler's on the previous weights.
    let r = run(&d, 50, &Systematic, 3);
    let h = r.history.as_ref().unwrap();
    for t in 1..10 {
        let Ancestry::Indices(a) = &h.ancestry[t] else {
            panic!("step {t}: {:?}", h.ancestry[t]);
        };
        let w = diffsmc::weights_f64(&h.log_weights[t - 1]);
        let mut expect = vec![0; 50];
        Systematic.ancestors(&w, StreamKey::new(3, t, Purpose::Resample), &mut expect);
        assert_eq!(a, &expect, "step {t}");
    }
    // Never resampling: identity ancestry, and fixed-lag works.
    let c = SmcConfig::new(50)
        .unwrap()
        .with_trigger(Trigger::Never)
        .unwrap()
        .with_history(true);
    let never: SmcOutput<f64> = Smc::new(c).run(&Bootstrap(&d), &Systematic, 3).unwrap();
    let h = never.history.as_ref().unwrap();
    assert!(h.ancestry[1..].iter().all(|a| *a == Ancestry::Identity));
    assert!(fixed_lag(&never, 2).is_ok());
}

/// `resample_with_ancestors` gives the same particles and weights as `resample`, and
/// `out[i] = particles[ancestors[i]]`, for every index resampler; others report none.
#[test]
fn index_resamplers_report_their_ancestors() {
    let n = 30;
    let x: Vec<f64> = (0..n).map(|i| i as f64 * 0.37 - 2.0).collect();
    let p = Particles::from_vec(n, 1, x).unwrap();
    let mut lw: Vec<f64> = (0..n).map(|i| -((i as f64 - 10.0) / 4.0).powi(2)).collect();
    diffsmc::normalise_log_weights(&mut lw, 0).unwrap();
    let key = StreamKey::new(5, 2, Purpose::Resample);
    for name in [
        "multinomial",
        "systematic",
        "stratified",
        "residual",
        "ssp",
        "killing",
        "stop-gradient",
        "diffusion:T=1,K=4",
        "soft:alpha=0.5",
    ] {
        let r = name
            .parse::<ResamplerSpec>()
            .unwrap()
            .build::<f64>()
            .unwrap();
        let (mut o1, mut w1) = (Particles::zeros(n, 1), vec![0.0; n]);
        let (mut o2, mut w2, mut anc) = (Particles::zeros(n, 1), vec![0.0; n], vec![7; 3]);
        r.resample(&p, &lw, key, &mut o1, &mut w1).unwrap();
        r.resample_with_ancestors(&p, &lw, key, &mut o2, &mut w2, &mut anc)
            .unwrap();
        assert_eq!(o1.as_slice(), o2.as_slice(), "{name}");
        assert_eq!(w1, w2, "{name}");
        let index = !name.contains(':');
        if index {
            assert_eq!(anc.len(), n, "{name}");
            for (i, &a) in anc.iter().enumerate() {
                assert_eq!(o2.particle(i), p.particle(a), "{name}");
            }
        } else {
            assert!(anc.is_empty(), "{name}");
        }
    }
}

/// A model that forwards the LGSSM but provides neither a transition density nor a bound,
/// or (`density: true`) the density without a bound.
struct Hidden<'a> {
    inner: &'a LgssmData<f64>,
    density: bool,
}

impl StateSpaceModel<f64> for Hidden<'_> {
    fn state_dim(&self) -> usize {
        1
    }
    fn n_observations(&self) -> usize {
        self.inner.len()
    }
    fn sample_initial(&self, rng: &mut StreamRng, x: &mut [f64]) {
        self.inner.sample_initial(rng, x)
    }
    fn sample_transition(&self, t: usize, xp: &[f64], rng: &mut StreamRng, x: &mut [f64]) {
        self.inner.sample_transition(t, xp, rng, x)
    }
    fn observation_log_density(&self, t: usize, x: &[f64]) -> f64 {
        self.inner.observation_log_density(t, x)
    }
    fn has_transition_density(&self) -> bool {
        self.density
    }
    fn transition_log_density(&self, t: usize, xp: &[f64], x: &[f64]) -> diffsmc::Result<f64> {
        self.inner.transition_log_density(t, xp, x)
    }
    fn initial_log_density(&self, x: &[f64]) -> diffsmc::Result<f64> {
        self.inner.initial_log_density(x)
    }
}

#[test]
fn bad_input_gets_typed_errors() {
    let d = data(8);
    let r = run(&d, 32, &Systematic, 1);
    let none = Hidden {
        inner: &d,
        density: false,
    };
    let unsupported = |needed_by| SmcError::Unsupported {
        what: "transition density",
        needed_by,
    };
    assert_eq!(ffbs(&none, &r).unwrap_err(), unsupported("FFBS smoothing"));
    let bc = BackwardConfig::new(4).unwrap();
    assert_eq!(
        backward_simulation(&none, &r, &bc).unwrap_err(),
        unsupported("backward simulation")
    );
    struct Zero;
    impl diffsmc::smooth::AdditiveFunctional for Zero {
        fn dim(&self) -> usize {
            1
        }
        fn state_term(&self, _: usize, _: &[f64], o: &mut [f64]) -> diffsmc::Result<()> {
            o[0] = 0.0;
            Ok(())
        }
        fn pair_term(&self, _: usize, _: &[f64], _: &[f64], o: &mut [f64]) -> diffsmc::Result<()> {
            o[0] = 0.0;
            Ok(())
        }
    }
    assert_eq!(
        paris(&none, &r, &Zero, &ParisConfig::new()).unwrap_err(),
        unsupported("PaRIS")
    );
    // Density but no bound: rejection is unsupported, exact works, PaRIS picks exact.
    let nobound = Hidden {
        inner: &d,
        density: true,
    };
    let rej = bc
        .clone()
        .with_method(BackwardMethod::rejection(4).unwrap())
        .unwrap();
    assert_eq!(
        backward_simulation(&nobound, &r, &rej).unwrap_err(),
        SmcError::Unsupported {
            what: "transition density bound",
            needed_by: "backward simulation"
        }
    );
    assert!(backward_simulation(&nobound, &r, &bc).is_ok());
    assert!(paris(&nobound, &r, &Zero, &ParisConfig::new()).is_ok());
    // A run without history.
    let plain: SmcOutput<f64> = Smc::new(SmcConfig::new(32).unwrap())
        .run(&Bootstrap(&d), &Systematic, 1)
        .unwrap();
    for e in [
        ffbs(&d, &plain).unwrap_err(),
        backward_simulation(&d, &plain, &bc).unwrap_err(),
        fixed_lag(&plain, 1).unwrap_err(),
        paris(&d, &plain, &Zero, &ParisConfig::new()).unwrap_err(),
    ] {
        assert!(
            matches!(
                e,
                SmcError::InvalidParameter {
                    name: "run history",
                    ..
                }
            ),
            "{e}"
        );
    }
    // A history that does not belong to the model.
    let other = data(9);
    assert!(matches!(
        ffbs(&other, &r).unwrap_err(),
        SmcError::DimensionMismatch { .. }
    ));
    // Fixed lag: lag ≥ T, and a resampler without ancestors.
    assert!(matches!(
        fixed_lag(&r, 8).unwrap_err(),
        SmcError::InvalidParameter {
            name: "fixed-lag lag L",
            ..
        }
    ));
    assert!(fixed_lag(&r, 7).is_ok());
    let spec: ResamplerSpec = "diffusion:T=1,K=4".parse().unwrap();
    let rd = run(&d, 32, &*spec.build::<f64>().unwrap(), 1);
    assert_eq!(
        fixed_lag(&rd, 2).unwrap_err(),
        SmcError::Unsupported {
            what: "ancestor indices",
            needed_by: "fixed-lag smoothing"
        }
    );
    // Knobs.
    assert!(BackwardConfig::new(0).is_err());
    assert!(BackwardMethod::rejection(0).is_err());
    assert!(ParisConfig::new().with_backward_draws(0).is_err());
    let p = PaperParams::new(1, d.ys().to_vec()).unwrap();
    assert!(matches!(
        fisher_score(
            &p,
            &[0.5],
            &SmcConfig::new(8).unwrap(),
            &Systematic,
            0,
            &ParisConfig::new()
        )
        .unwrap_err(),
        SmcError::DimensionMismatch { .. }
    ));
}
