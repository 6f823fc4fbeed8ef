//! The bootstrap particle filter on the LGSSM approaches the exact Kalman values as the
//! number of particles grows.
//!
//! Tolerances come from the CLT for particle filters and from the spread measured over 20
//! seeds (recorded below): `log Ẑ_N − log Z` has standard deviation `σ_N ≈ sqrt(c / N)`
//! and bias `≈ −σ_N² / 2`; the filtering mean error `m_N − m` is `O(sqrt(v / N))`, so the
//! standardised error `z_t = sqrt(N) (m_N,t − m_t) / sqrt(v_t)` has an `N`-free spread
//! (`≥ 1`, inflated by resampling); the relative variance error is `O(sqrt(2 / N))`.
//! Seeds are fixed, so the tests are deterministic; the bounds are several standard
//! deviations wide so that they would also hold for other seeds with high probability.

use diffsmc::prelude::*;
use diffsmc_lgssm::{Lgssm, LgssmData};

fn reference_observations() -> Vec<Vec<f64>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/reference/lgssm_mc0_ys.csv"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("reference observations not found at {path} (the shared folder next to the worktree root): {e}")
    });
    let ys: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| vec![l.trim().parse().expect("a number")])
        .collect();
    assert_eq!(ys.len(), 129);
    ys
}

/// Per run: log-likelihood error, RMS over steps and coordinates of the standardised mean
/// error `z_t`, mean over steps of `max_k |m_N − m|`, RMS of the relative variance error.
struct RunStats {
    ll_err: f64,
    z_rms: f64,
    mean_abs_err: f64,
    var_rel_rms: f64,
}

fn run(data: &LgssmData<f64>, n: usize, seed: u64) -> RunStats {
    let kf = data.kalman().unwrap();
    let config = SmcConfig::new(n).unwrap().with_filter_moments(true);
    let pf: SmcOutput<f64> = Smc::new(config)
        .run(&Bootstrap(data), &Systematic, seed)
        .unwrap();
    let d = data.model().state_dim();
    let steps = data.len();
    let (mut z2, mut abs, mut v2) = (0.0, 0.0, 0.0);
    for t in 0..steps {
        let mut worst: f64 = 0.0;
        for k in 0..d {
            let v = kf.filter_covs[t][k * d + k];
            let e = pf.filter_means[t][k] - kf.filter_means[t][k];
            z2 += e * e * n as f64 / v;
            worst = worst.max(e.abs());
            let r = pf.filter_covs[t][k * d + k] / v - 1.0;
            v2 += r * r;
        }
        abs += worst;
    }
    let cells = (steps * d) as f64;
    RunStats {
        ll_err: pf.log_likelihood - kf.log_likelihood,
        z_rms: (z2 / cells).sqrt(),
        mean_abs_err: abs / steps as f64,
        var_rel_rms: (v2 / cells).sqrt(),
    }
}

fn rms(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x * x, n + 1));
    (s / n as f64).sqrt()
}

