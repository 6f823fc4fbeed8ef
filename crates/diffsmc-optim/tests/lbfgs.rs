//! Behavioural tests of L-BFGS.

mod common;

use common::{dist, quadratic, rosenbrock, rotated_matrix};
use diffsmc_optim::{Control, IterationInfo, Lbfgs, Minimizer, OptimError, StopReason, Trace};
use proptest::prelude::*;

#[test]
fn rosenbrock_converges_within_100_iterations() {
    let mut trace = Trace::new();
    let r = Lbfgs::new()
        .minimize_with_observer(rosenbrock, &[-1.2, 1.0], &mut trace)
        .unwrap();
    assert!(r.converged, "{r:?}");
    assert!(r.iterations <= 100);
    assert!(dist(&r.theta, &[1.0, 1.0]) < 1e-4, "{r:?}");
    assert!(r.value < 1e-8);
    // Accepted iterates satisfy sufficient decrease, so the loss trace is monotone.
    let values = trace.values();
    assert!(values.windows(2).all(|w| w[1] < w[0]), "{values:?}");
    assert_eq!(trace.len(), r.iterations + 1);
}

#[test]
fn ill_conditioned_rotated_quadratic_converges() {
    // Eigenvalues log-spaced from 1 to 1e4 (condition number 1e4), rotated by a Householder
    // reflection so the problem is not axis-aligned.
    let n = 10;
    let eigs: Vec<f64> = (0..n)
        .map(|i| 10f64.powf(4.0 * i as f64 / (n - 1) as f64))
        .collect();
    let v: Vec<f64> = (0..n).map(|i| 1.0 + 0.3 * i as f64).collect();
    let a = rotated_matrix(&eigs, &v);
    let c: Vec<f64> = (0..n).map(|i| (i as f64 * 0.7).sin()).collect();
    let lbfgs = Lbfgs::new()
        .with_gradient_tolerance(1e-8)
        .unwrap()
        .with_function_tolerance(0.0)
        .unwrap()
        .with_step_tolerance(0.0)
        .unwrap()
        .with_max_iterations(200)
        .unwrap();
    let r = lbfgs
        .minimize(|x: &[f64]| quadratic(&a, &c, x), &[0.0; 10])
        .unwrap();
    assert!(r.converged, "{r:?}");
    assert_eq!(r.reason, StopReason::GradientTolerance);
    // ‖x − c‖ ≤ ‖g‖₂/λ_min ≤ √n · 1e-8.
    assert!(dist(&r.theta, &c) < 1e-7, "{:?}", dist(&r.theta, &c));

    // With a nearly exact line search (c2 = 0.1) and history ≥ n, L-BFGS on a quadratic
    // behaves like conjugate gradients and terminates in about n iterations; this pins down
    // the correctness of the two-loop recursion and of the zoom phase.
    let r = Lbfgs::new()
        .with_wolfe(1e-4, 0.1)
        .unwrap()
        .with_history_size(20)
        .unwrap()
        .with_gradient_tolerance(1e-8)
        .unwrap()
        .minimize(|x: &[f64]| quadratic(&a, &c, x), &[0.0; 10])
        .unwrap();
    assert_eq!(r.reason, StopReason::GradientTolerance, "{r:?}");
    assert!(r.iterations <= n + 2, "{r:?}");
    assert!(dist(&r.theta, &c) < 1e-7);
}

/// `f = Σ ½(x_i − 1)² + ¼(x_i − 1)⁴` inside the box `|x_i| ≤ 2`; outside, `outside` decides
/// what is returned. Counts the non-finite evaluations.
fn boxed_objective(
    outside: fn(&[f64]) -> (f64, Vec<f64>),
    nonfinite: &mut usize,
) -> impl FnMut(&[f64]) -> (f64, Vec<f64>) + '_ {
    move |x: &[f64]| {
        if x.iter().any(|xi| xi.abs() > 2.0) {
            *nonfinite += 1;
            return outside(x);
        }
        let value = x
            .iter()
            .map(|xi| 0.5 * (xi - 1.0).powi(2) + 0.25 * (xi - 1.0).powi(4))
            .sum();
        let grad = x.iter().map(|xi| (xi - 1.0) + (xi - 1.0).powi(3)).collect();
        (value, grad)
    }
}

fn check_backtracks_and_converges(outside: fn(&[f64]) -> (f64, Vec<f64>)) {
    let mut nonfinite = 0;
    let mut seen_nan_theta = false;
    let mut observer = |info: &IterationInfo<'_>| {
        seen_nan_theta |= info.theta.iter().any(|t| !t.is_finite()) || !info.value.is_finite();
    };
    // A large first-step cap makes the first trial step the full −∇f from (−1, −1.5), i.e.
    // (−1, −1.5) + (10, 18.1) — far outside the admissible box.
    let r = Lbfgs::new()
        .with_max_initial_step(100.0)
        .unwrap()
        .minimize_with_observer(
            boxed_objective(outside, &mut nonfinite),
            &[-1.0, -1.5],
            &mut observer,
        )
        .unwrap();
    assert!(nonfinite > 0, "the scenario must hit the non-finite region");
    assert!(!seen_nan_theta, "a non-finite point was accepted");
    assert!(r.theta.iter().all(|t| t.is_finite()));
    assert!(r.converged, "{r:?}");
    assert!(dist(&r.theta, &[1.0, 1.0]) < 1e-5, "{r:?}");
}

