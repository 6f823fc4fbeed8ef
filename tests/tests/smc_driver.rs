//! Tests of the SMC driver: determinism (seeds and threads), unbiasedness of the
//! log-likelihood against a Kalman filter oracle, filtering moments, records, typed errors,
//! trigger and resampler-spec parsing, and runs on dual numbers.

use diffsmc::prelude::*;
use diffsmc::rng::Purpose;
use num_dual::{Dual64, DualSVec64};

const LN_2PI: f64 = 1.837_877_066_409_345_5;

// ---------------------------------------------------------------------------------------------
// A 1-D linear Gaussian model and its Kalman filter.
// ---------------------------------------------------------------------------------------------

/// `x_0 ~ N(0, p0)`, `x_t = a x_{t−1} + N(0, q)`, `y_t = x_t + N(0, r)`. The transition
/// coefficient `a` and the observation variance `r` are scalars of the run, so the same model
/// runs on `f64` and with derivatives in `a` and `r`.
#[derive(Debug, Clone)]
struct Lg<S> {
    a: S,
    r: S,
    q: f64,
    p0: f64,
    ys: Vec<f64>,
}

impl<S: Scalar> StateSpaceModel<S> for Lg<S> {
    fn state_dim(&self) -> usize {
        1
    }
    fn n_observations(&self) -> usize {
        self.ys.len()
    }
    fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
        x[0] = S::cst(self.p0.sqrt() * standard_normal(rng));
    }
    fn sample_transition(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) {
        x[0] = xp[0] * self.a + self.q.sqrt() * standard_normal(rng);
    }
    fn observation_log_density(&self, t: usize, x: &[S]) -> S {
        let e = x[0] - self.ys[t];
        -(e * e / self.r + self.r.ln() + LN_2PI) * 0.5
    }
}

/// Data simulated from the model with `a`, `r` (fixed seed).
fn simulate(a: f64, q: f64, r: f64, p0: f64, steps: usize, seed: u64) -> Vec<f64> {
    let key = StreamKey::new(seed, 0, Purpose::Simulate);
    let mut rng = key.rng(0);
    let mut x = p0.sqrt() * standard_normal(&mut rng);
    let mut ys = Vec::with_capacity(steps);
    for t in 0..steps {
        if t > 0 {
            x = a * x + q.sqrt() * standard_normal(&mut rng);
        }
        ys.push(x + r.sqrt() * standard_normal(&mut rng));
    }
    ys
}

fn lg(a: f64, q: f64, r: f64, p0: f64, steps: usize, seed: u64) -> Lg<f64> {
    Lg {
        a,
        r,
        q,
        p0,
        ys: simulate(a, q, r, p0, steps, seed),
    }
}

/// The exact filter: log-likelihood, and filtering means and variances per step.
struct KalmanOut {
    loglik: f64,
    means: Vec<f64>,
    vars: Vec<f64>,
}

fn kalman(m: &Lg<f64>) -> KalmanOut {
    let (mut mean, mut var) = (0.0, m.p0);
    let mut out = KalmanOut {
        loglik: 0.0,
        means: Vec::new(),
        vars: Vec::new(),
    };
    for (t, &y) in m.ys.iter().enumerate() {
        if t > 0 {
            mean *= m.a;
            var = m.a * m.a * var + m.q;
        }
        let s = var + m.r;
        let e = y - mean;
        out.loglik += -0.5 * (LN_2PI + s.ln() + e * e / s);
        let k = var / s;
        mean += k * e;
        var *= 1.0 - k;
        out.means.push(mean);
        out.vars.push(var);
    }
    out
}

#[test]
fn kalman_oracle_matches_a_direct_two_step_computation() {
    // y_0, y_1 jointly Gaussian: Var y_0 = p0 + r, Var y_1 = a² p0 + q + r, Cov = a p0.
    let m = Lg {
        a: 0.7,
        r: 0.4,
        q: 1.3,
        p0: 2.0,
        ys: vec![0.3, -1.1],
    };
    let (s00, s11, s01) = (m.p0 + m.r, m.a * m.a * m.p0 + m.q + m.r, m.a * m.p0);
    let det = s00 * s11 - s01 * s01;
    let (y0, y1) = (m.ys[0], m.ys[1]);
    let quad = (s11 * y0 * y0 - 2.0 * s01 * y0 * y1 + s00 * y1 * y1) / det;
    let direct = -LN_2PI - 0.5 * det.ln() - 0.5 * quad;
    assert!((kalman(&m).loglik - direct).abs() < 1e-13);
}

// ---------------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------------

