//! Bayesian parameter inference on the paper's LGSSM against the exact grid posterior
//! (Kalman likelihood × prior on a fine grid): PMMH (particle filter and Kalman oracles),
//! particle Gibbs (θ-marginal, and invariance of the exact smoothing distribution under
//! CSMC-AS on a tiny model), PMALA and PHMC; determinism across thread counts; typed errors.

use diffsmc::bayes::{
    GradientPmcmc, KalmanLikelihood, Marginal, McmcConfig, ParticleGibbs, PfLikelihood, Pmmh,
    Posterior, ProductPrior, RandomWalkTheta, csmc_as,
};
use diffsmc::grad::{KalmanNll, value};
use diffsmc::rng::{Purpose, StreamKey, standard_normal};
use diffsmc::{ResamplerSpec, SmcConfig, SmcError};
use diffsmc_lgssm::{Lgssm, PaperParams};

fn prior() -> ProductPrior {
    ProductPrior::new(vec![
        Marginal::uniform(-1.0, 1.0).unwrap(),
        Marginal::uniform(0.0, 3.0).unwrap(),
    ])
}

fn params(t: usize) -> PaperParams {
    let (_, ys) = Lgssm::paper(0.5, 1.0, 1).unwrap().simulate(t, 11);
    PaperParams::new(1, ys).unwrap()
}

/// Posterior mean and sd of (θ1, θ2) by the exact likelihood on a grid: a coarse pass over
/// the prior box finds where the posterior mass is (log density within 30 of the maximum),
/// a fine 240 × 240 midpoint grid over that box integrates it (the grid error is far below
/// the Monte Carlo errors compared against).
fn grid_posterior(p: &PaperParams) -> ([f64; 2], [f64; 2]) {
    let lp = |a: f64, b: f64| -value(&KalmanNll(p), &[a, b]).unwrap();
    let box_ = |lo: [f64; 2], hi: [f64; 2], n: usize| {
        let h = [(hi[0] - lo[0]) / n as f64, (hi[1] - lo[1]) / n as f64];
        let mut pts = Vec::with_capacity(n * n);
        for i in 0..n {
            for j in 0..n {
                let a = lo[0] + (i as f64 + 0.5) * h[0];
                let b = lo[1] + (j as f64 + 0.5) * h[1];
                pts.push((a, b, lp(a, b)));
            }
        }
        (pts, h)
    };
    let (coarse, h) = box_([-1.0, 0.0], [1.0, 3.0], 60);
    let m = coarse.iter().map(|p| p.2).fold(f64::NEG_INFINITY, f64::max);
    let mass: Vec<_> = coarse.iter().filter(|p| p.2 > m - 30.0).collect();
    let lo = [
        (mass.iter().map(|p| p.0).fold(f64::INFINITY, f64::min) - h[0]).max(-1.0),
        (mass.iter().map(|p| p.1).fold(f64::INFINITY, f64::min) - h[1]).max(0.0),
    ];
    let hi = [
        (mass.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max) + h[0]).min(1.0),
        (mass.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max) + h[1]).min(3.0),
    ];
    let (fine, _) = box_(lo, hi, 240);
    let m = fine.iter().map(|p| p.2).fold(f64::NEG_INFINITY, f64::max);
    let (mut z, mut s1, mut s2) = (0.0, [0.0; 2], [0.0; 2]);
    for &(a, b, l) in &fine {
        let w = (l - m).exp();
        z += w;
        s1[0] += w * a;
        s1[1] += w * b;
        s2[0] += w * a * a;
        s2[1] += w * b * b;
    }
    let mean = [s1[0] / z, s1[1] / z];
    let sd = [
        (s2[0] / z - mean[0] * mean[0]).sqrt(),
        (s2[1] / z - mean[1] * mean[1]).sqrt(),
    ];
    (mean, sd)
}

