//! The Kalman filter against the external reference vectors in `../shared/reference/`
//! (data and Kalman values computed by the paper authors' JAX float64 implementation):
//! negative log-likelihood, its gradient (by dual numbers), a 5×5 grid, filtering moments.

use std::path::PathBuf;

use diffsmc_lgssm::Lgssm;
use nalgebra::{Const, U1};
use num_dual::{Derivative, Dual64, DualSVec64, DualStruct};

/// The shared reference folder: the worktree root's parent holds `shared/`. Missing files
/// fail the test with a message, never skip it.
fn reference_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/reference"
    ));
    assert!(
        dir.is_dir(),
        "reference vectors not found at {} (expected the shared folder `shared/reference` \
         next to the worktree root); these tests need them and do not skip",
        dir.display()
    );
    dir
}

/// Reads a CSV with a header row into its header and numeric rows.
fn read_csv(name: &str) -> (Vec<String>, Vec<Vec<f64>>) {
    let path = reference_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read reference file {}: {e}", path.display()));
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines
        .next()
        .unwrap_or_else(|| panic!("{} is empty", path.display()))
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let rows = lines
        .map(|l| {
            l.split(',')
                .map(|v| {
                    v.trim()
                        .parse::<f64>()
                        .unwrap_or_else(|e| panic!("{}: bad number {v:?}: {e}", path.display()))
                })
                .collect()
        })
        .collect();
    (header, rows)
}

fn observations() -> Vec<Vec<f64>> {
    let (header, rows) = read_csv("lgssm_mc0_ys.csv");
    assert_eq!(header, ["y"]);
    assert_eq!(rows.len(), 129, "the reference series has 129 observations");
    rows
}

const NLL: f64 = 217.22363244884755;
const GRAD: [f64; 2] = [7.611408638251144, -4.150701400884636];
const TOL: f64 = 1e-10;

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

/// θ as a 2-lane dual: lane 0 is ∂/∂θ1, lane 1 is ∂/∂θ2.
fn theta_dual(t1: f64, t2: f64) -> (DualSVec64<2>, DualSVec64<2>) {
    let lane = |i| Derivative::derivative_generic(Const::<2>, U1, i);
    (DualSVec64::new(t1, lane(0)), DualSVec64::new(t2, lane(1)))
}

fn nll_and_grad(t1: f64, t2: f64, d: usize, ys: &[Vec<f64>]) -> (f64, [f64; 2]) {
    let (a, b) = theta_dual(t1, t2);
    let ll = Lgssm::paper(a, b, d)
        .unwrap()
        .kalman(ys)
        .unwrap()
        .log_likelihood;
    let g = ll.eps.unwrap_generic(Const::<2>, U1);
    (-ll.re(), [-g[0], -g[1]])
}

#[test]
fn nll_and_gradient_at_reference_theta() {
    let ys = observations();
    let ll = Lgssm::paper(0.5, 1.0, 1)
        .unwrap()
        .kalman(&ys)
        .unwrap()
        .log_likelihood;
    assert!(close(-ll, NLL, TOL), "f64 NLL {} vs {NLL}", -ll);
    let (nll, g) = nll_and_grad(0.5, 1.0, 1, &ys);
    assert!(close(nll, NLL, TOL), "dual NLL {nll} vs {NLL}");
    // The value part of the dual run agrees with the f64 run to rounding.
    assert!((nll + ll).abs() < 1e-11);
    for k in 0..2 {
        assert!(
            close(g[k], GRAD[k], TOL),
            "dNLL/dθ{} {} vs {}",
            k + 1,
            g[k],
            GRAD[k]
        );
    }
}

#[test]
fn dual64_gives_each_partial_derivative() {
    let ys = observations();
    let ll1 = Lgssm::paper(Dual64::new(0.5, 1.0), Dual64::from(1.0), 1)
        .unwrap()
        .kalman(&ys)
        .unwrap()
        .log_likelihood;
    let ll2 = Lgssm::paper(Dual64::from(0.5), Dual64::new(1.0, 1.0), 1)
        .unwrap()
        .kalman(&ys)
        .unwrap()
        .log_likelihood;
    assert!(close(-ll1.re, NLL, TOL));
    assert!(close(-ll1.eps, GRAD[0], TOL), "{} vs {}", -ll1.eps, GRAD[0]);
    assert!(close(-ll2.eps, GRAD[1], TOL), "{} vs {}", -ll2.eps, GRAD[1]);
}

