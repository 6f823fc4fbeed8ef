//! The [`Minimizer`] interface: Adam and Lion through the shared first-order driver
//! reproduce their trajectories from before the driver existed, and a failing objective
//! stops every minimiser with its own error.

use std::fmt;

use diffsmc_optim::{
    Adam, IterationInfo, Lbfgs, Lion, Minimizer, Objective, OptimError, StopReason,
};

/// An anisotropic quadratic with minimum at (3, −1, 0.5).
fn quad(x: &[f64]) -> (f64, Vec<f64>) {
    let (a, b, c) = (x[0] - 3.0, x[1] + 1.0, x[2] - 0.5);
    (
        a * a + 10.0 * b * b + 0.1 * c * c,
        vec![2.0 * a, 20.0 * b, 0.2 * c],
    )
}

const X0: [f64; 3] = [0.0, 0.0, 2.0];
const PICKED: [usize; 6] = [1, 2, 5, 10, 20, 40];

// Iterates θ_k, k ∈ PICKED, of 40-iteration runs from X0, printed with `{:?}` (shortest
// round-trip representation) by the separate `Adam`/`Lion` implementations of
// diffsmc-optim before the shared first-order driver (commit 8662f19). Adam: lr 0.05,
// β = (0.8, 0.99); Lion: lr 0.02, weight decay 0.1; `_CLIP` variants with clip norm 1.
const ADAM: [[f64; 3]; 6] = [
    [0.049999999916666676, -0.049999999975, 1.9500000016666665],
    [
        0.09995366015780288,
        -0.09984758718103529,
        1.9000970828154238,
    ],
    [
        0.24922296102218655,
        -0.24733680338507713,
        1.7516605814678123,
    ],
    [0.4942232203728901, -0.4788197333526857, 1.5127541614249014],
    [0.9590948147541224, -0.8337805236064216, 1.0954157759732952],
    [1.7453681341278653, -1.0188436394347258, 0.6118277252470999],
];
const ADAM_CLIP: [[f64; 3]; 6] = [
    [0.0499999982597694, -0.0499999994779308, 1.9500000348045892],
    [
        0.10007741603495099,
        -0.09999214125631886,
        1.8999630551061868,
    ],
    [0.2513661546560128, -0.24984688053384338, 1.7493349777522509],
    [0.5112575980182449, -0.49841952364080366, 1.4943340011207507],
    [1.1022300127600255, -0.96029225086586, 0.9463991380988886],
    [2.3830696995840595, -1.0065042983047618, 0.4844230100652638],
];
const LION: [[f64; 3]; 6] = [
    [0.02, -0.02, 1.976],
    [0.03996, -0.03996, 1.952048],
    [0.09960079920032001, -0.09960079920032001, 1.880479040959616],
    [0.19820956648050578, -0.19820956648050578, 1.762148520223393],
    [0.39249042973657255, -0.39249042973657255, 1.529011484316113],
    [0.7695759857296648, -0.7695759857296648, 1.0765088171244022],
];
const LION_CLIP: [[f64; 3]; 6] = [
    [0.02, -0.02, 1.976],
    [0.03996, -0.03996, 1.952048],
    [0.09960079920032001, -0.09960079920032001, 1.880479040959616],
    [0.19820956648050578, -0.19820956648050578, 1.762148520223393],
    [0.39249042973657255, -0.39249042973657255, 1.529011484316113],
    [0.7695759857296648, -0.7695759857296648, 1.0765088171244022],
];

fn iterates(m: &impl Minimizer) -> Vec<Vec<f64>> {
    let mut thetas: Vec<Vec<f64>> = Vec::new();
    let mut record = |info: &IterationInfo<'_>| thetas.push(info.theta.to_vec());
    let r = m.minimize_with_observer(quad, &X0, &mut record).unwrap();
    assert_eq!(r.iterations, 40);
    assert_eq!(thetas.len(), 41);
    assert_eq!(thetas[40], r.theta);
    thetas
}

/// Bit-for-bit equality: the driver performs the same floating-point operations in the same
/// order as the old code, so any difference is a change of the arithmetic.
fn assert_same(name: &str, thetas: &[Vec<f64>], expected: &[[f64; 3]; 6]) {
    for (k, e) in PICKED.iter().zip(expected) {
        assert_eq!(thetas[*k].as_slice(), e.as_slice(), "{name}, iterate {k}");
    }
}

#[test]
fn adam_and_lion_reproduce_their_previous_trajectories() {
    let adam = Adam::new(0.05)
        .unwrap()
        .with_betas(0.8, 0.99)
        .unwrap()
        .with_max_iterations(40)
        .unwrap();
    assert_same("adam", &iterates(&adam), &ADAM);
    let adam = adam.with_clip_norm(1.0).unwrap();
    assert_same("adam_clip", &iterates(&adam), &ADAM_CLIP);
    let lion = Lion::new(0.02)
        .unwrap()
        .with_weight_decay(0.1)
        .unwrap()
        .with_max_iterations(40)
        .unwrap();
    assert_same("lion", &iterates(&lion), &LION);
    let lion = lion.with_clip_norm(1.0).unwrap();
    assert_same("lion_clip", &iterates(&lion), &LION_CLIP);
}

