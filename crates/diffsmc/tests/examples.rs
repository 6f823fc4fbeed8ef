//! Runs the main logic of every example of this crate, at sizes small enough for CI, and
//! checks what it computed (the examples themselves run at their full sizes with
//! `cargo run --release -p diffsmc --example NAME`).

#[allow(dead_code)]
#[path = "../examples/custom_model.rs"]
mod custom_model;

#[allow(dead_code)]
#[path = "../examples/compare_resamplers.rs"]
mod compare_resamplers;

#[allow(dead_code)]
#[path = "../examples/gradient_check.rs"]
mod gradient_check;

/// A short stochastic-volatility fit: L-BFGS converges, and the seeded NLL at the estimate is
/// no higher than at the start or at the truth (the estimate minimises that same function),
/// with a stationary φ and a positive σ.
#[test]
fn custom_model_fits() {
    let o = custom_model::Options {
        steps: 150,
        particles: 24,
        diffusion_steps: 2,
        seed: 4,
        max_iterations: 40,
    };
    let s = custom_model::run(&o).unwrap();
    assert!(s.converged, "{s:?}");
    assert!(s.estimate.iter().all(|v| v.is_finite()), "{s:?}");
    assert!(s.nll_estimate <= s.nll_start, "{s:?}");
    assert!(s.nll_estimate <= s.nll_truth, "{s:?}");
    assert!(s.estimate[1].abs() < 1.0 && s.estimate[2] > 0.0, "{s:?}");
    assert!(s.filter_rmse.is_finite() && s.filter_rmse < 1.5, "{s:?}");
}

/// The simulator draws what the model filters: at the truth the filter's log-likelihood is
/// close to its average over seeds, and the simulated log-variances have the AR(1) moments.
#[test]
fn custom_model_simulator_has_the_ar1_moments() {
    let (mu, phi, sigma) = (-1.0, 0.9, 0.35);
    let (xs, ys) = custom_model::simulate(mu, phi, sigma, 20_000, 9);
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let stat_var = sigma * sigma / (1.0 - phi * phi);
    // The sample mean of an AR(1) has variance ≈ stat_var (1 + φ)/(1 − φ) / n: sd ≈ 0.025 here,
    // so 0.15 is six sds.
    assert!((mean - mu).abs() < 0.15, "mean {mean}");
    assert!(
        (var / stat_var - 1.0).abs() < 0.15,
        "var {var} vs {stat_var}"
    );
    // E[y²] = E[e^x] = e^{μ + var/2}.
    let m2 = ys.iter().map(|y| y * y).sum::<f64>() / n;
    let expect = (mu + stat_var / 2.0).exp();
    assert!((m2 / expect - 1.0).abs() < 0.15, "E[y²] {m2} vs {expect}");
}

/// A few seeds with small N: every known spec gives a finite mean log-likelihood within a few
/// nats of the Kalman value, and unknown specs are skipped, not fatal.
#[test]
fn compare_resamplers_runs_every_spec() {
    let c = compare_resamplers::compare(16, 3, compare_resamplers::SPECS).unwrap();
    assert!(c.kalman.is_finite());
    assert_eq!(
        c.rows.len() + c.skipped.len(),
        compare_resamplers::SPECS.len()
    );
    assert!(c.rows.len() >= 14);
    for r in &c.rows {
        assert_eq!(r.failures, 0, "{r:?}");
        assert!(
            (r.mean - c.kalman).abs() < 25.0,
            "{r:?} vs Kalman {}",
            c.kalman
        );
        assert!(r.sd.is_finite() && r.ms_per_run > 0.0, "{r:?}");
    }
    let bogus = compare_resamplers::compare(8, 2, &["systematic", "no-such-resampler"]).unwrap();
    assert_eq!(bogus.rows.len(), 1);
    assert_eq!(bogus.skipped[0].0, "no-such-resampler");
    compare_resamplers::print(&c, 16, 3);
}

#[test]
fn gradient_check_verdicts() {
    let r = gradient_check::run(40, 16).unwrap();
    assert!(r.diffusion.passed(), "{}", r.diffusion);
    assert!(r.no_resampling.passed(), "{}", r.no_resampling);
    assert!(!r.broken.passed(), "{}", r.broken);
    assert_eq!(r.broken.failures(), vec![0]);
}

#[allow(dead_code)]
#[path = "../examples/guided_filter.rs"]
mod guided_filter;

/// The proposals example at a small size: the optimal-proposal filters' log-likelihood spread
/// is well below the bootstrap's at the same N (T = 50, N = 32, 60 seeds; measured ratio of
/// sds ≈ 0.2, asserted < 0.6), and every mean error is small against the bootstrap's spread.
#[test]
fn guided_filter_example_reduces_the_spread() {
    let (_, rows) = guided_filter::run(50, 60, &[32]).unwrap();
    let sd = |a: &str| rows.iter().find(|r| r.algorithm == a).unwrap().sd;
    let b = sd("bootstrap");
    assert!(
        sd("guided") < 0.6 * b && sd("auxiliary") < 0.6 * b,
        "{rows:?}"
    );
    assert!(
        rows.iter().all(|r| r.mean_error.abs() < 3.0 * b),
        "{rows:?}"
    );
}

#[path = "../examples/smoothing.rs"]
mod smoothing;

/// The smoothing example at a small size: every smoother beats the filter against RTS, and
/// the PaRIS score has the sign and rough size of the exact score (N = 200, T = 40: the
/// score's Monte Carlo sd is ~0.5 and ~1.2 per component, measured in tests/smoothing.rs).
#[test]
fn smoothing_example_smoothers_beat_the_filter() {
    let s = smoothing::run(&smoothing::Options {
        particles: 200,
        steps: 40,
        seed: 1,
    })
    .unwrap();
    let filter = s.rows[0].mean_rmse;
    for r in &s.rows[1..] {
        assert!(r.mean_rmse < filter, "{r:?} vs filter {filter}");
    }
    for k in 0..2 {
        assert!((s.score[k] - s.kalman_score[k]).abs() < 4.0, "{s:?}");
    }
}