#[test]
fn nll_and_gradient_on_the_5x5_grid() {
    let ys = observations();
    let (header, rows) = read_csv("lgssm_mc0_kalman_grid.csv");
    assert_eq!(header, ["p1", "p2", "kf_nll", "dnll_dp1", "dnll_dp2"]);
    assert_eq!(rows.len(), 25);
    let mut worst = 0.0_f64;
    for row in &rows {
        let (nll, g) = nll_and_grad(row[0], row[1], 1, &ys);
        for (got, want) in [(nll, row[2]), (g[0], row[3]), (g[1], row[4])] {
            assert!(
                close(got, want, TOL),
                "θ = ({}, {}): {got} vs {want}",
                row[0],
                row[1]
            );
            worst = worst.max((got - want).abs() / want.abs().max(1.0));
        }
    }
    eprintln!("grid: worst relative error {worst:e}");
}

#[test]
fn filtering_means_and_variances() {
    let ys = observations();
    let (header, rows) = read_csv("lgssm_mc0_kalman_filter.csv");
    assert_eq!(header, ["mf", "vf"]);
    assert_eq!(rows.len(), ys.len());
    let out = Lgssm::paper(0.5, 1.0, 1).unwrap().kalman(&ys).unwrap();
    for (t, row) in rows.iter().enumerate() {
        assert!(
            close(out.filter_means[t][0], row[0], TOL),
            "mean at step {t}: {} vs {}",
            out.filter_means[t][0],
            row[0]
        );
        assert!(
            close(out.filter_covs[t][0], row[1], TOL),
            "variance at step {t}: {} vs {}",
            out.filter_covs[t][0],
            row[1]
        );
    }
}

/// In dimension d with the series copied into every coordinate, the model factorises into
/// d independent copies: NLL and gradient are d times the scalar ones. Exercises dx = dy > 1
/// against the same external values.
#[test]
fn independent_copies_in_dimension_three() {
    let ys: Vec<Vec<f64>> = observations().into_iter().map(|y| vec![y[0]; 3]).collect();
    let (nll, g) = nll_and_grad(0.5, 1.0, 3, &ys);
    assert!(close(nll, 3.0 * NLL, TOL), "{nll} vs {}", 3.0 * NLL);
    for k in 0..2 {
        assert!(close(g[k], 3.0 * GRAD[k], TOL));
    }
}

/// The Kalman gradient through `PaperParams` (the `LinearGaussianParametric` path used by
/// `fit`) equals the reference gradient, and equals central finite differences of the exact
/// NLL (h = 1e-6: truncation ~1e-12, round-off ~217·1e-16/1e-6 ≈ 2e-8, tolerance 1e-6).
#[test]
fn kalman_value_and_gradient_through_paper_params() {
    let ys = observations();
    let p = diffsmc_lgssm::PaperParams::new(1, ys).unwrap();
    let (nll, g) = diffsmc::grad::gradient(
        &diffsmc::grad::KalmanNll(&p),
        &[0.5, 1.0],
        &diffsmc::grad::GradOptions::default(),
    )
    .unwrap();
    assert!((nll - 217.22363244884755).abs() < 1e-10);
    assert!((g[0] - 7.611408638251144).abs() < 1e-9);
    assert!((g[1] + 4.150701400884636).abs() < 1e-9);
    for i in 0..2 {
        let h = 1e-6;
        let mut tp = [0.5, 1.0];
        let mut tm = tp;
        tp[i] += h;
        tm[i] -= h;
        let fd = (diffsmc::grad::value(&diffsmc::grad::KalmanNll(&p), &tp).unwrap()
            - diffsmc::grad::value(&diffsmc::grad::KalmanNll(&p), &tm).unwrap())
            / (2.0 * h);
        assert!((fd - g[i]).abs() < 1e-6, "param {i}: fd {fd} vs {}", g[i]);
    }
}