/// Means within `k` Monte Carlo standard errors (from the chains' ESS of the mean) and sds
/// within `k` standard errors of a standard deviation, `sd / sqrt(2 ESS)` (the normal-theory
/// value; the marginals here are close to normal). Also R-hat < 1.05: the chains agree.
fn check(post: &Posterior, exact: ([f64; 2], [f64; 2]), k: f64, what: &str) {
    let s = post.summary();
    for j in 0..2 {
        let (m, sd) = (exact.0[j], exact.1[j]);
        let ess = s[j].ess_mean;
        assert!(ess > 50.0, "{what} θ{}: ESS {ess} too small to test", j + 1);
        assert!(
            (s[j].mean - m).abs() < k * s[j].mcse,
            "{what} θ{}: mean {} vs exact {m} (mcse {}, ess {ess})",
            j + 1,
            s[j].mean,
            s[j].mcse
        );
        let se_sd = sd / (2.0 * ess).sqrt();
        assert!(
            (s[j].sd - sd).abs() < k * se_sd,
            "{what} θ{}: sd {} vs exact {sd} (se {se_sd})",
            j + 1,
            s[j].sd
        );
        assert!(s[j].rhat < 1.05, "{what} θ{}: rhat {}", j + 1, s[j].rhat);
    }
}

/// The ideal marginal MH chain (Kalman likelihood plugged in) and PMMH with a bootstrap
/// filter (N = 64, systematic resampling: an unbiased estimate, so the chain is exact)
/// recover the grid posterior within 4 Monte Carlo standard errors.
#[test]
fn pmmh_matches_the_grid_posterior() {
    let p = params(30);
    let exact = grid_posterior(&p);
    let pr = prior();
    let config = McmcConfig::new(3000, 500, 4, 21).unwrap();
    let kal = Pmmh::default()
        .run(&KalmanLikelihood(&p), &pr, &config)
        .unwrap();
    check(&kal, exact, 4.0, "PMMH (Kalman)");
    for a in kal.acceptance_rates() {
        assert!((0.1..0.5).contains(&a), "adapted acceptance {a}");
    }
    let pf = PfLikelihood::new(&p, SmcConfig::new(64).unwrap(), &ResamplerSpec::Systematic);
    let post = Pmmh::default().run(&pf, &pr, &config).unwrap();
    check(&post, exact, 4.0, "PMMH (PF)");
}

/// Particle Gibbs (CSMC-AS, N = 16; random-walk θ-update on the complete-data density)
/// recovers the grid posterior's θ-marginal within 4 Monte Carlo standard errors.
#[test]
fn particle_gibbs_matches_the_grid_posterior() {
    let p = params(30);
    let exact = grid_posterior(&p);
    let pr = prior();
    let config = McmcConfig::new(3000, 500, 4, 5).unwrap();
    let update = RandomWalkTheta::new(&pr, 0.15, 10).unwrap();
    let post = ParticleGibbs::new(16)
        .unwrap()
        .run(&p, &update, &config)
        .unwrap();
    check(&post, exact, 4.0, "particle Gibbs");
}

/// An exact draw from p(x_{0:T−1} | y, θ) of the 1-d paper model by forward filtering
/// (Kalman) and backward sampling.
fn exact_smoothing_draw(
    means: &[f64],
    vars: &[f64],
    a: f64,
    rng: &mut diffsmc::rng::StreamRng,
) -> Vec<f64> {
    let t_len = means.len();
    let mut x = vec![0.0; t_len];
    x[t_len - 1] = means[t_len - 1] + vars[t_len - 1].sqrt() * standard_normal(rng);
    for t in (0..t_len - 1).rev() {
        let (m, v) = (means[t], vars[t]);
        let j = v * a / (a * a * v + 1.0);
        let mean = m + j * (x[t + 1] - a * m);
        let var = v - j * a * v;
        x[t] = mean + var.sqrt() * standard_normal(rng);
    }
    x
}