#[test]
fn stateful_steps_follow_the_same_trajectory() {
    // The `step` API and the `minimize` driver share one update: stepping by hand with the
    // gradients of `quad` gives the same iterates.
    let mut adam = Adam::new(0.05).unwrap().with_betas(0.8, 0.99).unwrap();
    let mut theta = X0.to_vec();
    let mut thetas = vec![theta.clone()];
    for _ in 0..40 {
        let (_, g) = quad(&theta);
        assert!(adam.step(&mut theta, &g).is_applied());
        thetas.push(theta.clone());
    }
    assert_eq!(adam.steps(), 40);
    assert_same("adam step", &thetas, &ADAM);
}

/// An error type of a model, as a caller would have.
#[derive(Debug, Clone, PartialEq)]
struct ModelError {
    evaluation: usize,
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "model failed at evaluation {}", self.evaluation)
    }
}

impl std::error::Error for ModelError {}

/// `quad` that fails at its `k`-th evaluation, counting calls in a shared cell (the
/// objective is moved into the minimiser).
struct FailsAt<'a> {
    k: usize,
    calls: &'a std::cell::Cell<usize>,
}

impl Objective for FailsAt<'_> {
    type Error = ModelError;

    fn eval(&mut self, theta: &[f64]) -> Result<(f64, Vec<f64>), ModelError> {
        let calls = self.calls.get() + 1;
        self.calls.set(calls);
        if calls == self.k {
            return Err(ModelError { evaluation: calls });
        }
        Ok(quad(theta))
    }
}

fn check_stops_at_failure(name: &str, m: &impl Minimizer) {
    for k in [1, 2, 7] {
        let calls = std::cell::Cell::new(0);
        let err = m.minimize(FailsAt { k, calls: &calls }, &X0).unwrap_err();
        assert_eq!(
            err,
            OptimError::Objective(ModelError { evaluation: k }),
            "{name}, k = {k}"
        );
        assert_eq!(
            calls.get(),
            k,
            "{name}: no evaluation after the failing one"
        );
        assert_eq!(err.to_string(), format!("model failed at evaluation {k}"));
    }
}

#[test]
fn a_failing_objective_stops_every_minimiser_with_its_error() {
    check_stops_at_failure("lbfgs", &Lbfgs::new());
    check_stops_at_failure(
        "adam",
        &Adam::new(0.05).unwrap().with_max_iterations(20).unwrap(),
    );
    check_stops_at_failure(
        "lion",
        &Lion::new(0.02).unwrap().with_max_iterations(20).unwrap(),
    );
}

#[test]
fn fallible_closures_are_objectives() {
    // A closure returning `Result` is an objective with that error type; a run that never
    // fails ends normally.
    let f = |x: &[f64]| -> Result<(f64, Vec<f64>), ModelError> { Ok(quad(x)) };
    let r = Lbfgs::new().minimize(f, &X0).unwrap();
    assert!(r.converged, "{r:?}");
    let g = |x: &[f64]| {
        if x[0] > 1.0 {
            Err(ModelError { evaluation: 0 })
        } else {
            Ok(quad(x))
        }
    };
    let err = Adam::new(0.05)
        .unwrap()
        .with_max_iterations(100)
        .unwrap()
        .minimize(g, &X0)
        .unwrap_err();
    assert_eq!(err.into_objective_error(), Ok(ModelError { evaluation: 0 }));
    // Optimiser errors stay optimiser errors for fallible objectives too.
    assert_eq!(
        Lbfgs::new()
            .minimize(g, &[])
            .unwrap_err()
            .into_objective_error(),
        Err(OptimError::EmptyParameters)
    );
}

#[test]
fn one_result_type_for_all_minimisers() {
    let runs: Vec<(&str, diffsmc_optim::Minimum)> = vec![
        ("lbfgs", Lbfgs::new().minimize(quad, &X0).unwrap()),
        (
            "adam",
            Adam::new(0.05)
                .unwrap()
                .with_max_iterations(3000)
                .unwrap()
                .minimize(quad, &X0)
                .unwrap(),
        ),
    ];
    for (name, r) in runs {
        // value and gradient belong to theta.
        let (v, g) = quad(&r.theta);
        assert_eq!(r.value, v, "{name}");
        assert_eq!(r.gradient, g, "{name}");
        assert!(r.gradient_norm() < 1e-3, "{name}: {r:?}");
        assert_eq!(r.converged, r.reason.is_converged());
    }
    let r = Adam::new(0.05)
        .unwrap()
        .with_max_iterations(5)
        .unwrap()
        .minimize(quad, &X0)
        .unwrap();
    assert_eq!(r.reason, StopReason::MaxIterations);
    assert_eq!(r.reason.name(), "max_iterations");
    assert_eq!((r.iterations, r.evaluations, r.skipped_updates), (5, 6, 0));
}