#[test]
fn nan_beyond_radius_backtracks_and_converges() {
    check_backtracks_and_converges(|x| (f64::NAN, vec![f64::NAN; x.len()]));
}

#[test]
fn infinite_value_beyond_radius_backtracks_and_converges() {
    check_backtracks_and_converges(|x| (f64::INFINITY, vec![0.0; x.len()]));
}

#[test]
fn nan_gradient_with_finite_value_backtracks_and_converges() {
    // A finite (even attractive) value with a NaN gradient must not be accepted either.
    check_backtracks_and_converges(|x| (-1e6, vec![f64::NAN; x.len()]));
}

#[test]
fn nan_at_start_is_a_typed_stop_reason() {
    let mut calls = 0;
    let f = |x: &[f64]| {
        calls += 1;
        (f64::NAN, vec![0.0; x.len()])
    };
    let r = Lbfgs::new().minimize(f, &[0.5, 0.5]).unwrap();
    assert_eq!(r.reason, StopReason::NonFiniteStart);
    assert!(!r.converged);
    assert_eq!(r.iterations, 0);
    assert_eq!(r.evaluations, 1);
    assert_eq!(r.theta, vec![0.5, 0.5]);
    assert_eq!(calls, 1);

    // Non-finite gradient at the start: same.
    let r = Lbfgs::new()
        .minimize(|_: &[f64]| (1.0, vec![f64::INFINITY]), &[0.0])
        .unwrap();
    assert_eq!(r.reason, StopReason::NonFiniteStart);
    assert!(!r.converged);
}

#[test]
fn line_search_failure_stops_without_moving() {
    // The gradient has the wrong sign everywhere, so no step along −g decreases f.
    let f = |x: &[f64]| (x[0], vec![-1.0]);
    let r = Lbfgs::new().minimize(f, &[0.0]).unwrap();
    assert_eq!(r.reason, StopReason::LineSearchFailed);
    assert!(!r.converged);
    assert_eq!(r.theta, vec![0.0]);
    assert_eq!(r.iterations, 0);
    // One start evaluation plus the full default line-search budget of 25.
    assert_eq!(r.evaluations, 26);
}

#[test]
fn wolfe_failure_accepts_best_sufficient_decrease_point() {
    // Linear objective: sufficient decrease always holds, the curvature condition never does
    // (φ' is constant). With a budget of 3 evaluations each line search must fall back to the
    // best point with sufficient decrease instead of failing.
    let f = |x: &[f64]| (-x[0], vec![-1.0]);
    let r = Lbfgs::new()
        .with_max_line_search_evaluations(3)
        .unwrap()
        .with_max_iterations(5)
        .unwrap()
        .minimize(f, &[0.0])
        .unwrap();
    assert_eq!(r.reason, StopReason::MaxIterations);
    assert!(!r.converged);
    assert_eq!(r.iterations, 5);
    assert_eq!(r.evaluations, 1 + 5 * 3);
    // First line search: trials 1, 4, 16 → accept 16. Pairs have y = 0 and are skipped, so
    // every iteration restarts with α₀ = 1 and extrapolates to 16 again.
    assert_eq!(r.theta, vec![80.0]);
    assert_eq!(r.skipped_curvature_pairs, 5);
}

#[test]
fn corrupted_gradient_evaluations_end_cleanly() {
    // Every 4th evaluation returns a gradient with the wrong sign and 10× magnitude (a bad
    // noisy estimate). Once such a gradient is the one at an accepted iterate, neither the
    // L-BFGS direction nor steepest descent along it can decrease f: the optimiser must try
    // steepest descent after the quasi-Newton direction fails, then stop with
    // `LineSearchFailed` at the last good iterate — never erroring, never accepting an
    // increase, never producing NaN.
    let mut calls = 0usize;
    let f = |x: &[f64]| {
        calls += 1;
        let d = [x[0] - 3.0, 4.0 * (x[1] + 1.0)];
        let value = 0.5 * (x[0] - 3.0).powi(2) + 2.0 * (x[1] + 1.0).powi(2);
        let factor = if calls.is_multiple_of(4) { -10.0 } else { 1.0 };
        (value, vec![factor * d[0], factor * d[1]])
    };
    let mut trace = Trace::new();
    let r = Lbfgs::new()
        .with_max_iterations(200)
        .unwrap()
        .minimize_with_observer(f, &[0.0, 0.0], &mut trace)
        .unwrap();
    assert_eq!(r.reason, StopReason::LineSearchFailed, "{r:?}");
    assert!(!r.converged);
    assert!(r.steepest_descent_resets >= 1, "{r:?}");
    assert!(r.theta.iter().all(|t| t.is_finite()));
    let values = trace.values();
    assert!(values.windows(2).all(|w| w[1] < w[0]), "{values:?}");
    assert!(
        r.value < values[0] / 10.0,
        "progress before the corrupted gradient: {r:?}"
    );
    assert_eq!(trace.records().last().unwrap().theta, r.theta);
}