/// The paper's model on the reference data (d = 1, T = 129).
///
/// Measured over seeds 0..20: σ_256 ≈ 1.12, σ_4096 ≈ 0.24 for the log-likelihood error
/// (so c ≈ 320 and Var ∝ 1/N holds); RMS z ≤ 1.85 at both N; RMS relative variance error
/// ≤ 0.16 at N = 256, ≤ 0.034 at N = 4096.
#[test]
fn bootstrap_pf_converges_to_kalman_on_reference_data() {
    let data = Lgssm::paper(0.5, 1.0, 1)
        .unwrap()
        .with_data(reference_observations())
        .unwrap();
    let small: Vec<RunStats> = (0..16).map(|s| run(&data, 256, s)).collect();
    let large: Vec<RunStats> = (100..108).map(|s| run(&data, 4096, s)).collect();

    // Log-likelihood. Each run within 6 σ_4096 ≈ 1.5; the mean of 8 runs within
    // 4 σ_4096 / sqrt(8) + |bias| ≈ 0.35 + 0.03 → 0.4.
    for r in &large {
        assert!(r.ll_err.abs() < 1.5, "N = 4096: log-lik error {}", r.ll_err);
    }
    let mean_large = large.iter().map(|r| r.ll_err).sum::<f64>() / large.len() as f64;
    assert!(mean_large.abs() < 0.4, "mean log-lik error {mean_large}");
    // RMS error shrinks with N: Var ∝ 1/N predicts a ratio of 1/4 between N = 256 and 4096;
    // require 1/2 (an F(8, 16) ratio below 1/4 has probability ≈ 1%).
    let (rms_small, rms_large) = (
        rms(small.iter().map(|r| r.ll_err)),
        rms(large.iter().map(|r| r.ll_err)),
    );
    assert!(
        rms_large < 0.5 * rms_small,
        "log-lik RMS error {rms_small} (N = 256) → {rms_large} (N = 4096)"
    );

    // Filtering means: the √N-standardised error stays O(1) at both N (measured ≤ 1.85;
    // bound 3), so the absolute error shrinks like 1/√N: require at least a factor 2
    // (4 expected) in the mean absolute error.
    for r in small.iter().chain(&large) {
        assert!(r.z_rms < 3.0, "standardised mean error {}", r.z_rms);
    }
    let avg = |v: &[RunStats]| v.iter().map(|r| r.mean_abs_err).sum::<f64>() / v.len() as f64;
    assert!(
        avg(&large) < 0.5 * avg(&small),
        "mean abs error {} (N = 256) → {} (N = 4096)",
        avg(&small),
        avg(&large)
    );
    // Filtering variances: RMS relative error O(sqrt(2κ/N)); measured ≤ 0.034 at 4096.
    for r in &large {
        assert!(
            r.var_rel_rms < 0.1,
            "variance relative error {}",
            r.var_rel_rms
        );
    }
}

/// dx = dy = 2 with fully and partially missing observations, simulated data (T = 60).
///
/// Measured over seeds 0..20: σ_4096 ≈ 0.37 for the log-likelihood error, RMS z ≤ 3.05,
/// RMS relative variance error ≤ 0.056 at N = 4096.
#[test]
fn bootstrap_pf_converges_to_kalman_in_two_dimensions_with_missing_data() {
    let model = Lgssm::paper(0.5, 1.0, 2).unwrap();
    let (_, mut ys) = model.simulate(60, 11);
    ys[5] = vec![f64::NAN; 2];
    ys[10][0] = f64::NAN;
    ys[20][1] = f64::NAN;
    let data = model.with_data(ys).unwrap();
    let small: Vec<RunStats> = (0..8).map(|s| run(&data, 256, s)).collect();
    let large: Vec<RunStats> = (200..204).map(|s| run(&data, 4096, s)).collect();
    for r in &large {
        // 6 σ_4096.
        assert!(r.ll_err.abs() < 2.2, "N = 4096: log-lik error {}", r.ll_err);
        assert!(
            r.var_rel_rms < 0.15,
            "variance relative error {}",
            r.var_rel_rms
        );
    }
    for r in small.iter().chain(&large) {
        assert!(r.z_rms < 4.5, "standardised mean error {}", r.z_rms);
    }
    let avg = |v: &[RunStats]| v.iter().map(|r| r.mean_abs_err).sum::<f64>() / v.len() as f64;
    assert!(avg(&large) < 0.5 * avg(&small));
}

/// The particle filter runs on dual numbers through the model (reparameterised moves): the
/// value part agrees with the f64 run to rounding and the derivative is finite.
#[test]
fn bootstrap_pf_runs_on_dual_numbers() {
    use num_dual::Dual64;
    let ys = reference_observations();
    let data = Lgssm::paper(0.5, 1.0, 1)
        .unwrap()
        .with_data(ys.clone())
        .unwrap();
    let data_d = Lgssm::paper(Dual64::new(0.5, 1.0), Dual64::from(1.0), 1)
        .unwrap()
        .with_data(ys)
        .unwrap();
    let smc = Smc::new(SmcConfig::new(128).unwrap());
    let f: SmcOutput<f64> = smc.run(&Bootstrap(&data), &Systematic, 5).unwrap();
    let d: SmcOutput<Dual64> = smc.run(&Bootstrap(&data_d), &Systematic, 5).unwrap();
    assert!((d.log_likelihood.re - f.log_likelihood).abs() < 1e-9);
    assert!(d.log_likelihood.eps.is_finite());
}