fn run<M: FeynmanKac<f64>>(
    model: &M,
    config: SmcConfig,
    r: &dyn Resampler<f64>,
    seed: u64,
) -> SmcOutput<f64> {
    Smc::new(config).run(model, r, seed).unwrap()
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Every number of two outputs is the same, bit for bit.
fn assert_bit_identical(a: &SmcOutput<f64>, b: &SmcOutput<f64>, what: &str) {
    assert_eq!(
        a.log_likelihood.to_bits(),
        b.log_likelihood.to_bits(),
        "{what}: log-likelihood {} vs {}",
        a.log_likelihood,
        b.log_likelihood
    );
    assert_eq!(
        bits(&a.log_likelihood_increments),
        bits(&b.log_likelihood_increments),
        "{what}"
    );
    assert_eq!(bits(&a.ess), bits(&b.ess), "{what}");
    assert_eq!(a.resampled, b.resampled, "{what}");
    assert_eq!(
        bits(a.particles.as_slice()),
        bits(b.particles.as_slice()),
        "{what}"
    );
    assert_eq!(bits(&a.log_weights), bits(&b.log_weights), "{what}");
    let flat = |v: &Vec<Vec<f64>>| v.iter().flat_map(|x| bits(x)).collect::<Vec<_>>();
    assert_eq!(flat(&a.filter_means), flat(&b.filter_means), "{what}");
    assert_eq!(flat(&a.filter_covs), flat(&b.filter_covs), "{what}");
}

// ---------------------------------------------------------------------------------------------
// Determinism.
// ---------------------------------------------------------------------------------------------

/// A 2-D Feynman–Kac model whose potential depends on both the previous and the new state, so
/// that `x_prev` must be the right particle (the resampled ancestor) in the parallel path too.
#[derive(Debug)]
struct Coupled2d {
    ys: Vec<[f64; 2]>,
}

impl FeynmanKac<f64> for Coupled2d {
    fn dim(&self) -> usize {
        2
    }
    fn n_steps(&self) -> usize {
        self.ys.len()
    }
    fn sample_initial(&self, rng: &mut StreamRng, x: &mut [f64]) {
        x[0] = standard_normal(rng);
        x[1] = standard_normal(rng);
    }
    fn log_potential_initial(&self, x: &[f64]) -> f64 {
        let (e0, e1) = (x[0] - self.ys[0][0], x[1] - self.ys[0][1]);
        -0.5 * (e0 * e0 + e1 * e1) / 0.3
    }
    fn sample_transition(&self, _t: usize, xp: &[f64], rng: &mut StreamRng, x: &mut [f64]) {
        x[0] = 0.8 * xp[0] + 0.3 * xp[1] + standard_normal(rng);
        x[1] = -0.2 * xp[0] + 0.9 * xp[1] + 0.5 * standard_normal(rng);
    }
    fn log_potential(&self, t: usize, xp: &[f64], x: &[f64]) -> f64 {
        let (e0, e1) = (x[0] - self.ys[t][0], x[1] - self.ys[t][1]);
        let jump = x[0] - xp[0];
        -0.5 * (e0 * e0 + e1 * e1) / 0.3 - 0.05 * jump * jump
    }
}

fn coupled_model() -> Coupled2d {
    let a = simulate(0.9, 1.0, 0.3, 1.0, 12, 5);
    let b = simulate(0.5, 0.5, 0.3, 1.0, 12, 6);
    Coupled2d {
        ys: a.into_iter().zip(b).map(|(u, v)| [u, v]).collect(),
    }
}

#[test]
fn same_seed_gives_bit_identical_output() {
    let model = coupled_model();
    for trigger in [Trigger::Always, Trigger::EssBelow(0.5), Trigger::Never] {
        let c = SmcConfig::new(500)
            .unwrap()
            .with_trigger(trigger)
            .unwrap()
            .with_filter_moments(true);
        let a = run(&model, c.clone(), &Systematic, 42);
        let b = run(&model, c.clone(), &Systematic, 42);
        assert_bit_identical(&a, &b, &format!("{trigger:?}"));
        let other = run(&model, c, &Systematic, 43);
        assert_ne!(a.log_likelihood, other.log_likelihood);
    }
}

/// Results do not depend on the number of threads nor on whether the parallel path is taken:
/// the serial run (N below the default threshold of 4096) and forced-parallel runs in pools
/// of 1, 2 and 4 threads agree bit for bit. N = 3000 is not a multiple of the driver's chunk
/// size, so the last chunk is partial.
#[test]
fn results_do_not_depend_on_threads() {
    let model = coupled_model();
    let resamplers: [&dyn Resampler<f64>; 3] = [&Systematic, &Multinomial, &Ssp];
    for r in resamplers {
        for trigger in [Trigger::Always, Trigger::EssBelow(0.5)] {
            let base = SmcConfig::new(3000)
                .unwrap()
                .with_trigger(trigger)
                .unwrap()
                .with_filter_moments(true);
            let serial = run(&model, base.clone(), r, 7);
            let forced = base.clone().with_parallel_min_particles(1);
            for threads in [1, 2, 4] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let par = pool.install(|| run(&model, forced.clone(), r, 7));
                assert_bit_identical(
                    &serial,
                    &par,
                    &format!(
                        "{} {trigger:?} forced parallel, {threads} threads",
                        r.name()
                    ),
                );
                let default = pool.install(|| run(&model, base.clone(), r, 7));
                assert_bit_identical(
                    &serial,
                    &default,
                    &format!("{} {trigger:?} default, {threads} threads", r.name()),
                );
            }
        }
    }
    // Above the default threshold the parallel path is the default one.
    let big = SmcConfig::new(5000).unwrap();
    let serial = run(
        &model,
        big.clone().with_parallel_min_particles(usize::MAX),
        &Systematic,
        3,
    );
    for threads in [1, 2, 4] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let par = pool.install(|| run(&model, big.clone(), &Systematic, 3));
        assert_bit_identical(&serial, &par, &format!("N = 5000, {threads} threads"));
    }
}