/// CSMC with ancestor sampling leaves the smoothing distribution invariant for any N ≥ 2:
/// 6000 independent trajectories drawn exactly from p(x | y, θ) (T = 3, observations far in
/// the tails so that a bootstrap filter with N = 3 is badly biased) go through 3 sweeps each;
/// per step the mean of x_t must stay within 4.5 standard errors (sd_t / sqrt(6000)) of the
/// RTS smoothing mean and the variance within 4.5 standard errors (var_t sqrt(2/6000)) —
/// 12 z-tests, so 4.5 keeps the family-wise false alarm rate below 1e-4. As a control, the
/// unconditional filter's draw (what a sampler without the reference would give) fails the
/// same test.
#[test]
fn csmc_as_leaves_the_smoothing_distribution_invariant() {
    let (a, b) = (0.7, 1.2);
    let data = Lgssm::paper(a, b, 1)
        .unwrap()
        .with_data(vec![vec![3.5], vec![-1.0], vec![4.0]])
        .unwrap();
    let (kf, rts) = data.smooth().unwrap();
    let fm: Vec<f64> = kf.filter_means.iter().map(|m| m[0]).collect();
    let fv: Vec<f64> = kf.filter_covs.iter().map(|c| c[0]).collect();
    let sm: Vec<f64> = rts.means.iter().map(|m| m[0]).collect();
    let sv: Vec<f64> = rts.covs.iter().map(|c| c[0]).collect();
    let reps = 6000;
    let n = 3;
    let key = StreamKey::new(77, 0, Purpose::Other(1));
    let mut after: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut uncond: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for r in 0..reps {
        let mut x = exact_smoothing_draw(&fm, &fv, a, &mut key.rng(r));
        for s in 0..3 {
            x = csmc_as(&data, n, Some(&x), (r * 10 + s) as u64).unwrap();
        }
        let u = csmc_as(&data, n, None, (r * 10 + 9) as u64).unwrap();
        for t in 0..3 {
            after[t].push(x[t]);
            uncond[t].push(u[t]);
        }
    }
    let z = |xs: &[f64], t: usize| {
        let nf = xs.len() as f64;
        let m = xs.iter().sum::<f64>() / nf;
        let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (nf - 1.0);
        (
            (m - sm[t]) / (sv[t] / nf).sqrt(),
            (v - sv[t]) / (sv[t] * (2.0 / nf).sqrt()),
        )
    };
    let mut worst_uncond: f64 = 0.0;
    for t in 0..3 {
        let (zm, zv) = z(&after[t], t);
        assert!(
            zm.abs() < 4.5 && zv.abs() < 4.5,
            "step {t}: z mean {zm}, z var {zv}"
        );
        let (um, uv) = z(&uncond[t], t);
        worst_uncond = worst_uncond.max(um.abs()).max(uv.abs());
    }
    assert!(
        worst_uncond > 6.0,
        "the control (unconditional filter) should be detectably biased: {worst_uncond}"
    );
}

/// PMALA and PHMC (bootstrap filter N = 64, systematic resampling, dual-number gradients)
/// recover the grid posterior within 4 Monte Carlo standard errors.
#[test]
fn gradient_pmcmc_matches_the_grid_posterior() {
    let p = params(30);
    let exact = grid_posterior(&p);
    let pr = prior();
    let smc = SmcConfig::new(64).unwrap();
    let r = ResamplerSpec::Systematic;
    let config = McmcConfig::new(2000, 500, 3, 8).unwrap();
    let mala = GradientPmcmc::mala(0.5)
        .unwrap()
        .run(&p, &smc, &r, &pr, &config)
        .unwrap();
    check(&mala, exact, 4.0, "PMALA");
    let config = McmcConfig::new(700, 200, 3, 9).unwrap();
    let hmc = GradientPmcmc::hmc(0.3, 4)
        .unwrap()
        .run(&p, &smc, &r, &pr, &config)
        .unwrap();
    check(&hmc, exact, 4.0, "PHMC");
}