#[test]
fn max_iterations_is_not_converged() {
    let r = Lbfgs::new()
        .with_max_iterations(3)
        .unwrap()
        .minimize(rosenbrock, &[-1.2, 1.0])
        .unwrap();
    assert_eq!(r.reason, StopReason::MaxIterations);
    assert!(!r.converged);
    assert_eq!(r.iterations, 3);
}

#[test]
fn function_and_step_tolerances_are_converged_reasons() {
    // Gradient test disabled: the run must end on the function tolerance. (From 0.7 the
    // capped first step has length 1 and does not land on the optimum 0 exactly.)
    let f = |x: &[f64]| {
        (
            0.5 * x[0] * x[0] + x[0].powi(4),
            vec![x[0] + 4.0 * x[0].powi(3)],
        )
    };
    let r = Lbfgs::new()
        .with_gradient_tolerance(0.0)
        .unwrap()
        .with_function_tolerance(1e-6)
        .unwrap()
        .minimize(f, &[0.7])
        .unwrap();
    assert_eq!(r.reason, StopReason::FunctionTolerance, "{r:?}");
    assert!(r.converged);

    let r = Lbfgs::new()
        .with_gradient_tolerance(0.0)
        .unwrap()
        .with_function_tolerance(0.0)
        .unwrap()
        .with_step_tolerance(1e-3)
        .unwrap()
        .minimize(f, &[0.7])
        .unwrap();
    assert_eq!(r.reason, StopReason::StepTolerance, "{r:?}");
    assert!(r.converged);
    assert!(r.theta[0].abs() < 1e-2);
}

#[test]
fn observer_can_stop_early() {
    let mut seen = Vec::new();
    let mut observer = |info: &IterationInfo<'_>| {
        seen.push(info.iteration);
        if info.iteration == 2 {
            Control::Stop
        } else {
            Control::Continue
        }
    };
    let r = Lbfgs::new()
        .minimize_with_observer(rosenbrock, &[-1.2, 1.0], &mut observer)
        .unwrap();
    assert_eq!(r.reason, StopReason::ObserverStop);
    assert!(!r.converged);
    assert_eq!(r.iterations, 2);
    assert_eq!(seen, vec![0, 1, 2]);
}

#[test]
fn first_step_is_capped_for_huge_gradients() {
    // ∇f = 1e8 at the start: the first trial point must be at distance ≤ max_initial_step (1).
    let mut first_trial = None;
    let mut calls = 0;
    let f = |x: &[f64]| {
        calls += 1;
        if calls == 2 {
            first_trial = Some(x[0]);
        }
        (0.5e8 * (x[0] - 1.0).powi(2) / 1.0, vec![1e8 * (x[0] - 1.0)])
    };
    let _ = Lbfgs::new().minimize(f, &[2.0]).unwrap();
    let t = first_trial.unwrap();
    assert!((t - 2.0).abs() <= 1.0 + 1e-12, "first trial at {t}");
}

#[test]
fn input_errors_are_typed() {
    let lbfgs = Lbfgs::new();
    assert_eq!(
        lbfgs.minimize(rosenbrock, &[]),
        Err(OptimError::EmptyParameters)
    );
    assert!(matches!(
        lbfgs.minimize(rosenbrock, &[1.0, f64::NAN]),
        Err(OptimError::NonFiniteParameter { index: 1, .. })
    ));
    assert_eq!(
        lbfgs.minimize(|_: &[f64]| (0.0, vec![1.0]), &[1.0, 2.0]),
        Err(OptimError::GradientLength {
            expected: 2,
            got: 1
        })
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random diagonal convex quadratics (eigenvalues in [0.1, 100]) from random starts.
    #[test]
    fn random_convex_quadratics_converge(
        spec in prop::collection::vec((0.1f64..100.0, -5.0f64..5.0, -10.0f64..10.0), 1..8)
    ) {
        let a: Vec<f64> = spec.iter().map(|s| s.0).collect();
        let c: Vec<f64> = spec.iter().map(|s| s.1).collect();
        let x0: Vec<f64> = spec.iter().map(|s| s.2).collect();
        let f = |x: &[f64]| {
            let g: Vec<f64> = (0..x.len()).map(|i| a[i] * (x[i] - c[i])).collect();
            let v = 0.5 * (0..x.len()).map(|i| g[i] * (x[i] - c[i])).sum::<f64>();
            (v, g)
        };
        let r = Lbfgs::new().minimize(f, &x0).unwrap();
        prop_assert!(r.converged, "{:?}", r);
        prop_assert!(dist(&r.theta, &c) < 1e-3, "{:?}", r);
    }
}