// ---------------------------------------------------------------------------------------------
// Unbiasedness of the likelihood estimate, and filtering moments, against the Kalman filter.
// ---------------------------------------------------------------------------------------------

/// Mean and sample sd over `seeds` runs of the ratio `Ẑ / Z = exp(loglik − loglik_Kalman)`.
fn likelihood_ratio_stats(
    model: &Lg<f64>,
    config: SmcConfig,
    r: &dyn Resampler<f64>,
    seeds: u64,
) -> (f64, f64) {
    let exact = kalman(model).loglik;
    let smc = Smc::new(config);
    let fk = Bootstrap(model.clone());
    let ratios: Vec<f64> = (0..seeds)
        .map(|s| (smc.run(&fk, r, s).unwrap().log_likelihood - exact).exp())
        .collect();
    let n = ratios.len() as f64;
    let mean = ratios.iter().sum::<f64>() / n;
    let var = ratios.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// The SMC likelihood estimate `Ẑ` is unbiased, `E[Ẑ] = Z`, for any N, with resampling at every
/// step, adaptively, or never (then it is plain importance sampling). We test the ratio
/// `Ẑ / Z` directly: its mean over R independent seeds must be within 5 standard errors
/// (`sd/√R`, sample sd) of 1. `log Ẑ` itself is biased low (Jensen: `E log Ẑ ≈ log Z − σ²/2`),
/// which is why the test works on the ratio scale.
///
/// The CLT applies: the ratio is bounded (each Gaussian likelihood factor is bounded), and the
/// model (T = 10, N = 50) keeps its sd moderate (printed on failure; about 0.35–0.4 with
/// resampling, 1.1 for `Never`), so R = 6000 gives standard errors of about 0.005–0.015. Over
/// the 8 comparisons a
/// two-sided 5-SE excursion has family-wise probability below 5e-6. A missing or
/// unnormalised-weight term in the increment shifts the ratio by a constant factor (e.g.
/// ×N per step), far outside this tolerance.
#[test]
fn likelihood_estimate_is_unbiased() {
    let model = lg(0.9, 1.0, 1.0, 1.0, 10, 11);
    let seeds = 6000;
    let cases: [(&str, Trigger, &dyn Resampler<f64>); 8] = [
        ("always/systematic", Trigger::Always, &Systematic),
        ("ess0.5/systematic", Trigger::EssBelow(0.5), &Systematic),
        ("never", Trigger::Never, &Systematic),
        ("always/multinomial", Trigger::Always, &Multinomial),
        ("always/stratified", Trigger::Always, &Stratified),
        ("always/residual", Trigger::Always, &Residual),
        ("ess0.5/ssp", Trigger::EssBelow(0.5), &Ssp),
        ("always/killing", Trigger::Always, &Killing),
    ];
    for (name, trigger, r) in cases {
        let c = SmcConfig::new(50).unwrap().with_trigger(trigger).unwrap();
        let (mean, sd) = likelihood_ratio_stats(&model, c, r, seeds);
        let se = sd / (seeds as f64).sqrt();
        assert!(
            (mean - 1.0).abs() <= 5.0 * se,
            "{name}: E[Ẑ/Z] = {mean} ± {se} (sd {sd}), not within 5 SE of 1"
        );
    }
}

/// Sanity check of the statistical test's power: a deliberately biased estimator (the
/// log-likelihood of a model with the wrong observation variance) is rejected by the same
/// tolerance.
#[test]
fn likelihood_test_detects_a_wrong_model() {
    let model = lg(0.9, 1.0, 1.0, 1.0, 10, 11);
    let exact = kalman(&model).loglik;
    let wrong = Lg {
        r: 1.3,
        ..model.clone()
    };
    let smc = Smc::new(SmcConfig::new(50).unwrap());
    let seeds = 2000;
    let ratios: Vec<f64> = (0..seeds)
        .map(|s| {
            let o = smc.run(&Bootstrap(wrong.clone()), &Systematic, s).unwrap();
            (o.log_likelihood - exact).exp()
        })
        .collect();
    let mean = ratios.iter().sum::<f64>() / seeds as f64;
    let sd = (ratios.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (seeds as f64 - 1.0)).sqrt();
    let expected = (kalman(&wrong).loglik - exact).exp();
    assert!((mean - 1.0).abs() > 5.0 * sd / (seeds as f64).sqrt());
    assert!((mean - expected).abs() <= 5.0 * sd / (seeds as f64).sqrt());
}

/// Filtering means and variances agree with the Kalman filter. Over R = 100 seeds (N = 1000,
/// systematic at every step) the average PF mean at each step must be within 5 standard errors
/// (across-seed sd / √R) of the Kalman mean, plus an allowance for the O(1/N) bias of
/// self-normalised estimates: 20·P_t/N, valid while the ESS stays above N/20 (checked). The
/// same for the variance. 2 × 12 comparisons at 5 SE: family-wise false alarm below 2e-5.
#[test]
fn filtering_moments_match_kalman() {
    let model = lg(0.9, 1.0, 0.5, 1.0, 12, 21);
    let kf = kalman(&model);
    let n = 1000;
    let seeds = 100;
    let config = SmcConfig::new(n).unwrap().with_filter_moments(true);
    let smc = Smc::new(config);
    let fk = Bootstrap(model.clone());
    let outs: Vec<SmcOutput<f64>> = (0..seeds)
        .map(|s| smc.run(&fk, &Systematic, 1000 + s).unwrap())
        .collect();
    for t in 0..model.ys.len() {
        for (what, exact, get) in [
            (
                "mean",
                kf.means[t],
                (|o: &SmcOutput<f64>, t: usize| o.filter_means[t][0]) as fn(&_, _) -> f64,
            ),
            ("variance", kf.vars[t], |o: &SmcOutput<f64>, t: usize| {
                o.filter_covs[t][0]
            }),
        ] {
            let v: Vec<f64> = outs.iter().map(|o| get(o, t)).collect();
            let m = v.iter().sum::<f64>() / seeds as f64;
            let sd = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (seeds as f64 - 1.0)).sqrt();
            let tol = 5.0 * sd / (seeds as f64).sqrt() + 20.0 * kf.vars[t] / n as f64;
            assert!(
                (m - exact).abs() <= tol,
                "step {t}: PF {what} {m} vs Kalman {exact} (tol {tol})"
            );
        }
    }
    let min_ess = outs
        .iter()
        .flat_map(|o| o.ess.iter().copied())
        .fold(f64::INFINITY, f64::min);
    assert!(min_ess > n as f64 / 20.0, "min ESS {min_ess}");
}