/// Every sampler gives bit-identical chains on 1 and 2 threads.
#[test]
fn chains_do_not_depend_on_the_thread_count() {
    let p = params(20);
    let pr = prior();
    let smc = SmcConfig::new(16).unwrap();
    let r = ResamplerSpec::Systematic;
    let config = McmcConfig::new(60, 20, 3, 4).unwrap();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let pf = PfLikelihood::new(&p, smc.clone(), &r);
            let a = Pmmh::default().run(&pf, &pr, &config).unwrap();
            let update = RandomWalkTheta::new(&pr, 0.1, 2).unwrap();
            let b = ParticleGibbs::new(8)
                .unwrap()
                .run(&p, &update, &config)
                .unwrap();
            let c = GradientPmcmc::hmc(0.2, 2)
                .unwrap()
                .run(&p, &smc, &r, &pr, &config)
                .unwrap();
            (a, b, c)
        })
    };
    // Bit-level comparison (a sampler without accept steps reports NaN fields, and
    // NaN != NaN).
    let bits = |p: &Posterior| -> Vec<u64> {
        p.chains
            .iter()
            .flat_map(|c| {
                c.samples
                    .iter()
                    .flatten()
                    .chain(&c.log_likelihood)
                    .map(|v| v.to_bits())
                    .chain([c.accepted as u64, c.final_scale.to_bits()])
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let one = run(1);
    let two = run(2);
    assert_eq!(bits(&one.0), bits(&two.0), "PMMH");
    assert_eq!(bits(&one.1), bits(&two.1), "particle Gibbs");
    assert_eq!(bits(&one.2), bits(&two.2), "PHMC");
    // Different chains are different streams.
    assert_ne!(one.0.chains[0].samples, one.0.chains[1].samples);
}

#[test]
fn bad_knobs_are_typed_errors() {
    assert!(matches!(
        McmcConfig::new(100, 100, 2, 0),
        Err(SmcError::InvalidParameter {
            name: "burn-in",
            ..
        })
    ));
    assert!(matches!(
        McmcConfig::new(100, 10, 0, 0),
        Err(SmcError::InvalidParameter { name: "chains", .. })
    ));
    assert!(McmcConfig::new(0, 0, 1, 0).is_err());
    assert!(
        McmcConfig::new(10, 1, 1, 0)
            .unwrap()
            .with_init(vec![f64::NAN, 1.0])
            .is_err()
    );
    let p = params(10);
    let pr = prior();
    // A start point outside the prior's support.
    let config = McmcConfig::new(10, 1, 1, 0)
        .unwrap()
        .with_init(vec![1.5, 1.0])
        .unwrap();
    assert!(matches!(
        Pmmh::default().run(&KalmanLikelihood(&p), &pr, &config),
        Err(SmcError::InvalidParameter {
            name: "initial θ",
            ..
        })
    ));
    // A prior of the wrong dimension.
    let one = ProductPrior::new(vec![Marginal::normal(0.0, 1.0).unwrap()]);
    let config = McmcConfig::new(10, 1, 1, 0).unwrap();
    assert!(matches!(
        Pmmh::default().run(&KalmanLikelihood(&p), &one, &config),
        Err(SmcError::DimensionMismatch { .. })
    ));
    assert!(ParticleGibbs::new(1).is_err());
    assert!(RandomWalkTheta::new(&pr, 0.0, 1).is_err());
    assert!(GradientPmcmc::hmc(f64::NAN, 3).is_err());
}

/// A proposal far too wide never gets accepted after burn-in when adaptation is off: the
/// posterior carries a warning saying so.
#[test]
fn a_chain_that_never_accepts_is_flagged() {
    let p = params(30);
    let pr = prior();
    let config = McmcConfig::new(60, 10, 1, 3)
        .unwrap()
        .with_init(vec![0.5, 1.0])
        .unwrap();
    let post = Pmmh::default()
        .with_initial_sd(1e3)
        .unwrap()
        .with_adaptation(false)
        .run(&KalmanLikelihood(&p), &pr, &config)
        .unwrap();
    assert!(
        !post.warnings.is_empty(),
        "acceptance {:?}",
        post.acceptance_rates()
    );
}
