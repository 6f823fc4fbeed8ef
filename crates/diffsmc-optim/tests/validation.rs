//! Every invalid knob is rejected with a typed error naming the knob and the value.

use diffsmc_optim::{Adam, Knob, Lbfgs, Lion, OptimError};

fn knob_of<T: std::fmt::Debug>(r: Result<T, OptimError>) -> (Knob, f64) {
    match r {
        Err(OptimError::InvalidKnob { knob, value, .. }) => (knob, value),
        other => panic!("expected InvalidKnob, got {other:?}"),
    }
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

fn assert_rejected<T: std::fmt::Debug>(r: Result<T, OptimError>, knob: Knob, value: f64) {
    let (k, v) = knob_of(r);
    assert_eq!(k, knob);
    assert!(same(v, value), "{knob}: reported {v}, expected {value}");
}

const BAD_NONNEG: [f64; 4] = [-1e-9, f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
const BAD_POSITIVE: [f64; 5] = [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
const BAD_BETA: [f64; 5] = [-0.1, 1.0, 1.5, f64::NAN, f64::INFINITY];

#[test]
fn lbfgs_knobs() {
    let l = Lbfgs::new;
    assert_rejected(l().with_history_size(0), Knob::HistorySize, 0.0);
    assert_rejected(l().with_max_iterations(0), Knob::MaxIterations, 0.0);
    assert_rejected(
        l().with_max_line_search_evaluations(0),
        Knob::MaxLineSearchEvaluations,
        0.0,
    );
    for v in BAD_NONNEG {
        assert_rejected(l().with_gradient_tolerance(v), Knob::GradientTolerance, v);
        assert_rejected(l().with_function_tolerance(v), Knob::FunctionTolerance, v);
        assert_rejected(l().with_step_tolerance(v), Knob::StepTolerance, v);
    }
    for v in BAD_POSITIVE {
        assert_rejected(l().with_max_initial_step(v), Knob::MaxInitialStep, v);
    }
    for v in [-0.1, 1.0, f64::NAN, f64::INFINITY] {
        assert_rejected(l().with_curvature_epsilon(v), Knob::CurvatureEpsilon, v);
    }
    for c1 in [0.0, -1.0, 1.0, f64::NAN] {
        assert_rejected(l().with_wolfe(c1, 0.9), Knob::WolfeC1, c1);
    }
    // c2 must exceed c1 and stay below 1.
    for c2 in [1e-4, 1e-5, 1.0, f64::NAN] {
        assert_rejected(l().with_wolfe(1e-4, c2), Knob::WolfeC2, c2);
    }
    // Valid values are accepted.
    let ok = l()
        .with_history_size(1)
        .and_then(|l| l.with_max_iterations(1))
        .and_then(|l| l.with_max_line_search_evaluations(1))
        .and_then(|l| l.with_gradient_tolerance(0.0))
        .and_then(|l| l.with_function_tolerance(0.0))
        .and_then(|l| l.with_step_tolerance(0.0))
        .and_then(|l| l.with_max_initial_step(1e-3))
        .and_then(|l| l.with_curvature_epsilon(0.0))
        .and_then(|l| l.with_wolfe(0.1, 0.5));
    assert!(ok.is_ok());
}

#[test]
fn adam_knobs() {
    for v in BAD_POSITIVE {
        assert_rejected(Adam::new(v), Knob::LearningRate, v);
        assert_rejected(Adam::new(0.1).unwrap().with_epsilon(v), Knob::Epsilon, v);
        assert_rejected(Adam::new(0.1).unwrap().with_clip_norm(v), Knob::ClipNorm, v);
        let mut adam = Adam::new(0.1).unwrap();
        assert_rejected(adam.set_learning_rate(v), Knob::LearningRate, v);
        assert_eq!(
            adam.learning_rate(),
            0.1,
            "a rejected value must not be stored"
        );
    }
    for v in BAD_BETA {
        assert_rejected(Adam::new(0.1).unwrap().with_betas(v, 0.999), Knob::Beta1, v);
        assert_rejected(Adam::new(0.1).unwrap().with_betas(0.9, v), Knob::Beta2, v);
    }
    assert_rejected(
        Adam::new(0.1).unwrap().with_max_iterations(0),
        Knob::MaxIterations,
        0.0,
    );
    assert!(Adam::new(0.1).unwrap().with_betas(0.0, 0.0).is_ok());
}

#[test]
fn lion_knobs() {
    for v in BAD_POSITIVE {
        assert_rejected(Lion::new(v), Knob::LearningRate, v);
        assert_rejected(Lion::new(0.1).unwrap().with_clip_norm(v), Knob::ClipNorm, v);
        let mut lion = Lion::new(0.1).unwrap();
        assert_rejected(lion.set_learning_rate(v), Knob::LearningRate, v);
    }
    for v in BAD_NONNEG {
        assert_rejected(
            Lion::new(0.1).unwrap().with_weight_decay(v),
            Knob::WeightDecay,
            v,
        );
    }
    for v in BAD_BETA {
        assert_rejected(Lion::new(0.1).unwrap().with_betas(v, 0.99), Knob::Beta1, v);
        assert_rejected(Lion::new(0.1).unwrap().with_betas(0.9, v), Knob::Beta2, v);
    }
    assert_rejected(
        Lion::new(0.1).unwrap().with_max_iterations(0),
        Knob::MaxIterations,
        0.0,
    );
    assert!(Lion::new(0.1).unwrap().with_weight_decay(0.0).is_ok());
}

#[test]
fn error_message_names_knob_and_value() {
    let err = Adam::new(-0.5).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("learning_rate") && msg.contains("-0.5"),
        "{msg}"
    );
    let err = Lbfgs::new().with_history_size(0).unwrap_err();
    assert!(err.to_string().contains("history_size"), "{err}");
}