// ---------------------------------------------------------------------------------------------
// Records.
// ---------------------------------------------------------------------------------------------

#[test]
fn records_have_one_entry_per_step() {
    // Moderately informative observations (r = 1), so the ESS sometimes drops below N/2.
    let model = Bootstrap(lg(0.9, 1.0, 1.0, 1.0, 15, 3));
    let steps = 15;
    let n = 200;
    for trigger in [Trigger::Always, Trigger::EssBelow(0.5), Trigger::Never] {
        for moments in [false, true] {
            let c = SmcConfig::new(n)
                .unwrap()
                .with_trigger(trigger)
                .unwrap()
                .with_filter_moments(moments);
            let o = run(&model, c, &Systematic, 9);
            assert_eq!(o.log_likelihood_increments.len(), steps);
            assert_eq!(o.ess.len(), steps);
            assert_eq!(o.resampled.len(), steps);
            assert_eq!(o.resampler_converged.len(), steps);
            assert!(o.resampler_converged.iter().all(|&c| c));
            assert!(!o.resampled[0]);
            let sum = o
                .log_likelihood_increments
                .iter()
                .fold(0.0, |acc, x| acc + x);
            assert_eq!(sum.to_bits(), o.log_likelihood.to_bits());
            assert!(o.ess.iter().all(|&e| (1.0..=n as f64).contains(&e)));
            assert_eq!(o.particles.len(), n);
            assert_eq!(o.particles.dim(), 1);
            assert_eq!(o.log_weights.len(), n);
            let lse = log_sum_exp(&o.log_weights);
            assert!(lse.abs() < 1e-12);
            // The recorded ESS of the last step is that of the final normalised weights.
            let e = diffsmc::ess(&o.log_weights);
            assert!(
                (o.ess[steps - 1] - e).abs() <= 1e-12 * e,
                "{} vs {e}",
                o.ess[steps - 1]
            );
            match trigger {
                Trigger::Always => {
                    assert!(o.resampled[1..].iter().all(|&r| r));
                    assert_eq!(o.n_resampled(), steps - 1);
                }
                Trigger::Never => assert_eq!(o.n_resampled(), 0),
                Trigger::EssBelow(f) => {
                    // Resampling before step t happens exactly when the ESS recorded at t − 1
                    // is below f·N.
                    for t in 1..steps {
                        assert_eq!(o.resampled[t], o.ess[t - 1] < f * n as f64, "step {t}");
                    }
                    assert!(
                        o.n_resampled() > 0 && o.n_resampled() < steps - 1,
                        "{} resampling steps, ESS {:?}",
                        o.n_resampled(),
                        o.ess
                    );
                }
            }
            if moments {
                assert_eq!(o.filter_means.len(), steps);
                assert_eq!(o.filter_covs.len(), steps);
                assert!(o.filter_means.iter().all(|m| m.len() == 1));
                assert!(o.filter_covs.iter().all(|c| c.len() == 1 && c[0] >= 0.0));
            } else {
                assert!(o.filter_means.is_empty());
                assert!(o.filter_covs.is_empty());
            }
        }
    }
}

#[test]
fn filter_moments_are_d_by_d_and_symmetric() {
    let model = coupled_model();
    let c = SmcConfig::new(300).unwrap().with_filter_moments(true);
    let o = run(&model, c, &Stratified, 4);
    for (m, cov) in o.filter_means.iter().zip(&o.filter_covs) {
        assert_eq!(m.len(), 2);
        assert_eq!(cov.len(), 4);
        assert_eq!(cov[1], cov[2]);
        assert!(cov[0] > 0.0 && cov[3] > 0.0 && cov[0] * cov[3] >= cov[1] * cov[1]);
    }
    // The last record is the weighted mean of the final particles.
    let last = o.filter_means.last().unwrap();
    let w = diffsmc::weights_f64(&o.log_weights);
    let m0: f64 = o.particles.iter().zip(&w).map(|(x, w)| x[0] * w).sum();
    assert!((last[0] - m0).abs() < 1e-12 * m0.abs().max(1.0));
}

/// Stop-gradient resampling uses multinomial ancestors and −ln N log-weights, so on `f64` its
/// run is the multinomial run, bit for bit.
#[test]
fn stop_gradient_run_equals_multinomial_run_on_f64() {
    let model = Bootstrap(lg(0.9, 1.0, 0.5, 1.0, 20, 8));
    let c = SmcConfig::new(128).unwrap();
    let a = run(&model, c.clone(), &StopGradient, 5);
    let b = run(&model, c, &Multinomial, 5);
    assert_bit_identical(&a, &b, "stop-gradient vs multinomial");
}

// ---------------------------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------------------------

/// A model whose potential goes wrong at `bad_step`: `value` everywhere (`all`), or only for
/// particles with `x > 0`.
#[derive(Debug)]
struct Broken {
    steps: usize,
    dim: usize,
    bad_step: usize,
    value: f64,
    all: bool,
}

impl Broken {
    fn g(&self, t: usize, x: &[f64]) -> f64 {
        if t == self.bad_step && (self.all || x[0] > 0.0) {
            self.value
        } else {
            -0.5 * x.iter().map(|v| v * v).sum::<f64>()
        }
    }
}

impl FeynmanKac<f64> for Broken {
    fn dim(&self) -> usize {
        self.dim
    }
    fn n_steps(&self) -> usize {
        self.steps
    }
    fn sample_initial(&self, rng: &mut StreamRng, x: &mut [f64]) {
        for v in x {
            *v = standard_normal(rng);
        }
    }
    fn log_potential_initial(&self, x: &[f64]) -> f64 {
        self.g(0, x)
    }
    fn sample_transition(&self, _t: usize, xp: &[f64], rng: &mut StreamRng, x: &mut [f64]) {
        for (v, p) in x.iter_mut().zip(xp) {
            *v = 0.5 * p + standard_normal(rng);
        }
    }
    fn log_potential(&self, t: usize, _xp: &[f64], x: &[f64]) -> f64 {
        self.g(t, x)
    }
}

fn broken(bad_step: usize, value: f64, all: bool) -> Broken {
    Broken {
        steps: 6,
        dim: 1,
        bad_step,
        value,
        all,
    }
}

#[test]
fn degenerate_weights_name_the_step() {
    let c = || SmcConfig::new(64).unwrap();
    let smc_err = |m: &Broken, trigger: Trigger| {
        Smc::new(c().with_trigger(trigger).unwrap())
            .run(m, &Systematic, 1)
            .unwrap_err()
    };
    for trigger in [Trigger::Always, Trigger::EssBelow(0.5), Trigger::Never] {
        for step in [0, 3, 5] {
            // All weights zero.
            assert_eq!(
                smc_err(&broken(step, f64::NEG_INFINITY, true), trigger),
                SmcError::DegenerateWeights { step }
            );
            // NaN for all particles, and for only some of them.
            assert_eq!(
                smc_err(&broken(step, f64::NAN, true), trigger),
                SmcError::DegenerateWeights { step }
            );
            assert_eq!(
                smc_err(&broken(step, f64::NAN, false), trigger),
                SmcError::DegenerateWeights { step }
            );
            // +inf potential.
            assert_eq!(
                smc_err(&broken(step, f64::INFINITY, false), trigger),
                SmcError::DegenerateWeights { step }
            );
        }
    }
    // −inf for only some particles is fine: the others carry on.
    let o = Smc::new(c())
        .run(&broken(3, f64::NEG_INFINITY, false), &Systematic, 1)
        .unwrap();
    assert!(o.log_likelihood.is_finite());
    assert!(o.ess[3] < 64.0);
}

#[test]
fn invalid_configurations_are_typed_errors() {
    assert!(matches!(
        SmcConfig::new(0),
        Err(SmcError::InvalidParameter { .. })
    ));
    for f in [1.5, 0.0, -0.1, f64::NAN, f64::INFINITY] {
        assert!(
            matches!(
                Trigger::ess_below(f),
                Err(SmcError::InvalidParameter { .. })
            ),
            "ess_below({f})"
        );
        assert!(matches!(
            SmcConfig::new(10)
                .unwrap()
                .with_trigger(Trigger::EssBelow(f)),
            Err(SmcError::InvalidParameter { .. })
        ));
    }
    assert_eq!(Trigger::ess_below(1.0), Ok(Trigger::EssBelow(1.0)));
    assert_eq!(Trigger::ess_below(0.25), Ok(Trigger::EssBelow(0.25)));

    let smc = Smc::new(SmcConfig::new(10).unwrap());
    let no_steps = Broken {
        steps: 0,
        ..broken(9, 0.0, true)
    };
    assert!(matches!(
        smc.run(&no_steps, &Systematic, 0),
        Err(SmcError::InvalidParameter { .. })
    ));
    let no_dim = Broken {
        dim: 0,
        ..broken(9, 0.0, true)
    };
    assert!(matches!(
        smc.run(&no_dim, &Systematic, 0),
        Err(SmcError::InvalidParameter { .. })
    ));
    // N = 1 is valid.
    let one = Smc::new(SmcConfig::new(1).unwrap())
        .run(&broken(99, 0.0, true), &Systematic, 0)
        .unwrap();
    assert_eq!(one.particles.len(), 1);
    assert_eq!(one.log_weights, vec![0.0]);
}

#[test]
fn trigger_parses_from_str() {
    assert_eq!("always".parse::<Trigger>(), Ok(Trigger::Always));
    assert_eq!("never".parse::<Trigger>(), Ok(Trigger::Never));
    assert_eq!(" never ".parse::<Trigger>(), Ok(Trigger::Never));
    assert_eq!("ess:0.5".parse::<Trigger>(), Ok(Trigger::EssBelow(0.5)));
    assert_eq!("ess:1".parse::<Trigger>(), Ok(Trigger::EssBelow(1.0)));
    for bad in [
        "",
        "sometimes",
        "ess",
        "ess:",
        "ess:abc",
        "ess:1.5",
        "ess:0",
        "ess:-0.5",
        "ess:NaN",
        "0.5",
    ] {
        assert!(
            matches!(
                bad.parse::<Trigger>(),
                Err(SmcError::InvalidParameter { .. })
            ),
            "`{bad}` should not parse"
        );
    }
}

#[test]
fn resampler_specs_parse_and_build() {
    // Every advertised name parses, prints back to a string that parses to the same spec, and
    // builds for f64 and for dual numbers.
    for name in ResamplerSpec::NAMES {
        let spec: ResamplerSpec = name
            .parse()
            .unwrap_or_else(|e| panic!("`{name}` does not parse: {e}"));
        assert_eq!(spec.to_string().parse::<ResamplerSpec>().unwrap(), spec);
        spec.build::<f64>().unwrap();
        spec.build::<Dual64>().unwrap();
    }
    let expected = [
        ("multinomial", ResamplerSpec::Multinomial),
        ("systematic", ResamplerSpec::Systematic),
        ("stratified", ResamplerSpec::Stratified),
        ("residual", ResamplerSpec::Residual),
        ("ssp", ResamplerSpec::Ssp),
        ("killing", ResamplerSpec::Killing),
        ("stop-gradient", ResamplerSpec::StopGradient),
    ];
    for (name, spec) in &expected {
        assert_eq!(name.parse::<ResamplerSpec>().as_ref(), Ok(spec));
        assert_eq!(spec.to_string(), *name);
        assert_eq!(spec.build::<f64>().unwrap().name(), *name);
        assert!(ResamplerSpec::NAMES.contains(name));
    }
    // Aliases, case and whitespace.
    for alias in ["stopgrad", "stop_gradient", "Stop-Gradient"] {
        assert_eq!(alias.parse(), Ok(ResamplerSpec::StopGradient));
    }
    assert_eq!(" Systematic ".parse(), Ok(ResamplerSpec::Systematic));
    // Unknown names and options on a resampler without knobs are BadSpec errors that say why.
    for bad in [
        "nonsense",
        "",
        "systematic:foo=1",
        "ssp:x",
        "multinomial:n=3",
    ] {
        match bad.parse::<ResamplerSpec>() {
            Err(SmcError::BadSpec { spec, reason }) => {
                assert_eq!(spec, bad.trim());
                assert!(!reason.is_empty());
            }
            other => panic!("`{bad}` gave {other:?}"),
        }
    }
    let err = "nonsense".parse::<ResamplerSpec>().unwrap_err().to_string();
    assert!(err.contains("systematic"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Dual numbers.
// ---------------------------------------------------------------------------------------------

fn rel_close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * a.abs().max(b.abs()).max(1e-300)
}

/// The driver runs on `Dual64` and `DualSVec64<2>` with the parameters `(a, r)` as dual
/// numbers. The value part of the dual log-likelihood equals the `f64` run's to 1e-12
/// relative. It is not bit-identical in general: num-dual computes `x / y` as
/// `x · (1/y)` (one more rounding), and functions of duals may evaluate their value part
/// slightly differently; a last-bit difference then propagates. (Resampling decisions are
/// taken on these values, so a last-bit difference could in principle flip a decision and
/// change the path; with fixed seeds this does not happen here, and it would show up as a gross
/// mismatch, not a small one.)
///
/// The derivatives are checked against central finite differences of the same seeded `f64`
/// estimator (index resamplers copy particles, so for a fixed seed the estimate is a smooth
/// function of θ between ancestor switches, and a step of 1e-6 does not cross one here), and the
/// vector dual against the scalar dual per direction.
#[test]
fn dual_runs_match_f64_runs() {
    let (a0, r0) = (0.8, 0.7);
    let base = lg(a0, 1.0, r0, 1.0, 30, 17);
    let with = |a: f64, r: f64| Lg {
        a,
        r,
        ..base.clone()
    };
    for (trigger, resampler) in [
        (Trigger::Always, &Systematic as &dyn Resampler<f64>),
        (Trigger::EssBelow(0.5), &Systematic),
        (Trigger::Always, &Residual),
    ] {
        let config = SmcConfig::new(64).unwrap().with_trigger(trigger).unwrap();
        let smc = Smc::new(config.clone());
        let seed = 23;
        let f = |a: f64, r: f64| {
            smc.run(&Bootstrap(with(a, r)), resampler, seed)
                .unwrap()
                .log_likelihood
        };
        let l = f(a0, r0);
        let name = resampler.name();
        let rd: Box<dyn Resampler<Dual64>> =
            name.parse::<ResamplerSpec>().unwrap().build().unwrap();
        let rv: Box<dyn Resampler<DualSVec64<2>>> =
            name.parse::<ResamplerSpec>().unwrap().build().unwrap();

        // Dual64 in a, then in r.
        let da = Lg {
            a: Dual64::new(a0, 1.0),
            r: Dual64::from(r0),
            q: base.q,
            p0: base.p0,
            ys: base.ys.clone(),
        };
        let dr = Lg {
            a: Dual64::from(a0),
            r: Dual64::new(r0, 1.0),
            ..da.clone()
        };
        let out_a = smc.run(&Bootstrap(da), &rd, seed).unwrap();
        let out_r = smc.run(&Bootstrap(dr), &rd, seed).unwrap();
        for o in [&out_a, &out_r] {
            assert!(
                rel_close(o.log_likelihood.re, l, 1e-12),
                "{name} {trigger:?}: dual value {} vs f64 {l}",
                o.log_likelihood.re
            );
            assert_eq!(o.resampled, out_a.resampled);
        }
        let h = 1e-6;
        let fd_a = (f(a0 + h, r0) - f(a0 - h, r0)) / (2.0 * h);
        let fd_r = (f(a0, r0 + h) - f(a0, r0 - h)) / (2.0 * h);
        for (what, dual, fd) in [
            ("a", out_a.log_likelihood.eps, fd_a),
            ("r", out_r.log_likelihood.eps, fd_r),
        ] {
            assert!(
                (dual - fd).abs() <= 1e-6 * fd.abs().max(1.0),
                "{name} {trigger:?}: d/d{what}: dual {dual} vs finite difference {fd}"
            );
        }

        // DualSVec64<2> in (a, r) at once.
        let dv = Lg {
            a: DualSVec64::<2>::from_re(a0).derivative(0),
            r: DualSVec64::<2>::from_re(r0).derivative(1),
            q: base.q,
            p0: base.p0,
            ys: base.ys.clone(),
        };
        let out_v = smc.run(&Bootstrap(dv), &rv, seed).unwrap();
        let g = out_v
            .log_likelihood
            .eps
            .0
            .map(|m| [m[0], m[1]])
            .expect("derivative present");
        assert!(rel_close(out_v.log_likelihood.re, l, 1e-12));
        assert!(rel_close(g[0], out_a.log_likelihood.eps, 1e-10), "{g:?}");
        assert!(rel_close(g[1], out_r.log_likelihood.eps, 1e-10), "{g:?}");
        assert_eq!(out_v.resampled, out_a.resampled);
        // The dual run records moments too, with values matching the f64 run's.
        let fm = Smc::new(config.clone().with_filter_moments(true));
        let mf = fm.run(&Bootstrap(with(a0, r0)), resampler, seed).unwrap();
        let md = fm
            .run(
                &Bootstrap(Lg {
                    a: Dual64::new(a0, 1.0),
                    r: Dual64::from(r0),
                    q: base.q,
                    p0: base.p0,
                    ys: base.ys.clone(),
                }),
                &rd,
                seed,
            )
            .unwrap();
        for (x, y) in mf.filter_means.iter().zip(&md.filter_means) {
            assert!((x[0] - y[0].re).abs() <= 1e-10 * x[0].abs().max(1.0));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Models that need index resampling.
// ---------------------------------------------------------------------------------------------

/// The 1-D model of [`Lg`] as a Feynman–Kac model that declares it needs index resampling.
struct NeedsCopies(Bootstrap<Lg<f64>>);

impl FeynmanKac<f64> for NeedsCopies {
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn n_steps(&self) -> usize {
        self.0.n_steps()
    }
    fn sample_initial(&self, rng: &mut StreamRng, x: &mut [f64]) {
        self.0.sample_initial(rng, x)
    }
    fn log_potential_initial(&self, x: &[f64]) -> f64 {
        self.0.log_potential_initial(x)
    }
    fn sample_transition(&self, t: usize, xp: &[f64], rng: &mut StreamRng, x: &mut [f64]) {
        self.0.sample_transition(t, xp, rng, x)
    }
    fn log_potential(&self, t: usize, xp: &[f64], x: &[f64]) -> f64 {
        self.0.log_potential(t, xp, x)
    }
    fn requires_index_resampling(&self) -> Option<&'static str> {
        Some("test reason")
    }
}

/// A model that needs index resampling runs with every index resampler (bit-identical to the
/// same model without the requirement) and refuses the ones that move particles, also through
/// a reference; a model without the requirement takes every resampler.
#[test]
fn models_that_need_copies_refuse_moving_resamplers() {
    let inner = Bootstrap(lg(0.9, 0.5, 0.3, 1.0, 20, 3));
    let needs = NeedsCopies(inner.clone());
    let smc = Smc::new(SmcConfig::new(64).unwrap());
    let mut moving = Vec::new();
    for name in ResamplerSpec::NAMES {
        let r = name
            .parse::<ResamplerSpec>()
            .unwrap()
            .build::<f64>()
            .unwrap();
        let free: SmcOutput<f64> = smc.run(&inner, &*r, 8).unwrap();
        if r.copies_by_index() {
            let out: SmcOutput<f64> = smc.run(&needs, &*r, 8).unwrap();
            assert_bit_identical(&out, &free, name);
        } else {
            moving.push(r.name());
            for res in [
                smc.run::<f64, _, _>(&needs, &*r, 8),
                smc.run(&&needs, &*r, 8),
            ] {
                let err = res.unwrap_err();
                assert_eq!(
                    err,
                    SmcError::IncompatibleResampler {
                        resampler: r.name(),
                        reason: "test reason"
                    }
                );
                assert!(err.to_string().contains("moves particles"), "{err}");
            }
        }
    }
    let kinds: Vec<&str> = moving
        .iter()
        .map(|n| n.split(':').next().unwrap())
        .collect();
    assert_eq!(kinds, ["diffusion", "ot", "gumbel"]);
}
